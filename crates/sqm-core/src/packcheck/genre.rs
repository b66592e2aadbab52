//! Genre-level files: `pack.yaml`, `visual_style.yaml`, `theme.yaml`,
//! `places.yaml`, `cameras.yaml` and `recipes.yaml`.

use super::diag::Code;
use super::suggest;
use super::validate::{is_hex_colour, is_loose_slug, single_camera, Validator};
use crate::pack::slugify;
use crate::pack::yaml::{Node, Pos, Value};

impl Validator<'_> {
    /// `cameras.yaml` (composer-v2.md §3, §8): exactly the 17 presets,
    /// each `{prompt, post}`.
    pub(super) fn check_cameras(&mut self, rel: &str, node: &Node) {
        let Some(entries) = self.map(rel, node, "cameras.yaml") else { return };
        let names: Vec<&str> = crate::pack::direction::PRESETS.iter().map(|(n, _)| *n).collect();
        for n in &names {
            if node.get(n).is_none() {
                self.error(Code::MissingField, rel, node.pos, format!("camera preset '{n}' is missing"));
            }
        }
        for (k, v) in entries {
            let Some(key) = k.key_text() else { continue };
            if !names.contains(&key.as_str()) {
                let hint = suggest::closest(&key, &names)
                    .filter(|(_, d)| *d <= 3)
                    .map(|(s, _)| format!("did you mean '{s}'?"));
                self.error(Code::InvalidValue, rel, k.pos, format!("unknown camera preset '{key}'")).hint_opt(hint);
                continue;
            }
            let Some(body) = self.map(rel, v, &format!("camera '{key}'")) else { continue };
            self.keys(rel, body, &["prompt", "post"], true);
            match v.get("prompt") {
                None => self.missing(rel, v, "prompt", &format!("camera '{key}': ")),
                Some(p) if p.as_str().is_none() => {
                    self.type_error(rel, p, &format!("camera '{key}' prompt"), "a string")
                }
                _ => {}
            }
            if let Some(post) = v.get("post").filter(|p| !p.is_null()) {
                if let Some(pm) = self.map(rel, post, &format!("camera '{key}' post")) {
                    self.keys(rel, pm, &["kind", "mode", "percent", "degrees"], true);
                }
                if let Err(e) = crate::pack::direction::parse_cameras(&single_camera(&key, v)) {
                    self.error(Code::InvalidValue, rel, post.pos, e.to_string());
                }
            }
        }
    }

    /// `recipes.yaml`: the three recipes, each with its six keys.
    pub(super) fn check_recipes(&mut self, rel: &str, node: &Node) {
        let Some(entries) = self.map(rel, node, "recipes.yaml") else { return };
        const FIELDS: [&str; 6] =
            ["kind", "casting", "location", "direction_action", "direction_camera", "art_sensibility"];
        for name in ["portrait", "poi", "illustration"] {
            let Some(r) = node.get(name) else {
                self.error(Code::MissingField, rel, node.pos, format!("recipe '{name}' is missing"));
                continue;
            };
            let Some(body) = self.map(rel, r, &format!("recipe '{name}'")) else { continue };
            self.keys(rel, body, &FIELDS, true);
            for f in FIELDS {
                if r.get(f).is_none() {
                    self.missing(rel, r, f, &format!("recipe '{name}': "));
                }
            }
            if let Some(k) = r.get("kind").filter(|k| k.as_str() != Some(name)) {
                self.error(Code::InvalidValue, rel, k.pos, format!("recipe '{name}': kind must be '{name}'"));
            }
            if let Some(c) = r.get("direction_camera") {
                let cam = c.as_str().unwrap_or("");
                if cam != "{camera}" && !crate::pack::direction::is_preset(cam) {
                    self.error(
                        Code::InvalidValue,
                        rel,
                        c.pos,
                        format!("recipe '{name}': unknown camera preset '{cam}'"),
                    );
                }
            }
            if let Some(a) = r.get("art_sensibility") {
                let mut unknown: Vec<String> = a
                    .as_seq()
                    .unwrap_or(&[])
                    .iter()
                    .map(|x| x.as_str().unwrap_or("").to_owned())
                    .filter(|x| !["GENRE", "WORLD", "CULTURE"].contains(&x.as_str()))
                    .collect();
                unknown.sort();
                if !unknown.is_empty() || a.as_seq().is_none() {
                    let list = unknown.iter().map(|u| format!("'{u}'")).collect::<Vec<_>>().join(", ");
                    self.error(
                        Code::InvalidValue,
                        rel,
                        a.pos,
                        format!("recipe '{name}': unknown cascade layer(s) [{list}]"),
                    );
                }
            }
        }
        for (k, _) in entries {
            if let Some(key) = k.key_text().filter(|key| !["portrait", "poi", "illustration"].contains(&key.as_str())) {
                self.error(Code::UnknownKey, rel, k.pos, format!("unknown recipe '{key}'"));
            }
        }
    }

    pub(super) fn check_pack_yaml(&mut self, rel: &str, root: &Node) {
        let Some(entries) = self.map(rel, root, "pack.yaml") else { return };
        const KNOWN: &[&str] = &[
            "core_vibe",
            "description",
            "differentiation",
            "emotional_tone",
            "era_range",
            "generic_allowlist",
            "inspirations",
            "lobby_blurb",
            "min_sidequest_version",
            "name",
            "recommended_players",
            "refine_hooks",
            "version",
        ];
        self.keys(rel, entries, KNOWN, true);
        for f in ["name", "version", "description"] {
            self.req_str(rel, root, f, "");
        }
        if self.server() {
            self.req_str(rel, root, "min_sidequest_version", "");
        } else {
            self.opt_str(rel, root, "min_sidequest_version");
        }
        for f in ["era_range", "core_vibe", "differentiation", "lobby_blurb"] {
            self.opt_str(rel, root, f);
        }
        self.opt_bool(rel, root, "refine_hooks");
        self.opt_str_list(rel, root, "emotional_tone");
        self.opt_str_list(rel, root, "generic_allowlist");
        if let Some(insp) = root.get("inspirations") {
            if let Some(items) = self.seq(rel, insp, "inspirations") {
                for item in items {
                    if let Some(e) = self.map(rel, item, "each inspiration") {
                        self.keys(rel, e, &["element", "name"], true);
                        self.opt_str(rel, item, "name");
                        self.opt_str(rel, item, "element");
                    }
                }
            }
        }
        if let Some(rp) = root.get("recommended_players") {
            if let Some(e) = self.map(rel, rp, "recommended_players") {
                if !rp.is_null() {
                    self.keys(rel, e, &["max", "min", "sweet_spot"], true);
                    self.check_players(rel, rp);
                }
            }
        }
    }

    pub(super) fn check_players(&mut self, rel: &str, rp: &Node) {
        let int = |v: &Node| match v.value {
            Value::Int(i) => Some(i),
            _ => None,
        };
        let get = |this: &mut Self, key: &str| -> Option<(i64, Pos)> {
            let v = rp.get(key)?;
            if v.is_null() {
                return None;
            }
            match int(v) {
                Some(i) => Some((i, v.pos)),
                None => {
                    this.type_error(rel, v, &format!("recommended_players.{key}"), "an integer");
                    None
                }
            }
        };
        let min = get(self, "min");
        let max = get(self, "max");
        let sweet = get(self, "sweet_spot");
        if rp.get("min").is_none() {
            self.missing(rel, rp, "min", "recommended_players: ");
        }
        if rp.get("max").is_none() {
            self.missing(rel, rp, "max", "recommended_players: ");
        }
        if let Some((m, pos)) = min {
            if m < 1 {
                self.error(Code::InvalidValue, rel, pos, format!("recommended_players.min must be ≥ 1, got {m}"));
            }
        }
        if let (Some((lo, _)), Some((hi, pos))) = (min, max) {
            if hi < lo {
                self.error(
                    Code::InvalidValue,
                    rel,
                    pos,
                    format!("recommended_players.max must be ≥ min ({lo}), got {hi}"),
                );
            }
        }
        if let (Some((lo, _)), Some((hi, _)), Some((s, pos))) = (min, max, sweet) {
            if s < lo || s > hi {
                self.error(
                    Code::InvalidValue,
                    rel,
                    pos,
                    format!("recommended_players.sweet_spot must be within [{lo}, {hi}], got {s}"),
                );
            }
        }
    }

    /// Genre visual style. Returns the positive suffix when usable.
    pub(super) fn check_genre_style(&mut self, rel: &str, root: &Node) -> Option<(String, Pos)> {
        let entries = self.map(rel, root, "visual_style.yaml")?;
        const KNOWN: &[&str] = &[
            "base_seed",
            "lora",
            "lora_trigger",
            "loras",
            "negative_prompt",
            "positive_suffix",
            "preferred_model",
            "visual_tag_overrides",
        ];
        self.keys(rel, entries, KNOWN, false);
        let suffix = self.style_suffix(rel, root, None);
        self.opt_str(rel, root, "negative_prompt");
        if let Some(pm) = self.opt_str(rel, root, "preferred_model") {
            if !["dev", "schnell", "flux", "zimage", ""].contains(&pm) {
                let pos = root.get("preferred_model").map(|n| n.pos).unwrap_or_default();
                self.warn(
                    Code::PreferredModelUnknown,
                    rel,
                    pos,
                    format!(
                        "preferred_model '{pm}' is not one of dev, schnell, flux, zimage; the default model is used"
                    ),
                );
            }
        }
        if let Some(seed) = root.get("base_seed") {
            if !matches!(seed.value, Value::Int(_) | Value::Null) {
                self.type_error(rel, seed, "base_seed", "an integer");
            }
        }
        if self.server() {
            for f in ["negative_prompt", "preferred_model", "base_seed"] {
                if root.get(f).is_none() {
                    self.missing(rel, root, f, "server profile: ");
                }
            }
        }
        if let Some(ov) = root.get("visual_tag_overrides") {
            if let Some(items) = self.map(rel, ov, "visual_tag_overrides") {
                for (k, v) in items {
                    if let Some(key) = k.key_text() {
                        if key != key.to_lowercase() {
                            self.warn(
                                Code::OverrideKeyCase,
                                rel,
                                k.pos,
                                format!("visual_tag_overrides key '{key}' has upper-case letters and can never match"),
                            )
                            .hint(format!("write it as '{}'", key.to_lowercase()));
                        }
                    }
                    if v.as_str().is_none() {
                        self.type_error(rel, v, "each visual_tag_overrides value", "a string");
                    }
                }
            }
        }
        suffix
    }

    /// `positive_suffix`: present and non-blank, else `EMPTY_STYLE`.
    pub(super) fn style_suffix(&mut self, rel: &str, root: &Node, legacy_hint: Option<&str>) -> Option<(String, Pos)> {
        match root.get("positive_suffix") {
            Some(v) => match &v.value {
                Value::Str(s) if !s.trim().is_empty() => return Some((s.clone(), v.pos)),
                Value::Str(_) | Value::Null => {
                    self.error(Code::EmptyStyle, rel, v.pos, "positive_suffix is missing or empty");
                }
                _ => self.type_error(rel, v, "positive_suffix", "a string"),
            },
            None => {
                self.error(Code::EmptyStyle, rel, Pos::FILE, "positive_suffix is missing or empty")
                    .hint_opt(legacy_hint.map(str::to_owned));
            }
        }
        None
    }

    pub(super) fn check_theme(&mut self, rel: &str, root: &Node) {
        let Some(e) = self.map(rel, root, "theme.yaml") else { return };
        const COLOURS: [&str; 6] = ["primary", "secondary", "accent", "background", "surface", "text"];
        let mut known: Vec<&str> = COLOURS.to_vec();
        known.extend(["border_style", "web_font_family", "dinkus", "session_opener"]);
        known.sort();
        self.keys(rel, e, &known, true);
        for c in COLOURS {
            if let Some(colour) = self.req_str(rel, root, c, "") {
                if !is_hex_colour(colour) {
                    let pos = root.get(c).map(|n| n.pos).unwrap_or_default();
                    self.warn(
                        Code::InvalidValue,
                        rel,
                        pos,
                        format!("{c} should be a colour like #rgb, #rrggbb or #rrggbbaa, got '{colour}'"),
                    );
                }
            }
        }
        self.req_str(rel, root, "border_style", "");
        self.req_str(rel, root, "web_font_family", "");
        match root.get("dinkus") {
            None => self.missing(rel, root, "dinkus", ""),
            Some(d) => {
                if let Some(de) = self.map(rel, d, "dinkus") {
                    self.keys(rel, de, &["cooldown", "default_weight", "enabled", "glyph"], true);
                    for f in ["enabled", "cooldown", "default_weight"] {
                        if d.get(f).is_none() {
                            self.missing(rel, d, f, "dinkus: ");
                        }
                    }
                    self.opt_bool(rel, d, "enabled");
                    self.non_negative_int(rel, d, "cooldown");
                    self.opt_str(rel, d, "default_weight");
                    if let Some(g) = d.get("glyph") {
                        if let Some(ge) = self.map(rel, g, "dinkus.glyph") {
                            for (_, v) in ge {
                                if v.as_str().is_none() {
                                    self.type_error(rel, v, "each dinkus.glyph value", "a string");
                                }
                            }
                        }
                    }
                }
            }
        }
        match root.get("session_opener") {
            None => self.missing(rel, root, "session_opener", ""),
            Some(s) => {
                if let Some(se) = self.map(rel, s, "session_opener") {
                    self.keys(rel, se, &["enabled"], true);
                    if s.get("enabled").is_none() {
                        self.missing(rel, s, "enabled", "session_opener: ");
                    }
                    self.opt_bool(rel, s, "enabled");
                }
            }
        }
    }

    pub(super) fn check_places(&mut self, rel: &str, root: &Node) {
        let Some(places) = self.map(rel, root, "places.yaml") else { return };
        for (k, place) in places {
            let slug = k.key_text().unwrap_or_default();
            if !is_loose_slug(&slug) {
                self.error(Code::InvalidValue, rel, k.pos, format!("place slug '{slug}' must match [a-z0-9_-]+"))
                    .hint(format!("try '{}'", slugify(&slug)));
            }
            let Some(pe) = self.map(rel, place, &format!("place '{slug}'")) else { continue };
            self.keys(rel, pe, &["description", "environment", "landmark"], false);
            for block in ["landmark", "environment", "description"] {
                let Some(b) = place.get(block) else { continue };
                let Some(be) = self.map(rel, b, &format!("{slug}.{block}")) else { continue };
                self.keys(rel, be, &["backdrop", "solo"], false);
                for f in ["solo", "backdrop"] {
                    if let Some(text) = self.opt_str(rel, b, f) {
                        if block == "landmark" && !text.trim().is_empty() {
                            let pos = b.get(f).map(|n| n.pos).unwrap_or(b.pos);
                            self.error(Code::ArchetypeHasLandmark, rel, pos, format!("archetypal place '{slug}' has a landmark.{f}; archetypes have no landmark")).hint("move the text to environment or description, or make it a point of interest in a world's history.yaml");
                        }
                    }
                }
            }
        }
    }
}
