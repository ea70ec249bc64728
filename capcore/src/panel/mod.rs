//! The panel as a library: services and the axum router, built from trait objects only.
//!
//! An embedder writes `Panel::new(db, cache, auth, config).router()` and mounts the router in
//! their own axum app. Every route authenticates through the `Authenticator`, checks
//! permissions with [`crate::permission::is_allowed`], and writes an audit event for every
//! mutating action, allowed or not.

pub mod agents;
mod clock;
pub mod cluster;
pub mod error;
pub mod extract;
pub mod gateway;
pub mod live;
pub mod openapi;
mod routes;
pub mod ui;

pub use agents::{AgentCall, AgentRegistry, AgentStatus, PowerAction};
pub use clock::{Clock, ManualClock, SystemClock};
pub use cluster::Cluster;
pub use extract::Actor;
pub use live::LiveHub;

use crate::backend::{Authenticator, Cache, Database};
use crate::ids::{NodeId, ServerId, UserId};
use crate::model::{AuditEvent, AuditResult, NewRole, NewUser, Server};
use crate::permission::{DEFAULT_ROLES, Permission, Scope, ServerRelation, Subject, is_allowed};
use crate::protocol::v1::Command;
use crate::time::Timestamp;
use crate::{Error, Result};
use std::sync::Arc;

/// How a failed operation is audited: a refusal of permission is `denied`, the rest `failed`.
fn failure_of(e: &Error) -> AuditResult {
    if matches!(e, Error::Forbidden { .. }) { AuditResult::Denied } else { AuditResult::Failed }
}

/// Settings of the panel service.
#[derive(Debug, Clone)]
pub struct PanelConfig {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Mark cookies `Secure` (browsers still accept them on http://localhost).
    pub cookie_secure: bool,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_proxy: bool,
    /// Bearer tokens starting with this are API keys.
    pub api_key_prefix: String,
    /// Most ports one allocation request may add.
    pub max_ports_per_request: u32,
    /// How long a rendered server-list page may be served again while the database's
    /// `read_version` is unchanged (zero: never). Only used with a database that reports one.
    pub list_cache_max_age: std::time::Duration,
    /// How often agents send heartbeats.
    pub agent_heartbeat_interval: std::time::Duration,
    /// Heartbeats a node may miss before it is offline.
    pub agent_heartbeat_misses: u32,
    /// How long a request waits for an agent's answer before it fails with 503.
    pub agent_timeout: std::time::Duration,
    /// Largest message accepted from an agent, in bytes.
    pub agent_max_frame_bytes: usize,
    /// The longest one file upload or backup restore may take, end to end.
    pub file_transfer_timeout: std::time::Duration,
    /// The least time between the starts of two backups of one server.
    pub backup_min_interval: std::time::Duration,
    /// Backups kept per server: after a new one is done, older unlocked ones beyond this many
    /// are deleted (`None`: no limit).
    pub backup_keep: Option<u32>,
    /// Unlocked backups older than this are deleted when a new one is done (`None`: kept).
    pub backup_max_age: Option<std::time::Duration>,
    /// How long a stop waits for the game to exit before it is killed.
    pub stop_grace: std::time::Duration,
    /// Console lines kept per server for browsers that connect later.
    pub console_replay_lines: usize,
    /// Messages a browser WebSocket may fall behind before it is disconnected as too slow.
    /// Larger than an agent's console burst (2000 lines per second by default), so a browser
    /// that keeps up is never dropped by a burst.
    pub ws_send_queue: usize,
    /// Messages a browser may send per second on one WebSocket.
    pub ws_messages_per_second: u32,
    /// How long one message to a browser may take to send before the browser is dropped.
    pub ws_send_timeout: std::time::Duration,
}

impl Default for PanelConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            cookie_secure: true,
            trust_proxy: false,
            api_key_prefix: "cap_".into(),
            max_ports_per_request: 1000,
            list_cache_max_age: std::time::Duration::from_secs(1),
            agent_heartbeat_interval: std::time::Duration::from_secs(5),
            file_transfer_timeout: std::time::Duration::from_secs(3600),
            backup_min_interval: std::time::Duration::from_secs(60),
            backup_keep: None,
            backup_max_age: None,
            agent_heartbeat_misses: 3,
            agent_timeout: std::time::Duration::from_secs(15),
            agent_max_frame_bytes: 4 * 1024 * 1024,
            stop_grace: std::time::Duration::from_secs(30),
            console_replay_lines: 500,
            ws_send_queue: 4096,
            ws_messages_per_second: 20,
            ws_send_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// Shared state behind every handler.
pub struct PanelState {
    pub db: Arc<dyn Database>,
    pub cache: Arc<dyn Cache>,
    pub auth: Arc<dyn Authenticator>,
    pub config: PanelConfig,
    pub clock: Arc<dyn Clock>,
    pub agents: AgentRegistry,
    /// The other panel instances sharing the cache: who holds which agent.
    pub cluster: Arc<Cluster>,
    /// Live console, state and stats per server, for browsers.
    pub live: LiveHub,
    /// Rendered server-list pages by query, with the read version they were rendered at.
    pub(crate) list_pages: routes::ListPageCache,
}

impl std::fmt::Debug for PanelState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PanelState")
            .field("db", &self.db.backend_name())
            .field("cache", &self.cache.backend_name())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The panel: build it, `bootstrap` it once, serve its `router`.
#[derive(Debug, Clone)]
pub struct Panel {
    state: Arc<PanelState>,
}

impl Panel {
    pub fn new(
        db: Arc<dyn Database>,
        cache: Arc<dyn Cache>,
        auth: Arc<dyn Authenticator>,
        config: PanelConfig,
    ) -> Self {
        Self::with_clock(db, cache, auth, config, Arc::new(SystemClock))
    }

    pub fn with_clock(
        db: Arc<dyn Database>,
        cache: Arc<dyn Cache>,
        auth: Arc<dyn Authenticator>,
        config: PanelConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let list_pages = routes::ListPageCache::default();
        // A holder record outlives the heartbeats a node may miss, and no more.
        let holder_ttl = config.agent_heartbeat_interval * (config.agent_heartbeat_misses.max(1) + 1);
        let cluster = Arc::new(Cluster::new(cache.clone(), holder_ttl));
        let live = LiveHub::shared(config.console_replay_lines, config.ws_send_queue, cluster.clone());
        let state = Arc::new(PanelState {
            db,
            cache,
            auth,
            config,
            clock,
            agents: AgentRegistry::default(),
            cluster,
            live,
            list_pages,
        });
        Cluster::start(&state);
        Self { state }
    }

    pub fn state(&self) -> &Arc<PanelState> {
        &self.state
    }

    /// The REST API (under `/api`), `/health` and `/ready`.
    pub fn router(&self) -> axum::Router {
        routes::router(self.state.clone())
    }

    /// Migrates, creates the default roles if missing, and creates the first admin when there
    /// is no user at all. Returns the admin's password when one was generated (to print once).
    pub async fn bootstrap(&self, first_admin: FirstAdmin) -> Result<BootstrapReport> {
        let s = &self.state;
        let migrations = s.db.migrate().await?;
        self.bootstrap_roles().await?;
        let now = s.clock.now();
        let mut report =
            BootstrapReport { migrations_applied: migrations, admin_created: None, generated_password: None };
        if s.db.users().count().await? == 0 {
            let email = crate::validate::email("admin_email", &first_admin.email)?;
            let (password, generated) = match first_admin.password {
                Some(p) => (p, false),
                None => (generate_password(), true),
            };
            crate::validate::password("admin_password", &password)?;
            let hash = s.auth.hash_password(&password).await?;
            let user =
                s.db.users()
                    .create(NewUser { username: first_admin.username, email, password_hash: hash }, now)
                    .await?;
            let admin = s.db.roles().find_by_name("admin").await?.ok_or_else(|| Error::not_found("admin role"))?;
            s.db.roles().assign(user.id, admin.id).await?;
            report.admin_created = Some(user.email);
            report.generated_password = generated.then_some(password);
        }
        Ok(report)
    }

    /// Creates the default roles that are missing (idempotent, safe under concurrency).
    pub async fn bootstrap_roles(&self) -> Result<()> {
        let s = &self.state;
        for role in DEFAULT_ROLES {
            if s.db.roles().find_by_name(role.name).await?.is_none() {
                let new = NewRole {
                    name: role.name.into(),
                    description: role.description.into(),
                    permissions: (role.permissions)(),
                    builtin: true,
                };
                match s.db.roles().create(new, s.clock.now()).await {
                    Ok(_) | Err(Error::Conflict { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Makes sure the node of an embedded agent exists (created with `local` as its name, the
    /// given size and ports on 127.0.0.1 when missing) and gives it a fresh token, returned for
    /// the embedded agent only: the token changes at every start and is never shown.
    pub async fn ensure_local_node(&self, local: LocalNode) -> Result<(NodeId, String)> {
        let s = &self.state;
        let token = random_token("capn_");
        let mut page = 1;
        let existing = loop {
            let nodes = s.db.nodes().list(crate::model::PageRequest::new(page, 100)).await?;
            if let Some(n) = nodes.items.iter().find(|n| n.name == local.name) {
                break Some(n.id);
            }
            if nodes.items.is_empty() || u64::from(page) * 100 >= nodes.total {
                break None;
            }
            page += 1;
        };
        let id = match existing {
            Some(id) => {
                s.db.nodes().set_token_hash(id, &token_hash(&token), s.now()).await?;
                id
            }
            None => {
                let node =
                    s.db.nodes()
                        .create(
                            crate::model::NewNode {
                                name: local.name.clone(),
                                description: "This machine, run by the panel's embedded agent".into(),
                                fqdn: "127.0.0.1".into(),
                                memory_mb: local.memory_mb.max(1),
                                memory_overallocate: 0,
                                disk_mb: local.disk_mb.max(1),
                                disk_overallocate: 0,
                                token_hash: token_hash(&token),
                            },
                            s.now(),
                        )
                        .await?;
                if !local.ports.is_empty() {
                    s.db.allocations().add(node.id, "127.0.0.1", &local.ports).await?;
                }
                node.id
            }
        };
        Ok((id, token))
    }

    /// Appends an audit event; see [`PanelState::audit`].
    pub async fn audit(&self, event: AuditEvent) -> Result<()> {
        self.state.db.audit().append(event).await
    }
}

/// The node of an embedded agent, for [`Panel::ensure_local_node`].
#[derive(Debug, Clone)]
pub struct LocalNode {
    pub name: String,
    pub memory_mb: i64,
    pub disk_mb: i64,
    /// Ports on 127.0.0.1 to allocate when the node is created.
    pub ports: Vec<u16>,
}

/// Who the first admin is, when the database has no users.
#[derive(Debug, Clone)]
pub struct FirstAdmin {
    pub username: String,
    pub email: String,
    /// `None`: generate one and report it.
    pub password: Option<String>,
}

/// What `bootstrap` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapReport {
    pub migrations_applied: u32,
    pub admin_created: Option<String>,
    pub generated_password: Option<String>,
}

/// The listener to serve the panel's router on: `TCP_NODELAY` on every accepted connection, so
/// a small answer (a page's module, a JSON body, a console frame) goes out at once instead of
/// waiting for the browser's delayed acknowledgement of the one before.
pub fn listener(
    tcp: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    fn no_delay(stream: &mut tokio::net::TcpStream) {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
    }
    axum::serve::ListenerExt::tap_io(tcp, no_delay as fn(&mut tokio::net::TcpStream))
}

/// 24 random characters from an unambiguous alphabet.
pub fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..24).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// SHA-256 hex of a high-entropy token (node tokens).
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    data_encoding::HEXLOWER.encode(&sha2::Sha256::digest(token.as_bytes()))
}

/// A new random token with a readable prefix.
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    format!("{prefix}{}", data_encoding::BASE64URL_NOPAD.encode(&bytes))
}

impl PanelState {
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Whether the node's agent is connected to this instance or to another one sharing the
    /// cache.
    pub async fn node_online(&self, node: NodeId) -> bool {
        self.agents.is_connected(node) || matches!(self.cluster.holder(node).await, Ok(Some(_)))
    }

    /// The node's agent's status, from whichever instance holds it.
    pub async fn agent_status(&self, node: NodeId) -> Option<AgentStatus> {
        if let Some(status) = self.agents.status(node) {
            return Some(status);
        }
        self.cluster.holder(node).await.ok().flatten().map(|(_, status)| status)
    }

    /// Sends `command` to the node's agent, through the instance holding it when that is not
    /// this one, and waits up to `timeout` for the outcome (see [`AgentRegistry::call`]).
    pub async fn call_node(&self, node: NodeId, command: Command, timeout: std::time::Duration) -> Result<()> {
        self.ask_node(node, command, timeout).await.map(drop)
    }

    /// As [`call_node`](Self::call_node), returning the data the agent answered with.
    pub async fn ask_node(
        &self,
        node: NodeId,
        command: Command,
        timeout: std::time::Duration,
    ) -> Result<crate::protocol::v1::files::Reply> {
        if let Some(instance) = self.holder_elsewhere(node).await? {
            return self.cluster.call(&instance, node, command, timeout).await;
        }
        self.agents.ask(node, command, timeout).await
    }

    /// Sends a command that moves bytes to the node's agent (see
    /// [`AgentRegistry::call_streaming`]). Byte streams do not cross panel instances: a node
    /// held by another instance is `Unavailable`, saying so.
    pub async fn call_node_streaming(
        &self,
        node: NodeId,
        command: Command,
        timeout: std::time::Duration,
    ) -> Result<(agents::StreamEnd, agents::PendingCall)> {
        if self.holder_elsewhere(node).await?.is_some() {
            return Err(Error::Unavailable {
                message: "the server's node is connected to another panel instance; file transfers go through the \
                          instance its agent is connected to"
                    .into(),
                source: None,
            });
        }
        self.agents.call_streaming(node, command, timeout).await
    }

    /// The other panel instance holding the node's agent, when this one does not.
    async fn holder_elsewhere(&self, node: NodeId) -> Result<Option<String>> {
        if self.agents.is_connected(node) {
            return Ok(None);
        }
        let holder = self.cluster.holder(node).await.map_err(|e| Error::Unavailable {
            message: "cannot tell which panel instance holds the node's agent: the cache is not reachable".into(),
            source: Some(Box::new(e)),
        })?;
        Ok(holder.map(|(instance, _)| instance).filter(|instance| instance != self.cluster.instance()))
    }

    /// The evaluation subject for `actor`, globally.
    pub fn subject(&self, actor: &Actor) -> Subject {
        Subject { global: actor.principal.global, server: ServerRelation::None, key_limit: actor.principal.key_limit() }
    }

    /// `Forbidden` unless the actor holds `permission` globally. Denials are audited as
    /// `action`.
    pub async fn require_global(&self, actor: &Actor, permission: Permission, action: &str) -> Result<()> {
        if is_allowed(&self.subject(actor), permission, Scope::Global) {
            return Ok(());
        }
        self.audit_denied(actor, action, "", None).await;
        Err(Error::forbidden(format!("missing permission {permission}")))
    }

    /// Whether the actor holds `permission` globally (no audit).
    pub fn holds_global(&self, actor: &Actor, permission: Permission) -> bool {
        is_allowed(&self.subject(actor), permission, Scope::Global)
    }

    /// Loads a server the actor may see and checks `permission` on it. A server the actor may
    /// not see is `NotFound`, exactly like one that does not exist.
    pub async fn server_access(
        &self,
        actor: &Actor,
        id: ServerId,
        permission: Permission,
        action: &str,
    ) -> Result<(Server, Subject)> {
        let subject = self.server_subject(actor, id).await?;
        let scope = Scope::Server(id);
        if !is_allowed(&subject, Permission::SERVER_VIEW, scope) {
            return Err(Error::not_found("server"));
        }
        if !is_allowed(&subject, permission, scope) {
            self.audit_denied(actor, action, &format!("server:{id}"), Some(id)).await;
            return Err(Error::forbidden(format!("missing permission {permission} on this server")));
        }
        Ok((self.db.servers().get(id).await?, subject))
    }

    /// The subject for `actor` on server `id` (its relation looked up).
    pub async fn server_subject(&self, actor: &Actor, id: ServerId) -> Result<Subject> {
        let relation = self.db.servers().relation(id, actor.principal.user_id).await?;
        Ok(Subject { server: relation, ..self.subject(actor) })
    }

    /// Records an audited action. A failure to write the audit log is logged, not hidden.
    pub async fn audit(
        &self,
        actor: Option<&Actor>,
        action: &str,
        target: &str,
        server_id: Option<ServerId>,
        result: AuditResult,
        detail: serde_json::Value,
    ) {
        let (actor_id, ip) = match actor {
            Some(a) => (Some(a.principal.user_id), a.ip.as_str()),
            None => (None, "system"),
        };
        self.record(AuditEvent {
            id: crate::ids::AuditEventId::new_random(),
            at: self.now(),
            actor_id,
            action: action.into(),
            target: target.into(),
            server_id,
            ip: ip.into(),
            result,
            detail,
        })
        .await;
    }

    /// Appends an event built by the caller (for actions before anyone is authenticated).
    pub(crate) async fn record(&self, event: AuditEvent) {
        let action = event.action.clone();
        if let Err(e) = self.db.audit().append(event).await {
            tracing::error!(error = %e, action, "cannot write audit event");
        }
    }

    pub async fn audit_ok(&self, actor: &Actor, action: &str, target: &str, server_id: Option<ServerId>) {
        self.audit(Some(actor), action, target, server_id, AuditResult::Success, serde_json::Value::Null).await;
    }

    pub async fn audit_denied(&self, actor: &Actor, action: &str, target: &str, server_id: Option<ServerId>) {
        self.audit(Some(actor), action, target, server_id, AuditResult::Denied, serde_json::Value::Null).await;
    }

    /// Audits the outcome of a mutating operation and passes it through.
    pub async fn audited<T>(
        &self,
        actor: &Actor,
        action: &str,
        target: impl FnOnce(&T) -> (String, Option<ServerId>),
        fallback_target: (String, Option<ServerId>),
        outcome: Result<T>,
    ) -> Result<T> {
        match &outcome {
            Ok(v) => {
                let (t, s) = target(v);
                self.audit_ok(actor, action, &t, s).await;
            }
            Err(e) => {
                let detail = serde_json::json!({"error": e.to_string()});
                self.audit(Some(actor), action, &fallback_target.0, fallback_target.1, failure_of(e), detail).await;
            }
        }
        outcome
    }

    /// Audits an operation on server `id` with its `detail` (the error's text added when it
    /// failed).
    pub async fn audit_outcome<T>(
        &self,
        actor: &Actor,
        action: &str,
        id: ServerId,
        mut detail: serde_json::Value,
        outcome: &Result<T>,
    ) {
        let result = match outcome {
            Ok(_) => AuditResult::Success,
            Err(e) => {
                detail["error"] = serde_json::Value::String(e.to_string());
                failure_of(e)
            }
        };
        self.audit(Some(actor), action, &format!("server:{id}"), Some(id), result, detail).await;
    }

    /// Starts a download from the node's agent (`command` moves bytes from the agent): the
    /// bytes to come, and the agent's answer (size, range).
    pub async fn start_download(
        &self,
        node: NodeId,
        command: Command,
    ) -> Result<(crate::protocol::v1::streams::Incoming, crate::protocol::v1::files::Reply)> {
        let (end, pending) = self.call_node_streaming(node, command, self.config.agent_timeout).await?;
        let agents::StreamEnd::Incoming(incoming) = end else {
            return Err(Error::internal("a download got the sending end", "stream direction"));
        };
        match pending.outcome(self.config.agent_timeout).await? {
            download @ crate::protocol::v1::files::Reply::Download { .. } => Ok((incoming, download)),
            other => Err(agents::unexpected_reply(other)),
        }
    }

    pub fn user_target(id: UserId) -> String {
        format!("user:{id}")
    }
}
