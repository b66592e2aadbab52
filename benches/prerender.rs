//! Prerender throughput: image jobs per second on the sketch backend with
//! one worker (the baseline) and with two, on the example pack.
//!
//! `cargo bench --bench prerender`

use std::path::Path;
use std::time::Instant;

use sqm::prerender::{self, Quiet, Work};

fn main() {
    let pack = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/genre_packs/ashfall");
    let jobs: Vec<_> = prerender::plan(&pack, "sketch", Some("sketch-v1"), &[], None, None)
        .expect("plan")
        .into_iter()
        .filter(|j| matches!(j.work, Work::Image(_)))
        .collect();
    let make = || sqm::render::backend_by_name("sketch", &Default::default());
    let mut rates = Vec::new();
    for workers in [1usize, 2] {
        let mut best = 0f64;
        for _ in 0..3 {
            let out = tempfile::tempdir().unwrap();
            let t = Instant::now();
            let s =
                prerender::execute(&jobs, "ashfall", out.path(), &make, workers, &Quiet, &Default::default()).unwrap();
            assert_eq!(s.done, jobs.len());
            best = best.max(jobs.len() as f64 / t.elapsed().as_secs_f64());
        }
        rates.push(best);
    }
    println!(
        "prerender-pack, sketch backend, {} image jobs, {} cores (best of 3)",
        jobs.len(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!("  --jobs 1  {:>7.1} jobs/s   (baseline)", rates[0]);
    println!("  --jobs 2  {:>7.1} jobs/s   {:.2}x", rates[1], rates[1] / rates[0]);
}
