//! Audio control methods (sqm extensions to the protocol): `audio_cue`,
//! `audio_stop`, `audio_volume`, `audio_status`.
//!
//! The first audio call opens the pack's library and a live sink (the
//! default device, or the real-time null sink without one) and keeps them
//! for later calls. A call naming another genre or world reopens the
//! library; what played stops with a short fade. A poller thread handles
//! the engine's auto-advance between calls.
//!
//! | method | params | result |
//! |---|---|---|
//! | `audio_cue` | `cue` (an AudioCue) or `narration` (text); optional `genre`, `world` | `{"decisions":[…],"status":{…}}` |
//! | `audio_stop` | `channel` (`music`, `sfx`, `ambience`, `all`), `fade_out_ms` = 0 | `{"status":{…}}` |
//! | `audio_volume` | `channel` (a lane or `master`), `volume` 0..1 and/or `muted` bool | `{"status":{…}}` |
//! | `audio_status` | — | the mixer snapshot |
//!
//! Errors: `INVALID_REQUEST` for bad params, `AUDIO_FAILED` when the pack
//! has no usable audio.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use super::wire::{Code, Method, WireError};
use crate::audio::output::{open_live, LiveSink};
use crate::audio::rotator::Rng;
use crate::audio::{load_library, Player};
use crate::interpret::{AudioCue, AudioLane, AudioRules};

struct Live {
    genre: String,
    world: Option<String>,
    player: Arc<Mutex<Player>>,
    rules: AudioRules,
    _sink: LiveSink,
    stop: Arc<AtomicBool>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// The daemon's audio state.
pub(crate) struct AudioService {
    packs_root: PathBuf,
    default_genre: Option<String>,
    null_sink: bool,
    live: Mutex<Option<Live>>,
}

fn invalid(msg: impl Into<String>) -> WireError {
    WireError::new(Code::InvalidRequest, msg)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AudioService {
    pub(crate) fn new(packs_root: PathBuf, default_genre: Option<String>, null_sink: bool) -> AudioService {
        AudioService { packs_root, default_genre, null_sink, live: Mutex::new(None) }
    }

    /// Handles one audio method (blocking: decoding may take a moment).
    pub(crate) fn handle(&self, method: Method, params: &Map<String, Value>) -> Result<Value, WireError> {
        match method {
            Method::AudioCue => self.cue(params),
            Method::AudioStop => {
                let fade = opt_u64(params, "fade_out_ms")?.unwrap_or(0);
                let channel = channel_param(params, "all")?;
                let lanes = lanes(Some(&Value::String(channel.into())))?;
                let live = lock(&self.live);
                if let Some(l) = live.as_ref() {
                    let mut p = lock(&l.player);
                    for lane in lanes {
                        p.stop(lane, fade);
                    }
                    let _ = p.take_decisions();
                }
                Ok(json!({"status": status_of(live.as_ref())}))
            }
            Method::AudioVolume => {
                let channel = channel_param(params, "master")?;
                let volume = match params.get("volume") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(
                        v.as_f64()
                            .filter(|x| (0.0..=1.0).contains(x))
                            .ok_or_else(|| invalid("'volume' must be a number between 0 and 1"))?,
                    ),
                };
                let muted = match params.get("muted") {
                    None | Some(Value::Null) => None,
                    Some(Value::Bool(b)) => Some(*b),
                    Some(_) => return Err(invalid("'muted' must be a boolean")),
                };
                if volume.is_none() && muted.is_none() {
                    return Err(invalid("audio_volume needs 'volume' and/or 'muted'"));
                }
                let live = self.ensure(params)?;
                let live = live.as_ref().expect("ensured");
                let p = lock(&live.player);
                let mut e = lock(&p.engine);
                if channel == "master" {
                    if muted.is_some() {
                        return Err(invalid("the master has no mute; mute a channel"));
                    }
                    e.set_master(volume.unwrap_or(1.0) as f32);
                } else {
                    for lane in lanes(Some(&Value::String(channel.into())))? {
                        if let Some(v) = volume {
                            e.set_volume(lane, v as f32);
                        }
                        if let Some(m) = muted {
                            e.set_muted(lane, m);
                        }
                    }
                }
                drop(e);
                drop(p);
                Ok(json!({"status": status_of(Some(live))}))
            }
            Method::AudioStatus => Ok(status_of(lock(&self.live).as_ref())),
            other => Err(WireError::new(Code::UnknownMethod, format!("{other} is not an audio method"))),
        }
    }

    fn cue(&self, params: &Map<String, Value>) -> Result<Value, WireError> {
        let cue = match params.get("cue") {
            Some(v) => {
                Some(serde_json::from_value::<AudioCue>(v.clone()).map_err(|e| invalid(format!("bad 'cue': {e}")))?)
            }
            None => None,
        };
        let narration = match params.get("narration") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(_) => return Err(invalid("'narration' must be a non-empty string")),
        };
        if cue.is_none() && narration.is_none() {
            return Err(invalid("audio_cue needs 'cue' (an AudioCue) or 'narration'"));
        }
        let live = self.ensure(params)?;
        let live = live.as_ref().expect("ensured");
        let cues = match (cue, narration) {
            (Some(c), _) => vec![c],
            (None, Some(text)) => live.rules.cues(&text),
            (None, None) => unreachable!("checked above"),
        };
        let decisions = {
            let mut p = lock(&live.player);
            p.cues(cues);
            p.take_decisions()
        };
        Ok(json!({"decisions": decisions, "status": status_of(Some(live))}))
    }

    /// Opens (or reopens, for another genre/world) the library and sink.
    fn ensure(&self, params: &Map<String, Value>) -> Result<std::sync::MutexGuard<'_, Option<Live>>, WireError> {
        let genre = match params.get("genre") {
            Some(Value::String(g)) if !g.is_empty() => Some(g.clone()),
            None | Some(Value::Null) => None,
            Some(Value::String(_)) => None,
            Some(_) => return Err(invalid("'genre' must be a string")),
        };
        let world = match params.get("world") {
            Some(Value::String(w)) if !w.is_empty() => Some(w.clone()),
            None | Some(Value::Null) | Some(Value::String(_)) => None,
            Some(_) => return Err(invalid("'world' must be a string")),
        };
        let mut live = lock(&self.live);
        let genre = match (genre, live.as_ref(), &self.default_genre) {
            (Some(g), _, _) => g,
            (None, Some(l), _) => l.genre.clone(),
            (None, None, Some(d)) => d.clone(),
            (None, None, None) => return Err(invalid("audio needs a 'genre' (no default pack)")),
        };
        if !crate::pack::is_slug(&genre) {
            return Err(invalid(format!("'genre' must be a pack slug, got '{genre}'")));
        }
        let reuse = live.as_ref().is_some_and(|l| l.genre == genre && (world.is_none() || l.world == world));
        if !reuse {
            if let Some(old) = live.take() {
                let p = lock(&old.player);
                let mut e = lock(&p.engine);
                for lane in crate::audio::engine::Engine::lanes() {
                    e.stop(lane, 300);
                }
            }
            let dir = self.packs_root.join(&genre);
            let library = load_library(&dir, world.as_deref(), Rng::from_time())
                .map_err(|e| WireError::new(Code::AudioFailed, format!("genre '{genre}': {e}")))?;
            let rules = AudioRules::new(library.config.clone());
            let player = Player::new(library);
            let sink = open_live(player.engine.clone(), self.null_sink);
            let player = Arc::new(Mutex::new(player));
            let stop = Arc::new(AtomicBool::new(false));
            let (p2, s2) = (player.clone(), stop.clone());
            let _ = std::thread::Builder::new().name("sqm-audio-poll".into()).spawn(move || {
                while !s2.load(Ordering::Acquire) {
                    let decisions = {
                        let mut p = lock(&p2);
                        p.poll();
                        p.take_decisions()
                    };
                    for d in decisions {
                        tracing::info!(lane = ?d.lane, action = d.action, file = ?d.file, "audio");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            });
            tracing::info!(genre = %genre, world = ?world, sink = sink.name(), "audio ready");
            *live = Some(Live { genre, world, player, rules, _sink: sink, stop });
        }
        Ok(live)
    }
}

fn status_of(live: Option<&Live>) -> Value {
    match live {
        Some(l) => {
            let mut s = lock(&l.player).snapshot();
            s["genre"] = json!(l.genre);
            s["sink"] = json!(l._sink.name());
            s
        }
        None => json!({"active": false}),
    }
}

fn opt_u64(params: &Map<String, Value>, key: &str) -> Result<Option<u64>, WireError> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| invalid(format!("'{key}' must be an integer ≥ 0"))),
    }
}

/// The `channel` param as text: absent or null → `default`; any other
/// non-string is an error (never silently "all").
fn channel_param<'a>(params: &'a Map<String, Value>, default: &'a str) -> Result<&'a str, WireError> {
    match params.get("channel") {
        None | Some(Value::Null) => Ok(default),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid("'channel' must be a string")),
    }
}

fn lanes(v: Option<&Value>) -> Result<Vec<AudioLane>, WireError> {
    match v.and_then(Value::as_str) {
        None | Some("all") => Ok(crate::audio::engine::Engine::lanes().to_vec()),
        Some("music") => Ok(vec![AudioLane::Music]),
        Some("sfx") => Ok(vec![AudioLane::Sfx]),
        Some("ambience") => Ok(vec![AudioLane::Ambience]),
        Some(other) => Err(invalid(format!("unknown channel '{other}' (music, sfx, ambience, all)"))),
    }
}
