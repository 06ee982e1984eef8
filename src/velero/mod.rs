//! Velero's vocabulary, shared by every stage: the kinds stowage reads and writes and
//! how objects are named, the labels and annotations stowage puts on them, the install
//! Secret, provider plugins, Go durations, Velero's cron dialect and the Velero server's
//! flags. Facts about Velero, no rules and no I/O: `validate` holds the rules built on
//! them.

pub mod cron;
pub mod duration;
pub mod field_path;
pub mod plugin;
pub mod server;
pub mod version;

pub use field_path::FieldPath;
pub use plugin::Plugin;

/// The API group of Velero's kinds.
pub const GROUP: &str = "velero.io";
/// The API version stowage writes Velero's kinds in.
pub const API_VERSION: &str = "velero.io/v1";

/// Marks every object stowage writes (with [`MANAGED_BY_VALUE`]).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "stowage";
/// Which file (its `[velero] owner`) manages an object.
pub const OWNER_LABEL: &str = "stowage.io/owner";
/// Carried by locations declared with `protect = true`, so that a plan made after the
/// entry left the file still knows it was protected.
pub const PROTECT_ANNOTATION: &str = "stowage.io/protect";

/// The Secret and key `velero install` creates, which a location without its own
/// `credential` uses.
pub const INSTALL_SECRET: (&str, &str) = ("cloud-credentials", "cloud");

/// The kinds stowage writes, in apply order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Kind {
    Secret,
    BackupStorageLocation,
    VolumeSnapshotLocation,
    Schedule,
    Deployment,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Secret,
        Kind::BackupStorageLocation,
        Kind::VolumeSnapshotLocation,
        Kind::Schedule,
        Kind::Deployment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Secret => "Secret",
            Kind::BackupStorageLocation => "BackupStorageLocation",
            Kind::VolumeSnapshotLocation => "VolumeSnapshotLocation",
            Kind::Schedule => "Schedule",
            Kind::Deployment => "Deployment",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Secret => "v1",
            Kind::Deployment => "apps/v1",
            _ => API_VERSION,
        }
    }

    pub fn from_kind(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// The Velero kinds: the ones listed as unmanaged when nobody declares them.
    pub fn is_velero(self) -> bool {
        matches!(
            self,
            Kind::BackupStorageLocation | Kind::VolumeSnapshotLocation | Kind::Schedule
        )
    }
}

/// A namespaced object's identity.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ObjectRef {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}
