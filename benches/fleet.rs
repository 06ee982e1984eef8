//! A fleet plan against one cluster's: `stowage plan -f clusters/` over 50 clusters
//! (each a namespace of the real kube-apiserver with its own file of 20 locations and
//! 50 schedules, applied already) against `stowage plan -f clusters/c00.toml`. Clusters
//! are planned concurrently (`--parallel`, default 8), so the fleet's time is bounded
//! by concurrency, not by the number of clusters; the goal is at most 3× one cluster.
//! The ratio of medians is printed first, then divan's timings.
//!
//! Needs the real stack: run it as `bash tests/run bench`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use stowage_test_harness::{Namespace, Stack};

const CLUSTERS: usize = 50;

struct Fleet {
    _namespaces: Vec<Namespace>,
    _dir: tempfile::TempDir,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

fn fleet() -> &'static Fleet {
    static FLEET: std::sync::OnceLock<Fleet> = std::sync::OnceLock::new();
    FLEET.get_or_init(|| {
        let stack = Stack::shared();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let kubeconfig = path.join("kubeconfig");
        std::fs::write(&kubeconfig, stack.admin_kubeconfig()).unwrap();
        std::fs::create_dir_all(path.join("clusters")).unwrap();
        let mut namespaces = Vec::new();
        for index in 0..CLUSTERS {
            let ns = stack.namespace(&format!("fleet-bench-{index}"));
            for provider in ["aws", "gcp"] {
                let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": format!("{provider}-credentials"), "namespace": ns.name},
                    "stringData": {"cloud": "[default]\naws_access_key_id = a\naws_secret_access_key = b\n"}});
                stack.create(secret, "velero").expect("seeded credential");
            }
            let file = path.join(format!("clusters/c{index:02}.toml"));
            std::fs::write(&file, common::generated_in(&ns.name, 20, 50)).unwrap();
            check(
                stowage(&path, &kubeconfig, &["apply", "-f", file.to_str().unwrap(), "--auto-approve", "--no-bucket-checks"]),
                "stowage apply",
            );
            namespaces.push(ns);
        }
        Fleet {
            _namespaces: namespaces,
            _dir: dir,
            dir: path,
            kubeconfig,
        }
    })
}

fn stowage(dir: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stowage"))
        .current_dir(dir)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap()
}

fn check(output: Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn plan(files: &str) -> Output {
    let fleet = fleet();
    stowage(
        &fleet.dir,
        &fleet.kubeconfig,
        &[
            "plan",
            "-f",
            files,
            "--no-bucket-checks",
            "--detailed-exitcode",
        ],
    )
}

fn median(mut run: impl FnMut() -> Output) -> Duration {
    let mut times: Vec<Duration> = (0..7)
        .map(|_| {
            let started = Instant::now();
            check(run(), "stowage plan");
            started.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    fleet();
    let one = median(|| plan("clusters/c00.toml"));
    let all = median(|| plan("clusters"));
    println!(
        "plan of {CLUSTERS} clusters: {:.0} ms; of one: {:.0} ms; ratio {:.2}x (goal: at most 3x)",
        all.as_secs_f64() * 1e3,
        one.as_secs_f64() * 1e3,
        all.as_secs_f64() / one.as_secs_f64()
    );
    divan::main();
}

#[divan::bench(sample_count = 5)]
fn plan_one_cluster() -> Output {
    plan("clusters/c00.toml")
}

#[divan::bench(sample_count = 5)]
fn plan_fifty_clusters() -> Output {
    plan("clusters")
}
