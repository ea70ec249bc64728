//! A fresh MySQL/MariaDB database per test on the server at `CAP_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/`).

use super::{fresh_name, of_finished_runs, unreachable, url_of};
use sqlx::{Connection, Executor, MySqlConnection};

pub fn admin_url() -> String {
    std::env::var("CAP_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/".into())
}

/// Creates an empty database of its own and returns its URL; `None` when the server cannot be
/// reached (see [`unreachable`]).
pub async fn fresh_database_url() -> Option<String> {
    let admin = admin_url();
    let mut conn = match MySqlConnection::connect(&admin).await {
        Ok(conn) => conn,
        Err(e) => return unreachable("MySQL", "CAP_TEST_MYSQL_URL", &admin, e),
    };
    let existing: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(schema_name AS CHAR) FROM information_schema.schemata WHERE schema_name LIKE 'cap!_test!_%' ESCAPE '!'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap_or_default();
    for name in of_finished_runs(existing) {
        let _ = conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"))).await;
    }
    let name = fresh_name();
    conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"))).await.expect("drop a stale database");
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")))
        .await
        .expect("create a test database");
    conn.close().await.ok();
    Some(url_of(&admin, &name))
}
