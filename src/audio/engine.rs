//! The mixer engine (audio.md §7): three buses of voices at 48 kHz stereo
//! f32, every gain change a per-sample ramp.
//!
//! out = clamp(±1, master × Σ_bus bus × duck_bus × Σ_voice env × loud × x)
//!
//! The engine is a plain sample generator: [`Engine::render`] fills a
//! buffer, so the same graph feeds the device, a WAV file (as fast as the
//! CPU allows) and the real-time null sink, and tests pull it directly.

use super::library::{Samples, RATE};
use crate::interpret::AudioLane;

/// The shortest ramp any change uses: 5 ms.
pub(crate) const MIN_RAMP: usize = (RATE as usize) / 200;
/// Volume, mute and master changes ramp over 20 ms.
pub(crate) const VOLUME_RAMP: usize = (RATE as usize) / 50;
/// Ducking attack and release.
pub(crate) const DUCK_ATTACK_S: f64 = 0.2;
pub(crate) const DUCK_RELEASE_S: f64 = 0.5;

pub(crate) fn ms_to_frames(ms: u64) -> usize {
    (ms as usize * RATE as usize / 1000).max(MIN_RAMP)
}

/// A linear ramp towards a target; retargeting starts from the current value.
#[derive(Clone, Copy, Debug)]
struct Ramp {
    value: f32,
    target: f32,
    step: f32,
}

impl Ramp {
    fn new(v: f32) -> Ramp {
        Ramp { value: v, target: v, step: 0.0 }
    }

    fn to(&mut self, target: f32, frames: usize) {
        self.target = target;
        self.step = (target - self.value) / frames.max(1) as f32;
    }

    #[inline]
    fn tick(&mut self) -> f32 {
        let v = self.value;
        if self.value != self.target {
            self.value += self.step;
            if (self.step >= 0.0 && self.value >= self.target) || (self.step < 0.0 && self.value <= self.target) {
                self.value = self.target;
            }
        }
        v
    }
}

/// A voice's gain envelope.
#[derive(Clone, Copy, Debug)]
enum Env {
    Const(f32),
    /// Linear `from` → `to` over `len` frames; `remove` ends the voice.
    Linear {
        from: f32,
        to: f32,
        n: usize,
        len: usize,
        remove: bool,
    },
    /// Equal-power fade-in: sin(π/2 · n/len).
    SinIn {
        n: usize,
        len: usize,
    },
    /// Equal-power fade-out from g0: g0 · cos(π/2 · n/len), then removed.
    CosOut {
        g0: f32,
        n: usize,
        len: usize,
    },
}

impl Env {
    #[inline]
    fn gain(&self) -> f32 {
        match *self {
            Env::Const(g) => g,
            Env::Linear { from, to, n, len, .. } => from + (to - from) * (n as f32 / len as f32),
            Env::SinIn { n, len } => (std::f32::consts::FRAC_PI_2 * n as f32 / len as f32).sin(),
            Env::CosOut { g0, n, len } => g0 * (std::f32::consts::FRAC_PI_2 * n as f32 / len as f32).cos(),
        }
    }

    /// Advances one frame; true when the voice should be removed.
    #[inline]
    fn advance(&mut self) -> bool {
        match self {
            Env::Const(_) => false,
            Env::Linear { to, n, len, remove, .. } => {
                *n += 1;
                if *n >= *len {
                    let (to, remove) = (*to, *remove);
                    *self = Env::Const(to);
                    return remove;
                }
                false
            }
            Env::SinIn { n, len } => {
                *n += 1;
                if *n >= *len {
                    *self = Env::Const(1.0);
                }
                false
            }
            Env::CosOut { n, len, .. } => {
                *n += 1;
                *n >= *len
            }
        }
    }

    /// Fading out by command (or crossfaded away).
    fn leaving(&self) -> bool {
        matches!(self, Env::CosOut { .. } | Env::Linear { remove: true, .. })
    }
}

/// What a voice plays next when it ends by itself (music auto-advance).
#[derive(Clone)]
pub(crate) struct Next {
    pub label: String,
    pub samples: Samples,
    pub loud: f32,
    pub fade_in_frames: usize,
}

#[derive(Clone)]
struct Voice {
    label: String,
    samples: Samples,
    /// Index into `samples` (interleaved, so it moves by 2).
    pos: usize,
    looped: bool,
    env: Env,
    loud: f32,
    next: Option<Next>,
}

struct Bus {
    voices: Vec<Voice>,
    gain: Ramp,
    volume: f32,
    muted: bool,
}

impl Bus {
    fn new(volume: f32) -> Bus {
        Bus { voices: Vec::new(), gain: Ramp::new(volume), volume, muted: false }
    }

    fn retarget(&mut self) {
        let t = if self.muted { 0.0 } else { self.volume };
        self.gain.to(t, VOLUME_RAMP);
    }
}

/// How a new voice enters its bus.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Start {
    /// At gain 1 (or fading in over n frames), beside what is playing.
    Add { fade_in_frames: usize },
    /// Equal-power crossfade over n frames against everything on the bus
    /// (a plain start, with the fade-in, when the bus is idle).
    Crossfade { frames: usize, fade_in_frames: usize },
}

/// Things the engine reports to its controller.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Event {
    /// A music voice ended by itself and its queued successor started at
    /// the next frame.
    Advanced { lane: AudioLane, from: String, to: String, frame: u64 },
    /// A voice ended by itself with nothing queued.
    Ended { lane: AudioLane, label: String, frame: u64 },
}

/// One lane in a snapshot.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct LaneState {
    pub track: Option<String>,
    pub volume: f32,
    pub playing: bool,
    pub muted: bool,
}

pub struct Engine {
    buses: [Bus; 3],
    master: Ramp,
    master_volume: f32,
    duck: f32,
    duck_floor: f32,
    attack: f32,
    release: f32,
    frame: u64,
    events: Vec<Event>,
}

fn idx(lane: AudioLane) -> usize {
    match lane {
        AudioLane::Music => 0,
        AudioLane::Sfx => 1,
        AudioLane::Ambience => 2,
    }
}

const LANES: [AudioLane; 3] = [AudioLane::Music, AudioLane::Sfx, AudioLane::Ambience];

impl Engine {
    /// Bus volumes from the pack's mixer (ambience starts at the music
    /// volume) and the duck depth in dB.
    pub fn new(music_volume: f32, sfx_volume: f32, duck_db: f64) -> Engine {
        let floor = 10f64.powf(duck_db.min(0.0) / 20.0) as f32;
        let rate = RATE as f64;
        Engine {
            buses: [Bus::new(music_volume), Bus::new(sfx_volume), Bus::new(music_volume)],
            master: Ramp::new(1.0),
            master_volume: 1.0,
            duck: 1.0,
            duck_floor: floor,
            attack: ((1.0 - floor as f64) / (DUCK_ATTACK_S * rate)) as f32,
            release: ((1.0 - floor as f64) / (DUCK_RELEASE_S * rate)) as f32,
            frame: 0,
            events: Vec::new(),
        }
    }

    /// Frames rendered so far.
    pub(crate) fn frame(&self) -> u64 {
        self.frame
    }

    /// The current duck gain (1 = not ducked).
    pub(crate) fn duck(&self) -> f32 {
        self.duck
    }

    /// Starts a voice on `lane`.
    pub fn play(&mut self, lane: AudioLane, label: &str, samples: Samples, loud: f32, start: Start, looped: bool) {
        let bus = &mut self.buses[idx(lane)];
        let fade_in = |n: usize| {
            if n == 0 {
                Env::Const(1.0)
            } else {
                Env::Linear { from: 0.0, to: 1.0, n: 0, len: n.max(MIN_RAMP), remove: false }
            }
        };
        let env = match start {
            Start::Add { fade_in_frames } => fade_in(fade_in_frames),
            Start::Crossfade { fade_in_frames, .. } if bus.voices.is_empty() => fade_in(fade_in_frames),
            Start::Crossfade { frames, .. } => {
                let len = frames.max(MIN_RAMP);
                for v in &mut bus.voices {
                    v.env = Env::CosOut { g0: v.env.gain(), n: 0, len };
                    v.next = None;
                }
                Env::SinIn { n: 0, len }
            }
        };
        bus.voices.push(Voice { label: label.to_owned(), samples, pos: 0, looped, env, loud, next: None });
    }

    /// Queues what the newest voice of `lane` plays after it ends by itself.
    pub(crate) fn queue_next(&mut self, lane: AudioLane, next: Next) -> bool {
        match self.buses[idx(lane)].voices.iter_mut().rev().find(|v| !v.env.leaving()) {
            Some(v) => {
                v.next = Some(next);
                true
            }
            None => false,
        }
    }

    /// Whether the newest voice of `lane` has a successor queued.
    pub(crate) fn has_next(&self, lane: AudioLane) -> bool {
        self.buses[idx(lane)].voices.iter().rev().find(|v| !v.env.leaving()).is_some_and(|v| v.next.is_some())
    }

    /// Fades every voice of `lane` out (at least 5 ms) and removes it.
    pub fn stop(&mut self, lane: AudioLane, fade_ms: u64) {
        let len = ms_to_frames(fade_ms);
        for v in &mut self.buses[idx(lane)].voices {
            v.env = Env::Linear { from: v.env.gain(), to: 0.0, n: 0, len, remove: true };
            v.next = None;
        }
    }

    pub fn set_volume(&mut self, lane: AudioLane, volume: f32) {
        let b = &mut self.buses[idx(lane)];
        b.volume = volume.clamp(0.0, 1.0);
        b.retarget();
    }

    pub fn set_muted(&mut self, lane: AudioLane, muted: bool) {
        let b = &mut self.buses[idx(lane)];
        b.muted = muted;
        b.retarget();
    }

    pub fn set_master(&mut self, volume: f32) {
        self.master_volume = volume.clamp(0.0, 1.0);
        self.master.to(self.master_volume, VOLUME_RAMP);
    }

    pub(crate) fn master_volume(&self) -> f32 {
        self.master_volume
    }

    /// The label of the voice that is (or is becoming) current on `lane`.
    pub fn current(&self, lane: AudioLane) -> Option<&str> {
        self.buses[idx(lane)].voices.iter().rev().find(|v| !v.env.leaving()).map(|v| v.label.as_str())
    }

    pub(crate) fn lane_state(&self, lane: AudioLane) -> LaneState {
        let b = &self.buses[idx(lane)];
        let track = self.current(lane).map(str::to_owned);
        // A lane whose voices are all fading out after a stop is not
        // playing any more (and has no track), even while the fade sounds.
        LaneState { playing: track.is_some(), track, volume: b.volume, muted: b.muted }
    }

    pub(crate) fn lanes() -> [AudioLane; 3] {
        LANES
    }

    /// Events since the last call.
    pub(crate) fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Fills `out` (interleaved stereo) with the next `out.len() / 2` frames.
    pub fn render(&mut self, out: &mut [f32]) {
        for frame in out.chunks_exact_mut(2) {
            let duck_target = if self.buses[1].voices.is_empty() { 1.0 } else { self.duck_floor };
            if self.duck > duck_target {
                self.duck = (self.duck - self.attack).max(duck_target);
            } else if self.duck < duck_target {
                self.duck = (self.duck + self.release).min(duck_target);
            }
            let (mut l, mut r) = (0f32, 0f32);
            for (bi, bus) in self.buses.iter_mut().enumerate() {
                let bus_gain = bus.gain.tick() * if bi == 1 { 1.0 } else { self.duck };
                if bus.voices.is_empty() {
                    continue;
                }
                let (mut bl, mut br) = (0f32, 0f32);
                let mut i = 0;
                while i < bus.voices.len() {
                    let v = &mut bus.voices[i];
                    let g = v.env.gain() * v.loud;
                    bl += g * v.samples[v.pos];
                    br += g * v.samples[v.pos + 1];
                    let mut remove = v.env.advance();
                    v.pos += 2;
                    if v.pos + 1 >= v.samples.len() {
                        if v.looped {
                            v.pos = 0;
                        } else if !remove {
                            remove = true;
                            let lane = LANES[bi];
                            match v.next.take() {
                                Some(n) if !v.env.leaving() => {
                                    self.events.push(Event::Advanced {
                                        lane,
                                        from: v.label.clone(),
                                        to: n.label.clone(),
                                        frame: self.frame,
                                    });
                                    let env = if n.fade_in_frames == 0 {
                                        Env::Const(1.0)
                                    } else {
                                        Env::Linear {
                                            from: 0.0,
                                            to: 1.0,
                                            n: 0,
                                            len: n.fade_in_frames.max(MIN_RAMP),
                                            remove: false,
                                        }
                                    };
                                    *v = Voice {
                                        label: n.label,
                                        samples: n.samples,
                                        pos: 0,
                                        looped: false,
                                        env,
                                        loud: n.loud,
                                        next: None,
                                    };
                                    remove = false;
                                }
                                _ => self.events.push(Event::Ended { lane, label: v.label.clone(), frame: self.frame }),
                            }
                        }
                    }
                    if remove {
                        bus.voices.remove(i);
                    } else {
                        i += 1;
                    }
                }
                l += bl * bus_gain;
                r += br * bus_gain;
            }
            let m = self.master.tick();
            frame[0] = (l * m).clamp(-1.0, 1.0);
            frame[1] = (r * m).clamp(-1.0, 1.0);
            self.frame += 1;
        }
    }
}
