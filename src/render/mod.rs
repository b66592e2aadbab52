//! Rendering with the engines: everything of `sqm_core::render` (jobs, the
//! pipeline, the sketch and null backends, PNG output) plus the backends
//! that need candle, and the one place that builds a backend by name.

pub use sqm_core::render::*;

#[cfg(feature = "engines")]
pub mod flux;
#[cfg(feature = "engines")]
pub(crate) mod lora_weights;
pub mod memory;
#[cfg(feature = "engines")]
pub(crate) mod weights;
#[cfg(feature = "engines")]
pub mod zimage;

/// How the flux backend finds and runs its weights (plain data, so the
/// command line builds it with or without the engines).
#[derive(Clone, Debug, Default)]
pub struct ImageOptions {
    /// `--model-dir` / `$SQM_FLUX_MODEL`: a folder laid out like the hub
    /// repo, or a folder holding `FLUX.1-schnell/` and `FLUX.1-dev/`.
    pub model_dir: Option<std::path::PathBuf>,
    /// `--zimage-dir` / `$SQM_ZIMAGE_MODEL`: Z-Image weights (zimage.md §2).
    pub zimage_dir: Option<std::path::PathBuf>,
    /// The Z-Image fidelity this process loads (set for `zimage` only).
    pub fidelity: Option<crate::prompt::Fidelity>,
    /// Prefer a GGUF transformer when both kinds are present.
    pub quantized: bool,
    /// `cpu`, `cuda[:N]`, `metal`, or empty for the best available.
    pub device: String,
    /// `--memory-budget`: the most the loaded weights (and a render's
    /// working memory) may take; None: what is free at load time.
    pub memory_budget: Option<memory::MemoryBudget>,
    /// `--lora-slots`: built transformers kept per model file, one per
    /// LoRA set (0 counts as 1).
    pub lora_slots: usize,
    /// `--depth-guidance` (None: 10, BFL's).
    pub depth_guidance: Option<f32>,
    /// `--no-depth`: never load a depth model.
    pub no_depth: bool,
}

/// The backends `backend_by_name` knows.
pub(crate) const BACKENDS: [&str; 4] = ["sketch", "null", "flux", "zimage"];

/// Builds a backend by name. `flux` locates its weights now (and fails
/// with the places it searched when there are none) but loads them later.
pub fn backend_by_name(name: &str, flux: &ImageOptions) -> Result<Box<dyn Backend>, RenderError> {
    match name {
        "sketch" => Ok(Box::new(sketch::SketchBackend::default())),
        "null" => Ok(Box::new(null::NullBackend)),
        #[cfg(feature = "engines")]
        "flux" => Ok(Box::new(flux::FluxBackend::new(flux.clone())?)),
        #[cfg(feature = "engines")]
        "zimage" => Ok(Box::new(zimage::ZImageBackend::new(flux.clone())?)),
        #[cfg(not(feature = "engines"))]
        "flux" | "zimage" => {
            let _ = flux;
            Err(RenderError::Invalid(format!(
                "this sqm was built without the engines feature; reinstall with default features to render with {name}"
            )))
        }
        other => {
            Err(RenderError::Invalid(format!("unknown backend '{other}' (available: sketch, null, flux, zimage)")))
        }
    }
}
