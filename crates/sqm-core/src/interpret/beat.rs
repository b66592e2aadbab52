//! The beat filter: is this turn worth an image? (interpret.md §4)

use serde::Serialize;

use super::patterns::{BEAT_ACTION, BEAT_INTRO, BEAT_SKIP, STRAIGHT_QUOTED};
use super::text::{len, py_strip};
use super::GameState;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BeatVerdict {
    pub generate: bool,
    pub reason: &'static str,
}

const fn verdict(generate: bool, reason: &'static str) -> BeatVerdict {
    BeatVerdict { generate, reason }
}

/// Checks in order; the first that applies decides.
pub fn beat_filter(text: &str, state: &GameState, previous_location: Option<&str>) -> BeatVerdict {
    if py_strip(text).is_empty() {
        return verdict(false, "empty_text");
    }
    if state.combat.in_combat {
        return verdict(true, "in_combat");
    }
    if state.chase.in_chase {
        return verdict(true, "in_chase");
    }
    match previous_location {
        Some(prev) if prev != state.location => return verdict(true, "location_changed"),
        None if !state.location.is_empty() => return verdict(true, "first_scene"),
        _ => {}
    }
    if BEAT_SKIP.is_match(text) {
        return verdict(false, "skip_pattern");
    }
    let quoted: usize = STRAIGHT_QUOTED.find_iter(text).map(|m| len(m.as_str())).sum();
    if quoted as f64 / len(text) as f64 > 0.5 {
        return verdict(false, "dialogue_heavy");
    }
    if BEAT_INTRO.is_match(text) {
        return verdict(true, "npc_intro");
    }
    if BEAT_ACTION.is_match(text) {
        return verdict(true, "action");
    }
    verdict(false, "default_deny")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(location: &str) -> GameState {
        GameState { location: location.into(), ..Default::default() }
    }

    #[test]
    fn acceptance_9() {
        let inv = "You add the rope to your inventory.";
        assert_eq!(beat_filter(inv, &at("a"), Some("a")), verdict(false, "skip_pattern"));
        let mut fighting = at("a");
        fighting.combat.in_combat = true;
        assert_eq!(beat_filter(inv, &fighting, Some("a")), verdict(true, "in_combat"));
        assert_eq!(beat_filter("Nothing much happens.", &at("b"), Some("a")), verdict(true, "location_changed"));
        assert_eq!(beat_filter("He nods.", &at(""), None), verdict(false, "default_deny"));
        assert_eq!(
            beat_filter("A cloaked stranger emerges from the mist.", &at("a"), Some("a")),
            verdict(true, "npc_intro")
        );
    }

    #[test]
    fn remaining_reasons() {
        assert_eq!(beat_filter("  \n", &at("a"), Some("a")), verdict(false, "empty_text"));
        let mut chase = at("a");
        chase.chase.in_chase = true;
        assert_eq!(beat_filter("x", &chase, Some("a")), verdict(true, "in_chase"));
        assert_eq!(beat_filter("He nods.", &at("gate"), None), verdict(true, "first_scene"));
        assert_eq!(
            beat_filter("\"Get out of my shop right now,\" he says.", &at("a"), Some("a")),
            verdict(false, "dialogue_heavy")
        );
        assert_eq!(beat_filter("The roof collapses.", &at("a"), Some("a")), verdict(true, "action"));
        // Skip beats action.
        assert_eq!(beat_filter("You pick up the sword and run.", &at("a"), Some("a")), verdict(false, "skip_pattern"));
    }
}
