//! The MongoDB backend (the official driver): the panel's tables as collections, for sites that
//! already run MongoDB. Verified against MongoDB-wire-compatible servers only (see
//! README.md), so it keeps to single-document operations and never needs a transaction.
//!
//! # Layout
//!
//! One collection per table of `capcore::backend::portable::Table`, under the table's name, each
//! document holding the table's columns under their own names. A row's id is `_id`, its UUID as
//! a string (`_id` order is id order, bytewise); `refresh_tokens` are keyed by their hash, and
//! the join collections `user_roles` and `subusers` by `"<first id>/<second id>"`. Timestamps are
//! milliseconds since the epoch and permission sets their bits, both as 64-bit integers. JSON
//! (a template's spec, a server's environment, an audit event's detail) is kept as JSON text,
//! so it comes back exactly as written (numbers, `null`s, any key) whatever the server does
//! with embedded documents. Indexes are made by migrations ([`MIGRATIONS`]), recorded in
//! `cap_migrations`. Bookkeeping beyond the tables: a node's counters and changes in flight
//! (`used_memory`, `used_disk`, `pending`) and lease (`lock`), the audit log's insertion counter (`cap_counters`) and the migration lock (`cap_locks`).
//!
//! # What holds without transactions, and how
//!
//! Each guarantee of the `Database` contract rests on a single-document atomic operation:
//!
//! - Unique names, emails, node tokens, key prefixes and `ip:port` per node are unique indexes;
//!   a duplicate key (11000) is `Conflict` with the caller's message.
//! - An allocation goes to one server only: it is taken by one `findAndModify` whose filter
//!   requires `server_id: null`.
//! - A node is never overcommitted: it counts what it gives out on its own document
//!   (`used_memory`, `used_disk`), and a creation or a limit change first adds what it needs
//!   with one update conditional on the sum fitting, giving back what it did not use when done.
//!   Any number of panels create servers on one node at once, without waiting for each other.
//!   A panel that dies halfway leaves the node counting too much, never too little, and its
//!   change recorded; once that change has expired (30 s), the node is recounted from its
//!   servers under its lease (see `usage`). Node deletion holds the lease too, so no server
//!   lands on a node being deleted.
//! - `set_state` is a conditional update on the state it read; `apply_reported_state` one on
//!   `agent_seq < seq`; session rotation one on the presented hash and the generation read (the
//!   loser reads again and finds its token superseded: reuse).
//! - Patches `$set` only the patched fields, so concurrent patches of different fields both stay;
//!   a server's environment is rewritten by a compare-and-set on the environment read, retried.
//! - Migrations run under a lock document with a fixed `_id` (inserted, so unique) and an
//!   expiry, so panels starting at once apply each migration once.
//!
//! What would need multi-document transactions (a replica set) and is therefore not promised:
//!
//! - Multi-step writes are not all-or-nothing if the panel dies between steps: creating a
//!   server (inserted, then its allocation taken, a refusal undone by deleting it), deleting
//!   with cascades (a user's memberships, grants, keys and sessions; a node's allocations; a
//!   server's grants and allocations), a batch of allocations (undone on a conflict, but
//!   visible to readers meanwhile), a session and its first refresh token. Each sequence is
//!   ordered so that a crash leaves a consistent, if unfinished, state: what hangs off a thing
//!   goes before the thing, and a new server exists before it takes its allocation.
//! - References are checked by reading before writing: a server, grant, membership, key or
//!   session created for a user, template or node that is deleted at the same moment can be
//!   left referring to nothing, and "still in use" checks on deleting a user or a template can
//!   miss a server created at the same moment (deleting a node is exact: it holds the lease).
//! - Reads that span documents (a page and its total, `global_permissions`) are not one
//!   snapshot.

mod allocations;
mod audit;
mod auth;
mod error;
mod fields;
mod migrate;
mod nodes;
mod portable;
mod roles;
mod servers;
mod templates;
mod usage;
mod users;

use crate::DbConfig;
use async_trait::async_trait;
use capcore::backend::database::*;
use capcore::backend::portable::{Row, Table};
use capcore::model::{Page, PageRequest};
use capcore::{Error, Result};
use error::db;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection, Cursor};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use migrate::MIGRATIONS;

pub(crate) const USERS: &str = "users";
pub(crate) const ROLES: &str = "roles";
pub(crate) const USER_ROLES: &str = "user_roles";
pub(crate) const NODES: &str = "nodes";
pub(crate) const TEMPLATES: &str = "templates";
pub(crate) const SERVERS: &str = "servers";
pub(crate) const ALLOCATIONS: &str = "allocations";
pub(crate) const SUBUSERS: &str = "subusers";
pub(crate) const API_KEYS: &str = "api_keys";
pub(crate) const SESSIONS: &str = "sessions";
pub(crate) const REFRESH_TOKENS: &str = "refresh_tokens";
pub(crate) const AUDIT_EVENTS: &str = "audit_events";

/// The database and how long to wait for a lease before `Unavailable`; shared by every
/// repository.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    db: mongodb::Database,
    wait: Duration,
}

impl Store {
    pub(crate) fn coll(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }
}

/// A MongoDB database: a client (with its pool) and one repository per collection group.
#[derive(Debug, Clone)]
pub struct MongoDatabase {
    store: Store,
    users: users::MongoUsers,
    roles: roles::MongoRoles,
    nodes: nodes::MongoNodes,
    allocations: allocations::MongoAllocations,
    templates: templates::MongoTemplates,
    servers: servers::MongoServers,
    api_keys: auth::MongoApiKeys,
    sessions: auth::MongoSessions,
    audit: audit::MongoAudit,
}

impl MongoDatabase {
    /// Connects to `url` (`mongodb://user:password@host:port/database?options`); the database
    /// is the URL's path and must be there. `config` sets the pool size and, unless the URL sets
    /// them, the server selection and connect timeouts, so an unreachable server is
    /// `Unavailable` after `acquire_timeout`. Checks the server with a ping; does not migrate.
    pub async fn connect(url: &str, config: &DbConfig) -> Result<Self> {
        let mut options = ClientOptions::parse(url)
            .await
            .map_err(|e| Error::invalid("database_url", format!("not a MongoDB URL: {e}")))?;
        let name = options.default_database.clone().filter(|name| !name.is_empty()).ok_or_else(|| {
            Error::invalid("database_url", "names no database: put it in the path, as in mongodb://host:27017/cap")
        })?;
        options.app_name.get_or_insert_with(|| "ctrl-alt-play".to_string());
        options.server_selection_timeout.get_or_insert(config.acquire_timeout);
        options.connect_timeout.get_or_insert(config.acquire_timeout);
        options.max_pool_size = Some(config.max_connections.max(1));
        let client = Client::with_options(options)
            .map_err(|e| Error::invalid("database_url", format!("not a usable MongoDB URL: {e}")))?;
        let db = Self::from_database(client.database(&name), config.acquire_timeout);
        db.ping().await.map_err(|e| match e {
            Error::Unavailable { source, .. } => Error::Unavailable {
                message: format!("cannot connect to MongoDB at `{}`", crate::url::redacted(url)),
                source,
            },
            other => other,
        })?;
        Ok(db)
    }

    /// A backend over `db`; `wait` bounds how long an operation waits for a node's lease or the
    /// migration lock.
    pub fn from_database(db: mongodb::Database, wait: Duration) -> Self {
        let store = Store { db, wait };
        Self {
            users: users::MongoUsers(store.clone()),
            roles: roles::MongoRoles(store.clone()),
            nodes: nodes::MongoNodes(store.clone()),
            allocations: allocations::MongoAllocations(store.clone()),
            templates: templates::MongoTemplates(store.clone()),
            servers: servers::MongoServers(store.clone()),
            api_keys: auth::MongoApiKeys(store.clone()),
            sessions: auth::MongoSessions(store.clone()),
            audit: audit::MongoAudit(store.clone()),
            store,
        }
    }

    pub fn database(&self) -> &mongodb::Database {
        &self.store.db
    }
}

#[async_trait]
impl Database for MongoDatabase {
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

    /// Applies the missing migrations under the migration lock (a lock document with an expiry). Refuses a
    /// database whose schema is newer than this build, or whose applied migrations differ from
    /// this build's (by SHA-256 of their text).
    async fn migrate(&self) -> Result<u32> {
        migrate::migrate(&self.store).await
    }

    async fn ping(&self) -> Result<()> {
        self.store.db.run_command(doc! { "ping": 1 }).await.map_err(db)?;
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "mongodb"
    }

    async fn count_rows(&self, table: Table) -> Result<u64> {
        portable::count(&self.store, table).await
    }

    async fn export_rows(&self, table: Table, offset: u64, limit: u32) -> Result<Vec<Row>> {
        portable::export(&self.store, table, offset, limit).await
    }

    async fn import_rows(&self, table: Table, rows: &[Row]) -> Result<()> {
        portable::import(&self.store, table, rows).await
    }

    async fn clear_rows(&self) -> Result<()> {
        portable::clear(&self.store).await
    }
}

/// Every document of a cursor.
pub(crate) async fn collect(mut cursor: Cursor<Document>) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    while cursor.advance().await.map_err(db)? {
        docs.push(cursor.deserialize_current().map_err(db)?);
    }
    Ok(docs)
}

/// Every document matching `filter`, in `sort` order.
pub(crate) async fn find_all(coll: &Collection<Document>, filter: Document, sort: Document) -> Result<Vec<Document>> {
    collect(coll.find(filter).sort(sort).await.map_err(db)?).await
}

/// One page of the documents matching `filter` in `sort` order, with the count of them all.
pub(crate) async fn page_of<T>(
    coll: &Collection<Document>,
    filter: Document,
    sort: Document,
    page: PageRequest,
    from_doc: fn(&Document) -> Result<T>,
) -> Result<Page<T>> {
    let total = coll.count_documents(filter.clone()).await.map_err(db)?;
    let docs =
        collect(coll.find(filter).sort(sort).skip(page.offset()).limit(i64::from(page.per_page)).await.map_err(db)?)
            .await?;
    Ok(Page {
        items: docs.iter().map(from_doc).collect::<Result<_>>()?,
        total,
        page: page.page,
        per_page: page.per_page,
    })
}

/// The document with `_id`, if any.
pub(crate) async fn by_id(coll: &Collection<Document>, id: impl Into<Bson>) -> Result<Option<Document>> {
    coll.find_one(doc! { "_id": id.into() }).await.map_err(db)
}

/// Whether a document with `_id` exists.
pub(crate) async fn exists(coll: &Collection<Document>, id: impl Into<Bson>) -> Result<bool> {
    let found = coll.find_one(doc! { "_id": id.into() }).projection(doc! { "_id": 1 }).await.map_err(db)?;
    Ok(found.is_some())
}

/// A `$regex` condition matching `s` literally anywhere, ignoring case.
pub(crate) fn contains_ignoring_case(s: &str) -> Document {
    doc! { "$regex": regex_literal(s), "$options": "i" }
}

/// A `$regex` condition matching values that start with `s` (case matters).
pub(crate) fn starts_with(s: &str) -> Document {
    doc! { "$regex": format!("^{}", regex_literal(s)) }
}

/// `s` as a regular expression matching itself: every ASCII character that is not a letter or
/// a digit is escaped (an escaped punctuation character is itself in every regex dialect a
/// server may use), the rest is kept.
pub(crate) fn regex_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if c.is_ascii() && !c.is_ascii_alphanumeric() && !c.is_ascii_control() && c != ' ' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Milliseconds since the epoch by this machine's clock, for lease expiry.
pub(crate) fn wall_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// Waits a little longer each time, for retrying a lease: 1, 2, 4 ... up to 32 ms.
pub(crate) async fn back_off(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(1 << attempt.min(5))).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_table_is_a_collection_of_the_same_name() {
        let collections = [
            super::USERS,
            super::ROLES,
            super::USER_ROLES,
            super::NODES,
            super::TEMPLATES,
            super::SERVERS,
            super::ALLOCATIONS,
            super::SUBUSERS,
            super::API_KEYS,
            super::SESSIONS,
            super::REFRESH_TOKENS,
            super::AUDIT_EVENTS,
        ];
        let tables: Vec<&str> = capcore::backend::portable::Table::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(tables, collections);
    }

    #[test]
    fn regex_literal_escapes_every_metacharacter() {
        assert_eq!(super::regex_literal(r"100%_a\b.*(x)"), r"100\%\_a\\b\.\*\(x\)");
        assert_eq!(super::regex_literal("O'Brien ✓"), r"O\'Brien ✓");
    }
}
