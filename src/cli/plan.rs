//! `stowage plan`: what applying the file would change, against the cluster or a saved
//! state; optionally saved for `apply PLAN`.

use std::io::Write;

use super::args::{PlanArgs, PlanFormat};
use super::{CliError, ExitStatus, Shared, free_at_exit, runtime, show, valid_or_report};
use crate::engine::{self, StateSource};
use crate::report::{self, diagnostics as shown};

pub(super) fn run(args: &PlanArgs, shared: &Shared) -> Result<ExitStatus, CliError> {
    let Some(path) = args.file.single() else {
        return super::fleet::plan(args, shared);
    };
    let json = args.format == PlanFormat::Json;
    let Some(file) = valid_or_report(path, shared.color, json)? else {
        return Ok(ExitStatus::Failure);
    };
    let options = args.plan_options();
    let target = engine::fleet::target_for(&file, &shared.target);
    let runtime = runtime()?;
    let planned = runtime.block_on(async {
        match &args.observed {
            Some(path) => engine::plan(&file, StateSource::Saved(path), options).await,
            None => {
                let cluster = crate::cluster::connect(&target).await?;
                engine::plan(&file, StateSource::Cluster(&cluster), options).await
            }
        }
    })?;
    let plan = &planned.plan;

    // The file's warnings were shown already; the plan's own findings are new.
    show(&plan.diagnostics, &file.source, shared.color)?;
    // One write per buffer, not per line: a plan from empty is a line per field.
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    match args.format {
        PlanFormat::Text => report::plan::write_text(
            plan,
            &file.source.name,
            report::plan::TextOptions {
                color: shared.stdout_color,
            },
            &mut stdout,
        )?,
        PlanFormat::Markdown => report::plan::write_markdown(plan, &file.source.name, &mut stdout)?,
        PlanFormat::Json => {
            let every: Vec<_> = file
                .diagnostics
                .iter()
                .chain(&plan.diagnostics)
                .cloned()
                .collect();
            let located = shown::locate(&every, &file.source);
            let wire = report::plan::wire(plan, shown::wire(&located));
            serde_json::to_writer_pretty(&mut stdout, &wire)?;
            stdout.write_all(b"\n")?;
        }
    }
    stdout.flush()?;
    drop(stdout);

    if plan.has_errors() {
        eprintln!("the plan has errors; it cannot be applied");
        return Ok(ExitStatus::Failure);
    }
    if let Some(out) = &args.out {
        let saved = planned.save(&file, &path.display().to_string());
        let text = serde_json::to_string_pretty(&saved)?;
        std::fs::write(out, text + "\n").map_err(|source| CliError::Write {
            path: out.clone(),
            source,
        })?;
        eprintln!("saved the plan to {}", out.display());
    }
    let status = if args.detailed_exitcode && plan.has_changes() {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    };
    free_at_exit((file, planned));
    Ok(status)
}
