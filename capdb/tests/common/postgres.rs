//! A fresh PostgreSQL database per test on the server at `CAP_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`).

use super::{PREFIX, fresh_name, of_finished_runs, unreachable, url_of};
use sqlx::{Connection, Executor, PgConnection};

pub fn admin_url() -> String {
    std::env::var("CAP_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates an empty database of its own and returns its URL; `None` when the server cannot be
/// reached (see [`unreachable`]).
pub async fn fresh_database_url() -> Option<String> {
    let admin = admin_url();
    let mut conn = match PgConnection::connect(&admin).await {
        Ok(conn) => conn,
        Err(e) => return unreachable("PostgreSQL", "CAP_TEST_POSTGRES_URL", &admin, e),
    };
    let existing: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
        .bind(PREFIX)
        .fetch_all(&mut conn)
        .await
        .unwrap_or_default();
    for name in of_finished_runs(existing) {
        // A database still in use is left alone (the drop fails).
        let _ = conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"))).await;
    }
    let name = fresh_name();
    conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"))).await.expect("drop a stale database");
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create a test database");
    conn.close().await.ok();
    Some(url_of(&admin, &name))
}
