//! The daemon's log lines: one round's result as tracing events, and the one-line
//! problem `/readyz` shows for a failed round.

use tracing::{debug, error, info, warn};

use crate::cluster::apply::{Outcome, Report};
use crate::config::source::SourceMap;
use crate::diagnostic::Diagnostic;
use crate::engine::{ReconcileError, Reconciled};
use crate::plan::Plan;

/// Logs what a round did (`Ok(None)`: it stood by, another replica leading);
/// `trigger` says why it ran.
pub fn round(trigger: &str, result: Result<Option<&Reconciled>, &ReconcileError>) {
    match result {
        Ok(None) => debug!("another replica holds the lease; not writing"),
        Ok(Some(Reconciled::Unchanged { .. })) => debug!(reason = trigger, "no changes"),
        Ok(Some(Reconciled::Deferred { plan, wait, reason })) => {
            planned(plan, trigger);
            info!(
                wait_seconds = wait.as_secs_f64(),
                why = %reason,
                "not written yet"
            );
        }
        Ok(Some(Reconciled::DryRun { plan, .. })) => {
            planned(plan, trigger);
            info!("--dry-run: nothing applied");
        }
        Ok(Some(Reconciled::Applied {
            plan,
            applied,
            takeovers,
        })) => {
            planned(plan, trigger);
            written(&applied.report);
            for takeover in takeovers {
                warn!(
                    object = %object_name(&takeover.object),
                    field = %takeover.field,
                    from = %takeover.managers.join(","),
                    "took over a field another manager set"
                );
            }
        }
        Err(failure) => {
            let reason = failure.reason().as_str();
            let problem = problem(failure);
            match failure {
                ReconcileError::Unusable { .. }
                | ReconcileError::Unsettled(_)
                | ReconcileError::Invalid(_) => error!(
                    reason,
                    problem = %problem,
                    "the file does not validate; keeping the last valid state"
                ),
                ReconcileError::Cluster(_) => {
                    error!(reason, error = %problem, "cannot read the cluster")
                }
                ReconcileError::Refused { .. } => error!(
                    reason,
                    trigger,
                    problem = %problem,
                    "the plan has errors; nothing applied"
                ),
                ReconcileError::ApplyFailed { plan, applied } => {
                    planned(plan, trigger);
                    written(&applied.report);
                    error!(reason, problem = %problem, "the apply did not finish");
                }
                ReconcileError::NotConverged { plan, applied, .. } => {
                    planned(plan, trigger);
                    written(&applied.report);
                    error!(reason, problem = %problem, "the cluster did not converge to the file");
                }
            }
        }
    }
}

/// A restore drill's outcome, as the daemon logs it.
pub fn drilled(drilled: &crate::engine::drill::Drilled) {
    let record = &drilled.record;
    let location = drilled.copy.location.as_deref().unwrap_or("(default)");
    let verdict = record.verdict.as_str();
    if record.verdict == crate::drills::DrillVerdict::Restorable {
        info!(
            schedule = %drilled.copy.schedule,
            location,
            verdict,
            backup = record.backup.as_deref().unwrap_or("-"),
            restore_seconds = record.restore_seconds.unwrap_or_default(),
            "restore drill"
        );
    } else {
        warn!(
            schedule = %drilled.copy.schedule,
            location,
            verdict,
            backup = record.backup.as_deref().unwrap_or("-"),
            missing = %record.missing_items.join("; "),
            notes = %record.notes.join("; "),
            refused = drilled.refused.as_deref().unwrap_or(""),
            "restore drill"
        );
    }
}

/// A fight with another manager over a field, as logged before each wait.
pub fn fight(backoff: &crate::engine::fights::Backoff) {
    warn!(
        object = %object_name(&backoff.object),
        field = %backoff.field,
        manager = %backoff.managers.join(","),
        takeovers = backoff.rounds,
        wait_seconds = backoff.wait.as_secs_f64(),
        "another manager keeps setting a field the file declares; backing off before taking it back"
    );
}

/// The same for `/readyz`.
pub fn fight_problem(backoff: &crate::engine::fights::Backoff) -> String {
    format!(
        "fighting with {} over {} of {} ({} takeovers, each within 2 minutes of the last): waiting {} s before each takeover; stop the other writer or declare its value in the file",
        backoff.managers.join(", "),
        backoff.field,
        object_name(&backoff.object),
        backoff.rounds,
        backoff.wait.as_secs()
    )
}

/// A failed round in a few words (several lines for a file's errors), as `/readyz`
/// reports it.
pub fn problem(failure: &ReconcileError) -> String {
    match failure {
        ReconcileError::Unusable { path, error } => format!("{path}: {error}"),
        ReconcileError::Unsettled(why) => why.clone(),
        ReconcileError::Invalid(checked) => {
            error_lines(&checked.diagnostics, &checked.loaded.source)
                .unwrap_or_else(|| format!("{}: cannot be read", checked.loaded.source.name))
        }
        ReconcileError::Cluster(error) => error.to_string(),
        ReconcileError::Refused { file, plan } => error_lines(&plan.diagnostics, file)
            .unwrap_or_else(|| "the plan has errors".to_string()),
        ReconcileError::ApplyFailed { applied, .. } => {
            let conflicts = applied.report.conflicts().count();
            if conflicts > 0 {
                format!(
                    "{conflicts} write(s) refused: another field manager owns fields the file declares (--force-conflicts=false); see the log"
                )
            } else {
                let failed = applied
                    .report
                    .written
                    .iter()
                    .filter(|w| matches!(w.outcome, Outcome::Failed(_)))
                    .count();
                format!("{failed} write(s) failed; see the log")
            }
        }
        ReconcileError::NotConverged { applied, .. } => applied
            .not_converged
            .as_ref()
            .map(|d| d.message.clone())
            .unwrap_or_else(|| "the cluster did not converge to the file".to_string()),
    }
}

/// The errors among `diagnostics`, located, one per line:
/// `file:line:column: code: message`. `None` when there are none.
pub fn error_lines(diagnostics: &[Diagnostic], source: &SourceMap) -> Option<String> {
    let located = super::diagnostics::locate(diagnostics, source);
    let errors: Vec<String> = located
        .iter()
        .filter(|l| l.diagnostic.is_error())
        .map(|l| match (l.line, l.column) {
            (Some(line), Some(column)) => format!(
                "{}:{line}:{column}: {}: {}",
                l.file, l.diagnostic.code, l.diagnostic.message
            ),
            // Not at a place in the file (what it no longer declares): no 0:0.
            _ => format!(
                "{}: {}: {}",
                source.name, l.diagnostic.code, l.diagnostic.message
            ),
        })
        .collect();
    (!errors.is_empty()).then(|| errors.join("\n"))
}

fn object_name(object: &crate::velero::ObjectRef) -> String {
    format!(
        "{} {}/{}",
        object.kind.as_str(),
        object.namespace,
        object.name
    )
}

fn planned(plan: &Plan, trigger: &str) {
    let summary = plan.summary();
    info!(
        reason = trigger,
        create = summary.create,
        update = summary.update,
        delete = summary.delete,
        "changes to apply"
    );
    for change in &plan.changes {
        info!(
            action = change.action.as_str(),
            object = %object_name(&change.object),
            risks = %change.risks.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(","),
            "planned"
        );
    }
}

fn written(report: &Report) {
    for written in &report.written {
        let object = object_name(&written.object);
        let action = written.action.as_str();
        match &written.outcome {
            Outcome::Applied => info!(action, %object, "applied"),
            Outcome::Failed(why) => error!(action, %object, error = %why, "failed"),
            Outcome::Conflict(why) => {
                error!(action, %object, error = %why, "refused: another field manager owns fields")
            }
            Outcome::NotAttempted => {
                warn!(action, %object, "skipped after an earlier failure")
            }
        }
    }
}
