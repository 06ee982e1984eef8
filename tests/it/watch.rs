//! `stowage watch` as a process against the test API server with the Velero simulator:
//! edits applied, invalid edits refused and reported, drift reverted, two replicas with
//! one writer, a clean stop, and a soak of rapid edits.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stowage_test_apiserver::simulator::Settings;
use stowage_test_apiserver::{Config, TestServer};

use crate::buckets::emulators;

const CANARY: &str = "canary-watch-3c9d";

pub struct Cluster {
    pub server: TestServer,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

pub fn cluster() -> Cluster {
    let mut config = Config::new(stowage_test_apiserver::velero_crds());
    config.namespaces = vec!["velero".into()];
    config.simulator = Some(Settings::new("velero"));
    let server = TestServer::start(config).expect("test API server");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig("velero")).unwrap();
    let e = emulators();
    std::fs::write(
        dir.path().join("s3.ini"),
        format!(
            "[default]\n# {CANARY}\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            e["s3"]["access_key_id"].as_str().unwrap(),
            e["s3"]["secret_access_key"].as_str().unwrap()
        ),
    )
    .unwrap();
    Cluster {
        server,
        dir,
        kubeconfig,
    }
}

/// A file with the given locations (name, bucket, prefix), the first the default.
pub fn file_text(locations: &[(&str, &str, &str)]) -> String {
    let url = emulators()["s3"]["url"].as_str().unwrap().to_string();
    let mut text = String::from(
        "version = 1\n\n[credentials.s3]\nsecret = \"s3-credentials\"\nfile = \"s3.ini\"\n\n",
    );
    for (i, (name, bucket, prefix)) in locations.iter().enumerate() {
        text.push_str(&format!(
            "[backup_locations.{name}]\nprovider = \"aws\"\nbucket = \"{bucket}\"\nprefix = \"{prefix}\"\ndefault = {}\ncredential = \"s3\"\nconfig = {{ region = \"us-east-1\", s3Url = \"{url}\", s3ForcePathStyle = \"true\" }}\n\n",
            i == 0
        ));
    }
    text
}

impl Cluster {
    pub fn write(&self, text: &str) {
        // As editors do: a new file renamed over the old one.
        let temporary = self.dir.path().join(".stowage.toml.swp");
        std::fs::write(&temporary, text).unwrap();
        std::fs::rename(&temporary, self.dir.path().join("stowage.toml")).unwrap();
    }

    pub fn bsl(&self, name: &str) -> Option<Value> {
        self.server.get(
            "velero.io/v1",
            "BackupStorageLocation",
            Some("velero"),
            name,
        )
    }

    pub fn spawn(&self, extra: &[&str]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stowage"))
            .current_dir(self.dir.path())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args([
                "watch",
                "--listen",
                "127.0.0.1:0",
                "--no-bucket-checks",
                "--resync",
                "2s",
            ])
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
    }
}

pub fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
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
    let cluster = cluster();
    cluster.write(&file_text(&[("primary", "velero-clean", "")]));
    let mut daemon = cluster.spawn(&[]);
    eventually("primary to be created", Duration::from_secs(20), || {
        cluster.bsl("primary")
    });
    eventually("/readyz to pass", Duration::from_secs(20), || {
        (daemon.get("/readyz").0 == 200).then_some(())
    });
    assert_eq!(daemon.get("/healthz"), (200, "ok\n".to_string()));

    // An edit: a second location appears.
    cluster.write(&file_text(&[
        ("primary", "velero-clean", ""),
        ("secondary", "velero-prefixed", "cluster-a"),
    ]));
    eventually("secondary to be created", Duration::from_secs(20), || {
        cluster.bsl("secondary")
    });

    // An invalid edit (a misspelt key) that would also remove secondary: nothing changes.
    let invalid =
        file_text(&[("primary", "velero-clean", "")]).replace("default = true", "defualt = true");
    cluster.write(&invalid);
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
        body.contains("stowage.toml:11:1: stowage::unknown-key"),
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
    cluster.write(&file_text(&[("primary", "velero-clean", "")]));
    eventually("secondary to be deleted", Duration::from_secs(20), || {
        cluster.bsl("secondary").is_none().then_some(())
    });
    eventually("/readyz to pass again", Duration::from_secs(20), || {
        (daemon.get("/readyz").0 == 200).then_some(())
    });
    assert_eq!(daemon.metric("stowage_file_invalid"), 0.0);
    assert!(daemon.metric("stowage_applies_total") >= 3.0);

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
    let cluster = cluster();
    cluster
        .server
        .seed(
            json!({"apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
            "metadata": {"name": "hand-made", "namespace": "velero"},
            "spec": {"provider": "aws", "objectStorage": {"bucket": "elsewhere"}}}),
            "kubectl-create",
        )
        .unwrap();
    cluster.write(&file_text(&[("primary", "velero-clean", "")]));
    let daemon = cluster.spawn(&[]);
    eventually("primary to be created", Duration::from_secs(20), || {
        cluster.bsl("primary")
    });
    let hand_made = cluster.bsl("hand-made").unwrap();

    // As `kubectl edit` would: a merge patch by another field manager.
    cluster
        .server
        .merge_patch(
            "velero.io/v1",
            "BackupStorageLocation",
            Some("velero"),
            "primary",
            json!({"spec": {"objectStorage": {"bucket": "velero-elsewhere"}}}),
            "kubectl-edit",
        )
        .unwrap();
    eventually("the edit to be reverted", Duration::from_secs(20), || {
        (cluster.bsl("primary")?["spec"]["objectStorage"]["bucket"] == "velero-clean").then_some(())
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
    let cluster = cluster();
    cluster.write(&file_text(&[("primary", "velero-clean", "")]));
    let mut first = cluster.spawn(&["--leader-elect"]);
    eventually("primary to be created", Duration::from_secs(20), || {
        cluster.bsl("primary")
    });
    let second = cluster.spawn(&["--leader-elect"]);
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
    cluster.write(&file_text(&[
        ("primary", "velero-clean", ""),
        ("secondary", "velero-prefixed", "cluster-a"),
    ]));
    eventually("secondary to be created", Duration::from_secs(20), || {
        cluster.bsl("secondary")
    });
    assert!(
        first
            .log()
            .contains("BackupStorageLocation velero/secondary")
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
    cluster.write(&file_text(&[("primary", "velero-clean", "")]));
    eventually(
        "secondary to be deleted by the new leader",
        Duration::from_secs(30),
        || cluster.bsl("secondary").is_none().then_some(()),
    );
    let lease = cluster
        .server
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            Some("velero"),
            "stowage-default",
        )
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
    let cluster = cluster();
    cluster.write(&file_text(&[("primary", "velero-clean", "")]));
    let daemon = cluster.spawn(&[]);
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
                file_text(&[
                    ("primary", "velero-clean", ""),
                    ("extra", "velero-prefixed", &prefix)
                ])
            )
        } else {
            let valid = file_text(&[
                ("primary", "velero-clean", ""),
                ("extra", "velero-prefixed", &prefix),
            ]);
            last_valid = prefix.clone();
            valid
        };
        cluster.write(&text);
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
            (cluster.bsl("extra")?["spec"]["objectStorage"]["prefix"] == last_valid.as_str())
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

fn rbac_allows(rules: &[Value], group: &str, resource: &str, verb: &str) -> bool {
    let has = |list: &Value, wanted: &str| {
        list.as_array()
            .is_some_and(|l| l.iter().any(|v| v == wanted || v == "*"))
    };
    rules.iter().any(|rule| {
        has(&rule["apiGroups"], group)
            && has(&rule["resources"], resource)
            && has(&rule["verbs"], verb)
    })
}

#[test]
fn the_deploy_example_validates_and_its_rbac_covers_every_request() {
    let deploy = crate::support::examples_dir().join("deploy");
    let documents = |name: &str| -> Vec<Value> {
        serde_saphyr::from_multiple(&std::fs::read_to_string(deploy.join(name)).unwrap()).unwrap()
    };
    let configmap = documents("configmap.yaml").remove(0);
    let file = configmap["data"]["stowage.toml"]
        .as_str()
        .unwrap()
        .to_string();
    let rbac = documents("rbac.yaml");
    let rules_of = |kind: &str| -> Vec<Value> {
        rbac.iter()
            .filter(|d| d["kind"] == kind)
            .flat_map(|d| d["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    let (role, cluster_role) = (rules_of("Role"), rules_of("ClusterRole"));
    let deployment = documents("deployment.yaml").remove(0);
    let args: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "watch");
    assert!(args.contains(&"--leader-elect"));

    // The file validates, and runs: apply, then the daemon with a Lease.
    let cluster = cluster();
    std::fs::write(cluster.dir.path().join("stowage.toml"), &file).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .current_dir(cluster.dir.path())
        .arg("validate")
        .output()
        .unwrap();
    crate::support::assert_exit(&out, 0);
    cluster.server
        .seed(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "cloud-credentials", "namespace": "velero"},
            "stringData": {"cloud": "[default]\naws_access_key_id = a\naws_secret_access_key = b\n"}}), "velero")
        .unwrap();
    let daemon = cluster.spawn(&["--leader-elect"]);
    eventually(
        "the schedules to be created",
        Duration::from_secs(20),
        || {
            cluster
                .server
                .get("velero.io/v1", "Schedule", Some("velero"), "daily-dr")
        },
    );
    cluster
        .server
        .merge_patch(
            "velero.io/v1",
            "BackupStorageLocation",
            Some("velero"),
            "dr",
            json!({"spec": {"accessMode": "ReadOnly"}}),
            "kubectl-edit",
        )
        .unwrap();
    eventually("the drift to be reverted", Duration::from_secs(20), || {
        (cluster.bsl("dr")?["spec"]["accessMode"] == "ReadWrite").then_some(())
    });
    drop(daemon);

    let group_of = |resource: &str| match resource {
        "backupstoragelocations" | "volumesnapshotlocations" | "schedules" | "backups" => {
            "velero.io"
        }
        "deployments" => "apps",
        "leases" => "coordination.k8s.io",
        _ => "",
    };
    let mut checked = std::collections::BTreeSet::new();
    for request in cluster.server.hooks().requests() {
        // Seeds and the Velero simulator write in-process: every request here is stowage's.
        let Some(resource) = request.resource.as_deref() else {
            continue;
        };
        let verb = match request.verb {
            stowage_test_apiserver::Verb::Apply | stowage_test_apiserver::Verb::Patch => "patch",
            stowage_test_apiserver::Verb::Get => "get",
            stowage_test_apiserver::Verb::List => "list",
            stowage_test_apiserver::Verb::Watch => "watch",
            stowage_test_apiserver::Verb::Create => "create",
            stowage_test_apiserver::Verb::Update => "update",
            stowage_test_apiserver::Verb::Delete => "delete",
            stowage_test_apiserver::Verb::Discovery => continue,
        };
        let group = group_of(resource);
        let allowed = if request.namespace.is_some() {
            rbac_allows(&role, group, resource, verb)
        } else {
            rbac_allows(&cluster_role, group, resource, verb)
        };
        assert!(
            allowed,
            "examples/deploy/rbac.yaml does not allow {verb} {resource} ({request:?})"
        );
        checked.insert(format!("{verb} {resource}"));
    }
    for needed in [
        "patch backupstoragelocations",
        "watch schedules",
        "list secrets",
        "list nodes",
        "get leases",
    ] {
        assert!(
            checked.contains(needed),
            "{needed} was never requested: {checked:?}"
        );
    }
}

#[test]
fn dry_run_writes_nothing_and_logs_json() {
    let cluster = cluster();
    cluster.write(&file_text(&[("primary", "velero-clean", "")]));
    let daemon = cluster.spawn(&["--dry-run", "--log-format", "json"]);
    let line = daemon.wait_for_log("--dry-run: nothing applied");
    let entry: Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(entry["level"], "INFO");
    let planned: Vec<String> = daemon
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|entry| entry["fields"]["message"] == "planned")
        .map(|entry| entry["fields"]["object"].as_str().unwrap().to_string())
        .collect();
    assert!(
        planned.contains(&"BackupStorageLocation velero/primary".to_string()),
        "{planned:?}"
    );
    assert!(
        planned.contains(&"Secret velero/s3-credentials".to_string()),
        "{planned:?}"
    );
    assert!(cluster.bsl("primary").is_none(), "a dry run never writes");
    assert!(!daemon.log().contains(CANARY));
}

#[test]
fn a_file_briefly_missing_keeps_the_last_state_until_it_returns() {
    let cluster = cluster();
    cluster.write(&file_text(&[("primary", "velero-clean", "")]));
    let daemon = cluster.spawn(&[]);
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
    cluster.write(&file_text(&[
        ("primary", "velero-clean", ""),
        ("secondary", "velero-prefixed", "cluster-a"),
    ]));
    eventually("secondary to be created", Duration::from_secs(20), || {
        cluster.bsl("secondary")
    });
    eventually("/readyz to pass", Duration::from_secs(20), || {
        (daemon.get("/readyz").0 == 200).then_some(())
    });
}
