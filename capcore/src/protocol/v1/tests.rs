//! Golden-file tests for every protocol v1 message and frame, plus negotiation and flow control.
//!
//! A golden file is the exact JSON (or frame bytes) of one sample message. Changing the wire
//! format makes these fail; regenerate with `CAP_UPDATE_GOLDEN=1 cargo test -p capcore protocol`
//! and review the diff like any other change.

use super::stream::{Credit, CreditExceeded, Frame, FrameError, INITIAL_CREDIT, MAX_PAYLOAD};
use super::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use uuid::Uuid;

fn node() -> NodeId {
    NodeId(Uuid::from_u128(0x40de_0000_0000_4000_8000_0000_0000_0002))
}

fn server() -> ServerId {
    ServerId(Uuid::from_u128(0x5e17_0000_0000_4000_8000_0000_0000_0001))
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/protocol/v1/golden").join(name)
}

/// Compares `actual` with the golden file, or writes it when `CAP_UPDATE_GOLDEN=1`.
fn golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var("CAP_UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; create it with CAP_UPDATE_GOLDEN=1", path.display()));
    assert_eq!(actual, expected, "{name} differs from its golden file");
}

fn golden_json<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(name: &str, value: &T) {
    let text = serde_json::to_string_pretty(value).unwrap() + "\n";
    golden(&format!("{name}.json"), &text);
    let back: T = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, value, "{name} round-trips");
}

fn spec() -> ServerSpec {
    ServerSpec {
        server_id: server(),
        node_id: node(),
        argv: vec!["./game".into(), "--motd".into(), "; rm -rf / $(reboot)".into()],
        environment: BTreeMap::from([("SERVER_MEMORY".into(), "1024".into()), ("SERVER_PORT".into(), "25565".into())]),
        limits: WireLimits { memory_mb: 1024, swap_mb: 0, cpu_percent: 100, disk_mb: 5120, io_weight: 500, pids: 512 },
        stop: WireStop::Command("stop".into()),
        ready_patterns: vec![WireReadyPattern::Contains("Done (".into()), WireReadyPattern::Regex("^ready$".into())],
        install: Some(WireInstall {
            script: "#!/bin/sh\necho installing\n".into(),
            entrypoint: "sh".into(),
            image: None,
        }),
        image: None,
        file_denylist: Vec::new(),
        backup_hooks: None,
        ports: vec![
            PortBinding { ip: "203.0.113.7".into(), port: 25565 },
            PortBinding { ip: "203.0.113.7".into(), port: 25575 },
        ],
    }
}

fn hello() -> Hello {
    Hello {
        protocol_min: 1,
        protocol_max: 1,
        agent_version: "0.1.0".into(),
        facts: NodeFacts {
            hostname: "node-1".into(),
            os: "Debian GNU/Linux 12".into(),
            kernel: "6.1.0".into(),
            arch: "x86_64".into(),
            cpus: 2,
            memory_bytes: 25_769_803_776,
            disk_bytes: 270_582_939_648,
            runtimes: vec!["process".into()],
            enforced_limits: vec!["memory:cgroup".into(), "pids:rlimit".into()],
            runtime_problems: Vec::new(),
        },
    }
}

#[test]
fn agent_messages_match_their_golden_files() {
    golden_json("agent_hello", &AgentMessage::Hello(hello()));
    golden_json("agent_result_ok", &AgentMessage::Result(CommandResult { id: 7, outcome: Outcome::Ok }));
    golden_json(
        "agent_result_error",
        &AgentMessage::Result(CommandResult {
            id: 8,
            outcome: Outcome::Error { code: ErrorCode::Conflict, message: "the server is already running".into() },
        }),
    );
    golden_json(
        "agent_event_state",
        &AgentMessage::Event(EventEnvelope {
            server_id: server(),
            seq: 41,
            event: Event::State { state: "crashed".into(), exit: Some(ExitInfo { code: None, signal: Some(9) }) },
        }),
    );
    golden_json(
        "agent_event_console",
        &AgentMessage::Event(EventEnvelope {
            server_id: server(),
            seq: 42,
            event: Event::Console { stream: ConsoleStream::Stdout, line: "[Server] hello \"world\" ✓".into() },
        }),
    );
    golden_json(
        "agent_event_stats",
        &AgentMessage::Event(EventEnvelope {
            server_id: server(),
            seq: 43,
            event: Event::Stats {
                cpu_percent: 12.5,
                memory_bytes: 268_435_456,
                disk_bytes: 1_048_576,
                uptime_ms: 60_000,
                network: None,
            },
        }),
    );
    golden_json(
        "agent_event_stats_network",
        &AgentMessage::Event(EventEnvelope {
            server_id: server(),
            seq: 44,
            event: Event::Stats {
                cpu_percent: 3.0,
                memory_bytes: 1024,
                disk_bytes: 0,
                uptime_ms: 5_000,
                network: Some(NetworkUse { rx_bytes: 9_000, tx_bytes: 120 }),
            },
        }),
    );
    golden_json(
        "agent_heartbeat",
        &AgentMessage::Heartbeat(Heartbeat {
            cpu_percent: 3.25,
            memory_used_bytes: 1_073_741_824,
            memory_total_bytes: 25_769_803_776,
            disk_used_bytes: 10_737_418_240,
            disk_total_bytes: 270_582_939_648,
            servers_running: 1,
        }),
    );
}

#[test]
fn panel_messages_match_their_golden_files() {
    golden_json(
        "panel_welcome",
        &PanelMessage::Welcome(Welcome {
            protocol: 1,
            node_id: node(),
            heartbeat_interval_ms: 5_000,
            heartbeat_misses_allowed: 3,
            last_seq: vec![ServerSeq { server_id: server(), seq: 40 }],
        }),
    );
    golden_json(
        "panel_refused",
        &PanelMessage::Refused(Refused {
            reason: "agent 2.0.0 speaks protocol 2 to 2, this panel speaks 1; upgrade the panel".into(),
            panel_protocol: 1,
        }),
    );
    golden_json("panel_ack", &PanelMessage::Ack(ServerSeq { server_id: server(), seq: 43 }));
    let id = server();
    let commands = [
        ("create", Command::Create { server: Box::new(spec()) }),
        ("install", Command::Install { server_id: id }),
        ("start", Command::Start { server_id: id }),
        ("stop", Command::Stop { server_id: id, grace_ms: 30_000 }),
        ("restart", Command::Restart { server_id: id, grace_ms: 30_000 }),
        ("kill", Command::Kill { server_id: id }),
        ("send_command", Command::SendCommand { server_id: id, line: "say hi; $(whoami)".into() }),
        ("delete", Command::Delete { server_id: id }),
        (
            "sync",
            Command::Sync {
                servers: vec![spec()],
                keep: vec![ServerId(Uuid::from_u128(0x5e17_0000_0000_4000_8000_0000_0000_0009))],
            },
        ),
    ];
    for (i, (name, command)) in commands.into_iter().enumerate() {
        let request = PanelMessage::Request(Request { id: 100 + i as u64, timeout_ms: 30_000, command });
        golden_json(&format!("panel_request_{name}"), &request);
    }
}

#[test]
fn frames_match_their_golden_file() {
    let frames = [
        Frame::Open { stream: 1, header: br#"{"purpose":"file_download","path":"world/level.dat"}"#.to_vec() },
        Frame::Data { stream: 1, bytes: vec![0, 1, 2, 254, 255] },
        Frame::Credit { stream: 1, bytes: 65_536 },
        Frame::End { stream: 1 },
        Frame::Reset { stream: 0xdead_beef, reason: "disk full".into() },
    ];
    let text: String =
        frames.iter().map(|f| f.encode().iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n").collect();
    golden("frames.hex", &text);
    for frame in frames {
        assert_eq!(Frame::decode(&frame.encode()).unwrap(), frame);
    }
}

#[test]
fn unknown_fields_and_types_are_refused() {
    let hello = serde_json::to_value(AgentMessage::Hello(hello())).unwrap();
    let mut extra = hello.clone();
    extra["sneaky"] = serde_json::json!(true);
    assert!(serde_json::from_value::<AgentMessage>(extra).is_err(), "unknown field refused");
    assert!(serde_json::from_str::<AgentMessage>(r#"{"type":"launch_missiles"}"#).is_err());
    assert!(serde_json::from_str::<PanelMessage>(r#"{"type":"hello"}"#).is_err(), "panel never receives hello");
}

#[test]
fn negotiation_accepts_overlap_and_names_who_must_upgrade() {
    let mut h = hello();
    assert_eq!(negotiate(&h), Ok(1));
    h.protocol_max = 3;
    assert_eq!(negotiate(&h), Ok(1), "a newer agent that still speaks 1 is accepted");
    h.protocol_min = 2;
    let refused = negotiate(&h).unwrap_err();
    assert_eq!(refused.reason, "agent 0.1.0 speaks protocol 2 to 3, this panel speaks 1; upgrade the panel");
    assert_eq!(refused.panel_protocol, 1);
    h.protocol_min = 0;
    h.protocol_max = 0;
    assert!(negotiate(&h).unwrap_err().reason.ends_with("upgrade the agent"));
    h.protocol_min = 2;
    h.protocol_max = 1;
    assert!(negotiate(&h).unwrap_err().reason.contains("empty range"));
}

#[test]
fn malformed_frames_are_refused() {
    assert_eq!(Frame::decode(&[2, 0, 0]), Err(FrameError::Short(3)));
    assert_eq!(Frame::decode(&[9, 0, 0, 0, 1]), Err(FrameError::UnknownKind(9)));
    assert_eq!(Frame::decode(&[3, 0, 0, 0, 1, 1]), Err(FrameError::BadCredit(1)));
    assert_eq!(Frame::decode(&[4, 0, 0, 0, 1, 1]), Err(FrameError::PayloadOnEnd(1)));
    assert_eq!(Frame::decode(&[5, 0, 0, 0, 1, 0xff]), Err(FrameError::BadReason));
    let mut big = vec![2, 0, 0, 0, 1];
    big.resize(5 + MAX_PAYLOAD + 1, 0);
    assert_eq!(Frame::decode(&big), Err(FrameError::TooLarge(MAX_PAYLOAD + 1)));
}

#[test]
fn credit_bounds_what_may_be_sent() {
    let mut c = Credit::default();
    assert_eq!(c.available(), u64::from(INITIAL_CREDIT));
    assert_eq!(c.sendable(1 << 30), MAX_PAYLOAD, "one frame at most");
    c.consume(INITIAL_CREDIT as usize - 10).unwrap();
    assert_eq!(c.sendable(100), 10);
    assert_eq!(c.consume(11), Err(CreditExceeded { received: 11, available: 10 }));
    c.consume(10).unwrap();
    assert_eq!(c.sendable(100), 0, "nothing until credit arrives");
    c.grant(50);
    assert_eq!(c.sendable(100), 50);
}

fn entry(name: &str, kind: files::FileKind) -> files::FileEntry {
    files::FileEntry {
        name: name.rsplit('/').next().unwrap().into(),
        path: name.into(),
        kind,
        size: 1234,
        mode: 0o644,
        modified_ms: 1_764_000_000_000,
        target: (kind == files::FileKind::Symlink).then(|| "../outside".into()),
    }
}

#[test]
fn file_manager_messages_match_their_golden_files() {
    use files::{ArchiveReport, FileKind, FileOp, FileOrder, ListRequest, Listing, Reply};
    let request = |id: u64, op: FileOp| {
        PanelMessage::Request(Request { id, timeout_ms: 30_000, command: Command::Files { server_id: server(), op } })
    };
    let page = ListRequest { order: FileOrder::Size, descending: true, offset: 1000, limit: 100 };
    golden_json("panel_request_files_list", &request(20, FileOp::List { path: "world/region".into(), page }));
    golden_json("panel_request_files_stat", &request(21, FileOp::Stat { path: "server.properties".into() }));
    golden_json(
        "panel_request_files_download",
        &request(22, FileOp::Download { path: "logs/latest.log".into(), offset: 100, length: Some(4096) }),
    );
    golden_json("panel_request_files_upload", &request(23, FileOp::Upload { path: "plugins/a.jar".into() }));
    golden_json("panel_request_files_make_dir", &request(24, FileOp::MakeDir { path: "a/b/c".into() }));
    golden_json(
        "panel_request_files_rename",
        &request(25, FileOp::Rename { from: "old.txt".into(), to: "archive/new.txt".into() }),
    );
    golden_json(
        "panel_request_files_copy",
        &request(26, FileOp::Copy { from: "world".into(), to: "world-copy".into() }),
    );
    golden_json(
        "panel_request_files_delete",
        &request(27, FileOp::Delete { paths: vec!["world-copy".into(), "tmp.txt".into()] }),
    );
    golden_json("panel_request_files_chmod", &request(28, FileOp::Chmod { path: "start.sh".into(), mode: 0o755 }));
    golden_json(
        "panel_request_files_search",
        &request(29, FileOp::Search { path: "".into(), query: "level".into(), limit: 50 }),
    );
    golden_json(
        "panel_request_files_compress",
        &request(
            30,
            FileOp::Compress {
                dir: "".into(),
                paths: vec!["world".into(), "ops.json".into()],
                archive: "w.tar.zst".into(),
            },
        ),
    );
    golden_json(
        "panel_request_files_decompress",
        &request(31, FileOp::Decompress { archive: "w.tar.zst".into(), into: "restored".into() }),
    );
    let data = |id: u64, data: Reply| {
        AgentMessage::Result(CommandResult { id, outcome: Outcome::Data { data: Box::new(data) } })
    };
    golden_json(
        "agent_result_listing",
        &data(
            20,
            Reply::Listing(Listing {
                entries: vec![entry("world/region", FileKind::Directory), entry("world/level.dat", FileKind::File)],
                total: 2,
            }),
        ),
    );
    golden_json("agent_result_entry", &data(21, Reply::Entry(entry("escape", FileKind::Symlink))));
    golden_json(
        "agent_result_download",
        &data(22, Reply::Download { size: 10_000, offset: 100, length: 4096, modified_ms: 1_764_000_000_000 }),
    );
    golden_json("agent_result_done", &data(27, Reply::Done));
    golden_json(
        "agent_result_found",
        &data(29, Reply::Found { entries: vec![entry("world/level.dat", FileKind::File)], truncated: false }),
    );
    golden_json(
        "agent_result_archive",
        &data(
            30,
            Reply::Archive(ArchiveReport {
                path: "w.tar.zst".into(),
                files: 10,
                directories: 3,
                links: 1,
                links_left_out: 1,
                bytes: 1 << 20,
            }),
        ),
    );
}

#[test]
fn a_request_stream_is_numbered_like_the_request() {
    assert_eq!(stream::stream_of(7), 7);
    assert_eq!(stream::stream_of(u64::from(u32::MAX) + 8), 7);
}

#[test]
fn backup_messages_match_their_golden_files() {
    use crate::ids::BackupId;
    use backups::{BackupOp, BackupRecord, BackupStatus, Retention};
    let backup_id = BackupId(Uuid::from_u128(0xbac0_0000_0000_4000_8000_0000_0000_0003));
    let record = BackupRecord {
        id: backup_id,
        name: "before the update".into(),
        status: BackupStatus::Done,
        created_ms: 1_764_000_000_000,
        completed_ms: Some(1_764_000_004_000),
        bytes: 123_456_789,
        sha256: Some("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into()),
        locked: true,
        files: 2048,
        links_left_out: 1,
        error: None,
        location: None,
    };
    let request = |id: u64, op: BackupOp| {
        PanelMessage::Request(Request { id, timeout_ms: 30_000, command: Command::Backups { server_id: server(), op } })
    };
    golden_json(
        "panel_request_backups_create",
        &request(
            40,
            BackupOp::Create {
                backup_id,
                name: "before the update".into(),
                retention: Retention { keep: Some(5), max_age_ms: Some(604_800_000) },
                min_interval_ms: 60_000,
            },
        ),
    );
    golden_json("panel_request_backups_list", &request(41, BackupOp::List));
    golden_json("panel_request_backups_lock", &request(42, BackupOp::Lock { backup_id, locked: true }));
    golden_json("panel_request_backups_download", &request(43, BackupOp::Download { backup_id }));
    golden_json("panel_request_backups_restore", &request(44, BackupOp::Restore { backup_id }));
    golden_json("panel_request_backups_delete", &request(45, BackupOp::Delete { backup_id }));
    golden_json(
        "agent_result_backups",
        &AgentMessage::Result(CommandResult {
            id: 41,
            outcome: Outcome::Data { data: Box::new(files::Reply::Backups { backups: vec![record.clone()] }) },
        }),
    );
    golden_json(
        "agent_event_backup",
        &AgentMessage::Event(EventEnvelope {
            server_id: server(),
            seq: 44,
            event: Event::Backup {
                backup: BackupRecord { status: BackupStatus::Running, completed_ms: None, sha256: None, ..record },
            },
        }),
    );
    assert_eq!(
        Command::Backups { server_id: server(), op: BackupOp::Download { backup_id } }.transfer(),
        Some(files::Transfer::FromAgent)
    );
    assert_eq!(Command::Backups { server_id: server(), op: BackupOp::List }.transfer(), None);
}
