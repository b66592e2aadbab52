//! The worker's message formats (zeromq.md §3): a `RenderRequest` read
//! into a pipeline request; the `ImageReady` and `AudioReady` replies and
//! their error form; the file URI and file name rules.

use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::daemon::wire::{Code, WireError};
use crate::interpret::Tier;
use crate::render::pipeline::RenderRequest;

/// A successful `ImageReady`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(super) struct ImageReady {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub request_id: Value,
    pub prompt: String,
    /// `None` for a backend that writes no file.
    pub uri: Option<String>,
    /// experimance's scene fields, echoed when the request had them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub era: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub biome: Option<Value>,
    pub width: u32,
    pub height: u32,
    pub seed: u32,
    pub backend: String,
    pub elapsed_ms: u64,
    pub cached: bool,
    /// The object's key, when the result was uploaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r2_key: Option<String>,
    /// The local file, when `uri` names the uploaded object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_uri: Option<String>,
    /// Why the upload failed (`--upload-failure keep-local`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_error: Option<String>,
    /// The PNG's bytes, standard padded base64 (`--zmq-include-image-data`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// What steered the picture (`img2img`); omitted when nothing did.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditioned: Vec<&'static str>,
}

/// A successful `AudioReady`: the library track that matched.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(super) struct AudioReady {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub request_id: Value,
    pub uri: String,
    pub prompt: String,
    pub duration_s: Option<f64>,
    pub is_loop: bool,
    pub metadata: AudioMetadata,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(super) struct AudioMetadata {
    pub similarity: f64,
    pub cache_hit: bool,
    pub cache_type: &'static str,
    /// `embedding` or `keyword`.
    pub method: &'static str,
    pub model: Option<&'static str>,
    #[serde(rename = "match")]
    pub matched: AudioMatch,
    pub requested_duration_s: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(super) struct AudioMatch {
    pub title: String,
    pub mood: String,
    pub variation_type: Option<String>,
    pub path: String,
}

/// A failed `ImageReady` or `AudioReady`.
#[derive(Clone, Debug, PartialEq, Serialize)]
struct Failed {
    #[serde(rename = "type")]
    kind: &'static str,
    request_id: Value,
    uri: Option<String>,
    prompt: Value,
    error: FailedError,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
struct FailedError {
    code: Code,
    message: String,
    /// `upload` when the render was made but its upload failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<Value>,
}

/// A reply as the frame sent to the controller.
pub(super) fn frame<T: Serialize>(reply: &T) -> Value {
    serde_json::to_value(reply).expect("replies serialize")
}

pub(super) fn error_result(
    kind: &'static str,
    id: &Value,
    prompt: &Value,
    code: Code,
    message: impl Into<String>,
) -> Value {
    failed(kind, id, prompt, WireError::new(code, message))
}

/// A failed result from a wire error (its `stage`, when it has one, kept).
pub(super) fn failed(kind: &'static str, id: &Value, prompt: &Value, e: WireError) -> Value {
    let error = FailedError { code: e.code, stage: e.extra.get("stage").cloned(), message: e.message };
    frame(&Failed { kind, request_id: id.clone(), uri: None, prompt: prompt.clone(), error })
}

/// `file://` + absolute path, with spaces, `%` and non-ASCII percent-encoded.
pub(crate) fn file_uri(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = String::from("file://");
    for b in abs.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `[A-Za-z0-9._-]` kept, others `_`, cut to 64 chars.
pub(crate) fn safe_id(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || ".-_".contains(c) { c } else { '_' }).take(64).collect()
}

/// The pipeline request of a `RenderRequest` (zeromq.md §3): the prompt
/// verbatim on the scene tier, at the requested size, seeded from the
/// prompt unless a seed is given. Errors are `INVALID_REQUEST`.
pub(super) fn render_request(msg: &Map<String, Value>) -> Result<RenderRequest, WireError> {
    let invalid = |m: String| WireError::new(Code::InvalidRequest, m);
    if !msg.get("request_id").is_some_and(Value::is_string) {
        return Err(invalid("missing field 'request_id'".into()));
    }
    let Some(prompt) = msg.get("prompt").and_then(Value::as_str).map(str::to_owned) else {
        return Err(invalid("missing field 'prompt'".into()));
    };
    let mut size = [1024u32, 1024u32];
    for (i, key) in ["width", "height"].iter().enumerate() {
        match msg.get(*key) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(n) if (64..=2048).contains(&n) && n % 16 == 0 => size[i] = n as u32,
                _ => return Err(invalid(format!("{key} must be a multiple of 16 in [64, 2048], got {v}"))),
            },
        }
    }
    let seed = match msg.get("seed") {
        None | Some(Value::Null) => crate::rng::text_seed(&prompt),
        Some(v) => match v.as_i64().map(u32::try_from) {
            Some(Ok(s)) => s,
            Some(Err(_)) => return Err(invalid(format!("'seed' must be between 0 and {}, got {v}", u32::MAX))),
            None => return Err(invalid("'seed' must be an integer".into())),
        },
    };
    Ok(RenderRequest {
        tier: Tier::SceneIllustration.name().into(),
        subject: prompt.clone(),
        positive_prompt: prompt,
        negative_prompt: msg.get("negative_prompt").and_then(Value::as_str).unwrap_or("").to_owned(),
        seed: Some(seed),
        width: Some(size[0]),
        height: Some(size[1]),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_uris() {
        assert_eq!(safe_id("a b/c?d_e-f.g"), "a_b_c_d_e-f.g");
        assert_eq!(safe_id(&"x".repeat(100)).len(), 64);
        assert_eq!(file_uri(Path::new("/srv/out dir/é.png")), "file:///srv/out%20dir/%C3%A9.png");
    }
}
