//! The audio cue interpreter: one music mood with an intensity, and sound
//! effects, constrained by what the pack can play (interpret.md §6).

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::pack::AudioConfig;

/// The three mixer buses. The interpreter never emits `ambience`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioLane {
    Music,
    Sfx,
    Ambience,
}

/// An audio cue (audio.md §2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AudioCue {
    pub lane: AudioLane,
    #[serde(default)]
    pub mood: Option<String>,
    #[serde(default = "default_intensity")]
    pub intensity: f64,
    #[serde(default)]
    pub sfx_id: Option<String>,
    #[serde(default)]
    pub subject: String,
    #[serde(default = "default_crossfade")]
    pub crossfade_ms: u64,
    #[serde(default)]
    pub fade_in_ms: u64,
    #[serde(default)]
    pub fade_out_ms: u64,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

fn default_intensity() -> f64 {
    0.5
}

fn default_crossfade() -> u64 {
    3000
}

impl AudioCue {
    /// A cue with the AudioCue defaults.
    pub fn new(lane: AudioLane) -> Self {
        AudioCue {
            lane,
            mood: None,
            intensity: default_intensity(),
            sfx_id: None,
            subject: String::new(),
            crossfade_ms: default_crossfade(),
            fade_in_ms: 0,
            fade_out_ms: 0,
            priority: 0,
            metadata: Default::default(),
        }
    }
}

/// Built-in moods: (mood, base intensity, keywords), in table order.
pub(crate) const MOOD_TABLE: &[(&str, f64, &[&str])] = &[
    (
        "combat",
        0.8,
        &[
            "battle",
            "fight",
            "attack",
            "sword",
            "axe",
            "charge",
            "slash",
            "strike",
            "combat",
            "war",
            "clash",
            "swords",
            "fray",
            "swarm",
            "dragon",
            "flame",
            "roar",
            "explosion",
            "blast",
            "punch",
        ],
    ),
    (
        "tavern",
        0.4,
        &[
            "tavern",
            "inn",
            "bar",
            "ale",
            "drink",
            "hearth",
            "laughter",
            "roasting",
            "mead",
            "jazz",
            "piano",
            "smoke",
            "whiskey",
            "cabaret",
            "speakeasy",
            "cocktail",
            "glass",
            "barman",
            "bartender",
            "trumpet",
            "saxophone",
            "singer",
            "band",
            "trio",
            "music",
        ],
    ),
    (
        "exploration",
        0.3,
        &[
            "trail",
            "wander",
            "journey",
            "forest",
            "path",
            "explore",
            "travel",
            "oaks",
            "birdsong",
            "stream",
            "mossy",
            "wasteland",
            "dust",
            "horizon",
        ],
    ),
    (
        "tension",
        0.6,
        &[
            "shadow",
            "shadows",
            "dark",
            "darkness",
            "growl",
            "flicker",
            "creep",
            "danger",
            "ominous",
            "dread",
            "lurk",
            "radiation",
            "mutant",
            "contaminated",
        ],
    ),
    ("mystery", 0.4, &["mysterious", "mystery", "strange", "whisper", "enigma", "riddle"]),
    ("sorrow", 0.4, &["sorrow", "grief", "mourn", "weep", "loss", "lament", "tears"]),
    ("triumph", 0.7, &["victory", "triumph", "glory", "conquer", "celebrate", "won"]),
    ("ritual", 0.5, &["ritual", "chant", "ceremony", "altar", "invoke", "summon"]),
    (
        "settlement",
        0.4,
        &[
            "settlement",
            "camp",
            "village",
            "market",
            "trade",
            "barter",
            "shelter",
            "outpost",
            "home",
            "gather",
            "community",
        ],
    ),
    (
        "ruins",
        0.5,
        &["ruins", "rubble", "collapsed", "crumbling", "desolate", "wreckage", "abandoned", "decay", "overgrown"],
    ),
    ("rest", 0.3, &["rest", "sleep", "campfire", "calm", "quiet", "peaceful", "dawn", "stars", "blanket", "dream"]),
];

pub(crate) const BOOSTERS: &[&str] =
    &["dragon", "flame", "roar", "unleash", "torrent", "sear", "crumble", "explode", "fury", "rage", "devastat"];

/// SFX ids and their substring keywords, in emission order.
pub(crate) const SFX_TABLE: &[(&str, &[&str])] = &[
    ("sword_clash", &["sword", "swords", "clash", "blade"]),
    ("door_creak", &["door creak", "door open", "creaks open"]),
    ("thunder", &["thunder"]),
    ("footsteps", &["footstep", "footsteps"]),
    ("fire_crackle", &["fire crackle", "fire crack", "crackle"]),
    ("arrow_loose", &["arrow", "bow"]),
    ("coin_drop", &["coin", "coins"]),
    ("explosion", &["explosion", "explode", "detonation", "blast"]),
    ("explosion_heavy", &["massive explosion", "erupts", "devastat"]),
    ("metal_impact", &["metal", "clang", "impact", "smash"]),
    ("metal_clang", &["clang", "metal ring"]),
    ("energy_weapon", &["energy beam", "laser", "plasma", "energy weapon"]),
    ("energy_pistol", &["pistol", "sidearm", "energy shot"]),
    ("zap", &["zap", "electric", "shock", "spark"]),
    ("energy_field", &["energy field", "force field", "radiation", "pulse"]),
    ("mutant_ooze", &["ooze", "slime", "mutant", "goo"]),
    ("computer_noise", &["computer", "terminal", "console", "beep", "hack"]),
    ("scavenge", &["scavenge", "scrap", "loot", "salvage", "rummage"]),
    ("tin_rattle", &["tin", "rattle", "cans", "junk"]),
    ("door_open", &["door open", "hatch", "airlock"]),
    ("door_close", &["door close", "door shut", "slam shut"]),
    ("blade_slash", &["slash", "cut", "slice", "machete"]),
    ("punch", &["punch", "fist", "pummel", "brawl"]),
    ("thruster", &["thruster", "engine", "rocket", "vehicle"]),
    ("machinery_hum", &["machinery", "generator", "hum", "turbine"]),
];

/// One regex per built-in keyword list. Each keyword is a capture-free
/// alternative; counting distinct keywords present is done by checking
/// which alternatives occur (see [`count_keywords`]).
struct KeywordSet {
    words: Vec<String>,
    any: Regex,
}

impl KeywordSet {
    fn new<S: AsRef<str>>(words: &[S]) -> Self {
        let words: Vec<String> = words.iter().map(|w| w.as_ref().to_lowercase()).collect();
        let body = words.iter().map(|w| regex::escape(w)).collect::<Vec<_>>().join("|");
        KeywordSet { any: Regex::new(&format!(r"\b(?:{body})\b")).expect("keywords compile"), words }
    }

    /// The number of distinct keywords present as whole words in `lower`.
    fn count(&self, lower: &str) -> usize {
        if self.words.is_empty() {
            return 0;
        }
        let mut seen = vec![false; self.words.len()];
        // Overlapping keywords (e.g. "shadow"/"shadows") are whole words,
        // so at any position at most one can match; scan each start.
        let mut start = 0;
        while let Some(m) = self.any.find_at(lower, start) {
            if let Some(i) = self.words.iter().position(|w| w == m.as_str()) {
                seen[i] = true;
            }
            start = m.end().max(m.start() + 1);
            while start < lower.len() && !lower.is_char_boundary(start) {
                start += 1;
            }
            if start >= lower.len() {
                break;
            }
        }
        seen.iter().filter(|s| **s).count()
    }
}

/// Every built-in keyword and booster in one whole-word alternation, so the
/// text is scanned once; each hit maps back to the moods (and booster
/// flag) that list it.
struct BuiltinIndex {
    any: super::patterns::Pattern,
    /// word → (mood indexes, is booster)
    words: std::collections::HashMap<&'static str, (Vec<usize>, bool)>,
}

static BUILTIN: LazyLock<BuiltinIndex> = LazyLock::new(|| {
    let mut words: std::collections::HashMap<&'static str, (Vec<usize>, bool)> = Default::default();
    for (i, (_, _, kws)) in MOOD_TABLE.iter().enumerate() {
        for kw in *kws {
            words.entry(kw).or_default().0.push(i);
        }
    }
    for b in BOOSTERS {
        words.entry(b).or_default().1 = true;
    }
    let mut all: Vec<&str> = words.keys().copied().collect();
    // Longest first, so that at one position the longest keyword is tried
    // first (whole-word boundaries make at most one fit anyway).
    all.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    let body = all.iter().map(|w| regex::escape(w)).collect::<Vec<_>>().join("|");
    BuiltinIndex { any: super::patterns::Pattern::new(&format!(r"\b(?:{body})\b")), words }
});

/// Scores of the built-in moods (distinct keywords present) and the number
/// of distinct boosters present, from one scan of `lower`.
fn builtin_scores(lower: &str) -> ([usize; MOOD_TABLE.len()], usize) {
    let mut seen: std::collections::HashSet<&str> = Default::default();
    let mut scores = [0usize; MOOD_TABLE.len()];
    let mut boosters = 0;
    for m in BUILTIN.any.find_iter(lower) {
        let word = &lower[m];
        if let Some((key, (moods, booster))) = BUILTIN.words.get_key_value(word) {
            if seen.insert(key) {
                for &i in moods {
                    scores[i] += 1;
                }
                boosters += usize::from(*booster);
            }
        }
    }
    (scores, boosters)
}

/// Counts whole-word keyword hits (exposed for tests and tools).
pub fn count_keywords(text: &str, words: &[&str]) -> usize {
    KeywordSet::new(words).count(&text.to_lowercase())
}

/// The audio interpreter for one pack: its audio config plus its
/// `mood_keywords`, compiled once.
pub struct AudioRules {
    config: AudioConfig,
    pack_sets: Vec<KeywordSet>,
}

impl AudioRules {
    pub fn new(config: AudioConfig) -> Self {
        let pack_sets = config.mood_keywords.values().map(|words| KeywordSet::new(words)).collect();
        AudioRules { config, pack_sets }
    }

    pub fn config(&self) -> &AudioConfig {
        &self.config
    }

    /// At most one music cue, then sfx cues.
    pub fn cues(&self, text: &str) -> Vec<AudioCue> {
        cues(text, &self.config, &self.pack_sets)
    }
}

impl Clone for AudioRules {
    fn clone(&self) -> Self {
        AudioRules::new(self.config.clone())
    }
}

impl std::fmt::Debug for AudioRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioRules").field("config", &self.config).finish_non_exhaustive()
    }
}

/// `interpret_audio(text)` for a one-off call (compiles the pack's keyword
/// sets; keep an [`AudioRules`] for repeated use).
pub fn interpret_audio(text: &str, audio: &AudioConfig) -> Vec<AudioCue> {
    AudioRules::new(audio.clone()).cues(text)
}

fn cues(text: &str, audio: &AudioConfig, pack_sets: &[KeywordSet]) -> Vec<AudioCue> {
    let lower = text.to_lowercase();
    if lower.is_empty() {
        return Vec::new();
    }
    let crossfade = audio.mixer.crossfade_default_ms;
    let mut cues = Vec::new();

    // Music.
    let mut best: Option<(&str, f64)> = None;
    let mut best_score = 0usize;
    let (scores, boosters) = builtin_scores(&lower);
    for ((mood, base, _), &score) in MOOD_TABLE.iter().zip(scores.iter()) {
        if !audio.has_mood(mood) {
            continue;
        }
        if score > best_score {
            best_score = score;
            best = Some((mood, *base));
        }
    }
    for (mood, set) in audio.mood_keywords.keys().zip(pack_sets.iter()) {
        if !audio.has_mood(mood) {
            continue;
        }
        let score = set.count(&lower);
        if score > best_score {
            best_score = score;
            best = Some((mood.as_str(), 0.5));
        }
    }
    let music = match best {
        Some((mood, base)) if best_score >= 1 => Some((mood.to_owned(), (base + 0.1 * boosters as f64).min(1.0))),
        _ if audio.has_mood("exploration") => Some(("exploration".to_owned(), 0.3)),
        _ => None,
    };
    if let Some((mood, intensity)) = music {
        let mut cue = AudioCue::new(AudioLane::Music);
        cue.mood = Some(mood);
        cue.intensity = round_intensity(intensity);
        cue.crossfade_ms = crossfade;
        cues.push(cue);
    }

    // SFX: plain substring tests.
    for (id, needles) in SFX_TABLE {
        if audio.sfx_library.contains_key(*id) && needles.iter().any(|n| lower.contains(n)) {
            let mut cue = AudioCue::new(AudioLane::Sfx);
            cue.sfx_id = Some((*id).to_owned());
            cue.intensity = 0.7;
            cue.crossfade_ms = crossfade;
            cues.push(cue);
        }
    }
    cues
}

/// 0.8 + 0.1 + 0.1 is 0.9999999999999999 in binary; report 1.0 as a person
/// would read the table.
fn round_intensity(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::model::MoodTrack;

    fn config(moods: &[&str], sfx: &[&str]) -> AudioConfig {
        let mut a = AudioConfig::default();
        for m in moods {
            a.mood_tracks.insert(
                (*m).into(),
                vec![MoodTrack { path: format!("{m}.ogg"), title: String::new(), bpm: 0, energy: 0.5 }],
            );
        }
        for s in sfx {
            a.sfx_library.insert((*s).into(), vec![format!("{s}.ogg")]);
        }
        a
    }

    fn music(cues: &[AudioCue]) -> Option<(String, f64)> {
        cues.iter().find(|c| c.lane == AudioLane::Music).map(|c| (c.mood.clone().unwrap(), c.intensity))
    }

    fn sfx(cues: &[AudioCue]) -> Vec<String> {
        cues.iter().filter_map(|c| c.sfx_id.clone()).collect()
    }

    #[test]
    fn acceptance_10() {
        let a = config(
            &["exploration", "combat", "tension", "settlement", "mystery", "ruins", "rest"],
            &["explosion_heavy", "computer_noise", "mutant_ooze"],
        );
        let c = interpret_audio("The dragon's flame erupts as swords clash in the battle.", &a);
        assert_eq!(music(&c), Some(("combat".into(), 1.0)));
        assert_eq!(sfx(&c), ["explosion_heavy"]);
        assert_eq!(music(&interpret_audio("Nothing of note.", &a)), Some(("exploration".into(), 0.3)));
        let c = interpret_audio("Shadows creep along the dark corridor; a computer terminal beeps.", &a);
        assert_eq!(music(&c), Some(("tension".into(), 0.6)));
        assert_eq!(sfx(&c), ["computer_noise"]);
        assert_eq!(
            music(&interpret_audio("The tavern is full of laughter and ale.", &a)),
            Some(("exploration".into(), 0.3))
        );
        let c = interpret_audio("In a fury of rage the mutant swarm attacks the camp.", &a);
        assert_eq!(music(&c), Some(("combat".into(), 1.0)));
        assert_eq!(sfx(&c), ["mutant_ooze"]);
    }

    #[test]
    fn acceptance_11_pack_keywords() {
        let mut a = config(&["exploration", "tension", "heist"], &[]);
        a.mood_keywords.insert("heist".into(), vec!["vault".into(), "safe".into(), "alarm".into()]);
        assert_eq!(
            music(&interpret_audio("The alarm wails as the vault door swings open in the dark.", &a)),
            Some(("heist".into(), 0.5))
        );
        assert_eq!(
            music(&interpret_audio("Shadows lurk in the dark; the alarm is silent.", &a)),
            Some(("tension".into(), 0.6))
        );
    }

    #[test]
    fn aliases_make_moods_available_and_defaults_apply() {
        let mut a = config(&["combat"], &["sword_clash"]);
        a.mixer.crossfade_default_ms = 1500;
        // No exploration: no music when nothing scores.
        assert!(interpret_audio("Nothing of note.", &a).is_empty());
        a.mood_aliases.insert("rest".into(), "combat".into());
        let c = interpret_audio("You sleep by the campfire; a sword glints.", &a);
        assert_eq!(music(&c), Some(("rest".into(), 0.3)));
        assert_eq!(c[0].crossfade_ms, 1500);
        assert_eq!(c[1].sfx_id.as_deref(), Some("sword_clash"));
        assert_eq!(c[1].intensity, 0.7);
        assert!(interpret_audio("", &a).is_empty());
    }

    #[test]
    fn keyword_counting_is_whole_word_and_distinct() {
        assert_eq!(count_keywords("shadows and a shadow, shadows again", &["shadow", "shadows"]), 2);
        assert_eq!(count_keywords("attacks", &["attack"]), 0);
        assert_eq!(count_keywords("The Dragon's roar", &["dragon", "roar"]), 2);
        assert_eq!(count_keywords("café café", &["café"]), 1);
    }

    #[test]
    fn one_scan_scores_match_per_mood_counting() {
        let text = "the dragon's flame erupts as swords clash in the battle; shadows creep in the dark, dawn calm";
        let (scores, boosters) = builtin_scores(text);
        for (i, (_, _, kws)) in MOOD_TABLE.iter().enumerate() {
            assert_eq!(scores[i], count_keywords(text, kws), "{}", MOOD_TABLE[i].0);
        }
        assert_eq!(boosters, count_keywords(text, BOOSTERS));
    }

    #[test]
    fn cue_serialises_with_defaults() {
        let cue = AudioCue::new(AudioLane::Music);
        assert_eq!(
            serde_json::to_value(&cue).unwrap(),
            serde_json::json!({"lane":"music","mood":null,"intensity":0.5,"sfx_id":null,"subject":"","crossfade_ms":3000,
                "fade_in_ms":0,"fade_out_ms":0,"priority":0,"metadata":{}})
        );
    }
}
