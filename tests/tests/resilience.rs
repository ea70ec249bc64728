//! A database or cache that goes away: requests that need it get a clear 503 and change
//! nothing, `/ready` says so, and the panel recovers by itself when it returns, without a
//! restart. "Goes away" is a TCP proxy in front of the real PostgreSQL and Redis that closes
//! every connection and refuses new ones, then lets them through again.

use axum::http::StatusCode;
use cap_tests::e2e::{Proxy, wait_until};
use cap_tests::{TestPanel, assert_error, scratch_db_path, test_auth_config};
use capauth::{MemoryCache, RedisCache, RedisCacheConfig};
use capcore::backend::{Cache, Database};
use capcore::panel::PanelConfig;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// `host:port` of a URL like `scheme://user@host:port/path`, resolved.
fn address_of(url: &str) -> SocketAddr {
    let authority = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap();
    std::net::ToSocketAddrs::to_socket_addrs(host_port).unwrap().next().unwrap()
}

fn skip_or_fail(what: &str) -> Option<()> {
    assert!(!capcore::conformance::services_required(), "{what} (required under CAP_TEST_REQUIRE=1)");
    eprintln!("skipped: {what}");
    None
}

/// A fresh database on the PostgreSQL or MariaDB of the tests, reached through a proxy, and the
/// proxy. Named like capdb's test databases, so those of runs that are gone get dropped.
async fn database_through_a_proxy(backend: &str) -> Option<(String, Proxy)> {
    let name = format!("cap_test_{}_resilience", std::process::id());
    let (admin, created) = if backend == "postgres" {
        let admin = std::env::var("CAP_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let drop = format!("DROP DATABASE IF EXISTS {name}");
        let create = format!("CREATE DATABASE {name}");
        let out =
            tokio::process::Command::new("psql").args([admin.as_str(), "-q", "-c", &drop, "-c", &create]).output();
        (admin.clone(), out.await)
    } else {
        let admin = std::env::var("CAP_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/".into());
        let at = address_of(&admin);
        let user = admin.split("://").nth(1).unwrap().split('@').next().unwrap().to_string();
        let sql = format!("DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}");
        let (host, port) = (at.ip().to_string(), at.port().to_string());
        let out =
            tokio::process::Command::new("mariadb").args(["-u", &user, "-h", &host, "-P", &port, "-e", &sql]).output();
        (admin.clone(), out.await)
    };
    match created {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return skip_or_fail(&format!("{backend} at {admin}: {}", String::from_utf8_lossy(&out.stderr))).and(None);
        }
        Err(e) => return skip_or_fail(&format!("the {backend} client cannot run: {e}")).and(None),
    }
    let proxy = Proxy::start(address_of(&admin)).await;
    let (scheme, rest) = admin.split_once("://").unwrap();
    let user = rest.split('@').next().unwrap();
    Some((format!("{scheme}://{user}@{}/{name}", proxy.addr), proxy))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_going_away_is_a_503_and_the_panel_recovers_by_itself() {
    let Some((url, proxy)) = database_through_a_proxy("postgres").await else { return };
    a_database_that_goes_away_is_a_503_and_the_panel_recovers_by_itself(&url, &proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_going_away_is_a_503_and_the_panel_recovers_by_itself() {
    let Some((url, proxy)) = database_through_a_proxy("mysql").await else { return };
    a_database_that_goes_away_is_a_503_and_the_panel_recovers_by_itself(&url, &proxy).await;
}

async fn a_database_that_goes_away_is_a_503_and_the_panel_recovers_by_itself(url: &str, proxy: &Proxy) {
    let config = capdb::DbConfig { max_connections: 4, acquire_timeout: Duration::from_secs(1) };
    let store: Arc<dyn Database> = capdb::connect(url, &config).await.expect("connect through the proxy");
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::default());
    let panel = TestPanel::start_on(store, cache, test_auth_config(), PanelConfig::default(), true).await;
    let admin = panel.admin().await;
    assert_eq!(panel.get("/api/users", &admin).await.0, StatusCode::OK);

    proxy.cut();
    let message = assert_error(&panel.get("/api/users", &admin).await, 503, "unavailable");
    assert!(message.contains("database"), "{message}");
    let refused = panel
        .post(
            "/api/users",
            &admin,
            json!({"username": "during", "email": "during@example.org", "password": "long enough password"}),
        )
        .await;
    assert_error(&refused, 503, "unavailable");
    let (status, ready) = panel.get("/ready", &cap_tests::Cred::None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");

    proxy.restore();
    wait_until("the panel answers again", || async {
        (panel.get("/api/users", &admin).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    let (status, users) = panel.get("/api/users?q=during", &admin).await;
    assert_eq!((status, users["total"].as_u64()), (StatusCode::OK, Some(0)), "the refused write left nothing: {users}");
    assert_eq!(panel.get("/ready", &cap_tests::Cred::None).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_that_goes_away_is_a_503_and_the_panel_recovers_by_itself() {
    let url = std::env::var("CAP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    if std::net::TcpStream::connect(address_of(&url)).is_err() {
        skip_or_fail(&format!("Redis at {url} is not reachable"));
        return;
    }
    let proxy = Proxy::start(address_of(&url)).await;
    let config = RedisCacheConfig {
        key_prefix: format!("cap-resilience-{}:", std::process::id()),
        response_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        ..RedisCacheConfig::default()
    };
    let cache: Arc<dyn Cache> = Arc::new(
        RedisCache::connect(&format!("redis://{}", proxy.addr), config).await.expect("Redis through the proxy"),
    );
    let store =
        capdb::connect(&format!("sqlite://{}", scratch_db_path("resilience").display()), &capdb::DbConfig::default())
            .await
            .unwrap();
    let panel = TestPanel::start_on(store, cache, test_auth_config(), PanelConfig::default(), true).await;
    let admin = panel.admin().await;
    assert_eq!(panel.get("/api/servers", &admin).await.0, StatusCode::OK);

    proxy.cut();
    // A session check reads the cache's invalidation counter: without the cache it cannot
    // tell whether what it remembers is current, so it does not answer from memory.
    let message = assert_error(&panel.get("/api/servers", &admin).await, 503, "unavailable");
    assert!(!message.is_empty());
    let (status, ready) = panel.get("/ready", &cap_tests::Cred::None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");

    proxy.restore();
    wait_until("the panel answers again", || async {
        (panel.get("/api/servers", &admin).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(panel.get("/ready", &cap_tests::Cred::None).await.0, StatusCode::OK);
}
