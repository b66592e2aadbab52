//! Pack diagnostics: stable codes, severities, positions, and the three
//! output formats of `sqm validate-pack` (human, json, github).

use std::fmt::Write as _;

use serde::Serialize;

use crate::pack::yaml::Pos;

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// Every diagnostic code `validate-pack` can emit. The string form (see
/// [`Code::as_str`]) is part of the stable JSON contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    MissingFile,
    FileUnreadable,
    InvalidUtf8,
    YamlSyntax,
    DuplicateKey,
    SchemaType,
    MissingField,
    InvalidValue,
    UnknownKey,
    MissingAsset,
    AssetUndecodable,
    AssetUnsupported,
    AssetRemote,
    PathEscapesPack,
    MoodAliasCycle,
    MoodAliasBroken,
    MoodAliasTooDeep,
    AliasShadowed,
    UnreachableMood,
    UnknownVariationType,
    DuplicateId,
    EmptyStyle,
    StyleTruncated,
    OverrideKeyCase,
    PreferredModelUnknown,
    ArchetypeHasLandmark,
    PoiNoVisual,
    CultureNotFound,
    UnresolvedRef,
    SlugMismatch,
    EmptyPack,
    CastOverBudget,
    NotARegularFile,
    FileTooLarge,
    YamlAliasLimit,
    LoraFormat,
    LoraLegacy,
    LoraExcludeUnknown,
    LoraNoEffect,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        use Code::*;
        match self {
            MissingFile => "MISSING_FILE",
            FileUnreadable => "FILE_UNREADABLE",
            InvalidUtf8 => "INVALID_UTF8",
            YamlSyntax => "YAML_SYNTAX",
            DuplicateKey => "DUPLICATE_KEY",
            SchemaType => "SCHEMA_TYPE",
            MissingField => "MISSING_FIELD",
            InvalidValue => "INVALID_VALUE",
            UnknownKey => "UNKNOWN_KEY",
            MissingAsset => "MISSING_ASSET",
            AssetUndecodable => "ASSET_UNDECODABLE",
            AssetUnsupported => "ASSET_UNSUPPORTED",
            AssetRemote => "ASSET_REMOTE",
            PathEscapesPack => "PATH_ESCAPES_PACK",
            MoodAliasCycle => "MOOD_ALIAS_CYCLE",
            MoodAliasBroken => "MOOD_ALIAS_BROKEN",
            MoodAliasTooDeep => "MOOD_ALIAS_TOO_DEEP",
            AliasShadowed => "ALIAS_SHADOWED",
            UnreachableMood => "UNREACHABLE_MOOD",
            UnknownVariationType => "UNKNOWN_VARIATION_TYPE",
            DuplicateId => "DUPLICATE_ID",
            EmptyStyle => "EMPTY_STYLE",
            StyleTruncated => "STYLE_TRUNCATED",
            OverrideKeyCase => "OVERRIDE_KEY_CASE",
            PreferredModelUnknown => "PREFERRED_MODEL_UNKNOWN",
            ArchetypeHasLandmark => "ARCHETYPE_HAS_LANDMARK",
            PoiNoVisual => "POI_NO_VISUAL",
            CultureNotFound => "CULTURE_NOT_FOUND",
            UnresolvedRef => "UNRESOLVED_REF",
            SlugMismatch => "SLUG_MISMATCH",
            EmptyPack => "EMPTY_PACK",
            CastOverBudget => "CAST_OVER_BUDGET",
            NotARegularFile => "NOT_A_REGULAR_FILE",
            FileTooLarge => "FILE_TOO_LARGE",
            YamlAliasLimit => "YAML_ALIAS_LIMIT",
            LoraFormat => "LORA_FORMAT",
            LoraLegacy => "LORA_LEGACY",
            LoraExcludeUnknown => "LORA_EXCLUDE_UNKNOWN",
            LoraNoEffect => "LORA_NO_EFFECT",
        }
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One finding, located in a file of a pack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    /// The pack's directory name.
    pub pack: String,
    /// The path as given on the command line joined with the in-pack path.
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    /// Adds a "what to do" line.
    pub(crate) fn hint(&mut self, hint: impl Into<String>) -> &mut Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a hint when there is one.
    pub(crate) fn hint_opt(&mut self, hint: Option<String>) -> &mut Self {
        self.hint = hint;
        self
    }

    pub fn pos(&self) -> Pos {
        Pos::new(self.line, self.column)
    }

    fn sort_key(&self) -> (&str, &str, usize, usize, &'static str, &str) {
        (&self.pack, &self.file, self.line, self.column, self.code.as_str(), &self.message)
    }
}

/// Sorts diagnostics by pack, file, line, column, code (then message, so
/// the order is total and output is reproducible).
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
}

/// Summary of one validated pack, as reported in the JSON format.
#[derive(Clone, Debug, Serialize)]
pub struct PackSummary {
    pub path: String,
    pub errors: usize,
    pub warnings: usize,
}

/// The result of a whole `validate-pack` run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub packs: Vec<PackSummary>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error).count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Warning).count()
    }

    fn summary_line(&self) -> String {
        format!("{} pack(s) checked: {} error(s), {} warning(s)", self.packs.len(), self.errors(), self.warnings())
    }

    /// `<file>:<line>:<col>: <severity>[<CODE>]: <message>` lines, hints
    /// indented below, and a closing summary line.
    pub fn to_human(&self) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            if d.line == 0 {
                let _ = write!(out, "{}", d.file);
            } else {
                let _ = write!(out, "{}:{}:{}", d.file, d.line, d.column);
            }
            let _ = writeln!(out, ": {}[{}]: {}", d.severity.as_str(), d.code.as_str(), d.message);
            if let Some(hint) = &d.hint {
                let _ = writeln!(out, "  hint: {hint}");
            }
        }
        out.push_str(&self.summary_line());
        out.push('\n');
        out
    }

    /// One JSON document, version 1.
    pub fn to_json(&self) -> String {
        let doc = serde_json::json!({
            "version": 1,
            "summary": {"packs": self.packs.len(), "errors": self.errors(), "warnings": self.warnings()},
            "packs": self.packs,
            "diagnostics": self.diagnostics,
        });
        let mut s = serde_json::to_string(&doc).expect("diagnostics serialize");
        s.push('\n');
        s
    }

    /// GitHub Actions workflow commands, then a plain summary line.
    pub fn to_github(&self) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            let _ = write!(out, "::{} file={}", d.severity.as_str(), escape_property(&d.file));
            if d.line != 0 {
                let _ = write!(out, ",line={},col={}", d.line, d.column);
            }
            let _ = writeln!(out, ",title={}::{}", d.code.as_str(), escape_data(&d.message));
        }
        out.push_str(&self.summary_line());
        out.push('\n');
        out
    }
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(line: usize, message: &str, hint: Option<&str>) -> Diagnostic {
        Diagnostic {
            code: Code::InvalidValue,
            severity: Severity::Error,
            pack: "ashfall".into(),
            file: "ashfall/audio.yaml".into(),
            line,
            column: if line == 0 { 0 } else { 10 },
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }

    #[test]
    fn human_format() {
        let report = Report {
            packs: vec![PackSummary { path: "ashfall".into(), errors: 2, warnings: 0 }],
            diagnostics: vec![
                diag(7, "bpm must be an integer ≥ 0, got -5", Some("use 0 when unknown")),
                diag(0, "whole file", None),
            ],
        };
        assert_eq!(
            report.to_human(),
            "ashfall/audio.yaml:7:10: error[INVALID_VALUE]: bpm must be an integer ≥ 0, got -5\n  hint: use 0 when unknown\nashfall/audio.yaml: error[INVALID_VALUE]: whole file\n1 pack(s) checked: 2 error(s), 0 warning(s)\n"
        );
    }

    #[test]
    fn github_format_escapes() {
        let report = Report { packs: vec![], diagnostics: vec![diag(7, "100% bad\nreally", None), diag(0, "f", None)] };
        let out = report.to_github();
        let mut lines = out.lines();
        assert_eq!(
            lines.next(),
            Some("::error file=ashfall/audio.yaml,line=7,col=10,title=INVALID_VALUE::100%25 bad%0Areally")
        );
        assert_eq!(lines.next(), Some("::error file=ashfall/audio.yaml,title=INVALID_VALUE::f"));
        assert_eq!(escape_property("a:b,c"), "a%3Ab%2Cc");
    }

    #[test]
    fn json_format_fields() {
        let report = Report {
            packs: vec![PackSummary { path: "ashfall".into(), errors: 1, warnings: 0 }],
            diagnostics: vec![diag(7, "m", None)],
        };
        let v: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["summary"]["errors"], 1);
        assert_eq!(
            v["diagnostics"][0].to_string(),
            r#"{"code":"INVALID_VALUE","severity":"error","pack":"ashfall","file":"ashfall/audio.yaml","line":7,"column":10,"message":"m","hint":null}"#
        );
    }
}
