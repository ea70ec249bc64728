//! The panel's configuration: a TOML file plus `CAP_*` environment variables, validated at
//! start with errors that name the key.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything `cap-panel` can be told. Every field has a default; see the README's reference.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on (`CAP_LISTEN`).
    pub listen: SocketAddr,
    /// Where state lives (`CAP_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Database URL (`CAP_DATABASE_URL`); default SQLite at `<data_dir>/cap.db`.
    pub database_url: Option<String>,
    /// `memory` or `redis://...` (`CAP_CACHE_URL`).
    pub cache_url: String,
    /// Put in front of every Redis key and channel (`CAP_CACHE_PREFIX`): panels that share
    /// sessions and console output use the same prefix; unrelated ones on one Redis do not.
    pub cache_prefix: String,
    /// Run the embedded local agent (`CAP_LOCAL_AGENT`).
    pub local_agent: bool,
    /// The user the local agent runs games as (`CAP_RUN_AS`, a name or `uid:gid`); when the
    /// panel runs as root the default is `nobody`.
    pub run_as: Option<String>,
    /// The first admin, used only when no user exists (`CAP_ADMIN_EMAIL`, `CAP_ADMIN_PASSWORD`).
    pub admin_email: String,
    pub admin_password: Option<String>,
    pub auth: AuthSection,
    pub http: HttpSection,
    pub agents: AgentsSection,
    pub database: DatabaseSection,
    pub backups: BackupsSection,
}

/// Backups of servers (kept by their nodes).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackupsSection {
    /// The least time between the starts of two backups of one server, in seconds.
    pub min_interval_secs: u64,
    /// Backups kept per server (0: no limit); older unlocked ones go when a new one is done.
    pub keep: u32,
    /// Unlocked backups older than this many days go when a new one is done (0: kept).
    pub max_age_days: u64,
}

impl Default for BackupsSection {
    fn default() -> Self {
        let p = capcore::panel::PanelConfig::default();
        Self {
            min_interval_secs: p.backup_min_interval.as_secs(),
            keep: p.backup_keep.unwrap_or(0),
            max_age_days: p.backup_max_age.map_or(0, |d| d.as_secs() / 86_400),
        }
    }
}

/// The database connection pool.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSection {
    /// Connections this panel keeps open at most (an in-memory SQLite database uses one).
    pub max_connections: u32,
    /// How long a request waits for a connection before it fails with 503, in milliseconds;
    /// also how long connecting may take.
    pub acquire_timeout_ms: u64,
}

impl Default for DatabaseSection {
    fn default() -> Self {
        let d = capdb::DbConfig::default();
        Self { max_connections: d.max_connections, acquire_timeout_ms: d.acquire_timeout.as_millis() as u64 }
    }
}

impl DatabaseSection {
    pub fn db_config(&self) -> capdb::DbConfig {
        capdb::DbConfig {
            max_connections: self.max_connections,
            acquire_timeout: std::time::Duration::from_millis(self.acquire_timeout_ms),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsSection {
    /// How often agents send heartbeats, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Heartbeats a node may miss before it is offline.
    pub heartbeat_misses: u32,
    /// How long an API request waits for an agent's answer, in milliseconds.
    pub timeout_ms: u64,
    /// How long a stop waits before the game is killed, in seconds.
    pub stop_grace_secs: u64,
    /// Console lines kept per server for browsers that connect later.
    pub console_replay_lines: usize,
    /// Messages a browser WebSocket may fall behind before it is disconnected.
    pub ws_send_queue: usize,
    /// Messages a browser may send per second on one WebSocket.
    pub ws_messages_per_second: u32,
    /// How long one message to a browser may take before the browser is dropped, in ms.
    pub ws_send_timeout_ms: u64,
}

impl Default for AgentsSection {
    fn default() -> Self {
        let p = capcore::panel::PanelConfig::default();
        Self {
            heartbeat_interval_ms: p.agent_heartbeat_interval.as_millis() as u64,
            heartbeat_misses: p.agent_heartbeat_misses,
            timeout_ms: p.agent_timeout.as_millis() as u64,
            stop_grace_secs: p.stop_grace.as_secs(),
            console_replay_lines: p.console_replay_lines,
            ws_send_queue: p.ws_send_queue,
            ws_messages_per_second: p.ws_messages_per_second,
            ws_send_timeout_ms: p.ws_send_timeout.as_millis() as u64,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Access-token lifetime in seconds.
    pub access_ttl_secs: u64,
    /// Refresh-token lifetime in days.
    pub refresh_ttl_days: u64,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub login_attempts_per_account: u32,
    pub login_attempts_per_ip: u32,
    pub login_window_secs: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    pub max_body_bytes: usize,
    pub cookie_secure: bool,
    pub trust_proxy: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid default"),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            cache_url: "memory".into(),
            cache_prefix: "cap:".into(),
            local_agent: true,
            run_as: None,
            admin_email: "admin@localhost.localdomain".into(),
            admin_password: None,
            auth: AuthSection::default(),
            http: HttpSection::default(),
            agents: AgentsSection::default(),
            database: DatabaseSection::default(),
            backups: BackupsSection::default(),
        }
    }
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            access_ttl_secs: 900,
            refresh_ttl_days: 30,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            login_attempts_per_account: 5,
            login_attempts_per_ip: 30,
            login_window_secs: 900,
        }
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        Self { max_body_bytes: 1024 * 1024, cookie_secure: true, trust_proxy: false }
    }
}

/// The environment variables read, and the key each one sets.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("CAP_LISTEN", "listen"),
    ("CAP_DATA_DIR", "data_dir"),
    ("CAP_DATABASE_URL", "database_url"),
    ("CAP_CACHE_URL", "cache_url"),
    ("CAP_CACHE_PREFIX", "cache_prefix"),
    ("CAP_LOCAL_AGENT", "local_agent"),
    ("CAP_RUN_AS", "run_as"),
    ("CAP_ADMIN_EMAIL", "admin_email"),
    ("CAP_ADMIN_PASSWORD", "admin_password"),
];

impl Config {
    /// Reads the TOML file (if any), then applies the environment, then validates.
    pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Self> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                Self::from_toml(&text).with_context(|| format!("in config file {}", path.display()))?
            }
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| {
            anyhow::anyhow!("invalid configuration: {}", e.message().trim_end()).context(describe_span(text, e.span()))
        })
    }

    fn apply_env(&mut self, env: &HashMap<String, String>) -> Result<()> {
        for (var, key) in ENV_KEYS {
            let Some(value) = env.get(*var) else { continue };
            let bad = |what: &str| anyhow::anyhow!("environment variable {var} (config key `{key}`): {what}");
            match *key {
                "listen" => self.listen = value.parse().map_err(|_| bad("must be an address like 127.0.0.1:8080"))?,
                "data_dir" => self.data_dir = PathBuf::from(value),
                "database_url" => self.database_url = Some(value.clone()),
                "cache_url" => self.cache_url = value.clone(),
                "cache_prefix" => self.cache_prefix = value.clone(),
                "local_agent" => {
                    self.local_agent = match value.to_ascii_lowercase().as_str() {
                        "1" | "true" | "yes" | "on" => true,
                        "0" | "false" | "no" | "off" => false,
                        _ => return Err(bad("must be true or false")),
                    }
                }
                "run_as" => self.run_as = Some(value.clone()),
                "admin_email" => self.admin_email = value.clone(),
                "admin_password" => self.admin_password = Some(value.clone()),
                _ => unreachable!("every key in ENV_KEYS is handled"),
            }
        }
        Ok(())
    }

    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<()> {
        if self.data_dir.as_os_str().is_empty() {
            bail!("config key `data_dir`: must not be empty");
        }
        if let Some(url) = &self.database_url {
            let scheme = url.split(':').next().unwrap_or_default();
            if !["sqlite", "postgres", "postgresql", "mysql", "mariadb", "mongodb"].contains(&scheme) {
                bail!(
                    "config key `database_url`: unknown scheme `{scheme}` (expected sqlite://, postgres://, mysql://, mariadb:// or mongodb://)"
                );
            }
        }
        if self.cache_url != "memory"
            && !self.cache_url.starts_with("redis://")
            && !self.cache_url.starts_with("rediss://")
        {
            bail!("config key `cache_url`: must be `memory` or a redis:// URL");
        }
        if self.cache_prefix.len() > 64 || self.cache_prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("config key `cache_prefix`: must be at most 64 bytes without spaces or control characters");
        }
        capcore::validate::email("admin_email", &self.admin_email).map_err(|e| anyhow::anyhow!("config key `{e}`"))?;
        if let Some(p) = &self.admin_password {
            capcore::validate::password("admin_password", p).map_err(|e| anyhow::anyhow!("config key `{e}`"))?;
        }
        let a = &self.auth;
        if !(60..=86_400).contains(&a.access_ttl_secs) {
            bail!("config key `auth.access_ttl_secs`: must be between 60 and 86400");
        }
        if !(1..=365).contains(&a.refresh_ttl_days) {
            bail!("config key `auth.refresh_ttl_days`: must be between 1 and 365");
        }
        if !(8 * 1024..=4 * 1024 * 1024).contains(&a.argon2_memory_kib) {
            bail!("config key `auth.argon2_memory_kib`: must be between 8192 and 4194304");
        }
        if !(1..=100).contains(&a.argon2_iterations) {
            bail!("config key `auth.argon2_iterations`: must be between 1 and 100");
        }
        if !(1..=64).contains(&a.argon2_parallelism) {
            bail!("config key `auth.argon2_parallelism`: must be between 1 and 64");
        }
        if a.login_attempts_per_account == 0 || a.login_attempts_per_ip == 0 {
            bail!("config key `auth.login_attempts_per_account`/`auth.login_attempts_per_ip`: must be at least 1");
        }
        if !(1..=86_400).contains(&a.login_window_secs) {
            bail!("config key `auth.login_window_secs`: must be between 1 and 86400");
        }
        if !(1024..=1024 * 1024 * 1024).contains(&self.http.max_body_bytes) {
            bail!("config key `http.max_body_bytes`: must be between 1024 and 1073741824");
        }
        let d = &self.database;
        if !(1..=1000).contains(&d.max_connections) {
            bail!("config key `database.max_connections`: must be between 1 and 1000");
        }
        if !(100..=600_000).contains(&d.acquire_timeout_ms) {
            bail!("config key `database.acquire_timeout_ms`: must be between 100 and 600000");
        }
        let g = &self.agents;
        if !(100..=600_000).contains(&g.heartbeat_interval_ms) {
            bail!("config key `agents.heartbeat_interval_ms`: must be between 100 and 600000");
        }
        if !(1..=100).contains(&g.heartbeat_misses) {
            bail!("config key `agents.heartbeat_misses`: must be between 1 and 100");
        }
        if !(100..=600_000).contains(&g.timeout_ms) {
            bail!("config key `agents.timeout_ms`: must be between 100 and 600000");
        }
        if self.backups.min_interval_secs > 86_400 {
            bail!("config key `backups.min_interval_secs`: must be at most 86400");
        }
        if self.backups.max_age_days > 36_500 {
            bail!("config key `backups.max_age_days`: must be at most 36500");
        }
        if g.stop_grace_secs > 3600 {
            bail!("config key `agents.stop_grace_secs`: must be at most 3600");
        }
        if g.console_replay_lines > 100_000 {
            bail!("config key `agents.console_replay_lines`: must be at most 100000");
        }
        if !(1..=1_000_000).contains(&g.ws_send_queue) {
            bail!("config key `agents.ws_send_queue`: must be between 1 and 1000000");
        }
        if !(1..=10_000).contains(&g.ws_messages_per_second) {
            bail!("config key `agents.ws_messages_per_second`: must be between 1 and 10000");
        }
        if !(100..=600_000).contains(&g.ws_send_timeout_ms) {
            bail!("config key `agents.ws_send_timeout_ms`: must be between 100 and 600000");
        }
        Ok(())
    }

    /// The database URL, defaulting to SQLite in the data directory.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("cap.db").display()))
    }
}

fn describe_span(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(r) => {
            let line = text[..r.start.min(text.len())].matches('\n').count() + 1;
            format!("at line {line}")
        }
        None => "in the configuration".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::load(None, &HashMap::new()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url(), "sqlite://./data/cap.db");
        assert_eq!(c.cache_url, "memory");
        assert_eq!(c.cache_prefix, "cap:");
        assert!(c.local_agent);
    }

    #[test]
    fn env_overrides_file_and_errors_name_the_key() {
        let c = Config::from_toml("listen = \"127.0.0.1:9000\"\n[auth]\naccess_ttl_secs = 600\n").unwrap();
        assert_eq!(c.auth.access_ttl_secs, 600);
        let mut c2 = c.clone();
        c2.apply_env(&env(&[("CAP_LISTEN", "127.0.0.1:9100"), ("CAP_LOCAL_AGENT", "false")])).unwrap();
        assert_eq!(c2.listen.port(), 9100);
        assert!(!c2.local_agent);
        let e = c2.apply_env(&env(&[("CAP_LOCAL_AGENT", "maybe")])).unwrap_err().to_string();
        assert_eq!(e, "environment variable CAP_LOCAL_AGENT (config key `local_agent`): must be true or false");
        let e = format!("{:#}", Config::from_toml("lisen = \"x\"").unwrap_err());
        assert!(e.contains("unknown field `lisen`"), "{e}");
        let e = format!("{:#}", Config::from_toml("[auth]\naccess_ttl_secs = \"soon\"").unwrap_err());
        assert!(e.contains("at line 2") && e.contains("invalid type"), "{e}");
        let mut bad = Config::default();
        bad.auth.access_ttl_secs = 1;
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "config key `auth.access_ttl_secs`: must be between 60 and 86400"
        );
        bad = Config { cache_url: "memcached://x".into(), ..Config::default() };
        assert!(bad.validate().unwrap_err().to_string().starts_with("config key `cache_url`"));
    }

    #[test]
    fn the_database_pool_is_configurable_and_checked() {
        let c = Config::from_toml("[database]\nmax_connections = 32\nacquire_timeout_ms = 2500\n").unwrap();
        let pool = c.database.db_config();
        assert_eq!((pool.max_connections, pool.acquire_timeout.as_millis()), (32, 2500));
        let mut bad = c.clone();
        bad.database.max_connections = 0;
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "config key `database.max_connections`: must be between 1 and 1000"
        );
        bad = c;
        bad.database.acquire_timeout_ms = 5;
        assert!(bad.validate().unwrap_err().to_string().starts_with("config key `database.acquire_timeout_ms`"));
        let e = format!("{:#}", Config::from_toml("[database]\npool = 3").unwrap_err());
        assert!(e.contains("unknown field `pool`"), "{e}");
    }

    #[test]
    fn the_cache_prefix_comes_from_the_environment_and_is_checked() {
        let mut c = Config::default();
        c.apply_env(&env(&[("CAP_CACHE_URL", "redis://127.0.0.1:6379"), ("CAP_CACHE_PREFIX", "panel-eu:")])).unwrap();
        assert_eq!((c.cache_url.as_str(), c.cache_prefix.as_str()), ("redis://127.0.0.1:6379", "panel-eu:"));
        c.validate().unwrap();
        c.cache_prefix = String::new();
        c.validate().expect("an empty prefix is allowed");
        for bad in ["two words:", "tab\t:", &"x".repeat(65)] {
            c.cache_prefix = bad.to_string();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.starts_with("config key `cache_prefix`"), "{bad:?}: {e}");
        }
    }
}
