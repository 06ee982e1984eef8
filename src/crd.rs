//! Velero's v1 kinds as Rust types, faithful to Velero v1.18.1's CRDs: field names
//! exactly as Velero spells them (`datamover`, `caCertRef`), optional fields left out
//! when unset. Data only: nothing here talks to a cluster.
//!
//! Typed both ways: each kind serializes to and reads from Velero's own JSON, and
//! nothing here knows the file (rendering maps the file's template onto
//! [`BackupSpec`]).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

fn is_false(value: &bool) -> bool {
    !*value
}

/// A key of a Secret in the Velero namespace (`corev1.SecretKeySelector`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeySelector {
    pub name: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStorageLocation {
    pub bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// PEM bundle; base64 in JSON. Deprecated in favour of `caCertRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub ca_cert: Option<ByteString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_ref: Option<SecretKeySelector>,
}

#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "velero.io",
    version = "v1",
    kind = "BackupStorageLocation",
    namespaced,
    derive = "PartialEq",
    shortname = "bsl",
    status = "BackupStorageLocationStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct BackupStorageLocationSpec {
    pub provider: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<SecretKeySelector>,
    pub object_storage: ObjectStorageLocation,
    #[serde(default, skip_serializing_if = "is_false")]
    pub default: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_sync_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_frequency: Option<String>,
}

/// Written by Velero only; stowage reads it and never sends it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStorageLocationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_validation_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_time: Option<String>,
}

#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "velero.io",
    version = "v1",
    kind = "VolumeSnapshotLocation",
    namespaced,
    derive = "PartialEq",
    shortname = "vsl"
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotLocationSpec {
    pub provider: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<SecretKeySelector>,
}

#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "velero.io",
    version = "v1",
    kind = "Schedule",
    namespaced,
    derive = "PartialEq",
    status = "ScheduleStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    pub schedule: String,
    pub template: BackupSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_owner_references_in_backup: Option<bool>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_immediately: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_errors: Vec<String>,
}

/// Velero's BackupSpec, as a Schedule's `template` holds it (`pkg/apis/velero/v1/backup_types.go`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Labels for the Backup objects this schedule creates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BackupMetadata>,
    /// Namespaces to include; "*" (alone) or a list. Empty means all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub included_namespaces: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded_namespaces: Option<Vec<String>>,
    /// Resource filter (old style; do not mix with the *_scoped_resources filters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub included_resources: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded_resources: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_cluster_resources: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub included_cluster_scoped_resources: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded_cluster_scoped_resources: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub included_namespace_scoped_resources: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded_namespace_scoped_resources: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Backs up what matches any of these selectors; not with `labelSelector`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub or_label_selectors: Option<Vec<LabelSelector>>,
    /// Take native volume snapshots (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_volumes: Option<bool>,
    /// Back up every pod volume with the file-system uploader.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_volumes_to_fs_backup: Option<bool>,
    /// Deprecated spelling of `defaultVolumesToFsBackup`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_volumes_to_restic: Option<bool>,
    /// Move CSI snapshot data to the backup storage location.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_move_data: Option<bool>,
    /// The data mover to use ("velero" or a third party's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datamover: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uploader_config: Option<UploaderConfig>,
    /// How long backups are kept (Go duration, e.g. "720h").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csi_snapshot_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_operation_timeout: Option<String>,
    /// The backup location; without it Velero uses its default location at backup
    /// time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
    /// Snapshot locations, at most one per provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_locations: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_group_snapshot_label_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hooks: Option<BackupHooks>,
    /// Resource kind -> ordered list of "namespace/name" to back up first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordered_resources: Option<BTreeMap<String, String>>,
    /// A ConfigMap of resource policies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_policy: Option<ResourcePolicyRef>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BackupMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LabelSelectorRequirement {
    pub key: String,
    /// In, NotIn, Exists or DoesNotExist.
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploaderConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_files_upload: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BackupHooks {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<BackupResourceHook>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupResourceHook {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub included_namespaces: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded_namespaces: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub included_resources: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded_resources: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre: Vec<BackupHook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post: Vec<BackupHook>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BackupHook {
    pub exec: ExecHook,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum HookErrorMode {
    Continue,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecHook {
    /// The container to run in (default: the pod's first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The command and its arguments.
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_error: Option<HookErrorMode>,
    /// Go duration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourcePolicyRef {
    /// Must be "configmap".
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
}

/// One of the Velero objects a file declares, as stowage sends it: typed, and written
/// as the object itself (`apiVersion` and `kind` first). It has no status: rendering
/// builds none and [`VeleroObject::from_value`] drops one.
#[derive(Debug, Clone, PartialEq)]
pub enum VeleroObject {
    // Boxed, each of its own size: most of a file's objects are Schedules, twice the
    // size of a location.
    BackupStorageLocation(Box<BackupStorageLocation>),
    VolumeSnapshotLocation(Box<VolumeSnapshotLocation>),
    Schedule(Box<Schedule>),
}

/// Why JSON is not one of the Velero objects stowage declares.
#[derive(Debug, thiserror::Error)]
pub enum VeleroObjectError {
    #[error("`{0}` is not a velero.io/v1 kind stowage declares")]
    Kind(String),
    #[error("not a velero.io/v1 object: {0}")]
    Shape(#[from] serde_json::Error),
}

impl VeleroObject {
    pub fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            VeleroObject::BackupStorageLocation(object) => &object.metadata,
            VeleroObject::VolumeSnapshotLocation(object) => &object.metadata,
            VeleroObject::Schedule(object) => &object.metadata,
        }
    }

    /// A location's provider (a Schedule has none).
    pub fn provider(&self) -> Option<&str> {
        match self {
            VeleroObject::BackupStorageLocation(object) => Some(&object.spec.provider),
            VeleroObject::VolumeSnapshotLocation(object) => Some(&object.spec.provider),
            VeleroObject::Schedule(_) => None,
        }
    }

    /// A location's provider configuration (a Schedule has none).
    pub fn config(&self) -> Option<&BTreeMap<String, String>> {
        match self {
            VeleroObject::BackupStorageLocation(object) => Some(&object.spec.config),
            VeleroObject::VolumeSnapshotLocation(object) => Some(&object.spec.config),
            VeleroObject::Schedule(_) => None,
        }
    }

    pub fn as_schedule(&self) -> Option<&Schedule> {
        match self {
            VeleroObject::Schedule(object) => Some(object),
            _ => None,
        }
    }

    /// Whether it is a backup location that is Velero's default.
    pub fn is_default_location(&self) -> bool {
        matches!(self, VeleroObject::BackupStorageLocation(object) if object.spec.default)
    }

    /// The whole object as JSON.
    pub fn to_value(&self) -> serde_json::Value {
        // Every map in these types is keyed by strings: encoding cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The spec alone as JSON, the form the plan compares.
    pub fn spec_value(&self) -> serde_json::Value {
        let spec = match self {
            VeleroObject::BackupStorageLocation(object) => serde_json::to_value(&object.spec),
            VeleroObject::VolumeSnapshotLocation(object) => serde_json::to_value(&object.spec),
            VeleroObject::Schedule(object) => serde_json::to_value(&object.spec),
        };
        spec.unwrap_or(serde_json::Value::Null)
    }

    /// Reads an object of one of the three kinds, chosen by its `kind`.
    pub fn from_value(value: serde_json::Value) -> Result<VeleroObject, VeleroObjectError> {
        enum Declared {
            Location,
            SnapshotLocation,
            Schedule,
        }
        let field = |name: &str| value.get(name).and_then(serde_json::Value::as_str);
        let kind = match (field("apiVersion"), field("kind")) {
            (Some("velero.io/v1"), Some("BackupStorageLocation")) => Declared::Location,
            (Some("velero.io/v1"), Some("VolumeSnapshotLocation")) => Declared::SnapshotLocation,
            (Some("velero.io/v1"), Some("Schedule")) => Declared::Schedule,
            (_, kind) => {
                let kind = kind.unwrap_or_default().to_string();
                return Err(VeleroObjectError::Kind(kind));
            }
        };
        Ok(match kind {
            Declared::Location => {
                let object: BackupStorageLocation = serde_json::from_value(value)?;
                VeleroObject::BackupStorageLocation(Box::new(BackupStorageLocation {
                    status: None,
                    ..object
                }))
            }
            Declared::SnapshotLocation => {
                VeleroObject::VolumeSnapshotLocation(Box::new(serde_json::from_value(value)?))
            }
            Declared::Schedule => {
                let object: Schedule = serde_json::from_value(value)?;
                VeleroObject::Schedule(Box::new(Schedule {
                    status: None,
                    ..object
                }))
            }
        })
    }
}

impl Serialize for VeleroObject {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            VeleroObject::BackupStorageLocation(object) => object.serialize(serializer),
            VeleroObject::VolumeSnapshotLocation(object) => object.serialize(serializer),
            VeleroObject::Schedule(object) => object.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for VeleroObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        VeleroObject::from_value(value).map_err(serde::de::Error::custom)
    }
}
