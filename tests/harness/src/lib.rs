//! A Kubernetes API server for stowage's tests, faithful where stowage depends on it.
//! Test support only: it never ships in the `stowage` binary.
//!
//! - `fieldpath`, `ssa`: field ownership and server-side apply, checked against the
//!   worked examples of `../shared/reference/ssa-semantics.md` §6;
//! - `structural`: a CRD's structural schema applied to objects (pruning, defaults,
//!   field errors);
//! - `resources`, `store`, `selector`, `status`, `server`: the HTTP API (discovery,
//!   verbs, paging, watches, tables) over an in-memory store;
//! - `hooks`: request counters and fault injection for tests;
//! - `simulator`: Velero's controllers, as far as tests need their verdicts.

pub mod fieldpath;
pub mod hooks;
pub mod resources;
pub mod selector;
pub mod server;
pub mod simulator;
pub mod ssa;
pub mod status;
pub mod store;
pub mod structural;

pub use hooks::{Effect, Fault, Route, Verb};
pub use server::{Config, TestServer};

/// Where `../shared` is: `STOWAGE_SHARED`, else next to the repository.
pub fn shared_dir() -> std::path::PathBuf {
    std::env::var_os("STOWAGE_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// Velero's CRDs in `../shared/velero-crds`.
pub fn velero_crds() -> std::path::PathBuf {
    shared_dir().join("velero-crds")
}
