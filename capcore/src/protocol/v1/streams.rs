//! The byte streams of one connection: [`Streams`] routes incoming binary frames to the stream
//! they belong to and keeps each direction within its credit.
//!
//! An [`Incoming`] stream grants its sender [`WINDOW`] bytes at the start and credit back as its
//! reader takes each chunk, so a reader that stops reading stops the sender after at most
//! [`WINDOW`] bytes; nothing piles up. An
//! [`Outgoing`] stream waits for credit before each data frame. Dropping either half before its
//! end resets the stream, so the other side stops too; losing the connection ends every
//! stream with an error.

use super::files::Transfer;
use super::stream::{Credit, Frame, INITIAL_CREDIT, MAX_PAYLOAD};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, mpsc};

/// Bytes a receiver lets its sender have in flight (and holds at most, unread).
pub const WINDOW: u32 = 4 * 1024 * 1024;

/// One side's end of a request's byte stream.
#[derive(Debug)]
pub enum StreamEnd {
    /// This side receives.
    Incoming(Incoming),
    /// This side sends.
    Outgoing(Outgoing),
}

/// What an incoming stream's reader gets next.
#[derive(Debug)]
enum Piece {
    Data(Vec<u8>),
    End,
    Reset(String),
}

#[derive(Debug)]
enum Slot {
    In { tx: mpsc::UnboundedSender<Piece>, credit: Credit },
    Out { gate: Arc<Gate> },
}

#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    notify: Notify,
}

#[derive(Debug)]
struct GateState {
    available: u64,
    reset: Option<String>,
}

impl Default for GateState {
    fn default() -> Self {
        Self { available: u64::from(INITIAL_CREDIT), reset: None }
    }
}

/// The byte streams of one connection; frames to the peer go to the channel given at
/// [`Streams::new`].
#[derive(Debug)]
pub struct Streams {
    slots: Mutex<HashMap<u32, Slot>>,
    out: mpsc::Sender<Frame>,
}

impl Streams {
    pub fn new(out: mpsc::Sender<Frame>) -> Arc<Self> {
        Arc::new(Self { slots: Mutex::new(HashMap::new()), out })
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Slot>> {
        self.slots.lock().expect("streams lock")
    }

    /// Starts receiving stream `id` (before the peer may send on it), granting the sender
    /// [`WINDOW`] bytes ahead: one round trip per window, not per [`INITIAL_CREDIT`].
    pub fn incoming(self: &Arc<Self>, id: u32) -> Incoming {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut credit = Credit::default();
        // Best effort: with the frame queue full the stream still works, at the initial credit.
        if self.out.try_send(Frame::Credit { stream: id, bytes: WINDOW - INITIAL_CREDIT }).is_ok() {
            credit.grant(WINDOW - INITIAL_CREDIT);
        }
        self.slots().insert(id, Slot::In { tx, credit });
        Incoming { id, streams: self.clone(), rx, done: false }
    }

    /// Starts sending on stream `id`.
    pub fn outgoing(self: &Arc<Self>, id: u32) -> Outgoing {
        let gate = Arc::new(Gate::default());
        self.slots().insert(id, Slot::Out { gate: gate.clone() });
        Outgoing { id, streams: self.clone(), gate, finished: false }
    }

    /// This side's end of stream `id` of a request moving bytes `way`: the receiving end on the
    /// side the bytes go to (the panel for [`Transfer::FromAgent`] when `agent` is false).
    pub fn end(self: &Arc<Self>, id: u32, way: Transfer, agent: bool) -> StreamEnd {
        if (way == Transfer::FromAgent) == agent {
            StreamEnd::Outgoing(self.outgoing(id))
        } else {
            StreamEnd::Incoming(self.incoming(id))
        }
    }

    /// How many streams are open.
    pub fn open_count(&self) -> usize {
        self.slots().len()
    }

    /// A binary frame from the peer. Data beyond the granted credit, or for a stream that is
    /// not open, resets that stream.
    pub fn on_frame(&self, frame: Frame) {
        let id = frame.stream();
        let mut slots = self.slots();
        match (slots.get_mut(&id), frame) {
            (Some(Slot::In { tx, credit }), Frame::Data { bytes, .. }) => {
                if let Err(e) = credit.consume(bytes.len()) {
                    let reason = format!("flow control violated: {e}");
                    let _ = tx.send(Piece::Reset(reason.clone()));
                    slots.remove(&id);
                    self.send_reliably(Frame::Reset { stream: id, reason });
                } else {
                    let _ = tx.send(Piece::Data(bytes));
                }
            }
            (Some(Slot::In { tx, .. }), Frame::End { .. }) => {
                let _ = tx.send(Piece::End);
                slots.remove(&id);
            }
            (Some(Slot::In { tx, .. }), Frame::Reset { reason, .. }) => {
                let _ = tx.send(Piece::Reset(reason));
                slots.remove(&id);
            }
            (Some(Slot::Out { gate }), Frame::Credit { bytes, .. }) => {
                let mut state = gate.state.lock().expect("gate lock");
                state.available = state.available.saturating_add(u64::from(bytes));
                drop(state);
                gate.notify.notify_one();
            }
            (Some(Slot::Out { gate }), Frame::Reset { reason, .. }) => {
                gate.state.lock().expect("gate lock").reset = Some(reason);
                gate.notify.notify_one();
                slots.remove(&id);
            }
            (None, Frame::Data { .. }) => {
                let _ = self.out.try_send(Frame::Reset { stream: id, reason: "no such stream".into() });
            }
            // Credit for a stream that ended, an end racing a reset, an `open`: nothing to do.
            _ => {}
        }
    }

    /// The connection is gone: every open stream ends with `reason`.
    pub fn close_all(&self, reason: &str) {
        for (_, slot) in self.slots().drain() {
            match slot {
                Slot::In { tx, .. } => {
                    let _ = tx.send(Piece::Reset(reason.to_string()));
                }
                Slot::Out { gate } => {
                    gate.state.lock().expect("gate lock").reset = Some(reason.to_string());
                    gate.notify.notify_one();
                }
            }
        }
    }

    fn forget(&self, id: u32, reason: &str) {
        if self.slots().remove(&id).is_some() {
            self.send_reliably(Frame::Reset { stream: id, reason: reason.into() });
        }
    }

    /// Queues a frame that must not be lost (a reset: without it the peer waits for bytes or
    /// credit that never come), waiting for room in a task of its own when the queue is full.
    fn send_reliably(&self, frame: Frame) {
        match self.out.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(frame)) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let out = self.out.clone();
                    runtime.spawn(async move {
                        let _ = out.send(frame).await;
                    });
                }
            }
            // The connection is gone: the peer's streams end with it.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// The receiving half of one stream.
#[derive(Debug)]
pub struct Incoming {
    id: u32,
    streams: Arc<Streams>,
    rx: mpsc::UnboundedReceiver<Piece>,
    done: bool,
}

impl Incoming {
    /// The next chunk; `None` at the end, `Err` when the sender reset the stream or the
    /// connection was lost. Taking a chunk grants its size back to the sender.
    pub async fn next(&mut self) -> Option<Result<Vec<u8>, String>> {
        if self.done {
            return None;
        }
        let piece = self.rx.recv().await;
        match piece {
            Some(Piece::Data(bytes)) => {
                let grant = bytes.len() as u32;
                let open = match self.streams.slots().get_mut(&self.id) {
                    Some(Slot::In { credit, .. }) => {
                        credit.grant(grant);
                        true
                    }
                    _ => false,
                };
                if open && grant > 0 {
                    let _ = self.streams.out.send(Frame::Credit { stream: self.id, bytes: grant }).await;
                }
                Some(Ok(bytes))
            }
            Some(Piece::End) => {
                self.done = true;
                None
            }
            Some(Piece::Reset(reason)) => {
                self.done = true;
                Some(Err(reason))
            }
            None => {
                self.done = true;
                Some(Err("the stream was closed".into()))
            }
        }
    }

    /// The chunks as a `Stream` (for an HTTP body); errors become `io::Error`s.
    pub fn into_stream(self) -> impl futures::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
        futures::stream::unfold(self, |mut incoming| async move {
            let item = incoming.next().await?;
            Some((item.map_err(std::io::Error::other), incoming))
        })
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.done {
            self.streams.forget(self.id, "the receiver stopped reading");
        }
    }
}

/// The sending half of one stream.
#[derive(Debug)]
pub struct Outgoing {
    id: u32,
    streams: Arc<Streams>,
    gate: Arc<Gate>,
    finished: bool,
}

impl Outgoing {
    /// Sends `bytes`, in frames of at most [`MAX_PAYLOAD`], each waiting for credit; `Err` when
    /// the receiver reset the stream or the connection was lost.
    pub async fn send(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            let n = loop {
                let notified = self.gate.notify.notified();
                {
                    let mut state = self.gate.state.lock().expect("gate lock");
                    if let Some(reason) = &state.reset {
                        self.finished = true;
                        return Err(reason.clone());
                    }
                    if state.available > 0 {
                        let n =
                            bytes.len().min(MAX_PAYLOAD).min(usize::try_from(state.available).unwrap_or(MAX_PAYLOAD));
                        state.available -= n as u64;
                        break n;
                    }
                }
                notified.await;
            };
            let frame = Frame::Data { stream: self.id, bytes: bytes[..n].to_vec() };
            if self.streams.out.send(frame).await.is_err() {
                self.finished = true;
                return Err("the connection was lost".into());
            }
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Ends the stream: everything was sent.
    pub async fn finish(mut self) -> Result<(), String> {
        self.finished = true;
        self.streams.slots().remove(&self.id);
        self.streams.out.send(Frame::End { stream: self.id }).await.map_err(|_| "the connection was lost".to_string())
    }

    /// Abandons the stream, telling the receiver why.
    pub async fn reset(mut self, reason: &str) {
        self.finished = true;
        if self.streams.slots().remove(&self.id).is_some() {
            let _ = self.streams.out.send(Frame::Reset { stream: self.id, reason: reason.into() }).await;
        }
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        if !self.finished {
            self.streams.forget(self.id, "the sender stopped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two ends joined: frames each side sends are delivered to the other's table.
    fn pair() -> (Arc<Streams>, Arc<Streams>, tokio::task::JoinHandle<()>) {
        let (a_out, mut a_rx) = mpsc::channel(16);
        let (b_out, mut b_rx) = mpsc::channel(16);
        let a = Streams::new(a_out);
        let b = Streams::new(b_out);
        let (a2, b2) = (a.clone(), b.clone());
        let pump = tokio::spawn(async move {
            loop {
                tokio::select! {
                    f = a_rx.recv() => match f { Some(f) => b2.on_frame(f), None => return },
                    f = b_rx.recv() => match f { Some(f) => a2.on_frame(f), None => return },
                }
            }
        });
        (a, b, pump)
    }

    #[tokio::test]
    async fn bytes_arrive_whole_and_in_order_across_many_credit_rounds() {
        let (a, b, _pump) = pair();
        let mut rx = b.incoming(7);
        let mut tx = a.outgoing(7);
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let sent = data.clone();
        let sender = tokio::spawn(async move {
            tx.send(&sent).await.unwrap();
            tx.finish().await.unwrap();
        });
        let mut got = Vec::new();
        while let Some(chunk) = rx.next().await {
            let chunk = chunk.unwrap();
            assert!(chunk.len() <= MAX_PAYLOAD);
            got.extend_from_slice(&chunk);
        }
        sender.await.unwrap();
        assert_eq!(got, data);
        assert_eq!(a.open_count() + b.open_count(), 0, "both ends forget a finished stream");
    }

    #[tokio::test]
    async fn a_reader_that_stops_reading_stops_the_sender_at_its_credit() {
        let (out, mut frames) = mpsc::channel(1024);
        let a = Streams::new(out);
        let mut tx = a.outgoing(1);
        let big = vec![1u8; (INITIAL_CREDIT as usize) * 4];
        let sending = tokio::spawn(async move { tx.send(&big).await });
        let mut sent = 0usize;
        // Exactly the initial credit goes out; then the sender waits for a credit frame.
        while sent < INITIAL_CREDIT as usize {
            match frames.recv().await.unwrap() {
                Frame::Data { bytes, .. } => sent += bytes.len(),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(sent, INITIAL_CREDIT as usize);
        assert!(frames.try_recv().is_err(), "nothing beyond the credit");
        assert!(!sending.is_finished());
        a.on_frame(Frame::Reset { stream: 1, reason: "gone".into() });
        assert_eq!(sending.await.unwrap(), Err("gone".to_string()));
    }

    #[tokio::test]
    async fn data_beyond_the_credit_resets_the_stream() {
        let (out, mut frames) = mpsc::channel(16);
        let b = Streams::new(out);
        let mut rx = b.incoming(3);
        assert_eq!(frames.recv().await.unwrap(), Frame::Credit { stream: 3, bytes: WINDOW - INITIAL_CREDIT });
        for _ in 0..(WINDOW as usize / MAX_PAYLOAD) {
            b.on_frame(Frame::Data { stream: 3, bytes: vec![0; MAX_PAYLOAD] });
        }
        b.on_frame(Frame::Data { stream: 3, bytes: vec![0; 1] });
        match frames.recv().await.unwrap() {
            Frame::Reset { stream: 3, reason } => assert!(reason.contains("flow control"), "{reason}"),
            other => panic!("expected a reset, got {other:?}"),
        }
        let mut last = None;
        while let Some(item) = rx.next().await {
            last = Some(item);
            if last.as_ref().is_some_and(|i| i.is_err()) {
                break;
            }
        }
        assert!(matches!(last, Some(Err(r)) if r.contains("flow control")));
    }

    #[tokio::test]
    async fn dropping_a_reader_resets_and_a_lost_connection_ends_every_stream() {
        let (out, mut frames) = mpsc::channel(16);
        let s = Streams::new(out);
        drop(s.incoming(5));
        assert!(matches!(frames.recv().await.unwrap(), Frame::Credit { stream: 5, .. }));
        assert!(matches!(frames.recv().await.unwrap(), Frame::Reset { stream: 5, .. }));
        s.on_frame(Frame::Data { stream: 99, bytes: vec![1] });
        assert!(matches!(frames.recv().await.unwrap(), Frame::Reset { stream: 99, .. }), "unknown streams are reset");
        let mut rx = s.incoming(6);
        assert!(matches!(frames.recv().await.unwrap(), Frame::Credit { stream: 6, .. }));
        let mut tx = s.outgoing(8);
        s.close_all("connection lost");
        assert_eq!(rx.next().await, Some(Err("connection lost".into())));
        assert_eq!(rx.next().await, None);
        let big = vec![0u8; INITIAL_CREDIT as usize + 1];
        let sending = tokio::spawn(async move { tx.send(&big).await });
        // The first credit's worth may already be queued; what the sender gets is the error.
        while let Ok(f) = frames.try_recv() {
            assert!(matches!(f, Frame::Data { .. }));
        }
        assert_eq!(sending.await.unwrap(), Err("connection lost".into()));
        assert_eq!(s.open_count(), 0);
    }
}
