//! Shared support for end-to-end tests: a real panel (SQLite file, memory cache, the default
//! authenticator, a manual clock) driven through its router without sockets.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let panel = cap_tests::TestPanel::start().await;
//! let admin = panel.login_admin().await;
//! let (status, body) = panel.get("/api/me", &admin).await;
//! assert_eq!(status, 200);
//! assert_eq!(body["email"], "admin@example.org");
//! # });
//! ```

/// The Docker engine of the tests (`CAP_TEST_DOCKER_HOST`) and the test image made on it.
#[path = "../../capagent/tests/support/docker.rs"]
pub mod docker;
pub mod e2e;
/// A local S3 server (`moto_server`) for the tests.
#[path = "../../capagent/tests/support/moto.rs"]
pub mod moto;
pub mod webdriver;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use capauth::{AuthConfig, CapAuthenticator, MemoryCache, PasswordConfig};
use capcore::backend::{Authenticator, Cache, Credential, Database};
use capcore::ids::{NodeId, ServerId};
use capcore::model::PageRequest;
use capcore::panel::{AgentCall, AgentStatus, Clock, FirstAdmin, ManualClock, Panel, PanelConfig};
use capcore::protocol::v1::{Command, NodeFacts, Outcome};
use capcore::state::ServerState;
use capcore::time::Timestamp;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tower::ServiceExt;

pub const ADMIN_EMAIL: &str = "admin@example.org";
pub const ADMIN_PASSWORD: &str = "admin password 123";
/// Every user the helpers create has this password.
pub const PASSWORD: &str = "user password 123";

/// A panel over a fresh SQLite file with a clock the test moves.
#[allow(missing_debug_implementations)]
pub struct TestPanel {
    pub panel: Panel,
    pub router: Router,
    pub db: Arc<dyn Database>,
    pub cache: Arc<dyn Cache>,
    pub auth: Arc<dyn Authenticator>,
    pub clock: Arc<ManualClock>,
    /// The admin session the setup helpers share, so setup does not eat into the login rate
    /// limits that tests check.
    admin_token: Mutex<Option<String>>,
}

/// An agent attached in memory that answers every command `ok` and records it.
#[derive(Debug)]
pub struct FakeAgent {
    seen: mpsc::UnboundedReceiver<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeAgent {
    /// The next command received, skipping the spec pushes (`create`) that precede starts and
    /// installs; `None` when nothing (else) arrived.
    pub fn try_recv(&mut self) -> Option<Command> {
        loop {
            match self.seen.try_recv().ok()? {
                Command::Create { .. } => continue,
                other => return Some(other),
            }
        }
    }

    /// Waits for the next command (skipping spec pushes) sent by a background task; the
    /// deadline only guards against a hang.
    pub async fn recv(&mut self) -> Command {
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                match self.seen.recv().await.expect("fake agent channel open") {
                    Command::Create { .. } => continue,
                    other => return other,
                }
            }
        })
        .await
        .expect("a command reached the agent")
    }

    /// Every command received so far, spec pushes included.
    pub fn drain(&mut self) -> Vec<Command> {
        std::iter::from_fn(|| self.seen.try_recv().ok()).collect()
    }
}

impl Drop for FakeAgent {
    /// The agent goes away: its node is offline from now on.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A way to authenticate requests.
#[derive(Clone, Debug)]
pub enum Cred {
    None,
    Bearer(String),
    /// Browser-style: the access cookie, plus the CSRF token to echo (or not).
    Cookie {
        access: String,
        csrf: Option<String>,
    },
}

impl Cred {
    pub fn bearer(token: impl Into<String>) -> Self {
        Cred::Bearer(token.into())
    }
}

/// `len` bytes that do not compress: a xorshift sequence from `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The text of the QR code in a greyscale picture (`luma(x, y)`, 0 black), read as a camera app
/// would, or `None` if no code is found or it does not decode.
pub fn read_qr(width: usize, height: usize, luma: impl FnMut(usize, usize) -> u8) -> Option<String> {
    let mut picture = rqrr::PreparedImage::prepare_from_greyscale(width, height, luma);
    let grids = picture.detect_grids();
    grids.first()?.decode().ok().map(|(_, text)| text)
}

/// The text of a QR code given as rows of modules (`1` dark), drawn as a picture with a quiet
/// zone of four modules and read back with [`read_qr`].
pub fn read_qr_rows(rows: &[&str]) -> Option<String> {
    const SCALE: usize = 4;
    let side = (rows.len() + 8) * SCALE;
    read_qr(side, side, |x, y| {
        let (col, row) = ((x / SCALE).checked_sub(4), (y / SCALE).checked_sub(4));
        let dark = row.zip(col).and_then(|(r, c)| rows.get(r)?.as_bytes().get(c).copied()) == Some(b'1');
        if dark { 0 } else { 255 }
    })
}

/// A unique scratch path for a database file.
pub fn scratch_db_path(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join("cap-tests");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(format!("{tag}-{}-{}.db", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

/// Cheap argon2 parameters: tests check behaviour, not cost.
pub fn test_auth_config() -> AuthConfig {
    let mut c = AuthConfig::with_secret(b"test secret, at least thirty-two bytes long".to_vec());
    c.password = PasswordConfig { memory_kib: 1024, iterations: 1, parallelism: 1 };
    c
}

impl TestPanel {
    pub async fn start() -> Self {
        Self::start_with(test_auth_config(), PanelConfig::default()).await
    }

    pub async fn start_with(auth_config: AuthConfig, panel_config: PanelConfig) -> Self {
        Self::start_full(auth_config, panel_config, true).await
    }

    /// `cached`: wire the database as `cap-panel` does, behind `CachedDatabase`; without it
    /// every read goes to SQLite.
    pub async fn start_full(auth_config: AuthConfig, panel_config: PanelConfig, cached: bool) -> Self {
        let url = format!("sqlite://{}", scratch_db_path("panel").display());
        let sqlite = capdb::connect(&url, &capdb::DbConfig::default()).await.expect("open sqlite");
        let cache: Arc<dyn Cache> = Arc::new(MemoryCache::default());
        Self::start_on(sqlite, cache, auth_config, panel_config, cached).await
    }

    /// A panel over the given store and cache: several panels sharing both act as one cluster.
    pub async fn start_on(
        store: Arc<dyn Database>,
        cache: Arc<dyn Cache>,
        auth_config: AuthConfig,
        panel_config: PanelConfig,
        cached: bool,
    ) -> Self {
        let db: Arc<dyn Database> = if cached {
            Arc::new(capdb::CachedDatabase::new(store, cache.clone(), capdb::CachedDatabaseConfig::default()))
        } else {
            store
        };
        let auth: Arc<dyn Authenticator> =
            Arc::new(CapAuthenticator::new(db.clone(), cache.clone(), auth_config).expect("authenticator"));
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_800_000_000_000)));
        let panel = Panel::with_clock(db.clone(), cache.clone(), auth.clone(), panel_config, clock.clone());
        panel
            .bootstrap(FirstAdmin {
                username: "admin".into(),
                email: ADMIN_EMAIL.into(),
                password: Some(ADMIN_PASSWORD.into()),
            })
            .await
            .expect("bootstrap");
        let router = panel.router();
        Self { panel, router, db, cache, auth, clock, admin_token: Mutex::new(None) }
    }

    /// Sends a request from 127.0.0.1 and returns status and JSON body (`Null` when empty,
    /// `{"raw": text}` when not JSON).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        cred: &Cred,
        body: Option<Body>,
        content_type: Option<&str>,
    ) -> (StatusCode, Value, HeaderMap) {
        self.send_from(method, path, cred, body, content_type, "127.0.0.1:40000").await
    }

    pub async fn send_from(
        &self,
        method: Method,
        path: &str,
        cred: &Cred,
        body: Option<Body>,
        content_type: Option<&str>,
        peer: &str,
    ) -> (StatusCode, Value, HeaderMap) {
        let mut req = Request::builder().method(method).uri(path);
        match cred {
            Cred::None => {}
            Cred::Bearer(t) => req = req.header(header::AUTHORIZATION, format!("Bearer {t}")),
            Cred::Cookie { access, csrf } => {
                req = req.header(header::COOKIE, format!("cap_access={access}"));
                if let Some(c) = csrf {
                    req = req.header("x-csrf-token", c);
                }
            }
        }
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        self.send_request(req.body(body.unwrap_or_else(Body::empty)).expect("request"), peer).await
    }

    /// Sends a request built by the caller (any headers) from `peer`.
    pub async fn send_request(&self, mut req: Request<Body>, peer: &str) -> (StatusCode, Value, HeaderMap) {
        let addr: SocketAddr = peer.parse().expect("peer address");
        req.extensions_mut().insert(axum::extract::ConnectInfo(addr));
        let res = self.router.clone().oneshot(req).await.expect("router never fails");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}))
        };
        (status, value, headers)
    }

    /// Sends a request built by the caller and returns the body as bytes (downloads).
    pub async fn send_for_bytes(&self, mut req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let addr: SocketAddr = "127.0.0.1:40000".parse().expect("peer address");
        req.extensions_mut().insert(axum::extract::ConnectInfo(addr));
        let res = self.router.clone().oneshot(req).await.expect("router never fails");
        let (status, headers) = (res.status(), res.headers().clone());
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        (status, headers, bytes.to_vec())
    }

    pub async fn get(&self, path: &str, cred: &Cred) -> (StatusCode, Value) {
        let (s, v, _) = self.send(Method::GET, path, cred, None, None).await;
        (s, v)
    }

    /// Sends `body` as JSON with `method`.
    pub async fn json(&self, method: Method, path: &str, cred: &Cred, body: Value) -> (StatusCode, Value) {
        let (s, v, _) =
            self.send(method, path, cred, Some(Body::from(body.to_string())), Some("application/json")).await;
        (s, v)
    }

    pub async fn post(&self, path: &str, cred: &Cred, body: Value) -> (StatusCode, Value) {
        self.json(Method::POST, path, cred, body).await
    }

    pub async fn delete(&self, path: &str, cred: &Cred) -> (StatusCode, Value) {
        let (s, v, _) = self.send(Method::DELETE, path, cred, None, None).await;
        (s, v)
    }

    /// Sends raw bytes as the body with the given content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        cred: &Cred,
        body: impl Into<Body>,
        content_type: &str,
    ) -> (StatusCode, Value) {
        let (s, v, _) = self.send(method, path, cred, Some(body.into()), Some(content_type)).await;
        (s, v)
    }

    pub async fn login(&self, email: &str, password: &str) -> Cred {
        let (status, body) =
            self.post("/api/auth/login", &Cred::None, serde_json::json!({"email": email, "password": password})).await;
        assert_eq!(status, StatusCode::OK, "login of {email} failed: {body}");
        Cred::Bearer(body["access_token"].as_str().expect("access_token").to_string())
    }

    /// Logs in and returns the whole token body (`access_token`, `refresh_token`, `csrf_token`,
    /// ...) and the response headers (`Set-Cookie`).
    pub async fn login_full(&self, email: &str, password: &str) -> (Value, HeaderMap) {
        let body = json!({"email": email, "password": password});
        let (status, body, headers) = self
            .send(
                Method::POST,
                "/api/auth/login",
                &Cred::None,
                Some(Body::from(body.to_string())),
                Some("application/json"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login of {email} failed: {body}");
        (body, headers)
    }

    /// A fresh admin session.
    pub async fn login_admin(&self) -> Cred {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// The admin session shared by the setup helpers: logged in once, again only when it has
    /// expired or was revoked.
    pub async fn admin(&self) -> Cred {
        let cached = self.admin_token.lock().expect("admin token lock").clone();
        if let Some(token) = cached
            && self.auth.authenticate(Credential::AccessToken(&token), self.clock.now()).await.is_ok()
        {
            return Cred::Bearer(token);
        }
        let cred = self.login_admin().await;
        if let Cred::Bearer(token) = &cred {
            *self.admin_token.lock().expect("admin token lock") = Some(token.clone());
        }
        cred
    }

    /// The bootstrapped admin's id.
    /// The current TOTP code for the base32 `secret` at the panel's clock time.
    pub fn totp_code(&self, secret: &str) -> String {
        let raw = data_encoding::BASE32_NOPAD.decode(secret.as_bytes()).expect("base32 secret");
        let step = self.clock.now().millis().div_euclid(1000) / capauth::totp::STEP_SECS;
        capauth::totp::code_at_step(&raw, step, capauth::totp::DIGITS)
    }

    pub async fn admin_id(&self) -> String {
        let (status, body) = self.get("/api/me", &self.admin().await).await;
        assert_eq!(status, StatusCode::OK, "me: {body}");
        body["id"].as_str().expect("id").to_string()
    }

    /// Creates a user (password [`PASSWORD`]) with the given roles and logs them in.
    pub async fn user(&self, username: &str, roles: &[&str]) -> (String, Cred) {
        let admin = self.admin().await;
        let email = format!("{username}@example.org");
        let (status, body) = self
            .post(
                "/api/users",
                &admin,
                serde_json::json!({"username": username, "email": email, "password": PASSWORD, "roles": roles}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "create user {username}: {body}");
        let id = body["id"].as_str().expect("id").to_string();
        (id, self.login(&email, PASSWORD).await)
    }

    /// A node with `ports` free allocations on 127.0.0.1 starting at 30000; returns its id.
    pub async fn node(&self, name: &str, ports: u16) -> String {
        let admin = self.admin().await;
        let (status, body) = self
            .post(
                "/api/nodes",
                &admin,
                serde_json::json!({"name": name, "fqdn": "node.example.org", "memory_mb": 65536, "disk_mb": 1048576}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "create node: {body}");
        let id = body["node"]["id"].as_str().expect("node id").to_string();
        if ports > 0 {
            let range = format!("30000-{}", 30000 + ports - 1);
            let (status, body) = self
                .post(
                    &format!("/api/nodes/{id}/allocations"),
                    &admin,
                    serde_json::json!({"ip": "127.0.0.1", "ports": [range]}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "add allocations: {body}");
        }
        id
    }

    /// A small native template with one editable variable `GREETING` (max 32 chars).
    pub async fn template(&self, name: &str) -> String {
        let admin = self.admin().await;
        let spec = serde_json::json!({
            "name": name,
            "startup": "./game --port {{SERVER_PORT}} --greeting {{GREETING}}",
            "stop": {"type": "command", "value": "stop"},
            "variables": [
                {"name": "Greeting", "env": "GREETING", "default": "hello", "rules": "required|string|max:32"},
                {"name": "Secret", "env": "HIDDEN_SEED", "default": "42", "rules": "required|integer", "user_viewable": false, "user_editable": false}
            ],
            "ready_patterns": [{"type": "contains", "value": "ready"}]
        });
        let (status, body) = self.post("/api/templates", &admin, spec).await;
        assert_eq!(status, StatusCode::OK, "create template: {body}");
        body["id"].as_str().expect("template id").to_string()
    }

    /// A server owned by `owner_id` on `node`, created by the admin.
    pub async fn server(&self, name: &str, owner_id: &str, node: &str, template: &str) -> String {
        self.server_with_disk(name, owner_id, node, template, 1024).await
    }

    /// [`TestPanel::server`] with a disk limit of `disk_mb` MiB (0: none).
    pub async fn server_with_disk(
        &self,
        name: &str,
        owner_id: &str,
        node: &str,
        template: &str,
        disk_mb: i64,
    ) -> String {
        let admin = self.admin().await;
        let limits = serde_json::json!({"memory_mb": 256, "swap_mb": 0, "cpu_percent": 100, "disk_mb": disk_mb, "io_weight": 500, "pids": 256});
        let (status, body) = self
            .post("/api/servers", &admin, serde_json::json!({"name": name, "owner_id": owner_id, "node_id": node, "template_id": template, "limits": limits}))
            .await;
        assert_eq!(status, StatusCode::OK, "create server: {body}");
        body["id"].as_str().expect("server id").to_string()
    }

    /// A custom role holding exactly `permissions`, created by the admin; returns its id.
    pub async fn role(&self, name: &str, permissions: &[&str]) -> String {
        let (status, body) =
            self.post("/api/roles", &self.admin().await, json!({"name": name, "permissions": permissions})).await;
        assert_eq!(status, StatusCode::OK, "create role {name}: {body}");
        body["id"].as_str().expect("role id").to_string()
    }

    /// A user whose only global permissions are `permissions` (through a role of their own).
    pub async fn user_with(&self, username: &str, permissions: &[&str]) -> (String, Cred) {
        let role = format!("{username}-role");
        self.role(&role, permissions).await;
        self.user(username, &[role.as_str()]).await
    }

    /// Makes `email`'s user a subuser of `server` with `permissions`, as the admin.
    pub async fn subuser(&self, server: &str, email: &str, permissions: &[&str]) {
        let path = format!("/api/servers/{server}/subusers");
        let (status, body) =
            self.post(&path, &self.admin().await, json!({"email": email, "permissions": permissions})).await;
        assert_eq!(status, StatusCode::OK, "add subuser {email}: {body}");
    }

    /// A node, a template and one server owned by `owner_id`: returns (node, template, server).
    pub async fn server_setup(&self, owner_id: &str) -> (String, String, String) {
        let node = self.node("node-1", 10).await;
        let template = self.template("tiny-game").await;
        let server = self.server("survival", owner_id, &node, &template).await;
        (node, template, server)
    }

    /// Connects a stand-in agent for `node`: a real channel in the panel's real registry.
    /// Keep the receiver: dropping it disconnects the node.
    pub fn attach_agent(&self, node: &str) -> FakeAgent {
        let (tx, mut calls) = mpsc::channel::<AgentCall>(8);
        let status = self.fake_status();
        self.panel.state().agents.attach(node.parse::<NodeId>().expect("node id"), tx, status);
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(call) = calls.recv().await {
                // Recorded before the answer, so a test sees it once its request has returned.
                let _ = seen_tx.send(call.command);
                let _ = call.reply.send(Outcome::Ok);
            }
        });
        FakeAgent { seen, task }
    }

    /// Connects a stand-in agent for `node` that takes every command and never answers (a hung
    /// agent); dropping the receiver is the connection dropping.
    pub fn attach_silent_agent(&self, node: &str) -> mpsc::Receiver<AgentCall> {
        let (tx, calls) = mpsc::channel::<AgentCall>(8);
        let mut status = self.fake_status();
        status.agent_version = "silent".into();
        self.panel.state().agents.attach(node.parse::<NodeId>().expect("node id"), tx, status);
        calls
    }

    fn fake_status(&self) -> AgentStatus {
        AgentStatus {
            agent_version: "fake".into(),
            protocol: capcore::protocol::v1::PROTOCOL_VERSION,
            facts: NodeFacts {
                hostname: "fake".into(),
                os: "test".into(),
                kernel: "test".into(),
                arch: "test".into(),
                cpus: 1,
                memory_bytes: 1 << 30,
                disk_bytes: 1 << 30,
                runtimes: vec!["process".into()],
                enforced_limits: vec![],
                runtime_problems: vec![],
            },
            connected_at: self.clock.now(),
            heartbeat: None,
        }
    }

    /// Moves the server through `path`, one legal transition at a time (a new server is
    /// `installing`; `[Offline, Starting, Running]` makes it run).
    pub async fn set_state(&self, server: &str, path: &[ServerState]) {
        let id: ServerId = server.parse().expect("server id");
        for state in path {
            self.db.servers().set_state(id, *state, self.clock.now()).await.expect("legal transition");
        }
    }

    /// How many rows each table holds, to prove a refused request wrote nothing.
    pub async fn counts(&self) -> Counts {
        let all = PageRequest::new(1, PageRequest::MAX_PER_PAGE);
        let nodes = self.db.nodes().list(all).await.expect("nodes");
        let mut allocations = 0;
        for n in &nodes.items {
            allocations +=
                self.db.allocations().list_for_node(n.id, PageRequest::new(1, 1)).await.expect("allocations").total;
        }
        let servers = self.db.servers().list(&Default::default(), PageRequest::new(1, 1)).await.expect("servers");
        Counts {
            users: self.db.users().count().await.expect("users"),
            roles: self.db.roles().list(PageRequest::new(1, 1)).await.expect("roles").total,
            nodes: nodes.total,
            templates: self.db.templates().list(PageRequest::new(1, 1)).await.expect("templates").total,
            servers: servers.total,
            allocations,
        }
    }

    /// How many audit rows match `action` (all results).
    pub async fn audit_count(&self, action: &str) -> u64 {
        let filter = capcore::model::AuditFilter { action_prefix: Some(action.into()), ..Default::default() };
        self.db.audit().list(&filter, PageRequest::new(1, 1)).await.expect("audit").total
    }

    /// The newest audit event whose action starts with `action`, as the API shows it.
    pub async fn last_audit(&self, action: &str) -> Value {
        let filter = capcore::model::AuditFilter { action_prefix: Some(action.into()), ..Default::default() };
        let page = self.db.audit().list(&filter, PageRequest::new(1, 1)).await.expect("audit");
        let event = page.items.into_iter().next().unwrap_or_else(|| panic!("no audit event for {action}"));
        serde_json::to_value(event).expect("audit event as JSON")
    }
}

/// Row counts of the main tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub users: u64,
    pub roles: u64,
    pub nodes: u64,
    pub templates: u64,
    pub servers: u64,
    pub allocations: u64,
}

/// Asserts `status` and that the body is the JSON error shape `{"error": code, "message": ...}`
/// with a non-empty message; returns the message.
#[track_caller]
pub fn assert_error(got: &(StatusCode, Value), status: u16, code: &str) -> String {
    let (got_status, body) = got;
    assert_eq!(got_status.as_u16(), status, "status, body: {body}");
    assert_eq!(body["error"], code, "error code, body: {body}");
    let message = body["message"].as_str().unwrap_or_else(|| panic!("no message in {body}"));
    assert!(!message.is_empty(), "empty message in {body}");
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys.len(), 2, "an error body has exactly `error` and `message`: {body}");
    message.to_string()
}
