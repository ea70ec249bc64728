//! Writing files: whole files written beside the target and renamed over it (a reader sees the
//! old or the new content, never half), counted against the disk limit as they are written;
//! and directories.

use super::{RelPath, ServerFiles, check_new_name, errno, kind_of};
use capcore::protocol::v1::files::{FileEntry, FileKind};
use capcore::{Error, Result};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

/// Bytes read from an upload and counted at a time.
const CHUNK: usize = 64 * 1024;

impl ServerFiles {
    /// Writes `bytes` as the whole content of `path`, creating the file (and the directories
    /// leading to it) or replacing it; keeps a replaced file's permission bits.
    pub fn write(&self, path: &str, bytes: &[u8]) -> Result<FileEntry> {
        self.write_from(path, &mut &bytes[..])
    }

    /// [`ServerFiles::write`] from a reader (an upload), never holding more than a chunk: the
    /// bytes go to a temporary file beside the target, each chunk counted against the disk
    /// limit before it is written. On any failure the temporary file goes and the count is
    /// given back.
    pub fn write_from(&self, path: &str, source: &mut dyn Read) -> Result<FileEntry> {
        let path = RelPath::parse("path", path)?;
        let (parent, name) =
            path.split_last().ok_or_else(|| Error::invalid("path", "names the server's directory itself"))?;
        check_new_name("path", name)?;
        let dir = self.make_dirs(&parent)?;
        let (mode, replaced_bytes) = match fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => match kind_of(&stat) {
                FileKind::Directory => {
                    return Err(Error::invalid("path", format!("`{}` is a directory", path.display())));
                }
                // Only this name is replaced; a file with other names keeps its bytes.
                FileKind::File => {
                    (stat.st_mode & 0o777, if stat.st_nlink == 1 { stat.st_size.max(0) as u64 } else { 0 })
                }
                // A link is never replaced by what was meant for its target, nor a FIFO or a
                // device by a file: the user deletes it first.
                FileKind::Symlink => {
                    return Err(Error::invalid(
                        "path",
                        format!("`{}` is a symbolic link; delete it to write a file there", path.display()),
                    ));
                }
                FileKind::Other => {
                    return Err(Error::invalid("path", format!("`{}` is not a regular file", path.display())));
                }
            },
            Err(Errno::ENOENT) => (0o644, 0),
            Err(e) => return Err(errno(e, &path)),
        };
        let temporary = format!(".cap-write-{:016x}", rand::random::<u64>());
        let fd = Self::open_in(
            &dir,
            &temporary,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            Mode::from_bits_truncate(mode),
            &path,
        )?;
        // The file being replaced counts as gone from the start, so a file can be rewritten as
        // large as it was even at the limit (for a moment both are on disk).
        self.quota.give_back(replaced_bytes);
        let mut written = 0u64;
        let outcome = self.fill(File::from(fd), source, &mut written).and_then(|()| {
            nix::fcntl::renameat(dir.as_fd(), temporary.as_str(), dir.as_fd(), name).map_err(|e| errno(e, &path))
        });
        if let Err(e) = outcome {
            let _ = unlinkat(dir.as_fd(), temporary.as_str(), UnlinkatFlags::NoRemoveDir);
            self.quota.give_back(written);
            self.quota.take_anyway(replaced_bytes);
            return Err(e);
        }
        super::stat_in(&dir, name, &path)
    }

    /// Copies `source` into `file`, counting each chunk before writing it, then syncs.
    fn fill(&self, mut file: File, source: &mut dyn Read, written: &mut u64) -> Result<()> {
        let mut buffer = vec![0u8; CHUNK];
        loop {
            let n = match source.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::invalid("content", format!("the upload broke off: {e}"))),
            };
            self.quota.take(n as u64)?;
            *written += n as u64;
            file.write_all(&buffer[..n]).map_err(write_error)?;
        }
        file.sync_all().map_err(write_error)
    }

    /// Creates the directory `path` and any missing directories leading to it; an existing
    /// directory is fine, anything else in the way is `Conflict`.
    pub fn create_dir(&self, path: &str) -> Result<FileEntry> {
        let path = RelPath::parse("path", path)?;
        if path.is_root() {
            return Err(Error::invalid("path", "names the server's directory itself"));
        }
        let (parent, name) = path.split_last().expect("not the root");
        let dir = self.make_dirs(&parent)?;
        check_new_name("path", name)?;
        match mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(errno(e, &path)),
        }
        let entry = super::stat_in(&dir, name, &path)?;
        if entry.kind != FileKind::Directory {
            return Err(Error::conflict(format!("`{}` already exists and is not a directory", path.display())));
        }
        Ok(entry)
    }

    /// Opens the directory `path`, creating what is missing of it, one component at a time
    /// (each opened beneath the root, through no link).
    pub(super) fn make_dirs(&self, path: &RelPath) -> Result<OwnedFd> {
        match self.open_dir(path) {
            Err(Error::NotFound { .. }) => {}
            other => return other,
        }
        let mut done = RelPath::root();
        for part in path.parts() {
            let dir = self.open_dir(&done)?;
            let next = done.join(part);
            check_new_name("path", part)?;
            match mkdirat(dir.as_fd(), part.as_str(), Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(errno(e, &next)),
            }
            done = next;
        }
        self.open_dir(path)
    }
}

fn write_error(e: std::io::Error) -> Error {
    match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ENOSPC | Errno::EDQUOT) => Error::conflict("no space left on the node"),
        _ => Error::internal("cannot write", e),
    }
}
