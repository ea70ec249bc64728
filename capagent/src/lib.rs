//! Ctrl-Alt-Play agent library: runtimes that run game servers and stream their consoles, the
//! file manager of a server's directory ([`files::ServerFiles`], confined to it by
//! construction), the node's backups ([`backups::BackupStore`]), and the [`Agent`] that connects
//! them to a panel: file manager and backup commands arrive as protocol requests, downloads and
//! uploads as byte streams on the same connection.
//!
//! [`Agent`] is a node's agent: it dials the panel's `/api/agent/v1/connect` with the node's
//! token, registers the node's facts, executes the panel's commands on a [`ProcessRuntime`] (or,
//! with [`AgentConfig::docker`] set, a [`DockerRuntime`](runtime::docker::DockerRuntime)), and
//! reports state changes (resent until acknowledged), console lines and stats as numbered
//! events. It detects crashes and applies the restart policy by itself, keeps its state under
//! `<data_dir>/agent/`, and after a restart re-adopts the games that kept running:
//!
//! ```no_run
//! # async fn run() -> capcore::Result<()> {
//! let config = capagent::AgentConfig::new("http://panel.example:8080", "capn_…", "/var/lib/cap-agent");
//! let agent = capagent::Agent::start(config).await?;
//! agent.run(std::future::pending()).await; // reconnects with backoff until the future resolves
//! # Ok(()) }
//! ```
//!
//! [`ProcessRuntime`] runs each server as a host process in its own directory and process
//! group, with only the environment it was given and within its resource limits (a cgroup per
//! server where the agent may create them, else rlimits: see
//! [`ProcessRuntime::enforced_limits`]). Its console goes into a bounded, throttled [`Console`]
//! that new subscribers replay.
//!
//! Games outlive the agent: their output goes to files and their input comes from a FIFO in
//! `<state_dir>/<id>/` (the layout is documented in `runtime/process/state.rs`), so dropping a
//! runtime, or the agent dying, never stops a game. The next runtime calls
//! [`ProcessRuntime::adopt`] and carries on without losing or repeating a console line.
//! [`ProcessRuntime::install`] runs a template's install script the same way.
//!
//! # The process runtime
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use capagent::{ProcessRuntime, ProcessRuntimeConfig};
//! use capcore::backend::{Runtime, RuntimeSpec, RuntimeStatus};
//! use capcore::ids::ServerId;
//! use capcore::template::{ReadyPattern, StopAction, StopSignal};
//!
//! let dir = std::env::temp_dir().join(format!("capagent-doc-{}", std::process::id()));
//! // State in `<dir>/.cap-run`, cgroups (where allowed) under `/cap-agent` in each hierarchy.
//! let config = ProcessRuntimeConfig::new(dir.join("servers"));
//! let runtime = ProcessRuntime::new(config.clone());
//! // Reported at agent registration, e.g. "memory:cgroup-v1" or "memory:rlimit".
//! assert!(runtime.enforced_limits().iter().any(|l| l.starts_with("memory:")));
//! let id = ServerId("a7d1b5f4-0c1e-4f3a-9b2d-6e5f4a3b2c1d".parse().unwrap());
//! let spec = RuntimeSpec {
//!     server_id: id,
//!     argv: vec!["/bin/sh".into(), "-c".into(), "echo ready; read line; echo got $line".into()],
//!     environment: Default::default(),
//!     limits: Default::default(),
//!     stop: StopAction::Signal(StopSignal::Sigterm),
//!     ready_patterns: vec![ReadyPattern::Contains("ready".into())],
//!     image: None,
//!     ports: Vec::new(),
//! };
//! runtime.create(spec.clone()).await.unwrap();
//! runtime.start(id).await.unwrap();
//! runtime.wait_ready(id).await.unwrap();
//!
//! // The agent restarts: the game keeps running and the new runtime adopts it.
//! drop(runtime);
//! let runtime = ProcessRuntime::new(config);
//! assert!(matches!(runtime.adopt(spec).await.unwrap(), RuntimeStatus::Running { .. }));
//! runtime.send_command(id, "hello").await.unwrap();
//! // Not the adopting runtime's child: how it ended is not known.
//! assert_eq!(runtime.wait_exit(id).await.unwrap(), RuntimeStatus::Exited { code: None, signal: None });
//! assert!(runtime.subscribe(id).unwrap().replay.contains(&"got hello".to_string()));
//! runtime.remove(id).await.unwrap();
//! # });
//! ```
//!
//! # The Docker runtime
//!
//! With the `docker` feature (on by default), [`DockerRuntime`](runtime::docker::DockerRuntime)
//! runs each server in a container of its template's image, with the same [`GameRuntime`]
//! interface; both pass [`runtime::conformance`]. An agent is pointed at it by
//! [`AgentConfig::docker`]; an engine it cannot reach leaves the node without a runtime, saying
//! why, rather than running games as host processes:
//!
//! ```no_run
//! # async fn run() -> capcore::Result<()> {
//! let mut config = capagent::AgentConfig::new("http://panel.example:8080", "capn_…", "/var/lib/cap-agent");
//! config.docker = Some(capagent::DockerOptions { host: Some("unix:///run/docker.sock".into()), ..Default::default() });
//! let agent = capagent::Agent::start(config).await?;
//! let (runtimes, problems) = agent.runtimes();
//! assert!(runtimes == ["docker"] || problems[0].starts_with("docker: "));
//! # Ok(()) }
//! ```

pub mod agent;
pub mod backups;
pub mod console;
pub mod files;
pub mod runtime;
#[cfg(feature = "s3")]
pub mod s3;

pub use agent::{Agent, AgentConfig, DockerOptions};

pub use console::{Console, ConsoleConfig, Subscription};
pub use runtime::process::{LimitMode, ProcessRuntime, ProcessRuntimeConfig, RunAs};
pub use runtime::{GameRuntime, Install};
