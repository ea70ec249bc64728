//! What to do when a game server's process ends: a crash or not, restart or not, never a loop.

use crate::time::Timestamp;

/// How an agent treats a process that ended without being asked to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restart a crashed server automatically.
    pub restart_on_crash: bool,
    /// Whether exit code 0 without a stop request counts as a crash.
    pub clean_exit_is_crash: bool,
    /// No automatic restart if the previous crash was this recent: a server that keeps
    /// crashing stays crashed instead of looping.
    pub min_secs_between_crashes: i64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self { restart_on_crash: true, clean_exit_is_crash: false, min_secs_between_crashes: 60 }
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// A stop, restart or kill was asked for.
    pub requested: bool,
}

/// The outcome of [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitDecision {
    /// An ordinary end: the server is offline.
    Stopped,
    /// A crash, restarted now.
    Restart,
    /// A crash, left crashed; the reason is for the console and the audit log.
    StayCrashed { reason: String },
}

impl ExitDecision {
    pub fn is_crash(&self) -> bool {
        !matches!(self, ExitDecision::Stopped)
    }
}

/// Decides what an exit means. `last_crash` is when the server last crashed, if ever.
pub fn decide(
    policy: &RestartPolicy,
    exit: ProcessExit,
    last_crash: Option<Timestamp>,
    now: Timestamp,
) -> ExitDecision {
    if exit.requested || (exit.code == Some(0) && exit.signal.is_none() && !policy.clean_exit_is_crash) {
        return ExitDecision::Stopped;
    }
    if !policy.restart_on_crash {
        return ExitDecision::StayCrashed { reason: "automatic restart is off".into() };
    }
    if let Some(last) = last_crash
        && now.millis() - last.millis() < policy.min_secs_between_crashes.saturating_mul(1000)
    {
        return ExitDecision::StayCrashed {
            reason: format!(
                "crashed again within {} s of the previous crash; not restarting",
                policy.min_secs_between_crashes
            ),
        };
    }
    ExitDecision::Restart
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_800_000_000_000);

    fn exit(code: Option<i32>, signal: Option<i32>, requested: bool) -> ProcessExit {
        ProcessExit { code, signal, requested }
    }

    #[test]
    fn requested_and_clean_exits_are_not_crashes() {
        let p = RestartPolicy::default();
        assert_eq!(decide(&p, exit(None, Some(9), true), None, T0), ExitDecision::Stopped, "killed on request");
        assert_eq!(decide(&p, exit(Some(0), None, false), None, T0), ExitDecision::Stopped);
        let strict = RestartPolicy { clean_exit_is_crash: true, ..p };
        assert_eq!(decide(&strict, exit(Some(0), None, false), None, T0), ExitDecision::Restart);
    }

    #[test]
    fn a_crash_restarts_once_and_a_second_one_soon_after_does_not() {
        let p = RestartPolicy::default();
        let first = decide(&p, exit(Some(3), None, false), None, T0);
        assert_eq!(first, ExitDecision::Restart);
        let soon = decide(&p, exit(None, Some(11), false), Some(T0), T0.plus_secs(59));
        assert!(matches!(&soon, ExitDecision::StayCrashed { reason } if reason.contains("within 60 s")), "{soon:?}");
        assert!(soon.is_crash());
        assert_eq!(decide(&p, exit(Some(1), None, false), Some(T0), T0.plus_secs(60)), ExitDecision::Restart);
    }

    #[test]
    fn restart_can_be_off() {
        let p = RestartPolicy { restart_on_crash: false, ..RestartPolicy::default() };
        assert_eq!(
            decide(&p, exit(Some(1), None, false), None, T0),
            ExitDecision::StayCrashed { reason: "automatic restart is off".into() }
        );
    }
}
