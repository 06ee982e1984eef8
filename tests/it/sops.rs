//! SOPS-encrypted credential files against the real `sops` and `age-keygen` (built at
//! the versions tests/cluster/sops pins): every format sops writes decrypts to its
//! plaintext; a hand-edited file, a wrong key and no key are located errors that apply
//! nothing; the decrypted credential reaches the real API server and real Velero; the
//! canary inside an encrypted file is printed, logged and saved nowhere; and a
//! plaintext file git would commit is warned about.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{
    CANARY, Options, TestCluster, assert_no_canary_in, canary_forms, cluster, eventually,
    good_secret, s3_credentials,
};
use crate::support::assert_exit;

fn tool(variable: &str) -> PathBuf {
    std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "{variable} is not set; run the tests with `bash tests/run` \
             (tests/cluster/build builds sops and age-keygen into .tools/bin)"
            )
        })
}

/// An age key pair made by the real age-keygen.
struct AgeKey {
    file: PathBuf,
    recipient: String,
}

fn age_key(dir: &Path, name: &str) -> AgeKey {
    let file = dir.join(name);
    let out = Command::new(tool("STOWAGE_AGE_KEYGEN"))
        .arg("-o")
        .arg(&file)
        .output()
        .expect("age-keygen runs");
    assert_exit(&out, 0);
    let recipient = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|line| line.strip_prefix("Public key: "))
        .expect("age-keygen names the public key")
        .trim()
        .to_string();
    AgeKey { file, recipient }
}

/// The real sops, with no key of anyone's but the one a test gives it.
fn sops(args: &[&str]) -> Command {
    let mut command = Command::new(tool("STOWAGE_SOPS"));
    command
        .args(args)
        .env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY_CMD")
        .env_remove("SOPS_AGE_KEY_CMD")
        .stdin(Stdio::null());
    command
}

/// `sops encrypt` of `plain` for `recipient`, written to `encrypted`.
fn encrypt(plain: &Path, recipient: &str, encrypted: &Path) {
    encrypt_with(plain, recipient, encrypted, &[]);
}

/// With `options` (`--config FILE`: its creation rule names the recipient).
fn encrypt_with(plain: &Path, recipient: &str, encrypted: &Path, options: &[&str]) {
    let mut command = sops(options);
    command.arg("encrypt");
    if options.is_empty() {
        command.args(["--age", recipient]);
    }
    let out = command
        .arg("--output")
        .arg(encrypted)
        .arg(plain)
        .output()
        .unwrap();
    assert_exit(&out, 0);
}

/// What `sops decrypt` makes of `encrypted` with `key`.
fn sops_decrypt(encrypted: &Path, key: &AgeKey) -> Vec<u8> {
    let out = sops(&["decrypt"])
        .arg(encrypted)
        .env("SOPS_AGE_KEY_FILE", &key.file)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    out.stdout
}

/// stowage with `key` as its only age key (none: no key anywhere). HOME and the
/// temporary folder are the test's own, so a developer's key file never counts and
/// anything stowage wrote to a temporary file would be found.
fn with_key(command: &mut Command, key: Option<&AgeKey>, home: &Path) {
    command
        .env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY_CMD")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", home)
        .env("TMPDIR", home.join("tmp"));
    if let Some(key) = key {
        command.env("SOPS_AGE_KEY_FILE", &key.file);
    }
}

fn stowage_in(dir: &Path, key: Option<&AgeKey>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stowage"));
    command.current_dir(dir).args(args).stdin(Stdio::null());
    with_key(&mut command, key, dir);
    command.output().unwrap()
}

/// The Secret data `render` would apply, key by key, decoded.
fn rendered_secret_data(render: &[u8]) -> Vec<(String, Vec<u8>)> {
    use base64::Engine as _;
    let text = String::from_utf8_lossy(render);
    let mut data = Vec::new();
    for document in text.split("\n---\n") {
        let object: Value = serde_saphyr::from_str(document).expect("render is YAML");
        if object["kind"] != "Secret" {
            continue;
        }
        for (key, value) in object["data"].as_object().into_iter().flatten() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.as_str().unwrap())
                .unwrap();
            data.push((key.clone(), bytes));
        }
    }
    data.sort();
    data
}

/// Key-value pairs of an INI or dotenv file, with their sections, comments left out.
fn pairs(text: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            section = name.trim_end_matches(']').to_string();
            continue;
        }
        let (key, value) = line.split_once('=').unwrap();
        out.push((
            format!("{section}.{}", key.trim()),
            value.trim().to_string(),
        ));
    }
    out
}

#[test]
fn every_format_sops_writes_decrypts_to_its_plaintext_and_reads_like_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tmp")).unwrap();
    let key = age_key(dir.path(), "key.txt");
    let binary: Vec<u8> = (0u8..=255)
        .chain(CANARY.bytes())
        .chain([0, b'\n', 0xff])
        .collect();
    // mac_only_encrypted is set by a creation rule only, as teams do in .sops.yaml.
    let rules = dir.path().join("partial.sops.yaml");
    std::fs::write(
        &rules,
        format!(
            "creation_rules:\n  - encrypted_regex: ^password$\n    mac_only_encrypted: true\n    age: {}\n",
            key.recipient
        ),
    )
    .unwrap();
    let rules = rules.display().to_string();
    let with_rules = ["--config", rules.as_str()];
    let originals: Vec<(&str, &str, Vec<u8>, &[&str])> = vec![
        (
            "aws",
            "aws.ini",
            format!(
                "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = {CANARY}\n\n\
                 [backup]\naws_access_key_id = AKIASECOND\naws_secret_access_key = second-{CANARY}\n"
            )
            .into_bytes(),
            &[],
        ),
        (
            "azure",
            "azure.env",
            format!(
                "AZURE_SUBSCRIPTION_ID=00000000-0000-0000-0000-000000000000\n\
                 AZURE_TENANT_ID=11111111-1111-1111-1111-111111111111\n\
                 AZURE_CLIENT_ID=22222222-2222-2222-2222-222222222222\n\
                 AZURE_CLIENT_SECRET={CANARY}\nAZURE_RESOURCE_GROUP=rg\nAZURE_CLOUD_NAME=AzurePublicCloud\n"
            )
            .into_bytes(),
            &[],
        ),
        (
            "gcp",
            "gcp.json",
            serde_json::to_vec_pretty(&serde_json::json!({
                "type": "service_account",
                "project_id": "example",
                "private_key_id": "0123",
                "private_key": format!("-----BEGIN PRIVATE KEY-----\n{CANARY}\n-----END PRIVATE KEY-----\n"),
                "client_email": "velero@example.iam.gserviceaccount.com",
                "auth_uri": "https://accounts.google.com/o/oauth2/auth?a=<1>&b=2\u{2028}",
                "client_id": 1234567890,
                "universe_domain": "googleapis.com",
                "rotated": false,
                "weight": 0.25,
                "scopes": ["a", "b"],
            }))
            .unwrap(),
            &[],
        ),
        (
            "yaml",
            "token.yaml",
            format!("token: {CANARY}\nport: 8443\nenabled: true\nregion_unencrypted: eu-west-1\nnested:\n    list:\n        - one\n        - two: 2\n")
                .into_bytes(),
            &[],
        ),
        (
            // Only some values encrypted, and the MAC over those alone.
            "partial",
            "partial.yaml",
            format!("endpoint: https://s3.example\npassword: {CANARY}\nretries: 3\nratio: 0.5\n")
                .into_bytes(),
            &with_rules,
        ),
        ("binary", "credentials-velero", binary.clone(), &[]),
    ];
    let mut file = String::from("version = 1\n");
    let mut plain_file = String::from("version = 1\n");
    for (name, path, contents, options) in &originals {
        let plain = dir.path().join(format!("plain-{path}"));
        std::fs::write(&plain, contents).unwrap();
        encrypt_with(&plain, &key.recipient, &dir.path().join(path), options);
        std::fs::remove_file(&plain).unwrap();
        // The same credential as `sops decrypt` writes it, for the plaintext twin.
        let decrypted = sops_decrypt(&dir.path().join(path), &key);
        std::fs::write(dir.path().join(format!("decrypted-{path}")), &decrypted).unwrap();
        file.push_str(&format!(
            "[credentials.{name}]\nsecret = \"all\"\nkey = \"{name}\"\nfile = \"{path}\"\n"
        ));
        plain_file.push_str(&format!(
            "[credentials.{name}]\nsecret = \"all\"\nkey = \"{name}\"\nfile = \"decrypted-{path}\"\n"
        ));
    }
    std::fs::write(dir.path().join("stowage.toml"), &file).unwrap();
    std::fs::write(dir.path().join("plain.toml"), &plain_file).unwrap();

    let validate = stowage_in(dir.path(), Some(&key), &["validate"]);
    assert_exit(&validate, 0);
    let render = stowage_in(dir.path(), Some(&key), &["render"]);
    assert_exit(&render, 0);
    let data = rendered_secret_data(&render.stdout);
    assert_eq!(data.len(), originals.len());
    for (name, path, original, _) in &originals {
        let (_, decrypted) = data.iter().find(|(key, _)| key == name).unwrap();
        // Byte for byte what the real sops decrypts it to...
        // Compared without printing either: both hold the canary.
        let theirs = sops_decrypt(&dir.path().join(path), &key);
        assert!(
            decrypted == &theirs,
            "{name}: stowage and sops decrypt differently ({} and {} bytes)",
            decrypted.len(),
            theirs.len()
        );
        // ...and the same values as the plaintext original.
        let (ours, theirs) = (
            String::from_utf8_lossy(decrypted),
            String::from_utf8_lossy(original),
        );
        let same = match *name {
            "aws" | "azure" => pairs(&ours) == pairs(&theirs),
            "gcp" => {
                serde_json::from_slice::<Value>(decrypted).unwrap()
                    == serde_json::from_slice::<Value>(original).unwrap()
            }
            "yaml" | "partial" => {
                serde_saphyr::from_str::<Value>(&ours).unwrap()
                    == serde_saphyr::from_str::<Value>(&theirs).unwrap()
            }
            _ => decrypted == original,
        };
        assert!(same, "{name}: not the plaintext original's values");
    }
    // Read exactly like the plaintext: the same Secrets, the same plan digests.
    let plain_render = stowage_in(dir.path(), None, &["render", "-f", "plain.toml"]);
    assert_exit(&plain_render, 0);
    assert!(
        rendered_secret_data(&plain_render.stdout) == data,
        "the plaintext twin renders other Secret data"
    );

    // No output but render's own Secret data holds the canary.
    assert_no_canary_in(&String::from_utf8_lossy(&validate.stdout), "validate");
    assert_no_canary_in(&String::from_utf8_lossy(&validate.stderr), "validate");
    assert_no_canary_in(&String::from_utf8_lossy(&render.stderr), "render's stderr");
    assert_no_temporary_files(&dir.path().join("tmp"));
}

/// Nothing was left in the temporary folder stowage was given.
fn assert_no_temporary_files(tmp: &Path) {
    let left: Vec<_> = std::fs::read_dir(tmp).unwrap().collect();
    assert!(left.is_empty(), "files left in {}: {left:?}", tmp.display());
}

/// Every file under `dir` is searched for the canary in every form.
fn assert_no_canary_under(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_no_canary_under(&path);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            assert_no_canary_in(
                &String::from_utf8_lossy(&bytes),
                &path.display().to_string(),
            );
        }
    }
}

/// The diagnostics of `validate --format json`, as (code, line, column, message).
fn diagnostics(out: &Output) -> Vec<(String, u64, u64, String)> {
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "validate --format json: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap().to_string(),
                d["line"].as_u64().unwrap_or(0),
                d["column"].as_u64().unwrap_or(0),
                d["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

impl TestCluster {
    fn sops_command(&self, key: Option<&AgeKey>, args: &[&str]) -> Output {
        let mut command = self.command();
        command.args(args);
        with_key(&mut command, key, self.dir.path());
        let output = command.output().unwrap();
        self.record(&output);
        output
    }

    fn secret_data(&self, name: &str) -> (String, Vec<(String, Vec<u8>)>) {
        use base64::Engine as _;
        let secret = self.ns.get("v1", "Secret", name).expect("the Secret");
        let version = secret["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        let mut data: Vec<(String, Vec<u8>)> = secret["data"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.as_str().unwrap())
                    .unwrap();
                (k.clone(), bytes)
            })
            .collect();
        data.sort();
        (version, data)
    }
}

#[test]
fn an_encrypted_credential_reaches_velero_and_every_bad_file_is_a_located_error_that_applies_nothing()
 {
    let live = cluster(
        "sops",
        Options {
            velero: true,
            proxy: false,
        },
    );
    let dir = live.dir.path();
    std::fs::create_dir(dir.join("tmp")).unwrap();
    let key = age_key(dir, "key.txt");
    let other = age_key(dir, "other-key.txt");
    let encrypted = dir.join("secrets/s3.ini");
    let write_encrypted = |secret_key: &str| {
        // The emulator's profile, and a second one holding the canary as a value.
        let plain = dir.join("secrets/plain.ini");
        std::fs::write(
            &plain,
            format!(
                "{}\n[canary]\naws_access_key_id = AKIACANARY\naws_secret_access_key = {CANARY}\n",
                s3_credentials(secret_key).replace(&format!("# {CANARY}\n"), "")
            ),
        )
        .unwrap();
        encrypt(&plain, &key.recipient, &encrypted);
        std::fs::remove_file(&plain).unwrap();
    };
    write_encrypted(&good_secret());
    live.write_file(&live.location("primary", "primary", "default = true\n"));

    // Applied, the Secret holds what sops decrypts, and Velero signs with it.
    let out = live.sops_command(
        Some(&key),
        &[
            "apply",
            "--auto-approve",
            "--no-bucket-checks",
            "--wait=60s",
        ],
    );
    assert_exit(&out, 0);
    let (version, data) = live.secret_data("s3-credentials");
    assert!(
        data == [("cloud".to_string(), sops_decrypt(&encrypted, &key))],
        "the Secret holds other data than sops decrypts"
    );
    assert!(String::from_utf8_lossy(&data[0].1).contains(CANARY));
    eventually(
        "Velero to find primary Available",
        Duration::from_secs(90),
        || (live.bsl("primary")?["status"]["phase"] == "Available").then_some(()),
    );

    // A plan saved to a file and the plan's JSON carry no secret value.
    let out = live.sops_command(
        Some(&key),
        &[
            "plan",
            "--no-bucket-checks",
            "--out",
            "saved.plan.json",
            "--format",
            "json",
        ],
    );
    assert_exit(&out, 0);
    assert_no_canary_in(
        &std::fs::read_to_string(dir.join("saved.plan.json")).unwrap(),
        "the saved plan",
    );

    // Each bad file: validate locates it at the credential's `file`, apply changes
    // nothing (the plaintext behind it would have changed the Secret).
    let file_line = live
        .header()
        .lines()
        .position(|line| line.starts_with("file = "))
        .unwrap() as u64
        + 1;
    write_encrypted("a-new-secret-that-must-not-land");
    let pristine = std::fs::read_to_string(&encrypted).unwrap();
    // A line removed by hand: the values no longer add up to the MAC.
    let first_key_line = pristine
        .lines()
        .position(|line| line.starts_with("aws_access_key_id"))
        .unwrap();
    let mut edited: Vec<&str> = pristine.lines().collect();
    edited.remove(first_key_line);
    let cases: [(&str, String, Option<&AgeKey>, &str); 3] = [
        (
            "hand-edited",
            edited.join("\n") + "\n",
            Some(&key),
            "its MAC does not match its content: it was changed without sops",
        ),
        (
            "wrong key",
            pristine.clone(),
            Some(&other),
            "no age key found matches its recipients",
        ),
        (
            "no key",
            pristine.clone(),
            None,
            "no age key to decrypt it; looked in",
        ),
    ];
    for (case, contents, case_key, message) in cases {
        std::fs::write(&encrypted, &contents).unwrap();
        let out = live.sops_command(case_key, &["validate", "--format", "json"]);
        assert_exit(&out, 1);
        let found = diagnostics(&out);
        assert_eq!(found.len(), 1, "{case}: {found:?}");
        let (code, line, column, text) = &found[0];
        assert_eq!(code, "stowage::sops", "{case}");
        assert_eq!((*line, *column), (file_line, 8), "{case}: {text}");
        assert!(
            text.starts_with("cannot decrypt secrets/s3.ini: ") && text.contains(message),
            "{case}: {text}"
        );
        if case == "wrong key" {
            assert!(
                text.contains(&key.recipient),
                "names the recipients: {text}"
            );
        }
        if case == "no key" {
            assert!(
                text.contains("$SOPS_AGE_KEY_FILE (not set)")
                    && text.contains(".config/sops/age/keys.txt (no such file)"),
                "says where it looked: {text}"
            );
        }
        let out = live.sops_command(case_key, &["apply", "--auto-approve", "--no-bucket-checks"]);
        assert_exit(&out, 1);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("stowage::sops"),
            "{case}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (now, _) = live.secret_data("s3-credentials");
        assert_eq!(now, version, "{case}: the Secret was written");
    }

    // The daemon decrypts the file again when sops rewrites it.
    std::fs::write(&encrypted, &pristine).unwrap();
    write_encrypted(&good_secret());
    let mut command = live.command();
    with_key(&mut command, Some(&key), dir);
    let daemon = crate::watch::spawn_with(command, &[]);
    eventually("/readyz to pass", Duration::from_secs(30), || {
        (daemon.get("/readyz").0 == 200).then_some(())
    });
    let rotated = "rotated-but-unused-secret";
    let plain = dir.join("secrets/plain.ini");
    std::fs::write(
        &plain,
        format!("[default]\naws_access_key_id = AKIAROTATED\naws_secret_access_key = {rotated}\n"),
    )
    .unwrap();
    encrypt(&plain, &key.recipient, &dir.join("secrets/next.ini"));
    std::fs::remove_file(&plain).unwrap();
    std::fs::rename(dir.join("secrets/next.ini"), &encrypted).unwrap();
    eventually(
        "the rotated credential in the Secret",
        Duration::from_secs(30),
        || {
            let (_, data) = live.secret_data("s3-credentials");
            String::from_utf8_lossy(&data[0].1)
                .contains(rotated)
                .then_some(())
        },
    );
    drop(daemon);

    // Nothing decrypted was left on disk: not in the test's folder, not in the
    // temporary folder stowage was given.
    assert_no_temporary_files(&dir.join("tmp"));
    assert_no_canary_under(dir);
    assert!(canary_forms(CANARY).len() > 5);
}

/// `SOPS_AGE_KEY_CMD`, as sops runs it: a command line for each recipient, whose
/// output is the key; one that fails is named, with its exit status, and nothing else.
#[test]
fn a_key_command_gives_the_key_for_the_recipient_it_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tmp")).unwrap();
    let key = age_key(dir.path(), "key.txt");
    let plain = dir.path().join("plain.ini");
    std::fs::write(
        &plain,
        format!("[default]\naws_access_key_id = AKIA\naws_secret_access_key = {CANARY}\n"),
    )
    .unwrap();
    encrypt(&plain, &key.recipient, &dir.path().join("aws.ini"));
    std::fs::remove_file(&plain).unwrap();
    std::fs::write(
        dir.path().join("stowage.toml"),
        "version = 1\n[credentials.aws]\nfile = \"aws.ini\"\n",
    )
    .unwrap();
    // Prints the key only when asked for its own recipient, as a vault lookup would.
    let script = dir.path().join("age-key.sh");
    std::fs::write(
        &script,
        format!(
            "test \"$SOPS_AGE_RECIPIENT\" = '{}' || exit 7\ncat '{}'\n",
            key.recipient,
            key.file.display()
        ),
    )
    .unwrap();
    let validate = |command: &str| {
        let mut process = Command::new(env!("CARGO_BIN_EXE_stowage"));
        process
            .current_dir(dir.path())
            .args(["validate", "--format", "json"])
            .stdin(Stdio::null());
        with_key(&mut process, None, dir.path());
        process.env("SOPS_AGE_KEY_CMD", command);
        let out = process.output().unwrap();
        assert_no_canary_in(&String::from_utf8_lossy(&out.stdout), "validate");
        assert_no_canary_in(&String::from_utf8_lossy(&out.stderr), "validate");
        out
    };
    let out = validate(&format!("sh '{}'", script.display()));
    assert_exit(&out, 0);
    assert_eq!(diagnostics(&out), []);

    // Another recipient's file: the command says no, and that is what is reported.
    std::fs::write(
        &script,
        format!(
            "test \"$SOPS_AGE_RECIPIENT\" = 'age1someoneelse' || exit 7\ncat '{}'\n",
            key.file.display()
        ),
    )
    .unwrap();
    let out = validate(&format!("sh '{}'", script.display()));
    assert_exit(&out, 1);
    let found = diagnostics(&out);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "stowage::sops");
    assert!(
        found[0]
            .3
            .contains("no age key to decrypt it; looked in $SOPS_AGE_KEY (not set)")
            && found[0].3.contains(&format!(
                "$SOPS_AGE_KEY_CMD for {} (exit status 7)",
                key.recipient
            )),
        "{}",
        found[0].3
    );
    assert_no_temporary_files(&dir.path().join("tmp"));
}

#[test]
fn a_plaintext_credential_git_would_commit_is_warned_about_at_its_file_key() {
    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .current_dir(dir.path())
            .args(args)
            .output()
            .expect("git is installed (Debian: apt-get install git)");
        assert_exit(&out, 0);
    };
    git(&["init", "--quiet"]);
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(
        dir.path().join("secrets/aws.ini"),
        "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = plain\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("stowage.toml"),
        "version = 1\n\n[credentials.aws]\nfile = \"secrets/aws.ini\"\n",
    )
    .unwrap();
    let warnings = || {
        let out = stowage_in(dir.path(), None, &["validate", "--format", "json"]);
        assert_exit(&out, 0);
        diagnostics(&out)
    };
    // Not ignored: a warning at `file`, with the way out.
    let found = warnings();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "stowage::plaintext-credential");
    assert_eq!((found[0].1, found[0].2), (4, 8));
    assert!(found[0].3.contains("git would commit it"), "{}", found[0].3);

    // Ignored: nothing to say.
    std::fs::write(dir.path().join(".gitignore"), "secrets/\n").unwrap();
    assert_eq!(warnings(), []);

    // Tracked although ignored (`git add -f`): committed all the same.
    git(&["add", "--force", "secrets/aws.ini"]);
    assert_eq!(warnings().len(), 1);

    // Encrypted with sops: safe to commit, no warning.
    git(&["rm", "--cached", "--quiet", "secrets/aws.ini"]);
    std::fs::write(dir.path().join(".gitignore"), "").unwrap();
    let key = age_key(dir.path(), "key.txt");
    let plain = dir.path().join("secrets/aws.ini");
    encrypt(&plain, &key.recipient, &plain.with_extension("enc.ini"));
    std::fs::rename(plain.with_extension("enc.ini"), &plain).unwrap();
    let out = stowage_in(dir.path(), Some(&key), &["validate", "--format", "json"]);
    assert_exit(&out, 0);
    assert_eq!(diagnostics(&out), []);
}
