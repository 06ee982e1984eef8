//! Restore drills, as data and rules (product contract §6): what a drill of one copy
//! restores and where ([`scope`], refused before anything is created when it could
//! write into a namespace the backup came from, restore a cluster-scoped object, or
//! collide with a namespace that exists), how its outcome is judged against the
//! backup's own item list ([`judge`]), when the next one is due, and how old a copy's
//! newest restorable backup is. Pure: the engine reads the cluster and the buckets,
//! runs the Restore, and passes what it found in.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A drill's verdict on one copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DrillVerdict {
    /// Everything the backup holds that Velero restores came back.
    Restorable,
    /// The restore ran, but items are missing (named) or Velero reported errors.
    Incomplete,
    /// The restore failed or timed out.
    Unrestorable,
    /// No drill yet, or nothing to drill (no Completed backup), or refused.
    Untested,
}

impl DrillVerdict {
    pub const ALL: [DrillVerdict; 4] = [
        DrillVerdict::Restorable,
        DrillVerdict::Incomplete,
        DrillVerdict::Unrestorable,
        DrillVerdict::Untested,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DrillVerdict::Restorable => "restorable",
            DrillVerdict::Incomplete => "incomplete",
            DrillVerdict::Unrestorable => "unrestorable",
            DrillVerdict::Untested => "untested",
        }
    }
}

/// One drill of one copy, as recorded (in the cluster, so a restarted daemon knows it)
/// and shown (`status`, `drill`, metrics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    pub verdict: DrillVerdict,
    /// When the drill ended (RFC 3339).
    pub at: String,
    /// How long Velero's restore took: the recovery time measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_seconds: Option<f64>,
    /// The backup restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// When that backup started: its recovery point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_started: Option<String>,
    /// The Velero Restore that ran it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<String>,
    /// Items of the backup that did not come back, as `Kind namespace/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_items: Vec<String>,
    /// Velero's errors and warnings for the restore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Anything else to know: cluster-scoped items left out, why it was not run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// For a failed drill: its namespaces and Restore stay until then (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_until: Option<String>,
}

impl DrillRecord {
    pub fn untested(at: DateTime<Utc>, why: impl Into<String>) -> DrillRecord {
        DrillRecord {
            verdict: DrillVerdict::Untested,
            at: rfc3339(at),
            restore_seconds: None,
            backup: None,
            backup_started: None,
            restore: None,
            missing_items: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            notes: vec![why.into()],
            kept_until: None,
        }
    }

    pub fn at_time(&self) -> Option<DateTime<Utc>> {
        parse_time(&self.at)
    }
}

pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A backup's item list as Velero writes it (`<name>-resource-list.json.gz`):
/// `group/version/Kind` (or `v1/Kind`) to `namespace/name` entries, or `name` for
/// cluster-scoped items.
pub type ItemList = BTreeMap<String, Vec<String>>;

/// One item of a backup.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Item {
    /// `group/version/Kind`, or `v1/Kind` for the core group.
    pub gvk: String,
    pub namespace: String,
    pub name: String,
}

impl Item {
    pub fn kind(&self) -> &str {
        self.gvk.rsplit('/').next().unwrap_or(&self.gvk)
    }

    /// `group/version` of the item's kind.
    pub fn api_version(&self) -> &str {
        self.gvk
            .rsplit_once('/')
            .map_or("", |(api_version, _)| api_version)
    }

    fn shown(&self) -> String {
        format!("{} {}/{}", self.kind(), self.namespace, self.name)
    }
}

/// The kinds Velero never restores (its `nonRestorableResources`), as `group/Kind`:
/// a drill does not expect them back.
const NEVER_RESTORED: [&str; 9] = [
    "/Node",
    "/Event",
    "events.k8s.io/Event",
    "velero.io/Backup",
    "velero.io/Restore",
    "velero.io/ResticRepository",
    "velero.io/BackupRepository",
    "storage.k8s.io/CSINode",
    "storage.k8s.io/VolumeAttachment",
];

/// Kinds whose items Velero skips on purpose: finished Pods and Jobs, ServiceAccount
/// token Secrets.
const SKIPPED_BY_DESIGN: [&str; 3] = ["v1/Pod", "batch/v1/Job", "v1/Secret"];

fn never_restored(gvk: &str) -> bool {
    let (group_version, kind) = gvk.rsplit_once('/').unwrap_or(("", gvk));
    let group = match group_version.split_once('/') {
        Some((group, _version)) => group,
        None => "",
    };
    NEVER_RESTORED.contains(&format!("{group}/{kind}").as_str())
}

/// What a drill of one backup restores, into which namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Each namespace of the backup to the one it is restored into.
    pub mapping: BTreeMap<String, String>,
    /// The namespaced items the restore should bring back.
    pub expected: Vec<Item>,
    /// Cluster-scoped items in the backup: never restored by a drill.
    pub cluster_scoped: usize,
}

/// Why a drill was refused before anything was created (`stowage::drill-scope`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("namespace {namespace} would be restored into {mapped}, which {why}")]
    Collision {
        namespace: String,
        mapped: String,
        why: &'static str,
    },
    #[error(
        "namespace {namespace} would be restored into {mapped}, {length} characters: a namespace name has at most 63"
    )]
    TooLong {
        namespace: String,
        mapped: String,
        length: usize,
    },
    #[error(
        "the namespace prefix is empty: the restore would write into the namespaces the backup came from"
    )]
    NoPrefix,
    #[error("the backup holds no namespaced objects to restore")]
    Nothing,
}

/// The scope of a drill of a backup holding `items`, restored with `prefix` into a
/// cluster whose namespaces are `existing`. Refused when any mapped namespace exists
/// (in the cluster, or among the backup's own), is too long, or the prefix is empty.
pub fn scope(
    items: &ItemList,
    prefix: &str,
    existing: &BTreeSet<String>,
) -> Result<Scope, Refusal> {
    if prefix.is_empty() {
        return Err(Refusal::NoPrefix);
    }
    let mut expected = Vec::new();
    let mut namespaces = BTreeSet::new();
    let mut cluster_scoped = 0;
    for (gvk, entries) in items {
        for entry in entries {
            match entry.split_once('/') {
                Some((namespace, name)) => {
                    namespaces.insert(namespace.to_string());
                    if !never_restored(gvk) {
                        expected.push(Item {
                            gvk: gvk.clone(),
                            namespace: namespace.to_string(),
                            name: name.to_string(),
                        });
                    }
                }
                None if gvk == "v1/Namespace" => {
                    namespaces.insert(entry.clone());
                }
                None => cluster_scoped += 1,
            }
        }
    }
    if namespaces.is_empty() {
        return Err(Refusal::Nothing);
    }
    let mut mapping = BTreeMap::new();
    for namespace in &namespaces {
        let mapped = format!("{prefix}{namespace}");
        if mapped.len() > 63 {
            return Err(Refusal::TooLong {
                namespace: namespace.clone(),
                length: mapped.len(),
                mapped,
            });
        }
        if namespaces.contains(&mapped) {
            return Err(Refusal::Collision {
                namespace: namespace.clone(),
                mapped,
                why: "the backup holds too: a drill must never write into a namespace it backs up",
            });
        }
        if existing.contains(&mapped) {
            return Err(Refusal::Collision {
                namespace: namespace.clone(),
                mapped,
                why: "exists already in the cluster",
            });
        }
        mapping.insert(namespace.clone(), mapped);
    }
    expected.sort();
    Ok(Scope {
        mapping,
        expected,
        cluster_scoped,
    })
}

/// How a Velero Restore ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// `Completed` or `PartiallyFailed`: the items can be looked for.
    Ran { phase: String },
    /// `Failed` or `FailedValidation`, with Velero's reason.
    Failed { phase: String, reason: String },
    /// Still running at the drill's timeout.
    TimedOut { phase: String },
}

/// What Velero said of each item (its `restore-<name>-resource-list.json.gz`): by
/// `(gvk, target namespace, name)`, the action (`created`, `updated`, `skipped`,
/// `failed`).
pub type RestoredList = BTreeMap<(String, String, String), String>;

/// Reads Velero's restore resource list (`group/version/Kind` to
/// `namespace/name(action)` entries).
pub fn restored_list(list: &ItemList) -> RestoredList {
    let mut out = RestoredList::new();
    for (gvk, entries) in list {
        for entry in entries {
            let Some((item, action)) = entry
                .strip_suffix(')')
                .and_then(|rest| rest.rsplit_once('('))
            else {
                continue;
            };
            if let Some((namespace, name)) = item.split_once('/') {
                out.insert(
                    (gvk.clone(), namespace.to_string(), name.to_string()),
                    action.to_string(),
                );
            }
        }
    }
    out
}

/// Everything found after a drill's restore ended.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// Items present in the cluster, by `(gvk, target namespace, name)`.
    pub present: BTreeSet<(String, String, String)>,
    /// Kinds the API server does not serve (a CRD gone): their items cannot be there.
    pub unserved: BTreeSet<String>,
    /// Velero's own account of each item, when it could be read.
    pub restored: RestoredList,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// The verdict: a restore that failed or timed out is `unrestorable`; one that ran is
/// `restorable` when every expected item is in the cluster (or Velero skipped it by
/// design: a completed pod, a token Secret) and Velero reported no error, `incomplete`
/// otherwise, with the missing items named.
pub fn judge(
    scope: &Scope,
    ended: &Ended,
    findings: &Findings,
) -> (DrillVerdict, Vec<String>, Vec<String>) {
    let mut notes = Vec::new();
    if scope.cluster_scoped > 0 {
        notes.push(format!(
            "{} cluster-scoped item(s) left out: drills never restore cluster-scoped objects",
            scope.cluster_scoped
        ));
    }
    match ended {
        Ended::Failed { phase, reason } => {
            notes.push(format!("the Restore ended {phase}: {reason}"));
            return (DrillVerdict::Unrestorable, Vec::new(), notes);
        }
        Ended::TimedOut { phase } => {
            notes.push(format!(
                "the Restore was still {phase} at the drill's timeout"
            ));
            return (DrillVerdict::Unrestorable, Vec::new(), notes);
        }
        Ended::Ran { .. } => {}
    }
    let mut missing = Vec::new();
    for item in &scope.expected {
        let Some(target) = scope.mapping.get(&item.namespace) else {
            continue;
        };
        let key = (item.gvk.clone(), target.clone(), item.name.clone());
        if findings.present.contains(&key) {
            continue;
        }
        let said = findings.restored.get(&key).map(String::as_str);
        // Velero skips by design a finished Pod or Job and a ServiceAccount token
        // Secret (made anew for the restored account); it also says "skipped" for a kind
        // it cannot restore (a CRD gone), which is missing.
        if said == Some("skipped") && SKIPPED_BY_DESIGN.contains(&item.gvk.as_str()) {
            continue;
        }
        let why = if findings.unserved.contains(&item.gvk) {
            " (its kind is not served: a CustomResourceDefinition missing)"
        } else if said == Some("failed") {
            " (Velero failed to restore it)"
        } else {
            ""
        };
        missing.push(format!("{}{why}", item.shown()));
    }
    let verdict = if missing.is_empty() && findings.errors.is_empty() {
        DrillVerdict::Restorable
    } else {
        DrillVerdict::Incomplete
    };
    (verdict, missing, notes)
}

/// When the next drill of a copy is due: the first run of the drill's cron after the
/// last drill, or, with none on record, after `since` (when whoever schedules drills
/// started: a fixed point, so the answer does not move with the clock). `None` when the
/// cron never fires.
pub fn next_due(
    cron: &str,
    last: Option<DateTime<Utc>>,
    since: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    crate::velero::cron::next_run(cron, last.unwrap_or(since))
}

/// How old a copy's newest restorable backup is at `now`: the newest Completed backup
/// when the copy's last drill proved its path restorable (the same location, the same
/// kind of content), else none. A drill of an older backup vouches for the newer ones
/// until a drill says otherwise.
pub fn recovery_point_age(
    last_drill: Option<&DrillRecord>,
    newest_completed_started: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<chrono::Duration> {
    let drill = last_drill?;
    if drill.verdict != DrillVerdict::Restorable {
        return None;
    }
    let drilled = drill.backup_started.as_deref().and_then(parse_time);
    let point = match (newest_completed_started, drilled) {
        (Some(newest), Some(drilled)) => newest.max(drilled),
        (newest, drilled) => newest.or(drilled)?,
    };
    Some(now - point)
}

/// Why a copy's recoverability fails `status --check`, if it does: its last drill is
/// not restorable, is older than two drill periods, or its newest restorable backup is
/// older than the schedule's `rpo`.
pub fn recoverability_problem(
    drill_cron: Option<&str>,
    rpo: Option<chrono::Duration>,
    last: Option<&DrillRecord>,
    recovery_point_age: Option<chrono::Duration>,
    now: DateTime<Utc>,
) -> Option<String> {
    if let Some(cron) = drill_cron {
        match last {
            None => return Some("never drilled".to_string()),
            Some(drill) if drill.verdict != DrillVerdict::Restorable => {
                return Some(format!(
                    "the last drill ({}) was {}",
                    drill.at,
                    drill.verdict.as_str()
                ));
            }
            Some(drill) => {
                let period = crate::velero::cron::longest_gap(cron);
                if let (Some(at), Some(period)) = (drill.at_time(), period)
                    && now - at > period * 2
                {
                    return Some(format!(
                        "the last drill ({}) is older than two drill periods",
                        drill.at
                    ));
                }
            }
        }
    }
    if let Some(rpo) = rpo {
        match recovery_point_age {
            Some(age) if age > rpo => {
                return Some(format!(
                    "the newest restorable backup is {} old, beyond the rpo of {}",
                    crate::velero::duration::approximate(age),
                    crate::velero::duration::approximate(rpo)
                ));
            }
            None => return Some("no backup proven restorable (rpo)".to_string()),
            Some(_) => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(pairs: &[(&str, &[&str])]) -> ItemList {
        pairs
            .iter()
            .map(|(gvk, entries)| {
                (
                    gvk.to_string(),
                    entries.iter().map(|e| e.to_string()).collect(),
                )
            })
            .collect()
    }

    fn backup() -> ItemList {
        items(&[
            ("v1/ConfigMap", &["shop/settings", "shop/kube-root-ca.crt"]),
            ("v1/Namespace", &["shop"]),
            ("v1/Event", &["shop/settings.1"]),
            ("apps/v1/Deployment", &["shop/web"]),
            ("rbac.authorization.k8s.io/v1/ClusterRole", &["shop-reader"]),
        ])
    }

    #[test]
    fn a_scope_maps_every_namespace_and_leaves_out_what_velero_never_restores() {
        let scope = scope(&backup(), "drill-", &BTreeSet::new()).unwrap();
        assert_eq!(
            scope.mapping,
            BTreeMap::from([("shop".to_string(), "drill-shop".to_string())])
        );
        assert_eq!(scope.cluster_scoped, 1);
        let expected: Vec<String> = scope.expected.iter().map(Item::shown).collect();
        assert_eq!(
            expected,
            [
                "Deployment shop/web",
                "ConfigMap shop/kube-root-ca.crt",
                "ConfigMap shop/settings"
            ]
        );
    }

    #[test]
    fn a_scope_is_refused_before_anything_is_created() {
        let existing = BTreeSet::from(["drill-shop".to_string()]);
        assert!(matches!(
            scope(&backup(), "drill-", &existing),
            Err(Refusal::Collision { .. })
        ));
        assert_eq!(
            scope(&backup(), "", &BTreeSet::new()),
            Err(Refusal::NoPrefix)
        );
        let long = "n".repeat(60);
        let list = items(&[("v1/ConfigMap", &[format!("{long}/a").as_str()])]);
        assert!(matches!(
            scope(&list, "drill-", &BTreeSet::new()),
            Err(Refusal::TooLong { length: 66, .. })
        ));
        // A mapped name that is another namespace of the same backup.
        let list = items(&[("v1/ConfigMap", &["app/a", "drill-app/b"])]);
        assert!(matches!(
            scope(&list, "drill-", &BTreeSet::new()),
            Err(Refusal::Collision { .. })
        ));
    }

    #[test]
    fn the_verdict_follows_the_restore_and_the_items() {
        let scope = scope(&backup(), "drill-", &BTreeSet::new()).unwrap();
        let present: BTreeSet<(String, String, String)> = scope
            .expected
            .iter()
            .map(|i| (i.gvk.clone(), "drill-shop".to_string(), i.name.clone()))
            .collect();
        let ran = Ended::Ran {
            phase: "Completed".into(),
        };
        let all = Findings {
            present: present.clone(),
            ..Findings::default()
        };
        let (verdict, missing, notes) = judge(&scope, &ran, &all);
        assert_eq!(verdict, DrillVerdict::Restorable);
        assert!(missing.is_empty());
        assert!(notes[0].contains("cluster-scoped"), "{notes:?}");
        // One gone: incomplete, named; unless Velero skipped it by design.
        let mut some = present.clone();
        some.remove(&(
            "apps/v1/Deployment".to_string(),
            "drill-shop".to_string(),
            "web".to_string(),
        ));
        let (verdict, missing, _) = judge(
            &scope,
            &ran,
            &Findings {
                present: some.clone(),
                ..Findings::default()
            },
        );
        assert_eq!(verdict, DrillVerdict::Incomplete);
        assert_eq!(missing, ["Deployment shop/web"]);
        let skipped = Findings {
            present: some,
            restored: RestoredList::from([(
                (
                    "apps/v1/Deployment".to_string(),
                    "drill-shop".to_string(),
                    "web".to_string(),
                ),
                "skipped".to_string(),
            )]),
            ..Findings::default()
        };
        // Velero says it skipped a Deployment: not by design (a kind it could not
        // restore), so it is missing.
        assert_eq!(judge(&scope, &ran, &skipped).0, DrillVerdict::Incomplete);
        // A finished Pod it skips on purpose.
        let mut list = backup();
        list.insert("v1/Pod".to_string(), vec!["shop/job-x".to_string()]);
        let with_pod = super::scope(&list, "drill-", &BTreeSet::new()).unwrap();
        let pod = (
            "v1/Pod".to_string(),
            "drill-shop".to_string(),
            "job-x".to_string(),
        );
        let pod_skipped = Findings {
            present: present.clone(),
            restored: RestoredList::from([(pod, "skipped".to_string())]),
            ..Findings::default()
        };
        assert_eq!(
            judge(&with_pod, &ran, &pod_skipped).0,
            DrillVerdict::Restorable
        );
        // Failed or late: unrestorable.
        let failed = Ended::Failed {
            phase: "Failed".into(),
            reason: "error downloading backup".into(),
        };
        let (verdict, _, notes) = judge(&scope, &failed, &all);
        assert_eq!(verdict, DrillVerdict::Unrestorable);
        assert!(notes.iter().any(|n| n.contains("error downloading backup")));
        assert_eq!(
            judge(
                &scope,
                &Ended::TimedOut {
                    phase: "InProgress".into()
                },
                &all
            )
            .0,
            DrillVerdict::Unrestorable
        );
    }

    #[test]
    fn velero_s_restore_list_is_read_with_its_actions() {
        let list = items(&[(
            "v1/ConfigMap",
            &["drill-shop/settings(created)", "drill-shop/x(skipped)"],
        )]);
        let read = restored_list(&list);
        assert_eq!(
            read.get(&(
                "v1/ConfigMap".to_string(),
                "drill-shop".to_string(),
                "x".to_string()
            )),
            Some(&"skipped".to_string())
        );
    }

    #[test]
    fn recoverability_fails_on_a_bad_drill_an_old_drill_or_a_breached_rpo() {
        let now = parse_time("2026-12-04T12:00:00Z").unwrap();
        let drill = |verdict, at: &str| DrillRecord {
            verdict,
            at: at.to_string(),
            restore_seconds: Some(12.0),
            backup: Some("nightly-1".into()),
            backup_started: Some("2026-12-04T01:00:00Z".into()),
            restore: None,
            missing_items: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            notes: Vec::new(),
            kept_until: None,
        };
        let good = drill(DrillVerdict::Restorable, "2026-12-04T06:00:00Z");
        let newest = parse_time("2026-12-04T01:00:00Z");
        let age = recovery_point_age(Some(&good), newest, now);
        assert_eq!(age, Some(chrono::Duration::hours(11)));
        let daily_drill = Some("0 6 * * *");
        assert_eq!(
            recoverability_problem(
                daily_drill,
                Some(chrono::Duration::hours(26)),
                Some(&good),
                age,
                now
            ),
            None
        );
        assert!(
            recoverability_problem(
                daily_drill,
                Some(chrono::Duration::hours(6)),
                Some(&good),
                age,
                now
            )
            .unwrap()
            .contains("rpo")
        );
        let bad = drill(DrillVerdict::Unrestorable, "2026-12-04T06:00:00Z");
        assert!(
            recoverability_problem(daily_drill, None, Some(&bad), None, now)
                .unwrap()
                .contains("unrestorable")
        );
        let old = drill(DrillVerdict::Restorable, "2026-12-01T06:00:00Z");
        assert!(
            recoverability_problem(daily_drill, None, Some(&old), age, now)
                .unwrap()
                .contains("two drill periods")
        );
        assert!(
            recoverability_problem(daily_drill, None, None, None, now)
                .unwrap()
                .contains("never")
        );
    }
}
