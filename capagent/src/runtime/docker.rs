//! `DockerRuntime`: one container per game server, through the engine's API (bollard).
//!
//! - **Container**: named `<prefix><server id>`, made fresh from the template's image at every
//!   start (so a changed spec always applies) and kept after the exit until the next start or
//!   the removal. The rendered argv is its entrypoint (the image's own entrypoint is not used;
//!   nothing is parsed by a shell), the spec's environment its whole `Env`, the server's
//!   directory bound at `/home/container` its only writable mount (plus a small `/tmp` tmpfs),
//!   the root filesystem read-only unless configured otherwise.
//! - **Confinement**: `no-new-privileges`, every capability dropped, the configured user (never
//!   root), Docker's init as PID 1 so signals reach the game and orphans are reaped, memory, swap,
//!   CPU, pids and (where the kernel has it) block IO weight from the spec's limits.
//! - **Network**: a bridge network of the runtime's own by default ([`DEFAULT_NETWORK`], made
//!   at connection if missing, containers kept from talking to each other): every allocation is
//!   published at the same port number inside, TCP and UDP, and `SERVER_IP` is `0.0.0.0`. With
//!   host networking (`network_mode` `host`) the game binds its allocation's `SERVER_IP` and
//!   `SERVER_PORT` itself. Either way the agent checks the port is free before a start.
//! - **Console**: attached before the start, so no line is missed; stdout and stderr are cut
//!   into lines into the same [`Console`] the process runtime uses; commands go to its stdin.
//! - **Exit**: the engine's wait gives the code; an exit code of 129 to 192 is reported as the
//!   signal `code - 128` (what the init reports for a game ended by a signal). An out-of-memory
//!   kill is said on the console.
//! - **Agent restart**: containers keep running; [`DockerRuntime::adopt`] attaches again (and
//!   removes an install container left from before). Lines printed while no agent was attached
//!   stay in the engine's log (`docker logs`), bounded. An engine that goes away while a game
//!   runs is asked again until it answers: its absence is not taken for the game's exit.
//! - **Install**: a throwaway container of the install image, as root with a small set of
//!   capabilities (package managers need them), the server's directory at `/mnt/server`, the
//!   script read-only at `/mnt/install`, the server's memory, CPU and pids limits, removed however
//!   the install ends (a cancelled one too). Afterwards a short container of the same image
//!   (root with only `CHOWN` and `DAC_READ_SEARCH`, no network) runs `chown -R -h` to give the
//!   directory to the game's user, which clears setuid and setgid bits; an agent that is root
//!   does it itself if the image has no `chown`.

use super::process::RunAs;
use super::{GameRuntime, Install, command_line, exit_line};
use crate::console::{Console, ConsoleConfig, LineCutter, Subscription};
use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, CreateImageOptions, KillContainerOptions, RemoveContainerOptions,
    StatsOptions, WaitContainerOptions,
};
use capcore::backend::{Runtime, RuntimeSpec, RuntimeStats, RuntimeStatus};
use capcore::ids::ServerId;
use capcore::model::Limits;
use capcore::template::{ReadyPattern, StopAction};
use capcore::{Error, Result};
use futures::StreamExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// Where the server's directory is inside its container (the convention of Pterodactyl's images).
pub const CONTAINER_DIR: &str = "/home/container";
/// Where the server's directory is inside its install container.
const INSTALL_DIR: &str = "/mnt/server";
/// The `PATH` Docker gives a container whose image sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The label that marks a container as a server's, with the server's id.
pub const SERVER_LABEL: &str = "io.ctrl-alt-play.server";

/// The bridge network the runtime makes for its containers, and uses unless told otherwise:
/// games reach the internet, not the node's loopback services, and not each other's containers
/// (where the engine manages the firewall).
pub const DEFAULT_NETWORK: &str = "cap";

/// Settings of the Docker runtime.
#[derive(Clone, Debug)]
pub struct DockerRuntimeConfig {
    /// The engine's address (`unix:///run/docker.sock`, `tcp://host:2375`); `None`: `DOCKER_HOST`,
    /// else the default socket.
    pub host: Option<String>,
    /// Each server's directory is `<servers_dir>/<server id>` on the host.
    pub servers_dir: PathBuf,
    /// Install scripts, `<state_dir>/<server id>/install.sh`.
    pub state_dir: PathBuf,
    pub console: ConsoleConfig,
    /// The user games run as inside their containers (default: the agent's own user, or `nobody`
    /// when the agent is root). Never root.
    pub run_as: Option<RunAs>,
    /// A network's name (default [`DEFAULT_NETWORK`], made if missing; allocations are
    /// published into the container), `host` (games bind their allocation directly), or `none`.
    pub network_mode: String,
    /// A read-only root filesystem for games (default); off for images that write outside
    /// their directory and `/tmp`.
    pub read_only_root: bool,
    /// Size of the `/tmp` tmpfs of a game's container.
    pub tmp_mb: u64,
    /// After a kill, how long to wait for the exit before reporting an error.
    pub kill_wait: Duration,
    /// How long pulling a missing image may take before the start fails.
    pub pull_timeout: Duration,
    /// Container names are `<prefix><server id>`.
    pub container_prefix: String,
}

impl DockerRuntimeConfig {
    pub fn new(servers_dir: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            host: None,
            servers_dir: servers_dir.into(),
            state_dir: state_dir.into(),
            console: ConsoleConfig::default(),
            run_as: None,
            network_mode: DEFAULT_NETWORK.into(),
            read_only_root: true,
            tmp_mb: 64,
            kill_wait: Duration::from_secs(10),
            pull_timeout: Duration::from_secs(600),
            container_prefix: "cap-".into(),
        }
    }
}

/// How a run ended: `(code, signal)`.
type Exit = Option<(Option<i32>, Option<i32>)>;
type Stdin = Arc<tokio::sync::Mutex<Pin<Box<dyn AsyncWrite + Send>>>>;

struct Run {
    pid: u32,
    started: Instant,
    stdin: Stdin,
    exit: watch::Receiver<Exit>,
    ready: watch::Receiver<bool>,
    follower: AbortHandle,
}

impl Run {
    fn running(&self) -> bool {
        self.exit.borrow().is_none()
    }
}

struct Managed {
    spec: RuntimeSpec,
    dir: PathBuf,
    console: Arc<Console>,
    run: Option<Run>,
    busy: Option<&'static str>,
    /// The previous CPU sample: (container CPU ns, system CPU ns).
    last_cpu: Option<(u64, u64)>,
}

/// Runs game servers in Docker containers.
pub struct DockerRuntime {
    config: DockerRuntimeConfig,
    docker: Docker,
    user: RunAs,
    limits: Vec<String>,
    io_weight: bool,
    servers: Mutex<HashMap<ServerId, Managed>>,
    usage: Arc<crate::files::DiskUsage>,
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime")
            .field("config", &self.config)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Dropping the runtime stops its tasks, never a container.
impl Drop for DockerRuntime {
    fn drop(&mut self) {
        let servers = self.servers.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        for managed in servers.values() {
            if let Some(run) = &managed.run {
                run.follower.abort();
            }
        }
    }
}

fn not_found() -> Error {
    Error::NotFound { what: "server" }
}

fn not_running() -> Error {
    Error::conflict("the server is not running")
}

fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn engine(what: &str) -> impl FnOnce(DockerError) -> Error + '_ {
    move |e| Error::unavailable(format!("the Docker engine failed to {what}: {}", brief(&e)), e)
}

/// The engine's own message, without bollard's wrapping.
fn brief(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.trim().to_string(),
        other => other.to_string(),
    }
}

/// `(code, signal)` from a container's exit code: 129 to 192 is a signal, as init reports it.
fn exit_of(code: i64) -> (Option<i32>, Option<i32>) {
    match code {
        129..=192 => (None, Some((code - 128) as i32)),
        c => (Some(c as i32), None),
    }
}

impl DockerRuntime {
    /// Connects to the engine, agrees on an API version and reads what it can limit. The error
    /// says why the engine cannot be used (an agent reports it at registration).
    pub async fn connect(config: DockerRuntimeConfig) -> std::result::Result<Self, String> {
        let where_ = config.host.clone().or_else(|| std::env::var("DOCKER_HOST").ok());
        let at = where_.clone().unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        let docker = match &where_ {
            Some(host) => Docker::connect_with_host(host),
            None => Docker::connect_with_defaults(),
        }
        .map_err(|e| format!("the Docker engine at {at} is unreachable: {e}"))?;
        let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
            .await
            .map_err(|_| format!("the Docker engine at {at} did not answer within 10 s"))?
            .map_err(|e| format!("the Docker engine at {at} is unreachable: {}", brief(&e)))?;
        let info =
            docker.info().await.map_err(|e| format!("the Docker engine at {at} failed to describe itself: {e}"))?;
        let user = match config.run_as {
            Some(user) => user,
            None if nix::unistd::geteuid().is_root() => RunAs::resolve(Some("nobody"))?.ok_or("no user `nobody`")?,
            None => RunAs { uid: nix::unistd::geteuid().as_raw(), gid: nix::unistd::getegid().as_raw() },
        };
        if user.uid == 0 {
            return Err("refusing to run game containers as root".into());
        }
        if publishes(&config.network_mode) {
            ensure_network(&docker, &config.network_mode).await?;
        }
        let io_weight = blkio_weight_supported();
        let has =
            |flag: Option<bool>, what: &str| format!("{what}:{}", if flag == Some(true) { "docker" } else { "none" });
        let mut limits = vec![
            has(info.memory_limit, "memory"),
            has(info.swap_limit, "swap"),
            has(info.cpu_cfs_quota, "cpu"),
            has(info.pids_limit, "pids"),
            has(Some(io_weight), "io"),
        ];
        let usage = Arc::new(crate::files::DiskUsage::new());
        limits.push(format!("disk:{}", usage.mode()));
        Ok(Self { config, docker, user, limits, io_weight, servers: Mutex::new(HashMap::new()), usage })
    }

    fn with<T>(&self, id: ServerId, f: impl FnOnce(&mut Managed) -> Result<T>) -> Result<T> {
        let mut servers = self.servers.lock().expect("servers lock");
        f(servers.get_mut(&id).ok_or_else(not_found)?)
    }

    fn publishes(&self) -> bool {
        publishes(&self.config.network_mode)
    }

    fn name_of(&self, id: ServerId) -> String {
        format!("{}{id}", self.config.container_prefix)
    }

    fn install_name(&self, id: ServerId) -> String {
        format!("{}install-{id}", self.config.container_prefix)
    }

    fn chown_name(&self, id: ServerId) -> String {
        format!("{}chown-{id}", self.config.container_prefix)
    }

    /// The runtime's network, made again if it went (`docker network prune` removes it while no
    /// container uses it).
    async fn network_ready(&self) -> Result<()> {
        if !self.publishes() {
            return Ok(());
        }
        ensure_network(&self.docker, &self.config.network_mode)
            .await
            .map_err(|why| Error::unavailable(why, std::io::Error::other("docker network")))
    }

    /// Marks the server busy for one operation; `Conflict` while it runs or another is under way.
    fn claim(&self, id: ServerId, what: &'static str) -> Result<(Busy<'_>, RuntimeSpec, PathBuf, Arc<Console>)> {
        self.with(id, |m| {
            if let Some(busy) = m.busy {
                return Err(Error::conflict(format!("the server is {busy}")));
            }
            if m.run.as_ref().is_some_and(Run::running) {
                return Err(Error::conflict("the server is already running"));
            }
            m.busy = Some(what);
            Ok((Busy { runtime: self, id }, m.spec.clone(), m.dir.clone(), m.console.clone()))
        })
    }

    /// The image, pulled if it is missing (bounded by the pull timeout).
    async fn ensure_image(&self, image: &str, console: &Console) -> Result<()> {
        match self.docker.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(engine("look up the image")(e)),
        }
        console.system(format!("[cap] pulling image {image}"));
        let options = CreateImageOptions {
            from_image: Some(image.to_string()),
            // Without a tag the engine would pull every tag of the repository.
            tag: (!has_tag_or_digest(image)).then(|| "latest".to_string()),
            ..Default::default()
        };
        let pull = async {
            let mut progress = self.docker.create_image(Some(options), None, None);
            while let Some(step) = progress.next().await {
                step?;
            }
            Ok::<(), DockerError>(())
        };
        let missing = |why: String| {
            Error::invalid("image", format!("image `{image}` is not on this node and cannot be pulled: {why}"))
        };
        match tokio::time::timeout(self.config.pull_timeout, pull).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(missing(brief(&e))),
            Err(_) => Err(missing(format!("the pull took longer than {:?}", self.config.pull_timeout))),
        }
    }

    /// Whether `program` is in the created (not started) container: a path as it is (relative
    /// to the server's directory), a bare name on `PATH` (the spec's, else the image's, else the
    /// usual one). Docker would start the container anyway and its init would fail in it, so
    /// this turns a wrong program into an error of the start, as with host processes. An engine
    /// that cannot tell is trusted.
    async fn has_program(
        &self,
        container: &str,
        workdir: &str,
        program: &str,
        spec_path: Option<&str>,
        image: &str,
    ) -> bool {
        let candidates: Vec<String> = if program.contains('/') {
            vec![if program.starts_with('/') { program.to_string() } else { format!("{workdir}/{program}") }]
        } else {
            let image_path = match spec_path {
                Some(_) => None,
                None => self
                    .docker
                    .inspect_image(image)
                    .await
                    .ok()
                    .and_then(|i| i.config)
                    .and_then(|c| c.env)
                    .and_then(|env| env.iter().find_map(|e| e.strip_prefix("PATH=").map(str::to_string))),
            };
            let path = spec_path.map(str::to_string).or(image_path).unwrap_or_else(|| DEFAULT_PATH.to_string());
            path.split(':')
                .filter(|d| !d.is_empty())
                .map(|d| format!("{}/{program}", d.trim_end_matches('/')))
                .collect()
        };
        for candidate in candidates {
            let options = bollard::query_parameters::ContainerArchiveInfoOptions { path: candidate };
            match self.docker.get_container_archive_info(container, Some(options)).await {
                Ok(_) => return true,
                Err(e) if status_of(&e) == Some(404) => {}
                Err(e) => {
                    tracing::debug!("cannot look for `{program}` in container {container}: {e}");
                    return true;
                }
            }
        }
        false
    }

    /// Removes the server's container, if there is one.
    async fn remove_container(&self, name: &str) -> Result<()> {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(engine("remove the container")(e)),
        }
    }

    /// Gives the server's files to the game's user after an install, from a short container of
    /// the install image (root with only the capabilities to read and change owners, no
    /// network), so an agent that is not root can as well. Changing a file's owner clears its
    /// setuid and setgid bits.
    async fn hand_over(
        &self,
        id: ServerId,
        image: &str,
        dir: &Path,
        limits: &Limits,
    ) -> std::result::Result<(), String> {
        let name = self.chown_name(id);
        self.remove_container(&name).await.map_err(|e| e.to_string())?;
        let mut host = self.host_config(limits, vec![bind(dir, INSTALL_DIR, false)]);
        host.network_mode = Some("none".into());
        host.cap_drop = Some(vec!["ALL".into()]);
        host.cap_add = Some(["CHOWN", "DAC_READ_SEARCH"].map(String::from).to_vec());
        let owner = format!("{}:{}", self.user.uid, self.user.gid);
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(["chown", "-R", "-h", &owner, INSTALL_DIR].map(String::from).to_vec()),
            cmd: Some(Vec::new()),
            user: Some("0:0".into()),
            labels: Some(HashMap::from([(SERVER_LABEL.to_string(), id.to_string())])),
            host_config: Some(host),
            ..Default::default()
        };
        let options = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
        self.docker.create_container(Some(options), body).await.map_err(|e| brief(&e))?;
        let container = Throwaway::new(&self.docker, &name);
        if !self.has_program(&name, INSTALL_DIR, "chown", None, image).await {
            let _ = container.remove(self).await;
            return Err(format!("image `{image}` has no `chown`"));
        }
        if let Err(e) = self.docker.start_container(&name, None).await {
            let _ = container.remove(self).await;
            return Err(brief(&e));
        }
        let (code, signal, _) = wait(&self.docker, &name, Some(20)).await;
        let _ = container.remove(self).await;
        match (code, signal) {
            (Some(0), _) => Ok(()),
            (Some(code), _) => Err(format!("chown exited with code {code}")),
            (None, Some(signal)) => Err(format!("chown ended by signal {signal}")),
            (None, None) => Err("chown's end is unknown".into()),
        }
    }

    fn host_config(&self, limits: &Limits, mounts: Vec<Mount>) -> HostConfig {
        let mib = |m: i64| m.saturating_mul(1024 * 1024);
        let memory = mib(limits.memory_mb);
        HostConfig {
            mounts: Some(mounts),
            memory: Some(memory),
            // Memory plus swap; -1 is unlimited swap.
            memory_swap: Some(if limits.swap_mb < 0 { -1 } else { memory.saturating_add(mib(limits.swap_mb)) }),
            nano_cpus: (limits.cpu_percent > 0).then(|| limits.cpu_percent.saturating_mul(10_000_000)),
            pids_limit: (limits.pids > 0).then_some(limits.pids),
            blkio_weight: self.io_weight.then(|| limits.io_weight.clamp(10, 1000) as u16),
            init: Some(true),
            security_opt: Some(vec!["no-new-privileges".into()]),
            network_mode: Some(self.config.network_mode.clone()),
            // The engine's copy of the console, for `docker logs`: bounded.
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([("max-size".into(), "5m".into()), ("max-file".into(), "1".into())])),
            }),
            ..Default::default()
        }
    }

    fn game_container(&self, spec: &RuntimeSpec, image: &str, dir: &Path) -> ContainerCreateBody {
        let mut host = self.host_config(&spec.limits, vec![bind(dir, CONTAINER_DIR, false)]);
        host.readonly_rootfs = Some(self.config.read_only_root);
        host.cap_drop = Some(vec!["ALL".into()]);
        host.tmpfs =
            Some(HashMap::from([("/tmp".into(), format!("rw,nosuid,nodev,size={}m,mode=1777", self.config.tmp_mb))]));
        let mut environment = spec.environment.clone();
        let mut exposed = None;
        // A spec from a panel that sends no allocations: its primary one from the environment.
        let from_environment = match (environment.get("SERVER_IP"), environment.get("SERVER_PORT")) {
            (Some(ip), Some(port)) => port
                .parse()
                .ok()
                .map(|port| capcore::protocol::v1::PortBinding { ip: ip.clone(), port })
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        let ports = if spec.ports.is_empty() { &from_environment } else { &spec.ports };
        if self.publishes() && !ports.is_empty() {
            // Each allocation published at the same port number inside, TCP and UDP; the game
            // binds every address of its own network (`SERVER_IP` says so).
            let mut bindings = bollard::models::PortMap::new();
            for p in ports {
                for protocol in ["tcp", "udp"] {
                    let binding = bollard::models::PortBinding {
                        host_ip: Some(p.ip.clone()),
                        host_port: Some(p.port.to_string()),
                    };
                    bindings
                        .entry(format!("{}/{protocol}", p.port))
                        .or_insert_with(|| Some(Vec::new()))
                        .get_or_insert_default()
                        .push(binding);
                }
            }
            let mut keys: Vec<String> = bindings.keys().cloned().collect();
            keys.sort();
            exposed = Some(keys);
            host.port_bindings = Some(bindings);
            environment.insert("SERVER_IP".into(), "0.0.0.0".into());
        }
        ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(spec.argv.clone()),
            cmd: Some(Vec::new()),
            env: Some(environment.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            exposed_ports: exposed,
            working_dir: Some(CONTAINER_DIR.into()),
            user: Some(format!("{}:{}", self.user.uid, self.user.gid)),
            labels: Some(HashMap::from([(SERVER_LABEL.to_string(), spec.server_id.to_string())])),
            open_stdin: Some(true),
            stdin_once: Some(false),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            host_config: Some(host),
            ..Default::default()
        }
    }

    /// Attaches to the container's stdin and output, and follows it until it ends: lines into the
    /// console, the ready patterns, the exit.
    async fn attach(
        &self,
        name: &str,
        console: Arc<Console>,
        patterns: Vec<ReadyPattern>,
    ) -> Result<(Stdin, Follower)> {
        let options =
            AttachContainerOptions { stream: true, stdin: true, stdout: true, stderr: true, ..Default::default() };
        let attached =
            self.docker.attach_container(name, Some(options)).await.map_err(engine("attach to the container"))?;
        let (ready_tx, ready_rx) = watch::channel(patterns.is_empty());
        let (exit_tx, exit_rx) = watch::channel(None);
        let follower = Follower {
            docker: self.docker.clone(),
            name: name.to_string(),
            output: attached.output,
            console,
            patterns,
            ready: ready_tx,
            exit: exit_tx,
            max_line: self.config.console.max_line_bytes,
            ready_rx,
            exit_rx,
            announce_exit: true,
        };
        Ok((Arc::new(tokio::sync::Mutex::new(attached.input)), follower))
    }

    /// The container's main process and whether it runs; `None` if there is no such container.
    async fn pid_of(&self, name: &str) -> Result<Option<(u32, bool)>> {
        let inspected = match self.docker.inspect_container(name, None).await {
            Ok(inspected) => inspected,
            Err(e) if status_of(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(engine("inspect the container")(e)),
        };
        let state = inspected.state.unwrap_or_default();
        Ok(Some((state.pid.unwrap_or(0).max(0) as u32, state.running == Some(true))))
    }

    fn begin_run(&self, id: ServerId, pid: u32, started: Instant, stdin: Stdin, follower: Follower) -> Result<()> {
        let (ready, exit) = (follower.ready_rx.clone(), follower.exit_rx.clone());
        let task = tokio::spawn(follower.run()).abort_handle();
        self.with(id, |m| {
            m.run = Some(Run { pid, started, stdin, exit, ready, follower: task });
            m.last_cpu = None;
            Ok(())
        })
    }

    async fn wait_exit_within(&self, id: ServerId, limit: Duration) -> Result<Option<RuntimeStatus>> {
        match tokio::time::timeout(limit, GameRuntime::wait_exit(self, id)).await {
            Ok(status) => status.map(Some),
            Err(_) => Ok(None),
        }
    }

    async fn signal(&self, id: ServerId, signal: &str) -> Result<()> {
        if !self.with(id, |m| Ok(m.run.as_ref().is_some_and(Run::running)))? {
            return Err(not_running());
        }
        let options = KillContainerOptions { signal: signal.to_string() };
        match self.docker.kill_container(&self.name_of(id), Some(options)).await {
            Ok(()) => Ok(()),
            // Not running any more (409) or gone (404): the follower reports the exit.
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(engine("signal the container")(e)),
        }
    }
}

/// Whether containers in `mode` get a network of their own, where allocations are published (not
/// host networking, no network, or another container's).
fn publishes(mode: &str) -> bool {
    !(mode == "host" || mode == "none" || mode.starts_with("container:"))
}

/// Checks that the network `name` exists, making it if it is [`DEFAULT_NETWORK`]: a bridge
/// whose containers cannot talk to each other.
async fn ensure_network(docker: &Docker, name: &str) -> std::result::Result<(), String> {
    // The engine takes two networks of one name made at once: runtimes of this process make it
    // one at a time, and after runtimes elsewhere raced the duplicates are removed (see below).
    static MAKING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _making = MAKING.lock().await;
    match docker.inspect_network(name, None::<bollard::query_parameters::InspectNetworkOptions>).await {
        Ok(_) => return Ok(()),
        Err(e) if status_of(&e) == Some(404) => {}
        Err(e) if name == DEFAULT_NETWORK && brief(&e).contains("ambiguous") => {
            return keep_one_network(docker, name).await;
        }
        Err(e) => return Err(format!("cannot look up the Docker network `{name}`: {}", brief(&e))),
    }
    if name != DEFAULT_NETWORK {
        return Err(format!("the Docker network `{name}` does not exist"));
    }
    let request = bollard::models::NetworkCreateRequest {
        name: name.to_string(),
        driver: Some("bridge".into()),
        options: Some(HashMap::from([("com.docker.network.bridge.enable_icc".into(), "false".into())])),
        labels: Some(HashMap::from([(SERVER_LABEL.to_string(), "network".to_string())])),
        ..Default::default()
    };
    match docker.create_network(request).await {
        Ok(_) => keep_one_network(docker, name).await,
        Err(e) if status_of(&e) == Some(409) => Ok(()),
        Err(e) => Err(format!("cannot make the Docker network `{name}`: {}", brief(&e))),
    }
}

/// Of several networks called `name` that runtimes made at once, keeps the one with the least id
/// and removes the others it can (one a container already uses stays, and the engine then calls
/// the name ambiguous until it is removed by hand).
async fn keep_one_network(docker: &Docker, name: &str) -> std::result::Result<(), String> {
    let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
    let options = bollard::query_parameters::ListNetworksOptions { filters: Some(filters) };
    let listed =
        docker.list_networks(Some(options)).await.map_err(|e| format!("cannot list Docker networks: {}", brief(&e)))?;
    let mut ours: Vec<String> = listed
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(name))
        .filter(|n| n.labels.as_ref().is_some_and(|l| l.contains_key(SERVER_LABEL)))
        .filter_map(|n| n.id)
        .collect();
    ours.sort();
    for extra in ours.iter().skip(1) {
        if let Err(e) = docker.remove_network(extra).await
            && status_of(&e) != Some(404)
        {
            tracing::warn!("cannot remove the duplicate Docker network {extra}: {e}");
        }
    }
    Ok(())
}

/// Whether an image reference names its tag or digest (`repo:tag`, `repo@sha256:…`; a port in
/// the registry's host, `host:5000/repo`, is not a tag).
fn has_tag_or_digest(image: &str) -> bool {
    image.contains('@') || image.rsplit('/').next().is_some_and(|last| last.contains(':'))
}

/// Binds `source` at `target` in a container (a mount, not a `Binds` string: a path with a `:`
/// in it stays one path).
fn bind(source: &Path, target: &str, read_only: bool) -> Mount {
    Mount {
        target: Some(target.to_string()),
        source: Some(source.display().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// Gives everything in `dir` (not following links) to the game's user, and clears setuid and
/// setgid bits of files, going on past what fails (the first failure is returned). The install
/// container is gone and the game not started, so nothing changes beneath the walk.
fn give_to_user(dir: &Path, user: RunAs) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut first_error = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let step = (|| -> std::io::Result<()> {
            std::os::unix::fs::lchown(&path, Some(user.uid), Some(user.gid))?;
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.is_file() && meta.permissions().mode() & 0o6000 != 0 {
                let mode = meta.permissions().mode() & !0o6000;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            }
            if meta.is_dir() {
                for entry in std::fs::read_dir(&path)? {
                    stack.push(entry?.path());
                }
            }
            Ok(())
        })();
        if let Err(e) = step {
            first_error.get_or_insert(std::io::Error::new(e.kind(), format!("{}: {e}", path.display())));
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// A container removed when this is dropped, unless [`Throwaway::remove`] removed it first: an
/// install cancelled or failed midway leaves none behind.
struct Throwaway {
    docker: Docker,
    name: Option<String>,
}

impl Throwaway {
    fn new(docker: &Docker, name: &str) -> Self {
        Self { docker: docker.clone(), name: Some(name.to_string()) }
    }

    async fn remove(mut self, runtime: &DockerRuntime) -> Result<()> {
        match self.name.take() {
            Some(name) => runtime.remove_container(&name).await,
            None => Ok(()),
        }
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let (Some(name), Ok(handle)) = (self.name.take(), tokio::runtime::Handle::try_current()) else { return };
        let docker = self.docker.clone();
        handle.spawn(async move {
            let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
            if let Err(e) = docker.remove_container(&name, Some(options)).await
                && status_of(&e) != Some(404)
            {
                tracing::warn!("cannot remove container {name}: {e}");
            }
        });
    }
}

/// Clears a server's `busy` mark when the operation that set it ends, however it ends.
struct Busy<'a> {
    runtime: &'a DockerRuntime,
    id: ServerId,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut servers = self.runtime.servers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(m) = servers.get_mut(&self.id) {
            m.busy = None;
        }
    }
}

/// The task of one run: the container's output into the console, then its exit.
struct Follower {
    docker: Docker,
    name: String,
    output:
        Pin<Box<dyn futures::Stream<Item = std::result::Result<bollard::container::LogOutput, DockerError>> + Send>>,
    console: Arc<Console>,
    patterns: Vec<ReadyPattern>,
    ready: watch::Sender<bool>,
    exit: watch::Sender<Exit>,
    max_line: usize,
    ready_rx: watch::Receiver<bool>,
    exit_rx: watch::Receiver<Exit>,
    /// Whether the exit goes on the console (not for install containers).
    announce_exit: bool,
}

impl Follower {
    async fn run(self) {
        use bollard::container::LogOutput;
        let Self { docker, name, mut output, console, patterns, ready, exit, max_line, announce_exit, .. } = self;
        let mut out = LineCutter::new(max_line);
        let mut err = LineCutter::new(max_line);
        let mut deliver = |line: &str| {
            if !*ready.borrow() && patterns.iter().any(|p| p.matches(line)) {
                let _ = ready.send(true);
            }
            console.push(line);
        };
        // The output ends when the container does (or the engine goes away).
        while let Some(frame) = output.next().await {
            match frame {
                Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                    out.feed(&message, &mut deliver);
                }
                Ok(LogOutput::StdErr { message }) => {
                    err.feed(&message, &mut deliver);
                }
                Ok(LogOutput::StdIn { .. }) => {}
                Err(e) => {
                    tracing::warn!("the output of container {name} failed: {e}");
                    break;
                }
            }
        }
        out.flush(&mut deliver);
        err.flush(&mut deliver);
        drop(output);
        let (code, signal, oom) = wait(&docker, &name, None).await;
        if oom {
            console.system("[cap] the server ran out of memory and was killed");
        }
        if announce_exit {
            console.system(exit_line(code, signal));
        }
        let _ = exit.send(Some((code, signal)));
    }
}

/// How a container ended (it has, or is about to: its output closed), and whether it was killed
/// for using too much memory. While the engine does not answer (it is restarting, say) this
/// asks again, `patience` times at most (`None`: until it answers), so an engine away for a
/// while is not taken for the game's end.
async fn wait(docker: &Docker, name: &str, patience: Option<u32>) -> (Option<i32>, Option<i32>, bool) {
    let options = WaitContainerOptions { condition: "not-running".into() };
    let mut attempts = 0u32;
    let code = loop {
        match docker.wait_container(name, Some(options.clone())).next().await {
            Some(Ok(done)) => break Some(done.status_code),
            // A non-zero exit arrives as an error carrying the code.
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => break Some(code),
            Some(Err(e)) if status_of(&e) == Some(404) => break None,
            Some(Err(e)) if patience.is_none_or(|p| attempts < p) => {
                attempts = attempts.saturating_add(1);
                tracing::warn!("waiting for container {name} failed (attempt {attempts}): {e}");
                tokio::time::sleep(Duration::from_millis(500u64.saturating_mul(u64::from(attempts.min(10))))).await;
            }
            Some(Err(e)) => {
                tracing::warn!("waiting for container {name} failed, its exit is unknown: {e}");
                break None;
            }
            None => break None,
        }
    };
    let oom = match docker.inspect_container(name, None).await {
        Ok(c) => c.state.and_then(|s| s.oom_killed).unwrap_or(false),
        Err(_) => false,
    };
    match code {
        Some(code) => {
            let (code, signal) = exit_of(code);
            (code, signal, oom)
        }
        None => (None, None, oom),
    }
}
/// Whether this host's kernel takes a block IO weight (what Docker checks before applying one).
fn blkio_weight_supported() -> bool {
    ["/sys/fs/cgroup/blkio/blkio.weight", "/sys/fs/cgroup/blkio/blkio.bfq.weight", "/sys/fs/cgroup/io.weight"]
        .iter()
        .any(|p| Path::new(p).exists())
        || std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "io"))
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn create(&self, spec: RuntimeSpec) -> Result<()> {
        if spec.argv.is_empty() {
            return Err(Error::invalid("argv", "must not be empty"));
        }
        if spec.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
            return Err(Error::invalid("image", "the Docker runtime needs the template to name an image"));
        }
        let dir = self.config.servers_dir.join(spec.server_id.to_string());
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Error::unavailable(format!("cannot create {}", dir.display()), e))?;
        std::os::unix::fs::chown(&dir, Some(self.user.uid), Some(self.user.gid))
            .or_else(|e| {
                // Not root: the directory is already the agent's own, which is the game's user too.
                if e.kind() == std::io::ErrorKind::PermissionDenied { Ok(()) } else { Err(e) }
            })
            .map_err(|e| Error::unavailable(format!("cannot give {} to uid {}", dir.display(), self.user.uid), e))?;
        let mut servers = self.servers.lock().expect("servers lock");
        match servers.get_mut(&spec.server_id) {
            Some(m) => m.spec = spec,
            None => {
                let console = Arc::new(Console::new(self.config.console));
                let managed = Managed { spec, dir, console, run: None, busy: None, last_cpu: None };
                servers.insert(managed.spec.server_id, managed);
            }
        }
        Ok(())
    }

    async fn start(&self, id: ServerId) -> Result<()> {
        let (_busy, spec, dir, console) = self.claim(id, "starting")?;
        let image = spec.image.clone().unwrap_or_default();
        self.ensure_image(&image, &console).await?;
        let name = self.name_of(id);
        self.remove_container(&name).await?;
        self.network_ready().await?;
        let options = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
        let created =
            self.docker.create_container(Some(options), self.game_container(&spec, &image, &dir)).await.map_err(
                |e| match status_of(&e) {
                    Some(400) => {
                        Error::invalid("limits", format!("the Docker engine refused the container: {}", brief(&e)))
                    }
                    _ => engine("create the container")(e),
                },
            )?;
        for warning in created.warnings {
            tracing::warn!("server {id}: {warning}");
        }
        let path = spec.environment.get("PATH").map(String::as_str);
        if !self.has_program(&name, CONTAINER_DIR, &spec.argv[0], path, &image).await {
            let _ = self.remove_container(&name).await;
            return Err(Error::invalid(
                "argv",
                format!("cannot start `{}`: no such program in image `{image}`", spec.argv[0]),
            ));
        }
        let (stdin, follower) = self.attach(&name, console, spec.ready_patterns.clone()).await?;
        if let Err(e) = self.docker.start_container(&name, None).await {
            drop(follower);
            let _ = self.remove_container(&name).await;
            return Err(Error::invalid("argv", format!("cannot start `{}`: {}", spec.argv[0], brief(&e))));
        }
        // The follower starts whatever the answer: the container runs and must be followed.
        let pid = self.pid_of(&name).await.ok().flatten().map_or(0, |(pid, _)| pid);
        self.begin_run(id, pid, Instant::now(), stdin, follower)
    }

    async fn stop(&self, id: ServerId, grace: Duration) -> Result<()> {
        let stop = self.with(id, |m| Ok(m.spec.stop.clone()))?;
        let deadline = Instant::now() + grace;
        match stop {
            StopAction::Command(line) => {
                match tokio::time::timeout(grace, GameRuntime::send_command(self, id, &line)).await {
                    Ok(Err(e)) if !matches!(self.status(id).await?, RuntimeStatus::Running { .. }) => return Err(e),
                    Ok(Err(e)) => {
                        tracing::warn!("cannot send the stop command to server {id} ({e}): killing it");
                        return self.kill(id).await;
                    }
                    Ok(Ok(())) | Err(_) => {}
                }
            }
            StopAction::Signal(s) => self.signal(id, s.name()).await?,
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if self.wait_exit_within(id, left).await?.is_some() {
            return Ok(());
        }
        self.kill(id).await
    }

    async fn kill(&self, id: ServerId) -> Result<()> {
        self.signal(id, "SIGKILL").await?;
        match self.wait_exit_within(id, self.config.kill_wait).await? {
            Some(_) => Ok(()),
            None => Err(Error::internal("the container survived SIGKILL", "kill timeout")),
        }
    }

    async fn remove(&self, id: ServerId) -> Result<()> {
        if let Some(busy) = self.with(id, |m| Ok(m.busy))? {
            return Err(Error::conflict(format!("the server is {busy}")));
        }
        if matches!(self.status(id).await?, RuntimeStatus::Running { .. }) {
            self.kill(id).await?;
        }
        self.remove_container(&self.name_of(id)).await?;
        self.remove_container(&self.install_name(id)).await?;
        self.remove_container(&self.chown_name(id)).await?;
        let dir = self.with(id, |m| Ok(m.dir.clone()))?;
        for dir in [dir, self.config.state_dir.join(id.to_string())] {
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::unavailable(format!("cannot remove {}", dir.display()), e)),
            }
        }
        self.servers.lock().expect("servers lock").remove(&id);
        self.usage.forget(id);
        Ok(())
    }

    async fn status(&self, id: ServerId) -> Result<RuntimeStatus> {
        self.with(id, |m| {
            Ok(match &m.run {
                None => RuntimeStatus::NotRunning,
                Some(r) => match *r.exit.borrow() {
                    None => RuntimeStatus::Running { pid: r.pid },
                    Some((code, signal)) => RuntimeStatus::Exited { code, signal },
                },
            })
        })
    }

    async fn stats(&self, id: ServerId) -> Result<RuntimeStats> {
        let (running, started, dir, last) = self.with(id, |m| {
            Ok(match &m.run {
                Some(r) => (r.running(), r.started, m.dir.clone(), m.last_cpu),
                None => (false, Instant::now(), m.dir.clone(), None),
            })
        })?;
        let usage = self.usage.clone();
        let disk_bytes = tokio::task::spawn_blocking(move || usage.measure(id, &dir))
            .await
            .map_err(|e| Error::internal("disk usage walk failed", e))?;
        if !running {
            return Ok(RuntimeStats { disk_bytes, ..RuntimeStats::default() });
        }
        let options = StatsOptions { stream: false, one_shot: true };
        let sample = match self.docker.stats(&self.name_of(id), Some(options)).next().await {
            Some(Ok(sample)) => sample,
            Some(Err(e)) => return Err(engine("read the container's stats")(e)),
            None => return Ok(RuntimeStats { disk_bytes, ..RuntimeStats::default() }),
        };
        let cpu = sample.cpu_stats.unwrap_or_default();
        let used = cpu.cpu_usage.and_then(|u| u.total_usage).unwrap_or(0);
        let system = cpu.system_cpu_usage.unwrap_or(0);
        let cpus = f64::from(cpu.online_cpus.unwrap_or(1).max(1));
        // Percent of one core since the previous sample (the engine's system time counts all).
        let cpu_percent = match last {
            Some((used0, system0)) if system > system0 => {
                used.saturating_sub(used0) as f64 / (system - system0) as f64 * cpus * 100.0
            }
            _ => 0.0,
        };
        let memory = sample.memory_stats.unwrap_or_default();
        let cache = memory
            .stats
            .as_ref()
            .and_then(|s| s.get("total_inactive_file").or(s.get("inactive_file")).or(s.get("cache")).copied())
            .unwrap_or(0);
        let memory_bytes = memory.usage.unwrap_or(0).saturating_sub(cache);
        // Per interface, on networks of the container's own (none with host networking).
        let network = sample.networks.filter(|n| !n.is_empty()).map(|networks| {
            networks.values().fold(capcore::protocol::v1::NetworkUse::default(), |sum, n| {
                capcore::protocol::v1::NetworkUse {
                    rx_bytes: sum.rx_bytes + n.rx_bytes.unwrap_or(0),
                    tx_bytes: sum.tx_bytes + n.tx_bytes.unwrap_or(0),
                }
            })
        });
        self.with(id, |m| {
            m.last_cpu = Some((used, system));
            Ok(())
        })?;
        Ok(RuntimeStats { cpu_percent, memory_bytes, disk_bytes, uptime: started.elapsed(), network })
    }
}

#[async_trait]
impl GameRuntime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn enforced_limits(&self) -> Vec<String> {
        self.limits.clone()
    }

    fn subscribe(&self, id: ServerId) -> Result<Subscription> {
        self.with(id, |m| Ok(m.console.subscribe()))
    }

    async fn send_command(&self, id: ServerId, line: &str) -> Result<()> {
        let bytes = command_line(line)?;
        let stdin = self.with(id, |m| match &m.run {
            Some(r) if r.running() => Ok(r.stdin.clone()),
            _ => Err(not_running()),
        })?;
        let mut stdin = stdin.lock().await;
        stdin.write_all(&bytes).await.map_err(|_| not_running())?;
        stdin.flush().await.map_err(|_| not_running())
    }

    async fn wait_ready(&self, id: ServerId) -> Result<()> {
        let (mut ready, mut exit) = self.with(id, |m| {
            let r = m.run.as_ref().ok_or_else(|| Error::conflict("the server was never started"))?;
            Ok((r.ready.clone(), r.exit.clone()))
        })?;
        loop {
            if *ready.borrow() {
                return Ok(());
            }
            if exit.borrow().is_some() {
                return Err(Error::conflict("the server exited before it was ready"));
            }
            tokio::select! {
                r = ready.changed() => { if r.is_err() { return Err(Error::conflict("the server exited before it was ready")); } }
                _ = exit.changed() => {}
            }
        }
    }

    async fn wait_exit(&self, id: ServerId) -> Result<RuntimeStatus> {
        let mut exit = self.with(id, |m| {
            Ok(m.run.as_ref().ok_or_else(|| Error::conflict("the server was never started"))?.exit.clone())
        })?;
        let (code, signal) = loop {
            if let Some(done) = *exit.borrow() {
                break done;
            }
            if exit.changed().await.is_err() {
                return Err(Error::internal("the container watcher went away", "exit channel closed"));
            }
        };
        Ok(RuntimeStatus::Exited { code, signal })
    }

    /// Takes over the server's container if it still runs (its console from now on; a ready
    /// server stays ready).
    async fn adopt(&self, spec: RuntimeSpec) -> Result<RuntimeStatus> {
        let id = spec.server_id;
        self.create(spec).await?;
        let (_busy, _spec, _dir, console) = self.claim(id, "adopting")?;
        let name = self.name_of(id);
        // An install the agent was running when it stopped did not finish: its containers go.
        for leftover in [self.install_name(id), self.chown_name(id)] {
            if let Err(e) = self.remove_container(&leftover).await {
                tracing::warn!("cannot remove the leftover container {leftover}: {e}");
            }
        }
        let Some((pid, true)) = self.pid_of(&name).await? else {
            return Ok(RuntimeStatus::NotRunning);
        };
        // Its uptime runs from its start, not from now.
        let started_at = match self.docker.inspect_container(&name, None).await {
            Ok(c) => c.state.and_then(|s| s.started_at).and_then(|t| capcore::time::Timestamp::parse_rfc3339(&t)),
            Err(_) => None,
        };
        let started = started_at
            .and_then(|t| {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64;
                Instant::now().checked_sub(Duration::from_millis(now.saturating_sub(t.millis()).max(0) as u64))
            })
            .unwrap_or_else(Instant::now);
        let (stdin, follower) = self.attach(&name, console.clone(), Vec::new()).await?;
        console.system("[cap] the agent attached to the running container again");
        self.begin_run(id, pid, started, stdin, follower)?;
        Ok(RuntimeStatus::Running { pid })
    }

    async fn install(&self, id: ServerId, install: &Install) -> Result<RuntimeStatus> {
        let (_busy, spec, dir, console) = self.claim(id, "installing")?;
        if install.entrypoint.trim().is_empty() {
            return Err(Error::invalid("entrypoint", "must not be empty"));
        }
        let image = install.image.clone().filter(|i| !i.trim().is_empty()).or(spec.image.clone()).unwrap_or_default();
        self.ensure_image(&image, &console).await?;
        let scripts = self.config.state_dir.join(id.to_string());
        std::fs::create_dir_all(&scripts)
            .and_then(|()| std::fs::write(scripts.join("install.sh"), &install.script))
            .map_err(|e| Error::unavailable("cannot write the install script", e))?;
        let name = self.install_name(id);
        self.remove_container(&name).await?;
        self.network_ready().await?;
        let mut host =
            self.host_config(&spec.limits, vec![bind(&dir, INSTALL_DIR, false), bind(&scripts, "/mnt/install", true)]);
        host.cap_drop = Some(vec!["ALL".into()]);
        host.cap_add = Some(["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID"].map(String::from).to_vec());
        let mut env: Vec<String> = spec.environment.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.push(format!("SERVER_DIR={INSTALL_DIR}"));
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            entrypoint: Some(vec![install.entrypoint.clone(), "/mnt/install/install.sh".into()]),
            cmd: Some(Vec::new()),
            env: Some(env),
            working_dir: Some(INSTALL_DIR.into()),
            user: Some("0:0".into()),
            labels: Some(HashMap::from([(SERVER_LABEL.to_string(), id.to_string())])),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            host_config: Some(host),
            ..Default::default()
        };
        let options = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
        self.docker.create_container(Some(options), body).await.map_err(engine("create the install container"))?;
        // Removed however the install ends, cancelled included.
        let container = Throwaway::new(&self.docker, &name);
        let path = spec.environment.get("PATH").map(String::as_str);
        if !self.has_program(&name, INSTALL_DIR, &install.entrypoint, path, &image).await {
            let _ = container.remove(self).await;
            let e = Error::invalid(
                "entrypoint",
                format!("cannot start `{}`: no such program in image `{image}`", install.entrypoint),
            );
            console.system(format!("[cap] install failed: {e}"));
            return Err(e);
        }
        let (_stdin, follower) = self.attach(&name, console.clone(), Vec::new()).await?;
        console.system("[cap] install started");
        if let Err(e) = self.docker.start_container(&name, None).await {
            drop(follower);
            let _ = container.remove(self).await;
            let e = Error::invalid("entrypoint", format!("cannot start `{}`: {}", install.entrypoint, brief(&e)));
            console.system(format!("[cap] install failed: {e}"));
            return Err(e);
        }
        // The install says how it ended in its own words, below.
        let mut exit = follower.exit_rx.clone();
        let follower = Follower { announce_exit: false, ..follower };
        let follow = tokio::spawn(follower.run());
        let ended = loop {
            if let Some(done) = *exit.borrow() {
                break done;
            }
            if exit.changed().await.is_err() {
                break (None, None);
            }
        };
        let _ = follow.await;
        container.remove(self).await?;
        if let Err(why) = self.hand_over(id, &image, &dir, &spec.limits).await {
            let user = self.user;
            let here = if nix::unistd::geteuid().is_root() {
                tokio::task::spawn_blocking(move || give_to_user(&dir, user))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
            };
            if let Err(e) = here {
                tracing::warn!("server {id}: the install's files stay with their owners: {why}; {e}");
                console.system(format!(
                    "[cap] the installed files could not all be given to the game's user (uid {}): {why}",
                    user.uid
                ));
            }
        }
        console.system(match ended {
            (Some(code), _) => format!("[cap] install finished with code {code}"),
            (None, Some(sig)) => format!("[cap] install ended by signal {sig}"),
            _ => "[cap] install ended".to_string(),
        });
        Ok(RuntimeStatus::Exited { code: ended.0, signal: ended.1 })
    }
}

#[cfg(test)]
mod tests {
    use super::{exit_of, has_tag_or_digest};

    #[test]
    fn image_references_without_a_tag_are_told_apart() {
        for tagged in ["debian:bookworm", "ghcr.io/pterodactyl/yolks:java_17", "host:5000/repo:1", "repo@sha256:abc"] {
            assert!(has_tag_or_digest(tagged), "{tagged}");
        }
        for bare in ["debian", "ghcr.io/pterodactyl/yolks", "host:5000/repo"] {
            assert!(!has_tag_or_digest(bare), "{bare}");
        }
    }

    #[test]
    fn exit_codes_past_128_are_signals() {
        assert_eq!(exit_of(0), (Some(0), None));
        assert_eq!(exit_of(3), (Some(3), None));
        assert_eq!(exit_of(137), (None, Some(9)));
        assert_eq!(exit_of(130), (None, Some(2)));
        assert_eq!(exit_of(255), (Some(255), None));
    }
}
