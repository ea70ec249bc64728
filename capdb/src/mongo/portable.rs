//! Whole-table export and import for MongoDB: a row's id column is the document's `_id` (a join
//! row's `_id` is its key columns joined by `/`), JSON columns are kept as text, and the audit
//! log's insertion order is `seq`. An import is undone on a refusal, not a transaction.

use super::error::{db, first_duplicate_index, map};
use super::fields::{boolean, int, opt_int, opt_text, text};
use super::{NODES, Store, audit, collect, usage};
use capcore::backend::portable::{Kind, Row, Table};
use capcore::{Error, Result};
use mongodb::bson::{Bson, Document, doc};
use serde_json::Value;

/// The column kept as `_id`, if one is (not for the join tables, whose `_id` is made).
fn id_column(table: Table) -> Option<&'static str> {
    match table {
        Table::UserRoles | Table::Subusers => None,
        Table::RefreshTokens => Some("hash"),
        _ => Some("id"),
    }
}

fn field(table: Table, column: &'static str) -> &'static str {
    if id_column(table) == Some(column) { "_id" } else { column }
}

/// Export order: the key (bytewise, as strings compare) or, for the audit log, `seq`.
fn order(table: Table) -> Document {
    match (table.key(), id_column(table)) {
        (None, _) => doc! { "seq": 1 },
        (Some(_), Some(_)) => doc! { "_id": 1 },
        (Some(key), None) => key.iter().map(|c| (c.to_string(), Bson::Int32(1))).collect(),
    }
}

pub(crate) async fn count(store: &Store, table: Table) -> Result<u64> {
    store.coll(table.name()).count_documents(doc! {}).await.map_err(db)
}

pub(crate) async fn export(store: &Store, table: Table, offset: u64, limit: u32) -> Result<Vec<Row>> {
    let cursor = store
        .coll(table.name())
        .find(doc! {})
        .sort(order(table))
        .skip(offset)
        .limit(i64::from(limit))
        .await
        .map_err(db)?;
    collect(cursor).await?.iter().map(|doc| decode(table, doc)).collect()
}

fn decode(table: Table, doc: &Document) -> Result<Row> {
    let mut values = Vec::with_capacity(table.columns().len());
    for column in table.columns() {
        let name = field(table, column.name);
        let value = match column.kind {
            Kind::Text => Value::from(text(doc, name)?),
            Kind::OptText => opt_text(doc, name)?.map_or(Value::Null, Value::from),
            Kind::Int => Value::from(int(doc, name)?),
            Kind::OptInt => opt_int(doc, name)?.map_or(Value::Null, Value::from),
            Kind::Bool => Value::from(boolean(doc, name)?),
            Kind::Json => serde_json::from_str(&text(doc, name)?).map_err(|e| super::error::corrupt(column.name, e))?,
        };
        values.push(value);
    }
    Ok(values)
}

fn encode(table: Table, row: &Row) -> Document {
    let mut doc = Document::new();
    if id_column(table).is_none() {
        let key = table.key().unwrap_or_default();
        let parts: Vec<&str> = key
            .iter()
            .filter_map(|k| table.columns().iter().position(|c| c.name == *k))
            .filter_map(|i| row[i].as_str())
            .collect();
        doc.insert("_id", parts.join("/"));
    }
    for (column, value) in table.columns().iter().zip(row) {
        let value = match column.kind {
            Kind::Text | Kind::OptText => value.as_str().map_or(Bson::Null, Bson::from),
            Kind::Int | Kind::OptInt => value.as_i64().map_or(Bson::Null, Bson::Int64),
            Kind::Bool => Bson::Boolean(value.as_bool().unwrap_or_default()),
            Kind::Json => Bson::String(value.to_string()),
        };
        doc.insert(field(table, column.name), value);
    }
    doc
}

/// Inserts the rows in order. Without a transaction "all or nothing" is kept by refusing rows
/// whose `_id` is there before writing, and by deleting what went in when the batch stops on a
/// duplicate of another unique field.
pub(crate) async fn import(store: &Store, table: Table, rows: &[Row]) -> Result<()> {
    for row in rows {
        table.check_row(row)?;
    }
    if rows.is_empty() {
        return Ok(());
    }
    let mut docs: Vec<Document> = rows.iter().map(|row| encode(table, row)).collect();
    if table == Table::AuditEvents {
        let first = audit::take_seqs(store, docs.len() as i64).await?;
        for (i, doc) in docs.iter_mut().enumerate() {
            doc.insert("seq", first + i as i64);
        }
    }
    let conflict = format!("a {} row is already there", table.name());
    let ids: Vec<Bson> = docs.iter().filter_map(|d| d.get("_id").cloned()).collect();
    let coll = store.coll(table.name());
    if coll.count_documents(doc! { "_id": { "$in": ids.clone() } }).await.map_err(db)? > 0 {
        return Err(Error::conflict(conflict));
    }
    if let Err(e) = coll.insert_many(docs).await {
        // Ordered: what precedes the failing row went in (all of it when that is unknown, but
        // then only rows that were not there before, as checked above).
        let inserted = first_duplicate_index(&e).unwrap_or(ids.len()).min(ids.len());
        coll.delete_many(doc! { "_id": { "$in": ids[..inserted].to_vec() } }).await.map_err(db)?;
        return Err(map(e, &conflict));
    }
    if table == Table::Servers {
        // Their nodes count them afresh on first use (see `usage`).
        let column = table.columns().iter().position(|c| c.name == "node_id").expect("servers have a node");
        let nodes: Vec<Bson> = rows.iter().filter_map(|row| row[column].as_str()).map(Bson::from).collect();
        let stale = doc! { "$unset": { usage::USED_MEMORY: "", usage::USED_DISK: "" } };
        store.coll(NODES).update_many(doc! { "_id": { "$in": nodes } }, stale).await.map_err(db)?;
    }
    Ok(())
}

/// Empties every collection, children first; indexes, migrations and counters stay.
pub(crate) async fn clear(store: &Store) -> Result<()> {
    for table in Table::ALL.into_iter().rev() {
        store.coll(table.name()).delete_many(doc! {}).await.map_err(db)?;
    }
    Ok(())
}
