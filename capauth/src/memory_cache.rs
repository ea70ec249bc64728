//! `MemoryCache`: the embedded `Cache` for a single panel process.

use async_trait::async_trait;
use capcore::Result;
use capcore::backend::{Cache, Subscription};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

/// Limits of the in-memory cache.
#[derive(Clone, Copy, Debug)]
pub struct MemoryCacheConfig {
    /// Messages buffered per channel; a subscriber further behind misses messages.
    pub channel_capacity: usize,
    /// At most this many keys; beyond it, expired keys are swept and then new keys are refused
    /// an entry by evicting the one closest to expiry.
    pub max_keys: usize,
}

impl Default for MemoryCacheConfig {
    fn default() -> Self {
        Self { channel_capacity: 1024, max_keys: 1_000_000 }
    }
}

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|e| e > now)
    }
}

/// A process-local cache: a map with expiry and broadcast channels.
#[derive(Debug, Default)]
pub struct MemoryCache {
    config: MemoryCacheConfig,
    entries: Mutex<HashMap<String, Entry>>,
    channels: Mutex<HashMap<String, broadcast::Sender<Vec<u8>>>>,
}

impl MemoryCache {
    pub fn new(config: MemoryCacheConfig) -> Self {
        Self { config, ..Default::default() }
    }

    fn insert(&self, map: &mut HashMap<String, Entry>, key: &str, entry: Entry, now: Instant) {
        if map.len() >= self.config.max_keys.max(1) && !map.contains_key(key) {
            map.retain(|_, e| e.live(now));
            if map.len() >= self.config.max_keys.max(1) {
                let victim =
                    map.iter().min_by_key(|(_, e)| e.expires.unwrap_or(now + Duration::from_secs(u32::MAX as u64)));
                if let Some(k) = victim.map(|(k, _)| k.clone()) {
                    map.remove(&k);
                }
            }
        }
        map.insert(key.to_string(), entry);
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let now = Instant::now();
        let mut map = self.entries.lock().expect("cache lock");
        match map.get(key) {
            Some(e) if e.live(now) => Ok(Some(e.value.clone())),
            Some(_) => {
                map.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        let now = Instant::now();
        let mut map = self.entries.lock().expect("cache lock");
        self.insert(&mut map, key, Entry { value: value.to_vec(), expires: ttl.map(|t| now + t) }, now);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let now = Instant::now();
        Ok(self.entries.lock().expect("cache lock").remove(key).is_some_and(|e| e.live(now)))
    }

    async fn incr(&self, key: &str, by: i64, ttl: Duration) -> Result<i64> {
        let now = Instant::now();
        let mut map = self.entries.lock().expect("cache lock");
        let current = match map.get(key) {
            Some(e) if e.live(now) => {
                Some((std::str::from_utf8(&e.value).ok().and_then(|s| s.parse::<i64>().ok()), e.expires))
            }
            _ => None,
        };
        let (value, expires) = match current {
            Some((Some(v), expires)) => (v.saturating_add(by), expires),
            Some((None, _)) => {
                return Err(capcore::Error::conflict(format!("cache key `{key}` does not hold an integer")));
            }
            None => (by, Some(now + ttl)),
        };
        self.insert(&mut map, key, Entry { value: value.to_string().into_bytes(), expires }, now);
        Ok(value)
    }

    async fn publish(&self, channel: &str, message: &[u8]) -> Result<()> {
        let mut channels = self.channels.lock().expect("channel lock");
        if let Some(tx) = channels.get(channel)
            && tx.send(message.to_vec()).is_err()
        {
            // Nobody listens any more: forget the channel so the map does not grow.
            channels.remove(channel);
        }
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> Result<Subscription> {
        let mut channels = self.channels.lock().expect("channel lock");
        // Channels whose subscribers all left are forgotten here too, not only on publish.
        channels.retain(|_, tx| tx.receiver_count() > 0);
        let rx = channels
            .entry(channel.to_string())
            .or_insert_with(|| broadcast::channel(self.config.channel_capacity.max(1)).0)
            .subscribe();
        // A lagging subscriber skips what it missed instead of blocking the publisher.
        Ok(Box::pin(BroadcastStream::new(rx).filter_map(|m| m.ok())))
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }
}
