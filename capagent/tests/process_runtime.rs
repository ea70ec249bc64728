//! What only the process runtime does, with a real child (the test game server from
//! `examples/`): its log files stay bounded, and as root it drops to an unprivileged user. What
//! every runtime does is in `runtime_conformance.rs`; adoption, limits and install scripts have
//! their own files beside this one; `support/mod.rs` is shared.
//!
//! Run with `cargo test --workspace`, which builds `cap-test-game-server` first.

mod support;

use capagent::ProcessRuntime;
use capcore::backend::{Runtime, RuntimeStatus};
use capcore::template::StopAction;
use std::time::Duration;
use support::{config, line_matching, running_as_root, spec, started};

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
