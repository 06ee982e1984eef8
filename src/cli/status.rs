//! `stowage status`: Velero's verdict on each location and schedule, and whether every
//! copy of every declared schedule lands.

use std::io::Write;

use super::args::{Format, StatusArgs};
use super::{CliError, ExitStatus, Shared, runtime, valid_or_report};
use crate::engine;
use crate::report;

pub(super) fn run(args: &StatusArgs, shared: &Shared) -> Result<ExitStatus, CliError> {
    let Some(path) = args.file.single() else {
        return fleet(args, shared);
    };
    let Some(file) = valid_or_report(path, shared.color, false)? else {
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
            report::status::write_velero(status.velero.as_ref(), &mut stdout)?;
            report::status::write_text(&status.observed, now, &mut stdout)?;
            report::status::write_copies(&status.copies, status.buckets_checked, now, &mut stdout)?;
        }
        Format::Json => {
            let wire = report::status::wire_copies(
                &status.copies,
                status.buckets_checked,
                status.velero.as_ref(),
            );
            serde_json::to_writer_pretty(&mut stdout, &wire)?;
            stdout.write_all(b"\n")?;
        }
    }
    let failing: Vec<&crate::copies::CopyStatus> =
        status.copies.iter().filter(|c| c.is_failing()).collect();
    if args.check && !failing.is_empty() {
        for copy in &failing {
            eprintln!(
                "{} → {}: {}",
                copy.schedule,
                copy.location.as_deref().unwrap_or("(default)"),
                copy.recoverability
                    .as_deref()
                    .filter(|_| !copy.verdict.is_failing())
                    .unwrap_or(copy.verdict.as_str())
            );
        }
        eprintln!(
            "{} of {} copies are behind, missing or not proven restorable",
            failing.len(),
            status.copies.len()
        );
        return Ok(ExitStatus::Failure);
    }
    Ok(ExitStatus::Success)
}

/// `status` of several clusters: each in turn (read at once), `--check` over all.
fn fleet(args: &StatusArgs, shared: &Shared) -> Result<ExitStatus, CliError> {
    let files = engine::fleet::expand(&args.file.files)?;
    if files.is_empty() {
        return Err(CliError::NoFiles);
    }
    let now = chrono::Utc::now();
    let all = super::fleet_runtime()?.block_on(engine::fleet::status(
        &files,
        &shared.target,
        args.buckets.timeout(),
        now,
        args.parallel.get(),
    ));
    let mut stdout = std::io::stdout().lock();
    let mut failing = 0;
    let mut unread = 0;
    let mut clusters = Vec::new();
    for cluster in &all {
        let context = cluster.context.as_deref().unwrap_or("(current context)");
        match &cluster.status {
            Ok(status) => {
                failing += status.copies.iter().filter(|c| c.is_failing()).count();
                match args.format {
                    Format::Text => {
                        writeln!(stdout, "=== {} ({context}) ===", cluster.file.display())?;
                        report::status::write_velero(status.velero.as_ref(), &mut stdout)?;
                        report::status::write_text(&status.observed, now, &mut stdout)?;
                        report::status::write_copies(
                            &status.copies,
                            status.buckets_checked,
                            now,
                            &mut stdout,
                        )?;
                        writeln!(stdout)?;
                    }
                    Format::Json => clusters.push(report::fleet::WireClusterStatus {
                        context: cluster.context.as_deref(),
                        error: None,
                        file: cluster.file.display().to_string(),
                        status: Some(report::status::wire_copies(
                            &status.copies,
                            status.buckets_checked,
                            status.velero.as_ref(),
                        )),
                    }),
                }
            }
            Err(problem) => {
                unread += 1;
                match args.format {
                    Format::Text => writeln!(
                        stdout,
                        "=== {} ({context}) ===\n{problem}\n",
                        cluster.file.display()
                    )?,
                    Format::Json => clusters.push(report::fleet::WireClusterStatus {
                        context: cluster.context.as_deref(),
                        error: Some(problem),
                        file: cluster.file.display().to_string(),
                        status: None,
                    }),
                }
            }
        }
    }
    if args.format == Format::Json {
        let document = report::fleet::WireStatuses {
            clusters,
            format_version: report::FORMAT_VERSION,
        };
        serde_json::to_writer_pretty(&mut stdout, &document)?;
        stdout.write_all(b"\n")?;
    }
    drop(stdout);
    if unread > 0 {
        eprintln!("{unread} of {} clusters could not be read", all.len());
        return Ok(ExitStatus::Failure);
    }
    if args.check && failing > 0 {
        eprintln!("{failing} copies are behind or missing");
        return Ok(ExitStatus::Failure);
    }
    Ok(ExitStatus::Success)
}
