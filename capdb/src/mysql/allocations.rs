//! Allocations (ip:port on a node) in MySQL/MariaDB.

use super::error::{db, map};
use super::{get, get_id, get_opt_id, to_page};
use async_trait::async_trait;
use capcore::backend::AllocationRepo;
use capcore::ids::{AllocationId, NodeId, ServerId};
use capcore::model::{Allocation, Page, PageRequest};
use capcore::{Error, Result};
use sqlx::mysql::MySqlRow;
use sqlx::{AssertSqlSafe, MySqlPool};

#[derive(Debug, Clone)]
pub(crate) struct MysqlAllocations(pub(crate) MySqlPool);

pub(crate) const COLUMNS: &str = "id, node_id, ip, port, server_id, is_primary";

pub(crate) fn from_row(row: &MySqlRow) -> Result<Allocation> {
    let port: i32 = get(row, "port")?;
    Ok(Allocation {
        id: get_id(row, "id")?,
        node_id: get_id(row, "node_id")?,
        ip: get(row, "ip")?,
        port: u16::try_from(port).map_err(|_| crate::error::corrupt("port", port))?,
        server_id: get_opt_id(row, "server_id")?,
        primary: get(row, "is_primary")?,
    })
}

#[async_trait]
impl AllocationRepo for MysqlAllocations {
    async fn add(&self, node: NodeId, ip: &str, ports: &[u16]) -> Result<Vec<Allocation>> {
        // One row per statement inside one transaction, so a conflict names its port; the first
        // error drops the transaction, which rolls back the rows added before it.
        let mut tx = self.0.begin().await.map_err(db)?;
        let mut out = Vec::with_capacity(ports.len());
        for port in ports {
            let allocation = Allocation {
                id: AllocationId::new_random(),
                node_id: node,
                ip: ip.to_string(),
                port: *port,
                server_id: None,
                primary: false,
            };
            sqlx::query(AssertSqlSafe(format!("INSERT INTO allocations ({COLUMNS}) VALUES (?, ?, ?, ?, NULL, FALSE)")))
                .bind(allocation.id.to_string())
                .bind(node.to_string())
                .bind(ip)
                .bind(i32::from(*port))
                .execute(&mut *tx)
                .await
                .map_err(|e| map(e, "node", &format!("{ip}:{port} already exists on this node")))?;
            out.push(allocation);
        }
        tx.commit().await.map_err(db)?;
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
            .execute(&self.0)
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
