//! What the file manager says about files: entries of a server's directory, a page of a
//! listing and how it is ordered. Paths are relative to the server's directory, `/`-separated,
//! and never leave it (the agent resolves them; see `capagent::files`).

use serde::{Deserialize, Serialize};

/// What kind of thing a directory entry is. Symbolic links are shown, never followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[serde(rename_all = "snake_case")]
pub enum FileOrder {
    #[default]
    Name,
    Size,
    Modified,
}

/// Which page of a directory to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[serde(deny_unknown_fields)]
pub struct Listing {
    pub entries: Vec<FileEntry>,
    pub total: u64,
}
