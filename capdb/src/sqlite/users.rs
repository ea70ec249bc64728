//! Users in SQLite.

use super::{get, get_id, like_contains, to_page};
use crate::error::{db, map};
use async_trait::async_trait;
use capcore::backend::UserRepo;
use capcore::ids::UserId;
use capcore::model::{NewUser, Page, PageRequest, User, UserPatch};
use capcore::time::Timestamp;
use capcore::{Error, Result};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, SqlitePool};

#[derive(Debug, Clone)]
pub(crate) struct SqliteUsers(pub(crate) SqlitePool, pub(crate) SqlitePool);

pub(crate) const COLUMNS: &str = "id, username, email, password_hash, totp_secret, disabled, created_at, updated_at";

pub(crate) fn from_row(row: &SqliteRow) -> Result<User> {
    Ok(User {
        id: get_id(row, "id")?,
        username: get(row, "username")?,
        email: get(row, "email")?,
        password_hash: get(row, "password_hash")?,
        totp_secret: get(row, "totp_secret")?,
        disabled: get(row, "disabled")?,
        created_at: Timestamp(get(row, "created_at")?),
        updated_at: Timestamp(get(row, "updated_at")?),
    })
}

const CONFLICT: &str = "a user with that username or email already exists";

#[async_trait]
impl UserRepo for SqliteUsers {
    async fn create(&self, new: NewUser, now: Timestamp) -> Result<User> {
        let id = UserId::new_random();
        sqlx::query(
            "INSERT INTO users (id, username, email, password_hash, totp_secret, disabled, created_at, updated_at) \
             VALUES (?, ?, ?, ?, NULL, 0, ?, ?)",
        )
        .bind(id.to_string())
        .bind(&new.username)
        .bind(new.email.to_lowercase())
        .bind(&new.password_hash)
        .bind(now.0)
        .bind(now.0)
        .execute(&self.1)
        .await
        .map_err(|e| map(e, "user", CONFLICT))?;
        self.get(id).await
    }

    async fn get(&self, id: UserId) -> Result<User> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM users WHERE id = ?")))
            .bind(id.to_string())
            .fetch_one(&self.0)
            .await
            .map_err(|e| map(e, "user", CONFLICT))?;
        from_row(&row)
    }

    async fn find_by_email(&self, email: &str) -> Result<Option<User>> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM users WHERE email = ?")))
            .bind(email.to_lowercase())
            .fetch_optional(&self.0)
            .await
            .map_err(db)?;
        row.as_ref().map(from_row).transpose()
    }

    async fn list(&self, query: Option<&str>, page: PageRequest) -> Result<Page<User>> {
        let pattern = like_contains(&query.unwrap_or_default().to_lowercase());
        let filter = "WHERE lower(username) LIKE ?1 ESCAPE '\\' OR email LIKE ?1 ESCAPE '\\'";
        let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM users {filter}")))
            .bind(&pattern)
            .fetch_one(&self.0)
            .await
            .map_err(db)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users {filter} ORDER BY created_at, id LIMIT ?2 OFFSET ?3"
        )))
        .bind(&pattern)
        .bind(i64::from(page.per_page))
        .bind(page.offset() as i64)
        .fetch_all(&self.0)
        .await
        .map_err(db)?;
        to_page(&rows, total, page, from_row)
    }

    async fn update(&self, id: UserId, patch: UserPatch, now: Timestamp) -> Result<User> {
        // One statement that touches only the patched columns: a concurrent change to another
        // column (an admin disabling the account while its owner edits 2FA) is never undone.
        let done = sqlx::query(
            "UPDATE users SET username = COALESCE(?1, username), email = COALESCE(?2, email), \
             password_hash = COALESCE(?3, password_hash), \
             totp_secret = CASE WHEN ?4 THEN ?5 ELSE totp_secret END, \
             disabled = COALESCE(?6, disabled), updated_at = ?7 WHERE id = ?8",
        )
        .bind(patch.username)
        .bind(patch.email.map(|e| e.to_lowercase()))
        .bind(patch.password_hash)
        .bind(patch.totp_secret.is_some())
        .bind(patch.totp_secret.flatten())
        .bind(patch.disabled)
        .bind(now.0)
        .bind(id.to_string())
        .execute(&self.1)
        .await
        .map_err(|e| map(e, "user", CONFLICT))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("user"));
        }
        self.get(id).await
    }

    async fn delete(&self, id: UserId) -> Result<()> {
        let mut tx = self.1.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let owned: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM servers WHERE owner_id = ?")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        if owned > 0 {
            return Err(Error::conflict(format!(
                "the user still owns {owned} server(s); delete or transfer them first"
            )));
        }
        let done =
            sqlx::query("DELETE FROM users WHERE id = ?").bind(id.to_string()).execute(&mut *tx).await.map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("user"));
        }
        tx.commit().await.map_err(db)
    }

    async fn count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.0).await.map_err(db)?;
        Ok(n as u64)
    }
}
