//! The browser WebSocket (`/api/servers/{id}/ws`) over a real socket: replay, permissions per
//! message, origin checks, rate limits, and slow browsers dropped without stalling others.
//! Feed messages are published straight into the panel's live hub, as the agent gateway does.

use cap_tests::e2e::{live_connect, live_connect_summary, live_connect_with, wait_until};
use cap_tests::{Cred, TestPanel};
use capcore::ids::ServerId;
use capcore::panel::PanelConfig;
use capcore::panel::live::StatsSample;
use capcore::protocol::v1::ConsoleStream;
use capcore::state::ServerState;
use serde_json::json;
use std::time::Duration;

fn config() -> PanelConfig {
    PanelConfig {
        console_replay_lines: 5,
        ws_send_queue: 64,
        ws_send_timeout: Duration::from_millis(500),
        ws_messages_per_second: 4,
        ..PanelConfig::default()
    }
}

async fn setup() -> (TestPanel, std::net::SocketAddr, String, Cred) {
    let panel = TestPanel::start_with(cap_tests::test_auth_config(), config()).await;
    let addr = panel.serve().await;
    let (owner_id, owner) = panel.user("owner", &[]).await;
    let (_, _, server) = panel.server_setup(&owner_id).await;
    (panel, addr, server, owner)
}

fn publish(panel: &TestPanel, server: &str, line: &str) {
    panel.panel.state().live.console(server.parse::<ServerId>().unwrap(), ConsoleStream::Stdout, line);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_subscribers_get_the_bounded_replay_then_the_live_feed() {
    let (panel, addr, server, owner) = setup().await;
    for i in 0..8 {
        publish(&panel, &server, &format!("early {i}"));
    }
    let mut live = live_connect(addr, &server, &owner).await.unwrap();
    let hello = live.next().await.unwrap();
    assert_eq!((hello["type"].as_str(), hello["state"].as_str()), (Some("hello"), Some("installing")), "{hello}");
    assert_eq!(hello["node_online"], false);
    publish(&panel, &server, "live line");
    panel.panel.state().live.state(server.parse().unwrap(), ServerState::Offline);
    live.until_state("offline").await;
    live.until_line("live line").await;
    assert_eq!(live.console_lines(), ["early 3", "early 4", "early 5", "early 6", "early 7", "live line"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_summary_socket_gets_state_and_use_without_console_history_or_backups() {
    let (panel, addr, server, owner) = setup().await;
    let id: ServerId = server.parse().unwrap();
    let sample = |cpu| StatsSample { at_ms: 0, cpu_percent: cpu, memory_bytes: 1 << 20, disk_bytes: 0, network: None };
    publish(&panel, &server, "replayed line");
    panel.panel.state().live.stats(id, sample(1.0), 10);
    let mut summary = live_connect_summary(addr, &server, &owner).await.unwrap();
    let mut full = live_connect(addr, &server, &owner).await.unwrap();
    full.until_line("replayed line").await;
    full.until_kind("history", "the stats history", |_| true).await;

    publish(&panel, &server, "live line");
    panel.panel.state().live.stats(id, sample(2.5), 20);
    panel.panel.state().live.state(id, ServerState::Offline);
    full.until_line("live line").await;
    // Frames go out in the order they were published: had the line been sent to the summary
    // socket, it would have come before this state.
    summary.until_state("offline").await;
    summary.until_kind("stats", "the new stats", |v| v["cpu_percent"] == 2.5).await;
    let kinds: Vec<&str> = summary.seen.iter().filter_map(|m| m["type"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"hello"), "{kinds:?}");
    assert!(summary.console_lines().is_empty(), "{:?}", summary.console_lines());
    assert!(!kinds.contains(&"history"), "{kinds:?}");
    assert!(kinds.iter().all(|k| ["hello", "stats", "state"].contains(k)), "{kinds:?}");

    // A value that is not a boolean is refused before the upgrade, naming the parameter.
    let (status, body) = panel.get(&format!("/api/servers/{server}/ws?summary=maybe"), &owner).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_query", "{body}");
    assert!(body["message"].as_str().unwrap().contains("summary"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_lines_need_console_permission_and_are_rechecked_while_streaming() {
    let (panel, addr, server, _) = setup().await;
    publish(&panel, &server, "secret replay");
    let (_, viewer) = panel.user("viewer", &[]).await;
    panel.subuser(&server, "viewer@example.org", &["SERVER_VIEW"]).await;
    let (operator_id, operator) = panel.user("operator", &[]).await;
    panel.subuser(&server, "operator@example.org", &["SERVER_VIEW", "SERVER_CONSOLE"]).await;
    let mut viewer_live = live_connect(addr, &server, &viewer).await.unwrap();
    let mut operator_live = live_connect(addr, &server, &operator).await.unwrap();
    operator_live.until_line("secret replay").await;

    publish(&panel, &server, "secret live");
    panel.panel.state().live.state(server.parse().unwrap(), ServerState::Offline);
    viewer_live.until_state("offline").await;
    operator_live.until_line("secret live").await;
    // Anything published before the viewer's next message was answered has gone out by then.
    viewer_live.send(json!({"type": "command", "command": "say hi"})).await;
    let refused = viewer_live.next_error().await;
    assert_eq!(refused["error"], "forbidden", "{refused}");
    assert!(viewer_live.console_lines().is_empty(), "{:?}", viewer_live.console_lines());

    // Console permission taken away mid-stream: re-checked at the latest a second later or,
    // as here, at the browser's next message; no console line goes out after that.
    panel.subuser(&server, "operator@example.org", &["SERVER_VIEW"]).await;
    operator_live.send(json!({"type": "power", "action": "kill"})).await;
    let refused = operator_live.next_error().await;
    assert_eq!(refused["error"], "forbidden", "{refused}");
    publish(&panel, &server, "after revocation");
    panel.panel.state().live.state(server.parse().unwrap(), ServerState::Starting);
    operator_live.until_state("starting").await;
    assert!(
        !operator_live.console_lines().iter().any(|l| l == "after revocation"),
        "{:?}",
        operator_live.console_lines()
    );

    // Removed entirely: the server is not found any more and the socket is closed.
    let (status, _) =
        panel.delete(&format!("/api/servers/{server}/subusers/{operator_id}"), &panel.admin().await).await;
    assert_eq!(status, 204);
    operator_live.send(json!({"type": "command", "command": "say hi"})).await;
    let gone = operator_live.until_kind("error", "an error", |v| v["error"] == "not_found").await;
    assert!(gone["message"].as_str().unwrap().contains("not found"), "{gone}");
    publish(&panel, &server, "to nobody");
    let reason = operator_live.until_closed().await;
    assert!(reason.contains("not found"), "{reason:?}");
    assert!(!operator_live.console_lines().iter().any(|l| l == "to nobody"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_that_stops_reading_is_dropped_and_others_keep_streaming() {
    let (panel, addr, server, owner) = setup().await;
    let id: ServerId = server.parse().unwrap();
    let mut reader = live_connect(addr, &server, &owner).await.unwrap();
    let mut stalled = live_connect_with(addr, &server, &owner, Some(4096)).await.unwrap();
    reader.next().await.unwrap();
    wait_until("both subscribed", || async { (panel.panel.state().live.subscribers(id) == 2).then_some(()) }).await;
    let filler = "x".repeat(2000);
    // Batches the reader keeps up with; the stalled browser's buffers fill and it is dropped.
    let started = tokio::time::Instant::now();
    let mut batch = 0;
    while panel.panel.state().live.subscribers(id) > 1 {
        assert!(started.elapsed() < cap_tests::e2e::DEADLINE, "the stalled browser was never dropped");
        batch += 1;
        for i in 0..31 {
            publish(&panel, &server, &format!("batch {batch} line {i} {filler}"));
        }
        let last = format!("batch {batch} last {filler}");
        publish(&panel, &server, &last);
        reader.until_line(&last).await;
    }
    let reason = stalled.until_closed().await;
    assert!(reason.is_empty() || reason.contains("too slow"), "{reason:?}");
    publish(&panel, &server, "still flowing");
    reader.until_line("still flowing").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_messages_are_validated_and_rate_limited() {
    let (panel, addr, server, owner) = setup().await;
    let mut live = live_connect(addr, &server, &owner).await.unwrap();
    live.next().await.unwrap();
    live.send(json!({"type": "shell", "command": "id"})).await;
    let bad = live.next_error().await;
    assert_eq!(bad["error"], "bad_message", "{bad}");
    live.send(json!({"type": "command", "command": "say hi"})).await;
    let offline = live.next_error().await;
    assert_eq!(offline["error"], "unavailable", "no agent is connected: {offline}");
    for _ in 0..4 {
        live.send(json!({"type": "power", "action": "warp"})).await;
    }
    let limited = live.until_kind("error", "rate limited", |v| v["error"] == "rate_limited").await;
    assert!(limited["message"].as_str().unwrap().contains("4 messages per second"), "{limited}");
    // Far over the limit: the connection is closed (sends fail once it is).
    for _ in 0..40 {
        if !live.try_send(json!({"type": "command", "command": "x"})).await {
            break;
        }
    }
    let reason = live.until_closed().await;
    assert_eq!(reason, "too many messages");
    assert_eq!(panel.last_audit("server.command").await["result"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sockets_must_come_from_the_panels_own_pages() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let (panel, addr, server, owner) = setup().await;
    let (_, headers) = panel.login_full("owner@example.org", cap_tests::PASSWORD).await;
    let access = headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("cap_access="))
        .and_then(|c| c.split(';').next())
        .expect("access cookie")
        .to_string();
    let open = |origin: Option<String>| {
        let access = access.clone();
        let server = server.clone();
        async move {
            let mut request = format!("ws://{addr}/api/servers/{server}/ws").into_client_request().unwrap();
            request.headers_mut().insert("cookie", format!("cap_access={access}").parse().unwrap());
            if let Some(o) = origin {
                request.headers_mut().insert("origin", o.parse().unwrap());
            }
            match tokio_tungstenite::connect_async(request).await {
                Ok(_) => 101,
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
                Err(e) => panic!("{e}"),
            }
        }
    };
    assert_eq!(open(Some("https://evil.example".into())).await, 403);
    assert_eq!(open(Some(format!("http://{addr}"))).await, 101);
    assert_eq!(open(None).await, 101, "non-browser clients send no Origin");
    // Not a WebSocket request: a JSON 400, not a hang.
    let (status, body) = panel.get(&format!("/api/servers/{server}/ws"), &owner).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "websocket_required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_does_not_answer_costs_a_request_its_timeout_and_no_more() {
    let config = PanelConfig { agent_timeout: Duration::from_millis(200), ..config() };
    let panel = TestPanel::start_with(cap_tests::test_auth_config(), config).await;
    let (owner_id, owner) = panel.user("owner", &[]).await;
    let (node, _, server) = panel.server_setup(&owner_id).await;
    panel.set_state(&server, &[ServerState::Offline]).await;
    let mut hung = panel.attach_silent_agent(&node);
    let power = format!("/api/servers/{server}/power");
    let message =
        cap_tests::assert_error(&panel.post(&power, &owner, json!({"action": "start"})).await, 503, "unavailable");
    assert!(message.contains("did not answer within 0.2 s"), "{message}");
    assert!(hung.try_recv().is_ok(), "the command did reach the agent");
    // The connection drops while a request waits: it fails at once, saying so.
    let waiting = tokio::spawn({
        let path = format!("/api/servers/{server}/command");
        let body = json!({"command": "say hi"});
        let (panel, owner) = (std::sync::Arc::new(panel), owner.clone());
        async move {
            let _ = panel.set_state(&server, &[ServerState::Starting, ServerState::Running]).await;
            panel.post(&path, &owner, body).await
        }
    });
    let call = hung.recv().await.expect("the command reached the agent");
    drop(call);
    drop(hung);
    let message = cap_tests::assert_error(&waiting.await.unwrap(), 503, "unavailable");
    assert!(message.contains("before answering") || message.contains("not connected"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_opens_the_live_socket_within_its_own_permissions() {
    let (panel, addr, server, owner) = setup().await;
    publish(&panel, &server, "for keys");
    let (status, created) = panel
        .post("/api/me/api-keys", &owner, json!({"name": "watch", "permissions": ["SERVER_VIEW", "SERVER_CONSOLE"]}))
        .await;
    assert_eq!(status, 200, "{created}");
    let key = Cred::bearer(created["secret"].as_str().unwrap());
    let mut live = live_connect(addr, &server, &key).await.unwrap();
    live.until_line("for keys").await;
    // A key without console permission sees the state but not the lines.
    let (_, narrow) =
        panel.post("/api/me/api-keys", &owner, json!({"name": "state", "permissions": ["SERVER_VIEW"]})).await;
    let mut narrow = live_connect(addr, &server, &Cred::bearer(narrow["secret"].as_str().unwrap())).await.unwrap();
    let hello = narrow.next().await.unwrap();
    assert_eq!(hello["permissions"], json!(["SERVER_VIEW"]), "{hello}");
    narrow.send(json!({"type": "command", "command": "say hi"})).await;
    let refused = narrow.next_error().await;
    assert_eq!(refused["error"], "forbidden", "{refused}");
    assert!(narrow.console_lines().is_empty());
    assert_eq!(live_connect(addr, &server, &Cred::bearer("cap_forgedkey_0000")).await.err(), Some(401));
}
