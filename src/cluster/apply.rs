//! Writing a plan: server-side apply with field manager `stowage`, in a safe order —
//! Secrets, then locations (a losing default first, so Velero never sees two), then
//! schedules and the server flag; deletions last, in reverse. A failed stage stops the
//! stages after it, and the report says exactly what was and was not written.

use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};

use super::{Cluster, ClusterError, explain, resource_of};
use crate::observe::Observed;
use crate::plan::{Action, Change, Plan};
use crate::render::Desired;
use crate::velero::{Kind, ObjectRef};

pub const FIELD_MANAGER: &str = "stowage";

/// Writes at once within a stage.
const CONCURRENCY: usize = 8;
/// Attempts per write for errors that may pass (5xx, timeouts, throttling).
const ATTEMPTS: u32 = 4;
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Take over fields another field manager owns instead of failing.
    pub force_conflicts: bool,
    /// With leader election: every request passes it first, so a replica that lost
    /// the Lease (or cannot be sure it holds it) writes nothing more.
    pub fence: Option<super::lease::Fence>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Failed(String),
    /// Refused because another field manager owns a field the write sets (server-side
    /// apply's 409 without `--force-conflicts`).
    Conflict(String),
    /// An earlier stage failed, so this write was not tried.
    NotAttempted,
}

#[derive(Debug, Clone)]
pub struct Written {
    pub object: ObjectRef,
    pub action: Action,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub written: Vec<Written>,
}

impl Report {
    pub fn succeeded(&self) -> bool {
        self.written.iter().all(|w| w.outcome == Outcome::Applied)
    }

    /// The writes another field manager's ownership refused.
    pub fn conflicts(&self) -> impl Iterator<Item = &Written> {
        self.written
            .iter()
            .filter(|w| matches!(w.outcome, Outcome::Conflict(_)))
    }

    pub fn applied(&self) -> impl Iterator<Item = &Written> {
        self.written
            .iter()
            .filter(|w| w.outcome == Outcome::Applied)
    }
}

/// The stages, in order; each a list of groups run one after another, the changes in a
/// group at once.
fn stages<'a>(plan: &'a Plan, observed: &Observed, desired: &Desired) -> Vec<Vec<Vec<&'a Change>>> {
    let writes = |kinds: &[Kind]| -> Vec<&'a Change> {
        plan.changes
            .iter()
            .filter(|c| c.action != Action::Delete && kinds.contains(&c.object.kind))
            .collect()
    };
    let deletes = |kinds: &[Kind]| -> Vec<&'a Change> {
        plan.changes
            .iter()
            .filter(|c| c.action == Action::Delete && kinds.contains(&c.object.kind))
            .collect()
    };
    let loses_default = |change: &&Change| {
        change.object.kind == Kind::BackupStorageLocation
            && observed
                .objects
                .get(&change.object)
                .is_some_and(|o| o.spec()["default"] == true)
            && desired
                .objects
                .iter()
                .find(|d| d.object == change.object)
                .is_some_and(|d| d.manifest["spec"]["default"] != true)
    };
    let locations = writes(&[Kind::BackupStorageLocation, Kind::VolumeSnapshotLocation]);
    let (losing, others): (Vec<&Change>, Vec<&Change>) =
        locations.into_iter().partition(loses_default);
    vec![
        vec![writes(&[Kind::Secret])],
        vec![losing, others],
        vec![writes(&[Kind::Schedule, Kind::Deployment])],
        vec![deletes(&[Kind::Schedule])],
        vec![deletes(&[
            Kind::BackupStorageLocation,
            Kind::VolumeSnapshotLocation,
        ])],
        vec![deletes(&[Kind::Secret])],
    ]
}

/// What stowage applies for one change: the rendered object, the Secret with only the
/// declared keys, or the Velero container's arguments with the flag set.
fn manifest(change: &Change, desired: &Desired, observed: &Observed) -> Option<Value> {
    match change.object.kind {
        Kind::Secret => desired
            .secrets
            .iter()
            .find(|s| s.object == change.object)
            .and_then(|s| serde_json::to_value(crate::render::secret_manifest(s)).ok()),
        Kind::Deployment => {
            let flag = desired.server_flag.as_ref()?;
            let live = observed.objects.get(&change.object)?;
            let args = crate::velero::server::ServerArgs::of_deployment(&live.manifest)?;
            Some(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": change.object.name, "namespace": change.object.namespace},
                "spec": {"template": {"spec": {"containers": [
                    {"name": crate::velero::server::CONTAINER, "args": flag.applied_to(&args).as_slice()}]}}}}))
        }
        _ => desired
            .objects
            .iter()
            .find(|d| d.object == change.object)
            .map(|d| d.manifest.clone()),
    }
}

/// The spec fields an update removes: set in the cluster (by another manager, since
/// stowage applies only what the file declares) and left unset by the file. Server-side
/// apply never removes a field another manager owns, so these go by a JSON merge patch
/// of nulls. Only plain paths under `spec`; anything else is left to the convergence
/// check to report.
fn removals(change: &Change) -> Option<Value> {
    let mut patch = json!({});
    let mut any = false;
    for field in &change.fields {
        let removed = matches!(field.after, crate::plan::FieldValue::Absent)
            && !matches!(field.before, crate::plan::FieldValue::Absent);
        let plain = field.path.starts_with("spec.")
            && field
                .path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-');
        if !removed || !plain {
            continue;
        }
        let mut node = &mut patch;
        let segments: Vec<&str> = field.path.split('.').collect();
        for segment in &segments[..segments.len() - 1] {
            node = node
                .as_object_mut()?
                .entry(segment.to_string())
                .or_insert_with(|| json!({}));
        }
        node.as_object_mut()?
            .insert(segments[segments.len() - 1].to_string(), Value::Null);
        any = true;
    }
    any.then_some(patch)
}

fn retriable(error: &ClusterError) -> bool {
    match error {
        ClusterError::Api { code, .. } => *code == 429 || *code >= 500,
        ClusterError::Unreachable { .. } | ClusterError::Request { .. } => true,
        _ => false,
    }
}

/// The longest wait a server may ask for between attempts.
const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Runs `attempt` until it succeeds, fails for good, or has been tried `ATTEMPTS`
/// times: waiting as the server asks (429's Retry-After), else 200 ms doubling. The
/// fence is checked before every attempt, so a retry never outlives the Lease.
async fn with_retries<F, Fut>(
    fence: Option<&super::lease::Fence>,
    mut attempt: F,
) -> Result<(), ClusterError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), ClusterError>>,
{
    let mut delay = Duration::from_millis(200);
    let mut tries = 0;
    loop {
        tries += 1;
        if let Some(fence) = fence {
            fence.check()?;
        }
        match attempt().await {
            Err(error) if retriable(&error) && tries < ATTEMPTS => {
                let asked = match &error {
                    ClusterError::Api {
                        retry_after: Some(wait),
                        ..
                    } => Some((*wait).min(LONGEST_RETRY_AFTER)),
                    _ => None,
                };
                tokio::time::sleep(asked.unwrap_or(delay)).await;
                delay *= 2;
            }
            result => return result,
        }
    }
}

async fn write(
    cluster: &Cluster,
    change: &Change,
    desired: &Desired,
    observed: &Observed,
    options: &Options,
) -> Result<(), ClusterError> {
    let resource = resource_of(change.object.kind);
    let namespace = change.object.namespace.as_str();
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), namespace, &resource);
    let name = change.object.name.as_str();
    match change.action {
        Action::Delete => {
            let uid = observed
                .objects
                .get(&change.object)
                .and_then(|o| o.uid.clone())
                .or_else(|| {
                    observed
                        .secrets
                        .get(&change.object)
                        .and_then(|s| s.uid.clone())
                });
            let params = DeleteParams {
                preconditions: uid.map(|uid| Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            with_retries(options.fence.as_ref(), || async {
                match tokio::time::timeout(cluster.request_timeout, api.delete(name, &params)).await
                {
                    Ok(Ok(_)) => Ok(()),
                    // Already gone is what a delete wants.
                    Ok(Err(kube::Error::Api(status))) if status.code == 404 => Ok(()),
                    Ok(Err(e)) => Err(explain(e, "delete", &resource, namespace, &cluster.url)),
                    Err(_) => Err(timed_out("delete", &resource, cluster.request_timeout)),
                }
            })
            .await
        }
        Action::Create | Action::Update => {
            let Some(manifest) = manifest(change, desired, observed) else {
                return Err(ClusterError::Request {
                    verb: "apply",
                    resource: resource.plural.clone(),
                    reason: "nothing to apply: the object is not in the rendered state".to_string(),
                });
            };
            let mut params = PatchParams::apply(FIELD_MANAGER);
            params.force = options.force_conflicts;
            let applied = with_retries(options.fence.as_ref(), || async {
                match tokio::time::timeout(
                    cluster.request_timeout,
                    api.patch(name, &params, &Patch::Apply(&manifest)),
                )
                .await
                {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(kube::Error::Api(status))) if status.code == 409 => {
                        Err(ClusterError::Api {
                            verb: "apply",
                            resource: resource.plural.clone(),
                            code: 409,
                            retry_after: None,
                            message: format!(
                                "{} (--force-conflicts takes the fields over)",
                                status.message
                            ),
                        })
                    }
                    Ok(Err(e)) => Err(explain(e, "patch", &resource, namespace, &cluster.url)),
                    Err(_) => Err(timed_out("apply", &resource, cluster.request_timeout)),
                }
            })
            .await;
            match (applied, removals(change)) {
                (Ok(()), Some(patch)) => {
                    let params = PatchParams {
                        field_manager: Some(FIELD_MANAGER.to_string()),
                        ..PatchParams::default()
                    };
                    with_retries(options.fence.as_ref(), || async {
                        match tokio::time::timeout(
                            cluster.request_timeout,
                            api.patch(name, &params, &Patch::Merge(&patch)),
                        )
                        .await
                        {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err(e)) => {
                                Err(explain(e, "patch", &resource, namespace, &cluster.url))
                            }
                            Err(_) => Err(timed_out("patch", &resource, cluster.request_timeout)),
                        }
                    })
                    .await
                }
                (applied, _) => applied,
            }
        }
    }
}

fn timed_out(
    verb: &'static str,
    resource: &kube::core::ApiResource,
    timeout: Duration,
) -> ClusterError {
    ClusterError::Request {
        verb,
        resource: resource.plural.clone(),
        reason: format!("no answer within {} s", timeout.as_secs_f64()),
    }
}

/// Applies the plan's changes in order; stops after a stage with a failure.
pub async fn apply(
    cluster: &Cluster,
    plan: &Plan,
    desired: &Desired,
    observed: &Observed,
    options: Options,
) -> Report {
    let mut report = Report::default();
    let mut failed = false;
    let options = &options;
    for stage in stages(plan, observed, desired) {
        for group in stage {
            if failed {
                report.written.extend(group.iter().map(|c| Written {
                    object: c.object.clone(),
                    action: c.action,
                    outcome: Outcome::NotAttempted,
                }));
                continue;
            }
            let results: Vec<Written> = futures::stream::iter(group)
                .map(|change| async move {
                    let outcome = match write(cluster, change, desired, observed, options).await {
                        Ok(()) => Outcome::Applied,
                        Err(error @ ClusterError::Api { code: 409, .. })
                            if change.action != Action::Delete =>
                        {
                            Outcome::Conflict(error.to_string())
                        }
                        Err(error) => Outcome::Failed(error.to_string()),
                    };
                    Written {
                        object: change.object.clone(),
                        action: change.action,
                        outcome,
                    }
                })
                .buffered(CONCURRENCY)
                .collect()
                .await;
            failed |= results.iter().any(|w| w.outcome != Outcome::Applied);
            report.written.extend(results);
        }
    }
    report
}

/// A location's verdict after `--wait`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Available,
    Unavailable(String),
    /// Velero did not validate it in time.
    Pending,
}

/// Waits until Velero has validated each named location since `since` (RFC 3339,
/// seconds), polling with one LIST per round.
pub async fn wait_for_locations(
    cluster: &Cluster,
    namespace: &str,
    names: &[String],
    since: &str,
    timeout: Duration,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<(String, Verdict)>, ClusterError> {
    let resource = resource_of(Kind::BackupStorageLocation);
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), namespace, &resource);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let list = api
            .list(&Default::default())
            .await
            .map_err(|e| explain(e, "list", &resource, namespace, &cluster.url))?;
        let verdicts: Vec<(String, Verdict)> = names
            .iter()
            .map(|name| {
                let status = list
                    .items
                    .iter()
                    .find(|o| o.metadata.name.as_deref() == Some(name.as_str()))
                    .map(|o| o.data["status"].clone())
                    .unwrap_or(Value::Null);
                let fresh = status["lastValidationTime"]
                    .as_str()
                    .is_some_and(|t| t >= since);
                let verdict = match (fresh, status["phase"].as_str()) {
                    (true, Some("Available")) => Verdict::Available,
                    (true, Some("Unavailable")) => Verdict::Unavailable(
                        status["message"].as_str().unwrap_or_default().to_string(),
                    ),
                    _ => Verdict::Pending,
                };
                (name.clone(), verdict)
            })
            .collect();
        let done = verdicts
            .iter()
            .filter(|(_, v)| *v != Verdict::Pending)
            .count();
        progress(done, names.len());
        if done == names.len() || tokio::time::Instant::now() >= deadline {
            return Ok(verdicts);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
