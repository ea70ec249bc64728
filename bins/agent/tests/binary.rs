//! The `cap-agent` binary: configuration errors that name the setting, and a clean exit on
//! SIGTERM while it is still trying to reach a panel.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_cap-agent");

fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("agent-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(envs: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn bad_settings_stop_the_start_naming_the_setting() {
    let dir = scratch("bad");
    let data = dir.display().to_string();
    let (ok, err) = run(&[("CAP_NODE_TOKEN", "capn_x"), ("CAP_DATA_DIR", &data)]);
    assert!(!ok && err.contains("--panel-url"), "{err}");
    let (ok, err) = run(&[("CAP_PANEL_URL", "http://127.0.0.1:1"), ("CAP_NODE_TOKEN", " "), ("CAP_DATA_DIR", &data)]);
    assert!(!ok && err.contains("CAP_NODE_TOKEN is empty"), "{err}");
    let (ok, err) = run(&[
        ("CAP_PANEL_URL", "http://127.0.0.1:1"),
        ("CAP_NODE_TOKEN", "capn_x"),
        ("CAP_DATA_DIR", &data),
        ("CAP_RUN_AS", "root"),
    ]);
    assert!(!ok && err.contains("CAP_RUN_AS") && err.contains("refusing to run games as root"), "{err}");
    let (ok, err) = run(&[
        ("CAP_PANEL_URL", "http://127.0.0.1:1"),
        ("CAP_NODE_TOKEN", "capn_x"),
        ("CAP_DATA_DIR", &data),
        ("CAP_CONSOLE_LINES_PER_SECOND", "0"),
    ]);
    assert!(!ok && err.contains("CAP_CONSOLE_LINES_PER_SECOND"), "{err}");
}

#[test]
fn sigterm_ends_an_agent_that_cannot_reach_its_panel() {
    let dir = scratch("term");
    // A port nobody listens on: the agent keeps retrying with backoff.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut child = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CAP_PANEL_URL", format!("http://{closed}"))
        .env("CAP_NODE_TOKEN", "capn_unused")
        .env("CAP_DATA_DIR", &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("cap-agent started"), "{line}");
    assert!(dir.join("agent/servers").is_dir(), "the agent's state directory exists");
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "SIGTERM is a clean exit: {exit:?}");
}
