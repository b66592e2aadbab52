//! `validate-pack`: every check of the genre-pack contract, in one pass.
//!
//! The validator reads each file once into a positioned YAML tree
//! ([`crate::pack::yaml`]) and walks it with small typed helpers that report
//! problems instead of stopping at the first one. A file with a syntax error
//! is skipped for the schema checks; every other file is still checked.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;

use super::diag::{self, Code, Diagnostic, PackSummary, Report, Severity};
use super::probe::{Probe, ProbeCache};
use super::suggest;
use crate::pack::paths;
use crate::pack::yaml::{self, Node, Pos, Value, YamlProblem};
use crate::pack::{is_slug, resolve_in_pack, slugify, BUILTIN_MOODS, VARIATION_TYPES};
use crate::prompt::tokens;

/// Which rule set to apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// What sqm renders and plays.
    #[default]
    Media,
    /// Everything the game server's loader enforces as well.
    Server,
}

/// Options of one validation run.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub profile: Profile,
    /// Decode the first packet of every audio asset (`--no-decode` clears it).
    pub decode: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { profile: Profile::Media, decode: true }
    }
}

/// A pack found on the command line: its directory and how to print it.
#[derive(Clone, Debug)]
pub struct PackDir {
    pub root: PathBuf,
    /// The path as the user wrote it (joined with the pack name when the
    /// user named a directory of packs).
    pub display: String,
    pub name: String,
}

const GENRE_MARKERS: [&str; 4] = ["pack.yaml", "visual_style.yaml", "audio.yaml", "worlds"];

/// True when `dir` looks like a genre pack.
pub fn is_pack_dir(dir: &Path) -> bool {
    GENRE_MARKERS.iter().any(|m| dir.join(m).exists())
}

/// Expands one command-line path into packs. Errors are usage problems
/// (exit code 2) worded for the terminal.
pub fn discover(path: &Path) -> Result<Vec<PackDir>, String> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|_| format!("{shown}: no such directory"))?;
    if !meta.is_dir() {
        return Err(format!("{shown}: not a directory"));
    }
    let name_of = |p: &Path| {
        p.canonicalize()
            .ok()
            .and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| p.display().to_string())
    };
    if is_pack_dir(path) {
        return Ok(vec![PackDir { root: path.to_path_buf(), display: shown.clone(), name: name_of(path) }]);
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| format!("{shown}: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    if entries.is_empty() {
        // An explicitly named empty directory is an (empty) pack.
        return Ok(vec![PackDir { root: path.to_path_buf(), display: shown.clone(), name: name_of(path) }]);
    }
    entries.sort();
    let packs: Vec<PackDir> = entries
        .into_iter()
        .filter(|p| p.is_dir() && is_pack_dir(p))
        .map(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            PackDir { display: join_display(&shown, &name), root: p, name }
        })
        .collect();
    if packs.is_empty() {
        return Err(format!(
            "{shown}: no genre pack found (a pack holds pack.yaml, visual_style.yaml, audio.yaml or worlds/)"
        ));
    }
    Ok(packs)
}

fn join_display(base: &str, rel: &str) -> String {
    if base.ends_with('/') {
        format!("{base}{rel}")
    } else {
        format!("{base}/{rel}")
    }
}

/// Validates every pack in parallel and returns the sorted report.
pub fn validate_packs(packs: &[PackDir], opts: Options) -> Report {
    let cache = ProbeCache::default();
    let results: Vec<(PackSummary, Vec<Diagnostic>)> = packs
        .par_iter()
        .map(|p| {
            let diags = validate_pack(p, opts, &cache);
            let errors = diags.iter().filter(|d| d.severity == Severity::Error).count();
            let summary = PackSummary { path: p.display.clone(), errors, warnings: diags.len() - errors };
            (summary, diags)
        })
        .collect();
    let mut report = Report::default();
    for (summary, diags) in results {
        report.packs.push(summary);
        report.diagnostics.extend(diags);
    }
    diag::sort(&mut report.diagnostics);
    report
}

/// A full `cameras.yaml` with the built-ins and `name` replaced, so one
/// preset's `post` can be checked with the loader's own rules.
fn single_camera(name: &str, v: &Node) -> serde_json::Value {
    let mut all: serde_json::Map<String, serde_json::Value> = crate::prompt::cameras::PRESETS
        .iter()
        .map(|(n, p)| (n.to_string(), serde_json::json!({"prompt": p})))
        .collect();
    all.insert(name.to_owned(), v.to_json());
    serde_json::Value::Object(all)
}

/// Validates one pack.
pub fn validate_pack(pack: &PackDir, opts: Options, cache: &ProbeCache) -> Vec<Diagnostic> {
    let mut v = Validator {
        pack,
        opts,
        cache,
        canonical_root: pack.root.canonicalize().unwrap_or_else(|_| pack.root.clone()),
        diags: Vec::new(),
    };
    v.run();
    v.diags
}

struct Validator<'a> {
    pack: &'a PackDir,
    opts: Options,
    cache: &'a ProbeCache,
    canonical_root: PathBuf,
    diags: Vec<Diagnostic>,
}

/// Genre-level files the game server reads that sqm only syntax-checks.
const SERVER_GENRE_FILES: [&str; 15] = [
    "pack.yaml",
    "rules.yaml",
    "lore.yaml",
    "theme.yaml",
    "archetypes.yaml",
    "char_creation.yaml",
    "visual_style.yaml",
    "progression.yaml",
    "axes.yaml",
    "audio.yaml",
    "cultures.yaml",
    "prompts.yaml",
    "tropes.yaml",
    "visibility_baseline.yaml",
    "lethality_policy.yaml",
];
const SERVER_WORLD_FILES: [&str; 4] = ["world.yaml", "lore.yaml", "cartography.yaml", "openings.yaml"];

/// Style facts collected while walking, for cross-file checks.
#[derive(Default)]
struct GenreFacts {
    positive_suffix: Option<(String, Pos)>,
}

impl<'a> Validator<'a> {
    fn emit(&mut self, code: Code, severity: Severity, rel: &str, pos: Pos, message: String, hint: Option<String>) {
        self.diags.push(Diagnostic {
            code,
            severity,
            pack: self.pack.name.clone(),
            file: join_display(&self.pack.display, rel),
            line: pos.line,
            column: pos.column,
            message,
            hint,
        });
    }

    fn server(&self) -> bool {
        self.opts.profile == Profile::Server
    }

    fn run(&mut self) {
        let root = self.pack.root.clone();
        let is_empty = std::fs::read_dir(&root).map(|mut d| d.next().is_none()).unwrap_or(false);
        if is_empty {
            self.emit(
                Code::EmptyPack,
                Severity::Error,
                "",
                Pos::FILE,
                "the pack directory holds no files".into(),
                None,
            );
            // `file` for a dir-level diagnostic is the dir itself.
            if let Some(d) = self.diags.last_mut() {
                d.file = self.pack.display.clone();
            }
            return;
        }
        if !is_slug(&self.pack.name) {
            self.emit(
                Code::InvalidValue,
                Severity::Error,
                "",
                Pos::FILE,
                format!("pack directory name '{}' is not a valid slug", self.pack.name),
                Some("use lower-case letters, digits, '_' and '-', starting with a letter or digit".into()),
            );
            if let Some(d) = self.diags.last_mut() {
                d.file = self.pack.display.clone();
            }
        }

        let required: &[&str] =
            if self.server() { &SERVER_GENRE_FILES } else { &["pack.yaml", "visual_style.yaml", "audio.yaml"] };
        for f in required {
            if !root.join(f).exists() {
                self.emit(
                    Code::MissingFile,
                    Severity::Error,
                    f,
                    Pos::FILE,
                    format!("required file {f} is missing"),
                    None,
                );
            }
        }

        let mut checked: HashSet<String> = HashSet::new();
        let mut facts = GenreFacts::default();

        if let Some(node) = self.load("pack.yaml", &mut checked) {
            self.check_pack_yaml("pack.yaml", &node);
        }
        if let Some(node) = self.load("visual_style.yaml", &mut checked) {
            facts.positive_suffix = self.check_genre_style("visual_style.yaml", &node);
        }
        if let Some(node) = self.load("audio.yaml", &mut checked) {
            self.check_audio("audio.yaml", &node);
        }
        if let Some(node) = self.load("theme.yaml", &mut checked) {
            self.check_theme("theme.yaml", &node);
        } else if self.server() && !root.join("theme.yaml").exists() {
            // reported above as MISSING_FILE
        }
        if let Some(node) = self.load("places.yaml", &mut checked) {
            self.check_places("places.yaml", &node);
        }
        if let Some(node) = self.load("cameras.yaml", &mut checked) {
            self.check_cameras("cameras.yaml", &node);
        }
        if let Some(node) = self.load("recipes.yaml", &mut checked) {
            self.check_recipes("recipes.yaml", &node);
        }

        // Worlds.
        let worlds_dir = root.join("worlds");
        if worlds_dir.is_dir() {
            let mut worlds: Vec<String> = std::fs::read_dir(&worlds_dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            worlds.sort();
            for w in worlds {
                self.check_world(&w, &facts, &mut checked);
            }
        }

        // Every other YAML file gets the UTF-8 and syntax checks.
        let mut others: Vec<String> = walkdir::WalkDir::new(&root)
            .follow_links(false)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .filter(|e| matches!(e.path().extension().and_then(|x| x.to_str()), Some("yaml" | "yml")))
            .filter_map(|e| e.path().strip_prefix(&root).ok().map(rel_string))
            .filter(|rel| !checked.contains(rel))
            .collect();
        others.sort();
        for rel in others {
            self.load(&rel, &mut checked);
        }
    }

    /// Reads and parses a pack file. Returns `None` when the file is absent
    /// or unusable (the problem has been reported).
    fn load(&mut self, rel: &str, checked: &mut HashSet<String>) -> Option<Node> {
        checked.insert(rel.to_owned());
        let path = self.pack.root.join(rel);
        if std::fs::symlink_metadata(&path).is_err() {
            return None;
        }
        let read = paths::Root::new(&self.pack.root)
            .map_err(|source| paths::PathError::Io { raw: rel.to_owned(), source })
            .and_then(|root| root.read(Path::new(rel), paths::PACK_YAML_CAP));
        let bytes = match read {
            Ok(b) => b,
            Err(e) => {
                self.path_problem(rel, e);
                return None;
            }
        };
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let good = &bytes[..e.valid_up_to()];
                let good = std::str::from_utf8(good).unwrap_or("");
                let line = good.matches('\n').count() + 1;
                let column = good.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
                self.emit(
                    Code::InvalidUtf8,
                    Severity::Error,
                    rel,
                    Pos::new(line, column),
                    format!(
                        "the file is not valid UTF-8 (bad byte 0x{:02X} at offset {})",
                        bytes[e.valid_up_to()],
                        e.valid_up_to()
                    ),
                    Some("save the file as UTF-8".into()),
                );
                return None;
            }
        };
        let parsed = yaml::parse(text);
        for p in parsed.problems {
            match p {
                YamlProblem::Syntax { pos, message, hint } => self.emit(
                    Code::YamlSyntax,
                    Severity::Error,
                    rel,
                    pos,
                    format!("YAML syntax error: {message}"),
                    hint,
                ),
                YamlProblem::DuplicateKey { pos, key, first } => self.emit(
                    Code::DuplicateKey,
                    Severity::Error,
                    rel,
                    pos,
                    format!("duplicate key '{key}' (first defined on line {})", first.line),
                    None,
                ),
                YamlProblem::AliasLimit { pos } => self.emit(
                    Code::YamlAliasLimit,
                    Severity::Error,
                    rel,
                    pos,
                    format!(
                        "alias expansion exceeds the limit ({} nodes or {} bytes added by aliases)",
                        yaml::MAX_ALIAS_NODES,
                        yaml::MAX_ALIAS_BYTES
                    ),
                    Some("reuse anchors sparingly; nested aliases multiply the document's size".into()),
                ),
            }
        }
        parsed.root
    }

    /// Reports a file the containment rule refused.
    fn path_problem(&mut self, rel: &str, e: paths::PathError) {
        use paths::PathError as E;
        let (code, message, hint) = match e {
            E::Escapes { .. } => (
                Code::PathEscapesPack,
                "the file resolves outside the pack (a symlink or '..' leaves it)".to_owned(),
                Some("keep every pack file inside the pack; copy it instead of linking".to_owned()),
            ),
            E::NotRegular { .. } => (
                Code::NotARegularFile,
                "not a regular file (a FIFO, device, socket or folder)".to_owned(),
                Some("pack files must be plain files".to_owned()),
            ),
            E::TooLarge { cap, .. } => (
                Code::FileTooLarge,
                format!("the file is larger than the limit of {} MiB", cap >> 20),
                Some("split the file or trim it; pack YAML files are small".to_owned()),
            ),
            E::NotFound { .. } => (Code::FileUnreadable, "cannot read file: it vanished".to_owned(), None),
            E::Io { source, .. } => (Code::FileUnreadable, format!("cannot read file: {source}"), None),
        };
        self.emit(code, Severity::Error, rel, Pos::FILE, message, hint);
    }

    // ----- typed helpers -------------------------------------------------

    /// The entries of a mapping; null counts as an empty mapping. Any other
    /// type is a `SCHEMA_TYPE` error and yields `None`.
    fn map<'n>(&mut self, rel: &str, node: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
        match &node.value {
            Value::Map(m) => Some(m),
            Value::Null => Some(&[]),
            _ => {
                self.type_error(rel, node, what, "a mapping");
                None
            }
        }
    }

    /// The items of a list; null counts as empty.
    fn seq<'n>(&mut self, rel: &str, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(s) => Some(s),
            Value::Null => Some(&[]),
            _ => {
                self.type_error(rel, node, what, "a list");
                None
            }
        }
    }

    fn type_error(&mut self, rel: &str, node: &Node, what: &str, expected: &str) {
        self.emit(
            Code::SchemaType,
            Severity::Error,
            rel,
            node.pos,
            format!("{what} must be {expected}, got {}", node.type_name()),
            None,
        );
    }

    /// Reports unknown keys. Strict: every unknown key; lenient: only keys
    /// within distance 2 of a known one.
    fn keys(&mut self, rel: &str, entries: &[(Node, Node)], known: &[&str], strict: bool) {
        for (k, _) in entries {
            let Some(key) = k.key_text() else { continue };
            if known.contains(&key.as_str()) {
                continue;
            }
            let near = suggest::closest(&key, known);
            let (report, hint_key) = match near {
                Some((s, d)) if d <= 2 => (true, Some(s)),
                _ => (strict, None),
            };
            if !report {
                continue;
            }
            let severity = if strict && self.server() { Severity::Error } else { Severity::Warning };
            let message = match hint_key {
                Some(s) => format!("unknown key '{key}'; did you mean '{s}'?"),
                None => format!("unknown key '{key}'"),
            };
            let hint = if hint_key.is_none() { Some(format!("known keys: {}", known.join(", "))) } else { None };
            self.emit(Code::UnknownKey, severity, rel, k.pos, message, hint);
        }
    }

    /// `cameras.yaml` (composer-v2.md §3, §8): exactly the 17 presets,
    /// each `{prompt, post}`.
    fn check_cameras(&mut self, rel: &str, node: &Node) {
        let Some(entries) = self.map(rel, node, "cameras.yaml") else { return };
        let names: Vec<&str> = crate::prompt::cameras::PRESETS.iter().map(|(n, _)| *n).collect();
        for n in &names {
            if node.get(n).is_none() {
                self.emit(
                    Code::MissingField,
                    Severity::Error,
                    rel,
                    node.pos,
                    format!("camera preset '{n}' is missing"),
                    None,
                );
            }
        }
        for (k, v) in entries {
            let Some(key) = k.key_text() else { continue };
            if !names.contains(&key.as_str()) {
                let hint = suggest::closest(&key, &names)
                    .filter(|(_, d)| *d <= 3)
                    .map(|(s, _)| format!("did you mean '{s}'?"));
                self.emit(
                    Code::InvalidValue,
                    Severity::Error,
                    rel,
                    k.pos,
                    format!("unknown camera preset '{key}'"),
                    hint,
                );
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
                if let Err(e) = crate::prompt::cameras::parse_cameras(&single_camera(&key, v)) {
                    self.emit(Code::InvalidValue, Severity::Error, rel, post.pos, e, None);
                }
            }
        }
    }

    /// `recipes.yaml`: the three recipes, each with its six keys.
    fn check_recipes(&mut self, rel: &str, node: &Node) {
        let Some(entries) = self.map(rel, node, "recipes.yaml") else { return };
        const FIELDS: [&str; 6] =
            ["kind", "casting", "location", "direction_action", "direction_camera", "art_sensibility"];
        for name in ["portrait", "poi", "illustration"] {
            let Some(r) = node.get(name) else {
                self.emit(
                    Code::MissingField,
                    Severity::Error,
                    rel,
                    node.pos,
                    format!("recipe '{name}' is missing"),
                    None,
                );
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
                self.emit(
                    Code::InvalidValue,
                    Severity::Error,
                    rel,
                    k.pos,
                    format!("recipe '{name}': kind must be '{name}'"),
                    None,
                );
            }
            if let Some(c) = r.get("direction_camera") {
                let cam = c.as_str().unwrap_or("");
                if cam != "{camera}" && !crate::prompt::cameras::is_preset(cam) {
                    self.emit(
                        Code::InvalidValue,
                        Severity::Error,
                        rel,
                        c.pos,
                        format!("recipe '{name}': unknown camera preset '{cam}'"),
                        None,
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
                    self.emit(
                        Code::InvalidValue,
                        Severity::Error,
                        rel,
                        a.pos,
                        format!("recipe '{name}': unknown cascade layer(s) [{list}]"),
                        None,
                    );
                }
            }
        }
        for (k, _) in entries {
            if let Some(key) = k.key_text().filter(|key| !["portrait", "poi", "illustration"].contains(&key.as_str())) {
                self.emit(Code::UnknownKey, Severity::Error, rel, k.pos, format!("unknown recipe '{key}'"), None);
            }
        }
    }

    fn missing(&mut self, rel: &str, owner: &Node, field: &str, context: &str) {
        self.emit(
            Code::MissingField,
            Severity::Error,
            rel,
            owner.pos,
            format!("{context}required field '{field}' is missing"),
            None,
        );
    }

    /// An optional string field: `Some(text)` when present and a string,
    /// `None` when absent or null; wrong types are reported.
    fn opt_str<'n>(&mut self, rel: &str, map: &'n Node, key: &str) -> Option<&'n str> {
        let v = map.get(key)?;
        match &v.value {
            Value::Str(s) => Some(s),
            Value::Null => None,
            _ => {
                self.type_error(rel, v, key, "a string");
                None
            }
        }
    }

    /// A required string field.
    fn req_str<'n>(&mut self, rel: &str, map: &'n Node, key: &str, context: &str) -> Option<&'n str> {
        if map.get(key).is_none() {
            self.missing(rel, map, key, context);
            return None;
        }
        self.opt_str(rel, map, key)
    }

    fn opt_bool(&mut self, rel: &str, map: &Node, key: &str) {
        if let Some(v) = map.get(key) {
            if !matches!(v.value, Value::Bool(_) | Value::Null) {
                self.type_error(rel, v, key, "true or false");
            }
        }
    }

    fn opt_str_list(&mut self, rel: &str, map: &Node, key: &str) {
        if let Some(v) = map.get(key) {
            if let Some(items) = self.seq(rel, v, key) {
                for item in items {
                    if item.as_str().is_none() {
                        self.type_error(rel, item, &format!("each entry of {key}"), "a string");
                    }
                }
            }
        }
    }

    /// A number within `[lo, hi]`.
    fn ranged(&mut self, rel: &str, map: &Node, key: &str, lo: f64, hi: f64, expect: &str) -> Option<f64> {
        let v = map.get(key)?;
        if v.is_null() {
            return None;
        }
        let Some(x) = v.as_f64() else {
            self.type_error(rel, v, key, "a number");
            return None;
        };
        if !(lo..=hi).contains(&x) {
            self.emit(
                Code::InvalidValue,
                Severity::Error,
                rel,
                v.pos,
                format!("{key} must be {expect}, got {}", fmt_num(v)),
                None,
            );
            return None;
        }
        Some(x)
    }

    /// An integer ≥ 0.
    fn non_negative_int(&mut self, rel: &str, map: &Node, key: &str) {
        let Some(v) = map.get(key) else { return };
        match v.value {
            Value::Null => {}
            Value::Int(i) if i >= 0 => {}
            Value::Int(_) | Value::Float(_) => self.emit(
                Code::InvalidValue,
                Severity::Error,
                rel,
                v.pos,
                format!("{key} must be an integer ≥ 0, got {}", fmt_num(v)),
                None,
            ),
            _ => self.type_error(rel, v, key, "an integer ≥ 0"),
        }
    }

    // ----- assets ---------------------------------------------------------

    /// Checks an asset path named in `rel` (relative to that file's folder).
    fn asset(&mut self, rel: &str, node: &Node, what: &str) {
        let Some(raw) = node.as_str() else {
            if node.is_null() {
                self.emit(
                    Code::InvalidValue,
                    Severity::Error,
                    rel,
                    node.pos,
                    format!("{what} must be a non-empty path"),
                    None,
                );
            } else {
                self.type_error(rel, node, what, "a path string");
            }
            return;
        };
        if raw.trim().is_empty() {
            self.emit(
                Code::InvalidValue,
                Severity::Error,
                rel,
                node.pos,
                format!("{what} must be a non-empty path"),
                None,
            );
            return;
        }
        if raw.starts_with("http://") || raw.starts_with("https://") {
            self.emit(
                Code::AssetRemote,
                Severity::Warning,
                rel,
                node.pos,
                format!("remote asset {raw} is not checked and cannot be played by sqm"),
                Some("ship the file inside the pack and use a relative path".into()),
            );
            return;
        }
        let base = Path::new(rel).parent().unwrap_or(Path::new(""));
        let Some(in_pack) = resolve_in_pack(base, raw) else {
            self.emit(
                Code::PathEscapesPack,
                Severity::Error,
                rel,
                node.pos,
                format!("path {raw} leaves the pack"),
                Some("asset paths are relative to the YAML file and must stay inside the pack".into()),
            );
            return;
        };
        let full = self.pack.root.join(&in_pack);
        if std::fs::symlink_metadata(&full).is_err() {
            self.emit(Code::MissingAsset, Severity::Error, rel, node.pos, format!("file not found: {raw}"), None);
            return;
        }
        let canonical = match full.canonicalize() {
            Ok(c) => c,
            Err(_) => {
                self.emit(
                    Code::MissingAsset,
                    Severity::Error,
                    rel,
                    node.pos,
                    format!("file not found: {raw} (a symlink that points nowhere)"),
                    None,
                );
                return;
            }
        };
        if !canonical.starts_with(&self.canonical_root) {
            self.emit(
                Code::PathEscapesPack,
                Severity::Error,
                rel,
                node.pos,
                format!("path {raw} is a symlink that resolves outside the pack ({})", canonical.display()),
                Some("copy the file into the pack instead of linking to it".into()),
            );
            return;
        }
        if !canonical.is_file() {
            self.emit(Code::MissingAsset, Severity::Error, rel, node.pos, format!("not a file: {raw}"), None);
            return;
        }
        if !self.opts.decode {
            return;
        }
        match self.cache.probe(&canonical) {
            Probe::Ok { .. } => {}
            Probe::Unsupported(why) => {
                self.emit(Code::AssetUnsupported, Severity::Warning, rel, node.pos, format!("{raw}: {why}"), None)
            }
            Probe::Undecodable(why) => {
                self.emit(Code::AssetUndecodable, Severity::Error, rel, node.pos, format!("{raw}: {why}"), None)
            }
        }
    }

    // ----- genre files ----------------------------------------------------

    fn check_pack_yaml(&mut self, rel: &str, root: &Node) {
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

    fn check_players(&mut self, rel: &str, rp: &Node) {
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
                self.emit(
                    Code::InvalidValue,
                    Severity::Error,
                    rel,
                    pos,
                    format!("recommended_players.min must be ≥ 1, got {m}"),
                    None,
                );
            }
        }
        if let (Some((lo, _)), Some((hi, pos))) = (min, max) {
            if hi < lo {
                self.emit(
                    Code::InvalidValue,
                    Severity::Error,
                    rel,
                    pos,
                    format!("recommended_players.max must be ≥ min ({lo}), got {hi}"),
                    None,
                );
            }
        }
        if let (Some((lo, _)), Some((hi, _)), Some((s, pos))) = (min, max, sweet) {
            if s < lo || s > hi {
                self.emit(
                    Code::InvalidValue,
                    Severity::Error,
                    rel,
                    pos,
                    format!("recommended_players.sweet_spot must be within [{lo}, {hi}], got {s}"),
                    None,
                );
            }
        }
    }

    /// Genre visual style. Returns the positive suffix when usable.
    fn check_genre_style(&mut self, rel: &str, root: &Node) -> Option<(String, Pos)> {
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
                self.emit(
                    Code::PreferredModelUnknown,
                    Severity::Warning,
                    rel,
                    pos,
                    format!(
                        "preferred_model '{pm}' is not one of dev, schnell, flux, zimage; the default model is used"
                    ),
                    None,
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
                            self.emit(
                                Code::OverrideKeyCase,
                                Severity::Warning,
                                rel,
                                k.pos,
                                format!("visual_tag_overrides key '{key}' has upper-case letters and can never match"),
                                Some(format!("write it as '{}'", key.to_lowercase())),
                            );
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
    fn style_suffix(&mut self, rel: &str, root: &Node, legacy_hint: Option<&str>) -> Option<(String, Pos)> {
        match root.get("positive_suffix") {
            Some(v) => match &v.value {
                Value::Str(s) if !s.trim().is_empty() => return Some((s.clone(), v.pos)),
                Value::Str(_) | Value::Null => self.emit(
                    Code::EmptyStyle,
                    Severity::Error,
                    rel,
                    v.pos,
                    "positive_suffix is missing or empty".into(),
                    None,
                ),
                _ => self.type_error(rel, v, "positive_suffix", "a string"),
            },
            None => self.emit(
                Code::EmptyStyle,
                Severity::Error,
                rel,
                Pos::FILE,
                "positive_suffix is missing or empty".into(),
                legacy_hint.map(str::to_owned),
            ),
        }
        None
    }

    fn check_audio(&mut self, rel: &str, root: &Node) {
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
                self.emit(
                    Code::UnknownKey,
                    Severity::Error,
                    rel,
                    k.pos,
                    "key 'variation_types' is not allowed in the server profile".into(),
                    Some("the game server rejects this key".into()),
                );
            }
        }

        // mood_tracks
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
        let track_set: HashSet<&str> = track_moods.iter().map(|(m, _)| m.as_str()).collect();

        // mood_keywords
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

        // mood_aliases
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
        let reached = self.check_aliases(rel, &aliases, &track_set);

        // sfx_library
        if let Some(sfx) = root.get("sfx_library") {
            if let Some(items) = self.map(rel, sfx, "sfx_library") {
                for (k, v) in items {
                    let id = k.key_text().unwrap_or_default();
                    let what = format!("sfx_library.{id}");
                    if let Some(paths) = self.seq(rel, v, &what) {
                        if paths.is_empty() {
                            self.emit(
                                Code::InvalidValue,
                                Severity::Error,
                                rel,
                                k.pos,
                                format!("sfx_library '{id}' must list at least one file, got an empty list"),
                                None,
                            );
                        }
                        for p in paths {
                            self.asset(rel, p, &format!("each path of {what}"));
                        }
                    }
                }
            }
        }

        // themes
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
                                        self.emit(
                                            Code::UnknownVariationType,
                                            Severity::Warning,
                                            rel,
                                            pos,
                                            format!(
                                                "variation type '{t}' is not one of {}; it weighs 1.0",
                                                VARIATION_TYPES.join(", ")
                                            ),
                                            None,
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

        // faction_themes
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

        // Reachability of moods that have music.
        let alias_keys: HashSet<&str> = aliases.iter().map(|(k, _, _)| k.as_str()).collect();
        let mut reported: HashSet<String> = HashSet::new();
        for (mood, pos) in track_moods.iter().chain(theme_moods.iter()) {
            let reachable = BUILTIN_MOODS.contains(&mood.as_str())
                || keyword_moods.contains(mood)
                || alias_keys.contains(mood.as_str())
                || reached.contains(mood);
            if !reachable && reported.insert(mood.clone()) {
                self.emit(
                    Code::UnreachableMood,
                    Severity::Warning,
                    rel,
                    *pos,
                    format!("mood '{mood}' has music but nothing can select it"),
                    Some(format!("add mood_keywords.{mood} or an alias such as '{mood}_alias: {mood}' that the interpreter can emit")),
                );
            }
        }
    }

    fn check_track(&mut self, rel: &str, t: &Node, what: &str) {
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

    fn check_mixer(&mut self, rel: &str, m: &Node, what: &str, server: bool) {
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
                    self.emit(
                        Code::UnknownKey,
                        Severity::Error,
                        rel,
                        k.pos,
                        format!("key 'mixer.{key}' is not allowed in the server profile"),
                        Some(format!(
                            "the game server rejects this key; remove it from packs the server loads (sqm then uses its default, {})",
                            if key == "duck_amount_db" { "-12 dB" } else { "-16 LUFS" }
                        )),
                    );
                }
            }
        }
    }

    /// The alias load check of audio.md §4. Returns the moods that some
    /// valid alias chain reaches.
    fn check_aliases(
        &mut self,
        rel: &str,
        aliases: &[(String, String, Pos)],
        tracks: &HashSet<&str>,
    ) -> HashSet<String> {
        let map: HashMap<&str, &str> = aliases.iter().map(|(k, v, _)| (k.as_str(), v.as_str())).collect();
        let mut reached = HashSet::new();
        for (start, first, pos) in aliases {
            if tracks.contains(start.as_str()) {
                self.emit(
                    Code::AliasShadowed,
                    Severity::Warning,
                    rel,
                    *pos,
                    format!("alias '{start}' is also a mood_tracks key, so the alias is never used"),
                    None,
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
                    self.emit(
                        Code::MoodAliasCycle,
                        Severity::Error,
                        rel,
                        *pos,
                        format!("alias chain starting at '{start}' loops at '{cur}'"),
                        None,
                    );
                    break;
                }
                let Some(next) = map.get(cur) else {
                    self.emit(
                        Code::MoodAliasBroken,
                        Severity::Error,
                        rel,
                        *pos,
                        format!("alias chain starting at '{start}' ends at '{cur}', which is neither a mood_tracks key nor an alias"),
                        None,
                    );
                    break;
                };
                hops += 1;
                if hops > 5 {
                    self.emit(
                        Code::MoodAliasTooDeep,
                        Severity::Error,
                        rel,
                        *pos,
                        format!("alias chain starting at '{start}' is longer than 5 links"),
                        None,
                    );
                    break;
                }
                seen.insert(cur);
                cur = next;
            }
        }
        reached
    }

    fn check_theme(&mut self, rel: &str, root: &Node) {
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
                    self.emit(
                        Code::InvalidValue,
                        Severity::Warning,
                        rel,
                        pos,
                        format!("{c} should be a colour like #rgb, #rrggbb or #rrggbbaa, got '{colour}'"),
                        None,
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

    fn check_places(&mut self, rel: &str, root: &Node) {
        let Some(places) = self.map(rel, root, "places.yaml") else { return };
        for (k, place) in places {
            let slug = k.key_text().unwrap_or_default();
            if !is_loose_slug(&slug) {
                self.emit(
                    Code::InvalidValue,
                    Severity::Error,
                    rel,
                    k.pos,
                    format!("place slug '{slug}' must match [a-z0-9_-]+"),
                    Some(format!("try '{}'", slugify(&slug))),
                );
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
                            self.emit(
                                Code::ArchetypeHasLandmark,
                                Severity::Error,
                                rel,
                                pos,
                                format!("archetypal place '{slug}' has a landmark.{f}; archetypes have no landmark"),
                                Some("move the text to environment or description, or make it a point of interest in a world's history.yaml".into()),
                            );
                        }
                    }
                }
            }
        }
    }

    // ----- worlds -----------------------------------------------------------

    fn check_world(&mut self, world: &str, facts: &GenreFacts, checked: &mut HashSet<String>) {
        self.check_world_inner(world, facts, checked);
        self.check_cast_budget(world);
    }

    /// `CAST_OVER_BUDGET`: a character whose background text plus the genre
    /// and world suffixes exceeds the 512-token budget can never be drawn
    /// by composer v2 (only worlds with their own visual_style.yaml use it).
    fn check_cast_budget(&mut self, world: &str) {
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
            self.emit(
                Code::CastOverBudget,
                Severity::Warning,
                &rel,
                Pos::FILE,
                format!("character '{key}': its background description plus the genre and world styles estimate {total} tokens, over the 512 budget; it can never be drawn"),
                Some("shorten descriptions.background (or the positive_suffix texts)".into()),
            );
        }
    }

    fn check_world_inner(&mut self, world: &str, facts: &GenreFacts, checked: &mut HashSet<String>) {
        let dir = format!("worlds/{world}");
        let world_root = self.pack.root.join(&dir);
        if !is_slug(world) {
            self.emit(
                Code::InvalidValue,
                Severity::Error,
                &dir,
                Pos::FILE,
                format!("world directory name '{world}' is not a valid slug"),
                Some("use lower-case letters, digits, '_' and '-'".into()),
            );
        }
        let required: &[&str] = if self.server() { &SERVER_WORLD_FILES } else { &["world.yaml"] };
        for f in required {
            if !world_root.join(f).exists() {
                self.emit(
                    Code::MissingFile,
                    Severity::Error,
                    &format!("{dir}/{f}"),
                    Pos::FILE,
                    format!("required file {dir}/{f} is missing"),
                    None,
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
                let legacy =
                    node.get("style_prompt").map(|_| "rename the legacy key 'style_prompt' to 'positive_suffix'");
                if let Some((world_suffix, pos)) = self.style_suffix(&rel, &node, legacy) {
                    if let Some((genre_suffix, _)) = &facts.positive_suffix {
                        let combined = format!("{genre_suffix}, {world_suffix}");
                        let t = tokens::tok(&combined);
                        if t >= 460 {
                            self.emit(
                                Code::StyleTruncated,
                                Severity::Warning,
                                &rel,
                                pos,
                                format!("genre plus world positive_suffix is about {t} tokens (≥ 460); the composer will cut it"),
                                Some("shorten the style so that narrative detail keeps room in the 512-token prompt".into()),
                            );
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

    fn check_world_yaml(&mut self, rel: &str, root: &Node, world: &str, pois: Option<&HashSet<String>>) {
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
                self.emit(
                    Code::SlugMismatch,
                    Severity::Warning,
                    rel,
                    pos,
                    format!("slug '{slug}' differs from the directory name '{world}'"),
                    None,
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
                self.emit(
                    Code::UnresolvedRef,
                    Severity::Error,
                    rel,
                    pos,
                    format!("cover_poi '{cover}' names no point of interest in history.yaml"),
                    hint,
                );
            }
        }
    }

    /// Returns the set of POI slugs.
    fn check_history(&mut self, rel: &str, root: &Node, cultures: &HashSet<String>) -> HashSet<String> {
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
                            self.emit(
                                Code::DuplicateId,
                                Severity::Error,
                                rel,
                                pos,
                                format!("point of interest slug '{id}' is already used on line {}", first.line),
                                None,
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
                        Value::Str(_) => self.emit(
                            Code::SchemaType,
                            Severity::Error,
                            rel,
                            b.pos,
                            format!("{block} must be a mapping, got a string"),
                            Some(format!("migrate to '{block}: {{solo: …, backdrop: …}}'")),
                        ),
                        _ => self.type_error(rel, b, block, "a mapping"),
                    }
                }
                if !has_visual {
                    self.emit(
                        Code::PoiNoVisual,
                        Severity::Warning,
                        rel,
                        poi.pos,
                        "point of interest has no visual_prompt or environment text, so it cannot be drawn".into(),
                        None,
                    );
                }
            }
        }
        slugs.into_keys().collect()
    }

    fn culture_ref(&mut self, rel: &str, node: &Node, culture: &str, cultures: &HashSet<String>) {
        if culture.is_empty() || cultures.contains(culture) || cultures.contains(&slugify(culture)) {
            return;
        }
        self.emit(
            Code::CultureNotFound,
            Severity::Warning,
            rel,
            node.pos,
            format!("culture '{culture}' has no cultures/{}.yaml in this world", slugify(culture)),
            None,
        );
    }

    // Not collapsible: a `descriptions` that is not a mapping must not fall
    // through to the "needs an appearance" arm.
    #[allow(clippy::collapsible_match)]
    fn check_portraits(&mut self, rel: &str, root: &Node, cultures: &HashSet<String>) {
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
                        self.emit(
                            Code::DuplicateId,
                            Severity::Error,
                            rel,
                            pos,
                            format!("character slug '{s}' is already used on line {}", first.line),
                            None,
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

fn rel_string(p: &Path) -> String {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `[a-z0-9_-]+`
fn is_loose_slug(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn is_hex_colour(s: &str) -> bool {
    s.strip_prefix('#').is_some_and(|h| matches!(h.len(), 3 | 6 | 8) && h.chars().all(|c| c.is_ascii_hexdigit()))
}

fn fmt_num(n: &Node) -> String {
    match n.value {
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_resolution_stays_inside() {
        assert_eq!(resolve_in_pack(Path::new(""), "audio/x.ogg"), Some(PathBuf::from("audio/x.ogg")));
        assert_eq!(resolve_in_pack(Path::new("worlds/w"), "../../audio/x.ogg"), Some(PathBuf::from("audio/x.ogg")));
        assert_eq!(resolve_in_pack(Path::new(""), "../../etc/passwd"), None);
        assert_eq!(resolve_in_pack(Path::new(""), "/etc/passwd"), None);
        assert_eq!(resolve_in_pack(Path::new("worlds/w"), "../../../x"), None);
    }

    #[test]
    fn slugs_and_colours() {
        assert!(is_slug("ashfall"));
        assert!(is_slug("a-b_c1"));
        assert!(!is_slug("-a"));
        assert!(!is_slug("Ashfall"));
        assert!(is_hex_colour("#fff"));
        assert!(is_hex_colour("#a0b1c2ff"));
        assert!(!is_hex_colour("red"));
        assert!(!is_hex_colour("#abcd"));
    }
}
