//! Image backends behind one trait, and writing their output.
//!
//! A backend turns a [`RenderJob`] (prompt, seed, size, steps) into an
//! [`Image`]. Backends report progress after every step and check a cancel
//! flag between steps. [`output`] writes PNGs atomically with their
//! parameters embedded; [`pipeline`] turns a render request into a job.

pub mod control;
pub(crate) mod font;
pub mod init;
pub mod input;
pub mod lora;
pub mod null;
pub mod output;
pub mod pipeline;
pub mod post;
pub mod sketch;

use serde::Serialize;

use crate::interpret::Tier;
use crate::prompt::Variant;

/// Everything a backend needs to draw one image.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RenderJob {
    pub tier: Tier,
    pub positive_prompt: String,
    pub negative_prompt: String,
    pub seed: u32,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub guidance: f32,
    pub variant: Variant,
    /// The cue's subject and mood, for backends that illustrate them
    /// directly (the sketch backend).
    pub subject: String,
    pub mood: String,
    /// A composer-v2 post directive: the backend renders `width`×`height`
    /// and the result is cropped/rotated to the plan's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<PostPlan>,
    /// img2img: the init image on this canvas and its strength.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<init::InitImage>,
    /// Structural conditioning (a depth map) for a control model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<control::Control>,
    /// LoRAs merged into the transformer: the canonical set (conditioning.md §1.6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<lora::Lora>,
}

impl RenderJob {
    /// The warm-up render the model backends share: "black", seed 0,
    /// 512×512, no guidance, `steps` steps on `variant`.
    pub fn warm_up(steps: u32, variant: Variant) -> RenderJob {
        RenderJob {
            tier: Tier::Portrait,
            positive_prompt: "black".into(),
            negative_prompt: String::new(),
            seed: 0,
            width: 512,
            height: 512,
            steps,
            guidance: 0.0,
            variant,
            subject: "black".into(),
            mood: String::new(),
            post: None,
            init: None,
            control: None,
            loras: Vec::new(),
        }
    }
}

/// A post directive and the size the image ends at.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PostPlan {
    pub post: crate::pack::direction::Post,
    pub width: u32,
    pub height: u32,
}

/// An 8-bit RGB image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Image {
    pub fn new(width: u32, height: u32) -> Self {
        Image { width, height, rgb: vec![0; width as usize * height as usize * 3] }
    }
}

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("render cancelled by request")]
    Cancelled,
    #[error("{0}")]
    Invalid(String),
    #[error("backend '{backend}' failed: {message}")]
    Backend { backend: &'static str, message: String },
    #[error("cannot write {path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
}

/// Largest canvas side any backend accepts.
pub(crate) const MAX_SIDE: u32 = 4096;

/// One model component held in memory (zimage.md §4.4's `loaded`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resident {
    /// `transformer`, `text_encoder`, `vae_decoder`.
    pub component: String,
    pub model: String,
    /// `safetensors` or `gguf`.
    pub format: String,
    pub dtype: String,
    pub device: String,
    /// Allocated tensor bytes (quantized storage for GGUF).
    pub bytes: u64,
}

/// An image backend. One instance lives on the render worker thread.
pub trait Backend: Send {
    /// Short name: `sketch`, `null`, `flux`.
    fn name(&self) -> &'static str;
    /// Model identifier, when the backend has one.
    fn model(&self) -> Option<String> {
        None
    }
    /// Loads weights (or whatever the backend needs) so the next render is
    /// fast. Idempotent.
    fn load(&mut self) -> Result<(), RenderError>;
    fn is_loaded(&self) -> bool;
    /// True when the weights are quantized (spans report it).
    fn quantized(&self) -> bool {
        false
    }
    /// The components in memory now (empty when cold or weight-free).
    fn resident(&self) -> Vec<Resident> {
        Vec::new()
    }
    /// The Flux variants this backend has weights for (empty: it renders
    /// any job as asked).
    fn variants(&self) -> Vec<crate::prompt::Variant> {
        Vec::new()
    }
    /// The most bytes of weights resident at once so far.
    fn peak_resident_bytes(&self) -> u64 {
        self.resident().iter().map(|r| r.bytes).sum()
    }
    /// The depth model this backend can condition on (None: none).
    fn depth_model(&self) -> Option<String> {
        None
    }
    /// The guidance depth renders take (`--depth-guidance`).
    fn depth_guidance(&self) -> f32 {
        control::DEPTH_GUIDANCE
    }
    /// The Z-Image fidelity this process loaded (None: not a Z-Image backend).
    fn fidelity(&self) -> Option<crate::prompt::Fidelity> {
        None
    }
    /// The memory budget in force, in bytes (None: no weights to budget).
    fn memory_budget(&self) -> Option<u64> {
        None
    }
    /// Loads and primes the backend (the daemon's `warm_up`). By default
    /// the same as [`Backend::load`].
    fn warm_up(&mut self) -> Result<(), RenderError> {
        self.load()
    }
    /// Frees what one render left behind (buffers, caches), keeping the
    /// weights: called after a render the watchdog cancelled.
    fn reset(&mut self) {}
    /// The model that renders `job` (for PNG metadata).
    fn model_for(&self, _job: &RenderJob) -> Option<String> {
        self.model()
    }
    /// Renders. `progress(step, steps)` is called after each step; `cancel`
    /// is polled between steps. `Ok(None)` means the backend writes no file
    /// (the null backend).
    fn render(
        &mut self,
        job: &RenderJob,
        progress: &mut dyn FnMut(u32, u32),
        cancel: &dyn Fn() -> bool,
    ) -> Result<Option<Image>, RenderError>;
}

/// Checks a job's canvas and step count before it reaches a backend.
pub fn validate_job(job: &RenderJob) -> Result<(), RenderError> {
    if job.width == 0 || job.height == 0 || job.width > MAX_SIDE || job.height > MAX_SIDE {
        return Err(RenderError::Invalid(format!(
            "canvas {}x{} is out of range (1..={MAX_SIDE} per side)",
            job.width, job.height
        )));
    }
    if job.width % 16 != 0 || job.height % 16 != 0 {
        return Err(RenderError::Invalid(format!(
            "canvas {}x{} must be a multiple of 16 per side",
            job.width, job.height
        )));
    }
    if job.steps == 0 || job.steps > 200 {
        return Err(RenderError::Invalid(format!("steps must be between 1 and 200, got {}", job.steps)));
    }
    Ok(())
}
