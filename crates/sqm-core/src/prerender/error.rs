//! Why a prerender run could not start or keep its manifest. A job that
//! fails is not an error of the run: it is an `Outcome::Failed` in the
//! summary.

use std::path::PathBuf;

use crate::pack::paths::PathError;

#[derive(Debug, thiserror::Error)]
pub enum PrerenderError {
    #[error("{path}: {source}")]
    Folder { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Contained { path: PathBuf, source: PathError },
    #[error("{path}: not a valid manifest: {source}")]
    Manifest { path: PathBuf, source: serde_json::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot create {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("{out} is in use by another prerender run (pid {pid}); wait for it or remove {lock}")]
    Locked { out: PathBuf, pid: i32, lock: PathBuf },
    #[error("cannot write in {path}: {source}")]
    Lock { path: PathBuf, source: std::io::Error },
    #[error("cannot take the lock {0}")]
    LockLost(PathBuf),
    #[error("cannot start workers: {0}")]
    Workers(#[from] rayon::ThreadPoolBuildError),
}
