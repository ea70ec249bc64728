//! Login, refresh, logout, the current user, two-factor and API keys.

use super::RouteDef;
use crate::backend::{AuthVia, IssuedSession, LoginRequest};
use crate::ids::{ApiKeyId, UserId};
use crate::model::ApiKey;
use crate::model::AuditResult;
use crate::panel::PanelState;
use crate::panel::error::{ApiError, ApiResult};
use crate::panel::extract::{
    ACCESS_COOKIE, Actor, ApiJson, ApiPath, CSRF_COOKIE, REFRESH_COOKIE, check_csrf, client_ip, cookie, parse_id,
    parse_json, read_body, require_json,
};
use crate::permission::{Permission, PermissionSet, Scope, effective};
use crate::time::Timestamp;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub(super) fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(
            Method::POST,
            "/api/auth/login",
            "Log in; sets cookies and returns an access token",
            "public",
            post(login),
        )
        .body::<LoginBody>()
        .response::<TokenBody>(),
        RouteDef::new(
            Method::POST,
            "/api/auth/refresh",
            "Rotate the refresh token (cookie or body)",
            "public",
            post(refresh),
        )
        .body::<RefreshBody>()
        .response::<TokenBody>(),
        RouteDef::new(Method::POST, "/api/auth/logout", "End this session", "authenticated", post(logout)),
        RouteDef::new(
            Method::POST,
            "/api/auth/logout-all",
            "End every session of the current user",
            "authenticated session",
            post(logout_all),
        ),
        RouteDef::new(
            Method::GET,
            "/api/me",
            "The current user and their global permissions",
            "authenticated",
            get(me),
        )
        .response::<MeView>(),
        RouteDef::new(
            Method::PUT,
            "/api/me/password",
            "Change the own password (ends every session, this one too)",
            "authenticated session",
            put(change_password),
        )
        .body::<PasswordBody>(),
        RouteDef::new(Method::GET, "/api/permissions", "The permission catalogue", "authenticated", get(permissions))
            .response::<Vec<PermissionView>>(),
        RouteDef::new(
            Method::POST,
            "/api/me/totp",
            "Start two-factor enrolment",
            "authenticated session",
            post(totp_begin),
        )
        .response::<TotpBeginView>(),
        RouteDef::new(
            Method::POST,
            "/api/me/totp/confirm",
            "Confirm enrolment with a code",
            "authenticated session",
            post(totp_confirm),
        )
        .body::<CodeBody>(),
        RouteDef::new(
            Method::DELETE,
            "/api/me/totp",
            "Turn two-factor off with a code",
            "authenticated session",
            delete(totp_disable),
        )
        .body::<CodeBody>(),
        RouteDef::new(Method::GET, "/api/me/api-keys", "List the own API keys", "authenticated", get(list_keys))
            .response::<Vec<ApiKeyView>>(),
        RouteDef::new(
            Method::POST,
            "/api/me/api-keys",
            "Create an API key; the secret is shown once",
            "authenticated session",
            post(create_key),
        )
        .body::<CreateKeyBody>()
        .response::<CreatedKeyView>(),
        RouteDef::new(
            Method::DELETE,
            "/api/me/api-keys/{id}",
            "Revoke an API key",
            "authenticated session",
            delete(revoke_key),
        ),
    ]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub totp: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    /// For non-browser clients; browsers send the cookie.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TokenBody {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
    pub csrf_token: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MeView {
    pub id: UserId,
    pub username: String,
    pub email: String,
    pub totp_enabled: bool,
    /// Global permissions in effect for this request (an API key narrows them).
    pub permissions: PermissionSet,
    /// `session` or `api_key`.
    pub via: &'static str,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PermissionView {
    pub name: &'static str,
    pub category: crate::permission::Category,
    pub description: &'static str,
    pub server_scoped: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeBody {
    pub code: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TotpBeginView {
    pub secret: String,
    pub otpauth_uri: String,
    /// `otpauth_uri` as a QR code for an authenticator app's camera: one string per row of
    /// modules, `1` dark and `0` light, without the quiet zone around it.
    pub qr: Vec<String>,
}

/// The rows of a QR code of `text` (`1` a dark module), or none if it is too long for one.
fn qr_rows(text: &str) -> Vec<String> {
    let Ok(code) = qrcode::QrCode::new(text.as_bytes()) else { return Vec::new() };
    let width = code.width();
    code.to_colors()
        .chunks(width)
        .map(|row| row.iter().map(|c| if *c == qrcode::Color::Dark { '1' } else { '0' }).collect())
        .collect()
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    pub name: String,
    pub permissions: PermissionSet,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ApiKeyView {
    pub id: ApiKeyId,
    pub name: String,
    pub prefix: String,
    pub permissions: PermissionSet,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            permissions: k.permissions,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            expires_at: k.expires_at,
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CreatedKeyView {
    pub key: ApiKeyView,
    /// The whole key; it is not shown again.
    pub secret: String,
}

fn set_cookie(
    headers: &mut HeaderMap,
    name: &str,
    value: &str,
    path: &str,
    max_age: u64,
    http_only: bool,
    secure: bool,
) {
    let mut c = format!("{name}={value}; Path={path}; Max-Age={max_age}; SameSite=Strict");
    if http_only {
        c.push_str("; HttpOnly");
    }
    if secure {
        c.push_str("; Secure");
    }
    if let Ok(v) = HeaderValue::from_str(&c) {
        headers.append(header::SET_COOKIE, v);
    }
}

/// Sets (or, with `None`, clears) the three session cookies.
fn session_cookies(s: &PanelState, session: Option<&IssuedSession>) -> HeaderMap {
    let mut h = HeaderMap::new();
    let secure = s.config.cookie_secure;
    match session {
        Some(x) => {
            set_cookie(&mut h, ACCESS_COOKIE, &x.access_token, "/", x.access_expires_in_secs, true, secure);
            set_cookie(&mut h, REFRESH_COOKIE, &x.refresh_token, "/api/auth", x.refresh_expires_in_secs, true, secure);
            // Readable by the page's script, which echoes it in X-CSRF-Token.
            set_cookie(&mut h, CSRF_COOKIE, &x.csrf_token, "/", x.refresh_expires_in_secs, false, secure);
        }
        None => {
            set_cookie(&mut h, ACCESS_COOKIE, "", "/", 0, true, secure);
            set_cookie(&mut h, REFRESH_COOKIE, "", "/api/auth", 0, true, secure);
            set_cookie(&mut h, CSRF_COOKIE, "", "/", 0, false, secure);
        }
    }
    h
}

fn token_response(s: &PanelState, x: IssuedSession) -> Response {
    let headers = session_cookies(s, Some(&x));
    let body = TokenBody {
        access_token: x.access_token,
        expires_in: x.access_expires_in_secs,
        refresh_token: x.refresh_token,
        refresh_expires_in: x.refresh_expires_in_secs,
        csrf_token: x.csrf_token,
    };
    (headers, Json(body)).into_response()
}

async fn login(
    State(s): State<Arc<PanelState>>,
    parts: Parts,
    ApiJson(body): ApiJson<LoginBody>,
) -> ApiResult<Response> {
    let ip = client_ip(&parts, s.config.trust_proxy);
    if body.email.len() > 254 {
        return Err(crate::Error::invalid("email", "must be at most 254 bytes").into());
    }
    if body.password.len() > 4096 {
        return Err(crate::Error::invalid("password", "must be at most 4096 bytes").into());
    }
    let req = LoginRequest { email: body.email.clone(), password: body.password, totp: body.totp, ip: ip.clone() };
    match s.auth.login(req, s.now()).await {
        Ok(x) => {
            let detail = serde_json::json!({"email": body.email.to_lowercase()});
            s.audit_session("auth.login", Some(x.user_id), &ip, AuditResult::Success, detail).await;
            Ok(token_response(&s, x))
        }
        Err(e) => {
            let detail = serde_json::json!({"email": body.email.to_lowercase(), "error": e.to_string()});
            let result =
                if matches!(e, crate::Error::RateLimited { .. }) { AuditResult::Denied } else { AuditResult::Failed };
            s.audit_session("auth.login", None, &ip, result, detail).await;
            Err(e.into())
        }
    }
}

impl PanelState {
    /// Audits a login or refresh, where the actor is known only on success.
    async fn audit_session(
        &self,
        action: &str,
        user: Option<UserId>,
        ip: &str,
        result: AuditResult,
        detail: serde_json::Value,
    ) {
        self.record(crate::model::AuditEvent {
            id: crate::ids::AuditEventId::new_random(),
            at: self.now(),
            actor_id: user,
            action: action.into(),
            target: user.map(PanelState::user_target).unwrap_or_default(),
            server_id: None,
            ip: ip.into(),
            result,
            detail,
        })
        .await;
    }
}

async fn refresh(State(s): State<Arc<PanelState>>, parts: Parts, req: Request) -> ApiResult<Response> {
    let ip = client_ip(&parts, s.config.trust_proxy);
    // Browsers send no body (the cookie carries the token); a body must be JSON like anywhere else.
    let body = read_body(req, &()).await?;
    let from_body: RefreshBody = if body.is_empty() {
        RefreshBody::default()
    } else {
        require_json(&parts.headers)?;
        parse_json(&body)?
    };
    let token = match from_body.refresh_token {
        Some(t) => t,
        None => {
            let token = cookie(&parts.headers, REFRESH_COOKIE)
                .map(str::to_string)
                .ok_or_else(|| crate::Error::unauthorized("no refresh token"))?;
            // From the browser's cookie: the page echoes the CSRF cookie it can read, which
            // another site's page cannot.
            check_csrf(&parts.headers, cookie(&parts.headers, CSRF_COOKIE).unwrap_or(""))?;
            token
        }
    };
    // Audited both ways: a reused token ending a session is what an admin must be able to see.
    match s.auth.refresh(&token, &ip, s.now()).await {
        Ok(x) => {
            s.audit_session("auth.refresh", Some(x.user_id), &ip, AuditResult::Success, serde_json::Value::Null).await;
            Ok(token_response(&s, x))
        }
        Err(e) => {
            let detail = serde_json::json!({"error": e.to_string()});
            s.audit_session("auth.refresh", None, &ip, AuditResult::Failed, detail).await;
            Err(e.into())
        }
    }
}

async fn logout(State(s): State<Arc<PanelState>>, actor: Actor) -> ApiResult<Response> {
    s.auth.logout(&actor.principal, s.now()).await?;
    s.audit_ok(&actor, "auth.logout", &PanelState::user_target(actor.principal.user_id), None).await;
    Ok((StatusCode::NO_CONTENT, session_cookies(&s, None)).into_response())
}

async fn logout_all(State(s): State<Arc<PanelState>>, actor: Actor) -> ApiResult<Response> {
    // A leaked API key must not be able to log its owner out everywhere.
    require_session(&s, &actor, "auth.logout_all").await?;
    let n = s.auth.logout_everywhere(actor.principal.user_id, s.now()).await?;
    s.audit(
        Some(&actor),
        "auth.logout_all",
        &PanelState::user_target(actor.principal.user_id),
        None,
        AuditResult::Success,
        serde_json::json!({"sessions": n}),
    )
    .await;
    Ok((StatusCode::NO_CONTENT, session_cookies(&s, None)).into_response())
}

async fn me(State(s): State<Arc<PanelState>>, actor: Actor) -> ApiResult<Json<MeView>> {
    let u = s.db.users().get(actor.principal.user_id).await?;
    Ok(Json(MeView {
        id: u.id,
        username: u.username,
        totp_enabled: u.totp_secret.is_some(),
        email: u.email,
        permissions: effective(&s.subject(&actor), Scope::Global),
        via: match actor.principal.via {
            AuthVia::Session { .. } => "session",
            AuthVia::ApiKey { .. } => "api_key",
        },
    }))
}

/// Account-level changes need a real login, never an API key.
/// A refusal is audited as `action`, like any other denial.
async fn require_session(s: &PanelState, actor: &Actor, action: &str) -> ApiResult<()> {
    match actor.principal.via {
        AuthVia::Session { .. } => Ok(()),
        AuthVia::ApiKey { .. } => {
            s.audit_denied(actor, action, &PanelState::user_target(actor.principal.user_id), None).await;
            Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "this needs a login session, not an API key"))
        }
    }
}

async fn change_password(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiJson(b): ApiJson<PasswordBody>,
) -> ApiResult<StatusCode> {
    require_session(&s, &actor, "user.password_change").await?;
    crate::validate::password("new_password", &b.new_password)?;
    let user = s.db.users().get(actor.principal.user_id).await?;
    if let Err(e) = s.auth.verify_password(user.id, &b.current_password, &actor.ip).await {
        s.audit_denied(&actor, "user.password_change", &PanelState::user_target(user.id), None).await;
        return Err(match e {
            crate::Error::Unauthorized { .. } => crate::Error::invalid("current_password", "is wrong").into(),
            other => other.into(),
        });
    }
    let hash = s.auth.hash_password(&b.new_password).await?;
    let patch = crate::model::UserPatch { password_hash: Some(hash), ..Default::default() };
    s.db.users().update(user.id, patch, s.now()).await?;
    s.auth.logout_everywhere(user.id, s.now()).await?;
    s.audit_ok(&actor, "user.password_change", &PanelState::user_target(user.id), None).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn permissions(_actor: Actor) -> Json<Vec<PermissionView>> {
    Json(
        Permission::ALL
            .iter()
            .map(|p| PermissionView {
                name: p.name(),
                category: p.category(),
                description: p.description(),
                server_scoped: p.is_server_scoped(),
            })
            .collect(),
    )
}

async fn totp_begin(State(s): State<Arc<PanelState>>, actor: Actor) -> ApiResult<Json<TotpBeginView>> {
    require_session(&s, &actor, "user.totp_begin").await?;
    let target = PanelState::user_target(actor.principal.user_id);
    let r = s.auth.totp_begin(actor.principal.user_id, s.now()).await;
    let setup = s.audited(&actor, "user.totp_begin", |_| (target.clone(), None), (target.clone(), None), r).await?;
    let qr = qr_rows(&setup.otpauth_uri);
    Ok(Json(TotpBeginView { secret: setup.secret_base32, otpauth_uri: setup.otpauth_uri, qr }))
}

async fn totp_confirm(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiJson(b): ApiJson<CodeBody>,
) -> ApiResult<StatusCode> {
    require_session(&s, &actor, "user.totp_enable").await?;
    let target = PanelState::user_target(actor.principal.user_id);
    let r = s.auth.totp_confirm(actor.principal.user_id, &b.code, s.now()).await;
    s.audited(&actor, "user.totp_enable", |_| (target.clone(), None), (target.clone(), None), r).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn totp_disable(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiJson(b): ApiJson<CodeBody>,
) -> ApiResult<StatusCode> {
    require_session(&s, &actor, "user.totp_disable").await?;
    let target = PanelState::user_target(actor.principal.user_id);
    let r = s.auth.totp_disable(actor.principal.user_id, &b.code, s.now()).await;
    s.audited(&actor, "user.totp_disable", |_| (target.clone(), None), (target.clone(), None), r).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_keys(State(s): State<Arc<PanelState>>, actor: Actor) -> ApiResult<Json<Vec<ApiKeyView>>> {
    let keys = s.auth.list_api_keys(actor.principal.user_id).await?;
    Ok(Json(keys.into_iter().map(ApiKeyView::from).collect()))
}

async fn create_key(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiJson(b): ApiJson<CreateKeyBody>,
) -> ApiResult<Json<CreatedKeyView>> {
    require_session(&s, &actor, "api_key.create").await?;
    let r = s.auth.create_api_key(actor.principal.user_id, &b.name, b.permissions, b.expires_at, s.now()).await;
    let fallback = (PanelState::user_target(actor.principal.user_id), None);
    let (key, secret) =
        s.audited(&actor, "api_key.create", |(k, _)| (format!("api_key:{}", k.id), None), fallback, r).await?;
    Ok(Json(CreatedKeyView { key: key.into(), secret }))
}

async fn revoke_key(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let id: ApiKeyId = parse_id(&id, "api key")?;
    // A leaked key must not be able to revoke its owner's other keys.
    require_session(&s, &actor, "api_key.revoke").await?;
    let r = s.auth.revoke_api_key(actor.principal.user_id, id).await;
    let target = (format!("api_key:{id}"), None);
    s.audited(&actor, "api_key.revoke", |_| target.clone(), target.clone(), r).await?;
    Ok(StatusCode::NO_CONTENT)
}
