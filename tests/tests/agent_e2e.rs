//! End to end: the panel on a loopback socket, `cap-agent` as a child process dialling it,
//! real game servers (the test game server), and browser-like WebSocket clients.

use axum::http::Method;
use cap_tests::e2e::{AgentNode, AgentProcess, LiveClient, Proxy, live_connect, scratch_dir, wait_until};
use cap_tests::{Cred, TestPanel, assert_error};
use futures::SinkExt;
use serde_json::{Value, json};
use std::net::SocketAddr;

struct World {
    panel: TestPanel,
    addr: SocketAddr,
    node: String,
    token: String,
    agent: AgentProcess,
    owner_id: String,
    owner: Cred,
}

async fn world(tag: &str) -> World {
    let panel = TestPanel::start().await;
    let AgentNode { addr, node, token, agent } = panel.agent_node(tag, 8, &[]).await;
    let (owner_id, owner) = panel.user("owner", &[]).await;
    World { panel, addr, node, token, agent, owner_id, owner }
}

fn stop_command() -> Value {
    json!({"type": "command", "value": "stop"})
}

impl World {
    /// A server of the owner from a test-game template with `extra` options, installed.
    async fn server(&self, name: &str, extra: &[&str]) -> String {
        let template = self.panel.game_template(&format!("{name}-game"), extra, stop_command()).await;
        let server = self.panel.server(name, &self.owner_id, &self.node, &template).await;
        self.panel.wait_state(&server, "offline").await;
        server
    }

    async fn live(&self, server: &str) -> LiveClient {
        let mut live = live_connect(self.addr, server, &self.owner).await.expect("live socket");
        let hello = live.next().await.expect("hello");
        assert_eq!(hello["type"], "hello", "{hello}");
        live
    }

    async fn power(&self, server: &str, action: &str) -> (axum::http::StatusCode, Value) {
        self.panel.post(&format!("/api/servers/{server}/power"), &self.owner, json!({"action": action})).await
    }

    async fn command(&self, server: &str, line: &str) -> (axum::http::StatusCode, Value) {
        self.panel.post(&format!("/api/servers/{server}/command"), &self.owner, json!({"command": line})).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_is_installed_started_commanded_and_stopped_through_the_agent() {
    let mut w = world("lifecycle").await;
    let admin = w.panel.admin().await;
    let (_, node) = w.panel.get(&format!("/api/nodes/{}", w.node), &admin).await;
    let facts = &node["agent"];
    assert_eq!(facts["runtimes"], json!(["process"]), "{node}");
    assert!(facts["cpus"].as_u64().unwrap() >= 1 && facts["memory_bytes"].as_u64().unwrap() > 0, "{node}");
    assert!(!facts["enforced_limits"].as_array().unwrap().is_empty(), "limits are reported: {node}");
    wait_until("a heartbeat arrives", || async {
        let (_, n) = w.panel.get(&format!("/api/nodes/{}", w.node), &admin).await;
        n["agent"]["last_heartbeat_at"].is_string().then_some(())
    })
    .await;

    let server = w.server("lifecycle", &[]).await;
    let mut live = w.live(&server).await;
    // The install script ran in the server's directory, its output streamed and replayed.
    live.until_line("installing into").await;

    assert_eq!(w.power(&server, "start").await.0, 202);
    live.until_state("starting").await;
    live.until_line("Server ready: Done (").await;
    live.until_state("running").await;
    assert_eq!(w.panel.state_of(&server).await, "running");

    assert_eq!(w.command(&server, "say hello from the panel").await.0, 202);
    live.until_line("[Server] hello from the panel").await;
    live.send(json!({"type": "command", "command": "list"})).await;
    live.until_line("There are 0 of a max of 20 players online").await;
    live.send(json!({"type": "command", "command": "echo-env SERVER_PORT"})).await;
    let (_, allocations) = w.panel.get(&format!("/api/servers/{server}/allocations"), &w.owner).await;
    live.until_line(&format!("SERVER_PORT={}", allocations[0]["port"])).await;
    live.send(json!({"type": "command", "command": "echo-env CAP_NODE_TOKEN"})).await;
    live.until_line("CAP_NODE_TOKEN is not set").await;

    assert_eq!(w.power(&server, "stop").await.0, 202);
    live.until_state("stopping").await;
    live.until_line("Stopping server").await;
    live.until_state("offline").await;
    assert_eq!(live.states_after_offline(), ["starting", "running", "stopping", "offline"]);
    let (status, audit) = w.panel.get("/api/audit?action=server.power", &admin).await;
    assert_eq!(status, 200);
    assert_eq!(audit["total"], 2, "{audit}");

    // The agent goes away cleanly: the node is offline, its server unknown, power is 503.
    assert!(w.agent.terminate().await.success());
    w.panel.wait_node(&w.node, false).await;
    live.until_state("unknown").await;
    assert_eq!(w.panel.state_of(&server).await, "unknown");
    assert_error(&w.power(&server, "start").await, 503, "unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_is_offline_at_once_and_readopts_its_running_server() {
    let mut w = world("sigkill").await;
    let server = w.server("survivor", &[]).await;
    let mut live = w.live(&server).await;
    assert_eq!(w.power(&server, "start").await.0, 202);
    live.until_state("running").await;

    w.agent.kill9().await;
    w.panel.wait_node(&w.node, false).await;
    live.until_state("unknown").await;
    assert_error(&w.power(&server, "stop").await, 503, "unavailable");
    assert_error(&w.command(&server, "say anyone?").await, 503, "unavailable");

    // The game kept running without its agent; a new agent on the same data re-adopts it.
    let data_dir = w.agent.data_dir.clone();
    w.agent = AgentProcess::spawn(w.addr, &w.token, &data_dir);
    w.panel.wait_node(&w.node, true).await;
    live.until_state("running").await;
    assert_eq!(w.command(&server, "say still here").await.0, 202);
    live.until_line("[Server] still here").await;
    assert_eq!(w.power(&server, "stop").await.0, 202);
    live.until_state("offline").await;
    // Every state change once, in order: nothing lost across the restart, nothing repeated.
    assert_eq!(live.states_after_offline(), ["starting", "running", "unknown", "running", "stopping", "offline"]);
    let lines = live.console_lines();
    assert_eq!(lines.iter().filter(|l| l.contains("Server ready: Done (")).count(), 1, "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_server_is_restarted_once_and_then_left_crashed() {
    let w = world("crash").await;
    let server = w.server("crashy", &["--crash-after-ms", "200"]).await;
    let mut live = w.live(&server).await;
    assert_eq!(w.power(&server, "start").await.0, 202);
    live.until_line("restarting it once").await;
    live.until_line("crashed again within").await;
    for state in ["starting", "running", "crashed", "starting", "running", "crashed"] {
        live.until_state(state).await;
    }
    assert_eq!(live.states_after_offline(), ["starting", "running", "crashed", "starting", "running", "crashed"]);
    assert_eq!(w.panel.state_of(&server).await, "crashed");
    // A crashed server can be started again by hand.
    assert_eq!(w.power(&server, "start").await.0, 202);
    live.until_state("starting").await;
}

/// Sum of the bytes of `flood line 1\n` … `flood line N\n`.
fn flood_bytes(n: u64) -> u64 {
    (1..=n).map(|i| 12 + i.to_string().len() as u64).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_line_flood_keeps_agent_memory_bounded_and_other_consoles_live() {
    let w = world("flood").await;
    let quiet = w.server("quiet", &[]).await;
    let noisy = w.server("noisy", &["--flood", "1000000"]).await;
    let mut quiet_live = w.live(&quiet).await;
    let mut reader = w.live(&noisy).await;
    assert_eq!(w.power(&quiet, "start").await.0, 202);
    quiet_live.until_state("running").await;
    let rss_before = w.agent.rss_kib();

    assert_eq!(w.power(&noisy, "start").await.0, 202);
    reader.until_line("dropping lines").await;
    let reading = tokio::spawn(async move {
        while reader.next().await.is_some() {}
        reader
    });
    assert_eq!(w.command(&quiet, "say still responsive").await.0, 202);
    quiet_live.until_line("[Server] still responsive").await;

    // The game writes the whole flood; the agent reads it all and stays small.
    let log = w.agent.data_dir.join("run").join(&noisy).join("stdout.log");
    let total = flood_bytes(1_000_000);
    wait_until("the game wrote a million lines", || async {
        (std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) >= total).then_some(())
    })
    .await;
    assert_eq!(w.command(&quiet, "say after the flood").await.0, 202);
    quiet_live.until_line("[Server] after the flood").await;
    let rss_after = w.agent.rss_kib();
    assert!(
        rss_after < rss_before + 64 * 1024,
        "agent RSS grew from {rss_before} KiB to {rss_after} KiB while a million lines passed"
    );

    for s in [&quiet, &noisy] {
        assert_eq!(w.power(s, "kill").await.0, 202);
    }
    quiet_live.until_state("offline").await;
    let reader = {
        reading.abort();
        reading.await
    };
    if let Ok(reader) = reader {
        let seen = reader.console_lines().len();
        assert!(seen < 1_000_000, "the throttle dropped lines ({seen} reached the browser)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_without_console_permission_gets_state_but_no_console() {
    let w = world("viewer").await;
    let server = w.server("watched", &[]).await;
    let (_, viewer) = w.panel.user("viewer", &[]).await;
    w.panel.subuser(&server, "viewer@example.org", &["SERVER_VIEW"]).await;
    let mut watcher = live_connect(w.addr, &server, &viewer).await.expect("SERVER_VIEW may connect");
    let hello = watcher.next().await.unwrap();
    assert!(!hello["permissions"].as_array().unwrap().contains(&json!("SERVER_CONSOLE")), "{hello}");
    let mut live = w.live(&server).await;

    assert_eq!(w.power(&server, "start").await.0, 202);
    live.until_line("Server ready: Done (").await;
    watcher.until_state("running").await;
    watcher.send(json!({"type": "command", "command": "say sneaky"})).await;
    let refused = watcher.next_error().await;
    assert_eq!(refused["error"], "forbidden", "{refused}");
    watcher.send(json!({"type": "power", "action": "stop"})).await;
    let refused = watcher.next_error().await;
    assert_eq!(refused["error"], "forbidden", "{refused}");
    assert!(watcher.console_lines().is_empty(), "no console line reached the viewer: {:?}", watcher.console_lines());
    assert!(!live.console_lines().iter().any(|l| l.contains("sneaky")));

    // A stranger cannot even open it; forged and expired credentials are refused.
    let (_, stranger) = w.panel.user("stranger", &[]).await;
    assert_eq!(live_connect(w.addr, &server, &stranger).await.err(), Some(404));
    assert_eq!(live_connect(w.addr, &server, &Cred::bearer("forged.jwt.token")).await.err(), Some(401));
    assert_eq!(live_connect(w.addr, &server, &Cred::None).await.err(), Some(401));
    w.panel.clock.advance_secs(16 * 60);
    assert_eq!(live_connect(w.addr, &server, &w.owner).await.err(), Some(401), "an expired access token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_with_forged_tokens_or_wrong_protocols_are_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let panel = TestPanel::start().await;
    let addr = panel.serve().await;
    let (node, token) = panel.node_with_token("strict", 0).await;
    let connect = |bearer: String| async move {
        let mut request = format!("ws://{addr}/api/agent/v1/connect").into_client_request().unwrap();
        request.headers_mut().insert("authorization", format!("Bearer {bearer}").parse().unwrap());
        tokio_tungstenite::connect_async(request).await
    };
    for forged in ["capn_forged".to_string(), format!("{token}x"), String::new()] {
        match connect(forged.clone()).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401, "{forged:?}"),
            other => panic!("token {forged:?} was not refused: {:?}", other.map(|_| ())),
        }
    }
    // The right token but a protocol this panel does not speak: refused with the reason.
    let (mut ws, _) = connect(token.clone()).await.expect("token accepted");
    let hello = json!({"type": "hello", "protocol_min": 7, "protocol_max": 9, "agent_version": "9.0.0",
        "facts": {"hostname": "h", "os": "o", "kernel": "k", "arch": "a", "cpus": 1, "memory_bytes": 1,
                  "disk_bytes": 1, "runtimes": [], "enforced_limits": []}});
    ws.send(tokio_tungstenite::tungstenite::Message::Text(hello.to_string().into())).await.unwrap();
    let reply = futures::StreamExt::next(&mut ws).await.unwrap().unwrap();
    let reply: Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert_eq!(reply["type"], "refused", "{reply}");
    assert!(reply["reason"].as_str().unwrap().contains("upgrade the panel"), "{reply}");
    assert!(!panel.node_connected(&node).await);
    // A malformed first message is refused too, and a non-WebSocket request gets a JSON 400.
    let (mut ws, _) = connect(token.clone()).await.expect("token accepted");
    ws.send(tokio_tungstenite::tungstenite::Message::Text("{\"type\":\"heartbeat\"".into())).await.unwrap();
    let reply = futures::StreamExt::next(&mut ws).await.unwrap().unwrap();
    assert!(reply.to_text().unwrap().contains("refused"), "{reply}");
    let (status, body) = panel.get("/api/agent/v1/connect", &Cred::bearer(token.clone())).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_variable_values_reach_the_game_as_one_unchanged_argument() {
    let w = world("hostile").await;
    let server = w.server("hostile", &[]).await;
    let canary = scratch_dir("canary").join("pwned");
    let hostile =
        format!("; rm -rf / $(touch {c}) `touch {c}` \"quoted\" 'single' && echo $HOME", c = canary.display());
    let (status, body) = w
        .panel
        .json(Method::PUT, &format!("/api/servers/{server}/variables"), &w.owner, json!({"values": {"MOTD": hostile}}))
        .await;
    assert_eq!(status, 200, "{body}");
    let mut live = w.live(&server).await;
    assert_eq!(w.power(&server, "start").await.0, 202);
    live.until_state("running").await;
    live.until_line(&format!("MOTD: {hostile}")).await;
    live.send(json!({"type": "command", "command": "echo-args"})).await;
    live.until_line(&format!("={hostile}")).await;
    assert!(!canary.exists(), "nothing in the value ran");
    assert_eq!(w.power(&server, "stop").await.0, 202);
    live.until_state("offline").await;

    // A newline stays inside the argument: the game prints it, it never reads it as a command.
    let (status, body) = w
        .panel
        .json(
            Method::PUT,
            &format!("/api/servers/{server}/variables"),
            &w.owner,
            json!({"values": {"MOTD": "one\nstop"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(w.power(&server, "start").await.0, 202);
    live.until_line("MOTD: one").await;
    live.until_state("running").await;
    assert_eq!(w.command(&server, "say still alive").await.0, 202);
    live.until_line("[Server] still alive").await;
    assert_eq!(w.panel.state_of(&server).await, "running");
    assert_eq!(w.power(&server, "stop").await.0, 202);
    live.until_state("offline").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_link_takes_the_node_offline_and_the_reconnect_delivers_what_was_missed() {
    let config = capcore::panel::PanelConfig {
        agent_heartbeat_interval: std::time::Duration::from_millis(300),
        agent_heartbeat_misses: 3,
        ..Default::default()
    };
    let panel = TestPanel::start_with(cap_tests::test_auth_config(), config).await;
    let addr = panel.serve().await;
    let proxy = Proxy::start(addr).await;
    let (node, token) = panel.node_with_token("flaky", 4).await;
    let agent = AgentProcess::spawn(proxy.addr, &token, &scratch_dir("flaky"));
    panel.wait_node(&node, true).await;
    let (owner_id, owner) = panel.user("owner", &[]).await;
    let template = panel.game_template("flaky-game", &[], stop_command()).await;
    let server = panel.server("flaky", &owner_id, &node, &template).await;
    panel.wait_state(&server, "offline").await;
    let mut live = live_connect(addr, &server, &owner).await.expect("live socket");
    let power = |action: &'static str| {
        let (panel, owner, server) = (&panel, &owner, &server);
        async move { panel.post(&format!("/api/servers/{server}/power"), owner, json!({"action": action})).await }
    };
    assert_eq!(power("start").await.0, 202);
    live.until_state("running").await;

    // The link goes silent (nothing closes): the panel notices the missing heartbeats.
    proxy.freeze();
    panel.wait_node(&node, false).await;
    live.until_state("unknown").await;
    assert_error(&power("stop").await, 503, "unavailable");

    // Meanwhile the game dies; the agent, alone, records the crash and restarts it once.
    let pid = agent.game_pid(&server).expect("the game runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let record = agent.data_dir.join("agent").join("servers").join(format!("{server}.json"));
    wait_until("the agent restarted the crashed game", || async {
        let r: Value = serde_json::from_slice(&std::fs::read(&record).ok()?).ok()?;
        (r["last_crash_ms"].is_i64() && r["state"] == "running").then_some(())
    })
    .await;

    // The link comes back: the agent reconnects and the panel gets every change it missed, once.
    proxy.thaw();
    panel.wait_node(&node, true).await;
    live.until_state("running").await;
    assert_eq!(live.states_after_offline(), ["starting", "running", "unknown", "crashed", "starting", "running"]);
    assert_eq!(panel.state_of(&server).await, "running");
    assert_eq!(power("stop").await.0, 202);
    live.until_state("offline").await;
}

/// A world with an installed server of `examples/templates/<package>.json`, and its port; `None`
/// (skipped) when Debian's `package` is not installed, unless `CAP_TEST_REQUIRE` is set.
async fn example_server(binary: &str, package: &str, name: &str) -> Option<(World, String, u64)> {
    if !std::path::Path::new(binary).exists() {
        assert!(std::env::var_os("CAP_TEST_REQUIRE").is_none(), "{package} is required: apt-get install {package}");
        eprintln!("skipped: Debian's {package} is not installed");
        return None;
    }
    let w = world(name).await;
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/templates/{package}.json"));
    let spec: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let (status, body) = w.panel.post("/api/templates", &w.panel.admin().await, spec).await;
    assert_eq!(status, 200, "{body}");
    let template = body["id"].as_str().unwrap().to_string();
    let server = w.panel.server(name, &w.owner_id, &w.node, &template).await;
    w.panel.wait_state(&server, "offline").await;
    let (_, allocations) = w.panel.get(&format!("/api/servers/{server}/allocations"), &w.owner).await;
    let port = allocations[0]["port"].as_u64().unwrap();
    Some((w, server, port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_freeciv_server_runs_from_its_example_template() {
    let Some((w, server, port)) = example_server("/usr/games/freeciv-server", "freeciv-server", "civ").await else {
        return;
    };

    let mut live = w.live(&server).await;
    live.until_line("freeciv saves go to").await;
    assert_eq!(w.power(&server, "start").await.0, 202);
    live.until_line(&format!("Now accepting new client connections on port {port}")).await;
    live.until_state("running").await;
    // It really listens on its allocation, and only on loopback as the allocation says.
    std::net::TcpStream::connect(("127.0.0.1", port as u16)).expect("freeciv listens on its port");
    let pid = w.agent.game_pid(&server).expect("freeciv runs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap().split_whitespace().next().unwrap();
    assert_ne!(uid, "0", "freeciv does not run as root");

    let sent = w.command(&server, "list").await;
    assert_eq!(sent.0, 202, "{sent:?}");
    live.until_line("List of players").await;
    assert_eq!(w.power(&server, "stop").await.0, 202);
    live.until_state("offline").await;
    let lines = live.console_lines();
    assert!(!lines.iter().any(|l| l.contains("was ended by signal")), "stopped by `quit`, not killed: {lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_minetest_server_runs_from_its_example_template_and_stops_on_sigint() {
    let Some((w, server, port)) = example_server("/usr/games/minetestserver", "minetest-server", "mine").await else {
        return;
    };

    let mut live = w.live(&server).await;
    live.until_line(&format!("minetest will listen on 127.0.0.1:{port}")).await;
    assert_eq!(w.power(&server, "start").await.0, 202);
    // Only on its allocation's address, never on every interface.
    live.until_line(&format!("listening on 127.0.0.1:{port}")).await;
    live.until_state("running").await;
    assert_eq!(w.power(&server, "stop").await.0, 202);
    live.until_line("Ctrl-C pressed, shutting down").await;
    live.until_state("offline").await;
    let lines = live.console_lines();
    assert!(!lines.iter().any(|l| l.contains("was ended by signal 9")), "stopped by SIGINT, not killed: {lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_spec_cannot_be_built_keeps_its_files_across_a_reconnect() {
    let mut w = world("keep").await;
    let template = w.panel.game_template("keep-game", &[], stop_command()).await;
    let server = w.panel.server("kept", &w.owner_id, &w.node, &template).await;
    w.panel.wait_state(&server, "offline").await;
    let files = w.agent.data_dir.join("servers").join(&server).join("installed.txt");
    assert!(files.exists());
    // The template now needs a variable the server does not have: its spec cannot be built.
    let admin = w.panel.admin().await;
    let (_, current) = w.panel.get(&format!("/api/templates/{template}"), &admin).await;
    let mut spec = current["spec"].clone();
    spec["startup"] = json!(format!("{} -- {{{{NEW_SETTING}}}}", spec["startup"].as_str().unwrap()));
    spec["variables"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "New setting", "env": "NEW_SETTING", "default": "x", "rules": "required|string|max:8"}));
    let (status, body) = w.panel.json(Method::PUT, &format!("/api/templates/{template}"), &admin, spec).await;
    assert_eq!(status, 200, "{body}");
    // A reconnect syncs: the server is not in the list, but the panel still has it.
    w.agent.kill9().await;
    w.panel.wait_node(&w.node, false).await;
    let data_dir = w.agent.data_dir.clone();
    w.agent = AgentProcess::spawn(w.addr, &w.token, &data_dir);
    w.panel.wait_node(&w.node, true).await;
    w.panel.wait_state(&server, "offline").await;
    assert!(files.exists(), "the agent kept the server's files");
    let message = assert_error(&w.power(&server, "start").await, 422, "invalid");
    assert!(message.contains("NEW_SETTING"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_port_is_taken_is_not_started_and_says_why() {
    let w = world("port-taken").await;
    let server = w.server("port-taken", &[]).await;
    let (_, allocations) = w.panel.get(&format!("/api/servers/{server}/allocations"), &w.owner).await;
    let port = allocations[0]["port"].as_u64().unwrap() as u16;
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free before the test takes it");
    let mut live = w.live(&server).await;
    let refused = w.power(&server, "start").await;
    let msg = assert_error(&refused, 409, "conflict");
    assert!(msg.contains(&format!("port {port} (TCP) on 127.0.0.1 is in use")), "{msg}");
    live.until_line("cannot start: port").await;
    assert_eq!(w.panel.state_of(&server).await, "offline");
    drop(squatter);
    assert_eq!(w.power(&server, "start").await.0, 202);
    live.until_state("running").await;

    // Resource use reaches the socket and the history kept for charts.
    let stats = live.until("a stats frame", |f| f["type"] == "stats").await;
    assert!(stats["memory_bytes"].as_u64().unwrap() > 0, "{stats}");
    let (status, history) = w.panel.get(&format!("/api/servers/{server}/stats"), &w.owner).await;
    assert_eq!(status, 200, "{history}");
    let samples = history.as_array().unwrap();
    assert!(!samples.is_empty() && samples.iter().all(|s| s["at_ms"].as_i64().unwrap() > 0), "{history}");
    assert!(samples.iter().all(|s| s["memory_bytes"].as_u64().unwrap() > 0), "{history}");
    let mut again = w.live(&server).await;
    let frame = again.until("the history on connect", |f| f["type"] == "history").await;
    assert!(!frame["samples"].as_array().unwrap().is_empty(), "{frame}");

    assert_eq!(w.power(&server, "stop").await.0, 202);
    live.until_state("offline").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_over_its_disk_limit_is_stopped_after_the_grace_saying_why() {
    let panel = TestPanel::start().await;
    let AgentNode { addr, node, agent, .. } = panel.agent_node("disk-watch", 2, &[("CAP_DISK_GRACE_SECS", "0")]).await;
    let admin = panel.admin().await;
    let (_, node_view) = panel.get(&format!("/api/nodes/{node}"), &admin).await;
    let limits = node_view["agent"]["enforced_limits"].as_array().unwrap();
    assert!(limits.contains(&json!("disk:inotify")), "the node says how it holds disk limits: {node_view}");
    let (owner_id, owner) = panel.user("owner", &[]).await;
    let template = panel.game_template("disk-game", &[], stop_command()).await;
    let limits =
        json!({"memory_mb": 256, "swap_mb": 0, "cpu_percent": 100, "disk_mb": 1, "io_weight": 500, "pids": 256});
    let (status, body) = panel
        .post(
            "/api/servers",
            &admin,
            json!({"name": "disk", "owner_id": owner_id, "node_id": node, "template_id": template, "limits": limits}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let server = body["id"].as_str().unwrap().to_string();
    panel.wait_state(&server, "offline").await;
    let mut live = live_connect(addr, &server, &owner).await.expect("live socket");
    assert_eq!(panel.post(&format!("/api/servers/{server}/power"), &owner, json!({"action": "start"})).await.0, 202);
    live.until_state("running").await;
    // The game writes past its limit (here: the test, in its place).
    std::fs::write(agent.data_dir.join("servers").join(&server).join("world.dat"), vec![7u8; 2 * 1024 * 1024]).unwrap();
    let warned = live.until_line("of its 1.0 MiB disk limit").await;
    assert!(warned["line"].as_str().unwrap().contains("it is stopped in 0 s"), "{warned}");
    live.until_line("stopping the server").await;
    live.until_state("offline").await;
    assert_eq!(panel.state_of(&server).await, "offline");
}

/// The test engine (`CAP_TEST_DOCKER_HOST`), or `None` after saying why; required by CI.
fn docker_host() -> Option<String> {
    let host = cap_tests::docker::host();
    if host.is_none() {
        assert!(
            std::env::var("CAP_TEST_REQUIRE").as_deref() != Ok("1"),
            "{} is not set, and CAP_TEST_REQUIRE=1 requires the Docker tests",
            cap_tests::docker::HOST_ENV
        );
        eprintln!("skipping: {} is not set", cap_tests::docker::HOST_ENV);
    }
    host
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_runs_in_a_docker_container_installed_commanded_and_stopped() {
    let Some(host) = docker_host() else { return };
    let image = cap_tests::docker::image(&host, &cap_tests::e2e::workspace_bin("cap-test-game-server")).await;
    let panel = TestPanel::start().await;
    let docker = [("CAP_RUNTIME", "docker"), ("CAP_DOCKER_HOST", host.as_str())];
    let AgentNode { addr, node, agent: _agent, .. } = panel.agent_node("docker", 8, &docker).await;
    let admin = panel.admin().await;
    let (_, facts) = panel.get(&format!("/api/nodes/{node}"), &admin).await;
    assert_eq!(facts["agent"]["runtimes"], json!(["docker"]), "{facts}");
    let limits = facts["agent"]["enforced_limits"].as_array().unwrap();
    assert!(limits.contains(&json!("memory:docker")) && limits.contains(&json!("disk:inotify")), "{facts}");

    let template = json!({
        "name": "docker-game",
        "startup": format!("{} --port {{{{SERVER_PORT}}}} --motd {{{{MOTD}}}}", cap_tests::docker::GAME),
        "stop": stop_command(),
        "images": [{"label": "test", "image": image}],
        "variables": [{"name": "Message of the day", "env": "MOTD", "default": "in a box", "rules": "required|string|max:200"}],
        "ready_patterns": [{"type": "contains", "value": "Done ("}],
        "install": {"script": "echo installing into \"$PWD\"\necho done > installed.txt\n", "entrypoint": "sh"}
    });
    let (status, body) = panel.post("/api/templates", &admin, template).await;
    assert_eq!(status, 200, "{body}");
    let (owner_id, owner) = panel.user("owner", &[]).await;
    let server = panel.server("boxed", &owner_id, &node, body["id"].as_str().unwrap()).await;
    let mut live = live_connect(addr, &server, &owner).await.expect("live socket");
    panel.wait_state(&server, "offline").await;
    // The install ran in its own container with the server's directory at /mnt/server.
    live.until_line("installing into /mnt/server").await;
    let (_, listing) = panel.get(&format!("/api/servers/{server}/files?path=/"), &owner).await;
    let names: Vec<&str> = listing["entries"].as_array().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
    assert!(names.contains(&"installed.txt"), "the file manager sees what the install wrote: {listing}");

    let power = |action: &'static str| {
        let (panel, owner, server) = (&panel, &owner, &server);
        async move { panel.post(&format!("/api/servers/{server}/power"), owner, json!({"action": action})).await.0 }
    };
    assert_eq!(power("start").await, 202);
    live.until_line("MOTD: in a box").await;
    live.until_line("Server ready: Done (").await;
    live.until_state("running").await;
    live.send(json!({"type": "command", "command": "say hello from the panel"})).await;
    live.until_line("[Server] hello from the panel").await;
    live.send(json!({"type": "command", "command": "echo-env SERVER_PORT"})).await;
    let (_, allocations) = panel.get(&format!("/api/servers/{server}/allocations"), &owner).await;
    live.until_line(&format!("SERVER_PORT={}", allocations[0]["port"])).await;
    live.send(json!({"type": "command", "command": "echo-env CAP_NODE_TOKEN"})).await;
    live.until_line("CAP_NODE_TOKEN is not set").await;
    assert_eq!(power("stop").await, 202);
    live.until_line("Stopping server").await;
    live.until_state("offline").await;
    assert!(
        live.states_after_offline().ends_with(&["starting", "running", "stopping", "offline"].map(String::from)),
        "{:?}",
        live.states_after_offline()
    );

    // A node configured for Docker whose engine is unreachable registers without it, says why,
    // and refuses servers instead of running them as host processes.
    let dead = [("CAP_RUNTIME", "docker"), ("CAP_DOCKER_HOST", "unix:///nonexistent/docker.sock")];
    let AgentNode { node: broken, agent: _broken_agent, .. } = panel.agent_node("docker-dead", 8, &dead).await;
    let (_, facts) = panel.get(&format!("/api/nodes/{broken}"), &admin).await;
    assert_eq!(facts["agent"]["runtimes"], json!([]), "{facts}");
    let problem = facts["agent"]["runtime_problems"][0].as_str().unwrap_or_default();
    assert!(problem.starts_with("docker: ") && problem.contains("unreachable"), "{facts}");
    let (status, body) = panel
        .post(
            "/api/servers",
            &admin,
            json!({"name": "nowhere", "owner_id": owner_id, "node_id": broken, "template_id": body["id"],
                   "limits": {"memory_mb": 256, "swap_mb": 0, "cpu_percent": 100, "disk_mb": 0, "io_weight": 500, "pids": 64}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut live = live_connect(addr, body["id"].as_str().unwrap(), &admin).await.expect("live socket");
    let waits = live.until_line("[cap] the install waits for the node").await;
    assert!(waits["line"].as_str().unwrap().contains("the docker runtime is unavailable on this node"), "{waits}");
}
