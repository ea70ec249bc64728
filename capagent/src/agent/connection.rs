//! The agent's link to the panel: one WebSocket to `/api/agent/v1/connect`, dialled by the
//! agent with its node token, redialled with exponential backoff and full jitter.
//!
//! After the handshake ([`Hello`] → [`Welcome`]) the agent resends the state events the panel
//! has not applied, then serves requests (each in its own task, answered by a result with the
//! same id), sends heartbeats at the interval the panel asked for, and reports stats of running
//! servers. Results, state events and heartbeats travel on a control queue that is never
//! dropped; console lines and stats on a bulk queue that is.

use super::facts::{self, CpuMeter};
use super::{Agent, Outbound};
use capcore::protocol::v1::*;
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

/// Why a connection attempt or a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot reach the panel: {0}")]
    Connect(String),
    #[error("the panel refused the node token (HTTP {0}); check CAP_NODE_TOKEN")]
    Rejected(u16),
    #[error("the panel refused this agent: {0}")]
    Refused(String),
    #[error("the panel assigned node {got}, but this agent's data belongs to node {had}")]
    WrongNode { had: capcore::ids::NodeId, got: capcore::ids::NodeId },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("connection lost: {0}")]
    Lost(String),
}

/// `http://host:port` (or `ws://…`) to the agent endpoint's `ws://` URL.
pub fn connect_url(panel_url: &str) -> String {
    let base = panel_url.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        base.to_string()
    };
    format!("{base}/api/agent/v1/connect")
}

fn hello(agent: &Agent) -> Hello {
    let config = &agent.inner.config;
    Hello {
        protocol_min: PROTOCOL_VERSION,
        protocol_max: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        facts: facts::node_facts(&config.data_dir, agent.runtimes(), agent.enforced_limits()),
    }
}

fn text(message: &AgentMessage) -> Message {
    Message::Text(serde_json::to_string(message).expect("agent messages serialize").into())
}

impl Agent {
    /// Stays connected to the panel until `shutdown` resolves: dials, serves, and redials after
    /// any failure with exponential backoff and full jitter.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let (min, max) = (self.inner.config.backoff_min, self.inner.config.backoff_max);
        let mut backoff = min;
        loop {
            let began = tokio::time::Instant::now();
            let attempt = tokio::select! {
                r = self.connect_once() => r,
                _ = &mut shutdown => return,
            };
            // Only a connection that lasted resets the backoff: a panel that accepts and drops
            // at once must not be redialled by every agent at once.
            let lasted = began.elapsed() > Duration::from_secs(10);
            match attempt {
                Ok(()) => backoff = min,
                Err(LinkError::Lost(reason)) => {
                    tracing::warn!(%reason, "lost the panel; reconnecting");
                    if lasted {
                        backoff = min;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot connect to the panel"),
            }
            let wait = Duration::from_millis(rand::random_range(0..=backoff.as_millis() as u64));
            backoff = (backoff * 2).min(max);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = &mut shutdown => return,
            }
        }
    }

    /// One connection, from dial to loss.
    pub async fn connect_once(&self) -> Result<(), LinkError> {
        let config = &self.inner.config;
        let mut request =
            connect_url(&config.panel_url).into_client_request().map_err(|e| LinkError::Connect(e.to_string()))?;
        let auth = format!("Bearer {}", config.token)
            .parse()
            .map_err(|_| LinkError::Connect("the node token is not a valid header value".into()))?;
        request.headers_mut().insert("authorization", auth);
        let ws_config = tungstenite::protocol::WebSocketConfig::default().max_message_size(Some(64 << 20));
        let dial = tokio_tungstenite::connect_async_with_config(request, Some(ws_config), true);
        let (mut ws, _) = tokio::time::timeout(Duration::from_secs(15), dial)
            .await
            .map_err(|_| LinkError::Connect("no answer within 15 s".into()))?
            .map_err(|e| match e {
                tungstenite::Error::Http(r) => LinkError::Rejected(r.status().as_u16()),
                other => LinkError::Connect(other.to_string()),
            })?;
        ws.send(text(&AgentMessage::Hello(hello(self)))).await.map_err(|e| LinkError::Lost(e.to_string()))?;
        let welcome = loop {
            let frame = tokio::time::timeout(Duration::from_secs(15), ws.next())
                .await
                .map_err(|_| LinkError::Protocol("no welcome within 15 s".into()))?;
            match frame {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<PanelMessage>(&t) {
                    Ok(PanelMessage::Welcome(w)) => break w,
                    Ok(PanelMessage::Refused(r)) => return Err(LinkError::Refused(r.reason)),
                    Ok(other) => return Err(LinkError::Protocol(format!("expected a welcome, got {other:?}"))),
                    Err(e) => return Err(LinkError::Protocol(e.to_string())),
                },
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(LinkError::Lost(e.to_string())),
                None => return Err(LinkError::Lost("closed during the handshake".into())),
            }
        };
        match self.node_id() {
            Some(had) if had != welcome.node_id => return Err(LinkError::WrongNode { had, got: welcome.node_id }),
            Some(_) => {}
            None => {
                *self.inner.node.lock().expect("node lock") = Some(welcome.node_id);
                if let Err(e) = self.inner.store.set_node(welcome.node_id) {
                    tracing::warn!(error = %e, "cannot save the node id");
                }
            }
        }
        tracing::info!(node = %welcome.node_id, "connected to the panel");
        self.serve(ws, welcome).await
    }

    async fn serve(
        &self,
        ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
        welcome: Welcome,
    ) -> Result<(), LinkError> {
        let (mut sink, mut stream) = ws.split();
        let (control_tx, mut control) = mpsc::channel::<AgentMessage>(1024);
        let (bulk_tx, mut bulk) = mpsc::channel::<AgentMessage>(8192);
        let last: HashMap<_, _> = welcome.last_seq.iter().map(|s| (s.server_id, s.seq)).collect();
        self.catch_up(&last);
        // Resend first, then open the queues to new events: order per server is kept.
        for envelope in self.unacked(&last) {
            let _ = control_tx.try_send(AgentMessage::Event(envelope));
        }
        *self.inner.out.lock().expect("out lock") = Some(Outbound { control: control_tx.clone(), bulk: bulk_tx });

        // Binary frames of downloads and uploads: after control messages, before console lines.
        let (frames_tx, mut frames) = mpsc::channel::<stream::Frame>(64);
        let streams = streams::Streams::new(frames_tx);
        let (ping_tx, mut pings) = mpsc::channel::<()>(4);
        let writer = tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    biased;
                    p = pings.recv() => p.map(|()| Message::Ping(Vec::new().into())),
                    m = control.recv() => m.as_ref().map(text),
                    Some(f) = frames.recv() => Some(Message::Binary(f.encode().into())),
                    m = bulk.recv() => m.as_ref().map(text),
                };
                let Some(frame) = frame else { return Ok(()) };
                if let Err(e) = sink.feed(frame).await {
                    return Err(e.to_string());
                }
                // Whatever else is already queued goes out in the same write.
                for _ in 0..256 {
                    let more = match control.try_recv() {
                        Ok(m) => text(&m),
                        Err(_) => match bulk.try_recv() {
                            Ok(m) => text(&m),
                            Err(_) => break,
                        },
                    };
                    if let Err(e) = sink.feed(more).await {
                        return Err(e.to_string());
                    }
                }
                if let Err(e) = sink.flush().await {
                    return Err(e.to_string());
                }
            }
        });
        let heartbeat = {
            let agent = self.clone();
            let control = control_tx.clone();
            let every = Duration::from_millis(welcome.heartbeat_interval_ms.max(100));
            tokio::spawn(async move {
                let meter = CpuMeter::default();
                meter.sample();
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    let (memory_used_bytes, memory_total_bytes) = facts::memory();
                    let (disk_total_bytes, disk_used_bytes) = facts::disk(&agent.inner.config.data_dir);
                    let hb = Heartbeat {
                        cpu_percent: meter.sample(),
                        memory_used_bytes,
                        memory_total_bytes,
                        disk_used_bytes,
                        disk_total_bytes,
                        servers_running: agent.running_count(),
                    };
                    // The ping's pong tells the reader the panel is still there.
                    let _ = ping_tx.try_send(());
                    if control.send(AgentMessage::Heartbeat(hb)).await.is_err() {
                        return;
                    }
                }
            })
        };
        let stats = {
            let agent = self.clone();
            let every = self.inner.config.stats_interval;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    agent.report_stats().await;
                }
            })
        };

        // A panel that stops answering (pongs included) for this long is given up on.
        let silence = Duration::from_millis(welcome.heartbeat_interval_ms.max(100))
            * (welcome.heartbeat_misses_allowed.max(1) + 1);
        let mut last_heard = tokio::time::Instant::now();
        let mut check = tokio::time::interval(silence / 4);
        let result = loop {
            let frame = tokio::select! {
                f = stream.next() => f,
                _ = control_tx.closed() => break Err(LinkError::Lost("writer stopped".into())),
                _ = check.tick() => {
                    if last_heard.elapsed() > silence {
                        break Err(LinkError::Lost(format!("the panel was silent for {} ms", last_heard.elapsed().as_millis())));
                    }
                    continue;
                }
            };
            last_heard = tokio::time::Instant::now();
            let text = match frame {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Binary(b))) => match stream::Frame::decode(&b) {
                    Ok(f) => {
                        streams.on_frame(f);
                        continue;
                    }
                    Err(e) => break Err(LinkError::Protocol(format!("malformed binary frame from the panel: {e}"))),
                },
                Some(Ok(Message::Close(_))) | None => {
                    break Err(LinkError::Lost("the panel closed the connection".into()));
                }
                Some(Err(e)) => break Err(LinkError::Lost(e.to_string())),
                Some(Ok(_)) => continue,
            };
            match serde_json::from_str::<PanelMessage>(&text) {
                Ok(PanelMessage::Request(request)) => {
                    let agent = self.clone();
                    let control = control_tx.clone();
                    // Opened before the next frame is read: an upload's first bytes follow the
                    // request at once.
                    let id = stream::stream_of(request.id);
                    let end = request.command.transfer().map(|way| streams.end(id, way, true));
                    tokio::spawn(async move {
                        let timeout = Duration::from_millis(request.timeout_ms.max(1));
                        let outcome = agent.execute_with(request.command, timeout, end).await;
                        let _ = control.send(AgentMessage::Result(CommandResult { id: request.id, outcome })).await;
                    });
                }
                Ok(PanelMessage::Ack(ack)) => self.acknowledge(ack),
                Ok(other) => break Err(LinkError::Protocol(format!("unexpected {other:?}"))),
                Err(e) => break Err(LinkError::Protocol(format!("malformed message from the panel: {e}"))),
            }
        };
        *self.inner.out.lock().expect("out lock") = None;
        streams.close_all("the connection to the panel was lost");
        heartbeat.abort();
        stats.abort();
        drop(control_tx);
        writer.abort();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panel_urls_become_agent_endpoints() {
        assert_eq!(connect_url("http://127.0.0.1:8080"), "ws://127.0.0.1:8080/api/agent/v1/connect");
        assert_eq!(connect_url("https://panel.example/"), "wss://panel.example/api/agent/v1/connect");
        assert_eq!(connect_url("ws://10.0.0.2:80"), "ws://10.0.0.2:80/api/agent/v1/connect");
    }
}
