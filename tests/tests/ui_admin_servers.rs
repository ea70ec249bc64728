//! The admin pages for templates, servers and the audit log in a real browser (Debian's Chromium
//! through chromedriver): an admin creates a server for a tenant on a node with a real
//! `cap-agent` and runs it, imports an egg file and edits its variables, is told which variable
//! breaks its rule, and reads, filters and pages the audit log; hostile names stay text.
//! Screenshots go to `target/ui-screenshots/`.

use axum::http::Method;
use cap_tests::e2e::{AgentNode, scratch_dir};
use cap_tests::webdriver::{Browser, quoted};
use cap_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, TestPanel};
use serde_json::{Value, json};

const XSS: &str = "<img src=x onerror=alert(1)>";
const PAPER_EGG: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/eggs/pterodactyl-core/minecraft/egg-paper.json");

/// The value of the form control `css`.
async fn value(browser: &Browser, css: &str) -> Value {
    browser.execute("return document.querySelector(arguments[0]).value;", json!([css])).await
}

/// An attribute of the element `css`.
async fn attribute(browser: &Browser, css: &str, name: &str) -> Value {
    browser.execute("return document.querySelector(arguments[0]).getAttribute(arguments[1]);", json!([css, name])).await
}

/// The CSS selector of the input `field` (`default`, `rules`, …) of the template page's variable
/// whose environment name is `env`.
async fn variable_input(browser: &Browser, env: &str, field: &str) -> String {
    let id = browser
        .execute(
            "const env = [...document.querySelectorAll('#variables [data-field=env]')].find(i => i.value === arguments[0]); \
             return env.closest('fieldset').querySelector(`[data-field=${arguments[1]}]`).id;",
            json!([env, field]),
        )
        .await;
    format!("#{}", id.as_str().expect("the variable's input"))
}

/// The CSS selector of the input `field` of the template page's last variable.
async fn last_variable_input(browser: &Browser, field: &str) -> String {
    let id = browser
        .execute(
            "return [...document.querySelectorAll('#variables > fieldset')].pop().querySelector(`[data-field=${arguments[0]}]`).id;",
            json!([field]),
        )
        .await;
    format!("#{}", id.as_str().expect("the variable's input"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_a_server_for_a_tenant_and_runs_it_from_its_page() {
    // The test's state lives on the heap: its future is larger than a test thread's stack.
    Box::pin(an_admin_creates_a_server_for_a_tenant_and_runs_it_from_its_page_steps()).await;
}

async fn an_admin_creates_a_server_for_a_tenant_and_runs_it_from_its_page_steps() {
    let Some(browser) = Browser::start("admin-servers", None).await else { return };
    let panel = TestPanel::start().await;
    let AgentNode { addr, node, agent: _agent, .. } = panel.agent_node("ui-admin-servers", 3, &[]).await;
    let (tenant, _) = panel.user("tenant", &[]).await;
    let template = panel.game_template("ui-admin-game", &[], json!({"type": "command", "value": "stop"})).await;
    let admin = panel.admin().await;
    let (_, allocations) = panel.get(&format!("/api/nodes/{node}/allocations"), &admin).await;
    let chosen = allocations["data"][1].clone();
    let chosen_id = chosen["id"].as_str().unwrap();
    let base = format!("http://{addr}");

    // Not logged in: the form sends the browser to log in, and back after.
    browser.goto(&format!("{base}/admin/servers/new")).await;
    browser.wait_for("the login page", "location.pathname === '/login' && document.querySelector('#email')").await;
    browser.type_into("#email", ADMIN_EMAIL).await;
    browser.type_into("#password", ADMIN_PASSWORD).await;
    browser.click("#login button[type=submit]").await;
    browser
        .wait_for(
            "the new server form",
            "location.pathname === '/admin/servers/new' && !document.querySelector('#server-form').hidden",
        )
        .await;
    browser.console_errors().await;
    // The only node and template are chosen; the template's variable shows its description,
    // default and rules; the node's free allocations are offered.
    browser.wait_text("#variables", "Message of the day").await;
    assert_eq!(value(&browser, "#node").await, json!(node));
    assert_eq!(value(&browser, "#template").await, json!(template));
    assert_eq!(value(&browser, "#var-0").await, json!("welcome"));
    assert!(browser.text("#variables").await.contains("rules required|string|max:200"));
    browser.wait_for("the free allocations", "document.querySelectorAll('#allocation option').length === 4").await;
    assert_eq!(value(&browser, "#owner").await, json!(panel.admin_id().await), "the admin by default");

    browser.fill("#name", "tenant's game").await;
    browser.click(&format!("#owner option[value={}]", quoted(&tenant))).await;
    browser.click(&format!("#allocation option[value={}]", quoted(chosen_id))).await;
    browser.fill("#var-0", "hello from the admin page").await;
    browser.fill("#memory", "256").await;
    browser.fill("#disk", "1024").await;
    browser.fill("#pids", "256").await;
    assert_eq!(browser.unlabelled().await, Vec::<Value>::new(), "admin-server-new: every field labelled");
    browser.screenshot("admin-server-new").await;
    browser.click("#create").await;

    // The new server's page opens; the API has what the form said.
    browser.wait_for("the server page", "/^\\/servers\\/[0-9a-f-]{36}$/.test(location.pathname)").await;
    let id = browser.execute("return location.pathname.split('/')[2];", json!([])).await;
    let id = id.as_str().unwrap().to_string();
    let (status, server) = panel.get(&format!("/api/servers/{id}"), &admin).await;
    assert_eq!(status, 200, "{server}");
    assert_eq!(server["name"], "tenant's game");
    assert_eq!(server["owner_id"], json!(tenant));
    assert_eq!(server["node_id"], json!(node));
    assert_eq!(server["template_id"], json!(template));
    assert_eq!(
        server["limits"],
        json!({"memory_mb": 256, "swap_mb": 0, "cpu_percent": 100, "disk_mb": 1024, "io_weight": 500, "pids": 256})
    );
    let ports: Vec<&Value> = server["allocations"].as_array().unwrap().iter().map(|a| &a["port"]).collect();
    assert_eq!(ports, [&chosen["port"]], "the chosen allocation");
    let (_, variables) = panel.get(&format!("/api/servers/{id}/variables"), &admin).await;
    assert_eq!(variables[0]["env"], "MOTD");
    assert_eq!(variables[0]["value"], "hello from the admin page");

    // Installed, it starts from its page, answers a command and stops.
    panel.wait_state(&id, "offline").await;
    browser.wait_text("#name", "tenant's game").await;
    browser.wait_text("#state", "offline").await;
    browser.wait_text("#link", "Connected").await;
    browser.wait_for("Start enabled", "!document.querySelector('[data-action=start]').disabled").await;
    browser.click("[data-action=start]").await;
    browser.wait_text("#console", "MOTD: hello from the admin page").await;
    browser.wait_text("#console", "Done (").await;
    browser.wait_text("#state", "running").await;
    browser.type_into("#command", "say made by the admin").await;
    browser.click("#command-form button[type=submit]").await;
    browser.wait_text("#console", "[Server] made by the admin").await;
    browser.screenshot("admin-server-created-running").await;
    browser.wait_for("Stop enabled", "!document.querySelector('[data-action=stop]').disabled").await;
    browser.click("[data-action=stop]").await;
    browser.wait_text("#state", "offline").await;
    panel.wait_state(&id, "offline").await;

    // Every server, with its owner, node and state.
    browser.goto(&format!("{base}/admin/servers")).await;
    browser.wait_text("#servers", "tenant's game").await;
    let row = browser.text(&format!("#servers tr[data-id={}]", quoted(&id))).await;
    assert!(row.contains("tenant") && row.contains("ui-admin-servers") && row.contains("ui-admin-game"), "{row}");
    assert_eq!(browser.text("#servers .state").await, "offline");
    assert_eq!(attribute(&browser, "#servers td a", "href").await, json!(format!("/servers/{id}")));
    assert_eq!(attribute(&browser, "#new-server", "href").await, json!("/admin/servers/new"));
    assert_eq!(browser.unlabelled().await, Vec::<Value>::new(), "admin-servers: every field labelled");
    browser.screenshot("admin-servers").await;
    let wide = browser.overflowing().await;
    assert!(wide.is_empty(), "{wide:?}");

    // Filtered by state, in the address.
    browser.click("#filter-state option[value=running]").await;
    browser.wait_for("the filter in the address", "location.search.includes('state=running')").await;
    browser.wait_text("#servers", "No server matches these filters.").await;
    browser.click("#filter-clear").await;
    browser.wait_text("#servers", "tenant's game").await;
    assert_eq!(browser.execute("return location.search;", json!([])).await, json!(""));
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_imports_an_egg_edits_its_variables_and_a_broken_egg_is_refused() {
    // The test's state lives on the heap: its future is larger than a test thread's stack.
    Box::pin(an_admin_imports_an_egg_edits_its_variables_and_a_broken_egg_is_refused_steps()).await;
}

async fn an_admin_imports_an_egg_edits_its_variables_and_a_broken_egg_is_refused_steps() {
    let Some(browser) = Browser::start("admin-servers", None).await else { return };
    let panel = TestPanel::start().await;
    let addr = panel.serve().await;
    let admin = panel.admin().await;
    let base = format!("http://{addr}");

    browser.goto(&format!("{base}/admin/templates")).await;
    browser.log_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    browser.wait_for("the templates page", "location.pathname === '/admin/templates'").await;
    browser.console_errors().await;
    browser.wait_text("#templates", "No templates yet").await;

    // The egg file goes in through the file input, as it is.
    let egg = std::fs::canonicalize(PAPER_EGG).expect("the Paper egg");
    browser.type_into("#egg-file", egg.to_str().unwrap()).await;
    browser.wait_text("#imported", "Imported Paper (PTDL_v2) with 4 variables.").await;
    browser.wait_text("#templates", "Paper").await;
    let (_, list) = panel.get("/api/templates", &admin).await;
    assert_eq!(list["total"], 1, "{list}");
    let id = list["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(list["data"][0]["spec"]["name"], "Paper");
    assert_eq!(browser.text("#templates td.num").await, "4");
    let export = format!("a[href={}]", quoted(&format!("/api/templates/{id}/export")));
    assert_eq!(browser.count(&export).await, json!(1), "an export link");
    assert_eq!(browser.unlabelled().await, Vec::<Value>::new(), "admin-templates: every field labelled");
    browser.screenshot("admin-templates").await;
    let wide = browser.overflowing().await;
    assert!(wide.is_empty(), "{wide:?}");

    // A broken egg: the importer's word, nothing imported.
    let broken = scratch_dir("broken-egg").join("broken.json");
    std::fs::write(&broken, "{\"meta\": {\"version\": \"PTDL_v2\"}, \"name\": ").unwrap();
    browser.type_into("#egg-file", broken.to_str().unwrap()).await;
    browser.wait_text("#error", "broken.json could not be imported: egg: not json or yaml").await;
    browser.expect_refusals(422).await;
    assert_eq!(panel.get("/api/templates", &admin).await.1["total"], 1);
    browser.screenshot("admin-templates-broken-egg").await;

    // The template's page: a variable's default changed, a variable added, saved as a whole.
    browser.click(&format!("#templates a[href={}]", quoted(&format!("/admin/templates/{id}")))).await;
    browser.wait_for("the template page", &format!("location.pathname === '/admin/templates/{id}'")).await;
    browser.wait_text("#title", "Paper").await;
    let (_, before) = panel.get(&format!("/api/templates/{id}"), &admin).await;
    let build = variable_input(&browser, "BUILD_NUMBER", "default").await;
    assert_eq!(value(&browser, &build).await, json!("latest"));
    browser.fill(&build, "1234").await;
    browser.click("#add-variable").await;
    browser.fill(&last_variable_input(&browser, "name").await, "Extra").await;
    browser.fill(&last_variable_input(&browser, "env").await, "EXTRA").await;
    browser.fill(&last_variable_input(&browser, "default").await, "7").await;
    browser.fill(&last_variable_input(&browser, "rules").await, "required|integer").await;
    browser.click(&last_variable_input(&browser, "user_editable").await).await;
    browser.click("#save").await;
    browser.wait_text("#saved", "Saved.").await;
    let (_, after) = panel.get(&format!("/api/templates/{id}"), &admin).await;
    let mut expected = before["spec"].clone();
    expected["variables"][3]["default"] = json!("1234");
    expected["variables"].as_array_mut().unwrap().push(json!({
        "name": "Extra", "description": "", "env": "EXTRA", "default": "7",
        "user_viewable": true, "user_editable": false, "rules": "required|integer"
    }));
    assert_eq!(after["spec"], expected, "only what was changed changed");

    // A rule the panel does not know: its message next to the variable, nothing saved.
    let rules = variable_input(&browser, "EXTRA", "rules").await;
    browser.fill(&rules, "required|frobnicate").await;
    browser.click("#save").await;
    browser.wait_text("#save-error", "Not saved: variables[4].rules: unknown rule `frobnicate`").await;
    browser.wait_text("#variables > fieldset:last-child > .error", "unknown rule `frobnicate`").await;
    assert_eq!(attribute(&browser, &rules, "aria-invalid").await, json!("true"));
    browser.expect_refusals(422).await;
    assert_eq!(panel.get(&format!("/api/templates/{id}"), &admin).await.1["spec"], expected);
    browser.screenshot("admin-template-invalid").await;

    // The added variable removed again.
    browser.click("button[aria-label='Remove variable Extra']").await;
    browser.wait_for("the row gone", "document.querySelectorAll('#variables > fieldset').length === 4").await;
    browser.click("#save").await;
    browser.wait_text("#saved", "Saved.").await;
    let (_, after) = panel.get(&format!("/api/templates/{id}"), &admin).await;
    assert_eq!(after["spec"]["variables"].as_array().unwrap().len(), 4);
    assert_eq!(after["spec"]["variables"][3]["default"], "1234");
    assert_eq!(browser.unlabelled().await, Vec::<Value>::new(), "admin-template: every field labelled");
    browser.screenshot("admin-template").await;
    let wide = browser.overflowing().await;
    assert!(wide.is_empty(), "{wide:?}");

    // Deleting from the list takes two presses.
    let spare = panel.template("spare").await;
    browser.click("a[href='/admin/templates']").await;
    browser.wait_text("#templates", "spare").await;
    browser.click("button[aria-label='Delete spare']").await;
    browser.wait_text("button[aria-label='Delete spare']", "Confirm delete").await;
    assert_eq!(panel.get(&format!("/api/templates/{spare}"), &admin).await.0, 200, "not deleted by the first press");
    browser.click("button[aria-label='Delete spare']").await;
    browser.wait_text("#status", "Deleted spare.").await;
    assert_eq!(panel.get(&format!("/api/templates/{spare}"), &admin).await.0, 404);
    assert_eq!(browser.count("#templates tr").await, json!(1));
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variable_breaking_its_rule_is_named_and_nothing_is_created() {
    // The test's state lives on the heap: its future is larger than a test thread's stack.
    Box::pin(a_variable_breaking_its_rule_is_named_and_nothing_is_created_steps()).await;
}

async fn a_variable_breaking_its_rule_is_named_and_nothing_is_created_steps() {
    let Some(browser) = Browser::start("admin-servers", Some((390, 844))).await else { return };
    let panel = TestPanel::start().await;
    let addr = panel.serve().await;
    let admin = panel.admin().await;
    panel.node("rules-node", 2).await;
    panel.template("rules-game").await;

    browser.goto(&format!("http://{addr}/admin/servers/new")).await;
    browser.log_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    browser.wait_for("the form", "!document.querySelector('#server-form')?.hidden").await;
    browser.console_errors().await;
    browser.wait_text("#variables", "Greeting").await;
    browser.fill("#name", "refused").await;

    // A required value left empty: the page says so and sends nothing.
    browser.fill("#var-0", "").await;
    browser.click("#create").await;
    browser.wait_text("#var-0-error", "Greeting: a value is required.").await;
    browser.wait_text("#create-error", "Not created: check the marked field.").await;
    assert_eq!(attribute(&browser, "#var-0", "aria-invalid").await, json!("true"));
    assert!(browser.console_errors().await.is_empty(), "no request was made");

    // Longer than its rule allows: the API's message, next to the variable.
    browser.fill("#var-0", &"x".repeat(40)).await;
    browser.click("#create").await;
    browser.wait_text("#create-error", "Not created: environment.GREETING: must be at most 32 characters").await;
    assert_eq!(browser.text("#var-0-error").await, "Greeting: must be at most 32 characters");
    assert_eq!(attribute(&browser, "#var-0", "aria-invalid").await, json!("true"));
    browser.expect_refusals(422).await;
    browser.screenshot("admin-server-new-refused-phone").await;
    let wide = browser.overflowing().await;
    assert!(wide.is_empty(), "{wide:?}");

    // The hidden integer: fixed the first, the second is named.
    browser.fill("#var-0", "hi").await;
    browser.fill("#var-1", "forty-two").await;
    browser.click("#create").await;
    browser.wait_text("#var-1-error", "Secret: must be an integer").await;
    assert_eq!(browser.text("#var-0-error").await, "");
    assert_eq!(attribute(&browser, "#var-0", "aria-invalid").await, Value::Null);
    browser.expect_refusals(422).await;
    assert_eq!(panel.get("/api/servers", &admin).await.1["total"], 0, "nothing was created");
    assert_eq!(panel.counts().await.servers, 0);

    // Right values: created.
    browser.fill("#var-1", "7").await;
    browser.click("#create").await;
    browser.wait_for("the server page", "location.pathname.startsWith('/servers/')").await;
    let (_, list) = panel.get("/api/servers", &admin).await;
    assert_eq!(list["total"], 1);
    let id = list["data"][0]["id"].as_str().unwrap();
    let (_, variables) = panel.get(&format!("/api/servers/{id}/variables"), &admin).await;
    let values: Vec<(&Value, &Value)> =
        variables.as_array().unwrap().iter().map(|v| (&v["env"], &v["value"])).collect();
    assert_eq!(values, [(&json!("GREETING"), &json!("hi")), (&json!("HIDDEN_SEED"), &json!("7"))]);
    browser.wait_text("#name", "refused").await;
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_lists_filters_and_pages_what_was_done() {
    // The test's state lives on the heap: its future is larger than a test thread's stack.
    Box::pin(the_audit_log_lists_filters_and_pages_what_was_done_steps()).await;
}

async fn the_audit_log_lists_filters_and_pages_what_was_done_steps() {
    let Some(browser) = Browser::start("admin-servers", None).await else { return };
    let panel = TestPanel::start().await;
    let addr = panel.serve().await;
    let admin = panel.admin().await;
    let node = panel.node("audited-node", 1).await;
    let template = panel.template("audited-game").await;
    let (tenant, _) = panel.user("auditee", &[]).await;
    panel.server("audited server", &tenant, &node, &template).await;
    // A refused creation, and enough changes for a second page.
    let refused =
        json!({"name": "bad", "node_id": node, "template_id": template, "environment": {"GREETING": "x".repeat(40)}});
    assert_eq!(panel.post("/api/servers", &admin, refused).await.0, 422);
    for i in 0..55 {
        let change = json!({"description": format!("change {i}")});
        assert_eq!(panel.json(Method::PATCH, &format!("/api/nodes/{node}"), &admin, change).await.0, 200);
    }
    let base = format!("http://{addr}");

    browser.goto(&format!("{base}/admin/audit")).await;
    browser.log_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    browser.wait_for("the audit page", "location.pathname === '/admin/audit'").await;
    browser.console_errors().await;
    browser.wait_for("a page of events", "document.querySelectorAll('#events tr').length === 50").await;
    let total = panel.get("/api/audit?per_page=1", &admin).await.1["total"].as_u64().unwrap();
    assert!(total > 50, "{total}");
    assert_eq!(browser.text("#count").await, format!("{total} events"));
    assert_eq!(browser.text("#page-info").await, "Page 1 of 2");
    let newest = browser.text("#events tr:first-child").await;
    assert!(newest.contains("auth.login") && newest.contains("admin") && newest.contains("success"), "{newest}");
    assert_eq!(browser.unlabelled().await, Vec::<Value>::new(), "admin-audit: every field labelled");
    browser.screenshot("admin-audit").await;
    let wide = browser.overflowing().await;
    assert!(wide.is_empty(), "{wide:?}");

    // Paging, in the address.
    browser.click("#next").await;
    browser.wait_for("page 2", "location.search === '?page=2'").await;
    browser.wait_for("the rest", &format!("document.querySelectorAll('#events tr').length === {}", total - 50)).await;
    browser.click("#prev").await;
    browser.wait_for("page 1", "location.search === '?page=1'").await;
    browser.wait_for("a full page", "document.querySelectorAll('#events tr').length === 50").await;

    // Filtered by action: only those events, the filter in the address.
    browser.fill("#f-action", "server.create").await;
    browser.click("#filters button[type=submit]").await;
    browser.wait_for("the filter in the address", "location.search === '?action=server.create'").await;
    browser.wait_for("two events", "document.querySelectorAll('#events tr').length === 2").await;
    let actions = browser
        .execute(
            "return [...document.querySelectorAll('#events tr td:nth-child(3)')].map(td => td.textContent);",
            json!([]),
        )
        .await;
    assert_eq!(actions, json!(["server.create", "server.create"]));
    let (_, api) = panel.get("/api/audit?action=server.create", &admin).await;
    assert_eq!(api["total"], 2);
    assert_eq!(browser.text("#count").await, "2 events match");
    browser.wait_text("#events", "server audited server").await;

    // And by result: the failed one, with its detail.
    browser.click("#f-result option[value=failed]").await;
    browser.click("#filters button[type=submit]").await;
    browser.wait_for("both filters", "location.search === '?action=server.create&result=failed'").await;
    browser.wait_for("one event", "document.querySelectorAll('#events tr').length === 1").await;
    let row = browser.text("#events tr").await;
    assert!(row.contains("failed") && row.contains("environment.GREETING: must be at most 32 characters"), "{row}");

    // The address opens the same view.
    let url = browser.url().await;
    browser.goto(&url).await;
    browser.wait_for("one event", "document.querySelectorAll('#events tr').length === 1").await;
    assert_eq!(value(&browser, "#f-action").await, json!("server.create"));
    assert_eq!(value(&browser, "#f-result").await, json!("failed"));
    browser.screenshot("admin-audit-filtered").await;

    // Nothing matches: said so.
    browser.fill("#f-action", "nothing.here").await;
    browser.click("#filters button[type=submit]").await;
    browser.wait_text("#events", "No events match these filters.").await;
    assert_eq!(browser.text("#count").await, "0 events match");
    browser.click("#f-clear").await;
    browser.wait_for("everything again", "document.querySelectorAll('#events tr').length === 50").await;
    assert_eq!(value(&browser, "#f-action").await, json!(""));

    // An actor's events, from the link on their name.
    browser.click("#events tr:first-child td:nth-child(2) a").await;
    browser.wait_for("the actor filter", "location.search.startsWith('?actor_id=')").await;
    assert_eq!(value(&browser, "#f-actor").await, json!(panel.admin_id().await));
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_text_on_the_admin_pages_at_phone_size() {
    // The test's state lives on the heap: its future is larger than a test thread's stack.
    Box::pin(hostile_names_are_text_on_the_admin_pages_at_phone_size_steps()).await;
}

async fn hostile_names_are_text_on_the_admin_pages_at_phone_size_steps() {
    let Some(browser) = Browser::start("admin-servers", Some((390, 844))).await else { return };
    let panel = TestPanel::start().await;
    let addr = panel.serve().await;
    let admin = panel.admin().await;
    let node = panel.node(XSS, 2).await;
    let spec = json!({
        "name": XSS,
        "description": XSS,
        "startup": "./game {{EVIL}}",
        "stop": {"type": "command", "value": "stop"},
        "variables": [{"name": XSS, "description": XSS, "env": "EVIL", "default": XSS, "rules": "nullable|string"}]
    });
    let (status, template) = panel.post("/api/templates", &admin, spec).await;
    assert_eq!(status, 200, "{template}");
    let template = template["id"].as_str().unwrap().to_string();
    let (tenant, _) = panel.user("victim", &[]).await;
    panel.server(XSS, &tenant, &node, &template).await;
    let base = format!("http://{addr}");

    browser.goto(&format!("{base}/admin/servers")).await;
    browser.log_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    browser.wait_for("the servers page", "location.pathname === '/admin/servers'").await;
    browser.console_errors().await;
    browser.wait_text("#servers td:first-child a", XSS).await;
    assert!(browser.text("#servers").await.matches(XSS).count() >= 3, "server, node and template by name");
    assert_eq!(browser.count("img").await, json!(0));
    browser.screenshot("admin-servers-phone").await;
    let wide = browser.overflowing().await;
    assert!(wide.is_empty(), "{wide:?}");

    browser.goto(&format!("{base}/admin/templates")).await;
    browser.wait_text("#templates td:first-child a", XSS).await;
    assert_eq!(browser.count("img").await, json!(0));
    browser.screenshot("admin-templates-phone").await;
    let wide = browser.overflowing().await;
    assert!(wide.is_empty(), "{wide:?}");

    browser.goto(&format!("{base}/admin/templates/{template}")).await;
    browser.wait_text("#title", XSS).await;
    assert_eq!(value(&browser, &variable_input(&browser, "EVIL", "name").await).await, json!(XSS));
    assert_eq!(browser.text("#variables legend").await, XSS);
    assert_eq!(browser.count("img").await, json!(0));
    browser.screenshot("admin-template-phone").await;
    let wide = browser.overflowing().await;
    assert!(wide.is_empty(), "{wide:?}");

    browser.goto(&format!("{base}/admin/servers/new")).await;
    browser.wait_text("#variables label", XSS).await;
    assert_eq!(browser.text("#var-0-about").await, XSS);
    assert_eq!(value(&browser, "#var-0").await, json!(XSS));
    assert_eq!(browser.count("img").await, json!(0));
    browser.screenshot("admin-server-new-phone").await;
    let wide = browser.overflowing().await;
    assert!(wide.is_empty(), "{wide:?}");

    browser.goto(&format!("{base}/admin/audit")).await;
    browser.wait_text("#events", &format!("server {XSS}")).await;
    browser.wait_text("#events", &format!("template {XSS}")).await;
    assert_eq!(browser.count("img").await, json!(0));
    browser.screenshot("admin-audit-phone").await;
    let wide = browser.overflowing().await;
    assert!(wide.is_empty(), "{wide:?}");
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "{errors:?}");
}
