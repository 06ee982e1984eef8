//! Render: the validated model → the Kubernetes objects it declares.
//!
//! Pure and deterministic: the same file and credential contents always give the same
//! objects, in the same order. Knows nothing about the cluster; `plan` compares what is
//! rendered here with what is observed. Secret values stay `SecretValue`s; only
//! [`to_documents`] with `include_secrets` ever encodes them, for `stowage render`.

mod template;

pub use template::backup_template;

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::config::load::{Material, Materials};
use crate::config::{AccessMode, Config};
use crate::crd::{
    BackupStorageLocation, BackupStorageLocationSpec, ObjectStorageLocation, Schedule,
    ScheduleSpec, SecretKeySelector, VeleroObject, VolumeSnapshotLocation,
    VolumeSnapshotLocationSpec,
};
use crate::diagnostic::Pointer;
use crate::secret::SecretValue;
use crate::velero::server::{CONTAINER as VELERO_CONTAINER, DEFAULT_VSL_FLAG, ServerArgs};
use crate::velero::{Kind, ObjectRef};
use crate::velero::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, OWNER_LABEL, PROTECT_ANNOTATION};

/// A Velero object as stowage would apply it: a full manifest, status-free.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredObject {
    pub object: ObjectRef,
    /// Typed, not JSON: a few hundred bytes an object rather than a map per field.
    /// Shared with the plan's request that writes it: a large file's plan holds no
    /// second copy of every object.
    pub manifest: std::sync::Arc<VeleroObject>,
    /// The file entry that declares it.
    pub origin: Pointer,
}

/// A Secret holding the keys of one or more credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredSecret {
    pub object: ObjectRef,
    pub labels: BTreeMap<String, String>,
    pub data: BTreeMap<String, SecretValue>,
    /// The first credential entry that writes into it.
    pub origin: Pointer,
}

/// A credential the file declares `external`: it must exist, stowage never writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalKey {
    pub credential: String,
    pub secret: String,
    pub key: String,
}

/// `--default-volume-snapshot-locations` on the Velero Deployment's server container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFlag {
    pub deployment: ObjectRef,
    pub value: String,
    pub origin: Pointer,
}

impl ServerFlag {
    pub fn argument(&self) -> String {
        format!("{DEFAULT_VSL_FLAG}={}", self.value)
    }

    /// The server's arguments with the flag set to the declared value, or removed when
    /// the file declares no defaults.
    pub fn applied_to(&self, args: &ServerArgs) -> ServerArgs {
        args.with(
            DEFAULT_VSL_FLAG,
            (!self.value.is_empty()).then_some(self.value.as_str()),
        )
    }
}

/// Everything a file declares, ready to compare or apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub namespace: String,
    pub owner: String,
    pub secrets: Vec<DesiredSecret>,
    pub objects: Vec<DesiredObject>,
    pub external: Vec<ExternalKey>,
    pub server_flag: Option<ServerFlag>,
    /// The Velero server's Deployment (read for its flags and plugins).
    pub velero_deployment: ObjectRef,
    /// Whether a plan may delete most or all of what the file manages (the file's
    /// `allow_mass_delete`, or `--allow-mass-delete`).
    pub allow_mass_delete: bool,
}

/// Renders a validated `config`; `materials` supplies the credential values.
pub fn render(config: &Config, materials: &Materials) -> Desired {
    let namespace = config.velero.namespace.clone();
    let owner = config.velero.owner.clone();
    let labels = |own: &BTreeMap<String, String>| {
        let mut labels = own.clone();
        labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string());
        labels.insert(OWNER_LABEL.to_string(), owner.clone());
        labels
    };
    let object_ref = |kind: Kind, name: &str| ObjectRef {
        kind,
        namespace: namespace.clone(),
        name: name.to_string(),
    };
    let selector = |credential: &Option<String>| {
        credential.as_ref().and_then(|name| {
            config
                .credentials
                .get(name)
                .map(|declared| SecretKeySelector {
                    name: declared.secret_name(name).to_string(),
                    key: declared.secret_key().to_string(),
                })
        })
    };

    let mut secrets: BTreeMap<String, DesiredSecret> = BTreeMap::new();
    let mut external = Vec::new();
    for (name, credential) in &config.credentials {
        let secret = credential.secret_name(name);
        let key = credential.secret_key();
        match materials.credentials.get(name) {
            Some(Material::Value(read)) => {
                let entry = secrets
                    .entry(secret.to_string())
                    .or_insert_with(|| DesiredSecret {
                        object: object_ref(Kind::Secret, secret),
                        labels: labels(&BTreeMap::new()),
                        data: BTreeMap::new(),
                        origin: Pointer::key(["credentials", name.as_str()]),
                    });
                entry.data.insert(key.to_string(), read.value().clone());
            }
            Some(Material::External) => external.push(ExternalKey {
                credential: name.clone(),
                secret: secret.to_string(),
                key: key.to_string(),
            }),
            Some(Material::Missing(_) | Material::Undecryptable(_)) | None => {}
        }
    }

    let mut objects = Vec::new();
    for (name, location) in &config.backup_locations {
        let ca_cert = match (materials.ca_certs.get(name), &location.ca_cert_file) {
            (Some(Ok(bytes)), Some(_)) => Some(ByteString(bytes.clone())),
            _ => None,
        };
        let spec = BackupStorageLocationSpec {
            provider: location.provider.clone(),
            config: location.config.clone(),
            credential: selector(&location.credential),
            object_storage: ObjectStorageLocation {
                bucket: location.bucket.clone(),
                prefix: location.prefix.clone(),
                ca_cert,
                ca_cert_ref: location
                    .ca_cert_ref
                    .as_ref()
                    .map(|reference| SecretKeySelector {
                        name: reference.secret.clone(),
                        key: reference.key.clone(),
                    }),
            },
            default: location.default,
            // The Velero CLI always writes the access mode; so does stowage.
            access_mode: Some(
                location
                    .access_mode
                    .unwrap_or(AccessMode::ReadWrite)
                    .as_str()
                    .to_string(),
            ),
            backup_sync_period: location.backup_sync_period.clone(),
            validation_frequency: location.validation_frequency.clone(),
        };
        let mut object = BackupStorageLocation::new(name, spec);
        object.metadata = metadata(name, &namespace, labels(&location.labels), location.protect);
        objects.push(desired(
            object_ref(Kind::BackupStorageLocation, name),
            VeleroObject::BackupStorageLocation(Box::new(object)),
            Pointer::key(["backup_locations", name.as_str()]),
        ));
    }
    for (name, location) in &config.snapshot_locations {
        let spec = VolumeSnapshotLocationSpec {
            provider: location.provider.clone(),
            config: location.config.clone(),
            credential: selector(&location.credential),
        };
        let mut object = VolumeSnapshotLocation::new(name, spec);
        object.metadata = metadata(name, &namespace, labels(&location.labels), false);
        objects.push(desired(
            object_ref(Kind::VolumeSnapshotLocation, name),
            VeleroObject::VolumeSnapshotLocation(Box::new(object)),
            Pointer::key(["snapshot_locations", name.as_str()]),
        ));
    }
    for (name, schedule) in &config.schedules {
        for instance in schedule.instances(name) {
            let spec = ScheduleSpec {
                schedule: instance.cron.clone(),
                template: template::backup_spec(
                    &schedule.template,
                    instance.storage_location,
                    instance.ttl,
                ),
                use_owner_references_in_backup: schedule.use_owner_references_in_backup,
                paused: schedule.paused,
                skip_immediately: schedule.skip_immediately,
            };
            let mut object = Schedule::new(&instance.object_name, spec);
            object.metadata = metadata(
                &instance.object_name,
                &namespace,
                labels(&schedule.labels),
                false,
            );
            if !schedule.annotations.is_empty() {
                object.metadata.annotations = Some(schedule.annotations.clone());
            }
            let origin = match instance.fan_out_index {
                Some(index) => {
                    Pointer::value(["schedules", name.as_str(), "storage_locations"]).child(index)
                }
                None => Pointer::key(["schedules", name.as_str()]),
            };
            objects.push(desired(
                object_ref(Kind::Schedule, &instance.object_name),
                VeleroObject::Schedule(Box::new(object)),
                origin,
            ));
        }
    }

    let server_flag = config.velero.manage_server_flags.then(|| ServerFlag {
        deployment: object_ref(Kind::Deployment, &config.velero.deployment),
        value: config
            .velero
            .default_volume_snapshot_locations
            .iter()
            .map(|(provider, location)| format!("{provider}:{location}"))
            .collect::<Vec<_>>()
            .join(","),
        origin: Pointer::value(["velero", "manage_server_flags"]),
    });

    Desired {
        velero_deployment: object_ref(Kind::Deployment, &config.velero.deployment),
        namespace: namespace.clone(),
        owner: owner.clone(),
        secrets: secrets.into_values().collect(),
        objects,
        external,
        server_flag,
        allow_mass_delete: config.velero.allow_mass_delete,
    }
}

fn metadata(
    name: &str,
    namespace: &str,
    labels: BTreeMap<String, String>,
    protect: bool,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(labels),
        annotations: protect
            .then(|| BTreeMap::from([(PROTECT_ANNOTATION.to_string(), "true".to_string())])),
        ..ObjectMeta::default()
    }
}

fn desired(object: ObjectRef, manifest: VeleroObject, origin: Pointer) -> DesiredObject {
    DesiredObject {
        object,
        manifest: manifest.into(),
        origin,
    }
}

/// A Secret as Kubernetes takes it, data base64-encoded: the one encoder of secret
/// values, for `stowage render`'s output and the Secrets `apply` writes.
pub fn secret_manifest(secret: &DesiredSecret) -> Secret {
    secret_object(&secret.object, &secret.labels, &secret.data)
}

/// The Secret `object` with `labels` and exactly `data`.
pub fn secret_object(
    object: &ObjectRef,
    labels: &BTreeMap<String, String>,
    data: &BTreeMap<String, SecretValue>,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(object.name.clone()),
            namespace: Some(object.namespace.clone()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(
            data.iter()
                .map(|(key, value)| (key.clone(), ByteString(value.expose().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// One rendered document: a file name for `render -o DIR` and its YAML.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub file_name: String,
    pub yaml: String,
    /// It holds secret data: written readable by its owner only.
    pub secret: bool,
}

/// The declared objects as YAML documents, in apply order. Secrets only with
/// `include_secrets`; the server flag, which needs the live Deployment's other
/// arguments, as a comment.
pub fn to_documents(desired: &Desired, include_secrets: bool) -> Vec<Document> {
    let mut documents = Vec::new();
    if include_secrets {
        for secret in &desired.secrets {
            let value = serde_json::to_value(secret_manifest(secret)).unwrap_or(Value::Null);
            documents.push(Document {
                secret: true,
                ..document(&secret.object, &with_type_meta(Kind::Secret, value))
            });
        }
    }
    for object in &desired.objects {
        // Through JSON's sorted maps: the documents' keys in a stable order.
        documents.push(document(&object.object, &object.manifest.to_value()));
    }
    if let Some(flag) = &desired.server_flag {
        documents.push(Document {
            file_name: format!("deployment-{}.txt", flag.deployment.name),
            yaml: format!(
                "# Deployment {}/{}: container {VELERO_CONTAINER} runs with {}\n# (stowage apply sets it; kubectl users add it to the container's args)\n",
                flag.deployment.namespace,
                flag.deployment.name,
                flag.argument()
            ),
            secret: false,
        });
    }
    documents
}

fn with_type_meta(kind: Kind, mut value: Value) -> Value {
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "apiVersion".into(),
            Value::String(kind.api_version().into()),
        );
        map.insert("kind".into(), Value::String(kind.as_str().into()));
    }
    value
}

fn document(object: &ObjectRef, manifest: &Value) -> Document {
    let yaml = serde_saphyr::to_string(manifest).unwrap_or_default();
    Document {
        file_name: format!(
            "{}-{}.yaml",
            object.kind.as_str().to_ascii_lowercase(),
            object.name
        ),
        yaml,
        secret: false,
    }
}
