//! The SQLite backend (sqlx, bundled SQLite): the embedded default store.

mod allocations;
mod audit;
mod auth;
mod nodes;
mod portable;
mod roles;
mod servers;
mod templates;
mod users;

use crate::DbConfig;
use crate::error::db;
use async_trait::async_trait;
use capcore::backend::database::*;
use capcore::backend::portable::{Row as TableRow, Table};
use capcore::ids::SessionId;
use capcore::model::{ApiKey, AuthContext, Session};
use capcore::permission::PermissionSet;
use capcore::{Error, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

/// Versioned migrations, applied in order, each in its own transaction.
const MIGRATIONS: &[crate::migrations::Migration] = &[
    (1, "initial", include_str!("migrations/0001_initial.sql")),
    (2, "agent_seq", include_str!("migrations/0002_agent_seq.sql")),
];

/// A SQLite database: a pool and one repository per table group.
#[derive(Debug, Clone)]
pub struct SqliteDatabase {
    pool: SqlitePool,
    /// One connection that every write goes through, so the panel's own writers queue in
    /// order (the pool hands it out first come, first served) instead of racing in SQLite's
    /// busy handler, which sleeps and retries and can leave one writer waiting out the busy
    /// timeout; the busy timeout is left for other processes. The same pool as `pool` for an
    /// in-memory database, which is one connection anyway.
    writer: SqlitePool,
    users: users::SqliteUsers,
    roles: roles::SqliteRoles,
    nodes: nodes::SqliteNodes,
    allocations: allocations::SqliteAllocations,
    templates: templates::SqliteTemplates,
    servers: servers::SqliteServers,
    api_keys: auth::SqliteApiKeys,
    sessions: auth::SqliteSessions,
    audit: audit::SqliteAudit,
}

impl SqliteDatabase {
    /// `cap_migrations.checksum` arrived after the first release; add it where it is missing.
    async fn add_checksum_column(&self) -> Result<()> {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info('cap_migrations')")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        if !columns.iter().any(|c| c == "checksum") {
            match sqlx::raw_sql("ALTER TABLE cap_migrations ADD COLUMN checksum TEXT").execute(&self.pool).await {
                Ok(_) => {}
                // Another panel added it meanwhile.
                Err(e) if e.to_string().contains("duplicate column") => {}
                Err(e) => return Err(db(e)),
            }
        }
        Ok(())
    }

    /// Opens (creating if missing) the database at `url` (`sqlite://path`, `sqlite::memory:`).
    pub async fn connect(url: &str, config: &DbConfig) -> Result<Self> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::invalid("database_url", format!("not a SQLite URL: {e}")))?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .synchronous(SqliteSynchronous::Normal);
        let options = if in_memory { options } else { options.journal_mode(SqliteJournalMode::Wal) };
        let pool = SqlitePoolOptions::new()
            // Each connection to `:memory:` would be its own empty database.
            .max_connections(if in_memory { 1 } else { config.max_connections.max(1) })
            .acquire_timeout(config.acquire_timeout)
            // A local file does not drop connections; a ping per query would double the round trips.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(|e| Error::unavailable(format!("cannot open SQLite database `{url}`"), e))?;
        if in_memory {
            return Ok(Self::from_pool(pool));
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(config.acquire_timeout)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(|e| Error::unavailable(format!("cannot open SQLite database `{url}`"), e))?;
        Ok(Self::from_pools(pool, writer))
    }

    /// A backend reading and writing through `pool`.
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self::from_pools(pool.clone(), pool)
    }

    /// A backend reading through `pool` and writing through `writer` (a pool of one connection
    /// is best: see [`SqliteDatabase::connect`]).
    pub fn from_pools(pool: SqlitePool, writer: SqlitePool) -> Self {
        let (r, w) = (&pool, &writer);
        Self {
            users: users::SqliteUsers(r.clone(), w.clone()),
            roles: roles::SqliteRoles(r.clone(), w.clone()),
            nodes: nodes::SqliteNodes(r.clone(), w.clone()),
            allocations: allocations::SqliteAllocations(r.clone(), w.clone()),
            templates: templates::SqliteTemplates(r.clone(), w.clone()),
            servers: servers::SqliteServers(r.clone(), w.clone()),
            api_keys: auth::SqliteApiKeys(r.clone(), w.clone()),
            sessions: auth::SqliteSessions(r.clone(), w.clone()),
            audit: audit::SqliteAudit(r.clone(), w.clone()),
            pool,
            writer,
        }
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl Database for SqliteDatabase {
    fn users(&self) -> &dyn UserRepo {
        &self.users
    }
    fn roles(&self) -> &dyn RoleRepo {
        &self.roles
    }
    fn nodes(&self) -> &dyn NodeRepo {
        &self.nodes
    }
    fn allocations(&self) -> &dyn AllocationRepo {
        &self.allocations
    }
    fn templates(&self) -> &dyn TemplateRepo {
        &self.templates
    }
    fn servers(&self) -> &dyn ServerRepo {
        &self.servers
    }
    fn api_keys(&self) -> &dyn ApiKeyRepo {
        &self.api_keys
    }
    fn sessions(&self) -> &dyn SessionRepo {
        &self.sessions
    }
    fn audit(&self) -> &dyn AuditRepo {
        &self.audit
    }

    /// Applies the missing migrations, each in its own `BEGIN IMMEDIATE` transaction (so two
    /// panels starting at once on one file apply each exactly once). Refuses a database whose
    /// schema is newer than this build, or whose applied migrations differ from this build's
    /// (by SHA-256 of their SQL).
    async fn migrate(&self) -> Result<u32> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS cap_migrations (version INTEGER PRIMARY KEY NOT NULL, name TEXT NOT NULL)",
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        self.add_checksum_column().await?;
        let recorded: Vec<(i64, String, Option<String>)> =
            sqlx::query_as("SELECT version, name, checksum FROM cap_migrations ORDER BY version")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        for (version, name, checksum) in &recorded {
            // Recorded before checksums were kept: record this build's.
            if let Some(checksum) = crate::migrations::check_recorded(MIGRATIONS, *version, name, checksum.as_deref())?
            {
                sqlx::query("UPDATE cap_migrations SET checksum = ? WHERE version = ? AND checksum IS NULL")
                    .bind(checksum)
                    .bind(version)
                    .execute(&self.pool)
                    .await
                    .map_err(db)?;
            }
        }
        let mut applied = 0;
        for (version, name, sql) in MIGRATIONS {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
            let done: Option<i64> = sqlx::query_scalar("SELECT version FROM cap_migrations WHERE version = ?")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            if done.is_some() {
                continue;
            }
            sqlx::raw_sql(AssertSqlSafe(*sql)).execute(&mut *tx).await.map_err(db)?;
            sqlx::query("INSERT INTO cap_migrations (version, name, checksum) VALUES (?, ?, ?)")
                .bind(version)
                .bind(name)
                .bind(crate::migrations::checksum_of(sql))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            tracing::info!(version, name, "applied migration");
            applied += 1;
        }
        Ok(applied)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    async fn count_rows(&self, table: Table) -> Result<u64> {
        portable::count(&self.pool, table).await
    }

    async fn export_rows(&self, table: Table, offset: u64, limit: u32) -> Result<Vec<TableRow>> {
        portable::export(&self.pool, table, offset, limit).await
    }

    async fn import_rows(&self, table: Table, rows: &[TableRow]) -> Result<()> {
        portable::import(&self.writer, table, rows).await
    }

    async fn clear_rows(&self) -> Result<()> {
        portable::clear(&self.writer).await
    }

    /// One statement instead of three: every authenticated request calls this.
    async fn session_context(&self, id: SessionId) -> Result<(Session, AuthContext)> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT s.id AS s_id, s.user_id AS s_user_id, s.refresh_hash AS s_refresh_hash, \
             s.generation AS s_generation, s.revoked AS s_revoked, s.created_at AS s_created_at, \
             s.expires_at AS s_expires_at, s.ip AS s_ip, {ROLE_BITS} AS role_bits, u.* \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?"
        )))
        .bind(id.to_string())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| crate::error::map(e, "session", "session exists"))?;
        Ok((auth::session_from_prefixed_row(&row, "s_")?, auth_context(&row)?))
    }

    async fn api_key_context(&self, prefix: &str) -> Result<Option<(ApiKey, AuthContext)>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT k.id AS k_id, k.user_id AS k_user_id, k.name AS k_name, k.prefix AS k_prefix, \
             k.secret_hash AS k_secret_hash, k.permissions AS k_permissions, k.created_at AS k_created_at, \
             k.last_used_at AS k_last_used_at, k.expires_at AS k_expires_at, {ROLE_BITS} AS role_bits, u.* \
             FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.prefix = ?"
        )))
        .bind(prefix)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|row| Ok((auth::key_from_prefixed_row(&row, "k_")?, auth_context(&row)?))).transpose()
    }
}

/// The user's roles' permission bits as a comma-separated list (SQLite has no bitwise OR
/// aggregate); `u` is the users table.
const ROLE_BITS: &str =
    "(SELECT group_concat(r.permissions) FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = u.id)";

fn auth_context(row: &SqliteRow) -> Result<AuthContext> {
    let bits: Option<String> = get(row, "role_bits")?;
    let global = bits
        .unwrap_or_default()
        .split(',')
        .filter(|b| !b.is_empty())
        .map(|b| {
            b.parse::<i64>()
                .map(|v| PermissionSet::from_bits(v as u64))
                .map_err(|_| crate::error::corrupt("role bits", b))
        })
        .try_fold(PermissionSet::EMPTY, |acc, p| p.map(|p| acc.union(p)))?;
    Ok(AuthContext { user: users::from_row(row)?, global })
}

/// Reads a text column holding an id newtype.
pub(crate) fn get_id<T: FromStr>(row: &SqliteRow, column: &str) -> Result<T> {
    let s: String = row.try_get(column).map_err(db)?;
    s.parse().map_err(|_| crate::error::corrupt(column, &s))
}

pub(crate) fn get_opt_id<T: FromStr>(row: &SqliteRow, column: &str) -> Result<Option<T>> {
    let s: Option<String> = row.try_get(column).map_err(db)?;
    s.map(|s| s.parse().map_err(|_| crate::error::corrupt(column, &s))).transpose()
}

pub(crate) fn get<'r, T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>>(
    row: &'r SqliteRow,
    column: &str,
) -> Result<T> {
    row.try_get(column).map_err(db)
}

/// `LIKE` pattern for a literal substring (`%`, `_` and `\` escaped; use with `ESCAPE '\'`).
pub(crate) fn like_contains(s: &str) -> String {
    let escaped = s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

/// Builds a page from rows and a total count.
pub(crate) fn to_page<T>(
    rows: &[SqliteRow],
    total: i64,
    page: capcore::model::PageRequest,
    from_row: fn(&SqliteRow) -> Result<T>,
) -> Result<capcore::model::Page<T>> {
    Ok(capcore::model::Page {
        items: rows.iter().map(from_row).collect::<Result<_>>()?,
        total: total as u64,
        page: page.page,
        per_page: page.per_page,
    })
}

/// One page of a whole table in creation order (tables without filters).
pub(crate) async fn list_table<T>(
    pool: &SqlitePool,
    table: &str,
    columns: &str,
    page: capcore::model::PageRequest,
    from_row: fn(&SqliteRow) -> Result<T>,
) -> Result<capcore::model::Page<T>> {
    let total: i64 =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"))).fetch_one(pool).await.map_err(db)?;
    let rows =
        sqlx::query(AssertSqlSafe(format!("SELECT {columns} FROM {table} ORDER BY created_at, id LIMIT ? OFFSET ?")))
            .bind(i64::from(page.per_page))
            .bind(page.offset() as i64)
            .fetch_all(pool)
            .await
            .map_err(db)?;
    to_page(&rows, total, page, from_row)
}
