//! `validate-pack`: every check of the genre-pack contract, in one pass.
//!
//! The validator reads each file once into a positioned YAML tree
//! ([`crate::pack::yaml`]) and walks it with small typed helpers that report
//! problems instead of stopping at the first one. A file with a syntax error
//! is skipped for the schema checks; every other file is still checked.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;

use super::diag::{self, Code, Diagnostic, PackSummary, Report, Severity};
use super::probe::ProbeCache;
use crate::pack::is_slug;
use crate::pack::paths;
use crate::pack::yaml::{self, Node, Pos, Value, YamlProblem};

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
#[derive(Clone, Debug)]
pub struct Options {
    pub profile: Profile,
    /// Decode the first packet of every audio asset (`--no-decode` clears it).
    pub decode: bool,
    /// `--lora-dir`: where pack LoRA files outside the pack may live.
    pub lora_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options { profile: Profile::Media, decode: true, lora_dir: None }
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

/// Why a command-line path names no pack: a usage problem (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("{0}: no such directory")]
    Missing(String),
    #[error("{0}: not a directory")]
    NotDirectory(String),
    #[error("{path}: {source}")]
    Unreadable { path: String, source: std::io::Error },
    #[error("{0}: no genre pack found (a pack holds pack.yaml, visual_style.yaml, audio.yaml or worlds/)")]
    NoPack(String),
}

/// Expands one command-line path into packs.
pub fn discover(path: &Path) -> Result<Vec<PackDir>, DiscoverError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|_| DiscoverError::Missing(shown.clone()))?;
    if !meta.is_dir() {
        return Err(DiscoverError::NotDirectory(shown));
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
        .map_err(|source| DiscoverError::Unreadable { path: shown.clone(), source })?
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
        return Err(DiscoverError::NoPack(shown));
    }
    Ok(packs)
}

pub(super) fn join_display(base: &str, rel: &str) -> String {
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
            let diags = validate_pack(p, opts.clone(), &cache);
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
pub(super) fn single_camera(name: &str, v: &Node) -> serde_json::Value {
    let mut all: serde_json::Map<String, serde_json::Value> = crate::pack::direction::PRESETS
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

pub(super) struct Validator<'a> {
    pub(super) pack: &'a PackDir,
    pub(super) opts: Options,
    pub(super) cache: &'a ProbeCache,
    pub(super) canonical_root: PathBuf,
    pub(super) diags: Vec<Diagnostic>,
}

/// Genre-level files the game server reads that sqm only syntax-checks.
pub(super) const SERVER_GENRE_FILES: [&str; 15] = [
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
pub(super) const SERVER_WORLD_FILES: [&str; 4] = ["world.yaml", "lore.yaml", "cartography.yaml", "openings.yaml"];

/// Style facts collected while walking, for cross-file checks.
#[derive(Default)]
pub(super) struct GenreFacts {
    pub(super) positive_suffix: Option<(String, Pos)>,
    /// The genre's LoRA names, for the worlds' `exclude`/`add`.
    pub(super) lora_names: Vec<String>,
}

impl<'a> Validator<'a> {
    /// Records a problem and returns it, for an optional `.hint(…)`.
    pub(super) fn report(
        &mut self,
        severity: Severity,
        code: Code,
        rel: &str,
        pos: Pos,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diags.push(Diagnostic {
            code,
            severity,
            pack: self.pack.name.clone(),
            file: join_display(&self.pack.display, rel),
            line: pos.line,
            column: pos.column,
            message: message.into(),
            hint: None,
        });
        self.diags.last_mut().expect("just pushed")
    }

    /// Records an error at `rel:pos`.
    pub(super) fn error(&mut self, code: Code, rel: &str, pos: Pos, message: impl Into<String>) -> &mut Diagnostic {
        self.report(Severity::Error, code, rel, pos, message)
    }

    /// Records a warning at `rel:pos`.
    pub(super) fn warn(&mut self, code: Code, rel: &str, pos: Pos, message: impl Into<String>) -> &mut Diagnostic {
        self.report(Severity::Warning, code, rel, pos, message)
    }

    pub(super) fn server(&self) -> bool {
        self.opts.profile == Profile::Server
    }

    pub(super) fn run(&mut self) {
        let root = self.pack.root.clone();
        let is_empty = std::fs::read_dir(&root).map(|mut d| d.next().is_none()).unwrap_or(false);
        if is_empty {
            self.error(Code::EmptyPack, "", Pos::FILE, "the pack directory holds no files");
            // `file` for a dir-level diagnostic is the dir itself.
            if let Some(d) = self.diags.last_mut() {
                d.file = self.pack.display.clone();
            }
            return;
        }
        if !is_slug(&self.pack.name) {
            self.error(
                Code::InvalidValue,
                "",
                Pos::FILE,
                format!("pack directory name '{}' is not a valid slug", self.pack.name),
            )
            .hint("use lower-case letters, digits, '_' and '-', starting with a letter or digit");
            if let Some(d) = self.diags.last_mut() {
                d.file = self.pack.display.clone();
            }
        }

        let required: &[&str] =
            if self.server() { &SERVER_GENRE_FILES } else { &["pack.yaml", "visual_style.yaml", "audio.yaml"] };
        for f in required {
            if !root.join(f).exists() {
                self.error(Code::MissingFile, f, Pos::FILE, format!("required file {f} is missing"));
            }
        }

        let mut checked: HashSet<String> = HashSet::new();
        let mut facts = GenreFacts::default();

        if let Some(node) = self.load("pack.yaml", &mut checked) {
            self.check_pack_yaml("pack.yaml", &node);
        }
        if let Some(node) = self.load("visual_style.yaml", &mut checked) {
            facts.positive_suffix = self.check_genre_style("visual_style.yaml", &node);
            facts.lora_names = self.check_genre_loras("visual_style.yaml", &node);
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
    pub(super) fn load(&mut self, rel: &str, checked: &mut HashSet<String>) -> Option<Node> {
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
                self.error(
                    Code::InvalidUtf8,
                    rel,
                    Pos::new(line, column),
                    format!(
                        "the file is not valid UTF-8 (bad byte 0x{:02X} at offset {})",
                        bytes[e.valid_up_to()],
                        e.valid_up_to()
                    ),
                )
                .hint("save the file as UTF-8");
                return None;
            }
        };
        let parsed = yaml::parse(text);
        for p in parsed.problems {
            match p {
                YamlProblem::Syntax { pos, message, hint } => {
                    self.error(Code::YamlSyntax, rel, pos, format!("YAML syntax error: {message}")).hint_opt(hint);
                }
                YamlProblem::DuplicateKey { pos, key, first } => {
                    let message = format!("duplicate key '{key}' (first defined on line {})", first.line);
                    self.error(Code::DuplicateKey, rel, pos, message);
                }
                YamlProblem::AliasLimit { pos } => {
                    let (nodes, bytes) = (yaml::MAX_ALIAS_NODES, yaml::MAX_ALIAS_BYTES);
                    let message =
                        format!("alias expansion exceeds the limit ({nodes} nodes or {bytes} bytes added by aliases)");
                    self.error(Code::YamlAliasLimit, rel, pos, message)
                        .hint("reuse anchors sparingly; nested aliases multiply the document's size");
                }
            }
        }
        parsed.root
    }

    /// Reports a file the containment rule refused.
    pub(super) fn path_problem(&mut self, rel: &str, e: paths::PathError) {
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
        self.error(code, rel, Pos::FILE, message).hint_opt(hint);
    }

    // ----- typed helpers -------------------------------------------------

    // ----- assets ---------------------------------------------------------

    // ----- genre files ----------------------------------------------------

    // ----- worlds -----------------------------------------------------------

    // Not collapsible: a `descriptions` that is not a mapping must not fall
    // through to the "needs an appearance" arm.
}

pub(super) fn rel_string(p: &Path) -> String {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `[a-z0-9_-]+`
pub(super) fn is_loose_slug(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

pub(super) fn is_hex_colour(s: &str) -> bool {
    s.strip_prefix('#').is_some_and(|h| matches!(h.len(), 3 | 6 | 8) && h.chars().all(|c| c.is_ascii_hexdigit()))
}

pub(super) fn fmt_num(n: &Node) -> String {
    match n.value {
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::resolve_in_pack;

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
