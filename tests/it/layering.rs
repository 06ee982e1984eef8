//! The crate's layering, as ARCHITECTURE.md states it: each top-level module may use
//! only modules in lower layers, so there is no import cycle, and nothing but
//! `main.rs` uses `cli`. Read from the sources' `crate::` paths (comments skipped).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module's layer; a module may use only modules of a lower layer.
const LAYERS: &[(&str, u32)] = &[
    ("input", 0),
    ("build", 0),
    ("diagnostic", 1),
    ("secret", 1),
    ("velero", 1),
    ("config", 2),
    ("crd", 3),
    ("validate", 3),
    ("render", 4),
    ("observe", 5),
    ("plan", 6),
    ("import", 6),
    ("copies", 6),
    ("drills", 5),
    ("cluster", 7),
    ("buckets", 7),
    ("engine", 8),
    ("report", 9),
    ("watch", 10),
    ("cli", 11),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules each file's code names with `prefix` (`crate::` or
/// `stowage::`), outside comments.
fn uses(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let after = &rest[at + prefix.len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
    }
    found
}

/// Which top-level module each file belongs to (`src/plan/live.rs` → `plan`).
fn module_of(root: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(root).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&root, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let used = uses(&text, "crate::");
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(used.into_iter().filter(|m| *m != module));
    }
    graph
}

/// What in `graph` breaks the layer table.
fn violations(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let layer: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut wrong = Vec::new();
    for (module, used) in graph {
        let Some(&own) = layer.get(module.as_str()) else {
            wrong.push(format!(
                "{module} is not in the layer table (tests/it/layering.rs, ARCHITECTURE.md)"
            ));
            continue;
        };
        for other in used {
            match layer.get(other.as_str()) {
                None => wrong.push(format!("{module} uses {other}, which has no layer")),
                Some(&theirs) if theirs >= own => wrong.push(format!(
                    "{module} (layer {own}) uses {other} (layer {theirs})"
                )),
                Some(_) => {}
            }
        }
    }
    wrong
}

#[test]
fn every_module_uses_only_lower_layers() {
    let graph = dependencies();
    let wrong = violations(&graph);
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
    // Every module the table names exists, so the table cannot rot into allowing
    // anything.
    for (module, _) in LAYERS {
        assert!(graph.contains_key(*module), "no module {module} in src/");
    }
}

#[test]
fn the_check_sees_a_cycle_and_a_use_of_cli() {
    // The reader finds paths in code and skips comments.
    let text = "use crate::plan::Plan;\n// crate::engine in a comment\nlet x = crate::cli::main();";
    assert_eq!(
        uses(text, "crate::"),
        BTreeSet::from(["plan".to_string(), "cli".to_string()])
    );
    // The two cycles the engine removed are refused: observe's bucket checks used
    // plan (which uses observe), and watch used cli (which uses watch).
    let graph = |edges: &[(&str, &str)]| {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in edges {
            graph
                .entry(from.to_string())
                .or_default()
                .insert(to.to_string());
        }
        graph
    };
    let old = graph(&[
        ("observe", "plan"),
        ("plan", "observe"),
        ("watch", "cli"),
        ("cli", "watch"),
    ]);
    let wrong = violations(&old);
    assert!(
        wrong
            .iter()
            .any(|w| w.starts_with("observe (layer 5) uses plan")),
        "{wrong:?}"
    );
    assert!(
        wrong
            .iter()
            .any(|w| w.starts_with("watch (layer 10) uses cli")),
        "{wrong:?}"
    );
    assert_eq!(wrong.len(), 2, "{wrong:?}");
}

#[test]
fn nothing_outside_main_uses_the_command_line_module() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["tests", "benches", "examples"] {
        let path = manifest.join(dir);
        if path.is_dir() {
            sources(&path, &mut files);
        }
    }
    let this = Path::new(file!()).file_name().unwrap().to_owned();
    let users: Vec<String> = files
        .iter()
        .filter(|file| file.file_name() != Some(&this))
        .filter(|file| uses(&std::fs::read_to_string(file).unwrap(), "stowage::").contains("cli"))
        .map(|file| file.display().to_string())
        .collect();
    assert!(users.is_empty(), "use the engine, not cli: {users:?}");
}
