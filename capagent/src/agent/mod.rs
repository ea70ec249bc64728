//! `Agent`: runs a node's game servers for the panel.
//!
//! It dials the panel (see [`connection`]), executes the panel's commands on the
//! [`ProcessRuntime`], and reports what happens as numbered events: state changes, console
//! lines, stats. State changes are kept until the panel acknowledges them and resent after a
//! reconnect; the panel applies each number once, so none is lost or repeated. Event numbers
//! survive agent restarts (see [`store`]).
//!
//! The agent is the authority on its processes: it detects crashes and applies the restart
//! policy ([`capcore::restart::decide`]) even while the panel is unreachable, and after its own
//! restart it re-adopts the games that kept running and reports the others truthfully.

mod backups;
pub mod connection;
pub mod facts;
mod files;
mod offsite;
mod ports;
pub mod store;

use crate::console::Subscription;
use crate::runtime::process::{ProcessRuntime, ProcessRuntimeConfig};
use crate::runtime::{GameRuntime, Install, Unavailable};
use capcore::backend::RuntimeStatus;
use capcore::ids::{NodeId, ServerId};
use capcore::protocol::v1::*;
use capcore::restart::{ExitDecision, ProcessExit, RestartPolicy, decide};
use capcore::state::ServerState;
use capcore::time::Timestamp;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{ServerRecord, Store};
use tokio::sync::mpsc;

/// Settings of an agent.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The panel's base URL (`http://panel:8080`; `ws://` also accepted).
    pub panel_url: String,
    /// The node token the panel showed when the node was created.
    pub token: String,
    /// Where the agent keeps its state and the servers' directories.
    pub data_dir: PathBuf,
    /// The process runtime's settings; its directories, console limits, user and kill wait are
    /// the Docker runtime's too.
    pub runtime: ProcessRuntimeConfig,
    /// Run servers in Docker containers instead of host processes (`None`: host processes).
    pub docker: Option<DockerOptions>,
    pub restart: RestartPolicy,
    /// Where backups are made, and kept unless `backup_s3` is set (`<data_dir>/backups` by
    /// default; their records stay here either way).
    pub backups_dir: PathBuf,
    /// Keep finished backups in this S3-compatible bucket instead of on the node (feature `s3`).
    pub backup_s3: Option<crate::backups::S3Config>,
    /// How often running servers' stats are reported (and their disk use measured).
    pub stats_interval: Duration,
    /// How long a running server may stay over its disk limit before it is stopped.
    pub disk_grace: Duration,
    /// Hold disk limits with the filesystem's project quotas where the servers' directories are
    /// on one that has them and `xfs_quota` is installed (default); see
    /// [`crate::files::ProjectQuotas`].
    pub project_quotas: bool,
    /// Reconnect delays: the first, and the most it grows to (doubling, with full jitter).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

/// How an agent that runs servers in Docker reaches and uses the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerOptions {
    /// The engine's address; `None`: `DOCKER_HOST`, else `unix:///var/run/docker.sock`.
    pub host: Option<String>,
    /// The containers' network: a network's name (default `cap`, made if missing), `host`, or
    /// `none`.
    pub network_mode: String,
    /// A read-only root filesystem for games (default).
    pub read_only_root: bool,
}

impl Default for DockerOptions {
    fn default() -> Self {
        Self { host: None, network_mode: crate::runtime::docker::DEFAULT_NETWORK.into(), read_only_root: true }
    }
}

impl AgentConfig {
    /// Defaults with servers under `<data_dir>/servers` and runtime files under `<data_dir>/run`.
    pub fn new(panel_url: impl Into<String>, token: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        let mut runtime = ProcessRuntimeConfig::new(data_dir.join("servers"));
        runtime.state_dir = data_dir.join("run");
        Self {
            panel_url: panel_url.into(),
            token: token.into(),
            backups_dir: data_dir.join("backups"),
            backup_s3: None,
            data_dir,
            runtime,
            docker: None,
            restart: RestartPolicy::default(),
            stats_interval: Duration::from_secs(5),
            disk_grace: Duration::from_secs(60),
            project_quotas: true,
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Unacknowledged state events kept per server (older ones are superseded anyway).
const OUTBOX: usize = 64;
/// Event numbers reserved on disk at a time.
const SEQ_BLOCK: u64 = 1000;

#[derive(Debug)]
struct ServerSlot {
    record: ServerRecord,
    state: ServerState,
    seq: u64,
    /// Unacknowledged state events.
    outbox: VecDeque<EventEnvelope>,
    stop_requested: bool,
    restart_after_stop: bool,
    /// Bumped at every start, so a watcher of an older run does nothing.
    run: u64,
    forwarder: Option<tokio::task::JoinHandle<()>>,
    /// Since when the running server has been over its disk limit.
    over_disk_since: Option<std::time::Instant>,
}

/// Where events go while connected: `control` for results, state changes and heartbeats
/// (never dropped), `bulk` for console lines and stats (dropped when the link is saturated).
#[derive(Clone, Debug)]
pub(crate) struct Outbound {
    pub control: mpsc::Sender<AgentMessage>,
    pub bulk: mpsc::Sender<AgentMessage>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub config: AgentConfig,
    pub runtime: Arc<dyn GameRuntime>,
    /// Why the configured runtime is missing (the agent registers without it).
    pub runtime_problem: Option<String>,
    pub store: Store,
    pub node: Mutex<Option<NodeId>>,
    servers: Mutex<HashMap<ServerId, ServerSlot>>,
    pub out: Mutex<Option<Outbound>>,
    /// Serialises commands per server.
    locks: Mutex<HashMap<ServerId, Arc<tokio::sync::Mutex<()>>>>,
    /// Each server's file manager, once used.
    files: Mutex<HashMap<ServerId, Arc<crate::files::ServerFiles>>>,
    /// The servers' backups.
    backups: crate::backups::BackupStore,
    /// Where finished backups go, when not on the node.
    offsite: Option<offsite::Offsite>,
    /// Servers with a backup being made.
    backing_up: Mutex<std::collections::HashSet<ServerId>>,
    /// Servers whose directory is being restored from a backup.
    restoring: Mutex<std::collections::HashSet<ServerId>>,
    /// Bumped whenever a server's directory is replaced: a file manager opened before is stale.
    files_generation: std::sync::atomic::AtomicU64,
    /// Serialises changes to backup records (a lock toggled while a backup finishes).
    backup_records: tokio::sync::Mutex<()>,
    /// The filesystem's project quotas, where it has them.
    project_quotas: Option<Arc<crate::files::ProjectQuotas>>,
}

/// A node's agent. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Agent {
    pub(crate) inner: Arc<Inner>,
}

fn outcome_error(code: ErrorCode, message: impl Into<String>) -> Outcome {
    Outcome::Error { code, message: message.into() }
}

fn from_error(e: capcore::Error) -> Outcome {
    use capcore::Error as E;
    let code = match &e {
        E::NotFound { .. } => ErrorCode::NotFound,
        E::Conflict { .. } => ErrorCode::Conflict,
        E::Invalid(_) => ErrorCode::Invalid,
        E::Forbidden { .. } => ErrorCode::Forbidden,
        _ => ErrorCode::Internal,
    };
    outcome_error(code, e.to_string())
}

fn data_outcome(result: Result<capcore::protocol::v1::files::Reply, Outcome>) -> Outcome {
    match result {
        Ok(capcore::protocol::v1::files::Reply::Done) => Outcome::Ok,
        Ok(data) => Outcome::Data { data: Box::new(data) },
        Err(o) => o,
    }
}

fn now() -> Timestamp {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    Timestamp(ms)
}

impl Agent {
    /// Opens the agent's state and re-adopts the servers it had: a game still running is
    /// watched again; one that ended while the agent was away is reported offline.
    pub async fn start(config: AgentConfig) -> capcore::Result<Agent> {
        let store = Store::open(&config.data_dir)
            .map_err(|e| capcore::Error::unavailable(format!("cannot open {}", config.data_dir.display()), e))?;
        let offsite = match config.backup_s3.clone().map(offsite::open).transpose() {
            Ok(offsite) => offsite,
            Err(why) => return Err(capcore::Error::invalid("backup_s3", why)),
        };
        let (runtime, runtime_problem) = make_runtime(&config).await;
        if let Some(problem) = &runtime_problem {
            tracing::error!("servers cannot run on this node: {problem}");
        }
        let config_backups_dir = config.backups_dir.clone();
        let project_quotas = if config.project_quotas {
            let dir = config.runtime.servers_dir.clone();
            tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&dir).ok()?;
                crate::files::ProjectQuotas::detect(&dir)
            })
            .await
            .ok()
            .flatten()
            .map(Arc::new)
        } else {
            None
        };
        if let Some(q) = &project_quotas {
            tracing::info!("disk limits are held by project quotas on {}", q.mount_point().display());
        }
        let agent = Agent {
            inner: Arc::new(Inner {
                node: Mutex::new(store.node()),
                config,
                runtime,
                runtime_problem,
                store,
                servers: Mutex::new(HashMap::new()),
                out: Mutex::new(None),
                locks: Mutex::new(HashMap::new()),
                files: Mutex::new(HashMap::new()),
                backups: crate::backups::BackupStore::new(config_backups_dir),
                offsite,
                backing_up: Mutex::new(std::collections::HashSet::new()),
                restoring: Mutex::new(std::collections::HashSet::new()),
                files_generation: std::sync::atomic::AtomicU64::new(0),
                backup_records: tokio::sync::Mutex::new(()),
                project_quotas,
            }),
        };
        for record in agent.inner.store.load() {
            agent.readopt(record).await;
        }
        Ok(agent)
    }

    pub fn runtime(&self) -> &dyn GameRuntime {
        &*self.inner.runtime
    }

    /// The runtimes servers can run on here (none when the configured one is missing), and why
    /// one is missing.
    pub fn runtimes(&self) -> (Vec<String>, Vec<String>) {
        match &self.inner.runtime_problem {
            Some(problem) => (Vec::new(), vec![format!("{}: {problem}", self.inner.runtime.name())]),
            None => (vec![self.inner.runtime.name().to_string()], Vec::new()),
        }
    }

    /// The node this agent belongs to, once the panel has said.
    pub fn node_id(&self) -> Option<NodeId> {
        *self.inner.node.lock().expect("node lock")
    }

    /// The servers the agent has, with their current states.
    pub fn servers(&self) -> Vec<(ServerId, ServerState)> {
        let servers = self.inner.servers.lock().expect("servers lock");
        let mut list: Vec<_> = servers.iter().map(|(id, s)| (*id, s.state)).collect();
        list.sort_by_key(|(id, _)| *id);
        list
    }

    /// A server's console: recent lines and the live ones.
    pub fn subscribe(&self, id: ServerId) -> capcore::Result<Subscription> {
        self.inner.runtime.subscribe(id)
    }

    async fn readopt(&self, record: ServerRecord) {
        let id = record.spec.server_id;
        if let Err(e) = self.inner.backups.recover(id, now().millis()) {
            tracing::warn!(server = %id, error = %e, "cannot recover the server's interrupted backups");
        }
        let spec = match record.spec.runtime_spec() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(server = %id, error = %e, "stored spec unusable; server skipped");
                return;
            }
        };
        let status = self.inner.runtime.adopt(spec).await;
        let was = ServerState::parse(&record.state).unwrap_or(ServerState::Offline);
        let seq = record.seq_ceiling;
        self.insert_slot(record, was, seq);
        match status {
            Ok(RuntimeStatus::Running { pid }) => {
                tracing::info!(server = %id, pid, "re-adopted a running server");
                if !matches!(was, ServerState::Running | ServerState::Starting | ServerState::Stopping) {
                    self.set_state(id, ServerState::Running, None);
                }
                let run = self.next_run(id);
                self.spawn_watcher(id, run);
            }
            Ok(_) | Err(_) => {
                if let Err(e) = &status {
                    tracing::warn!(server = %id, error = %e, "cannot re-adopt server");
                    self.system_line(id, &format!("[cap] the server could not be taken over again: {e}"));
                }
                let truth = match was {
                    ServerState::Starting | ServerState::Running | ServerState::Stopping => {
                        self.system_line(id, "[cap] the server stopped while the agent was not running");
                        ServerState::Offline
                    }
                    ServerState::Installing => {
                        self.system_line(id, "[cap] the install was interrupted by an agent restart");
                        ServerState::InstallFailed
                    }
                    other => other,
                };
                if truth != was {
                    self.set_state(id, truth, None);
                }
            }
        }
    }

    fn insert_slot(&self, mut record: ServerRecord, state: ServerState, seq: u64) {
        let id = record.spec.server_id;
        record.seq_ceiling = seq + SEQ_BLOCK;
        record.state = state.as_str().to_string();
        self.inner.store.save_logged(&record);
        let forwarder = self.spawn_forwarder(id);
        self.inner.servers.lock().expect("servers lock").insert(
            id,
            ServerSlot {
                record,
                state,
                seq,
                outbox: VecDeque::new(),
                stop_requested: false,
                restart_after_stop: false,
                run: 0,
                forwarder,
                over_disk_since: None,
            },
        );
    }

    /// Forwards the runtime's console lines to the panel as events.
    fn spawn_forwarder(&self, id: ServerId) -> Option<tokio::task::JoinHandle<()>> {
        let sub = self.inner.runtime.subscribe(id).ok()?;
        let agent = self.clone();
        Some(tokio::spawn(async move {
            let mut live = sub.live;
            loop {
                match live.recv().await {
                    Ok(line) => agent.emit(id, Event::Console { stream: ConsoleStream::Stdout, line }),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        agent.system_line(id, &format!("[cap] {n} console lines were not forwarded (agent busy)"))
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        }))
    }

    fn lock_of(&self, id: ServerId) -> Arc<tokio::sync::Mutex<()>> {
        self.inner.locks.lock().expect("locks lock").entry(id).or_default().clone()
    }

    /// Numbers an event and sends it (state changes are also kept until acknowledged).
    fn emit(&self, id: ServerId, event: Event) {
        let is_state = matches!(event, Event::State { .. });
        let is_control = is_state || matches!(event, Event::Backup { .. });
        let envelope = {
            let mut servers = self.inner.servers.lock().expect("servers lock");
            let Some(slot) = servers.get_mut(&id) else { return };
            slot.seq += 1;
            if slot.seq >= slot.record.seq_ceiling {
                slot.record.seq_ceiling = slot.seq + SEQ_BLOCK;
                self.inner.store.save_logged(&slot.record);
            }
            let envelope = EventEnvelope { server_id: id, seq: slot.seq, event };
            if is_state {
                if slot.outbox.len() >= OUTBOX {
                    slot.outbox.pop_front();
                }
                slot.outbox.push_back(envelope.clone());
            }
            envelope
        };
        let out = self.inner.out.lock().expect("out lock").clone();
        if let Some(out) = out {
            let channel = if is_control { &out.control } else { &out.bulk };
            // A full channel: console lines and stats are dropped; a state change stays in the
            // outbox and is resent on the next connection.
            let _ = channel.try_send(AgentMessage::Event(envelope));
        }
    }

    fn system_line(&self, id: ServerId, line: &str) {
        self.emit(id, Event::Console { stream: ConsoleStream::System, line: line.to_string() });
    }

    fn set_state(&self, id: ServerId, state: ServerState, exit: Option<ExitInfo>) {
        {
            let mut servers = self.inner.servers.lock().expect("servers lock");
            let Some(slot) = servers.get_mut(&id) else { return };
            slot.state = state;
            slot.record.state = state.as_str().to_string();
            self.inner.store.save_logged(&slot.record);
        }
        self.emit(id, Event::State { state: state.as_str().to_string(), exit });
    }

    fn state_of(&self, id: ServerId) -> Option<ServerState> {
        self.inner.servers.lock().expect("servers lock").get(&id).map(|s| s.state)
    }

    fn with_slot<T>(&self, id: ServerId, f: impl FnOnce(&mut ServerSlot) -> T) -> Option<T> {
        self.inner.servers.lock().expect("servers lock").get_mut(&id).map(f)
    }

    fn next_run(&self, id: ServerId) -> u64 {
        self.with_slot(id, |s| {
            s.run += 1;
            s.stop_requested = false;
            s.restart_after_stop = false;
            s.run
        })
        .unwrap_or(0)
    }

    /// The state events not yet acknowledged, after `last_seq` per server (servers the panel
    /// did not list get everything).
    pub(crate) fn unacked(&self, last_seq: &HashMap<ServerId, u64>) -> Vec<EventEnvelope> {
        let mut servers = self.inner.servers.lock().expect("servers lock");
        let mut out = Vec::new();
        for (id, slot) in servers.iter_mut() {
            let after = last_seq.get(id).copied().unwrap_or(0);
            slot.outbox.retain(|e| e.seq > after);
            out.extend(slot.outbox.iter().cloned());
        }
        out.sort_by_key(|e| (e.server_id, e.seq));
        out
    }

    /// Raises each server's event counter to at least what the panel has applied, so that a
    /// counter lost with the agent's data never makes new events look old.
    pub(crate) fn catch_up(&self, last_seq: &HashMap<ServerId, u64>) {
        let mut servers = self.inner.servers.lock().expect("servers lock");
        for (id, slot) in servers.iter_mut() {
            let Some(&applied) = last_seq.get(id) else { continue };
            if slot.seq < applied {
                slot.seq = applied;
                slot.record.seq_ceiling = applied + SEQ_BLOCK;
                self.inner.store.save_logged(&slot.record);
            }
        }
    }

    pub(crate) fn acknowledge(&self, ack: ServerSeq) {
        self.with_slot(ack.server_id, |s| s.outbox.retain(|e| e.seq > ack.seq));
    }

    pub(crate) fn running_count(&self) -> u32 {
        let servers = self.inner.servers.lock().expect("servers lock");
        servers.values().filter(|s| s.state.is_up()).count() as u32
    }

    /// Stats events for every server that is up.
    pub(crate) async fn report_stats(&self) {
        let up: Vec<ServerId> = {
            let servers = self.inner.servers.lock().expect("servers lock");
            servers.iter().filter(|(_, s)| s.state.is_up()).map(|(id, _)| *id).collect()
        };
        for id in up {
            if let Ok(st) = self.inner.runtime.stats(id).await {
                self.check_disk(id, st.disk_bytes).await;
                self.emit(
                    id,
                    Event::Stats {
                        cpu_percent: st.cpu_percent,
                        memory_bytes: st.memory_bytes,
                        disk_bytes: st.disk_bytes,
                        uptime_ms: st.uptime.as_millis() as u64,
                        network: st.network,
                    },
                );
            }
        }
    }

    /// The limits this node enforces, as reported at registration: the runtime's, with the disk
    /// limit's mode: `disk:project-quota` (the filesystem refuses writes past it), else how
    /// disk use is measured, `disk:inotify` or `disk:walk` (the agent stops a server over its
    /// limit).
    pub fn enforced_limits(&self) -> Vec<String> {
        let mut limits = self.inner.runtime.enforced_limits();
        if self.inner.project_quotas.is_some() {
            for limit in &mut limits {
                if limit.starts_with("disk:") {
                    *limit = "disk:project-quota".into();
                }
            }
        }
        limits
    }

    /// Holds the server's disk limit with its project quota, where the node has them (tagging
    /// its directory the first time). A failure is logged: the tracking still holds the limit.
    pub(super) async fn apply_project_quota(&self, id: ServerId, disk_mb: i64) {
        let Some(quotas) = self.inner.project_quotas.clone() else { return };
        let dir = self.inner.config.runtime.servers_dir.join(id.to_string());
        let limit = files::limit_bytes(disk_mb);
        // Nothing of the game's runs while a directory is walked to tag it.
        let may_walk = self.state_of(id).is_none_or(|s| !s.is_up() && s != ServerState::Installing);
        let applied = tokio::task::spawn_blocking(move || quotas.apply(id, &dir, limit, may_walk)).await;
        match applied {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(server = %id, "cannot set the project quota: {e}"),
            Err(e) => tracing::warn!(server = %id, "setting the project quota failed: {e}"),
        }
    }

    /// Compares a running server's measured disk use with its limit: the file manager's count
    /// follows what the game wrote, and a server over its limit for longer than the grace is
    /// stopped, with the reason on its console.
    async fn check_disk(&self, id: ServerId, used: u64) {
        let Some(disk_mb) = self.with_slot(id, |s| s.record.spec.limits.disk_mb) else { return };
        if let Some(files) = self.inner.files.lock().expect("files lock").get(&id) {
            files.quota().set_used(used);
        }
        let limit = files::limit_bytes(disk_mb);
        let mib = |b: u64| b as f64 / 1024.0 / 1024.0;
        let over = limit > 0 && used > limit;
        let since = self.with_slot(id, |s| {
            let was = s.over_disk_since;
            s.over_disk_since = if over { Some(was.unwrap_or_else(std::time::Instant::now)) } else { None };
            (was, s.over_disk_since)
        });
        let Some((was, now_over)) = since else { return };
        let grace = self.inner.config.disk_grace;
        match (was, now_over) {
            (None, Some(_)) => self.system_line(
                id,
                &format!(
                    "[cap] the server uses {:.1} MiB of its {:.1} MiB disk limit; it is stopped in {} s unless it frees space",
                    mib(used),
                    mib(limit),
                    grace.as_secs()
                ),
            ),
            (Some(_), None) => self.system_line(id, "[cap] back under the disk limit"),
            _ => {}
        }
        if let Some(since) = now_over
            && since.elapsed() >= grace
        {
            self.system_line(
                id,
                &format!(
                    "[cap] stopping the server: {:.1} MiB used, over its disk limit of {:.1} MiB",
                    mib(used),
                    mib(limit)
                ),
            );
            self.with_slot(id, |s| s.over_disk_since = None);
            if let Err(Outcome::Error { message, .. }) = self.stop(id, Duration::from_secs(30), false).await {
                self.system_line(id, &format!("[cap] the stop failed: {message}"));
            }
        }
    }

    /// Executes one command within `timeout`.
    pub async fn execute(&self, command: Command, timeout: Duration) -> Outcome {
        self.execute_with(command, timeout, None).await
    }

    /// Executes one command within `timeout`; `stream` is this side's end of the request's
    /// byte stream, for a command that moves bytes.
    pub async fn execute_with(
        &self,
        command: Command,
        timeout: Duration,
        stream: Option<streams::StreamEnd>,
    ) -> Outcome {
        match tokio::time::timeout(timeout, self.execute_now(command, stream)).await {
            Ok(outcome) => outcome,
            Err(_) => outcome_error(ErrorCode::Timeout, format!("not done within {} ms", timeout.as_millis())),
        }
    }

    fn check_node(&self, spec: &ServerSpec) -> Result<(), Outcome> {
        match self.node_id() {
            Some(node) if node != spec.node_id => Err(outcome_error(
                ErrorCode::Forbidden,
                format!("server {} belongs to node {}, not to this node {node}", spec.server_id, spec.node_id),
            )),
            _ => Ok(()),
        }
    }

    fn known(&self, id: ServerId) -> Result<(), Outcome> {
        if self.state_of(id).is_some() {
            Ok(())
        } else {
            Err(outcome_error(ErrorCode::NotFound, format!("server {id} is not on this node")))
        }
    }

    async fn execute_now(&self, command: Command, stream: Option<streams::StreamEnd>) -> Outcome {
        let result = match command {
            Command::Files { server_id, op } => return data_outcome(self.files(server_id, op, stream).await),
            Command::Backups { server_id, op } => return data_outcome(self.backups(server_id, op, stream).await),
            Command::Create { server } => self.create(*server).await,
            Command::Install { server_id } => self.install(server_id).await,
            Command::Start { server_id } => self.start_server(server_id).await,
            Command::Stop { server_id, grace_ms } => self.stop(server_id, Duration::from_millis(grace_ms), false).await,
            Command::Restart { server_id, grace_ms } => self.restart(server_id, Duration::from_millis(grace_ms)).await,
            Command::Kill { server_id } => self.kill(server_id).await,
            Command::SendCommand { server_id, line } => self.send_command(server_id, &line).await,
            Command::Delete { server_id } => self.delete(server_id).await,
            Command::Sync { servers, keep } => self.sync(servers, keep).await,
        };
        match result {
            Ok(()) => Outcome::Ok,
            Err(o) => o,
        }
    }

    async fn create(&self, spec: ServerSpec) -> Result<(), Outcome> {
        self.check_node(&spec)?;
        let runtime_spec = spec.runtime_spec().map_err(|e| outcome_error(ErrorCode::Invalid, e))?;
        let id = spec.server_id;
        let lock = self.lock_of(id);
        let _guard = lock.lock().await;
        self.inner.runtime.create(runtime_spec).await.map_err(from_error)?;
        self.files_spec_changed(id, spec.limits.disk_mb);
        self.apply_project_quota(id, spec.limits.disk_mb).await;
        let existed = self
            .with_slot(id, |slot| {
                slot.record.spec = spec.clone();
                self.inner.store.save_logged(&slot.record);
            })
            .is_some();
        if !existed {
            let record = ServerRecord {
                spec,
                state: ServerState::Offline.as_str().into(),
                seq_ceiling: 0,
                installed: false,
                last_crash_ms: None,
            };
            self.insert_slot(record, ServerState::Offline, 0);
        }
        Ok(())
    }

    async fn install(&self, id: ServerId) -> Result<(), Outcome> {
        self.known(id)?;
        let lock = self.lock_of(id);
        let guard = lock.lock().await;
        match self.state_of(id) {
            Some(s) if s.is_up() || s == ServerState::Installing || s == ServerState::Stopping => {
                return Err(outcome_error(ErrorCode::Conflict, format!("cannot install while the server is {s}")));
            }
            _ => {}
        }
        self.set_state(id, ServerState::Installing, None);
        // `installing` keeps starts away; the lock is not held for the script's whole run, so
        // spec updates and syncs are not held up by a long install.
        drop(guard);
        let agent = self.clone();
        tokio::spawn(async move {
            let script = agent.with_slot(id, |s| s.record.spec.install.clone()).flatten();
            let ok = match script {
                None => true,
                Some(install) => {
                    agent.system_line(id, "[cap] running the install script");
                    let install =
                        Install { script: install.script, entrypoint: install.entrypoint, image: install.image };
                    match agent.inner.runtime.install(id, &install).await {
                        Ok(RuntimeStatus::Exited { code: Some(0), .. }) => true,
                        Ok(status) => {
                            agent.system_line(id, &format!("[cap] the install script failed: {status:?}"));
                            false
                        }
                        Err(e) => {
                            agent.system_line(id, &format!("[cap] the install script could not run: {e}"));
                            false
                        }
                    }
                }
            };
            agent.with_slot(id, |s| s.record.installed = ok);
            agent.set_state(id, if ok { ServerState::Offline } else { ServerState::InstallFailed }, None);
        });
        Ok(())
    }

    async fn start_server(&self, id: ServerId) -> Result<(), Outcome> {
        self.known(id)?;
        let lock = self.lock_of(id);
        let _guard = lock.lock().await;
        self.start_locked(id).await
    }

    async fn start_locked(&self, id: ServerId) -> Result<(), Outcome> {
        match self.state_of(id) {
            Some(ServerState::Offline | ServerState::Crashed | ServerState::Unknown) => {}
            Some(s) => return Err(outcome_error(ErrorCode::Conflict, format!("cannot start a server that is {s}"))),
            None => return Err(outcome_error(ErrorCode::NotFound, "no such server")),
        }
        if matches!(self.inner.runtime.status(id).await, Ok(RuntimeStatus::Running { .. })) {
            return Err(outcome_error(ErrorCode::Conflict, "the server is already running"));
        }
        let environment = self.with_slot(id, |s| s.record.spec.environment.clone()).unwrap_or_default();
        if let Err(refused) = ports::check_allocation(&environment) {
            if let Outcome::Error { message, .. } = &refused {
                self.system_line(id, &format!("[cap] cannot start: {message}"));
            }
            return Err(refused);
        }
        let run = self.next_run(id);
        self.set_state(id, ServerState::Starting, None);
        if let Err(e) = self.inner.runtime.start(id).await {
            self.system_line(id, &format!("[cap] cannot start: {e}"));
            self.set_state(id, ServerState::Offline, None);
            return Err(from_error(e));
        }
        self.spawn_watcher(id, run);
        Ok(())
    }

    /// Watches one run: ready, then exit, then what the exit means.
    fn spawn_watcher(&self, id: ServerId, run: u64) {
        let agent = self.clone();
        tokio::spawn(async move {
            let runtime = &agent.inner.runtime;
            let exit = tokio::select! {
                ready = runtime.wait_ready(id) => {
                    if ready.is_ok() && agent.state_of(id) == Some(ServerState::Starting) && agent.current_run(id) == Some(run) {
                        agent.set_state(id, ServerState::Running, None);
                    }
                    runtime.wait_exit(id).await
                }
                exit = runtime.wait_exit(id) => exit,
            };
            if agent.current_run(id) != Some(run) {
                return;
            }
            let (code, signal) = match exit {
                Ok(RuntimeStatus::Exited { code, signal }) => (code, signal),
                _ => (None, None),
            };
            agent.exited(id, run, code, signal).await;
        });
    }

    fn current_run(&self, id: ServerId) -> Option<u64> {
        self.with_slot(id, |s| s.run)
    }

    async fn exited(&self, id: ServerId, run: u64, code: Option<i32>, signal: Option<i32>) {
        let lock = self.lock_of(id);
        let _guard = lock.lock().await;
        if self.current_run(id) != Some(run) {
            return;
        }
        let Some((requested, restart_after, last_crash)) =
            self.with_slot(id, |s| (s.stop_requested, s.restart_after_stop, s.record.last_crash_ms))
        else {
            return;
        };
        let exit = Some(ExitInfo { code, signal });
        if restart_after {
            self.set_state(id, ServerState::Offline, exit);
            if let Err(Outcome::Error { message, .. }) = self.start_locked(id).await {
                self.system_line(id, &format!("[cap] restart failed: {message}"));
            }
            return;
        }
        let at = now();
        let decision =
            decide(&self.inner.config.restart, ProcessExit { code, signal, requested }, last_crash.map(Timestamp), at);
        if decision.is_crash() {
            self.with_slot(id, |s| s.record.last_crash_ms = Some(at.millis()));
        }
        match decision {
            ExitDecision::Stopped => self.set_state(id, ServerState::Offline, exit),
            ExitDecision::Restart => {
                self.system_line(id, "[cap] the server crashed; restarting it once");
                self.set_state(id, ServerState::Crashed, exit);
                if let Err(Outcome::Error { message, .. }) = self.start_locked(id).await {
                    self.system_line(id, &format!("[cap] restart failed: {message}"));
                }
            }
            ExitDecision::StayCrashed { reason } => {
                self.system_line(id, &format!("[cap] the server crashed: {reason}"));
                self.set_state(id, ServerState::Crashed, exit);
            }
        }
    }

    async fn stop(&self, id: ServerId, grace: Duration, restart: bool) -> Result<(), Outcome> {
        self.known(id)?;
        let lock = self.lock_of(id);
        let _guard = lock.lock().await;
        match self.state_of(id) {
            Some(ServerState::Starting | ServerState::Running) => {}
            Some(s) => return Err(outcome_error(ErrorCode::Conflict, format!("cannot stop a server that is {s}"))),
            None => return Err(outcome_error(ErrorCode::NotFound, "no such server")),
        }
        self.with_slot(id, |s| {
            s.stop_requested = true;
            s.restart_after_stop = restart;
        });
        self.set_state(id, ServerState::Stopping, None);
        let agent = self.clone();
        tokio::spawn(async move {
            if let Err(e) = agent.inner.runtime.stop(id, grace).await {
                agent.system_line(id, &format!("[cap] stop failed: {e}"));
            }
        });
        Ok(())
    }

    async fn restart(&self, id: ServerId, grace: Duration) -> Result<(), Outcome> {
        self.known(id)?;
        match self.state_of(id) {
            Some(ServerState::Starting | ServerState::Running) => self.stop(id, grace, true).await,
            _ => self.start_server(id).await,
        }
    }

    async fn kill(&self, id: ServerId) -> Result<(), Outcome> {
        self.known(id)?;
        if !matches!(self.inner.runtime.status(id).await, Ok(RuntimeStatus::Running { .. })) {
            return Err(outcome_error(ErrorCode::Conflict, "the server is not running"));
        }
        self.with_slot(id, |s| {
            s.stop_requested = true;
            s.restart_after_stop = false;
        });
        self.inner.runtime.kill(id).await.map_err(from_error)
    }

    async fn send_command(&self, id: ServerId, line: &str) -> Result<(), Outcome> {
        self.known(id)?;
        self.inner.runtime.send_command(id, line).await.map_err(from_error)
    }

    async fn delete(&self, id: ServerId) -> Result<(), Outcome> {
        if self.state_of(id).is_none() {
            return Ok(());
        }
        let lock = self.lock_of(id);
        let _guard = lock.lock().await;
        self.with_slot(id, |s| s.run += 1);
        match self.inner.runtime.remove(id).await {
            Ok(()) | Err(capcore::Error::NotFound { .. }) => {}
            Err(e) => return Err(from_error(e)),
        }
        if let Some(slot) = self.inner.servers.lock().expect("servers lock").remove(&id)
            && let Some(f) = slot.forwarder
        {
            f.abort();
        }
        self.inner.locks.lock().expect("locks lock").remove(&id);
        self.files_forget(id);
        if let Some(quotas) = self.inner.project_quotas.clone() {
            let _ = tokio::task::spawn_blocking(move || quotas.forget(id, true)).await;
        }
        self.delete_offsite(id, self.inner.backups.list(id).unwrap_or_default()).await;
        if let Err(e) = self.inner.backups.remove_server(id) {
            tracing::warn!(server = %id, error = %e, "cannot delete the server's backups");
        }
        self.inner.store.remove(id).map_err(|e| outcome_error(ErrorCode::Internal, e.to_string()))
    }

    /// Reconciles to the panel's complete list: creates what is missing (and installs what was
    /// never installed), removes what the panel no longer has, and reports every state.
    async fn sync(&self, specs: Vec<ServerSpec>, keep: Vec<ServerId>) -> Result<(), Outcome> {
        for spec in &specs {
            self.check_node(spec)?;
        }
        let mut wanted: std::collections::HashSet<ServerId> = specs.iter().map(|s| s.server_id).collect();
        wanted.extend(keep.iter().copied());
        let extra: Vec<ServerId> =
            self.servers().into_iter().map(|(id, _)| id).filter(|id| !wanted.contains(id)).collect();
        for id in extra {
            tracing::info!(server = %id, "removing a server the panel no longer has");
            self.delete(id).await?;
        }
        let mut failures = Vec::new();
        for spec in specs {
            let id = spec.server_id;
            if let Err(Outcome::Error { message, .. }) = self.create(spec).await {
                failures.push(format!("{id}: {message}"));
                continue;
            }
            let lock = self.lock_of(id);
            let guard = lock.lock().await;
            let (installed, state) =
                self.with_slot(id, |s| (s.record.installed, s.state)).unwrap_or((true, ServerState::Offline));
            if !installed && state == ServerState::Offline {
                drop(guard);
                let _ = self.install(id).await;
            } else {
                // The panel may have marked it unknown while we were apart: say what it is
                // (under the server's lock, so a change cannot slip in between).
                self.set_state(id, state, None);
            }
        }
        // Kept servers (no spec this time) still get their true state reported.
        for id in keep {
            let lock = self.lock_of(id);
            let _guard = lock.lock().await;
            if let Some(state) = self.state_of(id) {
                self.set_state(id, state, None);
            }
        }
        if failures.is_empty() { Ok(()) } else { Err(outcome_error(ErrorCode::Invalid, failures.join("; "))) }
    }
}

/// The runtime the configuration asks for, or [`Unavailable`] with the reason it cannot be had.
async fn make_runtime(config: &AgentConfig) -> (Arc<dyn GameRuntime>, Option<String>) {
    let Some(options) = &config.docker else {
        return (Arc::new(ProcessRuntime::new(config.runtime.clone())), None);
    };
    #[cfg(feature = "docker")]
    {
        use crate::runtime::docker::{DockerRuntime, DockerRuntimeConfig};
        let process = &config.runtime;
        let mut docker = DockerRuntimeConfig::new(&process.servers_dir, &process.state_dir);
        docker.host = options.host.clone();
        docker.console = process.console;
        docker.run_as = process.run_as;
        docker.kill_wait = process.kill_wait;
        docker.network_mode = options.network_mode.clone();
        docker.read_only_root = options.read_only_root;
        match DockerRuntime::connect(docker).await {
            Ok(runtime) => (Arc::new(runtime), None),
            Err(why) => (Arc::new(Unavailable::new("docker", why.clone())), Some(why)),
        }
    }
    #[cfg(not(feature = "docker"))]
    {
        let _ = options;
        let why = "this agent was built without the `docker` feature".to_string();
        (Arc::new(Unavailable::new("docker", why.clone())), Some(why))
    }
}
