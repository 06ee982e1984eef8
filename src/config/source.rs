//! The file as written: a format-independent tree of spanned nodes.
//!
//! TOML and YAML are both parsed into [`Node`]s, which keep the byte span of every key
//! and value. Everything after this module sees one shape, so both formats get the same
//! checks and the same located errors. This module parses text; it never reads files.

use std::collections::HashMap;

use compact_str::CompactString;
use std::ops::Range;

use crate::diagnostic::{Code, Diagnostic, Pointer, Segment, Target};

/// The file formats stowage reads, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Yaml,
}

impl Format {
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub span: Range<usize>,
    pub value: NodeValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Integer(i64),
    /// An integer beyond i64, as written: no key takes one, and saying "a string"
    /// would mislead.
    LargeInteger(CompactString),
    Float(f64),
    String(CompactString),
    /// TOML dates and times: kept as text; no key of the format takes one.
    Datetime(CompactString),
    List(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: CompactString,
    pub key_span: Range<usize>,
    pub value: Node,
}

impl NodeValue {
    /// How a type appears in messages: "a string", "a table".
    pub fn describe(&self) -> &'static str {
        match self {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Integer(_) => "an integer",
            NodeValue::LargeInteger(_) => "an integer too large to read",
            NodeValue::Float(_) => "a float",
            NodeValue::String(_) => "a string",
            NodeValue::Datetime(_) => "a date-time",
            NodeValue::List(_) => "a list",
            NodeValue::Map(_) => "a table",
        }
    }
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            NodeValue::Map(entries) => entries.iter().find(|entry| entry.key == key),
            _ => None,
        }
    }
}

/// Parses `text` in `format`. Syntax errors come back as diagnostics with spans; a
/// document that could not be read at all has no tree.
pub fn parse(text: &str, format: Format) -> (Option<Node>, Vec<Diagnostic>) {
    match format {
        Format::Toml => parse_toml(text),
        Format::Yaml => parse_yaml(text),
    }
}

fn parse_toml(text: &str) -> (Option<Node>, Vec<Diagnostic>) {
    super::toml_tree::read(text)
}

fn parse_yaml(text: &str) -> (Option<Node>, Vec<Diagnostic>) {
    match serde_saphyr::from_str::<serde_saphyr::Spanned<yaml::Raw>>(text) {
        Ok(root) => {
            let line_starts = line_starts(text);
            let node = yaml::convert(&root, text, &line_starts);
            // An empty YAML document is an empty table, as an empty TOML file is.
            let node = match node.value {
                NodeValue::Null => Node {
                    span: 0..text.len(),
                    value: NodeValue::Map(Vec::new()),
                },
                _ => node,
            };
            let mut diagnostics = Vec::new();
            yaml::refuse_reinterpreted(&node, text, &mut diagnostics);
            (Some(node), diagnostics)
        }
        Err(error) => {
            let line_starts = line_starts(text);
            let span = error
                .location()
                .map(|location| {
                    let start = yaml::offset_of(&location, text, &line_starts);
                    start..start
                })
                .unwrap_or(0..0);
            let message = yaml::message(&error);
            let diagnostic = Diagnostic::error(Code::Parse, message)
                .label("here")
                .with_span(span);
            (None, vec![diagnostic])
        }
    }
}

/// A parser's message as stowage words its own: no capital, no full stop.
pub(super) fn clean_message(message: &str) -> String {
    let message = message.trim().trim_end_matches('.');
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "invalid syntax".to_string(),
    }
}

mod yaml {
    //! serde-saphyr gives spans through its `Spanned` wrapper; `Raw` is the untyped tree
    //! that collects them, converted to [`Node`] with byte offsets.
    use super::{Entry, Node, NodeValue};
    use crate::diagnostic::{Code, Diagnostic};
    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_saphyr::{Location, Spanned};

    pub(super) enum Raw {
        Null,
        Bool(bool),
        Integer(i64),
        LargeInteger(String),
        Float(f64),
        String(String),
        List(Vec<Spanned<Raw>>),
        Map(Vec<(Spanned<String>, Spanned<Raw>)>),
    }

    impl<'de> Deserialize<'de> for Raw {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Raw, D::Error> {
            deserializer.deserialize_any(RawVisitor)
        }
    }

    struct RawVisitor;

    impl<'de> Visitor<'de> for RawVisitor {
        type Value = Raw;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any YAML value")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
            Ok(Raw::Null)
        }
        fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
            Ok(Raw::Null)
        }
        fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Raw, D::Error> {
            Raw::deserialize(deserializer)
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Raw, E> {
            Ok(Raw::Bool(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
            Ok(Raw::Integer(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
            Ok(match i64::try_from(v) {
                Ok(v) => Raw::Integer(v),
                Err(_) => Raw::LargeInteger(v.to_string()),
            })
        }
        fn visit_i128<E: de::Error>(self, v: i128) -> Result<Raw, E> {
            Ok(match i64::try_from(v) {
                Ok(v) => Raw::Integer(v),
                Err(_) => Raw::LargeInteger(v.to_string()),
            })
        }
        fn visit_u128<E: de::Error>(self, v: u128) -> Result<Raw, E> {
            Ok(match i64::try_from(v) {
                Ok(v) => Raw::Integer(v),
                Err(_) => Raw::LargeInteger(v.to_string()),
            })
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
            Ok(Raw::Float(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
            Ok(Raw::String(v.to_string()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Raw, E> {
            Ok(Raw::String(v))
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Raw, E> {
            Ok(Raw::String(String::from_utf8_lossy(v).into_owned()))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(Raw::List(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
            let mut entries = Vec::new();
            while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
                let value = map.next_value()?;
                let key = Spanned::new(key.value.0, key.referenced, key.defined);
                entries.push((key, value));
            }
            Ok(Raw::Map(entries))
        }
    }

    /// A mapping key as text: YAML allows `1: x` or `true: x`, which name keys "1" and
    /// "true" here, as they would in TOML.
    struct KeyText(String);

    impl<'de> Deserialize<'de> for KeyText {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<KeyText, D::Error> {
            let raw = Raw::deserialize(deserializer)?;
            let text = match raw {
                Raw::Null => "null".to_string(),
                Raw::Bool(b) => b.to_string(),
                Raw::Integer(i) => i.to_string(),
                Raw::LargeInteger(i) => i.clone(),
                Raw::Float(f) => f.to_string(),
                Raw::String(s) => s,
                Raw::List(_) | Raw::Map(_) => {
                    return Err(de::Error::custom("a mapping key must be a plain value"));
                }
            };
            Ok(KeyText(text))
        }
    }

    pub(super) fn offset_of(location: &Location, text: &str, line_starts: &[usize]) -> usize {
        if let Some(offset) = location.span().byte_offset() {
            return (offset as usize).min(text.len());
        }
        // Fall back to line and character column.
        let line = (location.line() as usize).saturating_sub(1);
        let Some(&start) = line_starts.get(line) else {
            return text.len();
        };
        let column = (location.column() as usize).saturating_sub(1);
        text[start..]
            .char_indices()
            .nth(column)
            .map(|(i, _)| start + i)
            .unwrap_or(text.len())
    }

    fn span_of(location: &Location, text: &str, line_starts: &[usize]) -> std::ops::Range<usize> {
        let start = offset_of(location, text, line_starts);
        let len = location.span().byte_len().unwrap_or(0) as usize;
        start..(start + len).min(text.len())
    }

    pub(super) fn convert(raw: &Spanned<Raw>, text: &str, line_starts: &[usize]) -> Node {
        let span = span_of(&raw.referenced, text, line_starts);
        let value = match &raw.value {
            Raw::Null => NodeValue::Null,
            Raw::Bool(b) => NodeValue::Bool(*b),
            Raw::Integer(i) => NodeValue::Integer(*i),
            Raw::LargeInteger(i) => NodeValue::LargeInteger(i.into()),
            Raw::Float(f) => NodeValue::Float(*f),
            Raw::String(s) => NodeValue::String(s.into()),
            Raw::List(items) => NodeValue::List(
                items
                    .iter()
                    .map(|item| convert(item, text, line_starts))
                    .collect(),
            ),
            Raw::Map(entries) => NodeValue::Map(
                entries
                    .iter()
                    .map(|(key, value)| Entry {
                        key: key.value.as_str().into(),
                        key_span: span_of(&key.referenced, text, line_starts),
                        value: convert(value, text, line_starts),
                    })
                    .collect(),
            ),
        };
        Node { span, value }
    }

    /// YAML 1.1 reads `y`, `no`, `on`, `off`... as booleans, and a plain key that is not
    /// text (`1:`, `~:`, `0x10:`) as something else spelled another way; TOML and YAML
    /// 1.2 do not. Rather than guess which the writer meant, each such spelling is a
    /// located error asking for quotes (or `true`/`false` for a boolean value), so a key
    /// `y:` never becomes an object named `true`.
    pub(super) fn refuse_reinterpreted(node: &Node, text: &str, out: &mut Vec<Diagnostic>) {
        match &node.value {
            NodeValue::Bool(value) => {
                let written = spelled(text, &node.span);
                if !written.is_empty() && written != "true" && written != "false" {
                    out.push(
                        Diagnostic::error(
                            Code::Parse,
                            format!(
                                "`{written}` is a YAML 1.1 spelling of {value}: write `{value}` for a boolean, or quote it for text"
                            ),
                        )
                        .with_span(node.span.clone())
                        .label("ambiguous"),
                    );
                }
            }
            NodeValue::List(items) => {
                for item in items {
                    refuse_reinterpreted(item, text, out);
                }
            }
            NodeValue::Map(entries) => {
                for entry in entries {
                    let written = spelled(text, &entry.key_span);
                    let quoted = written.starts_with('"') || written.starts_with('\'');
                    if !quoted && !written.is_empty() && written != entry.key {
                        out.push(
                            Diagnostic::error(
                                Code::Parse,
                                format!(
                                    "the key `{written}` reads as `{}` in YAML: quote it (\"{written}\":) to mean the text",
                                    entry.key
                                ),
                            )
                            .with_span(entry.key_span.clone())
                            .label("quote this key"),
                        );
                    }
                    refuse_reinterpreted(&entry.value, text, out);
                }
            }
            _ => {}
        }
    }

    /// The scalar as written at `span`, trimmed, without an anchor (`&name`). An alias
    /// (`*name`) reads as the value it names, checked where that was written, so it
    /// counts as written canonically.
    fn spelled<'t>(text: &'t str, span: &std::ops::Range<usize>) -> &'t str {
        let written = text.get(span.clone()).unwrap_or("").trim();
        let written = match written.strip_prefix('&') {
            Some(anchored) => anchored
                .split_once(char::is_whitespace)
                .map_or("", |(_, rest)| rest.trim_start()),
            None => written,
        };
        if written.starts_with('*') {
            ""
        } else {
            written
        }
    }

    pub(super) fn message(error: &serde_saphyr::Error) -> String {
        let rendered = error.without_snippet().to_string();
        let first = rendered.lines().next().unwrap_or("invalid YAML");
        let first = first.strip_prefix("error: ").unwrap_or(first);
        // Drop the "line N column M: " prefix: the location is shown separately.
        let first = match first.split_once(": ") {
            Some((prefix, rest)) if prefix.starts_with("line ") => rest,
            _ => first,
        };
        // The location is shown separately, so drop a trailing "at line N, column M".
        let first = match first.rfind(" at line ") {
            Some(index) if first[index..].contains(", column ") => &first[..index],
            _ => first,
        };
        super::clean_message(&in_users_words(first))
    }

    /// The parser's own vocabulary (its limits, its options) in the file's terms.
    fn in_users_words(message: &str) -> String {
        if let Some(limit) = message.strip_prefix("budget breached: ") {
            return match limit
                .strip_prefix("Depth { depth: ")
                .and_then(|rest| rest.strip_suffix(" }"))
            {
                Some(depth) => {
                    format!("nested {depth} levels deep, deeper than any desired-state file")
                }
                None => "larger or more deeply nested than any desired-state file".to_string(),
            };
        }
        match message.split_once(", set DuplicateKeyPolicy") {
            Some((duplicate, _)) => duplicate.to_string(),
            None => message.to_string(),
        }
    }
}

/// Byte offsets at which each line starts.
pub fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// A parsed file: its text and tree, able to turn a [`Pointer`] into a span and a
/// byte offset into a line and column.
///
/// A file that extends others holds them all: `text` is their texts one after the
/// other (the file's own first, then its bases, each ending in a newline), spans are
/// offsets into it, and [`SourceMap::file_at`] says which file an offset falls in, so
/// a diagnostic is shown at the file and line where its value was written.
#[derive(Debug, Clone)]
pub struct SourceMap {
    /// The file stowage was given.
    pub name: String,
    pub text: String,
    pub root: Option<Node>,
    line_starts: Vec<usize>,
    /// Each file's name, where its text starts in `text`, and its first line's index.
    files: Vec<(String, usize, usize)>,
    /// Every node's place by its path, built on first use: resolving a pointer is then
    /// a few hash look-ups, not a scan of each table's keys (which made locating n
    /// diagnostics in a table of n entries quadratic).
    places: std::sync::OnceLock<HashMap<Vec<Segment>, Place>>,
}

/// Where a node is: its key's span (for map entries) and its own.
#[derive(Debug, Clone)]
struct Place {
    key_span: Option<Range<usize>>,
    span: Range<usize>,
}

/// Records `node` and everything below it; the first of duplicate keys wins, as a
/// search in file order would find it.
fn index_places(
    node: &Node,
    key_span: Option<Range<usize>>,
    path: &mut Vec<Segment>,
    places: &mut HashMap<Vec<Segment>, Place>,
) {
    places.entry(path.clone()).or_insert_with(|| Place {
        key_span,
        span: node.span.clone(),
    });
    match &node.value {
        NodeValue::Map(entries) => {
            for entry in entries {
                path.push(Segment::Key(entry.key.to_string()));
                index_places(&entry.value, Some(entry.key_span.clone()), path, places);
                path.pop();
            }
        }
        NodeValue::List(items) => {
            for (index, item) in items.iter().enumerate() {
                path.push(Segment::Index(index));
                index_places(item, None, path, places);
                path.pop();
            }
        }
        _ => {}
    }
}

impl SourceMap {
    pub fn new(name: String, text: String, root: Option<Node>) -> SourceMap {
        SourceMap::of_files(vec![(name, text)], root)
    }

    /// Several files' texts, laid one after the other (see [`SourceMap`]); the root's
    /// spans are offsets into that whole. Returns where each file starts.
    pub fn of_files(files: Vec<(String, String)>, root: Option<Node>) -> SourceMap {
        let name = files
            .first()
            .map(|(name, _)| name.clone())
            .unwrap_or_default();
        let mut text = String::new();
        let mut starts = Vec::new();
        for (index, (file, contents)) in files.into_iter().enumerate() {
            if index > 0 && !text.ends_with('\n') {
                text.push('\n');
            }
            starts.push((file, text.len()));
            text.push_str(&contents);
        }
        let line_starts = line_starts(&text);
        let files = starts
            .into_iter()
            .map(|(file, start)| {
                let line = match line_starts.binary_search(&start) {
                    Ok(line) => line,
                    Err(next) => next - 1,
                };
                (file, start, line)
            })
            .collect();
        SourceMap {
            name,
            text,
            root,
            line_starts,
            files,
            places: std::sync::OnceLock::new(),
        }
    }

    /// Every file read: the file given, then each base it extends.
    pub fn file_names(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|(name, _, _)| name.as_str())
    }

    /// The file an offset falls in: its index, name, and where its text starts and
    /// ends in [`SourceMap::text`].
    pub fn file_at(&self, offset: usize) -> (usize, &str, Range<usize>) {
        let index = self
            .files
            .iter()
            .rposition(|(_, start, _)| *start <= offset)
            .unwrap_or(0);
        let start = self.files.get(index).map_or(0, |(_, start, _)| *start);
        let end = self
            .files
            .get(index + 1)
            .map_or(self.text.len(), |(_, next, _)| *next);
        let name = self
            .files
            .get(index)
            .map_or(self.name.as_str(), |(name, _, _)| name);
        (index, name, start..end)
    }

    /// The span that `pointer` names. A path that goes further than the file (a key the
    /// file leaves out) resolves to the nearest ancestor that exists.
    pub fn span(&self, pointer: &Pointer) -> Range<usize> {
        let Some(root) = &self.root else {
            return 0..0;
        };
        let places = self.places.get_or_init(|| {
            let mut places = HashMap::new();
            index_places(root, None, &mut Vec::new(), &mut places);
            places
        });
        let path = pointer.path.as_slice();
        if let Some(place) = places.get(path) {
            return match (pointer.target, &place.key_span) {
                (Target::Key, Some(key_span)) => self.visible(key_span.clone()),
                _ => self.visible(place.span.clone()),
            };
        }
        // Missing: point at the key that names the deepest node found.
        (0..path.len())
            .rev()
            .find_map(|len| places.get(&path[..len]))
            .map(|place| self.visible(place.key_span.clone().unwrap_or_else(|| place.span.clone())))
            .unwrap_or(0..0)
    }

    /// 1-based line and character column of a byte offset.
    /// The line `lines_before` lines above the one holding `offset` (or the first):
    /// its index from zero and the byte offset it starts at.
    /// The index is the line's within its own file.
    pub fn line_start_before(&self, offset: usize, lines_before: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(line) => line,
            Err(next) => next - 1,
        };
        let (index, _, _) = self.file_at(offset);
        let file_first = self.files.get(index).map_or(0, |(_, _, line)| *line);
        let first = line.saturating_sub(lines_before).max(file_first);
        (first - file_first, self.line_starts[first])
    }

    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(line) => line,
            Err(next) => next - 1,
        };
        let start = self.line_starts[line];
        let column = self
            .text
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(0);
        let (index, _, _) = self.file_at(offset);
        let file_first = self.files.get(index).map_or(0, |(_, _, line)| *line);
        (line - file_first + 1, column + 1)
    }

    /// A span that underlines something: whole tables are shortened to their first line,
    /// and empty spans widened to one character.
    fn visible(&self, span: Range<usize>) -> Range<usize> {
        let start = span.start.min(self.text.len());
        let mut end = span.end.min(self.text.len()).max(start);
        if let Some(newline) = self.text[start..end].find('\n') {
            end = start + newline;
        }
        if end == start {
            end = self.text[start..]
                .chars()
                .next()
                .map(|c| start + c.len_utf8())
                .unwrap_or(start);
        }
        start..end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_spans(node: &Node, text: &str) -> Vec<(String, String)> {
        match &node.value {
            NodeValue::Map(entries) => entries
                .iter()
                .map(|e| (e.key.to_string(), text[e.value.span.clone()].to_string()))
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn toml_and_yaml_give_the_same_tree_shape_with_spans() {
        let toml = "a = \"x\"\nb = [1, 2]\n[c]\nd = true\n";
        let yaml = "a: x\nb: [1, 2]\nc:\n  d: true\n";
        let (t, errs) = parse(toml, Format::Toml);
        assert!(errs.is_empty());
        let (y, errs) = parse(yaml, Format::Yaml);
        assert!(errs.is_empty());
        let (t, y) = (t.unwrap(), y.unwrap());
        assert_eq!(key_spans(&t, toml)[0], ("a".into(), "\"x\"".into()));
        assert_eq!(key_spans(&y, yaml)[0], ("a".into(), "x".into()));
        let t_d = &t.get("c").unwrap().value.get("d").unwrap().value;
        let y_d = &y.get("c").unwrap().value.get("d").unwrap().value;
        assert_eq!(t_d.value, NodeValue::Bool(true));
        assert_eq!(y_d.value, NodeValue::Bool(true));
        assert_eq!(&toml[t_d.span.clone()], "true");
        assert_eq!(&yaml[y_d.span.clone()], "true");
    }

    #[test]
    fn syntax_errors_are_located() {
        let (root, errs) = parse("a = \n", Format::Toml);
        assert!(root.is_none());
        assert_eq!(errs[0].code, Code::Parse);
        assert!(errs[0].span.is_some());
        let (root, errs) = parse("a: [1\n", Format::Yaml);
        assert!(root.is_none());
        assert_eq!(errs[0].span, Some(3..3));
    }

    #[test]
    fn pointers_resolve_to_keys_values_and_nearest_ancestors() {
        let text = "[schedules.daily]\ncron = \"bad\"\n";
        let (root, _) = parse(text, Format::Toml);
        let map = SourceMap::new("f".into(), text.into(), root);
        let value = map.span(&Pointer::value(["schedules", "daily", "cron"]));
        assert_eq!(&text[value], "\"bad\"");
        let key = map.span(&Pointer::key(["schedules", "daily"]));
        assert_eq!(&text[key], "daily");
        let missing = map.span(&Pointer::value(["schedules", "daily", "ttl"]));
        assert_eq!(&text[missing], "daily");
        assert_eq!(map.line_column(text.find("\"bad\"").unwrap()), (2, 8));
    }
}
