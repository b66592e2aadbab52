//! Image inputs that arrive with a request (a reference image, a depth map):
//! inline as a data URL or bare base64, or as a file path / `file://` URI
//! inside the one folder the operator allowed (`--input-dir`).
//!
//! Inputs are untrusted. Inline data is size-checked before decoding; files
//! go through the containment rule ([`crate::pack::paths`]); every image is
//! decoded (PNG or JPEG) with bounded dimensions and re-encoded as PNG, so
//! what is stored is always a well-formed image sqm wrote itself. The error
//! says why for the operator's log; a remote peer should be shown only
//! [`InputError::public_message`].

use std::path::Path;

use base64::Engine as _;
use serde_json::Value;

use crate::pack::paths::{self, Root, IMAGE_CAP};

/// Largest width or height accepted.
pub(crate) const MAX_SIDE: u32 = 8192;

/// Why an image input was refused (for logs; never sent to a peer).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("neither image_data nor uri is set")]
    Missing,
    #[error("inline image larger than {} MiB", IMAGE_CAP >> 20)]
    InlineTooLarge,
    #[error("image_data is not valid base64")]
    Base64,
    #[error("http(s) URIs are not fetched")]
    Remote,
    #[error("file inputs are disabled (no --input-dir)")]
    NoInputDir,
    #[error("{0}")]
    Path(#[from] paths::PathError),
    #[error("not a PNG or JPEG image")]
    Format,
    #[error("cannot decode the image: {0}")]
    Decode(String),
    #[error("the image is {0}x{1}; at most {MAX_SIDE} pixels a side")]
    TooBig(u32, u32),
}

impl InputError {
    /// The one message a peer sees, whatever the reason, so a refusal says
    /// nothing about the host's files.
    pub fn public_message(field: &str) -> String {
        format!("{} not readable", field.replace('_', " "))
    }
}

/// A decoded 8-bit image.
#[derive(Clone, Debug, PartialEq)]
pub struct InputImage {
    pub width: u32,
    pub height: u32,
    /// Grayscale, GrayscaleAlpha, Rgb or Rgba.
    pub color: png::ColorType,
    pub pixels: Vec<u8>,
}

/// Reads an ImageSource object (`{"image_data": …}` or `{"uri": …}`).
/// File paths are accepted only under `input_dir`.
pub fn load(src: &Value, input_dir: Option<&Path>) -> Result<InputImage, InputError> {
    let bytes = if let Some(data) = src.get("image_data").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        decode_inline(data)?
    } else if let Some(uri) = src.get("uri").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        if let Some(data) = uri.strip_prefix("data:") {
            decode_inline(data)?
        } else if uri.starts_with("http://") || uri.starts_with("https://") {
            return Err(InputError::Remote);
        } else {
            let dir = input_dir.ok_or(InputError::NoInputDir)?;
            let root = Root::new(dir).map_err(|source| paths::PathError::Io { raw: String::new(), source })?;
            let path = match uri.strip_prefix("file://") {
                Some(p) => percent_decode(p),
                None => uri.to_owned(),
            };
            root.read(Path::new(&path), IMAGE_CAP)?
        }
    } else {
        return Err(InputError::Missing);
    };
    decode(&bytes)
}

/// A data URL's payload (`image/png;base64,…`) or bare base64.
fn decode_inline(data: &str) -> Result<Vec<u8>, InputError> {
    let b64 = data.split_once("base64,").map(|(_, b)| b).unwrap_or(data);
    if b64.len() as u64 > IMAGE_CAP / 3 * 4 + 8 {
        return Err(InputError::InlineTooLarge);
    }
    let clean: Vec<u8> = b64.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let lenient = |alphabet| {
        base64::engine::GeneralPurpose::new(
            alphabet,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
                .with_decode_allow_trailing_bits(true),
        )
    };
    lenient(&base64::alphabet::STANDARD)
        .decode(&clean)
        .or_else(|_| lenient(&base64::alphabet::URL_SAFE).decode(&clean))
        .map_err(|_| InputError::Base64)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes PNG or JPEG bytes (by content) into 8-bit pixels.
pub fn decode(bytes: &[u8]) -> Result<InputImage, InputError> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(bytes)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        decode_jpeg(bytes)
    } else {
        Err(InputError::Format)
    }
}

fn decode_png(bytes: &[u8]) -> Result<InputImage, InputError> {
    let mut decoder = png::Decoder::new_with_limits(
        std::io::Cursor::new(bytes),
        png::Limits { bytes: (MAX_SIDE as usize) * (MAX_SIDE as usize) * 4 },
    );
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| InputError::Decode(e.to_string()))?;
    let (w, h) = (reader.info().width, reader.info().height);
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(InputError::TooBig(w, h));
    }
    let size = reader.output_buffer_size().ok_or_else(|| InputError::Decode("image too large".into()))?;
    let mut pixels = vec![0; size];
    let frame = reader.next_frame(&mut pixels).map_err(|e| InputError::Decode(e.to_string()))?;
    pixels.truncate(frame.buffer_size());
    Ok(InputImage { width: w, height: h, color: frame.color_type, pixels })
}

fn decode_jpeg(bytes: &[u8]) -> Result<InputImage, InputError> {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    let options = DecoderOptions::default()
        .set_max_width(MAX_SIDE as usize)
        .set_max_height(MAX_SIDE as usize)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let pixels = decoder.decode().map_err(|e| InputError::Decode(format!("{e:?}")))?;
    let (w, h) = decoder.dimensions().ok_or_else(|| InputError::Decode("no dimensions".into()))?;
    let (w, h) = (w as u32, h as u32);
    if pixels.len() != w as usize * h as usize * 3 {
        return Err(InputError::Decode("unexpected pixel layout".into()));
    }
    Ok(InputImage { width: w, height: h, color: png::ColorType::Rgb, pixels })
}

/// Writes `img` as a PNG at `to` atomically (temp file + rename).
pub fn store_png(img: &InputImage, to: &Path) -> std::io::Result<()> {
    let dir = to.parent().unwrap_or(Path::new("."));
    super::output::create_private_dir_all(dir)?;
    let name = crate::atomic::TempName { prefix: ".input-", suffix: ".png.tmp" };
    crate::atomic::write_with(to, name, true, |f| {
        let mut enc = png::Encoder::new(std::io::BufWriter::new(f), img.width, img.height);
        enc.set_color(img.color);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(std::io::Error::other)?;
        w.write_image_data(&img.pixels).map_err(std::io::Error::other)?;
        w.finish().map_err(std::io::Error::other)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn png_bytes(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        let mut wr = enc.write_header().unwrap();
        let px: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        wr.write_image_data(&px).unwrap();
        wr.finish().unwrap();
        out
    }

    #[test]
    fn inline_images_decode_in_every_spelling() {
        let png = png_bytes(5, 3);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
        for data in [format!("data:image/png;base64,{b64}"), b64.clone(), b64.trim_end_matches('=').to_owned()] {
            let img = load(&json!({ "image_data": data }), None).unwrap();
            assert_eq!((img.width, img.height, img.pixels.len()), (5, 3, 45));
        }
        let img = load(&json!({ "uri": format!("data:image/png;base64,{b64}") }), None).unwrap();
        assert_eq!(img.width, 5);
        assert!(matches!(load(&json!({"image_data": "a$=="}), None), Err(InputError::Base64)));
        let not_image = base64::engine::general_purpose::STANDARD.encode(b"hello");
        assert!(matches!(load(&json!({ "image_data": not_image }), None), Err(InputError::Format)));
    }

    #[test]
    fn files_only_under_the_input_dir() {
        let t = tempfile::tempdir().unwrap();
        let inputs = t.path().join("in");
        std::fs::create_dir(&inputs).unwrap();
        std::fs::write(inputs.join("a b.png"), png_bytes(4, 4)).unwrap();
        std::fs::write(t.path().join("secret.png"), png_bytes(4, 4)).unwrap();
        let uri = |u: &str| json!({ "uri": u });
        assert!(matches!(load(&uri("a b.png"), None), Err(InputError::NoInputDir)));
        assert_eq!(load(&uri("a b.png"), Some(&inputs)).unwrap().width, 4);
        let file_uri = format!("file://{}/a%20b.png", inputs.display());
        assert_eq!(load(&uri(&file_uri), Some(&inputs)).unwrap().width, 4);
        for bad in ["../secret.png", &t.path().join("secret.png").display().to_string(), "/dev/zero"] {
            assert!(matches!(load(&uri(bad), Some(&inputs)), Err(InputError::Path(_))), "{bad}");
        }
        assert!(matches!(load(&uri("https://example.com/x.png"), Some(&inputs)), Err(InputError::Remote)));
    }

    #[test]
    fn a_png_is_re_encoded_not_copied() {
        let t = tempfile::tempdir().unwrap();
        let mut png = png_bytes(6, 2);
        // Trailing junk after IEND is dropped by the round trip.
        png.extend_from_slice(b"trailing bytes the peer smuggled");
        let img = decode(&png).unwrap();
        let to = t.path().join("x.png");
        store_png(&img, &to).unwrap();
        let stored = std::fs::read(&to).unwrap();
        assert_ne!(stored, png);
        assert_eq!(decode(&stored).unwrap(), img);
    }

    #[test]
    fn jpeg_decodes_to_rgb() {
        // A 3x2 baseline JPEG of one colour (200, 30, 90), written by Pillow.
        let b64 = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQERMUFRUVDA8XGBYUGBIUFRT/2wBDAQMEBAUEBQkFBQkUDQsNFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBT/wAARCAACAAMDASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDxSiiirP7VP//Z";
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        let img = decode(&bytes).unwrap();
        assert_eq!((img.width, img.height, img.color), (3, 2, png::ColorType::Rgb));
        for px in img.pixels.chunks(3) {
            let close = |a: u8, b: u8| (a as i32 - b as i32).abs() <= 3;
            assert!(close(px[0], 200) && close(px[1], 30) && close(px[2], 90), "{px:?}");
        }
    }
}
