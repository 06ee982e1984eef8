//! Rendering: every object from every example passes Velero's real CRD schema, and a
//! file equivalent to a Velero CLI command renders the object that command creates.

use serde_json::{Value, json};
use stowage::render::{render, to_documents};
use stowage::velero::Kind;

use crate::cluster::stack;
use crate::crd_schema::problems;
use crate::support::{example_files, fixture};

fn rendered(path: &std::path::Path) -> stowage::render::Desired {
    let checked = crate::support::check_example(path);
    assert!(
        checked.diagnostics.iter().all(|d| !d.is_error()),
        "{}: {:#?}",
        path.display(),
        checked.diagnostics
    );
    let loaded = &checked.loaded;
    render(loaded.config.as_ref().expect("model"), &loaded.materials)
}

#[test]
fn every_rendered_object_passes_the_real_crd_schema() {
    let ns = stack().namespace("render-examples");
    let mut checked = 0;
    for file in example_files() {
        let desired = rendered(&file);
        for object in &desired.objects {
            let found = problems(&object.manifest.to_value(), &ns.name);
            assert!(
                found.is_empty(),
                "{} {}: {found:#?}",
                file.display(),
                object.object
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} objects checked");
}

/// A schedule using every template field the model has (and a location using every
/// location field), with the CA file it names.
const EVERY_FIELD: &str = r#"version = 1
[backup_locations.a]
provider = "aws"
bucket = "bucket-b"
prefix = "p"
default = true
access_mode = "ReadOnly"
backup_sync_period = "0s"
validation_frequency = "2m"
ca_cert_file = "ca.pem"
labels = { tier = "gold" }
config = { region = "r" }
[backup_locations.b]
provider = "aws"
bucket = "bucket-c"
ca_cert_ref = { secret = "ca", key = "ca.pem" }
config = { region = "r" }
[snapshot_locations.v]
provider = "aws"
config = { region = "r" }
[schedules.all]
cron = "@every 6h"
storage_location = "b"
paused = true
skip_immediately = true
use_owner_references_in_backup = true
labels = { team = "x" }
annotations = { "example.com/why" = "coverage" }
metadata = { labels = { backup = "yes" } }
included_namespaces = ["a"]
excluded_namespaces = ["b"]
included_cluster_scoped_resources = ["nodes"]
excluded_cluster_scoped_resources = ["persistentvolumes"]
included_namespace_scoped_resources = ["deployments"]
excluded_namespace_scoped_resources = ["secrets"]
or_label_selectors = [{ match_labels = { app = "a" } }, { match_expressions = [{ key = "tier", operator = "In", values = ["db"] }] }]
snapshot_volumes = false
default_volumes_to_fs_backup = true
snapshot_move_data = true
datamover = "velero"
uploader_config = { parallel_files_upload = 4 }
ttl = "24h"
csi_snapshot_timeout = "10m"
item_operation_timeout = "4h"
volume_snapshot_locations = ["v"]
volume_group_snapshot_label_key = "group"
ordered_resources = { pods = "ns/a,ns/b" }
resource_policy = { kind = "configmap", name = "policy" }
[[schedules.all.hooks.resources]]
name = "h"
included_namespaces = ["a"]
excluded_resources = ["events"]
label_selector = { match_labels = { app = "db" } }
pre = [{ exec = { container = "c", command = ["sync"], on_error = "Continue", timeout = "1m" } }]
post = [{ exec = { command = ["true"] } }]
[schedules.old-filters]
cron = "@daily"
storage_location = "b"
included_resources = ["pods"]
excluded_resources = ["events"]
include_cluster_resources = false
label_selector = { match_labels = { app = "web" } }
default_volumes_to_restic = false
"#;
const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

#[test]
fn the_checker_sees_every_field_stowage_can_render() {
    // Nothing of the file with every field may be pruned.
    let pem = PEM;
    let fixture = fixture("stowage.toml", EVERY_FIELD, &[("ca.pem", pem)]);
    let desired = rendered(&fixture.path);
    let ns = stack().namespace("render-every-field");
    for object in &desired.objects {
        let found = problems(&object.manifest.to_value(), &ns.name);
        assert!(found.is_empty(), "{}: {found:#?}", object.object);
    }
    let all = desired
        .objects
        .iter()
        .find(|o| o.object.name == "all")
        .expect("schedule");
    let all = all.manifest.to_value();
    let template = &all["spec"]["template"];
    assert_eq!(template["datamover"], "velero");
    assert_eq!(template["uploaderConfig"]["parallelFilesUpload"], 4);
    assert_eq!(
        template["hooks"]["resources"][0]["pre"][0]["exec"]["onError"],
        "Continue"
    );
    assert_eq!(
        template["orLabelSelectors"][1]["matchExpressions"][0]["key"],
        "tier"
    );
    let bsl = desired
        .objects
        .iter()
        .find(|o| o.object.name == "a")
        .expect("bsl");
    assert_eq!(
        bsl.manifest.to_value()["spec"]["objectStorage"]["caCert"],
        base64(pem)
    );
}

fn base64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// What `velero ... create` sends (velero-semantics.md §2, fixtures README), next to an
/// equivalent stowage file.
struct CliCase {
    command: &'static str,
    file: &'static str,
    kind: Kind,
    name: &'static str,
    spec: fn() -> Value,
}

const CLI_CASES: &[CliCase] = &[
    CliCase {
        command: "velero backup-location create backups-primary --provider aws --bucket velero-backups --config region=us-east-1 --default",
        file: "[backup_locations.backups-primary]\nprovider = \"aws\"\nbucket = \"velero-backups\"\nconfig = { region = \"us-east-1\" }\ndefault = true\n",
        kind: Kind::BackupStorageLocation,
        name: "backups-primary",
        spec: || json!({"provider": "aws", "objectStorage": {"bucket": "velero-backups"}, "config": {"region": "us-east-1"}, "default": true, "accessMode": "ReadWrite"}),
    },
    CliCase {
        command: "velero backup-location create backups-secondary --provider aws --bucket velero-backups-dr --config region=us-west-1",
        file: "[backup_locations.backups-primary]\nprovider = \"aws\"\nbucket = \"velero-backups\"\ndefault = true\nconfig = { region = \"us-east-1\" }\n[backup_locations.backups-secondary]\nprovider = \"aws\"\nbucket = \"velero-backups-dr\"\nconfig = { region = \"us-west-1\" }\n",
        kind: Kind::BackupStorageLocation,
        name: "backups-secondary",
        spec: || json!({"provider": "aws", "objectStorage": {"bucket": "velero-backups-dr"}, "config": {"region": "us-west-1"}, "accessMode": "ReadWrite"}),
    },
    CliCase {
        command: "velero backup-location create other-account --provider aws --bucket velero-other --prefix cluster-a --config region=us-east-1 --credential=credentials=bsl --access-mode ReadOnly",
        file: "[credentials.other]\nsecret = \"credentials\"\nkey = \"bsl\"\nexternal = true\n[backup_locations.default]\nprovider = \"aws\"\nbucket = \"velero-backups\"\ndefault = true\nconfig = { region = \"us-east-1\" }\n[backup_locations.other-account]\nprovider = \"aws\"\nbucket = \"velero-other\"\nprefix = \"cluster-a\"\ncredential = \"other\"\naccess_mode = \"ReadOnly\"\nconfig = { region = \"us-east-1\" }\n",
        kind: Kind::BackupStorageLocation,
        name: "other-account",
        spec: || json!({"provider": "aws", "objectStorage": {"bucket": "velero-other", "prefix": "cluster-a"}, "config": {"region": "us-east-1"}, "credential": {"name": "credentials", "key": "bsl"}, "accessMode": "ReadOnly"}),
    },
    CliCase {
        command: "velero backup-location set backups-secondary --default (after unsetting backups-primary)",
        file: "[backup_locations.backups-primary]\nprovider = \"aws\"\nbucket = \"velero-backups\"\nconfig = { region = \"us-east-1\" }\n[backup_locations.backups-secondary]\nprovider = \"aws\"\nbucket = \"velero-backups-dr\"\nconfig = { region = \"us-west-1\" }\ndefault = true\n",
        kind: Kind::BackupStorageLocation,
        name: "backups-secondary",
        spec: || json!({"provider": "aws", "objectStorage": {"bucket": "velero-backups-dr"}, "config": {"region": "us-west-1"}, "default": true, "accessMode": "ReadWrite"}),
    },
    CliCase {
        command: "velero backup-location set backups-primary --credential=credentials=bsl",
        file: "[credentials.bsl]\nsecret = \"credentials\"\nkey = \"bsl\"\nexternal = true\n[backup_locations.backups-primary]\nprovider = \"aws\"\nbucket = \"velero-backups\"\ncredential = \"bsl\"\ndefault = true\nconfig = { region = \"us-east-1\" }\n",
        kind: Kind::BackupStorageLocation,
        name: "backups-primary",
        spec: || json!({"provider": "aws", "objectStorage": {"bucket": "velero-backups"}, "config": {"region": "us-east-1"}, "credential": {"name": "credentials", "key": "bsl"}, "default": true, "accessMode": "ReadWrite"}),
    },
    CliCase {
        command: "velero snapshot-location create ebs-us-east-1 --provider aws --config region=us-east-1",
        file: "[snapshot_locations.ebs-us-east-1]\nprovider = \"aws\"\nconfig = { region = \"us-east-1\" }\n",
        kind: Kind::VolumeSnapshotLocation,
        name: "ebs-us-east-1",
        spec: || json!({"provider": "aws", "config": {"region": "us-east-1"}}),
    },
    CliCase {
        command: "velero snapshot-location create portworx-cloud --provider portworx.io/portworx --config type=cloud",
        file: "[snapshot_locations.portworx-cloud]\nprovider = \"portworx.io/portworx\"\nconfig = { type = \"cloud\", credId = \"c\" }\n",
        kind: Kind::VolumeSnapshotLocation,
        name: "portworx-cloud",
        spec: || json!({"provider": "portworx.io/portworx", "config": {"type": "cloud", "credId": "c"}}),
    },
    CliCase {
        command: "velero snapshot-location create ebs-other --provider aws --config region=us-east-1 --credential=credentials=vsl",
        file: "[credentials.vsl]\nsecret = \"credentials\"\nkey = \"vsl\"\nexternal = true\n[snapshot_locations.ebs-other]\nprovider = \"aws\"\ncredential = \"vsl\"\nconfig = { region = \"us-east-1\" }\n",
        kind: Kind::VolumeSnapshotLocation,
        name: "ebs-other",
        spec: || json!({"provider": "aws", "config": {"region": "us-east-1"}, "credential": {"name": "credentials", "key": "vsl"}}),
    },
];

/// Velero's kinds are typed both ways: every object every example renders, written
/// as JSON, reads back into the same typed object (the field-dense fixture of the test
/// above included), so `crd` reads what Velero holds as well as what stowage sends, and
/// a saved plan's bodies read back as they were planned.
#[test]
fn every_rendered_object_reads_back_into_its_velero_type_unchanged() {
    use stowage::crd::VeleroObject;
    let mut read = 0;
    let every_field = fixture("stowage.toml", EVERY_FIELD, &[("ca.pem", PEM)]);
    let mut files = example_files();
    files.push(every_field.path.clone());
    for file in files {
        for object in &rendered(&file).objects {
            let written = object.manifest.to_value();
            let again = VeleroObject::from_value(written).expect("reads as its kind");
            assert_eq!(
                again,
                *object.manifest,
                "{}: {}",
                file.display(),
                object.object
            );
            read += 1;
        }
    }
    assert!(read > 20, "only {read} objects read back");
}

#[test]
fn files_equivalent_to_velero_cli_commands_render_the_same_objects() {
    for case in CLI_CASES {
        let text = format!("version = 1\n{}", case.file);
        let fixture = fixture("stowage.toml", &text, &[]);
        let desired = rendered(&fixture.path);
        let object = desired
            .objects
            .iter()
            .find(|o| o.object.kind == case.kind && o.object.name == case.name)
            .unwrap_or_else(|| panic!("{}: nothing rendered", case.command));
        let manifest = object.manifest.to_value();
        assert_eq!(manifest["apiVersion"], "velero.io/v1");
        assert_eq!(manifest["kind"], case.kind.as_str());
        assert_eq!(manifest["metadata"]["name"], case.name);
        assert_eq!(manifest["metadata"]["namespace"], "velero");
        assert_eq!(manifest["spec"], (case.spec)(), "{}", case.command);
        assert!(manifest.get("status").is_none(), "never status");
    }
}

#[test]
fn schedules_fan_out_identically_but_for_the_location() {
    let desired = rendered(&crate::support::examples_dir().join("redundant-schedules.toml"));
    let schedules: Vec<_> = desired
        .objects
        .iter()
        .filter(|o| o.object.kind == Kind::Schedule)
        .collect();
    let names: Vec<&str> = schedules.iter().map(|o| o.object.name.as_str()).collect();
    assert_eq!(
        names,
        ["production-backups-primary", "production-backups-dr"]
    );
    let mut first = schedules[0].manifest.spec_value();
    let mut second = schedules[1].manifest.spec_value();
    assert_eq!(first["template"]["storageLocation"], "backups-primary");
    assert_eq!(second["template"]["storageLocation"], "backups-dr");
    first["template"]["storageLocation"] = Value::Null;
    second["template"]["storageLocation"] = Value::Null;
    assert_eq!(first, second);
}

#[test]
fn secrets_group_keys_by_name_and_external_ones_render_nothing() {
    let desired = rendered(&crate::support::examples_dir().join("own-credentials.toml"));
    assert_eq!(desired.secrets.len(), 1, "two keys of one Secret");
    let secret = &desired.secrets[0];
    assert_eq!(secret.object.name, "credentials");
    assert_eq!(secret.data.keys().collect::<Vec<_>>(), ["bsl", "vsl"]);
    assert_eq!(desired.external.len(), 1);
    assert_eq!(desired.external[0].secret, "cloud-credentials");
    let documents = to_documents(&desired, false);
    assert!(documents.iter().all(|d| !d.yaml.contains("kind: Secret")));
    let with_secrets = to_documents(&desired, true);
    assert!(with_secrets[0].yaml.contains("kind: Secret"));
}

#[test]
fn server_flag_is_rendered_when_managed() {
    let desired = rendered(&crate::support::examples_dir().join("portworx-server-default.toml"));
    let flag = desired
        .server_flag
        .as_ref()
        .expect("manage_server_flags = true");
    assert_eq!(
        flag.argument(),
        "--default-volume-snapshot-locations=portworx.io/portworx:portworx-local"
    );
}

#[test]
fn render_command_prints_and_writes_documents_and_hides_secrets_on_request() {
    let canary = "CANARY-render-5b1d";
    let ini = format!("[default]\naws_access_key_id = AKIA\naws_secret_access_key = {canary}\n");
    let text = "version = 1\n[credentials.c]\nsecret = \"creds\"\nfile = \"aws.ini\"\n[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-b\"\ndefault = true\ncredential = \"c\"\nconfig = { region = \"r\" }\n";
    let fixture = fixture("stowage.toml", text, &[("aws.ini", &ini)]);
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_stowage"))
            .args(args)
            .output()
            .expect("run")
    };
    let path = fixture.path.to_str().unwrap();
    let with = run(&["render", "-f", path]);
    assert_eq!(with.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&with.stdout);
    let documents: Vec<Value> = serde_saphyr::from_multiple(&stdout).expect("multi-document YAML");
    assert_eq!(documents.len(), 2);
    assert_eq!(documents[0]["kind"], "Secret");
    assert_eq!(
        documents[0]["data"]["aws.ini"],
        Value::Null,
        "the key is the credential's"
    );
    assert_eq!(
        documents[0]["data"]["cloud"],
        base64(&ini),
        "render carries what kubectl needs"
    );

    let without = run(&["render", "-f", path, "--no-secrets"]);
    let stdout = String::from_utf8_lossy(&without.stdout);
    assert!(!stdout.contains("kind: Secret") && !stdout.contains(&base64(&ini)));
    assert!(!String::from_utf8_lossy(&without.stderr).contains(canary));

    let dir = tempfile::tempdir().expect("dir");
    let out_dir = dir.path().join("out");
    let written = run(&[
        "render",
        "-f",
        path,
        "--no-secrets",
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(written.status.code(), Some(0));
    let mut files: Vec<String> = std::fs::read_dir(&out_dir)
        .expect("out dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, [".stowage-rendered", "backupstoragelocation-a.yaml"]);
}

#[test]
fn render_to_a_folder_writes_secrets_for_their_owner_only_and_leaves_nothing_stale() {
    use std::os::unix::fs::PermissionsExt;
    let ini = "[default]\naws_access_key_id = AKIA\naws_secret_access_key = CANARY-stale-9e\n";
    let two = "version = 1\n[credentials.c]\nsecret = \"creds\"\nfile = \"aws.ini\"\n[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-b\"\ndefault = true\ncredential = \"c\"\nconfig = { region = \"r\" }\n[backup_locations.z]\nprovider = \"aws\"\nbucket = \"bucket-z\"\ncredential = \"c\"\nconfig = { region = \"r\" }\n";
    let fixture = fixture("stowage.toml", two, &[("aws.ini", ini)]);
    let out = fixture.path.parent().unwrap().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.md"), "mine").unwrap();
    let render = |extra: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_stowage"))
            .args(["render", "-f", fixture.path.to_str().unwrap(), "-o"])
            .arg(&out)
            .args(extra)
            .output()
            .expect("run");
        assert_eq!(output.status.code(), Some(0), "{output:?}");
    };
    render(&[]);
    let mode = |name: &str| {
        std::fs::metadata(out.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        mode("secret-creds.yaml"),
        0o600,
        "secret data for its owner only"
    );
    assert_eq!(mode("backupstoragelocation-a.yaml"), 0o644);

    // Without secrets, and with a location dropped: what the earlier render wrote and
    // this one does not is gone; what someone else put there stays.
    std::fs::write(
        &fixture.path,
        two.split("[backup_locations.z]").next().unwrap(),
    )
    .unwrap();
    render(&["--no-secrets"]);
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    files.sort();
    assert_eq!(files, ["backupstoragelocation-a.yaml", "notes.md"]);
}
