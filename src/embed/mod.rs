//! Sentence embeddings: all-MiniLM-L6-v2 (a 6-layer BERT) on candle, mean
//! pooled over the attention mask and L2-normalised, as the reference
//! sentence-transformers pipeline does (embeddings.md).

mod bert;
mod linear;
mod simd;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

/// The model's name as reported on the wire.
pub(crate) const MODEL_NAME: &str = "all-MiniLM-L6-v2";
/// The Hugging Face hub repository.
pub(crate) const HUB_REPO: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// Output dimension.
pub const DIM: usize = 384;
/// Token limit, `[CLS]` and `[SEP]` included.
pub(crate) const MAX_TOKENS: usize = 256;

const FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("{MODEL_NAME} not found: searched {}; run scripts/fetch-embed-model (it installs into the first place searched after $SQM_EMBED_MODEL) or pass --embed-model DIR", .searched.join(", "))]
    NotFound { searched: Vec<String> },
    #[error("cannot load {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("tokenizing failed: {0}")]
    Tokenize(String),
    #[error("inference failed: {0}")]
    Inference(String),
}

fn has_files(dir: &Path) -> bool {
    FILES.iter().all(|f| dir.join(f).is_file())
}

pub use crate::hub::{hub_cache, hub_snapshot};

/// The model's well-known home, where `scripts/fetch-embed-model` installs
/// it: `$XDG_DATA_HOME/sqm/models/all-MiniLM-L6-v2` (default
/// `~/.local/share/sqm/models/all-MiniLM-L6-v2`).
pub(crate) fn model_home() -> Option<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()).map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".local/share"))
    })?;
    Some(data.join("sqm/models").join(MODEL_NAME))
}

/// The checkout-local copy, `.models/all-MiniLM-L6-v2` under the current
/// folder (where `cargo run` runs, in a checkout): a fallback.
pub(crate) fn repo_local() -> PathBuf {
    Path::new(".models").join(MODEL_NAME)
}

/// Finds the model folder: `explicit` (`--embed-model`), then
/// `$SQM_EMBED_MODEL`, then [`model_home`], then [`repo_local`] (relative to
/// the current folder), then the
/// Hugging Face hub cache.
pub(crate) fn locate(explicit: Option<&Path>) -> Result<PathBuf, EmbedError> {
    let env = std::env::var_os("SQM_EMBED_MODEL").filter(|v| !v.is_empty()).map(PathBuf::from);
    let homes: Vec<PathBuf> = model_home().into_iter().chain([repo_local()]).collect();
    locate_with(explicit, env.as_deref(), &homes, hub_cache().as_deref())
}

/// [`locate`] with the environment passed in (`homes`: the well-known
/// folders, in order).
pub fn locate_with(
    explicit: Option<&Path>,
    env: Option<&Path>,
    homes: &[PathBuf],
    hub: Option<&Path>,
) -> Result<PathBuf, EmbedError> {
    let mut searched = Vec::new();
    if let Some(dir) = explicit {
        if has_files(dir) {
            return Ok(dir.to_path_buf());
        }
        searched.push(format!("--embed-model {} (missing {})", dir.display(), missing(dir)));
    }
    match env {
        Some(dir) => {
            if has_files(dir) {
                return Ok(dir.to_path_buf());
            }
            searched.push(format!("$SQM_EMBED_MODEL={} (missing {})", dir.display(), missing(dir)));
        }
        None => searched.push("$SQM_EMBED_MODEL (unset)".into()),
    }
    for dir in homes {
        if has_files(dir) {
            return Ok(dir.clone());
        }
        searched.push(dir.display().to_string());
    }
    match hub {
        Some(cache) => {
            if let Some(snap) = hub_snapshot(cache, HUB_REPO).filter(|d| has_files(d)) {
                return Ok(snap);
            }
            searched.push(format!("{}/models--{}", cache.display(), HUB_REPO.replace('/', "--")));
        }
        None => searched.push("the Hugging Face hub cache (no HOME)".into()),
    }
    Err(EmbedError::NotFound { searched })
}

/// [`locate`], then, unless `HF_HUB_OFFLINE` is set, a download of the
/// three files from the hub into the hub cache. The error names every place
/// searched and why the download failed.
pub(crate) fn resolve(explicit: Option<&Path>) -> Result<PathBuf, EmbedError> {
    let searched = match locate(explicit) {
        Ok(dir) => return Ok(dir),
        Err(EmbedError::NotFound { searched }) => searched,
        Err(other) => return Err(other),
    };
    if crate::hub::offline() {
        let mut searched = searched;
        searched.push("hub download (skipped: HF_HUB_OFFLINE is set)".into());
        return Err(EmbedError::NotFound { searched });
    }
    match download() {
        Ok(dir) => Ok(dir),
        Err(e) => {
            let mut searched = searched;
            searched.push(format!("hub download of {HUB_REPO} ({e})"));
            Err(EmbedError::NotFound { searched })
        }
    }
}

fn download() -> Result<PathBuf, hf_hub::api::sync::ApiError> {
    let api = hf_hub::api::sync::ApiBuilder::from_env().with_progress(false).build()?;
    let repo = api.model(HUB_REPO.to_owned());
    let mut dir = PathBuf::new();
    for f in FILES {
        let path = repo.get(f)?;
        dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    }
    tracing::info!(repo = HUB_REPO, "downloaded the embedding model into the hub cache");
    Ok(dir)
}

fn missing(dir: &Path) -> String {
    FILES.iter().filter(|f| !dir.join(f).is_file()).copied().collect::<Vec<_>>().join(", ")
}

/// Which engine runs the encoder.
enum Engine {
    /// sqm's own CPU encoder (bf16 products, no padding; [`bert`]).
    Cpu(Box<bert::Bert>),
    /// candle's BERT, on any candle device, in f32.
    Candle(Box<BertModel>, Device),
}

/// How [`MiniLm::load_with`] runs the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    /// sqm's own CPU encoder on `threads` threads; `portable` keeps it to
    /// the build target's instructions (no AVX-512), for comparison.
    Own { threads: usize, portable: bool },
    /// candle's f32 BERT on the device given (the engine sqm used first;
    /// GPUs use it).
    Candle,
}

impl EngineChoice {
    /// The default for `device`: candle on a GPU; on the CPU sqm's own on
    /// every core, unless `SQM_EMBED_ENGINE=candle` (candle's) or
    /// `SQM_EMBED_ISA=portable` (no AVX-512).
    pub fn for_device(device: &Device) -> EngineChoice {
        if !device.is_cpu() || std::env::var("SQM_EMBED_ENGINE").is_ok_and(|v| v == "candle") {
            return EngineChoice::Candle;
        }
        EngineChoice::Own {
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            portable: std::env::var("SQM_EMBED_ISA").is_ok_and(|v| v == "portable"),
        }
    }
}

/// The loaded model and tokenizer.
pub struct MiniLm {
    engine: Engine,
    tokenizer: Tokenizer,
}

impl MiniLm {
    /// Loads from a folder holding `config.json`, `tokenizer.json` and
    /// `model.safetensors`. Errors name the file (and tensor) at fault. On
    /// the CPU this is sqm's own encoder; see [`EngineChoice::for_device`].
    pub fn load(dir: &Path, device: Device) -> Result<MiniLm, EmbedError> {
        let choice = EngineChoice::for_device(&device);
        Self::load_with(dir, device, choice)
    }

    /// [`MiniLm::load`] with the engine chosen (`Own` needs the CPU device).
    pub fn load_with(dir: &Path, device: Device, engine: EngineChoice) -> Result<MiniLm, EmbedError> {
        let err = |f: &str, message: String| EmbedError::Load { path: dir.join(f), message };
        let config_text =
            std::fs::read_to_string(dir.join("config.json")).map_err(|e| err("config.json", e.to_string()))?;
        let mut tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| err("tokenizer.json", e.to_string()))?;
        // The shipped tokenizer truncates at 128 with fixed padding; the
        // reference encodes up to 256 tokens and pads per batch.
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| err("tokenizer.json", e.to_string()))?;
        tokenizer.with_padding(None::<PaddingParams>);
        let weights = dir.join("model.safetensors");
        if let (EngineChoice::Own { threads, portable }, true) = (engine, device.is_cpu()) {
            let shape: bert::Shape =
                serde_json::from_str(&config_text).map_err(|e| err("config.json", e.to_string()))?;
            let tensors = read_tensors(&weights).map_err(|e| err("model.safetensors", e))?;
            let isa = if portable { simd::Isa::Portable } else { simd::isa() };
            let model =
                bert::Bert::new(shape, tensors, threads, isa).map_err(|e| err("model.safetensors", e.to_string()))?;
            if model.max_tokens() < MAX_TOKENS {
                return Err(err("config.json", format!("max_position_embeddings below {MAX_TOKENS}")));
            }
            return Ok(MiniLm { engine: Engine::Cpu(Box::new(model)), tokenizer });
        }
        let config: Config = serde_json::from_str(&config_text).map_err(|e| err("config.json", e.to_string()))?;
        // SAFETY: the file is memory-mapped read-only; sqm does not modify
        // model files while they are loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
            .map_err(|e| err("model.safetensors", e.to_string()))?;
        let model = BertModel::load(vb, &config).map_err(|e| err("model.safetensors", e.to_string()))?;
        Ok(MiniLm { engine: Engine::Candle(Box::new(model), device), tokenizer })
    }

    /// Embeds one text.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        Ok(self.embed_batch(&[text])?.remove(0))
    }

    /// Embeds many texts in one forward pass.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let tokenize = || {
            if texts.len() == 1 {
                self.tokenizer.encode(texts[0], true).map(|e| vec![e])
            } else {
                self.tokenizer.encode_batch(texts.to_vec(), true)
            }
        };
        let encodings = match &self.engine {
            Engine::Cpu(model) if texts.len() > 1 => model.install(tokenize),
            _ => tokenize(),
        }
        .map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        match &self.engine {
            Engine::Cpu(model) => {
                let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
                model.embed(&ids).map_err(|e| EmbedError::Inference(e.to_string()))
            }
            Engine::Candle(model, device) => candle_forward(model, device, &encodings),
        }
    }

    /// Token count of `text` after truncation, specials included.
    pub fn token_count(&self, text: &str) -> Result<usize, EmbedError> {
        let e = self.tokenizer.encode(text, true).map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        Ok(e.get_ids().len())
    }
}

/// Every tensor of a safetensors file as f32 with its shape (integer
/// tensors, such as `position_ids`, are skipped).
fn read_tensors(path: &Path) -> Result<bert::Tensors, String> {
    let all = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| e.to_string())?;
    let mut out = bert::Tensors::new();
    for (name, t) in all {
        if !t.dtype().is_float() {
            continue;
        }
        let data = t
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| format!("tensor {name}: {e}"))?;
        out.insert(name, (t.dims().to_vec(), data));
    }
    Ok(out)
}

/// candle's BERT over a padded batch, mean-pooled over the attention mask
/// and L2-normalised.
fn candle_forward(
    model: &BertModel,
    device: &Device,
    encodings: &[tokenizers::Encoding],
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let len = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0).max(1);
    let mut ids = Vec::with_capacity(encodings.len() * len);
    let mut mask = Vec::with_capacity(encodings.len() * len);
    for e in encodings {
        let n = e.get_ids().len();
        ids.extend_from_slice(e.get_ids());
        ids.extend(std::iter::repeat_n(0u32, len - n));
        mask.extend(std::iter::repeat_n(1u32, n));
        mask.extend(std::iter::repeat_n(0u32, len - n));
    }
    let infer = |e: candle_core::Error| EmbedError::Inference(e.to_string());
    let shape = (encodings.len(), len);
    let input_ids = Tensor::from_vec(ids, shape, device).map_err(infer)?;
    let attention = Tensor::from_vec(mask, shape, device).map_err(infer)?;
    let token_types = input_ids.zeros_like().map_err(infer)?;
    let hidden = model.forward(&input_ids, &token_types, Some(&attention)).map_err(infer)?;
    let mask_f = attention.to_dtype(DType::F32).map_err(infer)?.unsqueeze(2).map_err(infer)?;
    let summed = hidden.broadcast_mul(&mask_f).map_err(infer)?.sum(1).map_err(infer)?;
    let counts = mask_f.sum(1).map_err(infer)?.clamp(1e-9f32, f32::MAX).map_err(infer)?;
    let mean = summed.broadcast_div(&counts).map_err(infer)?;
    let norms = mean.sqr().map_err(infer)?.sum_keepdim(1).map_err(infer)?.sqrt().map_err(infer)?;
    let norms = norms.clamp(1e-12f32, f32::MAX).map_err(infer)?;
    let unit = mean.broadcast_div(&norms).map_err(infer)?;
    unit.to_device(&Device::Cpu).map_err(infer)?.to_vec2::<f32>().map_err(infer)
}

/// Something that turns text into a sentence embedding (the daemon's embed
/// lane holds one; tests use fakes).
pub trait Embedder: Send {
    fn model_name(&self) -> &str;
    fn embed(&mut self, text: &str) -> Result<Vec<f32>, EmbedError>;
    /// Several texts at once (the daemon coalesces queued requests); one
    /// result per text, in order.
    fn embed_many(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        texts.iter().map(|t| self.embed(t)).collect()
    }
}

impl Embedder for MiniLm {
    fn model_name(&self) -> &str {
        MODEL_NAME
    }

    fn embed(&mut self, text: &str) -> Result<Vec<f32>, EmbedError> {
        MiniLm::embed(self, text)
    }

    fn embed_many(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        MiniLm::embed_batch(self, texts)
    }
}

/// Cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-30)
}
