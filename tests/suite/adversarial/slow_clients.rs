//! Hole 4: no backpressure per connection. A client that pipelines requests
//! and never reads used to make the daemon buffer replies without limit;
//! many clients holding long unfinished lines cost a megabyte each. Now
//! every connection has a bounded outbox (reading pauses until the client
//! reads), partial lines share a daemon-wide budget, and extra connections
//! beyond `--max-connections` are refused with one line.

use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::Daemon;
use super::support::rss_mib;

/// Writes `n` pings in chunks; returns when done or the socket breaks.
fn pipeline_pings(mut s: UnixStream, n: usize, sent: Arc<AtomicU64>) {
    let chunk = 10_000;
    let mut i = 0;
    while i < n {
        let mut buf = Vec::with_capacity(chunk * 40);
        for k in i..(i + chunk).min(n) {
            writeln!(buf, r#"{{"id":{k},"method":"ping"}}"#).unwrap();
        }
        if s.write_all(&buf).is_err() {
            return;
        }
        i += chunk;
        sent.store(i as u64, Ordering::Release);
    }
}

/// Waits until `sent` stops moving for `quiet` (the writer is blocked).
fn wait_stalled(sent: &AtomicU64, quiet: Duration, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    let mut last = (sent.load(Ordering::Acquire), Instant::now());
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = sent.load(Ordering::Acquire);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= quiet {
            break;
        }
    }
    last.0
}

#[test]
fn a_client_that_never_reads_cannot_grow_the_daemon() {
    let d = Daemon::spawn(&["--no-warmup"]);
    let base = rss_mib(d.pid());
    let s = UnixStream::connect(&d.socket).unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let writer = {
        let (s, sent) = (s.try_clone().unwrap(), sent.clone());
        std::thread::spawn(move || pipeline_pings(s, 1_000_000, sent))
    };
    let stalled_at = wait_stalled(&sent, Duration::from_millis(1500), Duration::from_secs(60));
    assert!(stalled_at < 1_000_000, "the daemon kept reading without a reader: backpressure missing");
    let peak = rss_mib(d.pid());
    assert!(peak < 200.0, "RSS {peak:.0} MiB while the client does not read (start {base:.0} MiB)");
    s.shutdown(Shutdown::Both).unwrap();
    writer.join().unwrap();
    drop(s);
    std::thread::sleep(Duration::from_millis(1500));
    let after = rss_mib(d.pid());
    assert!(after < 100.0, "RSS {after:.0} MiB after the client left");
    assert_eq!(d.call(r#"{"id":"p","method":"ping"}"#)["result"]["status"], "ok");
}

#[test]
fn backpressure_drops_no_reply_and_keeps_order() {
    let d = Daemon::start(&["--no-warmup", "--no-heartbeat"]);
    let s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let n = 200_000;
    let sent = Arc::new(AtomicU64::new(0));
    let writer = {
        let (s, sent) = (s.try_clone().unwrap(), sent.clone());
        std::thread::spawn(move || pipeline_pings(s, n, sent))
    };
    // Let the daemon stall on the unread replies first.
    wait_stalled(&sent, Duration::from_millis(500), Duration::from_secs(30));
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    for k in 0..n {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "EOF after {k} replies");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["id"], k, "reply {k} out of order or missing");
    }
    writer.join().unwrap();
}

#[test]
fn connections_over_the_limit_get_one_error_line() {
    let d = Daemon::start(&["--no-warmup", "--no-heartbeat", "--max-connections", "4"]);
    // The readiness probe's connection must be gone before we count.
    std::thread::sleep(Duration::from_millis(300));
    let mut held: Vec<_> = (0..4).map(|_| d.connect()).collect();
    for c in &mut held {
        c.send(r#"{"id":"in","method":"ping"}"#);
        assert_eq!(c.reply()["id"], "in");
    }
    let extra = UnixStream::connect(&d.socket).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut lines = BufReader::new(extra).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["id"], Value::Null);
    assert_eq!(first["error"]["message"], "too many connections; try again later");
    assert!(lines.next().is_none(), "closed after the one line");
    held.pop();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(d.call(r#"{"id":"again","method":"ping"}"#)["id"], "again");
}

#[test]
fn many_unfinished_long_lines_share_one_budget() {
    let d = Daemon::spawn(&["--no-warmup", "--no-heartbeat"]);
    let part = vec![b'x'; 1024 * 1024 - 16];
    let mut conns = Vec::new();
    for _ in 0..200 {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&part).unwrap();
        conns.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let peak = rss_mib(d.pid());
    assert!(peak < 200.0, "RSS {peak:.0} MiB with 200 unfinished 1 MiB lines");
    // Every line gets an answer once finished: over-budget ones an error.
    let mut errors = 0;
    for s in &mut conns {
        s.write_all(b"\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut line = String::new();
        BufReader::new(s.try_clone().unwrap()).read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        match v["error"]["code"].as_str() {
            // Within the budget: the line was read whole (and is not JSON).
            Some("PARSE_ERROR") => {}
            Some("INVALID_REQUEST") => {
                assert!(v["error"]["message"].as_str().unwrap().contains("too large"), "{v}");
                errors += 1;
            }
            other => panic!("{other:?}: {v}"),
        }
    }
    assert!(errors > 100, "the budget refused most of the 200 MB: {errors}");
    drop(conns);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(rss_mib(d.pid()) < 100.0);
}
