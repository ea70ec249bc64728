//! The web UI in a real browser (Debian's Chromium through chromedriver): the panel on a loopback
//! socket, `cap-agent` running the test game server, and a tenant clicking through the pages.
//! Screenshots go to `target/ui-screenshots/`.

use cap_tests::e2e::AgentNode;
use cap_tests::webdriver::Browser;
use cap_tests::{PASSWORD, TestPanel};
use serde_json::json;

const XSS: &str = "<img src=x onerror=alert(1)>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_logs_in_starts_a_server_sends_a_command_and_stops_it() {
    let Some(browser) = Browser::start("tenant", None).await else { return };
    let panel = TestPanel::start().await;
    let AgentNode { addr, node, agent: _agent, .. } = panel.agent_node("ui-tenant", 4, &[]).await;
    let (owner_id, _) = panel.user("tenant", &[]).await;
    let template = panel.game_template("ui-game", &[], json!({"type": "command", "value": "stop"})).await;
    let server = panel.server(XSS, &owner_id, &node, &template).await;
    panel.wait_state(&server, "offline").await;
    let base = format!("http://{addr}");

    // Not logged in: the server page sends the browser to log in, and back after.
    browser.goto(&format!("{base}/servers/{server}")).await;
    browser.log_in("tenant@example.org", PASSWORD).await;
    browser.wait_for("the server page", &format!("location.pathname === '/servers/{server}'")).await;
    // What was logged before (the refused requests of a visitor not logged in) is read away.
    browser.console_errors().await;
    // The hostile name is text, not markup.
    assert_eq!(browser.wait_text("#name", XSS).await, XSS);
    let images = browser.execute("return document.querySelectorAll('img').length;", json!([])).await;
    assert_eq!(images, json!(0), "no element was made from the name");
    browser.wait_text("#state", "offline").await;
    browser.wait_text("#link", "Connected").await;
    browser.screenshot("server-offline").await;

    // Start: the buttons follow the state, the console shows the game coming up.
    browser.wait_for("Start enabled", "!document.querySelector('[data-action=start]').disabled").await;
    let stop_enabled =
        browser.execute("return !document.querySelector('[data-action=stop]').disabled;", json!([])).await;
    assert_eq!(stop_enabled, json!(false), "nothing to stop yet");
    browser.click("[data-action=start]").await;
    browser.wait_text("#console", "Done (").await;
    browser.wait_text("#state", "running").await;
    browser.wait_for("Stop enabled", "!document.querySelector('[data-action=stop]').disabled").await;

    // A command and its answer; a line carrying HTML shows literally.
    browser.type_into("#command", "say <b>hello</b> from the browser").await;
    browser.click("#command-form button[type=submit]").await;
    browser.wait_text("#console", "[Server] <b>hello</b> from the browser").await;
    let bold = browser.execute("return document.querySelectorAll('#console b').length;", json!([])).await;
    assert_eq!(bold, json!(0), "console lines are text");
    assert_eq!(browser.text("#command").await, "", "the input is cleared for the next command");
    browser.screenshot("server-running").await;

    browser.click("[data-action=stop]").await;
    browser.wait_text("#state", "offline").await;
    browser.wait_text("#console", "Stopping server").await;

    // The dashboard lists the server, by its name as text, with its state.
    browser.goto(&format!("{base}/")).await;
    browser.wait_text("#servers", XSS).await;
    browser.wait_text("#servers .state", "offline").await;
    browser.screenshot("dashboard").await;
    // The pages ran under their Content-Security-Policy without an error or a violation.
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_without_the_console_permission_sees_no_console_and_no_power_buttons() {
    let Some(browser) = Browser::start("viewer", Some((390, 844))).await else { return };
    let panel = TestPanel::start().await;
    let AgentNode { addr, node, agent: _agent, .. } = panel.agent_node("ui-viewer", 4, &[]).await;
    let (owner_id, _) = panel.user("owner", &[]).await;
    let template = panel.game_template("ui-viewer-game", &[], json!({"type": "command", "value": "stop"})).await;
    let server = panel.server("watched", &owner_id, &node, &template).await;
    panel.wait_state(&server, "offline").await;
    panel.user("viewer", &[]).await;
    panel.subuser(&server, "viewer@example.org", &["SERVER_VIEW"]).await;

    browser.goto(&format!("http://{addr}/login")).await;
    browser.log_in("viewer@example.org", PASSWORD).await;
    browser.wait_text("#servers", "watched").await;
    browser.console_errors().await;
    browser.click("#servers a").await;
    browser.wait_text("#link", "Connected").await;
    browser.wait_for("the no-console note", "!document.querySelector('#no-console').hidden").await;
    let hidden = browser
        .execute(
            "return [document.querySelector('#console-section').hidden, \
             ...[...document.querySelectorAll('#power button')].map(b => b.hidden)];",
            json!([]),
        )
        .await;
    assert_eq!(hidden, json!([true, true, true, true, true]), "no console, no power buttons");
    browser.screenshot("server-viewer-phone").await;
    assert!(browser.console_errors().await.is_empty());
}

#[tokio::test]
async fn pages_and_assets_carry_the_security_headers_and_no_inline_script() {
    let panel = TestPanel::start().await;
    let pages = capcore::panel::ui::paths().map(|p| p.replace("{id}", "anything"));
    let mut checked = 0;
    for path in pages.chain(["/assets/server.js".into(), "/assets/app.css".into()]) {
        checked += 1;
        let path = path.as_str();
        let req = axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
        let (status, headers, body) = panel.send_for_bytes(req).await;
        assert_eq!(status, 200, "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        let text = String::from_utf8(body).unwrap();
        if path.starts_with("/assets/") {
            continue;
        }
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        // Scripts only from files of the panel, never inline, and no handler attributes.
        assert_eq!(text.matches("<script").count(), 1, "{path}");
        assert!(text.contains(r#"<script type="module" src="/assets/"#), "{path}");
        assert!(!has_handler_attribute(&text), "{path}: no inline handlers");
        // Every input has a label.
        assert_eq!(text.matches("<input").count(), text.matches("<label").count(), "{path}");
    }
    assert!(checked > 10, "every page was checked");
    let req = axum::http::Request::get("/assets/..%2Fmod.rs").body(axum::body::Body::empty()).unwrap();
    assert_eq!(panel.send_for_bytes(req).await.0, 404);
}

#[test]
fn every_module_a_page_imports_is_served_and_preloaded() {
    for page in capcore::panel::ui::names() {
        let html = capcore::panel::ui::page(page).unwrap();
        for module in capcore::panel::ui::imports(&format!("{page}.js")) {
            assert!(capcore::panel::ui::asset(module).is_some(), "{page} imports {module}, which is not served");
            assert!(
                html.contains(&format!(r#"<link rel="modulepreload" href="/assets/{module}">"#)),
                "{page}: {module}"
            );
        }
    }
    assert_eq!(capcore::panel::ui::imports("server.js"), ["ansi.js", "api.js", "console.js", "serverpage.js"]);
}

#[tokio::test]
async fn an_asset_the_browser_holds_is_not_sent_again() {
    let panel = TestPanel::start().await;
    let get = |tag: Option<&str>| {
        let mut req = axum::http::Request::get("/assets/api.js");
        if let Some(tag) = tag {
            req = req.header("if-none-match", tag);
        }
        panel.send_for_bytes(req.body(axum::body::Body::empty()).unwrap())
    };
    let (status, headers, body) = get(None).await;
    assert_eq!(status, 200);
    assert!(!body.is_empty());
    assert_eq!(headers["cache-control"], "no-cache");
    let tag = headers["etag"].to_str().unwrap().to_string();
    assert!(tag.starts_with('"') && tag.ends_with('"') && tag.len() > 2, "{tag}");
    // The same build gives the same tag; another asset has another.
    assert_eq!(get(None).await.1["etag"], tag.as_str());
    let req = axum::http::Request::get("/assets/app.css").body(axum::body::Body::empty()).unwrap();
    assert_ne!(panel.send_for_bytes(req).await.1["etag"], tag.as_str());

    // Held: 304 with no body, still under the CSP. A stale or malformed tag: the whole asset.
    let (status, headers, body) = get(Some(&format!("\"stale\", {tag}"))).await;
    assert_eq!(status, 304);
    assert!(body.is_empty());
    assert!(headers["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    assert_eq!(headers["etag"], tag.as_str());
    for other in ["\"0000000000000000\"", "not a tag", ""] {
        let (status, _, body) = get(Some(other)).await;
        assert_eq!((status.as_u16(), body.is_empty()), (200, false), "{other:?}");
    }
}

#[tokio::test]
async fn pages_and_assets_go_compressed_to_a_browser_that_takes_gzip() {
    let panel = TestPanel::start().await;
    let get = |path: &str, accept: Option<&str>| {
        let mut req = axum::http::Request::get(path);
        if let Some(accept) = accept {
            req = req.header("accept-encoding", accept);
        }
        panel.send_for_bytes(req.body(axum::body::Body::empty()).unwrap())
    };
    let gunzip = |bytes: &[u8]| {
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut plain).expect("a gzip stream");
        plain
    };
    for path in ["/", "/servers/0b3e2c52-0000-4000-8000-000000000000/files", "/assets/console.js", "/assets/app.css"] {
        let (status, headers, plain) = get(path, None).await;
        assert_eq!(status, 200, "{path}");
        assert!(headers.get("content-encoding").is_none(), "{path}: not asked for");
        assert_eq!(headers["vary"], "accept-encoding", "{path}");
        let (status, headers, zipped) = get(path, Some("gzip, deflate, br, zstd")).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(headers["content-encoding"], "gzip", "{path}");
        assert_eq!(headers["vary"], "accept-encoding", "{path}");
        assert!(headers["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
        assert_eq!(gunzip(&zipped), plain, "{path}: the same bytes");
        assert!(zipped.len() < plain.len(), "{path}: {} of {} bytes", zipped.len(), plain.len());
        // Refused, or not among the codings offered: as is.
        for accept in ["identity", "gzip;q=0", "gzip;q=0, *", "br", "", "*;q=0"] {
            let (_, headers, body) = get(path, Some(accept)).await;
            assert!(headers.get("content-encoding").is_none(), "{path} {accept:?}");
            assert_eq!(body, plain, "{path} {accept:?}");
        }
        for accept in ["GZIP;q=0.5", "br, *", "deflate, gzip ; q=1.0"] {
            let (_, headers, _) = get(path, Some(accept)).await;
            assert_eq!(headers["content-encoding"], "gzip", "{path} {accept:?}");
        }
    }
    // Each form has its own entity tag; a browser holding the compressed one gets a 304 for it.
    let (_, plain, _) = get("/assets/api.js", None).await;
    let (_, zipped, _) = get("/assets/api.js", Some("gzip")).await;
    assert_ne!(plain["etag"], zipped["etag"]);
    let req = axum::http::Request::get("/assets/api.js")
        .header("accept-encoding", "gzip")
        .header("if-none-match", zipped["etag"].clone())
        .body(axum::body::Body::empty())
        .unwrap();
    let (status, headers, body) = panel.send_for_bytes(req).await;
    assert_eq!((status.as_u16(), body.len()), (304, 0));
    assert_eq!(headers["etag"], zipped["etag"]);
}

#[test]
fn the_admin_link_is_shown_for_exactly_the_permissions_the_admin_tabs_need() {
    let (_, api) = capcore::panel::ui::asset("api.js").unwrap();
    let list = api.split_once("export const ADMIN_PERMISSIONS = [").unwrap().1.split_once("];").unwrap().0;
    let mut link: Vec<&str> = list.split(',').map(|p| p.trim().trim_matches('"')).filter(|p| !p.is_empty()).collect();
    let page = capcore::panel::ui::page("admin").unwrap();
    let mut tabs: Vec<&str> =
        page.split("data-needs=\"").skip(1).flat_map(|rest| rest.split('"').next().unwrap().split(' ')).collect();
    for set in [&mut link, &mut tabs] {
        set.sort_unstable();
        set.dedup();
    }
    assert_eq!(link, tabs);
    assert!(tabs.len() >= 5, "{tabs:?}");
    assert!(tabs.iter().all(|t| capcore::permission::Permission::from_name(t).is_some()), "{tabs:?}");
}

/// Whether markup has an event handler attribute (` onclick=`, ` onerror=`…).
fn has_handler_attribute(html: &str) -> bool {
    html.match_indices(" on").any(|(i, _)| {
        let rest = &html[i + 3..];
        let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
        !name.is_empty() && rest[name.len()..].starts_with('=')
    })
}

#[test]
fn handler_attributes_are_found() {
    assert!(has_handler_attribute(r#"<img src=x onerror=alert(1)>"#));
    assert!(has_handler_attribute(r#"<a onclick="x()">"#));
    assert!(!has_handler_attribute("<p>turn on the server</p>"));
}

#[test]
fn the_ui_scripts_never_turn_strings_into_markup_or_code() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../capcore/src/panel/ui/assets");
    let mut scripts = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "js") {
            continue;
        }
        scripts += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        for sink in
            ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setTimeout(\""]
        {
            assert!(!text.contains(sink), "{} uses {sink}", path.display());
        }
    }
    assert!(scripts >= 5, "the scripts were read");
}
