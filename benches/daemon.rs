//! Daemon round trips: ping p50/p99 and requests/second for 1 and 8
//! clients, on persistent connections and with one connection per request
//! (the game server's pattern).
//!
//! Baselines, in the same process and measured the same way: the physical
//! limit, a bare single-threaded responder (accept, read a line, write the
//! ping reply, nothing else), for the latency targets (persistent ≤ 1.2×,
//! connection per request ≤ 1.6×, the daemon's two accept-time heartbeat
//! lines included); and a thread-per-connection echo server for the
//! throughput ratios (the bare responder serves one client at a time).
//! Run with `cargo bench --bench daemon`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Answers every line with the daemon's ping reply (same shape and size).
fn answer_lines(stream: UnixStream) {
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
        let _ = w.write_all(b"{\"id\":\"b\",\"result\":{\"status\":\"ok\"}}\n");
        line.clear();
    }
}

/// A thread per connection.
fn echo_server(path: &Path) {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer_lines(stream));
        }
    });
}

/// One thread, one client at a time: the least a Unix-socket responder can do.
fn bare_responder(path: &Path) {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || listener.incoming().flatten().for_each(answer_lines));
}

/// Reads lines until a non-event one.
fn read_reply(r: &mut BufReader<UnixStream>, buf: &mut String) {
    loop {
        buf.clear();
        assert!(r.read_line(buf).unwrap() > 0, "server closed");
        if !buf.starts_with("{\"event\"") {
            return;
        }
    }
}

const PING: &[u8] = b"{\"id\":\"b\",\"method\":\"ping\"}\n";

/// Round-trip latencies (µs) of `n` pings by one client.
fn latencies(socket: &Path, n: usize, persistent: bool) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    let mut buf = String::new();
    let mut conn = persistent.then(|| {
        let s = UnixStream::connect(socket).unwrap();
        (s.try_clone().unwrap(), BufReader::new(s))
    });
    for _ in 0..n {
        let t = Instant::now();
        match conn.as_mut() {
            Some((w, r)) => {
                w.write_all(PING).unwrap();
                read_reply(r, &mut buf);
            }
            None => {
                let s = UnixStream::connect(socket).unwrap();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                w.write_all(PING).unwrap();
                read_reply(&mut r, &mut buf);
            }
        }
        out.push(t.elapsed().as_secs_f64() * 1e6);
    }
    out
}

fn throughput(socket: &Path, clients: usize, per_client: usize, persistent: bool) -> f64 {
    let t = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let s = socket.to_path_buf();
            std::thread::spawn(move || latencies(&s, per_client, persistent))
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    (clients * per_client) as f64 / t.elapsed().as_secs_f64()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// p50 latencies (µs): persistent connection, connection per request.
fn latency_only(label: &str, socket: &Path) -> [f64; 2] {
    latencies(socket, 500, true); // warm
    let mut persistent = latencies(socket, 20_000, true);
    let mut per_request = latencies(socket, 3_000, false);
    let r = [pct(&mut persistent, 0.5), pct(&mut per_request, 0.5)];
    println!("  {label:<9} ping p50 {:>6.1} µs (persistent) | p50 {:>6.1} µs (conn/request)", r[0], r[1]);
    r
}

fn measure(label: &str, socket: &Path) -> [f64; 6] {
    latencies(socket, 500, true); // warm
    let mut persistent = latencies(socket, 20_000, true);
    let mut per_request = latencies(socket, 3_000, false);
    let r = [
        pct(&mut persistent, 0.5),
        pct(&mut persistent, 0.99),
        pct(&mut per_request, 0.5),
        throughput(socket, 1, 10_000, true),
        throughput(socket, 8, 5_000, true),
        throughput(socket, 8, 1_000, false),
    ];
    println!(
        "  {label:<9} ping p50 {:>6.1} µs  p99 {:>6.1} µs (persistent) | p50 {:>6.1} µs (conn/request) | {:>7.0} req/s 1 client, {:>7.0} req/s 8 clients, {:>6.0} req/s 8 clients conn/request",
        r[0], r[1], r[2], r[3], r[4], r[5]
    );
    r
}

fn main() {
    let dir = std::env::temp_dir().join(format!("sqm-bench-daemon-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let echo: PathBuf = dir.join("echo.sock");
    echo_server(&echo);
    let bare = dir.join("bare.sock");
    bare_responder(&bare);
    let socket = dir.join("d.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sqm"))
        .args(["serve", "--no-warmup", "--socket"])
        .arg(&socket)
        .arg("--output-dir")
        .arg(dir.join("out"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("daemon round trips ({} cores)", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let limit = latency_only("bare", &bare);
    let base = measure("echo", &echo);
    let d = measure("sqm", &socket);
    println!(
        "  ratio sqm/bare (the physical limit): ping p50 {:.2}x persistent (target ≤ 1.20x), {:.2}x conn/request (target ≤ 1.60x)",
        d[0] / limit[0],
        d[2] / limit[1]
    );
    println!(
        "  ratio sqm/echo: p50 {:.2}x, 1-client req/s {:.2}x, 8-client req/s {:.2}x, conn/request req/s {:.2}x",
        d[0] / base[0],
        d[3] / base[3],
        d[4] / base[4],
        d[5] / base[5]
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
