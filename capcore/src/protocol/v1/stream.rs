//! Binary frames: byte streams (files, backups, uploads) multiplexed by stream id, with
//! credit-based flow control so one slow stream never floods the connection.
//!
//! A frame is `kind: u8`, `stream: u32` (big endian), then the payload:
//!
//! | kind | name | payload |
//! |---|---|---|
//! | 1 | open | JSON header saying what the stream carries |
//! | 2 | data | bytes; at most the credit the receiver granted |
//! | 3 | credit | `u32` big endian: bytes the sender may send more |
//! | 4 | end | nothing: the sender is done |
//! | 5 | reset | UTF-8 reason: the stream is abandoned |
//!
//! A sender starts with no credit beyond [`INITIAL_CREDIT`] and sends data only within what it
//! was granted; a receiver that gets more than it granted resets the stream.
//!
//! A request that moves bytes (a file download or upload) has its stream numbered like itself
//! ([`stream_of`]): both sides know the number from the request, so no `open` frame is needed
//! and the first data frames may follow the request at once. Kind 1 is reserved for streams
//! that no request names.

/// The byte stream of the request numbered `request_id`.
pub fn stream_of(request_id: u64) -> u32 {
    (request_id & u64::from(u32::MAX)) as u32
}

/// Credit every stream starts with, before any `credit` frame.
pub const INITIAL_CREDIT: u32 = 256 * 1024;
/// The largest payload one frame may carry.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// One binary frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Open { stream: u32, header: Vec<u8> },
    Data { stream: u32, bytes: Vec<u8> },
    Credit { stream: u32, bytes: u32 },
    End { stream: u32 },
    Reset { stream: u32, reason: String },
}

/// A binary frame that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is shorter than its 5-byte header")]
    Short(usize),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("payload of {0} bytes is over the limit of {MAX_PAYLOAD}")]
    TooLarge(usize),
    #[error("credit frame payload must be 4 bytes, got {0}")]
    BadCredit(usize),
    #[error("end frame must have no payload, got {0} bytes")]
    PayloadOnEnd(usize),
    #[error("reset reason is not UTF-8")]
    BadReason,
}

impl Frame {
    pub fn stream(&self) -> u32 {
        match self {
            Frame::Open { stream, .. }
            | Frame::Data { stream, .. }
            | Frame::Credit { stream, .. }
            | Frame::End { stream }
            | Frame::Reset { stream, .. } => *stream,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload): (u8, &[u8]) = match self {
            Frame::Open { header, .. } => (1, header),
            Frame::Data { bytes, .. } => (2, bytes),
            Frame::Credit { .. } => (3, &[]),
            Frame::End { .. } => (4, &[]),
            Frame::Reset { reason, .. } => (5, reason.as_bytes()),
        };
        let mut out = Vec::with_capacity(5 + payload.len().max(4));
        out.push(kind);
        out.extend_from_slice(&self.stream().to_be_bytes());
        match self {
            Frame::Credit { bytes, .. } => out.extend_from_slice(&bytes.to_be_bytes()),
            _ => out.extend_from_slice(payload),
        }
        out
    }

    pub fn decode(frame: &[u8]) -> Result<Frame, FrameError> {
        if frame.len() < 5 {
            return Err(FrameError::Short(frame.len()));
        }
        let stream = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]);
        let payload = &frame[5..];
        if payload.len() > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(payload.len()));
        }
        Ok(match frame[0] {
            1 => Frame::Open { stream, header: payload.to_vec() },
            2 => Frame::Data { stream, bytes: payload.to_vec() },
            3 => {
                let bytes: [u8; 4] = payload.try_into().map_err(|_| FrameError::BadCredit(payload.len()))?;
                Frame::Credit { stream, bytes: u32::from_be_bytes(bytes) }
            }
            4 if payload.is_empty() => Frame::End { stream },
            4 => return Err(FrameError::PayloadOnEnd(payload.len())),
            5 => {
                Frame::Reset { stream, reason: String::from_utf8(payload.to_vec()).map_err(|_| FrameError::BadReason)? }
            }
            other => return Err(FrameError::UnknownKind(other)),
        })
    }
}

/// One direction's credit for one stream: what the sender may still send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credit {
    available: u64,
}

/// The peer sent more than it was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("received {received} bytes with only {available} bytes of credit")]
pub struct CreditExceeded {
    pub received: u64,
    pub available: u64,
}

impl Default for Credit {
    fn default() -> Self {
        Self { available: u64::from(INITIAL_CREDIT) }
    }
}

impl Credit {
    pub fn available(&self) -> u64 {
        self.available
    }

    /// A `credit` frame arrived (sender side) or was sent (receiver side).
    pub fn grant(&mut self, bytes: u32) {
        self.available = self.available.saturating_add(u64::from(bytes));
    }

    /// Sender side: how much of `wanted` may go in the next data frame (0: wait for credit).
    pub fn sendable(&self, wanted: usize) -> usize {
        wanted.min(MAX_PAYLOAD).min(usize::try_from(self.available).unwrap_or(usize::MAX))
    }

    /// Data of `bytes` went out (sender) or came in (receiver); the receiver resets the stream
    /// on `Err`.
    pub fn consume(&mut self, bytes: usize) -> Result<(), CreditExceeded> {
        let bytes = bytes as u64;
        if bytes > self.available {
            return Err(CreditExceeded { received: bytes, available: self.available });
        }
        self.available -= bytes;
        Ok(())
    }
}
