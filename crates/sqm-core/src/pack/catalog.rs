//! The files a prompt reads, for one genre and one of its worlds, parsed
//! once into the typed model and kept while they are unchanged.
//!
//! Both composers read the pack through here: the Flux-era one for styles
//! and the names behind refs, the layered one for its catalogs (which it
//! checks with its own rules, in `prompt::layered::catalog`). Each file
//! keeps its own outcome, so a broken `history.yaml` fails what needs it
//! and nothing else.
//!
//! Caching (composer-v2.md §4): an entry records (size, mtime) of every
//! file it read or found absent, and of each culture file; every lookup
//! stats them and reloads the whole entry on any change. Entries holding an
//! error are not kept, and only folders that exist get an entry, so
//! requests naming made-up worlds cannot grow the cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use indexmap::IndexMap;
use serde_json::Value;

use super::model::{read_file, Culture, History, Keyed, PackError, Place, PortraitManifest, VisualStyle};
use super::slug::is_slug;

/// One file's outcome: parsed, absent (or empty), or why not.
pub type Loaded<T> = Result<Option<T>, PackError>;

/// Size and mtime (ns) of a file, `None` when absent.
type Stamp = Option<(u64, i128)>;

/// The typed files of (root, genre, world).
#[derive(Debug)]
pub struct Catalog {
    pub genre: String,
    /// Empty for the genre's files alone.
    pub world: String,
    /// `<root>/<genre>`.
    pub genre_dir: PathBuf,
    pub genre_style: Loaded<Keyed<VisualStyle>>,
    pub world_style: Loaded<Keyed<VisualStyle>>,
    pub portraits: Loaded<PortraitManifest>,
    pub history: Loaded<History>,
    pub places: Loaded<IndexMap<String, Place>>,
    /// Culture file stem → its tokens, in file-name order; the first file
    /// that fails fails the set.
    pub cultures: Result<IndexMap<String, Culture>, PackError>,
    /// `cameras.yaml` and `recipes.yaml` as written: their checks (and
    /// messages) are [`super::direction`]'s.
    pub cameras: Loaded<Value>,
    pub recipes: Loaded<Value>,
    stamps: Vec<(PathBuf, Stamp)>,
}

/// Where each file of an entry lives.
struct Files {
    genre_style: PathBuf,
    places: PathBuf,
    recipes: PathBuf,
    cameras: PathBuf,
    world_style: Option<PathBuf>,
    portraits: Option<PathBuf>,
    history: Option<PathBuf>,
    cultures: Option<PathBuf>,
}

impl Files {
    fn of(genre_dir: &Path, world: &str) -> Files {
        let w = (!world.is_empty()).then(|| genre_dir.join("worlds").join(world));
        Files {
            genre_style: genre_dir.join("visual_style.yaml"),
            places: genre_dir.join("places.yaml"),
            recipes: genre_dir.join("recipes.yaml"),
            cameras: genre_dir.join("cameras.yaml"),
            world_style: w.as_ref().map(|w| w.join("visual_style.yaml")),
            portraits: w.as_ref().map(|w| w.join("portrait_manifest.yaml")),
            history: w.as_ref().map(|w| w.join("history.yaml")),
            cultures: w.as_ref().map(|w| w.join("cultures")),
        }
    }

    fn watched(&self) -> Vec<PathBuf> {
        let genre = [&self.genre_style, &self.places, &self.recipes, &self.cameras].into_iter().cloned();
        let world = [&self.world_style, &self.portraits, &self.history, &self.cultures].into_iter().flatten().cloned();
        genre.chain(world).collect()
    }
}

fn stamp(p: &Path) -> Stamp {
    let m = std::fs::metadata(p).ok()?;
    let mtime = m.modified().ok()?.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0);
    Some((m.len(), mtime))
}

/// The `.yaml` files of a folder, sorted; none when it is absent.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> =
        rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "yaml")).collect();
    files.sort();
    files
}

fn optional<T: serde::de::DeserializeOwned>(g: &Path, file: &Option<PathBuf>) -> Loaded<T> {
    match file {
        Some(f) => read_file(g, f),
        None => Ok(None),
    }
}

impl Catalog {
    /// Reads every file of (root, genre, world); `world` may be empty.
    /// Both names must be slugs.
    pub fn load(root: &Path, genre: &str, world: &str) -> Result<Catalog, PackError> {
        check_slugs(genre, world)?;
        let g = root.join(genre);
        let files = Files::of(&g, world);
        let mut watched = files.watched();
        let culture_files = files.cultures.as_deref().map(yaml_files).unwrap_or_default();
        let cultures = culture_files
            .iter()
            .map(|f| {
                let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                Ok((stem, read_file::<Culture>(&g, f)?.unwrap_or_default()))
            })
            .collect();
        watched.extend(culture_files);
        Ok(Catalog {
            genre: genre.to_owned(),
            world: world.to_owned(),
            genre_style: read_file(&g, &files.genre_style),
            world_style: optional(&g, &files.world_style),
            portraits: optional(&g, &files.portraits),
            history: optional(&g, &files.history),
            places: read_file(&g, &files.places),
            cultures,
            cameras: read_file(&g, &files.cameras),
            recipes: read_file(&g, &files.recipes),
            stamps: watched
                .into_iter()
                .map(|p| {
                    let s = stamp(&p);
                    (p, s)
                })
                .collect(),
            genre_dir: g,
        })
    }

    /// Whether no watched file changed, and no culture file came or went,
    /// since the load.
    pub fn fresh(&self) -> bool {
        if !self.world.is_empty() {
            let dir = self.genre_dir.join("worlds").join(&self.world).join("cultures");
            let known = self.stamps.iter().filter(|(p, _)| p.parent() == Some(dir.as_path())).count();
            if yaml_files(&dir).len() != known {
                return false;
            }
        }
        self.stamps.iter().all(|(p, s)| stamp(p) == *s)
    }

    fn has_error(&self) -> bool {
        self.genre_style.is_err()
            || self.world_style.is_err()
            || self.portraits.is_err()
            || self.history.is_err()
            || self.places.is_err()
            || self.cultures.is_err()
            || self.cameras.is_err()
            || self.recipes.is_err()
    }
}

fn check_slugs(genre: &str, world: &str) -> Result<(), PackError> {
    if !is_slug(genre) {
        return Err(PackError::NotSlug { what: "genre", name: genre.to_owned() });
    }
    if !world.is_empty() && !is_slug(world) {
        return Err(PackError::NotSlug { what: "world", name: world.to_owned() });
    }
    Ok(())
}

type CacheMap = HashMap<(PathBuf, String, String), Arc<Catalog>>;

/// The catalog of (root, genre, world), from the shared cache when its
/// files are unchanged. All callers share one cache.
pub fn catalog(root: &Path, genre: &str, world: &str) -> Result<Arc<Catalog>, PackError> {
    static CACHE: OnceLock<Mutex<CacheMap>> = OnceLock::new();
    check_slugs(genre, world)?;
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (root.to_path_buf(), genre.to_owned(), world.to_owned());
    if let Some(c) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned() {
        if c.fresh() {
            return Ok(c);
        }
    }
    let loaded = Arc::new(Catalog::load(root, genre, world)?);
    let mut dir = root.join(genre);
    if !world.is_empty() {
        dir = dir.join("worlds").join(world);
    }
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    if loaded.has_error() || !dir.is_dir() {
        map.remove(&key);
    } else {
        map.insert(key, loaded.clone());
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn each_file_keeps_its_own_outcome() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "g/visual_style.yaml", "positive_suffix: A\nbase_seed: 3\n");
        write(dir.path(), "g/worlds/w/history.yaml", "chapters: [\n");
        write(dir.path(), "g/worlds/w/cultures/b.yaml", "visual_tokens: bronze\n");
        write(dir.path(), "g/worlds/w/cultures/a.yaml", "visual_tokens: ash\n");
        let c = Catalog::load(dir.path(), "g", "w").unwrap();
        let style = c.genre_style.as_ref().unwrap().as_ref().unwrap();
        assert_eq!((style.value.positive_suffix.as_str(), style.value.base_seed), ("A", 3));
        assert_eq!(style.keys, ["positive_suffix", "base_seed"]);
        assert!(c.world_style.as_ref().unwrap().is_none());
        assert!(matches!(c.history, Err(PackError::Yaml { line: 2, .. })), "{:?}", c.history);
        let cultures = c.cultures.as_ref().unwrap();
        assert_eq!(cultures.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert!(c.has_error());
        assert!(matches!(Catalog::load(dir.path(), "../g", ""), Err(PackError::NotSlug { what: "genre", .. })));
    }

    #[test]
    fn descriptions_that_are_not_a_mapping_fall_back_to_appearance() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "g/worlds/w/portrait_manifest.yaml",
            "characters:\n  - id: rux\n    descriptions: a scarred smith\n    appearance: broad shoulders\n  - id: mira\n    descriptions: {solo: s, long: l}\n",
        );
        let c = Catalog::load(dir.path(), "g", "w").unwrap();
        let manifest = c.portraits.as_ref().unwrap().as_ref().unwrap();
        let [rux, mira] = manifest.characters() else { panic!("two characters") };
        assert!(rux.descriptions.is_none());
        assert_eq!(rux.appearance, "broad shoulders");
        let d = mira.descriptions.as_ref().unwrap();
        assert_eq!(
            (d.value.solo.as_str(), d.keys.as_slice()),
            ("s", ["solo".to_owned(), "long".to_owned()].as_slice())
        );
    }

    #[test]
    fn the_cache_reloads_on_change_and_keeps_no_errors_or_made_up_worlds() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "g/visual_style.yaml", "positive_suffix: A\n");
        write(dir.path(), "g/worlds/w/visual_style.yaml", "positive_suffix: B\n");
        let first = catalog(dir.path(), "g", "w").unwrap();
        assert!(Arc::ptr_eq(&first, &catalog(dir.path(), "g", "w").unwrap()), "a warm lookup reads no file");
        write(dir.path(), "g/worlds/w/cultures/c.yaml", "visual_tokens: x\n");
        let second = catalog(dir.path(), "g", "w").unwrap();
        assert!(!Arc::ptr_eq(&first, &second), "a new culture file reloads");
        assert_eq!(second.cultures.as_ref().unwrap()["c"].visual_tokens, "x");
        let ghost = catalog(dir.path(), "g", "nowhere").unwrap();
        assert!(!Arc::ptr_eq(&ghost, &catalog(dir.path(), "g", "nowhere").unwrap()), "no entry for a missing world");
        write(dir.path(), "g/places.yaml", "x: [\n");
        let broken = catalog(dir.path(), "g", "w").unwrap();
        assert!(broken.places.is_err());
        assert!(!Arc::ptr_eq(&broken, &catalog(dir.path(), "g", "w").unwrap()), "an entry with an error is not kept");
    }
}
