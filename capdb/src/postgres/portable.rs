//! Whole-table export and import for PostgreSQL: JSONB travels as text, integers are read as
//! BIGINT whatever their width, keys are ordered bytewise (`COLLATE "C"`), and the audit log's
//! insertion order is its identity column.

use super::error::{db, map};
use crate::portable::{clear_all, decode, insert_row, select_page};
use capcore::Result;
use capcore::backend::portable::{Kind, Row, Table};
use sqlx::{AssertSqlSafe, PgPool};

pub(crate) async fn count(pool: &PgPool, table: Table) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {}", table.name())))
        .fetch_one(pool)
        .await
        .map_err(db)?;
    Ok(n as u64)
}

pub(crate) async fn export(pool: &PgPool, table: Table, offset: u64, limit: u32) -> Result<Vec<Row>> {
    let select = |c: &capcore::backend::portable::Column| match c.kind {
        Kind::Json => format!("{}::text", c.name),
        Kind::Int | Kind::OptInt => format!("{}::bigint", c.name),
        _ => c.name.to_string(),
    };
    let sql = select_page(table, select, |c| format!("{c} COLLATE \"C\""), "seq", ("$1", "$2"));
    let rows =
        sqlx::query(AssertSqlSafe(sql)).bind(i64::from(limit)).bind(offset as i64).fetch_all(pool).await.map_err(db)?;
    rows.iter().map(|row| decode(table, row)).collect()
}

pub(crate) async fn import(pool: &PgPool, table: Table, rows: &[Row]) -> Result<()> {
    for row in rows {
        table.check_row(row)?;
    }
    let sql = insert_row(table, |i, c| match c.kind {
        Kind::Json => format!("${}::jsonb", i + 1),
        _ => format!("${}", i + 1),
    });
    let mut tx = pool.begin().await.map_err(db)?;
    for row in rows {
        let mut query = sqlx::query(AssertSqlSafe(sql.as_str()));
        for (column, value) in table.columns().iter().zip(row) {
            query = match column.kind {
                Kind::Text | Kind::OptText => query.bind(value.as_str()),
                Kind::Int | Kind::OptInt => query.bind(value.as_i64()),
                Kind::Bool => query.bind(value.as_bool()),
                Kind::Json => query.bind(value.to_string()),
            };
        }
        query
            .execute(&mut *tx)
            .await
            .map_err(|e| map(e, table.name(), &format!("a {} row is already there", table.name())))?;
    }
    tx.commit().await.map_err(db)
}

pub(crate) async fn clear(pool: &PgPool) -> Result<()> {
    let mut tx = pool.begin().await.map_err(db)?;
    for sql in clear_all() {
        sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await.map_err(db)?;
    }
    tx.commit().await.map_err(db)
}
