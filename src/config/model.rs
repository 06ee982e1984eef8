//! The desired-state model: what a `stowage.toml` / `stowage.yaml` declares.
//!
//! Plain data, one type per table of product.md §1. Keys are snake_case in the file;
//! rendering maps the backup template onto Velero's own type (`crd::BackupSpec`).
//! These types also produce the JSON Schema (`stowage schema`), which the loader uses to
//! check the file's shape, so a key added here is known everywhere at once.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The file format versions this build reads.
pub const SUPPORTED_VERSIONS: &[u32] = &[1];

/// A stowage desired-state file: Velero's backup storage locations, volume snapshot
/// locations, their credentials and scheduled backups.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "stowage desired-state file")]
pub struct Config {
    /// File format version; only 1 exists.
    pub version: u32,
    /// Which cluster this file is for.
    #[serde(default)]
    pub cluster: Cluster,
    /// Where Velero runs and how stowage marks what it owns.
    #[serde(default)]
    pub velero: Velero,
    /// Credentials: each is one key of one Secret in the Velero namespace.
    #[serde(default)]
    pub credentials: BTreeMap<String, Credential>,
    /// BackupStorageLocations, by name.
    #[serde(default)]
    pub backup_locations: BTreeMap<String, BackupLocation>,
    /// VolumeSnapshotLocations, by name.
    #[serde(default)]
    pub snapshot_locations: BTreeMap<String, SnapshotLocation>,
    /// Scheduled backups, by name.
    // Boxed: a schedule is near a kilobyte, and a map of them inline moved whole nodes
    // of them on every insert.
    #[serde(default)]
    pub schedules: BTreeMap<String, Box<Schedule>>,
}

/// The cluster a file is for, so that a directory of files (a fleet) says which file
/// goes where.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    /// The kubeconfig context to use (`--context` overrides it).
    pub context: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Velero {
    /// The namespace Velero runs in; Velero ignores objects anywhere else.
    pub namespace: String,
    /// Which stowage file owns an object (label `stowage.io/owner`).
    pub owner: String,
    /// The Velero server Deployment, read for its flags and plugins.
    pub deployment: String,
    /// The server flag --default-volume-snapshot-locations: provider -> VSL name. Keys
    /// must be spelt as the VSLs' `provider` is.
    pub default_volume_snapshot_locations: BTreeMap<String, String>,
    /// Also set --default-volume-snapshot-locations on the Velero Deployment.
    pub manage_server_flags: bool,
    /// Let a plan delete all of the objects this file manages, or more than half of
    /// them (otherwise refused as `stowage::mass-delete`, like `--allow-mass-delete`).
    pub allow_mass_delete: bool,
    /// When several files share a namespace, the owner whose file declares the default
    /// location; this file then declares no default itself.
    pub default_location_owner: Option<String>,
    /// The Velero this file targets ("1.17", or "1.17.2" for one patch): its rules are
    /// checked offline, and `plan` refuses a cluster running another. Without it,
    /// `plan` checks the rules of the version the cluster runs.
    pub version: Option<String>,
}

impl Default for Velero {
    fn default() -> Velero {
        Velero {
            namespace: "velero".to_string(),
            owner: "default".to_string(),
            deployment: "velero".to_string(),
            default_volume_snapshot_locations: BTreeMap::new(),
            manage_server_flags: false,
            allow_mass_delete: false,
            default_location_owner: None,
            version: None,
        }
    }
}

/// One key of one Secret. Exactly one of `file`, `env` or `external` says where its
/// value comes from.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// Secret name (default: the credential's own name).
    pub secret: Option<String>,
    /// Data key in the Secret (default: "cloud").
    pub key: Option<String>,
    /// A file holding the value, relative to the stowage file: plaintext, or encrypted
    /// with SOPS for age keys (decrypted in memory with the key sops would use).
    pub file: Option<PathBuf>,
    /// An environment variable holding the value.
    pub env: Option<String>,
    /// The Secret is managed elsewhere; stowage only checks it exists with that key.
    pub external: Option<bool>,
}

/// Velero's default data key for a credential.
pub const DEFAULT_CREDENTIAL_KEY: &str = "cloud";

impl Credential {
    pub fn secret_name<'a>(&'a self, entry_name: &'a str) -> &'a str {
        self.secret.as_deref().unwrap_or(entry_name)
    }

    pub fn secret_key(&self) -> &str {
        self.key.as_deref().unwrap_or(DEFAULT_CREDENTIAL_KEY)
    }

    pub fn is_external(&self) -> bool {
        self.external == Some(true)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AccessMode {
    ReadWrite,
    ReadOnly,
}

impl AccessMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::ReadWrite => "ReadWrite",
            AccessMode::ReadOnly => "ReadOnly",
        }
    }
}

/// A Secret key holding a CA bundle.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyRef {
    pub secret: String,
    pub key: String,
}

/// A BackupStorageLocation: a bucket (and prefix) Velero stores backups in.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupLocation {
    /// Object store plugin: aws, azure, gcp, or a plugin's full name.
    pub provider: String,
    /// Bucket name, without any `/`: put sub-paths in `prefix`.
    pub bucket: String,
    /// Path inside the bucket under which Velero keeps its data.
    pub prefix: Option<String>,
    /// The location backups go to when none is named; exactly one location has it.
    #[serde(default)]
    pub default: bool,
    /// A credential declared under [credentials]; without it Velero uses
    /// cloud-credentials/cloud.
    pub credential: Option<String>,
    /// ReadWrite (the default) or ReadOnly (restores only, no garbage collection).
    pub access_mode: Option<AccessMode>,
    /// How often Velero syncs backups from the bucket (Go duration, "0s" disables).
    pub backup_sync_period: Option<String>,
    /// How often Velero re-validates the location (Go duration).
    pub validation_frequency: Option<String>,
    /// A PEM CA bundle for the object store, relative to the stowage file.
    pub ca_cert_file: Option<PathBuf>,
    /// A Secret key holding the CA bundle (Velero 1.18 and later).
    pub ca_cert_ref: Option<SecretKeyRef>,
    /// Refuse plans that delete this location or change its bucket or prefix.
    #[serde(default)]
    pub protect: bool,
    /// Labels on the BackupStorageLocation object.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Provider plugin config, passed to Velero as written.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// A VolumeSnapshotLocation: where a provider's native volume snapshots go.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotLocation {
    /// Volume snapshotter plugin: aws, azure, gcp, portworx.io/portworx, ...
    pub provider: String,
    /// A credential declared under [credentials]; without it Velero uses
    /// cloud-credentials/cloud.
    pub credential: Option<String>,
    /// Labels on the VolumeSnapshotLocation object.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Provider plugin config, passed to Velero as written.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// A scheduled backup. With `storage_locations`, one Velero Schedule per location,
/// named `<schedule>-<location>`.
// No `deny_unknown_fields`: serde cannot combine it with `flatten`. The schema still
// closes the table, and the loader checks every key against the schema.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct Schedule {
    /// Velero's cron dialect: 5 fields, a descriptor (@daily, @every 6h), optionally
    /// prefixed by CRON_TZ=<zone>.
    pub cron: String,
    /// Fan out: one Schedule per location, identical but for the location.
    pub storage_locations: Option<Vec<String>>,
    /// With `storage_locations`: copy k (in the listed order) fires k × this Go
    /// duration after the cron's time, so the copies do not all run at once.
    pub stagger: Option<String>,
    /// Pause the schedule.
    #[serde(default)]
    pub paused: bool,
    /// Skip the first run after creation or unpausing (Velero resets it after use).
    pub skip_immediately: Option<bool>,
    /// Make backups owned by the Schedule (deleted with it).
    pub use_owner_references_in_backup: Option<bool>,
    /// Labels on the Schedule object (copied to its backups unless template labels are set).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations on the Schedule object (copied to its backups).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Recovery point objective (Go duration): the newest restorable backup of each copy
    /// is never older than this. `status --check` fails a copy that breaks it;
    /// `validate` refuses one the cron and stagger cannot meet.
    pub rpo: Option<String>,
    /// Restore drills: prove each copy restores, on a cron of their own.
    pub drill: Option<Drill>,
    /// Settings of one copy (`copy.<location>`, a location of `storage_locations`)
    /// that differ from the schedule's: its own `ttl`, its own `stagger`.
    #[serde(default)]
    pub copy: BTreeMap<String, CopySettings>,
    /// The Backup every run creates: Velero's BackupSpec in snake_case.
    #[serde(flatten)]
    pub template: BackupTemplate,
}

/// What one copy of a fanned-out schedule sets apart from the others.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CopySettings {
    /// How long this copy's backups are kept (Go duration), instead of the schedule's
    /// `ttl`: a DR copy is commonly kept longer.
    pub ttl: Option<String>,
    /// How long after the cron's time this copy runs (Go duration in whole minutes,
    /// "0m" for none), instead of its place in `storage_locations` × the schedule's
    /// `stagger`.
    pub stagger: Option<String>,
}

/// A schedule's restore drills: the newest Completed backup of each copy restored into
/// new namespaces (`<namespace_prefix><namespace>`), compared with what the backup
/// holds, then removed.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Drill {
    /// When the daemon drills (Velero's cron dialect); `stowage drill` runs one now.
    pub cron: String,
    /// A restore still running after this long (Go duration, default 30m) is a failed
    /// drill.
    pub timeout: Option<String>,
    /// Restored into `<namespace_prefix><namespace>` (default "drill-"); every name it
    /// makes must be new and at most 63 characters.
    pub namespace_prefix: Option<String>,
    /// Restore volume data too (default false: objects only).
    #[serde(default)]
    pub volumes: bool,
    /// A failed drill's namespaces stay this long for inspection (Go duration, default
    /// 24h).
    pub keep_failed: Option<String>,
}

impl Drill {
    pub const DEFAULT_TIMEOUT: &'static str = "30m";
    pub const DEFAULT_PREFIX: &'static str = "drill-";
    pub const DEFAULT_KEEP_FAILED: &'static str = "24h";

    pub fn namespace_prefix(&self) -> &str {
        self.namespace_prefix
            .as_deref()
            .unwrap_or(Self::DEFAULT_PREFIX)
    }

    /// The timeout, as written or the default (validation reports one that is not a Go
    /// duration).
    pub fn timeout(&self) -> std::time::Duration {
        go_duration_or(self.timeout.as_deref(), Self::DEFAULT_TIMEOUT)
    }

    pub fn keep_failed(&self) -> std::time::Duration {
        go_duration_or(self.keep_failed.as_deref(), Self::DEFAULT_KEEP_FAILED)
    }
}

/// A Go duration as written, else `default` (itself a valid duration).
fn go_duration_or(written: Option<&str>, default: &str) -> std::time::Duration {
    written
        .and_then(|text| crate::velero::duration::parse_go_duration(text).ok())
        .or_else(|| crate::velero::duration::parse_go_duration(default).ok())
        .and_then(|nanos| u64::try_from(nanos).ok())
        .map(std::time::Duration::from_nanos)
        .unwrap_or_default()
}

/// A schedule's backup template as the file writes it (snake_case): Velero's
/// BackupSpec, which rendering maps it onto (`crd::BackupSpec`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BackupTemplate {
    /// Labels for the Backup objects this schedule creates.
    pub metadata: Option<TemplateMetadata>,
    /// Namespaces to include; "*" (alone) or a list. Empty means all.
    pub included_namespaces: Option<Vec<String>>,
    pub excluded_namespaces: Option<Vec<String>>,
    /// Resource filter (old style; do not mix with the *_scoped_resources filters).
    pub included_resources: Option<Vec<String>>,
    pub excluded_resources: Option<Vec<String>>,
    pub include_cluster_resources: Option<bool>,
    pub included_cluster_scoped_resources: Option<Vec<String>>,
    pub excluded_cluster_scoped_resources: Option<Vec<String>>,
    pub included_namespace_scoped_resources: Option<Vec<String>>,
    pub excluded_namespace_scoped_resources: Option<Vec<String>>,
    pub label_selector: Option<LabelSelector>,
    /// Backs up what matches any of these selectors; not with label_selector.
    pub or_label_selectors: Option<Vec<LabelSelector>>,
    /// Take native volume snapshots (default true).
    pub snapshot_volumes: Option<bool>,
    /// Back up every pod volume with the file-system uploader.
    pub default_volumes_to_fs_backup: Option<bool>,
    /// Deprecated spelling of default_volumes_to_fs_backup.
    pub default_volumes_to_restic: Option<bool>,
    /// Move CSI snapshot data to the backup storage location.
    pub snapshot_move_data: Option<bool>,
    /// The data mover to use ("velero" or a third party's).
    pub datamover: Option<String>,
    pub uploader_config: Option<UploaderConfig>,
    /// How long backups are kept (Go duration, e.g. "720h").
    pub ttl: Option<String>,
    pub csi_snapshot_timeout: Option<String>,
    pub item_operation_timeout: Option<String>,
    /// One backup location; without it (and without storage_locations) Velero uses its
    /// default location at backup time.
    pub storage_location: Option<String>,
    /// Snapshot locations, at most one per provider.
    pub volume_snapshot_locations: Option<Vec<String>>,
    pub volume_group_snapshot_label_key: Option<String>,
    pub hooks: Option<BackupHooks>,
    /// Resource kind -> ordered list of "namespace/name" to back up first.
    pub ordered_resources: Option<BTreeMap<String, String>>,
    /// A ConfigMap of resource policies.
    pub resource_policy: Option<ResourcePolicyRef>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    pub key: String,
    /// In, NotIn, Exists or DoesNotExist.
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UploaderConfig {
    pub parallel_files_upload: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupHooks {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<BackupResourceHook>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupResourceHook {
    pub name: String,
    pub included_namespaces: Option<Vec<String>>,
    pub excluded_namespaces: Option<Vec<String>>,
    pub included_resources: Option<Vec<String>>,
    pub excluded_resources: Option<Vec<String>>,
    pub label_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre: Vec<BackupHook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post: Vec<BackupHook>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupHook {
    pub exec: ExecHook,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum HookErrorMode {
    Continue,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecHook {
    /// The container to run in (default: the pod's first).
    pub container: Option<String>,
    /// The command and its arguments.
    pub command: Vec<String>,
    pub on_error: Option<HookErrorMode>,
    /// Go duration.
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcePolicyRef {
    /// Must be "configmap".
    pub kind: String,
    pub name: String,
    pub api_group: Option<String>,
}

/// The JSON Schema of the file, as `stowage schema` prints it.
pub fn json_schema() -> &'static serde_json::Value {
    static SCHEMA: std::sync::LazyLock<serde_json::Value> =
        std::sync::LazyLock::new(|| schemars::schema_for!(Config).to_value());
    &SCHEMA
}

/// The JSON Schema for editors, as committed in `schema/stowage.schema.json`: the
/// model's, plus the two keys the loader consumes before the model sees the file —
/// `extends` at the top, and `drop` in each entry an overlay may remove.
pub fn json_schema_text() -> String {
    schema_text(&editor_schema())
}

/// The schema for a file that extends another (`schema/stowage-overlay.schema.json`):
/// an overlay states only what differs, so no key is required in it.
pub fn overlay_schema_text() -> String {
    let mut schema = editor_schema();
    remove_required(&mut schema);
    if let Some(title) = schema.get_mut("title") {
        *title = serde_json::Value::String("stowage overlay (a file with `extends`)".into());
    }
    schema_text(&schema)
}

fn schema_text(schema: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_else(|_| "{}".to_string());
    text.push('\n');
    text
}

fn editor_schema() -> serde_json::Value {
    use serde_json::json;
    let mut schema = json_schema().clone();
    schema["properties"]["extends"] = json!({
        "description": "A base file this one extends, relative to this file: its tables merge under this file's values.",
        "type": "string",
    });
    for definition in crate::config::merge::DROPPABLE_DEFINITIONS {
        schema["$defs"][definition]["properties"]["drop"] = json!({
            "description": "Remove this entry inherited from the base file (`extends`).",
            "type": "boolean",
        });
    }
    schema
}

fn remove_required(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove("required");
            map.values_mut().for_each(remove_required);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(remove_required),
        _ => {}
    }
}

/// One Velero Schedule object that a `[schedules.*]` entry becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleInstance<'a> {
    pub object_name: String,
    pub storage_location: Option<&'a str>,
    /// Index into `storage_locations` when the entry fans out.
    pub fan_out_index: Option<usize>,
    /// The cron this Velero Schedule runs on: the entry's, moved by its stagger.
    pub cron: String,
    /// How long its backups are kept: the copy's own `ttl`, else the schedule's.
    pub ttl: Option<&'a str>,
}

impl Schedule {
    /// How many Velero Schedules this entry declares (see [`Schedule::instances`]).
    pub fn instance_count(&self) -> usize {
        self.storage_locations.as_ref().map_or(1, Vec::len)
    }

    /// The Velero Schedules this entry declares: one per `storage_locations` entry,
    /// named `<schedule>-<location>`, or a single one named after the entry.
    pub fn instances<'a>(&'a self, name: &str) -> Vec<ScheduleInstance<'a>> {
        match &self.storage_locations {
            Some(locations) => locations
                .iter()
                .enumerate()
                .map(|(index, location)| ScheduleInstance {
                    object_name: format!("{name}-{location}"),
                    storage_location: Some(location.as_str()),
                    fan_out_index: Some(index),
                    cron: self.copy_cron(index).unwrap_or_else(|_| self.cron.clone()),
                    ttl: self
                        .copy
                        .get(location)
                        .and_then(|copy| copy.ttl.as_deref())
                        .or(self.template.ttl.as_deref()),
                })
                .collect(),
            None => vec![ScheduleInstance {
                object_name: name.to_string(),
                storage_location: self.template.storage_location.as_deref(),
                fan_out_index: None,
                cron: self.cron.clone(),
                ttl: self.template.ttl.as_deref(),
            }],
        }
    }

    /// The stagger as a duration: `Ok(None)` without one, `Err` when it is not a Go
    /// duration above zero.
    pub fn stagger(&self) -> Result<Option<std::time::Duration>, String> {
        let Some(text) = &self.stagger else {
            return Ok(None);
        };
        let nanos = crate::velero::duration::parse_go_duration(text)?;
        if nanos <= 0 {
            return Err(format!("a stagger must be longer than zero, not {text}"));
        }
        Ok(Some(std::time::Duration::from_nanos(
            u64::try_from(nanos).map_err(|_| format!("{text} is too long"))?,
        )))
    }

    /// How long after the cron's time copy `index` of a fanned-out schedule runs: its
    /// own `copy.<location>.stagger`, else `index` × the schedule's stagger.
    pub fn copy_shift(&self, index: usize) -> Result<std::time::Duration, String> {
        let own = self
            .storage_locations
            .as_ref()
            .and_then(|locations| locations.get(index))
            .and_then(|location| self.copy.get(location))
            .and_then(|copy| copy.stagger.as_deref());
        if let Some(text) = own {
            let nanos = crate::velero::duration::parse_go_duration(text)?;
            if nanos < 0 {
                return Err(format!("a copy's stagger cannot be negative, not {text}"));
            }
            return Ok(std::time::Duration::from_nanos(
                u64::try_from(nanos).map_err(|_| format!("{text} is too long"))?,
            ));
        }
        Ok(self
            .stagger()?
            .unwrap_or_default()
            .saturating_mul(u32::try_from(index).unwrap_or(u32::MAX)))
    }

    /// The longest shift of any copy: how late after the cron's time the last copy runs.
    pub fn last_shift(&self) -> std::time::Duration {
        let copies = self.storage_locations.as_ref().map_or(1, Vec::len).max(1);
        (0..copies)
            .filter_map(|index| self.copy_shift(index).ok())
            .max()
            .unwrap_or_default()
    }

    /// The cron copy `index` of a fanned-out schedule runs on: the declared one moved
    /// by the copy's shift.
    pub fn copy_cron(&self, index: usize) -> Result<String, String> {
        let by = self.copy_shift(index)?;
        if self.stagger.is_none() && by.is_zero() {
            return Ok(self.cron.clone());
        }
        crate::velero::cron::shifted(&self.cron, by)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_count_is_the_number_of_instances() {
        let single: Schedule =
            serde_json::from_value(serde_json::json!({"cron": "0 1 * * *"})).expect("a schedule");
        let fanned: Schedule = serde_json::from_value(serde_json::json!({
            "cron": "0 1 * * *", "storage_locations": ["a", "b", "c"]}))
        .expect("a schedule");
        let none: Schedule = serde_json::from_value(serde_json::json!({
            "cron": "0 1 * * *", "storage_locations": []}))
        .expect("a schedule");
        for schedule in [single, fanned, none] {
            assert_eq!(schedule.instance_count(), schedule.instances("s").len());
        }
    }
}
