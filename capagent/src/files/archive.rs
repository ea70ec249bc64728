//! Archives in the file manager: what formats there are, and the limits every extraction keeps.

use capcore::{Error, Result};

/// An archive format, told by the file name's ending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `.tar.zst` / `.tzst`: tar compressed with zstd (multithreaded when writing).
    TarZst,
    /// `.tar.gz` / `.tgz`: tar compressed with gzip.
    TarGz,
    /// `.zip`, entries deflated.
    Zip,
}

impl ArchiveFormat {
    /// The format of a file called `name`, or `Invalid` naming `field`.
    pub fn of(field: &str, name: &str) -> Result<Self> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".tar.zst") || lower.ends_with(".tzst") {
            Ok(Self::TarZst)
        } else if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
            Ok(Self::TarGz)
        } else if lower.ends_with(".zip") {
            Ok(Self::Zip)
        } else {
            Err(Error::invalid(field, "not an archive this file manager knows: .tar.zst, .tar.gz, .tgz or .zip"))
        }
    }
}

/// How far an extraction may expand, whatever the archive claims: it is checked as the bytes
/// come out, so a lying header does not help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Bytes extracted in all (the server's disk limit applies as well).
    pub max_bytes: u64,
    /// Entries (files, directories, links) in all.
    pub max_entries: u64,
    /// Extracted bytes per byte of archive, over the whole archive (a "zip bomb" has
    /// thousands).
    pub max_ratio: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self { max_bytes: 64 * 1024 * 1024 * 1024, max_entries: 1_000_000, max_ratio: 250 }
    }
}

/// What an extraction or a compression did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchiveSummary {
    pub files: u64,
    pub directories: u64,
    pub links: u64,
    /// Symbolic links not put into an archive being made, being absolute or leading out of it
    /// (an extraction would refuse them).
    pub links_left_out: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_their_ending() {
        assert_eq!(ArchiveFormat::of("f", "World.TAR.ZST").unwrap(), ArchiveFormat::TarZst);
        assert_eq!(ArchiveFormat::of("f", "a.tgz").unwrap(), ArchiveFormat::TarGz);
        assert_eq!(ArchiveFormat::of("f", "a.tar.gz").unwrap(), ArchiveFormat::TarGz);
        assert_eq!(ArchiveFormat::of("f", "plugins.zip").unwrap(), ArchiveFormat::Zip);
        let err = ArchiveFormat::of("archive", "a.rar").unwrap_err();
        assert!(err.to_string().contains(".tar.zst, .tar.gz, .tgz or .zip"), "{err}");
    }
}
