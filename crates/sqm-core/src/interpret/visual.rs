//! The scene interpreter: rules R0–R5, the fallback, and the landscape
//! cooldown (interpret.md §3–§4).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::patterns::*;
use super::text::{clean, distill, len, portrait_matches, py_strip, sentences, similarity, truncate};
use super::GameState;

/// The routable image tiers (tiers-and-prompts.md §1). The interpreter
/// emits four of them; `portrait_square` and `cartography` come from the
/// game server's explicit requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Cartography,
    Landscape,
    Portrait,
    PortraitSquare,
    SceneIllustration,
    TextOverlay,
}

impl Tier {
    /// Every routable tier, sorted by name.
    pub const ALL: [Tier; 6] = [
        Tier::Cartography,
        Tier::Landscape,
        Tier::Portrait,
        Tier::PortraitSquare,
        Tier::SceneIllustration,
        Tier::TextOverlay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tier::Cartography => "cartography",
            Tier::Landscape => "landscape",
            Tier::Portrait => "portrait",
            Tier::PortraitSquare => "portrait_square",
            Tier::SceneIllustration => "scene_illustration",
            Tier::TextOverlay => "text_overlay",
        }
    }

    pub fn parse(name: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.name() == name)
    }

    pub(crate) fn is_portrait(self) -> bool {
        matches!(self, Tier::Portrait | Tier::PortraitSquare)
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A visual cue: what to draw for this turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageCue {
    pub tier: Tier,
    pub subject: String,
    pub mood: String,
    pub location: String,
    pub characters: Vec<String>,
    pub tags: Vec<String>,
    pub camera: Option<String>,
}

impl StageCue {
    fn new(tier: Tier, subject: String, location: &str) -> Self {
        StageCue {
            tier,
            subject,
            mood: String::new(),
            location: location.to_owned(),
            characters: Vec::new(),
            tags: Vec::new(),
            camera: None,
        }
    }
}

/// Per-session state: the last rendered landscape location and its
/// cooldown, counted in turns.
#[derive(Clone, Debug)]
pub struct Session {
    last: Option<String>,
    cooldown: u32,
    turns: u32,
}

impl Default for Session {
    fn default() -> Self {
        Session { last: None, cooldown: 0, turns: 2 }
    }
}

impl Session {
    pub fn new() -> Self {
        Self::default()
    }

    /// Turns left before a landscape of the same place may render again.
    pub fn cooldown(&self) -> u32 {
        self.cooldown
    }

    /// `interpret(x, state)`: at most two cues, first-rule first.
    pub fn interpret(&mut self, raw: &str, state: &GameState) -> Vec<StageCue> {
        // 1. Empty text.
        if py_strip(raw).is_empty() {
            return Vec::new();
        }
        // 2. Placeholders.
        let names = state.names();
        let player = names.first().map(String::as_str).unwrap_or("Adventurer");
        let x = raw
            .replace("{player_name}", player)
            .replace("{location}", &state.location)
            .replace("{time_of_day}", &state.time_of_day);
        // 3. Dialogue-only turns leave the cooldown untouched.
        if is_dialogue_only(&x) {
            return Vec::new();
        }
        // 4–5. Cooldown.
        self.cooldown = self.cooldown.saturating_sub(1);
        let cur = state.location.as_str();
        if let Some(last) = &self.last {
            if !cur.is_empty() && cur != last && similarity(cur, last) < 0.4 {
                self.cooldown = 0;
            }
        }

        // 6. Rules. The cleaned and distilled text and the mood are shared
        // by several rules; compute them once.
        let prep = Prepared::new(&x);
        let loc = state.location.as_str();
        let mut cues: Vec<StageCue> = Vec::new();
        let location_match = LOCATION.is_match(&x);
        let combat_match = COMBAT.is_match(&x);
        if DOCUMENT.is_match(&x) {
            let mut c = StageCue::new(Tier::TextOverlay, prep.scene(&DOCUMENT), loc);
            c.tags = vec!["document".into()];
            cues.push(c);
        }
        if location_match {
            let mut c = StageCue::new(Tier::Landscape, location_subject(&x), loc);
            c.mood = format!("{}, {}", state.time_of_day, prep.mood);
            c.characters = names.clone();
            cues.push(c);
        }
        if combat_match {
            let mut c = StageCue::new(Tier::SceneIllustration, combat_subject(&x, &names), loc);
            c.camera = Some("topdown_90".into());
            c.tags = vec!["combat".into()];
            c.characters = names.clone();
            cues.push(c);
        }
        if !combat_match && len(&x) > 60 && portrait_matches(&x) {
            let mut c = StageCue::new(Tier::Portrait, portrait_subject(&x), loc);
            c.characters = names.clone();
            cues.push(c);
        }
        if MAGIC.is_match(&x) {
            let mut c = StageCue::new(Tier::SceneIllustration, prep.scene(&MAGIC), loc);
            let magic = MAGIC_TAG.is_match(&x);
            let effect = EFFECT_TAG.is_match(&x);
            if magic {
                c.tags.push("magic".into());
            }
            if effect || !magic {
                c.tags.push("special_effect".into());
            }
            c.mood = prep.mood.into();
            cues.push(c);
        }
        if ATMOSPHERE.is_match(&x) && !location_match && !cues.iter().any(|c| c.tier == Tier::SceneIllustration) {
            let mut c = StageCue::new(Tier::SceneIllustration, prep.scene(&ATMOSPHERE), loc);
            c.mood = prep.mood.into();
            c.characters = names.clone();
            cues.push(c);
        }
        if cues.is_empty() {
            let d = prep.distilled();
            if len(py_strip(d)) > 10 {
                let mut c = StageCue::new(Tier::SceneIllustration, truncate(d), loc);
                c.mood = prep.mood.into();
                c.characters = names.clone();
                cues.push(c);
            }
        }

        // 7. Landscape dedup.
        let mut kept = Vec::with_capacity(cues.len());
        for cue in cues {
            if cue.tier == Tier::Landscape {
                let same = self
                    .last
                    .as_deref()
                    .is_some_and(|last| !cur.is_empty() && (cur == last || similarity(cur, last) >= 0.4));
                if same && self.cooldown > 0 {
                    continue;
                }
                self.last = Some(if cur.is_empty() { cue.location.clone() } else { cur.to_owned() });
                self.cooldown = self.turns;
            }
            kept.push(cue);
        }
        // 8. At most two.
        kept.truncate(2);
        kept
    }
}

/// Every non-empty stripped line is quoted speech with an attribution.
pub(crate) fn is_dialogue_only(x: &str) -> bool {
    let mut any = false;
    for line in x.lines().map(py_strip).filter(|l| !l.is_empty()) {
        if !DIALOGUE_LINE.is_match(line) {
            return false;
        }
        any = true;
    }
    any
}

/// `mood(x)`: substring tests, first hit wins.
pub fn mood(x: &str) -> &'static str {
    let lower = x.to_lowercase();
    let table: [(&[&str], &str); 5] = [
        (&["fog", "mist", "shadow", "gloom", "dark"], "ominous"),
        (&["torch", "flicker", "dim", "candle"], "tense"),
        (&["radiance", "divine", "light", "shimmer", "arcane"], "mystical"),
        (&["explosion", "crack", "burst"], "dramatic"),
        (&["fade"], "melancholic"),
    ];
    for (needles, mood) in table {
        if needles.iter().any(|n| lower.contains(n)) {
            return mood;
        }
    }
    "atmospheric"
}

/// Per-turn derived text: `clean(x)`, `distill(clean(x))` (computed on
/// first use) and `mood(x)`.
struct Prepared {
    cleaned: String,
    distilled: std::cell::OnceCell<String>,
    mood: &'static str,
}

impl Prepared {
    fn new(x: &str) -> Self {
        Prepared { cleaned: clean(x), distilled: Default::default(), mood: mood(x) }
    }

    fn distilled(&self) -> &str {
        self.distilled.get_or_init(|| distill(&self.cleaned))
    }

    /// `scene(x, family)`.
    fn scene(&self, family: &Pattern) -> String {
        let d = self.distilled();
        if !d.is_empty() {
            return truncate(d);
        }
        if let Some(s) = sentences(&self.cleaned).into_iter().find(|s| family.is_match(s)) {
            return truncate(s);
        }
        truncate(&self.cleaned)
    }
}

/// `scene(x, family)`.
pub fn scene_subject(x: &str, family: &Pattern) -> String {
    Prepared::new(x).scene(family)
}

/// `portrait(x)`.
pub(crate) fn portrait_subject(x: &str) -> String {
    let cleaned = clean(x);
    if let Some(s) = sentences(&cleaned).into_iter().find(|s| portrait_matches(s)) {
        let d = distill(s);
        return truncate(if d.is_empty() { s } else { &d });
    }
    let d = distill(&cleaned);
    truncate(if d.is_empty() { &cleaned } else { &d })
}

/// `location(x)`: the phrase after a location verb, else the first 80
/// characters.
pub(crate) fn location_subject(x: &str) -> String {
    if let Some(c) = LOCATION_PHRASE.captures(x) {
        return truncate(py_strip(&c[1]));
    }
    let end = x.char_indices().nth(80).map_or(x.len(), |(i, _)| i);
    truncate(&x[..end])
}

/// Compiled `\b<name>\b` patterns, one per character name, kept across
/// calls (names change rarely; the cache is bounded).
static NAME_PATTERNS: LazyLock<Mutex<HashMap<String, Regex>>> = LazyLock::new(Default::default);

fn name_pattern(name: &str) -> Regex {
    let mut cache = NAME_PATTERNS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = cache.get(name) {
        return r.clone();
    }
    if cache.len() >= 512 {
        cache.clear();
    }
    let r = Regex::new(&format!(r"(?i)\b{}\b", regex::escape(name))).expect("escaped name compiles");
    cache.insert(name.to_owned(), r.clone());
    r
}

/// `combat(x, names)`.
pub(crate) fn combat_subject(x: &str, names: &[String]) -> String {
    let cleaned = clean(x);
    let mut pairs = Vec::new();
    for name in names {
        // The first occurrence of the name that is followed by a combat verb.
        let found = name_pattern(name).find_iter(&cleaned).find_map(|m| {
            COMBAT_VERB_TAIL.captures(&cleaned[m.end()..]).map(|c| {
                let raw = format!("{} {}", &c[1], &c[2]);
                let d = distill(&raw);
                format!("{name} {}", if d.is_empty() { raw } else { d })
            })
        });
        pairs.extend(found);
    }
    if !pairs.is_empty() {
        return truncate(&format!("positions: {}", pairs.join(", ")));
    }
    if let Some(s) = sentences(&cleaned).into_iter().find(|s| COMBAT.is_match(s)) {
        let d = distill(s);
        return truncate(if d.is_empty() { s } else { &d });
    }
    if !names.is_empty() {
        return format!("{} in combat", names.join(", "));
    }
    let d = distill(&cleaned);
    truncate(if d.is_empty() { &cleaned } else { &d })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn junction() -> GameState {
        GameState {
            location: "The Rusted Junction".into(),
            time_of_day: "dusk".into(),
            characters: vec![
                super::super::CharacterRef { name: "Rux".into() },
                super::super::CharacterRef { name: "Mira".into() },
            ],
            ..Default::default()
        }
    }

    fn one_turn(text: &str) -> Vec<StageCue> {
        Session::new().interpret(text, &junction())
    }

    fn summary(c: &StageCue) -> (Tier, &str, &str, Vec<&str>, Option<&str>) {
        (c.tier, c.subject.as_str(), c.mood.as_str(), c.tags.iter().map(String::as_str).collect(), c.camera.as_deref())
    }

    #[test]
    fn acceptance_1_combat_positions() {
        let cues =
            one_turn("Rux attacks the raider with a rusted blade. Mira lunges at the scavenger, her knife flashing.");
        assert_eq!(cues.len(), 1);
        assert_eq!(
            summary(&cues[0]),
            (
                Tier::SceneIllustration,
                "positions: Rux attacks the raider with a rusted blade, Mira lunges at the scavenger",
                "",
                vec!["combat"],
                Some("topdown_90")
            )
        );
        assert_eq!(cues[0].characters, ["Rux", "Mira"]);
        assert_eq!(cues[0].location, "The Rusted Junction");
    }

    #[test]
    fn acceptance_2_landscape() {
        let cues = one_turn("You enter the ruined chapel. Fog rolls in through the broken windows.");
        assert_eq!(cues.len(), 1);
        assert_eq!(summary(&cues[0]), (Tier::Landscape, "ruined chapel", "dusk, ominous", vec![], None));
    }

    #[test]
    fn acceptance_3_portrait() {
        let text =
            "A tall stranger in a hooded cloak watches you from the corner, a scar running down his weathered face.";
        let cues = one_turn(text);
        assert_eq!(cues.len(), 1);
        assert_eq!(cues[0].tier, Tier::Portrait);
        assert_eq!(cues[0].subject, text.trim_end_matches('.'));
    }

    #[test]
    fn acceptance_4_magic() {
        let text = "The arcane glyphs shimmer and a portal tears open above the altar.";
        let cues = one_turn(text);
        assert_eq!(cues.len(), 1);
        assert_eq!(
            summary(&cues[0]),
            (Tier::SceneIllustration, text.trim_end_matches('.'), "mystical", vec!["magic", "special_effect"], None)
        );
        assert!(cues[0].characters.is_empty());
    }

    #[test]
    fn acceptance_5_document() {
        let cues = one_turn("A notice is nailed to the door: WANTED, dead or alive.");
        assert_eq!(cues.len(), 1);
        assert_eq!(
            summary(&cues[0]),
            (Tier::TextOverlay, "A notice is nailed to the door: WANTED, dead or alive", "", vec!["document"], None)
        );
    }

    #[test]
    fn acceptance_6_fallback() {
        let cues = one_turn("Nothing happens.");
        assert_eq!(summary(&cues[0]), (Tier::SceneIllustration, "Nothing happens", "atmospheric", vec![], None));
        // Too short to draw.
        assert!(one_turn("He nods.").is_empty());
    }

    #[test]
    fn acceptance_7_abstractions() {
        let cues = one_turn(
            "He said nothing. She felt a sense of dread as if the walls were closing in, and the candle sputtered.",
        );
        assert_eq!(cues.len(), 1);
        assert_eq!(
            summary(&cues[0]),
            (Tier::SceneIllustration, "He She , and the candle sputtered", "tense", vec![], None)
        );
    }

    #[test]
    fn acceptance_8_cooldown() {
        let mut s = Session::new();
        let at = |loc: &str| GameState { location: loc.into(), time_of_day: "night".into(), ..Default::default() };
        let c = s.interpret("You enter the ruined chapel.", &at("Old Chapel"));
        assert_eq!(summary(&c[0]), (Tier::Landscape, "ruined chapel", "night, atmospheric", vec![], None));
        assert_eq!(s.cooldown(), 2);
        assert!(s.interpret("You walk into the nave.", &at("Old Chapel")).is_empty());
        assert_eq!(s.cooldown(), 1);
        let c = s.interpret("You step into the crypt.", &at("Old Chapel"));
        assert_eq!(c[0].subject, "crypt");
        assert_eq!(s.cooldown(), 2);
        assert!(s.interpret("You walk into the bell tower.", &at("The Old Chapel")).is_empty());
        let c = s.interpret("You arrive at the river ford.", &at("River Ford"));
        assert_eq!(c[0].subject, "river ford");
    }

    #[test]
    fn acceptance_13_combat_and_magic() {
        let cues = one_turn("Rux attacks the orc. The arcane rune glows.");
        assert_eq!(cues.len(), 2);
        assert_eq!(
            summary(&cues[0]),
            (Tier::SceneIllustration, "positions: Rux attacks the orc", "", vec!["combat"], Some("topdown_90"))
        );
        assert_eq!(
            summary(&cues[1]),
            (Tier::SceneIllustration, "Rux attacks the orc. The arcane rune glows", "mystical", vec!["magic"], None)
        );
    }

    #[test]
    fn dialogue_only_leaves_cooldown_untouched() {
        let mut s = Session::new();
        let st = GameState { location: "Gate".into(), ..Default::default() };
        s.interpret("You enter the gatehouse.", &st);
        assert_eq!(s.cooldown(), 2);
        assert!(s.interpret("\"Get out,\" she says.", &st).is_empty());
        assert!(s.interpret("\"Who goes there?\" the guard asks.\n\"A friend,\" you say.", &st).is_empty());
        assert_eq!(s.cooldown(), 2);
        // Empty turns do not count either.
        assert!(s.interpret("   ", &st).is_empty());
        assert_eq!(s.cooldown(), 2);
    }

    #[test]
    fn edge_cases_from_the_spec() {
        // The location phrase fails at the apostrophe.
        let text = "You enter the smith's forge.";
        let cues = Session::new().interpret(text, &GameState::default());
        assert_eq!(cues[0].tier, Tier::Landscape);
        assert_eq!(cues[0].subject, text);
        assert_eq!(cues[0].mood, ", atmospheric");
        // `crumbling` matches nothing; `ruins` matches A.
        let cues = Session::new().interpret("The ruins are crumbling.", &GameState::default());
        assert_eq!(
            summary(&cues[0]),
            (Tier::SceneIllustration, "The ruins are crumbling", "atmospheric", vec![], None)
        );
        // Mechanics: C matches the bracketed Attack in the raw text.
        let cues = Session::new().interpret(
            "Rux's HP: 12 → 7 HP [Attack d20: 15 vs AC 12 HIT]. The wind howls through the ruins.",
            &GameState::default(),
        );
        assert_eq!(cues[0].subject, "Ruxs HP:");
        assert_eq!(cues[0].tags, ["combat"]);
        // A combat cue blocks R5 but not R4.
        let cues = Session::new()
            .interpret("He swings at the mage as the fog glows with arcane light.", &GameState::default());
        let tiers: Vec<_> = cues.iter().map(|c| c.tags.clone()).collect();
        assert_eq!(tiers, vec![vec!["combat".to_owned()], vec!["magic".to_owned()]]);
    }

    #[test]
    fn placeholders_are_filled() {
        let st = junction();
        let cues = Session::new().interpret("{player_name} walks into {location} at {time_of_day}.", &st);
        // The optional article is matched case-insensitively, as in the reference.
        assert_eq!(cues[0].subject, "Rusted Junction at dusk");
        let cues = Session::new().interpret("{player_name} walks into the vault.", &GameState::default());
        assert_eq!(cues[0].tier, Tier::Landscape);
    }

    #[test]
    fn combat_without_verbs_and_with_names_only() {
        let st = junction();
        // A C match without a name-verb pair: the first combat sentence.
        let cues = Session::new().interpret("Steel rings in the dark. Nobody moves.", &st);
        assert_eq!(cues[0].subject, "Steel rings in the dark");
        assert_eq!(combat_subject("Roll initiative", &[]), "Roll initiative");
        assert_eq!(combat_subject("zzz", &["Rux".into()]), "Rux in combat");
    }

    #[test]
    fn portrait_needs_more_than_sixty_chars() {
        assert!(one_turn("The guard has a scar.").iter().all(|c| c.tier != Tier::Portrait));
    }
}
