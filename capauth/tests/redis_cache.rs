//! `RedisCache` against real Redis: the cache conformance suite on the Redis at
//! `CAP_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`), and what only Redis has: prefixes,
//! unreachable and hung servers, recovery after a restart, two caches sharing one Redis.
//!
//! Without a reachable Redis (or, for the restart tests, a `redis-server` binary) each test prints
//! a `skipped: ...` line and passes, unless `CAP_TEST_REQUIRE=1`, which turns that into a failure.
#![cfg(feature = "redis")]

use capauth::{RedisCache, RedisCacheConfig};
use capcore::Error;
use capcore::backend::{Cache, Subscription};
use capcore::conformance::{services_required, unique_suffix};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;

const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

fn shared_redis_url() -> String {
    std::env::var("CAP_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_string())
}

/// A prefix no other test (or test run) uses.
fn unique_prefix() -> String {
    format!("cap-test:{}:", unique_suffix())
}

/// Fails the test when services are required, otherwise prints why it is skipped.
fn skip(test: &str, why: &str) {
    assert!(!services_required(), "{test}: {why}, and CAP_TEST_REQUIRE=1 requires it");
    eprintln!("skipped: {test}: {why} (set CAP_TEST_REQUIRE=1 to fail instead)");
}

/// A cache on the shared Redis with its own prefix, or `None` (after [`skip`]) when there is none.
async fn shared_cache_or_skip(test: &str, prefix: &str) -> Option<RedisCache> {
    let url = shared_redis_url();
    let config = RedisCacheConfig { key_prefix: prefix.to_string(), ..RedisCacheConfig::default() };
    match RedisCache::connect(&url, config).await {
        Ok(cache) => {
            sweep_permanent_test_keys(&url).await;
            Some(cache)
        }
        Err(e) => {
            skip(test, &format!("no Redis at {url} ({e})"));
            None
        }
    }
}

/// The conformance suite leaves a few keys without a TTL; give earlier runs' `cap-test:` keys
/// ten minutes so a developer's Redis does not collect them (once per test process).
async fn sweep_permanent_test_keys(url: &str) {
    static SWEPT: AtomicBool = AtomicBool::new(false);
    if SWEPT.swap(true, Ordering::SeqCst) {
        return;
    }
    let mut redis = raw_connection(url).await;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("cap-test:*")
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut redis)
            .await
            .unwrap();
        for key in keys {
            // `NX`: only keys without any TTL, so a running test's TTL is never replaced. Redis
            // before 7.0 has no `NX` and refuses; its keys are then left alone.
            let _: redis::RedisResult<i64> =
                redis::cmd("EXPIRE").arg(&key).arg(600).arg("NX").query_async(&mut redis).await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// A plain connection, to look at what `RedisCache` wrote.
async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

/// Polls `check` every 25 ms until it gives `Some`, panicking past `within`.
async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, within: Duration, mut check: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn next_message(subscription: &mut Subscription, what: &str) -> Vec<u8> {
    match tokio::time::timeout(Duration::from_secs(5), subscription.next()).await {
        Ok(Some(message)) => message,
        Ok(None) => panic!("{what}: the subscription ended"),
        Err(_) => panic!("{what}: no message within 5s"),
    }
}

fn assert_unavailable<T: std::fmt::Debug>(what: &str, outcome: capcore::Result<T>) {
    match outcome {
        Err(e @ Error::Unavailable { .. }) => {
            assert!(e.to_string().starts_with("the cache (redis) is unreachable"), "{what}: {e}")
        }
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The conformance suite
// ---------------------------------------------------------------------------------------------

mod conformance {
    use super::*;

    /// A cache on the shared Redis with a fresh prefix, so the tests never see each other.
    async fn redis_cache() -> Option<Arc<dyn Cache>> {
        let url = shared_redis_url();
        let config = RedisCacheConfig { key_prefix: unique_prefix(), ..RedisCacheConfig::default() };
        match RedisCache::connect(&url, config).await {
            Ok(cache) => {
                sweep_permanent_test_keys(&url).await;
                Some(Arc::new(cache))
            }
            Err(e) => {
                eprintln!("no Redis at {url}: {e}");
                None
            }
        }
    }

    capcore::cache_conformance_tests!(redis_cache, "redis");
}

// ---------------------------------------------------------------------------------------------
// On the shared Redis
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_channels_carry_the_prefix_and_ttls_reach_redis() {
    let test = "keys_and_channels_carry_the_prefix_and_ttls_reach_redis";
    let prefix = unique_prefix();
    let Some(cache) = shared_cache_or_skip(test, &prefix).await else { return };
    assert_eq!(cache.key_prefix(), prefix);
    assert_eq!(cache.backend_name(), "redis");
    let mut redis = raw_connection(&shared_redis_url()).await;

    cache.set("session", b"abc", Some(Duration::from_secs(60))).await.unwrap();
    let raw: Option<Vec<u8>> = redis::cmd("GET").arg(format!("{prefix}session")).query_async(&mut redis).await.unwrap();
    assert_eq!(raw.as_deref(), Some(&b"abc"[..]));
    let pttl: i64 = redis::cmd("PTTL").arg(format!("{prefix}session")).query_async(&mut redis).await.unwrap();
    assert!((59_000..=60_000).contains(&pttl), "set with a TTL of 60 s left PTTL {pttl}");

    assert_eq!(cache.incr("window", 3, Duration::from_secs(30)).await.unwrap(), 3);
    let pttl: i64 = redis::cmd("PTTL").arg(format!("{prefix}window")).query_async(&mut redis).await.unwrap();
    assert!((29_000..=30_000).contains(&pttl), "a new counter gets its TTL: PTTL {pttl}");

    let mut subscription = cache.subscribe("events").await.unwrap();
    let receivers: i64 =
        redis::cmd("PUBLISH").arg(format!("{prefix}events")).arg("from outside").query_async(&mut redis).await.unwrap();
    assert_eq!(receivers, 1);
    assert_eq!(next_message(&mut subscription, "prefixed channel").await, b"from outside");

    for key in ["session", "window"] {
        cache.delete(key).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incr_of_a_value_that_is_not_an_integer_is_a_conflict() {
    let Some(cache) =
        shared_cache_or_skip("incr_of_a_value_that_is_not_an_integer_is_a_conflict", &unique_prefix()).await
    else {
        return;
    };
    cache.set("text", b"not a number", None).await.unwrap();
    match cache.incr("text", 1, Duration::from_secs(60)).await {
        Err(e @ Error::Conflict { .. }) => assert_eq!(e.to_string(), "cache key `text` does not hold an integer"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(cache.get("text").await.unwrap().as_deref(), Some(&b"not a number"[..]), "the value is untouched");
    cache.set("big", i64::MAX.to_string().as_bytes(), None).await.unwrap();
    assert!(matches!(cache.incr("big", 1, Duration::from_secs(60)).await, Err(Error::Conflict { .. })), "overflow");
    cache.delete("text").await.unwrap();
    cache.delete("big").await.unwrap();
}

/// Many local subscriptions of one channel share one Redis subscription, which ends with the last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_subscriptions_unsubscribe_redis() {
    let prefix = unique_prefix();
    let Some(cache) = shared_cache_or_skip("dropped_subscriptions_unsubscribe_redis", &prefix).await else { return };
    let mut redis = raw_connection(&shared_redis_url()).await;
    let channel = format!("{prefix}console");
    let count_redis_subscribers = || {
        let (mut redis, channel) = (redis.clone(), channel.clone());
        async move {
            let (_, n): (String, i64) =
                redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel).query_async(&mut redis).await.unwrap();
            n
        }
    };

    let first = cache.subscribe("console").await.unwrap();
    let second = cache.subscribe("console").await.unwrap();
    assert_eq!(count_redis_subscribers().await, 1, "one Redis subscription for both");
    drop(first);
    let mut third = cache.subscribe("console").await.unwrap();
    assert_eq!(count_redis_subscribers().await, 1, "still subscribed for the others");
    cache.publish("console", b"to second and third").await.unwrap();
    assert_eq!(next_message(&mut third, "third").await, b"to second and third");
    drop((second, third));
    eventually("Redis no longer sends the channel to this cache", Duration::from_secs(5), || async {
        (count_redis_subscribers().await == 0).then_some(())
    })
    .await;
    let _: () = redis::cmd("PING").query_async(&mut redis).await.unwrap();
}

/// What lets two panels share sessions, rate limits and console fan-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_caches_on_one_redis_share_values_counters_and_messages() {
    let test = "two_caches_on_one_redis_share_values_counters_and_messages";
    let prefix = unique_prefix();
    let Some(panel_a) = shared_cache_or_skip(test, &prefix).await else { return };
    let Some(panel_b) = shared_cache_or_skip(test, &prefix).await else { return };
    let Some(other_deployment) = shared_cache_or_skip(test, &unique_prefix()).await else { return };

    panel_a.set("session:1", b"ada", Some(Duration::from_secs(60))).await.unwrap();
    assert_eq!(panel_b.get("session:1").await.unwrap().as_deref(), Some(&b"ada"[..]), "b sees a's value");
    assert_eq!(other_deployment.get("session:1").await.unwrap(), None, "another prefix does not");
    assert!(panel_b.delete("session:1").await.unwrap());
    assert_eq!(panel_a.get("session:1").await.unwrap(), None, "a sees b's delete");

    assert_eq!(panel_a.incr("login:ip", 1, Duration::from_secs(60)).await.unwrap(), 1);
    assert_eq!(panel_b.incr("login:ip", 1, Duration::from_secs(60)).await.unwrap(), 2, "one counter for both");
    assert_eq!(other_deployment.incr("login:ip", 1, Duration::from_secs(60)).await.unwrap(), 1);

    let mut on_a = panel_a.subscribe("console:7").await.unwrap();
    let mut on_b = panel_b.subscribe("console:7").await.unwrap();
    let mut elsewhere = other_deployment.subscribe("console:7").await.unwrap();
    panel_b.publish("console:7", b"from b").await.unwrap();
    panel_a.publish("console:7", b"from a").await.unwrap();
    for (subscription, name) in [(&mut on_a, "a"), (&mut on_b, "b")] {
        assert_eq!(next_message(subscription, name).await, b"from b", "{name} gets b's message");
        assert_eq!(next_message(subscription, name).await, b"from a", "{name} gets a's message");
    }
    other_deployment.publish("console:7", b"marker").await.unwrap();
    assert_eq!(next_message(&mut elsewhere, "other prefix").await, b"marker", "nothing crossed the prefixes");

    for cache in [&panel_a, &other_deployment] {
        cache.delete("login:ip").await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Unreachable, hung and restarted servers
// ---------------------------------------------------------------------------------------------

/// Short timeouts, so the tests of failures are quick.
fn impatient(prefix: &str) -> RedisCacheConfig {
    RedisCacheConfig {
        key_prefix: prefix.to_string(),
        connect_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_millis(500),
        ..RedisCacheConfig::default()
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on (just released by the OS).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_unavailable_at_once() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let outcome = RedisCache::connect(&url, RedisCacheConfig::default()).await;
    assert_unavailable("connect to a closed port", outcome);
    assert!(started.elapsed() < Duration::from_secs(2), "refused, yet took {:?}", started.elapsed());
}

/// A listener that accepts connections and never answers: only the timeouts end the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_unavailable_within_the_timeouts() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    let started = Instant::now();
    assert_unavailable("connect to a silent server", RedisCache::connect(&url, impatient("x:")).await);
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?} for timeouts of 2 × 500 ms", started.elapsed());
    drop(silent);
}

/// A `redis-server` of the test's own on a free port, killed when dropped.
struct PrivateRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts one, or `None` (after [`skip`]) when there is no `redis-server` to run.
    fn start(test: &str) -> Option<PrivateRedis> {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("redis-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = PrivateRedis { port: free_port(), dir, child: None };
        match redis.spawn() {
            Ok(()) => Some(redis),
            Err(e) => {
                skip(test, &format!("cannot run redis-server ({e})"));
                None
            }
        }
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> String {
        self.child.as_ref().expect("running").id().to_string()
    }

    /// Kills it and waits until it is gone.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal (`STOP`, `CONT`) to it.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid()).status().unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// Connects once it accepts connections (it needs a moment after starting).
    async fn connect(&self, prefix: &str) -> RedisCache {
        let url = self.url();
        let url = &url;
        eventually("the private redis-server accepts connections", Duration::from_secs(10), || async move {
            RedisCache::connect(url, impatient(prefix)).await.ok()
        })
        .await
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Calls every method once and asserts each is `Unavailable`, none slower than `within`.
async fn assert_every_method_unavailable(cache: &RedisCache, within: Duration) {
    macro_rules! check {
        ($what:literal, $call:expr) => {{
            let started = Instant::now();
            let outcome = $call.await;
            assert!(started.elapsed() < within, "{} took {:?}", $what, started.elapsed());
            assert_unavailable($what, outcome);
        }};
    }
    check!("get", cache.get("k"));
    check!("set", cache.set("k", b"v", None));
    check!("set with ttl", cache.set("k", b"v", Some(Duration::from_secs(5))));
    check!("delete", cache.delete("k"));
    check!("incr", cache.incr("n", 1, Duration::from_secs(5)));
    check!("publish", cache.publish("c", b"m"));
    check!("subscribe", async { cache.subscribe("new channel").await.map(|_| "a subscription") });
    check!("ping", cache.ping());
}

/// Polls until `subscription` gets a message published now, which proves it is live again.
async fn until_delivered(cache: &RedisCache, subscription: &mut Subscription, channel: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if cache.publish(channel, b"ping").await.is_ok()
            && let Ok(message) = tokio::time::timeout(Duration::from_millis(100), subscription.next()).await
        {
            assert!(message.is_some(), "the subscription ended instead of resubscribing");
            return;
        }
        assert!(Instant::now() < deadline, "the subscription does not receive again within 10s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_is_unavailable_within_the_timeouts_and_works_again_when_it_resumes() {
    let Some(server) = PrivateRedis::start("a_stopped_redis_is_unavailable_...") else { return };
    let cache = server.connect("stopped:").await;
    cache.set("kept", b"before", None).await.unwrap();
    let mut subscription = cache.subscribe("events").await.unwrap();

    server.signal("STOP");
    // Each call waits at most connect + response timeout (1 s); the margin is for a slow machine.
    assert_every_method_unavailable(&cache, Duration::from_secs(3)).await;
    server.signal("CONT");

    let cache_ref = &cache;
    eventually("commands work again", Duration::from_secs(10), || async move { cache_ref.ping().await.ok() }).await;
    assert_eq!(cache.get("kept").await.unwrap().as_deref(), Some(&b"before"[..]), "the same server, the same data");
    until_delivered(&cache, &mut subscription, "events").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_restart_the_same_cache_and_its_subscriptions_work_again() {
    let Some(mut server) = PrivateRedis::start("after_a_redis_restart_...") else { return };
    let cache = server.connect("restart:").await;
    cache.set("k", b"before", None).await.unwrap();
    let mut subscription = cache.subscribe("events").await.unwrap();
    cache.publish("events", b"before").await.unwrap();
    assert_eq!(next_message(&mut subscription, "before the restart").await, b"before");

    server.kill();
    // Refused connections fail at once; the bound only guards against a hang.
    assert_every_method_unavailable(&cache, Duration::from_secs(2)).await;

    server.spawn().unwrap();
    let cache_ref = &cache;
    eventually("the same cache works again", Duration::from_secs(10), || async move { cache_ref.ping().await.ok() })
        .await;
    assert_eq!(cache.get("k").await.unwrap(), None, "a restarted server without persistence is empty");
    cache.set("k", b"after", Some(Duration::from_secs(60))).await.unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"after"[..]));
    assert_eq!(cache.incr("n", 2, Duration::from_secs(60)).await.unwrap(), 2);
    assert!(cache.delete("k").await.unwrap());

    // The subscription made before the restart was resubscribed by the hub.
    until_delivered(&cache, &mut subscription, "events").await;
    let mut fresh = cache.subscribe("events").await.unwrap();
    cache.publish("events", b"to both").await.unwrap();
    assert_eq!(next_message(&mut fresh, "a new subscription").await, b"to both");
    loop {
        // The old one may still hold "ping"s from the polling above; "to both" follows them.
        if next_message(&mut subscription, "the resubscribed subscription").await == b"to both" {
            break;
        }
    }

    // One connection for commands and one for pub/sub, however many subscriptions; dropping the
    // cache and its subscriptions closes both.
    let raw = raw_connection(&server.url()).await;
    let connected_clients = || {
        let mut raw = raw.clone();
        async move {
            let info: String = redis::cmd("INFO").arg("clients").query_async(&mut raw).await.unwrap();
            let clients = info.lines().find_map(|line| line.strip_prefix("connected_clients:")).unwrap();
            clients.trim().parse::<u32>().unwrap()
        }
    };
    assert_eq!(connected_clients().await, 3, "this raw one, the cache's command and pub/sub connections");
    drop((subscription, fresh, cache));
    eventually("the dropped cache's connections are closed", Duration::from_secs(10), || async {
        (connected_clients().await == 1).then_some(())
    })
    .await;
}
