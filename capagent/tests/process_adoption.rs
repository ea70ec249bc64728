//! Surviving an agent restart: a game outlives the runtime that started it, and a new runtime on
//! the same directories adopts it without losing or repeating a console line.

mod support;

use capagent::{ConsoleConfig, ProcessRuntime, ProcessRuntimeConfig, Subscription};
use capcore::backend::{Runtime, RuntimeStatus};
use capcore::template::StopAction;
use std::io::Write;
use std::time::Duration;
use support::{KillOnPanic, config, line_matching, pid_of, spec, started};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::timeout;

/// Enough console for a whole flood: nothing throttled, nothing evicted, no subscriber lagging.
fn roomy(name: &str) -> ProcessRuntimeConfig {
    ProcessRuntimeConfig {
        console: ConsoleConfig {
            buffer_lines: 200_000,
            lines_per_interval: 10_000_000,
            subscriber_queue: 200_000,
            ..ConsoleConfig::default()
        },
        ..config(name)
    }
}

/// Everything a subscription received until its console went away (its runtime was dropped).
async fn until_closed(mut sub: Subscription) -> Vec<String> {
    let mut lines = sub.replay;
    timeout(Duration::from_secs(30), async {
        loop {
            match sub.live.recv().await {
                Ok(line) => lines.push(line),
                Err(RecvError::Closed) => return,
                Err(RecvError::Lagged(n)) => panic!("the subscriber lagged by {n} lines"),
            }
        }
    })
    .await
    .expect("the dropped runtime's console closes");
    lines
}

/// Writes a command into the server's FIFO directly, as nobody else holds it.
fn write_fifo(state_dir: &std::path::Path, id: capcore::ids::ServerId, line: &str) {
    let mut fifo = std::fs::OpenOptions::new().write(true).open(state_dir.join(id.to_string()).join("stdin")).unwrap();
    writeln!(fifo, "{line}").unwrap();
}

#[tokio::test]
async fn a_new_runtime_adopts_a_running_game_without_losing_or_repeating_a_line() {
    let lines = 100_000;
    let a = ProcessRuntime::new(roomy("adopt"));
    let mut s = spec(&["--flood", &lines.to_string()], StopAction::Command("stop".into()));
    s.ready_patterns.clear();
    let id = s.server_id;
    a.create(s.clone()).await.unwrap();
    let mut sub_a = a.subscribe(id).unwrap();
    a.start(id).await.unwrap();
    let pid = pid_of(a.status(id).await.unwrap());
    let _game = KillOnPanic(pid);
    let mut seen_by_a = std::mem::take(&mut sub_a.replay);
    while !seen_by_a.iter().any(|l| l == "flood line 1000") {
        let line = timeout(Duration::from_secs(30), sub_a.live.recv()).await.expect("flood line 1000");
        seen_by_a.push(line.expect("console open"));
    }
    // The agent goes away in the middle of the flood, without stopping anything.
    drop(a);
    seen_by_a.extend(until_closed(sub_a).await);
    let state_dir = config("adopt").state_dir;
    // While no agent runs, the game still reads commands and writes its output.
    write_fifo(&state_dir, id, "say while nobody watched");

    let b = ProcessRuntime::new(roomy("adopt"));
    assert_eq!(b.adopt(s).await.unwrap(), RuntimeStatus::Running { pid });
    assert_eq!(b.status(id).await.unwrap(), RuntimeStatus::Running { pid });
    b.wait_ready(id).await.unwrap();
    let mut sub_b = b.subscribe(id).unwrap();
    // Both, in whichever order the game's two threads wrote them (the flood may have ended
    // before the first agent went away).
    let done = format!("flood done ({lines} lines)");
    let mut missing = vec![done.as_str(), "[Server] while nobody watched"];
    missing.retain(|want| !sub_b.replay.iter().chain(&seen_by_a).any(|l| l == want));
    while !missing.is_empty() {
        let line = line_matching(&mut sub_b, |l| missing.contains(&l)).await;
        missing.retain(|want| *want != line);
    }
    // All megabytes were read and punched out: the log keeps its size but not its blocks.
    let log = std::fs::metadata(state_dir.join(id.to_string()).join("stdout.log")).unwrap();
    let allocated = std::os::unix::fs::MetadataExt::blocks(&log) * 512;
    assert!(log.len() > 1_000_000 && allocated <= 8192, "{} bytes long, {allocated} allocated", log.len());
    b.send_command(id, "say after the restart").await.unwrap();
    line_matching(&mut sub_b, |l| l == "[Server] after the restart").await;
    assert!(b.stats(id).await.unwrap().memory_bytes > 0);
    b.stop(id, Duration::from_secs(10)).await.unwrap();
    // Not our child: the code is unknown, and never guessed.
    assert_eq!(b.status(id).await.unwrap(), RuntimeStatus::Exited { code: None, signal: None });
    assert!(!state_dir.join(id.to_string()).join("run.json").exists(), "the run record goes with the run");

    let game_lines: Vec<String> =
        seen_by_a.into_iter().chain(b.subscribe(id).unwrap().replay).filter(|l| !l.starts_with("[cap]")).collect();
    let flood: Vec<&String> = game_lines.iter().filter(|l| l.starts_with("flood line ")).collect();
    let expected: Vec<String> = (1..=lines).map(|i| format!("flood line {i}")).collect();
    assert_eq!(flood.len(), expected.len(), "every flood line exactly once");
    assert!(flood.iter().zip(&expected).all(|(got, want)| *got == want), "in order, none lost or repeated");
    for once in
        ["flood done (100000 lines)", "[Server] while nobody watched", "[Server] after the restart", "Stopping server"]
    {
        assert_eq!(game_lines.iter().filter(|l| *l == once).count(), 1, "{once}");
    }
    b.remove(id).await.unwrap();
}

#[tokio::test]
async fn the_fifo_keeps_a_game_alive_when_no_agent_holds_it() {
    let a = ProcessRuntime::new(config("fifo"));
    let s = spec(&["--exit-on-eof"], StopAction::Command("stop".into()));
    let (id, _game) = started(&a, s.clone()).await;
    drop(a);
    // A game reading a pipe from the agent would now see end of input and exit.
    let b = ProcessRuntime::new(config("fifo"));
    let pid = match b.adopt(s.clone()).await.unwrap() {
        RuntimeStatus::Running { pid } => pid,
        other => panic!("the game did not survive: {other:?}"),
    };
    let mut sub = b.subscribe(id).unwrap();
    b.send_command(id, "say still here").await.unwrap();
    line_matching(&mut sub, |l| l == "[Server] still here").await;
    // Twice: the second agent goes away too.
    drop(sub);
    drop(b);
    let c = ProcessRuntime::new(config("fifo"));
    assert_eq!(c.adopt(s).await.unwrap(), RuntimeStatus::Running { pid });
    let mut sub = c.subscribe(id).unwrap();
    c.send_command(id, "say still here again").await.unwrap();
    line_matching(&mut sub, |l| l == "[Server] still here again").await;
    c.stop(id, Duration::from_secs(10)).await.unwrap();
    let log = std::fs::read_to_string(config("fifo").state_dir.join(id.to_string()).join("stdout.log")).unwrap();
    assert!(!log.contains("Console closed"), "the game never saw its console close");
    assert!(!c.subscribe(id).unwrap().replay.iter().any(|l| l.contains("Console closed")));
    c.remove(id).await.unwrap();
}

#[tokio::test]
async fn a_signal_stop_and_a_kill_work_on_an_adopted_game() {
    let a = ProcessRuntime::new(config("adopt-kill"));
    let s = spec(&["--hang-on-stop"], StopAction::Signal(capcore::template::StopSignal::Sigterm));
    let (id, _game) = started(&a, s.clone()).await;
    drop(a);
    let b = ProcessRuntime::new(config("adopt-kill"));
    // Not adopted yet: a second copy must not start, nor an install run, beside the game.
    b.create(s.clone()).await.unwrap();
    let err = b.start(id).await.unwrap_err();
    assert!(matches!(err, capcore::Error::Conflict { .. }) && err.to_string().contains("adopt it"), "{err}");
    let err = b.install(id, "echo never", "sh").await.unwrap_err();
    assert!(matches!(err, capcore::Error::Conflict { .. }), "{err}");
    assert!(matches!(b.adopt(s.clone()).await.unwrap(), RuntimeStatus::Running { .. }));
    assert!(b.start(id).await.is_err(), "already running");
    let mut sub = b.subscribe(id).unwrap();
    b.stop(id, Duration::from_millis(300)).await.unwrap();
    line_matching(&mut sub, |l| l == "Refusing to stop (signal)").await;
    assert_eq!(b.status(id).await.unwrap(), RuntimeStatus::Exited { code: None, signal: None });
    // Adopting again finds nothing to adopt, and the server starts as usual.
    assert_eq!(b.adopt(s).await.unwrap(), RuntimeStatus::NotRunning);
    b.start(id).await.unwrap();
    b.kill(id).await.unwrap();
    assert_eq!(b.status(id).await.unwrap(), RuntimeStatus::Exited { code: None, signal: Some(9) });
    b.remove(id).await.unwrap();
}

#[tokio::test]
async fn a_stale_run_record_means_not_running_and_is_removed() {
    let cfg = config("stale");
    let rt = ProcessRuntime::new(cfg.clone());
    let s = spec(&[], StopAction::Command("stop".into()));
    let id = s.server_id;
    let dir = cfg.state_dir.join(id.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    // A pid that is gone: a child we started and reaped.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    std::fs::write(
        dir.join("run.json"),
        format!(r#"{{"pid":{pid},"start_ticks":1,"started_unix_ms":0,"cgroups":[]}}"#),
    )
    .unwrap();
    // What it printed while no agent watched still reaches the console.
    std::fs::write(dir.join("stdout.log"), "last words\n").unwrap();
    assert_eq!(rt.adopt(s.clone()).await.unwrap(), RuntimeStatus::NotRunning);
    assert!(!dir.join("run.json").exists());
    let replay = rt.subscribe(id).unwrap().replay;
    assert_eq!(replay, ["last words", "[cap] the server ended while no agent was watching it"]);
    // A live pid that started at another time is another process (pid reuse): not the game.
    let me = std::process::id();
    std::fs::write(dir.join("run.json"), format!(r#"{{"pid":{me},"start_ticks":1,"started_unix_ms":0}}"#)).unwrap();
    assert_eq!(rt.adopt(s.clone()).await.unwrap(), RuntimeStatus::NotRunning);
    assert!(!dir.join("run.json").exists());
    // No record at all.
    assert_eq!(rt.adopt(s).await.unwrap(), RuntimeStatus::NotRunning);
    rt.remove(id).await.unwrap();
}
