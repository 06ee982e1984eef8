//! Which Velero a file targets, and what each version introduced. A version comes from
//! `[velero] version`, the Velero Deployment's image tag, or the version the server
//! reported in a ServerStatusRequest (`velero version` makes them).

use std::fmt;

use serde_json::Value;

/// A Velero release, as far as it is known: `1.17` matches every 1.17 patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VeleroVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: Option<u32>,
}

/// The releases whose rules stowage knows; others are checked with the nearest.
pub const OLDEST_KNOWN: VeleroVersion = VeleroVersion::new(1, 16);
pub const NEWEST_KNOWN: VeleroVersion = VeleroVersion::new(1, 18);

/// A field or behaviour and the release that introduced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Introduced {
    pub what: &'static str,
    pub since: VeleroVersion,
}

/// `caCertRef` on a backup storage location (a CA bundle read from a Secret).
pub const CA_CERT_REF: Introduced = Introduced {
    what: "caCertRef",
    since: VeleroVersion::new(1, 18),
};
/// `includeExcludePolicy` in a resource policy ConfigMap.
pub const INCLUDE_EXCLUDE_POLICY: Introduced = Introduced {
    what: "includeExcludePolicy",
    since: VeleroVersion::new(1, 17),
};
/// The resource policy keys each release added: Velero reads the policy strictly,
/// so an older one fails every backup that names a policy holding a newer key.
pub const POLICY_KEYS: [(&str, Introduced); 3] = [
    ("includeExcludePolicy", INCLUDE_EXCLUDE_POLICY),
    (
        "clusterScopedFilterPolicy",
        Introduced {
            what: "clusterScopedFilterPolicy",
            since: VeleroVersion::new(1, 18),
        },
    ),
    (
        "namespacedFilterPolicies",
        Introduced {
            what: "namespacedFilterPolicies",
            since: VeleroVersion::new(1, 18),
        },
    ),
];

/// Backup phases `Queued` and `ReadyToStart`, and `--concurrent-backups`.
pub const BACKUP_QUEUE: Introduced = Introduced {
    what: "the backup queue (--concurrent-backups)",
    since: VeleroVersion::new(1, 18),
};
/// Kopia repository names hashed down to 63 characters (velero#9328); before it, a
/// `<namespace>-<location>-kopia` longer than that fails repository maintenance.
pub const HASHED_REPOSITORY_NAMES: Introduced = Introduced {
    what: "hashed repository names",
    since: VeleroVersion::new(1, 18),
};

impl VeleroVersion {
    pub const fn new(major: u32, minor: u32) -> VeleroVersion {
        VeleroVersion {
            major,
            minor,
            patch: None,
        }
    }

    /// `1.17`, `1.17.2`, `v1.17.2`; a pre-release or build suffix (`-rc.1`, `+abc`) is
    /// ignored. `None` for anything else (`latest`, a digest, `main`).
    pub fn parse(text: &str) -> Option<VeleroVersion> {
        let text = text.trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let core = text.split(['-', '+']).next()?;
        let mut parts = core.split('.');
        let number = |part: Option<&str>| -> Option<u32> {
            let part = part?;
            (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse().ok())
                .flatten()
        };
        let major = number(parts.next())?;
        let minor = number(parts.next())?;
        let patch = match parts.next() {
            None => None,
            some => Some(number(some)?),
        };
        if parts.next().is_some() {
            return None;
        }
        Some(VeleroVersion {
            major,
            minor,
            patch,
        })
    }

    /// The release line, without the patch.
    pub fn line(self) -> VeleroVersion {
        VeleroVersion::new(self.major, self.minor)
    }

    /// Whether this version has what `feature` needs.
    pub fn has(self, feature: Introduced) -> bool {
        self.line() >= feature.since
    }

    /// Whether a declared version (`1.17` or `1.17.2`) names `actual`.
    pub fn matches(self, actual: VeleroVersion) -> bool {
        self.line() == actual.line() && (self.patch.is_none() || self.patch == actual.patch)
    }

    pub fn is_known(self) -> bool {
        (OLDEST_KNOWN..=NEWEST_KNOWN).contains(&self.line())
    }

    /// The version in an image reference's tag: `velero/velero:v1.17.2`,
    /// `registry:5000/velero/velero:v1.18.3@sha256:…`. `None` for an untagged or
    /// non-version tag.
    pub fn of_image(image: &str) -> Option<VeleroVersion> {
        let without_digest = image.split('@').next()?;
        let last = without_digest.rsplit('/').next()?;
        let (_, tag) = last.split_once(':')?;
        VeleroVersion::parse(tag)
    }

    /// The version the Velero Deployment's server container runs, from its image tag.
    pub fn of_deployment(manifest: &Value) -> Option<VeleroVersion> {
        let containers = manifest
            .pointer("/spec/template/spec/containers")?
            .as_array()?;
        let container = containers
            .iter()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(super::server::CONTAINER))?;
        VeleroVersion::of_image(container.get("image")?.as_str()?)
    }
}

impl fmt::Display for VeleroVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.patch {
            Some(patch) => write!(f, "{}.{}.{patch}", self.major, self.minor),
            None => write!(f, "{}.{}", self.major, self.minor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_as_people_and_images_write_them() {
        let v = |major, minor, patch| VeleroVersion {
            major,
            minor,
            patch,
        };
        assert_eq!(VeleroVersion::parse("1.17"), Some(v(1, 17, None)));
        assert_eq!(VeleroVersion::parse("v1.18.3"), Some(v(1, 18, Some(3))));
        assert_eq!(VeleroVersion::parse("1.18.0-rc.1"), Some(v(1, 18, Some(0))));
        for refused in ["", "latest", "1", "1.x", "1.17.2.1", "v", "1..2", "main"] {
            assert_eq!(VeleroVersion::parse(refused), None, "{refused:?}");
        }
        assert_eq!(
            VeleroVersion::of_image("velero/velero:v1.17.2"),
            Some(v(1, 17, Some(2)))
        );
        assert_eq!(
            VeleroVersion::of_image("localhost:5000/velero/velero:v1.18.3@sha256:abcd"),
            Some(v(1, 18, Some(3)))
        );
        assert_eq!(
            VeleroVersion::of_image("localhost:5000/velero/velero"),
            None
        );
        assert_eq!(VeleroVersion::of_image("velero/velero:latest"), None);
    }

    #[test]
    fn a_declared_line_matches_each_of_its_patches_and_features_follow_the_line() {
        let declared = VeleroVersion::new(1, 17);
        assert!(declared.matches(VeleroVersion::parse("1.17.2").unwrap()));
        assert!(!declared.matches(VeleroVersion::parse("1.18.3").unwrap()));
        let exact = VeleroVersion::parse("1.17.1").unwrap();
        assert!(!exact.matches(VeleroVersion::parse("1.17.2").unwrap()));
        assert!(!declared.has(CA_CERT_REF));
        assert!(declared.has(INCLUDE_EXCLUDE_POLICY));
        assert!(VeleroVersion::parse("1.18.0").unwrap().has(CA_CERT_REF));
        assert!(!VeleroVersion::new(1, 16).has(INCLUDE_EXCLUDE_POLICY));
    }
}
