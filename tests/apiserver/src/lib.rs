//! A Kubernetes API server for stowage's tests, faithful where stowage depends on it.
//! Test support only: it never ships in the `stowage` binary.
//!
//! So far: field paths and `FieldsV1` (`fieldpath`); server-side apply's ownership
//! rules (`ssa`), checked against the worked examples of
//! `../shared/reference/ssa-semantics.md` §6; and CRD structural schemas applied to
//! objects (`structural`: pruning, defaults, field errors). The HTTP server is still to
//! come.

pub mod fieldpath;
pub mod ssa;
pub mod structural;
