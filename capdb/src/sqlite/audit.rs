//! The audit log in SQLite: append-only, newest first.

use super::{get, get_id, get_opt_id, to_page};
use crate::error::{corrupt, db};
use async_trait::async_trait;
use capcore::backend::AuditRepo;
use capcore::model::{AuditEvent, AuditFilter, AuditResult, Page, PageRequest};
use capcore::time::Timestamp;
use capcore::{Error, Result};
use sqlx::AssertSqlSafe;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

#[derive(Debug, Clone)]
pub(crate) struct SqliteAudit(pub(crate) SqlitePool, pub(crate) SqlitePool);

const COLUMNS: &str = "id, at, actor_id, action, target, server_id, ip, result, detail";

fn from_row(row: &SqliteRow) -> Result<AuditEvent> {
    let result: String = get(row, "result")?;
    let detail: String = get(row, "detail")?;
    Ok(AuditEvent {
        id: get_id(row, "id")?,
        at: Timestamp(get(row, "at")?),
        actor_id: get_opt_id(row, "actor_id")?,
        action: get(row, "action")?,
        target: get(row, "target")?,
        server_id: get_opt_id(row, "server_id")?,
        ip: get(row, "ip")?,
        result: AuditResult::parse(&result).ok_or_else(|| corrupt("audit result", &result))?,
        detail: serde_json::from_str(&detail).map_err(|e| corrupt("audit detail", e))?,
    })
}

fn push_filter(q: &mut QueryBuilder<Sqlite>, f: &AuditFilter) {
    q.push(" WHERE 1 = 1");
    if let Some(actor) = f.actor_id {
        q.push(" AND actor_id = ").push_bind(actor.to_string());
    }
    if let Some(prefix) = &f.action_prefix {
        q.push(" AND substr(action, 1, ")
            .push_bind(prefix.chars().count() as i64)
            .push(") = ")
            .push_bind(prefix.clone());
    }
    if let Some(target) = &f.target {
        q.push(" AND target = ").push_bind(target.clone());
    }
    if let Some(ids) = &f.server_ids {
        if ids.is_empty() {
            q.push(" AND 1 = 0");
        } else {
            q.push(" AND server_id IN (");
            let mut list = q.separated(", ");
            for id in ids {
                list.push_bind(id.to_string());
            }
            q.push(")");
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
impl AuditRepo for SqliteAudit {
    async fn append(&self, e: AuditEvent) -> Result<()> {
        let detail =
            serde_json::to_string(&e.detail).map_err(|err| Error::internal("cannot encode audit detail", err))?;
        sqlx::query(AssertSqlSafe(format!("INSERT INTO audit_events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")))
            .bind(e.id.to_string())
            .bind(e.at.0)
            .bind(e.actor_id.map(|a| a.to_string()))
            .bind(&e.action)
            .bind(&e.target)
            .bind(e.server_id.map(|s| s.to_string()))
            .bind(&e.ip)
            .bind(e.result.as_str())
            .bind(detail)
            .execute(&self.1)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn list(&self, filter: &AuditFilter, page: PageRequest) -> Result<Page<AuditEvent>> {
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM audit_events");
        push_filter(&mut count, filter);
        let total: i64 = count.build_query_scalar().fetch_one(&self.0).await.map_err(db)?;
        let mut q = QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM audit_events"));
        push_filter(&mut q, filter);
        q.push(" ORDER BY at DESC, rowid DESC LIMIT ")
            .push_bind(i64::from(page.per_page))
            .push(" OFFSET ")
            .push_bind(page.offset() as i64);
        let rows = q.build().fetch_all(&self.0).await.map_err(db)?;
        to_page(&rows, total, page, from_row)
    }
}
