//! The panel as a library: services and the axum router, built from trait objects only.
//!
//! An embedder writes `Panel::new(db, cache, auth, config).router()` and mounts the router in
//! their own axum app. Every route authenticates through the `Authenticator`, checks
//! permissions with [`crate::permission::is_allowed`], and writes an audit event for every
//! mutating action, allowed or not.

pub mod agents;
mod clock;
pub mod error;
pub mod extract;
pub mod openapi;
mod routes;

pub use agents::{AgentCommand, AgentRegistry, PowerAction};
pub use clock::{Clock, ManualClock, SystemClock};
pub use extract::Actor;

use crate::backend::{Authenticator, Cache, Database};
use crate::ids::{ServerId, UserId};
use crate::model::{AuditEvent, AuditResult, NewRole, NewUser, Server};
use crate::permission::{DEFAULT_ROLES, Permission, Scope, ServerRelation, Subject, is_allowed};
use crate::time::Timestamp;
use crate::{Error, Result};
use std::sync::Arc;

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
        Self {
            state: Arc::new(PanelState {
                db,
                cache,
                auth,
                config,
                clock,
                agents: AgentRegistry::default(),
                list_pages,
            }),
        }
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

    /// Appends an audit event; see [`PanelState::audit`].
    pub async fn audit(&self, event: AuditEvent) -> Result<()> {
        self.state.db.audit().append(event).await
    }
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
                let result = match e {
                    Error::Forbidden { .. } => AuditResult::Denied,
                    _ => AuditResult::Failed,
                };
                let detail = serde_json::json!({"error": e.to_string()});
                self.audit(Some(actor), action, &fallback_target.0, fallback_target.1, result, detail).await;
            }
        }
        outcome
    }

    pub fn user_target(id: UserId) -> String {
        format!("user:{id}")
    }
}
