//! Fleets: the single-cluster pipeline run once per file, one cluster per file, several
//! at a time. Nothing here plans or applies on its own: each cluster goes through
//! [`super::check_file`] and [`super::plan`], and its outcome is kept apart, so one
//! cluster's failure never stops another.

use std::path::{Path, PathBuf};

use futures::StreamExt as _;

use super::inputs::{Snapshot, SnapshotError};
use super::{CheckedFile, EngineError, PlanOptions, Planned, StateSource, ValidFile};
use crate::cluster::{self, ClusterError, Target};
use crate::config::source::Node;
use crate::diagnostic::{Code, Diagnostic, Pointer};

fn named_like_a_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("toml" | "yaml" | "yml")
    )
}

/// A directory of cluster files (one named like a file, `x.toml/`, is taken for a
/// file, and refused as one).
fn is_fleet_dir(path: &Path) -> bool {
    path.is_dir() && !named_like_a_file(path)
}

/// The files `-f` names: each file as given; each directory as the desired-state
/// files in it and its sub-folders (one folder per cluster is the common layout),
/// sorted. Found in a directory, a file is left out when it is not a cluster's: a
/// Kubernetes manifest (`apiVersion` and `kind` at its top, as a kustomization is), or
/// a base another found file extends. Hidden files and folders are skipped, and
/// linked folders are not followed.
pub fn expand(given: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in given {
        if !is_fleet_dir(path) {
            files.push(path.clone());
            continue;
        }
        let mut found = Vec::new();
        walk(path, &mut found, 0)?;
        found.sort();
        let parsed: Vec<(PathBuf, Option<Node>)> = found
            .into_iter()
            .filter(|file| !is_kubernetes_manifest(file))
            .map(|file| {
                let root = peek(&file);
                (file, root)
            })
            .collect();
        let bases: std::collections::BTreeSet<PathBuf> = parsed
            .iter()
            .filter_map(|(file, root)| {
                let (extends, _) = crate::config::merge::extends_of(root.as_ref()?).ok()??;
                let base = file.parent()?.join(extends);
                std::fs::canonicalize(base).ok()
            })
            .collect();
        files.extend(
            parsed
                .into_iter()
                .filter(|(file, _)| {
                    std::fs::canonicalize(file)
                        .map_or(true, |canonical| !bases.contains(&canonical))
                })
                .map(|(file, _)| file),
        );
    }
    Ok(files)
}

/// How deep `-f DIR` looks for files.
const MAX_DEPTH: usize = 8;

fn walk(dir: &Path, found: &mut Vec<PathBuf>, depth: usize) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)?.filter_map(Result::ok) {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if hidden {
            continue;
        }
        if kind.is_dir() && depth < MAX_DEPTH {
            walk(&path, found, depth + 1)?;
        } else if named_like_a_file(&path) && path.is_file() {
            found.push(path);
        }
    }
    Ok(())
}

/// The file's tree, parsed only (no shape check, nothing else read); `None` when it
/// cannot be read or parsed, so it stays in the fleet and reports its own errors.
fn peek(path: &Path) -> Option<Node> {
    let format = crate::config::source::Format::from_path(path)?;
    let bytes = crate::config::load::read_bounded(path, crate::config::load::FILE_LIMIT).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    crate::config::source::parse(&text, format).0
}

/// A Kubernetes manifest (one document or several, as kustomize and Argo CD files
/// are): `apiVersion` and `kind` at the start of lines. A desired-state file has
/// neither key.
fn is_kubernetes_manifest(path: &Path) -> bool {
    let Ok(bytes) = crate::config::load::read_bounded(path, crate::config::load::FILE_LIMIT) else {
        return false;
    };
    let text = String::from_utf8_lossy(&bytes);
    let at_line_start = |key: &str| text.lines().any(|line| line.starts_with(key));
    at_line_start("apiVersion:") && at_line_start("kind:")
}

/// The name of each file's saved plan in `plan --out DIR`: its path below the files'
/// common folder, separators as `_`, then `.json` (`prod-eu/stowage.toml` →
/// `prod-eu_stowage.toml.json`). Two files whose plans would share a name are refused,
/// since one plan would overwrite the other.
pub fn saved_plan_names(files: &[PathBuf]) -> Result<Vec<String>, FleetError> {
    let absolute: Vec<PathBuf> = files
        .iter()
        .map(|f| std::path::absolute(f).unwrap_or_else(|_| f.clone()))
        .collect();
    let common = absolute
        .iter()
        .filter_map(|f| f.parent())
        .map(Path::to_path_buf)
        .reduce(|a, b| {
            a.components()
                .zip(b.components())
                .take_while(|(x, y)| x == y)
                .map(|(x, _)| x)
                .collect()
        })
        .unwrap_or_default();
    let mut names: Vec<String> = Vec::with_capacity(files.len());
    for (index, file) in absolute.iter().enumerate() {
        let relative = file.strip_prefix(&common).unwrap_or(file);
        let name = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("_");
        let name = format!("{name}.json");
        if let Some(earlier) = names.iter().position(|n| *n == name) {
            return Err(FleetError::PlanNameClash {
                first: files[earlier].clone(),
                second: files[index].clone(),
                name,
            });
        }
        names.push(name);
    }
    Ok(names)
}

/// Why a fleet run refuses before planning anything.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("{first} and {second} would both save their plan as {name}: rename one of them")]
    PlanNameClash {
        first: PathBuf,
        second: PathBuf,
        name: String,
    },
}

/// Each file loaded and validated, and then checked against the others: two files
/// that manage the same cluster (kubeconfig and context), namespace and owner would
/// delete each other's objects at every apply, so both get `stowage::owner-conflict`
/// naming the other, and neither is planned.
///
/// Each file is read as a snapshot ([`super::inputs::read`]), so an apply can tell
/// whether its inputs moved between plan and write.
pub fn check_all(files: &[PathBuf], given: &Target) -> Vec<Result<Snapshot, SnapshotError>> {
    let mut checked: Vec<Result<Snapshot, SnapshotError>> =
        files.iter().map(|file| super::inputs::read(file)).collect();
    let mut managers: std::collections::BTreeMap<(Target, String, String), Vec<usize>> =
        Default::default();
    for (index, result) in checked.iter().enumerate() {
        let Ok(snapshot) = result else { continue };
        let Some(config) = &snapshot.checked.loaded.config else {
            continue;
        };
        let target = Target {
            context: given
                .context
                .clone()
                .or_else(|| config.cluster.context.clone()),
            ..given.clone()
        };
        let key = (
            target,
            config.velero.namespace.clone(),
            config.velero.owner.clone(),
        );
        managers.entry(key).or_default().push(index);
    }
    for ((target, namespace, owner), indexes) in managers {
        if indexes.len() < 2 {
            continue;
        }
        let cluster = target
            .context
            .as_deref()
            .map(|c| format!("context {c}"))
            .unwrap_or_else(|| "the current context".to_string());
        for &index in &indexes {
            let others: Vec<String> = indexes
                .iter()
                .filter(|&&other| other != index)
                .map(|&other| files[other].display().to_string())
                .collect();
            if let Ok(snapshot) = &mut checked[index] {
                snapshot.checked.diagnostics.push(
                    Diagnostic::error(
                        Code::OwnerConflict,
                        format!(
                            "{} manages the same cluster ({cluster}), namespace {namespace} and owner {owner}: the two files would delete each other's objects",
                            others.join(" and ")
                        ),
                    )
                    .at(Pointer::key(["velero", "owner"]))
                    .help("give each file its own `[velero] owner`, or merge them into one file"),
                );
            }
        }
    }
    checked
}

/// Whether `-f` makes a fleet: several files, or a directory.
pub fn is_fleet(given: &[PathBuf]) -> bool {
    given.len() > 1 || given.iter().any(|path| is_fleet_dir(path))
}

/// The cluster a file is for: `--context` when given, else the file's
/// `[cluster] context`, else the kubeconfig's current context.
pub fn target_for(file: &ValidFile, given: &Target) -> Target {
    Target {
        kubeconfig: given.kubeconfig.clone(),
        request_timeout: given.request_timeout,
        context: given
            .context
            .clone()
            .or_else(|| file.config.cluster.context.clone()),
    }
}

/// The connections of one fleet run: files for the same cluster (the same kubeconfig
/// and context) share one client and its connection pool, and read the cluster's
/// Nodes and PersistentVolumes once.
#[derive(Default)]
pub struct Connections {
    clients: std::sync::Mutex<Vec<(Target, cluster::Cluster)>>,
}

impl Connections {
    pub async fn connect(&self, target: &Target) -> Result<cluster::Cluster, ClusterError> {
        let known = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(seen, _)| {
                seen.kubeconfig == target.kubeconfig && seen.context == target.context
            })
            .map(|(_, connected)| connected.clone());
        if let Some(connected) = known {
            return Ok(connected);
        }
        let connected = cluster::connect(target).await?.sharing_cluster_wide_reads();
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((target.clone(), connected.clone()));
        Ok(connected)
    }
}

/// What became of one cluster of a fleet.
#[derive(Debug)]
pub enum Outcome {
    /// The file could not be read at all.
    Unusable(SnapshotError),
    /// The file has errors: nothing was planned.
    Invalid(Box<CheckedFile>),
    /// The cluster could not be reached.
    Unreachable(ClusterError),
    /// Reached, but reading it failed otherwise.
    Failed(EngineError),
    /// Planned: the file, the plan, and the inputs as read (an apply writes only while
    /// they are unchanged).
    Planned(Box<(ValidFile, Planned, Snapshot)>),
}

/// One cluster of a fleet: its file, the context it was planned against, the outcome.
#[derive(Debug)]
pub struct Member {
    pub file: PathBuf,
    pub context: Option<String>,
    pub outcome: Outcome,
}

impl Member {
    /// Planned, with a plan free of errors.
    pub fn succeeded(&self) -> bool {
        matches!(&self.outcome, Outcome::Planned(planned) if !planned.1.plan.has_errors())
    }

    pub fn has_changes(&self) -> bool {
        matches!(&self.outcome, Outcome::Planned(planned) if planned.1.plan.has_changes())
    }
}

/// Plans every file against its own cluster, at most `parallel` at once; the members
/// come back in the order of `files`.
pub async fn plan(
    files: &[PathBuf],
    given: &Target,
    options: PlanOptions,
    parallel: usize,
) -> Vec<Member> {
    let connections = Connections::default();
    let connections = &connections;
    let checked = check_all(files, given);
    let members = futures::stream::iter(files.iter().zip(checked).enumerate())
        .map(|(index, (file, checked))| async move {
            (
                index,
                plan_one(file, checked, given, options, connections).await,
            )
        })
        .buffer_unordered(parallel.max(1));
    let mut members: Vec<(usize, Member)> = members.collect().await;
    members.sort_by_key(|(index, _)| *index);
    members.into_iter().map(|(_, member)| member).collect()
}

async fn plan_one(
    path: &Path,
    checked: Result<Snapshot, SnapshotError>,
    given: &Target,
    options: PlanOptions,
    connections: &Connections,
) -> Member {
    let member = |context: Option<String>, outcome| Member {
        file: path.to_path_buf(),
        context,
        outcome,
    };
    let snapshot = match checked {
        Ok(snapshot) => snapshot,
        Err(error) => return member(given.context.clone(), Outcome::Unusable(error)),
    };
    let file = match snapshot.checked.clone().into_valid() {
        Ok(file) => file,
        Err(invalid) => {
            let context = given.context.clone().or_else(|| {
                invalid
                    .loaded
                    .config
                    .as_ref()
                    .and_then(|c| c.cluster.context.clone())
            });
            return member(context, Outcome::Invalid(invalid));
        }
    };
    let target = target_for(&file, given);
    let context = target.context.clone();
    let connected = match connections.connect(&target).await {
        Ok(connected) => connected,
        Err(error) => return member(context, Outcome::Unreachable(error)),
    };
    match super::plan(&file, StateSource::Cluster(&connected), options).await {
        Ok(planned) => member(
            context,
            Outcome::Planned(Box::new((file, planned, snapshot))),
        ),
        Err(EngineError::Cluster(
            error @ (ClusterError::Unreachable { .. } | ClusterError::Unauthorized),
        )) => member(context, Outcome::Unreachable(error)),
        Err(error) => member(context, Outcome::Failed(error)),
    }
}

/// What an apply did to one cluster of a fleet.
#[derive(Debug)]
pub enum Applied {
    /// Nothing to write (no changes), or not planned cleanly (see its plan).
    Skipped,
    Done(Box<super::Applied>),
    Failed(EngineError),
}

impl Applied {
    /// Written completely and converged, or nothing to write.
    pub fn succeeded(&self) -> bool {
        match self {
            Applied::Skipped => true,
            Applied::Done(applied) => applied.converged(),
            Applied::Failed(_) => false,
        }
    }
}

/// Applies each member's plan to its own cluster through the one apply operation,
/// approved in advance (the fleet was confirmed as a whole), at most `parallel` at
/// once; answers in the order of `members`. A member not planned, or whose plan has
/// errors or no changes, is skipped.
pub async fn apply(
    members: &mut [Member],
    given: &Target,
    options: super::ApplyOptions,
    parallel: usize,
) -> Vec<Applied> {
    let options = &options;
    let applied = futures::stream::iter(members.iter_mut().enumerate())
        .map(|(index, member)| async move {
            let Outcome::Planned(planned) = &mut member.outcome else {
                return (index, Applied::Skipped);
            };
            let (file, planned, snapshot) = planned.as_mut();
            (
                index,
                apply_one(file, planned, snapshot, given, options).await,
            )
        })
        .buffer_unordered(parallel.max(1));
    let mut applied: Vec<(usize, Applied)> = applied.collect().await;
    applied.sort_by_key(|(index, _)| *index);
    applied.into_iter().map(|(_, applied)| applied).collect()
}

async fn apply_one(
    file: &ValidFile,
    planned: &mut Planned,
    snapshot: &Snapshot,
    given: &Target,
    options: &super::ApplyOptions,
) -> Applied {
    if !planned.plan.has_changes() {
        return Applied::Skipped;
    }
    let connected = match cluster::connect(&target_for(file, given)).await {
        Ok(connected) => connected,
        Err(error) => return Applied::Failed(error.into()),
    };
    let outcome = super::apply(
        &connected,
        file,
        planned,
        &mut super::Approved,
        super::InputsGate::Wait(snapshot),
        options,
    )
    .await;
    match outcome {
        Ok(super::ApplyOutcome::Applied(applied)) => Applied::Done(Box::new(applied)),
        // A plan with errors is shown with them in the fleet's plan.
        Ok(_) | Err(EngineError::PlanHasErrors) => Applied::Skipped,
        Err(error) => Applied::Failed(error),
    }
}

/// One cluster's `status`, or why there is none.
#[derive(Debug)]
pub struct StatusOf {
    pub file: PathBuf,
    pub context: Option<String>,
    pub status: Result<super::Status, String>,
}

/// `status` of every file's cluster, at most `parallel` at once, in the order of
/// `files`.
pub async fn status(
    files: &[PathBuf],
    given: &Target,
    bucket_timeout: Option<std::time::Duration>,
    now: chrono::DateTime<chrono::Utc>,
    parallel: usize,
) -> Vec<StatusOf> {
    let checked = check_all(files, given);
    let all = futures::stream::iter(files.iter().zip(checked).enumerate())
        .map(|(index, (path, checked))| async move {
            let file = match checked.map(|snapshot| snapshot.checked.into_valid()) {
                Ok(Ok(file)) => file,
                Ok(Err(invalid)) => {
                    let problem = format!("{} has {} error(s)", path.display(), invalid.errors());
                    return (
                        index,
                        StatusOf {
                            file: path.to_path_buf(),
                            context: given.context.clone(),
                            status: Err(problem),
                        },
                    );
                }
                Err(error) => {
                    return (
                        index,
                        StatusOf {
                            file: path.to_path_buf(),
                            context: given.context.clone(),
                            status: Err(error.to_string()),
                        },
                    );
                }
            };
            let target = target_for(&file, given);
            let status = async {
                let connected = cluster::connect(&target).await?;
                super::status(&connected, &file, bucket_timeout, now).await
            }
            .await
            .map_err(|error| error.to_string());
            (
                index,
                StatusOf {
                    file: path.to_path_buf(),
                    context: target.context,
                    status,
                },
            )
        })
        .buffer_unordered(parallel.max(1));
    let mut all: Vec<(usize, StatusOf)> = all.collect().await;
    all.sort_by_key(|(index, _)| *index);
    all.into_iter().map(|(_, status)| status).collect()
}

/// Applies saved plans (`plan --out DIR`), each to its own cluster and each refused on
/// its own when stale: the file is checked and planned again, the plan verified
/// against the saved one, then applied through the one apply operation. In the order
/// of `plans`.
pub async fn apply_saved(
    plans: &[super::saved::SavedPlan],
    given: &Target,
    plan_options: PlanOptions,
    options: super::ApplyOptions,
    parallel: usize,
) -> Vec<Applied> {
    let options = &options;
    let applied = futures::stream::iter(plans.iter().enumerate())
        .map(|(index, saved)| async move {
            let result = async {
                let path = PathBuf::from(&saved.file);
                let snapshot = super::inputs::read(&path)?;
                let file = snapshot.checked.clone().into_valid().map_err(|invalid| {
                    EngineError::InvalidFile {
                        file: saved.file.clone(),
                        errors: invalid.errors(),
                    }
                })?;
                let connected = cluster::connect(&target_for(&file, given)).await?;
                let mut planned =
                    super::plan(&file, StateSource::Cluster(&connected), plan_options).await?;
                planned.verify(saved, &file)?;
                super::apply(
                    &connected,
                    &file,
                    &mut planned,
                    &mut super::Approved,
                    super::InputsGate::Wait(&snapshot),
                    options,
                )
                .await
            }
            .await;
            let applied = match result {
                Ok(super::ApplyOutcome::Applied(applied)) => Applied::Done(Box::new(applied)),
                Ok(_) => Applied::Skipped,
                Err(error) => Applied::Failed(error),
            };
            (index, applied)
        })
        .buffer_unordered(parallel.max(1));
    let mut applied: Vec<(usize, Applied)> = applied.collect().await;
    applied.sort_by_key(|(index, _)| *index);
    applied.into_iter().map(|(_, applied)| applied).collect()
}

/// The saved plans in a directory (`*.json`), sorted: each read on its own, so one
/// broken plan fails only its cluster. JSON files that are not stowage plans at all
/// (no plan `kind`) are another tool's, and are left out.
#[derive(Debug, Default)]
pub struct SavedPlansIn {
    pub plans: Vec<super::saved::SavedPlan>,
    /// Files that claim to be plans but cannot be applied (edited, another version).
    pub broken: Vec<super::saved::SavedPlanError>,
    /// JSON files that are not plans.
    pub skipped: Vec<PathBuf>,
}

pub fn saved_plans_in(dir: &Path) -> Result<SavedPlansIn, EngineError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| super::saved::SavedPlanError::Read {
            path: dir.display().to_string(),
            source,
        })?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let mut found = SavedPlansIn::default();
    for path in paths {
        match super::saved::SavedPlan::read(&path) {
            Ok(plan) => found.plans.push(plan),
            Err(error) if !error.claims_to_be_a_plan() => found.skipped.push(path),
            Err(error) => found.broken.push(error),
        }
    }
    Ok(found)
}
