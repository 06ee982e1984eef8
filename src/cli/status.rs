//! `stowage status`: Velero's verdict on each location and schedule, and whether every
//! copy of every declared schedule lands.

use std::io::Write;

use super::args::{Format, StatusArgs};
use super::{CliError, ExitStatus, Shared, runtime, valid_or_report};
use crate::engine;
use crate::report;

pub(super) fn run(args: &StatusArgs, shared: &Shared) -> Result<ExitStatus, CliError> {
    let Some(file) = valid_or_report(&args.file.file, shared.color, false)? else {
        return Ok(ExitStatus::Failure);
    };
    let now = chrono::Utc::now();
    let status = runtime()?.block_on(async {
        let cluster =
            crate::cluster::connect(&engine::fleet::target_for(&file, &shared.target)).await?;
        Ok::<_, CliError>(engine::status(&cluster, &file, args.buckets.timeout(), now).await?)
    })?;
    let mut stdout = std::io::stdout().lock();
    match args.format {
        Format::Text => {
            report::status::write_text(&status.observed, now, &mut stdout)?;
            report::status::write_copies(&status.copies, status.buckets_checked, now, &mut stdout)?;
        }
        Format::Json => {
            let wire = report::status::wire_copies(&status.copies, status.buckets_checked);
            serde_json::to_writer_pretty(&mut stdout, &wire)?;
            stdout.write_all(b"\n")?;
        }
    }
    let failing: Vec<&crate::copies::CopyStatus> = status
        .copies
        .iter()
        .filter(|c| c.verdict.is_failing())
        .collect();
    if args.check && !failing.is_empty() {
        for copy in &failing {
            eprintln!(
                "{} → {}: {}",
                copy.schedule,
                copy.location.as_deref().unwrap_or("(default)"),
                copy.verdict.as_str()
            );
        }
        eprintln!(
            "{} of {} copies are behind or missing",
            failing.len(),
            status.copies.len()
        );
        return Ok(ExitStatus::Failure);
    }
    Ok(ExitStatus::Success)
}
