//! Embedding speed on CPU: single-sentence latency and batch-of-64
//! throughput, with the reference implementation (Python
//! sentence-transformers) measured beside it when it is installed.
//!
//! Baseline: the reference, run on the same machine in the same bench
//! process (as a child interpreter). Point `SQM_REFERENCE_PYTHON` at an
//! interpreter that has sentence-transformers, e.g.
//! `python3 -m venv /tmp/st && /tmp/st/bin/pip install sentence-transformers`
//! then `SQM_REFERENCE_PYTHON=/tmp/st/bin/python cargo bench --bench embed`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use sqm::embed::MiniLm;

const SENTENCE: &str = "The ruins crumble in the wasteland wind.";

fn main() {
    let dir = std::env::var("SQM_EMBED_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".models/all-MiniLM-L6-v2"));
    let t = Instant::now();
    let model = MiniLm::load(&dir, candle_core::Device::Cpu).expect("model (run scripts/fetch-embed-model)");
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let batch: Vec<String> =
        (0..64).map(|i| format!("Lore entry {i}: the forge-towns trade heat like coin in the long winter.")).collect();
    let batch_refs: Vec<&str> = batch.iter().map(String::as_str).collect();
    for _ in 0..5 {
        model.embed(SENTENCE).unwrap();
    }
    let mut lat: Vec<f64> = (0..100)
        .map(|_| {
            let t = Instant::now();
            model.embed(SENTENCE).unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    model.embed_batch(&batch_refs).unwrap();
    let t = Instant::now();
    let rounds = 5;
    for _ in 0..rounds {
        model.embed_batch(&batch_refs).unwrap();
    }
    let per_s = (64 * rounds) as f64 / t.elapsed().as_secs_f64();
    println!(
        "embed (all-MiniLM-L6-v2, CPU, {} cores)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!(
        "  sqm        load {load_ms:>7.1} ms  single p50 {:>6.2} ms  p90 {:>6.2} ms  batch-64 {:>7.0} texts/s",
        lat[50], lat[90], per_s
    );

    let python = std::env::var("SQM_REFERENCE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!(
        r#"
import time, sys
try:
    from sentence_transformers import SentenceTransformer
except ImportError:
    sys.exit(3)
m = SentenceTransformer({dir:?}, device="cpu")
s = {SENTENCE:?}
for _ in range(5): m.encode(s)
lat = []
for _ in range(100):
    t = time.perf_counter(); m.encode(s); lat.append((time.perf_counter() - t) * 1e3)
lat.sort()
batch = ["Lore entry %d: the forge-towns trade heat like coin in the long winter." % i for i in range(64)]
m.encode(batch, batch_size=64)
t = time.perf_counter()
for _ in range(5): m.encode(batch, batch_size=64)
print(lat[50], lat[90], 64 * 5 / (time.perf_counter() - t))
"#,
        dir = dir.display().to_string()
    );
    match Command::new(&python).arg("-c").arg(&script).output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let nums: Vec<f64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            if let [p50, p90, tps] = nums[..] {
                println!("  reference  (sentence-transformers)  single p50 {p50:>6.2} ms  p90 {p90:>6.2} ms  batch-64 {tps:>7.0} texts/s");
                println!(
                    "  ratio sqm/reference: single-sentence latency {:.2}x, batch throughput {:.2}x",
                    lat[50] / p50,
                    per_s / tps
                );
            }
        }
        Ok(out) if out.status.code() == Some(3) => {
            println!("  reference  not measured: {python} has no sentence-transformers (set SQM_REFERENCE_PYTHON)")
        }
        Ok(out) => {
            println!("  reference  failed: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""))
        }
        Err(e) => println!("  reference  not measured: cannot run {python}: {e}"),
    }
}
