//! `stowage apply [PLAN]`: plan (or verify a saved plan), ask, write, check that the
//! cluster converged, and optionally wait for Velero's verdict on each location.

use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;

use super::args::ApplyArgs;
use super::{CliError, ExitStatus, Shared, runtime, show};
use crate::engine::{self, Answer, ApplyOutcome, StateSource, saved::SavedPlan};
use crate::plan::Plan;
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
    let options = args.plan_options();
    let mut planned =
        runtime.block_on(engine::plan(&file, StateSource::Cluster(&cluster), options))?;
    if let Some(saved) = &saved {
        planned.verify(saved, &file)?;
    }
    let options = args.apply_options();
    let mut terminal = Terminal {
        auto_approve: args.auto_approve,
        file: &file,
        shared,
        failed: None,
    };
    let outcome = runtime.block_on(engine::apply(
        &cluster,
        &file,
        &mut planned,
        &mut terminal,
        engine::InputsGate::Wait(&snapshot),
        &options,
    ));
    if let Some(error) = terminal.failed {
        return Err(error);
    }
    let outcome = match outcome {
        Err(engine::EngineError::PlanHasErrors) => {
            eprintln!("the plan has errors; nothing was applied");
            return Ok(ExitStatus::Failure);
        }
        outcome => outcome?,
    };
    let applied = match outcome {
        ApplyOutcome::Applied(applied) => applied,
        ApplyOutcome::Unchanged => {
            report::apply::write_text(&Default::default(), &mut std::io::stdout().lock())?;
            return Ok(ExitStatus::Success);
        }
        ApplyOutcome::NotApproved(Answer::Unanswerable) => return Err(CliError::NoTerminal),
        ApplyOutcome::NotApproved(_) | ApplyOutcome::Deferred { .. } => {
            eprintln!("apply cancelled; nothing was applied");
            return Ok(ExitStatus::Failure);
        }
    };
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

/// The terminal as the apply's approver: it shows the plan and asks there; without a
/// terminal, only `--auto-approve` approves.
struct Terminal<'a> {
    auto_approve: bool,
    file: &'a engine::ValidFile,
    shared: &'a Shared,
    /// Showing or asking failed: the error to report once the engine returns.
    failed: Option<CliError>,
}

impl Terminal<'_> {
    fn asks(&self) -> bool {
        !self.auto_approve && std::io::stdin().is_terminal()
    }

    fn remember<T>(&mut self, result: Result<T, CliError>) -> Option<T> {
        result.map_err(|error| self.failed = Some(error)).ok()
    }
}

/// One line from the terminal, trimmed.
fn answer_line() -> Result<String, CliError> {
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer.trim().to_string())
}

impl engine::Approver for Terminal<'_> {
    /// On a terminal, the deletion guard asks instead of refusing: the count must be
    /// typed back. A pipeline is refused and told about --allow-mass-delete.
    fn allow_mass_delete(&mut self, plan: &Plan) -> Answer {
        if !self.asks() {
            return Answer::Unanswerable;
        }
        let shown = show(&plan.diagnostics, &self.file.source, self.shared.color);
        if self.remember(shown).is_none() {
            return Answer::Cancel;
        }
        let deleted = plan.summary().delete;
        eprint!("To delete these {deleted} objects anyway, type `delete {deleted}`: ");
        match self.remember(answer_line()) {
            Some(answer) if answer == format!("delete {deleted}") => Answer::Approve,
            _ => Answer::Cancel,
        }
    }

    fn review(&mut self, plan: &Plan) {
        let shown = show(&plan.diagnostics, &self.file.source, self.shared.color).and_then(|()| {
            // Flushed before the question that follows it.
            let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
            report::plan::write_text(
                plan,
                &self.file.source.name,
                report::plan::TextOptions {
                    color: self.shared.stdout_color,
                },
                &mut stdout,
            )
            .and_then(|()| stdout.flush())
            .map_err(CliError::from)
        });
        self.remember(shown);
    }

    fn approve(&mut self, plan: &Plan) -> Answer {
        if self.auto_approve {
            return Answer::Approve;
        }
        if self.failed.is_some() {
            return Answer::Cancel;
        }
        if !std::io::stdin().is_terminal() {
            return Answer::Unanswerable;
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
        match self.remember(answer_line()) {
            Some(answer) if answer == "yes" => Answer::Approve,
            _ => Answer::Cancel,
        }
    }
}
