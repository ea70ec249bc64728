//! Following a game's log file: lines cut as the console wants them, the consumed prefix punched
//! out so disk stays bounded, and inotify to learn of new data at once.
//!
//! What was handed on is freed with `fallocate(PUNCH_HOLE | KEEP_SIZE)` from offset 0 up to the end
//! of the last whole line: the file keeps its size (the game appends with `O_APPEND`), only its
//! blocks go. A partial line stays on disk until it is complete. So a tail that resumes after an
//! agent restart starts at the first data (`SEEK_DATA`), skips the NUL bytes of a partly punched
//! block, and neither repeats nor loses a line. Where punching is unsupported, the file is
//! truncated instead once everything in it was read (a write racing that truncation is lost).

use crate::console::LineCutter;
use nix::fcntl::{FallocateFlags, fallocate};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::{Interval, MissedTickBehavior};

const CHUNK: usize = 64 * 1024;

/// One log file being followed.
#[derive(Debug)]
pub(crate) struct LogTail {
    file: File,
    /// The next byte to read.
    offset: u64,
    /// Bytes before this were handed on; `lines` holds `committed..offset`.
    committed: u64,
    lines: LineCutter,
    /// At a resume: NUL bytes before the first data are the zeroed end of a punched block.
    skip_nul: bool,
    punch: bool,
    punched: u64,
    buf: Vec<u8>,
}

impl LogTail {
    /// A log that starts empty (a new run).
    pub fn fresh(file: File, max_line: usize) -> Self {
        Self {
            file,
            offset: 0,
            committed: 0,
            lines: LineCutter::new(max_line),
            skip_nul: false,
            punch: true,
            punched: 0,
            buf: vec![0; CHUNK],
        }
    }

    /// A log another agent was reading: starts at its first data not yet punched out.
    pub fn resume(file: File, max_line: usize) -> io::Result<Self> {
        let start = match nix::unistd::lseek(&file, 0, nix::unistd::Whence::SeekData) {
            Ok(offset) => offset as u64,
            // Nothing but a hole up to the end.
            Err(nix::errno::Errno::ENXIO) => file.metadata()?.len(),
            Err(e) => return Err(e.into()),
        };
        let mut tail = Self::fresh(file, max_line);
        tail.offset = start;
        tail.committed = start;
        tail.punched = start;
        tail.skip_nul = true;
        Ok(tail)
    }

    /// Reads what is there, up to about `budget` bytes, hands each complete line to `line`, and
    /// frees what was handed on. Returns whether more may be waiting (the budget ran out).
    pub fn drain(&mut self, budget: usize, line: &mut impl FnMut(&str)) -> io::Result<bool> {
        let mut read = 0;
        let more = loop {
            if read >= budget {
                break true;
            }
            let n = self.file.read_at(&mut self.buf, self.offset)?;
            if n == 0 {
                break false;
            }
            self.offset += n as u64;
            read += n;
            let mut data = &self.buf[..n];
            if self.skip_nul {
                let skipped = data.iter().position(|&b| b != 0).unwrap_or(n);
                self.committed += skipped as u64;
                data = &data[skipped..];
                self.skip_nul = data.is_empty();
            }
            self.committed += self.lines.feed(data, line) as u64;
        };
        self.free_consumed();
        Ok(more)
    }

    /// At the end of a run: the unterminated rest becomes a last line.
    pub fn flush(&mut self, line: &mut impl FnMut(&str)) {
        self.committed += self.lines.flush(line) as u64;
        self.free_consumed();
    }

    fn free_consumed(&mut self) {
        if self.committed <= self.punched {
            return;
        }
        if self.punch {
            let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
            // From 0 every time: a block left partly zeroed by the last punch is freed by this one.
            match fallocate(self.file.as_fd(), flags, 0, self.committed as i64) {
                Ok(()) => {
                    self.punched = self.committed;
                    return;
                }
                Err(e) => {
                    tracing::debug!("punching the read part of a log failed ({e}): truncating it instead");
                    self.punch = false;
                }
            }
        }
        if self.lines.is_empty()
            && self.file.metadata().is_ok_and(|m| m.len() == self.offset)
            && self.file.set_len(0).is_ok()
        {
            self.offset = 0;
            self.committed = 0;
            self.punched = 0;
        }
    }
}

/// Wakes the tail when a watched file changes (inotify `IN_MODIFY`), with a slow poll as a
/// fallback; without inotify the poll is faster.
///
/// A small thread blocks in `read` on the inotify descriptor and passes each batch on as a
/// [`Notify`] permit (so no wake-up is lost between two waits). Tokio's `AsyncFd` would avoid the
/// thread but needs `unsafe` to register a descriptor. Dropping this removes the watches, which
/// wakes the thread with `IN_IGNORED` and ends it.
pub(crate) struct LogEvents {
    changed: Arc<Notify>,
    _watcher: Option<Watcher>,
    poll: Interval,
}

struct Watcher {
    inotify: Arc<Inotify>,
    watches: Vec<WatchDescriptor>,
    stop: Arc<AtomicBool>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for wd in self.watches.drain(..) {
            let _ = self.inotify.rm_watch(wd);
        }
    }
}

impl std::fmt::Debug for LogEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogEvents").field("inotify", &self._watcher.is_some()).finish_non_exhaustive()
    }
}

impl LogEvents {
    /// Must be called inside a Tokio runtime.
    pub fn new(paths: &[&Path]) -> Self {
        let changed = Arc::new(Notify::new());
        let watcher = Self::watch(paths, changed.clone())
            .inspect_err(|e| tracing::warn!("no inotify for the console logs ({e}): polling them"))
            .ok();
        let period = if watcher.is_some() { Duration::from_secs(1) } else { Duration::from_millis(100) };
        let mut poll = tokio::time::interval(period);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { changed, _watcher: watcher, poll }
    }

    fn watch(paths: &[&Path], changed: Arc<Notify>) -> io::Result<Watcher> {
        let inotify = Arc::new(Inotify::init(InitFlags::IN_CLOEXEC)?);
        let mut watcher =
            Watcher { inotify: inotify.clone(), watches: Vec::new(), stop: Arc::new(AtomicBool::new(false)) };
        for path in paths {
            watcher.watches.push(inotify.add_watch(*path, AddWatchFlags::IN_MODIFY)?);
        }
        let stop = watcher.stop.clone();
        std::thread::Builder::new().name("cap-log-events".into()).spawn(move || {
            loop {
                match inotify.read_events() {
                    Ok(events) => {
                        if stop.load(Ordering::SeqCst)
                            || events.iter().any(|e| e.mask.contains(AddWatchFlags::IN_IGNORED))
                        {
                            return;
                        }
                        changed.notify_one();
                    }
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        tracing::warn!("reading inotify events failed ({e}): the console logs are polled");
                        return;
                    }
                }
            }
        })?;
        Ok(watcher)
    }

    /// Resolves when a watched file may have new data.
    pub async fn next(&mut self) {
        tokio::select! {
            () = self.changed.notified() => {}
            _ = self.poll.tick() => {}
        }
    }
}

#[cfg(test)]
mod tests;
