//! Disk use of server directories, tracked incrementally: the first measurement of a directory
//! walks it once and watches every directory in it (one inotify instance for all servers);
//! later measurements look again only at the names that changed since. A directory that cannot
//! be watched (the node's watch limit, an event queue overflow) is walked again instead, and
//! [`DiskUsage::mode`] says which mode the node has.
//!
//! Sizes are the byte lengths of regular files (links not followed), as the file manager's
//! disk limit counts them.
//!
//! ```
//! use capagent::files::DiskUsage;
//! use capcore::ids::ServerId;
//!
//! let dir = std::env::temp_dir().join(format!("cap-usage-doc-{}", std::process::id()));
//! std::fs::create_dir_all(dir.join("world")).unwrap();
//! std::fs::write(dir.join("world/level.dat"), vec![0u8; 1000]).unwrap();
//! let usage = DiskUsage::new();
//! let server = ServerId(uuid::Uuid::from_u128(1));
//! assert_eq!(usage.measure(server, &dir), 1000);
//! std::fs::write(dir.join("world/level.dat"), vec![0u8; 250]).unwrap();
//! std::fs::write(dir.join("log.txt"), b"started").unwrap();
//! assert_eq!(usage.measure(server, &dir), 257);
//! assert_eq!(usage.walks(), if usage.mode() == "inotify" { 1 } else { 2 });
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use capcore::ids::ServerId;
use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a watched directory holds, as last seen.
#[derive(Debug)]
struct Dir {
    server: ServerId,
    path: PathBuf,
    /// Regular files and their lengths.
    files: HashMap<OsString, u64>,
}

#[derive(Debug)]
struct Tracked {
    root: PathBuf,
    total: u64,
    /// Walk again at the next measurement (events were lost, or a watch could not be added).
    stale: bool,
    /// Directories watched.
    watches: usize,
    /// Since when this directory is measured by walking it: it has more directories than a
    /// server may watch, or the node ran out of watches. Watching is tried again later.
    walking_since: Option<Instant>,
}

impl Tracked {
    fn new(root: &Path) -> Self {
        Self { root: root.to_path_buf(), total: 0, stale: false, watches: 0, walking_since: None }
    }
}

/// Directories one server may have watched; past it, its directory is walked instead.
pub const WATCHES_PER_SERVER: usize = 100_000;

/// How long a directory that could not be watched is walked before watching is tried again.
const RETRY_WATCHING: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
struct State {
    dirs: HashMap<WatchDescriptor, Dir>,
    servers: HashMap<ServerId, Tracked>,
}

/// The disk use of each server directory measured, kept up to date from inotify events.
#[derive(Debug)]
pub struct DiskUsage {
    inotify: Option<Inotify>,
    state: Mutex<State>,
    walks: AtomicU64,
    watch_limit: usize,
    retry_watching: Duration,
}

impl Default for DiskUsage {
    fn default() -> Self {
        Self::new()
    }
}

fn watch_flags() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
        | AddWatchFlags::IN_DONT_FOLLOW
}

impl DiskUsage {
    pub fn new() -> Self {
        let inotify = match Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) {
            Ok(i) => Some(i),
            Err(e) => {
                tracing::warn!("no inotify ({e}): disk use is measured by walking each directory");
                None
            }
        };
        Self {
            inotify,
            state: Mutex::new(State::default()),
            walks: AtomicU64::new(0),
            watch_limit: WATCHES_PER_SERVER,
            retry_watching: RETRY_WATCHING,
        }
    }

    /// With at most `limit` directories watched per server (instead of [`WATCHES_PER_SERVER`]).
    pub fn with_watch_limit(mut self, limit: usize) -> Self {
        self.watch_limit = limit;
        self
    }

    /// With watching tried again after `after` of walking (instead of ten minutes).
    pub fn with_retry_watching(mut self, after: Duration) -> Self {
        self.retry_watching = after;
        self
    }

    /// `inotify` (incremental) or `walk` (every measurement walks the directory).
    pub fn mode(&self) -> &'static str {
        if self.inotify.is_some() { "inotify" } else { "walk" }
    }

    /// Full walks made so far (the first measurement of each directory, and re-walks).
    pub fn walks(&self) -> u64 {
        self.walks.load(Ordering::Relaxed)
    }

    /// The bytes of regular files under `dir`, the directory of `server`. Blocking: call it
    /// off the async threads.
    pub fn measure(&self, server: ServerId, dir: &Path) -> u64 {
        let Some(inotify) = &self.inotify else {
            self.walks.fetch_add(1, Ordering::Relaxed);
            return crate::runtime::process::dir_size(dir);
        };
        let mut state = self.state.lock().expect("disk usage lock");
        self.apply_events(inotify, &mut state);
        let walking = state.servers.get(&server).and_then(|t| t.walking_since.filter(|_| t.root == dir));
        if walking.is_some_and(|since| since.elapsed() < self.retry_watching) {
            drop(state);
            self.walks.fetch_add(1, Ordering::Relaxed);
            return crate::runtime::process::dir_size(dir);
        }
        // Walked for a while: watching is tried again.
        let fresh = match state.servers.get(&server) {
            Some(t) => t.stale || t.root != dir || t.walking_since.is_some(),
            None => true,
        };
        if fresh {
            self.forget_locked(inotify, &mut state, server);
            state.servers.insert(server, Tracked::new(dir));
            self.walks.fetch_add(1, Ordering::Relaxed);
            self.add_tree(inotify, &mut state, server, dir);
            if state.servers.get(&server).is_some_and(|t| t.stale) {
                // Not all of it could be watched: what was counted is partial, so the
                // directory is walked (now, and for a while).
                self.forget_locked(inotify, &mut state, server);
                state.servers.insert(server, Tracked { walking_since: Some(Instant::now()), ..Tracked::new(dir) });
                drop(state);
                self.walks.fetch_add(1, Ordering::Relaxed);
                return crate::runtime::process::dir_size(dir);
            }
            if state.servers.get(&server).is_some_and(|t| t.watches == 0) {
                // No directory there (yet): looked for again at the next measurement.
                state.servers.remove(&server);
                return 0;
            }
        }
        state.servers.get(&server).map_or(0, |t| t.total)
    }

    /// Whether `server`'s directory is being measured by walking it (it could not all be
    /// watched).
    pub fn walking(&self, server: ServerId) -> bool {
        let state = self.state.lock().expect("disk usage lock");
        self.inotify.is_none() || state.servers.get(&server).is_some_and(|t| t.walking_since.is_some())
    }

    /// Stops tracking a server's directory (it was deleted, or its files replaced).
    pub fn forget(&self, server: ServerId) {
        if let Some(inotify) = &self.inotify {
            let mut state = self.state.lock().expect("disk usage lock");
            self.forget_locked(inotify, &mut state, server);
        }
    }

    fn forget_locked(&self, inotify: &Inotify, state: &mut State, server: ServerId) {
        let wds: Vec<WatchDescriptor> =
            state.dirs.iter().filter(|(_, d)| d.server == server).map(|(wd, _)| *wd).collect();
        for wd in wds {
            state.dirs.remove(&wd);
            let _ = inotify.rm_watch(wd);
        }
        state.servers.remove(&server);
    }

    /// Watches `dir` and everything beneath it, counting its files.
    fn add_tree(&self, inotify: &Inotify, state: &mut State, server: ServerId, dir: &Path) {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(path) = stack.pop() {
            if state.servers.get(&server).is_none_or(|t| t.watches >= self.watch_limit) {
                tracing::info!(server = %server, "more than {} directories: this server's disk use is walked instead", self.watch_limit);
                if let Some(t) = state.servers.get_mut(&server) {
                    t.stale = true;
                }
                return;
            }
            // Watched before it is read: a change during the read comes as an event, and
            // applying an event sets what is there then, so nothing is counted twice.
            let wd = match inotify.add_watch(&path, watch_flags()) {
                Ok(wd) => wd,
                Err(Errno::ENOENT | Errno::ENOTDIR) => continue,
                Err(e) => {
                    tracing::warn!(path = %path.display(), "cannot watch ({e}): this server's disk use is walked instead");
                    if let Some(t) = state.servers.get_mut(&server) {
                        t.stale = true;
                    }
                    return;
                }
            };
            // The same directory reached again (a watch is per inode): count it once.
            if state.dirs.contains_key(&wd) {
                continue;
            }
            let mut files = HashMap::new();
            if let Ok(entries) = std::fs::read_dir(&path) {
                for entry in entries.flatten() {
                    match entry.metadata() {
                        Ok(m) if m.is_dir() => stack.push(entry.path()),
                        Ok(m) if m.is_file() => {
                            files.insert(entry.file_name(), m.len());
                        }
                        _ => {}
                    }
                }
            }
            let sum: u64 = files.values().sum();
            if let Some(t) = state.servers.get_mut(&server) {
                t.total += sum;
                t.watches += 1;
            }
            state.dirs.insert(wd, Dir { server, path, files });
        }
    }

    /// Drops the watches of `path` and everything beneath it, uncounting their files.
    fn remove_tree(&self, inotify: &Inotify, state: &mut State, server: ServerId, path: &Path) {
        let gone: Vec<WatchDescriptor> = state
            .dirs
            .iter()
            .filter(|(_, d)| d.server == server && d.path.starts_with(path))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in gone {
            if let Some(dir) = state.dirs.remove(&wd) {
                let sum: u64 = dir.files.values().sum();
                if let Some(t) = state.servers.get_mut(&server) {
                    t.total = t.total.saturating_sub(sum);
                    t.watches = t.watches.saturating_sub(1);
                }
            }
            let _ = inotify.rm_watch(wd);
        }
    }

    /// Reads every pending event and looks again at each name that changed (once per name).
    fn apply_events(&self, inotify: &Inotify, state: &mut State) {
        let mut changed: HashSet<(WatchDescriptor, OsString)> = HashSet::new();
        let mut ignored = Vec::new();
        loop {
            let events = match inotify.read_events() {
                Ok(events) => events,
                Err(Errno::EAGAIN) => break,
                Err(e) => {
                    tracing::warn!("reading inotify events failed ({e}): disk use is walked again");
                    state.servers.values_mut().for_each(|t| t.stale = true);
                    break;
                }
            };
            for event in events {
                if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    // Events were lost: every directory is walked again.
                    state.servers.values_mut().for_each(|t| t.stale = true);
                } else if event.mask.contains(AddWatchFlags::IN_IGNORED) {
                    ignored.push(event.wd);
                } else if event.mask.contains(AddWatchFlags::IN_MOVE_SELF) {
                    // A server's directory itself moved (a restore swaps it): walk it again.
                    if let Some(dir) = state.dirs.get(&event.wd)
                        && let Some(t) = state.servers.get_mut(&dir.server)
                        && t.root == dir.path
                    {
                        t.stale = true;
                    }
                } else if let Some(name) = event.name {
                    changed.insert((event.wd, name));
                }
            }
        }
        // Directories deleted themselves first (their files' deletions came before).
        for wd in ignored {
            // The server's own directory deleted means it is walked again at the next measurement.
            if let Some(dir) = state.dirs.remove(&wd) {
                let sum: u64 = dir.files.values().sum();
                if let Some(t) = state.servers.get_mut(&dir.server) {
                    t.total = t.total.saturating_sub(sum);
                    t.watches = t.watches.saturating_sub(1);
                    t.stale |= t.root == dir.path;
                }
            }
        }
        // Then every changed name: whatever was watched at a path is unwatched before anything
        // is watched there again, so a directory moved within the tree, two directories
        // swapped, or one deleted and made again under the same name are each counted once,
        // at the path they have now.
        let mut appeared = Vec::new();
        for (wd, name) in changed {
            let Some(dir) = state.dirs.get(&wd) else { continue };
            let (server, path) = (dir.server, dir.path.join(&name));
            let before = dir.files.get(&name).copied();
            let now = std::fs::symlink_metadata(&path);
            if let Ok(m) = &now
                && m.is_file()
            {
                let dir = state.dirs.get_mut(&wd).expect("looked up above");
                dir.files.insert(name, m.len());
                if let Some(t) = state.servers.get_mut(&server) {
                    t.total = t.total.saturating_sub(before.unwrap_or(0)) + m.len();
                }
            } else {
                self.uncount(state, wd, server, &name, before);
            }
            self.remove_tree(inotify, state, server, &path);
            if now.is_ok_and(|m| m.is_dir()) {
                appeared.push((server, path));
            }
        }
        for (server, path) in appeared {
            self.add_tree(inotify, state, server, &path);
        }
    }

    fn uncount(&self, state: &mut State, wd: WatchDescriptor, server: ServerId, name: &OsString, before: Option<u64>) {
        if let Some(size) = before {
            if let Some(dir) = state.dirs.get_mut(&wd) {
                dir.files.remove(name);
            }
            if let Some(t) = state.servers.get_mut(&server) {
                t.total = t.total.saturating_sub(size);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::process::dir_size;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cap-usage-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn usage_follows_every_kind_of_change_without_walking_again() {
        let usage = DiskUsage::new();
        assert_eq!(usage.mode(), "inotify", "this machine has inotify");
        let dir = scratch("changes");
        let server = ServerId(uuid::Uuid::from_u128(7));
        std::fs::create_dir_all(dir.join("world/region")).unwrap();
        std::fs::write(dir.join("world/region/r.0.0.mca"), vec![1u8; 4096]).unwrap();
        std::fs::write(dir.join("server.properties"), b"motd=hi\n").unwrap();
        assert_eq!(usage.measure(server, &dir), 4096 + 8);
        type Change = Box<dyn Fn(&Path)>;
        let steps: Vec<(&str, Change)> = vec![
            ("a file grows", Box::new(|d| std::fs::write(d.join("server.properties"), vec![b'x'; 100]).unwrap())),
            (
                "a new deep tree",
                Box::new(|d| {
                    std::fs::create_dir_all(d.join("plugins/a/b/c")).unwrap();
                    std::fs::write(d.join("plugins/a/b/c/data.yml"), vec![2u8; 777]).unwrap();
                }),
            ),
            (
                "a file is truncated",
                Box::new(|d| {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(d.join("world/region/r.0.0.mca"))
                        .unwrap()
                        .set_len(10)
                        .unwrap();
                }),
            ),
            ("a tree moves within", Box::new(|d| std::fs::rename(d.join("plugins/a"), d.join("world/a")).unwrap())),
            (
                "a file in the moved tree changes",
                Box::new(|d| std::fs::write(d.join("world/a/b/c/data.yml"), b"1").unwrap()),
            ),
            (
                "a tree moves out",
                Box::new(|d| {
                    std::fs::rename(d.join("world/a"), d.with_extension("outside")).unwrap();
                }),
            ),
            ("a tree moves in", Box::new(|d| std::fs::rename(d.with_extension("outside"), d.join("back")).unwrap())),
            ("a tree is deleted", Box::new(|d| std::fs::remove_dir_all(d.join("world")).unwrap())),
            (
                "links and fifos count nothing",
                Box::new(|d| {
                    std::os::unix::fs::symlink("/etc/passwd", d.join("link")).unwrap();
                    nix::unistd::mkfifo(&d.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
                }),
            ),
            (
                "a file is renamed over another",
                Box::new(|d| {
                    std::fs::write(d.join("tmp"), vec![3u8; 50]).unwrap();
                    std::fs::rename(d.join("tmp"), d.join("server.properties")).unwrap();
                }),
            ),
        ];
        for (what, change) in steps {
            change(&dir);
            assert_eq!(usage.measure(server, &dir), dir_size(&dir), "after: {what}");
        }
        assert_eq!(usage.walks(), 1, "only the first measurement walked");
        // Forgotten, then measured again: a fresh walk.
        usage.forget(server);
        assert_eq!(usage.measure(server, &dir), dir_size(&dir));
        assert_eq!(usage.walks(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
        let _ = std::fs::remove_dir_all(dir.with_extension("outside"));
    }

    #[test]
    fn a_directory_swapped_in_whole_is_walked_again() {
        let usage = DiskUsage::new();
        let dir = scratch("swap");
        let server = ServerId(uuid::Uuid::from_u128(3));
        std::fs::write(dir.join("old"), vec![0u8; 100]).unwrap();
        assert_eq!(usage.measure(server, &dir), 100);
        // As a restore does: the new tree beside, swapped in, the old one deleted.
        let staged = dir.with_extension("staged");
        std::fs::create_dir_all(staged.join("sub")).unwrap();
        std::fs::write(staged.join("sub/new"), vec![0u8; 30]).unwrap();
        std::fs::rename(&dir, dir.with_extension("old")).unwrap();
        std::fs::rename(&staged, &dir).unwrap();
        std::fs::remove_dir_all(dir.with_extension("old")).unwrap();
        assert_eq!(usage.measure(server, &dir), 30);
        std::fs::write(dir.join("sub/more"), vec![0u8; 12]).unwrap();
        assert_eq!(usage.measure(server, &dir), 42);
        assert_eq!(usage.walks(), 2, "walked again once, after the swap");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_deleted_and_made_again_or_swapped_is_counted_where_it_is_now() {
        let usage = DiskUsage::new();
        let dir = scratch("remade");
        let server = ServerId(uuid::Uuid::from_u128(4));
        std::fs::create_dir_all(dir.join("a/deep")).unwrap();
        std::fs::create_dir_all(dir.join("b")).unwrap();
        std::fs::write(dir.join("a/deep/one"), vec![0u8; 100]).unwrap();
        std::fs::write(dir.join("b/two"), vec![0u8; 7]).unwrap();
        assert_eq!(usage.measure(server, &dir), 107);
        type Change = Box<dyn Fn(&Path)>;
        let steps: Vec<(&str, Change)> = vec![
            (
                "deleted and made again under the same name",
                Box::new(|d| {
                    std::fs::remove_dir_all(d.join("a")).unwrap();
                    std::fs::create_dir_all(d.join("a/deep")).unwrap();
                    std::fs::write(d.join("a/deep/one"), vec![0u8; 40]).unwrap();
                }),
            ),
            ("a file in the new one", Box::new(|d| std::fs::write(d.join("a/deep/more"), vec![0u8; 3]).unwrap())),
            (
                "two directories swapped",
                Box::new(|d| {
                    std::fs::rename(d.join("a"), d.join("t")).unwrap();
                    std::fs::rename(d.join("b"), d.join("a")).unwrap();
                    std::fs::rename(d.join("t"), d.join("b")).unwrap();
                }),
            ),
            (
                "files change in both after the swap",
                Box::new(|d| {
                    std::fs::write(d.join("a/two"), vec![0u8; 1000]).unwrap();
                    std::fs::write(d.join("b/deep/one"), vec![0u8; 1]).unwrap();
                }),
            ),
            (
                "a file replaced by a directory of the same name",
                Box::new(|d| {
                    std::fs::remove_file(d.join("a/two")).unwrap();
                    std::fs::create_dir(d.join("a/two")).unwrap();
                    std::fs::write(d.join("a/two/inner"), vec![0u8; 9]).unwrap();
                }),
            ),
            (
                "then the new directory changes",
                Box::new(|d| std::fs::write(d.join("a/two/inner"), vec![0u8; 90]).unwrap()),
            ),
        ];
        for (what, change) in steps {
            change(&dir);
            assert_eq!(usage.measure(server, &dir), dir_size(&dir), "after: {what}");
        }
        assert_eq!(usage.walks(), 1, "only the first measurement walked");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_with_more_directories_than_may_be_watched_is_walked() {
        let usage = DiskUsage::new().with_watch_limit(3);
        let dir = scratch("many");
        let server = ServerId(uuid::Uuid::from_u128(5));
        for i in 0..5 {
            std::fs::create_dir_all(dir.join(format!("d{i}"))).unwrap();
            std::fs::write(dir.join(format!("d{i}/f")), vec![0u8; 10 + i]).unwrap();
        }
        assert_eq!(usage.measure(server, &dir), dir_size(&dir), "all of it, not what the watches saw");
        assert!(usage.walking(server));
        std::fs::write(dir.join("d4/g"), vec![0u8; 5]).unwrap();
        assert_eq!(usage.measure(server, &dir), dir_size(&dir));
        // Under the limit, a server beside it is still tracked by its watches.
        let small = scratch("few");
        let other = ServerId(uuid::Uuid::from_u128(6));
        std::fs::write(small.join("x"), vec![0u8; 4]).unwrap();
        let walks = usage.walks();
        assert_eq!(usage.measure(other, &small), 4);
        std::fs::write(small.join("y"), vec![0u8; 6]).unwrap();
        assert_eq!(usage.measure(other, &small), 10);
        assert!(!usage.walking(other));
        assert_eq!(usage.walks(), walks + 1, "the small one walked once");
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&small).unwrap();
    }

    #[test]
    fn watching_is_tried_again_after_a_while_and_the_count_stays_right() {
        let usage = DiskUsage::new().with_watch_limit(2).with_retry_watching(Duration::ZERO);
        let dir = scratch("retry");
        let server = ServerId(uuid::Uuid::from_u128(9));
        for i in 0..3 {
            std::fs::create_dir_all(dir.join(format!("d{i}"))).unwrap();
            std::fs::write(dir.join(format!("d{i}/f")), vec![0u8; 100]).unwrap();
        }
        for round in 0..3 {
            assert_eq!(usage.measure(server, &dir), 300, "round {round}");
            assert!(usage.walking(server));
        }
        // Fewer directories now: watching takes over again.
        std::fs::remove_dir_all(dir.join("d2")).unwrap();
        std::fs::remove_dir_all(dir.join("d1")).unwrap();
        assert_eq!(usage.measure(server, &dir), 100);
        assert!(!usage.walking(server));
        std::fs::write(dir.join("d0/g"), vec![0u8; 5]).unwrap();
        assert_eq!(usage.measure(server, &dir), 105);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_made_after_its_first_measurement_is_counted() {
        let usage = DiskUsage::new();
        let dir = scratch("later");
        std::fs::remove_dir_all(&dir).unwrap();
        let server = ServerId(uuid::Uuid::from_u128(8));
        assert_eq!(usage.measure(server, &dir), 0, "nothing there yet");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/f"), vec![0u8; 33]).unwrap();
        assert_eq!(usage.measure(server, &dir), 33);
        std::fs::write(dir.join("g"), vec![0u8; 2]).unwrap();
        assert_eq!(usage.measure(server, &dir), 35);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn servers_are_tracked_apart() {
        let usage = DiskUsage::new();
        let (a, b) = (scratch("a"), scratch("b"));
        let (sa, sb) = (ServerId(uuid::Uuid::from_u128(1)), ServerId(uuid::Uuid::from_u128(2)));
        std::fs::write(a.join("x"), vec![0u8; 10]).unwrap();
        std::fs::write(b.join("y"), vec![0u8; 20]).unwrap();
        assert_eq!((usage.measure(sa, &a), usage.measure(sb, &b)), (10, 20));
        std::fs::write(b.join("z"), vec![0u8; 5]).unwrap();
        assert_eq!((usage.measure(sa, &a), usage.measure(sb, &b)), (10, 25));
        std::fs::remove_dir_all(&a).unwrap();
        std::fs::remove_dir_all(&b).unwrap();
    }
}
