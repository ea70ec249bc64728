//! Servers, their allocations and subusers in SQLite.

use super::{get, get_id, like_contains};
use crate::error::{corrupt, db, map};
use async_trait::async_trait;
use capcore::backend::ServerRepo;
use capcore::ids::{NodeId, ServerId, UserId};
use capcore::model::*;
use capcore::permission::{PermissionSet, ServerRelation};
use capcore::state::ServerState;
use capcore::time::Timestamp;
use capcore::{Error, Result};
use sqlx::AssertSqlSafe;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

#[derive(Debug, Clone)]
pub(crate) struct SqliteServers(pub(crate) SqlitePool, pub(crate) SqlitePool);

const COLUMNS: &str = "id, name, description, owner_id, node_id, template_id, memory_mb, swap_mb, cpu_percent, disk_mb, \
                       io_weight, pids, environment, state, created_at, updated_at";

fn from_row(row: &SqliteRow) -> Result<Server> {
    let env: String = get(row, "environment")?;
    let state: String = get(row, "state")?;
    Ok(Server {
        id: get_id(row, "id")?,
        name: get(row, "name")?,
        description: get(row, "description")?,
        owner_id: get_id(row, "owner_id")?,
        node_id: get_id(row, "node_id")?,
        template_id: get_id(row, "template_id")?,
        limits: Limits {
            memory_mb: get(row, "memory_mb")?,
            swap_mb: get(row, "swap_mb")?,
            cpu_percent: get(row, "cpu_percent")?,
            disk_mb: get(row, "disk_mb")?,
            io_weight: get(row, "io_weight")?,
            pids: get(row, "pids")?,
        },
        environment: serde_json::from_str(&env).map_err(|e| corrupt("environment", e))?,
        state: ServerState::parse(&state).ok_or_else(|| corrupt("state", &state))?,
        created_at: Timestamp(get(row, "created_at")?),
        updated_at: Timestamp(get(row, "updated_at")?),
    })
}

/// The columns as `json_object` arguments, for [`ServerJson`].
const JSON_FIELDS: &str = "'id', id, 'name', name, 'description', description, 'owner_id', owner_id, \
    'node_id', node_id, 'template_id', template_id, 'memory_mb', memory_mb, 'swap_mb', swap_mb, \
    'cpu_percent', cpu_percent, 'disk_mb', disk_mb, 'io_weight', io_weight, 'pids', pids, \
    'environment', json(environment), 'state', state, 'created_at', created_at, 'updated_at', updated_at";

/// One server as `json_object(JSON_FIELDS)` spells it.
#[derive(serde::Deserialize)]
struct ServerJson {
    id: ServerId,
    name: String,
    description: String,
    owner_id: UserId,
    node_id: NodeId,
    template_id: capcore::ids::TemplateId,
    memory_mb: i64,
    swap_mb: i64,
    cpu_percent: i64,
    disk_mb: i64,
    io_weight: i64,
    pids: i64,
    environment: std::collections::BTreeMap<String, String>,
    state: ServerState,
    created_at: i64,
    updated_at: i64,
}

impl From<ServerJson> for Server {
    fn from(j: ServerJson) -> Self {
        Server {
            id: j.id,
            name: j.name,
            description: j.description,
            owner_id: j.owner_id,
            node_id: j.node_id,
            template_id: j.template_id,
            limits: Limits {
                memory_mb: j.memory_mb,
                swap_mb: j.swap_mb,
                cpu_percent: j.cpu_percent,
                disk_mb: j.disk_mb,
                io_weight: j.io_weight,
                pids: j.pids,
            },
            environment: j.environment,
            state: j.state,
            created_at: Timestamp(j.created_at),
            updated_at: Timestamp(j.updated_at),
        }
    }
}

fn env_json(env: &std::collections::BTreeMap<String, String>) -> Result<String> {
    serde_json::to_string(env).map_err(|e| Error::internal("cannot encode environment", e))
}

/// The node and the memory and disk its servers are given, leaving out `except`; inside the
/// caller's transaction.
async fn node_usage(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    node: NodeId,
    except: Option<ServerId>,
) -> Result<(Node, i64, i64)> {
    let except = except.map(|e| e.to_string()).unwrap_or_default();
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {}, \
         (SELECT COALESCE(SUM(memory_mb), 0) FROM servers WHERE node_id = nodes.id AND id != ?2) AS used_memory, \
         (SELECT COALESCE(SUM(disk_mb), 0) FROM servers WHERE node_id = nodes.id AND id != ?2) AS used_disk \
         FROM nodes WHERE id = ?1",
        super::nodes::COLUMNS
    )))
    .bind(node.to_string())
    .bind(except)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?
    .ok_or_else(|| Error::conflict("node does not exist"))?;
    Ok((super::nodes::from_row(&row)?, get(&row, "used_memory")?, get(&row, "used_disk")?))
}

/// SERVER_VIEW's bit: a subuser without it does not see the server.
const SERVER_VIEW_BIT: u64 = 1 << capcore::permission::Permission::SERVER_VIEW as u8;

/// Appends the WHERE clause of a listing.
fn push_filter(q: &mut QueryBuilder<Sqlite>, filter: &ServerFilter) {
    q.push(" WHERE 1 = 1");
    if let Some(user) = filter.visible_to {
        q.push(" AND (owner_id = ")
            .push_bind(user.to_string())
            .push(" OR id IN (SELECT server_id FROM subusers WHERE user_id = ")
            .push_bind(user.to_string())
            .push(format!(" AND (permissions & {SERVER_VIEW_BIT}) != 0))"));
    }
    if let Some(owner) = filter.owner_id {
        q.push(" AND owner_id = ").push_bind(owner.to_string());
    }
    if let Some(node) = filter.node_id {
        q.push(" AND node_id = ").push_bind(node.to_string());
    }
    if let Some(name) = &filter.name_contains {
        q.push(" AND lower(name) LIKE ").push_bind(like_contains(&name.to_lowercase())).push(" ESCAPE '\\'");
    }
    if let Some(state) = filter.state {
        q.push(" AND state = ").push_bind(state.as_str());
    }
}

#[async_trait]
impl ServerRepo for SqliteServers {
    async fn create(&self, new: NewServer, now: Timestamp) -> Result<Server> {
        let id = ServerId::new_random();
        // IMMEDIATE takes the write lock first, so two creations cannot both see one port free
        // or both fit into the last free memory of a node.
        let mut tx = self.1.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let (node, used_memory, used_disk) = node_usage(&mut tx, new.node_id, None).await?;
        node.check_fits(used_memory + new.limits.memory_mb, used_disk + new.limits.disk_mb)?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO servers ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )))
        .bind(id.to_string())
        .bind(&new.name)
        .bind(&new.description)
        .bind(new.owner_id.to_string())
        .bind(new.node_id.to_string())
        .bind(new.template_id.to_string())
        .bind(new.limits.memory_mb)
        .bind(new.limits.swap_mb)
        .bind(new.limits.cpu_percent)
        .bind(new.limits.disk_mb)
        .bind(new.limits.io_weight)
        .bind(new.limits.pids)
        .bind(env_json(&new.environment)?)
        .bind(ServerState::Installing.as_str())
        .bind(now.0)
        .bind(now.0)
        .execute(&mut *tx)
        .await
        .map_err(|e| map(e, "owner, node or template", "server exists"))?;
        let taken = match new.allocation {
            AllocationRequest::AnyFree => sqlx::query(
                "UPDATE allocations SET server_id = ?1, is_primary = 1 WHERE id = \
                 (SELECT id FROM allocations WHERE node_id = ?2 AND server_id IS NULL ORDER BY ip, port LIMIT 1)",
            )
            .bind(id.to_string())
            .bind(new.node_id.to_string()),
            AllocationRequest::Specific(a) => sqlx::query(
                "UPDATE allocations SET server_id = ?1, is_primary = 1 \
                 WHERE id = ?3 AND node_id = ?2 AND server_id IS NULL",
            )
            .bind(id.to_string())
            .bind(new.node_id.to_string())
            .bind(a.to_string()),
        }
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if taken.rows_affected() != 1 {
            return Err(Error::conflict(match new.allocation {
                AllocationRequest::AnyFree => "the node has no free allocation",
                AllocationRequest::Specific(_) => "that allocation is taken or not on this node",
            }));
        }
        tx.commit().await.map_err(db)?;
        self.get(id).await
    }

    async fn get(&self, id: ServerId) -> Result<Server> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM servers WHERE id = ?")))
            .bind(id.to_string())
            .fetch_one(&self.0)
            .await
            .map_err(|e| map(e, "server", "server exists"))?;
        from_row(&row)
    }

    async fn list(&self, filter: &ServerFilter, page: PageRequest) -> Result<Page<Server>> {
        // One statement, one row: the count and the page as a JSON array. Each statement is a
        // round trip to sqlx's SQLite worker thread, and each row another hop, so this is
        // several times faster than COUNT + SELECT for a page of 100.
        let mut q = QueryBuilder::<Sqlite>::new("SELECT (SELECT COUNT(*) FROM servers");
        push_filter(&mut q, filter);
        q.push(format!(") AS total, (SELECT json_group_array(json_object({JSON_FIELDS}) ORDER BY created_at, id) FROM (SELECT * FROM servers"));
        push_filter(&mut q, filter);
        q.push(" ORDER BY created_at, id LIMIT ")
            .push_bind(i64::from(page.per_page))
            .push(" OFFSET ")
            .push_bind(page.offset() as i64)
            .push(")) AS items");
        let row = q.build().fetch_one(&self.0).await.map_err(db)?;
        let total: i64 = get(&row, "total")?;
        let items: String = get(&row, "items")?;
        let rows: Vec<ServerJson> = serde_json::from_str(&items).map_err(|e| corrupt("server list", e))?;
        Ok(Page {
            items: rows.into_iter().map(Server::from).collect(),
            total: total as u64,
            page: page.page,
            per_page: page.per_page,
        })
    }

    async fn update(&self, id: ServerId, patch: ServerPatch, now: Timestamp) -> Result<Server> {
        let l = patch.limits;
        let mut tx = self.1.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        if let Some(limits) = l {
            let node_id: Option<String> = sqlx::query_scalar("SELECT node_id FROM servers WHERE id = ?")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            let node_id: NodeId = node_id
                .ok_or_else(|| Error::not_found("server"))?
                .parse()
                .map_err(|_| corrupt("node id", "server row"))?;
            let (node, used_memory, used_disk) = node_usage(&mut tx, node_id, Some(id)).await?;
            node.check_fits(used_memory + limits.memory_mb, used_disk + limits.disk_mb)?;
        }
        let done = sqlx::query(
            "UPDATE servers SET name = COALESCE(?1, name), description = COALESCE(?2, description), \
             owner_id = COALESCE(?3, owner_id), memory_mb = COALESCE(?4, memory_mb), swap_mb = COALESCE(?5, swap_mb), \
             cpu_percent = COALESCE(?6, cpu_percent), disk_mb = COALESCE(?7, disk_mb), \
             io_weight = COALESCE(?8, io_weight), pids = COALESCE(?9, pids), \
             environment = json_patch(COALESCE(?10, environment), COALESCE(?13, '{}')), updated_at = ?11 \
             WHERE id = ?12",
        )
        .bind(patch.name)
        .bind(patch.description)
        .bind(patch.owner_id.map(|o| o.to_string()))
        .bind(l.map(|l| l.memory_mb))
        .bind(l.map(|l| l.swap_mb))
        .bind(l.map(|l| l.cpu_percent))
        .bind(l.map(|l| l.disk_mb))
        .bind(l.map(|l| l.io_weight))
        .bind(l.map(|l| l.pids))
        .bind(patch.environment.as_ref().map(env_json).transpose()?)
        .bind(now.0)
        .bind(id.to_string())
        .bind(patch.set_variables.as_ref().map(env_json).transpose()?)
        .execute(&mut *tx)
        .await
        .map_err(|e| map(e, "owner", "server exists"))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("server"));
        }
        tx.commit().await.map_err(db)?;
        self.get(id).await
    }

    async fn set_state(&self, id: ServerId, next: ServerState, now: Timestamp) -> Result<Server> {
        let current = self.get(id).await?;
        current.state.transition(next).map_err(|e| Error::conflict(e.to_string()))?;
        // Compare-and-set: only if nobody moved it since we read it.
        let done = sqlx::query("UPDATE servers SET state = ?, updated_at = ? WHERE id = ? AND state = ?")
            .bind(next.as_str())
            .bind(now.0)
            .bind(id.to_string())
            .bind(current.state.as_str())
            .execute(&self.1)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            let now_state = self.get(id).await?.state;
            return Err(Error::conflict(format!(
                "the server changed to {now_state} meanwhile; cannot go from {} to {next}",
                current.state
            )));
        }
        self.get(id).await
    }

    async fn mark_node_unknown(&self, node: NodeId, now: Timestamp) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE servers SET state = 'unknown', updated_at = ? WHERE node_id = ? AND state != 'unknown'",
        )
        .bind(now.0)
        .bind(node.to_string())
        .execute(&self.1)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn apply_reported_state(
        &self,
        id: ServerId,
        state: ServerState,
        seq: u64,
        now: Timestamp,
    ) -> Result<Option<Server>> {
        let seq = i64::try_from(seq).map_err(|_| Error::invalid("seq", "out of range"))?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE servers SET state = ?, agent_seq = ?, updated_at = ? WHERE id = ? AND agent_seq < ? \
             RETURNING {COLUMNS}"
        )))
        .bind(state.as_str())
        .bind(seq)
        .bind(now.0)
        .bind(id.to_string())
        .bind(seq)
        .fetch_optional(&self.0)
        .await
        .map_err(db)?;
        match row {
            Some(row) => Ok(Some(from_row(&row)?)),
            // Already applied, or no such server: `get` tells which.
            None => self.get(id).await.map(|_| None),
        }
    }

    async fn reported_seqs(&self, node: NodeId) -> Result<Vec<(ServerId, u64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT id, agent_seq FROM servers WHERE node_id = ? ORDER BY id")
                .bind(node.to_string())
                .fetch_all(&self.0)
                .await
                .map_err(db)?;
        rows.into_iter()
            .map(|(id, seq)| Ok((id.parse().map_err(|_| corrupt("servers.id", &id))?, seq.max(0) as u64)))
            .collect()
    }

    async fn delete(&self, id: ServerId) -> Result<()> {
        let mut tx = self.1.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        sqlx::query("UPDATE allocations SET server_id = NULL, is_primary = 0 WHERE server_id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let done =
            sqlx::query("DELETE FROM servers WHERE id = ?").bind(id.to_string()).execute(&mut *tx).await.map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("server"));
        }
        tx.commit().await.map_err(db)
    }

    async fn set_subuser(
        &self,
        server: ServerId,
        user: UserId,
        permissions: PermissionSet,
        now: Timestamp,
    ) -> Result<Subuser> {
        let s = self.get(server).await?;
        if s.owner_id == user {
            return Err(Error::conflict("the owner cannot be a subuser of their own server"));
        }
        sqlx::query(
            "INSERT INTO subusers (server_id, user_id, permissions, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (server_id, user_id) DO UPDATE SET permissions = excluded.permissions",
        )
        .bind(server.to_string())
        .bind(user.to_string())
        .bind(permissions.bits() as i64)
        .bind(now.0)
        .execute(&self.1)
        .await
        .map_err(|e| map(e, "user", "subuser exists"))?;
        let row = sqlx::query(
            "SELECT server_id, user_id, permissions, created_at FROM subusers WHERE server_id = ? AND user_id = ?",
        )
        .bind(server.to_string())
        .bind(user.to_string())
        .fetch_one(&self.0)
        .await
        .map_err(db)?;
        subuser_from_row(&row)
    }

    async fn remove_subuser(&self, server: ServerId, user: UserId) -> Result<()> {
        let done = sqlx::query("DELETE FROM subusers WHERE server_id = ? AND user_id = ?")
            .bind(server.to_string())
            .bind(user.to_string())
            .execute(&self.1)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("subuser"));
        }
        Ok(())
    }

    async fn list_subusers(&self, server: ServerId) -> Result<Vec<Subuser>> {
        let rows = sqlx::query(
            "SELECT server_id, user_id, permissions, created_at FROM subusers WHERE server_id = ? ORDER BY created_at, user_id",
        )
        .bind(server.to_string())
        .fetch_all(&self.0)
        .await
        .map_err(db)?;
        rows.iter().map(subuser_from_row).collect()
    }

    async fn relation(&self, server: ServerId, user: UserId) -> Result<ServerRelation> {
        let row = sqlx::query(
            "SELECT s.owner_id, su.permissions FROM servers s \
             LEFT JOIN subusers su ON su.server_id = s.id AND su.user_id = ?2 WHERE s.id = ?1",
        )
        .bind(server.to_string())
        .bind(user.to_string())
        .fetch_one(&self.0)
        .await
        .map_err(|e| map(e, "server", "server exists"))?;
        let owner: UserId = get_id(&row, "owner_id")?;
        let granted: Option<i64> = get(&row, "permissions")?;
        Ok(if owner == user {
            ServerRelation::Owner
        } else if let Some(bits) = granted {
            ServerRelation::Subuser(PermissionSet::from_bits(bits as u64))
        } else {
            ServerRelation::None
        })
    }

    async fn visible_ids(&self, user: UserId) -> Result<Vec<ServerId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM servers WHERE owner_id = ?1 UNION SELECT server_id FROM subusers WHERE user_id = ?1",
        )
        .bind(user.to_string())
        .fetch_all(&self.0)
        .await
        .map_err(db)?;
        ids.iter().map(|s| s.parse().map_err(|_| corrupt("server id", s))).collect()
    }
}

fn subuser_from_row(row: &SqliteRow) -> Result<Subuser> {
    Ok(Subuser {
        server_id: get_id(row, "server_id")?,
        user_id: get_id(row, "user_id")?,
        permissions: PermissionSet::from_bits(get::<i64>(row, "permissions")? as u64),
        created_at: Timestamp(get(row, "created_at")?),
    })
}
