//! Whole-table export and import for MySQL/MariaDB: JSON travels as its stored text, integers
//! are read as BIGINT whatever their width, keys are ordered by their bytes (`CAST ... AS
//! BINARY`, which also counts trailing spaces), and the audit log's insertion order is its
//! AUTO_INCREMENT column.

use super::error::{db, map};
use crate::portable::{clear_all, decode, insert_row, select_page};
use capcore::Result;
use capcore::backend::portable::{Column, Kind, Row, Table};
use sqlx::{AssertSqlSafe, MySqlPool};

pub(crate) async fn count(pool: &MySqlPool, table: Table) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {}", table.name())))
        .fetch_one(pool)
        .await
        .map_err(db)?;
    Ok(n as u64)
}

pub(crate) async fn export(pool: &MySqlPool, table: Table, offset: u64, limit: u32) -> Result<Vec<Row>> {
    let select = |c: &Column| match c.kind {
        Kind::Int | Kind::OptInt => format!("CAST({0} AS SIGNED) AS {0}", c.name),
        _ => c.name.to_string(),
    };
    let sql = select_page(table, select, |c| format!("CAST({c} AS BINARY)"), "seq", ("?", "?"));
    let rows =
        sqlx::query(AssertSqlSafe(sql)).bind(i64::from(limit)).bind(offset as i64).fetch_all(pool).await.map_err(db)?;
    rows.iter().map(|row| decode(table, row)).collect()
}

pub(crate) async fn import(pool: &MySqlPool, table: Table, rows: &[Row]) -> Result<()> {
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
        // An error drops the transaction, which rolls back the rows inserted before it.
        query
            .execute(&mut *tx)
            .await
            .map_err(|e| map(e, table.name(), &format!("a {} row is already there", table.name())))?;
    }
    tx.commit().await.map_err(db)
}

pub(crate) async fn clear(pool: &MySqlPool) -> Result<()> {
    let mut tx = pool.begin().await.map_err(db)?;
    for sql in clear_all() {
        sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await.map_err(db)?;
    }
    tx.commit().await.map_err(db)
}
