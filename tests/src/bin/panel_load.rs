//! Load driver for the panel: requests per second and p50/p99 latency of an authenticated
//! `GET /api/servers` (100 servers, SQLite, RBAC applied) and of `/health`, each against a bare
//! axum route returning the same bytes, all measured in one run on loopback.
//!
//! `cargo run --release -p cap-tests --bin panel_load -- [--secs 5] [--connections 32] [--panel-bin target/release/cap-panel] [--only-list]`

use axum::Router;
use axum::routing::get;
use cap_tests::{Cred, TestPanel};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

struct Args {
    secs: u64,
    connections: usize,
    panel_bin: Option<String>,
    /// Only drive the panel's list route (for profiling).
    only_list: bool,
}

fn args() -> Args {
    let mut a = Args { secs: 5, connections: 32, panel_bin: None, only_list: false };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--only-list" {
            a.only_list = true;
            continue;
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--secs" => a.secs = value.parse().expect("--secs"),
            "--connections" => a.connections = value.parse().expect("--connections"),
            "--panel-bin" => a.panel_bin = Some(value),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// One keep-alive HTTP/1.1 GET; returns the body length.
async fn get_once(reader: &mut BufReader<TcpStream>, request: &[u8]) -> std::io::Result<usize> {
    reader.get_mut().write_all(request).await?;
    let mut line = String::new();
    let mut content_length = 0usize;
    let mut status_ok = false;
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        if line.starts_with("HTTP/1.1 ") {
            status_ok = line.as_bytes().get(9) == Some(&b'2');
        }
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            content_length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body).await?;
    if !status_ok {
        return Err(std::io::Error::other(format!("non-2xx response: {}", String::from_utf8_lossy(&body))));
    }
    Ok(content_length)
}

struct Result {
    requests: usize,
    rps: f64,
    p50_us: u128,
    p99_us: u128,
    bytes: usize,
}

/// Hammers `addr` with `connections` keep-alive clients for `secs`, after one second of warm-up.
async fn drive(addr: SocketAddr, path: &str, auth: Option<&str>, connections: usize, secs: u64) -> Result {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if let Some(token) = auth {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    let request = request.into_bytes();
    let warmup_end = Instant::now() + Duration::from_secs(1);
    let end = warmup_end + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut reader = BufReader::new(TcpStream::connect(addr).await.expect("connect"));
            let mut latencies = Vec::new();
            let mut bytes = 0;
            loop {
                let start = Instant::now();
                if start >= end {
                    break;
                }
                let n = get_once(&mut reader, &request).await.expect("request");
                if start >= warmup_end {
                    latencies.push(start.elapsed().as_micros());
                    bytes = n;
                }
            }
            (latencies, bytes)
        }));
    }
    let mut all = Vec::new();
    let mut bytes = 0;
    for t in tasks {
        let (l, b) = t.await.expect("client task");
        all.extend(l);
        bytes = bytes.max(b);
    }
    all.sort_unstable();
    let pct =
        |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0);
    Result { requests: all.len(), rps: all.len() as f64 / secs as f64, p50_us: pct(0.50), p99_us: pct(0.99), bytes }
}

const PATH: &str = "/api/servers?per_page=100";

/// A served panel whose non-admin user owns 100 servers, with that user's token.
struct Fixture {
    addr: SocketAddr,
    token: String,
    list_bytes: Vec<u8>,
    // Keeps the panel's state alive while it serves.
    _panel: TestPanel,
}

impl Fixture {
    async fn new(cached: bool) -> Self {
        let panel = TestPanel::start_full(cap_tests::test_auth_config(), Default::default(), cached).await;
        let node = panel.node("bench", 100).await;
        let template = panel.template("bench").await;
        let (owner, owner_cred) = panel.user("owner", &[]).await;
        for i in 0..100 {
            panel.server(&format!("server {i:03}"), &owner, &node, &template).await;
        }
        let Cred::Bearer(token) = &owner_cred else { unreachable!("login gives a bearer token") };
        // The manual clock never moves, so the access token stays valid for the whole run.
        let (status, list) = panel.get(PATH, &owner_cred).await;
        assert_eq!(status, 200);
        assert_eq!(list["total"], 100, "the user sees exactly their 100 servers");
        let list_bytes = serde_json::to_vec(&list).expect("json");
        let addr = serve(panel.router.clone()).await;
        Self { addr, token: token.clone(), list_bytes, _panel: panel }
    }
}

async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(capcore::panel::listener(listener), router.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .expect("serve");
    });
    addr
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Starts the real binary in a scratch directory, waits for `/health`, reads its RSS.
fn idle_rss(bin: &str) -> Option<u64> {
    // Resolved before the child changes directory.
    let bin = std::fs::canonicalize(bin).ok()?;
    let dir = std::env::temp_dir().join(format!("cap-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).ok()?;
    let mut child = std::process::Command::new(&bin)
        .current_dir(&dir)
        .env("CAP_LISTEN", "127.0.0.1:0")
        .env("CAP_ADMIN_PASSWORD", "load test password")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    // The panel prints `listening on ...` once it serves.
    let stdout = std::io::BufReader::new(child.stdout.take()?);
    let up = std::io::BufRead::lines(stdout).map_while(|l| l.ok()).any(|l| l.starts_with("listening on "));
    // Let start-up allocations settle before reading.
    std::thread::sleep(Duration::from_secs(2));
    let rss = if up { rss_kib(child.id()) } else { None };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    rss
}

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        // Two panels over the same kind of data: as `cap-panel` wires it (sessions and list
        // pages served from memory until a write), and with every read going to SQLite.
        let cached = Fixture::new(true).await;
        let uncached = Fixture::new(false).await;
        assert_eq!(cached.list_bytes.len(), uncached.list_bytes.len(), "both answer the same page");
        let list_bytes = cached.list_bytes.clone();
        let health_bytes = br#"{"status":"ok"}"#.to_vec();
        let bare = Router::new()
            .route(
                "/api/servers",
                get(move || {
                    let b = list_bytes.clone();
                    async move { ([("content-type", "application/json")], b) }
                }),
            )
            .route(
                "/health",
                get(move || {
                    let b = health_bytes.clone();
                    async move { ([("content-type", "application/json")], b) }
                }),
            );
        let bare_addr = serve(bare).await;
        let (c, s) = (args.connections, args.secs);
        if args.only_list {
            let r = drive(cached.addr, PATH, Some(&cached.token), c, s).await;
            println!("panel list only: {:.0} req/s, p50 {} µs, p99 {} µs", r.rps, r.p50_us, r.p99_us);
            return;
        }
        let rows = [
            ("bare axum, same bytes as the list", drive(bare_addr, PATH, None, c, s).await),
            (
                "panel GET /api/servers, as cap-panel wires it",
                drive(cached.addr, PATH, Some(&cached.token), c, s).await,
            ),
            (
                "panel GET /api/servers, every read from SQLite",
                drive(uncached.addr, PATH, Some(&uncached.token), c, s).await,
            ),
            ("bare axum, same bytes as /health", drive(bare_addr, "/health", None, c, s).await),
            ("panel GET /health", drive(cached.addr, "/health", None, c, s).await),
        ];
        println!("connections: {c}, measured seconds per row: {s} (after 1 s warm-up)\n");
        println!("| route | requests | req/s | p50 µs | p99 µs | body bytes |");
        println!("|---|---:|---:|---:|---:|---:|");
        for (name, r) in &rows {
            println!("| {name} | {} | {:.0} | {} | {} | {} |", r.requests, r.rps, r.p50_us, r.p99_us, r.bytes);
        }
        println!();
        println!("list (as wired) / bare ratio: {:.1}%", 100.0 * rows[1].1.rps / rows[0].1.rps);
        println!("list (every read from SQLite) / bare ratio: {:.1}%", 100.0 * rows[2].1.rps / rows[0].1.rps);
        println!("health / bare ratio: {:.1}%", 100.0 * rows[4].1.rps / rows[3].1.rps);
    });
    if let Some(bin) = &args.panel_bin {
        match idle_rss(bin) {
            Some(kib) => println!("idle RSS of {bin}: {:.1} MiB", kib as f64 / 1024.0),
            None => println!("idle RSS of {bin}: could not measure"),
        }
    }
}
