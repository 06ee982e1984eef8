//! stowage's one integration test binary; one module per theme.

mod support;

mod cluster;

mod adversary;
mod alerts;
mod buckets;
mod cli;
mod copies;
mod crd_schema;
mod disorder;
mod disorder_live;
mod drills;
mod examples;
mod execution;
mod extends;
mod fleet;
mod kubectl;
mod layering;
mod live;
mod loader_never_panics;
mod node;
mod plan;
mod reconcile;
mod releases;
mod render;
mod schema;
mod sops;
mod spellings;
mod validate_codes;
mod watch;
