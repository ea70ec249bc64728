//! Whole-table export and import for SQLite: booleans are integers, JSON is text, and the audit
//! log's insertion order is the rowid.

use crate::error::{db, map};
use crate::portable::{clear_all, decode, insert_row, select_page};
use capcore::Result;
use capcore::backend::portable::{Kind, Row, Table};
use sqlx::{AssertSqlSafe, SqlitePool};

pub(crate) async fn count(pool: &SqlitePool, table: Table) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {}", table.name())))
        .fetch_one(pool)
        .await
        .map_err(db)?;
    Ok(n as u64)
}

pub(crate) async fn export(pool: &SqlitePool, table: Table, offset: u64, limit: u32) -> Result<Vec<Row>> {
    let sql = select_page(table, |c| c.name.to_string(), |c| c.to_string(), "rowid", ("?", "?"));
    let rows =
        sqlx::query(AssertSqlSafe(sql)).bind(i64::from(limit)).bind(offset as i64).fetch_all(pool).await.map_err(db)?;
    rows.iter().map(|row| decode(table, row)).collect()
}

pub(crate) async fn import(pool: &SqlitePool, table: Table, rows: &[Row]) -> Result<()> {
    for row in rows {
        table.check_row(row)?;
    }
    let sql = insert_row(table, |_, _| "?".to_string());
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

pub(crate) async fn clear(pool: &SqlitePool) -> Result<()> {
    let mut tx = pool.begin().await.map_err(db)?;
    for sql in clear_all() {
        sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await.map_err(db)?;
    }
    tx.commit().await.map_err(db)
}
