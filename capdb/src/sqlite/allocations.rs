//! Allocations (ip:port on a node) in SQLite.

use super::{get, get_id, get_opt_id, to_page};
use crate::error::{db, map};
use async_trait::async_trait;
use capcore::backend::AllocationRepo;
use capcore::ids::{AllocationId, NodeId, ServerId};
use capcore::model::{Allocation, Page, PageRequest};
use capcore::{Error, Result};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, SqlitePool};

#[derive(Debug, Clone)]
pub(crate) struct SqliteAllocations(pub(crate) SqlitePool, pub(crate) SqlitePool);

pub(crate) const COLUMNS: &str = "id, node_id, ip, port, server_id, is_primary";

pub(crate) fn from_row(row: &SqliteRow) -> Result<Allocation> {
    Ok(Allocation {
        id: get_id(row, "id")?,
        node_id: get_id(row, "node_id")?,
        ip: get(row, "ip")?,
        port: get::<i64>(row, "port")? as u16,
        server_id: get_opt_id(row, "server_id")?,
        primary: get(row, "is_primary")?,
    })
}

#[async_trait]
impl AllocationRepo for SqliteAllocations {
    async fn add(&self, node: NodeId, ip: &str, ports: &[u16]) -> Result<Vec<Allocation>> {
        let mut tx = self.1.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let mut ids = Vec::with_capacity(ports.len());
        for port in ports {
            let id = AllocationId::new_random();
            sqlx::query(
                "INSERT INTO allocations (id, node_id, ip, port, server_id, is_primary) VALUES (?, ?, ?, ?, NULL, 0)",
            )
            .bind(id.to_string())
            .bind(node.to_string())
            .bind(ip)
            .bind(i64::from(*port))
            .execute(&mut *tx)
            .await
            .map_err(|e| map(e, "node", &format!("{ip}:{port} already exists on this node")))?;
            ids.push(id);
        }
        tx.commit().await.map_err(db)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.get(id).await?);
        }
        Ok(out)
    }

    async fn get(&self, id: AllocationId) -> Result<Allocation> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM allocations WHERE id = ?")))
            .bind(id.to_string())
            .fetch_one(&self.0)
            .await
            .map_err(|e| map(e, "allocation", "allocation exists"))?;
        from_row(&row)
    }

    async fn list_for_node(&self, node: NodeId, page: PageRequest) -> Result<Page<Allocation>> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM allocations WHERE node_id = ?")
            .bind(node.to_string())
            .fetch_one(&self.0)
            .await
            .map_err(db)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM allocations WHERE node_id = ? ORDER BY ip, port LIMIT ? OFFSET ?"
        )))
        .bind(node.to_string())
        .bind(i64::from(page.per_page))
        .bind(page.offset() as i64)
        .fetch_all(&self.0)
        .await
        .map_err(db)?;
        to_page(&rows, total, page, from_row)
    }

    async fn list_for_server(&self, server: ServerId) -> Result<Vec<Allocation>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM allocations WHERE server_id = ? ORDER BY is_primary DESC, ip, port"
        )))
        .bind(server.to_string())
        .fetch_all(&self.0)
        .await
        .map_err(db)?;
        rows.iter().map(from_row).collect()
    }

    async fn delete(&self, id: AllocationId) -> Result<()> {
        let done = sqlx::query("DELETE FROM allocations WHERE id = ? AND server_id IS NULL")
            .bind(id.to_string())
            .execute(&self.1)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            // Either missing or held: tell which.
            let a = self.get(id).await?;
            return Err(Error::conflict(format!("{}:{} is held by a server", a.ip, a.port)));
        }
        Ok(())
    }
}
