//! Planning against a saved state: round trips, adoption of a real `velero install`,
//! risks, golden output of the three renderers, and the canary secret in none of them.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use stowage::observe::{BucketFindings, BucketReport, BucketStatus, Observed, from_yaml};
use stowage::plan::{Action, Context, FieldValue, Plan, Risk, plan};
use stowage::render::{Desired, render, secret_manifest};
use stowage::velero::Kind;

use crate::support::{assert_exit, example_files, fixture};

fn desired_of(path: &Path) -> Desired {
    let checked = crate::support::check_example(path);
    assert!(
        checked.diagnostics.iter().all(|d| !d.is_error()),
        "{:#?}",
        checked.diagnostics
    );
    let loaded = &checked.loaded;
    render(loaded.config.as_ref().expect("model"), &loaded.materials)
}

/// The rendered objects as the API server would hand them back after Velero ran:
/// server metadata, status written, skipImmediately reset, a losing default unset.
fn as_cluster_after_velero(desired: &Desired) -> Vec<Value> {
    let mut items = Vec::new();
    for (index, object) in desired.objects.iter().enumerate() {
        let mut manifest = object.manifest.to_value();
        let metadata = manifest["metadata"].as_object_mut().expect("metadata");
        metadata.insert(
            "uid".into(),
            json!(format!("00000000-0000-0000-0000-{index:012}")),
        );
        metadata.insert("resourceVersion".into(), json!(format!("{}", 1000 + index)));
        metadata.insert("generation".into(), json!(42));
        metadata.insert("creationTimestamp".into(), json!("2025-06-02T14:03:12Z"));
        metadata.insert(
            "managedFields".into(),
            json!([{"manager": "stowage", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]),
        );
        match object.object.kind {
            Kind::BackupStorageLocation => {
                let spec = manifest["spec"].as_object_mut().expect("spec");
                if spec.get("default") != Some(&Value::Bool(true)) {
                    spec.insert("default".into(), json!(false));
                }
                manifest["status"] =
                    json!({"phase": "Available", "lastValidationTime": "2025-06-03T09:27:08Z"});
            }
            Kind::Schedule => {
                manifest["spec"]["skipImmediately"] = json!(false);
                manifest["status"] =
                    json!({"phase": "Enabled", "lastBackup": "2025-06-03T01:00:36Z"});
            }
            _ => {}
        }
        items.push(manifest);
    }
    for secret in &desired.secrets {
        let mut manifest = serde_json::to_value(secret_manifest(secret)).expect("secret");
        manifest["kind"] = json!("Secret");
        manifest["apiVersion"] = json!("v1");
        items.push(manifest);
    }
    items.extend(external_secrets(desired));
    items
}

/// The Secrets that `external` credentials expect, made by someone else.
fn external_secrets(desired: &Desired) -> Vec<Value> {
    // One Secret per name, holding every key the file expects of it.
    let mut secrets: std::collections::BTreeMap<&str, Value> = Default::default();
    for external in &desired.external {
        let secret = secrets.entry(external.secret.as_str()).or_insert_with(|| {
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": external.secret, "namespace": desired.namespace},
                   "data": {}})
        });
        secret["data"][external.key.as_str()] = json!("c2VjcmV0");
    }
    secrets.into_values().collect()
}

fn observed_from(items: Vec<Value>) -> Observed {
    let text =
        serde_saphyr::to_string(&json!({"apiVersion": "v1", "kind": "List", "items": items}))
            .expect("yaml");
    from_yaml("state.yaml", &text).expect("observed parses")
}

fn assert_no_changes(plan: &Plan, what: &str) {
    assert!(plan.changes.is_empty(), "{what}: {:#?}", plan.changes);
    assert!(
        plan.diagnostics.is_empty(),
        "{what}: {:#?}",
        plan.diagnostics
    );
    assert!(plan.unmanaged.is_empty(), "{what}: {:#?}", plan.unmanaged);
}

#[test]
fn render_then_observe_plans_no_changes_even_after_velero_writes() {
    for file in example_files() {
        let desired = desired_of(&file);
        // As applied, untouched.
        let mut pristine = Observed::default();
        for object in &desired.objects {
            pristine
                .add("rendered", object.manifest.to_value())
                .expect("add");
        }
        for secret in &desired.secrets {
            let mut manifest = serde_json::to_value(secret_manifest(secret)).expect("secret");
            manifest["kind"] = json!("Secret");
            pristine.add("rendered", manifest).expect("add");
        }
        for manifest in external_secrets(&desired) {
            pristine.add("rendered", manifest).expect("add");
        }
        assert_no_changes(
            &plan(&desired, &pristine, &Context::default()),
            &file.display().to_string(),
        );
        // Through YAML, after Velero's own mutations.
        let observed = observed_from(as_cluster_after_velero(&desired));
        assert_no_changes(
            &plan(&desired, &observed, &Context::default()),
            &file.display().to_string(),
        );
    }
}

const INSTALLED_AWS_FILE: &str = r#"version = 1
[credentials.cloud-credentials]
external = true
[backup_locations.default]
provider = "aws"
bucket = "velero-backups"
prefix = "cluster-a"
default = true
config = { region = "us-east-1" }
[snapshot_locations.default]
provider = "aws"
config = { region = "us-east-1" }
[schedules.daily]
cron = "0 1 * * *"
ttl = "720h"
"#;

fn fixture_state(name: &str) -> Observed {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("fixture");
    from_yaml(&path.display().to_string(), &text).expect("fixture parses")
}

#[test]
fn a_file_declaring_a_fresh_install_plans_only_adoptions() {
    let fixture = fixture("stowage.toml", INSTALLED_AWS_FILE, &[]);
    let desired = desired_of(&fixture.path);
    let observed = fixture_state("installed-aws.yaml");
    let plan = plan(&desired, &observed, &Context::default());
    assert!(plan.diagnostics.is_empty(), "{:#?}", plan.diagnostics);
    assert!(plan.unmanaged.is_empty(), "{:#?}", plan.unmanaged);
    let adopted: Vec<String> = plan.changes.iter().map(|c| c.object.to_string()).collect();
    assert_eq!(
        adopted,
        [
            "BackupStorageLocation/default",
            "VolumeSnapshotLocation/default",
            "Schedule/daily"
        ]
    );
    for change in &plan.changes {
        assert_eq!(change.action, Action::Update);
        assert_eq!(change.risks, [Risk::Adopt], "{}", change.object);
        // Adoption adds stowage's labels and nothing else: the CLI's explicit defaults
        // (hooks: {}, 0s timeouts, accessMode unset, useOwnerReferencesInBackup: false)
        // equal what the file leaves unset.
        let paths: Vec<String> = change.fields.iter().map(|f| f.path.to_string()).collect();
        assert_eq!(
            paths,
            [
                r#"metadata.labels["app.kubernetes.io/managed-by"]"#,
                r#"metadata.labels["stowage.io/owner"]"#
            ],
            "{}",
            change.object
        );
    }
}

#[test]
fn a_file_declaring_several_hand_made_locations_plans_only_adoptions() {
    let text = r#"version = 1
[credentials.cloud-credentials]
external = true
[credentials.credentials-bsl]
secret = "credentials"
key = "bsl"
external = true
[backup_locations.default]
provider = "aws"
bucket = "velero-backups"
prefix = "cluster-a"
default = true
config = { region = "us-east-1" }
[backup_locations.backups-secondary]
provider = "aws"
bucket = "velero-backups-west"
config = { region = "us-west-1" }
[backup_locations.other-account]
provider = "aws"
bucket = "velero-other"
credential = "credentials-bsl"
config = { region = "us-east-1" }
[snapshot_locations.default]
provider = "aws"
config = { region = "us-east-1" }
[snapshot_locations.portworx-cloud]
provider = "portworx.io/portworx"
config = { type = "cloud", credId = "c" }
[schedules.daily]
cron = "0 1 * * *"
ttl = "720h"
"#;
    let fixture = fixture("stowage.toml", text, &[]);
    let desired = desired_of(&fixture.path);
    let observed = fixture_state("multi-location.yaml");
    let plan = plan(&desired, &observed, &Context::default());
    // The file moved backups-secondary to its own bucket and spells the Portworx
    // provider the way its plugin registers: exactly those differ.
    let mut spec_changes = Vec::new();
    for change in &plan.changes {
        assert_eq!(change.action, Action::Update);
        assert!(change.risks.contains(&Risk::Adopt));
        for field in change.fields.iter().filter(|f| f.path.is_under("spec")) {
            spec_changes.push(format!("{} {}", change.object, field.path));
        }
    }
    assert_eq!(
        spec_changes,
        [
            "BackupStorageLocation/backups-secondary spec.objectStorage.bucket",
            "VolumeSnapshotLocation/portworx-cloud spec.config.credId",
            "VolumeSnapshotLocation/portworx-cloud spec.provider",
        ]
    );
    let repointed = plan
        .changes
        .iter()
        .find(|c| c.object.name == "backups-secondary")
        .expect("change");
    assert!(repointed.risks.contains(&Risk::Repoint));
}

fn bsl(name: &str, labels: Value, spec: Value) -> Value {
    json!({"apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
           "metadata": {"name": name, "namespace": "velero", "labels": labels}, "spec": spec})
}

fn ours() -> Value {
    json!({"app.kubernetes.io/managed-by": "stowage", "stowage.io/owner": "default"})
}

#[test]
fn risks_are_marked() {
    let text = r#"version = 1
[backup_locations.primary]
provider = "aws"
bucket = "velero-backups"
prefix = "moved"
config = { region = "us-east-1" }
[backup_locations.secondary]
provider = "aws"
bucket = "velero-dr"
default = true
config = { region = "us-west-2" }
[schedules.nightly]
cron = "0 2 * * *"
"#;
    let fixture = fixture("stowage.toml", text, &[]);
    let desired = desired_of(&fixture.path);
    let items = vec![
        bsl(
            "primary",
            ours(),
            json!({"provider": "aws", "default": true, "objectStorage": {"bucket": "velero-backups", "prefix": "cluster-a"}, "config": {"region": "us-east-1"}}),
        ),
        bsl(
            "secondary",
            ours(),
            json!({"provider": "aws", "objectStorage": {"bucket": "velero-dr"}, "config": {"region": "us-west-2"}}),
        ),
        bsl(
            "retired",
            ours(),
            json!({"provider": "aws", "objectStorage": {"bucket": "old"}}),
        ),
        json!({"apiVersion": "velero.io/v1", "kind": "VolumeSnapshotLocation",
               "metadata": {"name": "ebs-old", "namespace": "velero", "labels": ours()},
               "spec": {"provider": "aws", "config": {"region": "us-east-1"}}}),
        json!({"apiVersion": "velero.io/v1", "kind": "Schedule",
               "metadata": {"name": "nightly", "namespace": "velero", "labels": ours()},
               "spec": {"schedule": "0 2 * * *", "paused": true, "template": {}}}),
        json!({"apiVersion": "velero.io/v1", "kind": "Backup",
               "metadata": {"name": "nightly-20250601020000", "namespace": "velero", "labels": {"velero.io/storage-location": "retired"}},
               "spec": {"storageLocation": "retired", "volumeSnapshotLocations": ["ebs-old"]}}),
    ];
    let observed = observed_from(items);
    let plan = plan(&desired, &observed, &Context::default());
    let risks = |name: &str| -> Vec<Risk> {
        plan.changes
            .iter()
            .find(|c| c.object.name == name)
            .map(|c| c.risks.clone())
            .unwrap_or_default()
    };
    assert_eq!(risks("primary"), [Risk::Repoint, Risk::DefaultSwitch]);
    assert_eq!(risks("secondary"), [Risk::DefaultSwitch]);
    assert_eq!(risks("retired"), [Risk::DeleteWithBackups]);
    assert_eq!(risks("ebs-old"), [Risk::VslInUse]);
    assert_eq!(
        risks("nightly"),
        [Risk::ImmediateRun],
        "unpausing an old schedule fires it"
    );
    let retired = plan
        .changes
        .iter()
        .find(|c| c.object.name == "retired")
        .expect("delete");
    assert_eq!((retired.action, retired.backups), (Action::Delete, Some(1)));
    // Bucket checks know more backups than the cluster does.
    let context = Context {
        now: None,
        buckets: Some(BucketFindings {
            declared: Vec::new(),
            current: vec![BucketReport {
                location: "retired".to_string(),
                bucket: "old-bucket".to_string(),
                prefix: None,
                status: BucketStatus::Reachable {
                    backups: 12,
                    backups_capped: false,
                    foreign: Vec::new(),
                },
            }],
        }),
    };
    let with_buckets = stowage::plan::plan(&desired, &observed, &context);
    let retired = with_buckets
        .changes
        .iter()
        .find(|c| c.object.name == "retired")
        .expect("delete");
    assert_eq!(retired.backups, Some(12));

    // The places counted before planning are exactly the locations the plan deletes
    // or repoints: computed from declared and observed state, not from a first plan.
    let mut at_risk: Vec<String> = stowage::plan::places_at_risk(&desired, &observed)
        .into_iter()
        .map(|o| o.object.name.clone())
        .collect();
    at_risk.sort();
    let mut deleted_or_repointed: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.object.kind == Kind::BackupStorageLocation)
        .filter(|c| c.action == Action::Delete || c.risks.contains(&Risk::Repoint))
        .map(|c| c.object.name.clone())
        .collect();
    deleted_or_repointed.sort();
    assert!(!at_risk.is_empty());
    assert_eq!(at_risk, deleted_or_repointed);
}

#[test]
fn protected_locations_refuse_repoint_and_delete_and_owners_conflict() {
    let text = r#"version = 1
[backup_locations.primary]
provider = "aws"
bucket = "elsewhere"
default = true
protect = true
config = { region = "us-east-1" }
[schedules.shared]
cron = "@daily"
"#;
    let fixture = fixture("stowage.toml", text, &[]);
    let desired = desired_of(&fixture.path);
    let protected = json!({"stowage.io/protect": "true"});
    let mut primary = bsl(
        "primary",
        ours(),
        json!({"provider": "aws", "default": true, "objectStorage": {"bucket": "velero-backups"}, "config": {"region": "us-east-1"}}),
    );
    primary["metadata"]["annotations"] = protected.clone();
    let mut gone = bsl(
        "gone",
        ours(),
        json!({"provider": "aws", "objectStorage": {"bucket": "gone"}}),
    );
    gone["metadata"]["annotations"] = protected;
    let shared = json!({"apiVersion": "velero.io/v1", "kind": "Schedule",
        "metadata": {"name": "shared", "namespace": "velero", "labels": {"app.kubernetes.io/managed-by": "stowage", "stowage.io/owner": "team-b"}},
        "spec": {"schedule": "@daily", "template": {}}});
    let plan = plan(
        &desired,
        &observed_from(vec![primary, gone, shared]),
        &Context::default(),
    );
    let codes: Vec<&str> = plan.diagnostics.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "stowage::protected",
            "stowage::owner-conflict",
            "stowage::protected"
        ]
    );
    assert!(plan.has_errors());
}

#[test]
fn the_server_flag_is_planned_against_the_deployments_args() {
    let text = format!(
        "{INSTALLED_AWS_FILE}[velero]\nmanage_server_flags = true\ndefault_volume_snapshot_locations = {{ aws = \"default\" }}\n"
    );
    let fixture = fixture("stowage.toml", &text, &[]);
    let desired = desired_of(&fixture.path);
    let plan = plan(
        &desired,
        &fixture_state("installed-aws.yaml"),
        &Context::default(),
    );
    let change = plan
        .changes
        .iter()
        .find(|c| c.object.kind == Kind::Deployment)
        .expect("deployment change");
    let field = &change.fields[0];
    assert_eq!(
        field.path.to_string(),
        "spec.template.spec.containers[velero].args"
    );
    let stowage::plan::FieldValue::Value(after) = &field.after else {
        panic!("{field:?}")
    };
    assert_eq!(
        after,
        &json!([
            "server",
            "--features=",
            "--uploader-type=kopia",
            "--default-volume-snapshot-locations=aws:default"
        ])
    );
}

/// A file and a saved state whose plan has a create, updates (one of a secret), a
/// delete, an unmanaged object and one owned elsewhere.
fn golden_fixture(canary_new: &str, canary_old: &str) -> crate::support::Fixture {
    use base64::Engine as _;
    let ini = |secret: &str| {
        format!("[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = {secret}\n")
    };
    let text = r#"version = 1
[credentials.primary]
secret = "credentials"
key = "bsl"
file = "aws.ini"
[backup_locations.primary]
provider = "aws"
bucket = "velero-backups"
prefix = "cluster-a"
default = true
credential = "primary"
config = { region = "us-east-1" }
[backup_locations.dr]
provider = "aws"
bucket = "velero-dr"
credential = "primary"
config = { region = "us-west-2" }
[schedules.nightly]
cron = "0 3 * * *"
storage_locations = ["primary", "dr"]
included_namespaces = ["shop", "payments"]
ttl = "168h"
"#;
    let old = base64::engine::general_purpose::STANDARD.encode(ini(canary_old));
    let state = format!(
        r#"apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Secret
  metadata:
    name: credentials
    namespace: velero
    labels: {{app.kubernetes.io/managed-by: stowage, stowage.io/owner: default}}
  data:
    bsl: {old}
- apiVersion: velero.io/v1
  kind: BackupStorageLocation
  metadata:
    name: primary
    namespace: velero
    labels: {{app.kubernetes.io/managed-by: stowage, stowage.io/owner: default}}
  spec:
    provider: aws
    default: true
    credential: {{name: credentials, key: bsl}}
    objectStorage: {{bucket: velero-backups, prefix: cluster-a}}
    config: {{region: us-east-2}}
  status: {{phase: Available}}
- apiVersion: velero.io/v1
  kind: Schedule
  metadata:
    name: nightly-primary
    namespace: velero
    labels: {{app.kubernetes.io/managed-by: stowage, stowage.io/owner: default}}
  spec:
    schedule: 0 3 * * *
    skipImmediately: false
    template:
      storageLocation: primary
      includedNamespaces: [shop]
      ttl: 168h0m0s
- apiVersion: velero.io/v1
  kind: Schedule
  metadata:
    name: weekly
    namespace: velero
    labels: {{app.kubernetes.io/managed-by: stowage, stowage.io/owner: default}}
  spec:
    schedule: '@weekly'
    template: {{ttl: 720h0m0s}}
- apiVersion: velero.io/v1
  kind: Schedule
  metadata: {{name: legacy, namespace: velero}}
  spec: {{schedule: '@daily', template: {{}}}}
- apiVersion: velero.io/v1
  kind: Schedule
  metadata:
    name: team-b-hourly
    namespace: velero
    labels: {{app.kubernetes.io/managed-by: stowage, stowage.io/owner: team-b}}
  spec: {{schedule: '@hourly', template: {{}}}}
"#
    );
    fixture(
        "stowage.toml",
        text,
        &[("aws.ini", &ini(canary_new)), ("state.yaml", &state)],
    )
}

fn run_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(args)
        .current_dir(dir)
        .env_remove("STOWAGE_FILE")
        .output()
        .expect("run stowage")
}

/// Compares with `tests/it/golden/NAME`; `STOWAGE_BLESS=1` rewrites the file.
fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/golden")
        .join(name);
    if std::env::var_os("STOWAGE_BLESS").is_some() {
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "{name} differs from the golden file (STOWAGE_BLESS=1 cargo test rewrites it after review):\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}

#[test]
fn golden_plans_in_three_formats_without_the_canary() {
    let canary_new = "CANARY-new-3c9a1f";
    let canary_old = "CANARY-old-77e0b2";
    let fixture = golden_fixture(canary_new, canary_old);
    let dir = fixture.path.parent().expect("dir");
    for (format, golden_name) in [
        ("text", "plan.txt"),
        ("markdown", "plan.md"),
        ("json", "plan.json"),
    ] {
        let out = run_in(
            dir,
            &[
                "plan",
                "--no-bucket-checks",
                "--observed",
                "state.yaml",
                "--format",
                format,
                "--color",
                "never",
                "--detailed-exitcode",
                // First backups are computed from the clock: a fixed one.
                "--now",
                "2026-12-02T09:00:00Z",
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        for canary in [canary_new, canary_old] {
            assert!(
                !stdout.contains(canary) && !stderr.contains(canary),
                "{format} leaked a secret"
            );
        }
        assert!(stdout.contains(stowage::report::plan::SENSITIVE_CHANGED) || format == "json");
        golden(golden_name, &stdout);
    }
    let json: Value = serde_json::from_slice(
        &run_in(
            dir,
            &[
                "plan",
                "--no-bucket-checks",
                "--observed",
                "state.yaml",
                "--format",
                "json",
            ],
        )
        .stdout,
    )
    .expect("json");
    assert_eq!(
        json["summary"],
        json!({"create": 2, "update": 3, "delete": 1})
    );
    assert_eq!(
        json["unmanaged"],
        json!([{"kind": "Schedule", "namespace": "velero", "name": "legacy"}])
    );
    let secret = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "Secret")
        .expect("secret change");
    assert_eq!(
        secret["fields"][0],
        json!({"path": "data.bsl", "sensitive": true})
    );
}

#[test]
fn saved_plans_hold_digests_and_no_secret() {
    let canary_new = "CANARY-plan-file-new";
    let canary_old = "CANARY-plan-file-old";
    let fixture = golden_fixture(canary_new, canary_old);
    let dir = fixture.path.parent().expect("dir");
    let out = run_in(
        dir,
        &[
            "plan",
            "--no-bucket-checks",
            "--observed",
            "state.yaml",
            "--out",
            "plan.json",
        ],
    );
    assert_exit(&out, 0);
    let saved = std::fs::read_to_string(dir.join("plan.json")).expect("plan file");
    assert!(!saved.contains(canary_new) && !saved.contains(canary_old));
    let saved: stowage::engine::saved::SavedPlan =
        serde_json::from_str(&saved).expect("saved plan");
    assert_eq!(saved.kind, "StowagePlan");
    assert_eq!(saved.inputs_sha256.len(), 64);
    assert_eq!(saved.plan.summary.delete, 1);
    // The digest follows the credential's content, not only the file's text.
    std::fs::write(
        dir.join("aws.ini"),
        "[default]\naws_access_key_id = A\naws_secret_access_key = B\n",
    )
    .unwrap();
    run_in(
        dir,
        &[
            "plan",
            "--no-bucket-checks",
            "--observed",
            "state.yaml",
            "--out",
            "plan2.json",
        ],
    );
    let second: stowage::engine::saved::SavedPlan =
        serde_json::from_str(&std::fs::read_to_string(dir.join("plan2.json")).unwrap()).unwrap();
    assert_ne!(saved.inputs_sha256, second.inputs_sha256);
    assert_eq!(saved.observed_sha256, second.observed_sha256);
}

#[test]
fn detailed_exitcode_is_zero_without_changes() {
    let fixture = fixture("stowage.toml", INSTALLED_AWS_FILE, &[]);
    let desired = desired_of(&fixture.path);
    let items = as_cluster_after_velero(&desired);
    let state = serde_saphyr::to_string(&json!({"kind": "List", "items": items})).unwrap();
    let dir = fixture.path.parent().unwrap();
    std::fs::write(dir.join("state.yaml"), state).unwrap();
    let out = run_in(
        dir,
        &[
            "plan",
            "--no-bucket-checks",
            "--observed",
            "state.yaml",
            "--detailed-exitcode",
        ],
    );
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("No changes."));
}

#[test]
fn an_object_with_only_the_managed_by_label_is_never_deleted() {
    // The contract: deletion needs both labels and this file's owner. A Schedule
    // someone labelled managed-by=stowage by hand, with no owner, is not this file's.
    let text = r#"version = 1
[backup_locations.primary]
provider = "aws"
bucket = "velero-backups"
default = true
config = { region = "us-east-1" }
"#;
    let fixture = fixture("stowage.toml", text, &[]);
    let desired = desired_of(&fixture.path);
    let mut items = as_cluster_after_velero(&desired);
    let half_labelled = json!({"apiVersion": "velero.io/v1", "kind": "Schedule",
        "metadata": {"name": "hand-labelled", "namespace": "velero",
                     "labels": {"app.kubernetes.io/managed-by": "stowage"}},
        "spec": {"schedule": "@daily", "template": {}}});
    items.push(half_labelled);
    let plan = plan(&desired, &observed_from(items), &Context::default());
    assert!(
        plan.changes.iter().all(|c| c.action != Action::Delete),
        "{:#?}",
        plan.changes
    );
    let unmanaged: Vec<&str> = plan.unmanaged.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(unmanaged, ["hand-labelled"]);
}

#[test]
fn a_plan_deleting_most_of_what_the_file_manages_is_refused_unless_allowed() {
    let full = r#"version = 1
[backup_locations.a]
provider = "aws"
bucket = "bucket-a"
default = true
config = { region = "us-east-1" }
[backup_locations.b]
provider = "aws"
bucket = "bucket-b"
config = { region = "us-east-1" }
[backup_locations.c]
provider = "aws"
bucket = "bucket-c"
config = { region = "us-east-1" }
[backup_locations.d]
provider = "aws"
bucket = "bucket-d"
config = { region = "us-east-1" }
"#;
    let applied = fixture("stowage.toml", full, &[]);
    let observed = observed_from(as_cluster_after_velero(&desired_of(&applied.path)));
    let codes = |text: &str| {
        let edited = fixture("stowage.toml", text, &[]);
        let plan = plan(&desired_of(&edited.path), &observed, &Context::default());
        let deletes = plan
            .changes
            .iter()
            .filter(|c| c.action == Action::Delete)
            .count();
        let codes: Vec<&str> = plan.diagnostics.iter().map(|d| d.code.as_str()).collect();
        (deletes, codes.join(","))
    };
    // Half a file, caught mid-write: declares nothing, or one of four.
    assert_eq!(
        codes("version = 1\n"),
        (4, "stowage::mass-delete".to_string())
    );
    let one = &full[..full.find("[backup_locations.b]").unwrap()];
    assert_eq!(codes(one), (3, "stowage::mass-delete".to_string()));
    // Two of four is not more than half.
    let two = &full[..full.find("[backup_locations.c]").unwrap()];
    assert_eq!(codes(two), (2, String::new()));
    // Meant: the file says so.
    let allowed = "version = 1\n[velero]\nallow_mass_delete = true\n";
    assert_eq!(codes(allowed), (4, String::new()));
    // The message counts and names the way out.
    let edited = fixture("stowage.toml", "version = 1\n", &[]);
    let plan = plan(&desired_of(&edited.path), &observed, &Context::default());
    assert_eq!(
        plan.diagnostics[0].message,
        "the plan deletes all 4 objects this file manages in namespace velero; refused as a mass delete"
    );
    assert!(plan.has_errors());
}

#[test]
fn a_plan_left_over_after_an_apply_names_its_fields_and_their_managers() {
    let text = "version = 1\n[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-a\"\ndefault = true\nconfig = { region = \"us-east-1\" }\n[schedules.daily]\ncron = \"@daily\"\nstorage_location = \"a\"\n";
    let fixture = fixture("stowage.toml", text, &[]);
    let desired = desired_of(&fixture.path);
    let mut items = as_cluster_after_velero(&desired);
    let schedule = items.iter_mut().find(|i| i["kind"] == "Schedule").unwrap();
    schedule["spec"]["paused"] = json!(true);
    schedule["metadata"]["managedFields"] = json!([
        {"manager": "stowage", "operation": "Apply", "fieldsV1": {"f:spec": {"f:schedule": {}}}},
        {"manager": "kubectl-patch", "operation": "Update", "fieldsV1": {"f:spec": {"f:paused": {}}}}
    ]);
    let observed = observed_from(items);
    let replan = plan(&desired, &observed, &Context::default());
    let problem = stowage::plan::not_converged(&replan, &observed).expect("not converged");
    assert_eq!(problem.code.as_str(), "stowage::not-converged");
    assert_eq!(
        problem.message,
        "after the apply, a plan of the same file still changes: Schedule velero/daily spec.paused (set by kubectl-patch)"
    );
    let clean = observed_from(as_cluster_after_velero(&desired));
    let replan = plan(&desired, &clean, &Context::default());
    assert!(stowage::plan::not_converged(&replan, &clean).is_none());
}

#[test]
fn a_ttl_change_on_one_copy_touches_only_that_copy() {
    let file = |dr: &str| {
        format!(
            "version = 1\n\
[credentials.cloud-credentials]\nexternal = true\n\
[backup_locations.primary]\nprovider = \"aws\"\nbucket = \"bucket-p\"\ndefault = true\nconfig = {{ region = \"r\" }}\n\
[backup_locations.dr]\nprovider = \"aws\"\nbucket = \"bucket-dr\"\nconfig = {{ region = \"r\" }}\n\
[schedules.nightly]\ncron = \"0 1 * * *\"\nstorage_locations = [\"primary\", \"dr\"]\nttl = \"720h\"\n{dr}"
        )
    };
    let before = fixture("stowage.toml", &file(""), &[]);
    let after = fixture(
        "stowage.toml",
        &file("[schedules.nightly.copy.dr]\nttl = \"2160h\"\n"),
        &[],
    );
    let observed = observed_from(as_cluster_after_velero(&desired_of(&before.path)));
    let planned = plan(&desired_of(&after.path), &observed, &Context::default());
    assert!(planned.diagnostics.is_empty(), "{:#?}", planned.diagnostics);
    type Fields = Vec<(String, FieldValue, FieldValue)>;
    let changes: Vec<(Action, &str, Fields)> = planned
        .changes
        .iter()
        .map(|change| {
            (
                change.action,
                change.object.name.as_str(),
                change
                    .field_changes()
                    .iter()
                    .map(|f| (f.path.to_string(), f.before.clone(), f.after.clone()))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [(
            Action::Update,
            "nightly-dr",
            vec![(
                "spec.template.ttl".to_string(),
                FieldValue::Value(json!("720h0m0s")),
                FieldValue::Value(json!("2160h0m0s"))
            )]
        )]
    );
}

/// `plan --observed` of `file` against the installed-aws state with Velero's image
/// rewritten by `edit`: the velero-version findings, as (line, message).
fn version_findings(file: &str, edit: &dyn Fn(String) -> String) -> (i32, Vec<(u64, String)>) {
    let state = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/installed-aws.yaml"),
    )
    .expect("fixture");
    let fixture = fixture("stowage.toml", file, &[("state.yaml", &edit(state))]);
    let dir = fixture.path.parent().expect("dir");
    let out = run_in(
        dir,
        &[
            "plan",
            "--observed",
            "state.yaml",
            "--no-bucket-checks",
            "--format",
            "json",
        ],
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let found = report["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .filter(|d| d["code"] == "stowage::velero-version")
        .map(|d| {
            (
                d["line"].as_u64().unwrap_or_default(),
                d["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    (out.status.code().unwrap_or(-1), found)
}

#[test]
fn the_clusters_velero_decides_which_fields_a_plan_may_write() {
    let with_ca_ref = INSTALLED_AWS_FILE.replace(
        "default = true\n",
        "default = true\nca_cert_ref = { secret = \"ca\", key = \"ca.pem\" }\n",
    );
    let on = |tag: &'static str| {
        move |state: String| state.replace("velero/velero:v1.18.1", &format!("velero/velero{tag}"))
    };
    // The image says 1.17.2: caCertRef is refused at its key, naming 1.18.
    let (code, found) = version_findings(&with_ca_ref, &on(":v1.17.2"));
    assert_eq!(code, 1);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].0, 9);
    assert!(
        found[0].1.contains("needs Velero 1.18") && found[0].1.contains("1.17.2"),
        "{}",
        found[0].1
    );
    // On 1.18 the same file plans clean.
    let (code, found) = version_findings(&with_ca_ref, &on(":v1.18.1"));
    assert_eq!((code, found), (0, vec![]));
    // An untagged image: the version the server reported when `velero version` asked.
    let reported = |state: String| {
        on("")(state).replacen(
            "items:\n",
            "items:\n- apiVersion: velero.io/v1\n  kind: ServerStatusRequest\n  metadata: {name: velero-cli-x2k9p, namespace: velero, creationTimestamp: \"2025-06-03T09:00:00Z\"}\n  status: {phase: Processed, serverVersion: v1.17.1}\n",
            1,
        )
    };
    let (code, found) = version_findings(&with_ca_ref, &reported);
    assert_eq!(code, 1);
    assert!(
        found.len() == 1 && found[0].1.contains("ServerStatusRequest velero-cli-x2k9p"),
        "{found:#?}"
    );
    // Untagged and never asked: nothing to go by, so no version rule is guessed.
    let (code, found) = version_findings(&with_ca_ref, &on(""));
    assert_eq!((code, found), (0, vec![]));
    // A declared version is the cluster's, or the plan says where they differ.
    let declared = format!("{INSTALLED_AWS_FILE}[velero]\nversion = \"1.17\"\n");
    let (code, found) = version_findings(&declared, &on(":v1.18.1"));
    assert_eq!(code, 1);
    assert!(
        found.len() == 1
            && found[0].0 == 17
            && found[0]
                .1
                .contains("targets Velero 1.17, but the cluster runs 1.18.1"),
        "{found:#?}"
    );
    let (code, found) = version_findings(&declared, &on(":v1.17.2"));
    assert_eq!((code, found), (0, vec![]));
}

#[test]
fn a_resource_policy_key_the_clusters_velero_cannot_read_is_refused_at_the_schedule() {
    let file = INSTALLED_AWS_FILE.replace(
        "ttl = \"720h\"\n",
        "ttl = \"720h\"\nresource_policy = { kind = \"configmap\", name = \"policy\" }\n",
    );
    let with = |image: &'static str, policy: &'static str| {
        move |state: String| {
            let policy = serde_json::to_string(policy).unwrap();
            state
                .replace("velero/velero:v1.18.1", image)
                .replacen(
                    "items:\n",
                    &format!("items:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {{name: policy, namespace: velero}}\n  data: {{policy.yaml: {policy}}}\n"),
                    1,
                )
        }
    };
    let include_exclude =
        "version: v1\nincludeExcludePolicy:\n  excludedNamespaceScopedResources: [secrets]\n";
    let cluster_scoped = "version: v1\nclusterScopedFilterPolicy:\n  includedResources: []\n";
    let line = file
        .lines()
        .position(|l| l.starts_with("resource_policy"))
        .unwrap() as u64
        + 1;
    // 1.16 decodes the policy strictly and knows no includeExcludePolicy.
    let (code, found) = version_findings(&file, &with("velero/velero:v1.16.2", include_exclude));
    assert_eq!(code, 1);
    assert!(
        found.len() == 1
            && found[0].0 == line
            && found[0]
                .1
                .contains("`includeExcludePolicy`, which needs Velero 1.17"),
        "{found:#?}"
    );
    let (code, found) = version_findings(&file, &with("velero/velero:v1.17.2", include_exclude));
    assert_eq!((code, found), (0, vec![]));
    // 1.18's filter policies on 1.17.
    let (code, found) = version_findings(&file, &with("velero/velero:v1.17.2", cluster_scoped));
    assert_eq!(code, 1);
    assert!(
        found.len() == 1
            && found[0]
                .1
                .contains("`clusterScopedFilterPolicy`, which needs Velero 1.18"),
        "{found:#?}"
    );
    let (code, found) = version_findings(&file, &with("velero/velero:v1.18.3", cluster_scoped));
    assert_eq!((code, found), (0, vec![]));
}

/// `import` is the inverse of render for fanned-out schedules: their copies become one
/// entry again, with its stagger or each copy's own shift and ttl, and the imported
/// file renders the very objects it came from.
#[test]
fn imported_fan_outs_render_back_to_the_same_schedules() {
    let file = r#"version = 1
[credentials.cloud-credentials]
external = true
[backup_locations.primary]
provider = "aws"
bucket = "bucket-p"
default = true
config = { region = "r" }
[backup_locations.dr]
provider = "aws"
bucket = "bucket-dr"
config = { region = "r" }
[backup_locations.vault]
provider = "aws"
bucket = "bucket-vault"
config = { region = "r" }
[schedules.nightly]
cron = "0 1 * * *"
storage_locations = ["primary", "dr", "vault"]
stagger = "20m"
ttl = "720h"
[schedules.weekly]
cron = "30 2 * * 0"
storage_locations = ["primary", "dr", "vault"]
ttl = "720h"
included_namespaces = ["shop"]
[schedules.weekly.copy.dr]
ttl = "2160h"
stagger = "2h"
[schedules.weekly.copy.vault]
stagger = "45m"
[schedules.hourly]
cron = "5 * * * *"
storage_location = "primary"
[schedules.hourly-primary]
cron = "5 * * * *"
storage_location = "primary"
[schedules.hourly-dr]
cron = "5 * * * *"
storage_location = "dr"
"#;
    let fixture = fixture("stowage.toml", file, &[]);
    let desired = desired_of(&fixture.path);
    let observed = observed_from(as_cluster_after_velero(&desired));
    let imported = stowage::import::import(&observed, "velero", "velero");
    let checked = stowage::engine::check_text(
        "imported.toml",
        imported.clone(),
        stowage::config::source::Format::Toml,
    );
    assert!(
        checked.diagnostics.iter().all(|d| !d.is_error()),
        "{imported}\n{:#?}",
        checked.diagnostics
    );
    let loaded = &checked.loaded;
    let config = loaded.config.as_ref().expect("model");
    assert_eq!(
        config.schedules.keys().collect::<Vec<_>>(),
        // hourly-primary and hourly-dr look like copies of an entry `hourly`, but a
        // Schedule of that name is there already: they stay apart.
        ["hourly", "hourly-dr", "hourly-primary", "nightly", "weekly"],
        "{imported}"
    );
    assert_eq!(config.schedules["nightly"].stagger.as_deref(), Some("20m"));
    let weekly = &config.schedules["weekly"];
    assert_eq!(
        weekly.storage_locations.as_deref(),
        Some(&["primary".to_string(), "vault".to_string(), "dr".to_string()][..]),
        "copies in the order they run: {imported}"
    );
    assert_eq!(weekly.copy["dr"].ttl.as_deref(), Some("2160h"));
    assert_eq!(weekly.copy["dr"].stagger.as_deref(), Some("120m"));
    assert_eq!(weekly.copy["vault"].stagger.as_deref(), Some("45m"));
    let again = render(config, &loaded.materials);
    let planned = plan(&again, &observed, &Context::default());
    assert!(
        planned.changes.is_empty(),
        "{imported}\n{:#?}",
        planned.changes
    );
    assert!(planned.diagnostics.is_empty(), "{:#?}", planned.diagnostics);
}

/// `import` is the inverse of render over every example: what a file renders, imported
/// back, plans to no change against the cluster it made (credentials come back as
/// `external`, their Secrets left as they are).
#[test]
fn every_example_imported_back_plans_no_change() {
    for file in example_files() {
        let desired = desired_of(&file);
        let mut items = as_cluster_after_velero(&desired);
        // The Velero Deployment, with the server flag the file sets.
        let mut args = vec![json!("server")];
        if let Some(flag) = &desired.server_flag {
            args.push(json!(format!(
                "--default-volume-snapshot-locations={}",
                flag.value
            )));
        }
        items.push(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "velero", "namespace": desired.namespace},
            "spec": {"template": {"spec": {"containers": [
                {"name": "velero", "image": "velero/velero:v1.18.3", "args": args}]}}}}));
        let observed = observed_from(items);
        let imported = stowage::import::import(&observed, &desired.namespace, "velero");
        let written = fixture("imported.toml", &imported, &[]);
        let checked = stowage::engine::check_file(&written.path).expect("loads");
        assert!(
            checked.diagnostics.iter().all(|d| !d.is_error()),
            "{}: {imported}\n{:#?}",
            file.display(),
            checked.diagnostics
        );
        let loaded = &checked.loaded;
        let again = render(loaded.config.as_ref().expect("model"), &loaded.materials);
        let planned = plan(&again, &observed, &Context::default());
        let changes: Vec<String> = planned
            .changes
            .iter()
            .map(|c| format!("{:?} {}", c.action, c.object))
            .collect();
        assert!(
            changes.is_empty(),
            "{}: {changes:#?}\n{imported}",
            file.display()
        );
    }
}

/// What a file cannot say of a cluster's object is told, not dropped: a Velero field
/// stowage's types do not hold (a newer release's) makes `import` warn where the file
/// declares the Schedule, since applying the file would remove it; without it, no
/// warning.
#[test]
fn import_warns_of_what_the_file_cannot_say() {
    let state = |template: Value| {
        observed_from(vec![
            json!({"apiVersion": "velero.io/v1", "kind": "Schedule",
            "metadata": {"name": "nightly", "namespace": "velero"},
            "spec": {"schedule": "0 1 * * *", "template": template}}),
        ])
    };
    let warnings = |observed: &Observed| {
        let imported = stowage::engine::import_state(observed, "velero", "velero", "i.toml");
        (imported.checked.diagnostics.into_iter())
            .filter(|d| d.code == stowage::diagnostic::Code::UnknownKey)
            .map(|d| (d.message, d.at))
            .collect::<Vec<_>>()
    };
    let known = json!({"includedNamespaces": ["app"], "ttl": "720h0m0s"});
    assert_eq!(warnings(&state(known)), []);
    let unknown = json!({"includedNamespaces": ["app"], "futureFilter": {"depth": 2}});
    let found = warnings(&state(unknown));
    assert_eq!(found.len(), 1, "{found:#?}");
    let (message, at) = &found[0];
    assert!(
        message.contains("Schedule/nightly")
            && message.contains("`spec.template.futureFilter.depth`"),
        "{message}"
    );
    assert_eq!(
        at,
        &Some(stowage::diagnostic::Pointer::key(["schedules", "nightly"]))
    );
}

/// `import` is the inverse of render over every cluster state in `tests/fixtures`: the
/// file it writes renders objects that plan to adoption alone (stowage's two labels on
/// what Velero's CLI made), whatever Velero would make of them.
#[test]
fn every_fixture_state_imported_back_plans_only_adoptions() {
    let states = ["installed-aws.yaml", "multi-location.yaml"];
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let readme = std::fs::read_to_string(fixtures.join("README.md")).expect("fixtures README");
    for listed in readme.lines().filter_map(|line| line.strip_prefix("| `")) {
        let name = listed.split('`').next().unwrap_or_default();
        assert!(
            states.contains(&name) || name == "nodes-and-volumes.yaml",
            "{name} is a cluster state this test does not import"
        );
    }
    for state in states {
        let observed = fixture_state(state);
        let imported = stowage::import::import(&observed, "velero", "velero");
        let written = fixture("imported.toml", &imported, &[]);
        let checked = stowage::engine::check_file(&written.path).expect("loads");
        let loaded = &checked.loaded;
        let again = render(loaded.config.as_ref().expect("model"), &loaded.materials);
        let planned = plan(&again, &observed, &Context::default());
        assert!(
            planned.diagnostics.iter().all(|d| !d.is_error()),
            "{state}: {:#?}",
            planned.diagnostics
        );
        assert!(!planned.changes.is_empty(), "{state}: nothing to adopt");
        for change in &planned.changes {
            assert_eq!(
                (change.action, &change.risks[..]),
                (Action::Update, &[Risk::Adopt][..]),
                "{state}: {}\n{imported}",
                change.object
            );
            let paths: Vec<String> = change.fields.iter().map(|f| f.path.to_string()).collect();
            assert_eq!(
                paths,
                [
                    r#"metadata.labels["app.kubernetes.io/managed-by"]"#,
                    r#"metadata.labels["stowage.io/owner"]"#
                ],
                "{state}: {}\n{imported}",
                change.object
            );
        }
        let adopted = planned.changes.len();
        let velero_objects = observed
            .objects
            .keys()
            .filter(|o| {
                matches!(
                    o.kind,
                    Kind::BackupStorageLocation | Kind::VolumeSnapshotLocation | Kind::Schedule
                )
            })
            .count();
        assert_eq!(
            adopted, velero_objects,
            "{state}: every location and schedule"
        );
    }
}
