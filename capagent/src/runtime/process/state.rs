//! The on-disk state of the process runtime: what a restarted agent needs to find, re-attach to and
//! clean up after the games it started.
//!
//! # Layout
//!
//! ```text
//! <state_dir>/                 0711, created if missing (default `<servers_dir>/../.cap-run`)
//!   <server id>/               0700, owned by the agent: never inside the server's own directory,
//!                              so the game (which owns that) cannot replace or read these files
//!     lock                     flock(2)ed by the one runtime that tails and supervises the run
//!     stdout.log, stderr.log   0600; the game's stdout and stderr, opened O_APPEND for it; the agent
//!                              punches out what it has read (a sparse file, so disk stays bounded)
//!     stdin                    0600 FIFO; the game holds it open read+write (so it never sees
//!                              end of input when no agent holds it), the agent writes commands to it
//!     run.json                 0600; {pid, start_ticks, started_unix_ms, cgroups}: the live run
//!     install.sh               0644; the last install script (the directory is 0711 while an
//!                              install runs as `run_as`, so that user can read it)
//! ```
//!
//! `run.json` names the process by pid *and* start time (field 22 of `/proc/<pid>/stat`), so a
//! later process that reused the pid is never mistaken for the game. It is removed once the game is
//! seen to have exited.

use capcore::ids::ServerId;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What `run.json` records about a running game.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunRecord {
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: with the pid, names exactly one process.
    pub start_ticks: u64,
    /// Wall-clock start, milliseconds since the Unix epoch (for uptime after re-adoption).
    pub started_unix_ms: u64,
    /// The server's cgroup directories (one per v1 hierarchy, or the one v2 directory).
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
}

/// The paths of one server's state directory.
#[derive(Clone, Debug)]
pub(crate) struct ServerState {
    pub dir: PathBuf,
}

impl ServerState {
    pub fn new(state_dir: &Path, id: ServerId) -> Self {
        Self { dir: state_dir.join(id.to_string()) }
    }

    pub fn stdout_log(&self) -> PathBuf {
        self.dir.join("stdout.log")
    }
    pub fn stderr_log(&self) -> PathBuf {
        self.dir.join("stderr.log")
    }
    pub fn stdin_fifo(&self) -> PathBuf {
        self.dir.join("stdin")
    }
    pub fn run_file(&self) -> PathBuf {
        self.dir.join("run.json")
    }
    pub fn install_script(&self) -> PathBuf {
        self.dir.join("install.sh")
    }
    fn lock_file(&self) -> PathBuf {
        self.dir.join("lock")
    }

    /// Creates the state root (0711 if new) and this server's directory (0700, enforced).
    pub fn prepare(&self) -> io::Result<()> {
        if let Some(root) = self.dir.parent() {
            DirBuilder::new().recursive(true).mode(0o711).create(root)?;
        }
        match DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        self.set_mode(0o700)
    }

    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(mode))
    }

    /// Takes the run lock without waiting: `None` while another runtime (here or in another
    /// agent process) holds it. Released when the returned value is dropped.
    pub fn try_lock(&self) -> io::Result<Option<Flock<File>>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.lock_file())?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(lock)),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e.into()),
        }
    }

    /// Makes sure `stdin` is a FIFO (0600).
    pub fn ensure_fifo(&self) -> io::Result<()> {
        let path = self.stdin_fifo();
        match std::fs::symlink_metadata(&path) {
            Ok(m) if std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()) => return Ok(()),
            Ok(_) => std::fs::remove_file(&path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
        Ok(())
    }

    /// Opens a log for a new run: emptied, and returned for the agent to read (and punch) plus a
    /// second, append-only handle for the game.
    pub fn fresh_log(path: &Path) -> io::Result<(File, File)> {
        let reader = OpenOptions::new().read(true).write(true).create(true).truncate(true).mode(0o600).open(path)?;
        let writer = OpenOptions::new().append(true).open(path)?;
        Ok((reader, writer))
    }

    /// Opens an existing log to resume reading it (after an agent restart).
    pub fn existing_log(path: &Path) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)
    }

    pub fn read_run(&self) -> io::Result<Option<RunRecord>> {
        match std::fs::read(self.run_file()) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("run.json: {e}"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `run.json` atomically (a reader sees the old file or the new one, never half).
    pub fn write_run(&self, record: &RunRecord) -> io::Result<()> {
        let tmp = self.dir.join("run.json.tmp");
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        file.write_all(&serde_json::to_vec(record).map_err(io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.run_file())
    }

    pub fn remove_run(&self) -> io::Result<()> {
        match std::fs::remove_file(self.run_file()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_modes_lock_and_run_record() {
        let root = std::env::temp_dir().join(format!("capagent-state-unit-{}", std::process::id()));
        let state = ServerState::new(&root, ServerId("a7d1b5f4-0c1e-4f3a-9b2d-6e5f4a3b2c1d".parse().unwrap()));
        state.prepare().unwrap();
        let mode = std::fs::metadata(&state.dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let held = state.try_lock().unwrap().expect("free lock");
        assert!(state.try_lock().unwrap().is_none(), "a second holder is refused");
        drop(held);
        assert!(state.try_lock().unwrap().is_some(), "free again once dropped");
        assert_eq!(state.read_run().unwrap(), None);
        let record = RunRecord { pid: 7, start_ticks: 8, started_unix_ms: 9, cgroups: vec!["/x".into()] };
        state.write_run(&record).unwrap();
        assert_eq!(state.read_run().unwrap(), Some(record));
        state.remove_run().unwrap();
        state.remove_run().unwrap();
        state.ensure_fifo().unwrap();
        state.ensure_fifo().unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }
}
