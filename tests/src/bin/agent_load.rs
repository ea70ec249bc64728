//! Load driver for agents and the live console, each figure against a baseline in the same run:
//!
//! - console throughput: a game's flood through `cap-agent` and the panel to a WebSocket client,
//!   against the same bytes piped through `cat` to /dev/null;
//! - console round trip: a command sent on the WebSocket and its answer line back (p50/p99);
//! - `cap-agent` RSS idle and with 50 idle game servers running;
//! - `cap-panel` with N simulated agents connected and heartbeating: its CPU and RSS, and
//!   `GET /api/nodes` p50/p99 with and without them.
//!
//! `cargo build --release -p cap-agent -p cap-panel -p cap-test-game-server && cargo run --release -p cap-tests --bin agent_load -- [--lines 200000] [--agents 1000]`

use cap_tests::TestPanel;
use cap_tests::e2e::{AgentProcess, live_connect, workspace_bin};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Args {
    lines: u64,
    agents: usize,
    samples: usize,
}

fn args() -> Args {
    let mut a = Args { lines: 200_000, agents: 1000, samples: 500 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--lines" => a.lines = value.parse().expect("--lines"),
            "--agents" => a.agents = value.parse().expect("--agents"),
            "--samples" => a.samples = value.parse().expect("--samples"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Prints p50 and p99 of `samples` under `label`.
fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{label}, {} samples: p50 {} us, p99 {} us",
        samples.len(),
        percentile(&samples, 0.5).as_micros(),
        percentile(&samples, 0.99).as_micros()
    );
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, in clock ticks (100 per second).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// The flood's bytes, read straight from the game's stdout (how fast the game produces them).
async fn flood_bytes(lines: u64) -> (Vec<u8>, Duration) {
    let mut child = tokio::process::Command::new(workspace_bin("cap-test-game-server"))
        .args(["--flood", &lines.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("game");
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut bytes = Vec::new();
    let mut line = Vec::new();
    let mut started = None;
    loop {
        line.clear();
        if out.read_until(b'\n', &mut line).await.unwrap() == 0 {
            break;
        }
        if line.starts_with(b"flood line ") {
            started.get_or_insert_with(Instant::now);
            bytes.extend_from_slice(&line);
        }
        if line.starts_with(b"flood done") {
            break;
        }
    }
    let took = started.unwrap().elapsed();
    child.kill().await.ok();
    (bytes, took)
}

/// The same bytes through `cat` to /dev/null.
fn cat_baseline(bytes: &[u8]) -> Duration {
    let started = Instant::now();
    let mut cat = std::process::Command::new("cat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create("/dev/null").unwrap())
        .spawn()
        .expect("cat");
    cat.stdin.take().unwrap().write_all(bytes).unwrap();
    cat.wait().unwrap();
    started.elapsed()
}

async fn console_figures(a: &Args) {
    let (bytes, produced) = flood_bytes(a.lines).await;
    let cat = cat_baseline(&bytes);
    let config =
        capcore::panel::PanelConfig { ws_send_queue: 1 << 20, ws_messages_per_second: 10_000, ..Default::default() };
    let panel = TestPanel::start_with(cap_tests::test_auth_config(), config).await;
    let addr = panel.serve().await;
    let (node, token) = panel.node_with_token("bench", 60).await;
    let data = cap_tests::e2e::scratch_dir("bench");
    let agent = AgentProcess::spawn_with(addr, &token, &data, &[("CAP_CONSOLE_LINES_PER_SECOND", "100000000")]);
    panel.wait_node(&node, true).await;
    let idle_rss = rss_kib(agent.pid() as u32);
    let (owner_id, owner) = panel.user("owner", &[]).await;
    let flood = panel
        .game_template("flood", &["--flood", &a.lines.to_string()], json!({"type": "signal", "value": "SIGTERM"}))
        .await;
    let server = panel.server("flood", &owner_id, &node, &flood).await;
    panel.wait_state(&server, "offline").await;
    let mut live = live_connect(addr, &server, &owner).await.unwrap();
    live.next().await;
    let post = |path: String, body: Value| {
        let (panel, owner) = (&panel, &owner);
        async move { panel.post(&path, owner, body).await }
    };
    assert_eq!(post(format!("/api/servers/{server}/power"), json!({"action": "start"})).await.0, 202);
    // Count flood lines until the last one, or until nothing came for two seconds.
    let mut got = 0u64;
    let mut first = None;
    let mut last = Instant::now();
    loop {
        let Ok(Some(v)) = tokio::time::timeout(Duration::from_secs(2), live.next()).await else { break };
        let line = v["line"].as_str().unwrap_or("");
        if line.starts_with("flood line ") {
            first.get_or_insert_with(Instant::now);
            got += 1;
            last = Instant::now();
        }
        if line.starts_with("flood done") {
            break;
        }
    }
    live.forget();
    let through = last - first.expect("flood lines arrived");
    let mb = bytes.len() as f64 / 1e6;
    let delivered_mb = mb * got as f64 / a.lines as f64;
    println!("console flood of {} lines ({mb:.1} MB):", a.lines);
    println!(
        "  game stdout read directly:        {:>8.1} ms  {:>7.1} MB/s",
        produced.as_secs_f64() * 1e3,
        mb / produced.as_secs_f64()
    );
    println!(
        "  same bytes | cat > /dev/null:     {:>8.1} ms  {:>7.1} MB/s",
        cat.as_secs_f64() * 1e3,
        mb / cat.as_secs_f64()
    );
    let rate = delivered_mb / through.as_secs_f64();
    println!(
        "  game -> agent -> panel -> browser: {:>8.1} ms  {:>7.1} MB/s delivered ({:.0} lines/s); {got} of {} lines delivered, the rest dropped by the agent's bounded queues; {:.1}% of cat's rate",
        through.as_secs_f64() * 1e3,
        rate,
        got as f64 / through.as_secs_f64(),
        a.lines,
        rate / (mb / cat.as_secs_f64()) * 100.0
    );
    assert_eq!(post(format!("/api/servers/{server}/power"), json!({"action": "kill"})).await.0, 202);
    live.until_state("offline").await;

    // Round trip of one line: a command on the WebSocket, its answer back.
    let quiet = panel.game_template("quiet", &[], json!({"type": "command", "value": "stop"})).await;
    let echo = panel.server("echo", &owner_id, &node, &quiet).await;
    panel.wait_state(&echo, "offline").await;
    let mut live = live_connect(addr, &echo, &owner).await.unwrap();
    assert_eq!(post(format!("/api/servers/{echo}/power"), json!({"action": "start"})).await.0, 202);
    live.until_state("running").await;
    let mut samples = Vec::with_capacity(a.samples);
    for i in 0..a.samples {
        let started = Instant::now();
        live.send(json!({"type": "command", "command": format!("say rt {i}")})).await;
        live.until_line(&format!("[Server] rt {i}")).await;
        samples.push(started.elapsed());
        if live.seen.len() > 10_000 {
            live.forget();
        }
    }
    report("console round trip (WebSocket command -> game -> answer line)", samples);
    // One way: the game stamps the line with the time it writes it; the browser notes arrival.
    let mut one_way = Vec::with_capacity(a.samples);
    let now_micros = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros();
    for _ in 0..a.samples {
        live.send(json!({"type": "command", "command": "clock"})).await;
        let line = live.until_line("clock ").await;
        let arrived = now_micros();
        let stamped: u128 = line["line"].as_str().unwrap()[6..].parse().unwrap();
        one_way.push(Duration::from_micros(arrived.saturating_sub(stamped) as u64));
        if live.seen.len() > 10_000 {
            live.forget();
        }
    }
    report("console line one way (game writes it -> browser has it)", one_way);

    // Agent memory with 50 idle servers running.
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(panel.server(&format!("idle-{i}"), &owner_id, &node, &quiet).await);
    }
    for id in &ids {
        panel.wait_state(id, "offline").await;
        assert_eq!(post(format!("/api/servers/{id}/power"), json!({"action": "start"})).await.0, 202);
    }
    for id in &ids {
        panel.wait_state(id, "running").await;
    }
    let busy_rss = rss_kib(agent.pid() as u32);
    println!("cap-agent RSS: idle {idle_rss} KiB; with 51 idle servers running {busy_rss} KiB");
    for id in ids.iter().chain([&echo]) {
        post(format!("/api/servers/{id}/power"), json!({"action": "kill"})).await;
    }
    drop(agent);
}

/// One simulated agent: hello, welcome, answer every request `ok`, heartbeat every `every`.
async fn simulated_agent(url: String, token: String, every: Duration, connected: tokio::sync::mpsc::Sender<()>) {
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("simulated agent connects");
    let (mut sink, mut stream) = ws.split();
    let hello = json!({"type": "hello", "protocol_min": 1, "protocol_max": 1, "agent_version": "sim",
        "facts": {"hostname": "sim", "os": "sim", "kernel": "sim", "arch": "x86_64", "cpus": 4,
                  "memory_bytes": 8u64 << 30, "disk_bytes": 100u64 << 30, "runtimes": ["process"], "enforced_limits": []}});
    sink.send(Message::Text(hello.to_string().into())).await.unwrap();
    let welcome = stream.next().await.unwrap().unwrap();
    assert!(welcome.to_text().unwrap().contains("welcome"), "{welcome}");
    connected.send(()).await.ok();
    let heartbeat = json!({"type": "heartbeat", "cpu_percent": 3.5, "memory_used_bytes": 1u64 << 30,
        "memory_total_bytes": 8u64 << 30, "disk_used_bytes": 10u64 << 30, "disk_total_bytes": 100u64 << 30, "servers_running": 0})
    .to_string();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if sink.send(Message::Text(heartbeat.clone().into())).await.is_err() { return; }
            }
            frame = stream.next() => {
                let Some(Ok(Message::Text(t))) = frame else { return };
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "request" {
                    let result = json!({"type": "result", "id": v["id"], "outcome": {"status": "ok"}});
                    if sink.send(Message::Text(result.to_string().into())).await.is_err() { return; }
                }
            }
        }
    }
}

/// `GET path` from `connections` keep-alive clients for `secs`; p50/p99 and requests per second.
async fn api_latency(
    addr: SocketAddr,
    path: &str,
    token: &str,
    connections: usize,
    secs: u64,
) -> (Duration, Duration, f64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (path, token) = (path.to_string(), token.to_string());
        tasks.push(tokio::spawn(async move {
            let client = reqwest_like::Client::connect(addr).await;
            let mut client = client;
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                client.get(&path, &token).await;
                samples.push(started.elapsed());
            }
            samples
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let rps = all.len() as f64 / secs as f64;
    (percentile(&all, 0.5), percentile(&all, 0.99), rps)
}

/// A minimal keep-alive HTTP/1.1 client (GET only).
mod reqwest_like {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    pub struct Client {
        reader: BufReader<TcpStream>,
        host: String,
    }

    impl Client {
        pub async fn connect(addr: std::net::SocketAddr) -> Self {
            Self { reader: BufReader::new(TcpStream::connect(addr).await.unwrap()), host: addr.to_string() }
        }

        pub async fn get(&mut self, path: &str, token: &str) -> usize {
            let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\r\n", self.host);
            self.reader.get_mut().write_all(req.as_bytes()).await.unwrap();
            let mut line = String::new();
            let mut len = 0;
            let mut ok = false;
            loop {
                line.clear();
                self.reader.read_line(&mut line).await.unwrap();
                if line.starts_with("HTTP/1.1 ") {
                    ok = line.as_bytes()[9] == b'2';
                }
                if line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            self.reader.read_exact(&mut body).await.unwrap();
            assert!(ok, "{}", String::from_utf8_lossy(&body));
            len
        }
    }
}

async fn panel_with_agents(a: &Args) {
    let dir = cap_tests::e2e::scratch_dir("agents-bench");
    let bin = workspace_bin("cap-panel");
    std::fs::write(dir.join("cap.toml"), "[agents]\nheartbeat_interval_ms = 1000\n").unwrap();
    let mut panel = tokio::process::Command::new(bin)
        .current_dir(&dir)
        .env("CAP_LISTEN", "127.0.0.1:0")
        .env("CAP_LOCAL_AGENT", "false")
        .env("CAP_CONFIG", "cap.toml")
        .env("CAP_ADMIN_PASSWORD", "bench admin password")
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("cap-panel");
    let pid = panel.id().unwrap();
    let mut out = tokio::io::BufReader::new(panel.stdout.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = out.next_line().await.unwrap().expect("cap-panel prints where it listens");
        if let Some(at) = line.strip_prefix("listening on http://") {
            break at.parse().unwrap();
        }
    };
    let client = TestHttp { addr };
    let token = client.login("admin@localhost.localdomain", "bench admin password").await;
    let mut tokens = Vec::new();
    for i in 0..a.agents {
        let body = json!({"name": format!("sim-{i}"), "fqdn": "127.0.0.1", "memory_mb": 8192, "disk_mb": 100000});
        let created = client.post("/api/nodes", &token, &body).await;
        tokens.push(created["token"].as_str().unwrap().to_string());
    }
    let path = "/api/nodes?per_page=100";
    let (b50, b99, brps) = api_latency(addr, path, &token, 8, 5).await;
    let rss_before = rss_kib(pid);

    let (tx, mut rx) = tokio::sync::mpsc::channel(a.agents);
    let url = format!("ws://{addr}/api/agent/v1/connect");
    let started = Instant::now();
    for t in tokens {
        tokio::spawn(simulated_agent(url.clone(), t, Duration::from_secs(1), tx.clone()));
    }
    for _ in 0..a.agents {
        rx.recv().await.unwrap();
    }
    let connect_all = started.elapsed();
    // Let the syncs finish, then measure a quiet 10 s of heartbeats.
    let listed = client.get("/api/nodes?per_page=1", &token).await;
    assert_eq!(listed["total"], a.agents);
    let t0 = cpu_ticks(pid);
    let w0 = Instant::now();
    let (a50, a99, arps) = api_latency(addr, path, &token, 8, 5).await;
    let cpu_during_api = (cpu_ticks(pid) - t0) as f64 / 100.0 / w0.elapsed().as_secs_f64() * 100.0;
    let t1 = cpu_ticks(pid);
    let w1 = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_cpu = (cpu_ticks(pid) - t1) as f64 / 100.0 / w1.elapsed().as_secs_f64() * 100.0;
    let rss_after = rss_kib(pid);
    let connected = client.get("/api/nodes?per_page=100", &token).await;
    let online = connected["data"].as_array().unwrap().iter().filter(|n| n["connected"] == true).count();
    println!(
        "cap-panel with {} simulated agents (heartbeat every 1 s), all connected in {:.2} s:",
        a.agents,
        connect_all.as_secs_f64()
    );
    println!(
        "  panel CPU while only heartbeating: {idle_cpu:.1}% of one core; RSS {rss_before} KiB before, {rss_after} KiB with them"
    );
    println!(
        "  GET {path} (8 connections, 5 s): without agents p50 {} us p99 {} us ({brps:.0} req/s)",
        b50.as_micros(),
        b99.as_micros()
    );
    println!(
        "  GET {path} (8 connections, 5 s): with agents    p50 {} us p99 {} us ({arps:.0} req/s), panel CPU {cpu_during_api:.0}%",
        a50.as_micros(),
        a99.as_micros()
    );
    println!("  nodes on the first page reported connected: {online} of 100");
    panel.kill().await.ok();
}

struct TestHttp {
    addr: SocketAddr,
}

impl TestHttp {
    async fn send(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Value {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
        s.write_all(req.as_bytes()).await.unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.unwrap();
        let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        serde_json::from_str(body).unwrap_or(Value::Null)
    }
    async fn login(&self, email: &str, password: &str) -> String {
        let v = self.send("POST", "/api/auth/login", None, Some(&json!({"email": email, "password": password}))).await;
        v["access_token"].as_str().expect("login").to_string()
    }
    async fn post(&self, path: &str, token: &str, body: &Value) -> Value {
        self.send("POST", path, Some(token), Some(body)).await
    }
    async fn get(&self, path: &str, token: &str) -> Value {
        self.send("GET", path, Some(token), None).await
    }
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        console_figures(&a).await;
        panel_with_agents(&a).await;
    });
}
