//! Roles and role membership in PostgreSQL.

use super::error::{db, map};
use super::{get, get_id, list_table};
use async_trait::async_trait;
use capcore::backend::RoleRepo;
use capcore::ids::{RoleId, UserId};
use capcore::model::{NewRole, Page, PageRequest, Role, RolePatch};
use capcore::permission::PermissionSet;
use capcore::time::Timestamp;
use capcore::{Error, Result};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgPool};

#[derive(Debug, Clone)]
pub(crate) struct PostgresRoles(pub(crate) PgPool);

const COLUMNS: &str = "id, name, description, permissions, builtin, created_at";
const CONFLICT: &str = "a role with that name already exists";

fn from_row(row: &PgRow) -> Result<Role> {
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
impl RoleRepo for PostgresRoles {
    async fn create(&self, new: NewRole, now: Timestamp) -> Result<Role> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO roles ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
        )))
        .bind(RoleId::new_random().to_string())
        .bind(&new.name)
        .bind(&new.description)
        .bind(new.permissions.bits() as i64)
        .bind(new.builtin)
        .bind(now.0)
        .fetch_one(&self.0)
        .await
        .map_err(|e| map(e, "role", CONFLICT))?;
        from_row(&row)
    }

    async fn get(&self, id: RoleId) -> Result<Role> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM roles WHERE id = $1")))
            .bind(id.to_string())
            .fetch_one(&self.0)
            .await
            .map_err(|e| map(e, "role", CONFLICT))?;
        from_row(&row)
    }

    async fn find_by_name(&self, name: &str) -> Result<Option<Role>> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM roles WHERE name = $1")))
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
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE roles SET name = COALESCE($1, name), description = COALESCE($2, description), \
             permissions = COALESCE($3, permissions) WHERE id = $4 RETURNING {COLUMNS}"
        )))
        .bind(patch.name)
        .bind(patch.description)
        .bind(patch.permissions.map(|p| p.bits() as i64))
        .bind(id.to_string())
        .fetch_optional(&self.0)
        .await
        .map_err(|e| map(e, "role", CONFLICT))?;
        from_row(&row.ok_or_else(|| Error::not_found("role"))?)
    }

    async fn delete(&self, id: RoleId) -> Result<()> {
        // One statement; only when it deleted nothing do we look at why.
        let done = sqlx::query("DELETE FROM roles WHERE id = $1 AND NOT builtin")
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
        sqlx::query("INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(user.to_string())
            .bind(role.to_string())
            .execute(&self.0)
            .await
            .map_err(|e| map(e, "user or role", CONFLICT))?;
        Ok(())
    }

    async fn unassign(&self, user: UserId, role: RoleId) -> Result<()> {
        sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role_id = $2")
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
             JOIN user_roles ur ON ur.role_id = r.id WHERE ur.user_id = $1 ORDER BY r.created_at, r.id",
        )
        .bind(user.to_string())
        .fetch_all(&self.0)
        .await
        .map_err(db)?;
        rows.iter().map(from_row).collect()
    }

    async fn global_permissions(&self, user: UserId) -> Result<PermissionSet> {
        let bits: Option<i64> = sqlx::query_scalar(
            "SELECT bit_or(r.permissions) FROM roles r JOIN user_roles ur ON ur.role_id = r.id WHERE ur.user_id = $1",
        )
        .bind(user.to_string())
        .fetch_one(&self.0)
        .await
        .map_err(db)?;
        Ok(PermissionSet::from_bits(bits.unwrap_or(0) as u64))
    }
}
