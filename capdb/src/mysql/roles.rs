//! Roles and role membership in MySQL/MariaDB.

use super::error::{db, map};
use super::{fetch_by_id, get, get_id, list_table};
use async_trait::async_trait;
use capcore::backend::RoleRepo;
use capcore::ids::{RoleId, UserId};
use capcore::model::{NewRole, Page, PageRequest, Role, RolePatch};
use capcore::permission::PermissionSet;
use capcore::time::Timestamp;
use capcore::{Error, Result};
use sqlx::mysql::MySqlRow;
use sqlx::{AssertSqlSafe, MySqlPool};

#[derive(Debug, Clone)]
pub(crate) struct MysqlRoles(pub(crate) MySqlPool);

const COLUMNS: &str = "id, name, description, permissions, builtin, created_at";
const CONFLICT: &str = "a role with that name already exists";

fn from_row(row: &MySqlRow) -> Result<Role> {
    Ok(Role {
        id: get_id(row, "id")?,
        name: get(row, "name")?,
        description: get(row, "description")?,
        permissions: PermissionSet::from_bits(get::<i64>(row, "permissions")? as u64),
        builtin: get(row, "builtin")?,
        created_at: Timestamp(get(row, "created_at")?),
    })
}

#[async_trait]
impl RoleRepo for MysqlRoles {
    async fn create(&self, new: NewRole, now: Timestamp) -> Result<Role> {
        let role = Role {
            id: RoleId::new_random(),
            name: new.name,
            description: new.description,
            permissions: new.permissions,
            builtin: new.builtin,
            created_at: now,
        };
        sqlx::query(AssertSqlSafe(format!("INSERT INTO roles ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)")))
            .bind(role.id.to_string())
            .bind(&role.name)
            .bind(&role.description)
            .bind(role.permissions.bits() as i64)
            .bind(role.builtin)
            .bind(now.0)
            .execute(&self.0)
            .await
            .map_err(|e| map(e, "role", CONFLICT))?;
        Ok(role)
    }

    async fn get(&self, id: RoleId) -> Result<Role> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM roles WHERE id = ?")))
            .bind(id.to_string())
            .fetch_one(&self.0)
            .await
            .map_err(|e| map(e, "role", CONFLICT))?;
        from_row(&row)
    }

    async fn find_by_name(&self, name: &str) -> Result<Option<Role>> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM roles WHERE name = ?")))
            .bind(name)
            .fetch_optional(&self.0)
            .await
            .map_err(db)?;
        row.as_ref().map(from_row).transpose()
    }

    async fn list(&self, page: PageRequest) -> Result<Page<Role>> {
        list_table(&self.0, "roles", COLUMNS, page, from_row).await
    }

    async fn update(&self, id: RoleId, patch: RolePatch) -> Result<Role> {
        let mut tx = self.0.begin().await.map_err(db)?;
        let done = sqlx::query(
            "UPDATE roles SET name = COALESCE(?, name), description = COALESCE(?, description), \
             permissions = COALESCE(?, permissions) WHERE id = ?",
        )
        .bind(patch.name)
        .bind(patch.description)
        .bind(patch.permissions.map(|p| p.bits() as i64))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| map(e, "role", CONFLICT))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("role"));
        }
        let role = fetch_by_id(&mut tx, "roles", COLUMNS, &id.to_string(), from_row).await?;
        tx.commit().await.map_err(db)?;
        Ok(role)
    }

    async fn delete(&self, id: RoleId) -> Result<()> {
        // One statement; only when it deleted nothing do we look at why.
        let done = sqlx::query("DELETE FROM roles WHERE id = ? AND NOT builtin")
            .bind(id.to_string())
            .execute(&self.0)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            let role = self.get(id).await?;
            return Err(Error::conflict(format!("`{}` is a builtin role and cannot be deleted", role.name)));
        }
        Ok(())
    }

    async fn assign(&self, user: UserId, role: RoleId) -> Result<()> {
        // Not `INSERT IGNORE`, which would also turn a missing user or role into a warning.
        sqlx::query(
            "INSERT INTO user_roles (user_id, role_id) VALUES (?, ?) ON DUPLICATE KEY UPDATE role_id = role_id",
        )
        .bind(user.to_string())
        .bind(role.to_string())
        .execute(&self.0)
        .await
        .map_err(|e| map(e, "user or role", CONFLICT))?;
        Ok(())
    }

    async fn unassign(&self, user: UserId, role: RoleId) -> Result<()> {
        sqlx::query("DELETE FROM user_roles WHERE user_id = ? AND role_id = ?")
            .bind(user.to_string())
            .bind(role.to_string())
            .execute(&self.0)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn roles_of(&self, user: UserId) -> Result<Vec<Role>> {
        let rows = sqlx::query(
            "SELECT r.id, r.name, r.description, r.permissions, r.builtin, r.created_at FROM roles r \
             JOIN user_roles ur ON ur.role_id = r.id WHERE ur.user_id = ? ORDER BY r.created_at, r.id",
        )
        .bind(user.to_string())
        .fetch_all(&self.0)
        .await
        .map_err(db)?;
        rows.iter().map(from_row).collect()
    }

    async fn global_permissions(&self, user: UserId) -> Result<PermissionSet> {
        // `BIT_OR` is unsigned (0 without rows); the cast keeps its 64 bits in a signed BIGINT.
        let bits: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(BIT_OR(r.permissions), 0) AS SIGNED) FROM roles r \
             JOIN user_roles ur ON ur.role_id = r.id WHERE ur.user_id = ?",
        )
        .bind(user.to_string())
        .fetch_one(&self.0)
        .await
        .map_err(db)?;
        Ok(PermissionSet::from_bits(bits as u64))
    }
}
