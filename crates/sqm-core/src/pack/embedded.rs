//! The example genre packs compiled into the binary, so every subcommand
//! works on a fresh machine with no configuration.
//!
//! Packs are materialised once into the user's cache directory (a folder
//! named by a hash of the embedded content, written to a temporary name and
//! renamed into place) because audio playback and asset checks need real
//! files.

use std::hash::Hasher;
use std::path::{Path, PathBuf};

use include_dir::{include_dir, Dir, DirEntry};

static PACKS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../examples/genre_packs");

/// The default genre when none is named.
pub const DEFAULT_GENRE: &str = "ashfall";
/// The default world of the default genre.
pub const DEFAULT_WORLD: &str = "cinder-reach";

/// The directory the embedded packs are materialised in (created on first
/// use). Holds one folder per genre.
pub fn packs_root() -> std::io::Result<PathBuf> {
    let base = cache_dir().join("sqm").join("genre_packs").join(format!("{:016x}", content_hash()));
    if base.join(".complete").exists() {
        return Ok(base);
    }
    let parent = base.parent().expect("cache path has a parent");
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".tmp-{}-{:016x}", std::process::id(), content_hash()));
    let _ = std::fs::remove_dir_all(&tmp);
    write_dir(&PACKS, &tmp)?;
    std::fs::write(tmp.join(".complete"), b"")?;
    match std::fs::rename(&tmp, &base) {
        Ok(()) => Ok(base),
        // Another process won the race; its copy is identical.
        Err(_) if base.join(".complete").exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(base)
        }
        Err(e) => Err(e),
    }
}

/// The default pack's directory.
pub fn default_pack() -> std::io::Result<PathBuf> {
    Ok(packs_root()?.join(DEFAULT_GENRE))
}

fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".cache");
    }
    std::env::temp_dir()
}

fn write_dir(dir: &Dir<'_>, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in dir.entries() {
        let name = entry.path().file_name().expect("entries have names");
        match entry {
            DirEntry::Dir(d) => write_dir(d, &to.join(name))?,
            DirEntry::File(f) => std::fs::write(to.join(name), f.contents())?,
        }
    }
    Ok(())
}

/// FNV-1a over every path and content, so a rebuilt binary with changed
/// packs gets a fresh cache folder.
fn content_hash() -> u64 {
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 ^= u64::from(*b);
                self.0 = self.0.wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    fn walk(dir: &Dir<'_>, h: &mut Fnv) {
        for entry in dir.entries() {
            h.write(entry.path().to_string_lossy().as_bytes());
            match entry {
                DirEntry::Dir(d) => walk(d, h),
                DirEntry::File(f) => h.write(f.contents()),
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    walk(&PACKS, &mut h);
    h.finish()
}
