//! `/healthz`, `/readyz` and `/metrics` (Prometheus text format) for the daemon.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// What the daemon knows about itself, shared with the HTTP endpoints.
#[derive(Debug, Default, Clone)]
pub struct Health {
    pub applies: u64,
    /// Failed rounds by why they failed.
    pub failures: std::collections::BTreeMap<crate::engine::FailureReason, u64>,
    /// Every copy of every declared schedule, as last judged.
    pub copies: Vec<crate::copies::CopyStatus>,
    /// The fight the daemon is backing off from, if any.
    pub fight: Option<crate::engine::fights::Backoff>,
    /// Fields taken over from other field managers, by manager.
    pub takeovers: std::collections::BTreeMap<String, u64>,
    pub drift_corrections: u64,
    pub plans: u64,
    pub last_success_unix: Option<i64>,
    pub last_plan_seconds: f64,
    pub plan_seconds_sum: f64,
    /// The file's first error, located, while it does not validate.
    pub invalid_file: Option<String>,
    /// Why the last reconcile failed, if it did.
    pub last_error: Option<String>,
    pub cluster_reachable: bool,
    pub reconciled_once: bool,
    pub leader: bool,
    pub leader_election: bool,
    /// The last plan deleted most of what the file manages and was not applied.
    pub mass_delete_refused: bool,
}

pub type Shared = Arc<Mutex<Health>>;

pub fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Health> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

async fn readyz(State(shared): State<Shared>) -> impl IntoResponse {
    let health = lock(&shared).clone();
    let mut problems = Vec::new();
    if !health.reconciled_once {
        problems.push("not reconciled yet".to_string());
    }
    if !health.cluster_reachable {
        problems.push("the cluster is not reachable".to_string());
    }
    if let Some(error) = &health.last_error {
        problems.push(format!("last apply failed: {error}"));
    }
    if let Some(fight) = &health.fight {
        problems.push(crate::report::watch::fight_problem(fight));
    }
    if let Some(invalid) = &health.invalid_file {
        problems.push(format!(
            "the file does not validate (the last valid state is kept): {invalid}"
        ));
    }
    if problems.is_empty() {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, problems.join("\n") + "\n")
    }
}

async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    let text = metrics_text(&lock(&shared));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// The health as Prometheus' text format.
pub fn metrics_text(h: &Health) -> String {
    let mut text = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    metric(
        "stowage_applies_total",
        "counter",
        "Applies that wrote changes.",
        h.applies.to_string(),
    );
    metric(
        "stowage_drift_corrections_total",
        "counter",
        "Applies that reverted changes made in the cluster.",
        h.drift_corrections.to_string(),
    );
    metric(
        "stowage_last_success_timestamp_seconds",
        "gauge",
        "When the cluster last matched the file (Unix time).",
        h.last_success_unix.unwrap_or(0).to_string(),
    );
    metric(
        "stowage_plan_duration_seconds",
        "gauge",
        "How long the last plan took.",
        format!("{:.6}", h.last_plan_seconds),
    );
    metric(
        "stowage_plan_duration_seconds_sum",
        "counter",
        "Time spent planning.",
        format!("{:.6}", h.plan_seconds_sum),
    );
    metric(
        "stowage_mass_delete_refused",
        "gauge",
        "1 while the last plan deleted most of what the file manages and was not applied.",
        u8::from(h.mass_delete_refused).to_string(),
    );
    metric(
        "stowage_plans_total",
        "counter",
        "Plans made.",
        h.plans.to_string(),
    );
    metric(
        "stowage_file_invalid",
        "gauge",
        "1 while the file does not validate.",
        u8::from(h.invalid_file.is_some()).to_string(),
    );
    metric(
        "stowage_cluster_reachable",
        "gauge",
        "1 when the last read of the cluster succeeded.",
        u8::from(h.cluster_reachable).to_string(),
    );
    metric(
        "stowage_leader",
        "gauge",
        "1 when this replica may write.",
        u8::from(h.leader || !h.leader_election).to_string(),
    );
    labelled(
        &mut text,
        "stowage_apply_failures_total",
        "Rounds that failed, by reason: the file, the cluster, the plan, a conflict, a write, convergence.",
        crate::engine::FailureReason::ALL
            .iter()
            .map(|reason| {
                (
                    format!("reason=\"{}\"", reason.as_str()),
                    h.failures.get(reason).copied().unwrap_or(0),
                )
            })
            .collect(),
    );
    labelled(
        &mut text,
        "stowage_takeovers_total",
        "Fields taken over from another field manager, by that manager.",
        h.takeovers
            .iter()
            .map(|(manager, count)| (format!("manager=\"{}\"", escape_label(manager)), *count))
            .collect(),
    );
    copy_metrics(&mut text, &h.copies);
    text.push_str(
        "# HELP stowage_fight_backoff_seconds How long the daemon waits before taking back a field another manager keeps setting.\n# TYPE stowage_fight_backoff_seconds gauge\n",
    );
    if let Some(fight) = &h.fight {
        text.push_str(&format!(
            "stowage_fight_backoff_seconds{{object=\"{}\",field=\"{}\",manager=\"{}\"}} {}\n",
            escape_label(&fight.object.to_string()),
            escape_label(&fight.field),
            escape_label(&fight.managers.join(",")),
            fight.wait.as_secs_f64()
        ));
    }
    text
}

/// A counter with one series per label set.
fn labelled(text: &mut String, name: &str, help: &str, series: Vec<(String, u64)>) {
    text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
    for (labels, value) in series {
        text.push_str(&format!("{name}{{{labels}}} {value}\n"));
    }
}

/// A label value as Prometheus' text format quotes it.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Per schedule and location: the last success, the verdict as one gauge per state,
/// and whether the bucket could be read to find the last success.
fn copy_metrics(text: &mut String, copies: &[crate::copies::CopyStatus]) {
    let labels = |copy: &crate::copies::CopyStatus| {
        format!(
            "schedule=\"{}\",location=\"{}\"",
            escape_label(&copy.schedule),
            escape_label(copy.location.as_deref().unwrap_or(""))
        )
    };
    text.push_str("# HELP stowage_copy_last_success_timestamp_seconds When the copy's last successful backup completed (Unix time; 0: never).\n# TYPE stowage_copy_last_success_timestamp_seconds gauge\n");
    for copy in copies {
        let when = copy
            .last_success
            .as_ref()
            .and_then(|b| b.completed.as_deref().or(b.started.as_deref()))
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(0, |t| t.timestamp());
        text.push_str(&format!(
            "stowage_copy_last_success_timestamp_seconds{{{}}} {when}\n",
            labels(copy)
        ));
    }
    text.push_str("# HELP stowage_copy_verdict 1 for the copy's current verdict (ok, waiting, paused, behind, missing).\n# TYPE stowage_copy_verdict gauge\n");
    for copy in copies {
        for verdict in crate::copies::Verdict::ALL {
            text.push_str(&format!(
                "stowage_copy_verdict{{{},verdict=\"{}\"}} {}\n",
                labels(copy),
                verdict.as_str(),
                u8::from(copy.verdict == verdict)
            ));
        }
    }
    text.push_str("# HELP stowage_copy_bucket_check_failed 1 when the copy's bucket could not be read to find its last backup.\n# TYPE stowage_copy_bucket_check_failed gauge\n");
    for copy in copies {
        text.push_str(&format!(
            "stowage_copy_bucket_check_failed{{{}}} {}\n",
            labels(copy),
            u8::from(copy.bucket_check.is_some())
        ));
    }
}
