//! The node tier (`bash tests/run node`, which needs root and changes the host): the
//! daemon where it is meant to run. stowage's image, built by examples/deploy/build-image,
//! imported into the node's containerd; examples/deploy applied with `kubectl apply -k`
//! as users deploy it; two replicas rolled out on a real kubelet; the ConfigMap edited
//! through the kubelet's volume update; the leader pod deleted; a rollout restart;
//! every write checked against the Lease's history in the API server's audit log.
//!
//! These tests are `#[ignore]`d in the default run, which must not change the host;
//! the node tier runs them with `--ignored`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{eventually, good_secret, stack};
use crate::support::assert_exit;

const TIER: &str = "the node tier: bash tests/run node (needs root; changes the host)";

fn images() -> PathBuf {
    std::env::var_os("STOWAGE_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("STOWAGE_IMAGES is not set: {TIER}"))
}

/// A value the stack's starter wrote into its env file (NODE_IP, CONTAINERD_ADDRESS).
fn stack_env(name: &str) -> String {
    let text = std::fs::read_to_string(stack().dir.join("env")).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("export {name}='")))
        .map(|value| value.trim_end_matches('\'').to_string())
        .unwrap_or_else(|| panic!("{name} is not in the stack's env: {TIER}"))
}

fn kubectl(args: &[&str]) -> Output {
    stack().kubectl().args(args).output().unwrap()
}

fn kubectl_ok(args: &[&str]) -> String {
    let out = kubectl(args);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kubectl_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&kubectl_ok(&all)).unwrap()
}

fn ctr(args: &[&str]) -> Output {
    Command::new("ctr")
        .args([
            "--address",
            &stack_env("CONTAINERD_ADDRESS"),
            "-n",
            "k8s.io",
        ])
        .args(args)
        .output()
        .unwrap()
}

/// stowage's image in the node's containerd, as `ctr images import` loads a
/// docker-archive.
fn import_image() {
    let archive = images().join("stowage.tar");
    let out = ctr(&["images", "import", archive.to_str().unwrap()]);
    assert_exit(&out, 0);
}

/// The Prometheus Operator's CRDs the example's PodMonitor and PrometheusRule need.
fn install_monitoring_crds() {
    let crds = std::env::var_os("STOWAGE_CRDS")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("STOWAGE_CRDS is not set: {TIER}"));
    for kind in ["podmonitors", "prometheusrules"] {
        let file = crds.join(format!("monitoring.coreos.com_{kind}.yaml"));
        kubectl_ok(&["apply", "--server-side", "-f", file.to_str().unwrap()]);
        kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{kind}.monitoring.coreos.com"),
            "--timeout=60s",
        ]);
    }
}

/// A file for the daemon in the pod: locations on the S3 emulator, reached at the
/// node's address, with an external credential (a Secret made below).
fn pod_file(locations: &[&str]) -> String {
    let emulators = crate::buckets::emulators();
    let url = emulators["s3"]["url"]
        .as_str()
        .unwrap()
        .replace("127.0.0.1", &stack_env("NODE_IP"));
    let mut text = String::from(
        "version = 1\n\n[velero]\nnamespace = \"velero\"\nowner = \"platform\"\n\n[credentials.aws]\nsecret = \"cloud-credentials\"\nkey = \"cloud\"\nexternal = true\n\n",
    );
    for (index, name) in locations.iter().enumerate() {
        text.push_str(&format!(
            "[backup_locations.{name}]\nprovider = \"aws\"\nbucket = \"{}\"\nprefix = \"node-tier/{name}\"\ncredential = \"aws\"\n{}config = {{ region = \"us-east-1\", s3Url = \"{url}\", s3ForcePathStyle = \"true\" }}\n\n",
            crate::cluster::LIVE_BUCKET,
            if index == 0 { "default = true\n" } else { "" }
        ));
    }
    text
}

/// An overlay of examples/deploy whose ConfigMap holds `file`: what a user's
/// kustomization that bases on the example does.
fn overlay(dir: &Path, file: &str) -> PathBuf {
    let example = crate::support::examples_dir().join("deploy");
    let overlay = dir.join("overlay");
    std::fs::create_dir_all(&overlay).unwrap();
    let indented: String = file.lines().map(|l| format!("    {l}\n")).collect();
    std::fs::write(
        overlay.join("configmap.yaml"),
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stowage\n  namespace: velero\ndata:\n  stowage.toml: |\n{indented}"
        ),
    )
    .unwrap();
    // kustomize takes a base by a relative path only.
    let up = overlay.components().count() - 1;
    let base = format!(
        "{}{}",
        "../".repeat(up),
        example.strip_prefix("/").unwrap().display()
    );
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {base}\npatches:\n  - path: configmap.yaml\n"
        ),
    )
    .unwrap();
    overlay
}

/// The stowage pods: name, IP, ready.
fn pods() -> Vec<(String, String, bool)> {
    let list = kubectl_json(&[
        "get",
        "pods",
        "-n",
        "velero",
        "-l",
        "app.kubernetes.io/name=stowage",
    ]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .map(|pod| {
            let ready = pod["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (
                pod["metadata"]["name"].as_str().unwrap().to_string(),
                pod["status"]["podIP"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                ready,
            )
        })
        .collect()
}

/// The pod the Lease names (its holder identity is `<pod>-<pid>`).
fn leader_pod() -> Option<String> {
    let lease = stack().get(
        "coordination.k8s.io/v1",
        "Lease",
        Some("velero"),
        "stowage-platform",
    )?;
    let holder = lease["spec"]["holderIdentity"].as_str()?;
    pods()
        .into_iter()
        .map(|(name, _, _)| name)
        .find(|name| holder.starts_with(&format!("{name}-")))
}

fn http_get(ip: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect((ip, 8080)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Every write in namespace velero by the stowage ServiceAccount came from the pod the
/// last Lease write before it named (pods are told apart by their bound tokens' pod
/// name, which the audit log records); no request of the account was refused.
fn check_one_writer_from_the_audit_log() -> usize {
    let text = std::fs::read_to_string(stack().dir.join("audit.log")).unwrap();
    let account = "system:serviceaccount:velero:stowage";
    let mut events: Vec<Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| e["objectRef"]["namespace"] == "velero" && e["user"]["username"] == account)
        .collect();
    events.sort_by(|a, b| {
        a["stageTimestamp"]
            .as_str()
            .cmp(&b["stageTimestamp"].as_str())
    });
    let pod_of = |event: &Value| -> String {
        event["user"]["extra"]["authentication.kubernetes.io/pod-name"][0]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let mut holders: Vec<(String, Option<String>)> = Vec::new();
    let mut writes = 0;
    for event in &events {
        let code = event["responseStatus"]["code"].as_u64().unwrap_or(0);
        assert_ne!(code, 403, "the Role refused stowage: {event}");
        if !(200..300).contains(&code) {
            continue;
        }
        let completed = event["stageTimestamp"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if event["objectRef"]["resource"] == "leases" {
            let holder = event["responseObject"]["spec"]["holderIdentity"]
                .as_str()
                .filter(|h| !h.is_empty())
                .map(|_| pod_of(event));
            holders.push((completed, holder));
            continue;
        }
        writes += 1;
        let received = event["requestReceivedTimestamp"]
            .as_str()
            .unwrap_or_default();
        let holder = holders
            .iter()
            .rev()
            .find(|(at, _)| at.as_str() < received)
            .and_then(|(_, holder)| holder.clone());
        let writer = pod_of(event);
        assert_eq!(
            holder.as_deref(),
            Some(writer.as_str()),
            "{} {}/{} by {writer} at {received}, while the Lease named {holder:?}",
            event["verb"],
            event["objectRef"]["resource"],
            event["objectRef"]["name"]
        );
    }
    writes
}

/// The user a container's process runs as, read from the host's /proc through
/// containerd's task list.
fn container_uids() -> Vec<u32> {
    let out = ctr(&["tasks", "ls"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut uids = Vec::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(id), Some(pid)) = (fields.first(), fields.get(1)) else {
            continue;
        };
        let info = ctr(&["containers", "info", id]);
        if !String::from_utf8_lossy(&info.stdout).contains("stowage:0.1.0") {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if let Some(uid) = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
        {
            uids.push(uid);
        }
    }
    uids
}

#[test]
#[ignore = "the node tier: bash tests/run node (needs root; changes the host)"]
fn node_the_image_is_reproducible_and_holds_no_shell() {
    let first = std::fs::read_to_string(images().join("stowage.digest")).unwrap();
    let again = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(crate::support::examples_dir().join("deploy/build-image"))
        .arg(again.path())
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let second = std::fs::read_to_string(again.path().join("stowage.digest")).unwrap();
    assert_eq!(first, second, "two builds, two digests");
    // The layer's files: the binary, its libraries, certificates, the user; no shell.
    let listing = Command::new("python3")
        .arg("-c")
        .arg("import gzip, io, json, sys, tarfile\nt = tarfile.open(sys.argv[1])\nm = json.loads(t.extractfile('manifest.json').read())\nfor layer in m[0]['Layers']:\n    for member in tarfile.open(fileobj=io.BytesIO(gzip.decompress(t.extractfile(layer).read()))).getnames():\n        print(member)\nprint(json.loads(t.extractfile(m[0]['Config']).read())['config']['User'])")
        .arg(images().join("stowage.tar"))
        .output()
        .unwrap();
    assert_exit(&listing, 0);
    let files = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(files.contains("./usr/local/bin/stowage"), "{files}");
    assert!(
        files.contains("./etc/ssl/certs/ca-certificates.crt"),
        "{files}"
    );
    for shell in ["sh", "bash", "busybox", "dash"] {
        assert!(
            !files.lines().any(|f| f.ends_with(&format!("/{shell}"))),
            "a shell in the image: {shell}\n{files}"
        );
    }
    assert!(files.trim_end().ends_with("65532:65532"), "{files}");
}

#[test]
#[ignore = "the node tier: bash tests/run node (needs root; changes the host)"]
fn node_the_deploy_example_rolls_out_follows_its_configmap_and_keeps_one_writer() {
    import_image();
    install_monitoring_crds();
    let dir = tempfile::tempdir().unwrap();
    let secret = crate::cluster::s3_credentials(&good_secret());
    let mut create = stack().kubectl();
    create.args([
        "create",
        "secret",
        "generic",
        "cloud-credentials",
        "-n",
        "velero",
        &format!("--from-literal=cloud={secret}"),
    ]);
    let _ = create.stdout(Stdio::null()).stderr(Stdio::null()).status();

    // As users deploy: the example, with their file in its ConfigMap.
    let started = Instant::now();
    let overlay = overlay(dir.path(), &pod_file(&["primary"]));
    kubectl_ok(&["apply", "-k", overlay.to_str().unwrap()]);
    kubectl_ok(&[
        "rollout",
        "status",
        "deployment/stowage",
        "-n",
        "velero",
        "--timeout=300s",
    ]);
    eprintln!("node: rolled out in {:?}", started.elapsed());
    let ready = pods();
    assert_eq!(ready.len(), 2, "{ready:?}");
    assert!(ready.iter().all(|(_, _, ready)| *ready), "{ready:?}");
    eventually(
        "the leader to apply the file",
        Duration::from_secs(60),
        || {
            stack().get(
                "velero.io/v1",
                "BackupStorageLocation",
                Some("velero"),
                "primary",
            )
        },
    );
    let uids = container_uids();
    assert!(
        !uids.is_empty() && uids.iter().all(|uid| *uid == 65532),
        "{uids:?}"
    );

    // Metrics through the pod's IP, and promtool's lint on them.
    let (_, ip, _) = pods().into_iter().next().unwrap();
    let (status, metrics) = http_get(&ip, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("stowage_leader "), "{metrics}");
    let promtool = std::env::var_os("STOWAGE_PROMTOOL").expect("STOWAGE_PROMTOOL");
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        check
            .stdin
            .take()
            .unwrap()
            .write_all(metrics.as_bytes())
            .unwrap();
    }
    let lint = check.wait_with_output().unwrap();
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );

    // A ConfigMap edit reaches the leader through the kubelet's volume update.
    let edited = Instant::now();
    let overlay = self::overlay(dir.path(), &pod_file(&["primary", "dr"]));
    kubectl_ok(&["apply", "-k", overlay.to_str().unwrap()]);
    eventually("the edit to be applied", Duration::from_secs(120), || {
        stack().get(
            "velero.io/v1",
            "BackupStorageLocation",
            Some("velero"),
            "dr",
        )
    });
    eprintln!("node: a ConfigMap edit applied in {:?}", edited.elapsed());

    // The leader pod deleted: the Lease moves to the other replica, which converges.
    let leader = eventually("a leader pod", Duration::from_secs(30), leader_pod);
    let deleted = Instant::now();
    kubectl_ok(&["delete", "pod", "-n", "velero", &leader, "--wait=false"]);
    let next = eventually("the Lease to move", Duration::from_secs(30), || {
        leader_pod().filter(|pod| *pod != leader)
    });
    let handover = deleted.elapsed();
    eprintln!("node: the Lease moved from {leader} to {next} in {handover:?}");
    assert!(handover < Duration::from_secs(15), "{handover:?}");
    let overlay = self::overlay(dir.path(), &pod_file(&["primary", "dr", "extra"]));
    kubectl_ok(&["apply", "-k", overlay.to_str().unwrap()]);
    eventually(
        "the new leader to apply an edit",
        Duration::from_secs(120),
        || {
            stack().get(
                "velero.io/v1",
                "BackupStorageLocation",
                Some("velero"),
                "extra",
            )
        },
    );

    // A rollout restart replaces both pods; never two writers.
    kubectl_ok(&["rollout", "restart", "deployment/stowage", "-n", "velero"]);
    kubectl_ok(&[
        "rollout",
        "status",
        "deployment/stowage",
        "-n",
        "velero",
        "--timeout=300s",
    ]);
    let overlay = self::overlay(dir.path(), &pod_file(&["primary", "dr"]));
    kubectl_ok(&["apply", "-k", overlay.to_str().unwrap()]);
    eventually(
        "the extra location deleted after the quiet period",
        Duration::from_secs(150),
        || {
            stack()
                .get(
                    "velero.io/v1",
                    "BackupStorageLocation",
                    Some("velero"),
                    "extra",
                )
                .is_none()
                .then_some(())
        },
    );
    let writes = check_one_writer_from_the_audit_log();
    assert!(writes > 0);
    eprintln!("node: {writes} writes, each by the pod holding the Lease");

    // The pods run with the Role and nothing more.
    let can = kubectl(&[
        "auth",
        "can-i",
        "list",
        "secrets",
        "-n",
        "default",
        "--as=system:serviceaccount:velero:stowage",
    ]);
    assert_eq!(String::from_utf8_lossy(&can.stdout).trim(), "no");

    kubectl_ok(&[
        "delete",
        "-k",
        overlay.to_str().unwrap(),
        "--wait=true",
        "--timeout=120s",
    ]);
}

#[test]
#[ignore = "the node tier: bash tests/run node (needs root; changes the host)"]
fn node_the_fleet_overlays_daemon_runs_in_a_pod_with_its_cluster_context() {
    import_image();
    // The staging cluster's overlay as delivered (Argo CD and Flux render the same).
    let overlay = crate::support::examples_dir().join("fleet/clusters/staging");
    // The deploy example's daemon shares these names: one at a time.
    let _ = kubectl(&[
        "delete",
        "deployment",
        "stowage",
        "-n",
        "velero",
        "--wait=true",
        "--timeout=120s",
    ]);
    let _ = kubectl(&[
        "wait",
        "--for=delete",
        "pod",
        "-n",
        "velero",
        "-l",
        "app.kubernetes.io/name=stowage",
        "--timeout=120s",
    ]);
    kubectl_ok(&["apply", "-k", overlay.to_str().unwrap()]);
    // Its file says `[cluster] context = "staging"`; in the pod there is no kubeconfig,
    // so it uses the pod's service account instead of looking for one.
    let running = eventually("a pod to run", Duration::from_secs(180), || {
        let list = kubectl_json(&[
            "get",
            "pods",
            "-n",
            "velero",
            "-l",
            "app.kubernetes.io/name=stowage",
        ]);
        list["items"].as_array()?.iter().find_map(|pod| {
            (pod["status"]["phase"] == "Running" && pod["metadata"]["deletionTimestamp"].is_null())
                .then(|| pod["metadata"]["name"].as_str().unwrap().to_string())
        })
    });
    std::thread::sleep(Duration::from_secs(20));
    let log = kubectl_ok(&["logs", "-n", "velero", &running]);
    assert!(!log.contains("no cluster configured"), "{log}");
    assert!(log.contains("\"msg\""), "JSON log lines: {log}");
    let pod = kubectl_json(&["get", "pod", "-n", "velero", &running]);
    assert_eq!(
        pod["status"]["containerStatuses"][0]["restartCount"], 0,
        "{pod:#}"
    );
    // It talks to the API server as the pod's ServiceAccount. The audit log records
    // writes only, and of the overlay's replicas only the Lease holder writes: look
    // for any pod of this rollout (its ReplicaSet's name prefix).
    let rollout = running
        .rsplit_once('-')
        .map(|(prefix, _)| format!("{prefix}-"))
        .unwrap();
    eventually(
        "a write from the overlay's pods",
        Duration::from_secs(60),
        || {
            let audit = std::fs::read_to_string(stack().dir.join("audit.log")).unwrap();
            let marker = format!("\"authentication.kubernetes.io/pod-name\":[\"{rollout}");
            audit
                .lines()
                .any(|line| line.contains(&marker))
                .then_some(())
        },
    );
    kubectl_ok(&[
        "delete",
        "-k",
        overlay.to_str().unwrap(),
        "--wait=true",
        "--timeout=120s",
    ]);
}
