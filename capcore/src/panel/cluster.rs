//! Several panel instances behind one load balancer, sharing one cache (Redis): each agent is
//! connected to one instance, and the others reach it through the cache's publish/subscribe.
//!
//! - **Who holds a node.** The instance an agent is connected to records itself (and the agent's
//!   status) under `agent-node:<node>`, refreshed with every heartbeat and expiring after the
//!   heartbeats a node may miss, so a crashed instance's nodes read as offline soon after.
//! - **Commands.** A call to a node held elsewhere is published on the holder's channel
//!   `panel:<instance>`; the holder calls its agent and publishes the outcome on the caller's
//!   channel. Errors keep their kind (conflict, invalid, unavailable) across the hop.
//! - **Console fan-out.** Every console line, state change and stats sample an instance gets from
//!   its agents goes out on `live:<server>` (batched, from a bounded queue, so a slow cache never
//!   slows an agent; a full queue drops frames, as a slow browser would). An instance follows a
//!   server's channel while at least one of its browsers watches the server, and on the first
//!   one asks the holder for its recent lines, numbered, so lines that arrive both ways are
//!   shown once.
//!
//! With the memory cache there is one instance and all of this stays in the process.

use super::PanelState;
use super::agents::AgentStatus;
use crate::backend::Cache;
use crate::ids::{NodeId, ServerId};
use crate::protocol::v1::Command;
use crate::{Error, Result};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What a live frame is, so a follower files it where the origin did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameKind {
    Console,
    State,
    Stats,
    Backup,
}

/// A frame an instance's own agents produced, on its way to the other instances.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SharedFrame {
    /// Numbered per server by the instance that produced it (console lines only; 0 otherwise).
    pub seq: u64,
    pub kind: FrameKind,
    /// The frame as browsers get it.
    pub json: String,
}

/// Frames of one server published together: the origin instance's name, a newline, then the
/// frames as a JSON array, so an instance skips its own batches without parsing them.
fn live_batch(from: &str, frames: &[SharedFrame]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(from.len() + 1 + frames.iter().map(|f| f.json.len() + 32).sum::<usize>());
    payload.extend_from_slice(from.as_bytes());
    payload.push(b'\n');
    serde_json::to_writer(&mut payload, frames).unwrap_or_default();
    payload
}

/// The origin and the frames of a batch, unless it came from `me` or is malformed.
fn parse_live_batch(payload: &[u8], me: &str) -> Option<(String, Vec<SharedFrame>)> {
    let newline = payload.iter().position(|b| *b == b'\n')?;
    let from = std::str::from_utf8(&payload[..newline]).ok()?;
    if from == me {
        return None;
    }
    Some((from.to_string(), serde_json::from_slice(&payload[newline + 1..]).ok()?))
}

/// Messages on an instance's own channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Bus {
    Call { id: u64, from: String, node: NodeId, command: Command, timeout_ms: u64 },
    Replay { id: u64, from: String, server: ServerId },
    Reply { id: u64, reply: Reply },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Done,
    /// The agent answered with data.
    Answered {
        data: crate::protocol::v1::files::Reply,
    },
    /// `what` is what was not found (`file`, `server`).
    Failed {
        kind: String,
        message: String,
        #[serde(default)]
        what: Option<String>,
    },
    Replay {
        lines: Vec<(u64, String)>,
        stats: Option<String>,
    },
}

/// What `agent-node:<node>` holds.
#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    instance: String,
    status: AgentStatus,
}

/// This instance's part of the cluster.
pub struct Cluster {
    instance: String,
    cache: Arc<dyn Cache>,
    /// How long a holder record lives without a refresh.
    holder_ttl: Duration,
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next_id: AtomicU64,
    follows: Mutex<HashMap<ServerId, Follow>>,
    outbox: mpsc::Sender<(ServerId, SharedFrame)>,
    /// Taken by the publisher task when it starts.
    outbox_rx: Mutex<Option<mpsc::Receiver<(ServerId, SharedFrame)>>>,
    /// Frames dropped because the outbox was full.
    dropped: AtomicU64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("instance", &self.instance)
            .field("cache", &self.cache.backend_name())
            .field("following", &self.following())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Follow {
    watchers: usize,
    task: Option<tokio::task::AbortHandle>,
}

/// Frames the outbox holds before it drops (a few seconds of a console flood).
const OUTBOX: usize = 16 * 1024;

/// How long a follower waits for the holder's recent lines.
const REPLAY_WAIT: Duration = Duration::from_secs(2);

fn holder_key(node: NodeId) -> String {
    format!("agent-node:{node}")
}

fn instance_channel(instance: &str) -> String {
    format!("panel:{instance}")
}

fn live_channel(server: ServerId) -> String {
    format!("live:{server}")
}

impl Cluster {
    pub fn new(cache: Arc<dyn Cache>, holder_ttl: Duration) -> Self {
        let (outbox, outbox_rx) = mpsc::channel(OUTBOX);
        Self {
            instance: uuid::Uuid::new_v4().simple().to_string(),
            cache,
            holder_ttl,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            follows: Mutex::new(HashMap::new()),
            outbox,
            outbox_rx: Mutex::new(Some(outbox_rx)),
            dropped: AtomicU64::new(0),
        }
    }

    /// This instance's name in the cluster.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Frames dropped so far because the cache could not keep up.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues a frame of this instance's agents for the other instances; never waits.
    pub(crate) fn share(&self, server: ServerId, frame: SharedFrame) {
        if self.outbox.try_send((server, frame)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Starts the tasks that answer other instances and publish this one's frames. Needs a
    /// Tokio runtime; called when the panel is built.
    pub(crate) fn start(state: &Arc<PanelState>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no Tokio runtime while building the panel: other panel instances cannot reach this one");
            return;
        };
        let Some(outbox) = state.cluster.outbox_rx.lock().expect("outbox lock").take() else { return };
        runtime.spawn(publish(Arc::downgrade(state), state.cluster.cache.clone(), outbox));
        runtime.spawn(listen(Arc::downgrade(state)));
    }

    /// Records this instance as the node's holder (at attach and every heartbeat).
    pub(crate) fn claim(&self, node: NodeId, status: AgentStatus) {
        let cache = self.cache.clone();
        let value = serde_json::to_vec(&Holder { instance: self.instance.clone(), status }).unwrap_or_default();
        let ttl = self.holder_ttl;
        tokio::spawn(async move {
            if let Err(e) = cache.set(&holder_key(node), &value, Some(ttl)).await {
                tracing::warn!(%node, error = %e, "cannot record which panel instance holds the node");
            }
        });
    }

    /// Removes the holder record if it is still this instance's (at detach).
    pub(crate) fn release(&self, node: NodeId) {
        let cache = self.cache.clone();
        let instance = self.instance.clone();
        tokio::spawn(async move {
            let key = holder_key(node);
            if let Ok(Some(bytes)) = cache.get(&key).await
                && serde_json::from_slice::<Holder>(&bytes).is_ok_and(|h| h.instance == instance)
            {
                let _ = cache.delete(&key).await;
            }
        });
    }

    /// The instance holding the node's agent and the agent's status, if any instance does.
    pub async fn holder(&self, node: NodeId) -> Result<Option<(String, AgentStatus)>> {
        let Some(bytes) = self.cache.get(&holder_key(node)).await? else { return Ok(None) };
        Ok(serde_json::from_slice::<Holder>(&bytes).ok().map(|h| (h.instance, h.status)))
    }

    /// Asks `instance` something and waits up to `wait` for its reply.
    async fn ask(&self, instance: &str, wait: Duration, message: impl FnOnce(u64) -> Bus) -> Result<Reply> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, tx);
        let payload = serde_json::to_vec(&message(id)).map_err(|e| Error::internal("cluster message", e))?;
        let sent = self.cache.publish(&instance_channel(instance), &payload).await;
        let reply = match sent {
            Ok(()) => tokio::time::timeout(wait, rx).await,
            Err(e) => {
                self.pending.lock().expect("pending lock").remove(&id);
                return Err(e);
            }
        };
        self.pending.lock().expect("pending lock").remove(&id);
        match reply {
            Ok(Ok(reply)) => Ok(reply),
            _ => Err(Error::Unavailable {
                message: "the panel instance holding the node's agent did not answer".into(),
                source: None,
            }),
        }
    }

    /// Calls the node's agent through the instance that holds it.
    pub(crate) async fn call(
        &self,
        instance: &str,
        node: NodeId,
        command: Command,
        timeout: Duration,
    ) -> Result<crate::protocol::v1::files::Reply> {
        let from = self.instance.clone();
        let timeout_ms = timeout.as_millis() as u64;
        // The holder gives up on its agent after `timeout`; the reply may take a moment more.
        let reply = self
            .ask(instance, timeout + Duration::from_secs(2), |id| Bus::Call { id, from, node, command, timeout_ms })
            .await?;
        match reply {
            Reply::Done => Ok(crate::protocol::v1::files::Reply::Done),
            Reply::Answered { data } => Ok(data),
            Reply::Failed { kind, message, what } => Err(match kind.as_str() {
                "conflict" => Error::conflict(message),
                "invalid" => super::agents::invalid_from(&message, "server"),
                "not_found" if what.as_deref() == Some("file") => Error::not_found("file"),
                "not_found" if what.as_deref() == Some("backup") => Error::not_found("backup"),
                "not_found" => Error::not_found("server"),
                "forbidden" => Error::forbidden(message),
                _ => Error::Unavailable { message, source: None },
            }),
            Reply::Replay { .. } => Err(Error::internal("a replay answered a call", "cluster protocol")),
        }
    }

    /// Follows the server's frames from other instances while the returned guard lives. The
    /// first watcher of a server held elsewhere also gets the holder's recent lines.
    pub(crate) async fn follow(
        self: &Arc<Self>,
        state: &Arc<PanelState>,
        server: ServerId,
        node: NodeId,
    ) -> FollowGuard {
        let guard = FollowGuard { cluster: Arc::downgrade(self), server };
        {
            let mut follows = self.follows.lock().expect("follows lock");
            let follow = follows.entry(server).or_insert(Follow { watchers: 0, task: None });
            follow.watchers += 1;
            if follow.watchers > 1 {
                return guard;
            }
        }
        let subscription = match self.cache.subscribe(&live_channel(server)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%server, error = %e, "cannot follow the server's console from other panel instances");
                return guard;
            }
        };
        // The holder's recent lines, numbered: anything it publishes meanwhile waits in the
        // subscription and is recognised by its number.
        let mut seen: Option<(String, u64)> = None;
        if !state.agents.is_connected(node)
            && let Ok(Some((holder, _))) = self.holder(node).await
            && holder != self.instance
        {
            let from = self.instance.clone();
            match self.ask(&holder, REPLAY_WAIT, |id| Bus::Replay { id, from, server }).await {
                Ok(Reply::Replay { lines, stats }) => {
                    let last = lines.last().map_or(0, |(seq, _)| *seq);
                    state.live.seed(server, lines, stats);
                    seen = Some((holder, last));
                }
                other => tracing::debug!(%server, ?other, "no recent lines from the holding instance"),
            }
        }
        let weak = Arc::downgrade(state);
        let instance = self.instance.clone();
        let task = tokio::spawn(relay(weak, instance, server, subscription, seen));
        let mut follows = self.follows.lock().expect("follows lock");
        match follows.get_mut(&server) {
            Some(follow) => follow.task = Some(task.abort_handle()),
            // Every watcher left while this one was setting up.
            None => task.abort(),
        }
        guard
    }

    fn unfollow(&self, server: ServerId) {
        let mut follows = self.follows.lock().expect("follows lock");
        if let Some(follow) = follows.get_mut(&server) {
            follow.watchers -= 1;
            if follow.watchers == 0 {
                if let Some(task) = &follow.task {
                    task.abort();
                }
                follows.remove(&server);
            }
        }
    }

    /// How many servers this instance follows now.
    pub fn following(&self) -> usize {
        self.follows.lock().expect("follows lock").len()
    }
}

/// Ends following a server when its last watcher here goes.
#[derive(Debug)]
pub struct FollowGuard {
    cluster: Weak<Cluster>,
    server: ServerId,
}

impl Drop for FollowGuard {
    fn drop(&mut self) {
        if let Some(cluster) = self.cluster.upgrade() {
            cluster.unfollow(self.server);
        }
    }
}

/// Publishes this instance's frames, grouped per server, until the panel is gone.
async fn publish(state: Weak<PanelState>, cache: Arc<dyn Cache>, mut outbox: mpsc::Receiver<(ServerId, SharedFrame)>) {
    let mut batch: Vec<(ServerId, SharedFrame)> = Vec::new();
    while outbox.recv_many(&mut batch, 512).await > 0 {
        let Some(state) = state.upgrade() else { return };
        let from = state.cluster.instance.clone();
        drop(state);
        let mut by_server: Vec<(ServerId, Vec<SharedFrame>)> = Vec::new();
        for (server, frame) in batch.drain(..) {
            match by_server.iter_mut().find(|(s, _)| *s == server) {
                Some((_, frames)) => frames.push(frame),
                None => by_server.push((server, vec![frame])),
            }
        }
        for (server, frames) in by_server {
            let payload = live_batch(&from, &frames);
            if let Err(e) = cache.publish(&live_channel(server), &payload).await {
                tracing::debug!(%server, error = %e, "console frames not shared with other panel instances");
            }
        }
    }
}

/// Answers calls and replay requests from other instances, and takes their replies.
async fn listen(state: Weak<PanelState>) {
    let (cache, channel) = match state.upgrade() {
        Some(s) => (s.cluster.cache.clone(), instance_channel(&s.cluster.instance)),
        None => return,
    };
    let mut messages = loop {
        match cache.subscribe(&channel).await {
            Ok(m) => break m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to this panel instance's channel; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                if state.strong_count() == 0 {
                    return;
                }
            }
        }
    };
    while let Some(bytes) = messages.next().await {
        let Some(s) = state.upgrade() else { return };
        let message = match serde_json::from_slice::<Bus>(&bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "malformed message from another panel instance ignored");
                continue;
            }
        };
        match message {
            Bus::Reply { id, reply } => {
                if let Some(tx) = s.cluster.pending.lock().expect("pending lock").remove(&id) {
                    let _ = tx.send(reply);
                }
            }
            Bus::Call { id, from, node, command, timeout_ms } => {
                tokio::spawn(async move {
                    let outcome = s.agents.ask(node, command, Duration::from_millis(timeout_ms)).await;
                    let reply = match outcome {
                        Ok(crate::protocol::v1::files::Reply::Done) => Reply::Done,
                        Ok(data) => Reply::Answered { data },
                        Err(e) => Reply::Failed {
                            kind: error_kind(&e).into(),
                            message: e.to_string(),
                            what: match &e {
                                Error::NotFound { what } => Some(what.to_string()),
                                _ => None,
                            },
                        },
                    };
                    answer(&s, &from, id, reply).await;
                });
            }
            Bus::Replay { id, from, server } => {
                let (lines, stats) = s.live.recent(server);
                answer(&s, &from, id, Reply::Replay { lines, stats }).await;
            }
        }
    }
}

async fn answer(s: &PanelState, to: &str, id: u64, reply: Reply) {
    let payload = serde_json::to_vec(&Bus::Reply { id, reply }).unwrap_or_default();
    if let Err(e) = s.cluster.cache.publish(&instance_channel(to), &payload).await {
        tracing::warn!(error = %e, "cannot answer another panel instance");
    }
}

fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::Conflict { .. } => "conflict",
        Error::Invalid(_) => "invalid",
        Error::NotFound { .. } => "not_found",
        Error::Forbidden { .. } => "forbidden",
        _ => "unavailable",
    }
}

/// Feeds another instance's frames of `server` into this instance's hub; `seen` is the holder
/// and the last line number its replay already gave.
async fn relay(
    state: Weak<PanelState>,
    instance: String,
    server: ServerId,
    mut subscription: crate::backend::Subscription,
    mut seen: Option<(String, u64)>,
) {
    while let Some(bytes) = subscription.next().await {
        let Some((from, frames)) = parse_live_batch(&bytes, &instance) else { continue };
        let Some(s) = state.upgrade() else { return };
        for frame in frames {
            if let Some((holder, last)) = &seen
                && *holder == from
                && frame.kind == FrameKind::Console
            {
                if frame.seq <= *last {
                    continue;
                }
                seen = None;
            }
            s.live.relay(server, frame.kind, frame.seq, frame.json);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_names_its_origin_and_an_instance_skips_its_own() {
        let frames = vec![
            SharedFrame { seq: 7, kind: FrameKind::Console, json: r#"{"type":"console","line":"a\nb"}"#.into() },
            SharedFrame { seq: 0, kind: FrameKind::State, json: r#"{"type":"state","state":"running"}"#.into() },
        ];
        let payload = live_batch("holder", &frames);
        assert_eq!(parse_live_batch(&payload, "holder").map(|(from, _)| from), None);
        let (from, got) = parse_live_batch(&payload, "follower").unwrap();
        assert_eq!(from, "holder");
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].seq, got[0].kind, got[0].json.as_str()), (7, FrameKind::Console, frames[0].json.as_str()));
        assert_eq!(parse_live_batch(b"no newline", "follower").map(|(from, _)| from), None);
        assert_eq!(parse_live_batch(b"x\nnot json", "follower").map(|(from, _)| from), None);
    }
}
