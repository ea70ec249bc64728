//! The process runtime with a real child: the test game server from `examples/`.
//!
//! Run with `cargo test --workspace`, which builds `cap-test-game-server` first. Adoption, limits
//! and install scripts have their own files beside this one; `support/mod.rs` is shared.

mod support;

use capagent::ProcessRuntime;
use capcore::backend::{Runtime, RuntimeStatus};
use capcore::ids::ServerId;
use capcore::template::{StopAction, StopSignal};
use std::time::Duration;
use support::{config, line_matching, running_as_root, spec, started};

fn runtime() -> ProcessRuntime {
    ProcessRuntime::new(config("basic"))
}

#[tokio::test]
async fn start_ready_command_and_graceful_stop() {
    let rt = runtime();
    let (id, _game) = started(&rt, spec(&[], StopAction::Command("stop".into()))).await;
    assert!(matches!(rt.status(id).await.unwrap(), RuntimeStatus::Running { .. }));
    assert_eq!(rt.start(id).await.unwrap_err().to_string(), "the server is already running");
    let mut sub = rt.subscribe(id).unwrap();
    assert!(sub.replay.iter().any(|l| l.contains("starting on port 27015")), "the port came from the spec");
    rt.send_command(id, "say hello; $(reboot) `x`").await.unwrap();
    line_matching(&mut sub, |l| l == "[Server] hello; $(reboot) `x`").await;
    rt.stop(id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(rt.status(id).await.unwrap(), RuntimeStatus::Exited { code: Some(0), signal: None });
    // Everything the game wrote is in the console once its exit is known.
    let replay = rt.subscribe(id).unwrap().replay;
    let n = replay.len();
    assert_eq!(&replay[n - 2..], ["Stopping server", "[cap] the server exited with code 0"]);
    assert!(rt.send_command(id, "list").await.is_err(), "no stdin after exit");
    rt.remove(id).await.unwrap();
}

#[tokio::test]
async fn the_game_gets_only_its_own_environment_and_argv_unchanged() {
    let rt = runtime();
    let hostile = "; rm -rf / $(reboot) \"quoted\" 'single'";
    let (id, _game) = started(&rt, spec(&["--motd", hostile], StopAction::Signal(StopSignal::Sigterm))).await;
    let mut sub = rt.subscribe(id).unwrap();
    line_matching(&mut sub, |l| l == format!("MOTD: {hostile}")).await;
    rt.send_command(id, "echo-env GREETING").await.unwrap();
    line_matching(&mut sub, |l| l == "GREETING=hi there").await;
    // Cargo sets this for the test process; the game must not inherit it.
    rt.send_command(id, "echo-env CARGO_MANIFEST_DIR").await.unwrap();
    line_matching(&mut sub, |l| l == "CARGO_MANIFEST_DIR is not set").await;
    rt.send_command(id, "echo-args").await.unwrap();
    line_matching(&mut sub, |l| l == format!("arg[2]={hostile}")).await;
    rt.stop(id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(rt.status(id).await.unwrap(), RuntimeStatus::Exited { code: Some(0), signal: None }, "SIGTERM stop");
    rt.remove(id).await.unwrap();
}

#[tokio::test]
async fn a_game_that_ignores_the_stop_is_killed_after_the_grace_period() {
    let rt = runtime();
    let (id, _game) = started(&rt, spec(&["--hang-on-stop"], StopAction::Signal(StopSignal::Sigint))).await;
    let mut sub = rt.subscribe(id).unwrap();
    rt.stop(id, Duration::from_millis(300)).await.unwrap();
    assert_eq!(rt.status(id).await.unwrap(), RuntimeStatus::Exited { code: None, signal: Some(9) });
    // It got the polite signal first.
    line_matching(&mut sub, |l| l == "Refusing to stop (signal)").await;
    rt.remove(id).await.unwrap();
}

#[tokio::test]
async fn a_crash_is_reported_with_its_exit_code() {
    let rt = runtime();
    let (id, _game) = started(&rt, spec(&[], StopAction::Command("stop".into()))).await;
    rt.send_command(id, "crash").await.unwrap();
    assert_eq!(rt.wait_exit(id).await.unwrap(), RuntimeStatus::Exited { code: Some(3), signal: None });
    // It can be started again.
    rt.start(id).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), rt.wait_ready(id)).await.unwrap().unwrap();
    rt.kill(id).await.unwrap();
    assert_eq!(rt.status(id).await.unwrap(), RuntimeStatus::Exited { code: None, signal: Some(9) });
    rt.remove(id).await.unwrap();
}

#[tokio::test]
async fn a_flood_keeps_the_console_and_the_disk_bounded() {
    let rt = ProcessRuntime::new(capagent::ProcessRuntimeConfig {
        console: capagent::ConsoleConfig { buffer_lines: 100, lines_per_interval: 1000, ..Default::default() },
        ..config("flood")
    });
    let (id, _game) = started(&rt, spec(&["--flood", "200000"], StopAction::Command("stop".into()))).await;
    let mut sub = rt.subscribe(id).unwrap();
    // Over 1000 lines a second the rest are dropped, and the next interval says how many.
    let marker = line_matching(&mut sub, |l| l.contains("dropping lines")).await;
    assert!(marker.starts_with("[cap] "), "{marker}");
    rt.stop(id, Duration::from_secs(10)).await.unwrap();
    let replay = rt.subscribe(id).unwrap().replay;
    assert!(replay.len() <= 100, "the buffer holds at most 100 lines, not {}", replay.len());
    // What was read is punched out of the log (the adoption test checks this on megabytes).
    let log = config("flood").state_dir.join(id.to_string()).join("stdout.log");
    let meta = std::fs::metadata(&log).unwrap();
    assert!(
        std::os::unix::fs::MetadataExt::blocks(&meta) * 512 <= 8192,
        "read log data is freed: {} bytes allocated",
        std::os::unix::fs::MetadataExt::blocks(&meta) * 512
    );
    rt.remove(id).await.unwrap();
    assert!(!log.exists(), "remove deletes the state directory too");
}

#[tokio::test]
async fn stats_report_memory_disk_and_uptime() {
    let rt = runtime();
    let (id, _game) = started(&rt, spec(&["--hold-memory-mb", "64"], StopAction::Command("stop".into()))).await;
    let stats = rt.stats(id).await.unwrap();
    assert!(stats.memory_bytes >= 64 * 1024 * 1024, "memory {} below the 64 MiB held", stats.memory_bytes);
    assert!(stats.uptime > Duration::ZERO);
    assert!(stats.cpu_percent >= 0.0);
    rt.stop(id, Duration::from_secs(10)).await.unwrap();
    rt.remove(id).await.unwrap();
}

#[tokio::test]
async fn unknown_servers_and_bad_specs_are_refused() {
    let rt = runtime();
    let missing = ServerId(uuid::Uuid::new_v4());
    assert!(matches!(rt.start(missing).await, Err(capcore::Error::NotFound { .. })));
    assert!(matches!(rt.install(missing, "true", "sh").await, Err(capcore::Error::NotFound { .. })));
    let mut empty = spec(&[], StopAction::Command("stop".into()));
    empty.argv.clear();
    assert!(matches!(rt.create(empty).await, Err(capcore::Error::Invalid(_))));
    let mut nowhere = spec(&[], StopAction::Command("stop".into()));
    nowhere.argv = vec!["/nonexistent/game".into()];
    let id = nowhere.server_id;
    rt.create(nowhere).await.unwrap();
    assert!(rt.start(id).await.unwrap_err().to_string().contains("cannot start `/nonexistent/game`"));
    assert!(rt.send_command(id, "two\nlines").await.is_err());
    rt.remove(id).await.unwrap();
}

#[tokio::test]
async fn as_root_games_run_as_the_configured_unprivileged_user() {
    if !running_as_root() {
        assert!(std::env::var("CAP_TEST_REQUIRE").as_deref() != Ok("1"), "this test needs root (CAP_TEST_REQUIRE=1)");
        eprintln!("skipping: not root, so there is no privilege to drop");
        return;
    }
    let rt = ProcessRuntime::new(capagent::ProcessRuntimeConfig {
        run_as: Some(capagent::RunAs { uid: 65534, gid: 65534 }),
        ..config("runas")
    });
    let mut s = spec(&[], StopAction::Command("stop".into()));
    s.argv = vec!["/bin/sh".into(), "-c".into(), "id -u; id -g; id -G; touch mine && echo wrote".into()];
    s.ready_patterns.clear();
    let id = s.server_id;
    rt.create(s).await.unwrap();
    rt.start(id).await.unwrap();
    assert_eq!(rt.wait_exit(id).await.unwrap(), RuntimeStatus::Exited { code: Some(0), signal: None });
    let sub = rt.subscribe(id).unwrap();
    let out: Vec<String> = sub.replay.iter().filter(|l| !l.starts_with("[cap]")).cloned().collect();
    assert_eq!(out, ["65534", "65534", "65534", "wrote"], "uid, gid and no supplementary groups of root's");
    // The install script runs as that user too, and can read its script in the agent's directory.
    let status = rt.install(id, "id -u; touch installed && echo installed", "sh").await.unwrap();
    assert_eq!(status, RuntimeStatus::Exited { code: Some(0), signal: None });
    let replay = rt.subscribe(id).unwrap().replay;
    let n = replay.len();
    assert_eq!(&replay[n - 3..], ["65534", "installed", "[cap] install finished with code 0"], "{replay:?}");
    let state = config("runas").state_dir.join(id.to_string());
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&state).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700, "closed again after the install");
    rt.remove(id).await.unwrap();
}
