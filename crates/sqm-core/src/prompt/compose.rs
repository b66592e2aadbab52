//! The Flux-era PromptComposer, reproduced exactly (tiers-and-prompts.md §3),
//! and the raw-field fallback (§4).

use super::style::Style;
use super::tokens::{tok, trunc};
use crate::interpret::Tier;

/// What the composer draws: a visual cue after reference resolution.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Cue {
    pub tier: Option<Tier>,
    pub subject: String,
    pub mood: String,
    pub location: String,
    pub characters: Vec<String>,
    pub tags: Vec<String>,
}

/// The composer's output.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Composed {
    pub positive_prompt: String,
    pub negative_prompt: String,
    pub clip_prompt: String,
    pub worker_type: String,
    pub seed: u32,
}

const LIMIT: i64 = 512;
const NARRATIVE_FLOOR: i64 = 40;
const PORTRAIT_REINFORCEMENT: &str = "solo character, detailed distinctive features, unique appearance";
const BASE_NEGATIVE: &str = "watermark, signature, text, blurry, deformed, extra limbs, modern clothing, contemporary, t-shirt, collared shirt, photograph, photorealistic, hyperrealistic, smooth skin, airbrushed, polished surface, CGI";
const SCENE_NEGATIVE: &str = "cluttered, messy composition, smooth digital render, photograph-like, photo-smooth";

const DEFAULT_LOCATION_TAGS: [(&str, &str); 8] = [
    ("tavern", "wooden beams, hearth fire, ale-stained tables, smoky interior"),
    ("forest", "dense canopy, dappled sunlight, mossy undergrowth, ancient trees"),
    ("dungeon", "stone corridors, flickering torches, damp walls, iron grates"),
    ("castle", "stone battlements, tapestries, vaulted ceilings, heraldic banners"),
    ("market", "merchant stalls, colorful awnings, crowded square, barrels and crates"),
    ("cave", "stalactites, dim glow, rough stone, underground pools"),
    ("temple", "stained glass, marble columns, incense smoke, sacred altars"),
    ("battlefield", "scorched earth, broken weapons, banners in wind, smoke and dust"),
];

/// The tier prefix P.
pub(crate) fn tier_prefix(tier: Tier) -> &'static str {
    match tier {
        Tier::Landscape => "wide establishing shot, scenic vista, atmospheric",
        Tier::Portrait | Tier::PortraitSquare => "character portrait, detailed face and attire, centered subject",
        Tier::SceneIllustration => "detailed painterly illustration, hand-painted scene, dramatic composition",
        Tier::TextOverlay | Tier::Cartography => "",
    }
}

/// `tags(loc)`: the first matching override, else the first matching
/// default, else the location unchanged.
pub(crate) fn location_tags(location: &str, style: &Style) -> String {
    let lowered = location.to_lowercase();
    if let Some((_, v)) = style.visual_tag_overrides.iter().find(|(k, _)| lowered.contains(k.as_str())) {
        return v.clone();
    }
    if let Some((_, v)) = DEFAULT_LOCATION_TAGS.iter().find(|(k, _)| lowered.contains(k)) {
        return (*v).to_owned();
    }
    location.to_owned()
}

/// The seed: SHA-256 of `subject:tier:location:sorted|characters`, first
/// 8 hex digits, plus `base_seed`, modulo 2^32.
pub fn seed_for(subject: &str, tier: Tier, location: &str, characters: &[String], base_seed: i64) -> u32 {
    let mut sorted: Vec<&str> = characters.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let key = format!("{subject}:{tier}:{location}:{}", sorted.join("|"));
    let h = crate::rng::text_seed(&key);
    (i128::from(h) + i128::from(base_seed)).rem_euclid(1 << 32) as u32
}

/// Composes the prompt for `cue` (whose tier must be set) in `style`.
pub fn compose(cue: &Cue, tier: Tier, style: &Style) -> Composed {
    let prefix = tier_prefix(tier);
    let mut parts: Vec<String> = Vec::new();
    let mut push = |s: String| {
        if !s.is_empty() {
            parts.push(s);
        }
    };
    push(cue.subject.clone());
    push(cue.mood.clone());
    if !cue.location.is_empty() {
        push(location_tags(&cue.location, style));
    }
    push(cue.characters.join(", "));
    push(cue.tags.join(", "));
    if tier.is_portrait() {
        parts.push(PORTRAIT_REINFORCEMENT.to_owned());
    }

    let mut suffix = style.positive_suffix.clone();
    let count = i64::from(!prefix.is_empty()) + parts.len() as i64 + i64::from(!suffix.is_empty());
    let avail = LIMIT - tok(prefix) as i64 - count;
    if !suffix.is_empty() && avail - (tok(&suffix) as i64) < NARRATIVE_FLOOR {
        let m = (avail - NARRATIVE_FLOOR).max(0);
        suffix = if m > 0 { trunc(&suffix, m) } else { String::new() };
    }
    let budget = avail - tok(&suffix) as i64;
    let mut kept: Vec<String> = Vec::new();
    let mut used = 0i64;
    for part in parts {
        let t = tok(&part) as i64;
        if used + t <= budget {
            used += t;
            kept.push(part);
            continue;
        }
        let r = budget - used;
        if r > 2 {
            let cut = trunc(&part, r);
            if !cut.is_empty() {
                kept.push(cut);
            }
        }
        break;
    }

    let mut ordered: Vec<&str> = Vec::new();
    let non_empty = |s: &str| !s.is_empty();
    if tier.is_portrait() {
        ordered.extend(Some(prefix).filter(|s| non_empty(s)));
        ordered.extend(kept.iter().map(String::as_str));
        ordered.extend(Some(suffix.as_str()).filter(|s| non_empty(s)));
    } else {
        ordered.extend(Some(suffix.as_str()).filter(|s| non_empty(s)));
        ordered.extend(Some(prefix).filter(|s| non_empty(s)));
        ordered.extend(kept.iter().map(String::as_str));
    }
    let positive_prompt = ordered.join(", ");

    let clip_prompt = [prefix, style.positive_suffix.as_str(), cue.mood.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ");

    let mut negative = vec![BASE_NEGATIVE];
    if !style.negative_prompt.is_empty() {
        negative.push(&style.negative_prompt);
    }
    if tier == Tier::SceneIllustration {
        negative.push(SCENE_NEGATIVE);
    }

    let worker_type = match tier {
        Tier::TextOverlay | Tier::Cartography => "flux".to_owned(),
        _ => style.preferred_model.clone(),
    };
    Composed {
        positive_prompt,
        negative_prompt: negative.join(", "),
        clip_prompt,
        worker_type,
        seed: seed_for(&cue.subject, tier, &cue.location, &cue.characters, style.base_seed),
    }
}

/// The raw-field fallback without a style. `None` when there is nothing to
/// draw.
pub fn raw_fallback(cue: &Cue, tier: Option<Tier>) -> Option<String> {
    let overlay = tier == Some(Tier::TextOverlay);
    let mut parts: Vec<String> = Vec::new();
    if !cue.subject.is_empty() {
        parts.push(if overlay { format!("text reading {}", cue.subject) } else { cue.subject.clone() });
    }
    if !cue.mood.is_empty() {
        parts.push(format!("{} atmosphere", cue.mood));
    }
    if !cue.location.is_empty() {
        parts.push(format!("set in {}", cue.location));
    }
    parts.extend(cue.tags.iter().filter(|t| !t.is_empty()).cloned());
    if overlay {
        parts.extend(["clean typography", "readable text", "sharp lettering"].map(String::from));
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style_x() -> Style {
        let mut s = Style {
            positive_suffix: "gritty painterly texture, desaturated earth tones".into(),
            negative_prompt: "neon".into(),
            preferred_model: "flux".into(),
            base_seed: 42,
            visual_tag_overrides: Default::default(),
            loras: Vec::new(),
        };
        s.visual_tag_overrides
            .insert("bunker".into(), "reinforced concrete blast doors, flickering fluorescent tubes".into());
        s
    }

    fn cue(subject: &str, mood: &str, location: &str, characters: &[&str], tags: &[&str]) -> Cue {
        Cue {
            tier: None,
            subject: subject.into(),
            mood: mood.into(),
            location: location.into(),
            characters: characters.iter().map(|s| s.to_string()).collect(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn example_1_scene() {
        let c = compose(
            &cue("a scavenger kneels by a fire", "ominous", "The Old Tavern", &["Rux", "Mira"], &["atmosphere"]),
            Tier::SceneIllustration,
            &style_x(),
        );
        assert_eq!(c.positive_prompt, "gritty painterly texture, desaturated earth tones, detailed painterly illustration, hand-painted scene, dramatic composition, a scavenger kneels by a fire, ominous, wooden beams, hearth fire, ale-stained tables, smoky interior, Rux, Mira, atmosphere");
        assert_eq!(c.clip_prompt, "detailed painterly illustration, hand-painted scene, dramatic composition, gritty painterly texture, desaturated earth tones, ominous");
        assert_eq!(c.negative_prompt, format!("{BASE_NEGATIVE}, neon, cluttered, messy composition, smooth digital render, photograph-like, photo-smooth"));
        assert_eq!(c.seed, 3898851399);
        assert_eq!(c.worker_type, "flux");
    }

    #[test]
    fn examples_2_3_portraits() {
        let q = cue("a weathered orc warrior", "", "Bunker 7", &[], &[]);
        let c = compose(&q, Tier::Portrait, &style_x());
        assert_eq!(c.positive_prompt, "character portrait, detailed face and attire, centered subject, a weathered orc warrior, reinforced concrete blast doors, flickering fluorescent tubes, solo character, detailed distinctive features, unique appearance, gritty painterly texture, desaturated earth tones");
        assert_eq!(c.clip_prompt, "character portrait, detailed face and attire, centered subject, gritty painterly texture, desaturated earth tones");
        assert_eq!(c.negative_prompt, format!("{BASE_NEGATIVE}, neon"));
        assert_eq!(c.seed, 3948449914);
        let sq = compose(&q, Tier::PortraitSquare, &style_x());
        assert_eq!(
            (sq.positive_prompt.as_str(), sq.clip_prompt.as_str(), sq.negative_prompt.as_str()),
            (c.positive_prompt.as_str(), c.clip_prompt.as_str(), c.negative_prompt.as_str())
        );
        assert_eq!(sq.seed, 3517814282);
    }

    #[test]
    fn example_4_text_overlay() {
        let c = compose(&cue("WANTED dead or alive", "", "Somewhere Else", &[], &[]), Tier::TextOverlay, &style_x());
        assert_eq!(
            c.positive_prompt,
            "gritty painterly texture, desaturated earth tones, WANTED dead or alive, Somewhere Else"
        );
        assert_eq!(c.clip_prompt, "gritty painterly texture, desaturated earth tones");
        assert_eq!(c.negative_prompt, format!("{BASE_NEGATIVE}, neon"));
        assert_eq!(c.seed, 2566679609);
    }

    #[test]
    fn example_5_landscape() {
        let c = compose(
            &cue("ruined chapel", "dusk, ominous", "The Rusted Junction", &["Rux", "Mira"], &[]),
            Tier::Landscape,
            &style_x(),
        );
        assert_eq!(c.positive_prompt, "gritty painterly texture, desaturated earth tones, wide establishing shot, scenic vista, atmospheric, ruined chapel, dusk, ominous, The Rusted Junction, Rux, Mira");
        assert_eq!(c.seed, 2529558056);
    }

    #[test]
    fn example_6_budget() {
        let words = |p: &str, n: usize| (1..=n).map(|i| format!("{p}{i}")).collect::<Vec<_>>().join(" ");
        let style = Style { positive_suffix: words("w", 400), base_seed: 0, ..Style::default() };
        let c =
            compose(&cue(&words("s", 60), "tense", "a dark forest path", &[], &[]), Tier::SceneIllustration, &style);
        assert_eq!(
            c.positive_prompt,
            format!(
                "{}, detailed painterly illustration, hand-painted scene, dramatic composition, {}",
                words("w", 352),
                words("s", 31)
            )
        );
        assert_eq!(c.seed, 2468583265);
        let c = compose(&cue("a scavenger kneels by a fire", "tense", "", &[], &[]), Tier::SceneIllustration, &style);
        assert_eq!(
            c.positive_prompt,
            format!("{}, detailed painterly illustration, hand-painted scene, dramatic composition, a scavenger kneels by a fire, tense", words("w", 353))
        );
    }

    #[test]
    fn example_7_empty_style_cartography() {
        let c = compose(&cue("map of the reach", "", "", &[], &[]), Tier::Cartography, &Style::default());
        assert_eq!(c.positive_prompt, "map of the reach");
        assert_eq!(c.clip_prompt, "");
        assert_eq!(c.negative_prompt, BASE_NEGATIVE);
        assert_eq!(c.seed, 4265159599);
    }

    #[test]
    fn example_8_seed_wrap() {
        assert_eq!(seed_for("x", Tier::SceneIllustration, "", &[], 0), 2150434721);
        assert_eq!(seed_for("x", Tier::SceneIllustration, "", &[], 4294967295), 2150434720);
        assert_eq!(seed_for("x", Tier::SceneIllustration, "", &[], -2150434722), u32::MAX);
    }

    #[test]
    fn example_9_raw_fallback() {
        let c = cue("WANTED", "tense", "the square", &[], &["document"]);
        assert_eq!(
            raw_fallback(&c, Some(Tier::TextOverlay)).unwrap(),
            "text reading WANTED, tense atmosphere, set in the square, document, clean typography, readable text, sharp lettering"
        );
        assert_eq!(raw_fallback(&Cue::default(), Some(Tier::Portrait)), None);
    }

    #[test]
    fn override_keys_with_capitals_never_match() {
        let mut s = style_x();
        s.visual_tag_overrides.insert("Tavern".into(), "never".into());
        assert_eq!(
            location_tags("The Tavern District", &s),
            "wooden beams, hearth fire, ale-stained tables, smoky interior"
        );
        assert_eq!(location_tags("Nowhere", &s), "Nowhere");
    }
}
