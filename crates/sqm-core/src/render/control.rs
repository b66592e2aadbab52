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
    model: &str,
    dirs: &[&std::path::Path],
) -> Result<(), String> {
    let img = super::init::load_source(src, dirs).map_err(|e| {
        tracing::warn!(error = %e, "depth_map refused");
        "depth_map: image not readable".to_owned()
    })?;
    set_depth(job, &img, model);
    Ok(())
}

/// Puts the decoded depth map `img` on `job`'s canvas for `model`, at the
/// depth guidance on dev's schedule.
pub fn set_depth(job: &mut super::RenderJob, img: &super::input::InputImage, model: &str) {
    let (rgb, sha256) = super::init::fitted(img, job.width, job.height);
    job.control = Some(Control {
        kind: "depth".into(),
        model: model.into(),
        width: job.width,
        height: job.height,
        rgb: Arc::new(rgb),
        sha256,
    });
    job.guidance = DEPTH_GUIDANCE;
    job.variant = crate::prompt::Variant::Dev;
}
