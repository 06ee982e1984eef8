//! Merging a file over the base it extends, as spanned trees: tables merge by key, the
//! overlay's value wins over the base's, an entry with `drop = true` removes the
//! inherited entry of that name. Every node keeps the span of the file it was written
//! in, so the merged tree's diagnostics point at the base or the overlay as the case
//! may be.

use std::ops::Range;
use std::path::Path;

use super::source::{Entry, Node, NodeValue};
use crate::diagnostic::{Code, Diagnostic};

/// The key that names the base.
const EXTENDS: &str = "extends";
/// The key that drops an inherited entry.
const DROP: &str = "drop";

/// The tables whose entries `drop = true` may remove.
const DROPPABLE: [&str; 4] = [
    "credentials",
    "backup_locations",
    "snapshot_locations",
    "schedules",
];

/// The JSON Schema definitions of those tables' entries, in the same order.
pub const DROPPABLE_DEFINITIONS: [&str; 4] = [
    "Credential",
    "BackupLocation",
    "SnapshotLocation",
    "Schedule",
];

/// The file's `extends` value and its span, when it names a base; a located
/// `stowage::extends` error when it is there but names no file (another type, or
/// empty), since a base silently ignored would make the file declare less.
pub fn extends_of(root: &Node) -> Result<Option<(String, Range<usize>)>, Box<Diagnostic>> {
    let NodeValue::Map(entries) = &root.value else {
        return Ok(None);
    };
    let Some(entry) = entries.iter().find(|entry| entry.key == EXTENDS) else {
        return Ok(None);
    };
    let refuse = |message: String| {
        Box::new(
            Diagnostic::error(Code::Extends, message)
                .with_span(entry.value.span.clone())
                .label("here")
                .help("write the base's path as one string: extends = \"../base.toml\""),
        )
    };
    match &entry.value.value {
        NodeValue::String(path) if path.trim().is_empty() => Err(refuse(
            "`extends` is empty: it names the base file".to_string(),
        )),
        NodeValue::String(path) => Ok(Some((path.to_string(), entry.value.span.clone()))),
        other => Err(refuse(format!(
            "`extends` names one base file as a string, not {}",
            other.describe()
        ))),
    }
}

/// Removes the top-level `extends` once the chain is merged.
pub fn remove_extends(root: &mut Node) {
    if let NodeValue::Map(entries) = &mut root.value {
        entries.retain(|entry| entry.key != EXTENDS);
    }
}

/// Moves every span in `node` by `by` bytes.
pub fn shift(node: &mut Node, by: usize) {
    node.span = node.span.start + by..node.span.end + by;
    match &mut node.value {
        NodeValue::Map(entries) => {
            for entry in entries {
                entry.key_span = entry.key_span.start + by..entry.key_span.end + by;
                shift(&mut entry.value, by);
            }
        }
        NodeValue::List(items) => {
            for item in items {
                shift(item, by);
            }
        }
        _ => {}
    }
}

/// A base's parse diagnostic, moved like its tree.
pub fn shift_diagnostic(mut diagnostic: Diagnostic, by: usize) -> Diagnostic {
    if let Some(span) = &diagnostic.span {
        diagnostic.span = Some(span.start + by..span.end + by);
    }
    diagnostic
}

/// Paths a base names (credential files, CA files) are relative to the base; the
/// merged file reads them from the given file's folder, so they are rewritten to be
/// relative to it: `folder` is the base's folder as seen from there.
pub fn rebase_paths(root: &mut Node, folder: &Path) {
    if folder.as_os_str().is_empty() {
        return;
    }
    let NodeValue::Map(tables) = &mut root.value else {
        return;
    };
    for table in tables {
        let key = match table.key.as_str() {
            "credentials" => "file",
            "backup_locations" => "ca_cert_file",
            _ => continue,
        };
        let NodeValue::Map(entries) = &mut table.value.value else {
            continue;
        };
        for entry in entries {
            let NodeValue::Map(fields) = &mut entry.value.value else {
                continue;
            };
            for field in fields.iter_mut().filter(|field| field.key == key) {
                if let NodeValue::String(path) = &mut field.value.value
                    && Path::new(path.as_str()).is_relative()
                {
                    *path = folder.join(path.as_str()).display().to_string().into();
                }
            }
        }
    }
}

/// `overlay` over `base`.
pub fn merge(base: Node, overlay: Node, diagnostics: &mut Vec<Diagnostic>) -> Node {
    merge_at(base, overlay, &[], diagnostics)
}

fn is_drop(node: &Node) -> bool {
    matches!(&node.value, NodeValue::Map(fields) if fields.iter().any(|f| f.key == DROP && f.value.value == NodeValue::Bool(true)))
}

fn merge_at(base: Node, overlay: Node, path: &[&str], diagnostics: &mut Vec<Diagnostic>) -> Node {
    match (base.value, overlay.value) {
        (NodeValue::Map(base_entries), NodeValue::Map(overlay_entries)) => {
            let droppable = path.len() == 1 && DROPPABLE.contains(&path[0]);
            let mut merged: Vec<Entry> = base_entries;
            for entry in overlay_entries {
                let position = merged.iter().position(|e| e.key == entry.key);
                if droppable && is_drop(&entry.value) {
                    match position {
                        Some(index) => {
                            merged.remove(index);
                        }
                        None => diagnostics.push(
                            Diagnostic::error(
                                Code::Extends,
                                format!(
                                    "`{}` drops `{}`, which no base declares",
                                    path[0], entry.key
                                ),
                            )
                            .with_span(entry.key_span.clone())
                            .label("nothing to drop")
                            .help("remove the entry, or check its name against the base"),
                        ),
                    }
                    continue;
                }
                match position {
                    Some(index) => {
                        let inherited = merged.remove(index);
                        let mut child_path = path.to_vec();
                        child_path.push(&entry.key);
                        let value =
                            merge_at(inherited.value, entry.value, &child_path, diagnostics);
                        merged.insert(
                            index,
                            Entry {
                                key: entry.key,
                                key_span: entry.key_span,
                                value,
                            },
                        );
                    }
                    None => merged.push(entry),
                }
            }
            Node {
                span: overlay.span,
                value: NodeValue::Map(merged),
            }
        }
        (NodeValue::Map(_), value) if !matches!(value, NodeValue::Null) => {
            diagnostics.push(
                Diagnostic::error(
                    Code::Extends,
                    format!(
                        "`{}` is a table in the base, but {} here",
                        path.join("."),
                        value.describe()
                    ),
                )
                .with_span(overlay.span.clone())
                .label("a table is inherited here")
                .help("set the table's keys one by one, or `drop = true` to remove an inherited entry"),
            );
            Node {
                span: overlay.span,
                value,
            }
        }
        (base_value, value)
            if !matches!(base_value, NodeValue::Map(_))
                && matches!(value, NodeValue::Map(_))
                && !matches!(base_value, NodeValue::Null) =>
        {
            diagnostics.push(
                Diagnostic::error(
                    Code::Extends,
                    format!(
                        "`{}` is {} in the base, but a table here",
                        path.join("."),
                        base_value.describe()
                    ),
                )
                .with_span(overlay.span.clone())
                .label("not a table in the base"),
            );
            Node {
                span: overlay.span,
                value,
            }
        }
        // Anything else: the overlay's value replaces the base's (lists included).
        (_, value) => Node {
            span: overlay.span,
            value,
        },
    }
}
