//! The `Cache` conformance suite, so every backend keeps the trait's Contract: a `pub async fn` per
//! behaviour, and the macro that stamps them as tests for a backend.
//!
//! Every key and channel carries a random suffix, so several tests (or several runs) sharing one
//! Redis never see each other's data. TTL behaviours wait on the real clock, with short TTLs and
//! a bounded poll rather than one fixed sleep.
//!
//! Run it against a backend with [`cache_conformance_tests!`](crate::cache_conformance_tests).

use crate::backend::{Cache, CacheExt, Subscription};
use crate::conformance::unique_suffix;
use futures::StreamExt;
use futures::future::join_all;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Barrier;

/// Stamps one `#[tokio::test]` per behaviour of [`crate::conformance::cache`] for a backend.
///
/// `$factory` is a path to an `async fn() -> Option<Arc<dyn Cache>>` (`None` when the service is
/// not configured); the optional second argument names the backend in skip lines and failures.
/// Invoke it inside a module of its own, since it defines one test fn per behaviour.
#[macro_export]
macro_rules! cache_conformance_tests {
    ($factory:path) => {
        $crate::cache_conformance_tests!($factory, stringify!($factory));
    };
    ($factory:path, $label:expr) => {
        $crate::__stamp_conformance_tests!(
            cache,
            $factory,
            $label,
            [
                cache_ping_and_backend_name,
                cache_get_of_a_missing_key_is_none,
                cache_set_then_get_returns_the_bytes,
                cache_set_replaces_the_value,
                cache_value_expires_after_its_ttl,
                cache_set_replaces_the_ttl_too,
                cache_delete_reports_whether_the_key_existed,
                cache_incr_starts_at_zero_and_adds,
                cache_incr_is_atomic_under_concurrency,
                cache_incr_sets_the_ttl_on_creation_only,
                cache_publish_reaches_every_subscriber_of_the_channel_in_order,
                cache_publish_does_not_reach_other_channels,
                cache_dropped_subscription_does_not_break_publishing,
                cache_publish_without_subscribers_is_ok,
                cache_slow_subscriber_does_not_block_the_publisher,
            ]
        );
    };
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// A TTL short enough to wait out, long enough that a set-then-get never races it.
const SHORT_TTL: Duration = Duration::from_millis(200);
/// How long a TTL may overrun before the suite calls it broken (Redis expires lazily and in a
/// background sweep; a loaded CI machine is slow).
const EXPIRY_DEADLINE: Duration = Duration::from_secs(5);
/// How long to wait for a published message before calling it lost.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(5);
const LONG_TTL: Duration = Duration::from_secs(600);

/// A key no other test uses.
fn key(stem: &str) -> String {
    format!("cap-conformance:{stem}:{}", unique_suffix())
}

/// A channel no other test uses.
fn channel(stem: &str) -> String {
    format!("cap-conformance.{stem}.{}", unique_suffix())
}

/// Polls `get` until the key is gone, returning how long that took; panics past the deadline.
async fn wait_until_gone(cache: &dyn Cache, key: &str, set_at: Instant) -> Duration {
    let deadline = set_at + EXPIRY_DEADLINE;
    loop {
        if cache.get(key).await.unwrap().is_none() {
            return set_at.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "`{key}` still present {EXPIRY_DEADLINE:?} after it was set with a short TTL"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The next message of a subscription; panics if none arrives in time or the stream ended.
async fn next_message(subscription: &mut Subscription, what: &str) -> Vec<u8> {
    match tokio::time::timeout(DELIVERY_DEADLINE, subscription.next()).await {
        Ok(Some(message)) => message,
        Ok(None) => panic!("{what}: the subscription ended"),
        Err(_) => panic!("{what}: no message within {DELIVERY_DEADLINE:?}"),
    }
}

/// Receives until `marker` arrives, returning everything before it.
async fn messages_until(subscription: &mut Subscription, marker: &[u8], what: &str) -> Vec<Vec<u8>> {
    let mut received = Vec::new();
    loop {
        let message = next_message(subscription, what).await;
        if message == marker {
            return received;
        }
        received.push(message);
    }
}

// ---------------------------------------------------------------------------------------------
// Key-value
// ---------------------------------------------------------------------------------------------

pub async fn cache_ping_and_backend_name(cache: Arc<dyn Cache>) {
    cache.ping().await.unwrap();
    assert!(!cache.backend_name().is_empty());
}

pub async fn cache_get_of_a_missing_key_is_none(cache: Arc<dyn Cache>) {
    assert_eq!(cache.get(&key("missing")).await.unwrap(), None);
    assert!(!cache.exists(&key("missing")).await.unwrap());
}

pub async fn cache_set_then_get_returns_the_bytes(cache: Arc<dyn Cache>) {
    let binary = key("binary");
    let value: Vec<u8> = vec![0, 1, 2, 0xff, 0xfe, b'\n', b'\r', 0];
    cache.set(&binary, &value, None).await.unwrap();
    assert_eq!(cache.get(&binary).await.unwrap(), Some(value), "arbitrary bytes survive, zeros included");

    let text = key("text");
    cache.set(&text, "héllo ✓".as_bytes(), Some(LONG_TTL)).await.unwrap();
    assert_eq!(cache.get_string(&text).await.unwrap().as_deref(), Some("héllo ✓"));

    let empty = key("empty");
    cache.set(&empty, b"", None).await.unwrap();
    assert_eq!(cache.get(&empty).await.unwrap(), Some(Vec::new()), "an empty value is present, not missing");
    assert!(cache.exists(&empty).await.unwrap());
}

pub async fn cache_set_replaces_the_value(cache: Arc<dyn Cache>) {
    let key = key("replace");
    cache.set(&key, b"first", None).await.unwrap();
    cache.set(&key, b"second, and longer", None).await.unwrap();
    assert_eq!(cache.get(&key).await.unwrap().as_deref(), Some(&b"second, and longer"[..]));
    cache.set(&key, b"3", None).await.unwrap();
    assert_eq!(cache.get(&key).await.unwrap().as_deref(), Some(&b"3"[..]), "a shorter value leaves no tail");
}

pub async fn cache_value_expires_after_its_ttl(cache: Arc<dyn Cache>) {
    let short = key("short");
    let kept = key("kept");
    let set_at = Instant::now();
    cache.set(&short, b"fleeting", Some(SHORT_TTL)).await.unwrap();
    cache.set(&kept, b"lasting", Some(LONG_TTL)).await.unwrap();
    if set_at.elapsed() < SHORT_TTL / 2 {
        assert!(cache.get(&short).await.unwrap().is_some(), "present right after set");
    }
    let gone_after = wait_until_gone(&*cache, &short, set_at).await;
    assert!(gone_after >= SHORT_TTL, "expired after {gone_after:?}, before its TTL of {SHORT_TTL:?}");
    assert_eq!(cache.get(&kept).await.unwrap().as_deref(), Some(&b"lasting"[..]), "a longer TTL is unaffected");
}

pub async fn cache_set_replaces_the_ttl_too(cache: Arc<dyn Cache>) {
    // A short TTL replaced by none: the key outlives the short TTL.
    let made_permanent = key("made-permanent");
    let first_set_at = Instant::now();
    cache.set(&made_permanent, b"v1", Some(SHORT_TTL)).await.unwrap();
    cache.set(&made_permanent, b"v2", None).await.unwrap();
    // None replaced by a short TTL: the key expires.
    let made_fleeting = key("made-fleeting");
    cache.set(&made_fleeting, b"v1", None).await.unwrap();
    let set_at = Instant::now();
    cache.set(&made_fleeting, b"v2", Some(SHORT_TTL)).await.unwrap();

    wait_until_gone(&*cache, &made_fleeting, set_at).await;
    // Well past the first TTL, so a TTL that survived the second set would have struck.
    let past_first_ttl = first_set_at + SHORT_TTL + SHORT_TTL / 2;
    tokio::time::sleep(past_first_ttl.saturating_duration_since(Instant::now())).await;
    assert_eq!(
        cache.get(&made_permanent).await.unwrap().as_deref(),
        Some(&b"v2"[..]),
        "a set without TTL clears the earlier TTL"
    );
    cache.delete(&made_permanent).await.unwrap();
}

pub async fn cache_delete_reports_whether_the_key_existed(cache: Arc<dyn Cache>) {
    let key = key("delete");
    cache.set(&key, b"x", None).await.unwrap();
    assert!(cache.delete(&key).await.unwrap(), "deleting a present key reports true");
    assert_eq!(cache.get(&key).await.unwrap(), None);
    assert!(!cache.delete(&key).await.unwrap(), "deleting it again reports false");
    assert!(!cache.delete(&self::key("never-set")).await.unwrap());
}

// ---------------------------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------------------------

pub async fn cache_incr_starts_at_zero_and_adds(cache: Arc<dyn Cache>) {
    let key = key("counter");
    assert_eq!(cache.incr(&key, 5, LONG_TTL).await.unwrap(), 5, "a missing key starts at 0");
    assert_eq!(cache.incr(&key, 1, LONG_TTL).await.unwrap(), 6);
    assert_eq!(cache.incr(&key, -2, LONG_TTL).await.unwrap(), 4, "a negative step decrements");
    assert_eq!(cache.incr(&key, 0, LONG_TTL).await.unwrap(), 4, "a zero step reads");
    assert!(cache.delete(&key).await.unwrap());
    assert_eq!(cache.incr(&key, 1, LONG_TTL).await.unwrap(), 1, "after delete it starts again at 0");
    cache.delete(&key).await.unwrap();
}

/// 50 concurrent increments by one: each sees a distinct value and the total is 50.
pub async fn cache_incr_is_atomic_under_concurrency(cache: Arc<dyn Cache>) {
    const N_INCREMENTS: usize = 50;
    let key = key("concurrent-counter");
    let start = Arc::new(Barrier::new(N_INCREMENTS));
    let tasks = (0..N_INCREMENTS).map(|_| {
        let (cache, start, key) = (cache.clone(), start.clone(), key.clone());
        tokio::spawn(async move {
            start.wait().await;
            cache.incr(&key, 1, LONG_TTL).await.unwrap()
        })
    });
    let seen: BTreeSet<i64> = join_all(tasks).await.into_iter().map(|joined| joined.unwrap()).collect();
    assert_eq!(seen, (1..=N_INCREMENTS as i64).collect(), "every increment saw a distinct count");
    assert_eq!(cache.incr(&key, 0, LONG_TTL).await.unwrap(), N_INCREMENTS as i64);
    cache.delete(&key).await.unwrap();
}

/// A fixed window: later increments with a long TTL do not extend the TTL set at creation.
pub async fn cache_incr_sets_the_ttl_on_creation_only(cache: Arc<dyn Cache>) {
    let key = key("window");
    let created_at = Instant::now();
    assert_eq!(cache.incr(&key, 1, SHORT_TTL).await.unwrap(), 1);
    assert_eq!(cache.incr(&key, 1, LONG_TTL).await.unwrap(), 2, "the window is still open");

    // Reading with a zero step on an existing key must not extend its TTL either; once the key
    // is gone the same call recreates it at 0, which is how expiry shows.
    let deadline = created_at + EXPIRY_DEADLINE;
    loop {
        let count = cache.incr(&key, 0, LONG_TTL).await.unwrap();
        if count == 0 {
            break;
        }
        assert_eq!(count, 2);
        assert!(
            Instant::now() < deadline,
            "the counter outlived its creation TTL of {SHORT_TTL:?} by {EXPIRY_DEADLINE:?}: later increments extended it"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(created_at.elapsed() >= SHORT_TTL, "expired after {:?}, before its TTL", created_at.elapsed());
    assert_eq!(cache.incr(&key, 1, LONG_TTL).await.unwrap(), 1, "a new window starts at 0");
    cache.delete(&key).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Publish/subscribe
// ---------------------------------------------------------------------------------------------

/// Two subscribers of one channel each get every message, in publish order. The 20 messages
/// are published before either subscriber reads, so a backend must buffer at least that many.
pub async fn cache_publish_reaches_every_subscriber_of_the_channel_in_order(cache: Arc<dyn Cache>) {
    let channel = channel("console");
    let mut first = cache.subscribe(&channel).await.unwrap();
    let mut second = cache.subscribe(&channel).await.unwrap();
    let published: Vec<Vec<u8>> = (0..20).map(|i| format!("line {i}").into_bytes()).collect();
    for message in &published {
        cache.publish(&channel, message).await.unwrap();
    }
    for (subscription, name) in [(&mut first, "first subscriber"), (&mut second, "second subscriber")] {
        let mut received = Vec::new();
        for _ in 0..published.len() {
            received.push(next_message(subscription, name).await);
        }
        assert_eq!(received, published, "{name} gets every message in order");
    }
}

/// Messages stay on their channel, including one whose name extends another's.
pub async fn cache_publish_does_not_reach_other_channels(cache: Arc<dyn Cache>) {
    let base = channel("events");
    let longer = format!("{base}.more");
    let mut on_base = cache.subscribe(&base).await.unwrap();
    let mut on_longer = cache.subscribe(&longer).await.unwrap();

    cache.publish(&base, b"for base 1").await.unwrap();
    cache.publish(&longer, b"for longer").await.unwrap();
    cache.publish(&base, b"for base 2").await.unwrap();
    cache.publish(&base, b"end").await.unwrap();
    cache.publish(&longer, b"end").await.unwrap();

    assert_eq!(
        messages_until(&mut on_base, b"end", "base subscriber").await,
        vec![b"for base 1".to_vec(), b"for base 2".to_vec()]
    );
    assert_eq!(messages_until(&mut on_longer, b"end", "longer subscriber").await, vec![b"for longer".to_vec()]);
}

pub async fn cache_dropped_subscription_does_not_break_publishing(cache: Arc<dyn Cache>) {
    let channel = channel("dropped");
    let dropped = cache.subscribe(&channel).await.unwrap();
    let mut kept = cache.subscribe(&channel).await.unwrap();
    cache.publish(&channel, b"before").await.unwrap();
    drop(dropped);
    cache.publish(&channel, b"after").await.unwrap();
    assert_eq!(next_message(&mut kept, "kept subscriber").await, b"before");
    assert_eq!(next_message(&mut kept, "kept subscriber").await, b"after");

    drop(kept);
    cache.publish(&channel, b"to nobody").await.unwrap();
    let mut fresh = cache.subscribe(&channel).await.unwrap();
    cache.publish(&channel, b"fresh").await.unwrap();
    assert_eq!(
        next_message(&mut fresh, "a later subscriber").await,
        b"fresh",
        "only messages after subscribing arrive"
    );
}

pub async fn cache_publish_without_subscribers_is_ok(cache: Arc<dyn Cache>) {
    cache.publish(&channel("nobody-listens"), b"hello?").await.unwrap();
}

/// Delivery is at most once: a subscriber that never reads may lose messages but must not make
/// publishing wait.
pub async fn cache_slow_subscriber_does_not_block_the_publisher(cache: Arc<dyn Cache>) {
    const N_MESSAGES: usize = 2_000;
    let channel = channel("flood");
    let _never_read = cache.subscribe(&channel).await.unwrap();
    let payload = vec![b'x'; 1_024];
    let flood = async {
        for _ in 0..N_MESSAGES {
            cache.publish(&channel, &payload).await.unwrap();
        }
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(60), flood).await.is_ok(),
        "publishing {N_MESSAGES} messages to a subscriber that never reads did not finish"
    );
    let mut reader = cache.subscribe(&channel).await.unwrap();
    cache.publish(&channel, b"still flowing").await.unwrap();
    assert_eq!(next_message(&mut reader, "a reading subscriber").await, b"still flowing");
}
