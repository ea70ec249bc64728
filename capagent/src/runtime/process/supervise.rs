//! The one task per run that follows a game: tails its logs into the console, watches for the
//! ready line and for the exit, and cleans up after it.
//!
//! Reading a batch of log data, handing its lines to the console and punching it out of the file
//! happen in one poll, with no `.await` between them; so aborting the task (the runtime was
//! dropped) never leaves lines handed on but still in the file, or the reverse, and the next agent
//! resumes exactly where this one stopped. The task holds the run lock until it ends.

use super::limits::ServerCgroup;
use super::procfs;
use super::state::ServerState;
use super::tail::{LogEvents, LogTail};
use crate::console::Console;
use capcore::template::ReadyPattern;
use nix::fcntl::Flock;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::fs::File;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};

/// How a process ended: `(code, signal)`, both `None` when unknown (an adopted process).
pub(crate) type Exit = Option<(Option<i32>, Option<i32>)>;

/// Bytes read from the logs in one go before other tasks get a turn.
const BUDGET: usize = 1024 * 1024;

/// What tells the supervisor that the game ended.
#[derive(Debug)]
pub(crate) enum Watched {
    /// Our own child: waited on, so its exit code and signal are known.
    Child(tokio::process::Child),
    /// A process an earlier agent started: not our child, so `/proc` is polled.
    Adopted { pid: u32, start_ticks: u64, poll: Interval },
}

impl Watched {
    pub fn adopted(pid: u32, start_ticks: u64) -> Self {
        let mut poll = tokio::time::interval(Duration::from_millis(200));
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self::Adopted { pid, start_ticks, poll }
    }

    /// Resolves once the process has ended (cancel-safe).
    async fn exited(&mut self) -> (Option<i32>, Option<i32>) {
        use std::os::unix::process::ExitStatusExt;
        match self {
            Watched::Child(child) => match child.wait().await {
                Ok(status) => (status.code(), status.signal()),
                Err(e) => {
                    tracing::warn!("waiting for a game failed: {e}");
                    (None, None)
                }
            },
            Watched::Adopted { pid, start_ticks, poll } => loop {
                poll.tick().await;
                if !procfs::is_alive(*pid, *start_ticks) {
                    return (None, None);
                }
            },
        }
    }
}

/// Everything the supervising task owns.
#[derive(Debug)]
pub(crate) struct Supervisor {
    pub pid: u32,
    pub watched: Watched,
    pub console: Arc<Console>,
    pub tails: Vec<LogTail>,
    pub events: LogEvents,
    pub patterns: Vec<ReadyPattern>,
    pub ready: watch::Sender<bool>,
    pub exit: watch::Sender<Exit>,
    pub cgroup: Option<ServerCgroup>,
    pub state: ServerState,
    pub lock: Option<Flock<File>>,
}

impl Supervisor {
    pub async fn run(mut self) {
        loop {
            let more = self.drain();
            tokio::select! {
                biased;
                how = self.watched.exited() => return self.finish(how).await,
                () = self.events.next(), if !more => {}
                () = tokio::task::yield_now(), if more => {}
            }
        }
    }

    /// Reads every log once (up to the budget each); true if one may have more.
    fn drain(&mut self) -> bool {
        let Self { tails, console, patterns, ready, .. } = self;
        let mut more = false;
        for tail in tails.iter_mut() {
            let mut deliver = |line: &str| {
                if !*ready.borrow() && patterns.iter().any(|p| p.matches(line)) {
                    let _ = ready.send(true);
                }
                console.push(line);
            };
            match tail.drain(BUDGET, &mut deliver) {
                Ok(m) => more |= m,
                Err(e) => tracing::warn!("reading a game's log failed: {e}"),
            }
        }
        more
    }

    async fn finish(mut self, (code, signal): (Option<i32>, Option<i32>)) {
        // What the game left running goes with it, so the logs stop growing and the cgroup can go.
        match killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => tracing::warn!("cannot kill what is left of process group {}: {e}", self.pid),
        }
        if let Some(cgroup) = &self.cgroup
            && let Err(e) = cgroup.remove(Duration::from_secs(5)).await
        {
            tracing::warn!("cannot remove the server's cgroup: {e}");
        }
        // Everything the game wrote reaches the console before its exit is reported. Bounded:
        // a process that escaped both group and cgroup could write for ever.
        for _ in 0..64 {
            if !self.drain() {
                break;
            }
        }
        let Self { tails, console, .. } = &mut self;
        for tail in tails.iter_mut() {
            tail.flush(&mut |line| console.push(line));
        }
        if let Err(e) = self.state.remove_run() {
            tracing::warn!("cannot remove {}: {e}", self.state.run_file().display());
        }
        self.console.system(crate::runtime::exit_line(code, signal));
        // Free for the next run before anyone learns that this one ended.
        drop(self.lock.take());
        let _ = self.exit.send(Some((code, signal)));
    }
}
