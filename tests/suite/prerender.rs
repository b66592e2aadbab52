//! `sqm prerender-pack` on copies of the example pack: full run, re-run,
//! one edited character, the plan, bad packs, locks, failing jobs, and the
//! loudness meter against a reference tone.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use sqm::prerender::{self, Manifest, Outcome, Quiet};

use common::copy_example_pack as copy_pack;

fn sqm(args: &[&str], pack: &Path) -> Output {
    Command::new(common::SQM)
        .arg("prerender-pack")
        .args(args)
        .arg(pack)
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("SIDEQUEST_GENRE_PACKS")
        .output()
        .unwrap()
}

fn summary(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["summary"].clone()
}

fn done_ids(s: &Value) -> Vec<String> {
    s["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["status"] == "done")
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn full_run_then_skip_then_exactly_the_edited_portrait() {
    let (_d, pack) = copy_pack();
    let out = pack.join(".cache/prerender");
    let first = summary(&sqm(&["--json", "--jobs", "2"], &pack));
    assert_eq!(
        (first["done"].as_u64(), first["skipped"].as_u64(), first["failed"].as_u64()),
        (Some(25), Some(0), Some(0))
    );
    let m = Manifest::load(&out).unwrap();
    assert_eq!(m.jobs.len(), 25);
    let kinds = |k: &str| m.jobs.values().filter(|e| e.kind == k).count();
    assert_eq!((kinds("portrait"), kinds("landscape"), kinds("cover"), kinds("loudness")), (3, 6, 1, 15));
    let portrait = &m.jobs["portrait/cinder-reach/tinker-ro"];
    assert_eq!(portrait.file, "portrait/cinder-reach/tinker-ro.png");
    let (w, h, _) = sqm::render::output::read_png_text(&out.join(&portrait.file)).unwrap();
    assert_eq!((w, h), (768, 1024));
    assert_eq!((portrait.width, portrait.height), (Some(768), Some(1024)));
    assert!(portrait.prompt.as_deref().unwrap().contains("a wiry young glassfolk tinker"));
    assert_eq!(portrait.backend.as_deref(), Some("sketch"));
    // Gains reach the mixer through the manifest.
    let g = m.gain_db("audio/sfx/sword_clash.wav").unwrap();
    let l = m.jobs["loudness/audio/sfx/sword_clash.wav"].loudness.clone().unwrap();
    assert!(l.true_peak_dbtp.unwrap() + g <= -1.0 + 1e-6, "{l:?}");
    // The player picks the manifest's gains up.
    let lib = sqm::audio::load_library(&pack, None, sqm::audio::rotator::Rng::new(1)).unwrap();
    let linear = lib.loudness(&pack.join("audio/sfx/sword_clash.wav"));
    assert!((linear as f64 - 10f64.powf(g / 20.0)).abs() < 1e-6, "{linear} vs {g} dB");
    assert_eq!(lib.loudness(&pack.join("audio/none.wav")), 1.0);

    let second = summary(&sqm(&["--json"], &pack));
    assert_eq!((second["done"].as_u64(), second["skipped"].as_u64()), (Some(0), Some(25)));

    // Edit one character's appearance: exactly that portrait re-renders.
    let manifest_yaml = pack.join("worlds/cinder-reach/portrait_manifest.yaml");
    let text = std::fs::read_to_string(&manifest_yaml).unwrap();
    let edited = text.replace("a wiry young glassfolk tinker", "a stout old glassfolk tinker");
    assert_ne!(edited, text);
    std::fs::write(&manifest_yaml, edited).unwrap();
    let third = summary(&sqm(&["--json"], &pack));
    assert_eq!(done_ids(&third), vec!["portrait/cinder-reach/tinker-ro"]);
    assert_eq!(third["skipped"].as_u64(), Some(24));
    let m2 = Manifest::load(&out).unwrap();
    assert_ne!(m2.jobs["portrait/cinder-reach/tinker-ro"].hash, portrait.hash);
    assert!(m2.jobs["portrait/cinder-reach/tinker-ro"]
        .prompt
        .as_deref()
        .unwrap()
        .contains("a stout old glassfolk tinker"));
    assert_eq!(m2.jobs["portrait/cinder-reach/ember-envoy"], m.jobs["portrait/cinder-reach/ember-envoy"]);

    // A damaged output file is noticed and redone.
    std::fs::write(out.join("cover/cinder-reach.png"), b"junk").unwrap();
    let fourth = summary(&sqm(&["--json"], &pack));
    assert_eq!(done_ids(&fourth), vec!["cover/cinder-reach"]);
    // No temporary files or lock left behind.
    let stray: Vec<_> = walkdir::WalkDir::new(&out)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy();
            n.ends_with(".tmp") || n.starts_with(".manifest-") || n == ".prerender.lock"
        })
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let (_d, pack) = copy_pack();
    let o = sqm(&["--dry-run", "--json"], &pack);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let jobs = v["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 25);
    let ids: Vec<&str> = jobs.iter().map(|j| j["id"].as_str().unwrap()).collect();
    for id in [
        "portrait/cinder-reach/warden_isolde_varr",
        "landscape/cinder-reach/harrowgate",
        "landscape/place/ash_market",
        "cover/cinder-reach",
        "loudness/audio/sfx/thunder.wav",
    ] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    assert!(jobs.iter().all(|j| j["action"] == "render" || j["action"] == "analyse"));
    assert_eq!(jobs[0]["size"], "768x1024");
    assert!(!pack.join(".cache").exists());
    let human = sqm(&["--dry-run"], &pack);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("25 job(s), 25 to run, 0 up to date"), "{text}");
}

#[test]
fn invalid_pack_stops_before_any_work() {
    let (_d, pack) = copy_pack();
    std::fs::write(pack.join("audio.yaml"), "mood_tracks: [unclosed\n").unwrap();
    let o = sqm(&["--json"], &pack);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("audio.yaml:"), "{err}");
    assert!(err.contains("fails validation; nothing was rendered"), "{err}");
    assert!(!pack.join(".cache").exists());
}

#[test]
fn lock_and_output_errors() {
    let (_d, pack) = copy_pack();
    let out = pack.join(".cache/prerender");
    std::fs::create_dir_all(&out).unwrap();
    // A live process holds the lock (this test).
    std::fs::write(out.join(".prerender.lock"), format!("{}\n", std::process::id())).unwrap();
    let o = sqm(&[], &pack);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is in use by another prerender run"), "{err}");
    // A stale lock (no such process) is taken over.
    std::fs::write(out.join(".prerender.lock"), "2147483000\n").unwrap();
    let s = summary(&sqm(&["--json", "--out", out.to_str().unwrap()], &pack));
    assert_eq!(s["done"].as_u64(), Some(25));
    assert!(!out.join(".prerender.lock").exists());
    // An output folder that cannot exist is named.
    let file = pack.join("pack.yaml");
    let bad = file.join("out");
    let o = sqm(&["--out", bad.to_str().unwrap()], &pack);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("cannot create {}", bad.display())), "{err}");
}

#[test]
fn one_failing_job_does_not_stop_the_rest() {
    let (_d, pack) = copy_pack();
    let out = pack.join(".cache/prerender");
    let jobs = prerender::plan(&pack, "sketch", Some("sketch-v1"), &[], None, None).unwrap();
    // The file disappears (or rots) between planning and running.
    std::fs::write(pack.join("audio/sfx/thunder.wav"), b"RIFF\x00\x00\x00\x00WAVEjunk").unwrap();
    let make = || sqm::render::backend_by_name("sketch", &Default::default());
    std::fs::create_dir_all(&out).unwrap();
    let s = prerender::execute(&jobs, "ashfall", &out, &make, 2, &Quiet, &Default::default()).unwrap();
    assert_eq!((s.done, s.failed), (24, 1));
    let failed: Vec<_> = s.outcomes.iter().filter(|o| matches!(o, Outcome::Failed { .. })).collect();
    match failed[0] {
        Outcome::Failed { id, reason } => {
            assert_eq!(id, "loudness/audio/sfx/thunder.wav");
            assert!(reason.starts_with("audio/sfx/thunder.wav: "), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let m = Manifest::load(&out).unwrap();
    assert_eq!(m.jobs.len(), 24);
    assert!(!m.jobs.contains_key("loudness/audio/sfx/thunder.wav"));
}

#[test]
fn loudness_of_a_reference_tone() {
    // EBU Tech 3341: a stereo 997 Hz sine at −23 dBFS reads −23.0 LUFS.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tone.wav");
    let rate = 48_000;
    let amp = 10f64.powf(-23.0 / 20.0);
    let samples: Vec<f32> = (0..rate * 10)
        .flat_map(|i| {
            let s = (amp * (2.0 * std::f64::consts::PI * 997.0 * i as f64 / rate as f64).sin()) as f32;
            [s, s]
        })
        .collect();
    common::write_wav(&path, rate, 2, &samples);
    let l = sqm::prerender::loudness::analyse(&path, -16.0).unwrap();
    let i = l.integrated_lufs.unwrap();
    assert!((i - -23.0).abs() <= 0.1, "integrated {i}");
    assert!((l.true_peak_dbtp.unwrap() - -23.0).abs() < 0.2, "{l:?}");
    assert_eq!((l.sample_rate, l.channels), (48_000, 2));
    assert!((l.duration_s - 10.0).abs() < 1e-9);
    assert!((l.gain_db - 7.0).abs() < 0.11, "{l:?}");
    // Silence has no loudness and gets no gain.
    let silent = dir.path().join("silence.wav");
    common::write_wav(&silent, 8_000, 1, &vec![0.0; 8_000]);
    let s = sqm::prerender::loudness::analyse(&silent, -16.0).unwrap();
    assert_eq!((s.integrated_lufs, s.gain_db), (None, 0.0));
}
