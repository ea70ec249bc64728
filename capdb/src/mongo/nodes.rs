//! Nodes in MongoDB, and the node's lease: the `lock` field that node deletion and a recount of
//! the node's usage (see `usage`) set with a conditional update; while it is held no server
//! is added to the node or changes its limits.

use super::error::{db, map};
use super::fields::{id, int, text, timestamp};
use super::{ALLOCATIONS, NODES, SERVERS, Store, back_off, by_id, page_of, wall_millis};
use async_trait::async_trait;
use capcore::backend::NodeRepo;
use capcore::ids::NodeId;
use capcore::model::{NewNode, Node, NodePatch, Page, PageRequest};
use capcore::time::Timestamp;
use capcore::{Error, Result};
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ReturnDocument;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub(crate) struct MongoNodes(pub(crate) Store);

const CONFLICT: &str = "a node with that name already exists";

/// How long a node's lease holds without its holder: a panel that died holding it blocks
/// server creation on the node this long at most. Every holder is done within a few round trips.
pub(crate) const LEASE: Duration = Duration::from_secs(30);

pub(crate) fn from_doc(doc: &Document) -> Result<Node> {
    Ok(Node {
        id: id(doc, "_id")?,
        name: text(doc, "name")?,
        description: text(doc, "description")?,
        fqdn: text(doc, "fqdn")?,
        memory_mb: int(doc, "memory_mb")?,
        memory_overallocate: int(doc, "memory_overallocate")?,
        disk_mb: int(doc, "disk_mb")?,
        disk_overallocate: int(doc, "disk_overallocate")?,
        token_hash: text(doc, "token_hash")?,
        created_at: timestamp(doc, "created_at")?,
        updated_at: timestamp(doc, "updated_at")?,
    })
}

/// A held node lease, with the node as it was when the lease was taken.
#[derive(Debug)]
pub(crate) struct NodeLease {
    pub(crate) node: Node,
    token: String,
}

impl NodeLease {
    /// Takes the node's lease, waiting while another holds it (at most the store's wait, then
    /// `Unavailable`). `None` when there is no such node.
    pub(crate) async fn take(store: &Store, node: NodeId) -> Result<Option<Self>> {
        let nodes = store.coll(NODES);
        let token = super::migrate::uuid_token();
        let deadline = Instant::now() + store.wait;
        let mut attempt = 0;
        loop {
            let now = wall_millis();
            // No `$or` here or in any update's filter: nx-27017 ignores the other conditions.
            let free = doc! { "_id": node.to_string(), "lock.until": { "$lt": now } };
            let take = doc! { "$set": { "lock": { "token": &token, "until": now + LEASE.as_millis() as i64 } } };
            let taken =
                nodes.find_one_and_update(free, take).return_document(ReturnDocument::After).await.map_err(db)?;
            if let Some(doc) = taken {
                return Ok(Some(Self { node: from_doc(&doc)?, token }));
            }
            match by_id(&nodes, node.to_string()).await? {
                None => return Ok(None),
                Some(doc) if !Self::recorded(&doc) => {
                    Self::record(store, node).await?;
                    continue;
                }
                Some(_) => {}
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable {
                    message: format!("node {node} stays busy with another change; try again"),
                    source: None,
                });
            }
            back_off(attempt).await;
            attempt += 1;
        }
    }

    /// A free lease, for a new node document: `lock.until` in the past.
    pub(crate) fn free() -> Document {
        doc! { "lock": { "token": "", "until": 0_i64 } }
    }

    /// Whether the node document has its lease recorded (nodes written before it had none, as
    /// do imported ones).
    pub(crate) fn recorded(doc: &Document) -> bool {
        matches!(doc.get("lock"), Some(Bson::Document(lock)) if lock.contains_key("until"))
    }

    /// Records a free lease on a node document without one.
    pub(crate) async fn record(store: &Store, node: NodeId) -> Result<()> {
        let without = doc! { "_id": node.to_string(), "lock.until": { "$exists": false } };
        store.coll(NODES).update_one(without, doc! { "$set": Self::free() }).await.map_err(db)?;
        Ok(())
    }

    /// Whether another holds the node's lease now.
    pub(crate) fn held(doc: &Document, now: i64) -> Result<bool> {
        match doc.get("lock") {
            Some(Bson::Document(lock)) if lock.contains_key("until") => Ok(int(lock, "until")? >= now),
            _ => Ok(false),
        }
    }

    /// A filter matching the node while the lease is still ours.
    pub(crate) fn mine(&self) -> Document {
        doc! { "_id": self.node.id.to_string(), "lock.token": &self.token }
    }

    /// Lets go of the lease (if it is still ours); a failure is logged, the lease then expires.
    pub(crate) async fn release(self, store: &Store) {
        if let Err(e) = store.coll(NODES).update_one(self.mine(), doc! { "$set": Self::free() }).await {
            tracing::warn!(node = %self.node.id, error = %e, "cannot release a node's lease; it expires by itself");
        }
    }
}

#[async_trait]
impl NodeRepo for MongoNodes {
    async fn create(&self, new: NewNode, now: Timestamp) -> Result<Node> {
        let node = Node {
            id: NodeId::new_random(),
            name: new.name,
            description: new.description,
            fqdn: new.fqdn,
            memory_mb: new.memory_mb,
            memory_overallocate: new.memory_overallocate,
            disk_mb: new.disk_mb,
            disk_overallocate: new.disk_overallocate,
            token_hash: new.token_hash,
            created_at: now,
            updated_at: now,
        };
        let mut doc = doc! {
            "_id": node.id.to_string(),
            "name": &node.name,
            "description": &node.description,
            "fqdn": &node.fqdn,
            "memory_mb": node.memory_mb,
            "memory_overallocate": node.memory_overallocate,
            "disk_mb": node.disk_mb,
            "disk_overallocate": node.disk_overallocate,
            "token_hash": &node.token_hash,
            "created_at": now.0,
            "updated_at": now.0,
        };
        doc.extend(super::usage::empty());
        doc.extend(NodeLease::free());
        self.0.coll(NODES).insert_one(doc).await.map_err(|e| map(e, CONFLICT))?;
        Ok(node)
    }

    async fn get(&self, id: NodeId) -> Result<Node> {
        from_doc(&by_id(&self.0.coll(NODES), id.to_string()).await?.ok_or_else(|| Error::not_found("node"))?)
    }

    async fn find_by_token_hash(&self, token_hash: &str) -> Result<Option<Node>> {
        let found = self.0.coll(NODES).find_one(doc! { "token_hash": token_hash }).await.map_err(db)?;
        found.as_ref().map(from_doc).transpose()
    }

    async fn list(&self, page: PageRequest) -> Result<Page<Node>> {
        page_of(&self.0.coll(NODES), doc! {}, doc! { "created_at": 1, "_id": 1 }, page, from_doc).await
    }

    async fn update(&self, id: NodeId, patch: NodePatch, now: Timestamp) -> Result<Node> {
        let mut set = doc! { "updated_at": now.0 };
        for (field, value) in [("name", patch.name), ("description", patch.description), ("fqdn", patch.fqdn)] {
            if let Some(value) = value {
                set.insert(field, value);
            }
        }
        let numbers = [
            ("memory_mb", patch.memory_mb),
            ("memory_overallocate", patch.memory_overallocate),
            ("disk_mb", patch.disk_mb),
            ("disk_overallocate", patch.disk_overallocate),
        ];
        for (field, value) in numbers {
            if let Some(value) = value {
                set.insert(field, value);
            }
        }
        let done = self
            .0
            .coll(NODES)
            .update_one(doc! { "_id": id.to_string() }, doc! { "$set": set })
            .await
            .map_err(|e| map(e, CONFLICT))?;
        if done.matched_count == 0 {
            return Err(Error::not_found("node"));
        }
        self.get(id).await
    }

    async fn set_token_hash(&self, id: NodeId, token_hash: &str, now: Timestamp) -> Result<()> {
        let done = self
            .0
            .coll(NODES)
            .update_one(
                doc! { "_id": id.to_string() },
                doc! { "$set": { "token_hash": token_hash, "updated_at": now.0 } },
            )
            .await
            .map_err(|e| map(e, "that token is already in use"))?;
        if done.matched_count == 0 {
            return Err(Error::not_found("node"));
        }
        Ok(())
    }

    async fn delete(&self, id: NodeId) -> Result<()> {
        // Under the node's lease, so no server lands on it while this is decided.
        let Some(lease) = NodeLease::take(&self.0, id).await? else { return Err(Error::not_found("node")) };
        let outcome = delete_leased(&self.0, &lease).await;
        if outcome.is_err() {
            lease.release(&self.0).await;
        }
        outcome
    }
}

/// Deletes a node whose lease is held (the node document goes last, and with it the lease).
async fn delete_leased(store: &Store, lease: &NodeLease) -> Result<()> {
    // No server can be added now, but one may be on its way: wait for the changes in flight.
    super::usage::wait_for_changes(store, lease.node.id).await?;
    let id = lease.node.id.to_string();
    let servers = store.coll(SERVERS).count_documents(doc! { "node_id": id.as_str() }).await.map_err(db)?;
    if servers > 0 {
        return Err(Error::conflict(format!("the node still has {servers} server(s); delete or move them first")));
    }
    store.coll(ALLOCATIONS).delete_many(doc! { "node_id": id.as_str() }).await.map_err(db)?;
    let done = store.coll(NODES).delete_one(lease.mine()).await.map_err(db)?;
    if done.deleted_count == 0 {
        return Err(Error::Unavailable {
            message: "the node's lease ran out while deleting it; try again".to_string(),
            source: None,
        });
    }
    Ok(())
}
