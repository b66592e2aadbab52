//! With `--features otlp`: the daemon exports its spans over OTLP/HTTP to
//! the endpoint in OTEL_EXPORTER_OTLP_ENDPOINT, with the reference
//! daemon's span names and attribute keys (remote-and-telemetry.md §5).
//! `cargo test --release --features otlp --test suite otlp::`

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

/// A minimal collector: accepts POSTs, sends (request line, body) on.
fn collector() -> (String, mpsc::Receiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel::<(String, Vec<u8>)>();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || loop {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                // Read headers, then Content-Length bytes of body.
                let (head_end, len) = loop {
                    let n = s.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break (None, 0);
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..p]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        break (Some(p + 4), len);
                    }
                };
                let Some(start) = head_end else { return };
                while buf.len() < start + len {
                    let n = s.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let line =
                    String::from_utf8_lossy(&buf[..buf.iter().position(|&b| b == b'\r').unwrap_or(0)]).into_owned();
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n");
                let _ = tx.send((line, buf[start..start + len].to_vec()));
            });
        }
    });
    (format!("http://127.0.0.1:{port}"), rx)
}

/// One protobuf field: (number, varint / fixed value, or bytes).
enum Field<'a> {
    Int(u64),
    Bytes(&'a [u8]),
}

fn varint(b: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = b[*at];
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    v
}

/// The fields of one protobuf message, in order.
fn fields(b: &[u8]) -> Vec<(u64, Field<'_>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let tag = varint(b, &mut at);
        let field = match tag & 7 {
            0 => Field::Int(varint(b, &mut at)),
            1 => {
                at += 8;
                Field::Int(u64::from_le_bytes(b[at - 8..at].try_into().unwrap()))
            }
            2 => {
                let n = varint(b, &mut at) as usize;
                at += n;
                Field::Bytes(&b[at - n..at])
            }
            5 => {
                at += 4;
                Field::Int(u64::from(u32::from_le_bytes(b[at - 4..at].try_into().unwrap())))
            }
            w => panic!("protobuf wire type {w}"),
        };
        out.push((tag >> 3, field));
    }
    out
}

fn sub(b: &[u8], n: u64) -> Vec<&[u8]> {
    fields(b)
        .into_iter()
        .filter(|(f, _)| *f == n)
        .filter_map(|(_, v)| if let Field::Bytes(x) = v { Some(x) } else { None })
        .collect()
}

/// An exported span: ids, name, attributes (as JSON), error status.
#[derive(Debug, Clone)]
struct Span {
    id: Vec<u8>,
    parent: Vec<u8>,
    name: String,
    attrs: BTreeMap<String, serde_json::Value>,
    error: bool,
}

/// ExportTraceServiceRequest → resource_spans(1) → scope_spans(2) → spans(2).
fn spans_of(body: &[u8]) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in sub(body, 1) {
        for ss in sub(rs, 2) {
            for sp in sub(ss, 2) {
                let mut span =
                    Span { id: vec![], parent: vec![], name: String::new(), attrs: BTreeMap::new(), error: false };
                for (n, v) in fields(sp) {
                    match (n, v) {
                        (2, Field::Bytes(x)) => span.id = x.to_vec(),
                        (4, Field::Bytes(x)) => span.parent = x.to_vec(),
                        (5, Field::Bytes(x)) => span.name = String::from_utf8_lossy(x).into_owned(),
                        (9, Field::Bytes(kv)) => {
                            let key = String::from_utf8_lossy(sub(kv, 1)[0]).into_owned();
                            let value = sub(kv, 2).first().map(|any| match fields(any).into_iter().next() {
                                Some((1, Field::Bytes(s))) => json!(String::from_utf8_lossy(s)),
                                Some((2, Field::Int(v))) => json!(v != 0),
                                Some((3, Field::Int(v))) => json!(v as i64),
                                Some((4, Field::Int(v))) => json!(f64::from_bits(v)),
                                _ => json!(null),
                            });
                            span.attrs.insert(key, value.unwrap_or(json!(null)));
                        }
                        (15, Field::Bytes(status)) => {
                            span.error = fields(status).iter().any(|(n, v)| *n == 3 && matches!(v, Field::Int(2)));
                        }
                        _ => {}
                    }
                }
                out.push(span);
            }
        }
    }
    out
}

fn keys(s: &Span) -> BTreeSet<&str> {
    s.attrs.keys().map(String::as_str).collect()
}

fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    names.iter().copied().collect()
}

#[test]
fn request_spans_reach_the_collector() {
    let (endpoint, rx) = collector();
    let d = common::Daemon::spawn_with_env(
        tempfile::tempdir().unwrap(),
        &["--no-warmup"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), ("OTEL_BSP_SCHEDULE_DELAY", "100")],
    );
    let r = d.call(r#"{"id":"otel-ping","method":"ping"}"#);
    assert!(r.get("result").is_some(), "{r}");
    let (line, body) = rx.recv_timeout(Duration::from_secs(20)).expect("no export within 20 s");
    assert!(line.starts_with("POST /v1/traces"), "{line}");
    let spans = spans_of(&body);
    let ping = spans.iter().find(|s| s.name == "request").expect("a request span");
    // The request id as JSON, as every log line shows it.
    assert_eq!(ping.attrs["id"], r#""otel-ping""#);
    assert_eq!(ping.attrs["method"], "ping");
}

/// The spans of §5's table, their parents and their exact keys, over a
/// render uploaded to a real S3 server, an embed, a compose failure,
/// narration the interpreter classifies or skips, and a warm-up.
#[test]
fn reference_spans_have_the_reference_names_and_keys() {
    let Some(s3) = crate::object_store::S3::start() else { return };
    let (endpoint, rx) = collector();
    let mut env: Vec<(&str, String)> = s3.env();
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint));
    env.push(("OTEL_BSP_SCHEDULE_DELAY", "100".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let model = common::embed_model();
    let d = common::Daemon::spawn_with_env(
        tempfile::tempdir().unwrap(),
        &["--no-warmup", "--no-watcher", "--embed-model", &model],
        &env,
    );
    let render = d.call(r#"{"id":"u1","method":"render","params":{"tier":"portrait","positive_prompt":"a gaunt ranger","seed":7,"genre":"ashfall","world":"cinder-reach","session_id":"room-42"}}"#);
    let r2_key = render["result"]["r2_key"].as_str().unwrap_or_else(|| panic!("{render}")).to_owned();
    assert!(d.call(r#"{"id":"e1","method":"embed","params":{"text":"the ash falls"}}"#)["result"].is_object());
    let failed = d.call(
        r#"{"id":"c1","method":"render","params":{"tier":"portrait","subject":"orc","genre":"nope","world":"w"}}"#,
    );
    assert_eq!(failed["error"]["code"], "COMPOSE_FAILED");
    let narrated = r#"{"id":"n1","method":"render","params":{"tier":"","narration":"You step into the Obsidian Citadel, its black towers rising over the ash plains."}}"#;
    assert!(d.call(narrated)["result"].is_object());
    let supplied = r#"{"id":"n2","method":"render","params":{"tier":"landscape","subject":"a ruined gate","narration":"You step into the Obsidian Citadel."}}"#;
    assert!(d.call(supplied)["result"].is_object());
    assert!(d.call(r#"{"id":"w1","method":"warm_up","params":{"worker":"image"}}"#)["result"].is_object());

    let wanted = [
        "daemon.dispatch.render",
        "render.completed",
        "daemon.r2.upload.start",
        "daemon.r2.upload.success",
        "sqm.backend.render",
        "daemon.dispatch.embed",
        "compose.failed",
        "scene_interpreter.classified",
        "scene_interpreter.skipped",
        "sqm.backend.warm_up",
    ];
    let mut spans: Vec<Span> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !wanted.iter().all(|w| spans.iter().any(|s| s.name == *w)) && Instant::now() < deadline {
        if let Ok((_, body)) = rx.recv_timeout(Duration::from_millis(200)) {
            spans.extend(spans_of(&body));
        }
    }
    let names: BTreeSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for w in wanted {
        assert!(names.contains(w), "no {w} span among {names:?}");
    }
    let one = |name: &str, pred: &dyn Fn(&Span) -> bool| -> Span {
        spans.iter().find(|s| s.name == name && pred(s)).unwrap_or_else(|| panic!("no matching {name}")).clone()
    };
    let completed = one("render.completed", &|s| s.attrs["session_id"] == "room-42");
    assert_eq!(
        keys(&completed),
        set(&[
            "genre",
            "world",
            "session_id",
            "r2_key",
            "tier",
            "prompt_length",
            "genre_style_applied",
            "world_style_applied"
        ])
    );
    assert_eq!(completed.attrs["r2_key"], r2_key.as_str());
    assert_eq!(completed.attrs["prompt_length"], json!("a gaunt ranger".len()));
    assert_eq!(
        (completed.attrs["genre_style_applied"].clone(), completed.attrs["tier"].clone()),
        (json!(false), json!("portrait"))
    );
    let dispatch = one("daemon.dispatch.render", &|s| s.id == completed.parent);
    assert!(dispatch.parent.is_empty(), "daemon.dispatch.render is a root span");
    assert_eq!(
        keys(&dispatch),
        set(&["lock_name", "tier", "queue_wait_ms", "work_ms", "upload_ms", "cached", "backend"])
    );
    assert_eq!(
        (dispatch.attrs["lock_name"].clone(), dispatch.attrs["cached"].clone()),
        (json!("render_lock"), json!(false))
    );
    assert!(dispatch.attrs["queue_wait_ms"].is_i64() && dispatch.attrs["upload_ms"].is_i64());
    let start = one("daemon.r2.upload.start", &|s| s.parent == dispatch.id);
    assert_eq!(keys(&start), set(&["upload.kind", "upload.world", "upload.session", "upload.bytes"]));
    assert_eq!(
        (start.attrs["upload.kind"].clone(), start.attrs["upload.world"].clone()),
        (json!("portraits"), json!("cinder-reach"))
    );
    let success = one("daemon.r2.upload.success", &|s| s.parent == dispatch.id);
    assert_eq!(keys(&success), set(&["upload.kind", "upload.key", "upload.ms", "upload.bytes"]));
    assert_eq!(success.attrs["upload.key"], r2_key.as_str());
    let backend = one("sqm.backend.render", &|s| s.parent == dispatch.id);
    assert_eq!(
        keys(&backend),
        set(&[
            "model.variant",
            "worker.fidelity",
            "render.tier",
            "render.seed",
            "render.width",
            "render.height",
            "render.steps",
            "render.guidance",
            "render.prompt_length",
            "render.negative_length",
            "render.elapsed_ms",
        ])
    );
    assert_eq!(
        (backend.attrs["render.seed"].clone(), backend.attrs["model.variant"].clone()),
        (json!(7), json!("sketch-v1"))
    );
    assert!(!backend.error);

    let embed = one("daemon.dispatch.embed", &|_| true);
    assert!(embed.parent.is_empty());
    assert_eq!(keys(&embed), set(&["lock_name", "text_len", "work_ms"]), "exactly the reference's keys");
    assert_eq!((embed.attrs["lock_name"].clone(), embed.attrs["text_len"].clone()), (json!("embed_lock"), json!(13)));
    let request = one("request", &|s| s.attrs.get("id") == Some(&json!(r#""e1""#)));
    assert!(request.parent.is_empty());
    for k in ["queue_wait_ms", "work_ms", "outcome"] {
        assert!(request.attrs.contains_key(k), "the request span lacks {k}: {:?}", request.attrs);
    }

    let compose = one("compose.failed", &|_| true);
    assert!(compose.parent.is_empty());
    assert_eq!(keys(&compose), set(&["tier", "error_type", "error_message", "world", "genre"]));
    assert_eq!(compose.attrs["error_type"], "StyleMissError");
    let classified = one("scene_interpreter.classified", &|_| true);
    assert_eq!(keys(&classified), set(&["tier", "subject", "source"]));
    assert_eq!(
        (classified.attrs["subject"].clone(), classified.attrs["source"].clone()),
        (json!("Obsidian Citadel"), json!("rule_match"))
    );
    let skipped = one("scene_interpreter.skipped", &|_| true);
    assert_eq!(keys(&skipped), set(&["reason", "tier"]));
    assert_eq!(skipped.attrs["reason"], "server_supplied_visual_block");
    let warm = one("sqm.backend.warm_up", &|_| true);
    assert!(warm.parent.is_empty());
    assert_eq!(
        keys(&warm),
        set(&["model.name", "model.variant", "worker.fidelity", "model.quantize", "warmup.elapsed_ms"])
    );
}
