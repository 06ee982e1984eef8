//! Server-side apply and field ownership, as Kubernetes does them
//! (`../shared/reference/ssa-semantics.md`): the field sets that Apply and Update
//! record, schema-driven merge, pruning, conflicts and force.
//!
//! Pure: objects and managedFields in, objects and managedFields out. The HTTP layer
//! decides status codes; this module decides who owns what.

use serde_json::{Map, Value};

use crate::fieldpath::{Element, Path, Set, display, field};

/// How a schema node merges and is owned (§5).
#[derive(Debug, Clone, Copy)]
enum Shape<'a> {
    Scalar,
    /// Fields by name, each with its own schema.
    Struct(&'a Map<String, Value>),
    /// Keys granular, each value under `additionalProperties` (or untyped).
    Map(Option<&'a Value>),
    /// Replaced and owned whole.
    Atomic,
    /// Scalars, owned one `v:` item at a time.
    SetList,
    /// Items keyed by the named fields, owned one `k:` item at a time.
    AssocList(&'a [Value], &'a Value),
}

/// The metadata fields that are never owned (§1).
const STRIPPED_METADATA: [&str; 9] = [
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
];

/// ObjectMeta as the real server types it (CRDs declare `metadata: {type: object}`).
pub fn object_meta_schema() -> Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            "finalizers": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            "ownerReferences": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"],
                "items": {"type": "object", "properties": {
                    "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "name": {"type": "string"},
                    "uid": {"type": "string"}, "controller": {"type": "boolean"}, "blockOwnerDeletion": {"type": "boolean"}}}},
            "generateName": {"type": "string"}
        },
        "additionalProperties": true
    })
}

fn shape(schema: &Value) -> Shape<'_> {
    let atomic_map = schema.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic");
    match schema.get("type").and_then(Value::as_str) {
        Some("object") if atomic_map => Shape::Atomic,
        Some("object") => match (
            schema.get("properties").and_then(Value::as_object),
            schema.get("additionalProperties"),
        ) {
            (Some(properties), _) => Shape::Struct(properties),
            (None, Some(additional)) if additional.is_object() => Shape::Map(Some(additional)),
            _ => Shape::Map(None),
        },
        Some("array") => match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => Shape::SetList,
            Some("map") => {
                let keys = schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                Shape::AssocList(keys, schema.get("items").unwrap_or(&Value::Null))
            }
            _ => Shape::Atomic,
        },
        Some(_) => Shape::Scalar,
        // Untyped (preserve-unknown-fields): maps granular, lists atomic.
        None => Shape::Map(None),
    }
}

const UNTYPED: Value = Value::Null;

fn child_schema<'a>(schema_shape: Shape<'a>, key: &str) -> &'a Value {
    match schema_shape {
        Shape::Struct(properties) => properties.get(key).unwrap_or(&UNTYPED),
        Shape::Map(Some(additional)) => additional,
        _ => &UNTYPED,
    }
}

/// The shape a value actually gets: untyped nodes follow the value.
fn effective<'a>(schema: &'a Value, value: &Value) -> Shape<'a> {
    match (shape(schema), value) {
        (Shape::Map(None), Value::Array(_)) => Shape::Atomic,
        (Shape::Map(None), Value::Object(_)) => Shape::Map(None),
        (Shape::Map(None), _) => Shape::Scalar,
        (Shape::Struct(_) | Shape::Map(_), v) if !v.is_object() => Shape::Scalar,
        (shape, _) => shape,
    }
}

fn item_key(item: &Value, keys: &[Value]) -> Element {
    let mut fields: Vec<(String, Value)> = keys
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|key| item.get(key).map(|v| (key.to_string(), v.clone())))
        .collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Element::Key(fields)
}

/// The root schema of an object: its `openAPIV3Schema` with ObjectMeta filled in.
pub struct ObjectSchema {
    root: Value,
}

impl ObjectSchema {
    pub fn new(open_api_v3_schema: &Value) -> ObjectSchema {
        let mut root = open_api_v3_schema.clone();
        if let Some(properties) = root.get_mut("properties").and_then(Value::as_object_mut) {
            properties.insert("metadata".to_string(), object_meta_schema());
        }
        ObjectSchema { root }
    }
}

/// Never-owned paths are taken out of every set (§1).
fn strip(set: &mut Set) {
    set.retain(|path| match path.as_slice() {
        [] => false,
        [Element::Field(top)] => top != "apiVersion" && top != "kind" && top != "metadata",
        [Element::Field(top), Element::Field(name), ..] if top == "metadata" => {
            !STRIPPED_METADATA.contains(&name.as_str())
        }
        _ => true,
    });
}

/// What an Apply records: the leaves of the config (§1).
pub fn apply_set(config: &Value, schema: &ObjectSchema) -> Set {
    // A node holding a non-empty granular value is not a member itself; its leaves,
    // set items and list items (with their fields) are. Atomic values, scalars and
    // empty values are members whole.
    fn walk(value: &Value, schema: &Value, path: &mut Path, set: &mut Set) {
        let node = effective(schema, value);
        match (node, value) {
            (Shape::Struct(_) | Shape::Map(_), Value::Object(map)) if !map.is_empty() => {
                for (key, child) in map {
                    path.push(field(key));
                    walk(child, child_schema(node, key), path, set);
                    path.pop();
                }
            }
            (Shape::SetList, Value::Array(items)) if !items.is_empty() => {
                for item in items {
                    path.push(Element::Value(item.clone()));
                    set.insert(path.clone());
                    path.pop();
                }
            }
            (Shape::AssocList(keys, item_schema), Value::Array(items)) if !items.is_empty() => {
                for item in items {
                    path.push(item_key(item, keys));
                    set.insert(path.clone());
                    walk(item, item_schema, path, set);
                    path.pop();
                }
            }
            _ => set.insert(path.clone()),
        }
    }
    let mut set = Set::new();
    walk(config, &schema.root, &mut Vec::new(), &mut set);
    strip(&mut set);
    set
}

/// What changed between two versions of an object (§1, Update): every new node,
/// changed leaf, and removed node.
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

pub fn compare(old: &Value, new: &Value, schema: &ObjectSchema) -> Comparison {
    fn all(value: &Value, schema: &Value, path: &mut Path, set: &mut Set) {
        set.insert(path.clone());
        let node = effective(schema, value);
        match (node, value) {
            (Shape::Struct(_) | Shape::Map(_), Value::Object(map)) => {
                for (key, child) in map {
                    path.push(field(key));
                    all(child, child_schema(node, key), path, set);
                    path.pop();
                }
            }
            (Shape::SetList, Value::Array(items)) => {
                for item in items {
                    path.push(Element::Value(item.clone()));
                    set.insert(path.clone());
                    path.pop();
                }
            }
            (Shape::AssocList(keys, item_schema), Value::Array(items)) => {
                for item in items {
                    path.push(item_key(item, keys));
                    all(item, item_schema, path, set);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    fn walk(old: &Value, new: &Value, schema: &Value, path: &mut Path, out: &mut Comparison) {
        if old == new {
            return;
        }
        let node = effective(schema, new);
        match (node, old, new) {
            (Shape::Struct(_) | Shape::Map(_), Value::Object(o), Value::Object(n))
                if !(o.is_empty() && n.is_empty()) =>
            {
                for (key, child) in n {
                    path.push(field(key));
                    let child_schema = child_schema(node, key);
                    match o.get(key) {
                        None => all(child, child_schema, path, &mut out.added),
                        Some(before) => walk(before, child, child_schema, path, out),
                    }
                    path.pop();
                }
                for (key, child) in o {
                    if !n.contains_key(key) {
                        path.push(field(key));
                        all(child, child_schema(node, key), path, &mut out.removed);
                        path.pop();
                    }
                }
            }
            (Shape::SetList, Value::Array(o), Value::Array(n)) => {
                for item in n.iter().filter(|item| !o.contains(item)) {
                    path.push(Element::Value(item.clone()));
                    out.added.insert(path.clone());
                    path.pop();
                }
                for item in o.iter().filter(|item| !n.contains(item)) {
                    path.push(Element::Value(item.clone()));
                    out.removed.insert(path.clone());
                    path.pop();
                }
            }
            (Shape::AssocList(keys, item_schema), Value::Array(o), Value::Array(n)) => {
                for item in n {
                    let key = item_key(item, keys);
                    path.push(key.clone());
                    match o.iter().find(|before| item_key(before, keys) == key) {
                        None => all(item, item_schema, path, &mut out.added),
                        Some(before) => walk(before, item, item_schema, path, out),
                    }
                    path.pop();
                }
                for item in o {
                    let key = item_key(item, keys);
                    if !n.iter().any(|after| item_key(after, keys) == key) {
                        path.push(key);
                        all(item, item_schema, path, &mut out.removed);
                        path.pop();
                    }
                }
            }
            _ => {
                out.modified.insert(path.clone());
            }
        }
    }
    let mut comparison = Comparison::default();
    walk(old, new, &schema.root, &mut Vec::new(), &mut comparison);
    strip(&mut comparison.added);
    strip(&mut comparison.modified);
    strip(&mut comparison.removed);
    comparison
}

/// `config` merged into `live` by schema (§5): granular maps and structs merge, atomic
/// values are replaced, set lists unite, associative lists merge per key.
pub fn merge(live: &Value, config: &Value, schema: &ObjectSchema) -> Value {
    fn walk(live: &Value, config: &Value, schema: &Value) -> Value {
        let node = effective(schema, config);
        match (node, live, config) {
            // A null claims the node without clearing what others put there.
            (_, live, Value::Null) if !live.is_null() => live.clone(),
            (Shape::Struct(_) | Shape::Map(_), Value::Object(l), Value::Object(c)) => {
                let mut out = l.clone();
                for (key, value) in c {
                    let merged = match l.get(key) {
                        Some(existing) => walk(existing, value, child_schema(node, key)),
                        None => value.clone(),
                    };
                    out.insert(key.clone(), merged);
                }
                Value::Object(out)
            }
            (Shape::SetList, Value::Array(l), Value::Array(c)) => Value::Array(merge_list_items(
                l,
                c,
                |item| Element::Value(item.clone()),
                |_, config| config.clone(),
            )),
            (Shape::AssocList(keys, item_schema), Value::Array(l), Value::Array(c)) => {
                Value::Array(merge_list_items(
                    l,
                    c,
                    |item| item_key(item, keys),
                    |live, config| walk(live, config, item_schema),
                ))
            }
            _ => config.clone(),
        }
    }
    walk(live, config, &schema.root)
}

/// The items of a merged set or associative list (`mrg` visitListItems): the config's
/// order for the items it names, while items only in the live list keep their place
/// relative to the shared ones.
fn merge_list_items(
    live: &[Value],
    config: &[Value],
    key: impl Fn(&Value) -> Element,
    merge_item: impl Fn(&Value, &Value) -> Value,
) -> Vec<Value> {
    let live_keys: Vec<Element> = live.iter().map(&key).collect();
    let config_keys: Vec<Element> = config.iter().map(&key).collect();
    let live_item = |k: &Element| live_keys.iter().position(|l| l == k).map(|i| &live[i]);
    let config_item = |k: &Element| config_keys.iter().position(|c| c == k).map(|i| &config[i]);
    let merged = |k: &Element| match (live_item(k), config_item(k)) {
        (Some(l), Some(c)) => merge_item(l, c),
        (_, Some(c)) => c.clone(),
        (Some(l), None) => l.clone(),
        (None, None) => Value::Null,
    };
    let mut shared_order: std::collections::VecDeque<&Element> = config_keys
        .iter()
        .filter(|k| live_keys.contains(k))
        .collect();
    let mut next_shared = shared_order.pop_front();
    let mut taken: Vec<&Element> = Vec::new();
    let mut out = Vec::with_capacity(live.len().max(config.len()));
    let (mut li, mut ri) = (0, 0);
    while li < live.len() || ri < config.len() {
        if li < live.len() && ri < config.len() {
            let here = &live_keys[li];
            if *here == config_keys[ri] {
                taken.push(here);
                out.push(merged(here));
                li += 1;
                ri += 1;
                next_shared = shared_order.pop_front();
                continue;
            }
            if config_keys.contains(here) && next_shared.is_some_and(|n| n != here) {
                // A shared item, but not the one due now: it comes with the config.
                li += 1;
                continue;
            }
        }
        if li < live.len() {
            let here = &live_keys[li];
            if !config_keys.contains(here) {
                out.push(live[li].clone());
                li += 1;
                continue;
            } else if taken.contains(&here) {
                li += 1;
            }
        }
        if ri < config.len() {
            let here = &config_keys[ri];
            taken.push(here);
            out.push(merged(here));
            ri += 1;
            if next_shared == Some(here) {
                next_shared = shared_order.pop_front();
            }
        }
    }
    out
}

/// Removes `path` from `value`, and then every parent it leaves empty for which
/// `may_remove_parent` agrees.
fn remove_path(
    value: &mut Value,
    path: &[Element],
    may_remove_parent: &dyn Fn(&[Element]) -> bool,
) {
    fn remove(value: &mut Value, path: &[Element]) -> bool {
        let Some((first, rest)) = path.split_first() else {
            return false;
        };
        match (first, value) {
            (Element::Field(name), Value::Object(map)) => {
                if rest.is_empty() {
                    map.remove(name).is_some()
                } else {
                    map.get_mut(name).is_some_and(|child| remove(child, rest))
                }
            }
            (Element::Value(item), Value::Array(items)) if rest.is_empty() => {
                let before = items.len();
                items.retain(|existing| existing != item);
                items.len() != before
            }
            (Element::Key(key), Value::Array(items)) => {
                let matches = |existing: &Value| {
                    key.iter()
                        .all(|(name, value)| existing.get(name) == Some(value))
                };
                if rest.is_empty() {
                    let before = items.len();
                    items.retain(|existing| !matches(existing));
                    items.len() != before
                } else {
                    items
                        .iter_mut()
                        .find(|existing| matches(existing))
                        .is_some_and(|item| remove(item, rest))
                }
            }
            _ => false,
        }
    }
    if !remove(value, path) {
        return;
    }
    // Parents the removal emptied go too, unless someone still owns them.
    for depth in (1..path.len()).rev() {
        let parent = &path[..depth];
        let empty = lookup(value, parent).is_some_and(|node| match node {
            Value::Object(map) => map.is_empty(),
            Value::Array(items) => items.is_empty(),
            _ => false,
        });
        if !empty || !may_remove_parent(parent) {
            break;
        }
        remove(value, parent);
    }
}

fn lookup<'a>(value: &'a Value, path: &[Element]) -> Option<&'a Value> {
    let mut node = value;
    for element in path {
        node = match (element, node) {
            (Element::Field(name), Value::Object(map)) => map.get(name)?,
            (Element::Key(key), Value::Array(items)) => items.iter().find(|item| {
                key.iter()
                    .all(|(name, value)| item.get(name) == Some(value))
            })?,
            _ => return None,
        };
    }
    Some(node)
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: Option<String>,
    pub fields: Set,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Owner {
    /// Apply owners are one per manager; Update owners one per manager and version.
    fn same_identity(&self, manager: &str, operation: Operation, api_version: &str) -> bool {
        self.manager == manager
            && self.operation == operation
            && (operation == Operation::Apply || self.api_version == api_version)
    }

    /// How conflicts name the owner: `"m"` or `"m" using v1`.
    pub fn describe(&self) -> String {
        match self.operation {
            Operation::Apply => format!("{:?}", self.manager),
            Operation::Update => format!("{:?} using {}", self.manager, self.api_version),
        }
    }
}

/// Fields another owner holds with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub owner: String,
    pub path: String,
}

/// The Kubernetes message for a set of conflicts (§4).
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.owner, only.path
        );
    }
    let mut owners: Vec<&str> = conflicts.iter().map(|c| c.owner.as_str()).collect();
    owners.sort();
    owners.dedup();
    let mut message = format!("Apply failed with {} conflicts:", conflicts.len());
    for owner in owners {
        message.push_str(&format!(" conflicts with {owner}:"));
        for conflict in conflicts.iter().filter(|c| c.owner == owner) {
            message.push_str(&format!("\n- {}", conflict.path));
        }
    }
    message
}

/// The result of a successful apply.
#[derive(Debug, Clone)]
pub struct Applied {
    pub object: Value,
    pub owners: Vec<Owner>,
    pub changed: bool,
}

/// Who writes: the field manager, the request's group/version, and the time to record.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub now: &'a str,
}

/// A server-side apply of `config` onto `live` (§2, steps 2-8); `force` takes over
/// conflicting fields instead of failing.
pub fn apply(
    live: &Value,
    owners: &[Owner],
    config: &Value,
    writer: Writer<'_>,
    force: bool,
    schema: &ObjectSchema,
) -> Result<Applied, Vec<Conflict>> {
    let Writer {
        manager,
        api_version,
        now,
    } = writer;
    let mut owners = owners.to_vec();
    if owners.is_empty() && live.as_object().is_some_and(|m| !m.is_empty()) {
        let mut everything = compare(&Value::Object(Map::new()), live, schema).added;
        strip(&mut everything);
        if !everything.is_empty() {
            owners.push(Owner {
                manager: "before-first-apply".to_string(),
                operation: Operation::Update,
                api_version: api_version.to_string(),
                time: None,
                fields: everything,
            });
        }
    }
    let new_set = apply_set(config, schema);
    let previous = owners
        .iter()
        .find(|o| o.same_identity(manager, Operation::Apply, api_version))
        .map(|o| o.fields.clone())
        .unwrap_or_default();
    let mut merged = merge(live, config, schema);

    // Prune what only this applier held and no longer applies.
    let others: Vec<&Owner> = owners
        .iter()
        .filter(|o| !o.same_identity(manager, Operation::Apply, api_version))
        .collect();
    let owned_by_others = |path: &[Element]| others.iter().any(|o| o.fields.has_prefix(path));
    for path in previous.difference(&new_set).iter() {
        if !owned_by_others(path) {
            let may_remove_parent =
                |parent: &[Element]| !owned_by_others(parent) && !new_set.has_prefix(parent);
            remove_path(&mut merged, path, &may_remove_parent);
        }
    }

    let changes = compare(live, &merged, schema);
    let touched = changes.added.union(&changes.modified);
    let mut conflicts = Vec::new();
    for other in &others {
        for path in other.fields.intersection(&touched).iter() {
            conflicts.push(Conflict {
                owner: other.describe(),
                path: display(path),
            });
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    let changed = merged != *live;
    for owner in owners.iter_mut() {
        if owner.same_identity(manager, Operation::Apply, api_version) {
            continue;
        }
        // Forced paths move to the applier; removed paths leave everyone.
        owner.fields = owner
            .fields
            .difference(&touched)
            .difference(&changes.removed);
    }
    match owners
        .iter_mut()
        .find(|o| o.same_identity(manager, Operation::Apply, api_version))
    {
        Some(owner) => {
            if changed {
                owner.time = Some(now.to_string());
            }
            owner.fields = new_set;
            owner.api_version = api_version.to_string();
        }
        None => owners.push(Owner {
            manager: manager.to_string(),
            operation: Operation::Apply,
            api_version: api_version.to_string(),
            time: changed.then(|| now.to_string()),
            fields: new_set,
        }),
    }
    owners.retain(|o| !o.fields.is_empty());
    sort(&mut owners);
    Ok(Applied {
        object: merged,
        owners,
        changed,
    })
}

/// A non-apply write (POST, PUT, patch): the writer takes what it changed (§3).
pub fn update(
    old: &Value,
    new: &Value,
    owners: &[Owner],
    writer: Writer<'_>,
    schema: &ObjectSchema,
) -> Vec<Owner> {
    let Writer {
        manager,
        api_version,
        now,
    } = writer;
    let mut owners = owners.to_vec();
    let changes = compare(old, new, schema);
    let claimed = changes.added.union(&changes.modified);
    for owner in owners.iter_mut() {
        owner.fields = owner
            .fields
            .difference(&claimed)
            .difference(&changes.removed);
    }
    if !claimed.is_empty() {
        match owners
            .iter_mut()
            .find(|o| o.same_identity(manager, Operation::Update, api_version))
        {
            Some(owner) => {
                owner.fields = owner.fields.union(&claimed);
                owner.time = Some(now.to_string());
            }
            None => owners.push(Owner {
                manager: manager.to_string(),
                operation: Operation::Update,
                api_version: api_version.to_string(),
                time: Some(now.to_string()),
                fields: claimed,
            }),
        }
    }
    owners.retain(|o| !o.fields.is_empty());
    cap_update_owners(&mut owners);
    sort(&mut owners);
    owners
}

/// At most this many Update owners are kept (§1, `fm` DefaultMaxUpdateManagers).
const MAX_UPDATE_OWNERS: usize = 10;
const ANCIENT: &str = "ancient-changes";

/// Folds the oldest Update owners, per apiVersion, into `ancient-changes` until at most
/// ten remain (`cap`).
fn cap_update_owners(owners: &mut Vec<Owner>) {
    let updates = |owners: &Vec<Owner>| {
        owners
            .iter()
            .filter(|o| o.operation == Operation::Update)
            .count()
    };
    while updates(owners) > MAX_UPDATE_OWNERS {
        let Some(oldest) = owners
            .iter()
            .enumerate()
            .filter(|(_, o)| o.operation == Operation::Update && o.manager != ANCIENT)
            .min_by(|(_, a), (_, b)| a.time.cmp(&b.time).then_with(|| a.manager.cmp(&b.manager)))
            .map(|(i, _)| i)
        else {
            return;
        };
        let old = owners.remove(oldest);
        match owners.iter_mut().find(|o| {
            o.operation == Operation::Update
                && o.manager == ANCIENT
                && o.api_version == old.api_version
        }) {
            Some(ancient) => {
                ancient.fields = ancient.fields.union(&old.fields);
                ancient.time = ancient.time.clone().max(old.time);
            }
            None => owners.push(Owner {
                manager: ANCIENT.to_string(),
                ..old
            }),
        }
    }
}

fn sort(owners: &mut [Owner]) {
    owners.sort_by(|a, b| {
        a.operation
            .cmp(&b.operation)
            .then_with(|| {
                a.time
                    .clone()
                    .unwrap_or_default()
                    .cmp(&b.time.clone().unwrap_or_default())
            })
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| a.api_version.cmp(&b.api_version))
    });
}

/// `metadata.managedFields` as the API returns it.
pub fn to_managed_fields(owners: &[Owner]) -> Value {
    Value::Array(
        owners
            .iter()
            .map(|owner| {
                let mut entry = Map::new();
                entry.insert("manager".into(), Value::String(owner.manager.clone()));
                entry.insert(
                    "operation".into(),
                    Value::String(match owner.operation {
                        Operation::Apply => "Apply".into(),
                        Operation::Update => "Update".into(),
                    }),
                );
                entry.insert(
                    "apiVersion".into(),
                    Value::String(owner.api_version.clone()),
                );
                if let Some(time) = &owner.time {
                    entry.insert("time".into(), Value::String(time.clone()));
                }
                entry.insert("fieldsType".into(), Value::String("FieldsV1".into()));
                entry.insert("fieldsV1".into(), owner.fields.to_fields_v1());
                Value::Object(entry)
            })
            .collect(),
    )
}

/// Reads `metadata.managedFields`.
pub fn from_managed_fields(value: Option<&Value>) -> Vec<Owner> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            Some(Owner {
                manager: entry.get("manager")?.as_str()?.to_string(),
                operation: match entry.get("operation")?.as_str()? {
                    "Apply" => Operation::Apply,
                    _ => Operation::Update,
                },
                api_version: entry
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                time: entry
                    .get("time")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                fields: Set::from_fields_v1(entry.get("fieldsV1")?),
            })
        })
        .collect()
}
