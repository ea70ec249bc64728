//! Roles and role membership in MongoDB: memberships are documents of `user_roles`, keyed by
//! `"<user id>/<role id>"`.

use super::error::{db, is_duplicate_key, map};
use super::fields::{boolean, id, int, text, timestamp};
use super::{ROLES, Store, USER_ROLES, USERS, by_id, exists, find_all, page_of};
use async_trait::async_trait;
use capcore::backend::RoleRepo;
use capcore::ids::{RoleId, UserId};
use capcore::model::{NewRole, Page, PageRequest, Role, RolePatch};
use capcore::permission::PermissionSet;
use capcore::time::Timestamp;
use capcore::{Error, Result};
use mongodb::bson::{Bson, Document, doc};

#[derive(Debug, Clone)]
pub(crate) struct MongoRoles(pub(crate) Store);

const CONFLICT: &str = "a role with that name already exists";

fn from_doc(doc: &Document) -> Result<Role> {
    Ok(Role {
        id: id(doc, "_id")?,
        name: text(doc, "name")?,
        description: text(doc, "description")?,
        permissions: PermissionSet::from_bits(int(doc, "permissions")? as u64),
        builtin: boolean(doc, "builtin")?,
        created_at: timestamp(doc, "created_at")?,
    })
}

/// The `_id` of a membership.
pub(crate) fn membership_key(user: &str, role: &str) -> String {
    format!("{user}/{role}")
}

impl MongoRoles {
    /// The roles `user` holds, in creation order.
    async fn role_docs_of(&self, user: UserId) -> Result<Vec<Document>> {
        let memberships =
            find_all(&self.0.coll(USER_ROLES), doc! { "user_id": user.to_string() }, doc! { "_id": 1 }).await?;
        let role_ids: Vec<Bson> = memberships.iter().filter_map(|m| m.get("role_id").cloned()).collect();
        if role_ids.is_empty() {
            return Ok(Vec::new());
        }
        find_all(&self.0.coll(ROLES), doc! { "_id": { "$in": role_ids } }, doc! { "created_at": 1, "_id": 1 }).await
    }
}

#[async_trait]
impl RoleRepo for MongoRoles {
    async fn create(&self, new: NewRole, now: Timestamp) -> Result<Role> {
        let role = Role {
            id: RoleId::new_random(),
            name: new.name,
            description: new.description,
            permissions: new.permissions,
            builtin: new.builtin,
            created_at: now,
        };
        let doc = doc! {
            "_id": role.id.to_string(),
            "name": &role.name,
            "description": &role.description,
            "permissions": role.permissions.bits() as i64,
            "builtin": role.builtin,
            "created_at": now.0,
        };
        self.0.coll(ROLES).insert_one(doc).await.map_err(|e| map(e, CONFLICT))?;
        Ok(role)
    }

    async fn get(&self, id: RoleId) -> Result<Role> {
        from_doc(&by_id(&self.0.coll(ROLES), id.to_string()).await?.ok_or_else(|| Error::not_found("role"))?)
    }

    async fn find_by_name(&self, name: &str) -> Result<Option<Role>> {
        self.0.coll(ROLES).find_one(doc! { "name": name }).await.map_err(db)?.as_ref().map(from_doc).transpose()
    }

    async fn list(&self, page: PageRequest) -> Result<Page<Role>> {
        page_of(&self.0.coll(ROLES), doc! {}, doc! { "created_at": 1, "_id": 1 }, page, from_doc).await
    }

    async fn update(&self, id: RoleId, patch: RolePatch) -> Result<Role> {
        let mut set = Document::new();
        if let Some(name) = patch.name {
            set.insert("name", name);
        }
        if let Some(description) = patch.description {
            set.insert("description", description);
        }
        if let Some(permissions) = patch.permissions {
            set.insert("permissions", permissions.bits() as i64);
        }
        if !set.is_empty() {
            let done = self
                .0
                .coll(ROLES)
                .update_one(doc! { "_id": id.to_string() }, doc! { "$set": set })
                .await
                .map_err(|e| map(e, CONFLICT))?;
            if done.matched_count == 0 {
                return Err(Error::not_found("role"));
            }
        }
        self.get(id).await
    }

    async fn delete(&self, id: RoleId) -> Result<()> {
        let role = self.get(id).await?;
        if role.builtin {
            return Err(Error::conflict(format!("`{}` is a builtin role and cannot be deleted", role.name)));
        }
        // The memberships first: a panel dying halfway leaves a role without members.
        let key = id.to_string();
        self.0.coll(USER_ROLES).delete_many(doc! { "role_id": key.as_str() }).await.map_err(db)?;
        let done = self.0.coll(ROLES).delete_one(doc! { "_id": key, "builtin": { "$ne": true } }).await.map_err(db)?;
        if done.deleted_count == 0 {
            return Err(Error::not_found("role"));
        }
        Ok(())
    }

    async fn assign(&self, user: UserId, role: RoleId) -> Result<()> {
        let (user, role) = (user.to_string(), role.to_string());
        if !exists(&self.0.coll(USERS), user.as_str()).await? || !exists(&self.0.coll(ROLES), role.as_str()).await? {
            return Err(Error::conflict("user or role does not exist"));
        }
        let membership = doc! { "_id": membership_key(&user, &role), "user_id": user, "role_id": role };
        match self.0.coll(USER_ROLES).insert_one(membership).await {
            Ok(_) => Ok(()),
            // Held already: assigning is idempotent.
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(db(e)),
        }
    }

    async fn unassign(&self, user: UserId, role: RoleId) -> Result<()> {
        let key = membership_key(&user.to_string(), &role.to_string());
        self.0.coll(USER_ROLES).delete_one(doc! { "_id": key }).await.map_err(db)?;
        Ok(())
    }

    async fn roles_of(&self, user: UserId) -> Result<Vec<Role>> {
        self.role_docs_of(user).await?.iter().map(from_doc).collect()
    }

    /// Two reads (memberships, then the roles), not one: see the module docs on snapshots.
    async fn global_permissions(&self, user: UserId) -> Result<PermissionSet> {
        let mut bits = 0u64;
        for role in self.role_docs_of(user).await? {
            bits |= int(&role, "permissions")? as u64;
        }
        Ok(PermissionSet::from_bits(bits))
    }
}
