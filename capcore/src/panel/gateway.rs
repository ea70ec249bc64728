//! The agent gateway: `GET /api/agent/v1/connect`, one WebSocket per connected agent.
//!
//! The agent authenticates with its node token (`Authorization: Bearer capn_…`, compared by
//! hash) before the upgrade. It speaks first ([`Hello`]); the panel answers [`Welcome`] with the
//! last event number it applied per server, or [`Refused`] with the reason. Then the panel
//! sends the node's complete server list ([`Command::Sync`]) and forwards [`AgentCall`]s as
//! numbered requests, matching each result to its caller. State events are persisted (each
//! event number once) and acknowledged; console, state and stats go to the [`LiveHub`] for
//! browsers. A node whose agent disconnects, or misses its heartbeats, is offline at once: its
//! calls fail, its servers become `unknown`.
//!
//! [`LiveHub`]: super::live::LiveHub

use super::PanelState;
use super::agents::{AgentCall, AgentStatus};
use super::error::{ApiError, ApiResult};
use super::extract::bearer;
use crate::ids::{NodeId, ServerId};
use crate::model::Server;
use crate::protocol::v1::stream::{Frame, stream_of};
use crate::protocol::v1::streams::Streams;
use crate::protocol::v1::*;
use crate::state::ServerState;
use crate::template::StartupCommand;
use crate::{Error, Result};
use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The spec an agent needs to run `server`: its template's startup rendered into argv with the
/// server's variables and the `SERVER_*` values, limits, stop action, ready patterns, install
/// script and image.
pub async fn server_spec(s: &PanelState, server: &Server) -> Result<ServerSpec> {
    let template = s.db.templates().get(server.template_id).await?;
    let allocations = s.db.allocations().list_for_server(server.id).await?;
    let primary = allocations.iter().find(|a| a.primary).or(allocations.first());
    let mut environment = server.environment.clone();
    environment.insert("SERVER_MEMORY".into(), server.limits.memory_mb.to_string());
    if let Some(a) = primary {
        environment.insert("SERVER_IP".into(), a.ip.clone());
        environment.insert("SERVER_PORT".into(), a.port.to_string());
    }
    let rendered = StartupCommand::parse(&template.spec.startup)
        .and_then(|c| c.render(&environment))
        .map_err(|e| Error::invalid("startup", format!("the template's startup command cannot run: {e}")))?;
    environment.extend(rendered.env);
    Ok(ServerSpec {
        server_id: server.id,
        node_id: server.node_id,
        argv: rendered.argv,
        environment,
        limits: server.limits.into(),
        stop: (&template.spec.stop).into(),
        ready_patterns: template.spec.ready_patterns.iter().map(Into::into).collect(),
        install: template.spec.install.as_ref().map(|i| WireInstall {
            script: i.script.clone(),
            entrypoint: i.entrypoint.clone(),
            image: Some(i.image.clone()).filter(|image| !image.trim().is_empty()),
        }),
        image: template.spec.images.first().map(|i| i.image.clone()),
        file_denylist: template.spec.file_denylist.clone(),
        backup_hooks: template.spec.backup_hooks.as_ref().map(|h| WireBackupHooks {
            before: h.before.clone(),
            wait_for: h.wait_for.clone(),
            wait_ms: h.wait_secs.saturating_mul(1000),
            after: h.after.clone(),
        }),
        ports: primary
            .into_iter()
            .chain(allocations.iter().filter(|a| Some(a.id) != primary.map(|p| p.id)))
            .map(|a| PortBinding { ip: a.ip.clone(), port: a.port })
            .collect(),
    })
}

/// Sends the server's current spec to its node (before a start, restart or install, so the
/// agent always runs what the panel has now).
pub async fn push_spec(s: &PanelState, server: &Server) -> Result<()> {
    let spec = server_spec(s, server).await?;
    s.call_node(server.node_id, Command::Create { server: Box::new(spec) }, s.config.agent_timeout).await
}

/// The upgrade handler: authenticates the node token, then hands the socket to [`run`].
pub(crate) async fn connect(
    State(s): State<Arc<PanelState>>,
    headers: HeaderMap,
    upgrade: std::result::Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let token = bearer(&headers)
        .ok_or_else(|| Error::unauthorized("an agent sends its node token as `Authorization: Bearer <token>`"))?;
    let node =
        s.db.nodes()
            .find_by_token_hash(&super::token_hash(token))
            .await?
            .ok_or_else(|| Error::unauthorized("unknown node token"))?;
    let upgrade = upgrade.map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, "websocket_required", "this route takes a WebSocket upgrade")
    })?;
    // Small buffers per connection: a panel holds thousands of agents (they grow for large
    // messages as needed).
    Ok(upgrade
        .read_buffer_size(16 * 1024)
        .write_buffer_size(16 * 1024)
        .max_message_size(s.config.agent_max_frame_bytes)
        .max_frame_size(s.config.agent_max_frame_bytes)
        .on_upgrade(move |socket| run(s, node.id, socket)))
}

/// Sends one frame; an agent that does not take it within 10 s is given up on.
async fn send(socket: &mut WebSocket, frame: Message) -> std::result::Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(10), socket.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("send failed: {e}")),
        Err(_) => Err("the agent did not take a message within 10 s".into()),
    }
}

fn text(message: &PanelMessage) -> Message {
    Message::Text(Utf8Bytes::from(serde_json::to_string(message).expect("panel messages serialize")))
}

/// Reads the next text frame (skipping pings), `None` when the socket ends.
async fn next_text(socket: &mut WebSocket) -> Option<Utf8Bytes> {
    loop {
        match socket.recv().await? {
            Ok(Message::Text(t)) => return Some(t),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// One agent connection, from hello to goodbye.
async fn run(s: Arc<PanelState>, node: NodeId, mut socket: WebSocket) {
    let hello = match tokio::time::timeout(Duration::from_secs(10), next_text(&mut socket)).await {
        Ok(Some(t)) => match serde_json::from_str::<AgentMessage>(&t) {
            Ok(AgentMessage::Hello(h)) => h,
            _ => {
                let refused =
                    Refused { reason: "the first message must be a hello".into(), panel_protocol: PROTOCOL_VERSION };
                let _ = send(&mut socket, text(&PanelMessage::Refused(refused))).await;
                return;
            }
        },
        _ => return,
    };
    let protocol = match negotiate(&hello) {
        Ok(p) => p,
        Err(refused) => {
            tracing::warn!(%node, reason = %refused.reason, "agent refused");
            let _ = send(&mut socket, text(&PanelMessage::Refused(refused))).await;
            let _ = send(&mut socket, Message::Close(None)).await;
            return;
        }
    };
    let guard = s.agents.lock_node(node).await;
    let seqs = match s.db.servers().reported_seqs(node).await {
        Ok(seqs) => seqs,
        Err(e) => {
            tracing::warn!(%node, error = %e, "cannot read the node's servers; closing the agent connection");
            return;
        }
    };
    let welcome = Welcome {
        protocol,
        node_id: node,
        heartbeat_interval_ms: s.config.agent_heartbeat_interval.as_millis() as u64,
        heartbeat_misses_allowed: s.config.agent_heartbeat_misses,
        last_seq: seqs.iter().map(|&(server_id, seq)| ServerSeq { server_id, seq }).collect(),
    };
    if send(&mut socket, text(&PanelMessage::Welcome(welcome))).await.is_err() {
        return;
    }
    let (calls_tx, calls) = mpsc::channel(256);
    let status = AgentStatus {
        agent_version: hello.agent_version.clone(),
        protocol,
        facts: hello.facts.clone(),
        connected_at: s.now(),
        heartbeat: None,
    };
    let connection = s.agents.attach(node, calls_tx, status.clone());
    s.cluster.claim(node, status);
    drop(guard);
    tracing::info!(%node, agent = %hello.agent_version, hostname = %hello.facts.hostname, "agent connected");
    let owned: HashSet<ServerId> = seqs.iter().map(|(id, _)| *id).collect();
    let sync = tokio::spawn(sync_node(s.clone(), node));
    let (frames_tx, frames) = mpsc::channel(64);
    let mut conn = Connection {
        s: s.clone(),
        node,
        connection,
        owned,
        pending: HashMap::new(),
        next_id: 0,
        published: HashMap::new(),
        streams: Streams::new(frames_tx),
    };
    let reason = conn.serve(&mut socket, calls, frames).await;
    conn.streams.close_all(&format!("the node's agent disconnected: {reason}"));
    sync.abort();
    let _ = send(&mut socket, Message::Close(None)).await;
    // Under the node's lock, so a reconnect that is already being welcomed does not see its
    // fresh states overwritten with `unknown`.
    let _guard = s.agents.lock_node(node).await;
    if s.agents.detach(node, connection) {
        s.cluster.release(node);
        tracing::warn!(%node, %reason, "agent disconnected; its servers are unknown until it returns");
        match s.db.servers().mark_node_unknown(node, s.now()).await {
            Ok(_) => {
                for id in &conn.owned {
                    s.live.state(*id, ServerState::Unknown);
                }
            }
            Err(e) => tracing::warn!(%node, error = %e, "cannot mark the node's servers unknown"),
        }
    }
}

/// Sends the node its complete server list, so it creates what it lacks, removes what was
/// deleted meanwhile, and reports every server's true state.
async fn sync_node(s: Arc<PanelState>, node: NodeId) {
    let filter = crate::model::ServerFilter { node_id: Some(node), ..Default::default() };
    let mut specs = Vec::new();
    let mut page = 1;
    loop {
        let servers = match s.db.servers().list(&filter, crate::model::PageRequest::new(page, 100)).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(%node, error = %e, "cannot list the node's servers for sync");
                return;
            }
        };
        for server in &servers.items {
            match server_spec(&s, server).await {
                Ok(spec) => specs.push(spec),
                Err(e) => tracing::warn!(server = %server.id, error = %e, "server left out of the sync"),
            }
        }
        if servers.items.is_empty() || (page * 100) as u64 >= servers.total {
            break;
        }
        page += 1;
    }
    // `keep` is filled in by the connection with every server it knows of that is not listed.
    let sync = Command::Sync { servers: specs, keep: Vec::new() };
    if let Err(e) = s.agents.call(node, sync, s.config.agent_timeout * 4).await {
        tracing::warn!(%node, error = %e, "sync with the agent failed");
    }
}

struct Connection {
    s: Arc<PanelState>,
    node: NodeId,
    connection: u64,
    /// Servers of this node: events about any other server are ignored.
    owned: HashSet<ServerId>,
    pending: HashMap<u64, oneshot::Sender<Outcome>>,
    next_id: u64,
    /// The state last published to browsers per server, on this connection.
    published: HashMap<ServerId, ServerState>,
    /// Byte streams of downloads and uploads.
    streams: Arc<Streams>,
}

impl Connection {
    /// Serves the connection until it ends; returns why.
    async fn serve(
        &mut self,
        socket: &mut WebSocket,
        mut calls: mpsc::Receiver<AgentCall>,
        mut frames: mpsc::Receiver<Frame>,
    ) -> String {
        let interval = self.s.config.agent_heartbeat_interval;
        let allowed = interval * self.s.config.agent_heartbeat_misses.max(1);
        let mut last_seen = Instant::now();
        let mut tick = tokio::time::interval(interval.min(Duration::from_secs(1)));
        loop {
            tokio::select! {
                frame = socket.recv() => {
                    last_seen = Instant::now();
                    let frame = match frame {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Binary(b))) => match Frame::decode(&b) {
                            Ok(f) => {
                                self.streams.on_frame(f);
                                continue;
                            }
                            Err(e) => return format!("the agent sent a malformed binary frame: {e}"),
                        },
                        Some(Ok(Message::Close(_))) | None => return "the agent closed the connection".into(),
                        Some(Err(e)) => return format!("connection error: {e}"),
                        Some(Ok(_)) => continue,
                    };
                    match serde_json::from_str::<AgentMessage>(&frame) {
                        Ok(message) => {
                            if let Err(reason) = self.handle(socket, message).await {
                                return reason;
                            }
                        }
                        Err(e) => return format!("the agent sent a malformed message: {e}"),
                    }
                }
                call = calls.recv() => {
                    let Some(call) = call else { return "replaced by a newer connection".into() };
                    if let Err(reason) = self.forward(socket, call).await {
                        return reason;
                    }
                }
                Some(frame) = frames.recv() => {
                    if let Err(reason) = send(socket, Message::Binary(frame.encode().into())).await {
                        return reason;
                    }
                }
                _ = tick.tick() => {
                    if last_seen.elapsed() > allowed {
                        return format!("no heartbeat for {} ms", last_seen.elapsed().as_millis());
                    }
                    if !self.s.agents.is_current(self.node, self.connection) {
                        return "replaced by a newer connection".into();
                    }
                    self.pending.retain(|_, reply| !reply.is_closed());
                }
            }
        }
    }

    async fn forward(&mut self, socket: &mut WebSocket, call: AgentCall) -> std::result::Result<(), String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = call.command;
        match &mut command {
            Command::Create { server } if server.node_id == self.node => {
                self.owned.insert(server.server_id);
            }
            // Every server of the node this connection knows of and the list lacks (its spec
            // failed to build, or it was created while the list was read) is kept: a sync never
            // removes a server the panel still has.
            Command::Sync { servers, keep } => {
                let listed: HashSet<ServerId> = servers.iter().map(|s| s.server_id).collect();
                keep.extend(self.owned.iter().filter(|id| !listed.contains(id)));
                keep.sort();
                self.owned.extend(listed);
            }
            Command::Delete { server_id } => {
                self.owned.remove(server_id);
            }
            _ => {}
        }
        // The stream is open before the request goes out, so the agent's first bytes find it.
        if let Some(handover) = call.stream {
            // A command that moves no bytes, or a caller that gave up meanwhile: nothing is sent.
            let Some(way) = command.transfer() else { return Ok(()) };
            if handover.send(self.streams.end(stream_of(id), way, false)).is_err() {
                return Ok(());
            }
        }
        let request = Request { id, timeout_ms: call.timeout.as_millis() as u64, command };
        self.pending.insert(id, call.reply);
        send(socket, text(&PanelMessage::Request(request))).await
    }

    async fn handle(&mut self, socket: &mut WebSocket, message: AgentMessage) -> std::result::Result<(), String> {
        match message {
            AgentMessage::Hello(_) => return Err("a second hello".into()),
            AgentMessage::Result(result) => {
                if let Some(reply) = self.pending.remove(&result.id) {
                    let _ = reply.send(result.outcome);
                }
            }
            AgentMessage::Heartbeat(hb) => {
                self.s.agents.record_heartbeat(self.node, self.connection, self.s.now(), hb);
                if let Some(status) = self.s.agents.status(self.node) {
                    self.s.cluster.claim(self.node, status);
                }
            }
            AgentMessage::Event(envelope) => {
                if !self.owned.contains(&envelope.server_id) {
                    tracing::warn!(node = %self.node, server = %envelope.server_id, "event about a server of another node ignored");
                    return Ok(());
                }
                self.event(socket, envelope).await?;
            }
        }
        Ok(())
    }

    async fn event(&mut self, socket: &mut WebSocket, envelope: EventEnvelope) -> std::result::Result<(), String> {
        let id = envelope.server_id;
        match envelope.event {
            Event::Console { stream, line } => self.s.live.console(id, stream, &line),
            Event::Backup { backup } => self.s.live.backup(id, &backup),
            Event::Stats { cpu_percent, memory_bytes, disk_bytes, uptime_ms, network } => {
                let sample =
                    crate::panel::live::StatsSample { at_ms: 0, cpu_percent, memory_bytes, disk_bytes, network };
                self.s.live.stats(id, sample, uptime_ms)
            }
            Event::State { state, exit } => {
                let Some(state) = ServerState::parse(&state) else {
                    tracing::warn!(server = %id, %state, "agent reported an unknown state");
                    return Ok(());
                };
                match self.s.db.servers().apply_reported_state(id, state, envelope.seq, self.s.now()).await {
                    Ok(applied) => {
                        // A state re-reported unchanged (after a sync) is not news for browsers.
                        if applied.is_some() && self.published.insert(id, state) != Some(state) {
                            self.s.live.state(id, state);
                            if let Some(exit) = exit.filter(|_| state == ServerState::Crashed) {
                                tracing::info!(server = %id, code = ?exit.code, signal = ?exit.signal, "server crashed");
                            }
                        }
                    }
                    Err(Error::NotFound { .. }) => {
                        self.owned.remove(&id);
                    }
                    // Not acknowledged: the agent resends it on its next connection.
                    Err(e) => {
                        tracing::warn!(server = %id, error = %e, "cannot persist a reported state");
                        return Ok(());
                    }
                }
                let ack = PanelMessage::Ack(ServerSeq { server_id: id, seq: envelope.seq });
                send(socket, text(&ack)).await?;
            }
        }
        Ok(())
    }
}
