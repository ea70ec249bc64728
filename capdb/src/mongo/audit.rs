//! The audit log in MongoDB: append-only, newest first; `seq` (from the `audit_seq` counter in
//! `cap_counters`) orders events with the same `at` by when they were appended.

use super::error::db;
use super::fields::{id, json, opt, opt_id, text, timestamp, to_json};
use super::{AUDIT_EVENTS, Store, page_of, starts_with};
use async_trait::async_trait;
use capcore::backend::AuditRepo;
use capcore::model::{AuditEvent, AuditFilter, AuditResult, Page, PageRequest};
use capcore::{Error, Result};
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ReturnDocument;

#[derive(Debug, Clone)]
pub(crate) struct MongoAudit(pub(crate) Store);

pub(crate) const COUNTERS: &str = "cap_counters";
pub(crate) const AUDIT_SEQ: &str = "audit_seq";

fn from_doc(doc: &Document) -> Result<AuditEvent> {
    let result = text(doc, "result")?;
    Ok(AuditEvent {
        id: id(doc, "_id")?,
        at: timestamp(doc, "at")?,
        actor_id: opt_id(doc, "actor_id")?,
        action: text(doc, "action")?,
        target: text(doc, "target")?,
        server_id: opt_id(doc, "server_id")?,
        ip: text(doc, "ip")?,
        result: AuditResult::parse(&result).ok_or_else(|| super::error::corrupt("audit result", &result))?,
        detail: json(doc, "detail", "audit detail")?,
    })
}

/// Takes `n` numbers from the audit counter; returns the first.
pub(crate) async fn take_seqs(store: &Store, n: i64) -> Result<i64> {
    let counter = store
        .coll(COUNTERS)
        .find_one_and_update(doc! { "_id": AUDIT_SEQ }, doc! { "$inc": { "value": n } })
        .upsert(true)
        .return_document(ReturnDocument::After)
        .await
        .map_err(db)?
        .ok_or_else(|| Error::Internal { message: "the audit counter is missing".to_string(), source: None })?;
    Ok(super::fields::int(&counter, "value")? - n + 1)
}

fn push_filter(f: &AuditFilter) -> Document {
    let mut conditions = Vec::<Document>::new();
    if let Some(actor) = f.actor_id {
        conditions.push(doc! { "actor_id": actor.to_string() });
    }
    if let Some(prefix) = &f.action_prefix {
        conditions.push(doc! { "action": starts_with(prefix) });
    }
    if let Some(target) = &f.target {
        conditions.push(doc! { "target": target });
    }
    if let Some(ids) = &f.server_ids {
        let ids: Vec<Bson> = ids.iter().map(|id| Bson::String(id.to_string())).collect();
        conditions.push(doc! { "server_id": { "$in": ids } });
    }
    if let Some(result) = f.result {
        conditions.push(doc! { "result": result.as_str() });
    }
    if let Some(since) = f.since {
        conditions.push(doc! { "at": { "$gte": since.0 } });
    }
    if let Some(until) = f.until {
        conditions.push(doc! { "at": { "$lte": until.0 } });
    }
    if conditions.is_empty() {
        doc! {}
    } else {
        doc! { "$and": conditions }
    }
}

/// The stored form of an event, `seq` its place in the log.
pub(crate) fn to_doc(e: &AuditEvent, seq: i64) -> Result<Document> {
    Ok(doc! {
        "_id": e.id.to_string(),
        "seq": seq,
        "at": e.at.0,
        "actor_id": opt(e.actor_id.map(|a| a.to_string())),
        "action": &e.action,
        "target": &e.target,
        "server_id": opt(e.server_id.map(|s| s.to_string())),
        "ip": &e.ip,
        "result": e.result.as_str(),
        "detail": to_json(&e.detail, "audit detail")?,
    })
}

#[async_trait]
impl AuditRepo for MongoAudit {
    async fn append(&self, e: AuditEvent) -> Result<()> {
        let seq = take_seqs(&self.0, 1).await?;
        self.0
            .coll(AUDIT_EVENTS)
            .insert_one(to_doc(&e, seq)?)
            .await
            .map_err(|err| super::error::map(err, "audit event exists"))?;
        Ok(())
    }

    async fn list(&self, filter: &AuditFilter, page: PageRequest) -> Result<Page<AuditEvent>> {
        page_of(&self.0.coll(AUDIT_EVENTS), push_filter(filter), doc! { "at": -1, "seq": -1 }, page, from_doc).await
    }
}
