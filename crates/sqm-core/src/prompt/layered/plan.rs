//! The shot: what kind of picture a request asks for, which recipe and
//! camera frame it, the level of detail each cast member starts at, and
//! the deterministic seed.

use indexmap::IndexMap;

use super::catalog::{Catalog, Lod};
use super::{cfg_err, ComposeError, Request};
use crate::interpret::Tier;
use crate::pack::direction::{self, Camera, Recipe};

/// The three pictures the layered composer makes.
pub(crate) enum Kind<'a> {
    Portrait { character: &'a str },
    Poi { place: &'a str },
    Illustration { participants: &'a [String], location: &'a str, action: &'a str },
}

impl Kind<'_> {
    /// The recipe's name.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Kind::Portrait { .. } => "portrait",
            Kind::Poi { .. } => "poi",
            Kind::Illustration { .. } => "illustration",
        }
    }

    /// The characters cast in the picture, in request order.
    pub(crate) fn cast(&self) -> Vec<String> {
        match self {
            Kind::Portrait { character } => vec![character.to_string()],
            Kind::Illustration { participants, .. } => participants.to_vec(),
            Kind::Poi { .. } => vec![],
        }
    }
}

/// A request's kind, recipe and camera.
pub(crate) struct Shot<'a> {
    pub(crate) kind: Kind<'a>,
    pub(crate) recipe: &'a Recipe,
    /// The preset the request chose (illustrations default to `scene`).
    pub(crate) preset: Option<&'a str>,
    pub(crate) camera_name: String,
    pub(crate) camera: &'a Camera,
}

impl<'a> Shot<'a> {
    /// Resolves in the spec's order: kind, the pack's direction, recipe,
    /// camera; the first failure is the error.
    pub(crate) fn resolve(cat: &'a Catalog, req: &'a Request, tier: Tier) -> Result<Shot<'a>, ComposeError> {
        let kind = kind_of(req, tier, &cat.world)?;
        let direction = cat.direction.as_ref().map_err(Clone::clone)?;
        let preset = req.camera.as_deref().filter(|c| {
            let ok = direction::is_preset(c);
            if !ok {
                tracing::info!(camera = c, "unknown camera preset ignored");
            }
            ok
        });
        let preset = match kind {
            Kind::Illustration { .. } => Some(preset.unwrap_or("scene")),
            _ => preset,
        };
        let kind_name = kind.name();
        let recipe =
            direction.recipes.get(kind_name).ok_or_else(|| cfg_err(format!("recipe '{kind_name}' is missing")))?;
        let camera_name = match (preset, recipe.direction_camera.as_str()) {
            (Some(k), _) => k.to_owned(),
            (None, "{camera}") => {
                return Err(cfg_err(format!(
                    "recipe '{kind_name}' takes its camera from the request and none was given"
                )))
            }
            (None, p) => p.to_owned(),
        };
        let camera = direction
            .cameras
            .get(&camera_name)
            .ok_or_else(|| cfg_err(format!("unknown camera preset '{camera_name}'")))?;
        Ok(Shot { kind, recipe, preset, camera_name, camera })
    }

    /// The starting level of detail of each cast member (§4): the more
    /// people, the less each one gets.
    pub(crate) fn lod_plan(&self) -> IndexMap<String, Lod> {
        let mut plan = IndexMap::new();
        match &self.kind {
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
        plan
    }

    /// The seed: the first four bytes (big-endian) of the SHA-256 of the
    /// shot's identity, so the same request always renders the same image.
    pub(crate) fn seed(&self, genre: &str, world: &str) -> u32 {
        let mut key: Vec<String> = vec![self.kind.name().into(), world.into(), genre.into()];
        match &self.kind {
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
        key.push(match &self.kind {
            Kind::Illustration { action, .. } => action.to_string(),
            _ => String::new(),
        });
        if let Some(k) = self.preset {
            key.push(k.to_owned());
        }
        crate::rng::text_seed(&key.join(":"))
    }
}

fn kind_of<'a>(req: &'a Request, tier: Tier, world: &str) -> Result<Kind<'a>, ComposeError> {
    match tier {
        Tier::Portrait | Tier::PortraitSquare => {
            Ok(Kind::Portrait { character: req.characters.first().map(String::as_str).unwrap_or(&req.subject) })
        }
        Tier::Landscape if req.subject.starts_with("where:") => {
            let rest = &req.subject["where:".len()..];
            let scope = rest.split('/').next().unwrap_or("");
            if scope != world {
                return Err(cfg_err(format!(
                    "poi targets must reference a specific place in world '{world}'; got scope '{scope}'"
                )));
            }
            Ok(Kind::Poi { place: &req.subject })
        }
        Tier::Landscape | Tier::SceneIllustration => {
            Ok(Kind::Illustration { participants: &req.characters, location: &req.location, action: &req.subject })
        }
        other => Err(cfg_err(format!("composer v2 does not serve tier '{}'", other.name()))),
    }
}
