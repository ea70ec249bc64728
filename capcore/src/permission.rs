//! The 36 permissions, their scopes, the default roles and the one evaluation function.

use crate::ids::ServerId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

macro_rules! permissions {
    ($($variant:ident = $bit:literal, $category:ident, $server_scoped:literal, $desc:literal;)*) => {
        /// One permission. Names are stable: scripts and stored roles refer to them.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[repr(u8)]
        pub enum Permission { $($variant = $bit),* }

        impl Permission {
            /// Every permission, in catalogue order.
            pub const ALL: &'static [Permission] = &[$(Permission::$variant),*];

            pub fn name(self) -> &'static str {
                match self { $(Permission::$variant => stringify!($variant)),* }
            }
            pub fn category(self) -> Category {
                match self { $(Permission::$variant => Category::$category),* }
            }
            /// Whether this permission can be held on one server (by its owner or a subuser).
            /// The others exist only globally, through roles.
            pub fn is_server_scoped(self) -> bool {
                match self { $(Permission::$variant => $server_scoped),* }
            }
            pub fn description(self) -> &'static str {
                match self { $(Permission::$variant => $desc),* }
            }
            pub fn from_name(name: &str) -> Option<Permission> {
                match name { $(stringify!($variant) => Some(Permission::$variant),)* _ => None }
            }
        }
    };
}

permissions! {
    SERVER_VIEW = 0, Server, true, "see the server and its status";
    SERVER_CREATE = 1, Server, false, "create servers";
    SERVER_UPDATE = 2, Server, true, "change name, description and variables (globally: also limits, owner and node)";
    SERVER_DELETE = 3, Server, false, "delete servers";
    SERVER_START = 4, Server, true, "start the server";
    SERVER_STOP = 5, Server, true, "stop or kill the server";
    SERVER_RESTART = 6, Server, true, "restart the server";
    SERVER_CONSOLE = 7, Server, true, "read the console and send commands";
    SERVER_SCHEDULE = 8, Server, true, "manage scheduled tasks";
    USER_VIEW = 9, User, false, "list and see users";
    USER_CREATE = 10, User, false, "create users";
    USER_UPDATE = 11, User, false, "change users";
    USER_DELETE = 12, User, false, "delete users";
    USER_PERMISSIONS = 13, User, true, "manage roles and grants (on a server: its subusers)";
    FILE_VIEW = 14, File, true, "list files";
    FILE_READ = 15, File, true, "read and download files";
    FILE_WRITE = 16, File, true, "create, edit, upload, rename and chmod files";
    FILE_DELETE = 17, File, true, "delete files";
    FILE_ARCHIVE = 18, File, true, "create and extract archives";
    PLUGIN_VIEW = 19, Plugin, true, "see installed plugins";
    PLUGIN_MANAGE = 20, Plugin, true, "install, configure and remove plugins";
    WORKSHOP_VIEW = 21, Workshop, true, "see installed workshop items";
    WORKSHOP_MANAGE = 22, Workshop, true, "install and remove workshop items";
    BACKUP_VIEW = 23, Backup, true, "list backups";
    BACKUP_CREATE = 24, Backup, true, "create backups";
    BACKUP_RESTORE = 25, Backup, true, "restore and download backups";
    BACKUP_DELETE = 26, Backup, true, "delete backups";
    ANALYTICS_VIEW = 27, Analytics, true, "see usage analytics";
    SYSTEM_SETTINGS = 28, System, false, "change panel settings";
    SYSTEM_NODES = 29, System, false, "manage nodes and allocations";
    SYSTEM_TEMPLATES = 30, System, false, "manage templates";
    SYSTEM_AUDIT = 31, System, false, "read the whole audit log";
    NETWORK_VIEW = 32, Network, true, "see allocations";
    NETWORK_MANAGE = 33, Network, true, "assign and release allocations";
    MONITORING_VIEW = 34, Monitoring, true, "see resource usage";
    MONITORING_ALERTS = 35, Monitoring, true, "manage alerts";
}

/// The ten permission categories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Category {
    Server,
    User,
    File,
    Plugin,
    Workshop,
    Backup,
    Analytics,
    System,
    Network,
    Monitoring,
}

impl Category {
    pub const ALL: [Category; 10] = [
        Category::Server,
        Category::User,
        Category::File,
        Category::Plugin,
        Category::Workshop,
        Category::Backup,
        Category::Analytics,
        Category::System,
        Category::Network,
        Category::Monitoring,
    ];
}

impl fmt::Debug for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
impl Serialize for Permission {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}
impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Permission::from_name(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown permission `{s}`")))
    }
}

/// A set of permissions, stored as a bit set.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PermissionSet(u64);

impl PermissionSet {
    pub const EMPTY: PermissionSet = PermissionSet(0);
    pub fn all() -> Self {
        Self((1u64 << Permission::ALL.len()) - 1)
    }
    pub fn server_scoped() -> Self {
        Permission::ALL.iter().filter(|p| p.is_server_scoped()).copied().collect()
    }
    pub fn from_bits(bits: u64) -> Self {
        Self(bits & Self::all().0)
    }
    pub fn bits(&self) -> u64 {
        self.0
    }
    pub fn contains(&self, p: Permission) -> bool {
        self.0 & (1u64 << p as u8) != 0
    }
    pub fn insert(&mut self, p: Permission) {
        self.0 |= 1u64 << p as u8;
    }
    pub fn remove(&mut self, p: Permission) {
        self.0 &= !(1u64 << p as u8);
    }
    pub fn union(&self, other: PermissionSet) -> Self {
        Self(self.0 | other.0)
    }
    pub fn intersection(&self, other: PermissionSet) -> Self {
        Self(self.0 & other.0)
    }
    pub fn is_subset_of(&self, other: PermissionSet) -> bool {
        self.0 & !other.0 == 0
    }
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
    pub fn len(&self) -> usize {
        self.0.count_ones() as usize
    }
    pub fn iter(&self) -> impl Iterator<Item = Permission> + '_ {
        Permission::ALL.iter().copied().filter(|p| self.contains(*p))
    }
    /// The names, for storage and the wire.
    pub fn names(&self) -> Vec<&'static str> {
        self.iter().map(Permission::name).collect()
    }
    /// Parses names; the error names the first unknown one.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        names.iter().map(|n| Permission::from_name(n.as_ref()).ok_or_else(|| n.as_ref().to_string())).collect()
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        let mut s = PermissionSet::EMPTY;
        for p in iter {
            s.insert(p);
        }
        s
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}
impl Serialize for PermissionSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}
impl<'de> Deserialize<'de> for PermissionSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<Permission>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(feature = "panel")]
impl schemars::JsonSchema for PermissionSet {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PermissionSet".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = Permission::ALL.iter().map(|p| p.name()).collect();
        schemars::json_schema!({"type": "array", "uniqueItems": true, "items": {"type": "string", "enum": names}})
    }
}

/// Where a permission is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Panel-wide (users, nodes, templates, every server).
    Global,
    /// One server.
    Server(ServerId),
}

/// How a user relates to the server in question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerRelation {
    /// No relation: only global grants apply.
    None,
    /// The owner holds every server-scoped permission on it.
    Owner,
    /// A subuser holds what was granted to them.
    Subuser(PermissionSet),
}

/// Everything the evaluation needs to know about who is asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subject {
    /// The union of the user's roles.
    pub global: PermissionSet,
    /// The user's relation to the server in scope (ignored for `Scope::Global`).
    pub server: ServerRelation,
    /// When the request uses an API key: the subset the key is limited to.
    pub key_limit: Option<PermissionSet>,
}

impl Subject {
    pub fn global(global: PermissionSet) -> Self {
        Self { global, server: ServerRelation::None, key_limit: None }
    }
}

/// The one permission check. Pure: every route and WebSocket message goes through it.
///
/// A global grant applies everywhere, including every server. On a server, the owner holds
/// every server-scoped permission and a subuser what they were granted (server-scoped only). An
/// API key never widens anything: it can only narrow.
pub fn is_allowed(subject: &Subject, permission: Permission, scope: Scope) -> bool {
    if let Some(limit) = subject.key_limit
        && !limit.contains(permission)
    {
        return false;
    }
    if subject.global.contains(permission) {
        return true;
    }
    match scope {
        Scope::Global => false,
        Scope::Server(_) => {
            permission.is_server_scoped()
                && match subject.server {
                    ServerRelation::None => false,
                    ServerRelation::Owner => true,
                    ServerRelation::Subuser(granted) => granted.contains(permission),
                }
        }
    }
}

/// What a subject effectively holds at a scope (the union `is_allowed` would say yes to).
pub fn effective(subject: &Subject, scope: Scope) -> PermissionSet {
    Permission::ALL.iter().copied().filter(|p| is_allowed(subject, *p, scope)).collect()
}

/// A default role created on first start.
#[derive(Clone, Copy, Debug)]
pub struct DefaultRole {
    pub name: &'static str,
    pub description: &'static str,
    pub permissions: fn() -> PermissionSet,
}

/// `admin` (everything), `moderator` (sees and operates every server, reads the audit log, edits
/// nothing structural) and `user` (nothing global: access comes from owning or sharing servers).
pub const DEFAULT_ROLES: [DefaultRole; 3] = [
    DefaultRole { name: "admin", description: "every permission", permissions: PermissionSet::all },
    DefaultRole {
        name: "moderator",
        description: "operates every server, reads the audit log",
        permissions: moderator,
    },
    DefaultRole { name: "user", description: "access through owned and shared servers only", permissions: user },
];

fn moderator() -> PermissionSet {
    use Permission::*;
    [
        SERVER_VIEW,
        SERVER_START,
        SERVER_STOP,
        SERVER_RESTART,
        SERVER_CONSOLE,
        USER_VIEW,
        FILE_VIEW,
        FILE_READ,
        PLUGIN_VIEW,
        WORKSHOP_VIEW,
        BACKUP_VIEW,
        ANALYTICS_VIEW,
        SYSTEM_AUDIT,
        NETWORK_VIEW,
        MONITORING_VIEW,
    ]
    .into_iter()
    .collect()
}

fn user() -> PermissionSet {
    PermissionSet::EMPTY
}

/// Pterodactyl subuser permission keys and what they become here, for importing subusers.
/// A key mapping to several permissions grants all of them; `websocket.connect` maps to
/// nothing of its own (connecting is allowed to anyone who may see the server).
pub const PTERODACTYL_SUBUSER_KEYS: &[(&str, &[Permission])] = {
    use Permission::*;
    &[
        ("websocket.connect", &[SERVER_VIEW]),
        ("control.console", &[SERVER_CONSOLE]),
        ("control.start", &[SERVER_START]),
        ("control.stop", &[SERVER_STOP]),
        ("control.restart", &[SERVER_RESTART]),
        ("user.create", &[USER_PERMISSIONS]),
        ("user.read", &[USER_PERMISSIONS]),
        ("user.update", &[USER_PERMISSIONS]),
        ("user.delete", &[USER_PERMISSIONS]),
        ("file.create", &[FILE_WRITE]),
        ("file.read", &[FILE_VIEW]),
        ("file.read-content", &[FILE_READ]),
        ("file.update", &[FILE_WRITE]),
        ("file.delete", &[FILE_DELETE]),
        ("file.archive", &[FILE_ARCHIVE]),
        ("file.sftp", &[FILE_VIEW, FILE_READ, FILE_WRITE]),
        ("backup.create", &[BACKUP_CREATE]),
        ("backup.read", &[BACKUP_VIEW]),
        ("backup.delete", &[BACKUP_DELETE]),
        ("backup.download", &[BACKUP_RESTORE]),
        ("backup.restore", &[BACKUP_RESTORE]),
        ("allocation.read", &[NETWORK_VIEW]),
        ("allocation.create", &[NETWORK_MANAGE]),
        ("allocation.update", &[NETWORK_MANAGE]),
        ("allocation.delete", &[NETWORK_MANAGE]),
        ("startup.read", &[SERVER_VIEW]),
        ("startup.update", &[SERVER_UPDATE]),
        ("startup.docker-image", &[SERVER_UPDATE]),
        ("database.create", &[]),
        ("database.read", &[]),
        ("database.update", &[]),
        ("database.delete", &[]),
        ("database.view_password", &[]),
        ("schedule.create", &[SERVER_SCHEDULE]),
        ("schedule.read", &[SERVER_SCHEDULE]),
        ("schedule.update", &[SERVER_SCHEDULE]),
        ("schedule.delete", &[SERVER_SCHEDULE]),
        ("settings.rename", &[SERVER_UPDATE]),
        ("settings.reinstall", &[SERVER_UPDATE]),
        ("activity.read", &[ANALYTICS_VIEW]),
    ]
};

/// Translates Pterodactyl subuser keys; the error names the first unknown key.
pub fn from_pterodactyl_keys<S: AsRef<str>>(keys: &[S]) -> Result<PermissionSet, String> {
    let mut set = PermissionSet::EMPTY;
    for key in keys {
        let key = key.as_ref();
        let (_, perms) = PTERODACTYL_SUBUSER_KEYS.iter().find(|(k, _)| *k == key).ok_or_else(|| key.to_string())?;
        set = set.union(perms.iter().copied().collect());
    }
    Ok(set)
}

#[cfg(test)]
mod tests;
