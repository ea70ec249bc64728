//! Shared helpers of the process runtime tests: the test game's path, specs, configs, and waiting
//! for console lines.
#![allow(dead_code)] // Each test file uses its own subset.

#[cfg(feature = "docker")]
pub mod docker;
#[cfg(feature = "s3")]
pub mod moto;

use capagent::{ProcessRuntime, ProcessRuntimeConfig};
use capcore::backend::{Runtime, RuntimeSpec, RuntimeStatus};
use capcore::ids::ServerId;
use capcore::template::{ReadyPattern, StopAction};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::timeout;

/// The game server binary, next to this test's own binary directory.
pub fn game() -> String {
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

/// Servers and state under one temporary directory per test process and `name`; cgroups (where
/// used) under `/capagent-tests`, apart from the agent's.
pub fn config(name: &str) -> ProcessRuntimeConfig {
    let base = std::env::temp_dir().join(format!("capagent-{name}-{}", std::process::id()));
    ProcessRuntimeConfig { cgroup_parent: "/capagent-tests".into(), ..ProcessRuntimeConfig::new(base.join("servers")) }
        .with_state_dir(base.join("state"))
}

pub fn spec(args: &[&str], stop: StopAction) -> RuntimeSpec {
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
        ports: Vec::new(),
    }
}

#[allow(unused_imports)] // Each test file uses its own subset.
pub use capagent::runtime::conformance::line_matching;

/// Creates, starts and waits until ready; the guard kills the game if the test fails.
pub async fn started(rt: &ProcessRuntime, spec: RuntimeSpec) -> (ServerId, KillOnPanic) {
    let id = spec.server_id;
    rt.create(spec).await.unwrap();
    rt.start(id).await.unwrap();
    let guard = KillOnPanic(pid_of(rt.status(id).await.unwrap()));
    timeout(Duration::from_secs(30), rt.wait_ready(id)).await.unwrap().unwrap();
    (id, guard)
}

pub fn pid_of(status: RuntimeStatus) -> u32 {
    match status {
        RuntimeStatus::Running { pid } => pid,
        other => panic!("not running: {other:?}"),
    }
}

/// Kills a game's process group when a test fails while the game runs: games outlive a dropped
/// runtime by design, so a failed test would otherwise leave them behind.
#[derive(Debug)]
pub struct KillOnPanic(pub u32);

impl Drop for KillOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0)]).status();
        }
    }
}

/// Whether this test process runs as root (read from /proc, no extra crate).
pub fn running_as_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)) == Some("0")
}

/// Whether the cgroup path must be taken here: as root with a writable memory cgroup mount
/// (v1, or v2 with the memory controller), or whenever `CAP_TEST_REQUIRE=1`.
pub fn cgroups_expected() -> bool {
    if std::env::var("CAP_TEST_REQUIRE").as_deref() == Ok("1") {
        return true;
    }
    if !running_as_root() {
        return false;
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts.lines().any(|line| {
        let f: Vec<&str> = line.split(' ').collect();
        let (point, kind, opts) = (f.get(1).copied().unwrap_or(""), f.get(2).copied(), f.get(3).copied().unwrap_or(""));
        let rw = opts.split(',').any(|o| o == "rw");
        let memory = match kind {
            Some("cgroup") => opts.split(',').any(|o| o == "memory"),
            Some("cgroup2") => std::fs::read_to_string(format!("{point}/cgroup.controllers"))
                .unwrap_or_default()
                .split_whitespace()
                .any(|c| c == "memory"),
            _ => false,
        };
        rw && memory
    })
}
