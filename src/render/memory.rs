//! What memory a model may use (zimage.md §4.1): the host's available
//! memory (MemAvailable, and the cgroup's headroom when the process runs
//! under a memory limit), and the `--memory-budget` a user sets.

use std::path::{Path, PathBuf};

/// Limits at or above this are "unlimited" (cgroup v1 writes 2^63 − 4096).
const UNLIMITED: u64 = 1 << 60;

/// A `--memory-budget`: bytes, or a share of the device's total memory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MemoryBudget {
    Bytes(u64),
    Percent(f64),
}

impl MemoryBudget {
    /// Reads `24GiB`, `16G` (1024-based), `16GB` (1000-based), `512M`,
    /// `1073741824` or `80%`.
    pub fn parse(text: &str) -> Result<MemoryBudget, String> {
        let s = text.trim();
        let bad = || format!("'{text}' is not a memory size (e.g. 16GiB, 24G, 20GB, 80%)");
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| bad())?;
            return if v > 0.0 && v <= 100.0 { Ok(MemoryBudget::Percent(v)) } else { Err(bad()) };
        }
        let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let v: f64 = num.parse().map_err(|_| bad())?;
        let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "k" | "kib" => 1024f64,
            "m" | "mib" => 1024f64.powi(2),
            "g" | "gib" => 1024f64.powi(3),
            "t" | "tib" => 1024f64.powi(4),
            "kb" => 1e3,
            "mb" => 1e6,
            "gb" => 1e9,
            "tb" => 1e12,
            _ => return Err(bad()),
        };
        let bytes = v * scale;
        if !(bytes.is_finite() && bytes >= 1.0 && bytes < UNLIMITED as f64) {
            return Err(bad());
        }
        Ok(MemoryBudget::Bytes(bytes.round() as u64))
    }

    /// The budget in bytes, given the device's total memory.
    pub fn bytes(self, device_total: u64) -> u64 {
        match self {
            MemoryBudget::Bytes(b) => b,
            MemoryBudget::Percent(p) => (device_total as f64 * p / 100.0) as u64,
        }
    }
}

/// Host memory a new allocation can get: the smaller of MemAvailable and
/// the cgroup's headroom (None when neither can be read).
pub fn host_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| mem_available(&t));
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| cgroup_headroom(Path::new("/sys/fs/cgroup"), &t));
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The process's peak resident set (`VmHWM`), in bytes.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The host's total memory (MemTotal).
pub fn host_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo_field(&text, "MemTotal:")
}

fn meminfo_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    meminfo_field(meminfo, "MemAvailable:")
}

fn read_u64(path: &Path) -> Option<u64> {
    let t = std::fs::read_to_string(path).ok()?;
    let t = t.trim();
    if t == "max" {
        return Some(u64::MAX);
    }
    t.parse().ok()
}

fn stat_field(path: &Path, name: &str) -> Option<u64> {
    let t = std::fs::read_to_string(path).ok()?;
    t.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

/// The least headroom (limit − (usage − inactive file cache)) over the
/// process's memory cgroup and its ancestors; cgroup v2 under `root`, else
/// v1 under `root/memory`. None when no limit is set.
fn cgroup_headroom(root: &Path, proc_cgroup: &str) -> Option<u64> {
    let mut best: Option<u64> = None;
    let mut consider = |limit: Option<u64>, usage: Option<u64>, inactive: Option<u64>| {
        if let (Some(limit), Some(usage)) = (limit, usage) {
            if limit < UNLIMITED {
                let used = usage.saturating_sub(inactive.unwrap_or(0));
                let room = limit.saturating_sub(used);
                best = Some(best.map_or(room, |b| b.min(room)));
            }
        }
    };
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let rel = path.trim_start_matches('/');
        if controllers.is_empty() && root.join("cgroup.controllers").exists() {
            // v2: memory.max, memory.current, memory.stat's inactive_file.
            for dir in ancestors(root, rel) {
                consider(
                    read_u64(&dir.join("memory.max")),
                    read_u64(&dir.join("memory.current")),
                    stat_field(&dir.join("memory.stat"), "inactive_file"),
                );
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            let base = root.join("memory");
            for dir in ancestors(&base, rel) {
                consider(
                    read_u64(&dir.join("memory.limit_in_bytes")),
                    read_u64(&dir.join("memory.usage_in_bytes")),
                    stat_field(&dir.join("memory.stat"), "total_inactive_file"),
                );
            }
        }
    }
    best
}

/// `base/rel`, then each parent up to `base` (only folders that exist; a
/// container that sees its own cgroup as the root has only `base`).
fn ancestors(base: &Path, rel: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dir = base.join(rel);
    loop {
        if dir.is_dir() {
            out.push(dir.clone());
        }
        if dir == base || !dir.pop() || !dir.starts_with(base) {
            break;
        }
    }
    if !out.iter().any(|d| d == base) && base.is_dir() {
        out.push(base.to_path_buf());
    }
    out
}

/// Bytes as GiB with one decimal, for messages.
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_every_unit() {
        let b = |s: &str| MemoryBudget::parse(s).unwrap();
        assert_eq!(b("16GiB"), MemoryBudget::Bytes(16 << 30));
        assert_eq!(b("16G"), MemoryBudget::Bytes(16 << 30));
        assert_eq!(b("20GB"), MemoryBudget::Bytes(20_000_000_000));
        assert_eq!(b("512m"), MemoryBudget::Bytes(512 << 20));
        assert_eq!(b("1.5 TiB"), MemoryBudget::Bytes(3 << 39));
        assert_eq!(b("1073741824"), MemoryBudget::Bytes(1 << 30));
        assert_eq!(b("80%"), MemoryBudget::Percent(80.0));
        assert_eq!(b("50%").bytes(1000), 500);
        for bad in ["", "GB", "16XB", "-1G", "0%", "101%", "0"] {
            assert!(MemoryBudget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn meminfo_and_cgroups() {
        assert_eq!(mem_available("MemTotal: 100 kB\nMemAvailable:   2048 kB\n"), Some(2 << 20));
        let t = tempfile::tempdir().unwrap();
        // v2: a limited parent, an unlimited child.
        let root = t.path().join("v2");
        std::fs::create_dir_all(root.join("game/sqm")).unwrap();
        std::fs::write(root.join("cgroup.controllers"), "memory").unwrap();
        std::fs::write(root.join("game/memory.max"), "1000000\n").unwrap();
        std::fs::write(root.join("game/memory.current"), "600000\n").unwrap();
        std::fs::write(root.join("game/memory.stat"), "anon 1\ninactive_file 100000\n").unwrap();
        std::fs::write(root.join("game/sqm/memory.max"), "max\n").unwrap();
        std::fs::write(root.join("game/sqm/memory.current"), "500000\n").unwrap();
        assert_eq!(cgroup_headroom(&root, "0::/game/sqm\n"), Some(500_000));
        // v1: the limit on the process's own group.
        let root = t.path().join("v1");
        let dir = root.join("memory/box");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("memory.limit_in_bytes"), "4000").unwrap();
        std::fs::write(dir.join("memory.usage_in_bytes"), "3000").unwrap();
        std::fs::write(dir.join("memory.stat"), "cache 5\ntotal_inactive_file 1000\n").unwrap();
        std::fs::write(root.join("memory/memory.limit_in_bytes"), "9223372036854771712").unwrap();
        std::fs::write(root.join("memory/memory.usage_in_bytes"), "1").unwrap();
        assert_eq!(cgroup_headroom(&root, "4:memory:/box\n0::/\n"), Some(2000));
        // No limit anywhere.
        assert_eq!(cgroup_headroom(&root, "4:memory:/\n"), None);
    }
}
