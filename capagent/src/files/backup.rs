//! Backups of a server's directory: made as tar + zstd (multithreaded, streamed to any writer,
//! its SHA-256 taken on the way), leaving out what `.capignore` says; restored only when the
//! whole archive matches its recorded checksum, extracted beside the server's directory with the
//! same archive rules as any extraction, and swapped in with one atomic rename.

use super::archive::{ArchiveLimits, ArchiveSummary};
use super::compress::ZSTD_LEVEL;
use super::ignore::{IGNORE_FILE, IgnoreRules};
use super::list::names_in;
use super::{DiskQuota, RelPath, ServerFiles};
use capcore::{Error, Result};
use nix::fcntl::{RenameFlags, renameat2};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

/// What a backup is: its archive's size and SHA-256 (hex), and what went in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupInfo {
    pub sha256: String,
    pub bytes: u64,
    pub summary: ArchiveSummary,
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The SHA-256 (hex) of everything `reader` gives.
pub fn sha256_of(reader: &mut dyn Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        match reader.read(&mut buffer)? {
            0 => break,
            n => hasher.update(&buffer[..n]),
        }
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ServerFiles {
    /// Writes a backup of the whole directory to `out` as tar + zstd, on every core, leaving out
    /// what the ignore file (`.capignore`) names and the file manager's own temporary files.
    /// Files with other hard links are refused, as everywhere in the file manager.
    pub fn backup(&self, out: &mut dyn Write) -> Result<BackupInfo> {
        let rules = match self.read(IGNORE_FILE, 0, 64 * 1024) {
            Ok(text) => IgnoreRules::parse(&String::from_utf8_lossy(&text)),
            Err(Error::NotFound { .. }) => IgnoreRules::default(),
            Err(e) => return Err(e),
        };
        let skip = |path: &RelPath, is_dir: bool| {
            path.parts().last().is_some_and(|name| name.starts_with(".cap-")) || rules.ignored(path, is_dir)
        };
        let failed = |e: std::io::Error| Error::internal("cannot write the backup", e);
        let mut hashing = Hashing { inner: out, hasher: Sha256::new(), bytes: 0 };
        let mut encoder = zstd::stream::write::Encoder::new(&mut hashing, ZSTD_LEVEL).map_err(failed)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        encoder.multithread(threads).map_err(failed)?;
        let mut builder = tar::Builder::new(encoder);
        let mut summary = ArchiveSummary::default();
        let root = self.open_dir(&RelPath::root())?;
        let mut names = names_in(&root, &RelPath::root())?;
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, _) in names {
            let path = RelPath::root().join(&name);
            self.add(&mut builder, &root, &name, &path, &name, &skip, &mut summary)?;
        }
        builder.into_inner().and_then(|encoder| encoder.finish()).map_err(failed)?;
        let sha256 = hex(&hashing.hasher.finalize_reset());
        Ok(BackupInfo { sha256, bytes: hashing.bytes, summary })
    }
}

/// Restores the server directory `server_dir` from the backup `archive` (tar + zstd, `bytes`
/// long) whose recorded SHA-256 is `sha256`.
///
/// The whole archive is checked against the checksum first: a corrupt or truncated backup is
/// refused. It is then extracted into a new directory beside `server_dir`, under the same rules
/// as any extraction (but for the compression ratio cap, meant for archives from elsewhere)
/// and within `quota`'s limit (counted from zero), and exchanged with
/// `server_dir` in one rename; the old content is then deleted. On any refusal `server_dir` is
/// as it was. Returns what came out; the caller reopens its [`ServerFiles`] (the old handle
/// now points at the deleted directory) and sets its disk count to `summary.bytes`.
pub fn restore(
    server_dir: &Path,
    archive: &mut File,
    bytes: u64,
    sha256: &str,
    quota: &DiskQuota,
) -> Result<ArchiveSummary> {
    use std::io::Seek;
    archive.rewind().map_err(|e| Error::internal("cannot read the backup", e))?;
    let actual = sha256_of(archive).map_err(|e| Error::internal("cannot read the backup", e))?;
    if !actual.eq_ignore_ascii_case(sha256) {
        return Err(Error::conflict(format!(
            "the backup is corrupt or truncated: its SHA-256 is {actual}, {sha256} was recorded; nothing was restored"
        )));
    }
    archive.rewind().map_err(|e| Error::internal("cannot read the backup", e))?;
    let parent = server_dir
        .parent()
        .ok_or_else(|| Error::internal("a server directory has no parent", std::io::Error::other("no parent")))?;
    let name = server_dir
        .file_name()
        .ok_or_else(|| Error::internal("a server directory has no name", std::io::Error::other("no name")))?;
    let staging = parent.join(format!(".{}.restore-{:016x}", name.to_string_lossy(), rand::random::<u64>()));
    std::fs::create_dir(&staging).map_err(|e| Error::internal("cannot make the restore's directory", e))?;
    let outcome = (|| {
        let mode = std::fs::metadata(server_dir).map_err(|e| Error::internal("cannot read the server directory", e))?;
        std::fs::set_permissions(&staging, mode.permissions())
            .map_err(|e| Error::internal("cannot set the restore's mode", e))?;
        let fresh = ServerFiles::open(&staging, DiskQuota::new(quota.limit_bytes(), 0))?;
        let file = archive.try_clone().map_err(|e| Error::internal("cannot read the backup", e))?;
        // The checksum says this is the archive the agent made: no cap on its compression ratio
        // (a world of zeros compresses far beyond any bomb threshold), the other caps and the
        // disk limit hold.
        let limits = ArchiveLimits { max_ratio: u64::MAX, ..ArchiveLimits::default() };
        let summary = fresh.extract_into_empty(file, bytes, limits)?;
        let parent_dir = File::open(parent).map_err(|e| Error::internal("cannot open the servers directory", e))?;
        renameat2(&parent_dir, staging.file_name().expect("named"), &parent_dir, name, RenameFlags::RENAME_EXCHANGE)
            .map_err(|e| Error::internal("cannot swap the restored directory in", e))?;
        Ok(summary)
    })();
    // After the exchange the staging name holds the old content; before it, the partial restore.
    if let Err(e) = std::fs::remove_dir_all(&staging) {
        tracing::warn!(path = %staging.display(), error = %e, "cannot delete what a restore left beside the server");
    }
    outcome
}
