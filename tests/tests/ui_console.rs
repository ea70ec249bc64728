//! The console page in a real browser (Debian's Chromium through chromedriver), against
//! `cap-agent` running the test game server: colours, the bounded scrollback, follow and
//! pause, command history, the resource chart, a network blip and the node going away and
//! coming back. Screenshots go to `target/ui-screenshots/`.

use cap_tests::PASSWORD;
use cap_tests::TestPanel;
use cap_tests::e2e::{AgentNode, AgentProcess, Proxy};
use cap_tests::webdriver::{Browser, quoted};
use serde_json::{Value, json};

/// `[scrollTop at the end, follow checked]` of the console.
const FOLLOWING: &str = "const c = document.querySelector('#console');
    return [c.scrollTop + c.clientHeight >= c.scrollHeight - 4, document.querySelector('#follow').checked];";

/// How many console lines the page has received.
const RECEIVED: &str = "Number(document.querySelector('#console').dataset.received)";

/// The last console line's text.
const LAST_LINE: &str = "return document.querySelector('#console').lastElementChild?.textContent ?? '';";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_colours_keeps_its_bound_follows_recalls_and_rides_out_blips_and_node_outages() {
    let Some(browser) = Browser::start("console", None).await else { return };
    let panel = TestPanel::start().await;
    let AgentNode { addr, node, token, mut agent } = panel.agent_node("ui-console", 4, &[]).await;
    let (owner_id, _) = panel.user("tenant", &[]).await;
    let stop = json!({"type": "command", "value": "stop"});
    // A game that prints without end, at the agent's default throttle (2,000 lines a second).
    let flood = panel.game_template("ui-console-flood", &["--flood", "0"], stop.clone()).await;
    let flooding = panel.server("flooding", &owner_id, &node, &flood).await;
    let template = panel.game_template("ui-console-game", &[], stop).await;
    let server = panel.server("plain", &owner_id, &node, &template).await;
    panel.wait_state(&flooding, "offline").await;
    panel.wait_state(&server, "offline").await;

    // The browser reaches the panel through a proxy that can cut its connections.
    let proxy = Proxy::start(addr).await;
    let base = format!("http://{}", proxy.addr);
    browser.goto(&format!("{base}/login?next=/servers/{flooding}")).await;
    browser.log_in("tenant@example.org", PASSWORD).await;
    browser.wait_text("#link", "Connected").await;
    browser.console_errors().await;
    browser.wait_for("Start enabled", "!document.querySelector('[data-action=start]').disabled").await;
    // Layout shifts are recorded from here (the page's first render is done).
    let observe = "window.shifts = 0; new PerformanceObserver((list) => {
        for (const e of list.getEntries()) { window.shifts += e.value;
        (window.moved ??= []).push(...e.sources.map((s) => s.node?.id || s.node?.className || s.node?.nodeName)); } }).observe({ type: 'layout-shift' });";
    browser.execute(observe, json!([])).await;
    browser.click("[data-action=start]").await;

    // Past 6,000 lines the page keeps the last 5,000, followed to the end. (The agent's own
    // lines say what the throttle dropped or a busy agent did not forward.)
    browser.wait_for("6,000 lines", &format!("{RECEIVED} > 6000")).await;
    let kept = "const lines = [...document.querySelectorAll('#console .line')];
        return [lines.length, lines.some((l) => l.textContent.includes('Done (')), lines.filter((l) => !/^(flood line \\d+|\\[cap\\] .+)$/.test(l.textContent)).map((l) => l.textContent).slice(0, 3)];";
    assert_eq!(browser.execute(kept, json!([])).await, json!([5000, false, []]), "the ready line scrolled away");
    browser.wait_for("the console at its end", "(() => { const c = document.querySelector('#console'); return c.scrollTop + c.clientHeight >= c.scrollHeight - 4; })()").await;
    assert_eq!(browser.execute(FOLLOWING, json!([])).await, json!([true, true]));
    // Nothing on the page moved while the lines streamed in.
    assert_eq!(browser.execute("return [window.shifts, window.moved ?? []];", json!([])).await, json!([0, []]));
    browser.screenshot("console-flood").await;

    // Paused: scrolled up by the reader, the view stays off the end while lines stream in;
    // following again goes to the end and stays there.
    browser.execute("document.querySelector('#console').scrollTop = 1000;", json!([])).await;
    browser.wait_for("follow off", "!document.querySelector('#follow').checked").await;
    let received = browser.execute(&format!("return {RECEIVED};"), json!([])).await;
    let more = format!("{RECEIVED} > {}", received.as_u64().unwrap() + 3000);
    browser.wait_for("3,000 more lines", &more).await;
    assert_eq!(browser.execute(FOLLOWING, json!([])).await, json!([false, false]), "still paused");
    browser.screenshot("console-paused").await;
    browser.click("#follow").await;
    let more = format!("{RECEIVED} > {}", received.as_u64().unwrap() + 5000);
    browser.wait_for("2,000 more lines", &more).await;
    assert_eq!(browser.execute(FOLLOWING, json!([])).await, json!([true, true]), "following again");
    browser.click("[data-action=stop]").await;
    browser.wait_text("#state", "offline").await;

    // The rest on a game that prints only what it is asked.
    browser.goto(&format!("{base}/servers/{server}")).await;
    browser.wait_text("#link", "Connected").await;
    browser.wait_for("Start enabled", "!document.querySelector('[data-action=start]').disabled").await;
    browser.click("[data-action=start]").await;
    browser.wait_text("#console", "Done (").await;
    browser.wait_text("#state", "running").await;

    // Colours: each coloured word a span of its colour, the rest plain text.
    command(&browser, "ansi").await;
    wait_last_line(&browser, "red bold green plain").await;
    let spans = browser
        .execute(
            "const line = document.querySelector('#console').lastElementChild;
             return [...line.childNodes].map((n) => [n.className ?? null, n.textContent,
                 n.nodeType === 1 ? getComputedStyle(n).color : getComputedStyle(line).color]);",
            json!([]),
        )
        .await;
    let parts: Vec<(Value, Value)> = spans.as_array().unwrap().iter().map(|s| (s[0].clone(), s[1].clone())).collect();
    assert_eq!(
        parts,
        [
            (json!("fg1"), json!("red")),
            (Value::Null, json!(" ")),
            (json!("fg2 b"), json!("bold green")),
            (Value::Null, json!(" plain"))
        ]
    );
    let colours: Vec<&str> = spans.as_array().unwrap().iter().map(|s| s[2].as_str().unwrap()).collect();
    assert!(colours[0] != colours[3] && colours[2] != colours[3] && colours[0] != colours[2], "{colours:?}");
    browser.screenshot("console-colours").await;

    // History: the arrow keys bring back earlier commands, newest first, then an empty line.
    command(&browser, "say first").await;
    wait_last_line(&browser, "[Server] first").await;
    command(&browser, "say second").await;
    wait_last_line(&browser, "[Server] second").await;
    let value = "return document.querySelector('#command').value;";
    let mut recalled = Vec::new();
    for key in ["\u{E013}", "\u{E013}", "\u{E015}", "\u{E015}"] {
        browser.type_into("#command", key).await;
        recalled.push(browser.execute(value, json!([])).await);
    }
    assert_eq!(recalled, [json!("say second"), json!("say first"), json!("say second"), json!("")]);

    // By keyboard alone: the first Tab reaches the skip link, which leads to the content; each
    // control reached shows a focus ring; a command is typed and sent with Enter.
    assert_eq!(browser.unlabelled().await, Vec::<Value>::new());
    browser.goto(&format!("{base}/servers/{server}")).await;
    browser.wait_text("#link", "Connected").await;
    browser.wait_for("Stop enabled", "!document.querySelector('[data-action=stop]').disabled").await;
    browser.press("\u{E004}").await;
    assert_eq!(browser.focused().await, ("a Skip to content".to_string(), true));
    browser.press("\u{E007}").await;
    assert_eq!(browser.focused().await.0.split(' ').next(), Some("main#main"));
    let mut reached = Vec::new();
    for _ in 0..20 {
        browser.press("\u{E004}").await;
        let (what, ring) = browser.focused().await;
        assert!(ring, "no focus ring on {what}");
        let done = what.starts_with("input#command");
        reached.push(what);
        if done {
            break;
        }
    }
    let reached = reached.join(" | ");
    for control in ["button Stop", "button Kill", "input#follow", "input#command"] {
        assert!(reached.contains(control), "{control} not reached: {reached}");
    }
    browser.screenshot("console-keyboard").await;
    browser.press("s").await;
    browser.type_into("#command", "ay by keyboard").await;
    browser.press("\u{E007}").await;
    wait_last_line(&browser, "[Server] by keyboard").await;

    // The resource chart: a line through the recent CPU samples.
    browser
        .wait_for(
            "two samples on the chart",
            "document.querySelector('#cpu-line').getAttribute('points').split(' ').length >= 2",
        )
        .await;
    assert!(browser.text("#cpu").await.ends_with('%'));
    assert!(browser.text("#memory").await.contains('B'), "{}", browser.text("#memory").await);

    // A network blip: every connection between the browser and the panel is cut and refused
    // for a while. The page says so, comes back by itself and gets the console replayed.
    let record = "window.links = []; const link = document.querySelector('#link');
        new MutationObserver(() => window.links.push(link.textContent))
            .observe(link, { childList: true, characterData: true, subtree: true });";
    browser.execute(record, json!([])).await;
    proxy.cut();
    browser.wait_for("the page to see the cut", "window.links.includes('Disconnected; reconnecting…')").await;
    browser.screenshot("console-blip").await;
    proxy.restore();
    browser.wait_for("a new socket", "window.links.at(-1) === 'Connected'").await;
    browser.wait_for("the replay", "document.querySelector('#console').textContent.includes('[Server] second')").await;
    command(&browser, "say after the blip").await;
    wait_last_line(&browser, "[Server] after the blip").await;

    // The node goes away: the page says so and the power buttons are off; the game keeps
    // running, and a new agent on the same data brings the node and the buttons back.
    agent.kill9().await;
    browser.wait_for("node offline", "!document.querySelector('#node').hidden").await;
    let buttons = "return [...document.querySelectorAll('#power button')].map((b) => b.disabled);";
    assert_eq!(browser.execute(buttons, json!([])).await, json!([true, true, true, true]));
    assert_eq!(browser.text("#state").await, "unknown");
    browser.screenshot("console-node-offline").await;
    let data_dir = agent.data_dir.clone();
    let mut agent = AgentProcess::spawn_with(addr, &token, &data_dir, &[]);
    browser.wait_for("node online", "document.querySelector('#node').hidden").await;
    browser.wait_text("#state", "running").await;
    browser.wait_for("Stop enabled", "!document.querySelector('[data-action=stop]').disabled").await;
    assert_eq!(browser.execute(LAST_LINE, json!([])).await, json!("[Server] after the blip"));
    browser.click("[data-action=stop]").await;
    browser.wait_text("#state", "offline").await;

    // The dashboard's sockets ride out a cut too, and show a node going away.
    browser.goto(&format!("{base}/")).await;
    browser.wait_text("#servers", "plain").await;
    let plain_state = format!(
        "document.querySelector(\"#servers a[href='/servers/{server}']\").parentElement.querySelector('.state').textContent"
    );
    let admin = panel.admin().await;
    let power = |action: &'static str| {
        let (panel, admin, server) = (&panel, &admin, &server);
        async move { panel.post(&format!("/api/servers/{server}/power"), admin, json!({"action": action})).await.0 }
    };
    assert_eq!(power("start").await, 202);
    browser.wait_for("running, live", &format!("{plain_state} === 'running'")).await;
    let plain = format!(
        "document.querySelector(\"#servers a[href='/servers/{server}']\").parentElement.querySelector('.state')"
    );
    proxy.cut();
    browser.wait_for("the state marked stale", &format!("{plain}.classList.contains('stale')")).await;
    assert_eq!(power("stop").await, 202);
    panel.wait_state(&server, "offline").await;
    assert_eq!(
        browser.execute(&format!("return {plain_state};"), json!([])).await,
        json!("running"),
        "not live while cut"
    );
    proxy.restore();
    browser
        .wait_for(
            "offline, through a new socket",
            &format!("{plain_state} === 'offline' && !{plain}.classList.contains('stale')"),
        )
        .await;
    agent.kill9().await;
    browser.wait_for("the node gone", &format!("{plain_state} === 'unknown (node offline)'")).await;
    browser.screenshot("dashboard-node-offline").await;
    let uses = browser
        .execute("return [...document.querySelectorAll('#servers .use')].map((u) => u.textContent);", json!([]))
        .await;
    assert_eq!(uses, json!(["", ""]), "no figures for games not known to run");

    // The page logged no error but the browser's own lines for connections that failed
    // while the network was cut.
    let errors = browser.console_errors().await;
    let cut = |e: &String| e.contains("net::ERR_") || e.contains("WebSocket connection to");
    assert!(errors.iter().all(cut), "{errors:?}");
}

/// Waits until the console's last line is `line`.
async fn wait_last_line(browser: &Browser, line: &str) {
    let last = format!("document.querySelector('#console').lastElementChild?.textContent === {}", quoted(line));
    browser.wait_for(&format!("the last line {line:?}"), &last).await;
}

/// Types `text` into the command line and sends it.
async fn command(browser: &Browser, text: &str) {
    browser.type_into("#command", text).await;
    browser.click("#command-form button[type=submit]").await;
}
