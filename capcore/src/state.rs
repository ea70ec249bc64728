//! The server state machine: which state may follow which, checked in one place.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The life cycle of a game server as the panel sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    /// The install script is running.
    Installing,
    /// The install script failed; reinstall to try again.
    InstallFailed,
    /// Installed and not running.
    Offline,
    /// Process started, waiting for a ready pattern.
    Starting,
    /// Ready pattern seen (or none defined).
    Running,
    /// Stop requested, waiting for exit.
    Stopping,
    /// Exited unexpectedly.
    Crashed,
    /// The node is not connected, so nobody knows.
    Unknown,
}

impl ServerState {
    pub const ALL: [ServerState; 8] = [
        ServerState::Installing,
        ServerState::InstallFailed,
        ServerState::Offline,
        ServerState::Starting,
        ServerState::Running,
        ServerState::Stopping,
        ServerState::Crashed,
        ServerState::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Installing => "installing",
            ServerState::InstallFailed => "install_failed",
            ServerState::Offline => "offline",
            ServerState::Starting => "starting",
            ServerState::Running => "running",
            ServerState::Stopping => "stopping",
            ServerState::Crashed => "crashed",
            ServerState::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<ServerState> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether `self -> next` is a legal step.
    ///
    /// Any state may become `unknown` (the node went away) and `unknown` may become anything
    /// (the node came back and reported the truth). Otherwise the machine is the usual one: an
    /// install ends offline or failed; only an installed, stopped server starts; a process that
    /// is up can stop or crash; a crashed server can be started again.
    pub fn can_become(self, next: ServerState) -> bool {
        use ServerState::*;
        if self == next {
            return false;
        }
        matches!(
            (self, next),
            (_, Unknown)
                | (Unknown, _)
                | (Installing, Offline | InstallFailed)
                | (InstallFailed, Installing)
                | (Offline, Starting | Installing)
                | (Starting, Running | Stopping | Crashed | Offline)
                | (Running, Stopping | Crashed | Offline)
                | (Stopping, Offline | Crashed)
                | (Crashed, Starting | Offline | Installing)
        )
    }

    /// The checked step: `Err` names both states.
    pub fn transition(self, next: ServerState) -> Result<ServerState, IllegalTransition> {
        if self.can_become(next) { Ok(next) } else { Err(IllegalTransition { from: self, to: next }) }
    }

    /// A process exists for this state (power actions like stop and kill make sense).
    pub fn is_up(self) -> bool {
        matches!(self, ServerState::Starting | ServerState::Running | ServerState::Stopping)
    }
}

impl fmt::Display for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state change the machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a server cannot go from {from} to {to}")]
pub struct IllegalTransition {
    pub from: ServerState,
    pub to: ServerState,
}

#[cfg(test)]
mod tests {
    use super::ServerState::*;
    use super::*;

    /// The full 8x8 table, written out so a change to the machine shows here.
    #[test]
    fn every_transition_legal_or_not() {
        #[rustfmt::skip]
        let table: [(ServerState, [bool; 8]); 8] = [
            //               Inst   IFail  Off    Start  Run    Stop   Crash  Unk
            (Installing,    [false, true,  true,  false, false, false, false, true]),
            (InstallFailed, [true,  false, false, false, false, false, false, true]),
            (Offline,       [true,  false, false, true,  false, false, false, true]),
            (Starting,      [false, false, true,  false, true,  true,  true,  true]),
            (Running,       [false, false, true,  false, false, true,  true,  true]),
            (Stopping,      [false, false, true,  false, false, false, true,  true]),
            (Crashed,       [true,  false, true,  true,  false, false, false, true]),
            (Unknown,       [true,  true,  true,  true,  true,  true,  true,  false]),
        ];
        for (from, row) in table {
            for (to, legal) in ServerState::ALL.into_iter().zip(row) {
                assert_eq!(from.can_become(to), legal, "{from} -> {to}");
                match from.transition(to) {
                    Ok(s) => assert!(legal && s == to),
                    Err(e) => {
                        assert!(!legal);
                        assert_eq!(e.to_string(), format!("a server cannot go from {from} to {to}"));
                    }
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in ServerState::ALL {
            assert_eq!(ServerState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        assert_eq!(ServerState::parse("exploded"), None);
    }
}
