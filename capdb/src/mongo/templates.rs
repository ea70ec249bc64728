//! Templates in MongoDB: the spec is kept as JSON text, the name as a uniquely indexed field.

use super::error::{db, map};
use super::fields::{id, json, timestamp, to_json};
use super::{SERVERS, Store, TEMPLATES, by_id, page_of};
use async_trait::async_trait;
use capcore::backend::TemplateRepo;
use capcore::ids::TemplateId;
use capcore::model::{Page, PageRequest};
use capcore::template::{Template, TemplateSpec};
use capcore::time::Timestamp;
use capcore::{Error, Result};
use mongodb::bson::{Document, doc};

#[derive(Debug, Clone)]
pub(crate) struct MongoTemplates(pub(crate) Store);

const CONFLICT: &str = "a template with that name already exists";

fn from_doc(doc: &Document) -> Result<Template> {
    Ok(Template {
        id: id(doc, "_id")?,
        spec: json(doc, "spec", "template")?,
        created_at: timestamp(doc, "created_at")?,
        updated_at: timestamp(doc, "updated_at")?,
    })
}

#[async_trait]
impl TemplateRepo for MongoTemplates {
    async fn create(&self, spec: TemplateSpec, now: Timestamp) -> Result<Template> {
        let template = Template { id: TemplateId::new_random(), spec, created_at: now, updated_at: now };
        let doc = doc! {
            "_id": template.id.to_string(),
            "name": &template.spec.name,
            "spec": to_json(&template.spec, "template")?,
            "created_at": now.0,
            "updated_at": now.0,
        };
        self.0.coll(TEMPLATES).insert_one(doc).await.map_err(|e| map(e, CONFLICT))?;
        Ok(template)
    }

    async fn get(&self, id: TemplateId) -> Result<Template> {
        from_doc(&by_id(&self.0.coll(TEMPLATES), id.to_string()).await?.ok_or_else(|| Error::not_found("template"))?)
    }

    async fn list(&self, page: PageRequest) -> Result<Page<Template>> {
        page_of(&self.0.coll(TEMPLATES), doc! {}, doc! { "created_at": 1, "_id": 1 }, page, from_doc).await
    }

    async fn update(&self, id: TemplateId, spec: TemplateSpec, now: Timestamp) -> Result<Template> {
        let set = doc! { "name": &spec.name, "spec": to_json(&spec, "template")?, "updated_at": now.0 };
        let done = self
            .0
            .coll(TEMPLATES)
            .update_one(doc! { "_id": id.to_string() }, doc! { "$set": set })
            .await
            .map_err(|e| map(e, CONFLICT))?;
        if done.matched_count == 0 {
            return Err(Error::not_found("template"));
        }
        self.get(id).await
    }

    async fn delete(&self, id: TemplateId) -> Result<()> {
        let key = id.to_string();
        if by_id(&self.0.coll(TEMPLATES), key.as_str()).await?.is_none() {
            return Err(Error::not_found("template"));
        }
        let used = self.0.coll(SERVERS).count_documents(doc! { "template_id": key.as_str() }).await.map_err(db)?;
        if used > 0 {
            return Err(Error::conflict(format!("{used} server(s) still use this template")));
        }
        let done = self.0.coll(TEMPLATES).delete_one(doc! { "_id": key }).await.map_err(db)?;
        if done.deleted_count == 0 {
            return Err(Error::not_found("template"));
        }
        Ok(())
    }
}
