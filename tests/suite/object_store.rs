//! Uploads to an S3-compatible store (remote-and-telemetry.md §1 and §7.2
//! examples 1–4 and 8), against a real S3 server (s3s-fs, which checks
//! request signatures) started here, and the watcher receiver.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{wait_for, Daemon, SQM};
use crate::watcher::{Receiver, ANSWER};

const KEY_ID: &str = "AKIDSQMTEST";

/// An s3s-fs server over a fresh folder, stopped by PID on drop.
pub(crate) struct S3 {
    child: Child,
    pub(crate) root: tempfile::TempDir,
    pub(crate) endpoint: String,
    pub(crate) secret: String,
}

fn s3s_fs() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SQM_TEST_S3S_FS") {
        return Some(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join("s3s-fs")).find(|p| p.is_file())
}

impl S3 {
    /// None (the test is skipped) when s3s-fs is not installed, except
    /// under CI, where that is a failure.
    pub(crate) fn start() -> Option<S3> {
        let Some(bin) = s3s_fs() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "s3s-fs is not installed (scripts/setup.sh installs it)"
            );
            eprintln!("skipped: s3s-fs is not installed (scripts/setup.sh installs it)");
            return None;
        };
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("sidequest")).unwrap();
        let secret = format!("secret-{}-{}", std::process::id(), Instant::now().elapsed().as_nanos() ^ 0x5eed);
        let log = root.path().join("s3s.log");
        let mut child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", "0", "--access-key", KEY_ID, "--secret-key", &secret])
            .arg(root.path())
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(at) = text.find("server is running at ") {
                let endpoint = text[at + "server is running at ".len()..].split_whitespace().next().unwrap().to_owned();
                return Some(S3 { child, root, endpoint, secret });
            }
            assert!(Instant::now() < deadline, "s3s-fs did not start: {text}");
            assert!(child.try_wait().unwrap().is_none(), "s3s-fs stopped: {text}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("R2_S3_ENDPOINT", self.endpoint.clone()),
            ("R2_ACCESS_KEY_ID", KEY_ID.to_owned()),
            ("R2_SECRET_ACCESS_KEY", self.secret.clone()),
        ]
    }

    /// GETs an object through a signed client: its bytes, content type and
    /// cache control.
    pub(crate) fn get(&self, key: &str) -> (Vec<u8>, String, String) {
        use object_store::ObjectStoreExt;
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_bucket_name("sidequest")
            .with_region("auto")
            .with_access_key_id(KEY_ID)
            .with_secret_access_key(&self.secret)
            .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let got = store.get(&object_store::path::Path::from(key)).await.unwrap();
            let attr = |a| got.attributes.get(&a).map(|v| v.to_string()).unwrap_or_default();
            let (ct, cc) = (attr(object_store::Attribute::ContentType), attr(object_store::Attribute::CacheControl));
            (got.bytes().await.unwrap().to_vec(), ct, cc)
        })
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(dir: tempfile::TempDir, extra: &[&str], env: &[(&str, String)]) -> Daemon {
    let mut args = vec!["--no-warmup"];
    args.extend_from_slice(extra);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Daemon::spawn_with_env(dir, &args, &env)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

const RANGER: &str = r#"{"id":"u1","method":"render","params":{"tier":"portrait","positive_prompt":"a gaunt ranger","seed":7,"genre":"ashfall","world":"cinder-reach","session_id":"room-42"}}"#;

/// Example 1: the reply keeps its local paths and adds the reference's key;
/// the object is the file's bytes with the reference's headers.
#[test]
fn a_render_is_uploaded_under_the_reference_key() {
    let Some(s3) = S3::start() else { return };
    let d = spawn(tempfile::tempdir().unwrap(), &["--no-watcher"], &s3.env());
    let reply = d.call(RANGER);
    let r = &reply["result"];
    assert_eq!(r["cached"], false, "{reply}");
    let path = r["image_path"].as_str().unwrap();
    assert_eq!(r["image_url"], path);
    let bytes = std::fs::read(path).unwrap();
    let key = format!("artifacts/cinder-reach/room-42/portraits/{}.png", sha256_hex(&bytes));
    assert_eq!(r["r2_key"], key.as_str(), "{reply}");
    let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["image_url", "image_path", "width", "height", "elapsed_ms", "seed", "backend", "cached", "r2_key"],
        "{reply}"
    );
    let (got, content_type, cache_control) = s3.get(&key);
    assert!(got == bytes, "the object is the rendered file");
    assert_eq!((content_type.as_str(), cache_control.as_str()), ("image/png", "public, max-age=86400"));
    // A hit is answered at once under the same key (nothing is sent again).
    let again = d.call(RANGER);
    assert_eq!((again["result"]["cached"].clone(), again["result"]["r2_key"].clone()), (json!(true), json!(key)));
    let status = d.call(r#"{"id":"s","method":"status"}"#);
    let o = &status["result"]["sqm"]["object_store"];
    assert_eq!(
        (o["enabled"].clone(), o["bucket"].clone(), o["region"].clone(), o["uploads"].clone(), o["failures"].clone()),
        (json!(true), json!("sidequest"), json!("auto"), json!(1), json!(0)),
        "{o}"
    );
    assert_eq!(o["endpoint"], s3.endpoint.as_str());
}

/// Example 2: without a world or session the key says `unknown`, and the
/// game server hears `r2.params_missing`.
#[test]
fn missing_world_and_session_are_unknown_and_reported() {
    let Some(s3) = S3::start() else { return };
    let rx = Receiver::start(ANSWER);
    let d = spawn(tempfile::tempdir().unwrap(), &["--watcher-url", &rx.base], &s3.env());
    let reply = d.call(
        r#"{"id":"u2","method":"render","params":{"tier":"portrait","positive_prompt":"a gaunt ranger","seed":8}}"#,
    );
    let key = reply["result"]["r2_key"].as_str().unwrap_or_else(|| panic!("{reply}"));
    assert!(key.starts_with("artifacts/unknown/unknown/portraits/") && key.ends_with(".png"), "{key}");
    assert!(s3.root.path().join("sidequest").join(key).is_file(), "the object lies where s3s-fs keeps it");
    assert!(wait_for(|| !rx.bodies().is_empty(), Duration::from_secs(3)), "no event");
    assert_eq!(
        rx.bodies()[0],
        json!({"event_type": "r2.params_missing",
               "fields": {"tier": "portrait", "world": "", "session_id": "", "missing": ["world", "session_id"], "render_id": ""},
               "component": "daemon"})
    );
}

/// Example 3: a wrong secret fails the render at its upload stage, once
/// (403 is final); the file stays, and a restart with the right secret
/// answers the same request from the cache and uploads it.
#[test]
fn a_refused_upload_fails_the_render_and_keeps_the_file() {
    let Some(s3) = S3::start() else { return };
    let rx = Receiver::start(ANSWER);
    let mut env = s3.env();
    env[2].1 = "not-the-secret".into();
    let d = spawn(tempfile::tempdir().unwrap(), &["--watcher-url", &rx.base], &env);
    let started = Instant::now();
    let reply = d.call(RANGER);
    let e = &reply["error"];
    assert_eq!((e["code"].clone(), e["stage"].clone()), (json!("GENERATION_FAILED"), json!("upload")), "{reply}");
    let message = e["message"].as_str().unwrap();
    assert!(message.starts_with("upload failed: "), "{message}");
    assert!(message.contains("403 Forbidden") && message.contains("SignatureDoesNotMatch"), "{message}");
    assert!(!message.contains(KEY_ID) && !message.contains("not-the-secret"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(2), "a 403 is not retried");
    assert_eq!(d.pngs().len(), 1, "the render stays cached");
    assert!(wait_for(|| !rx.bodies().is_empty(), Duration::from_secs(3)), "no event");
    let ev = &rx.bodies()[0];
    assert_eq!(ev["event_type"], "daemon.upload_failed");
    let f = &ev["fields"];
    assert_eq!(
        (f["attempts"].clone(), f["error_class"].clone(), f["tier"].clone()),
        (json!(1), json!("ClientError"), json!("portrait"))
    );
    assert!(f["r2_key"].as_str().unwrap().starts_with("artifacts/cinder-reach/room-42/portraits/"), "{f}");
    let status = d.call(r#"{"id":"s","method":"status"}"#);
    assert_eq!(status["result"]["sqm"]["object_store"]["failures"], 1);

    let (dir, _) = d.stop_keeping_dir();
    let d = spawn(dir, &["--no-watcher"], &s3.env());
    let reply = d.call(RANGER);
    assert_eq!(reply["result"]["cached"], true, "{reply}");
    let key = reply["result"]["r2_key"].as_str().unwrap();
    assert!(s3.root.path().join("sidequest").join(key).is_file());
}

/// A listener that accepts connections and never answers.
fn silent_port() -> String {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming().flatten() {
            held.push(s);
        }
    });
    endpoint
}

/// A port that refuses connections.
fn closed_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// Example 4: `keep-local` with a store that refuses connections: three
/// retries, then the result with `upload_error` and no `r2_key`. A store
/// that never answers is bounded by `--upload-timeout`.
#[test]
fn unreachable_and_stalled_stores_are_bounded() {
    let env = |endpoint: String| {
        vec![("R2_S3_ENDPOINT", endpoint), ("R2_ACCESS_KEY_ID", KEY_ID.into()), ("R2_SECRET_ACCESS_KEY", "x".into())]
    };
    let rx = Receiver::start(ANSWER);
    let d = spawn(
        tempfile::tempdir().unwrap(),
        &["--upload-failure", "keep-local", "--watcher-url", &rx.base],
        &env(closed_port()),
    );
    let reply = d.call(RANGER);
    let r = &reply["result"];
    assert!(r["image_path"].is_string() && r.get("r2_key").is_none(), "{reply}");
    assert!(!r["upload_error"].as_str().unwrap().is_empty(), "{reply}");
    assert!(wait_for(|| !rx.bodies().is_empty(), Duration::from_secs(3)), "no event");
    let f = &rx.bodies()[0]["fields"];
    assert_eq!((f["attempts"].clone(), f["error_class"].clone()), (json!(4), json!("EndpointConnectionError")), "{f}");

    // A listener that accepts and never answers.
    let endpoint = silent_port();
    let d = spawn(tempfile::tempdir().unwrap(), &["--upload-timeout", "2", "--no-watcher"], &env(endpoint));
    let started = Instant::now();
    let reply = d.call(RANGER);
    let took = started.elapsed();
    assert_eq!(reply["error"]["message"], "upload failed: timed out after 2 s", "{reply}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
}

/// Example 8 and §1.1: the secret never shows (trace logs, replies,
/// status, events), and bad settings stop the start naming the variable,
/// never its value.
#[test]
fn credentials_never_show_and_bad_settings_are_named() {
    let Some(s3) = S3::start() else { return };
    let rx = Receiver::start(ANSWER);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let socket = dir.path().join("d.sock");
    let mut env = s3.env();
    let marker = "MARKER-5ecret-Zq9";
    env[2].1 = marker.into();
    let mut child = Command::new(SQM)
        .args(["serve", "--no-warmup", "--socket"])
        .arg(&socket)
        .arg("--output-dir")
        .arg(dir.path().join("out"))
        .args(["--watcher-url", &rx.base])
        .env("HOME", dir.path())
        .env("RUST_LOG", "trace")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    assert!(wait_for(|| socket.with_extension("pid").exists(), Duration::from_secs(20)), "no daemon");
    let mut c = crate::common::Conn::new(&socket);
    c.send(RANGER);
    let reply = c.reply();
    c.send(r#"{"id":"s","method":"status"}"#);
    let status = c.reply();
    assert!(wait_for(|| !rx.bodies().is_empty(), Duration::from_secs(3)), "no event");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains("upload"), "the trace log is there");
    for (what, text) in [
        ("stderr", stderr),
        ("reply", reply.to_string()),
        ("status", status.to_string()),
        ("events", json!(rx.bodies()).to_string()),
    ] {
        assert!(!text.contains(marker), "the secret shows in the {what}");
        assert!(!text.contains(KEY_ID), "the key id shows in the {what}");
        assert!(!text.contains("MARKER"), "part of the secret shows in the {what}");
    }

    for (env, expect) in [
        (vec![("R2_S3_ENDPOINT", "http://user:pw@127.0.0.1:9")], "R2_S3_ENDPOINT"),
        (vec![("R2_S3_ENDPOINT", "http://127.0.0.1:9"), ("R2_ACCESS_KEY_ID", "id")], "R2_SECRET_ACCESS_KEY is not set"),
    ] {
        let out = Command::new(SQM)
            .args(["serve", "--no-warmup", "--socket"])
            .arg(dir.path().join("e.sock"))
            .env("HOME", dir.path())
            .env_remove("AWS_ACCESS_KEY_ID")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(expect) && !err.contains("user:pw"), "{err}");
    }
}

/// Without an endpoint nothing changes: no `r2_key`, `enabled` false.
#[test]
fn without_a_store_replies_keep_their_shape() {
    let d = Daemon::start(&["--no-warmup", "--no-watcher"]);
    let reply = d.call(RANGER);
    assert!(reply["result"].get("r2_key").is_none(), "{reply}");
    let status = d.call(r#"{"id":"s","method":"status"}"#);
    assert_eq!(status["result"]["sqm"]["object_store"]["enabled"], false);
    let _: Value = status;
}

fn scene(id: &str, prompt: &str, generator: Value) -> Value {
    json!({"type": "RenderRequest", "request_id": id, "generator": generator, "prompt": prompt,
           "width": 512, "height": 512, "seed": 11})
}

fn decode_base64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// Example 9: `image_data` is the PNG at `uri` (or left out, with a
/// warning, over its cap); `generator` picks an enabled sqm backend,
/// refuses a disabled one and falls back, warning, for foreign names.
#[test]
fn zeromq_inlines_images_and_honours_generator() {
    let c = crate::common::Controller::bind(None);
    let d = c.worker(&["--zmq-include-image-data"]);
    c.send(&scene("i1", "a ruined watchtower", Value::Null));
    let r = c.recv();
    let path = r["uri"].as_str().unwrap().strip_prefix("file://").unwrap().to_owned();
    assert_eq!(decode_base64(r["image_data"].as_str().unwrap()), std::fs::read(&path).unwrap());
    assert_eq!(r["format"], "png");
    drop(d);
    let _d = c.worker(&["--zmq-include-image-data", "--zmq-image-data-max-bytes", "100"]);
    c.send(&scene("i2", "a ruined watchtower", Value::Null));
    let r = c.recv();
    let size = std::fs::metadata(r["uri"].as_str().unwrap().strip_prefix("file://").unwrap()).unwrap().len();
    assert!(r.get("image_data").is_none(), "{r}");
    assert_eq!(r["warnings"], json!([format!("image_data: omitted, PNG is {size} bytes (limit 100)")]));

    c.send(&scene("g1", "a ruined watchtower", json!("null")));
    let r = c.recv();
    assert_eq!((r["type"].clone(), r["backend"].clone()), (json!("ImageReady"), json!("null")), "{r}");
    c.send(&scene("g2", "a ruined watchtower", json!("flux")));
    let r = c.recv();
    assert_eq!(r["error"]["code"], "INVALID_REQUEST", "{r}");
    assert_eq!(r["error"]["message"], "generator 'flux' is not enabled on this worker (enabled: null, sketch)");
    c.send(&scene("g3", "a ruined watchtower", json!("vastai")));
    let r = c.recv();
    assert_eq!(r["backend"], "sketch", "{r}");
    assert!(
        r["warnings"].as_array().unwrap().contains(&json!("generator: 'vastai' is not an sqm backend; used 'sketch'")),
        "{r}"
    );
}

/// Example 9 (store) and the acceptance's two workers: each uploads its
/// results; the controller reads every one from the store by key (the
/// workers share no folder), and `uri` is the public URL.
#[test]
fn two_zeromq_workers_upload_and_the_controller_reads_the_store() {
    let Some(s3) = S3::start() else { return };
    let c = crate::common::Controller::bind(None);
    let extra = ["--object-store-public-url", "http://cdn.test/"];
    let mut env = s3.env();
    env.push(("SQM_TEST_SKETCH_DELAY_MS", "150".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let workers: Vec<Daemon> =
        (0..2).map(|_| Daemon::spawn_with_env(tempfile::tempdir().unwrap(), &c.worker_args(&extra), &env)).collect();
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..6 {
        c.send(&scene(&format!("w{i}"), &format!("a ruined watchtower, view {i}"), Value::Null));
    }
    let mut by_worker = [0usize; 2];
    for _ in 0..6 {
        let r = c.recv();
        let key = r["r2_key"].as_str().unwrap_or_else(|| panic!("{r}"));
        assert!(key.starts_with("artifacts/zmq/default/scenes/") && key.ends_with(".png"), "{key}");
        assert_eq!(r["uri"], format!("http://cdn.test/{key}"));
        let local = r["local_uri"].as_str().unwrap().strip_prefix("file://").unwrap().to_owned();
        let (bytes, content_type, _) = s3.get(key);
        assert!(bytes == std::fs::read(&local).unwrap(), "the object is the worker's file");
        assert_eq!(key, format!("artifacts/zmq/default/scenes/{}.png", sha256_hex(&bytes)));
        assert_eq!(content_type, "image/png");
        let w =
            workers.iter().position(|w| local.starts_with(w.dir.path().to_str().unwrap())).expect("a worker's file");
        by_worker[w] += 1;
    }
    assert!(by_worker.iter().all(|n| *n > 0), "both workers rendered: {by_worker:?}");
}

/// The `null` backend writes no file: nothing is uploaded, no `r2_key`.
/// A ZeroMQ result whose upload fails is an error result at its upload
/// stage. A drain waits for a running upload instead of cutting it off.
#[test]
fn no_file_no_upload_zeromq_failures_and_drains() {
    let Some(s3) = S3::start() else { return };
    let d = spawn(tempfile::tempdir().unwrap(), &["--no-watcher", "--backend", "null"], &s3.env());
    let reply = d.call(RANGER);
    assert!(reply["result"].is_object() && reply["result"].get("r2_key").is_none(), "{reply}");
    assert_eq!(d.call(r#"{"id":"s","method":"status"}"#)["result"]["sqm"]["object_store"]["uploads"], 0);
    assert_eq!(std::fs::read_dir(s3.root.path().join("sidequest")).unwrap().count(), 0);

    let env: [(&str, String); 3] =
        [("R2_S3_ENDPOINT", closed_port()), ("R2_ACCESS_KEY_ID", KEY_ID.into()), ("R2_SECRET_ACCESS_KEY", "x".into())];
    let c = crate::common::Controller::bind(None);
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _w = Daemon::spawn_with_env(tempfile::tempdir().unwrap(), &c.worker_args(&["--no-watcher"]), &env_ref);
    c.send(&scene("f1", "a ruined watchtower", Value::Null));
    let r = c.recv();
    assert_eq!((r["type"].clone(), r["uri"].clone()), (json!("ImageReady"), Value::Null), "{r}");
    assert_eq!(
        (r["error"]["code"].clone(), r["error"]["stage"].clone()),
        (json!("GENERATION_FAILED"), json!("upload"))
    );
    assert!(r["error"]["message"].as_str().unwrap().starts_with("upload failed: "), "{r}");

    // A store that never answers: SIGTERM during the upload still answers
    // the render with the upload's own outcome, then the daemon exits 0.
    let endpoint = silent_port();
    let env =
        vec![("R2_S3_ENDPOINT", endpoint), ("R2_ACCESS_KEY_ID", KEY_ID.into()), ("R2_SECRET_ACCESS_KEY", "x".into())];
    let mut d = spawn(tempfile::tempdir().unwrap(), &["--no-watcher", "--upload-timeout", "2"], &env);
    let mut conn = d.connect();
    conn.send(RANGER);
    std::thread::sleep(Duration::from_millis(500));
    d.signal(libc::SIGTERM);
    let reply = conn.reply();
    assert_eq!(reply["error"]["message"], "upload failed: timed out after 2 s", "{reply}");
    assert_eq!(d.wait(Duration::from_secs(10)), Some(0));
}
