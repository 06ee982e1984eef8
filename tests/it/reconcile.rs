//! The daemon's round in-process, against the real API server: what
//! `watch::Daemon::round` returns and what it records for a success, an invalid file,
//! an unreachable cluster and a conflict with another field manager, each failure
//! counted under its own reason; and a forced round's takeovers, counted by manager.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use stowage::cluster::Target;
use stowage::engine::{
    ApplyOptions, FailureReason, PlanOptions, ReconcileError, ReconcileOptions, Reconciled,
};
use stowage::watch::{Daemon, Round, Trigger, http};

use crate::cluster::{CANARY, Options, TestCluster, cluster};

fn daemon(live: &TestCluster, kubeconfig: &Path, force_conflicts: bool) -> Daemon {
    daemon_on(live, kubeconfig, force_conflicts, "stowage.toml")
}

fn daemon_on(live: &TestCluster, kubeconfig: &Path, force_conflicts: bool, file: &str) -> Daemon {
    let target = Target {
        kubeconfig: Some(kubeconfig.to_path_buf()),
        context: None,
        request_timeout: Duration::from_secs(10),
    };
    let options = stowage::watch::Options {
        file: live.dir.path().join(file),
        target: target.clone(),
        resync: Duration::from_secs(300),
        // The quiet period is tested with the process (tests/it/watch.rs); here each
        // round writes what it planned.
        quiet_period: Duration::ZERO,
        listen: None,
        leader_election: None,
        reconcile: ReconcileOptions {
            plan: PlanOptions::default(),
            apply: ApplyOptions {
                force_conflicts,
                ..ApplyOptions::default()
            },
            dry_run: false,
        },
    };
    let cluster = futures_block(stowage::cluster::connect(&target)).expect("a kubeconfig");
    Daemon::new(options, cluster).expect("the daemon starts").0
}

/// Connecting builds a client that belongs to the runtime it was made in: each test
/// runs in one runtime, entered here.
fn futures_block<T>(future: impl std::future::Future<Output = T>) -> T {
    RUNTIME.block_on(future)
}

static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
});

fn failures(daemon: &Daemon, reason: FailureReason) -> u64 {
    http::lock(&daemon.health())
        .failures
        .get(&reason)
        .copied()
        .unwrap_or(0)
}

fn metrics(daemon: &Daemon) -> String {
    http::metrics_text(&http::lock(&daemon.health()))
}

#[test]
fn a_round_applies_refuses_and_counts_each_failure_under_its_reason() {
    let live = cluster("reconcile-in-process", Options::default());
    let file = live.location("primary", "primary", "default = true\n");
    live.write_file(&file);
    let mut daemon = daemon(&live, &live.kubeconfig, false);

    // Success: the location is written and nothing is counted as a failure.
    let round = futures_block(daemon.round(Trigger::Start));
    match round {
        Ok(Round::Done(done)) => assert!(matches!(*done, Reconciled::Applied { .. }), "{done:?}"),
        other => panic!("expected an apply, got {other:?}"),
    }
    let prefix = format!("{}/primary", live.namespace());
    assert_eq!(
        live.bsl("primary").expect("written")["spec"]["objectStorage"]["prefix"],
        prefix.as_str()
    );
    for reason in FailureReason::ALL {
        assert_eq!(failures(&daemon, reason), 0, "{reason:?}");
    }
    let round = futures_block(daemon.round(Trigger::Resync));
    assert!(
        matches!(&round, Ok(Round::Done(done)) if matches!(**done, Reconciled::Unchanged { .. })),
        "{round:?}"
    );

    // Another manager moves the prefix: without --force-conflicts the round reports
    // the conflict and writes nothing over it.
    live.ns
        .merge_patch(
            "velero.io/v1",
            "BackupStorageLocation",
            "primary",
            json!({"spec": {"objectStorage": {"prefix": "moved-by-hand"}}}),
            "kubectl-edit",
        )
        .unwrap();
    let round = futures_block(daemon.round(Trigger::Drift));
    let error = round.expect_err("a conflict");
    assert_eq!(error.reason(), FailureReason::Conflict, "{error:?}");
    assert!(matches!(error, ReconcileError::ApplyFailed { .. }));
    assert_eq!(failures(&daemon, FailureReason::Conflict), 1);
    assert_eq!(
        live.bsl("primary").unwrap()["spec"]["objectStorage"]["prefix"],
        "moved-by-hand"
    );
    let problem = http::lock(&daemon.health())
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(problem.contains("another field manager"), "{problem}");

    // An invalid file: nothing planned, counted as invalid_file.
    live.write_file(&file.replace("bucket =", "buckett ="));
    let error = futures_block(daemon.round(Trigger::File)).expect_err("invalid");
    assert_eq!(error.reason(), FailureReason::InvalidFile);
    assert!(matches!(error, ReconcileError::Invalid(_)));
    assert_eq!(failures(&daemon, FailureReason::InvalidFile), 1);
    assert!(http::lock(&daemon.health()).invalid_file.is_some());

    // Each reason is its own series; the conflict's did not move with the file's.
    let text = metrics(&daemon);
    assert!(
        text.contains("stowage_apply_failures_total{reason=\"conflict\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("stowage_apply_failures_total{reason=\"invalid_file\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("stowage_apply_failures_total{reason=\"cluster_unreachable\"} 0\n"),
        "{text}"
    );

    // The file fixed and the daemon forcing, as it does by default: the field is taken
    // back, and the takeover is counted under the manager it came from.
    live.write_file(&file);
    let mut forcing = daemon_for_forcing(&live);
    let round = futures_block(forcing.round(Trigger::File));
    match round {
        Ok(Round::Done(done)) => match *done {
            Reconciled::Applied { takeovers, .. } => {
                assert!(
                    takeovers
                        .iter()
                        .any(|t| t.field.to_string() == "spec.objectStorage.prefix"
                            && t.managers == ["kubectl-edit"]),
                    "{takeovers:?}"
                );
            }
            other => panic!("expected an apply, got {other:?}"),
        },
        other => panic!("expected an apply, got {other:?}"),
    }
    assert_eq!(
        live.bsl("primary").unwrap()["spec"]["objectStorage"]["prefix"],
        prefix.as_str()
    );
    let text = metrics(&forcing);
    assert!(
        text.contains("stowage_takeovers_total{manager=\"kubectl-edit\"} 1\n"),
        "{text}"
    );
    assert!(!text.contains(CANARY));

    // A protected location left out of the file: the plan is refused, and the error
    // names the file without a made-up place (it was reported at 0:0).
    live.write_file(&live.location("primary", "primary", "default = true\nprotect = true\n"));
    assert!(futures_block(forcing.round(Trigger::File)).is_ok());
    live.write_whole(&live.header());
    let error = futures_block(forcing.round(Trigger::File)).expect_err("protected");
    assert_eq!(error.reason(), FailureReason::PlanRefused, "{error:?}");
    let problem = http::lock(&forcing.health())
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(
        problem.ends_with(
            "stowage.toml: stowage::protected: BackupStorageLocation/primary is protected and cannot be deleted"
        ),
        "{problem}"
    );
    assert!(!problem.contains(":0:0:"), "{problem}");
    assert!(live.bsl("primary").is_some());
    futures_block(forcing.stop());
    futures_block(daemon.stop());
}

fn daemon_for_forcing(live: &TestCluster) -> Daemon {
    daemon(live, &live.kubeconfig, true)
}

#[test]
fn a_round_against_an_unreachable_cluster_is_counted_as_such() {
    let live = cluster("reconcile-unreachable", Options::default());
    live.write_file(&live.location("primary", "primary", "default = true\n"));
    let (unreachable, address) = live.unreachable_kubeconfig();
    let mut daemon = daemon(&live, &unreachable, true);
    let error = futures_block(daemon.round(Trigger::Start)).expect_err("unreachable");
    assert_eq!(
        error.reason(),
        FailureReason::ClusterUnreachable,
        "{error:?}"
    );
    assert_eq!(failures(&daemon, FailureReason::ClusterUnreachable), 1);
    for reason in FailureReason::ALL
        .into_iter()
        .filter(|r| *r != FailureReason::ClusterUnreachable)
    {
        assert_eq!(failures(&daemon, reason), 0, "{reason:?}");
    }
    let health = http::lock(&daemon.health()).clone();
    assert!(!health.reachable());
    assert!(health.last_error.unwrap_or_default().contains(&address),);
    assert!(live.bsl("primary").is_none());
    futures_block(daemon.stop());
}

#[test]
fn a_deeply_nested_file_is_refused_in_a_round_not_a_crash() {
    // The round runs on a tokio worker (a 2 MiB stack); the YAML parser's recursion
    // once overflowed it at about a hundred levels, before its own depth limit.
    let live = cluster("reconcile-deep", Options::default());
    let depth = 2_000;
    std::fs::write(
        live.dir.path().join("stowage.yaml"),
        format!(
            "version: 1\nx: {}1{}\n",
            "{a: ".repeat(depth),
            "}".repeat(depth)
        ),
    )
    .unwrap();
    let mut daemon = daemon_on(&live, &live.kubeconfig, true, "stowage.yaml");
    let error = futures_block(daemon.round(Trigger::Start)).expect_err("refused");
    assert_eq!(error.reason(), FailureReason::InvalidFile, "{error:?}");
    futures_block(daemon.stop());
}

/// The engine's apply is the one way to the cluster's writes, and refuses a plan with
/// errors itself, whichever front end hands it one: nothing reaches the API server.
#[test]
fn the_engines_apply_refuses_a_plan_with_errors_before_any_request() {
    let live = cluster(
        "apply-refuses-errors",
        Options {
            velero: false,
            proxy: true,
        },
    );
    live.write_file(&live.location("primary", "primary", "default = true\n"));
    let file = stowage::engine::check_file(&live.dir.path().join("stowage.toml"))
        .expect("loads")
        .into_valid()
        .expect("valid");
    let target = Target {
        kubeconfig: Some(live.kubeconfig.clone()),
        context: None,
        request_timeout: Duration::from_secs(10),
    };
    futures_block(async {
        let cluster = stowage::cluster::connect(&target).await.expect("connects");
        let mut planned = stowage::engine::plan(
            &file,
            stowage::engine::StateSource::Cluster(&cluster),
            PlanOptions::default(),
        )
        .await
        .expect("plans");
        assert!(planned.plan.has_changes(), "{:#?}", planned.plan);
        planned
            .plan
            .diagnostics
            .push(stowage::diagnostic::Diagnostic::error(
                stowage::diagnostic::Code::Plugin,
                "an error a front end did not look at",
            ));
        live.proxy().hooks().clear();
        let mut write_now = |_: &stowage::plan::Plan| stowage::engine::inputs::Guard::Write;
        let refused = stowage::engine::apply(
            &cluster,
            &file,
            &mut planned,
            &mut stowage::engine::Approved,
            stowage::engine::InputsGate::Decide(&mut write_now),
            &ApplyOptions::default(),
        )
        .await;
        assert!(
            matches!(refused, Err(stowage::engine::EngineError::PlanHasErrors)),
            "{refused:?}"
        );
    });
    assert_eq!(live.proxy().hooks().requests().len(), 0);
    assert!(live.bsl("primary").is_none(), "nothing was written");
}
