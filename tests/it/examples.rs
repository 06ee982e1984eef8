//! The shipped examples: each validates with no diagnostic at all, and the YAML twin
//! loads to the same model as its TOML.

use crate::support::{diagnose, example_files, examples_dir};

#[test]
fn every_example_validates_clean() {
    let files = example_files();
    assert!(
        files.len() >= 8,
        "expected the use-case examples, found {files:?}"
    );
    for file in files {
        let found = diagnose(&file);
        assert!(found.is_empty(), "{}: {found:#?}", file.display());
    }
}

#[test]
fn yaml_twin_loads_to_the_same_model() {
    let dir = examples_dir();
    let toml = stowage::config::load::load(&dir.join("redundant-schedules.toml")).expect("toml");
    let yaml = stowage::config::load::load(&dir.join("redundant-schedules.yaml")).expect("yaml");
    assert!(toml.diagnostics.is_empty() && yaml.diagnostics.is_empty());
    let (toml, yaml) = (
        toml.config.expect("toml model"),
        yaml.config.expect("yaml model"),
    );
    assert_eq!(toml, yaml);
    // Not two empty models: the twin really carries the content.
    assert_eq!(toml.backup_locations.len(), 2);
    let production = &toml.schedules["production"];
    assert_eq!(
        production
            .template
            .hooks
            .as_ref()
            .map(|h| h.resources.len()),
        Some(1)
    );
}

#[test]
fn examples_reference_the_committed_schema() {
    for file in example_files() {
        let text = std::fs::read_to_string(&file).expect("read example");
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first == "#:schema ../schema/stowage.schema.json"
                || first == "# yaml-language-server: $schema=../schema/stowage.schema.json",
            "{} does not start with a schema reference",
            file.display()
        );
    }
}
