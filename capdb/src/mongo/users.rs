//! Users in MongoDB; deleting one removes what hangs off them, one collection after another.

use super::error::{db, map};
use super::fields::{boolean, id, opt, opt_text, text, timestamp};
use super::{
    API_KEYS, REFRESH_TOKENS, SERVERS, SESSIONS, SUBUSERS, Store, USER_ROLES, USERS, by_id, collect,
    contains_ignoring_case, page_of,
};
use async_trait::async_trait;
use capcore::backend::UserRepo;
use capcore::ids::UserId;
use capcore::model::{NewUser, Page, PageRequest, User, UserPatch};
use capcore::time::Timestamp;
use capcore::{Error, Result};
use mongodb::bson::{Bson, Document, doc};

#[derive(Debug, Clone)]
pub(crate) struct MongoUsers(pub(crate) Store);

const CONFLICT: &str = "a user with that username or email already exists";

pub(crate) fn from_doc(doc: &Document) -> Result<User> {
    Ok(User {
        id: id(doc, "_id")?,
        username: text(doc, "username")?,
        email: text(doc, "email")?,
        password_hash: text(doc, "password_hash")?,
        totp_secret: opt_text(doc, "totp_secret")?,
        disabled: boolean(doc, "disabled")?,
        created_at: timestamp(doc, "created_at")?,
        updated_at: timestamp(doc, "updated_at")?,
    })
}

fn to_doc(user: &User) -> Document {
    doc! {
        "_id": user.id.to_string(),
        "username": &user.username,
        "email": &user.email,
        "password_hash": &user.password_hash,
        "totp_secret": opt(user.totp_secret.clone()),
        "disabled": user.disabled,
        "created_at": user.created_at.0,
        "updated_at": user.updated_at.0,
    }
}

#[async_trait]
impl UserRepo for MongoUsers {
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
        self.0.coll(USERS).insert_one(to_doc(&user)).await.map_err(|e| map(e, CONFLICT))?;
        Ok(user)
    }

    async fn get(&self, id: UserId) -> Result<User> {
        from_doc(&by_id(&self.0.coll(USERS), id.to_string()).await?.ok_or_else(|| Error::not_found("user"))?)
    }

    async fn find_by_email(&self, email: &str) -> Result<Option<User>> {
        let found = self.0.coll(USERS).find_one(doc! { "email": email.to_lowercase() }).await.map_err(db)?;
        found.as_ref().map(from_doc).transpose()
    }

    async fn list(&self, query: Option<&str>, page: PageRequest) -> Result<Page<User>> {
        let filter = match query {
            Some(q) => doc! { "$or": [
                { "username": contains_ignoring_case(q) },
                { "email": contains_ignoring_case(q) },
            ] },
            None => doc! {},
        };
        page_of(&self.0.coll(USERS), filter, doc! { "created_at": 1, "_id": 1 }, page, from_doc).await
    }

    async fn update(&self, id: UserId, patch: UserPatch, now: Timestamp) -> Result<User> {
        // Only the patched fields: a concurrent change to another (an admin disabling the
        // account while its owner edits 2FA) is never undone.
        let mut set = doc! { "updated_at": now.0 };
        if let Some(username) = patch.username {
            set.insert("username", username);
        }
        if let Some(email) = patch.email {
            set.insert("email", email.to_lowercase());
        }
        if let Some(password_hash) = patch.password_hash {
            set.insert("password_hash", password_hash);
        }
        if let Some(totp_secret) = patch.totp_secret {
            set.insert("totp_secret", opt(totp_secret));
        }
        if let Some(disabled) = patch.disabled {
            set.insert("disabled", disabled);
        }
        // `update_one`, not `findAndModify`: some wire-compatible servers drop a duplicate key
        // error of the latter.
        let done = self
            .0
            .coll(USERS)
            .update_one(doc! { "_id": id.to_string() }, doc! { "$set": set })
            .await
            .map_err(|e| map(e, CONFLICT))?;
        if done.matched_count == 0 {
            return Err(Error::not_found("user"));
        }
        self.get(id).await
    }

    async fn delete(&self, id: UserId) -> Result<()> {
        let key = id.to_string();
        if by_id(&self.0.coll(USERS), key.as_str()).await?.is_none() {
            return Err(Error::not_found("user"));
        }
        let owned = self.0.coll(SERVERS).count_documents(doc! { "owner_id": key.as_str() }).await.map_err(db)?;
        if owned > 0 {
            return Err(Error::conflict(format!(
                "the user still owns {owned} server(s); delete or transfer them first"
            )));
        }
        // What hangs off the user first: a panel dying halfway leaves the user with less, not
        // grants and keys of nobody.
        delete_dependents(&self.0, &key).await?;
        let done = self.0.coll(USERS).delete_one(doc! { "_id": key.as_str() }).await.map_err(db)?;
        if done.deleted_count == 0 {
            return Err(Error::not_found("user"));
        }
        Ok(())
    }

    async fn count(&self) -> Result<u64> {
        self.0.coll(USERS).count_documents(doc! {}).await.map_err(db)
    }
}

/// Removes a user's role memberships, subuser grants, API keys, sessions and their
/// refresh tokens.
async fn delete_dependents(store: &Store, user: &str) -> Result<()> {
    let by_user = doc! { "user_id": user };
    store.coll(USER_ROLES).delete_many(by_user.clone()).await.map_err(db)?;
    store.coll(SUBUSERS).delete_many(by_user.clone()).await.map_err(db)?;
    store.coll(API_KEYS).delete_many(by_user.clone()).await.map_err(db)?;
    let sessions =
        collect(store.coll(SESSIONS).find(by_user.clone()).projection(doc! { "_id": 1 }).await.map_err(db)?).await?;
    let session_ids: Vec<Bson> = sessions.iter().filter_map(|s| s.get("_id").cloned()).collect();
    if !session_ids.is_empty() {
        store.coll(REFRESH_TOKENS).delete_many(doc! { "session_id": { "$in": session_ids } }).await.map_err(db)?;
    }
    store.coll(SESSIONS).delete_many(by_user).await.map_err(db)?;
    Ok(())
}
