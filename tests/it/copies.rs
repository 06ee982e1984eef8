//! Copies that provably land, against real Velero and the S3 emulator: a schedule fanned
//! out to two locations, both copies `ok`; the DR copy's credential broken, that copy
//! `behind` with Velero's reason while the primary stays `ok` (in `status`, its JSON,
//! `--check` and the daemon's metrics); fixed, `ok` again after the next run.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{Options, TestCluster, cluster, eventually, good_secret, s3_credentials};
use crate::support::assert_exit;

const VELERO: Options = Options {
    velero: true,
    proxy: false,
};

/// Two locations in two buckets, the second (`dr`) with a credential of its own, and a
/// schedule fanned out to both that runs every minute.
pub fn every_minute_to_two_locations(live: &TestCluster) -> String {
    let dr = live
        .location("dr", "dr", "validation_frequency = \"10s\"\n")
        .replace(crate::cluster::LIVE_BUCKET, "velero-live-2")
        .replace("credential = \"s3\"", "credential = \"dr\"");
    format!(
        "[credentials.dr]\nsecret = \"dr-credentials\"\nfile = \"secrets/dr.ini\"\n\n{}{dr}[schedules.nightly]\ncron = \"* * * * *\"\nstorage_locations = [\"primary\", \"dr\"]\nincluded_namespaces = [\"{ns}\"]\nttl = \"1h\"\n",
        live.location("primary", "primary", "default = true\n"),
        ns = live.namespace()
    )
}

pub fn write_dr_credentials(live: &TestCluster, secret_key: &str) {
    std::fs::write(
        live.dir.path().join("secrets/dr.ini"),
        s3_credentials(secret_key),
    )
    .unwrap();
}

/// Starts a backup of one copy now, as `velero backup create --from-schedule` does.
pub fn back_up_now(live: &TestCluster, copy: &str) {
    let stack = live.ns.stack;
    let out = Command::new(&stack.velero)
        .args([
            "backup",
            "create",
            "--from-schedule",
            copy,
            "-n",
            live.namespace(),
        ])
        .arg("--kubeconfig")
        .arg(&stack.kubeconfig)
        .output()
        .unwrap();
    assert_exit(&out, 0);
}

/// The latest backup of a Velero Schedule, once it has one in a final phase.
pub fn latest_final(live: &TestCluster, schedule: &str) -> Option<Value> {
    let mut backups: Vec<Value> = live
        .ns
        .list("velero.io/v1", "Backup")
        .into_iter()
        .filter(|b| b["metadata"]["labels"]["velero.io/schedule-name"] == schedule)
        .collect();
    backups.sort_by_key(|b| {
        b["metadata"]["creationTimestamp"]
            .as_str()
            .map(str::to_string)
    });
    let latest = backups.pop()?;
    let phase = latest["status"]["phase"].as_str().unwrap_or_default();
    matches!(
        phase,
        "Completed" | "Failed" | "PartiallyFailed" | "FailedValidation"
    )
    .then_some(latest)
}

/// `status --format json`'s copies, by location.
fn verdicts(live: &TestCluster) -> (i32, Vec<(String, String, String)>) {
    let out = live.stowage(&["status", "--check", "--format", "json"]);
    let document: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "status printed no JSON: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(document["format_version"], 1);
    let copies = document["copies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["location"].as_str().unwrap_or_default().to_string(),
                c["verdict"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    (out.status.code().unwrap_or(-1), copies)
}

fn verdict_of<'a>(copies: &'a [(String, String, String)], location: &str) -> &'a str {
    copies
        .iter()
        .find(|(l, _, _)| l == location)
        .map(|(_, v, _)| v.as_str())
        .unwrap_or_else(|| panic!("no copy for {location}: {copies:?}"))
}

/// Backs up both copies of `every_minute_to_two_locations` now, waits until each
/// Completed, and checks that `status --check` finds both `ok` (their files in their
/// buckets, read with each location's own credential).
pub fn both_copies_land(live: &TestCluster) {
    for copy in ["nightly-primary", "nightly-dr"] {
        back_up_now(live, copy);
    }
    for copy in ["nightly-primary", "nightly-dr"] {
        let latest = eventually(
            &format!("a backup of {copy} to finish"),
            Duration::from_secs(180),
            || latest_final(live, copy),
        );
        assert_eq!(latest["status"]["phase"], "Completed", "{latest:#}");
    }
    let (code, copies) = verdicts(live);
    assert_eq!(code, 0, "{copies:?}");
    assert_eq!(verdict_of(&copies, "primary"), "ok", "{copies:?}");
    assert_eq!(verdict_of(&copies, "dr"), "ok", "{copies:?}");
}

#[test]
fn every_copy_of_a_fanned_out_schedule_is_judged_and_a_broken_one_is_named() {
    let live = cluster("copies-land", VELERO);
    write_dr_credentials(&live, &good_secret());
    live.write_file(&every_minute_to_two_locations(&live));
    let applied = live.apply();
    assert!(applied.contains("dr: Available"), "{applied}");

    // Both copies land (started by hand too, so the test need not wait for a tick).
    both_copies_land(&live);

    // The daemon exports the same.
    let daemon = crate::watch::spawn(&live, &[]);
    let ok_series = |location: &str, verdict: &str| {
        format!(
            "stowage_copy_verdict{{schedule=\"nightly\",location=\"{location}\",verdict=\"{verdict}\"}} 1\n"
        )
    };
    eventually(
        "the daemon to judge both copies ok",
        Duration::from_secs(30),
        || {
            let (_, metrics) = daemon.get("/metrics");
            (metrics.contains(&ok_series("primary", "ok"))
                && metrics.contains(&ok_series("dr", "ok")))
            .then_some(())
        },
    );

    // The DR credential replaced by a wrong one: Velero finds dr Unavailable and fails
    // its next backup; that copy is behind with Velero's reason, the primary stays ok.
    write_dr_credentials(&live, "wrong-secret-key");
    eventually(
        "Velero to find dr Unavailable",
        Duration::from_secs(120),
        || (live.bsl("dr")?["status"]["phase"] == "Unavailable").then_some(()),
    );
    back_up_now(&live, "nightly-dr");
    eventually("a backup of dr to fail", Duration::from_secs(120), || {
        let latest = latest_final(&live, "nightly-dr")?;
        (latest["status"]["phase"] != "Completed").then_some(())
    });
    let (code, copies) = verdicts(&live);
    assert_eq!(code, 1, "{copies:?}");
    assert_eq!(verdict_of(&copies, "primary"), "ok", "{copies:?}");
    assert_eq!(verdict_of(&copies, "dr"), "behind", "{copies:?}");
    let reason = &copies.iter().find(|(l, _, _)| l == "dr").unwrap().2;
    assert!(
        reason.contains("FailedValidation") || reason.contains("Failed"),
        "{reason}"
    );
    assert!(reason.contains("dr"), "Velero's own reason: {reason}");
    let out = live.stowage(&["status", "--check"]);
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nightly → dr: behind"), "{stderr}");
    assert!(!stderr.contains("nightly → primary"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("nightly → dr: the latest backup"),
        "{stdout}"
    );
    eventually(
        "the daemon to judge dr behind",
        Duration::from_secs(30),
        || {
            let (_, metrics) = daemon.get("/metrics");
            (metrics.contains(&ok_series("dr", "behind"))
                && metrics.contains(&ok_series("primary", "ok")))
            .then_some(())
        },
    );

    // Fixed: after the next run the copy is ok again.
    write_dr_credentials(&live, &good_secret());
    eventually(
        "Velero to find dr Available",
        Duration::from_secs(120),
        || (live.bsl("dr")?["status"]["phase"] == "Available").then_some(()),
    );
    back_up_now(&live, "nightly-dr");
    eventually(
        "a backup of dr to complete",
        Duration::from_secs(180),
        || {
            let latest = latest_final(&live, "nightly-dr")?;
            (latest["status"]["phase"] == "Completed").then_some(())
        },
    );
    let (code, copies) = verdicts(&live);
    assert_eq!(code, 0, "{copies:?}");
    assert_eq!(verdict_of(&copies, "dr"), "ok", "{copies:?}");
}

#[test]
fn the_plan_s_first_backup_prediction_matches_real_velero() {
    let live = cluster("first-backup", VELERO);
    let schedules = |paused: bool| {
        let paused = if paused { "paused = true\n" } else { "" };
        format!(
            "{}[schedules.soon]\ncron = \"* * * * *\"\nstorage_location = \"primary\"\nincluded_namespaces = [\"{ns}\"]\nttl = \"1h\"\n{paused}\n[schedules.later]\ncron = \"0 3 1 1 *\"\nstorage_location = \"primary\"\nincluded_namespaces = [\"{ns}\"]\nttl = \"1h\"\n{paused}",
            live.location("primary", "primary", "default = true\n"),
            ns = live.namespace()
        )
    };
    live.write_file(&schedules(true));
    live.apply();
    // A tick of `soon` passes while both are paused.
    let created = chrono::Utc::now();
    let wait = 65 - u64::from(chrono::Timelike::second(&created));
    std::thread::sleep(Duration::from_secs(wait));

    live.write_file(&schedules(false));
    let out = live.stowage(&["plan", "--format", "json", "--no-bucket-checks"]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let change = |name: &str| {
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no change of {name}: {plan:#}"))
            .clone()
    };
    assert_eq!(change("soon")["first_backup"], "immediately", "{plan:#}");
    assert_eq!(
        change("soon")["risks"],
        serde_json::json!(["immediate-run"])
    );
    let later = change("later");
    assert!(
        later["first_backup"]
            .as_str()
            .unwrap()
            .starts_with("2027-01-01T03:00:00")
            || later["first_backup"]
                .as_str()
                .unwrap()
                .contains("-01-01T03:00:00"),
        "{later:#}"
    );
    assert_eq!(later["risks"], serde_json::json!([]));

    live.apply();
    let backups_of = |schedule: &str| {
        live.ns
            .list("velero.io/v1", "Backup")
            .into_iter()
            .filter(|b| b["metadata"]["labels"]["velero.io/schedule-name"] == schedule)
            .count()
    };
    eventually(
        "Velero to start `soon` at once",
        Duration::from_secs(120),
        || (backups_of("soon") > 0).then_some(()),
    );
    assert_eq!(backups_of("later"), 0, "`later` was predicted not to run");
}
