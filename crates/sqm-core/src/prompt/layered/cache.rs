//! The layered composer's views, one per (root, genre, world), rebuilt
//! when the pack's shared catalog ([`crate::pack::catalog`]) reloads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::catalog::Catalog;
use super::{load_err, ComposeError};

type CacheMap = HashMap<(PathBuf, String, String), Arc<Catalog>>;

/// The composer's catalog of (root, genre, world): reused while the pack
/// files behind it are the same load. Failed builds are not cached.
pub fn catalog(root: &Path, genre: &str, world: &str) -> Result<Arc<Catalog>, ComposeError> {
    static CACHE: OnceLock<Mutex<CacheMap>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let source = crate::pack::catalog::catalog(root, genre, world).map_err(|e| load_err(e.to_string()))?;
    let key = (root.to_path_buf(), genre.to_owned(), world.to_owned());
    if let Some(c) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned() {
        if Arc::ptr_eq(&c.source, &source) {
            return Ok(c);
        }
    }
    let built = Arc::new(Catalog::build(source)?);
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    if built.source.genre_dir.join("worlds").join(world).is_dir() {
        map.insert(key, built.clone());
    }
    Ok(built)
}
