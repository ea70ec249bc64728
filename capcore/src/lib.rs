//! Ctrl-Alt-Play core: the domain, permissions, validation, templates and backend traits.
//!
//! `capcore` is what every other cap crate builds on, and what an embedder programs against.
//! It does no I/O of its own and builds for `wasm32-unknown-unknown` with default features off.
//!
//! - [`permission`]: the 36 permissions, default roles and the one check, [`permission::is_allowed`];
//! - [`state`]: the server state machine;
//! - [`validate`]: checks for every user-supplied value, with errors naming the field;
//! - [`model`] and [`template`]: users, roles, nodes, allocations, servers, templates, audit;
//!   [`template::egg`] imports Pterodactyl and Pelican eggs;
//! - [`backend`]: the `Database`, `Cache`, `Authenticator` and `Runtime` traits;
//! - `panel` (feature `panel`): the panel's services and axum router, built from trait objects;
//! - `conformance` (feature `conformance`): the suites every backend runs.
//!
//! # Example
//!
//! A subuser with console access may read the console of the server they were added to, and
//! nothing global:
//!
//! ```
//! use capcore::ids::ServerId;
//! use capcore::permission::{is_allowed, Permission, PermissionSet, Scope, ServerRelation, Subject};
//!
//! let server = ServerId("8d7f3c1e-4a59-4c44-9a1e-3f1f0a0b9c10".parse().unwrap());
//! let granted: PermissionSet = [Permission::SERVER_CONSOLE].into_iter().collect();
//! let subject = Subject {
//!     global: PermissionSet::EMPTY,
//!     server: ServerRelation::Subuser(granted),
//!     key_limit: None,
//! };
//! assert!(is_allowed(&subject, Permission::SERVER_CONSOLE, Scope::Server(server)));
//! assert!(!is_allowed(&subject, Permission::SERVER_STOP, Scope::Server(server)));
//! assert!(!is_allowed(&subject, Permission::SERVER_CONSOLE, Scope::Global));
//! ```

pub mod backend;
pub mod error;
pub mod ids;
pub mod model;
pub mod permission;
pub mod protocol;
pub mod restart;
pub mod state;
pub mod template;
pub mod time;
pub mod validate;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "panel")]
pub mod panel;

pub use error::{Error, Result};
