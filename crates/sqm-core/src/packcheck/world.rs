//! A world: `world.yaml`, `history.yaml` (chapters and points of
//! interest), cultures, `portrait_manifest.yaml` and the cast's token budget.

use std::collections::{HashMap, HashSet};

use super::diag::Code;
use super::suggest;
use super::validate::{GenreFacts, Validator, SERVER_WORLD_FILES};
use crate::pack::yaml::{Node, Pos, Value};
use crate::pack::{is_slug, slugify};
use crate::prompt::tokens;

impl Validator<'_> {
    pub(super) fn check_world(&mut self, world: &str, facts: &GenreFacts, checked: &mut HashSet<String>) {
        self.check_world_inner(world, facts, checked);
        self.check_cast_budget(world);
    }

    /// `CAST_OVER_BUDGET`: a character whose background text plus the genre
    /// and world suffixes exceeds the 512-token budget can never be drawn
    /// by composer v2 (only worlds with their own visual_style.yaml use it).
    pub(super) fn check_cast_budget(&mut self, world: &str) {
        let root = self.pack.root.clone();
        if !root.join("worlds").join(world).join("visual_style.yaml").is_file() {
            return;
        }
        let (Some(parent), Some(genre)) = (root.parent(), root.file_name().map(|n| n.to_string_lossy().into_owned()))
        else {
            return;
        };
        // Load errors are reported by the file checks.
        let Ok(over) = crate::prompt::layered::over_budget_characters(parent, &genre, world) else { return };
        let rel = format!("worlds/{world}/portrait_manifest.yaml");
        for (key, total) in over {
            self.warn(Code::CastOverBudget, &rel, Pos::FILE, format!("character '{key}': its background description plus the genre and world styles estimate {total} tokens, over the 512 budget; it can never be drawn")).hint("shorten descriptions.background (or the positive_suffix texts)");
        }
    }

    pub(super) fn check_world_inner(&mut self, world: &str, facts: &GenreFacts, checked: &mut HashSet<String>) {
        let dir = format!("worlds/{world}");
        let world_root = self.pack.root.join(&dir);
        if !is_slug(world) {
            self.error(
                Code::InvalidValue,
                &dir,
                Pos::FILE,
                format!("world directory name '{world}' is not a valid slug"),
            )
            .hint("use lower-case letters, digits, '_' and '-'");
        }
        let required: &[&str] = if self.server() { &SERVER_WORLD_FILES } else { &["world.yaml"] };
        for f in required {
            if !world_root.join(f).exists() {
                self.error(
                    Code::MissingFile,
                    &format!("{dir}/{f}"),
                    Pos::FILE,
                    format!("required file {dir}/{f} is missing"),
                );
            }
        }
        let cultures: HashSet<String> = std::fs::read_dir(world_root.join("cultures"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        name.strip_suffix(".yaml").map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut culture_files: Vec<&String> = cultures.iter().collect();
        culture_files.sort();
        for c in culture_files {
            let rel = format!("{dir}/cultures/{c}.yaml");
            if let Some(node) = self.load(&rel, checked) {
                if let Some(e) = self.map(&rel, &node, "culture file") {
                    self.keys(&rel, e, &["visual_tokens"], false);
                    self.opt_str(&rel, &node, "visual_tokens");
                }
            }
        }

        // history.yaml first: world.yaml's cover_poi refers to it.
        let mut poi_slugs: Option<HashSet<String>> = None;
        let rel = format!("{dir}/history.yaml");
        if let Some(node) = self.load(&rel, checked) {
            poi_slugs = Some(self.check_history(&rel, &node, &cultures));
        }

        let rel = format!("{dir}/world.yaml");
        if let Some(node) = self.load(&rel, checked) {
            self.check_world_yaml(&rel, &node, world, poi_slugs.as_ref());
        }

        let rel = format!("{dir}/visual_style.yaml");
        if let Some(node) = self.load(&rel, checked) {
            if let Some(e) = self.map(&rel, &node, "visual_style.yaml") {
                const KNOWN: &[&str] = &[
                    "base_seed",
                    "lora",
                    "lora_trigger",
                    "loras",
                    "negative_prompt",
                    "positive_suffix",
                    "preferred_model",
                    "style_prompt",
                    "visual_tag_overrides",
                ];
                self.keys(&rel, e, KNOWN, false);
                self.check_world_loras(&rel, &node, &dir, &facts.lora_names);
                let legacy =
                    node.get("style_prompt").map(|_| "rename the legacy key 'style_prompt' to 'positive_suffix'");
                if let Some((world_suffix, pos)) = self.style_suffix(&rel, &node, legacy) {
                    if let Some((genre_suffix, _)) = &facts.positive_suffix {
                        let combined = format!("{genre_suffix}, {world_suffix}");
                        let t = tokens::tok(&combined);
                        if t >= 460 {
                            self.warn(Code::StyleTruncated, &rel, pos, format!("genre plus world positive_suffix is about {t} tokens (≥ 460); the composer will cut it")).hint("shorten the style so that narrative detail keeps room in the 512-token prompt");
                        }
                    }
                }
            }
        }

        let rel = format!("{dir}/portrait_manifest.yaml");
        if let Some(node) = self.load(&rel, checked) {
            self.check_portraits(&rel, &node, &cultures);
        }

        let rel = format!("{dir}/audio.yaml");
        if let Some(node) = self.load(&rel, checked) {
            self.check_audio(&rel, &node);
        }
    }

    pub(super) fn check_world_yaml(&mut self, rel: &str, root: &Node, world: &str, pois: Option<&HashSet<String>>) {
        let Some(e) = self.map(rel, root, "world.yaml") else { return };
        const KNOWN: &[&str] =
            &["axis_snapshot", "cover_poi", "description", "era", "name", "slug", "starting_location", "tone"];
        self.keys(rel, e, KNOWN, false);
        self.req_str(rel, root, "name", "");
        self.req_str(rel, root, "description", "");
        self.opt_str(rel, root, "starting_location");
        self.opt_str(rel, root, "tone");
        if let Some(era) = root.get("era") {
            if !matches!(era.value, Value::Str(_) | Value::Int(_) | Value::Null) {
                self.type_error(rel, era, "era", "a string or an integer");
            }
        }
        if let Some(slug) = self.opt_str(rel, root, "slug") {
            if !slug.is_empty() && slug != world {
                let pos = root.get("slug").map(|n| n.pos).unwrap_or_default();
                self.warn(
                    Code::SlugMismatch,
                    rel,
                    pos,
                    format!("slug '{slug}' differs from the directory name '{world}'"),
                );
            }
        }
        if let Some(ax) = root.get("axis_snapshot") {
            if let Some(items) = self.map(rel, ax, "axis_snapshot") {
                for (k, v) in items {
                    if v.as_f64().is_none() {
                        let key = k.key_text().unwrap_or_default();
                        self.type_error(rel, v, &format!("axis_snapshot.{key}"), "a number");
                    }
                }
            }
        }
        if let Some(cover) = self.opt_str(rel, root, "cover_poi") {
            let pos = root.get("cover_poi").map(|n| n.pos).unwrap_or_default();
            let found = pois.is_some_and(|p| p.contains(cover));
            if !found {
                let hint = match pois {
                    None => Some("this world has no history.yaml".to_owned()),
                    Some(p) if !p.is_empty() => {
                        let mut names: Vec<&str> = p.iter().map(String::as_str).collect();
                        names.sort();
                        suggest::closest(cover, &names).map(|(s, _)| format!("did you mean '{s}'?"))
                    }
                    Some(_) => None,
                };
                self.error(
                    Code::UnresolvedRef,
                    rel,
                    pos,
                    format!("cover_poi '{cover}' names no point of interest in history.yaml"),
                )
                .hint_opt(hint);
            }
        }
    }

    /// Returns the set of POI slugs.
    pub(super) fn check_history(&mut self, rel: &str, root: &Node, cultures: &HashSet<String>) -> HashSet<String> {
        let mut slugs: HashMap<String, Pos> = HashMap::new();
        let Some(_) = self.map(rel, root, "history.yaml") else { return HashSet::new() };
        let Some(chapters) = root.get("chapters") else { return HashSet::new() };
        let Some(chapters) = self.seq(rel, chapters, "chapters") else { return HashSet::new() };
        for ch in chapters {
            let Some(_) = self.map(rel, ch, "each chapter") else { continue };
            let Some(pois) = ch.get("points_of_interest") else { continue };
            let Some(pois) = self.seq(rel, pois, "points_of_interest") else { continue };
            for poi in pois {
                let Some(pe) = self.map(rel, poi, "each point of interest") else { continue };
                const KNOWN: &[&str] = &[
                    "controlling_culture",
                    "description",
                    "environment",
                    "name",
                    "region",
                    "slug",
                    "type",
                    "visual_prompt",
                ];
                self.keys(rel, pe, KNOWN, false);
                let slug = self.opt_str(rel, poi, "slug").map(str::to_owned);
                let name = self.opt_str(rel, poi, "name").map(str::to_owned);
                let id = match (slug, name) {
                    (Some(s), _) if !s.is_empty() => Some((s, poi.get("slug").map(|n| n.pos).unwrap_or(poi.pos))),
                    (_, Some(n)) if !n.is_empty() => {
                        Some((slugify(&n), poi.get("name").map(|n| n.pos).unwrap_or(poi.pos)))
                    }
                    _ => None,
                };
                match id {
                    None => self.missing(rel, poi, "slug", "point of interest needs 'slug' or 'name': "),
                    Some((id, pos)) => {
                        if let Some(first) = slugs.get(&id) {
                            self.error(
                                Code::DuplicateId,
                                rel,
                                pos,
                                format!("point of interest slug '{id}' is already used on line {}", first.line),
                            );
                        } else {
                            slugs.insert(id, pos);
                        }
                    }
                }
                if let Some(c) = self.opt_str(rel, poi, "controlling_culture") {
                    self.culture_ref(rel, poi.get("controlling_culture").unwrap(), c, cultures);
                }
                let mut has_visual = false;
                for block in ["visual_prompt", "environment"] {
                    let Some(b) = poi.get(block) else { continue };
                    match &b.value {
                        Value::Map(be) => {
                            self.keys(rel, be, &["backdrop", "solo"], false);
                            for f in ["solo", "backdrop"] {
                                if let Some(t) = self.opt_str(rel, b, f) {
                                    has_visual |= !t.trim().is_empty();
                                }
                            }
                        }
                        Value::Null => {}
                        Value::Str(_) => {
                            self.error(
                                Code::SchemaType,
                                rel,
                                b.pos,
                                format!("{block} must be a mapping, got a string"),
                            )
                            .hint(format!("migrate to '{block}: {{solo: …, backdrop: …}}'"));
                        }
                        _ => self.type_error(rel, b, block, "a mapping"),
                    }
                }
                if !has_visual {
                    self.warn(
                        Code::PoiNoVisual,
                        rel,
                        poi.pos,
                        "point of interest has no visual_prompt or environment text, so it cannot be drawn",
                    );
                }
            }
        }
        slugs.into_keys().collect()
    }

    pub(super) fn culture_ref(&mut self, rel: &str, node: &Node, culture: &str, cultures: &HashSet<String>) {
        if culture.is_empty() || cultures.contains(culture) || cultures.contains(&slugify(culture)) {
            return;
        }
        self.warn(
            Code::CultureNotFound,
            rel,
            node.pos,
            format!("culture '{culture}' has no cultures/{}.yaml in this world", slugify(culture)),
        );
    }

    #[allow(clippy::collapsible_match)]
    pub(super) fn check_portraits(&mut self, rel: &str, root: &Node, cultures: &HashSet<String>) {
        let entries: &[Node] = match &root.value {
            Value::Seq(items) => items,
            Value::Map(_) => {
                let Some(chars) = root.get("characters") else {
                    self.missing(rel, root, "characters", "");
                    return;
                };
                match self.seq(rel, chars, "characters") {
                    Some(items) => items,
                    None => return,
                }
            }
            Value::Null => return,
            _ => {
                self.type_error(rel, root, "portrait_manifest.yaml", "a list or a mapping with 'characters'");
                return;
            }
        };
        let mut slugs: HashMap<String, Pos> = HashMap::new();
        for entry in entries {
            let Some(e) = self.map(rel, entry, "each character") else { continue };
            const KNOWN: &[&str] = &[
                "appearance",
                "culture",
                "culture_aesthetic",
                "default_pose",
                "descriptions",
                "element_visual",
                "id",
                "name",
                "role",
                "type",
            ];
            self.keys(rel, e, KNOWN, false);
            for f in ["role", "type", "culture_aesthetic", "element_visual", "default_pose"] {
                self.opt_str(rel, entry, f);
            }
            let id = self.opt_str(rel, entry, "id").map(str::to_owned);
            let name = self.opt_str(rel, entry, "name").map(str::to_owned);
            if self.server() && entry.get("name").is_none() {
                self.missing(rel, entry, "name", "server profile: character: ");
            }
            let slug = match (&id, &name) {
                (Some(i), _) if !i.is_empty() => Some((i.clone(), entry.get("id").unwrap().pos)),
                (_, Some(n)) if !n.trim().is_empty() => Some((slugify(n), entry.get("name").unwrap().pos)),
                _ => None,
            };
            match slug {
                None => self.missing(rel, entry, "id", "character needs 'id' or 'name': "),
                Some((s, pos)) => {
                    if let Some(first) = slugs.get(&s) {
                        self.error(
                            Code::DuplicateId,
                            rel,
                            pos,
                            format!("character slug '{s}' is already used on line {}", first.line),
                        );
                    } else {
                        slugs.insert(s, pos);
                    }
                }
            }
            // descriptions complete, or a non-empty appearance.
            let appearance = self.opt_str(rel, entry, "appearance").unwrap_or("");
            let has_appearance = !appearance.trim().is_empty();
            match entry.get("descriptions") {
                Some(d) if !d.is_null() => {
                    if self.map(rel, d, "descriptions").is_some() {
                        self.keys(rel, d.as_map().unwrap_or(&[]), &["background", "long", "short", "solo"], false);
                        for f in ["solo", "long", "short", "background"] {
                            if d.get(f).is_none() {
                                self.missing(rel, d, f, "descriptions: ");
                            } else {
                                self.opt_str(rel, d, f);
                            }
                        }
                    }
                }
                _ if !has_appearance => self.missing(
                    rel,
                    entry,
                    "appearance",
                    "character needs complete 'descriptions' or a non-empty 'appearance': ",
                ),
                _ => {}
            }
            if let Some(c) = self.opt_str(rel, entry, "culture") {
                self.culture_ref(rel, entry.get("culture").unwrap(), c, cultures);
            }
        }
    }
}
