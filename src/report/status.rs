//! `stowage status`: Velero's own view of its locations and schedules, as tables.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde_json::Value;

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

fn table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
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
            let spec = bsl.spec();
            let status = &bsl.manifest["status"];
            let place = match text(&spec["objectStorage"]["prefix"]) {
                "" => text(&spec["objectStorage"]["bucket"]).to_string(),
                prefix => format!("{}/{prefix}", text(&spec["objectStorage"]["bucket"])),
            };
            vec![
                bsl.object.name.clone(),
                text(&spec["provider"]).to_string(),
                place,
                match text(&status["phase"]) {
                    "" => "(not validated yet)".to_string(),
                    phase => phase.to_string(),
                },
                status["lastValidationTime"]
                    .as_str()
                    .map(|t| ago(t, now))
                    .unwrap_or_else(|| "-".into()),
                if spec["default"] == true {
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
