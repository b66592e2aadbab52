//! Atomic file writes: the one way sqm replaces a file. The content goes to
//! a hidden temp file in the target's folder, is flushed and synced, and is
//! renamed over the target, so a reader never sees a partial file and a
//! failure (or a crash) leaves at most a temp file of sqm's own naming,
//! never a half-written target.

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// How the temp file is named: `.<prefix>-XXXXXX<suffix>` (prerender removes
/// stale ones by these names).
#[derive(Clone, Copy, Debug)]
pub struct TempName<'a> {
    pub prefix: &'a str,
    pub suffix: &'a str,
}

/// A plain `.tmp-XXXXXX` temp file.
pub const PLAIN: TempName<'static> = TempName { prefix: ".tmp-", suffix: "" };

/// Writes `path` atomically with what `fill` writes into the temp file. The
/// file gets mode 0644 (not the temp file's private 0600) unless `private`.
pub fn write_with(
    path: &Path,
    name: TempName<'_>,
    private: bool,
    fill: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(name.prefix).suffix(name.suffix).tempfile_in(dir)?;
    fill(tmp.as_file_mut())?;
    tmp.as_file_mut().flush()?;
    if !private {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Writes `bytes` to `path` atomically (mode 0644).
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with(path, PLAIN, false, |f| f.write_all(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_whole_files_and_leaves_nothing_on_failure() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f.txt");
        write(&p, b"one").unwrap();
        write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
        let failed = write_with(&p, TempName { prefix: ".x-", suffix: ".tmp" }, true, |f| {
            f.write_all(b"partial")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1, "no temp file left");
    }
}
