//! A YAML document tree that remembers where every node came from.
//!
//! Pack diagnostics must point at `file:line:column`, and serde-based YAML
//! loaders throw positions away. This module drives `yaml-rust2`'s event
//! parser and builds a small tree of [`Node`]s, each carrying its 1-based line
//! and character column. Along the way it notices the problems a content
//! author makes that a plain loader would silently accept or reject without
//! context: duplicate mapping keys, tab indentation, multiple documents.
//!
//! Scalars are resolved with the YAML 1.2 core schema (the one the game
//! server's loader uses): `null`/`~`/empty → null, `true`/`false` → bool,
//! decimal/hex/octal integers, floats including `.inf` and `.nan`.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in a source file. Both fields are 1-based; `column` counts
/// characters, not bytes. `line == 0` means "the whole file".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub const FILE: Pos = Pos { line: 0, column: 0 };

    pub fn new(line: usize, column: usize) -> Self {
        Pos { line, column }
    }
}

/// One node of a parsed YAML document.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

/// The resolved content of a node.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys keep file order. Keys are nodes so their positions are known.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A short name for the node's type, used in `SCHEMA_TYPE` messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub(crate) fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// Numeric view (ints widen to f64).
    pub fn as_f64(&self) -> Option<f64> {
        match self.value {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    /// Looks up `key` in a mapping node. Keys that are not strings are
    /// compared by their scalar text.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.key_text().as_deref() == Some(key)).map(|(_, v)| v)
    }

    /// The text of a scalar used as a mapping key (`1`, `true` and `null`
    /// keys become their spelling, as a YAML-to-JSON bridge would do).
    pub(crate) fn key_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null => Some("null".to_owned()),
            _ => None,
        }
    }

    /// Converts to JSON so that serde types can be deserialized from the
    /// same tree the validator walks.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => {
                J::Object(entries.iter().filter_map(|(k, v)| Some((k.key_text()?, v.to_json()))).collect())
            }
        }
    }
}

/// A problem found while reading YAML text.
#[derive(Clone, Debug, PartialEq)]
pub enum YamlProblem {
    /// The text is not valid YAML (or not a single document).
    Syntax { pos: Pos, message: String, hint: Option<String> },
    /// A mapping key appears twice. `first` is where it was first seen.
    DuplicateKey { pos: Pos, key: String, first: Pos },
    /// Expanding the alias at `pos` would grow the document past the
    /// budget ([`MAX_ALIAS_NODES`] nodes or [`MAX_ALIAS_BYTES`] bytes of
    /// text added by aliases): the "billion laughs" attack.
    AliasLimit { pos: Pos },
}

/// Nodes that alias expansion may add to one document.
pub(crate) const MAX_ALIAS_NODES: usize = 100_000;
/// Bytes of scalar text that alias expansion may add to one document.
pub(crate) const MAX_ALIAS_BYTES: usize = 16 * 1024 * 1024;
/// Deepest nesting of lists and mappings accepted.
pub(crate) const MAX_DEPTH: usize = 256;
/// Most nodes one document may hold, aliases included.
pub(crate) const MAX_NODES: usize = 2_000_000;

impl fmt::Display for YamlProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            YamlProblem::Syntax { pos, message, .. } => write!(f, "{}:{}: {message}", pos.line, pos.column),
            YamlProblem::DuplicateKey { pos, key, first } => {
                write!(f, "{}:{}: duplicate key '{key}' (first defined on line {})", pos.line, pos.column, first.line)
            }
            YamlProblem::AliasLimit { pos } => write!(
                f,
                "{}:{}: alias expansion exceeds the limit ({MAX_ALIAS_NODES} nodes or {MAX_ALIAS_BYTES} bytes)",
                pos.line, pos.column
            ),
        }
    }
}

/// The result of parsing one YAML file: the root node (absent when the text
/// has a syntax error) and every problem noticed.
#[derive(Debug)]
pub struct Parsed {
    pub root: Option<Node>,
    pub problems: Vec<YamlProblem>,
}

/// Parses `text` (already decoded, BOM stripped) into a positioned tree.
///
/// Tab indentation and multiple documents are reported as syntax problems and
/// yield no root, so schema checks skip the file. Duplicate keys are reported
/// but the tree is still returned (the first occurrence wins).
pub fn parse(text: &str) -> Parsed {
    if let Some(pos) = find_tab_indent(text) {
        return Parsed {
            root: None,
            problems: vec![YamlProblem::Syntax {
                pos,
                message: "tab character used for indentation".to_owned(),
                hint: Some("tabs are not allowed for indentation; use spaces".to_owned()),
            }],
        };
    }
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(err) = parser.load(&mut builder, true) {
        let m = err.marker();
        let pos = Pos::new(m.line().max(1), m.col() + 1);
        return Parsed {
            root: None,
            problems: vec![YamlProblem::Syntax { pos, message: err.info().to_owned(), hint: None }],
        };
    }
    if builder.aborted {
        return Parsed { root: None, problems: builder.problems };
    }
    if let Some(pos) = builder.extra_document {
        builder.problems.push(YamlProblem::Syntax {
            pos,
            message: "more than one YAML document in this file".to_owned(),
            hint: Some("a pack file holds exactly one document; remove the extra '---'".to_owned()),
        });
        return Parsed { root: None, problems: builder.problems };
    }
    let root = builder.root.unwrap_or(Node { value: Value::Null, pos: Pos::new(1, 1) });
    Parsed { root: Some(root), problems: builder.problems }
}

/// Returns the position of the first tab found in a line's indentation
/// (leading whitespace). Tabs elsewhere (inside values) are legal YAML.
fn find_tab_indent(text: &str) -> Option<Pos> {
    for (i, line) in text.lines().enumerate() {
        for (col, ch) in line.chars().enumerate() {
            match ch {
                ' ' => continue,
                '\t' => {
                    // A line made only of whitespace is harmless.
                    if line.trim().is_empty() {
                        break;
                    }
                    return Some(Pos::new(i + 1, col + 1));
                }
                _ => break,
            }
        }
    }
    None
}

/// Collects parser events into a tree.
#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, (Node, Weight)>,
    problems: Vec<YamlProblem>,
    /// What aliases have added so far.
    expanded: Weight,
    /// Nodes built so far (aliases included).
    nodes: usize,
    /// A budget was exceeded: further events are ignored and no tree is
    /// returned.
    aborted: bool,
    documents: usize,
    extra_document: Option<Pos>,
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
        seen: HashMap<String, Pos>,
        skip_value: bool,
    },
}

fn pos_of(mark: Marker) -> Pos {
    Pos::new(mark.line(), mark.col() + 1)
}

/// The size of a subtree: its nodes and the bytes of its scalar text.
#[derive(Clone, Copy, Debug, Default)]
struct Weight {
    nodes: usize,
    bytes: usize,
}

impl Weight {
    fn of(node: &Node) -> Weight {
        let mut w = Weight { nodes: 1, bytes: 0 };
        match &node.value {
            Value::Str(s) => w.bytes = s.len(),
            Value::Seq(items) => items.iter().for_each(|n| w.add(Weight::of(n))),
            Value::Map(entries) => entries.iter().for_each(|(k, v)| {
                w.add(Weight::of(k));
                w.add(Weight::of(v));
            }),
            _ => {}
        }
        w
    }

    fn add(&mut self, other: Weight) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

impl Builder {
    /// Stops building with `problem`.
    fn abort(&mut self, problem: YamlProblem) {
        if !self.aborted {
            self.aborted = true;
            self.problems.push(problem);
            self.stack.clear();
            self.anchors.clear();
        }
    }

    fn finish(&mut self, node: Node, anchor: usize) {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            let message = format!("the document holds more than {MAX_NODES} nodes");
            return self.abort(YamlProblem::Syntax { pos: node.pos, message, hint: None });
        }
        if anchor > 0 {
            // Anchored subtrees are weighed once here (their size is bounded
            // by the text and the alias budget), so an alias costs O(1) to
            // check.
            let w = Weight::of(&node);
            self.anchors.insert(anchor, (node.clone(), w));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, pending_key, seen, skip_value, .. }) => match pending_key.take() {
                None => {
                    // This node is a key. Check for duplicates now, while
                    // both positions are known.
                    if let Some(text) = node.key_text() {
                        if let Some(first) = seen.get(&text) {
                            self.problems.push(YamlProblem::DuplicateKey { pos: node.pos, key: text, first: *first });
                            *skip_value = true;
                        } else {
                            seen.insert(text, node.pos);
                            *skip_value = false;
                        }
                    }
                    *pending_key = Some(node);
                }
                Some(key) => {
                    if !*skip_value {
                        entries.push((key, node));
                    }
                    *skip_value = false;
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.aborted {
            return;
        }
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents == 2 && self.extra_document.is_none() {
                    self.extra_document = Some(pos_of(mark));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let value = resolve_scalar(text, style, tag.as_ref());
                self.finish(Node { value, pos: pos_of(mark) }, anchor);
            }
            Event::Alias(id) => {
                let pos = pos_of(mark);
                let node = match self.anchors.get(&id) {
                    None => Node { value: Value::Null, pos },
                    Some((n, w)) => {
                        let mut after = self.expanded;
                        after.add(*w);
                        if after.nodes > MAX_ALIAS_NODES || after.bytes > MAX_ALIAS_BYTES {
                            return self.abort(YamlProblem::AliasLimit { pos });
                        }
                        self.expanded = after;
                        self.nodes = self.nodes.saturating_add(w.nodes.saturating_sub(1));
                        Node { value: n.value.clone(), pos }
                    }
                };
                self.finish(node, 0);
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                let message = format!("lists and mappings nest deeper than {MAX_DEPTH} levels");
                self.abort(YamlProblem::Syntax { pos: pos_of(mark), message, hint: None });
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Frame::Seq { pos: pos_of(mark), anchor, items: Vec::new() });
            }
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                pos: pos_of(mark),
                anchor,
                entries: Vec::new(),
                pending_key: None,
                seen: HashMap::new(),
                skip_value: false,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { pos, anchor, items }) => (Node { value: Value::Seq(items), pos }, anchor),
                    Some(Frame::Map { pos, anchor, entries, .. }) => {
                        // The parser marks a block mapping after its first
                        // key; authors expect the mapping to start at it.
                        let pos = entries.first().map_or(pos, |(k, _)| k.pos.min(pos));
                        (Node { value: Value::Map(entries), pos }, anchor)
                    }
                    None => return,
                };
                self.finish(node, anchor);
            }
            _ => {}
        }
    }
}

fn resolve_scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Value {
    if let Some(tag) = tag {
        // Explicit `!!str` keeps the text as written.
        if tag.suffix == "str" {
            return Value::Str(text);
        }
    }
    if style != TScalarStyle::Plain {
        return Value::Str(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(i) = parse_int(&text) {
        return Value::Int(i);
    }
    if looks_like_float(&text) {
        if let Ok(f) = text.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(text)
}

fn parse_int(text: &str) -> Option<i64> {
    if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    if let Some(oct) = text.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok();
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// YAML 1.2 core float: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`.
fn looks_like_float(text: &str) -> bool {
    let s = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => {
            (!a.is_empty() || !b.is_empty())
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|c| c.is_ascii_digit()),
    };
    let exponent_ok = match exponent {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit())
        }
    };
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> Node {
        let parsed = parse(text);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        parsed.root.unwrap()
    }

    #[test]
    fn positions_are_one_based_character_columns() {
        let r = root("a: 1\nbé: \n  cé: ünï\n");
        let (k, v) = &r.as_map().unwrap()[0];
        assert_eq!((k.pos, v.pos), (Pos::new(1, 1), Pos::new(1, 4)));
        let inner = r.get("bé").unwrap();
        let (k2, v2) = &inner.as_map().unwrap()[0];
        assert_eq!(k2.pos, Pos::new(3, 3));
        assert_eq!(v2.pos, Pos::new(3, 7));
        assert_eq!(v2.as_str(), Some("ünï"));
    }

    #[test]
    fn core_schema_scalars() {
        let r = root("a: ~\nb: true\nc: -5\nd: 0.25\ne: '7'\nf: 1e3\ng: .inf\nh: hello\ni: 0x1F\n");
        assert!(r.get("a").unwrap().is_null());
        assert_eq!(r.get("b").unwrap().value, Value::Bool(true));
        assert_eq!(r.get("c").unwrap().value, Value::Int(-5));
        assert_eq!(r.get("d").unwrap().value, Value::Float(0.25));
        assert_eq!(r.get("e").unwrap().value, Value::Str("7".into()));
        assert_eq!(r.get("f").unwrap().value, Value::Float(1000.0));
        assert_eq!(r.get("g").unwrap().value, Value::Float(f64::INFINITY));
        assert_eq!(r.get("h").unwrap().value, Value::Str("hello".into()));
        assert_eq!(r.get("i").unwrap().value, Value::Int(31));
    }

    #[test]
    fn duplicate_keys_are_reported_with_both_lines() {
        let parsed = parse("name: a\nversion: 1\nname: b\n");
        assert_eq!(
            parsed.problems,
            vec![YamlProblem::DuplicateKey { pos: Pos::new(3, 1), key: "name".into(), first: Pos::new(1, 1) }]
        );
        assert_eq!(parsed.root.unwrap().get("name").unwrap().as_str(), Some("a"));
    }

    #[test]
    fn tabs_in_indentation_are_syntax_errors() {
        let parsed = parse("a:\n\tb: 1\n");
        assert!(parsed.root.is_none());
        match &parsed.problems[0] {
            YamlProblem::Syntax { pos, hint, .. } => {
                assert_eq!(*pos, Pos::new(2, 1));
                assert!(hint.as_deref().unwrap().contains("tabs are not allowed"));
            }
            other => panic!("{other:?}"),
        }
        // A tab inside a value is fine.
        assert!(parse("a: \"x\ty\"\n").problems.is_empty());
    }

    #[test]
    fn multiple_documents_are_rejected() {
        let parsed = parse("a: 1\n---\nb: 2\n");
        assert!(parsed.root.is_none());
        assert!(matches!(&parsed.problems[0], YamlProblem::Syntax { pos, .. } if pos.line == 2));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let parsed = parse("a: [1, 2\nb: 3\n");
        assert!(parsed.root.is_none());
        assert!(matches!(&parsed.problems[0], YamlProblem::Syntax { pos, .. } if pos.line >= 1));
    }

    #[test]
    fn crlf_lines_match_lf_lines() {
        let lf = root("a:\n  b: 1\n  c: x\n");
        let crlf = root("a:\r\n  b: 1\r\n  c: x\r\n");
        assert_eq!(lf, crlf);
    }

    #[test]
    fn empty_text_is_a_null_document() {
        assert!(root("").is_null());
        assert!(root("# only a comment\n").is_null());
    }

    #[test]
    fn aliases_resolve_to_their_anchor() {
        let r = root("base: &b {x: 1}\ncopy: *b\n");
        assert_eq!(r.get("copy").unwrap().get("x").unwrap().value, Value::Int(1));
    }

    #[test]
    fn billion_laughs_stops_at_the_budget() {
        let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let started = std::time::Instant::now();
        let parsed = parse(&text);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert!(parsed.root.is_none());
        match parsed.problems.as_slice() {
            // Lines 2-4 add 12 330 nodes; a4 (line 5) holds ten aliases of
            // a3 (11 111 nodes each): its eighth takes the total past 100 000.
            [YamlProblem::AliasLimit { pos }] => assert_eq!(*pos, Pos::new(5, 10 + 7 * 5), "the alias past the budget"),
            other => panic!("{other:?}"),
        }
        // Moderate reuse stays legal.
        assert!(parse("a: &x [1, 2]\nb: [*x, *x, *x]\n").problems.is_empty());
    }

    #[test]
    fn long_strings_through_aliases_count_by_bytes() {
        let big = "x".repeat(1 << 20);
        let refs = vec!["*s"; 20].join(", ");
        let parsed = parse(&format!("s: &s {big}\nl: [{refs}]\n"));
        assert!(matches!(parsed.problems.as_slice(), [YamlProblem::AliasLimit { .. }]), "{:?}", parsed.problems);
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let parsed = parse(&text);
        assert!(parsed.root.is_none());
        assert!(matches!(&parsed.problems[0], YamlProblem::Syntax { .. }), "{:?}", parsed.problems);
    }

    #[test]
    fn to_json_keeps_order_and_types() {
        let r = root("z: 1\na: [x, 2.5, null]\n");
        assert_eq!(r.to_json().to_string(), r#"{"z":1,"a":["x",2.5,null]}"#);
    }
}
