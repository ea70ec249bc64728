//! What the file manager says about files: entries of a server's directory, a page of a
//! listing and how it is ordered. Paths are relative to the server's directory, `/`-separated,
//! and never leave it (the agent resolves them; see `capagent::files`).

use serde::{Deserialize, Serialize};

/// What kind of thing a directory entry is. Symbolic links are shown, never followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    File,
    Directory,
    Symlink,
    /// A FIFO, socket or device: listed, never read or written.
    Other,
}

/// One entry of a server's directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// The last component of its path.
    pub name: String,
    /// Its path from the server's directory, without a leading `/` (`""` is the directory itself).
    pub path: String,
    pub kind: FileKind,
    /// Bytes (for a symbolic link, of its target text).
    pub size: u64,
    /// Permission bits, as `chmod` takes them (`0o644`).
    pub mode: u32,
    /// Last modification, milliseconds since the epoch.
    pub modified_ms: i64,
    /// For a symbolic link, where it points, as text (shown, never followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// How a listing is ordered; directories always come before everything else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum FileOrder {
    #[default]
    Name,
    Size,
    Modified,
}

/// Which page of a directory to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ListRequest {
    #[serde(default)]
    pub order: FileOrder,
    #[serde(default)]
    pub descending: bool,
    /// Entries to skip.
    #[serde(default)]
    pub offset: u64,
    /// Entries to return, 1 to [`ListRequest::MAX_LIMIT`].
    pub limit: u32,
}

impl ListRequest {
    /// The most entries one page may hold.
    pub const MAX_LIMIT: u32 = 1000;

    /// The first page of `limit` entries by name.
    pub fn first(limit: u32) -> Self {
        Self { order: FileOrder::Name, descending: false, offset: 0, limit }
    }
}

/// A page of a directory's entries, with how many it has in all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Listing {
    pub entries: Vec<FileEntry>,
    pub total: u64,
}

/// An archive format of the file manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum WireArchiveFormat {
    TarZst,
    TarGz,
    Zip,
}

/// One file manager operation on a server's directory (paths as in [`FileEntry::path`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum FileOp {
    /// A page of a directory: answered with [`Reply::Listing`].
    List { path: String, page: ListRequest },
    /// One entry: [`Reply::Entry`].
    Stat { path: String },
    /// Bytes of a file from `offset`, `length` of them or to its end. The agent answers
    /// [`Reply::Download`] and sends the bytes on the byte stream numbered like the request
    /// (see [`stream_of`](crate::protocol::v1::stream::stream_of)).
    Download { path: String, offset: u64, length: Option<u64> },
    /// Replaces (or creates) a file with the bytes the panel sends on the request's byte stream,
    /// atomically: readers see the old file or the whole new one. Answered with
    /// [`Reply::Entry`] once the file is in place.
    Upload { path: String },
    /// Creates a directory and its missing parents: [`Reply::Entry`].
    MakeDir { path: String },
    /// Renames or moves; never replaces an existing entry: [`Reply::Entry`] of the new path.
    Rename { from: String, to: String },
    /// Copies a file or a tree (links as links): [`Reply::Entry`].
    Copy { from: String, to: String },
    /// Deletes each path (directories with their contents): [`Reply::Done`].
    Delete { paths: Vec<String> },
    /// Sets permission bits (only `0o777`): [`Reply::Entry`].
    Chmod { path: String, mode: u32 },
    /// Entries under `path` whose name contains `query`: [`Reply::Found`].
    Search { path: String, query: String, limit: u32 },
    /// Packs `paths` (relative to `dir`) into the new archive `archive`, its format told by
    /// its name: [`Reply::Archive`].
    Compress { dir: String, paths: Vec<String>, archive: String },
    /// Unpacks `archive` into the directory `into`: [`Reply::Archive`].
    Decompress { archive: String, into: String },
}

impl FileOp {
    /// Whether the operation moves bytes on the request's byte stream, and which way.
    pub fn transfer(&self) -> Option<Transfer> {
        match self {
            FileOp::Download { .. } => Some(Transfer::FromAgent),
            FileOp::Upload { .. } => Some(Transfer::ToAgent),
            _ => None,
        }
    }
}

/// Which way a request's byte stream carries bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transfer {
    FromAgent,
    ToAgent,
}

/// What an archive operation did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ArchiveReport {
    /// The archive made (compress) or the directory filled (decompress).
    pub path: String,
    pub files: u64,
    pub directories: u64,
    pub links: u64,
    /// Symbolic links left out of an archive being made: absolute, or leading out of it.
    pub links_left_out: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// The data a successful command answers with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    Done,
    Listing(Listing),
    Entry(FileEntry),
    Found {
        entries: Vec<FileEntry>,
        truncated: bool,
    },
    Archive(ArchiveReport),
    /// One backup's record.
    Backup(crate::protocol::v1::backups::BackupRecord),
    /// A server's backups, newest first.
    Backups {
        backups: Vec<crate::protocol::v1::backups::BackupRecord>,
    },
    /// A download is under way: `length` bytes from `offset` of a file of `size` bytes follow on
    /// the byte stream.
    Download {
        size: u64,
        offset: u64,
        length: u64,
        modified_ms: i64,
    },
}
