//! Two panel instances sharing one database and one cache, as behind a load balancer: an
//! agent connected to instance B is online, commandable and watchable from instance A. Runs
//! against the real Redis (`CAP_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`; skipped
//! without one unless `CAP_TEST_REQUIRE=1`) and against one memory cache shared in-process.

use cap_tests::e2e::{AgentProcess, live_connect, scratch_dir, wait_until};
use cap_tests::{TestPanel, assert_error, scratch_db_path, test_auth_config};
use capauth::{MemoryCache, RedisCache, RedisCacheConfig};
use capcore::backend::{Cache, Database};
use capcore::panel::PanelConfig;
use serde_json::json;
use std::sync::Arc;

/// Two caches over the shared Redis with a prefix of this test's own, or `None` after a skip line.
async fn redis_pair(test: &str) -> Option<(Arc<dyn Cache>, Arc<dyn Cache>)> {
    let url = std::env::var("CAP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let config =
        RedisCacheConfig { key_prefix: format!("cap-cluster-{}-{test}:", std::process::id()), ..Default::default() };
    let connect = || RedisCache::connect(&url, config.clone());
    match (connect().await, connect().await) {
        (Ok(a), Ok(b)) => Some((Arc::new(a), Arc::new(b))),
        (Err(e), _) | (_, Err(e)) => {
            assert!(!capcore::conformance::services_required(), "Redis at {url} is required (CAP_TEST_REQUIRE=1): {e}");
            eprintln!("skipped: Redis at {url} is not reachable: {e}");
            None
        }
    }
}

/// Two panels over one SQLite file, each with its own connection pool and its cache.
async fn two_panels(cache_a: Arc<dyn Cache>, cache_b: Arc<dyn Cache>) -> (TestPanel, TestPanel) {
    let url = format!("sqlite://{}", scratch_db_path("cluster").display());
    let open = || async { capdb::connect(&url, &capdb::DbConfig::default()).await.expect("open sqlite") };
    let (store_a, store_b): (Arc<dyn Database>, Arc<dyn Database>) = (open().await, open().await);
    let a = TestPanel::start_on(store_a, cache_a, test_auth_config(), PanelConfig::default(), true).await;
    let b = TestPanel::start_on(store_b, cache_b, test_auth_config(), PanelConfig::default(), true).await;
    (a, b)
}

async fn a_browser_on_one_instance_drives_an_agent_on_the_other(a: TestPanel, b: TestPanel, tag: &str) {
    let addr_a = a.serve().await;
    let addr_b = b.serve().await;
    let (node, token) = a.node_with_token(tag, 4).await;
    let mut agent = AgentProcess::spawn(addr_b, &token, &scratch_dir(tag));
    b.wait_node(&node, true).await;
    // Instance A has no connection of its own, and still sees the node online with its facts.
    a.wait_node(&node, true).await;
    assert!(!a.panel.state().agents.is_connected(node.parse().unwrap()));
    let (_, seen_from_a) = a.get(&format!("/api/nodes/{node}"), &a.admin().await).await;
    assert_eq!(seen_from_a["agent"]["runtimes"], json!(["process"]), "{seen_from_a}");

    let (owner_id, owner) = a.user("owner", &[]).await;
    let template = a.game_template("cluster-game", &[], json!({"type": "command", "value": "stop"})).await;
    // Created through A: the install reaches the agent on B.
    let server = a.server("clustered", &owner_id, &node, &template).await;
    a.wait_state(&server, "offline").await;

    let mut browser = live_connect(addr_a, &server, &owner).await.expect("a browser on instance A");
    let hello = browser.next().await.expect("hello");
    assert_eq!(hello["node_online"], true, "{hello}");
    browser.until_line("installing into").await;

    let start = a.post(&format!("/api/servers/{server}/power"), &owner, json!({"action": "start"})).await;
    assert_eq!(start.0, 202, "power through A: {}", start.1);
    browser.until_state("running").await;
    browser.until_line("Server ready: Done (").await;
    browser.send(json!({"type": "command", "command": "say across the cluster"})).await;
    browser.until_line("[Server] across the cluster").await;
    // An agent's refusal keeps its kind across the hop: starting a running server conflicts.
    let again = a.post(&format!("/api/servers/{server}/power"), &owner, json!({"action": "start"})).await;
    assert_error(&again, 409, "conflict");

    // A browser that comes later to A, when A follows the server no more, gets B's recent
    // lines, each once.
    drop(browser);
    wait_until("instance A stops following the server", || async {
        (a.panel.state().cluster.following() == 0).then_some(())
    })
    .await;
    let mut late = live_connect(addr_a, &server, &owner).await.expect("a later browser on A");
    late.until_line("[Server] across the cluster").await;
    let lines = late.console_lines();
    let ready = lines.iter().filter(|l| l.contains("Server ready: Done (")).count();
    assert_eq!(ready, 1, "replayed once: {lines:?}");
    late.send(json!({"type": "command", "command": "say once more"})).await;
    late.until_line("[Server] once more").await;

    // The file manager and backups through A: answers with data, and refusals of their kind,
    // come back across the hop; byte streams do not cross instances and say so.
    let files = |rest: &str| format!("/api/servers/{server}/files{rest}");
    let (status, made) = a.post(&files("/directory"), &owner, json!({"path": "made-through-a"})).await;
    assert_eq!((status.as_u16(), made["kind"].as_str()), (201, Some("directory")), "{made}");
    let (status, listing) = a.get(&files(""), &owner).await;
    assert_eq!(status, 200, "{listing}");
    let names: Vec<&str> = listing["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"made-through-a") && names.contains(&"installed.txt"), "{listing}");
    assert_error(&a.get(&files("/stat?path=missing.txt"), &owner).await, 404, "not_found");
    let msg = assert_error(&a.post(&files("/directory"), &owner, json!({"path": "a\u{1}b"})).await, 422, "invalid");
    assert!(msg.starts_with("path:"), "the field survives the hop: {msg}");
    let msg = assert_error(&a.get(&files("/content?path=installed.txt"), &owner).await, 503, "unavailable");
    assert!(msg.contains("another panel instance"), "{msg}");
    let (status, read) = b.get(&files("/content?path=installed.txt"), &owner).await;
    assert_eq!((status.as_u16(), read["raw"].as_str()), (200, Some("done\n")), "{read}");
    let (status, backups) = a.get(&format!("/api/servers/{server}/backups"), &owner).await;
    assert_eq!((status.as_u16(), backups), (200, json!([])));
    assert_error(
        &a.delete(&format!("/api/servers/{server}/backups/00000000-0000-4000-8000-000000000000"), &owner).await,
        404,
        "not_found",
    );

    // The agent goes away: A's browser sees it, and A refuses power at once.
    agent.kill9().await;
    late.until_state("unknown").await;
    a.wait_node(&node, false).await;
    assert_error(
        &a.post(&format!("/api/servers/{server}/power"), &owner, json!({"action": "start"})).await,
        503,
        "unavailable",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_a_browser_on_instance_a_drives_an_agent_connected_to_instance_b() {
    let Some((cache_a, cache_b)) = redis_pair("drive").await else { return };
    let (a, b) = two_panels(cache_a, cache_b).await;
    a_browser_on_one_instance_drives_an_agent_on_the_other(a, b, "redis-cluster").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_memory_cache_two_instances_in_a_process_act_as_one() {
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::default());
    let (a, b) = two_panels(cache.clone(), cache).await;
    a_browser_on_one_instance_drives_an_agent_on_the_other(a, b, "memory-cluster").await;
}
