//! The layered composer (composer-v2.md): the game server's refs (`npc:`,
//! `pc:`, `where:`) turned into a prompt built from the pack's catalogs,
//! with a recipe, a camera preset, a level-of-detail plan, a 512-token
//! budget and a deterministic seed.
//!
//! The steps, one file each: [`catalog`] reads the pack and [`cache`]
//! keeps it; [`plan`] decides the shot (kind, recipe, camera, levels of
//! detail, seed); [`assemble`] looks up every layer and joins the prompts;
//! [`budget`] makes the layers fit.

use std::path::Path;

use serde_json::Value;

pub use super::style::{ComposeError, ComposeErrorKind};
use super::tokens::tok;
use crate::interpret::Tier;
use crate::pack::direction::Post;

pub(crate) mod assemble;
pub mod budget;
pub mod cache;
pub mod catalog;
pub mod plan;

pub use assemble::{Layer, Slot};
pub use cache::catalog;
pub use catalog::{Catalog, Character, Lod, Lods, Pair, Place};

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

/// What the layered composer reads from a request.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub tier: Option<Tier>,
    pub subject: String,
    pub characters: Vec<String>,
    pub location: String,
    pub camera: Option<String>,
    pub pc_descriptor: Option<PcDescriptor>,
    pub genre: String,
    pub world: String,
}

/// What the composer did, for the game master's panel (the
/// `render.prompt_composed` event, remote-and-telemetry.md §4.2).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Report {
    pub kind: &'static str,
    pub world: String,
    pub genre: String,
    pub total_estimated_tokens: usize,
    pub layers: Vec<LayerReport>,
    pub dropped_layers: Vec<String>,
    pub warnings: Vec<String>,
    pub genre_style_applied: bool,
    pub world_style_applied: bool,
}

/// One layer of a [`Report`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LayerReport {
    pub slot: &'static str,
    pub source: String,
    pub estimated_tokens: usize,
}

/// The layered composer's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Composed {
    pub positive_prompt: String,
    pub negative_prompt: String,
    pub clip_prompt: String,
    pub seed: u32,
    /// `SLOT:source` of every layer, in prompt order.
    pub layers: Vec<String>,
    pub evicted: Vec<String>,
    pub warnings: Vec<String>,
    pub camera: String,
    pub post: Option<Post>,
    pub total: usize,
    pub report: Report,
}

pub(crate) const BUDGET: usize = 512;
const SAFETY: &str = "solo character focus, detailed distinctive features";
const BASE_NEGATIVE: &str =
    "watermark, signature, text, blurry, deformed, extra limbs, photograph, photorealistic, hyperrealistic, smooth skin, CGI";
const TOPDOWN_NEGATIVE: &str =
    ", illegible text, blurry labels, overlapping tokens, 3D perspective, realistic rendering";

pub(crate) fn cfg_err(m: impl Into<String>) -> ComposeError {
    ComposeError { kind: ComposeErrorKind::RenderConfigError, message: m.into() }
}

pub(crate) fn miss(m: impl Into<String>) -> ComposeError {
    ComposeError { kind: ComposeErrorKind::CatalogMissError, message: m.into() }
}

pub(crate) fn load_err(m: impl Into<String>) -> ComposeError {
    ComposeError { kind: ComposeErrorKind::PackLoadError, message: m.into() }
}

/// The token estimate every budget decision uses.
pub(crate) fn est(x: &str) -> usize {
    tok(x)
}

/// Whether the layered composer serves this request (§1), given that style
/// resolution passed. A portrait's character is `characters[0]`, or the
/// subject.
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

/// Composes a request: catalog → shot → layers → budget → prompts and seed.
pub fn compose(root: &Path, req: &Request) -> Result<Composed, ComposeError> {
    let tier = req.tier.ok_or_else(|| cfg_err("composer v2 needs a tier"))?;
    let cat = catalog(root, &req.genre, &req.world)?;
    let (genre, world) = (cat.genre.as_str(), cat.world.as_str());
    let shot = plan::Shot::resolve(&cat, req, tier)?;
    let inputs = assemble::Inputs::resolve(&cat, req, &shot)?;
    let genre_text = inputs.genre_text.clone();
    let has_world_text = inputs.world_text.as_deref().is_some_and(|t| !t.is_empty());
    let fitted = budget::fit(inputs, shot.lod_plan())?;
    let clip_prompt = [genre_text.as_deref().unwrap_or(""), shot.camera.prompt.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    let mut negative_prompt = BASE_NEGATIVE.to_owned();
    if shot.camera_name == "topdown_90" {
        negative_prompt.push_str(TOPDOWN_NEGATIVE);
    }
    let layers = &fitted.layers;
    tracing::debug!(
        kind = shot.kind.name(),
        genre,
        world,
        total = fitted.total,
        layers = ?layers.iter().map(|l| (l.slot.name(), l.source.as_str(), est(&l.text))).collect::<Vec<_>>(),
        evicted = ?fitted.evicted,
        warnings = ?fitted.warnings,
        genre_text = genre_text.as_deref().is_some_and(|t| !t.is_empty()),
        world_text = has_world_text,
        "prompt_composed"
    );
    let report = Report {
        kind: shot.kind.name(),
        world: world.to_owned(),
        genre: genre.to_owned(),
        total_estimated_tokens: fitted.total,
        layers: layers
            .iter()
            .map(|l| LayerReport { slot: l.slot.name(), source: l.source.clone(), estimated_tokens: est(&l.text) })
            .collect(),
        dropped_layers: fitted.evicted.clone(),
        warnings: fitted.warnings.clone(),
        genre_style_applied: genre_text.as_deref().is_some_and(|t| !t.is_empty()),
        world_style_applied: has_world_text,
    };
    Ok(Composed {
        report,
        positive_prompt: assemble::positive(layers),
        negative_prompt,
        clip_prompt,
        seed: shot.seed(genre, world),
        layers: layers.iter().map(|l| format!("{}:{}", l.slot.name(), l.source)).collect(),
        evicted: fitted.evicted,
        warnings: fitted.warnings,
        camera: shot.camera_name.clone(),
        post: shot.camera.post.clone(),
        total: fitted.total,
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
pub(crate) fn over_budget_characters(
    root: &Path,
    genre: &str,
    world: &str,
) -> Result<Vec<(String, usize)>, ComposeError> {
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
