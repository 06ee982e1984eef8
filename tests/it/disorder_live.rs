//! The cases "Safe under disorder" found that need the real API server, one named test
//! each: slow writers of every input, a file that is a link into another folder, a
//! frozen API server, `status --check` on what the cluster does not prove, fleets'
//! saved plans, `import -o` over a hand-written file.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{Options, TestCluster, cluster, eventually, good_secret};
use crate::support::assert_exit;
use crate::watch::{file_text, spawn};

/// Every managed object's uid: a delete and a re-create changes it.
fn uids(cluster: &TestCluster) -> Vec<(String, String)> {
    let mut uids = Vec::new();
    for kind in ["BackupStorageLocation", "Schedule"] {
        for object in cluster.ns.list("velero.io/v1", kind) {
            uids.push((
                format!("{kind}/{}", object["metadata"]["name"].as_str().unwrap()),
                object["metadata"]["uid"].as_str().unwrap().to_string(),
            ));
        }
    }
    for object in cluster.ns.list("v1", "Secret") {
        uids.push((
            format!("Secret/{}", object["metadata"]["name"].as_str().unwrap()),
            object["metadata"]["uid"].as_str().unwrap().to_string(),
        ));
    }
    uids.sort();
    uids
}

/// Writes `text` to `path` in place (truncated, then in `parts` bursts `pause` apart),
/// calling `during` every 50 ms meanwhile.
fn write_slowly(path: &Path, text: &str, parts: usize, pause: Duration, mut during: impl FnMut()) {
    let mut file = std::fs::File::create(path).unwrap();
    let size = text.len().div_ceil(parts);
    for (index, chunk) in text.as_bytes().chunks(size).enumerate() {
        if index > 0 {
            let until = Instant::now() + pause;
            while Instant::now() < until {
                during();
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        file.write_all(chunk).unwrap();
        file.flush().unwrap();
    }
}

/// A file extending a base that declares the locations and a schedule fanned out.
fn with_base(cluster: &TestCluster) -> (String, String) {
    let base = format!(
        "{}{}{}[schedules.nightly]\ncron = \"0 1 * * *\"\nstorage_locations = [\"primary\", \"dr\"]\n\n[schedules.weekly]\ncron = \"0 3 * * 0\"\nstorage_locations = [\"primary\", \"dr\"]\n",
        cluster.header(),
        cluster.location("primary", "primary", "default = true\n"),
        cluster.location("dr", "dr", "")
    );
    let main = "extends = \"base.toml\"\n".to_string();
    (base, main)
}

#[test]
fn a_base_written_slowly_in_place_deletes_and_recreates_nothing() {
    let cluster = cluster("disorder-slow-base", Options::default());
    let (base, main) = with_base(&cluster);
    std::fs::write(cluster.dir.path().join("base.toml"), &base).unwrap();
    cluster.write_whole(&main);
    let daemon = spawn(&cluster, &["--resync", "1h", "--quiet-period", "3s"]);
    eventually("the schedules", Duration::from_secs(30), || {
        cluster.schedule("weekly-dr")
    });
    let before = uids(&cluster);
    // Three bursts 0.9 s apart, each pause shorter than the steadiness window, and the
    // same again 1.5 s apart, longer than it (but shorter than the quiet period).
    for pause in [900, 1500] {
        write_slowly(
            &cluster.dir.path().join("base.toml"),
            &base.replace(
                "0 3 * * 0",
                if pause == 900 {
                    "0 4 * * 0"
                } else {
                    "0 3 * * 0"
                },
            ),
            3,
            Duration::from_millis(pause),
            || assert_eq!(uids(&cluster), before, "deleted or re-created mid-write"),
        );
        let settle = Instant::now() + Duration::from_secs(6);
        while Instant::now() < settle {
            assert_eq!(
                uids(&cluster),
                before,
                "deleted or re-created after the write"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(
        cluster.schedule("weekly-dr").unwrap()["spec"]["schedule"],
        "0 3 * * 0",
        "{}",
        daemon.log()
    );
}

#[test]
fn a_credential_written_slowly_never_reaches_the_secret_half_written() {
    let cluster = cluster("disorder-slow-credential", Options::default());
    cluster.write_file(&file_text(&cluster, &[("primary", "primary")]));
    let daemon = spawn(&cluster, &["--resync", "1h", "--quiet-period", "3s"]);
    let secret_data = || -> Option<String> {
        cluster.ns.get("v1", "Secret", "s3-credentials")?["data"]["cloud"]
            .as_str()
            .map(str::to_string)
    };
    let first = eventually("the Secret", Duration::from_secs(30), secret_data);
    use base64::Engine as _;
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let old = crate::cluster::s3_credentials(&good_secret());
    assert_eq!(first, encode(&old));
    let new = old.replace("[default]\n", "[default]\n# rotated\n");
    let mut seen = std::collections::BTreeSet::new();
    for pause in [900, 1500] {
        write_slowly(
            &cluster.dir.path().join("secrets/s3.ini"),
            if pause == 900 { &new } else { &old },
            3,
            Duration::from_millis(pause),
            || {
                if let Some(data) = secret_data() {
                    seen.insert(data);
                }
            },
        );
    }
    let settle = Instant::now() + Duration::from_secs(8);
    while Instant::now() < settle {
        if let Some(data) = secret_data() {
            seen.insert(data);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let whole: std::collections::BTreeSet<String> = [encode(&old), encode(&new)].into();
    assert!(
        seen.is_subset(&whole),
        "the Secret held a credential no complete file held ({} values seen)\n{}",
        seen.len(),
        daemon.log()
    );
    assert_eq!(
        secret_data(),
        Some(encode(&old)),
        "the last complete file is applied"
    );
}

#[test]
fn a_main_file_written_in_bursts_longer_than_the_steadiness_window_deletes_nothing() {
    let cluster = cluster("disorder-slow-main", Options::default());
    let locations = [
        ("primary", "primary"),
        ("second", "second"),
        ("third", "third"),
        ("fourth", "fourth"),
    ];
    let text = format!(
        "{}{}[schedules.nightly]\ncron = \"0 1 * * *\"\nstorage_locations = [\"primary\", \"second\", \"third\", \"fourth\"]\n",
        cluster.header(),
        file_text(&cluster, &locations)
    );
    cluster.write_whole(&text);
    let _daemon = spawn(&cluster, &["--resync", "1h"]);
    eventually("every schedule", Duration::from_secs(30), || {
        cluster.schedule("nightly-fourth")
    });
    let before = uids(&cluster);
    // Three bursts 1.5 s apart: each pause beyond the 1 s steadiness window; a half
    // file deletes exactly half of the eight objects, which the deletion guard alone
    // would let through. The quiet period (10 s by default here) holds it.
    let mut watch = || assert_eq!(uids(&cluster), before, "deleted or re-created mid-write");
    write_slowly(
        &cluster.dir.path().join("stowage.toml"),
        &text,
        3,
        Duration::from_millis(1500),
        &mut watch,
    );
    let settle = Instant::now() + Duration::from_secs(12);
    while Instant::now() < settle {
        watch();
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_file_that_is_a_link_into_another_folder_is_followed_there() {
    let cluster = cluster("disorder-linked-file", Options::default());
    let elsewhere = cluster.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let target = elsewhere.join("real.toml");
    // Relative paths in the file resolve from the link's folder (the credential is
    // `secrets/s3.ini` beside the link, as in a mounted ConfigMap).
    std::fs::write(
        &target,
        format!(
            "{}{}",
            cluster.header(),
            file_text(&cluster, &[("primary", "primary")])
        ),
    )
    .unwrap();
    std::os::unix::fs::symlink(&target, cluster.dir.path().join("stowage.toml")).unwrap();
    let daemon = spawn(&cluster, &["--resync", "1h"]);
    eventually("primary", Duration::from_secs(30), || {
        cluster.bsl("primary")
    });
    // The target edited in place: applied without waiting for a resync.
    std::fs::write(
        &target,
        format!(
            "{}{}",
            cluster.header(),
            file_text(&cluster, &[("primary", "primary"), ("second", "second")])
        ),
    )
    .unwrap();
    eventually(
        "second, from an edit in place",
        Duration::from_secs(20),
        || cluster.bsl("second"),
    );
    // The target replaced by rename.
    let temporary = elsewhere.join(".real.toml.swp");
    std::fs::write(
        &temporary,
        format!(
            "{}{}",
            cluster.header(),
            file_text(
                &cluster,
                &[
                    ("primary", "primary"),
                    ("second", "second"),
                    ("third", "third")
                ]
            )
        ),
    )
    .unwrap();
    std::fs::rename(&temporary, &target).unwrap();
    eventually("third, from a rename", Duration::from_secs(20), || {
        cluster.bsl("third")
    });
    // The link re-pointed at another file in a third folder.
    let third = cluster.dir.path().join("third-folder");
    std::fs::create_dir(&third).unwrap();
    std::fs::write(
        third.join("other.toml"),
        format!(
            "{}{}",
            cluster.header(),
            file_text(
                &cluster,
                &[
                    ("primary", "primary"),
                    ("second", "second"),
                    ("third", "third"),
                    ("fourth", "fourth")
                ]
            )
        ),
    )
    .unwrap();
    let link = cluster.dir.path().join("stowage.toml.new");
    std::os::unix::fs::symlink(third.join("other.toml"), &link).unwrap();
    std::fs::rename(&link, cluster.dir.path().join("stowage.toml")).unwrap();
    eventually(
        "fourth, from a re-pointed link",
        Duration::from_secs(20),
        || cluster.bsl("fourth"),
    );
    assert!(
        !daemon.log().contains("resync"),
        "applied by events, not the resync"
    );
}

#[test]
fn a_frozen_api_server_makes_the_daemon_not_ready_within_the_request_timeout() {
    let cluster = cluster(
        "disorder-frozen",
        Options {
            proxy: true,
            ..Options::default()
        },
    );
    cluster.write_file(&file_text(&cluster, &[("primary", "primary")]));
    let daemon = spawn(&cluster, &["--request-timeout", "3s", "--resync", "1h"]);
    eventually("ready", Duration::from_secs(30), || {
        (daemon.get("/readyz").0 == 200).then_some(())
    });
    // Frozen while an edit is pending: the edit's round cannot finish, and readiness
    // must drop within the request timeout (3 s) and the probe's period (1 s).
    cluster.proxy().hooks().freeze_for(Duration::from_secs(20));
    let frozen = Instant::now();
    cluster.write_file(&file_text(
        &cluster,
        &[("primary", "primary"), ("second", "second")],
    ));
    let body = eventually("not ready", Duration::from_secs(15), || {
        let (status, body) = daemon.get("/readyz");
        (status == 503).then_some(body)
    });
    let took = frozen.elapsed();
    assert!(
        took < Duration::from_millis(5500),
        "not ready only after {took:?}"
    );
    assert!(body.contains("has not answered"), "{body}");
    assert_eq!(daemon.metric("stowage_cluster_reachable"), 0.0);
    // Thawed: the edit goes through, and it is ready again.
    eventually("second after the thaw", Duration::from_secs(40), || {
        cluster.bsl("second")
    });
    eventually("ready again", Duration::from_secs(20), || {
        (daemon.get("/readyz").0 == 200).then_some(())
    });
}

#[test]
fn status_check_fails_on_a_pause_it_does_not_declare_and_a_schedule_it_cannot_find() {
    let cluster = cluster("disorder-status-truths", Options::default());
    cluster.write_file(&format!(
        "{}[schedules.nightly]\ncron = \"0 1 * * *\"\nstorage_locations = [\"primary\", \"dr\"]\n",
        file_text(&cluster, &[("primary", "primary"), ("dr", "dr")])
    ));
    assert_exit(
        &cluster.stowage(&["apply", "--auto-approve", "--no-bucket-checks"]),
        0,
    );
    let check = || {
        cluster.stowage(&[
            "status",
            "--check",
            "--no-bucket-checks",
            "--format",
            "json",
        ])
    };
    // Paused by hand: behind, not paused.
    cluster
        .ns
        .merge_patch(
            "velero.io/v1",
            "Schedule",
            "nightly-dr",
            json!({"spec": {"paused": true}}),
            "kubectl-patch",
        )
        .unwrap();
    let out = check();
    assert_exit(&out, 1);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let dr = status["copies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["location"] == "dr")
        .unwrap()
        .clone();
    assert_eq!(dr["verdict"], "behind", "{status:#}");
    assert!(
        dr["reason"]
            .as_str()
            .unwrap()
            .contains("paused in the cluster"),
        "{dr:#}"
    );
    // Deleted by hand: behind, not waiting.
    cluster
        .ns
        .delete("velero.io/v1", "Schedule", "nightly-dr")
        .unwrap();
    let out = check();
    assert_exit(&out, 1);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let dr = status["copies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["location"] == "dr")
        .unwrap()
        .clone();
    assert_eq!(dr["verdict"], "behind", "{status:#}");
    assert!(
        dr["reason"]
            .as_str()
            .unwrap()
            .contains("not in the cluster"),
        "{dr:#}"
    );
}

#[test]
fn import_never_replaces_a_hand_written_file_unasked() {
    let cluster = cluster("disorder-import-over", Options::default());
    cluster.write_file(&file_text(&cluster, &[("primary", "primary")]));
    assert_exit(
        &cluster.stowage(&["apply", "--auto-approve", "--no-bucket-checks"]),
        0,
    );
    let path = cluster.dir.path().join("mine.toml");
    std::fs::write(&path, "# hand-written\n").unwrap();
    let out = cluster.stowage(&["import", "-n", cluster.namespace(), "-o", "mine.toml"]);
    assert_exit(&out, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "# hand-written\n");
    let out = cluster.stowage(&[
        "import",
        "-n",
        cluster.namespace(),
        "-o",
        "mine.toml",
        "--force",
    ]);
    assert_exit(&out, 0);
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("[backup_locations.primary]")
    );
}

#[test]
fn a_fleet_of_a_toml_and_a_yaml_file_saves_and_applies_both_plans() {
    let first = cluster("disorder-fleet-names-a", Options::default());
    let second = cluster("disorder-fleet-names-b", Options::default());
    let dir = first.dir.path();
    std::fs::write(
        dir.join("a.toml"),
        format!(
            "{}{}",
            first.header(),
            file_text(&first, &[("primary", "primary")])
        ),
    )
    .unwrap();
    let yaml = format!(
        "version: 1\nvelero:\n  namespace: {}\ncredentials:\n  s3:\n    secret: s3-credentials\n    file: secrets/s3.ini\nbackup_locations:\n  primary:\n    provider: aws\n    bucket: {}\n    prefix: {}/primary\n    credential: s3\n    default: true\n    config: {{region: us-east-1, s3Url: \"{}\", s3ForcePathStyle: \"true\"}}\n",
        second.namespace(),
        crate::cluster::LIVE_BUCKET,
        second.namespace(),
        crate::buckets::emulators()["s3"]["url"].as_str().unwrap()
    );
    std::fs::write(dir.join("a.yaml"), yaml).unwrap();
    let out = first.stowage(&[
        "plan",
        "-f",
        "a.toml",
        "a.yaml",
        "--no-bucket-checks",
        "--out",
        "plans",
    ]);
    assert_exit(&out, 0);
    let mut saved: Vec<String> = std::fs::read_dir(dir.join("plans"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    saved.sort();
    assert_eq!(saved, ["a.toml.json", "a.yaml.json"]);
    std::fs::write(dir.join("plans/notes.json"), "{}\n").unwrap();
    let out = first.stowage(&["apply", "plans", "--auto-approve", "--no-bucket-checks"]);
    assert_exit(&out, 0);
    assert!(first.bsl("primary").is_some());
    assert!(
        second.bsl("primary").is_some(),
        "the second plan was applied too"
    );
}

#[test]
fn a_daemon_refused_every_list_backs_off_to_a_few_requests_a_minute() {
    use stowage_test_harness::{Effect, Fault, Route, Verb};
    let cluster = cluster(
        "disorder-403",
        Options {
            proxy: true,
            ..Options::default()
        },
    );
    cluster.write_file(&file_text(&cluster, &[("primary", "primary")]));
    for verb in [Verb::List, Verb::Watch] {
        cluster.proxy().inject(Fault {
            route: Route::verb(verb),
            times: usize::MAX,
            effect: Effect::Status(403),
        });
    }
    let daemon = spawn(&cluster, &["--resync", "5m"]);
    // The first minute backs off; the second must be quiet.
    std::thread::sleep(Duration::from_secs(60));
    let hooks = cluster.proxy().hooks();
    let count = |hooks: &stowage_test_harness::hooks::Hooks| {
        hooks
            .requests()
            .iter()
            .filter(|r| matches!(r.verb, Verb::List | Verb::Watch))
            .count()
    };
    let before = count(hooks);
    // What an operator reads: info and above (the tests log debug too).
    let said = |log: String| {
        log.lines()
            .filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE "))
            .count()
    };
    let log_before = said(daemon.log());
    std::thread::sleep(Duration::from_secs(60));
    let in_a_minute = count(hooks) - before;
    let lines = said(daemon.log()) - log_before;
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    for request in &hooks.requests()[before..] {
        *seen
            .entry(format!(
                "{:?} {:?} {}",
                request.verb, request.resource, request.query
            ))
            .or_default() += 1;
    }
    assert!(
        in_a_minute <= 20,
        "{in_a_minute} LISTs and WATCHes in the second minute of refusals: {seen:#?}"
    );
    assert!(
        lines <= 20,
        "{lines} log lines in the second minute:\n{}",
        daemon.log()
    );
    assert!(
        daemon.log().contains("403"),
        "the refusal is named: {}",
        daemon.log()
    );
}
