//! TOML text → the located tree ([`Node`]), built straight from the events of the
//! `toml_parser` crate (the parser under the `toml` crate).
//!
//! The `toml` crate's own document keeps every token and every event in memory before
//! it builds a tree of its own, which stowage then copied into its tree: for a large
//! file that was half of `validate`'s time and all of its peak memory. Here the events
//! build the one tree as they come.
//!
//! TOML's rules for tables are kept here (toml.io, "Table" and "Array of Tables"): a
//! table is defined once, by a header or by dotted keys but not both; inline tables
//! and arrays are closed once written; `[[x]]` appends a table to an array of tables,
//! and headers and dotted keys under `x` extend its last table. A document with any
//! error has no tree, and every error is reported.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use compact_str::{CompactString, ToCompactString as _};
use toml_parser::decoder::{Encoding, ScalarKind};
use toml_parser::parser::{EventReceiver, RecursionGuard, ValidateWhitespace};
use toml_parser::{ErrorSink, Expected, ParseError, Raw, Source, Span};

use super::source::{Entry, Node, NodeValue, clean_message};
use crate::diagnostic::{Code, Diagnostic};

/// How deeply arrays and inline tables may nest (the `toml` crate's limit).
const MAX_DEPTH: u32 = 80;

/// A table holds this many entries before it keeps an index of its keys.
const INDEXED_FROM: usize = 8;

/// Parses `text` as a TOML document.
pub(super) fn read(text: &str) -> (Option<Node>, Vec<Diagnostic>) {
    let source = Source::new(text);
    let tokens = source.lex().into_vec();
    let mut builder = Builder::new(text);
    let mut syntax: Vec<ParseError> = Vec::new();
    {
        let mut whitespace = ValidateWhitespace::new(&mut builder, source);
        let mut guarded = RecursionGuard::new(&mut whitespace, MAX_DEPTH);
        toml_parser::parser::parse_document(&tokens, &mut guarded, &mut syntax);
    }
    drop(tokens);
    let mut diagnostics: Vec<Diagnostic> = syntax.iter().map(syntax_error).collect();
    diagnostics.append(&mut builder.errors);
    if !diagnostics.is_empty() {
        return (None, diagnostics);
    }
    let root = Node {
        span: 0..text.len(),
        value: NodeValue::Map(builder.root.into_entries()),
    };
    (Some(root), diagnostics)
}

fn syntax_error(error: &ParseError) -> Diagnostic {
    let mut message = error.description().to_string();
    if let Some(expected) = error.expected() {
        message.push_str(", expected ");
        if expected.is_empty() {
            message.push_str("nothing");
        }
        for (i, expected) in expected.iter().enumerate() {
            if i > 0 {
                message.push_str(", ");
            }
            match expected {
                Expected::Literal("\n") => message.push_str("newline"),
                Expected::Literal(literal) => {
                    message.push('`');
                    message.extend(literal.escape_debug());
                    message.push('`');
                }
                Expected::Description(description) => message.push_str(description),
                _ => message.push_str("something else"),
            }
        }
    }
    let diagnostic = problem(message);
    match error.unexpected() {
        Some(span) => diagnostic.with_span(span.start()..span.end()),
        None => diagnostic,
    }
}

fn problem(message: String) -> Diagnostic {
    Diagnostic::error(Code::Parse, clean_message(&message))
        .label("here")
        .help("see https://toml.io for TOML syntax")
}

fn range(span: Span) -> Range<usize> {
    span.start()..span.end()
}

#[derive(Debug)]
struct Key {
    name: CompactString,
    span: Range<usize>,
}

/// A table while the document is read.
#[derive(Debug, Default)]
struct Table {
    entries: Vec<Slot>,
    /// Key → position in `entries`, once the table is large enough to need it.
    index: HashMap<CompactString, usize>,
    span: Range<usize>,
    /// Written by a header (or the document's root): no second header may define it.
    defined: bool,
    /// Created by dotted keys: no header may define it afterwards.
    dotted: bool,
}

#[derive(Debug)]
struct Slot {
    key: CompactString,
    key_span: Range<usize>,
    item: Item,
}

// `Table::into_entries` turns slots into entries where they lie.
const _: () = assert!(std::mem::size_of::<Slot>() == std::mem::size_of::<Entry>());

#[derive(Debug)]
enum Item {
    /// A finished value: a scalar, an array or an inline table, never extended.
    Value(Node),
    Table(Box<Table>),
    /// An array of tables (`[[x]]`), with the span of its first header.
    Tables(Vec<Table>, Range<usize>),
}

impl Item {
    fn describe(&self) -> &'static str {
        match self {
            Item::Value(node) => match node.value {
                NodeValue::Map(_) => "an inline table",
                NodeValue::List(_) => "an array",
                _ => node.value.describe(),
            },
            Item::Table(_) => "a table",
            Item::Tables(..) => "an array of tables",
        }
    }

    /// The table a path continues into: a table, or an array of tables' last one.
    fn table_mut(&mut self) -> Option<&mut Table> {
        match self {
            Item::Table(table) => Some(table),
            Item::Tables(tables, _) => tables.last_mut(),
            Item::Value(_) => None,
        }
    }

    fn into_node(self, key_span: &Range<usize>) -> Node {
        match self {
            Item::Value(node) => node,
            Item::Table(table) => (*table).into_node(key_span),
            Item::Tables(tables, span) => Node {
                value: NodeValue::List(
                    tables
                        .into_iter()
                        .map(|table| table.into_node(key_span))
                        .collect(),
                ),
                span,
            },
        }
    }
}

impl Table {
    fn position(&self, key: &str) -> Option<usize> {
        if self.index.is_empty() {
            self.entries.iter().position(|slot| slot.key == key)
        } else {
            self.index.get(key).copied()
        }
    }

    fn push(&mut self, key: &Key, item: Item) -> usize {
        let position = self.entries.len();
        if position == 0 {
            // Most tables are a handful of keys: one allocation instead of two.
            self.entries.reserve_exact(INDEXED_FROM);
        }
        self.entries.push(Slot {
            key: key.name.clone(),
            key_span: key.span.clone(),
            item,
        });
        if self.entries.len() > INDEXED_FROM {
            if self.index.is_empty() {
                self.index = (self.entries.iter().enumerate())
                    .map(|(at, slot)| (slot.key.clone(), at))
                    .collect();
            } else {
                self.index.insert(key.name.clone(), position);
            }
        }
        position
    }

    fn into_entries(self) -> Vec<Entry> {
        // A slot is an entry's size: the entries take the slots' place, and what the
        // table did not fill is given back.
        let mut entries: Vec<Entry> = (self.entries.into_iter())
            .map(|slot| Entry {
                value: slot.item.into_node(&slot.key_span),
                key: slot.key,
                key_span: slot.key_span,
            })
            .collect();
        entries.shrink_to_fit();
        entries
    }

    /// A table made only as the way to another (`[a.b]` makes `a`) is located at its
    /// key; one with a header or braces at them.
    fn into_node(self, key_span: &Range<usize>) -> Node {
        let span = if self.span.is_empty() {
            key_span.clone()
        } else {
            self.span.clone()
        };
        Node {
            span,
            value: NodeValue::Map(self.into_entries()),
        }
    }
}

/// Goes down `keys` from `table`, making the tables that are not there yet, and
/// returns the last one with the positions taken. `dotted`: the keys are a key-value's
/// dotted key, which may extend tables made that way but no table a header defined.
fn descend<'t>(
    mut table: &'t mut Table,
    keys: &[Key],
    dotted: bool,
    positions: &mut Vec<usize>,
) -> Result<&'t mut Table, Box<Diagnostic>> {
    for key in keys {
        let position = match table.position(&key.name) {
            Some(position) => position,
            None => table.push(
                key,
                Item::Table(Box::new(Table {
                    dotted,
                    ..Table::default()
                })),
            ),
        };
        positions.push(position);
        let item = &mut table.entries[position].item;
        let described = item.describe();
        if let (Item::Table(child), true) = (&mut *item, dotted) {
            if child.defined {
                return Err(Box::new(
                    problem(format!(
                        "`{}` is a table with its own header: dotted keys cannot add to it",
                        key.name
                    ))
                    .with_span(key.span.clone()),
                ));
            }
            child.dotted = true;
        }
        table = match item.table_mut() {
            Some(child) => child,
            None => {
                return Err(Box::new(
                    problem(format!(
                        "`{}` is {described}, which cannot be extended",
                        key.name
                    ))
                    .with_span(key.span.clone()),
                ));
            }
        };
    }
    Ok(table)
}

/// Where the lines since the last header go.
enum Current {
    /// The table at these positions from the root.
    At(Vec<usize>),
    /// The header was in error: its lines are read and dropped.
    Nowhere,
}

/// A value being read: an array or an inline table, with the keys of its entry.
enum Open {
    Array {
        start: usize,
        items: Vec<Node>,
    },
    Inline {
        start: usize,
        table: Table,
        keys: Vec<Key>,
    },
}

struct Builder<'t> {
    text: &'t str,
    root: Table,
    current: Current,
    /// The keys of the key-value being read at the document's level.
    keys: Vec<Key>,
    /// While a header is read: its start and whether it is `[[...]]`; its keys are in
    /// `header_keys`.
    header: Option<(usize, bool)>,
    header_keys: Vec<Key>,
    open: Vec<Open>,
    errors: Vec<Diagnostic>,
}

impl<'t> Builder<'t> {
    fn new(text: &'t str) -> Builder<'t> {
        Builder {
            text,
            root: Table {
                defined: true,
                ..Table::default()
            },
            current: Current::At(Vec::new()),
            keys: Vec::new(),
            header: None,
            header_keys: Vec::new(),
            open: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn raw(&self, span: Span, encoding: Option<Encoding>) -> Raw<'t> {
        let text = self.text.get(range(span)).unwrap_or_default();
        Raw::new_unchecked(text, encoding, span)
    }

    /// The table the positions lead to from the root.
    fn table_at<'r>(root: &'r mut Table, positions: &[usize]) -> Option<&'r mut Table> {
        let mut table = root;
        for &position in positions {
            table = table.entries.get_mut(position)?.item.table_mut()?;
        }
        Some(table)
    }

    /// A complete value: into the array or inline table it is in, else under the
    /// key-value's keys in the current table.
    fn value(&mut self, node: Node) {
        match self.open.last_mut() {
            Some(Open::Array { items, .. }) => items.push(node),
            Some(Open::Inline { table, keys, .. }) => {
                let keys = std::mem::take(keys);
                if let Err(error) = insert(table, &keys, node) {
                    self.errors.push(*error);
                }
            }
            None => {
                let keys = std::mem::take(&mut self.keys);
                let Current::At(positions) = &self.current else {
                    return;
                };
                let Some(table) = Self::table_at(&mut self.root, positions) else {
                    return;
                };
                if let Err(error) = insert(table, &keys, node) {
                    self.errors.push(*error);
                }
            }
        }
    }

    /// A header read whole: the table its lines go into from now on.
    fn place_header(&mut self, start: usize, end: usize, array: bool) {
        let keys = std::mem::take(&mut self.header_keys);
        self.current = Current::Nowhere;
        let Some((last, parents)) = keys.split_last() else {
            return;
        };
        let span = start..end;
        let mut positions = Vec::with_capacity(keys.len());
        let parent = match descend(&mut self.root, parents, false, &mut positions) {
            Ok(parent) => parent,
            Err(error) => return self.errors.push(*error),
        };
        let position = match parent.position(&last.name) {
            None if array => parent.push(last, Item::Tables(vec![defined(&span)], span.clone())),
            None => parent.push(last, Item::Table(Box::new(defined(&span)))),
            Some(position) => {
                let slot = &mut parent.entries[position];
                match &mut slot.item {
                    Item::Tables(tables, _) if array => tables.push(defined(&span)),
                    Item::Table(table) if !array && !table.defined && !table.dotted => {
                        // Made earlier on the way to another table: its header defines
                        // it now, and locates it.
                        table.defined = true;
                        table.span = span.clone();
                        slot.key_span = last.span.clone();
                    }
                    item => {
                        let what = item.describe();
                        let error = problem(format!(
                            "`{}` is defined twice: it is already {what}",
                            last.name
                        ))
                        .with_span(last.span.clone());
                        return self.errors.push(error);
                    }
                }
                position
            }
        };
        positions.push(position);
        self.current = Current::At(positions);
    }
}

fn defined(span: &Range<usize>) -> Table {
    Table {
        span: span.clone(),
        defined: true,
        ..Table::default()
    }
}

/// `node` under `keys` (a dotted key: the last names the value) in `table`.
fn insert(table: &mut Table, keys: &[Key], node: Node) -> Result<(), Box<Diagnostic>> {
    let Some((last, parents)) = keys.split_last() else {
        return Ok(());
    };
    let mut positions = Vec::new();
    let parent = descend(table, parents, true, &mut positions)?;
    if let (Some(through), true) = (parents.last(), parent.defined) {
        // The last table of an array of tables, reached through its key: it has its
        // own `[[...]]` header.
        let error = problem(format!(
            "`{}` is a table with its own header: dotted keys cannot add to it",
            through.name
        ));
        return Err(Box::new(error.with_span(through.span.clone())));
    }
    if let Some(position) = parent.position(&last.name) {
        let what = parent.entries[position].item.describe();
        let error = problem(format!(
            "duplicate key `{}`: it is already {what}",
            last.name
        ));
        return Err(Box::new(error.with_span(last.span.clone())));
    }
    parent.push(last, Item::Value(node));
    Ok(())
}

impl EventReceiver for Builder<'_> {
    fn std_table_open(&mut self, span: Span, _error: &mut dyn ErrorSink) {
        self.keys.clear();
        self.header_keys.clear();
        self.header = Some((span.start(), false));
    }

    fn std_table_close(&mut self, span: Span, _error: &mut dyn ErrorSink) {
        if let Some((start, array)) = self.header.take() {
            self.place_header(start, span.end(), array);
        }
    }

    fn array_table_open(&mut self, span: Span, _error: &mut dyn ErrorSink) {
        self.keys.clear();
        self.header_keys.clear();
        self.header = Some((span.start(), true));
    }

    fn array_table_close(&mut self, span: Span, error: &mut dyn ErrorSink) {
        self.std_table_close(span, error);
    }

    fn inline_table_open(&mut self, span: Span, _error: &mut dyn ErrorSink) -> bool {
        self.open.push(Open::Inline {
            start: span.start(),
            table: Table::default(),
            keys: Vec::new(),
        });
        true
    }

    fn inline_table_close(&mut self, span: Span, _error: &mut dyn ErrorSink) {
        if let Some(Open::Inline { start, table, .. }) = self.open.pop() {
            let span = start..span.end();
            let value = NodeValue::Map(table.into_entries());
            self.value(Node { span, value });
        }
    }

    fn array_open(&mut self, span: Span, _error: &mut dyn ErrorSink) -> bool {
        self.open.push(Open::Array {
            start: span.start(),
            items: Vec::new(),
        });
        true
    }

    fn array_close(&mut self, span: Span, _error: &mut dyn ErrorSink) {
        if let Some(Open::Array { start, mut items }) = self.open.pop() {
            items.shrink_to_fit();
            let span = start..span.end();
            self.value(Node {
                span,
                value: NodeValue::List(items),
            });
        }
    }

    fn simple_key(&mut self, span: Span, encoding: Option<Encoding>, error: &mut dyn ErrorSink) {
        let mut name = Cow::Borrowed("");
        self.raw(span, encoding).decode_key(&mut name, error);
        let key = Key {
            name: CompactString::from(name.as_ref()),
            span: range(span),
        };
        if self.header.is_some() {
            self.header_keys.push(key);
        } else {
            match self.open.last_mut() {
                Some(Open::Inline { keys, .. }) => keys.push(key),
                Some(Open::Array { .. }) => {}
                None => self.keys.push(key),
            }
        }
    }

    fn scalar(&mut self, span: Span, encoding: Option<Encoding>, error: &mut dyn ErrorSink) {
        let mut decoded = Cow::Borrowed("");
        let kind = self.raw(span, encoding).decode_scalar(&mut decoded, error);
        let value = match kind {
            ScalarKind::String => NodeValue::String(CompactString::from(decoded.as_ref())),
            ScalarKind::Boolean(value) => NodeValue::Bool(value),
            ScalarKind::DateTime => match decoded.parse::<toml_datetime::Datetime>() {
                Ok(datetime) => NodeValue::Datetime(datetime.to_compact_string()),
                Err(invalid) => {
                    self.errors
                        .push(problem(invalid.to_string()).with_span(range(span)));
                    NodeValue::Datetime(CompactString::from(decoded.as_ref()))
                }
            },
            ScalarKind::Float => NodeValue::Float(decoded.parse().unwrap_or(f64::NAN)),
            ScalarKind::Integer(radix) => match i64::from_str_radix(&decoded, radix.value()) {
                Ok(number) => NodeValue::Integer(number),
                Err(_) => NodeValue::LargeInteger(CompactString::from(decoded.as_ref())),
            },
        };
        self.value(Node {
            span: range(span),
            value,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `toml` crate's own reading of `text`, as a tree of the same shape.
    fn by_the_toml_crate(text: &str) -> Option<Node> {
        use toml::Spanned;
        use toml::de::{DeTable, DeValue};
        fn convert(value: &Spanned<DeValue<'_>>) -> Node {
            let value_of = match value.get_ref() {
                DeValue::String(s) => NodeValue::String(CompactString::from(s.as_ref())),
                DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                    Ok(n) => NodeValue::Integer(n),
                    Err(_) => NodeValue::LargeInteger(i.as_str().into()),
                },
                DeValue::Float(f) => NodeValue::Float(f.as_str().parse().unwrap_or(f64::NAN)),
                DeValue::Boolean(b) => NodeValue::Bool(*b),
                DeValue::Datetime(d) => NodeValue::Datetime(d.to_compact_string()),
                DeValue::Array(items) => NodeValue::List(items.iter().map(convert).collect()),
                DeValue::Table(table) => NodeValue::Map(entries(table)),
            };
            Node {
                span: value.span(),
                value: value_of,
            }
        }
        fn entries(table: &DeTable<'_>) -> Vec<Entry> {
            let mut entries: Vec<Entry> = (table.iter())
                .map(|(key, value)| Entry {
                    key: CompactString::from(key.get_ref().as_ref()),
                    key_span: key.span(),
                    value: convert(value),
                })
                .collect();
            entries.sort_by(|a, b| a.key.cmp(&b.key));
            entries
        }
        let (table, errors) = DeTable::parse_recoverable(text);
        errors.is_empty().then(|| Node {
            span: 0..text.len(),
            value: NodeValue::Map(entries(table.get_ref())),
        })
    }

    /// Entries in key order (the two readers may place a table defined late apart).
    fn sorted(node: Node) -> Node {
        let value = match node.value {
            NodeValue::Map(mut entries) => {
                entries.sort_by(|a, b| a.key.cmp(&b.key));
                NodeValue::Map(
                    (entries.into_iter())
                        .map(|entry| Entry {
                            value: sorted(entry.value),
                            ..entry
                        })
                        .collect(),
                )
            }
            NodeValue::List(items) => NodeValue::List(items.into_iter().map(sorted).collect()),
            value => value,
        };
        Node { value, ..node }
    }

    const DOCUMENTS: &[&str] = &[
        "",
        "a = 1\nb = \"two\"\nc = 'three'\nd = \"\"\"\nfour\\u00e9\"\"\"\n",
        "[a]\nx = 1\n[b.c]\ny = [1, 2, [3]]\n[b]\nz = { p = 1, q.r = 2 }\n",
        "[[servers]]\nname = 'a'\n[servers.tls]\non = true\n[[servers]]\nname = 'b'\n",
        "a.b.c = 1\na.b.d = 2\na.e = 0x1F\n\"quoted key\" = -3_000\n'lit.key' = +inf\n",
        "when = 1979-05-27T07:32:00Z\nday = 1979-05-27\nbig = 99999999999999999999\nf = 6.02e23\n",
        "[x.y.z]\n[x]\nw = 1\n",
        "a = [ { b = 1 }, { c = [ { d = 2 } ] } ]\nempty = {}\nlist = []\n",
        "# comment\n[schedules.daily]  # trailing\ncron = \"0 1 * * *\" # why\n",
    ];

    #[test]
    fn reads_as_the_toml_crate_reads() {
        for text in DOCUMENTS {
            let (ours, errors) = read(text);
            assert!(errors.is_empty(), "{text:?}: {errors:?}");
            let ours = sorted(ours.expect("a tree"));
            let theirs = by_the_toml_crate(text).expect("the toml crate reads it");
            assert_eq!(ours, theirs, "{text}");
        }
    }

    const INVALID: &[&str] = &[
        "a = 1\na = 2\n",
        "[a]\n[a]\n",
        "[a]\nb = 1\n[a.b]\n",
        "a.b = 1\n[a]\n",
        "[a]\nb.c = 1\n[a.b]\n",
        "a = { b = 1 }\n[a]\n",
        "a = { b = 1 }\na.c = 2\n",
        "a = [1]\n[[a]]\n",
        "[[a]]\n[a]\n",
        "[a.b]\nc = 1\n[a]\nb.d = 2\n",
        "a = { b = 1, b = 2 }\n",
        "a = \n",
        "a = \"unterminated\n",
        "[a\nb = 1\n",
        "a = 1979-13-45\n",
        "a = 1 b = 2\n",
        "= 1\n",
        "a = [1,,2]\n",
        "a = \"\\q\"\n",
        "a = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
    ];

    #[test]
    fn refuses_what_the_toml_crate_refuses_each_located() {
        for text in INVALID {
            assert!(
                by_the_toml_crate(text).is_none(),
                "the toml crate reads {text:?}"
            );
            let (tree, errors) = read(text);
            assert!(tree.is_none(), "{text:?} read");
            assert!(!errors.is_empty(), "{text:?}");
            for error in &errors {
                assert_eq!(error.code, Code::Parse);
                let span = error.span.clone().expect("located");
                assert!(span.end <= text.len(), "{text:?}: {span:?}");
            }
        }
    }

    mod generated {
        use super::*;
        use proptest::prelude::*;

        /// Keys from a small set, so that generated documents often define a table
        /// twice, mix headers with dotted keys, or extend a value.
        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("a".to_string()),
                Just("b".to_string()),
                Just("c".to_string()),
                Just("\"q.d\"".to_string()),
                Just("'e'".to_string()),
            ]
        }

        fn dotted() -> impl Strategy<Value = String> {
            prop::collection::vec(key(), 1..4).prop_map(|keys| keys.join("."))
        }

        fn value() -> impl Strategy<Value = String> {
            let scalar = prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                Just("\"text\"".to_string()),
                Just("'lit'".to_string()),
                Just("true".to_string()),
                Just("1.5".to_string()),
                Just("0xff".to_string()),
                Just("1979-05-27".to_string()),
            ];
            scalar.prop_recursive(3, 16, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4)
                        .prop_map(|items| format!("[{}]", items.join(", "))),
                    prop::collection::vec((dotted(), inner), 0..4).prop_map(|entries| {
                        let entries: Vec<String> = (entries.into_iter())
                            .map(|(key, value)| format!("{key} = {value}"))
                            .collect();
                        format!("{{ {} }}", entries.join(", "))
                    }),
                ]
            })
        }

        fn line() -> impl Strategy<Value = String> {
            prop_oneof![
                dotted().prop_map(|keys| format!("[{keys}]")),
                dotted().prop_map(|keys| format!("[[{keys}]]")),
                (dotted(), value()).prop_map(|(keys, value)| format!("{keys} = {value}")),
                (dotted(), value()).prop_map(|(keys, value)| format!("{keys} = {value}")),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

            /// Whatever the document, stowage's reader and the `toml` crate agree:
            /// both refuse it, or both read the same tree with the same spans.
            #[test]
            fn agrees_with_the_toml_crate(lines in prop::collection::vec(line(), 0..12)) {
                let text = lines.join("\n") + "\n";
                let (ours, errors) = read(&text);
                let theirs = by_the_toml_crate(&text);
                match (ours, theirs) {
                    (Some(ours), Some(theirs)) => prop_assert_eq!(sorted(ours), theirs, "{}", text),
                    (None, None) => prop_assert!(!errors.is_empty()),
                    (ours, theirs) => prop_assert!(
                        false,
                        "{}\nstowage read it: {}, the toml crate read it: {}, errors: {:?}",
                        text,
                        ours.is_some(),
                        theirs.is_some(),
                        errors
                    ),
                }
            }
        }
    }
}
