//! Live server feeds for browsers: `GET /api/servers/{id}/ws`.
//!
//! The gateway publishes each server's console lines, state changes and stats into the
//! [`LiveHub`]; every message is serialised once and shared by all subscribers. A new
//! subscriber gets a hello, the recent console lines (bounded per server), the latest stats and
//! the recent stats history (for charts), then the live feed. Each subscriber reads from a bounded queue: one that falls behind is
//! disconnected with a reason, and never slows the game, the agent or other subscribers.
//!
//! Permissions are checked per message: console lines go out only while the caller holds
//! SERVER_CONSOLE (re-evaluated, with the credential re-authenticated, at most a second
//! old), and every inbound command or power action is checked when it arrives. Inbound
//! messages are rate limited per connection.
//!
//! Messages to the browser: `{"type":"hello","server_id","state","node_online","permissions"}`,
//! `{"type":"console","stream","line"}`, `{"type":"state","state"}` (`unknown` when the
//! server's node went offline, a real state only from a connected node),
//! `{"type":"stats","cpu_percent","memory_bytes","disk_bytes","uptime_ms"}`,
//! `{"type":"history","samples":[{"at_ms","cpu_percent","memory_bytes","disk_bytes"}]}` (on
//! connect, when there is any), `{"type":"backup","backup":{...}}` (a backup's progress and end,
//! to subscribers holding BACKUP_VIEW),
//! `{"type":"error","error","message"}`. From the browser: `{"type":"command","command"}` and
//! `{"type":"power","action":"start"|"stop"|"restart"|"kill"}`.

use super::PanelState;
use super::agents::PowerAction;
use super::cluster::{Cluster, FrameKind, SharedFrame};
use super::error::{ApiError, ApiResult};
use super::extract::{ACCESS_COOKIE, Actor, ApiPath, ApiQuery, bearer, cookie, parse_id};
use crate::backend::Credential;
use crate::ids::ServerId;
use crate::permission::{Permission, Scope, Subject, effective, is_allowed};
use crate::protocol::v1::ConsoleStream;
use crate::state::ServerState;
use crate::{Error, Result};
use axum::extract::State;
use axum::extract::ws::{
    CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};

/// Stats samples kept per server for charts (at the agents' default of one every 5 s: 10
/// minutes).
pub const HISTORY_SAMPLES: usize = 120;

/// One stats sample of a server's history.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct StatsSample {
    /// When this instance received it, milliseconds since the epoch.
    pub at_ms: i64,
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    /// Bytes received and sent since the server started, where the runtime can tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::protocol::v1::NetworkUse>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn remember_sample(feed: &Feed, sample: StatsSample) {
    let mut history = feed.history.lock().expect("history lock");
    if history.len() >= HISTORY_SAMPLES {
        history.pop_front();
    }
    history.push_back(sample);
}

/// One message for subscribers, serialised once.
#[derive(Clone, Debug)]
pub struct LiveFrame {
    /// The permission a subscriber needs beyond SERVER_VIEW: SERVER_CONSOLE for console lines,
    /// BACKUP_VIEW for backup progress; none for state and stats.
    pub needs: Option<Permission>,
    pub json: Utf8Bytes,
}

#[derive(Debug)]
struct Feed {
    /// Recent console lines with their numbers (this instance's, or the holder's for lines
    /// relayed from another instance).
    replay: Mutex<VecDeque<(u64, Utf8Bytes)>>,
    stats: Mutex<Option<Utf8Bytes>>,
    /// Recent stats, oldest first, for charts.
    history: Mutex<VecDeque<StatsSample>>,
    tx: broadcast::Sender<LiveFrame>,
    /// The last console line number given out here.
    seq: AtomicU64,
}

/// Every server's live feed.
#[derive(Debug)]
pub struct LiveHub {
    feeds: RwLock<HashMap<ServerId, Arc<Feed>>>,
    replay_lines: usize,
    queue: usize,
    /// Where frames from this instance's agents also go, for other panel instances.
    cluster: Option<Arc<Cluster>>,
}

impl LiveHub {
    pub fn new(replay_lines: usize, queue: usize) -> Self {
        Self { feeds: RwLock::new(HashMap::new()), replay_lines, queue: queue.max(1), cluster: None }
    }

    /// A hub that also shares what its agents send with the other instances of `cluster`.
    pub fn shared(replay_lines: usize, queue: usize, cluster: Arc<Cluster>) -> Self {
        Self { cluster: Some(cluster), ..Self::new(replay_lines, queue) }
    }

    fn feed(&self, id: ServerId) -> Arc<Feed> {
        if let Some(f) = self.feeds.read().expect("live hub lock").get(&id) {
            return f.clone();
        }
        self.feeds
            .write()
            .expect("live hub lock")
            .entry(id)
            .or_insert_with(|| {
                Arc::new(Feed {
                    replay: Mutex::new(VecDeque::new()),
                    stats: Mutex::new(None),
                    history: Mutex::new(VecDeque::new()),
                    tx: broadcast::channel(self.queue).0,
                    seq: AtomicU64::new(0),
                })
            })
            .clone()
    }

    fn remember(&self, feed: &Feed, seq: u64, json: Utf8Bytes) {
        if self.replay_lines == 0 {
            return;
        }
        let mut replay = feed.replay.lock().expect("replay lock");
        if replay.len() >= self.replay_lines {
            replay.pop_front();
        }
        replay.push_back((seq, json));
    }

    fn share(&self, id: ServerId, seq: u64, kind: FrameKind, json: &Utf8Bytes) {
        if let Some(cluster) = &self.cluster {
            cluster.share(id, SharedFrame { seq, kind, json: json.as_str().to_owned() });
        }
    }

    pub fn console(&self, id: ServerId, stream: ConsoleStream, line: &str) {
        let json = Utf8Bytes::from(json!({"type": "console", "stream": stream, "line": line}).to_string());
        let feed = self.feed(id);
        let seq = feed.seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.remember(&feed, seq, json.clone());
        self.share(id, seq, FrameKind::Console, &json);
        let _ = feed.tx.send(LiveFrame { needs: Some(Permission::SERVER_CONSOLE), json });
    }

    pub fn state(&self, id: ServerId, state: ServerState) {
        let json = Utf8Bytes::from(json!({"type": "state", "state": state}).to_string());
        self.share(id, 0, FrameKind::State, &json);
        let _ = self.feed(id).tx.send(LiveFrame { needs: None, json });
    }

    /// A server's resource use (`sample.at_ms` is set here, to when it arrived).
    pub fn stats(&self, id: ServerId, sample: StatsSample, uptime_ms: u64) {
        let mut frame = json!({"type": "stats", "cpu_percent": sample.cpu_percent, "memory_bytes": sample.memory_bytes,
                   "disk_bytes": sample.disk_bytes, "uptime_ms": uptime_ms});
        if let Some(network) = sample.network {
            frame["network"] = json!(network);
        }
        let json = Utf8Bytes::from(frame.to_string());
        let feed = self.feed(id);
        *feed.stats.lock().expect("stats lock") = Some(json.clone());
        remember_sample(&feed, StatsSample { at_ms: now_ms(), ..sample });
        self.share(id, 0, FrameKind::Stats, &json);
        let _ = feed.tx.send(LiveFrame { needs: None, json });
    }

    /// A backup's progress or end.
    pub fn backup(&self, id: ServerId, backup: &crate::protocol::v1::backups::BackupRecord) {
        let json = Utf8Bytes::from(json!({"type": "backup", "backup": backup}).to_string());
        self.share(id, 0, FrameKind::Backup, &json);
        let _ = self.feed(id).tx.send(LiveFrame { needs: Some(Permission::BACKUP_VIEW), json });
    }

    /// A frame from another instance's agent: kept and passed on like a local one, not shared
    /// again.
    pub(crate) fn relay(&self, id: ServerId, kind: FrameKind, seq: u64, json: String) {
        let json = Utf8Bytes::from(json);
        let feed = self.feed(id);
        match kind {
            FrameKind::Console => self.remember(&feed, seq, json.clone()),
            FrameKind::Stats => {
                *feed.stats.lock().expect("stats lock") = Some(json.clone());
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(json.as_str()) {
                    let sample = StatsSample {
                        at_ms: now_ms(),
                        cpu_percent: v["cpu_percent"].as_f64().unwrap_or(0.0),
                        memory_bytes: v["memory_bytes"].as_u64().unwrap_or(0),
                        disk_bytes: v["disk_bytes"].as_u64().unwrap_or(0),
                        network: serde_json::from_value(v["network"].clone()).ok(),
                    };
                    remember_sample(&feed, sample);
                }
            }
            FrameKind::State | FrameKind::Backup => {}
        }
        let needs = match kind {
            FrameKind::Console => Some(Permission::SERVER_CONSOLE),
            FrameKind::Backup => Some(Permission::BACKUP_VIEW),
            FrameKind::State | FrameKind::Stats => None,
        };
        let _ = feed.tx.send(LiveFrame { needs, json });
    }

    /// Replaces the server's recent lines (and stats, when given) with the holder's.
    pub(crate) fn seed(&self, id: ServerId, lines: Vec<(u64, String)>, stats: Option<String>) {
        let feed = self.feed(id);
        let skip = lines.len().saturating_sub(self.replay_lines);
        *feed.replay.lock().expect("replay lock") =
            lines.into_iter().skip(skip).map(|(seq, json)| (seq, Utf8Bytes::from(json))).collect();
        if let Some(stats) = stats {
            *feed.stats.lock().expect("stats lock") = Some(Utf8Bytes::from(stats));
        }
    }

    /// The server's recent stats samples, oldest first.
    pub fn history(&self, id: ServerId) -> Vec<StatsSample> {
        let Some(feed) = self.feeds.read().expect("live hub lock").get(&id).cloned() else { return Vec::new() };
        feed.history.lock().expect("history lock").iter().copied().collect()
    }

    /// The server's recent lines with their numbers, and its latest stats.
    pub(crate) fn recent(&self, id: ServerId) -> (Vec<(u64, String)>, Option<String>) {
        let Some(feed) = self.feeds.read().expect("live hub lock").get(&id).cloned() else { return (Vec::new(), None) };
        let lines =
            feed.replay.lock().expect("replay lock").iter().map(|(seq, j)| (*seq, j.as_str().to_owned())).collect();
        let stats = feed.stats.lock().expect("stats lock").as_ref().map(|j| j.as_str().to_owned());
        (lines, stats)
    }

    /// How many browsers are subscribed to the server's feed now.
    pub fn subscribers(&self, id: ServerId) -> usize {
        self.feeds.read().expect("live hub lock").get(&id).map_or(0, |f| f.tx.receiver_count())
    }

    /// Drops a deleted server's feed (its subscribers see the end of the stream).
    pub fn forget(&self, id: ServerId) {
        self.feeds.write().expect("live hub lock").remove(&id);
    }

    /// The replay, the latest stats and the live receiver, taken together so nothing falls
    /// between them.
    fn subscribe(&self, id: ServerId) -> (Vec<Utf8Bytes>, Option<Utf8Bytes>, broadcast::Receiver<LiveFrame>) {
        let feed = self.feed(id);
        let rx = feed.tx.subscribe();
        let replay = feed.replay.lock().expect("replay lock").iter().map(|(_, json)| json.clone()).collect();
        let stats = feed.stats.lock().expect("stats lock").clone();
        (replay, stats, rx)
    }
}

/// What the browser may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Inbound {
    Command { command: String },
    Power { action: PowerAction },
}

/// The caller's credential, kept to re-authenticate while the socket lives.
#[derive(Clone, Debug)]
enum HeldCredential {
    ApiKey(String),
    Access(String),
}

fn held_credential(s: &PanelState, headers: &HeaderMap) -> Option<(HeldCredential, bool)> {
    if let Some(token) = bearer(headers) {
        let token = token.to_string();
        let held = if token.starts_with(s.config.api_key_prefix.as_str()) {
            HeldCredential::ApiKey(token)
        } else {
            HeldCredential::Access(token)
        };
        return Some((held, false));
    }
    cookie(headers, ACCESS_COOKIE).map(|t| (HeldCredential::Access(t.to_string()), true))
}

/// A cookie-authenticated socket must come from a page of this panel: browsers send cookies
/// with cross-site WebSocket handshakes, so the Origin is checked (no CSRF header exists here).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else { return false };
    origin.split_once("://").is_some_and(|(_, rest)| rest.trim_end_matches('/') == host)
}

/// `?summary=true`: the server's state and resource use only, without console lines (live or
/// replayed), stats history or backup progress; what a list of servers needs.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct FeedQuery {
    #[serde(default)]
    summary: bool,
}

pub(crate) async fn server_ws(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<FeedQuery>,
    headers: HeaderMap,
    upgrade: std::result::Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let id: ServerId = parse_id(&id, "server")?;
    let (server, subject) = s.server_access(&actor, id, Permission::SERVER_VIEW, "server.console").await?;
    let (credential, by_cookie) =
        held_credential(&s, &headers).ok_or_else(|| Error::unauthorized("authentication required"))?;
    if by_cookie && !same_origin(&headers) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_mismatch",
            "a cookie-authenticated WebSocket must come from a page of this panel",
        ));
    }
    let upgrade = upgrade.map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, "websocket_required", "this route takes a WebSocket upgrade")
    })?;
    let hello = json!({
        "type": "hello",
        "server_id": id,
        "state": server.state,
        "node_online": s.node_online(server.node_id).await,
        "permissions": effective(&subject, Scope::Server(id)).names(),
    });
    let session = Session {
        s: s.clone(),
        actor,
        credential,
        id,
        node: server.node_id,
        checked: Instant::now(),
        subject,
        summary: query.summary,
    };
    Ok(upgrade
        .read_buffer_size(16 * 1024)
        .write_buffer_size(16 * 1024)
        .max_message_size(16 * 1024)
        .on_upgrade(move |socket| session.run(socket, hello)))
}

#[derive(Clone)]
struct Session {
    s: Arc<PanelState>,
    actor: Actor,
    credential: HeldCredential,
    id: ServerId,
    node: crate::ids::NodeId,
    subject: Subject,
    checked: Instant,
    /// State and stats only (`?summary=true`).
    summary: bool,
}

impl Session {
    /// Re-authenticates and re-reads the caller's relation to the server when the last check
    /// is older than a second.
    async fn refresh(&mut self) -> Result<()> {
        if self.checked.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        let credential = match &self.credential {
            HeldCredential::ApiKey(k) => Credential::ApiKey(k),
            HeldCredential::Access(t) => Credential::AccessToken(t),
        };
        let principal = self.s.auth.authenticate(credential, self.s.now()).await?;
        if principal.user_id != self.actor.principal.user_id {
            return Err(Error::unauthorized("the credential changed hands"));
        }
        self.actor.principal = principal;
        self.subject = self.s.server_subject(&self.actor, self.id).await?;
        if !is_allowed(&self.subject, Permission::SERVER_VIEW, Scope::Server(self.id)) {
            return Err(Error::not_found("server"));
        }
        self.checked = Instant::now();
        Ok(())
    }

    fn may(&self, permission: Permission) -> bool {
        is_allowed(&self.subject, permission, Scope::Server(self.id))
    }

    async fn run(mut self, mut socket: WebSocket, mut hello: serde_json::Value) {
        // Frames of the server from other panel instances, while this browser watches.
        let _follow = self.s.cluster.follow(&self.s, self.id, self.node).await;
        let (replay, stats, mut live) = self.s.live.subscribe(self.id);
        // The state as of now that the feed is subscribed: a change from here on is in the feed.
        if let Ok(server) = self.s.db.servers().get(self.id).await {
            hello["state"] = json!(server.state);
        }
        let mut first = vec![Utf8Bytes::from(hello.to_string())];
        if !self.summary && self.may(Permission::SERVER_CONSOLE) {
            first.extend(replay);
        }
        first.extend(stats);
        let history = if self.summary { Vec::new() } else { self.s.live.history(self.id) };
        if !history.is_empty() {
            first.push(Utf8Bytes::from(json!({"type": "history", "samples": history}).to_string()));
        }
        let timeout = self.s.config.ws_send_timeout;
        if !send_all(&mut socket, first, timeout).await {
            return;
        }
        let limit = self.s.config.ws_messages_per_second.max(1);
        let mut window = (Instant::now(), 0u32);
        // Browser messages are handled one at a time by a worker, so a power action waiting on
        // its agent never holds up the live feed.
        let (inbound_tx, mut inbound_rx) = mpsc::channel::<Utf8Bytes>(4);
        let (reply_tx, mut replies) = mpsc::channel::<Utf8Bytes>(4);
        let mut worker_session = self.clone();
        let worker = tokio::spawn(async move {
            while let Some(text) = inbound_rx.recv().await {
                let reply = worker_session.inbound(&text).await;
                if let Some(reply) = reply
                    && reply_tx.send(reply).await.is_err()
                {
                    return;
                }
            }
        });
        let _stop_worker = AbortOnDrop(worker);
        loop {
            // Live frames first: whatever was published before an inbound message is answered
            // goes out before the answer.
            tokio::select! {
                biased;
                frame = live.recv() => {
                    let frame = match frame {
                        Ok(f) => f,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            close(&mut socket, 1008, &too_slow(n), timeout).await;
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => {
                            close(&mut socket, 1001, "the server was deleted", timeout).await;
                            return;
                        }
                    };
                    if let Err(e) = self.refresh().await {
                        close(&mut socket, 1008, &e.to_string(), timeout).await;
                        return;
                    }
                    let (console, backups) = (
                        !self.summary && self.may(Permission::SERVER_CONSOLE),
                        !self.summary && self.may(Permission::BACKUP_VIEW),
                    );
                    let allowed = |f: &LiveFrame| match f.needs {
                        Some(Permission::SERVER_CONSOLE) => console,
                        Some(Permission::BACKUP_VIEW) => backups,
                        Some(_) => false,
                        None => true,
                    };
                    // This frame and whatever else is already queued go out in one write.
                    let mut batch: Vec<Utf8Bytes> = Vec::new();
                    if allowed(&frame) {
                        batch.push(frame.json);
                    }
                    while batch.len() < 256 {
                        match live.try_recv() {
                            Ok(f) if allowed(&f) => batch.push(f.json),
                            Ok(_) => {}
                            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                                close(&mut socket, 1008, &too_slow(n), timeout).await;
                                return;
                            }
                            Err(_) => break,
                        }
                    }
                    if !batch.is_empty() && !send_all(&mut socket, batch, timeout).await {
                        return;
                    }
                }
                reply = replies.recv() => {
                    // The worker re-checked the caller's permissions: so does the feed now.
                    self.checked = Instant::now() - Duration::from_secs(2);
                    if let Some(reply) = reply
                        && !send(&mut socket, reply, timeout).await
                    {
                        return;
                    }
                }
                inbound = socket.recv() => {
                    let text = match inbound {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                        Some(Ok(_)) => continue,
                    };
                    if window.0.elapsed() >= Duration::from_secs(1) {
                        window = (Instant::now(), 0);
                    }
                    window.1 += 1;
                    if window.1 > limit * 5 {
                        close(&mut socket, 1008, "too many messages", timeout).await;
                        return;
                    }
                    let reply = if window.1 > limit {
                        Some(error_frame("rate_limited", &format!("at most {limit} messages per second")))
                    } else if inbound_tx.try_send(text).is_err() {
                        Some(error_frame("busy", "earlier messages are still being handled; wait for their answers"))
                    } else {
                        None
                    };
                    if let Some(reply) = reply
                        && !send(&mut socket, reply, timeout).await
                    {
                        return;
                    }
                }
            }
        }
    }

    /// Handles one browser message; returns an error frame to send back, if any.
    async fn inbound(&mut self, text: &str) -> Option<Utf8Bytes> {
        let message: Inbound = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => return Some(error_frame("bad_message", &format!("not a valid message: {e}"))),
        };
        self.checked = Instant::now() - Duration::from_secs(2);
        if let Err(e) = self.refresh().await {
            let api = ApiError::from(e);
            return Some(error_frame(api.code, &api.message));
        }
        let outcome = match message {
            Inbound::Command { command } => {
                super::routes::send_console_command(&self.s, &self.actor, self.id, &command).await
            }
            Inbound::Power { action } => super::routes::power_action(&self.s, &self.actor, self.id, action).await,
        };
        outcome.err().map(|e| {
            let api = ApiError::from(e);
            error_frame(api.code, &api.message)
        })
    }
}

/// Aborts the task when dropped (the socket's worker ends with the socket).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a subscriber that fell behind is closed.
fn too_slow(dropped: u64) -> String {
    format!("too slow: {dropped} messages were dropped; reconnect")
}

fn error_frame(code: &str, message: &str) -> Utf8Bytes {
    Utf8Bytes::from(json!({"type": "error", "error": code, "message": message}).to_string())
}

/// Sends one frame; a browser that does not take it within `timeout` is given up on.
async fn send(socket: &mut WebSocket, frame: Utf8Bytes, timeout: Duration) -> bool {
    matches!(tokio::time::timeout(timeout, socket.send(Message::Text(frame))).await, Ok(Ok(())))
}

/// Sends frames with one flush at the end.
async fn send_all(socket: &mut WebSocket, frames: Vec<Utf8Bytes>, timeout: Duration) -> bool {
    use futures::SinkExt;
    let write = async {
        for f in frames {
            socket.feed(Message::Text(f)).await?;
        }
        socket.flush().await
    };
    matches!(tokio::time::timeout(timeout, write).await, Ok(Ok(())))
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str, timeout: Duration) {
    // A close reason is at most 123 bytes.
    let mut reason = reason.to_string();
    while reason.len() > 120 {
        reason.pop();
    }
    let frame = CloseFrame { code, reason: Utf8Bytes::from(reason) };
    let _ = tokio::time::timeout(timeout, socket.send(Message::Close(Some(frame)))).await;
    // Then wait (at most `timeout`) for the browser's close, reading and dropping whatever it
    // still sends: a socket closed with unread data is reset, and the reset can destroy the
    // close frame before the browser reads it, losing the reason.
    let drained = async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, drained).await;
}

#[cfg(test)]
mod history_tests {
    use super::*;

    #[test]
    fn the_stats_history_keeps_the_newest_samples_in_order() {
        let hub = LiveHub::new(10, 16);
        let id = ServerId(uuid::Uuid::from_u128(5));
        assert!(hub.history(id).is_empty());
        for i in 0..(HISTORY_SAMPLES as u64 + 30) {
            let sample =
                StatsSample { at_ms: 0, cpu_percent: i as f64, memory_bytes: i, disk_bytes: 2 * i, network: None };
            hub.stats(id, sample, 0);
        }
        let history = hub.history(id);
        assert_eq!(history.len(), HISTORY_SAMPLES, "bounded");
        assert_eq!(history.first().unwrap().memory_bytes, 30, "the oldest were dropped");
        assert_eq!(history.last().unwrap().disk_bytes, 2 * (HISTORY_SAMPLES as u64 + 29));
        assert!(history.windows(2).all(|w| w[0].memory_bytes < w[1].memory_bytes && w[0].at_ms <= w[1].at_ms));
    }
}
