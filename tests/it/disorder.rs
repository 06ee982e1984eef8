//! The cases "Safe under disorder" found, one named test each (the generators in
//! `spellings.rs` and `adversary.rs` try their families). These need no cluster, or
//! only a listener that never answers.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::assert_exit;

const LOCATION: &str = "[backup_locations.primary]\nprovider = \"aws\"\nbucket = \"velero-b\"\ndefault = true\nconfig = { region = \"us-east-1\" }\n";

fn stowage(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stowage"))
        .current_dir(dir)
        .args(args)
        .env_remove("STOWAGE_FILE")
        .env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY_CMD")
        .env("HOME", dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn extends_of_any_type_but_a_path_is_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("base.toml"),
        format!("version = 1\n{LOCATION}"),
    )
    .unwrap();
    for value in [
        "[\"base.toml\"]",
        "{ file = \"base.toml\" }",
        "3",
        "true",
        "\"\"",
    ] {
        std::fs::write(
            dir.path().join("stowage.toml"),
            format!("extends = {value}\nversion = 1\n"),
        )
        .unwrap();
        let out = stowage(dir.path(), &["validate", "--format", "json"]);
        assert_exit(&out, 1);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let first = &report["diagnostics"][0];
        assert_eq!(first["code"], "stowage::extends", "{value}: {report:#}");
        assert_eq!(first["line"], 1, "{value}: {report:#}");
        assert_eq!(first["column"], 11, "{value}: {report:#}");
    }
}

#[test]
fn yaml_1_1_booleans_as_keys_are_refused_asking_for_quotes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stowage.yaml"),
        "version: 1\nbackup_locations:\n  y:\n    provider: aws\n    bucket: velero-b\n    default: true\n    config: {region: us-east-1}\n",
    )
    .unwrap();
    let out = stowage(
        dir.path(),
        &["validate", "-f", "stowage.yaml", "--format", "json"],
    );
    assert_exit(&out, 1);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = &report["diagnostics"][0];
    assert_eq!(first["code"], "stowage::parse", "{report:#}");
    assert_eq!(
        (first["line"].as_u64(), first["column"].as_u64()),
        (Some(3), Some(3))
    );
    assert!(
        first["message"].as_str().unwrap().contains("quote"),
        "{report:#}"
    );
    // Rendering refuses it too: no object named `true` is ever produced.
    let out = stowage(dir.path(), &["render", "-f", "stowage.yaml"]);
    assert_exit(&out, 1);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("name: 'true'"));
}

#[test]
fn a_sops_file_cut_before_its_metadata_is_refused_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let encrypted =
        std::fs::read_to_string(crate::support::examples_dir().join("secrets/aws.sops.ini"))
            .unwrap();
    let cut = &encrypted[..encrypted.find("[sops]").expect("a sops section")];
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/aws.ini"), cut).unwrap();
    std::fs::write(
        dir.path().join("stowage.toml"),
        format!("version = 1\n[credentials.cloud]\nfile = \"secrets/aws.ini\"\n{LOCATION}credential = \"cloud\"\n"),
    )
    .unwrap();
    let out = stowage(dir.path(), &["validate", "--format", "json"]);
    assert_exit(&out, 1);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["diagnostics"][0]["code"], "stowage::sops",
        "{report:#}"
    );
    assert_eq!(report["diagnostics"][0]["line"], 3, "{report:#}");
    assert_eq!(
        report["diagnostics"][0]["path"], "credentials.cloud.file",
        "{report:#}"
    );
    // And the ciphertext never becomes a Secret's data.
    let out = stowage(dir.path(), &["render"]);
    assert_exit(&out, 1);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ENC["));
}

#[test]
fn render_writes_nothing_through_links_and_removes_only_what_it_recorded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stowage.toml"),
        format!("version = 1\n{LOCATION}"),
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, "mine\n").unwrap();

    // A symlink, then a hard link, at the name render writes: refused, nothing written.
    let name = out_dir.join("backupstoragelocation-primary.yaml");
    std::os::unix::fs::symlink(&outside, &name).unwrap();
    let out = stowage(dir.path(), &["render", "-o", "out"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    std::fs::remove_file(&name).unwrap();
    std::fs::hard_link(&outside, &name).unwrap();
    let out = stowage(dir.path(), &["render", "-o", "out"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("hard links"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "mine\n");
    std::fs::remove_file(&name).unwrap();

    // A planted record naming someone else's files: they stay.
    std::fs::write(out_dir.join("kustomization.yaml"), "resources: []\n").unwrap();
    std::fs::write(out_dir.join("README.md"), "notes\n").unwrap();
    std::fs::write(
        out_dir.join(".stowage-rendered"),
        "kustomization.yaml\nREADME.md\n0000000000000000000000000000000000000000000000000000000000000000 schedule-x.yaml\n",
    )
    .unwrap();
    let out = stowage(dir.path(), &["render", "-o", "out"]);
    assert_exit(&out, 0);
    assert!(out_dir.join("kustomization.yaml").exists());
    assert!(out_dir.join("README.md").exists());

    // A regular file as the folder: named as such.
    let out = stowage(dir.path(), &["render", "-o", "outside.txt"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("is not a directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_key_command_that_never_answers_or_a_fifo_key_file_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let encrypted = crate::support::examples_dir().join("secrets/aws.sops.ini");
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::copy(&encrypted, dir.path().join("secrets/aws.sops.ini")).unwrap();
    std::fs::write(
        dir.path().join("stowage.toml"),
        format!("version = 1\n[credentials.cloud]\nfile = \"secrets/aws.sops.ini\"\n{LOCATION}credential = \"cloud\"\n"),
    )
    .unwrap();
    let fifo = dir.path().join("keys.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // A FIFO as SOPS_AGE_KEY_FILE, and one where sops looks by default.
    std::fs::create_dir_all(dir.path().join(".config/sops/age")).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(dir.path().join(".config/sops/age/keys.txt"))
            .status()
            .unwrap()
            .success()
    );
    for (variable, value) in [
        ("SOPS_AGE_KEY_FILE", fifo.display().to_string()),
        ("SOPS_AGE_KEY_CMD", "sleep 1000".to_string()),
    ] {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
            .current_dir(dir.path())
            .args(["validate"])
            .env("HOME", dir.path())
            .env_remove("XDG_CONFIG_HOME")
            .env(variable, &value)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_exit(&out, 1);
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "{variable}: took {:?}",
            started.elapsed()
        );
        let text = stderr(&out);
        assert!(text.contains("stowage::sops"), "{variable}: {text}");
        let expected = if variable == "SOPS_AGE_KEY_CMD" {
            "no answer within"
        } else {
            "not a regular file"
        };
        assert!(text.contains(expected), "{variable}: {text}");
    }
}

#[test]
fn fleet_plans_that_would_share_a_name_are_refused_and_other_json_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.toml"),
        format!("version = 1\n{LOCATION}"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "version: 1\nbackup_locations:\n  primary: {provider: aws, bucket: velero-b, default: true, config: {region: us-east-1}}\n",
    )
    .unwrap();
    // The names saved plans get are distinct for a.toml and a.yaml, and for files of
    // the same name in two folders.
    let names = stowage::engine::fleet::saved_plan_names(&[
        dir.path().join("a.toml"),
        dir.path().join("a.yaml"),
    ])
    .unwrap();
    assert_eq!(names, ["a.toml.json", "a.yaml.json"]);
    let names = stowage::engine::fleet::saved_plan_names(&[
        "clusters/prod-eu/stowage.toml".into(),
        "clusters/prod-us/stowage.toml".into(),
    ])
    .unwrap();
    assert_eq!(
        names,
        ["prod-eu_stowage.toml.json", "prod-us_stowage.toml.json"]
    );
    let clash =
        stowage::engine::fleet::saved_plan_names(&["x/a_b.toml".into(), "x/a/b.toml".into()]);
    assert!(clash.is_err(), "{clash:?}");

    // A directory of plans with someone's JSON beside them: the JSON is left alone.
    let plans_dir = dir.path().join("plans");
    std::fs::create_dir(&plans_dir).unwrap();
    std::fs::write(plans_dir.join("notes.json"), "{\"owner\": \"me\"}\n").unwrap();
    let found = stowage::engine::fleet::saved_plans_in(&plans_dir).unwrap();
    assert!(found.plans.is_empty() && found.broken.is_empty());
    assert_eq!(found.skipped, [plans_dir.join("notes.json")]);
}

#[test]
fn two_fleet_files_of_one_owner_on_one_cluster_are_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["one.toml", "two.toml"] {
        std::fs::write(
            dir.path().join(name),
            format!("version = 1\n[cluster]\ncontext = \"prod\"\n{LOCATION}"),
        )
        .unwrap();
    }
    let out = stowage(dir.path(), &["validate", "-f", "one.toml", "two.toml"]);
    assert_exit(&out, 1);
    let text = stderr(&out);
    assert!(text.contains("stowage::owner-conflict"), "{text}");
    assert!(text.contains("two.toml manages the same cluster"), "{text}");
    assert!(text.contains("one.toml manages the same cluster"), "{text}");
    // Another owner for one of them: both valid.
    std::fs::write(
        dir.path().join("two.toml"),
        format!("version = 1\n[velero]\nowner = \"team-b\"\ndefault_location_owner = \"default\"\n[cluster]\ncontext = \"prod\"\n{}", LOCATION.replace("default = true\n", "")),
    )
    .unwrap();
    let out = stowage(dir.path(), &["validate", "-f", "one.toml", "two.toml"]);
    assert_exit(&out, 0);
}

#[test]
fn a_fleet_directory_takes_cluster_files_from_its_sub_folders_and_leaves_bases_and_manifests() {
    let clusters = crate::support::examples_dir().join("fleet");
    let files = stowage::engine::fleet::expand(std::slice::from_ref(&clusters)).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&clusters).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "clusters/prod-eu/stowage.toml",
            "clusters/prod-us/stowage.toml",
            "clusters/staging/stowage.toml"
        ]
    );
    // The README's glob form: -f with several values.
    let dir = crate::support::examples_dir().join("fleet/clusters");
    let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .arg("validate")
        .arg("-f")
        .args(["prod-eu", "prod-us", "staging"].map(|c| dir.join(c).join("stowage.toml")))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["validate", "-f"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("3 of 3 files valid"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn flags_that_would_spin_are_refused_and_messages_name_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stowage.toml"),
        format!("version = 1\n{LOCATION}"),
    )
    .unwrap();
    let out = stowage(dir.path(), &["watch", "--resync", "1ns"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("at least 1s"), "{}", stderr(&out));
    // A byte-order mark before an AWS credentials file is named as the cause.
    std::fs::write(
        dir.path().join("aws.ini"),
        "\u{feff}[default]\naws_access_key_id = a\naws_secret_access_key = b\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("stowage.toml"),
        format!("version = 1\n[credentials.cloud]\nfile = \"aws.ini\"\n{LOCATION}credential = \"cloud\"\n"),
    )
    .unwrap();
    let out = stowage(dir.path(), &["validate"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("byte-order mark"), "{}", stderr(&out));
    // `extends = ""` says what is wrong, not "unknown file type" of nothing.
    std::fs::write(
        dir.path().join("stowage.toml"),
        "extends = \"\"\nversion = 1\n",
    )
    .unwrap();
    let out = stowage(dir.path(), &["validate"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("`extends` is empty"),
        "{}",
        stderr(&out)
    );
    // TERM=dumb on a terminal: no colour.
    std::fs::write(dir.path().join("stowage.toml"), "version = 1\nbogus = 1\n").unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_stowage"));
    command
        .current_dir(dir.path())
        .arg("validate")
        .env("TERM", "dumb");
    let (code, printed) = crate::support::on_terminal(&command, "");
    assert_eq!(code, Some(1));
    assert!(printed.contains("unknown-key"), "{printed}");
    assert!(
        !printed.contains('\u{1b}'),
        "colour on a dumb terminal: {printed:?}"
    );
}

#[test]
fn explain_keeps_each_value_on_a_line_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stowage.toml"),
        format!("version = 1\n{LOCATION}labels = {{ \"a\\nb\" = \"x\" }}\n"),
    )
    .unwrap();
    let out = stowage(dir.path(), &["validate", "--explain"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        assert!(
            line.contains(" = "),
            "a line without its value: {line:?}\n{text}"
        );
    }
}

#[test]
fn a_server_that_accepts_and_never_answers_ends_in_a_clear_error_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stowage.toml"),
        format!("version = 1\n{LOCATION}"),
    )
    .unwrap();
    // Accepts connections (the kernel does, into the backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://{address}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    for command in [
        vec!["plan", "--no-bucket-checks"],
        vec!["status", "--no-bucket-checks"],
        vec!["import"],
    ] {
        let started = Instant::now();
        let mut args = command.clone();
        args.extend(["--kubeconfig", "kubeconfig", "--request-timeout", "2s"]);
        let out = stowage(dir.path(), &args);
        let took = started.elapsed();
        assert_exit(&out, 1);
        assert!(took < Duration::from_secs(15), "{command:?} took {took:?}");
        let text = stderr(&out);
        assert!(text.contains(&address.to_string()), "{command:?}: {text}");
        assert!(
            text.contains("no answer within the request timeout"),
            "{command:?}: {text}"
        );
    }
    // A fleet of three, all silent: each says so, within the timeout, at once.
    for name in ["a.toml", "b.toml", "c.toml"] {
        std::fs::write(
            dir.path().join(name),
            format!(
                "version = 1\n[velero]\nowner = \"{name}\"\ndefault_location_owner = \"x\"\n{}",
                LOCATION.replace("default = true\n", "")
            ),
        )
        .unwrap();
    }
    let started = Instant::now();
    let out = stowage(
        dir.path(),
        &[
            "plan",
            "-f",
            "a.toml",
            "b.toml",
            "c.toml",
            "--no-bucket-checks",
            "--kubeconfig",
            "kubeconfig",
            "--request-timeout",
            "2s",
        ],
    );
    assert_exit(&out, 1);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("unreachable"));
    drop(silent);
}

/// The render output writer under a generated disorder: a folder seeded with links to
/// files outside it, hard links, files of rendered names with other content, planted
/// records; renders of random sets of objects. Nothing outside the folder changes,
/// nothing but what a render recorded and left unchanged is removed, and every file a
/// render reports is a regular file holding what it rendered.
#[test]
fn render_output_keeps_its_invariants_under_a_generated_folder() {
    use stowage::engine::output::{OutputError, RENDERED_LIST, write_rendered};
    use stowage::render::Document;
    let seed = crate::support::Rng::fresh_seed();
    let mut rng = crate::support::Rng::new(seed);
    let names = [
        "backupstoragelocation-a.yaml",
        "backupstoragelocation-b.yaml",
        "schedule-nightly.yaml",
        "secret-cloud.yaml",
        "deployment-velero.txt",
        "kustomization.yaml",
        "README.md",
    ];
    for round in 0..60 {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let outside = root.path().join("outside");
        std::fs::write(&outside, "outside\n").unwrap();
        // Seed the folder.
        let mut foreign = Vec::new();
        for name in names {
            match rng.below(5) {
                0 => std::os::unix::fs::symlink(&outside, out.join(name)).unwrap(),
                1 => std::fs::hard_link(&outside, out.join(name)).unwrap(),
                2 => {
                    std::fs::write(out.join(name), format!("someone's {name}\n")).unwrap();
                    foreign.push(name);
                }
                _ => {}
            }
        }
        if rng.below(2) == 0 {
            let planted: String = names
                .iter()
                .map(|n| format!("{} {n}\n{n}\n", "0".repeat(64)))
                .collect();
            std::fs::write(out.join(RENDERED_LIST), planted).unwrap();
        }
        // Two renders of random sets.
        for _ in 0..2 {
            let mut documents: Vec<Document> = Vec::new();
            for name in &names[..5] {
                if rng.below(2) == 0 {
                    documents.push(Document {
                        file_name: name.to_string(),
                        yaml: format!("{name} {}\n", rng.below(3)),
                        secret: name.starts_with("secret"),
                    });
                }
            }
            let before: Vec<(String, Option<String>)> = names
                .iter()
                .map(|n| (n.to_string(), std::fs::read_to_string(out.join(n)).ok()))
                .collect();
            match write_rendered(&out, &documents) {
                Ok(rendered) => {
                    // A file of a rendered name is render's once it wrote it.
                    foreign.retain(|name| !documents.iter().any(|d| d.file_name == *name));
                    for document in &documents {
                        let path = out.join(&document.file_name);
                        let meta = std::fs::symlink_metadata(&path).unwrap();
                        assert!(
                            meta.is_file(),
                            "seed {seed}, round {round}: {path:?} not a regular file"
                        );
                        assert_eq!(std::fs::read_to_string(&path).unwrap(), document.yaml);
                    }
                    for removed in &rendered.removed {
                        assert!(
                            !foreign.contains(&removed.as_str()),
                            "seed {seed}, round {round}: removed {removed}, which it never wrote"
                        );
                    }
                }
                Err(OutputError::Link { .. } | OutputError::HardLink { .. }) => {
                    // Refused: nothing in the folder changed.
                    let after: Vec<(String, Option<String>)> = names
                        .iter()
                        .map(|n| (n.to_string(), std::fs::read_to_string(out.join(n)).ok()))
                        .collect();
                    assert_eq!(
                        before, after,
                        "seed {seed}, round {round}: a refused render changed the folder"
                    );
                }
                Err(other) => panic!("seed {seed}, round {round}: {other}"),
            }
            assert_eq!(
                std::fs::read_to_string(&outside).unwrap(),
                "outside\n",
                "seed {seed}, round {round}: a file outside the folder changed"
            );
            for name in &foreign {
                assert!(
                    out.join(name).exists(),
                    "seed {seed}, round {round}: {name} removed"
                );
            }
        }
    }
}

#[test]
fn version_names_the_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .arg("--version")
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let commit = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short=12",
            "HEAD",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match commit {
        // Built in a checkout: the commit it was built at (HEAD may have moved since the
        // build only if a commit happened meanwhile, which a test run does not do).
        Some(commit) => assert!(text.contains(&format!("(commit {commit})")), "{text}"),
        None => assert!(text.contains("(commit unknown)"), "{text}"),
    }
}
