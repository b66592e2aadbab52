//! `sqm serve --zmq` against a controller played by the test (loopback):
//! replies field by field, errors, a controller restart, and two workers
//! sharing one queue.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::Controller;

fn worker(c: &Controller, extra: &[&str]) -> common::Daemon {
    c.worker(extra)
}

/// A 2×2 PNG as a data URL.
fn png_data_url() -> String {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, 2, 2);
        enc.set_color(png::ColorType::Grayscale);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[0, 64, 128, 255]).unwrap();
    }
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    format!("data:image/png;base64,{s}")
}

fn path_of(uri: &Value) -> std::path::PathBuf {
    std::path::PathBuf::from(uri.as_str().unwrap().strip_prefix("file://").unwrap())
}

#[test]
fn renders_audio_errors_and_a_controller_restart() {
    let c = Controller::bind(None);
    // Its own process: without an embedding model, audio matches by keyword.
    let d = c.spawn_worker(&[]);
    c.send(
        &json!({"type":"RenderRequest","request_id":"6f1c9a2e","generator":null,"prompt":"a ruined watchtower at dusk",
        "negative_prompt":"blurry","width":1024,"height":1024,"style":null,"seed":1234,"reference_image":null,
        "depth_map":{"image_data": png_data_url(),"uri":null},"clear_queue":false,"era":"ruins","biome":"plains"}),
    );
    let r = c.recv();
    assert_eq!(r["type"], "ImageReady");
    assert_eq!(r["request_id"], "6f1c9a2e");
    assert_eq!(r["prompt"], "a ruined watchtower at dusk");
    assert_eq!((r["era"].as_str(), r["biome"].as_str()), (Some("ruins"), Some("plains")));
    assert_eq!((r["width"].as_u64(), r["height"].as_u64(), r["seed"].as_u64()), (Some(1024), Some(1024), Some(1234)));
    assert_eq!((r["backend"].as_str(), r["cached"].as_bool()), (Some("sketch"), Some(false)));
    assert!(r["elapsed_ms"].is_u64());
    assert!(r.get("error").is_none(), "{r}");
    // The sketch worker has no depth model: the render goes on plain and says so.
    assert_eq!(
        r["warnings"],
        json!(["depth_map: no depth model (FLUX.1-Depth-dev not found); rendered without depth"]),
        "{r}"
    );
    let file = path_of(&r["uri"]);
    let name = file.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.starts_with("6f1c9a2e_") && name.len() == "6f1c9a2e_".len() + 12 + 4, "{name}");
    assert_eq!(file.parent().unwrap(), d.out.join("zmq").canonicalize().unwrap_or(d.out.join("zmq")));
    let (w, h, _) = sqm::render::output::read_png_text(&file).unwrap();
    assert_eq!((w, h), (1024, 1024));
    assert!(file.with_file_name(name.replace(".png", ".depth.png")).is_file());

    // The same request again: served from the cache.
    c.send(&json!({"type":"RenderRequest","request_id":"again","prompt":"a ruined watchtower at dusk","negative_prompt":"blurry","seed":1234}));
    let r = c.recv();
    assert_eq!((r["request_id"].as_str(), r["cached"].as_bool()), (Some("again"), Some(true)), "{r}");
    assert!(r.get("era").is_none());

    // Errors come back as results; junk frames are dropped.
    c.send_raw(b"not json");
    c.send(&json!({"no_type": true}));
    c.send(&json!({"type":"RenderRequest","request_id":"bad","prompt":"x","width":1000,"height":1024}));
    let r = c.recv();
    assert_eq!(
        r,
        json!({"type":"ImageReady","request_id":"bad","uri":null,"prompt":"x",
               "error":{"code":"INVALID_REQUEST","message":"width must be a multiple of 16 in [64, 2048], got 1000"}})
    );
    c.send(&json!({"type":"RenderRequest","request_id":"np"}));
    let r = c.recv();
    assert_eq!(r["error"], json!({"code":"INVALID_REQUEST","message":"missing field 'prompt'"}));
    c.send(&json!({"type":"RenderRequest","request_id":"dm","prompt":"a bridge","width":256,"height":256,
        "depth_map":{"image_data":null,"uri":"file:///missing.png"}}));
    let r = c.recv();
    assert_eq!(
        r["warnings"],
        json!([
            "depth_map: no depth model (FLUX.1-Depth-dev not found); rendered without depth",
            "depth map not readable"
        ]),
        "{r}"
    );
    assert!(path_of(&r["uri"]).is_file());
    // Seed from the prompt when none is given.
    let h = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(b"a bridge");
        u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as u64
    };
    assert_eq!(r["seed"].as_u64(), Some(h));

    // Audio from the library (no embedding model here: keywords).
    c.send(
        &json!({"type":"AudioRenderRequest","request_id":"s42_audio","generator":null,"prompt":"siege drums under fire",
        "duration_s":25,"style":null,"seed":null,"metadata":null,"clear_queue":false}),
    );
    let r = c.recv();
    assert_eq!(r["type"], "AudioReady");
    assert_eq!(r["request_id"], "s42_audio");
    let m = &r["metadata"];
    assert_eq!((m["method"].as_str(), m["model"].as_str()), (Some("keyword"), None), "{r}");
    assert_eq!((m["cache_hit"].as_bool(), m["cache_type"].as_str()), (Some(true), Some("library")));
    assert_eq!(m["requested_duration_s"], 25);
    assert!(m["similarity"].as_f64().unwrap() > 0.0);
    assert!(m["match"]["path"].as_str().unwrap().starts_with("audio/music/"), "{r}");
    assert!(path_of(&r["uri"]).is_file());
    assert!(r["duration_s"].as_f64().unwrap() > 0.5);
    assert!(r["is_loop"].is_boolean());
    c.send(&json!({"type":"AudioRenderRequest","request_id":"short_audio","prompt":" a "}));
    let r = c.recv();
    assert_eq!(r["error"]["code"], "NO_AUDIO_MATCH", "{r}");
    assert!(r["uri"].is_null());

    // The controller goes away and comes back on the same ports.
    let (work, results) = (c.work.clone(), c.results.clone());
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    let c = Controller::bind(Some((&work, &results)));
    c.send(
        &json!({"type":"RenderRequest","request_id":"after-restart","prompt":"a lighthouse","width":128,"height":128}),
    );
    let r = c.recv();
    assert_eq!(r["request_id"], "after-restart", "{r}");
    assert!(path_of(&r["uri"]).is_file());
    // The Unix socket still serves beside the worker.
    assert_eq!(d.call(r#"{"id":1,"method":"ping"}"#)["result"]["status"], "ok");
}

#[test]
fn audio_match_uses_the_embedding_model_when_present() {
    let c = Controller::bind(None);
    let model = common::embed_model();
    let _d = worker(&c, &["--embed-model", &model]);
    c.send(&json!({"type":"AudioRenderRequest","request_id":"e_audio","prompt":"a quiet night resting by the fire"}));
    let r = c.recv();
    let m = &r["metadata"];
    assert_eq!((m["method"].as_str(), m["model"].as_str()), (Some("embedding"), Some("all-MiniLM-L6-v2")), "{r}");
    let s = m["similarity"].as_f64().unwrap();
    assert!(s > 0.0 && s <= 1.0, "{s}");
}

#[test]
fn two_workers_share_the_queue_each_request_once() {
    let c = Controller::bind(None);
    let a = worker(&c, &[]);
    let b = worker(&c, &[]);
    std::thread::sleep(Duration::from_millis(300)); // both connected
    for i in 0..10 {
        c.send(&json!({"type":"RenderRequest","request_id":format!("job-{i}"),"prompt":format!("a tower number {i}"),
            "width":512,"height":512}));
    }
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while by_id.values().map(Vec::len).sum::<usize>() < 10 && Instant::now() < deadline {
        let r = c.recv();
        let file = path_of(&r["uri"]);
        let who = if file.starts_with(a.out.canonicalize().unwrap_or(a.out.clone())) || file.starts_with(&a.out) {
            "a"
        } else {
            "b"
        };
        by_id.entry(r["request_id"].as_str().unwrap().to_owned()).or_default().push(who.into());
    }
    assert_eq!(by_id.len(), 10, "{by_id:?}");
    assert!(by_id.values().all(|w| w.len() == 1), "each request processed exactly once: {by_id:?}");
    let a_count = by_id.values().filter(|w| w[0] == "a").count();
    assert!(a_count > 0 && a_count < 10, "both workers took work: a={a_count}");
    // Nothing more arrives.
    c.pull.set_rcvtimeo(500).unwrap();
    assert!(c.pull.recv_bytes(0).is_err());
    drop(b);
}

/// A Python interpreter with pyzmq: `SQM_TEST_PYTHON`, else a venv made
/// (once) under the target dir with `pip install pyzmq`. `None` when the
/// machine has no Python or no package index.
fn pyzmq_python() -> Option<std::path::PathBuf> {
    if let Ok(p) = std::env::var("SQM_TEST_PYTHON") {
        return Some(p.into());
    }
    let venv = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("pyzmq-venv");
    let py = venv.join("bin/python");
    let ok = |py: &std::path::Path| {
        std::process::Command::new(py).args(["-c", "import zmq"]).output().is_ok_and(|o| o.status.success())
    };
    if ok(&py) {
        return Some(py);
    }
    let made = std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv).output().ok()?;
    if !made.status.success() {
        eprintln!("skipping pyzmq interop: cannot create a venv: {}", String::from_utf8_lossy(&made.stderr));
        return None;
    }
    let pip = std::process::Command::new(venv.join("bin/pip")).args(["install", "-q", "pyzmq"]).output().ok()?;
    if !pip.status.success() {
        eprintln!("skipping pyzmq interop: pip install pyzmq failed: {}", String::from_utf8_lossy(&pip.stderr));
        return None;
    }
    ok(&py).then_some(py)
}

#[test]
fn python_controller_interop() {
    use std::io::{BufRead, BufReader, Write};
    let Some(py) = pyzmq_python() else { return };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/zmq_controller.py");
    let mut child = std::process::Command::new(py)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let mut eps = line.split_whitespace();
    let (work, results) = (eps.next().unwrap().to_owned(), eps.next().unwrap().to_owned());
    let _d = common::Daemon::start(&[
        "--no-warmup",
        "--no-heartbeat",
        "--zmq",
        "--zmq-work",
        &work,
        "--zmq-results",
        &results,
    ]);
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let mut replies = Vec::new();
    for _ in 0..2 {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        replies.push(serde_json::from_str::<Value>(&l).unwrap_or(Value::Null));
    }
    let _ = child.wait();
    let image = replies.iter().find(|r| r["type"] == "ImageReady").expect("ImageReady");
    assert_eq!((image["request_id"].as_str(), image["seed"].as_u64()), (Some("py-1"), Some(7)), "{image}");
    assert_eq!((image["width"].as_u64(), image["height"].as_u64()), (Some(512), Some(384)));
    assert_eq!((image["era"].as_str(), image["biome"].as_str()), (Some("pre_industrial"), Some("plains")));
    assert!(path_of(&image["uri"]).is_file());
    let audio = replies.iter().find(|r| r["type"] == "AudioReady").expect("AudioReady");
    assert_eq!(audio["request_id"], "py-2_audio");
    assert!(path_of(&audio["uri"]).is_file(), "{audio}");
}
