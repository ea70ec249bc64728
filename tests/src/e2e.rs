//! End-to-end support: the panel served on a real loopback socket, `cap-agent` as a real child
//! process, and a browser-like WebSocket client for a server's live feed.

use crate::{Cred, TestPanel};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single wait may take before the test fails (a guard, not a synchronisation).
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A binary built by `cargo test --workspace` next to the test executables.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // Test executables live in `target/<profile>/deps`, binaries of this crate beside the others.
    let beside = exe.with_file_name(name);
    let path =
        if beside.exists() { beside } else { exe.parent().and_then(Path::parent).expect("target dir").join(name) };
    assert!(path.exists(), "{} is missing: run `cargo test --workspace`, which builds it", path.display());
    path
}

/// A fresh scratch directory.
pub fn scratch_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join("cap-e2e").join(format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Polls `check` until it returns `Some`, failing the test after [`DEADLINE`].
pub async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(started.elapsed() < DEADLINE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl TestPanel {
    /// Serves this panel's router on 127.0.0.1 (a real socket), for agents and WebSockets.
    pub async fn serve(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let app = self.router.clone().into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(capcore::panel::listener(listener), app).await.expect("serve") });
        addr
    }

    /// Creates a node with `ports` allocations and returns its id and agent token.
    pub async fn node_with_token(&self, name: &str, ports: u16) -> (String, String) {
        let admin = self.admin().await;
        let (status, body) = self
            .post(
                "/api/nodes",
                &admin,
                json!({"name": name, "fqdn": "127.0.0.1", "memory_mb": 65536, "disk_mb": 1048576}),
            )
            .await;
        assert_eq!(status, 200, "create node: {body}");
        let id = body["node"]["id"].as_str().expect("node id").to_string();
        let token = body["token"].as_str().expect("token").to_string();
        if ports > 0 {
            // Each node of this process gets ports of its own: the agent refuses to start a
            // server whose port another test's game holds.
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let offset = NEXT.fetch_add(u32::from(ports), std::sync::atomic::Ordering::Relaxed) % 8000;
            let first = 31000 + offset as u16;
            let range = format!("{first}-{}", first + ports - 1);
            let (status, body) = self
                .post(&format!("/api/nodes/{id}/allocations"), &admin, json!({"ip": "127.0.0.1", "ports": [range]}))
                .await;
            assert_eq!(status, 200, "add allocations: {body}");
        }
        (id, token)
    }

    /// Serves this panel, creates a node with `ports` allocations, and starts `cap-agent` for it
    /// (with the extra `CAP_*` `settings`, in a fresh data directory), once it is connected.
    pub async fn agent_node(&self, tag: &str, ports: u16, settings: &[(&str, &str)]) -> AgentNode {
        let addr = self.serve().await;
        let (node, token) = self.node_with_token(tag, ports).await;
        let agent = AgentProcess::spawn_with(addr, &token, &scratch_dir(tag), settings);
        self.wait_node(&node, true).await;
        AgentNode { addr, node, token, agent }
    }

    /// A template running the test game server with `extra` options; `MOTD` is a free-text
    /// variable passed as one argument.
    pub async fn game_template(&self, name: &str, extra: &[&str], stop: Value) -> String {
        let game = workspace_bin("cap-test-game-server");
        let mut startup = format!("{} --port {{{{SERVER_PORT}}}} --motd {{{{MOTD}}}}", game.display());
        for e in extra {
            startup.push(' ');
            startup.push_str(e);
        }
        let spec = json!({
            "name": name,
            "startup": startup,
            "stop": stop,
            "variables": [
                {"name": "Message of the day", "env": "MOTD", "default": "welcome", "rules": "required|string|max:200"}
            ],
            "ready_patterns": [{"type": "contains", "value": "Done ("}],
            "install": {"script": "echo installing into \"$PWD\"\necho done > installed.txt\n", "entrypoint": "sh"}
        });
        let (status, body) = self.post("/api/templates", &self.admin().await, spec).await;
        assert_eq!(status, 200, "create template: {body}");
        body["id"].as_str().expect("template id").to_string()
    }

    /// The server's state as the REST API reports it.
    pub async fn state_of(&self, server: &str) -> String {
        let (status, body) = self.get(&format!("/api/servers/{server}"), &self.admin().await).await;
        assert_eq!(status, 200, "{body}");
        body["state"].as_str().expect("state").to_string()
    }

    /// Waits until the REST API reports `state`.
    pub async fn wait_state(&self, server: &str, state: &str) {
        wait_until(&format!("server {server} is {state}"), || async {
            (self.state_of(server).await == state).then_some(())
        })
        .await
    }

    pub async fn node_connected(&self, node: &str) -> bool {
        let (status, body) = self.get(&format!("/api/nodes/{node}"), &self.admin().await).await;
        assert_eq!(status, 200, "{body}");
        body["connected"].as_bool().expect("connected")
    }

    pub async fn wait_node(&self, node: &str, connected: bool) {
        wait_until(&format!("node {node} connected={connected}"), || async {
            (self.node_connected(node).await == connected).then_some(())
        })
        .await
    }
}

/// A served panel's node with its connected agent (see [`TestPanel::agent_node`]).
#[derive(Debug)]
pub struct AgentNode {
    pub addr: SocketAddr,
    pub node: String,
    pub token: String,
    pub agent: AgentProcess,
}

/// `cap-agent` as a child process.
#[derive(Debug)]
pub struct AgentProcess {
    pub child: tokio::process::Child,
    pub data_dir: PathBuf,
}

impl AgentProcess {
    pub fn spawn(panel: SocketAddr, token: &str, data_dir: &Path) -> Self {
        Self::spawn_with(panel, token, data_dir, &[])
    }

    /// Like [`spawn`](Self::spawn), with more `CAP_*` settings in the agent's environment.
    pub fn spawn_with(panel: SocketAddr, token: &str, data_dir: &Path, settings: &[(&str, &str)]) -> Self {
        let child = tokio::process::Command::new(workspace_bin("cap-agent"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CAP_PANEL_URL", format!("http://{panel}"))
            .env("CAP_NODE_TOKEN", token)
            .env("CAP_DATA_DIR", data_dir)
            .env("RUST_LOG", "warn")
            .envs(settings.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start cap-agent");
        Self { child, data_dir: data_dir.to_path_buf() }
    }

    /// The pid of a server's game as the agent recorded it (`run/<id>/run.json`), if it runs.
    pub fn game_pid(&self, server: &str) -> Option<i32> {
        game_pid(&self.data_dir.join("run").join(server))
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("agent running") as i32
    }

    /// SIGKILL, and reaped.
    pub async fn kill9(&mut self) {
        self.child.start_kill().expect("kill agent");
        self.child.wait().await.expect("reap agent");
    }

    /// SIGTERM, and reaped.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), nix::sys::signal::Signal::SIGTERM)
            .expect("signal agent");
        tokio::time::timeout(DEADLINE, self.child.wait()).await.expect("agent exits on SIGTERM").expect("reap")
    }

    /// The agent's resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("agent status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for AgentProcess {
    /// The agent dies with the test; its games, which outlive an agent by design, are killed
    /// here by process group so no test leaves processes behind. An agent the test already
    /// ended has handed its games over to the next agent on the same data (they stay).
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = self.child.start_kill();
        let Ok(runs) = std::fs::read_dir(self.data_dir.join("run")) else { return };
        for pid in runs.flatten().filter_map(|run| game_pid(&run.path())) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// The pid in a run directory's `run.json`.
fn game_pid(run_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(run_dir.join("run.json")).ok()?;
    serde_json::from_str::<Value>(&text).ok()?["pid"].as_i64().map(|p| p as i32)
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A browser-like client of `/api/servers/{id}/ws`.
#[derive(Debug)]
pub struct LiveClient {
    socket: Socket,
    /// Every message received so far, in order.
    pub seen: Vec<Value>,
    /// Where the next search of each kind starts: states and console lines are each ordered,
    /// but not against each other (state changes travel ahead of console lines).
    cursors: std::collections::HashMap<&'static str, usize>,
    /// The reason the server gave when it closed the socket.
    pub close_reason: Option<String>,
}

/// Opens the live feed with `cred` (bearer); the HTTP status when refused.
pub async fn live_connect(addr: SocketAddr, server: &str, cred: &Cred) -> Result<LiveClient, u16> {
    live_connect_with(addr, server, cred, None).await
}

/// Like [`live_connect`], with the client's socket receive buffer set to `recv_buffer` bytes
/// (a small one makes a browser that stops reading look slow quickly).
pub async fn live_connect_with(
    addr: SocketAddr,
    server: &str,
    cred: &Cred,
    recv_buffer: Option<u32>,
) -> Result<LiveClient, u16> {
    connect_feed(addr, &format!("/api/servers/{server}/ws"), cred, recv_buffer).await
}

/// Opens the server's summary feed (`?summary=true`: state and resource use only).
pub async fn live_connect_summary(addr: SocketAddr, server: &str, cred: &Cred) -> Result<LiveClient, u16> {
    connect_feed(addr, &format!("/api/servers/{server}/ws?summary=true"), cred, None).await
}

async fn connect_feed(addr: SocketAddr, path: &str, cred: &Cred, recv_buffer: Option<u32>) -> Result<LiveClient, u16> {
    let mut request = format!("ws://{addr}{path}").into_client_request().expect("websocket request");
    match cred {
        Cred::Bearer(t) => {
            request.headers_mut().insert("authorization", format!("Bearer {t}").parse().expect("header"));
        }
        Cred::Cookie { access, .. } => {
            request.headers_mut().insert("cookie", format!("cap_access={access}").parse().expect("header"));
        }
        Cred::None => {}
    }
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).expect("receive buffer size");
    }
    let stream = socket.connect(addr).await.expect("connect");
    match tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await {
        Ok((socket, _)) => Ok(LiveClient { socket, seen: Vec::new(), cursors: Default::default(), close_reason: None }),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

impl LiveClient {
    /// The next message, or `None` when the socket closed.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let frame = tokio::time::timeout(DEADLINE, self.socket.next()).await.expect("a message in time")?;
            match frame {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).expect("JSON message");
                    self.seen.push(v.clone());
                    return Some(v);
                }
                Ok(Message::Close(frame)) => {
                    self.close_reason = Some(frame.map(|f| f.reason.to_string()).unwrap_or_default());
                    return None;
                }
                Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads until the socket closes; returns the close reason.
    pub async fn until_closed(&mut self) -> String {
        tokio::time::timeout(DEADLINE, async { while self.next().await.is_some() {} })
            .await
            .expect("the socket closes in time");
        self.close_reason.clone().unwrap_or_default()
    }

    /// Reads until a message satisfies `want` and returns it.
    /// Finds the first message of `kind` after the previous find of that kind that satisfies
    /// `want`, reading more as needed.
    pub async fn until_kind(&mut self, kind: &'static str, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let from = self.cursors.get(kind).copied().unwrap_or(0);
        let found = tokio::time::timeout(DEADLINE, async {
            let mut i = from;
            loop {
                while i < self.seen.len() {
                    if self.seen[i]["type"] == kind && want(&self.seen[i]) {
                        return Some(i);
                    }
                    i += 1;
                }
                self.next().await?;
            }
        })
        .await;
        match found {
            Ok(Some(i)) => {
                self.cursors.insert(kind, i + 1);
                self.seen[i].clone()
            }
            Ok(None) => panic!("the live socket closed before {what}; saw {:?}", self.tail()),
            Err(_) => panic!("timed out waiting for {what}; saw {:?}", self.tail()),
        }
    }

    pub async fn until(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let found = tokio::time::timeout(DEADLINE, async {
            loop {
                match self.next().await {
                    Some(v) if want(&v) => return Some(v),
                    Some(_) => {}
                    None => return None,
                }
            }
        })
        .await;
        match found {
            Ok(Some(v)) => v,
            Ok(None) => panic!("the live socket closed before {what}; saw {:?}", self.tail()),
            Err(_) => panic!("timed out waiting for {what}; saw {:?}", self.tail()),
        }
    }

    pub async fn until_state(&mut self, state: &str) -> Value {
        self.until_kind("state", &format!("state {state}"), |v| v["state"] == state).await
    }

    pub async fn until_line(&mut self, needle: &str) -> Value {
        self.until_kind("console", &format!("a console line containing {needle:?}"), |v| {
            v["line"].as_str().is_some_and(|l| l.contains(needle))
        })
        .await
    }

    /// The next `error` message.
    pub async fn next_error(&mut self) -> Value {
        self.until_kind("error", "an error", |_| true).await
    }

    /// Forgets what was received so far (to bound memory in long runs); searches start afresh.
    pub fn forget(&mut self) {
        self.seen.clear();
        self.cursors.clear();
    }

    /// The states seen so far, in order.
    /// The states seen, without a leading run of `offline`: a server that just finished its
    /// install was `offline` before the socket connected, but the event saying so may reach
    /// the socket just after it did.
    pub fn states_after_offline(&self) -> Vec<String> {
        self.states().into_iter().skip_while(|s| s == "offline").collect()
    }

    pub fn states(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter(|v| v["type"] == "state")
            .map(|v| v["state"].as_str().unwrap_or("").to_string())
            .collect()
    }

    pub fn console_lines(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter(|v| v["type"] == "console")
            .map(|v| v["line"].as_str().unwrap_or("").to_string())
            .collect()
    }

    fn tail(&self) -> Vec<&Value> {
        self.seen.iter().rev().take(8).collect()
    }

    /// Sends, reporting whether the socket took it (false once the server has closed it).
    pub async fn try_send(&mut self, message: Value) -> bool {
        self.socket.send(Message::Text(message.to_string().into())).await.is_ok()
    }

    pub async fn send(&mut self, message: Value) {
        self.socket.send(Message::Text(message.to_string().into())).await.expect("send");
    }
}

/// A TCP proxy in front of a service (the panel, a database, Redis) that a test can freeze or
/// cut. While frozen, open connections stay open but carry nothing (a network that silently
/// drops everything), and new connections are held until it thaws. While cut, every open
/// connection is closed and new ones are closed at once (a server that went away), until it is
/// restored.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub addr: SocketAddr,
    frozen: tokio::sync::watch::Sender<bool>,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (frozen, watch) = tokio::sync::watch::channel(false);
        let (cut, cut_watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *cut_watch.borrow() {
                    drop(client);
                    continue;
                }
                let mut watch = watch.clone();
                let mut cut_watch = cut_watch.clone();
                tokio::spawn(async move {
                    // New connections wait while frozen.
                    while *watch.borrow() {
                        if watch.changed().await.is_err() {
                            return;
                        }
                    }
                    let Ok(upstream) = TcpStream::connect(target).await else { return };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut ur, mut uw) = upstream.into_split();
                    let up = pump(&mut cr, &mut uw, watch.clone());
                    let down = pump(&mut ur, &mut cw, watch.clone());
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                        _ = cut_watch.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Self { addr, frozen, cut }
    }

    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Closes every connection and refuses new ones until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

/// Copies bytes until either side closes; while frozen, bytes read are dropped, and once a
/// connection has been frozen it never carries anything again (like a silently dead link).
async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    watch: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    let mut dead = false;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        dead |= *watch.borrow();
        if !dead && to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
