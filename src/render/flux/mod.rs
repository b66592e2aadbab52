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
mod model;
pub(crate) mod noise;
pub(crate) mod residency;
mod text;
pub mod tiny;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::flux::{self, autoencoder};

use super::{Backend, Image, RenderError, RenderJob};
use crate::prompt::Variant;
use files::{FluxFiles, TransformerFile};

pub use super::ImageOptions;

fn backend_err(message: impl std::fmt::Display) -> RenderError {
    RenderError::Backend { backend: "flux", message: message.to_string() }
}

/// Finds the files of every variant that has weights, in this order:
/// the explicit directory (itself, or its `FLUX.1-<variant>` children),
/// then the hub cache. Errors list everything searched.
pub(crate) fn locate(opts: &ImageOptions) -> Result<Vec<FluxFiles>, RenderError> {
    locate_in(opts, crate::hub::hub_cache())
}

/// [`locate`] with the hub cache root passed in.
pub fn locate_in(opts: &ImageOptions, hub: Option<PathBuf>) -> Result<Vec<FluxFiles>, RenderError> {
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

/// A canonical LoRA set as (sha256, scale bits): what a built
/// transformer is keyed by.
type LoraKey = Vec<(String, u64)>;

fn lora_key(loras: &[crate::render::lora::Lora]) -> LoraKey {
    loras.iter().map(|l| (l.sha256.clone(), l.scale.to_bits())).collect()
}

/// `store` with `loras` merged (BFL names as they are).
fn with_loras(
    store: crate::render::weights::Store,
    loras: &[crate::render::lora::Lora],
) -> Result<crate::render::weights::Store, RenderError> {
    use crate::render::lora_weights as lw;
    lw::merge_into(store, loras, lw::Family::Flux, &|t, r| (t.to_owned(), r)).map_err(backend_err)
}

/// The tensors `names` of the transformer file `path` (BFL names) with
/// `loras` merged, in f32 on the CPU: the merge the renders use, for the
/// reference tests.
#[doc(hidden)]
pub fn merged_weights(
    path: &Path,
    loras: &[crate::render::lora::Lora],
    names: &[String],
) -> Result<Vec<Tensor>, RenderError> {
    let store = crate::render::weights::Store::safetensors(&[path.to_path_buf()], DType::F32, &Device::Cpu)
        .map_err(|e| tensor_err(path, e))?;
    let store = with_loras(store, loras)?;
    names.iter().map(|n| store.tensor(n).map_err(|e| tensor_err(path, e))).collect()
}

struct LoadedVariant {
    variant: Variant,
    /// Which located file it came from.
    file: usize,
    /// The LoRA set merged into it (canonical; empty: plain).
    loras: LoraKey,
    transformer: model::Flux,
    /// When it last rendered (the loaded state's tick).
    used: u64,
}

struct Loaded {
    device: Device,
    dtype: DType,
    text: text::TextEncoders,
    decoder: autoencoder::Decoder,
    vae: autoencoder::Config,
    /// The VAE's encoder, loaded by the first img2img or depth job.
    encoder: Option<autoencoder::Encoder>,
    /// FLUX.1-Depth-dev's transformer, loaded by the first depth job, and
    /// the LoRA set merged into it.
    depth: Option<(model::Flux, LoraKey)>,
    /// Its entry in `resident`.
    depth_resident: Option<crate::render::Resident>,
    /// The transformers in memory, any subset of the located files.
    variants: Vec<LoadedVariant>,
    /// Every component's size and the room they share.
    plan: residency::Plan,
    tick: u64,
}

impl Loaded {
    fn resident(&self) -> Vec<crate::render::Resident> {
        let mut out = self.plan.shared.clone();
        let mut files: Vec<usize> = self.variants.iter().map(|v| v.file).collect();
        files.sort_unstable();
        out.extend(files.into_iter().map(|f| self.plan.transformers[f].clone()));
        out.extend(self.depth_resident.clone());
        out
    }

    fn resident_bytes(&self) -> u64 {
        self.resident().iter().map(|r| r.bytes).sum()
    }
}

/// The Flux backend. Weights load on [`Backend::load`] (or the first render).
pub struct FluxBackend {
    opts: ImageOptions,
    loaded: Option<Loaded>,
    /// Located at construction, so `model()` can name the weights early.
    files: Vec<FluxFiles>,
    warned_fallback: bool,
    /// FLUX.1-Depth-dev's transformer, when installed (conditioning.md §3.2).
    depth_file: Option<PathBuf>,
}

/// The depth model's transformer: `flux1-depth-dev.safetensors` in the
/// model folder, its `FLUX.1-Depth-dev/` child, or the hub cache.
fn find_depth(opts: &ImageOptions, hub: Option<&Path>) -> Option<PathBuf> {
    const FILE: &str = "flux1-depth-dev.safetensors";
    if opts.no_depth {
        return None;
    }
    let mut candidates = Vec::new();
    if let Some(d) = &opts.model_dir {
        candidates.push(d.join(FILE));
        candidates.push(d.join("FLUX.1-Depth-dev").join(FILE));
    }
    if let Some(snap) = hub.and_then(|h| crate::hub::hub_snapshot(h, "black-forest-labs/FLUX.1-Depth-dev")) {
        candidates.push(snap.join(FILE));
    }
    candidates.into_iter().find(|p| p.is_file())
}

impl FluxBackend {
    /// Locates the weights (nothing is read yet). Fails when none exist.
    pub(crate) fn new(opts: ImageOptions) -> Result<Self, RenderError> {
        let files = locate(&opts)?;
        let depth_file = find_depth(&opts, crate::hub::hub_cache().as_deref());
        Ok(FluxBackend { opts, loaded: None, files, warned_fallback: false, depth_file })
    }

    /// A backend over files already located (see [`locate_in`]).
    pub fn from_files(opts: ImageOptions, files: Vec<FluxFiles>) -> Result<Self, RenderError> {
        if files.is_empty() {
            return Err(backend_err("no Flux weights given"));
        }
        let depth_file = find_depth(&opts, None);
        Ok(FluxBackend { opts, loaded: None, files, warned_fallback: false, depth_file })
    }

    /// Loads what every variant shares (text encoders, the VAE decoder)
    /// after checking every file and the memory plan; transformers load
    /// when a job needs them ([`FluxBackend::variant_index`]).
    fn load_shared(&mut self) -> Result<(), RenderError> {
        let device = device(&self.opts.device)?;
        let dtype = if device.is_cpu() { DType::F32 } else { DType::BF16 };
        // Check every file before reading any, and the memory they need.
        let plan = self.plan_residency(&device, dtype)?;
        let first = &self.files[0];
        let started = std::time::Instant::now();
        let text = text::TextEncoders::load(first, &device, dtype)?;
        let vae = files::vae_config(first).map_err(backend_err)?;
        let vb = mmap(std::slice::from_ref(&first.ae), dtype, &device)?;
        let decoder = autoencoder::Decoder::new(&vae, vb.pp("decoder")).map_err(|e| tensor_err(&first.ae, e))?;
        tracing::info!(device = ?device, ms = started.elapsed().as_millis() as u64, "flux text encoders and decoder loaded");
        self.loaded = Some(Loaded {
            device,
            dtype,
            text,
            decoder,
            vae,
            encoder: None,
            depth: None,
            depth_resident: None,
            variants: Vec::new(),
            plan,
            tick: 0,
        });
        Ok(())
    }

    /// The loaded transformer for `file` (an index into the located files),
    /// loading it first; under the memory plan another variant's
    /// transformer may be freed for it, least recently used first.
    fn variant_index(&mut self, file: usize, loras: &[crate::render::lora::Lora]) -> Result<usize, RenderError> {
        let key = lora_key(loras);
        let slots = self.opts.lora_slots.max(1);
        let loaded = self.loaded.as_mut().expect("shared parts loaded");
        loaded.tick += 1;
        if let Some(i) = loaded.variants.iter().position(|v| v.file == file && v.loras == key) {
            loaded.variants[i].used = loaded.tick;
            return Ok(i);
        }
        let bytes = loaded.plan.transformers[file].bytes;
        let f = &self.files[file];
        let (device, dtype) = (loaded.device.clone(), loaded.dtype);
        let mut config = files::transformer_config(f).map_err(backend_err)?;
        if config.in_channels != loaded.vae.z_channels * 4 {
            return Err(backend_err(format!(
                "{}: the transformer takes {} input channels but the autoencoder has {} latent channels (needs {})",
                f.transformer.path().display(),
                config.in_channels,
                loaded.vae.z_channels,
                loaded.vae.z_channels * 4
            )));
        }
        let text = &loaded.text;
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
        let started = std::time::Instant::now();
        // Dev has a guidance embedding, schnell none: trust the weights.
        let path = f.transformer.path().to_path_buf();
        let store = match &f.transformer {
            TransformerFile::Safetensors(p) => {
                files::inspect_safetensors(p).map_err(backend_err)?;
                crate::render::weights::Store::safetensors(std::slice::from_ref(p), dtype, &device)
            }
            // Quantized weights run with f32 activations (§4.5 a).
            TransformerFile::Gguf(p) => crate::render::weights::Store::gguf(p, DType::F32, &device),
        }
        .map_err(|e| tensor_err(&path, e))?;
        // The LoRAs are checked against this file before anything is freed.
        let store = with_loras(store, loras)?;
        // Slots: at most `--lora-slots` builds of one file; then the memory plan.
        while loaded.variants.iter().filter(|v| v.file == file).count() >= slots {
            let lru = (0..loaded.variants.len())
                .filter(|&i| loaded.variants[i].file == file)
                .min_by_key(|&i| loaded.variants[i].used)
                .expect("counted");
            loaded.variants.remove(lru);
        }
        while !loaded.plan.fits(loaded.resident_bytes() + bytes) && !loaded.variants.is_empty() {
            let lru = (0..loaded.variants.len()).min_by_key(|&i| loaded.variants[i].used).expect("not empty");
            let gone = loaded.variants.remove(lru);
            tracing::info!(model = %self.files[gone.file].model_name(), "freed a Flux transformer for another variant");
        }
        config.guidance_embed = store.has("guidance_in.in_layer.weight");
        let transformer = model::Flux::load(&store, &config).map_err(|e| tensor_err(&path, e))?;
        drop(store);
        tracing::info!(
            model = %f.model_name(),
            bytes,
            ms = started.elapsed().as_millis() as u64,
            "flux transformer loaded"
        );
        let tick = loaded.tick;
        loaded.variants.push(LoadedVariant { variant: f.variant, file, loras: key, transformer, used: tick });
        Ok(loaded.variants.len() - 1)
    }
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

    /// Loads the shared parts and the first located variant's transformer.
    fn load(&mut self) -> Result<(), RenderError> {
        if self.loaded.is_none() {
            self.load_shared()?;
        }
        if self.loaded.as_ref().is_some_and(|l| l.variants.is_empty()) {
            self.variant_index(0, &[])?;
        }
        Ok(())
    }

    /// Warm while the decoder and a transformer are in memory.
    fn is_loaded(&self) -> bool {
        self.loaded.as_ref().is_some_and(|l| !l.variants.is_empty())
    }

    fn quantized(&self) -> bool {
        self.opts.quantized
    }

    fn depth_model(&self) -> Option<String> {
        self.depth_file.as_ref().map(|_| "flux1-depth-dev".to_owned())
    }

    fn depth_guidance(&self) -> f32 {
        self.opts.depth_guidance.unwrap_or(crate::render::control::DEPTH_GUIDANCE)
    }

    /// The variants with weights on disk.
    fn variants(&self) -> Vec<Variant> {
        self.files.iter().map(|f| f.variant).collect()
    }

    fn resident(&self) -> Vec<crate::render::Resident> {
        self.loaded.as_ref().map(Loaded::resident).unwrap_or_default()
    }

    fn memory_budget(&self) -> Option<u64> {
        let cpu = self.loaded.as_ref().map(|l| l.device.is_cpu()).unwrap_or(self.opts.device == "cpu");
        self.budget(cpu)
    }

    /// Loads the first variant, then renders "black" once with it (1 step,
    /// 512×512, seed 0, no guidance) so the first real render pays no
    /// first-call cost.
    fn warm_up(&mut self) -> Result<(), RenderError> {
        let was = self.is_loaded();
        self.load()?;
        if !was {
            let job = RenderJob::warm_up(1, self.files[0].variant);
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
        self.render_traced(job, progress, cancel, None).map(Some)
    }
}

/// The intermediate values of one render, for the reference tests.
#[derive(Default)]
pub struct Trace {
    /// T5's features and CLIP's pooled vector.
    pub t5: Option<Tensor>,
    pub pooled: Option<Tensor>,
    pub noise: Option<Tensor>,
    pub sigmas: Vec<f64>,
    /// The transformer's output at the first step (packed).
    pub first_velocity: Option<Tensor>,
    /// The packed latents after the last step.
    pub latents: Option<Tensor>,
}

impl FluxBackend {
    /// The packed latents (1, L, 4·z) of an init image: the encoder's mean,
    /// shifted and scaled as the decoder expects them back.
    fn encode_rgb(&mut self, rgb: &[u8], width: u32, height: u32) -> Result<Tensor, RenderError> {
        let loaded = self.loaded.as_mut().expect("loaded");
        if loaded.encoder.is_none() {
            let ae = &self.files[0].ae;
            let vb = mmap(std::slice::from_ref(ae), loaded.dtype, &loaded.device)?;
            let enc = autoencoder::Encoder::new(&loaded.vae, vb.pp("encoder")).map_err(|e| tensor_err(ae, e))?;
            loaded.encoder = Some(enc);
        }
        let (w, h) = (width as usize, height as usize);
        let vae = &loaded.vae;
        let z = vae.z_channels;
        let x = crate::render::weights::rgb_tensor(rgb, w, h, &loaded.device, loaded.dtype).map_err(run_err)?;
        let moments = candle_nn::Module::forward(loaded.encoder.as_ref().expect("loaded"), &x).map_err(run_err)?;
        let (lh, lw) = (h / 8, w / 8);
        moments
            .narrow(1, 0, z)
            .and_then(|m| m.to_dtype(DType::F32))
            .and_then(|m| (m - vae.shift_factor)? * vae.scale_factor)
            .and_then(|m| m.reshape((1, z, lh / 2, 2, lw / 2, 2)))
            .and_then(|m| m.permute((0, 2, 4, 1, 3, 5)))
            .and_then(|m| m.reshape((1, (lh / 2) * (lw / 2), z * 4)))
            .map_err(run_err)
    }

    /// Loads FLUX.1-Depth-dev's transformer (128 input channels: the noisy
    /// latents and the control's, side by side).
    fn load_depth(&mut self, loras: &[crate::render::lora::Lora]) -> Result<(), RenderError> {
        let Some(path) = self.depth_file.clone() else {
            return Err(backend_err("no depth model (FLUX.1-Depth-dev not found)"));
        };
        let key = lora_key(loras);
        let loaded = self.loaded.as_mut().expect("loaded");
        if loaded.depth.as_ref().is_some_and(|(_, k)| *k == key) {
            return Ok(());
        }
        let elements = files::inspect_safetensors(&path).map_err(backend_err)?.elements;
        let mut resident = loaded.plan.transformers[0].clone();
        resident.model = "flux1-depth-dev".into();
        resident.format = "safetensors".into();
        resident.dtype = loaded.dtype.as_str().into();
        resident.bytes = elements * loaded.dtype.size_in_bytes() as u64;
        let store =
            crate::render::weights::Store::safetensors(std::slice::from_ref(&path), loaded.dtype, &loaded.device)
                .map_err(|e| tensor_err(&path, e))?;
        let shape = |n: &str| store.shape(n).map_err(|e| tensor_err(&path, e));
        let (img_in, out) = (shape("img_in.weight")?, shape("final_layer.linear.weight")?);
        let latent = 4 * loaded.vae.z_channels;
        if img_in.get(1) != Some(&(2 * latent)) || out.first() != Some(&latent) {
            return Err(backend_err(format!(
                "{}: not a depth model: img_in.weight is {img_in:?} and final_layer.linear.weight {out:?} (expected [H, {}] and [{latent}, H])",
                path.display(),
                2 * latent
            )));
        }
        let mut config = files::transformer_config(&self.files[0]).map_err(backend_err)?;
        config.in_channels = 2 * latent;
        config.guidance_embed = true;
        let store = with_loras(store, loras)?;
        loaded.depth = None;
        let started = std::time::Instant::now();
        loaded.depth = Some((model::Flux::load(&store, &config).map_err(|e| tensor_err(&path, e))?, key));
        loaded.depth_resident = Some(resident);
        tracing::info!(ms = started.elapsed().as_millis() as u64, "flux depth transformer loaded");
        Ok(())
    }

    /// Renders `job`, recording intermediates into `trace`.
    pub fn render_traced(
        &mut self,
        job: &RenderJob,
        progress: &mut dyn FnMut(u32, u32),
        cancel: &dyn Fn() -> bool,
        mut trace: Option<&mut Trace>,
    ) -> Result<Image, RenderError> {
        super::validate_job(job)?;
        self.load()?;
        let file = self.files.iter().position(|f| f.variant == job.variant).unwrap_or(0);
        if self.files[file].variant != job.variant && !self.warned_fallback {
            tracing::warn!(
                wanted = job.variant.name(),
                using = self.files[file].variant.name(),
                "no weights for the requested Flux variant; rendering with the one available"
            );
            self.warned_fallback = true;
        }
        // A depth job builds the depth model with the job's LoRAs instead.
        let plain: &[crate::render::lora::Lora] = if job.control.is_some() { &[] } else { &job.loras };
        let idx = self.variant_index(file, plain)?;
        // Depth: the control image's latents beside the noisy ones.
        let control = match &job.control {
            Some(c) => {
                self.load_depth(&job.loras)?;
                Some(self.encode_rgb(&c.rgb, c.width, c.height)?)
            }
            None => None,
        };
        // img2img: the init image's latents, the encoder's mean (conditioning.md §2.3).
        let x0 = match &job.init {
            Some(init) => Some(self.encode_rgb(&init.rgb, init.width, init.height)?),
            None => None,
        };
        let loaded = self.loaded.as_mut().expect("loaded above");
        let lv = &loaded.variants[idx];
        let (transformer, variant) = match (&control, &loaded.depth) {
            (Some(_), Some((depth, _))) => (depth, Variant::Dev),
            _ => (&lv.transformer, lv.variant),
        };
        let (w, h) = (job.width as usize, job.height as usize);
        let dev = loaded.device.clone();
        // Activations: the weights' dtype, but f32 around a quantized
        // transformer (its kernels take f32; bf16 inputs fail on GPUs).
        let dtype = transformer.dtype;
        if cancel() {
            return Err(RenderError::Cancelled);
        }
        let max_t5 = if variant == Variant::Schnell { 256 } else { 512 };
        let (txt, vec_) = loaded.text.encode(&job.positive_prompt, max_t5)?;
        let (txt, vec_) = (txt.to_dtype(dtype).map_err(run_err)?, vec_.to_dtype(dtype).map_err(run_err)?);
        if let Some(t) = trace.as_deref_mut() {
            t.t5 = Some(txt.clone());
            t.pooled = Some(vec_.clone());
        }
        // Latents: z_channels × (h/8) × (w/8), from the seeded CPU stream.
        let (lh, lw) = (h / 16 * 2, w / 16 * 2);
        let zc = loaded.vae.z_channels;
        let noise = noise::gaussian(job.seed as u64, zc * lh * lw);
        let noise =
            Tensor::from_vec(noise, (1, zc, lh, lw), &Device::Cpu).and_then(|t| t.to_device(&dev)).map_err(run_err)?;
        if let Some(t) = trace.as_deref_mut() {
            t.noise = Some(noise.clone());
        }
        // Pack 2×2 latent patches: (1, C, h, w) → (1, h/2·w/2, 4C); the
        // latents and their updates stay f32.
        let (hp, wp) = (lh / 2, lw / 2);
        let packed = noise
            .reshape((1, zc, hp, 2, wp, 2))
            .and_then(|t| t.permute((0, 2, 4, 1, 3, 5)))
            .and_then(|t| t.reshape((1, hp * wp, zc * 4)))
            .map_err(run_err)?;
        let seq_len = hp * wp;
        let timesteps = schedule(job.steps as usize, variant, seq_len);
        if let Some(t) = trace.as_deref_mut() {
            t.sigmas = timesteps.clone();
        }
        let guidance = transformer.has_guidance().then_some(job.guidance);
        let rope = transformer.rope(txt.dim(1).map_err(run_err)?, hp, wp, &dev).map_err(run_err)?;
        // img2img starts later on the same schedule, from the init image's
        // latents noised to that step: σ·ε + (1 − σ)·x0.
        let start = match &job.init {
            Some(init) => {
                crate::render::init::start_step(job.steps, init.strength).map_err(RenderError::Invalid)? as usize
            }
            None => 0,
        };
        let mut img = match &x0 {
            Some(x0) => {
                let sigma = timesteps[start];
                ((&packed * sigma).and_then(|n| n + (x0 * (1.0 - sigma))?)).map_err(run_err)?
            }
            None => packed,
        };
        let steps = job.steps - start as u32;
        for (i, pair) in timesteps.windows(2).enumerate().skip(start) {
            let i = i - start;
            if cancel() {
                return Err(RenderError::Cancelled);
            }
            let (t_curr, t_prev) = (pair[0], pair[1]);
            let input = match &control {
                Some(c) => Tensor::cat(&[&img, c], 2).map_err(run_err)?,
                None => img.clone(),
            };
            let pred = transformer.forward(&input, &txt, &vec_, t_curr as f32, guidance, &rope).map_err(run_err)?;
            if let Some(t) = trace.as_deref_mut() {
                if i == 0 {
                    t.first_velocity = Some(pred.clone());
                }
            }
            img = (img + (pred * (t_prev - t_curr)).map_err(run_err)?).map_err(run_err)?;
            progress(i as u32 + 1, steps);
        }
        if cancel() {
            return Err(RenderError::Cancelled);
        }
        if let Some(t) = trace {
            t.latents = Some(img.clone());
        }
        let latents = flux::sampling::unpack(&img, h, w).and_then(|l| l.to_dtype(loaded.dtype)).map_err(run_err)?;
        let vae = &loaded.vae;
        let pixels = ((latents / vae.scale_factor).and_then(|t| t + vae.shift_factor))
            .and_then(|z| z.apply(&loaded.decoder))
            .map_err(run_err)?;
        super::zimage::to_rgb8(&pixels).map_err(run_err)
    }
}
