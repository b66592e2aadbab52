//! Embedding speed on the CPU, side by side with the reference.
//!
//! Texts: the 60 narration paragraphs of `benches/data/embed_paragraphs.txt`
//! (≈ 50 words, 60–80 tokens each). Printed, in one run:
//! - sqm in-process (its own encoder, and candle's f32 BERT, the engine sqm
//!   used first): single-text latency p50/p90 and batch-64 throughput, with
//!   where a single text's time goes (tokenizing, the encoder, the JSON);
//! - the reference, sentence-transformers on PyTorch, measured in a child
//!   interpreter on the same texts when `SQM_REFERENCE_PYTHON` (default
//!   `python3`) has it, e.g. `python3 -m venv /tmp/st && /tmp/st/bin/pip
//!   install sentence-transformers`, then
//!   `SQM_REFERENCE_PYTHON=/tmp/st/bin/python cargo bench --bench embed`;
//! - the daemon: `embed` round trips from one client against the
//!   in-process call, and p99 over 8 concurrent clients, idle and while
//!   renders run back to back.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqm::embed::{EngineChoice, MiniLm};

const ROUNDS: usize = 3;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

struct Figures {
    p50: f64,
    p90: f64,
    per_s: f64,
}

/// Single-text latency over every text `ROUNDS` times, and batch-64 throughput.
fn measure(model: &MiniLm, texts: &[String], batch: &[&str]) -> Figures {
    for t in texts.iter().take(10) {
        model.embed(t).unwrap();
    }
    let lat = sorted(
        (0..ROUNDS)
            .flat_map(|_| texts.iter())
            .map(|t| {
                let start = Instant::now();
                model.embed(t).unwrap();
                ms(start.elapsed())
            })
            .collect(),
    );
    model.embed_batch(batch).unwrap();
    let start = Instant::now();
    let rounds = 5;
    for _ in 0..rounds {
        model.embed_batch(batch).unwrap();
    }
    let per_s = (batch.len() * rounds) as f64 / start.elapsed().as_secs_f64();
    Figures { p50: pct(&lat, 0.5), p90: pct(&lat, 0.9), per_s }
}

fn reference(python: &str, dir: &Path, texts: &Path) -> Result<Figures, String> {
    let script = r#"
import sys, time
try:
    import torch
    from sentence_transformers import SentenceTransformer
except ImportError:
    sys.exit(3)
model_dir, texts_path, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
texts = [l.strip() for l in open(texts_path, encoding="utf-8") if l.strip()]
m = SentenceTransformer(model_dir, device="cpu")
for t in texts[:10]: m.encode([t])
lat = []
for _ in range(rounds):
    for t in texts:
        s = time.perf_counter(); m.encode([t]); lat.append((time.perf_counter() - s) * 1e3)
lat.sort()
batch = (texts * 2)[:64]
m.encode(batch, batch_size=64)
s = time.perf_counter()
for _ in range(5): m.encode(batch, batch_size=64)
tps = 64 * 5 / (time.perf_counter() - s)
print(lat[round((len(lat) - 1) * 0.5)], lat[round((len(lat) - 1) * 0.9)], tps, torch.get_num_threads())
"#;
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(dir)
        .arg(texts)
        .arg(ROUNDS.to_string())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if out.status.code() == Some(3) {
        return Err(format!("{python} has no sentence-transformers (set SQM_REFERENCE_PYTHON)"));
    }
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("failed").to_owned());
    }
    let nums: Vec<f64> =
        String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|x| x.parse().ok()).collect();
    match nums[..] {
        [p50, p90, per_s, threads] => {
            println!("  reference  torch threads {threads}");
            Ok(Figures { p50, p90, per_s })
        }
        _ => Err("unreadable output".into()),
    }
}

/// One client of the daemon.
struct Client {
    w: UnixStream,
    r: BufReader<UnixStream>,
    line: String,
    n: u64,
}

impl Client {
    fn new(socket: &Path) -> Client {
        let w = UnixStream::connect(socket).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        Client { w, r, line: String::new(), n: 0 }
    }

    /// Sends one request and reads lines (skipping heartbeats) until its reply.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.n += 1;
        let id = self.n.to_string();
        let mut req = json!({"id": id, "method": method, "params": params}).to_string();
        req.push('\n');
        self.w.write_all(req.as_bytes()).unwrap();
        loop {
            self.line.clear();
            assert!(self.r.read_line(&mut self.line).unwrap() > 0, "daemon closed the connection");
            let v: Value = serde_json::from_str(&self.line).unwrap();
            if v["id"] == id.as_str() {
                assert!(v.get("error").is_none(), "{v}");
                return v;
            }
        }
    }

    fn embed(&mut self, text: &str) -> f64 {
        let start = Instant::now();
        let v = self.call("embed", json!({"text": text}));
        let elapsed = ms(start.elapsed());
        assert_eq!(v["result"]["embedding"].as_array().map(Vec::len), Some(384));
        elapsed
    }
}

fn start_daemon(dir: &Path, model: &Path) -> (Child, PathBuf) {
    let socket = dir.join("d.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_sqm"))
        .args(["serve", "--backend", "sketch", "--socket"])
        .arg(&socket)
        .arg("--output-dir")
        .arg(dir.join("out"))
        .arg("--embed-model")
        .arg(model)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, socket)
}

/// p99 of `clients` clients embedding `each` texts at once.
fn concurrent_p99(socket: &Path, texts: &[String], clients: usize, each: usize) -> f64 {
    let lat: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    let mut client = Client::new(socket);
                    (0..each).map(|i| client.embed(&texts[(c * 7 + i) % texts.len()])).collect::<Vec<f64>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    pct(&sorted(lat), 0.99)
}

fn main() {
    let dir = std::env::var("SQM_EMBED_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".models/all-MiniLM-L6-v2"));
    let texts_path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/data/embed_paragraphs.txt"));
    let texts: Vec<String> = std::fs::read_to_string(&texts_path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let batch: Vec<&str> = texts.iter().cycle().take(64).map(String::as_str).collect();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);

    let start = Instant::now();
    let model = MiniLm::load(&dir, candle_core::Device::Cpu).expect("model (run scripts/fetch-embed-model)");
    let load_ms = ms(start.elapsed());
    let tokens: Vec<usize> = texts.iter().map(|t| model.token_count(t).unwrap()).collect();
    println!(
        "embed (all-MiniLM-L6-v2, CPU, {cores} cores; {} narration paragraphs, {}–{} tokens, mean {:.0})",
        texts.len(),
        tokens.iter().min().unwrap(),
        tokens.iter().max().unwrap(),
        tokens.iter().sum::<usize>() as f64 / tokens.len() as f64
    );
    let own = measure(&model, &texts, &batch);
    println!(
        "  sqm        load {load_ms:>6.1} ms  single p50 {:>6.2} ms  p90 {:>6.2} ms  batch-64 {:>6.0} texts/s",
        own.p50, own.p90, own.per_s
    );
    let candle = MiniLm::load_with(&dir, candle_core::Device::Cpu, EngineChoice::Candle).unwrap();
    let old = measure(&candle, &texts, &batch);
    println!(
        "  candle     (sqm's first engine, f32)  single p50 {:>6.2} ms  p90 {:>6.2} ms  batch-64 {:>6.0} texts/s",
        old.p50, old.p90, old.per_s
    );
    drop(candle);

    // Where a single text's time goes.
    let tokenize = sorted(
        texts
            .iter()
            .map(|t| {
                let start = Instant::now();
                model.token_count(t).unwrap();
                ms(start.elapsed())
            })
            .collect(),
    );
    let vector = model.embed(&texts[0]).unwrap();
    let json_ms = {
        let start = Instant::now();
        for _ in 0..200 {
            let line =
                json!({"id": "1", "result": {"embedding": vector, "model": "all-MiniLM-L6-v2", "latency_ms": 1}})
                    .to_string();
            std::hint::black_box(line);
        }
        ms(start.elapsed()) / 200.0
    };
    println!(
        "  where a single text goes (p50): tokenize {:.3} ms, encoder + pooling {:.3} ms, reply JSON {:.3} ms",
        pct(&tokenize, 0.5),
        own.p50 - pct(&tokenize, 0.5),
        json_ms
    );

    let python = std::env::var("SQM_REFERENCE_PYTHON").unwrap_or_else(|_| "python3".into());
    let reference = match reference(&python, &dir, &texts_path) {
        Ok(r) => {
            println!(
                "  reference  (sentence-transformers)    single p50 {:>6.2} ms  p90 {:>6.2} ms  batch-64 {:>6.0} texts/s",
                r.p50, r.p90, r.per_s
            );
            println!(
                "  ratio sqm/reference: single p50 {:.2}x (target ≤ 0.50x), batch-64 throughput {:.2}x (target ≥ 2x)",
                own.p50 / r.p50,
                own.per_s / r.per_s
            );
            Some(r)
        }
        Err(e) => {
            println!("  reference  not measured: {e}");
            None
        }
    };
    println!(
        "  ratio sqm/candle: single p50 {:.2}x, batch-64 throughput {:.2}x",
        own.p50 / old.p50,
        own.per_s / old.per_s
    );
    drop(model);

    // The daemon.
    let work = std::env::temp_dir().join(format!("sqm-bench-embed-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let (mut child, socket) = start_daemon(&work, &dir);
    let mut client = Client::new(&socket);
    client.call("warm_up", json!({"worker": "embed"}));
    for t in texts.iter().take(10) {
        client.embed(t);
    }
    let trip = sorted((0..ROUNDS).flat_map(|_| texts.iter()).map(|t| client.embed(t)).collect());
    let (p50, p90) = (pct(&trip, 0.5), pct(&trip, 0.9));
    println!("  daemon     embed round trip          single p50 {p50:>6.2} ms  p90 {p90:>6.2} ms");
    print!("  ratio daemon/in-process p50 {:.2}x", p50 / own.p50);
    match &reference {
        Some(r) => println!(", daemon/reference p50 {:.2}x (target ≤ 0.50x)", p50 / r.p50),
        None => println!(),
    }
    let idle = concurrent_p99(&socket, &texts, 8, 100);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (busy, renders) = std::thread::scope(|s| {
        let renderer = s.spawn(|| {
            let mut c = Client::new(&socket);
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let prompt = format!("the glass roads at dusk, variant {n}");
                c.call("render", json!({"tier": "landscape", "positive_prompt": prompt, "seed": n}));
                n += 1;
            }
            n
        });
        std::thread::sleep(Duration::from_millis(200));
        let p99 = concurrent_p99(&socket, &texts, 8, 100);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (p99, renderer.join().unwrap())
    });
    println!(
        "  daemon     8 clients p99: idle {idle:.2} ms, while renders run back to back {busy:.2} ms ({renders} renders): {:.2}x (target ≤ 2x)",
        busy / idle
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&work);
}
