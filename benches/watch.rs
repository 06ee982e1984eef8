//! `stowage watch`: from saving the file to the change being in the cluster. Each
//! sample saves a new prefix for one location and waits until the real API server
//! holds it; divan's fastest / median / mean / slowest are the latency distribution
//! (the daemon debounces edits for 200 ms by design).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use stowage_test_harness::{Namespace, Stack};

fn main() {
    divan::main();
}

struct Running {
    ns: Namespace,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn file(namespace: &str, prefix: &str) -> String {
    format!(
        "version = 1\n\n[velero]\nnamespace = \"{namespace}\"\n\n[credentials.install]\nsecret = \"cloud-credentials\"\nexternal = true\n\n[backup_locations.primary]\nprovider = \"aws\"\nbucket = \"velero-backups\"\nprefix = \"{prefix}\"\ndefault = true\nconfig = {{ region = \"us-east-1\" }}\n"
    )
}

fn prefix_now(ns: &Namespace) -> Option<String> {
    ns.get("velero.io/v1", "BackupStorageLocation", "primary")?["spec"]["objectStorage"]["prefix"]
        .as_str()
        .map(str::to_string)
}

fn start() -> Running {
    let stack = Stack::shared();
    let ns = stack.namespace("bench-watch");
    ns.create(
        serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "cloud-credentials"},
            "stringData": {"cloud": "[default]\naws_access_key_id = a\naws_secret_access_key = b\n"}}),
        "velero",
    )
    .expect("seeded credential");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kubeconfig"), stack.admin_kubeconfig()).unwrap();
    std::fs::write(dir.path().join("stowage.toml"), file(&ns.name, "start")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .current_dir(dir.path())
        .args([
            "--kubeconfig",
            "kubeconfig",
            "watch",
            "--no-bucket-checks",
            "--resync",
            "1h",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stowage watch");
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
    let running = Running { ns, child, dir };
    wait_for(&running.ns, "start");
    running
}

fn wait_for(ns: &Namespace, prefix: &str) {
    for _ in 0..20_000 {
        if prefix_now(ns).as_deref() == Some(prefix) {
            return;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    panic!("the daemon never applied prefix {prefix}");
}

#[divan::bench(sample_count = 40, sample_size = 1)]
fn file_saved_to_applied(bencher: divan::Bencher) {
    let running = start();
    let mut round = 0u64;
    bencher.bench_local(|| {
        round += 1;
        let prefix = format!("round-{round}");
        let path = running.dir.path().join("stowage.toml");
        let temporary = running.dir.path().join(".stowage.toml.tmp");
        std::fs::write(&temporary, file(&running.ns.name, &prefix)).unwrap();
        std::fs::rename(&temporary, &path).unwrap();
        wait_for(&running.ns, &prefix);
    });
}
