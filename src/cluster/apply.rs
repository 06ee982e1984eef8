//! Carrying out a plan: each change's request (a server-side apply with field manager
//! `stowage`, a merge patch, a conditional delete) sent as the plan holds it, stage by
//! stage in the plan's order. A failed stage stops the stages after it, and the report
//! says exactly what was and was not written. Nothing here decides what to send.

use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use serde_json::Value;

use super::{Cluster, ClusterError, explain, resource_of};
use crate::plan::{Action, Body, Change, Plan, Request, SecretData};
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

/// The object a server-side apply sends, as JSON; the Secret's values are encoded
/// here, at the last moment, by `render`'s one encoder.
fn body_json<'a>(
    body: &'a Body,
    object: &ObjectRef,
) -> Result<std::borrow::Cow<'a, Value>, &'static str> {
    match body {
        Body::Velero(manifest) => Ok(std::borrow::Cow::Owned(manifest.to_value())),
        Body::Object(manifest) => Ok(std::borrow::Cow::Borrowed(manifest)),
        Body::Secret {
            data: SecretData::Values(values),
            labels,
        } => serde_json::to_value(crate::render::secret_object(object, labels, values))
            .map(std::borrow::Cow::Owned)
            .map_err(|_| "the Secret could not be encoded"),
        Body::Secret {
            data: SecretData::Withheld(_),
            ..
        } => Err("a saved plan holds no secret value: plan again from the file to write it"),
    }
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
    request: &Request,
    options: &Options,
) -> Result<(), ClusterError> {
    let resource = resource_of(change.object.kind);
    let namespace = change.object.namespace.as_str();
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), namespace, &resource);
    let name = change.object.name.as_str();
    match request {
        Request::MergePatch { patch } => {
            merge_patch(cluster, (&api, &resource, namespace), name, patch, options).await
        }
        Request::Delete { uid } => {
            let params = DeleteParams {
                preconditions: uid.clone().map(|uid| Preconditions {
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
        Request::Apply { body, remove } => {
            let manifest =
                body_json(body, &change.object).map_err(|reason| ClusterError::Request {
                    verb: "apply",
                    resource: resource.plural.clone(),
                    reason: reason.to_string(),
                })?;
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
            match (applied, remove) {
                (Ok(()), Some(patch)) => {
                    merge_patch(cluster, (&api, &resource, namespace), name, patch, options).await
                }
                (applied, _) => applied,
            }
        }
    }
}

/// A JSON merge patch of `name` with field manager `stowage`.
async fn merge_patch(
    cluster: &Cluster,
    (api, resource, namespace): (&Api<DynamicObject>, &kube::core::ApiResource, &str),
    name: &str,
    patch: &Value,
    options: &Options,
) -> Result<(), ClusterError> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    with_retries(options.fence.as_ref(), || async {
        match tokio::time::timeout(
            cluster.request_timeout,
            api.patch(name, &params, &Patch::Merge(patch)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(explain(e, "patch", resource, namespace, &cluster.url)),
            Err(_) => Err(timed_out("patch", resource, cluster.request_timeout)),
        }
    })
    .await
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

/// Carries out the plan: its stages in order, the changes of a stage at once (at most
/// [`CONCURRENCY`]); after a stage with a failure, nothing more is sent.
pub async fn apply(cluster: &Cluster, plan: &Plan, options: Options) -> Report {
    let mut report = Report::default();
    let mut failed = false;
    let options = &options;
    for (_, steps) in plan.execution() {
        if failed {
            for (change, _) in steps {
                // A change whose preparation failed is reported once, as failed.
                if !report.written.iter().any(|w| w.object == change.object) {
                    report.written.push(Written {
                        object: change.object.clone(),
                        action: change.action,
                        outcome: Outcome::NotAttempted,
                    });
                }
            }
            continue;
        }
        let results: Vec<(bool, Written)> = futures::stream::iter(steps)
            .map(|(change, request)| async move {
                let outcome = match write(cluster, change, request, options).await {
                    Ok(()) => Outcome::Applied,
                    Err(error @ ClusterError::Api { code: 409, .. })
                        if change.action != Action::Delete =>
                    {
                        Outcome::Conflict(error.to_string())
                    }
                    Err(error) => Outcome::Failed(error.to_string()),
                };
                let written = Written {
                    object: change.object.clone(),
                    action: change.action,
                    outcome,
                };
                (std::ptr::eq(request, &change.request), written)
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        for (own_request, written) in results {
            failed |= written.outcome != Outcome::Applied;
            // A preparation that landed is not the change: its own request reports it.
            if own_request || written.outcome != Outcome::Applied {
                report.written.push(written);
            }
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
