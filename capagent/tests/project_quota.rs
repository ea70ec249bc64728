//! Project quotas on real filesystems, in a virtual machine: the host's kernel may lack quota
//! support (this one is built without it), so the test boots a Debian kernel under QEMU with a
//! small initramfs (busybox, the filesystem modules, `xfs_quota`, and this test binary), with an
//! XFS and an ext4 disk made here, mounted with `prjquota` there. Inside, this same test runs the
//! checks (`CAP_QUOTA_GUEST` names the mounts); outside, it builds the machine, boots it, and
//! asserts on what the checks printed.
//!
//! Needs `CAP_TEST_KERNEL_DIR` (an extracted `linux-image-*` package: `boot/vmlinuz-*` and
//! `lib/modules/*`), `qemu-system-x86_64`, busybox, xfsprogs, e2fsprogs and cpio; without them
//! it skips, or fails when `CAP_TEST_REQUIRE=1`.

use capagent::files::ProjectQuotas;
use capcore::ids::ServerId;
use std::path::{Path, PathBuf};
use std::process::Command;

const TEST_NAME: &str = "project_quotas_hold_the_limit_against_the_games_own_writes";
const GUEST_ENV: &str = "CAP_QUOTA_GUEST";
const KERNEL_ENV: &str = "CAP_TEST_KERNEL_DIR";
const MIB: u64 = 1024 * 1024;

#[test]
fn project_quotas_hold_the_limit_against_the_games_own_writes() {
    match std::env::var(GUEST_ENV) {
        Ok(mounts) => mounts.split_whitespace().for_each(|m| guest_checks(Path::new(m))),
        Err(_) => host(),
    }
}

/// The game's user in the machine: quotas hold for it (root may pass ext4's).
const GAME_UID: u32 = 1000;

/// Writes `len` bytes to a new file as the game's user; how many went in, and the error that
/// stopped it.
fn write_until_refused(path: &Path, len: u64) -> (u64, Option<String>) {
    use std::os::unix::process::CommandExt;
    let dir = path.parent().unwrap();
    run("/bin/busybox", &["chown", "-R", &format!("{GAME_UID}:{GAME_UID}"), &dir.display().to_string()]);
    let out = Command::new("/bin/busybox")
        .args(["dd", "if=/dev/zero", "bs=65536", "conv=fsync"])
        .arg(format!("of={}", path.display()))
        .arg(format!("count={}", len / 65536))
        .uid(GAME_UID)
        .gid(GAME_UID)
        .output()
        .unwrap();
    let written = std::fs::metadata(path).map_or(0, |m| m.len());
    let refused = (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned());
    (written, refused)
}

/// Inside the machine, as root, on a filesystem mounted with `prjquota` at `mount`.
fn guest_checks(mount: &Path) {
    let what = mount.display().to_string();
    let servers = mount.join("servers");
    std::fs::create_dir_all(&servers).unwrap();
    let quotas = ProjectQuotas::detect(&servers).unwrap_or_else(|| panic!("{what}: project quotas found"));
    assert_eq!(quotas.mount_point(), mount);

    // A server with files already: tagged whole, its old file counted, the limit held.
    let a = ServerId(uuid::Uuid::new_v4());
    let dir = servers.join(a.to_string());
    std::fs::create_dir_all(dir.join("world")).unwrap();
    std::fs::write(dir.join("world/old.dat"), vec![1u8; 256 * 1024]).unwrap();
    // Links and fifos hold no blocks and take no project, and do not stop the tagging.
    std::os::unix::fs::symlink("/etc/passwd", dir.join("world/link")).unwrap();
    std::os::unix::fs::symlink("/nowhere", dir.join("dangling")).unwrap();
    run("/bin/busybox", &["mkfifo", &dir.join("world/pipe").display().to_string()]);
    // While the game runs, an untagged directory is not walked.
    let deferred = quotas.apply(a, &dir, MIB, false).unwrap_err();
    assert!(deferred.contains("when the server is next stopped"), "{what}: {deferred}");
    quotas.apply(a, &dir, MIB, true).unwrap();
    // Made after the tagging: it inherits the project.
    std::fs::create_dir(dir.join("plugins")).unwrap();
    let (written, refused) = write_until_refused(&dir.join("world/new.dat"), 2 * MIB);
    let refused = refused.unwrap_or_else(|| panic!("{what}: a write past the limit is refused"));
    // XFS says ENOSPC for a project over its quota, ext4 EDQUOT.
    assert!(refused.contains("No space left on device") || refused.contains("quota exceeded"), "{what}: {refused}");
    assert!(written <= MIB - 256 * 1024, "{what}: {written} bytes went in past the limit");
    assert!(written >= MIB / 2, "{what}: only {written} bytes went in");
    let used = quotas.used(a).unwrap();
    assert!(used > MIB - 128 * 1024 && used <= MIB, "{what}: the project holds {used} bytes");
    // A directory made after the tagging is under the same limit, and a full project takes no
    // new directory either.
    let (_, refused) = write_until_refused(&dir.join("plugins/more.jar"), MIB);
    assert!(refused.is_some(), "{what}: a new directory is under the limit too");
    let mkdir = {
        use std::os::unix::process::CommandExt;
        Command::new("/bin/busybox").arg("mkdir").arg(dir.join("full")).uid(GAME_UID).gid(GAME_UID).output().unwrap()
    };
    assert!(!mkdir.status.success(), "{what}: no room for a directory");
    // A higher limit lets it grow; freeing space lets it write again.
    quotas.apply(a, &dir, 4 * MIB, false).unwrap();
    let (_, refused) = write_until_refused(&dir.join("world/grown.dat"), 2 * MIB);
    assert!(refused.is_none(), "{what}: written under the raised limit: {refused:?}");

    // Another server without a limit is not held by the first one's.
    let b = ServerId(uuid::Uuid::new_v4());
    let other = servers.join(b.to_string());
    std::fs::create_dir_all(&other).unwrap();
    quotas.apply(b, &other, 0, true).unwrap();
    let (_, refused) = write_until_refused(&other.join("big"), 6 * MIB);
    assert!(refused.is_none(), "{what}: no limit, nothing refused: {refused:?}");

    // A new agent (nothing remembered) finds the directory tagged and only sets the limit,
    // even with the game running.
    let again = ProjectQuotas::detect(&servers).unwrap();
    again.apply(a, &dir, 4 * MIB, false).unwrap();
    // Lifted when the server goes.
    quotas.forget(a, true);
    let (_, refused) = write_until_refused(&dir.join("world/after.dat"), 2 * MIB);
    assert!(refused.is_none(), "{what}: the lifted limit holds nothing: {refused:?}");

    // The agent says which mode the node has.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let data = mount.join("agent");
        let mut config = capagent::AgentConfig::new("http://127.0.0.1:9", "capn_unused", &data);
        config.runtime.servers_dir = data.join("servers");
        let agent = capagent::Agent::start(config.clone()).await.unwrap();
        let limits = agent.enforced_limits();
        assert!(limits.contains(&"disk:project-quota".to_string()), "{what}: {limits:?}");
        // Turned off, the node tracks instead.
        config.project_quotas = false;
        let agent = capagent::Agent::start(config).await.unwrap();
        assert!(agent.enforced_limits().iter().any(|l| l == "disk:inotify"), "{what}");
    });
    println!("CAP-GUEST-CHECKED {what}");
}

/// Outside: everything the machine needs, or `None` (after saying what is missing).
fn host_parts() -> Option<(PathBuf, PathBuf)> {
    let kernel_dir = std::env::var_os(KERNEL_ENV).map(PathBuf::from);
    let tools = [
        "qemu-system-x86_64",
        "busybox",
        "xfs_quota",
        "mkfs.xfs",
        "mkfs.ext4",
        "cpio",
        "gzip",
        "ldd",
        "timeout",
        "chattr",
        "lsattr",
    ];
    let missing: Vec<&str> = tools.iter().copied().filter(|t| which(t).is_none()).collect();
    let problem = match &kernel_dir {
        None => Some(format!("{KERNEL_ENV} is not set")),
        Some(_) if !missing.is_empty() => Some(format!("missing {missing:?}")),
        Some(dir) => match find(dir, |p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))) {
            Some(vmlinuz) => return Some((dir.clone(), vmlinuz)),
            None => Some(format!("no boot/vmlinuz-* under {}", dir.display())),
        },
    };
    let problem = problem.unwrap_or_default();
    assert!(std::env::var("CAP_TEST_REQUIRE").as_deref() != Ok("1"), "CAP_TEST_REQUIRE=1 and {problem}");
    eprintln!("skipping the project quota test: {problem}");
    None
}

fn host() {
    let Some((kernel_dir, vmlinuz)) = host_parts() else { return };
    let work = std::env::temp_dir().join(format!("cap-quota-vm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let root = work.join("root");
    for d in ["bin", "lib/mod", "mnt/xfs", "mnt/ext4", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(which("busybox").unwrap(), root.join("bin/busybox")).unwrap();
    // The disk, both filesystems and quota format modules, in dependency order.
    let modules = [
        "virtio_ring",
        "virtio",
        "virtio_pci_modern_dev",
        "virtio_pci_legacy_dev",
        "virtio_pci",
        "virtio_blk",
        "crc32c_generic",
        "libcrc32c",
        "xfs",
        "crc16",
        "mbcache",
        "jbd2",
        "ext4",
        "quota_tree",
        "quota_v2",
    ];
    for m in modules {
        let name = format!("{m}.ko");
        let found =
            find(&kernel_dir.join("lib/modules"), |p| p.file_name().is_some_and(|n| n.to_string_lossy() == name));
        match found {
            Some(path) => {
                std::fs::copy(path, root.join("lib/mod").join(&name)).unwrap();
            }
            // Built into the kernel.
            None => eprintln!("no {name}: taken as built in"),
        }
    }
    copy_with_libraries(&which("xfs_quota").unwrap(), &root, Path::new("/usr/sbin/xfs_quota"));
    copy_with_libraries(&which("chattr").unwrap(), &root, Path::new("/usr/bin/chattr"));
    copy_with_libraries(&which("lsattr").unwrap(), &root, Path::new("/usr/bin/lsattr"));
    copy_with_libraries(&std::env::current_exe().unwrap(), &root, Path::new("/test"));
    let init = format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/sbin:/usr/bin HOME=/tmp
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
for m in {modules}; do [ -e /lib/mod/$m.ko ] && insmod /lib/mod/$m.ko; done
while [ ! -e /dev/vdb ]; do sleep 0.1; done
mount -t xfs -o prjquota /dev/vda /mnt/xfs && mount -t ext4 -o prjquota /dev/vdb /mnt/ext4
{GUEST_ENV}="/mnt/xfs /mnt/ext4" /test --exact {TEST_NAME} --nocapture --test-threads=1
echo "CAP-GUEST-EXIT=$?"
poweroff -f
"#,
        modules = modules.join(" ")
    );
    std::fs::write(root.join("init"), init).unwrap();
    std::fs::set_permissions(root.join("init"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let initrd = work.join("initrd.gz");
    let pack =
        format!("cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'", root.display(), initrd.display());
    run("sh", &["-c", &pack]);
    // The disks, sparse: XFS wants 300 MiB at least.
    let (xfs, ext4) = (work.join("xfs.img"), work.join("ext4.img"));
    std::fs::File::create(&xfs).unwrap().set_len(320 * MIB).unwrap();
    std::fs::File::create(&ext4).unwrap().set_len(64 * MIB).unwrap();
    run("mkfs.xfs", &["-q", "-f", &xfs.display().to_string()]);
    run("mkfs.ext4", &["-q", "-F", "-I", "256", "-O", "quota,project", &ext4.display().to_string()]);
    // Software emulation: nothing here depends on the host's virtualisation. `timeout` guards
    // against a machine that never powers off.
    let out = Command::new("timeout")
        .args(["600", "qemu-system-x86_64", "-accel", "tcg", "-m", "2048", "-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(&vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=raw", xfs.display()))
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=raw", ext4.display()))
        .output()
        .unwrap();
    let console = String::from_utf8_lossy(&out.stdout);
    let tail: String =
        console.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(console.contains("CAP-GUEST-CHECKED /mnt/xfs"), "XFS checked:\n{tail}");
    assert!(console.contains("CAP-GUEST-CHECKED /mnt/ext4"), "ext4 checked:\n{tail}");
    assert!(console.contains("CAP-GUEST-EXIT=0"), "the checks passed:\n{tail}");
    std::fs::remove_dir_all(&work).unwrap();
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?}: {status}");
}

fn which(program: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    dirs.into_iter()
        .chain(["/usr/sbin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The first file under `dir` (depth first) that `want` accepts.
fn find(dir: &Path, want: impl Fn(&Path) -> bool + Copy) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if let Some(found) = find(&path, want) {
                return Some(found);
            }
        } else if want(&path) {
            return Some(path);
        }
    }
    None
}

/// Copies a program to `to` inside `root`, with the shared libraries `ldd` names at their paths.
fn copy_with_libraries(program: &Path, root: &Path, to: &Path) {
    let inside = root.join(to.strip_prefix("/").unwrap());
    std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
    std::fs::copy(program, &inside).unwrap();
    let ldd = Command::new("ldd").arg(program).output().unwrap();
    for lib in String::from_utf8_lossy(&ldd.stdout).split_whitespace().filter(|w| w.starts_with('/')) {
        let target = root.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(lib, &target).unwrap();
    }
}
