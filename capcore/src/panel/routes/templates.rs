//! Templates: CRUD, egg import and export.

use super::RouteDef;
use crate::Error;
use crate::ids::TemplateId;
use crate::panel::PanelState;
use crate::panel::error::ApiResult;
use crate::panel::extract::{Actor, ApiJson, ApiPath, ApiQuery, PageBody, PageQuery, parse_id, read_body};
use crate::permission::Permission;
use crate::template::{Template, TemplateSpec, egg};
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::routing::{delete, get, post, put};
use std::sync::Arc;

pub(super) fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(Method::GET, "/api/templates", "List templates", "SYSTEM_TEMPLATES or SERVER_CREATE", get(list))
            .query::<PageQuery>()
            .response::<PageBody<Template>>(),
        RouteDef::new(Method::POST, "/api/templates", "Create a template", "SYSTEM_TEMPLATES", post(create))
            .body::<TemplateSpec>()
            .response::<Template>(),
        RouteDef::new(
            Method::POST,
            "/api/templates/import",
            "Import a Pterodactyl or Pelican egg (JSON or YAML body)",
            "SYSTEM_TEMPLATES",
            post(import),
        )
        .response::<Template>(),
        RouteDef::new(
            Method::GET,
            "/api/templates/{id}",
            "Show a template",
            "SYSTEM_TEMPLATES or SERVER_CREATE",
            get(show),
        )
        .response::<Template>(),
        RouteDef::new(Method::PUT, "/api/templates/{id}", "Replace a template", "SYSTEM_TEMPLATES", put(update))
            .body::<TemplateSpec>()
            .response::<Template>(),
        RouteDef::new(
            Method::DELETE,
            "/api/templates/{id}",
            "Delete a template no server uses",
            "SYSTEM_TEMPLATES",
            delete(remove),
        ),
        RouteDef::new(
            Method::GET,
            "/api/templates/{id}/export",
            "Export as a PTDL_v2 egg",
            "SYSTEM_TEMPLATES",
            get(export),
        ),
    ]
}

fn may_read(s: &PanelState, actor: &Actor) -> crate::Result<()> {
    if s.holds_global(actor, Permission::SYSTEM_TEMPLATES) || s.holds_global(actor, Permission::SERVER_CREATE) {
        Ok(())
    } else {
        Err(Error::forbidden("missing permission SYSTEM_TEMPLATES"))
    }
}

async fn list(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<PageBody<Template>>> {
    let page = q.request()?;
    may_read(&s, &actor)?;
    Ok(Json(s.db.templates().list(page).await?.into()))
}

async fn show(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Template>> {
    let id: TemplateId = parse_id(&id, "template")?;
    may_read(&s, &actor)?;
    Ok(Json(s.db.templates().get(id).await?))
}

async fn create(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiJson(spec): ApiJson<TemplateSpec>,
) -> ApiResult<Json<Template>> {
    s.require_global(&actor, Permission::SYSTEM_TEMPLATES, "template.create").await?;
    let outcome = async {
        spec.validate()?;
        s.db.templates().create(spec, s.now()).await
    }
    .await;
    let t = s
        .audited(
            &actor,
            "template.create",
            |t: &Template| (format!("template:{}", t.id), None),
            (String::new(), None),
            outcome,
        )
        .await?;
    Ok(Json(t))
}

async fn import(State(s): State<Arc<PanelState>>, actor: Actor, req: Request) -> ApiResult<Json<Template>> {
    s.require_global(&actor, Permission::SYSTEM_TEMPLATES, "template.import").await?;
    let bytes = read_body(req, &()).await?;
    let outcome = async {
        let spec = egg::import(&bytes).map_err(|e| Error::invalid("egg", e.to_string()))?;
        s.db.templates().create(spec, s.now()).await
    }
    .await;
    let t = s
        .audited(
            &actor,
            "template.import",
            |t: &Template| (format!("template:{}", t.id), None),
            (String::new(), None),
            outcome,
        )
        .await?;
    Ok(Json(t))
}

async fn update(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiJson(spec): ApiJson<TemplateSpec>,
) -> ApiResult<Json<Template>> {
    let id: TemplateId = parse_id(&id, "template")?;
    s.require_global(&actor, Permission::SYSTEM_TEMPLATES, "template.update").await?;
    let outcome = async {
        spec.validate()?;
        s.db.templates().update(id, spec, s.now()).await
    }
    .await;
    let target = (format!("template:{id}"), None);
    let t = s.audited(&actor, "template.update", |_| target.clone(), target.clone(), outcome).await?;
    Ok(Json(t))
}

async fn remove(State(s): State<Arc<PanelState>>, actor: Actor, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    let id: TemplateId = parse_id(&id, "template")?;
    s.require_global(&actor, Permission::SYSTEM_TEMPLATES, "template.delete").await?;
    let target = (format!("template:{id}"), None);
    let outcome = s.db.templates().delete(id).await;
    s.audited(&actor, "template.delete", |_| target.clone(), target.clone(), outcome).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn export(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let id: TemplateId = parse_id(&id, "template")?;
    if !s.holds_global(&actor, Permission::SYSTEM_TEMPLATES) {
        return Err(Error::forbidden("missing permission SYSTEM_TEMPLATES").into());
    }
    let t = s.db.templates().get(id).await?;
    Ok(Json(egg::export(&t.spec)))
}
