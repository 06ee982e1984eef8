//! Saved plans (`plan --out`): the plan's changes as typed data plus fingerprints of
//! what it was made from, so that `apply PLAN` can refuse a plan whose file or cluster
//! has moved on, or whose changes are not exactly the ones planned again.
//!
//! A saved plan holds no secret value: a secret's field change is `sensitive`, never a
//! value. The fingerprints are SHA-256 digests over whole inputs (the file with
//! everything it points at; every observed object), never over one secret alone.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::load::{self, Material, Materials};
use crate::observe::Observed;
use crate::plan::{Body, Change, OwnedElsewhere, Plan, Request, Summary};
use crate::velero::ObjectRef;

pub const KIND: &str = "StowagePlan";
/// The version of the saved plan's layout; another one is refused, not guessed at.
pub const FORMAT_VERSION: u32 = 4;
/// The largest saved plan stowage reads.
const SAVED_PLAN_LIMIT: u64 = 256 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format_version: u32,
    pub kind: String,
    pub stowage_version: String,
    /// The desired-state file, as given on the command line.
    pub file: String,
    /// Digest of the file's text, its credential values and CA files.
    pub inputs_sha256: String,
    /// Where the observed state came from: a saved state's path, or the cluster's URL.
    pub observed_source: String,
    /// Digest of every observed object's identity, version and content.
    pub observed_sha256: String,
    pub plan: SavedChanges,
    /// Digest of `plan` itself: an edited plan file is refused, not applied.
    pub plan_sha256: String,
}

/// What a plan changes, as saved: everything but its diagnostics and bucket reports
/// (the checks that produced them are not made again when the plan is applied).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedChanges {
    pub namespace: String,
    pub changes: Vec<Change>,
    pub unmanaged: Vec<ObjectRef>,
    pub owned_elsewhere: Vec<OwnedElsewhere>,
    pub summary: Summary,
}

impl SavedChanges {
    pub fn of(plan: &Plan) -> SavedChanges {
        SavedChanges {
            namespace: plan.namespace.clone(),
            changes: plan.changes.clone(),
            unmanaged: plan.unmanaged.clone(),
            owned_elsewhere: plan.owned_elsewhere.clone(),
            summary: plan.summary(),
        }
    }

    /// The same as it compares with a plan made again: without backup counts and
    /// first-backup times, which move with time (Velero backs up, the clock runs;
    /// whether a location holds backups or a schedule fires at once is in the risks),
    /// and with secret values withheld, as a saved plan holds them (whether they
    /// changed is in the inputs' digest).
    fn comparable(&self) -> SavedChanges {
        let mut changes = self.clone();
        for change in &mut changes.changes {
            change.backups = None;
            change.first_backup = None;
            let prepared = change.prepare.as_mut().map(|p| &mut p.request);
            for request in std::iter::once(&mut change.request).chain(prepared) {
                if let Request::Apply {
                    body: Body::Secret { data, .. },
                    ..
                } = request
                {
                    *data = data.withheld();
                }
            }
        }
        changes
    }
}

/// Why a saved plan cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    #[error("cannot read the plan {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a plan saved by `stowage plan --out`: {reason}")]
    NotAPlan {
        path: String,
        reason: String,
        /// Its `kind` says it is one.
        claims: bool,
    },
    #[error(
        "{path} is not a plan this stowage can apply (kind {kind:?}, format {format_version}); run `stowage plan --out` again"
    )]
    Unsupported {
        path: String,
        kind: String,
        format_version: u32,
    },
}

impl SavedPlanError {
    /// Whether the file says it is a saved plan (its `kind` is a stowage plan's), so
    /// that failing to read it is a failure and not another tool's JSON.
    pub fn claims_to_be_a_plan(&self) -> bool {
        match self {
            SavedPlanError::Read { .. } => true,
            SavedPlanError::NotAPlan { claims, .. } => *claims,
            SavedPlanError::Unsupported { kind, .. } => kind == KIND,
        }
    }
}

/// Why a saved plan no longer applies: each says what moved on since it was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    #[error(
        "refusing to apply the saved plan: its content was edited after `stowage plan --out` wrote it; run `stowage plan` again"
    )]
    Edited,
    #[error(
        "refusing to apply the saved plan: {file} or the credentials it reads changed since the plan was made; run `stowage plan` again"
    )]
    Inputs { file: String },
    #[error(
        "refusing to apply the saved plan: the cluster's objects changed since the plan was made; run `stowage plan` again"
    )]
    Cluster,
    #[error(
        "refusing to apply the saved plan: planning again gives different changes; run `stowage plan` again"
    )]
    Changes,
}

impl SavedPlan {
    /// A plan made from `file` (its text is `text`, its materials `materials`) against
    /// `observed`, which came from `observed_source`.
    pub fn new(
        file: &str,
        text: &str,
        materials: &Materials,
        observed: &Observed,
        observed_source: &str,
        plan: &Plan,
    ) -> SavedPlan {
        let changes = SavedChanges::of(plan);
        SavedPlan {
            format_version: FORMAT_VERSION,
            kind: KIND.to_string(),
            stowage_version: env!("CARGO_PKG_VERSION").to_string(),
            file: file.to_string(),
            inputs_sha256: inputs_digest(text, materials),
            observed_source: observed_source.to_string(),
            observed_sha256: observed_digest(observed),
            plan_sha256: plan_digest(&changes),
            plan: changes,
        }
    }

    /// Reads a saved plan, refusing anything that is not one of this version.
    pub fn read(path: &Path) -> Result<SavedPlan, SavedPlanError> {
        let name = path.display().to_string();
        let bytes =
            load::read_bounded(path, SAVED_PLAN_LIMIT).map_err(|source| SavedPlanError::Read {
                path: name.clone(),
                source,
            })?;
        let document: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| SavedPlanError::NotAPlan {
                path: name.clone(),
                reason: e.to_string(),
                claims: false,
            })?;
        let kind = document["kind"].as_str().unwrap_or_default().to_string();
        let format_version = document["format_version"]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0);
        if kind != KIND || format_version != FORMAT_VERSION {
            return Err(SavedPlanError::Unsupported {
                path: name,
                kind,
                format_version,
            });
        }
        serde_json::from_value(document).map_err(|e| SavedPlanError::NotAPlan {
            path: name,
            reason: e.to_string(),
            claims: true,
        })
    }

    /// Whether this plan still applies: its own digest, then the inputs, the observed
    /// state, and the changes a plan made now gives, compared as typed changes.
    pub fn verify(
        &self,
        text: &str,
        materials: &Materials,
        observed: &Observed,
        now: &Plan,
    ) -> Result<(), Stale> {
        if plan_digest(&self.plan) != self.plan_sha256 {
            return Err(Stale::Edited);
        }
        if inputs_digest(text, materials) != self.inputs_sha256 {
            return Err(Stale::Inputs {
                file: self.file.clone(),
            });
        }
        if observed_digest(observed) != self.observed_sha256 {
            return Err(Stale::Cluster);
        }
        if SavedChanges::of(now).comparable() != self.plan.comparable() {
            return Err(Stale::Changes);
        }
        Ok(())
    }
}

/// Digest of a saved plan's content, over its canonical JSON (object keys sorted), so
/// that the same content gives the same digest however the file was laid out.
pub fn plan_digest(plan: &impl Serialize) -> String {
    let canonical = serde_json::to_value(plan).unwrap_or_default();
    hex(&Sha256::digest(
        serde_json::to_vec(&canonical).unwrap_or_default(),
    ))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Digest of the file text and every value it pointed at when loaded.
pub fn inputs_digest(text: &str, materials: &Materials) -> String {
    let mut hasher = Sha256::new();
    hasher.update(text.as_bytes());
    for (name, material) in &materials.credentials {
        hasher.update(b"\0credential\0");
        hasher.update(name.as_bytes());
        match material {
            Material::Value(credential) => {
                let value = credential.value();
                hasher.update((value.len() as u64).to_le_bytes());
                hasher.update(value.expose());
            }
            Material::Missing(_) => hasher.update(b"\0missing"),
            Material::External => hasher.update(b"\0external"),
            Material::Undecryptable(_) => hasher.update(b"\0undecryptable"),
        }
    }
    for (name, contents) in &materials.ca_certs {
        hasher.update(b"\0ca\0");
        hasher.update(name.as_bytes());
        if let Ok(bytes) = contents {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        }
    }
    hex(&hasher.finalize())
}

fn hash_identity(hasher: &mut Sha256, object: &crate::velero::ObjectRef) {
    hasher.update(format!(
        "\0{}/{}/{}\0",
        object.kind.as_str(),
        object.namespace,
        object.name
    ));
}

/// Digest of the observed state: any change to an object's identity, metadata or spec
/// changes it; Velero's status writes (which also move `resourceVersion` and
/// `generation`, there being no status subresource) do not.
pub fn observed_digest(observed: &Observed) -> String {
    let mut hasher = Sha256::new();
    for (object, state) in &observed.objects {
        hash_identity(&mut hasher, object);
        hasher.update(state.uid.as_deref().unwrap_or_default());
        let mut manifest = state.manifest.clone();
        if let Some(metadata) = manifest.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            // Status writes move these on every validation; the spec is what matters.
            metadata.remove("resourceVersion");
            metadata.remove("generation");
        }
        if let Some(map) = manifest.as_object_mut() {
            map.remove("status");
        }
        hasher.update(serde_json::to_vec(&manifest).unwrap_or_default());
    }
    for (object, secret) in &observed.secrets {
        hash_identity(&mut hasher, object);
        hasher.update(secret.uid.as_deref().unwrap_or_default());
        for (key, value) in &secret.data {
            hasher.update(key.as_bytes());
            hasher.update((value.len() as u64).to_le_bytes());
            hasher.update(value.expose());
        }
        for (key, value) in &secret.labels {
            hasher.update(key.as_bytes());
            hasher.update(value.as_bytes());
        }
    }
    for kind in &observed.kinds_seen {
        hasher.update(kind.as_str().as_bytes());
    }
    hex(&hasher.finalize())
}
