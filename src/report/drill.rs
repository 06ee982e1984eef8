//! `stowage drill`: each drilled copy's verdict, as text or JSON (product contract §6).

use std::io::Write;

use serde::Serialize;

use super::status::WireDrill;
use crate::engine::drill::Drilled;

/// One line per copy, then what each failed drill found.
pub fn write_text(drilled: &[Drilled], out: &mut impl Write) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = drilled
        .iter()
        .map(|d| {
            vec![
                d.copy.schedule.clone(),
                d.copy
                    .location
                    .clone()
                    .unwrap_or_else(|| "(default)".to_string()),
                d.record.verdict.as_str().to_string(),
                d.record
                    .restore_seconds
                    .map(|s| format!("{s:.1}s"))
                    .unwrap_or_else(|| "-".to_string()),
                d.record.backup.clone().unwrap_or_else(|| "-".to_string()),
            ]
        })
        .collect();
    super::status::table(
        out,
        &["SCHEDULE", "LOCATION", "VERDICT", "RESTORE TIME", "BACKUP"],
        &rows,
    )?;
    for d in drilled {
        let copy = format!(
            "{} → {}",
            d.copy.schedule,
            d.copy.location.as_deref().unwrap_or("(default)")
        );
        if let Some(refused) = &d.refused {
            writeln!(out, "  {copy}: stowage::drill-scope: {refused}")?;
        }
        for note in &d.record.notes {
            writeln!(out, "  {copy}: {note}")?;
        }
        for missing in &d.record.missing_items {
            writeln!(out, "  {copy}: missing: {missing}")?;
        }
        for error in &d.record.errors {
            writeln!(out, "  {copy}: Velero: {error}")?;
        }
        if let Some(until) = &d.record.kept_until {
            writeln!(
                out,
                "  {copy}: the drill's namespaces and Restore ({}) stay until {until} for inspection",
                d.record.restore.as_deref().unwrap_or("-")
            )?;
        }
    }
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct WireDrills<'a> {
    pub format_version: u32,
    pub copies: Vec<WireDrilled<'a>>,
}

#[derive(Debug, Serialize)]
pub struct WireDrilled<'a> {
    pub schedule: &'a str,
    pub location: Option<&'a str>,
    pub drill: WireDrill<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<&'a str>,
}

pub fn wire(drilled: &[Drilled]) -> WireDrills<'_> {
    WireDrills {
        format_version: super::FORMAT_VERSION,
        copies: drilled
            .iter()
            .map(|d| WireDrilled {
                schedule: &d.copy.schedule,
                location: d.copy.location.as_deref(),
                drill: WireDrill::of(&d.record),
                refused: d.refused.as_deref(),
            })
            .collect(),
    }
}
