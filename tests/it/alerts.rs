//! The deploy example's alerts and the daemon's metrics, checked by Prometheus' own
//! promtool (built from the Prometheus module pinned in tests/cluster/prometheus):
//! `promtool test rules` with one replica and with two, and `promtool check metrics`
//! on a live scrape.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{Options, cluster, eventually};
use crate::watch::{file_text, spawn};

fn promtool() -> PathBuf {
    let path = std::env::var_os("STOWAGE_PROMTOOL").map(PathBuf::from).unwrap_or_else(|| {
        panic!("STOWAGE_PROMTOOL is not set: run the tests with `bash tests/run` (tests/cluster/build builds promtool into .tools/bin)")
    });
    assert!(
        path.is_file(),
        "{} is missing: run `bash tests/cluster/build`",
        path.display()
    );
    path
}

/// The PrometheusRule's groups, as a rules file promtool reads.
fn rules_file(rule: &str) -> String {
    let documents: Vec<Value> = serde_saphyr::from_multiple(rule).unwrap();
    let groups = &documents[0]["spec"]["groups"];
    serde_saphyr::to_string(&serde_json::json!({ "groups": groups })).unwrap()
}

/// `promtool test rules` of the test cases against `rules`.
fn test_rules(rules: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
    let tests =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alerts-test.yaml");
    std::fs::copy(&tests, dir.path().join("alerts-test.yaml")).unwrap();
    Command::new(promtool())
        .current_dir(dir.path())
        .args(["test", "rules", "alerts-test.yaml"])
        .output()
        .unwrap()
}

#[test]
fn every_alert_fires_when_it_should_with_one_replica_and_with_two() {
    let rule =
        std::fs::read_to_string(crate::support::examples_dir().join("deploy/prometheusrule.yaml"))
            .unwrap();
    let out = test_rules(&rules_file(&rule));
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The cases catch the rule this replaced, whose `and on()` matched the standby's
    // last success of zero and fired for a healthy leader.
    let old = rule.replace(
        "(time() - stowage_last_success_timestamp_seconds) > 1800 and on(namespace, pod) (stowage_leader == 1)",
        "(time() - max by (namespace) (stowage_last_success_timestamp_seconds)) > 1800 or on() (time() - stowage_last_success_timestamp_seconds) > 1800",
    );
    assert_ne!(old, rule);
    let out = test_rules(&rules_file(&old));
    assert!(
        !out.status.success(),
        "the cases did not notice the two-replica rule break"
    );
    // And the weaker restore alert that would fire beside a failed drill's page.
    let noisy = rule.replace(
        " unless on(schedule, location) (max by (schedule, location) (stowage_copy_drill_verdict{verdict=~\"unrestorable|incomplete\"}) == 1)",
        "",
    );
    assert_ne!(noisy, rule);
    let out = test_rules(&rules_file(&noisy));
    assert!(
        !out.status.success(),
        "the cases did not notice the unrestorable copy paged twice"
    );
}

#[test]
fn a_live_scrape_passes_promtool_check_metrics() {
    let cluster = cluster("alerts-live-scrape", Options::default());
    cluster.write_file(&file_text(&cluster, &[("primary", "primary")]));
    let daemon = spawn(&cluster, &["--leader-elect"]);
    eventually("a round", Duration::from_secs(30), || {
        (daemon.get("/readyz").0 == 200).then_some(())
    });
    let (status, metrics) = daemon.get("/metrics");
    assert_eq!(status, 200);
    for expected in [
        "stowage_build_info{",
        "stowage_plan_duration_seconds_bucket{le=",
        "stowage_plan_duration_seconds_count ",
        "stowage_applies_total ",
        "stowage_leader 1",
    ] {
        assert!(metrics.contains(expected), "{expected} missing:\n{metrics}");
    }
    let mut check = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
