//! stowage keeps a cluster's Velero configuration (backup storage locations, volume
//! snapshot locations, their credentials and schedules) in one file in git.
//!
//! The pipeline: [`config::load`] reads the file, [`validate`] checks it against every
//! rule Velero enforces late, and [`report`] shows the result. `cli` ties them to the
//! command line; `main.rs` only calls it.

pub mod cli;
pub mod cluster;
pub mod config;
pub mod crd;
pub mod diagnostic;
pub mod import;
pub mod observe;
pub mod plan;
pub mod render;
pub mod report;
pub mod secret;
pub mod validate;
pub mod watch;
