//! The Kubernetes edge: connecting, reading the cluster into an `Observed` (one
//! paginated LIST per kind), and writing a plan with server-side apply. Everything
//! here does I/O; what to write was decided by the pure `plan`.

pub mod apply;
pub mod drill;
pub mod lease;
pub mod read;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};

use crate::velero::Kind;

/// Where the cluster is: a kubeconfig (path and context), else `KUBECONFIG` (a list of
/// files, merged as kubectl merges them), `~/.kube/config`, or the in-cluster service
/// account; and how long any one request may go unanswered.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// `--request-timeout`: a request (or a connection) that gets no answer for this
    /// long fails, so a frozen API server is an error, never a hang.
    pub request_timeout: Duration,
}

impl Default for Target {
    fn default() -> Target {
        Target {
            kubeconfig: None,
            context: None,
            request_timeout: REQUEST_TIMEOUT,
        }
    }
}

/// `--request-timeout`'s default.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the cluster could not be read or written, in words an operator can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot read the kubeconfig {path}: {reason}")]
    Kubeconfig { path: String, reason: String },
    #[error("no cluster configured: {reason} (pass --kubeconfig, set KUBECONFIG, or run in a pod)")]
    NoConfig { reason: String },
    #[error("the cluster at {url} cannot be reached: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "the cluster refused the credentials in the kubeconfig (401 Unauthorized): they may have expired"
    )]
    Unauthorized,
    #[error("not allowed to {verb} {resource} in namespace {namespace}: {message}")]
    Forbidden {
        verb: &'static str,
        resource: String,
        namespace: String,
        message: String,
    },
    #[error(
        "Velero is not installed in this cluster: the API server does not serve {resource} (install Velero's CRDs, e.g. `velero install`)"
    )]
    VeleroMissing { resource: String },
    #[error("the API server answered {verb} {resource} with {code}: {message}")]
    Api {
        verb: &'static str,
        resource: String,
        code: u16,
        message: String,
        /// How long the server asked to wait before trying again (429's
        /// `details.retryAfterSeconds`, which carries its Retry-After header).
        retry_after: Option<Duration>,
    },
    #[error(transparent)]
    Fenced(#[from] lease::Fenced),
    #[error("{verb} {resource} failed: {reason}")]
    Request {
        verb: &'static str,
        resource: String,
        reason: String,
    },
}

/// A connected client and the server's address (for messages).
#[derive(Clone)]
pub struct Cluster {
    pub client: kube::Client,
    pub url: String,
    /// How long one request may go unanswered (the client's timeouts are set to it).
    pub request_timeout: Duration,
    /// Set by `sharing_cluster_wide_reads`: the cluster-wide objects (Nodes,
    /// PersistentVolumes) as first read, for every copy of this value.
    cluster_wide: Option<std::sync::Arc<tokio::sync::OnceCell<ClusterWide>>>,
}

/// Nodes and PersistentVolumes, or `None` when reading them is forbidden.
pub(crate) type ClusterWide = Result<Option<Vec<serde_json::Value>>, ClusterError>;

impl Cluster {
    /// This cluster, reading its cluster-wide objects once for all its copies: for the
    /// files of one fleet run that share a cluster, whose plans all want the same
    /// Nodes and volumes. A long-lived client (the daemon's) does not share them, so
    /// that it sees them change.
    pub fn sharing_cluster_wide_reads(mut self) -> Cluster {
        self.cluster_wide = Some(std::sync::Arc::default());
        self
    }

    pub(crate) fn shared_cluster_wide(
        &self,
    ) -> Option<&std::sync::Arc<tokio::sync::OnceCell<ClusterWide>>> {
        self.cluster_wide.as_ref()
    }
}

pub async fn connect(target: &Target) -> Result<Cluster, ClusterError> {
    let options = KubeConfigOptions {
        context: target.context.clone(),
        ..KubeConfigOptions::default()
    };
    let mut config = match kubeconfig_of(target)? {
        Some((kubeconfig, from)) => kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| ClusterError::Kubeconfig {
                path: from,
                reason: e.to_string(),
            })?,
        // No kubeconfig anywhere: the pod's service account. A file's `[cluster]
        // context` names a kubeconfig entry for people and pipelines; the daemon in its
        // own cluster needs none.
        None => kube::Config::incluster().map_err(|e| ClusterError::NoConfig {
            reason: format!("no kubeconfig, and not in a pod ({e})"),
        })?,
    };
    config.connect_timeout = Some(target.request_timeout);
    config.read_timeout = Some(target.request_timeout);
    config.write_timeout = Some(target.request_timeout);
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|e| ClusterError::Unreachable {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    Ok(Cluster {
        client,
        url,
        request_timeout: target.request_timeout,
        cluster_wide: None,
    })
}

/// The largest kubeconfig file read.
const KUBECONFIG_LIMIT: u64 = 16 << 20;

/// The kubeconfig to use and where it came from: `--kubeconfig`, else every file
/// `KUBECONFIG` lists that exists (merged, the first to set a value wins), else
/// `~/.kube/config`; `None` when there is none at all.
fn kubeconfig_of(target: &Target) -> Result<Option<(Kubeconfig, String)>, ClusterError> {
    let read = |path: &Path| -> Result<Kubeconfig, ClusterError> {
        let unreadable = |reason: String| ClusterError::Kubeconfig {
            path: path.display().to_string(),
            reason,
        };
        // Refuses a FIFO or a device before kube opens it.
        crate::input::read_regular(path, KUBECONFIG_LIMIT)
            .map_err(|e| unreadable(e.to_string()))?;
        Kubeconfig::read_from(path).map_err(|e| unreadable(e.to_string()))
    };
    if let Some(path) = &target.kubeconfig {
        return Ok(Some((read(path)?, path.display().to_string())));
    }
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let paths: Vec<PathBuf> = std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty() && p.exists())
            .collect();
        if paths.is_empty() {
            return Err(ClusterError::NoConfig {
                reason: format!(
                    "none of the files KUBECONFIG lists exists ({})",
                    list.to_string_lossy()
                ),
            });
        }
        let mut merged = Kubeconfig::default();
        for path in &paths {
            merged = merged
                .merge(read(path)?)
                .map_err(|e| ClusterError::Kubeconfig {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
        }
        let named = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        return Ok(Some((merged, named)));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match home.map(|home| home.join(".kube").join("config")) {
        Some(path) if path.exists() => Ok(Some((read(&path)?, path.display().to_string()))),
        _ => Ok(None),
    }
}

/// The API resource of a kind stowage reads or writes.
pub fn resource_of(kind: Kind) -> ApiResource {
    let (group, plural) = match kind {
        Kind::Secret => ("", "secrets"),
        Kind::Deployment => ("apps", "deployments"),
        Kind::BackupStorageLocation => (crate::velero::GROUP, "backupstoragelocations"),
        Kind::VolumeSnapshotLocation => (crate::velero::GROUP, "volumesnapshotlocations"),
        Kind::Schedule => (crate::velero::GROUP, "schedules"),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind.as_str()), plural)
}

/// Turns a client error into one that names what was being done.
pub(crate) fn explain(
    error: kube::Error,
    verb: &'static str,
    resource: &ApiResource,
    namespace: &str,
    url: &str,
) -> ClusterError {
    let resource_name = if resource.group.is_empty() {
        resource.plural.clone()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    };
    match error {
        kube::Error::Api(status) => match status.code {
            401 => ClusterError::Unauthorized,
            403 => ClusterError::Forbidden {
                verb,
                resource: resource_name,
                namespace: namespace.to_string(),
                message: status.message,
            },
            404 if resource.group == crate::velero::GROUP
                && status.details.as_ref().is_none_or(|d| d.name.is_empty()) =>
            {
                ClusterError::VeleroMissing {
                    resource: resource_name,
                }
            }
            code => ClusterError::Api {
                verb,
                resource: resource_name,
                code,
                retry_after: status
                    .details
                    .as_ref()
                    .map(|d| d.retry_after_seconds)
                    .filter(|seconds| *seconds > 0)
                    .map(|seconds| Duration::from_secs(u64::from(seconds))),
                message: status.message,
            },
        },
        kube::Error::HyperError(e) => ClusterError::Unreachable {
            url: url.to_string(),
            reason: root_cause(&e),
        },
        kube::Error::Service(e) => ClusterError::Unreachable {
            url: url.to_string(),
            reason: root_cause(e.as_ref()),
        },
        other => ClusterError::Request {
            verb,
            resource: resource_name,
            reason: other.to_string(),
        },
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    let mut timed_out = false;
    loop {
        timed_out |= current
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut);
        match current.source() {
            Some(next) => current = next,
            None => break,
        }
    }
    let cause = current.to_string();
    // The client's timeouts say "deadline has elapsed": say what it means.
    if timed_out || cause.contains("deadline has elapsed") || cause.contains("timed out") {
        return "no answer within the request timeout (--request-timeout)".to_string();
    }
    cause
}
