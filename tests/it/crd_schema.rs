//! Velero's real CRD schemas (from ../shared/velero-crds) as a checker: what the API
//! server would refuse, and what it would silently prune as unknown.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use serde_json::Value;

/// The shared material beside the repository (`STOWAGE_SHARED` overrides).
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("STOWAGE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    assert!(
        dir.join("velero-crds").is_dir(),
        "Velero's CRDs are missing: expected {}/velero-crds (set STOWAGE_SHARED to the shared/ folder)",
        dir.display()
    );
    dir
}

/// `openAPIV3Schema` of each Velero kind, by kind name.
pub fn velero_schemas() -> BTreeMap<String, Value> {
    let mut schemas = BTreeMap::new();
    let dir = shared_dir().join("velero-crds");
    for entry in std::fs::read_dir(&dir).expect("read velero-crds") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read CRD");
        let crd: Value = serde_saphyr::from_str(&text).expect("CRD is YAML");
        let kind = crd["spec"]["names"]["kind"]
            .as_str()
            .expect("kind")
            .to_string();
        let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
        schemas.insert(kind, schema);
    }
    assert!(schemas.contains_key("BackupStorageLocation") && schemas.contains_key("Schedule"));
    schemas
}

/// Every way `value` breaks `schema`: wrong types, missing required fields, values
/// outside an enum, and fields that would be pruned as unknown.
pub fn problems(schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(schema, value, "", &mut out);
    out
}

fn check(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            out.push(format!("{path}: null is not allowed"));
        }
        return;
    }
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    let expected = schema.get("type").and_then(Value::as_str);
    let fits = match (expected, value) {
        (None, _) => true,
        (Some("object"), Value::Object(_))
        | (Some("array"), Value::Array(_))
        | (Some("string"), Value::String(_))
        | (Some("boolean"), Value::Bool(_)) => true,
        (Some("integer"), Value::Number(n)) => n.is_i64() || n.is_u64(),
        (Some("number"), Value::Number(_)) => true,
        _ => false,
    };
    if !fits {
        out.push(format!(
            "{path}: expected {}, found {value}",
            expected.unwrap_or("?")
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        out.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    if schema.get("format").and_then(Value::as_str) == Some("byte")
        && let Some(text) = value.as_str()
        && base64::engine::general_purpose::STANDARD
            .decode(text)
            .is_err()
    {
        out.push(format!("{path}: not base64"));
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            if path == ".metadata" {
                return;
            }
            for (key, child) in map {
                let child_path = format!("{path}.{key}");
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(child_schema), _) => check(child_schema, child, &child_path, out),
                    (None, Some(additional)) if additional.is_object() => {
                        check(additional, child, &child_path, out)
                    }
                    (None, _) if properties.is_some() => {
                        out.push(format!("{child_path}: unknown field, would be pruned"))
                    }
                    (None, _) => {}
                }
            }
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = required.as_str().unwrap_or_default();
                if !map.contains_key(name) {
                    out.push(format!("{path}: missing required field {name}"));
                }
            }
        }
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                out.push(format!("{path}: fewer than {min} items"));
            }
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{index}]"), out);
                }
            }
        }
        _ => {}
    }
}

#[test]
fn the_checker_catches_what_the_api_server_refuses_or_prunes() {
    let schemas = velero_schemas();
    let bsl = &schemas["BackupStorageLocation"];
    let good = serde_json::json!({
        "apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
        "metadata": {"name": "a"},
        "spec": {"provider": "aws", "objectStorage": {"bucket": "b"}, "accessMode": "ReadWrite"}
    });
    assert_eq!(problems(bsl, &good), Vec::<String>::new());
    let bad = serde_json::json!({
        "apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
        "metadata": {"name": "a"},
        "spec": {"provider": "aws", "objectStorage": {"prefix": "p"}, "accessMode": "Bogus", "dataMover": "x"}
    });
    let found = problems(bsl, &bad);
    assert_eq!(found.len(), 3, "{found:?}");
}
