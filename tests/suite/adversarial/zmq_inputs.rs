//! Hole 2: the ZeroMQ worker read any host file named in
//! `reference_image.uri` / `depth_map.uri`, copied it byte for byte, said
//! different things for "missing", "not an image" and "a directory", grew
//! by gigabytes on /dev/zero, and stalled on a FIFO. Now file inputs are
//! read only under `--input-dir`, decoded and re-encoded, and every refusal
//! says the same thing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use super::support::{mkfifo, png_bytes};

use super::common::Controller;

trait RenderWith {
    fn render_with(&self, id: &str, src: Value) -> Value;
}

impl RenderWith for Controller {
    /// Sends a render with `reference_image` set to `src`; returns the result.
    fn render_with(&self, id: &str, src: Value) -> Value {
        self.send(&json!({"type": "RenderRequest", "request_id": id, "prompt": format!("a lantern {id}"),
            "width": 64, "height": 64, "seed": 1, "reference_image": src}));
        self.recv()
    }
}

fn ref_file(result: &Value) -> PathBuf {
    let uri = result["uri"].as_str().unwrap_or_else(|| panic!("{result}"));
    PathBuf::from(uri.strip_prefix("file://").unwrap().replace(".png", ".ref.png"))
}

#[test]
fn host_files_are_refused_with_one_message_and_nothing_stalls() {
    let t = tempfile::tempdir().unwrap();
    let private = t.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::write(private.join("secret.png"), png_bytes(8, 8)).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let fifo = t.path().join("fifo.png");
    mkfifo(&fifo);
    std::fs::write(t.path().join("text.png"), b"not an image").unwrap();

    let c = Controller::bind(None);
    let d = c.worker(&[]);
    let attempts: Vec<String> = vec![
        private.join("secret.png").display().to_string(),
        format!("file://{}", private.join("secret.png").display()),
        t.path().join("missing.png").display().to_string(),
        t.path().join("text.png").display().to_string(),
        private.display().to_string(),
        "/dev/zero".into(),
        fifo.display().to_string(),
        "https://example.invalid/x.png".into(),
    ];
    let started = Instant::now();
    for (i, uri) in attempts.iter().enumerate() {
        let r = c.render_with(&format!("a{i}"), json!({"uri": uri, "image_data": null}));
        assert_eq!(r["warnings"], json!(["reference image not readable"]), "{uri}: {r}");
        assert!(r["uri"].is_string(), "the render itself still happens: {r}");
        assert!(!ref_file(&r).exists(), "{uri} was stored");
    }
    assert!(started.elapsed() < Duration::from_secs(30), "an input stalled the worker");
    assert!(super::support::rss_mib(d.pid()) < 300.0);
}

#[test]
fn files_under_the_input_dir_and_inline_images_are_re_encoded() {
    let t = tempfile::tempdir().unwrap();
    let inputs = t.path().join("inputs");
    std::fs::create_dir(&inputs).unwrap();
    let mut original = png_bytes(8, 6);
    original.extend_from_slice(b"smuggled trailing bytes");
    std::fs::write(inputs.join("ref.png"), &original).unwrap();
    std::fs::write(t.path().join("outside.png"), png_bytes(8, 6)).unwrap();

    let c = Controller::bind(None);
    let _d = c.worker(&["--input-dir", inputs.to_str().unwrap()]);
    let r = c.render_with("inside", json!({"uri": "ref.png"}));
    assert!(r.get("warnings").is_none(), "{r}");
    let stored = std::fs::read(ref_file(&r)).unwrap();
    assert_ne!(stored, original, "re-encoded, not copied");
    let decoded = sqm::render::input::decode(&stored).unwrap();
    assert_eq!(decoded, sqm::render::input::decode(&original).unwrap());

    let r = c.render_with("escape", json!({"uri": "../outside.png"}));
    assert_eq!(r["warnings"], json!(["reference image not readable"]), "{r}");

    // Seeds outside 32 bits are refused, not wrapped.
    c.send(&json!({"type": "RenderRequest", "request_id": "s", "prompt": "x", "seed": -1}));
    let r = c.recv();
    assert_eq!(r["error"]["code"], "INVALID_REQUEST", "{r}");
    assert!(r["uri"].is_null());

    let b64 = base64::engine::general_purpose::STANDARD.encode(png_bytes(4, 4));
    let r = c.render_with("inline", json!({"image_data": format!("data:image/png;base64,{b64}")}));
    assert!(r.get("warnings").is_none(), "{r}");
    assert_eq!(sqm::render::input::decode(&std::fs::read(ref_file(&r)).unwrap()).unwrap().width, 4);
    let _ = Path::new("");
}
