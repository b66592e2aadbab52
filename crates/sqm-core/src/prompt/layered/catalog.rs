//! What one (root, genre, world) gives the layered composer: style
//! suffixes, characters with their levels of detail, places, cultures and
//! the camera/recipe direction, with the file signature that says when a
//! cached copy is stale.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{load_err, ComposeError};
use crate::pack::model::{read_file, PackError};
use crate::prompt::cameras::{self, Direction};

/// The four levels of detail, richest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lod {
    Solo,
    Long,
    Short,
    Background,
}

impl Lod {
    /// The next poorer level; `None` below background.
    pub(crate) fn down(self) -> Option<Lod> {
        match self {
            Lod::Solo => Some(Lod::Long),
            Lod::Long => Some(Lod::Short),
            Lod::Short => Some(Lod::Background),
            Lod::Background => None,
        }
    }
}

/// A character's description at each level of detail.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lods {
    pub solo: String,
    pub long: String,
    pub short: String,
    pub background: String,
}

impl Lods {
    pub(crate) fn all(s: &str) -> Lods {
        Lods { solo: s.into(), long: s.into(), short: s.into(), background: s.into() }
    }

    pub(crate) fn at(&self, l: Lod) -> &str {
        match l {
            Lod::Solo => &self.solo,
            Lod::Long => &self.long,
            Lod::Short => &self.short,
            Lod::Background => &self.background,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Character {
    pub lods: Lods,
    pub default_pose: String,
    pub culture: Option<String>,
}

/// `{solo, backdrop}`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pair {
    pub solo: String,
    pub backdrop: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Place {
    pub landmark: Pair,
    pub environment: Pair,
    pub description: Pair,
    pub culture: Option<String>,
}

/// Everything one (root, genre, world) contributes.
#[derive(Debug)]
pub struct Catalog {
    pub(crate) genre: String,
    pub(crate) world: String,
    pub(crate) genre_suffix: Result<String, String>,
    pub(crate) world_suffix: Result<String, String>,
    pub(crate) characters: HashMap<String, Character>,
    pub(crate) places: HashMap<String, Place>,
    pub(crate) cultures: HashMap<String, String>,
    pub(crate) direction: Result<Direction, String>,
    signature: Vec<(PathBuf, Option<(u64, i128)>)>,
}

fn read_value(pack: &Path, path: &Path) -> Result<Option<Value>, ComposeError> {
    read_file::<Value>(pack, path).map_err(|e| match e {
        PackError::Yaml { path, line, column, message } => {
            load_err(format!("{}:{line}:{column}: {message}", path.display()))
        }
        other => load_err(other.to_string()),
    })
}

fn stat(p: &Path) -> Option<(u64, i128)> {
    let m = std::fs::metadata(p).ok()?;
    let mtime = m.modified().ok()?.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0);
    Some((m.len(), mtime))
}

fn text(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or("").to_owned()
}

fn pair(v: Option<&Value>) -> Pair {
    Pair { solo: text(v.and_then(|v| v.get("solo"))), backdrop: text(v.and_then(|v| v.get("backdrop"))) }
}

fn suffix_of(file: &Path, v: &Option<Value>, scope: &str, id: &str) -> Result<String, String> {
    let s = v.as_ref().and_then(|v| v.get("positive_suffix")).and_then(Value::as_str).unwrap_or("");
    if !s.is_empty() {
        return Ok(s.to_owned());
    }
    let mut keys: Vec<String> =
        v.as_ref().and_then(Value::as_object).map(|o| o.keys().cloned().collect()).unwrap_or_default();
    keys.sort();
    let keys = keys.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ");
    Err(format!(
        "StyleCatalog.{scope} unrenderable for '{id}': empty or missing positive_suffix in {} (known_keys=[{keys}])",
        file.display()
    ))
}

impl Catalog {
    /// Reads every catalog file of (root, genre, world).
    pub fn load(root: &Path, genre: &str, world: &str) -> Result<Catalog, ComposeError> {
        let g = root.join(genre);
        let w = g.join("worlds").join(world);
        let mut watched = vec![
            g.join("visual_style.yaml"),
            g.join("places.yaml"),
            g.join("recipes.yaml"),
            g.join("cameras.yaml"),
            w.join("visual_style.yaml"),
            w.join("portrait_manifest.yaml"),
            w.join("history.yaml"),
            w.join("cultures"),
        ];
        let genre_file = g.join("visual_style.yaml");
        let genre_suffix = suffix_of(&genre_file, &read_value(&g, &genre_file)?, "genre", genre);
        let world_file = w.join("visual_style.yaml");
        let world_suffix = suffix_of(&world_file, &read_value(&g, &world_file)?, "world", &format!("{genre}/{world}"));
        let characters = load_characters(&g, &w.join("portrait_manifest.yaml"))?;
        let mut places = load_pois(&g, &w.join("history.yaml"), world)?;
        places.extend(load_archetypes(&g, &g.join("places.yaml"), genre)?);
        let cultures = load_cultures(&g, &w.join("cultures"), &mut watched)?;
        let direction = load_direction(&g)?;
        let signature = watched.iter().map(|p| (p.clone(), stat(p))).collect();
        Ok(Catalog {
            genre: genre.into(),
            world: world.into(),
            genre_suffix,
            world_suffix,
            characters,
            places,
            cultures,
            direction,
            signature,
        })
    }

    /// Whether no watched file changed (and no culture file came or went)
    /// since the load.
    pub(crate) fn fresh(&self) -> bool {
        let root_cultures = self.signature.iter().find(|(p, _)| p.ends_with("cultures")).map(|(p, _)| p.clone());
        if let Some(dir) = root_cultures {
            // A new culture file changes the set.
            let now: usize = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == "yaml")).count()
                })
                .unwrap_or(0);
            let known = self.signature.iter().filter(|(p, _)| p.parent() == Some(dir.as_path())).count();
            if now != known {
                return false;
            }
        }
        self.signature.iter().all(|(p, s)| stat(p) == *s)
    }
}

/// `portrait_manifest.yaml`: `npc:<slug>` → levels of detail.
fn load_characters(g: &Path, mf: &Path) -> Result<HashMap<String, Character>, ComposeError> {
    let mut characters = HashMap::new();
    let Some(v) = read_value(g, mf)? else { return Ok(characters) };
    let list = match &v {
        Value::Array(a) => a.clone(),
        Value::Object(o) => o.get("characters").and_then(Value::as_array).cloned().unwrap_or_default(),
        _ => return Err(load_err(format!("{}: expected `characters: [...]` or a list", mf.display()))),
    };
    for e in &list {
        let id = text(e.get("id"));
        let name = text(e.get("name"));
        let slug = if !id.is_empty() { id } else { crate::pack::slugify(&name) };
        if slug.is_empty() {
            return Err(load_err(format!("character entry in {}: missing both `id` and `name`", mf.display())));
        }
        let lods = character_lods(mf, &slug, e)?;
        let culture = Some(text(e.get("culture"))).filter(|c| !c.is_empty());
        characters
            .insert(format!("npc:{slug}"), Character { lods, default_pose: text(e.get("default_pose")), culture });
    }
    Ok(characters)
}

/// `descriptions` (all four levels) or one `appearance` for every level.
fn character_lods(mf: &Path, slug: &str, e: &Value) -> Result<Lods, ComposeError> {
    let Some(d) = e.get("descriptions").and_then(Value::as_object).filter(|d| !d.is_empty()) else {
        let a = text(e.get("appearance"));
        if a.is_empty() {
            return Err(load_err(format!(
                "{}: character '{slug}': provide either `descriptions` (LOD-keyed) or `appearance` prose",
                mf.display()
            )));
        }
        return Ok(Lods::all(&a));
    };
    let missing: Vec<&str> =
        ["background", "long", "short", "solo"].into_iter().filter(|k| !d.contains_key(*k)).collect();
    if !missing.is_empty() {
        let l = missing.iter().map(|m| format!("'{m}'")).collect::<Vec<_>>().join(", ");
        return Err(load_err(format!("{}: character '{slug}' missing LODs: [{l}]", mf.display())));
    }
    Ok(Lods {
        solo: text(d.get("solo")),
        long: text(d.get("long")),
        short: text(d.get("short")),
        background: text(d.get("background")),
    })
}

/// The world's points of interest (`history.yaml`), as `where:<world>/<slug>`.
fn load_pois(g: &Path, hf: &Path, world: &str) -> Result<HashMap<String, Place>, ComposeError> {
    let mut places = HashMap::new();
    let Some(v) = read_value(g, hf)? else { return Ok(places) };
    for ch in v.get("chapters").and_then(Value::as_array).into_iter().flatten() {
        for p in ch.get("points_of_interest").and_then(Value::as_array).into_iter().flatten() {
            let name = text(p.get("name"));
            let slug =
                Some(text(p.get("slug"))).filter(|s| !s.is_empty()).unwrap_or_else(|| crate::pack::slugify(&name));
            if slug.is_empty() {
                return Err(load_err(format!("POI in {}: needs `slug` or `name`", hf.display())));
            }
            for k in ["visual_prompt", "environment"] {
                if p.get(k).is_some_and(Value::is_string) {
                    return Err(load_err(format!(
                        "{}: POI '{slug}' has string visual_prompt/environment — migrate to {{solo: ..., backdrop: ...}} LODs",
                        hf.display()
                    )));
                }
            }
            let (landmark, environment) = (pair(p.get("visual_prompt")), pair(p.get("environment")));
            let empty = [&landmark.solo, &landmark.backdrop, &environment.solo, &environment.backdrop]
                .iter()
                .all(|s| s.is_empty());
            if empty {
                tracing::info!(reason = "no_visual", world, slug = %slug, "place_catalog.poi_skipped");
                continue;
            }
            let label = if name.is_empty() { slug.clone() } else { name };
            let culture = Some(text(p.get("controlling_culture"))).filter(|c| !c.is_empty());
            let description = Pair { solo: label.clone(), backdrop: label };
            places.insert(format!("where:{world}/{slug}"), Place { landmark, environment, description, culture });
        }
    }
    Ok(places)
}

/// The genre's archetypal places (`places.yaml`), as `where:<genre>/<slug>`.
fn load_archetypes(g: &Path, pf: &Path, genre: &str) -> Result<HashMap<String, Place>, ComposeError> {
    let mut places = HashMap::new();
    let Some(Value::Object(map)) = read_value(g, pf)? else { return Ok(places) };
    for (slug, p) in map {
        let landmark = pair(p.get("landmark"));
        for (lod, t) in [("solo", &landmark.solo), ("backdrop", &landmark.backdrop)] {
            if !t.is_empty() {
                return Err(load_err(format!(
                    "{}: archetypal place {genre}/'{slug}' has populated landmark.{lod}; archetypes have no landmark",
                    pf.display()
                )));
            }
        }
        let place = Place {
            landmark,
            environment: pair(p.get("environment")),
            description: pair(p.get("description")),
            culture: None,
        };
        places.insert(format!("where:{genre}/{slug}"), place);
    }
    Ok(places)
}

/// `cultures/*.yaml`: culture → visual tokens; each file joins `watched`.
fn load_cultures(g: &Path, dir: &Path, watched: &mut Vec<PathBuf>) -> Result<HashMap<String, String>, ComposeError> {
    let mut cultures = HashMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return Ok(cultures) };
    let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for f in files {
        if f.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let v = read_value(g, &f)?;
        cultures.insert(stem, text(v.as_ref().and_then(|v| v.get("visual_tokens"))));
        watched.push(f);
    }
    Ok(cultures)
}

/// The built-in direction with the genre's camera and recipe overrides; a
/// bad override is kept as the error every compose of this genre reports.
fn load_direction(g: &Path) -> Result<Result<Direction, String>, ComposeError> {
    let mut direction = Direction::builtin();
    let mut dir_err = None;
    for (file, is_cameras) in [(g.join("cameras.yaml"), true), (g.join("recipes.yaml"), false)] {
        if let Some(v) = read_value(g, &file)? {
            let r = if is_cameras {
                cameras::parse_cameras(&v).map(|c| direction.cameras = c)
            } else {
                cameras::parse_recipes(&v).map(|r| direction.recipes = r)
            };
            if let Err(e) = r {
                dir_err.get_or_insert(format!("{}: {e}", file.display()));
            }
        }
    }
    Ok(dir_err.map_or(Ok(direction), Err))
}
