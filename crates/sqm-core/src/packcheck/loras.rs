//! `loras` in `visual_style.yaml` (conditioning.md §1.2): the genre's list
//! and a world's `{exclude, add}`, each entry's fields and file, and the
//! four `LORA_*` diagnostics.

use std::path::Path;

use super::diag::Code;
use super::validate::Validator;
use crate::pack::paths::{PathError, Root};
use crate::pack::yaml::{Node, Value};

/// Tier names an `applies_to` entry routes to (the reference's
/// `tactical_map` and `encounter` route nowhere).
fn routes(tier: &str) -> bool {
    matches!(tier, "all" | "scene" | "portrait") || crate::interpret::Tier::parse(tier).is_some()
}

impl Validator<'_> {
    /// The genre's `loras` list, or the legacy `lora`/`lora_scale`/
    /// `lora_trigger`. Returns the entries' names for the worlds' checks.
    pub(super) fn check_genre_loras(&mut self, rel: &str, root: &Node) -> Vec<String> {
        let legacy = root.get("lora").filter(|n| !n.is_null());
        let list = root.get("loras").filter(|n| !n.is_null());
        if let Some(l) = legacy {
            let both = list.is_some();
            let message = if both {
                "the legacy key 'lora' beside 'loras': the two cannot be combined"
            } else {
                "the legacy keys lora/lora_scale/lora_trigger (ADR-032) make one LoRA for every tier"
            };
            let d = if both {
                self.error(Code::LoraLegacy, rel, l.pos, message)
            } else {
                self.warn(Code::LoraLegacy, rel, l.pos, message)
            };
            d.hint("write a 'loras' list: [{name, file, scale, applies_to, trigger}]");
            match l.as_str() {
                Some(file) if !both => self.check_lora_file(rel, l, file, Path::new("")),
                Some(_) => {}
                None => self.type_error(rel, l, "lora", "a string"),
            }
        }
        let Some(list) = list else { return Vec::new() };
        let Some(items) = self.seq(rel, list, "loras") else { return Vec::new() };
        let mut names: Vec<String> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(name) = self.check_lora_entry(rel, item, &format!("loras[{i}]"), Path::new("")) {
                if names.contains(&name) {
                    let n = item.get("name").unwrap_or(item);
                    self.error(Code::DuplicateId, rel, n.pos, format!("loras[{i}]: name '{name}' is used twice"));
                }
                names.push(name);
            }
        }
        names
    }

    /// A world's `loras`: a mapping `{exclude, add}` over the genre's list.
    pub(super) fn check_world_loras(&mut self, rel: &str, root: &Node, world_dir: &str, genre: &[String]) {
        let Some(node) = root.get("loras").filter(|n| !n.is_null()) else { return };
        if matches!(node.value, Value::Seq(_)) {
            self.error(Code::SchemaType, rel, node.pos, "a world's loras must be a mapping {exclude, add}, got a list")
                .hint("the genre's list is inherited; name entries to drop under 'exclude' and new ones under 'add'");
            return;
        }
        let Some(entries) = self.map(rel, node, "loras") else { return };
        self.keys(rel, entries, &["exclude", "add"], true);
        let mut excluded: Vec<String> = Vec::new();
        if let Some(ex) = node.get("exclude") {
            if let Some(items) = self.seq(rel, ex, "loras.exclude") {
                for item in items {
                    match item.as_str() {
                        Some(name) if genre.iter().any(|g| g == name) => excluded.push(name.to_owned()),
                        Some(name) => {
                            self.warn(
                                Code::LoraExcludeUnknown,
                                rel,
                                item.pos,
                                format!("loras.exclude names '{name}', which the genre does not define"),
                            );
                        }
                        None => self.type_error(rel, item, "each loras.exclude entry", "a string"),
                    }
                }
            }
        }
        if let Some(add) = node.get("add") {
            if let Some(items) = self.seq(rel, add, "loras.add") {
                for (i, item) in items.iter().enumerate() {
                    let Some(name) = self.check_lora_entry(rel, item, &format!("loras.add[{i}]"), Path::new(world_dir))
                    else {
                        continue;
                    };
                    if genre.contains(&name) && !excluded.contains(&name) {
                        let n = item.get("name").unwrap_or(item);
                        self.error(
                            Code::InvalidValue,
                            rel,
                            n.pos,
                            format!("loras.add[{i}]: '{name}' is still inherited from the genre; exclude it first"),
                        );
                    }
                }
            }
        }
    }

    /// One entry's fields and file; returns its name when it has one.
    fn check_lora_entry(&mut self, rel: &str, item: &Node, at: &str, base: &Path) -> Option<String> {
        let entries = self.map(rel, item, at)?;
        self.keys(rel, entries, &["name", "file", "scale", "applies_to", "trigger"], true);
        for f in ["name", "file", "scale", "applies_to"] {
            if item.get(f).is_none_or(Node::is_null) {
                self.missing(rel, item, f, &format!("{at}: "));
            }
        }
        let name = self.opt_str(rel, item, "name").map(str::to_owned);
        self.opt_str(rel, item, "trigger");
        if let Some(s) = item.get("scale").filter(|n| !n.is_null()) {
            match s.value {
                Value::Int(_) | Value::Float(_) => {
                    let v = match s.value {
                        Value::Int(n) => n as f64,
                        Value::Float(f) => f,
                        _ => unreachable!("matched above"),
                    };
                    if !(v.is_finite() && (0.0..=2.0).contains(&v)) {
                        self.error(Code::InvalidValue, rel, s.pos, format!("{at}: scale must be in [0, 2], got {v}"));
                    } else if v == 0.0 {
                        self.warn(Code::LoraNoEffect, rel, s.pos, format!("{at}: scale 0 applies nothing"));
                    }
                }
                _ => self.type_error(rel, s, &format!("{at}: scale"), "a number"),
            }
        }
        if let Some(a) = item.get("applies_to").filter(|n| !n.is_null()) {
            if let Some(tiers) = self.seq(rel, a, &format!("{at}: applies_to")) {
                let names: Vec<&str> = tiers.iter().filter_map(Node::as_str).collect();
                if tiers.is_empty() {
                    self.error(Code::InvalidValue, rel, a.pos, format!("{at}: applies_to is empty"));
                } else if !names.iter().any(|t| routes(t)) {
                    self.warn(
                        Code::LoraNoEffect,
                        rel,
                        a.pos,
                        format!("{at}: applies_to [{}] routes to no image tier", names.join(", ")),
                    )
                    .hint("use all, landscape, scene, portrait, portrait_square, cartography or text_overlay");
                }
            }
        }
        if let Some(f) = item.get("file").filter(|n| !n.is_null()) {
            match f.as_str() {
                Some(file) => self.check_lora_file(rel, f, file, base),
                None => self.type_error(rel, f, &format!("{at}: file"), "a string"),
            }
        }
        name
    }

    /// The file of an entry: a `.safetensors` inside the pack (relative to
    /// the YAML's folder `base`), else in `--lora-dir`; its keys in a
    /// format sqm merges.
    fn check_lora_file(&mut self, rel: &str, node: &Node, file: &str, base: &Path) {
        let p = Path::new(file);
        if !p.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("safetensors")) {
            self.error(Code::InvalidValue, rel, node.pos, format!("'{file}': only .safetensors LoRA files are loaded"))
                .hint("pickle formats (.ckpt, .pt, .bin) can run code; convert the LoRA to safetensors");
            return;
        }
        if p.is_absolute() {
            self.error(Code::PathEscapesPack, rel, node.pos, format!("'{file}' is an absolute path"))
                .hint("name the file relative to this YAML's folder, inside the genre pack");
            return;
        }
        let in_pack = Root::new(&self.pack.root).ok().map(|r| r.resolve(&base.join(p)));
        let found = match in_pack {
            Some(Ok(path)) => Some(path),
            Some(Err(PathError::Escapes { .. })) => {
                self.error(Code::PathEscapesPack, rel, node.pos, format!("'{file}' resolves outside the genre pack"))
                    .hint(
                        "keep LoRA files inside the pack, or name them plainly and pass their folder with --lora-dir",
                    );
                return;
            }
            _ => self.opts.lora_dir.as_deref().and_then(|d| Root::new(d).ok()?.resolve(p).ok()),
        };
        let Some(path) = found else {
            self.error(Code::MissingAsset, rel, node.pos, format!("LoRA file not found: {file}"))
                .hint("put it in the pack, or pass the folder that holds it with --lora-dir");
            return;
        };
        match crate::render::lora::header_keys(&path) {
            Ok(keys) => {
                if let Err(problem) = crate::render::lora::key_format(&keys) {
                    self.error(Code::LoraFormat, rel, node.pos, format!("'{file}': {problem}"));
                }
            }
            Err(problem) => {
                self.error(Code::LoraFormat, rel, node.pos, format!("'{file}': {problem}"));
            }
        }
    }
}
