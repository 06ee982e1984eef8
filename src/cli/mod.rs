//! The command line: parses arguments, runs one subcommand, picks the output format and
//! the exit code. It holds no validation or planning logic of its own.
//!
//! stdout carries only data (JSON, schemas, completions); diagnostics and messages go
//! to stderr. Colour follows `--color`, and `auto` honours `NO_COLOR` and terminals.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::load::{self, Loaded};
use crate::diagnostic::Diagnostic;
use crate::report::{self, diagnostics as shown};
use crate::validate;

#[derive(Debug, Parser)]
#[command(
    name = "stowage",
    version,
    about = "Velero's backup locations, snapshot locations, credentials and schedules, declared in one file",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// When to colour output.
    #[arg(long, value_enum, global = true, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// The kubeconfig to use (default: KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, global = true, env = "KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the file against every rule Velero enforces, offline.
    Validate(ValidateArgs),
    /// Print the Kubernetes objects the file declares, as YAML.
    Render(RenderArgs),
    /// Show what applying the file would change.
    Plan(PlanArgs),
    /// Write the plan to the cluster, then optionally wait for Velero's verdict.
    Apply(ApplyArgs),
    /// Write a desired-state file from the cluster's Velero objects.
    Import(ImportArgs),
    /// Velero's locations (phase, last validation, default) and schedules (last and next run).
    Status(StatusArgs),
    /// Keep the cluster equal to the file: re-apply on edits, drift and every resync.
    Watch(WatchArgs),
    /// Print the JSON Schema of the desired-state file.
    Schema,
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, clap::Args)]
pub struct FileArg {
    /// The desired-state file (.toml, .yaml or .yml).
    #[arg(short, long, env = "STOWAGE_FILE", default_value = "stowage.toml")]
    pub file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub file: FileArg,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub file: FileArg,
    /// Write one file per object into this directory instead of printing them.
    #[arg(short, long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Leave Secrets out (every other object is printed).
    #[arg(long)]
    pub no_secrets: bool,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub file: FileArg,
    /// Let the plan delete all of the objects the file manages, or more than half of
    /// them (refused otherwise: a half-written file would delete what it left out).
    #[arg(long)]
    pub allow_mass_delete: bool,
    /// Plan against a saved state (`kubectl get bsl,vsl,schedules,secrets,deployments -n
    /// velero -o yaml`) instead of the cluster.
    #[arg(long, value_name = "FILE")]
    pub observed: Option<PathBuf>,
    /// Also save the plan (no secret values) for a later `apply`.
    #[arg(long, value_name = "PLAN")]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Exit 2 when the plan has changes, 0 when it has none.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Do not list the locations' buckets.
    #[arg(long)]
    pub no_bucket_checks: bool,
    /// How long each bucket check may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    pub bucket_timeout: u64,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub file: FileArg,
    /// Let the plan delete all of the objects the file manages, or more than half of
    /// them (refused otherwise: a half-written file would delete what it left out).
    #[arg(long)]
    pub allow_mass_delete: bool,
    /// A plan saved with `plan --out`: apply exactly it, or refuse if the file or the
    /// cluster changed since.
    #[arg(value_name = "PLAN", conflicts_with = "file")]
    pub plan: Option<PathBuf>,
    /// Apply without asking.
    #[arg(long)]
    pub auto_approve: bool,
    /// Wait until Velero has validated every written location (default 5m).
    #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, default_missing_value = "5m", require_equals = true, value_parser = go_duration)]
    pub wait: Option<std::time::Duration>,
    /// Take over fields that another field manager owns.
    #[arg(long)]
    pub force_conflicts: bool,
    /// Do not list the locations' buckets.
    #[arg(long)]
    pub no_bucket_checks: bool,
    /// How long each bucket check may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    pub bucket_timeout: u64,
    /// How long one write may take before it is retried.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub request_timeout: f64,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Write the file here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Velero's namespace.
    #[arg(short, long, default_value = "velero")]
    pub namespace: String,
    /// The Velero server's Deployment (read for its default-VSL flag).
    #[arg(long, default_value = "velero")]
    pub deployment: String,
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub file: FileArg,
    /// Let the plan delete all of the objects the file manages, or more than half of
    /// them (refused otherwise: a half-written file would delete what it left out).
    #[arg(long)]
    pub allow_mass_delete: bool,
    /// Re-plan this often even without events (a Go duration).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = positive_go_duration)]
    pub resync: std::time::Duration,
    /// Serve /healthz, /readyz and /metrics here (`127.0.0.1:0` picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Hold a Lease so that only one replica writes.
    #[arg(long)]
    pub leader_elect: bool,
    /// Plan and log, never write.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not list the locations' buckets before applying.
    #[arg(long)]
    pub no_bucket_checks: bool,
    /// How long each bucket check may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    pub bucket_timeout: u64,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Velero's namespace.
    #[arg(short, long, default_value = "velero")]
    pub namespace: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    fn enabled_for_stderr(self) -> bool {
        self.enabled(std::io::stderr().is_terminal())
    }

    fn enabled_for_stdout(self) -> bool {
        self.enabled(std::io::stdout().is_terminal())
    }

    fn enabled(self, terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && terminal
            }
        }
    }
}

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
    Load(#[from] load::LoadError),
    #[error(transparent)]
    Observe(#[from] crate::observe::ObserveError),
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
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Watch(#[from] crate::watch::WatchError),
}

impl CliError {
    /// A reader that stops early (`| head`) is not a failure.
    fn is_broken_pipe(&self) -> bool {
        match self {
            CliError::Output(error) => error.kind() == std::io::ErrorKind::BrokenPipe,
            CliError::Encode(error) => {
                error.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe)
            }
            CliError::Load(_)
            | CliError::Observe(_)
            | CliError::Write { .. }
            | CliError::Runtime(_)
            | CliError::Cluster(_)
            | CliError::Refused(_)
            | CliError::Watch(_) => false,
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

pub fn run(cli: Cli) -> Result<ExitStatus, CliError> {
    let color = cli.color.enabled_for_stderr();
    let target = crate::cluster::Target {
        kubeconfig: cli.kubeconfig.clone(),
        context: cli.context.clone(),
    };
    match cli.command {
        Command::Validate(args) => validate_command(&args, color),
        Command::Render(args) => render_command(&args, color),
        Command::Plan(args) => plan_command(&args, &target, color, cli.color.enabled_for_stdout()),
        Command::Apply(args) => {
            apply_command(&args, &target, color, cli.color.enabled_for_stdout())
        }
        Command::Import(args) => import_command(&args, &target, color),
        Command::Status(args) => status_command(&args, &target),
        Command::Watch(args) => watch_command(&args, &target, color),
        Command::Schema => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(schema_text().as_bytes())?;
            Ok(ExitStatus::Success)
        }
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "stowage", &mut std::io::stdout());
            Ok(ExitStatus::Success)
        }
    }
}

/// The JSON Schema as committed in `schema/stowage.schema.json`.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&crate::config::json_schema())
        .unwrap_or_else(|_| "{}".to_string());
    text.push('\n');
    text
}

/// The largest saved state (`--observed`) or saved plan stowage reads.
const OBSERVED_LIMIT: u64 = 256 << 20;

/// The `--format json` document of a file that nothing was planned for (validate, or a
/// plan stopped by the file): the plan document's shape, its diagnostics, no changes.
fn print_unplanned_document(
    diagnostics: &[Diagnostic],
    source: &crate::config::source::SourceMap,
) -> Result<(), CliError> {
    let located = shown::locate(diagnostics, source);
    let report = shown::ValidateReport {
        format_version: report::FORMAT_VERSION,
        valid: !diagnostics.iter().any(Diagnostic::is_error),
        diagnostics: shown::wire(&located, source),
        changes: [],
        unmanaged: [],
        summary: shown::EmptySummary::default(),
    };
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &report)?;
    stdout.write_all(b"\n")?;
    Ok(())
}

/// A file that cannot be used at all (missing, not a regular file, too large, not
/// UTF-8, of an unknown type), as the one diagnostic `stowage::file`.
fn unusable_file(
    path: &Path,
    error: &load::LoadError,
) -> (crate::config::source::SourceMap, Diagnostic) {
    (
        crate::config::source::SourceMap::new(path.display().to_string(), String::new(), None),
        Diagnostic::error(crate::diagnostic::Code::File, error.to_string()),
    )
}

/// Loads and validates a file: the diagnostics of both stages, in one list.
pub fn load_and_validate(path: &Path) -> Result<(Loaded, Vec<Diagnostic>), load::LoadError> {
    let loaded = load::load(path)?;
    let mut diagnostics = loaded.diagnostics.clone();
    diagnostics.extend(validate::validate(&loaded));
    Ok((loaded, diagnostics))
}

fn validate_command(args: &ValidateArgs, color: bool) -> Result<ExitStatus, CliError> {
    let (loaded, diagnostics) = match load_and_validate(&args.file.file) {
        Ok(loaded) => loaded,
        Err(error) if matches!(args.format, Format::Json) => {
            let (source, diagnostic) = unusable_file(&args.file.file, &error);
            print_unplanned_document(&[diagnostic], &source)?;
            return Ok(ExitStatus::Failure);
        }
        Err(error) => return Err(error.into()),
    };
    let located = shown::locate(&diagnostics, &loaded.source);
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    match args.format {
        Format::Json => print_unplanned_document(&diagnostics, &loaded.source)?,
        Format::Text => {
            let mut stderr = std::io::stderr().lock();
            shown::write_text(&located, &loaded.source, color, &mut stderr)?;
            let name = &loaded.source.name;
            if errors > 0 {
                writeln!(stderr, "{name}: {}", count_summary(errors, warnings))?;
            } else if let Some(config) = &loaded.config {
                let schedules: usize = config
                    .schedules
                    .iter()
                    .map(|(name, schedule)| schedule.instances(name).len())
                    .sum();
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
    Ok(if errors > 0 {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

fn count_summary(errors: usize, warnings: usize) -> String {
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

/// Loads and validates, printing the diagnostics to stderr. The file's model and
/// materials when it has no errors; `None` when it does (they were printed).
fn valid_or_report(
    path: &Path,
    color: bool,
    json: bool,
) -> Result<Option<(Loaded, Vec<Diagnostic>)>, CliError> {
    let (loaded, diagnostics) = match load_and_validate(path) {
        Ok(loaded) => loaded,
        Err(error) if json => {
            let (source, diagnostic) = unusable_file(path, &error);
            print_unplanned_document(&[diagnostic], &source)?;
            return Err(error.into());
        }
        Err(error) => return Err(error.into()),
    };
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let mut stderr = std::io::stderr().lock();
    let located = shown::locate(&diagnostics, &loaded.source);
    shown::write_text(&located, &loaded.source, color, &mut stderr)?;
    if errors > 0 || loaded.config.is_none() {
        if json {
            print_unplanned_document(&diagnostics, &loaded.source)?;
        }
        writeln!(
            stderr,
            "{}: {}; nothing rendered or planned",
            loaded.source.name,
            count_summary(errors, diagnostics.len() - errors)
        )?;
        return Ok(None);
    }
    Ok(Some((loaded, diagnostics)))
}

fn render_command(args: &RenderArgs, color: bool) -> Result<ExitStatus, CliError> {
    let Some((loaded, _)) = valid_or_report(&args.file.file, color, false)? else {
        return Ok(ExitStatus::Failure);
    };
    let Some(config) = &loaded.config else {
        return Ok(ExitStatus::Failure);
    };
    let desired = crate::render::render(config, &loaded.materials);
    let documents = crate::render::to_documents(&desired, !args.no_secrets);
    match &args.output_dir {
        Some(dir) => {
            let removed = write_documents(dir, &documents)?;
            eprintln!("wrote {} files to {}", documents.len(), dir.display());
            if removed > 0 {
                eprintln!("removed {removed} files an earlier render wrote there");
            }
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            for (index, document) in documents.iter().enumerate() {
                if index > 0 {
                    stdout.write_all(b"---\n")?;
                }
                stdout.write_all(document.yaml.as_bytes())?;
            }
        }
    }
    Ok(ExitStatus::Success)
}

/// Lists the files `render -o` wrote into a folder, so the next render can remove the
/// ones it no longer writes (a Secret left behind by `--no-secrets`, a location
/// dropped from the file) without touching anything else there.
const RENDERED_LIST: &str = ".stowage-rendered";

/// Writes `documents` into `dir` (Secrets readable by their owner only), removes what
/// an earlier render wrote there and this one does not, and returns how many it removed.
fn write_documents(dir: &Path, documents: &[crate::render::Document]) -> Result<usize, CliError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let write_error = |path: PathBuf| move |source| CliError::Write { path, source };
    std::fs::create_dir_all(dir).map_err(write_error(dir.to_path_buf()))?;
    let list = dir.join(RENDERED_LIST);
    let earlier = std::fs::read_to_string(&list).unwrap_or_default();
    for document in documents {
        let path = dir.join(&document.file_name);
        let mode = if document.secret { 0o600 } else { 0o644 };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&path)
            .map_err(write_error(path.clone()))?;
        // A file that existed keeps its old mode through open(): set it.
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(write_error(path.clone()))?;
        file.write_all(document.yaml.as_bytes())
            .map_err(write_error(path.clone()))?;
    }
    let current: std::collections::BTreeSet<&str> =
        documents.iter().map(|d| d.file_name.as_str()).collect();
    let mut removed = 0;
    for stale in earlier.lines().filter(|name| !current.contains(name)) {
        // Only plain names this render could have written: never a path elsewhere.
        if stale.is_empty() || stale.contains('/') || stale.starts_with('.') {
            continue;
        }
        match std::fs::remove_file(dir.join(stale)) {
            Ok(()) => removed += 1,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(write_error(dir.join(stale))(source)),
        }
    }
    let names: String = current.iter().map(|name| format!("{name}\n")).collect();
    std::fs::write(&list, names).map_err(write_error(list.clone()))?;
    Ok(removed)
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}

/// The state to plan against: a saved file, or the cluster (one LIST per kind).
fn observe(
    runtime: &tokio::runtime::Runtime,
    observed: Option<&Path>,
    target: &crate::cluster::Target,
    config: &crate::config::Config,
    desired: &crate::render::Desired,
) -> Result<
    (
        crate::observe::Observed,
        String,
        Option<crate::cluster::Cluster>,
    ),
    CliError,
> {
    match observed {
        Some(path) => {
            let name = path.display().to_string();
            let read_error = |source| crate::observe::ObserveError::Read {
                path: name.clone(),
                source,
            };
            let bytes = load::read_bounded(path, OBSERVED_LIMIT).map_err(read_error)?;
            let text = String::from_utf8(bytes).map_err(|_| {
                read_error(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not UTF-8 text",
                ))
            })?;
            Ok((crate::observe::from_yaml(&name, &text)?, name, None))
        }
        None => {
            let (observed, cluster) = runtime.block_on(async {
                let cluster = crate::cluster::connect(target).await?;
                let observed =
                    crate::cluster::observe::observe(&cluster, desired, &config.velero.deployment)
                        .await?;
                Ok::<_, CliError>((observed, cluster))
            })?;
            Ok((observed, cluster.url.clone(), Some(cluster)))
        }
    }
}

fn plan_command(
    args: &PlanArgs,
    target: &crate::cluster::Target,
    color: bool,
    stdout_color: bool,
) -> Result<ExitStatus, CliError> {
    let json = matches!(args.format, PlanFormat::Json);
    let Some((loaded, mut diagnostics)) = valid_or_report(&args.file.file, color, json)? else {
        return Ok(ExitStatus::Failure);
    };
    let Some(config) = &loaded.config else {
        return Ok(ExitStatus::Failure);
    };
    let mut desired = crate::render::render(config, &loaded.materials);
    desired.allow_mass_delete |= args.allow_mass_delete;
    // One runtime for the whole command: a client belongs to the runtime it was made in.
    let runtime = runtime()?;
    let (observed, observed_path, _) =
        observe(&runtime, args.observed.as_deref(), target, config, &desired)?;
    let checks = bucket_checks(args.no_bucket_checks, args.bucket_timeout);
    let plan = make_plan(&runtime, &loaded, config, &desired, &observed, checks);

    // Validation warnings were shown already; the plan's own findings are new.
    let mut stderr = std::io::stderr().lock();
    let plan_located = shown::locate(&plan.diagnostics, &loaded.source);
    shown::write_text(&plan_located, &loaded.source, color, &mut stderr)?;
    drop(stderr);
    diagnostics.extend(plan.diagnostics.iter().cloned());
    let located = shown::locate(&diagnostics, &loaded.source);

    let file_name = loaded.source.name.clone();
    let mut stdout = std::io::stdout().lock();
    match args.format {
        PlanFormat::Text => report::plan::write_text(
            &plan,
            &file_name,
            report::plan::TextOptions {
                color: stdout_color,
            },
            &mut stdout,
        )?,
        PlanFormat::Markdown => report::plan::write_markdown(&plan, &file_name, &mut stdout)?,
        PlanFormat::Json => {
            let wire = report::plan::wire(&plan, shown::wire(&located, &loaded.source));
            serde_json::to_writer_pretty(&mut stdout, &wire)?;
            stdout.write_all(b"\n")?;
        }
    }
    drop(stdout);

    if plan.has_errors() {
        eprintln!("the plan has errors; it cannot be applied");
        return Ok(ExitStatus::Failure);
    }
    if let Some(out) = &args.out {
        let wire = report::plan::wire(&plan, shown::wire(&located, &loaded.source));
        let saved = crate::plan::saved::SavedPlan {
            format_version: report::FORMAT_VERSION,
            kind: crate::plan::saved::KIND.to_string(),
            stowage_version: env!("CARGO_PKG_VERSION").to_string(),
            file: args.file.file.display().to_string(),
            inputs_sha256: crate::plan::saved::inputs_digest(
                &loaded.source.text,
                &loaded.materials,
            ),
            observed_source: observed_path,
            observed_sha256: crate::plan::saved::observed_digest(&observed),
            plan_sha256: crate::plan::saved::plan_digest(&serde_json::to_value(&wire)?),
            plan: serde_json::to_value(&wire)?,
        };
        let text = serde_json::to_string_pretty(&saved)?;
        std::fs::write(out, text + "\n").map_err(|source| CliError::Write {
            path: out.clone(),
            source,
        })?;
        eprintln!("saved the plan to {}", out.display());
    }
    Ok(if args.detailed_exitcode && plan.has_changes() {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}

/// The plan, with the buckets checked first unless `bucket_timeout` is `None`.
fn make_plan(
    runtime: &tokio::runtime::Runtime,
    loaded: &Loaded,
    config: &crate::config::Config,
    desired: &crate::render::Desired,
    observed: &crate::observe::Observed,
    bucket_timeout: Option<std::time::Duration>,
) -> crate::plan::Plan {
    match bucket_timeout {
        None => crate::plan::plan(desired, observed, &crate::plan::Context::default()),
        Some(timeout) => runtime.block_on(crate::observe::bucket::plan_with_buckets(
            config,
            &loaded.materials,
            desired,
            observed,
            timeout,
        )),
    }
}

/// `--bucket-timeout` unless `--no-bucket-checks`.
fn bucket_checks(skip: bool, seconds: u64) -> Option<std::time::Duration> {
    (!skip).then(|| std::time::Duration::from_secs(seconds))
}

/// A flag's Go duration (`90s`, `5m`), not negative; clap names the flag in its error.
fn go_duration(text: &str) -> Result<std::time::Duration, String> {
    let nanos = crate::validate::duration::parse_go_duration(text).map_err(|e| e.to_string())?;
    let nanos = u64::try_from(nanos).map_err(|_| "a duration cannot be negative".to_string())?;
    Ok(std::time::Duration::from_nanos(nanos))
}

/// A Go duration above zero, for periods (a zero period would never wait).
fn positive_go_duration(text: &str) -> Result<std::time::Duration, String> {
    let duration = go_duration(text)?;
    if duration.is_zero() {
        return Err("a period must be longer than zero".to_string());
    }
    Ok(duration)
}

/// Asks on the terminal; without one, refuses (a pipeline must say --auto-approve).
fn confirmed(auto_approve: bool) -> Result<bool, CliError> {
    if auto_approve {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Refused(
            "refusing to apply without confirmation: stdin is not a terminal (pass --auto-approve)"
                .to_string(),
        ));
    }
    eprint!("Apply these changes? Only 'yes' is accepted: ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

fn apply_command(
    args: &ApplyArgs,
    target: &crate::cluster::Target,
    color: bool,
    stdout_color: bool,
) -> Result<ExitStatus, CliError> {
    let wait = args.wait;
    let saved = args.plan.as_deref().map(read_saved_plan).transpose()?;
    let file = saved
        .as_ref()
        .map(|s| PathBuf::from(&s.file))
        .unwrap_or_else(|| args.file.file.clone());
    let Some((loaded, _)) = valid_or_report(&file, color, false)? else {
        return Ok(ExitStatus::Failure);
    };
    let Some(config) = &loaded.config else {
        return Ok(ExitStatus::Failure);
    };
    let mut desired = crate::render::render(config, &loaded.materials);
    desired.allow_mass_delete |= args.allow_mass_delete;
    let runtime = runtime()?;
    let (observed, _, cluster) = observe(&runtime, None, target, config, &desired)?;
    let Some(cluster) = cluster else {
        return Ok(ExitStatus::Failure);
    };
    // A saved plan is checked against a plan made the same way: with bucket checks
    // unless --no-bucket-checks, since what the buckets hold decides some risks.
    let checks = bucket_checks(args.no_bucket_checks, args.bucket_timeout);
    let plan = make_plan(&runtime, &loaded, config, &desired, &observed, checks);
    if let Some(saved) = &saved {
        check_saved_plan(saved, &loaded, &observed, &plan)?;
    }
    let mut stderr = std::io::stderr().lock();
    let located = shown::locate(&plan.diagnostics, &loaded.source);
    shown::write_text(&located, &loaded.source, color, &mut stderr)?;
    drop(stderr);
    let mut stdout = std::io::stdout().lock();
    report::plan::write_text(
        &plan,
        &loaded.source.name,
        report::plan::TextOptions {
            color: stdout_color,
        },
        &mut stdout,
    )?;
    drop(stdout);
    if plan.has_errors() {
        eprintln!("the plan has errors; nothing was applied");
        return Ok(ExitStatus::Failure);
    }
    if plan.has_changes() && !confirmed(args.auto_approve)? {
        eprintln!("apply cancelled; nothing was applied");
        return Ok(ExitStatus::Failure);
    }
    let started = chrono_now();
    let options = crate::cluster::apply::Options {
        force_conflicts: args.force_conflicts,
        request_timeout: std::time::Duration::from_secs_f64(args.request_timeout.max(0.001)),
    };
    let report = runtime.block_on(crate::cluster::apply::apply(
        &cluster, &plan, &desired, &observed, options,
    ));
    let mut stdout = std::io::stdout().lock();
    report::apply::write_text(&report, &mut stdout)?;
    drop(stdout);
    if !report.succeeded() {
        eprintln!(
            "the apply did not finish; run it again once the cause is fixed: what was written stays, and the next plan shows what is left"
        );
        return Ok(ExitStatus::Failure);
    }
    // Convergence: a plan of the same file, now, must have nothing left to do.
    if plan.has_changes() {
        let after = runtime.block_on(crate::cluster::observe::observe(
            &cluster,
            &desired,
            &config.velero.deployment,
        ))?;
        let replan = crate::plan::plan(&desired, &after, &crate::plan::Context::default());
        if let Some(problem) = crate::plan::not_converged(&replan, &after) {
            let mut stderr = std::io::stderr().lock();
            let located = shown::locate(std::slice::from_ref(&problem), &loaded.source);
            shown::write_text(&located, &loaded.source, color, &mut stderr)?;
            return Ok(ExitStatus::Failure);
        }
    }
    let Some(timeout) = wait else {
        return Ok(ExitStatus::Success);
    };
    let locations: Vec<String> = report
        .applied()
        .filter(|w| {
            w.object.kind == crate::render::Kind::BackupStorageLocation
                && w.action != crate::plan::Action::Delete
        })
        .map(|w| w.object.name.clone())
        .collect();
    if locations.is_empty() {
        return Ok(ExitStatus::Success);
    }
    let terminal = std::io::stderr().is_terminal();
    let verdicts = runtime.block_on(crate::cluster::apply::wait_for_locations(
        &cluster,
        &desired.namespace,
        &locations,
        &started,
        timeout,
        |done, all| {
            if terminal {
                eprint!("\rwaiting for Velero to validate the locations: {done}/{all}");
            }
        },
    ))?;
    if terminal {
        eprintln!();
    }
    let mut stdout = std::io::stdout().lock();
    let all_available = report::apply::write_verdicts(&verdicts, &mut stdout)?;
    Ok(if all_available {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

fn read_saved_plan(path: &Path) -> Result<crate::plan::saved::SavedPlan, CliError> {
    let bytes = load::read_bounded(path, OBSERVED_LIMIT)
        .map_err(|e| CliError::Refused(format!("cannot read the plan {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| CliError::Refused(format!("{} is not UTF-8 text", path.display())))?;
    let saved: crate::plan::saved::SavedPlan = serde_json::from_str(&text).map_err(|e| {
        CliError::Refused(format!(
            "{} is not a plan saved by `stowage plan --out`: {e}",
            path.display()
        ))
    })?;
    if saved.kind != crate::plan::saved::KIND || saved.format_version != report::FORMAT_VERSION {
        return Err(CliError::Refused(format!(
            "{} is not a plan this stowage can apply (kind {:?}, format {})",
            path.display(),
            saved.kind,
            saved.format_version
        )));
    }
    Ok(saved)
}

/// A saved plan applies only to the file and cluster it was made from.
fn check_saved_plan(
    saved: &crate::plan::saved::SavedPlan,
    loaded: &Loaded,
    observed: &crate::observe::Observed,
    plan: &crate::plan::Plan,
) -> Result<(), CliError> {
    use crate::plan::saved::{inputs_digest, observed_digest, plan_digest};
    if plan_digest(&saved.plan) != saved.plan_sha256 {
        return Err(CliError::Refused(
            "refusing to apply the saved plan: its content was edited after `stowage plan --out` wrote it; run `stowage plan` again".to_string(),
        ));
    }
    if inputs_digest(&loaded.source.text, &loaded.materials) != saved.inputs_sha256 {
        return Err(CliError::Refused(format!(
            "refusing to apply the saved plan: {} or the credentials it reads changed since the plan was made; run `stowage plan` again",
            saved.file
        )));
    }
    if observed_digest(observed) != saved.observed_sha256 {
        return Err(CliError::Refused(
            "refusing to apply the saved plan: the cluster's objects changed since the plan was made; run `stowage plan` again".to_string(),
        ));
    }
    // Everything the plan shows but its diagnostics (the saved plan's include bucket
    // checks, which are not made again): each change field by field, with its risks,
    // the unmanaged objects and the summary.
    // Backup counts move as Velero backs up; whether there are any is in the risks.
    let without_counts = |plan: &serde_json::Value| {
        let mut plan = plan.clone();
        if let Some(changes) = plan["changes"].as_array_mut() {
            for change in changes {
                if let Some(change) = change.as_object_mut() {
                    change.remove("backups");
                }
            }
        }
        plan
    };
    let now = without_counts(&serde_json::to_value(report::plan::wire(plan, Vec::new()))?);
    let then = without_counts(&saved.plan);
    let same = ["changes", "unmanaged", "summary"]
        .iter()
        .all(|key| then[key] == now[key]);
    if !same {
        return Err(CliError::Refused(
            "refusing to apply the saved plan: planning again gives different changes; run `stowage plan` again".to_string(),
        ));
    }
    Ok(())
}

/// Now, in the form Velero writes `lastValidationTime` (RFC 3339, seconds).
fn chrono_now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn import_command(
    args: &ImportArgs,
    target: &crate::cluster::Target,
    color: bool,
) -> Result<ExitStatus, CliError> {
    let observed = runtime()?.block_on(async {
        let cluster = crate::cluster::connect(target).await?;
        crate::cluster::observe::observe_namespace(&cluster, &args.namespace, &args.deployment, &[])
            .await
    })?;
    let text = crate::import::import(&observed, &args.namespace, &args.deployment);
    // What the cluster holds may break rules Velero enforces late: say so now.
    let name = args
        .output
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "imported.toml".to_string());
    let loaded = load::parse_str(&name, text.clone(), crate::config::source::Format::Toml);
    let mut diagnostics = loaded.diagnostics.clone();
    diagnostics.extend(validate::validate(&loaded));
    if !diagnostics.is_empty() {
        let located = shown::locate(&diagnostics, &loaded.source);
        shown::write_text(
            &located,
            &loaded.source,
            color,
            &mut std::io::stderr().lock(),
        )?;
        eprintln!(
            "the cluster's Velero objects have the problems above; the file keeps them as they are"
        );
    }
    match &args.output {
        Some(path) => {
            std::fs::write(path, &text).map_err(|source| CliError::Write {
                path: path.clone(),
                source,
            })?;
            eprintln!(
                "wrote {}; `stowage plan -f {}` shows what adopting it changes",
                path.display(),
                path.display()
            );
        }
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(ExitStatus::Success)
}

fn status_command(
    args: &StatusArgs,
    target: &crate::cluster::Target,
) -> Result<ExitStatus, CliError> {
    let observed = runtime()?.block_on(async {
        let cluster = crate::cluster::connect(target).await?;
        crate::cluster::observe::observe_namespace(&cluster, &args.namespace, "velero", &[]).await
    })?;
    report::status::write_text(&observed, chrono::Utc::now(), &mut std::io::stdout().lock())?;
    Ok(ExitStatus::Success)
}

fn watch_command(
    args: &WatchArgs,
    target: &crate::cluster::Target,
    color: bool,
) -> Result<ExitStatus, CliError> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STOWAGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(color).init(),
    }
    let options = crate::watch::Options {
        file: args.file.file.clone(),
        target: target.clone(),
        resync: args.resync,
        listen: args.listen,
        leader_elect: args.leader_elect,
        dry_run: args.dry_run,
        bucket_checks: !args.no_bucket_checks,
        bucket_timeout: std::time::Duration::from_secs(args.bucket_timeout),
        allow_mass_delete: args.allow_mass_delete,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    // The handlers exist before the first apply starts, so a SIGTERM during it finishes
    // that round instead of killing the process mid-write.
    let shutdown = {
        let _context = runtime.enter();
        shutdown_signal().map_err(CliError::Runtime)?
    };
    runtime.block_on(crate::watch::run(options, shutdown))?;
    Ok(ExitStatus::Success)
}

/// Installs the SIGINT and SIGTERM handlers now; the future ends at the first signal.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
