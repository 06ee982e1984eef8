//! Fleets: the single-cluster pipeline run once per file, one cluster per file, several
//! at a time. Nothing here plans or applies on its own: each cluster goes through
//! [`super::check_file`] and [`super::plan`], and its outcome is kept apart, so one
//! cluster's failure never stops another.

use std::path::{Path, PathBuf};

use futures::StreamExt as _;

use super::{CheckedFile, EngineError, PlanOptions, Planned, StateSource, ValidFile};
use crate::cluster::{self, ClusterError, Target};
use crate::config::load::LoadError;

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

/// The files `-f` names: each file as given, each directory as the desired-state
/// files directly in it (`*.toml`, `*.yaml`, `*.yml`, not hidden), sorted.
pub fn expand(given: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in given {
        if !is_fleet_dir(path) {
            files.push(path.clone());
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|file| {
                let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
                !name.starts_with('.') && file.is_file() && named_like_a_file(file)
            })
            .collect();
        found.sort();
        files.extend(found);
    }
    Ok(files)
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
    Unusable(LoadError),
    /// The file has errors: nothing was planned.
    Invalid(Box<CheckedFile>),
    /// The cluster could not be reached.
    Unreachable(ClusterError),
    /// Reached, but reading it failed otherwise.
    Failed(EngineError),
    Planned(Box<(ValidFile, Planned)>),
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
    let members =
        futures::stream::iter(files.iter().enumerate())
            .map(|(index, file)| async move {
                (index, plan_one(file, given, options, connections).await)
            })
            .buffer_unordered(parallel.max(1));
    let mut members: Vec<(usize, Member)> = members.collect().await;
    members.sort_by_key(|(index, _)| *index);
    members.into_iter().map(|(_, member)| member).collect()
}

async fn plan_one(
    path: &Path,
    given: &Target,
    options: PlanOptions,
    connections: &Connections,
) -> Member {
    let member = |context: Option<String>, outcome| Member {
        file: path.to_path_buf(),
        context,
        outcome,
    };
    let checked = match super::check_file(path) {
        Ok(checked) => checked,
        Err(error) => return member(given.context.clone(), Outcome::Unusable(error)),
    };
    let file = match checked.into_valid() {
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
        Ok(planned) => member(context, Outcome::Planned(Box::new((file, planned)))),
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

/// Applies each cleanly planned member with changes to its own cluster, at most
/// `parallel` at once; answers in the order of `members`.
pub async fn apply(
    members: &[Member],
    given: &Target,
    options: super::ApplyOptions,
    parallel: usize,
) -> Vec<Applied> {
    let applied = futures::stream::iter(members.iter().enumerate())
        .map(|(index, member)| async move {
            let Outcome::Planned(planned) = &member.outcome else {
                return (index, Applied::Skipped);
            };
            let (file, planned) = planned.as_ref();
            if planned.plan.has_errors() || !planned.plan.has_changes() {
                return (index, Applied::Skipped);
            }
            let result = async {
                let connected = cluster::connect(&target_for(file, given)).await?;
                super::apply(&connected, file, planned, options).await
            }
            .await;
            let applied = match result {
                Ok(applied) => Applied::Done(Box::new(applied)),
                Err(error) => Applied::Failed(error),
            };
            (index, applied)
        })
        .buffer_unordered(parallel.max(1));
    let mut applied: Vec<(usize, Applied)> = applied.collect().await;
    applied.sort_by_key(|(index, _)| *index);
    applied.into_iter().map(|(_, applied)| applied).collect()
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
    let all = futures::stream::iter(files.iter().enumerate())
        .map(|(index, path)| async move {
            let file = match super::check_file(path).map(CheckedFile::into_valid) {
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
/// against the saved one, then applied. In the order of `plans`.
pub async fn apply_saved(
    plans: &[super::saved::SavedPlan],
    given: &Target,
    plan_options: PlanOptions,
    options: super::ApplyOptions,
    parallel: usize,
) -> Vec<Result<super::Applied, EngineError>> {
    let applied = futures::stream::iter(plans.iter().enumerate())
        .map(|(index, saved)| async move {
            let result = async {
                let path = PathBuf::from(&saved.file);
                let checked =
                    super::check_file(&path).map_err(|error| EngineError::InvalidFile {
                        file: format!("{}: {error}", saved.file),
                        errors: 1,
                    })?;
                let file = checked
                    .into_valid()
                    .map_err(|invalid| EngineError::InvalidFile {
                        file: saved.file.clone(),
                        errors: invalid.errors(),
                    })?;
                let connected = cluster::connect(&target_for(&file, given)).await?;
                let planned =
                    super::plan(&file, StateSource::Cluster(&connected), plan_options).await?;
                planned.verify(saved, &file)?;
                if planned.plan.has_errors() {
                    return Err(EngineError::PlanHasErrors);
                }
                super::apply(&connected, &file, &planned, options).await
            }
            .await;
            (index, result)
        })
        .buffer_unordered(parallel.max(1));
    let mut applied: Vec<(usize, Result<super::Applied, EngineError>)> = applied.collect().await;
    applied.sort_by_key(|(index, _)| *index);
    applied.into_iter().map(|(_, result)| result).collect()
}

/// The saved plans in a directory (`*.json`), sorted.
pub fn saved_plans_in(dir: &Path) -> Result<Vec<super::saved::SavedPlan>, EngineError> {
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
    paths
        .iter()
        .map(|path| super::saved::SavedPlan::read(path).map_err(EngineError::from))
        .collect()
}
