//! The bounded output folder (remote-and-telemetry.md §3): above
//! `--max-cache-size-gb`, the least recently used renders go until the
//! folder is at 80 % of the limit. Renders queued, running or uploading
//! (pinned) and those written or hit within `--cache-min-age` stay; only
//! sqm's own files are counted or removed.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, SystemTime};

/// How often the folder is checked besides after each write.
const PERIOD: Duration = Duration::from_secs(600);
/// Temp files older than this are leftovers of a crash.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// `status.sqm.cache`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct CacheStatus {
    pub bytes: u64,
    pub max_bytes: u64,
    pub entries: u64,
    pub evicted_total: u64,
}

/// One render on disk: every name it has (hard links, sidecars) and its
/// bytes, each inode counted once.
#[derive(Debug)]
struct Unit {
    paths: Vec<PathBuf>,
    bytes: u64,
    last_use: SystemTime,
}

pub(crate) struct OutputCache {
    root: PathBuf,
    max_bytes: u64,
    min_age: Duration,
    pins: Mutex<HashMap<PathBuf, usize>>,
    bytes: AtomicU64,
    entries: AtomicU64,
    evicted: AtomicU64,
    /// Set while only protected renders keep the folder over its limit
    /// (warned once until it is under again).
    stuck: AtomicBool,
    wake: (Mutex<bool>, Condvar),
}

/// Keeps a file from eviction while it lives.
pub(crate) struct Pin {
    cache: Arc<OutputCache>,
    path: PathBuf,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut pins = self.cache.pins.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = pins.get_mut(&self.path) {
            *n -= 1;
            if *n == 0 {
                pins.remove(&self.path);
            }
        }
    }
}

impl OutputCache {
    /// The cache of `root`, checked every 10 minutes and after each
    /// [`OutputCache::kick`] on a thread of its own (kick it once at start). `max_bytes` 0:
    /// unbounded (nothing is ever removed).
    pub(crate) fn start(root: PathBuf, max_bytes: u64, min_age: Duration) -> Arc<OutputCache> {
        let cache = Arc::new(OutputCache {
            root,
            max_bytes,
            min_age,
            pins: Mutex::new(HashMap::new()),
            bytes: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            stuck: AtomicBool::new(false),
            wake: (Mutex::new(false), Condvar::new()),
        });
        let weak = Arc::downgrade(&cache);
        let spawned = std::thread::Builder::new().name("sqm-cache".into()).spawn(move || sweep_loop(weak));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the output cache thread; the output folder is not bounded");
        }
        cache
    }

    /// Protects `path` from eviction until the pin is dropped.
    pub(crate) fn pin(self: &Arc<Self>, path: &Path) -> Pin {
        *self.pins.lock().unwrap_or_else(|e| e.into_inner()).entry(path.to_owned()).or_insert(0) += 1;
        Pin { cache: self.clone(), path: path.to_owned() }
    }

    /// A render was written: check the folder soon.
    pub(crate) fn kick(&self) {
        *self.wake.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.1.notify_one();
    }

    /// A cache hit: the file counts as just used.
    pub(crate) fn touch(&self, path: &Path) {
        let now = SystemTime::now();
        if let Err(e) = std::fs::File::options().write(true).open(path).and_then(|f| f.set_modified(now)) {
            tracing::debug!(error = %e, "cannot mark a cached render as used");
        }
    }

    pub(crate) fn status(&self) -> CacheStatus {
        CacheStatus {
            bytes: self.bytes.load(Ordering::Relaxed),
            max_bytes: self.max_bytes,
            entries: self.entries.load(Ordering::Relaxed),
            evicted_total: self.evicted.load(Ordering::Relaxed),
        }
    }

    fn is_pinned(&self, unit: &Unit) -> bool {
        let pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        unit.paths.iter().any(|p| pins.contains_key(p))
    }

    /// Counts the folder and, above the limit, evicts down to 80 % of it.
    pub(crate) fn sweep(&self) {
        let now = SystemTime::now();
        let (mut units, temps) = scan(&self.root);
        for (path, modified) in temps {
            if now.duration_since(modified).unwrap_or_default() > STALE_TEMP {
                let _ = std::fs::remove_file(&path);
            }
        }
        let mut total: u64 = units.iter().map(|u| u.bytes).sum();
        let mut entries = units.len() as u64;
        if self.max_bytes > 0 && total > self.max_bytes {
            let target = self.max_bytes / 5 * 4 + self.max_bytes % 5 * 4 / 5;
            units.sort_by(|a, b| a.last_use.cmp(&b.last_use).then_with(|| a.paths.cmp(&b.paths)));
            let mut kept = 0usize;
            for unit in &units {
                if total <= target {
                    break;
                }
                let recent = now.duration_since(unit.last_use).unwrap_or_default() < self.min_age;
                if recent || self.is_pinned(unit) {
                    kept += 1;
                    continue;
                }
                for p in &unit.paths {
                    if let Err(e) = std::fs::remove_file(p) {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            tracing::warn!(error = %e, "cannot evict a cached render");
                        }
                    }
                }
                total = total.saturating_sub(unit.bytes);
                entries -= 1;
                self.evicted.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(bytes = unit.bytes, "evicted a cached render");
            }
            if total > target && kept > 0 {
                if !self.stuck.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        bytes = total,
                        max_bytes = self.max_bytes,
                        protected = kept,
                        "the output folder stays over --max-cache-size-gb: every remaining render is queued, running, \
                         uploading or younger than --cache-min-age"
                    );
                }
            } else {
                self.stuck.store(false, Ordering::Relaxed);
            }
        }
        self.bytes.store(total, Ordering::Relaxed);
        self.entries.store(entries, Ordering::Relaxed);
    }
}

fn sweep_loop(cache: Weak<OutputCache>) {
    loop {
        let Some(c) = cache.upgrade() else { return };
        {
            let (flag, cv) = &c.wake;
            let mut kicked = flag.lock().unwrap_or_else(|e| e.into_inner());
            let deadline = std::time::Instant::now() + PERIOD;
            // Wait for a kick or the period; wake each second to notice
            // that the cache was dropped.
            while !*kicked && std::time::Instant::now() < deadline {
                if Arc::strong_count(&c) == 1 {
                    return;
                }
                kicked = cv.wait_timeout(kicked, Duration::from_secs(1)).unwrap_or_else(|e| e.into_inner()).0;
            }
            *kicked = false;
        }
        c.sweep();
    }
}

/// Which of sqm's names a file in `<root>/<dir>/` has.
enum Name {
    /// `<backend>/render_<16 hex>.png`, `zmq/<id>_<12 hex>.png`.
    Render,
    /// `zmq/<stem>.depth.png` / `.ref.png`: belongs to `<stem>.png`.
    Sidecar(String),
    /// `.<anything>.tmp`: a write in progress or a crash's leftover.
    Temp,
    Other,
}

fn name_of(dir: &str, file: &str) -> Name {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if file.starts_with('.') && file.ends_with(".tmp") {
        return Name::Temp;
    }
    if dir == "zmq" {
        for side in [".depth.png", ".ref.png"] {
            if let Some(stem) = file.strip_suffix(side) {
                return Name::Sidecar(format!("{stem}.png"));
            }
        }
        let key = file.strip_suffix(".png").and_then(|s| s.rsplit_once('_')).map(|(_, k)| k);
        return if key.is_some_and(|k| hex(k, 12)) { Name::Render } else { Name::Other };
    }
    match file.strip_prefix("render_").and_then(|s| s.strip_suffix(".png")) {
        Some(k) if hex(k, 16) => Name::Render,
        _ => Name::Other,
    }
}

/// sqm's renders under `root` (grouped by inode, sidecars with their
/// render), and its temp files.
fn scan(root: &Path) -> (Vec<Unit>, Vec<(PathBuf, SystemTime)>) {
    let mut units: Vec<Unit> = Vec::new();
    let mut by_inode: HashMap<(u64, u64), usize> = HashMap::new();
    let mut by_path: HashMap<PathBuf, usize> = HashMap::new();
    let mut sidecars = Vec::new();
    let mut temps = Vec::new();
    let Ok(dirs) = std::fs::read_dir(root) else { return (units, temps) };
    for dir in dirs.flatten() {
        if !dir.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir_name = dir.file_name().to_string_lossy().into_owned();
        let Ok(files) = std::fs::read_dir(dir.path()) else { continue };
        for f in files.flatten() {
            let Ok(meta) = f.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let path = f.path();
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            match name_of(&dir_name, &f.file_name().to_string_lossy()) {
                Name::Render => {
                    let i = *by_inode.entry((meta.dev(), meta.ino())).or_insert_with(|| {
                        units.push(Unit { paths: Vec::new(), bytes: meta.len(), last_use: modified });
                        units.len() - 1
                    });
                    units[i].paths.push(path.clone());
                    units[i].last_use = units[i].last_use.max(modified);
                    by_path.insert(path, i);
                }
                Name::Sidecar(main) => sidecars.push((path, dir.path().join(main), meta.len(), modified)),
                Name::Temp => temps.push((path, modified)),
                Name::Other => {}
            }
        }
    }
    for (path, main, bytes, modified) in sidecars {
        match by_path.get(&main) {
            Some(&i) => {
                units[i].paths.push(path);
                units[i].bytes += bytes;
            }
            None => units.push(Unit { paths: vec![path], bytes, last_use: modified }),
        }
    }
    for u in &mut units {
        u.paths.sort();
    }
    (units, temps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, n: usize, age_s: u64) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, vec![7u8; n]).unwrap();
        let t = SystemTime::now() - Duration::from_secs(age_s);
        std::fs::File::options().write(true).open(p).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn names_sqm_owns() {
        assert!(matches!(name_of("sketch", "render_0123456789abcdef.png"), Name::Render));
        assert!(matches!(name_of("sketch", "render_0123.png"), Name::Other));
        assert!(matches!(name_of("sketch", "notes.txt"), Name::Other));
        assert!(matches!(name_of("zmq", "req-1_0123456789ab.png"), Name::Render));
        assert!(
            matches!(name_of("zmq", "req-1_0123456789ab.depth.png"), Name::Sidecar(m) if m == "req-1_0123456789ab.png")
        );
        assert!(matches!(name_of("flux", ".render-abc123.png.tmp"), Name::Temp));
    }

    #[test]
    fn evicts_least_recently_used_down_to_80_percent_sparing_pins_and_links() {
        let t = tempfile::tempdir().unwrap();
        let r = |k: &str| t.path().join("sketch").join(format!("render_{k}.png"));
        write(&r("000000000000000a"), 100, 500);
        write(&r("000000000000000b"), 100, 400);
        write(&r("000000000000000c"), 100, 300);
        write(&r("000000000000000d"), 100, 200);
        // A ZeroMQ name for d (same inode) with a sidecar: one unit of 150 bytes.
        let z = t.path().join("zmq");
        std::fs::create_dir_all(&z).unwrap();
        std::fs::hard_link(r("000000000000000d"), z.join("q_000000000000.png")).unwrap();
        write(&z.join("q_000000000000.depth.png"), 50, 200);
        write(&t.path().join("sketch").join("keep.txt"), 1000, 900);
        write(&t.path().join("sketch").join(".render-x.png.tmp"), 10, 7200);
        let cache = OutputCache::start(t.path().to_owned(), 400, Duration::from_secs(60));
        // 450 > 400: down to 320 — a (oldest) is pinned, so b and c go.
        let pin = cache.pin(&r("000000000000000a"));
        cache.sweep();
        drop(pin);
        assert!(r("000000000000000a").exists());
        assert!(!r("000000000000000b").exists() && !r("000000000000000c").exists());
        assert!(z.join("q_000000000000.depth.png").exists() && r("000000000000000d").exists());
        assert!(t.path().join("sketch/keep.txt").exists(), "not sqm's: never touched");
        assert!(!t.path().join("sketch/.render-x.png.tmp").exists(), "a stale temp file goes");
        let s = cache.status();
        assert_eq!((s.bytes, s.entries, s.evicted_total, s.max_bytes), (250, 2, 2, 400));
    }

    #[test]
    fn young_renders_stay_and_a_hit_counts_as_use() {
        let t = tempfile::tempdir().unwrap();
        let r = |k: &str| t.path().join("sketch").join(format!("render_{k}.png"));
        write(&r("000000000000000a"), 100, 500);
        write(&r("000000000000000b"), 100, 5);
        let cache = OutputCache::start(t.path().to_owned(), 150, Duration::from_secs(60));
        cache.touch(&r("000000000000000a"));
        cache.sweep();
        assert!(r("000000000000000a").exists() && r("000000000000000b").exists());
        assert_eq!(cache.status().evicted_total, 0);
    }
}
