//! Servers, their allocations and subusers in MongoDB: creation, limit changes and deletion
//! counted on the node (see `usage`), state changes as conditional updates, grants as documents of `subusers` keyed
//! by `"<server id>/<user id>"`.

use super::error::{db, is_duplicate_key, map};
use super::fields::{id, int, json, text, timestamp, to_json};
use super::usage;
use super::{
    ALLOCATIONS, SERVERS, SUBUSERS, Store, TEMPLATES, USERS, by_id, collect, contains_ignoring_case, exists, find_all,
    page_of,
};
use async_trait::async_trait;
use capcore::backend::ServerRepo;
use capcore::ids::{NodeId, ServerId, UserId};
use capcore::model::*;
use capcore::permission::{Permission, PermissionSet, ServerRelation};
use capcore::state::ServerState;
use capcore::time::Timestamp;
use capcore::{Error, Result};
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ReturnDocument;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
pub(crate) struct MongoServers(pub(crate) Store);

const MISSING_REFERENCE: &str = "owner, node or template does not exist";

fn from_doc(doc: &Document) -> Result<Server> {
    let state = text(doc, "state")?;
    Ok(Server {
        id: id(doc, "_id")?,
        name: text(doc, "name")?,
        description: text(doc, "description")?,
        owner_id: id(doc, "owner_id")?,
        node_id: id(doc, "node_id")?,
        template_id: id(doc, "template_id")?,
        limits: Limits {
            memory_mb: int(doc, "memory_mb")?,
            swap_mb: int(doc, "swap_mb")?,
            cpu_percent: int(doc, "cpu_percent")?,
            disk_mb: int(doc, "disk_mb")?,
            io_weight: int(doc, "io_weight")?,
            pids: int(doc, "pids")?,
        },
        environment: json(doc, "environment", "environment")?,
        state: ServerState::parse(&state).ok_or_else(|| super::error::corrupt("state", &state))?,
        created_at: timestamp(doc, "created_at")?,
        updated_at: timestamp(doc, "updated_at")?,
    })
}

fn to_doc(server: &Server) -> Result<Document> {
    let mut doc = doc! {
        "_id": server.id.to_string(),
        "name": &server.name,
        "description": &server.description,
        "owner_id": server.owner_id.to_string(),
        "node_id": server.node_id.to_string(),
        "template_id": server.template_id.to_string(),
    };
    doc.extend(limits_doc(&server.limits));
    doc.extend(doc! {
        "environment": to_json(&server.environment, "environment")?,
        "state": server.state.as_str(),
        "created_at": server.created_at.0,
        "updated_at": server.updated_at.0,
        "agent_seq": 0_i64,
    });
    Ok(doc)
}

fn limits_doc(l: &Limits) -> Document {
    doc! {
        "memory_mb": l.memory_mb,
        "swap_mb": l.swap_mb,
        "cpu_percent": l.cpu_percent,
        "disk_mb": l.disk_mb,
        "io_weight": l.io_weight,
        "pids": l.pids,
    }
}

fn subuser_key(server: ServerId, user: UserId) -> String {
    format!("{server}/{user}")
}

fn subuser_from_doc(doc: &Document) -> Result<Subuser> {
    Ok(Subuser {
        server_id: id(doc, "server_id")?,
        user_id: id(doc, "user_id")?,
        permissions: PermissionSet::from_bits(int(doc, "permissions")? as u64),
        created_at: timestamp(doc, "created_at")?,
    })
}

impl MongoServers {
    /// Creates the server on a node that has already counted its limits.
    async fn create_counted(&self, new: NewServer, now: Timestamp) -> Result<Server> {
        let store = &self.0;
        let node = new.node_id;
        let server = Server {
            id: ServerId::new_random(),
            name: new.name,
            description: new.description,
            owner_id: new.owner_id,
            node_id: new.node_id,
            template_id: new.template_id,
            limits: new.limits,
            environment: new.environment,
            state: ServerState::Installing,
            created_at: now,
            updated_at: now,
        };
        // The server first: a panel dying before the allocation is taken leaves a server that
        // can be deleted, never an allocation held by nothing.
        store.coll(SERVERS).insert_one(to_doc(&server)?).await.map_err(|e| map(e, "server exists"))?;
        // One conditional `findAndModify`: `server_id: null` is checked on the document as it
        // is written, so an allocation is never handed to two servers.
        let free = match new.allocation {
            AllocationRequest::AnyFree => doc! { "node_id": node.to_string(), "server_id": Bson::Null },
            AllocationRequest::Specific(a) => {
                doc! { "_id": a.to_string(), "node_id": node.to_string(), "server_id": Bson::Null }
            }
        };
        let take = doc! { "$set": { "server_id": server.id.to_string(), "is_primary": true } };
        let taken =
            store.coll(ALLOCATIONS).find_one_and_update(free, take).sort(doc! { "ip": 1, "port": 1 }).await.map_err(db);
        match taken {
            Ok(Some(_)) => Ok(server),
            refused => {
                store.coll(SERVERS).delete_one(doc! { "_id": server.id.to_string() }).await.map_err(db)?;
                refused?;
                Err(Error::conflict(match new.allocation {
                    AllocationRequest::AnyFree => "the node has no free allocation",
                    AllocationRequest::Specific(_) => "that allocation is taken or not on this node",
                }))
            }
        }
    }

    /// Deletes the server: the memory and disk it had, `None` when it was not there.
    async fn delete_counted(&self, id: ServerId) -> Result<Option<(i64, i64)>> {
        let key = id.to_string();
        // What hangs off the server first, so that a panel dying halfway leaves a server that
        // can be deleted again, not allocations held by nothing.
        self.0
            .coll(ALLOCATIONS)
            .update_many(
                doc! { "server_id": key.as_str() },
                doc! { "$set": { "server_id": Bson::Null, "is_primary": false } },
            )
            .await
            .map_err(db)?;
        self.0.coll(SUBUSERS).delete_many(doc! { "server_id": key.as_str() }).await.map_err(db)?;
        let Some(gone) = self.0.coll(SERVERS).find_one_and_delete(doc! { "_id": key }).await.map_err(db)? else {
            return Ok(None);
        };
        Ok(Some((int(&gone, "memory_mb")?.max(0), int(&gone, "disk_mb")?.max(0))))
    }

    /// Writes a patch: only the patched fields, the environment by compare-and-set on the one
    /// read (so two concurrent edits of different variables both stay). With `counted`, only
    /// while the server still has that memory and disk (which its node counted the change
    /// from): `None` when it has other limits by now.
    async fn update_with(
        &self,
        id: ServerId,
        patch: &ServerPatch,
        now: Timestamp,
        counted: Option<(i64, i64)>,
    ) -> Result<Option<Server>> {
        let servers = self.0.coll(SERVERS);
        loop {
            let doc = by_id(&servers, id.to_string()).await?.ok_or_else(|| Error::not_found("server"))?;
            let mut server = from_doc(&doc)?;
            let mut filter = doc! { "_id": id.to_string() };
            if let Some((memory, disk)) = counted {
                if (server.limits.memory_mb, server.limits.disk_mb) != (memory, disk) {
                    return Ok(None);
                }
                filter.insert("memory_mb", memory);
                filter.insert("disk_mb", disk);
            }
            let mut set = doc! { "updated_at": now.0 };
            server.updated_at = now;
            if let Some(name) = &patch.name {
                set.insert("name", name);
                server.name = name.clone();
            }
            if let Some(description) = &patch.description {
                set.insert("description", description);
                server.description = description.clone();
            }
            if let Some(owner) = patch.owner_id {
                set.insert("owner_id", owner.to_string());
                server.owner_id = owner;
            }
            if let Some(limits) = patch.limits {
                set.extend(limits_doc(&limits));
                server.limits = limits;
            }
            if patch.environment.is_some() || patch.set_variables.is_some() {
                let mut environment: BTreeMap<String, String> =
                    patch.environment.clone().unwrap_or_else(|| server.environment.clone());
                environment.extend(patch.set_variables.clone().unwrap_or_default());
                set.insert("environment", to_json(&environment, "environment")?);
                filter.insert("environment", text(&doc, "environment")?);
                server.environment = environment;
            }
            let done = servers.update_one(filter, doc! { "$set": set }).await.map_err(db)?;
            if done.matched_count == 1 {
                return Ok(Some(server));
            }
            // The environment or the limits changed since they were read (or the server is
            // gone): read again.
        }
    }
}

#[async_trait]
impl ServerRepo for MongoServers {
    async fn create(&self, new: NewServer, now: Timestamp) -> Result<Server> {
        let store = &self.0;
        // References are read before writing (see the backend's docs).
        if !exists(&store.coll(USERS), new.owner_id.to_string()).await?
            || !exists(&store.coll(TEMPLATES), new.template_id.to_string()).await?
        {
            return Err(Error::conflict(MISSING_REFERENCE));
        }
        // Counted on the node first: two creations cannot both fit into its last free memory.
        let (memory, disk) = (new.limits.memory_mb.max(0), new.limits.disk_mb.max(0));
        let Some(change) = usage::begin(store, new.node_id, memory, disk).await? else {
            return Err(Error::conflict(MISSING_REFERENCE));
        };
        let outcome = self.create_counted(new, now).await;
        match &outcome {
            Ok(_) => change.finish(store, 0, 0).await,
            Err(_) => change.finish(store, -memory, -disk).await,
        }
        outcome
    }

    async fn get(&self, id: ServerId) -> Result<Server> {
        from_doc(&by_id(&self.0.coll(SERVERS), id.to_string()).await?.ok_or_else(|| Error::not_found("server"))?)
    }

    async fn list(&self, filter: &ServerFilter, page: PageRequest) -> Result<Page<Server>> {
        let mut conditions = Vec::<Document>::new();
        if let Some(user) = filter.visible_to {
            // The servers shared with the user with SERVER_VIEW, then "owned or one of those".
            let grants = find_all(&self.0.coll(SUBUSERS), doc! { "user_id": user.to_string() }, doc! {}).await?;
            let mut shared = Vec::new();
            for grant in &grants {
                if PermissionSet::from_bits(int(grant, "permissions")? as u64).contains(Permission::SERVER_VIEW) {
                    shared.push(Bson::String(text(grant, "server_id")?));
                }
            }
            conditions.push(doc! { "$or": [ { "owner_id": user.to_string() }, { "_id": { "$in": shared } } ] });
        }
        if let Some(owner) = filter.owner_id {
            conditions.push(doc! { "owner_id": owner.to_string() });
        }
        if let Some(node) = filter.node_id {
            conditions.push(doc! { "node_id": node.to_string() });
        }
        if let Some(name) = &filter.name_contains {
            conditions.push(doc! { "name": contains_ignoring_case(name) });
        }
        if let Some(state) = filter.state {
            conditions.push(doc! { "state": state.as_str() });
        }
        let filter = if conditions.is_empty() {
            doc! {}
        } else {
            doc! { "$and": conditions }
        };
        page_of(&self.0.coll(SERVERS), filter, doc! { "created_at": 1, "_id": 1 }, page, from_doc).await
    }

    async fn update(&self, id: ServerId, patch: ServerPatch, now: Timestamp) -> Result<Server> {
        if let Some(owner) = patch.owner_id
            && !exists(&self.0.coll(USERS), owner.to_string()).await?
        {
            return Err(Error::conflict("owner does not exist"));
        }
        let Some(limits) = patch.limits else {
            return Ok(self.update_with(id, &patch, now, None).await?.expect("uncounted patches always apply"));
        };
        // New limits are counted on the node first, like a creation: what grows before the
        // server is written, what shrinks after.
        loop {
            let server = self.get(id).await?;
            let memory = limits.memory_mb.max(0) - server.limits.memory_mb.max(0);
            let disk = limits.disk_mb.max(0) - server.limits.disk_mb.max(0);
            let Some(change) = usage::begin(&self.0, server.node_id, memory.max(0), disk.max(0)).await? else {
                return Err(Error::conflict("the server's node does not exist"));
            };
            let counted = (server.limits.memory_mb, server.limits.disk_mb);
            match self.update_with(id, &patch, now, Some(counted)).await {
                Ok(Some(updated)) => {
                    change.finish(&self.0, memory.min(0), disk.min(0)).await;
                    return Ok(updated);
                }
                outcome => {
                    change.finish(&self.0, -memory.max(0), -disk.max(0)).await;
                    // `None`: the limits changed meanwhile; count again from them.
                    if let Some(updated) = outcome? {
                        return Ok(updated);
                    }
                }
            }
        }
    }

    async fn set_state(&self, id: ServerId, next: ServerState, now: Timestamp) -> Result<Server> {
        let current = self.get(id).await?;
        current.state.transition(next).map_err(|e| Error::conflict(e.to_string()))?;
        // Compare-and-set: only if nobody moved it since we read it.
        let moved = self
            .0
            .coll(SERVERS)
            .find_one_and_update(
                doc! { "_id": id.to_string(), "state": current.state.as_str() },
                doc! { "$set": { "state": next.as_str(), "updated_at": now.0 } },
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(db)?;
        match moved {
            Some(doc) => from_doc(&doc),
            None => {
                let now_state = self.get(id).await?.state;
                Err(Error::conflict(format!(
                    "the server changed to {now_state} meanwhile; cannot go from {} to {next}",
                    current.state
                )))
            }
        }
    }

    async fn mark_node_unknown(&self, node: NodeId, now: Timestamp) -> Result<u64> {
        let unknown = ServerState::Unknown.as_str();
        let done = self
            .0
            .coll(SERVERS)
            .update_many(
                doc! { "node_id": node.to_string(), "state": { "$ne": unknown } },
                doc! { "$set": { "state": unknown, "updated_at": now.0 } },
            )
            .await
            .map_err(db)?;
        Ok(done.matched_count)
    }

    async fn apply_reported_state(
        &self,
        id: ServerId,
        state: ServerState,
        seq: u64,
        now: Timestamp,
    ) -> Result<Option<Server>> {
        let seq = i64::try_from(seq).map_err(|_| Error::invalid("seq", "out of range"))?;
        // One conditional update: of two deliveries of one event, the second finds `agent_seq`
        // no longer smaller.
        let applied = self
            .0
            .coll(SERVERS)
            .find_one_and_update(
                doc! { "_id": id.to_string(), "agent_seq": { "$lt": seq } },
                doc! { "$set": { "state": state.as_str(), "agent_seq": seq, "updated_at": now.0 } },
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(db)?;
        match applied {
            Some(doc) => Ok(Some(from_doc(&doc)?)),
            // Already applied, or no such server: `get` tells which.
            None => self.get(id).await.map(|_| None),
        }
    }

    async fn reported_seqs(&self, node: NodeId) -> Result<Vec<(ServerId, u64)>> {
        let docs = collect(
            self.0
                .coll(SERVERS)
                .find(doc! { "node_id": node.to_string() })
                .projection(doc! { "_id": 1, "agent_seq": 1 })
                .sort(doc! { "_id": 1 })
                .await
                .map_err(db)?,
        )
        .await?;
        docs.iter().map(|d| Ok((id(d, "_id")?, int(d, "agent_seq")?.max(0) as u64))).collect()
    }

    async fn delete(&self, id: ServerId) -> Result<()> {
        let node = self.get(id).await?.node_id;
        // The node gets back the limits the server had when it went (read as it is deleted).
        let change = usage::begin(&self.0, node, 0, 0).await?;
        let outcome = self.delete_counted(id).await;
        if let Some(change) = change {
            let (memory, disk) = outcome.as_ref().ok().copied().flatten().unwrap_or_default();
            change.finish(&self.0, -memory, -disk).await;
        }
        match outcome? {
            Some(_) => Ok(()),
            None => Err(Error::not_found("server")),
        }
    }

    async fn set_subuser(
        &self,
        server: ServerId,
        user: UserId,
        permissions: PermissionSet,
        now: Timestamp,
    ) -> Result<Subuser> {
        if self.get(server).await?.owner_id == user {
            return Err(Error::conflict("the owner cannot be a subuser of their own server"));
        }
        if !exists(&self.0.coll(USERS), user.to_string()).await? {
            return Err(Error::conflict("user does not exist"));
        }
        let subusers = self.0.coll(SUBUSERS);
        let key = subuser_key(server, user);
        let grant = doc! {
            "$set": { "permissions": permissions.bits() as i64 },
            "$setOnInsert": { "server_id": server.to_string(), "user_id": user.to_string(), "created_at": now.0 },
        };
        // Two concurrent first grants may both try to insert; the loser updates instead.
        for attempt in 0..2 {
            match subusers.update_one(doc! { "_id": key.as_str() }, grant.clone()).upsert(true).await {
                Ok(_) => break,
                Err(e) if attempt == 0 && is_duplicate_key(&e) => continue,
                Err(e) => return Err(db(e)),
            }
        }
        let stored = by_id(&subusers, key).await?.ok_or_else(|| Error::not_found("subuser"))?;
        subuser_from_doc(&stored)
    }

    async fn remove_subuser(&self, server: ServerId, user: UserId) -> Result<()> {
        let done = self.0.coll(SUBUSERS).delete_one(doc! { "_id": subuser_key(server, user) }).await.map_err(db)?;
        if done.deleted_count == 0 {
            return Err(Error::not_found("subuser"));
        }
        Ok(())
    }

    async fn list_subusers(&self, server: ServerId) -> Result<Vec<Subuser>> {
        let docs = find_all(
            &self.0.coll(SUBUSERS),
            doc! { "server_id": server.to_string() },
            doc! { "created_at": 1, "user_id": 1 },
        )
        .await?;
        docs.iter().map(subuser_from_doc).collect()
    }

    async fn relation(&self, server: ServerId, user: UserId) -> Result<ServerRelation> {
        let found = self
            .0
            .coll(SERVERS)
            .find_one(doc! { "_id": server.to_string() })
            .projection(doc! { "owner_id": 1 })
            .await
            .map_err(db)?
            .ok_or_else(|| Error::not_found("server"))?;
        if id::<UserId>(&found, "owner_id")? == user {
            return Ok(ServerRelation::Owner);
        }
        Ok(match by_id(&self.0.coll(SUBUSERS), subuser_key(server, user)).await? {
            Some(grant) => ServerRelation::Subuser(PermissionSet::from_bits(int(&grant, "permissions")? as u64)),
            None => ServerRelation::None,
        })
    }

    async fn visible_ids(&self, user: UserId) -> Result<Vec<ServerId>> {
        let owned = collect(
            self.0
                .coll(SERVERS)
                .find(doc! { "owner_id": user.to_string() })
                .projection(doc! { "_id": 1 })
                .await
                .map_err(db)?,
        )
        .await?;
        let shared = find_all(&self.0.coll(SUBUSERS), doc! { "user_id": user.to_string() }, doc! {}).await?;
        let mut ids = BTreeSet::new();
        for doc in &owned {
            ids.insert(id::<ServerId>(doc, "_id")?);
        }
        for doc in &shared {
            ids.insert(id::<ServerId>(doc, "server_id")?);
        }
        Ok(ids.into_iter().collect())
    }
}
