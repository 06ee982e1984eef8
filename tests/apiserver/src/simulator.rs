//! A stand-in for the Velero server's controllers, for tests that need Velero's
//! verdicts: each BackupStorageLocation is validated against its bucket with its own
//! credential and gets `status.phase`/`message`/`lastValidationTime` as Velero writes
//! them; two defaults are settled (newest creation wins); a Schedule's
//! `skipImmediately` is reset. All writes are Updates by `velero-server`, as Velero's.
//!
//! The bucket check is this crate's own (object_store, explicit credentials only), not
//! stowage's: tests compare stowage's verdicts with an independent one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use serde_json::{Value, json};

use crate::server::{Shared, now, write_as};
use crate::store::Key;

pub const MANAGER: &str = "velero-server";

/// The directories Velero allows directly under a location's root.
const LAYOUT: [&str; 6] = [
    "backups", "restores", "restic", "metadata", "plugins", "kopia",
];

#[derive(Debug, Clone)]
pub struct Settings {
    /// Velero's namespace: only locations there are reconciled.
    pub namespace: String,
    /// How often the controllers look (Velero's own period is 10 s; tests go faster).
    pub interval: Duration,
    /// How long one bucket check may take.
    pub bucket_timeout: Duration,
}

impl Settings {
    pub fn new(namespace: &str) -> Settings {
        Settings {
            namespace: namespace.to_string(),
            interval: Duration::from_millis(200),
            bucket_timeout: Duration::from_secs(5),
        }
    }
}

pub async fn run(shared: Arc<Shared>, settings: Settings) {
    let mut validated: HashMap<String, i64> = HashMap::new();
    let mut events = shared.store().subscribe();
    loop {
        reconcile(&shared, &settings, &mut validated).await;
        tokio::select! {
            _ = tokio::time::sleep(settings.interval) => {}
            event = events.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = event {
                    return;
                }
            }
        }
    }
}

fn index(shared: &Shared, kind: &str) -> Option<usize> {
    let api_version = match kind {
        "Secret" => "v1",
        "Deployment" => "apps/v1",
        _ => "velero.io/v1",
    };
    shared.registry.by_kind(api_version, kind)
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn reconcile(shared: &Shared, settings: &Settings, validated: &mut HashMap<String, i64>) {
    let ns = settings.namespace.as_str();
    if let Some(schedules) = index(shared, "Schedule") {
        // Listed first: the store's lock must be free again before each write.
        let names: Vec<String> = shared
            .store()
            .list(schedules, Some(ns))
            .iter()
            .map(name_of)
            .collect();
        for name in names {
            reset_skip_immediately(shared, &(schedules, ns.to_string(), name));
        }
    }
    let Some(locations) = index(shared, "BackupStorageLocation") else {
        return;
    };
    settle_default(shared, locations, ns);
    let due: Vec<Value> = shared
        .store()
        .list(locations, Some(ns))
        .into_iter()
        .filter(|bsl| {
            let uid = bsl["metadata"]["uid"].as_str().unwrap_or_default();
            let generation = bsl["metadata"]["generation"].as_i64().unwrap_or(0);
            validated.get(uid) != Some(&generation)
        })
        .collect();
    for bsl in due {
        let verdict = match inputs(shared, ns, &bsl) {
            Ok(inputs) => tokio::time::timeout(settings.bucket_timeout, check(inputs))
                .await
                .unwrap_or_else(|_| {
                    Err(
                        "rpc error: code = Unknown desc = the bucket did not answer in time"
                            .to_string(),
                    )
                }),
            Err(message) => Err(message),
        };
        let name = name_of(&bsl);
        let key = (locations, ns.to_string(), name.clone());
        let time = now();
        let written = write_as(shared, &key, MANAGER, |object| {
            let status = &mut object["status"];
            if !status.is_object() {
                *status = json!({});
            }
            status["lastValidationTime"] = json!(time);
            match &verdict {
                Ok(()) => {
                    status["phase"] = json!("Available");
                    if let Some(map) = status.as_object_mut() {
                        map.remove("message");
                    }
                }
                Err(reason) => {
                    status["phase"] = json!("Unavailable");
                    status["message"] = json!(format!(
                        "BackupStorageLocation \"{name}\" is unavailable: {reason}"
                    ));
                }
            }
        });
        let checked = written.as_ref().unwrap_or(&bsl);
        validated.insert(
            checked["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            checked["metadata"]["generation"].as_i64().unwrap_or(0),
        );
    }
}

/// Velero's `ensureSingleDefaultBSL`: the newest default by creation time stays.
fn settle_default(shared: &Shared, locations: usize, ns: &str) {
    let all = shared.store().list(locations, Some(ns));
    let defaults: Vec<&Value> = all
        .iter()
        .filter(|b| b["spec"]["default"] == true)
        .collect();
    if defaults.len() < 2 {
        return;
    }
    let keep = defaults
        .iter()
        .max_by_key(|b| {
            b["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .map(|b| name_of(b));
    for bsl in defaults {
        let name = name_of(bsl);
        if Some(&name) != keep.as_ref() {
            write_as(
                shared,
                &(locations, ns.to_string(), name),
                MANAGER,
                |object| {
                    object["spec"]["default"] = json!(false);
                },
            );
        }
    }
}

fn reset_skip_immediately(shared: &Shared, key: &Key) {
    write_as(shared, key, MANAGER, |object| {
        if object["spec"]["paused"] == true {
            return;
        }
        if object["spec"]["skipImmediately"] == true {
            object["status"]["lastSkipped"] = json!(now());
        }
        object["spec"]["skipImmediately"] = json!(false);
        if object["status"]["phase"].is_null() {
            object["status"]["phase"] = json!("Enabled");
        }
    });
}

struct Inputs {
    provider: String,
    bucket: String,
    prefix: String,
    config: HashMap<String, String>,
    credential: String,
}

fn inputs(shared: &Shared, ns: &str, bsl: &Value) -> Result<Inputs, String> {
    let spec = &bsl["spec"];
    let storage = spec
        .get("objectStorage")
        .filter(|o| o.is_object())
        .ok_or("backup storage location does not use object storage")?;
    let provider = spec["provider"].as_str().unwrap_or_default();
    if provider.is_empty() {
        return Err("object storage provider name must not be empty".to_string());
    }
    let provider = provider
        .strip_prefix("velero.io/")
        .unwrap_or(provider)
        .to_string();
    let bucket = storage["bucket"]
        .as_str()
        .unwrap_or_default()
        .trim_matches('/')
        .to_string();
    if bucket.contains('/') {
        return Err(format!(
            "backup storage location's bucket name \"{bucket}\" must not contain a '/' (if using a prefix, put it in the 'Prefix' field instead)"
        ));
    }
    let plugin_image = match provider.as_str() {
        "aws" => "velero-plugin-for-aws",
        "azure" => "velero-plugin-for-microsoft-azure",
        "gcp" => "velero-plugin-for-gcp",
        _ => "",
    };
    if let Some(deployments) = index(shared, "Deployment")
        && let Some(velero) =
            shared
                .store()
                .get(&(deployments, ns.to_string(), "velero".to_string()))
    {
        let images: Vec<&str> = velero["spec"]["template"]["spec"]["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["image"].as_str())
            .collect();
        if plugin_image.is_empty() || !images.iter().any(|i| i.contains(plugin_image)) {
            return Err(format!(
                "unable to locate ObjectStore plugin named velero.io/{provider}"
            ));
        }
    }
    let (secret_name, secret_key) = match spec.get("credential").filter(|c| c.is_object()) {
        Some(credential) => (
            credential["name"].as_str().unwrap_or_default().to_string(),
            credential["key"].as_str().unwrap_or_default().to_string(),
        ),
        None => ("cloud-credentials".to_string(), "cloud".to_string()),
    };
    let secrets = index(shared, "Secret").ok_or("no Secret resource")?;
    let secret = shared
        .store()
        .get(&(secrets, ns.to_string(), secret_name.clone()))
        .cloned()
        .ok_or_else(|| format!("unable to get credentials: unable to get key for secret: secrets \"{secret_name}\" not found"))?;
    let encoded = secret["data"][&secret_key]
        .as_str()
        .ok_or_else(|| format!("unable to get credentials: \"{secret_name}\" secret is missing data for key \"{secret_key}\""))?;
    use base64::Engine;
    let credential = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or("unable to get credentials: the secret's data is not text")?;
    let config = spec["config"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    Ok(Inputs {
        provider,
        bucket,
        prefix: storage["prefix"]
            .as_str()
            .unwrap_or_default()
            .trim_matches('/')
            .to_string(),
        config,
        credential,
    })
}

fn rpc(error: impl std::fmt::Display) -> String {
    format!("rpc error: code = Unknown desc = {error}")
}

fn store_for(inputs: &Inputs) -> Result<Arc<dyn ObjectStore>, String> {
    let retry = object_store::RetryConfig {
        max_retries: 1,
        retry_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let config = |key: &str| inputs.config.get(key).filter(|v| !v.is_empty()).cloned();
    match inputs.provider.as_str() {
        "aws" => {
            let profile = config("profile").unwrap_or_else(|| "default".to_string());
            let ini = ini::Ini::load_from_str(&inputs.credential).map_err(rpc)?;
            let section = ini
                .section(Some(profile.as_str()))
                .ok_or_else(|| rpc(format!("failed to get shared config profile, {profile}")))?;
            let mut builder = object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(&inputs.bucket)
                .with_region(config("region").unwrap_or_else(|| "us-east-1".to_string()))
                .with_access_key_id(section.get("aws_access_key_id").unwrap_or_default())
                .with_secret_access_key(section.get("aws_secret_access_key").unwrap_or_default())
                .with_virtual_hosted_style_request(
                    config("s3ForcePathStyle").as_deref() != Some("true"),
                )
                .with_retry(retry);
            if let Some(url) = config("s3Url") {
                builder = builder
                    .with_allow_http(url.starts_with("http://"))
                    .with_endpoint(url);
            }
            builder
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
                .map_err(rpc)
        }
        "azure" => {
            let key = inputs
                .credential
                .lines()
                .filter_map(|line| line.split_once('='))
                .find(|(k, _)| k.trim() == "AZURE_STORAGE_ACCOUNT_ACCESS_KEY")
                .map(|(_, v)| v.trim().trim_matches('"').to_string())
                .ok_or_else(|| rpc("AZURE_STORAGE_ACCOUNT_ACCESS_KEY is not set"))?;
            let mut builder = object_store::azure::MicrosoftAzureBuilder::new()
                .with_account(config("storageAccount").unwrap_or_default())
                .with_container_name(&inputs.bucket)
                .with_access_key(key)
                .with_retry(retry);
            if let Some(url) = config("storageAccountURI") {
                builder = builder
                    .with_allow_http(url.starts_with("http://"))
                    .with_endpoint(url);
            }
            builder
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
                .map_err(rpc)
        }
        "gcp" => {
            let mut builder = object_store::gcp::GoogleCloudStorageBuilder::new()
                .with_bucket_name(&inputs.bucket)
                .with_service_account_key(&inputs.credential)
                .with_retry(retry);
            if let Some(url) = config("storeEndpoint") {
                builder = builder.with_base_url(&url);
            }
            builder
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
                .map_err(rpc)
        }
        other => Err(format!(
            "unable to locate ObjectStore plugin named velero.io/{other}"
        )),
    }
}

/// Velero's `IsValid`: the bucket answers, and only Velero's directories sit at the root.
async fn check(inputs: Inputs) -> Result<(), String> {
    let store = store_for(&inputs)?;
    let prefix = (!inputs.prefix.is_empty()).then(|| StorePath::from(inputs.prefix.as_str()));
    let listing = store
        .list_with_delimiter(prefix.as_ref())
        .await
        .map_err(rpc)?;
    let invalid: Vec<String> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .filter(|name| !LAYOUT.contains(&name.as_str()))
        .collect();
    match invalid.len() {
        0 => Ok(()),
        n if n > 3 => Err(format!(
            "Backup store contains {n} invalid top-level directories: [{} ...]",
            invalid[..3].join(" ")
        )),
        _ => Err(format!(
            "Backup store contains invalid top-level directories: [{}]",
            invalid.join(" ")
        )),
    }
}
