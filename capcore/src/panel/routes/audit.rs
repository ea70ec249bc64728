//! The audit log: everything for auditors; your servers' and your own events for others.

use super::RouteDef;
use crate::Error;
use crate::ids::{ServerId, UserId};
use crate::model::{AuditEvent, AuditFilter, AuditResult};
use crate::panel::PanelState;
use crate::panel::error::ApiResult;
use crate::panel::extract::{Actor, ApiQuery, PageBody, PageQuery};
use crate::permission::{Permission, Scope, is_allowed};
use crate::time::Timestamp;
use axum::Json;
use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;

pub(super) fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(
            Method::GET,
            "/api/audit",
            "Audit events, newest first",
            "SYSTEM_AUDIT for all events; otherwise events of servers you may view, or your own with mine=true",
            get(list),
        )
        .query::<AuditQuery>()
        .response::<PageBody<AuditEvent>>(),
    ]
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct AuditQuery {
    pub page: Option<u32>,
    pub per_page: Option<u32>,
    pub actor_id: Option<UserId>,
    /// Actions starting with this (`server.`, `auth.login`).
    pub action: Option<String>,
    pub target: Option<String>,
    pub server_id: Option<ServerId>,
    pub result: Option<AuditResult>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Only your own actions.
    pub mine: Option<bool>,
}

async fn list(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<PageBody<AuditEvent>>> {
    let page = PageQuery { page: q.page, per_page: q.per_page }.request()?;
    let mut filter = AuditFilter {
        actor_id: q.actor_id,
        action_prefix: q.action,
        target: q.target,
        server_ids: q.server_id.map(|id| vec![id]),
        result: q.result,
        since: q.since,
        until: q.until,
    };
    if q.mine == Some(true) {
        filter.actor_id = Some(actor.principal.user_id);
    } else if !s.holds_global(&actor, Permission::SYSTEM_AUDIT) {
        // Only servers on which the caller holds ANALYTICS_VIEW (activity), never others'.
        let mut allowed = Vec::new();
        for id in s.db.servers().visible_ids(actor.principal.user_id).await? {
            let subject = s.server_subject(&actor, id).await?;
            if is_allowed(&subject, Permission::ANALYTICS_VIEW, Scope::Server(id)) {
                allowed.push(id);
            }
        }
        filter.server_ids = Some(match filter.server_ids {
            Some(asked) => asked.into_iter().filter(|id| allowed.contains(id)).collect(),
            None => allowed,
        });
        if filter.server_ids.as_ref().is_some_and(Vec::is_empty) && q.server_id.is_some() {
            return Err(Error::not_found("server").into());
        }
    }
    Ok(Json(s.db.audit().list(&filter, page).await?.into()))
}
