//! Runs the database conformance suite against MySQL/MariaDB (a fresh database per test), and
//! checks what is particular to the backend: migrations applied once when two panels start at
//! once, checksummed, a schema newer than this build refused; both URL schemes; strict lengths;
//! 4-byte UTF-8.
//!
//! The server is `CAP_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/`); each test creates
//! its own `cap_test_<pid>_<n>` database there, and databases of test processes that are gone
//! are dropped on first use. Without a reachable server every test prints a skip line, unless
//! `CAP_TEST_REQUIRE=1`, which makes it fail.
#![cfg(feature = "mysql")]

mod common;

use capcore::backend::Database;
use capcore::model::{NewNode, NewUser};
use capcore::time::Timestamp;
use common::mysql::fresh_database_url;
use sqlx::{Connection, Executor, MySqlConnection};
use std::sync::Arc;

async fn open(url: &str) -> Arc<dyn Database> {
    capdb::connect(url, &capdb::DbConfig::default()).await.expect("connect to the test database")
}

async fn fresh_mysql() -> Option<Arc<dyn Database>> {
    let url = fresh_database_url().await?;
    let db = open(&url).await;
    db.migrate().await.expect("migrate");
    Some(db)
}

mod conformance {
    capcore::database_conformance_tests!(super::fresh_mysql, "mysql");
}

/// Runs a statement on its own connection to `url`.
async fn raw(url: &str, sql: &str) {
    let mut conn = MySqlConnection::connect(url).await.unwrap();
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
        let mut conn = MySqlConnection::connect(&url).await.unwrap();
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
async fn connect_picks_mysql_by_either_scheme() {
    let Some(url) = fresh_database_url().await else { return };
    for scheme in ["mysql", "mariadb"] {
        let url = format!("{scheme}://{}", url.split_once("://").unwrap().1);
        let db = open(&url).await;
        assert_eq!(db.backend_name(), "mysql");
        db.ping().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable_and_its_password_is_not_told() {
    // A port nothing listens on (the discard port), so the connection is refused at once.
    let config = capdb::DbConfig { acquire_timeout: std::time::Duration::from_secs(5), ..capdb::DbConfig::default() };
    let err = capdb::connect("mysql://cap:s3cret@127.0.0.1:9/cap", &config).await.err().expect("no server");
    assert!(matches!(err, capcore::Error::Unavailable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("mysql://cap:***@127.0.0.1:9/cap") && !message.contains("s3cret"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_is_strict_whatever_the_servers_default() {
    let Some(url) = fresh_database_url().await else { return };
    let db = capdb::mysql::MysqlDatabase::connect(&url, &capdb::DbConfig::default()).await.unwrap();
    let mode: String = sqlx::query_scalar("SELECT @@SESSION.sql_mode").fetch_one(db.pool()).await.unwrap();
    assert!(mode.split(',').any(|m| m == "STRICT_ALL_TABLES"), "{mode}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_longer_than_its_column_is_invalid_not_truncated() {
    let Some(db) = fresh_mysql().await else { return };
    let now = Timestamp::from_millis(0);
    let long = NewUser { username: "u".repeat(300), email: "long@example.test".into(), password_hash: "x".into() };
    let err = db.users().create(long, now).await.unwrap_err();
    match &err {
        capcore::Error::Invalid(e) => assert_eq!(e.field, "username", "{e}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert_eq!(db.users().count().await.unwrap(), 0, "nothing was written");
    let node = NewNode {
        name: "n".repeat(256),
        description: String::new(),
        fqdn: "node.example.test".into(),
        memory_mb: 1024,
        memory_overallocate: 0,
        disk_mb: 1024,
        disk_overallocate: 0,
        token_hash: "hash".into(),
    };
    assert!(matches!(db.nodes().create(node.clone(), now).await, Err(capcore::Error::Invalid(_))));
    let fits = NewNode { name: "n".repeat(255), ..node };
    assert_eq!(db.nodes().create(fits, now).await.unwrap().name.len(), 255, "the longest name that fits is kept whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_byte_utf8_round_trips() {
    let Some(db) = fresh_mysql().await else { return };
    let now = Timestamp::from_millis(0);
    let new = NewUser {
        username: "crab-🦀".into(), email: "🦀@example.test".into(), password_hash: "𝔥𝔞𝔰𝔥".into()
    };
    let user = db.users().create(new, now).await.unwrap();
    let stored = db.users().get(user.id).await.unwrap();
    assert_eq!(stored.username, "crab-🦀");
    assert_eq!(stored.email, "🦀@example.test");
    assert_eq!(stored.password_hash, "𝔥𝔞𝔰𝔥");
    assert_eq!(db.users().find_by_email("🦀@EXAMPLE.test").await.unwrap(), Some(stored));
    let listed = db.users().list(Some("🦀"), capcore::model::PageRequest::first()).await.unwrap();
    assert_eq!(listed.total, 1);
    // Binary collation: another emoji is not the same name.
    let other = NewUser { username: "crab-🦞".into(), email: "🦞@example.test".into(), password_hash: "x".into() };
    db.users().create(other, now).await.unwrap();
}
