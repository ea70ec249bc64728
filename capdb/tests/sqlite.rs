//! Runs the database conformance suite against SQLite (a fresh file database per test).

use capcore::backend::Database;
use std::sync::Arc;

async fn fresh_sqlite() -> Option<Arc<dyn Database>> {
    // Cargo's per-target scratch directory; a unique file per test.
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("conformance-{}.db", uuid_like()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let url = format!("sqlite://{}", path.display());
    let db = capdb::connect(&url, &capdb::DbConfig::default()).await.expect("open sqlite");
    db.migrate().await.expect("migrate");
    Some(db)
}

capcore::database_conformance_tests!(fresh_sqlite);

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}
