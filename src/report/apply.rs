//! What an apply did, object by object, and Velero's verdict on each written location.

use std::io::Write;

use crate::cluster::apply::{Outcome, Report, Verdict};

fn object_name(written: &crate::cluster::apply::Written) -> String {
    format!(
        "{} {}/{}",
        written.object.kind.as_str(),
        written.object.namespace,
        written.object.name
    )
}

pub fn write_text(report: &Report, out: &mut impl Write) -> std::io::Result<()> {
    if report.written.is_empty() {
        return writeln!(out, "Nothing to apply.");
    }
    for written in &report.written {
        let verb = written.action.as_str();
        match &written.outcome {
            Outcome::Applied => writeln!(out, "  {verb}d  {}", object_name(written))?,
            Outcome::Failed(reason) | Outcome::Conflict(reason) => {
                writeln!(out, "  FAILED   {verb} {}: {reason}", object_name(written))?
            }
            Outcome::NotAttempted => writeln!(
                out,
                "  skipped  {verb} {} (an earlier step failed)",
                object_name(written)
            )?,
        }
    }
    let applied = report.applied().count();
    writeln!(
        out,
        "Applied {applied} of {} change{}.",
        report.written.len(),
        if report.written.len() == 1 { "" } else { "s" }
    )
}

/// Prints each location's verdict; true when all are Available.
pub fn write_verdicts(
    verdicts: &[(String, Verdict)],
    out: &mut impl Write,
) -> std::io::Result<bool> {
    for (name, verdict) in verdicts {
        match verdict {
            Verdict::Available => writeln!(out, "  {name}: Available")?,
            Verdict::Unavailable(message) => writeln!(out, "  {name}: Unavailable — {message}")?,
            Verdict::Pending => writeln!(out, "  {name}: not validated by Velero in time")?,
        }
    }
    Ok(verdicts.iter().all(|(_, v)| *v == Verdict::Available))
}
