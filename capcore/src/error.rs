//! The backend-neutral error type: each variant says what the caller can do about it.

use std::error::Error as StdError;

/// A boxed cause carried along as `source`.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Errors returned by every capcore trait and service.
///
/// The variant tells the caller what to do; the backend's own error rides along as `source`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thing asked for does not exist (or the caller may not know that it exists).
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// The request clashes with existing state (a unique key, a state machine, a held port).
    #[error("{message}")]
    Conflict {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// A value the caller supplied is not acceptable.
    #[error(transparent)]
    Invalid(#[from] crate::validate::ValidationError),
    /// The caller is known but lacks a permission.
    #[error("{message}")]
    Forbidden { message: String },
    /// The caller could not be identified (no, bad, expired or revoked credential).
    #[error("{message}")]
    Unauthorized { message: String },
    /// The password was right but the account needs a two-factor code.
    #[error("a two-factor code is required")]
    TwoFactorRequired,
    /// Too many attempts; try again later.
    #[error("{message}")]
    RateLimited { message: String, retry_after_secs: u64 },
    /// A dependency (database, cache, agent) is not reachable now; retrying may help.
    #[error("{message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// Something that should not happen; a bug or corrupted state.
    #[error("{message}")]
    Internal {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    pub fn not_found(what: &'static str) -> Self {
        Self::NotFound { what }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict { message: message.into(), source: None }
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden { message: message.into() }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized { message: message.into() }
    }
    pub fn unavailable(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Unavailable { message: message.into(), source: Some(source.into()) }
    }
    pub fn internal(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Internal { message: message.into(), source: Some(source.into()) }
    }
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid(crate::validate::ValidationError::new(field, problem))
    }
}

/// Result alias used throughout capcore.
pub type Result<T, E = Error> = std::result::Result<T, E>;
