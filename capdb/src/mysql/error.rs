//! Maps MySQL/MariaDB errors to capcore's error kinds, once for the backend; what MySQL has in
//! common with the other sqlx backends (unique and foreign-key violations, pool timeouts) goes
//! through `crate::error::map`.

use capcore::Error;
use sqlx::mysql::MySqlDatabaseError;

/// `what` names the thing for `NotFound`; `conflict` says what a unique violation means.
pub(crate) fn map(e: sqlx::Error, what: &'static str, conflict: &str) -> Error {
    let sqlx::Error::Database(db) = e else { return crate::error::map(e, what, conflict) };
    let Some(number) = db.try_downcast_ref::<MySqlDatabaseError>().map(MySqlDatabaseError::number) else {
        return crate::error::map(sqlx::Error::Database(db), what, conflict);
    };
    match number {
        // ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT: a concurrent transaction got in the way; the
        // statement (a deadlock: the whole transaction) was rolled back, and the caller may try
        // again.
        1213 | 1205 => Error::Conflict {
            message: format!("a concurrent change to the {what} got in the way; try again"),
            source: Some(Box::new(sqlx::Error::Database(db))),
        },
        // ER_DATA_TOO_LONG: strict mode refuses a value longer than its column instead of
        // truncating it.
        1406 => Error::invalid(column_of(db.message()).unwrap_or("text"), "is too long"),
        // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD: text the column's character set cannot hold.
        1366 => Error::invalid(column_of(db.message()).unwrap_or("text"), "holds characters that cannot be stored"),
        // ER_WARN_DATA_OUT_OF_RANGE: a number too large for its column.
        1264 => Error::invalid(column_of(db.message()).unwrap_or("number"), "is out of range"),
        // The server shutting down or gone, the connection killed or lost, too many connections.
        1053 | 1040 | 1927 | 2006 | 2013 => {
            Error::unavailable("the database is not reachable", sqlx::Error::Database(db))
        }
        _ => crate::error::map(sqlx::Error::Database(db), what, conflict),
    }
}

/// Shorthand for errors where a unique violation cannot happen.
pub(crate) fn db(e: sqlx::Error) -> Error {
    map(e, "record", "conflicting record")
}

/// The column a MySQL message names last (`... for column 'name' at row 1`, or
/// `` `db`.`table`.`name` `` in MariaDB's form), for the field of an `Invalid`.
fn column_of(message: &str) -> Option<&str> {
    let rest = &message[message.find("column ")? + "column ".len()..];
    let quoted = rest.split(" at row").next()?;
    let last = quoted.rsplit('.').next()?;
    let name = last.trim_matches(|c| c == '\'' || c == '`');
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_column_is_read_from_either_form_of_the_message() {
        assert_eq!(super::column_of("Data too long for column 'username' at row 1"), Some("username"));
        assert_eq!(
            super::column_of(r"Incorrect string value: '\xF0\x9F' for column `cap`.`users`.`email` at row 1"),
            Some("email")
        );
        assert_eq!(super::column_of("Out of range value for column 'port' at row 3"), Some("port"));
        assert_eq!(super::column_of("something else"), None);
    }
}
