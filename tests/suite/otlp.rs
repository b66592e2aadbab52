//! With `--features otlp`: the daemon exports its request spans over
//! OTLP/HTTP to the endpoint in OTEL_EXPORTER_OTLP_ENDPOINT.
//! `cargo test --release --features otlp --test suite otlp::`

use crate::common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn request_spans_reach_the_collector() {
    // A minimal collector: accepts POSTs, records paths and bodies.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel::<(String, Vec<u8>)>();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
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
                        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                        .unwrap_or(0);
                    break (Some(p + 4), len);
                }
            };
            let Some(start) = head_end else { continue };
            while buf.len() < start + len {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let line = String::from_utf8_lossy(&buf[..buf.iter().position(|&b| b == b'\r').unwrap_or(0)]).into_owned();
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n");
            let _ = tx.send((line, buf[start..].to_vec()));
        }
    });
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{port}"));
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");
    let d = common::Daemon::spawn(&["--no-warmup"]);
    let r = d.call(r#"{"id":"otel-ping","method":"ping"}"#);
    assert!(r.get("result").is_some(), "{r}");
    let (line, body) = rx.recv_timeout(Duration::from_secs(20)).expect("no export within 20 s");
    assert!(line.starts_with("POST /v1/traces"), "{line}");
    // The protobuf carries the span name and the request id as strings.
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("request"), "span name missing");
    assert!(text.contains("otel-ping"), "request id missing");
}
