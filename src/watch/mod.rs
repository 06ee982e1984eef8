//! `stowage watch`: the daemon that keeps the cluster equal to the file. Each round
//! ([`Daemon::reconcile`]) runs the engine's pipeline (check the file, then
//! [`engine::converge`]: plan, apply, check convergence) and returns a typed result;
//! one place records health from it ([`Daemon::record`]) and the report layer writes
//! its log lines. Rounds run whenever the file or a credential file changes, when a
//! managed object changes in the cluster (drift), and every `--resync`.
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
use crate::engine::{self, ReconcileError, ReconcileOptions, Reconciled};
use crate::report::watch as log;
use crate::velero::Kind;

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
    /// How each round plans and applies (`--dry-run`, `--force-conflicts`, bucket
    /// checks, `--allow-mass-delete`).
    pub reconcile: ReconcileOptions,
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

/// Why a round runs; drift and resync count as corrections when they change things.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trigger {
    Start,
    File,
    Drift,
    Resync,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::File => "file changed",
            Trigger::Drift => "cluster changed",
            Trigger::Resync => "resync",
        }
    }
}

/// The daemon: its cluster, its health, and what it follows (the file's inputs, the
/// managed objects, the Lease).
pub struct Daemon {
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
    /// Fields taken back from other managers lately, to back off from a fight.
    fights: crate::engine::fights::Fights,
    /// The file as last validated: whose schedules' copies the metrics follow.
    last_valid: Option<engine::ValidFile>,
}

/// What wakes the daemon between rounds: an edit of the file or one of its inputs, and
/// a change to a managed object.
pub struct Events {
    file: mpsc::Receiver<()>,
    drift: mpsc::Receiver<()>,
}

/// What one round did.
#[derive(Debug)]
pub enum Round {
    /// Another replica holds the Lease: nothing planned or written.
    Standby,
    Done(Box<Reconciled>),
}

pub async fn run(
    options: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), WatchError> {
    let cluster = cluster::connect(&options.target).await?;
    let listen = options.listen;
    let (mut daemon, mut events) = Daemon::new(options, cluster)?;
    if let Some(addr) = listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| WatchError::Listen { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| WatchError::Listen { addr, source })?;
        info!(address = %bound, "listening on {bound} for /healthz, /readyz and /metrics");
        let app = http::router(daemon.health());
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                error!(%error, "the HTTP server stopped");
            }
        });
    }
    let mut resync = tokio::time::interval(daemon.options.resync);
    resync.tick().await;
    tokio::pin!(shutdown);
    let mut next = Some(Trigger::Start);
    loop {
        let mut trigger = match next.take() {
            Some(trigger) => trigger,
            None => tokio::select! {
                _ = &mut shutdown => break,
                Some(()) = events.file.recv() => Trigger::File,
                Some(()) = events.drift.recv() => Trigger::Drift,
                _ = resync.tick() => Trigger::Resync,
                // While another replica leads, look again at each renewal.
                _ = tokio::time::sleep(lease::LEASE_DURATION / 3), if daemon.waiting_for_leadership() => Trigger::Resync,
            },
        };
        if trigger == Trigger::File {
            settle(&mut events.file, DEBOUNCE, MAX_SETTLE).await;
            wait_until_steady(&daemon.options.file, FILE_QUIET, MAX_FILE_WAIT).await;
        }
        // A field that keeps being taken back is a fight: wait before taking it again
        // (an edit of the file is never held back).
        if matches!(trigger, Trigger::Drift | Trigger::Resync)
            && let Some(wait) = daemon.fight_backoff()
        {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // Fold what else arrived into this round.
        while events.file.try_recv().is_ok() {
            trigger = trigger.min(Trigger::File);
        }
        while events.drift.try_recv().is_ok() {}
        // What the round did is logged and recorded; the loop only goes on.
        let _ = daemon.round(trigger).await;
    }
    info!("stopping");
    daemon.stop().await;
    Ok(())
}

/// Lets a burst of events settle: returns once none has arrived for `quiet`, or after
/// `limit` if they keep coming. Consumes the burst's events.
pub async fn settle(events: &mut mpsc::Receiver<()>, quiet: Duration, limit: Duration) {
    let give_up = tokio::time::Instant::now() + limit;
    loop {
        tokio::time::sleep(quiet).await;
        let mut more = false;
        while events.try_recv().is_ok() {
            more = true;
        }
        if !more || tokio::time::Instant::now() >= give_up {
            return;
        }
    }
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

    /// Stops the drift watchers and gives up the Lease.
    pub async fn stop(mut self) {
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
                crate::velero::MANAGED_BY_LABEL,
                crate::velero::MANAGED_BY_VALUE
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

    /// A daemon for `options` on `cluster`, following the file; nothing runs until a
    /// round does.
    pub fn new(options: Options, cluster: Cluster) -> Result<(Daemon, Events), WatchError> {
        let health: http::Shared = Default::default();
        http::lock(&health).leader_election = options.leader_elect;
        let (file_tx, file_rx) = mpsc::channel::<()>(1);
        let (drift_tx, drift_rx) = mpsc::channel::<()>(1);
        let mut files = files::FileWatch::new(file_tx)?;
        files.set_paths([options.file.clone()])?;
        let identity = format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "stowage".to_string()),
            std::process::id()
        );
        let daemon = Daemon {
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
            fights: crate::engine::fights::Fights::default(),
            last_valid: None,
        };
        let events = Events {
            file: file_rx,
            drift: drift_rx,
        };
        Ok((daemon, events))
    }

    /// The health `/readyz` and `/metrics` show.
    pub fn health(&self) -> http::Shared {
        self.health.clone()
    }

    /// One round: reconcile, log what it did, record it in the health; returns what
    /// it did.
    pub async fn round(&mut self, trigger: Trigger) -> Result<Round, ReconcileError> {
        let started = Instant::now();
        let result = self.reconcile().await;
        let shown = match &result {
            Ok(Round::Standby) => Ok(None),
            Ok(Round::Done(reconciled)) => Ok(Some(reconciled.as_ref())),
            Err(error) => Err(error),
        };
        log::round(trigger.as_str(), shown);
        self.record(trigger, &result, started.elapsed());
        if let Ok(Round::Done(_)) = &result {
            self.follow_copies().await;
        }
        result
    }

    /// Judges every copy of every declared schedule (with the bucket checks, unless
    /// they are off) for the copy metrics.
    async fn follow_copies(&self) {
        let Some(file) = &self.last_valid else {
            return;
        };
        let bucket_timeout = self.options.reconcile.plan.bucket_timeout;
        match engine::status(&self.cluster, file, bucket_timeout, chrono::Utc::now()).await {
            Ok(status) => http::lock(&self.health).copies = status.copies,
            Err(error) => warn!(%error, "cannot read the schedules' backups"),
        }
    }

    /// Checks the file, follows its namespace, and unless another replica leads,
    /// converges the cluster to it.
    async fn reconcile(&mut self) -> Result<Round, ReconcileError> {
        let file = self.options.file.clone();
        let checked = engine::check_file(&file).map_err(|error| ReconcileError::Unusable {
            path: file.display().to_string(),
            error,
        })?;
        if let Err(error) = self.files.set_paths(checked.inputs(&file)) {
            warn!(%error, "cannot watch the credential files");
        }
        let valid = checked.into_valid().map_err(ReconcileError::Invalid)?;
        self.last_valid = Some(valid.clone());
        self.follow_namespace(&valid.config.velero.namespace, &valid.config.velero.owner);
        if !self.leads().await {
            return Ok(Round::Standby);
        }
        engine::converge(&self.cluster, &valid, self.options.reconcile)
            .await
            .map(|reconciled| Round::Done(Box::new(reconciled)))
    }

    /// How long to wait before the next round that would take a field back, when the
    /// daemon is fighting another manager over it; logged and shown in the health.
    fn fight_backoff(&self) -> Option<Duration> {
        let backoff = self.fights.backoff(
            Instant::now(),
            self.options.resync.min(crate::engine::fights::LONGEST_WAIT),
        );
        if let Some(backoff) = &backoff {
            log::fight(backoff);
        }
        let wait = backoff.as_ref().map(|b| b.wait);
        http::lock(&self.health).fight = backoff;
        wait
    }

    /// Whether this replica may write (always, without `--leader-elect`).
    async fn leads(&self) -> bool {
        let Some(leading) = &self.leading else {
            return true;
        };
        // A fresh elector needs a moment for its first round.
        for _ in 0..20 {
            if leading.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let leader = leading.load(Ordering::SeqCst);
        http::lock(&self.health).leader = leader;
        leader
    }

    /// The one place a round's result becomes health: readiness, counters, gauges.
    fn record(&mut self, trigger: Trigger, result: &Result<Round, ReconcileError>, took: Duration) {
        if let Ok(Round::Done(reconciled)) = result {
            let takeovers = match reconciled.as_ref() {
                Reconciled::Applied { takeovers, .. } => takeovers.as_slice(),
                _ => &[],
            };
            self.fights.record(takeovers, Instant::now());
        }
        let mut health = http::lock(&self.health);
        health.reconciled_once = true;
        let planned = match result {
            Ok(Round::Standby) => false,
            Ok(Round::Done(_)) => true,
            Err(error) => !matches!(
                error,
                ReconcileError::Unusable { .. }
                    | ReconcileError::Invalid(_)
                    | ReconcileError::Cluster(_)
            ),
        };
        if planned {
            health.cluster_reachable = true;
            health.plans += 1;
            health.last_plan_seconds = took.as_secs_f64();
            health.plan_seconds_sum += took.as_secs_f64();
            health.mass_delete_refused = false;
        }
        match result {
            Ok(Round::Standby) => {
                health.invalid_file = None;
            }
            Ok(Round::Done(reconciled)) => {
                let reconciled = reconciled.as_ref();
                health.invalid_file = None;
                health.last_error = None;
                health.last_success_unix = Some(chrono::Utc::now().timestamp());
                if let Reconciled::Applied { takeovers, .. } = reconciled {
                    health.applies += 1;
                    if matches!(trigger, Trigger::Drift | Trigger::Resync) {
                        health.drift_corrections += 1;
                    }
                    for takeover in takeovers {
                        for manager in &takeover.managers {
                            *health.takeovers.entry(manager.clone()).or_default() += 1;
                        }
                    }
                }
            }
            Err(error) => {
                *health.failures.entry(error.reason()).or_default() += 1;
                let problem = log::problem(error);
                match error {
                    ReconcileError::Unusable { .. } | ReconcileError::Invalid(_) => {
                        health.invalid_file = Some(problem);
                    }
                    ReconcileError::Cluster(_) => {
                        health.invalid_file = None;
                        health.cluster_reachable = false;
                        health.last_error = Some(problem);
                    }
                    _ => {
                        health.invalid_file = None;
                        health.mass_delete_refused = error.is_mass_delete();
                        health.last_error = Some(problem);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends an event every `every`, `count` times.
    fn burst(events: mpsc::Sender<()>, every: Duration, count: usize) {
        tokio::spawn(async move {
            for _ in 0..count {
                let _ = events.try_send(());
                tokio::time::sleep(every).await;
            }
        });
    }

    /// How long `settle` (quiet 200 ms, limit 2 s) waits for `count` events `every`
    /// apart, on paused time.
    async fn settling_time(every: Duration, count: usize) -> (Duration, mpsc::Receiver<()>) {
        let (sender, mut events) = mpsc::channel(1);
        burst(sender, every, count);
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        settle(
            &mut events,
            Duration::from_millis(200),
            Duration::from_secs(2),
        )
        .await;
        (started.elapsed(), events)
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_read_once_it_has_been_quiet() {
        // Five edits 100 ms apart: quiet for 200 ms only after the last.
        let (waited, mut events) = settling_time(Duration::from_millis(100), 5).await;
        assert!(
            waited >= Duration::from_millis(400) && waited <= Duration::from_millis(800),
            "{waited:?}"
        );
        assert!(events.try_recv().is_err(), "the burst was consumed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_that_never_goes_quiet_is_read_at_the_limit() {
        let (waited, _) = settling_time(Duration::from_millis(50), 1_000).await;
        assert!(
            waited >= Duration::from_secs(2) && waited <= Duration::from_millis(2_200),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_event_waits_one_quiet_period() {
        // The event that woke the daemon was received already; nothing follows it.
        let (waited, _) = settling_time(Duration::from_millis(100), 0).await;
        assert_eq!(waited, Duration::from_millis(200));
    }
}
