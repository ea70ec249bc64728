//! The `Cache` trait: bytes with a TTL, counters, and publish/subscribe.
//!
//! # Contract
//!
//! - `get` after `set` returns the bytes until the TTL passes, then `None`; `set` replaces the
//!   value and its TTL.
//! - `incr` is atomic across all callers of the same cache; a missing key starts at 0 and gets
//!   `ttl` on creation only (a fixed window, not a sliding one).
//! - `delete` reports whether the key existed.
//! - A message published on a channel reaches every subscription to that channel that existed
//!   when it was published, in publish order per publisher; a dropped subscription stops
//!   receiving and frees its resources. Delivery is at most once: a slow subscriber may miss
//!   messages, never block the publisher.
//! - An unreachable backend is `Error::Unavailable`.
//!
//! The conformance suite is `capcore::conformance::cache`.

use crate::error::Result;
use async_trait::async_trait;
use std::pin::Pin;
use std::time::Duration;

/// A live subscription: messages as they arrive.
pub type Subscription = Pin<Box<dyn futures_core::Stream<Item = Vec<u8>> + Send>>;

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()>;
    async fn delete(&self, key: &str) -> Result<bool>;
    async fn incr(&self, key: &str, by: i64, ttl: Duration) -> Result<i64>;
    async fn publish(&self, channel: &str, message: &[u8]) -> Result<()>;
    async fn subscribe(&self, channel: &str) -> Result<Subscription>;
    async fn ping(&self) -> Result<()>;
    /// `memory`, `redis`, ...
    fn backend_name(&self) -> &'static str;
}

/// Conveniences over any [`Cache`].
#[async_trait]
pub trait CacheExt: Cache {
    async fn get_string(&self, key: &str) -> Result<Option<String>> {
        Ok(self.get(key).await?.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }
    async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.get(key).await?.is_some())
    }
}

impl<T: Cache + ?Sized> CacheExt for T {}
