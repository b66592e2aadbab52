//! The pack's direction model (composer-v2.md §3): camera presets and
//! recipes, the built-in set, and a genre's `cameras.yaml` /
//! `recipes.yaml` overrides read into it, checked with the spec's messages.

use std::collections::BTreeMap;

use serde_json::Value;

/// Why a `cameras.yaml` or `recipes.yaml` override was refused; the
/// messages are composer-v2.md §3's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DirectionError {
    #[error("cameras.yaml must be a mapping of preset → {{prompt, post}}")]
    CamerasNotMapping,
    #[error("cameras.yaml missing presets: {}", sorted_list(.0))]
    MissingPresets(Vec<String>),
    #[error("cameras.yaml contains unknown presets: {}", sorted_list(.0))]
    UnknownPresets(Vec<String>),
    #[error("camera '{camera}': {problem}")]
    Camera { camera: String, problem: String },
    #[error("recipes.yaml must be a mapping of recipe name → fields")]
    RecipesNotMapping,
    #[error("recipe '{0}' is missing")]
    MissingRecipe(String),
    #[error("recipe '{recipe}': {problem}")]
    Recipe { recipe: String, problem: String },
}

fn camera_err(camera: &str, problem: impl Into<String>) -> DirectionError {
    DirectionError::Camera { camera: camera.to_owned(), problem: problem.into() }
}

fn recipe_err(recipe: &str, problem: impl Into<String>) -> DirectionError {
    DirectionError::Recipe { recipe: recipe.to_owned(), problem: problem.into() }
}

/// A post-render directive.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Post {
    /// `crop` or `rotate`.
    pub kind: String,
    pub mode: Option<String>,
    pub percent: Option<f64>,
    pub degrees: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Camera {
    pub prompt: String,
    pub post: Option<Post>,
}

/// The 17 preset names and prompts.
pub const PRESETS: [(&str, &str); 17] = [
    ("portrait_3q", ""),
    ("portrait_profile", "profile view portrait, sharp silhouette, subject facing left, bust framing"),
    ("portrait_closeup", "tight face-only portrait, emotional weight, shallow depth of field"),
    ("portrait_full_body", "full-body standing portrait, full outfit and stance visible, grounded pose"),
    ("wide_establishing", "wide establishing shot, environmental context, mid-distance subject, atmospheric depth"),
    ("low_angle_hero", "low-angle hero shot looking up at the landmark, monumental presence, sky filling the upper frame"),
    ("interior_wide", "wide architectural interior, depth receding, leading lines, grounded floor"),
    ("aerial_oblique", "high-angle aerial oblique, landscape scale, map-like clarity, diminishing detail to horizon"),
    ("scene", "painterly mid-distance composition, narrative staging, balanced framing"),
    ("over_shoulder", "over-the-shoulder two-shot, foreground silhouette, focused subject beyond"),
    ("wide_action", "wide action shot, middle-distance subjects, environmental context, kinetic staging"),
    ("closeup_action", "tight closeup on a single action beat, kinetic energy, shallow depth"),
    (
        "topdown_90",
        "orthographic top-down tactical view, 90-degree overhead angle, battle-map framing, clear spacing between subjects, no perspective",
    ),
    (
        "extreme_closeup_leone",
        "tight portrait, single dominant facial feature, macro detail, heavy chiaroscuro, sweat and skin texture, shallow depth of field",
    ),
    ("dutch_tilt", "dutch angle, camera tilted 15-25 degrees off-horizontal, destabilized composition, disoriented framing"),
    (
        "single_point_perspective_kubrick",
        "rigid symmetric one-point perspective, corridor or hall receding to central vanishing point, centered subject, architectural order",
    ),
    ("trunk_shot_tarantino", "low POV looking up from inside a container, subjects leaning over the frame, worm's-eye angle"),
];

pub(crate) fn is_preset(name: &str) -> bool {
    PRESETS.iter().any(|(n, _)| *n == name)
}

/// Art-sensibility cascade layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cascade {
    Genre,
    World,
    Culture,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Recipe {
    /// A preset name, or `{camera}` (from the request).
    pub direction_camera: String,
    pub cascade: Vec<Cascade>,
}

/// One genre's cameras and recipes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Direction {
    pub cameras: BTreeMap<String, Camera>,
    pub recipes: BTreeMap<String, Recipe>,
}

impl Direction {
    pub(crate) fn builtin() -> Direction {
        let cameras = PRESETS
            .iter()
            .map(|(n, p)| {
                let post = (*n == "extreme_closeup_leone").then(|| Post {
                    kind: "crop".into(),
                    mode: Some("center".into()),
                    percent: Some(0.25),
                    degrees: None,
                });
                (n.to_string(), Camera { prompt: p.to_string(), post })
            })
            .collect();
        let all = vec![Cascade::Genre, Cascade::World, Cascade::Culture];
        let recipes = [("portrait", "portrait_3q"), ("poi", "wide_establishing"), ("illustration", "{camera}")]
            .iter()
            .map(|(k, c)| (k.to_string(), Recipe { direction_camera: c.to_string(), cascade: all.clone() }))
            .collect();
        Direction { cameras, recipes }
    }
}

fn sorted_list(v: &[String]) -> String {
    let mut v = v.to_vec();
    v.sort();
    format!("[{}]", v.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", "))
}

/// Validates a parsed `cameras.yaml`.
pub(crate) fn parse_cameras(v: &Value) -> Result<BTreeMap<String, Camera>, DirectionError> {
    let map = v.as_object().ok_or(DirectionError::CamerasNotMapping)?;
    let missing: Vec<String> = PRESETS.iter().map(|(n, _)| n.to_string()).filter(|n| !map.contains_key(n)).collect();
    if !missing.is_empty() {
        return Err(DirectionError::MissingPresets(missing));
    }
    let unknown: Vec<String> = map.keys().filter(|k| !is_preset(k)).cloned().collect();
    if !unknown.is_empty() {
        return Err(DirectionError::UnknownPresets(unknown));
    }
    let mut out = BTreeMap::new();
    for (name, body) in map {
        let prompt =
            body.get("prompt").and_then(Value::as_str).ok_or_else(|| camera_err(name, "'prompt' must be a string"))?;
        let post = match body.get("post") {
            None | Some(Value::Null) => None,
            Some(p) => Some(parse_post(name, p)?),
        };
        out.insert(name.clone(), Camera { prompt: prompt.to_owned(), post });
    }
    Ok(out)
}

fn parse_post(name: &str, p: &Value) -> Result<Post, DirectionError> {
    let obj = p.as_object().ok_or_else(|| camera_err(name, "'post' must be a mapping or null"))?;
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != "crop" && kind != "rotate" {
        return Err(camera_err(name, format!("post kind must be crop or rotate, got '{kind}'")));
    }
    let mode = match obj.get("mode") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) if m == "center" || m == "subject_center" => Some(m.clone()),
        Some(other) => {
            return Err(camera_err(name, format!("post mode must be center, subject_center or null, got {other}")))
        }
    };
    let num = |k: &str| -> Result<Option<f64>, DirectionError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                v.as_f64().map(Some).ok_or_else(|| camera_err(name, format!("post {k} must be a number or null")))
            }
        }
    };
    let percent = num("percent")?;
    if kind == "crop" {
        if let Some(p) = percent {
            if !(p > 0.0 && p <= 1.0) {
                return Err(camera_err(name, format!("crop percent must lie in (0, 1], got {p}")));
            }
        }
    }
    Ok(Post { kind: kind.to_owned(), mode, percent, degrees: num("degrees")? })
}

/// Validates a parsed `recipes.yaml`.
pub(crate) fn parse_recipes(v: &Value) -> Result<BTreeMap<String, Recipe>, DirectionError> {
    let map = v.as_object().ok_or(DirectionError::RecipesNotMapping)?;
    let mut out = BTreeMap::new();
    for name in ["portrait", "poi", "illustration"] {
        let Some(body) = map.get(name).and_then(Value::as_object) else {
            return Err(DirectionError::MissingRecipe(name.to_owned()));
        };
        for key in ["kind", "casting", "location", "direction_action", "direction_camera", "art_sensibility"] {
            if !body.contains_key(key) {
                return Err(recipe_err(name, format!("missing '{key}'")));
            }
        }
        if body.get("kind").and_then(Value::as_str) != Some(name) {
            return Err(recipe_err(name, format!("kind must be '{name}'")));
        }
        let camera = body.get("direction_camera").and_then(Value::as_str).unwrap_or("");
        if camera != "{camera}" && !is_preset(camera) {
            return Err(recipe_err(name, format!("unknown camera preset '{camera}'")));
        }
        let layers = body
            .get("art_sensibility")
            .and_then(Value::as_array)
            .ok_or_else(|| recipe_err(name, "art_sensibility must be a list"))?;
        let mut cascade = Vec::new();
        let mut unknown = Vec::new();
        for l in layers {
            match l.as_str() {
                Some("GENRE") => cascade.push(Cascade::Genre),
                Some("WORLD") => cascade.push(Cascade::World),
                Some("CULTURE") => cascade.push(Cascade::Culture),
                Some(other) => unknown.push(other.to_owned()),
                None => unknown.push(l.to_string()),
            }
        }
        if !unknown.is_empty() {
            return Err(recipe_err(name, format!("unknown cascade layer(s) {}", sorted_list(&unknown))));
        }
        out.insert(name.to_owned(), Recipe { direction_camera: camera.to_owned(), cascade });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all_cameras() -> Value {
        Value::Object(PRESETS.iter().map(|(n, p)| (n.to_string(), json!({"prompt": p, "post": null}))).collect())
    }

    #[test]
    fn camera_overrides_are_checked() {
        assert_eq!(parse_cameras(&all_cameras()).unwrap().len(), 17);
        let mut v = all_cameras();
        v.as_object_mut().unwrap().remove("scene");
        v.as_object_mut().unwrap().remove("dutch_tilt");
        assert_eq!(parse_cameras(&v).unwrap_err().to_string(), "cameras.yaml missing presets: ['dutch_tilt', 'scene']");
        let mut v = all_cameras();
        v["zoom"] = json!({"prompt": "x"});
        assert_eq!(parse_cameras(&v).unwrap_err().to_string(), "cameras.yaml contains unknown presets: ['zoom']");
        let mut v = all_cameras();
        v["scene"]["post"] = json!({"kind": "crop", "percent": 1.5});
        assert!(parse_cameras(&v).unwrap_err().to_string().contains("(0, 1]"));
        v["scene"]["post"] = json!({"kind": "warp"});
        assert!(parse_cameras(&v).unwrap_err().to_string().contains("crop or rotate"));
    }

    #[test]
    fn recipe_overrides_are_checked() {
        let good = json!({
            "portrait": {"kind": "portrait", "casting": "character", "location": "background", "direction_action": "pose", "direction_camera": "portrait_closeup", "art_sensibility": ["GENRE"]},
            "poi": {"kind": "poi", "casting": "landmark", "location": "environment", "direction_action": "description", "direction_camera": "wide_establishing", "art_sensibility": ["GENRE", "WORLD"]},
            "illustration": {"kind": "illustration", "casting": "participants", "location": "poi_location", "direction_action": "action", "direction_camera": "{camera}", "art_sensibility": []}
        });
        let r = parse_recipes(&good).unwrap();
        assert_eq!(r["portrait"].cascade, vec![Cascade::Genre]);
        let mut bad = good.clone();
        bad["poi"]["direction_camera"] = json!("fisheye");
        assert_eq!(parse_recipes(&bad).unwrap_err().to_string(), "recipe 'poi': unknown camera preset 'fisheye'");
        let mut bad = good.clone();
        bad["poi"]["art_sensibility"] = json!(["MOOD", "ERA", "GENRE"]);
        assert_eq!(
            parse_recipes(&bad).unwrap_err().to_string(),
            "recipe 'poi': unknown cascade layer(s) ['ERA', 'MOOD']"
        );
        let mut bad = good.clone();
        bad.as_object_mut().unwrap().remove("illustration");
        assert_eq!(parse_recipes(&bad).unwrap_err().to_string(), "recipe 'illustration' is missing");
    }
}
