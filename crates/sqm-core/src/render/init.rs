//! img2img's init image (conditioning.md §2): the decoded input fitted to
//! the job's canvas, its content hash, and the step the denoising starts at.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::input::InputImage;

/// An init image on the job's canvas, with its strength.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct InitImage {
    pub width: u32,
    pub height: u32,
    /// RGB8, `width`×`height` (not serialized: the hash stands for it).
    #[serde(skip)]
    pub rgb: Arc<Vec<u8>>,
    /// SHA-256 of `rgb8` ‖ u32 LE width ‖ u32 LE height ‖ the pixels.
    pub sha256: String,
    /// The fraction of the steps that run, in [0, 1].
    pub strength: f64,
}

impl InitImage {
    /// `img` fitted to `width`×`height` (cover, then centre crop).
    pub fn new(img: &InputImage, width: u32, height: u32, strength: f64) -> InitImage {
        let (rgb, sha256) = fitted(img, width, height);
        InitImage { width, height, rgb: Arc::new(rgb), sha256, strength }
    }
}

/// `img` as RGB8 on a `width`×`height` canvas, and its content hash:
/// SHA-256 of `rgb8` ‖ u32 LE width ‖ u32 LE height ‖ the pixels.
pub(crate) fn fitted(img: &InputImage, width: u32, height: u32) -> (Vec<u8>, String) {
    fitted_from(to_rgb(img), img.width, img.height, width, height)
}

/// As [`fitted`], from RGB8 pixels (`sw`×`sh`).
pub(crate) fn fitted_from(src: Vec<u8>, sw: u32, sh: u32, width: u32, height: u32) -> (Vec<u8>, String) {
    let rgb = fit(&src, sw, sh, width, height);
    let mut h = Sha256::new();
    h.update(b"rgb8");
    h.update(width.to_le_bytes());
    h.update(height.to_le_bytes());
    h.update(&rgb);
    let sha256 = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    (rgb, sha256)
}

/// Loads an ImageSource (a string is its `image_data`), a `uri` only
/// inside one of `dirs`.
pub(crate) fn load_source(
    src: &serde_json::Value,
    dirs: &[&std::path::Path],
) -> Result<InputImage, super::input::InputError> {
    let src = match src {
        serde_json::Value::String(s) => serde_json::json!({ "image_data": s }),
        other => other.clone(),
    };
    let mut img = super::input::load(&src, None);
    for dir in dirs {
        if img.is_ok() {
            break;
        }
        img = super::input::load(&src, Some(dir));
    }
    img
}

/// The first step that runs for `strength` over `steps` (diffusers'
/// `get_timesteps`: trunc(max(N − min(N·s, N), 0)) in f64); an error when
/// none would run.
pub fn start_step(steps: u32, strength: f64) -> Result<u32, String> {
    let n = steps as f64;
    let start = (n - (n * strength).min(n)).max(0.0).trunc() as u32;
    if start >= steps {
        return Err(format!("strength {strength} leaves no denoising step at {steps} steps"));
    }
    Ok(start)
}

/// Why a request's init image cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    /// Missing, refused, undecodable or too large: one text for every
    /// reason, so a peer learns nothing about the host's files.
    #[error("reference_image: image not readable")]
    Unreadable,
    #[error("{0}")]
    NoStep(String),
}

/// Loads `src` (an ImageSource object, or a string taken as its
/// `image_data`), a `uri` only inside one of `dirs`, and puts it on `job`'s
/// canvas with `strength`, after checking a step would run.
pub fn attach(
    job: &mut super::RenderJob,
    src: &serde_json::Value,
    strength: f64,
    dirs: &[&std::path::Path],
) -> Result<(), AttachError> {
    start_step(job.steps, strength).map_err(AttachError::NoStep)?;
    let img = load_source(src, dirs).map_err(|e| {
        tracing::warn!(error = %e, "reference_image refused");
        AttachError::Unreadable
    })?;
    job.init = Some(InitImage::new(&img, job.width, job.height, strength));
    Ok(())
}

/// Checks a request's strength.
pub fn check_strength(s: f64) -> Result<f64, String> {
    if s.is_finite() && (0.0..=1.0).contains(&s) {
        Ok(s)
    } else {
        Err(format!("strength must be in [0, 1], got {s}"))
    }
}

/// 8-bit RGB: alpha dropped, gray copied to R = G = B.
pub(crate) fn to_rgb(img: &InputImage) -> Vec<u8> {
    let px = &img.pixels;
    match img.color {
        png::ColorType::Rgb => px.clone(),
        png::ColorType::Rgba => px.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        png::ColorType::Grayscale => px.iter().flat_map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => px.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0]]).collect(),
        png::ColorType::Indexed => px.clone(),
    }
}

/// Scales to cover `w`×`h` keeping the aspect ratio (Lanczos, a = 3, the
/// support widened when shrinking), then crops the centre. The exact size
/// is returned as is.
pub fn fit(rgb: &[u8], sw: u32, sh: u32, w: u32, h: u32) -> Vec<u8> {
    if (sw, sh) == (w, h) {
        return rgb.to_vec();
    }
    // Cover: the side that is relatively shorter fills the canvas.
    let (tw, th) = if (w as u64) * (sh as u64) > (h as u64) * (sw as u64) {
        (w, ((sh as u64 * w as u64) / sw as u64).max(h as u64) as u32)
    } else {
        (((sw as u64 * h as u64) / sh as u64).max(w as u64) as u32, h)
    };
    let scaled = resize(rgb, sw, sh, tw, th);
    let (x0, y0) = ((tw - w) / 2, (th - h) / 2);
    let mut out = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        let row = ((y0 + y) * tw + x0) as usize * 3;
        out.extend_from_slice(&scaled[row..row + w as usize * 3]);
    }
    out
}

fn lanczos(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else if x.abs() < 3.0 {
        let px = std::f64::consts::PI * x;
        3.0 * px.sin() * (px / 3.0).sin() / (px * px)
    } else {
        0.0
    }
}

/// Per output index: the first input index and the normalised weights.
fn kernel(src: u32, dst: u32) -> Vec<(usize, Vec<f64>)> {
    let scale = src as f64 / dst as f64;
    let filter = scale.max(1.0);
    let support = 3.0 * filter;
    (0..dst)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let lo = ((center - support).floor().max(0.0)) as usize;
            let hi = ((center + support).ceil() as usize).min(src as usize);
            let mut w: Vec<f64> = (lo..hi).map(|j| lanczos((j as f64 + 0.5 - center) / filter)).collect();
            let sum: f64 = w.iter().sum();
            if sum != 0.0 {
                w.iter_mut().for_each(|v| *v /= sum);
            }
            (lo, w)
        })
        .collect()
}

/// Separable Lanczos-3, horizontal then vertical, rounding to 8 bits after each pass.
fn resize(rgb: &[u8], sw: u32, sh: u32, tw: u32, th: u32) -> Vec<u8> {
    let kx = kernel(sw, tw);
    let mut mid = vec![0u8; (tw * sh * 3) as usize];
    for y in 0..sh as usize {
        for (x, (lo, w)) in kx.iter().enumerate() {
            for c in 0..3 {
                let v: f64 =
                    w.iter().enumerate().map(|(k, wk)| wk * rgb[(y * sw as usize + lo + k) * 3 + c] as f64).sum();
                mid[(y * tw as usize + x) * 3 + c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    let ky = kernel(sh, th);
    let mut out = vec![0u8; (tw * th * 3) as usize];
    for (y, (lo, w)) in ky.iter().enumerate() {
        for x in 0..tw as usize {
            for c in 0..3 {
                let v: f64 =
                    w.iter().enumerate().map(|(k, wk)| wk * mid[((lo + k) * tw as usize + x) * 3 + c] as f64).sum();
                out[(y * tw as usize + x) * 3 + c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_steps_follow_diffusers() {
        assert_eq!(start_step(12, 0.6), Ok(4));
        assert_eq!(start_step(12, 0.35), Ok(7));
        assert_eq!(start_step(12, 0.05), Ok(11));
        assert_eq!(start_step(4, 0.6), Ok(1));
        assert_eq!(start_step(12, 1.0), Ok(0));
        assert_eq!(start_step(12, 0.0).unwrap_err(), "strength 0 leaves no denoising step at 12 steps");
        assert_eq!(check_strength(1.5).unwrap_err(), "strength must be in [0, 1], got 1.5");
    }

    #[test]
    fn fitting_covers_and_crops() {
        let img = InputImage {
            width: 4,
            height: 2,
            color: png::ColorType::Grayscale,
            pixels: vec![10, 10, 200, 200, 10, 10, 200, 200],
        };
        let a = InitImage::new(&img, 4, 2, 0.6);
        assert_eq!(&a.rgb[..6], &[10, 10, 10, 10, 10, 10]);
        // A different encoding of the same pixels hashes alike.
        let rgb = InputImage { width: 4, height: 2, color: png::ColorType::Rgb, pixels: a.rgb.to_vec() };
        assert_eq!(InitImage::new(&rgb, 4, 2, 0.6).sha256, a.sha256);
        // Wider than the canvas: scaled to the height, the middle kept.
        let b = InitImage::new(&img, 2, 2, 0.6);
        assert_eq!(b.rgb.len(), 12);
        assert_ne!(b.sha256, a.sha256);
        // A flat image stays flat whatever the scale.
        let flat = InputImage { width: 7, height: 5, color: png::ColorType::Grayscale, pixels: vec![90; 35] };
        assert!(InitImage::new(&flat, 16, 16, 1.0).rgb.iter().all(|&v| v == 90));
    }
}
