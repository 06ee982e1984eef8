//! Checks a parsed file against the JSON Schema of the model, reporting every unknown
//! key, wrong type and missing key at once (serde alone stops at the first).
//!
//! The schema is the one `stowage schema` prints, so editors and this check agree. The
//! result is a JSON value with the offending parts removed, which the loader then
//! decodes; later checks can still run on whatever was valid.

use serde_json::{Map, Value};

use super::source::{Node, NodeValue};
use crate::diagnostic::{Code, Diagnostic, Pointer, nearest};

/// Walks `node` against `schema` (the root schema, with its `$defs`). Returns the cleaned
/// value, or `None` when the node itself cannot be used.
pub fn check(node: &Node, schema: &Value, diagnostics: &mut Vec<Diagnostic>) -> Option<Value> {
    let checker = Checker { root: schema };
    checker.check(node, schema, &Pointer::root(), diagnostics)
}

struct Checker<'a> {
    root: &'a Value,
}

impl<'a> Checker<'a> {
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

    fn check(
        &self,
        node: &Node,
        schema: &'a Value,
        at: &Pointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Option<Value> {
        let schema = self.resolve(schema);
        if schema == &Value::Bool(true) {
            return Some(to_json(node));
        }
        if let Some(branches) = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Value::as_array)
        {
            return self.check_branches(node, branches, at, diagnostics);
        }
        if !type_matches(schema, &node.value) {
            diagnostics.push(type_mismatch(schema, node, at));
            return None;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            let value = to_json(node);
            if !allowed.contains(&value) {
                let names: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
                diagnostics.push(
                    Diagnostic::error(
                        Code::Parse,
                        format!("{} is not one of {}", value, names.join(", ")),
                    )
                    .at(at.clone())
                    .label("not allowed here")
                    .help(format!("use one of {}", names.join(", "))),
                );
                return None;
            }
        }
        if let Some(constant) = schema.get("const") {
            let value = to_json(node);
            if &value != constant {
                diagnostics.push(
                    Diagnostic::error(Code::Parse, format!("expected {constant}, found {value}"))
                        .at(at.clone()),
                );
                return None;
            }
        }
        match &node.value {
            NodeValue::Map(entries) => self.check_map(entries, schema, at, diagnostics),
            NodeValue::List(items) => {
                let item_schema = schema.get("items").unwrap_or(&Value::Bool(true));
                let mut out = Vec::with_capacity(items.len());
                let mut all_valid = true;
                for (index, item) in items.iter().enumerate() {
                    match self.check(item, item_schema, &at.child(index), diagnostics) {
                        Some(value) => out.push(value),
                        None => all_valid = false,
                    }
                }
                // Dropping one item would shift the indexes later checks point at.
                all_valid.then_some(Value::Array(out))
            }
            NodeValue::Integer(n) => {
                let minimum = schema.get("minimum").and_then(Value::as_i64);
                if minimum.is_some_and(|minimum| *n < minimum) {
                    diagnostics.push(
                        Diagnostic::error(Code::Parse, format!("{n} is below the minimum"))
                            .at(at.clone())
                            .label("too small"),
                    );
                    return None;
                }
                let maximum = schema.get("maximum").and_then(Value::as_i64);
                let too_big_for_u32 = schema.get("format").and_then(Value::as_str)
                    == Some("uint32")
                    && *n > i64::from(u32::MAX);
                if too_big_for_u32 || maximum.is_some_and(|maximum| *n > maximum) {
                    diagnostics.push(
                        Diagnostic::error(Code::Parse, format!("{n} is too large"))
                            .at(at.clone())
                            .label("too large"),
                    );
                    return None;
                }
                Some(to_json(node))
            }
            _ => Some(to_json(node)),
        }
    }

    fn check_branches(
        &self,
        node: &Node,
        branches: &'a [Value],
        at: &Pointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Option<Value> {
        // The first branch that accepts the node wins; otherwise report against the
        // branch whose type fits (for Option<T>, the T), or the first non-null one.
        for branch in branches {
            let mut scratch = Vec::new();
            if let Some(value) = self.check(node, branch, at, &mut scratch)
                && scratch.is_empty()
            {
                return Some(value);
            }
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
            Some(branch) => self.check(node, branch, at, diagnostics),
            None => {
                diagnostics.push(
                    Diagnostic::error(
                        Code::Parse,
                        format!("{} is not allowed here", node.value.describe()),
                    )
                    .at(at.clone()),
                );
                None
            }
        }
    }

    fn check_map(
        &self,
        entries: &[super::source::Entry],
        schema: &'a Value,
        at: &Pointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Option<Value> {
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        let mut out = Map::new();
        for entry in entries {
            let child_at = at.child(entry.key.as_str());
            let property_schema = properties.and_then(|p| p.get(&entry.key));
            let child_schema = match (property_schema, additional) {
                (Some(schema), _) => schema,
                (None, Some(Value::Bool(false))) => {
                    diagnostics.push(unknown_key(&entry.key, properties, &child_at));
                    continue;
                }
                (None, Some(schema)) => schema,
                (None, None) => &Value::Bool(true),
            };
            if let Some(value) = self.check(&entry.value, child_schema, &child_at, diagnostics) {
                out.insert(entry.key.clone(), value);
            }
        }
        let mut complete = true;
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if entries.iter().any(|entry| entry.key == name) {
                    // Present but invalid: already reported where it stands.
                    complete &= out.contains_key(name);
                    continue;
                }
                complete = false;
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
                        .at(at.clone().as_key())
                        .label(format!("`{name}` is missing here"))
                        .help(help),
                );
            }
        }
        complete.then_some(Value::Object(out))
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
    let types = schema_types(schema);
    if types.is_empty() {
        return true;
    }
    types.iter().any(|t| {
        matches!(
            (*t, value),
            ("null", NodeValue::Null)
                | ("boolean", NodeValue::Bool(_))
                | ("integer", NodeValue::Integer(_))
                | ("number", NodeValue::Integer(_) | NodeValue::Float(_))
                | ("string", NodeValue::String(_))
                | ("array", NodeValue::List(_))
                | ("object", NodeValue::Map(_))
        )
    })
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
            Value::String(s.clone())
        }
        NodeValue::List(items) => Value::Array(items.iter().map(to_json).collect()),
        NodeValue::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|entry| (entry.key.clone(), to_json(&entry.value)))
                .collect(),
        ),
    }
}
