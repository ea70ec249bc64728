//! Templates in SQLite: the spec is stored as JSON, the name as a unique column.

use super::{get, get_id, list_table};
use crate::error::{corrupt, db, map};
use async_trait::async_trait;
use capcore::backend::TemplateRepo;
use capcore::ids::TemplateId;
use capcore::model::{Page, PageRequest};
use capcore::template::{Template, TemplateSpec};
use capcore::time::Timestamp;
use capcore::{Error, Result};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, SqlitePool};

#[derive(Debug, Clone)]
pub(crate) struct SqliteTemplates(pub(crate) SqlitePool, pub(crate) SqlitePool);

const COLUMNS: &str = "id, spec, created_at, updated_at";
const CONFLICT: &str = "a template with that name already exists";

fn from_row(row: &SqliteRow) -> Result<Template> {
    let spec: String = get(row, "spec")?;
    Ok(Template {
        id: get_id(row, "id")?,
        spec: serde_json::from_str(&spec).map_err(|e| corrupt("template", e))?,
        created_at: Timestamp(get(row, "created_at")?),
        updated_at: Timestamp(get(row, "updated_at")?),
    })
}

fn spec_json(spec: &TemplateSpec) -> Result<String> {
    serde_json::to_string(spec).map_err(|e| Error::internal("cannot encode template", e))
}

#[async_trait]
impl TemplateRepo for SqliteTemplates {
    async fn create(&self, spec: TemplateSpec, now: Timestamp) -> Result<Template> {
        let id = TemplateId::new_random();
        sqlx::query("INSERT INTO templates (id, name, spec, created_at, updated_at) VALUES (?, ?, ?, ?, ?)")
            .bind(id.to_string())
            .bind(&spec.name)
            .bind(spec_json(&spec)?)
            .bind(now.0)
            .bind(now.0)
            .execute(&self.1)
            .await
            .map_err(|e| map(e, "template", CONFLICT))?;
        self.get(id).await
    }

    async fn get(&self, id: TemplateId) -> Result<Template> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM templates WHERE id = ?")))
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
        let done = sqlx::query("UPDATE templates SET name = ?, spec = ?, updated_at = ? WHERE id = ?")
            .bind(&spec.name)
            .bind(spec_json(&spec)?)
            .bind(now.0)
            .bind(id.to_string())
            .execute(&self.1)
            .await
            .map_err(|e| map(e, "template", CONFLICT))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("template"));
        }
        self.get(id).await
    }

    async fn delete(&self, id: TemplateId) -> Result<()> {
        let mut tx = self.1.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM servers WHERE template_id = ?")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        if used > 0 {
            return Err(Error::conflict(format!("{used} server(s) still use this template")));
        }
        let done = sqlx::query("DELETE FROM templates WHERE id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("template"));
        }
        tx.commit().await.map_err(db)
    }
}
