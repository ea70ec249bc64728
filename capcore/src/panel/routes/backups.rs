//! Backups of a server, kept by its node: list, create (one at a time, at most one per
//! `backup_min_interval`, then retention applied), lock, download, restore, delete. Progress of
//! a backup being made reaches the server's live socket as `backup` frames.
//!
//! Listing needs BACKUP_VIEW; creating BACKUP_CREATE; downloading and restoring BACKUP_RESTORE;
//! deleting and (un)locking BACKUP_DELETE. Every change and download is audited.

use super::RouteDef;
use crate::Result;
use crate::ids::{BackupId, ServerId};
use crate::panel::PanelState;
use crate::panel::agents::unexpected_reply;
use crate::panel::error::ApiResult;
use crate::panel::extract::{Actor, ApiJson, ApiPath, parse_id};
use crate::permission::Permission;
use crate::protocol::v1::Command;
use crate::protocol::v1::backups::{BackupOp, BackupRecord, Retention};
use crate::protocol::v1::files::Reply;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::{delete, get, post};
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;

pub(super) fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(
            Method::GET,
            "/api/servers/{id}/backups",
            "The server's backups, newest first",
            "BACKUP_VIEW on the server",
            get(list),
        )
        .response::<Vec<BackupRecord>>(),
        RouteDef::new(
            Method::POST,
            "/api/servers/{id}/backups",
            "Start a backup (answered at once; progress on the live socket)",
            "BACKUP_CREATE on the server",
            post(create),
        )
        .body::<CreateBackupBody>()
        .response::<BackupRecord>(),
        RouteDef::new(
            Method::POST,
            "/api/servers/{id}/backups/{backup_id}/lock",
            "Lock or unlock a backup against deletion and retention",
            "BACKUP_DELETE on the server",
            post(lock),
        )
        .body::<LockBody>()
        .response::<BackupRecord>(),
        RouteDef::new(
            Method::GET,
            "/api/servers/{id}/backups/{backup_id}/download",
            "Download a backup's archive (tar + zstd, streamed)",
            "BACKUP_RESTORE on the server",
            get(download),
        ),
        RouteDef::new(
            Method::POST,
            "/api/servers/{id}/backups/{backup_id}/restore",
            "Replace the stopped server's files with a backup's, atomically (its checksum verified first)",
            "BACKUP_RESTORE on the server",
            post(restore),
        ),
        RouteDef::new(
            Method::DELETE,
            "/api/servers/{id}/backups/{backup_id}",
            "Delete a backup (not when locked)",
            "BACKUP_DELETE on the server",
            delete(remove),
        ),
    ]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBackupBody {
    /// Shown in lists (default: the time it was made).
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockBody {
    pub locked: bool,
}

fn action_of(op: &BackupOp) -> (&'static str, Permission) {
    match op {
        BackupOp::List => ("backup.list", Permission::BACKUP_VIEW),
        BackupOp::Create { .. } => ("backup.create", Permission::BACKUP_CREATE),
        BackupOp::Lock { .. } => ("backup.lock", Permission::BACKUP_DELETE),
        BackupOp::Delete { .. } => ("backup.delete", Permission::BACKUP_DELETE),
        BackupOp::Download { .. } => ("backup.download", Permission::BACKUP_RESTORE),
        BackupOp::Restore { .. } => ("backup.restore", Permission::BACKUP_RESTORE),
    }
}

fn backup_of(op: &BackupOp) -> Option<BackupId> {
    match op {
        BackupOp::List => None,
        BackupOp::Create { backup_id, .. }
        | BackupOp::Lock { backup_id, .. }
        | BackupOp::Delete { backup_id }
        | BackupOp::Download { backup_id }
        | BackupOp::Restore { backup_id } => Some(*backup_id),
    }
}

/// Checks access; returns the server's node.
async fn access(s: &PanelState, actor: &Actor, id: ServerId, op: &BackupOp) -> Result<crate::ids::NodeId> {
    let (action, permission) = action_of(op);
    Ok(s.server_access(actor, id, permission, action).await?.0.node_id)
}

async fn record<T>(s: &PanelState, actor: &Actor, id: ServerId, op: &BackupOp, outcome: &Result<T>) {
    if matches!(op, BackupOp::List) {
        return;
    }
    let mut detail = serde_json::json!({ "backup_id": backup_of(op) });
    if let BackupOp::Lock { locked, .. } = op {
        detail["locked"] = serde_json::Value::Bool(*locked);
    }
    s.audit_outcome(actor, action_of(op).0, id, detail, outcome).await;
}

async fn run(
    s: &PanelState,
    actor: &Actor,
    id: ServerId,
    op: BackupOp,
    timeout: std::time::Duration,
) -> ApiResult<Reply> {
    let node = access(s, actor, id, &op).await?;
    let outcome = s.ask_node(node, Command::Backups { server_id: id, op: op.clone() }, timeout).await;
    record(s, actor, id, &op, &outcome).await;
    Ok(outcome?)
}

fn ids(raw: &str, raw_backup: &str) -> ApiResult<(ServerId, BackupId)> {
    Ok((parse_id(raw, "server")?, parse_id(raw_backup, "backup")?))
}

fn one(reply: Reply) -> ApiResult<Json<BackupRecord>> {
    match reply {
        Reply::Backup(b) => Ok(Json(b)),
        other => Err(unexpected_reply(other).into()),
    }
}

async fn list(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<BackupRecord>>> {
    let id: ServerId = parse_id(&id, "server")?;
    match run(&s, &actor, id, BackupOp::List, s.config.agent_timeout).await? {
        Reply::Backups { backups } => Ok(Json(backups)),
        other => Err(unexpected_reply(other).into()),
    }
}

async fn create(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<CreateBackupBody>,
) -> ApiResult<(StatusCode, Json<BackupRecord>)> {
    let id: ServerId = parse_id(&id, "server")?;
    let name = match b.name {
        Some(n) => {
            crate::validate::name("name", &n, 191)?;
            n.trim().to_string()
        }
        None => format!("Backup at {}", s.now().to_rfc3339()),
    };
    let retention =
        Retention { keep: s.config.backup_keep, max_age_ms: s.config.backup_max_age.map(|d| d.as_millis() as u64) };
    let op = BackupOp::Create {
        backup_id: BackupId::new_random(),
        name,
        retention,
        min_interval_ms: s.config.backup_min_interval.as_millis() as u64,
    };
    Ok((StatusCode::ACCEPTED, one(run(&s, &actor, id, op, s.config.agent_timeout).await?)?))
}

async fn lock(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath((id, backup)): ApiPath<(String, String)>,
    ApiJson(b): ApiJson<LockBody>,
) -> ApiResult<Json<BackupRecord>> {
    let (id, backup_id) = ids(&id, &backup)?;
    one(run(&s, &actor, id, BackupOp::Lock { backup_id, locked: b.locked }, s.config.agent_timeout).await?)
}

async fn remove(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath((id, backup)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let (id, backup_id) = ids(&id, &backup)?;
    run(&s, &actor, id, BackupOp::Delete { backup_id }, s.config.agent_timeout).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn restore(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath((id, backup)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let (id, backup_id) = ids(&id, &backup)?;
    run(&s, &actor, id, BackupOp::Restore { backup_id }, s.config.file_transfer_timeout).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn download(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath((id, backup)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let (id, backup_id) = ids(&id, &backup)?;
    let op = BackupOp::Download { backup_id };
    let node = access(&s, &actor, id, &op).await?;
    let started = s.start_download(node, Command::Backups { server_id: id, op: op.clone() }).await;
    record(&s, &actor, id, &op, &started).await;
    let (incoming, length) = match started? {
        (incoming, Reply::Download { length, .. }) => (incoming, length),
        (_, other) => return Err(unexpected_reply(other).into()),
    };
    let mut res = Response::new(Body::from_stream(incoming.into_stream()));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zstd"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"backup-{backup_id}.tar.zst\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}
