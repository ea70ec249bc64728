//! The backend traits the panel and agent are built on; implementations live in other crates.

pub mod auth;
pub mod cache;
pub mod database;
pub mod portable;
pub mod runtime;

pub use auth::{AuthVia, Authenticator, Credential, IssuedSession, LoginRequest, Principal, TotpSetup};
pub use cache::{Cache, CacheExt, Subscription};
pub use database::{
    AllocationRepo, ApiKeyRepo, AuditRepo, Database, NodeRepo, RoleRepo, ServerRepo, SessionRepo, TemplateRepo,
    UserRepo,
};
pub use runtime::{Runtime, RuntimeSpec, RuntimeStats, RuntimeStatus};
