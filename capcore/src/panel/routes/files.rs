//! The file manager of a server: listing, reading and downloading, uploading and writing,
//! directories, rename, copy, delete, chmod, search and archives, each carried out by the
//! server's agent inside the server's directory (see `capagent::files`).
//!
//! Listing, stat and search need FILE_VIEW; reading and downloading FILE_READ; writing,
//! uploading, directories, rename, copy and chmod FILE_WRITE; delete FILE_DELETE; archives
//! FILE_ARCHIVE. Every change and every download is audited with the paths it touched.

use super::RouteDef;
use crate::ids::ServerId;
use crate::panel::PanelState;
use crate::panel::agents::{StreamEnd, unexpected_reply};
use crate::panel::error::{ApiError, ApiResult};
use crate::panel::extract::{Actor, ApiJson, ApiPath, ApiQuery, parse_id};
use crate::permission::Permission;
use crate::protocol::v1::Command;
use crate::protocol::v1::files::{ArchiveReport, FileEntry, FileOp, FileOrder, ListRequest, Listing, Reply};
use crate::{Error, Result};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub(super) fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(
            Method::GET,
            "/api/servers/{id}/files",
            "List a directory, a page at a time",
            "FILE_VIEW on the server",
            get(list),
        )
            .query::<ListQuery>()
            .response::<Listing>(),
        RouteDef::new(
            Method::GET,
            "/api/servers/{id}/files/stat",
            "One file's or directory's details",
            "FILE_VIEW on the server",
            get(stat),
        )
        .query::<PathQuery>()
        .response::<FileEntry>(),
        RouteDef::new(
            Method::GET,
            "/api/servers/{id}/files/search",
            "Find entries by name under a directory",
            "FILE_VIEW on the server",
            get(search),
        )
        .query::<SearchQuery>()
        .response::<FoundView>(),
        RouteDef::new(
            Method::GET,
            "/api/servers/{id}/files/content",
            "Read or download a file (streamed; one `Range: bytes=` range may be asked for)",
            "FILE_READ on the server",
            get(download),
        )
        .query::<ContentQuery>(),
        RouteDef::new(
            Method::PUT,
            "/api/servers/{id}/files/content",
            "Write or upload a file: the request body becomes its content, atomically (streamed; no size limit but the server's disk limit)",
            "FILE_WRITE on the server",
            axum::routing::put(upload),
        )
        .query::<PathQuery>()
        .response::<FileEntry>(),
        RouteDef::new(
            Method::POST,
            "/api/servers/{id}/files/directory",
            "Create a directory and its missing parents",
            "FILE_WRITE on the server",
            post(make_dir),
        )
        .body::<PathBody>()
        .response::<FileEntry>(),
        RouteDef::new(
            Method::POST,
            "/api/servers/{id}/files/rename",
            "Rename or move (never over an existing entry)",
            "FILE_WRITE on the server",
            post(rename),
        )
        .body::<FromToBody>()
        .response::<FileEntry>(),
        RouteDef::new(
            Method::POST,
            "/api/servers/{id}/files/copy",
            "Copy a file or a directory tree",
            "FILE_WRITE on the server",
            post(copy),
        )
        .body::<FromToBody>()
        .response::<FileEntry>(),
        RouteDef::new(
            Method::POST,
            "/api/servers/{id}/files/delete",
            "Delete files and directories (with their contents)",
            "FILE_DELETE on the server",
            post(delete),
        )
        .body::<DeleteBody>(),
        RouteDef::new(
            Method::POST,
            "/api/servers/{id}/files/chmod",
            "Set permission bits (octal, at most 777)",
            "FILE_WRITE on the server",
            post(chmod),
        )
        .body::<ChmodBody>()
        .response::<FileEntry>(),
        RouteDef::new(
            Method::POST,
            "/api/servers/{id}/files/compress",
            "Pack files into a new archive (.tar.zst, .tar.gz, .tgz or .zip, told by its name)",
            "FILE_ARCHIVE on the server",
            post(compress),
        )
        .body::<CompressBody>()
        .response::<ArchiveReport>(),
        RouteDef::new(
            Method::POST,
            "/api/servers/{id}/files/decompress",
            "Unpack an archive into a directory (never over existing entries)",
            "FILE_ARCHIVE on the server",
            post(decompress),
        )
        .body::<DecompressBody>()
        .response::<ArchiveReport>(),
    ]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The directory, relative to the server's directory (default: the directory itself).
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub order: FileOrder,
    #[serde(default)]
    pub descending: bool,
    #[serde(default)]
    pub offset: u64,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathQuery {
    pub path: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContentQuery {
    pub path: String,
    /// Ask the browser to save the file rather than show it.
    #[serde(default)]
    pub download: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// Where to look (default: everywhere).
    #[serde(default)]
    pub path: String,
    /// Part of a name, any case.
    pub query: String,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FoundView {
    pub entries: Vec<FileEntry>,
    /// The search stopped at its limit: there may be more.
    pub truncated: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathBody {
    pub path: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FromToBody {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteBody {
    /// 1 to 1000 paths.
    pub paths: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChmodBody {
    pub path: String,
    /// Octal digits as `chmod` takes them: `"644"`, `"0755"`.
    pub mode: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompressBody {
    /// The directory the paths are in (default: the server's directory).
    #[serde(default)]
    pub dir: String,
    /// Names in `dir` to pack.
    pub paths: Vec<String>,
    /// The new archive's path, relative to the server's directory.
    pub archive: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecompressBody {
    pub archive: String,
    /// The directory to unpack into (created when missing; default: the server's directory).
    #[serde(default)]
    pub into: String,
}

/// Path fields are capped before they travel: the agent checks every component anyway.
const MAX_PATH_CHARS: usize = 4096;

fn check_path(field: &str, path: &str) -> Result<()> {
    if path.len() > MAX_PATH_CHARS {
        return Err(Error::invalid(field, format!("is longer than {MAX_PATH_CHARS} bytes")));
    }
    if path.contains('\0') {
        return Err(Error::invalid(field, "contains a NUL byte"));
    }
    Ok(())
}

fn page_limit(limit: Option<u32>) -> Result<u32> {
    match limit.unwrap_or(100) {
        n @ 1..=ListRequest::MAX_LIMIT => Ok(n),
        _ => Err(Error::invalid("limit", format!("must be 1 to {}", ListRequest::MAX_LIMIT))),
    }
}

/// What is audited about an operation: the paths it names.
fn detail(op: &FileOp) -> serde_json::Value {
    match op {
        FileOp::List { path, .. } | FileOp::Stat { path } | FileOp::Search { path, .. } => {
            serde_json::json!({ "path": path })
        }
        FileOp::Download { path, offset, length } => {
            serde_json::json!({ "path": path, "offset": offset, "length": length })
        }
        FileOp::Upload { path } | FileOp::MakeDir { path } => serde_json::json!({ "path": path }),
        FileOp::Chmod { path, mode } => serde_json::json!({ "path": path, "mode": format!("{mode:o}") }),
        FileOp::Rename { from, to } | FileOp::Copy { from, to } => serde_json::json!({ "from": from, "to": to }),
        FileOp::Delete { paths } => serde_json::json!({ "paths": paths }),
        FileOp::Compress { dir, paths, archive } => {
            serde_json::json!({ "dir": dir, "paths": paths, "archive": archive })
        }
        FileOp::Decompress { archive, into } => serde_json::json!({ "archive": archive, "into": into }),
    }
}

/// Whether an operation is recorded in the audit log (changes and downloads; not looking).
fn audited(op: &FileOp) -> bool {
    !matches!(op, FileOp::List { .. } | FileOp::Stat { .. } | FileOp::Search { .. })
}

/// The audit action of an operation (`file.write`, ...).
fn action_of(op: &FileOp) -> &'static str {
    match op {
        FileOp::List { .. } | FileOp::Stat { .. } | FileOp::Search { .. } => "file.list",
        FileOp::Download { .. } => "file.read",
        FileOp::Upload { .. } => "file.write",
        FileOp::MakeDir { .. } => "file.mkdir",
        FileOp::Rename { .. } => "file.rename",
        FileOp::Copy { .. } => "file.copy",
        FileOp::Delete { .. } => "file.delete",
        FileOp::Chmod { .. } => "file.chmod",
        FileOp::Compress { .. } => "file.compress",
        FileOp::Decompress { .. } => "file.decompress",
    }
}

fn permission_of(op: &FileOp) -> Permission {
    match op {
        FileOp::List { .. } | FileOp::Stat { .. } | FileOp::Search { .. } => Permission::FILE_VIEW,
        FileOp::Download { .. } => Permission::FILE_READ,
        FileOp::Upload { .. }
        | FileOp::MakeDir { .. }
        | FileOp::Rename { .. }
        | FileOp::Copy { .. }
        | FileOp::Chmod { .. } => Permission::FILE_WRITE,
        FileOp::Delete { .. } => Permission::FILE_DELETE,
        FileOp::Compress { .. } | FileOp::Decompress { .. } => Permission::FILE_ARCHIVE,
    }
}

/// Checks access to the server, and returns its node.
async fn access(s: &PanelState, actor: &Actor, id: ServerId, op: &FileOp) -> Result<crate::ids::NodeId> {
    let (server, _) = s.server_access(actor, id, permission_of(op), action_of(op)).await?;
    Ok(server.node_id)
}

async fn record(s: &PanelState, actor: &Actor, id: ServerId, op: &FileOp, outcome: &Result<impl Sized>) {
    if audited(op) {
        s.audit_outcome(actor, action_of(op), id, detail(op), outcome).await;
    }
}

/// Runs an operation that moves no bytes: access, the agent's answer, the audit.
async fn run(s: &PanelState, actor: &Actor, raw_id: &str, op: FileOp) -> ApiResult<Reply> {
    let id: ServerId = parse_id(raw_id, "server")?;
    let node = access(s, actor, id, &op).await?;
    let outcome = s.ask_node(node, Command::Files { server_id: id, op: op.clone() }, s.config.agent_timeout).await;
    record(s, actor, id, &op, &outcome).await;
    Ok(outcome?)
}

fn unexpected(reply: Reply) -> ApiError {
    unexpected_reply(reply).into()
}

fn entry_of(reply: Reply) -> ApiResult<Json<FileEntry>> {
    match reply {
        Reply::Entry(e) => Ok(Json(e)),
        other => Err(unexpected(other)),
    }
}

fn archive_of(reply: Reply) -> ApiResult<Json<ArchiveReport>> {
    match reply {
        Reply::Archive(a) => Ok(Json(a)),
        other => Err(unexpected(other)),
    }
}

async fn list(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Listing>> {
    check_path("path", &q.path)?;
    let page = ListRequest { order: q.order, descending: q.descending, offset: q.offset, limit: page_limit(q.limit)? };
    match run(&s, &actor, &id, FileOp::List { path: q.path, page }).await? {
        Reply::Listing(l) => Ok(Json(l)),
        other => Err(unexpected(other)),
    }
}

async fn stat(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PathQuery>,
) -> ApiResult<Json<FileEntry>> {
    check_path("path", &q.path)?;
    entry_of(run(&s, &actor, &id, FileOp::Stat { path: q.path }).await?)
}

async fn search(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> ApiResult<Json<FoundView>> {
    check_path("path", &q.path)?;
    if q.query.trim().is_empty() || q.query.len() > 255 {
        return Err(Error::invalid("query", "must be 1 to 255 bytes").into());
    }
    let op = FileOp::Search { path: q.path, query: q.query, limit: page_limit(q.limit)? };
    match run(&s, &actor, &id, op).await? {
        Reply::Found { entries, truncated } => Ok(Json(FoundView { entries, truncated })),
        other => Err(unexpected(other)),
    }
}

async fn make_dir(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<PathBody>,
) -> ApiResult<(StatusCode, Json<FileEntry>)> {
    check_path("path", &b.path)?;
    Ok((StatusCode::CREATED, entry_of(run(&s, &actor, &id, FileOp::MakeDir { path: b.path }).await?)?))
}

async fn rename(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<FromToBody>,
) -> ApiResult<Json<FileEntry>> {
    check_path("from", &b.from)?;
    check_path("to", &b.to)?;
    entry_of(run(&s, &actor, &id, FileOp::Rename { from: b.from, to: b.to }).await?)
}

async fn copy(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<FromToBody>,
) -> ApiResult<(StatusCode, Json<FileEntry>)> {
    check_path("from", &b.from)?;
    check_path("to", &b.to)?;
    Ok((StatusCode::CREATED, entry_of(run(&s, &actor, &id, FileOp::Copy { from: b.from, to: b.to }).await?)?))
}

async fn delete(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<DeleteBody>,
) -> ApiResult<StatusCode> {
    if b.paths.is_empty() || b.paths.len() > 1000 {
        return Err(Error::invalid("paths", "must list 1 to 1000 paths").into());
    }
    for p in &b.paths {
        check_path("paths", p)?;
        if p.trim_matches('/').is_empty() {
            return Err(Error::invalid("paths", "the server's directory itself cannot be deleted").into());
        }
    }
    run(&s, &actor, &id, FileOp::Delete { paths: b.paths }).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn chmod(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<ChmodBody>,
) -> ApiResult<Json<FileEntry>> {
    check_path("path", &b.path)?;
    let digits = b.mode.trim();
    let mode = (!digits.is_empty() && digits.len() <= 4 && digits.bytes().all(|c| (b'0'..=b'7').contains(&c)))
        .then(|| u32::from_str_radix(digits, 8).ok())
        .flatten()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| Error::invalid("mode", "must be octal permission bits from 0 to 777, like \"644\""))?;
    entry_of(run(&s, &actor, &id, FileOp::Chmod { path: b.path, mode }).await?)
}

async fn compress(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<CompressBody>,
) -> ApiResult<(StatusCode, Json<ArchiveReport>)> {
    check_path("dir", &b.dir)?;
    check_path("archive", &b.archive)?;
    if b.paths.is_empty() || b.paths.len() > 1000 {
        return Err(Error::invalid("paths", "must list 1 to 1000 names").into());
    }
    for p in &b.paths {
        check_path("paths", p)?;
    }
    let op = FileOp::Compress { dir: b.dir, paths: b.paths, archive: b.archive };
    Ok((StatusCode::CREATED, archive_of(run(&s, &actor, &id, op).await?)?))
}

async fn decompress(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<DecompressBody>,
) -> ApiResult<Json<ArchiveReport>> {
    check_path("archive", &b.archive)?;
    check_path("into", &b.into)?;
    archive_of(run(&s, &actor, &id, FileOp::Decompress { archive: b.archive, into: b.into }).await?)
}

/// One range of `Range: bytes=…`: (offset, length), length `None` for "to the end".
fn parse_range(headers: &HeaderMap) -> Result<Option<(u64, Option<u64>)>> {
    let Some(raw) = headers.get(header::RANGE) else { return Ok(None) };
    let bad = || Error::invalid("range", "must be one range `bytes=START-` or `bytes=START-END`");
    let raw = raw.to_str().map_err(|_| bad())?.trim();
    let spec = raw.strip_prefix("bytes=").ok_or_else(bad)?;
    if spec.contains(',') {
        return Err(Error::invalid("range", "only one range at a time"));
    }
    let (start, end) = spec.split_once('-').ok_or_else(bad)?;
    let start: u64 = start.trim().parse().map_err(|_| bad())?;
    let end = end.trim();
    if end.is_empty() {
        return Ok(Some((start, None)));
    }
    let end: u64 = end.parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok(Some((start, Some(end - start + 1))))
}

/// The last component of `path` for `Content-Disposition`: ASCII as is, the rest
/// percent-encoded (RFC 5987).
fn disposition(path: &str, attachment: bool) -> String {
    let name = path.rsplit('/').find(|p| !p.is_empty()).unwrap_or("file");
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect();
    let kind = if attachment { "attachment" } else { "inline" };
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

async fn download(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ContentQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let server_id: ServerId = parse_id(&id, "server")?;
    check_path("path", &q.path)?;
    let range = parse_range(&headers)?;
    let (offset, length) = range.unwrap_or((0, None));
    let op = FileOp::Download { path: q.path.clone(), offset, length };
    let node = access(&s, &actor, server_id, &op).await?;
    let started = s.start_download(node, Command::Files { server_id, op: op.clone() }).await;
    record(&s, &actor, server_id, &op, &started).await;
    let (incoming, size, offset, length) = match started {
        Ok((incoming, Reply::Download { size, offset, length, .. })) => (incoming, size, offset, length),
        Ok((_, other)) => return Err(unexpected(other)),
        Err(Error::Invalid(v)) if v.field == "offset" => {
            let mut res = ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable", v.to_string())
                .into_response();
            res.headers_mut().insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            return Ok(res);
        }
        Err(e) => return Err(e.into()),
    };
    let mut res = Response::new(Body::from_stream(incoming.into_stream()));
    let h = res.headers_mut();
    // Never rendered by the browser as a page of the panel, whatever the file holds.
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&disposition(&q.path, q.download)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if range.is_some() {
        *res.status_mut() = StatusCode::PARTIAL_CONTENT;
        let last = (offset + length).saturating_sub(1);
        let value = if length == 0 { format!("bytes */{size}") } else { format!("bytes {offset}-{last}/{size}") };
        if let Ok(v) = HeaderValue::from_str(&value) {
            res.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(res)
}

async fn upload(
    State(s): State<Arc<PanelState>>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PathQuery>,
    body: Body,
) -> ApiResult<(StatusCode, Json<FileEntry>)> {
    let server_id: ServerId = parse_id(&id, "server")?;
    check_path("path", &q.path)?;
    let op = FileOp::Upload { path: q.path };
    let node = access(&s, &actor, server_id, &op).await?;
    let command = Command::Files { server_id, op: op.clone() };
    let outcome = async {
        let (end, pending) = s.call_node_streaming(node, command, s.config.file_transfer_timeout).await?;
        let StreamEnd::Outgoing(mut out) = end else {
            return Err(Error::internal("an upload got the receiving end", "stream direction"));
        };
        let mut chunks = body.into_data_stream();
        let mut interrupted = None;
        while let Some(chunk) = chunks.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    interrupted = Some(e.to_string());
                    break;
                }
            };
            match tokio::time::timeout(s.config.agent_timeout, out.send(&chunk)).await {
                Ok(Ok(())) => {}
                // The agent stopped taking bytes (the disk limit, a bad path): its answer says why.
                Ok(Err(_)) => return pending.outcome(s.config.agent_timeout).await,
                Err(_) => {
                    out.reset("the agent stopped taking bytes").await;
                    return Err(Error::Unavailable {
                        message: format!(
                            "the node's agent took no bytes for {} s",
                            s.config.agent_timeout.as_secs_f64()
                        ),
                        source: None,
                    });
                }
            }
        }
        if let Some(reason) = interrupted {
            out.reset("the upload was interrupted").await;
            let _ = pending.outcome(s.config.agent_timeout).await;
            return Err(Error::invalid("body", format!("the upload was interrupted: {reason}")));
        }
        out.finish().await.map_err(|message| Error::Unavailable { message, source: None })?;
        // The agent still syncs the file to disk: a large one on a slow disk takes a while.
        pending.outcome(s.config.file_transfer_timeout).await
    }
    .await;
    record(&s, &actor, server_id, &op, &outcome).await;
    Ok((StatusCode::OK, entry_of(outcome?)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str) -> Result<Option<(u64, Option<u64>)>> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
        parse_range(&h)
    }

    #[test]
    fn ranges_are_one_byte_range_or_refused_naming_the_header() {
        assert_eq!(parse_range(&HeaderMap::new()).unwrap(), None);
        assert_eq!(range("bytes=0-99").unwrap(), Some((0, Some(100))));
        assert_eq!(range("bytes=100-").unwrap(), Some((100, None)));
        for bad in ["bytes=5-1", "bytes=-5", "items=0-1", "bytes=0-1,4-5", "bytes=a-b"] {
            let e = range(bad).unwrap_err();
            assert!(e.to_string().starts_with("range:"), "{bad}: {e}");
        }
    }

    #[test]
    fn download_names_are_quoted_safely() {
        assert_eq!(
            disposition("logs/latest.log", true),
            "attachment; filename=\"latest.log\"; filename*=UTF-8''latest.log"
        );
        let hostile = disposition("a/\"; x=\r\n<b>.txt", false);
        assert!(!hostile.contains('\r') && !hostile.contains('<'), "{hostile}");
        assert!(hostile.starts_with("inline; filename=\"___x____b_.txt\""), "{hostile}");
        assert!(disposition("welt/Grüße.txt", true).contains("filename*=UTF-8''Gr%C3%BC%C3%9Fe.txt"));
    }
}
