//! Shared definitions: a base and overlays that extend it render exactly like the
//! equivalent flat files, and every mistake is located in the file that made it.

use std::path::Path;

use stowage::diagnostic::Code;

use crate::support::{assert_exit, diagnose};

const BASE: &str = r#"version = 1

[credentials.aws]
file = "secrets/aws.ini"

[backup_locations.primary]
provider = "aws"
bucket = "velero-backups"
prefix = "base"
default = true
credential = "aws"
config = { region = "us-east-1" }

[schedules.nightly]
cron = "0 1 * * *"
storage_location = "primary"
ttl = "720h"

[schedules.weekly]
cron = "@weekly"
storage_location = "primary"
"#;

const AWS_INI: &str =
    "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = not-a-real-key\n";

/// (overlay, the flat file it must equal), per cluster.
fn clusters() -> Vec<(&'static str, String, String)> {
    let flat = |prefix: &str, region: &str, weekly: bool, dr: bool| {
        let mut text = BASE
            .replace("prefix = \"base\"", &format!("prefix = \"{prefix}\""))
            .replace("region = \"us-east-1\"", &format!("region = \"{region}\""))
            .replace(
                "file = \"secrets/aws.ini\"",
                "file = \"../secrets/aws.ini\"",
            );
        if !weekly {
            let at = text.find("[schedules.weekly]").unwrap();
            text.truncate(at);
        }
        if dr {
            text.push_str("\n[backup_locations.dr]\nprovider = \"aws\"\nbucket = \"velero-dr\"\ncredential = \"aws\"\nconfig = { region = \"eu-central-1\" }\n");
        }
        text
    };
    vec![
        (
            "us.toml",
            "extends = \"../base.toml\"\n\n[backup_locations.primary]\nprefix = \"us\"\n".to_string(),
            flat("us", "us-east-1", true, false),
        ),
        (
            "eu.yaml",
            "extends: ../base.toml\nbackup_locations:\n  primary:\n    prefix: eu\n    config: {region: eu-west-1}\nschedules:\n  weekly:\n    drop: true\n".to_string(),
            flat("eu", "eu-west-1", false, false),
        ),
        (
            "ap.toml",
            "extends = \"../base.toml\"\n\n[backup_locations.primary]\nprefix = \"ap\"\n\n[backup_locations.dr]\nprovider = \"aws\"\nbucket = \"velero-dr\"\ncredential = \"aws\"\nconfig = { region = \"eu-central-1\" }\n".to_string(),
            flat("ap", "us-east-1", true, true),
        ),
    ]
}

fn render(path: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["render", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn overlays_render_exactly_like_the_equivalent_flat_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("clusters")).unwrap();
    std::fs::create_dir_all(dir.path().join("flat")).unwrap();
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/aws.ini"), AWS_INI).unwrap();
    std::fs::write(dir.path().join("base.toml"), BASE).unwrap();
    for (name, overlay, flat) in clusters() {
        let overlay_path = dir.path().join("clusters").join(name);
        std::fs::write(&overlay_path, overlay).unwrap();
        let flat_path = dir.path().join("flat").join(name.replace(".yaml", ".toml"));
        std::fs::write(&flat_path, flat).unwrap();
        assert!(
            diagnose(&overlay_path).is_empty(),
            "{name}: {:#?}",
            diagnose(&overlay_path)
        );
        assert_eq!(render(&overlay_path), render(&flat_path), "{name}");
    }
    // --explain says where each effective value was written.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["validate", "--explain", "-f"])
        .arg(dir.path().join("clusters/us.toml"))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let explained = String::from_utf8_lossy(&out.stdout);
    let line = |key: &str| {
        explained
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{key} in {explained}"))
            .to_string()
    };
    assert!(
        line("backup_locations.primary.prefix = \"us\"").ends_with("clusters/us.toml:4"),
        "{explained}"
    );
    assert!(
        line("backup_locations.primary.bucket = ").ends_with("base.toml:8"),
        "{explained}"
    );
    assert!(!explained.contains("clusters/../"), "{explained}");
}

#[test]
fn mistakes_are_located_in_the_file_that_made_them() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    };
    write("secrets/aws.ini", AWS_INI);
    // A misspelt key in the base (line 15), a wrong value in the overlay (line 4).
    write(
        "base.toml",
        &BASE.replace("ttl = \"720h\"", "tll = \"720h\""),
    );
    let overlay = write(
        "clusters/a.toml",
        "extends = \"../base.toml\"\n\n[backup_locations.primary]\ndefault = \"yes\"\n",
    );
    let found = diagnose(&overlay);
    let shown = format!("{found:#?}");
    assert_eq!(found.len(), 2, "{shown}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["validate", "--format", "json", "-f"])
        .arg(&overlay)
        .output()
        .unwrap();
    let document: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let places: Vec<(String, u64)> = document["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                Path::new(d["file"].as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                d["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(places.contains(&("a.toml".to_string(), 4)), "{places:?}");
    assert!(
        places.contains(&("base.toml".to_string(), 17)),
        "{places:?}"
    );

    // A table replaced by a string, a drop of nothing, a missing base, a cycle.
    let cases = [
        (
            "clash.toml",
            "extends = \"../base.toml\"\nbackup_locations = \"none\"\n",
            "is a table in the base",
        ),
        (
            "nothing.toml",
            "extends = \"../base.toml\"\n[schedules.monthly]\ndrop = true\n",
            "which no base declares",
        ),
        (
            "missing.toml",
            "extends = \"../nowhere.toml\"\n",
            "cannot read the base",
        ),
        ("loop.toml", "extends = \"loop2.toml\"\n", "a cycle"),
    ];
    write(
        "clusters/loop2.toml",
        "extends = \"loop.toml\"\nversion = 1\n",
    );
    for (name, text, why) in cases {
        let path = write(&format!("clusters/{name}"), text);
        let found = diagnose(&path);
        let extends: Vec<_> = found.iter().filter(|f| f.code == Code::Extends).collect();
        assert_eq!(extends.len(), 1, "{name}: {found:#?}");
        assert!(
            extends[0].message.contains(why),
            "{name}: {}",
            extends[0].message
        );
        assert!(extends[0].line > 0, "{name}: located");
    }
}
