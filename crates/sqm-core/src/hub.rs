//! The Hugging Face hub cache layout, shared by every model that can come
//! from the hub (the embedding model, Flux).
//!
//! A cached repo lives at `<cache>/models--<org>--<name>/`, with
//! `refs/main` naming the snapshot folder under `snapshots/`. Users with
//! network fill it with `huggingface-cli download` or through sqm itself;
//! offline machines can copy it over.

use std::path::{Path, PathBuf};

/// The hub cache root: `$HF_HUB_CACHE`, `$HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`.
pub fn hub_cache() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("HF_HUB_CACHE").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(h));
    }
    if let Some(h) = std::env::var_os("HF_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(h).join("hub"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
}

/// The snapshot folder of `repo` in a hub cache, found through `refs/main`.
pub fn hub_snapshot(cache: &Path, repo: &str) -> Option<PathBuf> {
    let repo_dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    let rev = std::fs::read_to_string(repo_dir.join("refs/main")).ok()?;
    Some(repo_dir.join("snapshots").join(rev.trim()))
}

/// Whether `HF_HUB_OFFLINE` forbids downloads.
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}
