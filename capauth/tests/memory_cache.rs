//! Runs the cache conformance suite against `MemoryCache`.

use capcore::backend::Cache;
use std::sync::Arc;

async fn fresh_memory_cache() -> Option<Arc<dyn Cache>> {
    Some(Arc::new(capauth::MemoryCache::default()))
}

capcore::cache_conformance_tests!(fresh_memory_cache);
