//! The worked examples of ssa-semantics.md §6 (BSL, Secret, Schedule), replayed:
//! the managedFields, conflicts and results it states.

use serde_json::{Value, json};
use stowage_test_apiserver::ssa::{
    Applied, ObjectSchema, Owner, Writer, apply, conflict_message, update,
};

const V1: &str = "velero.io/v1";
const NOW: &str = "2026-01-02T03:04:05Z";

fn crd_schema(file: &str) -> ObjectSchema {
    let dir = std::env::var_os("STOWAGE_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
        });
    let path = dir.join("velero-crds").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "Velero's CRDs are missing at {} (set STOWAGE_SHARED)",
            path.display()
        )
    });
    let crd: Value = serde_saphyr::from_str(&text).expect("CRD YAML");
    ObjectSchema::new(&crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
}

fn secret_schema() -> ObjectSchema {
    ObjectSchema::new(&json!({"type": "object", "properties": {
        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
        "type": {"type": "string"},
        "data": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
        "stringData": {"type": "object", "additionalProperties": {"type": "string"}}}}))
}

fn bsl(spec: Value) -> Value {
    json!({"apiVersion": V1, "kind": "BackupStorageLocation", "metadata": {"name": "default", "namespace": "velero"}, "spec": spec})
}

fn by(manager: &'static str, api_version: &'static str) -> Writer<'static> {
    Writer {
        manager,
        api_version,
        now: NOW,
    }
}

fn fields(owners: &[Owner], manager: &str) -> String {
    owners
        .iter()
        .find(|o| o.manager == manager)
        .map(|o| o.fields.to_fields_v1_text())
        .unwrap_or_else(|| "<no entry>".to_string())
}

fn ok(result: Result<Applied, Vec<stowage_test_apiserver::ssa::Conflict>>) -> Applied {
    result.unwrap_or_else(|conflicts| {
        panic!("unexpected conflicts: {}", conflict_message(&conflicts))
    })
}

#[test]
fn section_1_update_and_apply_record_different_sets() {
    let schema = crd_schema("velero.io_backupstoragelocations.yaml");
    let object = bsl(
        json!({"provider": "aws", "objectStorage": {"bucket": "b"}, "config": {"region": "r"}, "credential": {"name": "n", "key": "k"}}),
    );
    let posted = update(&json!({}), &object, &[], by("velero", V1), &schema);
    assert_eq!(
        fields(&posted, "velero"),
        r#"{"f:spec":{".":{},"f:config":{".":{},"f:region":{}},"f:credential":{},"f:objectStorage":{".":{},"f:bucket":{}},"f:provider":{}}}"#
    );
    let applied = ok(apply(
        &json!({}),
        &[],
        &object,
        by("tool", V1),
        false,
        &schema,
    ));
    assert_eq!(
        fields(&applied.owners, "tool"),
        r#"{"f:spec":{"f:config":{"f:region":{}},"f:credential":{},"f:objectStorage":{"f:bucket":{}},"f:provider":{}}}"#
    );
}

#[test]
fn section_6_1_bsl_shared_conflicting_forced_and_given_up() {
    let schema = crd_schema("velero.io_backupstoragelocations.yaml");
    // 1. velero POSTs.
    let created = bsl(json!({"provider": "aws", "default": true,
        "objectStorage": {"bucket": "b", "prefix": "p"},
        "config": {"region": "r", "s3ForcePathStyle": "true"},
        "credential": {"name": "n", "key": "k"}}));
    let owners = update(&json!({}), &created, &[], by("velero", V1), &schema);
    assert_eq!(
        fields(&owners, "velero"),
        r#"{"f:spec":{".":{},"f:config":{".":{},"f:region":{},"f:s3ForcePathStyle":{}},"f:credential":{},"f:default":{},"f:objectStorage":{".":{},"f:bucket":{},"f:prefix":{}},"f:provider":{}}}"#
    );
    // 2. tool applies the same values: shared, no conflict, nothing changes.
    let same = bsl(
        json!({"provider": "aws", "objectStorage": {"bucket": "b"}, "config": {"region": "r"}, "credential": {"name": "n", "key": "k"}}),
    );
    let shared = ok(apply(
        &created,
        &owners,
        &same,
        by("tool", V1),
        false,
        &schema,
    ));
    assert!(!shared.changed);
    assert_eq!(shared.object, created);
    assert!(fields(&shared.owners, "velero").contains("f:bucket"));
    assert!(fields(&shared.owners, "tool").contains("f:bucket"));
    // 3. tool moves the bucket: a conflict with velero; forced, velero keeps the rest.
    let moved = bsl(
        json!({"provider": "aws", "objectStorage": {"bucket": "b2"}, "config": {"region": "r"}, "credential": {"name": "n", "key": "k"}}),
    );
    let conflicts = apply(
        &shared.object,
        &shared.owners,
        &moved,
        by("tool", V1),
        false,
        &schema,
    )
    .unwrap_err();
    assert_eq!(
        conflict_message(&conflicts),
        r#"Apply failed with 1 conflict: conflict with "velero" using velero.io/v1: .spec.objectStorage.bucket"#
    );
    let forced = ok(apply(
        &shared.object,
        &shared.owners,
        &moved,
        by("tool", V1),
        true,
        &schema,
    ));
    assert_eq!(forced.object["spec"]["objectStorage"]["bucket"], "b2");
    let velero = fields(&forced.owners, "velero");
    assert!(
        velero.contains(r#""f:objectStorage":{".":{},"f:prefix":{}}"#),
        "{velero}"
    );
    // 4. tool omits config: region stays (velero owns it), tool gives f:config up.
    let no_config = bsl(
        json!({"provider": "aws", "objectStorage": {"bucket": "b2"}, "credential": {"name": "n", "key": "k"}}),
    );
    let omitted = ok(apply(
        &forced.object,
        &forced.owners,
        &no_config,
        by("tool", V1),
        false,
        &schema,
    ));
    assert_eq!(omitted.object["spec"]["config"]["region"], "r");
    assert!(!fields(&omitted.owners, "tool").contains("f:config"));
    // 5. tool applies another credential: the atomic map conflicts as a whole.
    let other = bsl(
        json!({"provider": "aws", "objectStorage": {"bucket": "b2"}, "credential": {"name": "other", "key": "cloud"}}),
    );
    let conflicts = apply(
        &omitted.object,
        &omitted.owners,
        &other,
        by("tool", V1),
        false,
        &schema,
    )
    .unwrap_err();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].path, ".spec.credential");
}

#[test]
fn section_6_1_apply_only_lifecycle_and_an_editor() {
    let schema = crd_schema("velero.io_backupstoragelocations.yaml");
    let first = bsl(
        json!({"provider": "aws", "objectStorage": {"bucket": "b", "prefix": "p"}, "config": {"region": "r", "profile": "x"}}),
    );
    let one = ok(apply(
        &json!({}),
        &[],
        &first,
        by("tool", V1),
        false,
        &schema,
    ));
    let second = bsl(
        json!({"provider": "aws", "objectStorage": {"bucket": "b"}, "config": {"region": "r"}}),
    );
    let two = ok(apply(
        &one.object,
        &one.owners,
        &second,
        by("tool", V1),
        false,
        &schema,
    ));
    assert_eq!(two.object["spec"]["objectStorage"], json!({"bucket": "b"}));
    assert_eq!(two.object["spec"]["config"], json!({"region": "r"}));
    let third = bsl(json!({"provider": "aws", "objectStorage": {"bucket": "b"}}));
    let three = ok(apply(
        &two.object,
        &two.owners,
        &third,
        by("tool", V1),
        false,
        &schema,
    ));
    assert!(
        three.object["spec"].get("config").is_none(),
        "{}",
        three.object
    );

    // kubectl-edit PUTs prefix and config.region; applies that omit them keep them.
    let mut edited = three.object.clone();
    edited["spec"]["objectStorage"]["prefix"] = json!("edited");
    edited["spec"]["config"] = json!({"region": "eu-west-1"});
    let owners = update(
        &three.object,
        &edited,
        &three.owners,
        by("kubectl-edit", V1),
        &schema,
    );
    let kept = ok(apply(
        &edited,
        &owners,
        &third,
        by("tool", V1),
        false,
        &schema,
    ));
    assert_eq!(kept.object["spec"]["objectStorage"]["prefix"], "edited");
    assert_eq!(kept.object["spec"]["config"]["region"], "eu-west-1");
    let region = bsl(
        json!({"provider": "aws", "objectStorage": {"bucket": "b"}, "config": {"region": "us-east-1"}}),
    );
    let conflicts = apply(
        &kept.object,
        &kept.owners,
        &region,
        by("tool", V1),
        false,
        &schema,
    )
    .unwrap_err();
    assert_eq!(
        conflict_message(&conflicts),
        r#"Apply failed with 1 conflict: conflict with "kubectl-edit" using velero.io/v1: .spec.config.region"#
    );
}

#[test]
fn section_6_2_secret_keys_are_separate_fields() {
    let schema = secret_schema();
    let secret = |data: Value| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque", "data": data});
    let a = ok(apply(
        &json!({}),
        &[],
        &secret(json!({"username": "dQ=="})),
        by("a", "v1"),
        false,
        &schema,
    ));
    let b = ok(apply(
        &a.object,
        &a.owners,
        &secret(json!({"password": "cA=="})),
        by("b", "v1"),
        false,
        &schema,
    ));
    assert_eq!(
        fields(&b.owners, "a"),
        r#"{"f:data":{"f:username":{}},"f:type":{}}"#
    );
    assert_eq!(
        fields(&b.owners, "b"),
        r#"{"f:data":{"f:password":{}},"f:type":{}}"#
    );
    let conflicts = apply(
        &b.object,
        &b.owners,
        &secret(json!({"username": "dQ==", "password": "eA=="})),
        by("a", "v1"),
        false,
        &schema,
    )
    .unwrap_err();
    assert_eq!(conflicts[0].owner, r#""b""#);
    assert_eq!(conflicts[0].path, ".data.password");
    let without =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque"});
    let dropped = ok(apply(
        &b.object,
        &b.owners,
        &without,
        by("a", "v1"),
        false,
        &schema,
    ));
    assert_eq!(dropped.object["data"], json!({"password": "cA=="}));
    assert_eq!(dropped.object["type"], "Opaque");
    assert_eq!(fields(&dropped.owners, "a"), r#"{"f:type":{}}"#);
}

#[test]
fn section_6_3_schedule_lists_are_atomic() {
    let schema = crd_schema("velero.io_schedules.yaml");
    let schedule = |namespaces: Value| {
        json!({"apiVersion": V1, "kind": "Schedule", "metadata": {"name": "s"},
        "spec": {"schedule": "@daily", "template": {"includedNamespaces": namespaces}}})
    };
    let a = ok(apply(
        &json!({}),
        &[],
        &schedule(json!(["ns1", "ns2"])),
        by("a", V1),
        false,
        &schema,
    ));
    let b = ok(apply(
        &a.object,
        &a.owners,
        &schedule(json!(["ns1", "ns2"])),
        by("b", V1),
        false,
        &schema,
    ));
    assert!(fields(&b.owners, "a").contains(r#""f:includedNamespaces":{}"#));
    assert!(fields(&b.owners, "b").contains(r#""f:includedNamespaces":{}"#));
    let conflicts = apply(
        &b.object,
        &b.owners,
        &schedule(json!(["ns1", "ns2", "ns3"])),
        by("b", V1),
        false,
        &schema,
    )
    .unwrap_err();
    assert_eq!(conflicts[0].owner, r#""a""#);
    let reordered = apply(
        &b.object,
        &b.owners,
        &schedule(json!(["ns2", "ns1"])),
        by("a", V1),
        false,
        &schema,
    )
    .unwrap_err();
    assert_eq!(
        reordered[0].owner, r#""b""#,
        "order is part of an atomic value"
    );
    let omitted = json!({"apiVersion": V1, "kind": "Schedule", "metadata": {"name": "s"}, "spec": {"schedule": "@daily"}});
    let kept = ok(apply(
        &b.object,
        &b.owners,
        &omitted,
        by("a", V1),
        false,
        &schema,
    ));
    assert_eq!(
        kept.object["spec"]["template"]["includedNamespaces"],
        json!(["ns1", "ns2"])
    );
}

#[test]
fn objects_without_managed_fields_belong_to_before_first_apply() {
    let schema = crd_schema("velero.io_backupstoragelocations.yaml");
    let live = bsl(json!({"provider": "aws", "objectStorage": {"bucket": "b"}}));
    let conflicts = apply(
        &live,
        &[],
        &bsl(json!({"provider": "aws", "objectStorage": {"bucket": "c"}})),
        by("tool", V1),
        false,
        &schema,
    )
    .unwrap_err();
    assert_eq!(
        conflicts[0].owner,
        r#""before-first-apply" using velero.io/v1"#
    );
}

mod structural_schema {
    use serde_json::json;
    use stowage_test_apiserver::structural::{default, prune, unknown_field_errors, validate};

    fn bsl_schema() -> serde_json::Value {
        let dir = std::env::var_os("STOWAGE_SHARED")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
            });
        let text =
            std::fs::read_to_string(dir.join("velero-crds/velero.io_backupstoragelocations.yaml"))
                .expect("Velero's CRDs (set STOWAGE_SHARED)");
        let crd: serde_json::Value = serde_saphyr::from_str(&text).expect("yaml");
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    #[test]
    fn a_bad_velero_object_is_refused_as_the_real_server_refuses_it() {
        let schema = bsl_schema();
        let object = json!({"apiVersion": "velero.io/v1", "kind": "BackupStorageLocation", "metadata": {"name": "a"},
            "spec": {"provider": "aws", "accessMode": "Bogus", "objectStorage": {"prefix": "p"}}});
        let errors = validate(&schema, &object);
        let shown: Vec<(&str, &str, &str)> = errors
            .iter()
            .map(|e| (e.reason, e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "FieldValueNotSupported",
                    "spec.accessMode",
                    r#"Unsupported value: "Bogus": supported values: "ReadOnly", "ReadWrite""#
                ),
                (
                    "FieldValueRequired",
                    "spec.objectStorage.bucket",
                    "Required value"
                ),
            ]
        );
    }

    #[test]
    fn misspelt_fields_are_pruned_or_refused_under_strict() {
        let schema = bsl_schema();
        let mut object = json!({"apiVersion": "velero.io/v1", "kind": "BackupStorageLocation", "metadata": {"name": "a", "labels": {"x": "y"}},
            "spec": {"provider": "aws", "objectStorage": {"bucket": "b", "bukcet": "c"}, "dataMover": "x", "config": {"anyKey": "kept"}}});
        let pruned = prune(&schema, &mut object);
        assert_eq!(pruned, ["spec.dataMover", "spec.objectStorage.bukcet"]);
        assert_eq!(
            object["spec"]["config"]["anyKey"], "kept",
            "additionalProperties keys are data"
        );
        assert_eq!(object["metadata"]["labels"]["x"], "y");
        let strict = unknown_field_errors(&pruned);
        assert_eq!(strict[0].message, r#"unknown field "spec.dataMover""#);
    }

    #[test]
    fn defaults_fill_present_objects() {
        let schema = bsl_schema();
        let mut object = json!({"spec": {"provider": "aws", "objectStorage": {"bucket": "b"}, "credential": {"key": "cloud"}}});
        default(&schema, &mut object);
        assert_eq!(
            object["spec"]["credential"],
            json!({"key": "cloud", "name": ""})
        );
    }
}

#[test]
fn at_most_ten_update_owners_the_oldest_fold_into_ancient_changes() {
    let schema = crd_schema("velero.io_backupstoragelocations.yaml");
    let mut object = bsl(json!({"provider": "aws", "objectStorage": {"bucket": "b"}}));
    let mut owners: Vec<Owner> = Vec::new();
    for i in 0..12 {
        let mut next = object.clone();
        next["metadata"]["labels"] = json!({format!("writer-{i:02}"): "x"});
        next["metadata"]["labels"].as_object_mut().unwrap().extend(
            object["metadata"]["labels"]
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        let manager = format!("writer-{i:02}");
        let time = format!("2026-01-02T03:04:{i:02}Z");
        owners = update(
            &object,
            &next,
            &owners,
            Writer {
                manager: &manager,
                api_version: V1,
                now: &time,
            },
            &schema,
        );
        object = next;
    }
    let managers: Vec<&str> = owners.iter().map(|o| o.manager.as_str()).collect();
    assert_eq!(managers.len(), 10);
    assert_eq!(managers[0], "ancient-changes", "{managers:?}");
    let ancient = &owners[0];
    assert_eq!(
        ancient.fields.to_fields_v1_text(),
        r#"{"f:metadata":{"f:labels":{".":{},"f:writer-00":{},"f:writer-01":{},"f:writer-02":{}}}}"#
    );
    assert!(!managers.contains(&"writer-02") && managers.contains(&"writer-03"));
}

#[test]
fn live_only_list_items_keep_their_place_among_the_applied_ones() {
    let schema = ObjectSchema::new(&json!({"type": "object", "properties": {
        "set": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"}}}));
    // SMD's visitListItems walk: the config orders the shared items (b before a), the
    // live-only x and y stay where they were relative to them.
    let merged = stowage_test_apiserver::ssa::merge(
        &json!({"set": ["a", "x", "b", "y"]}),
        &json!({"set": ["b", "a"]}),
        &schema,
    );
    assert_eq!(merged, json!({"set": ["x", "b", "y", "a"]}));
    // SMD's apply_twice_reorder: a reordered config reorders the list.
    let merged = stowage_test_apiserver::ssa::merge(
        &json!({"set": ["a", "b", "c", "d"]}),
        &json!({"set": ["a", "d", "c", "b"]}),
        &schema,
    );
    assert_eq!(merged, json!({"set": ["a", "d", "c", "b"]}));
}
