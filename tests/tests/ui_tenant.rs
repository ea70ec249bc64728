//! A tenant's pages on a phone-sized screen in a real browser (Debian's Chromium through
//! chromedriver): the dashboard empty and then live, a shared server's pages with only the
//! tabs and power buttons its grants allow, each page fitting the screen with every field
//! labelled. Screenshots go to `target/ui-screenshots/`.

use cap_tests::e2e::AgentNode;
use cap_tests::webdriver::Browser;
use cap_tests::{Cred, PASSWORD, TestPanel};
use serde_json::{Value, json};

/// The power buttons shown, in page order, each with whether it is disabled.
const POWER: &str = "return [...document.querySelectorAll('#power button')].filter((b) => !b.hidden).map((b) => [b.dataset.action, b.disabled]);";

/// What a page must be on a phone: nothing wider than the screen, every field labelled, no
/// error logged.
async fn fits(browser: &Browser, page: &str) {
    assert_eq!(browser.overflowing().await, Vec::<Value>::new(), "{page} fits the screen");
    assert_eq!(browser.unlabelled().await, Vec::<Value>::new(), "{page} labels its fields");
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "{page}: {errors:?}");
    browser.screenshot(&format!("tenant-{page}-phone")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_on_a_phone_sees_the_pages_and_buttons_their_grants_allow() {
    let Some(browser) = Browser::start("tenant-phone", Some((390, 844))).await else { return };
    let panel = TestPanel::start().await;
    let AgentNode { addr, node, agent: _agent, .. } = panel.agent_node("ui-tenant-phone", 4, &[]).await;
    let (owner_id, _) = panel.user("owner", &[]).await;
    let template = panel.game_template("ui-phone-game", &[], json!({"type": "command", "value": "stop"})).await;
    let server = panel.server("shared with a rather long name for a small screen", &owner_id, &node, &template).await;
    panel.wait_state(&server, "offline").await;
    panel.user("limited", &[]).await;
    let base = format!("http://{addr}");

    // No servers yet: the dashboard says so.
    browser.goto(&format!("{base}/login")).await;
    browser.log_in("limited@example.org", PASSWORD).await;
    browser.wait_text("#status", "You have no servers yet.").await;
    fits(&browser, "dashboard-empty").await;

    // Shared with start but not stop; the server running: its live use on the dashboard.
    let grants = ["SERVER_VIEW", "SERVER_CONSOLE", "SERVER_START", "FILE_VIEW", "BACKUP_VIEW"];
    panel.subuser(&server, "limited@example.org", &grants).await;
    let admin: Cred = panel.admin().await;
    let (status, body) = panel.post(&format!("/api/servers/{server}/power"), &admin, json!({"action": "start"})).await;
    assert_eq!(status, 202, "{body}");
    panel.wait_state(&server, "running").await;
    browser.goto(&format!("{base}/")).await;
    browser.wait_text("#servers", "shared with a rather long name").await;
    browser.wait_text("#servers .state", "running").await;
    browser.wait_text("#servers .use", "CPU").await;
    let shown = browser.text("#servers .use").await;
    assert!(shown.contains(" % · ") && shown.ends_with('B'), "{shown}");
    fits(&browser, "dashboard").await;

    // The server page: the tabs granted, and only the Start button, off while it runs.
    browser.click("#servers a").await;
    browser.wait_text("#link", "Connected").await;
    browser.wait_text("#console", "Done (").await;
    let tabs =
        "return [...document.querySelectorAll('#server-tabs a')].filter((a) => !a.hidden).map((a) => a.textContent);";
    assert_eq!(browser.execute(tabs, json!([])).await, json!(["Console", "Files", "Startup", "Backups"]));
    assert_eq!(browser.execute(POWER, json!([])).await, json!([["start", true]]));
    fits(&browser, "server").await;

    // Stopped by the owner: Start comes on, and starts it.
    let (status, body) = panel.post(&format!("/api/servers/{server}/power"), &admin, json!({"action": "stop"})).await;
    assert_eq!(status, 202, "{body}");
    browser.wait_text("#state", "offline").await;
    browser.wait_for("Start enabled", "!document.querySelector('[data-action=start]').disabled").await;
    assert_eq!(browser.execute(POWER, json!([])).await, json!([["start", false]]));
    browser.click("[data-action=start]").await;
    browser.wait_text("#state", "running").await;
    panel.wait_state(&server, "running").await;

    // The other pages granted, each fitting the screen.
    browser.goto(&format!("{base}/servers/{server}/files")).await;
    browser.wait_text("#listing", "installed.txt").await;
    fits(&browser, "files").await;
    browser.goto(&format!("{base}/servers/{server}/startup")).await;
    browser.wait_text("#variables", "Message of the day").await;
    fits(&browser, "startup").await;
    browser.goto(&format!("{base}/servers/{server}/backups")).await;
    browser.wait_for("the backups", "document.querySelector('#backups').textContent.trim() !== ''").await;
    fits(&browser, "backups").await;
    browser.goto(&format!("{base}/account")).await;
    browser
        .wait_for(
            "the account",
            "document.querySelector('#email').value !== '' || document.querySelector('#email').textContent !== ''",
        )
        .await;
    fits(&browser, "account").await;

    // Sixteen minutes on, the access token has expired: the page renews the session with the
    // refresh cookie (echoing the CSRF cookie, as for any change) and goes on.
    panel.clock.advance_secs(16 * 60);
    browser.goto(&format!("{base}/servers/{server}/startup")).await;
    browser.wait_text("#variables", "Message of the day").await;
    assert_eq!(panel.last_audit("auth.refresh").await["result"], "success");
    let errors = browser.console_errors().await;
    assert!(
        !errors.is_empty() && errors.iter().all(|e| e.contains("401")),
        "only the expired token's refusal: {errors:?}"
    );
}
