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
                path.push_str(&entry.key);
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
