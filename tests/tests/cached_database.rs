//! `CachedDatabase` over SQLite and the memory cache: the whole database conformance suite, and
//! what the cache adds (writes seen everywhere the cache is shared, out-of-band writes bounded).

use capauth::MemoryCache;
use capcore::backend::{Cache, Database};
use capcore::model::{NewUser, PageRequest, ServerFilter, UserPatch};
use capcore::time::Timestamp;
use capdb::{CachedDatabase, CachedDatabaseConfig};
use std::sync::Arc;
use std::time::Duration;

async fn sqlite() -> Arc<dyn Database> {
    let url = format!("sqlite://{}", cap_tests::scratch_db_path("cached").display());
    let db = capdb::connect(&url, &capdb::DbConfig::default()).await.expect("open sqlite");
    db.migrate().await.expect("migrate");
    db
}

async fn fresh_cached_sqlite() -> Option<Arc<dyn Database>> {
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::default());
    Some(Arc::new(CachedDatabase::new(sqlite().await, cache, CachedDatabaseConfig::default())))
}

capcore::database_conformance_tests!(fresh_cached_sqlite);

fn cached(inner: &Arc<dyn Database>, cache: &Arc<dyn Cache>, max_age: Duration) -> Arc<dyn Database> {
    Arc::new(CachedDatabase::new(inner.clone(), cache.clone(), CachedDatabaseConfig { max_age, max_entries: 100 }))
}

async fn session_for(db: &dyn Database, name: &str) -> capcore::model::Session {
    let now = Timestamp::from_millis(1_800_000_000_000);
    let user = db
        .users()
        .create(NewUser { username: name.into(), email: format!("{name}@example.org"), password_hash: "x".into() }, now)
        .await
        .unwrap();
    let session = capcore::model::Session {
        id: capcore::ids::SessionId::new_random(),
        user_id: user.id,
        refresh_hash: format!("hash-{name}"),
        generation: 0,
        revoked: false,
        created_at: now,
        expires_at: now.plus_secs(3600),
        ip: "127.0.0.1".into(),
    };
    db.sessions().create(session).await.unwrap()
}

#[tokio::test]
async fn a_write_through_one_panel_is_seen_by_another_sharing_the_cache() {
    let inner = sqlite().await;
    let shared: Arc<dyn Cache> = Arc::new(MemoryCache::default());
    let (a, b) =
        (cached(&inner, &shared, Duration::from_secs(3600)), cached(&inner, &shared, Duration::from_secs(3600)));
    let session = session_for(&*a, "ada").await;
    assert!(!b.session_context(session.id).await.unwrap().0.revoked, "b caches the live session");
    a.sessions().revoke(session.id).await.unwrap();
    assert!(b.session_context(session.id).await.unwrap().0.revoked, "b sees a's revocation at once");

    let user = session.user_id;
    assert!(!b.session_context(session.id).await.unwrap().1.user.disabled);
    a.users().update(user, UserPatch { disabled: Some(true), ..UserPatch::default() }, Timestamp(0)).await.unwrap();
    assert!(b.session_context(session.id).await.unwrap().1.user.disabled, "b sees a's disable at once");
}

#[tokio::test]
async fn a_writer_that_bypasses_the_cache_is_seen_at_the_next_tracked_write_or_after_max_age() {
    let inner = sqlite().await;
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::default());
    let long = cached(&inner, &cache, Duration::from_secs(3600));
    let uncached = cached(&inner, &cache, Duration::ZERO);
    let session = session_for(&*long, "bob").await;
    assert!(!long.session_context(session.id).await.unwrap().0.revoked);

    // Straight to the store, as another process with its own cache would.
    inner.sessions().revoke(session.id).await.unwrap();
    assert!(!long.session_context(session.id).await.unwrap().0.revoked, "stale within max_age");
    assert!(uncached.session_context(session.id).await.unwrap().0.revoked, "max_age zero never serves a memo");

    // Any write through a cached database moves the generation on.
    session_for(&*long, "carol").await;
    assert!(long.session_context(session.id).await.unwrap().0.revoked, "seen after the next tracked write");
}

#[tokio::test]
async fn server_lists_are_served_from_memory_until_a_write() {
    let inner = sqlite().await;
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::default());
    let db = cached(&inner, &cache, Duration::from_secs(3600));
    let filter = ServerFilter::default();
    let first = db.servers().list(&filter, PageRequest::default()).await.unwrap();
    assert_eq!(first.total, 0);
    // Rows changed behind the cache's back are not seen: the memo answers.
    let session = session_for(&*inner, "dave").await;
    let before = cache.get(capdb::cached::GENERATION_KEY).await.unwrap();
    assert_eq!(db.servers().list(&filter, PageRequest::default()).await.unwrap(), first);
    db.sessions().revoke(session.id).await.unwrap();
    assert_ne!(cache.get(capdb::cached::GENERATION_KEY).await.unwrap(), before, "a write bumps the generation");
}

/// The rendered page a panel keeps is replaced at the first write, through any route.
#[tokio::test]
async fn the_panel_never_serves_a_list_page_older_than_the_last_write() {
    use axum::http::Method;
    use serde_json::json;
    let panel = cap_tests::TestPanel::start().await;
    let admin = panel.admin().await;
    let (owner, owner_cred) = panel.user("owner", &[]).await;
    let (_, _, server) = panel.server_setup(&owner).await;
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["data"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
    };
    let (_, first) = panel.get("/api/servers", &owner_cred).await;
    assert_eq!(names(&first), ["survival"]);
    assert_eq!(panel.get("/api/servers", &owner_cred).await.1, first, "served again");

    let (status, _) =
        panel.json(Method::PATCH, &format!("/api/servers/{server}"), &admin, json!({"name": "renamed"})).await;
    assert_eq!(status, 200);
    assert_eq!(names(&panel.get("/api/servers", &owner_cred).await.1), ["renamed"], "the rename shows at once");

    panel.set_state(&server, &[capcore::state::ServerState::Offline]).await;
    let (_, after) = panel.get("/api/servers", &owner_cred).await;
    assert_eq!(after["data"][0]["state"], "offline", "a state change through the store shows at once");

    let (status, _) = panel.delete(&format!("/api/servers/{server}"), &admin).await;
    assert_eq!(status, 204);
    assert_eq!(panel.get("/api/servers", &owner_cred).await.1["total"], 0);
}
