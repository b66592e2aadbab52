//! What one (root, genre, world) gives the layered composer, built from
//! the pack's typed catalog ([`crate::pack::catalog`]) with composer-v2.md
//! §4's rules: style suffixes, characters with their levels of detail,
//! places, cultures and the camera/recipe direction.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::{cfg_err, load_err, ComposeError, ComposeErrorKind};
use crate::pack::catalog::{self as pack_catalog, Loaded};
use crate::pack::direction::{self, Direction};
use crate::pack::model::{Keyed, PackError, VisualBlock, VisualStyle, VisualText};

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
    /// A missing suffix is the `StyleMissError` of every compose whose
    /// recipe cascades through it.
    pub(crate) genre_suffix: Result<String, ComposeError>,
    pub(crate) world_suffix: Result<String, ComposeError>,
    pub(crate) characters: HashMap<String, Character>,
    pub(crate) places: HashMap<String, Place>,
    pub(crate) cultures: HashMap<String, String>,
    /// A bad override is the `RenderConfigError` of every compose.
    pub(crate) direction: Result<Direction, ComposeError>,
    /// The pack files this was built from (the cache compares it).
    pub(crate) source: Arc<pack_catalog::Catalog>,
}

/// A file's load error as §4 words it: `<file>:<line>:<col>: <reason>`
/// for YAML, `<file>: <message>` otherwise.
fn load_error(e: &PackError) -> ComposeError {
    load_err(e.to_string())
}

fn loaded<T>(l: &Loaded<T>) -> Result<Option<&T>, ComposeError> {
    l.as_ref().map(Option::as_ref).map_err(load_error)
}

fn pair(v: &VisualText) -> Pair {
    Pair { solo: v.solo.clone(), backdrop: v.backdrop.clone() }
}

fn suffix_of(file: &Path, style: Option<&Keyed<VisualStyle>>, scope: &str, id: &str) -> Result<String, ComposeError> {
    let s = style.map(|s| s.value.positive_suffix.as_str()).unwrap_or("");
    if !s.is_empty() {
        return Ok(s.to_owned());
    }
    let mut keys: Vec<String> = style.map(|s| s.keys.clone()).unwrap_or_default();
    keys.sort();
    let keys = keys.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ");
    Err(ComposeError {
        kind: ComposeErrorKind::StyleMissError,
        message: format!(
            "StyleCatalog.{scope} unrenderable for '{id}': empty or missing positive_suffix in {} (known_keys=[{keys}])",
            file.display()
        ),
    })
}

impl Catalog {
    /// Reads (or takes from the shared cache) the pack files of (root,
    /// genre, world) and builds the composer's view of them.
    pub fn load(root: &Path, genre: &str, world: &str) -> Result<Catalog, ComposeError> {
        let source = pack_catalog::catalog(root, genre, world).map_err(|e| load_error(&e))?;
        Catalog::build(source)
    }

    /// The composer's view of loaded pack files; the first file that
    /// failed, in §4's order, is the error.
    pub(crate) fn build(source: Arc<pack_catalog::Catalog>) -> Result<Catalog, ComposeError> {
        let (genre, world) = (source.genre.as_str(), source.world.as_str());
        let g = &source.genre_dir;
        let w = g.join("worlds").join(world);
        let genre_file = g.join("visual_style.yaml");
        let genre_suffix = suffix_of(&genre_file, loaded(&source.genre_style)?, "genre", genre);
        let world_file = w.join("visual_style.yaml");
        let world_suffix = suffix_of(&world_file, loaded(&source.world_style)?, "world", &format!("{genre}/{world}"));
        let characters = characters(&source, &w.join("portrait_manifest.yaml"))?;
        let mut places = pois(&source, &w.join("history.yaml"))?;
        places.extend(archetypes(&source, &g.join("places.yaml"))?);
        let cultures = source
            .cultures
            .as_ref()
            .map_err(load_error)?
            .iter()
            .map(|(k, c)| (k.clone(), c.visual_tokens.clone()))
            .collect();
        let direction = direction_of(&source)?;
        Ok(Catalog {
            genre: genre.into(),
            world: world.into(),
            genre_suffix,
            world_suffix,
            characters,
            places,
            cultures,
            direction,
            source,
        })
    }
}

/// `portrait_manifest.yaml`: `npc:<slug>` → levels of detail.
fn characters(source: &pack_catalog::Catalog, mf: &Path) -> Result<HashMap<String, Character>, ComposeError> {
    let mut characters = HashMap::new();
    let Some(manifest) = loaded(&source.portraits)? else { return Ok(characters) };
    for c in manifest.characters() {
        let slug = c.slug();
        if slug.is_empty() {
            return Err(load_err(format!("character entry in {}: missing both `id` and `name`", mf.display())));
        }
        let lods = character_lods(mf, &slug, c)?;
        let culture = c.culture.clone().filter(|c| !c.is_empty());
        characters.insert(format!("npc:{slug}"), Character { lods, default_pose: c.default_pose.clone(), culture });
    }
    Ok(characters)
}

/// `descriptions` (all four levels) or one `appearance` for every level.
fn character_lods(mf: &Path, slug: &str, c: &crate::pack::model::Character) -> Result<Lods, ComposeError> {
    let Some(d) = c.descriptions.as_ref().filter(|d| !d.keys.is_empty()) else {
        if c.appearance.is_empty() {
            return Err(load_err(format!(
                "{}: character '{slug}': provide either `descriptions` (LOD-keyed) or `appearance` prose",
                mf.display()
            )));
        }
        return Ok(Lods::all(&c.appearance));
    };
    let missing: Vec<&str> =
        ["background", "long", "short", "solo"].into_iter().filter(|k| !d.keys.iter().any(|x| x == k)).collect();
    if !missing.is_empty() {
        let l = missing.iter().map(|m| format!("'{m}'")).collect::<Vec<_>>().join(", ");
        return Err(load_err(format!("{}: character '{slug}' missing LODs: [{l}]", mf.display())));
    }
    let d = &d.value;
    Ok(Lods { solo: d.solo.clone(), long: d.long.clone(), short: d.short.clone(), background: d.background.clone() })
}

/// A POI's visual block: a mapping, or empty; a legacy string is refused.
fn block(hf: &Path, slug: &str, b: &Option<VisualBlock>) -> Result<Pair, ComposeError> {
    match b {
        None => Ok(Pair::default()),
        Some(VisualBlock::Lods(v)) => Ok(pair(v)),
        Some(VisualBlock::Legacy(_)) => Err(load_err(format!(
            "{}: POI '{slug}' has string visual_prompt/environment — migrate to {{solo: ..., backdrop: ...}} LODs",
            hf.display()
        ))),
    }
}

/// The world's points of interest (`history.yaml`), as `where:<world>/<slug>`.
fn pois(source: &pack_catalog::Catalog, hf: &Path) -> Result<HashMap<String, Place>, ComposeError> {
    let world = source.world.as_str();
    let mut places = HashMap::new();
    let Some(history) = loaded(&source.history)? else { return Ok(places) };
    for p in history.points_of_interest() {
        let slug = p.slug();
        if slug.is_empty() {
            return Err(load_err(format!("POI in {}: needs `slug` or `name`", hf.display())));
        }
        let landmark = block(hf, &slug, &p.visual_prompt)?;
        let environment = block(hf, &slug, &p.environment)?;
        let empty =
            [&landmark.solo, &landmark.backdrop, &environment.solo, &environment.backdrop].iter().all(|s| s.is_empty());
        if empty {
            tracing::info!(reason = "no_visual", world, slug = %slug, "place_catalog.poi_skipped");
            continue;
        }
        let label = p.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| slug.clone());
        let culture = p.controlling_culture.clone().filter(|c| !c.is_empty());
        let description = Pair { solo: label.clone(), backdrop: label };
        places.insert(format!("where:{world}/{slug}"), Place { landmark, environment, description, culture });
    }
    Ok(places)
}

/// The genre's archetypal places (`places.yaml`), as `where:<genre>/<slug>`.
fn archetypes(source: &pack_catalog::Catalog, pf: &Path) -> Result<HashMap<String, Place>, ComposeError> {
    let genre = source.genre.as_str();
    let mut places = HashMap::new();
    let Some(map) = loaded(&source.places)? else { return Ok(places) };
    for (slug, p) in map {
        for (lod, t) in [("solo", &p.landmark.solo), ("backdrop", &p.landmark.backdrop)] {
            if !t.is_empty() {
                return Err(load_err(format!(
                    "{}: archetypal place {genre}/'{slug}' has populated landmark.{lod}; archetypes have no landmark",
                    pf.display()
                )));
            }
        }
        let place = Place {
            landmark: pair(&p.landmark),
            environment: pair(&p.environment),
            description: pair(&p.description),
            culture: None,
        };
        places.insert(format!("where:{genre}/{slug}"), place);
    }
    Ok(places)
}

/// The built-in direction with the genre's camera and recipe overrides; a
/// bad override is kept as the error every compose of this genre reports.
fn direction_of(source: &pack_catalog::Catalog) -> Result<Result<Direction, ComposeError>, ComposeError> {
    let mut direction = Direction::builtin();
    let mut dir_err = None;
    let g = &source.genre_dir;
    if let Some(v) = loaded(&source.cameras)? {
        if let Err(e) = direction::parse_cameras(v).map(|c| direction.cameras = c) {
            dir_err.get_or_insert(format!("{}: {e}", g.join("cameras.yaml").display()));
        }
    }
    if let Some(v) = loaded(&source.recipes)? {
        if let Err(e) = direction::parse_recipes(v).map(|r| direction.recipes = r) {
            dir_err.get_or_insert(format!("{}: {e}", g.join("recipes.yaml").display()));
        }
    }
    Ok(dir_err.map_or(Ok(direction), |m| Err(cfg_err(m))))
}
