//! MongoDB migrations: database commands (index creation, document changes) run in order under a
//! lock document, recorded with their checksums in `cap_migrations`.

use super::error::db;
use super::{Store, back_off, collect, fields, wall_millis};
use capcore::{Error, Result};
use mongodb::bson::{Bson, Document, doc};
use std::time::{Duration, Instant};

/// Versioned migrations, applied in order: each is a JSON object whose `commands` are database
/// commands, run one by one. Every command must be idempotent (`createIndexes` of an existing
/// index, an upsert), since a panel that dies halfway leaves a migration unrecorded and the
/// next one runs it again.
pub const MIGRATIONS: &[crate::migrations::Migration] = &[(1, "initial", include_str!("migrations/0001_initial.json"))];

const RECORDS: &str = "cap_migrations";
const LOCKS: &str = "cap_locks";
const LOCK_ID: &str = "migrations";

/// How long the migration lock holds without its holder; a panel that died while migrating
/// blocks the others this long at most.
const LEASE: Duration = Duration::from_secs(60);

pub(super) async fn migrate(store: &Store) -> Result<u32> {
    let lock = MigrationLock::take(store).await?;
    let outcome = migrate_locked(store).await;
    lock.release(store).await;
    outcome
}

async fn migrate_locked(store: &Store) -> Result<u32> {
    let records = store.coll(RECORDS);
    let mut applied_versions = Vec::new();
    for record in collect(records.find(doc! {}).await.map_err(db)?).await? {
        let version = fields::int(&record, "_id")?;
        let name = fields::text(&record, "name")?;
        let checksum = fields::opt_text(&record, "checksum")?;
        if let Some(checksum) = crate::migrations::check_recorded(MIGRATIONS, version, &name, checksum.as_deref())? {
            records.update_one(doc! { "_id": version }, doc! { "$set": { "checksum": checksum } }).await.map_err(db)?;
        }
        applied_versions.push(version);
    }
    let mut applied = 0;
    for (version, name, text) in MIGRATIONS {
        if applied_versions.contains(version) {
            continue;
        }
        for command in commands(text)? {
            let reply = store.db.run_command(command).await.map_err(db)?;
            if let Ok(errors) = reply.get_array("writeErrors") {
                return Err(Error::Internal {
                    message: format!("migration {version} ({name}) failed: {errors:?}"),
                    source: None,
                });
            }
        }
        let record = doc! { "_id": version, "name": *name, "checksum": crate::migrations::checksum_of(text) };
        records.insert_one(record).await.map_err(db)?;
        tracing::info!(version, name, "applied migration");
        applied += 1;
    }
    Ok(applied)
}

/// The commands of a migration's text.
fn commands(text: &str) -> Result<Vec<Document>> {
    let bad =
        |e: &dyn std::fmt::Display| Error::Internal { message: format!("a migration is invalid: {e}"), source: None };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(&e))?;
    let Some(serde_json::Value::Array(commands)) = value.get("commands") else { return Err(bad(&"no `commands`")) };
    commands
        .iter()
        .map(|command| match Bson::try_from(command.clone()).map_err(|e| bad(&e))? {
            Bson::Document(command) => Ok(command),
            other => Err(bad(&format!("a command is not a document: {other}"))),
        })
        .collect()
}

/// The migration lock: a document with a fixed `_id`, inserted (so only one panel holds it) with
/// an expiry, after which another panel may take it over.
#[derive(Debug)]
struct MigrationLock {
    token: String,
}

impl MigrationLock {
    /// Waits for the lock while another panel holds it, at most until its lease would have run
    /// out plus the store's wait.
    async fn take(store: &Store) -> Result<Self> {
        let locks = store.coll(LOCKS);
        let token = uuid_token();
        let deadline = Instant::now() + LEASE + store.wait;
        let mut attempt = 0;
        loop {
            let until = wall_millis() + LEASE.as_millis() as i64;
            match locks.insert_one(doc! { "_id": LOCK_ID, "token": &token, "until": until }).await {
                Ok(_) => return Ok(Self { token }),
                Err(e) if super::error::is_duplicate_key(&e) => {}
                Err(e) => return Err(db(e)),
            }
            // Held: take it over if its holder let it expire.
            let expired = doc! { "_id": LOCK_ID, "until": { "$lt": wall_millis() } };
            let update = doc! { "$set": { "token": &token, "until": until } };
            if locks.update_one(expired, update).await.map_err(db)?.matched_count == 1 {
                tracing::warn!("took over an expired migration lock");
                return Ok(Self { token });
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable {
                    message: "another panel is migrating the database and does not finish".to_string(),
                    source: None,
                });
            }
            back_off(attempt).await;
            attempt += 1;
        }
    }

    /// Lets go of the lock (if it is still ours); a failure is logged, the lock then expires.
    async fn release(self, store: &Store) {
        let released = store.coll(LOCKS).delete_one(doc! { "_id": LOCK_ID, "token": &self.token }).await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "cannot release the migration lock; it expires by itself");
        }
    }
}

/// A random token naming a lock's holder.
pub(crate) fn uuid_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_migration_parses_into_commands() {
        for (version, _, text) in super::MIGRATIONS {
            let commands = super::commands(text).unwrap();
            assert!(!commands.is_empty(), "migration {version} has commands");
        }
    }
}
