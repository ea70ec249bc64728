//! MongoDB-wire-compatible servers from PyPI for the tests, SecantusDB (`secantusd-py`) and
//! nx-27017: each test process starts one server of each kind on a free port the first time a
//! test needs it (in memory, so nothing is left on disk) and shares it; every test uses a
//! database of its own, `cap_test_<pid>_<n>`. A server runs under `sh`, which reads the
//! standard input the test process holds open and, when that closes (the test process is gone,
//! however it ended), stops the server and waits for it, so no server outlives its tests.
//! Without the server's executable on PATH a test prints a skip line naming what to
//! `pip install`, unless `CAP_TEST_REQUIRE=1`, which makes it fail.

use capdb::DbConfig;
use capdb::mongo::MongoDatabase;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// A MongoDB-wire-compatible server the tests run.
#[derive(Debug, Clone, Copy)]
pub enum Server {
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
    pub port: u16,
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
pub fn free_port() -> u16 {
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
pub async fn fresh_database_url(server: Server) -> Option<String> {
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
