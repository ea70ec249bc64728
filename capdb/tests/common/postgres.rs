//! A fresh PostgreSQL database per test on the server at `CAP_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), named `cap_test_<pid>_<n>`; databases of test
//! processes that are gone are dropped on first use.

use sqlx::{Connection, Executor, PgConnection};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Every database these tests create starts with this, then the pid of the test process.
const PREFIX: &str = "cap_test_";

pub fn admin_url() -> String {
    std::env::var("CAP_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// `url` pointing at database `name` instead (any query string is kept).
pub fn url_of(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Creates an empty database of its own and returns its URL; `None` (after a skip line, or a
/// failure under `CAP_TEST_REQUIRE=1`) when the server cannot be reached.
pub async fn fresh_database_url() -> Option<String> {
    static N: AtomicU64 = AtomicU64::new(0);
    let admin = admin_url();
    let mut conn = match PgConnection::connect(&admin).await {
        Ok(conn) => conn,
        Err(e) => {
            let message = format!("PostgreSQL at `{admin}` (CAP_TEST_POSTGRES_URL) is not reachable: {e}");
            if capcore::conformance::services_required() {
                panic!("{message}; CAP_TEST_REQUIRE=1 requires it");
            }
            eprintln!("skipped: {message}");
            return None;
        }
    };
    drop_databases_of_finished_runs(&mut conn).await;
    let name = format!("{PREFIX}{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"))).await.expect("drop a stale database");
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create a test database");
    conn.close().await.ok();
    Some(url_of(&admin, &name))
}

/// Drops the test databases left by earlier test processes that are gone, once per process, so
/// runs do not pile up databases. A database still in use is left alone (the drop fails).
async fn drop_databases_of_finished_runs(conn: &mut PgConnection) {
    static DONE: AtomicBool = AtomicBool::new(false);
    // Liveness is read from /proc; where there is none, nothing is dropped.
    if DONE.swap(true, Ordering::SeqCst) || !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
        .bind(PREFIX)
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_default();
    for name in names {
        let Some(pid) = name[PREFIX.len()..].split('_').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"))).await;
    }
}
