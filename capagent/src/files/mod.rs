//! The file manager of one server: every operation resolves its path beneath an open handle of
//! the server's directory, so nothing outside it can be read, written, created, deleted, listed
//! or chmodded, whatever the path, symbolic links or races.
//!
//! # Confinement by construction
//!
//! [`ServerFiles`] holds the server's directory open. A path from a request becomes normal
//! components ([`RelPath`]); the directory holding the last one is opened with `openat2` from
//! that handle with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`, so the kernel
//! refuses any `..` that would climb out, any absolute jump and any symbolic link on the way, at
//! the moment of use. The last component is then used through that directory with the
//! `*at` calls, never following a link (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `unlinkat`,
//! `renameat2`). No path string is checked and then used.
//!
//! Symbolic links are listed, shown with their target, renamed, copied (as links) and deleted,
//! but never followed. A regular file with more than one hard link is neither read nor
//! changed (its other name may be outside the directory); it can be renamed or deleted. FIFOs,
//! sockets and devices are listed, never opened. New files are written to a temporary file
//! beside the target and renamed over it, so a reader sees the old or the new content.
//!
//! Writes count against the server's disk limit ([`DiskQuota`]) before they happen: a write
//! that would cross it fails with `Conflict` and leaves nothing behind.
//!
//! Needs `openat2` (Linux 5.6 or newer): [`ServerFiles::open`] says so otherwise.
//!
//! ```
//! # let base = std::env::temp_dir().join(format!("capagent-files-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(base.join("server")).unwrap();
//! use capagent::files::{DiskQuota, ServerFiles};
//! use capcore::protocol::v1::files::ListRequest;
//!
//! let files = ServerFiles::open(&base.join("server"), DiskQuota::unlimited()).unwrap();
//! files.write("config/server.properties", b"motd=hello\n").unwrap();
//! assert_eq!(files.read("/config/server.properties", 0, 1024).unwrap(), b"motd=hello\n");
//! let listing = files.list("config", ListRequest::first(100)).unwrap();
//! assert_eq!(listing.entries[0].name, "server.properties");
//! // Out of the directory, by any road: refused.
//! assert!(files.read("../../etc/passwd", 0, 1024).is_err());
//! std::os::unix::fs::symlink("/etc/passwd", base.join("server/passwd")).unwrap();
//! assert!(files.read("passwd", 0, 1024).is_err());
//! # std::fs::remove_dir_all(&base).unwrap();
//! ```

mod archive;
mod backup;
mod chmod;
mod compress;
mod copy;
mod decompress;
mod ignore;
mod list;
mod path;
mod project_quota;
mod quota;
mod read;
mod remove;
mod rename;
mod search;
mod usage;
mod write;

pub use archive::{ArchiveFormat, ArchiveLimits, ArchiveSummary};
pub use backup::{BackupInfo, restore, sha256_of};
pub use ignore::{IGNORE_FILE, IgnoreRules};
pub use path::{MAX_NAME_BYTES, MAX_PATH_BYTES, RelPath, check_new_name};
pub use project_quota::ProjectQuotas;
pub use quota::DiskQuota;
pub use read::MAX_READ_BYTES;
pub use search::{Found, MAX_SEARCHED};
pub use usage::DiskUsage;

use capcore::protocol::v1::files::{FileEntry, FileKind};
use capcore::{Error, Result};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// The file manager of one server directory.
#[derive(Debug)]
pub struct ServerFiles {
    root: OwnedFd,
    quota: DiskQuota,
    /// The last listing by name, for the next page of the same directory.
    sorted: std::sync::Mutex<Option<list::SortedNames>>,
}

/// How every directory on a path is opened: beneath the root, through no link of any kind.
fn resolve_flags() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

impl ServerFiles {
    /// Opens the server's directory `dir` (which the agent made; itself not a symbolic link),
    /// counting writes against `quota`.
    pub fn open(dir: &Path, quota: DiskQuota) -> Result<Self> {
        let root = nix::fcntl::open(
            dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::internal(format!("cannot open the server's directory {}", dir.display()), e))?;
        let how =
            OpenHow::new().flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC).resolve(resolve_flags());
        match openat2(root.as_fd(), ".", how) {
            Ok(_) => Ok(Self { root, quota, sorted: std::sync::Mutex::new(None) }),
            Err(Errno::ENOSYS) => Err(Error::unavailable(
                "the file manager needs openat2 (Linux 5.6 or newer), which this kernel does not have",
                Errno::ENOSYS,
            )),
            Err(e) => Err(Error::internal("cannot resolve beneath the server's directory", e)),
        }
    }

    /// The disk limit writes count against.
    pub fn quota(&self) -> &DiskQuota {
        &self.quota
    }

    /// Opens the directory `path` (beneath the root, through no link) for reading its entries
    /// and for `*at` calls.
    fn open_dir(&self, path: &RelPath) -> Result<OwnedFd> {
        let how =
            OpenHow::new().flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC).resolve(resolve_flags());
        let relative = if path.is_root() { ".".to_string() } else { path.display() };
        openat2(self.root.as_fd(), relative.as_str(), how).map_err(|e| errno(e, path))
    }

    /// The directory holding `path`'s last component, opened, and that component; `Invalid`
    /// naming `field` for the server's directory itself.
    fn parent_of<'p>(&self, field: &str, path: &'p RelPath) -> Result<(OwnedFd, &'p str)> {
        let (parent, name) =
            path.split_last().ok_or_else(|| Error::invalid(field, "names the server's directory itself"))?;
        Ok((self.open_dir(&parent)?, name))
    }

    /// Opens `name` in `dir` with `flags`, never through a link.
    fn open_in(dir: &OwnedFd, name: &str, flags: OFlag, mode: Mode, path: &RelPath) -> Result<OwnedFd> {
        let how =
            OpenHow::new().flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).mode(mode).resolve(resolve_flags());
        openat2(dir.as_fd(), name, how).map_err(|e| errno(e, path))
    }

    /// What `path` is, without following it if it is a link.
    pub fn stat(&self, path: &str) -> Result<FileEntry> {
        let path = RelPath::parse("path", path)?;
        match path.split_last() {
            None => {
                let stat = nix::sys::stat::fstat(self.root.as_fd()).map_err(|e| errno(e, &path))?;
                Ok(entry_of(&path, "", &stat, None))
            }
            Some((parent, name)) => {
                let dir = self.open_dir(&parent)?;
                stat_in(&dir, name, &path)
            }
        }
    }
}

/// The entry `name` of `dir` (at `path`), not following a link.
fn stat_in(dir: &OwnedFd, name: &str, path: &RelPath) -> Result<FileEntry> {
    let stat = fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| errno(e, path))?;
    let target = if kind_of(&stat) == FileKind::Symlink {
        nix::fcntl::readlinkat(dir.as_fd(), name).ok().map(|t| t.to_string_lossy().into_owned())
    } else {
        None
    };
    Ok(entry_of(path, name, &stat, target))
}

fn kind_of(stat: &FileStat) -> FileKind {
    match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG => FileKind::File,
        SFlag::S_IFDIR => FileKind::Directory,
        SFlag::S_IFLNK => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

fn entry_of(path: &RelPath, name: &str, stat: &FileStat, target: Option<String>) -> FileEntry {
    FileEntry {
        name: name.to_string(),
        path: path.display(),
        kind: kind_of(stat),
        size: stat.st_size.max(0) as u64,
        mode: stat.st_mode & 0o7777,
        modified_ms: stat.st_mtime * 1000 + stat.st_mtime_nsec / 1_000_000,
        target,
    }
}

/// Refuses to read or change a regular file that has another name somewhere (a hard link):
/// that name may be outside the server's directory.
fn refuse_hard_links(stat: &FileStat, path: &RelPath) -> Result<()> {
    if kind_of(stat) == FileKind::File && stat.st_nlink > 1 {
        return Err(Error::forbidden(format!(
            "`{}` has {} hard links; the file manager does not read or change such files",
            path.display(),
            stat.st_nlink
        )));
    }
    Ok(())
}

/// What an error of a system call on `path` means to the caller.
fn errno(e: Errno, path: &RelPath) -> Error {
    let shown = if path.is_root() { "/".to_string() } else { format!("`{}`", path.display()) };
    match e {
        Errno::ENOENT => Error::not_found("file"),
        Errno::ELOOP => Error::forbidden(format!(
            "{shown} is or goes through a symbolic link, which the file manager does not follow"
        )),
        Errno::EXDEV => Error::forbidden(format!("{shown} leads outside the server's directory")),
        Errno::ENOTDIR => Error::invalid("path", format!("a component of {shown} is not a directory")),
        Errno::EISDIR => Error::invalid("path", format!("{shown} is a directory")),
        Errno::EEXIST => Error::conflict(format!("{shown} already exists")),
        Errno::ENOTEMPTY => Error::conflict(format!("{shown} is not empty")),
        Errno::ENAMETOOLONG => Error::invalid("path", format!("{shown} is too long")),
        Errno::EACCES | Errno::EPERM => Error::forbidden(format!("{shown}: permission denied on the node")),
        Errno::ENOSPC | Errno::EDQUOT => Error::conflict(format!("no space left on the node for {shown}")),
        Errno::EINVAL => Error::invalid("path", format!("{shown}: not possible here")),
        other => Error::internal(format!("file operation on {shown} failed"), other),
    }
}

#[cfg(test)]
mod archive_tests;
#[cfg(test)]
mod backup_tests;
#[cfg(test)]
mod tests;
