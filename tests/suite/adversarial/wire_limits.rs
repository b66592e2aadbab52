//! Smaller holes on the socket: a 900 KB `id` or `method` echoed back in a
//! 900 KB reply (the client reads 64 KiB lines), `channel: 5` accepted as
//! "all", and private output folders created 0755.

use std::os::unix::fs::PermissionsExt;

use serde_json::{json, Value};

use super::common::Daemon;

#[test]
fn an_overlong_id_gets_invalid_request_with_a_null_id() {
    let d = Daemon::start(&["--no-warmup"]);
    let mut c = d.connect();
    let id = "x".repeat(900_000);
    c.send(&json!({"id": id, "method": "ping"}).to_string());
    let mut reader = std::io::BufReader::new(&c.stream);
    let mut line = String::new();
    loop {
        line.clear();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        if !line.contains("\"event\"") {
            break;
        }
    }
    assert!(line.len() < 64 * 1024, "reply of {} bytes", line.len());
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["id"], Value::Null);
    assert_eq!(v["error"]["code"], "INVALID_REQUEST");
    // A normal id still works on the same daemon.
    assert_eq!(d.call(r#"{"id":"ok","method":"ping"}"#)["id"], "ok");
}

#[test]
fn an_overlong_method_is_not_echoed() {
    let d = Daemon::start(&["--no-warmup"]);
    let method = "m".repeat(900_000);
    let r = d.call(&json!({"id": 1, "method": method}).to_string());
    assert_eq!(r["error"]["code"], "UNKNOWN_METHOD");
    assert!(r.to_string().len() < 1024, "{}", r.to_string().len());
}

#[test]
fn error_messages_that_quote_a_param_stay_short() {
    let d = Daemon::start(&["--no-warmup"]);
    let tier = "t".repeat(900_000);
    let r =
        d.call(&json!({"id": "big", "method": "render", "params": {"tier": tier, "positive_prompt": "x"}}).to_string());
    assert_eq!(r["id"], "big");
    assert_eq!(r["error"]["code"], "GENERATION_FAILED", "{}", &r.to_string()[..200]);
    assert!(r.to_string().len() <= 4200, "{}", r.to_string().len());
}

#[test]
fn audio_channel_must_be_a_string() {
    let d = Daemon::start(&["--no-warmup", "--audio-null-sink"]);
    for method in ["audio_stop", "audio_volume"] {
        let r = d.call(&json!({"id": 1, "method": method, "params": {"channel": 5, "volume": 0.5}}).to_string());
        assert_eq!(r["error"]["code"], "INVALID_REQUEST", "{method}: {r}");
        assert_eq!(r["error"]["message"], "'channel' must be a string", "{r}");
    }
    let r = d.call(&json!({"id": 2, "method": "audio_stop", "params": {"channel": "music"}}).to_string());
    assert!(r.get("result").is_some(), "{r}");
}

#[test]
fn the_output_folder_and_its_subfolders_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir, &["--no-warmup"]);
    let r = d.call(r#"{"id":"r","method":"render","params":{"tier":"portrait","subject":"a smith"}}"#);
    assert!(r.get("result").is_some(), "{r}");
    for p in [d.out.clone(), d.out.join("sketch")] {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", p.display());
    }
}
