//! The route table: every route once, with the docs the OpenAPI document is built from.

mod audit;
mod auth;
mod backups;
mod files;
mod health;
mod nodes;
mod roles;
mod servers;
mod templates;
mod users;

pub(crate) use servers::{ListPageCache, power_action, send_console_command};

use super::PanelState;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::MethodRouter;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use std::collections::BTreeMap;
use std::sync::Arc;

pub(crate) type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema_of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// One route: how it is served and how it is documented.
pub(crate) struct RouteDef {
    pub method: Method,
    pub path: &'static str,
    pub summary: &'static str,
    /// Who may call it, in words (`SERVER_VIEW on the server`, `public`).
    pub access: &'static str,
    pub body: Option<SchemaFn>,
    pub response: Option<SchemaFn>,
    pub query: Option<SchemaFn>,
    pub handler: MethodRouter<Arc<PanelState>>,
}

impl RouteDef {
    pub fn new(
        method: Method,
        path: &'static str,
        summary: &'static str,
        access: &'static str,
        handler: MethodRouter<Arc<PanelState>>,
    ) -> Self {
        Self { method, path, summary, access, body: None, response: None, query: None, handler }
    }
    pub fn body<T: JsonSchema>(mut self) -> Self {
        self.body = Some(schema_of::<T>);
        self
    }
    pub fn response<T: JsonSchema>(mut self) -> Self {
        self.response = Some(schema_of::<T>);
        self
    }
    pub fn query<T: JsonSchema>(mut self) -> Self {
        self.query = Some(schema_of::<T>);
        self
    }
}

/// Every route of the panel.
pub(crate) fn all_routes() -> Vec<RouteDef> {
    let mut all = Vec::new();
    all.extend(health::routes());
    all.extend(auth::routes());
    all.extend(users::routes());
    all.extend(roles::routes());
    all.extend(nodes::routes());
    all.extend(templates::routes());
    all.extend(servers::routes());
    all.extend(files::routes());
    all.extend(backups::routes());
    all.extend(audit::routes());
    all
}

pub(crate) fn router(state: Arc<PanelState>) -> Router {
    let mut by_path: BTreeMap<&'static str, MethodRouter<Arc<PanelState>>> = BTreeMap::new();
    for def in all_routes() {
        let merged = match by_path.remove(def.path) {
            Some(existing) => existing.merge(def.handler),
            None => def.handler,
        };
        by_path.insert(def.path, merged);
    }
    let limit = state.config.max_body_bytes;
    let mut router = Router::new();
    for (path, handler) in by_path {
        router = router.route(path, handler);
    }
    router
        .merge(super::ui::router())
        .fallback(|| async { super::error::ApiError::not_found("route") })
        // After the routes: axum applies it to the routes present. It keeps the `Allow` header.
        .method_not_allowed_fallback(|| async {
            super::error::ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method; see the Allow header",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}
