//! A fleet plan against one cluster's: `stowage plan -f clusters/` over 50 clusters
//! (each a namespace of the real kube-apiserver with its own file, applied already)
//! against `stowage plan -f clusters/c00.toml`. Each file is the size of a cluster's in
//! examples/fleet: 3 locations, 4 schedules fanned out to two locations each (8 Velero
//! Schedules), 2 snapshot locations, 2 credentials.
//!
//! Two measurements, each a ratio of medians in one run:
//!
//! - remote: the clusters as a fleet has them, each on machines of its own across a
//!   network. The requests go through the test harness's proxy (`Effect::Remote`): the
//!   real server answers each read once, and the proxy answers it again from that
//!   recording, 50 ms late (a round trip between regions), so that this machine's two
//!   cores carry stowage's work and not fifty API servers'. One cluster's plan is then
//!   mostly waiting, a fleet's waits overlap (`--parallel`), and the fleet's time is
//!   bounded by concurrency, not by the number of clusters: the goal is at most 3x one
//!   cluster, with the default `--parallel` (64); `--parallel 8` is shown beside it.
//! - local: the same on loopback, where nothing is waited for and the fleet is bound by
//!   the CPU work of 50 plans (stowage's and the API server's) on this machine's cores.
//!
//! Needs the real stack: run it as `bash tests/run bench`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use stowage_test_harness::{Effect, Fault, Namespace, Proxy, Route, Stack};

const CLUSTERS: usize = 50;
const LOCATIONS: usize = 3;
const SCHEDULES: usize = 4;

/// A round trip between regions, added to every answer on the remote path.
const ROUND_TRIP: Duration = Duration::from_millis(50);

struct Fleet {
    _namespaces: Vec<Namespace>,
    _dir: tempfile::TempDir,
    _proxy: Proxy,
    dir: PathBuf,
    kubeconfig: PathBuf,
    /// The same API server through the proxy, every answer `ROUND_TRIP` late.
    remote_kubeconfig: PathBuf,
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
            std::fs::write(&file, common::generated_in(&ns.name, LOCATIONS, SCHEDULES)).unwrap();
            check(
                stowage(&path, &kubeconfig, &["apply", "-f", file.to_str().unwrap(), "--auto-approve", "--no-bucket-checks"]),
                "stowage apply",
            );
            namespaces.push(ns);
        }
        let proxy = Proxy::start(stack);
        proxy.hooks().inject(Fault {
            route: Route::default(),
            times: usize::MAX,
            effect: Effect::Remote(ROUND_TRIP),
        });
        let remote_kubeconfig = path.join("remote.kubeconfig");
        std::fs::write(&remote_kubeconfig, proxy.kubeconfig("default")).unwrap();
        Fleet {
            _namespaces: namespaces,
            _dir: dir,
            _proxy: proxy,
            dir: path,
            kubeconfig,
            remote_kubeconfig,
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

#[derive(Clone, Copy)]
enum Network {
    Local,
    Remote,
}

fn plan(files: &str, path: Network, parallel: &str) -> Output {
    let fleet = fleet();
    let kubeconfig = match path {
        Network::Local => &fleet.kubeconfig,
        Network::Remote => &fleet.remote_kubeconfig,
    };
    stowage(
        &fleet.dir,
        kubeconfig,
        &[
            "plan",
            "-f",
            files,
            "--no-bucket-checks",
            "--detailed-exitcode",
            "--parallel",
            parallel,
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
    // The proxy records every cluster's answers on this first remote plan.
    check(
        plan("clusters", Network::Remote, "64"),
        "the recording plan",
    );
    for (name, path) in [("remote", Network::Remote), ("local", Network::Local)] {
        let one = median(|| plan("clusters/c00.toml", path, "64"));
        for parallel in ["8", "64"] {
            let all = median(|| plan("clusters", path, parallel));
            println!(
                "{name}: plan of {CLUSTERS} clusters (--parallel {parallel}): {:.0} ms; of one: {:.0} ms; ratio {:.2}x{}",
                all.as_secs_f64() * 1e3,
                one.as_secs_f64() * 1e3,
                all.as_secs_f64() / one.as_secs_f64(),
                if name == "remote" && parallel == "64" {
                    " (the default --parallel; goal: at most 3x)"
                } else {
                    ""
                }
            );
        }
    }
    divan::main();
}

#[divan::bench(sample_count = 5)]
fn plan_one_remote_cluster() -> Output {
    plan("clusters/c00.toml", Network::Remote, "64")
}

#[divan::bench(sample_count = 5)]
fn plan_fifty_remote_clusters() -> Output {
    plan("clusters", Network::Remote, "64")
}

#[divan::bench(sample_count = 5)]
fn plan_one_local_cluster() -> Output {
    plan("clusters/c00.toml", Network::Local, "64")
}

#[divan::bench(sample_count = 5)]
fn plan_fifty_local_clusters() -> Output {
    plan("clusters", Network::Local, "64")
}
