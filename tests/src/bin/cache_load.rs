//! Load driver for the cache operations of a session check: `get` of a 200-byte value and `incr`
//! of a counter with a TTL, on `MemoryCache` and on `RedisCache`, each from N concurrent tasks
//! for a fixed time; prints operations per second and p50/p99 latency.
//!
//! `cargo run --release -p cap-tests --bin cache_load -- [--secs 3] [--tasks 16] [--redis-url redis://127.0.0.1:6379]`
//!
//! The Redis URL defaults to `CAP_TEST_REDIS_URL`, then `redis://127.0.0.1:6379`; without a Redis
//! only the memory figures are printed.

use capauth::{MemoryCache, RedisCache, RedisCacheConfig};
use capcore::backend::Cache;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    secs: u64,
    tasks: usize,
    redis_url: String,
}

fn args() -> Args {
    let redis_url = std::env::var("CAP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut a = Args { secs: 3, tasks: 16, redis_url };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--secs" => a.secs = value.parse().expect("--secs"),
            "--tasks" => a.tasks = value.parse().expect("--tasks"),
            "--redis-url" => a.redis_url = value,
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

#[derive(Clone, Copy, Debug)]
enum Operation {
    /// `get` of the 200-byte session value every task shares.
    Get,
    /// `incr` of the task's own counter (a rate-limit window).
    Incr,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs `operation` from `tasks` tasks for `secs`; returns every call's latency.
async fn drive(cache: Arc<dyn Cache>, operation: Operation, tasks: usize, secs: u64) -> Vec<Duration> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let workers = (0..tasks).map(|task| {
        let cache = cache.clone();
        tokio::spawn(async move {
            let counter = format!("load:counter:{task}");
            let mut latencies = Vec::with_capacity(100_000);
            while Instant::now() < deadline {
                let started = Instant::now();
                match operation {
                    Operation::Get => {
                        let value = cache.get("load:session").await.expect("get");
                        assert_eq!(value.map(|v| v.len()), Some(200));
                    }
                    Operation::Incr => {
                        cache.incr(&counter, 1, Duration::from_secs(600)).await.expect("incr");
                    }
                }
                latencies.push(started.elapsed());
            }
            latencies
        })
    });
    let mut all = Vec::new();
    for worker in workers.collect::<Vec<_>>() {
        all.extend(worker.await.expect("worker"));
    }
    all.sort_unstable();
    all
}

async fn measure(name: &str, cache: Arc<dyn Cache>, a: &Args) {
    cache.set("load:session", &[b's'; 200], Some(Duration::from_secs(600))).await.expect("set");
    for operation in [Operation::Get, Operation::Incr] {
        let latencies = drive(cache.clone(), operation, a.tasks, a.secs).await;
        let what = match operation {
            Operation::Get => "get 200 B",
            Operation::Incr => "incr     ",
        };
        println!(
            "{name:<6} {what} ({} tasks, {} s): {:>9.0} ops/s  p50 {:>6.1} us  p99 {:>6.1} us",
            a.tasks,
            a.secs,
            latencies.len() as f64 / a.secs as f64,
            percentile(&latencies, 0.50).as_secs_f64() * 1e6,
            percentile(&latencies, 0.99).as_secs_f64() * 1e6,
        );
    }
    cache.delete("load:session").await.expect("delete");
    for task in 0..a.tasks {
        cache.delete(&format!("load:counter:{task}")).await.expect("delete");
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    measure("memory", Arc::new(MemoryCache::default()), &a).await;
    let prefix = format!("cap-load:{}:", std::process::id());
    let config = RedisCacheConfig { key_prefix: prefix, ..RedisCacheConfig::default() };
    match RedisCache::connect(&a.redis_url, config).await {
        Ok(redis) => measure("redis", Arc::new(redis), &a).await,
        Err(e) => println!("redis: not measured: {e}"),
    }
}
