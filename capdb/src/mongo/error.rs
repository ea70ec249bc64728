//! Maps MongoDB driver errors to capcore's error kinds, once for the backend.

use capcore::Error;
use mongodb::error::{ErrorKind, WriteFailure};

/// Duplicate key: a unique index refused the write (11001 and 12582 are older servers' codes).
const DUPLICATE_KEY: [i32; 3] = [11000, 11001, 12582];

/// Server answers that mean "not reachable now": host unreachable or not found, network
/// timeout, shutting down, stepped down, not writable primary, interrupted, not primary.
const UNAVAILABLE: [i32; 10] = [6, 7, 89, 91, 189, 10107, 11600, 11602, 13435, 13436];

/// `conflict` says what a duplicate key means to the caller.
pub(crate) fn map(e: mongodb::error::Error, conflict: &str) -> Error {
    if write_codes(&e).iter().any(|c| DUPLICATE_KEY.contains(c)) {
        return Error::Conflict { message: conflict.to_string(), source: Some(Box::new(e)) };
    }
    let unreachable = match e.kind.as_ref() {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::Shutdown => true,
        ErrorKind::Command(c) => UNAVAILABLE.contains(&c.code),
        _ => e.contains_label("NetworkError") || e.contains_label("RetryableWriteError"),
    };
    if unreachable {
        return Error::unavailable("the database is not reachable", e);
    }
    Error::internal("database error", e)
}

/// A stored value that does not parse: corruption, not the caller's fault.
pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::Internal { message: format!("stored {what} is invalid: {detail}"), source: None }
}

/// Shorthand for operations where a duplicate key cannot happen.
pub(crate) fn db(e: mongodb::error::Error) -> Error {
    map(e, "conflicting record")
}

/// The codes of the write errors (or of the failed command) in `e`.
pub(crate) fn write_codes(e: &mongodb::error::Error) -> Vec<i32> {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => vec![w.code],
        ErrorKind::Command(c) => vec![c.code],
        ErrorKind::InsertMany(m) => m.write_errors.iter().flatten().map(|w| w.code).collect(),
        _ => Vec::new(),
    }
}

/// Whether `e` is a duplicate key.
pub(crate) fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    write_codes(e).iter().any(|c| DUPLICATE_KEY.contains(c))
}

/// The index (in the batch) of the first duplicate key of an ordered `insert_many`.
pub(crate) fn first_duplicate_index(e: &mongodb::error::Error) -> Option<usize> {
    match e.kind.as_ref() {
        ErrorKind::InsertMany(m) => {
            m.write_errors.iter().flatten().filter(|w| DUPLICATE_KEY.contains(&w.code)).map(|w| w.index).min()
        }
        _ => None,
    }
}
