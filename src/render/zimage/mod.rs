//! Z-Image (Tongyi-MAI) on candle: the game's renderer since April 2026.
//!
//! The pipeline (zimage.md §3): the prompt in Qwen3's chat template goes
//! through the text encoder (second-to-last layer); seeded noise is
//! integrated from σ = 1 to 0 on a shifted schedule, one transformer call
//! per step (two with CFG for the base model); the Flux autoencoder decodes.
//! One fidelity per process: `turbo` or `high_fidelity`.

pub mod files;
mod text;
mod transformer;

use std::collections::VecDeque;
use std::path::PathBuf;

use candle_core::{DType, Device, Module, Tensor};

use super::weights::Store;
use super::{Backend, Image, RenderError, RenderJob, Resident};
use crate::prompt::Fidelity;
use files::{Vae, Weights, ZImageFiles};

pub use super::ImageOptions;

fn backend_err(message: impl std::fmt::Display) -> RenderError {
    RenderError::Backend { backend: "zimage", message: message.to_string() }
}

fn run_err(e: candle_core::Error) -> RenderError {
    backend_err(e.to_string().lines().next().unwrap_or("").to_owned())
}

/// Finds every role's files for the options' fidelity (zimage.md §2.4).
pub fn locate_in(opts: &ImageOptions, hub: Option<PathBuf>) -> Result<ZImageFiles, RenderError> {
    let fidelity = opts.fidelity.unwrap_or(Fidelity::HighFidelity);
    let dirs = files::candidates(opts.zimage_dir.as_deref(), fidelity, hub.as_deref());
    let found = files::find(&dirs, fidelity, opts.quantized, hub.as_deref()).map_err(backend_err)?;
    let other = fidelity.other();
    let advice = format!(
        "Get them with `huggingface-cli download {repo}`, pass --zimage-dir DIR, or use --fidelity {o} for {orepo}",
        repo = fidelity.repo(),
        o = other.name(),
        orepo = other.repo()
    );
    let head = format!("no Z-Image weights for fidelity '{}' ({})", fidelity.name(), fidelity.repo());
    match found {
        Ok(f) => Ok(f),
        Err(missing) => {
            let searched: Vec<String> =
                dirs.iter().filter(|(d, _)| d.is_dir()).map(|(d, _)| d.display().to_string()).collect();
            if searched.is_empty() && opts.zimage_dir.is_none() {
                return Err(backend_err(format!(
                    "{head}: no --zimage-dir or SQM_ZIMAGE_MODEL given, nothing in the Hugging Face hub cache. {advice}"
                )));
            }
            let searched =
                if searched.is_empty() { "nothing (the folder does not exist)".into() } else { searched.join(", ") };
            Err(backend_err(format!("{head}: no {} in {searched}. {advice}", missing.join(", no "))))
        }
    }
}

/// The transformer's shape from its config (diffusers) or its tensors
/// (single file, GGUF), with §2.1's refusals.
fn transformer_config(f: &ZImageFiles, s: &Store, names: transformer::Names) -> Result<transformer::Config, String> {
    let shape = |n: &str| s.shape(&names.key(n)).map_err(|e| format!("{}: {e}", s.describe()));
    let xe = shape("all_x_embedder.2-1.weight")?;
    let dim = xe[0];
    let head_dim = shape("layers.0.attention.norm_q.weight")?[0];
    let count = |p: &str| (0..).take_while(|i| s.has(&names.key(&format!("{p}.{i}.attention_norm1.weight")))).count();
    let ffn = shape("layers.0.feed_forward.w1.weight")?[0];
    let mut cfg = transformer::Config {
        dim,
        heads: dim / head_dim.max(1),
        head_dim,
        in_channels: xe[1] / 4,
        cap_feat_dim: shape("cap_embedder.1.weight")?[1],
        axes_dims: [head_dim / 4, head_dim * 3 / 8, head_dim * 3 / 8],
        rope_theta: 256.0,
        t_scale: 1000.0,
        norm_eps: 1e-5,
        layers: count("layers"),
        refiner_layers: count("noise_refiner"),
        ffn,
    };
    if let Weights::Diffusers { config, .. } = &f.transformer {
        #[derive(serde::Deserialize)]
        struct Diffusers {
            all_patch_size: Option<Vec<usize>>,
            all_f_patch_size: Option<Vec<usize>>,
            in_channels: Option<usize>,
            dim: Option<usize>,
            n_layers: Option<usize>,
            n_refiner_layers: Option<usize>,
            n_heads: Option<usize>,
            n_kv_heads: Option<usize>,
            norm_eps: Option<f64>,
            cap_feat_dim: Option<usize>,
            rope_theta: Option<f64>,
            t_scale: Option<f64>,
            axes_dims: Option<Vec<usize>>,
        }
        let p = config.display();
        let text = std::fs::read_to_string(config).map_err(|e| format!("{p}: {e}"))?;
        let d: Diffusers = serde_json::from_str(&text).map_err(|e| format!("{p}: {e}"))?;
        let patch = d.all_patch_size.unwrap_or(vec![2]);
        let fpatch = d.all_f_patch_size.unwrap_or(vec![1]);
        if patch != [2] || fpatch != [1] {
            return Err(format!(
                "{p}: all_patch_size {patch:?} and all_f_patch_size {fpatch:?} are not supported (only [2] and [1])"
            ));
        }
        let heads = d.n_heads.unwrap_or(30);
        let kv = d.n_kv_heads.unwrap_or(heads);
        if kv != heads {
            return Err(format!("{p}: n_kv_heads {kv} differs from n_heads {heads}"));
        }
        let dim = d.dim.unwrap_or(3840);
        let axes = d.axes_dims.unwrap_or(vec![32, 48, 48]);
        if heads == 0 || axes.len() != 3 || axes.iter().sum::<usize>() != dim / heads {
            return Err(format!(
                "{p}: axes_dims {axes:?} must be three numbers adding up to dim/n_heads = {dim}/{heads}"
            ));
        }
        if dim != cfg.dim || d.in_channels.unwrap_or(16) != cfg.in_channels {
            return Err(format!(
                "{p}: dim {dim} and in_channels {} do not match the weights ({} and {})",
                d.in_channels.unwrap_or(16),
                cfg.dim,
                cfg.in_channels
            ));
        }
        cfg.heads = heads;
        cfg.head_dim = dim / heads;
        cfg.axes_dims = [axes[0], axes[1], axes[2]];
        cfg.norm_eps = d.norm_eps.unwrap_or(1e-5);
        cfg.rope_theta = d.rope_theta.unwrap_or(256.0);
        cfg.t_scale = d.t_scale.unwrap_or(1000.0);
        cfg.cap_feat_dim = d.cap_feat_dim.unwrap_or(2560);
        cfg.layers = d.n_layers.unwrap_or(cfg.layers);
        cfg.refiner_layers = d.n_refiner_layers.unwrap_or(cfg.refiner_layers);
    }
    if cfg.axes_dims.iter().any(|a| a % 2 != 0) || cfg.axes_dims.iter().sum::<usize>() != cfg.head_dim {
        return Err(format!("{}: head width {} cannot be split into RoPE axes", s.describe(), cfg.head_dim));
    }
    Ok(cfg)
}

/// The autoencoder's decoder in either layout.
enum Decoder {
    Diffusers(candle_transformers::models::z_image::vae::Decoder),
    Bfl(candle_transformers::models::flux::autoencoder::Decoder),
}

/// The autoencoder's encoder in either layout (img2img).
enum Encoder {
    Diffusers(candle_transformers::models::z_image::vae::Encoder),
    Bfl(candle_transformers::models::flux::autoencoder::Encoder),
}

struct Vae_ {
    decoder: Decoder,
    /// Built by the first img2img job.
    encoder: Option<Encoder>,
    /// How to build it.
    source: Vae,
    config_diffusers: Option<candle_transformers::models::z_image::vae::VaeConfig>,
    config_bfl: Option<candle_transformers::models::flux::autoencoder::Config>,
    latent_channels: usize,
    scaling: f64,
    shift: f64,
}

fn load_vae(vae: &Vae, dtype: DType, device: &Device) -> Result<Vae_, String> {
    use candle_transformers::models::{flux::autoencoder, z_image::vae as zvae};
    let path = vae.path();
    // SAFETY: read-only mapping of a file sqm does not modify.
    let vb = unsafe { candle_nn::VarBuilder::from_mmaped_safetensors(&[path], dtype, device) }
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let err = |e: candle_core::Error| format!("{}: {}", path.display(), e.to_string().lines().next().unwrap_or(""));
    match vae {
        Vae::Diffusers { config, .. } => {
            let text = std::fs::read_to_string(config).map_err(|e| format!("{}: {e}", config.display()))?;
            let cfg: zvae::VaeConfig = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", config.display()))?;
            let decoder = zvae::Decoder::new(&cfg, vb.pp("decoder")).map_err(err)?;
            Ok(Vae_ {
                decoder: Decoder::Diffusers(decoder),
                encoder: None,
                source: vae.clone(),
                config_diffusers: Some(cfg.clone()),
                config_bfl: None,
                latent_channels: cfg.latent_channels,
                scaling: cfg.scaling_factor,
                shift: cfg.shift_factor,
            })
        }
        Vae::Bfl(_) => {
            // BFL's file has no config: the shape comes from the tensors.
            // SAFETY: as above.
            let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }.map_err(err)?;
            let shape = |n: &str| st.get(n).map(|t| t.shape().to_vec()).map_err(err);
            let conv_in = shape("decoder.conv_in.weight")?;
            let ch = shape("decoder.conv_out.weight")?[1];
            let levels = (0..).take_while(|i| st.get(&format!("decoder.up.{i}.block.0.conv1.weight")).is_ok()).count();
            let blocks = (0..).take_while(|i| st.get(&format!("decoder.up.0.block.{i}.conv1.weight")).is_ok()).count();
            let mut ch_mult = Vec::new();
            for i in 0..levels {
                ch_mult.push(shape(&format!("decoder.up.{i}.block.0.conv1.weight"))?[0] / ch.max(1));
            }
            let mut cfg = autoencoder::Config::schnell();
            cfg.ch = ch;
            cfg.ch_mult = ch_mult;
            cfg.num_res_blocks = blocks.saturating_sub(1);
            cfg.z_channels = conv_in[1];
            let decoder = autoencoder::Decoder::new(&cfg, vb.pp("decoder")).map_err(err)?;
            Ok(Vae_ {
                decoder: Decoder::Bfl(decoder),
                encoder: None,
                source: vae.clone(),
                config_diffusers: None,
                config_bfl: Some(cfg.clone()),
                latent_channels: cfg.z_channels,
                scaling: cfg.scale_factor,
                shift: cfg.shift_factor,
            })
        }
    }
}

impl Vae_ {
    /// The latents (C, h, w) of an init image: the encoder's mean, shifted
    /// and scaled as `decode` expects them back.
    fn encode_mean(
        &mut self,
        init: &crate::render::init::InitImage,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor, String> {
        use candle_transformers::models::{flux::autoencoder, z_image::vae as zvae};
        let path = self.source.path().to_path_buf();
        let err = |e: candle_core::Error| format!("{}: {}", path.display(), e.to_string().lines().next().unwrap_or(""));
        if self.encoder.is_none() {
            // SAFETY: read-only mapping of a file sqm does not modify.
            let vb = unsafe { candle_nn::VarBuilder::from_mmaped_safetensors(&[&path], dtype, device) }.map_err(err)?;
            self.encoder = Some(match (&self.config_diffusers, &self.config_bfl) {
                (Some(c), _) => Encoder::Diffusers(zvae::Encoder::new(c, vb.pp("encoder")).map_err(err)?),
                (None, Some(c)) => Encoder::Bfl(autoencoder::Encoder::new(c, vb.pp("encoder")).map_err(err)?),
                (None, None) => return Err("no VAE config".into()),
            });
        }
        let (w, h) = (init.width as usize, init.height as usize);
        let px: Vec<f32> = init.rgb.iter().map(|&v| 2.0 * v as f32 / 255.0 - 1.0).collect();
        let run = || -> candle_core::Result<Tensor> {
            let x = Tensor::from_vec(px, (1, h, w, 3), &Device::Cpu)?
                .permute((0, 3, 1, 2))?
                .to_device(device)?
                .to_dtype(dtype)?;
            let moments = match self.encoder.as_ref().expect("built above") {
                Encoder::Diffusers(e) => e.forward(&x)?,
                Encoder::Bfl(e) => e.forward(&x)?,
            };
            let mean = moments.narrow(1, 0, self.latent_channels)?.to_dtype(DType::F32)?;
            ((mean - self.shift)? * self.scaling)?.squeeze(0)
        };
        run().map_err(err)
    }

    fn decode(&self, z: &Tensor) -> candle_core::Result<Tensor> {
        let z = ((z / self.scaling)? + self.shift)?;
        match &self.decoder {
            Decoder::Diffusers(d) => d.forward(&z),
            Decoder::Bfl(d) => d.forward(&z),
        }
    }
}

/// What a load puts in memory, and where the text encoder lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TextPlacement {
    /// Resident beside the transformer.
    Resident,
    /// Loaded for encoding, freed before denoising.
    PerRender,
    /// On the host while the transformer is on the GPU.
    Host,
}

struct Loaded {
    device: Device,
    dtype: DType,
    /// None only while a new LoRA set is being merged in.
    transformer: Option<transformer::ZImageTransformer>,
    vae: Vae_,
    text: Option<text::TextEncoder>,
    tokenizer: tokenizers::Tokenizer,
    residents: Vec<Resident>,
    text_bytes: Resident,
    /// The last 32 prompts' embeddings (ids → E, on the host).
    cache: VecDeque<(Vec<u32>, Tensor)>,
    /// The transformer's weights' dtype, and the LoRA set merged into it
    /// (sha256, scale bits; empty: plain).
    transformer_dtype: DType,
    loras: Vec<(String, u64)>,
}

/// The Z-Image backend. Weights load on [`Backend::load`] (or the first render).
pub struct ZImageBackend {
    opts: ImageOptions,
    files: ZImageFiles,
    loaded: Option<Loaded>,
    peak_resident: u64,
}

impl ZImageBackend {
    /// Locates the weights and checks every file (nothing is read yet).
    pub(crate) fn new(opts: ImageOptions) -> Result<Self, RenderError> {
        let files = locate_in(&opts, crate::hub::hub_cache())?;
        Self::from_files(opts, files)
    }

    /// A backend over files already located.
    pub fn from_files(opts: ImageOptions, files: ZImageFiles) -> Result<Self, RenderError> {
        files.check().map_err(backend_err)?;
        Ok(ZImageBackend { opts, files, loaded: None, peak_resident: 0 })
    }

    pub fn files(&self) -> &ZImageFiles {
        &self.files
    }

    fn device_name(device: &Device) -> String {
        match device.location() {
            candle_core::DeviceLocation::Cpu => "cpu".to_owned(),
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        }
    }

    fn budget(&self, cpu: bool) -> Option<u64> {
        use crate::render::memory::MemoryBudget;
        match self.opts.memory_budget? {
            MemoryBudget::Bytes(b) => Some(b),
            share if cpu => crate::render::memory::host_total().map(|t| share.bytes(t)),
            _ => None,
        }
    }

    fn open_text(&self, device: &Device, dtype: DType) -> Result<text::TextEncoder, String> {
        let (store, names, cfg) = match &self.files.text_encoder {
            Weights::Diffusers { config, shards } => {
                let s = Store::safetensors(shards, dtype, device).map_err(|e| e.to_string())?;
                let prefixed = s.has("model.embed_tokens.weight");
                (s, text::Names::Hf { prefixed }, text::Config::from_json(config)?)
            }
            Weights::Single(p) => {
                let s = Store::safetensors(std::slice::from_ref(p), dtype, device).map_err(|e| e.to_string())?;
                let names = text::Names::Hf { prefixed: s.has("model.embed_tokens.weight") };
                let cfg = text::config_from_tensors(&s, names)?;
                (s, names, cfg)
            }
            Weights::Gguf(p) => {
                let s = Store::gguf(p, DType::F32, device).map_err(|e| format!("{}: {e}", p.display()))?;
                let cfg = text::config_from_gguf(p, &s)?;
                (s, text::Names::Gguf, cfg)
            }
        };
        let describe = store.describe();
        text::TextEncoder::load(&store, names, cfg)
            .map_err(|e| format!("{describe}: {}", e.to_string().lines().next().unwrap_or("")))
    }

    /// Bytes a component takes once loaded: tensor bytes in `dtype` for
    /// safetensors (the decoder half for the VAE), quantized storage for
    /// GGUF (its tensors' size in the file).
    fn bytes_of(w: &Weights, dtype: DType) -> Result<u64, RenderError> {
        let mut total = 0u64;
        match w {
            Weights::Diffusers { shards, .. } => {
                for p in shards {
                    total += crate::render::flux::files::inspect_safetensors(p).map_err(backend_err)?.elements
                        * dtype.size_in_bytes() as u64;
                }
            }
            Weights::Single(p) => {
                total += crate::render::flux::files::inspect_safetensors(p).map_err(backend_err)?.elements
                    * dtype.size_in_bytes() as u64
            }
            Weights::Gguf(p) => total += std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
        }
        Ok(total)
    }

    /// The transformer's tensors (mapped, nothing read yet) and their names.
    fn open_transformer(&self, t_dtype: DType, device: &Device) -> Result<(Store, transformer::Names), RenderError> {
        Ok(match &self.files.transformer {
            Weights::Diffusers { shards, .. } => {
                (Store::safetensors(shards, t_dtype, device).map_err(run_err)?, transformer::Names::Diffusers)
            }
            Weights::Single(p) => {
                let s = Store::safetensors(std::slice::from_ref(p), t_dtype, device).map_err(run_err)?;
                let prefixed = s.has("model.diffusion_model.x_embedder.weight");
                (s, transformer::Names::Comfy { prefixed })
            }
            Weights::Gguf(p) => {
                let s = Store::gguf(p, DType::F32, device).map_err(|e| backend_err(format!("{}: {e}", p.display())))?;
                let prefixed = s.has("model.diffusion_model.x_embedder.weight");
                (s, transformer::Names::Comfy { prefixed })
            }
        })
    }

    /// Rebuilds the transformer with `loras` merged when the loaded one
    /// carries another set (conditioning.md §1.5; one built transformer).
    fn ensure_loras(&mut self, loras: &[crate::render::lora::Lora]) -> Result<(), RenderError> {
        use crate::render::lora_weights as lw;
        let key: Vec<(String, u64)> = loras.iter().map(|l| (l.sha256.clone(), l.scale.to_bits())).collect();
        let l = self.loaded.as_ref().expect("loaded");
        if l.loras == key {
            return Ok(());
        }
        let (device, t_dtype) = (l.device.clone(), l.transformer_dtype);
        let (store, names) = self.open_transformer(t_dtype, &device)?;
        // diffusers' names as this layout stores them (ComfyUI fuses q, k, v).
        let rename = |t: &str, rows: lw::Rows| -> (String, lw::Rows) {
            if let transformer::Names::Comfy { .. } = names {
                for (k, part) in ["to_q", "to_k", "to_v"].iter().enumerate() {
                    if let Some(block) = t.strip_suffix(&format!(".attention.{part}")) {
                        return (names.key(&format!("{block}.attention.qkv")), lw::Rows::Qkv(k));
                    }
                }
            }
            (names.key(t), rows)
        };
        let store = lw::merge_into(store, loras, lw::Family::ZImage, &rename).map_err(backend_err)?;
        let cfg = self.loaded.as_ref().and_then(|l| l.transformer.as_ref()).expect("built").cfg.clone();
        let describe = store.describe();
        let started = std::time::Instant::now();
        let l = self.loaded.as_mut().expect("loaded");
        // The old build goes first: two never sit in memory together.
        l.loras = Vec::new();
        l.transformer = None;
        let built = transformer::ZImageTransformer::load(&store, names, cfg)
            .map_err(|e| backend_err(format!("{describe}: {}", e.to_string().lines().next().unwrap_or(""))));
        match built {
            Ok(t) => l.transformer = Some(t),
            Err(e) => {
                // Nothing half-built stays: the next render loads afresh.
                self.loaded = None;
                return Err(e);
            }
        }
        let l = self.loaded.as_mut().expect("loaded");
        l.loras = key;
        tracing::info!(loras = loras.len(), ms = started.elapsed().as_millis() as u64, "z-image transformer rebuilt");
        Ok(())
    }

    /// Checks the memory plan (zimage.md §4.2), then loads the transformer,
    /// the decoder and the text encoder where it fits.
    fn load_all(&mut self) -> Result<(), RenderError> {
        let device = super::flux::device(&self.opts.device).map_err(|e| match e {
            RenderError::Backend { message, .. } => backend_err(message),
            other => other,
        })?;
        let dtype = if device.is_cpu() { DType::F32 } else { DType::BF16 };
        let dev_name = Self::device_name(&device);
        let model = self.files.model_name();
        let t_dtype = if matches!(self.files.transformer, Weights::Gguf(_)) { DType::F32 } else { dtype };
        let te_dtype = if matches!(self.files.text_encoder, Weights::Gguf(_)) { DType::F32 } else { dtype };
        let component = |c: &str, w: &Weights, dt: DType, bytes: u64| Resident {
            component: c.into(),
            model: model.clone(),
            format: w.format().into(),
            dtype: if matches!(w, Weights::Gguf(_)) { "gguf".into() } else { dt.as_str().into() },
            device: dev_name.clone(),
            bytes,
        };
        let t_bytes = Self::bytes_of(&self.files.transformer, dtype)?;
        let te_bytes = Self::bytes_of(&self.files.text_encoder, dtype)?;
        let vae_bytes = crate::render::flux::files::inspect_safetensors(self.files.vae.path())
            .map_err(backend_err)?
            .decoder_elements
            * dtype.size_in_bytes() as u64;
        // Open the transformer (mapping only) to learn its shape for the
        // working-memory estimate.
        let (tstore, names) = self.open_transformer(t_dtype, &device)?;
        let cfg = transformer_config(&self.files, &tstore, names).map_err(backend_err)?;
        let act =
            super::flux::residency::activation_reserve(1024, 1024, cfg.dim, cfg.ffn, t_dtype.size_in_bytes() as u64);
        let cpu = device.is_cpu();
        let budget = self.budget(cpu);
        let host =
            crate::render::memory::host_available().map(|a| a.saturating_sub(super::flux::residency::HOST_RESERVE));
        let room = match (budget, if cpu { host } else { None }) {
            (Some(b), Some(h)) => Some(b.min(h)),
            (b, h) => b.or(h),
        };
        let fits = |bytes: u64| room.is_none_or(|r| bytes <= r);
        if !fits(t_bytes + vae_bytes + act) {
            let room = room.unwrap_or(0);
            let limit = match budget {
                Some(b) if b == room => format!("{} within --memory-budget", crate::render::memory::gib(b)),
                _ => format!(
                    "{} available (MemAvailable and cgroup limit, 2 GiB reserve)",
                    crate::render::memory::gib(room)
                ),
            };
            return Err(backend_err(format!(
                "not enough memory for the Z-Image transformer ({model}, {} on {dev_name}): needs {} with a render's \
                 working memory, {limit}; use a GGUF transformer (--quantized) or a GPU",
                if matches!(self.files.transformer, Weights::Gguf(_)) { "gguf" } else { t_dtype.as_str() },
                crate::render::memory::gib(t_bytes + vae_bytes + act),
            )));
        }
        let placement = if fits(t_bytes + vae_bytes + te_bytes + act) {
            TextPlacement::Resident
        } else if fits(t_bytes + vae_bytes + te_bytes) {
            TextPlacement::PerRender
        } else if !cpu && host.is_none_or(|h| te_bytes <= h) {
            TextPlacement::Host
        } else {
            return Err(backend_err(format!(
                "not enough memory for the Z-Image text encoder ({} beside the transformer's {}); use a GGUF text \
                 encoder (qwen3-4b*.gguf with --quantized) or a larger --memory-budget",
                crate::render::memory::gib(te_bytes),
                crate::render::memory::gib(t_bytes + vae_bytes)
            )));
        };
        let started = std::time::Instant::now();
        let describe = tstore.describe();
        let transformer = transformer::ZImageTransformer::load(&tstore, names, cfg)
            .map_err(|e| backend_err(format!("{describe}: {}", e.to_string().lines().next().unwrap_or(""))))?;
        drop(tstore);
        let vae = load_vae(&self.files.vae, dtype, &device).map_err(backend_err)?;
        if vae.latent_channels != transformer.cfg.in_channels {
            return Err(backend_err(format!(
                "{}: the transformer takes {} latent channels, the VAE has {}",
                self.files.vae.path().display(),
                transformer.cfg.in_channels,
                vae.latent_channels
            )));
        }
        let tokenizer = tokenizers::Tokenizer::from_file(&self.files.tokenizer)
            .map_err(|e| backend_err(format!("{}: {e}", self.files.tokenizer.display())))?;
        let (text, text_device) = match placement {
            TextPlacement::Resident => (Some(self.open_text(&device, te_dtype).map_err(backend_err)?), device.clone()),
            TextPlacement::Host => (Some(self.open_text(&Device::Cpu, DType::F32).map_err(backend_err)?), Device::Cpu),
            TextPlacement::PerRender => (None, device.clone()),
        };
        if let Some(t) = &text {
            if t.cfg.hidden != transformer.cfg.cap_feat_dim {
                return Err(backend_err(format!(
                    "the transformer's cap_feat_dim {} differs from the text encoder's hidden size {}",
                    transformer.cfg.cap_feat_dim, t.cfg.hidden
                )));
            }
        }
        let mut residents = vec![
            component("transformer", &self.files.transformer, t_dtype, t_bytes),
            Resident {
                component: "vae_decoder".into(),
                model: model.clone(),
                format: "safetensors".into(),
                dtype: dtype.as_str().into(),
                device: dev_name.clone(),
                bytes: vae_bytes,
            },
        ];
        let mut text_bytes = component("text_encoder", &self.files.text_encoder, te_dtype, te_bytes);
        text_bytes.device = Self::device_name(&text_device);
        if text.is_some() {
            residents.push(text_bytes.clone());
        }
        tracing::info!(
            model = %model,
            device = %dev_name,
            text_encoder = ?placement,
            ms = started.elapsed().as_millis() as u64,
            "z-image loaded"
        );
        let loaded = Loaded {
            device,
            dtype,
            transformer: Some(transformer),
            vae,
            text,
            tokenizer,
            residents,
            text_bytes,
            cache: VecDeque::new(),
            transformer_dtype: t_dtype,
            loras: Vec::new(),
        };
        self.note_peak(loaded.residents.iter().map(|r| r.bytes).sum());
        self.loaded = Some(loaded);
        Ok(())
    }

    fn note_peak(&mut self, bytes: u64) {
        self.peak_resident = self.peak_resident.max(bytes);
    }

    /// E for `prompt`, from the cache or the encoder.
    fn embed(&mut self, prompt: &str) -> Result<Tensor, RenderError> {
        let ids = {
            let l = self.loaded.as_ref().expect("loaded");
            text::ids(&l.tokenizer, prompt).map_err(backend_err)?
        };
        if let Some((_, e)) = self.loaded.as_ref().expect("loaded").cache.iter().find(|(k, _)| *k == ids) {
            return Ok(e.clone());
        }
        let per_render = self.loaded.as_ref().is_some_and(|l| l.text.is_none());
        let e = if per_render {
            let (device, dtype) = {
                let l = self.loaded.as_ref().expect("loaded");
                (l.device.clone(), l.dtype)
            };
            let te_dtype = if matches!(self.files.text_encoder, Weights::Gguf(_)) { DType::F32 } else { dtype };
            let encoder = self.open_text(&device, te_dtype).map_err(backend_err)?;
            let l = self.loaded.as_ref().expect("loaded");
            let all: u64 = l.residents.iter().map(|r| r.bytes).sum::<u64>() + l.text_bytes.bytes;
            self.note_peak(all);
            encoder.encode(&ids).map_err(run_err)?
        } else {
            let l = self.loaded.as_ref().expect("loaded");
            l.text.as_ref().expect("resident").encode(&ids).map_err(run_err)?
        };
        let e = e.to_device(&Device::Cpu).map_err(run_err)?;
        let l = self.loaded.as_mut().expect("loaded");
        if l.cache.len() == 32 {
            l.cache.pop_front();
        }
        l.cache.push_back((ids, e.clone()));
        Ok(e)
    }
}

impl ZImageBackend {
    /// The ids and E (n, hidden) of `prompt`, loading the model first.
    pub fn encode_prompt(&mut self, prompt: &str) -> Result<(Vec<u32>, Tensor), RenderError> {
        self.load()?;
        let ids = text::ids(&self.loaded.as_ref().expect("loaded").tokenizer, prompt).map_err(backend_err)?;
        Ok((ids, self.embed(prompt)?))
    }
}

/// σ from 1 to 0 for `steps` calls with shift `s` (zimage.md §3.3), f32.
pub fn sigmas(steps: usize, shift: f64) -> Vec<f32> {
    let n = steps.max(1);
    let s = shift as f32;
    let mut out: Vec<f32> = (0..n)
        .map(|i| {
            let b = if n == 1 { 1.0 } else { 1.0 + i as f32 * ((1.0 / n as f32) - 1.0) / (n as f32 - 1.0) };
            s * b / (1.0 + (s - 1.0) * b)
        })
        .collect();
    out.push(0.0);
    out
}

/// (1, 3, H, W) in [-1, 1] → 8-bit RGB, rounding half to even as diffusers'
/// PIL path: round(clamp(x/2 + 1/2, 0, 1)·255).
pub(crate) fn to_rgb8(t: &Tensor) -> candle_core::Result<Image> {
    let t = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let (_, c, h, w) = t.dims4()?;
    if c != 3 {
        candle_core::bail!("the autoencoder produced {c} channels, expected 3");
    }
    let hwc = t.squeeze(0)?.permute((1, 2, 0))?.flatten_all()?.to_vec1::<f32>()?;
    let rgb = hwc.into_iter().map(|v| ((v * 0.5 + 0.5).clamp(0.0, 1.0) * 255.0).round_ties_even() as u8).collect();
    Ok(Image { width: w as u32, height: h as u32, rgb })
}

/// The intermediate values of one render, for the reference tests.
#[derive(Default)]
pub struct Trace {
    pub ids: Vec<u32>,
    pub embedding: Option<Tensor>,
    pub noise: Option<Tensor>,
    pub sigmas: Vec<f32>,
    pub first_velocity: Option<Tensor>,
    pub latents: Vec<Tensor>,
}

impl ZImageBackend {
    /// Renders `job`, recording intermediates into `trace`.
    pub fn render_traced(
        &mut self,
        job: &RenderJob,
        progress: &mut dyn FnMut(u32, u32),
        cancel: &dyn Fn() -> bool,
        mut trace: Option<&mut Trace>,
    ) -> Result<Image, RenderError> {
        super::validate_job(job)?;
        if self.loaded.is_none() {
            self.load_all()?;
        }
        self.ensure_loras(&job.loras)?;
        if cancel() {
            return Err(RenderError::Cancelled);
        }
        let g = job.guidance;
        let e_p = self.embed(&job.positive_prompt)?;
        let e_q = if g > 0.0 { Some(self.embed(&job.negative_prompt)?) } else { None };
        if let Some(t) = trace.as_deref_mut() {
            let l = self.loaded.as_ref().expect("loaded");
            t.ids = text::ids(&l.tokenizer, &job.positive_prompt).map_err(backend_err)?;
            t.embedding = Some(e_p.clone());
        }
        let shift = self.files.shift;
        let l = self.loaded.as_ref().expect("loaded");
        let dev = l.device.clone();
        let (lh, lw) = (job.height as usize / 8, job.width as usize / 8);
        let c = l.transformer.as_ref().expect("built").cfg.in_channels;
        let noise = super::flux::noise::gaussian(job.seed as u64, c * lh * lw);
        let mut x =
            Tensor::from_vec(noise, (c, lh, lw), &Device::Cpu).and_then(|t| t.to_device(&dev)).map_err(run_err)?;
        let e_p = e_p.to_device(&dev).map_err(run_err)?;
        let e_q = e_q.map(|e| e.to_device(&dev)).transpose().map_err(run_err)?;
        let sig = sigmas(job.steps as usize, shift);
        if let Some(t) = trace.as_deref_mut() {
            t.noise = Some(x.clone());
            t.sigmas = sig.clone();
        }
        // img2img (conditioning.md §2.3): start later on the same schedule,
        // from σ·ε + (1 − σ)·x0, x0 the init image's latents.
        let start = match &job.init {
            Some(init) => {
                let start = crate::render::init::start_step(job.steps, init.strength).map_err(RenderError::Invalid)?;
                let (dtype, device) = (l.dtype, dev.clone());
                let l = self.loaded.as_mut().expect("loaded");
                let x0 = l.vae.encode_mean(init, dtype, &device).map_err(backend_err)?;
                let s = sig[start as usize] as f64;
                x = ((&x * s).and_then(|n| n + (x0 * (1.0 - s))?)).map_err(run_err)?;
                start as usize
            }
            None => 0,
        };
        let l = self.loaded.as_ref().expect("loaded");
        let tr = l.transformer.as_ref().expect("built");
        let steps = job.steps - start as u32;
        for i in start..job.steps as usize {
            if cancel() {
                return Err(RenderError::Cancelled);
            }
            // Model time as diffusers computes it: (1000 − 1000σ)/1000.
            let t = (1000.0f32 - sig[i] * 1000.0) / 1000.0;
            let mut v = tr.forward(&x, t, &e_p).map_err(run_err)?;
            if let Some(t) = trace.as_deref_mut() {
                if i == start {
                    t.first_velocity = Some(v.clone());
                }
            }
            if let Some(e_q) = &e_q {
                let vn = tr.forward(&x, t, e_q).map_err(run_err)?;
                v = (&v + ((&v - vn).map_err(run_err)? * g as f64).map_err(run_err)?).map_err(run_err)?;
            }
            // x += (σᵢ₊₁ − σᵢ)·(−v), in f32.
            let dt = sig[i + 1] - sig[i];
            x = (&x + (v.neg().map_err(run_err)? * dt as f64).map_err(run_err)?).map_err(run_err)?;
            if let Some(t) = trace.as_deref_mut() {
                t.latents.push(x.clone());
            }
            progress((i - start) as u32 + 1, steps);
        }
        if cancel() {
            return Err(RenderError::Cancelled);
        }
        let z = x.unsqueeze(0).and_then(|z| z.to_dtype(l.dtype)).map_err(run_err)?;
        let pixels = l.vae.decode(&z).map_err(run_err)?;
        to_rgb8(&pixels).map_err(run_err)
    }
}

impl Backend for ZImageBackend {
    fn name(&self) -> &'static str {
        "zimage"
    }

    fn model(&self) -> Option<String> {
        Some(self.files.model_name())
    }

    fn fidelity(&self) -> Option<Fidelity> {
        Some(self.files.fidelity)
    }

    fn load(&mut self) -> Result<(), RenderError> {
        if self.loaded.is_none() {
            self.load_all()?;
        }
        Ok(())
    }

    fn is_loaded(&self) -> bool {
        self.loaded.is_some()
    }

    fn quantized(&self) -> bool {
        matches!(self.files.transformer, Weights::Gguf(_))
    }

    fn resident(&self) -> Vec<Resident> {
        self.loaded.as_ref().map(|l| l.residents.clone()).unwrap_or_default()
    }

    fn peak_resident_bytes(&self) -> u64 {
        self.peak_resident
    }

    fn memory_budget(&self) -> Option<u64> {
        let cpu = self.loaded.as_ref().map(|l| l.device.is_cpu()).unwrap_or(self.opts.device == "cpu");
        self.budget(cpu)
    }

    /// Loads, then renders "black" once (seed 0, 2 steps, 512², no CFG).
    fn warm_up(&mut self) -> Result<(), RenderError> {
        let was = self.is_loaded();
        self.load()?;
        if !was {
            let job = RenderJob::warm_up(2, crate::prompt::Variant::Schnell);
            self.render_traced(&job, &mut |_, _| {}, &|| false, None)?;
        }
        Ok(())
    }

    fn reset(&mut self) {
        if let Some(l) = self.loaded.as_mut() {
            l.cache.clear();
        }
    }

    fn render(
        &mut self,
        job: &RenderJob,
        progress: &mut dyn FnMut(u32, u32),
        cancel: &dyn Fn() -> bool,
    ) -> Result<Option<Image>, RenderError> {
        self.render_traced(job, progress, cancel, None).map(Some)
    }
}
