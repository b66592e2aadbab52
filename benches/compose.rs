//! Composer v2 latency: a warm catalog cache (every call stats the watched
//! files, parses nothing) and a cold read of the pack files, against the Flux-era
//! composer on the same request in the same process as the baseline.
//!
//! `cargo bench --bench compose`

use std::path::Path;
use std::time::Instant;

use sqm::interpret::Tier;
use sqm::prompt::layered::{self, Request};
use sqm::prompt::{compose, Cue, StyleSource};

fn per_call_us(n: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/composer_v2");
    let req = Request {
        tier: Some(Tier::SceneIllustration),
        subject: "arriving at dusk".into(),
        characters: vec!["npc:rux".into(), "npc:mira".into()],
        location: "where:testworld/the_lookout".into(),
        camera: None,
        pc_descriptor: None,
        genre: "testgenre".into(),
        world: "testworld".into(),
    };
    let warm = per_call_us(20_000, || {
        std::hint::black_box(layered::compose(&root, &req).unwrap());
    });
    let cold = per_call_us(500, || {
        std::hint::black_box(sqm::pack::catalog::Catalog::load(&root, "testgenre", "testworld").unwrap());
    });
    let styles = StyleSource::new(root.clone());
    let style = styles
        .resolve(&sqm::prompt::style::StyleRequest { genre: "testgenre", world: "testworld", ..Default::default() })
        .unwrap()
        .unwrap();
    let cue = Cue {
        tier: Some(Tier::SceneIllustration),
        subject: req.subject.clone(),
        mood: String::new(),
        location: "The Lookout".into(),
        characters: vec!["Rux".into(), "Mira".into()],
        tags: vec![],
    };
    let flux = per_call_us(20_000, || {
        std::hint::black_box(compose(&cue, Tier::SceneIllustration, &style));
    });
    println!("compose latency, scene_illustration with two characters and a place (mean per call)");
    println!("  composer v2, warm catalog   {warm:>8.2} µs   (target < 50 µs)");
    println!("  composer v2, cold pack load {cold:>8.2} µs   (reading and parsing the pack files alone)");
    println!("  Flux-era composer           {flux:>8.2} µs   (baseline)");
    println!("  warm v2 / Flux era          {:>8.2}x", warm / flux);
}
