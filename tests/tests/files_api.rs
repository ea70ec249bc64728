//! The file manager end to end: REST calls to the panel, carried out by a real `cap-agent` in
//! the server's directory, bytes streamed both ways over the agent's connection.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use cap_tests::e2e::{AgentNode, AgentProcess, scratch_dir};
use cap_tests::{Cred, TestPanel, assert_error};
use serde_json::{Value, json};
use std::path::PathBuf;

struct World {
    panel: TestPanel,
    agent: AgentProcess,
    node: String,
    owner_id: String,
    owner: Cred,
    server: String,
}

impl World {
    async fn new(tag: &str, disk_mb: i64) -> World {
        let panel = TestPanel::start().await;
        let AgentNode { node, agent, .. } = panel.agent_node(tag, 4, &[]).await;
        let (owner_id, owner) = panel.user("owner", &[]).await;
        let template =
            panel.game_template(&format!("{tag}-game"), &[], json!({"type": "signal", "value": "SIGTERM"})).await;
        let server = panel.server_with_disk(tag, &owner_id, &node, &template, disk_mb).await;
        panel.wait_state(&server, "offline").await;
        World { panel, agent, node, owner_id, owner, server }
    }

    /// The server's directory on the node.
    fn dir(&self) -> PathBuf {
        self.agent.data_dir.join("servers").join(&self.server)
    }

    fn url(&self, rest: &str) -> String {
        format!("/api/servers/{}/files{rest}", self.server)
    }

    async fn get(&self, cred: &Cred, rest: &str) -> (StatusCode, Value) {
        self.panel.get(&self.url(rest), cred).await
    }

    async fn post(&self, cred: &Cred, rest: &str, body: Value) -> (StatusCode, Value) {
        self.panel.post(&self.url(rest), cred, body).await
    }

    async fn upload(&self, cred: &Cred, path: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        let url = self.url(&format!("/content?path={}", enc(path)));
        self.panel.raw(Method::PUT, &url, cred, bytes, "application/octet-stream").await
    }

    async fn download(&self, cred: &Cred, path: &str, range: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = Request::builder().method(Method::GET).uri(self.url(&format!("/content?path={}", enc(path))));
        if let Cred::Bearer(t) = cred {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(r) = range {
            req = req.header(header::RANGE, r);
        }
        self.panel.send_for_bytes(req.body(Body::empty()).unwrap()).await
    }
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect()
}

/// Bytes that do not compress.
fn pattern(len: usize) -> Vec<u8> {
    cap_tests::noise(len, 0x9E37_79B9_7F4A_7C15)
}

fn names(listing: &Value) -> Vec<String> {
    listing["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_uploaded_listed_read_changed_archived_and_deleted_through_the_agent() {
    let w = World::new("files-roundtrip", 1024).await;
    let o = &w.owner;

    // An upload larger than the panel's JSON body limit (1 MiB) streams through.
    let big = pattern(5 * 1024 * 1024 + 123);
    let (status, entry) = w.upload(o, "world/data.bin", big.clone()).await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["path"], "world/data.bin");
    assert_eq!(entry["size"], big.len() as u64);
    assert_eq!(std::fs::read(w.dir().join("world/data.bin")).unwrap(), big, "the bytes on the node");
    let (status, body) = w.upload(o, "server.properties", b"motd=hello\n".to_vec()).await;
    assert_eq!(status, 200, "{body}");

    let (status, listing) = w.get(o, "").await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(names(&listing), ["world", "installed.txt", "server.properties"], "directories first, then by name");
    let (_, listing) = w.get(o, "?path=world&limit=1").await;
    assert_eq!((names(&listing), listing["total"].as_u64()), (vec!["data.bin".to_string()], Some(1)));

    // Whole, and a range.
    let (status, headers, bytes) = w.download(o, "world/data.bin", None).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, big);
    assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let (status, headers, bytes) = w.download(o, "world/data.bin", Some("bytes=1000-1999")).await;
    assert_eq!(status, 206);
    assert_eq!(bytes, big[1000..2000]);
    assert_eq!(headers[header::CONTENT_RANGE], format!("bytes 1000-1999/{}", big.len()));
    let (status, _, bytes) = w.download(o, "world/data.bin", Some(&format!("bytes={}-", big.len() - 5))).await;
    assert_eq!((status, bytes.as_slice()), (StatusCode::PARTIAL_CONTENT, &big[big.len() - 5..]));

    // Directories, rename, copy, chmod, stat, search.
    let (status, body) = w.post(o, "/directory", json!({"path": "plugins/config"})).await;
    assert_eq!((status, body["kind"].as_str()), (StatusCode::CREATED, Some("directory")), "{body}");
    let (status, body) = w.post(o, "/rename", json!({"from": "server.properties", "to": "plugins/config/p.txt"})).await;
    assert_eq!((status, body["path"].as_str()), (StatusCode::OK, Some("plugins/config/p.txt")), "{body}");
    let (status, body) = w.post(o, "/copy", json!({"from": "plugins", "to": "plugins-copy"})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(std::fs::read(w.dir().join("plugins-copy/config/p.txt")).unwrap(), b"motd=hello\n");
    let (status, body) = w.post(o, "/chmod", json!({"path": "plugins-copy/config/p.txt", "mode": "600"})).await;
    assert_eq!((status, body["mode"].as_u64()), (StatusCode::OK, Some(0o600)), "{body}");
    let (status, body) = w.get(o, "/stat?path=plugins-copy/config/p.txt").await;
    assert_eq!((status, body["size"].as_u64()), (StatusCode::OK, Some(11)), "{body}");
    let (status, found) = w.get(o, "/search?query=P.TXT").await;
    assert_eq!(status, 200, "{found}");
    let mut paths: Vec<&str> =
        found["entries"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    paths.sort();
    assert_eq!(paths, ["plugins-copy/config/p.txt", "plugins/config/p.txt"]);
    assert_eq!(found["truncated"], false);

    // Archives.
    let (status, report) =
        w.post(o, "/compress", json!({"paths": ["plugins", "world"], "archive": "backup.tar.zst"})).await;
    assert_eq!(status, 201, "{report}");
    assert_eq!((report["files"].as_u64(), report["bytes"].as_u64()), (Some(2), Some(big.len() as u64 + 11)));
    let (status, report) = w.post(o, "/decompress", json!({"archive": "backup.tar.zst", "into": "unpacked"})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(std::fs::read(w.dir().join("unpacked/world/data.bin")).unwrap(), big);

    // Delete several at once.
    let (status, body) = w.post(o, "/delete", json!({"paths": ["unpacked", "plugins-copy", "backup.tar.zst"]})).await;
    assert_eq!(status, 204, "{body}");
    assert!(!w.dir().join("unpacked").exists() && !w.dir().join("plugins-copy").exists());

    // Every change and the downloads are audited with their paths.
    for action in [
        "file.write",
        "file.read",
        "file.mkdir",
        "file.rename",
        "file.copy",
        "file.chmod",
        "file.compress",
        "file.decompress",
        "file.delete",
    ] {
        let event = w.panel.last_audit(action).await;
        assert_eq!(event["result"], "success", "{action}: {event}");
        assert_eq!(event["server_id"], w.server.as_str(), "{action}: {event}");
    }
    let deleted = w.panel.last_audit("file.delete").await;
    assert_eq!(deleted["detail"]["paths"], json!(["unpacked", "plugins-copy", "backup.tar.zst"]), "{deleted}");
    assert_eq!(w.panel.audit_count("file.list").await, 0, "looking is not audited");
    let (status, headers, _) = w.download(o, "world/data.bin", Some(&format!("bytes={}-", big.len() + 1))).await;
    assert_eq!(status, 416, "a range past the end");
    assert_eq!(headers[header::ACCEPT_RANGES], "bytes");
    let _ = &w.node;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_file_operation_needs_its_permission_and_outsiders_see_nothing() {
    let w = World::new("files-perms", 1024).await;
    std::fs::write(w.dir().join("secret.txt"), b"s3cret").unwrap();
    let (_, viewer) = w.panel.user("viewer", &[]).await;
    let viewer_email = "viewer@example.org";
    w.panel.subuser(&w.server, viewer_email, &["SERVER_VIEW", "FILE_VIEW"]).await;
    let (_, stranger) = w.panel.user("stranger", &[]).await;

    let (status, listing) = w.get(&viewer, "").await;
    assert_eq!(status, 200, "{listing}");
    assert!(names(&listing).contains(&"secret.txt".to_string()));
    let (status, _, body) = w.download(&viewer, "secret.txt", None).await;
    assert_eq!(status, 403, "FILE_VIEW does not read: {}", String::from_utf8_lossy(&body));
    assert_error(&w.upload(&viewer, "new.txt", b"x".to_vec()).await, 403, "forbidden");
    assert_error(&w.post(&viewer, "/delete", json!({"paths": ["secret.txt"]})).await, 403, "forbidden");
    assert_error(
        &w.post(&viewer, "/compress", json!({"paths": ["secret.txt"], "archive": "a.zip"})).await,
        403,
        "forbidden",
    );
    assert_error(&w.post(&viewer, "/chmod", json!({"path": "secret.txt", "mode": "777"})).await, 403, "forbidden");
    assert!(!w.dir().join("new.txt").exists());
    assert_eq!(std::fs::read(w.dir().join("secret.txt")).unwrap(), b"s3cret");
    let denied = w.panel.last_audit("file.delete").await;
    assert_eq!(denied["result"], "denied", "{denied}");

    // Someone with no relation to the server: it does not exist for them.
    assert_error(&w.get(&stranger, "").await, 404, "not_found");
    let (status, _, _) = w.download(&stranger, "secret.txt", None).await;
    assert_eq!(status, 404);
    assert_error(&w.upload(&stranger, "x.txt", b"x".to_vec()).await, 404, "not_found");
    let _ = &w.owner_id;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_paths_links_and_bad_input_are_refused_and_change_nothing() {
    let w = World::new("files-hostile", 1024).await;
    let o = &w.owner;
    let canary_dir = scratch_dir("files-canary");
    let canary = canary_dir.join("canary.txt");
    std::fs::write(&canary, b"untouched").unwrap();
    // A game (or an archive) left links to outside in its directory.
    std::os::unix::fs::symlink(&canary, w.dir().join("link-to-canary")).unwrap();
    std::os::unix::fs::symlink(&canary_dir, w.dir().join("link-dir")).unwrap();

    // A leading `/` means the server's directory, as in the file manager's breadcrumbs.
    let system_passwd = std::fs::read("/etc/passwd").unwrap();
    let (status, entry) = w.upload(o, "/etc/passwd", b"inside".to_vec()).await;
    assert_eq!((status, entry["path"].as_str()), (StatusCode::OK, Some("etc/passwd")), "{entry}");
    assert_eq!(std::fs::read(w.dir().join("etc/passwd")).unwrap(), b"inside");
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), system_passwd);
    assert_eq!(w.post(o, "/delete", json!({"paths": ["/etc"]})).await.0, 204);

    for path in ["../../../../etc/passwd", "a/../../x", "link-to-canary", "link-dir/canary.txt", "link-dir"] {
        let (status, _, body) = w.download(o, path, None).await;
        assert!(matches!(status.as_u16(), 403 | 404 | 422), "{path}: {status} {}", String::from_utf8_lossy(&body));
        assert!(!String::from_utf8_lossy(&body).contains("untouched"), "{path} leaked the canary");
        let (status, body) = w.upload(o, path, b"overwritten".to_vec()).await;
        assert!(matches!(status.as_u16(), 403 | 404 | 422), "{path}: {status} {body}");
        let (status, body) = w.post(o, "/chmod", json!({"path": path, "mode": "777"})).await;
        assert!(matches!(status.as_u16(), 403 | 404 | 422), "{path}: {status} {body}");
        let (status, body) = w.get(o, &format!("?path={}", enc(path))).await;
        assert!(matches!(status.as_u16(), 403 | 404 | 422), "listing {path}: {status} {body}");
    }
    let (status, body) = w.post(o, "/rename", json!({"from": "installed.txt", "to": "link-dir/moved.txt"})).await;
    assert!(matches!(status.as_u16(), 403 | 422), "{status} {body}");
    // Copying a link copies the link, never what it points to.
    let (status, body) = w.post(o, "/copy", json!({"from": "link-to-canary", "to": "copied"})).await;
    assert_eq!((status, body["kind"].as_str()), (StatusCode::CREATED, Some("symlink")), "{body}");
    assert!(std::fs::symlink_metadata(w.dir().join("copied")).unwrap().file_type().is_symlink());
    assert_eq!(w.post(o, "/delete", json!({"paths": ["copied"]})).await.0, 204);
    // Deleting a link removes the link, never its target.
    assert_eq!(w.post(o, "/delete", json!({"paths": ["link-dir"]})).await.0, 204);
    assert_eq!(std::fs::read(&canary).unwrap(), b"untouched");
    assert_eq!(std::fs::read_dir(&canary_dir).unwrap().count(), 1, "nothing created beside the canary");
    assert!(std::fs::symlink_metadata(w.dir().join("link-to-canary")).unwrap().file_type().is_symlink());

    // Bad input: each a clear 4xx naming the problem.
    let (status, body) = w.panel.raw(Method::POST, &w.url("/directory"), o, "{\"path\": ", "application/json").await;
    assert_eq!(status, 400, "{body}");
    let msg =
        assert_error(&w.post(o, "/chmod", json!({"path": "installed.txt", "mode": "1777"})).await, 422, "invalid");
    assert!(msg.contains("mode"), "{msg}");
    let msg = assert_error(&w.post(o, "/chmod", json!({"path": "installed.txt", "mode": 644})).await, 422, "invalid");
    assert!(msg.contains("mode"), "{msg}");
    let msg = assert_error(&w.get(o, "?limit=0").await, 422, "invalid");
    assert!(msg.contains("limit"), "{msg}");
    let msg = assert_error(&w.get(o, "?path=a%00b").await, 422, "invalid");
    assert!(msg.contains("NUL"), "{msg}");
    let msg = assert_error(&w.post(o, "/delete", json!({"paths": []})).await, 422, "invalid");
    assert!(msg.contains("paths"), "{msg}");
    let msg = assert_error(&w.post(o, "/delete", json!({"paths": ["/"]})).await, 422, "invalid");
    assert!(msg.contains("server's directory itself"), "{msg}");
    let msg = assert_error(&w.post(o, "/directory", json!({"path": "a\nb"})).await, 422, "invalid");
    assert!(msg.contains("path"), "{msg}");
    let long = "a/".repeat(3000);
    let msg = assert_error(&w.post(o, "/directory", json!({"path": long})).await, 422, "invalid");
    assert!(msg.contains("longer"), "{msg}");
    let (status, _, body) = w.download(o, "installed.txt", Some("bytes=9-2")).await;
    assert_eq!(status, 422, "{}", String::from_utf8_lossy(&body));
    assert_error(&w.get(o, "/stat?path=no-such-file").await, 404, "not_found");
    let (status, body) = w.post(o, "/rename", json!({"from": "installed.txt", "to": "installed.txt"})).await;
    assert_eq!(status, 409, "{body}");
    let names_after = names(&w.get(o, "").await.1);
    assert_eq!(names_after, ["installed.txt", "link-to-canary"], "nothing was created or removed by bad input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_limit_refuses_an_upload_before_it_is_crossed_and_leaves_nothing() {
    let w = World::new("files-quota", 2).await;
    let o = &w.owner;
    let (status, body) = w.upload(o, "fits.bin", pattern(1024 * 1024)).await;
    assert_eq!(status, 200, "{body}");
    let msg = assert_error(&w.upload(o, "too-big.bin", pattern(3 * 1024 * 1024)).await, 409, "conflict");
    assert!(msg.contains("disk limit"), "{msg}");
    let left: Vec<String> =
        std::fs::read_dir(w.dir()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!left.iter().any(|n| n.starts_with("too-big") || n.starts_with(".cap-")), "{left:?}");
    let failed = w.panel.last_audit("file.write").await;
    assert_eq!(failed["result"], "failed", "{failed}");
    // Replacing the file with one as large still works at the limit, and a copy does not fit.
    assert_eq!(w.upload(o, "fits.bin", pattern(1024 * 1024)).await.0, 200);
    assert_error(&w.post(o, "/copy", json!({"from": "fits.bin", "to": "again.bin"})).await, 409, "conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_calls_to_an_offline_node_fail_fast_with_503() {
    let mut w = World::new("files-offline", 1024).await;
    w.agent.terminate().await;
    w.panel.wait_node(&w.node, false).await;
    let msg = assert_error(&w.get(&w.owner, "").await, 503, "unavailable");
    assert!(msg.contains("offline"), "{msg}");
    assert_error(&w.upload(&w.owner, "a.txt", b"x".to_vec()).await, 503, "unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_templates_file_denylist_is_enforced_for_every_operation() {
    let panel = TestPanel::start().await;
    let AgentNode { node, agent, .. } = panel.agent_node("files-deny", 2, &[]).await;
    let (owner_id, owner) = panel.user("owner", &[]).await;
    let game = cap_tests::e2e::workspace_bin("cap-test-game-server");
    let spec = json!({
        "name": "denying",
        "startup": format!("{} --port {{{{SERVER_PORT}}}}", game.display()),
        "stop": {"type": "signal", "value": "SIGTERM"},
        "file_denylist": ["secrets/", "*.key"],
    });
    let (status, body) = panel.post("/api/templates", &panel.admin().await, spec).await;
    assert_eq!(status, 200, "{body}");
    let template = body["id"].as_str().unwrap().to_string();
    let server = panel.server("denying", &owner_id, &node, &template).await;
    panel.wait_state(&server, "offline").await;
    let dir = agent.data_dir.join("servers").join(&server);
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::write(dir.join("secrets/token.txt"), b"t0ken").unwrap();
    std::fs::write(dir.join("tls.key"), b"k3y").unwrap();
    let url = |rest: &str| format!("/api/servers/{server}/files{rest}");

    let refused = |got: (StatusCode, Value), what: &str| {
        let msg = assert_error(&got, 403, "forbidden");
        assert!(msg.contains("denylist"), "{what}: {msg}");
    };
    refused(panel.get(&url("?path=secrets"), &owner).await, "list");
    refused(panel.get(&url("/stat?path=secrets/token.txt"), &owner).await, "stat");
    refused(panel.get(&url("/content?path=tls.key"), &owner).await, "read");
    refused(
        panel.raw(Method::PUT, &url("/content?path=conf/new.key"), &owner, "x", "application/octet-stream").await,
        "write",
    );
    refused(panel.post(&url("/delete"), &owner, json!({"paths": ["secrets"]})).await, "delete");
    refused(panel.post(&url("/rename"), &owner, json!({"from": "tls.key", "to": "public.txt"})).await, "rename from");
    refused(panel.post(&url("/copy"), &owner, json!({"from": "secrets/token.txt", "to": "t.txt"})).await, "copy");
    refused(panel.post(&url("/chmod"), &owner, json!({"path": "secrets", "mode": "777"})).await, "chmod");
    refused(panel.post(&url("/compress"), &owner, json!({"paths": ["secrets"], "archive": "s.zip"})).await, "compress");
    assert_eq!(std::fs::read(dir.join("secrets/token.txt")).unwrap(), b"t0ken");
    assert_eq!(std::fs::read(dir.join("tls.key")).unwrap(), b"k3y");
    // Everything else works as usual.
    let (status, body) =
        panel.raw(Method::PUT, &url("/content?path=notes.txt"), &owner, "fine", "application/octet-stream").await;
    assert_eq!(status, 200, "{body}");
    refused(
        panel.post(&url("/rename"), &owner, json!({"from": "notes.txt", "to": "secrets/notes.txt"})).await,
        "rename to",
    );
    let (status, listing) = panel.get(&url(""), &owner).await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(names(&listing), ["secrets", "notes.txt", "tls.key"], "listed, not opened");
    // An archive of a directory holding denied entries leaves them out.
    std::fs::create_dir_all(dir.join("data/secrets")).unwrap();
    std::fs::write(dir.join("data/secrets/inner.txt"), b"hidden").unwrap();
    std::fs::write(dir.join("data/app.key"), b"hidden").unwrap();
    std::fs::write(dir.join("data/ok.txt"), b"ok").unwrap();
    let (status, report) =
        panel.post(&url("/compress"), &owner, json!({"paths": ["data"], "archive": "data.tar.gz"})).await;
    assert_eq!((status.as_u16(), report["files"].as_u64()), (201, Some(1)), "{report}");
    let (status, body) =
        panel.post(&url("/decompress"), &owner, json!({"archive": "data.tar.gz", "into": "out"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(std::fs::read(dir.join("out/data/ok.txt")).unwrap(), b"ok");
    assert!(!dir.join("out/data/secrets").exists() && !dir.join("out/data/app.key").exists());
}
