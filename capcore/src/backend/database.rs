//! The `Database` trait and its repositories.
//!
//! # Contract
//!
//! Every backend (SQLite, PostgreSQL, MySQL/MariaDB, MongoDB, an embedder's own) must:
//!
//! - return `Error::NotFound` for a missing row on `get`/`update`/`delete`, never a default;
//! - return `Error::Conflict` for any unique violation (email, username, role name, node name,
//!   template name, `ip:port` on a node) and for deleting something still in use (a node with
//!   servers, a template with servers, a builtin role, an allocation held by a server);
//! - return `Error::Unavailable` when the store cannot be reached or a pool times out;
//! - make each method that says "atomically" a single all-or-nothing operation under
//!   concurrency: [`ServerRepo::create`] never hands one allocation to two servers,
//!   [`ServerRepo::set_state`] applies only legal transitions from the state it read,
//!   [`SessionRepo::rotate`] lets exactly one of two concurrent presenters of a refresh token win;
//! - order lists stably (creation time, then id) and count `total` with the same filter.
//!
//! The conformance suite in `capcore::conformance::database` checks all of this; run it
//! against a new backend with `capcore::database_conformance_tests!`.

use crate::backend::portable::{Row, Table};
use crate::error::Result;
use crate::ids::*;
use crate::model::*;
use crate::permission::{PermissionSet, ServerRelation};
use crate::state::ServerState;
use crate::template::{Template, TemplateSpec};
use crate::time::Timestamp;
use async_trait::async_trait;

/// The panel's store: one accessor per repository.
#[async_trait]
pub trait Database: Send + Sync + 'static {
    fn users(&self) -> &dyn UserRepo;
    fn roles(&self) -> &dyn RoleRepo;
    fn nodes(&self) -> &dyn NodeRepo;
    fn allocations(&self) -> &dyn AllocationRepo;
    fn templates(&self) -> &dyn TemplateRepo;
    fn servers(&self) -> &dyn ServerRepo;
    fn api_keys(&self) -> &dyn ApiKeyRepo;
    fn sessions(&self) -> &dyn SessionRepo;
    fn audit(&self) -> &dyn AuditRepo;
    /// Applies pending migrations; idempotent. Returns how many were applied.
    async fn migrate(&self) -> Result<u32>;
    /// Cheap round trip, for `/ready`.
    async fn ping(&self) -> Result<()>;
    /// `sqlite`, `postgres`, ...
    fn backend_name(&self) -> &'static str;

    /// A number that changes after every write made through this database (and through any
    /// other instance sharing its invalidation), audit appends and API-key use stamps aside, so
    /// a caller may keep derived data (a rendered page) while it stays the same. `None`, the default, means the backend cannot tell and
    /// nothing may be kept.
    async fn read_version(&self) -> Result<Option<i64>> {
        Ok(None)
    }

    /// A session with its user and the user's global permissions: what checking an access
    /// token needs. Provided from the repositories; a backend may override it with one round
    /// trip. `NotFound` when the session (or its user) does not exist.
    async fn session_context(&self, id: SessionId) -> Result<(Session, AuthContext)> {
        let session = self.sessions().get(id).await?;
        let user = self.users().get(session.user_id).await?;
        let global = self.roles().global_permissions(user.id).await?;
        Ok((session, AuthContext { user, global }))
    }

    /// An API key with its user and the user's global permissions, by prefix.
    async fn api_key_context(&self, prefix: &str) -> Result<Option<(ApiKey, AuthContext)>> {
        let Some(key) = self.api_keys().find_by_prefix(prefix).await? else { return Ok(None) };
        let user = self.users().get(key.user_id).await?;
        let global = self.roles().global_permissions(user.id).await?;
        Ok(Some((key, AuthContext { user, global })))
    }

    // Whole tables, for moving data between backends (`cap-panel db copy`). A backend that
    // does not provide them cannot be copied from or to; the conformance suite requires them.

    /// How many rows `table` holds.
    async fn count_rows(&self, table: Table) -> Result<u64> {
        Err(not_portable(self.backend_name(), table))
    }

    /// Up to `limit` rows of `table` from `offset`, in [`Table::key`] order (bytewise), or for
    /// the audit log in the order its events were appended. Values as [`Table::columns`] says.
    async fn export_rows(&self, table: Table, offset: u64, limit: u32) -> Result<Vec<Row>> {
        let _ = (offset, limit);
        Err(not_portable(self.backend_name(), table))
    }

    /// Inserts `rows` as they are (ids, hashes and timestamps kept), all or nothing, in order:
    /// audit events appended in the order given. `Invalid` for a row of the wrong shape,
    /// `Conflict` for a row that is already there.
    async fn import_rows(&self, table: Table, rows: &[Row]) -> Result<()> {
        let _ = rows;
        Err(not_portable(self.backend_name(), table))
    }

    /// Deletes every row of every table (the schema and its migrations stay).
    async fn clear_rows(&self) -> Result<()> {
        Err(not_portable(self.backend_name(), Table::Users))
    }
}

fn not_portable(backend: &str, table: Table) -> crate::Error {
    crate::Error::invalid(
        "database_url",
        format!("the `{backend}` backend cannot export or import whole tables (needed for `{}`)", table.name()),
    )
}

#[async_trait]
pub trait UserRepo: Send + Sync {
    async fn create(&self, new: NewUser, now: Timestamp) -> Result<User>;
    async fn get(&self, id: UserId) -> Result<User>;
    /// `email` is compared lowercased.
    async fn find_by_email(&self, email: &str) -> Result<Option<User>>;
    /// Users whose username or email contains `query` (case-insensitive), or all.
    async fn list(&self, query: Option<&str>, page: PageRequest) -> Result<Page<User>>;
    async fn update(&self, id: UserId, patch: UserPatch, now: Timestamp) -> Result<User>;
    /// Deletes the user with their role memberships, subuser grants, API keys and sessions.
    /// `Conflict` while they own servers.
    async fn delete(&self, id: UserId) -> Result<()>;
    async fn count(&self) -> Result<u64>;
}

#[async_trait]
pub trait RoleRepo: Send + Sync {
    async fn create(&self, new: NewRole, now: Timestamp) -> Result<Role>;
    async fn get(&self, id: RoleId) -> Result<Role>;
    async fn find_by_name(&self, name: &str) -> Result<Option<Role>>;
    async fn list(&self, page: PageRequest) -> Result<Page<Role>>;
    async fn update(&self, id: RoleId, patch: RolePatch) -> Result<Role>;
    /// `Conflict` for a builtin role.
    async fn delete(&self, id: RoleId) -> Result<()>;
    /// Idempotent.
    async fn assign(&self, user: UserId, role: RoleId) -> Result<()>;
    /// Idempotent.
    async fn unassign(&self, user: UserId, role: RoleId) -> Result<()>;
    async fn roles_of(&self, user: UserId) -> Result<Vec<Role>>;
    /// The union of the user's roles' permissions, in one query.
    async fn global_permissions(&self, user: UserId) -> Result<PermissionSet>;
}

#[async_trait]
pub trait NodeRepo: Send + Sync {
    async fn create(&self, new: NewNode, now: Timestamp) -> Result<Node>;
    async fn get(&self, id: NodeId) -> Result<Node>;
    async fn find_by_token_hash(&self, token_hash: &str) -> Result<Option<Node>>;
    async fn list(&self, page: PageRequest) -> Result<Page<Node>>;
    async fn update(&self, id: NodeId, patch: NodePatch, now: Timestamp) -> Result<Node>;
    async fn set_token_hash(&self, id: NodeId, token_hash: &str, now: Timestamp) -> Result<()>;
    /// `Conflict` while servers are on it; its free allocations go with it.
    async fn delete(&self, id: NodeId) -> Result<()>;
}

#[async_trait]
pub trait AllocationRepo: Send + Sync {
    /// Adds `ip:port` for each port, atomically: `Conflict` naming the first that exists, and then
    /// none is added.
    async fn add(&self, node: NodeId, ip: &str, ports: &[u16]) -> Result<Vec<Allocation>>;
    async fn get(&self, id: AllocationId) -> Result<Allocation>;
    async fn list_for_node(&self, node: NodeId, page: PageRequest) -> Result<Page<Allocation>>;
    async fn list_for_server(&self, server: ServerId) -> Result<Vec<Allocation>>;
    /// `Conflict` while a server holds it.
    async fn delete(&self, id: AllocationId) -> Result<()>;
}

#[async_trait]
pub trait TemplateRepo: Send + Sync {
    async fn create(&self, spec: TemplateSpec, now: Timestamp) -> Result<Template>;
    async fn get(&self, id: TemplateId) -> Result<Template>;
    async fn list(&self, page: PageRequest) -> Result<Page<Template>>;
    async fn update(&self, id: TemplateId, spec: TemplateSpec, now: Timestamp) -> Result<Template>;
    /// `Conflict` while servers use it.
    async fn delete(&self, id: TemplateId) -> Result<()>;
}

#[async_trait]
pub trait ServerRepo: Send + Sync {
    /// Atomically: checks that the node's memory and disk capacity (with overallocation, see
    /// [`Node::check_fits`]) holds the new server next to the existing ones, takes the requested
    /// allocation (or any free one on the node) and creates the server in `installing` with it
    /// as primary. `Conflict` when the node is full, no allocation is free, or the requested
    /// one is taken or on another node.
    async fn create(&self, new: NewServer, now: Timestamp) -> Result<Server>;
    async fn get(&self, id: ServerId) -> Result<Server>;
    async fn list(&self, filter: &ServerFilter, page: PageRequest) -> Result<Page<Server>>;
    /// Writes only the patched fields. New limits are checked against the node's capacity in
    /// the same transaction (`Conflict` when they do not fit).
    async fn update(&self, id: ServerId, patch: ServerPatch, now: Timestamp) -> Result<Server>;
    /// Atomically moves to `next` if that is legal from the stored state, else `Conflict`.
    async fn set_state(&self, id: ServerId, next: ServerState, now: Timestamp) -> Result<Server>;
    /// Sets every server on the node to `unknown` (node lost); returns how many changed.
    async fn mark_node_unknown(&self, node: NodeId, now: Timestamp) -> Result<u64>;
    /// Applies a state the node's agent reported as its event number `seq`, atomically and only
    /// if `seq` is greater than the last one applied for the server: the agent is the truth
    /// about its processes, so no transition check. Returns the server when applied, `None`
    /// when `seq` was already applied (a resent event); `NotFound` for an unknown server.
    async fn apply_reported_state(
        &self,
        id: ServerId,
        state: ServerState,
        seq: u64,
        now: Timestamp,
    ) -> Result<Option<Server>>;
    /// The last applied agent event number of every server on the node (0: none yet).
    async fn reported_seqs(&self, node: NodeId) -> Result<Vec<(ServerId, u64)>>;
    /// Deletes the server, its subusers, and frees its allocations, atomically.
    async fn delete(&self, id: ServerId) -> Result<()>;
    /// Creates or replaces a subuser grant (the owner cannot be a subuser: `Conflict`).
    async fn set_subuser(
        &self,
        server: ServerId,
        user: UserId,
        permissions: PermissionSet,
        now: Timestamp,
    ) -> Result<Subuser>;
    async fn remove_subuser(&self, server: ServerId, user: UserId) -> Result<()>;
    async fn list_subusers(&self, server: ServerId) -> Result<Vec<Subuser>>;
    /// How `user` relates to the server, in one query; `NotFound` if the server does not exist.
    async fn relation(&self, server: ServerId, user: UserId) -> Result<ServerRelation>;
    /// Ids of every server the user owns or is a subuser of.
    async fn visible_ids(&self, user: UserId) -> Result<Vec<ServerId>>;
}

#[async_trait]
pub trait ApiKeyRepo: Send + Sync {
    async fn create(&self, key: ApiKey) -> Result<ApiKey>;
    async fn find_by_prefix(&self, prefix: &str) -> Result<Option<ApiKey>>;
    async fn list_for_user(&self, user: UserId) -> Result<Vec<ApiKey>>;
    /// Deletes the user's key; `NotFound` if it is not theirs.
    async fn delete(&self, user: UserId, id: ApiKeyId) -> Result<()>;
    async fn touch(&self, id: ApiKeyId, now: Timestamp) -> Result<()>;
}

#[async_trait]
pub trait SessionRepo: Send + Sync {
    /// Stores a new family whose current refresh token hash is `session.refresh_hash`.
    async fn create(&self, session: Session) -> Result<Session>;
    async fn get(&self, id: SessionId) -> Result<Session>;
    /// Atomically: if `presented_hash` is the family's current token, replace it with
    /// `new_hash`; if it is an earlier token of the family, revoke the family (reuse); else
    /// `Invalid`. Expired or revoked families are `Invalid`.
    async fn rotate(&self, presented_hash: &str, new_hash: &str, now: Timestamp) -> Result<Rotation>;
    async fn revoke(&self, id: SessionId) -> Result<()>;
    /// Revokes every family of the user; returns how many were live.
    async fn revoke_all_for_user(&self, user: UserId) -> Result<u64>;
}

#[async_trait]
pub trait AuditRepo: Send + Sync {
    async fn append(&self, event: AuditEvent) -> Result<()>;
    /// Newest first.
    async fn list(&self, filter: &AuditFilter, page: PageRequest) -> Result<Page<AuditEvent>>;
}
