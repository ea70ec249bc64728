//! What only the Docker runtime does: the container's confinement and limits as the game sees
//! them and as the engine records them, an out-of-memory kill, a missing image, and an engine
//! that cannot be reached. What every runtime does is in `runtime_conformance.rs`. The engine is
//! `CAP_TEST_DOCKER_HOST`; without it these skip, or fail when `CAP_TEST_REQUIRE=1`.
#![cfg(feature = "docker")]

mod support;

use capagent::runtime::GameRuntime;
use capagent::runtime::docker::{DockerRuntime, DockerRuntimeConfig};
use capagent::{Agent, AgentConfig};
use capcore::backend::{Runtime, RuntimeSpec, RuntimeStatus};
use capcore::model::Limits;
use capcore::template::StopAction;

/// The runtime on the test engine and the test image, or `None` (after saying why) without one.
async fn docker(name: &str) -> Option<(DockerRuntime, DockerRuntimeConfig, String)> {
    let Some(host) = support::docker::host() else {
        assert!(
            std::env::var("CAP_TEST_REQUIRE").as_deref() != Ok("1"),
            "{} is not set, and CAP_TEST_REQUIRE=1 requires the Docker tests",
            support::docker::HOST_ENV
        );
        eprintln!("skipping: {} is not set", support::docker::HOST_ENV);
        return None;
    };
    let base = std::env::temp_dir().join(format!("capagent-docker-{name}-{}", std::process::id()));
    let mut config = DockerRuntimeConfig::new(base.join("servers"), base.join("state"));
    config.host = Some(host.clone());
    let image = support::docker::image(&host, std::path::Path::new(&support::game())).await;
    Some((DockerRuntime::connect(config.clone()).await.unwrap(), config, image))
}

fn shell(image: &str, script: &str, limits: Limits) -> RuntimeSpec {
    let mut spec = support::spec(&[], StopAction::Command("stop".into()));
    spec.argv = vec!["/bin/sh".into(), "-c".into(), script.into()];
    spec.ready_patterns.clear();
    spec.image = Some(image.into());
    spec.limits = limits;
    spec
}

/// The game's own lines of the last run (without the runtime's `[cap]` lines).
fn game_lines(rt: &DockerRuntime, id: capcore::ids::ServerId) -> Vec<String> {
    rt.subscribe(id).unwrap().replay.into_iter().filter(|l| !l.starts_with("[cap]")).collect()
}

#[tokio::test]
async fn the_container_is_confined_and_limited() {
    let Some((rt, config, image)) = docker("confined").await else { return };
    let limits = Limits { memory_mb: 256, swap_mb: 0, cpu_percent: 50, disk_mb: 0, io_weight: 500, pids: 64 };
    let script = "id -u; id -G; touch /escape 2>/dev/null || echo read-only root; \
        touch /home/container/mine && echo wrote; touch /tmp/scratch && echo tmp; \
        grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; \
        cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
        cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; \
        echo pid1=$(cat /proc/1/comm)";
    let spec = shell(&image, script, limits);
    let id = spec.server_id;
    rt.create(spec).await.unwrap();
    rt.start(id).await.unwrap();
    assert_eq!(rt.wait_exit(id).await.unwrap(), RuntimeStatus::Exited { code: Some(0), signal: None });
    assert_eq!(
        game_lines(&rt, id),
        [
            "65534",
            "65534",
            "read-only root",
            "wrote",
            "tmp",
            "CapEff:\t0000000000000000",
            "NoNewPrivs:\t1",
            "268435456",
            "64",
            "pid1=docker-init"
        ],
        "nobody without groups, no capabilities, no new privileges, the limits, an init"
    );
    let mine = config.servers_dir.join(id.to_string()).join("mine");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&mine).unwrap()),
        65534,
        "written as the game user"
    );
    assert!(!std::path::Path::new("/escape").exists());
    // The engine's record of the container says the same.
    let engine = bollard::Docker::connect_with_host(config.host.as_deref().unwrap()).unwrap();
    let inspected = engine.inspect_container(&format!("cap-{id}"), None).await.unwrap();
    let host = inspected.host_config.unwrap();
    assert_eq!(host.memory, Some(256 << 20));
    assert_eq!(host.memory_swap, Some(256 << 20), "no swap");
    assert_eq!(host.nano_cpus, Some(500_000_000), "half a core");
    assert_eq!(host.pids_limit, Some(64));
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(host.init, Some(true));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
    assert_eq!(host.security_opt, Some(vec!["no-new-privileges".to_string()]));
    let dir = config.servers_dir.join(id.to_string()).display().to_string();
    let mounts: Vec<_> = host
        .mounts
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.source.unwrap_or_default(), m.target.unwrap_or_default(), m.read_only.unwrap_or(false)))
        .collect();
    assert_eq!(mounts, [(dir, "/home/container".to_string(), false)], "the server's directory is the only mount");
    assert_eq!(host.binds, None);
    rt.remove(id).await.unwrap();
    assert!(engine.inspect_container(&format!("cap-{id}"), None).await.is_err(), "the container is gone");
}

#[tokio::test]
async fn a_game_over_its_memory_limit_is_killed_and_the_console_says_why() {
    let Some((rt, _config, image)) = docker("oom").await else { return };
    let mut spec = support::spec(&["--hold-memory-mb", "256"], StopAction::Command("stop".into()));
    spec.argv[0] = support::docker::GAME.into();
    spec.image = Some(image);
    spec.limits = Limits { memory_mb: 64, swap_mb: 0, ..Limits::default() };
    let id = spec.server_id;
    rt.create(spec).await.unwrap();
    rt.start(id).await.unwrap();
    assert_eq!(rt.wait_exit(id).await.unwrap(), RuntimeStatus::Exited { code: None, signal: Some(9) });
    let replay = rt.subscribe(id).unwrap().replay;
    assert!(replay.iter().any(|l| l == "[cap] the server ran out of memory and was killed"), "{replay:?}");
    rt.remove(id).await.unwrap();
}

#[tokio::test]
async fn a_missing_image_is_a_clear_error_at_once() {
    let Some((rt, _config, _image)) = docker("missing").await else { return };
    let mut spec = support::spec(&[], StopAction::Command("stop".into()));
    spec.image = Some("cap-test-missing:none".into());
    let id = spec.server_id;
    rt.create(spec).await.unwrap();
    let err = rt.start(id).await.unwrap_err();
    assert!(matches!(err, capcore::Error::Invalid(_)), "{err}");
    assert!(
        err.to_string().contains("image `cap-test-missing:none` is not on this node and cannot be pulled"),
        "{err}"
    );
    let install = capagent::runtime::Install { script: "true".into(), entrypoint: "sh".into(), image: None };
    let err = rt.install(id, &install).await.unwrap_err();
    assert!(err.to_string().contains("cap-test-missing:none"), "{err}");
    assert_eq!(rt.status(id).await.unwrap(), RuntimeStatus::NotRunning);
    // A spec without an image cannot run in a container at all.
    let mut bare = support::spec(&[], StopAction::Command("stop".into()));
    bare.image = None;
    let err = rt.create(bare).await.unwrap_err();
    assert!(err.to_string().contains("needs the template to name an image"), "{err}");
    rt.remove(id).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_engine_is_named_and_the_agent_registers_without_docker() {
    let dead = "unix:///nonexistent/cap-docker.sock";
    let base = std::env::temp_dir().join(format!("capagent-docker-dead-{}", std::process::id()));
    let mut config = DockerRuntimeConfig::new(base.join("servers"), base.join("state"));
    config.host = Some(dead.into());
    let why = DockerRuntime::connect(config).await.unwrap_err();
    assert!(why.contains(dead) && why.contains("unreachable"), "{why}");
    // An agent configured for Docker still starts and registers, with no runtime and the reason,
    // and refuses servers with it instead of running them as host processes.
    let mut config = AgentConfig::new("http://127.0.0.1:9", "capn_unused", base.join("agent"));
    config.docker = Some(capagent::DockerOptions { host: Some(dead.into()), ..Default::default() });
    let agent = Agent::start(config).await.unwrap();
    let (runtimes, problems) = agent.runtimes();
    assert!(runtimes.is_empty(), "{runtimes:?}");
    assert_eq!(problems.len(), 1);
    assert!(problems[0].starts_with("docker: ") && problems[0].contains(dead), "{problems:?}");
    assert_eq!(agent.runtime().name(), "docker");
    let spec = support::spec(&[], StopAction::Command("stop".into()));
    let err = agent.runtime().create(spec).await.unwrap_err();
    assert!(err.to_string().contains("the docker runtime is unavailable on this node"), "{err}");
}

/// `GET /index.html` from 127.0.0.1:`port`, as soon as something answers there (the deadline
/// only guards against a hang).
async fn fetch_page(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let attempt = async {
            let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            socket.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").await?;
            let mut page = String::new();
            socket.read_to_string(&mut page).await?;
            Ok::<_, std::io::Error>(page)
        };
        match attempt.await {
            Ok(page) if page.contains("200") => return page,
            other => {
                assert!(std::time::Instant::now() < deadline, "no answer at 127.0.0.1:{port}: {other:?}");
                tokio::task::yield_now().await;
            }
        }
    }
}

#[tokio::test]
async fn on_a_network_of_its_own_a_container_is_reached_at_its_allocation_and_reports_its_traffic() {
    // The runtime's own network by default, made when the runtime connects: a bridge whose
    // containers cannot talk to each other.
    let Some((rt, mut config, image)) = docker("network").await else { return };
    assert_eq!(config.network_mode, "cap");
    let engine = bollard::Docker::connect_with_host(config.host.as_deref().unwrap()).unwrap();
    let made = engine.inspect_network("cap", None::<bollard::query_parameters::InspectNetworkOptions>).await.unwrap();
    assert_eq!(made.driver.as_deref(), Some("bridge"));
    assert_eq!(
        made.options.unwrap_or_default().get("com.docker.network.bridge.enable_icc").map(String::as_str),
        Some("false")
    );
    // A web server in the container, published at its allocation on the host.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut spec = shell(
        &image,
        "exec /bin/busybox httpd -f -p \"$SERVER_IP:$SERVER_PORT\" -h /home/container",
        Limits::default(),
    );
    spec.environment.insert("SERVER_IP".into(), "127.0.0.1".into());
    spec.environment.insert("SERVER_PORT".into(), port.to_string());
    spec.ports = vec![capcore::protocol::v1::PortBinding { ip: "127.0.0.1".into(), port }];
    spec.stop = StopAction::Signal(capcore::template::StopSignal::Sigterm);
    let id = spec.server_id;
    rt.create(spec).await.unwrap();
    std::fs::write(config.servers_dir.join(id.to_string()).join("index.html"), "hello from the container\n").unwrap();
    rt.start(id).await.unwrap();
    rt.wait_ready(id).await.unwrap();
    let page = fetch_page(port).await;
    assert!(page.ends_with("hello from the container\n"), "{page}");
    let inspected = engine.inspect_container(&format!("cap-{id}"), None).await.unwrap();
    let bindings = inspected.host_config.unwrap().port_bindings.unwrap();
    for protocol in ["tcp", "udp"] {
        let published = bindings[&format!("{port}/{protocol}")].clone().unwrap();
        assert_eq!(published[0].host_ip.as_deref(), Some("127.0.0.1"), "{protocol}");
        assert_eq!(published[0].host_port, Some(port.to_string()), "{protocol}");
    }
    let stats = rt.stats(id).await.unwrap();
    let network = stats.network.expect("the container's own interface is counted");
    assert!(network.rx_bytes > 0 && network.tx_bytes > 0, "{network:?}");
    rt.stop(id, std::time::Duration::from_secs(20)).await.unwrap();
    rt.remove(id).await.unwrap();
    // A spec without allocations (from a panel that sends none) is published at its
    // `SERVER_IP`:`SERVER_PORT`.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut spec = shell(
        &image,
        "exec /bin/busybox httpd -f -p \"$SERVER_IP:$SERVER_PORT\" -h /home/container",
        Limits::default(),
    );
    spec.environment.insert("SERVER_IP".into(), "127.0.0.1".into());
    spec.environment.insert("SERVER_PORT".into(), port.to_string());
    spec.stop = StopAction::Signal(capcore::template::StopSignal::Sigterm);
    let id = spec.server_id;
    rt.create(spec).await.unwrap();
    std::fs::write(config.servers_dir.join(id.to_string()).join("index.html"), "from the environment\n").unwrap();
    rt.start(id).await.unwrap();
    assert!(fetch_page(port).await.ends_with("from the environment\n"));
    rt.stop(id, std::time::Duration::from_secs(20)).await.unwrap();
    rt.remove(id).await.unwrap();
    // A network named in the settings is not made up: the runtime says it is missing.
    config.network_mode = "cap-no-such-network".into();
    let why = DockerRuntime::connect(config.clone()).await.unwrap_err();
    assert!(why.contains("the Docker network `cap-no-such-network` does not exist"), "{why}");
    // With host networking there is nothing of its own to count.
    config.network_mode = "host".into();
    let host_rt = DockerRuntime::connect(config).await.unwrap();
    let mut spec = support::spec(&[], StopAction::Command("stop".into()));
    spec.argv[0] = support::docker::GAME.into();
    spec.image = Some(image);
    let id = spec.server_id;
    host_rt.create(spec).await.unwrap();
    host_rt.start(id).await.unwrap();
    host_rt.wait_ready(id).await.unwrap();
    assert_eq!(host_rt.stats(id).await.unwrap().network, None);
    host_rt.remove(id).await.unwrap();
}

/// Whether the engine's container of that name is gone (waiting for its removal if it is being
/// removed).
async fn gone(engine: &bollard::Docker, name: &str) -> bool {
    use futures::StreamExt;
    let options = bollard::query_parameters::WaitContainerOptions { condition: "removed".into() };
    let waited = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        // Ends when it is removed (a non-zero exit code comes as an error), or at once with 404.
        engine.wait_container(name, Some(options)).next().await
    })
    .await;
    waited.is_ok() && engine.inspect_container(name, None).await.is_err_and(|e| e.to_string().contains("404"))
}

#[tokio::test]
async fn installed_files_go_to_the_game_user_without_setuid_bits_and_no_install_container_stays() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // A directory with `:` in its path: mounts, not `Binds` strings, keep it one path.
    let Some((rt, config, image)) = docker("install:colon").await else { return };
    let engine = bollard::Docker::connect_with_host(config.host.as_deref().unwrap()).unwrap();
    let spec = shell(&image, "true", Limits::default());
    let id = spec.server_id;
    rt.create(spec).await.unwrap();
    let dir = config.servers_dir.join(id.to_string());
    let game_uid = std::fs::metadata(&dir).unwrap().uid();
    let script = r#"cd "$SERVER_DIR" && echo hi > plain && cp /bin/busybox tool && chmod 4755 tool \
        && chmod 2775 plain && mkdir -p deep/er && echo x > deep/er/f && ln -s /etc/passwd link && echo done"#;
    let install = capagent::runtime::Install { script: script.into(), entrypoint: "sh".into(), image: None };
    let status = rt.install(id, &install).await.unwrap();
    assert_eq!(status, RuntimeStatus::Exited { code: Some(0), signal: None });
    let replay = rt.subscribe(id).unwrap().replay;
    assert!(replay.iter().any(|l| l == "done"), "{replay:?}");
    assert!(!replay.iter().any(|l| l.contains("could not all be given")), "{replay:?}");
    for path in ["plain", "tool", "deep", "deep/er", "deep/er/f", "link"] {
        let meta = std::fs::symlink_metadata(dir.join(path)).unwrap();
        assert_eq!(meta.uid(), game_uid, "{path} belongs to the game's user");
        assert_eq!(meta.permissions().mode() & 0o6000, 0, "{path} has no setuid or setgid bit");
    }
    assert_eq!(std::fs::read_link(dir.join("link")).unwrap(), std::path::Path::new("/etc/passwd"));
    assert!(gone(&engine, &format!("cap-install-{id}")).await);
    assert!(gone(&engine, &format!("cap-chown-{id}")).await);

    // An install given up midway (its caller went away) leaves no container running.
    let script = r#"echo begun; exec sleep 1000"#;
    let install = capagent::runtime::Install { script: script.into(), entrypoint: "sh".into(), image: None };
    let mut sub = rt.subscribe(id).unwrap();
    sub.replay.clear();
    tokio::select! {
        ended = rt.install(id, &install) => panic!("the install ended: {ended:?}"),
        _ = support::line_matching(&mut sub, |l| l == "begun") => {}
    }
    assert!(gone(&engine, &format!("cap-install-{id}")).await, "the install container was removed");
    rt.remove(id).await.unwrap();
}
