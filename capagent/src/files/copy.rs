//! Copying a file, link or directory tree to a new name in the server's directory, every byte
//! counted against the disk limit before it is written; a copy that fails leaves nothing.

use super::list::names_in;
use super::{RelPath, ServerFiles, check_new_name, errno, kind_of, refuse_hard_links};
use capcore::protocol::v1::files::{FileEntry, FileKind};
use capcore::{Error, Result};
use nix::fcntl::{AtFlags, OFlag, readlinkat};
use nix::sys::stat::{Mode, fstat, fstatat, mkdirat};
use nix::unistd::symlinkat;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};

impl ServerFiles {
    /// Copies `from` to `to`, which must not exist. A directory is copied with everything in
    /// it; a symbolic link as a link; FIFOs, sockets and devices are refused.
    pub fn copy(&self, from: &str, to: &str) -> Result<FileEntry> {
        let from = RelPath::parse("from", from)?;
        let to = RelPath::parse("to", to)?;
        let (from_dir, from_name) = self.parent_of("from", &from)?;
        let (to_dir, to_name) = self.parent_of("to", &to)?;
        check_new_name("to", to_name)?;
        if to.starts_with(&from) {
            return Err(Error::invalid("to", format!("cannot copy `{}` into itself", from.display())));
        }
        if fstatat(to_dir.as_fd(), to_name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok() {
            return Err(Error::conflict(format!("`{}` already exists", to.display())));
        }
        let copied = self.copy_in(&from_dir, from_name, &from, &to_dir, to_name, &to);
        if let Err(e) = copied {
            // What was made goes again (and its bytes are given back by the removal).
            let _ = self.remove(&to.display());
            return Err(e);
        }
        super::stat_in(&to_dir, to_name, &to)
    }

    fn copy_in(
        &self,
        from_dir: &OwnedFd,
        from_name: &str,
        from: &RelPath,
        to_dir: &OwnedFd,
        to_name: &str,
        to: &RelPath,
    ) -> Result<()> {
        let stat = fstatat(from_dir.as_fd(), from_name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| errno(e, from))?;
        match kind_of(&stat) {
            FileKind::Directory => {
                let source =
                    Self::open_in(from_dir, from_name, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty(), from)?;
                mkdirat(to_dir.as_fd(), to_name, Mode::from_bits_truncate(stat.st_mode & 0o777))
                    .map_err(|e| errno(e, to))?;
                let target = Self::open_in(to_dir, to_name, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty(), to)?;
                for (child, _) in names_in(&source, from)? {
                    self.copy_in(&source, &child, &from.join(&child), &target, &child, &to.join(&child))?;
                }
                Ok(())
            }
            FileKind::Symlink => {
                let target = readlinkat(from_dir.as_fd(), from_name).map_err(|e| errno(e, from))?;
                symlinkat(target.as_os_str(), to_dir.as_fd(), to_name).map_err(|e| errno(e, to))
            }
            FileKind::File => {
                let source =
                    Self::open_in(from_dir, from_name, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty(), from)?;
                let opened = fstat(&source).map_err(|e| errno(e, from))?;
                if kind_of(&opened) != FileKind::File {
                    return Err(Error::conflict(format!("`{}` changed while being copied", from.display())));
                }
                refuse_hard_links(&opened, from)?;
                let size = opened.st_size.max(0) as u64;
                self.quota.take(size)?;
                let target = Self::open_in(
                    to_dir,
                    to_name,
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
                    Mode::from_bits_truncate(opened.st_mode & 0o777),
                    to,
                );
                let target = match target {
                    Ok(target) => target,
                    Err(e) => {
                        self.quota.give_back(size);
                        return Err(e);
                    }
                };
                // The size was counted as the file was when opened; a file that grows
                // meanwhile is copied only that far.
                let (mut source, mut target) = (File::from(source), File::from(target));
                let copied = std::io::copy(&mut std::io::Read::take(&mut source, size), &mut target)
                    .and_then(|_| target.sync_all());
                copied.map_err(|e| Error::internal(format!("cannot copy `{}`", from.display()), e))
            }
            FileKind::Other => Err(Error::invalid("from", format!("`{}` is a FIFO, socket or device", from.display()))),
        }
    }
}
