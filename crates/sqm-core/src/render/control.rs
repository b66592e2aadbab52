//! Structural conditioning (conditioning.md §3): a depth map, near =
//! white, on the job's canvas, for a depth model (FLUX.1-Depth-dev).

use std::sync::Arc;

/// Depth renders' default guidance (BFL's control CLI).
pub const DEPTH_GUIDANCE: f32 = 10.0;

/// A control image on the job's canvas.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Control {
    /// `depth`.
    pub kind: String,
    /// The model that reads it (`flux1-depth-dev`).
    pub model: String,
    pub width: u32,
    pub height: u32,
    /// RGB8 (gray copied to the three channels); the hash stands for it.
    #[serde(skip)]
    pub rgb: Arc<Vec<u8>>,
    pub sha256: String,
}

/// Loads a depth map (an ImageSource, or a string as its `image_data`;
/// a `uri` only inside one of `dirs`) onto `job` for `model`, at the depth
/// guidance. The error is the one public text.
pub fn attach_depth(
    job: &mut super::RenderJob,
    src: &serde_json::Value,
    depth: &DepthSettings,
    dirs: &[&std::path::Path],
) -> Result<(), String> {
    let img = super::init::load_source(src, dirs).map_err(|e| {
        tracing::warn!(error = %e, "depth_map refused");
        "depth_map: image not readable".to_owned()
    })?;
    set_depth(job, &img, depth);
    Ok(())
}

/// How a depth map conditions a render: the model, its guidance
/// (`--depth-guidance`), and whether the map is far = white
/// (`depth_invert`: 255 − v before anything else).
#[derive(Clone, Debug, PartialEq)]
pub struct DepthSettings {
    pub model: String,
    pub guidance: f32,
    pub invert: bool,
}

impl DepthSettings {
    /// `model` at the default guidance, near = white.
    pub fn new(model: &str) -> DepthSettings {
        DepthSettings { model: model.into(), guidance: DEPTH_GUIDANCE, invert: false }
    }
}

/// Puts the decoded depth map `img` on `job`'s canvas for the depth
/// model, at its guidance on dev's schedule.
pub fn set_depth(job: &mut super::RenderJob, img: &super::input::InputImage, depth: &DepthSettings) {
    let mut src = super::init::to_rgb(img);
    if depth.invert {
        src.iter_mut().for_each(|v| *v = 255 - *v);
    }
    let (rgb, sha256) = super::init::fitted_from(src, img.width, img.height, job.width, job.height);
    let model = depth.model.as_str();
    job.control = Some(Control {
        kind: "depth".into(),
        model: model.into(),
        width: job.width,
        height: job.height,
        rgb: Arc::new(rgb),
        sha256,
    });
    job.guidance = depth.guidance;
    job.variant = crate::prompt::Variant::Dev;
}
