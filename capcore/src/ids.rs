//! Id newtypes, so a `ServerId` can never be passed where a `UserId` is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {$(
        #[$doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random id.
            #[cfg(feature = "random-ids")]
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
        #[cfg(feature = "panel")]
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                "Uuid".into()
            }
            fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
                <Uuid as schemars::JsonSchema>::json_schema(g)
            }
        }
    )*};
}

id_type! {
    /// A user account.
    UserId,
    /// A role (a named set of global permissions).
    RoleId,
    /// A node: one machine running an agent.
    NodeId,
    /// A game server.
    ServerId,
    /// A template (a game definition).
    TemplateId,
    /// One ip:port on a node.
    AllocationId,
    /// An API key.
    ApiKeyId,
    /// A login session (a refresh-token family).
    SessionId,
    /// An audit-log entry.
    AuditEventId,
    /// A backup of a server's files.
    BackupId,
}
