//! Request extractors: JSON bodies with precise errors, the authenticated actor, paging.

use super::PanelState;
use super::error::{ApiError, ApiResult};
use crate::backend::{AuthVia, Credential, Principal};
use crate::model::{Page, PageRequest};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

pub const ACCESS_COOKIE: &str = "cap_access";
pub const REFRESH_COOKIE: &str = "cap_refresh";
pub const CSRF_COOKIE: &str = "cap_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A JSON body: malformed JSON is 400, a wrong shape 422 naming the field, a wrong content
/// type 415, a body over the limit 413.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        require_json(req.headers())?;
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// 415 unless the request says its body is JSON.
pub fn require_json(headers: &HeaderMap) -> ApiResult<()> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON with `Content-Type: application/json`",
        ));
    }
    Ok(())
}

/// Reads the whole body within the router's limit.
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> ApiResult<Bytes> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
        } else {
            ApiError::bad_request("bad_body", rejection.body_text())
        }
    })
}

/// Parses JSON, naming the path of the offending field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    // serde would read `["a", "b"]` as a struct's fields in order; every body here is an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b != b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "the body must be a JSON object"),
            Err(e) => ApiError::bad_request("invalid_json", format!("malformed JSON: {e}")),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                if path == "." { inner.to_string() } else { format!("{path}: {inner}") },
            ),
            _ => ApiError::bad_request("invalid_json", format!("malformed JSON: {inner}")),
        }
    })?;
    de.end().map_err(|e| ApiError::bad_request("invalid_json", format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// Path parameters. A segment that cannot be decoded (not UTF-8) is not found, like any id
/// that does not parse, and never axum's plain-text rejection.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        use axum::extract::rejection::PathRejection;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(path) => Ok(ApiPath(path.0)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => Err(ApiError::not_found("resource")),
            Err(other) => Err(crate::Error::internal("path parameters missing", other.body_text()).into()),
        }
    }
}

/// Query parameters, with 400 naming what is wrong.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> ApiResult<Self> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

/// `?page=&per_page=` (1-based; at most 100 a page).
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
pub struct PageQuery {
    pub page: Option<u32>,
    pub per_page: Option<u32>,
}

impl PageQuery {
    pub fn request(&self) -> ApiResult<PageRequest> {
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(50);
        if page == 0 {
            return Err(crate::Error::invalid("page", "must be 1 or more").into());
        }
        if per_page == 0 || per_page > PageRequest::MAX_PER_PAGE {
            return Err(crate::Error::invalid(
                "per_page",
                format!("must be between 1 and {}", PageRequest::MAX_PER_PAGE),
            )
            .into());
        }
        Ok(PageRequest::new(page, per_page))
    }
}

/// The JSON shape of every list.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PageBody<T> {
    pub data: Vec<T>,
    pub page: u32,
    pub per_page: u32,
    pub total: u64,
}

impl<T> From<Page<T>> for PageBody<T> {
    fn from(p: Page<T>) -> Self {
        Self { data: p.items, page: p.page, per_page: p.per_page, total: p.total }
    }
}

/// Who is calling, from where.
#[derive(Debug, Clone)]
pub struct Actor {
    pub principal: Principal,
    pub ip: String,
}

/// The caller's address: the socket peer, or, behind a trusted proxy, the last
/// `X-Forwarded-For` entry: the one that proxy appended. Earlier entries come from the client
/// and prove nothing.
pub fn client_ip(parts: &Parts, trust_proxy: bool) -> String {
    if trust_proxy
        && let Some(first) = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim)
            .filter(|v| v.parse::<std::net::IpAddr>().is_ok())
    {
        return first.to_string();
    }
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_else(|| "unknown".into())
}

/// The value of one cookie.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

impl FromRequestParts<Arc<PanelState>> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<PanelState>) -> ApiResult<Self> {
        let ip = client_ip(parts, state.config.trust_proxy);
        let now = state.clock.now();
        if let Some(token) = bearer(&parts.headers) {
            let credential = if token.starts_with(state.config.api_key_prefix.as_str()) {
                Credential::ApiKey(token)
            } else {
                Credential::AccessToken(token)
            };
            let principal = state.auth.authenticate(credential, now).await?;
            return Ok(Actor { principal, ip });
        }
        let Some(token) = cookie(&parts.headers, ACCESS_COOKIE) else {
            return Err(crate::Error::unauthorized("authentication required").into());
        };
        let principal = state.auth.authenticate(Credential::AccessToken(token), now).await?;
        // A browser request that changes something must echo the session's CSRF token.
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            let expected = match &principal.via {
                AuthVia::Session { csrf, .. } => csrf.as_str(),
                AuthVia::ApiKey { .. } => "",
            };
            check_csrf(&parts.headers, expected)?;
        }
        Ok(Actor { principal, ip })
    }
}

/// Refuses a cookie-authenticated change whose `X-CSRF-Token` header is not `expected` (the
/// session's token; empty never matches).
pub(crate) fn check_csrf(headers: &HeaderMap, expected: &str) -> ApiResult<()> {
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if expected.is_empty() || !constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_failed",
            "missing or wrong X-CSRF-Token header for a cookie-authenticated request",
        ));
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses an id from a path segment; anything unparsable is simply not found.
pub fn parse_id<T: std::str::FromStr>(raw: &str, what: &str) -> ApiResult<T> {
    raw.parse().map_err(|_| ApiError::not_found(what))
}
