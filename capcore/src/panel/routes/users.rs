//! Users: list, create, show, change, delete, and their roles.

use super::RouteDef;
use crate::ids::{RoleId, UserId};
use crate::model::{NewUser, User, UserPatch};
use crate::panel::PanelState;
use crate::panel::error::ApiResult;
use crate::panel::extract::{Actor, ApiJson, ApiPath, ApiQuery, PageBody, PageQuery, parse_id};
use crate::permission::{Permission, PermissionSet};
use crate::time::Timestamp;
use crate::{Error, Result};
use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::{delete, get, patch, post, put};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub(super) fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(Method::GET, "/api/users", "List users", "USER_VIEW", get(list))
            .query::<UserListQuery>()
            .response::<PageBody<UserView>>(),
        RouteDef::new(
            Method::POST,
            "/api/users",
            "Create a user",
            "USER_CREATE (and USER_PERMISSIONS to give roles)",
            post(create),
        )
        .body::<CreateUserBody>()
        .response::<UserView>(),
        RouteDef::new(Method::GET, "/api/users/{id}", "Show a user", "USER_VIEW, or yourself", get(show))
            .response::<UserView>(),
        RouteDef::new(Method::PATCH, "/api/users/{id}", "Change a user", "USER_UPDATE", patch(update))
            .body::<UpdateUserBody>()
            .response::<UserView>(),
        RouteDef::new(Method::DELETE, "/api/users/{id}", "Delete a user", "USER_DELETE", delete(remove)),
        RouteDef::new(
            Method::PUT,
            "/api/users/{id}/roles",
            "Replace a user's roles",
            "USER_PERMISSIONS, holding every permission given",
            put(set_roles),
        )
        .body::<SetRolesBody>()
        .response::<UserView>(),
    ]
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct UserView {
    pub id: UserId,
    pub username: String,
    pub email: String,
    pub totp_enabled: bool,
    pub disabled: bool,
    pub roles: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct UserListQuery {
    pub page: Option<u32>,
    pub per_page: Option<u32>,
    /// Substring of username or email.
    pub q: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserBody {
    pub username: String,
    pub email: String,
    pub password: String,
    /// Role names; default `user`.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserBody {
    pub username: Option<String>,
    pub email: Option<String>,
    pub password: Option<String>,
    pub disabled: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRolesBody {
    /// Role names.
    pub roles: Vec<String>,
}

impl PanelState {
    pub(crate) async fn user_view(&self, u: User) -> Result<UserView> {
        let roles = self.db.roles().roles_of(u.id).await?.into_iter().map(|r| r.name).collect();
        Ok(UserView {
            id: u.id,
            totp_enabled: u.totp_enabled(),
            username: u.username,
            email: u.email,
            disabled: u.disabled,
            roles,
            created_at: u.created_at,
            updated_at: u.updated_at,
        })
    }

    /// What a user can do, for "is the actor at least as mighty": their global permissions,
    /// plus every server-scoped one when they own or share a server (taking over their account
    /// would give those).
    async fn user_power(&self, id: UserId) -> Result<PermissionSet> {
        let global = self.db.roles().global_permissions(id).await?;
        let has_servers = !self.db.servers().visible_ids(id).await?.is_empty();
        Ok(if has_servers { global.union(PermissionSet::server_scoped()) } else { global })
    }

    /// Resolves role names, refusing any whose permissions the actor does not hold
    /// (no one grants more than they have).
    async fn grantable_roles(&self, actor: &Actor, names: &[String]) -> Result<Vec<RoleId>> {
        let held = crate::permission::effective(&self.subject(actor), crate::permission::Scope::Global);
        let mut ids = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let role = self
                .db
                .roles()
                .find_by_name(name)
                .await?
                .ok_or_else(|| Error::invalid(format!("roles[{i}]"), format!("no role named `{name}`")))?;
            if !role.permissions.is_subset_of(held) {
                return Err(Error::forbidden(format!(
                    "you cannot give the role `{name}`: it holds permissions you do not"
                )));
            }
            ids.push(role.id);
        }
        Ok(ids)
    }
}

async fn list(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiQuery(q): ApiQuery<UserListQuery>,
) -> ApiResult<Json<PageBody<UserView>>> {
    let page = PageQuery { page: q.page, per_page: q.per_page }.request()?;
    if !s.holds_global(&actor, Permission::USER_VIEW) {
        return Err(Error::forbidden("missing permission USER_VIEW").into());
    }
    if let Some(text) = &q.q {
        crate::validate::text("q", text, 254)?;
    }
    let users = s.db.users().list(q.q.as_deref(), page).await?;
    let mut data = Vec::with_capacity(users.items.len());
    for u in users.items {
        data.push(s.user_view(u).await?);
    }
    Ok(Json(PageBody { data, page: users.page, per_page: users.per_page, total: users.total }))
}

async fn create(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiJson(b): ApiJson<CreateUserBody>,
) -> ApiResult<Json<UserView>> {
    s.require_global(&actor, Permission::USER_CREATE, "user.create").await?;
    let outcome = async {
        crate::validate::username("username", &b.username)?;
        let email = crate::validate::email("email", &b.email)?;
        crate::validate::password("password", &b.password)?;
        let names = b.roles.clone().unwrap_or_else(|| vec!["user".into()]);
        if b.roles.is_some() && !s.holds_global(&actor, Permission::USER_PERMISSIONS) {
            return Err(Error::forbidden("missing permission USER_PERMISSIONS to give roles"));
        }
        let role_ids = s.grantable_roles(&actor, &names).await?;
        let hash = s.auth.hash_password(&b.password).await?;
        let user =
            s.db.users().create(NewUser { username: b.username.clone(), email, password_hash: hash }, s.now()).await?;
        for r in role_ids {
            s.db.roles().assign(user.id, r).await?;
        }
        Ok(user)
    }
    .await;
    let user = s
        .audited(
            &actor,
            "user.create",
            |u: &User| (PanelState::user_target(u.id), None),
            (String::new(), None),
            outcome,
        )
        .await?;
    Ok(Json(s.user_view(user).await?))
}

async fn show(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<UserView>> {
    let id: UserId = parse_id(&id, "user")?;
    if id != actor.principal.user_id && !s.holds_global(&actor, Permission::USER_VIEW) {
        return Err(Error::not_found("user").into());
    }
    let u = s.db.users().get(id).await?;
    Ok(Json(s.user_view(u).await?))
}

async fn update(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<UpdateUserBody>,
) -> ApiResult<Json<UserView>> {
    let id: UserId = parse_id(&id, "user")?;
    s.require_global(&actor, Permission::USER_UPDATE, "user.update").await?;
    let outcome = async {
        let target = s.db.users().get(id).await?;
        if id == actor.principal.user_id && (b.password.is_some() || b.email.is_some()) {
            return Err(Error::forbidden(
                "change your own password or email through /api/me, with your current password",
            ));
        }
        // Changing someone mightier than yourself (or taking over the owner of servers) would
        // be a way up.
        let held = crate::permission::effective(&s.subject(&actor), crate::permission::Scope::Global);
        if !s.user_power(target.id).await?.is_subset_of(held) {
            return Err(Error::forbidden("the user holds permissions you do not"));
        }
        let mut patch = UserPatch::default();
        if let Some(u) = &b.username {
            crate::validate::username("username", u)?;
            patch.username = Some(u.clone());
        }
        if let Some(e) = &b.email {
            patch.email = Some(crate::validate::email("email", e)?);
        }
        if let Some(p) = &b.password {
            crate::validate::password("password", p)?;
            patch.password_hash = Some(s.auth.hash_password(p).await?);
        }
        if let Some(d) = b.disabled {
            if d && id == actor.principal.user_id {
                return Err(Error::conflict("you cannot disable yourself"));
            }
            patch.disabled = Some(d);
        }
        let revoke = patch.password_hash.is_some() || patch.disabled == Some(true);
        let user = s.db.users().update(id, patch, s.now()).await?;
        if revoke {
            s.auth.logout_everywhere(id, s.now()).await?;
        }
        Ok(user)
    }
    .await;
    let target = (PanelState::user_target(id), None);
    let user = s.audited(&actor, "user.update", |_| target.clone(), target.clone(), outcome).await?;
    Ok(Json(s.user_view(user).await?))
}

async fn remove(State(s): State<Arc<PanelState>>, actor: Actor, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    let id: UserId = parse_id(&id, "user")?;
    s.require_global(&actor, Permission::USER_DELETE, "user.delete").await?;
    let outcome = async {
        if id == actor.principal.user_id {
            return Err(Error::conflict("you cannot delete yourself"));
        }
        let held = crate::permission::effective(&s.subject(&actor), crate::permission::Scope::Global);
        if !s.user_power(id).await?.is_subset_of(held) {
            return Err(Error::forbidden("the user holds permissions you do not"));
        }
        s.db.users().delete(id).await
    }
    .await;
    let target = (PanelState::user_target(id), None);
    s.audited(&actor, "user.delete", |_| target.clone(), target.clone(), outcome).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_roles(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<SetRolesBody>,
) -> ApiResult<Json<UserView>> {
    let id: UserId = parse_id(&id, "user")?;
    s.require_global(&actor, Permission::USER_PERMISSIONS, "user.roles").await?;
    let outcome = async {
        let user = s.db.users().get(id).await?;
        let wanted = s.grantable_roles(&actor, &b.roles).await?;
        let held = crate::permission::effective(&s.subject(&actor), crate::permission::Scope::Global);
        let current = s.db.roles().roles_of(id).await?;
        // Taking away a role you could not give is as much an escalation as giving it.
        let current_perms = current.iter().fold(PermissionSet::EMPTY, |acc, r| acc.union(r.permissions));
        if !current_perms.is_subset_of(held) {
            return Err(Error::forbidden("the user holds permissions you do not"));
        }
        let own_admin = current.iter().find(|c| c.name == "admin").map(|c| c.id);
        if id == actor.principal.user_id && own_admin.is_some_and(|admin| !wanted.contains(&admin)) {
            return Err(Error::conflict("you cannot remove your own admin role"));
        }
        for r in &current {
            if !wanted.contains(&r.id) {
                s.db.roles().unassign(id, r.id).await?;
            }
        }
        for r in wanted {
            s.db.roles().assign(id, r).await?;
        }
        Ok(user)
    }
    .await;
    let target = (PanelState::user_target(id), None);
    let user = s.audited(&actor, "user.roles", |_| target.clone(), target.clone(), outcome).await?;
    Ok(Json(s.user_view(user).await?))
}
