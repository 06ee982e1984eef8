//! Bucket checks, at the I/O edge: each backup location's bucket, listed with the
//! credential Velero will use, before Velero marks it `Unavailable`. What they find
//! ([`BucketReport`]) is plain data beside `Observed`, and `plan` reads it from there.
//!
//! For every location: reachable or the provider's error in plain words; how many
//! backups it holds (folders under `backups/` with a `velero-backup.json`); the
//! top-level folders Velero refuses. Locations are checked concurrently, each within a
//! timeout. This module only reads buckets; it never writes to one. Errors are scrubbed
//! of every secret value before they leave it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use object_store::path::Path as StorePath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt as _, RetryConfig};

use crate::config::load::Material;
use crate::observe::{BucketReport, BucketStatus, Observed, ObservedObject};
use crate::secret::SecretValue;
use crate::secret::formats::{AwsFile, Credential, GcpKey};
use crate::velero::Plugin;

/// The top-level folders Velero accepts under a location's prefix.
pub const VELERO_FOLDERS: [&str; 6] = [
    "backups", "restores", "kopia", "restic", "metadata", "plugins",
];

/// Objects listed under `backups/` before a count is reported as a lower bound.
const MAX_LISTED_OBJECTS: usize = 200_000;

/// Where a location's credential comes from, as far as stowage can see it.
#[derive(Debug, Clone, PartialEq)]
pub enum CredentialValue {
    /// Read once, where it was found: at load for the file's own credentials, when
    /// fetched for the cluster's.
    Value(Credential),
    /// Not available to stowage (e.g. `external` without a saved Secret), with why.
    Unavailable(String),
}

/// One bucket place to check.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketTarget {
    pub location: String,
    pub provider: String,
    pub bucket: String,
    pub prefix: Option<String>,
    pub config: BTreeMap<String, String>,
    pub credential: CredentialValue,
    pub ca_cert: Option<Vec<u8>>,
}

/// Checks every target concurrently, each within `timeout`; reports come back in the
/// order of `targets`.
pub async fn check_all(targets: Vec<BucketTarget>, timeout: Duration) -> Vec<BucketReport> {
    let clients = Clients::default();
    let clients = &clients;
    let checks = targets.into_iter().map(|target| async move {
        let status = match tokio::time::timeout(timeout, check(&target, clients)).await {
            Ok(status) => status,
            Err(_) => BucketStatus::Unreachable {
                reason: format!("no answer within {}s", timeout.as_secs()),
            },
        };
        BucketReport {
            location: target.location,
            bucket: target.bucket,
            prefix: target.prefix,
            status,
        }
    });
    futures::future::join_all(checks).await
}

/// HTTP clients shared by every store with the same connection settings. Building one
/// loads the system's root certificates, which costs milliseconds of CPU; sharing
/// them is what lets fifty checks take the time of one.
#[derive(Default)]
struct Clients {
    built: std::sync::Mutex<Vec<(ClientKey, object_store::client::HttpClient)>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ClientKey {
    allow_http: bool,
    insecure: bool,
    ca_cert: Option<Vec<u8>>,
}

impl Clients {
    fn connector(&self, target: &BucketTarget) -> Result<Shared, BucketStatus> {
        let key = ClientKey {
            allow_http: endpoint(target).is_some_and(|url| url.starts_with("http://")),
            insecure: is_true(target.config.get("insecureSkipTLSVerify")),
            ca_cert: target.ca_cert.clone(),
        };
        let mut built = self
            .built
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, client)) = built.iter().find(|(k, _)| *k == key) {
            return Ok(Shared(client.clone()));
        }
        use object_store::client::HttpConnector as _;
        let client = object_store::client::ReqwestConnector::default()
            .connect(&client_options(target)?)
            .map_err(|_| not_checked("cannot set up an HTTP client for this location"))?;
        built.push((key, client.clone()));
        Ok(Shared(client))
    }
}

/// Hands every store the same prebuilt client.
#[derive(Debug)]
struct Shared(object_store::client::HttpClient);

impl object_store::client::HttpConnector for Shared {
    fn connect(&self, _: &ClientOptions) -> object_store::Result<object_store::client::HttpClient> {
        Ok(self.0.clone())
    }
}

fn is_true(value: Option<&String>) -> bool {
    value.is_some_and(|v| matches!(v.as_str(), "1" | "t" | "T" | "TRUE" | "true" | "True"))
}

/// The endpoint a location's config overrides, if any.
fn endpoint(target: &BucketTarget) -> Option<&str> {
    let key = Plugin::of(&target.provider)?.endpoint_key()?;
    target.config.get(key).map(String::as_str)
}

/// Whether each backup's `velero-backup.json` is under its location's
/// `<prefix>/backups/<name>/`, read with the location's own credential, each within
/// `timeout`, all at once; answers in the order asked.
pub async fn find_backups(
    wanted: Vec<(BucketTarget, String)>,
    timeout: Duration,
) -> Vec<crate::copies::Presence> {
    use crate::copies::Presence;
    let clients = Clients::default();
    let clients = &clients;
    let finds = wanted.into_iter().map(|(target, backup)| async move {
        let secrets = secret_words(&target.credential);
        let store = match store_for(&target, clients) {
            Ok(store) => store,
            Err(BucketStatus::NotChecked { reason } | BucketStatus::Unreachable { reason }) => {
                return Presence::Unknown(reason);
            }
            Err(BucketStatus::Reachable { .. }) => {
                return Presence::Unknown("no store".to_string());
            }
        };
        let root = target.prefix.as_deref().unwrap_or("").trim_matches('/');
        let key = if root.is_empty() {
            format!("backups/{backup}/velero-backup.json")
        } else {
            format!("{root}/backups/{backup}/velero-backup.json")
        };
        match tokio::time::timeout(timeout, store.head(&StorePath::from(key))).await {
            Ok(Ok(_)) => Presence::Present,
            Ok(Err(object_store::Error::NotFound { .. })) => Presence::Absent,
            Ok(Err(error)) => Presence::Unknown(plain_reason(&error, &secrets)),
            Err(_) => Presence::Unknown(format!("no answer within {}s", timeout.as_secs())),
        }
    });
    futures::future::join_all(finds).await
}

/// Why a file Velero keeps in a location's bucket could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("{key} is not in the bucket")]
    Absent { key: String },
    #[error("{0}")]
    Unreadable(String),
}

/// The largest file of Velero's read from a bucket (item lists, restore results).
const VELERO_FILE_LIMIT: usize = 64 << 20;

/// Reads `relative` (a path under the location's prefix, e.g.
/// `backups/<name>/<name>-resource-list.json.gz`) from the location's bucket with its
/// own credential, within `timeout`; gunzipped when the name ends in `.gz`. Errors are
/// scrubbed of the credential.
pub async fn read_velero_file(
    target: &BucketTarget,
    relative: &str,
    timeout: Duration,
) -> Result<Vec<u8>, ReadError> {
    let secrets = secret_words(&target.credential);
    let clients = Clients::default();
    let store = match store_for(target, &clients) {
        Ok(store) => store,
        Err(BucketStatus::NotChecked { reason } | BucketStatus::Unreachable { reason }) => {
            return Err(ReadError::Unreadable(reason));
        }
        Err(BucketStatus::Reachable { .. }) => {
            return Err(ReadError::Unreadable("no store".to_string()));
        }
    };
    let root = target.prefix.as_deref().unwrap_or("").trim_matches('/');
    let key = if root.is_empty() {
        relative.to_string()
    } else {
        format!("{root}/{relative}")
    };
    let read = async {
        let object = store.get(&StorePath::from(key.as_str())).await?;
        object.bytes().await
    };
    let bytes = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(object_store::Error::NotFound { .. })) => {
            return Err(ReadError::Absent { key });
        }
        Ok(Err(error)) => return Err(ReadError::Unreadable(plain_reason(&error, &secrets))),
        Err(_) => {
            return Err(ReadError::Unreadable(format!(
                "no answer within {}s",
                timeout.as_secs()
            )));
        }
    };
    if bytes.len() > VELERO_FILE_LIMIT {
        return Err(ReadError::Unreadable(format!(
            "{key} is larger than any file Velero writes there"
        )));
    }
    if !key.ends_with(".gz") {
        return Ok(bytes.to_vec());
    }
    let mut plain = Vec::new();
    use std::io::Read as _;
    flate2::read::GzDecoder::new(bytes.as_ref())
        .take(VELERO_FILE_LIMIT as u64)
        .read_to_end(&mut plain)
        .map_err(|error| ReadError::Unreadable(format!("{key} is not gzip: {error}")))?;
    Ok(plain)
}

async fn check(target: &BucketTarget, clients: &Clients) -> BucketStatus {
    let secrets = secret_words(&target.credential);
    let store = match store_for(target, clients) {
        Ok(store) => store,
        Err(status) => return status,
    };
    let root = target.prefix.as_deref().unwrap_or("").trim_matches('/');
    let root_path = (!root.is_empty()).then(|| StorePath::from(root));
    let listing = match store.list_with_delimiter(root_path.as_ref()).await {
        Ok(listing) => listing,
        Err(error) => {
            return BucketStatus::Unreachable {
                reason: plain_reason(&error, &secrets),
            };
        }
    };
    let mut foreign: Vec<String> = listing
        .common_prefixes
        .iter()
        .filter_map(|path| path.filename().map(str::to_string))
        .filter(|name| !VELERO_FOLDERS.contains(&name.as_str()))
        .collect();
    foreign.sort();
    let backups_root = match &root_path {
        Some(root) => root.clone().join("backups"),
        None => StorePath::from("backups"),
    };
    let depth = backups_root.parts().count();
    let mut stream = store.list(Some(&backups_root));
    let (mut backups, mut listed) = (0, 0);
    while let Some(item) = stream.next().await {
        let meta = match item {
            Ok(meta) => meta,
            Err(error) => {
                return BucketStatus::Unreachable {
                    reason: plain_reason(&error, &secrets),
                };
            }
        };
        listed += 1;
        let parts: Vec<_> = meta.location.parts().collect();
        if parts.len() == depth + 2 && parts[depth + 1].as_ref() == "velero-backup.json" {
            backups += 1;
        }
        if listed >= MAX_LISTED_OBJECTS {
            return BucketStatus::Reachable {
                backups,
                backups_capped: true,
                foreign,
            };
        }
    }
    BucketStatus::Reachable {
        backups,
        backups_capped: false,
        foreign,
    }
}

fn client_options(target: &BucketTarget) -> Result<ClientOptions, BucketStatus> {
    let mut options = ClientOptions::new()
        .with_timeout(Duration::from_secs(10))
        .with_connect_timeout(Duration::from_secs(5))
        .with_allow_http(endpoint(target).is_some_and(|url| url.starts_with("http://")));
    if is_true(target.config.get("insecureSkipTLSVerify")) {
        options = options.with_allow_invalid_certificates(true);
    }
    if let Some(pem) = &target.ca_cert {
        let certificates = object_store::Certificate::from_pem_bundle(pem).map_err(|_| {
            BucketStatus::NotChecked {
                reason: "the CA bundle is not valid PEM".to_string(),
            }
        })?;
        for certificate in certificates {
            options = options.with_root_certificate(certificate);
        }
    }
    Ok(options)
}

fn retry() -> RetryConfig {
    RetryConfig {
        max_retries: 1,
        retry_timeout: Duration::from_secs(10),
        ..RetryConfig::default()
    }
}

fn not_checked(reason: impl Into<String>) -> BucketStatus {
    BucketStatus::NotChecked {
        reason: reason.into(),
    }
}

fn credential_of(target: &BucketTarget) -> Result<&Credential, BucketStatus> {
    match &target.credential {
        CredentialValue::Unavailable(reason) => Err(not_checked(reason.clone())),
        CredentialValue::Value(credential) => Ok(credential),
    }
}

/// A value read from a credential, for a client builder.
fn plain(value: &SecretValue) -> String {
    String::from_utf8_lossy(value.expose()).into_owned()
}

/// An object_store client for the target, built only from explicit settings: never
/// from the environment or a cloud metadata service.
fn store_for(
    target: &BucketTarget,
    clients: &Clients,
) -> Result<Arc<dyn ObjectStore>, BucketStatus> {
    let plugin = Plugin::of(&target.provider).ok_or_else(|| {
        not_checked(format!(
            "stowage cannot check buckets of provider {}",
            target.provider
        ))
    })?;
    let built = match plugin {
        Plugin::Aws => aws_store(target, clients.connector(target)?)?,
        Plugin::Azure => azure_store(target, clients.connector(target)?)?,
        Plugin::Gcp => gcp_store(target, clients.connector(target)?)?,
        Plugin::Portworx => return Err(not_checked("Portworx has no object store")),
    };
    Ok(built)
}

fn aws_store(
    target: &BucketTarget,
    connector: Shared,
) -> Result<Arc<dyn ObjectStore>, BucketStatus> {
    let file = credential_of(target)?
        .aws()
        .map_err(|e| not_checked(e.to_string()))?;
    let profile = target
        .config
        .get("profile")
        .filter(|p| !p.is_empty())
        .map(String::as_str)
        .unwrap_or("default");
    let keys = aws_keys(file, profile).ok_or_else(|| {
        not_checked(format!(
            "profile [{profile}] has no static keys (roles and SSO cannot be checked from here)"
        ))
    })?;
    let url = target.config.get("s3Url").map(String::as_str);
    let path_style = is_true(target.config.get("s3ForcePathStyle"));
    let mut builder = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&target.bucket)
        .with_region(
            target
                .config
                .get("region")
                .map(String::as_str)
                .unwrap_or("us-east-1"),
        )
        .with_access_key_id(keys.access_key_id)
        .with_secret_access_key(keys.secret_access_key)
        .with_virtual_hosted_style_request(!path_style)
        .with_retry(retry())
        .with_client_options(client_options(target)?)
        .with_http_connector(connector);
    if let Some(token) = keys.session_token {
        builder = builder.with_token(token);
    }
    if let Some(url) = url {
        builder = builder.with_endpoint(url);
    }
    builder
        .build()
        .map(|store| Arc::new(store) as Arc<dyn ObjectStore>)
        .map_err(|error| {
            not_checked(format!(
                "cannot set up the S3 client: {}",
                scrub(&error.to_string(), &secret_words(&target.credential))
            ))
        })
}

struct AwsKeys {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

fn aws_keys(file: &AwsFile, profile: &str) -> Option<AwsKeys> {
    let section = file.profile(profile)?;
    Some(AwsKeys {
        access_key_id: plain(section.get("aws_access_key_id")?),
        secret_access_key: plain(section.get("aws_secret_access_key")?),
        session_token: section.get("aws_session_token").map(plain),
    })
}

fn azure_store(
    target: &BucketTarget,
    connector: Shared,
) -> Result<Arc<dyn ObjectStore>, BucketStatus> {
    let values = credential_of(target)?
        .azure()
        .map_err(|e| not_checked(e.to_string()))?;
    let account = target
        .config
        .get("storageAccount")
        .ok_or_else(|| not_checked("config.storageAccount is missing"))?;
    let url = target.config.get("storageAccountURI").map(String::as_str);
    let mut builder = object_store::azure::MicrosoftAzureBuilder::new()
        .with_account(account)
        .with_container_name(&target.bucket)
        .with_retry(retry())
        .with_client_options(client_options(target)?)
        .with_http_connector(connector);
    if let Some(url) = url {
        builder = builder
            .with_endpoint(url.to_string())
            .with_allow_http(url.starts_with("http://"));
    }
    let key_name = target
        .config
        .get("storageAccountKeyEnvVar")
        .filter(|k| !k.is_empty())
        .map(String::as_str)
        .unwrap_or("AZURE_STORAGE_ACCOUNT_ACCESS_KEY");
    builder = match (
        values.get(key_name),
        values.get("AZURE_CLIENT_ID"),
        values.get("AZURE_CLIENT_SECRET"),
        values.get("AZURE_TENANT_ID"),
    ) {
        (Some(key), _, _, _) => builder.with_access_key(plain(key)),
        (_, Some(client), Some(secret), Some(tenant)) => {
            builder.with_client_secret_authorization(plain(client), plain(secret), plain(tenant))
        }
        _ => {
            return Err(not_checked(
                "the credential holds no account key or client secret (managed and workload identities cannot be used from here)",
            ));
        }
    };
    builder
        .build()
        .map(|store| Arc::new(store) as Arc<dyn ObjectStore>)
        .map_err(|error| {
            not_checked(format!(
                "cannot set up the Azure client: {}",
                scrub(&error.to_string(), &secret_words(&target.credential))
            ))
        })
}

fn gcp_store(
    target: &BucketTarget,
    connector: Shared,
) -> Result<Arc<dyn ObjectStore>, BucketStatus> {
    let credential = credential_of(target)?;
    if credential.gcp().ok().and_then(GcpKey::kind) != Some("service_account") {
        return Err(not_checked(
            "only service-account keys can be checked from here",
        ));
    }
    let url = target.config.get("storeEndpoint").map(String::as_str);
    let mut builder = object_store::gcp::GoogleCloudStorageBuilder::new()
        .with_bucket_name(&target.bucket)
        .with_service_account_key(plain(credential.value()))
        .with_retry(retry())
        .with_client_options(client_options(target)?)
        .with_http_connector(connector);
    if let Some(url) = url {
        builder = builder.with_base_url(url);
    }
    builder
        .build()
        .map(|store| Arc::new(store) as Arc<dyn ObjectStore>)
        .map_err(|error| {
            not_checked(format!(
                "cannot set up the GCS client: {}",
                scrub(&error.to_string(), &secret_words(&target.credential))
            ))
        })
}

/// The words no message about `credential` may contain.
fn secret_words(credential: &CredentialValue) -> Vec<String> {
    match credential {
        CredentialValue::Value(credential) => credential.words(),
        CredentialValue::Unavailable(_) => Vec::new(),
    }
}

/// Removes every secret word from `text`, as written and in the forms a provider's
/// error may echo it in: any letter case, percent-encoded (in a URL or query), and
/// base64 (standard or URL-safe, with or without padding).
fn scrub(text: &str, secrets: &[String]) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let mut text = text.to_string();
    for secret in secrets {
        let bytes = secret.as_bytes();
        let mut forms = vec![
            secret.clone(),
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
        ];
        for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            forms.push(engine.encode(bytes));
        }
        // Longest first, so a form is never left half-replaced by a shorter one.
        forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
        for form in forms {
            text = replace_ignoring_ascii_case(&text, &form, "<redacted>");
        }
    }
    text
}

/// `text` with every occurrence of `needle` replaced, ASCII letter case ignored.
/// ASCII lowercasing keeps every byte where it was, so positions found in the
/// lowercased copy are positions in `text`.
fn replace_ignoring_ascii_case(text: &str, needle: &str, with: &str) -> String {
    if needle.is_empty() {
        return text.to_string();
    }
    let haystack = text.to_ascii_lowercase();
    let needle = needle.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (start, _) in haystack.match_indices(&needle) {
        if start < copied {
            continue;
        }
        out.push_str(&text[copied..start]);
        out.push_str(with);
        copied = start + needle.len();
    }
    out.push_str(&text[copied..]);
    out
}

/// The provider's error in plain words, then its own text (scrubbed, shortened).
fn plain_reason(error: &object_store::Error, secrets: &[String]) -> String {
    let detail = error_chain(error);
    let lower = detail.to_ascii_lowercase();
    let summary = if matches!(error, object_store::Error::NotFound { .. })
        || lower.contains("nosuchbucket")
        || lower.contains("containernotfound")
        || lower.contains("the specified container does not exist")
        || lower.contains("no bucket named")
        || lower.contains("bucket does not exist")
        // Status codes with their reason phrase, never bare digits: a request id or a
        // signature in the message may hold "404" by chance.
        || (lower.contains("404 not found") && lower.contains("bucket"))
    {
        "no such bucket"
    } else if lower.contains("failed to authenticate")
        || lower.contains("invalidaccesskeyid")
        || lower.contains("signaturedoesnotmatch")
        || lower.contains("authenticationfailed")
        || lower.contains("401 unauthorized")
        || lower.contains("invalid_grant")
    {
        "the credential was refused (wrong key?)"
    } else if lower.contains("accessdenied")
        || lower.contains("403 forbidden")
        || lower.contains("authorizationfailure")
    {
        "access denied"
    } else if lower.contains("dns error")
        || lower.contains("failed to lookup")
        || lower.contains("name or service not known")
    {
        "DNS lookup failed"
    } else if lower.contains("certificate") || lower.contains("tls") {
        "TLS failure"
    } else if lower.contains("connection refused")
        || lower.contains("error sending request")
        || lower.contains("connect")
    {
        "cannot connect"
    } else {
        "the provider refused the listing"
    };
    let mut detail = scrub(&provider_message(&detail).unwrap_or(detail), secrets);
    if detail.len() > 400 {
        let mut cut = 400;
        while !detail.is_char_boundary(cut) {
            cut -= 1;
        }
        detail.truncate(cut);
        detail.push('…');
    }
    format!("{summary}: {detail}")
}

/// The error code and message of an S3 or Azure XML error body, with the HTTP status:
/// what a user needs, without the request plumbing around it.
fn provider_message(detail: &str) -> Option<String> {
    let between = |open: &str, close: &str| {
        let start = detail.find(open)? + open.len();
        let end = detail[start..].find(close)? + start;
        Some(detail[start..end].trim().to_string())
    };
    let code = between("<Code>", "</Code>")?;
    let message = between("<Message>", "</Message>").unwrap_or_default();
    let message = message.lines().next().unwrap_or_default().to_string();
    let status = detail
        .find("status code: ")
        .map(|i| &detail[i + "status code: ".len()..])
        .and_then(|rest| rest.split(':').next())
        .map(|status| format!(" (HTTP {})", status.trim()))
        .unwrap_or_default();
    Some(format!("{code}: {message}{status}"))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.replace('\n', " ")
}

/// Finds a Secret key's value: what the file writes, else what the cluster holds.
fn secret_value(
    secret: &str,
    key: &str,
    desired: &crate::render::Desired,
    observed: &Observed,
) -> Option<SecretValue> {
    let declared = desired
        .secrets
        .iter()
        .find(|s| s.object.name == secret)
        .and_then(|s| s.data.get(key));
    let in_cluster = || {
        observed
            .secrets
            .values()
            .find(|s| s.object.name == secret && s.object.namespace == desired.namespace)
            .and_then(|s| s.data.get(key))
    };
    declared.or_else(in_cluster).cloned()
}

/// The file's own credentials, as read at load, by the Secret key each is written to.
type Declared<'a> = BTreeMap<(&'a str, &'a str), &'a Credential>;

fn declared_credentials<'a>(
    config: &'a crate::config::Config,
    materials: &'a crate::config::load::Materials,
) -> Declared<'a> {
    config
        .credentials
        .iter()
        .filter_map(|(name, credential)| match materials.credentials.get(name) {
            Some(Material::Value(read)) => Some((
                (credential.secret_name(name), credential.secret_key()),
                read,
            )),
            _ => None,
        })
        .collect()
}

/// The credential Velero will use for a location with `selector` (its install-time
/// Secret when `None`): the file's own, else the cluster's, read here.
fn credential_for(
    selector: Option<(&str, &str)>,
    declared: &Declared<'_>,
    desired: &crate::render::Desired,
    observed: &Observed,
) -> CredentialValue {
    let (secret, key) = selector.unwrap_or(crate::velero::INSTALL_SECRET);
    if let Some(read) = declared.get(&(secret, key)) {
        return CredentialValue::Value((*read).clone());
    }
    match secret_value(secret, key, desired, observed) {
        Some(value) => CredentialValue::Value(Credential::read(value)),
        None if selector.is_none() => CredentialValue::Unavailable(format!(
            "it uses Velero's install-time credential {secret}/{key}, which neither the file nor the observed state holds"
        )),
        None => CredentialValue::Unavailable(format!(
            "Secret {secret} key {key} is in neither the file nor the observed state"
        )),
    }
}

/// The places the file's locations point at, each with the credential Velero will use.
pub fn desired_targets(
    config: &crate::config::Config,
    materials: &crate::config::load::Materials,
    desired: &crate::render::Desired,
    observed: &Observed,
) -> Vec<BucketTarget> {
    let declared = declared_credentials(config, materials);
    config
        .backup_locations
        .iter()
        .map(|(name, location)| {
            let selector = location.credential.as_ref().and_then(|credential| {
                config
                    .credentials
                    .get(credential)
                    .map(|c| (c.secret_name(credential), c.secret_key()))
            });
            let ca_cert = match (&location.ca_cert_ref, materials.ca_certs.get(name)) {
                (_, Some(Ok(bytes))) => Some(bytes.clone()),
                (Some(reference), _) => {
                    secret_value(&reference.secret, &reference.key, desired, observed)
                        .map(|value| value.expose().to_vec())
                }
                _ => None,
            };
            BucketTarget {
                location: name.clone(),
                provider: location.provider.clone(),
                bucket: location.bucket.trim_matches('/').to_string(),
                prefix: location.prefix.clone(),
                config: location.config.clone(),
                credential: credential_for(selector, &declared, desired, observed),
                ca_cert,
            }
        })
        .collect()
}

/// The place a location in the cluster points at now, for one the plan deletes or
/// repoints: its backup count is what the change puts at risk.
pub fn current_target(
    observed_location: &ObservedObject,
    config: &crate::config::Config,
    materials: &crate::config::load::Materials,
    desired: &crate::render::Desired,
    observed: &Observed,
) -> Option<BucketTarget> {
    let spec = observed_location.location_spec()?;
    let selector = spec
        .credential
        .as_ref()
        .map(|c| (c.name.as_str(), c.key.as_str()));
    let credential = credential_for(
        selector,
        &declared_credentials(config, materials),
        desired,
        observed,
    );
    Some(BucketTarget {
        location: observed_location.object.name.clone(),
        provider: spec.provider,
        bucket: spec.object_storage.bucket.trim_matches('/').to_string(),
        prefix: spec.object_storage.prefix,
        config: spec.config,
        credential,
        ca_cert: spec.object_storage.ca_cert.map(|bytes| bytes.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_words_cover_each_format() {
        let ini = "[default]\naws_access_key_id = AKIAEXAMPLE1\naws_secret_access_key = CANARY-secret-key\n";
        let words = secret_words(&CredentialValue::Value(Credential::read(SecretValue::new(
            ini.as_bytes().to_vec(),
        ))));
        assert!(words.contains(&"CANARY-secret-key".to_string()));
        let scrubbed = scrub("error: CANARY-secret-key was refused", &words);
        assert!(!scrubbed.contains("CANARY"), "{scrubbed}");
        // The forms an error may echo it in: another case, percent-encoded, base64.
        let secret = "CANARY/secret+key=42";
        let words = vec![secret.to_string()];
        for echoed in [
            "canary/secret+key=42".to_string(),
            "CANARY%2Fsecret%2Bkey%3D42".to_string(),
            "canary%2fsecret%2bkey%3d42".to_string(),
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, secret),
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, secret),
        ] {
            let scrubbed = scrub(&format!("refused: {echoed} (403)"), &words);
            assert_eq!(scrubbed, "refused: <redacted> (403)", "{echoed}");
        }
        let json = r#"{"type": "service_account", "private_key": "CANARY-private-key-value"}"#;
        let words = secret_words(&CredentialValue::Value(Credential::read(SecretValue::new(
            json.as_bytes().to_vec(),
        ))));
        assert!(
            words.contains(&"CANARY-private-key-value".to_string()),
            "{words:?}"
        );
    }
}
