//! Nodes and their allocations (ip:port).

use super::RouteDef;
use crate::ids::{AllocationId, NodeId, ServerId};
use crate::model::{Allocation, NewNode, Node, NodePatch, Page};
use crate::panel::error::ApiResult;
use crate::panel::extract::{Actor, ApiJson, ApiPath, ApiQuery, PageBody, PageQuery, parse_id};
use crate::panel::{PanelState, random_token, token_hash};
use crate::permission::Permission;
use crate::time::Timestamp;
use crate::{Error, Result};
use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::{delete, get, patch, post};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub(super) fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(Method::GET, "/api/nodes", "List nodes", "SYSTEM_NODES", get(list))
            .query::<PageQuery>()
            .response::<PageBody<NodeView>>(),
        RouteDef::new(
            Method::POST,
            "/api/nodes",
            "Create a node; the agent token is shown once",
            "SYSTEM_NODES",
            post(create),
        )
        .body::<CreateNodeBody>()
        .response::<CreatedNodeView>(),
        RouteDef::new(Method::GET, "/api/nodes/{id}", "Show a node", "SYSTEM_NODES", get(show)).response::<NodeView>(),
        RouteDef::new(Method::PATCH, "/api/nodes/{id}", "Change a node", "SYSTEM_NODES", patch(update))
            .body::<UpdateNodeBody>()
            .response::<NodeView>(),
        RouteDef::new(
            Method::DELETE,
            "/api/nodes/{id}",
            "Delete a node without servers",
            "SYSTEM_NODES",
            delete(remove),
        ),
        RouteDef::new(
            Method::POST,
            "/api/nodes/{id}/token",
            "Replace the agent token; the new one is shown once",
            "SYSTEM_NODES",
            post(rotate_token),
        )
        .response::<CreatedNodeView>(),
        RouteDef::new(
            Method::GET,
            "/api/nodes/{id}/allocations",
            "List a node's allocations",
            "SYSTEM_NODES",
            get(list_allocations),
        )
        .query::<PageQuery>()
        .response::<PageBody<AllocationView>>(),
        RouteDef::new(
            Method::POST,
            "/api/nodes/{id}/allocations",
            "Add allocations",
            "SYSTEM_NODES",
            post(add_allocations),
        )
        .body::<AddAllocationsBody>()
        .response::<Vec<AllocationView>>(),
        RouteDef::new(
            Method::DELETE,
            "/api/nodes/{id}/allocations/{allocation_id}",
            "Delete a free allocation",
            "SYSTEM_NODES",
            delete(remove_allocation),
        ),
    ]
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NodeView {
    pub id: NodeId,
    pub name: String,
    pub description: String,
    pub fqdn: String,
    pub memory_mb: i64,
    pub memory_overallocate: i64,
    pub disk_mb: i64,
    pub disk_overallocate: i64,
    /// Whether its agent is connected to this panel now.
    pub connected: bool,
    /// What the connected agent reported: at registration and in its latest heartbeat.
    pub agent: Option<AgentView>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AgentView {
    pub version: String,
    pub protocol: u32,
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    /// Runtimes the agent offers (`process`, `docker`).
    pub runtimes: Vec<String>,
    /// Limits the runtime enforces on that machine (`memory:cgroup-v2`, `cpu:docker`, `io:none`, ...).
    pub enforced_limits: Vec<String>,
    /// Why a configured runtime is missing (`docker: the Docker engine at ... is unreachable`).
    pub runtime_problems: Vec<String>,
    pub connected_at: Timestamp,
    pub last_heartbeat_at: Option<Timestamp>,
    pub cpu_percent: Option<f64>,
    pub memory_used_bytes: Option<u64>,
    pub disk_used_bytes: Option<u64>,
    pub servers_running: Option<u32>,
}

impl From<crate::panel::AgentStatus> for AgentView {
    fn from(a: crate::panel::AgentStatus) -> Self {
        let hb = a.heartbeat.as_ref().map(|(_, hb)| hb);
        Self {
            version: a.agent_version,
            protocol: a.protocol,
            hostname: a.facts.hostname,
            os: a.facts.os,
            kernel: a.facts.kernel,
            arch: a.facts.arch,
            cpus: a.facts.cpus,
            memory_bytes: a.facts.memory_bytes,
            disk_bytes: a.facts.disk_bytes,
            runtimes: a.facts.runtimes,
            enforced_limits: a.facts.enforced_limits,
            runtime_problems: a.facts.runtime_problems,
            connected_at: a.connected_at,
            last_heartbeat_at: a.heartbeat.as_ref().map(|(at, _)| *at),
            cpu_percent: hb.map(|h| h.cpu_percent),
            memory_used_bytes: hb.map(|h| h.memory_used_bytes),
            disk_used_bytes: hb.map(|h| h.disk_used_bytes),
            servers_running: hb.map(|h| h.servers_running),
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CreatedNodeView {
    pub node: NodeView,
    /// The agent's token (`CAP_NODE_TOKEN`); not shown again.
    pub token: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNodeBody {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub fqdn: String,
    pub memory_mb: i64,
    #[serde(default)]
    pub memory_overallocate: i64,
    pub disk_mb: i64,
    #[serde(default)]
    pub disk_overallocate: i64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateNodeBody {
    pub name: Option<String>,
    pub description: Option<String>,
    pub fqdn: Option<String>,
    pub memory_mb: Option<i64>,
    pub memory_overallocate: Option<i64>,
    pub disk_mb: Option<i64>,
    pub disk_overallocate: Option<i64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AllocationView {
    pub id: AllocationId,
    pub node_id: NodeId,
    pub ip: String,
    pub port: u16,
    pub server_id: Option<ServerId>,
    pub primary: bool,
}

impl From<Allocation> for AllocationView {
    fn from(a: Allocation) -> Self {
        Self { id: a.id, node_id: a.node_id, ip: a.ip, port: a.port, server_id: a.server_id, primary: a.primary }
    }
}

/// A port (`25565`) or an inclusive range (`"25565-25575"`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PortSpec {
    One(i64),
    Range(String),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddAllocationsBody {
    pub ip: String,
    pub ports: Vec<PortSpec>,
}

impl PanelState {
    /// The node with its agent's status, from whichever panel instance holds the agent.
    async fn node_view(&self, n: Node) -> NodeView {
        let agent = self.agent_status(n.id).await;
        NodeView {
            connected: agent.is_some(),
            agent: agent.map(AgentView::from),
            id: n.id,
            name: n.name,
            description: n.description,
            fqdn: n.fqdn,
            memory_mb: n.memory_mb,
            memory_overallocate: n.memory_overallocate,
            disk_mb: n.disk_mb,
            disk_overallocate: n.disk_overallocate,
            created_at: n.created_at,
            updated_at: n.updated_at,
        }
    }
}

fn validate_sizes(memory: i64, mem_over: i64, disk: i64, disk_over: i64) -> Result<()> {
    crate::validate::int_in("memory_mb", memory, 1, 1 << 40)?;
    crate::validate::int_in("memory_overallocate", mem_over, -1, 10_000)?;
    crate::validate::int_in("disk_mb", disk, 1, 1 << 50)?;
    crate::validate::int_in("disk_overallocate", disk_over, -1, 10_000)?;
    Ok(())
}

/// Expands port specs; the error names the offending entry.
fn expand_ports(specs: &[PortSpec], max: u32) -> Result<Vec<u16>> {
    let mut ports = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let field = format!("ports[{i}]");
        match spec {
            PortSpec::One(p) => ports.push(crate::validate::port(&field, *p)?),
            PortSpec::Range(r) => {
                let (a, b) =
                    r.split_once('-').ok_or_else(|| Error::invalid(&field, "must be a port or a range `start-end`"))?;
                let parse = |s: &str| {
                    s.trim().parse::<i64>().map_err(|_| Error::invalid(&field, "must be a port or a range `start-end`"))
                };
                let (start, end) = crate::validate::port_range(&field, parse(a)?, parse(b)?, max)?;
                ports.extend(start..=end);
            }
        }
        if ports.len() > max as usize {
            return Err(Error::invalid("ports", format!("at most {max} ports per request")));
        }
    }
    if ports.is_empty() {
        return Err(Error::invalid("ports", "must not be empty"));
    }
    ports.sort_unstable();
    if ports.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::invalid("ports", "lists a port twice"));
    }
    Ok(ports)
}

async fn list(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<PageBody<NodeView>>> {
    let page = q.request()?;
    if !s.holds_global(&actor, Permission::SYSTEM_NODES) {
        return Err(Error::forbidden("missing permission SYSTEM_NODES").into());
    }
    let nodes = s.db.nodes().list(page).await?;
    let mut items = Vec::with_capacity(nodes.items.len());
    for n in nodes.items {
        items.push(s.node_view(n).await);
    }
    Ok(Json(Page { items, total: nodes.total, page: nodes.page, per_page: nodes.per_page }.into()))
}

async fn create(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiJson(b): ApiJson<CreateNodeBody>,
) -> ApiResult<Json<CreatedNodeView>> {
    s.require_global(&actor, Permission::SYSTEM_NODES, "node.create").await?;
    let token = random_token("capn_");
    let outcome = async {
        crate::validate::name("name", &b.name, 64)?;
        crate::validate::text("description", &b.description, 1000)?;
        crate::validate::hostname("fqdn", &b.fqdn)?;
        validate_sizes(b.memory_mb, b.memory_overallocate, b.disk_mb, b.disk_overallocate)?;
        let new = NewNode {
            name: b.name.clone(),
            description: b.description.clone(),
            fqdn: b.fqdn.clone(),
            memory_mb: b.memory_mb,
            memory_overallocate: b.memory_overallocate,
            disk_mb: b.disk_mb,
            disk_overallocate: b.disk_overallocate,
            token_hash: token_hash(&token),
        };
        s.db.nodes().create(new, s.now()).await
    }
    .await;
    let node = s
        .audited(&actor, "node.create", |n: &Node| (format!("node:{}", n.id), None), (String::new(), None), outcome)
        .await?;
    Ok(Json(CreatedNodeView { node: s.node_view(node).await, token }))
}

async fn show(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<NodeView>> {
    let id: NodeId = parse_id(&id, "node")?;
    if !s.holds_global(&actor, Permission::SYSTEM_NODES) {
        return Err(Error::forbidden("missing permission SYSTEM_NODES").into());
    }
    Ok(Json(s.node_view(s.db.nodes().get(id).await?).await))
}

async fn update(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<UpdateNodeBody>,
) -> ApiResult<Json<NodeView>> {
    let id: NodeId = parse_id(&id, "node")?;
    s.require_global(&actor, Permission::SYSTEM_NODES, "node.update").await?;
    let outcome = async {
        let n = s.db.nodes().get(id).await?;
        if let Some(v) = &b.name {
            crate::validate::name("name", v, 64)?;
        }
        if let Some(v) = &b.description {
            crate::validate::text("description", v, 1000)?;
        }
        if let Some(v) = &b.fqdn {
            crate::validate::hostname("fqdn", v)?;
        }
        validate_sizes(
            b.memory_mb.unwrap_or(n.memory_mb),
            b.memory_overallocate.unwrap_or(n.memory_overallocate),
            b.disk_mb.unwrap_or(n.disk_mb),
            b.disk_overallocate.unwrap_or(n.disk_overallocate),
        )?;
        let patch = NodePatch {
            name: b.name.clone(),
            description: b.description.clone(),
            fqdn: b.fqdn.clone(),
            memory_mb: b.memory_mb,
            memory_overallocate: b.memory_overallocate,
            disk_mb: b.disk_mb,
            disk_overallocate: b.disk_overallocate,
        };
        s.db.nodes().update(id, patch, s.now()).await
    }
    .await;
    let target = (format!("node:{id}"), None);
    let node = s.audited(&actor, "node.update", |_| target.clone(), target.clone(), outcome).await?;
    Ok(Json(s.node_view(node).await))
}

async fn remove(State(s): State<Arc<PanelState>>, actor: Actor, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    let id: NodeId = parse_id(&id, "node")?;
    s.require_global(&actor, Permission::SYSTEM_NODES, "node.delete").await?;
    let target = (format!("node:{id}"), None);
    let outcome = s.db.nodes().delete(id).await;
    s.audited(&actor, "node.delete", |_| target.clone(), target.clone(), outcome).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate_token(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<CreatedNodeView>> {
    let id: NodeId = parse_id(&id, "node")?;
    s.require_global(&actor, Permission::SYSTEM_NODES, "node.token").await?;
    let token = random_token("capn_");
    let outcome = s.db.nodes().set_token_hash(id, &token_hash(&token), s.now()).await;
    let target = (format!("node:{id}"), None);
    s.audited(&actor, "node.token", |_| target.clone(), target.clone(), outcome).await?;
    Ok(Json(CreatedNodeView { node: s.node_view(s.db.nodes().get(id).await?).await, token }))
}

async fn list_allocations(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<PageBody<AllocationView>>> {
    let id: NodeId = parse_id(&id, "node")?;
    let page = q.request()?;
    if !s.holds_global(&actor, Permission::SYSTEM_NODES) {
        return Err(Error::forbidden("missing permission SYSTEM_NODES").into());
    }
    s.db.nodes().get(id).await?;
    Ok(Json(s.db.allocations().list_for_node(id, page).await?.map(AllocationView::from).into()))
}

async fn add_allocations(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<AddAllocationsBody>,
) -> ApiResult<Json<Vec<AllocationView>>> {
    let id: NodeId = parse_id(&id, "node")?;
    s.require_global(&actor, Permission::SYSTEM_NODES, "allocation.create").await?;
    let outcome = async {
        let ip = crate::validate::ip("ip", &b.ip)?;
        let ports = expand_ports(&b.ports, s.config.max_ports_per_request)?;
        s.db.nodes().get(id).await?;
        s.db.allocations().add(id, &ip.to_string(), &ports).await
    }
    .await;
    let target = (format!("node:{id}"), None);
    let added = s.audited(&actor, "allocation.create", |_| target.clone(), target.clone(), outcome).await?;
    Ok(Json(added.into_iter().map(AllocationView::from).collect()))
}

async fn remove_allocation(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath((id, allocation)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let id: NodeId = parse_id(&id, "node")?;
    let allocation: AllocationId = parse_id(&allocation, "allocation")?;
    s.require_global(&actor, Permission::SYSTEM_NODES, "allocation.delete").await?;
    let outcome = async {
        let a = s.db.allocations().get(allocation).await?;
        if a.node_id != id {
            return Err(Error::not_found("allocation"));
        }
        s.db.allocations().delete(allocation).await
    }
    .await;
    let target = (format!("allocation:{allocation}"), None);
    s.audited(&actor, "allocation.delete", |_| target.clone(), target.clone(), outcome).await?;
    Ok(StatusCode::NO_CONTENT)
}
