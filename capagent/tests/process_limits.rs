//! Resource limits of the process runtime, enforced for real: by a cgroup per server where the
//! agent may create them (as root on the CI machine, asserted, never skipped), else by rlimits.

mod support;

use capagent::{LimitMode, ProcessRuntime, ProcessRuntimeConfig};
use capcore::backend::{Runtime, RuntimeStatus};
use capcore::ids::ServerId;
use capcore::template::StopAction;
use std::time::Duration;
use support::{cgroups_expected, config, line_matching, pid_of, spec, started};

const MIB: u64 = 1024 * 1024;

/// The cgroup directory of `pid` for `controller` (v1), or its only one (v2).
fn cgroup_dir(pid: u32, controller: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let path = path.trim_start_matches('/');
        if !v2 && controllers.split(',').any(|c| c == controller) {
            return std::path::Path::new("/sys/fs/cgroup").join(controller).join(path);
        }
        if v2 && controllers.is_empty() {
            return std::path::Path::new("/sys/fs/cgroup").join(path);
        }
    }
    panic!("no {controller} cgroup in {text}");
}

fn read(dir: &std::path::Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap().trim().to_string()
}

fn limit_line(pid: u32, name: &str) -> Vec<String> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {limits}"));
    line[name.len()..].split_whitespace().map(String::from).collect()
}

#[tokio::test]
async fn cgroups_enforce_memory_and_are_removed_after_the_run() {
    let rt = ProcessRuntime::new(config("limits"));
    let enforced = rt.enforced_limits();
    if !cgroups_expected() {
        assert!(enforced.iter().all(|e| !e.contains("cgroup")), "no cgroups expected here: {enforced:?}");
        assert!(enforced.contains(&"cpu:none".to_string()), "{enforced:?}");
        eprintln!("cgroups are not writable here (not root): the rlimit tests cover this machine");
        return;
    }
    let version = if enforced.contains(&"memory:cgroup-v2".to_string()) { "cgroup-v2" } else { "cgroup-v1" };
    for resource in ["memory", "cpu", "pids"] {
        assert!(enforced.contains(&format!("{resource}:{version}")), "{resource} by {version}: {enforced:?}");
    }

    // Over the limit: the kernel's OOM killer ends it.
    let mut over = spec(&["--hold-memory-mb", "96"], StopAction::Command("stop".into()));
    over.limits.memory_mb = 32;
    let over_id = over.server_id;
    rt.create(over).await.unwrap();
    rt.start(over_id).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), rt.wait_exit(over_id)).await.unwrap().unwrap();
    assert_eq!(status, RuntimeStatus::Exited { code: None, signal: Some(9) });
    rt.remove(over_id).await.unwrap();

    // Under it: runs, in its own cgroup, which counts its memory.
    let mut under = spec(&["--hold-memory-mb", "64"], StopAction::Command("stop".into()));
    under.limits.memory_mb = 256;
    let (id, _game) = started(&rt, under).await;
    let pid = pid_of(rt.status(id).await.unwrap());
    let dir = cgroup_dir(pid, "memory");
    assert!(dir.ends_with(format!("capagent-tests/{id}")), "{}", dir.display());
    let memory = (256 * MIB).to_string();
    if version == "cgroup-v1" {
        assert_eq!(read(&dir, "memory.limit_in_bytes"), memory);
        if dir.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(read(&dir, "memory.memsw.limit_in_bytes"), memory, "swap_mb 0: no swap");
        }
        // The defaults: one core, 512 processes.
        assert_eq!(read(&cgroup_dir(pid, "cpu"), "cpu.cfs_quota_us"), "100000");
        assert_eq!(read(&cgroup_dir(pid, "cpu"), "cpu.cfs_period_us"), "100000");
        assert_eq!(read(&cgroup_dir(pid, "pids"), "pids.max"), "512");
        if enforced.contains(&"io:cgroup-v1".to_string()) {
            let blkio = cgroup_dir(pid, "blkio");
            let file = if blkio.join("blkio.weight").exists() { "blkio.weight" } else { "blkio.bfq.weight" };
            assert_eq!(read(&blkio, file), "500", "the default io_weight");
        }
    } else {
        assert_eq!(read(&dir, "memory.max"), memory);
        assert_eq!(read(&dir, "cpu.max"), "100000 100000");
        assert_eq!(read(&dir, "pids.max"), "512");
    }
    let stats = rt.stats(id).await.unwrap();
    assert!(stats.memory_bytes >= 64 * MIB, "cgroup memory {} below the 64 MiB held", stats.memory_bytes);
    rt.stop(id, Duration::from_secs(10)).await.unwrap();
    assert!(!dir.exists(), "the cgroup is removed after the run");
    rt.remove(id).await.unwrap();
}

#[tokio::test]
async fn a_cgroup_pids_limit_stops_forking() {
    if !cgroups_expected() {
        eprintln!("cgroups are not writable here (not root): pids are an rlimit, tested in rlimit mode");
        return;
    }
    let rt = ProcessRuntime::new(config("pids"));
    let mut s = spec(&[], StopAction::Command("stop".into()));
    s.argv = vec![
        "/bin/sh".into(),
        "-c".into(),
        "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1000 & echo \"forked $i\"; done; echo all forked".into(),
    ];
    s.ready_patterns.clear();
    // The shell and three children.
    s.limits.pids = 4;
    let id = s.server_id;
    rt.create(s).await.unwrap();
    rt.start(id).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), rt.wait_exit(id)).await.unwrap().unwrap();
    let replay = rt.subscribe(id).unwrap().replay;
    assert!(matches!(status, RuntimeStatus::Exited { code: Some(c), .. } if c != 0), "{status:?} {replay:?}");
    assert!(replay.contains(&"forked 3".to_string()), "{replay:?}");
    assert!(!replay.contains(&"forked 4".to_string()), "the fourth child is refused: {replay:?}");
    assert!(!replay.contains(&"all forked".to_string()));
    assert!(replay.iter().any(|l| l.to_lowercase().contains("fork")), "the shell says why: {replay:?}");
    // The sleeping children went with the server (else the cgroup could not have been removed
    // and a new run would be refused).
    rt.start(id).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), rt.wait_exit(id)).await.unwrap().unwrap();
    rt.remove(id).await.unwrap();
}

fn rlimit_config(name: &str) -> ProcessRuntimeConfig {
    ProcessRuntimeConfig { limit_mode: LimitMode::Rlimit, ..config(name) }
}

#[tokio::test]
async fn rlimit_mode_sets_the_address_space_and_process_limits() {
    let rt = ProcessRuntime::new(rlimit_config("rlimit"));
    let enforced = rt.enforced_limits();
    assert_eq!(&enforced[..3], ["memory:rlimit", "swap:none", "cpu:none"], "{enforced:?}");
    assert!(enforced[3] == "pids:rlimit" || enforced[3] == "pids:none", "root ignores RLIMIT_NPROC: {enforced:?}");
    let mut s = spec(&[], StopAction::Command("stop".into()));
    s.limits.memory_mb = 512;
    s.limits.pids = 100;
    let (id, _game) = started(&rt, s).await;
    let pid = pid_of(rt.status(id).await.unwrap());
    let bytes = (512 * MIB).to_string();
    assert_eq!(limit_line(pid, "Max address space")[..2], [bytes.clone(), bytes]);
    assert_eq!(limit_line(pid, "Max processes")[..2], ["100", "100"]);
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(!cgroup.contains(&id.to_string()), "no cgroup in rlimit mode");
    rt.stop(id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(rt.status(id).await.unwrap(), RuntimeStatus::Exited { code: Some(0), signal: None });

    // More than the address space allows: the allocation fails and the game aborts.
    let mut over = spec(&["--hold-memory-mb", "768"], StopAction::Command("stop".into()));
    over.limits.memory_mb = 512;
    let over_id = over.server_id;
    rt.create(over).await.unwrap();
    rt.start(over_id).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), rt.wait_exit(over_id)).await.unwrap().unwrap();
    assert_eq!(status, RuntimeStatus::Exited { code: None, signal: Some(6) }, "SIGABRT on allocation failure");
    rt.remove(id).await.unwrap();
    rt.remove(over_id).await.unwrap();
}

/// The argv reaches the game element by element through every wrapper (the cgroup shell,
/// `prlimit`): nothing is split, joined, expanded or dropped.
async fn argv_survives(rt: &ProcessRuntime) -> ServerId {
    let hostile = "; rm -rf / $(id) \"quoted\" 'single' `x` *";
    let s = spec(&["--", hostile, "first\nsecond", "--", ""], StopAction::Command("stop".into()));
    let (id, _game) = started(rt, s).await;
    let mut sub = rt.subscribe(id).unwrap();
    rt.send_command(id, "echo-args").await.unwrap();
    line_matching(&mut sub, |l| l.starts_with("arg[0]=")).await;
    let mut rest = Vec::new();
    for _ in 0..6 {
        let next = tokio::time::timeout(Duration::from_secs(30), sub.live.recv()).await;
        rest.push(next.expect("the next echo-args line").expect("console open"));
    }
    assert_eq!(
        rest,
        [
            "arg[1]=--".to_string(),
            format!("arg[2]={hostile}"),
            "arg[3]=first".into(),
            "second".into(),
            "arg[4]=--".into(),
            "arg[5]=".into()
        ]
    );
    rt.stop(id, Duration::from_secs(10)).await.unwrap();
    id
}

#[tokio::test]
async fn a_hostile_argv_passes_the_limit_wrappers_unchanged() {
    let rt = ProcessRuntime::new(config("argv"));
    let expect_cgroup = cgroups_expected();
    assert_eq!(rt.enforced_limits()[0].contains("cgroup"), expect_cgroup, "{:?}", rt.enforced_limits());
    let id = argv_survives(&rt).await;
    rt.remove(id).await.unwrap();
    let rt = ProcessRuntime::new(rlimit_config("argv-rlimit"));
    let id = argv_survives(&rt).await;
    rt.remove(id).await.unwrap();
}
