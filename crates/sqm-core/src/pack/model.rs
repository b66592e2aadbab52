//! Serde types for the media-relevant genre-pack files, and loading a pack
//! from disk. Types accept both eras' shapes (the Python reference daemon's
//! and the game server's); unknown keys are ignored here because
//! `validate-pack` is where they are reported.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::paths;
use super::paths::resolve_in_pack;
use super::yaml::{self, YamlProblem};

/// Why a pack (or one of its files) could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{path}: no such genre pack directory")]
    NotFound { path: PathBuf },
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not valid UTF-8 (byte offset {offset})")]
    Utf8 { path: PathBuf, offset: usize },
    #[error("{path}:{line}:{column}: {message}")]
    Yaml { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{path}: {message}")]
    Schema { path: PathBuf, message: String },
    #[error("{pack}: world '{world}' not found (worlds: {available})")]
    UnknownWorld { pack: PathBuf, world: String, available: String },
    #[error("{path}: {source}")]
    Contained { path: PathBuf, source: paths::PathError },
    #[error("{path}: YAML alias expansion exceeds the limit at line {line}, column {column}")]
    AliasLimit { path: PathBuf, line: usize, column: usize },
    #[error("{path}: asset path '{raw}' leaves the pack")]
    PathEscapes { path: PathBuf, raw: String },
    #[error("invalid {what} slug '{name}'")]
    NotSlug { what: &'static str, name: String },
}

/// A parsed mapping with the keys its file spelled, for messages that
/// list them (composer-v2.md §4's `known_keys`, missing LODs).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Keyed<T> {
    pub value: T,
    #[serde(skip)]
    pub keys: Vec<String>,
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Keyed<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = serde_json::Value::deserialize(d)?;
        let keys = raw.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        let value = T::deserialize(raw).map_err(serde::de::Error::custom)?;
        Ok(Keyed { value, keys })
    }
}

/// pack.yaml
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PackMeta {
    pub name: String,
    pub version: String,
    pub description: String,
    pub min_sidequest_version: Option<String>,
    pub refine_hooks: Option<bool>,
    pub inspirations: Vec<Inspiration>,
    pub era_range: Option<String>,
    pub core_vibe: Option<String>,
    pub differentiation: Option<String>,
    pub lobby_blurb: Option<String>,
    pub emotional_tone: Vec<String>,
    pub recommended_players: Option<RecommendedPlayers>,
    pub generic_allowlist: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Inspiration {
    pub name: String,
    pub element: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RecommendedPlayers {
    pub min: i64,
    pub max: i64,
    #[serde(default)]
    pub sweet_spot: Option<i64>,
}

/// Genre `visual_style.yaml` (and the world file, which only uses
/// `positive_suffix`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct VisualStyle {
    pub positive_suffix: String,
    pub negative_prompt: String,
    pub preferred_model: String,
    pub base_seed: i64,
    pub visual_tag_overrides: IndexMap<String, String>,
    /// LoRA fields (conditioning.md §1.2), read raw and checked by
    /// `pack::lora`: `loras` (genre list, world mapping) and the legacy
    /// `lora`, `lora_scale`, `lora_trigger`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loras: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora_scale: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora_trigger: Option<serde_json::Value>,
}

impl Default for VisualStyle {
    fn default() -> Self {
        VisualStyle {
            positive_suffix: String::new(),
            negative_prompt: String::new(),
            preferred_model: "flux".into(),
            base_seed: 0,
            visual_tag_overrides: IndexMap::new(),
            loras: None,
            lora: None,
            lora_scale: None,
            lora_trigger: None,
        }
    }
}

impl VisualStyle {
    /// The LoRA fields as a map, for `pack::lora`.
    pub fn lora_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        for (k, v) in [
            ("loras", &self.loras),
            ("lora", &self.lora),
            ("lora_scale", &self.lora_scale),
            ("lora_trigger", &self.lora_trigger),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), v.clone());
            }
        }
        m
    }
}

/// One pre-rendered music file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MoodTrack {
    pub path: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub bpm: u32,
    #[serde(default = "half")]
    pub energy: f64,
}

fn half() -> f64 {
    0.5
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Variation {
    #[serde(rename = "type", default)]
    pub kind: String,
    pub path: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Theme {
    pub name: String,
    pub mood: String,
    pub base_prompt: String,
    pub variations: Vec<Variation>,
}

/// Mixer settings (audio.md §1).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Mixer {
    pub music_volume: f64,
    pub sfx_volume: f64,
    pub voice_volume: f64,
    pub crossfade_default_ms: u64,
    pub duck_amount_db: f64,
    pub loudnorm_target_lufs: f64,
}

impl Default for Mixer {
    fn default() -> Self {
        Mixer {
            music_volume: 0.4,
            sfx_volume: 0.7,
            voice_volume: 1.0,
            crossfade_default_ms: 3000,
            duck_amount_db: -12.0,
            loudnorm_target_lufs: -16.0,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FactionTriggers {
    pub location: bool,
    pub npc_present: bool,
    pub reputation_threshold: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FactionTheme {
    #[serde(default)]
    pub faction_id: String,
    pub track: MoodTrack,
    #[serde(default)]
    pub triggers: FactionTriggers,
}

/// `audio.yaml`, the union of both reference shapes. Maps keep file order
/// because the interpreter scores `mood_keywords` in file order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AudioConfig {
    #[serde(deserialize_with = "null_as_default")]
    pub mood_tracks: IndexMap<String, Vec<MoodTrack>>,
    #[serde(deserialize_with = "null_as_default")]
    pub mood_keywords: IndexMap<String, Vec<String>>,
    #[serde(deserialize_with = "null_as_default")]
    pub mood_aliases: IndexMap<String, String>,
    #[serde(deserialize_with = "null_as_default")]
    pub sfx_library: IndexMap<String, Vec<String>>,
    #[serde(deserialize_with = "null_as_default")]
    pub themes: Vec<Theme>,
    #[serde(deserialize_with = "null_as_default")]
    pub mixer: Mixer,
    pub mixer_defaults: Option<Mixer>,
    #[serde(deserialize_with = "null_as_default")]
    pub faction_themes: Vec<FactionTheme>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn mapping_or_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    match serde_json::Value::deserialize(d)? {
        v @ serde_json::Value::Object(_) => T::deserialize(v).map(Some).map_err(serde::de::Error::custom),
        _ => Ok(None),
    }
}

impl AudioConfig {
    /// Moods the audio interpreter may emit: track moods and alias keys.
    pub fn available_moods(&self) -> impl Iterator<Item = &str> {
        self.mood_tracks.keys().chain(self.mood_aliases.keys()).map(String::as_str)
    }

    pub(crate) fn has_mood(&self, mood: &str) -> bool {
        self.mood_tracks.contains_key(mood) || self.mood_aliases.contains_key(mood)
    }
}

/// `portrait_manifest.yaml` entry, either shape.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Character {
    pub id: Option<String>,
    pub name: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub role: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(deserialize_with = "null_as_default")]
    pub appearance: String,
    #[serde(deserialize_with = "null_as_default")]
    pub culture_aesthetic: String,
    #[serde(deserialize_with = "null_as_default")]
    pub element_visual: String,
    pub culture: Option<String>,
    /// Read only when it is a mapping (composer-v2.md §4: anything else
    /// falls back to `appearance`; validate-pack reports it).
    #[serde(deserialize_with = "mapping_or_none")]
    pub descriptions: Option<Keyed<Descriptions>>,
    #[serde(deserialize_with = "null_as_default")]
    pub default_pose: String,
}

impl Character {
    pub fn slug(&self) -> String {
        match (&self.id, &self.name) {
            (Some(id), _) if !id.is_empty() => id.clone(),
            (_, Some(name)) => super::slugify(name),
            _ => String::new(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Descriptions {
    #[serde(deserialize_with = "null_as_default")]
    pub solo: String,
    #[serde(deserialize_with = "null_as_default")]
    pub long: String,
    #[serde(deserialize_with = "null_as_default")]
    pub short: String,
    #[serde(deserialize_with = "null_as_default")]
    pub background: String,
}

/// `portrait_manifest.yaml`: `characters: [...]` or a bare list.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(untagged)]
pub enum PortraitManifest {
    Wrapped {
        characters: Vec<Character>,
    },
    Bare(Vec<Character>),
    #[default]
    #[serde(skip)]
    Empty,
}

impl<'de> Deserialize<'de> for PortraitManifest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        // By shape first, so an entry's own error keeps its words.
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Array(list) => Vec::<Character>::deserialize(serde_json::Value::Array(list))
                .map(PortraitManifest::Bare)
                .map_err(Error::custom),
            serde_json::Value::Object(mut o) => {
                let list =
                    o.remove("characters").filter(|c| !c.is_null()).unwrap_or(serde_json::Value::Array(Vec::new()));
                let characters = Vec::<Character>::deserialize(list).map_err(Error::custom)?;
                Ok(PortraitManifest::Wrapped { characters })
            }
            _ => Err(Error::custom("expected `characters: [...]` or a list")),
        }
    }
}

impl PortraitManifest {
    pub fn characters(&self) -> &[Character] {
        match self {
            PortraitManifest::Wrapped { characters } | PortraitManifest::Bare(characters) => characters,
            PortraitManifest::Empty => &[],
        }
    }
}

/// `{solo, backdrop}` texts of a place or point of interest.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct VisualText {
    #[serde(deserialize_with = "null_as_default")]
    pub solo: String,
    #[serde(deserialize_with = "null_as_default")]
    pub backdrop: String,
}

impl VisualText {
    /// The solo text, else the backdrop.
    pub(crate) fn first_text(&self) -> &str {
        if self.solo.is_empty() {
            &self.backdrop
        } else {
            &self.solo
        }
    }

    pub fn is_empty(&self) -> bool {
        self.solo.trim().is_empty() && self.backdrop.trim().is_empty()
    }
}

/// An archetypal place from the genre's `places.yaml`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Place {
    #[serde(deserialize_with = "null_as_default")]
    pub landmark: VisualText,
    #[serde(deserialize_with = "null_as_default")]
    pub environment: VisualText,
    #[serde(deserialize_with = "null_as_default")]
    pub description: VisualText,
}

/// A place's visual block: `{solo, backdrop}`, or the single string older
/// packs wrote (which the layered composer refuses, naming the migration).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VisualBlock {
    Lods(VisualText),
    Legacy(String),
}

impl VisualBlock {
    /// The solo text, else the backdrop (a legacy string is both).
    pub(crate) fn first_text(&self) -> &str {
        match self {
            VisualBlock::Lods(v) => v.first_text(),
            VisualBlock::Legacy(s) => s,
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            VisualBlock::Lods(v) => v.is_empty(),
            VisualBlock::Legacy(s) => s.trim().is_empty(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PointOfInterest {
    pub slug: Option<String>,
    pub name: Option<String>,
    pub controlling_culture: Option<String>,
    pub visual_prompt: Option<VisualBlock>,
    pub environment: Option<VisualBlock>,
    pub region: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub description: Option<String>,
}

impl PointOfInterest {
    pub fn slug(&self) -> String {
        match (&self.slug, &self.name) {
            (Some(s), _) if !s.is_empty() => s.clone(),
            (_, Some(n)) => super::slugify(n),
            _ => String::new(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Chapter {
    pub points_of_interest: Vec<PointOfInterest>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct History {
    pub chapters: Vec<Chapter>,
}

impl History {
    pub fn points_of_interest(&self) -> impl Iterator<Item = &PointOfInterest> {
        self.chapters.iter().flat_map(|c| c.points_of_interest.iter())
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Culture {
    #[serde(deserialize_with = "null_as_default")]
    pub visual_tokens: String,
}

/// `world.yaml`
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WorldMeta {
    pub name: String,
    pub description: String,
    pub slug: String,
    pub starting_location: String,
    pub axis_snapshot: IndexMap<String, f64>,
    pub era: Option<serde_json::Value>,
    pub tone: Option<String>,
    pub cover_poi: Option<String>,
}

/// One world of a pack.
#[derive(Clone, Debug, Default)]
pub struct World {
    pub slug: String,
    pub dir: PathBuf,
    pub meta: WorldMeta,
    pub visual_style: Option<VisualStyle>,
    pub portraits: PortraitManifest,
    pub history: History,
    pub cultures: IndexMap<String, Culture>,
    pub audio: Option<AudioConfig>,
}

/// A loaded genre pack: the media-relevant files, parsed.
#[derive(Clone, Debug)]
pub struct Pack {
    /// The genre slug (the pack directory's name).
    pub genre: String,
    pub root: PathBuf,
    pub meta: PackMeta,
    pub visual_style: VisualStyle,
    pub audio: AudioConfig,
    pub places: IndexMap<String, Place>,
    pub worlds: IndexMap<String, World>,
}

impl Pack {
    /// Loads the pack at `root`. Missing optional files give defaults;
    /// unreadable or malformed files are errors naming the file and
    /// position (run `sqm validate-pack` for the full list of problems).
    pub fn load(root: &Path) -> Result<Pack, PackError> {
        if !root.is_dir() {
            return Err(PackError::NotFound { path: root.to_path_buf() });
        }
        let genre = root
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "unknown".into());
        let mut worlds = IndexMap::new();
        let worlds_dir = root.join("worlds");
        if worlds_dir.is_dir() {
            let mut names: Vec<String> = std::fs::read_dir(&worlds_dir)
                .map_err(|source| PackError::Io { path: worlds_dir.clone(), source })?
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for name in names {
                let world = World::load(root, &worlds_dir.join(&name), &name)?;
                worlds.insert(name, world);
            }
        }
        Ok(Pack {
            genre,
            root: root.to_path_buf(),
            meta: read_file(root, &root.join("pack.yaml"))?.unwrap_or_default(),
            visual_style: read_file(root, &root.join("visual_style.yaml"))?.unwrap_or_default(),
            audio: read_file(root, &root.join("audio.yaml"))?.unwrap_or_default(),
            places: read_file(root, &root.join("places.yaml"))?.unwrap_or_default(),
            worlds,
        })
    }

    pub fn world(&self, slug: &str) -> Result<&World, PackError> {
        self.worlds.get(slug).ok_or_else(|| PackError::UnknownWorld {
            pack: self.root.clone(),
            world: slug.to_owned(),
            available: self.worlds.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// The audio config in force for `world`: the world's own audio.yaml
    /// replaces the genre's as a whole when it exists (audio.md §3), and
    /// the directory its paths are relative to.
    pub fn audio_for(&self, world: Option<&str>) -> Result<(&AudioConfig, &Path), PackError> {
        if let Some(w) = world {
            let world = self.world(w)?;
            if let Some(audio) = &world.audio {
                return Ok((audio, &world.dir));
            }
        }
        Ok((&self.audio, &self.root))
    }

    /// Resolves an asset path named in a file under `base` (a directory
    /// inside this pack), refusing paths that leave the pack.
    pub fn asset_path(&self, base: &Path, raw: &str) -> Result<PathBuf, PackError> {
        let rel_base = base.strip_prefix(&self.root).unwrap_or(Path::new(""));
        let inside = resolve_in_pack(rel_base, raw)
            .ok_or_else(|| PackError::PathEscapes { path: base.to_path_buf(), raw: raw.to_owned() })?;
        let full = self.root.join(inside);
        // A symlink may still leave the pack.
        if let (Ok(c), Ok(r)) = (full.canonicalize(), self.root.canonicalize()) {
            if !c.starts_with(&r) {
                return Err(PackError::PathEscapes { path: base.to_path_buf(), raw: raw.to_owned() });
            }
        }
        Ok(full)
    }
}

impl World {
    fn load(pack_root: &Path, dir: &Path, slug: &str) -> Result<World, PackError> {
        let mut cultures = IndexMap::new();
        let cdir = dir.join("cultures");
        if cdir.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&cdir)
                .map_err(|source| PackError::Io { path: cdir.clone(), source })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
                .collect();
            files.sort();
            for f in files {
                let name = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                cultures.insert(name, read_file(pack_root, &f)?.unwrap_or_default());
            }
        }
        Ok(World {
            slug: slug.to_owned(),
            dir: dir.to_path_buf(),
            meta: read_file(pack_root, &dir.join("world.yaml"))?.unwrap_or_default(),
            visual_style: read_file(pack_root, &dir.join("visual_style.yaml"))?,
            portraits: read_file(pack_root, &dir.join("portrait_manifest.yaml"))?.unwrap_or_default(),
            history: read_file(pack_root, &dir.join("history.yaml"))?.unwrap_or_default(),
            cultures,
            audio: read_file(pack_root, &dir.join("audio.yaml"))?,
        })
    }
}

/// Reads one YAML file of the pack at `pack` into `T`. `Ok(None)` when the
/// file does not exist or holds an empty document. The file must lie inside
/// the pack (symlinks included), be a regular file, and hold at most
/// [`paths::PACK_YAML_CAP`] bytes.
pub(crate) fn read_file<T: for<'de> Deserialize<'de>>(pack: &Path, path: &Path) -> Result<Option<T>, PackError> {
    let root = paths::Root::new(pack).map_err(|source| PackError::Io { path: pack.to_path_buf(), source })?;
    let bytes = match root.read(path, paths::PACK_YAML_CAP) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(source) => return Err(PackError::Contained { path: path.to_path_buf(), source }),
    };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let text = std::str::from_utf8(bytes)
        .map_err(|e| PackError::Utf8 { path: path.to_path_buf(), offset: e.valid_up_to() })?;
    let parsed = yaml::parse(text);
    for problem in parsed.problems {
        match problem {
            YamlProblem::Syntax { pos, message, .. } => {
                return Err(PackError::Yaml { path: path.to_path_buf(), line: pos.line, column: pos.column, message })
            }
            YamlProblem::AliasLimit { pos } => {
                return Err(PackError::AliasLimit { path: path.to_path_buf(), line: pos.line, column: pos.column })
            }
            YamlProblem::DuplicateKey { .. } => {}
        }
    }
    let Some(root) = parsed.root else { return Ok(None) };
    if root.is_null() {
        return Ok(None);
    }
    serde_json::from_value(root.to_json())
        .map(Some)
        .map_err(|e| PackError::Schema { path: path.to_path_buf(), message: e.to_string() })
}
