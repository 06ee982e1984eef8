//! The Kubernetes edge: connecting, reading the cluster into an `Observed` (one
//! paginated LIST per kind), and writing a plan with server-side apply. Everything
//! here does I/O; what to write was decided by the pure `plan`.

pub mod apply;
pub mod read;

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};

use crate::velero::Kind;

/// Where the cluster is: a kubeconfig (path and context), else `KUBECONFIG`,
/// `~/.kube/config`, or the in-cluster service account.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

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
    },
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
    let config = match &target.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| ClusterError::Kubeconfig {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| ClusterError::Kubeconfig {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?
        }
        None if target.context.is_some() => {
            kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| ClusterError::NoConfig {
                    reason: e.to_string(),
                })?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| ClusterError::NoConfig {
                reason: e.to_string(),
            })?,
    };
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|e| ClusterError::Unreachable {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    Ok(Cluster {
        client,
        url,
        cluster_wide: None,
    })
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
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}
