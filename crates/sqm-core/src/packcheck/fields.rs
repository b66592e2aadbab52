//! The validator's field readers: typed access to a YAML map that reports
//! a wrong type, a missing key or an out-of-range number and goes on.

use super::diag::{Code, Severity};
use super::suggest;
use super::validate::{fmt_num, Validator};
use crate::pack::yaml::{Node, Value};

impl Validator<'_> {
    /// The entries of a mapping; null counts as an empty mapping. Any other
    /// type is a `SCHEMA_TYPE` error and yields `None`.
    pub(super) fn map<'n>(&mut self, rel: &str, node: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
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
    pub(super) fn seq<'n>(&mut self, rel: &str, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(s) => Some(s),
            Value::Null => Some(&[]),
            _ => {
                self.type_error(rel, node, what, "a list");
                None
            }
        }
    }

    pub(super) fn type_error(&mut self, rel: &str, node: &Node, what: &str, expected: &str) {
        self.error(Code::SchemaType, rel, node.pos, format!("{what} must be {expected}, got {}", node.type_name()));
    }

    /// Reports unknown keys. Strict: every unknown key; lenient: only keys
    /// within distance 2 of a known one.
    pub(super) fn keys(&mut self, rel: &str, entries: &[(Node, Node)], known: &[&str], strict: bool) {
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
            self.report(severity, Code::UnknownKey, rel, k.pos, message).hint_opt(hint);
        }
    }

    pub(super) fn missing(&mut self, rel: &str, owner: &Node, field: &str, context: &str) {
        self.error(Code::MissingField, rel, owner.pos, format!("{context}required field '{field}' is missing"));
    }

    /// An optional string field: `Some(text)` when present and a string,
    /// `None` when absent or null; wrong types are reported.
    pub(super) fn opt_str<'n>(&mut self, rel: &str, map: &'n Node, key: &str) -> Option<&'n str> {
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
    pub(super) fn req_str<'n>(&mut self, rel: &str, map: &'n Node, key: &str, context: &str) -> Option<&'n str> {
        if map.get(key).is_none() {
            self.missing(rel, map, key, context);
            return None;
        }
        self.opt_str(rel, map, key)
    }

    pub(super) fn opt_bool(&mut self, rel: &str, map: &Node, key: &str) {
        if let Some(v) = map.get(key) {
            if !matches!(v.value, Value::Bool(_) | Value::Null) {
                self.type_error(rel, v, key, "true or false");
            }
        }
    }

    pub(super) fn opt_str_list(&mut self, rel: &str, map: &Node, key: &str) {
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
    pub(super) fn ranged(&mut self, rel: &str, map: &Node, key: &str, lo: f64, hi: f64, expect: &str) -> Option<f64> {
        let v = map.get(key)?;
        if v.is_null() {
            return None;
        }
        let Some(x) = v.as_f64() else {
            self.type_error(rel, v, key, "a number");
            return None;
        };
        if !(lo..=hi).contains(&x) {
            self.error(Code::InvalidValue, rel, v.pos, format!("{key} must be {expect}, got {}", fmt_num(v)));
            return None;
        }
        Some(x)
    }

    /// An integer ≥ 0.
    pub(super) fn non_negative_int(&mut self, rel: &str, map: &Node, key: &str) {
        let Some(v) = map.get(key) else { return };
        match v.value {
            Value::Null => {}
            Value::Int(i) if i >= 0 => {}
            Value::Int(_) | Value::Float(_) => {
                self.error(Code::InvalidValue, rel, v.pos, format!("{key} must be an integer ≥ 0, got {}", fmt_num(v)));
            }
            _ => self.type_error(rel, v, key, "an integer ≥ 0"),
        }
    }
}
