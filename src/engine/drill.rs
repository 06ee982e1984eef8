//! Restore drills of copies (product contract §6): for one copy of a declared schedule,
//! the newest Completed backup is restored through a Velero Restore into new,
//! labelled namespaces, the restored objects are compared with the backup's own item
//! list, the verdict is recorded in the cluster, and the drill's namespaces and Restore
//! are removed (a failed drill's after `keep_failed`). The rules are `drills`'; this
//! module reads and writes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{EngineError, StateSource, ValidFile};
use crate::buckets;
use crate::cluster::drill as io;
use crate::cluster::lease::Fence;
use crate::cluster::{Cluster, ClusterError};
use crate::config::model::Drill;
use crate::drills::{self, DrillRecord, DrillVerdict, Ended, Findings, ItemList};
use crate::velero::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, OWNER_LABEL};

/// The label a drill's Restore and namespaces carry, naming the copy (its Velero
/// Schedule).
pub const DRILL_LABEL: &str = "stowage.io/drill";

/// One copy of a declared schedule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Copy {
    pub schedule: String,
    pub location: Option<String>,
    /// Its Velero Schedule: the key its drills are recorded under.
    pub velero_schedule: String,
}

/// Every copy of every schedule with a `drill` table, in the file's order.
pub fn drilled_copies(file: &ValidFile) -> Vec<(Copy, &Drill)> {
    let mut copies = Vec::new();
    for (name, schedule) in &file.config.schedules {
        let Some(drill) = &schedule.drill else {
            continue;
        };
        for instance in schedule.instances(name) {
            copies.push((
                Copy {
                    schedule: name.clone(),
                    location: instance.storage_location.map(str::to_string),
                    velero_schedule: instance.object_name,
                },
                drill,
            ));
        }
    }
    copies
}

/// The name of the ConfigMap holding each copy's last drill.
pub fn records_name(file: &ValidFile) -> String {
    format!("stowage-drills-{}", file.config.velero.owner)
}

fn labels(file: &ValidFile) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
        (OWNER_LABEL.to_string(), file.config.velero.owner.clone()),
    ])
}

/// Each copy's last drill, by Velero Schedule, as recorded in the cluster.
pub async fn records(
    cluster: &Cluster,
    file: &ValidFile,
) -> Result<BTreeMap<String, DrillRecord>, ClusterError> {
    let data =
        io::config_map_data(cluster, &file.config.velero.namespace, &records_name(file)).await?;
    Ok(data
        .into_iter()
        .filter_map(|(key, value)| Some((key, serde_json::from_str(&value).ok()?)))
        .collect())
}

async fn record(
    cluster: &Cluster,
    file: &ValidFile,
    copy: &Copy,
    drilled: &DrillRecord,
    fence: Option<&Fence>,
) -> Result<(), ClusterError> {
    let value = serde_json::to_string(drilled).unwrap_or_default();
    io::set_config_map_key(
        cluster,
        &file.config.velero.namespace,
        &records_name(file),
        &labels(file),
        &copy.velero_schedule,
        &value,
        fence,
    )
    .await
}

/// How a drill is going, for a terminal.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    ReadingBackup {
        backup: String,
    },
    Restoring {
        restore: String,
        phase: String,
        elapsed: Duration,
    },
    Comparing,
    CleaningUp,
}

/// How to drill.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// How long reads of the bucket may take.
    pub bucket_timeout: Duration,
    /// With leader election: every write passes it.
    pub fence: Option<Fence>,
    /// How often the Restore is looked at.
    pub poll: Duration,
}

impl Default for DrillOptions {
    fn default() -> DrillOptions {
        DrillOptions {
            bucket_timeout: Duration::from_secs(20),
            fence: None,
            poll: Duration::from_millis(250),
        }
    }
}

/// What a drill did.
#[derive(Debug, Clone)]
pub struct Drilled {
    pub copy: Copy,
    pub record: DrillRecord,
    /// The drill was refused before anything was created (`stowage::drill-scope`).
    pub refused: Option<String>,
}

/// Drills one copy now, records the verdict, and cleans up.
pub async fn drill(
    cluster: &Cluster,
    file: &ValidFile,
    copy: &Copy,
    drill: &Drill,
    options: &DrillOptions,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Drilled, EngineError> {
    let fence = options.fence.as_ref();
    let namespace = file.config.velero.namespace.clone();
    let desired = file.desired(false);
    let (observed, _) = super::observe(file, &desired, StateSource::Cluster(cluster)).await?;
    let done = |record: DrillRecord, refused: Option<String>| Drilled {
        copy: copy.clone(),
        record,
        refused,
    };
    // The newest Completed backup of this copy.
    let newest = observed
        .backups
        .iter()
        .filter(|b| {
            b.namespace == namespace && b.schedule.as_deref() == Some(copy.velero_schedule.as_str())
        })
        .filter(|b| b.phase.as_deref() == Some("Completed"))
        .max_by_key(|b| {
            (
                b.created.clone().or_else(|| b.started.clone()),
                b.name.clone(),
            )
        });
    let Some(backup) = newest else {
        let untested = DrillRecord::untested(Utc::now(), "no Completed backup of this copy yet");
        record(cluster, file, copy, &untested, fence).await?;
        return Ok(done(untested, None));
    };
    progress(Progress::ReadingBackup {
        backup: backup.name.clone(),
    });
    let location = copy
        .location
        .clone()
        .or_else(|| backup.storage_location.clone())
        .unwrap_or_default();
    let target = buckets::desired_targets(&file.config, &file.materials, &desired, &observed)
        .into_iter()
        .find(|t| t.location == location);
    let item_list = match &target {
        Some(target) => buckets::read_velero_file(
            target,
            &format!("backups/{0}/{0}-resource-list.json.gz", backup.name),
            options.bucket_timeout,
        )
        .await
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            serde_json::from_slice::<ItemList>(&bytes)
                .map_err(|e| format!("the backup's item list is not Velero's JSON: {e}"))
        }),
        None => Err(format!("location {location} is not declared in the file")),
    };
    let items = match item_list {
        Ok(items) => items,
        Err(why) => {
            let untested = DrillRecord {
                backup: Some(backup.name.clone()),
                backup_started: backup.started.clone(),
                ..DrillRecord::untested(
                    Utc::now(),
                    format!("cannot read the backup's item list: {why}"),
                )
            };
            record(cluster, file, copy, &untested, fence).await?;
            return Ok(done(untested, None));
        }
    };
    let existing = io::namespaces(cluster).await?;
    let scope = match drills::scope(&items, drill.namespace_prefix(), &existing) {
        Ok(scope) => scope,
        Err(refusal) => {
            let refused = DrillRecord {
                backup: Some(backup.name.clone()),
                backup_started: backup.started.clone(),
                ..DrillRecord::untested(Utc::now(), format!("refused: {refusal}"))
            };
            record(cluster, file, copy, &refused, fence).await?;
            return Ok(done(refused, Some(refusal.to_string())));
        }
    };
    // Kinds this cluster no longer serves (a CRD gone) are left out of the Restore —
    // Velero would wait for them forever — and their items count as missing.
    let kinds: BTreeSet<String> = scope.expected.iter().map(|item| item.gvk.clone()).collect();
    let (served, unserved) = io::resolve_kinds(cluster, &kinds).await;
    let mut included: Vec<String> = served
        .values()
        .map(|resource| {
            if resource.group.is_empty() {
                resource.plural.clone()
            } else {
                format!("{}.{}", resource.plural, resource.group)
            }
        })
        .collect();
    included.sort();
    included.dedup();
    if included.is_empty() {
        // Nothing this cluster can restore: every item is missing, nothing is created.
        let findings = Findings {
            unserved,
            ..Findings::default()
        };
        let ended = Ended::Ran {
            phase: "not run".to_string(),
        };
        let (verdict, missing_items, notes) = drills::judge(&scope, &ended, &findings);
        let drilled = DrillRecord {
            verdict,
            missing_items,
            notes,
            backup: Some(backup.name.clone()),
            backup_started: backup.started.clone(),
            ..DrillRecord::untested(Utc::now(), "")
        };
        record(cluster, file, copy, &drilled, fence).await?;
        return Ok(done(drilled, None));
    }
    // The Restore and its namespaces, labelled as stowage's, this owner's, this copy's.
    let restore_name = restore_name(&copy.velero_schedule, Utc::now());
    let mut marks = labels(file);
    marks.insert(DRILL_LABEL.to_string(), copy.velero_schedule.clone());
    // Each namespace the drill makes, and leave to list what comes back there: a
    // client that may list everywhere need not be trusted with it (rbac.yaml).
    let user = io::user_name(cluster).await?;
    for mapped in scope.mapping.values() {
        io::create_namespace(cluster, mapped, &marks, fence).await?;
        io::grant_listing(cluster, mapped, &user, &marks, fence).await?;
    }
    let manifest = json!({
        "apiVersion": "velero.io/v1", "kind": "Restore",
        "metadata": {"name": restore_name, "namespace": namespace, "labels": marks},
        "spec": {
            "backupName": backup.name,
            "includedNamespaces": scope.mapping.keys().collect::<Vec<_>>(),
            "namespaceMapping": scope.mapping,
            "includedResources": included,
            "includeClusterResources": false,
            "restorePVs": drill.volumes,
        },
    });
    let started = Instant::now();
    io::create_restore(cluster, &namespace, &manifest, fence).await?;
    let timeout = drill.timeout();
    let (ended, _status) = loop {
        let status = io::restore(cluster, &namespace, &restore_name)
            .await?
            .map(|r| r["status"].clone())
            .unwrap_or(Value::Null);
        let phase = status["phase"].as_str().unwrap_or("New").to_string();
        match phase.as_str() {
            "Completed" | "PartiallyFailed" => break (Ended::Ran { phase }, status),
            "Failed" | "FailedValidation" => {
                let reason = status["failureReason"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| {
                        status["validationErrors"].as_array().map(|errors| {
                            errors
                                .iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join("; ")
                        })
                    })
                    .unwrap_or_else(|| "Velero gave no reason".to_string());
                break (Ended::Failed { phase, reason }, status);
            }
            _ if started.elapsed() >= timeout => break (Ended::TimedOut { phase }, status),
            _ => {}
        }
        progress(Progress::Restoring {
            restore: restore_name.clone(),
            phase,
            elapsed: started.elapsed(),
        });
        tokio::time::sleep(options.poll).await;
    };
    // The recovery time as an operator meets it: from asking for the restore to seeing
    // it done (Velero's own timestamps have whole seconds only).
    let restore_seconds = Some(started.elapsed().as_secs_f64());
    progress(Progress::Comparing);
    let mut findings = Findings::default();
    if let Some(target) = &target {
        if let Ok(bytes) = buckets::read_velero_file(
            target,
            &format!(
                "restores/{0}/restore-{0}-resource-list.json.gz",
                restore_name
            ),
            options.bucket_timeout,
        )
        .await
            && let Ok(list) = serde_json::from_slice::<ItemList>(&bytes)
        {
            findings.restored = drills::restored_list(&list);
        }
        if let Ok(bytes) = buckets::read_velero_file(
            target,
            &format!("restores/{0}/restore-{0}-results.gz", restore_name),
            options.bucket_timeout,
        )
        .await
            && let Ok(results) = serde_json::from_slice::<Value>(&bytes)
        {
            findings.errors = result_lines(&results["errors"]);
            findings.warnings = result_lines(&results["warnings"]);
        }
    }
    if matches!(ended, Ended::Ran { .. }) {
        let places: BTreeSet<(String, String)> = scope
            .expected
            .iter()
            .filter_map(|item| {
                Some((
                    item.gvk.clone(),
                    scope.mapping.get(&item.namespace)?.clone(),
                ))
            })
            .collect();
        findings.present = io::present(cluster, &places, &served).await?;
    }
    findings.unserved = unserved;
    let (verdict, missing_items, notes) = drills::judge(&scope, &ended, &findings);
    let now = Utc::now();
    let kept_until = (verdict != DrillVerdict::Restorable).then(|| {
        drills::rfc3339(now + chrono::Duration::from_std(drill.keep_failed()).unwrap_or_default())
    });
    let drilled = DrillRecord {
        verdict,
        at: drills::rfc3339(now),
        restore_seconds,
        backup: Some(backup.name.clone()),
        backup_started: backup.started.clone(),
        restore: Some(restore_name.clone()),
        missing_items,
        errors: findings.errors,
        warnings: findings.warnings,
        notes,
        kept_until,
    };
    record(cluster, file, copy, &drilled, fence).await?;
    if verdict == DrillVerdict::Restorable {
        progress(Progress::CleaningUp);
        clean_up(
            cluster,
            &namespace,
            &restore_name,
            scope.mapping.values(),
            fence,
        )
        .await?;
    }
    Ok(done(drilled, None))
}

/// Velero's results (`{"velero": [...], "cluster": [...], "namespaces": {ns: [...]}}`)
/// as lines.
fn result_lines(results: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    for scope in ["velero", "cluster"] {
        for line in results[scope].as_array().into_iter().flatten() {
            if let Some(text) = line.as_str() {
                lines.push(format!("{scope}: {text}"));
            }
        }
    }
    if let Some(namespaces) = results["namespaces"].as_object() {
        for (namespace, entries) in namespaces {
            for line in entries.as_array().into_iter().flatten() {
                if let Some(text) = line.as_str() {
                    lines.push(format!("{namespace}: {text}"));
                }
            }
        }
    }
    lines
}

/// `drill-<velero schedule>-<time>`, at most 63 characters.
fn restore_name(velero_schedule: &str, now: DateTime<Utc>) -> String {
    let stamp = now.format("%Y%m%d%H%M%S").to_string();
    let room = 63 - "drill-".len() - 1 - stamp.len();
    let schedule: String = velero_schedule.chars().take(room).collect();
    format!("drill-{}-{stamp}", schedule.trim_end_matches('-'))
}

/// Deletes a drill's namespaces (waiting, at most two minutes, until they are gone)
/// and its Restore.
async fn clean_up(
    cluster: &Cluster,
    namespace: &str,
    restore: &str,
    namespaces: impl Iterator<Item = &String>,
    fence: Option<&Fence>,
) -> Result<(), ClusterError> {
    let namespaces: Vec<String> = namespaces.cloned().collect();
    for mapped in &namespaces {
        io::delete_namespace(cluster, mapped, fence).await?;
    }
    io::delete_restore(cluster, namespace, restore, fence).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    for mapped in &namespaces {
        while !io::namespace_gone(cluster, mapped).await? && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

/// Removes what failed drills of this file's owner kept past their `keep_failed`, and
/// anything a drill left behind without a record (a drill interrupted): namespaces
/// and Restores labelled as drills of this owner. Nothing else is touched.
pub async fn clean_up_expired(
    cluster: &Cluster,
    file: &ValidFile,
    now: DateTime<Utc>,
    fence: Option<&Fence>,
) -> Result<usize, ClusterError> {
    let namespace = &file.config.velero.namespace;
    let selector = format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{OWNER_LABEL}={},{DRILL_LABEL}",
        file.config.velero.owner
    );
    let kept: BTreeMap<String, DrillRecord> = records(cluster, file).await?;
    // A drill's leftovers stay while its record says keep them.
    let keep = |copy: &str, restore: Option<&str>| {
        kept.get(copy).is_some_and(|record| {
            record.restore.as_deref() == restore
                && record
                    .kept_until
                    .as_deref()
                    .and_then(drills::parse_time)
                    .is_some_and(|until| until > now)
        })
    };
    let mut removed = 0;
    for restore in io::restores(cluster, namespace, &selector).await? {
        let name = restore["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let copy = restore["metadata"]["labels"][DRILL_LABEL]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let running = matches!(
            restore["status"]["phase"].as_str(),
            Some("New" | "InProgress") | None
        );
        let recent = restore["metadata"]["creationTimestamp"]
            .as_str()
            .and_then(drills::parse_time)
            .is_some_and(|created| now - created < chrono::Duration::hours(6));
        if keep(&copy, Some(&name)) || (running && recent) {
            continue;
        }
        let mapped: Vec<String> = restore["spec"]["namespaceMapping"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        for target in &mapped {
            io::delete_namespace(cluster, target, fence).await?;
        }
        io::delete_restore(cluster, namespace, &name, fence).await?;
        removed += 1;
    }
    Ok(removed)
}

/// A `--copy` that names nothing the file declares.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("the file declares no schedule {0}")]
    NoSchedule(String),
    #[error("schedule {schedule} has no copy in location {location}")]
    NoCopy { schedule: String, location: String },
}

/// The copies `selector` names — `SCHEDULE/LOCATION`, or `SCHEDULE` for all its copies
/// — or, without one, every copy of every schedule with a `drill` table. A schedule
/// named that has no `drill` table is drilled with the defaults.
pub fn select(file: &ValidFile, selector: Option<&str>) -> Result<Vec<(Copy, Drill)>, SelectError> {
    let Some(selector) = selector else {
        return Ok(drilled_copies(file)
            .into_iter()
            .map(|(copy, drill)| (copy, drill.clone()))
            .collect());
    };
    let (schedule_name, location) = match selector.split_once('/') {
        Some((schedule, location)) => (schedule, Some(location)),
        None => (selector, None),
    };
    let Some(schedule) = file.config.schedules.get(schedule_name) else {
        return Err(SelectError::NoSchedule(schedule_name.to_string()));
    };
    let drill = schedule.drill.clone().unwrap_or(Drill {
        cron: "@weekly".to_string(),
        timeout: None,
        namespace_prefix: None,
        volumes: false,
        keep_failed: None,
    });
    let copies: Vec<(Copy, Drill)> = schedule
        .instances(schedule_name)
        .into_iter()
        .filter(|instance| location.is_none() || instance.storage_location == location)
        .map(|instance| {
            (
                Copy {
                    schedule: schedule_name.to_string(),
                    location: instance.storage_location.map(str::to_string),
                    velero_schedule: instance.object_name,
                },
                drill.clone(),
            )
        })
        .collect();
    if copies.is_empty() {
        return Err(SelectError::NoCopy {
            schedule: schedule_name.to_string(),
            location: location.unwrap_or_default().to_string(),
        });
    }
    Ok(copies)
}

/// Drills the copies `selector` names, one at a time, after removing what expired
/// drills left; each copy's outcome in order.
pub async fn drill_all(
    cluster: &Cluster,
    file: &ValidFile,
    copies: &[(Copy, Drill)],
    options: &DrillOptions,
    progress: &mut (dyn FnMut(&Copy, Progress) + Send),
) -> Result<Vec<Drilled>, EngineError> {
    clean_up_expired(cluster, file, Utc::now(), options.fence.as_ref()).await?;
    let mut drilled = Vec::new();
    for (copy, settings) in copies {
        let mut report = |step: Progress| progress(copy, step);
        drilled.push(drill(cluster, file, copy, settings, options, &mut report).await?);
    }
    Ok(drilled)
}
