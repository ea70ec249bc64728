//! Servers, their allocations and subusers in PostgreSQL.

use super::error::{db, map};
use super::{get, get_id, get_json, like_contains, to_page};
use crate::error::corrupt;
use async_trait::async_trait;
use capcore::backend::ServerRepo;
use capcore::ids::{NodeId, ServerId, UserId};
use capcore::model::*;
use capcore::permission::{PermissionSet, ServerRelation};
use capcore::state::ServerState;
use capcore::time::Timestamp;
use capcore::{Error, Result};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgPool, Postgres, QueryBuilder, Transaction};

#[derive(Debug, Clone)]
pub(crate) struct PostgresServers(pub(crate) PgPool);

/// What a server is read as.
const COLUMNS: &str = "id, name, description, owner_id, node_id, template_id, memory_mb, swap_mb, cpu_percent, disk_mb, \
                       io_weight, pids, environment::text AS environment, state, created_at, updated_at";

fn from_row(row: &PgRow) -> Result<Server> {
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

fn env_json(env: &std::collections::BTreeMap<String, String>) -> Result<String> {
    serde_json::to_string(env).map_err(|e| Error::internal("cannot encode environment", e))
}

/// Locks the node row (`FOR NO KEY UPDATE`: every server creation and limit change on the node
/// waits for this transaction, while allocations may still be added) and reads the node with
/// the memory and disk its servers are given, leaving out `except`.
async fn lock_node_usage(
    tx: &mut Transaction<'static, Postgres>,
    node: NodeId,
    except: Option<ServerId>,
) -> Result<(Node, i64, i64)> {
    let node_row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {} FROM nodes WHERE id = $1 FOR NO KEY UPDATE",
        super::nodes::COLUMNS
    )))
    .bind(node.to_string())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?
    .ok_or_else(|| Error::conflict("node does not exist"))?;
    // Read after the lock is held, so it counts every server committed before us.
    let (used_memory, used_disk): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(memory_mb), 0)::BIGINT, COALESCE(SUM(disk_mb), 0)::BIGINT FROM servers \
         WHERE node_id = $1 AND id IS DISTINCT FROM $2",
    )
    .bind(node.to_string())
    .bind(except.map(|e| e.to_string()))
    .fetch_one(&mut **tx)
    .await
    .map_err(db)?;
    Ok((super::nodes::from_row(&node_row)?, used_memory, used_disk))
}

/// SERVER_VIEW's bit: a subuser without it does not see the server.
const SERVER_VIEW_BIT: i64 = (1u64 << capcore::permission::Permission::SERVER_VIEW as u8) as i64;

/// Appends the WHERE clause of a listing.
fn push_filter(q: &mut QueryBuilder<Postgres>, filter: &ServerFilter) {
    q.push(" WHERE TRUE");
    if let Some(user) = filter.visible_to {
        q.push(" AND (owner_id = ")
            .push_bind(user.to_string())
            .push(" OR id IN (SELECT server_id FROM subusers WHERE user_id = ")
            .push_bind(user.to_string())
            .push(format!(" AND (permissions & {SERVER_VIEW_BIT}::BIGINT) <> 0))"));
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
impl ServerRepo for PostgresServers {
    async fn create(&self, new: NewServer, now: Timestamp) -> Result<Server> {
        let id = ServerId::new_random();
        let mut tx = self.0.begin().await.map_err(db)?;
        // With the node locked, two creations cannot both fit into its last free memory.
        let (node, used_memory, used_disk) = lock_node_usage(&mut tx, new.node_id, None).await?;
        node.check_fits(used_memory + new.limits.memory_mb, used_disk + new.limits.disk_mb)?;
        sqlx::query(
            "INSERT INTO servers (id, name, description, owner_id, node_id, template_id, memory_mb, swap_mb, \
             cpu_percent, disk_mb, io_weight, pids, environment, state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14, $15, $15)",
        )
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
        .execute(&mut *tx)
        .await
        .map_err(|e| map(e, "owner, node or template", "server exists"))?;
        // `server_id IS NULL` is checked again on the row itself after any wait for its lock, so
        // an allocation is never handed to two servers, whatever else holds the node.
        let taken = match new.allocation {
            AllocationRequest::AnyFree => sqlx::query(
                "UPDATE allocations SET server_id = $1, is_primary = TRUE WHERE server_id IS NULL AND id = \
                 (SELECT id FROM allocations WHERE node_id = $2 AND server_id IS NULL ORDER BY ip, port \
                 LIMIT 1 FOR UPDATE SKIP LOCKED)",
            )
            .bind(id.to_string())
            .bind(new.node_id.to_string()),
            AllocationRequest::Specific(a) => sqlx::query(
                "UPDATE allocations SET server_id = $1, is_primary = TRUE \
                 WHERE id = $3 AND node_id = $2 AND server_id IS NULL",
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
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM servers WHERE id = $1")))
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let server = from_row(&row)?;
        tx.commit().await.map_err(db)?;
        Ok(server)
    }

    async fn get(&self, id: ServerId) -> Result<Server> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM servers WHERE id = $1")))
            .bind(id.to_string())
            .fetch_one(&self.0)
            .await
            .map_err(|e| map(e, "server", "server exists"))?;
        from_row(&row)
    }

    async fn list(&self, filter: &ServerFilter, page: PageRequest) -> Result<Page<Server>> {
        let mut count = QueryBuilder::<Postgres>::new("SELECT COUNT(*) FROM servers");
        push_filter(&mut count, filter);
        let total: i64 = count.build_query_scalar().fetch_one(&self.0).await.map_err(db)?;
        let mut q = QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM servers"));
        push_filter(&mut q, filter);
        q.push(" ORDER BY created_at, id LIMIT ")
            .push_bind(i64::from(page.per_page))
            .push(" OFFSET ")
            .push_bind(page.offset() as i64);
        let rows = q.build().fetch_all(&self.0).await.map_err(db)?;
        to_page(&rows, total, page, from_row)
    }

    async fn update(&self, id: ServerId, patch: ServerPatch, now: Timestamp) -> Result<Server> {
        let l = patch.limits;
        let mut tx = self.0.begin().await.map_err(db)?;
        if let Some(limits) = l {
            let node_id: Option<String> = sqlx::query_scalar("SELECT node_id FROM servers WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            let node_id: NodeId = node_id
                .ok_or_else(|| Error::not_found("server"))?
                .parse()
                .map_err(|_| corrupt("node id", "server row"))?;
            let (node, used_memory, used_disk) = lock_node_usage(&mut tx, node_id, Some(id)).await?;
            node.check_fits(used_memory + limits.memory_mb, used_disk + limits.disk_mb)?;
        }
        // One statement writing only the patched columns; the environment is replaced and then
        // merged with `set_variables` on the row as it is when the statement runs, so concurrent
        // edits of different variables both stay.
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE servers SET name = COALESCE($1, name), description = COALESCE($2, description), \
             owner_id = COALESCE($3, owner_id), memory_mb = COALESCE($4, memory_mb), \
             swap_mb = COALESCE($5, swap_mb), cpu_percent = COALESCE($6, cpu_percent), \
             disk_mb = COALESCE($7, disk_mb), io_weight = COALESCE($8, io_weight), pids = COALESCE($9, pids), \
             environment = COALESCE($10::jsonb, environment) || COALESCE($13::jsonb, '{{}}'::jsonb), \
             updated_at = $11 WHERE id = $12 RETURNING {COLUMNS}"
        )))
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
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| map(e, "owner", "server exists"))?;
        let server = from_row(&row.ok_or_else(|| Error::not_found("server"))?)?;
        tx.commit().await.map_err(db)?;
        Ok(server)
    }

    async fn set_state(&self, id: ServerId, next: ServerState, now: Timestamp) -> Result<Server> {
        let current = self.get(id).await?;
        current.state.transition(next).map_err(|e| Error::conflict(e.to_string()))?;
        // Compare-and-set: only if nobody moved it since we read it. A concurrent writer makes
        // this wait for its row lock, then the condition is checked again on its result.
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE servers SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4 RETURNING {COLUMNS}"
        )))
        .bind(next.as_str())
        .bind(now.0)
        .bind(id.to_string())
        .bind(current.state.as_str())
        .fetch_optional(&self.0)
        .await
        .map_err(db)?;
        match row {
            Some(row) => from_row(&row),
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
        let done = sqlx::query(
            "UPDATE servers SET state = 'unknown', updated_at = $1 WHERE node_id = $2 AND state <> 'unknown'",
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
        // One statement: of two deliveries of one event, the second waits for the first's row
        // lock and then finds `agent_seq` no longer smaller.
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE servers SET state = $1, agent_seq = $2, updated_at = $3 WHERE id = $4 AND agent_seq < $2 \
             RETURNING {COLUMNS}"
        )))
        .bind(state.as_str())
        .bind(seq)
        .bind(now.0)
        .bind(id.to_string())
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
            sqlx::query_as("SELECT id, agent_seq FROM servers WHERE node_id = $1 ORDER BY id")
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
        sqlx::query("UPDATE allocations SET server_id = NULL, is_primary = FALSE WHERE server_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let done = sqlx::query("DELETE FROM servers WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
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
        // One statement: the grant is written only while the user is not the owner.
        let row = sqlx::query(
            "INSERT INTO subusers (server_id, user_id, permissions, created_at) \
             SELECT id, $2, $3, $4 FROM servers WHERE id = $1 AND owner_id <> $2 \
             ON CONFLICT (server_id, user_id) DO UPDATE SET permissions = excluded.permissions \
             RETURNING server_id, user_id, permissions, created_at",
        )
        .bind(server.to_string())
        .bind(user.to_string())
        .bind(permissions.bits() as i64)
        .bind(now.0)
        .fetch_optional(&self.0)
        .await
        .map_err(|e| map(e, "user", "subuser exists"))?;
        match row {
            Some(row) => subuser_from_row(&row),
            // No such server (`NotFound`), or the user owns it.
            None => {
                self.get(server).await?;
                Err(Error::conflict("the owner cannot be a subuser of their own server"))
            }
        }
    }

    async fn remove_subuser(&self, server: ServerId, user: UserId) -> Result<()> {
        let done = sqlx::query("DELETE FROM subusers WHERE server_id = $1 AND user_id = $2")
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
            "SELECT server_id, user_id, permissions, created_at FROM subusers WHERE server_id = $1 \
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
             LEFT JOIN subusers su ON su.server_id = s.id AND su.user_id = $2 WHERE s.id = $1",
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
            "SELECT id FROM servers WHERE owner_id = $1 UNION SELECT server_id FROM subusers WHERE user_id = $1",
        )
        .bind(user.to_string())
        .fetch_all(&self.0)
        .await
        .map_err(db)?;
        ids.iter().map(|s| s.parse().map_err(|_| corrupt("server id", s))).collect()
    }
}

fn subuser_from_row(row: &PgRow) -> Result<Subuser> {
    Ok(Subuser {
        server_id: get_id(row, "server_id")?,
        user_id: get_id(row, "user_id")?,
        permissions: PermissionSet::from_bits(get::<i64>(row, "permissions")? as u64),
        created_at: Timestamp(get(row, "created_at")?),
    })
}
