//! Renaming and moving, within the server's directory: both ends resolved beneath it, and an
//! existing target is never replaced.

use super::{RelPath, ServerFiles, check_new_name, errno};
use capcore::{Error, Result};
use nix::errno::Errno;
use nix::fcntl::{RenameFlags, renameat2};
use std::os::fd::AsFd;

impl ServerFiles {
    /// Moves `from` to `to` (a file, link or whole directory); `Conflict` when `to` exists.
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        let from = RelPath::parse("from", from)?;
        let to = RelPath::parse("to", to)?;
        let (from_dir, from_name) = self.parent_of("from", &from)?;
        let (to_dir, to_name) = self.parent_of("to", &to)?;
        check_new_name("to", to_name)?;
        if to.starts_with(&from) && to != from {
            return Err(Error::invalid("to", format!("cannot move `{}` into itself", from.display())));
        }
        match renameat2(from_dir.as_fd(), from_name, to_dir.as_fd(), to_name, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => Ok(()),
            Err(Errno::EEXIST) => Err(errno(Errno::EEXIST, &to)),
            Err(e) => Err(errno(e, &from)),
        }
    }
}
