//! The mixer's numbers (offline, no device): equal-power crossfades, no
//! clicks on any gain change, duck timing, auto-advance, cue processing,
//! aliases, and `sqm play --out`.

use crate::common;

use std::path::Path;
use std::process::Command;

use sqm::audio::engine::{Engine, Start};
use sqm::audio::library::{check_alias, AliasProblem, Library, Samples, RATE};
use sqm::audio::output::{render_offline, Action, Timeline};
use sqm::audio::rotator::Rng;
use sqm::audio::Player;
use sqm::interpret::{AudioCue, AudioLane};
use sqm::pack::model::AudioConfig;

const R: usize = RATE as usize;

fn stereo(mono: impl Iterator<Item = f32>) -> Samples {
    mono.flat_map(|s| [s, s]).collect::<Vec<_>>().into()
}

fn sine(freq: f32, amp: f32, secs: f32) -> Samples {
    stereo((0..(secs * R as f32) as usize).map(|i| amp * (std::f32::consts::TAU * freq * i as f32 / R as f32).sin()))
}

/// Uniform white noise with a given RMS (deterministic).
fn noise(seed: u64, rms: f32, secs: f32) -> Samples {
    let mut rng = Rng::new(seed);
    let amp = rms * 3f32.sqrt();
    stereo((0..(secs * R as f32) as usize).map(|_| amp * (2.0 * rng.unit() as f32 - 1.0)))
}

fn render(e: &mut Engine, secs: f32) -> Vec<f32> {
    let mut out = vec![0f32; (secs * R as f32) as usize * 2];
    e.render(&mut out);
    out
}

fn left(v: &[f32]) -> Vec<f32> {
    v.iter().step_by(2).copied().collect()
}

fn max_step(v: &[f32]) -> f32 {
    left(v).windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0, f32::max)
}

fn db(x: f64) -> f64 {
    20.0 * x.log10()
}

#[test]
fn crossfade_keeps_power_within_one_db() {
    let mut e = Engine::new(1.0, 1.0, -12.0);
    e.play(AudioLane::Music, "a", noise(1, 0.25, 6.0), 1.0, Start::Add { fade_in_frames: 0 }, true);
    let before = render(&mut e, 1.0);
    e.play(
        AudioLane::Music,
        "b",
        noise(2, 0.25, 6.0),
        1.0,
        Start::Crossfade { frames: 2 * R, fade_in_frames: 0 },
        true,
    );
    let during = render(&mut e, 2.0);
    let after = render(&mut e, 1.0);
    let rms = |v: &[f32]| (v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    let steady = rms(&left(&before));
    let win = R / 100; // 10 ms
    for (i, w) in left(&during).chunks(win).enumerate() {
        let d = db(rms(w) / steady);
        assert!(d.abs() <= 1.0, "window {i}: {d:+.2} dB");
    }
    assert!(db(rms(&left(&after)) / steady).abs() <= 1.0);
    assert_eq!(e.current(AudioLane::Music), Some("b"));
}

#[test]
fn no_clicks_on_any_gain_change() {
    let tone = || sine(110.0, 0.5, 4.0);
    let silent: Samples = vec![0f32; 4 * R * 2].into();
    let check = |name: &str, mut setup: Box<dyn FnMut(&mut Engine)>, change: Box<dyn FnMut(&mut Engine)>| {
        let mut e = Engine::new(1.0, 1.0, -12.0);
        setup(&mut e);
        let mut out = render(&mut e, 0.123);
        let mut change = change;
        change(&mut e);
        out.extend(render(&mut e, 1.5));
        let m = max_step(&out);
        assert!(m <= 0.01, "{name}: max step {m}");
    };
    let with_tone = |t: Samples| -> Box<dyn FnMut(&mut Engine)> {
        Box::new(move |e: &mut Engine| {
            e.play(AudioLane::Music, "t", t.clone(), 1.0, Start::Add { fade_in_frames: 0 }, true)
        })
    };
    check("set volume 1.0 -> 0.1", with_tone(tone()), Box::new(|e| e.set_volume(AudioLane::Music, 0.1)));
    check(
        "set volume 0.1 -> 1.0",
        Box::new(|e: &mut Engine| {
            e.set_volume(AudioLane::Music, 0.1);
            e.play(AudioLane::Music, "t", sine(110.0, 0.5, 4.0), 1.0, Start::Add { fade_in_frames: 0 }, true);
        }),
        Box::new(|e| e.set_volume(AudioLane::Music, 1.0)),
    );
    check("mute", with_tone(tone()), Box::new(|e| e.set_muted(AudioLane::Music, true)));
    // Mute, then unmute while the mute ramp has finished: one continuous render.
    {
        let mut e = Engine::new(1.0, 1.0, -12.0);
        e.play(AudioLane::Music, "t", tone(), 1.0, Start::Add { fade_in_frames: 0 }, true);
        let mut out = render(&mut e, 0.2);
        e.set_muted(AudioLane::Music, true);
        out.extend(render(&mut e, 0.3));
        e.set_muted(AudioLane::Music, false);
        out.extend(render(&mut e, 0.3));
        e.set_muted(AudioLane::Music, true);
        out.extend(render(&mut e, 0.01)); // retarget mid-ramp
        e.set_muted(AudioLane::Music, false);
        out.extend(render(&mut e, 0.3));
        let m = max_step(&out);
        assert!(m <= 0.01, "mute/unmute: max step {m}");
    }
    check("master", with_tone(tone()), Box::new(|e| e.set_master(0.05)));
    check(
        "fade in",
        Box::new(|_| {}),
        Box::new(|e| {
            e.play(AudioLane::Music, "t", sine(110.0, 0.5, 4.0), 1.0, Start::Add { fade_in_frames: R / 10 }, true)
        }),
    );
    check("fade out", with_tone(tone()), Box::new(|e| e.stop(AudioLane::Music, 400)));
    check("stop 0 ms", with_tone(tone()), Box::new(|e| e.stop(AudioLane::Music, 0)));
    check(
        "duck attack and release",
        with_tone(tone()),
        Box::new(move |e| {
            e.play(AudioLane::Sfx, "s", vec![0f32; R / 2 * 2].into(), 1.0, Start::Add { fade_in_frames: 0 }, false)
        }),
    );
    let s2 = silent.clone();
    check(
        "crossfade tone -> silence",
        with_tone(tone()),
        Box::new(move |e| {
            e.play(AudioLane::Music, "s", s2.clone(), 1.0, Start::Crossfade { frames: 0, fade_in_frames: 0 }, true)
        }),
    );
    let s3 = silent.clone();
    check(
        "crossfade silence -> tone",
        Box::new(move |e: &mut Engine| {
            e.play(AudioLane::Music, "s", s3.clone(), 1.0, Start::Add { fade_in_frames: 0 }, true)
        }),
        Box::new(|e| {
            e.play(
                AudioLane::Music,
                "t",
                sine(110.0, 0.5, 4.0),
                1.0,
                Start::Crossfade { frames: 0, fade_in_frames: 0 },
                true,
            )
        }),
    );
}

#[test]
fn duck_timing_follows_attack_and_release() {
    let mut e = Engine::new(1.0, 1.0, -12.0);
    let dc: Samples = vec![0.5f32; 4 * R * 2].into();
    e.play(AudioLane::Music, "m", dc, 1.0, Start::Add { fade_in_frames: 0 }, true);
    let mut out = render(&mut e, 1.0);
    // A silent sfx from 1.0 s to 1.3 s.
    e.play(
        AudioLane::Sfx,
        "s",
        vec![0f32; (0.3 * R as f32) as usize * 2].into(),
        1.0,
        Start::Add { fade_in_frames: 0 },
        false,
    );
    out.extend(render(&mut e, 1.5));
    let gain: Vec<f32> = left(&out).iter().map(|x| x / 0.5).collect();
    let floor = 10f32.powf(-12.0 / 20.0);
    let first_at = |pred: &dyn Fn(f32) -> bool, from: f64| {
        (((from * R as f64) as usize)..gain.len()).find(|&i| pred(gain[i])).map(|i| i as f64 / R as f64).unwrap()
    };
    let reached = first_at(&|g| (g - floor).abs() < 1e-4, 1.0);
    assert!((reached - 1.2).abs() <= 0.010, "ducked at {reached}");
    assert!(gain[(1.25 * R as f64) as usize] - floor < 1e-4, "stays ducked until the sfx ends");
    let back = first_at(&|g| (g - 1.0).abs() < 1e-4, 1.3);
    assert!((back - 1.8).abs() <= 0.010, "released at {back}");
    assert!((gain[(0.99 * R as f64) as usize] - 1.0).abs() < 1e-6);
}

#[test]
fn overlapping_sfx_hold_the_duck() {
    let mut e = Engine::new(1.0, 1.0, -12.0);
    e.play(AudioLane::Music, "m", vec![0.5f32; 4 * R * 2].into(), 1.0, Start::Add { fade_in_frames: 0 }, true);
    let sfx = |secs: f32| -> Samples { vec![0f32; (secs * R as f32) as usize * 2].into() };
    e.play(AudioLane::Sfx, "a", sfx(0.5), 1.0, Start::Add { fade_in_frames: 0 }, false);
    let _ = render(&mut e, 0.3);
    e.play(AudioLane::Sfx, "b", sfx(0.5), 1.0, Start::Add { fade_in_frames: 0 }, false);
    let out = render(&mut e, 0.45); // to 0.75 s: a ended at 0.5, b still sounds
    let g = left(&out).last().unwrap() / 0.5;
    assert!((g - 10f32.powf(-0.6)).abs() < 1e-4, "still ducked: {g}");
}

/// A minimal pack folder with an audio.yaml and generated WAV tracks.
fn pack_with(yaml: &str, files: &[(&str, f32, f32)]) -> (tempfile::TempDir, Library) {
    let dir = tempfile::tempdir().unwrap();
    for (name, value, secs) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        common::write_wav(&p, 48_000, 2, &vec![*value; (*secs * 48_000.0) as usize * 2]);
    }
    let cfg: AudioConfig = serde_json::from_str(yaml).unwrap();
    let lib = Library::new(cfg, dir.path().to_path_buf(), dir.path().to_path_buf(), Rng::new(3));
    (dir, lib)
}

fn music(mood: &str) -> AudioCue {
    let mut c = AudioCue::new(AudioLane::Music);
    c.mood = Some(mood.into());
    c
}

#[test]
fn auto_advance_plays_another_track_without_a_gap() {
    let (_d, lib) = pack_with(
        r#"{"mood_tracks": {"m": [{"path": "x.wav"}, {"path": "y.wav"}]}, "mixer": {"music_volume": 1.0}}"#,
        &[("x.wav", 0.25, 1.0), ("y.wav", 0.5, 1.0)],
    );
    let mut p = Player::new(lib);
    let mut t = Timeline::default();
    t.push(0.0, Action::Cues(vec![music("m")]));
    let mut decisions = Vec::new();
    let out = render_offline(&mut p, t, 2.5, &mut |p| decisions.extend(p.take_decisions()));
    let first = decisions[0].file.clone().unwrap();
    let adv = decisions.iter().find(|d| d.action == "advance").expect("an advance");
    assert_ne!(adv.file.as_deref(), Some(first.as_str()), "{decisions:?}");
    let l = left(&out);
    let (a, b) = if first == "x.wav" { (0.25, 0.5) } else { (0.5, 0.25) };
    // The next track's first sample follows the old one's last: no gap.
    let last_a = l.iter().rposition(|v| (v - a).abs() < 1e-3).unwrap();
    let first_b = l.iter().position(|v| (v - b).abs() < 1e-3).unwrap();
    assert!(first_b > last_a && first_b - last_a <= 1024, "gap {} frames", first_b - last_a);
    assert_eq!(first_b, R, "exactly at 1 s");
}

#[test]
fn same_mood_keeps_the_track_other_mood_crossfades() {
    let (_d, lib) = pack_with(
        r#"{"mood_tracks": {"combat": [{"path": "c1.wav"}, {"path": "c2.wav"}], "tension": [{"path": "t.wav"}]},
            "mood_aliases": {"battle": "combat"}, "mixer": {"music_volume": 1.0}}"#,
        &[("c1.wav", 0.2, 10.0), ("c2.wav", 0.2, 10.0), ("t.wav", 0.4, 10.0)],
    );
    let mut p = Player::new(lib);
    let mut t = Timeline::default();
    t.push(0.0, Action::Cues(vec![music("combat")]));
    t.push(1.0, Action::Cues(vec![music("combat")]));
    t.push(1.5, Action::Cues(vec![music("battle")]));
    t.push(2.0, Action::Cues(vec![music("tension")]));
    let mut d = Vec::new();
    let out = render_offline(&mut p, t, 6.0, &mut |p| d.extend(p.take_decisions()));
    let actions: Vec<&str> = d.iter().map(|x| x.action).collect();
    assert_eq!(actions, ["start", "keep", "keep", "crossfade"], "{d:?}");
    assert_eq!(d[1].file, d[0].file);
    assert_eq!(d[3].file.as_deref(), Some("t.wav"));
    // 3000 ms equal-power: halfway (3.5 s) both at cos/sin(π/4).
    let l = left(&out);
    let mid = l[(3.5 * R as f64) as usize];
    let expect = 0.2 * std::f32::consts::FRAC_1_SQRT_2 + 0.4 * std::f32::consts::FRAC_1_SQRT_2;
    assert!((mid - expect).abs() < 1e-3, "{mid} vs {expect}");
    assert!((l[(5.5 * R as f64) as usize] - 0.4).abs() < 1e-4);
}

#[test]
fn aliases_and_unknown_moods() {
    let (_d, mut lib) = pack_with(
        r#"{"mood_tracks": {"combat": [{"path": "c.wav"}], "exploration": [{"path": "e.wav"}]},
            "mood_aliases": {"battle": "combat", "a": "b", "b": "a", "x": "nowhere",
                             "a1": "a2", "a2": "a3", "a3": "a4", "a4": "a5", "a5": "combat",
                             "b1": "b2", "b2": "b3", "b3": "b4", "b4": "b5", "b5": "b6", "b6": "combat"}}"#,
        &[("c.wav", 0.1, 0.5), ("e.wav", 0.1, 0.5)],
    );
    let cfg = lib.config.clone();
    assert_eq!(check_alias(&cfg, "battle"), Ok(()));
    assert_eq!(check_alias(&cfg, "a"), Err(AliasProblem::Cycle));
    assert_eq!(check_alias(&cfg, "x"), Err(AliasProblem::Broken));
    assert_eq!(check_alias(&cfg, "a1"), Ok(()));
    assert_eq!(check_alias(&cfg, "b1"), Err(AliasProblem::TooDeep));
    assert_eq!(lib.resolve_mood("battle").as_deref(), Some("combat"));
    assert_eq!(lib.resolve_mood("jazz").as_deref(), Some("exploration"));
    assert_eq!(lib.resolve_mood("a").as_deref(), Some("exploration"));
    let chosen = lib.pick_music("jazz", 0.5).unwrap();
    assert_eq!(chosen.raw, "e.wav");
}

#[test]
fn bad_files_are_skipped_and_the_rest_plays() {
    let (dir, mut lib) = pack_with(
        r#"{"mood_tracks": {"m": [{"path": "bad.wav"}, {"path": "https://example.com/x.ogg"}, {"path": "../escape.wav"}, {"path": "ok.wav"}]},
            "sfx_library": {"boom": ["missing.wav"]}}"#,
        &[("ok.wav", 0.3, 0.5)],
    );
    std::fs::write(dir.path().join("bad.wav"), b"RIFF\x00\x00\x00\x00WAVEjunk").unwrap();
    for _ in 0..5 {
        assert_eq!(lib.pick_music("m", 0.5).unwrap().raw, "ok.wav");
    }
    assert!(lib.pick_sfx("boom").is_none());
    assert!(lib.pick_sfx("nope").is_none());
}

fn wav_header(path: &Path) -> (u16, u16, u32, u16, usize) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[0..4], b"RIFF");
    let fmt = b.windows(4).position(|w| w == b"fmt ").unwrap();
    let format = u16::from_le_bytes([b[fmt + 8], b[fmt + 9]]);
    if format == 0xFFFE {
        // The subformat GUID starts with the real format tag.
        let sub = u16::from_le_bytes([b[fmt + 32], b[fmt + 33]]);
        assert_eq!(sub, 3, "float subformat");
    }
    let channels = u16::from_le_bytes([b[fmt + 10], b[fmt + 11]]);
    let rate = u32::from_le_bytes(b[fmt + 12..fmt + 16].try_into().unwrap());
    let bits = u16::from_le_bytes([b[fmt + 22], b[fmt + 23]]);
    let data = b.windows(4).position(|w| w == b"data").unwrap();
    let len = u32::from_le_bytes(b[data + 4..data + 8].try_into().unwrap()) as usize;
    (format, channels, rate, bits, len / (channels as usize * bits as usize / 8))
}

#[test]
fn play_renders_a_wav_offline() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.wav");
    let pack = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/genre_packs/ashfall");
    let o = Command::new(common::SQM)
        .args([
            "play",
            "--pack",
            pack,
            "--mood",
            "combat",
            "--sfx",
            "sword_clash",
            "--duration",
            "10",
            "--seed",
            "1",
            "--json",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (format, channels, rate, bits, frames) = wav_header(&out);
    // IEEE float, plain (3) or WAVE_FORMAT_EXTENSIBLE with the float subformat.
    assert!(format == 3 || format == 0xFFFE, "format tag {format}");
    assert_eq!((channels, rate, bits), (2, 48_000, 32), "stereo 48 kHz 32-bit");
    assert!(frames.abs_diff(480_000) <= 1024, "{frames} frames");
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["lane"], "music");
    assert_eq!(lines[0]["mood"], "combat");
    assert!(lines.iter().any(|l| l["lane"] == "sfx" && l["action"] == "start"), "{lines:?}");
    // Not silent.
    let bytes = std::fs::read(&out).unwrap();
    let data = bytes.windows(4).position(|w| w == b"data").unwrap() + 8;
    let peak =
        bytes[data..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()).abs()).fold(0.0, f32::max);
    assert!(peak > 0.05, "peak {peak}");

    // A broken script names its line.
    let script = dir.path().join("cues.jsonl");
    std::fs::write(
        &script,
        "{\"at\": 0, \"cue\": {\"lane\": \"music\", \"mood\": \"combat\"}}\n{\"at\": -1, \"stop\": \"music\"}\n",
    )
    .unwrap();
    let o = Command::new(common::SQM)
        .args(["play", "--pack", pack, "--script"])
        .arg(&script)
        .arg("--out")
        .arg(dir.path().join("y.wav"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cues.jsonl:2: \"at\" must be a number of seconds"), "{err}");
    assert!(!dir.path().join("y.wav").exists());
}

#[test]
fn daemon_audio_methods() {
    let d = common::Daemon::start(&["--no-warmup", "--no-heartbeat", "--audio-null-sink"]);
    let s = d.call(r#"{"id":1,"method":"audio_status"}"#);
    assert_eq!(s["result"]["active"], false, "{s}");
    let r =
        d.call(r#"{"id":2,"method":"audio_cue","params":{"cue":{"lane":"music","mood":"combat","intensity":0.9}}}"#);
    let dec = &r["result"]["decisions"][0];
    assert_eq!(
        (dec["lane"].as_str(), dec["action"].as_str(), dec["mood"].as_str()),
        (Some("music"), Some("start"), Some("combat")),
        "{r}"
    );
    let status = &r["result"]["status"];
    assert_eq!(status["mood"], "combat");
    assert_eq!(status["channel_playing"]["music"], true);
    assert_eq!(status["sink"], "null");
    let track = status["channel_tracks"]["music"].as_str().unwrap().to_owned();
    assert!(track.starts_with("audio/music/siege_"), "{track}");
    // Narration through the interpreter: a sword fight cues the sfx.
    let r = d.call(r#"{"id":3,"method":"audio_cue","params":{"narration":"Steel rings as your sword clashes against the raider's blade."}}"#);
    assert!(r["result"]["decisions"].as_array().unwrap().iter().any(|x| x["lane"] == "sfx"), "{r}");
    let r = d.call(r#"{"id":4,"method":"audio_volume","params":{"channel":"music","volume":0.2}}"#);
    assert!((r["result"]["status"]["channel_volumes"]["music"].as_f64().unwrap() - 0.2).abs() < 1e-6, "{r}");
    let r = d.call(r#"{"id":5,"method":"audio_volume","params":{"channel":"sfx","muted":true}}"#);
    assert_eq!(r["result"]["status"]["channel_muted"]["sfx"], true);
    let r = d.call(r#"{"id":6,"method":"audio_stop","params":{"channel":"music","fade_out_ms":100}}"#);
    assert!(r["result"]["status"]["mood"].is_null(), "{r}");
    // The fade runs on the real-time null sink: poll (bounded) until it ends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut s = d.call(r#"{"id":7,"method":"audio_status"}"#);
    while s["result"]["channel_playing"]["music"] != false && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        s = d.call(r#"{"id":7,"method":"audio_status"}"#);
    }
    assert_eq!(s["result"]["channel_playing"]["music"], false, "{s}");
    // Bad input gets INVALID_REQUEST and the daemon keeps serving.
    for (line, msg) in [
        (r#"{"id":8,"method":"audio_cue","params":{}}"#, "audio_cue needs 'cue'"),
        (r#"{"id":9,"method":"audio_cue","params":{"cue":{"lane":"drums"}}}"#, "bad 'cue'"),
        (r#"{"id":10,"method":"audio_volume","params":{"channel":"music","volume":3}}"#, "between 0 and 1"),
        (r#"{"id":11,"method":"audio_stop","params":{"channel":"voice"}}"#, "unknown channel 'voice'"),
    ] {
        let r = d.call(line);
        assert_eq!(r["error"]["code"], "INVALID_REQUEST", "{r}");
        assert!(r["error"]["message"].as_str().unwrap().contains(msg), "{r}");
    }
    let r =
        d.call(r#"{"id":12,"method":"audio_cue","params":{"genre":"nope","cue":{"lane":"music","mood":"combat"}}}"#);
    assert_eq!(r["error"]["code"], "AUDIO_FAILED", "{r}");
    assert_eq!(d.call(r#"{"id":13,"method":"ping"}"#)["result"]["status"], "ok");
}

#[test]
fn other_rates_and_channel_counts_are_converted() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mono44.wav");
    let n = 44_100;
    let mono: Vec<f32> = (0..n).map(|i| 0.5 * (std::f32::consts::TAU * 441.0 * i as f32 / 44_100.0).sin()).collect();
    common::write_wav(&p, 44_100, 1, &mono);
    let s = sqm::audio::library::decode(&p).unwrap();
    let frames = s.len() / 2;
    assert!(frames.abs_diff(48_000) <= 2, "{frames} frames");
    // Upmixed: both channels carry the signal.
    let peak_l = s.iter().step_by(2).fold(0f32, |m, x| m.max(x.abs()));
    let peak_r = s.iter().skip(1).step_by(2).fold(0f32, |m, x| m.max(x.abs()));
    assert!((peak_l - 0.5).abs() < 0.02 && (peak_r - 0.5).abs() < 0.02, "{peak_l} {peak_r}");
}
