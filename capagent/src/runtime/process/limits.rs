//! Resource limits for host processes: one cgroup per server (v2, or v1 hierarchies) where the
//! agent may create them, else rlimits set by `prlimit`; and the argv that starts a game inside them.
//!
//! A game joins its cgroups before it runs a single instruction of its own, without `unsafe`
//! (`pre_exec`) and without a race: it is started through [`CGROUP_WRAPPER`], a `/bin/sh` that
//! writes its own pid into each `cgroup.procs` and then `exec`s the argv, which it receives as
//! positional parameters and never parses. As `run_as`, privileges are dropped after joining,
//! by `setpriv`, because the user could not write the cgroup files itself.

use super::RunAs;
use capcore::model::Limits;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Joins the cgroups named before `--`, then runs what follows it, unchanged; exits 125 (before
/// running anything) if it cannot join one.
pub(crate) const CGROUP_WRAPPER: &str =
    r#"for f; do [ "$f" = -- ] && break; echo "$$" > "$f" || exit 125; shift; done; shift; exec "$@""#;

const MIB: u64 = 1024 * 1024;

/// How resource limits are enforced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LimitMode {
    /// One cgroup per server where the agent may create them (v2, else v1), else rlimits.
    #[default]
    Auto,
    /// rlimits only (memory as `RLIMIT_AS`, pids as `RLIMIT_NPROC`, CPU unenforced), even where
    /// cgroups would work.
    Rlimit,
}

/// The cgroup setup found at start-up.
#[derive(Clone, Debug)]
pub(crate) enum Cgroups {
    /// cgroup v1: the parent directory in each usable hierarchy.
    V1 {
        memory: Option<PathBuf>,
        memsw: bool,
        cpu: Option<PathBuf>,
        pids: Option<PathBuf>,
        /// The blkio parent and the weight file it has (`blkio.weight` or `blkio.bfq.weight`).
        blkio: Option<(PathBuf, &'static str)>,
    },
    /// cgroup v2: the parent directory, with the controllers enabled for its children.
    V2 { parent: PathBuf, memory: bool, swap: bool, cpu: bool, pids: bool, io: bool },
}

/// How this machine enforces limits, decided once when the runtime is built.
#[derive(Clone, Debug)]
pub(crate) struct Enforcement {
    pub cgroups: Option<Cgroups>,
    pub prlimit: Option<PathBuf>,
    pub setpriv: Option<PathBuf>,
    /// Whether games run as root (who ignores `RLIMIT_NPROC`).
    pub games_as_root: bool,
}

/// One server's cgroup directories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServerCgroup {
    pub dirs: Vec<PathBuf>,
}

/// Finds `name` in `path` (a `PATH`-like list), as an executable file.
pub(crate) fn find_program(name: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if name.contains('/') {
        let p = PathBuf::from(name);
        return std::fs::metadata(&p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).then_some(p);
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

impl Enforcement {
    /// Looks at the machine: cgroup mounts, whether we may create cgroups under `parent`, and
    /// the helper programs. `parent` with a leading `/` is placed at the root of each hierarchy;
    /// without it, under the agent's own cgroup.
    pub fn detect(mode: LimitMode, parent: &str, path: &str, run_as: Option<RunAs>) -> Self {
        let prlimit = find_program("prlimit", path);
        let setpriv = find_program("setpriv", path);
        let games_as_root = match run_as {
            Some(user) => user.uid == 0,
            None => nix::unistd::geteuid().is_root(),
        };
        let mut cgroups = None;
        if mode == LimitMode::Auto {
            cgroups = detect_cgroups(parent);
            if cgroups.is_some() && run_as.is_some() && setpriv.is_none() {
                tracing::warn!("`setpriv` is not in PATH: games cannot join cgroups as run_as, so rlimits are used");
                cgroups = None;
            }
        }
        Self { cgroups, prlimit, setpriv, games_as_root }
    }

    /// What is enforced, e.g. `memory:cgroup-v1` or `cpu:none`.
    pub fn describe(&self) -> Vec<String> {
        let (version, memory, swap, cpu, pids, io) = match &self.cgroups {
            Some(Cgroups::V1 { memory, memsw, cpu, pids, blkio }) => (
                "cgroup-v1",
                memory.is_some(),
                memory.is_some() && *memsw,
                cpu.is_some(),
                pids.is_some(),
                blkio.is_some(),
            ),
            Some(Cgroups::V2 { memory, swap, cpu, pids, io, .. }) => ("cgroup-v2", *memory, *swap, *cpu, *pids, *io),
            None => ("none", false, false, false, false, false),
        };
        let rlimit = if self.prlimit.is_some() { "rlimit" } else { "none" };
        let pick = |by_cgroup: bool, fallback: &'static str| if by_cgroup { version } else { fallback };
        vec![
            format!("memory:{}", pick(memory, rlimit)),
            format!("swap:{}", pick(swap, "none")),
            format!("cpu:{}", pick(cpu, "none")),
            format!("pids:{}", pick(pids, if self.games_as_root { "none" } else { rlimit })),
            format!("io:{}", pick(io, "none")),
            "disk:none".to_string(),
        ]
    }

    /// `prlimit` options for what no cgroup covers.
    pub fn rlimit_args(&self, limits: &Limits) -> Vec<String> {
        if self.prlimit.is_none() {
            return Vec::new();
        }
        let (memory, pids) = match &self.cgroups {
            Some(Cgroups::V1 { memory, pids, .. }) => (memory.is_some(), pids.is_some()),
            Some(Cgroups::V2 { memory, pids, .. }) => (*memory, *pids),
            None => (false, false),
        };
        let mut args = Vec::new();
        if !memory && limits.memory_mb > 0 {
            let bytes = limits.memory_mb as u64 * MIB;
            args.push(format!("--as={bytes}:{bytes}"));
        }
        if !pids && limits.pids > 0 {
            args.push(format!("--nproc={0}:{0}", limits.pids));
        }
        args
    }

    /// Creates (or reuses, if empty) the server's cgroups and writes its limits into them.
    pub fn create_cgroup(&self, name: &str, limits: &Limits) -> io::Result<Option<ServerCgroup>> {
        let Some(cgroups) = &self.cgroups else { return Ok(None) };
        let mut dirs = Vec::new();
        let result = create_and_configure(cgroups, name, limits, &mut dirs);
        if let Err(e) = result {
            // Leave nothing half made behind (only what this call created is empty and removable).
            for dir in &dirs {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(e);
        }
        Ok(Some(ServerCgroup { dirs }))
    }
}

fn create_and_configure(cgroups: &Cgroups, name: &str, limits: &Limits, dirs: &mut Vec<PathBuf>) -> io::Result<()> {
    let make = |parent: &Path, dirs: &mut Vec<PathBuf>| -> io::Result<PathBuf> {
        let dir = parent.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if !procs(&dir).is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::ResourceBusy,
                        format!("processes of an earlier run are still in {}", dir.display()),
                    ));
                }
            }
            Err(e) => return Err(e),
        }
        dirs.push(dir.clone());
        Ok(dir)
    };
    let memory_bytes = (limits.memory_mb > 0).then(|| limits.memory_mb as u64 * MIB);
    match cgroups {
        Cgroups::V1 { memory, memsw, cpu, pids, blkio } => {
            if let Some(parent) = memory {
                let dir = make(parent, dirs)?;
                // memsw must stay >= the memory limit: lift it first, then set both.
                if *memsw {
                    write(&dir, "memory.memsw.limit_in_bytes", "-1")?;
                }
                write(&dir, "memory.limit_in_bytes", &memory_bytes.map_or("-1".into(), |b| b.to_string()))?;
                if *memsw && let Some(bytes) = memory_bytes {
                    let total = match limits.swap_mb {
                        -1 => "-1".to_string(),
                        swap => (bytes + swap.max(0) as u64 * MIB).to_string(),
                    };
                    write(&dir, "memory.memsw.limit_in_bytes", &total)?;
                }
            }
            if let Some(parent) = cpu {
                let dir = make(parent, dirs)?;
                write(&dir, "cpu.cfs_period_us", "100000")?;
                let quota = if limits.cpu_percent > 0 { (limits.cpu_percent * 1000).to_string() } else { "-1".into() };
                write(&dir, "cpu.cfs_quota_us", &quota)?;
            }
            if let Some(parent) = pids {
                let dir = make(parent, dirs)?;
                write(&dir, "pids.max", &max_or(limits.pids))?;
            }
            if let Some((parent, file)) = blkio {
                let dir = make(parent, dirs)?;
                if (10..=1000).contains(&limits.io_weight) {
                    write(&dir, file, &limits.io_weight.to_string())?;
                }
            }
        }
        Cgroups::V2 { parent, memory, swap, cpu, pids, io } => {
            let dir = make(parent, dirs)?;
            if *memory {
                write(&dir, "memory.max", &memory_bytes.map_or("max".into(), |b| b.to_string()))?;
                if *swap {
                    let swap_max = match limits.swap_mb {
                        -1 => "max".to_string(),
                        swap => (swap.max(0) as u64 * MIB).to_string(),
                    };
                    write(&dir, "memory.swap.max", &swap_max)?;
                }
            }
            if *cpu {
                let max = if limits.cpu_percent > 0 { (limits.cpu_percent * 1000).to_string() } else { "max".into() };
                write(&dir, "cpu.max", &format!("{max} 100000"))?;
            }
            if *pids {
                write(&dir, "pids.max", &max_or(limits.pids))?;
            }
            if *io && (10..=1000).contains(&limits.io_weight) {
                // v1's 10..=1000 onto v2's 1..=10000, as Docker maps blkio weights.
                let weight = 1 + (limits.io_weight - 10) * 9999 / 990;
                write(&dir, "io.weight", &format!("default {weight}"))?;
            }
        }
    }
    Ok(())
}

fn max_or(n: i64) -> String {
    if n > 0 { n.to_string() } else { "max".into() }
}

fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    std::fs::write(dir.join(file), value)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write {value} to {}: {e}", dir.join(file).display())))
}

/// The pids in a cgroup directory (none if it is gone).
fn procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

impl ServerCgroup {
    /// The files a starting game writes its pid into.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Memory in use by every process of the server, as `docker stats` counts it (without the
    /// inactive file cache, which the kernel reclaims first).
    pub fn memory_bytes(&self) -> Option<u64> {
        let read_u64 = |p: PathBuf| std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok();
        let stat_field = |dir: &Path, key: &str| {
            std::fs::read_to_string(dir.join("memory.stat")).ok().and_then(|s| {
                s.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse::<u64>().ok())
            })
        };
        for dir in &self.dirs {
            if let Some(usage) = read_u64(dir.join("memory.usage_in_bytes")) {
                return Some(usage.saturating_sub(stat_field(dir, "total_inactive_file").unwrap_or(0)));
            }
            if let Some(usage) = read_u64(dir.join("memory.current")) {
                return Some(usage.saturating_sub(stat_field(dir, "inactive_file").unwrap_or(0)));
            }
        }
        None
    }

    /// SIGKILLs every process in the cgroups (`cgroup.kill` where the kernel has it).
    pub fn kill_all(&self) {
        for dir in &self.dirs {
            if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
                continue;
            }
            for pid in procs(dir) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }

    /// Kills what is left and removes the directories, waiting up to `limit` for the killed
    /// processes to leave them.
    pub async fn remove(&self, limit: Duration) -> io::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            self.kill_all();
            let mut busy = None;
            for dir in &self.dirs {
                match std::fs::remove_dir(dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => busy = Some(e),
                }
            }
            match busy {
                None => return Ok(()),
                Some(e) if Instant::now() >= deadline => return Err(e),
                Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

/// One line of `/proc/self/mounts`: the mount point (octal escapes undone), type and options.
fn mounts() -> Vec<(PathBuf, String, Vec<String>)> {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let point = fields.get(1)?.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\");
            Some((
                PathBuf::from(point),
                fields.get(2)?.to_string(),
                fields.get(3)?.split(',').map(String::from).collect(),
            ))
        })
        .collect()
}

/// The agent's own cgroup path in the hierarchy holding `controller` (`""` for v2).
fn own_cgroup(controller: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        matches.then(|| PathBuf::from(path.trim_start_matches('/')))
    })
}

/// `<mount>/<parent>`, or `<mount>/<own cgroup>/<parent>` for a relative `parent`.
fn parent_in(mount: &Path, controller: &str, parent: &str) -> Option<PathBuf> {
    match parent.strip_prefix('/') {
        Some(absolute) => Some(mount.join(absolute)),
        None => Some(mount.join(own_cgroup(controller)?).join(parent)),
    }
}

fn writable(dir: &Path) -> bool {
    nix::unistd::access(&dir.join("cgroup.procs"), nix::unistd::AccessFlags::W_OK).is_ok()
}

fn detect_cgroups(parent: &str) -> Option<Cgroups> {
    let mounts = mounts();
    // v2 where its root has the controllers (on a hybrid system they are bound to v1 instead).
    for (point, kind, _) in &mounts {
        if kind != "cgroup2" {
            continue;
        }
        let controllers = std::fs::read_to_string(point.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "memory") {
            return detect_v2(point, parent);
        }
    }
    let v1 = |controller: &str| -> Option<PathBuf> {
        let (point, _, _) =
            mounts.iter().find(|(_, kind, opts)| kind == "cgroup" && opts.iter().any(|o| o == controller))?;
        let dir = parent_in(point, controller, parent)?;
        std::fs::create_dir_all(&dir).ok()?;
        writable(&dir).then_some(dir)
    };
    let memory = v1("memory");
    let cpu = v1("cpu");
    let pids = v1("pids");
    let blkio = v1("blkio").and_then(|dir| {
        let file = ["blkio.weight", "blkio.bfq.weight"].into_iter().find(|f| dir.join(f).exists())?;
        Some((dir, file))
    });
    if memory.is_none() && cpu.is_none() && pids.is_none() {
        return None;
    }
    let memsw = memory.as_ref().is_some_and(|d| d.join("memory.memsw.limit_in_bytes").exists());
    Some(Cgroups::V1 { memory, memsw, cpu, pids, blkio })
}

fn detect_v2(mount: &Path, parent: &str) -> Option<Cgroups> {
    let base = match parent.strip_prefix('/') {
        Some(_) => mount.to_path_buf(),
        None => mount.join(own_cgroup("")?),
    };
    let target = parent_in(mount, "", parent)?;
    let wanted = ["memory", "cpu", "pids", "io"];
    // Enable the controllers on every level from the base down to the parent, so its children
    // (the servers) have them. A level that refuses (no internal processes, no permission) just
    // leaves them off: what the parent ends up with is what is used.
    let mut level = base.clone();
    let relative = target.strip_prefix(&base).ok()?.to_path_buf();
    let mut components = relative.components().peekable();
    loop {
        for c in wanted {
            let _ = std::fs::write(level.join("cgroup.subtree_control"), format!("+{c}"));
        }
        let Some(next) = components.next() else { break };
        level = level.join(next);
        if let Err(e) = std::fs::create_dir(&level)
            && e.kind() != io::ErrorKind::AlreadyExists
        {
            return None;
        }
    }
    if !writable(&target) {
        return None;
    }
    let enabled = std::fs::read_to_string(target.join("cgroup.subtree_control")).unwrap_or_default();
    let has = |c: &str| enabled.split_whitespace().any(|e| e == c);
    let (memory, cpu, pids, io) = (has("memory"), has("cpu"), has("pids"), has("io"));
    if !memory && !cpu && !pids {
        return None;
    }
    let swap = memory && target.join("memory.swap.max").exists();
    Some(Cgroups::V2 { parent: target, memory, swap, cpu, pids, io })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rlimit_only(prlimit: bool, games_as_root: bool) -> Enforcement {
        Enforcement { cgroups: None, prlimit: prlimit.then(|| "/usr/bin/prlimit".into()), setpriv: None, games_as_root }
    }

    #[test]
    fn rlimits_cover_memory_and_pids_and_say_cpu_is_not_enforced() {
        let e = rlimit_only(true, false);
        let limits = Limits { memory_mb: 256, pids: 64, ..Limits::default() };
        assert_eq!(e.rlimit_args(&limits), ["--as=268435456:268435456", "--nproc=64:64"]);
        assert_eq!(e.describe(), ["memory:rlimit", "swap:none", "cpu:none", "pids:rlimit", "io:none", "disk:none"]);
        assert!(e.rlimit_args(&Limits { memory_mb: 0, pids: 0, ..limits }).is_empty(), "0 is unlimited");
        assert!(rlimit_only(true, true).describe().contains(&"pids:none".to_string()), "root ignores RLIMIT_NPROC");
        assert!(rlimit_only(false, false).describe().contains(&"memory:none".to_string()), "no prlimit");
    }

    #[test]
    fn cgroups_take_over_what_they_cover() {
        let e = Enforcement {
            cgroups: Some(Cgroups::V1 {
                memory: Some("/m".into()),
                memsw: true,
                cpu: Some("/c".into()),
                pids: None,
                blkio: None,
            }),
            ..rlimit_only(true, false)
        };
        assert_eq!(e.rlimit_args(&Limits::default()), ["--nproc=512:512"]);
        assert_eq!(
            e.describe(),
            ["memory:cgroup-v1", "swap:cgroup-v1", "cpu:cgroup-v1", "pids:rlimit", "io:none", "disk:none"]
        );
    }

    #[test]
    fn the_wrapper_joins_every_cgroup_and_runs_the_argv_unchanged() {
        let dir = std::env::temp_dir().join(format!("capagent-wrapper-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.procs"), dir.join("b.procs"));
        let hostile = "; rm -rf / $(id) \"quoted\"\nnext line";
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", CGROUP_WRAPPER, "sh"])
            .arg(&a)
            .arg(&b)
            .args(["--", "/bin/sh", "-c", "printf '%s|' \"$$\" \"$@\"", "inner", hostile, "--", "x"])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let pid = std::fs::read_to_string(&a).unwrap();
        assert_eq!(std::fs::read_to_string(&b).unwrap(), pid);
        assert_eq!(text, format!("{}|{hostile}|--|x|", pid.trim()), "same process, argv untouched");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
