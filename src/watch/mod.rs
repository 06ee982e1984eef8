//! `stowage watch`: the daemon that keeps the cluster equal to the file. It drives the
//! same pipeline as `plan` and `apply` (load → validate → render → observe → plan →
//! apply) whenever the file or a credential file changes, when a managed object
//! changes in the cluster (drift), and every `--resync`.
//!
//! A file that does not validate applies nothing: the cluster keeps the last good
//! state, and the error is logged, exported as a metric and shown by `/readyz` until
//! the file is fixed.

pub mod files;
pub mod http;
pub mod lease;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::cluster::{self, Cluster, ClusterError};
use crate::config::load::Loaded;
use crate::plan::Plan;
use crate::render::Kind;
use crate::report::diagnostics as shown;

/// How long a burst of file events must be quiet before the file is read.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// A burst that never goes quiet is read after this long anyway.
const MAX_SETTLE: Duration = Duration::from_secs(2);
/// How long the file's size and modification time must stay the same before it is
/// read: longer than the pauses of a slow writer (a copy over a network mount, a
/// non-atomic writer line by line), so a file is never planned half-written.
const FILE_QUIET: Duration = Duration::from_secs(1);
/// A file that keeps changing is read after this long anyway.
const MAX_FILE_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Options {
    pub file: PathBuf,
    pub target: cluster::Target,
    pub resync: Duration,
    pub listen: Option<SocketAddr>,
    pub leader_elect: bool,
    pub dry_run: bool,
    pub bucket_checks: bool,
    pub bucket_timeout: Duration,
    /// `--allow-mass-delete`: apply plans that delete most of what the file manages.
    pub allow_mass_delete: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch the file: {0}")]
    Notify(#[from] notify::Error),
}

/// Why a reconcile runs; drift and resync count as corrections when they change things.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reason {
    Start,
    File,
    Drift,
    Resync,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Start => "start",
            Reason::File => "file changed",
            Reason::Drift => "cluster changed",
            Reason::Resync => "resync",
        }
    }
}

/// The paths whose edits matter: the file, its credential files and CA bundles.
fn inputs_of(file: &Path, loaded: &Loaded) -> Vec<PathBuf> {
    let base = file.parent().unwrap_or(Path::new("."));
    let mut paths = vec![file.to_path_buf()];
    if let Some(config) = &loaded.config {
        paths.extend(
            config
                .credentials
                .values()
                .filter_map(|c| c.file.as_ref())
                .map(|p| base.join(p)),
        );
        paths.extend(
            config
                .backup_locations
                .values()
                .filter_map(|l| l.ca_cert_file.as_ref())
                .map(|p| base.join(p)),
        );
    }
    paths
}

/// The errors of a file that does not validate, located, one per line:
/// `file:line:column: code: message`. `None` when there are none.
fn first_error(diagnostics: &[crate::diagnostic::Diagnostic], loaded: &Loaded) -> Option<String> {
    let located = shown::locate(diagnostics, &loaded.source);
    let errors: Vec<String> = located
        .iter()
        .filter(|l| l.diagnostic.is_error())
        .map(|l| {
            format!(
                "{}:{}:{}: {}: {}",
                loaded.source.name,
                l.line.unwrap_or(0),
                l.column.unwrap_or(0),
                l.diagnostic.code,
                l.diagnostic.message
            )
        })
        .collect();
    (!errors.is_empty()).then(|| errors.join("\n"))
}

struct Daemon {
    options: Options,
    cluster: Cluster,
    health: http::Shared,
    files: files::FileWatch,
    drift: mpsc::Sender<()>,
    /// The namespace the drift watchers and the Lease live in, once known.
    namespace: Option<String>,
    drift_tasks: Vec<tokio::task::JoinHandle<()>>,
    leading: Option<Arc<AtomicBool>>,
    elector_stop: tokio::sync::watch::Sender<bool>,
    elector_task: Option<tokio::task::JoinHandle<()>>,
    identity: String,
}

pub async fn run(
    options: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), WatchError> {
    let cluster = cluster::connect(&options.target).await?;
    let health: http::Shared = Default::default();
    http::lock(&health).leader_election = options.leader_elect;
    if let Some(addr) = options.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| WatchError::Listen { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| WatchError::Listen { addr, source })?;
        info!(address = %bound, "listening on {bound} for /healthz, /readyz and /metrics");
        let app = http::router(health.clone());
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                error!(%error, "the HTTP server stopped");
            }
        });
    }
    let (file_tx, mut file_rx) = mpsc::channel::<()>(1);
    let (drift_tx, mut drift_rx) = mpsc::channel::<()>(1);
    let mut files = files::FileWatch::new(file_tx)?;
    files.set_paths([options.file.clone()])?;
    let identity = format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "stowage".to_string()),
        std::process::id()
    );
    let mut daemon = Daemon {
        options,
        cluster,
        health,
        files,
        drift: drift_tx,
        namespace: None,
        drift_tasks: Vec::new(),
        leading: None,
        elector_stop: tokio::sync::watch::channel(false).0,
        elector_task: None,
        identity,
    };
    let mut resync = tokio::time::interval(daemon.options.resync);
    resync.tick().await;
    tokio::pin!(shutdown);
    let mut next = Some(Reason::Start);
    loop {
        let reason = match next.take() {
            Some(reason) => reason,
            None => tokio::select! {
                _ = &mut shutdown => break,
                Some(()) = file_rx.recv() => Reason::File,
                Some(()) = drift_rx.recv() => Reason::Drift,
                _ = resync.tick() => Reason::Resync,
                // While another replica leads, look again at each renewal.
                _ = tokio::time::sleep(lease::LEASE_DURATION / 3), if daemon.waiting_for_leadership() => Reason::Resync,
            },
        };
        // Let a burst of edits settle (quiet for DEBOUNCE, at most MAX_SETTLE), and
        // fold what else arrived into this round.
        let mut reason = reason;
        if reason == Reason::File {
            let settle_by = Instant::now() + MAX_SETTLE;
            loop {
                tokio::time::sleep(DEBOUNCE).await;
                let mut more = false;
                while file_rx.try_recv().is_ok() {
                    more = true;
                }
                if !more || Instant::now() >= settle_by {
                    break;
                }
            }
            wait_until_steady(&daemon.options.file, FILE_QUIET, MAX_FILE_WAIT).await;
        }
        while file_rx.try_recv().is_ok() {
            reason = reason.min(Reason::File);
        }
        while drift_rx.try_recv().is_ok() {}
        daemon.reconcile(reason).await;
    }
    info!("stopping");
    daemon.stop().await;
    Ok(())
}

/// What tells a file's writer is still at work: its size and modification time
/// (`None` while it is missing).
fn file_stamp(path: &Path) -> Option<(u64, Option<std::time::SystemTime>)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.len(), metadata.modified().ok()))
}

/// Waits until `path` has not changed for `quiet`, or `limit` has passed.
async fn wait_until_steady(path: &Path, quiet: Duration, limit: Duration) {
    let poll = quiet / 10;
    let give_up = Instant::now() + limit;
    let mut stamp = file_stamp(path);
    let mut steady_since = Instant::now();
    while Instant::now() < give_up {
        tokio::time::sleep(poll).await;
        let now = file_stamp(path);
        if now != stamp {
            stamp = now;
            steady_since = Instant::now();
        } else if steady_since.elapsed() >= quiet {
            return;
        }
    }
    warn!(file = %path.display(), "the file kept changing; reading it anyway");
}

impl Daemon {
    fn waiting_for_leadership(&self) -> bool {
        self.leading
            .as_ref()
            .is_some_and(|l| !l.load(Ordering::SeqCst))
    }

    async fn stop(mut self) {
        for task in self.drift_tasks.drain(..) {
            task.abort();
        }
        let _ = self.elector_stop.send(true);
        if let Some(task) = self.elector_task.take() {
            let _ = task.await;
        }
    }

    /// Starts (or moves) the drift watchers and the elector to `namespace`.
    fn follow_namespace(&mut self, namespace: &str, owner: &str) {
        if self.namespace.as_deref() == Some(namespace) {
            return;
        }
        for task in self.drift_tasks.drain(..) {
            task.abort();
        }
        for kind in [
            Kind::BackupStorageLocation,
            Kind::VolumeSnapshotLocation,
            Kind::Schedule,
            Kind::Secret,
        ] {
            let api: Api<DynamicObject> = Api::namespaced_with(
                self.cluster.client.clone(),
                namespace,
                &cluster::resource_of(kind),
            );
            let config = watcher::Config::default().labels(&format!(
                "{}={}",
                crate::render::MANAGED_BY_LABEL,
                crate::render::MANAGED_BY_VALUE
            ));
            let drift = self.drift.clone();
            self.drift_tasks.push(tokio::spawn(async move {
                let mut events = watcher(api, config).boxed();
                while let Some(event) = events.next().await {
                    match event {
                        Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                            let _ = drift.try_send(());
                        }
                        Ok(_) => {}
                        Err(error) => {
                            debug!(%error, "watch of managed objects interrupted; resuming")
                        }
                    }
                }
            }));
        }
        if self.options.leader_elect && self.elector_task.is_none() {
            let elector = lease::Elector::new(
                self.cluster.client.clone(),
                namespace,
                &format!("stowage-{owner}"),
                self.identity.clone(),
                lease::LEASE_DURATION,
            );
            self.leading = Some(elector.leading());
            let stop = self.elector_stop.subscribe();
            self.elector_task = Some(tokio::spawn(elector.run(stop)));
        }
        self.namespace = Some(namespace.to_string());
    }

    async fn reconcile(&mut self, reason: Reason) {
        let file = self.options.file.clone();
        let (loaded, diagnostics) = match crate::cli::load_and_validate(&file) {
            Ok(result) => result,
            Err(load_error) => {
                self.invalid(format!("{}: {load_error}", file.display()));
                return;
            }
        };
        if let Err(error) = self.files.set_paths(inputs_of(&file, &loaded)) {
            warn!(%error, "cannot watch the credential files");
        }
        if let Some(problem) = first_error(&diagnostics, &loaded) {
            self.invalid(problem);
            return;
        }
        let Some(config) = loaded.config.clone() else {
            self.invalid(format!("{}: cannot be read", file.display()));
            return;
        };
        if http::lock(&self.health).invalid_file.take().is_some() {
            info!("the file validates again");
        }
        self.follow_namespace(&config.velero.namespace, &config.velero.owner);
        if let Some(leading) = &self.leading {
            // A fresh elector needs a moment for its first round.
            for _ in 0..20 {
                if leading.load(Ordering::SeqCst) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            let leader = leading.load(Ordering::SeqCst);
            http::lock(&self.health).leader = leader;
            if !leader {
                debug!("another replica holds the lease; not writing");
                let mut health = http::lock(&self.health);
                health.reconciled_once = true;
                return;
            }
        }

        let started = Instant::now();
        let mut desired = crate::render::render(&config, &loaded.materials);
        desired.allow_mass_delete |= self.options.allow_mass_delete;
        let observed =
            match cluster::observe::observe(&self.cluster, &desired, &config.velero.deployment)
                .await
            {
                Ok(observed) => observed,
                Err(error) => {
                    error!(%error, "cannot read the cluster");
                    let mut health = http::lock(&self.health);
                    health.cluster_reachable = false;
                    health.apply_failures += 1;
                    health.last_error = Some(error.to_string());
                    health.reconciled_once = true;
                    return;
                }
            };
        let plan = if self.options.bucket_checks {
            crate::observe::bucket::plan_with_buckets(
                &config,
                &loaded.materials,
                &desired,
                &observed,
                self.options.bucket_timeout,
            )
            .await
        } else {
            crate::plan::plan(&desired, &observed, &crate::plan::Context::default())
        };
        let planned_in = started.elapsed().as_secs_f64();
        {
            let mut health = http::lock(&self.health);
            health.cluster_reachable = true;
            health.plans += 1;
            health.last_plan_seconds = planned_in;
            health.plan_seconds_sum += planned_in;
            health.reconciled_once = true;
        }
        let mass_delete = plan
            .diagnostics
            .iter()
            .any(|d| d.code == crate::diagnostic::Code::MassDelete);
        http::lock(&self.health).mass_delete_refused = mass_delete;
        if plan.has_errors() {
            let problem = first_error(&plan.diagnostics, &loaded)
                .unwrap_or_else(|| "the plan has errors".to_string());
            error!(reason = reason.as_str(), problem = %problem, "the plan has errors; nothing applied");
            let mut health = http::lock(&self.health);
            health.apply_failures += 1;
            health.last_error = Some(problem);
            return;
        }
        if !plan.has_changes() {
            debug!(reason = reason.as_str(), "no changes");
            self.succeeded();
            return;
        }
        log_plan(&plan, reason);
        if self.options.dry_run {
            info!("--dry-run: nothing applied");
            self.succeeded();
            return;
        }
        // The file is the source of truth here: a field someone changed by hand is
        // taken back (Velero's own rewrites never reach this point: `plan` does not
        // count them as changes).
        let options = cluster::apply::Options {
            force_conflicts: true,
            ..cluster::apply::Options::default()
        };
        let report =
            cluster::apply::apply(&self.cluster, &plan, &desired, &observed, options).await;
        for written in &report.written {
            let object = format!(
                "{} {}/{}",
                written.object.kind.as_str(),
                written.object.namespace,
                written.object.name
            );
            match &written.outcome {
                cluster::apply::Outcome::Applied => {
                    info!(action = written.action.as_str(), %object, "applied")
                }
                cluster::apply::Outcome::Failed(why) => {
                    error!(action = written.action.as_str(), %object, error = %why, "failed")
                }
                cluster::apply::Outcome::NotAttempted => {
                    warn!(action = written.action.as_str(), %object, "skipped after an earlier failure")
                }
            }
        }
        if report.succeeded() {
            {
                let mut health = http::lock(&self.health);
                health.applies += 1;
                if matches!(reason, Reason::Drift | Reason::Resync) {
                    health.drift_corrections += 1;
                }
            }
            // Convergence: a plan of the same file, now, must have nothing left to do.
            let after =
                cluster::observe::observe(&self.cluster, &desired, &config.velero.deployment).await;
            let unconverged = after.ok().and_then(|after| {
                let replan = crate::plan::plan(&desired, &after, &crate::plan::Context::default());
                crate::plan::not_converged(&replan, &after)
            });
            match unconverged {
                None => self.succeeded(),
                Some(problem) => {
                    error!(problem = %problem.message, "the cluster did not converge to the file");
                    let mut health = http::lock(&self.health);
                    health.apply_failures += 1;
                    health.last_error = Some(problem.message);
                }
            }
        } else {
            let mut health = http::lock(&self.health);
            health.apply_failures += 1;
            let failed = report
                .written
                .iter()
                .filter(|w| matches!(w.outcome, cluster::apply::Outcome::Failed(_)))
                .count();
            health.last_error = Some(format!("{failed} write(s) failed; see the log"));
        }
    }

    fn succeeded(&self) {
        let mut health = http::lock(&self.health);
        health.last_error = None;
        health.last_success_unix = Some(chrono::Utc::now().timestamp());
    }

    fn invalid(&self, problem: String) {
        error!(problem = %problem, "the file does not validate; keeping the last valid state");
        let mut health = http::lock(&self.health);
        health.invalid_file = Some(problem);
        health.reconciled_once = true;
    }
}

fn log_plan(plan: &Plan, reason: Reason) {
    let summary = plan.summary();
    info!(
        reason = reason.as_str(),
        create = summary.create,
        update = summary.update,
        delete = summary.delete,
        "changes to apply"
    );
    for change in &plan.changes {
        info!(
            action = change.action.as_str(),
            object = %format!("{} {}/{}", change.object.kind.as_str(), change.object.namespace, change.object.name),
            risks = %change.risks.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(","),
            "planned"
        );
    }
}
