//! The reference panel binary as a library: configuration, wiring, serving and the admin CLI.
//!
//! `main.rs` only calls [`main_with_args`]; everything here can be called from a test.
//!
//! ```
//! let config = cap_panel::config::Config::from_toml("listen = \"127.0.0.1:9000\"").unwrap();
//! assert_eq!(config.listen.port(), 9000);
//! assert_eq!(config.cache_url, "memory");
//! ```

pub mod config;

use anyhow::{Context, Result, bail};
use capauth::{AuthConfig, CapAuthenticator, MemoryCache, PasswordConfig, RedisCache, RedisCacheConfig};
use capcore::backend::{Authenticator, Cache, Database};
use capcore::model::{AuditResult, NewUser, PageRequest, UserPatch};
use capcore::panel::{FirstAdmin, LocalNode, Panel, PanelConfig};
use clap::{Parser, Subcommand};
use config::Config;
use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "cap-panel", version, about = "The Ctrl-Alt-Play panel")]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "CAP_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the panel (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Work on databases directly (the panel should be stopped).
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy everything from one database to another (any two backends), then verify the copy by
    /// row counts and checksums. Both are migrated to this build's schema first.
    Copy {
        /// The database to copy from (`sqlite://…`, `postgres://…`, `mysql://…`, `mongodb://…`).
        #[arg(long)]
        from: String,
        /// The database to copy into; it must exist and be empty unless `--overwrite`.
        #[arg(long)]
        to: String,
        /// Delete whatever the target holds before copying.
        #[arg(long)]
        overwrite: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; prints a generated password when none is given.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: Option<String>,
        /// Role names (repeatable); default `user`.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// List users.
    List,
    /// Set a new password (printed when generated) and end the user's sessions.
    ResetPassword {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: Option<String>,
    },
}

/// Parses `args` and runs the command.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> Result<()> {
    let cli = Cli::parse_from(args);
    let env: HashMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("CAP_")).collect();
    let config = Config::load(cli.config.as_deref(), &env)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config))
}

/// Runs one command with a loaded configuration.
pub async fn run(command: Command, config: Config) -> Result<()> {
    match command {
        Command::Serve => serve(config, shutdown_signal()).await,
        Command::Migrate => {
            let wired = wire(&config).await?;
            let n = wired.db.migrate().await?;
            println!("applied {n} migration(s)");
            Ok(())
        }
        Command::User(cmd) => user_command(&config, cmd).await,
        Command::Db(DbCommand::Copy { from, to, overwrite }) => db_copy(&config, &from, &to, overwrite).await,
    }
}

/// `cap-panel db copy`: prints one line per table and the verdict.
async fn db_copy(config: &Config, from: &str, to: &str, overwrite: bool) -> Result<()> {
    if from == to {
        bail!("--from and --to name the same database");
    }
    let pool = config.database.db_config();
    let source = capdb::connect(from, &pool).await.context("--from")?;
    let target = capdb::connect(to, &pool).await.context("--to")?;
    let options = capdb::CopyOptions { overwrite, ..capdb::CopyOptions::default() };
    let report = capdb::copy(&*source, &*target, &options).await.context("copy")?;
    for table in &report.tables {
        println!("{:<16} {:>9} rows  sha256 {}", table.table.name(), table.rows, table.checksum);
    }
    let rows: u64 = report.tables.iter().map(|t| t.rows).sum();
    println!(
        "copied {rows} rows from {} to {}; counts and checksums match",
        source.backend_name(),
        target.backend_name()
    );
    Ok(())
}

/// The backends and the panel, built from configuration.
#[allow(missing_debug_implementations)]
pub struct Wired {
    pub panel: Panel,
    pub db: Arc<dyn Database>,
    pub auth: Arc<dyn Authenticator>,
}

/// Opens the database and cache, loads (or creates) the token secret, builds the panel.
pub async fn wire(config: &Config) -> Result<Wired> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let store = capdb::connect(&config.database_url(), &config.database.db_config())
        .await
        .context("config key `database_url`")?;
    let cache: Arc<dyn Cache> = if config.cache_url == "memory" {
        Arc::new(MemoryCache::default())
    } else {
        let redis_config = RedisCacheConfig { key_prefix: config.cache_prefix.clone(), ..RedisCacheConfig::default() };
        let redis = RedisCache::connect(&config.cache_url, redis_config)
            .await
            .context("config key `cache_url`: cannot use the Redis cache")?;
        tracing::info!(prefix = %config.cache_prefix, "using the Redis cache");
        Arc::new(redis)
    };
    // Sessions and server lists from memory, invalidated through the cache on every write.
    let db: Arc<dyn Database> =
        Arc::new(capdb::CachedDatabase::new(store, cache.clone(), capdb::CachedDatabaseConfig::default()));
    let a = &config.auth;
    let auth_config = AuthConfig {
        jwt_secret: load_or_create_secret(&config.data_dir.join("jwt-secret"))?,
        access_ttl: Duration::from_secs(a.access_ttl_secs),
        refresh_ttl: Duration::from_secs(a.refresh_ttl_days * 24 * 3600),
        password: PasswordConfig {
            memory_kib: a.argon2_memory_kib,
            iterations: a.argon2_iterations,
            parallelism: a.argon2_parallelism,
        },
        login_attempts_per_account: a.login_attempts_per_account,
        login_attempts_per_ip: a.login_attempts_per_ip,
        login_window: Duration::from_secs(a.login_window_secs),
        totp_issuer: "Ctrl-Alt-Play".into(),
    };
    let auth: Arc<dyn Authenticator> = Arc::new(CapAuthenticator::new(db.clone(), cache.clone(), auth_config)?);
    let g = &config.agents;
    let panel_config = PanelConfig {
        max_body_bytes: config.http.max_body_bytes,
        cookie_secure: config.http.cookie_secure,
        trust_proxy: config.http.trust_proxy,
        agent_heartbeat_interval: Duration::from_millis(g.heartbeat_interval_ms),
        agent_heartbeat_misses: g.heartbeat_misses,
        agent_timeout: Duration::from_millis(g.timeout_ms),
        stop_grace: Duration::from_secs(g.stop_grace_secs),
        console_replay_lines: g.console_replay_lines,
        ws_send_queue: g.ws_send_queue,
        ws_messages_per_second: g.ws_messages_per_second,
        ws_send_timeout: Duration::from_millis(g.ws_send_timeout_ms),
        backup_min_interval: Duration::from_secs(config.backups.min_interval_secs),
        backup_keep: (config.backups.keep > 0).then_some(config.backups.keep),
        backup_max_age: (config.backups.max_age_days > 0)
            .then(|| Duration::from_secs(config.backups.max_age_days * 86_400)),
        ..PanelConfig::default()
    };
    let panel = Panel::new(db.clone(), cache, auth.clone(), panel_config);
    Ok(Wired { panel, db, auth })
}

/// The HMAC secret for access tokens, kept in the data directory so sessions survive restarts.
fn load_or_create_secret(path: &Path) -> Result<Vec<u8>> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let secret = data_encoding::HEXLOWER
            .decode(text.trim().as_bytes())
            .with_context(|| format!("{} is not a hex secret", path.display()))?;
        if secret.len() < 32 {
            bail!("{} holds a secret shorter than 32 bytes", path.display());
        }
        return Ok(secret);
    }
    let mut secret = vec![0u8; 64];
    rand::fill(&mut secret[..]);
    write_private(path, &data_encoding::HEXLOWER.encode(&secret))?;
    Ok(secret)
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut f = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Bootstraps and serves until `shutdown` completes.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    let wired = wire(&config).await?;
    let report = wired
        .panel
        .bootstrap(FirstAdmin {
            username: "admin".into(),
            email: config.admin_email.clone(),
            password: config.admin_password.clone(),
        })
        .await
        .context("bootstrapping the panel")?;
    if let Some(email) = &report.admin_created {
        match &report.generated_password {
            Some(p) => {
                println!("created the first admin: {email} with password {p} (shown once; change it after login)")
            }
            None => println!("created the first admin: {email} with the configured password"),
        }
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("config key `listen`: cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, data_dir = %config.data_dir.display(), "cap-panel listening");
    println!("listening on http://{address}");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let local = if config.local_agent { Some(local_agent(&config, &wired.panel, address).await?) } else { None };
    let agent_task = local.map(|agent| {
        let mut stop = stop_rx.clone();
        tokio::spawn(
            async move { agent.run(async move { while stop.changed().await.is_ok() && !*stop.borrow() {} }).await },
        )
    });
    let served = axum::serve(
        capcore::panel::listener(listener),
        wired.panel.router().into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    })
    .await;
    if let Some(task) = agent_task {
        let _ = task.await;
    }
    served?;
    Ok(())
}

/// Starts the embedded agent as node `local`: the node is created on first start (with this
/// machine's memory and disk and ports 25565-25574 on 127.0.0.1) and gets a fresh token at
/// every start; the agent dials this panel over loopback like any other agent.
async fn local_agent(config: &Config, panel: &Panel, address: SocketAddr) -> Result<capagent::Agent> {
    let agent_dir = absolute(&config.data_dir)?.join("local-agent");
    std::fs::create_dir_all(&agent_dir).with_context(|| format!("cannot create {}", agent_dir.display()))?;
    let facts = capagent::agent::facts::node_facts(&agent_dir, (vec!["process".into()], Vec::new()), Vec::new());
    let (node, token) = panel
        .ensure_local_node(LocalNode {
            name: "local".into(),
            memory_mb: (facts.memory_bytes / (1024 * 1024)) as i64,
            disk_mb: (facts.disk_bytes / (1024 * 1024)) as i64,
            ports: (25565..25575).collect(),
        })
        .await
        .context("creating the local node")?;
    let host = if address.ip().is_unspecified() { "127.0.0.1".to_string() } else { address.ip().to_string() };
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    let mut agent_config = capagent::AgentConfig::new(format!("http://{host}:{}", address.port()), token, agent_dir);
    agent_config.runtime.run_as = cap_agent_run_as(config.run_as.as_deref())?;
    let agent = capagent::Agent::start(agent_config).await.context("starting the local agent")?;
    tracing::info!(%node, "local agent started");
    Ok(agent)
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir().context("cannot read the current directory")?.join(path))
}

/// The user games run as: the configured one, or `nobody` when the panel is root.
fn cap_agent_run_as(configured: Option<&str>) -> Result<Option<capagent::RunAs>> {
    capagent::RunAs::resolve(configured).map_err(|e| anyhow::anyhow!("config key `run_as`: {e}"))
}

/// SIGINT or SIGTERM. The handlers are installed when this is called (before the panel says it
/// listens), so a signal from then on is always a clean stop.
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("signal handler");
    let mut int = signal(SignalKind::interrupt()).expect("signal handler");
    async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}

async fn user_command(config: &Config, cmd: UserCommand) -> Result<()> {
    let wired = wire(config).await?;
    wired.db.migrate().await?;
    let state = wired.panel.state().clone();
    let now = state.now();
    match cmd {
        UserCommand::Create { username, email, password, roles } => {
            capcore::validate::username("username", &username)?;
            let email = capcore::validate::email("email", &email)?;
            let (password, generated) =
                password.map_or_else(|| (capcore::panel::generate_password(), true), |p| (p, false));
            capcore::validate::password("password", &password)?;
            wired.panel.bootstrap_roles().await?;
            let roles = if roles.is_empty() { vec!["user".to_string()] } else { roles };
            let mut role_ids = Vec::new();
            for name in &roles {
                let role =
                    wired.db.roles().find_by_name(name).await?.with_context(|| format!("no role named `{name}`"))?;
                role_ids.push(role.id);
            }
            let hash = wired.auth.hash_password(&password).await?;
            let user = wired.db.users().create(NewUser { username, email, password_hash: hash }, now).await?;
            for r in role_ids {
                wired.db.roles().assign(user.id, r).await?;
            }
            state
                .audit(
                    None,
                    "user.create",
                    &format!("user:{}", user.id),
                    None,
                    AuditResult::Success,
                    serde_json::json!({"via": "cli"}),
                )
                .await;
            println!("created user {} <{}> with roles {}", user.username, user.email, roles.join(", "));
            if generated {
                println!("password: {password} (shown once)");
            }
        }
        UserCommand::List => {
            let mut page = 1;
            println!("{:<36}  {:<24}  {:<32}  roles", "id", "username", "email");
            loop {
                let users = wired.db.users().list(None, PageRequest::new(page, PageRequest::MAX_PER_PAGE)).await?;
                for u in &users.items {
                    let roles: Vec<String> =
                        wired.db.roles().roles_of(u.id).await?.into_iter().map(|r| r.name).collect();
                    let flag = if u.disabled { " (disabled)" } else { "" };
                    println!("{:<36}  {:<24}  {:<32}  {}{flag}", u.id, u.username, u.email, roles.join(","));
                }
                if u64::from(page) * u64::from(PageRequest::MAX_PER_PAGE) >= users.total {
                    break;
                }
                page += 1;
            }
        }
        UserCommand::ResetPassword { email, password } => {
            let user =
                wired.db.users().find_by_email(&email).await?.with_context(|| format!("no user with email {email}"))?;
            let (password, generated) =
                password.map_or_else(|| (capcore::panel::generate_password(), true), |p| (p, false));
            capcore::validate::password("password", &password)?;
            let hash = wired.auth.hash_password(&password).await?;
            wired
                .db
                .users()
                .update(user.id, UserPatch { password_hash: Some(hash), ..Default::default() }, now)
                .await?;
            let ended = wired.auth.logout_everywhere(user.id, now).await?;
            state
                .audit(
                    None,
                    "user.password_reset",
                    &format!("user:{}", user.id),
                    None,
                    AuditResult::Success,
                    serde_json::json!({"via": "cli"}),
                )
                .await;
            println!("password of {} reset; {ended} session(s) ended", user.email);
            if generated {
                println!("password: {password} (shown once)");
            }
        }
    }
    Ok(())
}
