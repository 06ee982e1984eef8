//! `stowage apply [PLAN]`: plan (or verify a saved plan), ask, write, check that the
//! cluster converged, and optionally wait for Velero's verdict on each location.

use std::io::IsTerminal;
use std::path::PathBuf;

use super::args::ApplyArgs;
use super::{CliError, ExitStatus, Shared, runtime, show};
use crate::engine::{self, ApplyOptions, PlanOptions, StateSource, saved::SavedPlan};
use crate::report;

pub(super) fn run(args: &ApplyArgs, shared: &Shared) -> Result<ExitStatus, CliError> {
    if let Some(dir) = args.plan.as_deref().filter(|p| p.is_dir()) {
        return super::fleet::apply_saved(args, dir, shared);
    }
    let saved = args.plan.as_deref().map(SavedPlan::read).transpose()?;
    let path = match (&saved, args.file.single()) {
        (Some(saved), _) => PathBuf::from(&saved.file),
        (None, Some(file)) => file.clone(),
        (None, None) => return super::fleet::apply(args, shared),
    };
    // Read as one snapshot: the plan is written only while the file and everything it
    // names are still as read (and, for deletions and credentials, steady).
    let snapshot = engine::inputs::read(&path).map_err(engine::EngineError::from)?;
    let Some(file) = super::report_checked(snapshot.checked.clone(), shared.color, false)? else {
        return Ok(ExitStatus::Failure);
    };
    let runtime = runtime()?;
    let target = engine::fleet::target_for(&file, &shared.target);
    let cluster = runtime.block_on(crate::cluster::connect(&target))?;
    // A saved plan is checked against a plan made the same way: with bucket checks
    // unless --no-bucket-checks, since what the buckets hold decides some risks.
    let options = PlanOptions {
        allow_mass_delete: args.mass_delete.allow_mass_delete,
        bucket_timeout: args.buckets.timeout(),
        now: None,
    };
    let planned = runtime.block_on(engine::plan(&file, StateSource::Cluster(&cluster), options))?;
    if let Some(saved) = &saved {
        planned.verify(saved, &file)?;
    }
    let mut planned = planned;
    // On a terminal, the deletion guard asks instead of refusing: the count must be
    // typed back. A pipeline is refused and told about --allow-mass-delete.
    if !args.auto_approve && std::io::stdin().is_terminal() && only_mass_delete(&planned.plan) {
        show(&planned.plan.diagnostics, &file.source, shared.color)?;
        let deleted = planned.plan.summary().delete;
        eprint!("To delete these {deleted} objects anyway, type `delete {deleted}`: ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != format!("delete {deleted}") {
            eprintln!("apply cancelled; nothing was applied");
            return Ok(ExitStatus::Failure);
        }
        planned
            .plan
            .diagnostics
            .retain(|d| d.code != crate::diagnostic::Code::MassDelete);
    }
    let plan = &planned.plan;
    show(&plan.diagnostics, &file.source, shared.color)?;
    report::plan::write_text(
        plan,
        &file.source.name,
        report::plan::TextOptions {
            color: shared.stdout_color,
        },
        &mut std::io::stdout().lock(),
    )?;
    if plan.has_errors() {
        eprintln!("the plan has errors; nothing was applied");
        return Ok(ExitStatus::Failure);
    }
    if plan.has_changes() && !confirmed(args.auto_approve, plan)? {
        eprintln!("apply cancelled; nothing was applied");
        return Ok(ExitStatus::Failure);
    }
    let options = ApplyOptions {
        force_conflicts: args.force_conflicts,
        fence: None,
    };
    runtime
        .block_on(engine::inputs::wait_until_writable(
            plan,
            &snapshot,
            engine::inputs::STEADY,
        ))
        .map_err(engine::EngineError::from)?;
    let applied = runtime.block_on(engine::apply(&cluster, &file, &planned, &options))?;
    report::apply::write_text(&applied.report, &mut std::io::stdout().lock())?;
    if !applied.report.succeeded() {
        eprintln!(
            "the apply did not finish; run it again once the cause is fixed: what was written stays, and the next plan shows what is left"
        );
        return Ok(ExitStatus::Failure);
    }
    if let Some(problem) = &applied.not_converged {
        show(std::slice::from_ref(problem), &file.source, shared.color)?;
        return Ok(ExitStatus::Failure);
    }
    let Some(timeout) = args.wait else {
        return Ok(ExitStatus::Success);
    };
    let terminal = std::io::stderr().is_terminal();
    let verdicts = runtime.block_on(engine::wait_for_verdicts(
        &cluster,
        &planned,
        &applied,
        timeout,
        |done, all| {
            if terminal {
                eprint!("\rwaiting for Velero to validate the locations: {done}/{all}");
            }
        },
    ))?;
    if terminal && !verdicts.is_empty() {
        eprintln!();
    }
    let all_available = report::apply::write_verdicts(&verdicts, &mut std::io::stdout().lock())?;
    Ok(if all_available {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// Whether the deletion guard is the plan's only error.
fn only_mass_delete(plan: &crate::plan::Plan) -> bool {
    let mut errors = plan.diagnostics.iter().filter(|d| d.is_error()).peekable();
    errors.peek().is_some() && errors.all(|d| d.code == crate::diagnostic::Code::MassDelete)
}

/// Asks on the terminal, naming what the plan deletes; without a terminal, refuses (a
/// pipeline must say --auto-approve).
pub(super) fn confirmed(auto_approve: bool, plan: &crate::plan::Plan) -> Result<bool, CliError> {
    if auto_approve {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::NoTerminal);
    }
    let summary = plan.summary();
    if summary.delete > 0 {
        eprintln!(
            "This deletes {} object{} from the cluster.",
            summary.delete,
            if summary.delete == 1 { "" } else { "s" }
        );
    }
    eprint!("Apply these changes? Only 'yes' is accepted: ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}
