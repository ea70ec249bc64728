//! `ProcessRuntime`: game servers as host processes, each in its own directory and process
//! group, with exactly the environment it was given, within its resource limits, its console
//! captured through files so it outlives the agent, and every child waited on.
//!
//! - **Start**: argv is never given to a shell to parse (the cgroup wrapper is a fixed `sh` script
//!   that receives it as positional parameters); the environment is cleared and rebuilt from
//!   `PATH` and the spec; the working directory is `<servers_dir>/<id>`; the game leads its own
//!   process group and, where the agent may create cgroups, lives in one cgroup per server,
//!   `<hierarchy>/<cgroup_parent>/<id>`, made before the start and removed after the exit (see
//!   [`LimitMode`] and [`ProcessRuntime::enforced_limits`]); elsewhere `prlimit` sets rlimits.
//! - **Console**: stdout and stderr go to files in the server's state directory and stdin comes
//!   from a FIFO there (the layout is described in `state.rs`); one task per run tails the files
//!   into the [`Console`], woken by inotify, and punches out what it has read.
//! - **Agent restart**: dropping a `ProcessRuntime` stops only its own tasks, never a game. A new
//!   runtime on the same directories calls [`ProcessRuntime::adopt`] and carries on from the first
//!   line the old one had not handed on.
//! - **Stop**: the template's command or signal, the grace period, then SIGKILL for the process
//!   group and the cgroup. When the game ends, whatever it left running is killed too.

mod limits;
mod procfs;
mod state;
mod supervise;
mod tail;

pub use limits::LimitMode;
pub(crate) use procfs::dir_size;

use crate::console::{Console, ConsoleConfig, Subscription};
use async_trait::async_trait;
use capcore::backend::{Runtime, RuntimeSpec, RuntimeStats, RuntimeStatus};
use capcore::ids::ServerId;
use capcore::model::Limits;
use capcore::template::{StopAction, StopSignal};
use capcore::{Error, Result};
use limits::{CGROUP_WRAPPER, Enforcement, ServerCgroup};
use nix::fcntl::Flock;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use state::{RunRecord, ServerState};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use supervise::{Exit, Supervisor, Watched};
use tail::{LogEvents, LogTail};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// How long a start, adoption or install waits for the run lock that a just-dropped runtime's
/// task is still letting go of, before deciding another agent holds it.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Settings of the process runtime.
#[derive(Clone, Debug)]
pub struct ProcessRuntimeConfig {
    /// Each server gets `<servers_dir>/<server id>` as its working directory.
    pub servers_dir: PathBuf,
    /// Per-server state the game must not touch: logs, command FIFO, `run.json`, install script
    /// (`<state_dir>/<server id>/`). Default: `.cap-run` beside `servers_dir`.
    pub state_dir: PathBuf,
    pub console: ConsoleConfig,
    /// `PATH` given to games (they get nothing else from the agent's environment); `prlimit`
    /// and `setpriv` are looked up in it too.
    pub path: String,
    /// After SIGKILL, how long to wait for the exit before reporting an error.
    pub kill_wait: Duration,
    /// Run games as this user and group (needed when the agent runs as root; the server
    /// directories are given to them). Supplementary groups are dropped.
    pub run_as: Option<RunAs>,
    /// cgroups where possible (default), or rlimits only.
    pub limit_mode: LimitMode,
    /// The cgroup under which each server gets one named by its id. With a leading `/` it is at
    /// the root of each hierarchy (default `/cap-agent`, outside the agent's own service cgroup,
    /// so restarting the agent does not touch the games); without, under the agent's own cgroup.
    pub cgroup_parent: String,
}

/// An unprivileged user and group for game processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// The user games run as: `configured` (a user name or `uid:gid`), or `nobody` when the
    /// agent runs as root (some games refuse root, and none should have it). Never root.
    pub fn resolve(configured: Option<&str>) -> Result<Option<Self>, String> {
        let spec = match configured {
            Some(s) => s.to_string(),
            None if nix::unistd::geteuid().is_root() => "nobody".to_string(),
            None => return Ok(None),
        };
        let found = if let Some((uid, gid)) = spec.split_once(':') {
            let uid = uid.parse().map_err(|_| format!("`{spec}`: the uid is not a number"))?;
            let gid = gid.parse().map_err(|_| format!("`{spec}`: the gid is not a number"))?;
            Self { uid, gid }
        } else {
            let user = nix::unistd::User::from_name(&spec)
                .map_err(|e| format!("cannot look up user `{spec}`: {e}"))?
                .ok_or_else(|| format!("no user named `{spec}`"))?;
            Self { uid: user.uid.as_raw(), gid: user.gid.as_raw() }
        };
        if found.uid == 0 {
            return Err("refusing to run games as root".into());
        }
        Ok(Some(found))
    }
}

impl ProcessRuntimeConfig {
    pub fn new(servers_dir: impl Into<PathBuf>) -> Self {
        let servers_dir = servers_dir.into();
        let state_dir = servers_dir.parent().unwrap_or(&servers_dir).join(".cap-run");
        Self {
            servers_dir,
            state_dir,
            console: ConsoleConfig::default(),
            path: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games".into(),
            kill_wait: Duration::from_secs(10),
            run_as: None,
            limit_mode: LimitMode::Auto,
            cgroup_parent: "/cap-agent".into(),
        }
    }

    /// The same with another state directory.
    pub fn with_state_dir(mut self, state_dir: impl Into<PathBuf>) -> Self {
        self.state_dir = state_dir.into();
        self
    }
}

struct Run {
    pid: u32,
    started: Instant,
    /// Where commands go (`None` if an adopted game no longer reads its FIFO).
    stdin: Option<Arc<tokio::sync::Mutex<pipe::Sender>>>,
    exit: watch::Receiver<Exit>,
    ready: watch::Receiver<bool>,
    cgroup: Option<ServerCgroup>,
    supervisor: AbortHandle,
}

impl Run {
    fn running(&self) -> bool {
        self.exit.borrow().is_none()
    }
}

struct Managed {
    spec: RuntimeSpec,
    dir: PathBuf,
    state: ServerState,
    console: Arc<Console>,
    run: Option<Run>,
    /// A start, adoption or install in progress.
    busy: Option<&'static str>,
    /// The previous CPU sample (ticks, when), for the CPU share since then.
    last_cpu: Option<(u64, Instant)>,
}

/// Runs game servers as host processes.
pub struct ProcessRuntime {
    config: ProcessRuntimeConfig,
    enforcement: Enforcement,
    servers: Mutex<HashMap<ServerId, Managed>>,
    usage: Arc<crate::files::DiskUsage>,
}

impl std::fmt::Debug for ProcessRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRuntime")
            .field("config", &self.config)
            .field("enforcement", &self.enforcement)
            .finish_non_exhaustive()
    }
}

/// Dropping the runtime stops its tasks (tails, exit watchers), never the games: they keep
/// running, writing to their log files, for the next runtime to [`ProcessRuntime::adopt`].
impl Drop for ProcessRuntime {
    fn drop(&mut self) {
        let servers = self.servers.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        for managed in servers.values() {
            if let Some(run) = &managed.run {
                run.supervisor.abort();
            }
        }
    }
}

/// Clears a server's `busy` mark when the operation that set it ends, however it ends.
struct Busy<'a> {
    runtime: &'a ProcessRuntime,
    id: ServerId,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Ok(mut servers) = self.runtime.servers.lock()
            && let Some(m) = servers.get_mut(&self.id)
        {
            m.busy = None;
        }
    }
}

fn not_found() -> Error {
    Error::not_found("server")
}

fn not_running() -> Error {
    Error::conflict("the server is not running")
}

fn signal_of(s: StopSignal) -> Signal {
    match s {
        StopSignal::Sigint => Signal::SIGINT,
        StopSignal::Sigterm => Signal::SIGTERM,
        StopSignal::Sigkill => Signal::SIGKILL,
        StopSignal::Sighup => Signal::SIGHUP,
        StopSignal::Sigquit => Signal::SIGQUIT,
        StopSignal::Sigusr1 => Signal::SIGUSR1,
        StopSignal::Sigusr2 => Signal::SIGUSR2,
    }
}

fn unavailable(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::unavailable(format!("{what}: {e}"), e)
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl ProcessRuntime {
    /// Builds the runtime and finds out how this machine can enforce limits (cgroups are probed,
    /// and the cgroup parent is created, here).
    pub fn new(config: ProcessRuntimeConfig) -> Self {
        let enforcement = Enforcement::detect(config.limit_mode, &config.cgroup_parent, &config.path, config.run_as);
        Self { config, enforcement, servers: Mutex::new(HashMap::new()), usage: Arc::new(Default::default()) }
    }

    /// What is enforced on this machine, one `resource:mechanism` per limit: resources
    /// `memory`, `swap`, `cpu`, `pids`, `io`, `disk`; mechanisms `cgroup-v1`, `cgroup-v2`,
    /// `rlimit` or `none`, and for the disk how its use is tracked (`inotify`: incrementally,
    /// `walk`: by walking the directory; the agent stops a server over its limit). For example
    /// `memory:cgroup-v1`, `cpu:none` or `disk:inotify`.
    pub fn enforced_limits(&self) -> Vec<String> {
        let disk = format!("disk:{}", self.usage.mode());
        self.enforcement.describe().into_iter().map(|l| if l == "disk:none" { disk.clone() } else { l }).collect()
    }

    fn with<T>(&self, id: ServerId, f: impl FnOnce(&mut Managed) -> Result<T>) -> Result<T> {
        let mut servers = self.servers.lock().expect("servers lock");
        f(servers.get_mut(&id).ok_or_else(not_found)?)
    }

    /// Marks the server busy with `what` unless it runs or is busy already.
    fn claim(
        &self,
        id: ServerId,
        what: &'static str,
    ) -> Result<(Busy<'_>, RuntimeSpec, PathBuf, ServerState, Arc<Console>)> {
        self.with(id, |m| {
            if let Some(busy) = m.busy {
                return Err(Error::conflict(format!("the server is {busy}")));
            }
            if m.run.as_ref().is_some_and(Run::running) {
                return Err(Error::conflict("the server is already running"));
            }
            m.busy = Some(what);
            Ok((m.spec.clone(), m.dir.clone(), m.state.clone(), m.console.clone()))
        })
        .map(|(spec, dir, state, console)| (Busy { runtime: self, id }, spec, dir, state, console))
    }

    /// The recent console lines and the live ones.
    pub fn subscribe(&self, id: ServerId) -> Result<Subscription> {
        self.with(id, |m| Ok(m.console.subscribe()))
    }

    /// Writes one line to the game's stdin; `Conflict` when it is not running.
    pub async fn send_command(&self, id: ServerId, line: &str) -> Result<()> {
        let bytes = super::command_line(line)?;
        let stdin = self.with(id, |m| match &m.run {
            Some(r) if r.running() => {
                r.stdin.clone().ok_or_else(|| Error::conflict("the server no longer reads its console"))
            }
            _ => Err(not_running()),
        })?;
        let mut stdin = stdin.lock().await;
        stdin.write_all(&bytes).await.map_err(|_| not_running())
    }

    /// Waits until a ready pattern was seen (or the process exited: `Conflict`). An adopted
    /// server is ready.
    pub async fn wait_ready(&self, id: ServerId) -> Result<()> {
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

    /// Waits for the current run to end and returns how (code and signal unknown, `None`, for
    /// an adopted process: it is not our child). Its console lines are all in by then.
    pub async fn wait_exit(&self, id: ServerId) -> Result<RuntimeStatus> {
        let mut exit = self.with(id, |m| {
            Ok(m.run.as_ref().ok_or_else(|| Error::conflict("the server was never started"))?.exit.clone())
        })?;
        let (code, signal) = loop {
            if let Some(done) = *exit.borrow() {
                break done;
            }
            if exit.changed().await.is_err() {
                return Err(Error::internal("the process watcher went away", "exit channel closed"));
            }
        };
        Ok(RuntimeStatus::Exited { code, signal })
    }

    async fn wait_exit_within(&self, id: ServerId, limit: Duration) -> Result<Option<RuntimeStatus>> {
        match tokio::time::timeout(limit, self.wait_exit(id)).await {
            Ok(status) => status.map(Some),
            Err(_) => Ok(None),
        }
    }

    fn signal_group(&self, id: ServerId, signal: Signal) -> Result<()> {
        let (pid, cgroup) = self.with(id, |m| match &m.run {
            Some(r) if r.running() => Ok((r.pid, r.cgroup.clone())),
            _ => Err(not_running()),
        })?;
        // The process group has the game's pid as its id (it was started as a group leader).
        match killpg(Pid::from_raw(pid as i32), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(Error::internal("cannot signal the server", e)),
        }
        if signal == Signal::SIGKILL
            && let Some(cgroup) = cgroup
        {
            // Also what left the process group.
            cgroup.kill_all();
        }
        Ok(())
    }

    /// Takes the server's run lock, waiting a little for a runtime that was just dropped.
    async fn lock(&self, state: &ServerState) -> Result<Flock<File>> {
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match state.try_lock().map_err(unavailable("cannot lock the server's state"))? {
                Some(lock) => return Ok(lock),
                None if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
                None => return Err(Error::conflict("another agent is running this server")),
            }
        }
    }

    /// The argv that starts `argv` inside the server's cgroup and rlimits, and whether the
    /// command itself must still switch to `run_as` (else `setpriv` in the argv does).
    fn launch_argv(&self, argv: &[String], cgroup: Option<&ServerCgroup>, limits: &Limits) -> (Vec<String>, bool) {
        let mut full = argv.to_vec();
        let mut switch_user = self.config.run_as.is_some();
        if let (Some(user), Some(_), Some(setpriv)) = (self.config.run_as, cgroup, &self.enforcement.setpriv) {
            // The wrapper joins the cgroup as root; the user could not write its files.
            let mut wrapped = vec![
                setpriv.display().to_string(),
                format!("--reuid={}", user.uid),
                format!("--regid={}", user.gid),
                "--clear-groups".into(),
                "--".into(),
            ];
            wrapped.append(&mut full);
            full = wrapped;
            switch_user = false;
        }
        let rlimits = self.enforcement.rlimit_args(limits);
        if let (false, Some(prlimit)) = (rlimits.is_empty(), &self.enforcement.prlimit) {
            let mut wrapped = vec![prlimit.display().to_string()];
            wrapped.extend(rlimits);
            wrapped.push("--".into());
            wrapped.append(&mut full);
            full = wrapped;
        }
        if let Some(cgroup) = cgroup {
            let mut wrapped = vec!["/bin/sh".into(), "-c".into(), CGROUP_WRAPPER.into(), "sh".into()];
            wrapped.extend(cgroup.procs_files().iter().map(|p| p.display().to_string()));
            wrapped.push("--".into());
            wrapped.append(&mut full);
            full = wrapped;
        }
        (full, switch_user)
    }

    /// A command for `argv` with the game's environment, directory, process group and user.
    fn command(&self, argv: &[String], switch_user: bool, spec: &RuntimeSpec, dir: &Path) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&argv[0]);
        command
            .args(&argv[1..])
            // Nothing of the agent's own environment (tokens, secrets) reaches the game.
            .env_clear()
            .env("PATH", &self.config.path)
            // The server's directory is its home (as in Pterodactyl's containers); games that
            // keep settings under $HOME, such as freeciv, need one.
            .env("HOME", dir)
            .envs(&spec.environment)
            .current_dir(dir)
            .process_group(0)
            .kill_on_drop(false);
        if let (true, Some(user)) = (switch_user, self.config.run_as) {
            // As root, std also drops the supplementary groups (setgroups(0)) before exec.
            command.uid(user.uid).gid(user.gid);
        }
        command
    }

    /// Refuses an argv whose program cannot be found, before any wrapper would hide that.
    fn check_program(&self, program: &str, dir: &Path, field: &str) -> Result<()> {
        let found = if program.contains('/') {
            limits::find_program(&dir.join(program).display().to_string(), "")
        } else {
            limits::find_program(program, &self.config.path)
        };
        match found {
            Some(_) => Ok(()),
            None => Err(Error::invalid(field, format!("cannot start `{program}`: no such executable file"))),
        }
    }

    fn create_cgroup(&self, id: ServerId, limits: &Limits) -> Result<Option<ServerCgroup>> {
        self.enforcement.create_cgroup(&id.to_string(), limits).map_err(|e| {
            if e.kind() == std::io::ErrorKind::ResourceBusy {
                Error::conflict(e.to_string())
            } else {
                Error::unavailable(format!("cannot set up the server's cgroup: {e}"), e)
            }
        })
    }

    /// Registers a server (like `create`) after an agent restart and re-attaches to its game if
    /// `run.json` names a live process with the same start time: tails its logs from where the
    /// last agent stopped, takes commands through its FIFO, and polls `/proc` for its exit. A
    /// process gone (or a zombie) means the run ended while no agent watched: what it printed
    /// meanwhile goes into the console, its leftovers are cleaned up, and `NotRunning` is
    /// returned. `Conflict` while another agent holds the server's run lock.
    pub async fn adopt(&self, spec: RuntimeSpec) -> Result<RuntimeStatus> {
        let id = spec.server_id;
        self.create(spec).await?;
        if let Some(status) = self.with(id, |m| Ok(m.run.as_ref().filter(|r| r.running()).map(|r| r.pid)))? {
            return Ok(RuntimeStatus::Running { pid: status });
        }
        let (_busy, spec, _dir, state, console) = self.claim(id, "being adopted")?;
        state.prepare().map_err(unavailable("cannot create the server's state directory"))?;
        let record = match state.read_run() {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(RuntimeStatus::NotRunning),
            Err(e) => {
                tracing::warn!("ignoring the unreadable run record of server {id}: {e}");
                state.remove_run().map_err(unavailable("cannot remove the run record"))?;
                return Ok(RuntimeStatus::NotRunning);
            }
        };
        let lock = self.lock(&state).await?;
        let cgroup = (!record.cgroups.is_empty()).then(|| ServerCgroup { dirs: record.cgroups.clone() });
        let max = self.config.console.max_line_bytes;
        let mut tails = Vec::new();
        for path in [state.stdout_log(), state.stderr_log()] {
            let file = ServerState::existing_log(&path).map_err(unavailable("cannot open the server's log"))?;
            tails.push(LogTail::resume(file, max).map_err(unavailable("cannot read the server's log"))?);
        }
        if !procfs::is_alive(record.pid, record.start_ticks) {
            for tail in &mut tails {
                let mut push = |line: &str| console.push(line);
                while tail.drain(1024 * 1024, &mut push).map_err(unavailable("cannot read the server's log"))? {}
                tail.flush(&mut push);
            }
            if let Some(cgroup) = &cgroup {
                cgroup.remove(self.config.kill_wait).await.map_err(unavailable("cannot remove the server's cgroup"))?;
            }
            state.remove_run().map_err(unavailable("cannot remove the run record"))?;
            console.system("[cap] the server ended while no agent was watching it");
            return Ok(RuntimeStatus::NotRunning);
        }
        // The game holds the FIFO open read+write; if it closed it, it takes no more commands.
        let stdin = match pipe::OpenOptions::new().open_sender(state.stdin_fifo()) {
            Ok(sender) => Some(Arc::new(tokio::sync::Mutex::new(sender))),
            Err(e) => {
                tracing::warn!("server {id} no longer reads its console FIFO: {e}");
                None
            }
        };
        let events = LogEvents::new(&[&state.stdout_log(), &state.stderr_log()]);
        let age = SystemTime::now()
            .duration_since(UNIX_EPOCH + Duration::from_millis(record.started_unix_ms))
            .unwrap_or_default();
        let started = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        console.system(format!("[cap] re-attached to the running server (pid {})", record.pid));
        let (ready_tx, ready_rx) = watch::channel(true);
        let (exit_tx, exit_rx) = watch::channel(None);
        let supervisor = Supervisor {
            pid: record.pid,
            watched: Watched::adopted(record.pid, record.start_ticks),
            console,
            tails,
            events,
            patterns: spec.ready_patterns.clone(),
            ready: ready_tx,
            exit: exit_tx,
            cgroup: cgroup.clone(),
            state,
            lock: Some(lock),
        };
        let task = tokio::spawn(supervisor.run()).abort_handle();
        let pid = record.pid;
        self.with(id, |m| {
            m.run = Some(Run { pid, started, stdin, exit: exit_rx, ready: ready_rx, cgroup, supervisor: task });
            m.last_cpu = None;
            Ok(())
        })?;
        Ok(RuntimeStatus::Running { pid })
    }

    /// Runs an install script: `<entrypoint> <state_dir>/<id>/install.sh`, the entrypoint (such
    /// as `bash`) found through `PATH`, in the server directory, with the spec's environment plus
    /// `PATH` and `SERVER_DIR`, as `run_as` and within the server's limits. Its output goes into
    /// the console between `[cap] install started` and `[cap] install finished with code N`.
    /// Returns how it ended; `Conflict` while the game runs or another operation is under way.
    pub async fn install(&self, id: ServerId, script: &str, entrypoint: &str) -> Result<RuntimeStatus> {
        let (_busy, spec, dir, state, console) = self.claim(id, "installing")?;
        if entrypoint.is_empty() {
            return Err(Error::invalid("entrypoint", "must not be empty"));
        }
        self.check_program(entrypoint, &dir, "entrypoint")?;
        state.prepare().map_err(unavailable("cannot create the server's state directory"))?;
        let _lock = self.lock(&state).await?;
        if let Ok(Some(record)) = state.read_run()
            && procfs::is_alive(record.pid, record.start_ticks)
        {
            return Err(Error::conflict(format!("the server is running as pid {} (adopt it)", record.pid)));
        }
        let script_path = state.install_script();
        write_script(&script_path, script).map_err(unavailable("cannot write the install script"))?;
        if self.config.run_as.is_some() {
            // Traverse only, so the user can open install.sh by name but list or change nothing.
            state.set_mode(0o711).map_err(unavailable("cannot open the state directory to the installer"))?;
        }
        let cgroup = self.create_cgroup(id, &spec.limits)?;
        let argv = [entrypoint.to_string(), script_path.display().to_string()];
        let (argv, switch_user) = self.launch_argv(&argv, cgroup.as_ref(), &spec.limits);
        let mut command = self.command(&argv, switch_user, &spec, &dir);
        command.env("SERVER_DIR", &dir).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        console.system("[cap] install started");
        let spawned = command.spawn();
        drop(command);
        let outcome = match spawned {
            Ok(mut child) => {
                let max = self.config.console.max_line_bytes;
                let out = tokio::spawn(pump(child.stdout.take().expect("piped stdout"), console.clone(), max));
                let err = tokio::spawn(pump(child.stderr.take().expect("piped stderr"), console.clone(), max));
                let pid = child.id();
                let status = child.wait().await;
                // Whatever it started in the background ends with it (and lets go of the pipes).
                if let Some(pid) = pid {
                    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
                if let Some(cgroup) = &cgroup {
                    cgroup.kill_all();
                }
                let _ = out.await;
                let _ = err.await;
                status.map_err(|e| Error::internal("waiting for the installer failed", e))
            }
            Err(e) => Err(Error::invalid("entrypoint", format!("cannot start `{entrypoint}`: {e}"))),
        };
        if let Some(cgroup) = &cgroup
            && let Err(e) = cgroup.remove(self.config.kill_wait).await
        {
            tracing::warn!("cannot remove the cgroup of server {id} after its install: {e}");
        }
        if self.config.run_as.is_some()
            && let Err(e) = state.set_mode(0o700)
        {
            tracing::warn!("cannot close the state directory of server {id} again: {e}");
        }
        use std::os::unix::process::ExitStatusExt;
        let status = match outcome {
            Ok(status) => status,
            Err(e) => {
                console.system(format!("[cap] install failed: {e}"));
                return Err(e);
            }
        };
        console.system(match (status.code(), status.signal()) {
            (Some(code), _) => format!("[cap] install finished with code {code}"),
            (None, Some(sig)) => format!("[cap] install ended by signal {sig}"),
            _ => "[cap] install ended".to_string(),
        });
        Ok(RuntimeStatus::Exited { code: status.code(), signal: status.signal() })
    }
}

fn write_script(path: &Path, script: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(path)?;
    file.write_all(script.as_bytes())?;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
}

/// Reads lines (cut at `max` bytes) from a pipe into the console (the installer's output).
async fn pump(pipe: impl AsyncRead + Unpin, console: Arc<Console>, max: usize) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        match (&mut reader).take(max.max(1) as u64).read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        console.push(text.trim_end_matches(['\n', '\r']));
    }
}

#[async_trait]
impl Runtime for ProcessRuntime {
    async fn create(&self, spec: RuntimeSpec) -> Result<()> {
        if spec.argv.is_empty() {
            return Err(Error::invalid("argv", "must not be empty"));
        }
        let dir = self.config.servers_dir.join(spec.server_id.to_string());
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Error::unavailable(format!("cannot create {}", dir.display()), e))?;
        if let Some(user) = self.config.run_as {
            std::os::unix::fs::chown(&dir, Some(user.uid), Some(user.gid))
                .map_err(|e| Error::unavailable(format!("cannot give {} to uid {}", dir.display(), user.uid), e))?;
        }
        let mut servers = self.servers.lock().expect("servers lock");
        match servers.get_mut(&spec.server_id) {
            Some(m) => m.spec = spec,
            None => {
                let console = Arc::new(Console::new(self.config.console));
                let state = ServerState::new(&self.config.state_dir, spec.server_id);
                let managed = Managed { spec, dir, state, console, run: None, busy: None, last_cpu: None };
                servers.insert(managed.spec.server_id, managed);
            }
        }
        Ok(())
    }

    async fn start(&self, id: ServerId) -> Result<()> {
        let (_busy, spec, dir, state, console) = self.claim(id, "starting")?;
        self.check_program(&spec.argv[0], &dir, "argv")?;
        state.prepare().map_err(unavailable("cannot create the server's state directory"))?;
        let lock = self.lock(&state).await?;
        // A game an earlier agent started, not adopted yet: a second copy must not start beside it.
        if let Ok(Some(record)) = state.read_run()
            && procfs::is_alive(record.pid, record.start_ticks)
        {
            return Err(Error::conflict(format!("the server is already running as pid {} (adopt it)", record.pid)));
        }
        let (stdout_tail, stdout) =
            ServerState::fresh_log(&state.stdout_log()).map_err(unavailable("cannot create the server's log"))?;
        let (stderr_tail, stderr) =
            ServerState::fresh_log(&state.stderr_log()).map_err(unavailable("cannot create the server's log"))?;
        state.ensure_fifo().map_err(unavailable("cannot create the server's console FIFO"))?;
        // Read+write: the game is a writer of its own stdin too, so it never reads end of input,
        // whether or not an agent holds the other end. Opening this way never blocks.
        let game_stdin = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(state.stdin_fifo())
            .map_err(unavailable("cannot open the server's console FIFO"))?;
        let stdin = pipe::OpenOptions::new()
            .open_sender(state.stdin_fifo())
            .map_err(unavailable("cannot open the server's console FIFO"))?;
        // Watching before the game can write, so no change goes unnoticed.
        let events = LogEvents::new(&[&state.stdout_log(), &state.stderr_log()]);
        let cgroup = self.create_cgroup(id, &spec.limits)?;
        let (argv, switch_user) = self.launch_argv(&spec.argv, cgroup.as_ref(), &spec.limits);
        let mut command = self.command(&argv, switch_user, &spec, &dir);
        command.stdin(game_stdin).stdout(stdout).stderr(stderr);
        let spawned = command.spawn();
        // The command holds our copies of the game's ends; only the game keeps them.
        drop(command);
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                if let Some(cgroup) = &cgroup {
                    let _ = cgroup.remove(self.config.kill_wait).await;
                }
                return Err(Error::invalid("argv", format!("cannot start `{}`: {e}", spec.argv[0])));
            }
        };
        let pid = child.id().ok_or_else(|| Error::internal("the process has no pid", "spawn"))?;
        // Not reaped yet (only the supervisor waits), so its stat is there even if it exited.
        let start_ticks = procfs::stat(pid).map_or(0, |s| s.start_ticks);
        let record = RunRecord {
            pid,
            start_ticks,
            started_unix_ms: unix_ms(SystemTime::now()),
            cgroups: cgroup.as_ref().map(|c| c.dirs.clone()).unwrap_or_default(),
        };
        if let Err(e) = state.write_run(&record) {
            tracing::warn!("cannot write the run record of server {id}, so a restarted agent cannot adopt it: {e}");
        }
        let max = self.config.console.max_line_bytes;
        let (ready_tx, ready_rx) = watch::channel(spec.ready_patterns.is_empty());
        let (exit_tx, exit_rx) = watch::channel(None);
        let supervisor = Supervisor {
            pid,
            // Every child is waited on: the supervisor owns it until it exits.
            watched: Watched::Child(child),
            console,
            tails: vec![LogTail::fresh(stdout_tail, max), LogTail::fresh(stderr_tail, max)],
            events,
            patterns: spec.ready_patterns.clone(),
            ready: ready_tx,
            exit: exit_tx,
            cgroup: cgroup.clone(),
            state,
            lock: Some(lock),
        };
        let task = tokio::spawn(supervisor.run()).abort_handle();
        let stdin = Some(Arc::new(tokio::sync::Mutex::new(stdin)));
        self.with(id, |m| {
            m.run = Some(Run {
                pid,
                started: Instant::now(),
                stdin,
                exit: exit_rx,
                ready: ready_rx,
                cgroup,
                supervisor: task,
            });
            m.last_cpu = None;
            Ok(())
        })
    }

    async fn stop(&self, id: ServerId, grace: Duration) -> Result<()> {
        let stop = self.with(id, |m| Ok(m.spec.stop.clone()))?;
        let deadline = Instant::now() + grace;
        match stop {
            // A game that does not read its console could block the write: the grace covers it.
            StopAction::Command(line) => match tokio::time::timeout(grace, self.send_command(id, &line)).await {
                Ok(Err(e)) if !matches!(self.status(id).await?, RuntimeStatus::Running { .. }) => return Err(e),
                Ok(Err(e)) => {
                    // Running but not reading its FIFO any more: nothing polite is left to try.
                    tracing::warn!("cannot send the stop command to server {id} ({e}): killing it");
                    return self.kill(id).await;
                }
                Ok(Ok(())) | Err(_) => {}
            },
            StopAction::Signal(s) => self.signal_group(id, signal_of(s))?,
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if self.wait_exit_within(id, left).await?.is_some() {
            return Ok(());
        }
        self.kill(id).await
    }

    async fn kill(&self, id: ServerId) -> Result<()> {
        self.signal_group(id, Signal::SIGKILL)?;
        match self.wait_exit_within(id, self.config.kill_wait).await? {
            Some(_) => Ok(()),
            None => Err(Error::internal("the server survived SIGKILL", "kill timeout")),
        }
    }

    async fn remove(&self, id: ServerId) -> Result<()> {
        if let Some(busy) = self.with(id, |m| Ok(m.busy))? {
            return Err(Error::conflict(format!("the server is {busy}")));
        }
        if matches!(self.status(id).await?, RuntimeStatus::Running { .. }) {
            self.kill(id).await?;
        }
        let (dir, state, cgroup) =
            self.with(id, |m| Ok((m.dir.clone(), m.state.clone(), m.run.as_ref().and_then(|r| r.cgroup.clone()))))?;
        // Normally gone with the run; this covers a removal that timed out then.
        if let Some(cgroup) = cgroup {
            cgroup.remove(self.config.kill_wait).await.map_err(unavailable("cannot remove the server's cgroup"))?;
        }
        for dir in [&dir, &state.dir] {
            match tokio::fs::remove_dir_all(dir).await {
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
        let (pid, started, running, dir, last, cgroup) = self.with(id, |m| {
            Ok(match &m.run {
                Some(r) => (r.pid, r.started, r.running(), m.dir.clone(), m.last_cpu, r.cgroup.clone()),
                None => (0, Instant::now(), false, m.dir.clone(), None, None),
            })
        })?;
        let usage = self.usage.clone();
        let disk_bytes = tokio::task::spawn_blocking(move || usage.measure(id, &dir))
            .await
            .map_err(|e| Error::internal("disk usage walk failed", e))?;
        if !running {
            return Ok(RuntimeStats { disk_bytes, ..RuntimeStats::default() });
        }
        let now = Instant::now();
        let uptime = now.duration_since(started);
        let ticks = procfs::stat(pid).map_or(0, |s| s.cpu_ticks);
        // The cgroup counts every process of the server; without one, the game's own RSS.
        let memory_bytes = cgroup.and_then(|c| c.memory_bytes()).unwrap_or_else(|| procfs::rss_bytes(pid));
        // CPU since the previous sample (or since start): /proc counts in USER_HZ, 100 on Linux.
        let (prev_ticks, prev_at) = last.unwrap_or((0, started));
        let elapsed = now.duration_since(prev_at).as_secs_f64();
        let cpu_percent =
            if elapsed > 0.0 { (ticks.saturating_sub(prev_ticks) as f64 / 100.0) / elapsed * 100.0 } else { 0.0 };
        self.with(id, |m| {
            m.last_cpu = Some((ticks, now));
            Ok(())
        })?;
        // Host processes share the host's interfaces: no per-server traffic to tell.
        Ok(RuntimeStats { cpu_percent, memory_bytes, disk_bytes, uptime, network: None })
    }
}

#[async_trait]
impl super::GameRuntime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }
    fn enforced_limits(&self) -> Vec<String> {
        ProcessRuntime::enforced_limits(self)
    }
    fn subscribe(&self, id: ServerId) -> Result<Subscription> {
        ProcessRuntime::subscribe(self, id)
    }
    async fn send_command(&self, id: ServerId, line: &str) -> Result<()> {
        ProcessRuntime::send_command(self, id, line).await
    }
    async fn wait_ready(&self, id: ServerId) -> Result<()> {
        ProcessRuntime::wait_ready(self, id).await
    }
    async fn wait_exit(&self, id: ServerId) -> Result<RuntimeStatus> {
        ProcessRuntime::wait_exit(self, id).await
    }
    async fn adopt(&self, spec: RuntimeSpec) -> Result<RuntimeStatus> {
        ProcessRuntime::adopt(self, spec).await
    }
    /// The process runtime has no images: `install.image` is ignored.
    async fn install(&self, id: ServerId, install: &super::Install) -> Result<RuntimeStatus> {
        ProcessRuntime::install(self, id, &install.script, &install.entrypoint).await
    }
}

#[cfg(test)]
mod run_as_tests {
    use super::RunAs;

    #[test]
    fn run_as_takes_ids_or_a_user_name_and_never_root() {
        assert_eq!(RunAs::resolve(Some("1000:1001")).unwrap(), Some(RunAs { uid: 1000, gid: 1001 }));
        assert_ne!(RunAs::resolve(Some("nobody")).unwrap().unwrap().uid, 0);
        assert!(RunAs::resolve(Some("root")).unwrap_err().contains("refusing"));
        assert!(RunAs::resolve(Some("0:0")).unwrap_err().contains("refusing"));
        assert!(RunAs::resolve(Some("no-such-user-here")).unwrap_err().contains("no user named"));
        assert!(RunAs::resolve(Some("x:1")).unwrap_err().contains("uid is not a number"));
    }
}
