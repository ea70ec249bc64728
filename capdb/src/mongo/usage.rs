//! What a node gives out, counted on the node's document, so that creating a server or changing
//! its limits costs a few single-document operations however many servers the node has, and
//! any number of panels can do it at once.
//!
//! A node document carries `used_memory` and `used_disk` (the sums of its servers' limits) and
//! `pending`, the changes in flight, as a document of their tokens and expiry times. A change:
//!
//! 1. [`begin`]: one conditional update adds what the change needs (if it fits in the node's
//!    capacity as read, and no recount holds the node's lease) and records the change in
//!    `pending`;
//! 2. writes the servers;
//! 3. [`Change::finish`]: one update gives back what was not used (a refusal, a smaller limit, a
//!    deleted server) and removes the change from `pending`.
//!
//! Every step errs on the side of counting too much, so a panel dying halfway can never let a
//! node be overcommitted: it leaves its change in `pending` until it expires. Counters that
//! might be too high are recognisable by such an expired change (or by being missing, as on a
//! node imported without them), and are then recounted from the servers themselves under the
//! node's lease, once every live change has finished (a new one cannot begin meanwhile). A
//! change is assumed to finish within [`LEASE`], as a lease holder is.

use super::error::db;
use super::fields::{int, opt_int};
use super::migrate::uuid_token;
use super::nodes::{LEASE, NodeLease, from_doc};
use super::{NODES, SERVERS, Store, back_off, by_id, collect, wall_millis};
use capcore::ids::NodeId;
use capcore::{Error, Result};
use mongodb::bson::{Bson, Document, doc};
use std::time::Instant;

/// The node fields that hold its counters.
pub(crate) const USED_MEMORY: &str = "used_memory";
pub(crate) const USED_DISK: &str = "used_disk";
pub(crate) const PENDING: &str = "pending";

/// Counters for a node without servers, for a new node document.
pub(crate) fn empty() -> Document {
    doc! { USED_MEMORY: 0_i64, USED_DISK: 0_i64, PENDING: {} }
}

/// A change in flight on a node's counters, recorded in its `pending`.
#[derive(Debug)]
#[must_use = "a change stays pending until finished"]
pub(crate) struct Change {
    node: NodeId,
    token: String,
}

/// Begins a change that adds `memory` and `disk` MiB (each at least 0) to what `node` gives
/// out: `Conflict` naming what is short when that does not fit, `None` when there is no such
/// node, `Unavailable` when a recount or deletion holds the node longer than the store's wait.
pub(crate) async fn begin(store: &Store, node: NodeId, memory: i64, disk: i64) -> Result<Option<Change>> {
    debug_assert!(memory >= 0 && disk >= 0);
    let nodes = store.coll(NODES);
    let token = uuid_token();
    let deadline = Instant::now() + store.wait;
    let mut attempt = 0;
    loop {
        if attempt > 0 && Instant::now() >= deadline {
            return Err(busy(node));
        }
        attempt += 1;
        let Some(doc) = by_id(&nodes, node.to_string()).await? else { return Ok(None) };
        let now = wall_millis();
        if NodeLease::held(&doc, now)? {
            back_off(attempt - 1).await;
            continue;
        }
        if !NodeLease::recorded(&doc) {
            NodeLease::record(store, node).await?;
            continue;
        }
        let (Some(used_memory), Some(used_disk)) = (opt_int(&doc, USED_MEMORY)?, opt_int(&doc, USED_DISK)?) else {
            recount(store, node).await?;
            continue;
        };
        let mut filter = doc! {
            "_id": node.to_string(),
            "lock.until": { "$lt": now },
            USED_MEMORY: { "$exists": true },
            USED_DISK: { "$exists": true },
        };
        if memory > 0 || disk > 0 {
            let current = from_doc(&doc)?;
            if let Err(short) = current.check_fits(used_memory + memory, used_disk + disk) {
                // Counters left too high by a change that never finished do not refuse anyone.
                if has_expired_change(&doc, now)? {
                    recount(store, node).await?;
                    continue;
                }
                return Err(short);
            }
            // The capacity as read: a node edited meanwhile is read again.
            for field in ["memory_mb", "memory_overallocate", "disk_mb", "disk_overallocate"] {
                filter.insert(field, int(&doc, field)?);
            }
            if let Some(capacity) = current.memory_capacity_mb() {
                filter.insert(USED_MEMORY, doc! { "$lte": capacity - memory });
            }
            if let Some(capacity) = current.disk_capacity_mb() {
                filter.insert(USED_DISK, doc! { "$lte": capacity - disk });
            }
        }
        let record = doc! {
            "$inc": { USED_MEMORY: memory, USED_DISK: disk },
            "$set": { pending_field(&token): now + LEASE.as_millis() as i64 },
        };
        if nodes.update_one(filter, record).await.map_err(db)?.matched_count == 1 {
            return Ok(Some(Change { node, token }));
        }
        // Another change got there first, the node was edited, or a recount began: read again.
    }
}

impl Change {
    /// Ends the change, adding `memory` and `disk` MiB (each at most 0: what was not used after
    /// all). If a recount already dropped the change (it outlived [`LEASE`]), the recount counted
    /// the servers as they were and nothing is added. A failure is logged: the change then
    /// expires and the node is recounted.
    pub(crate) async fn finish(self, store: &Store, memory: i64, disk: i64) {
        debug_assert!(memory <= 0 && disk <= 0);
        let field = pending_field(&self.token);
        let mine = doc! { "_id": self.node.to_string(), &field: { "$exists": true } };
        let done = doc! { "$inc": { USED_MEMORY: memory, USED_DISK: disk }, "$unset": { field: "" } };
        if let Err(e) = store.coll(NODES).update_one(mine, done).await {
            tracing::warn!(node = %self.node, error = %e, "cannot finish a change of a node's usage; it is recounted later");
        }
    }
}

/// Counts what the node gives out again from its servers, under its lease.
async fn recount(store: &Store, node: NodeId) -> Result<()> {
    let Some(lease) = NodeLease::take(store, node).await? else { return Ok(()) };
    let outcome = recount_leased(store, &lease).await;
    lease.release(store).await;
    outcome
}

async fn recount_leased(store: &Store, lease: &NodeLease) -> Result<()> {
    let node = lease.node.id;
    wait_for_changes(store, node).await?;
    let (memory, disk) = sum_of_servers(store, node).await?;
    let set = doc! { "$set": { USED_MEMORY: memory, USED_DISK: disk, PENDING: {} } };
    store.coll(NODES).update_one(lease.mine(), set).await.map_err(db)?;
    tracing::info!(%node, memory, disk, "recounted what a node gives out");
    Ok(())
}

/// Waits, while holding the node's lease (so no change begins), until every change in flight
/// on the node has finished or expired.
pub(crate) async fn wait_for_changes(store: &Store, node: NodeId) -> Result<()> {
    let deadline = Instant::now() + store.wait;
    let mut attempt = 0;
    loop {
        let Some(doc) = by_id(&store.coll(NODES), node.to_string()).await? else { return Ok(()) };
        let now = wall_millis();
        if !pending_untils(&doc)?.into_iter().any(|until| until >= now) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(busy(node));
        }
        back_off(attempt).await;
        attempt += 1;
    }
}

/// The memory and disk the node's servers are given.
async fn sum_of_servers(store: &Store, node: NodeId) -> Result<(i64, i64)> {
    let servers = store
        .coll(SERVERS)
        .find(doc! { "node_id": node.to_string() })
        .projection(doc! { "memory_mb": 1, "disk_mb": 1 })
        .await
        .map_err(db)?;
    let (mut memory, mut disk) = (0, 0);
    for server in collect(servers).await? {
        memory += int(&server, "memory_mb")?.max(0);
        disk += int(&server, "disk_mb")?.max(0);
    }
    Ok((memory, disk))
}

/// The field of `pending` that records the change `token`.
fn pending_field(token: &str) -> String {
    format!("{PENDING}.{token}")
}

fn has_expired_change(doc: &Document, now: i64) -> Result<bool> {
    Ok(pending_untils(doc)?.into_iter().any(|until| until < now))
}

fn pending_untils(doc: &Document) -> Result<Vec<i64>> {
    match doc.get(PENDING) {
        None | Some(Bson::Null) => Ok(Vec::new()),
        Some(Bson::Document(changes)) => changes.keys().map(|token| int(changes, token)).collect(),
        Some(other) => Err(super::error::corrupt(PENDING, other)),
    }
}

fn busy(node: NodeId) -> Error {
    Error::Unavailable { message: format!("node {node} stays busy with another change; try again"), source: None }
}
