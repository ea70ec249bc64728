//! Roles and role membership in SQLite.

use super::{get, get_id, list_table};
use crate::error::{db, map};
use async_trait::async_trait;
use capcore::backend::RoleRepo;
use capcore::ids::{RoleId, UserId};
use capcore::model::{NewRole, Page, PageRequest, Role, RolePatch};
use capcore::permission::PermissionSet;
use capcore::time::Timestamp;
use capcore::{Error, Result};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, SqlitePool};

#[derive(Debug, Clone)]
pub(crate) struct SqliteRoles(pub(crate) SqlitePool, pub(crate) SqlitePool);

const COLUMNS: &str = "id, name, description, permissions, builtin, created_at";
const CONFLICT: &str = "a role with that name already exists";

fn from_row(row: &SqliteRow) -> Result<Role> {
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
impl RoleRepo for SqliteRoles {
    async fn create(&self, new: NewRole, now: Timestamp) -> Result<Role> {
        let id = RoleId::new_random();
        sqlx::query(
            "INSERT INTO roles (id, name, description, permissions, builtin, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id.to_string())
        .bind(&new.name)
        .bind(&new.description)
        .bind(new.permissions.bits() as i64)
        .bind(new.builtin)
        .bind(now.0)
        .execute(&self.1)
        .await
        .map_err(|e| map(e, "role", CONFLICT))?;
        self.get(id).await
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
        let done = sqlx::query(
            "UPDATE roles SET name = COALESCE(?1, name), description = COALESCE(?2, description), \
             permissions = COALESCE(?3, permissions) WHERE id = ?4",
        )
        .bind(patch.name)
        .bind(patch.description)
        .bind(patch.permissions.map(|p| p.bits() as i64))
        .bind(id.to_string())
        .execute(&self.1)
        .await
        .map_err(|e| map(e, "role", CONFLICT))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("role"));
        }
        self.get(id).await
    }

    async fn delete(&self, id: RoleId) -> Result<()> {
        let role = self.get(id).await?;
        if role.builtin {
            return Err(Error::conflict(format!("`{}` is a builtin role and cannot be deleted", role.name)));
        }
        sqlx::query("DELETE FROM roles WHERE id = ? AND builtin = 0")
            .bind(id.to_string())
            .execute(&self.1)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn assign(&self, user: UserId, role: RoleId) -> Result<()> {
        sqlx::query("INSERT OR IGNORE INTO user_roles (user_id, role_id) VALUES (?, ?)")
            .bind(user.to_string())
            .bind(role.to_string())
            .execute(&self.1)
            .await
            .map_err(|e| map(e, "user or role", CONFLICT))?;
        Ok(())
    }

    async fn unassign(&self, user: UserId, role: RoleId) -> Result<()> {
        sqlx::query("DELETE FROM user_roles WHERE user_id = ? AND role_id = ?")
            .bind(user.to_string())
            .bind(role.to_string())
            .execute(&self.1)
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
        let bits: Vec<i64> = sqlx::query_scalar(
            "SELECT r.permissions FROM roles r JOIN user_roles ur ON ur.role_id = r.id WHERE ur.user_id = ?",
        )
        .bind(user.to_string())
        .fetch_all(&self.0)
        .await
        .map_err(db)?;
        Ok(bits.into_iter().fold(PermissionSet::EMPTY, |acc, b| acc.union(PermissionSet::from_bits(b as u64))))
    }
}
