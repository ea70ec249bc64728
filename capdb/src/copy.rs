//! Copying a panel's whole store from one backend to another (`cap-panel db copy`), verified
//! afterwards by row counts and a checksum per table read back from the target.

use capcore::backend::Database;
use capcore::backend::portable::{RowDigest, Table};
use capcore::{Error, Result};

/// How [`copy`] treats the target.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Empty a target that already holds data before copying; without it such a target is
    /// refused and left untouched.
    pub overwrite: bool,
    /// Rows per export page and import transaction.
    pub batch: u32,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self { overwrite: false, batch: 500 }
    }
}

/// What was copied: per table, the rows and the checksum that source and target agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub tables: Vec<TableReport>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub table: Table,
    pub rows: u64,
    /// SHA-256 (hex) over the rows in export order.
    pub checksum: String,
}

/// Copies every table of `from` into `to`, both migrated first (so both are at this build's
/// schema), then reads the target back and compares counts and checksums.
///
/// A target "holds data" when any table other than the roles has a row, or its roles differ
/// from the ones a fresh migration seeds; such a target is refused with `Conflict` unless
/// `options.overwrite`. A fresh target's seeded roles are replaced by the source's.
pub async fn copy(from: &dyn Database, to: &dyn Database, options: &CopyOptions) -> Result<CopyReport> {
    from.migrate().await?;
    to.migrate().await?;
    let held = held_data(to).await?;
    if !held.is_empty() && !options.overwrite {
        return Err(Error::conflict(format!(
            "the target database already holds data ({}); pass --overwrite to replace it",
            held.join(", ")
        )));
    }
    to.clear_rows().await?;
    let batch = options.batch.max(1);
    let mut tables = Vec::new();
    for table in Table::ALL {
        let mut digest = RowDigest::default();
        loop {
            let rows = from.export_rows(table, digest.rows(), batch).await?;
            to.import_rows(table, &rows).await?;
            rows.iter().for_each(|row| digest.add(row));
            tracing::debug!(table = table.name(), rows = digest.rows(), "copying");
            if rows.len() < batch as usize {
                break;
            }
        }
        tables.push(TableReport { table, rows: digest.rows(), checksum: digest.hex() });
    }
    for expected in &tables {
        let found = table_report(to, expected.table, batch).await?;
        let counted = to.count_rows(expected.table).await?;
        if found != *expected || counted != expected.rows {
            return Err(Error::internal(
                format!(
                    "the copy of `{}` does not match: {} rows (checksum {}) read, {} rows counted and {} rows \
                     (checksum {}) read back from the target",
                    expected.table.name(),
                    expected.rows,
                    expected.checksum,
                    counted,
                    found.rows,
                    found.checksum
                ),
                "verification failed",
            ));
        }
    }
    Ok(CopyReport { tables })
}

/// Reads `table` whole and returns its row count and checksum.
pub async fn table_report(db: &dyn Database, table: Table, batch: u32) -> Result<TableReport> {
    let mut digest = RowDigest::default();
    loop {
        let rows = db.export_rows(table, digest.rows(), batch).await?;
        rows.iter().for_each(|row| digest.add(row));
        if rows.len() < batch as usize {
            return Ok(TableReport { table, rows: digest.rows(), checksum: digest.hex() });
        }
    }
}

/// What `db` holds beyond a fresh migration, as "N table" phrases; empty for a fresh store.
async fn held_data(db: &dyn Database) -> Result<Vec<String>> {
    let mut held = Vec::new();
    for table in Table::ALL {
        let n = db.count_rows(table).await?;
        if n > 0 && table != Table::Roles {
            held.push(format!("{n} {}", table.name()));
        }
    }
    // Roles other than the builtin ones a migration seeds.
    let builtin = Table::Roles.columns().iter().position(|c| c.name == "builtin").unwrap_or_default();
    let roles = db.export_rows(Table::Roles, 0, u32::MAX).await?;
    let custom = roles.iter().filter(|row| row[builtin] != serde_json::Value::Bool(true)).count();
    if custom > 0 {
        held.push(format!("{custom} custom roles"));
    }
    Ok(held)
}
