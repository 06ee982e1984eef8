//! The command line's shape: clap structures, and their resolution into the engine's
//! typed options (each in one place). Flags shared by several commands are declared
//! once and flattened; durations are parsed here, so a bad value is reported by clap
//! under the flag's own name.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::engine::{ApplyOptions, PlanOptions};

#[derive(Debug, Parser)]
#[command(
    name = "stowage",
    version = crate::build::LONG_VERSION,
    about = "Velero's backup locations, snapshot locations, credentials and schedules, declared in one file",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// When to colour output.
    #[arg(long, value_enum, global = true, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// The kubeconfig to use (default: the files KUBECONFIG lists, ~/.kube/config, or
    /// the pod's service account).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// How long a request to the API server may go unanswered before it fails (a Go
    /// duration such as 10s; a bare number is seconds).
    #[arg(long, global = true, value_name = "DURATION", default_value = "30s", value_parser = request_timeout)]
    pub request_timeout: Duration,
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
    /// Prove copies restore: restore each copy's newest backup into new namespaces,
    /// compare, record the verdict, clean up.
    Drill(DrillArgs),
    /// Print the JSON Schema of the desired-state file.
    Schema {
        /// The schema for a file that extends another: nothing in it is required.
        #[arg(long)]
        overlay: bool,
    },
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

/// `-f` for the commands that take a fleet: several files, or a directory of them.
#[derive(Debug, clap::Args)]
pub struct FilesArg {
    /// The desired-state file (.toml, .yaml or .yml); repeat it, or name a directory,
    /// for a fleet (one cluster per file).
    #[arg(
        short = 'f',
        long = "file",
        env = "STOWAGE_FILE",
        default_value = "stowage.toml",
        value_name = "FILE|DIR",
        num_args = 1..,
    )]
    pub files: Vec<PathBuf>,
}

impl FilesArg {
    /// The one file of a single-cluster run, when `-f` names exactly one file.
    pub fn single(&self) -> Option<&PathBuf> {
        (!crate::engine::fleet::is_fleet(&self.files))
            .then(|| self.files.first())
            .flatten()
    }
}

#[derive(Debug, clap::Args)]
pub struct ParallelArg {
    /// With several files: how many clusters to work on at once. A cluster's plan is
    /// mostly waiting on its API server, so the default lets a fleet of up to 64 wait
    /// together.
    #[arg(long = "parallel", value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub clusters: u16,
}

impl ParallelArg {
    pub fn get(&self) -> usize {
        usize::from(self.clusters)
    }
}

#[derive(Debug, clap::Args)]
pub struct MassDeleteArg {
    /// Let the plan delete all of the objects the file manages, or more than half of
    /// them (refused otherwise: a half-written file would delete what it left out).
    #[arg(long)]
    pub allow_mass_delete: bool,
}

#[derive(Debug, clap::Args)]
pub struct BucketCheckArgs {
    /// Do not list the locations' buckets.
    #[arg(long)]
    pub no_bucket_checks: bool,
    /// How long each bucket check may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    pub bucket_timeout: u64,
}

impl BucketCheckArgs {
    /// How long each check may take; `None` with `--no-bucket-checks`.
    pub fn timeout(&self) -> Option<Duration> {
        (!self.no_bucket_checks).then(|| Duration::from_secs(self.bucket_timeout))
    }
}

/// The engine's plan options from the flags every planning command shares: the one
/// place they are resolved.
fn plan_options(
    mass_delete: &MassDeleteArg,
    buckets: &BucketCheckArgs,
    now: Option<chrono::DateTime<chrono::Utc>>,
) -> PlanOptions {
    PlanOptions {
        allow_mass_delete: mass_delete.allow_mass_delete,
        bucket_timeout: buckets.timeout(),
        now,
    }
}

/// The engine's apply options: conflicts forced or reported, and no fence (only the
/// daemon's leader election fences its writes).
fn apply_options(force_conflicts: bool) -> ApplyOptions {
    ApplyOptions {
        force_conflicts,
        fence: None,
    }
}

impl PlanArgs {
    pub fn plan_options(&self) -> PlanOptions {
        plan_options(&self.mass_delete, &self.buckets, self.now)
    }
}

impl ApplyArgs {
    /// As of now: an apply writes what a plan made now says.
    pub fn plan_options(&self) -> PlanOptions {
        plan_options(&self.mass_delete, &self.buckets, None)
    }

    pub fn apply_options(&self) -> ApplyOptions {
        apply_options(self.force_conflicts)
    }
}

impl WatchArgs {
    pub fn plan_options(&self) -> PlanOptions {
        plan_options(&self.mass_delete, &self.buckets, None)
    }

    pub fn apply_options(&self) -> ApplyOptions {
        apply_options(self.force_conflicts)
    }
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub file: FilesArg,
    /// Print every effective value with the file and line it came from (for files
    /// that extend others).
    #[arg(long)]
    pub explain: bool,
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
    pub file: FilesArg,
    #[command(flatten)]
    pub parallel: ParallelArg,
    #[command(flatten)]
    pub mass_delete: MassDeleteArg,
    /// Plan against a saved state (`kubectl get bsl,vsl,schedules,secrets,deployments -n
    /// velero -o yaml`) instead of the cluster.
    #[arg(long, value_name = "FILE")]
    pub observed: Option<PathBuf>,
    /// Also save the plan (no secret values) for a later `apply`; for a fleet, a
    /// directory of one plan per cluster.
    #[arg(long, value_name = "PLAN|DIR")]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Exit 2 when the plan has changes, 0 when it has none.
    #[arg(long)]
    pub detailed_exitcode: bool,
    #[command(flatten)]
    pub buckets: BucketCheckArgs,
    /// Plan as of this time (RFC 3339) instead of now: when each Schedule's first
    /// backup starts depends on it. For reproducible plans of a saved state.
    #[arg(long, value_name = "TIME", hide = true, value_parser = rfc3339)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub file: FilesArg,
    #[command(flatten)]
    pub parallel: ParallelArg,
    #[command(flatten)]
    pub mass_delete: MassDeleteArg,
    /// A plan saved with `plan --out` (or a directory of them, for a fleet): apply
    /// exactly it, or refuse if the file or the cluster changed since.
    #[arg(value_name = "PLAN|DIR", conflicts_with = "files")]
    pub plan: Option<PathBuf>,
    /// Apply without asking.
    #[arg(long)]
    pub auto_approve: bool,
    /// Wait until Velero has validated every written location (default 5m).
    #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, default_missing_value = "5m", require_equals = true, value_parser = go_duration)]
    pub wait: Option<Duration>,
    /// Take over fields that another field manager owns.
    #[arg(long)]
    pub force_conflicts: bool,
    #[command(flatten)]
    pub buckets: BucketCheckArgs,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Write the file here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace the file `-o` names if it exists.
    #[arg(long, requires = "output")]
    pub force: bool,
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
    #[command(flatten)]
    pub mass_delete: MassDeleteArg,
    /// Re-plan this often even without events (a Go duration, at least 1s: each
    /// resync reads the cluster).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = resync_period)]
    pub resync: Duration,
    /// Serve /healthz, /readyz and /metrics here (`127.0.0.1:0` picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// How long every input (the file, its bases, its credential and CA files) must
    /// be unchanged before a plan that deletes, writes a credential, repoints a location
    /// or moves the default is written.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = go_duration)]
    pub quiet_period: Duration,
    /// Hold a Lease so that only one replica writes.
    #[arg(long)]
    pub leader_elect: bool,
    /// How long another replica waits on an unchanged Lease before taking it over.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = positive_go_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long after its last renewal the holder still writes; shorter than the lease
    /// duration, so it has stopped before anyone may take over.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = positive_go_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// How often the holder renews and the others look.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = positive_go_duration)]
    pub leader_elect_retry_period: Duration,
    /// Plan and log, never write.
    #[arg(long)]
    pub dry_run: bool,
    /// Take over fields another field manager set (each takeover is logged and
    /// counted); `--force-conflicts=false` reports the conflict and stays not ready.
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1, default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set)]
    pub force_conflicts: bool,
    #[command(flatten)]
    pub buckets: BucketCheckArgs,
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
    #[command(flatten)]
    pub file: FilesArg,
    #[command(flatten)]
    pub parallel: ParallelArg,
    /// Exit 1 when any copy of a schedule is behind or missing, or not proven restorable
    /// within its drill period and rpo.
    #[arg(long)]
    pub check: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub buckets: BucketCheckArgs,
}

#[derive(Debug, clap::Args)]
pub struct DrillArgs {
    #[command(flatten)]
    pub file: FilesArg,
    #[command(flatten)]
    pub parallel: ParallelArg,
    /// Drill only this copy (`SCHEDULE/LOCATION`), or every copy of one schedule
    /// (`SCHEDULE`); a schedule without a `drill` table is drilled with its defaults.
    #[arg(long, value_name = "SCHEDULE[/LOCATION]")]
    pub copy: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// How long each read of a bucket may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    pub bucket_timeout: u64,
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
    pub fn enabled_for_stderr(self) -> bool {
        self.enabled(std::io::stderr().is_terminal())
    }

    pub fn enabled_for_stdout(self) -> bool {
        self.enabled(std::io::stdout().is_terminal())
    }

    fn enabled(self, terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            // As most terminal programs do: NO_COLOR (any value) and TERM=dumb turn it
            // off, and so does output that is not a terminal.
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
                    && terminal
            }
        }
    }
}

/// An RFC 3339 time, in UTC.
fn rfc3339(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("not an RFC 3339 time: {e}"))
}

/// A flag's Go duration (`90s`, `5m`), not negative; clap names the flag in its error.
fn go_duration(text: &str) -> Result<Duration, String> {
    let nanos = crate::velero::duration::parse_go_duration(text)?;
    let nanos = u64::try_from(nanos).map_err(|_| "a duration cannot be negative".to_string())?;
    Ok(Duration::from_nanos(nanos))
}

/// `--request-timeout`: a Go duration above zero, or a bare number of seconds (as
/// earlier versions took it).
fn request_timeout(text: &str) -> Result<Duration, String> {
    let duration = match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 => Duration::from_secs_f64(seconds),
        Ok(_) => return Err("a timeout must be longer than zero".to_string()),
        Err(_) => positive_go_duration(text)?,
    };
    Ok(duration)
}

/// `--resync`: at least a second, since every resync reads the cluster.
fn resync_period(text: &str) -> Result<Duration, String> {
    let duration = positive_go_duration(text)?;
    if duration < Duration::from_secs(1) {
        return Err(format!(
            "{text} would read the cluster nonstop; a resync period is at least 1s"
        ));
    }
    Ok(duration)
}

/// A Go duration above zero, for periods (a zero period would never wait).
fn positive_go_duration(text: &str) -> Result<Duration, String> {
    let duration = go_duration(text)?;
    if duration.is_zero() {
        return Err("a period must be longer than zero".to_string());
    }
    Ok(duration)
}
