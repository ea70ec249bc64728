//! The file manager against every way out of a server's directory we could think of: each test
//! has a canary directory beside the server's, whose files must be neither read, written,
//! created, deleted, listed nor chmodded.

use super::*;
use capcore::protocol::v1::files::{FileOrder, ListRequest};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const SECRET: &[u8] = b"the canary's secret";

/// A server directory and, beside it, a canary directory holding `canary.txt`.
pub(super) struct Scene {
    base: PathBuf,
    pub(super) files: ServerFiles,
}

impl Scene {
    pub(super) fn new() -> Self {
        Self::with_quota(DiskQuota::unlimited())
    }

    pub(super) fn with_quota(quota: DiskQuota) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir().join(format!(
            "capagent-files-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("server")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::fs::write(base.join("outside/canary.txt"), SECRET).unwrap();
        std::fs::set_permissions(base.join("outside/canary.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let files = ServerFiles::open(&base.join("server"), quota).unwrap();
        Self { base, files }
    }

    pub(super) fn server(&self, rel: &str) -> PathBuf {
        self.base.join("server").join(rel)
    }

    pub(super) fn outside(&self) -> PathBuf {
        self.base.join("outside")
    }

    /// The canary directory holds exactly `canary.txt`, unchanged, mode 0600.
    pub(super) fn assert_canary_untouched(&self) {
        let names: Vec<String> = std::fs::read_dir(self.outside())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["canary.txt"], "nothing was created or deleted outside");
        let canary = self.outside().join("canary.txt");
        assert_eq!(std::fs::read(&canary).unwrap(), SECRET, "the canary's content is unchanged");
        assert_eq!(std::fs::metadata(&canary).unwrap().permissions().mode() & 0o7777, 0o600, "its mode too");
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

#[track_caller]
fn assert_forbidden<T: std::fmt::Debug>(result: Result<T>, doing: &str) {
    match result {
        Err(Error::Forbidden { .. }) => {}
        other => panic!("{doing}: expected Forbidden, got {other:?}"),
    }
}

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T>, doing: &str) {
    assert!(result.is_err(), "{doing}: expected a refusal, got {result:?}");
}

#[test]
fn round_trip_of_every_operation_inside() {
    let scene = Scene::new();
    let files = &scene.files;
    files.write("a/b/c.txt", b"hello").unwrap();
    assert_eq!(files.read("/a/b/c.txt", 0, 100).unwrap(), b"hello");
    assert_eq!(files.read("a/b/c.txt", 1, 3).unwrap(), b"ell", "a range");
    assert_eq!(files.read("a/b/c.txt", 10, 3).unwrap(), b"", "past the end");
    let stat = files.stat("a/b/c.txt").unwrap();
    assert_eq!((stat.kind, stat.size, stat.mode, stat.path.as_str()), (FileKind::File, 5, 0o644, "a/b/c.txt"));
    files.write("a/b/c.txt", b"replaced").unwrap();
    assert_eq!(std::fs::read(scene.server("a/b/c.txt")).unwrap(), b"replaced");
    files.chmod("a/b/c.txt", 0o600).unwrap();
    files.write("a/b/c.txt", b"kept mode").unwrap();
    assert_eq!(files.stat("a/b/c.txt").unwrap().mode, 0o600, "a replaced file keeps its mode");
    files.create_dir("a/d/e").unwrap();
    files.create_dir("a/d/e").unwrap();
    files.copy("a", "copy-of-a").unwrap();
    assert_eq!(files.read("copy-of-a/b/c.txt", 0, 100).unwrap(), b"kept mode");
    assert_eq!(files.stat("copy-of-a/d/e").unwrap().kind, FileKind::Directory);
    files.rename("copy-of-a", "moved").unwrap();
    assert!(matches!(files.stat("copy-of-a"), Err(Error::NotFound { .. })));
    files.remove("moved").unwrap();
    assert!(!scene.server("moved").exists());
    let leftovers: Vec<_> = std::fs::read_dir(scene.server("a/b")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["c.txt"], "no temporary file is left behind");
}

#[test]
fn listing_pages_orders_and_puts_directories_first() {
    let scene = Scene::new();
    let files = &scene.files;
    for (name, bytes) in [("b.txt", 3), ("A.txt", 1), ("c.txt", 2)] {
        files.write(name, &vec![b'x'; bytes]).unwrap();
    }
    files.create_dir("zdir").unwrap();
    symlink("/etc/passwd", scene.server("link")).unwrap();
    let names = |request: ListRequest| -> Vec<String> {
        files.list("/", request).unwrap().entries.into_iter().map(|e| e.name).collect()
    };
    assert_eq!(names(ListRequest::first(10)), ["zdir", "A.txt", "b.txt", "c.txt", "link"]);
    let by_size = ListRequest { order: FileOrder::Size, descending: true, ..ListRequest::first(10) };
    // A link's size is its target's text: 11 bytes.
    assert_eq!(names(by_size), ["zdir", "link", "b.txt", "c.txt", "A.txt"]);
    let page = files.list("", ListRequest { offset: 1, ..ListRequest::first(2) }).unwrap();
    assert_eq!(page.total, 5);
    assert_eq!(page.entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["A.txt", "b.txt"]);
    let link = files.list("", ListRequest::first(10)).unwrap().entries.pop().unwrap();
    assert_eq!((link.kind, link.target.as_deref()), (FileKind::Symlink, Some("/etc/passwd")), "shown, not followed");
    let err = files.list("", ListRequest::first(0)).unwrap_err();
    assert!(err.to_string().contains("1 to 1000"), "{err}");
}

#[test]
fn a_directory_of_100_000_entries_lists_in_pages() {
    let scene = Scene::new();
    let dir = scene.server("many");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..100_000 {
        std::fs::File::create(dir.join(format!("f{i:06}"))).unwrap();
    }
    let first = scene.files.list("many", ListRequest::first(1000)).unwrap();
    assert_eq!(first.total, 100_000);
    assert_eq!(first.entries.len(), 1000);
    assert_eq!(first.entries[0].name, "f000000");
    let last = scene.files.list("many", ListRequest { offset: 99_500, ..ListRequest::first(1000) }).unwrap();
    assert_eq!(last.entries.len(), 500);
    assert_eq!(last.entries.last().unwrap().name, "f099999");
}

#[test]
fn dot_dot_and_absolute_paths_never_leave() {
    let scene = Scene::new();
    let files = &scene.files;
    for path in ["../outside/canary.txt", "/../outside/canary.txt", "a/../../outside/canary.txt"] {
        assert_forbidden(files.read(path, 0, 100), path);
        assert_forbidden(files.write(path, b"pwned"), path);
        assert_forbidden(files.remove(path), path);
        assert_forbidden(files.chmod(path, 0o777), path);
        assert_forbidden(files.stat(path), path);
        assert_forbidden(files.rename(path, "stolen"), path);
        assert_forbidden(files.copy(path, "stolen"), path);
        assert_forbidden(files.list(path, ListRequest::first(10)), path);
    }
    // An absolute path means the server's directory, not the machine's.
    assert!(matches!(
        files.read(&format!("{}/canary.txt", scene.outside().display()), 0, 100),
        Err(Error::NotFound { .. })
    ));
    scene.assert_canary_untouched();
}

#[test]
fn symbolic_links_to_outside_are_never_followed_in_any_position() {
    let scene = Scene::new();
    let files = &scene.files;
    symlink(scene.outside(), scene.server("absolute-dir")).unwrap();
    symlink("../outside", scene.server("relative-dir")).unwrap();
    symlink(scene.outside().join("canary.txt"), scene.server("file-link")).unwrap();
    symlink(scene.outside().join("not-yet-there.txt"), scene.server("dangling")).unwrap();
    std::fs::create_dir(scene.server("deep")).unwrap();
    symlink("../../outside", scene.server("deep/up")).unwrap();
    files.write("mine.txt", b"mine").unwrap();

    for dir in ["absolute-dir", "relative-dir", "deep/up"] {
        let through = format!("{dir}/canary.txt");
        assert_forbidden(files.read(&through, 0, 100), &through);
        assert_forbidden(files.stat(&through), &through);
        assert_forbidden(files.write(&through, b"pwned"), &through);
        assert_forbidden(files.write(&format!("{dir}/new.txt"), b"pwned"), "creating through a link");
        assert_forbidden(files.create_dir(&format!("{dir}/newdir")), "mkdir through a link");
        assert_forbidden(files.remove(&through), &through);
        assert_forbidden(files.chmod(&through, 0o777), &through);
        assert_forbidden(files.rename(&through, "stolen"), &through);
        assert_forbidden(files.rename("mine.txt", &format!("{dir}/mine.txt")), "moving out through a link");
        assert_forbidden(files.copy(&through, "stolen"), &through);
        assert_forbidden(files.copy("mine.txt", &format!("{dir}/mine.txt")), "copying out through a link");
        assert_forbidden(files.list(dir, ListRequest::first(10)), dir);
        assert_forbidden(files.search(dir, "canary", 10), dir);
    }
    // The link itself, as the last component: not read, not chmodded through.
    assert_forbidden(files.read("file-link", 0, 100), "reading a link to a file outside");
    assert_refused(files.chmod("file-link", 0o777), "chmod of a link");
    assert_forbidden(files.read("dangling", 0, 100), "reading a dangling link");
    // Writing to a link's name is refused: the link stays, nothing is written where it points.
    assert_refused(files.write("file-link", b"meant for the target"), "writing over a link");
    assert_refused(files.write("dangling", b"meant for the target"), "writing over a dangling link");
    assert!(!scene.outside().join("not-yet-there.txt").exists(), "a dangling link's target is not created");
    assert_eq!(files.stat("file-link").unwrap().kind, FileKind::Symlink);
    // Copying a link copies the link.
    files.copy("absolute-dir", "copied-link").unwrap();
    assert_eq!(files.stat("copied-link").unwrap().kind, FileKind::Symlink);
    // Deleting a link deletes the link, and a tree holding links deletes only the tree.
    files.remove("absolute-dir").unwrap();
    files.remove("deep").unwrap();
    files.remove("copied-link").unwrap();
    assert!(!scene.server("absolute-dir").exists() && !scene.server("deep").exists());
    scene.assert_canary_untouched();
}

#[test]
fn links_inside_the_directory_are_not_followed_either() {
    let scene = Scene::new();
    let files = &scene.files;
    files.write("real/file.txt", b"inside").unwrap();
    symlink("real", scene.server("alias")).unwrap();
    symlink("real/file.txt", scene.server("file-alias")).unwrap();
    assert_forbidden(files.read("alias/file.txt", 0, 10), "through an inside link");
    assert_forbidden(files.read("file-alias", 0, 10), "an inside link to a file");
    let listed = files.list("alias", ListRequest::first(10));
    assert_forbidden(listed, "listing through an inside link");
}

#[test]
fn hard_links_to_outside_files_are_neither_read_nor_changed() {
    let scene = Scene::new();
    let files = &scene.files;
    std::fs::hard_link(scene.outside().join("canary.txt"), scene.server("hard.txt")).unwrap();
    let err = files.read("hard.txt", 0, 100).unwrap_err();
    assert!(matches!(err, Error::Forbidden { .. }) && err.to_string().contains("hard links"), "{err:?}");
    assert_forbidden(files.chmod("hard.txt", 0o777), "chmod of a hard link");
    assert_forbidden(files.copy("hard.txt", "copy.txt"), "copying a hard link");
    assert!(!scene.server("copy.txt").exists(), "a refused copy leaves nothing");
    // Writing replaces this name only; deleting removes this name only.
    files.write("hard.txt", b"new content for this name").unwrap();
    assert_eq!(std::fs::read(scene.server("hard.txt")).unwrap(), b"new content for this name");
    files.remove("hard.txt").unwrap();
    std::fs::hard_link(scene.outside().join("canary.txt"), scene.server("again.txt")).unwrap();
    files.rename("again.txt", "renamed.txt").unwrap();
    files.remove("renamed.txt").unwrap();
    scene.assert_canary_untouched();
}

#[test]
fn fifos_sockets_and_devices_are_never_opened() {
    let scene = Scene::new();
    let files = &scene.files;
    nix::unistd::mkfifo(&scene.server("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(scene.server("socket")).unwrap();
    for name in ["fifo", "socket"] {
        let err = files.read(name, 0, 10).unwrap_err();
        assert!(
            err.to_string().contains("not a regular file") || matches!(err, Error::Internal { .. } | Error::Invalid(_)),
            "{name}: {err}"
        );
        assert_refused(files.copy(name, "copy"), name);
        assert_eq!(files.stat(name).unwrap().kind, FileKind::Other);
    }
    files.remove("fifo").unwrap();
}

#[test]
fn names_and_modes_that_make_trouble_are_refused() {
    let scene = Scene::new();
    let files = &scene.files;
    for bad in ["new\nline.txt", "esc\u{1b}[31m.txt"] {
        assert!(matches!(files.write(bad, b"x"), Err(Error::Invalid(_))), "{bad:?}");
    }
    files.write("ok.txt", b"x").unwrap();
    for mode in [0o4755, 0o2755, 0o1777, 0o10000] {
        let err = files.chmod("ok.txt", mode).unwrap_err();
        assert!(err.to_string().contains("only the permission bits"), "{mode:o}: {err}");
    }
    assert_eq!(files.stat("ok.txt").unwrap().mode, 0o644);
    for root in ["", "/", "a/.."] {
        assert!(matches!(files.remove(root), Err(Error::Invalid(_))), "removing {root:?}");
        assert!(matches!(files.rename(root, "x"), Err(Error::Invalid(_))), "renaming {root:?}");
        assert!(matches!(files.write(root, b"x"), Err(Error::Invalid(_))), "writing {root:?}");
    }
    assert!(matches!(files.rename("ok.txt", "ok.txt/inside"), Err(Error::Invalid(_))));
    files.create_dir("d").unwrap();
    assert!(matches!(files.rename("d", "d/inner"), Err(Error::Invalid(_))), "a directory into itself");
    assert!(matches!(files.copy("d", "d/inner"), Err(Error::Invalid(_))), "copying a directory into itself");
    files.write("other.txt", b"y").unwrap();
    assert!(matches!(files.rename("ok.txt", "other.txt"), Err(Error::Conflict { .. })), "never replaces");
    assert_eq!(files.read("other.txt", 0, 10).unwrap(), b"y");
    assert!(matches!(files.read("ok.txt", 0, MAX_READ_BYTES + 1), Err(Error::Invalid(_))));
}

#[test]
fn the_disk_limit_refuses_writes_and_copies_before_crossing_it() {
    let scene = Scene::with_quota(DiskQuota::new(1000, 0));
    let files = &scene.files;
    files.write("a.bin", &[1; 600]).unwrap();
    assert_eq!(files.quota().used_bytes(), 600);
    let err = files.write("b.bin", &[2; 401]).unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }) && err.to_string().contains("disk limit"), "{err:?}");
    assert!(!scene.server("b.bin").exists(), "nothing of the refused write is there");
    assert_eq!(std::fs::read_dir(scene.server("")).unwrap().count(), 1, "no temporary file either");
    assert_eq!(files.quota().used_bytes(), 600, "the refused bytes were given back");
    assert!(matches!(files.copy("a.bin", "copy.bin"), Err(Error::Conflict { .. })), "600 + 600 > 1000");
    assert!(!scene.server("copy.bin").exists());
    // Replacing counts the difference; deleting gives back.
    files.write("a.bin", &[3; 1000]).unwrap();
    assert_eq!(files.quota().used_bytes(), 1000);
    files.remove("a.bin").unwrap();
    assert_eq!(files.quota().used_bytes(), 0);
    files.write("dir/x.bin", &[4; 300]).unwrap();
    files.copy("dir", "dir2").unwrap();
    assert_eq!(files.quota().used_bytes(), 600);
    assert_eq!(files.measure().unwrap(), 600, "the count agrees with a measurement");
}

/// A directory on the path is swapped for a link to outside, over and over, while reads and
/// writes go through it: none ever reaches outside.
#[test]
fn swapping_a_directory_for_a_link_while_in_use_never_escapes() {
    let scene = Scene::new();
    std::fs::create_dir(scene.server("swap")).unwrap();
    std::fs::write(scene.server("swap/canary.txt"), b"inside").unwrap();
    symlink(scene.outside(), scene.server("evil")).unwrap();
    std::fs::create_dir(scene.server("parked")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, base) = (stop.clone(), scene.base.join("server"));
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            let base = std::fs::File::open(base).unwrap();
            while !stop.load(Ordering::Relaxed) {
                // swap <-> evil, atomically, so `swap` is sometimes the directory, sometimes the link.
                let _ = nix::fcntl::renameat2(&base, "swap", &base, "evil", nix::fcntl::RenameFlags::RENAME_EXCHANGE);
                swaps += 1;
            }
            swaps
        })
    };
    let mut read_inside = 0;
    for i in 0..3000 {
        if let Ok(bytes) = scene.files.read("swap/canary.txt", 0, 100) {
            assert_eq!(bytes, b"inside", "read the outside file through a swapped directory");
            read_inside += 1;
        }
        let _ = scene.files.write(&format!("swap/written-{i}.txt"), b"x");
        let _ = scene.files.chmod("swap/canary.txt", 0o777);
        let _ = scene.files.remove(&format!("swap/written-{i}.txt"));
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 100, "the swapper ran ({swaps} swaps)");
    assert!(read_inside > 0, "some reads went through while it was the directory");
    scene.assert_canary_untouched();
}

#[test]
fn search_finds_by_name_without_following_links() {
    let scene = Scene::new();
    let files = &scene.files;
    files.write("world/level.dat", b"x").unwrap();
    files.write("world/region/r.0.0.mca", b"x").unwrap();
    files.write("LEVEL-backup.txt", b"x").unwrap();
    symlink(scene.outside(), scene.server("out")).unwrap();
    std::fs::write(scene.outside().join("level-secret.txt"), b"x").unwrap();
    let found = files.search("/", "level", 10).unwrap();
    let mut paths: Vec<_> = found.entries.iter().map(|e| e.path.clone()).collect();
    paths.sort();
    assert_eq!(paths, ["LEVEL-backup.txt", "world/level.dat"]);
    assert!(!found.truncated);
    assert!(files.search("/", "level", 1).unwrap().truncated);
    assert!(matches!(files.search("/", " ", 10), Err(Error::Invalid(_))));
}

#[test]
fn pages_of_an_unchanged_directory_come_from_one_read_and_every_change_shows() {
    let scene = Scene::new();
    let files = &scene.files;
    files.write("d/a", b"").unwrap();
    files.write("d/b", b"").unwrap();
    let names = || -> Vec<String> {
        files.list("d", ListRequest::first(10)).unwrap().entries.into_iter().map(|e| e.name).collect()
    };
    // Settled an hour ago: its sorted names are kept for the next page.
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::open(scene.server("d")).unwrap().set_modified(hour_ago).unwrap();
    assert_eq!(names(), ["a", "b"]);
    assert!(files.sorted.lock().unwrap().is_some(), "kept");
    // A change moves the modification time: read afresh.
    files.write("d/c", b"").unwrap();
    assert_eq!(names(), ["a", "b", "c"]);
    // Changed just now: not kept, so a change within the same tick of the clock still shows.
    assert!(files.sorted.lock().unwrap().is_none(), "a directory changed in the last seconds is not kept");
    files.write("d/e", b"").unwrap();
    assert_eq!(names(), ["a", "b", "c", "e"]);
    files.remove("d/a").unwrap();
    assert_eq!(names(), ["b", "c", "e"]);
}
