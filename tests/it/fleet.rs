//! Fleets on the real API server: a directory of files, one cluster each, named by its
//! `[cluster] context` in one kubeconfig of three contexts (two reachable clusters as
//! namespaces of the stack, one unreachable). Planned and applied concurrently, each
//! on its own; a summary first; exit codes aggregated.

use serde_json::Value;

use crate::cluster::{Options, TestCluster, cluster, stack};
use crate::support::assert_exit;

/// A kubeconfig with contexts `east` and `west` on the stack and `down` on a closed
/// port.
fn three_contexts(live: &TestCluster) -> std::path::PathBuf {
    let (unreachable, _) = live.unreachable_kubeconfig();
    let admin: Value = serde_saphyr::from_str(&stack().admin_kubeconfig()).unwrap();
    let down: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&unreachable).unwrap()).unwrap();
    let mut config = admin.clone();
    let user = admin["users"][0]["name"].clone();
    let cluster = admin["clusters"][0]["name"].clone();
    let mut down_cluster = down["clusters"][0].clone();
    down_cluster["name"] = "down".into();
    config["clusters"]
        .as_array_mut()
        .unwrap()
        .push(down_cluster);
    config["contexts"] = serde_json::json!([
        {"name": "north", "context": {"cluster": cluster, "user": user}},
        {"name": "east", "context": {"cluster": cluster, "user": user}},
        {"name": "west", "context": {"cluster": cluster, "user": user}},
        {"name": "down", "context": {"cluster": "down", "user": user}},
    ]);
    config["current-context"] = "down".into();
    let path = live.dir.path().join("fleet.kubeconfig");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// A cluster file: its context and namespace, and the locations named.
fn cluster_file(live: &TestCluster, context: &str, namespace: &str, locations: &[&str]) -> String {
    let header = live.header().replace(live.namespace(), namespace).replace(
        "version = 1\n",
        &format!("version = 1\n\n[cluster]\ncontext = \"{context}\"\n"),
    );
    let body: String = locations
        .iter()
        .enumerate()
        .map(|(i, name)| {
            live.location(name, name, if i == 0 { "default = true\n" } else { "" })
                .replace(live.namespace(), namespace)
        })
        .collect();
    format!("{header}{body}")
}

/// Asserts that each namespace holds the location `name`.
fn assert_location_in(namespaces: &[&stowage_test_harness::Namespace], name: &str) {
    for namespace in namespaces {
        assert!(
            namespace
                .get("velero.io/v1", "BackupStorageLocation", name)
                .is_some(),
            "no {name} in {}",
            namespace.name
        );
    }
}

fn run(live: &TestCluster, kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    let output = live.command_with(kubeconfig).args(args).output().unwrap();
    live.record(&output);
    output
}

#[test]
fn a_fleet_is_planned_and_applied_cluster_by_cluster_with_one_unreachable() {
    let live = cluster("fleet", Options::default());
    let east = stack().namespace("fleet-east");
    let west = stack().namespace("fleet-west");
    let kubeconfig = three_contexts(&live);
    let dir = live.dir.path().join("clusters");
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::copy(
        live.dir.path().join("secrets/s3.ini"),
        dir.join("secrets/s3.ini"),
    )
    .unwrap();
    let write = |extra: &[&str]| {
        let mut locations = vec!["primary"];
        locations.extend_from_slice(extra);
        for (file, context, namespace) in [
            ("east.toml", "east", east.name.as_str()),
            ("west.toml", "west", west.name.as_str()),
            ("down.toml", "down", "velero"),
        ] {
            std::fs::write(
                dir.join(file),
                cluster_file(&live, context, namespace, &locations),
            )
            .unwrap();
        }
    };
    write(&[]);

    // The whole directory: two clusters planned, one unreachable, and the exit says so.
    let out = run(
        &live,
        &kubeconfig,
        &["plan", "-f", "clusters", "--no-bucket-checks"],
    );
    assert_exit(&out, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = text.lines().take(5).collect();
    assert!(summary[0].starts_with("CLUSTER"), "{text}");
    assert!(
        summary[1].starts_with("clusters/down.toml") && summary[1].contains("unreachable"),
        "{text}"
    );
    assert!(
        summary[2].starts_with("clusters/east.toml") && summary[2].contains("changes"),
        "{text}"
    );
    assert!(
        summary[3].starts_with("clusters/west.toml") && summary[3].contains("changes"),
        "{text}"
    );
    assert!(
        summary[4].contains("3 clusters: 2 with changes, 0 with errors, 1 unreachable"),
        "{text}"
    );
    assert!(text.contains("cannot be reached"), "{text}");

    // Applied: the two reachable clusters converge, each in its own namespace.
    let out = run(
        &live,
        &kubeconfig,
        &[
            "apply",
            "-f",
            "clusters/east.toml",
            "-f",
            "clusters/west.toml",
            "--auto-approve",
            "--no-bucket-checks",
        ],
    );
    assert_exit(&out, 0);
    assert_location_in(&[&east, &west], "primary");
    let reachable = [
        "plan",
        "-f",
        "clusters/east.toml",
        "-f",
        "clusters/west.toml",
        "--no-bucket-checks",
        "--detailed-exitcode",
    ];
    assert_exit(&run(&live, &kubeconfig, &reachable), 0);

    // An edit everywhere shows in both, and nothing else changes.
    write(&["dr"]);
    let mut json_args = reachable.to_vec();
    json_args.extend(["--format", "json"]);
    let out = run(&live, &kubeconfig, &json_args);
    assert_exit(&out, 2);
    let document: Value = serde_json::from_slice(&out.stdout).unwrap();
    let clusters = document["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 2);
    for cluster in clusters {
        let changes = crate::cluster::changes_of(&cluster["plan"]);
        assert_eq!(changes, ["create BackupStorageLocation/dr"], "{cluster:#}");
    }
    // For a pull request: a table, then each cluster collapsed.
    let mut markdown = reachable.to_vec();
    markdown.extend(["--format", "markdown"]);
    let out = run(&live, &kubeconfig, &markdown);
    assert_exit(&out, 2);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("| cluster | context | result |"), "{text}");
    assert_eq!(
        text.matches("<details><summary><code>clusters/").count(),
        2,
        "{text}"
    );
    // Saved per cluster, then applied from the directory: each refused on its own
    // when stale (east's file changed since), the others applied.
    let mut save = reachable[..6].to_vec();
    save.extend(["--out", "plans"]);
    assert_exit(&run(&live, &kubeconfig, &save), 0);
    let east_file = dir.join("east.toml");
    let edited = std::fs::read_to_string(&east_file).unwrap() + "\n# edited after the plan\n";
    std::fs::write(&east_file, edited).unwrap();
    let out = run(
        &live,
        &kubeconfig,
        &["apply", "plans", "--auto-approve", "--no-bucket-checks"],
    );
    assert_exit(&out, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("not applied: clusters/east.toml")
            && text.contains("changed since the plan was made"),
        "{text}"
    );
    assert!(text.contains("applied: clusters/west.toml"), "{text}");
    assert!(
        west.get("velero.io/v1", "BackupStorageLocation", "dr")
            .is_some()
    );
    assert!(
        east.get("velero.io/v1", "BackupStorageLocation", "dr")
            .is_none()
    );
    write(&["dr"]);

    // The whole directory applied: the unreachable one fails the run, the others land.
    let out = run(
        &live,
        &kubeconfig,
        &[
            "apply",
            "-f",
            "clusters",
            "--auto-approve",
            "--no-bucket-checks",
        ],
    );
    assert_exit(&out, 1);
    assert_location_in(&[&east, &west], "dr");
    assert_exit(&run(&live, &kubeconfig, &reachable), 0);
    // Status of both at once; the unreachable one fails a directory-wide status.
    let out = run(
        &live,
        &kubeconfig,
        &[
            "status",
            "-f",
            "clusters/east.toml",
            "-f",
            "clusters/west.toml",
            "--no-bucket-checks",
            "--format",
            "json",
        ],
    );
    assert_exit(&out, 0);
    let document: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        document["clusters"].as_array().unwrap().len(),
        2,
        "{document:#}"
    );
    let out = run(
        &live,
        &kubeconfig,
        &["status", "-f", "clusters", "--no-bucket-checks"],
    );
    assert_exit(&out, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 3 clusters could not be read"));
    // Offline, the directory validates file by file.
    let out = run(&live, &kubeconfig, &["validate", "-f", "clusters"]);
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 of 3 files valid"));
    std::fs::write(
        dir.join("west.toml"),
        "version = 1\n[velero]\nnamspace = \"x\"\n",
    )
    .unwrap();
    let out = run(&live, &kubeconfig, &["validate", "-f", "clusters"]);
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("clusters/west.toml: 1 error(s)") && stderr.contains("2 of 3 files valid"),
        "{stderr}"
    );
    // --context overrides every file's own.
    let out = live
        .command_with(&kubeconfig)
        .args([
            "--context",
            "down",
            "plan",
            "-f",
            "clusters/east.toml",
            "--no-bucket-checks",
        ])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be reached"));
}

#[test]
fn a_fleet_on_one_base_converges_and_a_base_edit_reaches_every_cluster() {
    let live = cluster("fleet-base", Options::default());
    let kubeconfig = three_contexts(&live);
    let namespaces: Vec<_> = ["north", "east", "west"]
        .iter()
        .map(|name| (*name, stack().namespace(&format!("fleet-{name}"))))
        .collect();
    let root = live.dir.path();
    // The base: the credential and the default location, prefixed per cluster below.
    let base = |extra: &str| {
        format!(
            "{}{}{extra}",
            live.header().replace(
                &format!("[velero]\nnamespace = \"{}\"\n", live.namespace()),
                ""
            ),
            live.location("primary", "primary", "default = true\n")
                .replace(&format!("{}/primary", live.namespace()), "base/primary")
        )
    };
    std::fs::write(root.join("base.toml"), base("")).unwrap();
    std::fs::create_dir_all(root.join("clusters")).unwrap();
    for (context, ns) in &namespaces {
        std::fs::write(
            root.join(format!("clusters/{context}.toml")),
            format!(
                "extends = \"../base.toml\"\n\n[cluster]\ncontext = \"{context}\"\n\n[velero]\nnamespace = \"{0}\"\n\n[backup_locations.primary]\nprefix = \"{0}/primary\"\n",
                ns.name
            ),
        )
        .unwrap();
    }
    // The fleet applied: all three converge, each in its own namespace.
    let out = run(
        &live,
        &kubeconfig,
        &[
            "apply",
            "-f",
            "clusters",
            "--auto-approve",
            "--no-bucket-checks",
        ],
    );
    assert_exit(&out, 0);
    for (_, ns) in &namespaces {
        let primary = ns
            .get("velero.io/v1", "BackupStorageLocation", "primary")
            .expect("applied");
        assert_eq!(
            primary["spec"]["objectStorage"]["prefix"],
            format!("{}/primary", ns.name).as_str()
        );
    }
    let plan = [
        "plan",
        "-f",
        "clusters",
        "--no-bucket-checks",
        "--detailed-exitcode",
        "--format",
        "json",
    ];
    assert_exit(&run(&live, &kubeconfig, &plan), 0);

    // One edit to the base: every cluster gets it, and nothing else changes.
    let dr = live
        .location("dr", "dr", "")
        .replace(&format!("{}/dr", live.namespace()), "shared-dr");
    std::fs::write(root.join("base.toml"), base(&dr)).unwrap();
    let out = run(&live, &kubeconfig, &plan);
    assert_exit(&out, 2);
    let document: Value = serde_json::from_slice(&out.stdout).unwrap();
    let clusters = document["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 3);
    for cluster in clusters {
        assert_eq!(
            crate::cluster::changes_of(&cluster["plan"]),
            ["create BackupStorageLocation/dr"],
            "{cluster:#}"
        );
    }
}

/// Files of one fleet run on the same cluster share its connection and read its
/// cluster-wide objects once: three namespaces planned through the proxy make one
/// LIST of Nodes and of PersistentVolumes, and one of each namespaced kind per file.
#[test]
fn files_on_one_cluster_read_its_nodes_and_volumes_once() {
    let live = cluster(
        "fleet-shared",
        Options {
            velero: false,
            proxy: true,
        },
    );
    let root = live.dir.path();
    std::fs::create_dir_all(root.join("clusters")).unwrap();
    let namespaces: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|name| stack().namespace(&format!("fleet-shared-{name}")))
        .collect();
    for (index, ns) in namespaces.iter().enumerate() {
        std::fs::write(
            root.join(format!("clusters/c{index}.toml")),
            cluster_file(&live, "proxy", &ns.name, &["primary"])
                .replace("\"secrets/", "\"../secrets/"),
        )
        .unwrap();
    }
    let hooks = live.proxy().hooks();
    hooks.clear();
    let out = run(
        &live,
        &live.kubeconfig,
        &["plan", "-f", "clusters", "--no-bucket-checks"],
    );
    assert_exit(&out, 0);
    use stowage_test_harness::Verb;
    assert_eq!(hooks.count(Verb::List, "nodes"), 1);
    assert_eq!(hooks.count(Verb::List, "persistentvolumes"), 1);
    assert_eq!(hooks.count(Verb::List, "backupstoragelocations"), 3);
    assert_eq!(hooks.count(Verb::List, "secrets"), 3);
}

/// The proxy's model of a remote cluster, which the fleet benchmark measures with: a
/// read is answered from the recording of its first answer, late, so an object made
/// since is not seen through it; the real server, asked directly, has it.
#[test]
fn a_remote_cluster_answers_reads_from_its_recording_after_the_round_trip() {
    use stowage_test_harness::{Effect, Fault, Route};
    let live = cluster(
        "fleet-remote",
        Options {
            velero: false,
            proxy: true,
        },
    );
    let round_trip = std::time::Duration::from_millis(200);
    live.proxy().hooks().inject(Fault {
        route: Route::default(),
        times: usize::MAX,
        effect: Effect::Remote(round_trip),
    });
    let names = || {
        let started = std::time::Instant::now();
        let out = std::process::Command::new(std::env::var_os("STOWAGE_KUBECTL").unwrap())
            .arg("--kubeconfig")
            .arg(&live.kubeconfig)
            .args(["get", "configmaps", "-o", "name"])
            .output()
            .unwrap();
        assert_exit(&out, 0);
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            started.elapsed(),
        )
    };
    let (before, _) = names();
    live.seed(
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "made-since"}, "data": {}}),
        "someone",
    );
    let (after, took) = names();
    assert_eq!(after, before, "answered from the recording");
    assert!(!after.contains("made-since"));
    assert!(took >= round_trip, "{took:?}");
    assert!(live.ns.get("v1", "ConfigMap", "made-since").is_some());
}
