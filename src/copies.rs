//! Copies: whether each declared schedule's backups land in each of its locations.
//!
//! A schedule fanned out to several locations is one Velero Schedule per location; each
//! is a copy. [`copies`] gives every copy a [`Verdict`] from what the cluster holds (the
//! Schedule, its Backups) and the time; [`with_presence`] adds what the buckets hold
//! (whether a Completed backup's `velero-backup.json` is really there). Pure: the
//! engine reads the cluster and the buckets and passes them in.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use crate::config::Config;
use crate::observe::{Observed, ObservedBackup};
use crate::velero::{Kind, ObjectRef};

/// A copy's state, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Ok,
    /// No run is due yet.
    Waiting,
    Paused,
    /// The last success is older than the schedule's period plus grace, or the latest
    /// backup failed.
    Behind,
    /// Velero says Completed, but the backup's files are not in the bucket.
    Missing,
}

impl Verdict {
    pub const ALL: [Verdict; 5] = [
        Verdict::Ok,
        Verdict::Waiting,
        Verdict::Paused,
        Verdict::Behind,
        Verdict::Missing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Waiting => "waiting",
            Verdict::Paused => "paused",
            Verdict::Behind => "behind",
            Verdict::Missing => "missing",
        }
    }

    /// What `status --check` fails on.
    pub fn is_failing(self) -> bool {
        matches!(self, Verdict::Behind | Verdict::Missing)
    }
}

/// A backup as a copy's row shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSeen {
    pub name: String,
    pub phase: String,
    pub started: Option<String>,
    pub completed: Option<String>,
}

/// One copy of one declared schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyStatus {
    /// The declared schedule (the file's entry).
    pub schedule: String,
    /// The location this copy writes to (`None`: Velero's default location).
    pub location: Option<String>,
    /// The Velero Schedule object.
    pub velero_schedule: String,
    pub verdict: Verdict,
    /// Why, in words: Velero's reason for a failure, the age of the last success, ...
    pub reason: Option<String>,
    pub last_backup: Option<BackupSeen>,
    pub last_success: Option<BackupSeen>,
    /// What the bucket check found out about the last success, when it ran and could
    /// not tell (the verdict then stands on the cluster's word alone).
    pub bucket_check: Option<String>,
    /// The copy's last restore drill, as recorded in the cluster.
    pub drill: Option<crate::drills::DrillRecord>,
    /// How old the copy's newest restorable backup is (known once a drill proved it).
    pub recovery_point_age: Option<Duration>,
    /// The schedule's recovery point objective, when it declares one.
    pub rpo: Option<Duration>,
    /// Why the copy's recoverability fails `status --check`: its last drill, a drill
    /// too old, or the schedule's `rpo`.
    pub recoverability: Option<String>,
}

impl CopyStatus {
    /// What `status --check` fails on: the backups not landing, or the copy not
    /// proven restorable as the file asks.
    pub fn is_failing(&self) -> bool {
        self.verdict.is_failing() || self.recoverability.is_some()
    }
}

/// What a bucket holds for a Completed backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    Present,
    Absent,
    /// The bucket could not be read: why (scrubbed).
    Unknown(String),
}

const FAILED: [&str; 3] = ["Failed", "PartiallyFailed", "FailedValidation"];

/// A run Velero has not finished: not started (`New`, or no phase yet), waiting in
/// Velero 1.18's queue (`Queued`, `ReadyToStart`), or running.
const IN_PROGRESS: [&str; 9] = [
    "",
    "New",
    "Queued",
    "ReadyToStart",
    "InProgress",
    "WaitingForPluginOperations",
    "WaitingForPluginOperationsPartiallyFailed",
    "Finalizing",
    "FinalizingPartiallyFailed",
];

fn in_progress(backup: &ObservedBackup) -> bool {
    IN_PROGRESS.contains(&backup.phase.as_deref().unwrap_or_default())
}

/// How long a Completed backup took, when its times say.
fn took(backup: &BackupSeen) -> Option<Duration> {
    let started = parse_time(backup.started.as_deref()?)?;
    let completed = parse_time(backup.completed.as_deref()?)?;
    (completed >= started).then(|| completed - started)
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn seen(backup: &ObservedBackup) -> BackupSeen {
    BackupSeen {
        name: backup.name.clone(),
        phase: backup.phase.clone().unwrap_or_else(|| "New".to_string()),
        started: backup.started.clone(),
        completed: backup.completed.clone(),
    }
}

/// How late a run may finish and still count: half the period, at least two minutes
/// (Velero looks at schedules once a minute), at most an hour.
pub fn grace(period: Duration) -> Duration {
    (period / 2).clamp(Duration::minutes(2), Duration::hours(1))
}

/// The latest run of `cron` at or before `at`, if one falls after `since`.
pub fn previous_run(cron: &str, at: DateTime<Utc>, since: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut window = Duration::minutes(2);
    loop {
        let mut from = at - window;
        if from < since {
            from = since;
        }
        let mut latest = None;
        let mut tick = crate::velero::cron::next_run(cron, from);
        let mut steps = 0;
        while let Some(t) = tick {
            if t > at || steps > 10_000 {
                break;
            }
            latest = Some(t);
            tick = crate::velero::cron::next_run(cron, t);
            steps += 1;
        }
        if latest.is_some() || from <= since || window > Duration::days(800) {
            return latest;
        }
        window = window * 4;
    }
}

/// Every copy of every declared schedule, judged at `now` from `observed`.
pub fn copies(config: &Config, observed: &Observed, now: DateTime<Utc>) -> Vec<CopyStatus> {
    let namespace = &config.velero.namespace;
    let mut out = Vec::new();
    for (name, schedule) in &config.schedules {
        // Velero never runs two backups of the same namespaces at once (before 1.18 it
        // ran one backup at a time): a schedule's copies fired together run one after
        // another, so each copy's run may finish as much later as the copies before it
        // took.
        let mut queued_behind = Duration::zero();
        for instance in schedule.instances(name) {
            let velero_schedule = instance.object_name.clone();
            let object = observed.objects.get(&ObjectRef {
                kind: Kind::Schedule,
                namespace: namespace.clone(),
                name: velero_schedule.clone(),
            });
            let (mut backups, future): (Vec<&ObservedBackup>, Vec<&ObservedBackup>) = observed
                .backups
                .iter()
                .filter(|b| {
                    b.namespace == *namespace && b.schedule.as_deref() == Some(&velero_schedule)
                })
                .partition(|b| !stamped_in_the_future(b, now));
            // In the order the API server made them: a status can claim any time.
            backups.sort_by_key(|b| {
                (
                    b.created.clone().or_else(|| b.started.clone()),
                    b.name.clone(),
                )
            });
            let last_backup = backups.last().map(|b| seen(b));
            let last_success = backups
                .iter()
                .rev()
                .find(|b| b.phase.as_deref() == Some("Completed"))
                .map(|b| seen(b));
            let (verdict, reason) = match (object, future.first()) {
                (_, Some(future)) => (
                    Verdict::Behind,
                    Some(format!(
                        "backup {} is stamped in the future ({}): a clock or the object is wrong, so this copy's runs cannot be trusted",
                        future.name,
                        future
                            .completed
                            .as_deref()
                            .or(future.started.as_deref())
                            .unwrap_or("?")
                    )),
                ),
                (None, None) => (
                    Verdict::Behind,
                    Some(format!(
                        "the Schedule {velero_schedule} is not in the cluster: apply the file, or find who deleted it"
                    )),
                ),
                (Some(object), None) => judge(
                    &object.manifest,
                    schedule.paused,
                    &instance.cron,
                    queued_behind,
                    last_backup.as_ref(),
                    last_success.as_ref(),
                    backups.last().copied(),
                    now,
                ),
            };
            queued_behind += last_success.as_ref().and_then(took).unwrap_or_default();
            out.push(CopyStatus {
                schedule: name.clone(),
                location: instance.storage_location.map(str::to_string),
                velero_schedule,
                verdict,
                reason,
                last_backup,
                last_success,
                bucket_check: None,
                drill: None,
                recovery_point_age: None,
                rpo: None,
                recoverability: None,
            });
        }
    }
    out
}

/// How far ahead of `now` a backup's times may be (clocks of the API server, Velero
/// and this machine differ a little) before it counts as stamped in the future.
const CLOCK_SKEW: Duration = Duration::minutes(5);

fn stamped_in_the_future(backup: &ObservedBackup, now: DateTime<Utc>) -> bool {
    [&backup.started, &backup.completed, &backup.created]
        .into_iter()
        .filter_map(|t| t.as_deref().and_then(parse_time))
        .any(|t| t > now + CLOCK_SKEW)
}

/// A copy whose Schedule is in the cluster, judged. `declared_paused` is what the file
/// says: a pause set by someone else is not a reason to stop expecting backups.
#[allow(clippy::too_many_arguments)]
fn judge(
    schedule: &Value,
    declared_paused: bool,
    cron: &str,
    queued_behind: Duration,
    last_backup: Option<&BackupSeen>,
    last_success: Option<&BackupSeen>,
    latest: Option<&ObservedBackup>,
    now: DateTime<Utc>,
) -> (Verdict, Option<String>) {
    let paused_in_cluster = schedule.pointer("/spec/paused") == Some(&Value::Bool(true));
    match (declared_paused, paused_in_cluster) {
        (true, _) => return (Verdict::Paused, None),
        (false, true) => {
            return (
                Verdict::Behind,
                Some(
                    "the Schedule is paused in the cluster, but the file does not pause it: no backups run (apply the file, or declare paused = true)"
                        .to_string(),
                ),
            );
        }
        (false, false) => {}
    }
    if let (Some(last), Some(latest)) = (last_backup, latest)
        && FAILED.contains(&last.phase.as_str())
    {
        let why = latest
            .failure
            .clone()
            .unwrap_or_else(|| "Velero gave no reason".to_string());
        return (
            Verdict::Behind,
            Some(format!(
                "the latest backup {} is {}: {why}",
                last.name, last.phase
            )),
        );
    }
    let created = schedule
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(parse_time)
        .unwrap_or(now);
    let Some(next) = crate::velero::cron::next_run(cron, now) else {
        return (Verdict::Waiting, Some("the cron never fires".to_string()));
    };
    let period = crate::velero::cron::next_run(cron, next)
        .map(|after| after - next)
        .unwrap_or(Duration::days(1));
    let grace = grace(period) + queued_behind;
    let success_started = last_success
        .and_then(|s| s.started.as_deref())
        .and_then(parse_time);
    // The last run whose backup should be finished by now. Before the first, a copy
    // that has landed since the Schedule was made is ok; one that has not is waiting.
    let Some(due) = previous_run(cron, now - grace, created) else {
        if success_started.is_some_and(|started| started >= created - Duration::minutes(1)) {
            return (Verdict::Ok, None);
        }
        return (
            Verdict::Waiting,
            Some(format!(
                "the first run is due at {}",
                next.format("%Y-%m-%dT%H:%M:%SZ")
            )),
        );
    };
    // The due run made its backup and Velero has not finished it (queued behind other
    // backups, or running): in progress, not behind.
    let landed = success_started.is_some_and(|started| started >= due - Duration::minutes(1));
    if !landed
        && let Some(latest) = latest
        && in_progress(latest)
        && latest
            .created
            .as_deref()
            .or(latest.started.as_deref())
            .and_then(parse_time)
            .is_some_and(|made| made >= due - Duration::minutes(1))
    {
        let phase = latest
            .phase
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("New");
        let position = latest
            .queue_position
            .map(|p| format!(", position {p} in Velero's queue"))
            .unwrap_or_default();
        return (
            Verdict::Waiting,
            Some(format!(
                "the run due at {} is in progress: backup {} is {phase}{position}",
                due.format("%Y-%m-%dT%H:%M:%SZ"),
                latest.name
            )),
        );
    }
    // Velero starts a run within a minute of its tick; a backup started by hand since
    // counts as well.
    match success_started {
        Some(started) if started >= due - Duration::minutes(1) => (Verdict::Ok, None),
        Some(started) => (
            Verdict::Behind,
            Some(format!(
                "the last successful backup started {} ago; a run was due at {}",
                age(now - started),
                due.format("%Y-%m-%dT%H:%M:%SZ")
            )),
        ),
        None => (
            Verdict::Behind,
            Some(format!(
                "no successful backup; a run was due at {}",
                due.format("%Y-%m-%dT%H:%M:%SZ")
            )),
        ),
    }
}

/// "3m", "2h", "4d" ([`crate::velero::duration::approximate`]).
pub fn age(span: Duration) -> String {
    crate::velero::duration::approximate(span)
}

/// The backups whose files the buckets should hold: each copy's last success, by
/// location, for copies judged `ok` or `waiting` (a copy already behind says enough).
pub fn backups_to_find(copies: &[CopyStatus]) -> Vec<(String, String)> {
    copies
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Ok | Verdict::Waiting))
        .filter_map(|c| Some((c.location.clone()?, c.last_success.as_ref()?.name.clone())))
        .collect()
}

/// Adds what the buckets hold: a last success whose files are absent makes its copy
/// `missing`; one that could not be checked says so beside its verdict.
pub fn with_presence(copies: &mut [CopyStatus], found: &BTreeMap<(String, String), Presence>) {
    for copy in copies {
        let (Some(location), Some(success)) = (&copy.location, &copy.last_success) else {
            continue;
        };
        match found.get(&(location.clone(), success.name.clone())) {
            Some(Presence::Absent) if matches!(copy.verdict, Verdict::Ok | Verdict::Waiting) => {
                copy.verdict = Verdict::Missing;
                copy.reason = Some(format!(
                    "Velero says {} Completed, but its velero-backup.json is not in location {location}'s bucket",
                    success.name
                ));
            }
            Some(Presence::Unknown(why)) => copy.bucket_check = Some(why.clone()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> DateTime<Utc> {
        parse_time(text).unwrap()
    }

    fn backup(name: &str, phase: &str, started: &str) -> ObservedBackup {
        ObservedBackup {
            name: name.to_string(),
            namespace: "velero".to_string(),
            schedule: Some("nightly".to_string()),
            phase: Some(phase.to_string()),
            started: Some(started.to_string()),
            completed: Some(started.to_string()),
            failure: (phase != "Completed")
                .then(|| "BackupStorageLocation \"dr\" is unavailable".to_string()),
            ..ObservedBackup::default()
        }
    }

    fn verdict_of(
        schedule: Value,
        cron: &str,
        backups: &[ObservedBackup],
        now: &str,
    ) -> (Verdict, Option<String>) {
        let mut sorted: Vec<&ObservedBackup> = backups.iter().collect();
        sorted.sort_by_key(|b| b.started.clone());
        let last = sorted.last().map(|b| seen(b));
        let success = sorted
            .iter()
            .rev()
            .find(|b| b.phase.as_deref() == Some("Completed"))
            .map(|b| seen(b));
        judge(
            &schedule,
            false,
            cron,
            Duration::zero(),
            last.as_ref(),
            success.as_ref(),
            sorted.last().copied(),
            at(now),
        )
    }

    #[test]
    fn a_due_run_queued_or_running_is_in_progress_and_a_stuck_one_is_not() {
        let created =
            json!({"metadata": {"creationTimestamp": "2026-11-01T00:00:00Z"}, "spec": {}});
        let daily = "0 1 * * *";
        let yesterday = backup(
            "nightly-20261202010000",
            "Completed",
            "2026-12-02T01:00:05Z",
        );
        for (phase, position, shown) in [
            ("Queued", Some(2), "is Queued, position 2 in Velero's queue"),
            ("ReadyToStart", None, "is ReadyToStart"),
            ("InProgress", None, "is InProgress"),
            ("", None, "is New"),
        ] {
            let mut today = backup("nightly-20261203010000", phase, "2026-12-03T01:00:30Z");
            today.completed = None;
            today.failure = None;
            today.queue_position = position;
            let (verdict, reason) = verdict_of(
                created.clone(),
                daily,
                &[yesterday.clone(), today],
                "2026-12-03T03:00:00Z",
            );
            assert_eq!(verdict, Verdict::Waiting, "{phase}: {reason:?}");
            let reason = reason.unwrap();
            assert!(
                reason.contains("in progress") && reason.contains(shown),
                "{reason}"
            );
        }
        // Still InProgress from a run two days ago: today's run never came.
        let mut stuck = backup(
            "nightly-20261201010000",
            "InProgress",
            "2026-12-01T01:00:30Z",
        );
        stuck.completed = None;
        let before = backup(
            "nightly-20261130010000",
            "Completed",
            "2026-11-30T01:00:05Z",
        );
        let (verdict, reason) =
            verdict_of(created, daily, &[before, stuck], "2026-12-03T03:00:00Z");
        assert_eq!(verdict, Verdict::Behind, "{reason:?}");
    }

    #[test]
    fn a_later_copy_may_finish_as_much_later_as_the_copies_before_it_took() {
        let schedule =
            json!({"metadata": {"creationTimestamp": "2026-11-01T00:00:00Z"}, "spec": {}});
        let yesterday = seen(&backup(
            "nightly-20261202010000",
            "Completed",
            "2026-12-02T01:00:05Z",
        ));
        let judged = |queued_behind: Duration| {
            judge(
                &schedule,
                false,
                "0 1 * * *",
                queued_behind,
                Some(&yesterday),
                Some(&yesterday),
                None,
                at("2026-12-03T02:30:00Z"),
            )
            .0
        };
        // Due at 01:00 with an hour's grace: behind at 02:30 on its own...
        assert_eq!(judged(Duration::zero()), Verdict::Behind);
        // ...but not while the copies before it took two hours.
        assert_eq!(judged(Duration::hours(2)), Verdict::Ok);
    }

    #[test]
    fn verdicts_follow_the_cron_and_the_latest_backup() {
        let created =
            json!({"metadata": {"creationTimestamp": "2026-11-01T00:00:00Z"}, "spec": {}});
        let daily = "0 1 * * *";
        let ok = backup(
            "nightly-20261202010000",
            "Completed",
            "2026-12-02T01:00:05Z",
        );
        let old = backup(
            "nightly-20261128010000",
            "Completed",
            "2026-11-28T01:00:05Z",
        );
        let failed = backup(
            "nightly-20261202010000",
            "FailedValidation",
            "2026-12-02T01:00:05Z",
        );
        // Last night's run landed.
        assert_eq!(
            verdict_of(
                created.clone(),
                daily,
                &[old.clone(), ok.clone()],
                "2026-12-02T09:00:00Z"
            )
            .0,
            Verdict::Ok
        );
        // Still within last night's grace, the night before counts.
        let before_grace = backup(
            "nightly-20261201010000",
            "Completed",
            "2026-12-01T01:00:05Z",
        );
        assert_eq!(
            verdict_of(
                created.clone(),
                daily,
                &[before_grace],
                "2026-12-02T01:30:00Z"
            )
            .0,
            Verdict::Ok
        );
        // Four days without a success.
        let (verdict, reason) = verdict_of(
            created.clone(),
            daily,
            std::slice::from_ref(&old),
            "2026-12-02T09:00:00Z",
        );
        assert_eq!(verdict, Verdict::Behind);
        assert!(reason.unwrap().contains("due at 2026-12-02T01:00:00Z"));
        // The latest run failed: behind with Velero's reason, whatever came before.
        let (verdict, reason) = verdict_of(
            created.clone(),
            daily,
            &[old, failed],
            "2026-12-02T09:00:00Z",
        );
        assert_eq!(verdict, Verdict::Behind);
        let reason = reason.unwrap();
        assert!(
            reason.contains("FailedValidation") && reason.contains("is unavailable"),
            "{reason}"
        );
        // A new schedule before its first tick.
        let new = json!({"metadata": {"creationTimestamp": "2026-12-02T08:00:00Z"}, "spec": {}});
        let (verdict, reason) = verdict_of(new, daily, &[], "2026-12-02T09:00:00Z");
        assert_eq!(verdict, Verdict::Waiting);
        assert!(reason.unwrap().contains("2026-12-03T01:00:00Z"));
        // A new schedule whose copy was backed up by hand since: landed.
        let new = json!({"metadata": {"creationTimestamp": "2026-12-02T08:00:00Z"}, "spec": {}});
        let by_hand = backup("nightly-by-hand", "Completed", "2026-12-02T08:30:00Z");
        assert_eq!(
            verdict_of(new, daily, &[by_hand], "2026-12-02T09:00:00Z").0,
            Verdict::Ok
        );
        // Paused in the cluster, by someone else: no backups run, and the file expects
        // them.
        let paused = json!({"metadata": {"creationTimestamp": "2026-11-01T00:00:00Z"}, "spec": {"paused": true}});
        let (verdict, reason) = verdict_of(paused, daily, &[], "2026-12-02T09:00:00Z");
        assert_eq!(verdict, Verdict::Behind);
        assert!(reason.unwrap().contains("paused in the cluster"));
        // Every minute: a backup from three minutes ago is behind, one from a minute
        // ago is fine.
        let minutely = "* * * * *";
        let recent = backup("nightly-1", "Completed", "2026-12-02T08:58:30Z");
        assert_eq!(
            verdict_of(created.clone(), minutely, &[recent], "2026-12-02T09:00:00Z").0,
            Verdict::Ok
        );
        let stale = backup("nightly-1", "Completed", "2026-12-02T08:50:00Z");
        assert_eq!(
            verdict_of(created, minutely, &[stale], "2026-12-02T09:00:00Z").0,
            Verdict::Behind
        );
    }

    /// Judges every copy of a file declaring `schedule` against the cluster objects
    /// given (a Schedule `nightly` when `schedule` is `Some`), at 2026-12-02T09:00Z.
    fn judged(declared: &str, schedule: Option<Value>, backups: &[ObservedBackup]) -> CopyStatus {
        let text = format!(
            "version = 1\n[backup_locations.primary]\nprovider = \"aws\"\nbucket = \"b\"\ndefault = true\nconfig = {{ region = \"us-east-1\" }}\n[schedules.nightly]\ncron = \"0 1 * * *\"\n{declared}"
        );
        let loaded = crate::config::load::parse_str(
            "stowage.toml",
            text,
            crate::config::source::Format::Toml,
        );
        let config = loaded.config.expect("a valid file");
        let mut observed = Observed::default();
        if let Some(manifest) = schedule {
            let object = ObjectRef {
                kind: Kind::Schedule,
                namespace: "velero".to_string(),
                name: "nightly".to_string(),
            };
            observed.objects.insert(
                object.clone(),
                crate::observe::ObservedObject {
                    object,
                    manifest,
                    labels: Default::default(),
                    annotations: Default::default(),
                    resource_version: None,
                    uid: None,
                    field_managers: Vec::new(),
                },
            );
        }
        observed.backups = backups.to_vec();
        let mut all = copies(&config, &observed, at("2026-12-02T09:00:00Z"));
        assert_eq!(all.len(), 1);
        all.remove(0)
    }

    #[test]
    fn what_the_cluster_does_not_prove_is_never_ok() {
        let schedule =
            json!({"metadata": {"creationTimestamp": "2026-11-01T00:00:00Z"}, "spec": {}});
        let landed = backup(
            "nightly-20261202010000",
            "Completed",
            "2026-12-02T01:00:05Z",
        );
        assert_eq!(
            judged("", Some(schedule.clone()), std::slice::from_ref(&landed)).verdict,
            Verdict::Ok
        );
        // A declared Schedule absent from the cluster: nothing runs.
        let absent = judged("", None, std::slice::from_ref(&landed));
        assert_eq!(absent.verdict, Verdict::Behind, "{absent:?}");
        assert!(absent.reason.unwrap().contains("not in the cluster"));
        // A pause the file declares is a pause.
        let paused = json!({"metadata": {"creationTimestamp": "2026-11-01T00:00:00Z"}, "spec": {"paused": true}});
        assert_eq!(
            judged("paused = true\n", Some(paused.clone()), &[]).verdict,
            Verdict::Paused
        );
        assert_eq!(judged("", Some(paused), &[]).verdict, Verdict::Behind);
        // A backup stamped in 2099 hides nothing: not the newer failure, not itself.
        let mut future = backup("nightly-forged", "Completed", "2099-01-01T01:00:00Z");
        future.created = Some("2026-12-01T00:00:00Z".to_string());
        let mut failed = backup("nightly-20261202010000", "Failed", "2026-12-02T01:00:05Z");
        failed.created = Some("2026-12-02T01:00:00Z".to_string());
        let forged = judged("", Some(schedule.clone()), &[future.clone(), failed]);
        assert_eq!(forged.verdict, Verdict::Behind, "{forged:?}");
        assert!(forged.reason.unwrap().contains("stamped in the future"));
        let forged = judged("", Some(schedule), &[landed, future]);
        assert_eq!(forged.verdict, Verdict::Behind, "{forged:?}");
        assert_ne!(forged.last_success.unwrap().name, "nightly-forged");
    }

    #[test]
    fn a_completed_backup_absent_from_its_bucket_is_missing() {
        let copy = CopyStatus {
            schedule: "nightly".into(),
            location: Some("dr".into()),
            velero_schedule: "nightly-dr".into(),
            verdict: Verdict::Ok,
            reason: None,
            last_backup: None,
            last_success: Some(BackupSeen {
                name: "nightly-dr-1".into(),
                phase: "Completed".into(),
                started: None,
                completed: None,
            }),
            bucket_check: None,
            drill: None,
            recovery_point_age: None,
            rpo: None,
            recoverability: None,
        };
        let mut copies = vec![
            copy.clone(),
            CopyStatus {
                location: Some("primary".into()),
                ..copy
            },
        ];
        let found = BTreeMap::from([
            (
                ("dr".to_string(), "nightly-dr-1".to_string()),
                Presence::Absent,
            ),
            (
                ("primary".to_string(), "nightly-dr-1".to_string()),
                Presence::Unknown("403 forbidden".into()),
            ),
        ]);
        assert_eq!(backups_to_find(&copies).len(), 2);
        with_presence(&mut copies, &found);
        assert_eq!(copies[0].verdict, Verdict::Missing);
        assert_eq!(copies[1].verdict, Verdict::Ok);
        assert_eq!(copies[1].bucket_check.as_deref(), Some("403 forbidden"));
    }
}
