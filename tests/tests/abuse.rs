//! Attempts to get around limits and checks: forged client addresses, concurrent password
//! guessing, account takeover through user edits, and API keys reaching past their scope.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cap_tests::{ADMIN_EMAIL, Cred, PASSWORD, TestPanel, assert_error, test_auth_config};
use capcore::panel::PanelConfig;
use serde_json::json;

fn login_request(email: &str, password: &str, forwarded_for: &str) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri("/api/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-forwarded-for", forwarded_for)
        .body(Body::from(json!({"email": email, "password": password}).to_string()))
        .unwrap()
}

/// A login attempt from `peer`; returns the status.
async fn login_from(panel: &TestPanel, email: &str, password: &str, peer: &str) -> StatusCode {
    let body = json!({"email": email, "password": password}).to_string();
    let json = Some("application/json");
    panel.send_from(Method::POST, "/api/auth/login", &Cred::None, Some(Body::from(body)), json, peer).await.0
}

#[tokio::test]
async fn behind_a_proxy_the_address_is_the_one_the_proxy_appended() {
    let config = PanelConfig { trust_proxy: true, ..PanelConfig::default() };
    let panel = TestPanel::start_with(test_auth_config(), config).await;
    // The client writes whatever it likes first; the proxy (the socket peer) appends the real one.
    let mut limited = false;
    for i in 0..40 {
        let req = login_request(
            "nobody@example.org",
            "wrong password",
            &format!("10.9.{}.{}, 203.0.113.7", i / 250, i % 250),
        );
        let (status, _, _) = panel.send_request(req, "127.0.0.1:5000").await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = true;
            break;
        }
    }
    assert!(limited, "rotating the forged first entry does not escape the per-IP limit");
    let last = panel.last_audit("auth.login").await;
    assert_eq!(last["ip"], "203.0.113.7");
    // Another real client address is not affected.
    let (status, _, _) = panel
        .send_request(login_request(ADMIN_EMAIL, cap_tests::ADMIN_PASSWORD, "198.51.100.1"), "127.0.0.1:5000")
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn concurrent_guesses_cannot_exceed_the_account_limit() {
    let panel = std::sync::Arc::new(TestPanel::start().await);
    let (_, _) = panel.user("target", &[]).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let panel = panel.clone();
        tasks.push(tokio::spawn(async move {
            // Each guess from its own address, so only the account limit applies.
            login_from(&panel, "target@example.org", &format!("guess number {i}"), &format!("127.0.1.{i}:1000")).await
        }));
    }
    let mut checked = 0;
    for t in tasks {
        let status = t.await.unwrap();
        if status == StatusCode::UNAUTHORIZED {
            checked += 1;
        } else {
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        }
    }
    assert!(checked <= 5, "{checked} passwords were checked; the account allows 5 per window");
    // The right password is refused too until the window passes.
    let status = login_from(&panel, "target@example.org", PASSWORD, "127.0.2.1:1000").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn user_update_cannot_take_over_a_server_owner_or_skip_the_current_password() {
    let panel = TestPanel::start().await;
    let (owner, _) = panel.user("owner", &[]).await;
    panel.server_setup(&owner).await;
    let (plain, _) = panel.user("plain", &[]).await;
    let (editor_id, editor) = panel.user_with("editor", &["USER_VIEW", "USER_UPDATE"]).await;

    let got =
        panel.json(Method::PATCH, &format!("/api/users/{owner}"), &editor, json!({"password": "taken over 123"})).await;
    assert_error(&got, 403, "forbidden");
    panel.login("owner@example.org", PASSWORD).await;

    // A user without servers and roles is within the editor's reach.
    let (status, body) =
        panel.json(Method::PATCH, &format!("/api/users/{plain}"), &editor, json!({"disabled": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let got = panel
        .json(Method::PATCH, &format!("/api/users/{editor_id}"), &editor, json!({"password": "no old one needed?"}))
        .await;
    assert!(assert_error(&got, 403, "forbidden").contains("/api/me"));
    panel.login("editor@example.org", PASSWORD).await;
}

#[tokio::test]
async fn narrowed_keys_stay_narrow() {
    let panel = TestPanel::start().await;
    let (owner, owner_cred) = panel.user("owner", &[]).await;
    panel.server_setup(&owner).await;
    let (status, body) = panel
        .post("/api/me/api-keys", &owner_cred, json!({"name": "console only", "permissions": ["SERVER_CONSOLE"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let key = Cred::bearer(body["secret"].as_str().unwrap());
    let (status, list) = panel.get("/api/servers", &key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 0, "a key without SERVER_VIEW lists nothing: {list}");
    assert_eq!(panel.get("/api/servers", &owner_cred).await.1["total"], 1);

    assert_error(&panel.post("/api/auth/logout-all", &key, json!({})).await, 403, "forbidden");
    assert_eq!(panel.get("/api/me", &owner_cred).await.0, StatusCode::OK, "the owner's session survives");
}

#[tokio::test]
async fn limits_cannot_outgrow_the_node() {
    let panel = TestPanel::start().await;
    let admin = panel.admin().await;
    let (owner, _) = panel.user("owner", &[]).await;
    let (node, _, server) = panel.server_setup(&owner).await;
    let before = panel.db.servers().get(server.parse().unwrap()).await.unwrap().limits;
    let huge = json!({"limits": {"memory_mb": 10_000_000, "swap_mb": 0, "cpu_percent": 100, "disk_mb": 1024, "io_weight": 500, "pids": 256}});
    let got = panel.json(Method::PATCH, &format!("/api/servers/{server}"), &admin, huge).await;
    assert!(assert_error(&got, 409, "conflict").contains("not enough"), "node {node}");
    assert_eq!(panel.db.servers().get(server.parse().unwrap()).await.unwrap().limits, before);
}
