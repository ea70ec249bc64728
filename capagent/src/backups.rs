//! Where a node keeps its servers' backups: `<dir>/<server id>/<backup id>.tar.zst`, each with
//! its record beside it (`<backup id>.json`, replaced atomically). Backup ids are UUIDs, so no
//! name from a request ever becomes a path of its own.
//!
//! ```
//! use capagent::backups::BackupStore;
//! use capcore::ids::{BackupId, ServerId};
//! use capcore::protocol::v1::backups::{BackupRecord, BackupStatus};
//!
//! let dir = std::env::temp_dir().join(format!("cap-backup-store-doc-{}", std::process::id()));
//! let store = BackupStore::new(&dir);
//! let server = ServerId(uuid::Uuid::from_u128(1));
//! let record = BackupRecord {
//!     id: BackupId(uuid::Uuid::from_u128(2)),
//!     name: "before the update".into(),
//!     status: BackupStatus::Running,
//!     created_ms: 1_000,
//!     completed_ms: None,
//!     bytes: 0,
//!     sha256: None,
//!     locked: false,
//!     files: 0,
//!     links_left_out: 0,
//!     error: None,
//!     location: None,
//! };
//! store.save(server, &record).unwrap();
//! assert_eq!(store.list(server).unwrap(), vec![record]);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use capcore::ids::{BackupId, ServerId};
use capcore::protocol::v1::backups::{BackupRecord, BackupStatus, Retention};
use capcore::{Error, Result};
use std::path::{Path, PathBuf};

/// S3-compatible object storage for backups (used through `s3::Bucket`, feature `s3`): where,
/// and as whom.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// `https://s3.<region>.amazonaws.com`, `http://minio.lan:9000`, ...
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    /// Put before every key (e.g. `node-1/`).
    pub prefix: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key", &self.access_key)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A node's backups on its own disk.
#[derive(Clone, Debug)]
pub struct BackupStore {
    dir: PathBuf,
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::internal(format!("cannot {what}"), e)
}

impl BackupStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn server_dir(&self, server: ServerId) -> PathBuf {
        self.dir.join(server.to_string())
    }

    /// The archive of a backup (complete or not).
    pub fn archive(&self, server: ServerId, id: BackupId) -> PathBuf {
        self.server_dir(server).join(format!("{id}.tar.zst"))
    }

    fn record_path(&self, server: ServerId, id: BackupId) -> PathBuf {
        self.server_dir(server).join(format!("{id}.json"))
    }

    /// Writes a backup's record (creating the server's directory), atomically.
    pub fn save(&self, server: ServerId, record: &BackupRecord) -> Result<()> {
        let dir = self.server_dir(server);
        std::fs::create_dir_all(&dir).map_err(io("create the backups directory"))?;
        let path = self.record_path(server, record.id);
        let temporary = path.with_extension("json.tmp");
        let text =
            serde_json::to_vec_pretty(record).map_err(|e| Error::internal("cannot encode a backup record", e))?;
        std::fs::write(&temporary, text).map_err(io("write a backup record"))?;
        std::fs::rename(&temporary, &path).map_err(io("write a backup record"))
    }

    /// One backup's record; `NotFound` for one the server does not have.
    pub fn get(&self, server: ServerId, id: BackupId) -> Result<BackupRecord> {
        match std::fs::read(self.record_path(server, id)) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| Error::internal("a backup record is unreadable", e))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::not_found("backup")),
            Err(e) => Err(io("read a backup record")(e)),
        }
    }

    /// The server's backups, newest first (records that cannot be read are skipped, logged).
    pub fn list(&self, server: ServerId) -> Result<Vec<BackupRecord>> {
        let entries = match std::fs::read_dir(self.server_dir(server)) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("list backups")(e)),
        };
        let mut records = Vec::new();
        for entry in entries {
            let path = entry.map_err(io("list backups"))?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match std::fs::read(&path).map(|b| serde_json::from_slice::<BackupRecord>(&b)) {
                Ok(Ok(r)) => records.push(r),
                Ok(Err(e)) => tracing::warn!(path = %path.display(), error = %e, "unreadable backup record skipped"),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "unreadable backup record skipped"),
            }
        }
        records.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
        Ok(records)
    }

    /// A backup's record if it may be deleted: `Conflict` for a locked or running one.
    pub fn deletable(&self, server: ServerId, id: BackupId) -> Result<BackupRecord> {
        let record = self.get(server, id)?;
        if record.locked {
            return Err(Error::conflict("the backup is locked; unlock it to delete it"));
        }
        if record.status == BackupStatus::Running {
            return Err(Error::conflict("the backup is still being made"));
        }
        Ok(record)
    }

    /// Deletes a backup's archive and record; a locked or running backup is refused.
    pub fn delete(&self, server: ServerId, id: BackupId) -> Result<()> {
        self.deletable(server, id)?;
        remove_if_there(&self.archive(server, id))?;
        remove_if_there(&self.record_path(server, id))
    }

    /// After an agent restart: backups that were being made are marked failed (their partial
    /// archives deleted), so they can be seen and deleted.
    pub fn recover(&self, server: ServerId, now_ms: i64) -> Result<()> {
        for mut record in self.list(server)? {
            if record.status != BackupStatus::Running {
                continue;
            }
            remove_if_there(&self.archive(server, record.id).with_extension("zst.part"))?;
            record.status = BackupStatus::Failed;
            record.completed_ms = Some(now_ms);
            record.error = Some("interrupted by an agent restart".into());
            self.save(server, &record)?;
        }
        Ok(())
    }

    /// Deletes every backup of a server (the server itself is deleted).
    pub fn remove_server(&self, server: ServerId) -> Result<()> {
        match std::fs::remove_dir_all(self.server_dir(server)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("delete the server's backups")(e)),
            _ => Ok(()),
        }
    }

    /// Applies `retention` at `now_ms`: deletes unlocked, finished backups older than its
    /// maximum age and those beyond the newest `keep`. Returns the records deleted (an archive
    /// kept elsewhere, see [`BackupRecord::location`], is the caller's to delete).
    pub fn prune(&self, server: ServerId, retention: Retention, now_ms: i64) -> Result<Vec<BackupRecord>> {
        let mut kept = 0u32;
        let mut deleted = Vec::new();
        for record in self.list(server)? {
            if record.locked || record.status == BackupStatus::Running {
                continue;
            }
            let too_old = retention.max_age_ms.is_some_and(|age| now_ms.saturating_sub(record.created_ms) > age as i64);
            // Only complete backups count: a failed one never pushes out a good one, and goes
            // itself once `keep` good ones are newer.
            let too_many = retention.keep.is_some_and(|keep| kept >= keep);
            if too_old || too_many {
                self.delete(server, record.id)?;
                deleted.push(record);
            } else if record.status == BackupStatus::Done {
                kept += 1;
            }
        }
        Ok(deleted)
    }
}

fn remove_if_there(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("delete a backup")(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u128, created_ms: i64, locked: bool) -> BackupRecord {
        BackupRecord {
            id: BackupId(uuid::Uuid::from_u128(n)),
            name: format!("b{n}"),
            status: BackupStatus::Done,
            created_ms,
            completed_ms: Some(created_ms + 1),
            bytes: 10,
            sha256: Some("00".into()),
            locked,
            files: 1,
            links_left_out: 0,
            error: None,
            location: None,
        }
    }

    fn store(tag: &str) -> (BackupStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!("cap-backup-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (BackupStore::new(&dir), dir)
    }

    #[test]
    fn retention_keeps_the_newest_and_every_locked_backup() {
        let (store, dir) = store("retention");
        let server = ServerId(uuid::Uuid::from_u128(9));
        for (n, at, locked) in [(1, 100, true), (2, 200, false), (3, 300, false), (4, 400, false), (5, 500, false)] {
            store.save(server, &record(n, at, locked)).unwrap();
            std::fs::write(store.archive(server, record(n, at, locked).id), b"x").unwrap();
        }
        let ids = |records: Vec<BackupRecord>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();
        let deleted = ids(store.prune(server, Retention { keep: Some(2), max_age_ms: None }, 1000).unwrap());
        assert_eq!(deleted, vec![record(3, 0, false).id, record(2, 0, false).id]);
        let left: Vec<i64> = store.list(server).unwrap().iter().map(|r| r.created_ms).collect();
        assert_eq!(left, [500, 400, 100], "the two newest, and the locked one");
        assert!(!store.archive(server, record(2, 0, false).id).exists());
        let deleted = ids(store.prune(server, Retention { keep: None, max_age_ms: Some(550) }, 1000).unwrap());
        assert_eq!(deleted, vec![record(4, 0, false).id], "older than 550 ms, unless locked");
        assert!(store.delete(server, record(1, 0, true).id).unwrap_err().to_string().contains("locked"));
        assert!(matches!(store.get(server, record(4, 0, false).id), Err(Error::NotFound { what: "backup" })));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn failed_backups_never_push_out_good_ones_and_interrupted_ones_are_marked_failed() {
        let (store, dir) = store("failed");
        let server = ServerId(uuid::Uuid::from_u128(8));
        let failed = BackupRecord { status: BackupStatus::Failed, ..record(2, 200, false) };
        for r in [record(1, 100, false), failed, record(3, 300, false)] {
            store.save(server, &r).unwrap();
        }
        let keep_two = Retention { keep: Some(2), max_age_ms: None };
        assert!(store.prune(server, keep_two, 1000).unwrap().is_empty(), "two good ones and a failed one stay");
        store.save(server, &record(4, 400, false)).unwrap();
        let deleted: Vec<BackupId> = store.prune(server, keep_two, 1000).unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(deleted, vec![record(2, 0, false).id, record(1, 0, false).id]);

        let running = BackupRecord { status: BackupStatus::Running, ..record(5, 500, false) };
        store.save(server, &running).unwrap();
        let partial = store.archive(server, running.id).with_extension("zst.part");
        std::fs::write(&partial, b"half").unwrap();
        store.recover(server, 600).unwrap();
        let recovered = store.get(server, running.id).unwrap();
        assert_eq!((recovered.status, recovered.completed_ms), (BackupStatus::Failed, Some(600)));
        assert!(recovered.error.unwrap().contains("interrupted"));
        assert!(!partial.exists());
        store.delete(server, running.id).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
