//! Runs the database conformance suite against the MongoDB backend on two MongoDB-wire-compatible
//! servers from PyPI, SecantusDB (`secantusd-py`) and nx-27017 (started by `common::mongodb`;
//! no real `mongod` is used), and checks the backend's migrations, its counting of what a node
//! gives out and its connection errors on each.
#![cfg(feature = "mongodb")]

mod common;

use capcore::backend::Database;
use capcore::ids::{NodeId, TemplateId, UserId};
use capcore::model::*;
use capcore::time::Timestamp;
use capdb::DbConfig;
use capdb::mongo::MongoDatabase;
use common::mongodb::{Server, free_port, fresh_database_url};
use mongodb::bson::{Document, doc};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn open(url: &str) -> Arc<dyn Database> {
    capdb::connect(url, &DbConfig::default()).await.expect("connect to the test database")
}

async fn fresh(server: Server) -> Option<Arc<dyn Database>> {
    let db = open(&fresh_database_url(server).await?).await;
    db.migrate().await.expect("migrate");
    Some(db)
}

async fn fresh_secantus() -> Option<Arc<dyn Database>> {
    fresh(Server::Secantus).await
}

async fn fresh_nx() -> Option<Arc<dyn Database>> {
    fresh(Server::Nx).await
}

/// A collection of the database at `url`, through the driver itself.
async fn raw(url: &str, collection: &str) -> mongodb::Collection<Document> {
    let db = MongoDatabase::connect(url, &DbConfig::default()).await.unwrap();
    db.database().collection(collection)
}

async fn two_panels_starting_at_once_apply_each_migration_once(server: Server) {
    let n_migrations = capdb::mongo::MIGRATIONS.len() as u32;
    for round in 0..3 {
        let Some(url) = fresh_database_url(server).await else { return };
        let (a, b) = (open(&url).await, open(&url).await);
        assert_eq!(a.backend_name(), "mongodb");
        let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
        let (ra, rb) = (ra.expect("first panel migrates"), rb.expect("second panel migrates"));
        assert_eq!(ra + rb, n_migrations, "round {round}: each migration applied by exactly one of them");
        assert_eq!(a.migrate().await.unwrap(), 0);
        assert_eq!(b.users().count().await.unwrap(), 0, "the schema works");
        let recorded = raw(&url, "cap_migrations").await.count_documents(doc! {}).await.unwrap();
        assert_eq!(recorded, u64::from(n_migrations), "recorded once");
        let locks = raw(&url, "cap_locks").await.count_documents(doc! {}).await.unwrap();
        assert_eq!(locks, 0, "the migration lock was released");
    }
}

async fn a_migration_lock_left_by_a_dead_panel_expires(server: Server) {
    let Some(url) = fresh_database_url(server).await else { return };
    let expired = doc! { "_id": "migrations", "token": "dead-panel", "until": 1_i64 };
    raw(&url, "cap_locks").await.insert_one(expired).await.unwrap();
    let started = Instant::now();
    assert_eq!(open(&url).await.migrate().await.unwrap(), capdb::mongo::MIGRATIONS.len() as u32);
    assert!(started.elapsed() < Duration::from_secs(10), "took over at once: {:?}", started.elapsed());
}

async fn a_schema_newer_than_this_build_is_refused(server: Server) {
    let Some(url) = fresh_database_url(server).await else { return };
    open(&url).await.migrate().await.unwrap();
    let future = doc! { "_id": 7_i64, "name": "from the future", "checksum": "x" };
    raw(&url, "cap_migrations").await.insert_one(future).await.unwrap();
    let err = open(&url).await.migrate().await.unwrap_err();
    assert!(matches!(err, capcore::Error::Conflict { .. }), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("at version 7 (from the future), newer than this build knows (up to 1)"), "{err}");
}

async fn an_applied_migration_that_differs_from_this_builds_is_refused(server: Server) {
    let Some(url) = fresh_database_url(server).await else { return };
    open(&url).await.migrate().await.unwrap();
    let changed = doc! { "$set": { "checksum": "abc" } };
    raw(&url, "cap_migrations").await.update_one(doc! { "_id": 1_i64 }, changed).await.unwrap();
    let err = open(&url).await.migrate().await.unwrap_err();
    assert!(matches!(err, capcore::Error::Conflict { .. }), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("migration 1 (initial) in the database differs from this build's"), "{err}");
}

async fn a_url_without_a_database_is_invalid(server: Server) {
    let Some(url) = fresh_database_url(server).await else { return };
    let server_only = url.rsplit_once('/').unwrap().0;
    for url in [server_only.to_string(), format!("{server_only}/")] {
        let err = capdb::connect(&url, &DbConfig::default()).await.err().expect("no database named");
        assert!(matches!(err, capcore::Error::Invalid(_)), "{url}: {err:?}");
        assert!(err.to_string().contains("database_url"), "{url}: {err}");
    }
}

/// Now by this machine's clock, as the backend's lease and change expiry read it.
fn now() -> Timestamp {
    Timestamp::from_millis(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
    )
}

/// A node of 1000 MiB (no overallocation) with ten ports, an owner and a template, through the
/// backend itself.
async fn node_with_room(db: &dyn Database) -> (NodeId, UserId, TemplateId) {
    let now = now();
    let owner = db
        .users()
        .create(
            NewUser {
                username: "owner".to_string(),
                email: "owner@example.com".to_string(),
                password_hash: "x".to_string(),
            },
            now,
        )
        .await
        .unwrap();
    let node = NewNode {
        name: "node".to_string(),
        description: String::new(),
        fqdn: "node.example.com".to_string(),
        memory_mb: 1000,
        memory_overallocate: 0,
        disk_mb: 1000,
        disk_overallocate: -1,
        token_hash: "hash".to_string(),
    };
    let node = db.nodes().create(node, now).await.unwrap();
    let ports: Vec<u16> = (0..10).map(|i| 25_565 + i).collect();
    db.allocations().add(node.id, "127.0.0.1", &ports).await.unwrap();
    let spec = serde_json::from_str(include_str!("../../examples/templates/minetest-server.json")).unwrap();
    let template = db.templates().create(spec, now).await.unwrap();
    (node.id, owner.id, template.id)
}

async fn create(
    db: &dyn Database,
    (node, owner, template): (NodeId, UserId, TemplateId),
    name: &str,
    memory_mb: i64,
) -> capcore::Result<capcore::model::Server> {
    let new = NewServer {
        name: name.to_string(),
        description: String::new(),
        owner_id: owner,
        node_id: node,
        template_id: template,
        limits: Limits { memory_mb, ..Limits::default() },
        environment: Default::default(),
        allocation: AllocationRequest::AnyFree,
    };
    db.servers().create(new, now()).await
}

/// The node's counters as stored: used memory, and the number of changes recorded in flight.
async fn counters(url: &str, node: NodeId) -> (i64, usize) {
    let doc = raw(url, "nodes").await.find_one(doc! { "_id": node.to_string() }).await.unwrap().unwrap();
    let used = match doc.get("used_memory") {
        Some(mongodb::bson::Bson::Int64(n)) => *n,
        Some(mongodb::bson::Bson::Int32(n)) => i64::from(*n),
        other => panic!("used_memory is {other:?}"),
    };
    (used, doc.get_document("pending").unwrap().len())
}

/// A panel that died in the middle of a creation left the node counting 900 MiB that no server
/// has, and its change recorded. Once the change has expired, the node is recounted from its
/// servers when a creation would otherwise be refused; while it has not, it is trusted.
async fn a_change_left_by_a_dead_panel_is_recounted_once_expired(server: Server) {
    let Some(url) = fresh_database_url(server).await else { return };
    let db = open(&url).await;
    db.migrate().await.unwrap();
    let world = node_with_room(&*db).await;
    create(&*db, world, "first", 100).await.unwrap();
    assert_eq!(counters(&url, world.0).await, (100, 0), "counted, and the change finished");

    let nodes = raw(&url, "nodes").await;
    let left_behind = |until: i64| doc! { "$inc": { "used_memory": 900_i64 }, "$set": { "pending.dead": until } };
    let in_an_hour = now().0 + 3_600_000;
    nodes.update_one(doc! { "_id": world.0.to_string() }, left_behind(in_an_hour)).await.unwrap();
    let err = create(&*db, world, "second", 500).await.unwrap_err();
    assert!(matches!(err, capcore::Error::Conflict { .. }), "a live change is trusted: {err:?}");
    assert!(err.to_string().contains("1500 MiB would be given out of 1000 MiB"), "{err}");

    let expired = doc! { "$set": { "pending.dead": 1_i64 } };
    nodes.update_one(doc! { "_id": world.0.to_string() }, expired).await.unwrap();
    create(&*db, world, "second", 500).await.expect("recounted: 100 MiB are used, 500 more fit");
    assert_eq!(counters(&url, world.0).await, (600, 0), "the expired change is gone with its 900 MiB");
    let err = create(&*db, world, "third", 401).await.unwrap_err();
    assert!(err.to_string().contains("1001 MiB would be given out of 1000 MiB"), "{err}");
}

/// A node document without counters or lease (written before they existed, or imported) is
/// counted from its servers on first use.
async fn a_node_without_counters_is_counted_on_first_use(server: Server) {
    let Some(url) = fresh_database_url(server).await else { return };
    let db = open(&url).await;
    db.migrate().await.unwrap();
    let world = node_with_room(&*db).await;
    let first = create(&*db, world, "first", 300).await.unwrap();
    let strip = doc! { "$unset": { "used_memory": "", "used_disk": "", "pending": "", "lock": "" } };
    raw(&url, "nodes").await.update_one(doc! { "_id": world.0.to_string() }, strip).await.unwrap();
    create(&*db, world, "second", 700).await.expect("300 + 700 MiB fit in 1000 MiB");
    assert_eq!(counters(&url, world.0).await, (1000, 0));
    db.servers().delete(first.id).await.unwrap();
    assert_eq!(counters(&url, world.0).await, (700, 0), "a deletion gives its memory back");
}

/// Needs no server: the port is one nothing listens on.
async fn an_unreachable_server_is_unavailable_in_time() {
    let config = DbConfig { acquire_timeout: Duration::from_secs(2), ..DbConfig::default() };
    let started = Instant::now();
    let url = format!("mongodb://127.0.0.1:{}/cap", free_port());
    let err = capdb::connect(&url, &config).await.err().expect("no server");
    assert!(matches!(err, capcore::Error::Unavailable { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "gave up after {:?}", started.elapsed());
}

/// Stamps the backend's own tests for one server.
macro_rules! backend_tests {
    ($server:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn two_panels_starting_at_once_apply_each_migration_once() {
            super::two_panels_starting_at_once_apply_each_migration_once($server).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_migration_lock_left_by_a_dead_panel_expires() {
            super::a_migration_lock_left_by_a_dead_panel_expires($server).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_schema_newer_than_this_build_is_refused() {
            super::a_schema_newer_than_this_build_is_refused($server).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_applied_migration_that_differs_from_this_builds_is_refused() {
            super::an_applied_migration_that_differs_from_this_builds_is_refused($server).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_url_without_a_database_is_invalid() {
            super::a_url_without_a_database_is_invalid($server).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_change_left_by_a_dead_panel_is_recounted_once_expired() {
            super::a_change_left_by_a_dead_panel_is_recounted_once_expired($server).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_node_without_counters_is_counted_on_first_use() {
            super::a_node_without_counters_is_counted_on_first_use($server).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_unreachable_server_is_unavailable_in_time() {
            super::an_unreachable_server_is_unavailable_in_time().await;
        }
    };
}

mod secantus {
    capcore::database_conformance_tests!(super::fresh_secantus, "mongodb-secantusdb");
    backend_tests!(super::Server::Secantus);
}

mod nx_27017 {
    capcore::database_conformance_tests!(super::fresh_nx, "mongodb-nx-27017");
    backend_tests!(super::Server::Nx);
}
