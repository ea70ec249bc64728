//! Load driver for the web UI in Debian's Chromium, each figure against a baseline in the same run:
//!
//! - time to the first console line after opening a server page from the dashboard (navigation
//!   start to the line added to the page), against a bare WebSocket client connecting and reading the same line;
//! - bytes the browser receives for the dashboard (HTML, modules, stylesheet, API answers and
//!   WebSocket frames until every server's state shows), on a first and a repeated visit,
//!   against the JSON of the server list alone; each server has `--history` console lines;
//! - the browser's memory with a server page open after 100,000 console lines streamed to it
//!   (the console keeps the last 5,000): JavaScript heap, DOM nodes and the proportional set
//!   size of the browser's processes, against the same page before the lines.
//!
//! `cargo build --release -p cap-agent -p cap-test-game-server && cargo run --release -p cap-tests --bin ui_load -- [--servers 20] [--history 100] [--lines 100000] [--samples 20]`

use cap_tests::e2e::{AgentNode, live_connect};
use cap_tests::webdriver::{Browser, NetworkBytes};
use cap_tests::{PASSWORD, TestPanel};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

struct Args {
    servers: usize,
    history: usize,
    lines: u64,
    samples: usize,
}

fn args() -> Args {
    let mut a = Args { servers: 20, history: 100, lines: 100_000, samples: 20 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--servers" => a.servers = value.parse().expect("--servers"),
            "--history" => a.history = value.parse().expect("--history"),
            "--lines" => a.lines = value.parse().expect("--lines"),
            "--samples" => a.samples = value.parse().expect("--samples"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn median(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    (samples[samples.len() / 2], samples[samples.len() - 1])
}

/// Proportional set size of a process, in KiB (shared pages divided among their users).
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Pss:"))?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// JavaScript heap in use and DOM nodes of the page after a full garbage collection, and the
/// PSS of all the browser's processes.
async fn memory(browser: &Browser) -> (f64, f64, u64) {
    browser.cdp("Performance.enable", json!({})).await;
    browser.cdp("HeapProfiler.collectGarbage", json!({})).await;
    let metrics = browser.cdp("Performance.getMetrics", json!({})).await;
    let metric = |name: &str| {
        metrics["metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["name"] == name)
            .and_then(|m| m["value"].as_f64())
    };
    let heap = metric("JSHeapUsedSize").expect("JSHeapUsedSize");
    let nodes = metric("Nodes").expect("Nodes");
    let pss = browser.processes().into_iter().map(pss_kib).sum();
    (heap, nodes, pss)
}

fn kib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0
}

fn print_bytes(label: &str, b: NetworkBytes) {
    println!(
        "  {label}: {:.1} KiB ({} HTTP answers {:.1} KiB, {} WebSocket frames {:.1} KiB)",
        kib(b.http_bytes + b.ws_bytes),
        b.http_requests,
        kib(b.http_bytes),
        b.ws_frames,
        kib(b.ws_bytes)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let browser = Browser::start_with("ui-load", None, true).await.expect("chromium and chromedriver");
    let panel = TestPanel::start().await;
    let ports = u16::try_from(a.servers + 2).expect("--servers");
    let AgentNode { addr, node, agent: _agent, .. } = panel.agent_node("ui-load", ports, &[]).await;
    let base = format!("http://{addr}");
    let (owner_id, owner) = panel.user("tenant", &[]).await;
    let quiet = panel.game_template("ui-load-game", &[], json!({"type": "command", "value": "stop"})).await;
    let post = |path: String, body: Value| {
        let (panel, owner) = (&panel, &owner);
        async move { panel.post(&path, owner, body).await }
    };

    // Time to the first console line: a running server with its startup lines to replay.
    let first = panel.server("first-line", &owner_id, &node, &quiet).await;
    panel.wait_state(&first, "offline").await;
    assert_eq!(post(format!("/api/servers/{first}/power"), json!({"action": "start"})).await.0, 202);
    panel.wait_state(&first, "running").await;
    browser.goto(&format!("{base}/servers/{first}")).await;
    browser.log_in("tenant@example.org", PASSWORD).await;
    browser.wait_text("#console", "Done (").await;
    // The refusals before logging in are read away.
    browser.console_errors().await;
    let mut page = Vec::new();
    let mut modules = Vec::new();
    let mut html = Vec::new();
    let mut assets = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..a.samples {
        // From the dashboard, as a tenant would open it.
        browser.goto(&format!("{base}/")).await;
        browser.goto(&format!("{base}/servers/{first}")).await;
        browser.wait_for("a console line", "performance.getEntriesByName('console-first-line').length > 0").await;
        let t = browser
            .execute(
                "const n = performance.getEntriesByType('navigation')[0];
                 const assets = performance.getEntriesByType('resource').filter(r => r.name.includes('/assets/'));
                 return [performance.getEntriesByName('console-first-line')[0].startTime, n.domContentLoadedEventEnd,
                         n.responseEnd, Math.max(...assets.map(r => r.responseEnd))];",
                json!([]),
            )
            .await;
        page.push(t[0].as_f64().expect("mark time"));
        modules.push(t[1].as_f64().expect("navigation time"));
        html.push(t[2].as_f64().expect("navigation time"));
        assets.push(t[3].as_f64().expect("asset time"));
        let started = Instant::now();
        let mut live = live_connect(addr, &first, &owner).await.expect("live feed");
        live.until_line("").await;
        bare.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let ((page_p50, page_max), (modules_p50, _), (bare_p50, bare_max)) = (median(page), median(modules), median(bare));
    let ((html_p50, _), (assets_p50, _)) = (median(html), median(assets));
    println!("time to the first console line, {} samples (median, slowest):", a.samples);
    println!("  server page, navigation start -> first line on the page: {page_p50:.1} ms, {page_max:.1} ms");
    println!("    the page's HTML received:                              {html_p50:.1} ms");
    println!("    the last of its modules and stylesheet received:       {assets_p50:.1} ms");
    println!("    its modules run (DOMContentLoaded):                    {modules_p50:.1} ms");
    println!("  bare WebSocket client, connect -> first line:             {bare_p50:.1} ms, {bare_max:.1} ms");
    browser.screenshot("ui-load-first-line").await;

    // Dashboard bytes: the tenant's servers running, each with its startup lines.
    let mut ids = vec![first.clone()];
    for i in 1..a.servers {
        ids.push(panel.server(&format!("server-{i}"), &owner_id, &node, &quiet).await);
    }
    for id in &ids[1..] {
        panel.wait_state(id, "offline").await;
        assert_eq!(post(format!("/api/servers/{id}/power"), json!({"action": "start"})).await.0, 202);
    }
    for id in &ids {
        panel.wait_state(id, "running").await;
        for i in 0..a.history {
            let said = post(format!("/api/servers/{id}/command"), json!({"command": format!("say history {i}")})).await;
            assert!(said.0.is_success(), "{said:?}");
        }
        if a.history > 0 {
            let mut live = live_connect(addr, id, &owner).await.expect("live feed");
            live.until_line(&format!("history {}", a.history - 1)).await;
        }
    }
    let (status, list) = panel.get("/api/servers?per_page=100", &owner).await;
    assert_eq!(status, 200);
    let list_bytes = list.to_string().len() as u64;
    println!("dashboard of {} running servers, each with {} console lines:", a.servers, a.history);
    for visit in ["first visit (cache empty)", "repeat visit"] {
        if visit.starts_with("first") {
            browser.cdp("Network.clearBrowserCache", json!({})).await;
        }
        browser.goto("about:blank").await;
        browser.network_bytes().await;
        browser.goto(&format!("{base}/")).await;
        // Every socket has brought its hello and the latest stats.
        let all_live = format!(
            "document.querySelectorAll('#servers .use').length === {} \
             && [...document.querySelectorAll('#servers .use')].every(s => s.textContent.startsWith('CPU'))",
            a.servers
        );
        browser.wait_for("every server's use shown", &all_live).await;
        print_bytes(visit, browser.network_bytes().await);
    }
    println!("  baseline, GET /api/servers?per_page=100 body alone: {:.1} KiB", kib(list_bytes));
    browser.screenshot("ui-load-dashboard").await;
    for id in &ids[1..] {
        post(format!("/api/servers/{id}/power"), json!({"action": "kill"})).await;
    }

    // Memory after many lines: a game printing without end, throttled by the agent as by
    // default (2,000 lines a second), streamed to its open page.
    let flood =
        panel.game_template("ui-load-flood", &["--flood", "0"], json!({"type": "signal", "value": "SIGKILL"})).await;
    let server = panel.server("flood", &owner_id, &node, &flood).await;
    panel.wait_state(&server, "offline").await;
    browser.goto(&format!("{base}/servers/{server}")).await;
    browser.wait_text("#state", "offline").await;
    let before = memory(&browser).await;
    let started = Instant::now();
    assert_eq!(post(format!("/api/servers/{server}/power"), json!({"action": "start"})).await.0, 202);
    let mut received = 0u64;
    while received < a.lines {
        browser
            .wait_for(
                "more lines",
                &format!("Number(document.querySelector('#console').dataset.received ?? 0) > {received}"),
            )
            .await;
        let v = browser.execute("return Number(document.querySelector('#console').dataset.received);", json!([])).await;
        received = v.as_u64().expect("a count");
        assert!(started.elapsed() < Duration::from_secs(600), "the lines did not come");
    }
    let streamed = started.elapsed();
    assert_eq!(post(format!("/api/servers/{server}/power"), json!({"action": "kill"})).await.0, 202);
    browser.wait_text("#state", "offline").await;
    let received =
        browser.execute("return Number(document.querySelector('#console').dataset.received);", json!([])).await;
    let kept = browser.execute("return document.querySelector('#console').childElementCount;", json!([])).await;
    let after = memory(&browser).await;
    browser.screenshot("ui-load-flood").await;
    println!(
        "server page with {received} console lines received in {:.1} s ({kept} kept on the page):",
        streamed.as_secs_f64()
    );
    let show = |label: &str, (heap, nodes, pss): (f64, f64, u64)| {
        println!(
            "  {label}: JS heap {:.1} MiB, {nodes} DOM nodes, browser PSS {:.1} MiB",
            heap / 1048576.0,
            pss as f64 / 1024.0
        );
    };
    show("before the lines (baseline)", before);
    show("after the lines            ", after);
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "{errors:?}");
    post(format!("/api/servers/{first}/power"), json!({"action": "kill"})).await;
}
