//! A server's disk limit as the file manager enforces it: bytes in use, counted as writes
//! happen, and checked before a write crosses the limit.

use capcore::{Error, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes a server's directory uses and may use; clones share the count. A limit of 0 means no
/// limit (the count is still kept).
#[derive(Clone, Debug)]
pub struct DiskQuota(Arc<Counts>);

#[derive(Debug)]
struct Counts {
    limit_bytes: AtomicU64,
    used_bytes: AtomicU64,
}

impl DiskQuota {
    /// `used_bytes` in use now (as [`super::ServerFiles::measure`] finds) under `limit_bytes`.
    pub fn new(limit_bytes: u64, used_bytes: u64) -> Self {
        Self(Arc::new(Counts { limit_bytes: AtomicU64::new(limit_bytes), used_bytes: AtomicU64::new(used_bytes) }))
    }

    /// No limit, nothing counted yet.
    pub fn unlimited() -> Self {
        Self::new(0, 0)
    }

    pub fn limit_bytes(&self) -> u64 {
        self.0.limit_bytes.load(Ordering::SeqCst)
    }

    /// A new limit (the server's disk limit changed); bytes in use stay counted.
    pub fn set_limit(&self, limit_bytes: u64) {
        self.0.limit_bytes.store(limit_bytes, Ordering::SeqCst);
    }

    pub fn used_bytes(&self) -> u64 {
        self.0.used_bytes.load(Ordering::SeqCst)
    }

    /// Counts `bytes` more, or refuses with `Conflict` (counting nothing) when that would cross
    /// the limit.
    pub fn take(&self, bytes: u64) -> Result<()> {
        let limit = self.limit_bytes();
        let taken = self.0.used_bytes.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
            let after = used.saturating_add(bytes);
            (limit == 0 || after <= limit).then_some(after)
        });
        taken.map(drop).map_err(|used| refused(limit, used, bytes))
    }

    /// Counts `bytes` more even past the limit: for bytes that are on disk already (a file
    /// whose replacement failed).
    pub fn take_anyway(&self, bytes: u64) {
        self.0.used_bytes.fetch_add(bytes, Ordering::SeqCst);
    }

    /// Whether `bytes` more would fit now, counting nothing: `Conflict` as [`DiskQuota::take`]
    /// would say.
    pub fn check_room(&self, bytes: u64) -> Result<()> {
        let (limit, used) = (self.limit_bytes(), self.used_bytes());
        if limit == 0 || used.saturating_add(bytes) <= limit {
            return Ok(());
        }
        Err(refused(limit, used, bytes))
    }

    /// Counts `bytes` fewer (a file shrank or went away).
    pub fn give_back(&self, bytes: u64) {
        let _ =
            self.0.used_bytes.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| Some(used.saturating_sub(bytes)));
    }

    /// Sets the count to what was measured.
    pub fn set_used(&self, bytes: u64) {
        self.0.used_bytes.store(bytes, Ordering::SeqCst);
    }
}

fn refused(limit: u64, used: u64, bytes: u64) -> Error {
    Error::conflict(format!(
        "the server's disk limit of {} would be exceeded ({} in use, {} more needed)",
        human(limit),
        human(used),
        human(bytes)
    ))
}

/// `bytes` for a message: MiB with one decimal above 1 MiB, else bytes.
fn human(bytes: u64) -> String {
    if bytes >= 1024 * 1024 { format!("{:.1} MiB", bytes as f64 / 1024.0 / 1024.0) } else { format!("{bytes} bytes") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_refuses_past_the_limit_and_counts_nothing_then() {
        let quota = DiskQuota::new(100, 40);
        quota.take(60).unwrap();
        let err = quota.take(1).unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
        assert!(
            err.to_string().contains("disk limit of 100 bytes would be exceeded (100 bytes in use, 1 bytes more"),
            "{err}"
        );
        assert_eq!(quota.used_bytes(), 100);
        quota.give_back(30);
        quota.take(30).unwrap();
        quota.give_back(1000);
        assert_eq!(quota.used_bytes(), 0, "never below zero");
    }

    #[test]
    fn no_limit_still_counts() {
        let quota = DiskQuota::unlimited();
        quota.take(u64::MAX / 2).unwrap();
        assert_eq!(quota.used_bytes(), u64::MAX / 2);
        assert_eq!(quota.clone().used_bytes(), quota.used_bytes(), "clones share the count");
    }
}
