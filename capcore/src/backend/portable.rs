//! The panel's data as plain tables, for moving it between backends (`cap-panel db copy`).
//!
//! Every backend stores the same twelve tables (a document store keeps them as collections);
//! [`Table::columns`] names each one's columns and what they hold. A [`Row`] is one record as
//! JSON values in that column order, so a row exported from one backend imports into any other
//! unchanged, and [`RowDigest`] gives both sides the same checksum.
//!
//! ```
//! use capcore::backend::portable::{RowDigest, Table};
//! use serde_json::json;
//!
//! assert_eq!(Table::ALL.first(), Some(&Table::Users));
//! let row = vec![json!("0f6c"), json!("ada"), json!("ada@example.org"), json!("h"), json!(null), json!(false), json!(1), json!(2)];
//! Table::Users.check_row(&row).unwrap();
//! let mut digest = RowDigest::default();
//! digest.add(&row);
//! assert_eq!(digest.rows(), 1);
//! assert_eq!(digest.hex().len(), 64);
//! ```

use crate::error::{Error, Result};
use serde_json::Value;
use sha2::Digest;

/// One record, its values in [`Table::columns`] order.
pub type Row = Vec<Value>;

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string (ids, names, hashes).
    Text,
    /// A string or null.
    OptText,
    /// A signed 64-bit integer (timestamps in ms, sizes, permission bits).
    Int,
    /// An integer or null.
    OptInt,
    /// `true` or `false`.
    Bool,
    /// A JSON document (a template spec, a server's environment, an audit event's detail).
    Json,
}

/// A column: its name and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

use Kind::*;

/// The panel's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Users,
    Roles,
    UserRoles,
    Nodes,
    Templates,
    Servers,
    Allocations,
    Subusers,
    ApiKeys,
    Sessions,
    RefreshTokens,
    AuditEvents,
}

impl Table {
    /// Every table, each after the tables it refers to: import in this order, clear in reverse.
    pub const ALL: [Table; 12] = [
        Table::Users,
        Table::Roles,
        Table::UserRoles,
        Table::Nodes,
        Table::Templates,
        Table::Servers,
        Table::Allocations,
        Table::Subusers,
        Table::ApiKeys,
        Table::Sessions,
        Table::RefreshTokens,
        Table::AuditEvents,
    ];

    /// The table's (or collection's) name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::Roles => "roles",
            Table::UserRoles => "user_roles",
            Table::Nodes => "nodes",
            Table::Templates => "templates",
            Table::Servers => "servers",
            Table::Allocations => "allocations",
            Table::Subusers => "subusers",
            Table::ApiKeys => "api_keys",
            Table::Sessions => "sessions",
            Table::RefreshTokens => "refresh_tokens",
            Table::AuditEvents => "audit_events",
        }
    }

    /// The columns, in row order.
    pub fn columns(self) -> &'static [Column] {
        match self {
            Table::Users => &[
                Column { name: "id", kind: Text },
                Column { name: "username", kind: Text },
                Column { name: "email", kind: Text },
                Column { name: "password_hash", kind: Text },
                Column { name: "totp_secret", kind: OptText },
                Column { name: "disabled", kind: Bool },
                Column { name: "created_at", kind: Int },
                Column { name: "updated_at", kind: Int },
            ],
            Table::Roles => &[
                Column { name: "id", kind: Text },
                Column { name: "name", kind: Text },
                Column { name: "description", kind: Text },
                Column { name: "permissions", kind: Int },
                Column { name: "builtin", kind: Bool },
                Column { name: "created_at", kind: Int },
            ],
            Table::UserRoles => &[Column { name: "user_id", kind: Text }, Column { name: "role_id", kind: Text }],
            Table::Nodes => &[
                Column { name: "id", kind: Text },
                Column { name: "name", kind: Text },
                Column { name: "description", kind: Text },
                Column { name: "fqdn", kind: Text },
                Column { name: "memory_mb", kind: Int },
                Column { name: "memory_overallocate", kind: Int },
                Column { name: "disk_mb", kind: Int },
                Column { name: "disk_overallocate", kind: Int },
                Column { name: "token_hash", kind: Text },
                Column { name: "created_at", kind: Int },
                Column { name: "updated_at", kind: Int },
            ],
            Table::Templates => &[
                Column { name: "id", kind: Text },
                Column { name: "name", kind: Text },
                Column { name: "spec", kind: Json },
                Column { name: "created_at", kind: Int },
                Column { name: "updated_at", kind: Int },
            ],
            Table::Servers => &[
                Column { name: "id", kind: Text },
                Column { name: "name", kind: Text },
                Column { name: "description", kind: Text },
                Column { name: "owner_id", kind: Text },
                Column { name: "node_id", kind: Text },
                Column { name: "template_id", kind: Text },
                Column { name: "memory_mb", kind: Int },
                Column { name: "swap_mb", kind: Int },
                Column { name: "cpu_percent", kind: Int },
                Column { name: "disk_mb", kind: Int },
                Column { name: "io_weight", kind: Int },
                Column { name: "pids", kind: Int },
                Column { name: "environment", kind: Json },
                Column { name: "state", kind: Text },
                Column { name: "created_at", kind: Int },
                Column { name: "updated_at", kind: Int },
                Column { name: "agent_seq", kind: Int },
            ],
            Table::Allocations => &[
                Column { name: "id", kind: Text },
                Column { name: "node_id", kind: Text },
                Column { name: "ip", kind: Text },
                Column { name: "port", kind: Int },
                Column { name: "server_id", kind: OptText },
                Column { name: "is_primary", kind: Bool },
            ],
            Table::Subusers => &[
                Column { name: "server_id", kind: Text },
                Column { name: "user_id", kind: Text },
                Column { name: "permissions", kind: Int },
                Column { name: "created_at", kind: Int },
            ],
            Table::ApiKeys => &[
                Column { name: "id", kind: Text },
                Column { name: "user_id", kind: Text },
                Column { name: "name", kind: Text },
                Column { name: "prefix", kind: Text },
                Column { name: "secret_hash", kind: Text },
                Column { name: "permissions", kind: Int },
                Column { name: "created_at", kind: Int },
                Column { name: "last_used_at", kind: OptInt },
                Column { name: "expires_at", kind: OptInt },
            ],
            Table::Sessions => &[
                Column { name: "id", kind: Text },
                Column { name: "user_id", kind: Text },
                Column { name: "refresh_hash", kind: Text },
                Column { name: "generation", kind: Int },
                Column { name: "revoked", kind: Bool },
                Column { name: "created_at", kind: Int },
                Column { name: "expires_at", kind: Int },
                Column { name: "ip", kind: Text },
            ],
            Table::RefreshTokens => &[Column { name: "hash", kind: Text }, Column { name: "session_id", kind: Text }],
            Table::AuditEvents => &[
                Column { name: "id", kind: Text },
                Column { name: "at", kind: Int },
                Column { name: "actor_id", kind: OptText },
                Column { name: "action", kind: Text },
                Column { name: "target", kind: Text },
                Column { name: "server_id", kind: OptText },
                Column { name: "ip", kind: Text },
                Column { name: "result", kind: Text },
                Column { name: "detail", kind: Json },
            ],
        }
    }

    /// The columns that identify a row, which is also the export order (bytewise), except for
    /// [`Table::AuditEvents`], which is exported in the order the events were appended (`None`):
    /// events with the same `at` keep their order across a copy.
    pub fn key(self) -> Option<&'static [&'static str]> {
        match self {
            Table::UserRoles => Some(&["user_id", "role_id"]),
            Table::Subusers => Some(&["server_id", "user_id"]),
            Table::RefreshTokens => Some(&["hash"]),
            Table::AuditEvents => None,
            _ => Some(&["id"]),
        }
    }

    /// The column names joined with `, `, for SQL.
    pub fn column_list(self) -> String {
        self.columns().iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
    }

    /// `Invalid` unless `row` has one value of the right kind per column.
    pub fn check_row(self, row: &[Value]) -> Result<()> {
        let columns = self.columns();
        if row.len() != columns.len() {
            return Err(Error::invalid(
                self.name(),
                format!("a row has {} values; the table has {} columns", row.len(), columns.len()),
            ));
        }
        for (column, value) in columns.iter().zip(row) {
            let fits = match column.kind {
                Text => value.is_string(),
                OptText => value.is_string() || value.is_null(),
                Int => value.is_i64(),
                OptInt => value.is_i64() || value.is_null(),
                Bool => value.is_boolean(),
                Json => true,
            };
            if !fits {
                return Err(Error::invalid(
                    format!("{}.{}", self.name(), column.name),
                    format!("expected {:?}, got {value}", column.kind),
                ));
            }
        }
        Ok(())
    }
}

/// A SHA-256 over rows in order, the same for equal rows whatever backend they came from:
/// objects are hashed with their keys sorted, so a store that reorders a JSON document's keys
/// still hashes alike.
#[derive(Debug, Clone, Default)]
pub struct RowDigest {
    hasher: sha2::Sha256,
    rows: u64,
}

impl RowDigest {
    pub fn add(&mut self, row: &[Value]) {
        let mut text = String::new();
        for value in row {
            canonical(value, &mut text);
            text.push('\u{1f}');
        }
        text.push('\n');
        self.hasher.update(text.as_bytes());
        self.rows += 1;
    }

    /// Rows added so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The digest, in lowercase hex.
    pub fn hex(&self) -> String {
        self.hasher.clone().finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Compact JSON with object keys sorted.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_reference_points_to_an_earlier_table() {
        let position = |name: &str| Table::ALL.iter().position(|t| t.name() == name).unwrap();
        let refers = [
            ("user_roles", "users"),
            ("user_roles", "roles"),
            ("servers", "nodes"),
            ("servers", "templates"),
            ("allocations", "servers"),
            ("subusers", "servers"),
            ("api_keys", "users"),
            ("refresh_tokens", "sessions"),
        ];
        for (from, to) in refers {
            assert!(position(to) < position(from), "{from} refers to {to}");
        }
    }

    #[test]
    fn digests_ignore_key_order_and_see_every_value() {
        let (mut a, mut b, mut c) = (RowDigest::default(), RowDigest::default(), RowDigest::default());
        a.add(&[json!("x"), json!({"a": 1, "b": [1, {"d": 2, "c": 3}]})]);
        b.add(&[json!("x"), json!({"b": [1, {"c": 3, "d": 2}], "a": 1})]);
        c.add(&[json!("x"), json!({"a": 1, "b": [1, {"c": 3, "d": 3}]})]);
        assert_eq!(a.hex(), b.hex());
        assert_ne!(a.hex(), c.hex());
        let (mut split, mut joined) = (RowDigest::default(), RowDigest::default());
        split.add(&[json!("a"), json!("b")]);
        joined.add(&[json!("a\u{1f}b")]);
        assert_ne!(split.hex(), joined.hex(), "a separator inside a value is escaped by JSON");
    }

    #[test]
    fn rows_of_the_wrong_shape_are_invalid_naming_the_column() {
        let short = Table::RefreshTokens.check_row(&[json!("h")]).unwrap_err().to_string();
        assert!(short.contains("1 values; the table has 2 columns"), "{short}");
        let wrong = Table::UserRoles.check_row(&[json!("u"), json!(3)]).unwrap_err().to_string();
        assert!(wrong.contains("user_roles.role_id"), "{wrong}");
        Table::Allocations
            .check_row(&[json!("a"), json!("n"), json!("127.0.0.1"), json!(25565), json!(null), json!(true)])
            .unwrap();
    }
}
