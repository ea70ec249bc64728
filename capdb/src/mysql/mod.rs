//! The MySQL/MariaDB backend (sqlx, pure-Rust client): the store for several panels sharing one
//! MariaDB 10.6+ or MySQL 8.0+ database.
//!
//! What it guarantees, and how:
//!
//! - Every connection runs with `sql_mode` `STRICT_ALL_TABLES` (a value longer than its column
//!   is refused with `Invalid`, never truncated) and `READ COMMITTED`, so a statement reads what
//!   was committed before it, as in PostgreSQL. (Where binary logging is on, the server needs
//!   `binlog_format` `ROW` or `MIXED`: statement-based logging refuses `READ COMMITTED` writes.)
//! - Text is `utf8mb4` (4-byte characters such as emoji round-trip) with the binary collation:
//!   ids sort bytewise and names, emails and hashes are unique case-sensitively, as in SQLite.
//!   Like every MySQL collation but the `NO PAD` ones it ignores trailing spaces when comparing;
//!   the panel refuses names that end in white space.
//! - The "atomically" of the `Database` contract holds through InnoDB row locks: server creation
//!   and limit changes lock the node row (`SELECT ... FOR UPDATE`) before counting its capacity,
//!   a free allocation is taken with `FOR UPDATE SKIP LOCKED` and an `UPDATE` that checks again
//!   that it is free, state changes and reported states are conditional `UPDATE`s read back in
//!   the same transaction (MySQL has no `UPDATE ... RETURNING`), and a refresh token's rotation
//!   locks its session row. A deadlock or lock wait timeout is `Conflict` ("try again").
//! - Migrations are versioned and checksummed in `cap_migrations`. MySQL commits DDL statement
//!   by statement, so instead of a transaction `migrate` holds a named lock (`GET_LOCK`, one per
//!   database) on one connection for its whole run: panels starting at once apply each
//!   migration exactly once.

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
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPoolOptions, MySqlRow};
use sqlx::{AssertSqlSafe, MySql, MySqlPool, Row};
use std::str::FromStr;

/// Versioned migrations, applied in order. This backend is newer than the SQLite one, so its
/// first migration is the whole current schema.
const MIGRATIONS: &[crate::migrations::Migration] = &[(1, "initial", include_str!("migrations/0001_initial.sql"))];

/// How long `migrate` waits for another panel's migration to finish before giving up.
const MIGRATION_LOCK_TIMEOUT_SECS: i64 = 300;

/// What every connection sets up before use: strict mode (no silent truncation) with nothing
/// that changes how SQL parses (no `ANSI_QUOTES`, no `NO_BACKSLASH_ESCAPES`), whatever the
/// server's default, and PostgreSQL's isolation level.
const SESSION_SETUP: &str = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'; \
                             SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED";

/// A MySQL or MariaDB database: a pool and one repository per table group.
#[derive(Debug, Clone)]
pub struct MysqlDatabase {
    pool: MySqlPool,
    users: users::MysqlUsers,
    roles: roles::MysqlRoles,
    nodes: nodes::MysqlNodes,
    allocations: allocations::MysqlAllocations,
    templates: templates::MysqlTemplates,
    servers: servers::MysqlServers,
    api_keys: auth::MysqlApiKeys,
    sessions: auth::MysqlSessions,
    audit: audit::MysqlAudit,
}

impl MysqlDatabase {
    /// Connects to `url` (`mysql://user:password@host:port/database?ssl-mode=...`, or the same
    /// with `mariadb://`) with a pool sized by `config`. The database must exist; the schema is
    /// made by [`Database::migrate`].
    pub async fn connect(url: &str, config: &DbConfig) -> Result<Self> {
        let sqlx_url = match url.strip_prefix("mariadb:") {
            Some(rest) => format!("mysql:{rest}"),
            None => url.to_string(),
        };
        let options = MySqlConnectOptions::from_str(&sqlx_url)
            .map_err(|e| Error::invalid("database_url", format!("not a MySQL URL: {e}")))?
            .charset("utf8mb4");
        let pool = MySqlPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(config.acquire_timeout)
            .after_connect(|conn, _| {
                Box::pin(async move { sqlx::raw_sql(SESSION_SETUP).execute(conn).await.map(|_| ()) })
            })
            .connect_with(options)
            .await
            .map_err(|e| {
                Error::unavailable(format!("cannot connect to MySQL at `{}`", crate::url::redacted(url)), e)
            })?;
        Ok(Self::from_pool(pool))
    }

    /// Wraps a pool whose connections are already set up (see [`MysqlDatabase::connect`]).
    pub fn from_pool(pool: MySqlPool) -> Self {
        Self {
            users: users::MysqlUsers(pool.clone()),
            roles: roles::MysqlRoles(pool.clone()),
            nodes: nodes::MysqlNodes(pool.clone()),
            allocations: allocations::MysqlAllocations(pool.clone()),
            templates: templates::MysqlTemplates(pool.clone()),
            servers: servers::MysqlServers(pool.clone()),
            api_keys: auth::MysqlApiKeys(pool.clone()),
            sessions: auth::MysqlSessions(pool.clone()),
            audit: audit::MysqlAudit(pool.clone()),
            pool,
        }
    }

    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }
}

/// The migration itself, on the connection that holds the migration lock: creates the
/// bookkeeping table, refuses a newer schema or a changed migration, applies what is missing.
async fn migrate_locked(conn: &mut MySqlConnection) -> Result<u32> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS cap_migrations (version BIGINT NOT NULL PRIMARY KEY, \
         name VARCHAR(255) NOT NULL, checksum VARCHAR(64) NOT NULL) \
         ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    )
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    let recorded: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT version, name, checksum FROM cap_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
    for (version, name, checksum) in &recorded {
        crate::migrations::check_recorded(MIGRATIONS, *version, name, Some(checksum))?;
    }
    let mut applied = 0;
    for (version, name, sql) in MIGRATIONS {
        if recorded.iter().any(|(v, _, _)| v == version) {
            continue;
        }
        sqlx::raw_sql(AssertSqlSafe(*sql)).execute(&mut *conn).await.map_err(db)?;
        sqlx::query("INSERT INTO cap_migrations (version, name, checksum) VALUES (?, ?, ?)")
            .bind(version)
            .bind(name)
            .bind(crate::migrations::checksum_of(sql))
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        tracing::info!(version, name, "applied migration");
        applied += 1;
    }
    Ok(applied)
}

#[async_trait]
impl Database for MysqlDatabase {
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

    /// Applies the missing migrations while holding the named lock `cap_migrations:<md5 of the
    /// database name>` on one connection, so two panels starting at once apply each exactly
    /// once. The connection is closed afterwards, which releases the lock even if releasing it
    /// failed. Refuses a database whose schema is newer than this build, or whose applied
    /// migrations differ from this build's (by SHA-256 of their SQL).
    async fn migrate(&self) -> Result<u32> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        conn.close_on_drop();
        let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(CONCAT('cap_migrations:', MD5(DATABASE())), ?)")
            .bind(MIGRATION_LOCK_TIMEOUT_SECS)
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?;
        if locked != Some(1) {
            return Err(Error::Unavailable {
                message: format!(
                    "another panel has been migrating this database for over {MIGRATION_LOCK_TIMEOUT_SECS} s; \
                     try again when it is done"
                ),
                source: None,
            });
        }
        let outcome = migrate_locked(&mut conn).await;
        let released =
            sqlx::raw_sql("DO RELEASE_LOCK(CONCAT('cap_migrations:', MD5(DATABASE())))").execute(&mut *conn).await;
        let applied = outcome?;
        released.map_err(db)?;
        Ok(applied)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "mysql"
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
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?"
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
             {USER_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.prefix = ?"
        )))
        .bind(prefix)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|row| Ok((auth::key_from_prefixed_row(&row, "k_")?, auth_context(&row)?))).transpose()
    }
}

/// The OR of the user's roles' permission bits (0 without roles); `u` is the users table.
/// `BIT_OR` is unsigned; the cast keeps its 64 bits in a signed BIGINT.
const ROLE_BITS: &str = "CAST((SELECT COALESCE(BIT_OR(r.permissions), 0) FROM user_roles ur \
                         JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = u.id) AS SIGNED)";

/// The user's columns, from `u`, under their own names.
const USER_COLUMNS: &str =
    "u.id, u.username, u.email, u.password_hash, u.totp_secret, u.disabled, u.created_at, u.updated_at";

fn auth_context(row: &MySqlRow) -> Result<AuthContext> {
    let bits: Option<i64> = get(row, "role_bits")?;
    let global = PermissionSet::from_bits(bits.unwrap_or(0) as u64);
    Ok(AuthContext { user: users::from_row(row)?, global })
}

/// Reads a text column holding an id newtype.
pub(crate) fn get_id<T: FromStr>(row: &MySqlRow, column: &str) -> Result<T> {
    let s: String = row.try_get(column).map_err(db)?;
    s.parse().map_err(|_| crate::error::corrupt(column, &s))
}

pub(crate) fn get_opt_id<T: FromStr>(row: &MySqlRow, column: &str) -> Result<Option<T>> {
    let s: Option<String> = row.try_get(column).map_err(db)?;
    s.map(|s| s.parse().map_err(|_| crate::error::corrupt(column, &s))).transpose()
}

pub(crate) fn get<'r, T: sqlx::Decode<'r, MySql> + sqlx::Type<MySql>>(row: &'r MySqlRow, column: &str) -> Result<T> {
    row.try_get(column).map_err(db)
}

/// Reads a column holding JSON text.
pub(crate) fn get_json<T: serde::de::DeserializeOwned>(row: &MySqlRow, column: &str, what: &str) -> Result<T> {
    let text: String = get(row, column)?;
    serde_json::from_str(&text).map_err(|e| crate::error::corrupt(what, e))
}

/// `LIKE` pattern for a literal substring, with `!` as the escape character (`%`, `_` and `!`
/// escaped; use with `ESCAPE '!'`). Not the backslash: what a backslash in SQL text means
/// depends on the server's `NO_BACKSLASH_ESCAPES`.
pub(crate) fn like_contains(s: &str) -> String {
    format!("%{}%", like_escaped(s))
}

/// `s` with the `LIKE` wildcards and the escape character `!` escaped.
pub(crate) fn like_escaped(s: &str) -> String {
    s.replace('!', "!!").replace('%', "!%").replace('_', "!_")
}

/// Builds a page from rows and a total count.
pub(crate) fn to_page<T>(
    rows: &[MySqlRow],
    total: i64,
    page: capcore::model::PageRequest,
    from_row: fn(&MySqlRow) -> Result<T>,
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
    pool: &MySqlPool,
    table: &str,
    columns: &str,
    page: capcore::model::PageRequest,
    from_row: fn(&MySqlRow) -> Result<T>,
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

/// Reads back one row by id inside a transaction (MySQL has no `UPDATE ... RETURNING`).
pub(crate) async fn fetch_by_id<T>(
    conn: &mut MySqlConnection,
    table: &str,
    columns: &str,
    id: &str,
    from_row: fn(&MySqlRow) -> Result<T>,
) -> Result<T> {
    let row = sqlx::query(AssertSqlSafe(format!("SELECT {columns} FROM {table} WHERE id = ?")))
        .bind(id)
        .fetch_one(conn)
        .await
        .map_err(db)?;
    from_row(&row)
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_escape_the_wildcards_and_the_escape() {
        assert_eq!(super::like_contains(r"100%_a!b\c"), r"%100!%!_a!!b\c%");
        assert_eq!(super::like_escaped("auth_"), "auth!_");
    }
}
