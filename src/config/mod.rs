//! The desired-state file: its model, its text and tree, and loading it from disk.
//!
//! `model` is plain data; `source` parses TOML (through `toml_tree`) or YAML into a
//! spanned tree; `shape` checks that tree against the model's JSON Schema; `load` is the
//! only part that touches the file system or the environment.

mod decode;
pub mod load;
pub mod merge;
pub mod model;
pub mod shape;
pub mod source;
mod toml_tree;

pub use model::*;
