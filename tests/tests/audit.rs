//! The audit log: every mutating action leaves one event with actor, action, target, address
//! and result (success, denied, failed), and `/api/audit` pages and filters them.

use axum::http::{Method, StatusCode};
use cap_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Cred, PASSWORD, TestPanel, assert_error};
use capcore::panel::Clock;
use serde_json::{Value, json};

/// Asserts that exactly one new `action` event exists since `before` and returns it, after
/// checking who, from where and with which result.
async fn one_new(panel: &TestPanel, action: &str, before: u64, actor: &str, result: &str) -> Value {
    let filter = capcore::model::AuditFilter { action_prefix: Some(action.into()), ..Default::default() };
    let page = panel.db.audit().list(&filter, capcore::model::PageRequest::new(1, 100)).await.unwrap();
    let exact: Vec<_> = page.items.into_iter().filter(|e| e.action == action).collect();
    assert_eq!(exact.len() as u64, before + 1, "one new {action} event");
    let event = serde_json::to_value(&exact[0]).unwrap();
    assert_eq!(event["actor_id"], actor, "{event}");
    assert_eq!(event["ip"], "127.0.0.1", "{event}");
    assert_eq!(event["result"], result, "{event}");
    assert_eq!(event["at"], panel.clock.now().to_rfc3339(), "{event}");
    event
}

async fn count(panel: &TestPanel, action: &str) -> u64 {
    let filter = capcore::model::AuditFilter { action_prefix: Some(action.into()), ..Default::default() };
    let page = panel.db.audit().list(&filter, capcore::model::PageRequest::new(1, 100)).await.unwrap();
    page.items.iter().filter(|e| e.action == action).count() as u64
}

/// Runs `$call` and checks that it left exactly one `$action` event with `$result`, whose
/// target is `$target`; evaluates to the call's (status, body).
macro_rules! audited {
    ($panel:expr, $actor:expr, $action:literal, $result:literal, $target:expr, $call:expr) => {{
        $panel.clock.advance_secs(1);
        let before = count(&$panel, $action).await;
        let got = $call;
        let event = one_new(&$panel, $action, before, $actor, $result).await;
        let target: String = $target(&got.1);
        assert_eq!(event["target"], target.as_str(), "{} target: {event}", $action);
        got
    }};
}

fn id(body: &Value) -> String {
    body["id"].as_str().unwrap_or_else(|| panic!("no id in {body}")).to_string()
}

#[tokio::test]
async fn every_mutating_action_is_audited_with_who_what_where_and_how_it_ended() {
    let panel = TestPanel::start().await;
    let admin = panel.login_admin().await;
    let me = panel.admin_id().await;
    let me = me.as_str();

    // Users and roles.
    let (_, u) = audited!(panel, me, "user.create", "success", |b: &Value| format!("user:{}", id(b)), {
        panel
            .post(
                "/api/users",
                &admin,
                json!({"username": "carol", "email": "carol@example.org", "password": PASSWORD}),
            )
            .await
    });
    let carol = id(&u);
    let carol_target = format!("user:{carol}");
    audited!(panel, me, "user.update", "success", |_: &Value| carol_target.clone(), {
        panel.json(Method::PATCH, &format!("/api/users/{carol}"), &admin, json!({"username": "carol2"})).await
    });
    let (_, r) = audited!(panel, me, "role.create", "success", |b: &Value| format!("role:{}", id(b)), {
        panel.post("/api/roles", &admin, json!({"name": "ops", "permissions": ["SERVER_VIEW"]})).await
    });
    let role = id(&r);
    let role_target = format!("role:{role}");
    audited!(panel, me, "role.update", "success", |_: &Value| role_target.clone(), {
        panel.json(Method::PATCH, &format!("/api/roles/{role}"), &admin, json!({"description": "operators"})).await
    });
    audited!(panel, me, "user.roles", "success", |_: &Value| carol_target.clone(), {
        panel.json(Method::PUT, &format!("/api/users/{carol}/roles"), &admin, json!({"roles": ["ops"]})).await
    });

    // Nodes, allocations, templates.
    let (_, n) = audited!(
        panel,
        me,
        "node.create",
        "success",
        |b: &Value| format!("node:{}", b["node"]["id"].as_str().unwrap()),
        {
            panel
                .post(
                    "/api/nodes",
                    &admin,
                    json!({"name": "n1", "fqdn": "n1.example.org", "memory_mb": 4096, "disk_mb": 4096}),
                )
                .await
        }
    );
    let node = n["node"]["id"].as_str().unwrap().to_string();
    let node_target = format!("node:{node}");
    assert!(
        !panel.get("/api/audit?action=node.", &admin).await.1.to_string().contains(n["token"].as_str().unwrap()),
        "no secrets"
    );
    audited!(panel, me, "node.update", "success", |_: &Value| node_target.clone(), {
        panel.json(Method::PATCH, &format!("/api/nodes/{node}"), &admin, json!({"description": "rack 4"})).await
    });
    audited!(panel, me, "node.token", "success", |_: &Value| node_target.clone(), {
        panel.post(&format!("/api/nodes/{node}/token"), &admin, Value::Null).await
    });
    let (_, a) = audited!(panel, me, "allocation.create", "success", |_: &Value| node_target.clone(), {
        panel
            .post(
                &format!("/api/nodes/{node}/allocations"),
                &admin,
                json!({"ip": "10.0.0.1", "ports": ["30000-30001"]}),
            )
            .await
    });
    let spare = a[1]["id"].as_str().unwrap().to_string();
    audited!(panel, me, "allocation.delete", "success", |_: &Value| format!("allocation:{spare}"), {
        panel.delete(&format!("/api/nodes/{node}/allocations/{spare}"), &admin).await
    });
    let spec = json!({"name": "game", "startup": "./run", "stop": {"type": "command", "value": "stop"},
                      "variables": [{"name": "Greeting", "env": "GREETING", "default": "hi", "rules": "required|string|max:8"}]});
    let (_, t) = audited!(panel, me, "template.create", "success", |b: &Value| format!("template:{}", id(b)), {
        panel.post("/api/templates", &admin, spec.clone()).await
    });
    let template = id(&t);
    let template_target = format!("template:{template}");
    audited!(panel, me, "template.update", "success", |_: &Value| template_target.clone(), {
        panel.json(Method::PUT, &format!("/api/templates/{template}"), &admin, spec.clone()).await
    });
    let egg = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/eggs/pterodactyl-core/minecraft/egg-paper.json"
    ))
    .unwrap();
    let (_, imported) = audited!(panel, me, "template.import", "success", |b: &Value| format!("template:{}", id(b)), {
        panel.raw(Method::POST, "/api/templates/import", &admin, egg, "application/json").await
    });

    // Servers and subusers.
    let (_, s) = audited!(panel, me, "server.create", "success", |b: &Value| format!("server:{}", id(b)), {
        panel.post("/api/servers", &admin, json!({"name": "s1", "owner_id": carol, "node_id": node, "template_id": template, "limits": {"memory_mb": 256, "swap_mb": 0, "cpu_percent": 100, "disk_mb": 256, "io_weight": 500, "pids": 64}})).await
    });
    let server = id(&s);
    let server_target = format!("server:{server}");
    assert_eq!(
        panel.last_audit("server.create").await["server_id"],
        server.as_str(),
        "server events name their server"
    );
    audited!(panel, me, "server.update", "success", |_: &Value| server_target.clone(), {
        panel.json(Method::PATCH, &format!("/api/servers/{server}"), &admin, json!({"description": "main"})).await
    });
    audited!(panel, me, "server.variables", "success", |_: &Value| server_target.clone(), {
        panel
            .json(
                Method::PUT,
                &format!("/api/servers/{server}/variables"),
                &admin,
                json!({"values": {"GREETING": "yo"}}),
            )
            .await
    });
    let (status, _) = audited!(panel, me, "server.power", "failed", |_: &Value| server_target.clone(), {
        panel.post(&format!("/api/servers/{server}/power"), &admin, json!({"action": "start"})).await
    });
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(panel.last_audit("server.power").await["detail"]["error"].as_str().unwrap().contains("not connected"));
    audited!(panel, me, "server.command", "failed", |_: &Value| server_target.clone(), {
        panel.post(&format!("/api/servers/{server}/command"), &admin, json!({"command": "say hi"})).await
    });
    audited!(panel, me, "subuser.create", "success", |_: &Value| server_target.clone(), {
        panel
            .post(
                &format!("/api/servers/{server}/subusers"),
                &admin,
                json!({"email": ADMIN_EMAIL, "permissions": ["SERVER_VIEW"]}),
            )
            .await
    });
    audited!(panel, me, "subuser.update", "success", |_: &Value| server_target.clone(), {
        panel
            .json(Method::PUT, &format!("/api/servers/{server}/subusers/{me}"), &admin, json!({"permissions": []}))
            .await
    });
    audited!(panel, me, "subuser.delete", "success", |_: &Value| server_target.clone(), {
        panel.delete(&format!("/api/servers/{server}/subusers/{me}"), &admin).await
    });

    // A failed action: the template is in use.
    let (status, _) = audited!(panel, me, "template.delete", "failed", |_: &Value| template_target.clone(), {
        panel.delete(&format!("/api/templates/{template}"), &admin).await
    });
    assert_eq!(status, StatusCode::CONFLICT);
    audited!(panel, me, "server.delete", "success", |_: &Value| server_target.clone(), {
        panel.delete(&format!("/api/servers/{server}"), &admin).await
    });
    audited!(panel, me, "template.delete", "success", |_: &Value| template_target.clone(), {
        panel.delete(&format!("/api/templates/{template}"), &admin).await
    });
    let imported_target = format!("template:{}", id(&imported));
    audited!(panel, me, "template.delete", "success", |_: &Value| imported_target.clone(), {
        panel.delete(&format!("/api/templates/{}", id(&imported)), &admin).await
    });
    audited!(panel, me, "node.delete", "success", |_: &Value| node_target.clone(), {
        panel.delete(&format!("/api/nodes/{node}"), &admin).await
    });
    audited!(panel, me, "role.delete", "success", |_: &Value| role_target.clone(), {
        panel.delete(&format!("/api/roles/{role}"), &admin).await
    });
    audited!(panel, me, "user.delete", "success", |_: &Value| carol_target.clone(), {
        panel.delete(&format!("/api/users/{carol}"), &admin).await
    });

    // The account itself.
    let (_, k) = audited!(
        panel,
        me,
        "api_key.create",
        "success",
        |b: &Value| format!("api_key:{}", b["key"]["id"].as_str().unwrap()),
        { panel.post("/api/me/api-keys", &admin, json!({"name": "ci", "permissions": []})).await }
    );
    let key = k["key"]["id"].as_str().unwrap().to_string();
    audited!(panel, me, "api_key.revoke", "success", |_: &Value| format!("api_key:{key}"), {
        panel.delete(&format!("/api/me/api-keys/{key}"), &admin).await
    });
    let me_target = format!("user:{me}");
    audited!(panel, me, "user.password_change", "denied", |_: &Value| me_target.clone(), {
        panel
            .json(
                Method::PUT,
                "/api/me/password",
                &admin,
                json!({"current_password": "wrong password", "new_password": "new password 456"}),
            )
            .await
    });
    let (status, _) = audited!(panel, me, "user.totp_enable", "failed", |_: &Value| me_target.clone(), {
        panel.post("/api/me/totp/confirm", &admin, json!({"code": "123456"})).await
    });
    assert_eq!(status, StatusCode::CONFLICT, "nothing pending");
    audited!(panel, me, "user.totp_disable", "failed", |_: &Value| me_target.clone(), {
        panel.json(Method::DELETE, "/api/me/totp", &admin, json!({"code": "123456"})).await
    });
    audited!(panel, me, "auth.logout", "success", |_: &Value| me_target.clone(), {
        let (status, body, _) = panel.send(Method::POST, "/api/auth/logout", &admin, None, None).await;
        (status, body)
    });
    let other = panel.login_admin().await;
    audited!(panel, me, "auth.logout_all", "success", |_: &Value| me_target.clone(), {
        let (status, body, _) = panel.send(Method::POST, "/api/auth/logout-all", &other, None, None).await;
        (status, body)
    });
    let fresh = panel.login_admin().await;
    audited!(panel, me, "user.password_change", "success", |_: &Value| me_target.clone(), {
        panel
            .json(
                Method::PUT,
                "/api/me/password",
                &fresh,
                json!({"current_password": ADMIN_PASSWORD, "new_password": "new password 456"}),
            )
            .await
    });
    let (session, _) = panel.login_full(ADMIN_EMAIL, "new password 456").await;
    audited!(panel, me, "auth.refresh", "success", |_: &Value| me_target.clone(), {
        panel.post("/api/auth/refresh", &Cred::None, json!({"refresh_token": session["refresh_token"]})).await
    });
}

#[tokio::test]
async fn denied_and_failed_attempts_are_recorded_as_such() {
    let panel = TestPanel::start().await;
    let (bob, bob_cred) = panel.user("bob", &[]).await;
    panel.clock.advance_secs(1);
    let got = panel
        .post("/api/nodes", &bob_cred, json!({"name": "n", "fqdn": "n.example.org", "memory_mb": 1, "disk_mb": 1}))
        .await;
    assert_error(&got, 403, "forbidden");
    let event = panel.last_audit("node.create").await;
    assert_eq!(
        (event["actor_id"].as_str(), event["result"].as_str(), event["ip"].as_str()),
        (Some(bob.as_str()), Some("denied"), Some("127.0.0.1"))
    );
    assert_eq!(event["target"], "");

    // A conflict is a failure, with the reason.
    panel.node("n1", 0).await;
    panel.clock.advance_secs(1);
    let dup = panel
        .post(
            "/api/nodes",
            &panel.admin().await,
            json!({"name": "n1", "fqdn": "n.example.org", "memory_mb": 1, "disk_mb": 1}),
        )
        .await;
    assert_error(&dup, 409, "conflict");
    let event = panel.last_audit("node.create").await;
    assert_eq!(event["result"], "failed");
    assert!(event["detail"]["error"].is_string(), "{event}");

    // Invalid input that got past parsing is a failure too.
    panel.clock.advance_secs(1);
    let bad = panel.post("/api/roles", &panel.admin().await, json!({"name": " padded", "permissions": []})).await;
    assert_error(&bad, 422, "invalid");
    assert_eq!(panel.last_audit("role.create").await["result"], "failed");

    // A failed login names no actor, but the address and the email tried.
    panel.clock.advance_secs(1);
    let login = panel
        .post("/api/auth/login", &Cred::None, json!({"email": "Bob@Example.org", "password": "wrong password"}))
        .await;
    assert_error(&login, 401, "unauthorized");
    let event = panel.last_audit("auth.login").await;
    assert_eq!(event["result"], "failed");
    assert_eq!(event["actor_id"], Value::Null);
    assert_eq!(event["ip"], "127.0.0.1");
    assert_eq!(event["detail"]["email"], "bob@example.org");
    assert!(!event.to_string().contains("wrong password"));
}

#[tokio::test]
async fn the_log_pages_newest_first_and_filters() {
    let panel = TestPanel::start().await;
    let admin = panel.admin().await;
    let (bob, bob_cred) = panel.user("bob", &[]).await;
    let mut roles = Vec::new();
    for i in 0..5 {
        panel.clock.advance_secs(1);
        roles.push(panel.role(&format!("role-{i}"), &[]).await);
    }
    panel.clock.advance_secs(1);
    assert_error(&panel.post("/api/roles", &bob_cred, json!({"name": "x", "permissions": []})).await, 403, "forbidden");

    let (status, first) = panel.get("/api/audit?action=role.create&per_page=2", &admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (first["total"].as_u64(), first["page"].as_u64(), first["per_page"].as_u64()),
        (Some(6), Some(1), Some(2))
    );
    let mut seen = Vec::new();
    for page in 1..=3 {
        let (_, body) = panel.get(&format!("/api/audit?action=role.create&per_page=2&page={page}"), &admin).await;
        seen.extend(body["data"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(seen.len(), 6, "three pages hold every event once");
    let times: Vec<&str> = seen.iter().map(|e| e["at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
    assert_eq!(seen[0]["result"], "denied", "the newest is bob's refused attempt");
    let targets: Vec<String> = seen[1..].iter().map(|e| e["target"].as_str().unwrap().to_string()).collect();
    let expected: Vec<String> = roles.iter().rev().map(|r| format!("role:{r}")).collect();
    assert_eq!(targets, expected);

    let (_, denied) = panel.get("/api/audit?result=denied", &admin).await;
    assert_eq!(denied["total"], 1);
    assert_eq!(denied["data"][0]["actor_id"], bob.as_str());
    let (_, by_bob) = panel.get(&format!("/api/audit?actor_id={bob}"), &admin).await;
    assert!(by_bob["data"].as_array().unwrap().iter().all(|e| e["actor_id"] == bob.as_str()));
    let (_, by_target) = panel.get(&format!("/api/audit?target=role:{}", roles[2]), &admin).await;
    assert_eq!(by_target["total"], 1);
    let since = panel.clock.now().to_rfc3339().replace('+', "%2B");
    let (_, recent) = panel.get(&format!("/api/audit?since={since}"), &admin).await;
    assert_eq!(recent["total"], 1, "only bob's attempt is that recent: {recent}");

    // mine=true: your own actions, whoever you are.
    let (_, mine) = panel.get("/api/audit?mine=true", &bob_cred).await;
    assert!(mine["total"].as_u64().unwrap() >= 2, "bob's login and refused attempt: {mine}");
    assert!(mine["data"].as_array().unwrap().iter().all(|e| e["actor_id"] == bob.as_str()), "{mine}");
    let (_, admin_mine) = panel.get("/api/audit?mine=true&action=role.", &admin).await;
    assert_eq!(admin_mine["total"], 5);
    // Without SYSTEM_AUDIT and without mine=true, bob sees no panel-wide events.
    assert_eq!(panel.get("/api/audit", &bob_cred).await.1["total"], 0);
    let (_, mine) = panel.get(&format!("/api/audit?mine=true&actor_id={}", panel.admin_id().await), &bob_cred).await;
    assert!(
        mine["data"].as_array().unwrap().iter().all(|e| e["actor_id"] == bob.as_str()),
        "mine=true wins over actor_id"
    );
}

#[tokio::test]
async fn owners_read_their_servers_history_and_nothing_else() {
    let panel = TestPanel::start().await;
    let (owner, owner_cred) = panel.user("owner", &[]).await;
    let (_, _, server) = panel.server_setup(&owner).await;
    panel.json(Method::PATCH, &format!("/api/servers/{server}"), &owner_cred, json!({"name": "renamed"})).await;
    let (status, page) = panel.get("/api/audit", &owner_cred).await;
    assert_eq!(status, StatusCode::OK);
    let actions: Vec<&str> = page["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["server.update", "server.create"], "the server's events, nothing panel-wide");
    assert!(page["data"].as_array().unwrap().iter().all(|e| e["server_id"] == server.as_str()));
    let (_, login) =
        panel.post("/api/auth/login", &Cred::None, json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})).await;
    assert!(login["access_token"].is_string());
    assert_eq!(panel.get("/api/audit?action=auth.", &owner_cred).await.1["total"], 0);
}
