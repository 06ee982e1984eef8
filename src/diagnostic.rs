//! Diagnostics: what every stage reports about the desired-state file.
//!
//! A [`Diagnostic`] names its problem with a stable [`Code`] (part of the product
//! contract) and points into the file with a [`Pointer`], a path of keys and indexes.
//! Pointers are resolved to byte spans, lines and columns only when a diagnostic is shown
//! (see `config::source::SourceMap`), so the validator never needs the text it came from.

use std::fmt;

/// The stable diagnostic codes of product.md. Their strings never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    Parse,
    UnknownKey,
    Version,
    Reference,
    DefaultLocation,
    VslPerProvider,
    VslAmbiguous,
    PrefixOverlap,
    Bucket,
    Duration,
    Cron,
    Name,
    NameCollision,
    ProviderConfig,
    CredentialSource,
    CredentialFormat,
    CaCert,
    BackupFilter,
    Region,
    Plugin,
    BucketUnreachable,
    BucketForeignData,
    OwnerConflict,
    Protected,
    VolumesWithoutVsl,
    File,
    MassDelete,
    NotConverged,
    Stagger,
    Extends,
    Sops,
    PlaintextCredential,
    Rpo,
    DrillScope,
    VeleroVersion,
}

impl Code {
    pub const ALL: [Code; 35] = [
        Code::Parse,
        Code::UnknownKey,
        Code::Version,
        Code::Reference,
        Code::DefaultLocation,
        Code::VslPerProvider,
        Code::VslAmbiguous,
        Code::PrefixOverlap,
        Code::Bucket,
        Code::Duration,
        Code::Cron,
        Code::Name,
        Code::NameCollision,
        Code::ProviderConfig,
        Code::CredentialSource,
        Code::CredentialFormat,
        Code::CaCert,
        Code::BackupFilter,
        Code::Region,
        Code::Plugin,
        Code::BucketUnreachable,
        Code::BucketForeignData,
        Code::OwnerConflict,
        Code::Protected,
        Code::VolumesWithoutVsl,
        Code::File,
        Code::MassDelete,
        Code::NotConverged,
        Code::Stagger,
        Code::Extends,
        Code::Sops,
        Code::PlaintextCredential,
        Code::Rpo,
        Code::DrillScope,
        Code::VeleroVersion,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Parse => "stowage::parse",
            Code::UnknownKey => "stowage::unknown-key",
            Code::Version => "stowage::version",
            Code::Reference => "stowage::reference",
            Code::DefaultLocation => "stowage::default-location",
            Code::VslPerProvider => "stowage::vsl-per-provider",
            Code::VslAmbiguous => "stowage::vsl-ambiguous",
            Code::PrefixOverlap => "stowage::prefix-overlap",
            Code::Bucket => "stowage::bucket",
            Code::Duration => "stowage::duration",
            Code::Cron => "stowage::cron",
            Code::Name => "stowage::name",
            Code::NameCollision => "stowage::name-collision",
            Code::ProviderConfig => "stowage::provider-config",
            Code::CredentialSource => "stowage::credential-source",
            Code::CredentialFormat => "stowage::credential-format",
            Code::CaCert => "stowage::ca-cert",
            Code::BackupFilter => "stowage::backup-filter",
            Code::Region => "stowage::region",
            Code::Plugin => "stowage::plugin",
            Code::BucketUnreachable => "stowage::bucket-unreachable",
            Code::BucketForeignData => "stowage::bucket-foreign-data",
            Code::OwnerConflict => "stowage::owner-conflict",
            Code::Protected => "stowage::protected",
            Code::VolumesWithoutVsl => "stowage::volumes-without-vsl",
            Code::File => "stowage::file",
            Code::MassDelete => "stowage::mass-delete",
            Code::NotConverged => "stowage::not-converged",
            Code::Stagger => "stowage::stagger",
            Code::Extends => "stowage::extends",
            Code::Sops => "stowage::sops",
            Code::PlaintextCredential => "stowage::plaintext-credential",
            Code::Rpo => "stowage::rpo",
            Code::DrillScope => "stowage::drill-scope",
            Code::VeleroVersion => "stowage::velero-version",
        }
    }

    /// Codes that need a cluster, a saved state or a bucket; `validate` never raises
    /// them. Two are stowage's own additions to the contract's table: `Protected`, a
    /// plan that would repoint or delete a location declared with `protect = true`, and
    /// `VolumesWithoutVsl`, volumes whose provider has no snapshot location.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Code::Region
                | Code::Plugin
                | Code::BucketUnreachable
                | Code::BucketForeignData
                | Code::OwnerConflict
                | Code::Protected
                | Code::VolumesWithoutVsl
                | Code::MassDelete
                | Code::NotConverged
        )
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One step of a [`Pointer`]: a map key or a list index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Where in the file a diagnostic points: a path from the document root, and whether
/// it means the key that names the last step or the value under it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pointer {
    pub path: Vec<Segment>,
    pub target: Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Key,
    Value,
}

impl Pointer {
    pub fn root() -> Pointer {
        Pointer {
            path: Vec::new(),
            target: Target::Value,
        }
    }

    /// The value at `path`, e.g. `Pointer::value(["schedules", "daily", "cron"])`.
    pub fn value<I, S>(path: I) -> Pointer
    where
        I: IntoIterator<Item = S>,
        S: Into<Segment>,
    {
        Pointer {
            path: path.into_iter().map(Into::into).collect(),
            target: Target::Value,
        }
    }

    /// The key that names the last step of `path`.
    pub fn key<I, S>(path: I) -> Pointer
    where
        I: IntoIterator<Item = S>,
        S: Into<Segment>,
    {
        Pointer {
            path: path.into_iter().map(Into::into).collect(),
            target: Target::Key,
        }
    }

    pub fn child(&self, segment: impl Into<Segment>) -> Pointer {
        // Room for the new step from the start: a clone then a push would allocate
        // twice, and validation makes a child per checked key.
        let mut path = Vec::with_capacity(self.path.len() + 1);
        path.extend_from_slice(&self.path);
        path.push(segment.into());
        Pointer {
            path,
            target: Target::Value,
        }
    }

    pub fn as_key(mut self) -> Pointer {
        self.target = Target::Key;
        self
    }

    /// The path in the file's own notation, e.g. `schedules.daily.storage_locations[1]`.
    pub fn dotted(&self) -> String {
        let mut out = String::new();
        for segment in &self.path {
            match segment {
                Segment::Key(key) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(key);
                }
                Segment::Index(index) => {
                    out.push_str(&format!("[{index}]"));
                }
            }
        }
        out
    }
}

impl From<&str> for Segment {
    fn from(key: &str) -> Segment {
        Segment::Key(key.to_string())
    }
}

impl From<&String> for Segment {
    fn from(key: &String) -> Segment {
        Segment::Key(key.clone())
    }
}

impl From<String> for Segment {
    fn from(key: String) -> Segment {
        Segment::Key(key)
    }
}

impl From<usize> for Segment {
    fn from(index: usize) -> Segment {
        Segment::Index(index)
    }
}

/// A secondary place a diagnostic refers to, e.g. "the other default is here".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Related {
    pub at: Pointer,
    pub label: String,
}

/// One problem found in the desired state. Messages are lowercase with no trailing
/// period; `help` says how to fix it. A message never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub at: Option<Pointer>,
    pub label: Option<String>,
    pub help: Option<String>,
    pub related: Vec<Related>,
    /// A span already known in bytes, for problems found before the file had a
    /// structure (syntax errors); wins over `at`.
    pub span: Option<std::ops::Range<usize>>,
}

impl Diagnostic {
    pub fn error(code: Code, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            at: None,
            label: None,
            help: None,
            related: Vec::new(),
            span: None,
        }
    }

    pub fn warning(code: Code, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    pub fn at(mut self, at: Pointer) -> Diagnostic {
        self.at = Some(at);
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = Some(label.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn related(mut self, at: Pointer, label: impl Into<String>) -> Diagnostic {
        self.related.push(Related {
            at,
            label: label.into(),
        });
        self
    }

    pub fn with_span(mut self, span: std::ops::Range<usize>) -> Diagnostic {
        self.span = Some(span);
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// The closest candidate to `wanted`, for "did you mean" hints; `None` when nothing is
/// close enough to be a plausible typo.
pub fn nearest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wanted_lower = wanted.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|candidate| {
            let score = strsim::jaro_winkler(&wanted_lower, &candidate.to_ascii_lowercase());
            (score, candidate)
        })
        .filter(|(score, _)| *score >= 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_finds_typos_and_ignores_strangers() {
        let keys = ["bucket", "prefix", "provider", "credential"];
        assert_eq!(nearest("bukcet", keys), Some("bucket"));
        assert_eq!(nearest("credentials", keys), Some("credential"));
        assert_eq!(nearest("zzz", keys), None);
    }

    #[test]
    fn dotted_paths_read_like_the_file() {
        let p = Pointer::value(["schedules", "daily", "storage_locations"]).child(1usize);
        assert_eq!(p.dotted(), "schedules.daily.storage_locations[1]");
    }
}
