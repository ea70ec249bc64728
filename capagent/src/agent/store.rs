//! The agent's own state on disk, so that a restarted agent knows its servers, their last
//! state and where their event numbers stopped.
//!
//! Layout under `<data_dir>/agent/`: `node.json` (the node id the panel assigned) and
//! `servers/<server id>.json`, one [`ServerRecord`] per server. Files are replaced atomically
//! (written beside, then renamed).

use capcore::ids::{NodeId, ServerId};
use capcore::protocol::v1::ServerSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the agent keeps about one server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerRecord {
    pub spec: ServerSpec,
    /// The last state reported (as the REST API names it).
    pub state: String,
    /// Event numbers up to here may have been used; a restarted agent continues above it.
    pub seq_ceiling: u64,
    /// The install script has completed successfully.
    pub installed: bool,
    /// When the server last crashed (ms since the epoch), for the restart policy.
    pub last_crash_ms: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct NodeRecord {
    node_id: NodeId,
}

/// The on-disk store.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

impl Store {
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let dir = data_dir.join("agent");
        std::fs::create_dir_all(dir.join("servers"))?;
        Ok(Self { dir })
    }

    pub fn node(&self) -> Option<NodeId> {
        let bytes = std::fs::read(self.dir.join("node.json")).ok()?;
        serde_json::from_slice::<NodeRecord>(&bytes).ok().map(|r| r.node_id)
    }

    pub fn set_node(&self, node_id: NodeId) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(&NodeRecord { node_id }).expect("node record serializes");
        write_atomic(&self.dir.join("node.json"), &bytes)
    }

    fn server_path(&self, id: ServerId) -> PathBuf {
        self.dir.join("servers").join(format!("{id}.json"))
    }

    pub fn save(&self, record: &ServerRecord) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(record).expect("server record serializes");
        write_atomic(&self.server_path(record.spec.server_id), &bytes)
    }

    /// Saves, and when that fails says so in the log: the agent carries on with what it has in
    /// memory, and the next save tries again.
    pub fn save_logged(&self, record: &ServerRecord) {
        if let Err(e) = self.save(record) {
            tracing::warn!(server = %record.spec.server_id, error = %e, "cannot save server record");
        }
    }

    pub fn remove(&self, id: ServerId) -> std::io::Result<()> {
        match std::fs::remove_file(self.server_path(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every readable record; unreadable ones are reported and skipped.
    pub fn load(&self) -> Vec<ServerRecord> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("servers")) else { return Vec::new() };
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match std::fs::read(&path).map(|b| serde_json::from_slice::<ServerRecord>(&b)) {
                Ok(Ok(r)) => records.push(r),
                Ok(Err(e)) => tracing::warn!(path = %path.display(), error = %e, "unreadable server record skipped"),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "unreadable server record skipped"),
            }
        }
        records
    }
}
