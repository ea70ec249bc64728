//! Ctrl-Alt-Play agent library: runtimes that run game servers and stream their consoles.
//!
//! [`ProcessRuntime`] runs each server as a host process in its own directory and process
//! group, with only the environment it was given; its console goes into a bounded, throttled
//! [`Console`] that new subscribers replay.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use capagent::{ProcessRuntime, ProcessRuntimeConfig};
//! use capcore::backend::{Runtime, RuntimeSpec, RuntimeStatus};
//! use capcore::ids::ServerId;
//! use capcore::template::{ReadyPattern, StopAction, StopSignal};
//!
//! let dir = std::env::temp_dir().join(format!("capagent-doc-{}", std::process::id()));
//! let runtime = ProcessRuntime::new(ProcessRuntimeConfig::new(&dir));
//! let id = ServerId("a7d1b5f4-0c1e-4f3a-9b2d-6e5f4a3b2c1d".parse().unwrap());
//! let spec = RuntimeSpec {
//!     server_id: id,
//!     argv: vec!["/bin/sh".into(), "-c".into(), "echo ready; read line; echo got $line".into()],
//!     environment: Default::default(),
//!     limits: Default::default(),
//!     stop: StopAction::Signal(StopSignal::Sigterm),
//!     ready_patterns: vec![ReadyPattern::Contains("ready".into())],
//!     image: None,
//! };
//! runtime.create(spec).await.unwrap();
//! runtime.start(id).await.unwrap();
//! runtime.wait_ready(id).await.unwrap();
//! runtime.send_command(id, "hello").await.unwrap();
//! assert_eq!(runtime.wait_exit(id).await.unwrap(), RuntimeStatus::Exited { code: Some(0), signal: None });
//! assert!(runtime.subscribe(id).unwrap().replay.contains(&"got hello".to_string()));
//! runtime.remove(id).await.unwrap();
//! # });
//! ```

pub mod console;
pub mod runtime;

pub use console::{Console, ConsoleConfig, Subscription};
pub use runtime::process::{ProcessRuntime, ProcessRuntimeConfig, RunAs};
