//! Flux.1 (schnell and dev) on candle.
//!
//! The pipeline: the prompt goes through T5-XXL (the sequence the
//! transformer attends to) and CLIP-L (one pooled vector); seeded noise is
//! packed into 2×2 latent patches; an Euler loop integrates the rectified
//! flow from t = 1 to t = 0, one transformer call per step, reporting
//! progress and checking for cancellation between steps; the autoencoder's
//! decoder turns the latents into pixels.
//!
//! Schnell runs on a plain linear schedule and ignores guidance. Dev feeds
//! the guidance strength to its guidance embedding and shifts the schedule
//! towards high noise for large images (the `mu` of the reference code).
//!
//! Both variants share the text encoders and the autoencoder; whichever
//! variants have weights on disk are loaded, and a job asking for a missing
//! one runs on the other (logged once).

pub mod files;
pub(crate) mod noise;
mod text;
pub mod tiny;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::flux::{self, autoencoder, WithForward};

use super::{memory, Backend, Image, RenderError, RenderJob};
use crate::prompt::Variant;
use files::{FluxFiles, TransformerFile};

pub use super::FluxOptions;

fn backend_err(message: impl std::fmt::Display) -> RenderError {
    RenderError::Backend { backend: "flux", message: message.to_string() }
}

/// Finds the files of every variant that has weights, in this order:
/// the explicit directory (itself, or its `FLUX.1-<variant>` children),
/// then the hub cache. Errors list everything searched.
pub(crate) fn locate(opts: &FluxOptions) -> Result<Vec<FluxFiles>, RenderError> {
    locate_in(opts, crate::hub::hub_cache())
}

/// [`locate`] with the hub cache root passed in.
pub fn locate_in(opts: &FluxOptions, hub: Option<PathBuf>) -> Result<Vec<FluxFiles>, RenderError> {
    let mut found = Vec::new();
    let mut searched = Vec::new();
    for variant in [Variant::Schnell, Variant::Dev] {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(dir) = &opts.model_dir {
            candidates.push(dir.clone());
            candidates.push(dir.join(format!("FLUX.1-{}", variant.name())));
        }
        if let Some(snap) = hub.as_deref().and_then(|c| crate::hub::hub_snapshot(c, files::hub_repo(variant))) {
            candidates.push(snap);
        }
        for dir in candidates.iter().filter(|d| d.is_dir()) {
            match files::find(dir, variant, opts.quantized, hub.as_deref()) {
                Ok(f) => {
                    found.push(f);
                    break;
                }
                Err(e) if has_any_weights(dir) => {
                    searched.push(format!("{} for {}: {e}", variant.name(), dir.display()))
                }
                Err(_) => {}
            }
        }
    }
    if found.is_empty() {
        let mut msg = String::from("no Flux weights found");
        if opts.model_dir.is_none() && searched.is_empty() {
            msg.push_str(" (no --model-dir or SQM_FLUX_MODEL given, nothing in the Hugging Face hub cache)");
        } else if let Some(dir) = &opts.model_dir {
            if searched.is_empty() {
                msg.push_str(&format!(" in {} or the Hugging Face hub cache", dir.display()));
            }
        }
        for s in &searched {
            msg.push_str("; ");
            msg.push_str(s);
        }
        msg.push_str(
            ". Get them with `huggingface-cli download black-forest-labs/FLUX.1-schnell` (and \
             openai/clip-vit-large-patch14 for the CLIP tokenizer), or pass --model-dir DIR",
        );
        return Err(backend_err(msg));
    }
    Ok(found)
}

fn has_any_weights(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()).any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with("flux1-") || n == "ae.safetensors" || n == "text_encoder" || n == "text_encoder_2"
            })
        })
        .unwrap_or(false)
}

/// Picks the device named by `spec`.
pub(crate) fn device(spec: &str) -> Result<Device, RenderError> {
    let spec = spec.trim();
    let err = |e: candle_core::Error| backend_err(format!("cannot open device '{spec}': {e}"));
    match spec {
        "" => {
            if candle_core::utils::cuda_is_available() {
                Device::new_cuda(0).map_err(err)
            } else if candle_core::utils::metal_is_available() {
                Device::new_metal(0).map_err(err)
            } else {
                Ok(Device::Cpu)
            }
        }
        "cpu" => Ok(Device::Cpu),
        "metal" => Device::new_metal(0).map_err(err),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let n = s.strip_prefix("cuda:").map(|n| n.parse::<usize>()).unwrap_or(Ok(0));
            let n = n.map_err(|_| backend_err(format!("bad device '{s}': expected cuda:N")))?;
            Device::new_cuda(n).map_err(err)
        }
        other => Err(backend_err(format!("unknown device '{other}' (cpu, cuda, cuda:N, metal)"))),
    }
}

/// The Flux transformer, full precision or quantized.
enum Transformer {
    Full(Box<flux::model::Flux>),
    Quantized(Box<flux::quantized_model::Flux>),
}

impl Transformer {
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        img: &Tensor,
        img_ids: &Tensor,
        txt: &Tensor,
        txt_ids: &Tensor,
        t: &Tensor,
        y: &Tensor,
        guidance: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        match self {
            Transformer::Full(m) => m.forward(img, img_ids, txt, txt_ids, t, y, guidance),
            Transformer::Quantized(m) => m.forward(img, img_ids, txt, txt_ids, t, y, guidance),
        }
    }
}

struct LoadedVariant {
    transformer: Transformer,
    config: flux::model::Config,
}

struct Loaded {
    device: Device,
    dtype: DType,
    text: text::TextEncoders,
    decoder: autoencoder::Decoder,
    vae: autoencoder::Config,
    variants: Vec<(Variant, LoadedVariant)>,
    /// What `status` lists as loaded.
    resident: Vec<crate::render::Resident>,
}

/// The Flux backend. Weights load on [`Backend::load`] (or the first render).
pub struct FluxBackend {
    opts: FluxOptions,
    loaded: Option<Loaded>,
    /// Located at construction, so `model()` can name the weights early.
    files: Vec<FluxFiles>,
    warned_fallback: bool,
}

impl FluxBackend {
    /// Locates the weights (nothing is read yet). Fails when none exist.
    pub(crate) fn new(opts: FluxOptions) -> Result<Self, RenderError> {
        let files = locate(&opts)?;
        Ok(FluxBackend { opts, loaded: None, files, warned_fallback: false })
    }

    /// A backend over files already located (see [`locate_in`]).
    pub fn from_files(opts: FluxOptions, files: Vec<FluxFiles>) -> Result<Self, RenderError> {
        if files.is_empty() {
            return Err(backend_err("no Flux weights given"));
        }
        Ok(FluxBackend { opts, loaded: None, files, warned_fallback: false })
    }

    /// The components a load will hold and their bytes, checked against
    /// the memory budget and, on the CPU, what the host has free
    /// (zimage.md §4.1): weights plus a render's working memory must fit.
    fn plan_residency(&self, device: &Device, dtype: DType) -> Result<Vec<crate::render::Resident>, RenderError> {
        let device_name = match device.location() {
            candle_core::DeviceLocation::Cpu => "cpu".to_owned(),
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        };
        let size = dtype.size_in_bytes() as u64;
        let inspect = |p: &Path| files::inspect_safetensors(p).map_err(backend_err);
        let first = &self.files[0];
        let component =
            |component: &str, model: String, format: &str, dtype: &str, bytes: u64| crate::render::Resident {
                component: component.into(),
                model,
                format: format.into(),
                dtype: dtype.into(),
                device: device_name.clone(),
                bytes,
            };
        let mut text = 0u64;
        for p in first.t5_weights.iter().chain([&first.clip_weights]) {
            text += inspect(p)?.elements * size;
        }
        let mut out = vec![component("text_encoder", "t5+clip-l".into(), "safetensors", dtype.as_str(), text)];
        let vae = inspect(&first.ae)?.decoder_elements * size;
        out.push(component("vae_decoder", first.model_name(), "safetensors", dtype.as_str(), vae));
        let mut hidden = 0usize;
        let mut ffn = 0usize;
        for f in &self.files {
            let config = files::transformer_config(f).map_err(backend_err)?;
            hidden = hidden.max(config.hidden_size);
            ffn = ffn.max((config.hidden_size as f64 * config.mlp_ratio) as usize);
            let (format, dt, bytes) = match &f.transformer {
                TransformerFile::Safetensors(p) => ("safetensors", dtype.as_str(), inspect(p)?.elements * size),
                TransformerFile::Gguf(p) => ("gguf", "gguf", std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)),
            };
            out.push(component("transformer", f.model_name(), format, dt, bytes));
        }
        let weights: u64 = out.iter().map(|r| r.bytes).sum();
        let needs = weights + activation_reserve(1024, 1024, hidden, ffn, size);
        let cpu = device.is_cpu();
        let budget = self.budget(cpu);
        let host = if cpu { crate::render::memory::host_available() } else { None };
        const HOST_RESERVE: u64 = 2 << 30;
        let room = match (budget, host.map(|a| a.saturating_sub(HOST_RESERVE))) {
            (Some(b), Some(h)) => Some(b.min(h)),
            (b, h) => b.or(h),
        };
        if let Some(room) = room.filter(|r| needs > *r) {
            let models: Vec<String> = self.files.iter().map(FluxFiles::model_name).collect();
            let limit = match (budget, host) {
                (Some(b), _) if b == room => format!("{} within --memory-budget", memory::gib(b)),
                _ => format!("{} available (MemAvailable and cgroup limit, 2 GiB reserve)", memory::gib(room)),
            };
            return Err(backend_err(format!(
                "not enough memory for the Flux weights ({}, {} on {device_name}): needs {} with a render's working \
                 memory, {limit}; use a GGUF transformer (--quantized), a GPU, or a larger --memory-budget",
                models.join(" + "),
                dtype.as_str(),
                memory::gib(needs),
            )));
        }
        Ok(out)
    }

    /// `--memory-budget` in bytes; a share (`80%`) of the host's memory on
    /// the CPU. GPUs: bytes only (the device's total is not read here).
    fn budget(&self, cpu: bool) -> Option<u64> {
        match self.opts.memory_budget? {
            memory::MemoryBudget::Bytes(b) => Some(b),
            share if cpu => crate::render::memory::host_total().map(|t| share.bytes(t)),
            _ => None,
        }
    }

    fn load_all(&mut self) -> Result<(), RenderError> {
        let device = device(&self.opts.device)?;
        let dtype = if device.is_cpu() { DType::F32 } else { DType::BF16 };
        // Check every file before reading any, and the memory they need.
        let resident = self.plan_residency(&device, dtype)?;
        let first = &self.files[0];
        let started = std::time::Instant::now();
        let text = text::TextEncoders::load(first, &device, dtype)?;
        let vae = files::vae_config(first).map_err(backend_err)?;
        let vb = mmap(std::slice::from_ref(&first.ae), dtype, &device)?;
        let decoder = autoencoder::Decoder::new(&vae, vb.pp("decoder")).map_err(|e| tensor_err(&first.ae, e))?;
        let mut variants = Vec::new();
        for f in &self.files {
            let mut config = files::transformer_config(f).map_err(backend_err)?;
            if config.in_channels != vae.z_channels * 4 {
                return Err(backend_err(format!(
                    "{}: the transformer takes {} input channels but the autoencoder has {} latent channels (needs {})",
                    f.transformer.path().display(),
                    config.in_channels,
                    vae.z_channels,
                    vae.z_channels * 4
                )));
            }
            if config.context_in_dim != text.t5_dim || config.vec_in_dim != text.clip_dim {
                return Err(backend_err(format!(
                    "{}: the transformer expects text features of width {} (T5) and {} (CLIP), the encoders give {} and {}",
                    f.transformer.path().display(),
                    config.context_in_dim,
                    config.vec_in_dim,
                    text.t5_dim,
                    text.clip_dim
                )));
            }
            // Dev has a guidance embedding, schnell none: trust the weights.
            const GUIDANCE: &str = "guidance_in.in_layer.weight";
            let transformer = match &f.transformer {
                TransformerFile::Safetensors(p) => {
                    let vb = mmap(std::slice::from_ref(p), dtype, &device)?;
                    config.guidance_embed = vb.contains_tensor(GUIDANCE);
                    Transformer::Full(Box::new(flux::model::Flux::new(&config, vb).map_err(|e| tensor_err(p, e))?))
                }
                TransformerFile::Gguf(p) => {
                    let vb = candle_transformers::quantized_var_builder::VarBuilder::from_gguf(p, &device)
                        .map_err(|e| tensor_err(p, e))?;
                    config.guidance_embed = vb.contains_key(GUIDANCE);
                    Transformer::Quantized(Box::new(
                        flux::quantized_model::Flux::new(&config, vb).map_err(|e| tensor_err(p, e))?,
                    ))
                }
            };
            variants.push((f.variant, LoadedVariant { transformer, config }));
        }
        tracing::info!(
            variants = ?variants.iter().map(|(v, _)| v.name()).collect::<Vec<_>>(),
            device = ?device,
            bytes = resident.iter().map(|r| r.bytes).sum::<u64>(),
            ms = started.elapsed().as_millis() as u64,
            "flux weights loaded"
        );
        self.loaded = Some(Loaded { device, dtype, text, decoder, vae, variants, resident });
        Ok(())
    }
}

/// Working memory of one render at `w`×`h` beside the weights
/// (zimage.md §4.2): b·(10·S·D + 3·S·F) + 8·S·D + 1 GiB, with S the image
/// plus text tokens, D the width, F the feed-forward width, b the bytes of
/// an activation.
fn activation_reserve(w: u64, h: u64, d: usize, f: usize, b: u64) -> u64 {
    let s = (w * h / 256).div_ceil(32) * 32 + 512;
    let (d, f) = (d as u64, f as u64);
    b * (10 * s * d + 3 * s * f) + 8 * s * d + (1 << 30)
}

/// Memory-maps safetensors files; a bad file is named in the error.
fn mmap(paths: &[PathBuf], dtype: DType, device: &Device) -> Result<VarBuilder<'static>, RenderError> {
    for p in paths {
        files::inspect_safetensors(p).map_err(backend_err)?;
    }
    // SAFETY: the files are not modified while mapped; sqm only reads them.
    unsafe { VarBuilder::from_mmaped_safetensors(paths, dtype, device) }.map_err(|e| {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        backend_err(format!("{}: {e}", names.join(", ")))
    })
}

/// A candle error while building a model from `file`: usually a missing
/// tensor or a shape mismatch, which candle names.
fn tensor_err(file: &Path, e: candle_core::Error) -> RenderError {
    backend_err(format!("{}: {}", file.display(), e.to_string().lines().next().unwrap_or("")))
}

fn run_err(e: candle_core::Error) -> RenderError {
    backend_err(e.to_string().lines().next().unwrap_or("").to_owned())
}

/// The timesteps from 1 to 0: linear for schnell; for dev, shifted by
/// `mu`, which grows with the number of image patches.
pub fn schedule(steps: usize, variant: Variant, image_seq_len: usize) -> Vec<f64> {
    let linear = (0..=steps).rev().map(|i| i as f64 / steps as f64);
    match variant {
        Variant::Schnell => linear.collect(),
        Variant::Dev => {
            // mu interpolates between 0.5 at 256 patches and 1.15 at 4096.
            let (x1, y1, x2, y2) = (256.0, 0.5, 4096.0, 1.15);
            let mu = y1 + (image_seq_len as f64 - x1) * (y2 - y1) / (x2 - x1);
            linear
                .map(|t| {
                    if t <= 0.0 {
                        0.0
                    } else if t >= 1.0 {
                        1.0
                    } else {
                        mu.exp() / (mu.exp() + (1.0 / t - 1.0))
                    }
                })
                .collect()
        }
    }
}

impl Backend for FluxBackend {
    fn name(&self) -> &'static str {
        "flux"
    }

    fn model(&self) -> Option<String> {
        Some(self.files.iter().map(FluxFiles::model_name).collect::<Vec<_>>().join("+"))
    }

    fn model_for(&self, job: &RenderJob) -> Option<String> {
        let f = self.files.iter().find(|f| f.variant == job.variant).or(self.files.first())?;
        Some(f.model_name())
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
        self.opts.quantized
    }

    /// The variants with weights on disk.
    fn variants(&self) -> Vec<Variant> {
        self.files.iter().map(|f| f.variant).collect()
    }

    fn resident(&self) -> Vec<crate::render::Resident> {
        self.loaded.as_ref().map(|l| l.resident.clone()).unwrap_or_default()
    }

    fn memory_budget(&self) -> Option<u64> {
        let cpu = self.loaded.as_ref().map(|l| l.device.is_cpu()).unwrap_or(self.opts.device == "cpu");
        self.budget(cpu)
    }

    /// Loads every variant, then renders "black" once (1 step, 512×512,
    /// seed 0, no guidance) so the first real render pays no first-call cost.
    fn warm_up(&mut self) -> Result<(), RenderError> {
        let was = self.is_loaded();
        self.load()?;
        if !was {
            let job = RenderJob {
                tier: crate::interpret::Tier::Portrait,
                positive_prompt: "black".into(),
                negative_prompt: String::new(),
                seed: 0,
                width: 512,
                height: 512,
                steps: 1,
                guidance: 0.0,
                variant: Variant::Schnell,
                subject: "black".into(),
                mood: String::new(),
                post: None,
            };
            self.render(&job, &mut |_, _| {}, &|| false)?;
        }
        Ok(())
    }

    fn render(
        &mut self,
        job: &RenderJob,
        progress: &mut dyn FnMut(u32, u32),
        cancel: &dyn Fn() -> bool,
    ) -> Result<Option<Image>, RenderError> {
        super::validate_job(job)?;
        self.load()?;
        let warned = self.warned_fallback;
        let loaded = self.loaded.as_mut().expect("loaded above");
        let idx = loaded.variants.iter().position(|(v, _)| *v == job.variant).unwrap_or(0);
        let (variant, lv) = &loaded.variants[idx];
        if *variant != job.variant && !warned {
            tracing::warn!(
                wanted = job.variant.name(),
                using = variant.name(),
                "no weights for the requested Flux variant; rendering with the one available"
            );
            self.warned_fallback = true;
        }
        let variant = *variant;
        let (w, h) = (job.width as usize, job.height as usize);
        let dev = loaded.device.clone();
        let dtype = loaded.dtype;
        if cancel() {
            return Err(RenderError::Cancelled);
        }
        let max_t5 = if variant == Variant::Schnell { 256 } else { 512 };
        let (txt, vec_) = loaded.text.encode(&job.positive_prompt, max_t5)?;
        // Latents: z_channels × (h/8) × (w/8), from the seeded CPU stream.
        let (lh, lw) = (h / 16 * 2, w / 16 * 2);
        let zc = loaded.vae.z_channels;
        let noise = noise::gaussian(job.seed as u64, zc * lh * lw);
        let noise = Tensor::from_vec(noise, (1, zc, lh, lw), &Device::Cpu)
            .and_then(|t| t.to_device(&dev))
            .and_then(|t| t.to_dtype(dtype))
            .map_err(run_err)?;
        let state = flux::sampling::State::new(&txt, &vec_, &noise).map_err(run_err)?;
        let seq_len = state.img.dim(1).map_err(run_err)?;
        let timesteps = schedule(job.steps as usize, variant, seq_len);
        let guidance = if lv.config.guidance_embed {
            Some(Tensor::full(job.guidance, 1, &dev).and_then(|t| t.to_dtype(dtype)).map_err(run_err)?)
        } else {
            None
        };
        let mut img = state.img.clone();
        let steps = job.steps;
        for (i, pair) in timesteps.windows(2).enumerate() {
            if cancel() {
                return Err(RenderError::Cancelled);
            }
            let (t_curr, t_prev) = (pair[0], pair[1]);
            let t_vec = Tensor::full(t_curr as f32, 1, &dev).and_then(|t| t.to_dtype(dtype)).map_err(run_err)?;
            let pred = lv
                .transformer
                .forward(&img, &state.img_ids, &state.txt, &state.txt_ids, &t_vec, &state.vec, guidance.as_ref())
                .map_err(run_err)?;
            img = (img + (pred * (t_prev - t_curr)).map_err(run_err)?).map_err(run_err)?;
            progress(i as u32 + 1, steps);
        }
        if cancel() {
            return Err(RenderError::Cancelled);
        }
        let latents = flux::sampling::unpack(&img, h, w).map_err(run_err)?;
        let vae = &loaded.vae;
        let pixels = ((latents / vae.scale_factor).and_then(|t| t + vae.shift_factor))
            .and_then(|z| z.apply(&loaded.decoder))
            .map_err(run_err)?;
        let image = to_rgb8(&pixels).map_err(run_err)?;
        Ok(Some(image))
    }
}

/// (1, 3, H, W) in [-1, 1] → 8-bit RGB.
fn to_rgb8(t: &Tensor) -> candle_core::Result<Image> {
    let t = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let t = ((t.clamp(-1f32, 1f32)? + 1.0)? * 127.5)?;
    let (_, c, h, w) = t.dims4()?;
    if c != 3 {
        candle_core::bail!("the autoencoder produced {c} channels, expected 3");
    }
    let hwc = t.squeeze(0)?.permute((1, 2, 0))?.flatten_all()?.to_vec1::<f32>()?;
    let rgb = hwc.into_iter().map(|v| v.round() as u8).collect();
    Ok(Image { width: w as u32, height: h as u32, rgb })
}
