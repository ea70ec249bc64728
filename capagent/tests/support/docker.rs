//! The Docker engine of the tests (`CAP_TEST_DOCKER_HOST`, e.g. `unix:///run/cap-docker.sock`)
//! and the test image made on it: `docker import` of a tarball holding busybox (static, from
//! Debian's `busybox-static`) and the test game server with the libraries `ldd` names. No
//! registry is needed. `cap-tests` includes this file too, for its end-to-end tests.

use bollard::Docker;
use bollard::query_parameters::CreateImageOptions;
use futures::StreamExt;
use std::path::Path;
use tokio::sync::OnceCell;

/// Where the tests find the engine.
pub const HOST_ENV: &str = "CAP_TEST_DOCKER_HOST";
/// Where the game server is inside the image.
pub const GAME: &str = "/usr/local/bin/cap-test-game-server";

/// The engine's address, if the tests have one.
pub fn host() -> Option<String> {
    std::env::var(HOST_ENV).ok().filter(|h| !h.trim().is_empty())
}

static IMAGE: OnceCell<String> = OnceCell::const_new();

/// The test image's tag with `game` (the test game server's path here), imported once per test
/// process (and reused while the game binary is unchanged).
pub async fn image(host: &str, game: &Path) -> String {
    IMAGE
        .get_or_init(|| async {
            let meta = std::fs::metadata(game).unwrap();
            let mtime = meta.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
            let tag = format!("{:x}-{:x}", meta.len(), mtime);
            let docker = Docker::connect_with_host(host).unwrap().negotiate_version().await.unwrap();
            let name = format!("cap-test-game:{tag}");
            if docker.inspect_image(&name).await.is_ok() {
                return name;
            }
            let tarball = rootfs(game);
            let options = CreateImageOptions {
                from_src: Some("-".into()),
                repo: Some("cap-test-game".into()),
                tag: Some(tag),
                ..Default::default()
            };
            let mut progress = docker.create_image(Some(options), Some(bollard::body_full(tarball.into())), None);
            while let Some(step) = progress.next().await {
                step.expect("docker import of the test image");
            }
            name
        })
        .await
        .clone()
}

/// The image's root filesystem as a tarball.
fn rootfs(game: &Path) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, bytes: &[u8], mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        tar.append_data(&mut header, path.trim_start_matches('/'), bytes).unwrap();
    };
    let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (Debian's busybox-static)");
    add("/bin/busybox", &busybox, 0o755);
    add(GAME, &std::fs::read(game).unwrap(), 0o755);
    // The game's shared libraries, each at the path its loader asks for.
    let ldd = std::process::Command::new("ldd").arg(game).output().expect("ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let (wanted, found) = match line.split_once("=>") {
            Some((_, right)) => {
                let path = right.split_whitespace().next().unwrap_or_default();
                (path.to_string(), path.to_string())
            }
            None => {
                let path = line.split_whitespace().next().unwrap_or_default();
                (path.to_string(), path.to_string())
            }
        };
        if wanted.starts_with('/') {
            add(&wanted, &std::fs::read(&found).unwrap(), 0o755);
        }
    }
    for applet in ["sh", "id", "touch", "cat", "echo", "ls", "sleep", "grep"] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        tar.append_link(&mut header, format!("bin/{applet}"), "busybox").unwrap();
    }
    tar.into_inner().unwrap()
}
