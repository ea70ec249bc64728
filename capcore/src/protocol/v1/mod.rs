//! Protocol v1: JSON text frames (hello, requests and results, events, heartbeats) and binary
//! frames for byte streams, multiplexed by stream id with credit-based flow control.
//!
//! The agent dials the panel and speaks first ([`Hello`]); the panel answers [`Welcome`] or
//! [`Refused`] (see [`negotiate`]). Then the panel sends [`Request`]s, each answered by one
//! [`CommandResult`] with the same id; the agent sends [`EventEnvelope`]s, numbered per server so
//! that after a reconnect the panel can say where it stopped ([`Welcome::last_seq`], [`Ack`]) and
//! neither loses nor repeats a state change; and [`Heartbeat`]s with node stats.
//!
//! Every message here has a golden file in `golden/`: a change to the wire format shows as a
//! diff there.

pub mod backups;
pub mod files;
pub mod stream;
#[cfg(feature = "streams")]
pub mod streams;

use crate::ids::{NodeId, ServerId};
use serde::{Deserialize, Serialize};

/// The protocol this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// A text frame from the agent to the panel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentMessage {
    Hello(Hello),
    Result(CommandResult),
    Event(EventEnvelope),
    Heartbeat(Heartbeat),
}

/// A text frame from the panel to the agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PanelMessage {
    Welcome(Welcome),
    Refused(Refused),
    Request(Request),
    Ack(Ack),
}

/// The agent's first message: which protocol versions it speaks and what the node is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    pub protocol_min: u32,
    pub protocol_max: u32,
    pub agent_version: String,
    pub facts: NodeFacts,
}

/// What a node is, reported at registration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFacts {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    /// The runtimes servers can run on here: `process` or `docker` (none when the configured
    /// one is missing).
    pub runtimes: Vec<String>,
    /// Which limits the runtime enforces here (`memory:cgroup-v1`, `pids:rlimit`,
    /// `cpu:docker`, `disk:inotify`, ...).
    pub enforced_limits: Vec<String>,
    /// Why a configured runtime is missing, e.g. `docker: the Docker engine at ... is
    /// unreachable: ...`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime_problems: Vec<String>,
}

/// The panel accepts the agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Welcome {
    pub protocol: u32,
    pub node_id: NodeId,
    pub heartbeat_interval_ms: u64,
    /// Missing this many heartbeats marks the node offline.
    pub heartbeat_misses_allowed: u32,
    /// The last event sequence number the panel applied, per server: the agent resends what
    /// comes after.
    pub last_seq: Vec<ServerSeq>,
}

/// The panel refuses the agent, saying why (shown to the admin on both sides).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refused {
    pub reason: String,
    pub panel_protocol: u32,
}

/// A server's position in its event sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSeq {
    pub server_id: ServerId,
    pub seq: u64,
}

/// The panel has applied every event of the server up to `seq`.
pub type Ack = ServerSeq;

/// Picks the version to speak with an agent, or says why not.
pub fn negotiate(hello: &Hello) -> Result<u32, Refused> {
    if hello.protocol_min > hello.protocol_max {
        return Err(Refused {
            reason: format!(
                "the agent offers protocols {} to {}, an empty range",
                hello.protocol_min, hello.protocol_max
            ),
            panel_protocol: PROTOCOL_VERSION,
        });
    }
    if (hello.protocol_min..=hello.protocol_max).contains(&PROTOCOL_VERSION) {
        return Ok(PROTOCOL_VERSION);
    }
    let upgrade = if hello.protocol_min > PROTOCOL_VERSION { "the panel" } else { "the agent" };
    Err(Refused {
        reason: format!(
            "agent {} speaks protocol {} to {}, this panel speaks {}; upgrade {upgrade}",
            hello.agent_version, hello.protocol_min, hello.protocol_max, PROTOCOL_VERSION
        ),
        panel_protocol: PROTOCOL_VERSION,
    })
}

/// A command for the agent; answered by exactly one [`CommandResult`] with the same `id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub id: u64,
    /// The agent gives up (and answers `timeout`) after this long.
    pub timeout_ms: u64,
    pub command: Command,
}

/// What the panel asks of an agent. Every command names a server, which the agent checks
/// belongs to its node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Create or replace the server's definition (directory, spec).
    Create {
        server: Box<ServerSpec>,
    },
    /// Run the install script.
    Install {
        server_id: ServerId,
    },
    Start {
        server_id: ServerId,
    },
    /// Graceful stop, then kill after `grace_ms`.
    Stop {
        server_id: ServerId,
        grace_ms: u64,
    },
    Restart {
        server_id: ServerId,
        grace_ms: u64,
    },
    Kill {
        server_id: ServerId,
    },
    /// One line to the game's console.
    SendCommand {
        server_id: ServerId,
        line: String,
    },
    /// A file manager operation in the server's directory.
    Files {
        server_id: ServerId,
        op: files::FileOp,
    },
    /// An operation on the server's backups.
    Backups {
        server_id: ServerId,
        op: backups::BackupOp,
    },
    /// Stop if needed and remove the server with its files.
    Delete {
        server_id: ServerId,
    },
    /// The servers the node should have; the agent creates what it lacks and removes what is
    /// neither in `servers` nor in `keep`.
    Sync {
        servers: Vec<ServerSpec>,
        /// Servers the panel has but could not describe now (their spec failed to build, or they
        /// appeared while the list was read): never removed by this sync.
        #[serde(default)]
        keep: Vec<ServerId>,
    },
}

impl Command {
    /// Whether the command moves bytes on the request's byte stream, and which way.
    pub fn transfer(&self) -> Option<files::Transfer> {
        match self {
            Command::Files { op, .. } => op.transfer(),
            Command::Backups { op: backups::BackupOp::Download { .. }, .. } => Some(files::Transfer::FromAgent),
            _ => None,
        }
    }
}

/// Everything the agent needs to run one server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub server_id: ServerId,
    /// The node the server belongs to; an agent refuses a spec for another node.
    pub node_id: NodeId,
    /// The rendered startup command: argv elements, never re-split.
    pub argv: Vec<String>,
    /// The game's whole environment (template variables and `SERVER_*` values).
    pub environment: std::collections::BTreeMap<String, String>,
    pub limits: WireLimits,
    pub stop: WireStop,
    pub ready_patterns: Vec<WireReadyPattern>,
    pub install: Option<WireInstall>,
    /// For the Docker runtime.
    pub image: Option<String>,
    /// The template's file denylist (gitignore-like patterns): paths the file manager refuses
    /// to touch for users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_denylist: Vec<String>,
    /// Console commands around a backup while the server runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_hooks: Option<WireBackupHooks>,
    /// The server's allocations, its primary first (`SERVER_IP` and `SERVER_PORT` name it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortBinding>,
}

/// One allocation of a server: an address of the node and a port, for TCP and UDP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortBinding {
    pub ip: String,
    pub port: u16,
}

/// What the game is told around a backup of it running (see `template::BackupHooks`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireBackupHooks {
    pub before: Vec<String>,
    pub wait_for: Option<String>,
    pub wait_ms: u64,
    pub after: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireLimits {
    pub memory_mb: i64,
    pub swap_mb: i64,
    pub cpu_percent: i64,
    pub disk_mb: i64,
    pub io_weight: i64,
    pub pids: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case", deny_unknown_fields)]
pub enum WireStop {
    /// A signal name such as `SIGINT`.
    Signal(String),
    Command(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case", deny_unknown_fields)]
pub enum WireReadyPattern {
    Contains(String),
    Regex(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireInstall {
    pub script: String,
    pub entrypoint: String,
    /// The install container's image (Docker runtime; the server's image when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// The answer to one [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandResult {
    pub id: u64,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum Outcome {
    Ok,
    /// Done, with data (file manager and backup answers).
    Data {
        data: Box<files::Reply>,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// Why a command failed, as the panel maps it to HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No such server on this node.
    NotFound,
    /// The server is not in a state for this (already running, not running).
    Conflict,
    /// The command itself is malformed.
    Invalid,
    /// The server belongs to another node.
    Forbidden,
    /// The command did not finish within its timeout.
    Timeout,
    /// Something failed on the node.
    Internal,
}

/// One event of one server, numbered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventEnvelope {
    pub server_id: ServerId,
    /// 1, 2, 3, ... per server, never reused, surviving agent restarts.
    pub seq: u64,
    pub event: Event,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// The server's state changed (state names as in the REST API).
    State { state: String, exit: Option<ExitInfo> },
    /// Console output.
    Console { stream: ConsoleStream, line: String },
    /// Resource use, every few seconds while running.
    Stats {
        cpu_percent: f64,
        memory_bytes: u64,
        disk_bytes: u64,
        uptime_ms: u64,
        /// Where the runtime can tell.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        network: Option<NetworkUse>,
    },
    /// A backup being made: about once a second while it runs, and when it ends.
    Backup { backup: backups::BackupRecord },
}

/// A server's network traffic since its start: bytes received and sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NetworkUse {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleStream {
    Stdout,
    Stderr,
    /// Lines the agent itself writes (install output markers, "dropped N lines").
    System,
}

/// The agent is alive; with the node's current use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub servers_running: u32,
}

#[cfg(test)]
mod tests;

impl From<crate::model::Limits> for WireLimits {
    fn from(l: crate::model::Limits) -> Self {
        Self {
            memory_mb: l.memory_mb,
            swap_mb: l.swap_mb,
            cpu_percent: l.cpu_percent,
            disk_mb: l.disk_mb,
            io_weight: l.io_weight,
            pids: l.pids,
        }
    }
}

impl From<WireLimits> for crate::model::Limits {
    fn from(l: WireLimits) -> Self {
        Self {
            memory_mb: l.memory_mb,
            swap_mb: l.swap_mb,
            cpu_percent: l.cpu_percent,
            disk_mb: l.disk_mb,
            io_weight: l.io_weight,
            pids: l.pids,
        }
    }
}

impl From<&crate::template::StopAction> for WireStop {
    fn from(s: &crate::template::StopAction) -> Self {
        match s {
            crate::template::StopAction::Signal(sig) => WireStop::Signal(sig.name().to_string()),
            crate::template::StopAction::Command(c) => WireStop::Command(c.clone()),
        }
    }
}

impl From<&crate::template::ReadyPattern> for WireReadyPattern {
    fn from(p: &crate::template::ReadyPattern) -> Self {
        match p {
            crate::template::ReadyPattern::Contains(s) => WireReadyPattern::Contains(s.clone()),
            crate::template::ReadyPattern::Regex(s) => WireReadyPattern::Regex(s.clone()),
        }
    }
}

impl ServerSpec {
    /// What a runtime needs from this spec; `Err` names what the agent cannot accept.
    pub fn runtime_spec(&self) -> Result<crate::backend::RuntimeSpec, String> {
        use crate::template::{ReadyPattern, StopAction, StopSignal};
        if self.argv.is_empty() {
            return Err("argv is empty".into());
        }
        let stop = match &self.stop {
            WireStop::Signal(name) => {
                StopAction::Signal(StopSignal::from_name(name).ok_or_else(|| format!("unknown stop signal `{name}`"))?)
            }
            WireStop::Command(c) => StopAction::Command(c.clone()),
        };
        let ready_patterns = self
            .ready_patterns
            .iter()
            .map(|p| match p {
                WireReadyPattern::Contains(s) => Ok(ReadyPattern::Contains(s.clone())),
                WireReadyPattern::Regex(r) => regex::Regex::new(r)
                    .map(|_| ReadyPattern::Regex(r.clone()))
                    .map_err(|e| format!("ready pattern `{r}` is not a valid regex: {e}")),
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(crate::backend::RuntimeSpec {
            server_id: self.server_id,
            argv: self.argv.clone(),
            environment: self.environment.clone(),
            limits: self.limits.into(),
            stop,
            ready_patterns,
            image: self.image.clone(),
            ports: self.ports.clone(),
        })
    }
}
