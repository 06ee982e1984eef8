//! Field paths and sets of them, and their `FieldsV1` form in `managedFields`.
//!
//! A [`Set`] holds full paths; a path is owned when it is in the set. The trie shape of
//! `FieldsV1` (`{}` for an owned leaf, `"."` for an owned node with children) is derived
//! on serialization, ordered as structured-merge-diff orders it: `.` first, then `f:`,
//! `k:`, `v:`, `i:`, names by bytes and keys and values by typed value.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    /// A struct field or a map key.
    Field(String),
    /// An associative-list item, by its key fields (sorted by name).
    Key(Vec<(String, Value)>),
    /// A set-list item.
    Value(Value),
    /// A list index (never emitted for Kubernetes lists, which are atomic otherwise).
    Index(usize),
}

fn rank(element: &Element) -> u8 {
    match element {
        Element::Field(_) => 0,
        Element::Key(_) => 1,
        Element::Value(_) => 2,
        Element::Index(_) => 3,
    }
}

/// structured-merge-diff's value order: numbers (numerically), strings, booleans,
/// lists, maps; null first.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn kind(value: &Value) -> u8 {
        match value {
            Value::Null => 0,
            Value::Number(_) => 1,
            Value::String(_) => 2,
            Value::Bool(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (left, right) in x.iter().zip(y) {
                let order = compare_values(left, right);
                if order != Ordering::Equal {
                    return order;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut left: Vec<_> = x.iter().collect();
            let mut right: Vec<_> = y.iter().collect();
            left.sort_by(|a, b| a.0.cmp(b.0));
            right.sort_by(|a, b| a.0.cmp(b.0));
            for ((lk, lv), (rk, rv)) in left.iter().zip(&right) {
                let order = lk.cmp(rk).then_with(|| compare_values(lv, rv));
                if order != Ordering::Equal {
                    return order;
                }
            }
            left.len().cmp(&right.len())
        }
        _ => kind(a).cmp(&kind(b)),
    }
}

impl Ord for Element {
    fn cmp(&self, other: &Element) -> Ordering {
        match (self, other) {
            (Element::Field(a), Element::Field(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Element::Key(a), Element::Key(b)) => {
                for ((an, av), (bn, bv)) in a.iter().zip(b) {
                    let order = an.cmp(bn).then_with(|| compare_values(av, bv));
                    if order != Ordering::Equal {
                        return order;
                    }
                }
                a.len().cmp(&b.len())
            }
            (Element::Value(a), Element::Value(b)) => compare_values(a, b),
            (Element::Index(a), Element::Index(b)) => a.cmp(b),
            _ => rank(self).cmp(&rank(other)),
        }
    }
}

impl PartialOrd for Element {
    fn partial_cmp(&self, other: &Element) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Element {
    /// The `FieldsV1` key: `f:name`, `k:{"a":1}`, `v:"x"`, `i:0`.
    pub fn encode(&self) -> String {
        match self {
            Element::Field(name) => format!("f:{name}"),
            Element::Key(fields) => {
                let map: Map<String, Value> = fields.iter().cloned().collect();
                format!("k:{}", Value::Object(map))
            }
            Element::Value(value) => format!("v:{value}"),
            Element::Index(index) => format!("i:{index}"),
        }
    }

    fn decode(text: &str) -> Option<Element> {
        let (prefix, rest) = text.split_at_checked(2)?;
        match prefix {
            "f:" => Some(Element::Field(rest.to_string())),
            "k:" => {
                let Value::Object(map) = serde_json::from_str(rest).ok()? else {
                    return None;
                };
                let mut fields: Vec<(String, Value)> = map.into_iter().collect();
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                Some(Element::Key(fields))
            }
            "v:" => serde_json::from_str(rest).ok().map(Element::Value),
            "i:" => rest.parse().ok().map(Element::Index),
            _ => None,
        }
    }

    /// How a conflict message prints the step: `.name`, `[k="v"]`, `[="v"]`, `[0]`.
    pub fn display(&self) -> String {
        match self {
            Element::Field(name) => format!(".{name}"),
            Element::Key(fields) => {
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("[{}]", parts.join(","))
            }
            Element::Value(value) => format!("[={value}]"),
            Element::Index(index) => format!("[{index}]"),
        }
    }
}

pub type Path = Vec<Element>;

/// How a conflict message prints a path: `.spec.objectStorage.bucket`.
pub fn display(path: &[Element]) -> String {
    path.iter().map(Element::display).collect()
}

/// A set of owned paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Set {
    paths: BTreeSet<Path>,
}

impl Set {
    pub fn new() -> Set {
        Set::default()
    }

    pub fn insert(&mut self, path: Path) {
        self.paths.insert(path);
    }

    pub fn contains(&self, path: &[Element]) -> bool {
        self.paths.contains(path)
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Path> {
        self.paths.iter()
    }

    pub fn union(&self, other: &Set) -> Set {
        Set {
            paths: self.paths.union(&other.paths).cloned().collect(),
        }
    }

    pub fn intersection(&self, other: &Set) -> Set {
        Set {
            paths: self.paths.intersection(&other.paths).cloned().collect(),
        }
    }

    pub fn difference(&self, other: &Set) -> Set {
        Set {
            paths: self.paths.difference(&other.paths).cloned().collect(),
        }
    }

    /// Whether any member is `prefix` or lies below it.
    pub fn has_prefix(&self, prefix: &[Element]) -> bool {
        self.paths.iter().any(|path| path.starts_with(prefix))
    }

    /// Removes every member for which `remove` says so.
    pub fn retain(&mut self, keep: impl Fn(&Path) -> bool) {
        self.paths.retain(|path| keep(path));
    }

    /// The `fieldsV1` object.
    pub fn to_fields_v1(&self) -> Value {
        fn node(set: &Set, prefix: &[Element]) -> Value {
            let mut children: BTreeSet<&Element> = BTreeSet::new();
            for path in &set.paths {
                if path.len() > prefix.len() && path.starts_with(prefix) {
                    children.insert(&path[prefix.len()]);
                }
            }
            let mut map = Map::new();
            if !children.is_empty() && set.contains(prefix) && !prefix.is_empty() {
                map.insert(".".to_string(), Value::Object(Map::new()));
            }
            for child in children {
                let mut path = prefix.to_vec();
                path.push(child.clone());
                map.insert(child.encode(), node(set, &path));
            }
            Value::Object(map)
        }
        node(self, &[])
    }

    /// The `fieldsV1` object as text in structured-merge-diff's own order (a JSON map
    /// value cannot keep it: `i:` would sort before `k:`, `v:10` before `v:9`).
    pub fn to_fields_v1_text(&self) -> String {
        fn node(set: &Set, prefix: &[Element], out: &mut String) {
            let mut children: BTreeSet<&Element> = BTreeSet::new();
            for path in &set.paths {
                if path.len() > prefix.len() && path.starts_with(prefix) {
                    children.insert(&path[prefix.len()]);
                }
            }
            out.push('{');
            let mut first = true;
            if !children.is_empty() && set.contains(prefix) && !prefix.is_empty() {
                out.push_str("\".\":{}");
                first = false;
            }
            for child in children {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(&Value::String(child.encode()).to_string());
                out.push(':');
                let mut path = prefix.to_vec();
                path.push(child.clone());
                node(set, &path, out);
            }
            out.push('}');
        }
        let mut out = String::new();
        node(self, &[], &mut out);
        out
    }

    /// Reads a `fieldsV1` object; unknown prefixes are dropped, as the real parser does.
    pub fn from_fields_v1(value: &Value) -> Set {
        fn walk(value: &Value, prefix: &mut Path, set: &mut Set) {
            let Value::Object(map) = value else { return };
            if map.is_empty() && !prefix.is_empty() {
                set.insert(prefix.clone());
                return;
            }
            for (key, child) in map {
                if key == "." {
                    set.insert(prefix.clone());
                    continue;
                }
                if let Some(element) = Element::decode(key) {
                    prefix.push(element);
                    walk(child, prefix, set);
                    prefix.pop();
                }
            }
        }
        let mut set = Set::new();
        walk(value, &mut Vec::new(), &mut set);
        set
    }
}

pub fn field(name: &str) -> Element {
    Element::Field(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_v1_round_trips_with_dots_and_order() {
        let text = json!({"f:spec":{".":{},"f:config":{".":{},"f:region":{}},"f:credential":{},"f:objectStorage":{".":{},"f:bucket":{}},"f:provider":{}}});
        let set = Set::from_fields_v1(&text);
        assert!(set.contains(&[field("spec")]));
        assert!(set.contains(&[field("spec"), field("config"), field("region")]));
        assert_eq!(set.to_fields_v1_text(), text.to_string());
        assert_eq!(Set::from_fields_v1(&set.to_fields_v1()), set);
    }

    #[test]
    fn keys_are_compact_sorted_json_and_sort_typed() {
        let element = Element::Key(vec![
            ("port".into(), json!(80)),
            ("protocol".into(), json!("TCP")),
        ]);
        assert_eq!(element.encode(), r#"k:{"port":80,"protocol":"TCP"}"#);
        assert!(Element::Value(json!(9)) < Element::Value(json!(10)));
        assert!(Element::Field("z".into()) < Element::Key(vec![]));
        assert_eq!(
            display(&[field("spec"), field("objectStorage"), field("bucket")]),
            ".spec.objectStorage.bucket"
        );
    }
}
