//! SQLite migrations: applied once even when two panels start at once, checksummed, and a
//! schema newer than this build refused with a clear message.
#![cfg(feature = "sqlite")]

use capcore::backend::Database;
use std::sync::Arc;

fn fresh_path(tag: &str) -> String {
    let path =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("migrations-{tag}-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    format!("sqlite://{}", path.display())
}

async fn open(url: &str) -> Arc<dyn Database> {
    capdb::connect(url, &capdb::DbConfig::default()).await.expect("open sqlite")
}

async fn raw(url: &str, sql: &str) {
    let path = url.trim_start_matches("sqlite://");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path).create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&pool).await.unwrap();
    pool.close().await;
}

#[tokio::test]
async fn two_panels_starting_at_once_apply_each_migration_once() {
    let url = fresh_path("race");
    let (a, b) = (open(&url).await, open(&url).await);
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    let (ra, rb) = (ra.expect("first panel migrates"), rb.expect("second panel migrates"));
    assert_eq!(ra + rb, 2, "two migrations, each applied by exactly one of them");
    assert_eq!(a.migrate().await.unwrap(), 0);
    assert_eq!(a.users().count().await.unwrap(), 0, "the schema works");
}

#[tokio::test]
async fn a_schema_newer_than_this_build_is_refused() {
    let url = fresh_path("newer");
    open(&url).await.migrate().await.unwrap();
    raw(&url, "INSERT INTO cap_migrations (version, name, checksum) VALUES (7, 'from the future', 'x')").await;
    let err = open(&url).await.migrate().await.unwrap_err().to_string();
    assert!(err.contains("at version 7 (from the future), newer than this build knows (up to 2)"), "{err}");
}

#[tokio::test]
async fn an_applied_migration_that_differs_from_this_builds_is_refused() {
    let url = fresh_path("tampered");
    open(&url).await.migrate().await.unwrap();
    raw(&url, "UPDATE cap_migrations SET checksum = 'abc' WHERE version = 1").await;
    let err = open(&url).await.migrate().await.unwrap_err().to_string();
    assert!(err.contains("migration 1 (initial) in the database differs from this build's"), "{err}");
}

#[tokio::test]
async fn a_database_migrated_before_checksums_gets_them_recorded() {
    let url = fresh_path("legacy");
    // The first release's bookkeeping: no checksum column.
    raw(&url, "CREATE TABLE cap_migrations (version INTEGER PRIMARY KEY NOT NULL, name TEXT NOT NULL)").await;
    let db = open(&url).await;
    assert_eq!(db.migrate().await.unwrap(), 2);
    raw(&url, "UPDATE cap_migrations SET checksum = NULL").await;
    assert_eq!(db.migrate().await.unwrap(), 0, "accepted, and checksums recorded");
    raw(&url, "UPDATE cap_migrations SET checksum = 'abc' WHERE version = 2").await;
    assert!(db.migrate().await.is_err(), "from then on they are checked");
}
