//! The committed JSON Schema is exactly what `stowage schema` prints.

use std::path::Path;

#[test]
fn committed_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/stowage.schema.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let current = stowage::config::json_schema_text();
    assert!(
        committed == current,
        "schema/stowage.schema.json is stale: run `cargo run -- schema > schema/stowage.schema.json`"
    );
}

#[test]
fn committed_overlay_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/stowage-overlay.schema.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == stowage::config::overlay_schema_text(),
        "schema/stowage-overlay.schema.json is stale: run `cargo run -- schema --overlay > schema/stowage-overlay.schema.json`"
    );
}

/// The keys the loader consumes before the model sees the file are in the editors'
/// schemas; an overlay's schema requires nothing, the full one what the model does.
#[test]
fn editor_schemas_know_extends_and_drop() {
    let full: serde_json::Value =
        serde_json::from_str(&stowage::config::json_schema_text()).unwrap();
    let overlay: serde_json::Value =
        serde_json::from_str(&stowage::config::overlay_schema_text()).unwrap();
    for schema in [&full, &overlay] {
        assert_eq!(schema["properties"]["extends"]["type"], "string");
        for entry in [
            "Credential",
            "BackupLocation",
            "SnapshotLocation",
            "Schedule",
        ] {
            assert_eq!(
                schema["$defs"][entry]["properties"]["drop"]["type"], "boolean",
                "{entry}"
            );
        }
    }
    assert_eq!(full["required"], serde_json::json!(["version"]));
    assert!(
        full["$defs"]["BackupLocation"]["required"]
            .as_array()
            .is_some_and(|r| r.contains(&serde_json::json!("bucket")))
    );
    assert!(!overlay.to_string().contains("\"required\""));
    // The loader itself still refuses `drop` where it means nothing (tests/it/extends.rs).
}

#[test]
fn schema_closes_every_table() {
    // Editors flag unknown keys only where the schema says additionalProperties: false.
    let schema = stowage::config::json_schema();
    let defs = schema["$defs"].as_object().expect("$defs");
    assert_eq!(schema["additionalProperties"], false);
    for (name, def) in defs {
        if def["type"] == "object" && def.get("properties").is_some() {
            assert_eq!(def["additionalProperties"], false, "{name} is open");
        }
    }
}
