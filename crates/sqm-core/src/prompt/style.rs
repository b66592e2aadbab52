//! Where the style comes from (tiers-and-prompts.md §2): the genre pack
//! named by the request under the pack root, plus reference resolution for
//! `where:`, `npc:` and `pc:` refs. Files come from the pack's shared
//! catalog ([`crate::pack::catalog`]), so a warm request reads none.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;

use crate::pack::catalog::{catalog, Catalog};
use crate::pack::model::{PackError, VisualStyle};
use crate::pack::slug::{is_slug, slugify, words};

/// A resolved style.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Style {
    pub positive_suffix: String,
    pub negative_prompt: String,
    pub preferred_model: String,
    pub base_seed: i64,
    pub visual_tag_overrides: IndexMap<String, String>,
    /// The pack's LoRA list after the world's `exclude`/`add`
    /// (conditioning.md §1.2); empty without a genre.
    #[serde(skip)]
    pub loras: Vec<crate::pack::lora::PackLora>,
}

impl Default for Style {
    fn default() -> Self {
        Style {
            positive_suffix: String::new(),
            negative_prompt: String::new(),
            preferred_model: "flux".into(),
            base_seed: 0,
            visual_tag_overrides: IndexMap::new(),
            loras: Vec::new(),
        }
    }
}

/// The `error_type` of a `COMPOSE_FAILED` reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ComposeErrorKind {
    RenderConfigError,
    StyleMissError,
    PackLoadError,
    CatalogMissError,
    BudgetError,
}

impl ComposeErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ComposeErrorKind::RenderConfigError => "RenderConfigError",
            ComposeErrorKind::StyleMissError => "StyleMissError",
            ComposeErrorKind::PackLoadError => "PackLoadError",
            ComposeErrorKind::CatalogMissError => "CatalogMissError",
            ComposeErrorKind::BudgetError => "BudgetError",
        }
    }
}

/// Style resolution failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct ComposeError {
    pub kind: ComposeErrorKind,
    pub message: String,
}

impl ComposeError {
    fn new(kind: ComposeErrorKind, message: impl Into<String>) -> Self {
        ComposeError { kind, message: message.into() }
    }
}

/// The request fields style resolution reads.
#[derive(Clone, Debug, Default)]
pub struct StyleRequest<'a> {
    pub genre: &'a str,
    pub world: &'a str,
    pub art_style: &'a str,
    pub negative_prompt: &'a str,
    pub visual_tag_overrides: Option<&'a IndexMap<String, String>>,
}

/// A pack root: a directory of genre packs.
#[derive(Clone, Debug)]
pub struct StyleSource {
    pub root: PathBuf,
    /// `--lora-dir`: where LoRA files outside the packs may live.
    pub lora_dir: Option<PathBuf>,
}

fn load_error(e: PackError) -> ComposeError {
    ComposeError::new(ComposeErrorKind::PackLoadError, e.to_string())
}

impl StyleSource {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StyleSource { root: root.into(), lora_dir: None }
    }

    /// The same packs, with LoRA files also allowed in `dir`.
    pub fn with_lora_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.lora_dir = dir;
        self
    }

    fn genre_dir(&self, genre: &str) -> Result<PathBuf, ComposeError> {
        if !is_slug(genre) {
            return Err(ComposeError::new(
                ComposeErrorKind::RenderConfigError,
                format!("invalid genre slug '{genre}'"),
            ));
        }
        let dir = self.root.join(genre);
        if !dir.is_dir() {
            return Err(ComposeError::new(
                ComposeErrorKind::StyleMissError,
                format!("unknown genre '{genre}' under {}", self.root.display()),
            ));
        }
        Ok(dir)
    }

    fn world_dir(&self, genre_dir: &Path, genre: &str, world: &str) -> Result<PathBuf, ComposeError> {
        if !is_slug(world) {
            return Err(ComposeError::new(
                ComposeErrorKind::RenderConfigError,
                format!("invalid world slug '{world}'"),
            ));
        }
        let dir = genre_dir.join("worlds").join(world);
        if !dir.is_dir() {
            return Err(ComposeError::new(
                ComposeErrorKind::StyleMissError,
                format!("unknown world '{world}' in genre '{genre}'"),
            ));
        }
        Ok(dir)
    }

    /// Resolves the style for a request; `Ok(None)` means "no style".
    pub fn resolve(&self, req: &StyleRequest<'_>) -> Result<Option<Style>, ComposeError> {
        if req.genre.is_empty() {
            if !req.world.is_empty() {
                return Err(ComposeError::new(
                    ComposeErrorKind::RenderConfigError,
                    "render request has 'world' but no 'genre'",
                ));
            }
            if req.art_style.is_empty() {
                return Ok(None);
            }
            return Ok(Some(Style {
                positive_suffix: req.art_style.to_owned(),
                negative_prompt: req.negative_prompt.to_owned(),
                visual_tag_overrides: req.visual_tag_overrides.cloned().unwrap_or_default(),
                ..Style::default()
            }));
        }
        let genre_dir = self.genre_dir(req.genre)?;
        let file = genre_dir.join("visual_style.yaml");
        if !file.is_file() {
            return Err(ComposeError::new(
                ComposeErrorKind::StyleMissError,
                format!("genre '{}' has no visual_style.yaml", req.genre),
            ));
        }
        let genre_files = catalog(&self.root, req.genre, "").map_err(load_error)?;
        let vs = style_of(&genre_files.genre_style)?.unwrap_or_default();
        let in_file =
            |f: String| move |e: String| ComposeError::new(ComposeErrorKind::PackLoadError, format!("{f}: {e}"));
        let genre_yaml = format!("{}/visual_style.yaml", req.genre);
        let mut loras = crate::pack::lora::genre_loras(&vs.lora_fields(), &genre_dir).map_err(in_file(genre_yaml))?;
        let mut style = Style {
            positive_suffix: vs.positive_suffix,
            negative_prompt: vs.negative_prompt,
            preferred_model: vs.preferred_model,
            base_seed: vs.base_seed,
            visual_tag_overrides: vs.visual_tag_overrides,
            loras: Vec::new(),
        };
        if !req.world.is_empty() {
            let world_dir = self.world_dir(&genre_dir, req.genre, req.world)?;
            let world_files = catalog(&self.root, req.genre, req.world).map_err(load_error)?;
            if let Some(ws) = style_of(&world_files.world_style)? {
                let world_yaml = format!("{}/worlds/{}/visual_style.yaml", req.genre, req.world);
                let w = crate::pack::lora::world_loras(&ws.lora_fields(), &world_dir)
                    .map_err(in_file(world_yaml.clone()))?;
                loras = crate::pack::lora::merge_world(loras, w).map_err(in_file(world_yaml))?;
            }
            if let Some(w) = style_of(&world_files.world_style)?.map(|w| w.positive_suffix).filter(|w| !w.is_empty()) {
                style.positive_suffix =
                    if style.positive_suffix.is_empty() { w } else { format!("{}, {w}", style.positive_suffix) };
            }
        }
        style.loras = loras;
        Ok(Some(style))
    }

    /// The pack files of (genre, world) when both are slugs (the genre's
    /// alone when the world has no folder); `None` when they cannot be read
    /// (a ref then reads as words).
    fn files(&self, genre: &str, world: &str) -> Option<Arc<Catalog>> {
        if !is_slug(genre) || !(world.is_empty() || is_slug(world)) {
            return None;
        }
        let world = if self.root.join(genre).join("worlds").join(world).is_dir() { world } else { "" };
        catalog(&self.root, genre, world).ok()
    }

    /// `where:<scope>/<slug>` → a place name or description; other strings
    /// unchanged. Never fails: a ref that matches nothing becomes words.
    pub(crate) fn resolve_location(&self, genre: &str, location: &str) -> String {
        let Some(reference) = location.strip_prefix("where:") else { return location.to_owned() };
        let (scope, slug) = reference.rsplit_once('/').unwrap_or(("", reference));
        let world = if is_slug(scope) { scope } else { "" };
        let Some(files) = self.files(genre, world).filter(|_| self.root.join(genre).is_dir()) else {
            return words(slug);
        };
        if let Ok(Some(history)) = &files.history {
            if let Some(poi) = history.points_of_interest().find(|p| p.slug() == slug) {
                if let Some(name) = poi.name.clone().filter(|n| !n.is_empty()) {
                    return name;
                }
            }
        }
        if let Ok(Some(places)) = &files.places {
            if let Some(p) = places.get(slug).filter(|p| !p.description.solo.is_empty()) {
                return p.description.solo.clone();
            }
        }
        words(slug)
    }

    /// `npc:<slug>` → the manifest entry's name (or id, or the slug in
    /// words); `pc:<slug>` → `subject_name` or the slug in words.
    pub(crate) fn resolve_character(&self, genre: &str, world: &str, entry: &str, subject_name: &str) -> String {
        if let Some(slug) = entry.strip_prefix("pc:") {
            return if subject_name.is_empty() { words(slug) } else { subject_name.to_owned() };
        }
        let Some(slug) = entry.strip_prefix("npc:") else { return entry.to_owned() };
        let files = (!world.is_empty()).then(|| self.files(genre, world)).flatten();
        if let Some(Ok(Some(manifest))) = files.as_ref().map(|f| &f.portraits) {
            if let Some(c) = manifest
                .characters()
                .iter()
                .find(|c| c.slug() == slug || c.name.as_deref().map(slugify).as_deref() == Some(slug))
            {
                if let Some(name) = c.name.clone().filter(|n| !n.is_empty()) {
                    return name;
                }
                if let Some(id) = c.id.clone().filter(|n| !n.is_empty()) {
                    return id;
                }
            }
        }
        words(slug)
    }
}

/// A visual_style file's outcome as the style's.
fn style_of(
    l: &Result<Option<crate::pack::model::Keyed<VisualStyle>>, PackError>,
) -> Result<Option<VisualStyle>, ComposeError> {
    match l {
        Ok(v) => Ok(v.as_ref().map(|k| k.value.clone())),
        Err(e) => Err(ComposeError::new(ComposeErrorKind::PackLoadError, e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack_root() -> StyleSource {
        StyleSource::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/genre_packs"))
    }

    fn req<'a>(genre: &'a str, world: &'a str) -> StyleRequest<'a> {
        StyleRequest { genre, world, ..Default::default() }
    }

    #[test]
    fn genre_and_world_suffixes_join() {
        let s = pack_root().resolve(&req("ashfall", "cinder-reach")).unwrap().unwrap();
        assert!(s.positive_suffix.starts_with("painterly frontier fantasy"));
        assert!(s
            .positive_suffix
            .ends_with(", Mount Harrow smoking on the horizon, ember-lit walled towns, ash-dusted pines"));
        assert_eq!(s.base_seed, 7301);
        assert_eq!(s.preferred_model, "schnell");
    }

    #[test]
    fn example_10_world_suffix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("g/worlds/w")).unwrap();
        std::fs::write(dir.path().join("g/visual_style.yaml"), "positive_suffix: A\n").unwrap();
        std::fs::write(dir.path().join("g/worlds/w/visual_style.yaml"), "positive_suffix: B\n").unwrap();
        let s = StyleSource::new(dir.path()).resolve(&req("g", "w")).unwrap().unwrap();
        assert_eq!(s.positive_suffix, "A, B");
    }

    #[test]
    fn errors_have_kinds() {
        let src = pack_root();
        let e = src.resolve(&req("nope", "w")).unwrap_err();
        assert_eq!(e.kind, ComposeErrorKind::StyleMissError);
        assert_eq!(e.message, format!("unknown genre 'nope' under {}", src.root.display()));
        assert_eq!(src.resolve(&req("../etc", "")).unwrap_err().kind, ComposeErrorKind::RenderConfigError);
        assert_eq!(src.resolve(&req("", "w")).unwrap_err().message, "render request has 'world' but no 'genre'");
        assert_eq!(
            src.resolve(&req("ashfall", "atlantis")).unwrap_err().message,
            "unknown world 'atlantis' in genre 'ashfall'"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("g")).unwrap();
        std::fs::write(dir.path().join("g/visual_style.yaml"), "positive_suffix: [\n").unwrap();
        let e = StyleSource::new(dir.path()).resolve(&req("g", "")).unwrap_err();
        assert_eq!(e.kind, ComposeErrorKind::PackLoadError);
        assert!(e.message.contains("visual_style.yaml:"), "{}", e.message);
    }

    #[test]
    fn legacy_art_style_and_no_style() {
        let src = pack_root();
        assert_eq!(src.resolve(&req("", "")).unwrap(), None);
        let r = StyleRequest { art_style: "oil paint", negative_prompt: "neon", ..Default::default() };
        let s = src.resolve(&r).unwrap().unwrap();
        assert_eq!((s.positive_suffix.as_str(), s.negative_prompt.as_str()), ("oil paint", "neon"));
    }

    #[test]
    fn references_resolve_through_the_pack() {
        let src = pack_root();
        assert_eq!(src.resolve_location("ashfall", "where:cinder-reach/harrowgate"), "Harrowgate");
        assert_eq!(src.resolve_location("ashfall", "where:cinder-reach/the_buried_chapel"), "The Buried Chapel");
        assert_eq!(
            src.resolve_location("ashfall", "where:cinder-reach/forge"),
            "the town forge, where heat is traded like coin"
        );
        assert_eq!(src.resolve_location("ashfall", "where:cinder-reach/salt-flats_east"), "salt flats east");
        assert_eq!(src.resolve_location("", "where:x/old_mill"), "old mill");
        assert_eq!(src.resolve_location("ashfall", "The Old Mill"), "The Old Mill");
        assert_eq!(src.resolve_character("ashfall", "cinder-reach", "npc:tinker-ro", ""), "Ro the Tinker");
        assert_eq!(
            src.resolve_character("ashfall", "cinder-reach", "npc:warden_isolde_varr", ""),
            "Warden Isolde Varr"
        );
        assert_eq!(src.resolve_character("ashfall", "cinder-reach", "npc:ghost_of_x", ""), "ghost of x");
        assert_eq!(src.resolve_character("ashfall", "cinder-reach", "pc:kel-ra", "Kel"), "Kel");
        assert_eq!(src.resolve_character("ashfall", "cinder-reach", "pc:kel-ra", ""), "kel ra");
        assert_eq!(src.resolve_character("ashfall", "cinder-reach", "Mira", ""), "Mira");
    }
}
