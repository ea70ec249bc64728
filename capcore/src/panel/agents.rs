//! The panel's side of agent connections: which nodes are reachable and how to ask them things.
//!
//! A connected agent's gateway task registers a channel here; REST handlers and the console
//! WebSocket [`call`](AgentRegistry::call) a node with a protocol [`Command`] and wait, with a
//! timeout, for its typed result. A node without a connection answers `Unavailable` at once, so
//! a power request to a dead node is a fast 503, never a hang; a connection that drops fails
//! every call waiting on it at once.

use crate::ids::NodeId;
use crate::protocol::v1::files::Reply;
use crate::protocol::v1::{Command, ErrorCode, Heartbeat, NodeFacts, Outcome};
use crate::time::Timestamp;
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Power actions, as the REST API names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PowerAction {
    Start,
    Stop,
    Restart,
    Kill,
}

impl PowerAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::Start => "start",
            PowerAction::Stop => "stop",
            PowerAction::Restart => "restart",
            PowerAction::Kill => "kill",
        }
    }
}

/// One command on its way to an agent, and where its outcome goes.
#[derive(Debug)]
pub struct AgentCall {
    pub command: Command,
    /// The agent is told to give up after this long; the caller stops waiting then too.
    pub timeout: Duration,
    pub reply: oneshot::Sender<Outcome>,
    /// For a command that moves bytes: where the connection hands over its end of the
    /// request's byte stream, before the request goes out.
    pub stream: Option<oneshot::Sender<StreamEnd>>,
}

/// The panel's end of a request's byte stream: `Incoming` for a download, `Outgoing` for an
/// upload.
pub use crate::protocol::v1::streams::StreamEnd;

/// A call sent to an agent, its outcome still to come.
#[derive(Debug)]
pub struct PendingCall {
    answer: oneshot::Receiver<Outcome>,
    subject: &'static str,
}

impl PendingCall {
    /// Waits up to `timeout` for the agent's answer.
    pub async fn outcome(self, timeout: Duration) -> Result<Reply> {
        match tokio::time::timeout(timeout, self.answer).await {
            Err(_) => Err(Error::Unavailable {
                message: format!("the node's agent did not answer within {} s", timeout.as_secs_f64()),
                source: None,
            }),
            Ok(Err(_)) => Err(Error::Unavailable {
                message: "the node's agent disconnected before answering".into(),
                source: None,
            }),
            Ok(Ok(outcome)) => outcome_reply(outcome, self.subject),
        }
    }
}

/// What the panel knows about a connected agent.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AgentStatus {
    pub agent_version: String,
    pub protocol: u32,
    pub facts: NodeFacts,
    pub connected_at: Timestamp,
    /// The latest heartbeat and when it came.
    pub heartbeat: Option<(Timestamp, Heartbeat)>,
}

#[derive(Debug)]
struct Link {
    connection: u64,
    calls: mpsc::Sender<AgentCall>,
    status: AgentStatus,
}

/// Connected agents by node.
#[derive(Debug, Default)]
pub struct AgentRegistry {
    links: RwLock<HashMap<NodeId, Link>>,
    next_connection: AtomicU64,
    /// Serialises a node's connection set-up and tear-down.
    node_locks: std::sync::Mutex<HashMap<NodeId, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

fn offline() -> Error {
    Error::Unavailable { message: "the server's node is offline: its agent is not connected".into(), source: None }
}

impl AgentRegistry {
    pub fn is_connected(&self, node: NodeId) -> bool {
        self.links.read().expect("agent registry lock").get(&node).is_some_and(|l| !l.calls.is_closed())
    }

    /// Registers a connected agent's call channel, replacing an older connection of the same
    /// node; returns this connection's number (for [`detach`](Self::detach)).
    pub fn attach(&self, node: NodeId, calls: mpsc::Sender<AgentCall>, status: AgentStatus) -> u64 {
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed) + 1;
        self.links.write().expect("agent registry lock").insert(node, Link { connection, calls, status });
        connection
    }

    /// Forgets the connection if it is still the node's current one; returns whether it was
    /// (a newer connection of the node is left alone).
    pub fn detach(&self, node: NodeId, connection: u64) -> bool {
        let mut links = self.links.write().expect("agent registry lock");
        if links.get(&node).is_some_and(|l| l.connection == connection) {
            links.remove(&node);
            true
        } else {
            false
        }
    }

    /// Holds the node's set-up/tear-down lock: the gateway takes it while it welcomes a
    /// connection and while it marks a lost node's servers unknown.
    pub async fn lock_node(&self, node: NodeId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self.node_locks.lock().expect("node locks").entry(node).or_default().clone();
        lock.lock_owned().await
    }

    /// Whether `connection` is the node's current connection.
    pub fn is_current(&self, node: NodeId, connection: u64) -> bool {
        self.links.read().expect("agent registry lock").get(&node).is_some_and(|l| l.connection == connection)
    }

    pub fn status(&self, node: NodeId) -> Option<AgentStatus> {
        self.links.read().expect("agent registry lock").get(&node).map(|l| l.status.clone())
    }

    pub fn record_heartbeat(&self, node: NodeId, connection: u64, at: Timestamp, heartbeat: Heartbeat) {
        if let Some(link) = self.links.write().expect("agent registry lock").get_mut(&node)
            && link.connection == connection
        {
            link.status.heartbeat = Some((at, heartbeat));
        }
    }

    /// How many agents are connected.
    pub fn connected(&self) -> usize {
        self.links.read().expect("agent registry lock").len()
    }

    /// Sends `command` to the node's agent and waits up to `timeout` for its outcome.
    ///
    /// `Unavailable` at once when the node is not connected or its queue is full, when the
    /// connection drops before the answer, or when no answer comes in time; the agent's own
    /// refusals come back as `Conflict` (wrong state) or `Invalid`, and its failures as
    /// `Unavailable` carrying its message.
    pub async fn call(&self, node: NodeId, command: Command, timeout: Duration) -> Result<()> {
        self.ask(node, command, timeout).await.map(drop)
    }

    /// As [`call`](Self::call), returning the data the agent answered with.
    pub async fn ask(&self, node: NodeId, command: Command, timeout: Duration) -> Result<Reply> {
        self.submit(node, command, timeout, None)?.outcome(timeout).await
    }

    /// Sends a command that moves bytes (a download or an upload): returns the panel's end of
    /// the request's byte stream at once, and the call whose outcome is still to come.
    pub async fn call_streaming(
        &self,
        node: NodeId,
        command: Command,
        timeout: Duration,
    ) -> Result<(StreamEnd, PendingCall)> {
        let (tx, rx) = oneshot::channel();
        let pending = self.submit(node, command, timeout, Some(tx))?;
        let end = rx.await.map_err(|_| offline())?;
        Ok((end, pending))
    }

    fn submit(
        &self,
        node: NodeId,
        command: Command,
        timeout: Duration,
        stream: Option<oneshot::Sender<StreamEnd>>,
    ) -> Result<PendingCall> {
        let subject = match command {
            Command::Files { .. } => "file",
            Command::Backups { .. } => "backup",
            _ => "server",
        };
        let calls = self.links.read().expect("agent registry lock").get(&node).map(|l| l.calls.clone());
        let calls = calls.ok_or_else(offline)?;
        let (reply, answer) = oneshot::channel();
        calls.try_send(AgentCall { command, timeout, reply, stream }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                Error::Unavailable { message: "the node's agent is busy; try again".into(), source: None }
            }
            mpsc::error::TrySendError::Closed(_) => offline(),
        })?;
        Ok(PendingCall { answer, subject })
    }
}

/// An agent's outcome as the panel's answer or error. `subject` is what a command is about
/// (`server`, `file`, `backup`): a file or backup the agent does not find is the caller's 404, a
/// server it does not have is the panel's inconsistency (503).
pub fn outcome_reply(outcome: Outcome, subject: &'static str) -> Result<Reply> {
    match outcome {
        Outcome::Ok => Ok(Reply::Done),
        Outcome::Data { data } => Ok(*data),
        Outcome::Error { code: ErrorCode::Conflict, message } => Err(Error::conflict(message)),
        Outcome::Error { code: ErrorCode::Invalid, message } => Err(invalid_from(&message, subject)),
        Outcome::Error { code: ErrorCode::NotFound, .. } if subject != "server" => Err(Error::not_found(subject)),
        Outcome::Error { code: ErrorCode::Forbidden, message } if subject != "server" => Err(Error::forbidden(message)),
        Outcome::Error { code, message } => Err(Error::Unavailable {
            message: format!("the node's agent failed ({}): {message}", code_name(code)),
            source: None,
        }),
    }
}

/// An agent answered with data of another kind than the command asks for.
pub fn unexpected_reply(reply: Reply) -> Error {
    Error::internal("the agent answered with the wrong kind of data", format!("{reply:?}"))
}

/// A validation error carried as its text (`field: problem`), the field kept when it has one.
pub(crate) fn invalid_from(message: &str, default_field: &str) -> Error {
    match message.split_once(": ") {
        Some((field, problem)) if !field.is_empty() && !field.contains(' ') => Error::invalid(field, problem),
        _ => Error::invalid(default_field, message),
    }
}

fn code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::NotFound => "not_found",
        ErrorCode::Conflict => "conflict",
        ErrorCode::Invalid => "invalid",
        ErrorCode::Forbidden => "forbidden",
        ErrorCode::Timeout => "timeout",
        ErrorCode::Internal => "internal",
    }
}
