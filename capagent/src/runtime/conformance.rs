//! The conformance suite every [`GameRuntime`] passes: the process runtime, the Docker runtime,
//! and an embedder's own.
//!
//! A harness says how to make the runtime under test and how to run the test game server
//! (`examples/test-game-server`) on it; [`runtime_conformance_tests!`](crate::runtime_conformance_tests)
//! stamps one `#[tokio::test]` per behaviour:
//!
//! ```text
//! async fn docker() -> Option<Arc<dyn RuntimeHarness>> { /* None when no engine is configured */ }
//! capagent::runtime_conformance_tests!(docker, "docker");
//! ```
//!
//! A factory returning `None` skips visibly, or fails when `CAP_TEST_REQUIRE=1` (see
//! [`capcore::conformance`]). The calling crate needs `tokio` with `macros` and
//! `rt-multi-thread` as a dev-dependency.

use super::{GameRuntime, Install};
use crate::console::{ConsoleConfig, Subscription};
use async_trait::async_trait;
use capcore::backend::{RuntimeSpec, RuntimeStatus};
#[doc(hidden)]
pub use capcore::conformance::backend_or_skip;
use capcore::ids::ServerId;
use capcore::template::{StopAction, StopSignal};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What the suite needs to know about a runtime under test.
#[async_trait]
pub trait RuntimeHarness: Send + Sync {
    /// A runtime over the harness's directories (or engine). Calling it again is what an agent
    /// restart does: the new runtime must be able to adopt what the old one started.
    async fn runtime(&self, console: ConsoleConfig) -> Arc<dyn GameRuntime>;
    /// A fresh server's spec that runs the test game server with `args` (after the program),
    /// the environment `SERVER_PORT=27015` and `GREETING=hi there`, and the ready pattern
    /// `Done (`.
    fn game(&self, args: &[&str], stop: StopAction) -> RuntimeSpec;
    /// Where a server's files are on this host.
    fn server_dir(&self, id: ServerId) -> PathBuf;
}

/// Stamps one test per behaviour for a harness factory
/// (`async fn() -> Option<Arc<dyn RuntimeHarness>>`).
#[macro_export]
macro_rules! runtime_conformance_tests {
    ($factory:path, $label:expr) => {
        $crate::__stamp_runtime_tests!(
            $factory,
            $label,
            [
                runtime_start_ready_command_and_graceful_stop,
                runtime_the_game_gets_its_environment_and_argv_unchanged,
                runtime_a_game_ignoring_the_stop_is_killed_after_the_grace,
                runtime_a_crash_is_reported_with_its_code_and_it_starts_again,
                runtime_a_flood_keeps_the_console_bounded,
                runtime_stats_report_memory_disk_and_uptime,
                runtime_unknown_servers_and_bad_specs_are_refused,
                runtime_an_install_runs_with_the_server_directory_and_is_refused_while_running,
                runtime_a_new_runtime_adopts_a_running_game,
                runtime_remove_deletes_the_server_and_its_files,
            ]
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __stamp_runtime_tests {
    ($factory:path, $label:expr, [$($behaviour:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $behaviour() {
                let made = $factory().await;
                if let Some(harness) = $crate::runtime::conformance::backend_or_skip($label, stringify!($behaviour), made) {
                    $crate::runtime::conformance::$behaviour(harness).await;
                }
            }
        )*
    };
}

/// How long the suite waits for something that should happen promptly, before failing.
const PATIENCE: Duration = Duration::from_secs(60);

fn stop_command() -> StopAction {
    StopAction::Command("stop".into())
}

/// Reads console lines (the replay, then live) until one satisfies `want`.
pub async fn line_matching(sub: &mut Subscription, want: impl Fn(&str) -> bool) -> String {
    if let Some(hit) = sub.replay.iter().find(|l| want(l)) {
        return hit.clone();
    }
    tokio::time::timeout(PATIENCE, async {
        loop {
            match sub.live.recv().await {
                Ok(line) if want(&line) => return line,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("the console closed: {e}"),
            }
        }
    })
    .await
    .expect("the expected console line")
}

/// Creates and starts `spec` and waits until it is ready.
async fn started(rt: &dyn GameRuntime, spec: RuntimeSpec) -> ServerId {
    let id = spec.server_id;
    rt.create(spec).await.unwrap();
    rt.start(id).await.unwrap();
    tokio::time::timeout(PATIENCE, rt.wait_ready(id)).await.expect("ready in time").unwrap();
    id
}

/// Ends a game left running by a failed assertion (a kill, then the removal).
struct Cleanup(Arc<dyn GameRuntime>, ServerId);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let (rt, id) = (self.0.clone(), self.1);
            // The test's runtime is going down with the panic: clean up on a thread of our own.
            let _ = std::thread::spawn(move || {
                let Ok(local) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
                local.block_on(async move {
                    let _ = rt.kill(id).await;
                    let _ = rt.remove(id).await;
                });
            })
            .join();
        }
    }
}

pub async fn runtime_start_ready_command_and_graceful_stop(h: Arc<dyn RuntimeHarness>) {
    let rt = h.runtime(ConsoleConfig::default()).await;
    let id = started(&*rt, h.game(&[], stop_command())).await;
    let _cleanup = Cleanup(rt.clone(), id);
    assert!(matches!(rt.status(id).await.unwrap(), RuntimeStatus::Running { .. }));
    assert!(matches!(rt.start(id).await, Err(capcore::Error::Conflict { .. })), "a second start is a conflict");
    let mut sub = rt.subscribe(id).unwrap();
    assert!(sub.replay.iter().any(|l| l.contains("starting on port 27015")), "the port came from the spec");
    rt.send_command(id, "say hello; $(reboot) `x`").await.unwrap();
    line_matching(&mut sub, |l| l == "[Server] hello; $(reboot) `x`").await;
    rt.stop(id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(rt.status(id).await.unwrap(), RuntimeStatus::Exited { code: Some(0), signal: None });
    // Everything the game wrote is in the console once its exit is known.
    let replay = rt.subscribe(id).unwrap().replay;
    let n = replay.len();
    assert_eq!(&replay[n - 2..], ["Stopping server", "[cap] the server exited with code 0"]);
    assert!(matches!(rt.send_command(id, "list").await, Err(capcore::Error::Conflict { .. })), "no stdin after exit");
    rt.remove(id).await.unwrap();
}

pub async fn runtime_the_game_gets_its_environment_and_argv_unchanged(h: Arc<dyn RuntimeHarness>) {
    let rt = h.runtime(ConsoleConfig::default()).await;
    let hostile = "; rm -rf / $(reboot) \"quoted\" 'single'";
    let id = started(&*rt, h.game(&["--motd", hostile], StopAction::Signal(StopSignal::Sigterm))).await;
    let _cleanup = Cleanup(rt.clone(), id);
    let mut sub = rt.subscribe(id).unwrap();
    line_matching(&mut sub, |l| l == format!("MOTD: {hostile}")).await;
    rt.send_command(id, "echo-env GREETING").await.unwrap();
    line_matching(&mut sub, |l| l == "GREETING=hi there").await;
    // Cargo sets this for the test process; the game must not inherit it.
    rt.send_command(id, "echo-env CARGO_MANIFEST_DIR").await.unwrap();
    line_matching(&mut sub, |l| l == "CARGO_MANIFEST_DIR is not set").await;
    rt.send_command(id, "echo-args").await.unwrap();
    line_matching(&mut sub, |l| l == format!("arg[2]={hostile}")).await;
    rt.stop(id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(rt.status(id).await.unwrap(), RuntimeStatus::Exited { code: Some(0), signal: None }, "SIGTERM stop");
    rt.remove(id).await.unwrap();
}

pub async fn runtime_a_game_ignoring_the_stop_is_killed_after_the_grace(h: Arc<dyn RuntimeHarness>) {
    let rt = h.runtime(ConsoleConfig::default()).await;
    let id = started(&*rt, h.game(&["--hang-on-stop"], StopAction::Signal(StopSignal::Sigint))).await;
    let _cleanup = Cleanup(rt.clone(), id);
    let mut sub = rt.subscribe(id).unwrap();
    rt.stop(id, Duration::from_millis(500)).await.unwrap();
    assert_eq!(rt.status(id).await.unwrap(), RuntimeStatus::Exited { code: None, signal: Some(9) });
    // It got the polite signal first.
    line_matching(&mut sub, |l| l == "Refusing to stop (signal)").await;
    rt.remove(id).await.unwrap();
}

pub async fn runtime_a_crash_is_reported_with_its_code_and_it_starts_again(h: Arc<dyn RuntimeHarness>) {
    let rt = h.runtime(ConsoleConfig::default()).await;
    let id = started(&*rt, h.game(&[], stop_command())).await;
    let _cleanup = Cleanup(rt.clone(), id);
    rt.send_command(id, "crash").await.unwrap();
    assert_eq!(rt.wait_exit(id).await.unwrap(), RuntimeStatus::Exited { code: Some(3), signal: None });
    rt.start(id).await.unwrap();
    tokio::time::timeout(PATIENCE, rt.wait_ready(id)).await.unwrap().unwrap();
    rt.kill(id).await.unwrap();
    assert_eq!(rt.status(id).await.unwrap(), RuntimeStatus::Exited { code: None, signal: Some(9) });
    assert!(matches!(rt.kill(id).await, Err(capcore::Error::Conflict { .. })), "killing a stopped server");
    rt.remove(id).await.unwrap();
}

pub async fn runtime_a_flood_keeps_the_console_bounded(h: Arc<dyn RuntimeHarness>) {
    let rt = h.runtime(ConsoleConfig { buffer_lines: 100, lines_per_interval: 1000, ..Default::default() }).await;
    let id = started(&*rt, h.game(&["--flood", "200000"], stop_command())).await;
    let _cleanup = Cleanup(rt.clone(), id);
    let mut sub = rt.subscribe(id).unwrap();
    // Over 1000 lines a second the rest are dropped, with a marker line saying so.
    let marker = line_matching(&mut sub, |l| l.contains("dropping lines")).await;
    assert!(marker.starts_with("[cap] "), "{marker}");
    rt.stop(id, Duration::from_secs(20)).await.unwrap();
    let replay = rt.subscribe(id).unwrap().replay;
    assert!(replay.len() <= 100, "the buffer holds at most 100 lines, not {}", replay.len());
    rt.remove(id).await.unwrap();
}

pub async fn runtime_stats_report_memory_disk_and_uptime(h: Arc<dyn RuntimeHarness>) {
    let rt = h.runtime(ConsoleConfig::default()).await;
    let id = started(&*rt, h.game(&["--hold-memory-mb", "64"], stop_command())).await;
    let _cleanup = Cleanup(rt.clone(), id);
    std::fs::write(h.server_dir(id).join("world.dat"), vec![7u8; 3 << 20]).unwrap();
    let stats = rt.stats(id).await.unwrap();
    assert!(stats.memory_bytes >= 64 * 1024 * 1024, "memory {} below the 64 MiB held", stats.memory_bytes);
    assert!(stats.disk_bytes >= 3 << 20, "disk {} below the 3 MiB written", stats.disk_bytes);
    assert!(stats.uptime > Duration::ZERO);
    let again = rt.stats(id).await.unwrap();
    assert!(again.cpu_percent >= 0.0 && again.cpu_percent.is_finite(), "{}", again.cpu_percent);
    rt.stop(id, Duration::from_secs(20)).await.unwrap();
    let stopped = rt.stats(id).await.unwrap();
    assert_eq!((stopped.memory_bytes, stopped.uptime), (0, Duration::ZERO), "nothing runs");
    assert!(stopped.disk_bytes >= 3 << 20, "the files are still counted");
    rt.remove(id).await.unwrap();
}

pub async fn runtime_unknown_servers_and_bad_specs_are_refused(h: Arc<dyn RuntimeHarness>) {
    let rt = h.runtime(ConsoleConfig::default()).await;
    let missing = ServerId::new_random();
    assert!(matches!(rt.start(missing).await, Err(capcore::Error::NotFound { .. })));
    assert!(matches!(rt.status(missing).await, Err(capcore::Error::NotFound { .. })));
    let install = Install { script: "true".into(), entrypoint: "sh".into(), image: None };
    assert!(matches!(rt.install(missing, &install).await, Err(capcore::Error::NotFound { .. })));
    let mut empty = h.game(&[], stop_command());
    empty.argv.clear();
    assert!(matches!(rt.create(empty).await, Err(capcore::Error::Invalid(_))));
    let mut nowhere = h.game(&[], stop_command());
    nowhere.argv = vec!["/nonexistent/game".into()];
    let id = nowhere.server_id;
    rt.create(nowhere).await.unwrap();
    assert_eq!(rt.status(id).await.unwrap(), RuntimeStatus::NotRunning);
    let err = rt.start(id).await.unwrap_err();
    assert!(matches!(err, capcore::Error::Invalid(_)), "{err}");
    assert!(err.to_string().contains("cannot start `/nonexistent/game`"), "{err}");
    assert!(matches!(rt.send_command(id, "two\nlines").await, Err(capcore::Error::Invalid(_))));
    rt.remove(id).await.unwrap();
}

pub async fn runtime_an_install_runs_with_the_server_directory_and_is_refused_while_running(
    h: Arc<dyn RuntimeHarness>,
) {
    let rt = h.runtime(ConsoleConfig::default()).await;
    let spec = h.game(&[], stop_command());
    let id = spec.server_id;
    rt.create(spec).await.unwrap();
    let _cleanup = Cleanup(rt.clone(), id);
    let script = r#"echo "greeting=$GREETING"; echo "cargo=${CARGO_MANIFEST_DIR:-unset}"
echo oops >&2
printf 'no newline at the end'
cd "$SERVER_DIR" && echo made > installed.txt; exit 7"#;
    let install = Install { script: script.into(), entrypoint: "sh".into(), image: None };
    let status = rt.install(id, &install).await.unwrap();
    assert_eq!(status, RuntimeStatus::Exited { code: Some(7), signal: None });
    assert_eq!(std::fs::read_to_string(h.server_dir(id).join("installed.txt")).unwrap(), "made\n");
    let replay = rt.subscribe(id).unwrap().replay;
    assert_eq!(replay.first().map(String::as_str), Some("[cap] install started"), "{replay:?}");
    assert_eq!(replay.last().map(String::as_str), Some("[cap] install finished with code 7"), "{replay:?}");
    for want in ["greeting=hi there", "cargo=unset", "oops", "no newline at the end"] {
        assert!(replay.iter().any(|l| l == want), "{want} in {replay:?}");
    }
    // The game starts after its install, and no install runs beside it.
    rt.start(id).await.unwrap();
    tokio::time::timeout(PATIENCE, rt.wait_ready(id)).await.unwrap().unwrap();
    let err = rt.install(id, &Install { script: "echo never".into(), ..install.clone() }).await.unwrap_err();
    assert!(matches!(err, capcore::Error::Conflict { .. }), "{err}");
    rt.stop(id, Duration::from_secs(20)).await.unwrap();
    let err = rt.install(id, &Install { entrypoint: "no-such-shell".into(), ..install }).await.unwrap_err();
    assert!(matches!(err, capcore::Error::Invalid(_)), "{err}");
    assert!(err.to_string().contains("no-such-shell"), "{err}");
    rt.remove(id).await.unwrap();
}

pub async fn runtime_a_new_runtime_adopts_a_running_game(h: Arc<dyn RuntimeHarness>) {
    let first = h.runtime(ConsoleConfig::default()).await;
    let spec = h.game(&[], stop_command());
    let id = started(&*first, spec.clone()).await;
    let _cleanup = Cleanup(first.clone(), id);
    // The agent restarts: the game keeps running. The agent is away for a while (time passing,
    // not waiting for anything), and the game's uptime counts it.
    drop(_cleanup);
    drop(first);
    let away = Duration::from_millis(1200);
    tokio::time::sleep(away).await;
    let rt = h.runtime(ConsoleConfig::default()).await;
    let _cleanup = Cleanup(rt.clone(), id);
    assert!(matches!(rt.adopt(spec.clone()).await.unwrap(), RuntimeStatus::Running { .. }));
    assert!(matches!(rt.status(id).await.unwrap(), RuntimeStatus::Running { .. }));
    let uptime = rt.stats(id).await.unwrap().uptime;
    assert!(uptime >= away, "the uptime runs from the game's start, not its adoption: {uptime:?}");
    tokio::time::timeout(PATIENCE, rt.wait_ready(id)).await.unwrap().unwrap();
    let mut sub = rt.subscribe(id).unwrap();
    rt.send_command(id, "say adopted").await.unwrap();
    line_matching(&mut sub, |l| l == "[Server] adopted").await;
    rt.stop(id, Duration::from_secs(20)).await.unwrap();
    assert!(matches!(rt.status(id).await.unwrap(), RuntimeStatus::Exited { .. }));
    // Adopting what no longer runs says so.
    let again = h.runtime(ConsoleConfig::default()).await;
    assert_eq!(again.adopt(spec).await.unwrap(), RuntimeStatus::NotRunning);
    rt.remove(id).await.unwrap();
}

pub async fn runtime_remove_deletes_the_server_and_its_files(h: Arc<dyn RuntimeHarness>) {
    let rt = h.runtime(ConsoleConfig::default()).await;
    let id = started(&*rt, h.game(&[], stop_command())).await;
    let _cleanup = Cleanup(rt.clone(), id);
    std::fs::write(h.server_dir(id).join("save.dat"), b"x").unwrap();
    // A running server is ended first.
    rt.remove(id).await.unwrap();
    assert!(!h.server_dir(id).exists(), "the directory is gone");
    assert!(matches!(rt.status(id).await, Err(capcore::Error::NotFound { .. })));
    assert!(matches!(rt.remove(id).await, Err(capcore::Error::NotFound { .. })));
}
