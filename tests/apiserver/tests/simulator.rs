//! The Velero simulator against the bucket emulators `tests/run` starts: locations get
//! Velero's verdicts, defaults settle the way Velero settles them, schedules lose
//! `skipImmediately`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stowage_test_apiserver::simulator::Settings;
use stowage_test_apiserver::{Config, TestServer};

fn emulators() -> Value {
    let Some(path) = std::env::var_os("STOWAGE_EMULATORS") else {
        panic!(
            "the bucket emulators are not running: run the suite with `bash tests/run`, which \
             installs moto[server], azurite@3.35.0 and fake-gcs-server into .tools/ and starts them"
        );
    };
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn start() -> TestServer {
    let mut config = Config::new(stowage_test_apiserver::velero_crds());
    config.namespaces = vec!["velero".into()];
    config.simulator = Some(Settings::new("velero"));
    TestServer::start(config).unwrap()
}

fn secret(name: &str, text: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "velero"},
           "stringData": {"cloud": text}})
}

fn s3_location(name: &str, bucket: &str, secret: &str) -> Value {
    let url = emulators()["s3"]["url"].as_str().unwrap().to_string();
    json!({"apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
           "metadata": {"name": name, "namespace": "velero"},
           "spec": {"provider": "aws", "objectStorage": {"bucket": bucket},
                    "credential": {"name": secret, "key": "cloud"},
                    "config": {"region": "us-east-1", "s3Url": url, "s3ForcePathStyle": "true"}}})
}

fn s3_keys(secret_key: &str) -> String {
    let e = emulators();
    format!(
        "[default]\naws_access_key_id = {}\naws_secret_access_key = {secret_key}\n",
        e["s3"]["access_key_id"].as_str().unwrap()
    )
}

/// Polls until `ready` holds for the object, or fails after 10 s.
fn wait_for(server: &TestServer, kind: &str, name: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let object = server.get("velero.io/v1", kind, Some("velero"), name);
        if let Some(object) = object.filter(|o| ready(o)) {
            return object;
        }
        assert!(
            Instant::now() < deadline,
            "{kind} {name} never got there: {:?}",
            server.get("velero.io/v1", kind, Some("velero"), name)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn phased(object: &Value) -> bool {
    object["status"]["phase"].is_string()
}

#[test]
fn locations_get_velero_verdicts_from_their_buckets() {
    let server = start();
    let good = emulators()["s3"]["secret_access_key"]
        .as_str()
        .unwrap()
        .to_string();
    server
        .seed(secret("good", &s3_keys(&good)), "kubectl")
        .unwrap();
    server
        .seed(secret("wrong", &s3_keys("not-the-secret")), "kubectl")
        .unwrap();
    server
        .seed(s3_location("clean", "velero-clean", "good"), "stowage")
        .unwrap();
    server
        .seed(s3_location("denied", "velero-clean", "wrong"), "stowage")
        .unwrap();
    server
        .seed(s3_location("foreign", "velero-foreign", "good"), "stowage")
        .unwrap();
    server
        .seed(s3_location("missing", "no-such-bucket", "good"), "stowage")
        .unwrap();
    server
        .seed(
            s3_location("no-secret", "velero-clean", "absent"),
            "stowage",
        )
        .unwrap();

    let clean = wait_for(&server, "BackupStorageLocation", "clean", phased);
    assert_eq!(clean["status"]["phase"], "Available");
    assert!(clean["status"].get("message").is_none());
    assert!(clean["status"]["lastValidationTime"].is_string());
    let status_owner: Vec<&str> = clean["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["fieldsV1"].get("f:status").is_some())
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert_eq!(status_owner, ["velero-server"]);

    let message = |name: &str| {
        let object = wait_for(&server, "BackupStorageLocation", name, phased);
        assert_eq!(object["status"]["phase"], "Unavailable", "{name}");
        object["status"]["message"].as_str().unwrap().to_string()
    };
    let denied = message("denied");
    assert!(
        denied.starts_with(
            "BackupStorageLocation \"denied\" is unavailable: rpc error: code = Unknown desc = "
        ),
        "{denied}"
    );
    assert!(!denied.contains("not-the-secret"));
    assert_eq!(
        message("foreign"),
        "BackupStorageLocation \"foreign\" is unavailable: Backup store contains invalid top-level directories: [data logs]"
    );
    assert!(message("missing").contains("rpc error"));
    assert_eq!(
        message("no-secret"),
        "BackupStorageLocation \"no-secret\" is unavailable: unable to get credentials: unable to get key for secret: secrets \"absent\" not found"
    );
}

#[test]
fn the_newest_default_wins_and_schedules_lose_skip_immediately() {
    let server = start();
    let mut older = s3_location("older", "velero-clean", "good");
    older["spec"]["default"] = json!(true);
    server.seed(older, "stowage").unwrap();
    // Creation timestamps have one-second resolution, as in Kubernetes.
    std::thread::sleep(Duration::from_millis(1100));
    let mut newer = s3_location("newer", "velero-clean", "good");
    newer["spec"]["default"] = json!(true);
    server.seed(newer, "stowage").unwrap();
    let older = wait_for(&server, "BackupStorageLocation", "older", |o| {
        o["spec"]["default"] == false
    });
    let owners: Vec<&str> = older["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["fieldsV1"]["f:spec"].get("f:default").is_some())
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["velero-server"], "Velero's Update takes the field");
    let newer = server
        .get(
            "velero.io/v1",
            "BackupStorageLocation",
            Some("velero"),
            "newer",
        )
        .unwrap();
    assert_eq!(newer["spec"]["default"], true);

    server
        .seed(
            json!({"apiVersion": "velero.io/v1", "kind": "Schedule",
            "metadata": {"name": "daily", "namespace": "velero"},
            "spec": {"schedule": "0 3 * * *", "skipImmediately": true, "template": {}}}),
            "stowage",
        )
        .unwrap();
    let schedule = wait_for(&server, "Schedule", "daily", |o| {
        o["spec"]["skipImmediately"] == false
    });
    assert!(schedule["status"]["lastSkipped"].is_string());
    assert_eq!(schedule["status"]["phase"], "Enabled");
}
