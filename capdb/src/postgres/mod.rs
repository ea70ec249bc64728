//! The PostgreSQL backend (sqlx, pure-Rust client): the store for several panels sharing one
//! database.

mod allocations;
mod audit;
mod auth;
mod error;
mod nodes;
mod portable;
mod roles;
mod servers;
mod templates;
mod users;

use crate::DbConfig;
use async_trait::async_trait;
use capcore::backend::database::*;
use capcore::backend::portable::{Row as TableRow, Table};
use capcore::ids::SessionId;
use capcore::model::{ApiKey, AuthContext, Session};
use capcore::permission::PermissionSet;
use capcore::{Error, Result};
use error::db;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, PgPool, Postgres, Row};
use std::str::FromStr;

/// Versioned migrations, applied in order, each in its own transaction. This backend is newer
/// than the SQLite one, so its first migration is the whole current schema.
const MIGRATIONS: &[crate::migrations::Migration] = &[(1, "initial", include_str!("migrations/0001_initial.sql"))];

/// The key of the transaction-scoped advisory lock every migration step takes, so that panels
/// starting at once against one database migrate one after the other ("cap_migr" in ASCII).
const MIGRATION_LOCK: i64 = 0x6361_705f_6d69_6772;

/// A PostgreSQL database: a pool and one repository per table group.
#[derive(Debug, Clone)]
pub struct PostgresDatabase {
    pool: PgPool,
    users: users::PostgresUsers,
    roles: roles::PostgresRoles,
    nodes: nodes::PostgresNodes,
    allocations: allocations::PostgresAllocations,
    templates: templates::PostgresTemplates,
    servers: servers::PostgresServers,
    api_keys: auth::PostgresApiKeys,
    sessions: auth::PostgresSessions,
    audit: audit::PostgresAudit,
}

impl PostgresDatabase {
    /// Connects to `url` (`postgres://user:password@host:port/database?sslmode=...`) with a pool
    /// sized by `config`. The database must exist; the schema is made by [`Database::migrate`].
    pub async fn connect(url: &str, config: &DbConfig) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| Error::invalid("database_url", format!("not a PostgreSQL URL: {e}")))?
            .application_name("ctrl-alt-play");
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| {
                Error::unavailable(format!("cannot connect to PostgreSQL at `{}`", crate::url::redacted(url)), e)
            })?;
        Ok(Self::from_pool(pool))
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            users: users::PostgresUsers(pool.clone()),
            roles: roles::PostgresRoles(pool.clone()),
            nodes: nodes::PostgresNodes(pool.clone()),
            allocations: allocations::PostgresAllocations(pool.clone()),
            templates: templates::PostgresTemplates(pool.clone()),
            servers: servers::PostgresServers(pool.clone()),
            api_keys: auth::PostgresApiKeys(pool.clone()),
            sessions: auth::PostgresSessions(pool.clone()),
            audit: audit::PostgresAudit(pool.clone()),
            pool,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates the bookkeeping table if needed and checks what is recorded in it against this
    /// build: a newer schema or a changed migration is refused.
    async fn check_recorded(&self) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_migrations(&mut tx).await?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS cap_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
             checksum TEXT NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let recorded: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT version, name, checksum FROM cap_migrations ORDER BY version")
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
        for (version, name, checksum) in &recorded {
            crate::migrations::check_recorded(MIGRATIONS, *version, name, Some(checksum))?;
        }
        tx.commit().await.map_err(db)
    }
}

/// Takes the migration lock until the end of the transaction.
async fn lock_migrations(tx: &mut sqlx::Transaction<'static, Postgres>) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut **tx).await.map_err(db)?;
    Ok(())
}

#[async_trait]
impl Database for PostgresDatabase {
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

    /// Applies the missing migrations, each in its own transaction holding the advisory lock
    /// [`MIGRATION_LOCK`] (so two panels starting at once apply each exactly once; PostgreSQL's
    /// DDL is transactional, so a failed migration leaves nothing behind). Refuses a database
    /// whose schema is newer than this build, or whose applied migrations differ from this
    /// build's (by SHA-256 of their SQL).
    async fn migrate(&self) -> Result<u32> {
        self.check_recorded().await?;
        let mut applied = 0;
        for (version, name, sql) in MIGRATIONS {
            let mut tx = self.pool.begin().await.map_err(db)?;
            lock_migrations(&mut tx).await?;
            let done: Option<i64> = sqlx::query_scalar("SELECT version FROM cap_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            if done.is_some() {
                continue;
            }
            sqlx::raw_sql(AssertSqlSafe(*sql)).execute(&mut *tx).await.map_err(db)?;
            sqlx::query("INSERT INTO cap_migrations (version, name, checksum) VALUES ($1, $2, $3)")
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
        "postgres"
    }

    async fn count_rows(&self, table: Table) -> Result<u64> {
        portable::count(&self.pool, table).await
    }

    async fn export_rows(&self, table: Table, offset: u64, limit: u32) -> Result<Vec<TableRow>> {
        portable::export(&self.pool, table, offset, limit).await
    }

    async fn import_rows(&self, table: Table, rows: &[TableRow]) -> Result<()> {
        portable::import(&self.pool, table, rows).await
    }

    async fn clear_rows(&self) -> Result<()> {
        portable::clear(&self.pool).await
    }

    /// One statement instead of three: every authenticated request calls this.
    async fn session_context(&self, id: SessionId) -> Result<(Session, AuthContext)> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT s.id AS s_id, s.user_id AS s_user_id, s.refresh_hash AS s_refresh_hash, \
             s.generation AS s_generation, s.revoked AS s_revoked, s.created_at AS s_created_at, \
             s.expires_at AS s_expires_at, s.ip AS s_ip, {ROLE_BITS} AS role_bits, {USER_COLUMNS} \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1"
        )))
        .bind(id.to_string())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| error::map(e, "session", "session exists"))?;
        Ok((auth::session_from_prefixed_row(&row, "s_")?, auth_context(&row)?))
    }

    async fn api_key_context(&self, prefix: &str) -> Result<Option<(ApiKey, AuthContext)>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT k.id AS k_id, k.user_id AS k_user_id, k.name AS k_name, k.prefix AS k_prefix, \
             k.secret_hash AS k_secret_hash, k.permissions AS k_permissions, k.created_at AS k_created_at, \
             k.last_used_at AS k_last_used_at, k.expires_at AS k_expires_at, {ROLE_BITS} AS role_bits, \
             {USER_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.prefix = $1"
        )))
        .bind(prefix)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|row| Ok((auth::key_from_prefixed_row(&row, "k_")?, auth_context(&row)?))).transpose()
    }
}

/// The OR of the user's roles' permission bits (NULL without roles); `u` is the users table.
const ROLE_BITS: &str =
    "(SELECT bit_or(r.permissions) FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = u.id)";

/// The user's columns, from `u`, under their own names.
const USER_COLUMNS: &str =
    "u.id, u.username, u.email, u.password_hash, u.totp_secret, u.disabled, u.created_at, u.updated_at";

fn auth_context(row: &PgRow) -> Result<AuthContext> {
    let bits: Option<i64> = get(row, "role_bits")?;
    let global = PermissionSet::from_bits(bits.unwrap_or(0) as u64);
    Ok(AuthContext { user: users::from_row(row)?, global })
}

/// Reads a text column holding an id newtype.
pub(crate) fn get_id<T: FromStr>(row: &PgRow, column: &str) -> Result<T> {
    let s: String = row.try_get(column).map_err(db)?;
    s.parse().map_err(|_| crate::error::corrupt(column, &s))
}

pub(crate) fn get_opt_id<T: FromStr>(row: &PgRow, column: &str) -> Result<Option<T>> {
    let s: Option<String> = row.try_get(column).map_err(db)?;
    s.map(|s| s.parse().map_err(|_| crate::error::corrupt(column, &s))).transpose()
}

pub(crate) fn get<'r, T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>>(row: &'r PgRow, column: &str) -> Result<T> {
    row.try_get(column).map_err(db)
}

/// Reads a JSONB column selected as `column::text`.
pub(crate) fn get_json<T: serde::de::DeserializeOwned>(row: &PgRow, column: &str, what: &str) -> Result<T> {
    let text: String = get(row, column)?;
    serde_json::from_str(&text).map_err(|e| crate::error::corrupt(what, e))
}

/// `LIKE` pattern for a literal substring (`%`, `_` and `\` escaped; use with `ESCAPE '\'`).
pub(crate) fn like_contains(s: &str) -> String {
    let escaped = s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

/// Builds a page from rows and a total count.
pub(crate) fn to_page<T>(
    rows: &[PgRow],
    total: i64,
    page: capcore::model::PageRequest,
    from_row: fn(&PgRow) -> Result<T>,
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
    pool: &PgPool,
    table: &str,
    columns: &str,
    page: capcore::model::PageRequest,
    from_row: fn(&PgRow) -> Result<T>,
) -> Result<capcore::model::Page<T>> {
    let total: i64 =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"))).fetch_one(pool).await.map_err(db)?;
    let rows =
        sqlx::query(AssertSqlSafe(format!("SELECT {columns} FROM {table} ORDER BY created_at, id LIMIT $1 OFFSET $2")))
            .bind(i64::from(page.per_page))
            .bind(page.offset() as i64)
            .fetch_all(pool)
            .await
            .map_err(db)?;
    to_page(&rows, total, page, from_row)
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_contains_escapes_the_wildcards_and_the_escape() {
        assert_eq!(super::like_contains(r"100%_a\b"), r"%100\%\_a\\b%");
    }
}
