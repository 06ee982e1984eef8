//! The shipped examples: each validates with no diagnostic at all, and the YAML twin
//! loads to the same model as its TOML.

use crate::support::{diagnose_example, example_files, examples_dir};

/// The example whose credentials are SOPS-encrypted for the examples' test key.
const SOPS_EXAMPLE: &str = "sops.toml";

/// Every example validates with no error. The plaintext credential files under
/// examples/secrets are committed on purpose, as samples, so in a git checkout each
/// gets its `plaintext-credential` warning, and nothing else is said.
#[test]
fn every_example_validates_clean() {
    let files = example_files();
    assert!(
        files.len() >= 9,
        "expected the use-case examples, found {files:?}"
    );
    let in_git = examples_dir().join("../.git").exists();
    let mut warned = 0;
    for file in files {
        let found = diagnose_example(&file);
        for diagnostic in &found {
            assert!(
                diagnostic.code == stowage::diagnostic::Code::PlaintextCredential && in_git,
                "{}: {found:#?}",
                file.display()
            );
        }
        warned += found.len();
    }
    if in_git {
        // own-credentials.toml (2), azure.toml (1), two-regions...: the samples that
        // show a credential file.
        assert!(warned >= 3, "{warned} plaintext warnings");
    }
}

/// README's first command validates clean: the headline example keeps its
/// credentials in a Secret managed elsewhere, so a newcomer meets no warning.
#[test]
fn the_readme_first_example_validates_without_a_warning() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let first = readme
        .lines()
        .find(|line| line.starts_with("cargo run -- validate -f "))
        .expect("README's run command");
    let file = first
        .trim_start_matches("cargo run -- validate -f ")
        .split_whitespace()
        .next()
        .unwrap();
    let found = diagnose_example(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file));
    assert!(found.is_empty(), "{file}: {found:#?}");
}

/// The SOPS example validates with the examples' test key, found as sops finds it, and
/// its credentials pass the providers' format checks once decrypted.
#[test]
fn the_sops_example_validates_with_its_test_key_and_not_without() {
    let validate = |key: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_stowage"));
        command
            .current_dir(examples_dir())
            .args(["validate", "-f", SOPS_EXAMPLE, "--format", "json"])
            .env_remove("SOPS_AGE_KEY")
            .env_remove("SOPS_AGE_KEY_FILE")
            .env_remove("SOPS_AGE_KEY_CMD")
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", examples_dir().join("no-such-home"));
        if let Some(key) = key {
            command.env("SOPS_AGE_KEY_FILE", key);
        }
        let out = command.output().unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), report)
    };
    let (code, report) = validate(Some("secrets/age-test-key.txt"));
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["diagnostics"], serde_json::json!([]), "{report:#}");
    let (code, report) = validate(None);
    assert_eq!(code, Some(1));
    let codes: Vec<&str> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["stowage::sops"; 3], "{report:#}");
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

/// The fleet's base names the full schema, each cluster's overlay the overlay schema,
/// and both paths lead to the committed files.
#[test]
fn fleet_files_reference_the_schema_for_their_role() {
    let fleet = examples_dir().join("fleet");
    let base = fleet.join("base/base.toml");
    let mut files = vec![(base, "stowage.schema.json")];
    for cluster in std::fs::read_dir(fleet.join("clusters")).unwrap() {
        files.push((
            cluster.unwrap().path().join("stowage.toml"),
            "stowage-overlay.schema.json",
        ));
    }
    for (file, schema) in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let reference = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("#:schema "))
            .unwrap_or_else(|| panic!("{} names no schema", file.display()));
        assert!(
            reference.ends_with(schema),
            "{}: {reference}",
            file.display()
        );
        assert!(
            file.parent().unwrap().join(reference).is_file(),
            "{}: {reference} is not there",
            file.display()
        );
    }
}

#[test]
fn the_alerting_rules_use_only_metrics_the_daemon_exports() {
    let text =
        std::fs::read_to_string(crate::support::examples_dir().join("deploy/prometheusrule.yaml"))
            .unwrap();
    let rule: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    // A daemon's metrics with one copy and one fight, so that every series exists.
    let mut health = stowage::watch::http::Health::default();
    health.copies.push(stowage::copies::CopyStatus {
        schedule: "nightly".into(),
        location: Some("dr".into()),
        velero_schedule: "nightly-dr".into(),
        verdict: stowage::copies::Verdict::Behind,
        reason: None,
        last_backup: None,
        last_success: None,
        bucket_check: None,
        drill: Some(stowage::drills::DrillRecord::untested(
            chrono::Utc::now(),
            "no Completed backup of this copy yet",
        )),
        recovery_point_age: Some(chrono::Duration::hours(3)),
        rpo: Some(chrono::Duration::hours(5)),
        recoverability: Some("never drilled".into()),
    });
    health.fight = Some(stowage::engine::fights::Backoff {
        object: stowage::velero::ObjectRef {
            kind: stowage::velero::Kind::BackupStorageLocation,
            namespace: "velero".into(),
            name: "primary".into(),
        },
        field: stowage::velero::FieldPath::of(["spec", "objectStorage", "prefix"]),
        managers: vec!["kubectl-edit".into()],
        rounds: 3,
        wait: std::time::Duration::from_secs(1),
        ends: std::time::Instant::now() + std::time::Duration::from_secs(60),
    });
    let exported = stowage::watch::http::metrics_text(&health);
    let mut used = 0;
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for alert in group["rules"].as_array().unwrap() {
            let expr = alert["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("stowage_") {
                    used += 1;
                    assert!(
                        exported.contains(&format!("\n{word}{{"))
                            || exported.contains(&format!("\n{word} ")),
                        "{} uses {word}, which the daemon does not export:\n{exported}",
                        alert["alert"]
                    );
                }
            }
        }
    }
    assert!(used >= 5, "{used}");
    for verdict in ["behind", "missing"] {
        assert!(text.contains(&format!("verdict=\"{verdict}\"")));
    }
}
