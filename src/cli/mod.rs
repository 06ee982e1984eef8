//! The command line: parses arguments ([`args`]), runs one command (one file each),
//! and picks the view and the exit code. Every command is "call the engine, show what
//! it returned": none holds validation, planning or apply logic of its own.
//!
//! stdout carries only data (plans, JSON, schemas, completions); diagnostics and
//! messages go to stderr. Colour follows `--color`, and `auto` honours `NO_COLOR` and
//! terminals.

mod apply;
pub mod args;
mod drill;
mod fleet;
mod import;
mod plan;
mod render;
mod status;
mod validate;
mod watch;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::config::load::LoadError;
use crate::config::source::SourceMap;
use crate::diagnostic::{Code, Diagnostic};
use crate::engine::{self, CheckedFile, ValidFile};
use crate::report::{self, diagnostics as shown};
use args::{Cli, Command};

/// What a run ends with; the process exit code follows product.md §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    Failure,
    /// A plan with changes under `--detailed-exitcode`.
    Changes,
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> ExitCode {
        match status {
            ExitStatus::Success => ExitCode::SUCCESS,
            ExitStatus::Failure => ExitCode::from(1),
            ExitStatus::Changes => ExitCode::from(2),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    #[error("cannot encode output: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error(
        "refusing to apply without confirmation: stdin is not a terminal (pass --auto-approve)"
    )]
    NoTerminal,
    #[error(transparent)]
    Watch(#[from] crate::watch::WatchError),
    #[error("no desired-state files (*.toml, *.yaml, *.yml) in the directories given")]
    NoFiles,
    #[error(transparent)]
    File(#[from] crate::engine::output::OutputError),
    #[error(transparent)]
    Fleet(#[from] crate::engine::fleet::FleetError),
    #[error(
        "leader election needs --leader-elect-retry-period < --leader-elect-renew-deadline < --leader-elect-lease-duration"
    )]
    LeaderElection,
}

impl From<engine::saved::Stale> for CliError {
    fn from(stale: engine::saved::Stale) -> CliError {
        CliError::Engine(stale.into())
    }
}

impl From<engine::saved::SavedPlanError> for CliError {
    fn from(error: engine::saved::SavedPlanError) -> CliError {
        CliError::Engine(error.into())
    }
}

impl CliError {
    /// A reader that stops early (`| head`) is not a failure.
    fn is_broken_pipe(&self) -> bool {
        match self {
            CliError::Output(error) => error.kind() == std::io::ErrorKind::BrokenPipe,
            CliError::Encode(error) => {
                error.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe)
            }
            _ => false,
        }
    }
}

/// Entry point for `main`: parses the arguments, runs, prints an error once.
pub fn main() -> ExitCode {
    // A usage error exits 1, never clap's 2: under --detailed-exitcode 2 means "the plan
    // has changes", and a mistyped flag must not look like that to a pipeline.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() {
                ExitStatus::Failure
            } else {
                ExitStatus::Success
            };
            // Printing --help or a usage error can only fail on a closed stream.
            let _ = error.print();
            return code.into();
        }
    };
    let color = cli.color.enabled_for_stderr();
    match run(cli) {
        Ok(status) => status.into(),
        Err(error) if error.is_broken_pipe() => ExitCode::SUCCESS,
        Err(error) => {
            let prefix = if color {
                "\x1b[31merror\x1b[0m"
            } else {
                "error"
            };
            eprintln!("{prefix}: {error}");
            ExitStatus::Failure.into()
        }
    }
}

/// What every command gets besides its own arguments.
struct Shared {
    /// Colour on stderr (diagnostics, messages).
    color: bool,
    /// Colour on stdout (plans).
    stdout_color: bool,
    target: crate::cluster::Target,
}

fn run(cli: Cli) -> Result<ExitStatus, CliError> {
    let shared = Shared {
        color: cli.color.enabled_for_stderr(),
        stdout_color: cli.color.enabled_for_stdout(),
        target: crate::cluster::Target {
            kubeconfig: cli.kubeconfig.clone(),
            context: cli.context.clone(),
            request_timeout: cli.request_timeout,
        },
    };
    match cli.command {
        Command::Validate(args) => validate::run(&args, &shared),
        Command::Render(args) => render::run(&args, &shared),
        Command::Plan(args) => plan::run(&args, &shared),
        Command::Apply(args) => apply::run(&args, &shared),
        Command::Import(args) => import::run(&args, &shared),
        Command::Status(args) => status::run(&args, &shared),
        Command::Watch(args) => watch::run(&args, &shared),
        Command::Drill(args) => drill::run(&args, &shared),
        Command::Schema { overlay } => {
            let text = if overlay {
                crate::config::overlay_schema_text()
            } else {
                crate::config::json_schema_text()
            };
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            Ok(ExitStatus::Success)
        }
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "stowage", &mut std::io::stdout());
            Ok(ExitStatus::Success)
        }
    }
}

/// A runtime for one command: a client belongs to the runtime it was made in.
/// Leaves a finished command's file, state and plan to the end of the process instead
/// of freeing them piece by piece: the process exits right after the command, and the
/// system takes the memory back at once (freeing a 10,000-object plan was a sixth of
/// `plan`'s time). Only for plain data: nothing with a handle, file or task inside.
fn free_at_exit<T>(data: T) {
    std::mem::forget(data);
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}

/// A runtime for a fleet: its clusters' plans are CPU work too (decoding, planning),
/// so they get every core.
fn fleet_runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}

/// Prints diagnostics to stderr, located in `source`.
fn show(diagnostics: &[Diagnostic], source: &SourceMap, color: bool) -> Result<(), CliError> {
    let located = shown::locate(diagnostics, source);
    shown::write_text(&located, source, color, &mut std::io::stderr().lock())?;
    Ok(())
}

/// The `--format json` document of a file that nothing was planned for (validate, or a
/// plan stopped by the file): the plan document's shape, its diagnostics, no changes.
fn print_unplanned_document(
    diagnostics: &[Diagnostic],
    source: &SourceMap,
) -> Result<(), CliError> {
    let located = shown::locate(diagnostics, source);
    let document = shown::ValidateReport {
        format_version: report::FORMAT_VERSION,
        valid: !diagnostics.iter().any(Diagnostic::is_error),
        diagnostics: shown::wire(&located),
        changes: [],
        unmanaged: [],
        summary: shown::EmptySummary::default(),
    };
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &document)?;
    stdout.write_all(b"\n")?;
    Ok(())
}

/// A file that cannot be used at all (missing, not a regular file, too large, not
/// UTF-8, of an unknown type), as the one diagnostic `stowage::file`.
fn unusable_file(path: &Path, error: &dyn std::fmt::Display) -> (SourceMap, Diagnostic) {
    (
        SourceMap::new(path.display().to_string(), String::new(), None),
        Diagnostic::error(Code::File, error.to_string()),
    )
}

/// Checks the file and prints its diagnostics to stderr. The valid file, or `None`
/// when it has errors (they were printed, and with `json` the document too).
fn valid_or_report(path: &Path, color: bool, json: bool) -> Result<Option<ValidFile>, CliError> {
    let checked = match engine::check_file(path) {
        Ok(checked) => checked,
        Err(error) => {
            if json {
                let (source, diagnostic) = unusable_file(path, &error);
                print_unplanned_document(&[diagnostic], &source)?;
            }
            return Err(error.into());
        }
    };
    report_checked(checked, color, json)
}

/// Prints a checked file's diagnostics to stderr: the valid file, or `None` when it
/// has errors (printed, and with `json` the document too).
fn report_checked(
    checked: CheckedFile,
    color: bool,
    json: bool,
) -> Result<Option<ValidFile>, CliError> {
    show(&checked.diagnostics, &checked.loaded.source, color)?;
    match checked.into_valid() {
        Ok(file) => Ok(Some(file)),
        Err(checked) => {
            if json {
                print_unplanned_document(&checked.diagnostics, &checked.loaded.source)?;
            }
            eprintln!(
                "{}: {}; nothing rendered or planned",
                checked.loaded.source.name,
                count_summary(&checked)
            );
            Ok(None)
        }
    }
}

/// "2 errors and 1 warning".
fn count_summary(checked: &CheckedFile) -> String {
    let (errors, warnings) = (checked.errors(), checked.warnings());
    if warnings > 0 {
        format!(
            "{} and {}",
            plural(errors, "error"),
            plural(warnings, "warning")
        )
    } else {
        plural(errors, "error")
    }
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}
