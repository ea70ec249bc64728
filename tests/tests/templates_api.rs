//! Templates through the API (real eggs in, PTDL_v2 out, in-use protection) and the service
//! endpoints: the OpenAPI document covers every route, `/health` and `/ready` answer.

use axum::http::{Method, StatusCode};
use cap_tests::{Cred, TestPanel, assert_error};
use serde_json::{Value, json};

const EGGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/eggs");
const ROUTES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../capcore/src/panel/routes");

fn egg(path: &str) -> Vec<u8> {
    std::fs::read(format!("{EGGS}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn import(panel: &TestPanel, bytes: Vec<u8>, content_type: &str) -> (StatusCode, Value) {
    panel.raw(Method::POST, "/api/templates/import", &panel.admin().await, bytes, content_type).await
}

fn env_names(template: &Value) -> Vec<String> {
    template["spec"]["variables"].as_array().unwrap().iter().map(|v| v["env"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn a_real_json_egg_imports_exports_as_ptdl_v2_and_reimports_the_same() {
    let panel = TestPanel::start().await;
    let admin = panel.admin().await;
    let (status, paper) = import(&panel, egg("pterodactyl-core/minecraft/egg-paper.json"), "application/json").await;
    assert_eq!(status, StatusCode::OK, "{paper}");
    assert_eq!(paper["spec"]["name"], "Paper");
    assert_eq!(paper["spec"]["source_format"], "PTDL_v2");
    assert_eq!(env_names(&paper), ["MINECRAFT_VERSION", "SERVER_JARFILE", "DL_PATH", "BUILD_NUMBER"]);
    assert_eq!(paper["spec"]["stop"], json!({"type": "command", "value": "stop"}));
    let id = paper["id"].as_str().unwrap().to_string();
    assert_eq!(panel.get(&format!("/api/templates/{id}"), &admin).await.1, paper);

    let (status, exported) = panel.get(&format!("/api/templates/{id}/export"), &admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(exported["meta"]["version"], "PTDL_v2");
    assert_eq!(exported["name"], "Paper");
    let bytes = serde_json::to_vec(&exported).unwrap();

    // The name is taken while the original exists.
    let before = panel.counts().await;
    assert_error(&import(&panel, bytes.clone(), "application/json").await, 409, "conflict");
    assert_eq!(panel.counts().await, before);
    assert_eq!(panel.delete(&format!("/api/templates/{id}"), &admin).await.0, StatusCode::NO_CONTENT);
    let (status, again) = import(&panel, bytes, "application/json").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["spec"], paper["spec"], "export then import is the identity");
    assert_ne!(again["id"], paper["id"]);
}

#[tokio::test]
async fn a_real_yaml_egg_imports() {
    let panel = TestPanel::start().await;
    let (status, vanilla) =
        import(&panel, egg("pelican-minecraft/java/vanilla/egg-vanilla-minecraft.yaml"), "application/yaml").await;
    assert_eq!(status, StatusCode::OK, "{vanilla}");
    assert_eq!(vanilla["spec"]["name"], "Vanilla Minecraft");
    assert_eq!(vanilla["spec"]["source_format"], "PLCN_v3");
    assert_eq!(env_names(&vanilla), ["SERVER_JARFILE", "VANILLA_VERSION"]);
    assert_eq!(vanilla["spec"]["images"][0]["image"], "ghcr.io/pelican-eggs/yolks:java_21");
    // The body says what it is; the content type is not needed.
    let admin = panel.admin().await;
    let body = egg("pelican-minecraft/java/spongevanilla/egg-sponge.yaml");
    let (status, sponge, _) = panel.send(Method::POST, "/api/templates/import", &admin, Some(body.into()), None).await;
    assert_eq!(status, StatusCode::OK, "{sponge}");
    assert_eq!(sponge["spec"]["name"], "Sponge");
    let (status, _, _) = panel.send(Method::POST, "/api/templates/import", &admin, None, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "an empty body is no egg");
    assert_eq!(panel.counts().await.templates, 2);
}

#[tokio::test]
async fn an_imported_egg_enforces_its_variable_rules_on_servers() {
    let panel = TestPanel::start().await;
    let admin = panel.admin().await;
    let (owner, _) = panel.user("owner", &[]).await;
    let node = panel.node("n1", 8).await;
    let (status, rust) = import(&panel, egg("pterodactyl-core/rust/egg-rust.json"), "application/json").await;
    assert_eq!(status, StatusCode::OK, "{rust}");
    let mut body = json!({"name": "rusty", "owner_id": owner, "node_id": node, "template_id": rust["id"],
                          "limits": {"memory_mb": 256, "swap_mb": 0, "cpu_percent": 100, "disk_mb": 1024, "io_weight": 500, "pids": 64}});
    // The egg's RCON password has no default and is required.
    let got = panel.post("/api/servers", &admin, body.clone()).await;
    assert!(assert_error(&got, 422, "invalid").starts_with("environment.RCON_PASS:"), "{}", got.1);
    assert_eq!(panel.counts().await.servers, 0);
    body["environment"] = json!({"RCON_PASS": "correct-horse"});
    let (status, server) = panel.post("/api/servers", &admin, body).await;
    assert_eq!(status, StatusCode::OK, "{server}");
    let (_, vars) = panel.get(&format!("/api/servers/{}/variables", server["id"].as_str().unwrap()), &admin).await;
    let rcon = vars.as_array().unwrap().iter().find(|v| v["env"] == "RCON_PASS").unwrap().clone();
    assert_eq!(rcon["value"], "correct-horse");
}

#[tokio::test]
async fn garbage_is_refused_and_nothing_is_stored() {
    let panel = TestPanel::start().await;
    let before = panel.counts().await;
    let mut unsupported: Value = serde_json::from_slice(&egg("pterodactyl-core/minecraft/egg-paper.json")).unwrap();
    unsupported["meta"]["version"] = json!("PTDL_v9");
    let mut bad_rules: Value = serde_json::from_slice(&egg("pterodactyl-core/minecraft/egg-paper.json")).unwrap();
    bad_rules["variables"][0]["rules"] = json!("required|frobnicate:3");
    let mut bad_startup: Value = serde_json::from_slice(&egg("pterodactyl-core/minecraft/egg-paper.json")).unwrap();
    bad_startup["startup"] = json!("java -jar {{NOT_DEFINED_ANYWHERE}}");
    for (what, body, content_type, says) in [
        ("binary", vec![0u8, 159, 146, 150, 255], "application/octet-stream", ""),
        ("prose", b"this is not an egg at all".to_vec(), "text/plain", "not an egg"),
        ("an empty object", b"{}".to_vec(), "application/json", "not an egg"),
        ("a list", b"[1, 2, 3]".to_vec(), "application/json", ""),
        ("an unknown version", serde_json::to_vec(&unsupported).unwrap(), "application/json", "PTDL_v9"),
        ("bad rules", serde_json::to_vec(&bad_rules).unwrap(), "application/json", "frobnicate"),
        (
            "an undefined placeholder",
            serde_json::to_vec(&bad_startup).unwrap(),
            "application/json",
            "NOT_DEFINED_ANYWHERE",
        ),
    ] {
        let got = import(&panel, body, content_type).await;
        let message = assert_error(&got, 422, "invalid");
        assert!(message.starts_with("egg:") && message.contains(says), "{what}: {message}");
    }
    assert_eq!(panel.counts().await, before);
    let denied = panel.last_audit("template.import").await;
    assert_eq!(denied["result"], "failed");
}

#[tokio::test]
async fn importing_needs_system_templates() {
    let panel = TestPanel::start().await;
    let (_, creator) = panel.user_with("creator", &["SERVER_CREATE"]).await;
    let got = panel
        .raw(
            Method::POST,
            "/api/templates/import",
            &creator,
            egg("pterodactyl-core/minecraft/egg-paper.json"),
            "application/json",
        )
        .await;
    assert_error(&got, 403, "forbidden");
    assert_eq!(panel.counts().await.templates, 0);
    assert_eq!(panel.last_audit("template.import").await["result"], "denied");
}

#[tokio::test]
async fn a_template_in_use_cannot_be_deleted() {
    let panel = TestPanel::start().await;
    let admin = panel.admin().await;
    let (owner, _) = panel.user("owner", &[]).await;
    let (_, template, server) = panel.server_setup(&owner).await;
    let got = panel.delete(&format!("/api/templates/{template}"), &admin).await;
    assert_error(&got, 409, "conflict");
    assert_eq!(panel.counts().await.templates, 1);
    assert_eq!(panel.last_audit("template.delete").await["result"], "failed");
    assert_eq!(panel.delete(&format!("/api/servers/{server}"), &admin).await.0, StatusCode::NO_CONTENT);
    assert_eq!(panel.delete(&format!("/api/templates/{template}"), &admin).await.0, StatusCode::NO_CONTENT);
    assert_eq!(panel.counts().await.templates, 0);
    // A template is replaced whole, and checked like a new one.
    let id = panel.template("again").await;
    let spec = json!({"name": "again", "startup": "./run", "stop": {"type": "command", "value": "stop"},
                      "variables": [{"name": "Bad", "env": "PATH"}]});
    let got = panel.json(Method::PUT, &format!("/api/templates/{id}"), &admin, spec).await;
    assert!(assert_error(&got, 422, "invalid").starts_with("variables[0].env:"));
    assert_eq!(panel.get(&format!("/api/templates/{id}"), &admin).await.1["spec"]["name"], "again");
}

/// `(METHOD, path)` of every `RouteDef::new` in the route files that `routes/mod.rs` declares.
fn declared_routes() -> Vec<(String, String)> {
    let table = std::fs::read_to_string(format!("{ROUTES}/mod.rs")).unwrap();
    let modules: Vec<&str> =
        table.lines().filter_map(|l| l.trim().strip_prefix("mod ").and_then(|m| m.strip_suffix(';'))).collect();
    assert!(modules.len() >= 8, "{modules:?}");
    let mut routes = Vec::new();
    for module in modules {
        let source = std::fs::read_to_string(format!("{ROUTES}/{module}.rs")).unwrap();
        for def in source.split("RouteDef::new(").skip(1) {
            let method = def.trim_start().strip_prefix("Method::").unwrap().split(',').next().unwrap().trim();
            let path = def.split('"').nth(1).unwrap();
            routes.push((method.to_string(), path.to_string()));
        }
    }
    routes
}

#[tokio::test]
async fn the_openapi_document_covers_every_route() {
    let panel = TestPanel::start().await;
    let (status, doc) = panel.get("/api/openapi.json", &Cred::None).await;
    assert_eq!(status, StatusCode::OK, "public");
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let routes = declared_routes();
    assert!(routes.len() >= 50, "{} routes", routes.len());
    let mut operations = 0;
    for (_, item) in doc["paths"].as_object().unwrap() {
        operations += item.as_object().unwrap().len();
    }
    assert_eq!(operations, routes.len(), "one operation per route, no more");
    for (method, path) in &routes {
        let op = &doc["paths"][path][method.to_lowercase()];
        assert!(op.is_object(), "{method} {path} is missing from the document");
        assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{method} {path}");
        assert!(op["description"].as_str().is_some_and(|s| s.starts_with("Access: ")), "{method} {path}");
        assert_eq!(
            op["responses"]["4XX"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error"
        );
        for param in path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))) {
            let params = op["parameters"].as_array().unwrap_or_else(|| panic!("{method} {path} lists no parameters"));
            assert!(params.iter().any(|p| p["name"] == param && p["in"] == "path"), "{method} {path}: {param}");
        }
    }
    // Every `$ref` points at a schema that exists.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().unwrap();
        assert!(doc["components"]["schemas"][name].is_object(), "dangling $ref to {name}");
    }
    assert!(doc["paths"]["/api/servers/{id}/power"]["post"]["requestBody"].is_object());
    assert!(
        doc["paths"]["/api/audit"]["get"]["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "server_id")
    );
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let panel = TestPanel::start().await;
    let random = "7a0c3c59-4c1e-4b55-9d1e-3f0b8f1d2e77";
    for (method, path) in declared_routes() {
        let concrete: String =
            path.split('/').map(|s| if s.starts_with('{') { random } else { s }).collect::<Vec<_>>().join("/");
        let method: Method = method.parse().unwrap();
        let (status, body, _) = panel.send(method.clone(), &concrete, &Cred::None, None, None).await;
        assert_ne!(body["message"], "route not found", "{method} {path} is documented but not routed");
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        let public = ["/health", "/ready", "/api/openapi.json", "/api/auth/login", "/api/auth/refresh"];
        if !public.contains(&path.as_str()) {
            assert_error(&(status, body), 401, "unauthorized");
        }
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let panel = TestPanel::start().await;
    let (status, health) = panel.get("/health", &Cred::None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health, json!({"status": "ok"}));
    let (status, ready) = panel.get("/ready", &Cred::None).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready, json!({"status": "ready", "database": "sqlite: ok", "cache": "memory: ok"}));
}

#[tokio::test]
async fn a_native_template_may_only_use_defined_placeholders() {
    let panel = TestPanel::start().await;
    let admin = panel.login_admin().await;
    let before = panel.counts().await;
    let spec = json!({
        "name": "typo",
        "startup": "./game --port {{SERVER_PORT}} --motd {{MOTD}}",
        "stop": {"type": "signal", "value": "SIGINT"},
        "variables": [{"name": "Message", "env": "MESAGE", "default": "hi", "rules": "string"}]
    });
    let got = panel.post("/api/templates", &admin, spec.clone()).await;
    let message = assert_error(&got, 422, "invalid");
    assert_eq!(message, "startup: uses `{{MOTD}}`, which is neither a variable nor built in");
    assert_eq!(panel.counts().await, before);
    let mut fixed = spec;
    fixed["variables"][0]["env"] = json!("MOTD");
    let (status, body) = panel.post("/api/templates", &admin, fixed).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
