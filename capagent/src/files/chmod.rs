//! Changing permission bits: only the nine `rwx` bits, only of files and directories, never
//! through a link and never of a file with other names.

use super::{RelPath, ServerFiles, errno, kind_of, refuse_hard_links};
use capcore::protocol::v1::files::{FileEntry, FileKind};
use capcore::{Error, Result};
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, fchmod, fstat};

impl ServerFiles {
    /// Sets the permission bits of `path` to `mode` (`0o000` to `0o777`; setuid, setgid and
    /// sticky bits are refused).
    pub fn chmod(&self, path: &str, mode: u32) -> Result<FileEntry> {
        if mode & !0o777 != 0 {
            return Err(Error::invalid("mode", format!("{mode:#o}: only the permission bits 0o777 may be set")));
        }
        let path = RelPath::parse("path", path)?;
        let (dir, name) = self.parent_of("path", &path)?;
        // Opened (not through a link, not blocking on a FIFO) and changed through the handle.
        let fd = Self::open_in(&dir, name, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty(), &path)?;
        let stat = fstat(&fd).map_err(|e| errno(e, &path))?;
        match kind_of(&stat) {
            FileKind::File | FileKind::Directory => {}
            _ => return Err(Error::invalid("path", format!("`{}` is not a file or directory", path.display()))),
        }
        refuse_hard_links(&stat, &path)?;
        fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(|e| errno(e, &path))?;
        super::stat_in(&dir, name, &path)
    }
}
