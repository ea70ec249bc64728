//! The `Runtime` trait: how an agent runs one game server (host process or container).
//!
//! # Contract
//!
//! - `create` prepares the server's directory or container from a [`RuntimeSpec`]; calling it
//!   again with the same id replaces the spec (idempotent).
//! - `start` launches the rendered argv (never through a shell unless the template is a shell
//!   script, and then with variables passed only as environment) with exactly the given
//!   environment; `Conflict` if already running.
//! - `stop` asks gracefully (the template's stop action), waits up to the grace period, then
//!   kills the whole process group or container; it returns once the process is gone and reaped.
//! - `kill` ends it at once. `remove` stops it if needed and deletes its directory or container.
//! - `status` and `stats` never block on the game.
//! - `NotFound` for an id that was never created.
//!
//! The process runtime and the Docker runtime implement this in `capagent`.

use crate::error::Result;
use crate::ids::ServerId;
use crate::model::Limits;
use crate::template::StopAction;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::time::Duration;

/// Everything a runtime needs to run one server.
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeSpec {
    pub server_id: ServerId,
    pub argv: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub limits: Limits,
    pub stop: StopAction,
    /// Console lines that mean the server is ready (none: ready once started).
    pub ready_patterns: Vec<crate::template::ReadyPattern>,
    /// Container image (Docker runtime only).
    pub image: Option<String>,
    /// The server's allocations, its primary first: where a runtime that gives the game a
    /// network of its own publishes it (the Docker runtime off host networking), TCP and UDP.
    pub ports: Vec<crate::protocol::v1::PortBinding>,
}

/// What a runtime knows about a server's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeStatus {
    NotRunning,
    Running { pid: u32 },
    Exited { code: Option<i32>, signal: Option<i32> },
}

/// Resource use at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RuntimeStats {
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub uptime: Duration,
    /// Bytes received and sent, where the runtime can tell (a container on its own network).
    pub network: Option<crate::protocol::v1::NetworkUse>,
}

#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    async fn create(&self, spec: RuntimeSpec) -> Result<()>;
    async fn start(&self, id: ServerId) -> Result<()>;
    async fn stop(&self, id: ServerId, grace: Duration) -> Result<()>;
    async fn kill(&self, id: ServerId) -> Result<()>;
    async fn remove(&self, id: ServerId) -> Result<()>;
    async fn status(&self, id: ServerId) -> Result<RuntimeStatus>;
    async fn stats(&self, id: ServerId) -> Result<RuntimeStats>;
}
