//! API keys, sessions and refresh-token families in MongoDB: every refresh token ever issued is
//! a document of `refresh_tokens` (keyed by its hash) naming its session, and a rotation is a
//! conditional update on the session's current hash and generation.

use super::error::{db, map};
use super::fields::{boolean, id, int, opt, opt_timestamp, text, timestamp};
use super::{API_KEYS, REFRESH_TOKENS, SESSIONS, Store, USERS, by_id, exists, find_all};
use async_trait::async_trait;
use capcore::backend::{ApiKeyRepo, SessionRepo};
use capcore::ids::{ApiKeyId, SessionId, UserId};
use capcore::model::{ApiKey, Rotation, Session};
use capcore::permission::PermissionSet;
use capcore::time::Timestamp;
use capcore::{Error, Result};
use mongodb::bson::{Document, doc};

#[derive(Debug, Clone)]
pub(crate) struct MongoApiKeys(pub(crate) Store);

fn key_from_doc(doc: &Document) -> Result<ApiKey> {
    Ok(ApiKey {
        id: id(doc, "_id")?,
        user_id: id(doc, "user_id")?,
        name: text(doc, "name")?,
        prefix: text(doc, "prefix")?,
        secret_hash: text(doc, "secret_hash")?,
        permissions: PermissionSet::from_bits(int(doc, "permissions")? as u64),
        created_at: timestamp(doc, "created_at")?,
        last_used_at: opt_timestamp(doc, "last_used_at")?,
        expires_at: opt_timestamp(doc, "expires_at")?,
    })
}

#[async_trait]
impl ApiKeyRepo for MongoApiKeys {
    async fn create(&self, key: ApiKey) -> Result<ApiKey> {
        if !exists(&self.0.coll(USERS), key.user_id.to_string()).await? {
            return Err(Error::conflict("user does not exist"));
        }
        let doc = doc! {
            "_id": key.id.to_string(),
            "user_id": key.user_id.to_string(),
            "name": &key.name,
            "prefix": &key.prefix,
            "secret_hash": &key.secret_hash,
            "permissions": key.permissions.bits() as i64,
            "created_at": key.created_at.0,
            "last_used_at": opt(key.last_used_at.map(|t| t.0)),
            "expires_at": opt(key.expires_at.map(|t| t.0)),
        };
        self.0.coll(API_KEYS).insert_one(doc).await.map_err(|e| map(e, "an API key with that prefix exists"))?;
        Ok(key)
    }

    async fn find_by_prefix(&self, prefix: &str) -> Result<Option<ApiKey>> {
        let found = self.0.coll(API_KEYS).find_one(doc! { "prefix": prefix }).await.map_err(db)?;
        found.as_ref().map(key_from_doc).transpose()
    }

    async fn list_for_user(&self, user: UserId) -> Result<Vec<ApiKey>> {
        let docs =
            find_all(&self.0.coll(API_KEYS), doc! { "user_id": user.to_string() }, doc! { "created_at": 1, "_id": 1 })
                .await?;
        docs.iter().map(key_from_doc).collect()
    }

    async fn delete(&self, user: UserId, id: ApiKeyId) -> Result<()> {
        let done = self
            .0
            .coll(API_KEYS)
            .delete_one(doc! { "_id": id.to_string(), "user_id": user.to_string() })
            .await
            .map_err(db)?;
        if done.deleted_count == 0 {
            return Err(Error::not_found("api key"));
        }
        Ok(())
    }

    async fn touch(&self, id: ApiKeyId, now: Timestamp) -> Result<()> {
        self.0
            .coll(API_KEYS)
            .update_one(doc! { "_id": id.to_string() }, doc! { "$set": { "last_used_at": now.0 } })
            .await
            .map_err(db)?;
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct MongoSessions(pub(crate) Store);

fn session_from_doc(doc: &Document) -> Result<Session> {
    Ok(Session {
        id: id(doc, "_id")?,
        user_id: id(doc, "user_id")?,
        refresh_hash: text(doc, "refresh_hash")?,
        generation: int(doc, "generation")?,
        revoked: boolean(doc, "revoked")?,
        created_at: timestamp(doc, "created_at")?,
        expires_at: timestamp(doc, "expires_at")?,
        ip: text(doc, "ip")?,
    })
}

#[async_trait]
impl SessionRepo for MongoSessions {
    async fn create(&self, session: Session) -> Result<Session> {
        if !exists(&self.0.coll(USERS), session.user_id.to_string()).await? {
            return Err(Error::conflict("user does not exist"));
        }
        let doc = doc! {
            "_id": session.id.to_string(),
            "user_id": session.user_id.to_string(),
            "refresh_hash": &session.refresh_hash,
            "generation": session.generation,
            "revoked": session.revoked,
            "created_at": session.created_at.0,
            "expires_at": session.expires_at.0,
            "ip": &session.ip,
        };
        self.0.coll(SESSIONS).insert_one(doc).await.map_err(|e| map(e, "session exists"))?;
        let token = doc! { "_id": &session.refresh_hash, "session_id": session.id.to_string() };
        if let Err(e) = self.0.coll(REFRESH_TOKENS).insert_one(token).await {
            self.0.coll(SESSIONS).delete_one(doc! { "_id": session.id.to_string() }).await.map_err(db)?;
            return Err(map(e, "refresh token exists"));
        }
        Ok(session)
    }

    async fn get(&self, id: SessionId) -> Result<Session> {
        session_from_doc(
            &by_id(&self.0.coll(SESSIONS), id.to_string()).await?.ok_or_else(|| Error::not_found("session"))?,
        )
    }

    async fn rotate(&self, presented_hash: &str, new_hash: &str, now: Timestamp) -> Result<Rotation> {
        let Some(token) = by_id(&self.0.coll(REFRESH_TOKENS), presented_hash).await? else {
            return Ok(Rotation::Invalid);
        };
        let session_id = text(&token, "session_id")?;
        let sessions = self.0.coll(SESSIONS);
        loop {
            let Some(doc) = by_id(&sessions, session_id.as_str()).await? else { return Ok(Rotation::Invalid) };
            let session = session_from_doc(&doc)?;
            if session.revoked || session.expires_at <= now {
                return Ok(Rotation::Invalid);
            }
            if session.refresh_hash != presented_hash {
                sessions
                    .update_one(doc! { "_id": session_id.as_str() }, doc! { "$set": { "revoked": true } })
                    .await
                    .map_err(db)?;
                return Ok(Rotation::ReuseDetected { user_id: session.user_id });
            }
            // Compare-and-set on what was read: of two presenters of one token, one matches; the
            // other reads the family again and finds its token superseded.
            let current = doc! {
                "_id": session_id.as_str(),
                "refresh_hash": presented_hash,
                "generation": session.generation,
                "revoked": { "$ne": true },
            };
            let rotate = doc! { "$set": { "refresh_hash": new_hash, "generation": session.generation + 1 } };
            if sessions.update_one(current, rotate).await.map_err(db)?.matched_count == 0 {
                continue;
            }
            let token = doc! { "_id": new_hash, "session_id": session_id.as_str() };
            self.0.coll(REFRESH_TOKENS).insert_one(token).await.map_err(|e| map(e, "refresh token exists"))?;
            return Ok(Rotation::Rotated(Session {
                refresh_hash: new_hash.to_string(),
                generation: session.generation + 1,
                ..session
            }));
        }
    }

    async fn revoke(&self, id: SessionId) -> Result<()> {
        self.0
            .coll(SESSIONS)
            .update_one(doc! { "_id": id.to_string() }, doc! { "$set": { "revoked": true } })
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn revoke_all_for_user(&self, user: UserId) -> Result<u64> {
        let done = self
            .0
            .coll(SESSIONS)
            .update_many(
                doc! { "user_id": user.to_string(), "revoked": { "$ne": true } },
                doc! { "$set": { "revoked": true } },
            )
            .await
            .map_err(db)?;
        Ok(done.matched_count)
    }
}
