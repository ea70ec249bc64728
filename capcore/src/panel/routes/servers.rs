//! Servers: CRUD, variables, allocations, power, console commands, subusers and bulk power.

use super::RouteDef;
use super::nodes::AllocationView;
use crate::ids::{AllocationId, NodeId, ServerId, TemplateId, UserId};
use crate::model::{AllocationRequest, Limits, NewServer, PageRequest, Server, ServerFilter, ServerPatch, Subuser};
use crate::panel::PanelState;
use crate::panel::agents::PowerAction;
use crate::panel::error::ApiResult;
use crate::panel::extract::{Actor, ApiJson, ApiPath, ApiQuery, PageBody, PageQuery, parse_id};
use crate::panel::gateway::push_spec;
use crate::permission::{Permission, PermissionSet, Scope, ServerRelation, Subject, effective, is_allowed};
use crate::protocol::v1::Command;
use crate::state::ServerState;
use crate::time::Timestamp;
use crate::{Error, Result};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(super) fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(
            Method::GET,
            "/api/servers",
            "List the servers you can see",
            "SERVER_VIEW (global: all; else owned and shared)",
            get(list),
        )
        .query::<ServerListQuery>()
        .response::<PageBody<ServerView>>(),
        RouteDef::new(Method::POST, "/api/servers", "Create a server", "SERVER_CREATE", post(create))
            .body::<CreateServerBody>()
            .response::<ServerView>(),
        RouteDef::new(Method::GET, "/api/servers/{id}", "Show a server", "SERVER_VIEW on the server", get(show))
            .response::<ServerView>(),
        RouteDef::new(
            Method::PATCH,
            "/api/servers/{id}",
            "Change a server",
            "SERVER_UPDATE on the server; owner and limits need it globally",
            patch(update),
        )
        .body::<UpdateServerBody>()
        .response::<ServerView>(),
        RouteDef::new(Method::DELETE, "/api/servers/{id}", "Delete a server", "SERVER_DELETE", delete(remove)),
        RouteDef::new(
            Method::GET,
            "/api/servers/{id}/variables",
            "The server's template variables and values",
            "SERVER_VIEW on the server",
            get(variables),
        )
        .response::<Vec<VariableView>>(),
        RouteDef::new(
            Method::PUT,
            "/api/servers/{id}/variables",
            "Set variable values",
            "SERVER_UPDATE on the server",
            put(set_variables),
        )
        .body::<SetVariablesBody>()
        .response::<Vec<VariableView>>(),
        RouteDef::new(
            Method::GET,
            "/api/servers/{id}/allocations",
            "The server's allocations",
            "NETWORK_VIEW on the server",
            get(allocations),
        )
        .response::<Vec<AllocationView>>(),
        RouteDef::new(
            Method::GET,
            "/api/servers/{id}/stats",
            "Recent resource use (CPU, memory, disk), oldest first, for charts",
            "SERVER_VIEW on the server",
            get(stats_history),
        )
        .response::<Vec<crate::panel::live::StatsSample>>(),
        RouteDef::new(
            Method::POST,
            "/api/servers/{id}/power",
            "Start, stop, restart or kill",
            "SERVER_START / SERVER_STOP / SERVER_RESTART on the server",
            post(power),
        )
        .body::<PowerBody>(),
        RouteDef::new(
            Method::POST,
            "/api/servers/{id}/command",
            "Send a console command",
            "SERVER_CONSOLE on the server",
            post(command),
        )
        .body::<CommandBody>(),
        RouteDef::new(
            Method::GET,
            "/api/servers/{id}/ws",
            "Live console, state and stats (WebSocket; console lines need SERVER_CONSOLE)",
            "SERVER_VIEW on the server",
            get(crate::panel::live::server_ws),
        ),
        RouteDef::new(
            Method::POST,
            "/api/servers/bulk/power",
            "Power action on several servers",
            "per server, as for /power",
            post(bulk_power),
        )
        .body::<BulkPowerBody>()
        .response::<Vec<BulkResult>>(),
        RouteDef::new(
            Method::GET,
            "/api/servers/{id}/subusers",
            "List subusers",
            "USER_PERMISSIONS on the server",
            get(list_subusers),
        )
        .response::<Vec<SubuserView>>(),
        RouteDef::new(
            Method::POST,
            "/api/servers/{id}/subusers",
            "Add a subuser by email",
            "USER_PERMISSIONS on the server, holding what is given",
            post(add_subuser),
        )
        .body::<AddSubuserBody>()
        .response::<SubuserView>(),
        RouteDef::new(
            Method::PUT,
            "/api/servers/{id}/subusers/{user_id}",
            "Replace a subuser's permissions",
            "USER_PERMISSIONS on the server, holding what is given",
            put(set_subuser),
        )
        .body::<SetSubuserBody>()
        .response::<SubuserView>(),
        RouteDef::new(
            Method::DELETE,
            "/api/servers/{id}/subusers/{user_id}",
            "Remove a subuser",
            "USER_PERMISSIONS on the server",
            delete(remove_subuser),
        ),
    ]
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ServerView {
    pub id: ServerId,
    pub name: String,
    pub description: String,
    pub owner_id: UserId,
    pub node_id: NodeId,
    pub template_id: TemplateId,
    pub limits: Limits,
    pub state: ServerState,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Present on single-server responses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocations: Option<Vec<AllocationView>>,
    /// What the caller may do on it (single-server responses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<PermissionSet>,
}

impl From<Server> for ServerView {
    fn from(s: Server) -> Self {
        Self {
            id: s.id,
            name: s.name,
            description: s.description,
            owner_id: s.owner_id,
            node_id: s.node_id,
            template_id: s.template_id,
            limits: s.limits,
            state: s.state,
            created_at: s.created_at,
            updated_at: s.updated_at,
            allocations: None,
            permissions: None,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ServerListQuery {
    pub page: Option<u32>,
    pub per_page: Option<u32>,
    /// Substring of the name.
    pub q: Option<String>,
    pub owner_id: Option<UserId>,
    pub node_id: Option<NodeId>,
    pub state: Option<ServerState>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServerBody {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Defaults to the caller.
    pub owner_id: Option<UserId>,
    pub node_id: NodeId,
    pub template_id: TemplateId,
    #[serde(default)]
    pub limits: Option<Limits>,
    /// Variable values by env name; unset ones take the template's default.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// A specific free allocation on the node; default: any free one.
    pub allocation_id: Option<AllocationId>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateServerBody {
    pub name: Option<String>,
    pub description: Option<String>,
    pub owner_id: Option<UserId>,
    pub limits: Option<Limits>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct VariableView {
    pub name: String,
    pub description: String,
    pub env: String,
    pub value: String,
    pub default: String,
    pub user_editable: bool,
    pub rules: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetVariablesBody {
    pub values: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PowerBody {
    pub action: PowerAction,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandBody {
    pub command: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkPowerBody {
    pub server_ids: Vec<String>,
    pub action: PowerAction,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct BulkResult {
    pub server_id: String,
    /// `accepted`, or an error code (`not_found`, `forbidden`, `conflict`, `unavailable`).
    pub status: String,
    pub message: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SubuserView {
    pub user_id: UserId,
    pub username: String,
    pub email: String,
    pub permissions: PermissionSet,
    pub created_at: Timestamp,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddSubuserBody {
    pub email: String,
    pub permissions: PermissionSet,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSubuserBody {
    pub permissions: PermissionSet,
}

fn server_target(id: ServerId) -> (String, Option<ServerId>) {
    (format!("server:{id}"), Some(id))
}

async fn list(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiQuery(q): ApiQuery<ServerListQuery>,
) -> ApiResult<Response> {
    let page = PageQuery { page: q.page, per_page: q.per_page }.request()?;
    if let Some(text) = &q.q {
        crate::validate::text("q", text, 191)?;
    }
    // An API key without SERVER_VIEW sees no server, owned or not.
    if actor.principal.key_limit().is_some_and(|k| !k.contains(Permission::SERVER_VIEW)) {
        let empty: PageBody<ServerView> =
            PageBody { data: Vec::new(), page: page.page, per_page: page.per_page, total: 0 };
        return Ok(Json(empty).into_response());
    }
    let filter = ServerFilter {
        visible_to: (!s.holds_global(&actor, Permission::SERVER_VIEW)).then_some(actor.principal.user_id),
        owner_id: q.owner_id,
        node_id: q.node_id,
        name_contains: q.q,
        state: q.state,
    };
    // The page depends only on the filter (which holds who may see what) and the data, so a
    // rendering is reused while the database's read version stays the same.
    let version = if s.config.list_cache_max_age.is_zero() { None } else { s.db.read_version().await? };
    let key = (filter, page);
    if let Some(version) = version
        && let Some(bytes) = s.list_pages.get(&key, version, s.config.list_cache_max_age)
    {
        return Ok(json_bytes(bytes));
    }
    let body: PageBody<ServerView> = s.db.servers().list(&key.0, page).await?.map(ServerView::from).into();
    let bytes = Bytes::from(serde_json::to_vec(&body).map_err(|e| Error::internal("cannot encode servers", e))?);
    if let Some(version) = version {
        s.list_pages.put(key, version, bytes.clone(), s.config.list_cache_max_age);
    }
    Ok(json_bytes(bytes))
}

fn json_bytes(bytes: Bytes) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response()
}

/// What a listing is keyed by: everything its answer depends on besides the data.
type ListKey = (ServerFilter, PageRequest);

/// A rendered page: the read version it was rendered at, when, and the bytes.
type RenderedPage = (i64, Instant, Bytes);

/// Rendered list pages; bounded in size.
#[derive(Debug, Default)]
pub(crate) struct ListPageCache {
    pages: Mutex<HashMap<ListKey, RenderedPage>>,
}

impl ListPageCache {
    const MAX_ENTRIES: usize = 10_000;

    fn get(&self, key: &ListKey, version: i64, max_age: Duration) -> Option<Bytes> {
        let pages = self.pages.lock().expect("list cache lock");
        pages.get(key).filter(|(v, at, _)| *v == version && at.elapsed() < max_age).map(|(_, _, b)| b.clone())
    }

    fn put(&self, key: ListKey, version: i64, bytes: Bytes, max_age: Duration) {
        let mut pages = self.pages.lock().expect("list cache lock");
        if pages.len() >= Self::MAX_ENTRIES {
            pages.retain(|_, (_, at, _)| at.elapsed() < max_age);
            if pages.len() >= Self::MAX_ENTRIES {
                pages.clear();
            }
        }
        pages.insert(key, (version, Instant::now(), bytes));
    }
}

async fn create(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiJson(b): ApiJson<CreateServerBody>,
) -> ApiResult<Json<ServerView>> {
    s.require_global(&actor, Permission::SERVER_CREATE, "server.create").await?;
    let outcome = async {
        crate::validate::name("name", &b.name, 191)?;
        crate::validate::text("description", &b.description, 10_000)?;
        let limits = b.limits.unwrap_or_default();
        limits.validate()?;
        let owner = b.owner_id.unwrap_or(actor.principal.user_id);
        match s.db.users().get(owner).await {
            Err(Error::NotFound { .. }) => return Err(Error::invalid("owner_id", "no such user")),
            other => other?,
        };
        let node = match s.db.nodes().get(b.node_id).await {
            Err(Error::NotFound { .. }) => return Err(Error::invalid("node_id", "no such node")),
            other => other?,
        };
        let template = match s.db.templates().get(b.template_id).await {
            Err(Error::NotFound { .. }) => return Err(Error::invalid("template_id", "no such template")),
            other => other?,
        };
        let mut environment = template.spec.default_environment();
        environment.extend(b.environment.clone());
        template.spec.validate_environment(&environment)?;
        let new = NewServer {
            name: b.name.clone(),
            description: b.description.clone(),
            owner_id: owner,
            node_id: node.id,
            template_id: template.id,
            limits,
            environment,
            allocation: b.allocation_id.map_or(AllocationRequest::AnyFree, AllocationRequest::Specific),
        };
        s.db.servers().create(new, s.now()).await
    }
    .await;
    let server = s
        .audited(&actor, "server.create", |srv: &Server| server_target(srv.id), (String::new(), None), outcome)
        .await?;
    // The agent installs it now when connected; otherwise it installs it when it next syncs.
    if s.node_online(server.node_id).await {
        let (state, server) = (s.clone(), server.clone());
        tokio::spawn(async move {
            let install = Command::Install { server_id: server.id };
            let outcome = match push_spec(&state, &server).await {
                Ok(()) => state.call_node(server.node_id, install, state.config.agent_timeout).await,
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                tracing::info!(server = %server.id, reason = %e, "install deferred until the agent syncs");
                // Whoever watches the console learns why nothing happens.
                let line = format!("[cap] the install waits for the node: {e}");
                state.live.console(server.id, crate::protocol::v1::ConsoleStream::System, &line);
            }
        });
    }
    Ok(Json(server.into()))
}

async fn show(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ServerView>> {
    let id: ServerId = parse_id(&id, "server")?;
    let (server, subject) = s.server_access(&actor, id, Permission::SERVER_VIEW, "server.view").await?;
    let allocations = s.db.allocations().list_for_server(id).await?.into_iter().map(AllocationView::from).collect();
    let mut view = ServerView::from(server);
    view.allocations = Some(allocations);
    view.permissions = Some(effective(&subject, Scope::Server(id)));
    Ok(Json(view))
}

async fn update(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<UpdateServerBody>,
) -> ApiResult<Json<ServerView>> {
    let id: ServerId = parse_id(&id, "server")?;
    s.server_access(&actor, id, Permission::SERVER_UPDATE, "server.update").await?;
    let outcome = async {
        if (b.owner_id.is_some() || b.limits.is_some()) && !s.holds_global(&actor, Permission::SERVER_UPDATE) {
            return Err(Error::forbidden("changing owner or limits needs SERVER_UPDATE globally"));
        }
        if let Some(n) = &b.name {
            crate::validate::name("name", n, 191)?;
        }
        if let Some(d) = &b.description {
            crate::validate::text("description", d, 10_000)?;
        }
        if let Some(l) = &b.limits {
            l.validate()?;
        }
        if let Some(owner) = b.owner_id {
            match s.db.users().get(owner).await {
                Err(Error::NotFound { .. }) => return Err(Error::invalid("owner_id", "no such user")),
                other => other?,
            };
        }
        let patch = ServerPatch {
            name: b.name.clone(),
            description: b.description.clone(),
            owner_id: b.owner_id,
            limits: b.limits,
            environment: None,
            set_variables: None,
        };
        s.db.servers().update(id, patch, s.now()).await
    }
    .await;
    let server = s.audited(&actor, "server.update", |_| server_target(id), server_target(id), outcome).await?;
    Ok(Json(server.into()))
}

async fn remove(State(s): State<Arc<PanelState>>, actor: Actor, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    let id: ServerId = parse_id(&id, "server")?;
    let (server, _) = s.server_access(&actor, id, Permission::SERVER_DELETE, "server.delete").await?;
    let outcome = s.db.servers().delete(id).await;
    s.audited(&actor, "server.delete", |_| server_target(id), server_target(id), outcome).await?;
    s.live.forget(id);
    // The agent removes its files now when connected; otherwise when it next syncs.
    if s.node_online(server.node_id).await {
        let state = s.clone();
        tokio::spawn(async move {
            let delete = Command::Delete { server_id: id };
            if let Err(e) = state.call_node(server.node_id, delete, state.config.agent_timeout).await {
                tracing::info!(server = %id, reason = %e, "file removal deferred until the agent syncs");
            }
        });
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn variable_views(s: &PanelState, server: &Server, all: bool) -> Result<Vec<VariableView>> {
    let template = s.db.templates().get(server.template_id).await?;
    Ok(template
        .spec
        .variables
        .into_iter()
        .filter(|v| all || v.user_viewable)
        .map(|v| VariableView {
            value: server.environment.get(&v.env).cloned().unwrap_or_else(|| v.default.clone()),
            name: v.name,
            description: v.description,
            env: v.env,
            default: v.default,
            user_editable: v.user_editable,
            rules: v.rules,
        })
        .collect())
}

async fn variables(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<VariableView>>> {
    let id: ServerId = parse_id(&id, "server")?;
    let (server, _) = s.server_access(&actor, id, Permission::SERVER_VIEW, "server.variables").await?;
    let all = s.holds_global(&actor, Permission::SERVER_UPDATE);
    Ok(Json(variable_views(&s, &server, all).await?))
}

async fn set_variables(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<SetVariablesBody>,
) -> ApiResult<Json<Vec<VariableView>>> {
    let id: ServerId = parse_id(&id, "server")?;
    let (server, _) = s.server_access(&actor, id, Permission::SERVER_UPDATE, "server.variables").await?;
    let admin = s.holds_global(&actor, Permission::SERVER_UPDATE);
    let outcome = async {
        let template = s.db.templates().get(server.template_id).await?;
        for key in b.values.keys() {
            let var = template.spec.variables.iter().find(|v| &v.env == key);
            match var {
                Some(v) if admin || (v.user_editable && v.user_viewable) => {}
                // Hidden variables are reported like unknown ones.
                Some(v) if !v.user_viewable => {
                    return Err(Error::invalid(format!("values.{key}"), "is not a variable of this template"));
                }
                Some(_) => return Err(Error::forbidden(format!("`{key}` is not editable"))),
                None => return Err(Error::invalid(format!("values.{key}"), "is not a variable of this template")),
            }
        }
        let mut env = server.environment.clone();
        env.extend(b.values.clone());
        template.spec.validate_environment(&env)?;
        // Validated against the whole environment above; written as a merge so a concurrent edit
        // of another variable is kept.
        let patch = ServerPatch { set_variables: Some(b.values.clone()), ..Default::default() };
        s.db.servers().update(id, patch, s.now()).await
    }
    .await;
    let updated = s.audited(&actor, "server.variables", |_| server_target(id), server_target(id), outcome).await?;
    Ok(Json(variable_views(&s, &updated, admin).await?))
}

async fn allocations(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<AllocationView>>> {
    let id: ServerId = parse_id(&id, "server")?;
    s.server_access(&actor, id, Permission::NETWORK_VIEW, "server.allocations").await?;
    Ok(Json(s.db.allocations().list_for_server(id).await?.into_iter().map(AllocationView::from).collect()))
}

async fn stats_history(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<crate::panel::live::StatsSample>>> {
    let id: ServerId = parse_id(&id, "server")?;
    s.server_access(&actor, id, Permission::SERVER_VIEW, "server.view").await?;
    Ok(Json(s.live.history(id)))
}

fn power_permission(action: PowerAction) -> Permission {
    match action {
        PowerAction::Start => Permission::SERVER_START,
        PowerAction::Stop | PowerAction::Kill => Permission::SERVER_STOP,
        PowerAction::Restart => Permission::SERVER_RESTART,
    }
}

/// Whether the action makes sense in this state; `Conflict` says why not.
fn check_power_state(state: ServerState, action: PowerAction) -> Result<()> {
    use ServerState::*;
    // `unknown` with a connected agent (a sync that has not reported yet): the agent knows, and
    // refuses what does not fit.
    let ok = match action {
        PowerAction::Start => matches!(state, Offline | Crashed | Unknown),
        PowerAction::Stop => matches!(state, Starting | Running | Unknown),
        PowerAction::Kill => matches!(state, Starting | Running | Stopping | Unknown),
        PowerAction::Restart => matches!(state, Offline | Crashed | Starting | Running | Unknown),
    };
    if ok { Ok(()) } else { Err(Error::conflict(format!("cannot {} a server that is {state}", action.as_str()))) }
}

/// Checks one power action and has the node's agent carry it out (a start or restart first
/// sends the server's current spec). The agent answers once the action is under way; the
/// state changes follow as events.
pub(crate) async fn power_action(s: &PanelState, actor: &Actor, id: ServerId, action: PowerAction) -> Result<()> {
    let (server, _) = s.server_access(actor, id, power_permission(action), "server.power").await?;
    let outcome = async {
        if !s.node_online(server.node_id).await {
            return Err(Error::Unavailable {
                message: "the server's node is offline: its agent is not connected".into(),
                source: None,
            });
        }
        check_power_state(server.state, action)?;
        let grace = s.config.stop_grace.as_millis() as u64;
        let command = match action {
            PowerAction::Start => Command::Start { server_id: id },
            PowerAction::Stop => Command::Stop { server_id: id, grace_ms: grace },
            PowerAction::Restart => Command::Restart { server_id: id, grace_ms: grace },
            PowerAction::Kill => Command::Kill { server_id: id },
        };
        if matches!(action, PowerAction::Start | PowerAction::Restart) {
            push_spec(s, &server).await?;
        }
        s.call_node(server.node_id, command, s.config.agent_timeout).await
    }
    .await;
    s.audited(actor, "server.power", |_| server_target(id), server_target(id), outcome).await
}

async fn power(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<PowerBody>,
) -> ApiResult<StatusCode> {
    let id: ServerId = parse_id(&id, "server")?;
    power_action(&s, &actor, id, b.action).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Checks one console command and has the node's agent write it to the game's stdin.
pub(crate) async fn send_console_command(s: &PanelState, actor: &Actor, id: ServerId, command: &str) -> Result<()> {
    let (server, _) = s.server_access(actor, id, Permission::SERVER_CONSOLE, "server.command").await?;
    let outcome = async {
        if command.is_empty() || command.chars().count() > 4096 {
            return Err(Error::invalid("command", "must be 1 to 4096 characters"));
        }
        if command.chars().any(|c| c.is_control() && c != '\t') {
            return Err(Error::invalid("command", "must be one line without control characters"));
        }
        if !s.node_online(server.node_id).await {
            return Err(Error::Unavailable {
                message: "the server's node is offline: its agent is not connected".into(),
                source: None,
            });
        }
        if !server.state.is_up() {
            return Err(Error::conflict(format!("the server is {}; commands need it running", server.state)));
        }
        let call = Command::SendCommand { server_id: id, line: command.to_string() };
        s.call_node(server.node_id, call, s.config.agent_timeout).await
    }
    .await;
    s.audited(actor, "server.command", |_| server_target(id), server_target(id), outcome).await
}

async fn command(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<CommandBody>,
) -> ApiResult<StatusCode> {
    let id: ServerId = parse_id(&id, "server")?;
    send_console_command(&s, &actor, id, &b.command).await?;
    Ok(StatusCode::ACCEPTED)
}

async fn bulk_power(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiJson(b): ApiJson<BulkPowerBody>,
) -> ApiResult<Json<Vec<BulkResult>>> {
    if b.server_ids.is_empty() || b.server_ids.len() > 100 {
        return Err(Error::invalid("server_ids", "must list 1 to 100 servers").into());
    }
    let mut results = Vec::with_capacity(b.server_ids.len());
    for raw in &b.server_ids {
        // A server the caller may not see reads exactly like one that does not exist.
        let outcome = match raw.parse::<ServerId>() {
            Ok(id) => power_action(&s, &actor, id, b.action).await,
            Err(_) => Err(Error::not_found("server")),
        };
        let (status, message) = match outcome {
            Ok(()) => ("accepted".to_string(), String::new()),
            Err(e) => {
                let api = crate::panel::error::ApiError::from(e);
                (api.code.to_string(), api.message)
            }
        };
        results.push(BulkResult { server_id: raw.clone(), status, message });
    }
    Ok(Json(results))
}

async fn subuser_view(s: &PanelState, su: Subuser) -> Result<SubuserView> {
    let u = s.db.users().get(su.user_id).await?;
    Ok(SubuserView {
        user_id: u.id,
        username: u.username,
        email: u.email,
        permissions: su.permissions,
        created_at: su.created_at,
    })
}

async fn list_subusers(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<SubuserView>>> {
    let id: ServerId = parse_id(&id, "server")?;
    s.server_access(&actor, id, Permission::USER_PERMISSIONS, "server.subusers").await?;
    let mut out = Vec::new();
    for su in s.db.servers().list_subusers(id).await? {
        out.push(subuser_view(&s, su).await?);
    }
    Ok(Json(out))
}

/// A grant is only what the granter holds on this server, and only server-scoped permissions.
fn check_grant(subject: &Subject, id: ServerId, wanted: PermissionSet) -> Result<()> {
    let not_scoped: Vec<_> = wanted.iter().filter(|p| !p.is_server_scoped()).map(Permission::name).collect();
    if !not_scoped.is_empty() {
        return Err(Error::invalid("permissions", format!("not grantable on a server: {}", not_scoped.join(", "))));
    }
    let missing: Vec<_> =
        wanted.iter().filter(|p| !is_allowed(subject, *p, Scope::Server(id))).map(Permission::name).collect();
    if !missing.is_empty() {
        return Err(Error::forbidden(format!("you cannot grant what you do not hold: {}", missing.join(", "))));
    }
    Ok(())
}

/// The permissions `user` holds as a subuser of the server, if they are one.
async fn current_grant(s: &PanelState, id: ServerId, user: UserId) -> Result<Option<PermissionSet>> {
    Ok(match s.db.servers().relation(id, user).await? {
        ServerRelation::Subuser(granted) => Some(granted),
        _ => None,
    })
}

/// Creates or replaces a grant; `subject` is the granter on this server.
async fn grant(
    s: &PanelState,
    subject: &Subject,
    id: ServerId,
    user: UserId,
    permissions: PermissionSet,
) -> Result<Subuser> {
    check_grant(subject, id, permissions)?;
    if let Some(existing) = current_grant(s, id, user).await? {
        // Taking away what you do not hold is not yours to do either.
        check_grant(subject, id, existing)?;
    }
    s.db.servers().set_subuser(id, user, permissions, s.now()).await
}

async fn add_subuser(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<AddSubuserBody>,
) -> ApiResult<Json<SubuserView>> {
    let id: ServerId = parse_id(&id, "server")?;
    let (_, subject) = s.server_access(&actor, id, Permission::USER_PERMISSIONS, "subuser.create").await?;
    let outcome = async {
        let email = crate::validate::email("email", &b.email)?;
        let user =
            s.db.users()
                .find_by_email(&email)
                .await?
                .ok_or_else(|| Error::invalid("email", "no user has this email"))?;
        grant(&s, &subject, id, user.id, b.permissions).await
    }
    .await;
    let su = s.audited(&actor, "subuser.create", |_| server_target(id), server_target(id), outcome).await?;
    Ok(Json(subuser_view(&s, su).await?))
}

async fn set_subuser(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath((id, user)): ApiPath<(String, String)>,
    ApiJson(b): ApiJson<SetSubuserBody>,
) -> ApiResult<Json<SubuserView>> {
    let id: ServerId = parse_id(&id, "server")?;
    let user: UserId = parse_id(&user, "subuser")?;
    let (_, subject) = s.server_access(&actor, id, Permission::USER_PERMISSIONS, "subuser.update").await?;
    let outcome = async {
        if current_grant(&s, id, user).await?.is_none() {
            return Err(Error::not_found("subuser"));
        }
        grant(&s, &subject, id, user, b.permissions).await
    }
    .await;
    let su = s.audited(&actor, "subuser.update", |_| server_target(id), server_target(id), outcome).await?;
    Ok(Json(subuser_view(&s, su).await?))
}

async fn remove_subuser(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath((id, user)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let id: ServerId = parse_id(&id, "server")?;
    let user: UserId = parse_id(&user, "subuser")?;
    let (_, subject) = s.server_access(&actor, id, Permission::USER_PERMISSIONS, "subuser.delete").await?;
    let outcome = async {
        let existing = current_grant(&s, id, user).await?.ok_or_else(|| Error::not_found("subuser"))?;
        check_grant(&subject, id, existing)?;
        s.db.servers().remove_subuser(id, user).await
    }
    .await;
    s.audited(&actor, "subuser.delete", |_| server_target(id), server_target(id), outcome).await?;
    Ok(StatusCode::NO_CONTENT)
}
