//! Credential contents in each provider's format (velero-semantics.md §5): an AWS
//! shared-credentials INI with the profile the location names, an Azure dotenv file
//! with the keys the plugin needs, a GCP JSON key.
//!
//! Problems are described by line numbers and key names only: nothing here ever puts
//! a credential's content into a message.

use crate::secret::formats::{AwsFile, AzureFile, Credential, GcpKey};

use crate::velero::Plugin;

/// What a location needs from its credential.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// An AWS profile, `default` unless `config.profile` names another.
    AwsProfile(String),
    /// Azure keys that must be present and non-empty.
    AzureKeys(Vec<String>),
    Gcp,
}

impl Need {
    pub fn plugin(&self) -> Plugin {
        match self {
            Need::AwsProfile(_) => Plugin::Aws,
            Need::AzureKeys(_) => Plugin::Azure,
            Need::Gcp => Plugin::Gcp,
        }
    }
}

/// Checks `credential` against `need`; each problem is a sentence without secret
/// content.
pub fn check_format(credential: &Credential, need: &Need) -> Vec<String> {
    let problems = match need {
        Need::AwsProfile(profile) => credential.aws().map(|file| check_aws(file, profile)),
        Need::AzureKeys(required) => credential.azure().map(|file| check_azure(file, required)),
        Need::Gcp => credential.gcp().map(check_gcp),
    };
    problems.unwrap_or_else(|error| vec![error.to_string()])
}

fn check_aws(file: &AwsFile, profile: &str) -> Vec<String> {
    let Some(properties) = file.profile(profile) else {
        // The other sections' names are the file's content: say where they are, not
        // what they are called.
        let lines: Vec<String> = file.header_lines().iter().map(usize::to_string).collect();
        let found = match lines.as_slice() {
            [] => "the file has no sections".to_string(),
            [one] => format!("the file's sections start on line {one}"),
            [first @ .., last] => {
                format!(
                    "the file's sections start on lines {} and {last}",
                    first.join(", ")
                )
            }
        };
        return vec![format!(
            "the AWS credentials have no [{profile}] profile ({found})"
        )];
    };
    let has = |key: &str| properties.has(key);
    let mut problems = Vec::new();
    let key_id = has("aws_access_key_id");
    let secret = has("aws_secret_access_key");
    if key_id != secret {
        let missing = if key_id {
            "aws_secret_access_key"
        } else {
            "aws_access_key_id"
        };
        problems.push(format!("profile [{profile}] has no {missing}"));
    }
    let other_sources = [
        "role_arn",
        "credential_process",
        "sso_session",
        "sso_start_url",
        "web_identity_token_file",
        "credential_source",
    ];
    if !key_id && !secret && !other_sources.iter().any(|key| has(key)) {
        problems.push(format!(
            "profile [{profile}] holds no credentials: set aws_access_key_id and aws_secret_access_key, or role_arn"
        ));
    }
    problems
}

const AZURE_KEYS: &[&str] = &[
    "AZURE_SUBSCRIPTION_ID",
    "AZURE_RESOURCE_GROUP",
    "AZURE_CLOUD_NAME",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN",
    "AZURE_ADDITIONALLY_ALLOWED_TENANTS",
    "AZURE_STORAGE_ACCOUNT_ACCESS_KEY",
];

/// Keys and values of an Azure credential file. The values stay here: only key names
/// and whether a value is set leave this module.
fn check_azure(file: &AzureFile, required: &[String]) -> Vec<String> {
    let has = |key: &str| file.has(key);
    let mut problems = Vec::new();
    for key in required {
        if !has(key) {
            problems.push(format!("the Azure credentials have no {key}"));
        }
    }
    let uses_service_principal = has("AZURE_CLIENT_SECRET")
        || has("AZURE_CLIENT_CERTIFICATE")
        || has("AZURE_CLIENT_CERTIFICATE_PATH");
    if uses_service_principal {
        for key in ["AZURE_TENANT_ID", "AZURE_CLIENT_ID"] {
            if !has(key) && !required.iter().any(|r| r == key) {
                problems.push(format!(
                    "{key} is required with a client secret or certificate"
                ));
            }
        }
    }
    let known_clouds = [
        "",
        "azurecloud",
        "azurepubliccloud",
        "azurechinacloud",
        "azureusgovernment",
        "azureusgovernmentcloud",
    ];
    let unknown_cloud = file.get("AZURE_CLOUD_NAME").is_some_and(|value| {
        let name = String::from_utf8_lossy(value.expose()).to_ascii_lowercase();
        !known_clouds.contains(&name.as_str())
    });
    if unknown_cloud {
        problems.push(
            "AZURE_CLOUD_NAME is not a cloud the plugin knows: use AzurePublicCloud, AzureChinaCloud or AzureUSGovernmentCloud"
                .to_string(),
        );
    }
    for key in file.keys() {
        if key.starts_with("AZURE_")
            && !AZURE_KEYS.contains(&key)
            && !required.iter().any(|r| r == key)
        {
            match crate::diagnostic::nearest(key, AZURE_KEYS.iter().copied()) {
                Some(suggestion) => problems.push(format!(
                    "the Azure plugin does not read {key}; did you mean {suggestion}?"
                )),
                None if key == "AZURE_USERNAME" || key == "AZURE_PASSWORD" => problems.push(
                    format!("{key} is no longer supported by the Azure plugin; use a service principal or workload identity"),
                ),
                None => {}
            }
        }
    }
    problems
}

fn check_gcp(key: &GcpKey) -> Vec<String> {
    let text_field = |field: &str| key.has_text(field);
    match key.kind() {
        Some("service_account") => {
            let mut problems = Vec::new();
            if !text_field("client_email") {
                problems.push(
                    "the service account key does not contain an email (client_email)".to_string(),
                );
            }
            if !text_field("private_key") {
                problems.push(
                    "the service account key does not contain a private key (private_key)"
                        .to_string(),
                );
            }
            problems
        }
        Some("external_account" | "authorized_user" | "impersonated_service_account") => Vec::new(),
        // The value is the file's content; name what is accepted instead.
        Some(_) => vec![
            "unsupported GCP credential type: \"type\" is none of service_account, external_account, authorized_user, impersonated_service_account".to_string(),
        ],
        None => vec!["not a GCP JSON key: it has no \"type\"".to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, need: Need) -> Vec<String> {
        let value = crate::secret::SecretValue::new(text.as_bytes().to_vec());
        check_format(&Credential::read(value), &need)
    }

    const CANARY: &str = "CANARYSECRET0123456789";

    #[test]
    fn aws_profiles() {
        let good =
            format!("[default]\naws_access_key_id = AKIA\naws_secret_access_key = {CANARY}\n");
        assert!(check(&good, Need::AwsProfile("default".into())).is_empty());
        let problems = check(&good, Need::AwsProfile("backup".into()));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("[backup]") && problems[0].contains("line 1"));
        let half = format!("[backup]\naws_secret_access_key = {CANARY}\n");
        let problems = check(&half, Need::AwsProfile("backup".into()));
        assert!(problems[0].contains("aws_access_key_id"));
        assert!(!problems.concat().contains(CANARY));
        let role = "[profile x]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = y\n";
        assert!(check(role, Need::AwsProfile("x".into())).is_empty());
        let syntax = format!("[default\n{CANARY}\n");
        let problems = check(&syntax, Need::AwsProfile("default".into()));
        assert_eq!(problems.len(), 1);
        assert!(!problems[0].contains(CANARY), "{}", problems[0]);
    }

    #[test]
    fn aws_problems_quote_no_content_and_count_lines_from_one() {
        // Profile names are the file's content: only the line numbers are shown.
        let other = format!("[{CANARY}]\naws_access_key_id = a\naws_secret_access_key = b\n");
        let problems = check(&other, Need::AwsProfile("backup".into()));
        assert_eq!(
            problems,
            ["the AWS credentials have no [backup] profile (the file's sections start on line 1)"]
        );
        let empty = check("", Need::AwsProfile("backup".into()));
        assert_eq!(
            empty,
            ["the AWS credentials have no [backup] profile (the file has no sections)"]
        );
        let syntax = format!("[default]\naws_access_key_id = a\n[{CANARY}\n");
        assert_eq!(
            check(&syntax, Need::AwsProfile("default".into())),
            ["not an AWS shared-credentials file: syntax error on line 3"]
        );
    }

    #[test]
    fn a_byte_order_mark_is_named_as_the_cause() {
        for (text, need) in [
            (
                "\u{feff}[default]\naws_access_key_id = a\naws_secret_access_key = b\n",
                Need::AwsProfile("default".to_string()),
            ),
            ("\u{feff}{\"type\": \"service_account\"}", Need::Gcp),
        ] {
            let problems = check(text, need);
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(problems[0].contains("byte-order mark"), "{problems:?}");
        }
    }

    #[test]
    fn gcp_types_are_not_quoted() {
        let problems = check(&format!(r#"{{"type":"{CANARY}"}}"#), Need::Gcp);
        assert_eq!(problems.len(), 1);
        assert!(!problems[0].contains(CANARY), "{}", problems[0]);
    }

    #[test]
    fn azure_keys() {
        let need = Need::AzureKeys(vec![
            "AZURE_SUBSCRIPTION_ID".into(),
            "AZURE_RESOURCE_GROUP".into(),
        ]);
        let good = format!(
            "AZURE_SUBSCRIPTION_ID=s\nAZURE_RESOURCE_GROUP=g\nAZURE_TENANT_ID=t\nAZURE_CLIENT_ID=c\nAZURE_CLIENT_SECRET={CANARY}\n"
        );
        assert!(check(&good, need.clone()).is_empty());
        let missing = format!("AZURE_SUBSCRIPTION_ID=s\nAZURE_CLIENT_SECRET={CANARY}\n");
        let problems = check(&missing, need.clone());
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(!problems.concat().contains(CANARY));
        let broken = format!("AZURE_SUBSCRIPTION_ID=s\n{CANARY}\n");
        let problems = check(&broken, need);
        assert_eq!(
            problems,
            vec!["not an Azure credentials file of KEY=VALUE lines: syntax error on line 2"]
        );
        let typo = check("AZURE_CLIENT_SECRT=x\n", Need::AzureKeys(vec![]));
        assert!(typo[0].contains("did you mean AZURE_CLIENT_SECRET"));
    }

    #[test]
    fn gcp_keys() {
        let good = format!(
            r#"{{"type":"service_account","client_email":"a@b","private_key":"{CANARY}"}}"#
        );
        assert!(check(&good, Need::Gcp).is_empty());
        let no_key = r#"{"type":"service_account","client_email":"a@b"}"#;
        assert_eq!(check(no_key, Need::Gcp).len(), 1);
        let broken = format!("{{\"private_key\": \"{CANARY}\"");
        let problems = check(&broken, Need::Gcp);
        assert!(problems[0].contains("invalid JSON") && !problems[0].contains(CANARY));
        assert!(check(r#"{"type":"external_account"}"#, Need::Gcp).is_empty());
    }
}
