//! What this binary is: its version and the commit it was built from (stamped by
//! `build.rs`), for `stowage --version` and `stowage_build_info`.

/// The crate's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit this binary was built from, or "unknown".
pub const COMMIT: &str = env!("STOWAGE_COMMIT");

/// `stowage --version`: the version and the commit.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("STOWAGE_COMMIT"),
    ")"
);
