//! Archives made and extracted by the file manager: round trips in every format, and each way an
//! archive could reach outside the server's directory or swamp it, refused with nothing written.

use super::tests::Scene;
use super::*;
use capcore::protocol::v1::files::FileKind;
use std::io::Write;
use std::os::unix::fs::symlink;

/// A tar entry with a raw name (the tar crate's own setters refuse `..`), of `kind`, with
/// `mode`, holding `content`; or a link to `link`.
fn raw_entry(name: &[u8], kind: tar::EntryType, mode: u32, content: &[u8], link: Option<&[u8]>) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    if let Some(link) = link {
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    }
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(content.len() as u64);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(content);
    bytes.resize(bytes.len().div_ceil(512) * 512, 0);
    bytes
}

/// A `.tar.gz` of the entries, written into the server's directory as `name`.
fn tar_gz(scene: &Scene, name: &str, entries: &[Vec<u8>]) {
    let file = std::fs::File::create(scene.server(name)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    for entry in entries {
        gz.write_all(entry).unwrap();
    }
    gz.write_all(&[0; 1024]).unwrap();
    gz.finish().unwrap();
}

/// `len` bytes that do not compress (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

fn file_entry(name: &str, content: &[u8]) -> Vec<u8> {
    raw_entry(name.as_bytes(), tar::EntryType::Regular, 0o644, content, None)
}

/// Everything directly in the server's directory, sorted.
fn top_names(scene: &Scene) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(scene.server(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[track_caller]
fn assert_refused_entry(result: Result<ArchiveSummary>, why: &str) {
    match result {
        Err(Error::Invalid(e)) if e.to_string().contains(why) => {}
        other => panic!("expected Invalid naming `{why}`, got {other:?}"),
    }
}

#[test]
fn every_format_round_trips_files_directories_modes_and_links() {
    let scene = Scene::new();
    let files = &scene.files;
    files.write("world/level.dat", b"level").unwrap();
    files.write("world/region/r.0.0.mca", &noise(200_000)).unwrap();
    files.chmod("world/level.dat", 0o600).unwrap();
    files.create_dir("world/empty").unwrap();
    symlink("region/r.0.0.mca", scene.server("world/latest")).unwrap();
    nix::unistd::mkfifo(&scene.server("world/fifo"), Mode::from_bits_truncate(0o644)).unwrap();
    for archive in ["backup.tar.zst", "backup.tar.gz", "backup.zip"] {
        let (entry, made) = files.compress("", &["world".to_string()], archive).unwrap();
        assert_eq!(entry.kind, FileKind::File);
        assert_eq!((made.files, made.directories, made.links), (2, 3, 1), "{archive}: the FIFO is left out");
        let into = format!("restored-{archive}");
        let out = files.decompress(archive, &into).unwrap();
        assert_eq!((out.files, out.directories, out.links, out.bytes), (2, 3, 1, 200_005), "{archive}");
        assert_eq!(files.read(&format!("{into}/world/level.dat"), 0, 100).unwrap(), b"level", "{archive}");
        assert_eq!(files.stat(&format!("{into}/world/level.dat")).unwrap().mode, 0o600, "{archive}: mode kept");
        assert_eq!(std::fs::read(scene.server(&format!("{into}/world/region/r.0.0.mca"))).unwrap(), noise(200_000));
        let link = files.stat(&format!("{into}/world/latest")).unwrap();
        assert_eq!((link.kind, link.target.as_deref()), (FileKind::Symlink, Some("region/r.0.0.mca")), "{archive}");
        assert_eq!(files.stat(&format!("{into}/world/empty")).unwrap().kind, FileKind::Directory);
    }
    assert!(top_names(&scene).iter().all(|n| !n.starts_with(".cap-")), "no staging or temporary file is left");
    assert!(matches!(files.compress("", &["world".to_string()], "backup.zip"), Err(Error::Conflict { .. })));
}

#[test]
fn entries_that_climb_out_or_are_absolute_are_refused_and_nothing_is_written() {
    let scene = Scene::new();
    let cases: [(&str, Vec<Vec<u8>>, &str); 5] = [
        ("dotdot.tar.gz", vec![file_entry("ok.txt", b"x"), file_entry("../outside/evil.txt", b"pwned")], "`..`"),
        ("deep.tar.gz", vec![file_entry("a/b/../../../outside/evil.txt", b"pwned")], "`..`"),
        ("absolute.tar.gz", vec![file_entry("/tmp/evil.txt", b"pwned")], "absolute"),
        (
            "link-out.tar.gz",
            vec![raw_entry(b"up", tar::EntryType::Symlink, 0o777, b"", Some(b"../../outside"))],
            "leading out",
        ),
        (
            "link-abs.tar.gz",
            vec![raw_entry(b"etc", tar::EntryType::Symlink, 0o777, b"", Some(b"/etc"))],
            "absolute or empty target",
        ),
    ];
    for (name, entries, why) in cases {
        tar_gz(&scene, name, &entries);
        assert_refused_entry(scene.files.decompress(name, "out"), why);
        assert!(!scene.server("out").exists(), "{name}: not even the destination was made");
    }
    scene.assert_canary_untouched();
}

#[test]
fn a_link_inside_followed_by_an_entry_through_it_writes_nothing() {
    let scene = Scene::new();
    // `sub` is a link that stays inside; then `sub/x` would be written through it.
    tar_gz(
        &scene,
        "trick.tar.gz",
        &[
            raw_entry(b"real/", tar::EntryType::Directory, 0o755, b"", None),
            raw_entry(b"sub", tar::EntryType::Symlink, 0o777, b"", Some(b"real")),
            file_entry("sub/x.txt", b"through the link"),
        ],
    );
    let err = scene.files.decompress("trick.tar.gz", "out").unwrap_err();
    assert!(matches!(err, Error::Forbidden { .. }), "{err:?}");
    let out: Vec<_> = std::fs::read_dir(scene.server("out")).unwrap().collect();
    assert!(out.is_empty(), "the staging directory went, nothing was moved in: {out:?}");
    assert_eq!(scene.files.quota().used_bytes(), 0);
    scene.assert_canary_untouched();
}

#[test]
fn hard_links_devices_fifos_and_setuid_bits_are_refused() {
    let scene = Scene::new();
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("hard.tar.gz", raw_entry(b"h", tar::EntryType::Link, 0o644, b"", Some(b"/etc/shadow")), "hard link"),
        ("char.tar.gz", raw_entry(b"null", tar::EntryType::Char, 0o666, b"", None), "device"),
        ("block.tar.gz", raw_entry(b"sda", tar::EntryType::Block, 0o660, b"", None), "device"),
        ("fifo.tar.gz", raw_entry(b"pipe", tar::EntryType::Fifo, 0o644, b"", None), "FIFO"),
        ("suid.tar.gz", raw_entry(b"su", tar::EntryType::Regular, 0o4755, b"#!/bin/sh\n", None), "setuid"),
    ];
    for (name, entry, why) in cases {
        tar_gz(&scene, name, &[file_entry("fine.txt", b"fine"), entry]);
        assert_refused_entry(scene.files.decompress(name, "out"), why);
        assert!(!scene.server("out").exists(), "{name}");
    }
}

#[test]
fn expansion_is_capped_in_ratio_entries_and_bytes() {
    let scene = Scene::new();
    // 20 MiB of zeros deflate to about 20 KiB: a ratio near 1000.
    let bomb = std::fs::File::create(scene.server("bomb.zip")).unwrap();
    let mut zip = zip::ZipWriter::new(bomb);
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("zeros.bin", options).unwrap();
    zip.write_all(&vec![0u8; 20 * 1024 * 1024]).unwrap();
    zip.finish().unwrap();
    assert_refused_entry(scene.files.decompress("bomb.zip", "out"), "times its own size");
    assert!(!scene.server("out").exists());

    let many: Vec<Vec<u8>> = (0..50).map(|i| file_entry(&format!("f{i}"), b"x")).collect();
    tar_gz(&scene, "many.tar.gz", &many);
    let few = ArchiveLimits { max_entries: 49, ..ArchiveLimits::default() };
    assert_refused_entry(scene.files.decompress_with("many.tar.gz", "out", few), "more than 49 entries");
    let small = ArchiveLimits { max_bytes: 10, ..ArchiveLimits::default() };
    tar_gz(&scene, "big.tar.gz", &[file_entry("big", &[1u8; 11])]);
    assert_refused_entry(scene.files.decompress_with("big.tar.gz", "out", small), "past 10 bytes");
    assert!(scene.files.decompress_with("many.tar.gz", "out", ArchiveLimits::default()).is_ok());
}

#[test]
fn the_disk_limit_holds_for_extraction_and_compression() {
    let scene = Scene::with_quota(DiskQuota::new(1_000_000, 0));
    let files = &scene.files;
    files.write("data.bin", &vec![9u8; 300_000]).unwrap();
    files.compress("", &["data.bin".to_string()], "data.zip").unwrap();
    let used = files.quota().used_bytes();
    assert!(used > 300_000 && used < 310_000, "the archive counts: {used}");
    tar_gz(&scene, "huge.tar.gz", &[file_entry("huge.bin", &vec![0u8; 800_000])]);
    files.quota().set_used(files.measure().unwrap());
    let before = files.quota().used_bytes();
    let err = files.decompress("huge.tar.gz", "out").unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }) && err.to_string().contains("disk limit"), "{err:?}");
    assert_eq!(files.quota().used_bytes(), before, "nothing counted for the refusal");
    assert!(!scene.server("out/huge.bin").exists());
    // An archive that would not fit: refused while being written, nothing left.
    files.write("more.bin", &noise(500_000)).unwrap();
    let before = files.quota().used_bytes();
    let err = files.compress("", &["more.bin".to_string()], "more.tar.zst").unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    assert_eq!(files.quota().used_bytes(), before);
    assert!(
        !top_names(&scene).iter().any(|n| n.starts_with(".cap-") || n == "more.tar.zst"),
        "{:?}",
        top_names(&scene)
    );
}

#[test]
fn extraction_never_overwrites_and_compression_refuses_hard_links() {
    let scene = Scene::new();
    let files = &scene.files;
    files.write("plugins/a.jar", b"old").unwrap();
    tar_gz(&scene, "update.tar.gz", &[file_entry("a.jar", b"new"), file_entry("b.jar", b"new")]);
    let err = files.decompress("update.tar.gz", "plugins").unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }) && err.to_string().contains("plugins/a.jar"), "{err:?}");
    assert_eq!(files.read("plugins/a.jar", 0, 10).unwrap(), b"old");
    assert!(!scene.server("plugins/b.jar").exists(), "all or nothing");
    std::fs::hard_link(scene.outside().join("canary.txt"), scene.server("plugins/hard")).unwrap();
    assert!(matches!(files.compress("", &["plugins".to_string()], "p.zip"), Err(Error::Forbidden { .. })));
    assert!(matches!(files.compress("", &["plugins".to_string()], "../p.zip"), Err(Error::Forbidden { .. })));
    assert!(!scene.server("p.zip").exists());
    scene.assert_canary_untouched();
}
