//! The `Authenticator` trait: credentials in, principals out; sessions, API keys and TOTP.
//!
//! # Contract
//!
//! - `authenticate` accepts an access token or an API key and returns who it is with their
//!   global permissions; anything expired, forged, revoked or unknown is `Unauthorized`, and
//!   a disabled user is `Unauthorized` too.
//! - `login` checks the password (and the TOTP code when the user has two-factor on:
//!   `TwoFactorRequired` without one), is rate limited per account and per IP independently
//!   (`RateLimited`), and never says whether the email exists.
//! - `refresh` rotates: the old refresh token stops working; presenting an earlier one revokes
//!   the whole family (every token descended from that login).
//! - `logout` ends one session at once, including its access tokens; `logout_everywhere` ends
//!   all of a user's.
//! - An API key's permissions are a subset of its owner's at creation; the secret is returned
//!   once and only its hash is kept.

use crate::error::Result;
use crate::ids::*;
use crate::model::ApiKey;
use crate::permission::PermissionSet;
use crate::time::Timestamp;
use async_trait::async_trait;

/// Who is making a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    /// The union of the user's roles.
    pub global: PermissionSet,
    pub via: AuthVia,
}

impl Principal {
    /// What an API key narrows permissions to, if this came in through one.
    pub fn key_limit(&self) -> Option<PermissionSet> {
        match &self.via {
            AuthVia::ApiKey { limit, .. } => Some(*limit),
            AuthVia::Session { .. } => None,
        }
    }
}

/// How a principal authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthVia {
    /// A login session; `csrf` is the token that state-changing cookie requests must echo.
    Session {
        id: SessionId,
        csrf: String,
    },
    ApiKey {
        id: ApiKeyId,
        limit: PermissionSet,
    },
}

/// A credential taken from a request.
#[derive(Clone, Copy, Debug)]
pub enum Credential<'a> {
    /// An access token (from the cookie or a bearer header).
    AccessToken(&'a str),
    /// An API key (bearer header).
    ApiKey(&'a str),
}

#[derive(Clone, Debug)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    pub totp: Option<String>,
    pub ip: String,
}

/// Tokens handed out at login and refresh.
#[derive(Clone, Debug)]
pub struct IssuedSession {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub access_token: String,
    pub access_expires_in_secs: u64,
    pub refresh_token: String,
    pub refresh_expires_in_secs: u64,
    pub csrf_token: String,
}

/// A pending two-factor enrolment.
#[derive(Clone, Debug)]
pub struct TotpSetup {
    pub secret_base32: String,
    pub otpauth_uri: String,
}

#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    async fn login(&self, request: LoginRequest, now: Timestamp) -> Result<IssuedSession>;
    async fn refresh(&self, refresh_token: &str, ip: &str, now: Timestamp) -> Result<IssuedSession>;
    async fn authenticate(&self, credential: Credential<'_>, now: Timestamp) -> Result<Principal>;
    async fn logout(&self, principal: &Principal, now: Timestamp) -> Result<()>;
    async fn logout_everywhere(&self, user: UserId, now: Timestamp) -> Result<u64>;
    /// Re-checks a logged-in user's password (before sensitive changes); rate limited like
    /// logins. `Unauthorized` when wrong.
    async fn verify_password(&self, user: UserId, password: &str, ip: &str) -> Result<()>;
    /// Hashes a password with the configured parameters (for user creation and resets).
    async fn hash_password(&self, password: &str) -> Result<String>;
    /// Returns the stored key and the secret, which is never shown again.
    async fn create_api_key(
        &self,
        user: UserId,
        name: &str,
        permissions: PermissionSet,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(ApiKey, String)>;
    async fn list_api_keys(&self, user: UserId) -> Result<Vec<ApiKey>>;
    async fn revoke_api_key(&self, user: UserId, id: ApiKeyId) -> Result<()>;
    /// Starts enrolment: a new secret, not active until confirmed with a code.
    async fn totp_begin(&self, user: UserId, now: Timestamp) -> Result<TotpSetup>;
    async fn totp_confirm(&self, user: UserId, code: &str, now: Timestamp) -> Result<()>;
    /// Turns two-factor off; needs a current code.
    async fn totp_disable(&self, user: UserId, code: &str, now: Timestamp) -> Result<()>;
}
