//! stowage's one integration test binary; one module per theme.

mod support;

mod cli;
mod examples;
mod loader_never_panics;
mod schema;
mod validate_codes;
