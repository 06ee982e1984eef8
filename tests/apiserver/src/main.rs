//! The test API server on its own, for clients that run as separate processes
//! (kubectl, the stowage binary):
//! `stowage-test-apiserver --port PORT --kubeconfig FILE` writes a kubeconfig for the
//! port and prints `ready` once it listens on 127.0.0.1; it stops on SIGINT or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use stowage_test_apiserver::{Config, TestServer, simulator};

#[derive(Parser)]
#[command(about = "A Kubernetes API server for stowage's tests")]
struct Args {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Where to write a kubeconfig for this server.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Directory of the CRDs to serve (default: ../shared/velero-crds).
    #[arg(long)]
    crds: Option<PathBuf>,
    /// Namespaces to create at start.
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// Run the Velero simulator for this namespace.
    #[arg(long)]
    velero: Option<String>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut config = Config::new(
        args.crds
            .unwrap_or_else(stowage_test_apiserver::velero_crds),
    );
    config.port = args.port;
    config.namespaces = args.namespaces;
    config.bookmark_interval = Duration::from_secs(5);
    config.simulator = args.velero.as_deref().map(simulator::Settings::new);
    let server = match TestServer::start(config) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("stowage-test-apiserver: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.kubeconfig
        && let Err(error) = std::fs::write(path, server.kubeconfig("default"))
    {
        eprintln!(
            "stowage-test-apiserver: cannot write {}: {error}",
            path.display()
        );
        return std::process::ExitCode::FAILURE;
    }
    println!("ready {}", server.url());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("stowage-test-apiserver: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match terminate.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    });
    drop(server);
    std::process::ExitCode::SUCCESS
}
