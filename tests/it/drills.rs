//! Restore drills against real Velero, the S3 emulator and the real API server (with
//! kube-controller-manager, so namespaces finish deleting): a namespace of ConfigMaps,
//! Secrets, a ServiceAccount and a Deployment backed up by a schedule fanned out to two
//! locations; each copy drilled into `drill-…` namespaces and found restorable, the
//! source untouched, everything the drill made gone after; the DR copy's tarball
//! deleted → unrestorable with Velero's error, `status --check` naming it; a custom
//! resource whose CRD is gone → incomplete, the missing items named; refusals.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::{Options, TestCluster, cluster, eventually, good_secret, stack};
use crate::copies::{back_up_now, latest_final, write_dr_credentials};
use crate::support::assert_exit;

const VELERO: Options = Options {
    velero: true,
    proxy: false,
};

/// Two locations in two buckets (the DR one with its own credential), one schedule
/// fanned out to both that never fires by itself, backing up `app`, drilled.
fn drilled_schedule(live: &TestCluster, app: &str, extra: &str) -> String {
    let dr = live
        .location("dr", "dr", "")
        .replace(crate::cluster::LIVE_BUCKET, "velero-live-2")
        .replace("credential = \"s3\"", "credential = \"dr\"");
    format!(
        "[credentials.dr]\nsecret = \"dr-credentials\"\nfile = \"secrets/dr.ini\"\n\n{}{dr}[schedules.nightly]\ncron = \"0 0 1 1 *\"\nstorage_locations = [\"primary\", \"dr\"]\nincluded_namespaces = [\"{app}\"]\nttl = \"2h\"\n{extra}\n[schedules.nightly.drill]\ncron = \"0 6 * * *\"\ntimeout = \"3m\"\nkeep_failed = \"1h\"\n",
        live.location("primary", "primary", "default = true\n"),
    )
}

/// A namespace with what applications hold: ConfigMaps, a Secret, a ServiceAccount, a
/// Deployment.
fn application(name: &str) {
    let app = stack().namespace_named(name);
    for object in [
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "live"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flags"}, "data": {"beta": "on"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token"}, "stringData": {"token": "t0ken"}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web"}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"serviceAccountName": "web", "containers": [{"name": "web", "image": "example.invalid/web:1"}]}}}}),
    ] {
        app.create(object, "kubectl-create")
            .expect("an application object");
    }
}

/// Every object of the application namespace, with its resourceVersion.
fn versions(app: &str) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for (api_version, kind) in [
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "ServiceAccount"),
        ("apps/v1", "Deployment"),
    ] {
        for object in stack().list(api_version, kind, Some(app)) {
            all.push((
                format!("{kind}/{}", object["metadata"]["name"].as_str().unwrap()),
                object["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ));
        }
    }
    all.sort();
    all
}

fn backed_up(live: &TestCluster, copy: &str) -> Value {
    back_up_now(live, copy);
    eventually(
        &format!("a backup of {copy}"),
        Duration::from_secs(120),
        || {
            let latest = latest_final(live, copy)?;
            assert_eq!(
                latest["status"]["phase"],
                "Completed",
                "{latest:#}\n{}",
                live.velero.as_ref().unwrap().log_text()
            );
            Some(latest)
        },
    )
}

fn drill(live: &TestCluster, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["drill", "--format", "json"];
    all.extend(args);
    let out = live.stowage(&all);
    let document: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "drill printed no JSON: {}{}",
            String::from_utf8_lossy(&out.stderr),
            live.velero.as_ref().unwrap().log_text()
        )
    });
    (out.status.code().unwrap_or(-1), document)
}

/// `eventually`, printing `context()` when it times out.
fn eventually_or<T>(
    what: &str,
    timeout: Duration,
    context: &dyn Fn() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn copy_of<'a>(document: &'a Value, location: &str) -> &'a Value {
    document["copies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["location"] == location)
        .unwrap_or_else(|| panic!("no copy for {location}: {document:#}"))
}

fn namespaces_named_like(prefix: &str) -> Vec<String> {
    stack()
        .list("v1", "Namespace", None)
        .into_iter()
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[test]
fn each_copy_is_drilled_restorable_or_named_for_what_it_lacks() {
    // The application, and a custom resource of its own, exist before Velero starts
    // (Velero learns the API's kinds when it starts).
    let app = stack().namespace("drills-app").name;
    application(&app);
    let group = format!("{app}.drill.test");
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    stack().create(crd, "kubectl-create").unwrap();
    let served = stack()
        .kubectl()
        .args(["wait", "--for=condition=Established", "--timeout=60s"])
        .arg(format!("crd/widgets.{group}"))
        .output()
        .unwrap();
    assert_exit(&served, 0);
    stack()
        .create(
            json!({"apiVersion": format!("{group}/v1"), "kind": "Widget",
                "metadata": {"name": "gear", "namespace": app}, "spec": {"teeth": 12}}),
            "kubectl-create",
        )
        .unwrap();
    let live = cluster("drills", VELERO);
    write_dr_credentials(&live, &good_secret());
    live.write_file(&drilled_schedule(&live, &app, ""));
    live.apply();
    let primary = backed_up(&live, "nightly-primary");
    let dr = backed_up(&live, "nightly-dr");
    let before = versions(&app);
    let cluster_namespaces: Vec<String> = namespaces_named_like("");

    // Both copies restore; the source is untouched; nothing of the drill is left.
    let (code, document) = drill(&live, &[]);
    assert_eq!(code, 0, "{document:#}");
    for (location, backup) in [("primary", &primary), ("dr", &dr)] {
        let copy = copy_of(&document, location);
        assert_eq!(
            copy["drill"]["verdict"], "restorable",
            "{location}: {document:#}"
        );
        assert_eq!(
            copy["drill"]["backup"], backup["metadata"]["name"],
            "{location}"
        );
        assert!(
            copy["drill"]["restore_seconds"].as_f64().unwrap() > 0.0,
            "{copy:#}"
        );
        assert_eq!(copy["drill"]["missing_items"], json!([]), "{copy:#}");
    }
    assert_eq!(
        versions(&app),
        before,
        "a drill wrote into the namespace it backs up"
    );
    assert_eq!(
        namespaces_named_like(""),
        cluster_namespaces,
        "namespaces left or taken away by the drill"
    );
    let restores = live.ns.list("velero.io/v1", "Restore");
    assert!(restores.is_empty(), "Restores left: {restores:#?}");
    // status shows each copy's last drill and recovery point, and --check passes.
    let out = live.stowage(&[
        "status",
        "--check",
        "--format",
        "json",
        "--no-bucket-checks",
    ]);
    assert_exit(&out, 0);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    for location in ["primary", "dr"] {
        let copy = copy_of(&status, location);
        assert_eq!(copy["drill"]["verdict"], "restorable", "{status:#}");
        assert!(
            copy["recovery_point_age_seconds"].as_i64().unwrap() >= 0,
            "{status:#}"
        );
    }

    // The DR copy's tarball gone from its bucket: Velero cannot restore it.
    let name = dr["metadata"]["name"].as_str().unwrap();
    let folder = format!("{}/dr/backups/{name}", live.namespace());
    let tarball = format!("{folder}/{name}.tar.gz");
    assert!(
        crate::live::s3_keys("velero-live-2", &folder).contains(&tarball),
        "{:?}",
        crate::live::s3_keys("velero-live-2", &folder)
    );
    crate::live::s3_delete_key("velero-live-2", &tarball);
    let (code, document) = drill(&live, &["--copy", "nightly/dr"]);
    assert_eq!(code, 1, "{document:#}");
    let copy = copy_of(&document, "dr");
    assert_eq!(copy["drill"]["verdict"], "unrestorable", "{document:#}");
    assert!(
        copy["drill"]["notes"].to_string().contains("Failed"),
        "Velero's own error: {copy:#}"
    );
    let out = live.stowage(&["status", "--check", "--no-bucket-checks"]);
    assert_exit(&out, 1);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("nightly → dr") && said.contains("unrestorable"),
        "{said}"
    );
    assert!(!said.contains("nightly → primary"), "{said}");
    // Its namespaces stay for inspection (keep_failed): drilling it again is refused,
    // since the mapped namespace exists.
    let kept = format!("drill-{app}");
    assert!(namespaces_named_like(&kept).contains(&kept));
    let (code, document) = drill(&live, &["--copy", "nightly/dr"]);
    assert_eq!(code, 1);
    let copy = copy_of(&document, "dr");
    assert!(
        copy["refused"].as_str().unwrap().contains("exists already"),
        "{document:#}"
    );
    stack().delete("v1", "Namespace", None, &kept).unwrap();
    eventually("the kept namespace to go", Duration::from_secs(60), || {
        namespaces_named_like(&kept).is_empty().then_some(())
    });

    // The custom resource's CRD gone before the drill: its items in the backup cannot
    // come back (drills never restore cluster-scoped objects), and they are named.
    stack()
        .delete(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            &format!("widgets.{group}"),
        )
        .unwrap();
    eventually("the CRD to be gone", Duration::from_secs(60), || {
        stack()
            .get(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                None,
                &format!("widgets.{group}"),
            )
            .is_none()
            .then_some(())
    });
    let (code, document) = drill(&live, &["--copy", "nightly/primary"]);
    assert_eq!(code, 1, "{document:#}");
    let copy = copy_of(&document, "primary");
    assert_eq!(copy["drill"]["verdict"], "incomplete", "{document:#}");
    let missing = copy["drill"]["missing_items"].to_string();
    assert!(missing.contains(&format!("Widget {app}/gear")), "{missing}");
    for leftover in namespaces_named_like(&format!("drill-{app}")) {
        let _ = stack().delete("v1", "Namespace", None, &leftover);
    }
}

#[test]
fn the_daemon_drills_on_its_cron_and_remembers_the_verdict_across_a_restart() {
    let app = stack().namespace("drills-daemon-app").name;
    application(&app);
    let live = cluster("drills-daemon", VELERO);
    write_dr_credentials(&live, &good_secret());
    // Every minute, paused (backups only by hand), drilled every minute, and a recovery
    // point objective of 90 seconds that the one backup soon breaks.
    let file = drilled_schedule(&live, &app, "paused = true\nrpo = \"90s\"\n")
        .replace("cron = \"0 0 1 1 *\"", "cron = \"* * * * *\"")
        .replace("cron = \"0 6 * * *\"", "cron = \"* * * * *\"");
    live.write_file(&file);
    let out = live.stowage(&["validate"]);
    assert_exit(&out, 0);
    live.apply();
    backed_up(&live, "nightly-primary");
    backed_up(&live, "nightly-dr");
    let series = |metrics: &str, location: &str| -> Option<(String, f64)> {
        let verdict = ["restorable", "incomplete", "unrestorable", "untested"]
            .into_iter()
            .find(|verdict| {
                metrics.contains(&format!(
                    "stowage_copy_drill_verdict{{schedule=\"nightly\",location=\"{location}\",verdict=\"{verdict}\"}} 1"
                ))
            })?;
        let at = metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "stowage_copy_drill_last_timestamp_seconds{{schedule=\"nightly\",location=\"{location}\"}}"
                ))
            })?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()?;
        Some((verdict.to_string(), at))
    };
    // The daemon runs as the deploy example's ServiceAccount: its RBAC is enough for
    // drills.
    let as_service_account = deploy_service_account(&live);
    let daemon = crate::watch::spawn_with(as_service_account(), &["--resync", "5s"]);
    let (verdict, drilled_at) = eventually_or(
        "a drill by the daemon",
        Duration::from_secs(180),
        &|| daemon.log(),
        || {
            let (_, metrics) = daemon.get("/metrics");
            series(&metrics, "primary").filter(|(verdict, _)| verdict != "untested")
        },
    );
    assert_eq!(verdict, "restorable", "{}", daemon.log());
    let log = daemon.log();
    assert!(log.contains("restore drill"), "{log}");
    for refused in ["forbidden", "not allowed to"] {
        assert!(
            !log.to_lowercase().contains(refused),
            "{refused} in the log:\n{log}"
        );
    }
    let (_, metrics) = daemon.get("/metrics");
    assert!(
        metrics.contains("stowage_copy_restore_seconds{schedule=\"nightly\",location=\"primary\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "stowage_copy_recovery_point_age_seconds{schedule=\"nightly\",location=\"primary\"}"
        ),
        "{metrics}"
    );
    drop(daemon);
    // A new process knows the last verdict at once: it is kept in the cluster.
    let restarted = crate::watch::spawn_with(as_service_account(), &["--resync", "5s"]);
    let (verdict, at) = eventually(
        "the restarted daemon's metrics",
        Duration::from_secs(30),
        || {
            let (_, metrics) = restarted.get("/metrics");
            series(&metrics, "primary")
        },
    );
    assert_eq!(verdict, "restorable");
    assert!(at >= drilled_at, "{at} < {drilled_at}");
    drop(restarted);
    // The one backup grows older than the rpo: status --check fails, saying so.
    eventually("the rpo to be breached", Duration::from_secs(150), || {
        let out = live.stowage(&["status", "--check", "--no-bucket-checks"]);
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code() == Some(1) && said.contains("beyond the rpo")).then_some(())
    });
    for leftover in namespaces_named_like(&format!("drill-{app}")) {
        let _ = stack().delete("v1", "Namespace", None, &leftover);
    }
}

/// The deploy example's ServiceAccount and RBAC, moved into the cluster's namespace:
/// commands that run as it.
fn deploy_service_account(live: &TestCluster) -> impl Fn() -> Command + '_ {
    let rbac = crate::support::examples_dir()
        .join("deploy")
        .join("rbac.yaml");
    let documents = serde_saphyr::from_multiple(&std::fs::read_to_string(rbac).unwrap()).unwrap();
    let ns = live.namespace().to_string();
    for object in crate::watch::deploy_rbac(documents, &ns) {
        stack().apply(object, "kubectl-create").unwrap();
    }
    let token = stack().token(&ns, "stowage");
    let kubeconfig = live.dir.path().join("stowage-sa.kubeconfig");
    std::fs::write(&kubeconfig, stack().token_kubeconfig(&token, &ns)).unwrap();
    move || live.command_with(&kubeconfig)
}
