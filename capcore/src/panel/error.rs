//! The one place where errors become HTTP responses: `{"error": "<code>", "message": "..."}`.

use crate::Error;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after_secs: None }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, code) = match &e {
            Error::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            Error::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            Error::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            Error::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            Error::Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::TwoFactorRequired => (StatusCode::UNAUTHORIZED, "two_factor_required"),
            Error::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Error::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Error::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let retry_after_secs = match &e {
            Error::RateLimited { retry_after_secs, .. } => Some(*retry_after_secs),
            _ => None,
        };
        let message = match &e {
            // The cause stays in the log; the client gets no internals.
            Error::Internal { .. } => {
                tracing::error!(error = ?e, "internal error");
                "internal error".to_string()
            }
            Error::Unavailable { .. } => {
                tracing::warn!(error = ?e, "dependency unavailable");
                e.to_string()
            }
            _ => e.to_string(),
        };
        Self { status, code, message, retry_after_secs }
    }
}

impl From<crate::validate::ValidationError> for ApiError {
    fn from(e: crate::validate::ValidationError) -> Self {
        Error::Invalid(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.code, "message": self.message});
        let mut res = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}

/// Result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
