//! Checking 50 locations' buckets takes about as long as checking one, because the
//! checks run concurrently: compare the medians of each pair.
//!
//! On loopback an emulator answers in about a millisecond of its own CPU, so the
//! `loopback` pair measures mostly the emulator. Real buckets are a network round trip
//! away; the `rtt_100ms` pair puts a proxy that delays each direction by 50 ms in front
//! of the emulator, which is what the ratio is about. Checked one after another, 50
//! locations would take 50 times one.
//!
//! Needs the emulators: `bash tests/run bench` starts them and runs every benchmark.

use std::collections::BTreeMap;
use std::time::Duration;

use stowage::buckets::{BucketTarget, CredentialValue, check_all};
use stowage::observe::BucketStatus;
use stowage::secret::SecretValue;
use stowage::secret::formats::Credential;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() {
    divan::main();
}

fn emulator_state() -> serde_json::Value {
    let path = std::env::var_os("STOWAGE_EMULATORS")
        .expect("the emulators are not running: use `bash tests/run bench`");
    serde_json::from_str(&std::fs::read_to_string(path).expect("state")).expect("json")
}

/// `count` Azurite locations reached through `endpoint`.
fn targets(count: usize, endpoint: &str) -> Vec<BucketTarget> {
    let state = emulator_state();
    let azure = &state["azure"];
    let credential = format!(
        "AZURE_STORAGE_ACCOUNT_ACCESS_KEY={}\n",
        azure["key"].as_str().unwrap()
    );
    let config: BTreeMap<String, String> = [
        ("storageAccount", azure["account"].as_str().unwrap()),
        ("storageAccountURI", endpoint),
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
            credential: CredentialValue::Value(Credential::read(SecretValue::new(
                credential.clone().into_bytes(),
            ))),
            ca_cert: None,
        })
        .collect()
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` (host:port) that holds every chunk
/// for `delay` in each direction; returns its address.
fn delaying_proxy(upstream: String, delay: Duration) -> String {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            sender
                .send(listener.local_addr().expect("addr").to_string())
                .expect("send");
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(pump(client_read, server_write, delay));
                    pump(server_read, client_write, delay).await;
                });
            }
        });
    });
    receiver.recv().expect("proxy address")
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        tokio::time::sleep(delay).await;
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

fn run(bencher: divan::Bencher, count: usize, endpoint: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    bencher
        .with_inputs(|| targets(count, endpoint))
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

fn direct_endpoint() -> String {
    emulator_state()["azure"]["url"]
        .as_str()
        .unwrap()
        .to_string()
}

fn proxied_endpoint() -> String {
    static PROXY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let direct = direct_endpoint();
    let rest = direct.strip_prefix("http://").expect("http endpoint");
    let (host, path) = rest.split_once('/').expect("account path");
    let proxy = PROXY.get_or_init(|| delaying_proxy(host.to_string(), Duration::from_millis(50)));
    format!("http://{proxy}/{path}")
}

#[divan::bench(sample_count = 10)]
fn loopback_1_location(bencher: divan::Bencher) {
    run(bencher, 1, &direct_endpoint());
}

#[divan::bench(sample_count = 10)]
fn loopback_50_locations(bencher: divan::Bencher) {
    run(bencher, 50, &direct_endpoint());
}

#[divan::bench(sample_count = 10)]
fn rtt_100ms_1_location(bencher: divan::Bencher) {
    run(bencher, 1, &proxied_endpoint());
}

#[divan::bench(sample_count = 10)]
fn rtt_100ms_50_locations(bencher: divan::Bencher) {
    run(bencher, 50, &proxied_endpoint());
}
