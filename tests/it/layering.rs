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
    ("crd", 1),
    ("config", 2),
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

/// The top-level modules a file's code names, read by parsing it: `root` is the name
/// the crate goes by there (`crate`, or `stowage` from outside), and `module` the
/// file's module path inside the crate (`["plan", "live"]` for `src/plan/live.rs`),
/// against which `super::` and `self::` resolve. `use` groups (`crate::{a, b}`),
/// nested modules and every path in expressions and types count; comments do not.
fn uses(text: &str, root: &str, module: &[String]) -> BTreeSet<String> {
    use syn::visit::Visit;

    struct Paths<'a> {
        root: &'a str,
        /// The module the visitor is in (inline `mod` blocks push onto it).
        module: Vec<String>,
        found: BTreeSet<String>,
    }

    impl Paths<'_> {
        /// The top-level module a path names, from its leading segments.
        fn top(&self, segments: &[String]) -> Option<String> {
            let first = segments.first()?;
            if first == self.root || (self.root == "crate" && first == "crate") {
                return segments.get(1).cloned();
            }
            let (base, rest) = match first.as_str() {
                "self" => (self.module.clone(), &segments[1..]),
                "super" => {
                    let ups = segments.iter().take_while(|s| *s == "super").count();
                    let kept = self.module.len().saturating_sub(ups);
                    (self.module[..kept].to_vec(), &segments[ups..])
                }
                _ => return None,
            };
            if self.root != "crate" {
                return None;
            }
            base.first().cloned().or_else(|| rest.first().cloned())
        }

        fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
            match tree {
                syn::UseTree::Path(path) => {
                    prefix.push(path.ident.to_string());
                    self.use_tree(prefix, &path.tree);
                    prefix.pop();
                }
                syn::UseTree::Group(group) => {
                    for item in &group.items {
                        self.use_tree(prefix, item);
                    }
                }
                syn::UseTree::Name(name) => {
                    prefix.push(name.ident.to_string());
                    self.record(prefix);
                    prefix.pop();
                }
                syn::UseTree::Rename(rename) => {
                    prefix.push(rename.ident.to_string());
                    self.record(prefix);
                    prefix.pop();
                }
                syn::UseTree::Glob(_) => {
                    prefix.push("*".to_string());
                    self.record(prefix);
                    prefix.pop();
                }
            }
        }

        fn record(&mut self, segments: &[String]) {
            if let Some(top) = self.top(segments).filter(|t| t != "*" && t != "self") {
                self.found.insert(top);
            }
        }
    }

    impl<'ast> Visit<'ast> for Paths<'_> {
        fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
            self.use_tree(&mut Vec::new(), &item.tree);
        }

        fn visit_path(&mut self, path: &'ast syn::Path) {
            let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.record(&segments);
            syn::visit::visit_path(self, path);
        }

        fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
            self.module.push(item.ident.to_string());
            syn::visit::visit_item_mod(self, item);
            self.module.pop();
        }

        // Paths inside macro calls (`format!`, `json!`) are tokens, not syntax: read
        // the ones that look like paths.
        fn visit_macro(&mut self, mac: &'ast syn::Macro) {
            fn flatten(stream: proc_macro2::TokenStream, out: &mut Vec<String>) {
                for token in stream {
                    match token {
                        proc_macro2::TokenTree::Group(group) => flatten(group.stream(), out),
                        other => out.push(other.to_string()),
                    }
                }
            }
            let mut tokens = Vec::new();
            flatten(mac.tokens.clone(), &mut tokens);
            for (index, token) in tokens.iter().enumerate() {
                let starts = token == self.root || token == "super" || token == "crate";
                if starts && tokens.get(index + 1).is_some_and(|t| t == ":") {
                    let path: Vec<String> = tokens[index..]
                        .iter()
                        .filter(|t| *t != ":")
                        .take(4)
                        .cloned()
                        .collect();
                    self.record(&path);
                }
            }
            syn::visit::visit_macro(self, mac);
        }
    }

    let file = syn::parse_file(text).unwrap_or_else(|e| panic!("cannot parse: {e}"));
    let mut paths = Paths {
        root,
        module: module.to_vec(),
        found: BTreeSet::new(),
    };
    paths.visit_file(&file);
    paths.found
}

/// The module path of a file inside the crate (`src/plan/live.rs` → `plan::live`,
/// `src/plan/mod.rs` → `plan`); `None` for the crate's root files.
fn module_of(root: &Path, file: &Path) -> Option<Vec<String>> {
    let relative = file.strip_prefix(root).ok()?;
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .filter_map(|c| c.as_os_str().to_str().map(str::to_string))
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    (!matches!(parts.as_slice(), [only] if only == "lib" || only == "main")).then_some(parts)
}

fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(path) = module_of(&root, &file) else {
            continue;
        };
        let module = path[0].clone();
        let text = std::fs::read_to_string(&file).unwrap();
        let used = uses(&text, "crate", &path);
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
    // The reader finds paths in code, `use` groups, `super::` from nested files and
    // modules, and paths in macros, and skips comments.
    let text = "use crate::plan::Plan;\nuse crate::{copies, report::status};\n// crate::engine in a comment\nfn f() { let x = crate::cli::main(); }\nuse super::super::watch::Daemon;\nmod inner { use super::super::buckets; }\nfn g() { format!(\"{}\", crate::drills::rfc3339(now)); }";
    let module = ["plan".to_string(), "live".to_string()];
    assert_eq!(
        uses(text, "crate", &module),
        ["plan", "copies", "report", "cli", "watch", "drills"]
            .map(str::to_string)
            .into_iter()
            .collect::<BTreeSet<_>>()
    );
    // From `plan::live`, `super::super::buckets` inside `mod inner` is `plan`.
    assert_eq!(
        uses(
            "mod inner { use super::super::super::buckets; }",
            "crate",
            &module
        ),
        BTreeSet::from(["buckets".to_string()])
    );
    assert_eq!(
        uses(
            "fn f() { json!({\"a\": [crate::watch::x()]}); }",
            "crate",
            &module
        ),
        BTreeSet::from(["watch".to_string()])
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
        .filter(|file| {
            uses(&std::fs::read_to_string(file).unwrap(), "stowage", &[]).contains("cli")
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(users.is_empty(), "use the engine, not cli: {users:?}");
}
