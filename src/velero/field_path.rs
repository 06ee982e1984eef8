//! A field of a Kubernetes object as typed steps, so that the plan, the write that
//! carries it out and the lookup of who owns it (managedFields) all walk the same
//! structure instead of re-splitting a display string.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One step into an object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// A field of an object, or a key of a map (`labels`, `config`, `data`).
    Field(String),
    /// The item of a list keyed by name, as `containers` is.
    Named(String),
}

/// `spec.objectStorage.prefix`, `metadata.labels["app"]`,
/// `spec.template.spec.containers[velero].args`.
///
/// Held as one string, each step a marker and its name (markers and escapes in names
/// escaped), because a large plan holds a path per changed field: one allocation each
/// instead of one per step.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath(String);

const FIELD: char = '\u{1f}';
const NAMED: char = '\u{1d}';
const ESCAPE: char = '\u{1b}';

impl FieldPath {
    /// The path of a top-level field.
    pub fn root(field: &str) -> FieldPath {
        FieldPath::default().field(field)
    }

    /// A path from its field steps, outermost first.
    pub fn of<'a>(fields: impl IntoIterator<Item = &'a str>) -> FieldPath {
        fields
            .into_iter()
            .fold(FieldPath::default(), |path, field| path.field(field))
    }

    fn with(&self, marker: char, name: &str) -> FieldPath {
        let mut text = String::with_capacity(self.0.len() + name.len() + 1);
        text.push_str(&self.0);
        text.push(marker);
        for c in name.chars() {
            if matches!(c, FIELD | NAMED | ESCAPE) {
                text.push(ESCAPE);
            }
            text.push(c);
        }
        FieldPath(text)
    }

    /// This path, one field further in.
    pub fn field(&self, name: &str) -> FieldPath {
        self.with(FIELD, name)
    }

    /// This path, into the list item named `name`.
    pub fn named(&self, name: &str) -> FieldPath {
        self.with(NAMED, name)
    }

    /// The steps, outermost first.
    pub fn steps(&self) -> Vec<Step> {
        self.marked_steps()
            .map(|(marker, name)| step_of((marker, name.into_owned())))
            .collect()
    }

    /// Each step's marker and name, the name borrowed unless it holds an escape: the
    /// plan's views show a path per changed field, and most names have none.
    fn marked_steps(&self) -> impl Iterator<Item = (char, Cow<'_, str>)> {
        let mut rest = self.0.as_str();
        std::iter::from_fn(move || {
            let marker = rest.chars().next()?;
            let body = &rest[marker.len_utf8()..];
            let mut end = body.len();
            let mut escaped = false;
            let mut chars = body.char_indices();
            while let Some((index, c)) = chars.next() {
                match c {
                    ESCAPE => {
                        escaped = true;
                        chars.next();
                    }
                    FIELD | NAMED => {
                        end = index;
                        break;
                    }
                    _ => {}
                }
            }
            let raw = &body[..end];
            rest = &body[end..];
            let name = if escaped {
                let mut name = String::with_capacity(raw.len());
                let mut chars = raw.chars();
                while let Some(c) = chars.next() {
                    match c {
                        ESCAPE => name.extend(chars.next()),
                        c => name.push(c),
                    }
                }
                Cow::Owned(name)
            } else {
                Cow::Borrowed(raw)
            };
            Some((marker, name))
        })
    }

    /// Whether the path starts with the field `name`.
    pub fn is_under(&self, name: &str) -> bool {
        matches!(self.marked_steps().next(), Some((FIELD, first)) if first == name)
    }

    /// Sets the field to `value` in a JSON merge patch, making the objects on the way.
    /// `false` when the path goes through a list item, which a merge patch cannot
    /// address (it replaces lists whole).
    pub fn set_in_merge_patch(&self, patch: &mut Value, value: Value) -> bool {
        let steps = self.steps();
        let Some((last, on_the_way)) = steps.split_last() else {
            return false;
        };
        let mut node = patch;
        for step in on_the_way {
            let Step::Field(name) = step else {
                return false;
            };
            let Some(object) = node.as_object_mut() else {
                return false;
            };
            node = object
                .entry(name.clone())
                .or_insert_with(|| Value::Object(Default::default()));
        }
        match (last, node.as_object_mut()) {
            (Step::Field(name), Some(object)) => {
                object.insert(name.clone(), value);
                true
            }
            _ => false,
        }
    }

    /// Whether a FieldsV1 tree (`{"f:spec": {"f:paused": {}}}`, a list item as
    /// `{"k:{\"name\":\"velero\"}": …}`) has an entry for this field.
    pub fn is_in_fields_v1(&self, fields: &Value) -> bool {
        self.steps()
            .iter()
            .try_fold(fields, |node, step| match step {
                Step::Field(name) => node.get(format!("f:{name}")),
                Step::Named(name) => {
                    node.get(format!("k:{{\"name\":{}}}", Value::String(name.clone())))
                }
            })
            .is_some()
    }
}

/// `key` as a path step: bare when it reads unambiguously, quoted otherwise.
fn write_key(f: &mut fmt::Formatter<'_>, key: &str, first: bool) -> fmt::Result {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (bare, first) {
        (true, true) => f.write_str(key),
        (true, false) => {
            f.write_str(".")?;
            f.write_str(key)
        }
        (false, _) => write!(f, "[{key:?}]"),
    }
}

/// The notation of the plan's text and JSON views.
impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (marker, name)) in self.marked_steps().enumerate() {
            if marker == NAMED {
                write!(f, "[{name}]")?;
            } else {
                write_key(f, &name, index == 0)?;
            }
        }
        Ok(())
    }
}

fn step_of((marker, name): (char, String)) -> Step {
    if marker == NAMED {
        Step::Named(name)
    } else {
        Step::Field(name)
    }
}

/// Saved plans hold a path as its steps.
impl Serialize for FieldPath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.steps().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for FieldPath {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let steps = Vec::<Step>::deserialize(deserializer)?;
        Ok(steps
            .iter()
            .fold(FieldPath::default(), |path, step| match step {
                Step::Field(name) => path.field(name),
                Step::Named(name) => path.named(name),
            }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_with_the_markers_in_them_survive() {
        let odd = "a\u{1f}b\u{1d}c\u{1b}d.e";
        let path = FieldPath::root("spec").field(odd).named(odd).field("x");
        assert_eq!(
            path.steps(),
            [
                Step::Field("spec".into()),
                Step::Field(odd.into()),
                Step::Named(odd.into()),
                Step::Field("x".into())
            ]
        );
        assert!(path.is_under("spec") && !path.is_under(odd));
        let under_odd = FieldPath::root(odd).field("");
        assert!(under_odd.is_under(odd));
        assert_eq!(
            under_odd.steps(),
            [Step::Field(odd.into()), Step::Field(String::new())]
        );
        let saved = serde_json::to_string(&path).expect("serializes");
        assert_eq!(
            serde_json::from_str::<FieldPath>(&saved).expect("reads"),
            path
        );
    }

    #[test]
    fn shown_as_the_plan_shows_fields() {
        let labels = FieldPath::of(["metadata", "labels"]);
        assert_eq!(labels.field("app").to_string(), "metadata.labels.app");
        assert_eq!(
            labels.field("velero.io/x").to_string(),
            r#"metadata.labels["velero.io/x"]"#
        );
        let args = FieldPath::of(["spec", "template", "spec", "containers"])
            .named("velero")
            .field("args");
        assert_eq!(
            args.to_string(),
            "spec.template.spec.containers[velero].args"
        );
    }

    #[test]
    fn found_in_managed_fields_through_list_items() {
        let fields = json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
            "k:{\"name\":\"velero\"}": {"f:args": {}}}}}}});
        let args = FieldPath::of(["spec", "template", "spec", "containers"])
            .named("velero")
            .field("args");
        assert!(args.is_in_fields_v1(&fields));
        let other = FieldPath::of(["spec", "template", "spec", "containers"])
            .named("sidecar")
            .field("args");
        assert!(!other.is_in_fields_v1(&fields));
        // A key with a dot is one step, not two.
        let dotted = json!({"f:metadata": {"f:labels": {"f:velero.io/x": {}}}});
        assert!(
            FieldPath::of(["metadata", "labels"])
                .field("velero.io/x")
                .is_in_fields_v1(&dotted)
        );
    }

    #[test]
    fn a_merge_patch_reaches_fields_but_not_list_items() {
        let mut patch = json!({});
        assert!(
            FieldPath::of(["spec", "config", "region"]).set_in_merge_patch(&mut patch, Value::Null)
        );
        assert!(FieldPath::of(["spec", "ttl"]).set_in_merge_patch(&mut patch, Value::Null));
        assert_eq!(
            patch,
            json!({"spec": {"config": {"region": null}, "ttl": null}})
        );
        let item = FieldPath::of(["spec", "containers"]).named("velero");
        assert!(!item.set_in_merge_patch(&mut json!({}), Value::Null));
    }
}
