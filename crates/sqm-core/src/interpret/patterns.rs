//! Every pattern of the interpreter, compiled once.
//!
//! Keyword families are written as data (interpret.md §2) and compiled to
//! `(?i)\b(?:alt1|alt2|…)\b`; `~` in an alternative stands for `\s+`.
//! The Rust `regex` crate runs in linear time, so no input can make a
//! pattern backtrack catastrophically.

use std::sync::LazyLock;

use regex::Regex;

/// A case-insensitive pattern over ASCII keywords, run by the ASCII-only
/// engine, which stays in the fast DFA (with Unicode `\b` the regex crate
/// falls back to a much slower engine as soon as the text has a non-ASCII
/// byte).
///
/// Non-ASCII text is first mapped to a same-length ASCII *shadow*: each byte
/// of a non-ASCII character becomes `_` when the character is a Unicode word
/// character, `\v` when it is whitespace, and `#` otherwise. On the shadow,
/// ASCII `\b`, `\w`, `\s` and `.` classify every original character exactly
/// as Unicode mode does on the original, and every match starts and ends on
/// an ASCII character, so offsets are valid in the original text. (The one
/// difference: Unicode case folding also lets `k` match the Kelvin sign and
/// `s` the long s; the shadow does not.) The Unicode-mode regex is kept for
/// the equivalence tests.
pub struct Pattern {
    unicode: Regex,
    ascii: regex::bytes::Regex,
}

static UNICODE_WORD: LazyLock<Regex> = LazyLock::new(|| re(r"^\w$"));

/// The ASCII shadow of `hay` (borrowed when `hay` is ASCII already).
pub(crate) fn shadow(hay: &str) -> std::borrow::Cow<'_, [u8]> {
    if hay.is_ascii() {
        return std::borrow::Cow::Borrowed(hay.as_bytes());
    }
    let mut out = Vec::with_capacity(hay.len());
    let mut buf = [0u8; 4];
    for c in hay.chars() {
        if c.is_ascii() {
            out.push(c as u8);
            continue;
        }
        let fill = if c.is_whitespace() {
            0x0b
        } else if UNICODE_WORD.is_match(c.encode_utf8(&mut buf)) {
            b'_'
        } else {
            b'#'
        };
        out.extend(std::iter::repeat_n(fill, c.len_utf8()));
    }
    std::borrow::Cow::Owned(out)
}

impl Pattern {
    /// `pattern` must be ASCII and is matched case-insensitively.
    pub fn new(pattern: &str) -> Self {
        let unicode = regex::RegexBuilder::new(pattern).case_insensitive(true).build().expect("pattern compiles");
        let ascii = regex::bytes::RegexBuilder::new(pattern)
            .case_insensitive(true)
            .unicode(false)
            .build()
            .expect("ASCII pattern compiles");
        Pattern { unicode, ascii }
    }

    pub(crate) fn is_match(&self, hay: &str) -> bool {
        self.ascii.is_match(&shadow(hay))
    }

    /// The first match starting at or after byte `start`, as a byte range.
    pub(crate) fn find_at(&self, hay: &str, start: usize) -> Option<std::ops::Range<usize>> {
        self.ascii.find_at(&shadow(hay), start).map(|m| m.range())
    }

    /// Every non-overlapping match, as byte ranges.
    pub(crate) fn find_iter(&self, hay: &str) -> impl Iterator<Item = std::ops::Range<usize>> {
        let text = shadow(hay).into_owned();
        let ranges: Vec<_> = self.ascii.find_iter(&text).map(|m| m.range()).collect();
        ranges.into_iter()
    }

    pub fn as_str(&self) -> &str {
        self.unicode.as_str()
    }
}

/// Compiles a whole-word, case-insensitive alternation.
pub fn words(alternatives: &[&str]) -> Pattern {
    let body = alternatives.iter().map(|a| a.replace('~', r"\s+")).collect::<Vec<_>>().join("|");
    Pattern::new(&format!(r"\b(?:{body})\b"))
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("pattern compiles")
}

pub(crate) const LOCATION_WORDS: &[&str] = &[
    r"enters?",
    r"arrives?~(?:at|in)",
    r"steps?~(?:into|through|inside)",
    r"emerges?~(?:into|from)",
    r"comes?~upon",
    r"reaches?~(?:the|a)",
    r"walks?~(?:into|through)",
    r"passes?~through",
    r"heads?~(?:to|toward|for)",
    r"cross(?:es)?~(?:into|through)",
    r"approaches?~(?:the|a)",
];

pub(crate) const COMBAT_WORDS: &[&str] = &[
    r"attacks?",
    r"lunges?",
    r"charges?",
    r"(?:draws?|unsheathe[sd]?|brandish(?:es)?)~(?:\w+\s+){0,2}(?:weapon|sword|dagger|blade|axe|steel|mace)",
    r"swings?",
    r"strikes?",
    r"slash(?:es)?",
    r"stabs?",
    r"parr(?:y|ies)",
    r"blocks?",
    r"challenges?~.+?~to~(?:a~)?(?:fight|duel|combat)",
    r"spell~crackles?",
    r"initiative",
    r"blade~flash(?:es)?",
    r"steel~(?:rings?|sings?|clash(?:es)?)",
];

pub(crate) const PORTRAIT_NOUNS: &[&str] = &[
    "woman",
    "man",
    "figure",
    "person",
    "stranger",
    "someone",
    "creature",
    "being",
    "elf",
    "dwarf",
    "orc",
    "goblin",
    "troll",
    "halfling",
    "gnome",
    "priest",
    "priestess",
    "sister",
    "brother",
    "elder",
    "knight",
    "guard",
    "merchant",
    "thief",
    "mage",
    "wizard",
    "witch",
    "nun",
    "monk",
    "soldier",
    "captain",
    "lord",
    "lady",
    "queen",
    "king",
    "prince",
    "princess",
    "child",
    "girl",
    "boy",
    "old~(?:man|woman)",
    "drifter",
    "operator",
    "pilot",
    "trader",
    "scavenger",
    "raider",
    "synth",
    "mutant",
    "android",
    "cyborg",
    "veteran",
    "survivor",
    "bartender",
    "innkeeper",
    "shopkeeper",
    "smith",
    "hunter",
    "healer",
    "she",
    "he",
];

pub(crate) const PORTRAIT_DESCS: &[&str] = &[
    "wear",
    "cloak",
    "armor",
    "armour",
    "scar",
    "eye",
    "face",
    "pendant",
    "tall",
    "short",
    "crouch",
    "kneel",
    "stand",
    "lean",
    "sit",
    "hood",
    "robe",
    "hair",
    "beard",
    "voice",
    "gaze",
    "stare",
    "look",
    "grin",
    "smile",
    "frown",
    "prosthetic",
    "implant",
    "mutation",
    "cybernetic",
    "augment",
    "arm",
    "limb",
    "hand",
    "finger",
    "skin",
    "jaw",
    "neck",
    "shoulder",
    "tattoo",
    "mark",
    "brand",
    "patch",
    "visor",
    "goggles",
    "helmet",
    "compact",
    "wiry",
    "hulk",
    "massive",
    "gaunt",
    "weathered",
    "grizzled",
    "calloused",
    "scarred",
    "muscular",
    "built",
    "watching",
    "coil",
];

pub(crate) const ATMOSPHERE_WORDS: &[&str] = &[
    "fog",
    "mist",
    "darkness",
    "shadow",
    "torchlight",
    "flicker",
    "gloom",
    "fades",
    "rolls?~in",
    "dusk",
    "dawn",
    "moonlight",
    "starlight",
    "candlelight",
    "silence",
    "wind",
    "rain",
    "storm",
    "thunder",
    "lightning",
    "cold",
    "chill",
    "warmth",
    "heat",
    "smoke",
    "ash",
    "dust",
    "ruins?",
    "crumbl",
    "decay",
    "overgrown",
    "abandoned",
    "pulse[sd]?",
    "glow(?:s|ed|ing)?",
    "shimmer",
    "dark(?:ened|ening)?",
    "eeri[ely]*",
    "haunted",
    "desolat",
    "bleak",
    "foreboding",
];

pub(crate) const MAGIC_WORDS: &[&str] = &[
    "arcane",
    "magic(?:al)?",
    "spell",
    "shimmer",
    "portal",
    "divine",
    "radiance",
    "glyph",
    "explosion",
    "enchant",
    "ward",
    "rune",
    "ritual",
    "summon",
    "conjur",
    "crystal",
    "amulet",
    "talisman",
    "curse",
    "hex",
    "bless",
    "sorcery",
    "incantation",
    "mystic",
    "occult",
    "ethereal",
    "standing~stone",
    "ley~line",
    "ancient~power",
];

pub(crate) const DOCUMENT_WORDS: &[&str] = &[
    "notice",
    "noticeboard",
    "poster",
    "letter",
    "scroll",
    "parchment",
    "tome",
    "book",
    "inscription",
    "sign",
    "placard",
    "decree",
    "proclamation",
    "wanted~poster",
    "map",
    "journal",
    "diary",
    "note",
    "message",
    "reads?~(?:the|a)",
    "written",
    "scrawled",
    "carved",
    "etched",
    "posted",
    "pinned",
    "nailed",
];

pub static LOCATION: LazyLock<Pattern> = LazyLock::new(|| words(LOCATION_WORDS));
pub(crate) static COMBAT: LazyLock<Pattern> = LazyLock::new(|| words(COMBAT_WORDS));
pub(crate) static PORTRAIT_NOUN: LazyLock<Pattern> = LazyLock::new(|| words(PORTRAIT_NOUNS));
pub(crate) static PORTRAIT_DESC: LazyLock<Pattern> = LazyLock::new(|| words(PORTRAIT_DESCS));
pub(crate) static ATMOSPHERE: LazyLock<Pattern> = LazyLock::new(|| words(ATMOSPHERE_WORDS));
pub(crate) static MAGIC: LazyLock<Pattern> = LazyLock::new(|| words(MAGIC_WORDS));
pub static DOCUMENT: LazyLock<Pattern> = LazyLock::new(|| words(DOCUMENT_WORDS));
/// Magic words that tag a cue `magic`.
pub(crate) static MAGIC_TAG: LazyLock<Pattern> =
    LazyLock::new(|| words(&["arcane", "magic", "spell", "shimmer", "divine", "radiance", "glyph", "enchant"]));
/// Magic words that tag a cue `special_effect`.
pub(crate) static EFFECT_TAG: LazyLock<Pattern> = LazyLock::new(|| words(&["explosion", "portal"]));

/// The location phrase after an L keyword (§3 location()).
pub(crate) static LOCATION_PHRASE: LazyLock<Regex> = LazyLock::new(|| {
    let body = LOCATION_WORDS.iter().map(|a| a.replace('~', r"\s+")).collect::<Vec<_>>().join("|");
    re(&format!(r"(?i)\b(?:{body})\b\s+(?:the\s+|a\s+|an\s+)?([\w\s]+?)(?:\.|,|!|\z)"))
});

/// A dialogue line: quoted speech plus an attribution verb.
pub(crate) static DIALOGUE_LINE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)^["“‘].*["”’][,.]?\s*(?:\w+\s+)*(?:says?|said|mutter|mutters|whisper|whispers|shout|shouts|ask|asks|replie[sd]?|grumble[sd]?|growl[sd]?|laugh[sed]*)\w*\.?$"#,
    )
});

/// Combat verbs after a character name (§3 combat()).
pub(crate) static COMBAT_VERB_TAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^\s+(attacks?|lunges?\s+at|charges?\s+at|swings?\s+at|strikes?|slashes?\s+at|stabs?\s+at|parr(?:y|ies)|blocks?|challenges?|hurls?|raises?|casts?)\s+(.+?)(?:\.|,|!|\z)",
    )
});

// Beat filter families: literal single spaces, whole words.
pub(crate) static BEAT_INTRO: LazyLock<Pattern> = LazyLock::new(|| {
    Pattern::new(
        r"\b(?:emerges?|appears?|introduces?|announces?|steps? (?:forward|out|into)|a (?:\w+ )?figure|stranger|cloaked|mysterious)\b",
    )
});
pub(crate) static BEAT_ACTION: LazyLock<Pattern> = LazyLock::new(|| {
    Pattern::new(
        r"\b(?:attacks?|strikes?|dodges?|blocks?|leaps?|charges?|explodes?|crashes?|collapses?|transforms?|erupts?|shatters?|draws? (?:a |the )?(?:sword|weapon|blade|bow|staff)|flames?|lightning|thunder|earthquake|tidal|runs?|flees?|chases?|pursues?|ambush)\b",
    )
});
pub(crate) static BEAT_SKIP: LazyLock<Pattern> = LazyLock::new(|| {
    Pattern::new(
        r"\b(?:inventory|add(?:ed|s)? .* to (?:your|the) inventory|picks? up|puts? (?:away|down)|stores?|equips?|orders? another|save point|current scene state|resume from|stopping point|your character|your stats|game saved|progress saved)\b",
    )
});
pub(crate) static STRAIGHT_QUOTED: LazyLock<Regex> = LazyLock::new(|| re(r#""[^"]*""#));

/// `[DOCUMENT:template:"Title"] body [/DOCUMENT]`
pub(crate) static DOCUMENT_BLOCK: LazyLock<Regex> =
    LazyLock::new(|| re(r#"(?s)\[DOCUMENT:(\w+):"([^"]+)"\]\s*(.*?)\s*\[/DOCUMENT\]"#));

// Visual distillation (§3).
pub(crate) static MECHANICS: LazyLock<[Regex; 5]> = LazyLock::new(|| {
    [
        re(r"(?im)\[[^\]]*(?:\d+\s*→\s*\d+|\d+\s*HP|d\d+:\s*\d+|vs\s+AC\s+\d+|HIT|MISS|Attack|Damage)[^\]]*\]"),
        re(r"(?im)\d+\s*→\s*\d+\s*HP"),
        re(r"(?im)d\d+:\s*\d+"),
        re(r"(?im)^[A-Z]+(?:'S)?\s+TURN\s*$"),
        re(r"(?im)^#+\s+"),
    ]
});
pub static SPACES_TABS: LazyLock<Regex> = LazyLock::new(|| re(r"[ \t]+"));
pub(crate) static DOUBLE_QUOTED: LazyLock<Regex> = LazyLock::new(|| re(r#"["“][^"”]*["”]"#));
pub(crate) static CURLY_SINGLE_QUOTED: LazyLock<Regex> = LazyLock::new(|| re(r"‘[^’]*’"));
pub(crate) static ATTRIBUTION: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i),?\s*\b(?:said|says|whispered?|whispers?|muttered?|mutters?|shouted?|shouts?|asked?|asks?|replied?|replies?|grumbled?|grumbles?|growled?|growls?|exclaimed?|exclaims?|warned?)\b,?(?:\s+\w+){0,4}\.?",
    )
});
pub(crate) static ABSTRACTIONS: LazyLock<Regex> = LazyLock::new(|| {
    let alts = [
        r"sense~of~(?:dread|foreboding|unease|wonder|loss|hope|doom)",
        r"(?:felt|feeling|feels)~(?:a|the|like|as)\b",
        r"seemed?~(?:to|alive|dead|wrong|right)\b",
        r"as~(?:if|though)~[^,.]{0,60}",
        r"darkness~of~(?:the~)?soul",
        r"weight~of~(?:despair|sorrow|grief|ages|centuries)",
        r"couldn['’]t~(?:help~but|shake)",
        r"shouldn['’]t~be~here",
        r"like~a~(?:sleeping~giant|burial~shroud)",
        r"(?:heavens?|gods?)~(?:themselves~)?(?:mourned?|wept|cried)",
        r"one~could~(?:almost~)?(?:feel|sense|hear)\b[^,.]*",
        r"sleeping~giant",
        r"its~breath~the~[^,.]+",
    ];
    let body = alts.iter().map(|a| a.replace('~', r"\s+")).collect::<Vec<_>>().join("|");
    re(&format!(r"(?i)\b(?:{body})"))
});
pub static WHITESPACE: LazyLock<Regex> = LazyLock::new(|| re(r"\s+"));
pub(crate) static CLEANUP_DOTS: LazyLock<Regex> = LazyLock::new(|| re(r"[.,]{2,}"));
pub(crate) static CLEANUP_DOT_COMMA: LazyLock<Regex> = LazyLock::new(|| re(r"\.\s*,|,\s*\."));
pub(crate) static CLEANUP_COMMAS: LazyLock<Regex> = LazyLock::new(|| re(r"\s*,\s*,+"));
pub(crate) static CLEANUP_LEADING: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*[,.]+\s*"));
pub(crate) static CLEANUP_TRAILING: LazyLock<Regex> = LazyLock::new(|| re(r"\s*[,.]+\s*$"));
pub(crate) static WORD_TOKEN: LazyLock<Regex> = LazyLock::new(|| re(r"\w+"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        for p in [
            &*LOCATION,
            &*COMBAT,
            &*PORTRAIT_NOUN,
            &*PORTRAIT_DESC,
            &*ATMOSPHERE,
            &*MAGIC,
            &*DOCUMENT,
            &*MAGIC_TAG,
            &*EFFECT_TAG,
            &*BEAT_INTRO,
            &*BEAT_ACTION,
            &*BEAT_SKIP,
        ] {
            assert!(!p.as_str().is_empty());
        }
        for r in
            [&*LOCATION_PHRASE, &*DIALOGUE_LINE, &*COMBAT_VERB_TAIL, &*DOCUMENT_BLOCK, &*ATTRIBUTION, &*ABSTRACTIONS]
        {
            assert!(!r.as_str().is_empty());
        }
        assert_eq!(MECHANICS.len(), 5);
    }

    #[test]
    fn whole_words_only() {
        assert!(!PORTRAIT_DESC.is_match("her eyes"));
        assert!(!PORTRAIT_DESC.is_match("he looks"));
        assert!(PORTRAIT_DESC.is_match("one eye"));
        assert!(ATMOSPHERE.is_match("the ruins"));
        assert!(!ATMOSPHERE.is_match("crumbling"));
        assert!(ATMOSPHERE.is_match("crumbl"));
        assert!(ATMOSPHERE.is_match("fog ROLLS   in"));
    }

    #[test]
    fn combat_family_members() {
        for yes in [
            "she draws her sword",
            "he unsheathes a rusted blade",
            "he brandishes steel",
            "Kell challenges the knight to a duel",
            "a spell crackles",
            "roll initiative",
            "steel clashes",
            "the blade flashes",
        ] {
            assert!(COMBAT.is_match(yes), "{yes}");
        }
        for no in [
            "he unsheathes a long rusted blade",
            "he draws a map",
            "she challenges the knight\nand then to a duel",
            "the attackers",
        ] {
            assert!(!COMBAT.is_match(no), "{no}");
        }
    }

    #[test]
    fn ascii_and_unicode_engines_agree_on_ascii_text() {
        let corpus =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../benches/data/narration.txt")).unwrap();
        let families = [
            &*LOCATION,
            &*COMBAT,
            &*PORTRAIT_NOUN,
            &*PORTRAIT_DESC,
            &*ATMOSPHERE,
            &*MAGIC,
            &*DOCUMENT,
            &*BEAT_SKIP,
            &*BEAT_INTRO,
            &*BEAT_ACTION,
        ];
        for para in corpus.split("\n\n").filter(|p| p.is_ascii()) {
            for f in families {
                let a: Vec<_> = f.ascii.find_iter(para.as_bytes()).map(|m| m.range()).collect();
                let u: Vec<_> = f.unicode.find_iter(para).map(|m| m.range()).collect();
                assert_eq!(a, u, "{} on {para:?}", f.as_str());
            }
        }
        // Non-ASCII text goes through the shadow: é is a word character,
        // — is not, a no-break space is whitespace.
        assert!(!ATMOSPHERE.is_match("caféfog"));
        assert!(ATMOSPHERE.is_match("café fog"));
        assert!(!ATMOSPHERE.is_match("éfog"));
        assert!(ATMOSPHERE.is_match("—fog—"));
        assert!(ATMOSPHERE.is_match("fog\u{a0}rolls\u{2003}in"));
        assert!(!BEAT_SKIP.is_match("you pick\u{a0}up"));
    }

    #[test]
    fn shadow_matches_unicode_mode_on_mixed_text() {
        let samples = [
            "Café fog — the élan of a stranger’s gaze; “draws her sword” and naïve ruins.",
            "Über-knight’s armour glows; 火 the guard’s scar 火 flickers in the 霧 fog.",
            "she challenges\u{a0}the Ünder-king to a duel, then steps\u{2003}into the crypt",
            "Rux's HP: 12 → 7 HP [Attack d20: 15 vs AC 12 HIT]. The wind howls through the ruins.",
            "e\u{301}fog ruins\u{301} ash",
        ];
        let families = [
            &*LOCATION,
            &*COMBAT,
            &*PORTRAIT_NOUN,
            &*PORTRAIT_DESC,
            &*ATMOSPHERE,
            &*MAGIC,
            &*DOCUMENT,
            &*BEAT_SKIP,
            &*BEAT_INTRO,
            &*BEAT_ACTION,
        ];
        for s in samples {
            for f in families {
                let fast: Vec<_> = f.find_iter(s).collect();
                let slow: Vec<_> = f.unicode.find_iter(s).map(|m| m.range()).collect();
                assert_eq!(fast, slow, "{} on {s:?}", f.as_str());
            }
        }
    }

    #[test]
    fn beat_spaces_are_literal() {
        assert!(BEAT_SKIP.is_match("you pick up the key"));
        assert!(BEAT_SKIP.is_match("You picks up"));
        assert!(!BEAT_SKIP.is_match("you picks  up"));
        assert!(BEAT_INTRO.is_match("a tall figure"));
        assert!(BEAT_INTRO.is_match("a figure"));
        assert!(BEAT_ACTION.is_match("draws a sword"));
    }
}
