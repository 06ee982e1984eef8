//! The rules that depend on which Velero runs (product contract §5a): a field that
//! version does not know, a behaviour it lacks. One function for both targets: the
//! version the file declares (`validate`, offline) and the version the cluster runs
//! (`plan`, when the file declares none).

use crate::config::model::Config;
use crate::diagnostic::{Code, Diagnostic, Pointer};
use crate::velero::version::{self, VeleroVersion};

/// Where the target version came from, said in each finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `[velero] version` in the file.
    Declared,
    /// Read from the cluster: the Deployment's image, or the server's report.
    Cluster(String),
}

impl Target {
    fn describe(&self, version: VeleroVersion) -> String {
        match self {
            Target::Declared => format!("this file targets Velero {version} ([velero] version)"),
            Target::Cluster(from) => format!("the cluster runs Velero {version} ({from})"),
        }
    }
}

/// `[velero] version` as written: a Velero version, one whose rules stowage knows.
pub fn declared(config: &Config, out: &mut Vec<Diagnostic>) -> Option<VeleroVersion> {
    let text = config.velero.version.as_deref()?;
    let at = Pointer::value(["velero", "version"]);
    let Some(parsed) = VeleroVersion::parse(text) else {
        out.push(
            Diagnostic::error(
                Code::VeleroVersion,
                format!("{text:?} is not a Velero version"),
            )
            .at(at)
            .help("write the release line, e.g. \"1.17\", or one patch, e.g. \"1.17.2\""),
        );
        return None;
    };
    if !parsed.is_known() {
        out.push(
            Diagnostic::warning(
                Code::VeleroVersion,
                format!(
                    "stowage knows the rules of Velero {} to {}; {parsed} is checked as the nearest of them",
                    version::OLDEST_KNOWN,
                    version::NEWEST_KNOWN
                ),
            )
            .at(at),
        );
    }
    Some(parsed)
}

/// Every rule of `version` the file breaks, each at its key.
pub fn rules(config: &Config, version: VeleroVersion, target: &Target) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (name, location) in &config.backup_locations {
        let at = Pointer::key(["backup_locations", name.as_str()]);
        if location.ca_cert_ref.is_some() && !version.has(version::CA_CERT_REF) {
            out.push(
                Diagnostic::error(
                    Code::VeleroVersion,
                    format!(
                        "`ca_cert_ref` (caCertRef) needs Velero {}; {}, which drops it and checks the location without its CA",
                        version::CA_CERT_REF.since,
                        target.describe(version)
                    ),
                )
                .at(at.child("ca_cert_ref").as_key())
                .label(format!("Velero {} and later", version::CA_CERT_REF.since))
                .help("give the bundle as `ca_cert_file` (caCert) for this Velero, or upgrade Velero"),
            );
        }
        let repository = format!("{}-{name}-kopia", config.velero.namespace);
        if repository.len() > 63 && !version.has(version::HASHED_REPOSITORY_NAMES) {
            out.push(
                Diagnostic::error(
                    Code::VeleroVersion,
                    format!(
                        "{} names this location's kopia repository maintenance `{repository}` ({} characters, over 63): its maintenance jobs fail until Velero {} (velero#9328)",
                        target.describe(version),
                        repository.len(),
                        version::HASHED_REPOSITORY_NAMES.since
                    ),
                )
                .at(at.clone())
                .label("too long a name for this Velero")
                .help(format!(
                    "keep `<namespace>-<location>-kopia` within 63 characters (a location name of at most {} here), or upgrade Velero",
                    63usize.saturating_sub(config.velero.namespace.len() + "--kopia".len())
                )),
            );
        }
    }
    out
}

/// The resource policy ConfigMaps the schedules name (`policies`: name → data, as the
/// cluster holds them): a key `version` does not read fails every backup that uses
/// the policy (Velero decodes it strictly). Reported at the schedule's
/// `resource_policy`.
pub fn resource_policy_rules(
    config: &Config,
    version: VeleroVersion,
    target: &Target,
    policies: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (name, schedule) in &config.schedules {
        let Some(reference) = &schedule.template.resource_policy else {
            continue;
        };
        let Some(data) = policies.get(&reference.name) else {
            continue;
        };
        // Velero reads the ConfigMap's one value; a policy it cannot parse is its own
        // (and Velero's) problem, not a version's.
        let Some(text) = data.values().next() else {
            continue;
        };
        let Ok(policy) = serde_saphyr::from_str::<serde_json::Value>(text) else {
            continue;
        };
        for (key, introduced) in version::POLICY_KEYS {
            if policy.get(key).is_some() && !version.has(introduced) {
                out.push(
                    Diagnostic::error(
                        Code::VeleroVersion,
                        format!(
                            "the resource policy ConfigMap {} uses `{key}`, which needs Velero {}; {}, which fails every backup of `{name}` on it",
                            reference.name,
                            introduced.since,
                            target.describe(version)
                        ),
                    )
                    .at(Pointer::key(["schedules", name.as_str(), "resource_policy"]))
                    .label(format!("its policy needs Velero {}", introduced.since))
                    .help(format!("remove `{key}` from the policy for this Velero, or upgrade Velero")),
                );
            }
        }
    }
    out
}

/// A declared version that names another release than the cluster runs.
pub fn mismatch(declared: VeleroVersion, actual: VeleroVersion, from: &str) -> Option<Diagnostic> {
    (!declared.matches(actual)).then(|| {
        Diagnostic::error(
            Code::VeleroVersion,
            format!("the file targets Velero {declared}, but the cluster runs {actual} ({from})"),
        )
        .at(Pointer::value(["velero", "version"]))
        .label("not the cluster's Velero")
        .help(format!(
            "set `version = \"{}\"` once the file holds for it, or upgrade the cluster's Velero",
            actual.line()
        ))
    })
}
