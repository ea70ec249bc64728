//! `CachedDatabase`: a decorator over any `Database` that serves the two hottest reads from
//! memory, invalidated by a generation counter kept in the `Cache`.
//!
//! Every authenticated request reads its session (`Database::session_context`) and the server
//! list is what dashboards poll (`ServerRepo::list`). Both are cached per panel process. Every
//! write through this decorator bumps the generation in the shared `Cache` after it is done, and
//! a cached value is used only while the generation is the one it was read under, so a write
//! through any panel sharing the cache (Redis) is seen by the next read everywhere. Writers that
//! do not share the cache (the `cap-panel user` CLI next to a panel on the memory cache) are seen
//! within `max_age`.

use async_trait::async_trait;
use capcore::Result;
use capcore::backend::Cache;
use capcore::backend::database::*;
use capcore::backend::portable::{Row, Table};
use capcore::ids::*;
use capcore::model::*;
use capcore::permission::{PermissionSet, ServerRelation};
use capcore::state::ServerState;
use capcore::template::{Template, TemplateSpec};
use capcore::time::Timestamp;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The cache key of the generation counter.
pub const GENERATION_KEY: &str = "cap:db:generation";

/// Settings of [`CachedDatabase`].
#[derive(Clone, Copy, Debug)]
pub struct CachedDatabaseConfig {
    /// Longest a cached value is used, even when no write was seen.
    pub max_age: Duration,
    /// Most entries per cached read; a full map is emptied.
    pub max_entries: usize,
}

impl Default for CachedDatabaseConfig {
    fn default() -> Self {
        Self { max_age: Duration::from_secs(1), max_entries: 10_000 }
    }
}

struct Entry<T> {
    generation: i64,
    at: Instant,
    value: T,
}

/// One cached read: values by key, each tagged with the generation it was read under.
struct Memo<K, V> {
    map: Mutex<HashMap<K, Entry<V>>>,
}

impl<K: Eq + Hash, V: Clone> Memo<K, V> {
    fn new() -> Self {
        Self { map: Mutex::new(HashMap::new()) }
    }

    fn get(&self, key: &K, generation: i64, max_age: Duration) -> Option<V> {
        let map = self.map.lock().expect("memo lock");
        map.get(key).filter(|e| e.generation == generation && e.at.elapsed() < max_age).map(|e| e.value.clone())
    }

    fn put(&self, key: K, generation: i64, value: V, config: &CachedDatabaseConfig) {
        let mut map = self.map.lock().expect("memo lock");
        if map.len() >= config.max_entries {
            map.retain(|_, e| e.at.elapsed() < config.max_age);
            if map.len() >= config.max_entries {
                map.clear();
            }
        }
        map.insert(key, Entry { generation, at: Instant::now(), value });
    }

    fn clear(&self) {
        self.map.lock().expect("memo lock").clear();
    }
}

struct Shared {
    db: Arc<dyn Database>,
    cache: Arc<dyn Cache>,
    config: CachedDatabaseConfig,
    sessions: Memo<SessionId, (Session, AuthContext)>,
    lists: Memo<(ServerFilter, PageRequest), Page<Server>>,
}

impl Shared {
    /// The current generation; read *before* the database, so a value is never tagged newer
    /// than it is.
    async fn generation(&self) -> Result<i64> {
        let raw = self.cache.get(GENERATION_KEY).await?;
        Ok(raw.and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok()).unwrap_or(0))
    }

    /// Bumps the generation once a write is done (whatever its outcome: a failed write may
    /// still have changed something a backend could not roll back).
    async fn after_write<T>(&self, outcome: Result<T>) -> Result<T> {
        // Ten years: the counter must not expire and restart under live entries.
        if let Err(e) = self.cache.incr(GENERATION_KEY, 1, Duration::from_secs(10 * 365 * 24 * 3600)).await {
            // Other panels will see the write within max_age; this one forgets at once.
            tracing::warn!(error = %e, "cannot bump the database generation; dropping local caches");
            self.sessions.clear();
            self.lists.clear();
        }
        outcome
    }

    async fn cached_list(&self, filter: &ServerFilter, page: PageRequest) -> Result<Page<Server>> {
        let generation = self.generation().await?;
        let key = (filter.clone(), page);
        if let Some(hit) = self.lists.get(&key, generation, self.config.max_age) {
            return Ok(hit);
        }
        let page = self.db.servers().list(filter, page).await?;
        self.lists.put(key, generation, page.clone(), &self.config);
        Ok(page)
    }
}

/// A `Database` with cached session lookups and server lists; see the module docs.
pub struct CachedDatabase {
    shared: Arc<Shared>,
    users: CachedUsers,
    roles: CachedRoles,
    nodes: CachedNodes,
    allocations: CachedAllocations,
    templates: CachedTemplates,
    servers: CachedServers,
    api_keys: CachedApiKeys,
    sessions: CachedSessions,
    audit: CachedAudit,
}

impl std::fmt::Debug for CachedDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedDatabase")
            .field("inner", &self.shared.db.backend_name())
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl CachedDatabase {
    pub fn new(db: Arc<dyn Database>, cache: Arc<dyn Cache>, config: CachedDatabaseConfig) -> Self {
        let shared = Arc::new(Shared { db, cache, config, sessions: Memo::new(), lists: Memo::new() });
        Self {
            users: CachedUsers(shared.clone()),
            roles: CachedRoles(shared.clone()),
            nodes: CachedNodes(shared.clone()),
            allocations: CachedAllocations(shared.clone()),
            templates: CachedTemplates(shared.clone()),
            servers: CachedServers(shared.clone()),
            api_keys: CachedApiKeys(shared.clone()),
            sessions: CachedSessions(shared.clone()),
            audit: CachedAudit(shared.clone()),
            shared,
        }
    }
}

#[async_trait]
impl Database for CachedDatabase {
    fn users(&self) -> &dyn UserRepo {
        &self.users
    }
    fn roles(&self) -> &dyn RoleRepo {
        &self.roles
    }
    fn nodes(&self) -> &dyn NodeRepo {
        &self.nodes
    }
    fn allocations(&self) -> &dyn AllocationRepo {
        &self.allocations
    }
    fn templates(&self) -> &dyn TemplateRepo {
        &self.templates
    }
    fn servers(&self) -> &dyn ServerRepo {
        &self.servers
    }
    fn api_keys(&self) -> &dyn ApiKeyRepo {
        &self.api_keys
    }
    fn sessions(&self) -> &dyn SessionRepo {
        &self.sessions
    }
    fn audit(&self) -> &dyn AuditRepo {
        &self.audit
    }
    async fn migrate(&self) -> Result<u32> {
        self.shared.after_write(self.shared.db.migrate().await).await
    }
    async fn ping(&self) -> Result<()> {
        self.shared.db.ping().await
    }
    fn backend_name(&self) -> &'static str {
        self.shared.db.backend_name()
    }

    async fn session_context(&self, id: SessionId) -> Result<(Session, AuthContext)> {
        let s = &self.shared;
        let generation = s.generation().await?;
        if let Some(hit) = s.sessions.get(&id, generation, s.config.max_age) {
            return Ok(hit);
        }
        let value = s.db.session_context(id).await?;
        s.sessions.put(id, generation, value.clone(), &s.config);
        Ok(value)
    }

    async fn api_key_context(&self, prefix: &str) -> Result<Option<(ApiKey, AuthContext)>> {
        self.shared.db.api_key_context(prefix).await
    }

    async fn read_version(&self) -> Result<Option<i64>> {
        self.shared.generation().await.map(Some)
    }

    async fn count_rows(&self, table: Table) -> Result<u64> {
        self.shared.db.count_rows(table).await
    }

    async fn export_rows(&self, table: Table, offset: u64, limit: u32) -> Result<Vec<Row>> {
        self.shared.db.export_rows(table, offset, limit).await
    }

    async fn import_rows(&self, table: Table, rows: &[Row]) -> Result<()> {
        self.shared.after_write(self.shared.db.import_rows(table, rows).await).await
    }

    async fn clear_rows(&self) -> Result<()> {
        self.shared.after_write(self.shared.db.clear_rows().await).await
    }
}

struct CachedUsers(Arc<Shared>);
struct CachedRoles(Arc<Shared>);
struct CachedNodes(Arc<Shared>);
struct CachedAllocations(Arc<Shared>);
struct CachedTemplates(Arc<Shared>);
struct CachedServers(Arc<Shared>);
struct CachedApiKeys(Arc<Shared>);
struct CachedSessions(Arc<Shared>);
struct CachedAudit(Arc<Shared>);

// Every method delegates; writes go through `after_write` (all but audit appends and API-key use
// stamps, which no read depends on), the server list through the memo.

#[async_trait]
impl UserRepo for CachedUsers {
    async fn create(&self, new: NewUser, now: Timestamp) -> Result<User> {
        self.0.after_write(self.0.db.users().create(new, now).await).await
    }
    async fn get(&self, id: UserId) -> Result<User> {
        self.0.db.users().get(id).await
    }
    async fn find_by_email(&self, email: &str) -> Result<Option<User>> {
        self.0.db.users().find_by_email(email).await
    }
    async fn list(&self, query: Option<&str>, page: PageRequest) -> Result<Page<User>> {
        self.0.db.users().list(query, page).await
    }
    async fn update(&self, id: UserId, patch: UserPatch, now: Timestamp) -> Result<User> {
        self.0.after_write(self.0.db.users().update(id, patch, now).await).await
    }
    async fn delete(&self, id: UserId) -> Result<()> {
        self.0.after_write(self.0.db.users().delete(id).await).await
    }
    async fn count(&self) -> Result<u64> {
        self.0.db.users().count().await
    }
}

#[async_trait]
impl RoleRepo for CachedRoles {
    async fn create(&self, new: NewRole, now: Timestamp) -> Result<Role> {
        self.0.after_write(self.0.db.roles().create(new, now).await).await
    }
    async fn get(&self, id: RoleId) -> Result<Role> {
        self.0.db.roles().get(id).await
    }
    async fn find_by_name(&self, name: &str) -> Result<Option<Role>> {
        self.0.db.roles().find_by_name(name).await
    }
    async fn list(&self, page: PageRequest) -> Result<Page<Role>> {
        self.0.db.roles().list(page).await
    }
    async fn update(&self, id: RoleId, patch: RolePatch) -> Result<Role> {
        self.0.after_write(self.0.db.roles().update(id, patch).await).await
    }
    async fn delete(&self, id: RoleId) -> Result<()> {
        self.0.after_write(self.0.db.roles().delete(id).await).await
    }
    async fn assign(&self, user: UserId, role: RoleId) -> Result<()> {
        self.0.after_write(self.0.db.roles().assign(user, role).await).await
    }
    async fn unassign(&self, user: UserId, role: RoleId) -> Result<()> {
        self.0.after_write(self.0.db.roles().unassign(user, role).await).await
    }
    async fn roles_of(&self, user: UserId) -> Result<Vec<Role>> {
        self.0.db.roles().roles_of(user).await
    }
    async fn global_permissions(&self, user: UserId) -> Result<PermissionSet> {
        self.0.db.roles().global_permissions(user).await
    }
}

#[async_trait]
impl NodeRepo for CachedNodes {
    async fn create(&self, new: NewNode, now: Timestamp) -> Result<Node> {
        self.0.after_write(self.0.db.nodes().create(new, now).await).await
    }
    async fn get(&self, id: NodeId) -> Result<Node> {
        self.0.db.nodes().get(id).await
    }
    async fn find_by_token_hash(&self, token_hash: &str) -> Result<Option<Node>> {
        self.0.db.nodes().find_by_token_hash(token_hash).await
    }
    async fn list(&self, page: PageRequest) -> Result<Page<Node>> {
        self.0.db.nodes().list(page).await
    }
    async fn update(&self, id: NodeId, patch: NodePatch, now: Timestamp) -> Result<Node> {
        self.0.after_write(self.0.db.nodes().update(id, patch, now).await).await
    }
    async fn set_token_hash(&self, id: NodeId, token_hash: &str, now: Timestamp) -> Result<()> {
        self.0.after_write(self.0.db.nodes().set_token_hash(id, token_hash, now).await).await
    }
    async fn delete(&self, id: NodeId) -> Result<()> {
        self.0.after_write(self.0.db.nodes().delete(id).await).await
    }
}

#[async_trait]
impl AllocationRepo for CachedAllocations {
    async fn add(&self, node: NodeId, ip: &str, ports: &[u16]) -> Result<Vec<Allocation>> {
        self.0.after_write(self.0.db.allocations().add(node, ip, ports).await).await
    }
    async fn get(&self, id: AllocationId) -> Result<Allocation> {
        self.0.db.allocations().get(id).await
    }
    async fn list_for_node(&self, node: NodeId, page: PageRequest) -> Result<Page<Allocation>> {
        self.0.db.allocations().list_for_node(node, page).await
    }
    async fn list_for_server(&self, server: ServerId) -> Result<Vec<Allocation>> {
        self.0.db.allocations().list_for_server(server).await
    }
    async fn delete(&self, id: AllocationId) -> Result<()> {
        self.0.after_write(self.0.db.allocations().delete(id).await).await
    }
}

#[async_trait]
impl TemplateRepo for CachedTemplates {
    async fn create(&self, spec: TemplateSpec, now: Timestamp) -> Result<Template> {
        self.0.after_write(self.0.db.templates().create(spec, now).await).await
    }
    async fn get(&self, id: TemplateId) -> Result<Template> {
        self.0.db.templates().get(id).await
    }
    async fn list(&self, page: PageRequest) -> Result<Page<Template>> {
        self.0.db.templates().list(page).await
    }
    async fn update(&self, id: TemplateId, spec: TemplateSpec, now: Timestamp) -> Result<Template> {
        self.0.after_write(self.0.db.templates().update(id, spec, now).await).await
    }
    async fn delete(&self, id: TemplateId) -> Result<()> {
        self.0.after_write(self.0.db.templates().delete(id).await).await
    }
}

#[async_trait]
impl ServerRepo for CachedServers {
    async fn create(&self, new: NewServer, now: Timestamp) -> Result<Server> {
        self.0.after_write(self.0.db.servers().create(new, now).await).await
    }
    async fn get(&self, id: ServerId) -> Result<Server> {
        self.0.db.servers().get(id).await
    }
    async fn list(&self, filter: &ServerFilter, page: PageRequest) -> Result<Page<Server>> {
        self.0.cached_list(filter, page).await
    }
    async fn update(&self, id: ServerId, patch: ServerPatch, now: Timestamp) -> Result<Server> {
        self.0.after_write(self.0.db.servers().update(id, patch, now).await).await
    }
    async fn set_state(&self, id: ServerId, next: ServerState, now: Timestamp) -> Result<Server> {
        self.0.after_write(self.0.db.servers().set_state(id, next, now).await).await
    }
    async fn mark_node_unknown(&self, node: NodeId, now: Timestamp) -> Result<u64> {
        self.0.after_write(self.0.db.servers().mark_node_unknown(node, now).await).await
    }
    async fn apply_reported_state(
        &self,
        id: ServerId,
        state: ServerState,
        seq: u64,
        now: Timestamp,
    ) -> Result<Option<Server>> {
        self.0.after_write(self.0.db.servers().apply_reported_state(id, state, seq, now).await).await
    }
    async fn reported_seqs(&self, node: NodeId) -> Result<Vec<(ServerId, u64)>> {
        self.0.db.servers().reported_seqs(node).await
    }
    async fn delete(&self, id: ServerId) -> Result<()> {
        self.0.after_write(self.0.db.servers().delete(id).await).await
    }
    async fn set_subuser(
        &self,
        server: ServerId,
        user: UserId,
        permissions: PermissionSet,
        now: Timestamp,
    ) -> Result<Subuser> {
        self.0.after_write(self.0.db.servers().set_subuser(server, user, permissions, now).await).await
    }
    async fn remove_subuser(&self, server: ServerId, user: UserId) -> Result<()> {
        self.0.after_write(self.0.db.servers().remove_subuser(server, user).await).await
    }
    async fn list_subusers(&self, server: ServerId) -> Result<Vec<Subuser>> {
        self.0.db.servers().list_subusers(server).await
    }
    async fn relation(&self, server: ServerId, user: UserId) -> Result<ServerRelation> {
        self.0.db.servers().relation(server, user).await
    }
    async fn visible_ids(&self, user: UserId) -> Result<Vec<ServerId>> {
        self.0.db.servers().visible_ids(user).await
    }
}

#[async_trait]
impl ApiKeyRepo for CachedApiKeys {
    async fn create(&self, key: ApiKey) -> Result<ApiKey> {
        self.0.after_write(self.0.db.api_keys().create(key).await).await
    }
    async fn find_by_prefix(&self, prefix: &str) -> Result<Option<ApiKey>> {
        self.0.db.api_keys().find_by_prefix(prefix).await
    }
    async fn list_for_user(&self, user: UserId) -> Result<Vec<ApiKey>> {
        self.0.db.api_keys().list_for_user(user).await
    }
    async fn delete(&self, user: UserId, id: ApiKeyId) -> Result<()> {
        self.0.after_write(self.0.db.api_keys().delete(user, id).await).await
    }
    async fn touch(&self, id: ApiKeyId, now: Timestamp) -> Result<()> {
        self.0.db.api_keys().touch(id, now).await
    }
}

#[async_trait]
impl SessionRepo for CachedSessions {
    async fn create(&self, session: Session) -> Result<Session> {
        self.0.after_write(self.0.db.sessions().create(session).await).await
    }
    async fn get(&self, id: SessionId) -> Result<Session> {
        self.0.db.sessions().get(id).await
    }
    async fn rotate(&self, presented_hash: &str, new_hash: &str, now: Timestamp) -> Result<Rotation> {
        self.0.after_write(self.0.db.sessions().rotate(presented_hash, new_hash, now).await).await
    }
    async fn revoke(&self, id: SessionId) -> Result<()> {
        self.0.after_write(self.0.db.sessions().revoke(id).await).await
    }
    async fn revoke_all_for_user(&self, user: UserId) -> Result<u64> {
        self.0.after_write(self.0.db.sessions().revoke_all_for_user(user).await).await
    }
}

#[async_trait]
impl AuditRepo for CachedAudit {
    async fn append(&self, event: AuditEvent) -> Result<()> {
        self.0.db.audit().append(event).await
    }
    async fn list(&self, filter: &AuditFilter, page: PageRequest) -> Result<Page<AuditEvent>> {
        self.0.db.audit().list(filter, page).await
    }
}
