//! `ProcessRuntime`: game servers as host processes, each in its own directory and process
//! group, with exactly the environment it was given, its console captured, and every child
//! waited on.

use crate::console::{Console, ConsoleConfig, Subscription};
use async_trait::async_trait;
use capcore::backend::{Runtime, RuntimeSpec, RuntimeStats, RuntimeStatus};
use capcore::ids::ServerId;
use capcore::template::{StopAction, StopSignal};
use capcore::{Error, Result};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

/// Settings of the process runtime.
#[derive(Clone, Debug)]
pub struct ProcessRuntimeConfig {
    /// Each server gets `<servers_dir>/<server id>` as its working directory.
    pub servers_dir: PathBuf,
    pub console: ConsoleConfig,
    /// `PATH` given to games (they get nothing else from the agent's environment).
    pub path: String,
    /// After SIGKILL, how long to wait for the exit before reporting an error.
    pub kill_wait: Duration,
    /// Run games as this user and group (needed when the agent runs as root; the server
    /// directories are given to them). Supplementary groups are dropped.
    pub run_as: Option<RunAs>,
}

/// An unprivileged user and group for game processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl ProcessRuntimeConfig {
    pub fn new(servers_dir: impl Into<PathBuf>) -> Self {
        Self {
            servers_dir: servers_dir.into(),
            console: ConsoleConfig::default(),
            path: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games".into(),
            kill_wait: Duration::from_secs(10),
            run_as: None,
        }
    }
}

/// How a process ended.
type Exit = Option<(Option<i32>, Option<i32>)>;

struct Run {
    pid: u32,
    started: Instant,
    stdin: mpsc::Sender<String>,
    exit: watch::Receiver<Exit>,
    ready: watch::Receiver<bool>,
}

struct Managed {
    spec: RuntimeSpec,
    dir: PathBuf,
    console: Arc<Console>,
    run: Option<Run>,
    /// The previous CPU sample (ticks, when), for the CPU share since then.
    last_cpu: Option<(u64, Instant)>,
}

/// Runs game servers as host processes.
pub struct ProcessRuntime {
    config: ProcessRuntimeConfig,
    servers: Mutex<HashMap<ServerId, Managed>>,
}

impl std::fmt::Debug for ProcessRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRuntime").field("config", &self.config).finish_non_exhaustive()
    }
}

fn not_found() -> Error {
    Error::not_found("server")
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

impl ProcessRuntime {
    pub fn new(config: ProcessRuntimeConfig) -> Self {
        Self { config, servers: Mutex::new(HashMap::new()) }
    }

    fn with<T>(&self, id: ServerId, f: impl FnOnce(&mut Managed) -> Result<T>) -> Result<T> {
        let mut servers = self.servers.lock().expect("servers lock");
        f(servers.get_mut(&id).ok_or_else(not_found)?)
    }

    /// The recent console lines and the live ones.
    pub fn subscribe(&self, id: ServerId) -> Result<Subscription> {
        self.with(id, |m| Ok(m.console.subscribe()))
    }

    /// Writes one line to the game's stdin; `Conflict` when it is not running.
    pub async fn send_command(&self, id: ServerId, line: &str) -> Result<()> {
        if line.contains('\n') || line.contains('\r') {
            return Err(Error::invalid("command", "must be one line"));
        }
        let stdin = self.with(id, |m| match &m.run {
            Some(r) if r.exit.borrow().is_none() => Ok(r.stdin.clone()),
            _ => Err(Error::conflict("the server is not running")),
        })?;
        stdin.send(line.to_string()).await.map_err(|_| Error::conflict("the server is not running"))
    }

    /// Waits until a ready pattern was seen (or the process exited: `Conflict`).
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

    /// Waits for the current run to end and returns how.
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
        let pid = self.with(id, |m| match &m.run {
            Some(r) if r.exit.borrow().is_none() => Ok(r.pid),
            _ => Err(Error::conflict("the server is not running")),
        })?;
        // The process group has the game's pid as its id (it was started as a group leader).
        match killpg(Pid::from_raw(pid as i32), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(Error::internal("cannot signal the server", e)),
        }
    }
}

/// Reads lines (cut at `max` bytes) from a pipe into the console, watching for ready patterns.
async fn pump(
    pipe: impl AsyncRead + Unpin,
    console: Arc<Console>,
    patterns: Vec<capcore::template::ReadyPattern>,
    ready: watch::Sender<bool>,
    max: usize,
) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        match (&mut reader).take(max as u64).read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches(['\n', '\r']);
        if !*ready.borrow() && patterns.iter().any(|p| p.matches(line)) {
            let _ = ready.send(true);
        }
        console.push(line);
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
                servers.insert(spec.server_id, Managed { spec, dir, console, run: None, last_cpu: None });
            }
        }
        Ok(())
    }

    async fn start(&self, id: ServerId) -> Result<()> {
        let (spec, dir, console) = self.with(id, |m| {
            if m.run.as_ref().is_some_and(|r| r.exit.borrow().is_none()) {
                return Err(Error::conflict("the server is already running"));
            }
            Ok((m.spec.clone(), m.dir.clone(), m.console.clone()))
        })?;
        let mut command = tokio::process::Command::new(&spec.argv[0]);
        command
            .args(&spec.argv[1..])
            // Nothing of the agent's own environment (tokens, secrets) reaches the game.
            .env_clear()
            .env("PATH", &self.config.path)
            .envs(&spec.environment)
            .current_dir(&dir)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        if let Some(user) = self.config.run_as {
            // As root, std also drops the supplementary groups (setgroups(0)) before exec.
            command.uid(user.uid).gid(user.gid);
        }
        let mut child =
            command.spawn().map_err(|e| Error::invalid("argv", format!("cannot start `{}`: {e}", spec.argv[0])))?;
        let pid = child.id().ok_or_else(|| Error::internal("the process has no pid", "spawn"))?;
        let (ready_tx, ready_rx) = watch::channel(spec.ready_patterns.is_empty());
        let (exit_tx, exit_rx) = watch::channel(None);
        let (stdin_tx, mut stdin_rx) = mpsc::channel::<String>(64);
        let max = self.config.console.max_line_bytes;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut stdin = child.stdin.take().expect("piped stdin");
        tokio::spawn(pump(stdout, console.clone(), spec.ready_patterns.clone(), ready_tx.clone(), max));
        tokio::spawn(pump(stderr, console.clone(), spec.ready_patterns.clone(), ready_tx, max));
        tokio::spawn(async move {
            while let Some(line) = stdin_rx.recv().await {
                let mut bytes = line.into_bytes();
                bytes.push(b'\n');
                if stdin.write_all(&bytes).await.is_err() || stdin.flush().await.is_err() {
                    return;
                }
            }
        });
        // Every child is waited on: this task owns it until it exits.
        let exit_console = console.clone();
        tokio::spawn(async move {
            use std::os::unix::process::ExitStatusExt;
            let status = child.wait().await;
            let exit = match status {
                Ok(s) => (s.code(), s.signal()),
                Err(_) => (None, None),
            };
            exit_console.system(match exit {
                (Some(code), _) => format!("[cap] the server exited with code {code}"),
                (None, Some(sig)) => format!("[cap] the server was ended by signal {sig}"),
                _ => "[cap] the server ended".to_string(),
            });
            let _ = exit_tx.send(Some(exit));
        });
        self.with(id, |m| {
            m.run = Some(Run { pid, started: Instant::now(), stdin: stdin_tx, exit: exit_rx, ready: ready_rx });
            m.last_cpu = None;
            Ok(())
        })
    }

    async fn stop(&self, id: ServerId, grace: Duration) -> Result<()> {
        let stop = self.with(id, |m| Ok(m.spec.stop.clone()))?;
        match stop {
            StopAction::Command(line) => self.send_command(id, &line).await?,
            StopAction::Signal(s) => self.signal_group(id, signal_of(s))?,
        }
        if self.wait_exit_within(id, grace).await?.is_some() {
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
        if matches!(self.status(id).await?, RuntimeStatus::Running { .. }) {
            self.kill(id).await?;
        }
        let dir = self.with(id, |m| Ok(m.dir.clone()))?;
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::unavailable(format!("cannot remove {}", dir.display()), e)),
        }
        self.servers.lock().expect("servers lock").remove(&id);
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
        let (pid, started, running, dir, last) = self.with(id, |m| {
            Ok(match &m.run {
                Some(r) => (r.pid, r.started, r.exit.borrow().is_none(), m.dir.clone(), m.last_cpu),
                None => (0, Instant::now(), false, m.dir.clone(), None),
            })
        })?;
        let disk_bytes = tokio::task::spawn_blocking(move || dir_size(&dir))
            .await
            .map_err(|e| Error::internal("disk usage walk failed", e))?;
        if !running {
            return Ok(RuntimeStats { disk_bytes, ..RuntimeStats::default() });
        }
        let now = Instant::now();
        let uptime = now.duration_since(started);
        let stat = tokio::fs::read_to_string(format!("/proc/{pid}/stat")).await.unwrap_or_default();
        let statm = tokio::fs::read_to_string(format!("/proc/{pid}/statm")).await.unwrap_or_default();
        let rss_pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        let ticks = cpu_ticks(&stat);
        // CPU since the previous sample (or since start): /proc counts in USER_HZ, 100 on Linux.
        let (prev_ticks, prev_at) = last.unwrap_or((0, started));
        let elapsed = now.duration_since(prev_at).as_secs_f64();
        let cpu_percent =
            if elapsed > 0.0 { (ticks.saturating_sub(prev_ticks) as f64 / 100.0) / elapsed * 100.0 } else { 0.0 };
        self.with(id, |m| {
            m.last_cpu = Some((ticks, now));
            Ok(())
        })?;
        Ok(RuntimeStats { cpu_percent, memory_bytes: rss_pages * 4096, disk_bytes, uptime })
    }
}

/// utime + stime from `/proc/<pid>/stat` (fields 14 and 15, after the parenthesised name).
fn cpu_ticks(stat: &str) -> u64 {
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so fields 14 and 15 are at 11 and 12.
    let get = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// Bytes of the regular files under `dir` (links not followed).
fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}
