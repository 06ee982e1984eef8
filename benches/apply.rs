//! stowage against kubectl on the real kube-apiserver, with the same rendered objects,
//! at 1,000 and 5,000 objects:
//!
//! - `stowage apply` into an empty namespace vs `kubectl apply --server-side -f`;
//! - `stowage plan` of an applied namespace vs `kubectl diff --server-side -f`.
//!
//! The ratios of the medians are the numbers to watch. Before the timings, each
//! command runs once at 1,000 objects through the request-counting proxy, and the
//! request counts are printed.
//!
//! Needs the real stack and kubectl: run it as `bash tests/run bench`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use stowage_test_harness::{Namespace, Proxy, Stack};

const SIZES: [usize; 2] = [1_000, 5_000];
/// Every file has this many locations; the rest of the objects are schedule copies.
const LOCATIONS: usize = 1_000;

fn main() {
    print_request_counts();
    divan::main();
}

struct Prepared {
    ns: Namespace,
    _dir: tempfile::TempDir,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

/// A namespace with the file's external credentials, the file (`objects` Velero
/// objects) and its rendered objects; applied already when `applied`.
fn prepare(objects: usize, applied: bool) -> Prepared {
    let stack = Stack::shared();
    let ns = stack.namespace(&format!("bench-{objects}"));
    for provider in ["aws", "gcp"] {
        let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{provider}-credentials"), "namespace": ns.name},
            "stringData": {"cloud": "[default]\naws_access_key_id = a\naws_secret_access_key = b\n"}});
        stack.create(secret, "velero").expect("seeded credential");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let kubeconfig = path.join("kubeconfig");
    std::fs::write(&kubeconfig, stack.admin_kubeconfig()).unwrap();
    let schedules = (objects - LOCATIONS) / 2;
    std::fs::write(
        path.join("stowage.toml"),
        common::generated_in(&ns.name, LOCATIONS, schedules),
    )
    .unwrap();
    check(
        stowage(&path, &kubeconfig, &["render", "-o", "rendered"]),
        "stowage render",
    );
    let prepared = Prepared {
        ns,
        _dir: dir,
        dir: path,
        kubeconfig,
    };
    if applied {
        check(
            stowage_apply(&prepared, &prepared.kubeconfig),
            "stowage apply",
        );
    }
    prepared
}

fn stowage(dir: &std::path::Path, kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stowage"))
        .current_dir(dir)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap()
}

fn kubectl(prepared: &Prepared, kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    let kubectl = std::env::var_os("STOWAGE_KUBECTL")
        .expect("STOWAGE_KUBECTL is not set: run `bash tests/run bench`, which installs kubectl");
    Command::new(kubectl)
        .current_dir(&prepared.dir)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(prepared.dir.join("kube-cache"))
        .args(args)
        .output()
        .unwrap()
}

fn stowage_apply(prepared: &Prepared, kubeconfig: &std::path::Path) -> Output {
    stowage(
        &prepared.dir,
        kubeconfig,
        &["apply", "--auto-approve", "--no-bucket-checks"],
    )
}

fn stowage_plan(prepared: &Prepared, kubeconfig: &std::path::Path) -> Output {
    stowage(
        &prepared.dir,
        kubeconfig,
        &["plan", "--no-bucket-checks", "--detailed-exitcode"],
    )
}

fn kubectl_apply(prepared: &Prepared, kubeconfig: &std::path::Path) -> Output {
    kubectl(
        prepared,
        kubeconfig,
        &["apply", "--server-side", "-f", "rendered"],
    )
}

fn kubectl_diff(prepared: &Prepared, kubeconfig: &std::path::Path) -> Output {
    kubectl(
        prepared,
        kubeconfig,
        &["diff", "--server-side", "-f", "rendered"],
    )
}

fn check(output: Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `kubectl diff` exits 1 when it found differences; only more is a failure.
fn check_diff(output: Output) {
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "kubectl diff failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn location_count(prepared: &Prepared) -> usize {
    Stack::shared()
        .list(
            "velero.io/v1",
            "BackupStorageLocation",
            Some(&prepared.ns.name),
        )
        .len()
}

fn print_request_counts() {
    let objects = SIZES[0];
    let proxy = Proxy::start(Stack::shared());
    let count = |run: &dyn Fn(&Prepared, &std::path::Path) -> Output, applied: bool, what: &str| {
        let prepared = prepare(objects, applied);
        let kubeconfig = prepared.dir.join("proxy.kubeconfig");
        std::fs::write(&kubeconfig, proxy.kubeconfig(&prepared.ns.name)).unwrap();
        proxy.hooks().clear();
        let output = run(&prepared, &kubeconfig);
        if what.starts_with("kubectl diff") {
            check_diff(output);
        } else {
            check(output, what);
        }
        let requests = proxy.hooks().requests().len();
        eprintln!("{what} of {objects} objects: {requests} requests");
    };
    count(&stowage_apply, false, "stowage apply");
    count(&kubectl_apply, false, "kubectl apply --server-side");
    count(&stowage_plan, true, "stowage plan");
    count(&kubectl_diff, true, "kubectl diff --server-side");
}

#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn stowage_apply_to_empty(bencher: divan::Bencher, objects: usize) {
    bencher
        .with_inputs(|| prepare(objects, false))
        .bench_local_values(|prepared| {
            check(
                stowage_apply(&prepared, &prepared.kubeconfig),
                "stowage apply",
            );
            assert_eq!(location_count(&prepared), LOCATIONS);
            prepared
        });
}

#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn kubectl_apply_server_side_to_empty(bencher: divan::Bencher, objects: usize) {
    bencher
        .with_inputs(|| prepare(objects, false))
        .bench_local_values(|prepared| {
            check(
                kubectl_apply(&prepared, &prepared.kubeconfig),
                "kubectl apply --server-side",
            );
            assert_eq!(location_count(&prepared), LOCATIONS);
            prepared
        });
}

#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn stowage_plan_of_applied(bencher: divan::Bencher, objects: usize) {
    let prepared = prepare(objects, true);
    bencher.bench_local(|| {
        check(
            stowage_plan(&prepared, &prepared.kubeconfig),
            "stowage plan",
        )
    });
}

#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn kubectl_diff_server_side_of_applied(bencher: divan::Bencher, objects: usize) {
    let prepared = prepare(objects, true);
    bencher.bench_local(|| check_diff(kubectl_diff(&prepared, &prepared.kubeconfig)));
}
