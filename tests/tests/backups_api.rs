//! Backups end to end: REST calls to the panel, made, listed, locked, downloaded, restored and
//! deleted by a real `cap-agent` on its own disk, progress on the live socket.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use cap_tests::e2e::{AgentNode, AgentProcess, live_connect, wait_until};
use cap_tests::{Cred, TestPanel, assert_error, noise, test_auth_config};
use capcore::panel::PanelConfig;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

struct World {
    panel: TestPanel,
    addr: SocketAddr,
    agent: AgentProcess,
    owner: Cred,
    server: String,
}

impl World {
    async fn new(tag: &str, config: PanelConfig) -> World {
        Self::with_agent(tag, config, &[]).await
    }

    /// With more `CAP_*` settings for the agent.
    async fn with_agent(tag: &str, config: PanelConfig, settings: &[(&str, &str)]) -> World {
        let panel = TestPanel::start_with(test_auth_config(), config).await;
        let AgentNode { addr, node, agent, .. } = panel.agent_node(tag, 4, settings).await;
        let (owner_id, owner) = panel.user("owner", &[]).await;
        let template =
            panel.game_template(&format!("{tag}-game"), &[], json!({"type": "command", "value": "stop"})).await;
        let server = panel.server(tag, &owner_id, &node, &template).await;
        panel.wait_state(&server, "offline").await;
        World { panel, addr, agent, owner, server }
    }

    fn dir(&self) -> PathBuf {
        self.agent.data_dir.join("servers").join(&self.server)
    }

    fn backups_dir(&self) -> PathBuf {
        self.agent.data_dir.join("backups").join(&self.server)
    }

    fn url(&self, rest: &str) -> String {
        format!("/api/servers/{}/backups{rest}", self.server)
    }

    async fn create(&self, cred: &Cred, name: &str) -> (StatusCode, Value) {
        self.panel.post(&self.url(""), cred, json!({"name": name})).await
    }

    async fn list(&self) -> Vec<Value> {
        let (status, body) = self.panel.get(&self.url(""), &self.owner).await;
        assert_eq!(status, 200, "{body}");
        body.as_array().unwrap().clone()
    }

    /// Waits until the backup is no longer running; returns its record.
    async fn finished(&self, id: &str) -> Value {
        wait_until(&format!("backup {id} ends"), || async {
            self.list().await.into_iter().find(|b| b["id"] == id && b["status"] != "running")
        })
        .await
    }

    async fn made(&self, name: &str) -> Value {
        let (status, body) = self.create(&self.owner, name).await;
        assert_eq!(status, 202, "{body}");
        let done = self.finished(body["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "done", "{done}");
        done
    }

    async fn download(&self, cred: &Cred, id: &str) -> (StatusCode, Vec<u8>) {
        let mut req = Request::builder().method(Method::GET).uri(self.url(&format!("/{id}/download")));
        if let Cred::Bearer(t) = cred {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let (status, _, bytes) = self.panel.send_for_bytes(req.body(Body::empty()).unwrap()).await;
        (status, bytes)
    }
}

fn config(min_interval: Duration, keep: Option<u32>) -> PanelConfig {
    PanelConfig { backup_min_interval: min_interval, backup_keep: keep, ..PanelConfig::default() }
}

fn sha256_hex(bytes: &[u8]) -> String {
    capagent::files::sha256_of(&mut &bytes[..]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_is_made_with_progress_downloaded_and_restored_atomically() {
    let w = World::new("backup-cycle", config(Duration::ZERO, None)).await;
    std::fs::create_dir_all(w.dir().join("world")).unwrap();
    let level = noise(3 * 1024 * 1024, 7);
    std::fs::write(w.dir().join("world/level.dat"), &level).unwrap();
    std::fs::write(w.dir().join("cache.tmp"), b"scratch").unwrap();
    std::fs::write(w.dir().join(".capignore"), b"*.tmp\n").unwrap();

    let mut live = live_connect(w.addr, &w.server, &w.owner).await.expect("live socket");
    let (status, started) = w.create(&w.owner, "before the update").await;
    assert_eq!(status, 202, "{started}");
    assert_eq!((started["status"].as_str(), started["name"].as_str()), (Some("running"), Some("before the update")));
    let id = started["id"].as_str().unwrap().to_string();
    // The live socket carries the backup's progress and its end.
    let done = live
        .until("the backup's end on the live socket", |f| {
            f["type"] == "backup" && f["backup"]["id"] == id.as_str() && f["backup"]["status"] == "done"
        })
        .await;
    let record = w.finished(&id).await;
    assert_eq!(record, done["backup"], "the socket and the list agree");
    assert!(record["bytes"].as_u64().unwrap() > 1024 * 1024, "{record}");
    assert_eq!(record["files"], 3, "level.dat, .capignore and installed.txt; cache.tmp is ignored: {record}");
    assert_eq!(w.panel.last_audit("backup.create").await["result"], "success");

    let (status, archive) = w.download(&w.owner, &id).await;
    assert_eq!(status, 200);
    assert_eq!(archive.len() as u64, record["bytes"].as_u64().unwrap());
    assert_eq!(sha256_hex(&archive), record["sha256"].as_str().unwrap(), "the download is the recorded archive");

    // The game changes its world; the backup puts it back, whole.
    std::fs::write(w.dir().join("world/level.dat"), b"ruined").unwrap();
    std::fs::write(w.dir().join("world/new.dat"), b"new").unwrap();
    let (status, body) = w.panel.post(&w.url(&format!("/{id}/restore")), &w.owner, json!({})).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(std::fs::read(w.dir().join("world/level.dat")).unwrap(), level);
    assert!(!w.dir().join("world/new.dat").exists(), "a restore replaces the directory, not merges into it");
    assert!(!w.dir().join("cache.tmp").exists(), "ignored files were not in the backup");
    live.until_line("backup restored").await;
    // The file manager sees the restored directory.
    let (status, listing) = w.panel.get(&format!("/api/servers/{}/files?path=world", w.server), &w.owner).await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["total"], 1, "{listing}");

    // A restore needs the server stopped.
    assert_eq!(
        w.panel.post(&format!("/api/servers/{}/power", w.server), &w.owner, json!({"action": "start"})).await.0,
        202
    );
    w.panel.wait_state(&w.server, "running").await;
    let msg =
        assert_error(&w.panel.post(&w.url(&format!("/{id}/restore")), &w.owner, json!({})).await, 409, "conflict");
    assert!(msg.contains("stop the server"), "{msg}");
    assert_eq!(
        w.panel.post(&format!("/api/servers/{}/power", w.server), &w.owner, json!({"action": "stop"})).await.0,
        202
    );
    w.panel.wait_state(&w.server, "offline").await;

    // A corrupt archive is refused by its checksum and changes nothing.
    let archive_path = w.backups_dir().join(format!("{id}.tar.zst"));
    let mut bytes = std::fs::read(&archive_path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&archive_path, &bytes).unwrap();
    std::fs::write(w.dir().join("world/level.dat"), b"current").unwrap();
    let msg =
        assert_error(&w.panel.post(&w.url(&format!("/{id}/restore")), &w.owner, json!({})).await, 409, "conflict");
    assert!(msg.contains("corrupt or truncated"), "{msg}");
    assert_eq!(std::fs::read(w.dir().join("world/level.dat")).unwrap(), b"current");
    assert_eq!(w.panel.last_audit("backup.restore").await["result"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_retention_rate_and_one_at_a_time_hold() {
    let w = World::new("backup-rules", config(Duration::ZERO, Some(2))).await;
    let first = w.made("first").await;
    let first_id = first["id"].as_str().unwrap();
    let (status, locked) = w.panel.post(&w.url(&format!("/{first_id}/lock")), &w.owner, json!({"locked": true})).await;
    assert_eq!((status, locked["locked"].as_bool()), (StatusCode::OK, Some(true)), "{locked}");
    let msg = assert_error(&w.panel.delete(&w.url(&format!("/{first_id}")), &w.owner).await, 409, "conflict");
    assert!(msg.contains("locked"), "{msg}");
    for name in ["second", "third", "fourth"] {
        w.made(name).await;
    }
    let names: Vec<String> = w.list().await.iter().map(|b| b["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["fourth", "third", "first"], "keep 2, and the locked one");
    let archives = std::fs::read_dir(w.backups_dir())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "zst"))
        .count();
    assert_eq!(archives, 3, "pruned backups' archives are gone");
    assert_eq!(w.panel.post(&w.url(&format!("/{first_id}/lock")), &w.owner, json!({"locked": false})).await.0, 200);
    assert_eq!(w.panel.delete(&w.url(&format!("/{first_id}")), &w.owner).await.0, 204);
    assert_eq!(w.list().await.len(), 2);

    // One at a time: a second backup while one runs is refused (the first has 128 MiB to pack).
    std::fs::write(w.dir().join("big.bin"), noise(128 * 1024 * 1024, 3)).unwrap();
    let (status, running) = w.create(&w.owner, "big").await;
    assert_eq!(status, 202, "{running}");
    let msg = assert_error(&w.create(&w.owner, "overlapping").await, 409, "conflict");
    assert!(msg.contains("already being made"), "{msg}");
    assert_eq!(w.finished(running["id"].as_str().unwrap()).await["status"], "done");

    // Deleting the server deletes its backups.
    assert_eq!(w.panel.delete(&format!("/api/servers/{}", w.server), &w.panel.admin().await).await.0, 204);
    wait_until("the server's backups are gone", || async { (!w.backups_dir().exists()).then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_permissions_and_bad_ids_are_enforced() {
    let w = World::new("backup-perms", config(Duration::from_secs(3600), None)).await;
    let made = w.made("only").await;
    let id = made["id"].as_str().unwrap();
    let msg = assert_error(&w.create(&w.owner, "too soon").await, 409, "conflict");
    assert!(msg.contains("try again in"), "{msg}");

    let (_, viewer) = w.panel.user("viewer", &[]).await;
    w.panel.subuser(&w.server, "viewer@example.org", &["SERVER_VIEW", "BACKUP_VIEW"]).await;
    let (status, listed) = w.panel.get(&w.url(""), &viewer).await;
    assert_eq!((status, listed.as_array().map(Vec::len)), (StatusCode::OK, Some(1)), "{listed}");
    assert_error(&w.create(&viewer, "mine").await, 403, "forbidden");
    assert_eq!(w.download(&viewer, id).await.0, 403);
    assert_error(&w.panel.post(&w.url(&format!("/{id}/restore")), &viewer, json!({})).await, 403, "forbidden");
    assert_error(&w.panel.delete(&w.url(&format!("/{id}")), &viewer).await, 403, "forbidden");
    assert_error(
        &w.panel.post(&w.url(&format!("/{id}/lock")), &viewer, json!({"locked": true})).await,
        403,
        "forbidden",
    );
    assert_eq!(w.panel.last_audit("backup.delete").await["result"], "denied");
    let (_, stranger) = w.panel.user("stranger", &[]).await;
    assert_error(&w.panel.get(&w.url(""), &stranger).await, 404, "not_found");

    // Ids that are not backup ids, or of no backup: not found, nothing touched.
    for bad in ["..%2F..%2Fetc", "not-a-uuid", "00000000-0000-4000-8000-000000000000"] {
        assert_error(&w.panel.delete(&w.url(&format!("/{bad}")), &w.owner).await, 404, "not_found");
        assert_eq!(w.download(&w.owner, bad).await.0, 404, "{bad}");
    }
    let msg = assert_error(&w.panel.post(&w.url(""), &w.owner, json!({"name": "a\u{7}b"})).await, 422, "invalid");
    assert!(msg.contains("name"), "{msg}");
    assert_error(&w.panel.post(&w.url(""), &w.owner, json!({"name": 5})).await, 422, "invalid");
    assert_error(
        &w.panel.post(&w.url(&format!("/{id}/lock")), &w.owner, json!({"locked": "yes"})).await,
        422,
        "invalid",
    );
    assert_eq!(w.list().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_hooks_tell_a_running_game_before_and_after_its_backup() {
    let panel = TestPanel::start_with(test_auth_config(), config(Duration::ZERO, None)).await;
    let AgentNode { addr, node, agent: _agent, .. } = panel.agent_node("backup-hooks", 2, &[]).await;
    let (owner_id, owner) = panel.user("owner", &[]).await;
    let admin = panel.admin().await;
    let game = cap_tests::e2e::workspace_bin("cap-test-game-server");
    let mut spec = json!({
        "name": "hooked",
        "startup": format!("{} --port {{{{SERVER_PORT}}}}", game.display()),
        "stop": {"type": "command", "value": "stop"},
        "ready_patterns": [{"type": "contains", "value": "Done ("}],
        "backup_hooks": {"before": ["say saving-off", "say flushing"], "wait_for": "[Server] flushing", "after": ["say saving-on"]},
    });
    // Hooks are validated like everything else in a template.
    spec["backup_hooks"]["after"] = json!(["say a\nstop"]);
    let msg = assert_error(&panel.post("/api/templates", &admin, spec.clone()).await, 422, "invalid");
    assert!(msg.contains("backup_hooks.after[0]"), "{msg}");
    spec["backup_hooks"]["after"] = json!(["say saving-on"]);
    let (status, body) = panel.post("/api/templates", &admin, spec).await;
    assert_eq!(status, 200, "{body}");
    let server = panel.server("hooked", &owner_id, &node, body["id"].as_str().unwrap()).await;
    panel.wait_state(&server, "offline").await;
    let mut live = live_connect(addr, &server, &owner).await.expect("live socket");
    // A subuser who watches the console but may not see backups.
    let (_, watcher) = panel.user("watcher", &[]).await;
    panel.subuser(&server, "watcher@example.org", &["SERVER_VIEW", "SERVER_CONSOLE"]).await;
    let mut watching = live_connect(addr, &server, &watcher).await.expect("the watcher's live socket");
    assert_eq!(panel.post(&format!("/api/servers/{server}/power"), &owner, json!({"action": "start"})).await.0, 202);
    live.until_state("running").await;

    let (status, started) = panel.post(&format!("/api/servers/{server}/backups"), &owner, json!({})).await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    live.until_line("[Server] saving-off").await;
    live.until_line("[Server] flushing").await;
    live.until("the backup's end", |f| {
        f["type"] == "backup" && f["backup"]["id"] == id.as_str() && f["backup"]["status"] == "done"
    })
    .await;
    live.until_line("[Server] saving-on").await;
    assert!(
        !live.console_lines().iter().any(|l| l.contains("backing up anyway")),
        "the game answered in time: {:?}",
        live.console_lines()
    );
    // The watcher saw the game's lines around the backup, published after its progress, and
    // none of the backup's frames.
    watching.until_line("[Server] saving-on").await;
    assert!(!watching.seen.iter().any(|f| f["type"] == "backup"), "no backup frame without BACKUP_VIEW");
    assert!(live.seen.iter().any(|f| f["type"] == "backup"), "the owner got them");
    assert_eq!(panel.post(&format!("/api/servers/{server}/power"), &owner, json!({"action": "stop"})).await.0, 202);
    live.until_state("offline").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_kept_in_s3_are_downloaded_restored_pruned_and_deleted_there() {
    let Some(moto) = cap_tests::moto::Moto::start() else { return };
    let bucket = moto.bucket("cap-backups", "node-a/").await;
    let s3 = moto.config("cap-backups", "node-a/");
    let settings = [
        ("CAP_BACKUP_S3_ENDPOINT", s3.endpoint.as_str()),
        ("CAP_BACKUP_S3_BUCKET", s3.bucket.as_str()),
        ("CAP_BACKUP_S3_ACCESS_KEY", s3.access_key.as_str()),
        ("CAP_BACKUP_S3_SECRET_KEY", s3.secret_key.as_str()),
        ("CAP_BACKUP_S3_PREFIX", s3.prefix.as_str()),
    ];
    let w = World::with_agent("backup-s3", config(Duration::ZERO, Some(1)), &settings).await;
    std::fs::create_dir_all(w.dir().join("world")).unwrap();
    let level = noise(2 * 1024 * 1024, 11);
    std::fs::write(w.dir().join("world/level.dat"), &level).unwrap();

    let first = w.made("in the bucket").await;
    let id = first["id"].as_str().unwrap();
    let key = format!("node-a/{}/{id}.tar.zst", w.server);
    assert_eq!(first["location"], format!("s3://cap-backups/{key}"), "{first}");
    let (len, _) = bucket.get(&key).await.expect("the object is in the bucket");
    assert_eq!(json!(len), first["bytes"]);
    let local: Vec<_> = std::fs::read_dir(w.backups_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(local, [format!("{id}.json")], "only the record stays on the node");

    // Downloaded through panel and agent from the bucket, byte for byte.
    let (status, bytes) = w.download(&w.owner, id).await;
    assert_eq!(status, 200);
    assert_eq!(json!(sha256_hex(&bytes)), first["sha256"]);

    // Restored from the bucket (fetched, checked, swapped in); the fetched copy is gone after.
    std::fs::write(w.dir().join("world/level.dat"), b"changed").unwrap();
    let (status, body) = w.panel.post(&w.url(&format!("/{id}/restore")), &w.owner, json!({})).await;
    assert_eq!(status, 204, "{body}");
    assert!(std::fs::read(w.dir().join("world/level.dat")).unwrap() == level, "the level came back");
    assert_eq!(std::fs::read_dir(w.backups_dir()).unwrap().count(), 1, "no fetched copy left");

    // Retention (keep 1) deletes the older backup's object too.
    let second = w.made("newer").await;
    let second_key = format!("node-a/{}/{}.tar.zst", w.server, second["id"].as_str().unwrap());
    wait_until("the pruned backup's object is deleted", || async {
        matches!(bucket.get(&key).await, Err(capcore::Error::NotFound { .. })).then_some(())
    })
    .await;
    assert_eq!(w.list().await.len(), 1);
    // Deleting a backup deletes its object.
    let second_id = second["id"].as_str().unwrap();
    assert_eq!(w.panel.delete(&w.url(&format!("/{second_id}")), &w.owner).await.0, 204);
    assert!(matches!(bucket.get(&second_key).await, Err(capcore::Error::NotFound { .. })));
    assert!(w.list().await.is_empty());

    // The bucket gone: a backup fails saying so, and nothing is left on the node.
    drop(moto);
    let (status, started) = w.create(&w.owner, "nowhere to go").await;
    assert_eq!(status, 202, "{started}");
    let failed = w.finished(started["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("cannot store the backup at s3://cap-backups/"), "{failed}");
    assert!(
        std::fs::read_dir(w.backups_dir()).unwrap().all(|e| e.unwrap().path().extension().is_some_and(|x| x == "json")),
        "no archive left behind"
    );
}
