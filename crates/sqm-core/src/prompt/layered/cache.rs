//! The shared catalog cache: one loaded [`Catalog`] per (root, genre,
//! world), checked against its files on every lookup.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::catalog::Catalog;
use super::ComposeError;

type CacheMap = HashMap<(PathBuf, String, String), Arc<Catalog>>;

/// The catalog of (root, genre, world): stats the watched files on every
/// lookup and reloads the whole entry on any change. Failed loads are not
/// cached.
pub fn catalog(root: &Path, genre: &str, world: &str) -> Result<Arc<Catalog>, ComposeError> {
    static CACHE: OnceLock<Mutex<CacheMap>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (root.to_path_buf(), genre.to_owned(), world.to_owned());
    if let Some(c) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned() {
        if c.fresh() {
            return Ok(c);
        }
    }
    let loaded = Arc::new(Catalog::load(root, genre, world)?);
    cache.lock().unwrap_or_else(|p| p.into_inner()).insert(key, loaded.clone());
    Ok(loaded)
}
