//! Observe: what the cluster holds, as plain data for `plan`.
//!
//! [`Observed`] is the same whether it came from a live cluster or from a saved
//! `kubectl get -o yaml` (`--observed FILE`, read by [`from_yaml`]). Secret data is
//! turned into `SecretValue`s the moment it is read, so no later stage can print it.
//! This module only reads; it never writes.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use serde_json::Value;

use crate::secret::SecretValue;
use crate::velero::{Kind, ObjectRef};

/// A Velero object or Deployment as the cluster holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedObject {
    pub object: ObjectRef,
    /// The whole object without `managedFields`.
    pub manifest: Value,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub resource_version: Option<String>,
    pub uid: Option<String>,
    /// Who set which fields (`metadata.managedFields`, when the state carries them).
    pub field_managers: Vec<FieldManager>,
}

/// One `managedFields` entry: a manager and the fields it owns (FieldsV1).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldManager {
    pub manager: String,
    pub fields: Value,
}

impl ObservedObject {
    pub fn spec(&self) -> &Value {
        self.manifest.get("spec").unwrap_or(&Value::Null)
    }

    /// A BackupStorageLocation's spec as Velero's own type; `None` for another kind, or
    /// for a spec the API server's schema would not have let in.
    pub fn location_spec(&self) -> Option<crate::crd::BackupStorageLocationSpec> {
        use serde::Deserialize as _;
        if self.object.kind != Kind::BackupStorageLocation {
            return None;
        }
        crate::crd::BackupStorageLocationSpec::deserialize(self.spec()).ok()
    }

    /// The managers that own `field`, as managedFields record them.
    pub fn managers_of(&self, field: &crate::velero::FieldPath) -> Vec<&str> {
        self.field_managers
            .iter()
            .filter(|entry| field.is_in_fields_v1(&entry.fields))
            .map(|entry| entry.manager.as_str())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObservedSecret {
    pub object: ObjectRef,
    pub labels: BTreeMap<String, String>,
    pub data: BTreeMap<String, SecretValue>,
    /// Data keys that managedFields say stowage applied, when the state carries them.
    pub keys_applied_by_stowage: BTreeSet<String>,
    pub resource_version: Option<String>,
    pub uid: Option<String>,
}

/// A Velero Backup: for the risks of deleting what it depends on, and for whether
/// each copy of a schedule lands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedBackup {
    pub name: String,
    pub namespace: String,
    pub storage_location: Option<String>,
    pub volume_snapshot_locations: Vec<String>,
    /// The Velero Schedule that made it (label `velero.io/schedule-name`).
    pub schedule: Option<String>,
    /// `status.phase`; `None` before Velero has looked at it.
    pub phase: Option<String>,
    /// When it started (`status.startTimestamp`, else its creation), RFC 3339.
    pub started: Option<String>,
    /// `status.completionTimestamp`, RFC 3339.
    pub completed: Option<String>,
    /// `metadata.creationTimestamp`: set by the API server, so the order backups were
    /// made in, whatever their status claims.
    pub created: Option<String>,
    /// Velero's reason when it failed: `status.failureReason` or its validation errors.
    pub failure: Option<String>,
    /// `status.queuePosition` while Velero 1.18 holds the backup `Queued`.
    pub queue_position: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Whether a bucket place could be listed, and what it holds.
pub enum BucketStatus {
    Reachable {
        backups: usize,
        /// The count stopped at the listing bound: at least this many.
        backups_capped: bool,
        foreign: Vec<String>,
    },
    Unreachable {
        reason: String,
    },
    NotChecked {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// What listing one bucket place found.
pub struct BucketReport {
    pub location: String,
    pub bucket: String,
    pub prefix: Option<String>,
    pub status: BucketStatus,
}

/// What the bucket checks found, as `plan` takes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketFindings {
    /// The place each declared location points at, in the file's order.
    pub declared: Vec<BucketReport>,
    /// The place a location in the cluster points at now, for those the plan deletes
    /// or repoints (`plan::places_at_risk`): their backups are what the
    /// change puts at risk.
    pub current: Vec<BucketReport>,
}

/// The observed state of the Velero namespace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub objects: BTreeMap<ObjectRef, ObservedObject>,
    pub secrets: BTreeMap<ObjectRef, ObservedSecret>,
    pub backups: Vec<ObservedBackup>,
    /// Which kinds the state covers at all: a saved state without Secrets says nothing
    /// about them, which differs from saying there are none.
    pub kinds_seen: BTreeSet<Kind>,
    /// Nodes and volumes, when the state includes them (live, or a saved state with
    /// `kubectl get nodes,pv`).
    pub cluster: Option<ClusterFacts>,
    /// The newest version a Velero server reported in a ServerStatusRequest (what
    /// `velero version` asks), when the state includes them.
    pub reported_version: Option<ReportedVersion>,
    /// The resource policy ConfigMaps the schedules name, by name: their data.
    pub resource_policies: BTreeMap<String, BTreeMap<String, String>>,
}

/// `status.serverVersion` of a processed ServerStatusRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedVersion {
    pub request: String,
    /// `metadata.creationTimestamp`, RFC 3339: the newest report wins.
    pub created: Option<String>,
    pub version: String,
}

/// What the live checks need to know about the cluster beyond Velero's namespace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterFacts {
    /// `topology.kubernetes.io/region` of the nodes (the legacy label as a fallback).
    pub node_regions: BTreeSet<String>,
    pub volumes: Vec<ObservedVolume>,
}

/// A PersistentVolume: its name and how it is provisioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedVolume {
    pub name: String,
    /// The CSI driver, or the in-tree plugin's name (`kubernetes.io/aws-ebs`).
    pub driver: String,
}

/// The in-tree volume sources Velero's snapshotters know, by the name Kubernetes gives
/// their provisioners.
const IN_TREE: [(&str, &str); 5] = [
    ("awsElasticBlockStore", "kubernetes.io/aws-ebs"),
    ("azureDisk", "kubernetes.io/azure-disk"),
    ("gcePersistentDisk", "kubernetes.io/gce-pd"),
    ("portworxVolume", "kubernetes.io/portworx-volume"),
    ("cinder", "kubernetes.io/cinder"),
];

fn volume_driver(spec: &Value) -> String {
    if let Some(driver) = spec.pointer("/csi/driver").and_then(Value::as_str) {
        return driver.to_string();
    }
    IN_TREE
        .iter()
        .find(|(field, _)| spec.get(*field).is_some())
        .map(|(_, name)| name.to_string())
        .unwrap_or_else(|| "other".to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid YAML: {message}")]
    Yaml { path: String, message: String },
    #[error("{path}: {what} has no {field}")]
    Incomplete {
        path: String,
        what: String,
        field: &'static str,
    },
    #[error("{path}: Secret {name}: key {key} is not valid base64")]
    SecretEncoding {
        path: String,
        name: String,
        key: String,
    },
}

/// Reads a saved state: a `kind: List` or several YAML documents, as `kubectl get -o
/// yaml` prints them. Kinds stowage does not manage are skipped.
pub fn from_yaml(path: &str, text: &str) -> Result<Observed, ObserveError> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|error| ObserveError::Yaml {
            path: path.to_string(),
            message: error.without_snippet().to_string(),
        })?;
    let mut items = Vec::new();
    for document in documents {
        match document.get("items") {
            Some(Value::Array(list)) if is_list(&document) => items.extend(list.iter().cloned()),
            _ if document.is_null() => {}
            _ => items.push(document),
        }
    }
    let mut observed = Observed::default();
    for item in items {
        observed.add(path, item)?;
    }
    Ok(observed)
}

fn is_list(document: &Value) -> bool {
    document
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|kind| kind == "List" || kind.ends_with("List"))
}

/// A JSON map of strings (labels, annotations, config), other values skipped.
pub(crate) fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

impl Observed {
    /// The Velero the cluster runs, and where that was read: the server container's
    /// image tag in `deployment`, else the version the server last reported.
    pub fn velero_version(
        &self,
        deployment: &ObjectRef,
    ) -> Option<(crate::velero::version::VeleroVersion, String)> {
        use crate::velero::version::VeleroVersion;
        if let Some(object) = self.objects.get(deployment)
            && let Some(version) = VeleroVersion::of_deployment(&object.manifest)
        {
            return Some((
                version,
                format!("the image of Deployment {}", deployment.name),
            ));
        }
        let reported = self.reported_version.as_ref()?;
        Some((
            VeleroVersion::parse(&reported.version)?,
            format!(
                "as its server reported in ServerStatusRequest {}",
                reported.request
            ),
        ))
    }

    /// Adds one object as the API server returns it.
    pub fn add(&mut self, path: &str, mut item: Value) -> Result<(), ObserveError> {
        let kind_name = item
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let metadata = item.get("metadata").cloned().unwrap_or(Value::Null);
        let name = metadata.get("name").and_then(Value::as_str);
        let namespace = metadata
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if kind_name == "ConfigMap" {
            if let Some(name) = name {
                self.resource_policies
                    .insert(name.to_string(), string_map(item.get("data")));
            }
            return Ok(());
        }
        if kind_name == "ServerStatusRequest" {
            let reported = text_at(&item, "/status/serverVersion").filter(|v| !v.is_empty());
            if let (Some(request), Some(version)) = (name, reported) {
                let report = ReportedVersion {
                    request: request.to_string(),
                    created: text_at(&item, "/metadata/creationTimestamp"),
                    version,
                };
                if self
                    .reported_version
                    .as_ref()
                    .is_none_or(|newest| newest.created <= report.created)
                {
                    self.reported_version = Some(report);
                }
            }
            return Ok(());
        }
        if kind_name == "Backup" {
            let Some(name) = name else {
                return Err(incomplete(path, &kind_name, "metadata.name"));
            };
            let spec = item.get("spec").cloned().unwrap_or(Value::Null);
            let labels = string_map(metadata.get("labels"));
            self.backups.push(ObservedBackup {
                name: name.to_string(),
                namespace,
                storage_location: spec
                    .get("storageLocation")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| labels.get("velero.io/storage-location").cloned()),
                volume_snapshot_locations: spec
                    .get("volumeSnapshotLocations")
                    .and_then(Value::as_array)
                    .map(|list| {
                        list.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
                schedule: labels.get("velero.io/schedule-name").cloned(),
                phase: text_at(&item, "/status/phase"),
                started: text_at(&item, "/status/startTimestamp")
                    .or_else(|| text_at(&item, "/metadata/creationTimestamp")),
                completed: text_at(&item, "/status/completionTimestamp"),
                created: text_at(&item, "/metadata/creationTimestamp"),
                queue_position: item
                    .pointer("/status/queuePosition")
                    .and_then(Value::as_i64),
                failure: text_at(&item, "/status/failureReason").or_else(|| {
                    let errors: Vec<&str> = item
                        .pointer("/status/validationErrors")
                        .and_then(Value::as_array)
                        .map(|list| list.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    (!errors.is_empty()).then(|| errors.join("; "))
                }),
            });
            return Ok(());
        }
        if kind_name == "Node" || kind_name == "PersistentVolume" {
            let facts = self.cluster.get_or_insert_with(ClusterFacts::default);
            let labels = string_map(metadata.get("labels"));
            if kind_name == "Node" {
                if let Some(region) = labels
                    .get("topology.kubernetes.io/region")
                    .or_else(|| labels.get("failure-domain.beta.kubernetes.io/region"))
                {
                    facts.node_regions.insert(region.clone());
                }
            } else {
                facts.volumes.push(ObservedVolume {
                    name: name.unwrap_or_default().to_string(),
                    driver: volume_driver(item.get("spec").unwrap_or(&Value::Null)),
                });
            }
            return Ok(());
        }
        let Some(kind) = Kind::from_kind(&kind_name) else {
            return Ok(());
        };
        let Some(name) = name else {
            return Err(incomplete(path, &kind_name, "metadata.name"));
        };
        let object = ObjectRef {
            kind,
            namespace,
            name: name.to_string(),
        };
        self.kinds_seen.insert(kind);
        let labels = string_map(metadata.get("labels"));
        let resource_version = metadata
            .get("resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        let uid = metadata
            .get("uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        if kind == Kind::Secret {
            let data = secret_data(path, &object.name, &item)?;
            let keys_applied_by_stowage = applied_data_keys(metadata.get("managedFields"));
            self.secrets.insert(
                object.clone(),
                ObservedSecret {
                    object,
                    labels,
                    data,
                    keys_applied_by_stowage,
                    resource_version,
                    uid,
                },
            );
            return Ok(());
        }
        let field_managers = metadata
            .get("managedFields")
            .and_then(Value::as_array)
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|entry| {
                        Some(FieldManager {
                            manager: entry.get("manager")?.as_str()?.to_string(),
                            fields: entry.get("fieldsV1")?.clone(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(metadata) = item.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("managedFields");
        }
        let annotations = string_map(metadata.get("annotations"));
        self.objects.insert(
            object.clone(),
            ObservedObject {
                object,
                manifest: item,
                labels,
                annotations,
                resource_version,
                uid,
                field_managers,
            },
        );
        Ok(())
    }

    /// Notes that the state covers `kind` even when it holds none (a live LIST).
    pub fn saw_kind(&mut self, kind: Kind) {
        self.kinds_seen.insert(kind);
    }
}

/// A non-empty string at `pointer` in `item`.
fn text_at(item: &Value, pointer: &str) -> Option<String> {
    item.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
        .map(str::to_string)
}

fn incomplete(path: &str, kind: &str, field: &'static str) -> ObserveError {
    ObserveError::Incomplete {
        path: path.to_string(),
        what: if kind.is_empty() {
            "an object".to_string()
        } else {
            format!("a {kind}")
        },
        field,
    }
}

fn secret_data(
    path: &str,
    name: &str,
    item: &Value,
) -> Result<BTreeMap<String, SecretValue>, ObserveError> {
    let mut data = BTreeMap::new();
    if let Some(map) = item.get("data").and_then(Value::as_object) {
        for (key, value) in map {
            let encoded = value.as_str().unwrap_or_default();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| ObserveError::SecretEncoding {
                    path: path.to_string(),
                    name: name.to_string(),
                    key: key.clone(),
                })?;
            data.insert(key.clone(), SecretValue::new(bytes));
        }
    }
    if let Some(map) = item.get("stringData").and_then(Value::as_object) {
        for (key, value) in map {
            let text = value.as_str().unwrap_or_default();
            data.insert(key.clone(), SecretValue::new(text.as_bytes().to_vec()));
        }
    }
    Ok(data)
}

/// The `data` keys a managedFields list records as applied by manager `stowage`.
fn applied_data_keys(managed_fields: Option<&Value>) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for entry in managed_fields
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let by_stowage = entry.get("manager").and_then(Value::as_str) == Some("stowage")
            && entry.get("operation").and_then(Value::as_str) == Some("Apply");
        if !by_stowage {
            continue;
        }
        let data = entry
            .get("fieldsV1")
            .and_then(|fields| fields.get("f:data"))
            .and_then(Value::as_object);
        for field in data.into_iter().flatten().map(|(field, _)| field) {
            if let Some(key) = field.strip_prefix("f:") {
                keys.insert(key.to_string());
            }
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lists_and_documents_and_hides_secret_data() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: velero.io/v1\n  kind: BackupStorageLocation\n  metadata: {name: a, namespace: velero, resourceVersion: \"7\"}\n  spec: {provider: aws, objectStorage: {bucket: b}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: velero}\ndata: {cloud: Q0FOQVJZ}\n---\nkind: Namespace\nmetadata: {name: velero}\n";
        let observed = from_yaml("state.yaml", text).expect("parses");
        assert_eq!(observed.objects.len(), 1);
        let secret = observed.secrets.values().next().expect("secret");
        assert_eq!(secret.data["cloud"].expose(), b"CANARY");
        assert!(!format!("{observed:?}").contains("CANARY"));
        assert!(observed.kinds_seen.contains(&Kind::Secret));
    }
}
