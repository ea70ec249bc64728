//! The reference agent binary as a library: configuration from flags and `CAP_*` variables,
//! then [`capagent::Agent`] connected to the panel until SIGINT or SIGTERM.
//!
//! ```
//! let cli = cap_agent::Cli::try_parse_from_iter(["cap-agent", "--panel-url", "http://panel:8080", "--node-token", "capn_x"]).unwrap();
//! let config = cli.agent_config().unwrap();
//! assert_eq!(config.panel_url, "http://panel:8080");
//! assert!(config.runtime.servers_dir.ends_with("servers"));
//! ```

use anyhow::{Context, Result, bail};
use capagent::{Agent, AgentConfig, RunAs};
use clap::Parser;
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "cap-agent", version, about = "The Ctrl-Alt-Play agent")]
pub struct Cli {
    /// The panel's URL, e.g. `http://panel.example:8080`.
    #[arg(long, env = "CAP_PANEL_URL")]
    pub panel_url: String,
    /// The node's token, shown once when the node was created in the panel.
    #[arg(long, env = "CAP_NODE_TOKEN", hide_env_values = true)]
    pub node_token: String,
    /// Where the agent keeps its state and the servers' directories.
    #[arg(long, env = "CAP_DATA_DIR", default_value = "./agent-data")]
    pub data_dir: PathBuf,
    /// Run games as this user (name or `uid:gid`); when the agent runs as root the default is
    /// `nobody`, since some games refuse to run as root and none should.
    #[arg(long, env = "CAP_RUN_AS")]
    pub run_as: Option<String>,
    /// Console lines a server may print per second before the rest of that second is dropped
    /// (with one marker line).
    #[arg(long, env = "CAP_CONSOLE_LINES_PER_SECOND", default_value_t = 2000)]
    pub console_lines_per_second: u32,
    /// Seconds a running server may stay over its disk limit before it is stopped.
    #[arg(long, env = "CAP_DISK_GRACE_SECS", default_value_t = 60)]
    pub disk_grace_secs: u64,
    /// Hold disk limits with the filesystem's project quotas where the servers' directories
    /// are on XFS or ext4 mounted with `prjquota` and `xfs_quota` is installed.
    #[arg(long, env = "CAP_DISK_PROJECT_QUOTAS", value_parser = clap::builder::BoolishValueParser::new(), default_value = "true")]
    pub disk_project_quotas: bool,
    /// How servers run: `process` (host processes) or `docker` (one container per server).
    #[arg(long, env = "CAP_RUNTIME", value_enum, default_value_t = RuntimeChoice::Process)]
    pub runtime: RuntimeChoice,
    /// The Docker engine (`unix:///var/run/docker.sock`, `tcp://host:2375`); default `DOCKER_HOST`,
    /// else the standard socket.
    #[arg(long, env = "CAP_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// The containers' network: the name of a Docker network (allocations published into the
    /// container, TCP and UDP; `cap`, the default, is made if missing), `host` (games bind their
    /// allocation directly), or `none`.
    #[arg(long, env = "CAP_DOCKER_NETWORK", default_value = "cap")]
    pub docker_network: String,
    /// Give game containers a writable root filesystem (for images that write outside their
    /// directory and `/tmp`).
    #[arg(long, env = "CAP_DOCKER_WRITABLE_ROOT", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub docker_writable_root: bool,
    /// Keep finished backups in this S3-compatible store (`https://s3.eu-west-1.amazonaws.com`,
    /// `http://minio.lan:9000`) instead of on the node.
    #[arg(long, env = "CAP_BACKUP_S3_ENDPOINT")]
    pub backup_s3_endpoint: Option<String>,
    #[arg(long, env = "CAP_BACKUP_S3_REGION", default_value = "us-east-1")]
    pub backup_s3_region: String,
    #[arg(long, env = "CAP_BACKUP_S3_BUCKET")]
    pub backup_s3_bucket: Option<String>,
    #[arg(long, env = "CAP_BACKUP_S3_ACCESS_KEY", hide_env_values = true)]
    pub backup_s3_access_key: Option<String>,
    /// Prefer the environment variable: a flag's value is visible to other users in `ps`.
    #[arg(long, env = "CAP_BACKUP_S3_SECRET_KEY", hide_env_values = true)]
    pub backup_s3_secret_key: Option<String>,
    /// Put before every object key (e.g. `node-1/`).
    #[arg(long, env = "CAP_BACKUP_S3_PREFIX", default_value = "")]
    pub backup_s3_prefix: String,
}

/// The runtime an agent runs servers on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeChoice {
    Process,
    Docker,
}

impl Cli {
    /// Parses arguments without exiting on error (for tests and embedders).
    pub fn try_parse_from_iter<I, T>(args: I) -> Result<Self>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Ok(Self::try_parse_from(args)?)
    }

    /// The agent's configuration.
    pub fn agent_config(&self) -> Result<AgentConfig> {
        if self.node_token.trim().is_empty() {
            bail!("CAP_NODE_TOKEN is empty: copy the token the panel showed when the node was created");
        }
        let data_dir = absolute(&self.data_dir)?;
        let mut config = AgentConfig::new(self.panel_url.clone(), self.node_token.trim(), data_dir);
        config.runtime.run_as =
            RunAs::resolve(self.run_as.as_deref()).map_err(|e| anyhow::anyhow!("CAP_RUN_AS: {e}"))?;
        if self.console_lines_per_second == 0 {
            bail!("CAP_CONSOLE_LINES_PER_SECOND must be at least 1");
        }
        config.runtime.console.lines_per_interval = self.console_lines_per_second;
        config.runtime.console.interval = std::time::Duration::from_secs(1);
        if self.disk_grace_secs > 86_400 {
            bail!("CAP_DISK_GRACE_SECS must be at most 86400");
        }
        config.disk_grace = std::time::Duration::from_secs(self.disk_grace_secs);
        config.project_quotas = self.disk_project_quotas;
        if self.docker_network.trim().is_empty() {
            bail!("CAP_DOCKER_NETWORK must not be empty (a network's name, `host`, or `none`)");
        }
        config.backup_s3 = self.backup_s3()?;
        config.docker = (self.runtime == RuntimeChoice::Docker).then(|| capagent::DockerOptions {
            host: self.docker_host.clone().filter(|h| !h.trim().is_empty()),
            network_mode: self.docker_network.trim().to_string(),
            read_only_root: !self.docker_writable_root,
        });
        Ok(config)
    }
}

impl Cli {
    /// The S3 settings, all or none: an endpoint needs a bucket and both keys.
    fn backup_s3(&self) -> Result<Option<capagent::backups::S3Config>> {
        let Some(endpoint) = self.backup_s3_endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty()) else {
            return Ok(None);
        };
        let need = |value: &Option<String>, name: &str| -> Result<String> {
            match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                Some(v) => Ok(v.to_string()),
                None => bail!("CAP_BACKUP_S3_ENDPOINT is set, so {name} is needed too"),
            }
        };
        let config = capagent::backups::S3Config {
            endpoint: endpoint.to_string(),
            region: self.backup_s3_region.trim().to_string(),
            bucket: need(&self.backup_s3_bucket, "CAP_BACKUP_S3_BUCKET")?,
            access_key: need(&self.backup_s3_access_key, "CAP_BACKUP_S3_ACCESS_KEY")?,
            secret_key: need(&self.backup_s3_secret_key, "CAP_BACKUP_S3_SECRET_KEY")?,
            prefix: self.backup_s3_prefix.trim().to_string(),
        };
        capagent::s3::Bucket::new(config.clone()).map_err(|e| anyhow::anyhow!("CAP_BACKUP_S3_ENDPOINT: {e}"))?;
        Ok(Some(config))
    }
}

fn absolute(path: &std::path::Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir().context("cannot read the current directory")?.join(path))
}

/// Parses `args` and runs the agent until SIGINT or SIGTERM.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> Result<()> {
    let cli = Cli::parse_from(args);
    let config = cli.agent_config()?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let agent = Agent::start(config).await?;
        // The handlers are installed before the agent says it started, so a SIGTERM from then
        // on is always a clean stop.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        println!("cap-agent started; connecting to {}", cli.panel_url);
        agent
            .run(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            })
            .await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docker_runtime_is_chosen_with_its_engine_and_network() {
        let base = ["cap-agent", "--panel-url", "http://p", "--node-token", "capn_x"];
        let process = Cli::try_parse_from_iter(base).unwrap().agent_config().unwrap();
        assert_eq!(process.docker, None, "host processes by default");
        let args = base.into_iter().chain(["--runtime", "docker", "--docker-host", "unix:///run/d.sock"]);
        let docker = Cli::try_parse_from_iter(args).unwrap().agent_config().unwrap().docker.unwrap();
        assert_eq!(docker.host.as_deref(), Some("unix:///run/d.sock"));
        assert_eq!((docker.network_mode.as_str(), docker.read_only_root), ("cap", true));
        let args = base.into_iter().chain(["--runtime", "docker", "--docker-writable-root"]);
        assert!(!Cli::try_parse_from_iter(args).unwrap().agent_config().unwrap().docker.unwrap().read_only_root);
        let err = Cli::try_parse_from_iter(base.into_iter().chain(["--runtime", "vm"])).unwrap_err();
        assert!(err.to_string().contains("vm"), "{err}");
        let args = base.into_iter().chain(["--runtime", "docker", "--docker-network", " "]);
        let err = Cli::try_parse_from_iter(args).unwrap().agent_config().unwrap_err();
        assert!(err.to_string().contains("CAP_DOCKER_NETWORK"), "{err}");
    }

    #[test]
    fn s3_settings_come_all_together_and_are_checked() {
        let base = ["cap-agent", "--panel-url", "http://p", "--node-token", "capn_x"];
        assert_eq!(Cli::try_parse_from_iter(base).unwrap().agent_config().unwrap().backup_s3, None);
        let full = ["--backup-s3-endpoint", "http://127.0.0.1:9000", "--backup-s3-bucket", "b"];
        let keys = ["--backup-s3-access-key", "ak", "--backup-s3-secret-key", "sk"];
        let args = base.into_iter().chain(full).chain(keys);
        let s3 = Cli::try_parse_from_iter(args).unwrap().agent_config().unwrap().backup_s3.unwrap();
        assert_eq!((s3.bucket.as_str(), s3.region.as_str(), s3.prefix.as_str()), ("b", "us-east-1", ""));
        let err = Cli::try_parse_from_iter(base.into_iter().chain(full)).unwrap().agent_config().unwrap_err();
        assert!(err.to_string().contains("CAP_BACKUP_S3_ACCESS_KEY"), "{err}");
        let bad = ["--backup-s3-endpoint", "s3.example", "--backup-s3-bucket", "b"];
        let err =
            Cli::try_parse_from_iter(base.into_iter().chain(bad).chain(keys)).unwrap().agent_config().unwrap_err();
        assert!(err.to_string().contains("http:// or https://"), "{err}");
    }

    #[test]
    fn an_empty_token_is_refused_with_a_hint() {
        let cli = Cli::try_parse_from_iter(["cap-agent", "--panel-url", "http://p", "--node-token", " "]).unwrap();
        assert!(cli.agent_config().unwrap_err().to_string().contains("CAP_NODE_TOKEN is empty"));
    }
}
