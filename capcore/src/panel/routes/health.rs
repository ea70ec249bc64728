//! `/health`, `/ready` and `/api/openapi.json`.

use super::RouteDef;
use crate::panel::PanelState;
use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::get;
use schemars::JsonSchema;
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, Serialize, JsonSchema)]
pub struct Health {
    pub status: &'static str,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Readiness {
    pub status: &'static str,
    pub database: String,
    pub cache: String,
}

pub(super) fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(Method::GET, "/health", "The process is up", "public", get(health)).response::<Health>(),
        RouteDef::new(Method::GET, "/ready", "Database and cache reachable", "public", get(ready))
            .response::<Readiness>(),
        RouteDef::new(Method::GET, "/api/openapi.json", "This document", "public", get(openapi)),
        RouteDef::new(
            Method::GET,
            "/api/agent/v1/connect",
            "An agent's connection (WebSocket, protocol v1)",
            "the node's token as a bearer token",
            get(crate::panel::gateway::connect),
        ),
    ]
}

async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

async fn ready(State(s): State<Arc<PanelState>>) -> (StatusCode, Json<Readiness>) {
    let db = s.db.ping().await;
    let cache = s.cache.ping().await;
    let describe = |name: &str, r: &crate::Result<()>| match r {
        Ok(()) => format!("{name}: ok"),
        Err(e) => format!("{name}: {e}"),
    };
    let ok = db.is_ok() && cache.is_ok();
    let body = Readiness {
        status: if ok { "ready" } else { "not_ready" },
        database: describe(s.db.backend_name(), &db),
        cache: describe(s.cache.backend_name(), &cache),
    };
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

async fn openapi() -> Json<serde_json::Value> {
    Json(crate::panel::openapi::document())
}
