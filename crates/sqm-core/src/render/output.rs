//! Writing rendered images: content-addressed names, atomic writes, and the
//! parameters embedded in the PNG (an A1111-style `parameters` text chunk
//! that image viewers and tools understand, plus the full job as JSON).

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Image, RenderError, RenderJob};

/// `key16`: the first 16 hex digits of SHA-256 over the canonical JSON
/// (sorted keys, compact) of what determines the pixels.
pub fn render_key(backend: &str, model: Option<&str>, job: &RenderJob) -> String {
    let canonical: std::collections::BTreeMap<&str, serde_json::Value> = [
        ("backend", serde_json::json!(backend)),
        ("model", serde_json::json!(model)),
        ("positive_prompt", serde_json::json!(job.positive_prompt)),
        ("negative_prompt", serde_json::json!(job.negative_prompt)),
        ("seed", serde_json::json!(job.seed)),
        ("width", serde_json::json!(job.width)),
        ("height", serde_json::json!(job.height)),
        ("steps", serde_json::json!(job.steps)),
        ("guidance", serde_json::json!(job.guidance)),
    ]
    .into_iter()
    .collect();
    let mut canonical = canonical;
    if let Some(p) = &job.post {
        // A post directive changes the pixels: its directive and the final canvas.
        canonical.insert("post", serde_json::json!({"post": p.post, "width": p.width, "height": p.height}));
    }
    if let Some(i) = &job.init {
        // img2img: the fitted pixels' hash and the strength (conditioning.md §2.4).
        canonical.insert("init_image", serde_json::json!({"sha256": i.sha256, "strength": i.strength}));
    }
    if let Some(c) = &job.control {
        canonical.insert("control", serde_json::json!({"kind": c.kind, "model": c.model, "sha256": c.sha256}));
    }
    if !job.loras.is_empty() {
        let loras: Vec<serde_json::Value> =
            job.loras.iter().map(|l| serde_json::json!({"scale": l.scale, "sha256": l.sha256})).collect();
        canonical.insert("loras", serde_json::Value::Array(loras));
    }
    let text = serde_json::to_string(&canonical).expect("json");
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// `<out>/<backend>/render_<key16>.png`
pub fn output_path(out_dir: &Path, backend: &str, key16: &str) -> PathBuf {
    out_dir.join(backend).join(format!("render_{key16}.png"))
}

/// Creates `dir` and any missing parents with mode 0700 (protocol.md §11:
/// the daemon's outputs are private). Existing folders keep their mode.
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// The A1111 `parameters` text.
pub(crate) fn parameters_text(job: &RenderJob, model: &str) -> String {
    let mut s = job.positive_prompt.clone();
    if !job.negative_prompt.is_empty() {
        s.push_str("\nNegative prompt: ");
        s.push_str(&job.negative_prompt);
    }
    s.push_str(&format!(
        "\nSteps: {}, Sampler: Euler, CFG scale: {}, Seed: {}, Size: {}x{}, Model: {}",
        job.steps, job.guidance, job.seed, job.width, job.height, model
    ));
    if let Some(i) = &job.init {
        s.push_str(&format!(", Denoising strength: {}", i.strength));
    }
    if let Some(c) = &job.control {
        s.push_str(&format!(", Control: {} {}", c.kind, c.model));
    }
    if !job.loras.is_empty() {
        s.push_str(&format!(", Lora hashes: {}", super::lora::hashes_text(&job.loras)));
    }
    s
}

/// Writes `img` as PNG to `path` atomically: a temporary file in the same
/// folder, flushed and synced, then renamed over the target. A reader never
/// sees a partial file; a failure leaves nothing behind.
pub fn write_png(path: &Path, img: &Image, parameters: &str, request_json: &str) -> Result<(), RenderError> {
    let io = |source| RenderError::Io { path: path.to_path_buf(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir_all(dir).map_err(io)?;
    let name = crate::atomic::TempName { prefix: ".render-", suffix: ".png.tmp" };
    crate::atomic::write_with(path, name, true, |f| {
        let mut w = std::io::BufWriter::new(f);
        let mut enc = png::Encoder::new(&mut w, img.width, img.height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        let latin1 = parameters.chars().all(|c| (c as u32) < 256);
        let meta = if latin1 {
            enc.add_text_chunk("parameters".into(), parameters.into())
        } else {
            enc.add_itxt_chunk("parameters".into(), parameters.into())
        };
        meta.and_then(|_| enc.add_itxt_chunk("sqm".into(), request_json.into())).map_err(std::io::Error::other)?;
        let mut writer = enc.write_header().map_err(std::io::Error::other)?;
        writer.write_image_data(&img.rgb).map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)?;
        w.flush()
    })
    .map_err(io)
}

/// A PNG's width, height and text chunks (keyword, text).
pub(crate) type PngText = (u32, u32, Vec<(String, String)>);

/// Reads the text chunks of a PNG (for tests and `sqm` tooling).
pub fn read_png_text(path: &Path) -> std::io::Result<PngText> {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path)?));
    let reader = decoder.read_info().map_err(std::io::Error::other)?;
    let info = reader.info();
    let mut chunks: Vec<(String, String)> =
        info.uncompressed_latin1_text.iter().map(|c| (c.keyword.clone(), c.text.clone())).collect();
    for c in &info.utf8_text {
        chunks.push((c.keyword.clone(), c.get_text().map_err(std::io::Error::other)?));
    }
    Ok((info.width, info.height, chunks))
}
