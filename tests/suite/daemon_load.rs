//! Load: 200 concurrent clients × 200 requests each against the real
//! daemon on a temp socket (loopback only, bounded). Zero errors allowed;
//! reports the daemon's peak RSS.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::Daemon;

#[test]
fn two_hundred_clients_two_hundred_requests_each() {
    const CLIENTS: usize = 200;
    const REQUESTS: usize = 200;
    let d = Daemon::spawn(&["--no-warmup"]);
    let errors = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let socket = d.socket.clone();
            let (errors, ok) = (errors.clone(), ok.clone());
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut conn = common::Conn::new(&socket);
                    for i in 0..REQUESTS {
                        let line = if i % 50 == 49 {
                            format!(r#"{{"id":"{c}-{i}","method":"status"}}"#)
                        } else {
                            format!(r#"{{"id":"{c}-{i}","method":"ping"}}"#)
                        };
                        conn.send(&line);
                        let reply = conn.reply();
                        if reply["id"] == format!("{c}-{i}") && reply.get("result").is_some() {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
                .unwrap()
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = started.elapsed();
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let peak = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: ?").to_owned();
    println!(
        "load: {} requests from {CLIENTS} clients in {:.2} s ({:.0} req/s), {} errors; daemon peak RSS {}",
        ok.load(Ordering::Relaxed) + errors.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        (CLIENTS * REQUESTS) as f64 / elapsed.as_secs_f64(),
        errors.load(Ordering::Relaxed),
        peak.trim_start_matches("VmHWM:").trim()
    );
    assert_eq!(errors.load(Ordering::Relaxed), 0);
    assert_eq!(ok.load(Ordering::Relaxed), CLIENTS * REQUESTS);
    // Still healthy afterwards.
    assert_eq!(d.call(r#"{"id":"after","method":"ping"}"#)["result"]["status"], "ok");
}
