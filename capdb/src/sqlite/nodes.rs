//! Nodes in SQLite.

use super::{get, get_id, list_table};
use crate::error::{db, map};
use async_trait::async_trait;
use capcore::backend::NodeRepo;
use capcore::ids::NodeId;
use capcore::model::{NewNode, Node, NodePatch, Page, PageRequest};
use capcore::time::Timestamp;
use capcore::{Error, Result};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, SqlitePool};

#[derive(Debug, Clone)]
pub(crate) struct SqliteNodes(pub(crate) SqlitePool, pub(crate) SqlitePool);

pub(crate) const COLUMNS: &str = "id, name, description, fqdn, memory_mb, memory_overallocate, disk_mb, disk_overallocate, \
                       token_hash, created_at, updated_at";
const CONFLICT: &str = "a node with that name already exists";

pub(crate) fn from_row(row: &SqliteRow) -> Result<Node> {
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
impl NodeRepo for SqliteNodes {
    async fn create(&self, new: NewNode, now: Timestamp) -> Result<Node> {
        let id = NodeId::new_random();
        sqlx::query(AssertSqlSafe(format!("INSERT INTO nodes ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")))
            .bind(id.to_string())
            .bind(&new.name)
            .bind(&new.description)
            .bind(&new.fqdn)
            .bind(new.memory_mb)
            .bind(new.memory_overallocate)
            .bind(new.disk_mb)
            .bind(new.disk_overallocate)
            .bind(&new.token_hash)
            .bind(now.0)
            .bind(now.0)
            .execute(&self.1)
            .await
            .map_err(|e| map(e, "node", CONFLICT))?;
        self.get(id).await
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
        let done = sqlx::query(
            "UPDATE nodes SET name = COALESCE(?1, name), description = COALESCE(?2, description), \
             fqdn = COALESCE(?3, fqdn), memory_mb = COALESCE(?4, memory_mb), \
             memory_overallocate = COALESCE(?5, memory_overallocate), disk_mb = COALESCE(?6, disk_mb), \
             disk_overallocate = COALESCE(?7, disk_overallocate), updated_at = ?8 WHERE id = ?9",
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
        .execute(&self.1)
        .await
        .map_err(|e| map(e, "node", CONFLICT))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("node"));
        }
        self.get(id).await
    }

    async fn set_token_hash(&self, id: NodeId, token_hash: &str, now: Timestamp) -> Result<()> {
        let done = sqlx::query("UPDATE nodes SET token_hash = ?, updated_at = ? WHERE id = ?")
            .bind(token_hash)
            .bind(now.0)
            .bind(id.to_string())
            .execute(&self.1)
            .await
            .map_err(|e| map(e, "node", "that token is already in use"))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("node"));
        }
        Ok(())
    }

    async fn delete(&self, id: NodeId) -> Result<()> {
        let mut tx = self.1.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let servers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM servers WHERE node_id = ?")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        if servers > 0 {
            return Err(Error::conflict(format!("the node still has {servers} server(s); delete or move them first")));
        }
        let done =
            sqlx::query("DELETE FROM nodes WHERE id = ?").bind(id.to_string()).execute(&mut *tx).await.map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("node"));
        }
        tx.commit().await.map_err(db)
    }
}
