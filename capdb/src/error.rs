//! Maps sqlx errors to capcore's error kinds, once for every sqlx backend.

use capcore::Error;

/// `what` names the thing for `NotFound`; `conflict` says what a unique violation means.
pub(crate) fn map(e: sqlx::Error, what: &'static str, conflict: &str) -> Error {
    match e {
        sqlx::Error::RowNotFound => Error::not_found(what),
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            Error::Conflict { message: conflict.to_string(), source: Some(Box::new(sqlx::Error::Database(db))) }
        }
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => Error::Conflict {
            message: format!("{what} does not exist or is still referenced"),
            source: Some(Box::new(sqlx::Error::Database(db))),
        },
        e @ (sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed) => {
            Error::unavailable("the database is not reachable", e)
        }
        sqlx::Error::Database(db) if db.message().contains("database is locked") => {
            Error::unavailable("the database is busy", sqlx::Error::Database(db))
        }
        e => Error::internal("database error", e),
    }
}

/// Shorthand for errors where a unique violation cannot happen.
pub(crate) fn db(e: sqlx::Error) -> Error {
    map(e, "record", "conflicting record")
}

/// A stored value that does not parse: corruption, not the caller's fault.
pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::Internal { message: format!("stored {what} is invalid: {detail}"), source: None }
}
