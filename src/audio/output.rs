//! One engine, three sinks (audio.md §7.7): the default device, a WAV file
//! rendered faster than real time, and a null sink paced to the clock.

use std::num::NonZero;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::engine::Engine;
use super::library::{CHANNELS, RATE};
use super::Player;
use crate::interpret::{AudioCue, AudioLane};

/// Frames per block: the largest gap between a timeline action and the
/// engine, and the unit the sinks pull.
pub(crate) const BLOCK: usize = 1024;

/// Something to do at a time.
#[derive(Clone, Debug)]
pub enum Action {
    Cues(Vec<AudioCue>),
    Stop { lane: AudioLane, fade_out_ms: u64 },
}

/// Actions sorted by time (seconds).
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub items: Vec<(f64, Action)>,
}

impl Timeline {
    pub fn push(&mut self, at: f64, action: Action) {
        self.items.push((at.max(0.0), action));
    }

    fn sorted(mut self) -> Vec<(u64, Action)> {
        self.items.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        self.items.into_iter().map(|(t, a)| ((t * RATE as f64).round() as u64, a)).collect()
    }
}

fn apply(player: &mut Player, action: Action) {
    match action {
        Action::Cues(c) => player.cues(c),
        Action::Stop { lane, fade_out_ms } => player.stop(lane, fade_out_ms),
    }
}

/// Renders `duration` seconds as fast as possible; actions land on their
/// exact frame. `report` sees each batch of decisions.
pub fn render_offline(
    player: &mut Player,
    timeline: Timeline,
    duration: f64,
    report: &mut dyn FnMut(&mut Player),
) -> Vec<f32> {
    let total = (duration * RATE as f64).round() as u64;
    let mut out = vec![0f32; total as usize * CHANNELS as usize];
    let mut actions = timeline.sorted().into_iter().peekable();
    let mut frame = 0u64;
    while frame < total {
        while let Some((at, _)) = actions.peek() {
            if *at > frame {
                break;
            }
            let (_, a) = actions.next().expect("peeked");
            apply(player, a);
        }
        report(player);
        let next_action = actions.peek().map(|(at, _)| *at).unwrap_or(u64::MAX);
        let end = (frame + BLOCK as u64).min(total).min(next_action.max(frame + 1));
        let (a, b) = (frame as usize * 2, end as usize * 2);
        player.engine.lock().unwrap_or_else(|p| p.into_inner()).render(&mut out[a..b]);
        player.poll();
        frame = end;
    }
    report(player);
    out
}

/// Writes 32-bit float stereo WAV through rodio, atomically.
pub(crate) fn write_wav(path: &Path, samples: Vec<f32>) -> Result<(), super::AudioError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let err = |source| super::AudioError::Write { path: path.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(err)?;
    let source = rodio::buffer::SamplesBuffer::new(
        NonZero::new(CHANNELS).expect("2"),
        NonZero::new(RATE).expect("48k"),
        samples,
    );
    let name = crate::atomic::TempName { prefix: ".mix-", suffix: ".wav.tmp" };
    crate::atomic::write_with(path, name, false, |f| {
        rodio::wav_to_writer(source, f).map_err(|e| std::io::Error::other(e.to_string()))
    })
    .map_err(err)
}

/// The engine as a rodio source, pulled block by block (one lock per block).
pub(crate) struct EngineSource {
    engine: Arc<Mutex<Engine>>,
    buf: Vec<f32>,
    pos: usize,
}

impl EngineSource {
    pub(crate) fn new(engine: Arc<Mutex<Engine>>) -> EngineSource {
        EngineSource { engine, buf: vec![0.0; BLOCK * 2], pos: BLOCK * 2 }
    }
}

impl Iterator for EngineSource {
    type Item = f32;

    fn next(&mut self) -> Option<f32> {
        if self.pos >= self.buf.len() {
            self.engine.lock().unwrap_or_else(|p| p.into_inner()).render(&mut self.buf);
            self.pos = 0;
        }
        let s = self.buf[self.pos];
        self.pos += 1;
        Some(s)
    }
}

impl rodio::Source for EngineSource {
    fn current_span_len(&self) -> Option<usize> {
        None
    }

    fn channels(&self) -> rodio::ChannelCount {
        NonZero::new(CHANNELS).expect("2")
    }

    fn sample_rate(&self) -> rodio::SampleRate {
        NonZero::new(RATE).expect("48k")
    }

    fn total_duration(&self) -> Option<Duration> {
        None
    }
}

/// A running live output; dropping it stops the sound.
pub(crate) enum LiveSink {
    #[cfg(feature = "device")]
    Device(
        #[expect(dead_code, reason = "held, not read: dropping it closes the device")] rodio::stream::MixerDeviceSink,
    ),
    Null {
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

impl LiveSink {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            #[cfg(feature = "device")]
            LiveSink::Device(_) => "device",
            LiveSink::Null { .. } => "null",
        }
    }
}

impl Drop for LiveSink {
    #[allow(irrefutable_let_patterns)] // without the `device` feature there is one variant
    fn drop(&mut self) {
        if let LiveSink::Null { stop, thread } = self {
            stop.store(true, Ordering::Release);
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Plays the engine on the default device, or on the null sink when there
/// is none (or `force_null`), with one log line saying which.
pub(crate) fn open_live(engine: Arc<Mutex<Engine>>, force_null: bool) -> LiveSink {
    #[cfg(feature = "device")]
    if !force_null {
        match rodio::DeviceSinkBuilder::open_default_sink() {
            Ok(mut sink) => {
                sink.log_on_drop(false);
                sink.mixer().add(EngineSource::new(engine));
                tracing::info!("playing on the default audio device");
                return LiveSink::Device(sink);
            }
            Err(e) => tracing::warn!("no audio device ({e}); playing into the null sink (real-time, silent)"),
        }
    }
    #[cfg(not(feature = "device"))]
    if !force_null {
        tracing::warn!("built without the `device` feature; playing into the null sink (real-time, silent)");
    }
    null_sink(engine)
}

/// Pulls 1024-frame blocks paced to the wall clock and discards them.
pub(crate) fn null_sink(engine: Arc<Mutex<Engine>>) -> LiveSink {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("sqm-null-sink".into())
        .spawn(move || {
            let mut buf = vec![0f32; BLOCK * 2];
            let start = Instant::now();
            let mut frames = 0u64;
            while !flag.load(Ordering::Acquire) {
                engine.lock().unwrap_or_else(|p| p.into_inner()).render(&mut buf);
                frames += BLOCK as u64;
                let due = start + Duration::from_secs_f64(frames as f64 / RATE as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        })
        .expect("spawn the null sink");
    LiveSink::Null { stop, thread: Some(thread) }
}
