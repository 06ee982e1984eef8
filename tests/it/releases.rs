//! Velero as people run it: the version matrix. The whole live suite runs on Velero
//! 1.18; here a subset runs on real Velero 1.17 (its own control plane, with 1.17's
//! CRDs): apply from empty with every location `Available`, a fanned-out schedule
//! landing a backup in each bucket, `status --check`, and the version rules (a
//! `caCertRef` refused before anything is written, the same file planned clean on
//! 1.18). And on 1.18 with `--concurrent-backups=2`, three copies of one schedule run
//! one after another through Velero's queue: in progress, never `behind`.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use stowage_test_harness::{Stack, VeleroServer};

use crate::cluster::{Options, TestCluster, cluster, cluster_on, eventually, good_secret};
use crate::copies::{
    both_copies_land, every_minute_to_two_locations, latest_final, write_dr_credentials,
};
use crate::support::assert_exit;

const VELERO: Options = Options {
    velero: true,
    proxy: false,
};

/// `ca_cert_ref` on the `dr` location of `every_minute_to_two_locations`.
fn with_ca_cert_ref(file: &str) -> String {
    file.replace(
        "credential = \"dr\"\n",
        "credential = \"dr\"\nca_cert_ref = { secret = \"ca\", key = \"ca.pem\" }\n",
    )
}

/// The line of `stowage.toml` holding `needle` (1-based).
fn line_of(live: &TestCluster, needle: &str) -> usize {
    let text = std::fs::read_to_string(live.dir.path().join("stowage.toml")).unwrap();
    text.lines()
        .position(|line| line.contains(needle))
        .map(|index| index + 1)
        .unwrap_or_else(|| panic!("no {needle:?} in {text}"))
}

#[test]
fn on_velero_1_17_copies_land_in_each_bucket_and_ca_cert_ref_is_refused_before_any_write() {
    let live = cluster_on(Stack::velero_1_17(), "velero-1-17", VELERO);
    write_dr_credentials(&live, &good_secret());
    let file = every_minute_to_two_locations(&live);
    live.write_file(&file);

    // From empty: every location Available, as Velero 1.17 itself says.
    let applied = live.apply();
    assert!(
        applied.contains("primary: Available") && applied.contains("dr: Available"),
        "{applied}"
    );
    let deployment = live
        .ns
        .get("apps/v1", "Deployment", "velero")
        .expect("the velero Deployment");
    assert!(
        deployment.to_string().contains("velero/velero:v1.17.2"),
        "the 1.17 stack runs Velero 1.17.2: {deployment:#}"
    );

    // A copy in each bucket, and status proves both (the buckets are read with each
    // location's own credential).
    both_copies_land(&live);
    let out = live.stowage(&["status", "--format", "json", "--no-bucket-checks"]);
    let document: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        document["velero"],
        json!({"version": "1.17.2", "version_from": "the image of Deployment velero",
               "concurrent_backups": null}),
        "1.17 has no backup queue"
    );

    // caCertRef is 1.18's: refused at its key, naming 1.18, and nothing is written.
    let before = live.bsl("dr").expect("dr");
    live.write_file(&with_ca_cert_ref(&file));
    let line = line_of(&live, "ca_cert_ref");
    let out = live.stowage(&["plan", "--no-bucket-checks"]);
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stowage::velero-version")
            && stderr.contains("needs Velero 1.18")
            && stderr.contains("1.17.2")
            && stderr.contains(&format!("stowage.toml:{line}:")),
        "{stderr}"
    );
    let out = live.stowage(&["apply", "--auto-approve", "--no-bucket-checks"]);
    assert_exit(&out, 1);
    let after = live.bsl("dr").expect("dr");
    assert_eq!(
        before["metadata"]["resourceVersion"], after["metadata"]["resourceVersion"],
        "a refused plan wrote to dr: {after:#}"
    );
    assert!(after["spec"]["objectStorage"].get("caCertRef").is_none());

    // Declared, the version says the same offline; declared otherwise, the plan names
    // the cluster's.
    let declaring = |version: &str| {
        live.write_whole(&format!(
            "{}{}",
            live.header().replace(
                "[velero]\n",
                &format!("[velero]\nversion = \"{version}\"\n")
            ),
            with_ca_cert_ref(&file)
        ));
    };
    declaring("1.17");
    let out = live.stowage(&["validate"]);
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs Velero 1.18"), "{stderr}");
    declaring("1.18");
    let out = live.stowage(&["plan", "--no-bucket-checks"]);
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("targets Velero 1.18, but the cluster runs 1.17.2"),
        "{stderr}"
    );
}

#[test]
fn the_same_ca_cert_ref_file_plans_clean_on_velero_1_18() {
    let live = cluster("velero-1-18-ca-ref", Options::default());
    stowage_test_harness::velero::install_deployment(&live.ns, &[]);
    live.seed(
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "ca", "namespace": live.namespace()},
               "stringData": {"ca.pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}}),
        "kubectl-create",
    );
    write_dr_credentials(&live, &good_secret());
    live.write_file(&with_ca_cert_ref(&every_minute_to_two_locations(&live)));
    let out = live.stowage(&["plan", "--no-bucket-checks", "--format", "json"]);
    assert_exit(&out, 0);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["diagnostics"], json!([]), "{plan:#}");
    assert!(
        out.stdout
            .windows(b"caCertRef".len())
            .any(|w| w == b"caCertRef"),
        "the plan writes caCertRef on 1.18"
    );
}

#[test]
fn on_velero_1_18_with_concurrent_backups_queued_copies_are_in_progress_never_behind() {
    let mut live = cluster("queued-copies", Options::default());
    let three = format!(
        "{}{}{}[schedules.nightly]\ncron = \"* * * * *\"\nstorage_locations = [\"a\", \"b\", \"c\"]\nincluded_namespaces = [\"{ns}\"]\nttl = \"1h\"\n",
        live.location("a", "a", "default = true\n"),
        live.location("b", "b", ""),
        live.location("c", "c", ""),
        ns = live.namespace()
    );
    // Paused and without Velero until a run is overdue: a copy with no backup since
    // then is behind unless its run is in progress.
    live.write_file(&format!("{three}paused = true\n"));
    let out = live.stowage(&["apply", "--auto-approve", "--no-bucket-checks"]);
    assert_exit(&out, 0);
    let created = live.schedule("nightly-a").expect("nightly-a")["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .to_string();
    let created = chrono::DateTime::parse_from_rfc3339(&created).unwrap();
    // A minute's tick after creation, plus the two minutes' grace, plus a minute.
    let overdue = created + chrono::Duration::minutes(4);
    while chrono::Utc::now() < overdue {
        std::thread::sleep(Duration::from_secs(1));
    }
    live.velero = Some(VeleroServer::start_with(
        &live.ns,
        &["--concurrent-backups=2"],
    ));
    // Unpaused only once Velero can back up to every location: a run against a
    // location Velero has not yet found Available fails, and is rightly behind.
    for location in ["a", "b", "c"] {
        eventually(
            &format!("Velero to find {location} Available"),
            Duration::from_secs(120),
            || (live.bsl(location)?["status"]["phase"] == "Available").then_some(()),
        );
    }
    live.write_file(&three);
    let out = live.stowage(&["apply", "--auto-approve", "--no-bucket-checks"]);
    assert_exit(&out, 0);

    // Unpaused, Velero starts each copy's overdue run at once; they share the
    // namespace, so its queue runs them one after another.
    let copies = ["nightly-a", "nightly-b", "nightly-c"];
    let backups_of = |live: &TestCluster| -> Vec<Value> { live.ns.list("velero.io/v1", "Backup") };
    eventually("a backup of each copy", Duration::from_secs(60), || {
        let made: BTreeSet<String> = backups_of(&live)
            .iter()
            .filter_map(|b| b["metadata"]["labels"]["velero.io/schedule-name"].as_str())
            .map(str::to_string)
            .collect();
        copies.iter().all(|c| made.contains(*c)).then_some(())
    });
    let mut phases_seen = BTreeSet::new();
    let mut in_progress_seen = 0;
    eventually(
        "all three copies to land, never behind",
        Duration::from_secs(240),
        || {
            for backup in backups_of(&live) {
                if let Some(phase) = backup["status"]["phase"].as_str() {
                    phases_seen.insert(phase.to_string());
                }
            }
            let out = live.stowage(&["status", "--format", "json", "--no-bucket-checks"]);
            let document: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
                panic!(
                    "status printed no JSON: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
            let copies = document["copies"].as_array().unwrap();
            for copy in copies {
                assert_ne!(
                    copy["verdict"], "behind",
                    "a copy waiting its turn in Velero's queue is not behind: {copy:#}"
                );
                if copy["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("in progress"))
                {
                    in_progress_seen += 1;
                }
            }
            copies.iter().all(|c| c["verdict"] == "ok").then_some(())
        },
    );
    assert!(
        phases_seen.contains("Queued"),
        "Velero 1.18 queued the copies: {phases_seen:?}"
    );
    assert!(
        in_progress_seen > 0,
        "status saw no copy in progress, so this proved nothing: {phases_seen:?}"
    );
    let out = live.stowage(&["status", "--check"]);
    assert_exit(&out, 0);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("Velero 1.18.3 (the image of Deployment velero), 2 backups at a time"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for copy in copies {
        let latest = latest_final(&live, copy).expect("a finished backup");
        assert_eq!(latest["status"]["phase"], "Completed", "{latest:#}");
    }
}
