//! `audio.yaml`: mood tracks, the mixer, sfx and aliases, and every audio
//! asset they name.

use std::collections::{HashMap, HashSet};

use super::diag::Code;
use super::validate::Validator;
use crate::pack::yaml::{Node, Pos, Value};
use crate::pack::{BUILTIN_MOODS, VARIATION_TYPES};

impl Validator<'_> {
    pub(super) fn check_audio(&mut self, rel: &str, root: &Node) {
        let Some(entries) = self.map(rel, root, "audio.yaml") else { return };
        const KNOWN: &[&str] = &[
            "ai_generation",
            "creature_voice_presets",
            "faction_themes",
            "mixer",
            "mixer_defaults",
            "mood_aliases",
            "mood_keywords",
            "mood_tracks",
            "sfx_library",
            "themes",
            "variation_types",
        ];
        self.keys(rel, entries, KNOWN, true);
        if self.server() {
            if let Some((k, _)) = entries.iter().find(|(k, _)| k.as_str() == Some("variation_types")) {
                self.error(Code::UnknownKey, rel, k.pos, "key 'variation_types' is not allowed in the server profile")
                    .hint("the game server rejects this key");
            }
        }

        let track_moods = self.mood_tracks(rel, root);
        let track_set: HashSet<&str> = track_moods.iter().map(|(m, _)| m.as_str()).collect();
        let keyword_moods = self.mood_keywords(rel, root);
        let aliases = self.mood_aliases(rel, root);
        let reached = self.check_aliases(rel, &aliases, &track_set);
        self.check_sfx(rel, root);
        let theme_moods = self.check_themes(rel, root);
        // mixer, mixer_defaults
        match root.get("mixer") {
            Some(m) => self.check_mixer(rel, m, "mixer", self.server()),
            None if self.server() => self.missing(rel, root, "mixer", "server profile: "),
            None => {}
        }
        if let Some(m) = root.get("mixer_defaults") {
            if !m.is_null() {
                self.check_mixer(rel, m, "mixer_defaults", false);
            }
        }

        self.check_faction_themes(rel, root);
        let alias_keys: HashSet<&str> = aliases.iter().map(|(k, _, _)| k.as_str()).collect();
        let selectable = |mood: &str| {
            BUILTIN_MOODS.contains(&mood)
                || keyword_moods.contains(mood)
                || alias_keys.contains(mood)
                || reached.contains(mood)
        };
        self.check_reachable(rel, track_moods.iter().chain(theme_moods.iter()), selectable);
    }

    /// `mood_tracks`: every track checked; the moods that have music.
    fn mood_tracks(&mut self, rel: &str, root: &Node) -> Vec<(String, Pos)> {
        let mut track_moods: Vec<(String, Pos)> = Vec::new();
        if let Some(mt) = root.get("mood_tracks") {
            if let Some(moods) = self.map(rel, mt, "mood_tracks") {
                for (k, tracks) in moods {
                    let mood = k.key_text().unwrap_or_default();
                    track_moods.push((mood.clone(), k.pos));
                    if let Some(items) = self.seq(rel, tracks, &format!("mood_tracks.{mood}")) {
                        for t in items {
                            self.check_track(rel, t, &format!("mood_tracks.{mood}"));
                        }
                    }
                }
            }
        }
        track_moods
    }

    /// `mood_keywords`: lists of strings; the moods they can select.
    fn mood_keywords(&mut self, rel: &str, root: &Node) -> HashSet<String> {
        let mut keyword_moods: HashSet<String> = HashSet::new();
        if let Some(mk) = root.get("mood_keywords") {
            if let Some(items) = self.map(rel, mk, "mood_keywords") {
                for (k, v) in items {
                    let mood = k.key_text().unwrap_or_default();
                    keyword_moods.insert(mood.clone());
                    if let Some(words) = self.seq(rel, v, &format!("mood_keywords.{mood}")) {
                        for w in words {
                            if w.as_str().is_none() {
                                self.type_error(rel, w, &format!("each keyword of mood_keywords.{mood}"), "a string");
                            }
                        }
                    }
                }
            }
        }
        keyword_moods
    }

    /// `mood_aliases`: alias → mood name.
    fn mood_aliases(&mut self, rel: &str, root: &Node) -> Vec<(String, String, Pos)> {
        let mut aliases: Vec<(String, String, Pos)> = Vec::new();
        if let Some(ma) = root.get("mood_aliases") {
            if let Some(items) = self.map(rel, ma, "mood_aliases") {
                for (k, v) in items {
                    let key = k.key_text().unwrap_or_default();
                    match v.as_str() {
                        Some(target) => aliases.push((key, target.to_owned(), k.pos)),
                        None => self.type_error(rel, v, &format!("mood_aliases.{key}"), "a mood name"),
                    }
                }
            }
        }
        aliases
    }

    /// `sfx_library`: each id lists at least one existing file.
    fn check_sfx(&mut self, rel: &str, root: &Node) {
        if let Some(sfx) = root.get("sfx_library") {
            if let Some(items) = self.map(rel, sfx, "sfx_library") {
                for (k, v) in items {
                    let id = k.key_text().unwrap_or_default();
                    let what = format!("sfx_library.{id}");
                    if let Some(paths) = self.seq(rel, v, &what) {
                        if paths.is_empty() {
                            self.error(
                                Code::InvalidValue,
                                rel,
                                k.pos,
                                format!("sfx_library '{id}' must list at least one file, got an empty list"),
                            );
                        }
                        for p in paths {
                            self.asset(rel, p, &format!("each path of {what}"));
                        }
                    }
                }
            }
        }
    }

    /// `themes`: names, moods, prompts and variations; the moods they play.
    fn check_themes(&mut self, rel: &str, root: &Node) -> Vec<(String, Pos)> {
        let mut theme_moods: Vec<(String, Pos)> = Vec::new();
        if let Some(th) = root.get("themes") {
            if let Some(items) = self.seq(rel, th, "themes") {
                for (i, theme) in items.iter().enumerate() {
                    let what = format!("themes[{i}]");
                    let Some(e) = self.map(rel, theme, &what) else { continue };
                    self.keys(rel, e, &["base_prompt", "mood", "name", "variations"], true);
                    self.opt_str(rel, theme, "name");
                    if let Some(m) = self.opt_str(rel, theme, "mood") {
                        let pos = theme.get("mood").map(|n| n.pos).unwrap_or(theme.pos);
                        theme_moods.push((m.to_owned(), pos));
                    }
                    if self.server() {
                        self.req_str(rel, theme, "base_prompt", &format!("{what}: "));
                    } else {
                        self.opt_str(rel, theme, "base_prompt");
                    }
                    if let Some(vars) = theme.get("variations") {
                        if let Some(vs) = self.seq(rel, vars, &format!("{what}.variations")) {
                            for var in vs {
                                let vwhat = format!("{what}.variations");
                                let Some(ve) = self.map(rel, var, &vwhat) else { continue };
                                self.keys(rel, ve, &["path", "type"], true);
                                if let Some(t) = self.opt_str(rel, var, "type") {
                                    if !VARIATION_TYPES.contains(&t) {
                                        let pos = var.get("type").map(|n| n.pos).unwrap_or(var.pos);
                                        self.warn(
                                            Code::UnknownVariationType,
                                            rel,
                                            pos,
                                            format!(
                                                "variation type '{t}' is not one of {}; it weighs 1.0",
                                                VARIATION_TYPES.join(", ")
                                            ),
                                        );
                                    }
                                }
                                match var.get("path") {
                                    Some(p) => self.asset(rel, p, "variation path"),
                                    None => self.missing(rel, var, "path", "variation: "),
                                }
                            }
                        }
                    }
                }
            }
        }
        theme_moods
    }

    /// `faction_themes`: a track and its triggers per faction.
    fn check_faction_themes(&mut self, rel: &str, root: &Node) {
        if let Some(ft) = root.get("faction_themes") {
            if let Some(items) = self.seq(rel, ft, "faction_themes") {
                for (i, f) in items.iter().enumerate() {
                    let what = format!("faction_themes[{i}]");
                    let Some(e) = self.map(rel, f, &what) else { continue };
                    self.keys(rel, e, &["faction_id", "track", "triggers"], true);
                    self.opt_str(rel, f, "faction_id");
                    match f.get("track") {
                        Some(t) => self.check_track(rel, t, &format!("{what}.track")),
                        None => self.missing(rel, f, "track", &format!("{what}: ")),
                    }
                    if let Some(tr) = f.get("triggers") {
                        if let Some(te) = self.map(rel, tr, &format!("{what}.triggers")) {
                            self.keys(rel, te, &["location", "npc_present", "reputation_threshold"], true);
                            self.opt_bool(rel, tr, "location");
                            self.opt_bool(rel, tr, "npc_present");
                            if let Some(r) = tr.get("reputation_threshold") {
                                if !matches!(r.value, Value::Int(_) | Value::Null) {
                                    self.type_error(rel, r, "reputation_threshold", "an integer or null");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// A mood with music that nothing can select is a warning (once each).
    fn check_reachable<'m>(
        &mut self,
        rel: &str,
        moods: impl Iterator<Item = &'m (String, Pos)>,
        selectable: impl Fn(&str) -> bool,
    ) {
        let mut reported: HashSet<String> = HashSet::new();
        for (mood, pos) in moods {
            if !selectable(mood) && reported.insert(mood.clone()) {
                self.warn(
                    Code::UnreachableMood,
                    rel,
                    *pos,
                    format!("mood '{mood}' has music but nothing can select it"),
                )
                .hint(format!(
                    "add mood_keywords.{mood} or an alias such as '{mood}_alias: {mood}' that the interpreter can emit"
                ));
            }
        }
    }

    pub(super) fn check_track(&mut self, rel: &str, t: &Node, what: &str) {
        let Some(e) = self.map(rel, t, &format!("each track of {what}")) else { return };
        self.keys(rel, e, &["bpm", "energy", "path", "title"], true);
        match t.get("path") {
            Some(p) => self.asset(rel, p, "track path"),
            None => self.missing(rel, t, "path", "track: "),
        }
        if self.server() {
            self.req_str(rel, t, "title", "server profile: track: ");
            if t.get("bpm").is_none() {
                self.missing(rel, t, "bpm", "server profile: track: ");
            }
        } else {
            self.opt_str(rel, t, "title");
        }
        self.non_negative_int(rel, t, "bpm");
        self.ranged(rel, t, "energy", 0.0, 1.0, "between 0 and 1");
    }

    pub(super) fn check_mixer(&mut self, rel: &str, m: &Node, what: &str, server: bool) {
        let Some(e) = self.map(rel, m, what) else { return };
        const KNOWN: &[&str] = &[
            "crossfade_default_ms",
            "duck_amount_db",
            "loudnorm_target_lufs",
            "music_volume",
            "sfx_volume",
            "voice_volume",
        ];
        self.keys(rel, e, KNOWN, true);
        for v in ["music_volume", "sfx_volume", "voice_volume"] {
            self.ranged(rel, m, v, 0.0, 1.0, "between 0 and 1");
        }
        self.non_negative_int(rel, m, "crossfade_default_ms");
        self.ranged(rel, m, "duck_amount_db", f64::NEG_INFINITY, 0.0, "≤ 0 dB");
        if let Some(l) = m.get("loudnorm_target_lufs") {
            if !l.is_null() && l.as_f64().is_none() {
                self.type_error(rel, l, "loudnorm_target_lufs", "a number");
            }
        }
        if server {
            for f in ["music_volume", "sfx_volume", "crossfade_default_ms"] {
                if m.get(f).is_none() {
                    self.missing(rel, m, f, "server profile: mixer: ");
                }
            }
            for (k, _) in e {
                if let Some(key @ ("duck_amount_db" | "loudnorm_target_lufs")) = k.as_str() {
                    self.error(Code::UnknownKey, rel, k.pos, format!("key 'mixer.{key}' is not allowed in the server profile")).hint(format!(
                            "the game server rejects this key; remove it from packs the server loads (sqm then uses its default, {})",
                            if key == "duck_amount_db" { "-12 dB" } else { "-16 LUFS" }
                        ));
                }
            }
        }
    }

    /// The alias load check of audio.md §4. Returns the moods that some
    /// valid alias chain reaches.
    pub(super) fn check_aliases(
        &mut self,
        rel: &str,
        aliases: &[(String, String, Pos)],
        tracks: &HashSet<&str>,
    ) -> HashSet<String> {
        let map: HashMap<&str, &str> = aliases.iter().map(|(k, v, _)| (k.as_str(), v.as_str())).collect();
        let mut reached = HashSet::new();
        for (start, first, pos) in aliases {
            if tracks.contains(start.as_str()) {
                self.warn(
                    Code::AliasShadowed,
                    rel,
                    *pos,
                    format!("alias '{start}' is also a mood_tracks key, so the alias is never used"),
                );
                continue;
            }
            let mut seen: HashSet<&str> = HashSet::from([start.as_str()]);
            let mut cur: &str = first;
            let mut hops = 1;
            loop {
                if tracks.contains(cur) {
                    reached.insert(cur.to_owned());
                    break;
                }
                if seen.contains(cur) {
                    self.error(
                        Code::MoodAliasCycle,
                        rel,
                        *pos,
                        format!("alias chain starting at '{start}' loops at '{cur}'"),
                    );
                    break;
                }
                let Some(next) = map.get(cur) else {
                    self.error(Code::MoodAliasBroken, rel, *pos, format!("alias chain starting at '{start}' ends at '{cur}', which is neither a mood_tracks key nor an alias"));
                    break;
                };
                hops += 1;
                if hops > 5 {
                    self.error(
                        Code::MoodAliasTooDeep,
                        rel,
                        *pos,
                        format!("alias chain starting at '{start}' is longer than 5 links"),
                    );
                    break;
                }
                seen.insert(cur);
                cur = next;
            }
        }
        reached
    }
}
