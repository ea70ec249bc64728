//! Tenants never meet: a user sees and touches nothing of another user's server, and every
//! attempt reads exactly like a server that does not exist.

use axum::http::{Method, StatusCode};
use cap_tests::{Cred, TestPanel, assert_error};
use capcore::ids::ServerId;
use capcore::state::ServerState::Offline;
use serde_json::{Value, json};

struct World {
    panel: TestPanel,
    alice: Cred,
    alice_server: String,
    bob_id: String,
    bob_server: String,
}

/// Alice and Bob each own one server on a shared node with a connected agent.
async fn world() -> World {
    let panel = TestPanel::start().await;
    let (alice_id, alice) = panel.user("alice", &[]).await;
    let (bob_id, _) = panel.user("bob", &[]).await;
    let node = panel.node("shared", 4).await;
    let template = panel.template("game").await;
    let alice_server = panel.server("alice world", &alice_id, &node, &template).await;
    let bob_server = panel.server("bobs secret base", &bob_id, &node, &template).await;
    panel.set_state(&bob_server, &[Offline]).await;
    World { panel, alice, alice_server, bob_id, bob_server }
}

/// Everything stored about a server that a request could change.
async fn snapshot(panel: &TestPanel, server: &str) -> Value {
    let id: ServerId = server.parse().unwrap();
    let s = panel.db.servers().get(id).await.unwrap();
    let subusers = panel.db.servers().list_subusers(id).await.unwrap();
    let allocations = panel.db.allocations().list_for_server(id).await.unwrap();
    json!({
        "name": s.name, "description": s.description, "owner": s.owner_id.to_string(), "state": s.state.as_str(),
        "limits": s.limits, "environment": s.environment, "updated_at": s.updated_at.millis(),
        "subusers": subusers.iter().map(|g| (g.user_id.to_string(), g.permissions.names())).collect::<Vec<_>>(),
        "allocations": allocations.iter().map(|a| (a.port, a.primary)).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn another_users_server_is_not_found_for_every_verb() {
    let w = world().await;
    let (panel, alice, bob_server) = (&w.panel, &w.alice, &w.bob_server);
    let mut agent =
        panel.attach_agent(&panel.db.servers().get(bob_server.parse().unwrap()).await.unwrap().node_id.to_string());
    let before = snapshot(panel, bob_server).await;
    let counts = panel.counts().await;
    let audit_before = panel.audit_count("").await;
    let base = format!("/api/servers/{bob_server}");
    let bob_id = &w.bob_id;

    let attempts: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, base.clone(), None),
        (Method::PATCH, base.clone(), Some(json!({"name": "pwned"}))),
        (Method::DELETE, base.clone(), None),
        (Method::GET, format!("{base}/variables"), None),
        (Method::PUT, format!("{base}/variables"), Some(json!({"values": {"GREETING": "pwned"}}))),
        (Method::GET, format!("{base}/allocations"), None),
        (Method::POST, format!("{base}/power"), Some(json!({"action": "start"}))),
        (Method::POST, format!("{base}/power"), Some(json!({"action": "kill"}))),
        (Method::POST, format!("{base}/command"), Some(json!({"command": "op alice"}))),
        (Method::GET, format!("{base}/subusers"), None),
        (
            Method::POST,
            format!("{base}/subusers"),
            Some(json!({"email": "alice@example.org", "permissions": ["SERVER_VIEW"]})),
        ),
        (Method::PUT, format!("{base}/subusers/{bob_id}"), Some(json!({"permissions": ["SERVER_VIEW"]}))),
        (Method::DELETE, format!("{base}/subusers/{bob_id}"), None),
    ];
    // What a server that does not exist looks like.
    let (_, missing) = panel.get("/api/servers/7a0c3c59-4c1e-4b55-9d1e-3f0b8f1d2e77", alice).await;
    for (method, path, body) in attempts {
        let got = match body {
            Some(b) => panel.json(method.clone(), &path, alice, b).await,
            None => {
                let (status, body, _) = panel.send(method.clone(), &path, alice, None, None).await;
                (status, body)
            }
        };
        assert_error(&got, 404, "not_found");
        assert_eq!(got.1, missing, "{method} {path} must read like a missing server");
    }
    assert!(agent.try_recv().is_none(), "nothing reached Bob's node");
    assert_eq!(snapshot(panel, bob_server).await, before, "Bob's server is unchanged");
    assert_eq!(panel.counts().await, counts);
    assert_eq!(panel.audit_count("").await, audit_before, "no event names Bob's server on Alice's behalf");
}

#[tokio::test]
async fn lists_and_searches_show_nothing_of_another_user() {
    let w = world().await;
    let (panel, alice) = (&w.panel, &w.alice);
    for query in [
        String::new(),
        format!("?owner_id={}", w.bob_id),
        "?q=secret".to_string(),
        "?q=bobs%20secret%20base".to_string(),
        format!("?node_id={}", panel.db.servers().get(w.bob_server.parse().unwrap()).await.unwrap().node_id),
        "?state=offline".to_string(),
        "?per_page=100".to_string(),
    ] {
        let (status, list) = panel.get(&format!("/api/servers{query}"), alice).await;
        assert_eq!(status, StatusCode::OK, "{query}: {list}");
        assert!(!list.to_string().contains(&w.bob_server), "{query}: {list}");
        assert!(!list.to_string().contains("secret base"), "{query}: {list}");
        let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
        assert!(ids.iter().all(|id| *id == w.alice_server), "{query}: {ids:?}");
        assert_eq!(list["total"].as_u64().unwrap(), ids.len() as u64, "the total counts only what Alice sees");
    }
    let (_, own) = panel.get("/api/servers", alice).await;
    assert_eq!(own["total"], 1);
    assert_error(&panel.get(&format!("/api/users/{}", w.bob_id), alice).await, 404, "not_found");
}

#[tokio::test]
async fn the_audit_log_shows_nothing_of_another_users_server() {
    let w = world().await;
    let (panel, alice) = (&w.panel, &w.alice);
    // Bob's server has a history.
    let admin = panel.admin().await;
    let path = format!("/api/servers/{}", w.bob_server);
    assert_eq!(panel.json(Method::PATCH, &path, &admin, json!({"description": "hidden"})).await.0, StatusCode::OK);
    assert!(panel.audit_count("server.update").await >= 1);

    for query in ["", "?action=server.", "?mine=false", "?result=success", "?per_page=100"] {
        let (status, page) = panel.get(&format!("/api/audit{query}"), alice).await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        assert!(!page.to_string().contains(&w.bob_server), "{query}: {page}");
        let servers: Vec<&Value> = page["data"].as_array().unwrap().iter().map(|e| &e["server_id"]).collect();
        assert!(servers.iter().all(|s| *s == w.alice_server.as_str()), "{query}: {servers:?}");
    }
    let asked = panel.get(&format!("/api/audit?server_id={}", w.bob_server), alice).await;
    assert_error(&asked, 404, "not_found");
    let (_, mine) = panel.get(&format!("/api/audit?mine=true&server_id={}", w.bob_server), alice).await;
    assert_eq!(mine["total"], 0, "{mine}");
    let (_, by_bob) = panel.get(&format!("/api/audit?actor_id={}", w.bob_id), alice).await;
    assert_eq!(by_bob["total"], 0, "{by_bob}");
}

#[tokio::test]
async fn bulk_power_reports_another_users_server_as_not_found() {
    let w = world().await;
    let (panel, alice) = (&w.panel, &w.alice);
    let node = panel.db.servers().get(w.bob_server.parse().unwrap()).await.unwrap().node_id.to_string();
    let mut agent = panel.attach_agent(&node);
    panel.set_state(&w.alice_server, &[Offline]).await;
    let before = snapshot(panel, &w.bob_server).await;
    let ids = json!([w.bob_server, w.alice_server, "7a0c3c59-4c1e-4b55-9d1e-3f0b8f1d2e77", "../../etc"]);
    let (status, results) =
        panel.post("/api/servers/bulk/power", alice, json!({"server_ids": ids, "action": "start"})).await;
    assert_eq!(status, StatusCode::OK, "{results}");
    let statuses: Vec<(&str, &str)> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["server_id"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (w.bob_server.as_str(), "not_found"),
            (w.alice_server.as_str(), "accepted"),
            ("7a0c3c59-4c1e-4b55-9d1e-3f0b8f1d2e77", "not_found"),
            ("../../etc", "not_found"),
        ]
    );
    assert_eq!(results[0]["message"], results[2]["message"], "hidden and missing read the same");
    let sent = agent.try_recv().unwrap();
    assert_eq!(sent, capcore::protocol::v1::Command::Start { server_id: w.alice_server.parse().unwrap() });
    assert!(agent.try_recv().is_none(), "only Alice's server was started");
    assert_eq!(snapshot(panel, &w.bob_server).await, before);
}

#[tokio::test]
async fn a_subuser_of_one_server_sees_nothing_else_of_its_owner() {
    let w = world().await;
    let panel = &w.panel;
    let node = panel.db.servers().get(w.bob_server.parse().unwrap()).await.unwrap().node_id.to_string();
    let template = panel.db.servers().get(w.bob_server.parse().unwrap()).await.unwrap().template_id.to_string();
    let other = panel.server("bobs other", &w.bob_id, &node, &template).await;
    panel.subuser(&w.bob_server, "alice@example.org", &["SERVER_VIEW"]).await;
    assert_eq!(panel.get(&format!("/api/servers/{}", w.bob_server), &w.alice).await.0, StatusCode::OK);
    assert_error(&panel.get(&format!("/api/servers/{other}"), &w.alice).await, 404, "not_found");
    let (_, list) = panel.get(&format!("/api/servers?owner_id={}", w.bob_id), &w.alice).await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["data"][0]["id"], w.bob_server.as_str());
    // Seeing is not touching.
    let rename =
        panel.json(Method::PATCH, &format!("/api/servers/{}", w.bob_server), &w.alice, json!({"name": "mine"})).await;
    assert_error(&rename, 403, "forbidden");
    let vars = panel.get(&format!("/api/servers/{}/variables", w.bob_server), &w.alice).await.1;
    assert!(!vars.to_string().contains("HIDDEN_SEED"), "{vars}");
}
