//! One test's place on the real stack: a namespace of its own on the shared
//! kube-apiserver, a folder for its file and credentials, a kubeconfig (straight to the
//! API server, or through the fault-injecting proxy), real Velero when the test needs
//! Velero's verdicts, and a transcript of everything stowage printed, to search for the
//! canary secret.

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stowage_test_harness::{Namespace, Proxy, Stack, VeleroServer};

use crate::buckets::emulators;

/// Rides along in every credential file the tests write; must never be printed, in
/// any form. Mixed case, `/`, `+` and `=` make its lower-cased, percent-encoded and
/// base64 forms differ from it.
pub const CANARY: &str = "Canary/5b1e+Never=Printed";

/// The forms a secret could leak in: as is, in either case, percent-encoded (either
/// hex case), and base64 (standard and URL-safe) at each of the three alignments it
/// could have inside a longer encoded value.
pub fn canary_forms(canary: &str) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let encoded = percent_encoding::utf8_percent_encode(canary, percent_encoding::NON_ALPHANUMERIC)
        .to_string();
    let mut forms = vec![
        canary.to_string(),
        canary.to_lowercase(),
        canary.to_uppercase(),
        encoded.clone(),
        encoded.to_lowercase(),
    ];
    for engine in [&STANDARD, &URL_SAFE] {
        for offset in 0..3 {
            let padded = format!("{}{canary}", "x".repeat(offset));
            let text = engine.encode(padded.as_bytes());
            // Drop the characters the prefix and the end padding touch.
            let start = (offset * 4).div_ceil(3) + 1;
            let end = text.trim_end_matches('=').len().saturating_sub(2);
            if start < end {
                forms.push(text[start..end].to_string());
            }
        }
    }
    forms
}

/// Fails naming the form, if `text` holds the canary in any form.
pub fn assert_no_canary_in(text: &str, what: &str) {
    for form in canary_forms(CANARY) {
        assert!(
            !text.contains(&form),
            "the canary secret was printed as {form:?} in {what}"
        );
    }
}

/// The bucket real Velero writes into; each test under a prefix named after its
/// namespace, so tests never see each other's backups.
pub const LIVE_BUCKET: &str = "velero-live";

#[derive(Default, Clone, Copy)]
pub struct Options {
    /// Run real `velero server` for the namespace.
    pub velero: bool,
    /// Reach the API server through the proxy (request log, faults).
    pub proxy: bool,
}

pub struct TestCluster {
    pub ns: Namespace,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub proxy: Option<Proxy>,
    pub velero: Option<VeleroServer>,
    /// The desired-state file stowage reads (`STOWAGE_FILE`), in `dir`.
    pub file: std::cell::Cell<&'static str>,
    /// The age key file stowage decrypts SOPS files with (`SOPS_AGE_KEY_FILE`); none
    /// by default, whatever the environment of the tests holds.
    pub age_key: RefCell<Option<PathBuf>>,
    transcript: RefCell<String>,
}

/// Every test's stowage output is searched for the canary when the test ends.
impl Drop for TestCluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.assert_no_canary();
        }
    }
}

/// A `plan --format json` document's changes as `action kind/name`.
pub fn changes_of(plan: &Value) -> Vec<String> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}/{}",
                c["action"].as_str().unwrap(),
                c["kind"].as_str().unwrap(),
                c["name"].as_str().unwrap()
            )
        })
        .collect()
}

pub fn stack() -> &'static Stack {
    Stack::shared()
}

pub fn cluster(hint: &str, options: Options) -> TestCluster {
    cluster_on(stack(), hint, options)
}

/// The same on another stack (the version matrix's older Velero).
pub fn cluster_on(stack: &'static Stack, hint: &str, options: Options) -> TestCluster {
    let ns = stack.namespace(hint);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let proxy = options.proxy.then(|| Proxy::start(stack));
    let config = match &proxy {
        Some(proxy) => proxy.kubeconfig(&ns.name),
        None => stack.admin_kubeconfig(),
    };
    std::fs::write(&kubeconfig, config).unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    let velero = options.velero.then(|| VeleroServer::start(&ns));
    let cluster = TestCluster {
        ns,
        dir,
        kubeconfig,
        proxy,
        velero,
        file: std::cell::Cell::new("stowage.toml"),
        age_key: RefCell::default(),
        transcript: RefCell::default(),
    };
    cluster.write_credentials(&s3_credentials(&good_secret()));
    cluster
}

/// An AWS credentials file for the S3 emulator, with the canary riding along.
pub fn s3_credentials(secret_key: &str) -> String {
    let e = emulators();
    format!(
        "[default]\n# {CANARY}\naws_access_key_id = {}\naws_secret_access_key = {secret_key}\n",
        e["s3"]["access_key_id"].as_str().unwrap()
    )
}

pub fn good_secret() -> String {
    emulators()["s3"]["secret_access_key"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl TestCluster {
    pub fn namespace(&self) -> &str {
        &self.ns.name
    }

    /// The head of every file: this namespace, and the S3 credential.
    pub fn header(&self) -> String {
        format!(
            "version = 1\n\n[velero]\nnamespace = \"{}\"\n\n[credentials.s3]\nsecret = \"s3-credentials\"\nfile = \"secrets/s3.ini\"\n\n",
            self.ns.name
        )
    }

    /// A location on the S3 emulator's live bucket, under `<namespace>/<place>`.
    pub fn location(&self, name: &str, place: &str, extra: &str) -> String {
        let url = emulators()["s3"]["url"].as_str().unwrap().to_string();
        format!(
            "[backup_locations.{name}]\nprovider = \"aws\"\nbucket = \"{LIVE_BUCKET}\"\nprefix = \"{}/{place}\"\ncredential = \"s3\"\n{extra}config = {{ region = \"us-east-1\", s3Url = \"{url}\", s3ForcePathStyle = \"true\" }}\n\n",
            self.ns.name
        )
    }

    /// Writes `stowage.toml`: the header, then `body`.
    pub fn write_file(&self, body: &str) -> PathBuf {
        self.write_whole(&format!("{}{body}", self.header()))
    }

    /// Writes `stowage.toml` as `text` is, as editors do: a new file renamed over the
    /// old one.
    pub fn write_whole(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("stowage.toml");
        let temporary = self.dir.path().join(".stowage.toml.swp");
        std::fs::write(&temporary, text).unwrap();
        std::fs::rename(&temporary, &path).unwrap();
        path
    }

    pub fn write_credentials(&self, text: &str) {
        std::fs::write(self.dir.path().join("secrets/s3.ini"), text).unwrap();
    }

    /// A kubeconfig like this cluster's whose server is a closed port on 127.0.0.1,
    /// and that server's address.
    pub fn unreachable_kubeconfig(&self) -> (PathBuf, String) {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("127.0.0.1:{}", closed.local_addr().unwrap().port());
        drop(closed);
        let path = self.dir.path().join("unreachable.kubeconfig");
        std::fs::write(
            &path,
            self.ns
                .stack
                .admin_kubeconfig()
                .replace(&self.ns.stack.url, &format!("https://{address}")),
        )
        .unwrap();
        (path, address)
    }

    /// stowage with this cluster's kubeconfig, in this test's folder.
    pub fn command(&self) -> Command {
        self.command_with(&self.kubeconfig)
    }

    /// stowage with another kubeconfig (another user, an unreachable server).
    pub fn command_with(&self, kubeconfig: &std::path::Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_stowage"));
        command
            .current_dir(self.dir.path())
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .env_remove("KUBECONFIG")
            .env_remove("STOWAGE_FILE")
            .env_remove("SOPS_AGE_KEY")
            .env_remove("SOPS_AGE_KEY_FILE")
            .env_remove("SOPS_AGE_KEY_CMD")
            .stdin(Stdio::null());
        if let Some(key) = &*self.age_key.borrow() {
            command.env("SOPS_AGE_KEY_FILE", key);
        }
        if self.file.get() != "stowage.toml" {
            command.env("STOWAGE_FILE", self.file.get());
        }
        command
    }

    pub fn stowage(&self, args: &[&str]) -> Output {
        let output = self.command().args(args).output().unwrap();
        self.record(&output);
        output
    }

    /// Adds a process's output to the transcript searched for the canary.
    pub fn record(&self, output: &Output) {
        let mut transcript = self.transcript.borrow_mut();
        transcript.push_str(&String::from_utf8_lossy(&output.stdout));
        transcript.push_str(&String::from_utf8_lossy(&output.stderr));
    }

    /// `plan --format json`: the changes as `action kind/name`.
    pub fn changes(&self) -> Vec<String> {
        let out = self.stowage(&["plan", "--format", "json", "--no-bucket-checks"]);
        assert!(
            out.status.success(),
            "plan failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        changes_of(&plan)
    }

    /// `apply --auto-approve --wait`, which must succeed; its report.
    pub fn apply(&self) -> String {
        let out = self.stowage(&[
            "apply",
            "--auto-approve",
            "--wait=60s",
            "--no-bucket-checks",
        ]);
        crate::support::assert_exit(&out, 0);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn bsl(&self, name: &str) -> Option<Value> {
        self.ns.get("velero.io/v1", "BackupStorageLocation", name)
    }

    pub fn schedule(&self, name: &str) -> Option<Value> {
        self.ns.get("velero.io/v1", "Schedule", name)
    }

    /// An object as another tool made it, before stowage ran.
    pub fn seed(&self, object: Value, manager: &str) {
        self.ns.create(object, manager).expect("seeded object");
    }

    /// Unmanaged Schedules, as many as asked, created concurrently.
    pub fn seed_schedules(&self, prefix: &str, count: usize) {
        let objects: Vec<Value> = (0..count)
            .map(|i| {
                json!({"apiVersion": "velero.io/v1", "kind": "Schedule",
                    "metadata": {"name": format!("{prefix}-{i}"), "namespace": self.ns.name},
                    "spec": {"schedule": "0 1 * * *", "template": {}}})
            })
            .collect();
        self.ns.stack.create_all(objects, "velero");
    }

    pub fn assert_no_canary(&self) {
        assert_no_canary_in(&self.transcript.borrow(), "stowage's output");
    }

    pub fn proxy(&self) -> &Proxy {
        self.proxy.as_ref().expect("a cluster started with a proxy")
    }
}

#[test]
fn the_canary_check_sees_every_form() {
    use base64::Engine as _;
    let forms = canary_forms(CANARY);
    assert!(forms.contains(&"Canary%2F5b1e%2BNever%3DPrinted".to_string()));
    assert!(forms.contains(&"canary/5b1e+never=printed".to_string()));
    // Inside a longer base64 value, at each alignment, in both alphabets.
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        for prefix in ["", "a", "ab", "[default]\n# "] {
            let encoded = engine.encode(format!("{prefix}{CANARY}\naws_secret = x\n"));
            let caught = std::panic::catch_unwind(|| assert_no_canary_in(&encoded, "a test"));
            assert!(caught.is_err(), "{prefix:?}: {encoded}");
        }
    }
    assert_no_canary_in("nothing secret here", "a test");
}
