//! The worker's message formats: a `RenderRequest` read into a job, and
//! the error frame, file URI and file name rules of the replies.

use std::path::Path;

use serde_json::{json, Map, Value};

use crate::daemon::wire::{Code, WireError};
use crate::interpret::Tier;
use crate::render::pipeline::RenderRequest;

pub(super) fn error_result(kind: &str, id: &Value, prompt: &Value, code: Code, message: impl Into<String>) -> Value {
    let e = WireError::new(code, message);
    json!({"type": kind, "request_id": id, "uri": null, "prompt": prompt,
           "error": {"code": serde_json::to_value(e.code).unwrap_or(Value::Null), "message": e.message}})
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
