//! What several of capdb's test binaries share: fresh databases on the real servers, named
//! `cap_test_<pid>_<n>`, and the clean-up of those left by test processes that are gone.
#![allow(dead_code)]

#[cfg(feature = "mongodb")]
pub mod mongodb;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Every database these tests create starts with this, then the pid of the test process.
pub const PREFIX: &str = "cap_test_";

/// A database name of this process's own.
pub fn fresh_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{PREFIX}{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// `url` pointing at database `name` instead (any query string is kept).
pub fn url_of(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// `None` after a skip line, or a panic under `CAP_TEST_REQUIRE=1`, for a server that cannot be
/// reached.
pub fn unreachable<T>(what: &str, variable: &str, url: &str, error: impl std::fmt::Display) -> Option<T> {
    let message = format!("{what} at `{url}` ({variable}) is not reachable: {error}");
    if capcore::conformance::services_required() {
        panic!("{message}; CAP_TEST_REQUIRE=1 requires it");
    }
    eprintln!("skipped: {message}");
    None
}

/// Of `names`, the test databases of processes that are gone, the first time this process
/// asks (later calls, and machines without /proc, get nothing), so runs do not pile up databases.
pub fn of_finished_runs(names: Vec<String>) -> Vec<String> {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::SeqCst) || !std::path::Path::new("/proc/self").exists() {
        return Vec::new();
    }
    names
        .into_iter()
        .filter(|name| {
            let pid = name.strip_prefix(PREFIX).and_then(|rest| rest.split('_').next()?.parse::<u32>().ok());
            pid.is_some_and(|pid| pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect()
}
