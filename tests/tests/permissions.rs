//! Every permission that guards a route, allowed once and denied once; subuser grants; and no
//! way up through roles, grants or changes to mightier users.

use axum::http::{Method, StatusCode};
use cap_tests::{Cred, FakeAgent, PASSWORD, TestPanel, assert_error};
use capcore::ids::ServerId;
use capcore::protocol::v1::Command;
use capcore::state::ServerState::{Offline, Running, Starting};
use serde_json::{Value, json};

/// A user whose one global permission is `permission` (checked through `/api/me`).
async fn only(panel: &TestPanel, permission: &str) -> (String, Cred) {
    let name = format!("only-{}", permission.to_lowercase().replace('_', "-"));
    let (id, cred) = panel.user_with(&name, &[permission]).await;
    assert_eq!(panel.get("/api/me", &cred).await.1["permissions"], json!([permission]));
    (id, cred)
}

/// A user with no global permission at all.
async fn nobody(panel: &TestPanel) -> (String, Cred) {
    let (id, cred) = panel.user("nobody", &[]).await;
    assert_eq!(panel.get("/api/me", &cred).await.1["permissions"], json!([]));
    (id, cred)
}

/// A new user who is a subuser of `server` holding `permissions`.
async fn subuser(panel: &TestPanel, server: &str, name: &str, permissions: &[&str]) -> Cred {
    let (_, cred) = panel.user(name, &[]).await;
    panel.subuser(server, &format!("{name}@example.org"), permissions).await;
    cred
}

fn new_user(name: &str) -> Value {
    json!({"username": name, "email": format!("{name}@example.org"), "password": PASSWORD})
}

fn new_node(name: &str) -> Value {
    json!({"name": name, "fqdn": "n.example.org", "memory_mb": 1024, "disk_mb": 1024})
}

fn new_template(name: &str) -> Value {
    json!({"name": name, "startup": "./run", "stop": {"type": "signal", "value": "SIGTERM"}})
}

fn sid(id: &str) -> ServerId {
    id.parse().unwrap()
}

#[tokio::test]
async fn user_view_guards_the_user_list() {
    let panel = TestPanel::start().await;
    let (_, allowed) = only(&panel, "USER_VIEW").await;
    let (nobody_id, denied) = nobody(&panel).await;
    let (status, list) = panel.get("/api/users", &allowed).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 3);
    assert_eq!(panel.get(&format!("/api/users/{}", panel.admin_id().await), &allowed).await.0, StatusCode::OK);
    assert_error(&panel.get("/api/users", &denied).await, 403, "forbidden");
    assert_error(&panel.get(&format!("/api/users/{}", panel.admin_id().await), &denied).await, 404, "not_found");
    assert_eq!(panel.get(&format!("/api/users/{nobody_id}"), &denied).await.0, StatusCode::OK, "yourself is fine");
    assert_error(&panel.get("/api/roles", &denied).await, 403, "forbidden");
}

#[tokio::test]
async fn user_create_guards_creating_users() {
    let panel = TestPanel::start().await;
    let (_, allowed) = only(&panel, "USER_CREATE").await;
    let (_, denied) = nobody(&panel).await;
    let before = panel.counts().await.users;
    assert_error(&panel.post("/api/users", &denied, new_user("carol")).await, 403, "forbidden");
    assert_eq!(panel.counts().await.users, before);
    let (status, body) = panel.post("/api/users", &allowed, new_user("carol")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["roles"], json!(["user"]), "the default role");
    // Giving roles is USER_PERMISSIONS, even the powerless default one.
    let mut with_roles = new_user("dave");
    with_roles["roles"] = json!(["user"]);
    assert_error(&panel.post("/api/users", &allowed, with_roles).await, 403, "forbidden");
    assert_eq!(panel.counts().await.users, before + 1);
}

#[tokio::test]
async fn user_update_guards_changing_users() {
    let panel = TestPanel::start().await;
    let (_, allowed) = only(&panel, "USER_UPDATE").await;
    let (_, denied) = nobody(&panel).await;
    let (victim, _) = panel.user("victim", &[]).await;
    let path = format!("/api/users/{victim}");
    assert_error(&panel.json(Method::PATCH, &path, &denied, json!({"username": "renamed"})).await, 403, "forbidden");
    let (status, body) = panel.json(Method::PATCH, &path, &allowed, json!({"username": "renamed"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["username"], "renamed");
}

#[tokio::test]
async fn user_delete_guards_deleting_users() {
    let panel = TestPanel::start().await;
    let (_, allowed) = only(&panel, "USER_DELETE").await;
    let (_, denied) = nobody(&panel).await;
    let (victim, _) = panel.user("victim", &[]).await;
    let path = format!("/api/users/{victim}");
    assert_error(&panel.delete(&path, &denied).await, 403, "forbidden");
    assert_eq!(panel.get(&path, &panel.admin().await).await.0, StatusCode::OK);
    assert_eq!(panel.delete(&path, &allowed).await.0, StatusCode::NO_CONTENT);
    assert_error(&panel.get(&path, &panel.admin().await).await, 404, "not_found");
}

#[tokio::test]
async fn user_permissions_guards_roles_and_role_assignment() {
    let panel = TestPanel::start().await;
    let (_, allowed) = only(&panel, "USER_PERMISSIONS").await;
    let (_, denied) = nobody(&panel).await;
    let (victim, _) = panel.user("victim", &[]).await;
    let role = json!({"name": "delegates", "permissions": ["USER_PERMISSIONS"]});
    assert_error(&panel.post("/api/roles", &denied, role.clone()).await, 403, "forbidden");
    let roles_path = format!("/api/users/{victim}/roles");
    assert_error(&panel.json(Method::PUT, &roles_path, &denied, json!({"roles": ["user"]})).await, 403, "forbidden");

    let (status, created) = panel.post("/api/roles", &allowed, role).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let (status, body) = panel.json(Method::PUT, &roles_path, &allowed, json!({"roles": ["delegates"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["roles"], json!(["delegates"]));
}

#[tokio::test]
async fn system_nodes_guards_nodes_and_allocations() {
    let panel = TestPanel::start().await;
    let (_, allowed) = only(&panel, "SYSTEM_NODES").await;
    let (_, denied) = nobody(&panel).await;
    assert_error(&panel.get("/api/nodes", &denied).await, 403, "forbidden");
    assert_error(&panel.post("/api/nodes", &denied, new_node("n1")).await, 403, "forbidden");
    assert_eq!(panel.counts().await.nodes, 0);
    let (status, body) = panel.post("/api/nodes", &allowed, new_node("n1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["node"]["id"].as_str().unwrap();
    assert!(body["token"].as_str().unwrap().starts_with("capn_"));
    let ports = json!({"ip": "10.0.0.5", "ports": [25565]});
    let path = format!("/api/nodes/{id}/allocations");
    assert_error(&panel.post(&path, &denied, ports.clone()).await, 403, "forbidden");
    assert_eq!(panel.post(&path, &allowed, ports).await.0, StatusCode::OK);
    assert_eq!(panel.get("/api/nodes", &allowed).await.1["total"], 1);
}

#[tokio::test]
async fn system_templates_guards_template_changes() {
    let panel = TestPanel::start().await;
    let (_, allowed) = only(&panel, "SYSTEM_TEMPLATES").await;
    let (_, denied) = nobody(&panel).await;
    assert_error(&panel.post("/api/templates", &denied, new_template("t1")).await, 403, "forbidden");
    assert_error(&panel.get("/api/templates", &denied).await, 403, "forbidden");
    let (status, body) = panel.post("/api/templates", &allowed, new_template("t1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let export = format!("/api/templates/{}/export", body["id"].as_str().unwrap());
    assert_eq!(panel.get(&export, &allowed).await.0, StatusCode::OK);
    assert_error(&panel.get(&export, &denied).await, 403, "forbidden");
}

#[tokio::test]
async fn system_audit_guards_the_whole_log() {
    let panel = TestPanel::start().await;
    let (_, allowed) = only(&panel, "SYSTEM_AUDIT").await;
    let (_, denied) = nobody(&panel).await;
    let admin = panel.admin_id().await;
    let (status, all) = panel.get(&format!("/api/audit?action=role.create&actor_id={admin}"), &allowed).await;
    assert_eq!(status, StatusCode::OK);
    assert!(all["total"].as_u64().unwrap() >= 1, "{all}");
    // Without it: your servers' events only, and the admin's role changes are none of them.
    let (status, none) = panel.get(&format!("/api/audit?action=role.create&actor_id={admin}"), &denied).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(none["total"], 0, "{none}");
    assert_eq!(panel.get("/api/audit", &denied).await.1["total"], 0);
}

#[tokio::test]
async fn server_create_guards_creating_servers() {
    let panel = TestPanel::start().await;
    let (creator_id, allowed) = only(&panel, "SERVER_CREATE").await;
    let (_, denied) = nobody(&panel).await;
    let node = panel.node("n1", 2).await;
    let template = panel.template("t1").await;
    let body = json!({"name": "mine", "node_id": node, "template_id": template, "limits": {"memory_mb": 256, "swap_mb": 0, "cpu_percent": 100, "disk_mb": 1024, "io_weight": 500, "pids": 64}});
    assert_error(&panel.post("/api/servers", &denied, body.clone()).await, 403, "forbidden");
    assert_eq!(panel.counts().await.servers, 0);
    assert_eq!(panel.get("/api/templates", &allowed).await.0, StatusCode::OK, "creators pick templates");
    let (status, created) = panel.post("/api/servers", &allowed, body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["owner_id"], creator_id.as_str(), "the owner defaults to the caller");
    assert_eq!(created["state"], "installing");
}

#[tokio::test]
async fn server_view_guards_seeing_servers() {
    let panel = TestPanel::start().await;
    let (owner, _) = panel.user("owner", &[]).await;
    let (_, _, server) = panel.server_setup(&owner).await;
    let (_, allowed) = only(&panel, "SERVER_VIEW").await;
    let (_, denied) = nobody(&panel).await;
    let path = format!("/api/servers/{server}");
    let (status, body) = panel.get(&path, &allowed).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["permissions"], json!(["SERVER_VIEW"]));
    assert_eq!(panel.get("/api/servers", &allowed).await.1["total"], 1);
    assert_error(&panel.get(&path, &denied).await, 404, "not_found");
    assert_eq!(panel.get("/api/servers", &denied).await.1["total"], 0);
}

#[tokio::test]
async fn server_update_guards_renaming_and_variables() {
    let panel = TestPanel::start().await;
    let (owner, _) = panel.user("owner", &[]).await;
    let (_, _, server) = panel.server_setup(&owner).await;
    let allowed = subuser(&panel, &server, "editor", &["SERVER_VIEW", "SERVER_UPDATE"]).await;
    let denied = subuser(&panel, &server, "viewer", &["SERVER_VIEW"]).await;
    let path = format!("/api/servers/{server}");
    let vars = format!("{path}/variables");
    assert_error(&panel.json(Method::PATCH, &path, &denied, json!({"name": "renamed"})).await, 403, "forbidden");
    assert_error(
        &panel.json(Method::PUT, &vars, &denied, json!({"values": {"GREETING": "hey"}})).await,
        403,
        "forbidden",
    );
    let (status, body) = panel.json(Method::PATCH, &path, &allowed, json!({"name": "renamed"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = panel.json(Method::PUT, &vars, &allowed, json!({"values": {"GREETING": "hey"}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let greeting = body.as_array().unwrap().iter().find(|v| v["env"] == "GREETING").unwrap().clone();
    assert_eq!(greeting["value"], "hey");
    assert!(!body.to_string().contains("HIDDEN_SEED"), "hidden variables stay hidden: {body}");
    // Limits and owner need SERVER_UPDATE globally.
    let limits = json!({"limits": {"memory_mb": 999999, "swap_mb": 0, "cpu_percent": 0, "disk_mb": 0, "io_weight": 500, "pids": 0}});
    assert_error(&panel.json(Method::PATCH, &path, &allowed, limits).await, 403, "forbidden");
    // Hidden variables read like unknown ones.
    let hidden = panel.json(Method::PUT, &vars, &allowed, json!({"values": {"HIDDEN_SEED": "1"}})).await;
    assert!(assert_error(&hidden, 422, "invalid").contains("values.HIDDEN_SEED"));
    let stored = panel.db.servers().get(sid(&server)).await.unwrap();
    assert_eq!(stored.environment["HIDDEN_SEED"], "42");
    assert_eq!(stored.limits.memory_mb, 256);
}

#[tokio::test]
async fn server_delete_guards_deleting_servers() {
    let panel = TestPanel::start().await;
    let (owner_id, owner) = panel.user("owner", &[]).await;
    let (deleter_id, deleter) = only(&panel, "SERVER_DELETE").await;
    let (node, template, kept) = panel.server_setup(&owner_id).await;
    let doomed = panel.server("doomed", &deleter_id, &node, &template).await;
    let mut agent = panel.attach_agent(&node);
    // Even the owner needs SERVER_DELETE: it is not a server-scoped permission.
    assert_error(&panel.delete(&format!("/api/servers/{kept}"), &owner).await, 403, "forbidden");
    // And SERVER_DELETE alone does not reveal servers one cannot see.
    assert_error(&panel.delete(&format!("/api/servers/{kept}"), &deleter).await, 404, "not_found");
    assert!(agent.try_recv().is_none());
    assert_eq!(panel.delete(&format!("/api/servers/{doomed}"), &deleter).await.0, StatusCode::NO_CONTENT);
    assert_eq!(agent.recv().await, Command::Delete { server_id: sid(&doomed) });
    assert_eq!(panel.counts().await.servers, 1);
}

/// Sets up a server with an attached agent in `state_path`, a subuser holding VIEW plus
/// `permission`, and one holding only VIEW.
async fn power_setup(
    panel: &TestPanel,
    permission: &str,
    state_path: &[capcore::state::ServerState],
) -> (String, FakeAgent, Cred, Cred) {
    let (owner, _) = panel.user("owner", &[]).await;
    let (node, _, server) = panel.server_setup(&owner).await;
    panel.set_state(&server, state_path).await;
    let allowed = subuser(panel, &server, "operator", &["SERVER_VIEW", permission]).await;
    let denied = subuser(panel, &server, "viewer", &["SERVER_VIEW"]).await;
    (server, panel.attach_agent(&node), allowed, denied)
}

async fn power(panel: &TestPanel, server: &str, cred: &Cred, action: &str) -> (StatusCode, Value) {
    panel.post(&format!("/api/servers/{server}/power"), cred, json!({"action": action})).await
}

#[tokio::test]
async fn server_start_guards_starting() {
    let panel = TestPanel::start().await;
    let (server, mut agent, allowed, denied) = power_setup(&panel, "SERVER_START", &[Offline]).await;
    assert_error(&power(&panel, &server, &denied, "start").await, 403, "forbidden");
    assert!(agent.try_recv().is_none(), "nothing reaches the agent");
    assert_error(&power(&panel, &server, &allowed, "stop").await, 403, "forbidden");
    assert_eq!(power(&panel, &server, &allowed, "start").await.0, StatusCode::ACCEPTED);
    assert_eq!(agent.try_recv().unwrap(), Command::Start { server_id: sid(&server) });
    // No agent: the permission passed, the node cannot be reached.
    drop(agent);
    assert_error(&power(&panel, &server, &allowed, "start").await, 503, "unavailable");
    assert_error(&power(&panel, &server, &denied, "start").await, 403, "forbidden");
}

#[tokio::test]
async fn starting_needs_an_installed_server() {
    let panel = TestPanel::start().await;
    let (server, mut agent, allowed, _) = power_setup(&panel, "SERVER_START", &[]).await;
    let conflict = assert_error(&power(&panel, &server, &allowed, "start").await, 409, "conflict");
    assert!(conflict.contains("installing"), "{conflict}");
    assert!(agent.try_recv().is_none());
    assert_eq!(panel.last_audit("server.power").await["result"], "failed");
}

#[tokio::test]
async fn server_stop_guards_stop_and_kill() {
    let panel = TestPanel::start().await;
    let (server, mut agent, allowed, denied) = power_setup(&panel, "SERVER_STOP", &[Offline, Starting, Running]).await;
    assert_error(&power(&panel, &server, &denied, "stop").await, 403, "forbidden");
    assert_error(&power(&panel, &server, &denied, "kill").await, 403, "forbidden");
    assert_error(&power(&panel, &server, &allowed, "restart").await, 403, "forbidden");
    assert!(agent.try_recv().is_none());
    assert_eq!(power(&panel, &server, &allowed, "stop").await.0, StatusCode::ACCEPTED);
    assert_eq!(power(&panel, &server, &allowed, "kill").await.0, StatusCode::ACCEPTED);
    assert_eq!(agent.try_recv().unwrap(), Command::Stop { server_id: sid(&server), grace_ms: 30_000 });
    assert_eq!(agent.try_recv().unwrap(), Command::Kill { server_id: sid(&server) });
}

#[tokio::test]
async fn server_restart_guards_restarting() {
    let panel = TestPanel::start().await;
    let (server, mut agent, allowed, denied) =
        power_setup(&panel, "SERVER_RESTART", &[Offline, Starting, Running]).await;
    assert_error(&power(&panel, &server, &denied, "restart").await, 403, "forbidden");
    assert!(agent.try_recv().is_none());
    assert_eq!(power(&panel, &server, &allowed, "restart").await.0, StatusCode::ACCEPTED);
    assert_eq!(agent.try_recv().unwrap(), Command::Restart { server_id: sid(&server), grace_ms: 30_000 });
}

#[tokio::test]
async fn server_console_guards_commands() {
    let panel = TestPanel::start().await;
    let (server, mut agent, allowed, denied) = power_setup(&panel, "SERVER_CONSOLE", &[Offline]).await;
    let path = format!("/api/servers/{server}/command");
    assert_error(&panel.post(&path, &denied, json!({"command": "say hi"})).await, 403, "forbidden");
    // Allowed, but a stopped server takes no commands.
    assert_error(&panel.post(&path, &allowed, json!({"command": "say hi"})).await, 409, "conflict");
    panel.set_state(&server, &[Starting, Running]).await;
    assert_eq!(panel.post(&path, &allowed, json!({"command": "say hi"})).await.0, StatusCode::ACCEPTED);
    assert_eq!(agent.try_recv().unwrap(), Command::SendCommand { server_id: sid(&server), line: "say hi".into() });
    let two_lines = panel.post(&path, &allowed, json!({"command": "say hi\nop eve"})).await;
    assert!(assert_error(&two_lines, 422, "invalid").contains("command"));
    assert!(agent.try_recv().is_none(), "nothing else was sent");
    drop(agent);
    assert_error(&panel.post(&path, &allowed, json!({"command": "say hi"})).await, 503, "unavailable");
}

#[tokio::test]
async fn network_view_guards_a_servers_allocations() {
    let panel = TestPanel::start().await;
    let (owner, _) = panel.user("owner", &[]).await;
    let (_, _, server) = panel.server_setup(&owner).await;
    let allowed = subuser(&panel, &server, "netops", &["SERVER_VIEW", "NETWORK_VIEW"]).await;
    let denied = subuser(&panel, &server, "viewer", &["SERVER_VIEW"]).await;
    let path = format!("/api/servers/{server}/allocations");
    let (status, body) = panel.get(&path, &allowed).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0]["port"], 30000);
    assert_eq!(body[0]["primary"], true);
    assert_error(&panel.get(&path, &denied).await, 403, "forbidden");
}

#[tokio::test]
async fn analytics_view_guards_a_servers_activity() {
    let panel = TestPanel::start().await;
    let (owner, _) = panel.user("owner", &[]).await;
    let (_, _, server) = panel.server_setup(&owner).await;
    let allowed = subuser(&panel, &server, "analyst", &["SERVER_VIEW", "ANALYTICS_VIEW"]).await;
    let denied = subuser(&panel, &server, "viewer", &["SERVER_VIEW"]).await;
    let path = format!("/api/audit?server_id={server}");
    let (status, body) = panel.get(&path, &allowed).await;
    assert_eq!(status, StatusCode::OK);
    let actions: Vec<&str> = body["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"server.create"), "{actions:?}");
    assert_error(&panel.get(&path, &denied).await, 404, "not_found");
    assert_eq!(panel.get("/api/audit", &denied).await.1["total"], 0);
}

#[tokio::test]
async fn subusers_grant_only_what_they_hold_and_only_server_permissions() {
    let panel = TestPanel::start().await;
    let (owner_id, owner) = panel.user("owner", &[]).await;
    let (_, _, server) = panel.server_setup(&owner_id).await;
    let manager = subuser(&panel, &server, "manager", &["SERVER_VIEW", "USER_PERMISSIONS", "SERVER_CONSOLE"]).await;
    let (guest_id, _) = panel.user("guest", &[]).await;
    let (strong_id, _) = panel.user("strong", &[]).await;
    let path = format!("/api/servers/{server}/subusers");
    let grant = |perms: Value| json!({"email": "guest@example.org", "permissions": perms});

    let more = panel.post(&path, &manager, grant(json!(["SERVER_VIEW", "SERVER_START"]))).await;
    assert!(assert_error(&more, 403, "forbidden").contains("SERVER_START"));
    let global_only = panel.post(&path, &owner, grant(json!(["SERVER_VIEW", "SYSTEM_NODES"]))).await;
    assert!(assert_error(&global_only, 422, "invalid").contains("SYSTEM_NODES"));
    let global_only = panel.post(&path, &owner, grant(json!(["SERVER_DELETE"]))).await;
    assert!(assert_error(&global_only, 422, "invalid").contains("SERVER_DELETE"));
    assert_eq!(panel.get(&path, &owner).await.1.as_array().unwrap().len(), 1, "only the manager");

    let (status, body) = panel.post(&path, &manager, grant(json!(["SERVER_VIEW", "SERVER_CONSOLE"]))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The owner gives someone more than the manager holds; the manager may not touch them.
    panel.subuser(&server, "strong@example.org", &["SERVER_VIEW", "SERVER_START"]).await;
    let strong = format!("{path}/{strong_id}");
    assert_error(
        &panel.json(Method::PUT, &strong, &manager, json!({"permissions": ["SERVER_VIEW"]})).await,
        403,
        "forbidden",
    );
    assert_error(&panel.delete(&strong, &manager).await, 403, "forbidden");
    // Nor raise their own grant.
    let (status, list) = panel.get(&path, &manager).await;
    assert_eq!(status, StatusCode::OK);
    let me = list.as_array().unwrap().iter().find(|s| s["username"] == "manager").unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    let raise = json!({"permissions": ["SERVER_VIEW", "USER_PERMISSIONS", "SERVER_CONSOLE", "SERVER_START"]});
    assert_error(&panel.json(Method::PUT, &format!("{path}/{me}"), &manager, raise).await, 403, "forbidden");
    // What they hold they can manage.
    assert_eq!(panel.delete(&format!("{path}/{guest_id}"), &manager).await.0, StatusCode::NO_CONTENT);
    let grants = panel.db.servers().list_subusers(sid(&server)).await.unwrap();
    assert_eq!(grants.len(), 2, "manager and strong: {grants:?}");
    assert!(grants.iter().all(|g| !g.permissions.contains(capcore::permission::Permission::SERVER_START)
        || g.user_id.to_string() == strong_id));
}

#[tokio::test]
async fn no_way_up_through_roles() {
    let panel = TestPanel::start().await;
    let nodes_role = panel.role("node-admins", &["SYSTEM_NODES"]).await;
    let (manager_id, manager) = panel.user_with("manager", &["USER_PERMISSIONS", "USER_VIEW", "USER_CREATE"]).await;
    let (victim, _) = panel.user("victim", &[]).await;
    let admin_id = panel.admin_id().await;
    let before = panel.counts().await;

    let create = panel.post("/api/roles", &manager, json!({"name": "sneaky", "permissions": ["SYSTEM_NODES"]})).await;
    assert!(assert_error(&create, 403, "forbidden").contains("SYSTEM_NODES"));
    for (who, roles) in
        [(&victim, json!(["node-admins"])), (&manager_id, json!(["node-admins"])), (&manager_id, json!(["admin"]))]
    {
        let got = panel.json(Method::PUT, &format!("/api/users/{who}/roles"), &manager, json!({"roles": roles})).await;
        assert_error(&got, 403, "forbidden");
    }
    let mut with_admin = new_user("minion");
    with_admin["roles"] = json!(["admin"]);
    assert_error(&panel.post("/api/users", &manager, with_admin).await, 403, "forbidden");
    // Roles they hold cannot grow; roles they do not hold cannot change or go.
    let own_role = panel.db.roles().find_by_name("manager-role").await.unwrap().unwrap().id;
    let grow = json!({"permissions": ["USER_PERMISSIONS", "USER_VIEW", "USER_CREATE", "SYSTEM_NODES"]});
    assert_error(&panel.json(Method::PATCH, &format!("/api/roles/{own_role}"), &manager, grow).await, 403, "forbidden");
    let shrink = json!({"permissions": []});
    assert_error(
        &panel.json(Method::PATCH, &format!("/api/roles/{nodes_role}"), &manager, shrink).await,
        403,
        "forbidden",
    );
    assert_error(&panel.delete(&format!("/api/roles/{nodes_role}"), &manager).await, 403, "forbidden");
    // The admin cannot be stripped of their role by someone weaker.
    let strip =
        panel.json(Method::PUT, &format!("/api/users/{admin_id}/roles"), &manager, json!({"roles": ["user"]})).await;
    assert_error(&strip, 403, "forbidden");

    assert_eq!(panel.counts().await, before, "nothing was written");
    let admin_roles = panel.get(&format!("/api/users/{admin_id}"), &panel.admin().await).await.1["roles"].clone();
    assert_eq!(admin_roles, json!(["admin"]));
    assert_eq!(
        panel.get("/api/me", &manager).await.1["permissions"],
        json!(["USER_VIEW", "USER_CREATE", "USER_PERMISSIONS"])
    );
    let node_admins = panel.db.roles().find_by_name("node-admins").await.unwrap().unwrap();
    assert_eq!(node_admins.permissions.names(), vec!["SYSTEM_NODES"]);
    assert!(panel.db.roles().roles_of(victim.parse().unwrap()).await.unwrap().is_empty());
}

#[tokio::test]
async fn weaker_users_cannot_change_or_delete_an_admin() {
    let panel = TestPanel::start().await;
    let (_, updater) = only(&panel, "USER_UPDATE").await;
    let (_, deleter) = only(&panel, "USER_DELETE").await;
    let admin_id = panel.admin_id().await;
    let path = format!("/api/users/{admin_id}");
    for body in [json!({"password": "taken over 123"}), json!({"email": "mine@example.org"}), json!({"disabled": true})]
    {
        assert_error(&panel.json(Method::PATCH, &path, &updater, body).await, 403, "forbidden");
    }
    assert_error(&panel.delete(&path, &deleter).await, 403, "forbidden");
    panel.login(cap_tests::ADMIN_EMAIL, cap_tests::ADMIN_PASSWORD).await;
    assert_eq!(panel.get(&path, &panel.admin().await).await.1["disabled"], false);
    assert_eq!(panel.last_audit("user.delete").await["result"], "denied");
}

#[tokio::test]
async fn a_global_role_reaches_every_server_and_a_subuser_only_theirs() {
    let panel = TestPanel::start().await;
    let (owner, _) = panel.user("owner", &[]).await;
    let (node, template, first) = panel.server_setup(&owner).await;
    let second = panel.server("second", &owner, &node, &template).await;
    let (_, moderator) = panel.user("mod", &["moderator"]).await;
    let sub = subuser(&panel, &first, "helper", &["SERVER_VIEW"]).await;
    assert_eq!(panel.get("/api/servers", &moderator).await.1["total"], 2);
    assert_eq!(panel.get("/api/servers", &sub).await.1["total"], 1);
    assert_eq!(panel.get(&format!("/api/servers/{first}"), &sub).await.0, StatusCode::OK);
    assert_error(&panel.get(&format!("/api/servers/{second}"), &sub).await, 404, "not_found");
    // A moderator operates servers but edits nothing structural.
    assert_error(
        &panel.json(Method::PATCH, &format!("/api/servers/{second}"), &moderator, json!({"name": "x"})).await,
        403,
        "forbidden",
    );
    assert_error(&power(&panel, &second, &moderator, "start").await, 503, "unavailable");
}

#[tokio::test]
async fn the_spec_pushed_before_a_start_carries_the_servers_allocation() {
    let panel = TestPanel::start().await;
    let (server, mut agent, allowed, _) = power_setup(&panel, "SERVER_START", &[Offline]).await;
    assert_eq!(power(&panel, &server, &allowed, "start").await.0, StatusCode::ACCEPTED);
    let (_, allocations) = panel.get(&format!("/api/servers/{server}/allocations"), &panel.admin().await).await;
    let allocation = &allocations.as_array().expect("a list")[0];
    let spec = agent
        .drain()
        .into_iter()
        .find_map(|c| match c {
            Command::Create { server } => Some(server),
            _ => None,
        })
        .expect("the spec was pushed");
    assert_eq!(
        spec.ports,
        [capcore::protocol::v1::PortBinding {
            ip: allocation["ip"].as_str().unwrap().into(),
            port: allocation["port"].as_u64().unwrap() as u16,
        }]
    );
    assert_eq!(spec.environment["SERVER_PORT"], allocation["port"].to_string());
}
