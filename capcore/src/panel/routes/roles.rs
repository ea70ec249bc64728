//! Roles: named sets of global permissions.

use super::RouteDef;
use crate::Error;
use crate::ids::RoleId;
use crate::model::{NewRole, Role, RolePatch};
use crate::panel::PanelState;
use crate::panel::error::ApiResult;
use crate::panel::extract::{Actor, ApiJson, ApiPath, ApiQuery, PageBody, PageQuery, parse_id};
use crate::permission::{Permission, PermissionSet, Scope, effective};
use crate::time::Timestamp;
use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::{delete, get, patch, post};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub(super) fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(Method::GET, "/api/roles", "List roles", "USER_VIEW", get(list))
            .query::<PageQuery>()
            .response::<PageBody<RoleView>>(),
        RouteDef::new(
            Method::POST,
            "/api/roles",
            "Create a role",
            "USER_PERMISSIONS, holding every permission in it",
            post(create),
        )
        .body::<CreateRoleBody>()
        .response::<RoleView>(),
        RouteDef::new(
            Method::PATCH,
            "/api/roles/{id}",
            "Change a role",
            "USER_PERMISSIONS, holding every permission before and after",
            patch(update),
        )
        .body::<UpdateRoleBody>()
        .response::<RoleView>(),
        RouteDef::new(
            Method::DELETE,
            "/api/roles/{id}",
            "Delete a role (not a builtin one)",
            "USER_PERMISSIONS",
            delete(remove),
        ),
    ]
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RoleView {
    pub id: RoleId,
    pub name: String,
    pub description: String,
    pub permissions: PermissionSet,
    pub builtin: bool,
    pub created_at: Timestamp,
}

impl From<Role> for RoleView {
    fn from(r: Role) -> Self {
        Self {
            id: r.id,
            name: r.name,
            description: r.description,
            permissions: r.permissions,
            builtin: r.builtin,
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoleBody {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub permissions: PermissionSet,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoleBody {
    pub name: Option<String>,
    pub description: Option<String>,
    pub permissions: Option<PermissionSet>,
}

fn check_held(s: &PanelState, actor: &Actor, perms: PermissionSet) -> crate::Result<()> {
    let held = effective(&s.subject(actor), Scope::Global);
    if !perms.is_subset_of(held) {
        let extra: Vec<_> = perms.iter().filter(|p| !held.contains(*p)).map(Permission::name).collect();
        return Err(Error::forbidden(format!("you do not hold: {}", extra.join(", "))));
    }
    Ok(())
}

async fn list(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<PageBody<RoleView>>> {
    let page = q.request()?;
    if !s.holds_global(&actor, Permission::USER_VIEW) {
        return Err(Error::forbidden("missing permission USER_VIEW").into());
    }
    Ok(Json(s.db.roles().list(page).await?.map(RoleView::from).into()))
}

async fn create(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiJson(b): ApiJson<CreateRoleBody>,
) -> ApiResult<Json<RoleView>> {
    s.require_global(&actor, Permission::USER_PERMISSIONS, "role.create").await?;
    let outcome = async {
        crate::validate::name("name", &b.name, 64)?;
        crate::validate::text("description", &b.description, 1000)?;
        check_held(&s, &actor, b.permissions)?;
        s.db.roles()
            .create(
                NewRole {
                    name: b.name.clone(),
                    description: b.description.clone(),
                    permissions: b.permissions,
                    builtin: false,
                },
                s.now(),
            )
            .await
    }
    .await;
    let role = s
        .audited(&actor, "role.create", |r: &Role| (format!("role:{}", r.id), None), (String::new(), None), outcome)
        .await?;
    Ok(Json(role.into()))
}

async fn update(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<UpdateRoleBody>,
) -> ApiResult<Json<RoleView>> {
    let id: RoleId = parse_id(&id, "role")?;
    s.require_global(&actor, Permission::USER_PERMISSIONS, "role.update").await?;
    let outcome = async {
        let role = s.db.roles().get(id).await?;
        if role.builtin && (b.name.is_some() || b.permissions.is_some()) {
            return Err(Error::conflict(format!("`{}` is a builtin role; only its description can change", role.name)));
        }
        if let Some(n) = &b.name {
            crate::validate::name("name", n, 64)?;
        }
        if let Some(d) = &b.description {
            crate::validate::text("description", d, 1000)?;
        }
        check_held(&s, &actor, role.permissions)?;
        if let Some(p) = b.permissions {
            check_held(&s, &actor, p)?;
        }
        s.db.roles()
            .update(
                id,
                RolePatch { name: b.name.clone(), description: b.description.clone(), permissions: b.permissions },
            )
            .await
    }
    .await;
    let target = (format!("role:{id}"), None);
    let role = s.audited(&actor, "role.update", |_| target.clone(), target.clone(), outcome).await?;
    Ok(Json(role.into()))
}

async fn remove(State(s): State<Arc<PanelState>>, actor: Actor, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    let id: RoleId = parse_id(&id, "role")?;
    s.require_global(&actor, Permission::USER_PERMISSIONS, "role.delete").await?;
    let outcome = async {
        let role = s.db.roles().get(id).await?;
        check_held(&s, &actor, role.permissions)?;
        s.db.roles().delete(id).await
    }
    .await;
    let target = (format!("role:{id}"), None);
    s.audited(&actor, "role.delete", |_| target.clone(), target.clone(), outcome).await?;
    Ok(StatusCode::NO_CONTENT)
}
