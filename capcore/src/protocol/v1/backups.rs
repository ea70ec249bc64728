//! What the agent says about backups: a backup's record, the operations on a server's backups,
//! and the progress events of one being made. Backups are kept by the node (see
//! `capagent::backups`); a backup's archive is tar + zstd, its SHA-256 recorded when it is done.

use crate::ids::BackupId;
use serde::{Deserialize, Serialize};

/// Where a backup is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum BackupStatus {
    /// Being made.
    Running,
    /// Complete, its checksum recorded: can be downloaded and restored.
    Done,
    /// Failed or interrupted; kept so it can be seen, deleted like any other.
    Failed,
}

/// One backup of one server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct BackupRecord {
    pub id: BackupId,
    pub name: String,
    pub status: BackupStatus,
    /// Milliseconds since the epoch.
    pub created_ms: i64,
    pub completed_ms: Option<i64>,
    /// Bytes of the archive (so far, while running).
    pub bytes: u64,
    /// SHA-256 of the archive, hex, once done.
    pub sha256: Option<String>,
    /// A locked backup is neither deleted nor pruned by retention.
    pub locked: bool,
    /// Files in the archive.
    pub files: u64,
    /// Symbolic links left out (absolute, or leading out of the server's directory).
    pub links_left_out: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// Where the archive is kept when not on the node's disk (`s3://<bucket>/<key>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// How many backups a server keeps: after a new one is done, the oldest unlocked ones beyond
/// `keep`, and unlocked ones older than `max_age_ms`, are deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub keep: Option<u32>,
    pub max_age_ms: Option<u64>,
}

/// One operation on a server's backups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackupOp {
    /// Starts a backup (at most one per server at a time): answered with its record at once,
    /// progress follows as [`crate::protocol::v1::Event::Backup`] events. `min_interval_ms`: the
    /// least time since the server's previous backup started.
    Create {
        backup_id: BackupId,
        name: String,
        retention: Retention,
        min_interval_ms: u64,
    },
    /// The server's backups, newest first.
    List,
    Delete {
        backup_id: BackupId,
    },
    Lock {
        backup_id: BackupId,
        locked: bool,
    },
    /// The archive's bytes on the request's byte stream (answered like a file download).
    Download {
        backup_id: BackupId,
    },
    /// Replaces the server's directory with the backup's content, atomically; the server must
    /// be stopped. The archive's checksum is verified first.
    Restore {
        backup_id: BackupId,
    },
}
