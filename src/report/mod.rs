//! Showing results: diagnostics as located, underlined text or as JSON; plans, applies
//! and status as text, markdown or JSON; the daemon's log lines.
//!
//! Renderers only render: they take finished values and write them, deciding nothing.
//! The JSON shapes here are wire types, separate from the internal ones, because they
//! are a promise to pipelines (`FORMAT_VERSION`).

pub mod apply;
pub mod diagnostics;
pub mod drill;
pub mod explain;
pub mod fleet;
pub mod log_format;
pub mod plan;
pub mod status;
pub mod watch;

/// The version of every JSON document stowage prints; bumped only on breaking changes.
pub const FORMAT_VERSION: u32 = 1;
