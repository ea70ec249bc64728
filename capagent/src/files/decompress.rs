//! Extracting an archive into a directory of the server: every entry is checked before anything
//! is written, written beneath a staging directory of our own through the same confined calls
//! as every other write, and moved into place only when all of it came out.
//!
//! Refused, naming the entry: absolute paths, `..`, NUL or control characters in names; hard
//! links; devices, FIFOs and sockets; setuid, setgid and sticky bits; symbolic links that are
//! absolute or lead out of the extraction's directory. Capped, as the bytes come out: entries,
//! bytes in all, and bytes per byte of archive ([`ArchiveLimits`]); and the server's disk limit.

use super::archive::{ArchiveFormat, ArchiveLimits, ArchiveSummary};
use super::{RelPath, ServerFiles, check_new_name, errno};
use capcore::protocol::v1::files::FileKind;
use capcore::{Error, Result};
use nix::fcntl::{OFlag, RenameFlags, renameat2};
use nix::sys::stat::{Mode, fstatat, mkdirat};
use nix::unistd::symlinkat;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;

/// One entry as the archive describes it, checked.
#[derive(Debug)]
enum Item {
    Directory { path: RelPath, mode: u32 },
    File { path: RelPath, mode: u32, size: u64 },
    Link { path: RelPath, target: String },
}

impl Item {
    fn path(&self) -> &RelPath {
        match self {
            Item::Directory { path, .. } | Item::File { path, .. } | Item::Link { path, .. } => path,
        }
    }
}

/// What an entry is, before it is checked.
enum RawKind {
    Directory,
    File,
    Symlink(Vec<u8>),
    Refused(&'static str),
}

/// Checks one entry: its name, kind and mode; `size` counts against `total`.
fn check_entry(name: &[u8], kind: RawKind, mode: u32, size: u64) -> Result<Item> {
    let shown = String::from_utf8_lossy(name).into_owned();
    let refuse = |why: &str| Error::invalid("archive", format!("entry `{shown}` is refused: {why}"));
    let name = std::str::from_utf8(name).map_err(|_| refuse("its name is not UTF-8"))?;
    if name.starts_with('/') || name.starts_with('\\') {
        return Err(refuse("its path is absolute"));
    }
    if name.split(['/', '\\']).any(|part| part == "..") {
        return Err(refuse("its path contains `..`"));
    }
    if name.contains('\0') || name.chars().any(char::is_control) {
        return Err(refuse("its name contains control characters"));
    }
    let path = RelPath::parse("archive", name).map_err(|_| refuse("its path is not usable"))?;
    if path.is_root() {
        return Err(refuse("it names the directory itself"));
    }
    if mode & 0o7000 != 0 {
        return Err(refuse("it has setuid, setgid or sticky bits"));
    }
    match kind {
        RawKind::Directory => Ok(Item::Directory { path, mode: mode & 0o777 }),
        RawKind::File => Ok(Item::File { path, mode: mode & 0o777, size }),
        RawKind::Refused(what) => Err(refuse(what)),
        RawKind::Symlink(target) => {
            let target = String::from_utf8(target).map_err(|_| refuse("its link target is not UTF-8"))?;
            if target.is_empty() || target.starts_with('/') || target.contains('\0') {
                return Err(refuse("it is a link with an absolute or empty target"));
            }
            // Where the link would lead, from its own directory, must stay inside.
            let (parent, _) = path.split_last().expect("not the root");
            let joined = format!("{}/{target}", parent.display());
            RelPath::parse("archive", &joined).map_err(|_| refuse("it is a link leading out of the directory"))?;
            Ok(Item::Link { path, target })
        }
    }
}

/// Counts entries and bytes against the limits.
struct Budget {
    limits: ArchiveLimits,
    archive_bytes: u64,
    entries: u64,
    bytes: u64,
}

impl Budget {
    fn count(&mut self, item: &Item) -> Result<()> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(Error::invalid(
                "archive",
                format!("it has more than {} entries, the most one extraction takes", self.limits.max_entries),
            ));
        }
        if let Item::File { size, .. } = item {
            self.bytes = self.bytes.saturating_add(*size);
            if self.bytes > self.limits.max_bytes {
                return Err(Error::invalid(
                    "archive",
                    format!("it expands past {} bytes, the most one extraction takes", self.limits.max_bytes),
                ));
            }
            let ratio_cap = self.archive_bytes.max(1).saturating_mul(self.limits.max_ratio);
            if self.bytes > ratio_cap {
                return Err(Error::invalid(
                    "archive",
                    format!(
                        "it expands to more than {} times its own size, which only an archive bomb does",
                        self.limits.max_ratio
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A tar entry as an [`Item`], checked; `None` for a global extended header (read by the tar
/// reader itself).
fn tar_item<R: Read>(entry: &tar::Entry<'_, R>) -> Result<Option<Item>> {
    let header = entry.header();
    let kind = match header.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => RawKind::File,
        tar::EntryType::Directory => RawKind::Directory,
        tar::EntryType::Symlink => {
            RawKind::Symlink(entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default())
        }
        tar::EntryType::Link => RawKind::Refused("it is a hard link"),
        tar::EntryType::Char | tar::EntryType::Block => RawKind::Refused("it is a device"),
        tar::EntryType::Fifo => RawKind::Refused("it is a FIFO"),
        tar::EntryType::XGlobalHeader => return Ok(None),
        _ => RawKind::Refused("it is of a kind this file manager does not extract"),
    };
    let mode = header.mode().map_err(broken)?;
    check_entry(&entry.path_bytes(), kind, mode, entry.size()).map(Some)
}

/// The tar entries of `reader`, checked, without their content (read and dropped).
fn tar_items(reader: impl Read, budget: &mut Budget) -> Result<Vec<Item>> {
    let mut archive = tar::Archive::new(reader);
    let mut items = Vec::new();
    for entry in archive.entries().map_err(broken)? {
        let entry = entry.map_err(broken)?;
        let Some(item) = tar_item(&entry)? else { continue };
        budget.count(&item)?;
        items.push(item);
    }
    Ok(items)
}

/// The zip entries of `archive`, checked from its central directory.
fn zip_items<R: Read + Seek>(archive: &mut zip::ZipArchive<R>, budget: &mut Budget) -> Result<Vec<Item>> {
    let mut items = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let mut file = archive.by_index(index).map_err(broken_zip)?;
        let mode = file.unix_mode().unwrap_or(if file.is_dir() { 0o755 } else { 0o644 });
        let kind = match mode & 0o170000 {
            _ if file.is_dir() => RawKind::Directory,
            0o120000 => {
                let mut target = Vec::new();
                (&mut file).take(4096).read_to_end(&mut target).map_err(broken)?;
                RawKind::Symlink(target)
            }
            0 | 0o100000 => RawKind::File,
            0o060000 | 0o020000 => RawKind::Refused("it is a device"),
            0o010000 => RawKind::Refused("it is a FIFO"),
            _ => RawKind::Refused("it is of a kind this file manager does not extract"),
        };
        let name = file.name_raw().to_vec();
        let name = name.strip_suffix(b"/").map(<[u8]>::to_vec).unwrap_or(name);
        let item = check_entry(&name, kind, mode & 0o7777, file.size())?;
        budget.count(&item)?;
        items.push(item);
    }
    Ok(items)
}

fn broken(e: std::io::Error) -> Error {
    Error::invalid("archive", format!("it cannot be read: {e}"))
}

fn broken_zip(e: zip::result::ZipError) -> Error {
    Error::invalid("archive", format!("it cannot be read as a zip: {e}"))
}

/// A tar stream of `file` in `format` (not zip).
fn tar_stream(format: ArchiveFormat, file: File) -> Result<Box<dyn Read>> {
    let file = BufReader::new(file);
    Ok(match format {
        ArchiveFormat::TarZst => Box::new(zstd::stream::read::Decoder::with_buffer(file).map_err(broken)?),
        ArchiveFormat::TarGz => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        ArchiveFormat::Zip => unreachable!("zip is not a tar stream"),
    })
}

impl ServerFiles {
    /// Extracts the archive `archive` into the directory `into` (made if missing), with the
    /// default [`ArchiveLimits`].
    pub fn decompress(&self, archive: &str, into: &str) -> Result<ArchiveSummary> {
        self.decompress_with(archive, into, ArchiveLimits::default())
    }

    /// [`ServerFiles::decompress`] with other limits. Nothing is changed unless every entry
    /// comes out: a refused entry, a broken archive, a limit or a name already taken in
    /// `into` leaves the directory as it was.
    pub fn decompress_with(&self, archive: &str, into: &str, limits: ArchiveLimits) -> Result<ArchiveSummary> {
        let format = ArchiveFormat::of("archive", archive)?;
        let (file, archive_bytes) = self.open_read(archive)?;
        self.extract(format, file, archive_bytes, into, limits)
    }

    /// Extracts the archive open as `file` (`archive_bytes` long, in `format`, from anywhere:
    /// a backup is outside the server's directory) into `into`, as [`ServerFiles::decompress`].
    pub fn extract(
        &self,
        format: ArchiveFormat,
        mut file: File,
        archive_bytes: u64,
        into: &str,
        limits: ArchiveLimits,
    ) -> Result<ArchiveSummary> {
        let mut budget = Budget { limits, archive_bytes, entries: 0, bytes: 0 };
        // First the whole list, checked: nothing is written for an archive that is refused.
        let mut zip = None;
        let items = match format {
            ArchiveFormat::Zip => {
                let mut opened = zip::ZipArchive::new(file.try_clone().map_err(broken)?).map_err(broken_zip)?;
                let items = zip_items(&mut opened, &mut budget)?;
                zip = Some(opened);
                items
            }
            _ => {
                let items = tar_items(tar_stream(format, file.try_clone().map_err(broken)?)?, &mut budget)?;
                file.seek(SeekFrom::Start(0)).map_err(broken)?;
                items
            }
        };
        let into_path = RelPath::parse("into", into)?;
        let into_dir = self.make_dirs(&into_path)?;
        // The names the archive puts directly into `into` must be free there.
        let mut tops: Vec<&str> =
            items.iter().filter_map(|item| item.path().parts().first().map(String::as_str)).collect();
        tops.sort_unstable();
        tops.dedup();
        for top in &tops {
            if fstatat(into_dir.as_fd(), *top, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_ok() {
                return Err(Error::conflict(format!(
                    "`{}` is already there; extract into an empty directory",
                    into_path.join(top).display()
                )));
            }
        }
        self.quota.check_room(budget.bytes)?;
        let staging_name = format!(".cap-extract-{:016x}", rand::random::<u64>());
        let staging = into_path.join(&staging_name);
        let outcome = (|| {
            mkdirat(into_dir.as_fd(), staging_name.as_str(), Mode::from_bits_truncate(0o700))
                .map_err(|e| errno(e, &staging))?;
            let summary = match zip.as_mut() {
                Some(zip) => self.extract_zip(zip, &items, &staging)?,
                None => self.extract_tar(tar_stream(format, file)?, &items, &staging)?,
            };
            let staged = self.open_dir(&staging)?;
            for top in &tops {
                renameat2(staged.as_fd(), *top, into_dir.as_fd(), *top, RenameFlags::RENAME_NOREPLACE)
                    .map_err(|e| errno(e, &into_path.join(top)))?;
            }
            Ok(summary)
        })();
        // Empty after a success; after a failure its removal gives back what was written.
        let cleanup = self.remove(&staging.display());
        match outcome {
            Ok(summary) => cleanup.map(|()| summary),
            Err(e) => Err(e),
        }
    }

    /// Extracts a tar + zstd archive into this (new, empty) directory in one pass, each entry
    /// checked and counted as it comes: for a restore, whose directory is thrown away whole on
    /// any refusal, so nothing needs checking before the first write.
    pub(super) fn extract_into_empty(
        &self,
        file: File,
        archive_bytes: u64,
        limits: ArchiveLimits,
    ) -> Result<ArchiveSummary> {
        let mut budget = Budget { limits, archive_bytes, entries: 0, bytes: 0 };
        let mut archive = tar::Archive::new(tar_stream(ArchiveFormat::TarZst, file)?);
        let mut summary = ArchiveSummary::default();
        let mut last = None;
        for entry in archive.entries().map_err(broken)? {
            let mut entry = entry.map_err(broken)?;
            let Some(item) = tar_item(&entry)? else { continue };
            budget.count(&item)?;
            self.put(&item, &mut entry, &RelPath::root(), &mut summary, &mut last)?;
        }
        Ok(summary)
    }

    fn extract_tar(&self, stream: Box<dyn Read>, items: &[Item], staging: &RelPath) -> Result<ArchiveSummary> {
        let mut archive = tar::Archive::new(stream);
        let mut summary = ArchiveSummary::default();
        let mut checked = items.iter();
        let mut last = None;
        for entry in archive.entries().map_err(broken)? {
            let mut entry = entry.map_err(broken)?;
            if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
                continue;
            }
            // The same archive read again: a different entry now means it changed meanwhile.
            let changed = || Error::conflict("the archive changed while it was extracted");
            let item = checked.next().ok_or_else(changed)?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            if RelPath::parse("archive", &name).ok().as_ref() != Some(item.path()) {
                return Err(changed());
            }
            self.put(item, &mut entry, staging, &mut summary, &mut last)?;
        }
        Ok(summary)
    }

    fn extract_zip<R: Read + Seek>(
        &self,
        archive: &mut zip::ZipArchive<R>,
        items: &[Item],
        staging: &RelPath,
    ) -> Result<ArchiveSummary> {
        let mut summary = ArchiveSummary::default();
        let mut last = None;
        for (index, item) in items.iter().enumerate() {
            let mut file = archive.by_index(index).map_err(broken_zip)?;
            self.put(item, &mut file, staging, &mut summary, &mut last)?;
        }
        Ok(summary)
    }

    /// Writes one checked entry beneath `staging`; a file gets at most its declared size.
    /// `last` keeps the previous entry's directory open: archives list a directory's entries
    /// together, so most entries need no path resolved again.
    fn put(
        &self,
        item: &Item,
        content: &mut dyn Read,
        staging: &RelPath,
        summary: &mut ArchiveSummary,
        last: &mut Option<(RelPath, std::os::fd::OwnedFd)>,
    ) -> Result<()> {
        let path = staging_path(staging, item.path());
        let (parent, name) = path.split_last().expect("entries are never the root");
        check_new_name("archive", name)?;
        let dir = match last.take() {
            Some((at, fd)) if at == parent => fd,
            _ => self.make_dirs(&parent)?,
        };
        let dir = &last.insert((parent, dir)).1;
        match item {
            Item::Directory { mode, .. } => {
                match mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(*mode | 0o700)) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(errno(e, &path)),
                }
                let made = super::stat_in(dir, name, &path)?;
                if made.kind != FileKind::Directory {
                    return Err(Error::invalid(
                        "archive",
                        format!("entry `{}` is both a file and a directory", item_name(item)),
                    ));
                }
                summary.directories += 1;
            }
            Item::Link { target, .. } => {
                symlinkat(target.as_str(), dir.as_fd(), name).map_err(|e| errno(e, &path))?;
                summary.links += 1;
            }
            Item::File { mode, size, .. } => {
                // A later entry of the same name replaces an earlier one, as tar does.
                match self.remove_in(dir, name, &path) {
                    Ok(()) | Err(Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
                let fd = Self::open_in(
                    dir,
                    name,
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
                    Mode::from_bits_truncate(*mode),
                    &path,
                )?;
                self.quota.take(*size)?;
                let mut out = File::from(fd);
                let mut limited = content.take(size.saturating_add(1));
                let copied = std::io::copy(&mut limited, &mut out).and_then(|n| out.flush().map(|()| n));
                let copied = match copied {
                    Ok(n) if n <= *size => Ok(n),
                    Ok(_) => Err(Error::invalid(
                        "archive",
                        format!("entry `{}` holds more than the {size} bytes it declares", item_name(item)),
                    )),
                    Err(e) => Err(broken(e)),
                };
                let copied = match copied {
                    Ok(n) => n,
                    Err(e) => {
                        // Gone with what was counted for it.
                        drop(out);
                        let _ = nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
                        self.quota.give_back(*size);
                        return Err(e);
                    }
                };
                self.quota.give_back(size - copied);
                summary.files += 1;
                summary.bytes += copied;
            }
        }
        Ok(())
    }
}

fn item_name(item: &Item) -> String {
    item.path().display()
}

/// `path` beneath `staging`.
fn staging_path(staging: &RelPath, path: &RelPath) -> RelPath {
    path.parts().iter().fold(staging.clone(), |at, part| at.join(part))
}
