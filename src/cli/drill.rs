//! `stowage drill`: prove the copies restore, now.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use super::args::{DrillArgs, Format};
use super::{CliError, ExitStatus, Shared, runtime, valid_or_report};
use crate::drills::DrillVerdict;
use crate::engine::{self, drill};
use crate::report;

pub(super) fn run(args: &DrillArgs, shared: &Shared) -> Result<ExitStatus, CliError> {
    let files = engine::fleet::expand(&args.file.files)?;
    if files.is_empty() {
        return Err(CliError::NoFiles);
    }
    let terminal = std::io::stderr().is_terminal();
    let options = drill::DrillOptions {
        bucket_timeout: Duration::from_secs(args.bucket_timeout),
        ..drill::DrillOptions::default()
    };
    let runtime = runtime()?;
    let mut all = Vec::new();
    let mut failed = false;
    // Drills of one cluster run one at a time; a fleet's clusters one after another,
    // so a terminal shows one progress line.
    for path in &files {
        let Some(file) = valid_or_report(path, shared.color, false)? else {
            failed = true;
            continue;
        };
        let copies = match drill::select(&file, args.copy.as_deref()) {
            Ok(copies) => copies,
            Err(why) => {
                eprintln!("{}: {why}", path.display());
                failed = true;
                continue;
            }
        };
        if copies.is_empty() {
            eprintln!(
                "{}: no schedule declares a drill; name one with --copy SCHEDULE[/LOCATION]",
                path.display()
            );
            continue;
        }
        let target = engine::fleet::target_for(&file, &shared.target);
        let drilled = runtime.block_on(async {
            let cluster = crate::cluster::connect(&target).await?;
            let mut progress = |copy: &drill::Copy, step: drill::Progress| {
                if terminal {
                    show_progress(copy, &step);
                }
            };
            Ok::<_, CliError>(
                drill::drill_all(&cluster, &file, &copies, &options, &mut progress).await?,
            )
        });
        if terminal {
            eprint!("\r\x1b[2K");
        }
        match drilled {
            Ok(drilled) => all.extend(drilled),
            Err(error) => {
                eprintln!("{}: {error}", path.display());
                failed = true;
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    match args.format {
        Format::Text => report::drill::write_text(&all, &mut stdout)?,
        Format::Json => {
            serde_json::to_writer_pretty(&mut stdout, &report::drill::wire(&all))?;
            stdout.write_all(b"\n")?;
        }
    }
    let not_restorable = all
        .iter()
        .filter(|d| d.record.verdict != DrillVerdict::Restorable)
        .count();
    if not_restorable > 0 {
        eprintln!(
            "{not_restorable} of {} drilled copies are not restorable",
            all.len()
        );
    }
    Ok(if failed || not_restorable > 0 {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

fn show_progress(copy: &drill::Copy, step: &drill::Progress) {
    let name = format!(
        "{} → {}",
        copy.schedule,
        copy.location.as_deref().unwrap_or("(default)")
    );
    let what = match step {
        drill::Progress::ReadingBackup { backup } => format!("reading {backup}'s item list"),
        drill::Progress::Restoring {
            restore,
            phase,
            elapsed,
        } => {
            format!("{restore}: {phase} ({}s)", elapsed.as_secs())
        }
        drill::Progress::Comparing => "comparing what came back".to_string(),
        drill::Progress::CleaningUp => "removing the drill's namespaces".to_string(),
    };
    eprint!("\r\x1b[2Kdrilling {name}: {what}");
}
