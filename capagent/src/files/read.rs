//! Reading files: a byte range of a regular file, or the whole file as a stream for a download.

use super::{RelPath, ServerFiles, errno, kind_of, refuse_hard_links};
use capcore::protocol::v1::files::FileKind;
use capcore::{Error, Result};
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, fstat};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// The most bytes one [`ServerFiles::read`] returns; larger files are read in ranges or
/// downloaded as a stream ([`ServerFiles::open_read`]).
pub const MAX_READ_BYTES: u64 = 16 * 1024 * 1024;

impl ServerFiles {
    /// Up to `len` bytes (at most [`MAX_READ_BYTES`]) of the regular file `path` from `offset`;
    /// fewer at its end, none past it.
    pub fn read(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        if len > MAX_READ_BYTES {
            return Err(Error::invalid("length", format!("at most {MAX_READ_BYTES} bytes at a time")));
        }
        let (mut file, _) = self.open_read(path)?;
        file.seek(SeekFrom::Start(offset)).map_err(|e| Error::internal("cannot seek", e))?;
        let mut bytes = Vec::new();
        file.take(len).read_to_end(&mut bytes).map_err(|e| Error::internal("cannot read", e))?;
        Ok(bytes)
    }

    /// The regular file `path`, open for reading, with its size.
    pub fn open_read(&self, path: &str) -> Result<(File, u64)> {
        let path = RelPath::parse("path", path)?;
        let (dir, name) = self.parent_of("path", &path)?;
        // Non-blocking, so that a FIFO put in its place cannot hang the agent; refused below.
        let fd = Self::open_in(&dir, name, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty(), &path)?;
        let stat = fstat(&fd).map_err(|e| errno(e, &path))?;
        match kind_of(&stat) {
            FileKind::File => {}
            FileKind::Directory => return Err(Error::invalid("path", format!("`{}` is a directory", path.display()))),
            _ => return Err(Error::invalid("path", format!("`{}` is not a regular file", path.display()))),
        }
        refuse_hard_links(&stat, &path)?;
        let file = File::from(fd);
        // Back to blocking reads for the regular file.
        nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(OFlag::empty())).map_err(|e| errno(e, &path))?;
        Ok((file, stat.st_size.max(0) as u64))
    }
}
