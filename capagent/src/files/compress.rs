//! Making an archive of files and directories of the server: entries read through the same
//! confined calls as everything else, the archive written beside its target and renamed into
//! place, every byte of it counted against the disk limit as it is written.

use super::IgnoreRules;
use super::archive::{ArchiveFormat, ArchiveSummary};
use super::list::names_in;
use super::{RelPath, ServerFiles, check_new_name, errno, kind_of, refuse_hard_links};
use capcore::protocol::v1::files::{FileEntry, FileKind};
use capcore::{Error, Result};
use nix::fcntl::{AtFlags, OFlag, RenameFlags, readlinkat, renameat2};
use nix::sys::stat::{FileStat, Mode, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};

/// zstd level for `.tar.zst`: fast, as `zstd -3`.
pub(super) const ZSTD_LEVEL: i32 = 3;

/// A file being written that counts its bytes against the disk limit before writing them.
pub(super) struct Counted<'q> {
    file: File,
    quota: &'q super::DiskQuota,
    written: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        // The refusal travels inside the I/O error, for [`refusal_or`] to take out again.
        self.quota.take(bytes.len() as u64).map_err(std::io::Error::other)?;
        match self.file.write(bytes) {
            Ok(n) => {
                self.quota.give_back((bytes.len() - n) as u64);
                self.written += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.quota.give_back(bytes.len() as u64);
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Counted<'_> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.file.seek(to)
    }
}

/// The disk limit's refusal carried by `e` (from [`Counted`]), or `otherwise(e)`.
pub(super) fn refusal_or(e: std::io::Error, otherwise: impl FnOnce(std::io::Error) -> Error) -> Error {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(Error::Conflict { message, .. }) => Error::conflict(message.clone()),
        _ => otherwise(e),
    }
}

/// Receives the entries of an archive being made.
pub(super) trait Sink {
    fn directory(&mut self, name: &str, stat: &FileStat) -> std::io::Result<()>;
    fn file(&mut self, name: &str, stat: &FileStat, content: &mut File) -> std::io::Result<()>;
    fn link(&mut self, name: &str, stat: &FileStat, target: &str) -> std::io::Result<()>;
}

fn tar_header(stat: &FileStat, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(stat.st_mode & 0o777);
    header.set_mtime(stat.st_mtime.max(0) as u64);
    header.set_size(size);
    header
}

impl<W: Write> Sink for tar::Builder<W> {
    fn directory(&mut self, name: &str, stat: &FileStat) -> std::io::Result<()> {
        let mut header = tar_header(stat, tar::EntryType::Directory, 0);
        self.append_data(&mut header, format!("{name}/"), std::io::empty())
    }

    fn file(&mut self, name: &str, stat: &FileStat, content: &mut File) -> std::io::Result<()> {
        let size = stat.st_size.max(0) as u64;
        let mut header = tar_header(stat, tar::EntryType::Regular, size);
        // Exactly the size in the header, even if the file changes meanwhile.
        let mut exact = content.take(size).chain(std::io::repeat(0)).take(size);
        self.append_data(&mut header, name, &mut exact)
    }

    fn link(&mut self, name: &str, stat: &FileStat, target: &str) -> std::io::Result<()> {
        let mut header = tar_header(stat, tar::EntryType::Symlink, 0);
        self.append_link(&mut header, name, target)
    }
}

impl<W: Write + Seek> Sink for zip::ZipWriter<W> {
    fn directory(&mut self, name: &str, stat: &FileStat) -> std::io::Result<()> {
        self.add_directory(name, zip_options(stat)).map_err(std::io::Error::other)
    }

    fn file(&mut self, name: &str, stat: &FileStat, content: &mut File) -> std::io::Result<()> {
        let options = zip_options(stat).large_file(stat.st_size >= 0xFFFF_FFFF);
        self.start_file(name, options).map_err(std::io::Error::other)?;
        std::io::copy(&mut content.take(stat.st_size.max(0) as u64), self)?;
        Ok(())
    }

    fn link(&mut self, name: &str, stat: &FileStat, target: &str) -> std::io::Result<()> {
        self.add_symlink(name, target, zip_options(stat)).map_err(std::io::Error::other)
    }
}

fn zip_options(stat: &FileStat) -> zip::write::SimpleFileOptions {
    zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(stat.st_mode & 0o777)
}

impl ServerFiles {
    /// Makes the archive `archive` (its format told by its ending, see [`ArchiveFormat`]) of
    /// `paths`, each relative to `dir` and stored under that relative name. Directories go in
    /// with everything in them, symbolic links as links; FIFOs, sockets and devices are left
    /// out; a file with other hard links is refused. `archive` must not exist.
    pub fn compress(&self, dir: &str, paths: &[String], archive: &str) -> Result<(FileEntry, ArchiveSummary)> {
        self.compress_leaving_out(dir, paths, archive, &IgnoreRules::default())
    }

    /// [`ServerFiles::compress`], leaving out every entry `left_out` names (a template's file
    /// denylist: what users may not touch does not leave in an archive either).
    pub fn compress_leaving_out(
        &self,
        dir: &str,
        paths: &[String],
        archive: &str,
        left_out: &IgnoreRules,
    ) -> Result<(FileEntry, ArchiveSummary)> {
        let format = ArchiveFormat::of("archive", archive)?;
        if paths.is_empty() {
            return Err(Error::invalid("paths", "name at least one file or directory"));
        }
        let base = RelPath::parse("dir", dir)?;
        let mut roots = Vec::with_capacity(paths.len());
        for path in paths {
            let relative = RelPath::parse("paths", path)?;
            if relative.is_root() {
                return Err(Error::invalid("paths", "name what to put in, not the directory itself"));
            }
            roots.push(relative);
        }
        let target = RelPath::parse("archive", archive)?;
        let (target_dir, target_name) = self.parent_of("archive", &target)?;
        check_new_name("archive", target_name)?;
        if fstatat(target_dir.as_fd(), target_name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok() {
            return Err(Error::conflict(format!("`{}` already exists", target.display())));
        }
        let temporary = format!(".cap-archive-{:016x}", rand::random::<u64>());
        let fd = Self::open_in(
            &target_dir,
            &temporary,
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL,
            Mode::from_bits_truncate(0o644),
            &target,
        )?;
        let mut out = Counted { file: File::from(fd), quota: &self.quota, written: 0 };
        let made = self.write_archive(format, &base, &roots, &mut out, left_out).and_then(|summary| {
            out.file.sync_all().map_err(|e| Error::internal("cannot write the archive", e))?;
            renameat2(
                target_dir.as_fd(),
                temporary.as_str(),
                target_dir.as_fd(),
                target_name,
                RenameFlags::RENAME_NOREPLACE,
            )
            .map_err(|e| errno(e, &target))?;
            Ok(summary)
        });
        match made {
            Ok(summary) => Ok((super::stat_in(&target_dir, target_name, &target)?, summary)),
            Err(e) => {
                let _ = unlinkat(target_dir.as_fd(), temporary.as_str(), UnlinkatFlags::NoRemoveDir);
                self.quota.give_back(out.written);
                Err(e)
            }
        }
    }

    fn write_archive(
        &self,
        format: ArchiveFormat,
        base: &RelPath,
        roots: &[RelPath],
        out: &mut Counted<'_>,
        left_out: &IgnoreRules,
    ) -> Result<ArchiveSummary> {
        let failed = |e: std::io::Error| refusal_or(e, |e| Error::internal("cannot write the archive", e));
        let mut summary = ArchiveSummary::default();
        match format {
            ArchiveFormat::TarZst => {
                let mut encoder = zstd::stream::write::Encoder::new(&mut *out, ZSTD_LEVEL).map_err(failed)?;
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
                encoder.multithread(threads).map_err(failed)?;
                let mut builder = tar::Builder::new(encoder);
                self.add_all(&mut builder, base, roots, &mut summary, left_out)?;
                builder.into_inner().and_then(|encoder| encoder.finish()).map_err(failed)?;
            }
            ArchiveFormat::TarGz => {
                let encoder = flate2::write::GzEncoder::new(&mut *out, flate2::Compression::default());
                let mut builder = tar::Builder::new(encoder);
                self.add_all(&mut builder, base, roots, &mut summary, left_out)?;
                builder.into_inner().and_then(|encoder| encoder.finish()).map_err(failed)?;
            }
            ArchiveFormat::Zip => {
                let mut writer = zip::ZipWriter::new(&mut *out);
                self.add_all(&mut writer, base, roots, &mut summary, left_out)?;
                writer.finish().map_err(|e| failed(std::io::Error::other(e)))?;
            }
        }
        Ok(summary)
    }

    fn add_all(
        &self,
        sink: &mut dyn Sink,
        base: &RelPath,
        roots: &[RelPath],
        summary: &mut ArchiveSummary,
        left_out: &IgnoreRules,
    ) -> Result<()> {
        // The archive being written may be among what is archived: it is left out.
        let skip = |path: &RelPath, is_dir: bool| {
            path.parts().last().is_some_and(|name| name.starts_with(".cap-archive-")) || left_out.ignored(path, is_dir)
        };
        for root in roots {
            let full = root.parts().iter().fold(base.clone(), |at, part| at.join(part));
            let (parent, name) = full.split_last().expect("not the root");
            let dir = self.open_dir(&parent)?;
            self.add(sink, &dir, name, &full, &root.display(), &skip, summary)?;
        }
        Ok(())
    }

    /// Adds `name` of `dir` (at `path`) under the archive name `stored`, leaving out what `skip`
    /// says (given a path and whether it is a directory).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add(
        &self,
        sink: &mut dyn Sink,
        dir: &OwnedFd,
        name: &str,
        path: &RelPath,
        stored: &str,
        skip: &dyn Fn(&RelPath, bool) -> bool,
        summary: &mut ArchiveSummary,
    ) -> Result<()> {
        let io =
            |e: std::io::Error| refusal_or(e, |e| Error::internal(format!("cannot archive `{}`", path.display()), e));
        let stat = fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| errno(e, path))?;
        if skip(path, kind_of(&stat) == FileKind::Directory) {
            return Ok(());
        }
        match kind_of(&stat) {
            FileKind::Directory => {
                sink.directory(stored, &stat).map_err(io)?;
                summary.directories += 1;
                let inner = Self::open_in(dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty(), path)?;
                let mut children = names_in(&inner, path)?;
                children.sort_by(|a, b| a.0.cmp(&b.0));
                for (child, _) in children {
                    self.add(sink, &inner, &child, &path.join(&child), &format!("{stored}/{child}"), skip, summary)?;
                }
            }
            FileKind::File => {
                let fd = Self::open_in(dir, name, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty(), path)?;
                let opened = fstat(&fd).map_err(|e| errno(e, path))?;
                if kind_of(&opened) != FileKind::File {
                    return Err(Error::conflict(format!("`{}` changed while being archived", path.display())));
                }
                refuse_hard_links(&opened, path)?;
                sink.file(stored, &opened, &mut File::from(fd)).map_err(io)?;
                summary.files += 1;
                summary.bytes += opened.st_size.max(0) as u64;
            }
            FileKind::Symlink => {
                let target = readlinkat(dir.as_fd(), name).map_err(|e| errno(e, path))?;
                let target = target.to_string_lossy();
                // A link an extraction would refuse (absolute, or leading out of the archive)
                // is left out, so that every archive made here can be extracted again.
                let parent = stored.rsplit_once('/').map_or("", |(parent, _)| parent);
                let inside = !target.is_empty()
                    && !target.starts_with('/')
                    && RelPath::parse("target", &format!("{parent}/{target}")).is_ok();
                if inside {
                    sink.link(stored, &stat, &target).map_err(io)?;
                    summary.links += 1;
                } else {
                    summary.links_left_out += 1;
                }
            }
            FileKind::Other => {}
        }
        Ok(())
    }
}
