//! Velero's real CRD schemas as a checker: a server-side dry-run apply against the real
//! API server (`dryRun=All`, strict field validation), whose CRDs come from the real
//! velero binary. What it refuses, and every field it would prune as unknown, is a
//! problem.

use serde_json::{Value, json};

use crate::cluster::stack;

/// Every way the real API server objects to `manifest`, applied (dry run) in
/// `namespace`: refused values and unknown fields, in the server's own words.
pub fn problems(manifest: &Value, namespace: &str) -> Vec<String> {
    let mut object = manifest.clone();
    object["metadata"]["namespace"] = json!(namespace);
    match stack().dry_run_apply(object, "stowage") {
        Ok(_) => Vec::new(),
        Err(kube::Error::Api(status)) => vec![status.message],
        Err(other) => panic!("the dry run did not reach the server: {other}"),
    }
}

#[test]
fn the_checker_catches_what_the_api_server_refuses_or_prunes() {
    let ns = stack().namespace("crd-checker");
    let good = json!({
        "apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
        "metadata": {"name": "a"},
        "spec": {"provider": "aws", "objectStorage": {"bucket": "b"}, "accessMode": "ReadWrite"}
    });
    assert_eq!(problems(&good, &ns.name), Vec::<String>::new());
    // Refused values: the real CRD validation, every error at once.
    let refused = json!({
        "apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
        "metadata": {"name": "a"},
        "spec": {"provider": "aws", "objectStorage": {"prefix": "p"}, "accessMode": "Bogus"}
    });
    let found = problems(&refused, &ns.name).join("\n");
    for expected in [
        "spec.objectStorage.bucket: Required value",
        "spec.accessMode: Unsupported value: \"Bogus\"",
    ] {
        assert!(found.contains(expected), "{expected} missing from: {found}");
    }
    // An unknown field: server-side apply refuses it rather than prune it silently.
    let unknown = json!({
        "apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
        "metadata": {"name": "a"},
        "spec": {"provider": "aws", "objectStorage": {"bucket": "b"}, "dataMover": "x"}
    });
    let found = problems(&unknown, &ns.name).join("\n");
    assert!(
        found.contains(".spec.dataMover: field not declared in schema"),
        "{found}"
    );
    assert!(
        ns.get("velero.io/v1", "BackupStorageLocation", "a")
            .is_none(),
        "a dry run stores nothing"
    );
}
