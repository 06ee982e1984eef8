//! Checks a parsed file against the JSON Schema of the model, reporting every unknown
//! key, wrong type and missing key at once (serde alone stops at the first).
//!
//! The schema is the one `stowage schema` prints, so editors and this check agree. The
//! result is the tree with the offending parts left out, which the loader decodes
//! straight from the located nodes ([`Checked::decode`]); later checks can still run on
//! whatever was valid.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use serde_json::{Map, Value};

use super::source::{Entry, Node, NodeValue};
use crate::diagnostic::{Code, Diagnostic, Pointer, Segment, nearest};

/// What the check left usable: the tree, minus the entries it reported.
#[derive(Debug)]
pub struct Checked<'n> {
    root: &'n Node,
    /// Map entries left out, by the address of their value node.
    left_out: HashSet<usize>,
}

impl<'n> Checked<'n> {
    /// Decodes `T` from the usable tree; the error names the path that failed.
    pub fn decode<T: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<T, serde_path_to_error::Error<serde_json::Error>> {
        let nodes = super::decode::Nodes {
            node: self.root,
            left_out: &self.left_out,
        };
        // Plain decoding first; the path is tracked only to locate a failure.
        T::deserialize(nodes).or_else(|_| serde_path_to_error::deserialize(nodes))
    }
}

/// Walks `node` against `schema` (the root schema, with its `$defs`). Returns what is
/// usable, or `None` when the node itself cannot be used.
pub fn check<'n>(
    node: &'n Node,
    schema: &Value,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Checked<'n>> {
    let mut checker = Checker {
        root: schema,
        path: Vec::new(),
        left_out: Vec::new(),
        facts: HashMap::default(),
    };
    checker.check(node, schema, diagnostics).then(|| Checked {
        root: node,
        left_out: checker.left_out.into_iter().collect(),
    })
}

/// A step of the path being checked, borrowed from the tree: a [`Pointer`] is built
/// only for a diagnostic.
#[derive(Clone, Copy)]
enum Step<'n> {
    Key(&'n str),
    Index(usize),
}

struct Checker<'a, 'n> {
    root: &'a Value,
    path: Vec<Step<'n>>,
    /// Entries reported and left out (their value nodes' addresses).
    left_out: Vec<usize>,
    /// What each schema the walk met says, by the schema's address: a large file meets
    /// the same few schemas tens of thousands of times.
    facts: HashMap<usize, Facts<'a>, BuildHasherDefault<AddressHasher>>,
}

/// The keywords of one schema (after its `$ref`) that the check reads.
#[derive(Clone, Copy)]
struct Facts<'a> {
    schema: &'a Value,
    anything: bool,
    branches: Option<&'a [Value]>,
    enumerated: Option<&'a [Value]>,
    constant: Option<&'a Value>,
    items: Option<&'a Value>,
    properties: Option<&'a Map<String, Value>>,
    additional: Option<&'a Value>,
    required: Option<&'a [Value]>,
    minimum: Option<i64>,
    maximum: Option<i64>,
    uint32: bool,
}

/// Hashes a schema's address: addresses are unique already, and aligned.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 << 8 | u64::from(*byte)).rotate_left(5);
        }
    }

    fn write_usize(&mut self, address: usize) {
        self.0 = (address as u64 >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

fn address(node: &Node) -> usize {
    std::ptr::from_ref(node) as usize
}

impl<'a, 'n> Checker<'a, 'n> {
    fn resolve(&self, mut schema: &'a Value) -> &'a Value {
        // `$ref`s point into `$defs` of the root; a bounded loop guards against cycles.
        for _ in 0..16 {
            let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
                return schema;
            };
            let Some(name) = reference.strip_prefix("#/$defs/") else {
                return schema;
            };
            match self.root.get("$defs").and_then(|defs| defs.get(name)) {
                Some(target) => schema = target,
                None => return schema,
            }
        }
        schema
    }

    /// What `schema` says, read once per schema.
    fn facts(&mut self, schema: &'a Value) -> Facts<'a> {
        let address = std::ptr::from_ref(schema) as usize;
        if let Some(facts) = self.facts.get(&address) {
            return *facts;
        }
        let resolved = self.resolve(schema);
        let array = |key: &str| {
            resolved
                .get(key)
                .and_then(Value::as_array)
                .map(Vec::as_slice)
        };
        let facts = Facts {
            schema: resolved,
            anything: resolved == &Value::Bool(true),
            branches: array("anyOf").or_else(|| array("oneOf")),
            enumerated: array("enum"),
            constant: resolved.get("const"),
            items: resolved.get("items"),
            properties: resolved.get("properties").and_then(Value::as_object),
            additional: resolved.get("additionalProperties"),
            required: array("required"),
            minimum: resolved.get("minimum").and_then(Value::as_i64),
            maximum: resolved.get("maximum").and_then(Value::as_i64),
            uint32: resolved.get("format").and_then(Value::as_str) == Some("uint32"),
        };
        self.facts.insert(address, facts);
        facts
    }

    /// Where the check is.
    fn at(&self) -> Pointer {
        Pointer::value(self.path.iter().map(|step| match step {
            Step::Key(key) => Segment::Key((*key).to_string()),
            Step::Index(index) => Segment::Index(*index),
        }))
    }

    /// Whether `node` is usable as `schema`; what is not is reported.
    fn check(
        &mut self,
        node: &'n Node,
        schema: &'a Value,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> bool {
        let facts = self.facts(schema);
        let schema = facts.schema;
        if facts.anything {
            return true;
        }
        if let Some(branches) = facts.branches {
            return self.check_branches(node, branches, diagnostics);
        }
        if !type_matches(schema, &node.value) {
            diagnostics.push(type_mismatch(schema, node, &self.at()));
            return false;
        }
        if let Some(allowed) = facts.enumerated {
            let value = to_json(node);
            if !allowed.contains(&value) {
                let names: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
                diagnostics.push(
                    Diagnostic::error(
                        Code::Parse,
                        format!("{} is not one of {}", value, names.join(", ")),
                    )
                    .at(self.at())
                    .label("not allowed here")
                    .help(format!("use one of {}", names.join(", "))),
                );
                return false;
            }
        }
        if let Some(constant) = facts.constant {
            let value = to_json(node);
            if &value != constant {
                diagnostics.push(
                    Diagnostic::error(Code::Parse, format!("expected {constant}, found {value}"))
                        .at(self.at()),
                );
                return false;
            }
        }
        match &node.value {
            NodeValue::Map(entries) => self.check_map(entries, &facts, diagnostics),
            NodeValue::List(items) => {
                let item_schema = facts.items.unwrap_or(&Value::Bool(true));
                let mut all_valid = true;
                for (index, item) in items.iter().enumerate() {
                    self.path.push(Step::Index(index));
                    all_valid &= self.check(item, item_schema, diagnostics);
                    self.path.pop();
                }
                // Dropping one item would shift the indexes later checks point at.
                all_valid
            }
            NodeValue::Integer(n) => {
                let minimum = facts.minimum;
                if minimum.is_some_and(|minimum| *n < minimum) {
                    diagnostics.push(
                        Diagnostic::error(Code::Parse, format!("{n} is below the minimum"))
                            .at(self.at())
                            .label("too small"),
                    );
                    return false;
                }
                let maximum = facts.maximum;
                let too_big_for_u32 = facts.uint32 && *n > i64::from(u32::MAX);
                if too_big_for_u32 || maximum.is_some_and(|maximum| *n > maximum) {
                    diagnostics.push(
                        Diagnostic::error(Code::Parse, format!("{n} is too large"))
                            .at(self.at())
                            .label("too large"),
                    );
                    return false;
                }
                true
            }
            _ => true,
        }
    }

    fn check_branches(
        &mut self,
        node: &'n Node,
        branches: &'a [Value],
        diagnostics: &mut Vec<Diagnostic>,
    ) -> bool {
        // The first branch that accepts the node wins; otherwise report against the
        // branch whose type fits (for Option<T>, the T), or the first non-null one.
        for branch in branches {
            let mut scratch = Vec::new();
            let left_out = self.left_out.len();
            if self.check(node, branch, &mut scratch) && scratch.is_empty() {
                return true;
            }
            // What a branch that does not fit left out is not left out.
            self.left_out.truncate(left_out);
        }
        let fitting = branches
            .iter()
            .find(|branch| type_matches(self.resolve(branch), &node.value))
            .or_else(|| {
                branches
                    .iter()
                    .find(|branch| !is_null_schema(self.resolve(branch)))
            });
        match fitting {
            Some(branch) => self.check(node, branch, diagnostics),
            None => {
                diagnostics.push(
                    Diagnostic::error(
                        Code::Parse,
                        format!("{} is not allowed here", node.value.describe()),
                    )
                    .at(self.at()),
                );
                false
            }
        }
    }

    fn check_map(
        &mut self,
        entries: &'n [Entry],
        facts: &Facts<'a>,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> bool {
        let properties = facts.properties;
        let additional = facts.additional;
        let first_left_out = self.left_out.len();
        for entry in entries {
            self.path.push(Step::Key(&entry.key));
            let property_schema = properties.and_then(|p| p.get(entry.key.as_str()));
            let child_schema = match (property_schema, additional) {
                (Some(schema), _) => Some(schema),
                (None, Some(Value::Bool(false))) => {
                    diagnostics.push(unknown_key(&entry.key, properties, &self.at()));
                    None
                }
                (None, Some(schema)) => Some(schema),
                (None, None) => Some(&Value::Bool(true)),
            };
            let usable =
                child_schema.is_some_and(|schema| self.check(&entry.value, schema, diagnostics));
            if !usable {
                self.left_out.push(address(&entry.value));
            }
            self.path.pop();
        }
        let mut complete = true;
        if let Some(required) = facts.required {
            for name in required.iter().filter_map(Value::as_str) {
                if let Some(entry) = entries.iter().find(|entry| entry.key == name) {
                    // Present but invalid: already reported where it stands.
                    let left_out = &self.left_out[first_left_out..];
                    complete &= !left_out.contains(&address(&entry.value));
                    continue;
                }
                complete = false;
                let at = self.at();
                let code = if at.path.is_empty() && name == "version" {
                    Code::Version
                } else {
                    Code::Parse
                };
                let help = if code == Code::Version {
                    "add `version = 1` (YAML: `version: 1`) at the top of the file".to_string()
                } else {
                    format!("add `{name}`")
                };
                let place = if at.path.is_empty() {
                    "the file".to_string()
                } else {
                    format!("`{}`", at.dotted())
                };
                diagnostics.push(
                    Diagnostic::error(code, format!("missing key `{name}` in {place}"))
                        .at(at.as_key())
                        .label(format!("`{name}` is missing here"))
                        .help(help),
                );
            }
        }
        complete
    }
}

fn unknown_key(key: &str, properties: Option<&Map<String, Value>>, at: &Pointer) -> Diagnostic {
    let known: Vec<&str> = properties
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let place = match at.path.len() {
        0 | 1 => "at the top level".to_string(),
        _ => {
            let parent = Pointer::value(at.path[..at.path.len() - 1].iter().cloned());
            format!("in `{}`", parent.dotted())
        }
    };
    let diagnostic = Diagnostic::error(Code::UnknownKey, format!("unknown key `{key}` {place}"))
        .at(at.clone().as_key())
        .label("unknown key");
    match nearest(key, known.iter().copied()) {
        Some(suggestion) => diagnostic.help(format!("did you mean `{suggestion}`?")),
        None if known.is_empty() => diagnostic,
        None => diagnostic.help(format!("known keys: {}", known.join(", "))),
    }
}

fn type_mismatch(schema: &Value, node: &Node, at: &Pointer) -> Diagnostic {
    let expected = expected_types(schema);
    let diagnostic = Diagnostic::error(
        Code::Parse,
        format!("expected {expected}, found {}", node.value.describe()),
    )
    .at(at.clone())
    .label(format!("expected {expected}"));
    let quotable = matches!(
        node.value,
        NodeValue::Bool(_) | NodeValue::Integer(_) | NodeValue::Float(_)
    );
    if expected == "a string" && quotable {
        diagnostic.help("quote the value: plugin config, labels and durations are strings")
    } else {
        diagnostic
    }
}

fn schema_types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn is_null_schema(schema: &Value) -> bool {
    schema_types(schema) == ["null"]
}

fn expected_types(schema: &Value) -> String {
    let names: Vec<&str> = schema_types(schema)
        .into_iter()
        .filter(|t| *t != "null")
        .map(|t| match t {
            "string" => "a string",
            "integer" => "an integer",
            "number" => "a number",
            "boolean" => "a boolean (true or false)",
            "array" => "a list",
            "object" => "a table",
            _ => "a value",
        })
        .collect();
    if names.is_empty() {
        "a value".to_string()
    } else {
        names.join(" or ")
    }
}

fn type_matches(schema: &Value, value: &NodeValue) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => type_fits(t, value),
        Some(Value::Array(types)) => {
            types.is_empty()
                || types
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|t| type_fits(t, value))
        }
        _ => true,
    }
}

fn type_fits(t: &str, value: &NodeValue) -> bool {
    matches!(
        (t, value),
        ("null", NodeValue::Null)
            | ("boolean", NodeValue::Bool(_))
            | ("integer", NodeValue::Integer(_))
            | ("number", NodeValue::Integer(_) | NodeValue::Float(_))
            | ("string", NodeValue::String(_))
            | ("array", NodeValue::List(_))
            | ("object", NodeValue::Map(_))
    )
}

/// The node as plain JSON, spans dropped.
pub fn to_json(node: &Node) -> Value {
    match &node.value {
        NodeValue::Null => Value::Null,
        NodeValue::Bool(b) => Value::Bool(*b),
        NodeValue::Integer(i) => Value::from(*i),
        NodeValue::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        NodeValue::String(s) | NodeValue::Datetime(s) | NodeValue::LargeInteger(s) => {
            Value::String(s.to_string())
        }
        NodeValue::List(items) => Value::Array(items.iter().map(to_json).collect()),
        NodeValue::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|entry| (entry.key.to_string(), to_json(&entry.value)))
                .collect(),
        ),
    }
}
