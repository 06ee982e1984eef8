//! stowage keeps a cluster's Velero configuration (backup storage locations, volume
//! snapshot locations, their credentials and schedules) in one file in git.
//!
//! The crate follows the pipeline, each stage a module:
//!
//! - [`config`] loads the file (TOML or YAML) into a spanned tree and a typed model;
//!   [`validate`] checks it against every rule Velero enforces late; [`render`] turns
//!   it into the Kubernetes objects it declares ([`crd`] holds Velero's kinds).
//! - [`observe`] is what the cluster and the buckets hold, as plain data; [`cluster`]
//!   (kube) and [`buckets`] (object_store) are the I/O edges that fill it and write.
//! - [`plan`] compares declared with observed; [`import`] turns observed into a file;
//!   [`copies`] judges whether each copy of each declared schedule lands.
//! - [`engine`] strings the stages into the single-cluster pipeline (check, observe,
//!   plan once, save and verify plans, apply, converge, wait) that every front end
//!   calls: the command line ([`cli`]), the daemon ([`watch`]), tests and benches.
//! - [`report`] shows results: diagnostics, plans, applies, status, the daemon's logs.
//!
//! Underneath all of them, [`velero`] is Velero's vocabulary (kinds, labels, plugins,
//! Go durations, cron, the server's flags), [`diagnostic`] the findings every stage
//! reports, [`secret`] the wrapper that keeps credential values out of output, and
//! [`input`] the one reader of the files people name (regular files only, bounded, and
//! stamped so that a change anywhere in a file's inputs is seen).
//! validate, render and plan are pure: no I/O. Which module may use which is written
//! in ARCHITECTURE.md and checked by `tests/it/layering.rs`.

pub mod buckets;
pub mod build;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod copies;
pub mod crd;
pub mod diagnostic;
pub mod drills;
pub mod engine;
pub mod import;
pub mod input;
pub mod observe;
pub mod plan;
pub mod render;
pub mod report;
pub mod secret;
pub mod validate;
pub mod velero;
pub mod watch;
