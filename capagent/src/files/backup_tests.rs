//! Backups made and restored: the checksum recorded is the archive's, ignored files stay out, a
//! restore brings the directory back exactly, and a corrupt, truncated or hostile backup, or one
//! that does not fit, changes nothing.

use super::tests::Scene;
use super::*;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

/// A directory for backups beside the server's (not the canary's).
fn backups(scene: &Scene) -> PathBuf {
    let dir = scene.outside().parent().unwrap().join("backups");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A backup of the scene's server written to a file beside it, with its info.
fn backup_file(scene: &Scene, name: &str) -> (std::fs::File, BackupInfo) {
    let path = backups(scene).join(name);
    let mut file = std::fs::File::options().read(true).write(true).create_new(true).open(&path).unwrap();
    let info = scene.files.backup(&mut file).unwrap();
    file.flush().unwrap();
    (file, info)
}

/// Every path under the server's directory with its content (`None` for directories).
fn tree(scene: &Scene) -> Vec<(String, Option<Vec<u8>>)> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, Option<Vec<u8>>)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            let kind = entry.file_type().unwrap();
            if kind.is_symlink() {
                let target = std::fs::read_link(entry.path()).unwrap();
                out.push((name, Some(format!("-> {}", target.display()).into_bytes())));
            } else if kind.is_dir() {
                out.push((name.clone(), None));
                walk(&entry.path(), &format!("{name}/"), out);
            } else {
                out.push((name, Some(std::fs::read(entry.path()).unwrap())));
            }
        }
    }
    let mut out = Vec::new();
    walk(&scene.server(""), "", &mut out);
    out
}

#[test]
fn a_restore_brings_back_exactly_what_was_backed_up_without_ignored_files() {
    let scene = Scene::new();
    let files = &scene.files;
    files.write("world/level.dat", b"level one").unwrap();
    files.write("world/region/r.0.0.mca", &vec![5u8; 100_000]).unwrap();
    files.write("server.properties", b"motd=hi\n").unwrap();
    files.write("logs/latest.log", b"noise").unwrap();
    files.write("cache/big.bin", b"cache").unwrap();
    files.write(IGNORE_FILE, b"*.log\n/cache/\n").unwrap();
    // Links the game made: one inside is kept, ones leading out are left out of the backup
    // (a restore would refuse them).
    std::os::unix::fs::symlink("level.dat", scene.server("world/level-link")).unwrap();
    std::os::unix::fs::symlink("/etc", scene.server("etc-link")).unwrap();
    std::os::unix::fs::symlink("../../outside", scene.server("world/up-link")).unwrap();
    let (mut file, info) = backup_file(&scene, "b1.tar.zst");
    assert_eq!((info.summary.links, info.summary.links_left_out), (1, 2));
    assert_eq!(info.bytes, file.metadata().unwrap().len());
    file.rewind().unwrap();
    assert_eq!(sha256_of(&mut file).unwrap(), info.sha256, "the recorded checksum is the archive's");
    assert_eq!(info.summary.files, 4, "latest.log and cache/ are left out: {:?}", info.summary);
    let left_out = |p: &str| p.starts_with("cache") || p.ends_with(".log") || p == "etc-link" || p == "world/up-link";
    let expected: Vec<_> = tree(&scene).into_iter().filter(|(p, _)| !left_out(p)).collect();

    // The server changes after the backup.
    files.write("world/level.dat", b"level two").unwrap();
    files.remove("world/region").unwrap();
    files.write("new-since.txt", b"new").unwrap();
    let quota = DiskQuota::new(0, 0);
    let summary = restore(&scene.server(""), &mut file, info.bytes, &info.sha256, &quota).unwrap();
    assert_eq!(summary.files, 4);
    let names = |t: &[(String, Option<Vec<u8>>)]| t.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    let restored = tree(&scene);
    assert_eq!(names(&restored), names(&expected), "exactly the backed-up paths");
    assert!(restored == expected, "and contents");
    let siblings: Vec<_> = std::fs::read_dir(scene.server("").parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("restore"))
        .collect();
    assert!(siblings.is_empty(), "nothing left beside the server: {siblings:?}");
    scene.assert_canary_untouched();
}

#[test]
fn a_corrupt_or_truncated_backup_is_refused_and_changes_nothing() {
    let scene = Scene::new();
    scene.files.write("data.txt", b"the backed-up content").unwrap();
    let (mut file, info) = backup_file(&scene, "b.tar.zst");
    scene.files.write("data.txt", b"content after the backup").unwrap();
    let before = tree(&scene);
    let quota = DiskQuota::new(0, 0);
    // One byte flipped.
    let mut bytes = std::fs::read(backups(&scene).join("b.tar.zst")).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(backups(&scene).join("flipped.tar.zst"), &bytes).unwrap();
    let mut flipped = std::fs::File::open(backups(&scene).join("flipped.tar.zst")).unwrap();
    let err = restore(&scene.server(""), &mut flipped, info.bytes, &info.sha256, &quota).unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }) && err.to_string().contains("corrupt or truncated"), "{err:?}");
    // Cut short.
    file.set_len(info.bytes / 2).unwrap();
    let err = restore(&scene.server(""), &mut file, info.bytes / 2, &info.sha256, &quota).unwrap_err();
    assert!(err.to_string().contains("corrupt or truncated"), "{err}");
    assert_eq!(tree(&scene), before, "the server's directory is as it was");
}

#[test]
fn a_hostile_backup_with_a_matching_checksum_is_still_refused() {
    let scene = Scene::new();
    scene.files.write("data.txt", b"mine").unwrap();
    let before = tree(&scene);
    // A tar.zst whose entry climbs out; its checksum recorded as if it were ours.
    let mut header = tar::Header::new_old();
    let name = b"../outside/evil.txt";
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(5);
    header.set_cksum();
    let mut tar_bytes = header.as_bytes().to_vec();
    tar_bytes.extend_from_slice(b"pwned");
    tar_bytes.resize(1536 + 512, 0);
    let archive = zstd::stream::encode_all(&tar_bytes[..], 3).unwrap();
    let path = backups(&scene).join("hostile.tar.zst");
    std::fs::write(&path, &archive).unwrap();
    let sha = sha256_of(&mut &archive[..]).unwrap();
    let err = restore(
        &scene.server(""),
        &mut std::fs::File::open(&path).unwrap(),
        archive.len() as u64,
        &sha,
        &DiskQuota::new(0, 0),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)) && err.to_string().contains("`..`"), "{err:?}");
    assert_eq!(tree(&scene), before);
    scene.assert_canary_untouched();
}

#[test]
fn a_backup_that_does_not_fit_the_disk_limit_is_refused_and_changes_nothing() {
    let scene = Scene::new();
    scene.files.write("big.bin", &vec![1u8; 50_000]).unwrap();
    let (mut file, info) = backup_file(&scene, "b.tar.zst");
    scene.files.remove("big.bin").unwrap();
    scene.files.write("small.txt", b"small").unwrap();
    let before = tree(&scene);
    let err = restore(&scene.server(""), &mut file, info.bytes, &info.sha256, &DiskQuota::new(10_000, 0)).unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }) && err.to_string().contains("disk limit"), "{err:?}");
    assert_eq!(tree(&scene), before);
}
