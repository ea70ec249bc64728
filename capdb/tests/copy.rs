//! `capdb::copy` between real backends: everything arrives, the target is verified by counts
//! and checksums, and a target that already holds data is refused unless overwriting is asked.
//!
//! SQLite databases are files in a temporary directory; PostgreSQL databases are fresh ones on
//! the server at `CAP_TEST_POSTGRES_URL` (skipped without it, failing under `CAP_TEST_REQUIRE=1`),
//! MySQL/MariaDB ones likewise at `CAP_TEST_MYSQL_URL`, and MongoDB ones on the SecantusDB and
//! nx-27017 servers the tests start.
#![cfg(all(feature = "sqlite", feature = "postgres"))]

mod common;

use capcore::backend::Database;
use capcore::backend::portable::Table;
use capcore::model::*;
use capcore::permission::{Permission, PermissionSet};
use capcore::time::Timestamp;
use capdb::copy::table_report;
use capdb::{CopyOptions, DbConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

async fn open(url: &str) -> Arc<dyn Database> {
    let db = capdb::connect(url, &DbConfig::default()).await.expect("connect");
    db.migrate().await.expect("migrate");
    db
}

/// A SQLite file of its own under the system's temporary directory.
fn sqlite_url() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!("cap-copy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.db", N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_file(&path);
    format!("sqlite://{}", path.display())
}

/// A store with a row in every table: an admin with a custom role, a tenant with a subuser
/// grant and an API key, a node with three ports, the Minetest example template, a server, a
/// rotated session and a few audit events.
async fn populate(db: &dyn Database) -> (User, Server) {
    let now = Timestamp::from_millis(1_790_000_000_123);
    let user = |name: &str| NewUser {
        username: name.into(),
        email: format!("{name}@example.test"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
    };
    let admin = db.users().create(user("ada"), now).await.unwrap();
    let tenant = db.users().create(user("tom ✓"), now).await.unwrap();
    let role = NewRole {
        name: "operators".into(),
        description: "may watch every console".into(),
        permissions: [Permission::SERVER_VIEW, Permission::SERVER_CONSOLE].into_iter().collect::<PermissionSet>(),
        builtin: false,
    };
    let role = db.roles().create(role, now).await.unwrap();
    db.roles().assign(admin.id, role.id).await.unwrap();
    let node = NewNode {
        name: "node-1".into(),
        description: String::new(),
        fqdn: "node1.example.test".into(),
        memory_mb: 8192,
        memory_overallocate: 0,
        disk_mb: 100_000,
        disk_overallocate: -1,
        token_hash: "sha256:node-token".into(),
    };
    let node = db.nodes().create(node, now).await.unwrap();
    db.allocations().add(node.id, "127.0.0.1", &[25565, 25566, 25567]).await.unwrap();
    let spec = serde_json::from_str(include_str!("../../examples/templates/minetest-server.json")).unwrap();
    let template = db.templates().create(spec, now).await.unwrap();
    let new = NewServer {
        name: "<b>world</b>".into(),
        description: "it's 100% a test".into(),
        owner_id: admin.id,
        node_id: node.id,
        template_id: template.id,
        limits: Limits::default(),
        environment: [("GAME_ID".to_string(), "minetest".to_string())].into_iter().collect(),
        allocation: AllocationRequest::AnyFree,
    };
    let server = db.servers().create(new, now).await.unwrap();
    let console = [Permission::SERVER_CONSOLE].into_iter().collect::<PermissionSet>();
    db.servers().set_subuser(server.id, tenant.id, console, now).await.unwrap();
    let key = ApiKey {
        id: capcore::ids::ApiKeyId::new_random(),
        user_id: tenant.id,
        name: "ci".into(),
        prefix: "cap_copytest".into(),
        secret_hash: "sha256:secret".into(),
        permissions: console,
        created_at: now,
        last_used_at: Some(now),
        expires_at: None,
    };
    db.api_keys().create(key).await.unwrap();
    let session = Session {
        id: capcore::ids::SessionId::new_random(),
        user_id: admin.id,
        refresh_hash: "first".into(),
        generation: 0,
        revoked: false,
        created_at: now,
        expires_at: now.plus_secs(3600),
        ip: "192.0.2.1".into(),
    };
    db.sessions().create(session).await.unwrap();
    assert!(matches!(db.sessions().rotate("first", "second", now).await.unwrap(), Rotation::Rotated(_)));
    for action in ["server.create", "auth.login", "server.power"] {
        let event = AuditEvent {
            id: capcore::ids::AuditEventId::new_random(),
            at: now,
            actor_id: Some(admin.id),
            action: action.into(),
            target: format!("server:{}", server.id),
            server_id: Some(server.id),
            ip: "192.0.2.1".into(),
            result: AuditResult::Success,
            detail: serde_json::json!({"z": 1, "a": [true, null, 2.5]}),
        };
        db.audit().append(event).await.unwrap();
    }
    (admin, server)
}

/// Every table's count and checksum.
async fn reports(db: &dyn Database) -> Vec<capdb::copy::TableReport> {
    let mut reports = Vec::new();
    for table in Table::ALL {
        reports.push(table_report(db, table, 7).await.unwrap());
    }
    reports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_postgres_and_back_copies_every_row() {
    let Some(postgres_url) = common::postgres::fresh_database_url().await else { return };
    let source = open(&sqlite_url()).await;
    let (admin, server) = populate(&*source).await;
    let postgres = open(&postgres_url).await;

    let report = capdb::copy(&*source, &*postgres, &CopyOptions { batch: 2, ..CopyOptions::default() }).await.unwrap();
    let expected = reports(&*source).await;
    assert_eq!(report.tables, expected, "the report is what the source holds");
    assert!(report.tables.iter().all(|t| t.rows > 0), "every table had rows: {:?}", report.tables);
    assert_eq!(reports(&*postgres).await, expected, "the target holds the same rows");

    // The copy is a working store, not only equal rows.
    assert_eq!(postgres.servers().get(server.id).await.unwrap(), server);
    assert_eq!(postgres.users().find_by_email("ada@example.test").await.unwrap(), Some(admin.clone()));
    assert!(postgres.roles().global_permissions(admin.id).await.unwrap().contains(Permission::SERVER_CONSOLE));
    let audit = postgres.audit().list(&AuditFilter::default(), PageRequest::first()).await.unwrap();
    let actions: Vec<&str> = audit.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["server.power", "auth.login", "server.create"], "newest first, ties kept in order");
    let reuse = postgres.sessions().rotate("first", "third", Timestamp::from_millis(1_790_000_000_200)).await;
    assert_eq!(reuse.unwrap(), Rotation::ReuseDetected { user_id: admin.id });

    let back = open(&sqlite_url()).await;
    let report = capdb::copy(&*postgres, &*back, &CopyOptions::default()).await.unwrap();
    assert_eq!(report.tables.len(), Table::ALL.len());
    assert_eq!(reports(&*back).await, reports(&*postgres).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_holding_data_is_refused_untouched_unless_overwriting() {
    let source = open(&sqlite_url()).await;
    let (admin, _) = populate(&*source).await;
    let target = open(&sqlite_url()).await;
    let theirs = NewUser { username: "eve".into(), email: "eve@example.test".into(), password_hash: "x".into() };
    let theirs = target.users().create(theirs, Timestamp::from_millis(5)).await.unwrap();
    let before = reports(&*target).await;

    let err = capdb::copy(&*source, &*target, &CopyOptions::default()).await.unwrap_err();
    assert!(matches!(err, capcore::Error::Conflict { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("already holds data (1 users)") && message.contains("--overwrite"), "{message}");
    assert_eq!(reports(&*target).await, before, "a refused copy writes nothing");

    capdb::copy(&*source, &*target, &CopyOptions { overwrite: true, ..CopyOptions::default() }).await.unwrap();
    assert!(matches!(target.users().get(theirs.id).await, Err(capcore::Error::NotFound { .. })));
    assert_eq!(target.users().get(admin.id).await.unwrap(), admin);
    assert_eq!(reports(&*target).await, reports(&*source).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_with_only_a_custom_role_holds_data() {
    let source = open(&sqlite_url()).await;
    populate(&*source).await;
    let target = open(&sqlite_url()).await;
    let role =
        NewRole { name: "mine".into(), description: String::new(), permissions: PermissionSet::EMPTY, builtin: false };
    target.roles().create(role, Timestamp::from_millis(5)).await.unwrap();
    let err = capdb::copy(&*source, &*target, &CopyOptions::default()).await.unwrap_err().to_string();
    assert!(err.contains("1 custom roles"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copying_an_empty_store_leaves_a_working_fresh_one() {
    let source = open(&sqlite_url()).await;
    let target = open(&sqlite_url()).await;
    let report = capdb::copy(&*source, &*target, &CopyOptions::default()).await.unwrap();
    assert_eq!(report.tables.len(), Table::ALL.len());
    assert!(report.tables.iter().all(|t| t.rows == 0), "{:?}", report.tables);
    assert_eq!(target.users().count().await.unwrap(), 0);
    let (_, again) = (populate(&*target).await, capdb::copy(&*source, &*target, &CopyOptions::default()).await);
    assert!(again.is_err(), "once it holds data, the target is refused");
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_mysql_to_postgres_keeps_every_checksum() {
    let Some(mysql_url) = common::mysql::fresh_database_url().await else { return };
    let Some(postgres_url) = common::postgres::fresh_database_url().await else { return };
    let source = open(&sqlite_url()).await;
    let (admin, server) = populate(&*source).await;
    let expected = reports(&*source).await;
    let mysql = open(&mysql_url).await;
    assert_eq!(capdb::copy(&*source, &*mysql, &CopyOptions::default()).await.unwrap().tables, expected);
    let postgres = open(&postgres_url).await;
    assert_eq!(capdb::copy(&*mysql, &*postgres, &CopyOptions::default()).await.unwrap().tables, expected);
    assert_eq!(reports(&*postgres).await, expected);
    assert_eq!(postgres.servers().get(server.id).await.unwrap(), server);
    assert_eq!(mysql.users().get(admin.id).await.unwrap(), admin);
}

#[cfg(feature = "mongodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_both_mongodb_servers_and_back_keeps_every_checksum() {
    use common::mongodb::{Server, fresh_database_url};
    let Some(secantus_url) = fresh_database_url(Server::Secantus).await else { return };
    let Some(nx_url) = fresh_database_url(Server::Nx).await else { return };
    let source = open(&sqlite_url()).await;
    let (admin, server) = populate(&*source).await;
    let expected = reports(&*source).await;
    let secantus = open(&secantus_url).await;
    let options = CopyOptions { batch: 2, ..CopyOptions::default() };
    assert_eq!(capdb::copy(&*source, &*secantus, &options).await.unwrap().tables, expected);
    let nx = open(&nx_url).await;
    assert_eq!(capdb::copy(&*secantus, &*nx, &options).await.unwrap().tables, expected);
    let back = open(&sqlite_url()).await;
    assert_eq!(capdb::copy(&*nx, &*back, &CopyOptions::default()).await.unwrap().tables, expected);
    assert_eq!(reports(&*back).await, expected);

    for (name, copy) in [("SecantusDB", &secantus), ("nx-27017", &nx)] {
        assert_eq!(copy.servers().get(server.id).await.unwrap(), server, "{name}");
        assert_eq!(copy.users().find_by_email("ada@example.test").await.unwrap(), Some(admin.clone()), "{name}");
        // The copied node counts the copied server: the rest of its 8192 MiB fits, no more.
        let rest = NewServer {
            name: "the rest".into(),
            description: String::new(),
            owner_id: admin.id,
            node_id: server.node_id,
            template_id: server.template_id,
            limits: Limits { memory_mb: 8192 - server.limits.memory_mb, ..Limits::default() },
            environment: Default::default(),
            allocation: AllocationRequest::AnyFree,
        };
        let too_much = NewServer {
            name: "too much".into(),
            limits: Limits { memory_mb: 16, ..Limits::default() },
            ..rest.clone()
        };
        copy.servers().create(rest, Timestamp::from_millis(1_790_000_001_000)).await.expect(name);
        let err = copy.servers().create(too_much, Timestamp::from_millis(1_790_000_001_000)).await.unwrap_err();
        assert!(err.to_string().contains("not enough memory"), "{name}: {err}");
    }
}
