//! Composer v2 (composer-v2.md): the game server's refs (`npc:`, `pc:`,
//! `where:`) turned into a layered prompt from the pack's catalogs, with a
//! recipe, a camera preset, a level-of-detail plan, a 512-token budget and
//! a deterministic seed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use indexmap::IndexMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::cameras::{self, Camera, Cascade, Direction, Post};
use super::style::{ComposeError, ComposeErrorKind};
use super::tokens::{is_py_space, tok};
use crate::interpret::Tier;
use crate::pack::model::{read_file, PackError};

/// The four levels of detail, richest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lod {
    Solo,
    Long,
    Short,
    Background,
}

impl Lod {
    fn down(self) -> Option<Lod> {
        match self {
            Lod::Solo => Some(Lod::Long),
            Lod::Long => Some(Lod::Short),
            Lod::Short => Some(Lod::Background),
            Lod::Background => None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lods {
    pub solo: String,
    pub long: String,
    pub short: String,
    pub background: String,
}

impl Lods {
    fn all(s: &str) -> Lods {
        Lods { solo: s.into(), long: s.into(), short: s.into(), background: s.into() }
    }

    fn at(&self, l: Lod) -> &str {
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

/// `pc_descriptor`: a player character for one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PcDescriptor {
    pub id: String,
    pub appearance: String,
    pub default_pose: String,
    pub culture: Option<String>,
}

impl PcDescriptor {
    /// Parses the wire object; errors are the spec's.
    pub fn from_value(v: &Value) -> Result<Option<PcDescriptor>, ComposeError> {
        let obj = match v {
            Value::Null => return Ok(None),
            Value::Object(o) => o,
            _ => return Err(cfg_err("'pc_descriptor' must be object or null")),
        };
        let id = obj.get("id").and_then(Value::as_str).filter(|s| !s.is_empty());
        let Some(id) = id else { return Err(cfg_err("pc_descriptor needs a non-empty 'id'")) };
        let s = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let culture = Some(s("culture")).filter(|c| !c.is_empty());
        Ok(Some(PcDescriptor {
            id: id.to_owned(),
            appearance: s("appearance"),
            default_pose: s("default_pose"),
            culture,
        }))
    }
}

/// Everything one (root, genre, world) contributes.
#[derive(Debug)]
pub struct Catalog {
    genre: String,
    world: String,
    genre_suffix: Result<String, String>,
    world_suffix: Result<String, String>,
    characters: HashMap<String, Character>,
    places: HashMap<String, Place>,
    cultures: HashMap<String, String>,
    direction: Result<Direction, String>,
    signature: Vec<(PathBuf, Option<(u64, i128)>)>,
}

fn cfg_err(m: impl Into<String>) -> ComposeError {
    ComposeError { kind: ComposeErrorKind::RenderConfigError, message: m.into() }
}

fn miss(m: impl Into<String>) -> ComposeError {
    ComposeError { kind: ComposeErrorKind::CatalogMissError, message: m.into() }
}

fn load_err(m: impl Into<String>) -> ComposeError {
    ComposeError { kind: ComposeErrorKind::PackLoadError, message: m.into() }
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
        let gv = read_value(&g, &genre_file)?;
        let genre_suffix = suffix_of(&genre_file, &gv, "genre", genre);
        let world_file = w.join("visual_style.yaml");
        let wv = read_value(&g, &world_file)?;
        let world_suffix = suffix_of(&world_file, &wv, "world", &format!("{genre}/{world}"));

        // Characters.
        let mut characters = HashMap::new();
        let mf = w.join("portrait_manifest.yaml");
        if let Some(v) = read_value(&g, &mf)? {
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
                let lods = match e.get("descriptions").and_then(Value::as_object).filter(|d| !d.is_empty()) {
                    Some(d) => {
                        let mut missing: Vec<&str> = ["background", "long", "short", "solo"]
                            .into_iter()
                            .filter(|k| !d.contains_key(*k))
                            .collect();
                        missing.sort();
                        if !missing.is_empty() {
                            let l = missing.iter().map(|m| format!("'{m}'")).collect::<Vec<_>>().join(", ");
                            return Err(load_err(format!("{}: character '{slug}' missing LODs: [{l}]", mf.display())));
                        }
                        Lods {
                            solo: text(d.get("solo")),
                            long: text(d.get("long")),
                            short: text(d.get("short")),
                            background: text(d.get("background")),
                        }
                    }
                    None => {
                        let a = text(e.get("appearance"));
                        if a.is_empty() {
                            return Err(load_err(format!(
                                "{}: character '{slug}': provide either `descriptions` (LOD-keyed) or `appearance` prose",
                                mf.display()
                            )));
                        }
                        Lods::all(&a)
                    }
                };
                let culture = Some(text(e.get("culture"))).filter(|c| !c.is_empty());
                characters.insert(
                    format!("npc:{slug}"),
                    Character { lods, default_pose: text(e.get("default_pose")), culture },
                );
            }
        }

        // Places: POIs of the world, then the genre's archetypes.
        let mut places = HashMap::new();
        let hf = w.join("history.yaml");
        if let Some(v) = read_value(&g, &hf)? {
            for ch in v.get("chapters").and_then(Value::as_array).into_iter().flatten() {
                for p in ch.get("points_of_interest").and_then(Value::as_array).into_iter().flatten() {
                    let name = text(p.get("name"));
                    let slug = Some(text(p.get("slug")))
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| crate::pack::slugify(&name));
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
                    places.insert(
                        format!("where:{world}/{slug}"),
                        Place {
                            landmark,
                            environment,
                            description: Pair { solo: label.clone(), backdrop: label },
                            culture,
                        },
                    );
                }
            }
        }
        let pf = g.join("places.yaml");
        if let Some(Value::Object(map)) = read_value(&g, &pf)? {
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
                places.insert(
                    format!("where:{genre}/{slug}"),
                    Place {
                        landmark,
                        environment: pair(p.get("environment")),
                        description: pair(p.get("description")),
                        culture: None,
                    },
                );
            }
        }

        // Cultures.
        let mut cultures = HashMap::new();
        if let Ok(rd) = std::fs::read_dir(w.join("cultures")) {
            let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            for f in files {
                if f.extension().and_then(|e| e.to_str()) != Some("yaml") {
                    continue;
                }
                let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                let v = read_value(&g, &f)?;
                cultures.insert(stem, text(v.as_ref().and_then(|v| v.get("visual_tokens"))));
                watched.push(f);
            }
        }

        // Direction overrides.
        let mut direction = Direction::builtin();
        let mut dir_err = None;
        for (file, is_cameras) in [(g.join("cameras.yaml"), true), (g.join("recipes.yaml"), false)] {
            if let Some(v) = read_value(&g, &file)? {
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
        let signature = watched.iter().map(|p| (p.clone(), stat(p))).collect();
        Ok(Catalog {
            genre: genre.into(),
            world: world.into(),
            genre_suffix,
            world_suffix,
            characters,
            places,
            cultures,
            direction: dir_err.map_or(Ok(direction), Err),
            signature,
        })
    }

    fn fresh(&self) -> bool {
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

type CacheMap = HashMap<(PathBuf, String, String), Arc<Catalog>>;

/// The shared catalog cache: stats the watched files on every lookup and
/// reloads the whole entry on any change. Failed loads are not cached.
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

/// What composer v2 reads from a request.
#[derive(Clone, Debug, Default)]
pub struct V2Request {
    pub tier: Option<Tier>,
    pub subject: String,
    pub characters: Vec<String>,
    pub location: String,
    pub camera: Option<String>,
    pub pc_descriptor: Option<PcDescriptor>,
    pub genre: String,
    pub world: String,
}

/// A layer of the prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    pub slot: &'static str,
    pub source: String,
    pub text: String,
}

/// Composer v2's result.
#[derive(Clone, Debug, PartialEq)]
pub struct V2Composed {
    pub positive_prompt: String,
    pub negative_prompt: String,
    pub clip_prompt: String,
    pub seed: u32,
    pub layers: Vec<String>,
    pub evicted: Vec<String>,
    pub warnings: Vec<String>,
    pub camera: String,
    pub post: Option<Post>,
    pub total: usize,
}

pub const BUDGET: usize = 512;
const SAFETY: &str = "solo character focus, detailed distinctive features";
const BASE_NEGATIVE: &str =
    "watermark, signature, text, blurry, deformed, extra limbs, photograph, photorealistic, hyperrealistic, smooth skin, CGI";
const TOPDOWN_NEGATIVE: &str =
    ", illegible text, blurry labels, overlapping tokens, 3D perspective, realistic rendering";

/// Whether composer v2 serves this request (§1), given that style
/// resolution passed. `character` is the portrait's character.
pub fn applies(root: &Path, tier: Tier, genre: &str, world: &str, subject: &str, characters: &[String]) -> bool {
    if genre.is_empty() || world.is_empty() || subject.is_empty() {
        return false;
    }
    if !root.join(genre).join("worlds").join(world).join("visual_style.yaml").is_file() {
        return false;
    }
    match tier {
        Tier::Portrait | Tier::PortraitSquare => {
            let c = characters.first().map(String::as_str).unwrap_or(subject);
            c.starts_with("npc:") || c.starts_with("pc:")
        }
        Tier::Landscape | Tier::SceneIllustration => true,
        _ => false,
    }
}

enum Kind<'a> {
    Portrait { character: &'a str },
    Poi { place: &'a str },
    Illustration { participants: &'a [String], location: &'a str, action: &'a str },
}

fn est(x: &str) -> usize {
    tok(x)
}

/// Composes a request with composer v2.
pub fn compose_v2(root: &Path, req: &V2Request) -> Result<V2Composed, ComposeError> {
    let tier = req.tier.ok_or_else(|| cfg_err("composer v2 needs a tier"))?;
    let cat = catalog(root, &req.genre, &req.world)?;
    let (genre, world) = (cat.genre.as_str(), cat.world.as_str());
    let kind = match tier {
        Tier::Portrait | Tier::PortraitSquare => {
            Kind::Portrait { character: req.characters.first().map(String::as_str).unwrap_or(&req.subject) }
        }
        Tier::Landscape if req.subject.starts_with("where:") => {
            let rest = &req.subject["where:".len()..];
            let scope = rest.split('/').next().unwrap_or("");
            if scope != world {
                return Err(cfg_err(format!(
                    "poi targets must reference a specific place in world '{world}'; got scope '{scope}'"
                )));
            }
            Kind::Poi { place: &req.subject }
        }
        Tier::Landscape | Tier::SceneIllustration => {
            Kind::Illustration { participants: &req.characters, location: &req.location, action: &req.subject }
        }
        other => return Err(cfg_err(format!("composer v2 does not serve tier '{}'", other.name()))),
    };
    let direction = cat.direction.as_ref().map_err(|e| cfg_err(e.clone()))?;
    let kind_name = match kind {
        Kind::Portrait { .. } => "portrait",
        Kind::Poi { .. } => "poi",
        Kind::Illustration { .. } => "illustration",
    };
    let preset = req.camera.as_deref().filter(|c| {
        let ok = cameras::is_preset(c);
        if !ok {
            tracing::info!(camera = c, "unknown camera preset ignored");
        }
        ok
    });
    let k: Option<&str> = match kind {
        Kind::Illustration { .. } => Some(preset.unwrap_or("scene")),
        _ => preset,
    };
    let recipe = direction.recipes.get(kind_name).ok_or_else(|| cfg_err(format!("recipe '{kind_name}' is missing")))?;
    let camera_name = match (k, recipe.direction_camera.as_str()) {
        (Some(k), _) => k.to_owned(),
        (None, "{camera}") => {
            return Err(cfg_err(format!("recipe '{kind_name}' takes its camera from the request and none was given")))
        }
        (None, p) => p.to_owned(),
    };
    let camera: &Camera =
        direction.cameras.get(&camera_name).ok_or_else(|| cfg_err(format!("unknown camera preset '{camera_name}'")))?;

    // Lookups.
    let character = |r: &str| -> Result<Character, ComposeError> {
        if !(r.starts_with("npc:") || r.starts_with("pc:")) {
            return Err(cfg_err(format!("character ref '{r}' must use scheme 'npc:' or 'pc:'")));
        }
        if let (Some(id), Some(d)) = (r.strip_prefix("pc:"), req.pc_descriptor.as_ref()) {
            if d.id == id {
                return Ok(Character {
                    lods: Lods::all(&d.appearance),
                    default_pose: d.default_pose.clone(),
                    culture: d.culture.clone(),
                });
            }
        }
        cat.characters.get(r).cloned().ok_or_else(|| miss(format!("CharacterCatalog has no entry for '{r}'")))
    };
    let place = |r: &str| -> Result<Place, ComposeError> {
        if !r.starts_with("where:") {
            return Err(cfg_err(format!("place ref '{r}' must use scheme 'where:'")));
        }
        cat.places.get(r).cloned().ok_or_else(|| miss(format!("PlaceCatalog has no entry for '{r}'")))
    };
    let culture = |c: &str| -> Result<String, ComposeError> {
        cat.cultures
            .get(c)
            .cloned()
            .ok_or_else(|| miss(format!("StyleCatalog.culture has no entry for '{genre}/{world}/{c}'")))
    };

    // The plan.
    let mut plan: IndexMap<String, Lod> = IndexMap::new();
    match &kind {
        Kind::Portrait { character } => {
            plan.insert(character.to_string(), Lod::Solo);
        }
        Kind::Poi { .. } => {}
        Kind::Illustration { participants, .. } => {
            let n = participants.len();
            for (i, p) in participants.iter().enumerate() {
                let lod = match (n, i) {
                    (1, _) => Lod::Solo,
                    (2, _) => Lod::Long,
                    (3..=4, 0) => Lod::Long,
                    (3..=4, _) => Lod::Short,
                    (_, 0) => Lod::Long,
                    (_, 1 | 2) => Lod::Short,
                    _ => Lod::Background,
                };
                plan.insert(p.clone(), lod);
            }
        }
    }

    // Resolve in the spec's order; the first failing lookup is the error.
    let cascade = &recipe.cascade;
    let genre_text = if cascade.contains(&Cascade::Genre) {
        Some(
            cat.genre_suffix
                .clone()
                .map_err(|m| ComposeError { kind: ComposeErrorKind::StyleMissError, message: m })?,
        )
    } else {
        None
    };
    let world_text = if cascade.contains(&Cascade::World) {
        Some(
            cat.world_suffix
                .clone()
                .map_err(|m| ComposeError { kind: ComposeErrorKind::StyleMissError, message: m })?,
        )
    } else {
        None
    };
    let mut culture_layers: Vec<Layer> = Vec::new();
    if cascade.contains(&Cascade::Culture) {
        let mut names: Vec<String> = Vec::new();
        match &kind {
            Kind::Portrait { character: c } => names.extend(character(c)?.culture),
            Kind::Illustration { participants, .. } => {
                for p in participants.iter() {
                    if let Some(c) = character(p)?.culture {
                        if !names.contains(&c) {
                            names.push(c);
                        }
                    }
                }
            }
            Kind::Poi { place: p } => names.extend(place(p)?.culture),
        }
        for n in names {
            let t = culture(&n)?;
            culture_layers.push(Layer {
                slot: "ART_SENSIBILITY.CULTURE",
                source: format!("culture:{genre}/{world}/{n}"),
                text: t,
            });
        }
    }
    // Casting, location and action inputs.
    let cast_refs: Vec<String> = match &kind {
        Kind::Portrait { character } => vec![character.to_string()],
        Kind::Illustration { participants, .. } => participants.to_vec(),
        Kind::Poi { .. } => vec![],
    };
    let mut cast_chars: HashMap<String, Character> = HashMap::new();
    for r in &cast_refs {
        if !cast_chars.contains_key(r) {
            cast_chars.insert(r.clone(), character(r)?);
        }
    }
    let poi_place = match &kind {
        Kind::Poi { place: p } => Some(place(p)?),
        _ => None,
    };
    let loc_layer = match &kind {
        Kind::Portrait { .. } => None,
        Kind::Poi { place: p } => Some(Layer {
            slot: "LOCATION",
            source: p.to_string(),
            text: poi_place.as_ref().expect("poi").environment.solo.clone(),
        }),
        Kind::Illustration { location: "", .. } => None,
        Kind::Illustration { location, .. } => {
            let pl = place(location)?;
            let t = [pl.landmark.backdrop.as_str(), pl.environment.backdrop.as_str()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            Some(Layer { slot: "LOCATION", source: location.to_string(), text: t })
        }
    };
    let action_layer = match &kind {
        Kind::Portrait { character } => Layer {
            slot: "DIRECTION_ACTION",
            source: format!("{character}.default_pose"),
            text: cast_chars[*character].default_pose.clone(),
        },
        Kind::Poi { place: p } => Layer {
            slot: "DIRECTION_ACTION",
            source: p.to_string(),
            text: poi_place.as_ref().expect("poi").description.solo.clone(),
        },
        Kind::Illustration { action, .. } => {
            Layer { slot: "DIRECTION_ACTION", source: "inline".into(), text: action.to_string() }
        }
    };
    let camera_layer = Layer { slot: "DIRECTION_CAMERA", source: camera_name.clone(), text: camera.prompt.clone() };

    let build = |plan: &IndexMap<String, Lod>, loc: &Option<Layer>, act: &Layer, cult: &[Layer]| -> Vec<Layer> {
        let mut v = Vec::new();
        if let Some(t) = &genre_text {
            v.push(Layer { slot: "ART_SENSIBILITY.GENRE", source: format!("genre:{genre}"), text: t.clone() });
        }
        if let Some(t) = &world_text {
            v.push(Layer { slot: "ART_SENSIBILITY.WORLD", source: format!("world:{genre}/{world}"), text: t.clone() });
        }
        match &poi_place {
            Some(p) => v.push(Layer { slot: "CASTING", source: req.subject.clone(), text: p.landmark.solo.clone() }),
            None => {
                for r in &cast_refs {
                    let lod = plan.get(r).copied().unwrap_or(Lod::Solo);
                    v.push(Layer { slot: "CASTING", source: r.clone(), text: cast_chars[r].lods.at(lod).to_owned() });
                }
            }
        }
        if let Some(l) = loc {
            v.push(l.clone());
        }
        v.push(act.clone());
        v.push(camera_layer.clone());
        v.extend(cult.iter().cloned());
        v
    };
    let total_of = |layers: &[Layer]| layers.iter().map(|l| est(&l.text)).sum::<usize>();

    let (mut loc, mut act, mut cult) = (loc_layer, action_layer, culture_layers);
    let mut layers = build(&plan, &loc, &act, &cult);
    let mut total = total_of(&layers);
    // 1. Level-of-detail steps, from the last plan entry backwards.
    while total > BUDGET {
        let Some(key) = plan.iter().rev().find(|(_, l)| **l != Lod::Background).map(|(k, _)| k.clone()) else { break };
        let l = plan[&key];
        plan.insert(key, l.down().expect("not background"));
        layers = build(&plan, &loc, &act, &cult);
        total = total_of(&layers);
    }
    // 2. Eviction passes.
    let mut evicted = Vec::new();
    let mut warnings = Vec::new();
    let cut = |l: &mut Layer, keep: usize, evicted: &mut Vec<String>| {
        if est(&l.text) > keep {
            let n = ((keep as f64 / 1.3).floor() as usize).max(1);
            l.text = l.text.split(is_py_space).filter(|w| !w.is_empty()).take(n).collect::<Vec<_>>().join(" ");
            evicted.push(format!("{}:{}:flourish", l.slot, l.source));
        }
    };
    let mut any_pass = false;
    if total > BUDGET {
        any_pass = true;
        if let Some(l) = loc.as_mut() {
            cut(l, 8, &mut evicted);
        }
        total = total_of(&build(&plan, &loc, &act, &cult));
    }
    if total > BUDGET {
        cut(&mut act, 8, &mut evicted);
        total = total_of(&build(&plan, &loc, &act, &cult));
    }
    if total > BUDGET {
        for l in cult.iter_mut() {
            cut(l, 12, &mut evicted);
        }
        total = total_of(&build(&plan, &loc, &act, &cult));
    }
    layers = build(&plan, &loc, &act, &cult);
    if any_pass {
        warnings.push(format!("token budget eviction applied: {total}/{BUDGET}"));
    }
    if total > BUDGET {
        let mut sums: IndexMap<&str, usize> = IndexMap::new();
        for l in &layers {
            *sums.entry(l.slot).or_insert(0) += est(&l.text);
        }
        let body = sums.iter().map(|(s, n)| format!("'{s}': {n}")).collect::<Vec<_>>().join(", ");
        return Err(ComposeError {
            kind: ComposeErrorKind::BudgetError,
            message: format!("identity floor breached: {{{body}}}"),
        });
    }

    // Prompts.
    let order = [
        "ART_SENSIBILITY.GENRE",
        "ART_SENSIBILITY.WORLD",
        "CASTING",
        "LOCATION",
        "DIRECTION_ACTION",
        "DIRECTION_CAMERA",
        "ART_SENSIBILITY.CULTURE",
    ];
    let mut parts: Vec<&str> = Vec::new();
    for slot in order {
        parts.extend(layers.iter().filter(|l| l.slot == slot && !l.text.is_empty()).map(|l| l.text.as_str()));
    }
    parts.push(SAFETY);
    let positive_prompt = parts.join(", ");
    let clip_prompt = [genre_text.as_deref().unwrap_or(""), camera.prompt.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    let mut negative_prompt = BASE_NEGATIVE.to_owned();
    if camera_name == "topdown_90" {
        negative_prompt.push_str(TOPDOWN_NEGATIVE);
    }
    // Seed.
    let mut key: Vec<String> = vec![kind_name.into(), world.into(), genre.into()];
    match &kind {
        Kind::Portrait { character } => key.push(character.to_string()),
        Kind::Poi { place } => key.push(place.to_string()),
        Kind::Illustration { participants, location, .. } => {
            if !location.is_empty() {
                key.push(location.to_string());
            }
            let mut p: Vec<String> = participants.to_vec();
            p.sort();
            key.extend(p);
        }
    }
    key.push(match &kind {
        Kind::Illustration { action, .. } => action.to_string(),
        _ => String::new(),
    });
    if let Some(k) = k {
        key.push(k.to_owned());
    }
    let digest = Sha256::digest(key.join(":").as_bytes());
    let seed = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    tracing::debug!(
        kind = kind_name,
        genre,
        world,
        total,
        layers = ?layers.iter().map(|l| (l.slot, l.source.as_str(), est(&l.text))).collect::<Vec<_>>(),
        evicted = ?evicted,
        warnings = ?warnings,
        genre_text = genre_text.as_deref().is_some_and(|t| !t.is_empty()),
        world_text = world_text.as_deref().is_some_and(|t| !t.is_empty()),
        "prompt_composed"
    );
    Ok(V2Composed {
        positive_prompt,
        negative_prompt,
        clip_prompt,
        seed,
        layers: layers.iter().map(|l| format!("{}:{}", l.slot, l.source)).collect(),
        evicted,
        warnings,
        camera: camera_name,
        post: camera.post.clone(),
        total,
    })
}

/// The render canvas a post directive needs for a w×h result (§6), each
/// side rounded up to a multiple of 16; errors past 16 MP.
pub fn post_canvas(post: &Post, w: u32, h: u32) -> Result<(u32, u32), ComposeError> {
    let (fw, fh) = (w as f64, h as f64);
    let (cw, ch) = match post.kind.as_str() {
        "crop" => {
            let p = post.percent.unwrap_or(1.0);
            (fw / p, fh / p)
        }
        _ => {
            let t = post.degrees.unwrap_or(0.0).abs().to_radians();
            (fw * t.cos() + fh * t.sin(), fw * t.sin() + fh * t.cos())
        }
    };
    let up = |x: f64| ((x - 1e-9).ceil() as u64).div_ceil(16) * 16;
    let (cw, ch) = (up(cw), up(ch));
    if cw * ch > 16_777_216 {
        return Err(cfg_err(format!("post directive needs a {cw}x{ch} canvas (limit 16 MP)")));
    }
    Ok((cw as u32, ch as u32))
}

/// Characters whose background text plus the genre and world suffixes
/// exceed the budget (validate-pack's `CAST_OVER_BUDGET`).
pub fn over_budget_characters(root: &Path, genre: &str, world: &str) -> Result<Vec<(String, usize)>, ComposeError> {
    let cat = Catalog::load(root, genre, world)?;
    let base = cat.genre_suffix.as_deref().map(est).unwrap_or(0) + cat.world_suffix.as_deref().map(est).unwrap_or(0);
    let mut v: Vec<(String, usize)> = cat
        .characters
        .iter()
        .map(|(k, c)| (k.clone(), base + est(&c.lods.background)))
        .filter(|(_, t)| *t > BUDGET)
        .collect();
    v.sort();
    Ok(v)
}
