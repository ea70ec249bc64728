//! The backup commands: made in the background from the server's file manager (so the same
//! confinement holds), one at a time per server, progress reported as events; listed, locked,
//! deleted, downloaded and restored from the node's [`BackupStore`].

use super::files::{blocking, stream_file};
use super::{Agent, from_error, now, offsite, outcome_error};
use crate::files::{DiskQuota, restore};
use capcore::ids::{BackupId, ServerId};
use capcore::protocol::v1::backups::{BackupOp, BackupRecord, BackupStatus, Retention};
use capcore::protocol::v1::files::Reply;
use capcore::protocol::v1::streams::StreamEnd;
use capcore::protocol::v1::{ErrorCode, Event, Outcome};
use capcore::state::ServerState;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often a running backup reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// A writer that counts what passes, for progress.
struct Counting<W> {
    inner: W,
    bytes: Arc<AtomicU64>,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn check_name(name: &str) -> Result<(), Outcome> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 191 || trimmed.chars().any(char::is_control) {
        return Err(outcome_error(ErrorCode::Invalid, "name: must be 1 to 191 characters without control characters"));
    }
    Ok(())
}

impl Agent {
    pub(super) async fn backups(
        &self,
        id: ServerId,
        op: BackupOp,
        stream: Option<StreamEnd>,
    ) -> Result<Reply, Outcome> {
        self.known(id)?;
        let store = self.inner.backups.clone();
        match op {
            BackupOp::Create { backup_id, name, retention, min_interval_ms } => {
                self.start_backup(id, backup_id, name, retention, min_interval_ms).await
            }
            BackupOp::List => blocking(move || store.list(id)).await.map(|backups| Reply::Backups { backups }),
            BackupOp::Delete { backup_id } => {
                let _guard = self.inner.backup_records.lock().await;
                let record = blocking({
                    let store = store.clone();
                    move || store.deletable(id, backup_id)
                })
                .await?;
                // The object first: a record whose object could not be deleted stays, to try again.
                if let Some(location) = &record.location {
                    let (bucket, key) = offsite::key_of(self.inner.offsite.as_ref(), location).map_err(from_error)?;
                    offsite::delete(&bucket, &key).await.map_err(from_error)?;
                }
                blocking(move || store.delete(id, backup_id)).await.map(|()| Reply::Done)
            }
            BackupOp::Lock { backup_id, locked } => {
                // Under the server's backup guard, so a finishing backup's record is not overwritten.
                let _guard = self.inner.backup_records.lock().await;
                blocking(move || {
                    let mut record = store.get(id, backup_id)?;
                    record.locked = locked;
                    store.save(id, &record)?;
                    Ok(record)
                })
                .await
                .map(Reply::Backup)
            }
            BackupOp::Download { backup_id } => {
                let Some(StreamEnd::Outgoing(out)) = stream else {
                    return Err(outcome_error(ErrorCode::Invalid, "a download needs the request's byte stream"));
                };
                let record = blocking({
                    let store = store.clone();
                    move || {
                        let record = store.get(id, backup_id)?;
                        if record.status != BackupStatus::Done {
                            return Err(capcore::Error::conflict("the backup is not complete"));
                        }
                        Ok(record)
                    }
                })
                .await;
                let record = match record {
                    Ok(record) => record,
                    Err(e) => {
                        out.reset("the download could not start").await;
                        return Err(e);
                    }
                };
                let modified_ms = record.completed_ms.unwrap_or(record.created_ms);
                if let Some(location) = &record.location {
                    let (bucket, key) = match offsite::key_of(self.inner.offsite.as_ref(), location) {
                        Ok(found) => found,
                        Err(e) => {
                            out.reset("the download could not start").await;
                            return Err(from_error(e));
                        }
                    };
                    let size = offsite::stream(&bucket, &key, out).await.map_err(from_error)?;
                    return Ok(Reply::Download { size, offset: 0, length: size, modified_ms });
                }
                let opened = blocking(move || {
                    let file = std::fs::File::open(store.archive(id, backup_id))
                        .map_err(|e| capcore::Error::internal("cannot open the backup", e))?;
                    let size =
                        file.metadata().map_err(|e| capcore::Error::internal("cannot open the backup", e))?.len();
                    Ok((file, size))
                })
                .await;
                match opened {
                    Ok((file, size)) => {
                        stream_file(file, size, out);
                        Ok(Reply::Download { size, offset: 0, length: size, modified_ms })
                    }
                    Err(e) => {
                        out.reset("the download could not start").await;
                        Err(e)
                    }
                }
            }
            BackupOp::Restore { backup_id } => self.restore_backup(id, backup_id).await,
        }
    }

    async fn start_backup(
        &self,
        id: ServerId,
        backup_id: BackupId,
        name: String,
        retention: Retention,
        min_interval_ms: u64,
    ) -> Result<Reply, Outcome> {
        check_name(&name)?;
        let files = self.server_files(id).await?;
        let store = self.inner.backups.clone();
        let at = now().millis();
        {
            if self.inner.restoring.lock().expect("restoring lock").contains(&id) {
                return Err(outcome_error(ErrorCode::Conflict, "the server is being restored from a backup"));
            }
            let mut running = self.inner.backing_up.lock().expect("backups lock");
            if running.contains(&id) {
                return Err(outcome_error(ErrorCode::Conflict, "a backup of this server is already being made"));
            }
            running.insert(id);
        }
        let started = blocking({
            let store = store.clone();
            let name = name.trim().to_string();
            move || {
                let existing = store.list(id)?;
                if existing.iter().any(|r| r.id == backup_id) {
                    return Err(capcore::Error::conflict("a backup with this id exists"));
                }
                if let Some(last) = existing.iter().map(|r| r.created_ms).max()
                    && at.saturating_sub(last) < min_interval_ms as i64
                {
                    let wait = (min_interval_ms as i64 - (at - last)).max(0) / 1000 + 1;
                    return Err(capcore::Error::conflict(format!(
                        "the server's previous backup started less than {} s ago; try again in {wait} s",
                        min_interval_ms / 1000
                    )));
                }
                let record = BackupRecord {
                    id: backup_id,
                    name,
                    status: BackupStatus::Running,
                    created_ms: at,
                    completed_ms: None,
                    bytes: 0,
                    sha256: None,
                    locked: false,
                    files: 0,
                    links_left_out: 0,
                    error: None,
                    location: None,
                };
                store.save(id, &record)?;
                Ok(record)
            }
        })
        .await;
        let record = match started {
            Ok(r) => r,
            Err(e) => {
                self.inner.backing_up.lock().expect("backups lock").remove(&id);
                return Err(e);
            }
        };
        self.emit(id, Event::Backup { backup: record.clone() });
        let agent = self.clone();
        let running = record.clone();
        let hooks = self.with_slot(id, |s| s.record.spec.backup_hooks.clone()).flatten();
        tokio::spawn(async move {
            // Hooks only for a game that is up: a stopped one has nothing unsaved.
            let hooks = hooks.filter(|_| agent.state_of(id).is_some_and(|s| s.is_up()));
            if let Some(hooks) = &hooks {
                agent.before_backup(id, hooks).await;
            }
            let progress = Arc::new(AtomicU64::new(0));
            let path = store.archive(id, backup_id);
            let work = {
                let (progress, path) = (progress.clone(), path.clone());
                tokio::task::spawn_blocking(move || -> capcore::Result<crate::files::BackupInfo> {
                    let partial = path.with_extension("zst.part");
                    let file = std::fs::File::create(&partial)
                        .map_err(|e| capcore::Error::internal("cannot create the backup's file", e))?;
                    let mut out = Counting { inner: std::io::BufWriter::with_capacity(1 << 20, file), bytes: progress };
                    let made = files.backup(&mut out).and_then(|info| {
                        let file = out
                            .inner
                            .into_inner()
                            .map_err(|e| capcore::Error::internal("cannot write the backup", e.into_error()))?;
                        file.sync_all().map_err(|e| capcore::Error::internal("cannot write the backup", e))?;
                        std::fs::rename(&partial, &path)
                            .map_err(|e| capcore::Error::internal("cannot write the backup", e))?;
                        Ok(info)
                    });
                    if made.is_err() {
                        let _ = std::fs::remove_file(&partial);
                    }
                    made
                })
            };
            tokio::pin!(work);
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            tick.tick().await;
            let result = loop {
                tokio::select! {
                    r = &mut work => break r.map_err(|e| capcore::Error::internal("the backup task failed", e)).and_then(|r| r),
                    _ = tick.tick() => {
                        let backup = BackupRecord { bytes: progress.load(Ordering::Relaxed), ..running.clone() };
                        agent.emit(id, Event::Backup { backup });
                    }
                }
            };
            // Kept off the node: uploaded, then the local copy goes either way.
            let result = match (result, agent.inner.offsite.clone()) {
                (Ok(info), Some(bucket)) => {
                    let (key, url) = offsite::place(&bucket, id, backup_id);
                    let uploaded = offsite::upload(&bucket, &key, &path).await;
                    if let Err(e) = tokio::fs::remove_file(&path).await {
                        tracing::warn!(server = %id, error = %e, "cannot delete the local copy of an uploaded backup");
                    }
                    match uploaded {
                        Ok(()) => Ok((info, Some(url))),
                        Err(e) => Err(capcore::Error::unavailable(format!("cannot store the backup at {url}: {e}"), e)),
                    }
                }
                (result, _) => result.map(|info| (info, None)),
            };
            let finished = {
                let _guard = agent.inner.backup_records.lock().await;
                let locked = store.get(id, backup_id).map(|r| r.locked).unwrap_or(false);
                let record = match &result {
                    Ok((info, location)) => BackupRecord {
                        status: BackupStatus::Done,
                        location: location.clone(),
                        completed_ms: Some(now().millis()),
                        bytes: info.bytes,
                        sha256: Some(info.sha256.clone()),
                        files: info.summary.files,
                        links_left_out: info.summary.links_left_out,
                        locked,
                        ..running.clone()
                    },
                    Err(e) => BackupRecord {
                        status: BackupStatus::Failed,
                        completed_ms: Some(now().millis()),
                        bytes: 0,
                        error: Some(e.to_string()),
                        locked,
                        ..running.clone()
                    },
                };
                if let Err(e) = store.save(id, &record) {
                    tracing::warn!(server = %id, error = %e, "cannot record a finished backup");
                }
                record
            };
            agent.emit(id, Event::Backup { backup: finished.clone() });
            if let Some(hooks) = &hooks {
                for command in &hooks.after {
                    if let Err(e) = agent.inner.runtime.send_command(id, command).await {
                        agent.system_line(id, &format!("[cap] after the backup, `{command}` could not be sent: {e}"));
                    }
                }
            }
            if finished.status == BackupStatus::Done {
                let _guard = agent.inner.backup_records.lock().await;
                if let Ok(deleted) = store.prune(id, retention, now().millis())
                    && !deleted.is_empty()
                {
                    agent.system_line(id, &format!("[cap] retention deleted {} older backup(s)", deleted.len()));
                    agent.delete_offsite(id, deleted).await;
                }
            }
            agent.inner.backing_up.lock().expect("backups lock").remove(&id);
        });
        Ok(Reply::Backup(record))
    }

    /// Tells the running game a backup is coming (`before`), and waits for its `wait_for` line
    /// (at most `wait_ms`); a game that does not answer is backed up anyway, said on its console.
    async fn before_backup(&self, id: ServerId, hooks: &capcore::protocol::v1::WireBackupHooks) {
        // Subscribed before the commands go, so the answer cannot slip by.
        let mut console = self.inner.runtime.subscribe(id).ok().map(|s| s.live);
        for command in &hooks.before {
            if let Err(e) = self.inner.runtime.send_command(id, command).await {
                self.system_line(id, &format!("[cap] before the backup, `{command}` could not be sent: {e}"));
            }
        }
        let (Some(wanted), Some(console)) = (&hooks.wait_for, console.as_mut()) else { return };
        let waited = tokio::time::timeout(Duration::from_millis(hooks.wait_ms), async {
            loop {
                match console.recv().await {
                    Ok(line) if line.contains(wanted.as_str()) => return true,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
                }
            }
        })
        .await;
        if !matches!(waited, Ok(true)) {
            self.system_line(
                id,
                &format!("[cap] `{wanted}` did not appear within {} ms; backing up anyway", hooks.wait_ms),
            );
        }
    }

    /// Restores `dir` from a backup: the archive on the node, or fetched from its bucket into a
    /// temporary file beside the records (deleted afterwards). The checksum is verified before
    /// anything changes.
    async fn restore_from(
        &self,
        id: ServerId,
        backup_id: BackupId,
        dir: std::path::PathBuf,
        disk_mb: i64,
    ) -> Result<crate::files::ArchiveSummary, Outcome> {
        let store = self.inner.backups.clone();
        let record = blocking({
            let store = store.clone();
            move || store.get(id, backup_id)
        })
        .await?;
        let (Some(sha256), BackupStatus::Done) = (record.sha256.clone(), record.status) else {
            return Err(outcome_error(ErrorCode::Conflict, "the backup is not complete"));
        };
        let (archive, fetched) = match &record.location {
            None => (store.archive(id, backup_id), false),
            Some(location) => {
                let (bucket, key) = offsite::key_of(self.inner.offsite.as_ref(), location).map_err(from_error)?;
                let temporary = store.archive(id, backup_id).with_extension("zst.fetch");
                self.system_line(id, &format!("[cap] fetching the backup from {location}"));
                if let Err(e) = offsite::fetch(&bucket, &key, &temporary).await {
                    let _ = tokio::fs::remove_file(&temporary).await;
                    return Err(from_error(e));
                }
                (temporary, true)
            }
        };
        let restored = blocking({
            let archive = archive.clone();
            move || {
                let mut file =
                    std::fs::File::open(&archive).map_err(|e| capcore::Error::internal("cannot open the backup", e))?;
                let bytes = file.metadata().map_err(|e| capcore::Error::internal("cannot open the backup", e))?.len();
                let quota = DiskQuota::new(super::files::limit_bytes(disk_mb), 0);
                restore(&dir, &mut file, bytes, &sha256, &quota)
            }
        })
        .await;
        if fetched && let Err(e) = tokio::fs::remove_file(&archive).await {
            tracing::warn!(server = %id, error = %e, "cannot delete a fetched backup");
        }
        restored
    }

    /// Deletes the objects of deleted backups' records kept off the node (best effort: a
    /// failure is logged and said on the console).
    pub(super) async fn delete_offsite(&self, id: ServerId, records: Vec<BackupRecord>) {
        for location in records.into_iter().filter_map(|r| r.location) {
            let deleted = match offsite::key_of(self.inner.offsite.as_ref(), &location) {
                Ok((bucket, key)) => offsite::delete(&bucket, &key).await,
                Err(e) => Err(e),
            };
            if let Err(e) = deleted {
                tracing::warn!(server = %id, %location, error = %e, "cannot delete a backup's object");
                self.system_line(id, &format!("[cap] cannot delete {location}: {e}"));
            }
        }
    }

    /// Restores a stopped server's directory from a backup, holding the server's command lock
    /// so nothing starts it meanwhile.
    async fn restore_backup(&self, id: ServerId, backup_id: BackupId) -> Result<Reply, Outcome> {
        let lock = self.lock_of(id);
        let _guard = lock.lock().await;
        match self.state_of(id) {
            Some(ServerState::Offline | ServerState::Crashed | ServerState::InstallFailed) => {}
            Some(s) => {
                return Err(outcome_error(ErrorCode::Conflict, format!("stop the server first: it is {s}")));
            }
            None => return Err(outcome_error(ErrorCode::NotFound, "no such server")),
        }
        {
            // Checked and marked under the backups lock, so a backup cannot start in between.
            let running = self.inner.backing_up.lock().expect("backups lock");
            if running.contains(&id) {
                return Err(outcome_error(ErrorCode::Conflict, "a backup of this server is being made; wait for it"));
            }
            if !self.inner.restoring.lock().expect("restoring lock").insert(id) {
                return Err(outcome_error(ErrorCode::Conflict, "the server is already being restored"));
            }
        }
        let disk_mb = self.with_slot(id, |s| s.record.spec.limits.disk_mb).unwrap_or(0);
        let dir = self.inner.config.runtime.servers_dir.join(id.to_string());
        self.system_line(id, "[cap] restoring a backup");
        let restored = self.restore_from(id, backup_id, dir, disk_mb).await;
        // The directory was exchanged: the file manager opens the new one on next use, and its
        // project quota is set on the new one.
        self.files_forget(id);
        if let Some(quotas) = &self.inner.project_quotas {
            quotas.forget(id, false);
        }
        self.apply_project_quota(id, disk_mb).await;
        self.inner.restoring.lock().expect("restoring lock").remove(&id);
        match restored {
            Ok(summary) => {
                self.system_line(
                    id,
                    &format!("[cap] backup restored: {} files, {} bytes", summary.files, summary.bytes),
                );
                Ok(Reply::Done)
            }
            Err(e) => {
                if let Outcome::Error { message, .. } = &e {
                    self.system_line(id, &format!("[cap] the restore failed; nothing was changed: {message}"));
                }
                Err(e)
            }
        }
    }
}
