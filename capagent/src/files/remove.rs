//! Deleting files and whole directory trees, each entry through its own directory's handle,
//! never through a link (a link is deleted itself, never what it points to).

use super::list::names_in;
use super::{RelPath, ServerFiles, errno, kind_of};
use capcore::protocol::v1::files::FileKind;
use capcore::{Error, Result};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use std::os::fd::{AsFd, OwnedFd};

impl ServerFiles {
    /// Deletes `path`; a directory with everything in it.
    pub fn remove(&self, path: &str) -> Result<()> {
        let path = RelPath::parse("path", path)?;
        let (dir, name) = self.parent_of("path", &path)?;
        self.remove_in(&dir, name, &path)
    }

    /// Deletes `name` of `dir` (at `path`), recursing into a directory through a handle opened
    /// beneath `dir` without following links.
    pub(super) fn remove_in(&self, dir: &OwnedFd, name: &str, path: &RelPath) -> Result<()> {
        let stat = fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| errno(e, path))?;
        match kind_of(&stat) {
            FileKind::Directory => {
                let inner = Self::open_in(dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty(), path)?;
                for (child, _) in names_in(&inner, path)? {
                    match self.remove_in(&inner, &child, &path.join(&child)) {
                        Ok(()) | Err(Error::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                unlinkat(dir.as_fd(), name, UnlinkatFlags::RemoveDir).map_err(|e| errno(e, path))
            }
            kind => {
                unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir).map_err(|e| errno(e, path))?;
                if kind == FileKind::File && stat.st_nlink == 1 {
                    self.quota.give_back(stat.st_size.max(0) as u64);
                }
                Ok(())
            }
        }
    }
}
