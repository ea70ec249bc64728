//! The domain model: users, roles, nodes, allocations, servers, API keys and audit events.

use crate::ids::*;
use crate::permission::PermissionSet;
use crate::state::ServerState;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A person or automation account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: String,
    /// Lowercased; unique.
    pub email: String,
    /// A PHC string (argon2id); never leaves the backend except to the authenticator.
    pub password_hash: String,
    /// Base32 TOTP secret when two-factor is enabled.
    pub totp_secret: Option<String>,
    pub disabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl User {
    pub fn totp_enabled(&self) -> bool {
        self.totp_secret.is_some()
    }
}

/// What is needed to create a user.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub password_hash: String,
}

/// A change to a user; `None` keeps the value.
#[derive(Clone, Debug, Default)]
pub struct UserPatch {
    pub username: Option<String>,
    pub email: Option<String>,
    pub password_hash: Option<String>,
    pub totp_secret: Option<Option<String>>,
    pub disabled: Option<bool>,
}

/// A user with the union of their roles' permissions, as authentication needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthContext {
    pub user: User,
    pub global: PermissionSet,
}

/// A named set of global permissions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    pub id: RoleId,
    pub name: String,
    pub description: String,
    pub permissions: PermissionSet,
    /// Created by the panel (admin, moderator, user); cannot be deleted.
    pub builtin: bool,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct NewRole {
    pub name: String,
    pub description: String,
    pub permissions: PermissionSet,
    pub builtin: bool,
}

#[derive(Clone, Debug, Default)]
pub struct RolePatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub permissions: Option<PermissionSet>,
}

/// A machine that runs an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: NodeId,
    pub name: String,
    pub description: String,
    /// How browsers and game clients reach it (FQDN or IP).
    pub fqdn: String,
    pub memory_mb: i64,
    /// Percent over `memory_mb` that servers may be allocated (-1 for no check).
    pub memory_overallocate: i64,
    pub disk_mb: i64,
    pub disk_overallocate: i64,
    /// Hash of the agent token; the token itself is shown once.
    pub token_hash: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Node {
    /// The memory servers may be given in total, counting overallocation.
    pub fn memory_capacity_mb(&self) -> Option<i64> {
        (self.memory_overallocate >= 0)
            .then(|| self.memory_mb.saturating_add(self.memory_mb.saturating_mul(self.memory_overallocate) / 100))
    }
    pub fn disk_capacity_mb(&self) -> Option<i64> {
        (self.disk_overallocate >= 0)
            .then(|| self.disk_mb.saturating_add(self.disk_mb.saturating_mul(self.disk_overallocate) / 100))
    }

    /// Whether servers using `used_memory_mb` and `used_disk_mb` in total fit on the node;
    /// `Conflict` names what is short. Stores call this inside the transaction that changes
    /// the totals.
    pub fn check_fits(&self, used_memory_mb: i64, used_disk_mb: i64) -> crate::Result<()> {
        if self.memory_capacity_mb().is_some_and(|cap| used_memory_mb > cap) {
            return Err(crate::Error::conflict(format!(
                "node `{}` has not enough memory: {used_memory_mb} MiB would be given out of {} MiB",
                self.name,
                self.memory_capacity_mb().unwrap_or_default()
            )));
        }
        if self.disk_capacity_mb().is_some_and(|cap| used_disk_mb > cap) {
            return Err(crate::Error::conflict(format!(
                "node `{}` has not enough disk: {used_disk_mb} MiB would be given out of {} MiB",
                self.name,
                self.disk_capacity_mb().unwrap_or_default()
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct NewNode {
    pub name: String,
    pub description: String,
    pub fqdn: String,
    pub memory_mb: i64,
    pub memory_overallocate: i64,
    pub disk_mb: i64,
    pub disk_overallocate: i64,
    pub token_hash: String,
}

#[derive(Clone, Debug, Default)]
pub struct NodePatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub fqdn: Option<String>,
    pub memory_mb: Option<i64>,
    pub memory_overallocate: Option<i64>,
    pub disk_mb: Option<i64>,
    pub disk_overallocate: Option<i64>,
}

/// One ip:port on a node, free or held by one server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub id: AllocationId,
    pub node_id: NodeId,
    pub ip: String,
    pub port: u16,
    pub server_id: Option<ServerId>,
    /// The server's primary allocation (exactly one per server).
    pub primary: bool,
}

/// The resources a server may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory in MiB (>= 16).
    pub memory_mb: i64,
    /// Swap in MiB; -1 unlimited, 0 none.
    pub swap_mb: i64,
    /// CPU in percent of one core; 0 unlimited.
    pub cpu_percent: i64,
    /// Disk in MiB; 0 unlimited.
    pub disk_mb: i64,
    /// Block IO weight 10..=1000.
    pub io_weight: i64,
    /// Maximum processes/threads; 0 unlimited.
    pub pids: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { memory_mb: 1024, swap_mb: 0, cpu_percent: 100, disk_mb: 5120, io_weight: 500, pids: 512 }
    }
}

impl Limits {
    /// Every bound, with the field named `limits.<name>`.
    pub fn validate(&self) -> crate::validate::Valid {
        use crate::validate::int_in;
        int_in("limits.memory_mb", self.memory_mb, 16, 16 * 1024 * 1024)?;
        int_in("limits.swap_mb", self.swap_mb, -1, 16 * 1024 * 1024)?;
        int_in("limits.cpu_percent", self.cpu_percent, 0, 100 * 1024)?;
        int_in("limits.disk_mb", self.disk_mb, 0, 1024 * 1024 * 1024)?;
        int_in("limits.io_weight", self.io_weight, 10, 1000)?;
        int_in("limits.pids", self.pids, 0, 4_194_304)?;
        Ok(())
    }
}

/// A game server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub id: ServerId,
    pub name: String,
    pub description: String,
    pub owner_id: UserId,
    pub node_id: NodeId,
    pub template_id: TemplateId,
    pub limits: Limits,
    /// Template variable values by env name.
    pub environment: BTreeMap<String, String>,
    pub state: ServerState,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What is needed to create a server; the store picks and holds its allocations atomically.
#[derive(Clone, Debug)]
pub struct NewServer {
    pub name: String,
    pub description: String,
    pub owner_id: UserId,
    pub node_id: NodeId,
    pub template_id: TemplateId,
    pub limits: Limits,
    pub environment: BTreeMap<String, String>,
    pub allocation: AllocationRequest,
}

/// Which allocations a new server gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllocationRequest {
    /// Any free allocation on the node.
    AnyFree,
    /// This one (it must be free and on the node).
    Specific(AllocationId),
}

#[derive(Clone, Debug, Default)]
pub struct ServerPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub owner_id: Option<UserId>,
    pub limits: Option<Limits>,
    /// Replaces the whole environment.
    pub environment: Option<BTreeMap<String, String>>,
    /// Sets these variables and keeps the others, in the same statement, so two concurrent
    /// edits of different variables both stay (applied after `environment`).
    pub set_variables: Option<BTreeMap<String, String>>,
}

/// A user's grant on one server (not the owner).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subuser {
    pub server_id: ServerId,
    pub user_id: UserId,
    pub permissions: PermissionSet,
    pub created_at: Timestamp,
}

/// An API key as stored: the secret itself is only ever shown at creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub user_id: UserId,
    pub name: String,
    /// The public part of the key, used to find it.
    pub prefix: String,
    pub secret_hash: String,
    /// The subset of the owner's permissions the key may use.
    pub permissions: PermissionSet,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
}

/// A login session: one refresh-token family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    /// Hash of the refresh token currently valid for this family.
    pub refresh_hash: String,
    /// How many times it has been rotated.
    pub generation: i64,
    pub revoked: bool,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub ip: String,
}

/// Outcome of presenting a refresh token to [`crate::backend::SessionRepo::rotate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The presented token was current; it is replaced by the new one.
    Rotated(Session),
    /// The presented token was an old one of this family: the family is now revoked.
    ReuseDetected { user_id: UserId },
    /// Unknown, revoked or expired family.
    Invalid,
}

/// Whether an audited action succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuditResult {
    Success,
    Denied,
    Failed,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Success => "success",
            AuditResult::Denied => "denied",
            AuditResult::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [AuditResult::Success, AuditResult::Denied, AuditResult::Failed].into_iter().find(|r| r.as_str() == s)
    }
}

/// One entry of the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
pub struct AuditEvent {
    pub id: AuditEventId,
    pub at: Timestamp,
    /// Who acted; `None` for the system or an unidentified caller.
    pub actor_id: Option<UserId>,
    /// What was done, dotted (`server.create`, `auth.login`).
    pub action: String,
    /// What it was done to, as `kind:id` (`server:…`), or empty.
    pub target: String,
    /// The server the action concerns, so owners and subusers can read their servers' log.
    pub server_id: Option<ServerId>,
    pub ip: String,
    pub result: AuditResult,
    /// Small structured detail (never secrets).
    pub detail: serde_json::Value,
}

/// A filter for audit queries; all set fields must match.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actor_id: Option<UserId>,
    pub action_prefix: Option<String>,
    pub target: Option<String>,
    pub server_ids: Option<Vec<ServerId>>,
    pub result: Option<AuditResult>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// Which servers a listing covers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServerFilter {
    /// Only servers this user owns or is a subuser of with SERVER_VIEW (None: all servers).
    pub visible_to: Option<UserId>,
    pub owner_id: Option<UserId>,
    pub node_id: Option<NodeId>,
    /// Case-insensitive substring of the name.
    pub name_contains: Option<String>,
    pub state: Option<ServerState>,
}

/// A page request: 1-based page number and a bounded size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageRequest {
    pub page: u32,
    pub per_page: u32,
}

impl PageRequest {
    pub const MAX_PER_PAGE: u32 = 100;
    pub fn new(page: u32, per_page: u32) -> Self {
        Self { page: page.max(1), per_page: per_page.clamp(1, Self::MAX_PER_PAGE) }
    }
    pub fn offset(&self) -> u64 {
        u64::from(self.page - 1) * u64::from(self.per_page)
    }
    pub fn first() -> Self {
        Self::new(1, Self::MAX_PER_PAGE)
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self::new(1, 50)
    }
}

/// One page of results and the total count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub page: u32,
    pub per_page: u32,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
            page: self.page,
            per_page: self.per_page,
        }
    }
}
