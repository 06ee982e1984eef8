//! The binary as a user runs it: exit codes, JSON output, stdout and stderr, and the
//! canary secret in none of them.

use std::process::Command;

use crate::support::{assert_exit, fixture};

fn stowage(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(args)
        .env_remove("STOWAGE_FILE")
        .env("NO_COLOR", "1")
        .output()
        .expect("run stowage")
}

#[test]
fn validate_exit_codes_and_json_shape() {
    let good = fixture(
        "stowage.toml",
        "version = 1\n[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-b\"\ndefault = true\nconfig = { region = \"r\" }\n",
        &[],
    );
    let out = stowage(&["validate", "-f", good.path.to_str().unwrap()]);
    assert_exit(&out, 0);
    assert!(out.stdout.is_empty(), "text mode writes nothing to stdout");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is valid"));

    let bad = fixture(
        "stowage.toml",
        "version = 1\n[schedules.daily]\ncron = \"@weekdays\"\n",
        &[],
    );
    let out = stowage(&[
        "validate",
        "-f",
        bad.path.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["valid"], false);
    assert_eq!(json["changes"], serde_json::json!([]));
    assert_eq!(
        json["summary"],
        serde_json::json!({"create": 0, "update": 0, "delete": 0})
    );
    let diagnostic = &json["diagnostics"][0];
    assert_eq!(diagnostic["code"], "stowage::cron");
    assert_eq!(diagnostic["severity"], "error");
    assert_eq!(diagnostic["line"], 3);
    assert_eq!(diagnostic["column"], 8);
    assert_eq!(diagnostic["file"], bad.path.to_str().unwrap());
    assert!(
        diagnostic["message"]
            .as_str()
            .unwrap()
            .contains("unrecognized descriptor")
    );
}

#[test]
fn file_comes_from_the_environment_and_missing_files_fail_clearly() {
    let good = fixture("stowage.yaml", "version: 1\n", &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["validate"])
        .env("STOWAGE_FILE", &good.path)
        .output()
        .expect("run");
    assert_exit(&out, 0);

    let out = stowage(&["validate", "-f", "/nonexistent/stowage.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read /nonexistent/stowage.toml"),
        "{stderr}"
    );
}

#[test]
fn canary_secret_appears_in_no_output() {
    let canary = "CANARY-7d1e-NEVER-PRINT";
    let ini = format!("[other]\naws_access_key_id = AKIA\naws_secret_access_key = {canary}\n");
    let text = "version = 1\n[credentials.primary]\nfile = \"aws.ini\"\n[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-b\"\ndefault = true\ncredential = \"primary\"\nconfig = { region = \"r\" }\n";
    let fixture = fixture("stowage.toml", text, &[("aws.ini", &ini)]);
    let path = fixture.path.to_str().unwrap();
    for args in [
        vec!["validate", "-f", path],
        vec!["validate", "-f", path, "--format", "json"],
        vec!["validate", "-f", path, "--color", "always"],
    ] {
        let out = stowage(&args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "the credential lacks the default profile"
        );
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(all.contains("stowage::credential-format"), "{all}");
        assert!(!all.contains(canary), "{args:?} printed the secret");
    }
}

#[test]
fn schema_and_completions_print_to_stdout() {
    let out = stowage(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("schema json");
    assert_eq!(schema["title"], "stowage desired-state file");
    let out = stowage(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("stowage"));
}

#[test]
fn a_usage_error_exits_1_never_the_2_that_means_changes() {
    let out = stowage(&["plan", "--detailed-exitcode", "--no-such-flag"]);
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unexpected argument '--no-such-flag'"),
        "{stderr}"
    );
    let out = stowage(&["plan", "--detailed-exitcode", "--formt", "json"]);
    assert_exit(&out, 1);
    // Help is not an error.
    assert_exit(&stowage(&["plan", "--help"]), 0);
}

#[test]
fn durations_are_checked_by_the_flag_that_takes_them() {
    for (args, flag, why) in [
        (
            &["watch", "--resync", "0s"][..],
            "--resync",
            "longer than zero",
        ),
        (&["watch", "--resync=-1s"][..], "--resync", "negative"),
        (&["watch", "--resync", "soon"][..], "--resync", ""),
        (&["apply", "--wait=-5s"][..], "--wait", "negative"),
    ] {
        let out = stowage(args);
        assert_exit(&out, 1);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("invalid value") && stderr.contains(flag) && stderr.contains(why),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// Runs stowage, killing it after ten seconds: a read that never ends is a failure,
/// not a hung test.
fn stowage_bounded(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(args)
        .current_dir(dir)
        .env_remove("STOWAGE_FILE")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run stowage");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().expect("status").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("stowage {args:?} did not finish in 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn files_that_are_not_regular_or_too_large_are_refused_with_a_json_document() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    std::os::unix::fs::symlink("/dev/zero", path("zero.toml")).unwrap();
    std::fs::create_dir(path("directory.toml")).unwrap();
    std::fs::write(path("binary.toml"), [0xff, 0xfe, 0x00]).unwrap();
    let fifo = path("fifo.toml");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success(),
        "mkfifo"
    );
    for (name, why) in [
        ("missing.toml", "No such file"),
        ("zero.toml", "not a regular file"),
        ("fifo.toml", "not a regular file"),
        ("directory.toml", "not a regular file"),
        ("binary.toml", "not UTF-8 text"),
    ] {
        for command in ["validate", "plan"] {
            let mut args = vec![command, "-f", name, "--format", "json"];
            if command == "plan" {
                // Planned offline: the file is refused before the state is read.
                args.extend(["--observed", "state.yaml"]);
            }
            let out = stowage_bounded(&args, dir.path());
            assert_exit(&out, 1);
            let document: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{command} {name}: no JSON document ({e})"));
            assert_eq!(document["valid"], false);
            let diagnostic = &document["diagnostics"][0];
            assert_eq!(diagnostic["code"], "stowage::file", "{command} {name}");
            assert!(
                diagnostic["message"].as_str().unwrap().contains(why),
                "{command} {name}: {diagnostic}"
            );
        }
    }

    // A credential file, a CA file and --observed get the same checks.
    std::fs::write(path("big.ini"), vec![b'#'; 1_100_000]).unwrap();
    std::os::unix::fs::symlink("/dev/zero", path("zero.ini")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", path("zero.yaml")).unwrap();
    let text = "version = 1\n[credentials.big]\nfile = \"big.ini\"\n[credentials.zero]\nfile = \"zero.ini\"\n[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-b\"\ndefault = true\ncredential = \"big\"\nca_cert_file = \"zero.ini\"\nconfig = { region = \"r\" }\n[backup_locations.b]\nprovider = \"aws\"\nbucket = \"bucket-c\"\ncredential = \"zero\"\nconfig = { region = \"r\" }\n";
    std::fs::write(path("stowage.toml"), text).unwrap();
    let out = stowage_bounded(&["validate", "--format", "json"], dir.path());
    assert_exit(&out, 1);
    let document: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let messages: Vec<&str> = document["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["message"].as_str().unwrap())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("big.ini: larger than 1024 KiB")),
        "{messages:?}"
    );
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.contains("zero.ini: not a regular file"))
            .count(),
        2,
        "the credential and the CA file: {messages:?}"
    );
    std::fs::write(path("stowage.toml"), "version = 1\n[backup_locations.a]\nprovider = \"aws\"\nbucket = \"bucket-b\"\ndefault = true\nconfig = { region = \"r\" }\n").unwrap();
    let out = stowage_bounded(
        &["plan", "--observed", "zero.yaml", "--no-bucket-checks"],
        dir.path(),
    );
    assert_exit(&out, 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a regular file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
