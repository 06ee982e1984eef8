//! `validate --explain`: every effective value of a file that extends others, with the
//! file and line it came from.

use std::io::Write;

use crate::config::source::{Node, NodeValue, SourceMap};

/// One line per value: `path = value  file:line`.
pub fn write(source: &SourceMap, out: &mut impl Write) -> std::io::Result<()> {
    let Some(root) = &source.root else {
        return Ok(());
    };
    let mut lines = Vec::new();
    leaves(root, &mut String::new(), &mut lines);
    let width = lines
        .iter()
        .map(|(left, _)| left.chars().count())
        .max()
        .unwrap_or(0);
    for (left, node) in lines {
        let (_, file, _) = source.file_at(node.span.start);
        let (line, _) = source.line_column(node.span.start);
        writeln!(out, "{left:<width$}  {file}:{line}")?;
    }
    Ok(())
}

fn leaves<'a>(node: &'a Node, path: &mut String, out: &mut Vec<(String, &'a Node)>) {
    match &node.value {
        NodeValue::Map(entries) if !entries.is_empty() => {
            for entry in entries {
                let length = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                // A key that is not plain (a dot, a space, a line break) is quoted, so
                // each value stays on a line of its own and its path reads back.
                let plain = !entry.key.is_empty()
                    && entry
                        .key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '/');
                if plain {
                    path.push_str(&entry.key);
                } else {
                    path.push_str(
                        &serde_json::to_string(entry.key.as_str())
                            .unwrap_or_else(|_| "\"?\"".into()),
                    );
                }
                leaves(&entry.value, path, out);
                path.truncate(length);
            }
        }
        _ => {
            let value = crate::config::shape::to_json(node);
            out.push((format!("{path} = {value}"), node));
        }
    }
}
