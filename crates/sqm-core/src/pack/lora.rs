//! A genre pack's LoRA list (conditioning.md §1.2, the reference schema
//! of 2026-04-20): the genre's `loras` list (or the legacy ADR-032 keys),
//! a world's `{exclude, add}`, and which tiers an entry applies to. Files
//! are found and hashed by `render::lora`.

use std::path::{Path, PathBuf};

/// One entry of a pack's `loras` (conditioning.md §1.2).
#[derive(Clone, Debug, PartialEq)]
pub struct PackLora {
    pub name: String,
    pub file: String,
    pub scale: f64,
    pub applies_to: Vec<String>,
    pub trigger: Option<String>,
    /// The folder of the YAML that named it (relative paths start there).
    pub base: PathBuf,
}

impl PackLora {
    /// True when the entry applies to the tier named `tier`: `all` matches
    /// every tier, `scene` is `scene_illustration`, `portrait` also
    /// `portrait_square`.
    pub fn applies(&self, tier: &str) -> bool {
        self.applies_to.iter().any(|a| match a.as_str() {
            "all" => true,
            "scene" => tier == "scene_illustration",
            "portrait" => tier == "portrait" || tier == "portrait_square",
            other => other == tier,
        })
    }
}

/// A world's `loras`: names to drop from the genre's list, entries to add.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorldLoras {
    pub exclude: Vec<String>,
    pub add: Vec<PackLora>,
}

/// Reads the genre's LoRA list from `visual_style.yaml`'s fields (`loras`,
/// or the legacy `lora`/`lora_scale`/`lora_trigger`). `base` is the YAML's
/// folder. Errors are prefixed with the entry (`loras[0]: …`).
pub fn genre_loras(style: &serde_json::Map<String, serde_json::Value>, base: &Path) -> Result<Vec<PackLora>, String> {
    let legacy = style.get("lora").filter(|v| !v.is_null());
    match (style.get("loras").filter(|v| !v.is_null()), legacy) {
        (Some(_), Some(_)) => Err("'lora' (legacy) and 'loras' cannot both be set; keep 'loras'".into()),
        (Some(serde_json::Value::Array(items)), None) => {
            let list: Vec<PackLora> = items
                .iter()
                .enumerate()
                .map(|(i, v)| entry(v, base, &format!("loras[{i}]")))
                .collect::<Result<_, _>>()?;
            for (i, l) in list.iter().enumerate() {
                if list[..i].iter().any(|o| o.name == l.name) {
                    return Err(format!("loras[{i}]: name '{}' is used twice", l.name));
                }
            }
            Ok(list)
        }
        (Some(_), None) => Err("'loras' must be a list in a genre's visual_style.yaml".into()),
        (None, Some(file)) => {
            let file = file.as_str().ok_or("'lora' must be a string")?.to_owned();
            let scale = match style.get("lora_scale").filter(|v| !v.is_null()) {
                None => 1.0,
                Some(v) => scale_of(v, "lora_scale")?,
            };
            let trigger = match style.get("lora_trigger").filter(|v| !v.is_null()) {
                None => None,
                Some(v) => Some(v.as_str().ok_or("'lora_trigger' must be a string")?.to_owned()),
            };
            Ok(vec![PackLora {
                name: "lora".into(),
                file,
                scale,
                applies_to: vec!["all".into()],
                trigger,
                base: base.to_path_buf(),
            }])
        }
        (None, None) => Ok(Vec::new()),
    }
}

/// Reads a world's `loras` mapping (`exclude`, `add`); absent: inherit.
pub fn world_loras(style: &serde_json::Map<String, serde_json::Value>, base: &Path) -> Result<WorldLoras, String> {
    match style.get("loras").filter(|v| !v.is_null()) {
        None => Ok(WorldLoras::default()),
        Some(serde_json::Value::Array(_)) => {
            Err("a world's 'loras' is a mapping {exclude, add}, not a list (the genre's list is inherited)".into())
        }
        Some(serde_json::Value::Object(m)) => {
            let exclude = match m.get("exclude").filter(|v| !v.is_null()) {
                None => Vec::new(),
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned).ok_or("loras.exclude: entries must be strings"))
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err("loras.exclude must be a list of names".into()),
            };
            let add = match m.get("add").filter(|v| !v.is_null()) {
                None => Vec::new(),
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .enumerate()
                    .map(|(i, v)| entry(v, base, &format!("loras.add[{i}]")))
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err("loras.add must be a list".into()),
            };
            Ok(WorldLoras { exclude, add })
        }
        Some(_) => Err("a world's 'loras' must be a mapping {exclude, add}".into()),
    }
}

fn scale_of(v: &serde_json::Value, at: &str) -> Result<f64, String> {
    match v.as_f64() {
        Some(s) if s.is_finite() && (0.0..=2.0).contains(&s) => Ok(s),
        _ => Err(format!("{at}: 'scale' must be a number in [0, 2], got {v}")),
    }
}

fn entry(v: &serde_json::Value, base: &Path, at: &str) -> Result<PackLora, String> {
    let m = v.as_object().ok_or_else(|| format!("{at}: must be a mapping"))?;
    let req = |k: &str| m.get(k).filter(|v| !v.is_null()).ok_or_else(|| format!("{at}: missing required field '{k}'"));
    let string = |k: &str| -> Result<String, String> {
        req(k)?.as_str().map(str::to_owned).ok_or_else(|| format!("{at}: '{k}' must be a string"))
    };
    let name = string("name")?;
    let file = string("file")?;
    let scale = scale_of(req("scale")?, at)?;
    let applies_to: Vec<String> = match req("applies_to")? {
        serde_json::Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|t| t.as_str().map(str::to_owned).ok_or_else(|| format!("{at}: 'applies_to' entries must be strings")))
            .collect::<Result<_, _>>()?,
        _ => return Err(format!("{at}: 'applies_to' must be a non-empty list of tiers")),
    };
    let trigger = match m.get("trigger").filter(|v| !v.is_null()) {
        None => None,
        Some(t) => Some(t.as_str().ok_or_else(|| format!("{at}: 'trigger' must be a string"))?.to_owned()),
    };
    Ok(PackLora { name, file, scale, applies_to, trigger, base: base.to_path_buf() })
}

/// The genre's entries, less the world's `exclude`, plus its `add`.
pub fn merge_world(genre: Vec<PackLora>, world: WorldLoras) -> Result<Vec<PackLora>, String> {
    let mut list: Vec<PackLora> = genre.into_iter().filter(|l| !world.exclude.contains(&l.name)).collect();
    for (i, a) in world.add.into_iter().enumerate() {
        if list.iter().any(|l| l.name == a.name) {
            return Err(format!("loras.add[{i}]: '{}' is still inherited from the genre; exclude it first", a.name));
        }
        list.push(a);
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_match_as_the_reference_names_them() {
        let e = |t: &[&str]| PackLora {
            name: "x".into(),
            file: "x.safetensors".into(),
            scale: 1.0,
            applies_to: t.iter().map(|s| s.to_string()).collect(),
            trigger: None,
            base: PathBuf::new(),
        };
        assert!(e(&["scene"]).applies("scene_illustration"));
        assert!(e(&["portrait"]).applies("portrait_square"));
        assert!(!e(&["portrait_square"]).applies("portrait"));
        assert!(e(&["all"]).applies("cartography"));
        assert!(!e(&["tactical_map", "encounter"]).applies("landscape"));
    }
}
