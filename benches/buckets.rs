//! Checking 50 locations' buckets takes about as long as checking one: the checks run
//! concurrently. Compare the two benchmarks' medians for the ratio.
//!
//! Needs the emulators: `bash tests/run bench` starts them and runs every benchmark.

use std::collections::BTreeMap;
use std::time::Duration;

use stowage::observe::bucket::{BucketStatus, BucketTarget, CredentialValue, check_all};
use stowage::secret::SecretValue;

fn main() {
    divan::main();
}

fn targets(count: usize) -> Vec<BucketTarget> {
    let path = std::env::var_os("STOWAGE_EMULATORS")
        .expect("the emulators are not running: use `bash tests/run bench`");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("state")).expect("json");
    let azure = &state["azure"];
    let credential = format!(
        "AZURE_STORAGE_ACCOUNT_ACCESS_KEY={}\n",
        azure["key"].as_str().unwrap()
    );
    let config: BTreeMap<String, String> = [
        ("storageAccount", azure["account"].as_str().unwrap()),
        ("storageAccountURI", azure["url"].as_str().unwrap()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    (0..count)
        .map(|i| BucketTarget {
            location: format!("location-{i}"),
            provider: "azure".into(),
            bucket: "velero-prefixed".into(),
            prefix: Some("cluster-a".into()),
            config: config.clone(),
            credential: CredentialValue::Value(SecretValue::new(credential.clone().into_bytes())),
            ca_cert: None,
        })
        .collect()
}

fn run(bencher: divan::Bencher, count: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    bencher
        .with_inputs(|| targets(count))
        .bench_values(|targets| {
            let reports = runtime.block_on(check_all(targets, Duration::from_secs(30)));
            assert!(
                reports
                    .iter()
                    .all(|r| matches!(r.status, BucketStatus::Reachable { backups: 3, .. }))
            );
            reports
        });
}

#[divan::bench(sample_count = 10)]
fn check_1_location(bencher: divan::Bencher) {
    run(bencher, 1);
}

#[divan::bench(sample_count = 10)]
fn check_50_locations(bencher: divan::Bencher) {
    run(bencher, 50);
}
