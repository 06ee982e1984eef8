//! Saved plans (`plan --out`): the plan as JSON plus fingerprints of what it was made
//! from, so that `apply PLAN` can refuse a plan whose file or cluster has moved on.
//!
//! A saved plan holds no secret value. The fingerprints are SHA-256 digests over whole
//! inputs (the file with everything it points at; every observed object), never over
//! one secret alone.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::load::{Material, Materials};
use crate::observe::Observed;

pub const KIND: &str = "StowagePlan";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format_version: u32,
    pub kind: String,
    pub stowage_version: String,
    /// The desired-state file, as given on the command line.
    pub file: String,
    /// Digest of the file's text, its credential values and CA files.
    pub inputs_sha256: String,
    /// Where the observed state came from: a saved state's path, or `cluster`.
    pub observed_source: String,
    /// Digest of every observed object's identity, version and content.
    pub observed_sha256: String,
    /// The plan in the JSON shape of `plan --format json`.
    pub plan: serde_json::Value,
    /// Digest of `plan` itself: an edited plan file is refused, not applied.
    pub plan_sha256: String,
}

/// Digest of a saved plan's own content.
pub fn plan_digest(plan: &serde_json::Value) -> String {
    hex(&Sha256::digest(
        serde_json::to_vec(plan).unwrap_or_default(),
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
            Material::Value(value) => {
                hasher.update((value.len() as u64).to_le_bytes());
                hasher.update(value.expose());
            }
            Material::Missing(_) => hasher.update(b"\0missing"),
            Material::External => hasher.update(b"\0external"),
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

fn hash_identity(hasher: &mut Sha256, object: &crate::render::ObjectRef) {
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
