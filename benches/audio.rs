//! Mixer speed: real-time factor of the engine with all three buses busy
//! (music crossfading, ambience looping, sfx ducking) at 48 kHz stereo,
//! against a baseline in the same process that only sums three buffers
//! (the floor any mixer pays); and the time from a `play` command (a music
//! cue on a fresh player) to the first non-silent sample.
//!
//! `cargo bench --bench audio`

use std::path::Path;
use std::time::Instant;

use sqm::audio::engine::{Engine, Start};
use sqm::audio::library::{Samples, RATE};
use sqm::audio::rotator::Rng;
use sqm::interpret::{AudioCue, AudioLane};

fn tone(freq: f32, secs: f32) -> Samples {
    let n = (secs * RATE as f32) as usize;
    (0..n)
        .flat_map(|i| {
            let s = 0.3 * (std::f32::consts::TAU * freq * i as f32 / RATE as f32).sin();
            [s, s]
        })
        .collect::<Vec<_>>()
        .into()
}

fn main() {
    let secs = 60.0f32;
    let frames = (secs * RATE as f32) as usize;
    let (a, b, c, d) = (tone(110.0, 30.0), tone(220.0, 30.0), tone(55.0, 10.0), tone(880.0, 0.4));
    let mut best_engine = f64::MAX;
    for _ in 0..3 {
        let mut e = Engine::new(0.4, 0.7, -12.0);
        e.play(AudioLane::Music, "a", a.clone(), 1.0, Start::Add { fade_in_frames: 0 }, true);
        e.play(AudioLane::Ambience, "c", c.clone(), 1.0, Start::Add { fade_in_frames: 0 }, true);
        let mut out = vec![0f32; 1024 * 2];
        let t = Instant::now();
        let mut done = 0;
        let mut k = 0;
        while done < frames {
            if k % 200 == 0 {
                e.play(
                    AudioLane::Music,
                    "b",
                    if k % 400 == 0 { b.clone() } else { a.clone() },
                    1.0,
                    Start::Crossfade { frames: 3 * RATE as usize, fade_in_frames: 0 },
                    true,
                );
            }
            if k % 50 == 0 {
                e.play(AudioLane::Sfx, "d", d.clone(), 1.0, Start::Add { fade_in_frames: 0 }, false);
            }
            e.render(&mut out);
            done += 1024;
            k += 1;
        }
        best_engine = best_engine.min(t.elapsed().as_secs_f64());
    }
    // Baseline: sum three looping buffers into the output, no gains.
    let mut best_sum = f64::MAX;
    for _ in 0..3 {
        let mut out = vec![0f32; frames * 2];
        let t = Instant::now();
        for (i, o) in out.iter_mut().enumerate() {
            *o = a[i % a.len()] + c[i % c.len()] + d[i % d.len()];
        }
        std::hint::black_box(&out);
        best_sum = best_sum.min(t.elapsed().as_secs_f64());
    }
    println!("mixer, 3 buses busy, 48 kHz stereo f32, {secs} s of audio (best of 3)");
    println!("  engine    {:>8.1} ms   {:>7.0}x real time", best_engine * 1e3, secs as f64 / best_engine);
    println!(
        "  baseline  {:>8.1} ms   {:>7.0}x real time   (bare 3-buffer sum)",
        best_sum * 1e3,
        secs as f64 / best_sum
    );
    println!("  ratio     {:>8.2}x the baseline's time", best_engine / best_sum);

    // Time to first sound: load the pack's library, cue combat, render until non-silent.
    let pack = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/genre_packs/ashfall");
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let lib = sqm::audio::load_library(&pack, None, Rng::new(1)).unwrap();
        let mut p = sqm::audio::Player::new(lib);
        let mut cue = AudioCue::new(AudioLane::Music);
        cue.mood = Some("combat".into());
        p.cue(cue);
        let mut buf = vec![0f32; 64 * 2];
        loop {
            p.engine.lock().unwrap().render(&mut buf);
            if buf.iter().any(|s| s.abs() > 1e-4) {
                break;
            }
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|x, y| x.partial_cmp(y).unwrap());
    println!(
        "time from a play command to the first non-silent sample (pack load, decode, cue): median {:.1} ms",
        times[2]
    );
}
