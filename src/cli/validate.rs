//! `stowage validate`: every rule, offline.

use std::io::Write;

use super::args::{Format, ValidateArgs};
use super::{
    CliError, ExitStatus, Shared, count_summary, free_at_exit, plural, print_unplanned_document,
    show,
};
use crate::engine;

pub(super) fn run(args: &ValidateArgs, shared: &Shared) -> Result<ExitStatus, CliError> {
    let Some(path) = args.file.single() else {
        return super::fleet::validate(args, shared);
    };
    let checked = match engine::check_file(path) {
        Ok(checked) => checked,
        Err(error) if args.format == Format::Json => {
            let (source, diagnostic) = super::unusable_file(path, &error);
            print_unplanned_document(&[diagnostic], &source)?;
            return Ok(ExitStatus::Failure);
        }
        Err(error) => return Err(error.into()),
    };
    let source = &checked.loaded.source;
    match args.format {
        Format::Json => print_unplanned_document(&checked.diagnostics, source)?,
        Format::Text => {
            if args.explain {
                crate::report::explain::write(source, &mut std::io::stdout().lock())?;
            }
            show(&checked.diagnostics, source, shared.color)?;
            let mut stderr = std::io::stderr().lock();
            let name = &source.name;
            if checked.errors() > 0 {
                writeln!(stderr, "{name}: {}", count_summary(&checked))?;
            } else if let Some(config) = &checked.loaded.config {
                let schedules: usize = config
                    .schedules
                    .values()
                    .map(|schedule| schedule.instance_count())
                    .sum();
                let warnings = checked.warnings();
                writeln!(
                    stderr,
                    "{name} is valid: {}, {}, {}, {}{}",
                    plural(config.backup_locations.len(), "backup location"),
                    plural(config.snapshot_locations.len(), "snapshot location"),
                    plural(config.credentials.len(), "credential"),
                    plural(schedules, "Velero schedule"),
                    if warnings > 0 {
                        format!(" ({})", plural(warnings, "warning"))
                    } else {
                        String::new()
                    }
                )?;
            }
        }
    }
    let status = if checked.errors() > 0 {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    };
    free_at_exit(checked);
    Ok(status)
}
