//! Reading stored documents field by field: integers of either width, booleans also as 0 or 1
//! (a wire-compatible server may hand back a boolean written by `$set` as a number), JSON kept
//! as text, ids as their string form.

use super::error::corrupt;
use capcore::Result;
use capcore::time::Timestamp;
use mongodb::bson::{Bson, Document};
use std::str::FromStr;

fn missing(field: &str) -> capcore::Error {
    corrupt(field, "missing")
}

pub(crate) fn text(doc: &Document, field: &str) -> Result<String> {
    match doc.get(field) {
        Some(Bson::String(s)) => Ok(s.clone()),
        Some(other) => Err(corrupt(field, format!("expected a string, got {other}"))),
        None => Err(missing(field)),
    }
}

/// A string, or `None` for null or a missing field.
pub(crate) fn opt_text(doc: &Document, field: &str) -> Result<Option<String>> {
    match doc.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(_) => text(doc, field).map(Some),
    }
}

pub(crate) fn int(doc: &Document, field: &str) -> Result<i64> {
    match doc.get(field) {
        Some(Bson::Int64(i)) => Ok(*i),
        Some(Bson::Int32(i)) => Ok(i64::from(*i)),
        Some(Bson::Double(d)) if d.fract() == 0.0 && d.abs() < 9.0e15 => Ok(*d as i64),
        Some(other) => Err(corrupt(field, format!("expected an integer, got {other}"))),
        None => Err(missing(field)),
    }
}

pub(crate) fn opt_int(doc: &Document, field: &str) -> Result<Option<i64>> {
    match doc.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(_) => int(doc, field).map(Some),
    }
}

pub(crate) fn boolean(doc: &Document, field: &str) -> Result<bool> {
    match doc.get(field) {
        Some(Bson::Boolean(b)) => Ok(*b),
        Some(Bson::Int32(i)) => Ok(*i != 0),
        Some(Bson::Int64(i)) => Ok(*i != 0),
        Some(other) => Err(corrupt(field, format!("expected a boolean, got {other}"))),
        None => Err(missing(field)),
    }
}

pub(crate) fn timestamp(doc: &Document, field: &str) -> Result<Timestamp> {
    int(doc, field).map(Timestamp)
}

pub(crate) fn opt_timestamp(doc: &Document, field: &str) -> Result<Option<Timestamp>> {
    opt_int(doc, field).map(|t| t.map(Timestamp))
}

/// An id newtype stored as its string form.
pub(crate) fn id<T: FromStr>(doc: &Document, field: &str) -> Result<T> {
    let s = text(doc, field)?;
    s.parse().map_err(|_| corrupt(field, &s))
}

pub(crate) fn opt_id<T: FromStr>(doc: &Document, field: &str) -> Result<Option<T>> {
    opt_text(doc, field)?.map(|s| s.parse().map_err(|_| corrupt(field, &s))).transpose()
}

/// A value kept as JSON text.
pub(crate) fn json<T: serde::de::DeserializeOwned>(doc: &Document, field: &str, what: &str) -> Result<T> {
    serde_json::from_str(&text(doc, field)?).map_err(|e| corrupt(what, e))
}

/// JSON text for a value.
pub(crate) fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String> {
    serde_json::to_string(value).map_err(|e| capcore::Error::internal(format!("cannot encode {what}"), e))
}

/// An optional string as BSON (null for `None`).
pub(crate) fn opt(value: Option<impl Into<Bson>>) -> Bson {
    value.map_or(Bson::Null, Into::into)
}
