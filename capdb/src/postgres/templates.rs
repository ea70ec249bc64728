//! Templates in PostgreSQL: the spec is stored as JSONB, the name as a unique column.

use super::error::{db, map};
use super::{get, get_id, get_json, list_table};
use async_trait::async_trait;
use capcore::backend::TemplateRepo;
use capcore::ids::TemplateId;
use capcore::model::{Page, PageRequest};
use capcore::template::{Template, TemplateSpec};
use capcore::time::Timestamp;
use capcore::{Error, Result};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgPool};

#[derive(Debug, Clone)]
pub(crate) struct PostgresTemplates(pub(crate) PgPool);

const COLUMNS: &str = "id, spec::text AS spec, created_at, updated_at";
const CONFLICT: &str = "a template with that name already exists";

fn from_row(row: &PgRow) -> Result<Template> {
    Ok(Template {
        id: get_id(row, "id")?,
        spec: get_json(row, "spec", "template")?,
        created_at: Timestamp(get(row, "created_at")?),
        updated_at: Timestamp(get(row, "updated_at")?),
    })
}

fn spec_json(spec: &TemplateSpec) -> Result<String> {
    serde_json::to_string(spec).map_err(|e| Error::internal("cannot encode template", e))
}

#[async_trait]
impl TemplateRepo for PostgresTemplates {
    async fn create(&self, spec: TemplateSpec, now: Timestamp) -> Result<Template> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO templates (id, name, spec, created_at, updated_at) VALUES ($1, $2, $3::jsonb, $4, $4) \
             RETURNING {COLUMNS}"
        )))
        .bind(TemplateId::new_random().to_string())
        .bind(&spec.name)
        .bind(spec_json(&spec)?)
        .bind(now.0)
        .fetch_one(&self.0)
        .await
        .map_err(|e| map(e, "template", CONFLICT))?;
        from_row(&row)
    }

    async fn get(&self, id: TemplateId) -> Result<Template> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM templates WHERE id = $1")))
            .bind(id.to_string())
            .fetch_one(&self.0)
            .await
            .map_err(|e| map(e, "template", CONFLICT))?;
        from_row(&row)
    }

    async fn list(&self, page: PageRequest) -> Result<Page<Template>> {
        list_table(&self.0, "templates", COLUMNS, page, from_row).await
    }

    async fn update(&self, id: TemplateId, spec: TemplateSpec, now: Timestamp) -> Result<Template> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE templates SET name = $1, spec = $2::jsonb, updated_at = $3 WHERE id = $4 RETURNING {COLUMNS}"
        )))
        .bind(&spec.name)
        .bind(spec_json(&spec)?)
        .bind(now.0)
        .bind(id.to_string())
        .fetch_optional(&self.0)
        .await
        .map_err(|e| map(e, "template", CONFLICT))?;
        from_row(&row.ok_or_else(|| Error::not_found("template"))?)
    }

    async fn delete(&self, id: TemplateId) -> Result<()> {
        let mut tx = self.0.begin().await.map_err(db)?;
        // Locked, so no new server can use it (its foreign key waits) until this is decided.
        let found: Option<i64> = sqlx::query_scalar("SELECT 1::BIGINT FROM templates WHERE id = $1 FOR UPDATE")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if found.is_none() {
            return Err(Error::not_found("template"));
        }
        let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM servers WHERE template_id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        if used > 0 {
            return Err(Error::conflict(format!("{used} server(s) still use this template")));
        }
        sqlx::query("DELETE FROM templates WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| map(e, "template", CONFLICT))?;
        tx.commit().await.map_err(db)
    }
}
