//! A server's pages other than the console (startup variables, backups, subusers) and the
//! account page (password, two-factor, API keys), in a real browser against a real agent.
//! Screenshots go to `target/ui-screenshots/`.

use cap_tests::e2e::AgentNode;
use cap_tests::webdriver::Browser;
use cap_tests::{Cred, PASSWORD, TestPanel};
use serde_json::{Value, json};

const XSS: &str = "<img src=x onerror=alert(1)>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_sets_variables_makes_and_removes_backups_and_shares_the_server() {
    let Some(browser) = Browser::start("server-pages", None).await else { return };
    let panel = TestPanel::start().await;
    let AgentNode { addr, node, agent: _agent, .. } = panel.agent_node("ui-pages", 4, &[]).await;
    let (owner_id, owner) = panel.user("pageowner", &[]).await;
    let template = panel.game_template("ui-pages-game", &[], json!({"type": "command", "value": "stop"})).await;
    let server = panel.server("paged", &owner_id, &node, &template).await;
    panel.wait_state(&server, "offline").await;
    panel.user("friend", &[]).await;
    let base = format!("http://{addr}");

    browser.goto(&format!("{base}/servers/{server}/startup")).await;
    browser.log_in("pageowner@example.org", PASSWORD).await;
    browser.wait_for("the startup page", &format!("location.pathname === '/servers/{server}/startup'")).await;
    browser.console_errors().await;
    // The tabs: this tenant owns the server, so all of them are there, the current one marked.
    browser.wait_text("#server-name", "paged").await;
    let current = browser.text("#server-tabs a[aria-current=page]").await;
    assert_eq!(current, "Startup");

    Box::pin(startup_variables(&browser, &panel, &server, &owner)).await;
    Box::pin(backups(&browser, &panel, &server, &owner)).await;
    Box::pin(subusers(&browser, &panel, &server, &owner)).await;
    let errors = browser.console_errors().await;
    // The two refusals above are the only error lines: the value breaking its rule and the
    // unknown email.
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("/variables") && errors[0].contains("status of 422"), "{errors:?}");
    assert!(errors[1].contains("/subusers") && errors[1].contains("status of 422"), "{errors:?}");
}

/// The startup page: a value breaking its rule, then a good one.
async fn startup_variables(browser: &Browser, panel: &TestPanel, server: &str, owner: &Cred) {
    // A value breaking its rule (max:200) is refused with the rule's message next to the field.
    browser.wait_text("#variables", "Message of the day").await;
    assert!(browser.text("#variables").await.contains("required|string|max:200"), "the rules are shown");
    browser.execute("document.querySelector('[data-env=MOTD]').value = '';", json!([])).await;
    browser.type_into("[data-env=MOTD]", &"x".repeat(201)).await;
    browser.click("#variables-save").await;
    browser
        .wait_for(
            "the field marked",
            "document.querySelector('[data-env=MOTD]').getAttribute('aria-invalid') === 'true'",
        )
        .await;
    let message = browser.text("#var-0-error").await;
    assert!(message.starts_with("Message of the day:") && message.contains("200"), "{message}");
    browser.screenshot("startup-invalid").await;
    let motd = |vars: &Value| vars.as_array().unwrap().iter().find(|v| v["env"] == "MOTD").unwrap()["value"].clone();
    let (_, vars) = panel.get(&format!("/api/servers/{server}/variables"), owner).await;
    assert_eq!(motd(&vars), "welcome", "nothing was saved");

    // A good value is saved, markup in it stays text.
    browser.execute("document.querySelector('[data-env=MOTD]').value = '';", json!([])).await;
    browser.type_into("[data-env=MOTD]", "<b>hi</b> all").await;
    browser.click("#variables-save").await;
    browser.wait_text("#variables-saved", "Saved").await;
    let (_, vars) = panel.get(&format!("/api/servers/{server}/variables"), owner).await;
    assert_eq!(motd(&vars), "<b>hi</b> all");
    assert_eq!(browser.text("#var-0-error").await, "");
}

async fn backups(browser: &Browser, panel: &TestPanel, server: &str, owner: &Cred) {
    // Backups: one made and followed to its end over the live socket, locked, unlocked, deleted.
    browser.click("#server-tabs a[data-tab=backups]").await;
    browser.wait_text("#backups", "No backups yet.").await;
    browser.type_into("#backup-name", "first").await;
    browser.click("#backup-create").await;
    browser.wait_text("#backups", "done").await;
    let (_, list) = panel.get(&format!("/api/servers/{server}/backups"), owner).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "first");
    assert_eq!(list[0]["status"], "done");
    let download =
        browser.execute("return document.querySelector('#backups a[download]').getAttribute('href');", json!([])).await;
    assert_eq!(download, json!(format!("/api/servers/{server}/backups/{}/download", list[0]["id"].as_str().unwrap())));
    browser.click("button[aria-label='Lock first']").await;
    browser.wait_text("#backups", "locked").await;
    let disabled = browser
        .execute("return document.querySelector(\"button[aria-label='Delete first']\").disabled;", json!([]))
        .await;
    assert_eq!(disabled, json!(true), "a locked backup cannot be deleted");
    assert_eq!(browser.unlabelled().await, Vec::<Value>::new(), "backups: every field labelled");
    browser.screenshot("backups").await;
    browser.click("button[aria-label='Unlock first']").await;
    browser.wait_for("unlocked", "!document.querySelector(\"button[aria-label='Delete first']\").disabled").await;
    // One press arms the button; only the second deletes.
    browser.click("button[aria-label='Delete first']").await;
    browser.wait_text("button[aria-label='Delete first']", "Confirm delete").await;
    let (_, list) = panel.get(&format!("/api/servers/{server}/backups"), owner).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "not deleted by the first press");
    browser.click("button[aria-label='Delete first']").await;
    browser.wait_text("#backups", "No backups yet.").await;
    let (_, list) = panel.get(&format!("/api/servers/{server}/backups"), owner).await;
    assert_eq!(list, json!([]));
}

async fn subusers(browser: &Browser, panel: &TestPanel, server: &str, owner: &Cred) {
    // Subusers: an unknown email is a clear error; a user named with markup shows as text.
    browser.click("#server-tabs a[data-tab=subusers]").await;
    browser.wait_text("#subusers", "Nobody else has access").await;
    browser.type_into("#subuser-email", "nobody@example.org").await;
    browser.click("#subuser-add").await;
    browser.wait_for("an error", "document.querySelector('#subuser-error').textContent.length > 0").await;
    browser.execute("document.querySelector('#subuser-email').value = '';", json!([])).await;
    browser.type_into("#subuser-email", "friend@example.org").await;
    browser.click("#subuser-permissions input[value=FILE_VIEW]").await;
    browser.click("#subuser-add").await;
    browser.wait_text("#subusers", "friend@example.org").await;
    let (_, subs) = panel.get(&format!("/api/servers/{server}/subusers"), owner).await;
    let mut granted: Vec<String> =
        subs[0]["permissions"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    granted.sort();
    assert_eq!(granted, ["FILE_VIEW", "SERVER_CONSOLE", "SERVER_VIEW"]);
    // Their permissions changed: the console taken away.
    browser.click(".subuser input[value=SERVER_CONSOLE]").await;
    browser.click(".subuser .toolbar button").await;
    browser.wait_for("saved", "!document.querySelector('.subuser input[value=SERVER_CONSOLE]').checked").await;
    let (_, subs) = panel.get(&format!("/api/servers/{server}/subusers"), owner).await;
    assert!(!subs[0]["permissions"].as_array().unwrap().contains(&json!("SERVER_CONSOLE")), "{subs}");
    assert_eq!(browser.unlabelled().await, Vec::<Value>::new(), "subusers: every field labelled");
    browser.screenshot("subusers").await;
    let remove = "button[aria-label='Remove friend']";
    browser.click(remove).await;
    browser.click(remove).await;
    browser.wait_text("#subusers", "Nobody else has access").await;
    let (_, subs) = panel.get(&format!("/api/servers/{server}/subusers"), owner).await;
    assert_eq!(subs, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subuser_without_the_permissions_sees_neither_the_tabs_nor_the_controls() {
    let Some(browser) = Browser::start("server-pages-viewer", Some((390, 844))).await else { return };
    let panel = TestPanel::start().await;
    let addr = panel.serve().await;
    let (owner_id, _) = panel.user("owner2", &[]).await;
    let (node, template, server) = panel.server_setup(&owner_id).await;
    let _ = (node, template);
    panel.user("looker", &[]).await;
    panel.subuser(&server, "looker@example.org", &["SERVER_VIEW", "BACKUP_VIEW"]).await;

    browser.goto(&format!("http://{addr}/servers/{server}/startup")).await;
    browser.log_in("looker@example.org", PASSWORD).await;
    browser
        .wait_for(
            "the startup page",
            "document.querySelector('#variables-form') && !document.querySelector('#variables-form').hidden",
        )
        .await;
    let hidden = browser
        .execute(
            "return [...document.querySelectorAll('#server-tabs a')].filter(a => !a.hidden).map(a => a.textContent);",
            json!([]),
        )
        .await;
    assert_eq!(hidden, json!(["Console", "Startup", "Backups"]));
    // Values are shown, not editable, and there is nothing to save.
    let state = browser
        .execute("return [document.querySelector('#variables-save').hidden, [...document.querySelectorAll('[data-env]')].every(i => i.disabled)];", json!([]))
        .await;
    assert_eq!(state, json!([true, true]));
    browser.screenshot("startup-read-only-phone").await;
    browser.click("#server-tabs a[data-tab=backups]").await;
    // No agent serves this node: the page says so instead of a list.
    browser.wait_for("the backups page", "document.querySelector('#status').textContent !== 'Loading…'").await;
    let status = browser.text("#status").await;
    assert!(status.contains("offline") || status.contains("not connected"), "{status}");
    assert_eq!(browser.execute("return document.querySelector('#backup-form').hidden;", json!([])).await, json!(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_page_turns_two_factor_on_and_off_and_makes_an_api_key_shown_once() {
    let Some(browser) = Browser::start("account", None).await else { return };
    let panel = TestPanel::start().await;
    let addr = panel.serve().await;
    let (_, cred) = panel.user("keeper", &[]).await;

    browser.goto(&format!("http://{addr}/account")).await;
    browser.log_in("keeper@example.org", PASSWORD).await;
    browser.wait_text("#totp-state", "off").await;
    browser.console_errors().await;
    assert_eq!(browser.text("#email").await, "keeper@example.org");

    // Passwords that differ are caught before anything is sent.
    browser.type_into("#current-password", PASSWORD).await;
    browser.type_into("#new-password", "a new password 1").await;
    browser.type_into("#repeat-password", "a new password 2").await;
    browser.click("#password-form button[type=submit]").await;
    browser.wait_text("#password-error", "differ").await;

    // Two-factor: the key is shown, a wrong code refused, the right one turns it on.
    browser.click("#totp-begin").await;
    browser.wait_for("the key", "document.querySelector('#totp-secret').textContent.length > 10").await;
    let secret = browser.text("#totp-secret").await.replace(' ', "");
    let uri = browser.text("#totp-uri").await;
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    // The QR code drawn on the page reads as the link, as a phone's camera would read it.
    let drawn = browser
        .execute(
            "const c = document.querySelector('#totp-qr');
             const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             return [c.width, c.height, Array.from(px.filter((_, i) => i % 4 === 0)), c.getBoundingClientRect().width];",
            json!([]),
        )
        .await;
    let (width, height) = (drawn[0].as_u64().unwrap() as usize, drawn[1].as_u64().unwrap() as usize);
    let red: Vec<u8> = drawn[2].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8).collect();
    assert_eq!(red.len(), width * height);
    assert!(drawn[3].as_f64().unwrap() >= 100.0, "shown large enough to scan: {drawn:?}", drawn = drawn[3]);
    assert_eq!(cap_tests::read_qr(width, height, |x, y| red[y * width + x]).as_deref(), Some(uri.as_str()));
    browser.screenshot("account-2fa-qr").await;
    browser.type_into("#totp-code", "12").await;
    browser.click("#totp-submit").await;
    browser.wait_text("#totp-error", "6-digit").await;
    browser.execute("document.querySelector('#totp-code').value = '';", json!([])).await;
    browser.type_into("#totp-code", &panel.totp_code(&secret)).await;
    browser.click("#totp-submit").await;
    browser.wait_text("#totp-state", "is on").await;
    let (_, me) = panel.get("/api/me", &cred).await;
    assert_eq!(me["totp_enabled"], true);
    browser.screenshot("account-2fa-on").await;

    // Logging in again asks for the code (a later one: a code is used once).
    panel.clock.advance_secs(30);
    browser.click("#logout").await;
    browser.wait_for("the login page", "location.pathname === '/login'").await;
    browser.goto(&format!("http://{addr}/login?next=/account")).await;
    browser.log_in("keeper@example.org", PASSWORD).await;
    browser.wait_for("the code field", "!document.querySelector('#totp-row').hidden").await;
    browser.type_into("#totp", &panel.totp_code(&secret)).await;
    browser.click("#login button[type=submit]").await;
    browser.wait_text("#totp-state", "is on").await;
    // The first answer of the login asking for the code is an error line of its own.
    let errors = browser.console_errors().await;
    assert!(errors.iter().all(|e| e.contains("/api/auth/login") && e.contains("401")), "{errors:?}");

    // An API key: the secret shown once, the key listed by its prefix, revoked with two presses.
    browser.type_into("#key-name", XSS).await;
    browser.click("#key-form button[type=submit]").await;
    browser.wait_for("the secret", "!document.querySelector('#key-created').hidden").await;
    let secret_key = browser.text("#key-secret").await;
    let (status, _) = panel.get("/api/me", &Cred::bearer(secret_key.clone())).await;
    assert_eq!(status, 200, "the key shown works");
    browser.wait_text("#keys", XSS).await;
    assert_eq!(browser.count("img").await, json!(0));
    browser.screenshot("account-key").await;
    let revoke = format!("button[aria-label='Revoke {XSS}']");
    browser.click(&revoke).await;
    browser.click(&revoke).await;
    browser.wait_text("#keys", "No API keys yet.").await;
    let (status, _) = panel.get("/api/me", &Cred::bearer(secret_key)).await;
    assert_eq!(status, 401, "revoked");

    // Two-factor off again, with a code.
    panel.clock.advance_secs(30);
    browser.type_into("#totp-code", &panel.totp_code(&secret)).await;
    browser.click("#totp-submit").await;
    browser.wait_text("#totp-state", "is off").await;
    let (_, me) = panel.get("/api/me", &cred).await;
    assert_eq!(me["totp_enabled"], false);
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "{errors:?}");
}
