//! The file manager commands: each server's [`ServerFiles`] opened once (its use measured then
//! and counted from there on), every operation run off the async threads, and downloads and
//! uploads carried on the request's byte stream.

use super::{Agent, from_error, outcome_error};
use crate::files::{DiskQuota, ServerFiles};
use capcore::ids::ServerId;
use capcore::protocol::v1::files::{ArchiveReport, FileOp, Reply};
use capcore::protocol::v1::streams::{Incoming, Outgoing, StreamEnd};
use capcore::protocol::v1::{ErrorCode, Outcome};
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

/// How long a download waits for the panel to take more bytes before it gives up.
pub(super) const STALL: Duration = Duration::from_secs(120);
/// Bytes read from disk per chunk of a download.
const CHUNK: usize = 256 * 1024;

const MIB: u64 = 1024 * 1024;

pub(super) fn limit_bytes(disk_mb: i64) -> u64 {
    u64::try_from(disk_mb).unwrap_or(0).saturating_mul(MIB)
}

impl Agent {
    /// The server's file manager, opened (and its use measured) on first use.
    pub async fn server_files(&self, id: ServerId) -> Result<Arc<ServerFiles>, Outcome> {
        let disk_mb = self
            .with_slot(id, |s| s.record.spec.limits.disk_mb)
            .ok_or_else(|| outcome_error(ErrorCode::NotFound, format!("server {id} is not on this node")))?;
        if self.inner.restoring.lock().expect("restoring lock").contains(&id) {
            return Err(outcome_error(
                ErrorCode::Conflict,
                "the server's files are being restored from a backup; try again when that is done",
            ));
        }
        if let Some(files) = self.inner.files.lock().expect("files lock").get(&id) {
            return Ok(files.clone());
        }
        let generation = self.inner.files_generation.load(std::sync::atomic::Ordering::SeqCst);
        let dir = self.inner.config.runtime.servers_dir.join(id.to_string());
        let opened = tokio::task::spawn_blocking(move || -> capcore::Result<ServerFiles> {
            let files = ServerFiles::open(&dir, DiskQuota::new(limit_bytes(disk_mb), 0))?;
            let used = files.measure()?;
            files.quota().set_used(used);
            Ok(files)
        })
        .await
        .map_err(|e| outcome_error(ErrorCode::Internal, e.to_string()))?
        .map_err(from_error)?;
        let opened = Arc::new(opened);
        let mut cached = self.inner.files.lock().expect("files lock");
        // The directory was replaced while it was opened: what was opened may be the old one.
        if self.inner.files_generation.load(std::sync::atomic::Ordering::SeqCst) != generation {
            return Err(outcome_error(ErrorCode::Conflict, "the server's files were just replaced; try again"));
        }
        // Two first uses at once: the first one in is kept.
        Ok(cached.entry(id).or_insert(opened).clone())
    }

    /// A new spec may change the disk limit of an open file manager.
    pub(super) fn files_spec_changed(&self, id: ServerId, disk_mb: i64) {
        if let Some(files) = self.inner.files.lock().expect("files lock").get(&id) {
            files.quota().set_limit(limit_bytes(disk_mb));
        }
    }

    pub(super) fn files_forget(&self, id: ServerId) {
        let mut cached = self.inner.files.lock().expect("files lock");
        self.inner.files_generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        cached.remove(&id);
    }

    /// Runs one file manager operation; `stream` is the request's byte stream for a download
    /// (outgoing) or an upload (incoming).
    pub(super) async fn files(&self, id: ServerId, op: FileOp, stream: Option<StreamEnd>) -> Result<Reply, Outcome> {
        let denylist = self.with_slot(id, |s| s.record.spec.file_denylist.join("\n")).unwrap_or_default();
        let denylist = crate::files::IgnoreRules::parse(&denylist);
        check_denylist(&denylist, &op)?;
        let files = self.server_files(id).await?;
        match (op, stream) {
            (FileOp::Download { path, offset, length }, Some(StreamEnd::Outgoing(out))) => {
                download(files, path, offset, length, out).await
            }
            (FileOp::Upload { path }, Some(StreamEnd::Incoming(incoming))) => upload(files, path, incoming).await,
            (FileOp::Download { .. } | FileOp::Upload { .. }, _) => {
                Err(outcome_error(ErrorCode::Invalid, "a transfer needs the request's byte stream"))
            }
            (op, _) => blocking(move || run(&files, op, &denylist)).await,
        }
    }
}

/// Every path `op` names, as given.
fn paths_of(op: &FileOp) -> Vec<String> {
    match op {
        FileOp::List { path, .. }
        | FileOp::Stat { path }
        | FileOp::Download { path, .. }
        | FileOp::Upload { path }
        | FileOp::MakeDir { path }
        | FileOp::Chmod { path, .. }
        | FileOp::Search { path, .. } => vec![path.clone()],
        FileOp::Rename { from, to } | FileOp::Copy { from, to } => vec![from.clone(), to.clone()],
        FileOp::Delete { paths } => paths.clone(),
        FileOp::Compress { dir, paths, archive } => {
            let mut all: Vec<String> = paths.iter().map(|p| format!("{dir}/{p}")).collect();
            all.push(archive.clone());
            all
        }
        FileOp::Decompress { archive, into } => vec![archive.clone(), into.clone()],
    }
}

/// `Forbidden` when `op` names a path the template's file denylist covers, or a path beneath
/// one (gitignore-like patterns, as `.capignore`).
fn check_denylist(rules: &crate::files::IgnoreRules, op: &FileOp) -> Result<(), Outcome> {
    if rules.is_empty() {
        return Ok(());
    }
    for raw in paths_of(op) {
        // Malformed paths are refused by the file manager itself, with a better message.
        let Ok(path) = crate::files::RelPath::parse("path", &raw) else { continue };
        let mut prefix = crate::files::RelPath::root();
        for part in path.parts() {
            prefix = prefix.join(part);
            if rules.ignored(&prefix, true) || rules.ignored(&prefix, false) {
                return Err(outcome_error(
                    ErrorCode::Forbidden,
                    format!("`{}` is on the template's file denylist", prefix.display()),
                ));
            }
        }
    }
    Ok(())
}

pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> capcore::Result<T> + Send + 'static,
) -> Result<T, Outcome> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| outcome_error(ErrorCode::Internal, e.to_string()))?
        .map_err(from_error)
}

fn report(path: String, s: crate::files::ArchiveSummary) -> Reply {
    Reply::Archive(ArchiveReport {
        path,
        files: s.files,
        directories: s.directories,
        links: s.links,
        links_left_out: s.links_left_out,
        bytes: s.bytes,
    })
}

/// The operations that need no byte stream.
fn run(files: &ServerFiles, op: FileOp, denylist: &crate::files::IgnoreRules) -> capcore::Result<Reply> {
    Ok(match op {
        FileOp::List { path, page } => Reply::Listing(files.list(&path, page)?),
        FileOp::Stat { path } => Reply::Entry(files.stat(&path)?),
        FileOp::MakeDir { path } => Reply::Entry(files.create_dir(&path)?),
        FileOp::Rename { from, to } => {
            files.rename(&from, &to)?;
            Reply::Entry(files.stat(&to)?)
        }
        FileOp::Copy { from, to } => Reply::Entry(files.copy(&from, &to)?),
        FileOp::Delete { paths } => {
            if paths.is_empty() || paths.len() > 1000 {
                return Err(capcore::Error::invalid("paths", "must list 1 to 1000 paths"));
            }
            for path in &paths {
                files.remove(path)?;
            }
            Reply::Done
        }
        FileOp::Chmod { path, mode } => Reply::Entry(files.chmod(&path, mode)?),
        FileOp::Search { path, query, limit } => {
            let found = files.search(&path, &query, limit as usize)?;
            Reply::Found { entries: found.entries, truncated: found.truncated }
        }
        FileOp::Compress { dir, paths, archive } => {
            let (entry, summary) = files.compress_leaving_out(&dir, &paths, &archive, denylist)?;
            report(entry.path, summary)
        }
        FileOp::Decompress { archive, into } => {
            let summary = files.decompress(&archive, &into)?;
            report(into, summary)
        }
        FileOp::Download { .. } | FileOp::Upload { .. } => {
            return Err(capcore::Error::invalid("op", "a transfer needs the request's byte stream"));
        }
    })
}

/// Opens the range and answers at once; the bytes follow on the stream from a task of their
/// own, which stops when the panel stops taking them.
async fn download(
    files: Arc<ServerFiles>,
    path: String,
    offset: u64,
    length: Option<u64>,
    out: Outgoing,
) -> Result<Reply, Outcome> {
    let opened = blocking(move || {
        let (mut file, size) = files.open_read(&path)?;
        if offset > size || (offset == size && size > 0) {
            return Err(capcore::Error::invalid("offset", format!("is at or past the end of the file ({size} bytes)")));
        }
        let length = length.unwrap_or(size - offset).min(size - offset);
        file.seek(SeekFrom::Start(offset)).map_err(|e| capcore::Error::internal("cannot seek", e))?;
        let modified_ms = file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        Ok((file, size, length, modified_ms))
    })
    .await;
    let (file, size, length, modified_ms) = match opened {
        Ok(o) => o,
        Err(e) => {
            out.reset("the download could not start").await;
            return Err(e);
        }
    };
    stream_file(file, length, out);
    Ok(Reply::Download { size, offset, length, modified_ms })
}

/// Sends `length` bytes of `file` (from where it stands) on `out`, from a task of its own that
/// stops when the panel stops taking them.
pub(super) fn stream_file(file: std::fs::File, length: u64, mut out: Outgoing) {
    tokio::spawn(async move {
        let (chunks, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(2);
        // Reading stays off the async threads; two chunks ahead at most.
        let reader = tokio::task::spawn_blocking(move || {
            let mut left = file.take(length);
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = match left.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = chunks.blocking_send(Err(e));
                        return;
                    }
                };
                if n == 0 {
                    return;
                }
                buf.truncate(n);
                if chunks.blocking_send(Ok(buf)).is_err() {
                    return;
                }
            }
        });
        let mut sent = 0u64;
        while let Some(chunk) = rx.recv().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    out.reset(&format!("reading the file failed: {e}")).await;
                    return;
                }
            };
            match tokio::time::timeout(STALL, out.send(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len() as u64,
                Ok(Err(_)) => return,
                Err(_) => {
                    out.reset("the download stalled").await;
                    return;
                }
            }
        }
        let _ = reader.await;
        if sent == length {
            let _ = out.finish().await;
        } else {
            out.reset(&format!("the file shrank while it was read ({sent} of {length} bytes)")).await;
        }
    });
}

/// Writes the stream's bytes to the file atomically; answers once the file is in place.
async fn upload(files: Arc<ServerFiles>, path: String, mut incoming: Incoming) -> Result<Reply, Outcome> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Option<Result<Vec<u8>, String>>>(4);
    let pump = tokio::spawn(async move {
        while let Some(item) = incoming.next().await {
            let failed = item.is_err();
            // The writer stopped (it failed): dropping `incoming` resets the stream.
            if tx.send(Some(item)).await.is_err() || failed {
                return;
            }
        }
        // The sender said it is done; only this is the end of the file.
        let _ = tx.send(None).await;
    });
    // Dropped with this future too (the request's timeout): the stream is then reset, and the
    // writer sees the end of its channel and fails, leaving nothing.
    let _pump = AbortOnDrop(pump);
    let written = blocking(move || {
        let mut reader = ChannelReader { rx, chunk: Vec::new(), at: 0, ended: false };
        files.write_from(&path, &mut reader)
    })
    .await;
    written.map(Reply::Entry)
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A `Read` over chunks arriving on a channel (from inside `spawn_blocking`).
struct ChannelReader {
    /// `None` marks the end the sender declared; a channel closed without it is a failure.
    rx: tokio::sync::mpsc::Receiver<Option<Result<Vec<u8>, String>>>,
    chunk: Vec<u8>,
    at: usize,
    ended: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.chunk.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Some(Ok(chunk))) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Some(Some(Err(reason))) => {
                    return Err(std::io::Error::other(format!("the upload was abandoned: {reason}")));
                }
                Some(None) => self.ended = true,
                None => return Err(std::io::Error::other("the upload stopped before its end")),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
