//! The layers of a prompt, slot by slot: the lookups that fill them (in
//! the spec's order, so the first failing lookup is the error) and the
//! positive, negative and CLIP prompts joined from them.

use std::collections::HashMap;

use indexmap::IndexMap;

use super::catalog::{Catalog, Character, Lod, Lods, Place};
use super::plan::{Kind, Shot};
use super::{cfg_err, miss, ComposeError, Request};
use crate::pack::direction::Cascade;

/// Where a layer goes in the prompt; the declaration order is the prompt's
/// order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    Genre,
    World,
    Casting,
    Location,
    Action,
    Camera,
    Culture,
}

impl Slot {
    /// The slot's name in `layers`, `evicted` and budget errors.
    pub fn name(self) -> &'static str {
        match self {
            Slot::Genre => "ART_SENSIBILITY.GENRE",
            Slot::World => "ART_SENSIBILITY.WORLD",
            Slot::Casting => "CASTING",
            Slot::Location => "LOCATION",
            Slot::Action => "DIRECTION_ACTION",
            Slot::Camera => "DIRECTION_CAMERA",
            Slot::Culture => "ART_SENSIBILITY.CULTURE",
        }
    }
}

/// A layer of the prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    pub slot: Slot,
    pub source: String,
    pub text: String,
}

impl Layer {
    fn new(slot: Slot, source: impl Into<String>, text: impl Into<String>) -> Layer {
        Layer { slot, source: source.into(), text: text.into() }
    }
}

/// Catalog lookups for one request (a request's own `pc_descriptor`
/// stands in for its player character).
struct Lookup<'a> {
    cat: &'a Catalog,
    req: &'a Request,
}

impl Lookup<'_> {
    fn character(&self, r: &str) -> Result<Character, ComposeError> {
        if !(r.starts_with("npc:") || r.starts_with("pc:")) {
            return Err(cfg_err(format!("character ref '{r}' must use scheme 'npc:' or 'pc:'")));
        }
        if let (Some(id), Some(d)) = (r.strip_prefix("pc:"), self.req.pc_descriptor.as_ref()) {
            if d.id == id {
                return Ok(Character {
                    lods: Lods::all(&d.appearance),
                    default_pose: d.default_pose.clone(),
                    culture: d.culture.clone(),
                });
            }
        }
        self.cat.characters.get(r).cloned().ok_or_else(|| miss(format!("CharacterCatalog has no entry for '{r}'")))
    }

    fn place(&self, r: &str) -> Result<Place, ComposeError> {
        if !r.starts_with("where:") {
            return Err(cfg_err(format!("place ref '{r}' must use scheme 'where:'")));
        }
        self.cat.places.get(r).cloned().ok_or_else(|| miss(format!("PlaceCatalog has no entry for '{r}'")))
    }

    fn culture(&self, c: &str) -> Result<String, ComposeError> {
        let (genre, world) = (&self.cat.genre, &self.cat.world);
        self.cat
            .cultures
            .get(c)
            .cloned()
            .ok_or_else(|| miss(format!("StyleCatalog.culture has no entry for '{genre}/{world}/{c}'")))
    }

    /// The style suffix of a cascade step the recipe includes.
    fn suffix(&self, cascade: &[Cascade], step: Cascade) -> Result<Option<String>, ComposeError> {
        if !cascade.contains(&step) {
            return Ok(None);
        }
        let s = if step == Cascade::Genre { &self.cat.genre_suffix } else { &self.cat.world_suffix };
        s.clone().map(Some)
    }
}

/// Everything the layers are built from, looked up once.
pub(crate) struct Inputs {
    pub(crate) genre_text: Option<String>,
    pub(crate) world_text: Option<String>,
    genre_source: String,
    world_source: String,
    cast: Vec<String>,
    cast_chars: HashMap<String, Character>,
    /// A point of interest's own casting layer.
    poi_casting: Option<Layer>,
    /// The layers the eviction passes may cut.
    pub(crate) location: Option<Layer>,
    pub(crate) action: Layer,
    pub(crate) cultures: Vec<Layer>,
    camera: Layer,
}

impl Inputs {
    /// Every lookup, in the spec's order.
    pub(crate) fn resolve(cat: &Catalog, req: &Request, shot: &Shot) -> Result<Inputs, ComposeError> {
        let look = Lookup { cat, req };
        let (genre, world) = (&cat.genre, &cat.world);
        let cascade = &shot.recipe.cascade;
        let genre_text = look.suffix(cascade, Cascade::Genre)?;
        let world_text = look.suffix(cascade, Cascade::World)?;
        let cultures = culture_layers(&look, shot)?;
        let cast = shot.kind.cast();
        let mut cast_chars: HashMap<String, Character> = HashMap::new();
        for r in &cast {
            if !cast_chars.contains_key(r) {
                cast_chars.insert(r.clone(), look.character(r)?);
            }
        }
        let poi = match &shot.kind {
            Kind::Poi { place } => Some((place.to_string(), look.place(place)?)),
            _ => None,
        };
        let location = match &shot.kind {
            Kind::Portrait { .. } | Kind::Illustration { location: "", .. } => None,
            Kind::Poi { .. } => poi.as_ref().map(|(r, p)| Layer::new(Slot::Location, r, &p.environment.solo)),
            Kind::Illustration { location, .. } => {
                let pl = look.place(location)?;
                let t = [pl.landmark.backdrop.as_str(), pl.environment.backdrop.as_str()]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(", ");
                Some(Layer::new(Slot::Location, *location, t))
            }
        };
        let action = match &shot.kind {
            Kind::Portrait { character } => {
                Layer::new(Slot::Action, format!("{character}.default_pose"), &cast_chars[*character].default_pose)
            }
            Kind::Poi { .. } => {
                let (r, p) = poi.as_ref().expect("a poi was looked up");
                Layer::new(Slot::Action, r, &p.description.solo)
            }
            Kind::Illustration { action, .. } => Layer::new(Slot::Action, "inline", *action),
        };
        Ok(Inputs {
            genre_text,
            world_text,
            genre_source: format!("genre:{genre}"),
            world_source: format!("world:{genre}/{world}"),
            cast,
            cast_chars,
            poi_casting: poi.map(|(_, p)| Layer::new(Slot::Casting, &req.subject, p.landmark.solo)),
            location,
            action,
            cultures,
            camera: Layer::new(Slot::Camera, &shot.camera_name, &shot.camera.prompt),
        })
    }

    /// The layers, in slot order, with each cast member at its planned
    /// level of detail.
    pub(crate) fn layers(&self, plan: &IndexMap<String, Lod>) -> Vec<Layer> {
        let mut v = Vec::new();
        if let Some(t) = &self.genre_text {
            v.push(Layer::new(Slot::Genre, &self.genre_source, t));
        }
        if let Some(t) = &self.world_text {
            v.push(Layer::new(Slot::World, &self.world_source, t));
        }
        match &self.poi_casting {
            Some(l) => v.push(l.clone()),
            None => {
                for r in &self.cast {
                    let lod = plan.get(r).copied().unwrap_or(Lod::Solo);
                    v.push(Layer::new(Slot::Casting, r, self.cast_chars[r].lods.at(lod)));
                }
            }
        }
        v.extend(self.location.iter().cloned());
        v.push(self.action.clone());
        v.push(self.camera.clone());
        v.extend(self.cultures.iter().cloned());
        v.sort_by_key(|l| l.slot);
        v
    }
}

/// The culture layers of a recipe that cascades to cultures: the cast's
/// cultures in order, without repeats (a point of interest: its
/// controlling culture).
fn culture_layers(look: &Lookup, shot: &Shot) -> Result<Vec<Layer>, ComposeError> {
    if !shot.recipe.cascade.contains(&Cascade::Culture) {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = Vec::new();
    match &shot.kind {
        Kind::Portrait { character } => names.extend(look.character(character)?.culture),
        Kind::Illustration { participants, .. } => {
            for p in participants.iter() {
                if let Some(c) = look.character(p)?.culture {
                    if !names.contains(&c) {
                        names.push(c);
                    }
                }
            }
        }
        Kind::Poi { place } => names.extend(look.place(place)?.culture),
    }
    let (genre, world) = (&look.cat.genre, &look.cat.world);
    names
        .into_iter()
        .map(|n| Ok(Layer::new(Slot::Culture, format!("culture:{genre}/{world}/{n}"), look.culture(&n)?)))
        .collect()
}

/// The positive prompt: the non-empty layers in slot order, then the
/// safety suffix.
pub(crate) fn positive(layers: &[Layer]) -> String {
    let mut parts: Vec<&str> = layers.iter().filter(|l| !l.text.is_empty()).map(|l| l.text.as_str()).collect();
    parts.push(super::SAFETY);
    parts.join(", ")
}
