//! Runs the database conformance suite against the MongoDB backend on two MongoDB-wire-compatible
//! servers from PyPI, SecantusDB (`secantusd-py`) and nx-27017, and checks the backend's
//! migrations and connection errors on each.
//!
//! No real `mongod` is used: each test process starts one server of each kind on a free port the
//! first time a test needs it (in memory, so nothing is left on disk) and shares it; every test
//! uses a database of its own, `cap_test_<pid>_<n>`. A server runs under `sh`, which reads the
//! standard input the test process holds open and, when that closes (the test process is gone,
//! however it ended), stops the server and waits for it, so no server outlives its tests.
//! Without the server's executable on PATH every test prints a skip line naming what to
//! `pip install`, unless `CAP_TEST_REQUIRE=1`, which makes it fail.
#![cfg(feature = "mongodb")]

use capcore::backend::Database;
use capdb::DbConfig;
use capdb::mongo::MongoDatabase;
use mongodb::bson::{Document, doc};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// A MongoDB-wire-compatible server the tests run.
#[derive(Debug, Clone, Copy)]
enum Server {
    Secantus,
    Nx,
}

/// How long a server may take to answer after it is started (Python imports included).
const STARTUP: Duration = Duration::from_secs(60);

impl Server {
    fn executable(self) -> &'static str {
        match self {
            Server::Secantus => "secantusd-py",
            Server::Nx => "nx-27017",
        }
    }

    /// What to install for it: the versions these tests were written against (see .ci/run).
    fn package(self) -> &'static str {
        match self {
            Server::Secantus => "SecantusDB==0.7.0b3",
            Server::Nx => "nx-27017==0.8.1",
        }
    }

    /// Its command line, in memory, on `port`, writing whatever it writes into `dir`.
    fn args(self, port: u16, dir: &Path) -> Vec<String> {
        let port = port.to_string();
        let in_dir = |name: &str| dir.join(name).display().to_string();
        match self {
            Server::Secantus => {
                vec![
                    "--host".into(),
                    "127.0.0.1".into(),
                    "--port".into(),
                    port,
                    "--storage-path".into(),
                    ":memory:".into(),
                ]
            }
            Server::Nx => vec![
                "--db".into(),
                "memory".into(),
                "--host".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port,
                "--log-file".into(),
                in_dir("nx-27017.log"),
                "--pid-file".into(),
                in_dir("nx-27017.pid"),
            ],
        }
    }

    fn started(self) -> &'static OnceCell<Result<Running, Unusable>> {
        static SECANTUS: OnceCell<Result<Running, Unusable>> = OnceCell::const_new();
        static NX: OnceCell<Result<Running, Unusable>> = OnceCell::const_new();
        match self {
            Server::Secantus => &SECANTUS,
            Server::Nx => &NX,
        }
    }
}

/// A started server. Its keeper (`sh`) holds the pipe whose end stops the server; it lives in a
/// static, so the pipe closes only when the test process ends.
#[derive(Debug)]
struct Running {
    port: u16,
    _keeper: Child,
}

/// Why a server cannot be used.
#[derive(Debug)]
enum Unusable {
    /// Not installed: a skip, or a failure under `CAP_TEST_REQUIRE=1`.
    Missing(String),
    /// Installed but did not come up: always a failure.
    Broken(String),
}

/// Stops the server (`$3...`) when standard input closes, then removes its directory (`$1`);
/// its output goes to `$2`.
const KEEPER: &str =
    r#"dir=$1; log=$2; shift 2; "$@" >"$log" 2>&1 & p=$!; read _; kill -INT $p 2>/dev/null; wait $p; rm -rf "$dir""#;

fn on_path(executable: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(executable)).find(|candidate| candidate.is_file())
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start(server: Server) -> Result<Running, Unusable> {
    let executable = server.executable();
    let Some(program) = on_path(executable) else {
        return Err(Unusable::Missing(format!(
            "`{executable}` is not on PATH; install it with `pip install {}`",
            server.package()
        )));
    };
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("cap-test-{executable}-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("output.log");
    let keeper = Command::new("sh")
        .args(["-c", KEEPER, "sh"])
        .arg(&dir)
        .arg(&log)
        .arg(&program)
        .args(server.args(port, &dir))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Unusable::Broken(format!("cannot start `{executable}`: {e}")))?;
    // Ready once it answers a ping; each attempt waits at most its own selection timeout.
    let url = format!("mongodb://127.0.0.1:{port}/cap_ready");
    let config = DbConfig { max_connections: 1, acquire_timeout: Duration::from_millis(500) };
    let deadline = Instant::now() + STARTUP;
    loop {
        match MongoDatabase::connect(&url, &config).await {
            Ok(_) => return Ok(Running { port, _keeper: keeper }),
            Err(e) if Instant::now() >= deadline => {
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(Unusable::Broken(format!(
                    "`{executable}` does not answer on port {port} after {STARTUP:?}: {e}; its output:\n{output}"
                )));
            }
            Err(_) => {}
        }
    }
}

/// The URL of a new, empty database on `server` (started on first use), or `None` after a skip
/// line when it is not installed (a failure under `CAP_TEST_REQUIRE=1`).
async fn fresh_database_url(server: Server) -> Option<String> {
    static N: AtomicU64 = AtomicU64::new(0);
    match server.started().get_or_init(|| start(server)).await {
        Ok(running) => Some(format!(
            "mongodb://127.0.0.1:{}/cap_test_{}_{}",
            running.port,
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )),
        Err(Unusable::Missing(message)) if !capcore::conformance::services_required() => {
            eprintln!("skipped: {message} (set CAP_TEST_REQUIRE=1 to fail instead)");
            None
        }
        Err(Unusable::Missing(message)) => panic!("{message}; CAP_TEST_REQUIRE=1 requires it"),
        Err(Unusable::Broken(message)) => panic!("{message}"),
    }
}

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
