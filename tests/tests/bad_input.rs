//! Hostile and broken input: every mutating route answers a 4xx JSON error naming what is
//! wrong, and writes nothing.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use cap_tests::{Counts, Cred, TestPanel, assert_error};
use serde_json::{Value, json};

/// A panel with one of everything, and ids to aim at.
struct Fixture {
    panel: TestPanel,
    admin: Cred,
    user: String,
    role: String,
    node: String,
    template: String,
    server: String,
}

async fn fixture() -> Fixture {
    let panel = TestPanel::start().await;
    let admin = panel.admin().await;
    let (user, _) = panel.user("victim", &[]).await;
    let role = panel.role("helpers", &["SERVER_VIEW"]).await;
    let (node, template, server) = panel.server_setup(&user).await;
    Fixture { panel, admin, user, role, node, template, server }
}

/// One mutating route with a JSON body: a body it would accept, and one with a wrong type at
/// `field`.
struct Route {
    method: Method,
    path: String,
    valid: Value,
    wrong: Value,
    field: &'static str,
}

fn route(method: Method, path: String, valid: Value, wrong: Value, field: &'static str) -> Route {
    Route { method, path, valid, wrong, field }
}

fn limits() -> Value {
    json!({"memory_mb": 256, "swap_mb": 0, "cpu_percent": 100, "disk_mb": 1024, "io_weight": 500, "pids": 64})
}

fn template_body(name: &str) -> Value {
    json!({"name": name, "startup": "./run --port {{SERVER_PORT}}", "stop": {"type": "command", "value": "stop"}})
}

fn routes(f: &Fixture) -> Vec<Route> {
    let (user, role, node, template, server) = (&f.user, &f.role, &f.node, &f.template, &f.server);
    let srv = format!("/api/servers/{server}");
    vec![
        route(
            Method::POST,
            "/api/auth/login".into(),
            json!({"email": "nobody@example.org", "password": "not a password"}),
            json!({"email": 5, "password": "x"}),
            "email",
        ),
        route(
            Method::POST,
            "/api/auth/refresh".into(),
            json!({"refresh_token": "not a token"}),
            json!({"refresh_token": 5}),
            "refresh_token",
        ),
        route(
            Method::PUT,
            "/api/me/password".into(),
            json!({"current_password": "not the password", "new_password": "another password"}),
            json!({"current_password": [], "new_password": "another password"}),
            "current_password",
        ),
        route(Method::POST, "/api/me/totp/confirm".into(), json!({"code": "123456"}), json!({"code": 123456}), "code"),
        route(Method::DELETE, "/api/me/totp".into(), json!({"code": "123456"}), json!({"code": true}), "code"),
        route(
            Method::POST,
            "/api/me/api-keys".into(),
            json!({"name": "k", "permissions": []}),
            json!({"name": "k", "permissions": ["SERVER_FLY"]}),
            "permissions[0]",
        ),
        route(
            Method::POST,
            "/api/users".into(),
            json!({"username": "newbie", "email": "newbie@example.org", "password": "long enough 1"}),
            json!({"username": 1, "email": "newbie@example.org", "password": "long enough 1"}),
            "username",
        ),
        route(
            Method::PATCH,
            format!("/api/users/{user}"),
            json!({"username": "renamed"}),
            json!({"disabled": "yes"}),
            "disabled",
        ),
        route(
            Method::PUT,
            format!("/api/users/{user}/roles"),
            json!({"roles": ["user"]}),
            json!({"roles": "user"}),
            "roles",
        ),
        route(
            Method::POST,
            "/api/roles".into(),
            json!({"name": "r", "permissions": []}),
            json!({"name": "r", "permissions": [1]}),
            "permissions[0]",
        ),
        route(Method::PATCH, format!("/api/roles/{role}"), json!({"description": "d"}), json!({"name": false}), "name"),
        route(
            Method::POST,
            "/api/nodes".into(),
            json!({"name": "n2", "fqdn": "n.example.org", "memory_mb": 1, "disk_mb": 1}),
            json!({"name": "n2", "fqdn": "n.example.org", "memory_mb": "lots", "disk_mb": 1}),
            "memory_mb",
        ),
        route(Method::PATCH, format!("/api/nodes/{node}"), json!({"name": "x"}), json!({"disk_mb": 1.5}), "disk_mb"),
        route(
            Method::POST,
            format!("/api/nodes/{node}/allocations"),
            json!({"ip": "10.0.0.9", "ports": [40000]}),
            json!({"ip": 10, "ports": [40000]}),
            "ip",
        ),
        route(
            Method::POST,
            "/api/templates".into(),
            template_body("t2"),
            json!({"name": "t2", "startup": "./run", "stop": {"type": "command", "value": "stop"},
                   "variables": [{"name": "V", "env": "V", "user_editable": "no"}]}),
            "variables[0].user_editable",
        ),
        route(Method::PUT, format!("/api/templates/{template}"), template_body("t3"), json!({"name": ["t3"]}), "name"),
        route(
            Method::POST,
            "/api/servers".into(),
            json!({"name": "s2", "node_id": node, "template_id": template, "limits": limits()}),
            json!({"name": "s2", "node_id": node, "template_id": template,
                   "limits": {"memory_mb": "big", "swap_mb": 0, "cpu_percent": 100, "disk_mb": 1024, "io_weight": 500, "pids": 64}}),
            "limits.memory_mb",
        ),
        route(
            Method::PATCH,
            srv.clone(),
            json!({"name": "x"}),
            json!({"limits": {"io_weight": "heavy"}}),
            "limits.io_weight",
        ),
        route(
            Method::PUT,
            format!("{srv}/variables"),
            json!({"values": {"GREETING": "x"}}),
            json!({"values": {"GREETING": 5}}),
            "values.GREETING",
        ),
        route(Method::POST, format!("{srv}/power"), json!({"action": "start"}), json!({"action": "explode"}), "action"),
        route(Method::POST, format!("{srv}/command"), json!({"command": "x"}), json!({"command": ["x"]}), "command"),
        route(
            Method::POST,
            "/api/servers/bulk/power".into(),
            json!({"server_ids": [server], "action": "stop"}),
            json!({"server_ids": [1], "action": "stop"}),
            "server_ids[0]",
        ),
        route(
            Method::POST,
            format!("{srv}/subusers"),
            json!({"email": "admin@example.org", "permissions": []}),
            json!({"email": "admin@example.org", "permissions": {}}),
            "permissions",
        ),
        route(
            Method::PUT,
            format!("{srv}/subusers/{user}"),
            json!({"permissions": []}),
            json!({"permissions": null}),
            "permissions",
        ),
    ]
}

async fn send(
    f: &Fixture,
    method: &Method,
    path: &str,
    body: impl Into<Body>,
    content_type: Option<&str>,
) -> (StatusCode, Value) {
    let (status, body, _) = f.panel.send(method.clone(), path, &f.admin, Some(body.into()), content_type).await;
    (status, body)
}

/// Everything that a request could have written, beyond the row counts.
async fn state(f: &Fixture) -> (Counts, Value) {
    let server = f.panel.db.servers().get(f.server.parse().unwrap()).await.unwrap();
    let user = f.panel.db.users().get(f.user.parse().unwrap()).await.unwrap();
    let role = f.panel.db.roles().get(f.role.parse().unwrap()).await.unwrap();
    let node = f.panel.db.nodes().get(f.node.parse().unwrap()).await.unwrap();
    let template = f.panel.db.templates().get(f.template.parse().unwrap()).await.unwrap();
    let detail = json!({
        "server": [server.name, server.description, server.state.as_str(), serde_json::to_string(&server.limits).unwrap(), serde_json::to_string(&server.environment).unwrap()],
        "subusers": f.panel.db.servers().list_subusers(server.id).await.unwrap().len(),
        "user": [user.username, user.email, user.disabled.to_string(), user.password_hash],
        "roles": f.panel.db.roles().roles_of(user.id).await.unwrap().iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        "role": [role.name, role.description, role.permissions.names().join(",")],
        "node": [node.name, node.memory_mb.to_string(), node.disk_mb.to_string()],
        "template": serde_json::to_value(&template.spec).unwrap(),
        "api_keys": f.panel.auth.list_api_keys(user.id).await.unwrap().len(),
    });
    (f.panel.counts().await, detail)
}

#[tokio::test]
async fn broken_bodies_are_refused_on_every_mutating_route_and_write_nothing() {
    let f = fixture().await;
    let before = state(&f).await;
    let oversized = format!("{{\"name\": \"{}\"}}", "x".repeat(1024 * 1024 + 1));
    for r in routes(&f) {
        let at = format!("{} {}", r.method, r.path);

        for malformed in [r#"{"unterminated"#, "{'single': 1}", "{,}", "\u{feff}{}"] {
            let got = send(&f, &r.method, &r.path, malformed, Some("application/json")).await;
            assert_eq!(got.0, StatusCode::BAD_REQUEST, "{at} with {malformed:?}: {}", got.1);
            assert_error(&got, 400, "invalid_json");
        }
        let got = send(&f, &r.method, &r.path, format!("{} trailing", r.valid), Some("application/json")).await;
        assert_error(&got, 400, "invalid_json");

        for content_type in
            [None, Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("application/jsonx")]
        {
            let got = send(&f, &r.method, &r.path, r.valid.to_string(), content_type).await;
            assert_eq!(got.0, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{at} with {content_type:?}: {}", got.1);
            assert_error(&got, 415, "unsupported_media_type");
        }

        let got = send(&f, &r.method, &r.path, oversized.clone(), Some("application/json")).await;
        assert_eq!(got.0, StatusCode::PAYLOAD_TOO_LARGE, "{at}: {}", got.1);
        assert_error(&got, 413, "payload_too_large");

        let mut unknown = json!({"bogus_field": 1});
        unknown.as_object_mut().unwrap().extend(r.valid.as_object().unwrap().clone());
        let got = send(&f, &r.method, &r.path, unknown.to_string(), Some("application/json")).await;
        let message = assert_error(&got, 422, "invalid");
        assert!(message.contains("bogus_field"), "{at}: {message}");

        let got = send(&f, &r.method, &r.path, r.wrong.to_string(), Some("application/json; charset=utf-8")).await;
        let message = assert_error(&got, 422, "invalid");
        assert!(message.starts_with(&format!("{}:", r.field)), "{at}: `{message}` must name {}", r.field);

        // An array would otherwise be read as a struct's fields in order.
        for not_an_object in ["null", "\"text\"", "42", "true", "[]", r#"["a@example.org", "password"]"#] {
            let got = send(&f, &r.method, &r.path, not_an_object, Some("application/json")).await;
            let message = assert_error(&got, 422, "invalid");
            assert_eq!(message, "the body must be a JSON object", "{at} with {not_an_object}");
        }
        assert_eq!(state(&f).await, before, "{at} wrote something");
    }
}

#[tokio::test]
async fn egg_import_takes_any_text_but_still_bounds_and_checks_it() {
    let f = fixture().await;
    let before = state(&f).await;
    let oversized = format!("{{\"name\": \"{}\"}}", "x".repeat(1024 * 1024 + 1));
    let got = send(&f, &Method::POST, "/api/templates/import", oversized, Some("application/json")).await;
    assert_error(&got, 413, "payload_too_large");
    for (body, content_type) in
        [(r#"{"meta": "#, "application/json"), ("a: [b", "application/yaml"), ("", "text/plain")]
    {
        let got = send(&f, &Method::POST, "/api/templates/import", body, Some(content_type)).await;
        assert!(assert_error(&got, 422, "invalid").starts_with("egg:"), "{body}");
    }
    assert_eq!(state(&f).await, before);
}

#[tokio::test]
async fn names_are_data_sql_and_unicode_round_trip_exactly() {
    let f = fixture().await;
    let (panel, admin) = (&f.panel, &f.admin);
    let users_before = panel.counts().await.users;
    let sql = "Robert'); DROP TABLE users;--";
    let emoji = "🦀 Ferris' «wörld» 日本語 ✓ \"quoted\" %_\\";
    for name in [sql, emoji] {
        let body = json!({"name": name, "description": format!("{name}\nsecond line"), "node_id": f.node, "template_id": f.template, "limits": limits()});
        let (status, created) = panel.post("/api/servers", admin, body).await;
        assert_eq!(status, StatusCode::OK, "{created}");
        let (_, shown) = panel.get(&format!("/api/servers/{}", created["id"].as_str().unwrap()), admin).await;
        assert_eq!(shown["name"], name);
        assert_eq!(shown["description"], format!("{name}\nsecond line"));

        let (status, node) = panel
            .post("/api/nodes", admin, json!({"name": name, "fqdn": "n.example.org", "memory_mb": 1, "disk_mb": 1}))
            .await;
        assert_eq!(status, StatusCode::OK, "{node}");
        assert_eq!(node["node"]["name"], name);
        let (status, role) =
            panel.post("/api/roles", admin, json!({"name": name, "description": name, "permissions": []})).await;
        assert_eq!(status, StatusCode::OK, "{role}");
        assert_eq!(role["name"], name);
        let (status, template) = panel.post("/api/templates", admin, template_body(name)).await;
        assert_eq!(status, StatusCode::OK, "{template}");
        let (_, shown) = panel.get(&format!("/api/templates/{}", template["id"].as_str().unwrap()), admin).await;
        assert_eq!(shown["spec"]["name"], name);
        let (status, key) = panel.post("/api/me/api-keys", admin, json!({"name": name, "permissions": []})).await;
        assert_eq!(status, StatusCode::OK, "{key}");
        assert_eq!(key["key"]["name"], name);
    }
    assert_eq!(panel.counts().await.users, users_before, "the users table is still there");
    assert_eq!(panel.get("/api/users", admin).await.1["total"], users_before);

    // Search takes them literally too: `%` and `_` are not wildcards, quotes are not syntax.
    let search = |q: &str| format!("/api/servers?q={}", q);
    assert_eq!(panel.get(&search("Robert%27)%3B%20DROP"), admin).await.1["total"], 1);
    assert_eq!(panel.get(&search("%25_%5C"), admin).await.1["total"], 1, "only the name that holds `%_\\`");
    assert_eq!(panel.get(&search("%25"), admin).await.1["total"], 1);
    assert_eq!(panel.get(&search("%27%20OR%20%271%27%3D%271"), admin).await.1["total"], 0);
    assert_eq!(panel.get(&search("%F0%9F%A6%80"), admin).await.1["total"], 1, "emoji search");
    assert_eq!(panel.get("/api/users?q=%25", admin).await.1["total"], 0);
}

#[tokio::test]
async fn control_characters_and_edge_whitespace_in_names_are_refused() {
    let f = fixture().await;
    let (panel, admin) = (&f.panel, &f.admin);
    let before = state(&f).await;
    for bad in [
        "bell\u{7}",
        "nul\u{0}byte",
        "line\nbreak",
        "tab\there",
        "esc\u{1b}[31m",
        " leading",
        "trailing ",
        "",
        "\u{85}next",
    ] {
        let attempts = [
            panel
                .post(
                    "/api/servers",
                    admin,
                    json!({"name": bad, "node_id": f.node, "template_id": f.template, "limits": limits()}),
                )
                .await,
            panel.json(Method::PATCH, &format!("/api/servers/{}", f.server), admin, json!({"name": bad})).await,
            panel
                .post("/api/nodes", admin, json!({"name": bad, "fqdn": "n.example.org", "memory_mb": 1, "disk_mb": 1}))
                .await,
            panel.json(Method::PATCH, &format!("/api/nodes/{}", f.node), admin, json!({"name": bad})).await,
            panel.post("/api/roles", admin, json!({"name": bad, "permissions": []})).await,
            panel.json(Method::PATCH, &format!("/api/roles/{}", f.role), admin, json!({"name": bad})).await,
            panel.post("/api/templates", admin, template_body(bad)).await,
            panel.json(Method::PUT, &format!("/api/templates/{}", f.template), admin, template_body(bad)).await,
            panel.post("/api/me/api-keys", admin, json!({"name": bad, "permissions": []})).await,
        ];
        for (i, got) in attempts.iter().enumerate() {
            let message = assert_error(got, 422, "invalid");
            assert!(message.starts_with("name:"), "attempt {i} with {bad:?}: {message}");
        }
    }
    let description = panel
        .json(Method::PATCH, &format!("/api/servers/{}", f.server), admin, json!({"description": "a\u{0}b"}))
        .await;
    assert!(assert_error(&description, 422, "invalid").starts_with("description:"));
    let user = panel
        .post(
            "/api/users",
            admin,
            json!({"username": "Robert'); DROP TABLE users;--", "email": "r@example.org", "password": "long enough 1"}),
        )
        .await;
    assert!(assert_error(&user, 422, "invalid").starts_with("username:"));
    let user = panel
        .post(
            "/api/users",
            admin,
            json!({"username": "robert", "email": "robert@exa mple.org", "password": "long enough 1"}),
        )
        .await;
    assert!(assert_error(&user, 422, "invalid").starts_with("email:"));
    let user = panel
        .post("/api/users", admin, json!({"username": "robert", "email": "robert@example.org", "password": "short"}))
        .await;
    assert!(assert_error(&user, 422, "invalid").starts_with("password:"));
    assert_eq!(state(&f).await, before);
}

#[tokio::test]
async fn ports_out_of_range_are_refused_naming_the_entry() {
    let f = fixture().await;
    let (panel, admin) = (&f.panel, &f.admin);
    let path = format!("/api/nodes/{}/allocations", f.node);
    let before = state(&f).await;
    for (ports, field) in [
        (json!([80]), "ports[0]"),
        (json!([1023]), "ports[0]"),
        (json!([65536]), "ports[0]"),
        (json!([-1]), "ports[0]"),
        (json!([40000, 0]), "ports[1]"),
        (json!(["a-b"]), "ports[0]"),
        (json!(["40000"]), "ports[0]"),
        (json!(["40010-40000"]), "ports[0]"),
        (json!(["40000-41000"]), "ports[0]"),
        (json!(["1000-1100"]), "ports[0]"),
        (json!(["65000-65536"]), "ports[0]"),
        (json!([1.5]), "ports[0]"),
        (json!([true]), "ports[0]"),
        (json!([]), "ports"),
        (json!([40000, "39999-40001"]), "ports"),
        (json!((40000..41001).collect::<Vec<i64>>()), "ports"),
    ] {
        let got = panel.post(&path, admin, json!({"ip": "10.0.0.9", "ports": ports})).await;
        let message = assert_error(&got, 422, "invalid");
        assert!(message.starts_with(&format!("{field}:")), "{ports}: {message}");
    }
    let got = panel.post(&path, admin, json!({"ip": "10.0.0.300", "ports": [40000]})).await;
    assert!(assert_error(&got, 422, "invalid").starts_with("ip:"));
    // Partly taken: refused as a whole, and none of the free ones is added.
    let got = panel.post(&path, admin, json!({"ip": "127.0.0.1", "ports": ["30005-30015"]})).await;
    assert_error(&got, 409, "conflict");
    assert_eq!(state(&f).await, before);
    // A full range of 1000 is the limit, and fine.
    let (status, added) = panel.post(&path, admin, json!({"ip": "10.0.0.9", "ports": ["40000-40999"]})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(added.as_array().unwrap().len(), 1000);
}

#[tokio::test]
async fn limits_out_of_range_are_refused_naming_the_field() {
    let f = fixture().await;
    let (panel, admin) = (&f.panel, &f.admin);
    let before = state(&f).await;
    for (field, value) in [
        ("memory_mb", 0),
        ("memory_mb", 15),
        ("memory_mb", -1),
        ("io_weight", 5000),
        ("io_weight", 9),
        ("swap_mb", -2),
        ("cpu_percent", -1),
        ("disk_mb", -1),
        ("pids", -1),
        ("pids", 1i64 << 40),
    ] {
        let mut l = limits();
        l[field] = json!(value);
        let expected = format!("limits.{field}:");
        let create = panel
            .post(
                "/api/servers",
                admin,
                json!({"name": "s", "node_id": f.node, "template_id": f.template, "limits": l}),
            )
            .await;
        assert!(assert_error(&create, 422, "invalid").starts_with(&expected), "create {field}={value}: {}", create.1);
        let update =
            panel.json(Method::PATCH, &format!("/api/servers/{}", f.server), admin, json!({"limits": l})).await;
        assert!(assert_error(&update, 422, "invalid").starts_with(&expected), "update {field}={value}: {}", update.1);
    }
    let missing = panel
        .json(Method::PATCH, &format!("/api/servers/{}", f.server), admin, json!({"limits": {"memory_mb": 512}}))
        .await;
    assert!(assert_error(&missing, 422, "invalid").starts_with("limits:"), "{}", missing.1);
    for (field, value) in
        [("memory_mb", 0), ("disk_mb", -5), ("memory_overallocate", -2), ("disk_overallocate", 10_001)]
    {
        let mut node = json!({"name": "n9", "fqdn": "n.example.org", "memory_mb": 1, "disk_mb": 1});
        node[field] = json!(value);
        let got = panel.post("/api/nodes", admin, node).await;
        assert!(assert_error(&got, 422, "invalid").starts_with(&format!("{field}:")), "{field}={value}: {}", got.1);
        let got = panel.json(Method::PATCH, &format!("/api/nodes/{}", f.node), admin, json!({field: value})).await;
        assert!(assert_error(&got, 422, "invalid").starts_with(&format!("{field}:")), "{field}={value}: {}", got.1);
    }
    let fqdn =
        panel.post("/api/nodes", admin, json!({"name": "n9", "fqdn": "bad_host!", "memory_mb": 1, "disk_mb": 1})).await;
    assert!(assert_error(&fqdn, 422, "invalid").starts_with("fqdn:"));
    // Variables follow the template's rules.
    let vars = format!("/api/servers/{}/variables", f.server);
    let long = panel.json(Method::PUT, &vars, admin, json!({"values": {"GREETING": "x".repeat(33)}})).await;
    assert!(assert_error(&long, 422, "invalid").contains("GREETING"), "{}", long.1);
    let unknown = panel.json(Method::PUT, &vars, admin, json!({"values": {"NOPE": "x"}})).await;
    assert!(assert_error(&unknown, 422, "invalid").starts_with("values.NOPE:"));
    let env = panel.post("/api/servers", admin, json!({"name": "s", "node_id": f.node, "template_id": f.template, "environment": {"HIDDEN_SEED": "not a number"}})).await;
    assert!(assert_error(&env, 422, "invalid").contains("HIDDEN_SEED"), "{}", env.1);
    // Console lines and bulk requests are bounded.
    let command = format!("/api/servers/{}/command", f.server);
    assert!(
        assert_error(&panel.post(&command, admin, json!({"command": ""})).await, 422, "invalid")
            .starts_with("command:")
    );
    let long = json!({"command": "x".repeat(4097)});
    assert!(assert_error(&panel.post(&command, admin, long).await, 422, "invalid").starts_with("command:"));
    let many: Vec<String> = (0..101).map(|_| f.server.clone()).collect();
    let bulk = panel.post("/api/servers/bulk/power", admin, json!({"server_ids": many, "action": "start"})).await;
    assert!(assert_error(&bulk, 422, "invalid").starts_with("server_ids:"));
    let none = panel.post("/api/servers/bulk/power", admin, json!({"server_ids": [], "action": "start"})).await;
    assert!(assert_error(&none, 422, "invalid").starts_with("server_ids:"));
    // Unknown references are the caller's mistake, named.
    let random = "7a0c3c59-4c1e-4b55-9d1e-3f0b8f1d2e77";
    for (field, body) in [
        ("node_id", json!({"name": "s", "node_id": random, "template_id": f.template})),
        ("template_id", json!({"name": "s", "node_id": f.node, "template_id": random})),
        ("owner_id", json!({"name": "s", "node_id": f.node, "template_id": f.template, "owner_id": random})),
    ] {
        let got = panel.post("/api/servers", admin, body).await;
        assert!(assert_error(&got, 422, "invalid").starts_with(&format!("{field}:")), "{}", got.1);
    }
    let login = panel
        .post("/api/auth/login", &Cred::None, json!({"email": "admin@example.org", "password": "x".repeat(5000)}))
        .await;
    assert!(assert_error(&login, 422, "invalid").starts_with("password:"), "{}", login.1);
    let login = panel
        .post(
            "/api/auth/login",
            &Cred::None,
            json!({"email": format!("{}@example.org", "x".repeat(300)), "password": "x"}),
        )
        .await;
    assert!(assert_error(&login, 422, "invalid").starts_with("email:"), "{}", login.1);
    assert_eq!(state(&f).await, before);
}

#[tokio::test]
async fn hostile_path_segments_are_json_not_found() {
    let f = fixture().await;
    let (panel, admin) = (&f.panel, &f.admin);
    let before = state(&f).await;
    let random = "7a0c3c59-4c1e-4b55-9d1e-3f0b8f1d2e77";
    let mut paths = Vec::new();
    for id in [
        "..%2F..%2Fetc",
        "..%2F..%2Fetc%2Fpasswd",
        "not-a-uuid",
        random,
        "%00",
        "%FF%FE",
        "1%20OR%201%3D1",
        "%27%3B--",
        "..",
        "%2e%2e",
    ] {
        for resource in ["servers", "users", "nodes", "roles", "templates"] {
            paths.push((Method::DELETE, format!("/api/{resource}/{id}")));
            if resource != "roles" {
                paths.push((Method::GET, format!("/api/{resource}/{id}")));
            }
        }
        paths.push((Method::GET, format!("/api/servers/{id}/variables")));
        paths.push((Method::GET, format!("/api/templates/{id}/export")));
        paths.push((Method::DELETE, format!("/api/me/api-keys/{id}")));
        paths.push((Method::DELETE, format!("/api/servers/{}/subusers/{id}", f.server)));
        paths.push((Method::DELETE, format!("/api/nodes/{}/allocations/{id}", f.node)));
    }
    paths.push((Method::GET, "/api/nothing-here".into()));
    paths.push((Method::GET, "/api/servers/../users".into()));
    paths.push((Method::GET, format!("/api/servers/{}/nothing", f.server)));
    paths.push((Method::GET, "/etc/passwd".into()));
    for (method, path) in paths {
        let (status, body, _) = panel.send(method.clone(), &path, admin, None, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
        assert_error(&(status, body), 404, "not_found");
    }
    for (method, path, body) in [
        (Method::PATCH, format!("/api/servers/{random}"), json!({"name": "x"})),
        (Method::POST, format!("/api/servers/{random}/power"), json!({"action": "start"})),
        (Method::POST, "/api/servers/not-a-uuid/command".to_string(), json!({"command": "x"})),
        (Method::PUT, "/api/users/%FF/roles".to_string(), json!({"roles": []})),
    ] {
        let got = panel.json(method, &path, admin, body).await;
        assert_eq!(got.0, StatusCode::NOT_FOUND, "{path}: {}", got.1);
    }
    assert_eq!(state(&f).await, before);
}

#[tokio::test]
async fn methods_a_route_does_not_have_are_json_errors() {
    let f = fixture().await;
    for (method, path) in [
        (Method::PUT, "/api/servers".to_string()),
        (Method::DELETE, "/api/users".to_string()),
        (Method::GET, "/api/auth/login".to_string()),
        (Method::POST, format!("/api/servers/{}", f.server)),
        (Method::PATCH, "/health".to_string()),
    ] {
        let (status, body, headers) = f.panel.send(method.clone(), &path, &f.admin, None, None).await;
        assert_error(&(status, body), 405, "method_not_allowed");
        assert!(headers.get("allow").is_some(), "{method} {path} names the allowed methods");
    }
}

#[tokio::test]
async fn paging_parameters_are_bounded() {
    let f = fixture().await;
    for list in ["/api/servers", "/api/users", "/api/roles", "/api/nodes", "/api/templates", "/api/audit"] {
        for (query, field) in [("per_page=1000", "per_page"), ("per_page=0", "per_page"), ("page=0", "page")] {
            let got = f.panel.get(&format!("{list}?{query}"), &f.admin).await;
            assert!(assert_error(&got, 422, "invalid").starts_with(&format!("{field}:")), "{list}?{query}: {}", got.1);
        }
        for query in ["per_page=abc", "page=-1", "per_page=99999999999"] {
            assert_error(&f.panel.get(&format!("{list}?{query}"), &f.admin).await, 400, "invalid_query");
        }
        let (status, page) = f.panel.get(&format!("{list}?per_page=100&page=7"), &f.admin).await;
        assert_eq!(status, StatusCode::OK, "{list}: {page}");
        assert_eq!(page["data"], json!([]), "a page past the end is empty");
    }
    let path = format!("/api/nodes/{}/allocations?per_page=1000", f.node);
    assert_error(&f.panel.get(&path, &f.admin).await, 422, "invalid");
    for query in ["state=exploded", "owner_id=not-a-uuid", "node_id=1"] {
        assert_error(&f.panel.get(&format!("/api/servers?{query}"), &f.admin).await, 400, "invalid_query");
    }
    for query in ["result=maybe", "since=yesterday", "server_id=..%2F"] {
        assert_error(&f.panel.get(&format!("/api/audit?{query}"), &f.admin).await, 400, "invalid_query");
    }
}

#[tokio::test]
async fn a_request_with_no_credential_learns_nothing() {
    let f = fixture().await;
    let before = state(&f).await;
    for r in routes(&f).into_iter().filter(|r| !r.path.starts_with("/api/auth/")) {
        let req = Request::builder()
            .method(r.method.clone())
            .uri(&r.path)
            .header("content-type", "application/json")
            .body(Body::from(r.valid.to_string()))
            .unwrap();
        let (status, body, _) = f.panel.send_request(req, "127.0.0.1:1").await;
        assert_error(&(status, body), 401, "unauthorized");
    }
    assert_eq!(state(&f).await, before);
}

#[tokio::test]
async fn search_text_is_bounded() {
    let panel = TestPanel::start().await;
    let admin = panel.admin().await;
    let long = "x".repeat(192);
    let got = panel.get(&format!("/api/servers?q={long}"), &admin).await;
    assert!(assert_error(&got, 422, "invalid").starts_with("q:"));
    let got = panel.get(&format!("/api/users?q={}", "y".repeat(255)), &admin).await;
    assert!(assert_error(&got, 422, "invalid").starts_with("q:"));
    assert_eq!(panel.get(&format!("/api/servers?q={}", "x".repeat(191)), &admin).await.0, 200);
}
