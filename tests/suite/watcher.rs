//! Watcher events to the game server (remote-and-telemetry.md §4,
//! acceptance examples 5 and 7), against an HTTP receiver started here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{wait_for, Daemon};
use serde_json::{json, Value};

pub(crate) const ANSWER: u8 = 0;
const STALL: u8 = 1;

/// Records each POST's body and answers 204, or, while stalled, reads the
/// request and never answers.
pub(crate) struct Receiver {
    pub(crate) base: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    mode: Arc<AtomicU8>,
}

impl Receiver {
    pub(crate) fn start(mode: u8) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(AtomicU8::new(mode));
        let (b, m) = (bodies.clone(), mode.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (b, m) = (b.clone(), m.clone());
                std::thread::spawn(move || serve(stream, &b, &m));
            }
        });
        Receiver { base, bodies, mode }
    }

    pub(crate) fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, bodies: &Mutex<Vec<Value>>, mode: &AtomicU8) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        assert_eq!(request_line.trim_end(), "POST /internal/watcher/emit HTTP/1.1");
        let mut length = 0;
        let mut content_type = String::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            match k.to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().unwrap(),
                "content-type" => content_type = v.trim().to_owned(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        if mode.load(Ordering::SeqCst) == STALL {
            // Hold the connection, say nothing.
            std::thread::sleep(Duration::from_secs(5));
            return;
        }
        assert_eq!(content_type, "application/json");
        bodies.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
        out.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
    }
}

fn compose_failure(id: &str, render_id: Option<&str>) -> String {
    let mut params = json!({"tier": "portrait", "subject": "orc", "genre": "nope", "world": "w"});
    if let Some(r) = render_id {
        params["render_id"] = json!(r);
    }
    json!({"id": id, "method": "render", "params": params}).to_string()
}

/// Example 5: protocol.md's r4 gets COMPOSE_FAILED, and the game server
/// gets exactly one `daemon_compose_failed` event.
#[test]
fn a_compose_failure_is_posted_once() {
    let rx = Receiver::start(ANSWER);
    let d = Daemon::start(&["--no-warmup", "--watcher-url", &format!("{}/", rx.base)]);
    let reply = d.call(&compose_failure("r4", None));
    assert_eq!(reply["error"]["code"], "COMPOSE_FAILED", "{reply}");
    assert!(wait_for(|| !rx.bodies().is_empty(), Duration::from_secs(3)), "no event arrived");
    std::thread::sleep(Duration::from_millis(200));
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let message = bodies[0]["fields"]["error_message"].as_str().unwrap().to_owned();
    assert!(message.starts_with("unknown genre 'nope' under "), "{message}");
    assert!(reply["error"]["message"].as_str().unwrap().contains(&message), "{reply}");
    assert_eq!(
        bodies[0],
        json!({
            "event_type": "daemon_compose_failed",
            "fields": {"tier": "portrait", "error_type": "StyleMissError", "error_message": message,
                       "world": "w", "genre": "nope", "render_id": ""},
            "component": "daemon"
        })
    );
    let status = d.call(r#"{"id":"s","method":"status"}"#);
    let w = &status["result"]["sqm"]["watcher"];
    assert_eq!((w["sent"].as_u64(), w["failed"].as_u64(), w["queued"].as_u64()), (Some(1), Some(0), Some(0)), "{w}");
    assert_eq!(w["url"], format!("{}/internal/watcher/emit", rx.base));
    assert!(d.call(r#"{"id":"s","method":"status"}"#)["result"]["sqm"]["watcher"].is_object());
    let off = Daemon::start(&["--no-warmup", "--no-watcher"]);
    assert!(off.call(r#"{"id":"s","method":"status"}"#)["result"]["sqm"]["watcher"].is_null());
}

fn median_reply_ms(d: &Daemon) -> f64 {
    let mut c = d.connect();
    let mut times: Vec<f64> = (0..7)
        .map(|i| {
            let started = Instant::now();
            c.send(&compose_failure(&format!("t{i}"), None));
            assert_eq!(c.reply()["error"]["code"], "COMPOSE_FAILED");
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    times[3]
}

/// Example 7: a stalled receiver slows no reply; 300 events while it
/// stalls are all accounted for, the oldest dropped, and what is delivered
/// later is the newest, in order, with one warning in the log.
#[test]
fn a_stalled_receiver_costs_replies_nothing_and_drops_the_oldest() {
    let rx = Receiver::start(STALL);
    let quiet = Daemon::start(&["--no-warmup", "--no-watcher"]);
    let stalled = Daemon::start(&["--no-warmup", "--watcher-url", &rx.base]);
    let (base, slow) = (median_reply_ms(&quiet), median_reply_ms(&stalled));
    assert!(slow <= base + 50.0, "{slow:.1} ms with a stalled receiver against {base:.1} ms without");
    drop((quiet, stalled));

    let d = Daemon::spawn_with_env(
        tempfile::tempdir().unwrap(),
        &["--no-warmup", "--watcher-url", &rx.base],
        &[("RUST_LOG", "sqm=warn,sqm::daemon::watcher=info")],
    );
    // One at a time, so the events are emitted in request order (pipelined
    // requests are prepared concurrently and may fail in any order).
    let mut c = d.connect();
    for i in 0..300 {
        c.send(&compose_failure(&format!("p{i}"), Some(&format!("n{i}"))));
        assert_eq!(c.reply()["error"]["code"], "COMPOSE_FAILED");
    }
    let w = d.call(r#"{"id":"s","method":"status"}"#)["result"]["sqm"]["watcher"].clone();
    let total: u64 = ["sent", "failed", "dropped", "queued"].iter().map(|k| w[k].as_u64().unwrap()).sum();
    assert_eq!(total, 300, "{w}");
    assert!(w["dropped"].as_u64().unwrap() >= 43, "{w}");
    // The receiver recovers: the queue drains, newest events, in order.
    rx.mode.store(ANSWER, Ordering::SeqCst);
    assert!(
        wait_for(
            || d.call(r#"{"id":"s","method":"status"}"#)["result"]["sqm"]["watcher"]["queued"] == 0,
            Duration::from_secs(15)
        ),
        "the queue did not drain"
    );
    let ids: Vec<u64> = rx
        .bodies()
        .iter()
        .map(|b| b["fields"]["render_id"].as_str().unwrap().trim_start_matches('n').parse().unwrap())
        .collect();
    let mut uniq = ids.clone();
    uniq.sort();
    uniq.dedup();
    assert!(
        !ids.is_empty() && ids.windows(2).all(|p| p[0] < p[1]),
        "{} ids, {} unique, status {w} {ids:?}",
        ids.len(),
        uniq.len()
    );
    assert_eq!(ids.last(), Some(&299));
    let w = d.call(r#"{"id":"s","method":"status"}"#)["result"]["sqm"]["watcher"].clone();
    assert_eq!(w["sent"].as_u64(), Some(ids.len() as u64), "{w}");
    let log = d.stop_and_stderr();
    let warnings = log.lines().filter(|l| l.contains(" WARN ") && l.contains("watcher")).count();
    assert_eq!(warnings, 1, "{log}");
    assert!(log.contains("watcher events are delivered again"), "{log}");
}

/// A render timeout is reported with its recovery (remote-and-telemetry.md
/// §4.2, `daemon.render_timeout`).
#[test]
fn a_render_timeout_is_posted_with_its_recovery() {
    let rx = Receiver::start(ANSWER);
    let d = Daemon::spawn_with_env(
        tempfile::tempdir().unwrap(),
        &["--no-warmup", "--render-timeout", "1", "--watcher-url", &rx.base],
        &[("SQM_TEST_SKETCH_DELAY_MS", "5000")],
    );
    let req = json!({"id": "r", "method": "render", "params": {"tier": "portrait", "positive_prompt": "a gaunt ranger", "seed": 7}});
    assert_eq!(d.call(&req.to_string())["error"]["code"], "RENDER_TIMEOUT");
    assert!(wait_for(|| !rx.bodies().is_empty(), Duration::from_secs(3)), "no event arrived");
    let body = &rx.bodies()[0];
    assert_eq!(body["event_type"], "daemon.render_timeout", "{body}");
    let f = &body["fields"];
    assert_eq!(
        (
            f["tier"].as_str(),
            f["backend"].as_str(),
            f["timeout_s"].as_u64(),
            f["waiters"].as_u64(),
            f["recovery"].as_str()
        ),
        (Some("portrait"), Some("sketch"), Some(1), Some(1), Some("cancelled")),
        "{body}"
    );
    assert!(f["elapsed_ms"].as_u64().unwrap() >= 1000, "{body}");
    assert_eq!(body["component"], "daemon");
}

/// Example 6: composer v2's example 1 is reported as `render.prompt_composed`
/// with its layers and their token estimates.
#[test]
fn a_v2_composition_is_posted_with_its_layers() {
    let rx = Receiver::start(ANSWER);
    let packs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/composer_v2");
    let d = Daemon::start(&["--no-warmup", "--genre-packs", packs.to_str().unwrap(), "--watcher-url", &rx.base]);
    let ok = d.call(r#"{"id":1,"method":"render","params":{"tier":"portrait","subject":"Rux","characters":["npc:rux"],"genre":"testgenre","world":"testworld"}}"#);
    assert!(ok["result"]["image_path"].is_string(), "{ok}");
    assert!(wait_for(|| !rx.bodies().is_empty(), Duration::from_secs(3)), "no event arrived");
    let layer =
        |slot: &str, source: &str, tokens: u64| json!({"slot": slot, "source": source, "estimated_tokens": tokens});
    assert_eq!(
        rx.bodies()[0],
        json!({
            "event_type": "render.prompt_composed",
            "fields": {
                "kind": "portrait", "world": "testworld", "genre": "testgenre", "total_estimated_tokens": 58,
                "layers": [
                    layer("ART_SENSIBILITY.GENRE", "genre:testgenre", 10),
                    layer("ART_SENSIBILITY.WORLD", "world:testgenre/testworld", 6),
                    layer("CASTING", "npc:rux", 26),
                    layer("DIRECTION_ACTION", "npc:rux.default_pose", 6),
                    layer("DIRECTION_CAMERA", "portrait_3q", 0),
                    layer("ART_SENSIBILITY.CULTURE", "culture:testgenre/testworld/ironhand", 10),
                ],
                "dropped_layers": [], "warnings": [],
                "genre_style_applied": true, "world_style_applied": true,
                "fidelity": null, "model_variant": "sketch", "steps": 12
            },
            "component": "daemon"
        })
    );
}
