//! The public conformance suites that every `Database` and `Cache` backend runs, so all backends
//! behave alike, an embedder's own included.
//!
//! Each suite is a list of `pub async fn`s, one per behaviour of the trait's `# Contract`, and a
//! macro that stamps one `#[tokio::test]` per behaviour for a backend:
//!
//! ```text
//! async fn sqlite_database() -> Option<Arc<dyn Database>> { /* a fresh, migrated, empty store */ }
//! capcore::database_conformance_tests!(sqlite_database);
//!
//! async fn redis_cache() -> Option<Arc<dyn Cache>> { /* None when CAP_TEST_REDIS_URL is unset */ }
//! capcore::cache_conformance_tests!(redis_cache, "redis");
//! ```
//!
//! A factory returns `None` when its service is not configured or not reachable. The stamped test
//! then prints a skip line and passes, unless `CAP_TEST_REQUIRE=1` (set by CI), in which case it
//! fails naming the backend: a missing service must not turn into a green run.
//!
//! The calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as a dev-dependency.

pub mod cache;
pub mod database;

/// The environment variable that turns a skipped backend into a failure.
pub const REQUIRE_SERVICES_ENV: &str = "CAP_TEST_REQUIRE";

/// Whether `CAP_TEST_REQUIRE` asks for every configured backend to be present (`1` or `true`).
pub fn services_required() -> bool {
    matches!(std::env::var(REQUIRE_SERVICES_ENV).as_deref(), Ok("1") | Ok("true"))
}

/// What a test does when the factory of `backend` returned `None`: panics naming the backend when
/// `CAP_TEST_REQUIRE=1`, otherwise prints a skip line so the test passes visibly empty-handed.
pub fn require_or_skip(backend: &str, behaviour: &str) {
    match skip_line_or_failure(backend, behaviour, services_required()) {
        Ok(skip_line) => eprintln!("{skip_line}"),
        Err(failure) => panic!("{failure}"),
    }
}

/// The decision of [`require_or_skip`], without the side effects: `Ok(skip line)` or `Err(failure)`.
fn skip_line_or_failure(backend: &str, behaviour: &str, required: bool) -> Result<String, String> {
    if required {
        return Err(format!(
            "backend `{backend}` is not configured or not reachable, and {REQUIRE_SERVICES_ENV}=1 requires it \
             (conformance test `{behaviour}`)"
        ));
    }
    Ok(format!(
        "skipping conformance test `{behaviour}`: backend `{backend}` is not configured or not reachable \
         (set {REQUIRE_SERVICES_ENV}=1 to fail instead)"
    ))
}

/// Passes a made backend through; on `None` calls [`require_or_skip`] and returns `None`.
pub fn backend_or_skip<T>(backend: &str, behaviour: &str, made: Option<T>) -> Option<T> {
    if made.is_none() {
        require_or_skip(backend, behaviour);
    }
    made
}

/// A short random suffix, so names and keys from concurrent tests (or concurrent runs against one
/// shared service) never collide.
pub fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// Stamps one multi-threaded `#[tokio::test]` per behaviour of a suite; used by the suite macros.
#[doc(hidden)]
#[macro_export]
macro_rules! __stamp_conformance_tests {
    ($suite:ident, $factory:path, $label:expr, [$($behaviour:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $behaviour() {
                let made = $factory().await;
                if let Some(backend) = $crate::conformance::backend_or_skip($label, stringify!($behaviour), made) {
                    $crate::conformance::$suite::$behaviour(backend).await;
                }
            }
        )*
    };
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The `pub async fn` names in a suite's source.
    fn behaviour_fns(source: &str) -> BTreeSet<String> {
        source
            .lines()
            .filter_map(|line| line.strip_prefix("pub async fn "))
            .map(|rest| rest.split('(').next().unwrap_or_default().trim().to_string())
            .collect()
    }

    /// The names the suite's macro stamps: the bracketed list in its `__stamp_conformance_tests!`
    /// call, whose first argument must name the suite.
    fn stamped_names(source: &str, suite: &str) -> BTreeSet<String> {
        let marker = "__stamp_conformance_tests!(";
        let start = source.find(marker).expect("the suite's macro stamps through __stamp_conformance_tests!");
        let call = &source[start + marker.len()..];
        assert!(call.trim_start().starts_with(&format!("{suite},")), "the stamp call names suite `{suite}`");
        let open = call.find('[').unwrap();
        let close = call.find(']').unwrap();
        call[open + 1..close].split(',').map(str::trim).filter(|name| !name.is_empty()).map(str::to_string).collect()
    }

    #[test]
    fn database_macro_stamps_every_behaviour_and_nothing_else() {
        let source = include_str!("database.rs");
        let fns = behaviour_fns(source);
        assert!(fns.len() > 50, "found only {} behaviours", fns.len());
        assert_eq!(stamped_names(source, "database"), fns);
    }

    #[test]
    fn cache_macro_stamps_every_behaviour_and_nothing_else() {
        let source = include_str!("cache.rs");
        let fns = behaviour_fns(source);
        assert!(fns.len() > 5, "found only {} behaviours", fns.len());
        assert_eq!(stamped_names(source, "cache"), fns);
    }

    #[test]
    fn a_made_backend_passes_through() {
        assert_eq!(super::backend_or_skip("memory", "some_behaviour", Some(7)), Some(7));
    }

    #[test]
    fn a_missing_backend_fails_naming_it_when_required_and_skips_otherwise() {
        let failure = super::skip_line_or_failure("postgres", "users_count_counts_every_user", true).unwrap_err();
        assert!(failure.contains("backend `postgres`"), "{failure}");
        assert!(failure.contains("CAP_TEST_REQUIRE=1"), "{failure}");
        let skip_line = super::skip_line_or_failure("postgres", "users_count_counts_every_user", false).unwrap();
        assert!(skip_line.starts_with("skipping conformance test `users_count_counts_every_user`"), "{skip_line}");
        assert!(skip_line.contains("backend `postgres`"), "{skip_line}");
    }

    #[test]
    fn unique_suffixes_differ() {
        assert_ne!(super::unique_suffix(), super::unique_suffix());
        assert_eq!(super::unique_suffix().len(), 12);
    }
}
