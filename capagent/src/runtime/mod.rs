//! Runtimes: how a game server's process is run. [`process::ProcessRuntime`] runs host
//! processes; [`docker::DockerRuntime`] (feature `docker`) runs one container per server.
//!
//! Both implement [`GameRuntime`]: capcore's [`Runtime`] lifecycle plus what an agent needs
//! around it (the console, commands, waiting for ready and exit, re-adopting after an agent
//! restart, install scripts). The [`Agent`](crate::Agent) holds one as `Arc<dyn GameRuntime>`,
//! and [`conformance`] is the suite every implementation passes.

pub mod conformance;
#[cfg(feature = "docker")]
pub mod docker;
pub mod process;

use crate::console::Subscription;
use async_trait::async_trait;
use capcore::backend::{Runtime, RuntimeSpec, RuntimeStatus};
use capcore::ids::ServerId;
use capcore::{Error, Result};

/// A template's install script as a runtime runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Install {
    pub script: String,
    /// The interpreter, e.g. `bash` or `/bin/sh`.
    pub entrypoint: String,
    /// The install container's image (Docker runtime; the server's image when `None`).
    pub image: Option<String>,
}

/// A [`Runtime`] as an agent drives it.
///
/// # Contract (beyond [`Runtime`]'s)
///
/// - `subscribe` gives the recent console lines and then the live ones, from before the first
///   start on; the runtime adds `[cap] ...` lines of its own (exit, install).
/// - `send_command` writes one line to the game's stdin: `Invalid` for a line break in it,
///   `Conflict` when the game is not running.
/// - `wait_ready` returns once a ready pattern was seen (at once without patterns), `Conflict`
///   if the run ended first. `wait_exit` returns how the run ended, once every line it printed
///   is in the console.
/// - `adopt` registers a spec and takes over a game that a previous agent started and that still
///   runs (`Running`), or reports that it is not running.
/// - `install` runs a template's install script with the server's directory, never while the
///   game runs (`Conflict`), and returns how it ended.
#[async_trait]
pub trait GameRuntime: Runtime + std::fmt::Debug {
    /// `process` or `docker`, as reported at registration.
    fn name(&self) -> &'static str;
    /// What is enforced, e.g. `memory:cgroup-v1`, `cpu:docker` or `io:none`.
    fn enforced_limits(&self) -> Vec<String>;
    fn subscribe(&self, id: ServerId) -> Result<Subscription>;
    async fn send_command(&self, id: ServerId, line: &str) -> Result<()>;
    async fn wait_ready(&self, id: ServerId) -> Result<()>;
    async fn wait_exit(&self, id: ServerId) -> Result<RuntimeStatus>;
    async fn adopt(&self, spec: RuntimeSpec) -> Result<RuntimeStatus>;
    async fn install(&self, id: ServerId, install: &Install) -> Result<RuntimeStatus>;
}

/// One console line to send: `Invalid` if it holds a line break.
pub(crate) fn command_line(line: &str) -> Result<Vec<u8>> {
    if line.contains('\n') || line.contains('\r') {
        return Err(Error::invalid("command", "must be one line"));
    }
    let mut bytes = line.as_bytes().to_vec();
    bytes.push(b'\n');
    Ok(bytes)
}

/// The console line saying how a run ended.
pub(crate) fn exit_line(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(code), _) => format!("[cap] the server exited with code {code}"),
        (None, Some(sig)) => format!("[cap] the server was ended by signal {sig}"),
        _ => "[cap] the server ended".to_string(),
    }
}

/// A runtime that could not be set up: every call fails with the reason, so servers are
/// refused with it instead of silently running elsewhere (a node configured for Docker whose
/// engine is unreachable never falls back to host processes).
#[derive(Debug)]
pub struct Unavailable {
    name: &'static str,
    reason: String,
}

impl Unavailable {
    pub fn new(name: &'static str, reason: impl Into<String>) -> Self {
        Self { name, reason: reason.into() }
    }

    /// Why the runtime is missing.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    fn error(&self) -> Error {
        Error::unavailable(
            format!("the {} runtime is unavailable on this node: {}", self.name, self.reason),
            std::io::Error::other(self.reason.clone()),
        )
    }
}

#[async_trait]
impl Runtime for Unavailable {
    async fn create(&self, _spec: RuntimeSpec) -> Result<()> {
        Err(self.error())
    }
    async fn start(&self, _id: ServerId) -> Result<()> {
        Err(self.error())
    }
    async fn stop(&self, _id: ServerId, _grace: std::time::Duration) -> Result<()> {
        Err(self.error())
    }
    async fn kill(&self, _id: ServerId) -> Result<()> {
        Err(self.error())
    }
    async fn remove(&self, _id: ServerId) -> Result<()> {
        Err(self.error())
    }
    async fn status(&self, _id: ServerId) -> Result<RuntimeStatus> {
        Err(self.error())
    }
    async fn stats(&self, _id: ServerId) -> Result<capcore::backend::RuntimeStats> {
        Err(self.error())
    }
}

#[async_trait]
impl GameRuntime for Unavailable {
    fn name(&self) -> &'static str {
        self.name
    }
    fn enforced_limits(&self) -> Vec<String> {
        Vec::new()
    }
    fn subscribe(&self, _id: ServerId) -> Result<Subscription> {
        Err(self.error())
    }
    async fn send_command(&self, _id: ServerId, _line: &str) -> Result<()> {
        Err(self.error())
    }
    async fn wait_ready(&self, _id: ServerId) -> Result<()> {
        Err(self.error())
    }
    async fn wait_exit(&self, _id: ServerId) -> Result<RuntimeStatus> {
        Err(self.error())
    }
    async fn adopt(&self, _spec: RuntimeSpec) -> Result<RuntimeStatus> {
        Err(self.error())
    }
    async fn install(&self, _id: ServerId, _install: &Install) -> Result<RuntimeStatus> {
        Err(self.error())
    }
}
