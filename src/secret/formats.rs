//! The one reader of credentials in the providers' formats (velero-semantics.md §5): an
//! AWS shared-credentials INI, an Azure dotenv file, a GCP JSON key. The rules that
//! judge a credential (`validate::credentials`) and the bucket checks that sign in
//! with one (`buckets`) both read it here, so they cannot disagree on what a file says.
//!
//! Values stay [`SecretValue`]s; what is plain is structure only (section names and
//! the lines they start on, key names, a JSON key's `type`). Errors carry line
//! numbers, never a line.

use crate::secret::SecretValue;

/// Why a credential cannot be read in its provider's format. No variant holds content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the credential is not UTF-8 text")]
    NotUtf8,
    #[error(
        "the file starts with a byte-order mark (U+FEFF), which Velero's plugins read as part of its first line: save it as UTF-8 without one"
    )]
    ByteOrderMark,
    #[error("not an AWS shared-credentials file: syntax error on line {line}")]
    AwsSyntax { line: usize },
    #[error("not an Azure credentials file of KEY=VALUE lines: syntax error{}", line.map(|l| format!(" on line {l}")).unwrap_or_default())]
    AzureSyntax { line: Option<usize> },
    #[error("not a GCP JSON key: invalid JSON at line {line}, column {column}")]
    GcpJson { line: usize, column: usize },
    #[error("not a GCP JSON key: the file is not a JSON object")]
    GcpNotAnObject,
}

/// The text of a credential, as the plugins would read it.
pub fn text(value: &SecretValue) -> Result<&str, ReadError> {
    let text = std::str::from_utf8(value.expose()).map_err(|_| ReadError::NotUtf8)?;
    // The plugins' parsers would take the mark for part of the first line, and every
    // check after this would describe the symptom instead of the cause.
    if text.starts_with('\u{feff}') {
        return Err(ReadError::ByteOrderMark);
    }
    Ok(text)
}

fn secret(text: &str) -> SecretValue {
    SecretValue::new(text.as_bytes().to_vec())
}

/// A credential's content, read once — when it is loaded or fetched — in each
/// provider's format, so that every reader of it (the format rules, rendering, the
/// bucket checks) takes the same parsed value. Which format counts is the reader's
/// choice: the provider of the location that uses it.
#[derive(Debug, Clone)]
pub struct Credential {
    value: SecretValue,
    aws: Result<AwsFile, ReadError>,
    azure: Result<AzureFile, ReadError>,
    gcp: Result<GcpKey, ReadError>,
}

impl Credential {
    pub fn read(value: SecretValue) -> Credential {
        Credential {
            aws: AwsFile::read(&value),
            azure: AzureFile::read(&value),
            gcp: GcpKey::read(&value),
            value,
        }
    }

    /// The bytes, as they go into the Secret.
    pub fn value(&self) -> &SecretValue {
        &self.value
    }

    pub fn aws(&self) -> Result<&AwsFile, &ReadError> {
        self.aws.as_ref()
    }

    pub fn azure(&self) -> Result<&AzureFile, &ReadError> {
        self.azure.as_ref()
    }

    pub fn gcp(&self) -> Result<&GcpKey, &ReadError> {
        self.gcp.as_ref()
    }

    /// Every value in the credential long enough to be secret, longest first: the
    /// words no message may contain. More is safer here, so besides what the formats
    /// read, each `key = value` or `key: value` line gives its value.
    pub fn words(&self) -> Vec<String> {
        let text = String::from_utf8_lossy(self.value.expose());
        let mut words = vec![text.trim().to_string()];
        let plain = |value: &SecretValue| String::from_utf8_lossy(value.expose()).into_owned();
        match &self.gcp {
            Ok(key) => key.strings(&mut words),
            Err(_) => {
                for line in text.lines() {
                    if let Some((_, value)) = line.split_once(['=', ':']) {
                        words.push(value.trim().trim_matches(['"', '\'']).to_string());
                    }
                }
            }
        }
        if let Ok(file) = &self.aws {
            let values = file.sections.iter().flat_map(|s| s.entries.iter());
            words.extend(values.map(|(_, value)| plain(value)));
        }
        if let Ok(file) = &self.azure {
            words.extend(file.entries.iter().map(|(_, value)| plain(value)));
        }
        // Multi-line values (PEM keys) may surface a line at a time.
        let lines: Vec<String> = words
            .iter()
            .flat_map(|w| w.lines().map(|l| l.trim().to_string()))
            .collect();
        words.extend(lines);
        words.retain(|w| w.len() >= 8);
        words.sort_by_key(|w| std::cmp::Reverse(w.len()));
        words.dedup();
        words
    }
}

/// Two credentials are the same when their bytes are: what was read from them follows.
impl PartialEq for Credential {
    fn eq(&self, other: &Credential) -> bool {
        self.value == other.value
    }
}

impl Eq for Credential {}

/// One `[section]` of an AWS shared-credentials file.
#[derive(Debug, Clone)]
pub struct AwsSection {
    pub name: String,
    entries: Vec<(String, SecretValue)>,
}

impl AwsSection {
    /// A key's value, keys compared trimmed and without case; `None` when empty.
    pub fn get(&self, key: &str) -> Option<&SecretValue> {
        self.entries
            .iter()
            .find(|(k, v)| k.eq_ignore_ascii_case(key) && !v.is_empty())
            .map(|(_, v)| v)
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

/// An AWS shared-credentials file, read as the AWS SDK for Go reads it: no quoting or
/// escapes, a profile as `[name]` or `[profile name]`.
#[derive(Debug, Clone)]
pub struct AwsFile {
    sections: Vec<AwsSection>,
    /// The line each section header is on, from one.
    header_lines: Vec<usize>,
}

impl AwsFile {
    pub fn read(value: &SecretValue) -> Result<AwsFile, ReadError> {
        let text = text(value)?;
        let options = ini::ParseOption {
            enabled_quote: false,
            enabled_escape: false,
            ..ini::ParseOption::default()
        };
        let parsed = ini::Ini::load_from_str_opt(text, options).map_err(|error| {
            // rust-ini counts lines from one already, and reads an unclosed section
            // header on to the end of the file: find that header's line here.
            let line = text
                .lines()
                .position(|line| {
                    let line = line.trim();
                    line.starts_with('[') && !line.contains(']')
                })
                .map_or(error.line, |index| index + 1);
            ReadError::AwsSyntax { line }
        })?;
        let sections = parsed
            .iter()
            .filter_map(|(name, properties)| {
                Some(AwsSection {
                    name: name?.trim().to_string(),
                    entries: properties
                        .iter()
                        .map(|(k, v)| (k.trim().to_string(), secret(v.trim())))
                        .collect(),
                })
            })
            .collect();
        let header_lines = text
            .lines()
            .enumerate()
            .filter(|(_, line)| line.trim_start().starts_with('['))
            .map(|(index, _)| index + 1)
            .collect();
        Ok(AwsFile {
            sections,
            header_lines,
        })
    }

    /// The profile `name`, as `[name]` or `[profile name]`.
    pub fn profile(&self, name: &str) -> Option<&AwsSection> {
        let prefixed = format!("profile {name}");
        self.sections
            .iter()
            .find(|s| s.name == name || s.name == prefixed)
    }

    /// The lines the section headers are on: where the sections are, without their
    /// names (which are the file's content).
    pub fn header_lines(&self) -> &[usize] {
        &self.header_lines
    }
}

/// An Azure credentials file of `KEY=VALUE` lines, as the plugin's dotenv reader takes
/// it; values trimmed.
#[derive(Debug, Clone)]
pub struct AzureFile {
    entries: Vec<(String, SecretValue)>,
}

impl AzureFile {
    pub fn read(value: &SecretValue) -> Result<AzureFile, ReadError> {
        let text = text(value)?;
        let mut entries = Vec::new();
        for item in dotenvy::from_read_iter(text.as_bytes()) {
            let Ok((key, value)) = item else {
                let line = text
                    .lines()
                    .position(|line| {
                        let line = line.trim();
                        !line.is_empty() && !line.starts_with('#') && !line.contains('=')
                    })
                    .map(|index| index + 1);
                return Err(ReadError::AzureSyntax { line });
            };
            entries.push((key, secret(value.trim())));
        }
        Ok(AzureFile { entries })
    }

    /// A key's value; `None` when absent or empty.
    pub fn get(&self, key: &str) -> Option<&SecretValue> {
        self.entries
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v)
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The keys, in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }
}

/// A GCP JSON key.
#[derive(Clone)]
pub struct GcpKey {
    fields: serde_json::Map<String, serde_json::Value>,
}

impl std::fmt::Debug for GcpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpKey")
            .field("type", &self.kind())
            .finish_non_exhaustive()
    }
}

impl GcpKey {
    pub fn read(value: &SecretValue) -> Result<GcpKey, ReadError> {
        let text = text(value)?;
        let parsed: serde_json::Value =
            serde_json::from_str(text).map_err(|error| ReadError::GcpJson {
                line: error.line(),
                column: error.column(),
            })?;
        match parsed {
            serde_json::Value::Object(fields) => Ok(GcpKey { fields }),
            _ => Err(ReadError::GcpNotAnObject),
        }
    }

    /// The credential's `type` (`service_account`, `external_account`, …).
    pub fn kind(&self) -> Option<&str> {
        self.fields.get("type").and_then(serde_json::Value::as_str)
    }

    /// Every string in the key, nested ones included.
    fn strings(&self, out: &mut Vec<String>) {
        fn collect(value: &serde_json::Value, out: &mut Vec<String>) {
            match value {
                serde_json::Value::String(text) => out.push(text.clone()),
                serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
                serde_json::Value::Object(map) => map.values().for_each(|v| collect(v, out)),
                _ => {}
            }
        }
        self.fields.values().for_each(|value| collect(value, out));
    }

    /// Whether `field` is a non-empty string.
    pub fn has_text(&self, field: &str) -> bool {
        self.fields
            .get(field)
            .and_then(serde_json::Value::as_str)
            .is_some_and(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> SecretValue {
        SecretValue::new(text.as_bytes().to_vec())
    }

    #[test]
    fn an_aws_profile_is_found_under_either_spelling() {
        let file = AwsFile::read(&value(
            "[default]\naws_access_key_id = A\n\n[profile backup]\nAWS_SECRET_ACCESS_KEY = S\n",
        ))
        .expect("reads");
        assert!(
            file.profile("default")
                .is_some_and(|p| p.has("aws_access_key_id"))
        );
        assert!(
            file.profile("backup")
                .is_some_and(|p| p.has("aws_secret_access_key"))
        );
        assert!(file.profile("other").is_none());
        assert_eq!(file.header_lines(), [1, 4]);
    }

    #[test]
    fn errors_name_lines_and_never_content() {
        let canary = "canary-AKIA-do-not-print";
        let broken = [
            AwsFile::read(&value(&format!("key = x\n[{canary}\n"))).map(|_| ()),
            AzureFile::read(&value(&format!("AZURE_X=1\n{canary}\n"))).map(|_| ()),
            GcpKey::read(&value(&format!("{{\"x\": {canary}}}"))).map(|_| ()),
        ];
        for result in broken {
            let error = result.expect_err("broken");
            assert!(!error.to_string().contains("canary"), "{error}");
            assert!(!format!("{error:?}").contains("canary"), "{error:?}");
        }
        let key = GcpKey::read(&value(&format!(
            "{{\"type\": \"service_account\", \"private_key\": \"{canary}\"}}"
        )))
        .expect("reads");
        assert!(!format!("{key:?}").contains("canary"));
        assert_eq!(
            AwsFile::read(&value("\u{feff}[default]\n")).map(|_| ()),
            Err(ReadError::ByteOrderMark)
        );
    }
}
