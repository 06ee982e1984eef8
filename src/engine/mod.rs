//! The engine: the single-cluster pipeline, as typed steps that every front end drives.
//!
//! load → validate ([`check_file`]) → render ([`ValidFile::desired`]) → observe
//! ([`observe`], from a saved state or a connected cluster) → check the buckets
//! ([`check_buckets`]) → plan, once ([`plan`]) → save or verify ([`saved`]) → apply and
//! check convergence ([`apply`]) → wait for Velero ([`wait_for_verdicts`]).
//! [`converge`] runs plan → apply → convergence for the daemon. `cli`, `watch`, tests and benches
//! call these; none of them strings the stages together itself, and the engine prints
//! nothing: it returns values, and the front end picks a view and an exit code.

pub mod drill;
pub mod fights;
pub mod fleet;
pub mod inputs;
pub mod output;
pub mod saved;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::buckets;
use crate::cluster::{self, Cluster, ClusterError};
use crate::config::Config;
use crate::config::load::{self, LoadError, Loaded, Materials};
use crate::config::source::SourceMap;
use crate::diagnostic::{Code, Diagnostic};
use crate::observe::{BucketFindings, ObserveError, Observed};
use crate::plan::{self, Action, Plan};
use crate::render::{self, Desired};
use crate::validate;
use crate::velero::{Kind, ObjectRef};

/// The largest saved state (`--observed`) stowage reads.
const OBSERVED_LIMIT: u64 = 256 << 20;

/// A file as loaded and validated: every diagnostic of both stages, in one list.
#[derive(Debug, Clone)]
pub struct CheckedFile {
    pub loaded: Loaded,
    pub diagnostics: Vec<Diagnostic>,
}

/// A file without errors: its model, what it points at, and its warnings.
#[derive(Debug, Clone)]
pub struct ValidFile {
    pub config: Config,
    pub materials: Materials,
    pub source: SourceMap,
    /// Warnings only: a valid file has no errors.
    pub diagnostics: Vec<Diagnostic>,
}

/// Loads and validates the file at `path`. `Err` only when it cannot be used at all
/// (missing, not a regular file, too large, not UTF-8, of an unknown type).
pub fn check_file(path: &Path) -> Result<CheckedFile, LoadError> {
    Ok(CheckedFile::of(load::load(path)?))
}

/// `check_file` with environment variables read through `env`.
pub fn check_file_with_env(
    path: &Path,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<CheckedFile, LoadError> {
    Ok(CheckedFile::of(load::load_with_env(path, env)?))
}

/// The same for text that is not on disk (what `import` writes), named `name`.
pub fn check_text(name: &str, text: String, format: crate::config::source::Format) -> CheckedFile {
    CheckedFile::of(load::parse_str(name, text, format))
}

impl CheckedFile {
    fn of(loaded: Loaded) -> CheckedFile {
        let mut diagnostics = loaded.diagnostics.clone();
        diagnostics.extend(validate::validate(&loaded));
        CheckedFile {
            loaded,
            diagnostics,
        }
    }

    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }

    /// The paths whose edits change what the file declares: `file` itself, its
    /// credential files and CA bundles (relative to the file's folder).
    pub fn inputs(&self, file: &Path) -> Vec<PathBuf> {
        let base = file.parent().unwrap_or(Path::new("."));
        let mut paths = vec![file.to_path_buf()];
        // The bases it extends: an edit of one changes the file.
        paths.extend(self.loaded.source.file_names().skip(1).map(PathBuf::from));
        if let Some(config) = &self.loaded.config {
            paths.extend(
                config
                    .credentials
                    .values()
                    .filter_map(|c| c.file.as_ref())
                    .map(|p| base.join(p)),
            );
            paths.extend(
                config
                    .backup_locations
                    .values()
                    .filter_map(|l| l.ca_cert_file.as_ref())
                    .map(|p| base.join(p)),
            );
        }
        paths
    }

    /// The file with its model, when it has no errors; itself otherwise.
    pub fn into_valid(self) -> Result<ValidFile, Box<CheckedFile>> {
        if self.errors() > 0 {
            return Err(Box::new(self));
        }
        let CheckedFile {
            loaded,
            diagnostics,
        } = self;
        match loaded.config {
            Some(config) => Ok(ValidFile {
                config,
                materials: loaded.materials,
                source: loaded.source,
                diagnostics,
            }),
            None => Err(Box::new(CheckedFile {
                loaded: Loaded {
                    config: None,
                    ..loaded
                },
                diagnostics,
            })),
        }
    }
}

impl ValidFile {
    /// The objects the file declares; `allow_mass_delete` adds to the file's own.
    pub fn desired(&self, allow_mass_delete: bool) -> Desired {
        let mut desired = render::render(&self.config, &self.materials);
        desired.allow_mass_delete |= allow_mass_delete;
        desired
    }
}

/// Why the engine could not go on. Refusals that are findings about the file or the
/// plan are diagnostics, not errors.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Observe(#[from] ObserveError),
    #[error(transparent)]
    SavedPlan(#[from] saved::SavedPlanError),
    #[error(transparent)]
    Stale(#[from] saved::Stale),
    #[error("{file} has {errors} error(s); run `stowage validate -f {file}`")]
    InvalidFile { file: String, errors: usize },
    #[error("the plan has errors; nothing was applied")]
    PlanHasErrors,
    #[error(transparent)]
    Moved(#[from] inputs::Moved),
    #[error(transparent)]
    Snapshot(#[from] inputs::SnapshotError),
}

/// Where the state to plan against comes from.
#[derive(Clone, Copy)]
pub enum StateSource<'a> {
    /// A saved `kubectl get … -o yaml` (`--observed FILE`).
    Saved(&'a Path),
    /// The cluster, read now.
    Cluster(&'a Cluster),
}

/// The observed state and where it came from (a path, or the cluster's URL).
pub async fn observe(
    file: &ValidFile,
    desired: &Desired,
    source: StateSource<'_>,
) -> Result<(Observed, String), EngineError> {
    match source {
        StateSource::Saved(path) => {
            let name = path.display().to_string();
            let read_error = |source| ObserveError::Read {
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
            Ok((crate::observe::from_yaml(&name, &text)?, name))
        }
        StateSource::Cluster(cluster) => {
            let observed =
                cluster::read::state(cluster, desired, &file.config.velero.deployment).await?;
            Ok((observed, cluster.url.clone()))
        }
    }
}

/// Lists the declared locations' buckets and the current places of the locations a
/// plan would delete or repoint, all at once, each within `timeout`.
pub async fn check_buckets(
    file: &ValidFile,
    desired: &Desired,
    observed: &Observed,
    timeout: Duration,
) -> BucketFindings {
    let declared = buckets::desired_targets(&file.config, &file.materials, desired, observed);
    let declared_count = declared.len();
    let at_risk = plan::places_at_risk(desired, observed)
        .into_iter()
        .filter_map(|location| {
            buckets::current_target(location, &file.config, &file.materials, desired, observed)
        });
    let mut reports =
        buckets::check_all(declared.into_iter().chain(at_risk).collect(), timeout).await;
    let current = reports.split_off(declared_count);
    BucketFindings {
        declared: reports,
        current,
    }
}

/// How to plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    /// `--allow-mass-delete`.
    pub allow_mass_delete: bool,
    /// Check the buckets first, each within this long; `None` skips them.
    pub bucket_timeout: Option<Duration>,
    /// Plan as of this time (when each Schedule's first backup starts); `None`: now.
    pub now: Option<chrono::DateTime<chrono::Utc>>,
}

/// A plan and everything it was made from.
#[derive(Debug, Clone)]
pub struct Planned {
    pub desired: Desired,
    pub observed: Observed,
    /// Where `observed` came from: a path, or the cluster's URL.
    pub observed_from: String,
    pub plan: Plan,
}

/// Renders, observes, checks the buckets (unless told not to) and plans, once.
pub async fn plan(
    file: &ValidFile,
    source: StateSource<'_>,
    options: PlanOptions,
) -> Result<Planned, EngineError> {
    let desired = file.desired(options.allow_mass_delete);
    let (observed, observed_from) = observe(file, &desired, source).await?;
    let buckets = match options.bucket_timeout {
        Some(timeout) => Some(check_buckets(file, &desired, &observed, timeout).await),
        None => None,
    };
    let now = options.now.unwrap_or_else(chrono::Utc::now);
    let mut plan = plan::plan(
        &desired,
        &observed,
        &plan::Context {
            buckets,
            now: Some(now),
        },
    );
    plan.diagnostics
        .extend(version_findings(file, &desired, &observed));
    Ok(Planned {
        desired,
        observed,
        observed_from,
        plan,
    })
}

/// The Velero-version rules against the cluster: a declared version the cluster does
/// not run, or (with none declared) the rules of the version it runs. A declared
/// version's own rules were checked offline with the file.
fn version_findings(
    file: &ValidFile,
    desired: &Desired,
    observed: &Observed,
) -> Vec<crate::diagnostic::Diagnostic> {
    use crate::validate::versions;
    use crate::velero::version::VeleroVersion;
    let declared = file
        .config
        .velero
        .version
        .as_deref()
        .and_then(VeleroVersion::parse);
    let actual = observed.velero_version(&desired.velero_deployment);
    let mut found = Vec::new();
    // The version to hold the cluster's resource policies to: the declared one, else
    // the cluster's. The file's own fields were held to a declared one offline.
    let target = match (declared, actual) {
        (Some(declared), Some((actual, from))) => {
            found.extend(versions::mismatch(declared, actual, &from));
            Some((declared, versions::Target::Declared))
        }
        (Some(declared), None) => Some((declared, versions::Target::Declared)),
        (None, Some((actual, from))) => {
            let target = versions::Target::Cluster(from);
            found.extend(versions::rules(&file.config, actual, &target));
            Some((actual, target))
        }
        (None, None) => None,
    };
    if let Some((version, target)) = target {
        found.extend(versions::resource_policy_rules(
            &file.config,
            version,
            &target,
            &observed.resource_policies,
        ));
    }
    found
}

impl Planned {
    /// The plan as `plan --out` saves it; `file` is the path as given.
    pub fn save(&self, file: &ValidFile, path_given: &str) -> saved::SavedPlan {
        saved::SavedPlan::new(
            path_given,
            &file.source.text,
            &file.materials,
            &self.observed,
            &self.observed_from,
            &self.plan,
        )
    }

    /// Refuses when `saved` no longer describes this plan (see [`saved::Stale`]).
    pub fn verify(&self, saved: &saved::SavedPlan, file: &ValidFile) -> Result<(), saved::Stale> {
        saved.verify(
            &file.source.text,
            &file.materials,
            &self.observed,
            &self.plan,
        )
    }
}

/// How to write.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Take over fields another field manager owns.
    pub force_conflicts: bool,
    /// With leader election, the Lease's fence: every write request passes it.
    pub fence: Option<cluster::lease::Fence>,
}

/// What an apply did.
#[derive(Debug, Clone)]
pub struct Applied {
    pub report: cluster::apply::Report,
    /// After a complete apply: what a plan of the same file still changes, as one
    /// `stowage::not-converged` error. `None` when nothing is left (or nothing ran).
    pub not_converged: Option<Diagnostic>,
    /// When the writes started (RFC 3339, seconds): Velero's validations after this
    /// are verdicts on them.
    pub started: String,
    /// The cluster as read for the convergence check, after the writes.
    pub after: Option<Box<Observed>>,
}

impl Applied {
    /// Every write landed and the cluster now equals the file.
    pub fn converged(&self) -> bool {
        self.report.succeeded() && self.not_converged.is_none()
    }
}

/// A front end's answer when asked whether a plan may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Approve,
    Cancel,
    /// There is no one to ask (no terminal, and approval was not given in advance).
    Unanswerable,
}

/// The front end's part of an apply: what it shows and whom it asks. The daemon and a
/// fleet already confirmed approve without asking.
pub trait Approver {
    /// The deletion guard is the plan's only error: may the deletions go ahead? Asked
    /// before anything else. No cancels the apply; unanswerable leaves the guard to
    /// refuse the plan.
    fn allow_mass_delete(&mut self, _plan: &Plan) -> Answer {
        Answer::Unanswerable
    }
    /// Shown the plan as it will be judged (errors included), before the judgement.
    fn review(&mut self, _plan: &Plan) {}
    /// The plan has no errors and changes something: may it be written?
    fn approve(&mut self, plan: &Plan) -> Answer;
}

/// Approval given in advance: `--auto-approve`, a confirmed fleet, the daemon.
pub struct Approved;

impl Approver for Approved {
    fn approve(&mut self, _plan: &Plan) -> Answer {
        Answer::Approve
    }
}

/// Nothing is approved: `watch --dry-run` plans and reports only.
pub struct DryRun;

impl Approver for DryRun {
    fn approve(&mut self, _plan: &Plan) -> Answer {
        Answer::Cancel
    }
}

/// When the inputs a plan was made from let it be written ([`inputs::guard`]).
pub enum InputsGate<'a> {
    /// Wait until they are steady and unchanged (a command has nothing else to do).
    Wait(&'a inputs::Snapshot),
    /// Decide now and hand a wait back (the daemon serves events meanwhile).
    Decide(&'a mut (dyn FnMut(&Plan) -> inputs::Guard + Send)),
}

/// What [`apply`] did.
#[derive(Debug)]
pub enum ApplyOutcome {
    /// The plan changes nothing: nothing was asked or written.
    Unchanged,
    /// Not approved: nothing was written.
    NotApproved(Answer),
    /// The inputs are not ready to be written from: nothing was written yet.
    Deferred {
        wait: Duration,
        reason: String,
    },
    Applied(Applied),
}

/// The one apply of every front end (a command, each cluster of a fleet, the daemon's
/// rounds): the deletion guard's override, the plan shown, a plan with errors refused,
/// approval, the inputs' gate, then the writes in the plan's stages and a plan of the
/// same file again, which after a complete apply must be empty.
pub async fn apply(
    cluster: &Cluster,
    file: &ValidFile,
    planned: &mut Planned,
    approver: &mut (dyn Approver + Send),
    gate: InputsGate<'_>,
    options: &ApplyOptions,
) -> Result<ApplyOutcome, EngineError> {
    if only_mass_delete(&planned.plan) {
        match approver.allow_mass_delete(&planned.plan) {
            Answer::Approve => planned
                .plan
                .diagnostics
                .retain(|d| d.code != Code::MassDelete),
            Answer::Cancel => return Ok(ApplyOutcome::NotApproved(Answer::Cancel)),
            // No one to ask: the guard stands, and refuses the plan below.
            Answer::Unanswerable => {}
        }
    }
    approver.review(&planned.plan);
    if planned.plan.has_errors() {
        return Err(EngineError::PlanHasErrors);
    }
    if !planned.plan.has_changes() {
        return Ok(ApplyOutcome::Unchanged);
    }
    match approver.approve(&planned.plan) {
        Answer::Approve => {}
        answer => return Ok(ApplyOutcome::NotApproved(answer)),
    }
    match gate {
        InputsGate::Wait(snapshot) => {
            inputs::wait_until_writable(&planned.plan, snapshot, inputs::STEADY).await?;
        }
        InputsGate::Decide(guard) => match guard(&planned.plan) {
            inputs::Guard::Write => {}
            inputs::Guard::Wait { wait, reason } => {
                return Ok(ApplyOutcome::Deferred { wait, reason });
            }
            inputs::Guard::Moved => {
                return Ok(ApplyOutcome::Deferred {
                    wait: Duration::ZERO,
                    reason: "an input changed since it was read; reading it again".to_string(),
                });
            }
        },
    }
    execute(cluster, file, planned, options)
        .await
        .map(ApplyOutcome::Applied)
}

/// Whether the deletion guard is the plan's only error.
fn only_mass_delete(plan: &Plan) -> bool {
    let mut errors = plan.diagnostics.iter().filter(|d| d.is_error()).peekable();
    errors.peek().is_some() && errors.all(|d| d.code == Code::MassDelete)
}

/// Writes the plan, then plans the same file again against the cluster: after a
/// complete apply nothing may be left to change. Only [`apply`] calls it, after its
/// checks.
async fn execute(
    cluster: &Cluster,
    file: &ValidFile,
    planned: &Planned,
    options: &ApplyOptions,
) -> Result<Applied, EngineError> {
    let started = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let report = cluster::apply::apply(
        cluster,
        &planned.plan,
        cluster::apply::Options {
            force_conflicts: options.force_conflicts,
            fence: options.fence.clone(),
        },
    )
    .await;
    let mut not_converged = None;
    let mut read_after = None;
    if report.succeeded() && planned.plan.has_changes() {
        let after =
            cluster::read::state(cluster, &planned.desired, &file.config.velero.deployment).await?;
        let replan = plan::plan(&planned.desired, &after, &plan::Context::default());
        not_converged = plan::not_converged(&replan, &after);
        read_after = Some(Box::new(after));
    }
    Ok(Applied {
        report,
        not_converged,
        started,
        after: read_after,
    })
}

/// The locations an apply wrote (and did not delete): the ones Velero validates next.
pub fn written_locations(applied: &Applied) -> Vec<String> {
    applied
        .report
        .applied()
        .filter(|w| w.object.kind == Kind::BackupStorageLocation && w.action != Action::Delete)
        .map(|w| w.object.name.clone())
        .collect()
}

/// Waits until Velero has validated each location the apply wrote, or `timeout`.
pub async fn wait_for_verdicts(
    cluster: &Cluster,
    planned: &Planned,
    applied: &Applied,
    timeout: Duration,
    progress: impl FnMut(usize, usize),
) -> Result<Vec<(String, cluster::apply::Verdict)>, EngineError> {
    let locations = written_locations(applied);
    if locations.is_empty() {
        return Ok(Vec::new());
    }
    Ok(cluster::apply::wait_for_locations(
        cluster,
        &planned.desired.namespace,
        &locations,
        &applied.started,
        timeout,
        progress,
    )
    .await?)
}

/// What `import` read: the file it writes, checked like any other.
#[derive(Debug, Clone)]
pub struct Imported {
    pub text: String,
    pub checked: CheckedFile,
}

/// Reads Velero's objects in `namespace` and writes them as a file named `name`.
pub async fn import(
    cluster: &Cluster,
    namespace: &str,
    deployment: &str,
    name: &str,
) -> Result<Imported, EngineError> {
    let observed = cluster::read::namespace_state(cluster, namespace, deployment, &[]).await?;
    Ok(import_state(&observed, namespace, deployment, name))
}

/// The file `import` writes for `observed`, checked like any other and then planned
/// against the state it came from: whatever that plan would change beyond adopting
/// the objects (stowage's two labels) is something the file cannot say, and a warning
/// names it where the file declares the object.
pub fn import_state(
    observed: &Observed,
    namespace: &str,
    deployment: &str,
    name: &str,
) -> Imported {
    let text = crate::import::import(observed, namespace, deployment);
    let mut checked = check_text(name, text.clone(), crate::config::source::Format::Toml);
    if let Some(config) = &checked.loaded.config {
        let desired = render::render(config, &checked.loaded.materials);
        let replan = plan::plan(&desired, observed, &plan::Context::default());
        checked.diagnostics.extend(not_carried(&replan, &desired));
    }
    Imported { text, checked }
}

/// The changes of a plan made from an imported file, other than adoption, as warnings.
fn not_carried(replan: &Plan, desired: &Desired) -> Vec<Diagnostic> {
    let adoption = [crate::velero::MANAGED_BY_LABEL, crate::velero::OWNER_LABEL]
        .map(|label| crate::velero::FieldPath::of(["metadata", "labels"]).field(label));
    let mut found = Vec::new();
    for change in &replan.changes {
        let lost: Vec<String> = change
            .field_changes()
            .iter()
            .filter(|field| !adoption.contains(&field.path))
            .map(|field| format!("`{}`", field.path))
            .collect();
        if change.action == Action::Update && lost.is_empty() {
            continue;
        }
        let what = match change.action {
            Action::Update => format!("change {}", lost.join(", ")),
            action => action.as_str().to_string(),
        };
        let warning = Diagnostic::warning(
            Code::UnknownKey,
            format!(
                "{} holds what the imported file cannot say: applying the file would {what}",
                change.object
            ),
        )
        .help("stowage's types do not hold it: leave the object out of the file, or expect apply to remove it");
        let origin = desired.objects.iter().find(|o| o.object == change.object);
        found.push(match origin {
            Some(origin) => warning.at(origin.origin.clone()),
            None => warning,
        });
    }
    found
}

/// What `stowage status` shows: Velero's objects with their status, and every copy of
/// every declared schedule with its verdict.
#[derive(Debug, Clone)]
pub struct Status {
    pub observed: Observed,
    pub copies: Vec<crate::copies::CopyStatus>,
    /// Whether the buckets were read to find each copy's last success.
    pub buckets_checked: bool,
    /// The Velero server the copies ran on, when its Deployment was read.
    pub velero: Option<VeleroServer>,
}

/// What status says of the Velero server: its version and how many backups it runs
/// at once.
#[derive(Debug, Clone, PartialEq)]
pub struct VeleroServer {
    /// The version, and where it was read.
    pub version: Option<(crate::velero::version::VeleroVersion, String)>,
    /// `--concurrent-backups` (1 when unset); `None` before Velero 1.18, which runs one
    /// backup at a time and has no such flag.
    pub concurrent_backups: Option<u32>,
}

impl VeleroServer {
    fn of(observed: &Observed, deployment: &crate::velero::ObjectRef) -> Option<VeleroServer> {
        use crate::velero::version::BACKUP_QUEUE;
        let manifest = &observed.objects.get(deployment)?.manifest;
        let version = observed.velero_version(deployment);
        let queue = version
            .as_ref()
            .is_none_or(|(version, _)| version.has(BACKUP_QUEUE));
        let concurrent_backups = queue.then(|| {
            crate::velero::server::ServerArgs::of_deployment(manifest)
                .and_then(|args| args.value("--concurrent-backups")?.parse().ok())
                .unwrap_or(1)
        });
        Some(VeleroServer {
            version,
            concurrent_backups,
        })
    }
}

/// Reads the cluster, judges each copy at `now`, and unless `bucket_timeout` is
/// `None`, looks for each `ok` copy's last success in its location's bucket.
pub async fn status(
    cluster: &Cluster,
    file: &ValidFile,
    bucket_timeout: Option<Duration>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Status, EngineError> {
    let desired = file.desired(false);
    let (observed, _) = observe(file, &desired, StateSource::Cluster(cluster)).await?;
    status_of(cluster, file, observed, bucket_timeout, now).await
}

/// [`status`] from a state already read (the daemon's round has just read it).
pub async fn status_of(
    cluster: &Cluster,
    file: &ValidFile,
    observed: Observed,
    bucket_timeout: Option<Duration>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Status, EngineError> {
    use crate::copies::{self, Presence};
    let desired = file.desired(false);
    let mut judged = copies::copies(&file.config, &observed, now);
    if let Some(timeout) = bucket_timeout {
        let targets: std::collections::BTreeMap<String, buckets::BucketTarget> =
            buckets::desired_targets(&file.config, &file.materials, &desired, &observed)
                .into_iter()
                .map(|target| (target.location.clone(), target))
                .collect();
        let wanted: Vec<(String, String)> = copies::backups_to_find(&judged)
            .into_iter()
            .filter(|(location, _)| targets.contains_key(location))
            .collect();
        let asks = wanted
            .iter()
            .filter_map(|(location, backup)| Some((targets.get(location)?.clone(), backup.clone())))
            .collect();
        let answers = buckets::find_backups(asks, timeout).await;
        let found: std::collections::BTreeMap<(String, String), Presence> =
            wanted.into_iter().zip(answers).collect();
        copies::with_presence(&mut judged, &found);
    }
    with_recoverability(cluster, file, &mut judged, now).await?;
    Ok(Status {
        velero: VeleroServer::of(&observed, &desired.velero_deployment),
        observed,
        copies: judged,
        buckets_checked: bucket_timeout.is_some(),
    })
}

/// Adds each copy's last drill, the age of its newest restorable backup, and whether
/// its recoverability fails `status --check`, for schedules that declare drills or an
/// `rpo` (others are left as they are: nothing asked of them).
async fn with_recoverability(
    cluster: &Cluster,
    file: &ValidFile,
    judged: &mut [crate::copies::CopyStatus],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), EngineError> {
    let asked = file
        .config
        .schedules
        .values()
        .any(|s| s.drill.is_some() || s.rpo.is_some());
    if !asked {
        return Ok(());
    }
    let records = drill::records(cluster, file).await?;
    for copy in judged.iter_mut() {
        let Some(schedule) = file.config.schedules.get(&copy.schedule) else {
            continue;
        };
        copy.drill = records.get(&copy.velero_schedule).cloned();
        let newest = copy
            .last_success
            .as_ref()
            .and_then(|b| b.started.as_deref())
            .and_then(crate::drills::parse_time);
        copy.recovery_point_age =
            crate::drills::recovery_point_age(copy.drill.as_ref(), newest, now);
        let rpo = schedule
            .rpo
            .as_deref()
            .and_then(|text| crate::velero::duration::parse_go_duration(text).ok())
            .and_then(|nanos| i64::try_from(nanos).ok())
            .map(chrono::Duration::nanoseconds);
        copy.rpo = rpo;
        copy.recoverability = crate::drills::recoverability_problem(
            schedule.drill.as_ref().map(|d| d.cron.as_str()),
            rpo,
            copy.drill.as_ref(),
            copy.recovery_point_age,
            now,
        );
    }
    Ok(())
}

/// How the daemon reconciles.
#[derive(Debug, Clone, Default)]
pub struct ReconcileOptions {
    pub plan: PlanOptions,
    pub apply: ApplyOptions,
    /// Plan and report, never write.
    pub dry_run: bool,
}

/// A reconcile that did what it should.
#[derive(Debug, Clone)]
pub enum Reconciled {
    /// The cluster already equals the file.
    Unchanged {
        plan: Plan,
        /// The cluster as the plan read it.
        observed: Box<Observed>,
    },
    /// The plan may not be written yet ([`inputs::guard`]): its inputs have not been
    /// quiet long enough, or moved since they were read. Nothing was written; plan
    /// again from a new read after `wait`.
    Deferred {
        plan: Plan,
        wait: Duration,
        reason: String,
    },
    /// `--dry-run`: the plan has changes; nothing was written.
    DryRun { plan: Plan, observed: Box<Observed> },
    /// The changes were written and the cluster now equals the file.
    Applied {
        plan: Plan,
        applied: Box<Applied>,
        /// Fields the apply took from other field managers (with `force_conflicts`).
        takeovers: Vec<Takeover>,
    },
}

impl Reconciled {
    /// The cluster as the round last read it, when that read is current: not after a
    /// deferred round, whose writes are still to come.
    pub fn observed(&self) -> Option<&Observed> {
        match self {
            Reconciled::Unchanged { observed, .. } | Reconciled::DryRun { observed, .. } => {
                Some(observed)
            }
            Reconciled::Applied { applied, .. } => applied.after.as_deref(),
            Reconciled::Deferred { .. } => None,
        }
    }
}

/// A field another field manager had set, which a forced apply took over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takeover {
    pub object: ObjectRef,
    pub field: crate::velero::FieldPath,
    /// The managers that owned it before.
    pub managers: Vec<String>,
}

/// The fields a plan's updates change that a manager other than stowage owns in the
/// observed state: what a forced apply takes over.
pub fn takeovers(plan: &Plan, observed: &Observed) -> Vec<Takeover> {
    let mut found = Vec::new();
    for change in plan.changes.iter().filter(|c| c.action == Action::Update) {
        let Some(live) = observed.objects.get(&change.object) else {
            continue;
        };
        for field in change.field_changes().iter() {
            let managers: Vec<String> = live
                .managers_of(&field.path)
                .into_iter()
                .filter(|manager| *manager != cluster::apply::FIELD_MANAGER)
                .map(str::to_string)
                .collect();
            if !managers.is_empty() {
                found.push(Takeover {
                    object: change.object.clone(),
                    field: field.path.clone(),
                    managers,
                });
            }
        }
    }
    found
}

/// Why a reconcile failed. Each has its own [`FailureReason`], the label of
/// `stowage_apply_failures_total`.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{path}: {error}")]
    Unusable { path: String, error: LoadError },
    /// The file and what it names kept changing while they were read.
    #[error("{0}")]
    Unsettled(String),
    #[error("the file does not validate")]
    Invalid(Box<CheckedFile>),
    #[error("cannot read the cluster: {0}")]
    Cluster(EngineError),
    #[error("the plan has errors; nothing applied")]
    Refused { file: SourceMap, plan: Plan },
    #[error("the apply did not finish")]
    ApplyFailed { plan: Plan, applied: Applied },
    #[error("the cluster did not converge to the file")]
    NotConverged {
        file: SourceMap,
        plan: Plan,
        applied: Applied,
    },
}

/// The kinds of reconcile failure, as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureReason {
    InvalidFile,
    ClusterUnreachable,
    PlanRefused,
    /// A write refused because another field manager owns the field
    /// (`--force-conflicts=false`).
    Conflict,
    ApplyFailed,
    NotConverged,
}

impl FailureReason {
    pub const ALL: [FailureReason; 6] = [
        FailureReason::InvalidFile,
        FailureReason::ClusterUnreachable,
        FailureReason::PlanRefused,
        FailureReason::Conflict,
        FailureReason::ApplyFailed,
        FailureReason::NotConverged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::InvalidFile => "invalid_file",
            FailureReason::ClusterUnreachable => "cluster_unreachable",
            FailureReason::PlanRefused => "plan_refused",
            FailureReason::Conflict => "conflict",
            FailureReason::ApplyFailed => "apply_failed",
            FailureReason::NotConverged => "not_converged",
        }
    }
}

impl ReconcileError {
    pub fn reason(&self) -> FailureReason {
        match self {
            ReconcileError::Unusable { .. }
            | ReconcileError::Unsettled(_)
            | ReconcileError::Invalid(_) => FailureReason::InvalidFile,
            ReconcileError::Cluster(_) => FailureReason::ClusterUnreachable,
            ReconcileError::Refused { .. } => FailureReason::PlanRefused,
            ReconcileError::ApplyFailed { applied, .. }
                if applied.report.conflicts().next().is_some() =>
            {
                FailureReason::Conflict
            }
            ReconcileError::ApplyFailed { .. } => FailureReason::ApplyFailed,
            ReconcileError::NotConverged { .. } => FailureReason::NotConverged,
        }
    }

    /// Whether the plan was refused by the deletion guard.
    pub fn is_mass_delete(&self) -> bool {
        matches!(self, ReconcileError::Refused { plan, .. }
            if plan.diagnostics.iter().any(|d| d.code == Code::MassDelete))
    }
}

/// Plans `file` against the cluster and, unless `dry_run`, applies the plan and checks
/// that the cluster converged: one round of the daemon after its file was validated.
///
/// `may_write` decides, once the plan is made, whether it may be written from the
/// inputs it was made from ([`inputs::guard`]); when it says wait, nothing is written.
pub async fn converge(
    cluster: &Cluster,
    file: &ValidFile,
    options: &ReconcileOptions,
    mut may_write: impl FnMut(&Plan) -> inputs::Guard + Send,
) -> Result<Reconciled, ReconcileError> {
    let mut planned = plan(file, StateSource::Cluster(cluster), options.plan)
        .await
        .map_err(ReconcileError::Cluster)?;
    let mut approver: Box<dyn Approver + Send> = match options.dry_run {
        true => Box::new(DryRun),
        false => Box::new(Approved),
    };
    let outcome = apply(
        cluster,
        file,
        &mut planned,
        approver.as_mut(),
        InputsGate::Decide(&mut may_write),
        &options.apply,
    )
    .await;
    let applied = match outcome {
        Err(EngineError::PlanHasErrors) => {
            return Err(ReconcileError::Refused {
                file: file.source.clone(),
                plan: planned.plan,
            });
        }
        Err(error) => return Err(ReconcileError::Cluster(error)),
        Ok(ApplyOutcome::Unchanged) => {
            return Ok(Reconciled::Unchanged {
                plan: planned.plan,
                observed: Box::new(planned.observed),
            });
        }
        Ok(ApplyOutcome::NotApproved(_)) => {
            return Ok(Reconciled::DryRun {
                plan: planned.plan,
                observed: Box::new(planned.observed),
            });
        }
        Ok(ApplyOutcome::Deferred { wait, reason }) => {
            return Ok(Reconciled::Deferred {
                plan: planned.plan,
                wait,
                reason,
            });
        }
        Ok(ApplyOutcome::Applied(applied)) => applied,
    };
    if !applied.report.succeeded() {
        return Err(ReconcileError::ApplyFailed {
            plan: planned.plan,
            applied,
        });
    }
    if applied.not_converged.is_some() {
        return Err(ReconcileError::NotConverged {
            file: file.source.clone(),
            plan: planned.plan,
            applied,
        });
    }
    let takeovers = if options.apply.force_conflicts {
        takeovers(&planned.plan, &planned.observed)
    } else {
        Vec::new()
    };
    Ok(Reconciled::Applied {
        plan: planned.plan,
        applied: Box::new(applied),
        takeovers,
    })
}
