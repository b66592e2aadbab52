//! The one containment rule for paths that come from data.
//!
//! Genre packs, prerender manifests and requests name files, and sqm does
//! not trust who wrote them. Every such path is resolved against a root
//! (the pack, the output folder, or an explicitly configured input folder)
//! through a [`Root`]:
//!
//! * it must stay inside the root once every `..` and symlink is resolved;
//! * only regular files are opened (never a FIFO, socket or device), and
//!   opening never blocks;
//! * reads stop at a stated size ([`PACK_YAML_CAP`], [`IMAGE_CAP`]);
//! * deletions remove only an entry inside the root, never what a symlink
//!   points to.
//!
//! Errors say which rule a path broke, and name the path only as the data
//! gave it, so callers can word them for their audience (validate-pack
//! diagnostics, or one opaque message to a remote peer).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// Largest pack YAML file sqm reads.
pub(crate) const PACK_YAML_CAP: u64 = 16 * 1024 * 1024;
/// Largest image (PNG or JPEG) sqm reads from a request, a manifest or a
/// pack.
pub(crate) const IMAGE_CAP: u64 = 64 * 1024 * 1024;
/// Largest prerender manifest sqm reads.
pub(crate) const MANIFEST_CAP: u64 = 64 * 1024 * 1024;

/// Why a path was refused.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("'{raw}' leaves its folder")]
    Escapes { raw: String },
    #[error("'{raw}' is not a regular file")]
    NotRegular { raw: String },
    #[error("'{raw}' is larger than the limit of {cap} bytes")]
    TooLarge { raw: String, cap: u64 },
    #[error("'{raw}' does not exist")]
    NotFound { raw: String },
    #[error("'{raw}': {source}")]
    Io { raw: String, source: std::io::Error },
}

impl PathError {
    /// True when the file simply is not there (often not a problem).
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, PathError::NotFound { .. })
    }
}

/// A folder that data-named paths must stay inside.
#[derive(Clone, Debug)]
pub(crate) struct Root {
    /// As given (joined with relative paths for display and for writing).
    dir: PathBuf,
    /// Canonical form, for the containment check.
    canonical: PathBuf,
}

impl Root {
    /// A root at `dir`, which must exist.
    pub fn new(dir: &Path) -> std::io::Result<Root> {
        Ok(Root { dir: dir.to_path_buf(), canonical: dir.canonicalize()? })
    }

    /// The folder as given.
    #[cfg(test)]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Resolves `raw` (relative to the root, or absolute) to the canonical
    /// path of an existing entry inside the root.
    pub fn resolve(&self, raw: &Path) -> Result<PathBuf, PathError> {
        let shown = || raw.display().to_string();
        let full = self.full(raw);
        match full.canonicalize() {
            Ok(c) if c.starts_with(&self.canonical) => Ok(c),
            Ok(_) => Err(PathError::Escapes { raw: shown() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A dangling symlink, or a path through a missing folder.
                // Say "escapes" only when the words alone leave the root.
                if self.lexically_inside(raw) {
                    Err(PathError::NotFound { raw: shown() })
                } else {
                    Err(PathError::Escapes { raw: shown() })
                }
            }
            Err(source) => Err(PathError::Io { raw: shown(), source }),
        }
    }

    /// `raw` as a path to open: relative to the root, unless it already
    /// starts with the root as given (callers often join first). Either way
    /// the containment check runs on the resolved result.
    fn full(&self, raw: &Path) -> PathBuf {
        if raw.starts_with(&self.dir) {
            raw.to_path_buf()
        } else {
            self.dir.join(raw)
        }
    }

    /// True when `raw`, by its words alone, names a place inside the root
    /// (a path that starts with the root must stay in it after that).
    fn lexically_inside(&self, raw: &Path) -> bool {
        match raw.strip_prefix(&self.dir).or_else(|_| raw.strip_prefix(&self.canonical)) {
            Ok(rest) => lexically_inside(rest),
            Err(_) => lexically_inside(raw),
        }
    }

    /// Opens a regular file inside the root without blocking (a FIFO is
    /// refused, not waited on) and returns it with its length.
    pub fn open(&self, raw: &Path) -> Result<(File, u64), PathError> {
        let path = self.resolve(raw)?;
        open_regular(&path).map_err(|e| e.named(raw))
    }

    /// Reads a whole regular file inside the root, refusing files larger
    /// than `cap` bytes.
    pub fn read(&self, raw: &Path, cap: u64) -> Result<Vec<u8>, PathError> {
        let (file, len) = self.open(raw)?;
        read_capped(file, len, cap).map_err(|e| e.named(raw))
    }

    /// Removes the entry `raw` names, when it lies inside the root. A
    /// symlink is removed itself; what it points to is never touched.
    /// Folders are never removed. Returns `Ok(false)` when nothing was there.
    pub fn remove_file(&self, raw: &Path) -> Result<bool, PathError> {
        let shown = || raw.display().to_string();
        let full = self.full(raw);
        let (Some(parent), Some(Component::Normal(name))) = (full.parent(), full.components().next_back()) else {
            return Err(PathError::Escapes { raw: shown() });
        };
        let parent = match parent.canonicalize() {
            Ok(p) if p.starts_with(&self.canonical) => p,
            Ok(_) => return Err(PathError::Escapes { raw: shown() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.lexically_inside(raw) => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(PathError::Escapes { raw: shown() }),
            Err(source) => return Err(PathError::Io { raw: shown(), source }),
        };
        let target = parent.join(name);
        if target == self.canonical {
            return Err(PathError::Escapes { raw: shown() });
        }
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => Err(PathError::NotRegular { raw: shown() }),
            Ok(_) => match std::fs::remove_file(&target) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(source) => Err(PathError::Io { raw: shown(), source }),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(PathError::Io { raw: shown(), source }),
        }
    }
}

/// Joins `base` (a folder inside the pack) and `raw`, resolving `.` and `..`
/// lexically. Returns `None` for absolute paths and paths that leave the
/// pack root.
pub fn resolve_in_pack(base: &Path, raw: &str) -> Option<PathBuf> {
    let raw_path = Path::new(raw);
    if raw_path.is_absolute() || raw.starts_with('\\') || raw.get(1..2) == Some(":") {
        return None;
    }
    let mut parts: Vec<std::ffi::OsString> = Vec::new();
    for comp in base.components().chain(raw_path.components()) {
        match comp {
            Component::Normal(p) => parts.push(p.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

/// True when `raw` is relative and its `..` never climb above its start.
pub(crate) fn lexically_inside(raw: &Path) -> bool {
    let mut depth = 0usize;
    for comp in raw.components() {
        match comp {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return false;
                }
                depth -= 1;
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// A failure of [`open_regular`] or [`read_capped`], before the caller
/// names the path.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("no such file")]
    NotFound,
    #[error("not a regular file")]
    NotRegular,
    #[error("larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("{0}")]
    Io(std::io::Error),
}

impl OpenError {
    fn named(self, raw: &Path) -> PathError {
        let raw = raw.display().to_string();
        match self {
            OpenError::NotFound => PathError::NotFound { raw },
            OpenError::NotRegular => PathError::NotRegular { raw },
            OpenError::TooLarge(cap) => PathError::TooLarge { raw, cap },
            OpenError::Io(source) => PathError::Io { raw, source },
        }
    }
}

/// Opens `path` for reading only if it is a regular file. The open itself
/// cannot block (`O_NONBLOCK`), so a FIFO is refused rather than waited on.
pub fn open_regular(path: &Path) -> Result<(File, u64), OpenError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => OpenError::NotFound,
            _ => OpenError::Io(e),
        })?;
    let meta = file.metadata().map_err(OpenError::Io)?;
    if !meta.is_file() {
        return Err(OpenError::NotRegular);
    }
    Ok((file, meta.len()))
}

/// Reads `file` (whose size was `len` when opened) to the end, refusing
/// more than `cap` bytes even if the file grows meanwhile.
pub(crate) fn read_capped(file: File, len: u64, cap: u64) -> Result<Vec<u8>, OpenError> {
    if len > cap {
        return Err(OpenError::TooLarge(cap));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(cap + 1).read_to_end(&mut bytes).map_err(OpenError::Io)?;
    if bytes.len() as u64 > cap {
        return Err(OpenError::TooLarge(cap));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, Root, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root_dir = t.path().join("root");
        std::fs::create_dir_all(root_dir.join("sub")).unwrap();
        std::fs::write(root_dir.join("sub/a.txt"), "inside").unwrap();
        let outside = t.path().join("victim.txt");
        std::fs::write(&outside, "secret").unwrap();
        let root = Root::new(&root_dir).unwrap();
        (t, root, outside)
    }

    #[test]
    fn reads_inside_and_refuses_escapes() {
        let (_t, root, outside) = setup();
        assert_eq!(root.read(Path::new("sub/a.txt"), 100).unwrap(), b"inside");
        assert_eq!(root.read(Path::new("sub/../sub/./a.txt"), 100).unwrap(), b"inside");
        assert!(matches!(root.read(Path::new("../victim.txt"), 100), Err(PathError::Escapes { .. })));
        assert!(matches!(root.read(&outside, 100), Err(PathError::Escapes { .. })));
        assert!(matches!(root.read(Path::new("/dev/zero"), 100), Err(PathError::Escapes { .. })));
        assert!(matches!(root.read(Path::new("nope.txt"), 100), Err(PathError::NotFound { .. })));
        assert!(matches!(root.read(Path::new("../nope.txt"), 100), Err(PathError::Escapes { .. })));
        let absent_inside = root.dir().join("sub/nope.txt");
        assert!(matches!(root.read(&absent_inside, 100), Err(PathError::NotFound { .. })));
        assert_eq!(root.read(&root.dir().join("sub/a.txt"), 100).unwrap(), b"inside");
    }

    #[test]
    fn a_relative_root_accepts_paths_joined_with_it() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("packs/p")).unwrap();
        std::fs::write(t.path().join("packs/p/a.yaml"), "x").unwrap();
        std::fs::write(t.path().join("outside.yaml"), "y").unwrap();
        let cwd = std::env::current_dir().unwrap();
        let rel_root = pathdiff(t.path(), &cwd).join("packs/p");
        let root = Root::new(&rel_root).unwrap();
        assert_eq!(root.read(&rel_root.join("a.yaml"), 10).unwrap(), b"x");
        assert_eq!(root.read(Path::new("a.yaml"), 10).unwrap(), b"x");
        assert!(matches!(root.read(&rel_root.join("nope.yaml"), 10), Err(PathError::NotFound { .. })));
        assert!(matches!(root.read(&rel_root.join("../../outside.yaml"), 10), Err(PathError::Escapes { .. })));
    }

    /// `to` relative to `from` (both absolute), through `..` as needed.
    fn pathdiff(to: &Path, from: &Path) -> PathBuf {
        let (to, from): (Vec<_>, Vec<_>) = (to.components().collect(), from.components().collect());
        let common = to.iter().zip(&from).take_while(|(a, b)| a == b).count();
        let mut out = PathBuf::new();
        for _ in common..from.len() {
            out.push("..");
        }
        for c in &to[common..] {
            out.push(c);
        }
        out
    }

    #[test]
    fn symlinks_that_leave_are_refused_and_inner_ones_work() {
        let (_t, root, outside) = setup();
        symlink(&outside, root.dir().join("out.txt")).unwrap();
        symlink("sub/a.txt", root.dir().join("in.txt")).unwrap();
        symlink("/dev/zero", root.dir().join("zero")).unwrap();
        assert!(matches!(root.read(Path::new("out.txt"), 100), Err(PathError::Escapes { .. })));
        assert!(matches!(root.read(Path::new("zero"), 100), Err(PathError::Escapes { .. })));
        assert_eq!(root.read(Path::new("in.txt"), 100).unwrap(), b"inside");
    }

    #[test]
    fn only_regular_files_and_within_the_cap() {
        let (_t, root, _) = setup();
        let fifo = root.dir().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Opening a FIFO with no writer would block without O_NONBLOCK.
        assert!(matches!(root.read(Path::new("fifo"), 100), Err(PathError::NotRegular { .. })));
        assert!(matches!(root.read(Path::new("sub"), 100), Err(PathError::NotRegular { .. })));
        assert!(matches!(root.read(Path::new("sub/a.txt"), 5), Err(PathError::TooLarge { cap: 5, .. })));
        assert_eq!(root.read(Path::new("sub/a.txt"), 6).unwrap().len(), 6);
    }

    #[test]
    fn removal_stays_inside_and_never_follows_links() {
        let (_t, root, outside) = setup();
        assert!(matches!(root.remove_file(Path::new("../victim.txt")), Err(PathError::Escapes { .. })));
        assert!(matches!(root.remove_file(&outside), Err(PathError::Escapes { .. })));
        assert!(matches!(root.remove_file(Path::new("sub/..")), Err(PathError::Escapes { .. })));
        assert!(matches!(root.remove_file(Path::new("sub")), Err(PathError::NotRegular { .. })));
        symlink(&outside, root.dir().join("link.txt")).unwrap();
        symlink(outside.parent().unwrap(), root.dir().join("up")).unwrap();
        assert!(matches!(root.remove_file(Path::new("up/victim.txt")), Err(PathError::Escapes { .. })));
        assert!(root.remove_file(Path::new("link.txt")).unwrap());
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "secret");
        assert!(root.remove_file(Path::new("sub/a.txt")).unwrap());
        assert!(!root.remove_file(Path::new("sub/a.txt")).unwrap());
        assert!(!root.remove_file(Path::new("gone/a.txt")).unwrap());
    }
}
