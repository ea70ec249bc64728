//! The process runtime with a real child: the test game server from `examples/`.
//!
//! Run with `cargo test --workspace`, which builds `cap-test-game-server` first.

use capagent::{ProcessRuntime, ProcessRuntimeConfig};
use capcore::backend::{Runtime, RuntimeSpec, RuntimeStatus};
use capcore::ids::ServerId;
use capcore::template::{ReadyPattern, StopAction, StopSignal};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::timeout;

/// The game server binary, next to this test's own binary directory.
fn game() -> String {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join("cap-test-game-server");
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace` (it builds the test game server)",
        path.display()
    );
    path.display().to_string()
}

fn runtime() -> ProcessRuntime {
    let dir: PathBuf = std::env::temp_dir().join(format!("capagent-tests-{}", std::process::id()));
    ProcessRuntime::new(ProcessRuntimeConfig::new(dir))
}

fn spec(args: &[&str], stop: StopAction) -> RuntimeSpec {
    let mut argv = vec![game()];
    argv.extend(args.iter().map(|a| a.to_string()));
    RuntimeSpec {
        server_id: ServerId(uuid::Uuid::new_v4()),
        argv,
        environment: BTreeMap::from([("SERVER_PORT".into(), "27015".into()), ("GREETING".into(), "hi there".into())]),
        limits: Default::default(),
        stop,
        ready_patterns: vec![ReadyPattern::Contains("Done (".into())],
        image: None,
    }
}

/// Reads live console lines until one satisfies `want` (bounded, as a failure guard only).
async fn line_matching(sub: &mut capagent::Subscription, want: impl Fn(&str) -> bool) -> String {
    if let Some(hit) = sub.replay.iter().find(|l| want(l)) {
        return hit.clone();
    }
    timeout(Duration::from_secs(30), async {
        loop {
            let line = sub.live.recv().await.expect("console open");
            if want(&line) {
                return line;
            }
        }
    })
    .await
    .expect("the expected console line")
}

async fn started(rt: &ProcessRuntime, spec: RuntimeSpec) -> ServerId {
    let id = spec.server_id;
    rt.create(spec).await.unwrap();
    rt.start(id).await.unwrap();
    timeout(Duration::from_secs(30), rt.wait_ready(id)).await.unwrap().unwrap();
    id
}

#[tokio::test]
async fn start_ready_command_and_graceful_stop() {
    let rt = runtime();
    let id = started(&rt, spec(&[], StopAction::Command("stop".into()))).await;
    assert!(matches!(rt.status(id).await.unwrap(), RuntimeStatus::Running { .. }));
    assert_eq!(rt.start(id).await.unwrap_err().to_string(), "the server is already running");
    let mut sub = rt.subscribe(id).unwrap();
    assert!(sub.replay.iter().any(|l| l.contains("starting on port 27015")), "the port came from the spec");
    rt.send_command(id, "say hello; $(reboot) `x`").await.unwrap();
    line_matching(&mut sub, |l| l == "[Server] hello; $(reboot) `x`").await;
    rt.stop(id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(rt.status(id).await.unwrap(), RuntimeStatus::Exited { code: Some(0), signal: None });
    line_matching(&mut sub, |l| l == "Stopping server").await;
    assert!(rt.send_command(id, "list").await.is_err(), "no stdin after exit");
    rt.remove(id).await.unwrap();
}

#[tokio::test]
async fn the_game_gets_only_its_own_environment_and_argv_unchanged() {
    let rt = runtime();
    let hostile = "; rm -rf / $(reboot) \"quoted\" 'single'";
    let id = started(&rt, spec(&["--motd", hostile], StopAction::Signal(StopSignal::Sigterm))).await;
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
    let id = started(&rt, spec(&["--hang-on-stop"], StopAction::Signal(StopSignal::Sigint))).await;
    let mut sub = rt.subscribe(id).unwrap();
    rt.stop(id, Duration::from_millis(300)).await.unwrap();
    assert_eq!(rt.status(id).await.unwrap(), RuntimeStatus::Exited { code: None, signal: Some(9) });
    // It got the polite signal first (the line may still be on its way through the pipe).
    line_matching(&mut sub, |l| l == "Refusing to stop (signal)").await;
    rt.remove(id).await.unwrap();
}

#[tokio::test]
async fn a_crash_is_reported_with_its_exit_code() {
    let rt = runtime();
    let id = started(&rt, spec(&[], StopAction::Command("stop".into()))).await;
    rt.send_command(id, "crash").await.unwrap();
    assert_eq!(rt.wait_exit(id).await.unwrap(), RuntimeStatus::Exited { code: Some(3), signal: None });
    // It can be started again.
    rt.start(id).await.unwrap();
    timeout(Duration::from_secs(30), rt.wait_ready(id)).await.unwrap().unwrap();
    rt.kill(id).await.unwrap();
    assert_eq!(rt.status(id).await.unwrap(), RuntimeStatus::Exited { code: None, signal: Some(9) });
    rt.remove(id).await.unwrap();
}

#[tokio::test]
async fn a_flood_keeps_the_console_bounded() {
    let rt = ProcessRuntime::new(ProcessRuntimeConfig {
        console: capagent::ConsoleConfig { buffer_lines: 100, lines_per_interval: 1000, ..Default::default() },
        ..ProcessRuntimeConfig::new(std::env::temp_dir().join(format!("capagent-flood-{}", std::process::id())))
    });
    let id = started(&rt, spec(&["--flood", "200000"], StopAction::Command("stop".into()))).await;
    let mut sub = rt.subscribe(id).unwrap();
    // Over 1000 lines a second the rest are dropped, and the next interval says how many.
    let marker = line_matching(&mut sub, |l| l.contains("dropping lines")).await;
    assert!(marker.starts_with("[cap] "), "{marker}");
    rt.stop(id, Duration::from_secs(10)).await.unwrap();
    let replay = rt.subscribe(id).unwrap().replay;
    assert!(replay.len() <= 100, "the buffer holds at most 100 lines, not {}", replay.len());
    rt.remove(id).await.unwrap();
}

#[tokio::test]
async fn stats_report_memory_disk_and_uptime() {
    let rt = runtime();
    let id = started(&rt, spec(&["--hold-memory-mb", "64"], StopAction::Command("stop".into()))).await;
    let stats = rt.stats(id).await.unwrap();
    assert!(stats.memory_bytes >= 64 * 1024 * 1024, "rss {} below the 64 MiB held", stats.memory_bytes);
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
    let mut empty = spec(&[], StopAction::Command("stop".into()));
    empty.argv.clear();
    assert!(matches!(rt.create(empty).await, Err(capcore::Error::Invalid(_))));
    let mut nowhere = spec(&[], StopAction::Command("stop".into()));
    nowhere.argv = vec!["/nonexistent/game".into()];
    let id = nowhere.server_id;
    rt.create(nowhere).await.unwrap();
    assert!(rt.start(id).await.unwrap_err().to_string().contains("cannot start `/nonexistent/game`"));
    assert!(rt.send_command(id, "two\nlines").await.is_err());
}

/// Whether this test process runs as root (read from /proc, no extra crate).
fn running_as_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)) == Some("0")
}

#[tokio::test]
async fn as_root_games_run_as_the_configured_unprivileged_user() {
    if !running_as_root() {
        assert!(std::env::var("CAP_TEST_REQUIRE").as_deref() != Ok("1"), "this test needs root (CAP_TEST_REQUIRE=1)");
        eprintln!("skipping: not root, so there is no privilege to drop");
        return;
    }
    let rt = ProcessRuntime::new(ProcessRuntimeConfig {
        run_as: Some(capagent::RunAs { uid: 65534, gid: 65534 }),
        ..ProcessRuntimeConfig::new(std::env::temp_dir().join(format!("capagent-runas-{}", std::process::id())))
    });
    let mut s = spec(&[], StopAction::Command("stop".into()));
    s.argv = vec!["/bin/sh".into(), "-c".into(), "id -u; id -g; id -G; touch mine && echo wrote".into()];
    s.ready_patterns.clear();
    let id = s.server_id;
    rt.create(s).await.unwrap();
    rt.start(id).await.unwrap();
    assert_eq!(rt.wait_exit(id).await.unwrap(), RuntimeStatus::Exited { code: Some(0), signal: None });
    let mut sub = rt.subscribe(id).unwrap();
    line_matching(&mut sub, |l| l == "wrote").await;
    let out: Vec<String> = sub.replay.iter().filter(|l| !l.starts_with("[cap]")).cloned().collect();
    assert_eq!(&out[..3], ["65534", "65534", "65534"], "uid, gid and no supplementary groups of root's");
    rt.remove(id).await.unwrap();
}
