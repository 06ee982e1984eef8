//! `/healthz`, `/readyz` and `/metrics` for the daemon.
//!
//! Readiness (product contract §4): a replica is ready when it can do its job now —
//! the API server answered within the request timeout and, for the leader, the last
//! round succeeded. A standby that reaches the API server is ready, so a Deployment of
//! several replicas rolls out. Metrics are written by `prometheus-client` in the
//! OpenMetrics text format: counters end in `_total`, durations are histograms in
//! seconds, and `stowage_build_info` names the version and commit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// What the daemon knows about itself, shared with the HTTP endpoints.
#[derive(Debug, Clone)]
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
    /// How long rounds that planned took.
    pub plan_seconds: Histogram,
    /// The file's first error, located, while it does not validate.
    pub invalid_file: Option<String>,
    /// Why the last reconcile failed, if it did.
    pub last_error: Option<String>,
    /// Why the last round's plan waits (its inputs not yet quiet), if it does.
    pub deferred: Option<String>,
    /// When the API server last answered (the probe, or a round that planned).
    pub last_answer: Option<Instant>,
    /// How long the API server may take to answer before it counts as unreachable.
    pub request_timeout: Duration,
    pub reconciled_once: bool,
    pub leader_election: bool,
    /// With leader election, the Lease's fence: whether this replica leads is read
    /// from it when asked, never remembered, so it is never stale.
    pub fence: Option<crate::cluster::lease::Fence>,
    /// The last plan deleted most of what the file manages and was not applied.
    pub mass_delete_refused: bool,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            applies: 0,
            failures: Default::default(),
            copies: Vec::new(),
            fight: None,
            takeovers: Default::default(),
            drift_corrections: 0,
            plans: 0,
            last_success_unix: None,
            plan_seconds: plan_histogram(),
            invalid_file: None,
            last_error: None,
            deferred: None,
            last_answer: None,
            request_timeout: crate::cluster::REQUEST_TIMEOUT,
            reconciled_once: false,
            leader_election: false,
            fence: None,
            mass_delete_refused: false,
        }
    }
}

/// Plans take from tens of milliseconds to a minute: buckets from 10 ms, doubling.
fn plan_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

impl Health {
    /// The API server answered at `at`.
    pub fn answered(&mut self, at: Instant) {
        if self.last_answer.is_none_or(|last| last < at) {
            self.last_answer = Some(at);
        }
    }

    /// Whether the API server answered within the request timeout.
    pub fn reachable(&self) -> bool {
        self.last_answer
            .is_some_and(|at| at.elapsed() <= self.request_timeout)
    }

    /// Whether this replica may write now (always, without leader election).
    pub fn leads(&self) -> bool {
        !self.leader_election || self.fence.as_ref().is_some_and(|f| f.is_open())
    }

    /// The fight the daemon is in now: one recorded that has not yet ended.
    pub fn current_fight(&self) -> Option<&crate::engine::fights::Backoff> {
        self.fight
            .as_ref()
            .filter(|fight| fight.goes_on(std::time::Instant::now()))
    }

    /// Why this replica is not ready now; empty when it is.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.reconciled_once {
            problems.push("not reconciled yet".to_string());
        }
        if !self.reachable() {
            problems.push(match self.last_answer {
                Some(at) => format!(
                    "the API server has not answered for {} s (request timeout {} s)",
                    at.elapsed().as_secs(),
                    self.request_timeout.as_secs_f64()
                ),
                None => "the API server has not answered yet".to_string(),
            });
        }
        if let Some(invalid) = &self.invalid_file {
            problems.push(format!(
                "the file does not validate (the last valid state is kept): {invalid}"
            ));
        }
        // What only the writer has: its last apply, a fight, a refused plan.
        if self.leads() {
            if let Some(error) = &self.last_error {
                problems.push(format!("last apply failed: {error}"));
            }
            if let Some(fight) = self.current_fight() {
                problems.push(crate::report::watch::fight_problem(fight));
            }
        }
        problems
    }
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
    let problems = lock(&shared).problems();
    if problems.is_empty() {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, problems.join("\n") + "\n")
    }
}

async fn metrics(
    State(shared): State<Shared>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    let text = metrics_text(&lock(&shared));
    // Prometheus asks for OpenMetrics; promtool and older scrapers read the classic
    // text format, which they get unless they ask.
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            classic_text(&text),
        )
    }
}

/// OpenMetrics text as Prometheus' classic text format: a counter's family and an
/// info's are named with their sample's suffix (`_total`, `_info`, an info a gauge),
/// `# UNIT` and `# EOF` dropped. The samples are the same lines.
pub fn classic_text(openmetrics: &str) -> String {
    let mut suffixes: std::collections::HashMap<String, &str> = Default::default();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            match rest.rsplit_once(' ') {
                Some((name, "counter")) => {
                    suffixes.insert(name.to_string(), "_total");
                }
                Some((name, "info")) => {
                    suffixes.insert(name.to_string(), "_info");
                }
                _ => {}
            }
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# TYPE ", "# HELP "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            let suffix = suffixes.get(name)?;
            let tail = if *prefix == "# TYPE " && tail == "info" {
                "gauge"
            } else {
                tail
            };
            Some(format!("{prefix}{name}{suffix} {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

type Labels = Vec<(String, String)>;

fn counter(value: u64) -> Counter {
    let counter = Counter::default();
    counter.inc_by(value);
    counter
}

fn gauge(value: i64) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(value);
    gauge
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The health as the OpenMetrics text format.
pub fn metrics_text(h: &Health) -> String {
    let mut registry = Registry::default();
    registry.register(
        "stowage_build",
        "The version and commit of this stowage",
        Info::new(vec![
            ("version".to_string(), crate::build::VERSION.to_string()),
            ("commit".to_string(), crate::build::COMMIT.to_string()),
        ]),
    );
    registry.register(
        "stowage_applies",
        "Applies that wrote changes",
        counter(h.applies),
    );
    registry.register(
        "stowage_drift_corrections",
        "Applies that reverted changes made in the cluster",
        counter(h.drift_corrections),
    );
    registry.register("stowage_plans", "Plans made.", counter(h.plans));
    registry.register(
        "stowage_last_success_timestamp_seconds",
        "When the cluster last matched the file (Unix time; 0: never, or another replica writes)",
        gauge(if h.leads() {
            h.last_success_unix.unwrap_or(0)
        } else {
            0
        }),
    );
    registry.register(
        "stowage_plan_duration_seconds",
        "How long rounds that planned took",
        h.plan_seconds.clone(),
    );
    registry.register(
        "stowage_mass_delete_refused",
        "1 while the last plan deleted most of what the file manages and was not applied",
        gauge(i64::from(h.mass_delete_refused)),
    );
    registry.register(
        "stowage_file_invalid",
        "1 while the file does not validate",
        gauge(i64::from(h.invalid_file.is_some())),
    );
    registry.register(
        "stowage_cluster_reachable",
        "1 when the API server answered within the request timeout",
        gauge(i64::from(h.reachable())),
    );
    registry.register(
        "stowage_leader",
        "1 when this replica may write",
        gauge(i64::from(h.leads())),
    );
    let failures = Family::<Labels, Counter>::default();
    for reason in crate::engine::FailureReason::ALL {
        failures
            .get_or_create(&labels(&[("reason", reason.as_str())]))
            .inc_by(h.failures.get(&reason).copied().unwrap_or(0));
    }
    registry.register(
        "stowage_apply_failures",
        "Rounds that failed, by reason: the file, the cluster, the plan, a conflict, a write, convergence",
        failures,
    );
    let takeovers = Family::<Labels, Counter>::default();
    for (manager, count) in &h.takeovers {
        takeovers
            .get_or_create(&labels(&[("manager", manager)]))
            .inc_by(*count);
    }
    registry.register(
        "stowage_takeovers",
        "Fields taken over from another field manager, by that manager",
        takeovers,
    );
    let fight = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    if let Some(backoff) = h.current_fight() {
        fight
            .get_or_create(&labels(&[
                ("object", &backoff.object.to_string()),
                ("field", &backoff.field.to_string()),
                ("manager", &backoff.managers.join(",")),
            ]))
            .set(backoff.wait.as_secs_f64());
    }
    registry.register(
        "stowage_fight_backoff_seconds",
        "How long the daemon waits before taking back a field another manager keeps setting",
        fight,
    );
    // A standby's judgement of the copies is stale (it stopped judging when it stopped
    // leading): only the writer exports them, so alerts count each copy once.
    let copies: &[crate::copies::CopyStatus] = if h.leads() { &h.copies } else { &[] };
    copy_metrics(&mut registry, copies);
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

/// Per schedule and location: the last success, the verdict as one gauge per state,
/// and whether the bucket could be read to find the last success.
fn copy_metrics(registry: &mut Registry, copies: &[crate::copies::CopyStatus]) {
    let of = |copy: &crate::copies::CopyStatus| {
        labels(&[
            ("schedule", &copy.schedule),
            ("location", copy.location.as_deref().unwrap_or("")),
        ])
    };
    let last_success = Family::<Labels, Gauge>::default();
    let verdicts = Family::<Labels, Gauge>::default();
    let bucket_failed = Family::<Labels, Gauge>::default();
    for copy in copies {
        let when = copy
            .last_success
            .as_ref()
            .and_then(|b| b.completed.as_deref().or(b.started.as_deref()))
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(0, |t| t.timestamp());
        last_success.get_or_create(&of(copy)).set(when);
        for verdict in crate::copies::Verdict::ALL {
            let mut labelled = of(copy);
            labelled.push(("verdict".to_string(), verdict.as_str().to_string()));
            verdicts
                .get_or_create(&labelled)
                .set(i64::from(copy.verdict == verdict));
        }
        bucket_failed
            .get_or_create(&of(copy))
            .set(i64::from(copy.bucket_check.is_some()));
    }
    registry.register(
        "stowage_copy_last_success_timestamp_seconds",
        "When the copy's last successful backup completed (Unix time; 0: never)",
        last_success,
    );
    registry.register(
        "stowage_copy_verdict",
        "1 for the copy's current verdict (ok, waiting, paused, behind, missing)",
        verdicts,
    );
    registry.register(
        "stowage_copy_bucket_check_failed",
        "1 when the copy's bucket could not be read to find its last backup",
        bucket_failed,
    );
    // Restore drills (product contract §6), for the copies of schedules that drill.
    let drill_verdicts = Family::<Labels, Gauge>::default();
    let drilled_at = Family::<Labels, Gauge>::default();
    let restore_seconds = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let recovery_age = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let rpo = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let unproven = Family::<Labels, Gauge>::default();
    let asks_recoverability = |copy: &crate::copies::CopyStatus| {
        copy.drill.is_some() || copy.rpo.is_some() || copy.recoverability.is_some()
    };
    for copy in copies {
        if let Some(objective) = copy.rpo {
            rpo.get_or_create(&of(copy))
                .set(objective.num_milliseconds() as f64 / 1000.0);
        }
        if asks_recoverability(copy) {
            unproven
                .get_or_create(&of(copy))
                .set(i64::from(copy.recoverability.is_some()));
        }
        if let Some(drill) = &copy.drill {
            for verdict in crate::drills::DrillVerdict::ALL {
                let mut labelled = of(copy);
                labelled.push(("verdict".to_string(), verdict.as_str().to_string()));
                drill_verdicts
                    .get_or_create(&labelled)
                    .set(i64::from(drill.verdict == verdict));
            }
            drilled_at
                .get_or_create(&of(copy))
                .set(drill.at_time().map_or(0, |t| t.timestamp()));
            if let Some(seconds) = drill.restore_seconds {
                restore_seconds.get_or_create(&of(copy)).set(seconds);
            }
        }
        if let Some(age) = copy.recovery_point_age {
            recovery_age
                .get_or_create(&of(copy))
                .set(age.num_milliseconds() as f64 / 1000.0);
        }
    }
    registry.register(
        "stowage_copy_drill_verdict",
        "1 for the verdict of the copy's last restore drill (restorable, incomplete, unrestorable, untested)",
        drill_verdicts,
    );
    registry.register(
        "stowage_copy_drill_last_timestamp_seconds",
        "When the copy's last restore drill ended (Unix time)",
        drilled_at,
    );
    registry.register(
        "stowage_copy_restore_seconds",
        "How long the last drill's restore took: the measured recovery time",
        restore_seconds,
    );
    registry.register(
        "stowage_copy_recovery_point_age_seconds",
        "How old the copy's newest backup proven restorable is",
        recovery_age,
    );
    registry.register(
        "stowage_copy_rpo_seconds",
        "The recovery point objective the file declares for the copy's schedule",
        rpo,
    );
    registry.register(
        "stowage_copy_recoverability_failed",
        "1 when the copy is not proven restorable as the file asks (never drilled, last drill failed or too old, beyond the rpo)",
        unproven,
    );
}
