//! Listing a directory: every entry (no cap on how many a directory holds), ordered, one page at
//! a time; and measuring what a directory tree uses.

use super::{RelPath, ServerFiles, errno, kind_of, stat_in};
use capcore::protocol::v1::files::{FileEntry, FileKind, FileOrder, ListRequest, Listing};
use capcore::{Error, Result};
use nix::dir::{Dir, Type};
use nix::fcntl::AtFlags;
use nix::sys::stat::fstatat;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The names in `dir` (not `.` and `..`), with their type where the filesystem says it.
/// Names that are not UTF-8 are shown with replacement characters.
pub(super) fn names_in(dir: &OwnedFd, path: &RelPath) -> Result<Vec<(String, Option<Type>)>> {
    let copy = dir.try_clone().map_err(|e| Error::internal("cannot duplicate a directory handle", e))?;
    let mut entries = Dir::from_fd(copy).map_err(|e| errno(e, path))?;
    let mut names = Vec::new();
    for entry in entries.iter() {
        let entry = entry.map_err(|e| errno(e, path))?;
        let name = entry.file_name().to_string_lossy();
        if name == "." || name == ".." {
            continue;
        }
        names.push((name.into_owned(), entry.file_type()));
    }
    Ok(names)
}

impl ServerFiles {
    /// One page of the directory `path`: directories first, then by `request.order`.
    ///
    /// Ordered by name, only the page's entries are examined beyond their names and types, and
    /// the sorted names of an unchanged directory are kept for the next page; by size or
    /// modification time, every entry is examined for every page.
    pub fn list(&self, path: &str, request: ListRequest) -> Result<Listing> {
        if request.limit == 0 || request.limit > ListRequest::MAX_LIMIT {
            return Err(Error::invalid("limit", format!("must be 1 to {}", ListRequest::MAX_LIMIT)));
        }
        let path = RelPath::parse("path", path)?;
        let dir = self.open_dir(&path)?;
        if request.order == FileOrder::Name {
            let sorted = self.names_by_name(&dir, &path, request.descending)?;
            let total = sorted.len() as u64;
            let start = usize::try_from(request.offset).unwrap_or(usize::MAX).min(sorted.len());
            let end = start.saturating_add(request.limit as usize).min(sorted.len());
            let mut entries = Vec::with_capacity(end - start);
            for name in &sorted[start..end] {
                entries.extend(stat_or_gone(&dir, &path, name)?);
            }
            return Ok(Listing { entries, total });
        }
        // By size or modification time: every entry examined.
        let names = names_in(&dir, &path)?;
        let total = names.len() as u64;
        let mut all = Vec::with_capacity(names.len());
        for (name, _) in &names {
            all.extend(stat_or_gone(&dir, &path, name)?);
        }
        all.sort_by(|a, b| {
            let dirs_first = (a.kind != FileKind::Directory).cmp(&(b.kind != FileKind::Directory));
            let by = match request.order {
                FileOrder::Size => a.size.cmp(&b.size),
                _ => a.modified_ms.cmp(&b.modified_ms),
            };
            let by = if request.descending { by.reverse() } else { by };
            dirs_first.then(by).then_with(|| a.name.cmp(&b.name))
        });
        let start = usize::try_from(request.offset).unwrap_or(usize::MAX);
        let entries = all.into_iter().skip(start).take(request.limit as usize).collect();
        Ok(Listing { entries, total })
    }

    /// The bytes the server's directory holds: the sizes of its regular files, each file once
    /// however many names it has there. For [`super::DiskQuota::new`].
    pub fn measure(&self) -> Result<u64> {
        let mut seen = std::collections::HashSet::new();
        let mut total = 0u64;
        let mut pending = vec![RelPath::root()];
        while let Some(path) = pending.pop() {
            let dir = self.open_dir(&path)?;
            for (name, _) in names_in(&dir, &path)? {
                let Ok(stat) = fstatat(dir.as_fd(), name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else { continue };
                match kind_of(&stat) {
                    FileKind::Directory => pending.push(path.join(&name)),
                    FileKind::File if seen.insert((stat.st_dev, stat.st_ino)) => {
                        total = total.saturating_add(stat.st_size.max(0) as u64)
                    }
                    _ => {}
                }
            }
        }
        Ok(total)
    }
}

/// The names of a directory in listing order (directories first, then by name ignoring case),
/// kept for the next page while the directory is unchanged.
#[derive(Debug)]
pub(super) struct SortedNames {
    /// The directory as it was: device, inode, modification time (s, ns).
    key: (u64, u64, i64, i64),
    descending: bool,
    pub(super) names: Arc<Vec<String>>,
}

/// How long after a directory's last change its sorted names may be kept: a change within the
/// same tick of the filesystem's clock would not move its modification time.
const SETTLED: Duration = Duration::from_secs(2);

impl ServerFiles {
    /// The names of `dir` sorted for a listing by name; from the last listing when the
    /// directory has not changed since (and had settled when that listing was made).
    fn names_by_name(&self, dir: &OwnedFd, path: &RelPath, descending: bool) -> Result<Arc<Vec<String>>> {
        let stat = nix::sys::stat::fstat(dir).map_err(|e| errno(e, path))?;
        let key = (stat.st_dev, stat.st_ino, stat.st_mtime, stat.st_mtime_nsec);
        let cached = self.sorted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(sorted) = cached.as_ref().filter(|c| c.key == key && c.descending == descending) {
            return Ok(sorted.names.clone());
        }
        drop(cached);
        let mut keyed = Vec::new();
        for (name, kind) in names_in(dir, path)? {
            // The type from the directory itself, or a stat where the filesystem does not give it.
            let is_dir = match kind {
                Some(kind) => kind == Type::Directory,
                None => fstatat(dir.as_fd(), name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .is_ok_and(|s| kind_of(&s) == FileKind::Directory),
            };
            keyed.push((!is_dir, name.to_lowercase(), name));
        }
        keyed.sort_by(|a, b| {
            let by_name = a.1.cmp(&b.1).then_with(|| a.2.cmp(&b.2));
            a.0.cmp(&b.0).then(if descending { by_name.reverse() } else { by_name })
        });
        let names: Arc<Vec<String>> = Arc::new(keyed.into_iter().map(|(_, _, name)| name).collect());
        let changed =
            UNIX_EPOCH + Duration::new(stat.st_mtime.max(0) as u64, stat.st_mtime_nsec.clamp(0, 999_999_999) as u32);
        let settled = SystemTime::now().duration_since(changed).is_ok_and(|age| age >= SETTLED);
        let mut cached = self.sorted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *cached = settled.then(|| SortedNames { key, descending, names: names.clone() });
        Ok(names)
    }
}

/// The entry, or `None` when it went away since the directory was read.
fn stat_or_gone(dir: &OwnedFd, parent: &RelPath, name: &str) -> Result<Option<FileEntry>> {
    match stat_in(dir, name, &parent.join(name)) {
        Ok(entry) => Ok(Some(entry)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}
