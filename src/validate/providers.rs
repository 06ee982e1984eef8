//! What each provider plugin accepts in a location's `config`: its allowed keys, the
//! keys it requires and the values it can parse (velero-semantics.md §5).
//!
//! The aws, azure and gcp plugins refuse unknown keys, turning a BSL `Unavailable` and
//! silently skipping a VSL's snapshots; Portworx checks nothing but its `type`.

use std::collections::BTreeMap;

use crate::diagnostic::{Code, Diagnostic, Pointer, nearest};
use crate::velero::duration::parse_go_duration;
use crate::velero::plugin::{Plugin, normalize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationKind {
    Backup,
    Snapshot,
}

const AWS_BSL_KEYS: &[&str] = &[
    "region",
    "s3Url",
    "publicUrl",
    "s3ForcePathStyle",
    "insecureSkipTLSVerify",
    "kmsKeyId",
    "customerKeyEncryptionFile",
    "customerKeyEncryptionSecret",
    "serverSideEncryption",
    "signatureVersion",
    "profile",
    "credentialsFile",
    "enableSharedConfig",
    "tagging",
    "checksumAlgorithm",
];
const AWS_VSL_KEYS: &[&str] = &["region", "profile", "credentialsFile", "enableSharedConfig"];
const AZURE_BSL_KEYS: &[&str] = &[
    "storageAccount",
    "resourceGroup",
    "subscriptionId",
    "storageAccountKeyEnvVar",
    "useAAD",
    "storageAccountURI",
    "activeDirectoryAuthorityURI",
    "blockSizeInBytes",
    "credentialsFile",
];
const AZURE_VSL_KEYS: &[&str] = &[
    "resourceGroup",
    "subscriptionId",
    "apiTimeout",
    "incremental",
    "tags",
    "credentialsFile",
];
const GCP_BSL_KEYS: &[&str] = &[
    "kmsKeyName",
    "serviceAccount",
    "credentialsFile",
    "storeEndpoint",
    "universeDomain",
];
const GCP_VSL_KEYS: &[&str] = &[
    "snapshotLocation",
    "project",
    "volumeProject",
    "snapshotType",
    "credentialsFile",
];

/// Keys Velero fills in itself for object stores, each with the field that sets it.
const INJECTED_BSL_KEYS: &[(&str, &str)] = &[
    ("bucket", "bucket"),
    ("prefix", "prefix"),
    ("caCert", "ca_cert_file or ca_cert_ref"),
];

/// Everything a location tells the config check.
pub struct LocationConfig<'a> {
    pub provider: &'a str,
    pub kind: LocationKind,
    pub config: &'a BTreeMap<String, String>,
    pub has_credential: bool,
    /// The location's own pointer, e.g. `backup_locations.primary`.
    pub at: &'a Pointer,
}

pub fn check_config(location: &LocationConfig<'_>, out: &mut Vec<Diagnostic>) {
    let at = location.at;
    let provider_at = at.child("provider");
    if location.provider.trim().is_empty() {
        out.push(
            Diagnostic::error(Code::ProviderConfig, "the provider must not be empty")
                .at(provider_at)
                .help("name the plugin, e.g. aws, azure, gcp or portworx.io/portworx"),
        );
        return;
    }
    if location.provider == "portworx" {
        out.push(
            Diagnostic::error(
                Code::ProviderConfig,
                "provider `portworx` resolves to velero.io/portworx, which no plugin provides",
            )
            .at(provider_at.clone())
            .label("no such plugin")
            .help("the Portworx plugin registers as `portworx.io/portworx`"),
        );
    }
    let Some(plugin) = Plugin::of(location.provider) else {
        return;
    };
    let kind = location.kind;
    if plugin == Plugin::Portworx && kind == LocationKind::Backup {
        out.push(
            Diagnostic::error(
                Code::ProviderConfig,
                "portworx.io/portworx has no object store: it only takes volume snapshots",
            )
            .at(provider_at)
            .help("store backups with an object storage provider such as aws, azure or gcp"),
        );
        return;
    }
    let allowed: &[&str] = match (plugin, kind) {
        (Plugin::Aws, LocationKind::Backup) => AWS_BSL_KEYS,
        (Plugin::Aws, LocationKind::Snapshot) => AWS_VSL_KEYS,
        (Plugin::Azure, LocationKind::Backup) => AZURE_BSL_KEYS,
        (Plugin::Azure, LocationKind::Snapshot) => AZURE_VSL_KEYS,
        (Plugin::Gcp, LocationKind::Backup) => GCP_BSL_KEYS,
        (Plugin::Gcp, LocationKind::Snapshot) => GCP_VSL_KEYS,
        (Plugin::Portworx, _) => &[],
    };
    let config_at = at.child("config");
    if plugin != Plugin::Portworx {
        check_keys(location, allowed, &config_at, out);
    }
    let checks = ValueChecks {
        config: location.config,
        at: &config_at,
    };
    match (plugin, kind) {
        (Plugin::Aws, LocationKind::Backup) => checks.aws_bsl(out),
        (Plugin::Aws, LocationKind::Snapshot) => checks.require(
            "region",
            "the aws volume snapshotter needs the region its volumes are in",
            out,
        ),
        (Plugin::Azure, LocationKind::Backup) => checks.azure_bsl(out),
        (Plugin::Azure, LocationKind::Snapshot) => checks.azure_vsl(out),
        (Plugin::Gcp, LocationKind::Backup) => {}
        (Plugin::Gcp, LocationKind::Snapshot) => checks.gcp_vsl(out),
        (Plugin::Portworx, _) => checks.portworx(out),
    }
}

fn check_keys(
    location: &LocationConfig<'_>,
    allowed: &[&str],
    config_at: &Pointer,
    out: &mut Vec<Diagnostic>,
) {
    for key in location.config.keys() {
        let key_at = config_at.child(key.as_str()).as_key();
        if location.kind == LocationKind::Backup
            && let Some((_, field)) = INJECTED_BSL_KEYS.iter().find(|(k, _)| k == key)
        {
            out.push(
                Diagnostic::error(
                    Code::ProviderConfig,
                    format!("`{key}` is set by Velero from the location itself"),
                )
                .at(key_at)
                .label("Velero overwrites this")
                .help(format!("use the location's `{field}` instead")),
            );
            continue;
        }
        if key == "credentialsFile" {
            if location.has_credential {
                out.push(
                    Diagnostic::error(
                        Code::ProviderConfig,
                        "`credentialsFile` is replaced by Velero when the location has a credential",
                    )
                    .at(key_at)
                    .help("remove it; the location's `credential` is what Velero uses"),
                );
            }
            continue;
        }
        if allowed.contains(&key.as_str()) {
            continue;
        }
        if location.kind == LocationKind::Snapshot && key == "activeDirectoryAuthorityURI" {
            out.push(
                Diagnostic::error(
                    Code::ProviderConfig,
                    "the azure volume snapshotter refuses `activeDirectoryAuthorityURI`, although its docs list it",
                )
                .at(key_at)
                .help("remove it; only backup storage locations take it"),
            );
            continue;
        }
        let diagnostic = Diagnostic::error(
            Code::ProviderConfig,
            format!(
                "the {} plugin does not accept config key `{key}`",
                normalize(location.provider)
            ),
        )
        .at(key_at)
        .label("not a key of this plugin");
        let diagnostic = match nearest(key, allowed.iter().copied()) {
            Some(suggestion) => diagnostic.help(format!("did you mean `{suggestion}`?")),
            None => diagnostic.help(format!("valid keys are {}", allowed.join(", "))),
        };
        out.push(diagnostic);
    }
}

struct ValueChecks<'a> {
    config: &'a BTreeMap<String, String>,
    at: &'a Pointer,
}

impl ValueChecks<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.config.get(key).map(String::as_str)
    }

    fn value_at(&self, key: &str) -> Pointer {
        self.at.child(key)
    }

    fn error(&self, key: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(Code::ProviderConfig, message).at(self.value_at(key))
    }

    fn require(&self, key: &str, why: &str, out: &mut Vec<Diagnostic>) {
        if self.get(key).is_none_or(str::is_empty) {
            out.push(
                Diagnostic::error(
                    Code::ProviderConfig,
                    format!("config key `{key}` is required"),
                )
                .at(self.at.clone())
                .label(format!("`{key}` is missing"))
                .help(why.to_string()),
            );
        }
    }

    /// Go's strconv.ParseBool.
    fn boolean(&self, key: &str, out: &mut Vec<Diagnostic>) -> Option<bool> {
        let value = self.get(key)?;
        match value {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
            _ => {
                out.push(
                    self.error(key, format!("`{key}` must be a boolean, not {value:?}"))
                        .label("expected true or false"),
                );
                None
            }
        }
    }

    fn url(&self, key: &str, out: &mut Vec<Diagnostic>) -> Option<Url> {
        let value = self.get(key)?;
        match Url::parse(value) {
            Some(url) => Some(url),
            None => {
                out.push(
                    self.error(
                        key,
                        format!("`{key}` must be an http or https URL, not {value:?}"),
                    )
                    .label("invalid s3 url")
                    .help("e.g. https://minio.example.com:9000"),
                );
                None
            }
        }
    }

    fn aws_bsl(&self, out: &mut Vec<Diagnostic>) {
        let path_style = self.boolean("s3ForcePathStyle", out);
        self.boolean("insecureSkipTLSVerify", out);
        if let Some(url) = self.url("s3Url", out)
            && url.has_path
        {
            out.push(
                self.error("s3Url", "`s3Url` must not contain a path")
                    .label("path is not expected in s3Url")
                    .help("Velero's Kopia repositories refuse an s3Url with a path; put it in `prefix`"),
            );
        }
        self.url("publicUrl", out);
        if (path_style == Some(true) || self.get("s3Url").is_some())
            && self.get("region").is_none_or(str::is_empty)
        {
            out.push(
                Diagnostic::warning(
                    Code::ProviderConfig,
                    "set `region` when `s3Url` or `s3ForcePathStyle` is set",
                )
                .at(self.at.clone())
                .help("S3-compatible stores such as MinIO need a region for request signing; any value they accept works, often us-east-1"),
            );
        }
        let encryption: Vec<&str> = [
            "kmsKeyId",
            "customerKeyEncryptionFile",
            "customerKeyEncryptionSecret",
        ]
        .into_iter()
        .filter(|key| self.get(key).is_some())
        .collect();
        if encryption.len() > 1 {
            out.push(
                self.error(
                    encryption[1],
                    format!("only one of {} may be set", encryption.join(", ")),
                )
                .label("second encryption key setting"),
            );
        }
        if let Some(secret) = self.get("customerKeyEncryptionSecret") {
            let valid = secret.split_once('/').is_some_and(|(name, key)| {
                !name.is_empty() && !key.is_empty() && !key.contains('/')
            });
            if !valid {
                out.push(
                    self.error(
                        "customerKeyEncryptionSecret",
                        "`customerKeyEncryptionSecret` must be <secret name>/<key>",
                    )
                    .help("the Secret lives in the Velero namespace and holds a 32-byte key"),
                );
            }
        }
        if let Some(tagging) = self.get("tagging") {
            self.tagging(tagging, out);
        }
        if let Some(algorithm) = self.get("checksumAlgorithm")
            && !["", "CRC32", "CRC32C", "SHA1", "SHA256"].contains(&algorithm)
        {
            out.push(
                self.error(
                    "checksumAlgorithm",
                    format!("unsupported checksumAlgorithm {algorithm:?}"),
                )
                .help("use CRC32, CRC32C, SHA1, SHA256, or \"\" to disable checksums"),
            );
        }
    }

    fn tagging(&self, tagging: &str, out: &mut Vec<Diagnostic>) {
        let pairs: Vec<&str> = tagging.split('&').collect();
        let problem = if pairs.len() < 2 {
            Some("the aws plugin needs at least two tags, separated by &".to_string())
        } else if pairs.len() > 10 {
            Some(format!("at most 10 tags are allowed, not {}", pairs.len()))
        } else {
            pairs
                .iter()
                .find_map(|pair| match pair.split('=').collect::<Vec<_>>()[..] {
                    [key, value] if key.len() > 128 => {
                        let _ = value;
                        Some(format!("tag key {key:?} is longer than 128 characters"))
                    }
                    [key, value] if value.len() > 248 => Some(format!(
                        "the value of tag {key:?} is longer than 248 characters"
                    )),
                    [_, _] => None,
                    _ => Some(format!("tag {pair:?} must be exactly one key=value")),
                })
        };
        if let Some(problem) = problem {
            out.push(
                self.error("tagging", problem)
                    .help("write tags as K1=V1&K2=V2"),
            );
        }
    }

    fn azure_bsl(&self, out: &mut Vec<Diagnostic>) {
        self.require(
            "storageAccount",
            "the azure object store needs the storage account holding the container",
            out,
        );
        let key_env = self
            .get("storageAccountKeyEnvVar")
            .filter(|v| !v.is_empty());
        let use_aad = if key_env.is_none() {
            self.boolean("useAAD", out)
        } else {
            None
        };
        if let Some(url) = self.get("storageAccountURI")
            && Url::parse(url).is_none()
        {
            out.push(
                self.error(
                    "storageAccountURI",
                    "`storageAccountURI` must be an http or https URL",
                )
                .help("e.g. https://<account>.blob.core.windows.net"),
            );
        }
        if let Some(size) = self.get("blockSizeInBytes") {
            let valid = size
                .parse::<u64>()
                .is_ok_and(|n| (1..=104_857_600).contains(&n));
            if !valid {
                out.push(
                    Diagnostic::warning(
                        Code::ProviderConfig,
                        format!("blockSizeInBytes {size:?} is not between 1 and 104857600; the plugin will use its default"),
                    )
                    .at(self.value_at("blockSizeInBytes")),
                );
            }
        }
        // Without an account key or Entra ID, the plugin lists the account's keys through
        // ARM, which needs the resource group (and subscription, possibly from the
        // credential file: checked with the credential).
        if key_env.is_none()
            && use_aad != Some(true)
            && self.get("resourceGroup").is_none_or(str::is_empty)
        {
            out.push(
                Diagnostic::warning(
                    Code::ProviderConfig,
                    "`resourceGroup` is not set: the plugin can only find the account key through AZURE_RESOURCE_GROUP in the credential",
                )
                .at(self.at.clone())
                .help("set `resourceGroup`, or `storageAccountKeyEnvVar`, or `useAAD = \"true\"`"),
            );
        }
    }

    fn azure_vsl(&self, out: &mut Vec<Diagnostic>) {
        if let Some(timeout) = self.get("apiTimeout")
            && let Err(error) = parse_go_duration(timeout)
        {
            out.push(
                self.error(
                    "apiTimeout",
                    format!("`apiTimeout` is not a Go duration: {error}"),
                )
                .help("use units ns, us, ms, s, m, h, e.g. 2m"),
            );
        }
        self.boolean("incremental", out);
        if let Some(tags) = self.get("tags") {
            let bad = tags
                .split(',')
                .find(|pair| pair.split_once('=').is_none_or(|(key, _)| key.is_empty()));
            if let Some(pair) = bad {
                out.push(
                    self.error("tags", format!("tag {pair:?} is not key=value"))
                        .help("write tags as k1=v1,k2=v2"),
                );
            }
        }
    }

    fn gcp_vsl(&self, out: &mut Vec<Diagnostic>) {
        if let Some(kind) = self.get("snapshotType")
            && !kind.eq_ignore_ascii_case("STANDARD")
            && !kind.eq_ignore_ascii_case("ARCHIVE")
        {
            out.push(
                self.error(
                    "snapshotType",
                    format!("unsupported snapshot type {kind:?}"),
                )
                .help("use STANDARD or ARCHIVE"),
            );
        }
    }

    fn portworx(&self, out: &mut Vec<Diagnostic>) {
        match self.get("type") {
            None | Some("local") => {}
            Some("cloud") => {
                if self.get("credId").is_none() {
                    out.push(
                        Diagnostic::warning(
                            Code::ProviderConfig,
                            "a Portworx cloud snapshot location usually names its cloud credential with `credId`",
                        )
                        .at(self.at.clone()),
                    );
                }
            }
            Some(other) => out.push(
                self.error(
                    "type",
                    format!("Portworx snapshot type {other:?} is not supported"),
                )
                .help("use \"local\" or \"cloud\""),
            ),
        }
    }
}

/// Just enough of a URL to check what the plugins check: an http(s) scheme, a host,
/// and whether a path follows.
struct Url {
    has_path: bool,
}

impl Url {
    fn parse(text: &str) -> Option<Url> {
        let rest = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))?;
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(index) => (&rest[..index], &rest[index..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains(char::is_whitespace) {
            return None;
        }
        Some(Url {
            has_path: !path.is_empty() && path != "/",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(provider: &str, kind: LocationKind, pairs: &[(&str, &str)]) -> Vec<Diagnostic> {
        let config = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let at = Pointer::value(["backup_locations", "x"]);
        let mut out = Vec::new();
        check_config(
            &LocationConfig {
                provider,
                kind,
                config: &config,
                has_credential: true,
                at: &at,
            },
            &mut out,
        );
        out
    }

    fn errors(diagnostics: &[Diagnostic]) -> Vec<&str> {
        diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.message.as_str())
            .collect()
    }

    #[test]
    fn aws() {
        assert!(
            errors(&check(
                "aws",
                LocationKind::Backup,
                &[("region", "us-east-1")]
            ))
            .is_empty()
        );
        let found = check("aws", LocationKind::Backup, &[("regoin", "x")]);
        assert_eq!(found[0].help.as_deref(), Some("did you mean `region`?"));
        assert_eq!(
            errors(&check(
                "aws",
                LocationKind::Backup,
                &[("s3ForcePathStyle", "yes")]
            ))
            .len(),
            1
        );
        assert_eq!(
            errors(&check(
                "aws",
                LocationKind::Backup,
                &[("s3Url", "minio:9000")]
            ))
            .len(),
            1
        );
        assert_eq!(
            errors(&check(
                "aws",
                LocationKind::Backup,
                &[("s3Url", "http://m:9000/bucket"), ("region", "r")]
            ))
            .len(),
            1
        );
        assert!(
            errors(&check(
                "aws",
                LocationKind::Backup,
                &[("s3Url", "http://m:9000/"), ("region", "r")]
            ))
            .is_empty()
        );
        assert_eq!(
            errors(&check("aws", LocationKind::Backup, &[("tagging", "a=b")])).len(),
            1
        );
        assert!(
            errors(&check(
                "aws",
                LocationKind::Backup,
                &[("tagging", "a=b&c=d")]
            ))
            .is_empty()
        );
        assert_eq!(
            errors(&check("aws", LocationKind::Backup, &[("bucket", "b")])).len(),
            1
        );
        assert_eq!(
            errors(&check(
                "aws",
                LocationKind::Backup,
                &[("kmsKeyId", "k"), ("customerKeyEncryptionFile", "f")]
            ))
            .len(),
            1
        );
        assert_eq!(errors(&check("aws", LocationKind::Snapshot, &[])).len(), 1);
        assert_eq!(
            errors(&check(
                "aws",
                LocationKind::Snapshot,
                &[("region", "r"), ("s3Url", "http://x")]
            ))
            .len(),
            1
        );
    }

    #[test]
    fn azure_gcp_portworx() {
        assert_eq!(errors(&check("azure", LocationKind::Backup, &[])).len(), 1);
        assert!(
            errors(&check(
                "azure",
                LocationKind::Backup,
                &[("storageAccount", "a"), ("resourceGroup", "g")]
            ))
            .is_empty()
        );
        assert_eq!(
            errors(&check(
                "azure",
                LocationKind::Snapshot,
                &[("activeDirectoryAuthorityURI", "x")]
            ))
            .len(),
            1
        );
        assert_eq!(
            errors(&check(
                "azure",
                LocationKind::Snapshot,
                &[("apiTimeout", "2 minutes")]
            ))
            .len(),
            1
        );
        assert_eq!(
            errors(&check(
                "gcp",
                LocationKind::Snapshot,
                &[("snapshotType", "archive")]
            ))
            .len(),
            0
        );
        assert_eq!(
            errors(&check(
                "gcp",
                LocationKind::Snapshot,
                &[("snapshotType", "cold")]
            ))
            .len(),
            1
        );
        assert_eq!(
            errors(&check(
                "portworx.io/portworx",
                LocationKind::Snapshot,
                &[("type", "cloud"), ("anything", "x")]
            ))
            .len(),
            0
        );
        assert_eq!(
            errors(&check(
                "portworx.io/portworx",
                LocationKind::Snapshot,
                &[("type", "remote")]
            ))
            .len(),
            1
        );
        assert_eq!(
            errors(&check("portworx", LocationKind::Snapshot, &[])).len(),
            1
        );
        assert!(
            errors(&check(
                "example.com/other",
                LocationKind::Backup,
                &[("anything", "x")]
            ))
            .is_empty()
        );
    }
}
