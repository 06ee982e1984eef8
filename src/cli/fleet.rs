//! Fleet runs of `validate` and `plan`: several files, one cluster each. The engine
//! runs each cluster's pipeline; this file shows a summary table first, then each
//! cluster, and aggregates the exit code (1 if any cluster failed; with
//! `--detailed-exitcode`, 2 if any has changes).

use std::io::Write;

use super::args::{ApplyArgs, Format, PlanArgs, PlanFormat, ValidateArgs};
use super::{CliError, ExitStatus, Shared, count_summary, fleet_runtime, show};
use crate::engine::fleet::{self, Member, Outcome};
use crate::report::{self, diagnostics as shown};

fn files(given: &[std::path::PathBuf]) -> Result<Vec<std::path::PathBuf>, CliError> {
    let files = fleet::expand(given)?;
    if files.is_empty() {
        return Err(CliError::NoFiles);
    }
    Ok(files)
}

pub(super) fn validate(args: &ValidateArgs, shared: &Shared) -> Result<ExitStatus, CliError> {
    let mut failed = 0;
    let files = files(&args.file.files)?;
    let checked = fleet::check_all(&files, &shared.target);
    let mut results = Vec::new();
    for (path, checked) in files.iter().zip(checked) {
        let (source, diagnostics) = match checked.map(|snapshot| snapshot.checked) {
            Ok(checked) => (checked.loaded.source, checked.diagnostics),
            Err(error) => {
                let (source, diagnostic) = super::unusable_file(path, &error);
                (source, vec![diagnostic])
            }
        };
        results.push((source, diagnostics));
    }
    let mut located = Vec::new();
    for (source, diagnostics) in &results {
        let errors = diagnostics.iter().filter(|d| d.is_error()).count();
        if errors > 0 {
            failed += 1;
        }
        match args.format {
            Format::Text => {
                show(diagnostics, source, shared.color)?;
                let checked_summary = if errors > 0 {
                    format!("{errors} error(s)")
                } else {
                    "valid".to_string()
                };
                eprintln!("{}: {checked_summary}", source.name);
            }
            Format::Json => located.push((source, errors, shown::locate(diagnostics, source))),
        }
    }
    if args.format == Format::Json {
        let document = report::fleet::WireValidations {
            files: located
                .iter()
                .map(|(source, errors, located)| report::fleet::WireValidation {
                    diagnostics: shown::wire(located),
                    file: source.name.clone(),
                    valid: *errors == 0,
                })
                .collect(),
            format_version: report::FORMAT_VERSION,
        };
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut stdout, &document)?;
        stdout.write_all(b"\n")?;
    } else {
        eprintln!("{} of {} files valid", files.len() - failed, files.len());
    }
    Ok(if failed > 0 {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

pub(super) fn plan(args: &PlanArgs, shared: &Shared) -> Result<ExitStatus, CliError> {
    let files = files(&args.file.files)?;
    let plan_names = match &args.out {
        Some(_) => fleet::saved_plan_names(&files)?,
        None => Vec::new(),
    };
    let options = args.plan_options();
    let members = fleet_runtime()?.block_on(fleet::plan(
        &files,
        &shared.target,
        options,
        args.parallel.get(),
    ));
    let mut stdout = std::io::stdout().lock();
    match args.format {
        PlanFormat::Text => write_fleet_text(&members, shared, &mut stdout)?,
        PlanFormat::Markdown => {
            writeln!(stdout, "### stowage plan: {} clusters\n", members.len())?;
            writeln!(
                stdout,
                "| cluster | context | result | create | update | delete |"
            )?;
            writeln!(stdout, "|---|---|---|---|---|---|")?;
            for member in &members {
                let (create, update, delete) = counts(member);
                writeln!(
                    stdout,
                    "| `{}` | {} | {} | {create} | {update} | {delete} |",
                    member.file.display(),
                    context_of(member),
                    result_of(member)
                )?;
            }
            for member in &members {
                writeln!(
                    stdout,
                    "\n<details><summary><code>{}</code>: {}</summary>\n",
                    member.file.display(),
                    result_of(member)
                )?;
                match &member.outcome {
                    Outcome::Planned(planned) => {
                        let (file, planned, _) = planned.as_ref();
                        report::plan::write_markdown(
                            &planned.plan,
                            &file.source.name,
                            &mut stdout,
                        )?;
                    }
                    _ => writeln!(stdout, "{}", problem_of(member))?,
                }
                writeln!(stdout, "\n</details>")?;
            }
        }
        PlanFormat::Json => {
            // Each planned member's diagnostics (the file's and the plan's), located.
            let located: Vec<Option<Vec<shown::Located<'_>>>> = members
                .iter()
                .map(|member| match &member.outcome {
                    Outcome::Planned(planned) => {
                        let (file, planned, _) = planned.as_ref();
                        let mut located = shown::locate(&file.diagnostics, &file.source);
                        located.extend(shown::locate(&planned.plan.diagnostics, &file.source));
                        Some(located)
                    }
                    _ => None,
                })
                .collect();
            let clusters = members
                .iter()
                .zip(&located)
                .map(|(member, located)| {
                    let plan = match (&member.outcome, located) {
                        (Outcome::Planned(planned), Some(located)) => {
                            Some(report::plan::wire(&planned.1.plan, shown::wire(located)))
                        }
                        _ => None,
                    };
                    report::fleet::WireClusterPlan {
                        context: member.context.as_deref(),
                        error: (!matches!(member.outcome, Outcome::Planned(_)))
                            .then(|| problem_of(member)),
                        file: member.file.display().to_string(),
                        plan,
                        result: result_of(member),
                    }
                })
                .collect();
            let document = report::fleet::WirePlans {
                clusters,
                format_version: report::FORMAT_VERSION,
            };
            serde_json::to_writer_pretty(&mut stdout, &document)?;
            stdout.write_all(b"\n")?;
        }
    }
    drop(stdout);
    if let Some(dir) = &args.out {
        save_plans(&members, &plan_names, dir)?;
    }
    if members.iter().any(|m| !m.succeeded()) {
        let failed = members.iter().filter(|m| !m.succeeded()).count();
        eprintln!(
            "{failed} of {} clusters could not be planned cleanly",
            members.len()
        );
        return Ok(ExitStatus::Failure);
    }
    Ok(
        if args.detailed_exitcode && members.iter().any(Member::has_changes) {
            ExitStatus::Changes
        } else {
            ExitStatus::Success
        },
    )
}

fn context_of(member: &Member) -> String {
    member
        .context
        .clone()
        .unwrap_or_else(|| "(current context)".to_string())
}

fn counts(member: &Member) -> (String, String, String) {
    match &member.outcome {
        Outcome::Planned(planned) => {
            let summary = planned.1.plan.summary();
            (
                summary.create.to_string(),
                summary.update.to_string(),
                summary.delete.to_string(),
            )
        }
        _ => ("-".into(), "-".into(), "-".into()),
    }
}

/// A cluster's result in a word or two: `changes`, `no changes`, `errors`, `invalid`,
/// `unreachable`, `failed`.
fn result_of(member: &Member) -> &'static str {
    match &member.outcome {
        Outcome::Planned(planned) if planned.1.plan.has_errors() => "errors",
        Outcome::Planned(planned) if planned.1.plan.has_changes() => "changes",
        Outcome::Planned(_) => "no changes",
        Outcome::Unusable(_) | Outcome::Invalid(_) => "invalid",
        Outcome::Unreachable(_) => "unreachable",
        Outcome::Failed(_) => "failed",
    }
}

/// Why a cluster was not planned, in one line.
fn problem_of(member: &Member) -> String {
    match &member.outcome {
        Outcome::Unusable(error) => error.to_string(),
        Outcome::Invalid(checked) => {
            format!("{}: {}", checked.loaded.source.name, count_summary(checked))
        }
        Outcome::Unreachable(error) => error.to_string(),
        Outcome::Failed(error) => error.to_string(),
        Outcome::Planned(_) => String::new(),
    }
}

fn write_summary(members: &[Member], out: &mut impl Write) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|member| {
            let (create, update, delete) = counts(member);
            vec![
                member.file.display().to_string(),
                context_of(member),
                result_of(member).to_string(),
                create,
                update,
                delete,
            ]
        })
        .collect();
    report::status::table(
        out,
        &["CLUSTER", "CONTEXT", "RESULT", "CREATE", "UPDATE", "DELETE"],
        &rows,
    )?;
    let count = |result: &str| members.iter().filter(|m| result_of(m) == result).count();
    writeln!(
        out,
        "{} clusters: {} with changes, {} with errors, {} unreachable",
        members.len(),
        count("changes"),
        count("errors") + count("invalid") + count("failed"),
        count("unreachable")
    )
}

/// The summary, then each cluster's plan.
fn write_fleet_text(
    members: &[Member],
    shared: &Shared,
    out: &mut impl Write,
) -> Result<(), CliError> {
    write_summary(members, out)?;
    for member in members {
        writeln!(
            out,
            "\n=== {} ({}) ===",
            member.file.display(),
            context_of(member)
        )?;
        write_member_text(member, shared, out)?;
    }
    Ok(())
}

fn write_member_text(
    member: &Member,
    shared: &Shared,
    out: &mut impl Write,
) -> Result<(), CliError> {
    match &member.outcome {
        Outcome::Planned(planned) => {
            let (file, planned, _) = planned.as_ref();
            show(&planned.plan.diagnostics, &file.source, shared.color)?;
            report::plan::write_text(
                &planned.plan,
                &file.source.name,
                report::plan::TextOptions {
                    color: shared.stdout_color,
                },
                out,
            )?;
        }
        Outcome::Invalid(checked) => {
            show(&checked.diagnostics, &checked.loaded.source, shared.color)?;
            writeln!(out, "{}; nothing planned", problem_of(member))?;
        }
        _ => writeln!(out, "{}: {}", result_of(member), problem_of(member))?,
    }
    Ok(())
}

pub(super) fn apply(args: &ApplyArgs, shared: &Shared) -> Result<ExitStatus, CliError> {
    use std::io::IsTerminal;
    let files = files(&args.file.files)?;
    let options = args.plan_options();
    let parallel = args.parallel.get();
    let runtime = fleet_runtime()?;
    let mut members = runtime.block_on(fleet::plan(&files, &shared.target, options, parallel));
    write_fleet_text(&members, shared, &mut std::io::stdout().lock())?;
    let with_changes = members
        .iter()
        .filter(|m| m.succeeded() && m.has_changes())
        .count();
    if with_changes > 0 && !args.auto_approve {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::NoTerminal);
        }
        eprint!("Apply these changes to {with_changes} clusters? Only 'yes' is accepted: ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            eprintln!("apply cancelled; nothing was applied");
            return Ok(ExitStatus::Failure);
        }
    }
    let apply_options = args.apply_options();
    let applied = runtime.block_on(fleet::apply(
        &mut members,
        &shared.target,
        apply_options,
        parallel,
    ));
    let mut stdout = std::io::stdout().lock();
    let mut failed = members.iter().filter(|m| !m.succeeded()).count();
    for (member, applied) in members.iter().zip(&applied) {
        if !applied.succeeded() {
            failed += 1;
        }
        match applied {
            fleet::Applied::Skipped => {}
            fleet::Applied::Done(done) => {
                writeln!(stdout, "\n=== applied: {} ===", member.file.display())?;
                report::apply::write_text(&done.report, &mut stdout)?;
                if let (Some(problem), Outcome::Planned(planned)) =
                    (&done.not_converged, &member.outcome)
                {
                    show(
                        std::slice::from_ref(problem),
                        &planned.0.source,
                        shared.color,
                    )?;
                }
            }
            fleet::Applied::Failed(error) => {
                writeln!(
                    stdout,
                    "\n=== not applied: {}: {error} ===",
                    member.file.display()
                )?;
            }
        }
    }
    drop(stdout);
    if failed > 0 {
        eprintln!(
            "{failed} of {} clusters did not end equal to their file",
            members.len()
        );
        return Ok(ExitStatus::Failure);
    }
    Ok(ExitStatus::Success)
}

/// `plan --out DIR` of a fleet: one saved plan per cluster planned cleanly, named
/// after its file's path (names checked for clashes before anything was planned).
fn save_plans(members: &[Member], names: &[String], dir: &std::path::Path) -> Result<(), CliError> {
    let write_error = |path: std::path::PathBuf| move |source| CliError::Write { path, source };
    std::fs::create_dir_all(dir).map_err(write_error(dir.to_path_buf()))?;
    let mut saved = 0;
    for (member, name) in members.iter().zip(names) {
        let Outcome::Planned(planned) = &member.outcome else {
            continue;
        };
        if !member.succeeded() {
            continue;
        }
        let (file, planned, _) = planned.as_ref();
        let document = planned.save(file, &member.file.display().to_string());
        let text = serde_json::to_string_pretty(&document)? + "\n";
        crate::engine::output::write_file(&dir.join(name), text.as_bytes(), 0o644, true)?;
        saved += 1;
    }
    eprintln!("saved {saved} plans to {}", dir.display());
    Ok(())
}

/// `apply DIR`: the plans `plan --out DIR` saved, each to its cluster, each refused on
/// its own when stale.
pub(super) fn apply_saved(
    args: &ApplyArgs,
    dir: &std::path::Path,
    shared: &Shared,
) -> Result<ExitStatus, CliError> {
    let found = fleet::saved_plans_in(dir)?;
    for skipped in &found.skipped {
        eprintln!(
            "{}: not a plan saved by `stowage plan --out`; left alone",
            skipped.display()
        );
    }
    let plans = found.plans;
    if plans.is_empty() && found.broken.is_empty() {
        return Err(CliError::NoFiles);
    }
    if !args.auto_approve {
        return Err(CliError::NoTerminal);
    }
    let plan_options = args.plan_options();
    let options = args.apply_options();
    let results = fleet_runtime()?.block_on(fleet::apply_saved(
        &plans,
        &shared.target,
        plan_options,
        options,
        args.parallel.get(),
    ));
    let mut stdout = std::io::stdout().lock();
    let mut failed = 0;
    for broken in &found.broken {
        failed += 1;
        writeln!(stdout, "=== not applied: {broken} ===")?;
    }
    for (saved, result) in plans.iter().zip(results) {
        match result {
            fleet::Applied::Done(applied) => {
                writeln!(stdout, "=== applied: {} ===", saved.file)?;
                report::apply::write_text(&applied.report, &mut stdout)?;
                if !applied.converged() {
                    failed += 1;
                }
            }
            fleet::Applied::Skipped => {
                writeln!(stdout, "=== applied: {} ===", saved.file)?;
                report::apply::write_text(&Default::default(), &mut stdout)?;
            }
            fleet::Applied::Failed(error) => {
                failed += 1;
                writeln!(stdout, "=== not applied: {}: {error} ===", saved.file)?;
            }
        }
    }
    drop(stdout);
    if failed > 0 {
        eprintln!(
            "{failed} of {} saved plans were not applied completely",
            plans.len() + found.broken.len()
        );
        return Ok(ExitStatus::Failure);
    }
    Ok(ExitStatus::Success)
}
