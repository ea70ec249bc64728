//! Install scripts run by the process runtime: in the server directory, with the server's
//! environment, framed in its console, and refused while the game runs.

mod support;

use capagent::ProcessRuntime;
use capcore::backend::{Runtime, RuntimeStatus};
use capcore::template::StopAction;
use std::time::Duration;
use support::{config, spec, started};

#[tokio::test]
async fn an_install_script_runs_in_the_server_directory_with_its_environment() {
    let cfg = config("install");
    let rt = ProcessRuntime::new(cfg.clone());
    let s = spec(&[], StopAction::Command("stop".into()));
    let id = s.server_id;
    rt.create(s).await.unwrap();
    let script = r#"echo "dir=$SERVER_DIR"; pwd; echo "greeting=$GREETING"
echo "cargo=${CARGO_MANIFEST_DIR:-unset}"; echo "args=$#"
echo oops >&2
printf 'no newline at the end'
touch installed.txt; exit 7"#;
    let status = rt.install(id, script, "sh").await.unwrap();
    assert_eq!(status, RuntimeStatus::Exited { code: Some(7), signal: None });
    let server_dir = cfg.servers_dir.join(id.to_string());
    assert!(server_dir.join("installed.txt").exists(), "it ran in the server directory");
    let replay = rt.subscribe(id).unwrap().replay;
    let dir = server_dir.display().to_string();
    assert_eq!(replay.first().map(String::as_str), Some("[cap] install started"));
    assert_eq!(replay.last().map(String::as_str), Some("[cap] install finished with code 7"));
    for want in [
        format!("dir={dir}"),
        dir.clone(),
        "greeting=hi there".into(),
        "cargo=unset".into(),
        "args=0".into(),
        "oops".into(),
        "no newline at the end".into(),
    ] {
        assert!(replay.contains(&want), "{want} in {replay:?}");
    }
    let kept = std::fs::read_to_string(cfg.state_dir.join(id.to_string()).join("install.sh")).unwrap();
    assert_eq!(kept, script, "the script is kept in the agent's state directory");
    rt.remove(id).await.unwrap();
}

#[tokio::test]
async fn an_install_is_refused_while_the_game_runs_and_a_missing_entrypoint_is_invalid() {
    let rt = ProcessRuntime::new(config("install-conflict"));
    let (id, _game) = started(&rt, spec(&[], StopAction::Command("stop".into()))).await;
    let err = rt.install(id, "echo never", "sh").await.unwrap_err();
    assert!(matches!(err, capcore::Error::Conflict { .. }), "{err}");
    rt.stop(id, Duration::from_secs(10)).await.unwrap();
    let err = rt.install(id, "echo never", "no-such-shell").await.unwrap_err();
    assert!(matches!(err, capcore::Error::Invalid(_)), "{err}");
    assert!(err.to_string().contains("no-such-shell"), "{err}");
    // After an install the game starts as usual.
    let status = rt.install(id, "echo ok", "/bin/sh").await.unwrap();
    assert_eq!(status, RuntimeStatus::Exited { code: Some(0), signal: None });
    rt.start(id).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), rt.wait_ready(id)).await.unwrap().unwrap();
    rt.stop(id, Duration::from_secs(10)).await.unwrap();
    rt.remove(id).await.unwrap();
}
