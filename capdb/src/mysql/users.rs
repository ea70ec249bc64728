//! Users in MySQL/MariaDB.

use super::error::{db, map};
use super::{fetch_by_id, get, get_id, like_contains, to_page};
use async_trait::async_trait;
use capcore::backend::UserRepo;
use capcore::ids::UserId;
use capcore::model::{NewUser, Page, PageRequest, User, UserPatch};
use capcore::time::Timestamp;
use capcore::{Error, Result};
use sqlx::mysql::MySqlRow;
use sqlx::{AssertSqlSafe, MySqlPool};

#[derive(Debug, Clone)]
pub(crate) struct MysqlUsers(pub(crate) MySqlPool);

pub(crate) const COLUMNS: &str = "id, username, email, password_hash, totp_secret, disabled, created_at, updated_at";

pub(crate) fn from_row(row: &MySqlRow) -> Result<User> {
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
impl UserRepo for MysqlUsers {
    async fn create(&self, new: NewUser, now: Timestamp) -> Result<User> {
        let user = User {
            id: UserId::new_random(),
            username: new.username,
            email: new.email.to_lowercase(),
            password_hash: new.password_hash,
            totp_secret: None,
            disabled: false,
            created_at: now,
            updated_at: now,
        };
        sqlx::query(AssertSqlSafe(format!("INSERT INTO users ({COLUMNS}) VALUES (?, ?, ?, ?, NULL, FALSE, ?, ?)")))
            .bind(user.id.to_string())
            .bind(&user.username)
            .bind(&user.email)
            .bind(&user.password_hash)
            .bind(now.0)
            .bind(now.0)
            .execute(&self.0)
            .await
            .map_err(|e| map(e, "user", CONFLICT))?;
        Ok(user)
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
        let filter = "WHERE LOWER(username) LIKE ? ESCAPE '!' OR LOWER(email) LIKE ? ESCAPE '!'";
        let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM users {filter}")))
            .bind(&pattern)
            .bind(&pattern)
            .fetch_one(&self.0)
            .await
            .map_err(db)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users {filter} ORDER BY created_at, id LIMIT ? OFFSET ?"
        )))
        .bind(&pattern)
        .bind(&pattern)
        .bind(i64::from(page.per_page))
        .bind(page.offset() as i64)
        .fetch_all(&self.0)
        .await
        .map_err(db)?;
        to_page(&rows, total, page, from_row)
    }

    async fn update(&self, id: UserId, patch: UserPatch, now: Timestamp) -> Result<User> {
        let mut tx = self.0.begin().await.map_err(db)?;
        // One statement that touches only the patched columns: a concurrent change to another
        // column (an admin disabling the account while its owner edits 2FA) is never undone.
        let done = sqlx::query(
            "UPDATE users SET username = COALESCE(?, username), email = COALESCE(?, email), \
             password_hash = COALESCE(?, password_hash), \
             totp_secret = CASE WHEN ? THEN ? ELSE totp_secret END, \
             disabled = COALESCE(?, disabled), updated_at = ? WHERE id = ?",
        )
        .bind(patch.username)
        .bind(patch.email.map(|e| e.to_lowercase()))
        .bind(patch.password_hash)
        .bind(patch.totp_secret.is_some())
        .bind(patch.totp_secret.flatten())
        .bind(patch.disabled)
        .bind(now.0)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| map(e, "user", CONFLICT))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("user"));
        }
        // The row stays locked by the update until commit, so this reads what it wrote.
        let user = fetch_by_id(&mut tx, "users", COLUMNS, &id.to_string(), from_row).await?;
        tx.commit().await.map_err(db)?;
        Ok(user)
    }

    async fn delete(&self, id: UserId) -> Result<()> {
        let mut tx = self.0.begin().await.map_err(db)?;
        // Locks the user, so no server can be given to them until this is decided (a server's
        // foreign key check waits for the lock).
        let found: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE id = ? FOR UPDATE")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if found.is_none() {
            return Err(Error::not_found("user"));
        }
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
        sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| map(e, "user", CONFLICT))?;
        tx.commit().await.map_err(db)
    }

    async fn count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.0).await.map_err(db)?;
        Ok(n as u64)
    }
}
