//! Templates in MySQL/MariaDB: the spec is stored as JSON text, the name as a unique column.

use super::error::{db, map};
use super::{fetch_by_id, get, get_id, get_json, list_table};
use async_trait::async_trait;
use capcore::backend::TemplateRepo;
use capcore::ids::TemplateId;
use capcore::model::{Page, PageRequest};
use capcore::template::{Template, TemplateSpec};
use capcore::time::Timestamp;
use capcore::{Error, Result};
use sqlx::MySqlPool;
use sqlx::mysql::MySqlRow;

#[derive(Debug, Clone)]
pub(crate) struct MysqlTemplates(pub(crate) MySqlPool);

const COLUMNS: &str = "id, spec, created_at, updated_at";
const CONFLICT: &str = "a template with that name already exists";

fn from_row(row: &MySqlRow) -> Result<Template> {
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
impl TemplateRepo for MysqlTemplates {
    async fn create(&self, spec: TemplateSpec, now: Timestamp) -> Result<Template> {
        let id = TemplateId::new_random();
        sqlx::query("INSERT INTO templates (id, name, spec, created_at, updated_at) VALUES (?, ?, ?, ?, ?)")
            .bind(id.to_string())
            .bind(&spec.name)
            .bind(spec_json(&spec)?)
            .bind(now.0)
            .bind(now.0)
            .execute(&self.0)
            .await
            .map_err(|e| map(e, "template", CONFLICT))?;
        Ok(Template { id, spec, created_at: now, updated_at: now })
    }

    async fn get(&self, id: TemplateId) -> Result<Template> {
        let row = sqlx::query("SELECT id, spec, created_at, updated_at FROM templates WHERE id = ?")
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
        let mut tx = self.0.begin().await.map_err(db)?;
        let done = sqlx::query("UPDATE templates SET name = ?, spec = ?, updated_at = ? WHERE id = ?")
            .bind(&spec.name)
            .bind(spec_json(&spec)?)
            .bind(now.0)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| map(e, "template", CONFLICT))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("template"));
        }
        let template = fetch_by_id(&mut tx, "templates", COLUMNS, &id.to_string(), from_row).await?;
        tx.commit().await.map_err(db)?;
        Ok(template)
    }

    async fn delete(&self, id: TemplateId) -> Result<()> {
        let mut tx = self.0.begin().await.map_err(db)?;
        // Locked, so no new server can use it (its foreign key check waits) until this is decided.
        let found: Option<String> = sqlx::query_scalar("SELECT id FROM templates WHERE id = ? FOR UPDATE")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if found.is_none() {
            return Err(Error::not_found("template"));
        }
        let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM servers WHERE template_id = ?")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        if used > 0 {
            return Err(Error::conflict(format!("{used} server(s) still use this template")));
        }
        sqlx::query("DELETE FROM templates WHERE id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| map(e, "template", CONFLICT))?;
        tx.commit().await.map_err(db)
    }
}
