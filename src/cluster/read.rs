//! Reading the cluster: one paginated LIST per kind, never a GET per object, so a plan
//! costs the same number of requests for 10 objects as for 1,000.

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::ApiResource;
use serde_json::Value;

use super::{Cluster, ClusterError, explain, resource_of};
use crate::observe::Observed;
use crate::render::Desired;
use crate::velero::Kind;

/// Items per page: a namespace of a few thousand Velero objects (a few MB) is one
/// request; larger ones are paged rather than read in one response.
const PAGE: u32 = 2000;

/// Every object of one resource in `namespace` (or cluster-wide for ""), page by page.
async fn list_all(
    cluster: &Cluster,
    resource: ApiResource,
    namespace: &str,
    params: ListParams,
) -> Result<Vec<Value>, ClusterError> {
    let api: Api<DynamicObject> = if namespace.is_empty() {
        Api::all_with(cluster.client.clone(), &resource)
    } else {
        Api::namespaced_with(cluster.client.clone(), namespace, &resource)
    };
    let mut items = Vec::new();
    let mut params = params.limit(PAGE);
    loop {
        let page = api
            .list(&params)
            .await
            .map_err(|e| explain(e, "list", &resource, namespace, &cluster.url))?;
        for object in page.items {
            let mut value = serde_json::to_value(&object).unwrap_or(Value::Null);
            // Lists of built-in kinds may leave out each item's type.
            value["apiVersion"] = Value::String(resource.api_version.clone());
            value["kind"] = Value::String(resource.kind.clone());
            items.push(value);
        }
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(items),
        }
    }
}

/// The cluster as the plan needs it: Velero's objects, the Secrets the file names or
/// stowage manages (others' data is dropped as soon as it is read), the Velero
/// Deployment, and the Backups (which locations hold them).
pub async fn state(
    cluster: &Cluster,
    desired: &Desired,
    deployment: &str,
) -> Result<Observed, ClusterError> {
    let wanted_secrets: Vec<&str> = desired
        .secrets
        .iter()
        .map(|s| s.object.name.as_str())
        .chain(desired.external.iter().map(|e| e.secret.as_str()))
        .chain(std::iter::once(crate::velero::INSTALL_SECRET.0))
        .collect();
    let mut observed =
        namespace_state(cluster, &desired.namespace, deployment, &wanted_secrets).await?;
    for policy in resource_policies(cluster, desired).await? {
        observed
            .add(cluster.url.as_str(), policy)
            .map_err(|e| ClusterError::Request {
                verb: "read",
                resource: "configmaps".to_string(),
                reason: e.to_string(),
            })?;
    }
    Ok(observed)
}

/// The resource policy ConfigMaps the declared Schedules name (one GET each, none
/// when no Schedule names one): their keys depend on the Velero version. One that is
/// missing or may not be read is left out.
async fn resource_policies(
    cluster: &Cluster,
    desired: &Desired,
) -> Result<Vec<Value>, ClusterError> {
    let names: std::collections::BTreeSet<&str> = desired
        .objects
        .iter()
        .filter(|o| o.object.kind == Kind::Schedule)
        .filter_map(|o| {
            let policy = o
                .manifest
                .as_schedule()?
                .spec
                .template
                .resource_policy
                .as_ref()?;
            Some(policy.name.as_str())
        })
        .collect();
    let resource = ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("", "v1", "ConfigMap"),
        "configmaps",
    );
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), &desired.namespace, &resource);
    let mut found = Vec::new();
    for name in names {
        match api.get_opt(name).await {
            Ok(Some(object)) => {
                let mut value = serde_json::to_value(&object).unwrap_or(Value::Null);
                value["apiVersion"] = Value::String("v1".to_string());
                value["kind"] = Value::String("ConfigMap".to_string());
                found.push(value);
            }
            Ok(None) => {}
            Err(kube::Error::Api(status)) if status.code == 403 => {}
            Err(e) => {
                return Err(explain(
                    e,
                    "get",
                    &resource,
                    &desired.namespace,
                    &cluster.url,
                ));
            }
        }
    }
    Ok(found)
}

/// The same for a namespace, keeping the data of the named Secrets and of those
/// stowage manages.
pub async fn namespace_state(
    cluster: &Cluster,
    namespace: &str,
    deployment: &str,
    wanted_secrets: &[&str],
) -> Result<Observed, ClusterError> {
    let path = cluster.url.as_str();
    let backups = ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk(crate::velero::GROUP, "v1", "Backup"),
        "backups",
    );
    let deployment_params = ListParams::default().fields(&format!("metadata.name={deployment}"));
    let nodes = ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("", "v1", "Node"),
        "nodes",
    );
    let volumes = ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("", "v1", "PersistentVolume"),
        "persistentvolumes",
    );
    let (locations, snapshots, schedules, secrets, deployments, backup_items, cluster_items) = futures::try_join!(
        list_all(
            cluster,
            resource_of(Kind::BackupStorageLocation),
            namespace,
            ListParams::default()
        ),
        list_all(
            cluster,
            resource_of(Kind::VolumeSnapshotLocation),
            namespace,
            ListParams::default()
        ),
        list_all(
            cluster,
            resource_of(Kind::Schedule),
            namespace,
            ListParams::default()
        ),
        list_all(
            cluster,
            resource_of(Kind::Secret),
            namespace,
            ListParams::default()
        ),
        list_all(
            cluster,
            resource_of(Kind::Deployment),
            namespace,
            deployment_params
        ),
        list_all(cluster, backups, namespace, ListParams::default()),
        cluster_wide(cluster, nodes, volumes),
    )?;
    let cluster_items_seen = cluster_items.is_some();
    let mut observed = Observed::default();
    for kind in Kind::ALL {
        observed.saw_kind(kind);
    }
    let to_cluster_error = |e: crate::observe::ObserveError| ClusterError::Request {
        verb: "read",
        resource: "objects".to_string(),
        reason: e.to_string(),
    };
    for item in locations
        .into_iter()
        .chain(snapshots)
        .chain(schedules)
        .chain(deployments)
        .chain(backup_items)
    {
        observed.add(path, item).map_err(to_cluster_error)?;
    }
    for item in cluster_items.into_iter().flatten() {
        observed.add(path, item).map_err(to_cluster_error)?;
    }
    if observed.cluster.is_none() && cluster_items_seen {
        observed.cluster = Some(Default::default());
    }
    let deployment_ref = crate::velero::ObjectRef {
        kind: Kind::Deployment,
        namespace: namespace.to_string(),
        name: deployment.to_string(),
    };
    if observed.objects.contains_key(&deployment_ref)
        && observed.velero_version(&deployment_ref).is_none()
    {
        // A Velero whose image has no version tag: what its server said when `velero
        // version` asked. One more LIST, only then; a Role without it goes without.
        for report in server_status_requests(cluster, namespace).await? {
            observed.add(path, report).map_err(to_cluster_error)?;
        }
    }
    for secret in secrets {
        let name = secret["metadata"]["name"].as_str().unwrap_or_default();
        let managed = secret["metadata"]["labels"][crate::velero::MANAGED_BY_LABEL]
            == crate::velero::MANAGED_BY_VALUE;
        if managed || wanted_secrets.contains(&name) {
            observed.add(path, secret).map_err(to_cluster_error)?;
        }
    }
    Ok(observed)
}

/// Velero's ServerStatusRequests in `namespace`; none when they may not be listed.
async fn server_status_requests(
    cluster: &Cluster,
    namespace: &str,
) -> Result<Vec<Value>, ClusterError> {
    let requests = ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk(crate::velero::GROUP, "v1", "ServerStatusRequest"),
        "serverstatusrequests",
    );
    match list_all(cluster, requests, namespace, ListParams::default()).await {
        Ok(items) => Ok(items),
        Err(ClusterError::Forbidden { .. }) => Ok(Vec::new()),
        Err(other) => Err(other),
    }
}

/// Nodes and PersistentVolumes, for the live checks. A service account that may not
/// read them (a namespaced Role, as in `examples/deploy/`) skips those checks rather
/// than failing the plan.
async fn cluster_wide(
    cluster: &Cluster,
    nodes: ApiResource,
    volumes: ApiResource,
) -> Result<Option<Vec<Value>>, ClusterError> {
    match cluster.shared_cluster_wide() {
        Some(shared) => shared
            .get_or_init(|| read_cluster_wide(cluster, nodes, volumes))
            .await
            .clone(),
        None => read_cluster_wide(cluster, nodes, volumes).await,
    }
}

async fn read_cluster_wide(
    cluster: &Cluster,
    nodes: ApiResource,
    volumes: ApiResource,
) -> Result<Option<Vec<Value>>, ClusterError> {
    let listed = futures::try_join!(
        list_all(cluster, nodes, "", ListParams::default()),
        list_all(cluster, volumes, "", ListParams::default()),
    );
    match listed {
        Ok((mut nodes, volumes)) => {
            nodes.extend(volumes);
            Ok(Some(nodes))
        }
        Err(ClusterError::Forbidden { .. }) => Ok(None),
        Err(other) => Err(other),
    }
}
