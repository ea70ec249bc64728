//! `Agent::execute` without a panel: the node check, typed refusals, and a server's life through
//! protocol commands, with the real test game server.

mod support;

use capagent::{Agent, AgentConfig};
use capcore::ids::{NodeId, ServerId};
use capcore::protocol::v1::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn node() -> NodeId {
    NodeId("0a0a0a0a-0000-4000-8000-000000000001".parse().unwrap())
}

fn spec(node_id: NodeId) -> ServerSpec {
    ServerSpec {
        server_id: ServerId(uuid::Uuid::new_v4()),
        node_id,
        argv: vec![support::game(), "--port".into(), "27016".into()],
        environment: Default::default(),
        limits: WireLimits { memory_mb: 256, swap_mb: 0, cpu_percent: 100, disk_mb: 0, io_weight: 500, pids: 64 },
        stop: WireStop::Command("stop".into()),
        ready_patterns: vec![WireReadyPattern::Contains("Done (".into())],
        install: Some(WireInstall { script: "echo installed > marker\n".into(), entrypoint: "sh".into(), image: None }),
        image: None,
        file_denylist: Vec::new(),
        backup_hooks: None,
        ports: Vec::new(),
    }
}

async fn agent(tag: &str) -> (Agent, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("capagent-agent-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The node this agent belongs to, as a panel's welcome would have recorded it.
    std::fs::create_dir_all(dir.join("agent/servers")).unwrap();
    std::fs::write(dir.join("agent/node.json"), format!("{{\"node_id\":\"{}\"}}", node())).unwrap();
    let mut config = AgentConfig::new("http://127.0.0.1:9", "capn_unused", &dir);
    config.runtime.cgroup_parent = "/capagent-tests".into();
    (Agent::start(config).await.unwrap(), dir)
}

fn code(outcome: &Outcome) -> Option<ErrorCode> {
    match outcome {
        Outcome::Ok | Outcome::Data { .. } => None,
        Outcome::Error { code, .. } => Some(*code),
    }
}

#[tokio::test]
async fn specs_of_another_node_and_unknown_servers_are_refused() {
    let (agent, dir) = agent("refuse").await;
    assert_eq!(agent.node_id(), Some(node()));
    let foreign = spec(NodeId("0b0b0b0b-0000-4000-8000-000000000002".parse().unwrap()));
    let id = foreign.server_id;
    assert_eq!(
        code(&agent.execute(Command::Create { server: Box::new(foreign.clone()) }, T).await),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code(&agent.execute(Command::Sync { servers: vec![foreign], keep: vec![] }, T).await),
        Some(ErrorCode::Forbidden)
    );
    assert!(agent.servers().is_empty(), "nothing was created");
    assert!(!dir.join("servers").join(id.to_string()).exists());
    for command in [
        Command::Start { server_id: id },
        Command::Install { server_id: id },
        Command::Kill { server_id: id },
        Command::SendCommand { server_id: id, line: "say hi".into() },
    ] {
        assert_eq!(code(&agent.execute(command, T).await), Some(ErrorCode::NotFound));
    }
    let mut empty = spec(node());
    empty.argv.clear();
    assert_eq!(code(&agent.execute(Command::Create { server: Box::new(empty) }, T).await), Some(ErrorCode::Invalid));
    let mut bad = spec(node());
    bad.stop = WireStop::Signal("SIGNOPE".into());
    assert_eq!(code(&agent.execute(Command::Create { server: Box::new(bad) }, T).await), Some(ErrorCode::Invalid));
}

#[tokio::test]
async fn a_server_lives_through_protocol_commands() {
    let (agent, dir) = agent("life").await;
    let spec = spec(node());
    let id = spec.server_id;
    assert_eq!(agent.execute(Command::Create { server: Box::new(spec) }, T).await, Outcome::Ok);
    let mut console = agent.subscribe(id).unwrap();
    assert_eq!(agent.execute(Command::Install { server_id: id }, T).await, Outcome::Ok);
    support::line_matching(&mut console, |l| l.contains("install finished with code 0")).await;
    let marker = dir.join("servers").join(id.to_string()).join("marker");
    assert_eq!(std::fs::read_to_string(marker).unwrap(), "installed\n");

    assert_eq!(agent.execute(Command::Start { server_id: id }, T).await, Outcome::Ok);
    assert_eq!(code(&agent.execute(Command::Start { server_id: id }, T).await), Some(ErrorCode::Conflict));
    support::line_matching(&mut console, |l| l.contains("Done (")).await;
    assert_eq!(
        agent.execute(Command::SendCommand { server_id: id, line: "say via protocol".into() }, T).await,
        Outcome::Ok
    );
    support::line_matching(&mut console, |l| l == "[Server] via protocol").await;
    assert_eq!(agent.execute(Command::Stop { server_id: id, grace_ms: 10_000 }, T).await, Outcome::Ok);
    support::line_matching(&mut console, |l| l.contains("exited with code 0")).await;

    assert_eq!(agent.execute(Command::Delete { server_id: id }, T).await, Outcome::Ok);
    assert!(agent.servers().is_empty());
    assert!(!dir.join("servers").join(id.to_string()).exists(), "its directory is gone");
    assert!(!dir.join("agent/servers").join(format!("{id}.json")).exists(), "its record is gone");
    assert_eq!(agent.execute(Command::Delete { server_id: id }, T).await, Outcome::Ok, "deleting twice is fine");
}

#[tokio::test]
async fn a_sync_removes_only_servers_neither_listed_nor_kept() {
    let (agent, dir) = agent("sync").await;
    let (listed, kept, dropped) = (spec(node()), spec(node()), spec(node()));
    for s in [&listed, &kept, &dropped] {
        assert_eq!(agent.execute(Command::Create { server: Box::new(s.clone()) }, T).await, Outcome::Ok);
    }
    let sync = Command::Sync { servers: vec![listed.clone()], keep: vec![kept.server_id] };
    assert_eq!(agent.execute(sync, T).await, Outcome::Ok);
    let mut have: Vec<ServerId> = agent.servers().into_iter().map(|(id, _)| id).collect();
    have.sort();
    let mut want = vec![listed.server_id, kept.server_id];
    want.sort();
    assert_eq!(have, want);
    assert!(dir.join("servers").join(kept.server_id.to_string()).is_dir(), "a kept server keeps its files");
    assert!(!dir.join("servers").join(dropped.server_id.to_string()).exists());
}
