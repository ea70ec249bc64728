//! Disk limits the kernel holds: filesystem project quotas (XFS mounted with `prjquota`, or ext4
//! with the `project` and `quota` features mounted with `prjquota`). Each server's directory
//! gets a project of its own (every file and directory in it tagged, new ones inheriting the
//! tag) with a hard block limit of the server's disk limit, so the game's own writes fail with
//! "disk quota exceeded" at the limit instead of being caught afterwards.
//!
//! Limits are set with `xfs_quota` (from xfsprogs, which handles both filesystems); directories
//! are tagged with it on XFS, and with `chattr` (e2fsprogs) on ext4, which takes the inherit
//! flag on directories only. A node without these, or whose servers' directory is on a
//! filesystem without project quotas, keeps to the incremental tracking in
//! [`super::DiskUsage`] and the agent's grace stop.
//!
//! ```
//! use capagent::files::ProjectQuotas;
//!
//! // Found only where the filesystem has project quotas and `xfs_quota` is installed.
//! let dir = std::env::temp_dir();
//! if let Some(quotas) = ProjectQuotas::detect(&dir) {
//!     println!("project quotas on {}", quotas.mount_point().display());
//! }
//! // Each server's project id comes from its id, never 0 (the default project).
//! let server = capcore::ids::ServerId(uuid::Uuid::from_u128(7));
//! assert_ne!(ProjectQuotas::project_of(server), 0);
//! ```

use capcore::ids::ServerId;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Project quotas of the filesystem that holds the servers' directories.
#[derive(Debug)]
pub struct ProjectQuotas {
    tool: PathBuf,
    /// `chattr`, for tagging on ext4.
    chattr: Option<PathBuf>,
    mount_point: PathBuf,
    /// Not XFS: `xfs_quota` works on it in its foreign-filesystem mode.
    foreign: bool,
    /// Servers whose directories were tagged by this agent, with the limit set (bytes).
    applied: Mutex<HashMap<ServerId, u64>>,
}

impl ProjectQuotas {
    /// Project quotas for directories under `dir`, if its filesystem enforces them and
    /// `xfs_quota` is on `PATH` (or in `/usr/sbin`, `/sbin`).
    pub fn detect(dir: &Path) -> Option<Self> {
        let tool = program("xfs_quota")?;
        // Setting projects and limits takes root; an agent without it would only pretend.
        if !nix::unistd::geteuid().is_root() {
            tracing::info!("project quotas are not used: the agent is not root");
            return None;
        }
        let dir = std::fs::canonicalize(dir).ok()?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let (mount_point, fs_type, options) = mount_of(&mountinfo, &dir)?;
        let enforced = options.split(',').any(|o| matches!(o, "prjquota" | "pquota"));
        if !enforced || !matches!(fs_type.as_str(), "xfs" | "ext4") {
            return None;
        }
        // `xfs_quota -c` splits its command at spaces.
        if mount_point.to_string_lossy().contains(char::is_whitespace)
            || dir.to_string_lossy().contains(char::is_whitespace)
        {
            tracing::warn!("project quotas are not used: the servers' directory has a space in its path");
            return None;
        }
        let foreign = fs_type != "xfs";
        let chattr = program("chattr");
        if foreign && chattr.is_none() {
            tracing::warn!("project quotas are not used: ext4 needs `chattr` (e2fsprogs) to tag directories");
            return None;
        }
        let quotas = Self { tool, chattr, mount_point, foreign, applied: Mutex::default() };
        match quotas.run(&["state -p".to_string()]) {
            Ok(_) => Some(quotas),
            Err(e) => {
                tracing::warn!("project quotas are not used: {e}");
                None
            }
        }
    }

    /// Where the filesystem is mounted.
    pub fn mount_point(&self) -> &Path {
        &self.mount_point
    }

    /// The project id of a server's directory: from its id, in `1..2^31`.
    pub fn project_of(server: ServerId) -> u32 {
        let bytes = server.0.as_bytes();
        let folded = bytes.chunks(4).fold(0u32, |acc, c| acc ^ u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        (folded & 0x7fff_ffff).max(1)
    }

    /// Tags `dir` (the server's directory, which must exist) as the server's project and sets its
    /// hard limit to `limit_bytes` (0: none). A directory already tagged (its own project id is
    /// the server's: what is made in it inherits that) is not walked again; one that is not is
    /// walked only when `may_walk` (the game is not running, so nothing changes beneath the
    /// walk), else this says so and sets nothing.
    pub fn apply(&self, server: ServerId, dir: &Path, limit_bytes: u64, may_walk: bool) -> Result<(), String> {
        let project = Self::project_of(server);
        let tagged = self.applied.lock().expect("quota lock").get(&server).copied();
        if tagged.is_none() {
            let dir = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            if !dir.starts_with(&self.mount_point) {
                return Err(format!("{} is not on {}", dir.display(), self.mount_point.display()));
            }
            if self.project_of_dir(&dir) != Some(project) {
                if !may_walk {
                    return Err("the directory is tagged when the server is next stopped".into());
                }
                self.tag(&dir, project)?;
            }
        }
        if tagged != Some(limit_bytes) {
            // Whole KiB, rounded up, as the quota counts blocks.
            self.run(&[format!("limit -p bhard={}k {project}", limit_bytes.div_ceil(1024))])?;
        }
        self.applied.lock().expect("quota lock").insert(server, limit_bytes);
        Ok(())
    }

    /// Forgets a server's directory (deleted, or replaced by a restore): the next
    /// [`ProjectQuotas::apply`] tags it again. `remove` also lifts its project's limit.
    pub fn forget(&self, server: ServerId, remove: bool) {
        self.applied.lock().expect("quota lock").remove(&server);
        if remove && let Err(e) = self.run(&[format!("limit -p bhard=0 {}", Self::project_of(server))]) {
            tracing::warn!(%server, "cannot lift the project quota: {e}");
        }
    }

    /// The bytes the server's project holds, as the filesystem counts them (blocks in use).
    pub fn used(&self, server: ServerId) -> Result<u64, String> {
        let project = Self::project_of(server);
        let out = self.run(&[format!("quota -p -N -n -b {project}")])?;
        // "<fs source> <used> <soft> <hard> <warn> <grace>", in KiB blocks.
        out.lines()
            .find_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .ok_or_else(|| format!("xfs_quota gave no usage for project {project}: {out:?}"))
    }

    /// The project id of the directory itself (`lsattr -pd`), if it can be read.
    fn project_of_dir(&self, dir: &Path) -> Option<u32> {
        let out = Command::new(program("lsattr")?).arg("-pd").arg(dir).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).split_whitespace().next()?.parse().ok()
    }

    /// Gives everything in `dir` the project id, and its directories the flag that makes what is
    /// made in them inherit it.
    fn tag(&self, dir: &Path, project: u32) -> Result<(), String> {
        let Some(chattr) = self.chattr.as_ref().filter(|_| self.foreign) else {
            return self.run(&[format!("project -s -p {} {project}", dir.display())]).map(drop);
        };
        let chattr_on = |args: &[&std::ffi::OsStr]| -> Result<(), String> {
            let out = Command::new(chattr).args(args).output().map_err(|e| format!("cannot run chattr: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("chattr failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
            }
        };
        // Regular files and directories (links and special files take no project, and chattr
        // refuses them), a few hundred per run; the inherit flag on directories only (ext4
        // refuses it on files).
        let mut dirs = vec![dir.to_path_buf()];
        let mut files = Vec::new();
        let mut next = 0;
        while next < dirs.len() {
            let entries = match std::fs::read_dir(&dirs[next]) {
                Ok(entries) => entries,
                // Gone meanwhile: nothing to tag there.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    next += 1;
                    continue;
                }
                Err(e) => return Err(format!("{}: {e}", dirs[next].display())),
            };
            next += 1;
            for entry in entries.flatten() {
                match entry.file_type() {
                    Ok(t) if t.is_dir() => dirs.push(entry.path()),
                    Ok(t) if t.is_file() => files.push(entry.path()),
                    _ => {}
                }
            }
        }
        let id = project.to_string();
        for batch in dirs.chunks(256).chain(files.chunks(256)) {
            let mut args: Vec<&std::ffi::OsStr> = vec!["-p".as_ref(), id.as_ref()];
            args.extend(batch.iter().map(|d| d.as_os_str()));
            chattr_on(&args)?;
        }
        for batch in dirs.chunks(256) {
            let mut args: Vec<&std::ffi::OsStr> = vec!["+P".as_ref()];
            args.extend(batch.iter().map(|d| d.as_os_str()));
            chattr_on(&args)?;
        }
        Ok(())
    }

    fn run(&self, commands: &[String]) -> Result<String, String> {
        let mut cmd = Command::new(&self.tool);
        cmd.arg("-x");
        if self.foreign {
            cmd.arg("-f");
        }
        for c in commands {
            cmd.arg("-c").arg(c);
        }
        cmd.arg(&self.mount_point);
        let out = cmd.output().map_err(|e| format!("cannot run {}: {e}", self.tool.display()))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(format!("xfs_quota {commands:?} failed ({}): {}", out.status, stderr.trim()));
        }
        // Notes such as "skipping special file" for links and fifos, which hold no blocks.
        if !stderr.trim().is_empty() {
            tracing::debug!("xfs_quota {commands:?}: {}", stderr.trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A program in the system directories or on `PATH`.
fn program(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .into_iter()
        .map(PathBuf::from)
        .chain(std::env::var_os("PATH").iter().flat_map(std::env::split_paths))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The mount holding `path` (the longest mount point that is a prefix of it): its mount point,
/// filesystem type, and mount and superblock options together.
fn mount_of(mountinfo: &str, path: &Path) -> Option<(PathBuf, String, String)> {
    let mut best: Option<(PathBuf, String, String)> = None;
    for line in mountinfo.lines() {
        let Some((before, after)) = line.split_once(" - ") else { continue };
        let fields: Vec<&str> = before.split_whitespace().collect();
        let (Some(point), Some(mount_options)) = (fields.get(4), fields.get(5)) else { continue };
        let mut after = after.split_whitespace();
        let (Some(fs_type), _, Some(super_options)) = (after.next(), after.next(), after.next()) else { continue };
        let point = PathBuf::from(unescape(point));
        if path.starts_with(&point)
            && best.as_ref().is_none_or(|(b, _, _)| point.as_os_str().len() >= b.as_os_str().len())
        {
            best = Some((point, fs_type.to_string(), format!("{mount_options},{super_options}")));
        }
    }
    best
}

/// Mount points in mountinfo have spaces, tabs, newlines and backslashes as octal escapes.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(c as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_of_a_path_is_the_longest_prefix() {
        let info = "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n\
                    40 22 8:2 / /srv rw,noatime - xfs /dev/sdb1 rw,attr2,inode64,prjquota\n\
                    41 22 0:5 / /srv/games\\040x rw - tmpfs tmpfs rw\n";
        let (point, fs, options) = mount_of(info, Path::new("/srv/cap/servers")).unwrap();
        assert_eq!((point.as_path(), fs.as_str()), (Path::new("/srv"), "xfs"));
        assert!(options.split(',').any(|o| o == "prjquota"));
        assert_eq!(mount_of(info, Path::new("/home/x")).unwrap().1, "ext4");
        assert_eq!(mount_of(info, Path::new("/srv/games x/1")).unwrap().1, "tmpfs");
    }

    #[test]
    fn project_ids_are_stable_and_never_zero() {
        let a = ServerId(uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788));
        assert_eq!(ProjectQuotas::project_of(a), ProjectQuotas::project_of(a));
        assert_ne!(ProjectQuotas::project_of(ServerId(uuid::Uuid::nil())), 0);
        assert!(ProjectQuotas::project_of(ServerId(uuid::Uuid::max())) < 1 << 31);
    }
}
