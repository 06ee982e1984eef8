//! Velero's real CRD schemas (from ../shared/velero-crds) as a checker: what the API
//! server would refuse, and what it would silently prune as unknown.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use stowage_test_apiserver::structural;

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

/// Every way `value` breaks `schema`: what the API server would refuse (wrong types,
/// missing required fields, values outside an enum) and what it would silently prune
/// as unknown.
pub fn problems(schema: &Value, value: &Value) -> Vec<String> {
    let mut pruned_copy = value.clone();
    let pruned = structural::prune(schema, &mut pruned_copy);
    let mut out: Vec<String> = pruned
        .into_iter()
        .map(|field| format!("{field}: unknown field, would be pruned"))
        .collect();
    out.extend(
        structural::validate(schema, value)
            .into_iter()
            .map(|error| format!("{}: {}", error.field, error.message)),
    );
    out
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
