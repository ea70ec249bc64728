//! Maps PostgreSQL errors to capcore's error kinds, once for the backend; what PostgreSQL has
//! in common with the other sqlx backends goes through `crate::error::map`.

use capcore::Error;

/// `what` names the thing for `NotFound`; `conflict` says what a unique violation means.
pub(crate) fn map(e: sqlx::Error, what: &'static str, conflict: &str) -> Error {
    let sqlx::Error::Database(db) = e else { return crate::error::map(e, what, conflict) };
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    match code.as_str() {
        // serialization_failure, deadlock_detected: a concurrent transaction got in the way;
        // nothing was written, and the caller may try again.
        "40001" | "40P01" => Error::Conflict {
            message: format!("a concurrent change to the {what} got in the way; try again"),
            source: Some(Box::new(sqlx::Error::Database(db))),
        },
        // character_not_in_repertoire: PostgreSQL text cannot hold a NUL character.
        "22021" | "22P05" => Error::invalid("text", "must not contain NUL characters"),
        // Connection exceptions (08), too many connections, the server shutting down or
        // starting up, a cancelled statement.
        c if c.starts_with("08") || matches!(c, "53300" | "57P01" | "57P02" | "57P03" | "57014") => {
            Error::unavailable("the database is not reachable", sqlx::Error::Database(db))
        }
        _ => crate::error::map(sqlx::Error::Database(db), what, conflict),
    }
}

/// Shorthand for errors where a unique violation cannot happen.
pub(crate) fn db(e: sqlx::Error) -> Error {
    map(e, "record", "conflicting record")
}
