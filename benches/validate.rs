//! Validates 100 copies of the example pack and reports packs/second.
//!
//! Baseline, in the same process: the same 100 packs validated on a single
//! thread. The ratio shows what the parallel path buys on this machine.
//! Run with `cargo bench --bench validate`.

use std::path::Path;
use std::time::Instant;

use sqm::packcheck::{discover, validate_packs, Options};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn main() {
    const COPIES: usize = 100;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/genre_packs/ashfall");
    let dir = std::env::temp_dir().join(format!("sqm-bench-validate-{}", std::process::id()));
    for i in 0..COPIES {
        copy_dir(&src, &dir.join(format!("pack{i:03}")));
    }
    let packs = discover(&dir).unwrap();
    assert_eq!(packs.len(), COPIES);

    let time = |opts: &Options, threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        // Warm the page cache once, then take the best of three.
        pool.install(|| validate_packs(&packs, opts.clone()));
        (0..3)
            .map(|_| {
                let t = Instant::now();
                let report = pool.install(|| validate_packs(&packs, opts.clone()));
                assert_eq!(report.errors(), 0);
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("validate-pack: {COPIES} copies of the example pack, {cores} core(s)");
    for (label, opts) in
        [("with audio decode", Options::default()), ("--no-decode", Options { decode: false, ..Options::default() })]
    {
        let single = time(&opts, 1);
        let parallel = time(&opts, cores);
        println!(
            "  {label:<18} parallel {:>8.0} packs/s   single-thread baseline {:>8.0} packs/s   ratio {:.2}x",
            COPIES as f64 / parallel,
            COPIES as f64 / single,
            single / parallel
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
