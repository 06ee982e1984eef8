//! Bucket checks against real emulators on 127.0.0.1, started by `tests/run`: S3
//! through moto (signatures checked), Azure Blob through Azurite, GCS through
//! fake-gcs-server. The seeded layout is in `tests/emulators.py`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use stowage::buckets::{check_all, desired_targets};
use stowage::observe::Observed;
use stowage::observe::{BucketReport, BucketStatus};
use stowage::render::render;

use crate::support::{assert_exit, fixture};

/// The running emulators' endpoints and keys.
pub fn emulators() -> Value {
    let Some(path) = std::env::var_os("STOWAGE_EMULATORS") else {
        panic!(
            "the bucket emulators are not running: run the suite with `bash tests/run`, which installs \
             moto[server], azurite@3.35.0 and fake-gcs-server into .tools/ and starts them"
        );
    };
    let text = std::fs::read_to_string(&path).expect("emulator state file");
    serde_json::from_str(&text).expect("emulator state JSON")
}

const CANARY: &str = "CANARY-wrong-secret-4e8d";

/// A file with one location per scenario, for the provider `which`, and its
/// credential files.
fn scenario_file(which: &str) -> crate::support::Fixture {
    let e = emulators();
    match which {
        "s3" => {
            let url = e["s3"]["url"].as_str().unwrap();
            let good = format!(
                "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                e["s3"]["access_key_id"].as_str().unwrap(),
                e["s3"]["secret_access_key"].as_str().unwrap()
            );
            let bad = format!(
                "[default]\naws_access_key_id = {}\naws_secret_access_key = {CANARY}\n",
                e["s3"]["access_key_id"].as_str().unwrap()
            );
            let config = format!(
                "{{ region = \"us-east-1\", s3Url = \"{url}\", s3ForcePathStyle = \"true\" }}"
            );
            five_locations("aws", &config, "ini", &good, &bad)
        }
        "azure" => {
            let url = e["azure"]["url"].as_str().unwrap();
            let account = e["azure"]["account"].as_str().unwrap();
            let good = format!(
                "AZURE_STORAGE_ACCOUNT_ACCESS_KEY={}\n",
                e["azure"]["key"].as_str().unwrap()
            );
            // A well-formed account key that is not the account's.
            let wrong_key = base64_of(&format!("{CANARY}-{CANARY}-{CANARY}"));
            let bad = format!("AZURE_STORAGE_ACCOUNT_ACCESS_KEY={wrong_key}\n");
            let config = format!(
                "{{ storageAccount = \"{account}\", storageAccountURI = \"{url}\", storageAccountKeyEnvVar = \"AZURE_STORAGE_ACCOUNT_ACCESS_KEY\" }}"
            );
            five_locations("azure", &config, "env", &good, &bad)
        }
        "gcs" => {
            let url = e["gcs"]["url"].as_str().unwrap();
            // fake-gcs-server checks no signatures; object_store's emulator switch
            // (disable_oauth) keeps it from minting tokens with the key.
            let key = serde_json::json!({
                "type": "service_account", "client_email": "velero@stowage-test.iam.gserviceaccount.com",
                "private_key_id": "test", "private_key": CANARY, "disable_oauth": true,
            })
            .to_string();
            let location = |name: &str, bucket: &str, prefix: Option<&str>| {
                let prefix = prefix
                    .map(|p| format!("prefix = \"{p}\"\n"))
                    .unwrap_or_default();
                format!(
                    "[backup_locations.{name}]\nprovider = \"gcp\"\nbucket = \"{bucket}\"\n{prefix}credential = \"gcp\"\nconfig = {{ storeEndpoint = \"{url}\" }}\n"
                )
            };
            let text = format!(
                "version = 1\n[credentials.gcp]\nfile = \"gcp.json\"\n{}{}{}{}",
                location("clean", "velero-clean", None),
                location("prefixed", "velero-prefixed", Some("cluster-a")),
                location("foreign", "velero-foreign", None),
                location("missing", "velero-missing", None),
            );
            fixture(
                "stowage.toml",
                &move_default_into_clean(&text),
                &[("gcp.json", &key)],
            )
        }
        other => panic!("no scenario {other}"),
    }
}

/// The seeded scenarios as locations of `provider`: a clean bucket (the default), one
/// under a prefix, one with foreign folders, a missing one, and one reached with the
/// wrong secret.
fn five_locations(
    provider: &str,
    config: &str,
    extension: &str,
    good: &str,
    bad: &str,
) -> crate::support::Fixture {
    let location = |name: &str, bucket: &str, prefix: Option<&str>, credential: &str| {
        let prefix = prefix
            .map(|p| format!("prefix = \"{p}\"\n"))
            .unwrap_or_default();
        format!(
            "[backup_locations.{name}]\nprovider = \"{provider}\"\nbucket = \"{bucket}\"\n{prefix}credential = \"{credential}\"\nconfig = {config}\n"
        )
    };
    let text = format!(
        "version = 1\n[credentials.good]\nsecret = \"good\"\nfile = \"good.{extension}\"\n[credentials.bad]\nsecret = \"bad\"\nfile = \"bad.{extension}\"\n{}{}{}{}{}",
        location("clean", "velero-clean", None, "good"),
        location("prefixed", "velero-prefixed", Some("cluster-a"), "good"),
        location("foreign", "velero-foreign", None, "good"),
        location("missing", "velero-missing", None, "good"),
        location("wrong-key", "velero-prefixed", Some("cluster-b"), "bad"),
    );
    let good_file = format!("good.{extension}");
    let bad_file = format!("bad.{extension}");
    fixture(
        "stowage.toml",
        &move_default_into_clean(&text),
        &[(good_file.as_str(), good), (bad_file.as_str(), bad)],
    )
}

fn move_default_into_clean(text: &str) -> String {
    text.replacen(
        "[backup_locations.clean]\n",
        "[backup_locations.clean]\ndefault = true\n",
        1,
    )
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn reports_for(path: &Path) -> Vec<BucketReport> {
    let (loaded, diagnostics) = stowage::engine::check_file(path)
        .map(|c| (c.loaded.clone(), c.diagnostics))
        .expect("loads");
    assert!(
        diagnostics.iter().all(|d| !d.is_error()),
        "{diagnostics:#?}"
    );
    let config = loaded.config.as_ref().expect("model");
    let desired = render(config, &loaded.materials);
    let targets = desired_targets(config, &loaded.materials, &desired, &Observed::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(check_all(targets, Duration::from_secs(20)))
}

fn status<'a>(reports: &'a [BucketReport], location: &str) -> &'a BucketStatus {
    &reports
        .iter()
        .find(|r| r.location == location)
        .unwrap_or_else(|| panic!("no report for {location}"))
        .status
}

fn assert_reachable(reports: &[BucketReport], location: &str, backups: usize, foreign: &[&str]) {
    match status(reports, location) {
        BucketStatus::Reachable {
            backups: found,
            backups_capped: false,
            foreign: found_foreign,
        } => {
            assert_eq!(*found, backups, "{location}: backups");
            assert_eq!(found_foreign, foreign, "{location}: foreign folders");
        }
        other => panic!("{location}: {other:?}"),
    }
}

fn assert_unreachable(reports: &[BucketReport], location: &str, starts: &str) {
    match status(reports, location) {
        BucketStatus::Unreachable { reason } => {
            assert!(reason.starts_with(starts), "{location}: {reason}");
            assert!(
                !reason.contains(CANARY),
                "{location}: the reason shows the secret"
            );
        }
        other => panic!("{location}: {other:?}"),
    }
}

fn check_provider(which: &str) {
    let fixture = scenario_file(which);
    let reports = reports_for(&fixture.path);
    // Two backups; b3 has no velero-backup.json; restores, kopia and a loose file are fine.
    assert_reachable(&reports, "clean", 2, &[]);
    // Under the prefix; other-app/ beside it is not the location's business.
    assert_reachable(&reports, "prefixed", 3, &[]);
    assert_reachable(&reports, "foreign", 1, &["data", "logs"]);
    assert_unreachable(&reports, "missing", "no such bucket");
    if which != "gcs" {
        assert_unreachable(&reports, "wrong-key", "the credential was refused");
    }
}

#[test]
fn s3_through_moto_with_signatures_checked() {
    check_provider("s3");
}

#[test]
fn azure_blob_through_azurite() {
    check_provider("azure");
}

#[test]
fn gcs_through_fake_gcs_server() {
    check_provider("gcs");
}

#[test]
fn plans_show_bucket_results_and_never_the_secret() {
    for which in ["s3", "azure"] {
        let fixture = scenario_file(which);
        let dir = fixture.path.parent().expect("dir");
        std::fs::write(
            dir.join("state.yaml"),
            "apiVersion: v1\nkind: List\nitems: []\n",
        )
        .unwrap();
        for format in ["text", "json", "markdown"] {
            let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
                .args([
                    "plan",
                    "--observed",
                    "state.yaml",
                    "--format",
                    format,
                    "--color",
                    "never",
                ])
                .current_dir(dir)
                .output()
                .expect("run");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{which} {format}: the plan has bucket errors\n{stderr}"
            );
            assert!(
                !stdout.contains(CANARY) && !stderr.contains(CANARY),
                "{which} {format} leaked the secret"
            );
            assert!(stderr.contains("stowage::bucket-unreachable"), "{stderr}");
            assert!(stderr.contains("stowage::bucket-foreign-data"), "{stderr}");
            if format == "json" {
                let json: Value = serde_json::from_str(&stdout).expect("json");
                let clean = json["buckets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|b| b["location"] == "clean")
                    .unwrap();
                assert_eq!(clean["status"], "reachable");
                assert_eq!(clean["backups"], 2);
                let codes: Vec<&str> = json["diagnostics"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d["code"].as_str().unwrap())
                    .collect();
                assert!(codes.contains(&"stowage::bucket-unreachable"));
            } else {
                assert!(
                    stdout.contains("reachable, 2 backups"),
                    "{which} {format}:\n{stdout}"
                );
            }
        }
        // --no-bucket-checks plans the same objects without listing anything.
        let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
            .args(["plan", "--observed", "state.yaml", "--no-bucket-checks"])
            .current_dir(dir)
            .output()
            .expect("run");
        assert_exit(&out, 0);
        assert!(!String::from_utf8_lossy(&out.stdout).contains("Buckets:"));
    }
}

#[test]
fn deleting_a_location_counts_the_backups_at_its_current_place() {
    let e = emulators();
    let url = e["s3"]["url"].as_str().unwrap();
    let ini = format!(
        "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        e["s3"]["access_key_id"].as_str().unwrap(),
        e["s3"]["secret_access_key"].as_str().unwrap()
    );
    let text = format!(
        "version = 1\n[credentials.good]\nsecret = \"good\"\nfile = \"good.ini\"\n[backup_locations.clean]\nprovider = \"aws\"\nbucket = \"velero-clean\"\ndefault = true\ncredential = \"good\"\nconfig = {{ region = \"us-east-1\", s3Url = \"{url}\", s3ForcePathStyle = \"true\" }}\n"
    );
    // The cluster also has `retired`, stowage's own, pointing at the prefixed bucket.
    let state = format!(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: velero.io/v1\n  kind: BackupStorageLocation\n  metadata:\n    name: retired\n    namespace: velero\n    labels: {{app.kubernetes.io/managed-by: stowage, stowage.io/owner: default}}\n  spec:\n    provider: aws\n    credential: {{name: good, key: cloud}}\n    objectStorage: {{bucket: velero-prefixed, prefix: cluster-a}}\n    config: {{region: us-east-1, s3Url: '{url}', s3ForcePathStyle: 'true'}}\n"
    );
    let fixture = fixture(
        "stowage.toml",
        &text,
        &[("good.ini", &ini), ("state.yaml", &state)],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["plan", "--observed", "state.yaml", "--format", "json"])
        .current_dir(fixture.path.parent().unwrap())
        .output()
        .expect("run");
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    let retired = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "retired")
        .expect("delete");
    assert_eq!(retired["action"], "delete");
    assert_eq!(retired["risks"], serde_json::json!(["delete-with-backups"]));
    assert_eq!(retired["backups"], 3);
}
