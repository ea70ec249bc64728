//! What the node is (for registration) and how busy it is (for heartbeats), read from `/proc`
//! and `statvfs`.

use capcore::protocol::v1::NodeFacts;
use std::path::Path;
use std::sync::Mutex;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A `/proc/meminfo` value in bytes.
fn meminfo(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Total and used bytes of the filesystem holding `path`.
pub fn disk(path: &Path) -> (u64, u64) {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => {
            let block = s.fragment_size();
            let total = s.blocks() * block;
            (total, total.saturating_sub(s.blocks_available() * block))
        }
        Err(_) => (0, 0),
    }
}

fn os_name() -> String {
    read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| std::env::consts::OS.to_string())
}

/// The node's facts; `data_dir` is where servers live (its filesystem is the disk reported).
pub fn node_facts(
    data_dir: &Path,
    (runtimes, runtime_problems): (Vec<String>, Vec<String>),
    enforced_limits: Vec<String>,
) -> NodeFacts {
    let meminfo_text = read("/proc/meminfo");
    NodeFacts {
        hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
        os: os_name(),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        arch: std::env::consts::ARCH.to_string(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_bytes: meminfo(&meminfo_text, "MemTotal"),
        disk_bytes: disk(data_dir).0,
        runtimes,
        enforced_limits,
        runtime_problems,
    }
}

/// The node's CPU use between two calls.
#[derive(Debug, Default)]
pub struct CpuMeter {
    last: Mutex<Option<(u64, u64)>>,
}

impl CpuMeter {
    /// Percent of all CPUs busy since the previous call (0 on the first).
    pub fn sample(&self) -> f64 {
        let stat = read("/proc/stat");
        let Some(fields) = stat.lines().next().and_then(|l| l.strip_prefix("cpu ")) else { return 0.0 };
        let v: Vec<u64> = fields.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        let total: u64 = v.iter().sum();
        // idle + iowait
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        let mut last = self.last.lock().expect("cpu meter lock");
        let percent = match *last {
            Some((t0, i0)) if total > t0 => {
                let dt = (total - t0) as f64;
                (1.0 - (idle.saturating_sub(i0)) as f64 / dt) * 100.0
            }
            _ => 0.0,
        };
        *last = Some((total, idle));
        percent.clamp(0.0, 100.0)
    }
}

/// Memory in use and in total, in bytes.
pub fn memory() -> (u64, u64) {
    let text = read("/proc/meminfo");
    let total = meminfo(&text, "MemTotal");
    (total.saturating_sub(meminfo(&text, "MemAvailable")), total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_describe_this_machine() {
        let facts = node_facts(Path::new("/"), (vec!["process".into()], vec![]), vec![]);
        assert!(!facts.hostname.is_empty());
        assert!(facts.cpus >= 1);
        assert!(facts.memory_bytes > 0 && facts.disk_bytes > 0, "{facts:?}");
        let (used, total) = memory();
        assert!(used > 0 && used <= total);
        let meter = CpuMeter::default();
        meter.sample();
        let second = meter.sample();
        assert!((0.0..=100.0).contains(&second));
    }

    #[test]
    fn meminfo_reads_kib_values() {
        let text = "MemTotal:       16384 kB\nMemAvailable:    4096 kB\n";
        assert_eq!(meminfo(text, "MemTotal"), 16384 * 1024);
        assert_eq!(meminfo(text, "MemAvailable"), 4096 * 1024);
        assert_eq!(meminfo(text, "Missing"), 0);
    }
}
