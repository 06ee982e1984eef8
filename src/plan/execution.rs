//! How a plan is carried out, decided when it is made: each change's stage and the
//! exact request it sends. `cluster::apply` runs the stages in [`Stage::ORDER`] and
//! sends each request as it is; it derives nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::{Action, Change, Plan};
use crate::crd::VeleroObject;
use crate::secret::SecretValue;
use crate::velero::Kind;

/// A step of an apply. A stage starts once the one before it has fully landed, and
/// after a stage with a failure nothing more is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Credentials first: a location must never be validated against a missing key.
    Credentials,
    /// A location that stops being the default (updated, or giving it up before it is
    /// deleted), before the one that becomes it: Velero never sees two defaults.
    DefaultGiven,
    /// Every other location written: before the schedules that name them.
    Locations,
    /// Schedules, and the server's default-snapshot-location flag.
    Schedules,
    /// Deletions in reverse: schedules before the locations they name,
    ScheduleDeletions,
    /// locations before the credentials they read,
    LocationDeletions,
    /// and the credentials last: deleted, or losing the keys locations read until now.
    CredentialDeletions,
}

impl Stage {
    /// The order apply runs the stages in.
    pub const ORDER: [Stage; 7] = [
        Stage::Credentials,
        Stage::DefaultGiven,
        Stage::Locations,
        Stage::Schedules,
        Stage::ScheduleDeletions,
        Stage::LocationDeletions,
        Stage::CredentialDeletions,
    ];

    /// The stage of a change to an object of `kind`; `gives_up_default` for a location
    /// that is the default now and will not be after the change.
    pub fn of(action: Action, kind: Kind, gives_up_default: bool) -> Stage {
        match (action, kind) {
            (Action::Delete, Kind::Secret) => Stage::CredentialDeletions,
            (Action::Delete, Kind::BackupStorageLocation | Kind::VolumeSnapshotLocation) => {
                Stage::LocationDeletions
            }
            (Action::Delete, _) => Stage::ScheduleDeletions,
            (_, Kind::Secret) => Stage::Credentials,
            (_, Kind::BackupStorageLocation) if gives_up_default => Stage::DefaultGiven,
            (_, Kind::BackupStorageLocation | Kind::VolumeSnapshotLocation) => Stage::Locations,
            (_, _) => Stage::Schedules,
        }
    }
}

/// What a change sends in an earlier stage than its own request, so that Velero
/// never reads what is not there yet or no longer: a default location that is deleted
/// gives the default up before another takes it (and goes only after the schedules
/// that name it have moved); a Secret losing keys gets its new keys at once and loses
/// the old ones only after the locations that read them have moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preparation {
    pub stage: Stage,
    pub request: Request,
}

/// What applying one change sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// A server-side apply of `body` with field manager `stowage`; then, when set, a
    /// JSON merge patch of nulls for the fields the file no longer sets that another
    /// manager owns (server-side apply never removes those).
    Apply {
        body: Body,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remove: Option<Value>,
    },
    /// A JSON merge patch with field manager `stowage`.
    MergePatch { patch: Value },
    /// A delete, on condition that the object is still the one observed.
    Delete { uid: Option<String> },
}

/// The object a server-side apply sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// A declared Velero object, exactly as sent (shared with the rendered state it
    /// comes from).
    Velero(std::sync::Arc<VeleroObject>),
    /// Another object's fields, exactly as sent (the Velero Deployment's arguments).
    Object(Value),
    /// A Secret with only the declared keys; encoded as Kubernetes takes it only when
    /// sent.
    Secret {
        labels: BTreeMap<String, String>,
        data: SecretData,
    },
}

/// A Secret's data in a plan: the values in a plan made now, only the keys in a plan
/// read back from a file. A saved plan holds no secret value, so it serializes as the
/// list of keys, and a withheld value is never sent.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretData {
    Values(BTreeMap<String, SecretValue>),
    Withheld(Vec<String>),
}

impl SecretData {
    pub fn keys(&self) -> Vec<String> {
        match self {
            SecretData::Values(values) => values.keys().cloned().collect(),
            SecretData::Withheld(keys) => keys.clone(),
        }
    }

    /// The same data as a saved plan holds it.
    pub fn withheld(&self) -> SecretData {
        SecretData::Withheld(self.keys())
    }
}

impl Serialize for SecretData {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.keys().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SecretData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(deserializer).map(SecretData::Withheld)
    }
}

/// The steps of one stage: each change with the request it sends then.
pub type Steps<'a> = Vec<(&'a Change, &'a Request)>;

impl Plan {
    /// The plan as apply runs it: the non-empty stages in [`Stage::ORDER`], each with
    /// the preparations and requests sent in it, all at once.
    pub fn execution(&self) -> Vec<(Stage, Steps<'_>)> {
        Stage::ORDER
            .iter()
            .map(|stage| {
                let prepared = self.changes.iter().filter_map(|change| {
                    let prepare = change.prepare.as_ref()?;
                    (prepare.stage == *stage).then_some((change, &prepare.request))
                });
                let requested = self
                    .changes
                    .iter()
                    .filter(|change| change.stage == *stage)
                    .map(|change| (change, &change.request));
                (*stage, prepared.chain(requested).collect::<Steps<'_>>())
            })
            .filter(|(_, steps)| !steps.is_empty())
            .collect()
    }
}
