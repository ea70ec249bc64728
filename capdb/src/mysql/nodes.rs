//! Nodes in MySQL/MariaDB.

use super::error::{db, map};
use super::{fetch_by_id, get, get_id, list_table};
use async_trait::async_trait;
use capcore::backend::NodeRepo;
use capcore::ids::NodeId;
use capcore::model::{NewNode, Node, NodePatch, Page, PageRequest};
use capcore::time::Timestamp;
use capcore::{Error, Result};
use sqlx::mysql::MySqlRow;
use sqlx::{AssertSqlSafe, MySqlPool};

#[derive(Debug, Clone)]
pub(crate) struct MysqlNodes(pub(crate) MySqlPool);

pub(crate) const COLUMNS: &str = "id, name, description, fqdn, memory_mb, memory_overallocate, disk_mb, disk_overallocate, \
                       token_hash, created_at, updated_at";
const CONFLICT: &str = "a node with that name already exists";

pub(crate) fn from_row(row: &MySqlRow) -> Result<Node> {
    Ok(Node {
        id: get_id(row, "id")?,
        name: get(row, "name")?,
        description: get(row, "description")?,
        fqdn: get(row, "fqdn")?,
        memory_mb: get(row, "memory_mb")?,
        memory_overallocate: get(row, "memory_overallocate")?,
        disk_mb: get(row, "disk_mb")?,
        disk_overallocate: get(row, "disk_overallocate")?,
        token_hash: get(row, "token_hash")?,
        created_at: Timestamp(get(row, "created_at")?),
        updated_at: Timestamp(get(row, "updated_at")?),
    })
}

#[async_trait]
impl NodeRepo for MysqlNodes {
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
        sqlx::query(AssertSqlSafe(format!("INSERT INTO nodes ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")))
            .bind(node.id.to_string())
            .bind(&node.name)
            .bind(&node.description)
            .bind(&node.fqdn)
            .bind(node.memory_mb)
            .bind(node.memory_overallocate)
            .bind(node.disk_mb)
            .bind(node.disk_overallocate)
            .bind(&node.token_hash)
            .bind(now.0)
            .bind(now.0)
            .execute(&self.0)
            .await
            .map_err(|e| map(e, "node", CONFLICT))?;
        Ok(node)
    }

    async fn get(&self, id: NodeId) -> Result<Node> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM nodes WHERE id = ?")))
            .bind(id.to_string())
            .fetch_one(&self.0)
            .await
            .map_err(|e| map(e, "node", CONFLICT))?;
        from_row(&row)
    }

    async fn find_by_token_hash(&self, token_hash: &str) -> Result<Option<Node>> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM nodes WHERE token_hash = ?")))
            .bind(token_hash)
            .fetch_optional(&self.0)
            .await
            .map_err(db)?;
        row.as_ref().map(from_row).transpose()
    }

    async fn list(&self, page: PageRequest) -> Result<Page<Node>> {
        list_table(&self.0, "nodes", COLUMNS, page, from_row).await
    }

    async fn update(&self, id: NodeId, patch: NodePatch, now: Timestamp) -> Result<Node> {
        let mut tx = self.0.begin().await.map_err(db)?;
        let done = sqlx::query(
            "UPDATE nodes SET name = COALESCE(?, name), description = COALESCE(?, description), \
             fqdn = COALESCE(?, fqdn), memory_mb = COALESCE(?, memory_mb), \
             memory_overallocate = COALESCE(?, memory_overallocate), disk_mb = COALESCE(?, disk_mb), \
             disk_overallocate = COALESCE(?, disk_overallocate), updated_at = ? WHERE id = ?",
        )
        .bind(patch.name)
        .bind(patch.description)
        .bind(patch.fqdn)
        .bind(patch.memory_mb)
        .bind(patch.memory_overallocate)
        .bind(patch.disk_mb)
        .bind(patch.disk_overallocate)
        .bind(now.0)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| map(e, "node", CONFLICT))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("node"));
        }
        let node = fetch_by_id(&mut tx, "nodes", COLUMNS, &id.to_string(), from_row).await?;
        tx.commit().await.map_err(db)?;
        Ok(node)
    }

    async fn set_token_hash(&self, id: NodeId, token_hash: &str, now: Timestamp) -> Result<()> {
        let done = sqlx::query("UPDATE nodes SET token_hash = ?, updated_at = ? WHERE id = ?")
            .bind(token_hash)
            .bind(now.0)
            .bind(id.to_string())
            .execute(&self.0)
            .await
            .map_err(|e| map(e, "node", "that token is already in use"))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("node"));
        }
        Ok(())
    }

    async fn delete(&self, id: NodeId) -> Result<()> {
        let mut tx = self.0.begin().await.map_err(db)?;
        // The lock server creation takes too: no server lands on the node while we decide.
        let found: Option<String> = sqlx::query_scalar("SELECT id FROM nodes WHERE id = ? FOR UPDATE")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if found.is_none() {
            return Err(Error::not_found("node"));
        }
        let servers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM servers WHERE node_id = ?")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        if servers > 0 {
            return Err(Error::conflict(format!("the node still has {servers} server(s); delete or move them first")));
        }
        sqlx::query("DELETE FROM nodes WHERE id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| map(e, "node", CONFLICT))?;
        tx.commit().await.map_err(db)
    }
}
