//! API keys, sessions and refresh-token families in SQLite.

use super::{get, get_id};
use crate::error::{db, map};
use async_trait::async_trait;
use capcore::backend::{ApiKeyRepo, SessionRepo};
use capcore::ids::{ApiKeyId, SessionId, UserId};
use capcore::model::{ApiKey, Rotation, Session};
use capcore::permission::PermissionSet;
use capcore::time::Timestamp;
use capcore::{Error, Result};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, SqlitePool};

#[derive(Debug, Clone)]
pub(crate) struct SqliteApiKeys(pub(crate) SqlitePool, pub(crate) SqlitePool);

const KEY_COLUMNS: &str = "id, user_id, name, prefix, secret_hash, permissions, created_at, last_used_at, expires_at";

fn key_from_row(row: &SqliteRow) -> Result<ApiKey> {
    key_from_prefixed_row(row, "")
}

/// Reads an API key whose columns carry `prefix` (for joins).
pub(crate) fn key_from_prefixed_row(row: &SqliteRow, prefix: &str) -> Result<ApiKey> {
    let c = |name: &str| format!("{prefix}{name}");
    Ok(ApiKey {
        id: get_id(row, &c("id"))?,
        user_id: get_id(row, &c("user_id"))?,
        name: get(row, &c("name"))?,
        prefix: get(row, &c("prefix"))?,
        secret_hash: get(row, &c("secret_hash"))?,
        permissions: PermissionSet::from_bits(get::<i64>(row, &c("permissions"))? as u64),
        created_at: Timestamp(get(row, &c("created_at"))?),
        last_used_at: get::<Option<i64>>(row, &c("last_used_at"))?.map(Timestamp),
        expires_at: get::<Option<i64>>(row, &c("expires_at"))?.map(Timestamp),
    })
}

#[async_trait]
impl ApiKeyRepo for SqliteApiKeys {
    async fn create(&self, key: ApiKey) -> Result<ApiKey> {
        sqlx::query(AssertSqlSafe(format!("INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")))
            .bind(key.id.to_string())
            .bind(key.user_id.to_string())
            .bind(&key.name)
            .bind(&key.prefix)
            .bind(&key.secret_hash)
            .bind(key.permissions.bits() as i64)
            .bind(key.created_at.0)
            .bind(key.last_used_at.map(|t| t.0))
            .bind(key.expires_at.map(|t| t.0))
            .execute(&self.1)
            .await
            .map_err(|e| map(e, "user", "an API key with that prefix exists"))?;
        Ok(key)
    }

    async fn find_by_prefix(&self, prefix: &str) -> Result<Option<ApiKey>> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = ?")))
            .bind(prefix)
            .fetch_optional(&self.0)
            .await
            .map_err(db)?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_for_user(&self, user: UserId) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = ? ORDER BY created_at, id"
        )))
        .bind(user.to_string())
        .fetch_all(&self.0)
        .await
        .map_err(db)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn delete(&self, user: UserId, id: ApiKeyId) -> Result<()> {
        let done = sqlx::query("DELETE FROM api_keys WHERE id = ? AND user_id = ?")
            .bind(id.to_string())
            .bind(user.to_string())
            .execute(&self.1)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("api key"));
        }
        Ok(())
    }

    async fn touch(&self, id: ApiKeyId, now: Timestamp) -> Result<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
            .bind(now.0)
            .bind(id.to_string())
            .execute(&self.1)
            .await
            .map_err(db)?;
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct SqliteSessions(pub(crate) SqlitePool, pub(crate) SqlitePool);

const SESSION_COLUMNS: &str = "id, user_id, refresh_hash, generation, revoked, created_at, expires_at, ip";

fn session_from_row(row: &SqliteRow) -> Result<Session> {
    session_from_prefixed_row(row, "")
}

/// Reads a session whose columns carry `prefix` (for joins).
pub(crate) fn session_from_prefixed_row(row: &SqliteRow, prefix: &str) -> Result<Session> {
    let c = |name: &str| format!("{prefix}{name}");
    Ok(Session {
        id: get_id(row, &c("id"))?,
        user_id: get_id(row, &c("user_id"))?,
        refresh_hash: get(row, &c("refresh_hash"))?,
        generation: get(row, &c("generation"))?,
        revoked: get(row, &c("revoked"))?,
        created_at: Timestamp(get(row, &c("created_at"))?),
        expires_at: Timestamp(get(row, &c("expires_at"))?),
        ip: get(row, &c("ip"))?,
    })
}

#[async_trait]
impl SessionRepo for SqliteSessions {
    async fn create(&self, session: Session) -> Result<Session> {
        let mut tx = self.1.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        sqlx::query(AssertSqlSafe(format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")))
            .bind(session.id.to_string())
            .bind(session.user_id.to_string())
            .bind(&session.refresh_hash)
            .bind(session.generation)
            .bind(session.revoked)
            .bind(session.created_at.0)
            .bind(session.expires_at.0)
            .bind(&session.ip)
            .execute(&mut *tx)
            .await
            .map_err(|e| map(e, "user", "session exists"))?;
        sqlx::query("INSERT INTO refresh_tokens (hash, session_id) VALUES (?, ?)")
            .bind(&session.refresh_hash)
            .bind(session.id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| map(e, "session", "refresh token exists"))?;
        tx.commit().await.map_err(db)?;
        Ok(session)
    }

    async fn get(&self, id: SessionId) -> Result<Session> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?")))
            .bind(id.to_string())
            .fetch_one(&self.0)
            .await
            .map_err(|e| map(e, "session", "session exists"))?;
        session_from_row(&row)
    }

    async fn rotate(&self, presented_hash: &str, new_hash: &str, now: Timestamp) -> Result<Rotation> {
        let mut tx = self.1.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = (SELECT session_id FROM refresh_tokens WHERE hash = ?)"
        )))
        .bind(presented_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else { return Ok(Rotation::Invalid) };
        let session = session_from_row(&row)?;
        if session.revoked || session.expires_at <= now {
            return Ok(Rotation::Invalid);
        }
        if session.refresh_hash != presented_hash {
            sqlx::query("UPDATE sessions SET revoked = 1 WHERE id = ?")
                .bind(session.id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            return Ok(Rotation::ReuseDetected { user_id: session.user_id });
        }
        sqlx::query("UPDATE sessions SET refresh_hash = ?, generation = generation + 1 WHERE id = ?")
            .bind(new_hash)
            .bind(session.id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("INSERT INTO refresh_tokens (hash, session_id) VALUES (?, ?)")
            .bind(new_hash)
            .bind(session.id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| map(e, "session", "refresh token exists"))?;
        tx.commit().await.map_err(db)?;
        Ok(Rotation::Rotated(Session {
            refresh_hash: new_hash.to_string(),
            generation: session.generation + 1,
            ..session
        }))
    }

    async fn revoke(&self, id: SessionId) -> Result<()> {
        sqlx::query("UPDATE sessions SET revoked = 1 WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.1)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn revoke_all_for_user(&self, user: UserId) -> Result<u64> {
        let done = sqlx::query("UPDATE sessions SET revoked = 1 WHERE user_id = ? AND revoked = 0")
            .bind(user.to_string())
            .execute(&self.1)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }
}
