//! Interprets a corpus of narration paragraphs in several genres and reports
//! paragraphs/second, single-threaded.
//!
//! Baseline, in the same process: one pass that lower-cases each paragraph
//! and counts its words (the least any interpreter must do). The ratio says
//! how many such passes one full interpretation costs; the reference Python
//! daemon manages about 3 400 paragraphs/s on this kind of prose here.
//! Run with `cargo bench --bench interpret`.

use std::hint::black_box;
use std::time::Instant;

use sqm::interpret::{interpret_turn, CharacterRef, GameState, PackContext, Session};
use sqm::pack::Pack;

fn corpus() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/data/narration.txt")).unwrap();
    text.split("\n\n").map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect()
}

fn main() {
    let paragraphs = corpus();
    assert!(paragraphs.len() >= 200, "corpus has {} paragraphs", paragraphs.len());
    let pack =
        Pack::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/genre_packs/ashfall")).unwrap();
    let ctx = PackContext::new(pack.genre.clone(), pack.audio.clone());
    let state = GameState {
        location: "Harrowgate".into(),
        time_of_day: "dusk".into(),
        characters: vec![CharacterRef { name: "Rux".into() }, CharacterRef { name: "Mira".into() }],
        ..Default::default()
    };
    let rounds = 30;
    let n = (paragraphs.len() * rounds) as f64;

    let best = |f: &mut dyn FnMut()| {
        f();
        (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };

    let baseline = best(&mut || {
        for _ in 0..rounds {
            for p in &paragraphs {
                black_box(p.to_lowercase().split_whitespace().count());
            }
        }
    });
    let full = best(&mut || {
        let mut session = Session::new();
        for _ in 0..rounds {
            for p in &paragraphs {
                black_box(interpret_turn(&mut session, &ctx, p, &state, true, Some("Harrowgate")));
            }
        }
    });
    let visual = best(&mut || {
        let mut session = Session::new();
        for _ in 0..rounds {
            for p in &paragraphs {
                black_box(session.interpret(p, &state));
            }
        }
    });
    let words: usize = paragraphs.iter().map(|p| p.split_whitespace().count()).sum();
    println!(
        "interpret: {} paragraphs ({} words avg), {} rounds, single thread",
        paragraphs.len(),
        words / paragraphs.len(),
        rounds
    );
    println!("  full turn (visual+audio+beat+documents) {:>9.0} paragraphs/s", n / full);
    println!("  visual cues only                        {:>9.0} paragraphs/s", n / visual);
    println!("  baseline (lower-case + word count)      {:>9.0} paragraphs/s", n / baseline);
    println!(
        "  ratio full/baseline {:.1}x the time; vs the Python reference's ~3400/s: {:.1}x faster",
        full / baseline,
        (n / full) / 3400.0
    );
}
