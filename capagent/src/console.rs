//! A server's console: a bounded ring buffer replayed to new subscribers, a broadcast to live
//! ones, and a throttle so a flooding game can never grow memory or starve other servers.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Limits of one console.
#[derive(Clone, Copy, Debug)]
pub struct ConsoleConfig {
    /// Lines kept for replay.
    pub buffer_lines: usize,
    /// Lines accepted per `interval`; the rest are dropped and counted.
    pub lines_per_interval: u32,
    pub interval: Duration,
    /// Longer lines are cut (bytes, at a character boundary).
    pub max_line_bytes: usize,
    /// Lines a live subscriber may fall behind before it misses some.
    pub subscriber_queue: usize,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            buffer_lines: 1000,
            lines_per_interval: 2000,
            interval: Duration::from_secs(1),
            max_line_bytes: 4096,
            subscriber_queue: 1024,
        }
    }
}

struct Window {
    started: Instant,
    accepted: u32,
    dropped: u64,
}

/// One server's console.
pub struct Console {
    config: ConsoleConfig,
    buffer: Mutex<VecDeque<String>>,
    window: Mutex<Window>,
    live: broadcast::Sender<String>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").field("config", &self.config).finish_non_exhaustive()
    }
}

/// What a new subscriber gets: the recent lines, then the live ones.
#[derive(Debug)]
pub struct Subscription {
    pub replay: Vec<String>,
    pub live: broadcast::Receiver<String>,
}

impl Console {
    pub fn new(config: ConsoleConfig) -> Self {
        Self {
            config,
            buffer: Mutex::new(VecDeque::with_capacity(config.buffer_lines.min(4096))),
            window: Mutex::new(Window { started: Instant::now(), accepted: 0, dropped: 0 }),
            live: broadcast::channel(config.subscriber_queue.max(1)).0,
        }
    }

    /// Adds a line from the game, unless the throttle drops it. The first line dropped in an
    /// interval is replaced by one marker line saying that lines are being dropped.
    pub fn push(&self, line: &str) {
        let first_drop = {
            let mut w = self.window.lock().expect("console window lock");
            if w.started.elapsed() >= self.config.interval {
                *w = Window { started: Instant::now(), accepted: 0, dropped: 0 };
            }
            if w.accepted < self.config.lines_per_interval {
                w.accepted += 1;
                None
            } else {
                w.dropped += 1;
                Some(w.dropped == 1)
            }
        };
        match first_drop {
            None => self.record(cut(line, self.config.max_line_bytes)),
            Some(true) => self.record(format!(
                "[cap] console output over {} lines per {:?}: dropping lines",
                self.config.lines_per_interval, self.config.interval
            )),
            Some(false) => {}
        }
    }

    /// A line from the agent itself (not throttled).
    pub fn system(&self, line: impl Into<String>) {
        self.record(line.into());
    }

    fn record(&self, line: String) {
        {
            let mut buffer = self.buffer.lock().expect("console buffer lock");
            if buffer.len() >= self.config.buffer_lines {
                buffer.pop_front();
            }
            buffer.push_back(line.clone());
        }
        // No subscriber is fine; a slow one lags and misses lines, it never blocks the game.
        let _ = self.live.send(line);
    }

    pub fn subscribe(&self) -> Subscription {
        // Subscribe before copying, so no line falls between replay and live.
        let live = self.live.subscribe();
        let replay = self.buffer.lock().expect("console buffer lock").iter().cloned().collect();
        Subscription { replay, live }
    }

    /// Lines currently kept (for tests and memory accounting).
    pub fn buffered(&self) -> usize {
        self.buffer.lock().expect("console buffer lock").len()
    }
}

fn cut(line: &str, max: usize) -> String {
    if line.len() <= max {
        return line.to_string();
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

/// Cuts a byte stream into console lines: at each `\n` (a `\r` before it dropped), or every
/// `max` bytes of a longer line, which then arrives in pieces. Bytes that are not UTF-8 are
/// replaced.
#[derive(Debug)]
pub(crate) struct LineCutter {
    pending: Vec<u8>,
    max: usize,
}

impl LineCutter {
    pub fn new(max: usize) -> Self {
        Self { pending: Vec::new(), max: max.max(1) }
    }

    /// Adds bytes and hands on every line they complete; returns how many bytes were handed on.
    pub fn feed(&mut self, bytes: &[u8], line: &mut impl FnMut(&str)) -> usize {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        loop {
            let rest = &self.pending[start..];
            let window = &rest[..rest.len().min(self.max)];
            let end = match window.iter().position(|&b| b == b'\n') {
                Some(i) => i + 1,
                None if rest.len() >= self.max => self.max,
                None => break,
            };
            line(String::from_utf8_lossy(&rest[..end]).trim_end_matches(['\n', '\r']));
            start += end;
        }
        self.pending.drain(..start);
        start
    }

    /// At the end of the stream: the unterminated rest becomes a last line. Returns its length.
    pub fn flush(&mut self, line: &mut impl FnMut(&str)) -> usize {
        let rest = self.pending.len();
        if rest > 0 {
            line(String::from_utf8_lossy(&self.pending).trim_end_matches(['\n', '\r']));
            self.pending.clear();
        }
        rest
    }

    /// Whether bytes of an unfinished line are held.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_cutter_splits_at_newlines_and_at_the_limit() {
        let mut lines = Vec::new();
        let mut cutter = LineCutter::new(5);
        let mut take = |l: &str| lines.push(l.to_string());
        cutter.feed(b"ab", &mut take);
        cutter.feed(b"c\r\nlongline\n\xffz", &mut take);
        cutter.flush(&mut take);
        assert_eq!(lines, ["abc", "longl", "ine", "\u{fffd}z"]);
    }

    #[test]
    fn ring_buffer_is_bounded_and_replayed() {
        let c = Console::new(ConsoleConfig { buffer_lines: 3, ..ConsoleConfig::default() });
        for i in 0..10 {
            c.push(&format!("line {i}"));
        }
        assert_eq!(c.subscribe().replay, vec!["line 7", "line 8", "line 9"]);
    }

    #[test]
    fn throttle_drops_and_says_so_once() {
        let c = Console::new(ConsoleConfig {
            lines_per_interval: 2,
            interval: Duration::from_secs(3600),
            ..ConsoleConfig::default()
        });
        let mut sub = c.subscribe();
        for i in 0..5 {
            c.push(&format!("l{i}"));
        }
        assert_eq!(c.buffered(), 3);
        assert_eq!(sub.live.try_recv().unwrap(), "l0");
        assert_eq!(sub.live.try_recv().unwrap(), "l1");
        assert!(sub.live.try_recv().unwrap().starts_with("[cap] console output over 2 lines"), "one marker");
        assert!(sub.live.try_recv().is_err(), "the other dropped lines leave nothing");
        c.system("agent line");
        assert_eq!(sub.live.try_recv().unwrap(), "agent line", "agent lines are not throttled");
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        let c = Console::new(ConsoleConfig { max_line_bytes: 5, ..ConsoleConfig::default() });
        c.push("ab✓✓✓");
        assert_eq!(c.subscribe().replay, vec!["ab✓…"]);
    }
}
