//! Where Flux weights live and what shape they claim to have.
//!
//! sqm reads the layout of the official Hugging Face repos
//! (`black-forest-labs/FLUX.1-schnell`, `black-forest-labs/FLUX.1-dev`),
//! whether the folder is a plain directory or a hub-cache snapshot:
//!
//! ```text
//! flux1-<variant>.safetensors      the transformer (original BFL tensor names)
//! flux1-<variant>*.gguf            optional quantized transformer
//! ae.safetensors                   the autoencoder
//! transformer/config.json          transformer shape (optional; defaults per variant)
//! vae/config.json                  autoencoder shape (optional)
//! text_encoder/config.json         CLIP-L text model
//! text_encoder/model.safetensors
//! tokenizer/tokenizer.json         CLIP tokenizer (or from openai/clip-vit-large-patch14)
//! text_encoder_2/config.json       T5-XXL encoder
//! text_encoder_2/model*.safetensors  (one file or shards with an index)
//! tokenizer_2/tokenizer.json       T5 tokenizer
//! ```
//!
//! Every file is checked before anything is loaded, so a missing or
//! truncated file is reported by name instead of as a tensor error.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_transformers::models::clip::text_model::{Activation, ClipTextConfig};
use candle_transformers::models::flux::{autoencoder, model};
use candle_transformers::models::t5;
use serde::Deserialize;

use crate::prompt::Variant;

/// The hub repo of each variant.
pub(crate) fn hub_repo(variant: Variant) -> &'static str {
    match variant {
        Variant::Schnell => "black-forest-labs/FLUX.1-schnell",
        Variant::Dev => "black-forest-labs/FLUX.1-dev",
    }
}

/// Where the CLIP tokenizer comes from when the Flux repo lacks a
/// `tokenizer/tokenizer.json` (the official repos ship only vocab/merges).
pub(crate) const CLIP_TOKENIZER_REPO: &str = "openai/clip-vit-large-patch14";

/// The transformer weights: full precision or quantized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransformerFile {
    Safetensors(PathBuf),
    Gguf(PathBuf),
}

impl TransformerFile {
    pub(crate) fn path(&self) -> &Path {
        match self {
            TransformerFile::Safetensors(p) | TransformerFile::Gguf(p) => p,
        }
    }
}

/// Every file one variant needs, all known to exist.
#[derive(Clone, Debug)]
pub struct FluxFiles {
    pub variant: Variant,
    pub root: PathBuf,
    pub transformer: TransformerFile,
    pub transformer_config: Option<PathBuf>,
    pub ae: PathBuf,
    pub vae_config: Option<PathBuf>,
    pub clip_config: PathBuf,
    pub clip_weights: PathBuf,
    pub clip_tokenizer: PathBuf,
    pub t5_config: PathBuf,
    pub t5_weights: Vec<PathBuf>,
    pub t5_tokenizer: PathBuf,
}

impl FluxFiles {
    /// A short model name for PNG metadata and replies.
    pub fn model_name(&self) -> String {
        match &self.transformer {
            TransformerFile::Safetensors(_) => format!("flux1-{}", self.variant.name()),
            TransformerFile::Gguf(p) => {
                p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "flux1-gguf".into())
            }
        }
    }
}

/// A model folder or file that cannot be used, named.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ModelFileError {
    #[error("{} (missing {})", .dir.display(), .missing.join(", "))]
    Missing { dir: PathBuf, missing: Vec<String> },
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", .path.display())]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{}: {problem}", .path.display())]
    Invalid { path: PathBuf, problem: String },
}

fn invalid(path: &Path, problem: impl Into<String>) -> ModelFileError {
    ModelFileError::Invalid { path: path.to_path_buf(), problem: problem.into() }
}

/// Finds the files of `variant` in `dir`. `quantized` prefers a GGUF
/// transformer when both kinds are present. The error lists what is missing.
pub(crate) fn find(
    dir: &Path,
    variant: Variant,
    quantized: bool,
    hub: Option<&Path>,
) -> Result<FluxFiles, ModelFileError> {
    let v = variant.name();
    let mut missing = Vec::new();
    let safetensors = Some(dir.join(format!("flux1-{v}.safetensors"))).filter(|p| p.is_file());
    let gguf = gguf_in(dir, v);
    let transformer = match (safetensors, gguf, quantized) {
        (_, Some(g), true) | (None, Some(g), false) => Some(TransformerFile::Gguf(g)),
        (Some(s), _, _) => Some(TransformerFile::Safetensors(s)),
        (None, None, _) => {
            missing.push(format!("flux1-{v}.safetensors (or flux1-{v}*.gguf)"));
            None
        }
    };
    let mut need = |rel: &str| {
        let p = dir.join(rel);
        if p.is_file() {
            Some(p)
        } else {
            missing.push(rel.to_owned());
            None
        }
    };
    let ae = need("ae.safetensors");
    let clip_config = need("text_encoder/config.json");
    let clip_weights = need("text_encoder/model.safetensors");
    let t5_config = need("text_encoder_2/config.json");
    let t5_tokenizer = need("tokenizer_2/tokenizer.json");
    let clip_tokenizer = Some(dir.join("tokenizer/tokenizer.json")).filter(|p| p.is_file()).or_else(|| {
        hub.and_then(|c| crate::hub::hub_snapshot(c, CLIP_TOKENIZER_REPO))
            .map(|d| d.join("tokenizer.json"))
            .filter(|p| p.is_file())
    });
    if clip_tokenizer.is_none() {
        missing.push(format!("tokenizer/tokenizer.json (or {CLIP_TOKENIZER_REPO} in the hub cache)"));
    }
    let t5_weights = match t5_shards(&dir.join("text_encoder_2")) {
        Ok(w) => Some(w),
        Err(ModelFileError::Missing { missing: m, .. }) => {
            missing.extend(m);
            None
        }
        Err(e) => {
            missing.push(e.to_string());
            None
        }
    };
    match (transformer, ae, clip_config, clip_weights, clip_tokenizer, t5_config, t5_weights, t5_tokenizer) {
        (
            Some(transformer),
            Some(ae),
            Some(clip_config),
            Some(clip_weights),
            Some(clip_tokenizer),
            Some(t5_config),
            Some(t5_weights),
            Some(t5_tokenizer),
        ) => Ok(FluxFiles {
            variant,
            root: dir.to_path_buf(),
            transformer,
            transformer_config: Some(dir.join("transformer/config.json")).filter(|p| p.is_file()),
            ae,
            vae_config: Some(dir.join("vae/config.json")).filter(|p| p.is_file()),
            clip_config,
            clip_weights,
            clip_tokenizer,
            t5_config,
            t5_weights,
            t5_tokenizer,
        }),
        _ => Err(ModelFileError::Missing { dir: dir.to_path_buf(), missing }),
    }
}

fn gguf_in(dir: &Path, v: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name.starts_with(&format!("flux1-{v}")) && name.ends_with(".gguf") && p.is_file()
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// `model.safetensors`, or the shards named by `model.safetensors.index.json`.
fn t5_shards(dir: &Path) -> Result<Vec<PathBuf>, ModelFileError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).map_err(|_| ModelFileError::Missing {
        dir: dir.to_path_buf(),
        missing: vec!["text_encoder_2/model.safetensors (or model.safetensors.index.json with its shards)".into()],
    })?;
    #[derive(Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let idx: Index = serde_json::from_str(&text).map_err(|source| ModelFileError::Json { path: index, source })?;
    let mut files: Vec<String> = idx.weight_map.into_values().collect();
    files.sort();
    files.dedup();
    let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
    let absent: Vec<&String> = files.iter().zip(&paths).filter(|(_, p)| !p.is_file()).map(|(f, _)| f).collect();
    if !absent.is_empty() {
        let missing = absent.iter().map(|f| format!("text_encoder_2/{f} (named by model.safetensors.index.json)"));
        return Err(ModelFileError::Missing { dir: dir.to_path_buf(), missing: missing.collect() });
    }
    Ok(paths)
}

/// What a safetensors header says about a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SafetensorsInfo {
    /// Number of scalar elements over all tensors.
    pub elements: u64,
    /// Of those, the elements of tensors named `decoder.…` (an
    /// autoencoder's decoder half, which is all sqm loads of it).
    pub decoder_elements: u64,
    pub tensors: usize,
}

/// Reads and checks a safetensors header: valid JSON, and the data it
/// describes fits in the file. Truncated downloads fail here, by name.
pub(crate) fn inspect_safetensors(path: &Path) -> Result<SafetensorsInfo, ModelFileError> {
    let io = |source| ModelFileError::Io { path: path.to_path_buf(), source };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|_| invalid(path, "not a safetensors file (shorter than its 8-byte header)"))?;
    let n = u64::from_le_bytes(n);
    if n > 100 << 20 || 8 + n > len {
        return Err(invalid(path, format!("not a safetensors file or truncated (header of {n} bytes, file of {len})")));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(io)?;
    #[derive(Deserialize)]
    struct Entry {
        shape: Vec<u64>,
        data_offsets: [u64; 2],
    }
    let map: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| invalid(path, format!("invalid safetensors header: {e}")))?;
    let mut elements = 0u64;
    let mut decoder_elements = 0u64;
    let mut end = 0u64;
    let mut tensors = 0;
    for (k, v) in map {
        if k == "__metadata__" {
            continue;
        }
        let e: Entry =
            serde_json::from_value(v).map_err(|e| invalid(path, format!("tensor '{k}' has a bad entry: {e}")))?;
        let n = e.shape.iter().product::<u64>();
        elements += n;
        if k.starts_with("decoder.") {
            decoder_elements += n;
        }
        end = end.max(e.data_offsets[1]);
        tensors += 1;
    }
    if 8 + n + end > len {
        return Err(invalid(
            path,
            format!("truncated: the header describes {end} bytes of tensor data, the file holds {}", len - 8 - n),
        ));
    }
    Ok(SafetensorsInfo { elements, decoder_elements, tensors })
}

/// The transformer's shape: `transformer/config.json` (diffusers names)
/// when present, else the published shape of the variant.
pub(crate) fn transformer_config(files: &FluxFiles) -> Result<model::Config, ModelFileError> {
    let mut cfg = match files.variant {
        Variant::Schnell => model::Config::schnell(),
        Variant::Dev => model::Config::dev(),
    };
    let Some(path) = &files.transformer_config else { return Ok(cfg) };
    #[derive(Deserialize)]
    struct Diffusers {
        in_channels: Option<usize>,
        num_layers: Option<usize>,
        num_single_layers: Option<usize>,
        attention_head_dim: Option<usize>,
        num_attention_heads: Option<usize>,
        joint_attention_dim: Option<usize>,
        pooled_projection_dim: Option<usize>,
        guidance_embeds: Option<bool>,
        axes_dims_rope: Option<Vec<usize>>,
    }
    let d: Diffusers = read_json(path)?;
    cfg.in_channels = d.in_channels.unwrap_or(cfg.in_channels);
    cfg.depth = d.num_layers.unwrap_or(cfg.depth);
    cfg.depth_single_blocks = d.num_single_layers.unwrap_or(cfg.depth_single_blocks);
    cfg.num_heads = d.num_attention_heads.unwrap_or(cfg.num_heads);
    let head_dim = d.attention_head_dim.unwrap_or(cfg.hidden_size / cfg.num_heads.max(1));
    cfg.hidden_size = cfg.num_heads * head_dim;
    cfg.context_in_dim = d.joint_attention_dim.unwrap_or(cfg.context_in_dim);
    cfg.vec_in_dim = d.pooled_projection_dim.unwrap_or(cfg.vec_in_dim);
    cfg.guidance_embed = d.guidance_embeds.unwrap_or(cfg.guidance_embed);
    cfg.axes_dim = d.axes_dims_rope.unwrap_or(cfg.axes_dim);
    if cfg.axes_dim.iter().sum::<usize>() != head_dim {
        return Err(invalid(
            path,
            format!("axes_dims_rope {:?} must add up to attention_head_dim {head_dim}", cfg.axes_dim),
        ));
    }
    Ok(cfg)
}

/// The autoencoder's shape: `vae/config.json` when present, else Flux's.
pub(crate) fn vae_config(files: &FluxFiles) -> Result<autoencoder::Config, ModelFileError> {
    let mut cfg = autoencoder::Config::schnell();
    let Some(path) = &files.vae_config else { return Ok(cfg) };
    #[derive(Deserialize)]
    struct Diffusers {
        block_out_channels: Option<Vec<usize>>,
        layers_per_block: Option<usize>,
        latent_channels: Option<usize>,
        in_channels: Option<usize>,
        out_channels: Option<usize>,
        scaling_factor: Option<f64>,
        shift_factor: Option<f64>,
    }
    let d: Diffusers = read_json(path)?;
    if let Some(blocks) = d.block_out_channels {
        let ch = *blocks.first().ok_or_else(|| invalid(path, "block_out_channels is empty"))?;
        if ch == 0 || blocks.iter().any(|b| b % ch != 0) {
            return Err(invalid(path, format!("block_out_channels {blocks:?} must be multiples of the first")));
        }
        if blocks.len() != 4 {
            return Err(invalid(
                path,
                format!("block_out_channels has {} levels; Flux latents need 4 (8x downsampling)", blocks.len()),
            ));
        }
        cfg.ch = ch;
        cfg.ch_mult = blocks.iter().map(|b| b / ch).collect();
    }
    cfg.num_res_blocks = d.layers_per_block.unwrap_or(cfg.num_res_blocks);
    cfg.z_channels = d.latent_channels.unwrap_or(cfg.z_channels);
    cfg.in_channels = d.in_channels.unwrap_or(cfg.in_channels);
    cfg.out_ch = d.out_channels.unwrap_or(cfg.out_ch);
    cfg.scale_factor = d.scaling_factor.unwrap_or(cfg.scale_factor);
    cfg.shift_factor = d.shift_factor.unwrap_or(cfg.shift_factor);
    if !cfg.ch.is_multiple_of(32) {
        return Err(invalid(path, format!("the autoencoder's channels ({}) must be a multiple of 32", cfg.ch)));
    }
    Ok(cfg)
}

/// CLIP-L's text config (transformers' `CLIPTextConfig` names).
pub(crate) fn clip_config(files: &FluxFiles) -> Result<ClipTextConfig, ModelFileError> {
    #[derive(Deserialize)]
    struct Hf {
        vocab_size: usize,
        hidden_size: usize,
        intermediate_size: usize,
        max_position_embeddings: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        #[serde(default)]
        projection_dim: usize,
        #[serde(default = "quick_gelu")]
        hidden_act: String,
    }
    fn quick_gelu() -> String {
        "quick_gelu".into()
    }
    let h: Hf = read_json(&files.clip_config)?;
    if h.hidden_act != "quick_gelu" {
        return Err(invalid(
            &files.clip_config,
            format!("hidden_act '{}' is not supported (CLIP-L uses quick_gelu)", h.hidden_act),
        ));
    }
    Ok(ClipTextConfig {
        vocab_size: h.vocab_size,
        embed_dim: h.hidden_size,
        activation: Activation::QuickGelu,
        intermediate_size: h.intermediate_size,
        max_position_embeddings: h.max_position_embeddings,
        pad_with: None,
        num_hidden_layers: h.num_hidden_layers,
        num_attention_heads: h.num_attention_heads,
        projection_dim: h.projection_dim,
    })
}

/// T5's config (transformers' `T5Config`).
pub(crate) fn t5_config(files: &FluxFiles) -> Result<t5::Config, ModelFileError> {
    read_json(&files.t5_config)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelFileError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ModelFileError::Io { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text).map_err(|source| ModelFileError::Json { path: path.to_path_buf(), source })
}
