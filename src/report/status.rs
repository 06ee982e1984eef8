//! `stowage status`: Velero's own view of its locations and schedules, as tables.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::copies::CopyStatus;
use crate::observe::{Observed, ObservedObject};
use crate::velero::Kind;

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

/// "3m ago"-style ages, as kubectl prints them.
fn ago(time: &str, now: DateTime<Utc>) -> String {
    let Ok(then) = DateTime::parse_from_rfc3339(time) else {
        return "-".to_string();
    };
    let seconds = (now - then.with_timezone(&Utc)).num_seconds();
    let span = |s: i64| match s {
        s if s < 120 => format!("{s}s"),
        s if s < 7_200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3_600),
        s => format!("{}d", s / 86_400),
    };
    if seconds >= 0 {
        format!("{} ago", span(seconds))
    } else {
        format!("in {}", span(-seconds))
    }
}

/// Columns padded to their widest cell, three spaces apart, as kubectl prints them.
pub fn table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("   ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn of_kind(observed: &Observed, kind: Kind) -> Vec<&ObservedObject> {
    observed
        .objects
        .values()
        .filter(|o| o.object.kind == kind)
        .collect()
}

/// The Velero server's line: its version, where that was read, and its backup queue.
pub fn write_velero(
    velero: Option<&crate::engine::VeleroServer>,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let Some(velero) = velero else {
        return Ok(());
    };
    let version = match &velero.version {
        Some((version, from)) => format!("Velero {version} ({from})"),
        None => {
            "Velero (version unknown: the image has no version tag and the server reported none)"
                .to_string()
        }
    };
    match velero.concurrent_backups {
        Some(n) => writeln!(
            out,
            "{version}, {n} backup{} at a time (--concurrent-backups)\n",
            if n == 1 { "" } else { "s" }
        ),
        None => writeln!(out, "{version}, one backup at a time\n"),
    }
}

pub fn write_text(
    observed: &Observed,
    now: DateTime<Utc>,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let locations = of_kind(observed, Kind::BackupStorageLocation);
    writeln!(out, "Backup storage locations")?;
    let rows: Vec<Vec<String>> = locations
        .iter()
        .map(|bsl| {
            let spec = bsl.location_spec();
            let status = &bsl.manifest["status"];
            let place = spec.as_ref().map_or_else(String::new, |spec| {
                let storage = &spec.object_storage;
                match storage.prefix.as_deref().unwrap_or_default() {
                    "" => storage.bucket.clone(),
                    prefix => format!("{}/{prefix}", storage.bucket),
                }
            });
            vec![
                bsl.object.name.clone(),
                spec.as_ref()
                    .map(|spec| spec.provider.clone())
                    .unwrap_or_default(),
                place,
                match text(&status["phase"]) {
                    "" => "(not validated yet)".to_string(),
                    phase => phase.to_string(),
                },
                status["lastValidationTime"]
                    .as_str()
                    .map(|t| ago(t, now))
                    .unwrap_or_else(|| "-".into()),
                if spec.as_ref().is_some_and(|spec| spec.default) {
                    "yes".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    table(
        out,
        &[
            "NAME",
            "PROVIDER",
            "BUCKET/PREFIX",
            "PHASE",
            "LAST VALIDATED",
            "DEFAULT",
        ],
        &rows,
    )?;
    for bsl in &locations {
        if let Some(message) = bsl.manifest["status"]["message"]
            .as_str()
            .filter(|m| !m.is_empty())
        {
            writeln!(out, "  {}: {message}", bsl.object.name)?;
        }
    }

    writeln!(out, "\nVolume snapshot locations")?;
    let rows: Vec<Vec<String>> = of_kind(observed, Kind::VolumeSnapshotLocation)
        .iter()
        .map(|vsl| {
            let spec = vsl.spec();
            vec![
                vsl.object.name.clone(),
                text(&spec["provider"]).to_string(),
                text(&spec["config"]["region"]).to_string(),
            ]
        })
        .collect();
    table(out, &["NAME", "PROVIDER", "REGION"], &rows)?;

    writeln!(out, "\nSchedules")?;
    let rows: Vec<Vec<String>> = of_kind(observed, Kind::Schedule)
        .iter()
        .map(|schedule| {
            let spec = schedule.spec();
            let status = &schedule.manifest["status"];
            let cron = text(&spec["schedule"]);
            let last = status["lastBackup"].as_str();
            let next = if spec["paused"] == true {
                "paused".to_string()
            } else {
                let from = last
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc))
                    .filter(|_| cron.starts_with("@every"))
                    .unwrap_or(now);
                crate::velero::cron::next_run(cron, from)
                    .map(|t| {
                        format!(
                            "{} ({})",
                            t.format("%Y-%m-%d %H:%M UTC"),
                            ago(&t.to_rfc3339(), now)
                        )
                    })
                    .unwrap_or_else(|| "-".into())
            };
            vec![
                schedule.object.name.clone(),
                cron.to_string(),
                match text(&spec["template"]["storageLocation"]) {
                    "" => "(default)".to_string(),
                    location => location.to_string(),
                },
                text(&status["phase"]).to_string(),
                last.map(|t| ago(t, now)).unwrap_or_else(|| "never".into()),
                next,
            ]
        })
        .collect();
    table(
        out,
        &[
            "NAME",
            "SCHEDULE",
            "LOCATION",
            "PHASE",
            "LAST BACKUP",
            "NEXT RUN",
        ],
        &rows,
    )
}

/// Each declared schedule with its copies side by side: verdict, last backup and last
/// success, and why when a copy is not `ok`.
pub fn write_copies(
    copies: &[CopyStatus],
    buckets_checked: bool,
    now: DateTime<Utc>,
    out: &mut impl Write,
) -> std::io::Result<()> {
    writeln!(out, "\nCopies")?;
    let rows: Vec<Vec<String>> = copies
        .iter()
        .map(|copy| {
            vec![
                copy.schedule.clone(),
                copy.location
                    .clone()
                    .unwrap_or_else(|| "(default)".to_string()),
                copy.verdict.as_str().to_string(),
                copy.last_backup
                    .as_ref()
                    .map(|b| {
                        format!(
                            "{} {}",
                            b.phase,
                            b.started
                                .as_deref()
                                .map(|t| ago(t, now))
                                .unwrap_or_default()
                        )
                    })
                    .unwrap_or_else(|| "-".to_string()),
                copy.last_success
                    .as_ref()
                    .and_then(|b| b.completed.as_deref().or(b.started.as_deref()))
                    .map(|t| ago(t, now))
                    .unwrap_or_else(|| "never".to_string()),
            ]
        })
        .collect();
    table(
        out,
        &[
            "SCHEDULE",
            "LOCATION",
            "VERDICT",
            "LAST BACKUP",
            "LAST SUCCESS",
        ],
        &rows,
    )?;
    if copies
        .iter()
        .any(|c| c.drill.is_some() || c.recoverability.is_some())
    {
        writeln!(out, "\nRecoverability")?;
        let rows: Vec<Vec<String>> = copies
            .iter()
            .map(|copy| {
                let drill = copy.drill.as_ref();
                vec![
                    copy.schedule.clone(),
                    copy.location
                        .clone()
                        .unwrap_or_else(|| "(default)".to_string()),
                    drill.map_or("untested", |d| d.verdict.as_str()).to_string(),
                    drill
                        .map(|d| ago(&d.at, now))
                        .unwrap_or_else(|| "never".to_string()),
                    drill
                        .and_then(|d| d.restore_seconds)
                        .map(|s| format!("{s:.1}s"))
                        .unwrap_or_else(|| "-".to_string()),
                    copy.recovery_point_age
                        .map(crate::velero::duration::approximate)
                        .unwrap_or_else(|| "-".to_string()),
                ]
            })
            .collect();
        table(
            out,
            &[
                "SCHEDULE",
                "LOCATION",
                "LAST DRILL",
                "DRILLED",
                "RESTORE TIME",
                "RECOVERY POINT AGE",
            ],
            &rows,
        )?;
    }
    for copy in copies {
        let location = copy.location.as_deref().unwrap_or("(default)");
        if let Some(reason) = &copy.reason {
            writeln!(out, "  {} → {location}: {reason}", copy.schedule)?;
        }
        if let Some(problem) = &copy.recoverability {
            writeln!(out, "  {} → {location}: {problem}", copy.schedule)?;
        }
        if let Some(drill) = &copy.drill {
            for missing in &drill.missing_items {
                writeln!(
                    out,
                    "  {} → {location}: missing after the drill: {missing}",
                    copy.schedule
                )?;
            }
        }
        if let Some(why) = &copy.bucket_check {
            writeln!(
                out,
                "  {} → {location}: the bucket could not be read to find its last backup: {why}",
                copy.schedule
            )?;
        }
    }
    if !buckets_checked {
        writeln!(
            out,
            "(--no-bucket-checks: Completed backups were not looked for in the buckets)"
        )?;
    }
    Ok(())
}

/// `status --format json` (product.md §5).
#[derive(Debug, serde::Serialize)]
pub struct WireCopies<'a> {
    pub format_version: u32,
    pub buckets_checked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub velero: Option<WireVelero>,
    pub copies: Vec<WireCopy<'a>>,
}

/// The Velero server: version (`null` when unknown), where it was read, backups at a
/// time (`null` before 1.18).
#[derive(Debug, serde::Serialize)]
pub struct WireVelero {
    pub version: Option<String>,
    pub version_from: Option<String>,
    pub concurrent_backups: Option<u32>,
}

impl WireVelero {
    pub fn of(velero: &crate::engine::VeleroServer) -> WireVelero {
        WireVelero {
            version: velero.version.as_ref().map(|(v, _)| v.to_string()),
            version_from: velero.version.as_ref().map(|(_, from)| from.clone()),
            concurrent_backups: velero.concurrent_backups,
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct WireCopy<'a> {
    pub schedule: &'a str,
    pub location: Option<&'a str>,
    pub velero_schedule: &'a str,
    pub verdict: &'static str,
    pub reason: Option<&'a str>,
    pub last_backup: Option<&'a str>,
    pub last_backup_phase: Option<&'a str>,
    pub last_success: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_check: Option<&'a str>,
    /// The copy's last drill, for schedules that drill.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill: Option<WireDrill<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_point_age_seconds: Option<i64>,
    /// Why the copy's recoverability fails `status --check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recoverability: Option<&'a str>,
}

pub fn wire_copies<'a>(
    copies: &'a [CopyStatus],
    buckets_checked: bool,
    velero: Option<&crate::engine::VeleroServer>,
) -> WireCopies<'a> {
    WireCopies {
        format_version: super::FORMAT_VERSION,
        buckets_checked,
        velero: velero.map(WireVelero::of),
        copies: copies
            .iter()
            .map(|copy| WireCopy {
                schedule: &copy.schedule,
                location: copy.location.as_deref(),
                velero_schedule: &copy.velero_schedule,
                verdict: copy.verdict.as_str(),
                reason: copy.reason.as_deref(),
                last_backup: copy.last_backup.as_ref().map(|b| b.name.as_str()),
                last_backup_phase: copy.last_backup.as_ref().map(|b| b.phase.as_str()),
                last_success: copy
                    .last_success
                    .as_ref()
                    .and_then(|b| b.completed.as_deref().or(b.started.as_deref())),
                bucket_check: copy.bucket_check.as_deref(),
                drill: copy.drill.as_ref().map(WireDrill::of),
                recovery_point_age_seconds: copy.recovery_point_age.map(|age| age.num_seconds()),
                recoverability: copy.recoverability.as_deref(),
            })
            .collect(),
    }
}

/// A copy's last drill on the wire (product contract §6).
#[derive(Debug, serde::Serialize)]
pub struct WireDrill<'a> {
    pub verdict: &'static str,
    pub at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<&'a str>,
    pub missing_items: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub errors: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub notes: &'a [String],
}

impl<'a> WireDrill<'a> {
    pub fn of(drill: &'a crate::drills::DrillRecord) -> WireDrill<'a> {
        WireDrill {
            verdict: drill.verdict.as_str(),
            at: &drill.at,
            restore_seconds: drill.restore_seconds,
            backup: drill.backup.as_deref(),
            missing_items: &drill.missing_items,
            errors: &drill.errors,
            notes: &drill.notes,
        }
    }
}
