//! What every backend's `migrate` checks about the migrations a database has recorded: none
//! newer than the build knows, and each one the same SQL as the build's (by SHA-256).

use capcore::{Error, Result};

/// A migration: version, name, SQL.
pub(crate) type Migration = (i64, &'static str, &'static str);

/// SHA-256 (hex) of a migration's SQL, recorded with it.
pub(crate) fn checksum_of(sql: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(sql.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks one recorded migration against the build's. `Conflict` when the database is newer
/// than the build or the migration differs; `Ok(Some(checksum))` when the record has no checksum
/// yet (recorded before checksums were kept) and this one should be stored.
pub(crate) fn check_recorded(
    migrations: &[Migration],
    version: i64,
    name: &str,
    checksum: Option<&str>,
) -> Result<Option<String>> {
    let known = migrations.iter().map(|(v, _, _)| *v).max().unwrap_or(0);
    if version > known {
        return Err(Error::conflict(format!(
            "the database schema is at version {version} ({name}), newer than this build knows \
             (up to {known}): run a cap-panel at least as new as the one that migrated it"
        )));
    }
    let Some((_, _, sql)) = migrations.iter().find(|(v, _, _)| *v == version) else { return Ok(None) };
    let expected = checksum_of(sql);
    match checksum {
        Some(c) if c != expected => Err(Error::conflict(format!(
            "migration {version} ({name}) in the database differs from this build's (checksum {c}, \
             expected {expected}); the schema was changed outside cap-panel"
        ))),
        Some(_) => Ok(None),
        None => Ok(Some(expected)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &[Migration] = &[(1, "initial", "CREATE TABLE a (x INTEGER);"), (2, "more", "ALTER TABLE a ADD y;")];

    #[test]
    fn newer_changed_and_unrecorded_checksums_are_told_apart() {
        let one = checksum_of(M[0].2);
        assert_eq!(one.len(), 64);
        assert_eq!(check_recorded(M, 1, "initial", Some(&one)).unwrap(), None);
        assert_eq!(check_recorded(M, 1, "initial", None).unwrap(), Some(one));
        let newer = check_recorded(M, 3, "future", Some("x")).unwrap_err().to_string();
        assert!(newer.contains("at version 3 (future), newer than this build knows (up to 2)"), "{newer}");
        let changed = check_recorded(M, 2, "more", Some("abc")).unwrap_err().to_string();
        assert!(changed.contains("migration 2 (more) in the database differs"), "{changed}");
    }
}
