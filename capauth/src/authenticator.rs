//! `CapAuthenticator`: the default `Authenticator` over any `Database` and `Cache`.

use crate::password::{self, PasswordConfig};
use crate::token::{AccessClaims, TokenSigner, random_token, same, secret_hash};
use crate::totp;
use async_trait::async_trait;
use capcore::backend::{
    AuthVia, Authenticator, Cache, CacheExt, Credential, Database, IssuedSession, LoginRequest, Principal, TotpSetup,
};
use capcore::ids::{ApiKeyId, SessionId, UserId};
use capcore::model::{ApiKey, Rotation, Session, User, UserPatch};
use capcore::permission::PermissionSet;
use capcore::time::Timestamp;
use capcore::{Error, Result};
use std::sync::Arc;
use std::time::Duration;

/// Settings of the default authenticator.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// HMAC secret for access tokens, at least 32 bytes. Keep it stable across restarts.
    pub jwt_secret: Vec<u8>,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub password: PasswordConfig,
    /// Failed logins allowed per account within `login_window`.
    pub login_attempts_per_account: u32,
    /// Login attempts allowed per client IP within `login_window`.
    pub login_attempts_per_ip: u32,
    pub login_window: Duration,
    /// Shown in authenticator apps.
    pub totp_issuer: String,
}

impl AuthConfig {
    /// Defaults with the given secret: 15-minute access tokens, 30-day refresh tokens,
    /// 5 failures per account and 30 attempts per IP per 15 minutes.
    pub fn with_secret(jwt_secret: Vec<u8>) -> Self {
        Self {
            jwt_secret,
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            password: PasswordConfig::default(),
            login_attempts_per_account: 5,
            login_attempts_per_ip: 30,
            login_window: Duration::from_secs(15 * 60),
            totp_issuer: "Ctrl-Alt-Play".into(),
        }
    }
}

/// API keys look like `cap_<prefix>_<secret>`; the prefix finds the row, the secret is hashed.
pub const API_KEY_PREFIX: &str = "cap_";

/// The default authenticator.
pub struct CapAuthenticator {
    db: Arc<dyn Database>,
    cache: Arc<dyn Cache>,
    config: AuthConfig,
    signer: TokenSigner,
    /// Verified against when the account does not exist, so both cases take as long.
    dummy_hash: String,
}

impl std::fmt::Debug for CapAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CapAuthenticator").field("db", &self.db.backend_name()).finish_non_exhaustive()
    }
}

fn secs(t: Timestamp) -> i64 {
    t.0.div_euclid(1000)
}

impl CapAuthenticator {
    pub fn new(db: Arc<dyn Database>, cache: Arc<dyn Cache>, config: AuthConfig) -> Result<Self> {
        let signer = TokenSigner::new(&config.jwt_secret)?;
        let dummy_hash = config.password.hash(&random_token(16))?;
        Ok(Self { db, cache, config, signer, dummy_hash })
    }

    /// Counts an attempt in a fixed window; `RateLimited` once over `max`.
    async fn count_attempt(&self, key: &str, max: u32) -> Result<()> {
        let n = self.cache.incr(key, 1, self.config.login_window).await?;
        if n > i64::from(max) {
            return Err(Error::RateLimited {
                message: "too many login attempts; try again later".into(),
                retry_after_secs: self.config.login_window.as_secs(),
            });
        }
        Ok(())
    }

    /// Counts an attempt against an account *before* the check it guards, so concurrent
    /// attempts cannot all slip under the limit; a success clears the count.
    async fn count_account_attempt(&self, key: &str) -> Result<()> {
        let n = self.cache.incr(key, 1, self.config.login_window).await?;
        if n > i64::from(self.config.login_attempts_per_account) {
            return Err(Error::RateLimited {
                message: "too many attempts for this account; try again later".into(),
                retry_after_secs: self.config.login_window.as_secs(),
            });
        }
        Ok(())
    }

    fn account_key(email: &str) -> String {
        format!("cap:rl:login:account:{email}")
    }

    async fn issue(
        &self,
        session: &Session,
        csrf: String,
        refresh_token: String,
        now: Timestamp,
    ) -> Result<IssuedSession> {
        let exp = secs(now) + self.config.access_ttl.as_secs() as i64;
        let claims = AccessClaims { sub: session.user_id, sid: session.id, csrf: csrf.clone(), iat: secs(now), exp };
        Ok(IssuedSession {
            session_id: session.id,
            user_id: session.user_id,
            access_token: self.signer.sign(&claims)?,
            access_expires_in_secs: self.config.access_ttl.as_secs(),
            refresh_token,
            refresh_expires_in_secs: ((session.expires_at.0 - now.0) / 1000).max(0) as u64,
            csrf_token: csrf,
        })
    }

    /// Checks a TOTP code and refuses a code already used in its step (replay).
    async fn check_totp(&self, user: UserId, secret: &str, code: &str, now: Timestamp) -> Result<bool> {
        let Some(step) = totp::verify(secret, code, secs(now)) else { return Ok(false) };
        let used = format!("cap:totp-used:{user}:{step}");
        let first = self.cache.incr(&used, 1, Duration::from_secs(3 * totp::STEP_SECS as u64)).await? == 1;
        Ok(first)
    }

    async fn live_user(&self, id: UserId) -> Result<User> {
        let user = match self.db.users().get(id).await {
            Err(Error::NotFound { .. }) => return Err(Error::unauthorized("the account no longer exists")),
            other => other?,
        };
        if user.disabled {
            return Err(Error::unauthorized("the account is disabled"));
        }
        Ok(user)
    }

    async fn authenticate_access_token(&self, token: &str, now: Timestamp) -> Result<Principal> {
        let claims = self.signer.verify(token, secs(now))?;
        let ended = || Error::unauthorized("the session has ended");
        let (session, ctx) = match self.db.session_context(claims.sid).await {
            Err(Error::NotFound { .. }) => return Err(ended()),
            other => other?,
        };
        if session.revoked || session.user_id != claims.sub || session.expires_at <= now {
            return Err(ended());
        }
        if ctx.user.disabled {
            return Err(Error::unauthorized("the account is disabled"));
        }
        Ok(Principal {
            user_id: claims.sub,
            global: ctx.global,
            via: AuthVia::Session { id: claims.sid, csrf: claims.csrf },
        })
    }

    async fn authenticate_api_key(&self, key: &str, now: Timestamp) -> Result<Principal> {
        let invalid = || Error::unauthorized("the API key is invalid");
        let rest = key.strip_prefix(API_KEY_PREFIX).ok_or_else(invalid)?;
        let (prefix, secret) = rest.split_once('_').ok_or_else(invalid)?;
        let (stored, ctx) = self.db.api_key_context(prefix).await?.ok_or_else(invalid)?;
        if !same(&stored.secret_hash, &secret_hash(secret)) {
            return Err(invalid());
        }
        if stored.expires_at.is_some_and(|e| e <= now) {
            return Err(Error::unauthorized("the API key has expired"));
        }
        if ctx.user.disabled {
            return Err(Error::unauthorized("the account is disabled"));
        }
        // Recording use is a write; once a minute per key is enough to answer "is it in use".
        if stored.last_used_at.is_none_or(|t| now.0 - t.0 >= 60_000) {
            self.db.api_keys().touch(stored.id, now).await?;
        }
        Ok(Principal {
            user_id: stored.user_id,
            global: ctx.global,
            via: AuthVia::ApiKey { id: stored.id, limit: stored.permissions },
        })
    }
}

#[async_trait]
impl Authenticator for CapAuthenticator {
    async fn login(&self, req: LoginRequest, now: Timestamp) -> Result<IssuedSession> {
        let email = req.email.trim().to_lowercase();
        let ip_key = format!("cap:rl:login:ip:{}", req.ip);
        let account_key = Self::account_key(&email);
        self.count_attempt(&ip_key, self.config.login_attempts_per_ip).await?;
        self.count_account_attempt(&account_key).await?;
        let user = self.db.users().find_by_email(&email).await?;
        let password_ok = {
            let password = req.password.clone();
            let hash = user.as_ref().map_or_else(|| self.dummy_hash.clone(), |u| u.password_hash.clone());
            tokio::task::spawn_blocking(move || password::verify(&password, &hash))
                .await
                .map_err(|e| Error::internal("password check failed", e))?
        };
        let user = match user {
            Some(u) if password_ok && !u.disabled => u,
            _ => return Err(Error::unauthorized("invalid email or password")),
        };
        if let Some(secret) = &user.totp_secret {
            let Some(code) = req.totp.as_deref() else { return Err(Error::TwoFactorRequired) };
            if !self.check_totp(user.id, secret, code, now).await? {
                return Err(Error::unauthorized("invalid two-factor code"));
            }
        }
        self.cache.delete(&account_key).await?;
        let refresh_token = random_token(32);
        let session = self
            .db
            .sessions()
            .create(Session {
                id: SessionId::new_random(),
                user_id: user.id,
                refresh_hash: secret_hash(&refresh_token),
                generation: 0,
                revoked: false,
                created_at: now,
                expires_at: now.plus_secs(self.config.refresh_ttl.as_secs() as i64),
                ip: req.ip.clone(),
            })
            .await?;
        self.issue(&session, random_token(24), refresh_token, now).await
    }

    async fn refresh(&self, refresh_token: &str, _ip: &str, now: Timestamp) -> Result<IssuedSession> {
        let new_token = random_token(32);
        match self.db.sessions().rotate(&secret_hash(refresh_token), &secret_hash(&new_token), now).await? {
            Rotation::Rotated(session) => {
                self.live_user(session.user_id).await?;
                self.issue(&session, random_token(24), new_token, now).await
            }
            Rotation::ReuseDetected { user_id } => {
                tracing::warn!(%user_id, "refresh token reused; session family revoked");
                Err(Error::unauthorized("the refresh token was already used; the session has been ended"))
            }
            Rotation::Invalid => Err(Error::unauthorized("the refresh token is invalid or expired")),
        }
    }

    async fn authenticate(&self, credential: Credential<'_>, now: Timestamp) -> Result<Principal> {
        match credential {
            Credential::AccessToken(t) => self.authenticate_access_token(t, now).await,
            Credential::ApiKey(k) => self.authenticate_api_key(k, now).await,
        }
    }

    async fn logout(&self, principal: &Principal, _now: Timestamp) -> Result<()> {
        match &principal.via {
            AuthVia::Session { id, .. } => self.db.sessions().revoke(*id).await,
            AuthVia::ApiKey { .. } => {
                Err(Error::conflict("an API key has no session to log out of; revoke the key instead"))
            }
        }
    }

    async fn logout_everywhere(&self, user: UserId, _now: Timestamp) -> Result<u64> {
        self.db.sessions().revoke_all_for_user(user).await
    }

    async fn verify_password(&self, user: UserId, password: &str, ip: &str) -> Result<()> {
        let u = self.live_user(user).await?;
        self.count_attempt(&format!("cap:rl:login:ip:{ip}"), self.config.login_attempts_per_ip).await?;
        let account_key = Self::account_key(&u.email);
        self.count_account_attempt(&account_key).await?;
        let (password, hash) = (password.to_string(), u.password_hash);
        let ok = tokio::task::spawn_blocking(move || password::verify(&password, &hash))
            .await
            .map_err(|e| Error::internal("password check failed", e))?;
        if !ok {
            return Err(Error::unauthorized("the password is wrong"));
        }
        self.cache.delete(&account_key).await?;
        Ok(())
    }

    async fn hash_password(&self, password: &str) -> Result<String> {
        let cfg = self.config.password;
        let password = password.to_string();
        tokio::task::spawn_blocking(move || cfg.hash(&password))
            .await
            .map_err(|e| Error::internal("hashing failed", e))?
    }

    async fn create_api_key(
        &self,
        user: UserId,
        name: &str,
        permissions: PermissionSet,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(ApiKey, String)> {
        capcore::validate::name("name", name, 64)?;
        let global = self.db.roles().global_permissions(user).await?;
        // Server-scoped permissions may be held through owned and shared servers.
        let holdable = global.union(PermissionSet::server_scoped());
        if !permissions.is_subset_of(holdable) {
            let extra: Vec<_> = permissions.iter().filter(|p| !holdable.contains(*p)).map(|p| p.name()).collect();
            return Err(Error::forbidden(format!("you do not hold: {}", extra.join(", "))));
        }
        if expires_at.is_some_and(|e| e <= now) {
            return Err(Error::invalid("expires_at", "must be in the future"));
        }
        let prefix = random_token(9).replace(['-', '_'], "x");
        let secret = random_token(32);
        let key = ApiKey {
            id: ApiKeyId::new_random(),
            user_id: user,
            name: name.to_string(),
            prefix: prefix.clone(),
            secret_hash: secret_hash(&secret),
            permissions,
            created_at: now,
            last_used_at: None,
            expires_at,
        };
        let stored = self.db.api_keys().create(key).await?;
        Ok((stored, format!("{API_KEY_PREFIX}{prefix}_{secret}")))
    }

    async fn list_api_keys(&self, user: UserId) -> Result<Vec<ApiKey>> {
        self.db.api_keys().list_for_user(user).await
    }

    async fn revoke_api_key(&self, user: UserId, id: ApiKeyId) -> Result<()> {
        self.db.api_keys().delete(user, id).await
    }

    async fn totp_begin(&self, user: UserId, _now: Timestamp) -> Result<TotpSetup> {
        let u = self.db.users().get(user).await?;
        if u.totp_enabled() {
            return Err(Error::conflict("two-factor authentication is already enabled"));
        }
        let secret = totp::new_secret();
        self.cache.set(&format!("cap:totp-pending:{user}"), secret.as_bytes(), Some(Duration::from_secs(600))).await?;
        Ok(TotpSetup {
            otpauth_uri: totp::otpauth_uri(&self.config.totp_issuer, &u.email, &secret),
            secret_base32: secret,
        })
    }

    async fn totp_confirm(&self, user: UserId, code: &str, now: Timestamp) -> Result<()> {
        let key = format!("cap:totp-pending:{user}");
        let secret = self
            .cache
            .get_string(&key)
            .await?
            .ok_or_else(|| Error::conflict("no two-factor enrolment is pending; start again"))?;
        let account_key = Self::account_key(&self.db.users().get(user).await?.email);
        self.count_account_attempt(&account_key).await?;
        if !self.check_totp(user, &secret, code, now).await? {
            return Err(Error::invalid("code", "the code is not valid"));
        }
        self.cache.delete(&account_key).await?;
        self.db.users().update(user, UserPatch { totp_secret: Some(Some(secret)), ..Default::default() }, now).await?;
        self.cache.delete(&key).await?;
        Ok(())
    }

    async fn totp_disable(&self, user: UserId, code: &str, now: Timestamp) -> Result<()> {
        let u = self.db.users().get(user).await?;
        let secret = u.totp_secret.ok_or_else(|| Error::conflict("two-factor authentication is not enabled"))?;
        let account_key = Self::account_key(&u.email);
        self.count_account_attempt(&account_key).await?;
        if !self.check_totp(user, &secret, code, now).await? {
            return Err(Error::invalid("code", "the code is not valid"));
        }
        self.cache.delete(&account_key).await?;
        self.db.users().update(user, UserPatch { totp_secret: Some(None), ..Default::default() }, now).await?;
        Ok(())
    }
}
