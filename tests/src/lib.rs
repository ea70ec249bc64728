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

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use capauth::{AuthConfig, CapAuthenticator, MemoryCache, PasswordConfig};
use capcore::backend::{Authenticator, Cache, Database};
use capcore::panel::{FirstAdmin, ManualClock, Panel, PanelConfig};
use capcore::time::Timestamp;
use http_body_util::BodyExt;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
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
}

/// A way to authenticate requests.
#[derive(Clone, Debug)]
pub enum Cred {
    None,
    Bearer(String),
    /// Browser-style: the access cookie, plus the CSRF token to echo (or not).
    Cookie { access: String, csrf: Option<String> },
}

impl Cred {
    pub fn bearer(token: impl Into<String>) -> Self {
        Cred::Bearer(token.into())
    }
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
        let url = format!("sqlite://{}", scratch_db_path("panel").display());
        let db = capdb::connect(&url, &capdb::DbConfig::default()).await.expect("open sqlite");
        let cache: Arc<dyn Cache> = Arc::new(MemoryCache::default());
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
        Self { panel, router, db, cache, auth, clock }
    }

    /// Sends a request from 127.0.0.1 and returns status and JSON body (`Null` when empty,
    /// `{"raw": text}` when not JSON).
    pub async fn send(&self, method: Method, path: &str, cred: &Cred, body: Option<Body>, content_type: Option<&str>) -> (StatusCode, Value, axum::http::HeaderMap) {
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
    ) -> (StatusCode, Value, axum::http::HeaderMap) {
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
        let mut req = req.body(body.unwrap_or_else(Body::empty)).expect("request");
        let addr: SocketAddr = peer.parse().expect("peer address");
        req.extensions_mut().insert(axum::extract::ConnectInfo(addr));
        let res = self.router.clone().oneshot(req).await.expect("router never fails");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| serde_json::json!({"raw": String::from_utf8_lossy(&bytes)}))
        };
        (status, value, headers)
    }

    pub async fn get(&self, path: &str, cred: &Cred) -> (StatusCode, Value) {
        let (s, v, _) = self.send(Method::GET, path, cred, None, None).await;
        (s, v)
    }

    /// Sends `body` as JSON with `method`.
    pub async fn json(&self, method: Method, path: &str, cred: &Cred, body: Value) -> (StatusCode, Value) {
        let (s, v, _) = self.send(method, path, cred, Some(Body::from(body.to_string())), Some("application/json")).await;
        (s, v)
    }

    pub async fn post(&self, path: &str, cred: &Cred, body: Value) -> (StatusCode, Value) {
        self.json(Method::POST, path, cred, body).await
    }

    /// Sends raw bytes as the body with the given content type.
    pub async fn raw(&self, method: Method, path: &str, cred: &Cred, body: impl Into<Body>, content_type: &str) -> (StatusCode, Value) {
        let (s, v, _) = self.send(method, path, cred, Some(body.into()), Some(content_type)).await;
        (s, v)
    }

    pub async fn login(&self, email: &str, password: &str) -> Cred {
        let (status, body) = self.post("/api/auth/login", &Cred::None, serde_json::json!({"email": email, "password": password})).await;
        assert_eq!(status, StatusCode::OK, "login of {email} failed: {body}");
        Cred::Bearer(body["access_token"].as_str().expect("access_token").to_string())
    }

    pub async fn login_admin(&self) -> Cred {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Creates a user (password [`PASSWORD`]) with the given roles and logs them in.
    pub async fn user(&self, username: &str, roles: &[&str]) -> (String, Cred) {
        let admin = self.login_admin().await;
        let email = format!("{username}@example.org");
        let (status, body) = self
            .post("/api/users", &admin, serde_json::json!({"username": username, "email": email, "password": PASSWORD, "roles": roles}))
            .await;
        assert_eq!(status, StatusCode::OK, "create user {username}: {body}");
        let id = body["id"].as_str().expect("id").to_string();
        (id, self.login(&email, PASSWORD).await)
    }

    /// A node with `ports` free allocations on 127.0.0.1 starting at 30000; returns its id.
    pub async fn node(&self, name: &str, ports: u16) -> String {
        let admin = self.login_admin().await;
        let (status, body) = self
            .post("/api/nodes", &admin, serde_json::json!({"name": name, "fqdn": "node.example.org", "memory_mb": 65536, "disk_mb": 1048576}))
            .await;
        assert_eq!(status, StatusCode::OK, "create node: {body}");
        let id = body["node"]["id"].as_str().expect("node id").to_string();
        if ports > 0 {
            let range = format!("30000-{}", 30000 + ports - 1);
            let (status, body) = self.post(&format!("/api/nodes/{id}/allocations"), &admin, serde_json::json!({"ip": "127.0.0.1", "ports": [range]})).await;
            assert_eq!(status, StatusCode::OK, "add allocations: {body}");
        }
        id
    }

    /// A small native template with one editable variable `GREETING` (max 32 chars).
    pub async fn template(&self, name: &str) -> String {
        let admin = self.login_admin().await;
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
        let admin = self.login_admin().await;
        let (status, body) = self
            .post("/api/servers", &admin, serde_json::json!({"name": name, "owner_id": owner_id, "node_id": node, "template_id": template, "limits": {"memory_mb": 256, "swap_mb": 0, "cpu_percent": 100, "disk_mb": 1024, "io_weight": 500, "pids": 256}}))
            .await;
        assert_eq!(status, StatusCode::OK, "create server: {body}");
        body["id"].as_str().expect("server id").to_string()
    }

    /// How many audit rows match `action` (all results).
    pub async fn audit_count(&self, action: &str) -> u64 {
        let filter = capcore::model::AuditFilter { action_prefix: Some(action.into()), ..Default::default() };
        self.db.audit().list(&filter, capcore::model::PageRequest::new(1, 1)).await.expect("audit").total
    }
}
