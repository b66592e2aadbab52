//! Where Z-Image's weights are (zimage.md §2): the diffusers repos, ComfyUI
//! single files, or GGUF; each role (transformer, text encoder, VAE,
//! tokenizer) from the first folder that has it, and every file checked
//! before a tensor is read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::prompt::Fidelity;
use crate::render::flux::files::{inspect_safetensors, ModelFileError};

/// Tensors in a safetensors file set or one GGUF file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Weights {
    /// diffusers / transformers names; `config` is its `config.json`.
    Diffusers {
        config: PathBuf,
        shards: Vec<PathBuf>,
    },
    /// One safetensors file with ComfyUI's (the original) names.
    Single(PathBuf),
    Gguf(PathBuf),
}

impl Weights {
    pub fn format(&self) -> &'static str {
        match self {
            Weights::Gguf(_) => "gguf",
            _ => "safetensors",
        }
    }

    fn paths(&self) -> Vec<&Path> {
        match self {
            Weights::Diffusers { shards, .. } => shards.iter().map(PathBuf::as_path).collect(),
            Weights::Single(p) | Weights::Gguf(p) => vec![p.as_path()],
        }
    }
}

/// The autoencoder: diffusers names with a config, or BFL's `ae.safetensors`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vae {
    Diffusers { config: PathBuf, weights: PathBuf },
    Bfl(PathBuf),
}

impl Vae {
    pub(crate) fn path(&self) -> &Path {
        match self {
            Vae::Diffusers { weights, .. } => weights,
            Vae::Bfl(p) => p,
        }
    }
}

/// Every file one fidelity needs, all known to exist.
#[derive(Clone, Debug)]
pub struct ZImageFiles {
    pub fidelity: Fidelity,
    pub transformer: Weights,
    pub text_encoder: Weights,
    pub vae: Vae,
    pub tokenizer: PathBuf,
    /// The scheduler's `shift` (3.0 when no config says).
    pub shift: f64,
}

impl ZImageFiles {
    /// The model name in replies, PNG metadata and the cache key: the
    /// fidelity's, or a GGUF transformer's file stem.
    pub fn model_name(&self) -> String {
        match &self.transformer {
            Weights::Gguf(p) => p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
            _ => self.fidelity.model_name().to_owned(),
        }
    }

    /// Checks every file: shards exist, safetensors headers are valid and
    /// their data fits, GGUF tensors end inside the file.
    pub(crate) fn check(&self) -> Result<(), ModelFileError> {
        for w in [&self.transformer, &self.text_encoder] {
            for p in w.paths() {
                match w {
                    Weights::Gguf(_) => check_gguf(p)?,
                    _ => {
                        inspect_safetensors(p)?;
                    }
                }
            }
        }
        inspect_safetensors(self.vae.path())?;
        if !self.tokenizer.is_file() {
            return Err(ModelFileError::Missing {
                dir: self.tokenizer.parent().unwrap_or(Path::new("")).to_path_buf(),
                missing: vec!["tokenizer.json".into()],
            });
        }
        Ok(())
    }
}

/// A GGUF header parses and every tensor ends inside the file.
pub(crate) fn check_gguf(path: &Path) -> Result<(), ModelFileError> {
    use candle_core::quantized::gguf_file;
    let io = |source| ModelFileError::Io { path: path.to_path_buf(), source };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let content = gguf_file::Content::read(&mut f).map_err(|e| ModelFileError::Invalid {
        path: path.to_path_buf(),
        problem: format!("not a readable GGUF file: {}", e.to_string().lines().next().unwrap_or("")),
    })?;
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let info = &content.tensor_infos[name];
        let size = (info.shape.elem_count() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size()) as u64;
        let end = content.tensor_data_offset.saturating_add(info.offset).saturating_add(size);
        if end > len {
            return Err(ModelFileError::Invalid {
                path: path.to_path_buf(),
                problem: format!("truncated GGUF: tensor '{name}' ends at byte {end}, the file has {len}"),
            });
        }
    }
    Ok(())
}

/// The folders to search, in order (§2.4).
pub(crate) fn candidates(dir: Option<&Path>, fidelity: Fidelity, hub: Option<&Path>) -> Vec<(PathBuf, bool)> {
    let mut out = Vec::new();
    if let Some(d) = dir {
        out.push((d.to_path_buf(), true));
        let sub = match fidelity {
            Fidelity::Turbo => "Z-Image-Turbo",
            Fidelity::HighFidelity => "Z-Image",
        };
        out.push((d.join(sub), true));
    }
    if let Some(hub) = hub {
        if let Some(s) = crate::hub::hub_snapshot(hub, fidelity.repo()) {
            out.push((s, false));
        }
        if fidelity == Fidelity::Turbo {
            if let Some(s) = crate::hub::hub_snapshot(hub, "Comfy-Org/z_image_turbo") {
                out.push((s, false));
            }
        }
    }
    out
}

/// Finds every role for `fidelity`. Ok(None) when a role is missing
/// everywhere (the caller names what was searched); Err for a broken
/// folder (a missing shard, a bad index).
pub(crate) fn find(
    dirs: &[(PathBuf, bool)],
    fidelity: Fidelity,
    quantized: bool,
    hub: Option<&Path>,
) -> Result<Result<ZImageFiles, Vec<&'static str>>, ModelFileError> {
    let dirs: Vec<&(PathBuf, bool)> = dirs.iter().filter(|(d, _)| d.is_dir()).collect();
    let mut transformer = None;
    let mut text_encoder = None;
    let mut vae = None;
    let mut tokenizer = None;
    let mut shift = None;
    for (d, explicit) in &dirs {
        if transformer.is_none() {
            transformer = find_transformer(d, fidelity, quantized, *explicit)?;
        }
        if text_encoder.is_none() {
            text_encoder = find_text_encoder(d, quantized, *explicit)?;
        }
        if vae.is_none() {
            vae = find_vae(d);
        }
        if tokenizer.is_none() {
            tokenizer =
                [d.join("tokenizer/tokenizer.json"), d.join("tokenizer.json")].into_iter().find(|p| p.is_file());
        }
        if shift.is_none() {
            shift = read_shift(d)?;
        }
    }
    if tokenizer.is_none() {
        tokenizer = hub
            .and_then(|h| crate::hub::hub_snapshot(h, "Qwen/Qwen3-4B"))
            .map(|s| s.join("tokenizer.json"))
            .filter(|p| p.is_file());
    }
    match (transformer, text_encoder, vae, tokenizer) {
        (Some(transformer), Some(text_encoder), Some(vae), Some(tokenizer)) => {
            Ok(Ok(ZImageFiles { fidelity, transformer, text_encoder, vae, tokenizer, shift: shift.unwrap_or(3.0) }))
        }
        (t, e, v, k) => {
            let mut missing = Vec::new();
            for (absent, role) in [
                (t.is_none(), "transformer"),
                (e.is_none(), "text encoder"),
                (v.is_none(), "VAE"),
                (k.is_none(), "tokenizer"),
            ] {
                if absent {
                    missing.push(role);
                }
            }
            Ok(Err(missing))
        }
    }
}

fn first_file(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
}

fn find_transformer(
    d: &Path,
    fidelity: Fidelity,
    quantized: bool,
    explicit: bool,
) -> Result<Option<Weights>, ModelFileError> {
    let diffusers = if d.join("transformer/config.json").is_file() {
        Some(Weights::Diffusers {
            config: d.join("transformer/config.json"),
            shards: shards(d, "transformer", "diffusion_pytorch_model")?,
        })
    } else {
        None
    };
    let single_name = match fidelity {
        Fidelity::Turbo => "z_image_turbo_bf16.safetensors",
        Fidelity::HighFidelity => "z_image_bf16.safetensors",
    };
    let single =
        first_file(&[d.to_path_buf(), d.join("diffusion_models"), d.join("split_files/diffusion_models")], single_name)
            .map(Weights::Single);
    let gguf = if explicit {
        let dirs = [d.to_path_buf(), d.join("transformer"), d.join("diffusion_models"), d.join("unet")];
        gguf_matching(&dirs, |n| is_zimage_gguf(n, fidelity)).map(Weights::Gguf)
    } else {
        None
    };
    Ok(if quantized { gguf.or(diffusers).or(single) } else { diffusers.or(single).or(gguf) })
}

fn find_text_encoder(d: &Path, quantized: bool, explicit: bool) -> Result<Option<Weights>, ModelFileError> {
    let diffusers = if d.join("text_encoder/config.json").is_file() {
        Some(Weights::Diffusers {
            config: d.join("text_encoder/config.json"),
            shards: shards(d, "text_encoder", "model")?,
        })
    } else {
        None
    };
    let single = first_file(
        &[d.to_path_buf(), d.join("text_encoders"), d.join("split_files/text_encoders")],
        "qwen_3_4b.safetensors",
    )
    .map(Weights::Single);
    let gguf = if explicit {
        let dirs = [d.to_path_buf(), d.join("text_encoder"), d.join("text_encoders")];
        gguf_matching(&dirs, |n| n.starts_with("qwen3-4b") || n.starts_with("qwen3_4b") || n.starts_with("qwen_3_4b"))
            .map(Weights::Gguf)
    } else {
        None
    };
    Ok(if quantized { gguf.or(diffusers).or(single) } else { diffusers.or(single).or(gguf) })
}

fn find_vae(d: &Path) -> Option<Vae> {
    let (config, weights) = (d.join("vae/config.json"), d.join("vae/diffusion_pytorch_model.safetensors"));
    if config.is_file() && weights.is_file() {
        return Some(Vae::Diffusers { config, weights });
    }
    first_file(&[d.to_path_buf(), d.join("vae"), d.join("split_files/vae")], "ae.safetensors").map(Vae::Bfl)
}

/// `z[-_]image[-_]turbo*.gguf` for turbo, `z[-_]image*.gguf` without
/// `turbo` for the base model; `name` is lower case.
fn is_zimage_gguf(name: &str, fidelity: Fidelity) -> bool {
    let rest = name.strip_prefix('z').and_then(|r| r.strip_prefix(['-', '_'])).and_then(|r| r.strip_prefix("image"));
    match (rest, fidelity) {
        (Some(r), Fidelity::Turbo) => r.strip_prefix(['-', '_']).is_some_and(|r| r.starts_with("turbo")),
        (Some(_), Fidelity::HighFidelity) => !name.contains("turbo"),
        (None, _) => false,
    }
}

/// The first `.gguf` (by name, per folder) whose lower-case name matches.
fn gguf_matching(dirs: &[PathBuf], matches: impl Fn(&str) -> bool) -> Option<PathBuf> {
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else { continue };
        let mut names: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let n = p.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
                p.is_file() && n.ends_with(".gguf") && matches(&n)
            })
            .collect();
        names.sort();
        if let Some(p) = names.into_iter().next() {
            return Some(p);
        }
    }
    None
}

/// `<sub>/<stem>.safetensors`, or the shards its index names (all present).
fn shards(root: &Path, sub: &str, stem: &str) -> Result<Vec<PathBuf>, ModelFileError> {
    let dir = root.join(sub);
    let single = dir.join(format!("{stem}.safetensors"));
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index_name = format!("{stem}.safetensors.index.json");
    let index = dir.join(&index_name);
    let text = std::fs::read_to_string(&index).map_err(|_| ModelFileError::Missing {
        dir: root.to_path_buf(),
        missing: vec![format!("{sub}/{stem}.safetensors (or {index_name} with its shards)")],
    })?;
    #[derive(Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let idx: Index = serde_json::from_str(&text).map_err(|source| ModelFileError::Json { path: index, source })?;
    let mut files: Vec<String> = idx.weight_map.into_values().collect();
    files.sort();
    files.dedup();
    let mut missing = Vec::new();
    let mut paths = Vec::new();
    for f in files {
        // Shard names are plain file names inside the folder.
        if f.contains('/') || f.contains('\\') || f.starts_with('.') {
            return Err(ModelFileError::Invalid {
                path: dir.join(&index_name),
                problem: format!("names a shard outside its folder: '{f}'"),
            });
        }
        let p = dir.join(&f);
        if p.is_file() {
            paths.push(p);
        } else {
            missing.push(format!("{sub}/{f}, named by {index_name}"));
        }
    }
    if !missing.is_empty() {
        return Err(ModelFileError::Missing { dir: root.to_path_buf(), missing });
    }
    Ok(paths)
}

fn read_shift(d: &Path) -> Result<Option<f64>, ModelFileError> {
    let path = d.join("scheduler/scheduler_config.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
    #[derive(Deserialize)]
    struct Sched {
        shift: Option<f64>,
        use_dynamic_shifting: Option<bool>,
    }
    let s: Sched = serde_json::from_str(&text).map_err(|source| ModelFileError::Json { path: path.clone(), source })?;
    if s.use_dynamic_shifting == Some(true) {
        return Err(ModelFileError::Invalid {
            path,
            problem: "use_dynamic_shifting true is not supported (Z-Image uses a fixed shift)".into(),
        });
    }
    match s.shift {
        Some(v) if !(v.is_finite() && v > 0.0) => {
            Err(ModelFileError::Invalid { path, problem: format!("shift must be a positive number, got {v}") })
        }
        other => Ok(Some(other.unwrap_or(3.0))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_names() {
        assert!(is_zimage_gguf("z_image_turbo-q8_0.gguf", Fidelity::Turbo));
        assert!(is_zimage_gguf("z-image-turbo.gguf", Fidelity::Turbo));
        assert!(!is_zimage_gguf("z_image-q8_0.gguf", Fidelity::Turbo));
        assert!(is_zimage_gguf("z_image-q8_0.gguf", Fidelity::HighFidelity));
        assert!(!is_zimage_gguf("z_image_turbo-q8_0.gguf", Fidelity::HighFidelity));
        assert!(!is_zimage_gguf("flux1-schnell.gguf", Fidelity::Turbo));
    }
}
