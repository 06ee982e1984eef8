//! The cluster side of restore drills: the namespaces a drill restores into, its Velero
//! Restore, what came back (one LIST per kind and namespace), and the record of each
//! copy's last drill, kept in a ConfigMap of stowage's own so a restarted daemon knows
//! it. Every write passes the Lease's fence when there is one.

use std::collections::{BTreeMap, BTreeSet};

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use super::lease::Fence;
use super::{Cluster, ClusterError, explain};

fn check(fence: Option<&Fence>) -> Result<(), ClusterError> {
    if let Some(fence) = fence {
        fence.check()?;
    }
    Ok(())
}

fn namespaces_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Namespace"), "namespaces")
}

fn restores_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(crate::velero::GROUP, "v1", "Restore"),
        "restores",
    )
}

fn configmaps_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "ConfigMap"), "configmaps")
}

/// The names of every namespace in the cluster.
pub async fn namespaces(cluster: &Cluster) -> Result<BTreeSet<String>, ClusterError> {
    let resource = namespaces_resource();
    let api: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &resource);
    let list = api
        .list_metadata(&ListParams::default())
        .await
        .map_err(|e| explain(e, "list", &resource, "", &cluster.url))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect())
}

/// Creates a namespace with `labels`; an existing one is an error (a drill never
/// writes into a namespace it did not make).
pub async fn create_namespace(
    cluster: &Cluster,
    name: &str,
    labels: &BTreeMap<String, String>,
    fence: Option<&Fence>,
) -> Result<(), ClusterError> {
    check(fence)?;
    let resource = namespaces_resource();
    let api: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &resource);
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels},
    }))
    .map_err(|e| ClusterError::Request {
        verb: "create",
        resource: "namespaces".to_string(),
        reason: e.to_string(),
    })?;
    api.create(&PostParams::default(), &object)
        .await
        .map(|_| ())
        .map_err(|e| explain(e, "create", &resource, "", &cluster.url))
}

/// The ClusterRole a drill binds in each namespace it makes, so that it may list what
/// came back there and nowhere else (`examples/deploy/rbac.yaml`).
pub const READER_ROLE: &str = "stowage-drill-reader";

/// Who this client is to the API server (a SelfSubjectReview), as RBAC names it.
pub async fn user_name(cluster: &Cluster) -> Result<String, ClusterError> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("authentication.k8s.io", "v1", "SelfSubjectReview"),
        "selfsubjectreviews",
    );
    let api: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &resource);
    let review: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
        "metadata": {},
    }))
    .map_err(|e| ClusterError::Request {
        verb: "create",
        resource: "selfsubjectreviews".to_string(),
        reason: e.to_string(),
    })?;
    let answer = api
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| explain(e, "create", &resource, "", &cluster.url))?;
    answer
        .data
        .pointer("/status/userInfo/username")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ClusterError::Request {
            verb: "create",
            resource: "selfsubjectreviews".to_string(),
            reason: "the API server named no user".to_string(),
        })
}

/// Lets `user` list everything in the drill's own `namespace`: a RoleBinding of
/// [`READER_ROLE`], removed with the namespace.
pub async fn grant_listing(
    cluster: &Cluster,
    namespace: &str,
    user: &str,
    labels: &BTreeMap<String, String>,
    fence: Option<&Fence>,
) -> Result<(), ClusterError> {
    check(fence)?;
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "RoleBinding"),
        "rolebindings",
    );
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), namespace, &resource);
    let binding: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": READER_ROLE, "namespace": namespace, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": READER_ROLE},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))
    .map_err(|e| ClusterError::Request {
        verb: "create",
        resource: "rolebindings".to_string(),
        reason: e.to_string(),
    })?;
    match api.create(&PostParams::default(), &binding).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(explain(e, "create", &resource, namespace, &cluster.url)),
    }
}

/// Deletes a namespace (everything in it goes with it); gone already is fine.
pub async fn delete_namespace(
    cluster: &Cluster,
    name: &str,
    fence: Option<&Fence>,
) -> Result<(), ClusterError> {
    check(fence)?;
    let resource = namespaces_resource();
    let api: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &resource);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(explain(e, "delete", &resource, "", &cluster.url)),
    }
}

/// Whether the namespace is gone.
pub async fn namespace_gone(cluster: &Cluster, name: &str) -> Result<bool, ClusterError> {
    let resource = namespaces_resource();
    let api: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &resource);
    api.get_opt(name)
        .await
        .map(|found| found.is_none())
        .map_err(|e| explain(e, "get", &resource, "", &cluster.url))
}

/// Creates the Restore (server-side apply as stowage).
pub async fn create_restore(
    cluster: &Cluster,
    namespace: &str,
    manifest: &Value,
    fence: Option<&Fence>,
) -> Result<(), ClusterError> {
    check(fence)?;
    let resource = restores_resource();
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), namespace, &resource);
    let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
    api.patch(
        name,
        &PatchParams::apply(super::apply::FIELD_MANAGER),
        &Patch::Apply(manifest),
    )
    .await
    .map(|_| ())
    .map_err(|e| explain(e, "apply", &resource, namespace, &cluster.url))
}

/// A Restore as it is now, if it exists.
pub async fn restore(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, ClusterError> {
    let resource = restores_resource();
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), namespace, &resource);
    api.get_opt(name)
        .await
        .map(|found| found.and_then(|o| serde_json::to_value(o).ok()))
        .map_err(|e| explain(e, "get", &resource, namespace, &cluster.url))
}

/// The Restores that carry `selector`.
pub async fn restores(
    cluster: &Cluster,
    namespace: &str,
    selector: &str,
) -> Result<Vec<Value>, ClusterError> {
    let resource = restores_resource();
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), namespace, &resource);
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| explain(e, "list", &resource, namespace, &cluster.url))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
}

/// The namespaces that carry `selector`.
pub async fn labelled_namespaces(
    cluster: &Cluster,
    selector: &str,
) -> Result<Vec<Value>, ClusterError> {
    let resource = namespaces_resource();
    let api: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &resource);
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| explain(e, "list", &resource, "", &cluster.url))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
}

/// Deletes a Restore (Velero then removes its files from the bucket); gone is fine.
pub async fn delete_restore(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    fence: Option<&Fence>,
) -> Result<(), ClusterError> {
    check(fence)?;
    let resource = restores_resource();
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), namespace, &resource);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(explain(e, "delete", &resource, namespace, &cluster.url)),
    }
}

/// Each `group/version/Kind` the API server serves, with its resource; those it does
/// not serve (a CRD gone) apart.
pub async fn resolve_kinds(
    cluster: &Cluster,
    gvks: &BTreeSet<String>,
) -> (BTreeMap<String, ApiResource>, BTreeSet<String>) {
    let mut served = BTreeMap::new();
    let mut unserved = BTreeSet::new();
    for gvk in gvks {
        let (group_version, kind) = gvk.rsplit_once('/').unwrap_or(("", gvk));
        let (group, version) = group_version.split_once('/').unwrap_or(("", group_version));
        let wanted = GroupVersionKind::gvk(group, version, kind);
        match kube::discovery::pinned_kind(&cluster.client, &wanted).await {
            Ok((resource, _)) => {
                served.insert(gvk.clone(), resource);
            }
            Err(_) => {
                unserved.insert(gvk.clone());
            }
        }
    }
    (served, unserved)
}

/// Which of the given `(gvk, namespace)` places hold which names: one LIST (names
/// only) per kind and namespace, for kinds in `served`.
pub async fn present(
    cluster: &Cluster,
    places: &BTreeSet<(String, String)>,
    served: &BTreeMap<String, ApiResource>,
) -> Result<BTreeSet<(String, String, String)>, ClusterError> {
    let mut found = BTreeSet::new();
    for (gvk, namespace) in places {
        let Some(resource) = served.get(gvk) else {
            continue;
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(cluster.client.clone(), namespace, resource);
        let list = api
            .list_metadata(&ListParams::default())
            .await
            .map_err(|e| explain(e, "list", resource, namespace, &cluster.url))?;
        for object in list.items {
            if let Some(name) = object.metadata.name {
                found.insert((gvk.clone(), namespace.clone(), name));
            }
        }
    }
    Ok(found)
}

/// The data of a ConfigMap, empty when it does not exist.
pub async fn config_map_data(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
) -> Result<BTreeMap<String, String>, ClusterError> {
    let resource = configmaps_resource();
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), namespace, &resource);
    let found = api
        .get_opt(name)
        .await
        .map_err(|e| explain(e, "get", &resource, namespace, &cluster.url))?;
    Ok(found
        .and_then(|o| serde_json::from_value(o.data["data"].clone()).ok())
        .unwrap_or_default())
}

/// Sets one key of a ConfigMap stowage owns (server-side apply as stowage, the key
/// alone, so other keys stay), with stowage's labels.
pub async fn set_config_map_key(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    key: &str,
    value: &str,
    fence: Option<&Fence>,
) -> Result<(), ClusterError> {
    check(fence)?;
    let resource = configmaps_resource();
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), namespace, &resource);
    let manifest = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {key: value},
    });
    // A field manager per key: applying one key never removes another.
    let manager = format!("{}-drill-{key}", super::apply::FIELD_MANAGER);
    let manager: String = manager.chars().take(128).collect();
    api.patch(
        name,
        &PatchParams::apply(&manager).force(),
        &Patch::Apply(&manifest),
    )
    .await
    .map(|_| ())
    .map_err(|e| explain(e, "apply", &resource, namespace, &cluster.url))
}
