//! Ctrl-Alt-Play authentication: the default `Authenticator` and the embedded `MemoryCache`.
//!
//! - [`CapAuthenticator`]: argon2id passwords, 15-minute JWT access tokens, rotating refresh
//!   tokens whose reuse ends the whole session, API keys (shown once, stored hashed, limited to
//!   a subset of the owner's permissions), TOTP two-factor, and login rate limits per account
//!   and per IP. It stores everything through `capcore`'s `Database` and `Cache` traits, so it
//!   works with every backend.
//! - [`MemoryCache`]: the in-process `Cache` (values with TTL, counters, publish/subscribe).
//! - `RedisCache` (feature `redis`): the same `Cache` on a Redis server, so several panels share
//!   sessions, rate limits and events.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use capauth::{AuthConfig, CapAuthenticator, MemoryCache};
//! use capcore::backend::{Authenticator, Credential, LoginRequest};
//! use capcore::model::NewUser;
//! use capcore::time::Timestamp;
//! use std::sync::Arc;
//!
//! let db = capdb::connect("sqlite::memory:", &Default::default()).await.unwrap();
//! db.migrate().await.unwrap();
//! let auth = CapAuthenticator::new(db.clone(), Arc::new(MemoryCache::default()), AuthConfig::with_secret(vec![42; 32])).unwrap();
//! let now = Timestamp::from_millis(1_700_000_000_000);
//! let hash = auth.hash_password("correct horse battery").await.unwrap();
//! db.users().create(NewUser { username: "ada".into(), email: "ada@example.org".into(), password_hash: hash }, now).await.unwrap();
//!
//! let login = LoginRequest { email: "ada@example.org".into(), password: "correct horse battery".into(), totp: None, ip: "127.0.0.1".into() };
//! let session = auth.login(login, now).await.unwrap();
//! let me = auth.authenticate(Credential::AccessToken(&session.access_token), now).await.unwrap();
//! assert_eq!(me.user_id, session.user_id);
//! # });
//! ```

mod authenticator;
mod memory_cache;
pub mod password;
#[cfg(feature = "redis")]
mod redis_cache;
pub mod token;
pub mod totp;

pub use authenticator::{API_KEY_PREFIX, AuthConfig, CapAuthenticator};
pub use memory_cache::{MemoryCache, MemoryCacheConfig};
pub use password::PasswordConfig;
#[cfg(feature = "redis")]
pub use redis_cache::{RedisCache, RedisCacheConfig};
