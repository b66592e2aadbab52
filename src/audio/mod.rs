//! Playing a genre pack's pre-rendered music and sfx (audio.md).
//!
//! [`library`] turns moods and sfx ids into decoded files, [`rotator`]
//! chooses among a mood's tracks, [`engine`] mixes three buses with
//! click-free gain ramps, and [`Player`] processes cues (§6) against them.
//! [`output`] connects the engine to a device, a WAV file or a null sink.

pub mod engine;
mod error;
pub mod library;
pub(crate) mod matching;
pub mod output;
pub mod rotator;

pub use error::AudioError;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::interpret::{AudioCue, AudioLane};
use crate::pack::model::Pack;
use engine::{ms_to_frames, Engine, Event, Next, Start};
use library::Library;
use rotator::Rng;

/// Something the player decided, for `sqm play` to report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// Seconds into the session (engine time).
    pub t: f64,
    pub lane: AudioLane,
    /// `start`, `crossfade`, `keep`, `stop`, `advance`, `drop`.
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mood: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// (file, weight) of the rotator's eligible candidates.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<(String, f64)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The pack's audio config for `world` (the world's audio.yaml replaces
/// the genre's when it exists), its base dir, and the manifest gains.
pub fn load_library(pack_dir: &Path, world: Option<&str>, rng: Rng) -> Result<Library, AudioError> {
    let pack = Pack::load(pack_dir)?;
    let (config, base) = pack.audio_for(world)?;
    let mut lib = Library::new(config.clone(), base.to_path_buf(), pack.root.clone(), rng);
    let out = crate::prerender::default_out(pack_dir);
    if out.join(crate::prerender::MANIFEST).is_file() {
        match crate::prerender::Manifest::load(&out) {
            Ok(m) => {
                let gains: HashMap<String, f64> =
                    m.jobs.values().filter_map(|e| e.loudness.as_ref().map(|l| (e.file.clone(), l.gain_db))).collect();
                tracing::info!(files = gains.len(), "loudness gains from the prerender manifest");
                lib.set_gains(gains);
            }
            Err(e) => tracing::warn!("{e}; playing without loudness gains"),
        }
    }
    for alias in config.mood_aliases.keys() {
        if let Err(p) = library::check_alias(config, alias) {
            tracing::warn!(alias = %alias, problem = ?p, "mood alias unusable; treated as undeclared");
        }
    }
    Ok(lib)
}

/// Cue processing (§6) over a shared engine.
pub struct Player {
    pub library: Library,
    pub engine: Arc<Mutex<Engine>>,
    mood: Option<String>,
    intensity: f64,
    /// The last music cue, repeated by auto-advance.
    last_music: Option<AudioCue>,
    decisions: Vec<Decision>,
}

impl Player {
    pub fn new(library: Library) -> Player {
        let m = &library.config.mixer;
        let engine = Engine::new(m.music_volume as f32, m.sfx_volume as f32, m.duck_amount_db);
        Player {
            library,
            engine: Arc::new(Mutex::new(engine)),
            mood: None,
            intensity: 0.5,
            last_music: None,
            decisions: Vec::new(),
        }
    }

    fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> f64 {
        self.engine().frame() as f64 / library::RATE as f64
    }

    fn decide(&mut self, lane: AudioLane, action: &'static str) -> Decision {
        Decision { t: self.now(), lane, action, mood: None, file: None, weights: Vec::new(), note: None }
    }

    /// Decisions since the last call.
    pub fn take_decisions(&mut self) -> Vec<Decision> {
        std::mem::take(&mut self.decisions)
    }

    /// Processes a batch of cues: descending priority, FIFO among equals.
    pub(crate) fn cues(&mut self, cues: Vec<AudioCue>) {
        let mut cues = cues;
        cues.sort_by_key(|c| std::cmp::Reverse(c.priority));
        for c in cues {
            self.cue(c);
        }
    }

    /// Processes one cue (§6).
    pub fn cue(&mut self, cue: AudioCue) {
        let lane = cue.lane;
        if cue.metadata.get("fade_out").and_then(|v| v.as_bool()) == Some(true) {
            self.stop(lane, cue.fade_out_ms);
            return;
        }
        match lane {
            AudioLane::Music => self.music(cue),
            AudioLane::Sfx => {
                let Some(id) = cue.sfx_id.clone() else {
                    let mut d = self.decide(lane, "drop");
                    d.note = Some("sfx cue without sfx_id".into());
                    self.decisions.push(d);
                    return;
                };
                let mut d = self.decide(lane, "start");
                match self.library.pick_sfx(&id) {
                    Some(ch) => {
                        let loud = self.library.loudness(&ch.path);
                        self.engine().play(lane, &ch.raw, ch.samples, loud, Start::Add { fade_in_frames: 0 }, false);
                        d.file = Some(ch.raw);
                        d.note = Some(format!("sfx {id}; music and ambience ducked"));
                    }
                    None => {
                        d.action = "drop";
                        d.note = Some(format!("no playable file for sfx '{id}'"));
                    }
                }
                self.decisions.push(d);
            }
            AudioLane::Ambience => {
                let raw = cue.metadata.get("path").and_then(|v| v.as_str()).map(str::to_owned);
                let looped = cue.metadata.get("loop").and_then(|v| v.as_bool()).unwrap_or(true);
                let mut d = self.decide(lane, "crossfade");
                match raw.as_deref().and_then(|r| self.library.by_path(r)) {
                    Some(ch) => {
                        let loud = self.library.loudness(&ch.path);
                        let start = Start::Crossfade {
                            frames: ms_to_frames(cue.crossfade_ms),
                            fade_in_frames: fade(cue.fade_in_ms),
                        };
                        self.engine().play(lane, &ch.raw, ch.samples, loud, start, looped);
                        d.file = Some(ch.raw);
                    }
                    None => {
                        d.action = "drop";
                        d.note = Some("ambience cue without a playable metadata.path".into());
                    }
                }
                self.decisions.push(d);
            }
        }
    }

    fn music(&mut self, cue: AudioCue) {
        let lane = AudioLane::Music;
        let Some(mood) = cue.mood.clone() else {
            let mut d = self.decide(lane, "drop");
            d.note = Some("music cue without a mood: no change".into());
            self.decisions.push(d);
            return;
        };
        let playing = self.engine().current(lane).is_some();
        if playing {
            if let Some(cur) = self.mood.clone() {
                let same = cur == mood || {
                    let (a, b) = (self.library.resolve_mood(&cur), self.library.resolve_mood(&mood));
                    a.is_some() && a == b
                };
                if same {
                    self.intensity = cue.intensity;
                    if let Some(last) = &mut self.last_music {
                        last.intensity = cue.intensity;
                    }
                    let mut d = self.decide(lane, "keep");
                    d.mood = Some(mood);
                    d.file = self.engine().current(lane).map(str::to_owned);
                    d.note = Some(format!("same mood; intensity {:.2} recorded", cue.intensity));
                    self.decisions.push(d);
                    return;
                }
            }
        }
        let Some(ch) = self.library.pick_music(&mood, cue.intensity) else {
            let mut d = self.decide(lane, "drop");
            d.mood = Some(mood);
            d.note = Some("no playable track for this mood".into());
            self.decisions.push(d);
            return;
        };
        let loud = self.library.loudness(&ch.path);
        let start = if playing {
            Start::Crossfade { frames: ms_to_frames(cue.crossfade_ms), fade_in_frames: fade(cue.fade_in_ms) }
        } else {
            Start::Add { fade_in_frames: fade(cue.fade_in_ms) }
        };
        self.engine().play(lane, &ch.raw, ch.samples.clone(), loud, start, false);
        let mut d = self.decide(lane, if playing { "crossfade" } else { "start" });
        d.mood = Some(mood.clone());
        d.file = Some(ch.raw.clone());
        if let Some(p) = &ch.pick {
            d.weights = p.weights.clone();
            if p.boosted {
                d.note = Some("resolution boost after combat".into());
            }
        }
        self.decisions.push(d);
        self.mood = Some(mood);
        self.intensity = cue.intensity;
        self.last_music = Some(cue);
        self.queue_next();
    }

    /// Picks the track that follows the current one when it ends by
    /// itself, so the engine can switch within the same frame.
    fn queue_next(&mut self) {
        let Some(cue) = self.last_music.clone() else { return };
        let Some(mood) = cue.mood.clone() else { return };
        if self.engine().has_next(AudioLane::Music) {
            return;
        }
        if let Some(ch) = self.library.pick_music(&mood, self.intensity) {
            let next = Next {
                label: ch.raw.clone(),
                samples: ch.samples,
                loud: self.library.loudness(&ch.path),
                fade_in_frames: fade(cue.fade_in_ms),
            };
            self.engine().queue_next(AudioLane::Music, next);
        }
    }

    /// Stops a lane with a fade (at least 5 ms).
    pub(crate) fn stop(&mut self, lane: AudioLane, fade_out_ms: u64) {
        self.engine().stop(lane, fade_out_ms);
        if lane == AudioLane::Music {
            self.mood = None;
            self.last_music = None;
        }
        let mut d = self.decide(lane, "stop");
        d.note = Some(format!("fade out over {} ms", fade_out_ms.max(5)));
        self.decisions.push(d);
    }

    /// Handles engine events (auto-advance bookkeeping). Call between blocks.
    pub(crate) fn poll(&mut self) {
        let events = self.engine().take_events();
        for e in events {
            match e {
                Event::Advanced { lane, from, to, frame } => {
                    let mut d = self.decide(lane, "advance");
                    d.t = frame as f64 / library::RATE as f64;
                    d.mood = self.mood.clone();
                    d.file = Some(to);
                    d.note = Some(format!("{from} ended"));
                    self.decisions.push(d);
                    self.queue_next();
                }
                Event::Ended { lane: AudioLane::Music, .. } => {
                    self.mood = None;
                }
                Event::Ended { .. } => {}
            }
        }
    }

    /// A snapshot for `audio_status`-style reports.
    pub(crate) fn snapshot(&self) -> serde_json::Value {
        let e = self.engine();
        let mut volumes = serde_json::Map::new();
        let mut tracks = serde_json::Map::new();
        let mut playing = serde_json::Map::new();
        let mut muted = serde_json::Map::new();
        for lane in Engine::lanes() {
            let s = e.lane_state(lane);
            let key = serde_json::to_value(lane).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            volumes.insert(key.clone(), s.volume.into());
            tracks.insert(key.clone(), s.track.into());
            playing.insert(key.clone(), s.playing.into());
            muted.insert(key, s.muted.into());
        }
        serde_json::json!({
            "channel_volumes": volumes, "channel_tracks": tracks, "channel_playing": playing,
            "channel_muted": muted, "master_volume": e.master_volume(), "ducked": e.duck() < 0.999,
            "mood": self.mood,
        })
    }
}

fn fade(ms: u64) -> usize {
    if ms == 0 {
        0
    } else {
        ms_to_frames(ms)
    }
}
