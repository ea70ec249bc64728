//! Runs the database conformance suite against PostgreSQL (a fresh database per test), and checks
//! the PostgreSQL migrations: applied once when two panels start at once, checksummed, and a
//! schema newer than this build refused.
//!
//! The server is `CAP_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! each test creates its own `cap_test_<pid>_<n>` database there. Without a reachable server
//! every test prints a skip line, unless `CAP_TEST_REQUIRE=1`, which makes it fail.
#![cfg(feature = "postgres")]

mod common;

use capcore::backend::Database;
use common::postgres::fresh_database_url;
use sqlx::{Connection, Executor, PgConnection};
use std::sync::Arc;

async fn open(url: &str) -> Arc<dyn Database> {
    capdb::connect(url, &capdb::DbConfig::default()).await.expect("connect to the test database")
}

async fn fresh_postgres() -> Option<Arc<dyn Database>> {
    let url = fresh_database_url().await?;
    let db = open(&url).await;
    db.migrate().await.expect("migrate");
    Some(db)
}

mod conformance {
    capcore::database_conformance_tests!(super::fresh_postgres, "postgres");
}

/// Runs a statement on its own connection to `url`.
async fn raw(url: &str, sql: &str) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(sql.to_string())).await.unwrap();
    conn.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_panels_starting_at_once_apply_each_migration_once() {
    let Some(url) = fresh_database_url().await else { return };
    for round in 0..3 {
        let url = if round == 0 { url.clone() } else { fresh_database_url().await.unwrap() };
        let (a, b) = (open(&url).await, open(&url).await);
        let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
        let (ra, rb) = (ra.expect("first panel migrates"), rb.expect("second panel migrates"));
        assert_eq!(ra + rb, 1, "round {round}: one migration, applied by exactly one of them");
        assert_eq!(a.migrate().await.unwrap(), 0);
        assert_eq!(b.users().count().await.unwrap(), 0, "the schema works");
        let mut conn = PgConnection::connect(&url).await.unwrap();
        let recorded: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM cap_migrations").fetch_one(&mut conn).await.unwrap();
        assert_eq!(recorded, 1, "recorded once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_this_build_is_refused() {
    let Some(url) = fresh_database_url().await else { return };
    open(&url).await.migrate().await.unwrap();
    raw(&url, "INSERT INTO cap_migrations (version, name, checksum) VALUES (7, 'from the future', 'x')").await;
    let err = open(&url).await.migrate().await.unwrap_err();
    assert!(matches!(err, capcore::Error::Conflict { .. }), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("at version 7 (from the future), newer than this build knows (up to 1)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applied_migration_that_differs_from_this_builds_is_refused() {
    let Some(url) = fresh_database_url().await else { return };
    open(&url).await.migrate().await.unwrap();
    raw(&url, "UPDATE cap_migrations SET checksum = 'abc' WHERE version = 1").await;
    let err = open(&url).await.migrate().await.unwrap_err();
    assert!(matches!(err, capcore::Error::Conflict { .. }), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("migration 1 (initial) in the database differs from this build's"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_picks_postgres_by_either_scheme() {
    let Some(url) = fresh_database_url().await else { return };
    for scheme in ["postgres", "postgresql"] {
        let url = format!("{scheme}://{}", url.split_once("://").unwrap().1);
        let db = open(&url).await;
        assert_eq!(db.backend_name(), "postgres");
        db.ping().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable() {
    // A port nothing listens on (the discard port), so the connection is refused at once.
    let config = capdb::DbConfig { acquire_timeout: std::time::Duration::from_secs(5), ..capdb::DbConfig::default() };
    let err = capdb::connect("postgres://postgres@127.0.0.1:9/postgres", &config).await.err().expect("no server");
    assert!(matches!(err, capcore::Error::Unavailable { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_with_a_nul_character_is_invalid_not_internal() {
    let Some(db) = fresh_postgres().await else { return };
    let new = capcore::model::NewUser {
        username: "nul\0byte".into(),
        email: "nul@example.test".into(),
        password_hash: "x".into(),
    };
    let err = db.users().create(new, capcore::time::Timestamp::from_millis(0)).await.unwrap_err();
    assert!(matches!(err, capcore::Error::Invalid(_)), "{err:?}");
}
