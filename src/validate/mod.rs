//! Every rule Velero enforces late, checked up front on a loaded file.
//!
//! `validate` is pure: it takes what the loader produced (the decoded model, the
//! materials it read, and which values it could not use) and returns every problem it
//! finds, each pointing into the file. It does no I/O, needs no cluster, and never stops
//! at the first problem.

pub mod credentials;
pub mod filters;
pub mod names;
pub mod providers;
pub mod versions;

use std::collections::HashMap;
use std::collections::{BTreeMap, BTreeSet};

use crate::config::load::{Loaded, Material, Materials};
use crate::config::{AccessMode, BackupLocation, Config, SUPPORTED_VERSIONS, Schedule};
use crate::diagnostic::{Code, Diagnostic, Pointer, nearest};
use crate::velero::INSTALL_SECRET;
use crate::velero::plugin::{Plugin, normalize};
use credentials::Need;
use providers::{LocationConfig, LocationKind};

/// Velero's own Secret for Kopia repository passwords; stowage must never write it.
const REPOSITORY_SECRET: &str = "velero-repo-credentials";
/// Velero puts a Schedule's name into a label value, so it is limited like one.
const MAX_SCHEDULE_NAME: usize = 63;

/// Checks a loaded file and the contents it points at; nothing when the file had no
/// usable model (its loader diagnostics say why).
pub fn validate(loaded: &Loaded) -> Vec<Diagnostic> {
    let Some(config) = &loaded.config else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let checker = Checker {
        config,
        materials: &loaded.materials,
        unusable: &loaded.unusable,
    };
    checker.version(&mut out);
    checker.velero(&mut out);
    checker.credentials(&mut out);
    checker.backup_locations(&mut out);
    checker.snapshot_locations(&mut out);
    checker.schedules(&mut out);
    checker.credential_formats(&mut out);
    if let Some(version) = versions::declared(config, &mut out) {
        out.extend(versions::rules(
            config,
            version,
            &versions::Target::Declared,
        ));
    }
    out
}

struct Checker<'a> {
    config: &'a Config,
    materials: &'a Materials,
    /// Values the loader reported and dropped; the model holds their defaults, so
    /// rules that read them would report mistakes the user did not make.
    unusable: &'a BTreeSet<Pointer>,
}

fn reference_error<'k>(
    kind: &str,
    name: &str,
    known: impl IntoIterator<Item = &'k String>,
    at: Pointer,
    table: &str,
) -> Diagnostic {
    let known: Vec<&str> = known.into_iter().map(String::as_str).collect();
    let diagnostic = Diagnostic::error(Code::Reference, format!("no {kind} named `{name}`"))
        .at(at)
        .label(format!("not declared under [{table}]"));
    match nearest(name, known.iter().copied()) {
        Some(suggestion) => diagnostic.help(format!("did you mean `{suggestion}`?")),
        None if known.is_empty() => diagnostic.help(format!("declare it as [{table}.{name}]")),
        None => diagnostic.help(format!("declared: {}", known.join(", "))),
    }
}

/// Whether copy `index` of a fanned-out schedule sets its own stagger.
fn has_own_stagger(schedule: &Schedule, index: usize) -> bool {
    schedule
        .storage_locations
        .as_ref()
        .and_then(|locations| locations.get(index))
        .and_then(|location| schedule.copy.get(location))
        .is_some_and(|copy| copy.stagger.is_some())
}

/// `at` is called only for a diagnostic: most durations are fine, and a pointer costs
/// allocations.
fn duration_check(
    value: Option<&String>,
    at: impl FnOnce() -> Pointer,
    out: &mut Vec<Diagnostic>,
) -> Option<i128> {
    let value = value?;
    match crate::velero::duration::parse_go_duration(value) {
        // Go parses "-24h"; no duration Velero takes means anything below zero.
        Ok(nanos) if nanos < 0 => {
            out.push(
                Diagnostic::error(Code::Duration, format!("{value:?} is negative"))
                    .at(at())
                    .label("below zero")
                    .help("durations here are periods and timeouts: give a positive one, or leave the key out for Velero's default"),
            );
            None
        }
        Ok(nanos) => Some(nanos),
        Err(problem) => {
            let mut diagnostic = Diagnostic::error(Code::Duration, problem)
                .at(at())
                .label("not a Go duration")
                .help("Velero accepts only Go durations: units ns, us, ms, s, m, h (e.g. \"720h\" for 30 days)");
            if let Some(hint) = day_hint(value) {
                diagnostic = diagnostic.help(hint);
            }
            out.push(diagnostic);
            None
        }
    }
}

/// "30d" → "use \"720h\" for 30 days".
fn day_hint(value: &str) -> Option<String> {
    let (number, unit) = value.split_at(value.find(|c: char| !c.is_ascii_digit())?);
    let number: u64 = number.parse().ok()?;
    let hours = match unit {
        "d" => number * 24,
        "w" => number * 24 * 7,
        "y" => number * 24 * 365,
        _ => return None,
    };
    Some(format!(
        "Go durations have no days: write \"{hours}h\" for {value}"
    ))
}

/// What the location's provider refuses in a bucket (Azure: container) name, when it
/// has rules stowage knows; `None` when the name is acceptable. A name with `/` is
/// left to the prefix rule. An S3-compatible endpoint (`s3Url`) may allow other names.
fn bucket_name_problem(location: &BackupLocation, bucket: &str) -> Option<String> {
    if bucket.contains('/') {
        return None;
    }
    let (what, allowed, max): (&str, fn(char) -> bool, usize) = match Plugin::of(
        &location.provider,
    )? {
        Plugin::Aws if !location.config.contains_key("s3Url") => (
            "S3 bucket names are 3-63 lowercase letters, digits, '.' and '-'",
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-',
            63,
        ),
        Plugin::Gcp => (
            "Cloud Storage bucket names are 3-63 lowercase letters, digits, '-', '_' and '.' (up to 222 with dots)",
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'),
            if bucket.contains('.') { 222 } else { 63 },
        ),
        Plugin::Azure => (
            "Azure container names are 3-63 lowercase letters, digits and '-'",
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
            63,
        ),
        _ => return None,
    };
    let ends_ok = bucket
        .chars()
        .next()
        .zip(bucket.chars().last())
        .is_some_and(|(first, last)| first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric());
    let fits = (3..=max).contains(&bucket.len()) && bucket.chars().all(allowed) && ends_ok;
    let azure_double_dash =
        matches!(Plugin::of(&location.provider), Some(Plugin::Azure)) && bucket.contains("--");
    (!fits || azure_double_dash).then(|| {
        format!(
            "is refused by the provider: {what}, starting and ending with a letter or digit{}",
            if azure_double_dash {
                ", without '--'"
            } else {
                ""
            }
        )
    })
}

fn name_check(
    name: &str,
    at: Pointer,
    what: &str,
    check: fn(&str) -> Result<(), String>,
    out: &mut Vec<Diagnostic>,
) {
    if let Err(problem) = check(name) {
        out.push(
            Diagnostic::error(
                Code::Name,
                format!("{what} {name:?} is not a valid name: {problem}"),
            )
            .at(at)
            .label("invalid Kubernetes name"),
        );
    }
}

impl Checker<'_> {
    fn usable(&self, path: &[&str]) -> bool {
        self.unusable.is_empty()
            || !self
                .unusable
                .contains(&Pointer::value(path.iter().copied()))
    }

    /// A location's `credential` must name a declared credential.
    fn credential_reference(
        &self,
        credential: Option<&String>,
        at: &Pointer,
        out: &mut Vec<Diagnostic>,
    ) {
        if let Some(credential) = credential
            && !self.config.credentials.contains_key(credential)
        {
            out.push(reference_error(
                "credential",
                credential,
                self.config.credentials.keys(),
                at.child("credential"),
                "credentials",
            ));
        }
    }

    fn version(&self, out: &mut Vec<Diagnostic>) {
        let version = self.config.version;
        if !SUPPORTED_VERSIONS.contains(&version) {
            out.push(
                Diagnostic::error(
                    Code::Version,
                    format!("file format version {version} is not supported"),
                )
                .at(Pointer::value(["version"]))
                .label("unsupported version")
                .help("this stowage reads version 1"),
            );
        }
    }

    fn velero(&self, out: &mut Vec<Diagnostic>) {
        let velero = &self.config.velero;
        let at = Pointer::value(["velero"]);
        name_check(
            &velero.namespace,
            at.child("namespace"),
            "namespace",
            names::check_label_name,
            out,
        );
        name_check(
            &velero.deployment,
            at.child("deployment"),
            "deployment",
            names::check_subdomain,
            out,
        );
        if velero.owner.is_empty() {
            out.push(
                Diagnostic::error(Code::Name, "the owner must not be empty").at(at.child("owner")),
            );
        } else {
            name_check(
                &velero.owner,
                at.child("owner"),
                "owner",
                names::check_label_value,
                out,
            );
        }
        if velero.default_location_owner.as_deref() == Some("") {
            out.push(
                Diagnostic::error(Code::Name, "the default location's owner must not be empty")
                    .at(at.child("default_location_owner")),
            );
        } else if let Some(other) = &velero.default_location_owner {
            name_check(
                other,
                at.child("default_location_owner"),
                "owner",
                names::check_label_value,
                out,
            );
        }
        for (provider, vsl_name) in &velero.default_volume_snapshot_locations {
            let entry_at = at
                .child("default_volume_snapshot_locations")
                .child(provider.as_str());
            match self.config.snapshot_locations.get(vsl_name) {
                None => out.push(reference_error(
                    "snapshot location",
                    vsl_name,
                    self.config.snapshot_locations.keys(),
                    entry_at,
                    "snapshot_locations",
                )),
                Some(vsl) if vsl.provider != *provider => out.push(
                    Diagnostic::error(
                        Code::Reference,
                        format!(
                            "`{vsl_name}` has provider `{}`, but this default is for `{provider}`",
                            vsl.provider
                        ),
                    )
                    .at(entry_at.as_key())
                    .related(
                        Pointer::value(["snapshot_locations", vsl_name.as_str(), "provider"]),
                        "the location's provider",
                    )
                    .help(format!(
                        "Velero compares provider names as written: use `\"{}\" = \"{vsl_name}\"`",
                        vsl.provider
                    )),
                ),
                Some(_) => {}
            }
        }
    }

    fn credentials(&self, out: &mut Vec<Diagnostic>) {
        self.secret_sizes(out);
        let mut seen: BTreeMap<(&str, &str), &str> = BTreeMap::new();
        for (name, credential) in &self.config.credentials {
            let at = Pointer::value(["credentials", name.as_str()]);
            let secret = credential.secret_name(name);
            let key = credential.secret_key();
            let secret_at = if credential.secret.is_some() {
                at.child("secret")
            } else {
                at.clone().as_key()
            };
            name_check(
                secret,
                secret_at.clone(),
                "secret",
                names::check_subdomain,
                out,
            );
            if let Err(problem) = names::check_secret_key(key) {
                out.push(
                    Diagnostic::error(
                        Code::Name,
                        format!("secret key {key:?} is not valid: {problem}"),
                    )
                    .at(at.child("key")),
                );
            }
            if secret == REPOSITORY_SECRET {
                out.push(
                    Diagnostic::error(
                        Code::NameCollision,
                        format!("`{REPOSITORY_SECRET}` is Velero's own Secret for repository passwords"),
                    )
                    .at(secret_at.clone())
                    .help("store credentials in another Secret; overwriting this one locks Velero out of its Kopia repositories"),
                );
            }
            if let Some(first) = seen.insert((secret, key), name) {
                out.push(
                    Diagnostic::error(
                        Code::NameCollision,
                        format!("credentials `{first}` and `{name}` both write key `{key}` of Secret `{secret}`"),
                    )
                    .at(at.clone().as_key())
                    .related(Pointer::key(["credentials", first]), "first declared here")
                    .help("give one of them another `key` or `secret`"),
                );
            }
            let sources: Vec<&str> = [
                ("file", credential.file.is_some()),
                ("env", credential.env.is_some()),
                ("external", credential.external.is_some()),
            ]
            .into_iter()
            .filter(|(_, set)| *set)
            .map(|(source, _)| source)
            .collect();
            if credential.external == Some(false) && sources.len() == 1 {
                out.push(
                    Diagnostic::error(
                        Code::CredentialSource,
                        format!("credential `{name}` has no source: `external = false` alone says nothing"),
                    )
                    .at(at.child("external"))
                    .help("set `file` or `env`, or `external = true` if the Secret is managed elsewhere"),
                );
                continue;
            }
            match sources.len() {
                1 => {}
                0 => out.push(
                    Diagnostic::error(
                        Code::CredentialSource,
                        format!("credential `{name}` has no source"),
                    )
                    .at(at.clone().as_key())
                    .help("set exactly one of `file`, `env` or `external = true`"),
                ),
                _ => out.push(
                    Diagnostic::error(
                        Code::CredentialSource,
                        format!(
                            "credential `{name}` sets {}: exactly one source is allowed",
                            sources.join(" and ")
                        ),
                    )
                    .at(at.child(sources[1]).as_key())
                    .related(at.child(sources[0]).as_key(), "first source")
                    .help("keep exactly one of `file`, `env` or `external = true`"),
                ),
            }
            if let (Some(Material::Undecryptable(error)), Some(file)) =
                (self.materials.credentials.get(name), &credential.file)
            {
                out.push(
                    Diagnostic::error(
                        Code::Sops,
                        format!("cannot decrypt {}: {error}", file.display()),
                    )
                    .at(at.child("file"))
                    .label("SOPS file")
                    .help(error.help()),
                );
            }
            if self.materials.committed_plaintext.contains(name)
                && let Some(file) = &credential.file
            {
                out.push(
                    Diagnostic::warning(
                        Code::PlaintextCredential,
                        format!(
                            "{} holds credential `{name}` in plaintext, and git would commit it",
                            file.display()
                        ),
                    )
                    .at(at.child("file"))
                    .label("plaintext")
                    .help(format!(
                        "encrypt it with `sops encrypt --age <recipient> --in-place {}` (stowage decrypts it), or add it to .gitignore",
                        file.display()
                    )),
                );
            }
            if let Some(Material::Missing(reason)) = self.materials.credentials.get(name) {
                let source_at = if credential.file.is_some() {
                    at.child("file")
                } else {
                    at.child("env")
                };
                out.push(
                    Diagnostic::error(Code::CredentialSource, reason.clone())
                        .at(source_at)
                        .label("cannot be read")
                        .help("paths are relative to the directory of the stowage file"),
                );
            }
        }
    }

    /// A Secret holds at most 1 MiB in all: credentials that share one must fit
    /// together, or the API server refuses the Secret and Velero never sees any.
    fn secret_sizes(&self, out: &mut Vec<Diagnostic>) {
        let mut by_secret: BTreeMap<&str, Vec<(&str, usize)>> = BTreeMap::new();
        for (name, credential) in &self.config.credentials {
            if let Some(Material::Value(value)) = self.materials.credentials.get(name) {
                by_secret
                    .entry(credential.secret_name(name))
                    .or_default()
                    .push((name.as_str(), value.value().len()));
            }
        }
        for (secret, credentials) in by_secret {
            let total: usize = credentials.iter().map(|(_, size)| size).sum();
            if total as u64 <= crate::config::load::SECRET_LIMIT {
                continue;
            }
            let (largest, _) = credentials
                .iter()
                .max_by_key(|(_, size)| *size)
                .copied()
                .unwrap_or(("", 0));
            let names: Vec<String> = credentials.iter().map(|(n, _)| format!("`{n}`")).collect();
            out.push(
                Diagnostic::error(
                    Code::CredentialSource,
                    format!(
                        "Secret `{secret}` would hold {total} bytes ({}): a Secret holds at most 1 MiB",
                        names.join(", ")
                    ),
                )
                .at(Pointer::key(["credentials", largest]))
                .help("give the largest credentials Secrets of their own (`secret = \"...\"`)"),
            );
        }
    }

    fn backup_locations(&self, out: &mut Vec<Diagnostic>) {
        let mut defaults = Vec::new();
        for (name, location) in &self.config.backup_locations {
            let at = Pointer::value(["backup_locations", name.as_str()]);
            name_check(
                name,
                at.clone().as_key(),
                "backup location",
                names::check_subdomain,
                out,
            );
            if location.default {
                defaults.push(name.as_str());
            }
            self.bucket(location, &at, out);
            self.credential_reference(location.credential.as_ref(), &at, out);
            for field in ["backup_sync_period", "validation_frequency"] {
                let value = match field {
                    "backup_sync_period" => location.backup_sync_period.as_ref(),
                    _ => location.validation_frequency.as_ref(),
                };
                if let Some(nanos) = duration_check(value, || at.child(field), out)
                    && nanos < 0
                {
                    out.push(
                        Diagnostic::warning(
                            Code::Duration,
                            format!(
                                "a negative `{field}` makes Velero fall back to its server default"
                            ),
                        )
                        .at(at.child(field))
                        .help("use \"0s\" to disable, or a positive duration"),
                    );
                }
            }
            self.ca_cert(name, location, &at, out);
            filters::check_labels(&location.labels, &at.child("labels"), out);
            providers::check_config(
                &LocationConfig {
                    provider: &location.provider,
                    kind: LocationKind::Backup,
                    config: &location.config,
                    has_credential: location.credential.is_some(),
                    at: &at,
                },
                out,
            );
            let kopia_ready = matches!(
                Plugin::of(&location.provider),
                Some(Plugin::Aws | Plugin::Azure | Plugin::Gcp)
            ) || normalize(&location.provider) == "velero.io/fs"
                || location.config.contains_key("s3Url");
            if !kopia_ready && Plugin::of(&location.provider) != Some(Plugin::Portworx) {
                out.push(
                    Diagnostic::warning(
                        Code::ProviderConfig,
                        format!(
                            "file-system backups and the data mover cannot use provider `{}`",
                            location.provider
                        ),
                    )
                    .at(at.child("provider"))
                    .help("Kopia repositories need aws, azure, gcp, or an S3-compatible store with `s3Url` in config"),
                );
            }
        }
        let every_default_known = self
            .config
            .backup_locations
            .keys()
            .all(|name| self.usable(&["backup_locations", name, "default"]));
        if every_default_known {
            self.defaults(&defaults, out);
        }
        self.prefix_overlaps(out);
    }

    fn bucket(&self, location: &BackupLocation, at: &Pointer, out: &mut Vec<Diagnostic>) {
        let bucket = location.bucket.trim_matches('/');
        if bucket.is_empty() {
            out.push(
                Diagnostic::error(Code::Bucket, "the bucket name must not be empty")
                    .at(at.child("bucket")),
            );
        } else if let Some(problem) = bucket_name_problem(location, bucket) {
            out.push(
                Diagnostic::error(Code::Bucket, format!("bucket name {bucket:?} {problem}"))
                    .at(at.child("bucket"))
                    .label("the provider refuses this name")
                    .help("use the bucket's (container's) name exactly as the provider shows it"),
            );
        } else if bucket.contains('/') {
            let (head, tail) = bucket.split_once('/').unwrap_or((bucket, ""));
            out.push(
                Diagnostic::error(
                    Code::Bucket,
                    format!("bucket name {:?} must not contain '/'", location.bucket),
                )
                .at(at.child("bucket"))
                .label("contains '/'")
                .help(format!(
                    "put the path in `prefix`: bucket = {head:?}, prefix = {tail:?}"
                )),
            );
        }
    }

    fn ca_cert(
        &self,
        name: &str,
        location: &BackupLocation,
        at: &Pointer,
        out: &mut Vec<Diagnostic>,
    ) {
        if location.ca_cert_file.is_some() && location.ca_cert_ref.is_some() {
            out.push(
                Diagnostic::error(
                    Code::CaCert,
                    "`ca_cert_file` and `ca_cert_ref` cannot both be set",
                )
                .at(at.child("ca_cert_ref").as_key())
                .related(at.child("ca_cert_file").as_key(), "also set here")
                .help("Velero refuses a location with both caCert and caCertRef; keep one"),
            );
        }
        if let Some(reference) = &location.ca_cert_ref {
            let ref_at = at.child("ca_cert_ref");
            name_check(
                &reference.secret,
                ref_at.child("secret"),
                "secret",
                names::check_subdomain,
                out,
            );
            if let Err(problem) = names::check_secret_key(&reference.key) {
                out.push(
                    Diagnostic::error(
                        Code::Name,
                        format!("secret key {:?} is not valid: {problem}", reference.key),
                    )
                    .at(ref_at.child("key")),
                );
            }
        }
        match self.materials.ca_certs.get(name) {
            Some(Err(reason)) => out.push(
                Diagnostic::error(Code::CaCert, reason.clone())
                    .at(at.child("ca_cert_file"))
                    .label("cannot be read")
                    .help("paths are relative to the directory of the stowage file"),
            ),
            Some(Ok(contents)) => {
                let text = String::from_utf8_lossy(contents);
                if !text.contains("-----BEGIN CERTIFICATE-----") {
                    out.push(
                        Diagnostic::error(Code::CaCert, "the CA file holds no PEM certificate")
                            .at(at.child("ca_cert_file"))
                            .help("give a PEM bundle with -----BEGIN CERTIFICATE----- blocks"),
                    );
                }
            }
            None => {}
        }
    }

    /// `rpo`: a Go duration the schedule can meet. Each copy's newest backup can be as
    /// old as the longest gap between runs of its cron plus the copy's stagger (its
    /// first backup of a run starts that much later), so an objective shorter than that
    /// fails on schedule, not by accident.
    fn recovery_point(
        &self,
        name: &str,
        schedule: &Schedule,
        at: &Pointer,
        out: &mut Vec<Diagnostic>,
    ) {
        let Some(written) = &schedule.rpo else {
            return;
        };
        let rpo_at = at.child("rpo");
        let Some(nanos) = duration_check(Some(written), || rpo_at.clone(), out) else {
            return;
        };
        if nanos <= 0 {
            out.push(
                Diagnostic::error(
                    Code::Rpo,
                    format!("a recovery point objective must be longer than zero, not {written}"),
                )
                .at(rpo_at),
            );
            return;
        }
        let rpo = chrono::Duration::nanoseconds(i64::try_from(nanos).unwrap_or(i64::MAX));
        if crate::velero::cron::check_cron(&schedule.cron).is_err() {
            return;
        }
        let Some(gap) = crate::velero::cron::longest_gap(&schedule.cron) else {
            return;
        };
        let last_shift = chrono::Duration::from_std(schedule.last_shift()).unwrap_or_default();
        let needed = gap + last_shift;
        if rpo < needed {
            let shift = if last_shift > chrono::Duration::zero() {
                format!(
                    " plus the last copy's stagger ({})",
                    crate::velero::duration::approximate(last_shift)
                )
            } else {
                String::new()
            };
            out.push(
                Diagnostic::error(
                    Code::Rpo,
                    format!(
                        "rpo {written} cannot be met by `{name}`: its cron {:?} leaves up to {} between backups{shift}",
                        schedule.cron,
                        crate::velero::duration::approximate(gap)
                    ),
                )
                .at(rpo_at)
                .label("shorter than the schedule allows")
                .help(format!(
                    "set rpo to at least {}, or back up more often",
                    crate::velero::duration::approximate(needed)
                )),
            );
        }
    }

    /// A drill's cron and durations, and what its namespace prefix makes of the
    /// namespaces the schedule names (wildcards are checked when the drill runs).
    fn drill(
        &self,
        schedule: &Schedule,
        drill: &crate::config::model::Drill,
        at: &Pointer,
        out: &mut Vec<Diagnostic>,
    ) {
        let cron_at = at.child("cron");
        match crate::velero::cron::check_cron(&drill.cron) {
            Err(problem) => out.push(
                Diagnostic::error(Code::Cron, format!("invalid schedule: {problem}"))
                    .at(cron_at.clone())
                    .label("not Velero's cron dialect"),
            ),
            Ok(()) => {
                let drills = crate::velero::cron::shortest_period(&drill.cron);
                let backups = crate::velero::cron::shortest_period(&schedule.cron);
                if let (Some(drills), Some(backups)) = (drills, backups)
                    && drills < backups
                {
                    out.push(
                        Diagnostic::warning(
                            Code::Cron,
                            format!(
                                "drills run every {} but the schedule backs up every {}: most drills restore a backup drilled already",
                                crate::velero::duration::approximate(drills),
                                crate::velero::duration::approximate(backups)
                            ),
                        )
                        .at(cron_at),
                    );
                }
            }
        }
        duration_check(drill.timeout.as_ref(), || at.child("timeout"), out);
        duration_check(drill.keep_failed.as_ref(), || at.child("keep_failed"), out);
        let prefix = drill.namespace_prefix();
        let prefix_at = at.child("namespace_prefix");
        let refuse =
            |message: String| Diagnostic::error(Code::DrillScope, message).at(prefix_at.clone());
        if prefix.is_empty() {
            out.push(
                refuse("an empty namespace_prefix restores into the namespaces the backup came from".to_string())
                    .help("drills restore into new namespaces: keep the default \"drill-\" or name another prefix"),
            );
            return;
        }
        // The start of a namespace name (an RFC 1123 label): lowercase letters, digits
        // and '-', beginning with a letter or digit.
        let begins_a_name = prefix
            .starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !begins_a_name {
            out.push(refuse(format!(
                "namespace_prefix {prefix:?} cannot begin a namespace name: lowercase letters, digits and '-', starting with a letter or digit"
            )));
            return;
        }
        let named: Vec<&String> = schedule
            .template
            .included_namespaces
            .iter()
            .flatten()
            .filter(|ns| !ns.contains(['*', '?', '[']))
            .collect();
        for namespace in &named {
            let mapped = format!("{prefix}{namespace}");
            if mapped.len() > 63 {
                out.push(refuse(format!(
                    "namespace {namespace} would be restored into {mapped}, {} characters: a namespace name has at most 63",
                    mapped.len()
                )));
            } else if named.iter().any(|other| **other == mapped) {
                out.push(refuse(format!(
                    "namespace {namespace} would be restored into {mapped}, which the backup holds too: a drill must never write into a namespace it backs up"
                )));
            }
        }
        if schedule.template.include_cluster_resources == Some(true) {
            out.push(
                Diagnostic::warning(
                    Code::DrillScope,
                    "the backups include cluster-scoped objects; drills never restore them and leave them out",
                )
                .at(at.clone()),
            );
        }
    }

    /// `copy.<location>` tables: each names a copy the schedule makes; its `ttl` is a
    /// Go duration; its `stagger` moves the cron exactly, before the next run.
    fn copy_settings(
        &self,
        name: &str,
        schedule: &Schedule,
        at: &Pointer,
        out: &mut Vec<Diagnostic>,
    ) {
        let locations = schedule.storage_locations.as_deref().unwrap_or_default();
        for (location, settings) in &schedule.copy {
            let copy_at = at.child("copy").child(location.as_str());
            let Some(index) = locations.iter().position(|l| l == location) else {
                let known = locations.iter().map(String::as_str).collect::<Vec<_>>();
                let mut problem = Diagnostic::error(
                    Code::Reference,
                    format!("`{name}` makes no copy in location `{location}`"),
                )
                .at(copy_at.as_key())
                .label("not one of the schedule's storage_locations");
                problem = match crate::diagnostic::nearest(location, known.iter().copied()) {
                    Some(near) => problem.help(format!("did you mean `{near}`?")),
                    None if locations.is_empty() => problem.help(
                        "per-copy settings are for a schedule fanned out with `storage_locations`",
                    ),
                    None => {
                        problem.help(format!("a copy table names one of: {}", known.join(", ")))
                    }
                };
                out.push(problem);
                continue;
            };
            duration_check(settings.ttl.as_ref(), || copy_at.child("ttl"), out);
            let Some(stagger) = &settings.stagger else {
                continue;
            };
            let stagger_at = copy_at.child("stagger");
            let refuse = |message: String, help: &str| {
                Diagnostic::error(Code::Stagger, message)
                    .at(stagger_at.clone())
                    .help(help.to_string())
            };
            if crate::velero::cron::check_cron(&schedule.cron).is_err() {
                continue;
            }
            let shift = match schedule.copy_shift(index) {
                Ok(shift) => shift,
                Err(problem) => {
                    out.push(refuse(
                        problem,
                        "give a Go duration in whole minutes, e.g. \"2h\" (\"0m\" for none)",
                    ));
                    continue;
                }
            };
            if let Err(problem) = schedule.copy_cron(index) {
                out.push(refuse(
                    format!(
                        "the cron {:?} cannot be moved by {stagger} exactly: {problem}",
                        schedule.cron
                    ),
                    "use a single minute and hour (e.g. \"0 1 * * *\"), or write one schedule per location with its own cron",
                ));
                continue;
            }
            if let Some(period) = crate::velero::cron::shortest_period(&schedule.cron)
                && let Ok(period) = period.to_std()
                && shift >= period
            {
                out.push(refuse(
                    format!(
                        "copy `{location}` would start {} min after the cron's time, at or after its next run ({} min later)",
                        shift.as_secs() / 60,
                        period.as_secs() / 60
                    ),
                    "use a shorter stagger",
                ));
            }
        }
    }

    /// A stagger moves copy k of a fanned-out schedule by k × stagger: it needs
    /// several copies, a duration above zero, a cron that moves exactly, and room
    /// before the next run.
    fn stagger(&self, name: &str, schedule: &Schedule, at: &Pointer, out: &mut Vec<Diagnostic>) {
        if schedule.stagger.is_none() {
            return;
        }
        let stagger_at = at.child("stagger");
        let refuse = |message: String, help: &str| {
            Diagnostic::error(Code::Stagger, message)
                .at(stagger_at.clone())
                .help(help.to_string())
        };
        let copies = schedule.storage_locations.as_ref().map_or(0, Vec::len);
        if copies < 2 {
            out.push(refuse(
                format!("`{name}` has no copies to stagger"),
                "stagger spreads the copies of a schedule with several `storage_locations`; remove it or list more locations",
            ));
            return;
        }
        let stagger = match schedule.stagger() {
            Ok(Some(stagger)) => stagger,
            Ok(None) => return,
            Err(problem) => {
                out.push(refuse(
                    problem,
                    "give a Go duration above zero in whole minutes, e.g. \"20m\"",
                ));
                return;
            }
        };
        if crate::velero::cron::check_cron(&schedule.cron).is_err() {
            return;
        }
        // Copies with a stagger of their own are checked at theirs (`copy_settings`).
        let shifted_here: Vec<usize> = (1..copies)
            .filter(|&index| !has_own_stagger(schedule, index))
            .collect();
        if let Some(Err(problem)) = shifted_here
            .iter()
            .map(|&index| schedule.copy_cron(index))
            .find(Result::is_err)
        {
            out.push(refuse(
                format!("the cron {:?} cannot be moved by {} exactly: {problem}", schedule.cron, schedule.stagger.as_deref().unwrap_or_default()),
                "use a single minute and hour (e.g. \"0 1 * * *\"), or write one schedule per location with its own cron",
            ));
            return;
        }
        let last_index = shifted_here.last().copied().unwrap_or(0);
        let last = stagger.saturating_mul(u32::try_from(last_index).unwrap_or(u32::MAX));
        if let Some(period) = crate::velero::cron::shortest_period(&schedule.cron)
            && let Ok(period) = period.to_std()
            && last >= period
        {
            out.push(refuse(
                format!(
                    "copy {} of {copies} would start {} min after the cron's time, at or after its next run ({} min later)",
                    last_index + 1,
                    last.as_secs() / 60,
                    period.as_secs() / 60
                ),
                "use a shorter stagger, or fewer copies",
            ));
        }
    }

    fn defaults(&self, defaults: &[&str], out: &mut Vec<Diagnostic>) {
        if let Some(other) = &self.config.velero.default_location_owner {
            let at = Pointer::value(["velero", "default_location_owner"]);
            if *other == self.config.velero.owner {
                out.push(
                    Diagnostic::error(
                        Code::DefaultLocation,
                        format!("`{other}` is this file's own owner"),
                    )
                    .at(at.clone())
                    .help("name the owner of the file that declares the default, or remove the key and declare the default here"),
                );
            }
            for name in defaults {
                out.push(
                    Diagnostic::error(
                        Code::DefaultLocation,
                        format!("`{name}` is declared the default, but the default location belongs to owner `{other}`"),
                    )
                    .at(Pointer::value(["backup_locations", *name, "default"]))
                    .related(at.clone(), "the default is left to this owner")
                    .help("remove `default = true`, or remove `default_location_owner` to take the default over (and remove it from the other file)"),
                );
            }
            return;
        }
        if self.config.backup_locations.is_empty() {
            return;
        }
        match defaults {
            [] => {
                let names: Vec<&str> = self
                    .config
                    .backup_locations
                    .keys()
                    .map(String::as_str)
                    .collect();
                out.push(
                    Diagnostic::error(Code::DefaultLocation, "no backup location has `default = true`")
                        .at(Pointer::key(["backup_locations"]))
                        .label("none of these is the default")
                        .help(format!(
                            "mark exactly one of {} with `default = true`; without it, backups that name no location fail validation",
                            names.join(", ")
                        )),
                );
            }
            [_] => {}
            [first, rest @ ..] => {
                for name in rest {
                    out.push(
                        Diagnostic::error(
                            Code::DefaultLocation,
                            format!("`{first}` and `{name}` are both the default location"),
                        )
                        .at(Pointer::value(["backup_locations", name, "default"]))
                        .label("second default")
                        .related(Pointer::value(["backup_locations", first, "default"]), "first default")
                        .help("exactly one location is the default; Velero would keep the newest and flip the others"),
                    );
                }
            }
        }
    }

    fn prefix_overlaps(&self, out: &mut Vec<Diagnostic>) {
        // Locations reach the same bucket when provider, endpoint and bucket name agree.
        let mut by_bucket: BTreeMap<BucketKey, Vec<(&str, String)>> = BTreeMap::new();
        for (name, location) in &self.config.backup_locations {
            let endpoint = [
                "s3Url",
                "storageAccount",
                "storageAccountURI",
                "storeEndpoint",
            ]
            .iter()
            .filter_map(|key| location.config.get(*key))
            .cloned()
            .collect::<Vec<_>>()
            .join(",");
            let key = BucketKey {
                provider: normalize(&location.provider),
                endpoint,
                bucket: location.bucket.trim_matches('/').to_string(),
            };
            let prefix = location
                .prefix
                .as_deref()
                .unwrap_or("")
                .trim_matches('/')
                .to_string();
            by_bucket.entry(key).or_default().push((name, prefix));
        }
        for (BucketKey { bucket, .. }, members) in &by_bucket {
            // Each location against the first earlier one it nests with, found through
            // two indexes instead of comparing every pair (100k locations in one bucket
            // took minutes): the first location at each exact prefix, and the first at
            // or below each path (a location nests with an earlier one at one of its
            // ancestors, or with one anywhere below it).
            let mut first_at: HashMap<&str, usize> = HashMap::new();
            let mut first_below: HashMap<&str, usize> = HashMap::new();
            for (i, (name, prefix)) in members.iter().enumerate() {
                let ancestors = path_ancestors(prefix);
                let earlier = ancestors
                    .iter()
                    .filter_map(|a| first_at.get(a).copied())
                    .chain(first_below.get(prefix.as_str()).copied())
                    .min();
                first_at.entry(prefix.as_str()).or_insert(i);
                for ancestor in ancestors {
                    first_below.entry(ancestor).or_insert(i);
                }
                let Some((other, other_prefix)) = earlier.map(|j| &members[j]) else {
                    continue;
                };
                let describe = |p: &str| {
                    if p.is_empty() {
                        "the whole bucket".to_string()
                    } else {
                        format!("prefix {p:?}")
                    }
                };
                let relation = if prefix == other_prefix {
                    "the same place"
                } else {
                    "nested places"
                };
                let at_for = |location: &str, prefix: &str| {
                    if prefix.is_empty() {
                        Pointer::value(["backup_locations", location, "bucket"])
                    } else {
                        Pointer::value(["backup_locations", location, "prefix"])
                    }
                };
                out.push(
                    Diagnostic::error(
                        Code::PrefixOverlap,
                        format!(
                            "`{name}` ({}) and `{other}` ({}) share bucket {bucket:?} at {relation}",
                            describe(prefix),
                            describe(other_prefix)
                        ),
                    )
                    .at(at_for(name, prefix))
                    .label("overlaps")
                    .related(at_for(other, other_prefix), "the other location")
                    .help("give each location its own prefix, none inside another: Velero marks a location Unavailable when it finds another's folders under its own"),
                );
            }
        }
    }

    fn snapshot_locations(&self, out: &mut Vec<Diagnostic>) {
        for (name, location) in &self.config.snapshot_locations {
            let at = Pointer::value(["snapshot_locations", name.as_str()]);
            name_check(
                name,
                at.clone().as_key(),
                "snapshot location",
                names::check_subdomain,
                out,
            );
            self.credential_reference(location.credential.as_ref(), &at, out);
            filters::check_labels(&location.labels, &at.child("labels"), out);
            providers::check_config(
                &LocationConfig {
                    provider: &location.provider,
                    kind: LocationKind::Snapshot,
                    config: &location.config,
                    has_credential: location.credential.is_some(),
                    at: &at,
                },
                out,
            );
        }
    }

    fn schedules(&self, out: &mut Vec<Diagnostic>) {
        let mut object_names: BTreeMap<String, Pointer> = BTreeMap::new();
        // Velero compares VSL providers as written.
        let mut vsls_by_provider: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, vsl) in &self.config.snapshot_locations {
            vsls_by_provider
                .entry(vsl.provider.as_str())
                .or_default()
                .push(name);
        }
        for (name, schedule) in &self.config.schedules {
            let at = Pointer::value(["schedules", name.as_str()]);
            name_check(
                name,
                at.clone().as_key(),
                "schedule",
                names::check_subdomain,
                out,
            );
            if let Err(problem) = crate::velero::cron::check_cron(&schedule.cron) {
                out.push(
                    Diagnostic::error(Code::Cron, format!("invalid schedule: {problem}"))
                        .at(at.child("cron"))
                        .label("not Velero's cron dialect")
                        .help("5 fields (minute hour day-of-month month day-of-week, days 0-6), a descriptor such as @daily or @every 6h, optionally prefixed by CRON_TZ=<zone>"),
                );
            } else if let Some(problem) = crate::velero::cron::never_fires(&schedule.cron) {
                out.push(
                    Diagnostic::error(Code::Cron, problem)
                        .at(at.child("cron"))
                        .label("never fires")
                        .help("Velero accepts it and never backs up: check the day of month against the month"),
                );
            }
            self.stagger(name, schedule, &at, out);
            self.copy_settings(name, schedule, &at, out);
            self.recovery_point(name, schedule, &at, out);
            if let Some(drill) = &schedule.drill {
                self.drill(schedule, drill, &at.child("drill"), out);
            }
            let locations_known = self.usable(&["schedules", name, "storage_locations"])
                && self.usable(&["schedules", name, "storage_location"]);
            if locations_known {
                self.schedule_locations(name, schedule, &at, &mut object_names, out);
            }
            if self.usable(&["schedules", name, "volume_snapshot_locations"]) {
                self.schedule_snapshot_locations(name, schedule, &at, &vsls_by_provider, out);
            }
            let template = &schedule.template;
            for field in ["ttl", "csi_snapshot_timeout", "item_operation_timeout"] {
                let value = match field {
                    "ttl" => template.ttl.as_ref(),
                    "csi_snapshot_timeout" => template.csi_snapshot_timeout.as_ref(),
                    _ => template.item_operation_timeout.as_ref(),
                };
                duration_check(value, || at.child(field), out);
            }
            if let Some(hooks) = &template.hooks {
                for (index, hook) in hooks.resources.iter().enumerate() {
                    let hook_at = at.child("hooks").child("resources").child(index);
                    for (phase, list) in [("pre", &hook.pre), ("post", &hook.post)] {
                        for (step, item) in list.iter().enumerate() {
                            let exec_at = hook_at.child(phase).child(step).child("exec");
                            if item.exec.command.is_empty() {
                                out.push(
                                    Diagnostic::error(Code::Parse, "a hook needs a command")
                                        .at(exec_at.child("command"))
                                        .help("e.g. command = [\"/sbin/fsfreeze\", \"--freeze\", \"/data\"]"),
                                );
                            }
                            duration_check(
                                item.exec.timeout.as_ref(),
                                || exec_at.child("timeout"),
                                out,
                            );
                        }
                    }
                }
            }
            filters::check_template(template, &at, out);
            if !schedule.labels.is_empty() {
                filters::check_labels(&schedule.labels, &at.child("labels"), out);
            }
            for key in schedule.annotations.keys() {
                if let Err(problem) = names::check_label_key(key) {
                    out.push(
                        Diagnostic::error(
                            Code::Name,
                            format!("invalid annotation key {key:?}: {problem}"),
                        )
                        .at(at.child("annotations").child(key.as_str()).as_key()),
                    );
                }
            }
        }
    }

    fn schedule_locations(
        &self,
        name: &str,
        schedule: &Schedule,
        at: &Pointer,
        object_names: &mut BTreeMap<String, Pointer>,
        out: &mut Vec<Diagnostic>,
    ) {
        // Pointers are made only for a diagnostic, or to remember where a name was
        // first used: thousands of instances are fine, and each pointer allocates.
        let location_at = |fan_out_index: Option<usize>| match fan_out_index {
            Some(index) => at.child("storage_locations").child(index),
            None => at.child("storage_location"),
        };
        let instance_at = |fan_out_index: Option<usize>| match fan_out_index {
            Some(_) => location_at(fan_out_index),
            None => at.clone().as_key(),
        };
        // An entry name that is not a name was reported once, at the entry; the Velero
        // objects named after it inherit the mistake and are not reported again.
        let entry_name_reported = names::check_subdomain(name).is_err();
        if schedule.storage_locations.is_some() && schedule.template.storage_location.is_some() {
            out.push(
                Diagnostic::error(
                    Code::Parse,
                    "`storage_location` and `storage_locations` cannot both be set",
                )
                .at(at.child("storage_location").as_key())
                .related(at.child("storage_locations").as_key(), "fan-out here")
                .help("use `storage_locations` to send this schedule to several locations, or `storage_location` for one"),
            );
        }
        if schedule
            .storage_locations
            .as_ref()
            .is_some_and(Vec::is_empty)
        {
            out.push(
                Diagnostic::error(Code::Parse, "`storage_locations` is empty: this schedule would create nothing")
                    .at(at.child("storage_locations"))
                    .help("name at least one location, or remove the key to use Velero's default location"),
            );
        }
        for instance in schedule.instances(name) {
            let index = instance.fan_out_index;
            match names::check_subdomain(&instance.object_name) {
                _ if entry_name_reported => {}
                Err(problem) => out.push(
                    Diagnostic::error(
                        Code::Name,
                        format!(
                            "schedule name {:?} is not a valid name: {problem}",
                            instance.object_name
                        ),
                    )
                    .at(instance_at(index)),
                ),
                Ok(()) if instance.object_name.len() > MAX_SCHEDULE_NAME => out.push(
                    Diagnostic::error(
                        Code::Name,
                        format!(
                            "schedule name {:?} is {} characters; Velero needs at most {MAX_SCHEDULE_NAME}",
                            instance.object_name,
                            instance.object_name.len()
                        ),
                    )
                    .at(instance_at(index))
                    .label("too long")
                    .help("Velero labels every backup with its schedule's name, and label values stop at 63 characters: every backup of this schedule would fail to be created"),
                ),
                Ok(()) => {}
            }
            match object_names.get(&instance.object_name) {
                Some(first) => out.push(
                    Diagnostic::error(
                        Code::NameCollision,
                        format!(
                            "two schedules would both be named `{}`",
                            instance.object_name
                        ),
                    )
                    .at(instance_at(index))
                    .related(first.clone(), "first one here")
                    .help("rename one of the schedules or locations"),
                ),
                None => {
                    object_names.insert(instance.object_name.clone(), instance_at(index));
                }
            }
            let Some(location) = instance.storage_location else {
                continue;
            };
            match self.config.backup_locations.get(location) {
                None => out.push(reference_error(
                    "backup location",
                    location,
                    self.config.backup_locations.keys(),
                    location_at(index),
                    "backup_locations",
                )),
                Some(declared) if declared.access_mode == Some(AccessMode::ReadOnly) => out.push(
                    Diagnostic::error(
                        Code::Reference,
                        format!("backup location `{location}` is read-only: Velero refuses backups to it"),
                    )
                    .at(location_at(index))
                    .related(
                        Pointer::value(["backup_locations", location, "access_mode"]),
                        "read-only here",
                    )
                    .help("send the schedule to a ReadWrite location"),
                ),
                Some(_) => {}
            }
        }
    }

    fn schedule_snapshot_locations(
        &self,
        name: &str,
        schedule: &Schedule,
        at: &Pointer,
        vsls_by_provider: &BTreeMap<&str, Vec<&str>>,
        out: &mut Vec<Diagnostic>,
    ) {
        let list_at = at.child("volume_snapshot_locations");
        let named = schedule
            .template
            .volume_snapshot_locations
            .as_deref()
            .unwrap_or_default();
        let mut chosen: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
        for (index, vsl_name) in named.iter().enumerate() {
            let Some(vsl) = self.config.snapshot_locations.get(vsl_name) else {
                out.push(reference_error(
                    "snapshot location",
                    vsl_name,
                    self.config.snapshot_locations.keys(),
                    list_at.child(index),
                    "snapshot_locations",
                ));
                continue;
            };
            if let Some((first_index, first)) = chosen.get(vsl.provider.as_str()) {
                if *first != vsl_name.as_str() {
                    out.push(
                        Diagnostic::error(
                            Code::VslPerProvider,
                            format!(
                                "schedule `{name}` names two snapshot locations of provider `{}`: `{first}` and `{vsl_name}`",
                                vsl.provider
                            ),
                        )
                        .at(list_at.child(index))
                        .label("second location of this provider")
                        .related(list_at.child(*first_index), "first one")
                        .help("a backup takes at most one snapshot location per provider; keep one"),
                    );
                }
                continue;
            }
            chosen.insert(vsl.provider.as_str(), (index, vsl_name.as_str()));
        }
        let defaults = &self.config.velero.default_volume_snapshot_locations;
        for (provider, vsls) in vsls_by_provider {
            if vsls.len() < 2 || chosen.contains_key(provider) || defaults.contains_key(*provider) {
                continue;
            }
            let pointer = if schedule.template.volume_snapshot_locations.is_some() {
                list_at.clone()
            } else {
                at.clone().as_key()
            };
            out.push(
                Diagnostic::error(
                    Code::VslAmbiguous,
                    format!(
                        "provider `{provider}` has {} snapshot locations ({}) and schedule `{name}` names none of them",
                        vsls.len(),
                        vsls.join(", ")
                    ),
                )
                .at(pointer)
                .help(format!(
                    "add one of them to `volume_snapshot_locations`, or set [velero.default_volume_snapshot_locations] \"{provider}\" = \"{}\"; otherwise every backup fails validation, even without snapshots",
                    vsls[0]
                )),
            );
        }
    }

    /// Which provider formats each credential must be in, from the locations using it.
    fn credential_needs(&self) -> BTreeMap<&str, BTreeMap<Need, Vec<Pointer>>> {
        let mut needs: BTreeMap<&str, BTreeMap<Need, Vec<Pointer>>> = BTreeMap::new();
        // Locations without a credential use the install-time Secret; when the file
        // declares that Secret too, its content must suit them as well.
        let install_credential = self
            .config
            .credentials
            .iter()
            .find_map(|(name, credential)| {
                ((credential.secret_name(name), credential.secret_key()) == INSTALL_SECRET)
                    .then_some(name.as_str())
            });
        let mut uses: Vec<(Option<&String>, Option<Need>, Pointer)> = Vec::new();
        for (name, location) in &self.config.backup_locations {
            let at = match &location.credential {
                Some(_) => Pointer::value(["backup_locations", name.as_str(), "credential"]),
                None => Pointer::key(["backup_locations", name.as_str()]),
            };
            let need = need_of(&location.provider, LocationKind::Backup, &location.config);
            uses.push((location.credential.as_ref(), need, at));
        }
        for (name, location) in &self.config.snapshot_locations {
            let at = match &location.credential {
                Some(_) => Pointer::value(["snapshot_locations", name.as_str(), "credential"]),
                None => Pointer::key(["snapshot_locations", name.as_str()]),
            };
            let need = need_of(&location.provider, LocationKind::Snapshot, &location.config);
            uses.push((location.credential.as_ref(), need, at));
        }
        for (credential, need, at) in uses {
            let credential = match (credential, install_credential) {
                (Some(name), _) => name.as_str(),
                (None, Some(name)) => name,
                (None, None) => continue,
            };
            if let Some(need) = need
                && self.config.credentials.contains_key(credential)
            {
                needs
                    .entry(credential)
                    .or_default()
                    .entry(need)
                    .or_default()
                    .push(at);
            }
        }
        needs
    }

    fn credential_formats(&self, out: &mut Vec<Diagnostic>) {
        for (credential, needs) in self.credential_needs() {
            let Some(Material::Value(read)) = self.materials.credentials.get(credential) else {
                continue;
            };
            let Some(declared) = self.config.credentials.get(credential) else {
                continue;
            };
            let source_at = if declared.file.is_some() {
                Pointer::value(["credentials", credential, "file"])
            } else {
                Pointer::value(["credentials", credential, "env"])
            };
            let mut reported = BTreeSet::new();
            for (need, users) in needs {
                for problem in credentials::check_format(read, &need) {
                    if !reported.insert(problem.clone()) {
                        continue;
                    }
                    let plugin = match need.plugin() {
                        Plugin::Aws => "aws",
                        Plugin::Azure => "azure",
                        Plugin::Gcp => "gcp",
                        Plugin::Portworx => "portworx",
                    };
                    let mut diagnostic = Diagnostic::error(
                        Code::CredentialFormat,
                        format!("credential `{credential}`: {problem}"),
                    )
                    .at(source_at.clone())
                    .label(format!("not a valid {plugin} credential"))
                    .help(format_help(&need));
                    if let Some(first) = users.first() {
                        diagnostic = diagnostic
                            .related(first.clone(), format!("used here by a {plugin} location"));
                    }
                    out.push(diagnostic);
                }
            }
        }
    }
}

fn format_help(need: &Need) -> String {
    match need {
        Need::AwsProfile(profile) => format!(
            "an AWS shared-credentials file: [{profile}] with aws_access_key_id and aws_secret_access_key (the profile comes from config.profile)"
        ),
        Need::AzureKeys(_) => "an Azure credentials file: KEY=VALUE lines such as AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET".to_string(),
        Need::Gcp => "a GCP service-account JSON key, as `gcloud iam service-accounts keys create` writes it".to_string(),
    }
}

fn need_of(provider: &str, kind: LocationKind, config: &BTreeMap<String, String>) -> Option<Need> {
    let has = |key: &str| config.get(key).is_some_and(|v| !v.is_empty());
    match Plugin::of(provider)? {
        Plugin::Aws => Some(Need::AwsProfile(
            config
                .get("profile")
                .filter(|p| !p.is_empty())
                .cloned()
                .unwrap_or_else(|| "default".to_string()),
        )),
        Plugin::Azure => {
            let mut keys = Vec::new();
            match kind {
                LocationKind::Snapshot => {
                    keys.push("AZURE_SUBSCRIPTION_ID".to_string());
                    keys.push("AZURE_RESOURCE_GROUP".to_string());
                }
                LocationKind::Backup => {
                    if let Some(key) = config
                        .get("storageAccountKeyEnvVar")
                        .filter(|k| !k.is_empty())
                    {
                        keys.push(key.clone());
                    } else if config.get("useAAD").map(String::as_str) != Some("true") {
                        if !has("subscriptionId") {
                            keys.push("AZURE_SUBSCRIPTION_ID".to_string());
                        }
                        if !has("resourceGroup") {
                            keys.push("AZURE_RESOURCE_GROUP".to_string());
                        }
                    }
                }
            }
            Some(Need::AzureKeys(keys))
        }
        Plugin::Gcp => Some(Need::Gcp),
        Plugin::Portworx => None,
    }
}

/// What makes two locations reach the same bucket.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct BucketKey {
    provider: String,
    endpoint: String,
    bucket: String,
}

/// Two prefixes in one bucket collide when equal or when one contains the other
/// (the empty prefix contains everything).
/// A prefix and every path above it, the whole bucket ("") first: "a/b" gives "", "a"
/// and "a/b".
fn path_ancestors(prefix: &str) -> Vec<&str> {
    let mut ancestors = vec![""];
    if !prefix.is_empty() {
        ancestors.extend(prefix.match_indices('/').map(|(i, _)| &prefix[..i]));
        ancestors.push(prefix);
    }
    ancestors
}

#[cfg(test)]
fn nests(a: &str, b: &str) -> bool {
    a == b
        || a.is_empty()
        || b.is_empty()
        || b.strip_prefix(a).is_some_and(|rest| rest.starts_with('/'))
        || a.strip_prefix(b).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::nests;

    #[test]
    fn prefixes_nest_by_path_segment() {
        assert!(nests("a", "a"));
        assert!(nests("", "a"));
        assert!(nests("a", "a/b"));
        assert!(!nests("a", "ab"));
        assert!(!nests("cluster-a", "cluster-b"));
    }
}
