//! Allocations (ip:port on a node) in MongoDB: unique per node by index, taken by servers with a
//! conditional `findAndModify` (see `servers.rs`).

use super::error::{db, first_duplicate_index, map};
use super::fields::{boolean, id, int, opt_id, text};
use super::{ALLOCATIONS, NODES, Store, by_id, exists, find_all, page_of};
use async_trait::async_trait;
use capcore::backend::AllocationRepo;
use capcore::ids::{AllocationId, NodeId, ServerId};
use capcore::model::{Allocation, Page, PageRequest};
use capcore::{Error, Result};
use mongodb::bson::{Bson, Document, doc};

#[derive(Debug, Clone)]
pub(crate) struct MongoAllocations(pub(crate) Store);

pub(crate) fn from_doc(doc: &Document) -> Result<Allocation> {
    let port = int(doc, "port")?;
    Ok(Allocation {
        id: id(doc, "_id")?,
        node_id: id(doc, "node_id")?,
        ip: text(doc, "ip")?,
        port: u16::try_from(port).map_err(|_| super::error::corrupt("port", port))?,
        server_id: opt_id(doc, "server_id")?,
        primary: boolean(doc, "is_primary")?,
    })
}

fn taken_message(ip: &str, port: u16) -> String {
    format!("{ip}:{port} already exists on this node")
}

#[async_trait]
impl AllocationRepo for MongoAllocations {
    async fn add(&self, node: NodeId, ip: &str, ports: &[u16]) -> Result<Vec<Allocation>> {
        let coll = self.0.coll(ALLOCATIONS);
        if !exists(&self.0.coll(NODES), node.to_string()).await? {
            return Err(Error::conflict("node does not exist"));
        }
        // Refuse a batch with a port that exists before writing anything; the unique index
        // catches one added meanwhile (or twice in the batch), and then the batch is taken back.
        let wanted: Vec<i64> = ports.iter().map(|p| i64::from(*p)).collect();
        let existing =
            find_all(&coll, doc! { "node_id": node.to_string(), "ip": ip, "port": { "$in": wanted } }, doc! {}).await?;
        let existing: Vec<i64> = existing.iter().map(|d| int(d, "port")).collect::<Result<_>>()?;
        if let Some(port) = ports.iter().find(|p| existing.contains(&i64::from(**p))) {
            return Err(Error::conflict(taken_message(ip, *port)));
        }
        let added: Vec<Allocation> = ports
            .iter()
            .map(|port| Allocation {
                id: AllocationId::new_random(),
                node_id: node,
                ip: ip.to_string(),
                port: *port,
                server_id: None,
                primary: false,
            })
            .collect();
        if added.is_empty() {
            return Ok(added);
        }
        let docs: Vec<Document> = added
            .iter()
            .map(|a| {
                doc! {
                    "_id": a.id.to_string(),
                    "node_id": node.to_string(),
                    "ip": ip,
                    "port": i64::from(a.port),
                    "server_id": Bson::Null,
                    "is_primary": false,
                }
            })
            .collect();
        if let Err(e) = coll.insert_many(docs).await {
            // Ordered: the batch stopped at the first failure; take back what went in, unless
            // a server took it meanwhile.
            let ids: Vec<String> = added.iter().map(|a| a.id.to_string()).collect();
            coll.delete_many(doc! { "_id": { "$in": ids }, "server_id": Bson::Null }).await.map_err(db)?;
            return Err(match first_duplicate_index(&e).and_then(|i| ports.get(i)) {
                Some(port) => map(e, &taken_message(ip, *port)),
                None => map(e, "an allocation of the batch already exists on this node"),
            });
        }
        Ok(added)
    }

    async fn get(&self, id: AllocationId) -> Result<Allocation> {
        from_doc(
            &by_id(&self.0.coll(ALLOCATIONS), id.to_string()).await?.ok_or_else(|| Error::not_found("allocation"))?,
        )
    }

    async fn list_for_node(&self, node: NodeId, page: PageRequest) -> Result<Page<Allocation>> {
        let filter = doc! { "node_id": node.to_string() };
        page_of(&self.0.coll(ALLOCATIONS), filter, doc! { "ip": 1, "port": 1, "_id": 1 }, page, from_doc).await
    }

    async fn list_for_server(&self, server: ServerId) -> Result<Vec<Allocation>> {
        let docs = find_all(&self.0.coll(ALLOCATIONS), doc! { "server_id": server.to_string() }, doc! {}).await?;
        let mut allocations: Vec<Allocation> = docs.iter().map(from_doc).collect::<Result<_>>()?;
        // Sorted here: a boolean may come back from the server as a number, and numbers and
        // booleans do not sort together.
        allocations.sort_by(|a, b| (!a.primary, &a.ip, a.port).cmp(&(!b.primary, &b.ip, b.port)));
        Ok(allocations)
    }

    async fn delete(&self, id: AllocationId) -> Result<()> {
        let done = self
            .0
            .coll(ALLOCATIONS)
            .delete_one(doc! { "_id": id.to_string(), "server_id": Bson::Null })
            .await
            .map_err(db)?;
        if done.deleted_count == 0 {
            // Either missing or held: tell which.
            let a = self.get(id).await?;
            return Err(Error::conflict(format!("{}:{} is held by a server", a.ip, a.port)));
        }
        Ok(())
    }
}
