//! The library backend (audio.md §3–4): from a mood or an sfx id to a file
//! of the pack, and from a file to decoded 48 kHz stereo samples.

use std::collections::{HashMap, HashSet};
use std::num::NonZero;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rodio::source::UniformSourceIterator;

use super::rotator::{Candidate, Pick, Rng, ThemeRotator};
use super::AudioError;
use crate::pack::model::AudioConfig;

/// The engine's rate and channel count.
pub const RATE: u32 = 48_000;
pub(crate) const CHANNELS: u16 = 2;

/// Longest track sqm decodes (a bound on memory: 15 minutes of 48 kHz
/// stereo f32 is about 330 MB).
pub(crate) const MAX_SECONDS: u32 = 15 * 60;

/// Decoded audio: interleaved stereo f32 at 48 kHz.
pub type Samples = Arc<[f32]>;

/// Decodes any file rodio can read, resampled and channel-mapped to the
/// engine's format.
pub fn decode(path: &Path) -> Result<Samples, AudioError> {
    let (file, len) = crate::pack::paths::open_regular(path)?;
    let decoder = rodio::Decoder::builder()
        .with_data(std::io::BufReader::new(file))
        .with_byte_len(len)
        .with_seekable(true)
        .build()?;
    use rodio::Source;
    let (in_ch, in_rate) = (decoder.channels(), decoder.sample_rate());
    let cap = MAX_SECONDS as usize * in_rate.get() as usize * in_ch.get() as usize;
    let raw: Vec<f32> = decoder.take(cap + 1).collect();
    if raw.len() > cap {
        return Err(AudioError::TooLong { minutes: MAX_SECONDS / 60 });
    }
    let in_frames = raw.len() / in_ch.get() as usize;
    let source = rodio::buffer::SamplesBuffer::new(in_ch, in_rate, raw);
    let uniform =
        UniformSourceIterator::new(source, NonZero::new(CHANNELS).expect("2"), NonZero::new(RATE).expect("48k"));
    let mut samples: Vec<f32> = uniform.collect();
    // The converter's tail may add a few frames; keep the true duration.
    let frames = (in_frames as u64 * RATE as u64).div_ceil(in_rate.get() as u64) as usize;
    samples.truncate(frames * CHANNELS as usize);
    if samples.is_empty() {
        return Err(AudioError::Silent);
    }
    Ok(samples.into())
}

/// A chosen file.
#[derive(Clone, Debug)]
pub struct Chosen {
    pub path: PathBuf,
    /// As the pack writes it.
    pub raw: String,
    pub samples: Samples,
    pub pick: Option<Pick>,
    /// The mood the tracks came from (after aliases), for music.
    pub resolved_mood: Option<String>,
}

/// Why an alias chain is unusable (audio.md §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AliasProblem {
    Cycle,
    Broken,
    TooDeep,
}

/// The load check of §4 for one alias.
pub fn check_alias(cfg: &AudioConfig, start: &str) -> Result<(), AliasProblem> {
    let mut seen = HashSet::from([start.to_owned()]);
    let Some(mut cur) = cfg.mood_aliases.get(start).cloned() else { return Err(AliasProblem::Broken) };
    let mut hops = 1;
    loop {
        if cfg.mood_tracks.contains_key(&cur) {
            return Ok(());
        }
        if seen.contains(&cur) {
            return Err(AliasProblem::Cycle);
        }
        let Some(next) = cfg.mood_aliases.get(&cur).cloned() else { return Err(AliasProblem::Broken) };
        hops += 1;
        if hops > 5 {
            return Err(AliasProblem::TooDeep);
        }
        seen.insert(cur);
        cur = next;
    }
}

/// The pack's audio: config, base dir, rotator, decoded-file cache.
pub struct Library {
    pub config: AudioConfig,
    base: PathBuf,
    pack_root: PathBuf,
    rotator: ThemeRotator,
    cache: HashMap<PathBuf, Samples>,
    bad: HashMap<PathBuf, String>,
    /// Loudness gains (dB) by path relative to the pack, from the prerender manifest.
    gains: HashMap<String, f64>,
    warned: HashSet<String>,
}

impl Library {
    pub fn new(config: AudioConfig, base: PathBuf, pack_root: PathBuf, rng: Rng) -> Library {
        Library {
            config,
            base,
            pack_root,
            rotator: ThemeRotator::new(3, rng),
            cache: HashMap::new(),
            bad: HashMap::new(),
            gains: HashMap::new(),
            warned: HashSet::new(),
        }
    }

    /// Loudness gains from a prerender manifest (path relative to the pack → dB).
    pub(crate) fn set_gains(&mut self, gains: HashMap<String, f64>) {
        self.gains = gains;
    }

    /// The linear loudness gain of a file (1 without a manifest entry).
    pub fn loudness(&self, path: &Path) -> f32 {
        let rel = path.strip_prefix(&self.pack_root).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        self.gains.get(&rel).map(|db| 10f64.powf(db / 20.0) as f32).unwrap_or(1.0)
    }

    fn warn_once(&mut self, key: String, message: String) {
        if self.warned.insert(key) {
            tracing::warn!("{message}");
        }
    }

    /// resolve(m) of §4.
    pub fn resolve_mood(&mut self, mood: &str) -> Option<String> {
        if self.config.mood_tracks.contains_key(mood) {
            return Some(mood.to_owned());
        }
        if self.config.mood_aliases.contains_key(mood) {
            let mut seen = HashSet::from([mood.to_owned()]);
            let mut cur = mood.to_owned();
            for _ in 0..5 {
                let Some(next) = self.config.mood_aliases.get(&cur).cloned() else { break };
                if self.config.mood_tracks.contains_key(&next) {
                    return Some(next);
                }
                if !seen.insert(next.clone()) {
                    break;
                }
                cur = next;
            }
        }
        let fallback = self.config.mood_tracks.get("exploration").is_some_and(|t| !t.is_empty());
        self.warn_once(
            format!("mood:{mood}"),
            format!(
                "mood '{mood}' has no tracks{}",
                if fallback { "; playing exploration" } else { " and there is no exploration fallback" }
            ),
        );
        fallback.then(|| "exploration".to_owned())
    }

    /// Resolves a pack path; URLs and escaping paths are refused (once, logged).
    fn file(&mut self, raw: &str) -> Option<PathBuf> {
        if raw.starts_with("http://") || raw.starts_with("https://") {
            self.warn_once(format!("url:{raw}"), format!("{raw}: URLs are not playable; skipped"));
            return None;
        }
        let inside =
            crate::pack::resolve_in_pack(self.base.strip_prefix(&self.pack_root).unwrap_or(Path::new("")), raw);
        let Some(inside) = inside else {
            self.warn_once(format!("escape:{raw}"), format!("{raw}: outside the pack; refused"));
            return None;
        };
        let full = self.pack_root.join(inside);
        if let (Ok(c), Ok(r)) = (full.canonicalize(), self.pack_root.canonicalize()) {
            if !c.starts_with(&r) {
                self.warn_once(format!("escape:{raw}"), format!("{raw}: leaves the pack through a link; refused"));
                return None;
            }
        }
        Some(full)
    }

    /// Decoded samples of a file, cached; a bad file is reported once.
    pub(crate) fn load(&mut self, path: &Path) -> Option<Samples> {
        if let Some(s) = self.cache.get(path) {
            return Some(s.clone());
        }
        if self.bad.contains_key(path) {
            return None;
        }
        match decode(path) {
            Ok(s) => {
                self.cache.insert(path.to_path_buf(), s.clone());
                Some(s)
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), "{e}; skipped");
                self.bad.insert(path.to_path_buf(), e.to_string());
                None
            }
        }
    }

    /// Candidates for a music cue of `mood` (§3): the theme variations of
    /// that mood, else the tracks of the resolved mood. Only files that
    /// exist and decode are kept.
    pub(crate) fn music_candidates(&mut self, mood: &str) -> (Vec<(Candidate, PathBuf)>, Option<String>) {
        let mut raw: Vec<Candidate> = self
            .config
            .themes
            .iter()
            .filter(|t| t.mood == mood)
            .flat_map(|t| {
                t.variations.iter().map(|v| Candidate { path: v.path.clone(), variation_type: Some(v.kind.clone()) })
            })
            .collect();
        let mut resolved = Some(mood.to_owned());
        if raw.is_empty() {
            resolved = self.resolve_mood(mood);
            if let Some(m) = &resolved {
                raw = self.config.mood_tracks[m]
                    .iter()
                    .map(|t| Candidate { path: t.path.clone(), variation_type: None })
                    .collect();
            }
        }
        let mut ok = Vec::new();
        for c in raw {
            if let Some(p) = self.file(&c.path) {
                if self.load(&p).is_some() {
                    ok.push((c, p));
                }
            }
        }
        (ok, resolved)
    }

    /// Picks the music for `mood` with the rotator.
    pub fn pick_music(&mut self, mood: &str, intensity: f64) -> Option<Chosen> {
        let (cands, resolved) = self.music_candidates(mood);
        let plain: Vec<Candidate> = cands.iter().map(|(c, _)| c.clone()).collect();
        let pick = self.rotator.pick(&plain, intensity, Some(mood))?;
        let path = cands.iter().find(|(c, _)| c.path == pick.path).map(|(_, p)| p.clone())?;
        let samples = self.load(&path)?;
        Some(Chosen { path, raw: pick.path.clone(), samples, pick: Some(pick), resolved_mood: resolved })
    }

    /// A uniform choice among the variants of `sfx_id` that decode.
    pub fn pick_sfx(&mut self, sfx_id: &str) -> Option<Chosen> {
        let Some(list) = self.config.sfx_library.get(sfx_id).cloned() else {
            tracing::info!(sfx = sfx_id, "no such sfx in the library; cue dropped");
            return None;
        };
        let mut ok = Vec::new();
        for raw in list {
            if let Some(p) = self.file(&raw) {
                if let Some(s) = self.load(&p) {
                    ok.push((raw, p, s));
                }
            }
        }
        if ok.is_empty() {
            return None;
        }
        let i = self.rotator.rng().below(ok.len());
        let (raw, path, samples) = ok.swap_remove(i);
        Some(Chosen { path, raw, samples, pick: None, resolved_mood: None })
    }

    /// A file named directly (ambience `metadata.path`).
    pub(crate) fn by_path(&mut self, raw: &str) -> Option<Chosen> {
        let path = self.file(raw)?;
        let samples = self.load(&path)?;
        Some(Chosen { path, raw: raw.to_owned(), samples, pick: None, resolved_mood: None })
    }
}
