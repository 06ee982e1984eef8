//! Applying 1,000 objects to an empty namespace of the test API server: `stowage
//! apply` against `kubectl apply --server-side -f` of the same rendered objects on the
//! same server. The ratio of the two medians is the number to watch.
//!
//! Needs kubectl: `bash tests/run bench` installs it and sets `STOWAGE_KUBECTL`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use stowage_test_apiserver::{Config, TestServer};

fn main() {
    divan::main();
}

const LOCATIONS: usize = 1000;

struct Prepared {
    server: TestServer,
    _dir: tempfile::TempDir,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

fn kubectl() -> PathBuf {
    let path = std::env::var_os("STOWAGE_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/kubectl"));
    assert!(
        path.exists(),
        "kubectl is not installed at {}: run `bash tests/run bench`, which installs it",
        path.display()
    );
    path
}

/// A fresh server with an empty `velero` namespace, the file, and its rendered objects.
fn prepare() -> Prepared {
    let mut config = Config::new(stowage_test_apiserver::velero_crds());
    config.namespaces = vec!["velero".into()];
    let server = TestServer::start(config).expect("test API server");
    // The file's credentials are external: they exist before either tool runs.
    for provider in ["aws", "gcp"] {
        let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{provider}-credentials"), "namespace": "velero"},
            "stringData": {"cloud": "[default]\naws_access_key_id = a\naws_secret_access_key = b\n"}});
        server.seed(secret, "velero").expect("seeded credential");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let kubeconfig = path.join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig("velero")).unwrap();
    std::fs::write(path.join("stowage.toml"), common::generated(LOCATIONS, 0)).unwrap();
    let rendered = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .current_dir(&path)
        .args(["render", "-o", "rendered"])
        .output()
        .unwrap();
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    Prepared {
        server,
        _dir: dir,
        dir: path,
        kubeconfig,
    }
}

fn check(output: std::process::Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn stowage_apply(bencher: divan::Bencher) {
    bencher.with_inputs(prepare).bench_local_values(|prepared| {
        let output = Command::new(env!("CARGO_BIN_EXE_stowage"))
            .current_dir(&prepared.dir)
            .arg("--kubeconfig")
            .arg(&prepared.kubeconfig)
            .args(["apply", "--auto-approve", "--no-bucket-checks"])
            .output()
            .unwrap();
        check(output, "stowage apply");
        assert_eq!(
            prepared
                .server
                .list("velero.io/v1", "BackupStorageLocation", Some("velero"))
                .len(),
            LOCATIONS
        );
        prepared
    });
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn kubectl_apply_server_side(bencher: divan::Bencher) {
    let kubectl = kubectl();
    bencher.with_inputs(prepare).bench_local_values(|prepared| {
        let output = Command::new(&kubectl)
            .current_dir(&prepared.dir)
            .arg("--kubeconfig")
            .arg(&prepared.kubeconfig)
            .arg("--cache-dir")
            .arg(prepared.dir.join("kube-cache"))
            .args(["apply", "--server-side", "-f", "rendered"])
            .output()
            .unwrap();
        check(output, "kubectl apply --server-side");
        assert_eq!(
            prepared
                .server
                .list("velero.io/v1", "BackupStorageLocation", Some("velero"))
                .len(),
            LOCATIONS
        );
        prepared
    });
}
