//! The `cap-panel` binary end to end: first start, login, restart, config errors, the admin CLI.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_cap-panel");

fn scratch(tag: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running panel: the child, its address, and what it printed on stdout before listening.
struct Running {
    child: Child,
    addr: String,
    stdout_lines: Vec<String>,
}

/// Starts the panel on an OS-chosen port and reads its stdout up to the line saying where it
/// listens; the lines before it are kept.
fn start(dir: &Path, extra_env: &[(&str, &str)]) -> Running {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).env("CAP_LISTEN", "127.0.0.1:0").env("CAP_LOCAL_AGENT", "false").env_remove("CAP_CONFIG");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn cap-panel");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut stdout_lines = Vec::new();
    let mut addr = None;
    for line in stdout.lines() {
        let line = line.expect("stdout");
        if let Some(at) = line.strip_prefix("listening on http://") {
            addr = Some(at.to_string());
            break;
        }
        stdout_lines.push(line);
    }
    Running { child, addr: addr.expect("the panel said where it listens"), stdout_lines }
}

fn stop(mut r: Running) {
    let status = Command::new("kill").arg("-TERM").arg(r.child.id().to_string()).status().unwrap();
    assert!(status.success());
    let exit = r.child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
}

/// One HTTP/1.1 request; returns status and body.
fn http(addr: &str, method: &str, path: &str, bearer: Option<&str>, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    if let Some(t) = bearer {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}", b.len()));
    } else {
        req.push_str("\r\n");
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn login(addr: &str, email: &str, password: &str) -> (u16, String) {
    http(addr, "POST", "/api/auth/login", None, Some(&format!(r#"{{"email":"{email}","password":"{password}"}}"#)))
}

fn token(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

fn cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN).current_dir(dir).env_remove("CAP_CONFIG").args(args).output().unwrap()
}

#[test]
fn first_start_prints_the_admin_password_once_and_sessions_survive_a_restart() {
    let dir = scratch("first");
    let first = start(&dir, &[]);
    let line = first.stdout_lines.iter().find(|l| l.starts_with("created the first admin")).expect("admin line");
    let password = line.split("with password ").nth(1).unwrap().split(' ').next().unwrap().to_string();
    assert_eq!(password.len(), 24);
    assert_eq!(http(&first.addr, "GET", "/health", None, None).0, 200);
    let (status, body) = login(&first.addr, "admin@localhost.localdomain", &password);
    assert_eq!(status, 200, "{body}");
    let access = token(&body);
    assert_eq!(http(&first.addr, "GET", "/api/me", Some(&access), None).0, 200);
    stop(first);
    assert!(dir.join("data/cap.db").exists() && dir.join("data/jwt-secret").exists());

    let second = start(&dir, &[]);
    assert!(second.stdout_lines.is_empty(), "no second admin: {:?}", second.stdout_lines);
    let (status, _) = http(&second.addr, "GET", "/api/me", Some(&access), None);
    assert_eq!(status, 200, "the token secret and the session outlive a restart");
    stop(second);
}

#[test]
fn the_admin_password_can_come_from_the_environment() {
    let dir = scratch("envpw");
    let r = start(&dir, &[("CAP_ADMIN_EMAIL", "ops@example.org"), ("CAP_ADMIN_PASSWORD", "from the environment")]);
    assert_eq!(r.stdout_lines, vec!["created the first admin: ops@example.org with the configured password"]);
    assert_eq!(login(&r.addr, "ops@example.org", "from the environment").0, 200);
    stop(r);
}

#[test]
fn bad_configuration_stops_the_start_naming_the_key() {
    let dir = scratch("badcfg");
    let out = Command::new(BIN).current_dir(&dir).env("CAP_LISTEN", "not an address").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CAP_LISTEN") && err.contains("listen"), "{err}");

    std::fs::write(dir.join("cap.toml"), "listen = \"127.0.0.1:0\"\n[http]\nmax_body_byte = 5\n").unwrap();
    let out = Command::new(BIN).current_dir(&dir).env("CAP_CONFIG", "cap.toml").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `max_body_byte`") && err.contains("cap.toml"), "{err}");
    assert!(!dir.join("data").exists(), "nothing was created");
}

#[test]
fn the_user_commands_create_list_and_reset() {
    let dir = scratch("users");
    let out = cli(&dir, &["migrate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "applied 2 migration(s)");
    assert_eq!(String::from_utf8_lossy(&cli(&dir, &["migrate"]).stdout).trim(), "applied 0 migration(s)");

    let out = cli(&dir, &["user", "create", "--username", "ada", "--email", "Ada@Example.org", "--role", "moderator"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.starts_with("created user ada <ada@example.org> with roles moderator"), "{stdout}");
    let password = stdout.split("password: ").nth(1).unwrap().split(' ').next().unwrap().to_string();

    let out =
        cli(&dir, &["user", "create", "--username", "ada2", "--email", "ada@example.org", "--password", "long enough"]);
    assert!(!out.status.success(), "duplicate email refused");
    let out =
        cli(&dir, &["user", "create", "--username", "x", "--email", "x@example.org", "--password", "long enough"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("username"), "bad username named");

    let list = String::from_utf8_lossy(&cli(&dir, &["user", "list"]).stdout).to_string();
    assert!(
        list.lines().any(|l| l.contains("ada") && l.contains("ada@example.org") && l.ends_with("moderator")),
        "{list}"
    );

    let r = start(&dir, &[("CAP_ADMIN_PASSWORD", "unused admin pass")]);
    assert_eq!(login(&r.addr, "ada@example.org", &password).0, 200);
    let out = cli(&dir, &["user", "reset-password", "--email", "ada@example.org", "--password", "a brand new one"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("password of ada@example.org reset"));
    assert_eq!(login(&r.addr, "ada@example.org", &password).0, 401, "the old password no longer works");
    assert_eq!(login(&r.addr, "ada@example.org", "a brand new one").0, 200);
    stop(r);
}

/// Polls `check` every 20 ms until it gives `Some`; the deadline only guards against a hang.
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "timed out waiting until {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn json_of(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn with_no_setup_the_local_node_runs_a_game_server() {
    let game = Path::new(BIN).with_file_name("cap-test-game-server");
    assert!(game.exists(), "{} is built by `cargo test --workspace`", game.display());
    let dir = scratch("local");
    let r = start(&dir, &[("CAP_LOCAL_AGENT", "true"), ("CAP_ADMIN_PASSWORD", "local admin password")]);
    let admin = token(&login(&r.addr, "admin@localhost.localdomain", "local admin password").1);
    let node = eventually("the local node is connected", || {
        let nodes = json_of(&http(&r.addr, "GET", "/api/nodes", Some(&admin), None).1);
        let local = nodes["data"].as_array()?.iter().find(|n| n["name"] == "local")?.clone();
        (local["connected"] == true).then_some(local)
    });
    assert_eq!(node["agent"]["runtimes"], serde_json::json!(["process"]), "{node}");
    let node_id = node["id"].as_str().unwrap();

    let template = serde_json::json!({
        "name": "test game",
        "startup": format!("{} --port {{{{SERVER_PORT}}}}", game.display()),
        "stop": {"type": "command", "value": "stop"},
        "ready_patterns": [{"type": "contains", "value": "Done ("}]
    });
    let (status, body) = http(&r.addr, "POST", "/api/templates", Some(&admin), Some(&template.to_string()));
    assert_eq!(status, 200, "{body}");
    let template_id = json_of(&body)["id"].as_str().unwrap().to_string();
    let server = serde_json::json!({"name": "first", "node_id": node_id, "template_id": template_id});
    let (status, body) = http(&r.addr, "POST", "/api/servers", Some(&admin), Some(&server.to_string()));
    assert_eq!(status, 200, "{body}");
    let id = json_of(&body)["id"].as_str().unwrap().to_string();
    let state = |want: &str| {
        eventually(&format!("the server is {want}"), || {
            let s = json_of(&http(&r.addr, "GET", &format!("/api/servers/{id}"), Some(&admin), None).1);
            (s["state"] == want).then_some(())
        })
    };
    state("offline");
    let power = |action: &str| {
        let body = format!(r#"{{"action":"{action}"}}"#);
        http(&r.addr, "POST", &format!("/api/servers/{id}/power"), Some(&admin), Some(&body)).0
    };
    assert_eq!(power("start"), 202);
    state("running");
    let (status, body) =
        http(&r.addr, "POST", &format!("/api/servers/{id}/command"), Some(&admin), Some(r#"{"command":"list"}"#));
    assert_eq!(status, 202, "{body}");
    assert_eq!(power("stop"), 202);
    state("offline");
    stop(r);
}

/// The shared Redis of the tests (`CAP_TEST_REDIS_URL`), or `None` after printing why the test is
/// skipped; with `CAP_TEST_REQUIRE=1` a missing Redis fails the test instead.
fn redis_or_skip(test: &str) -> Option<(String, String)> {
    let url = std::env::var("CAP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let address = url.trim_start_matches("redis://").split('/').next().unwrap().rsplit('@').next().unwrap().to_string();
    if let Err(e) = TcpStream::connect(&address) {
        let required = matches!(std::env::var("CAP_TEST_REQUIRE").as_deref(), Ok("1") | Ok("true"));
        assert!(!required, "{test}: no Redis at {url} ({e}), and CAP_TEST_REQUIRE=1 requires it");
        eprintln!("skipped: {test}: no Redis at {url} ({e}); set CAP_TEST_REQUIRE=1 to fail instead");
        return None;
    }
    Some((url, address))
}

/// One Redis command over a fresh connection (RESP by hand); returns the first reply line.
fn redis_command(address: &str, args: &[&str]) -> String {
    let mut s = TcpStream::connect(address).unwrap();
    let mut command = format!("*{}\r\n", args.len());
    for a in args {
        command.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(command.as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

fn unique_tag() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}-{nanos}", std::process::id())
}

#[test]
fn with_a_redis_cache_the_panel_starts_and_logs_in() {
    let Some((url, address)) = redis_or_skip("with_a_redis_cache_the_panel_starts_and_logs_in") else { return };
    let prefix = format!("cap-test:panel-{}:", unique_tag());
    let dir = scratch("redis");
    let r = start(
        &dir,
        &[("CAP_CACHE_URL", &url), ("CAP_CACHE_PREFIX", &prefix), ("CAP_ADMIN_PASSWORD", "redis admin password")],
    );
    let (status, body) = login(&r.addr, "admin@localhost.localdomain", "redis admin password");
    assert_eq!(status, 200, "{body}");
    assert_eq!(http(&r.addr, "GET", "/api/me", Some(&token(&body)), None).0, 200);
    assert_eq!(http(&r.addr, "GET", "/ready", None, None).0, 200, "the database and the Redis cache answer");
    // The writes of the first start bumped the database generation, which lives in Redis.
    let generation_key = format!("{prefix}cap:db:generation");
    assert_eq!(redis_command(&address, &["EXISTS", &generation_key]), ":1", "the panel keeps its state in Redis");
    stop(r);
    redis_command(&address, &["DEL", &generation_key]);
}

#[test]
fn an_unreachable_redis_stops_the_start_naming_cache_url() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = scratch("noredis");
    let started = std::time::Instant::now();
    let out = Command::new(BIN)
        .current_dir(&dir)
        .env_remove("CAP_CONFIG")
        .env("CAP_LISTEN", "127.0.0.1:0")
        .env("CAP_LOCAL_AGENT", "false")
        .env("CAP_CACHE_URL", format!("redis://127.0.0.1:{closed_port}"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "the panel must not start without its cache");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config key `cache_url`") && err.contains("the cache (redis) is unreachable"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"), "it never listened");
}

#[test]
fn db_copy_moves_a_panel_to_another_database_and_refuses_a_full_one() {
    let dir = scratch("copy");
    let out = cli(
        &dir,
        &["user", "create", "--username", "ada", "--email", "ada@example.org", "--password", "ada's password"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let from = format!("sqlite://{}", dir.join("data/cap.db").display());
    let to = format!("sqlite://{}", dir.join("moved.db").display());

    let out = cli(&dir, &["db", "copy", "--from", &from, "--to", &to]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.lines().any(|l| l.starts_with("users ") && l.contains(" 1 rows  sha256 ")), "{stdout}");
    assert!(stdout.trim_end().ends_with("from sqlite to sqlite; counts and checksums match"), "{stdout}");

    let out = cli(&dir, &["db", "copy", "--from", &from, "--to", &to]);
    assert!(!out.status.success(), "a target holding data is refused");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(stderr.contains("already holds data") && stderr.contains("--overwrite"), "{stderr}");
    let out = cli(&dir, &["db", "copy", "--from", &from, "--to", &to, "--overwrite"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out = cli(&dir, &["db", "copy", "--from", "nosuch://x", "--to", &to]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && stderr.contains("--from") && stderr.contains("unknown scheme"), "{stderr}");

    // The panel runs on the copy, and the user's password came across.
    let r = start(&dir, &[("CAP_DATABASE_URL", &to), ("CAP_ADMIN_PASSWORD", "unused admin pass")]);
    assert_eq!(login(&r.addr, "ada@example.org", "ada's password").0, 200);
    stop(r);
}
