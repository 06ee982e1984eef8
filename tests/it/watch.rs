//! `stowage watch` as a process against the real API server: edits applied, invalid
//! edits refused and reported, drift reverted, two replicas with one writer, a clean
//! stop, a soak of rapid edits, and the deploy example's RBAC enforced by the real server.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::{CANARY, Options, TestCluster, cluster, eventually, stack};

/// A file with the given locations (name, prefix under the namespace's), the first the
/// default.
pub fn file_text(cluster: &TestCluster, locations: &[(&str, &str)]) -> String {
    locations
        .iter()
        .enumerate()
        .map(|(i, (name, place))| {
            cluster.location(name, place, if i == 0 { "default = true\n" } else { "" })
        })
        .collect()
}

/// `stowage watch` for this cluster, its log collected.
pub fn spawn(cluster: &TestCluster, extra: &[&str]) -> Daemon {
    spawn_with(cluster.command(), extra)
}

pub fn spawn_with(mut command: Command, extra: &[&str]) -> Daemon {
    command.args(["watch", "--listen", "127.0.0.1:0"]);
    // Buckets are checked only by tests that say how long a check may take.
    if !extra.contains(&"--bucket-timeout") {
        command.arg("--no-bucket-checks");
    }
    if !extra.contains(&"--resync") {
        command.args(["--resync", "2s"]);
    }
    // Deletions and credentials wait for the inputs to be quiet this long; the tests
    // of the quiet period itself set their own.
    if !extra.contains(&"--quiet-period") {
        command.args(["--quiet-period", "2s"]);
    }
    let mut child = command
        .args(extra)
        .env("STOWAGE_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stowage watch starts");
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let mut daemon = Daemon {
        child,
        log,
        port: 0,
    };
    let line = daemon.wait_for_log("listening on 127.0.0.1:");
    let port = line
        .split("listening on 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .expect("a port in the log");
    daemon.port = port;
    daemon
}

pub struct Daemon {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
    pub port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Every daemon's whole log is searched for the canary, in every form.
        if !std::thread::panicking() {
            crate::cluster::assert_no_canary_in(&self.log(), "the daemon's log");
        }
    }
}

impl Daemon {
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn wait_for_log(&self, needle: &str) -> String {
        eventually(
            &format!("{needle:?} in the log"),
            Duration::from_secs(30),
            || {
                self.log()
                    .lines()
                    .find(|l| l.contains(needle))
                    .map(str::to_string)
            },
        )
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
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

    pub fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.get("/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in:\n{body}"))
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        eventually("the daemon to exit", Duration::from_secs(20), || {
            self.child.try_wait().unwrap()
        })
    }

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

#[test]
fn edits_apply_an_invalid_edit_changes_nothing_and_fixing_it_resumes() {
    let cluster = cluster("watch-edits-apply-an", Options::default());
    cluster.write_file(&file_text(&cluster, &[("primary", "primary")]));
    let mut daemon = spawn(&cluster, &[]);
    eventually("primary to be created", Duration::from_secs(20), || {
        cluster.bsl("primary")
    });
    eventually("/readyz to pass", Duration::from_secs(20), || {
        (daemon.get("/readyz").0 == 200).then_some(())
    });
    assert_eq!(daemon.get("/healthz"), (200, "ok\n".to_string()));

    // An edit: a second location appears.
    cluster.write_file(&file_text(
        &cluster,
        &[("primary", "primary"), ("secondary", "secondary")],
    ));
    eventually("secondary to be created", Duration::from_secs(20), || {
        cluster.bsl("secondary")
    });

    // An invalid edit (a misspelt key) that would also remove secondary: nothing changes.
    let invalid =
        file_text(&cluster, &[("primary", "primary")]).replace("default = true", "defualt = true");
    cluster.write_file(&invalid);
    let (status, body) = eventually(
        "/readyz to report the invalid file",
        Duration::from_secs(20),
        || {
            let (status, body) = daemon.get("/readyz");
            (status == 503 && body.contains("does not validate")).then_some((status, body))
        },
    );
    assert_eq!(status, 503);
    assert!(
        body.contains("stowage.toml:15:1: stowage::unknown-key"),
        "{body}"
    );
    assert_eq!(daemon.metric("stowage_file_invalid"), 1.0);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        cluster.bsl("secondary").is_some(),
        "the last valid state stays"
    );
    assert!(daemon.log().contains("the file does not validate"));

    // Fixed: applying resumes, and the removal goes through.
    cluster.write_file(&file_text(&cluster, &[("primary", "primary")]));
    eventually("secondary to be deleted", Duration::from_secs(20), || {
        cluster.bsl("secondary").is_none().then_some(())
    });
    eventually("/readyz to pass again", Duration::from_secs(20), || {
        (daemon.get("/readyz").0 == 200).then_some(())
    });
    assert_eq!(daemon.metric("stowage_file_invalid"), 0.0);
    // The round is counted when it ends, a moment after its writes are visible.
    eventually("three applies counted", Duration::from_secs(20), || {
        (daemon.metric("stowage_applies_total") >= 3.0).then_some(())
    });

    // SIGTERM: a clean stop.
    let status = daemon.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        !daemon.log().contains(CANARY),
        "the canary secret was logged"
    );
}

#[test]
fn manual_edits_of_managed_objects_are_reverted_and_unmanaged_objects_left_alone() {
    let cluster = cluster("watch-manual-edits-of", Options::default());
    cluster.seed(
        json!({"apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
            "metadata": {"name": "hand-made"},
            "spec": {"provider": "aws", "objectStorage": {"bucket": "elsewhere"}}}),
        "kubectl-create",
    );
    cluster.write_file(&file_text(&cluster, &[("primary", "primary")]));
    let daemon = spawn(&cluster, &[]);
    eventually("primary to be created", Duration::from_secs(20), || {
        cluster.bsl("primary")
    });
    let hand_made = cluster.bsl("hand-made").unwrap();

    // As `kubectl edit` would: a merge patch by another field manager.
    cluster
        .ns
        .merge_patch(
            "velero.io/v1",
            "BackupStorageLocation",
            "primary",
            json!({"spec": {"objectStorage": {"bucket": "velero-elsewhere"}}}),
            "kubectl-edit",
        )
        .unwrap();
    eventually("the edit to be reverted", Duration::from_secs(20), || {
        (cluster.bsl("primary")?["spec"]["objectStorage"]["bucket"] == crate::cluster::LIVE_BUCKET)
            .then_some(())
    });
    eventually(
        "a drift correction to be counted",
        Duration::from_secs(10),
        || (daemon.metric("stowage_drift_corrections_total") >= 1.0).then_some(()),
    );
    let after = cluster.bsl("hand-made").unwrap();
    assert_eq!(
        after["metadata"]["resourceVersion"], hand_made["metadata"]["resourceVersion"],
        "unmanaged object untouched"
    );
}

#[test]
fn two_replicas_with_leader_election_have_one_writer_and_the_second_takes_over() {
    let cluster = cluster("watch-two-replicas-with", Options::default());
    cluster.write_file(&file_text(&cluster, &[("primary", "primary")]));
    let mut first = spawn(&cluster, &["--leader-elect"]);
    eventually("primary to be created", Duration::from_secs(20), || {
        cluster.bsl("primary")
    });
    let second = spawn(&cluster, &["--leader-elect"]);
    eventually(
        "the second replica to follow",
        Duration::from_secs(20),
        || {
            second
                .log()
                .contains("another replica holds the lease")
                .then_some(())
        },
    );
    assert_eq!(first.metric("stowage_leader"), 1.0);
    assert_eq!(second.metric("stowage_leader"), 0.0);

    // Only the leader writes: every write since the start carries one pid's identity.
    cluster.write_file(&file_text(
        &cluster,
        &[("primary", "primary"), ("secondary", "secondary")],
    ));
    eventually("secondary to be created", Duration::from_secs(20), || {
        cluster.bsl("secondary")
    });
    // The round logs its writes when it ends, after its convergence check.
    let written = format!("BackupStorageLocation {}/secondary", cluster.namespace());
    eventually(
        "the leader to log the write",
        Duration::from_secs(10),
        || first.log().contains(&written).then_some(()),
    );
    assert!(
        !second.log().contains("\"applied\"") && !second.log().contains(" applied "),
        "the follower never writes"
    );

    // The leader stops (and releases the Lease): the follower takes over and applies.
    assert!(first.terminate().success());
    eventually(
        "the second replica to lead",
        Duration::from_secs(30),
        || (second.metric("stowage_leader") == 1.0).then_some(()),
    );
    cluster.write_file(&file_text(&cluster, &[("primary", "primary")]));
    eventually(
        "secondary to be deleted by the new leader",
        Duration::from_secs(30),
        || cluster.bsl("secondary").is_none().then_some(()),
    );
    let lease = cluster
        .ns
        .get("coordination.k8s.io/v1", "Lease", "stowage-default")
        .unwrap();
    assert!(
        lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap()
            .ends_with(&second.child.id().to_string())
    );
}

#[test]
fn a_soak_of_rapid_edits_ends_in_the_last_valid_file_without_growing() {
    let cluster = cluster("watch-a-soak-of", Options::default());
    cluster.write_file(&file_text(&cluster, &[("primary", "primary")]));
    let daemon = spawn(&cluster, &[]);
    eventually("primary to be created", Duration::from_secs(20), || {
        cluster.bsl("primary")
    });
    let mut last_valid = String::new();
    let mut rss_after_warmup = 0;
    for i in 0..1000 {
        let prefix = format!("run-{}", i % 7);
        let text = if i % 10 == 3 {
            // Invalid: a cron the validator refuses.
            format!(
                "{}[schedules.broken]\ncron = \"61 * * * *\"\n",
                file_text(&cluster, &[("primary", "primary"), ("extra", &prefix)])
            )
        } else {
            let valid = file_text(&cluster, &[("primary", "primary"), ("extra", &prefix)]);
            last_valid = prefix.clone();
            valid
        };
        cluster.write_file(&text);
        if i == 200 {
            std::thread::sleep(Duration::from_millis(500));
            rss_after_warmup = daemon.rss_kib();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    eventually(
        "the last valid file to be applied",
        Duration::from_secs(30),
        || {
            let wanted = format!("{}/{last_valid}", cluster.namespace());
            (cluster.bsl("extra")?["spec"]["objectStorage"]["prefix"] == wanted.as_str())
                .then_some(())
        },
    );
    assert!(
        daemon.child.id() > 0 && daemon.get("/healthz").0 == 200,
        "still running"
    );
    let rss_end = daemon.rss_kib();
    assert!(
        rss_end < rss_after_warmup + 16 * 1024,
        "memory grew from {rss_after_warmup} KiB to {rss_end} KiB over 800 edits"
    );
}

/// The deploy example's RBAC objects, moved into `namespace` (cluster-wide names made
/// unique to it).
pub fn deploy_rbac(documents: Vec<Value>, namespace: &str) -> Vec<Value> {
    documents
        .into_iter()
        .map(|object| {
            // The policy names the ServiceAccount by its user name.
            let text = serde_json::to_string(&object).unwrap().replace(
                "system:serviceaccount:velero:stowage",
                &format!("system:serviceaccount:{namespace}:stowage"),
            );
            let mut object: Value = serde_json::from_str(&text).unwrap();
            let kind = object["kind"].as_str().unwrap_or_default().to_string();
            let cluster_scoped =
                kind.starts_with("Cluster") || kind.starts_with("ValidatingAdmission");
            // The role stowage binds by name in its drill namespaces is the same for
            // every test: shared, applied by each.
            let shared = object["metadata"]["name"] == stowage::cluster::drill::READER_ROLE;
            if cluster_scoped && !shared {
                let name = format!(
                    "{}-{namespace}",
                    object["metadata"]["name"].as_str().unwrap()
                );
                object["metadata"]["name"] = json!(name);
                if object["roleRef"]["kind"] == "ClusterRole" {
                    object["roleRef"]["name"] = json!(name);
                }
                if kind == "ValidatingAdmissionPolicyBinding" {
                    object["spec"]["policyName"] = json!(name);
                }
            } else if !cluster_scoped {
                object["metadata"]["namespace"] = json!(namespace);
            }
            if let Some(subjects) = object.get_mut("subjects").and_then(Value::as_array_mut) {
                for subject in subjects {
                    subject["namespace"] = json!(namespace);
                }
            }
            object
        })
        .collect()
}

#[test]
fn the_deploy_example_runs_under_its_own_rbac_on_the_real_server() {
    let deploy = crate::support::examples_dir().join("deploy");
    let documents = |name: &str| -> Vec<Value> {
        serde_saphyr::from_multiple(&std::fs::read_to_string(deploy.join(name)).unwrap()).unwrap()
    };
    let configmap = documents("configmap.yaml").remove(0);
    let deployment = documents("deployment.yaml").remove(0);
    let args: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "watch");
    assert!(args.contains(&"--leader-elect"));

    // The example's ServiceAccount, Role and bindings, in this test's namespace.
    let cluster = cluster("watch-deploy-rbac", Options::default());
    let ns = cluster.namespace().to_string();
    for object in deploy_rbac(documents("rbac.yaml"), &ns) {
        stack().apply(object, "kubectl-create").unwrap();
    }
    let token = stack().token(&ns, "stowage");
    let kubeconfig = cluster.dir.path().join("stowage-sa.kubeconfig");
    std::fs::write(&kubeconfig, stack().token_kubeconfig(&token, &ns)).unwrap();
    let as_service_account = || cluster.command_with(&kubeconfig);

    // The example's file, in this namespace, validates.
    let file = configmap["data"]["stowage.toml"]
        .as_str()
        .unwrap()
        .replace("namespace = \"velero\"", &format!("namespace = \"{ns}\""));
    std::fs::write(cluster.dir.path().join("stowage.toml"), &file).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .current_dir(cluster.dir.path())
        .arg("validate")
        .output()
        .unwrap();
    crate::support::assert_exit(&out, 0);
    cluster.seed(
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "cloud-credentials"},
            "stringData": {"cloud": "[default]\naws_access_key_id = a\naws_secret_access_key = b\n"}}),
        "velero",
    );

    // plan and apply as the ServiceAccount: the real server's RBAC allows all of it.
    let out = as_service_account()
        .args(["plan", "--no-bucket-checks"])
        .output()
        .unwrap();
    crate::support::assert_exit(&out, 0);
    let out = as_service_account()
        .args(["apply", "--auto-approve", "--no-bucket-checks"])
        .output()
        .unwrap();
    crate::support::assert_exit(&out, 0);
    let daemon = spawn_with(as_service_account(), &["--leader-elect"]);
    eventually("/readyz to pass", Duration::from_secs(30), || {
        (daemon.get("/readyz").0 == 200).then_some(())
    });
    cluster
        .ns
        .merge_patch(
            "velero.io/v1",
            "BackupStorageLocation",
            "dr",
            json!({"spec": {"accessMode": "ReadOnly"}}),
            "kubectl-edit",
        )
        .unwrap();
    // The file leaves accessMode unset (Velero's default, ReadWrite): the edit is
    // taken out again.
    let reverted = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        cluster.bsl("dr").is_some_and(|dr| {
            dr["spec"]
                .get("accessMode")
                .is_none_or(|m| m == "ReadWrite")
        })
    });
    assert!(reverted, "the drift was not reverted:\n{}", daemon.log());
    assert_eq!(daemon.metric("stowage_leader"), 1.0);
    let log = daemon.log();
    drop(daemon);
    for refused in ["forbidden", "not allowed to"] {
        assert!(
            !log.to_lowercase().contains(refused),
            "{refused} in the log:\n{log}"
        );
    }

    // Outside the Role (another namespace): refused by the server, in one plain sentence.
    let elsewhere = stack().namespace("watch-deploy-rbac-elsewhere");
    // The drills' cluster-wide grants reach only the namespaces drills make: kubectl,
    // as the ServiceAccount, may neither delete another namespace nor bind the reader
    // role there.
    let kubectl = std::env::var_os("STOWAGE_KUBECTL")
        .expect("STOWAGE_KUBECTL is not set; run the tests with `bash tests/run` (it installs kubectl into .tools/venv)");
    let as_kubectl = |args: &[&str]| {
        Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .unwrap()
    };
    let out = as_kubectl(&["delete", "namespace", &elsewhere.name, "--wait=false"]);
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stowage deletes only the namespaces its drills made"),
        "{stderr}"
    );
    let out = as_kubectl(&[
        "create",
        "rolebinding",
        "reader",
        "--clusterrole",
        stowage::cluster::drill::READER_ROLE,
        "--user",
        "someone",
        "-n",
        &elsewhere.name,
    ]);
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("stowage binds stowage-drill-reader only in the namespaces its drills made"),
        "{stderr}"
    );
    assert!(
        stack()
            .get("v1", "Namespace", None, &elsewhere.name)
            .is_some()
    );
    std::fs::write(
        cluster.dir.path().join("stowage.toml"),
        file.replace(
            &format!("namespace = \"{ns}\""),
            &format!("namespace = \"{}\"", elsewhere.name),
        ),
    )
    .unwrap();
    let out = as_service_account()
        .args(["plan", "--no-bucket-checks"])
        .output()
        .unwrap();
    crate::support::assert_exit(&out, 1);
    // The first of the concurrent LISTs to be refused names its kind.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let refusal = stderr
        .lines()
        .find(|l| l.contains("not allowed to list"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        refusal.contains(&format!("in namespace {}: ", elsewhere.name))
            && refusal.contains("is forbidden: User \"system:serviceaccount:"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{stderr}"
    );
}

#[test]
fn dry_run_writes_nothing_and_logs_json() {
    let cluster = cluster("watch-dry-run-writes", Options::default());
    cluster.write_file(&file_text(&cluster, &[("primary", "primary")]));
    let daemon = spawn(&cluster, &["--dry-run", "--log-format", "json"]);
    let line = daemon.wait_for_log("--dry-run: nothing applied");
    let entry: Value = serde_json::from_str(&line).expect("a JSON log line");
    // controller-runtime's shape: flat keys, ts/level/msg/logger first.
    assert_eq!(entry["level"], "info");
    assert_eq!(entry["msg"], "--dry-run: nothing applied");
    assert!(
        entry["logger"].as_str().unwrap().starts_with("stowage"),
        "{entry}"
    );
    assert!(
        chrono::DateTime::parse_from_rfc3339(entry["ts"].as_str().unwrap()).is_ok(),
        "{entry}"
    );
    let planned: Vec<String> = daemon
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|entry| entry["msg"] == "planned")
        .map(|entry| entry["object"].as_str().unwrap().to_string())
        .collect();
    assert!(
        planned.contains(&format!(
            "BackupStorageLocation {}/primary",
            cluster.namespace()
        )),
        "{planned:?}"
    );
    assert!(
        planned.contains(&format!("Secret {}/s3-credentials", cluster.namespace())),
        "{planned:?}"
    );
    assert!(cluster.bsl("primary").is_none(), "a dry run never writes");
    assert!(!daemon.log().contains(CANARY));
}

#[test]
fn a_file_briefly_missing_keeps_the_last_state_until_it_returns() {
    let cluster = cluster("watch-a-file-briefly", Options::default());
    cluster.write_file(&file_text(&cluster, &[("primary", "primary")]));
    let daemon = spawn(&cluster, &[]);
    eventually("primary to be created", Duration::from_secs(20), || {
        cluster.bsl("primary")
    });
    std::fs::remove_file(cluster.dir.path().join("stowage.toml")).unwrap();
    eventually(
        "/readyz to report the missing file",
        Duration::from_secs(20),
        || {
            let (status, body) = daemon.get("/readyz");
            (status == 503 && body.contains("stowage.toml")).then_some(())
        },
    );
    assert!(cluster.bsl("primary").is_some());
    cluster.write_file(&file_text(
        &cluster,
        &[("primary", "primary"), ("secondary", "secondary")],
    ));
    eventually("secondary to be created", Duration::from_secs(20), || {
        cluster.bsl("secondary")
    });
    eventually("/readyz to pass", Duration::from_secs(20), || {
        (daemon.get("/readyz").0 == 200).then_some(())
    });
}

#[test]
fn a_watch_cut_by_the_network_is_resumed_and_drift_still_reverted() {
    use stowage_test_harness::{Effect, Fault, Route, Verb};
    let cluster = cluster(
        "watch-cut",
        Options {
            velero: false,
            proxy: true,
        },
    );
    // Watches of the locations are cut after their first event, three times over.
    cluster.proxy().inject(Fault {
        route: Route::verb(Verb::Watch).on("backupstoragelocations"),
        times: 3,
        effect: Effect::DropWatch { after_events: 1 },
    });
    cluster.write_file(&file_text(&cluster, &[("primary", "primary")]));
    let daemon = spawn(&cluster, &["--resync", "1h"]);
    eventually("primary to be created", Duration::from_secs(20), || {
        cluster.bsl("primary")
    });
    // Each edit reaches the daemon through a watch that is cut right after it; with
    // resync an hour away, only a resumed watch can bring the second.
    for bucket in ["velero-elsewhere", "velero-elsewhere-again"] {
        cluster
            .ns
            .merge_patch(
                "velero.io/v1",
                "BackupStorageLocation",
                "primary",
                json!({"spec": {"objectStorage": {"bucket": bucket}}}),
                "kubectl-edit",
            )
            .unwrap();
        eventually("the edit to be reverted", Duration::from_secs(30), || {
            (cluster.bsl("primary")?["spec"]["objectStorage"]["bucket"]
                == crate::cluster::LIVE_BUCKET)
                .then_some(())
        });
    }
    let watches = cluster
        .proxy()
        .hooks()
        .count(Verb::Watch, "backupstoragelocations");
    assert!(watches >= 2, "the cut watch was started again: {watches}");
    // The round records its result after its convergence check, a moment after the
    // revert is visible.
    eventually(
        "two drift corrections counted",
        Duration::from_secs(10),
        || (daemon.metric("stowage_drift_corrections_total") >= 2.0).then_some(()),
    );
}

#[test]
fn a_slowly_written_file_deletes_nothing_and_deleting_everything_waits_for_consent() {
    let cluster = cluster("watch-slow-writer", Options::default());
    let locations = [
        ("primary", "primary"),
        ("second", "second"),
        ("third", "third"),
        ("fourth", "fourth"),
    ];
    cluster.write_file(&file_text(&cluster, &locations));
    let daemon = spawn(&cluster, &["--resync", "1h"]);
    eventually(
        "every location to be created",
        Duration::from_secs(30),
        || cluster.bsl("fourth"),
    );
    eventually("/readyz to pass", Duration::from_secs(20), || {
        (daemon.get("/readyz").0 == 200).then_some(())
    });

    // A non-atomic writer: the file truncated, then one line every 0.3 s. Each prefix
    // of it that parses declares fewer locations than the cluster has.
    let full = format!("{}{}", cluster.header(), file_text(&cluster, &locations));
    let path = cluster.dir.path().join("stowage.toml");
    let mut file = std::fs::File::create(&path).unwrap();
    for line in full.split_inclusive('\n') {
        file.write_all(line.as_bytes()).unwrap();
        file.flush().unwrap();
        for _ in 0..6 {
            std::thread::sleep(Duration::from_millis(50));
            for (name, _) in locations {
                assert!(
                    cluster.bsl(name).is_some(),
                    "{name} was deleted while the file was being written:\n{}",
                    daemon.log()
                );
            }
        }
    }
    drop(file);
    std::thread::sleep(Duration::from_secs(3));
    for (name, _) in locations {
        assert!(cluster.bsl(name).is_some(), "{name} gone after the write");
    }
    assert_eq!(daemon.get("/readyz").0, 200, "{}", daemon.log());

    // Deleting every location for real: refused, visibly, until the file consents.
    cluster.write_file("");
    let body = eventually(
        "/readyz to report the refusal",
        Duration::from_secs(20),
        || {
            let (status, body) = daemon.get("/readyz");
            (status == 503 && body.contains("refused as a mass delete")).then_some(body)
        },
    );
    assert!(body.contains("deletes 4 of the 5 objects"), "{body}");
    assert_eq!(daemon.metric("stowage_mass_delete_refused"), 1.0);
    for (name, _) in locations {
        assert!(
            cluster.bsl(name).is_some(),
            "{name} deleted without consent"
        );
    }
    cluster.write_whole(
        &cluster
            .header()
            .replace("[velero]\n", "[velero]\nallow_mass_delete = true\n"),
    );
    eventually("the consented deletion", Duration::from_secs(30), || {
        locations
            .iter()
            .all(|(name, _)| cluster.bsl(name).is_none())
            .then_some(())
    });
    eventually("the refusal to clear", Duration::from_secs(10), || {
        (daemon.metric("stowage_mass_delete_refused") == 0.0).then_some(())
    });
}

#[test]
fn sigterm_during_the_first_apply_finishes_it_and_exits_cleanly() {
    let cluster = cluster("watch-sigterm-first", Options::default());
    let names: Vec<String> = (0..300).map(|i| format!("location-{i}")).collect();
    let locations: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), n.as_str())).collect();
    cluster.write_file(&file_text(&cluster, &locations));
    let mut daemon = spawn(&cluster, &["--resync", "1h"]);
    // The first apply is under way: the Secret and some locations exist.
    eventually(
        "the first apply to start writing",
        Duration::from_secs(60),
        || cluster.bsl("location-0"),
    );
    let status = daemon.terminate();
    assert!(status.success(), "{status:?}\n{}", daemon.log());
    let written = cluster
        .ns
        .list("velero.io/v1", "BackupStorageLocation")
        .len();
    assert_eq!(written, 300, "the round in flight finished before the exit");
}

#[test]
fn a_field_another_manager_keeps_setting_is_a_fight_the_daemon_backs_off_from() {
    let cluster = cluster("watch-fight", Options::default());
    cluster.write_file(&file_text(&cluster, &[("primary", "primary")]));
    // Resync an hour away: only the drift watch brings each change.
    let daemon = spawn(&cluster, &["--resync", "1h"]);
    eventually("primary to be created", Duration::from_secs(20), || {
        cluster.bsl("primary")
    });
    let prefix = format!("{}/primary", cluster.namespace());
    for round in 0..5 {
        cluster
            .ns
            .merge_patch(
                "velero.io/v1",
                "BackupStorageLocation",
                "primary",
                json!({"spec": {"objectStorage": {"prefix": format!("someone-else-{round}")}}}),
                "kubectl-edit",
            )
            .unwrap();
        eventually(
            "the field to be taken back",
            Duration::from_secs(30),
            || {
                (cluster.bsl("primary")?["spec"]["objectStorage"]["prefix"] == prefix.as_str())
                    .then_some(())
            },
        );
    }
    let line = daemon.wait_for_log("backing off before taking it back");
    assert!(line.contains("kubectl-edit"), "{line}");
    assert!(line.contains("spec.objectStorage.prefix"), "{line}");
    // The gauge is set before each drift round; the round after the last takeover
    // (its own write is drift too) shows the doubled wait.
    let series = eventually("the wait to double", Duration::from_secs(20), || {
        let (_, metrics) = daemon.get("/metrics");
        let series = metrics
            .lines()
            .find(|l| l.starts_with("stowage_fight_backoff_seconds{"))?
            .to_string();
        let wait: f64 = series.rsplit(' ').next()?.parse().ok()?;
        (wait >= 2.0).then_some(series)
    });
    assert!(series.contains("manager=\"kubectl-edit\""), "{series}");
    assert!(
        series.contains("field=\"spec.objectStorage.prefix\""),
        "{series}"
    );
    // Each takeover is counted once its round has recorded it.
    eventually("five takeovers counted", Duration::from_secs(10), || {
        daemon
            .get("/metrics")
            .1
            .contains("stowage_takeovers_total{manager=\"kubectl-edit\"} 5\n")
            .then_some(())
    });
    let (status, body) = daemon.get("/readyz");
    assert_eq!(status, 503);
    assert!(
        body.contains("fighting with kubectl-edit over spec.objectStorage.prefix"),
        "{body}"
    );
}
