//! `RedisCache`: the `Cache` on a Redis server, so several panels share sessions, rate limits,
//! counters and published events.
//!
//! # How it maps onto Redis
//!
//! Every key and channel is prefixed with [`RedisCacheConfig::key_prefix`], so several panels
//! (or test runs) can share one Redis without seeing each other.
//!
//! - `get`/`set`/`delete`/`publish`/`ping` are `GET`, `SET` (with `PX` for a TTL; a `SET`
//!   without one clears the old TTL), `DEL`, `PUBLISH` and `PING` on one multiplexed connection
//!   (redis' `ConnectionManager`), which reconnects by itself after Redis comes back.
//! - `incr` is one `MULTI` / `SET key 0 NX PX ttl` / `INCRBY key by` / `EXEC` round trip: the
//!   transaction is atomic, `SET NX` creates a missing key at 0 with the TTL and leaves an
//!   existing one (and its TTL) alone, and `INCRBY` keeps the TTL. So the TTL is set on creation
//!   only (a fixed window), with no Lua script (nothing to load, allowed where `EVAL` is not)
//!   and no need for `PEXPIRE ... NX` (Redis 7 only, and it would also stamp a TTL on a counter
//!   that was created without one).
//! - Publish/subscribe runs over one dedicated pub/sub connection per `RedisCache`, owned by a
//!   background task (the hub) that subscribes Redis to a channel once, however many local
//!   subscriptions it has, and fans each message out to them through bounded queues of
//!   [`RedisCacheConfig::channel_capacity`]. A full queue drops the message for that subscriber
//!   only, so a slow subscriber never blocks the publisher or the other subscribers. Dropping a
//!   subscription removes its queue at once and unsubscribes Redis when it was the channel's last.
//!
//! # When Redis goes away
//!
//! Every failure is `Error::Unavailable` ("the cache (redis) is unreachable: ...") and every call
//! is bounded by `connect_timeout + response_timeout`, so nothing hangs. Commands work again as
//! soon as Redis answers. Subscriptions stay open across an outage: the hub notices the lost
//! connection (or a missed health-check `PING`), reconnects with a backoff of 100 ms up to 2 s,
//! and resubscribes every channel that still has subscribers. Messages published while the
//! connection was down are lost, which the `Cache` contract allows (at most once). A subscription
//! never sees an error item and never ends on its own: through an outage it is merely quiet.
//! A call that timed out may still have been carried out once Redis answers again.

use async_trait::async_trait;
use capcore::backend::{Cache, Subscription};
use capcore::{Error, Result};
use futures_core::Stream;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use redis::{Client, Msg, RedisError};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::StreamExt;

/// Settings of [`RedisCache`].
#[derive(Clone, Debug)]
pub struct RedisCacheConfig {
    /// Put in front of every key and channel (`cap:` by default); panels that should share
    /// sessions and events use the same prefix, unrelated ones a different one.
    pub key_prefix: String,
    /// Longest wait for a TCP connection and the Redis handshake.
    pub connect_timeout: Duration,
    /// Longest wait for the answer to one command.
    pub response_timeout: Duration,
    /// Messages buffered per subscription; a subscriber further behind misses messages.
    pub channel_capacity: usize,
}

impl Default for RedisCacheConfig {
    fn default() -> Self {
        Self {
            key_prefix: "cap:".into(),
            connect_timeout: Duration::from_secs(3),
            response_timeout: Duration::from_secs(2),
            channel_capacity: 1024,
        }
    }
}

/// A TTL in whole milliseconds for `PX`: at least 1 (Redis refuses 0) and at most about a
/// thousand years (Redis refuses an expiry that overflows its clock).
fn ttl_millis(ttl: Duration) -> u64 {
    const MAX_TTL_MILLIS: u64 = 1 << 45;
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).clamp(1, MAX_TTL_MILLIS)
}

/// The one place a Redis error becomes a `capcore::Error`: a key holding something other than
/// an integer (or an overflowing counter) is `Conflict`, like in `MemoryCache`; everything else
/// (refused, reset, timed out, a server that refuses commands) is `Unavailable`.
fn cache_error(key: &str, error: RedisError) -> Error {
    let not_an_integer = error.clone().into_server_errors().is_some_and(|errors| {
        errors.iter().any(|(_, e)| {
            let detail = e.details().unwrap_or_default();
            e.code() == "WRONGTYPE" || detail.contains("not an integer") || detail.contains("overflow")
        })
    });
    if not_an_integer {
        return Error::Conflict {
            message: format!("cache key `{key}` does not hold an integer"),
            source: Some(Box::new(error)),
        };
    }
    unreachable(error)
}

fn unreachable(error: RedisError) -> Error {
    Error::unavailable(format!("the cache (redis) is unreachable: {error}"), error)
}

fn no_answer(within: Duration) -> Error {
    Error::Unavailable {
        message: format!("the cache (redis) is unreachable: no answer within {within:?}"),
        source: None,
    }
}

/// Runs `work` with a deadline; a missed deadline is `Unavailable`.
async fn bounded<T>(within: Duration, work: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(within, work).await.unwrap_or_else(|_| Err(no_answer(within)))
}

/// A `Cache` on Redis, shared by every panel that uses the same Redis and key prefix.
///
/// Share one as an `Arc<dyn Cache>`. Dropping it closes its command connection; its pub/sub
/// connection closes once its last subscription is dropped too.
pub struct RedisCache {
    prefix: String,
    connection: ConnectionManager,
    /// The longest any call may take.
    call_timeout: Duration,
    hub: mpsc::UnboundedSender<HubCommand>,
    next_subscription: AtomicU64,
    channel_capacity: usize,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisCache {
    /// Connects to `url` (`redis://[user:password@]host[:port][/db]`) and checks that Redis
    /// answers: `Invalid` for a URL that cannot be used, `Unavailable` when Redis cannot be
    /// reached within the configured timeouts. Needs a Tokio runtime (it spawns the pub/sub hub).
    pub async fn connect(url: &str, config: RedisCacheConfig) -> Result<RedisCache> {
        if url.starts_with("rediss://") || url.starts_with("valkeys://") {
            return Err(Error::invalid("url", "TLS (rediss://) is not part of this build; use redis://"));
        }
        let client = Client::open(url).map_err(|e| Error::invalid("url", format!("not a usable Redis URL: {e}")))?;
        let call_timeout = config.connect_timeout + config.response_timeout;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            // One attempt per reconnect: the next call tries again, and no call waits through a
            // series of backoffs.
            .set_number_of_retries(0);
        let connection = bounded(call_timeout, async {
            ConnectionManager::new_with_config(client.clone(), manager_config).await.map_err(unreachable)
        })
        .await?;
        let (hub, commands) = mpsc::unbounded_channel();
        tokio::spawn(Hub::new(client, config.connect_timeout, config.response_timeout).run(commands));
        let cache = RedisCache {
            prefix: config.key_prefix,
            connection,
            call_timeout,
            hub,
            next_subscription: AtomicU64::new(0),
            channel_capacity: config.channel_capacity.max(1),
        };
        cache.ping().await?;
        Ok(cache)
    }

    /// The key prefix in use.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    fn full(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Awaits one command (or transaction) about `key`, bounded by the call timeout.
    async fn call<T>(&self, key: &str, work: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
        bounded(self.call_timeout, async { work.await.map_err(|e| cache_error(key, e)) }).await
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut command = redis::cmd("GET");
        command.arg(self.full(key));
        self.call(key, command.query_async(&mut self.connection.clone())).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        let mut command = redis::cmd("SET");
        command.arg(self.full(key)).arg(value);
        if let Some(ttl) = ttl {
            command.arg("PX").arg(ttl_millis(ttl));
        }
        self.call(key, command.exec_async(&mut self.connection.clone())).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let mut command = redis::cmd("DEL");
        command.arg(self.full(key));
        let removed: i64 = self.call(key, command.query_async(&mut self.connection.clone())).await?;
        Ok(removed > 0)
    }

    async fn incr(&self, key: &str, by: i64, ttl: Duration) -> Result<i64> {
        let full = self.full(key);
        let mut transaction = redis::pipe();
        transaction
            .atomic()
            .cmd("SET")
            .arg(&full)
            .arg(0)
            .arg("NX")
            .arg("PX")
            .arg(ttl_millis(ttl))
            .ignore()
            .cmd("INCRBY")
            .arg(&full)
            .arg(by);
        let (value,): (i64,) = self.call(key, transaction.query_async(&mut self.connection.clone())).await?;
        Ok(value)
    }

    async fn publish(&self, channel: &str, message: &[u8]) -> Result<()> {
        let mut command = redis::cmd("PUBLISH");
        command.arg(self.full(channel)).arg(message);
        self.call(channel, command.exec_async(&mut self.connection.clone())).await
    }

    async fn subscribe(&self, channel: &str) -> Result<Subscription> {
        let id = self.next_subscription.fetch_add(1, Ordering::Relaxed);
        let channel = self.full(channel);
        let (sender, receiver) = mpsc::channel(self.channel_capacity);
        let (reply, subscribed) = oneshot::channel();
        let hub_gone = || Error::Unavailable { message: "the cache (redis) has shut down".into(), source: None };
        self.hub.send(HubCommand::Subscribe { channel: channel.clone(), id, sender, reply }).map_err(|_| hub_gone())?;
        // The guard first: if the wait below is cancelled or times out after the hub subscribed,
        // dropping the guard still removes the subscriber again.
        let guard = Unsubscribe { hub: self.hub.clone(), channel, id };
        bounded(self.call_timeout, async { subscribed.await.unwrap_or_else(|_| Err(hub_gone())) }).await?;
        Ok(Box::pin(RedisSubscription { receiver, _guard: guard }))
    }

    async fn ping(&self) -> Result<()> {
        let _pong: String = self.call("", redis::cmd("PING").query_async(&mut self.connection.clone())).await?;
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }
}

// ---------------------------------------------------------------------------------------------
// Publish/subscribe: one connection, a hub task fanning out, a bounded queue per subscription
// ---------------------------------------------------------------------------------------------

/// What a `RedisCache` (or a dropped subscription) asks of the hub.
enum HubCommand {
    Subscribe { channel: String, id: u64, sender: mpsc::Sender<Vec<u8>>, reply: oneshot::Sender<Result<()>> },
    Unsubscribe { channel: String, id: u64 },
}

/// A subscription's stream: its queue, plus the guard that tells the hub when it is dropped.
struct RedisSubscription {
    receiver: mpsc::Receiver<Vec<u8>>,
    _guard: Unsubscribe,
}

impl Stream for RedisSubscription {
    type Item = Vec<u8>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        self.receiver.poll_recv(cx)
    }
}

/// Removes a subscriber from the hub when dropped (no runtime needed: it only sends).
struct Unsubscribe {
    hub: mpsc::UnboundedSender<HubCommand>,
    channel: String,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        let _ = self.hub.send(HubCommand::Unsubscribe { channel: std::mem::take(&mut self.channel), id: self.id });
    }
}

/// How often an idle pub/sub connection is checked with a `PING`, so a connection that died
/// without a close (a vanished host) is noticed and replaced.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(10);
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(100);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// Most queued messages read before a new subscriber is added (see [`Hub::drain`]).
const MAX_DRAIN: usize = 65_536;

/// One subscription as the hub sees it: its id and the sending end of its queue.
type Subscriber = (u64, mpsc::Sender<Vec<u8>>);

struct PubSubConnection {
    sink: PubSubSink,
    stream: PubSubStream,
}

/// The task that owns the pub/sub connection and the subscribers of every channel.
struct Hub {
    client: Client,
    connect_timeout: Duration,
    response_timeout: Duration,
    /// By full channel name: each subscription's id and queue.
    subscribers: HashMap<String, Vec<Subscriber>>,
    connection: Option<PubSubConnection>,
    /// When to try reconnecting (set while disconnected with subscribers waiting).
    reconnect_at: Option<Instant>,
    reconnect_delay: Duration,
}

/// What woke the hub.
enum HubEvent {
    Command(Option<HubCommand>),
    Message(Option<Msg>),
    Reconnect,
    HealthCheck,
}

impl Hub {
    fn new(client: Client, connect_timeout: Duration, response_timeout: Duration) -> Self {
        Self {
            client,
            connect_timeout,
            response_timeout,
            subscribers: HashMap::new(),
            connection: None,
            reconnect_at: None,
            reconnect_delay: FIRST_RECONNECT_DELAY,
        }
    }

    /// Serves until every sender of commands (the cache and all subscriptions) is gone.
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<HubCommand>) {
        let mut health = tokio::time::interval_at(Instant::now() + HEALTH_CHECK_INTERVAL, HEALTH_CHECK_INTERVAL);
        health.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let connected = self.connection.is_some();
            let event = tokio::select! {
                command = commands.recv() => HubEvent::Command(command),
                message = Self::next_message(&mut self.connection) => HubEvent::Message(message),
                _ = tokio::time::sleep_until(self.reconnect_at.unwrap_or_else(Instant::now)),
                    if self.reconnect_at.is_some() => HubEvent::Reconnect,
                _ = health.tick(), if connected => HubEvent::HealthCheck,
            };
            match event {
                HubEvent::Command(None) => return,
                HubEvent::Command(Some(HubCommand::Subscribe { channel, id, sender, reply })) => {
                    let outcome = self.subscribe(channel, id, sender).await;
                    let _ = reply.send(outcome);
                }
                HubEvent::Command(Some(HubCommand::Unsubscribe { channel, id })) => {
                    self.unsubscribe(&channel, id).await
                }
                HubEvent::Message(Some(message)) => self.fan_out(&message),
                HubEvent::Message(None) => self.lost("the pub/sub connection closed"),
                HubEvent::Reconnect => {
                    if let Err(e) = self.ensure_connected().await {
                        tracing::debug!(error = %e, "redis pub/sub reconnect failed");
                    }
                }
                HubEvent::HealthCheck => self.health_check().await,
            }
        }
    }

    async fn next_message(connection: &mut Option<PubSubConnection>) -> Option<Msg> {
        match connection {
            Some(c) => c.stream.next().await,
            None => std::future::pending().await,
        }
    }

    /// Forgets a broken connection; reconnects soon if anyone is still subscribed.
    fn lost(&mut self, why: &str) {
        if self.connection.take().is_some() {
            tracing::warn!(reason = why, "redis pub/sub connection lost; resubscribing when redis is back");
        }
        if self.subscribers.is_empty() {
            self.reconnect_at = None;
        } else if self.reconnect_at.is_none() {
            self.reconnect_at = Some(Instant::now() + self.reconnect_delay);
        }
    }

    /// Connects (if not connected) and subscribes Redis to every channel that has subscribers.
    async fn ensure_connected(&mut self) -> Result<()> {
        if self.connection.is_some() {
            return Ok(());
        }
        let client = self.client.clone();
        let mut connection = bounded(self.connect_timeout + self.response_timeout, async move {
            let (sink, stream) = client.get_async_pubsub().await.map_err(unreachable)?.split();
            Ok(PubSubConnection { sink, stream })
        })
        .await;
        if let Ok(c) = &mut connection
            && !self.subscribers.is_empty()
        {
            let channels: Vec<&String> = self.subscribers.keys().collect();
            let resubscribed =
                bounded(self.response_timeout, async { c.sink.subscribe(&channels).await.map_err(unreachable) }).await;
            if let Err(e) = resubscribed {
                connection = Err(e);
            }
        }
        match connection {
            Ok(c) => {
                if self.reconnect_at.is_some() {
                    tracing::info!(channels = self.subscribers.len(), "redis pub/sub connection restored");
                }
                self.connection = Some(c);
                self.reconnect_at = None;
                self.reconnect_delay = FIRST_RECONNECT_DELAY;
                Ok(())
            }
            Err(e) => {
                self.reconnect_delay = (self.reconnect_delay * 2).min(MAX_RECONNECT_DELAY);
                self.reconnect_at = (!self.subscribers.is_empty()).then(|| Instant::now() + self.reconnect_delay);
                Err(e)
            }
        }
    }

    async fn subscribe(&mut self, channel: String, id: u64, sender: mpsc::Sender<Vec<u8>>) -> Result<()> {
        self.ensure_connected().await?;
        let Some(connection) = self.connection.as_mut() else {
            return Err(no_answer(self.connect_timeout));
        };
        // A new channel needs a SUBSCRIBE; a channel already subscribed a PING. Either answer comes
        // after every message Redis sent before it, which `drain` then hands out.
        let sink = &mut connection.sink;
        let synced = if self.subscribers.contains_key(&channel) {
            bounded(self.response_timeout, async { sink.ping::<redis::Value>().await.map(drop).map_err(unreachable) })
                .await
        } else {
            bounded(self.response_timeout, async { sink.subscribe(&channel).await.map_err(unreachable) }).await
        };
        if let Err(e) = synced {
            self.lost("no answer to SUBSCRIBE or PING");
            return Err(e);
        }
        self.drain();
        self.subscribers.entry(channel).or_default().push((id, sender));
        Ok(())
    }

    /// Delivers the messages already read off the connection before a new subscriber joins.
    ///
    /// Redis answered the `SUBSCRIBE` or `PING` after sending every message published before it,
    /// and the pub/sub connection queues messages in the order it reads them, so those messages
    /// are all queued by now: handing them out first keeps a new subscriber from seeing a message
    /// published before it subscribed (say, one still queued for the channel's other subscribers).
    fn drain(&mut self) {
        for _ in 0..MAX_DRAIN {
            let Some(connection) = self.connection.as_mut() else { return };
            match poll_once(connection.stream.next()) {
                Some(Some(message)) => self.fan_out(&message),
                Some(None) => return self.lost("the pub/sub connection closed"),
                None => return,
            }
        }
    }

    async fn unsubscribe(&mut self, channel: &str, id: u64) {
        let Some(subscribers) = self.subscribers.get_mut(channel) else { return };
        subscribers.retain(|(sid, _)| *sid != id);
        if !subscribers.is_empty() {
            return;
        }
        self.subscribers.remove(channel);
        if self.subscribers.is_empty() {
            self.reconnect_at = None;
        }
        let Some(connection) = self.connection.as_mut() else { return };
        let sink = &mut connection.sink;
        let unsubscribed =
            bounded(self.response_timeout, async { sink.unsubscribe(channel).await.map_err(unreachable) }).await;
        if unsubscribed.is_err() {
            self.lost("UNSUBSCRIBE failed");
        }
    }

    /// Hands a message to every subscriber of its channel without waiting: a full queue loses
    /// this message for that subscriber only.
    fn fan_out(&mut self, message: &Msg) {
        let Some(subscribers) = self.subscribers.get(message.get_channel_name()) else { return };
        let payload = message.get_payload_bytes();
        for (_, sender) in subscribers {
            // Full: a slow subscriber misses it. Closed: its `Unsubscribe` is on its way.
            let _ = sender.try_send(payload.to_vec());
        }
    }

    async fn health_check(&mut self) {
        let Some(connection) = self.connection.as_mut() else { return };
        let sink = &mut connection.sink;
        let pinged =
            bounded(self.response_timeout, async { sink.ping::<redis::Value>().await.map_err(unreachable) }).await;
        if pinged.is_err() {
            self.lost("no answer to PING");
        }
    }
}

/// Polls a future once: `Some(output)` if it is ready now, `None` if it would wait.
fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let future = std::pin::pin!(future);
    match future.poll(&mut Context::from_waker(std::task::Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_to_what_redis_accepts() {
        assert_eq!(ttl_millis(Duration::ZERO), 1, "PX 0 is refused; the shortest TTL is 1 ms");
        assert_eq!(ttl_millis(Duration::from_micros(1500)), 1);
        assert_eq!(ttl_millis(Duration::from_secs(600)), 600_000);
        assert_eq!(ttl_millis(Duration::MAX), 1 << 45, "a huge TTL is capped, not an error");
    }

    #[test]
    fn the_default_prefix_and_timeouts() {
        let config = RedisCacheConfig::default();
        assert_eq!(config.key_prefix, "cap:");
        assert!(config.connect_timeout + config.response_timeout <= Duration::from_secs(5));
        assert!(config.channel_capacity >= 20, "the conformance suite publishes 20 before reading");
    }

    #[tokio::test]
    async fn tls_urls_are_refused_naming_the_build() {
        let e = RedisCache::connect("rediss://127.0.0.1:6380", RedisCacheConfig::default()).await.unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e:?}");
        assert!(e.to_string().contains("TLS"), "{e}");
        let e = RedisCache::connect("http://127.0.0.1:6379", RedisCacheConfig::default()).await.unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e:?}");
    }
}
