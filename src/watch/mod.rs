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
//!
//! The daemon keeps the invariants of product contract §7 whatever the timing: its
//! inputs are read only once all of them are steady, and a plan that deletes or
//! writes a credential waits until they have been quiet for the quiet period
//! ([`inputs::guard`]); with leader election every write passes the Lease's fence;
//! `/readyz` knows within the request timeout when the API server stops answering.

pub mod files;
pub mod http;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::cluster::lease::{self, Fence};
use crate::cluster::{self, Cluster, ClusterError};
use crate::engine::inputs::{self, Snapshot, SnapshotError};
use crate::engine::{self, ReconcileError, ReconcileOptions, Reconciled};
use crate::input::Stamps;
use crate::report::watch as log;
use crate::velero::Kind;

/// How long a burst of file events must be quiet before the inputs are looked at.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// A burst that never goes quiet is looked at after this long anyway.
const MAX_SETTLE: Duration = Duration::from_secs(2);
/// How long every input must have been unchanged before it is read: longer than the
/// pauses of a writer at work (a copy over a network mount, a line-by-line writer).
/// Creates and updates may go out after it; deletions and credentials wait for the
/// quiet period.
pub const STEADY: Duration = Duration::from_secs(1);
/// Inputs that keep changing are read after this long anyway (and what the plan would
/// delete still waits for the quiet period).
const MAX_STEADY_WAIT: Duration = Duration::from_secs(60);
/// After a failed round, the first retry; it doubles up to the resync period.
const FIRST_RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Options {
    pub file: PathBuf,
    pub target: cluster::Target,
    pub resync: Duration,
    /// How long every input must be unchanged before a plan that deletes, writes a
    /// credential, repoints a location or moves the default is written.
    pub quiet_period: Duration,
    pub listen: Option<SocketAddr>,
    /// Leader election's timing, with `--leader-elect`.
    pub leader_election: Option<lease::Timing>,
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

/// Why a round runs; drift and resync count as corrections when they change things
/// (see [`drift_accounting`] for rounds that could not write at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trigger {
    Start,
    File,
    Drift,
    /// Again after a failed or deferred round.
    Retry,
    Resync,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::File => "file changed",
            Trigger::Drift => "cluster changed",
            Trigger::Retry => "retry",
            Trigger::Resync => "resync",
        }
    }
}

/// What a round wrote, as drift accounting sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrote {
    Yes,
    /// Deferred, failed, or not the leader's to write.
    NotYet,
    /// The cluster already equals the file (or `--dry-run`).
    NothingToWrite,
    /// Written, but the cluster changed under the apply (not converged).
    ClusterMoved,
}

/// Whether a round corrects drift, and whether drift is owed after it. A round woken
/// by drift or a resync corrects drift when it writes; one that could not write leaves
/// the drift owed to whichever round writes next, whatever woke it; a round whose
/// cluster moved under its apply saw drift itself.
fn drift_accounting(owed: bool, trigger: Trigger, wrote: Wrote) -> (bool, bool) {
    let drifted = owed || matches!(trigger, Trigger::Drift | Trigger::Resync);
    match wrote {
        Wrote::Yes => (drifted, false),
        Wrote::NotYet => (false, drifted),
        Wrote::NothingToWrite => (false, false),
        Wrote::ClusterMoved => (false, true),
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
    /// With leader election: the fence every write passes.
    fence: Option<Fence>,
    elector_stop: tokio::sync::watch::Sender<bool>,
    elector_task: Option<tokio::task::JoinHandle<()>>,
    identity: String,
    /// Fields taken back from other managers lately, to back off from a fight.
    fights: crate::engine::fights::Fights,
    /// The cluster moved away from the file and the round that saw it wrote nothing
    /// back (deferred, or failed — a round whose cluster changed under its apply fails
    /// as not converged): the round that finally writes corrects that drift, whatever
    /// woke it.
    drift_owed: bool,
    /// The file as last validated: whose schedules' copies the metrics follow.
    last_valid: Option<engine::ValidFile>,
    /// The inputs' paths as last read (the file, bases, credentials, CA files).
    input_paths: Vec<PathBuf>,
    /// The inputs' stamps as last read, and since when this daemon has seen them so.
    seen: Option<(Stamps, Instant)>,
    /// Whether the last round ended well: a file event that changed nothing needs no
    /// round then.
    settled: bool,
    /// When to retry after failed rounds.
    retries: Requeue,
    /// The restore drill running now, if one is.
    drill_task: Option<tokio::task::JoinHandle<()>>,
    /// When this daemon started: a copy never drilled is first due at its drill cron's
    /// first run after this.
    started: chrono::DateTime<chrono::Utc>,
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
    /// A file event, but nothing the file names changed.
    Unchanged,
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
    let probe = tokio::spawn(probe(daemon.cluster.clone(), daemon.health()));
    let mut resync = tokio::time::interval(daemon.options.resync);
    resync.tick().await;
    tokio::pin!(shutdown);
    let mut next = Some(Trigger::Start);
    let mut retry_at: Option<tokio::time::Instant> = None;
    // Restore drills run beside the rounds, one at a time; each tells the loop when it
    // ends, and the next is due by its cron.
    let (drilled_tx, mut drilled_rx) = mpsc::channel::<()>(1);
    let mut drill_at: Option<tokio::time::Instant> = None;
    loop {
        let mut trigger = match next.take() {
            Some(trigger) => trigger,
            None => tokio::select! {
                _ = &mut shutdown => break,
                Some(()) = events.file.recv() => Trigger::File,
                Some(()) = events.drift.recv() => Trigger::Drift,
                _ = resync.tick() => Trigger::Resync,
                _ = sleep_until(retry_at) => Trigger::Retry,
                // While another replica leads, look again at each of its renewals.
                _ = tokio::time::sleep(daemon.standby_look()), if daemon.is_standby() => Trigger::Resync,
                _ = sleep_until(drill_at) => {
                    daemon.start_due_drill(drilled_tx.clone());
                    drill_at = None;
                    continue;
                }
                Some(()) = drilled_rx.recv() => {
                    daemon.drill_ended().await;
                    drill_at = daemon.next_drill();
                    continue;
                }
            },
        };
        if trigger == Trigger::File {
            settle(&mut events.file, DEBOUNCE, MAX_SETTLE).await;
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
        let result = daemon.round(trigger).await;
        retry_at = daemon
            .retry_after(&result)
            .map(|wait| tokio::time::Instant::now() + wait);
        drill_at = daemon.next_drill();
    }
    info!("stopping");
    probe.abort();
    if let Some(drill) = daemon.drill_task.take() {
        // A drill cut short leaves labelled namespaces and a Restore; the next drill
        // run removes them (engine::drill::clean_up_expired).
        drill.abort();
    }
    daemon.stop().await;
    Ok(())
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Asks the API server for its version every few seconds, so that `/readyz` knows
/// within the request timeout when it stops answering (a frozen server accepts
/// connections and never answers).
async fn probe(cluster: Cluster, health: http::Shared) {
    let every =
        (cluster.request_timeout / 3).clamp(Duration::from_millis(500), Duration::from_secs(10));
    loop {
        let answered =
            tokio::time::timeout(cluster.request_timeout, cluster.client.apiserver_version()).await;
        if matches!(answered, Ok(Ok(_))) {
            http::lock(&health).answered(Instant::now());
        }
        tokio::time::sleep(every).await;
    }
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

/// Waits until none of `paths` has changed for `steady`: at once when the file
/// system says every one last changed longer ago, else by watching their stamps.
/// Gives up after `limit`.
async fn wait_until_steady(paths: &[PathBuf], steady: Duration, limit: Duration) {
    let poll = steady / 10;
    let give_up = Instant::now() + limit;
    let mut stamps = Stamps::of(paths);
    let mut steady_since = Instant::now();
    loop {
        let old_enough = stamps
            .last_change()
            .and_then(|changed| std::time::SystemTime::now().duration_since(changed).ok())
            .is_some_and(|age| age >= steady);
        if old_enough || steady_since.elapsed() >= steady {
            return;
        }
        if Instant::now() >= give_up {
            warn!("the file or what it names kept changing; reading it anyway");
            return;
        }
        tokio::time::sleep(poll).await;
        let now = Stamps::of(paths);
        if now != stamps {
            stamps = now;
            steady_since = Instant::now();
        }
    }
}

impl Daemon {
    fn is_standby(&self) -> bool {
        self.fence.as_ref().is_some_and(|fence| !fence.is_open())
    }

    fn standby_look(&self) -> Duration {
        self.options
            .leader_election
            .map_or(Duration::from_secs(5), |timing| timing.retry_period)
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
        if let Some(old) = &self.namespace {
            warn!(
                from = %old,
                to = %namespace,
                "[velero] namespace moved: the objects stowage wrote in {old} stay there, unmanaged by this file; delete them by hand once nothing needs them"
            );
        }
        for task in self.drift_tasks.drain(..) {
            task.abort();
        }
        // Watches end within the request timeout and are resumed, so a watch never
        // sits on a dead connection longer than a request may.
        let watch_timeout = u32::try_from(self.cluster.request_timeout.as_secs())
            .unwrap_or(u32::MAX)
            .clamp(1, 290);
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
            let config = watcher::Config::default()
                .labels(&format!(
                    "{}={}",
                    crate::velero::MANAGED_BY_LABEL,
                    crate::velero::MANAGED_BY_VALUE
                ))
                .timeout(watch_timeout.saturating_sub(1).max(1));
            let drift = self.drift.clone();
            self.drift_tasks.push(tokio::spawn(async move {
                // A watch that fails (403, a server away) waits longer each time,
                // up to a minute, and says why once per wait.
                let mut events = watcher(api, config)
                    .backoff(WatchBackoff::default())
                    .boxed();
                while let Some(event) = events.next().await {
                    match event {
                        Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                            let _ = drift.try_send(());
                        }
                        Ok(_) => {}
                        Err(error) => {
                            warn!(kind = kind.as_str(), %error, "watching managed objects failed; trying again after a backoff")
                        }
                    }
                }
            }));
        }
        if let Some(timing) = self.options.leader_election
            && self.elector_task.is_none()
        {
            let elector = lease::Elector::new(
                self.cluster.client.clone(),
                namespace,
                &format!("stowage-{owner}"),
                self.identity.clone(),
                timing,
            );
            self.fence = Some(elector.fence());
            self.options.reconcile.apply.fence = Some(elector.fence());
            http::lock(&self.health).fence = Some(elector.fence());
            let stop = self.elector_stop.subscribe();
            self.elector_task = Some(tokio::spawn(elector.run(stop)));
        }
        self.namespace = Some(namespace.to_string());
    }

    /// A daemon for `options` on `cluster`, following the file; nothing runs until a
    /// round does.
    pub fn new(options: Options, cluster: Cluster) -> Result<(Daemon, Events), WatchError> {
        let health: http::Shared = Default::default();
        {
            let mut health = http::lock(&health);
            health.leader_election = options.leader_election.is_some();
            health.request_timeout = cluster.request_timeout;
        }
        let (file_tx, file_rx) = mpsc::channel::<()>(1);
        let (drift_tx, drift_rx) = mpsc::channel::<()>(1);
        let mut files = files::FileWatch::new(file_tx)?;
        let input_paths = vec![options.file.clone()];
        files.set_folders(Stamps::of(&input_paths).folders())?;
        let identity = format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "stowage".to_string()),
            std::process::id()
        );
        let daemon = Daemon {
            retries: Requeue::new(options.resync),
            options,
            cluster,
            health,
            files,
            drift: drift_tx,
            namespace: None,
            drift_tasks: Vec::new(),
            fence: None,
            elector_stop: tokio::sync::watch::channel(false).0,
            elector_task: None,
            identity,
            fights: crate::engine::fights::Fights::default(),
            drift_owed: false,
            last_valid: None,
            input_paths,
            seen: None,
            settled: false,
            drill_task: None,
            started: chrono::Utc::now(),
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

    /// When to run again after this round without waiting for an event: soon after a
    /// deferred round, with a growing backoff after a failed one.
    fn retry_after(&mut self, result: &Result<Round, ReconcileError>) -> Option<Duration> {
        match result {
            Ok(Round::Done(reconciled)) => {
                self.retries.succeeded();
                match reconciled.as_ref() {
                    Reconciled::Deferred { wait, .. } => {
                        Some((*wait).max(Duration::from_millis(200)))
                    }
                    _ => None,
                }
            }
            Ok(_) => {
                self.retries.succeeded();
                None
            }
            Err(_) => Some(self.retries.failed()),
        }
    }

    /// One round: reconcile, log what it did, record it in the health; returns what
    /// it did.
    pub async fn round(&mut self, trigger: Trigger) -> Result<Round, ReconcileError> {
        let started = Instant::now();
        let result = self.reconcile(trigger).await;
        let shown = match &result {
            Ok(Round::Standby | Round::Unchanged) => Ok(None),
            Ok(Round::Done(reconciled)) => Ok(Some(reconciled.as_ref())),
            Err(error) => Err(error),
        };
        log::round(trigger.as_str(), shown);
        self.record(trigger, &result, started.elapsed());
        self.settled = matches!(&result, Ok(Round::Standby | Round::Unchanged))
            || matches!(&result, Ok(Round::Done(r)) if !matches!(r.as_ref(), Reconciled::Deferred { .. }));
        if let Ok(Round::Done(done)) = &result
            && let Some(observed) = done.observed()
        {
            self.follow_copies(Some(observed.clone())).await;
        }
        result
    }

    /// The drilled copies, each with when its next drill is due, soonest first; none
    /// while a drill runs or another replica leads.
    fn due_drills(
        &self,
    ) -> Vec<(
        chrono::DateTime<chrono::Utc>,
        engine::drill::Copy,
        crate::config::model::Drill,
    )> {
        let Some(file) = self.last_valid.as_ref() else {
            return Vec::new();
        };
        if self.drill_task.as_ref().is_some_and(|t| !t.is_finished()) || self.is_standby() {
            return Vec::new();
        }
        let copies = http::lock(&self.health).copies.clone();
        let mut due: Vec<_> = engine::drill::drilled_copies(file)
            .into_iter()
            .filter_map(|(copy, drill)| {
                let last = copies
                    .iter()
                    .find(|c| c.velero_schedule == copy.velero_schedule)
                    .and_then(|c| c.drill.as_ref())
                    .and_then(|d| d.at_time());
                let when = crate::drills::next_due(&drill.cron, last, self.started)?;
                Some((when, copy, drill.clone()))
            })
            .collect();
        due.sort_by_key(|(when, _, _)| *when);
        due
    }

    /// When the next restore drill is due, on the runtime's clock.
    fn next_drill(&self) -> Option<tokio::time::Instant> {
        let (due, _, _) = self.due_drills().into_iter().next()?;
        let wait = (due - chrono::Utc::now()).to_std().unwrap_or_default();
        Some(tokio::time::Instant::now() + wait)
    }

    /// Starts the drill that is due, if this replica leads and none runs.
    fn start_due_drill(&mut self, ended: mpsc::Sender<()>) {
        let Some(file) = self.last_valid.clone() else {
            return;
        };
        let now = chrono::Utc::now();
        let Some((_, copy, drill)) = self
            .due_drills()
            .into_iter()
            .find(|(when, _, _)| *when <= now + chrono::Duration::seconds(1))
        else {
            return;
        };
        let cluster = self.cluster.clone();
        let options = engine::drill::DrillOptions {
            bucket_timeout: self
                .options
                .reconcile
                .plan
                .bucket_timeout
                .unwrap_or(Duration::from_secs(20)),
            fence: self.fence.clone(),
            ..engine::drill::DrillOptions::default()
        };
        info!(schedule = %copy.schedule, location = copy.location.as_deref().unwrap_or("(default)"), "restore drill starting");
        self.drill_task = Some(tokio::spawn(async move {
            let mut quiet = |_: &engine::drill::Copy, _: engine::drill::Progress| {};
            let copies = [(copy, drill)];
            match engine::drill::drill_all(&cluster, &file, &copies, &options, &mut quiet).await {
                Ok(drilled) => {
                    for drilled in drilled {
                        log::drilled(&drilled);
                    }
                }
                Err(error) => warn!(%error, "the restore drill failed to run"),
            }
            let _ = ended.send(()).await;
        }));
    }

    /// A drill ended: the copies' drill records (and so the metrics) are read again.
    async fn drill_ended(&mut self) {
        self.drill_task = None;
        self.follow_copies(None).await;
    }

    /// Judges every copy of every declared schedule (with the bucket checks, unless
    /// they are off) for the copy metrics: from the state the round just read, else
    /// from a read of its own.
    async fn follow_copies(&self, observed: Option<crate::observe::Observed>) {
        let Some(file) = &self.last_valid else {
            return;
        };
        let bucket_timeout = self.options.reconcile.plan.bucket_timeout;
        let now = chrono::Utc::now();
        let status = match observed {
            Some(observed) => {
                engine::status_of(&self.cluster, file, observed, bucket_timeout, now).await
            }
            None => engine::status(&self.cluster, file, bucket_timeout, now).await,
        };
        match status {
            Ok(status) => http::lock(&self.health).copies = status.copies,
            Err(error) => warn!(%error, "cannot read the schedules' backups"),
        }
    }

    /// Reads the file and everything it names once all of it has been steady, and
    /// follows the folders they are in.
    async fn read_inputs(&mut self) -> Result<Snapshot, ReconcileError> {
        let file = self.options.file.clone();
        let give_up = Instant::now() + MAX_STEADY_WAIT;
        loop {
            wait_until_steady(&self.input_paths, STEADY, MAX_STEADY_WAIT).await;
            let snapshot = match inputs::read(&file) {
                Ok(snapshot) => snapshot,
                Err(SnapshotError::Load(error)) => {
                    return Err(ReconcileError::Unusable {
                        path: file.display().to_string(),
                        error,
                    });
                }
                Err(SnapshotError::Unsettled { .. }) if Instant::now() < give_up => continue,
                Err(error @ SnapshotError::Unsettled { .. }) => {
                    return Err(ReconcileError::Unsettled(error.to_string()));
                }
            };
            let paths: Vec<PathBuf> = snapshot.stamps.paths().cloned().collect();
            let folders = snapshot.stamps.folders();
            if let Err(error) = self.files.set_folders(folders) {
                warn!(%error, "cannot watch the folders of the files the file names");
            }
            // A new input (a credential file just named) must be steady too.
            if paths != self.input_paths && Instant::now() < give_up {
                self.input_paths = paths;
                continue;
            }
            self.input_paths = paths;
            return Ok(snapshot);
        }
    }

    /// Checks the file, follows its namespace, and unless another replica leads,
    /// converges the cluster to it.
    async fn reconcile(&mut self, trigger: Trigger) -> Result<Round, ReconcileError> {
        let snapshot = self.read_inputs().await?;
        let seen_since = match &self.seen {
            Some((stamps, since)) if *stamps == snapshot.stamps => {
                if trigger == Trigger::File && self.settled {
                    return Ok(Round::Unchanged);
                }
                *since
            }
            _ => {
                let since = snapshot.read_at;
                self.seen = Some((snapshot.stamps.clone(), since));
                since
            }
        };
        let valid = snapshot
            .checked
            .clone()
            .into_valid()
            .map_err(ReconcileError::Invalid)?;
        self.last_valid = Some(valid.clone());
        self.follow_namespace(&valid.config.velero.namespace, &valid.config.velero.owner);
        if !self.leads().await {
            return Ok(Round::Standby);
        }
        let quiet_period = self.options.quiet_period;
        engine::converge(&self.cluster, &valid, &self.options.reconcile, |plan| {
            inputs::guard(plan, &snapshot, seen_since, quiet_period)
        })
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
        let Some(fence) = &self.fence else {
            return true;
        };
        // A fresh elector needs a moment for its first look.
        for _ in 0..40 {
            if fence.is_open() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        fence.is_open()
    }

    /// The one place a round's result becomes health: readiness, counters, gauges.
    fn record(&mut self, trigger: Trigger, result: &Result<Round, ReconcileError>, took: Duration) {
        let wrote = match result {
            Ok(Round::Done(reconciled)) => match reconciled.as_ref() {
                Reconciled::Applied { .. } => Wrote::Yes,
                Reconciled::Deferred { .. } => Wrote::NotYet,
                Reconciled::Unchanged { .. } | Reconciled::DryRun { .. } => Wrote::NothingToWrite,
            },
            Ok(Round::Standby | Round::Unchanged) => Wrote::NotYet,
            Err(ReconcileError::NotConverged { .. }) => Wrote::ClusterMoved,
            Err(_) => Wrote::NotYet,
        };
        let corrects_drift;
        (corrects_drift, self.drift_owed) = drift_accounting(self.drift_owed, trigger, wrote);
        if let Ok(Round::Done(reconciled)) = result {
            let takeovers = match reconciled.as_ref() {
                Reconciled::Applied { takeovers, .. } => takeovers.as_slice(),
                _ => &[],
            };
            self.fights.record(takeovers, Instant::now());
        }
        let fight = self.fights.backoff(
            Instant::now(),
            self.options.resync.min(crate::engine::fights::LONGEST_WAIT),
        );
        let mut health = http::lock(&self.health);
        // The fight as it stands after this round, not as it stood before the last
        // drift round: a fight that ended is not reported.
        health.fight = fight;
        if matches!(result, Ok(Round::Unchanged)) {
            return;
        }
        health.reconciled_once = true;
        let planned = match result {
            Ok(Round::Standby | Round::Unchanged) => false,
            Ok(Round::Done(_)) => true,
            Err(error) => !matches!(
                error,
                ReconcileError::Unusable { .. }
                    | ReconcileError::Unsettled(_)
                    | ReconcileError::Invalid(_)
                    | ReconcileError::Cluster(_)
            ),
        };
        if planned {
            health.answered(Instant::now());
            health.plans += 1;
            health.plan_seconds.observe(took.as_secs_f64());
            health.mass_delete_refused = false;
        }
        match result {
            Ok(Round::Standby | Round::Unchanged) => {
                health.invalid_file = None;
                // A standby writes nothing, so it has no apply of its own to fail.
                health.last_error = None;
            }
            Ok(Round::Done(reconciled)) => {
                let reconciled = reconciled.as_ref();
                health.invalid_file = None;
                if let Reconciled::Deferred { reason, .. } = reconciled {
                    health.deferred = Some(reason.clone());
                    return;
                }
                health.deferred = None;
                health.last_error = None;
                health.last_success_unix = Some(chrono::Utc::now().timestamp());
                if let Reconciled::Applied { takeovers, .. } = reconciled {
                    health.applies += 1;
                    if corrects_drift {
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
                health.deferred = None;
                *health.failures.entry(error.reason()).or_default() += 1;
                let problem = log::problem(error);
                match error {
                    ReconcileError::Unusable { .. }
                    | ReconcileError::Unsettled(_)
                    | ReconcileError::Invalid(_) => {
                        health.invalid_file = Some(problem);
                    }
                    ReconcileError::Cluster(_) => {
                        health.invalid_file = None;
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

/// The drift watchers' backoff after a failed watch: 1 s, doubling, at most a
/// minute, so a watch refused for good (403) costs a request a minute. A watcher emits
/// events between its failures (each relist starts with one), so those do not reset
/// it: two minutes without a failure do.
struct WatchBackoff {
    next: Duration,
    last_failure: Option<Instant>,
}

const WATCH_BACKOFF_FIRST: Duration = Duration::from_secs(1);
const WATCH_BACKOFF_LONGEST: Duration = Duration::from_secs(60);
const WATCH_BACKOFF_RESET: Duration = Duration::from_secs(120);

impl Default for WatchBackoff {
    fn default() -> WatchBackoff {
        WatchBackoff {
            next: WATCH_BACKOFF_FIRST,
            last_failure: None,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self
            .last_failure
            .is_some_and(|at| at.elapsed() >= WATCH_BACKOFF_RESET)
        {
            self.next = WATCH_BACKOFF_FIRST;
        }
        self.last_failure = Some(Instant::now());
        let wait = self.next;
        self.next = (self.next * 2).min(WATCH_BACKOFF_LONGEST);
        Some(wait)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        // See the type: quiet time resets it, not an event between failures.
    }
}

/// The requeue after a failed round, as kube-runtime's controllers do it in their
/// error policy: the first retry after [`FIRST_RETRY`], each further one twice as late,
/// never later than the resync (which would run the round anyway); a round that ends
/// well starts it over.
#[derive(Debug)]
struct Requeue {
    next: Duration,
    longest: Duration,
}

impl Requeue {
    fn new(resync: Duration) -> Requeue {
        Requeue {
            next: FIRST_RETRY,
            longest: resync.max(FIRST_RETRY),
        }
    }

    /// How long to wait after one more failed round.
    fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (wait * 2).min(self.longest);
        wait
    }

    fn succeeded(&mut self) {
        self.next = FIRST_RETRY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A drift correction is counted once, by the round that writes it back, whatever
    /// woke that round: a drift round deferred or failed hands it on to the retry, and
    /// a round whose cluster moved under its apply owes one; a round with nothing to
    /// write settles it.
    #[test]
    fn drift_is_counted_by_the_round_that_writes_it_back() {
        use Trigger::*;
        assert_eq!(drift_accounting(false, Drift, Wrote::Yes), (true, false));
        assert_eq!(drift_accounting(false, Resync, Wrote::Yes), (true, false));
        assert_eq!(drift_accounting(false, File, Wrote::Yes), (false, false));
        assert_eq!(drift_accounting(false, Retry, Wrote::Yes), (false, false));
        // Deferred or failed: the retry that writes counts it, once.
        assert_eq!(drift_accounting(false, Drift, Wrote::NotYet), (false, true));
        assert_eq!(drift_accounting(true, Retry, Wrote::NotYet), (false, true));
        assert_eq!(drift_accounting(true, Retry, Wrote::Yes), (true, false));
        // The cluster moved under a start's apply: the next write corrects drift.
        assert_eq!(
            drift_accounting(false, Start, Wrote::ClusterMoved),
            (false, true)
        );
        assert_eq!(drift_accounting(true, Retry, Wrote::Yes), (true, false));
        // Someone put it back first: nothing to count.
        assert_eq!(
            drift_accounting(true, Drift, Wrote::NothingToWrite),
            (false, false)
        );
    }

    #[test]
    fn failed_rounds_are_retried_ever_later_up_to_the_resync_and_start_over_after_one_that_ends_well()
     {
        let mut requeue = Requeue::new(Duration::from_secs(20));
        let waits: Vec<u64> = (0..6).map(|_| requeue.failed().as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 20, 20]);
        requeue.succeeded();
        assert_eq!(requeue.failed(), FIRST_RETRY);
        // A resync shorter than the first retry does not make the retry earlier.
        let mut short = Requeue::new(Duration::from_secs(1));
        assert_eq!([short.failed(), short.failed()], [FIRST_RETRY, FIRST_RETRY]);
    }

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
