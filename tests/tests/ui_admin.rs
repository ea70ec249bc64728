//! The admin pages for nodes, users and roles in a real browser (Debian's Chromium through
//! chromedriver): an admin creates a node and enrols a real `cap-agent` with the install command
//! the page makes, adds allocations, creates users and roles and grants permissions in the
//! matrix; a user without admin permissions is told so. Screenshots go to
//! `target/ui-screenshots/`.

use cap_tests::e2e::{AgentProcess, scratch_dir};
use cap_tests::webdriver::{Browser, quoted};
use cap_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Cred, PASSWORD, TestPanel};
use serde_json::{Value, json};

const XSS: &str = "<img src=x onerror=alert(1)>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_manages_nodes_users_and_roles() {
    let Some(browser) = Browser::start("admin", None).await else { return };
    let panel = TestPanel::start().await;
    let addr = panel.serve().await;
    let admin = panel.login_admin().await;

    browser.goto(&format!("http://{addr}/admin/nodes")).await;
    browser.log_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    browser.wait_for("the nodes page", "location.pathname === '/admin/nodes'").await;
    // What a visitor not logged in got refused is read away.
    browser.console_errors().await;
    browser.wait_text("#nodes", "No nodes yet").await;
    assert!(browser.execute("return !document.querySelector('#nav-admin').hidden;", json!([])).await == json!(true));

    let base = format!("http://{addr}");
    let (node, _agent) = Box::pin(nodes(&browser, &panel, &admin, &base)).await;
    Box::pin(allocations(&browser, &panel, &admin, &base, &node)).await;
    let role = Box::pin(roles(&browser, &panel, &admin)).await;
    Box::pin(users(&browser, &panel, &admin, &role)).await;
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "{errors:?}");
}

/// A node made through the page, its install command, and a real agent enrolled with it.
async fn nodes(browser: &Browser, panel: &TestPanel, admin: &Cred, base: &str) -> (String, AgentProcess) {
    browser.click("#new-node").await;
    browser.wait_for("the form", "!document.querySelector('#node-form').hidden").await;
    // Nothing is sent while the sizes are missing.
    browser.type_into("#node-name", XSS).await;
    browser.type_into("#node-fqdn", "127.0.0.1").await;
    browser.click("#node-create").await;
    browser.wait_text("#node-error", "Memory must be a whole number").await;
    browser.type_into("#node-memory", "4096").await;
    browser.type_into("#node-disk", "20480").await;
    browser.type_into("#node-description", "the first machine").await;
    browser.screenshot("admin-node-new").await;
    browser.click("#node-create").await;
    browser.wait_for("the install command", "!document.querySelector('#created').hidden").await;
    let command = browser.text("#created-command").await;
    let (_, list) = panel.get("/api/nodes", admin).await;
    assert_eq!(list["total"], 1, "{list}");
    let node = list["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(list["data"][0]["name"], XSS);
    assert_eq!(list["data"][0]["memory_mb"], 4096);
    assert!(command.contains("CAP_NODE_TOKEN=capn_") && command.contains("cap-agent --panel-url http://"), "{command}");
    // The new node is listed by its name as text, offline.
    browser.wait_text("#nodes", XSS).await;
    assert_eq!(browser.text("#nodes .pill").await, "Offline");
    assert_eq!(browser.count("img").await, json!(0), "no element was made from the name");
    browser.screenshot("admin-nodes").await;
    assert_eq!(browser.overflowing().await, Vec::<Value>::new());

    // The node's page makes a new token: shown in the command, never in the address.
    browser.click("#created-link").await;
    browser.wait_for("the node page", &format!("location.pathname === '/admin/nodes/{node}'")).await;
    browser.wait_text("#name", XSS).await;
    browser.wait_text("#node-status", "Offline").await;
    browser.click("#install-generate").await;
    browser.wait_for("the command", "!document.querySelector('#install').hidden").await;
    let command2 = browser.text("#install-command").await;
    let token = command2
        .split_whitespace()
        .find_map(|w| w.strip_prefix("CAP_NODE_TOKEN="))
        .expect("the token in the command")
        .to_string();
    assert!(token.starts_with("capn_") && token.len() > 30, "{command2}");
    assert!(!command.contains(&token), "a new token");
    let url = browser.url().await;
    assert!(!url.contains(&token) && !url.contains("capn_"), "{url}");
    let panel_url = command2.split_whitespace().skip_while(|w| *w != "--panel-url").nth(1).expect("--panel-url");
    assert_eq!(panel_url, base, "{command2}");
    browser.screenshot("admin-node-install").await;

    // The command's token and panel address enrol a real agent; the page shows it online with
    // what it reports.
    let agent_addr = panel_url.trim_start_matches("http://").parse().expect("the panel's address");
    let agent = AgentProcess::spawn(agent_addr, &token, &scratch_dir("ui-admin-agent"));
    panel.wait_node(&node, true).await;
    browser.wait_text("#node-status", "Online").await;
    browser.wait_text("#facts", "protocol").await;
    browser.wait_text("#facts", "Last heartbeat").await;
    // The machine's resources as the agent reports them.
    let (_, reported) = panel.get(&format!("/api/nodes/{node}"), admin).await;
    let agent_facts = &reported["agent"];
    let facts = "return Object.fromEntries([...document.querySelectorAll('#facts dt')].map((dt) => [dt.textContent, dt.nextElementSibling.textContent]));";
    let facts = browser.execute(facts, json!([])).await;
    let cpus = agent_facts["cpus"].as_u64().expect("cpus reported");
    let cpu = facts["CPU"].as_str().unwrap();
    assert!(cpu.ends_with(&format!("{cpus} CPU{}", if cpus == 1 { "" } else { "s" })), "{cpu}");
    let machine = facts["Machine"].as_str().unwrap();
    assert!(machine.starts_with(agent_facts["hostname"].as_str().unwrap()), "{machine}");
    for resource in ["Memory", "Disk"] {
        let shown = facts[resource].as_str().unwrap();
        assert!(shown.ends_with('B') || shown.ends_with("used"), "{resource}: {shown}");
        assert!(shown.contains("iB"), "{resource}: {shown}");
    }
    browser.screenshot("admin-node-online").await;

    // Settings are saved through the API.
    browser.fill("#edit-name", "edited node").await;
    browser.fill("#edit-disk", "30000").await;
    browser.click("#edit-save").await;
    browser.wait_text("#edit-saved", "Saved").await;
    browser.wait_text("#name", "edited node").await;
    let (_, shown) = panel.get(&format!("/api/nodes/{node}"), admin).await;
    assert_eq!((shown["name"].as_str(), shown["disk_mb"].as_i64()), (Some("edited node"), Some(30000)));
    // An address the API refuses: its message, the field marked, nothing changed.
    browser.fill("#edit-fqdn", "bad_host").await;
    browser.click("#edit-save").await;
    browser.wait_text("#edit-error", "fqdn: `bad_host` is not a valid host name label").await;
    browser.expect_refusals(422).await;
    let invalid =
        browser.execute("return document.querySelector('#edit-fqdn').getAttribute('aria-invalid');", json!([])).await;
    assert_eq!(invalid, json!("true"));
    assert_eq!(panel.get(&format!("/api/nodes/{node}"), admin).await.1["fqdn"], "127.0.0.1");
    browser.fill("#edit-fqdn", "127.0.0.1").await;
    (node, agent)
}

async fn allocations(browser: &Browser, panel: &TestPanel, admin: &Cred, base: &str, node: &str) {
    let path = format!("/api/nodes/{node}/allocations");
    browser.wait_text("#allocations", "No allocations yet").await;
    // The node's address is the default IP; a port out of range is refused with the API's word.
    assert_eq!(
        browser.execute("return document.querySelector('#alloc-ip').value;", json!([])).await,
        json!("127.0.0.1")
    );
    browser.type_into("#alloc-ports", "70000").await;
    browser.click("#alloc-add").await;
    browser.wait_text("#alloc-error", "must be a port between 1024 and 65535").await;
    let invalid =
        browser.execute("return document.querySelector('#alloc-ports').getAttribute('aria-invalid');", json!([])).await;
    assert_eq!(invalid, json!("true"));
    browser.expect_refusals(422).await;
    assert_eq!(panel.get(&path, admin).await.1["total"], 0);

    // A port and a range.
    browser.fill("#alloc-ports", "25565, 25570-25572").await;
    browser.click("#alloc-add").await;
    browser.wait_text("#alloc-added", "Added 4 allocations").await;
    browser.wait_text("#allocations", "25572").await;
    assert_eq!(browser.text("#alloc-error").await, "");
    let (_, list) = panel.get(&path, admin).await;
    let mut ports: Vec<i64> = list["data"].as_array().unwrap().iter().map(|a| a["port"].as_i64().unwrap()).collect();
    ports.sort_unstable();
    assert_eq!(ports, [25565, 25570, 25571, 25572]);
    browser.screenshot("admin-node").await;
    assert_eq!(browser.overflowing().await, Vec::<Value>::new());

    browser.click("button[aria-label='Delete 127.0.0.1:25565']").await;
    browser.wait_for("the row gone", "!document.querySelector(\"button[aria-label='Delete 127.0.0.1:25565']\")").await;
    let (_, list) = panel.get(&path, admin).await;
    assert_eq!(list["total"], 3);
    assert!(list["data"].as_array().unwrap().iter().all(|a| a["port"] != 25565), "{list}");

    // Another node, deleted from its page with two presses.
    let spare = panel.node("spare", 0).await;
    browser.goto(&format!("{base}/admin/nodes/{spare}")).await;
    browser.wait_text("#name", "spare").await;
    browser.click("#delete").await;
    browser.wait_text("#delete", "Confirm").await;
    assert_eq!(panel.get(&format!("/api/nodes/{spare}"), admin).await.0, 200, "not deleted by the first press");
    browser.click("#delete").await;
    browser.wait_for("the nodes page", "location.pathname === '/admin/nodes'").await;
    assert_eq!(panel.get(&format!("/api/nodes/{spare}"), admin).await.0, 404);
    browser.wait_text("#nodes", "edited node").await;
    browser.wait_text("#nodes .pill", "Online").await;
}

/// A role made on the page, permissions granted in the matrix; returns the role's name.
async fn roles(browser: &Browser, panel: &TestPanel, admin: &Cred) -> String {
    browser.click("nav.tabs a[href='/admin/roles']").await;
    browser.wait_for("the matrix", "document.querySelectorAll('#matrix-body input').length > 0").await;
    // A row for each of the 36 permissions, a column for each builtin role, which cannot change.
    let (_, catalogue) = panel.get("/api/permissions", admin).await;
    assert_eq!(catalogue.as_array().unwrap().len(), 36);
    assert_eq!(browser.count("#matrix-body tr:not(.category)").await, json!(36));
    assert_eq!(browser.count("#matrix-body tr.category").await, json!(10));
    assert_eq!(browser.count("#matrix-body input").await, json!(36 * 3));
    assert_eq!(browser.count("#matrix-body input:not(:disabled)").await, json!(0), "builtin roles are fixed");
    browser.wait_text("#matrix-body", "read the whole audit log").await;

    // A role named with markup: text everywhere.
    browser.click("#new-role").await;
    browser.type_into("#new-name", XSS).await;
    browser.type_into("#new-description", "reads the log").await;
    browser.click("#new-create").await;
    browser.wait_text("#roles", XSS).await;
    browser.wait_text("#matrix-head", XSS).await;
    assert_eq!(browser.count("img").await, json!(0));
    let (_, list) = panel.get("/api/roles", admin).await;
    let role = list["data"].as_array().unwrap().iter().find(|r| r["name"] == XSS).expect("the role").clone();
    let id = role["id"].as_str().unwrap();
    assert_eq!(role["permissions"], json!([]));

    // Granted in the matrix: one ticked by a click, one by the keyboard (space).
    let box_of = |p: &str| format!("#matrix-body input[data-role='{id}'][data-permission='{p}']");
    browser.click(&box_of("SYSTEM_AUDIT")).await;
    browser.type_into(&box_of("SERVER_VIEW"), " ").await;
    let save = format!("button[data-save='{id}']");
    browser.wait_for("Save enabled", &format!("!document.querySelector({}).disabled", quoted(&save))).await;
    let (_, before) = panel.get("/api/roles", admin).await;
    assert!(before["data"].as_array().unwrap().iter().any(|r| r["name"] == XSS && r["permissions"] == json!([])));
    browser.screenshot("admin-roles-matrix").await;
    browser.click(&save).await;
    browser.wait_text("#matrix-saved", "Saved the permissions of").await;
    let (_, after) = panel.get("/api/roles", admin).await;
    let saved = after["data"].as_array().unwrap().iter().find(|r| r["id"] == id).unwrap();
    assert_eq!(saved["permissions"], json!(["SERVER_VIEW", "SYSTEM_AUDIT"]));
    browser.wait_text(&format!("#roles tr[data-id='{id}']"), "2 of 36").await;
    assert_eq!(browser.overflowing().await, Vec::<Value>::new());

    // A name already taken: the API's message.
    browser.click("#new-role").await;
    browser.type_into("#new-name", "moderator").await;
    browser.click("#new-create").await;
    browser.wait_text("#new-error", "a role with that name already exists").await;
    browser.expect_refusals(409).await;
    browser.click("#new-cancel").await;

    // Another role: renamed, then deleted with two presses.
    panel.role("temp", &["SERVER_VIEW"]).await;
    browser.goto(&browser.url().await).await;
    browser.wait_text("#roles", "temp").await;
    browser.click("button[aria-label='Rename temp']").await;
    browser.fill("#edit-name", "temporary").await;
    browser.click("#edit-save").await;
    browser.wait_text("#roles", "temporary").await;
    let (_, list) = panel.get("/api/roles", admin).await;
    assert!(list["data"].as_array().unwrap().iter().any(|r| r["name"] == "temporary"), "{list}");
    browser.click("button[aria-label='Delete temporary']").await;
    browser.wait_text("button[aria-label='Delete temporary']", "Confirm").await;
    browser.click("button[aria-label='Delete temporary']").await;
    browser.wait_for("the row gone", "!document.querySelector(\"button[aria-label='Delete temporary']\")").await;
    let (_, list) = panel.get("/api/roles", admin).await;
    assert!(list["data"].as_array().unwrap().iter().all(|r| r["name"] != "temporary"), "{list}");
    // A builtin role keeps its name: the field is not editable.
    browser.click("button[aria-label='Rename moderator']").await;
    let fixed = browser.execute("return document.querySelector('#edit-name').disabled;", json!([])).await;
    assert_eq!(fixed, json!(true));
    browser.click("#edit-close").await;
    XSS.to_string()
}

async fn users(browser: &Browser, panel: &TestPanel, admin: &Cred, role: &str) {
    browser.click("nav.tabs a[href='/admin/users']").await;
    browser.wait_text("#users", ADMIN_EMAIL).await;

    // A username with markup is refused by the API, whose message is shown as text.
    browser.click("#new-user").await;
    browser.type_into("#new-username", XSS).await;
    browser.type_into("#new-email", "alice@example.org").await;
    browser.type_into("#new-password", PASSWORD).await;
    browser.click("#new-create").await;
    browser.wait_text("#new-error", "username: may contain only lowercase letters").await;
    browser.expect_refusals(422).await;
    assert_eq!(browser.count("img").await, json!(0));
    let invalid = browser
        .execute("return document.querySelector('#new-username').getAttribute('aria-invalid');", json!([]))
        .await;
    assert_eq!(invalid, json!("true"));

    // Created with the default role and the new one.
    browser.fill("#new-username", "alice").await;
    browser.click(&format!("#new-roles input[value={}]", quoted(role))).await;
    browser.click("#new-create").await;
    browser.wait_text("#users", "alice@example.org").await;
    browser.wait_text("#users", role).await;
    assert_eq!(browser.count("img").await, json!(0));
    let (_, list) = panel.get("/api/users?q=alice", admin).await;
    let alice = list["data"][0].clone();
    assert_eq!(alice["username"], "alice");
    let mut roles: Vec<&str> = alice["roles"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    roles.sort_unstable();
    assert_eq!(roles, [role, "user"]);
    panel.login("alice@example.org", PASSWORD).await;

    // An email already in use: the API's message.
    browser.click("#new-user").await;
    browser.type_into("#new-username", "alice2").await;
    browser.type_into("#new-email", "alice@example.org").await;
    browser.type_into("#new-password", PASSWORD).await;
    browser.click("#new-create").await;
    browser.wait_text("#new-error", "already exists").await;
    browser.expect_refusals(409).await;
    browser.click("#new-cancel").await;
    browser.screenshot("admin-users").await;
    assert_eq!(browser.overflowing().await, Vec::<Value>::new());

    // Edited: a new email, the moderator role instead of the custom one.
    browser.click("button[aria-label='Edit alice']").await;
    browser.wait_for("the editor", "!document.querySelector('#editor').hidden").await;
    browser.fill("#edit-email", "alice@example.net").await;
    browser.click("#edit-save").await;
    browser.wait_text("#edit-saved", "Saved").await;
    let alice_id = alice["id"].as_str().unwrap();
    let (_, shown) = panel.get(&format!("/api/users/{alice_id}"), admin).await;
    assert_eq!(shown["email"], "alice@example.net");
    browser.click("#edit-roles input[value=moderator]").await;
    browser.click(&format!("#edit-roles input[value={}]", quoted(role))).await;
    browser.click("#roles-save").await;
    browser.wait_text("#roles-saved", "Roles saved").await;
    let (_, shown) = panel.get(&format!("/api/users/{alice_id}"), admin).await;
    let mut roles: Vec<&str> = shown["roles"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    roles.sort_unstable();
    assert_eq!(roles, ["moderator", "user"]);
    browser.wait_text(&format!("#users tr[data-id='{alice_id}']"), "moderator").await;
    browser.screenshot("admin-user-edit").await;

    // Deleted with two presses.
    browser.click("#delete").await;
    browser.wait_text("#delete", "Confirm").await;
    assert_eq!(panel.get(&format!("/api/users/{alice_id}"), admin).await.0, 200, "not deleted by the first press");
    browser.click("#delete").await;
    browser.wait_text("#status", "Deleted alice").await;
    assert_eq!(panel.get(&format!("/api/users/{alice_id}"), admin).await.0, 404);
    let left = browser.text("#users").await;
    assert!(!left.contains("alice"), "{left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_pages_fit_a_phone_and_refuse_a_user_without_admin_permissions() {
    let Some(browser) = Browser::start("admin-phone", Some((390, 844))).await else { return };
    let panel = TestPanel::start().await;
    let addr = panel.serve().await;
    let base = format!("http://{addr}");
    let node = panel.node("phone node with a long name", 12).await;
    panel.role("support", &["USER_VIEW", "SERVER_VIEW"]).await;
    panel.user("plain", &[]).await;
    panel.user("helper", &["support"]).await;

    // The admin's pages on a phone: the page never wider than the screen.
    browser.goto(&format!("{base}/admin/nodes")).await;
    browser.log_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    browser.wait_text("#nodes", "phone node").await;
    browser.console_errors().await;
    assert_eq!(browser.overflowing().await, Vec::<Value>::new(), "the nodes page fits");
    assert_eq!(browser.unlabelled().await, Vec::<Value>::new(), "the nodes page labels its fields");
    // The admin tabs: the ones whose pages this account may use.
    const TABS: &str = "return [...document.querySelectorAll('nav.tabs a')].filter((a) => !a.hidden && a.offsetParent).map((a) => a.textContent);";
    let all = json!(["Servers", "Nodes", "Users", "Roles", "Templates", "Audit log"]);
    assert_eq!(browser.execute(TABS, json!([])).await, all);
    browser.screenshot("admin-nodes-phone").await;
    browser.goto(&format!("{base}/admin/nodes/{node}")).await;
    browser.wait_text("#allocations", "30011").await;
    assert_eq!(browser.overflowing().await, Vec::<Value>::new(), "the node page fits");
    assert_eq!(browser.unlabelled().await, Vec::<Value>::new(), "the node page labels its fields");
    browser.screenshot("admin-node-phone").await;
    browser.goto(&format!("{base}/admin/users")).await;
    browser.wait_text("#users", "helper").await;
    assert_eq!(browser.overflowing().await, Vec::<Value>::new(), "the users page fits");
    assert_eq!(browser.unlabelled().await, Vec::<Value>::new(), "the users page labels its fields");
    browser.screenshot("admin-users-phone").await;
    browser.goto(&format!("{base}/admin/roles")).await;
    browser.wait_text("#matrix-head", "support").await;
    assert_eq!(browser.overflowing().await, Vec::<Value>::new(), "the roles page fits");
    assert_eq!(browser.unlabelled().await, Vec::<Value>::new(), "the roles page labels its fields");
    browser.screenshot("admin-roles-phone").await;
    assert!(browser.console_errors().await.is_empty());

    // A user without admin permissions: no Admin link, and each admin page says why it is empty
    // (without asking the API for what it would refuse).
    browser.click("#logout").await;
    browser.wait_for("logged out", "location.pathname === '/login'").await;
    browser.goto(&format!("{base}/admin/nodes")).await;
    browser.log_in("plain@example.org", PASSWORD).await;
    browser.wait_for("the nodes page", "location.pathname === '/admin/nodes'").await;
    browser.wait_text("#error", "You are not allowed to manage nodes").await;
    browser.console_errors().await;
    let state = "return [document.querySelector('#nav-admin').hidden, document.querySelector('#content').hidden, \
                 document.querySelector('#status').textContent];";
    assert_eq!(browser.execute(state, json!([])).await, json!([true, true, ""]));
    assert_eq!(browser.execute(TABS, json!([])).await, json!([]));
    browser.screenshot("admin-not-allowed-phone").await;
    for (page, message) in [
        (format!("/admin/nodes/{node}"), "not allowed to manage nodes"),
        ("/admin/users".to_string(), "not allowed to see users"),
        ("/admin/roles".to_string(), "not allowed to see roles"),
    ] {
        browser.goto(&format!("{base}{page}")).await;
        browser.wait_text("#error", message).await;
        assert_eq!(browser.execute(state, json!([])).await, json!([true, true, ""]), "{page}");
    }

    // A user who may see users and roles but change nothing: no forms, no edit buttons.
    browser.click("#logout").await;
    browser.wait_for("logged out", "location.pathname === '/login'").await;
    browser.goto(&format!("{base}/admin/users")).await;
    browser.log_in("helper@example.org", PASSWORD).await;
    browser.wait_text("#users", "plain@example.org").await;
    browser.console_errors().await;
    let controls =
        "return [document.querySelector('#new-user').hidden, document.querySelectorAll('#users button').length];";
    assert_eq!(browser.execute(controls, json!([])).await, json!([true, 0]));
    browser.goto(&format!("{base}/admin/roles")).await;
    browser.wait_text("#matrix-head", "changing roles needs USER_PERMISSIONS").await;
    assert_eq!(browser.count("#matrix-body input:not(:disabled)").await, json!(0));
    assert_eq!(browser.count("#roles button, #matrix-head button").await, json!(0));
    assert!(browser.execute("return document.querySelector('#new-role').hidden;", json!([])).await == json!(true));
    assert_eq!(browser.execute(TABS, json!([])).await, json!(["Servers", "Users", "Roles"]));
    // The admin index lists the same pages.
    browser.goto(&format!("{base}/admin")).await;
    browser.wait_for("the admin index", "document.querySelectorAll('#admin-links li:not([hidden])').length > 0").await;
    let listed = "return [...document.querySelectorAll('#admin-links li')].filter((li) => !li.hidden).map((li) => li.querySelector('a').textContent);";
    assert_eq!(browser.execute(listed, json!([])).await, json!(["Servers", "Users", "Roles"]));
    assert!(browser.console_errors().await.is_empty());
}
