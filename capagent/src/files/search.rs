//! Finding files by name under a directory: a walk that never follows a link, bounded in what it
//! returns and in how much it looks at.

use super::list::names_in;
use super::{RelPath, ServerFiles, stat_in};
use capcore::protocol::v1::files::{FileEntry, FileKind};
use capcore::{Error, Result};

/// The most entries one search looks at before it stops (and says so).
pub const MAX_SEARCHED: usize = 1_000_000;

/// What a search found, and whether it stopped early (at its limit or [`MAX_SEARCHED`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub entries: Vec<FileEntry>,
    pub truncated: bool,
}

impl ServerFiles {
    /// Entries under `dir` whose name contains `query`, ignoring case, at most `limit` (1 to
    /// 1000), in the order of a breadth-first walk.
    pub fn search(&self, dir: &str, query: &str, limit: usize) -> Result<Found> {
        if query.trim().is_empty() {
            return Err(Error::invalid("query", "must not be empty"));
        }
        if !(1..=1000).contains(&limit) {
            return Err(Error::invalid("limit", "must be 1 to 1000"));
        }
        let needle = query.to_lowercase();
        let start = RelPath::parse("path", dir)?;
        let first = self.open_dir(&start)?;
        let mut pending = std::collections::VecDeque::from([(start, Some(first))]);
        let (mut entries, mut searched) = (Vec::new(), 0usize);
        while let Some((path, handle)) = pending.pop_front() {
            let handle = match handle.map_or_else(|| self.open_dir(&path), Ok) {
                Ok(handle) => handle,
                // Gone, or replaced by a link, since it was listed: skipped.
                Err(Error::NotFound { .. } | Error::Forbidden { .. }) => continue,
                Err(e) => return Err(e),
            };
            for (name, _) in names_in(&handle, &path)? {
                searched += 1;
                if searched > MAX_SEARCHED {
                    return Ok(Found { entries, truncated: true });
                }
                let child = path.join(&name);
                let Ok(entry) = stat_in(&handle, &name, &child) else { continue };
                if entry.kind == FileKind::Directory {
                    pending.push_back((child, None));
                }
                if name.to_lowercase().contains(&needle) {
                    entries.push(entry);
                    if entries.len() == limit {
                        return Ok(Found { entries, truncated: true });
                    }
                }
            }
        }
        Ok(Found { entries, truncated: false })
    }
}
