//! plan and apply against a cluster: the test API server with the Velero simulator,
//! whose locations point at the S3 emulator. Each use case of Velero's locations doc
//! is applied from a file, then planned again to no changes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use stowage_test_apiserver::simulator::Settings;
use stowage_test_apiserver::{Config, Effect, Fault, Route, TestServer, Verb};

use crate::buckets::emulators;
use crate::support::assert_exit;

const CANARY: &str = "canary-5b1e-never-printed";

struct Live {
    server: TestServer,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    /// Every stdout and stderr so far, to search for the canary.
    transcript: std::cell::RefCell<String>,
}

fn live() -> Live {
    let mut config = Config::new(stowage_test_apiserver::velero_crds());
    config.namespaces = vec!["velero".into()];
    config.simulator = Some(Settings::new("velero"));
    let server = TestServer::start(config).expect("test API server");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig("velero")).unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    Live {
        server,
        dir,
        kubeconfig,
        transcript: Default::default(),
    }
}

/// An AWS credentials file for the S3 emulator, with the canary riding along.
fn s3_credentials(secret_key: &str) -> String {
    let e = emulators();
    format!(
        "[default]\n# {CANARY}\naws_access_key_id = {}\naws_secret_access_key = {secret_key}\n",
        e["s3"]["access_key_id"].as_str().unwrap()
    )
}

fn good_secret() -> String {
    emulators()["s3"]["secret_access_key"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A location on the S3 emulator.
fn location(name: &str, bucket: &str, extra: &str) -> String {
    let url = emulators()["s3"]["url"].as_str().unwrap().to_string();
    format!(
        "[backup_locations.{name}]\nprovider = \"aws\"\nbucket = \"{bucket}\"\ncredential = \"s3\"\n{extra}config = {{ region = \"us-east-1\", s3Url = \"{url}\", s3ForcePathStyle = \"true\" }}\n\n"
    )
}

impl Live {
    fn write_file(&self, body: &str) -> PathBuf {
        let path = self.dir.path().join("stowage.toml");
        std::fs::write(&path, format!("version = 1\n\n[credentials.s3]\nsecret = \"s3-credentials\"\nfile = \"secrets/s3.ini\"\n\n{body}")).unwrap();
        path
    }

    fn write_credentials(&self, text: &str) {
        std::fs::write(self.dir.path().join("secrets/s3.ini"), text).unwrap();
    }

    fn stowage(&self, args: &[&str]) -> Output {
        let output = Command::new(env!("CARGO_BIN_EXE_stowage"))
            .current_dir(self.dir.path())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let mut transcript = self.transcript.borrow_mut();
        transcript.push_str(&String::from_utf8_lossy(&output.stdout));
        transcript.push_str(&String::from_utf8_lossy(&output.stderr));
        output
    }

    /// `plan --format json`: the changes as `action kind/name`.
    fn changes(&self) -> Vec<String> {
        let out = self.stowage(&["plan", "--format", "json", "--no-bucket-checks"]);
        assert!(
            out.status.success(),
            "plan failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{} {}/{}",
                    c["action"].as_str().unwrap(),
                    c["kind"].as_str().unwrap(),
                    c["name"].as_str().unwrap()
                )
            })
            .collect()
    }

    fn apply(&self) -> String {
        let out = self.stowage(&[
            "apply",
            "--auto-approve",
            "--wait=20s",
            "--no-bucket-checks",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_exit(&out, 0);
        stdout
    }

    fn bsl(&self, name: &str) -> Option<Value> {
        self.server.get(
            "velero.io/v1",
            "BackupStorageLocation",
            Some("velero"),
            name,
        )
    }

    fn assert_no_canary(&self) {
        assert!(
            !self.transcript.borrow().contains(CANARY),
            "the canary secret was printed"
        );
    }
}

#[test]
fn each_use_case_of_the_locations_doc_applies_then_plans_to_no_changes() {
    let live = live();
    live.write_credentials(&s3_credentials(&good_secret()));
    let schedule = "[schedules.daily]\ncron = \"0 3 * * *\"\nstorage_locations = [\"primary\", \"secondary\"]\nttl = \"720h\"\n";
    let two = format!(
        "{}{}{schedule}",
        location("primary", "velero-clean", "default = true\n"),
        location("secondary", "velero-prefixed", "prefix = \"cluster-a\"\n"),
    );
    live.write_file(&two);

    // From an empty namespace: everything is created, and Velero finds it Available.
    assert_eq!(
        live.changes(),
        [
            "create Secret/s3-credentials",
            "create BackupStorageLocation/primary",
            "create BackupStorageLocation/secondary",
            "create Schedule/daily-primary",
            "create Schedule/daily-secondary",
        ]
    );
    let applied = live.apply();
    assert!(applied.contains("primary: Available"), "{applied}");
    assert!(applied.contains("secondary: Available"), "{applied}");
    // Velero's own writes since (status, skipImmediately) are not drift.
    assert_eq!(live.changes(), Vec::<String>::new());
    let bsl = live.bsl("primary").unwrap();
    assert_eq!(
        bsl["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "stowage"
    );
    let managers: Vec<&str> = bsl["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert_eq!(managers, ["stowage", "velero-server"]);
    assert!(
        bsl["metadata"]["managedFields"][0]["fieldsV1"]
            .get("f:status")
            .is_none(),
        "stowage never writes status"
    );

    // A credential rotated: only the Secret changes.
    live.write_credentials(
        &s3_credentials(&good_secret()).replace("[default]", "[default]\n# rotated"),
    );
    assert_eq!(live.changes(), ["update Secret/s3-credentials"]);
    live.apply();
    assert_eq!(live.changes(), Vec::<String>::new());

    // A default switch: both locations change, and Velero never keeps two defaults.
    let switched = format!(
        "{}{}{schedule}",
        location("primary", "velero-clean", ""),
        location(
            "secondary",
            "velero-prefixed",
            "prefix = \"cluster-a\"\ndefault = true\n"
        ),
    );
    live.write_file(&switched);
    assert_eq!(
        live.changes(),
        [
            "update BackupStorageLocation/primary",
            "update BackupStorageLocation/secondary"
        ]
    );
    live.apply();
    // stowage stops applying `default` there, so the field goes (false to Velero).
    assert_ne!(live.bsl("primary").unwrap()["spec"]["default"], true);
    assert_eq!(live.bsl("secondary").unwrap()["spec"]["default"], true);
    assert_eq!(live.changes(), Vec::<String>::new());

    // A redundant location added: it and its schedule copy are created.
    let schedule3 = schedule.replace(
        "[\"primary\", \"secondary\"]",
        "[\"primary\", \"secondary\", \"tertiary\"]",
    );
    let three = format!(
        "{}{}{}{schedule3}",
        location("primary", "velero-clean", ""),
        location(
            "secondary",
            "velero-prefixed",
            "prefix = \"cluster-a\"\ndefault = true\n"
        ),
        location("tertiary", "velero-prefixed", "prefix = \"dr\"\n"),
    );
    live.write_file(&three);
    assert_eq!(
        live.changes(),
        [
            "create BackupStorageLocation/tertiary",
            "create Schedule/daily-tertiary"
        ]
    );
    let applied = live.apply();
    assert!(applied.contains("tertiary: Available"), "{applied}");
    assert_eq!(live.changes(), Vec::<String>::new());

    // A location removed: it and its schedule copy go, deletions last.
    live.write_file(&switched);
    assert_eq!(
        live.changes(),
        [
            "delete BackupStorageLocation/tertiary",
            "delete Schedule/daily-tertiary"
        ]
    );
    let applied = live.apply();
    let schedule_at = applied.find("Schedule velero/daily-tertiary").unwrap();
    let location_at = applied
        .find("BackupStorageLocation velero/tertiary")
        .unwrap();
    assert!(
        schedule_at < location_at,
        "the schedule goes before its location:\n{applied}"
    );
    assert!(live.bsl("tertiary").is_none());
    assert_eq!(live.changes(), Vec::<String>::new());
    live.assert_no_canary();
}

#[test]
fn a_plan_makes_as_many_requests_for_1000_objects_as_for_10() {
    let count_for = |unmanaged: usize| {
        let live = live();
        live.write_credentials(&s3_credentials(&good_secret()));
        live.write_file(&location("primary", "velero-clean", "default = true\n"));
        for i in 0..unmanaged {
            live.server
                .seed(
                    json!({"apiVersion": "velero.io/v1", "kind": "Schedule",
                    "metadata": {"name": format!("legacy-{i}"), "namespace": "velero"},
                    "spec": {"schedule": "0 1 * * *", "template": {}}}),
                    "velero",
                )
                .unwrap();
        }
        live.server.hooks().clear();
        let out = live.stowage(&["plan", "--no-bucket-checks", "--format", "json"]);
        assert_exit(&out, 0);
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(plan["unmanaged"].as_array().unwrap().len(), unmanaged);
        let requests = live.server.hooks().requests();
        assert!(
            requests
                .iter()
                .all(|r| r.verb != Verb::Get || r.resource.is_none()),
            "no GET per object"
        );
        requests.len()
    };
    let ten = count_for(10);
    let thousand = count_for(1000);
    assert_eq!(
        ten, thousand,
        "a plan's requests do not grow with the objects"
    );
    assert!(ten <= 8, "one LIST per kind (and pages of 500): {ten}");
}

#[test]
fn faults_mid_apply_are_reported_exactly_and_a_rerun_converges() {
    let live = live();
    live.write_credentials(&s3_credentials(&good_secret()));
    live.server
        .seed(
            json!({"apiVersion": "velero.io/v1", "kind": "Schedule",
            "metadata": {"name": "legacy", "namespace": "velero"},
            "spec": {"schedule": "0 1 * * *", "template": {}}}),
            "velero",
        )
        .unwrap();
    let legacy_rv = |live: &Live| {
        live.server
            .get("velero.io/v1", "Schedule", Some("velero"), "legacy")
            .unwrap()["metadata"]["resourceVersion"]
            .clone()
    };
    // Velero's controller writes every schedule once (skipImmediately); wait for that.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while live
        .server
        .get("velero.io/v1", "Schedule", Some("velero"), "legacy")
        .unwrap()["spec"]["skipImmediately"]
        != false
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the simulator never reconciled the schedule"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let before = legacy_rv(&live);
    live.write_file(&format!(
        "{}{}[schedules.daily]\ncron = \"0 3 * * *\"\nstorage_location = \"primary\"\n",
        location("primary", "velero-clean", "default = true\n"),
        location("secondary", "velero-prefixed", "prefix = \"cluster-a\"\n"),
    ));
    // Transient trouble is retried: two 500s and a 429 on the Secret's apply.
    live.server.inject(Fault {
        route: Route::verb(Verb::Apply).on("secrets"),
        times: 2,
        effect: Effect::Status(500),
    });
    live.server.inject(Fault {
        route: Route::verb(Verb::Apply).on("secrets"),
        times: 1,
        effect: Effect::TooManyRequests {
            retry_after_seconds: 1,
        },
    });
    // A location that keeps failing stops the schedules.
    live.server.inject(Fault {
        route: Route::verb(Verb::Apply)
            .on("backupstoragelocations")
            .named("secondary"),
        times: 100,
        effect: Effect::Status(500),
    });
    let out = live.stowage(&["apply", "--auto-approve", "--no-bucket-checks"]);
    assert_exit(&out, 1);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("created  Secret velero/s3-credentials"),
        "{report}"
    );
    assert!(
        report.contains("created  BackupStorageLocation velero/primary"),
        "{report}"
    );
    assert!(
        report.contains("FAILED   create BackupStorageLocation velero/secondary"),
        "{report}"
    );
    assert!(
        report.contains("skipped  create Schedule velero/daily"),
        "{report}"
    );
    assert!(report.contains("Applied 2 of 4 changes."), "{report}");
    assert!(live.bsl("secondary").is_none());
    assert!(
        live.server
            .get("velero.io/v1", "Schedule", Some("velero"), "daily")
            .is_none()
    );

    // Another manager took a field stowage declares: a conflict that names it.
    live.server
        .merge_patch(
            "velero.io/v1",
            "BackupStorageLocation",
            Some("velero"),
            "primary",
            json!({"spec": {"objectStorage": {"bucket": "velero-elsewhere"}}}),
            "helm",
        )
        .unwrap();
    live.server.hooks().clear();
    live.server.inject(Fault {
        route: Route::verb(Verb::Apply)
            .on("backupstoragelocations")
            .named("secondary"),
        times: 100,
        effect: Effect::Status(500),
    });
    let out = live.stowage(&["apply", "--auto-approve", "--no-bucket-checks"]);
    assert_exit(&out, 1);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("conflict with \"helm\" using velero.io/v1: .spec.objectStorage.bucket"),
        "{report}"
    );
    assert!(report.contains("--force-conflicts"), "{report}");

    // The cause gone, a re-run with --force-conflicts converges.
    live.server.hooks().clear_faults();
    let out = live.stowage(&[
        "apply",
        "--auto-approve",
        "--no-bucket-checks",
        "--force-conflicts",
        "--wait=20s",
    ]);
    assert_exit(&out, 0);
    assert_eq!(
        live.bsl("primary").unwrap()["spec"]["objectStorage"]["bucket"],
        "velero-clean"
    );
    assert_eq!(live.changes(), Vec::<String>::new());
    assert_eq!(
        legacy_rv(&live),
        before,
        "the unmanaged schedule was never written"
    );
    assert!(
        live.server
            .hooks()
            .requests()
            .iter()
            .all(|r| r.name.as_deref() != Some("legacy"))
    );
    live.assert_no_canary();
}

#[test]
fn apply_refuses_without_a_terminal_or_approval() {
    let live = live();
    live.write_credentials(&s3_credentials(&good_secret()));
    live.write_file(&location("primary", "velero-clean", "default = true\n"));
    let out = live.stowage(&["apply", "--no-bucket-checks"]);
    assert_exit(&out, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --auto-approve"));
    assert!(live.bsl("primary").is_none());
}

#[test]
fn cluster_errors_say_what_is_wrong() {
    let live = live();
    live.write_credentials(&s3_credentials(&good_secret()));
    live.write_file(&location("primary", "velero-clean", "default = true\n"));
    live.server.inject(Fault {
        route: Route::verb(Verb::List).on("backupstoragelocations"),
        times: 1,
        effect: Effect::Status(403),
    });
    let out = live.stowage(&["plan", "--no-bucket-checks"]);
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not allowed to list backupstoragelocations.velero.io in namespace velero"),
        "{stderr}"
    );

    let missing: &Path = &live.dir.path().join("no-such-kubeconfig");
    let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .current_dir(live.dir.path())
        .arg("--kubeconfig")
        .arg(missing)
        .args(["plan", "--no-bucket-checks"])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read the kubeconfig"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    std::fs::write(
        &live.kubeconfig,
        live.server
            .kubeconfig("velero")
            .replace(&live.server.url(), &format!("http://127.0.0.1:{port}")),
    )
    .unwrap();
    let out = live.stowage(&["plan", "--no-bucket-checks"]);
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "the cluster at http://127.0.0.1:{port}/ cannot be reached"
        )),
        "{stderr}"
    );
}

/// The objects of a shared fixture, as `kubectl get -o yaml` printed them.
fn fixture_objects(name: &str) -> Vec<Value> {
    let path = crate::crd_schema::shared_dir().join("fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    documents
        .into_iter()
        .flat_map(|d| d["items"].as_array().cloned().unwrap_or_default())
        .collect()
}

const LIVE_CHECKS_FILE: &str = r#"version = 1

[credentials.install]
secret = "cloud-credentials"
external = true

[backup_locations.default]
provider = "aws"
bucket = "velero-backups"
prefix = "cluster-a"
config = { region = "us-east-1" }

[backup_locations.primary]
provider = "aws"
bucket = "velero-primary"
default = true
config = { region = "us-east-1" }

[backup_locations.blob]
provider = "azure"
bucket = "velero"
config = { resourceGroup = "rg", storageAccount = "acct" }

[snapshot_locations.ebs-west]
provider = "aws"
config = { region = "us-west-2" }
"#;

fn live_codes(diagnostics: &[Value]) -> Vec<String> {
    let mut codes: Vec<String> = diagnostics
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["severity"].as_str().unwrap(),
                d["code"].as_str().unwrap()
            )
        })
        .collect();
    codes.sort();
    codes
}

#[test]
fn live_checks_fire_on_the_fixture_cluster() {
    let expected = [
        "error stowage::plugin",
        "error stowage::region",
        "warning stowage::default-location",
        "warning stowage::volumes-without-vsl",
    ];
    // Offline, from a saved state of the fixture cluster...
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("stowage.toml"), LIVE_CHECKS_FILE).unwrap();
    let shared = crate::crd_schema::shared_dir().join("fixtures");
    let state = [
        std::fs::read_to_string(shared.join("multi-location.yaml")).unwrap(),
        std::fs::read_to_string(shared.join("nodes-and-volumes.yaml")).unwrap(),
    ]
    .join("\n---\n");
    std::fs::write(dir.path().join("state.yaml"), state).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .current_dir(dir.path())
        .args([
            "plan",
            "--observed",
            "state.yaml",
            "--no-bucket-checks",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let diagnostics = plan["diagnostics"].as_array().unwrap();
    assert_eq!(live_codes(diagnostics), expected);
    let messages: Vec<&str> = diagnostics
        .iter()
        .map(|d| d["message"].as_str().unwrap())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("\"us-west-2\" differs from the nodes' region (us-east-1)")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("1 volume with driver pxd.portworx.com (pvc-9e5a")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("no plugin for provider \"azure\"")),
        "{messages:?}"
    );
    let region = diagnostics
        .iter()
        .find(|d| d["code"] == "stowage::region")
        .unwrap();
    assert_eq!(
        (region["line"].as_u64(), region["column"].as_u64()),
        (Some(26), Some(21))
    );

    // ...and live, from the same objects in the test API server.
    let live = live();
    for object in fixture_objects("multi-location.yaml")
        .into_iter()
        .chain(fixture_objects("nodes-and-volumes.yaml"))
    {
        let kind = object["kind"].as_str().unwrap_or_default();
        if [
            "Secret",
            "Deployment",
            "Node",
            "PersistentVolume",
            "BackupStorageLocation",
        ]
        .contains(&kind)
        {
            let mut object = object;
            object["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("managedFields");
            live.server.seed(object, "fixture").unwrap();
        }
    }
    std::fs::write(live.dir.path().join("stowage.toml"), LIVE_CHECKS_FILE).unwrap();
    let out = live.stowage(&["plan", "--no-bucket-checks", "--format", "json"]);
    assert_exit(&out, 1);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        live_codes(plan["diagnostics"].as_array().unwrap()),
        expected
    );
}

#[test]
fn a_saved_plan_applies_exactly_or_is_refused_when_anything_changed() {
    let live = live();
    live.write_credentials(&s3_credentials(&good_secret()));
    live.write_file(&location("primary", "velero-clean", "default = true\n"));
    let out = live.stowage(&["plan", "--no-bucket-checks", "--out", "plan.json"]);
    assert_exit(&out, 0);
    let saved = std::fs::read_to_string(live.dir.path().join("plan.json")).unwrap();
    assert!(!saved.contains(CANARY));
    let out = live.stowage(&["apply", "plan.json", "--auto-approve"]);
    assert_exit(&out, 0);
    assert!(live.bsl("primary").is_some());

    // The file changed since the plan: refused, nothing written.
    live.write_file(&location(
        "primary",
        "velero-clean",
        "default = true\naccess_mode = \"ReadOnly\"\n",
    ));
    assert_exit(
        &live.stowage(&["plan", "--no-bucket-checks", "--out", "plan.json"]),
        0,
    );
    live.write_file(&location("primary", "velero-clean", "default = true\n"));
    let out = live.stowage(&["apply", "plan.json", "--auto-approve"]);
    assert_exit(&out, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("changed since the plan was made"));
    assert_eq!(
        live.bsl("primary").unwrap()["spec"]["accessMode"],
        "ReadWrite"
    );

    // The cluster changed since the plan: refused too.
    live.write_file(&location(
        "primary",
        "velero-clean",
        "default = true\naccess_mode = \"ReadOnly\"\n",
    ));
    assert_exit(
        &live.stowage(&["plan", "--no-bucket-checks", "--out", "plan.json"]),
        0,
    );
    live.server
        .merge_patch(
            "velero.io/v1",
            "BackupStorageLocation",
            Some("velero"),
            "primary",
            json!({"spec": {"validationFrequency": "5m"}}),
            "kubectl-edit",
        )
        .unwrap();
    let out = live.stowage(&["apply", "plan.json", "--auto-approve"]);
    assert_exit(&out, 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the cluster's objects changed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        live.bsl("primary").unwrap()["spec"]["accessMode"],
        "ReadWrite"
    );
    live.assert_no_canary();
}

/// Seeds the test API server with the fixture's objects as the Velero CLI left them.
fn seed_fixture(live: &Live, name: &str, skip: &[&str]) {
    for mut object in fixture_objects(name) {
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let object_name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let wanted = [
            "Secret",
            "Deployment",
            "BackupStorageLocation",
            "VolumeSnapshotLocation",
            "Schedule",
        ];
        if !wanted.contains(&kind.as_str()) || skip.contains(&object_name.as_str()) {
            continue;
        }
        object["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        live.server.seed(object, "velero").unwrap();
    }
}

#[test]
fn import_writes_a_file_that_plans_to_adoption_only() {
    let live = live();
    // Two of the fixture's objects are broken as Velero sees them: backups-secondary
    // shares the default location's bucket at the root (Unavailable), and
    // portworx-cloud names a plugin that does not exist. stowage refuses both, so the
    // round trip leaves them out; the next test covers them.
    seed_fixture(
        &live,
        "multi-location.yaml",
        &["backups-secondary", "portworx-cloud"],
    );
    let out = live.stowage(&["import", "-o", "stowage.toml"]);
    assert_exit(&out, 0);
    let imported = std::fs::read_to_string(live.dir.path().join("stowage.toml")).unwrap();
    assert!(imported.contains("[credentials.credentials]"), "{imported}");
    assert!(imported.contains("external = true"), "{imported}");
    assert!(
        !imported.contains("FIXTURE-NOT-A-SECRET"),
        "no secret value in the file"
    );

    let out = live.stowage(&["plan", "--no-bucket-checks", "--format", "json"]);
    assert_exit(&out, 0);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes = plan["changes"].as_array().unwrap();
    assert!(!changes.is_empty());
    for change in changes {
        assert_eq!(change["action"], "update", "{change}");
        assert_eq!(change["risks"], json!(["adopt"]), "{change}");
        for field in change["fields"].as_array().unwrap() {
            assert!(
                field["path"]
                    .as_str()
                    .unwrap()
                    .starts_with("metadata.labels["),
                "only labels: {change}"
            );
        }
    }
    let adopted: Vec<&str> = changes
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(adopted, ["default", "other-account", "default", "daily"]);

    // The next apply labels what it adopts; then there is nothing left to do.
    let out = live.stowage(&["apply", "--auto-approve", "--no-bucket-checks"]);
    assert_exit(&out, 0);
    assert_eq!(live.changes(), Vec::<String>::new());
    let bsl = live.bsl("other-account").unwrap();
    assert_eq!(
        bsl["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "stowage"
    );
}

#[test]
fn import_keeps_what_velero_would_refuse_and_validate_says_so() {
    let live = live();
    seed_fixture(&live, "multi-location.yaml", &[]);
    let out = live.stowage(&["import", "-o", "stowage.toml"]);
    assert_exit(&out, 0);
    let import_stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        import_stderr.contains("stowage::prefix-overlap"),
        "import reports it: {import_stderr}"
    );
    let out = live.stowage(&["validate", "--format", "json"]);
    assert_exit(&out, 1);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<&str> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        ["stowage::prefix-overlap", "stowage::provider-config"]
    );
}

#[test]
fn status_shows_velero_verdicts_and_schedule_runs() {
    let live = live();
    live.write_credentials(&s3_credentials("not-the-secret"));
    live.write_file(&format!(
        "{}[schedules.nightly]\ncron = \"0 1 * * *\"\nstorage_location = \"primary\"\n",
        location("primary", "velero-clean", "default = true\n")
    ));
    let out = live.stowage(&[
        "apply",
        "--auto-approve",
        "--no-bucket-checks",
        "--wait=20s",
    ]);
    // The wrong secret: Velero says Unavailable, and apply --wait fails with its words.
    assert_exit(&out, 1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "primary: Unavailable — BackupStorageLocation \"primary\" is unavailable: rpc error"
        ),
        "{stdout}"
    );

    let out = live.stowage(&["status"]);
    assert_exit(&out, 0);
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table.lines().find(|l| l.starts_with("primary ")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cells[..4],
        ["primary", "aws", "velero-clean", "Unavailable"],
        "{table}"
    );
    assert_eq!(cells.last(), Some(&"yes"));
    assert!(
        table.contains("  primary: BackupStorageLocation \"primary\" is unavailable"),
        "{table}"
    );
    let schedule = table.lines().find(|l| l.starts_with("nightly ")).unwrap();
    assert!(
        schedule.contains("0 1 * * *")
            && schedule.contains("never")
            && schedule.contains(":00 UTC"),
        "{table}"
    );
    live.assert_no_canary();
}

#[test]
fn a_write_that_times_out_is_retried_and_reported_once_done() {
    let live = live();
    live.write_credentials(&s3_credentials(&good_secret()));
    live.write_file(&format!(
        "{}[schedules.daily]\ncron = \"0 3 * * *\"\nstorage_location = \"primary\"\n",
        location("primary", "velero-clean", "default = true\n")
    ));
    live.server.inject(Fault {
        route: Route::verb(Verb::Apply).on("schedules"),
        times: 1,
        effect: Effect::Latency(std::time::Duration::from_secs(3)),
    });
    let out = live.stowage(&[
        "apply",
        "--auto-approve",
        "--no-bucket-checks",
        "--request-timeout",
        "0.5",
    ]);
    assert_exit(&out, 0);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("created  Schedule velero/daily"),
        "{report}"
    );
    assert!(report.contains("Applied 3 of 3 changes."), "{report}");
    let applies = live.server.hooks().count(Verb::Apply, "schedules");
    assert_eq!(applies, 2, "the slow write (which landed) and its retry");
}

#[test]
fn expired_credentials_and_a_cluster_without_velero_are_named_plainly() {
    let live = live();
    live.write_credentials(&s3_credentials(&good_secret()));
    live.write_file(&location("primary", "velero-clean", "default = true\n"));
    live.server.inject(Fault {
        route: Route::verb(Verb::List),
        times: 20,
        effect: Effect::Status(401),
    });
    let out = live.stowage(&["plan", "--no-bucket-checks"]);
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "refused the credentials in the kubeconfig (401 Unauthorized): they may have expired"
        ),
        "{stderr}"
    );

    // A cluster without Velero's CRDs.
    let empty = tempfile::tempdir().unwrap();
    let mut config = Config::new(empty.path());
    config.namespaces = vec!["velero".into()];
    let bare = TestServer::start(config).unwrap();
    std::fs::write(&live.kubeconfig, bare.kubeconfig("velero")).unwrap();
    let out = live.stowage(&["plan", "--no-bucket-checks"]);
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("Velero is not installed in this cluster: the API server does not serve backupstoragelocations.velero.io"), "{stderr}");
}
