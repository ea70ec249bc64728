//! Servers, their allocations and subusers in MySQL/MariaDB.

use super::error::{db, map};
use super::{fetch_by_id, get, get_id, get_json, like_contains, to_page};
use crate::error::corrupt;
use async_trait::async_trait;
use capcore::backend::ServerRepo;
use capcore::ids::{AllocationId, NodeId, ServerId, UserId};
use capcore::model::*;
use capcore::permission::{PermissionSet, ServerRelation};
use capcore::state::ServerState;
use capcore::time::Timestamp;
use capcore::{Error, Result};
use sqlx::mysql::MySqlRow;
use sqlx::{AssertSqlSafe, MySql, MySqlConnection, MySqlPool, QueryBuilder};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub(crate) struct MysqlServers(pub(crate) MySqlPool);

/// What a server is read as.
const COLUMNS: &str = "id, name, description, owner_id, node_id, template_id, memory_mb, swap_mb, cpu_percent, disk_mb, \
                       io_weight, pids, environment, state, created_at, updated_at";

fn from_row(row: &MySqlRow) -> Result<Server> {
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
        environment: get_json(row, "environment", "environment")?,
        state: ServerState::parse(&state).ok_or_else(|| corrupt("state", &state))?,
        created_at: Timestamp(get(row, "created_at")?),
        updated_at: Timestamp(get(row, "updated_at")?),
    })
}

fn env_json(env: &BTreeMap<String, String>) -> Result<String> {
    serde_json::to_string(env).map_err(|e| Error::internal("cannot encode environment", e))
}

/// Locks the node row (`FOR UPDATE`: every server creation and limit change on the node waits
/// for this transaction) and reads the node with the memory and disk its servers are given,
/// leaving out `except`.
async fn lock_node_usage(
    conn: &mut MySqlConnection,
    node: NodeId,
    except: Option<ServerId>,
) -> Result<(Node, i64, i64)> {
    let node_row =
        sqlx::query(AssertSqlSafe(format!("SELECT {} FROM nodes WHERE id = ? FOR UPDATE", super::nodes::COLUMNS)))
            .bind(node.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?
            .ok_or_else(|| Error::conflict("node does not exist"))?;
    // Read after the lock is held, and under READ COMMITTED, so it counts every server
    // committed before us. `SUM` is DECIMAL; the casts bring it back to BIGINT.
    let (used_memory, used_disk): (i64, i64) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(memory_mb), 0) AS SIGNED), CAST(COALESCE(SUM(disk_mb), 0) AS SIGNED) \
         FROM servers WHERE node_id = ? AND NOT (id <=> ?)",
    )
    .bind(node.to_string())
    .bind(except.map(|e| e.to_string()))
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    Ok((super::nodes::from_row(&node_row)?, used_memory, used_disk))
}

/// SERVER_VIEW's bit: a subuser without it does not see the server.
const SERVER_VIEW_BIT: i64 = (1u64 << capcore::permission::Permission::SERVER_VIEW as u8) as i64;

/// Appends the WHERE clause of a listing.
fn push_filter(q: &mut QueryBuilder<MySql>, filter: &ServerFilter) {
    q.push(" WHERE TRUE");
    if let Some(user) = filter.visible_to {
        q.push(" AND (owner_id = ")
            .push_bind(user.to_string())
            .push(" OR id IN (SELECT server_id FROM subusers WHERE user_id = ")
            .push_bind(user.to_string())
            .push(format!(" AND (permissions & {SERVER_VIEW_BIT}) <> 0))"));
    }
    if let Some(owner) = filter.owner_id {
        q.push(" AND owner_id = ").push_bind(owner.to_string());
    }
    if let Some(node) = filter.node_id {
        q.push(" AND node_id = ").push_bind(node.to_string());
    }
    if let Some(name) = &filter.name_contains {
        q.push(" AND LOWER(name) LIKE ").push_bind(like_contains(&name.to_lowercase())).push(" ESCAPE '!'");
    }
    if let Some(state) = filter.state {
        q.push(" AND state = ").push_bind(state.as_str());
    }
}

/// Takes a free allocation of `node` for `server`, the requested one or any; `false` when there
/// is none. The `server_id IS NULL` of the `UPDATE` is checked again on the row after any wait
/// for its lock, so an allocation is never handed to two servers, whatever else holds the node.
async fn take_allocation(
    conn: &mut MySqlConnection,
    server: ServerId,
    node: NodeId,
    request: &AllocationRequest,
) -> Result<bool> {
    let wanted: AllocationId = match request {
        AllocationRequest::Specific(a) => *a,
        // MySQL cannot update a table it selects from in a subquery, hence two statements.
        AllocationRequest::AnyFree => {
            let free: Option<String> = sqlx::query_scalar(
                "SELECT id FROM allocations WHERE node_id = ? AND server_id IS NULL ORDER BY ip, port \
                 LIMIT 1 FOR UPDATE SKIP LOCKED",
            )
            .bind(node.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
            match free {
                Some(id) => id.parse().map_err(|_| corrupt("allocations.id", &id))?,
                None => return Ok(false),
            }
        }
    };
    let taken = sqlx::query(
        "UPDATE allocations SET server_id = ?, is_primary = TRUE WHERE id = ? AND node_id = ? AND server_id IS NULL",
    )
    .bind(server.to_string())
    .bind(wanted.to_string())
    .bind(node.to_string())
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(taken.rows_affected() == 1)
}

#[async_trait]
impl ServerRepo for MysqlServers {
    async fn create(&self, new: NewServer, now: Timestamp) -> Result<Server> {
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
        let mut tx = self.0.begin().await.map_err(db)?;
        // With the node locked, two creations cannot both fit into its last free memory.
        let (node, used_memory, used_disk) = lock_node_usage(&mut tx, server.node_id, None).await?;
        node.check_fits(used_memory + server.limits.memory_mb, used_disk + server.limits.disk_mb)?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO servers ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )))
        .bind(server.id.to_string())
        .bind(&server.name)
        .bind(&server.description)
        .bind(server.owner_id.to_string())
        .bind(server.node_id.to_string())
        .bind(server.template_id.to_string())
        .bind(server.limits.memory_mb)
        .bind(server.limits.swap_mb)
        .bind(server.limits.cpu_percent)
        .bind(server.limits.disk_mb)
        .bind(server.limits.io_weight)
        .bind(server.limits.pids)
        .bind(env_json(&server.environment)?)
        .bind(server.state.as_str())
        .bind(now.0)
        .bind(now.0)
        .execute(&mut *tx)
        .await
        .map_err(|e| map(e, "owner, node or template", "server exists"))?;
        if !take_allocation(&mut tx, server.id, server.node_id, &new.allocation).await? {
            return Err(Error::conflict(match new.allocation {
                AllocationRequest::AnyFree => "the node has no free allocation",
                AllocationRequest::Specific(_) => "that allocation is taken or not on this node",
            }));
        }
        tx.commit().await.map_err(db)?;
        Ok(server)
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
        let mut count = QueryBuilder::<MySql>::new("SELECT COUNT(*) FROM servers");
        push_filter(&mut count, filter);
        let total: i64 = count.build_query_scalar().fetch_one(&self.0).await.map_err(db)?;
        let mut q = QueryBuilder::<MySql>::new(format!("SELECT {COLUMNS} FROM servers"));
        push_filter(&mut q, filter);
        q.push(" ORDER BY created_at, id LIMIT ")
            .push_bind(i64::from(page.per_page))
            .push(" OFFSET ")
            .push_bind(page.offset() as i64);
        let rows = q.build().fetch_all(&self.0).await.map_err(db)?;
        to_page(&rows, total, page, from_row)
    }

    async fn update(&self, id: ServerId, patch: ServerPatch, now: Timestamp) -> Result<Server> {
        let mut tx = self.0.begin().await.map_err(db)?;
        // The server row is locked first, so the environment below is merged into the row as
        // it is now and concurrent edits of different variables both stay.
        let row = sqlx::query("SELECT node_id, environment FROM servers WHERE id = ? FOR UPDATE")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or_else(|| Error::not_found("server"))?;
        if let Some(limits) = patch.limits {
            let node_id: NodeId = get_id(&row, "node_id")?;
            let (node, used_memory, used_disk) = lock_node_usage(&mut tx, node_id, Some(id)).await?;
            node.check_fits(used_memory + limits.memory_mb, used_disk + limits.disk_mb)?;
        }
        let environment = match (patch.environment, patch.set_variables) {
            (None, None) => None,
            (replaced, set) => {
                let mut env: BTreeMap<String, String> = match replaced {
                    Some(env) => env,
                    None => get_json(&row, "environment", "environment")?,
                };
                env.extend(set.unwrap_or_default());
                Some(env_json(&env)?)
            }
        };
        let l = patch.limits;
        // Writes only the patched columns.
        sqlx::query(
            "UPDATE servers SET name = COALESCE(?, name), description = COALESCE(?, description), \
             owner_id = COALESCE(?, owner_id), memory_mb = COALESCE(?, memory_mb), \
             swap_mb = COALESCE(?, swap_mb), cpu_percent = COALESCE(?, cpu_percent), \
             disk_mb = COALESCE(?, disk_mb), io_weight = COALESCE(?, io_weight), pids = COALESCE(?, pids), \
             environment = COALESCE(?, environment), updated_at = ? WHERE id = ?",
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
        .bind(environment)
        .bind(now.0)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| map(e, "owner", "server exists"))?;
        let server = fetch_by_id(&mut tx, "servers", COLUMNS, &id.to_string(), from_row).await?;
        tx.commit().await.map_err(db)?;
        Ok(server)
    }

    async fn set_state(&self, id: ServerId, next: ServerState, now: Timestamp) -> Result<Server> {
        let current = self.get(id).await?;
        current.state.transition(next).map_err(|e| Error::conflict(e.to_string()))?;
        // Compare-and-set: only if nobody moved it since we read it. A concurrent writer makes
        // this wait for its row lock, then the condition is checked again on its result; the
        // row stays locked until commit, so the read-back is what this wrote.
        let mut tx = self.0.begin().await.map_err(db)?;
        let done = sqlx::query("UPDATE servers SET state = ?, updated_at = ? WHERE id = ? AND state = ?")
            .bind(next.as_str())
            .bind(now.0)
            .bind(id.to_string())
            .bind(current.state.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| map(e, "server", "server exists"))?;
        if done.rows_affected() == 1 {
            let server = fetch_by_id(&mut tx, "servers", COLUMNS, &id.to_string(), from_row).await?;
            tx.commit().await.map_err(db)?;
            return Ok(server);
        }
        drop(tx);
        let now_state = self.get(id).await?.state;
        Err(Error::conflict(format!(
            "the server changed to {now_state} meanwhile; cannot go from {} to {next}",
            current.state
        )))
    }

    async fn mark_node_unknown(&self, node: NodeId, now: Timestamp) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE servers SET state = 'unknown', updated_at = ? WHERE node_id = ? AND state <> 'unknown'",
        )
        .bind(now.0)
        .bind(node.to_string())
        .execute(&self.0)
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
        // Of two deliveries of one event, the second waits for the first's row lock and then
        // finds `agent_seq` no longer smaller.
        let mut tx = self.0.begin().await.map_err(db)?;
        let done =
            sqlx::query("UPDATE servers SET state = ?, agent_seq = ?, updated_at = ? WHERE id = ? AND agent_seq < ?")
                .bind(state.as_str())
                .bind(seq)
                .bind(now.0)
                .bind(id.to_string())
                .bind(seq)
                .execute(&mut *tx)
                .await
                .map_err(|e| map(e, "server", "server exists"))?;
        if done.rows_affected() == 1 {
            let server = fetch_by_id(&mut tx, "servers", COLUMNS, &id.to_string(), from_row).await?;
            tx.commit().await.map_err(db)?;
            return Ok(Some(server));
        }
        drop(tx);
        // Already applied, or no such server: `get` tells which.
        self.get(id).await.map(|_| None)
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
        let mut tx = self.0.begin().await.map_err(db)?;
        sqlx::query("UPDATE allocations SET server_id = NULL, is_primary = FALSE WHERE server_id = ?")
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
        let mut tx = self.0.begin().await.map_err(db)?;
        // One statement: the grant is written only while the user is not the owner.
        let done = sqlx::query(
            "INSERT INTO subusers (server_id, user_id, permissions, created_at) \
             SELECT id, ?, ?, ? FROM servers WHERE id = ? AND owner_id <> ? \
             ON DUPLICATE KEY UPDATE permissions = VALUES(permissions)",
        )
        .bind(user.to_string())
        .bind(permissions.bits() as i64)
        .bind(now.0)
        .bind(server.to_string())
        .bind(user.to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| map(e, "user", "subuser exists"))?;
        if done.rows_affected() == 0 {
            drop(tx);
            // No such server (`NotFound`), or the user owns it.
            self.get(server).await?;
            return Err(Error::conflict("the owner cannot be a subuser of their own server"));
        }
        let row = sqlx::query(
            "SELECT server_id, user_id, permissions, created_at FROM subusers WHERE server_id = ? AND user_id = ?",
        )
        .bind(server.to_string())
        .bind(user.to_string())
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let subuser = subuser_from_row(&row)?;
        tx.commit().await.map_err(db)?;
        Ok(subuser)
    }

    async fn remove_subuser(&self, server: ServerId, user: UserId) -> Result<()> {
        let done = sqlx::query("DELETE FROM subusers WHERE server_id = ? AND user_id = ?")
            .bind(server.to_string())
            .bind(user.to_string())
            .execute(&self.0)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("subuser"));
        }
        Ok(())
    }

    async fn list_subusers(&self, server: ServerId) -> Result<Vec<Subuser>> {
        let rows = sqlx::query(
            "SELECT server_id, user_id, permissions, created_at FROM subusers WHERE server_id = ? \
             ORDER BY created_at, user_id",
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
             LEFT JOIN subusers su ON su.server_id = s.id AND su.user_id = ? WHERE s.id = ?",
        )
        .bind(user.to_string())
        .bind(server.to_string())
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
            "SELECT id FROM servers WHERE owner_id = ? UNION SELECT server_id FROM subusers WHERE user_id = ?",
        )
        .bind(user.to_string())
        .bind(user.to_string())
        .fetch_all(&self.0)
        .await
        .map_err(db)?;
        ids.iter().map(|s| s.parse().map_err(|_| corrupt("server id", s))).collect()
    }
}

fn subuser_from_row(row: &MySqlRow) -> Result<Subuser> {
    Ok(Subuser {
        server_id: get_id(row, "server_id")?,
        user_id: get_id(row, "user_id")?,
        permissions: PermissionSet::from_bits(get::<i64>(row, "permissions")? as u64),
        created_at: Timestamp(get(row, "created_at")?),
    })
}
