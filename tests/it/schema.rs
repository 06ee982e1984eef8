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
