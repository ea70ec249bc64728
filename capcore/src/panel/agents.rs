//! The panel's side of agent connections: which nodes are reachable and how to send them work.
//!
//! A connected agent registers a channel here; the REST handlers send [`AgentCommand`]s through
//! it. A node without a registered channel answers `Unavailable` at once, so a power request
//! to a dead node is a fast 503, never a hang.

use crate::ids::{NodeId, ServerId};
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::RwLock;
use tokio::sync::mpsc;

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

/// Work for an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentCommand {
    Install { server: ServerId },
    Power { server: ServerId, action: PowerAction },
    Command { server: ServerId, line: String },
    Delete { server: ServerId },
}

/// Connected agents by node.
#[derive(Debug, Default)]
pub struct AgentRegistry {
    connected: RwLock<HashMap<NodeId, mpsc::Sender<AgentCommand>>>,
}

impl AgentRegistry {
    pub fn is_connected(&self, node: NodeId) -> bool {
        self.connected.read().expect("agent registry lock").get(&node).is_some_and(|tx| !tx.is_closed())
    }

    /// Registers a connected agent's command channel (replacing an older connection).
    pub fn attach(&self, node: NodeId, commands: mpsc::Sender<AgentCommand>) {
        self.connected.write().expect("agent registry lock").insert(node, commands);
    }

    pub fn detach(&self, node: NodeId) {
        self.connected.write().expect("agent registry lock").remove(&node);
    }

    /// Queues a command for the node's agent; `Unavailable` at once when it is not connected
    /// or its queue is full.
    pub fn send(&self, node: NodeId, command: AgentCommand) -> Result<()> {
        let tx = self.connected.read().expect("agent registry lock").get(&node).cloned();
        let Some(tx) = tx else {
            return Err(Error::Unavailable { message: "the node's agent is not connected".into(), source: None });
        };
        tx.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                Error::Unavailable { message: "the node's agent is busy; try again".into(), source: None }
            }
            mpsc::error::TrySendError::Closed(_) => {
                Error::Unavailable { message: "the node's agent is not connected".into(), source: None }
            }
        })
    }
}
