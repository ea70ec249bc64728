//! The audit log in MySQL/MariaDB: append-only, newest first.

use super::error::db;
use super::{get, get_id, get_json, get_opt_id, like_escaped, to_page};
use crate::error::corrupt;
use async_trait::async_trait;
use capcore::backend::AuditRepo;
use capcore::model::{AuditEvent, AuditFilter, AuditResult, Page, PageRequest};
use capcore::time::Timestamp;
use capcore::{Error, Result};
use sqlx::mysql::MySqlRow;
use sqlx::{MySql, MySqlPool, QueryBuilder};

#[derive(Debug, Clone)]
pub(crate) struct MysqlAudit(pub(crate) MySqlPool);

const COLUMNS: &str = "id, at, actor_id, action, target, server_id, ip, result, detail";

fn from_row(row: &MySqlRow) -> Result<AuditEvent> {
    let result: String = get(row, "result")?;
    Ok(AuditEvent {
        id: get_id(row, "id")?,
        at: Timestamp(get(row, "at")?),
        actor_id: get_opt_id(row, "actor_id")?,
        action: get(row, "action")?,
        target: get(row, "target")?,
        server_id: get_opt_id(row, "server_id")?,
        ip: get(row, "ip")?,
        result: AuditResult::parse(&result).ok_or_else(|| corrupt("audit result", &result))?,
        detail: get_json(row, "detail", "audit detail")?,
    })
}

fn push_filter(q: &mut QueryBuilder<MySql>, f: &AuditFilter) {
    q.push(" WHERE TRUE");
    if let Some(actor) = f.actor_id {
        q.push(" AND actor_id = ").push_bind(actor.to_string());
    }
    if let Some(prefix) = &f.action_prefix {
        q.push(" AND action LIKE ").push_bind(format!("{}%", like_escaped(prefix))).push(" ESCAPE '!'");
    }
    if let Some(target) = &f.target {
        q.push(" AND target = ").push_bind(target.clone());
    }
    if let Some(ids) = &f.server_ids {
        // An empty list matches nothing (`IN ()` is not SQL).
        if ids.is_empty() {
            q.push(" AND FALSE");
        } else {
            let mut list = q.push(" AND server_id IN (").separated(", ");
            for id in ids {
                list.push_bind(id.to_string());
            }
            list.push_unseparated(")");
        }
    }
    if let Some(result) = f.result {
        q.push(" AND result = ").push_bind(result.as_str());
    }
    if let Some(since) = f.since {
        q.push(" AND at >= ").push_bind(since.0);
    }
    if let Some(until) = f.until {
        q.push(" AND at <= ").push_bind(until.0);
    }
}

#[async_trait]
impl AuditRepo for MysqlAudit {
    async fn append(&self, e: AuditEvent) -> Result<()> {
        let detail =
            serde_json::to_string(&e.detail).map_err(|err| Error::internal("cannot encode audit detail", err))?;
        sqlx::query(
            "INSERT INTO audit_events (id, at, actor_id, action, target, server_id, ip, result, detail) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(e.id.to_string())
        .bind(e.at.0)
        .bind(e.actor_id.map(|a| a.to_string()))
        .bind(&e.action)
        .bind(&e.target)
        .bind(e.server_id.map(|s| s.to_string()))
        .bind(&e.ip)
        .bind(e.result.as_str())
        .bind(detail)
        .execute(&self.0)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn list(&self, filter: &AuditFilter, page: PageRequest) -> Result<Page<AuditEvent>> {
        let mut count = QueryBuilder::<MySql>::new("SELECT COUNT(*) FROM audit_events");
        push_filter(&mut count, filter);
        let total: i64 = count.build_query_scalar().fetch_one(&self.0).await.map_err(db)?;
        let mut q = QueryBuilder::<MySql>::new(format!("SELECT {COLUMNS} FROM audit_events"));
        push_filter(&mut q, filter);
        q.push(" ORDER BY at DESC, seq DESC LIMIT ")
            .push_bind(i64::from(page.per_page))
            .push(" OFFSET ")
            .push_bind(page.offset() as i64);
        let rows = q.build().fetch_all(&self.0).await.map_err(db)?;
        to_page(&rows, total, page, from_row)
    }
}
