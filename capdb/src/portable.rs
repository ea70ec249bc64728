//! The SQL that every sqlx backend runs for whole-table export and import; each backend adds
//! how its columns decode and bind (booleans and JSON differ between stores).

use capcore::Result;
use capcore::backend::portable::{Column, Kind, Row, Table};
use serde_json::Value;
use sqlx::{Decode, Type};

/// `SELECT <columns> FROM <table> ORDER BY <key or insertion order> LIMIT <p1> OFFSET <p2>`.
/// `select` renders a column for reading (a cast where the store's type needs one), `bytewise`
/// makes a key column compare bytewise, `appended` is the audit log's insertion order.
pub(crate) fn select_page(
    table: Table,
    select: impl Fn(&Column) -> String,
    bytewise: impl Fn(&str) -> String,
    appended: &str,
    (limit, offset): (&str, &str),
) -> String {
    let columns: Vec<String> = table.columns().iter().map(select).collect();
    let order = match table.key() {
        Some(key) => key.iter().map(|c| bytewise(c)).collect::<Vec<_>>().join(", "),
        None => appended.to_string(),
    };
    format!("SELECT {} FROM {} ORDER BY {order} LIMIT {limit} OFFSET {offset}", columns.join(", "), table.name())
}

/// `INSERT INTO <table> (<columns>) VALUES (<placeholders>)`; `placeholder(i, column)` renders
/// the i-th (0-based) parameter.
pub(crate) fn insert_row(table: Table, placeholder: impl Fn(usize, &Column) -> String) -> String {
    let values: Vec<String> = table.columns().iter().enumerate().map(|(i, c)| placeholder(i, c)).collect();
    format!("INSERT INTO {} ({}) VALUES ({})", table.name(), table.column_list(), values.join(", "))
}

/// The statements that empty every table, children first.
pub(crate) fn clear_all() -> impl Iterator<Item = String> {
    Table::ALL.into_iter().rev().map(|t| format!("DELETE FROM {}", t.name()))
}

/// One exported row as the table's JSON values, from a row selected with [`select_page`]
/// (JSON columns read as text, integers as 64-bit, booleans as the store's boolean).
pub(crate) fn decode<R>(table: Table, row: &R) -> Result<Row>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    use crate::error::{corrupt, db};
    let mut values = Vec::with_capacity(table.columns().len());
    for (i, column) in table.columns().iter().enumerate() {
        let value = match column.kind {
            Kind::Text => Value::from(row.try_get::<String, _>(i).map_err(db)?),
            Kind::OptText => row.try_get::<Option<String>, _>(i).map_err(db)?.map_or(Value::Null, Value::from),
            Kind::Int => Value::from(row.try_get::<i64, _>(i).map_err(db)?),
            Kind::OptInt => row.try_get::<Option<i64>, _>(i).map_err(db)?.map_or(Value::Null, Value::from),
            Kind::Bool => Value::from(row.try_get::<bool, _>(i).map_err(db)?),
            Kind::Json => {
                let text: String = row.try_get(i).map_err(db)?;
                serde_json::from_str(&text).map_err(|e| corrupt(column.name, e))?
            }
        };
        values.push(value);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_every_column_in_order() {
        let sql = select_page(Table::RefreshTokens, |c| c.name.to_string(), |c| format!("{c} X"), "seq", ("?", "?"));
        assert_eq!(sql, "SELECT hash, session_id FROM refresh_tokens ORDER BY hash X LIMIT ? OFFSET ?");
        let audit = select_page(Table::AuditEvents, |c| c.name.to_string(), |c| c.to_string(), "seq", ("$1", "$2"));
        assert!(audit.ends_with("FROM audit_events ORDER BY seq LIMIT $1 OFFSET $2"), "{audit}");
        let insert = insert_row(Table::UserRoles, |i, _| format!("${}", i + 1));
        assert_eq!(insert, "INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2)");
        assert_eq!(clear_all().next().unwrap(), "DELETE FROM audit_events");
    }
}
