//! `sqm play`: the genre pack's music and sfx, live or into a WAV file.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::audio::output::{self, Action, Timeline};
use crate::audio::rotator::Rng;
use crate::audio::{load_library, Decision, Player};
use crate::interpret::{AudioCue, AudioLane, AudioRules};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Script lines (--script): one JSON object per line,
  {\"at\": 2.5, \"cue\": {\"lane\": \"music\", \"mood\": \"combat\", \"intensity\": 0.8}}
  {\"at\": 9, \"stop\": \"music\", \"fade_out_ms\": 1500}

Examples:
  sqm play --mood combat --intensity 0.8                 # live, built-in pack
  sqm play --pack examples/genre_packs/ashfall --mood combat --out /tmp/x.wav --duration 10
  sqm play --narration session.txt --turn-seconds 6 --out session.wav
  sqm play --script cues.jsonl --json")]
pub struct Args {
    /// Genre pack directory (default: the built-in example pack).
    #[arg(long, value_name = "DIR")]
    pub pack: Option<PathBuf>,
    /// World whose audio.yaml replaces the genre's, when it has one.
    #[arg(long)]
    pub world: Option<String>,
    /// Start music of this mood.
    #[arg(long)]
    pub mood: Option<String>,
    /// Intensity of the --mood cue (0..1).
    #[arg(long, default_value_t = 0.5)]
    pub intensity: f64,
    /// Play this sfx at the start (repeatable).
    #[arg(long = "sfx", value_name = "ID")]
    pub sfx: Vec<String>,
    /// Narration: each blank-line-separated paragraph is a turn whose audio cues play in order.
    #[arg(long, value_name = "FILE")]
    pub narration: Option<PathBuf>,
    /// Seconds between narration turns.
    #[arg(long, default_value_t = 8.0, value_name = "N")]
    pub turn_seconds: f64,
    /// A timed cue list (JSON lines; see below).
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// Render offline into this WAV file (48 kHz stereo float) instead of playing.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Seconds to play or render [default: 60, or with --narration one turn per paragraph plus one].
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// Seed for track choices (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Play into the real-time null sink even when a device exists.
    #[arg(long)]
    pub null_sink: bool,
    /// One JSON object per decision on stdout.
    #[arg(long)]
    pub json: bool,
}

fn parse_script(path: &std::path::Path) -> anyhow::Result<Timeline> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut t = Timeline::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let where_ = || format!("{}:{}", path.display(), i + 1);
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{}: not JSON", where_()))?;
        let at = v["at"].as_f64().filter(|a| a.is_finite() && *a >= 0.0);
        let Some(at) = at else { bail!("{}: \"at\" must be a number of seconds ≥ 0", where_()) };
        if let Some(cue) = v.get("cue") {
            let cue: AudioCue =
                serde_json::from_value(cue.clone()).with_context(|| format!("{}: bad \"cue\"", where_()))?;
            t.push(at, Action::Cues(vec![cue]));
        } else if let Some(lane) = v.get("stop") {
            let lane: AudioLane = serde_json::from_value(lane.clone())
                .with_context(|| format!("{}: \"stop\" must be music, sfx or ambience", where_()))?;
            let fade =
                v.get("fade_out_ms").map(|f| f.as_u64().context("fade_out_ms must be an integer ≥ 0")).transpose();
            let fade = fade.with_context(where_)?.unwrap_or(0);
            t.push(at, Action::Stop { lane, fade_out_ms: fade });
        } else {
            bail!("{}: expected \"cue\" or \"stop\"", where_());
        }
    }
    Ok(t)
}

fn report(decisions: Vec<Decision>, json: bool) {
    let mut out = std::io::stdout().lock();
    for d in decisions {
        if json {
            let _ = writeln!(out, "{}", serde_json::to_string(&d).unwrap_or_default());
            continue;
        }
        let lane = serde_json::to_value(d.lane).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let mut line = format!("{:>7.2}s {:<8} {:<9}", d.t, lane, d.action);
        if let Some(m) = &d.mood {
            line.push_str(&format!(" mood={m}"));
        }
        if let Some(f) = &d.file {
            line.push_str(&format!(" {f}"));
        }
        if !d.weights.is_empty() {
            let w: Vec<String> = d.weights.iter().map(|(p, w)| format!("{}={w:.1}", short(p))).collect();
            line.push_str(&format!(" [weights {}]", w.join(" ")));
        }
        if let Some(n) = &d.note {
            line.push_str(&format!(" ({n})"));
        }
        eprintln!("{line}");
    }
}

fn short(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

pub(crate) fn run(args: Args) -> anyhow::Result<u8> {
    if let Some(d) = args.duration {
        if !(d.is_finite() && d > 0.0 && d <= 24.0 * 3600.0) {
            bail!("--duration must be between 0 and 86400 seconds");
        }
    }
    if !(0.0..=1.0).contains(&args.intensity) {
        bail!("--intensity must be between 0 and 1");
    }
    if !(args.turn_seconds.is_finite() && args.turn_seconds > 0.0) {
        bail!("--turn-seconds must be > 0");
    }
    let pack = match &args.pack {
        Some(p) => p.clone(),
        None => crate::pack::embedded::default_pack().context("cannot unpack the built-in example pack")?,
    };
    let rng = args.seed.map(Rng::new).unwrap_or_else(Rng::from_time);
    let library = load_library(&pack, args.world.as_deref(), rng).map_err(|e| anyhow::anyhow!(e))?;
    let rules = AudioRules::new(library.config.clone());
    let mut timeline = match &args.script {
        Some(p) => parse_script(p)?,
        None => Timeline::default(),
    };
    if let Some(m) = &args.mood {
        let mut cue = AudioCue::new(AudioLane::Music);
        cue.mood = Some(m.clone());
        cue.intensity = args.intensity;
        timeline.push(0.0, Action::Cues(vec![cue]));
    }
    let unknown: Vec<&String> = args.sfx.iter().filter(|id| !library.config.sfx_library.contains_key(*id)).collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = library.config.sfx_library.keys().map(String::as_str).collect();
        eprintln!(
            "error: unknown sfx {}; this pack has: {}",
            unknown.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", "),
            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
        );
        return Ok(super::exit::FAILURE);
    }
    for id in &args.sfx {
        let mut cue = AudioCue::new(AudioLane::Sfx);
        cue.sfx_id = Some(id.clone());
        timeline.push(0.0, Action::Cues(vec![cue]));
    }
    let mut turns = 0;
    if let Some(p) = &args.narration {
        let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        let paragraphs = text.split("\n\n").map(str::trim).filter(|s| !s.is_empty());
        for (i, para) in paragraphs.enumerate() {
            let cues = rules.cues(para);
            timeline.push(i as f64 * args.turn_seconds, Action::Cues(cues));
            turns = i + 1;
        }
    }
    // A narration lasts its turns plus one more for the last to ring out.
    let duration = args.duration.unwrap_or(if turns > 0 { (turns + 1) as f64 * args.turn_seconds } else { 60.0 });
    if timeline.items.is_empty() {
        bail!("nothing to play: give --mood, --sfx, --narration or --script");
    }
    let mut player = Player::new(library);

    if let Some(out) = &args.out {
        let started = Instant::now();
        let json = args.json;
        let samples =
            output::render_offline(&mut player, timeline, duration, &mut |p| report(p.take_decisions(), json));
        let frames = samples.len() / 2;
        let render_s = started.elapsed().as_secs_f64();
        output::write_wav(out, samples).map_err(|e| anyhow::anyhow!(e))?;
        let total_s = started.elapsed().as_secs_f64();
        eprintln!(
            "wrote {}: {:.1} s, {frames} frames, 48 kHz stereo f32, in {:.2} s ({:.0}x real time)",
            out.display(),
            duration,
            total_s,
            duration / render_s.max(1e-9)
        );
        return Ok(super::exit::OK);
    }

    // Live: actions on the wall clock, the engine on the device or null sink.
    let sink = output::open_live(player.engine.clone(), args.null_sink);
    let started = Instant::now();
    let mut items = timeline.items;
    items.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    let mut items = items.into_iter().peekable();
    while started.elapsed().as_secs_f64() < duration {
        while let Some((at, _)) = items.peek() {
            if *at > started.elapsed().as_secs_f64() {
                break;
            }
            match items.next().expect("peeked").1 {
                Action::Cues(c) => player.cues(c),
                Action::Stop { lane, fade_out_ms } => player.stop(lane, fade_out_ms),
            }
        }
        player.poll();
        report(player.take_decisions(), args.json);
        std::thread::sleep(Duration::from_millis(10));
    }
    for lane in crate::audio::engine::Engine::lanes() {
        player.engine.lock().unwrap_or_else(|p| p.into_inner()).stop(lane, 300);
    }
    std::thread::sleep(Duration::from_millis(350));
    tracing::info!(sink = sink.name(), "stopped");
    drop(sink);
    Ok(super::exit::OK)
}
