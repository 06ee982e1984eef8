//! An adversary against the daemon (product contract §7): a seeded generator of event
//! sequences run against two `stowage watch --leader-elect` replicas on the real API
//! server, with the invariants checked as it goes.
//!
//! Events: any input (the file, the base it extends, the credential file) rewritten
//! atomically, in place in chunks with pauses around and beyond the steadiness window
//! and the quiet period, truncated first, or swapped in through a re-pointed symlink;
//! the file deleted and brought back; a field edited by another manager; the leader
//! stopped (SIGSTOP) for longer than the Lease and resumed; a second file of the same
//! owner planned beside the first.
//!
//! Invariants:
//! 1. nothing is deleted unless a complete input set lacks it (the one being written,
//!    or the one before it);
//! 2. the credential Secret never holds bytes that no complete credential file held;
//! 3. only the Lease holder writes: every write in the API server's audit log comes
//!    from the replica the last Lease write before it named;
//! 4. at most one replica says it leads at any time, and in the end the cluster
//!    equals the last complete input set and both replicas are ready.
//!
//! A pause beyond the quiet period leaves the file cut where it cannot be read as a
//! whole one (inside a quoted string, in the middle of a key): a writer that rests
//! longer than the quiet period on a readable half-file is indistinguishable from one
//! that finished, and no daemon could tell.
//!
//! Each run prints its seed and step count; `STOWAGE_ADVERSARY_SEED` replays a seed,
//! `STOWAGE_ADVERSARY_SECONDS` sets the budget (CI: 150 s; `tests/run adversary
//! --minutes N` runs a longer campaign).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{CANARY, Options, TestCluster, cluster, eventually, good_secret, stack};
use crate::support::Rng;
use crate::watch::{Daemon, spawn_with};
use stowage_test_harness::Proxy;
use stowage_test_harness::hooks::{Effect, Fault, Route, Verb};

/// The daemons' timing, shortened so that a campaign sees many rounds.
const QUIET: Duration = Duration::from_secs(2);
const LEASE: Duration = Duration::from_secs(4);
const RENEW: Duration = Duration::from_secs(3);
const RETRY: Duration = Duration::from_millis(500);

/// The optional objects a complete input set may or may not declare.
const OPTIONAL: [&str; 3] = ["extra-a", "extra-b", "weekly"];

/// One complete input set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct World {
    /// Which of `OPTIONAL` the file declares.
    optional: BTreeSet<&'static str>,
    /// Which credential file (0 or 1).
    credential: usize,
    /// Which base (0 or 1: the DR location's validation frequency).
    base: usize,
}

impl World {
    /// The objects it declares, as `Kind/name`.
    fn objects(&self) -> BTreeSet<String> {
        let mut objects: BTreeSet<String> = [
            "BackupStorageLocation/primary",
            "BackupStorageLocation/dr",
            "Secret/s3-credentials",
            "Schedule/nightly-primary",
            "Schedule/nightly-dr",
        ]
        .into_iter()
        .map(str::to_string)
        .collect();
        for optional in &self.optional {
            objects.insert(match *optional {
                "weekly" => "Schedule/weekly".to_string(),
                location => format!("BackupStorageLocation/{location}"),
            });
        }
        objects
    }
}

/// The campaign's folder and the texts of every input of every world.
struct Inputs<'a> {
    live: &'a TestCluster,
}

impl Inputs<'_> {
    fn dir(&self) -> &Path {
        self.live.dir.path()
    }

    fn base_text(&self, world: &World) -> String {
        let frequency = ["1m", "2m"][world.base];
        format!(
            "{}{}{}",
            self.live.header(),
            self.live.location("primary", "primary", "default = true\n"),
            self.live.location(
                "dr",
                "dr",
                &format!("validation_frequency = \"{frequency}\"\n")
            )
        )
    }

    fn main_text(&self, world: &World) -> String {
        let mut text = String::from("extends = \"base.toml\"\n\n");
        for location in ["extra-a", "extra-b"] {
            if world.optional.contains(location) {
                text.push_str(&self.live.location(location, location, ""));
            }
        }
        text.push_str(
            "[schedules.nightly]\ncron = \"0 1 * * *\"\nstorage_locations = [\"primary\", \"dr\"]\nttl = \"720h\"\n\n",
        );
        if world.optional.contains("weekly") {
            text.push_str(
                "[schedules.weekly]\ncron = \"0 3 * * 0\"\nstorage_location = \"primary\"\n\n",
            );
        }
        text
    }

    fn credential_text(&self, which: usize) -> String {
        // Both complete and valid; they differ in a comment, so the Secret's bytes
        // tell which was written.
        crate::cluster::s3_credentials(&good_secret()).replace(
            &format!("# {CANARY}\n"),
            &format!("# {CANARY} variant {which}\n"),
        )
    }
}

/// What the recorder saw: every deletion, and every value the credential Secret held.
#[derive(Default)]
struct Seen {
    deletions: Vec<(Instant, String)>,
    secret_values: Vec<(Instant, Vec<u8>)>,
}

/// Watches the namespace's managed kinds for the whole campaign.
fn record(
    namespace: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Arc<Mutex<Seen>>, std::thread::JoinHandle<()>) {
    use futures::StreamExt;
    use kube::api::{Api, DynamicObject};
    use kube::core::{ApiResource, GroupVersionKind};
    use kube::runtime::watcher;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sink = seen.clone();
    let handle = std::thread::spawn(move || {
        stack().block_on(async move {
            let kinds = [
                (
                    "velero.io",
                    "BackupStorageLocation",
                    "backupstoragelocations",
                ),
                ("velero.io", "Schedule", "schedules"),
                ("", "Secret", "secrets"),
            ];
            let mut streams = Vec::new();
            for (group, kind, plural) in kinds {
                let resource = ApiResource::from_gvk_with_plural(
                    &GroupVersionKind::gvk(group, "v1", kind),
                    plural,
                );
                let api: Api<DynamicObject> =
                    Api::namespaced_with(stack().client(), &namespace, &resource);
                let kind = kind.to_string();
                streams.push(
                    watcher(api, watcher::Config::default())
                        .map(move |event| (kind.clone(), event))
                        .boxed(),
                );
            }
            let mut all = futures::stream::select_all(streams);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let next = tokio::time::timeout(Duration::from_millis(200), all.next()).await;
                let Ok(Some((kind, Ok(event)))) = next else {
                    continue;
                };
                let now = Instant::now();
                let mut seen = sink.lock().unwrap();
                match event {
                    watcher::Event::Delete(object) => {
                        let name = object.metadata.name.clone().unwrap_or_default();
                        seen.deletions.push((now, format!("{kind}/{name}")));
                    }
                    watcher::Event::Apply(object) | watcher::Event::InitApply(object)
                        if kind == "Secret"
                            && object.metadata.name.as_deref() == Some("s3-credentials") =>
                    {
                        use base64::Engine as _;
                        if let Some(data) = object.data["data"]["cloud"].as_str() {
                            let bytes = base64::engine::general_purpose::STANDARD
                                .decode(data)
                                .unwrap_or_default();
                            seen.secret_values.push((now, bytes));
                        }
                    }
                    _ => {}
                }
            }
        })
    });
    (seen, handle)
}

/// A step the adversary took, for the report of a violation.
#[derive(Debug)]
struct Step {
    at: Duration,
    what: String,
}

struct Campaign<'a> {
    rng: Rng,
    seed: u64,
    inputs: Inputs<'a>,
    /// The complete worlds written, in order, each with when its writing began.
    worlds: Vec<(Instant, World)>,
    replicas: Vec<Daemon>,
    steps: Vec<Step>,
    started: Instant,
    versions: usize,
    /// When another manager last edited a field the file declares: a fight over it
    /// may keep the leader not ready until a window after that.
    last_edit: Option<Instant>,
}

impl Campaign<'_> {
    fn now(&self) -> &World {
        &self.worlds.last().expect("a first world").1
    }

    fn note(&mut self, what: String) {
        eprintln!(
            "adversary [{:>6.1}s] {what}",
            self.started.elapsed().as_secs_f64()
        );
        self.steps.push(Step {
            at: self.started.elapsed(),
            what,
        });
    }

    fn fail(&self, violation: &str) -> ! {
        let history: Vec<String> = self
            .steps
            .iter()
            .map(|s| format!("  {:>6.1}s {}", s.at.as_secs_f64(), s.what))
            .collect();
        panic!(
            "adversary: {violation}\nseed {} (STOWAGE_ADVERSARY_SEED={} replays), after {} steps:\n{}",
            self.seed,
            self.seed,
            self.steps.len(),
            history.join("\n")
        );
    }

    /// Writes `text` to `path` as one of the ways writers do; `unreadable_at` gives the
    /// offsets where the text cut there cannot be read as a whole file (a long pause is
    /// taken only there).
    fn write(&mut self, path: &Path, text: &str, unreadable_at: &[usize]) {
        let how = self.rng.below(4);
        match how {
            0 => {
                let temporary = path.with_extension("swp");
                std::fs::write(&temporary, text).unwrap();
                std::fs::rename(&temporary, path).unwrap();
                self.note(format!("{}: written whole, renamed over", name_of(path)));
            }
            1 | 2 => {
                // In place, in 2 to 4 chunks; pauses short (under the quiet period)
                // anywhere, long (beyond it) only where the cut is unreadable.
                let chunks = 2 + self.rng.below(3);
                let mut cuts: Vec<(usize, Duration)> = Vec::new();
                for _ in 1..chunks {
                    let long = self.rng.below(3) == 0 && !unreadable_at.is_empty();
                    let (cut, pause) = if long {
                        let cut = *self.rng.pick(unreadable_at);
                        let pause =
                            QUIET + Duration::from_millis(200 + self.rng.below(1800) as u64);
                        (cut, pause)
                    } else {
                        // Where a cut hurts most: at the end of a line (the rest of the
                        // file missing, what is there readable), else anywhere.
                        let line_ends: Vec<usize> =
                            text.match_indices('\n').map(|(i, _)| i + 1).collect();
                        let cut = if self.rng.below(2) == 0 && !line_ends.is_empty() {
                            *self.rng.pick(&line_ends)
                        } else {
                            self.rng.below(text.len().max(1))
                        };
                        let pause =
                            Duration::from_millis([150, 600, 950, 1200, 1600][self.rng.below(5)]);
                        (cut, pause)
                    };
                    cuts.push((cut, pause));
                }
                cuts.sort_by_key(|(cut, _)| *cut);
                cuts.dedup_by_key(|(cut, _)| *cut);
                let truncate_first = how == 2;
                self.note(format!(
                    "{}: written in place{} in {} chunks, pauses {:?}",
                    name_of(path),
                    if truncate_first {
                        " after truncating"
                    } else {
                        ""
                    },
                    cuts.len() + 1,
                    cuts.iter().map(|(_, p)| p.as_millis()).collect::<Vec<_>>()
                ));
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(path)
                    .unwrap();
                if truncate_first {
                    file.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(300));
                }
                let mut written = 0;
                for (cut, pause) in cuts {
                    file.write_all(&text.as_bytes()[written..cut]).unwrap();
                    file.flush().unwrap();
                    written = cut;
                    std::thread::sleep(pause);
                }
                file.write_all(&text.as_bytes()[written..]).unwrap();
                file.flush().unwrap();
            }
            _ => {
                // Through a link: the new version written whole elsewhere, then the
                // link re-pointed (made here if the file was a plain file).
                let versions = self.inputs.dir().join("versions");
                std::fs::create_dir_all(&versions).unwrap();
                self.versions += 1;
                let name = format!(
                    "{}.{}",
                    self.versions,
                    path.extension().and_then(|e| e.to_str()).unwrap_or("toml")
                );
                let target = versions.join(&name);
                std::fs::write(&target, text).unwrap();
                let link = path.with_extension("link");
                let _ = std::fs::remove_file(&link);
                // Relative paths inside a file resolve from the link's folder, so the
                // link lives beside the other inputs and points into versions/.
                std::os::unix::fs::symlink(&target, &link).unwrap();
                std::fs::rename(&link, path).unwrap();
                self.note(format!(
                    "{}: link re-pointed to versions/{name}",
                    name_of(path)
                ));
            }
        }
    }

    /// Moves to `world`, writing the inputs that differ, in a random order.
    fn move_to(&mut self, world: World) {
        let before = self.now().clone();
        self.worlds.push((Instant::now(), world.clone()));
        let mut writes: Vec<(PathBuf, String, Vec<usize>)> = Vec::new();
        if before.optional != world.optional {
            let text = self.inputs.main_text(&world);
            writes.push((
                self.inputs.dir().join("stowage.toml"),
                text.clone(),
                in_strings(&text),
            ));
        }
        if before.base != world.base {
            let text = self.inputs.base_text(&world);
            writes.push((
                self.inputs.dir().join("base.toml"),
                text.clone(),
                in_strings(&text),
            ));
        }
        if before.credential != world.credential {
            let text = self.inputs.credential_text(world.credential);
            writes.push((
                self.inputs.dir().join("secrets/s3.ini"),
                text.clone(),
                in_key_names(&text),
            ));
        }
        if writes.len() > 1 && self.rng.below(2) == 0 {
            writes.reverse();
        }
        self.note(format!("to {world:?}"));
        for (path, text, unreadable) in writes {
            self.write(&path, &text, &unreadable);
        }
    }

    fn random_world(&mut self) -> World {
        World {
            optional: OPTIONAL
                .iter()
                .copied()
                .filter(|_| self.rng.below(2) == 0)
                .collect(),
            credential: self.rng.below(2),
            base: self.rng.below(2),
        }
    }

    /// The replica whose identity the Lease names, if any.
    fn leader(&self) -> Option<usize> {
        let lease =
            self.inputs
                .live
                .ns
                .get("coordination.k8s.io/v1", "Lease", "stowage-default")?;
        let holder = lease["spec"]["holderIdentity"].as_str()?.to_string();
        self.replicas
            .iter()
            .position(|r| holder.ends_with(&format!("-{}", r.child.id())))
    }

    /// Invariants 1 and 2, from what the recorder saw so far.
    fn check_seen(&self, seen: &Seen) {
        for (at, object) in &seen.deletions {
            // The worlds whose writing had begun by then: the last of them and the one
            // before it may be what the daemon read.
            let begun: Vec<&World> = self
                .worlds
                .iter()
                .filter(|(start, _)| start <= at)
                .map(|(_, world)| world)
                .collect();
            let candidates = &begun[begun.len().saturating_sub(2)..];
            if !candidates
                .iter()
                .any(|world| !world.objects().contains(object))
            {
                self.fail(&format!(
                    "{object} was deleted {:.1}s in, but every complete input set then declared it",
                    at.duration_since(self.started).as_secs_f64()
                ));
            }
        }
        let allowed: Vec<Vec<u8>> = (0..2)
            .map(|which| self.inputs.credential_text(which).into_bytes())
            .collect();
        for (at, value) in &seen.secret_values {
            if !allowed.contains(value) {
                self.fail(&format!(
                    "the credential Secret held {} bytes that no complete credential file held, {:.1}s in",
                    value.len(),
                    at.duration_since(self.started).as_secs_f64()
                ));
            }
        }
    }

    /// Invariant 4's first half: of the replicas that answer, at most one says it
    /// leads.
    fn check_one_leader(&self) {
        let leading: Vec<usize> = self
            .replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| metric_of(r, "stowage_leader") == Some(1.0))
            .map(|(i, _)| i)
            .collect();
        if leading.len() > 1 {
            self.fail(&format!("replicas {leading:?} both say they lead"));
        }
    }
}

fn name_of(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Offsets inside a quoted string: a TOML file cut there does not parse.
fn in_strings(text: &str) -> Vec<usize> {
    text.match_indices('"')
        .step_by(2)
        .map(|(i, _)| i + 1)
        .collect()
}

/// Offsets in the middle of a key name of an INI file: cut there, the last line has no
/// `=`, and the credential is not in its provider's format.
fn in_key_names(text: &str) -> Vec<usize> {
    text.match_indices("aws_").map(|(i, _)| i + 2).collect()
}

/// A replica's metric, or `None` when it does not answer (stopped) or lacks it.
fn metric_of(daemon: &Daemon, name: &str) -> Option<f64> {
    let stream = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], daemon.port)),
        Duration::from_millis(300),
    )
    .ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    let mut stream = stream;
    use std::io::Read as _;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// Invariant 3, from the API server's audit log: every write in `namespace` by a
/// replica came while the last Lease write before it named that replica.
fn check_fencing(campaign: &Campaign<'_>, namespace: &str, users: &[String]) {
    let log = stack().dir.join("audit.log");
    let text = std::fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("the API server's audit log {}: {e}", log.display()));
    let mut events: Vec<Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| e["objectRef"]["namespace"] == namespace)
        .filter(|e| e["stage"] == "ResponseComplete")
        .collect();
    assert!(!events.is_empty(), "no audit events for {namespace}");
    events.sort_by(|a, b| {
        a["stageTimestamp"]
            .as_str()
            .cmp(&b["stageTimestamp"].as_str())
    });
    // Which replica (user) each holder identity belongs to: the user that wrote it.
    let mut holders: Vec<(String, Option<String>)> = Vec::new(); // (completed, holder user)
    let mut identity_of_user: std::collections::BTreeMap<String, String> = Default::default();
    let user_of = |event: &Value| -> String {
        event["impersonatedUser"]["username"]
            .as_str()
            .or_else(|| event["user"]["username"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    for event in &events {
        let user = user_of(event);
        let user = user.as_str();
        if event["objectRef"]["resource"] != "leases" || !users.iter().any(|u| u == user) {
            continue;
        }
        let code = event["responseStatus"]["code"].as_u64().unwrap_or(0);
        if !(200..300).contains(&code) {
            continue;
        }
        let holder = event["responseObject"]["spec"]["holderIdentity"]
            .as_str()
            .filter(|h| !h.is_empty())
            .map(str::to_string);
        if let Some(identity) = &holder {
            identity_of_user.insert(user.to_string(), identity.clone());
        }
        let holder_user = holder.map(|_| user.to_string());
        holders.push((
            event["stageTimestamp"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            holder_user,
        ));
    }
    assert!(
        !holders.is_empty(),
        "no Lease writes by the replicas in the audit log"
    );
    let mut writes = 0;
    for event in &events {
        let user = user_of(event);
        let user = user.as_str();
        let resource = event["objectRef"]["resource"].as_str().unwrap_or_default();
        if resource == "leases" || !users.iter().any(|u| u == user) {
            continue;
        }
        let code = event["responseStatus"]["code"].as_u64().unwrap_or(0);
        if !(200..300).contains(&code) {
            continue;
        }
        writes += 1;
        let received = event["requestReceivedTimestamp"]
            .as_str()
            .unwrap_or_default();
        let holder = holders
            .iter()
            .rev()
            .find(|(completed, _)| completed.as_str() < received)
            .and_then(|(_, holder)| holder.clone());
        if holder.as_deref() != Some(user) {
            campaign.fail(&format!(
                "{} {} {}/{} by {user} at {received}, while the Lease named {}",
                event["verb"].as_str().unwrap_or_default(),
                resource,
                namespace,
                event["objectRef"]["name"].as_str().unwrap_or_default(),
                holder.as_deref().unwrap_or("nobody")
            ));
        }
    }
    eprintln!(
        "adversary: {writes} writes by the replicas, each by the Lease holder ({} Lease writes)",
        holders.len()
    );
}

/// Two ServiceAccounts with the deploy example's Role, one per replica, and a proxy
/// for each that sends its requests as that account (impersonated), so RBAC applies,
/// the audit log tells the replicas apart, and the adversary can see a replica's
/// requests and freeze its API server.
fn replica_proxies(live: &TestCluster) -> Vec<(String, Proxy, PathBuf)> {
    let ns = live.namespace().to_string();
    let deploy = crate::support::examples_dir().join("deploy");
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(&std::fs::read_to_string(deploy.join("rbac.yaml")).unwrap())
            .unwrap();
    for object in crate::watch::deploy_rbac(documents, &ns) {
        stack().apply(object, "kubectl-create").unwrap();
    }
    let mut replicas = Vec::new();
    for replica in ["replica-a", "replica-b"] {
        stack()
            .create(
                json!({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": replica, "namespace": ns}}),
                "kubectl-create",
            )
            .unwrap();
        stack()
            .create(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                    "metadata": {"name": replica, "namespace": ns},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "stowage"},
                    "subjects": [{"kind": "ServiceAccount", "name": replica, "namespace": ns}]}),
                "kubectl-create",
            )
            .unwrap();
        let proxy = Proxy::start_as_service_account(stack(), &ns, replica);
        let kubeconfig = live.dir.path().join(format!("{replica}.kubeconfig"));
        std::fs::write(&kubeconfig, proxy.kubeconfig(&ns)).unwrap();
        replicas.push((
            format!("system:serviceaccount:{ns}:{replica}"),
            proxy,
            kubeconfig,
        ));
    }
    replicas
}

fn start_replica(live: &TestCluster, kubeconfig: &Path, name: &str) -> Daemon {
    start_replica_with(live, kubeconfig, name, "3s")
}

fn start_replica_with(
    live: &TestCluster,
    kubeconfig: &Path,
    name: &str,
    request_timeout: &str,
) -> Daemon {
    let mut command = live.command_with(kubeconfig);
    command.env("HOSTNAME", name);
    spawn_with(
        command,
        &[
            "--leader-elect",
            "--leader-elect-lease-duration",
            &format!("{}ms", LEASE.as_millis()),
            "--leader-elect-renew-deadline",
            &format!("{}ms", RENEW.as_millis()),
            "--leader-elect-retry-period",
            &format!("{}ms", RETRY.as_millis()),
            "--quiet-period",
            &format!("{}ms", QUIET.as_millis()),
            "--request-timeout",
            request_timeout,
            // Bucket checks make each plan take as long as it does for users, so a
            // stop lands between the leadership check and the writes more often.
            "--bucket-timeout",
            "5",
        ],
    )
}

#[test]
fn the_daemon_keeps_its_invariants_under_a_generated_disorder() {
    let seed = std::env::var("STOWAGE_ADVERSARY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(Rng::fresh_seed);
    let budget = Duration::from_secs(
        std::env::var("STOWAGE_ADVERSARY_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(150),
    );
    eprintln!(
        "adversary: seed {seed}, budget {} s (STOWAGE_ADVERSARY_SEED={seed} replays)",
        budget.as_secs()
    );
    let live = cluster("adversary", Options::default());
    let identities = replica_proxies(&live);
    let users: Vec<String> = identities.iter().map(|(user, _, _)| user.clone()).collect();
    let first = World {
        optional: BTreeSet::from(["extra-a"]),
        credential: 0,
        base: 0,
    };
    let inputs = Inputs { live: &live };
    std::fs::write(live.dir.path().join("base.toml"), inputs.base_text(&first)).unwrap();
    std::fs::write(
        live.dir.path().join("stowage.toml"),
        inputs.main_text(&first),
    )
    .unwrap();
    live.write_credentials(&inputs.credential_text(first.credential));

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (seen, recorder) = record(live.namespace().to_string(), stop.clone());
    let replicas = identities
        .iter()
        .zip(["replica-a", "replica-b"])
        .map(|((_, _, kubeconfig), name)| start_replica(&live, kubeconfig, name))
        .collect();
    let proxies: Vec<&Proxy> = identities.iter().map(|(_, proxy, _)| proxy).collect();
    let mut campaign = Campaign {
        rng: Rng::new(seed),
        seed,
        inputs,
        worlds: vec![(Instant::now(), first.clone())],
        replicas,
        steps: Vec::new(),
        started: Instant::now(),
        versions: 0,
        last_edit: None,
    };
    eventually(
        "the first world in the cluster",
        Duration::from_secs(60),
        || live.bsl("extra-a").and(live.schedule("nightly-dr")),
    );

    while campaign.started.elapsed() < budget {
        match campaign.rng.below(12) {
            0..=4 => {
                let world = campaign.random_world();
                campaign.move_to(world);
            }
            5 => {
                // The file deleted for a while, then back as it was.
                let path = live.dir.path().join("stowage.toml");
                let text = std::fs::read(&path).ok();
                let away = Duration::from_millis(500 + campaign.rng.below(2500) as u64);
                campaign.note(format!("stowage.toml: deleted for {} ms", away.as_millis()));
                let _ = std::fs::remove_file(&path);
                std::thread::sleep(away);
                let text =
                    text.unwrap_or_else(|| campaign.inputs.main_text(campaign.now()).into_bytes());
                let temporary = path.with_extension("swp");
                std::fs::write(&temporary, text).unwrap();
                std::fs::rename(&temporary, &path).unwrap();
            }
            6 => {
                // Another manager edits a field the file declares.
                let (kind, name, patch) = *campaign.rng.pick(&[
                    (
                        "BackupStorageLocation",
                        "primary",
                        r#"{"spec":{"accessMode":"ReadOnly"}}"#,
                    ),
                    ("Schedule", "nightly-dr", r#"{"spec":{"paused":true}}"#),
                    (
                        "BackupStorageLocation",
                        "dr",
                        r#"{"spec":{"objectStorage":{"prefix":"elsewhere"}}}"#,
                    ),
                ]);
                campaign.note(format!("kubectl edit {kind}/{name}: {patch}"));
                campaign.last_edit = Some(Instant::now());
                let _ = live.ns.merge_patch(
                    "velero.io/v1",
                    kind,
                    name,
                    serde_json::from_str(patch).unwrap(),
                    "kubectl-edit",
                );
            }
            7 | 8 => {
                // The leader stopped for longer than the Lease, then resumed.
                if let Some(leader) = campaign.leader() {
                    // Half the time while a round of the leader's is likely in flight:
                    // just after an edit, once it is steady and being planned.
                    let missing: Vec<&'static str> = OPTIONAL
                        .iter()
                        .copied()
                        .filter(|o| !campaign.now().optional.contains(o))
                        .collect();
                    if campaign.rng.below(3) > 0 && !missing.is_empty() {
                        // Creates only, which go out in the first round (nothing
                        // waits for the quiet period), so the stop lands in a round
                        // that writes.
                        let mut world = campaign.now().clone();
                        world.optional.insert(*campaign.rng.pick(&missing));
                        let path = live.dir.path().join("stowage.toml");
                        let text = campaign.inputs.main_text(&world);
                        campaign.worlds.push((
                            Instant::now(),
                            World {
                                optional: world.optional,
                                ..campaign.now().clone()
                            },
                        ));
                        let temporary = path.with_extension("swp");
                        let hooks = proxies[leader].hooks();
                        hooks.clear();
                        std::fs::write(&temporary, text).unwrap();
                        std::fs::rename(&temporary, &path).unwrap();
                        // Stopped as its round reads the cluster: after the
                        // leadership check, before the writes.
                        let deadline = Instant::now() + Duration::from_secs(5);
                        while Instant::now() < deadline && hooks.count(Verb::List, "schedules") == 0
                        {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        campaign.note(
                            "stowage.toml: renamed over; the leader stopped as it plans"
                                .to_string(),
                        );
                    }
                    let pid = campaign.replicas[leader].child.id().to_string();
                    let paused =
                        LEASE + Duration::from_millis(500 + campaign.rng.below(3000) as u64);
                    campaign.note(format!(
                        "replica {leader} (the leader) stopped for {} ms",
                        paused.as_millis()
                    ));
                    std::process::Command::new("kill")
                        .args(["-STOP", &pid])
                        .status()
                        .unwrap();
                    let stopped_at = Instant::now();
                    // The other replica may take over and write meanwhile.
                    if campaign.rng.below(2) == 0 {
                        let world = campaign.random_world();
                        campaign.move_to(world);
                    }
                    std::thread::sleep(paused.saturating_sub(stopped_at.elapsed()));
                    std::process::Command::new("kill")
                        .args(["-CONT", &pid])
                        .status()
                        .unwrap();
                    campaign.note(format!("replica {leader} resumed"));
                }
            }
            10 => {
                // The leader's Lease requests are lost for a while (a partition between
                // it and the Lease): it must stop writing at its renew deadline while
                // the other takes over, whatever changes meanwhile.
                if let Some(leader) = campaign.leader() {
                    let hooks = proxies[leader].hooks();
                    let length = Duration::from_millis(5000 + campaign.rng.below(4000) as u64);
                    campaign.note(format!(
                        "replica {leader}'s Lease requests lost for {} ms",
                        length.as_millis()
                    ));
                    hooks.inject(Fault {
                        route: Route {
                            resource: Some("leases".to_string()),
                            ..Route::default()
                        },
                        times: usize::MAX,
                        effect: Effect::Stall(Duration::from_millis(2500)),
                    });
                    let since = Instant::now();
                    let world = campaign.random_world();
                    campaign.move_to(world);
                    std::thread::sleep(length.saturating_sub(since.elapsed()));
                    hooks.clear_faults();
                }
            }
            9 => {
                // One replica's API server freezes (requests held, none answered) for
                // longer than the request timeout: that replica must say it is not
                // ready within the request timeout and its probe period, and write
                // nothing it is not entitled to.
                let frozen = campaign.rng.below(2);
                let length = Duration::from_millis(5000 + campaign.rng.below(4000) as u64);
                campaign.note(format!(
                    "replica {frozen}'s API server frozen for {} ms",
                    length.as_millis()
                ));
                proxies[frozen].hooks().freeze_for(length);
                let since = Instant::now();
                // Request timeout 3 s, a probe every second.
                let within = Duration::from_millis(4500);
                let mut said = false;
                while since.elapsed() < length {
                    if metric_of(&campaign.replicas[frozen], "stowage_cluster_reachable")
                        == Some(0.0)
                    {
                        said = true;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                if !said || since.elapsed() > within + Duration::from_millis(500) {
                    campaign.fail(&format!(
                        "replica {frozen} still said the API server answered {:.1}s into a freeze",
                        since.elapsed().as_secs_f64()
                    ));
                }
                let (status, _) = campaign.replicas[frozen].get("/readyz");
                if status == 200 {
                    campaign.fail(&format!(
                        "replica {frozen} was ready while its API server was frozen"
                    ));
                }
                std::thread::sleep(length.saturating_sub(since.elapsed()));
            }
            _ => {
                // A second file of the same owner, applied beside the first: refused
                // before anything is planned, nothing written.
                let other = live.dir.path().join("other.toml");
                std::fs::write(&other, campaign.inputs.base_text(campaign.now())).unwrap();
                let out = live
                    .command()
                    .args([
                        "apply",
                        "--auto-approve",
                        "--no-bucket-checks",
                        "-f",
                        "stowage.toml",
                        "other.toml",
                    ])
                    .output()
                    .unwrap();
                live.record(&out);
                let stderr = String::from_utf8_lossy(&out.stderr).into_owned()
                    + &String::from_utf8_lossy(&out.stdout);
                campaign
                    .note("a second file of the same owner applied beside the first".to_string());
                if out.status.code() != Some(1) || !stderr.contains("stowage::owner-conflict") {
                    campaign.fail(&format!(
                        "two files of one owner were not refused: {stderr}"
                    ));
                }
                std::fs::remove_file(&other).unwrap();
            }
        }
        let settle = Duration::from_millis(300 + campaign.rng.below(4000) as u64);
        std::thread::sleep(settle);
        campaign.check_one_leader();
        campaign.check_seen(&seen.lock().unwrap());
    }

    // The end: quiet inputs, both replicas ready, the cluster equal to the last world.
    campaign.note("quiet: waiting for the last world".to_string());
    let last = campaign.now().clone();
    let expected = last.objects();
    eventually(
        "the cluster to equal the last world",
        Duration::from_secs(60),
        || {
            let mut present = BTreeSet::new();
            for (kind, plural_kind) in [
                ("BackupStorageLocation", "velero.io/v1"),
                ("Schedule", "velero.io/v1"),
            ] {
                for object in live.ns.list(plural_kind, kind) {
                    if object["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "stowage" {
                        present.insert(format!(
                            "{kind}/{}",
                            object["metadata"]["name"].as_str().unwrap()
                        ));
                    }
                }
            }
            if live.ns.get("v1", "Secret", "s3-credentials").is_some() {
                present.insert("Secret/s3-credentials".to_string());
            }
            (present == expected).then_some(())
        },
    );
    let plan = live
        .command()
        .args(["plan", "--detailed-exitcode", "--no-bucket-checks"])
        .output()
        .unwrap();
    live.record(&plan);
    if plan.status.code() != Some(0) {
        campaign.fail(&format!(
            "after the quiet period the cluster still differs from the file:\n{}",
            String::from_utf8_lossy(&plan.stdout)
        ));
    }
    // Ready within 30 s, or once a fight the last edit may have started is over (the
    // leader reports a fight until a window after its last takeover).
    let fights_over = campaign
        .last_edit
        .map(|at| at + stowage::engine::fights::WINDOW)
        .unwrap_or_else(Instant::now);
    for (index, replica) in campaign.replicas.iter().enumerate() {
        let deadline = fights_over.max(Instant::now()) + Duration::from_secs(30);
        loop {
            let (status, body) = replica.get("/readyz");
            if status == 200 {
                break;
            }
            if std::time::Instant::now() > deadline {
                campaign.fail(&format!(
                    "replica {index} is not ready 30 s after the quiet period: {status} {body}\n{}",
                    replica.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = recorder.join();
    campaign.check_seen(&seen.lock().unwrap());
    check_fencing(&campaign, live.namespace(), &users);
    eprintln!(
        "adversary: seed {seed}: {} steps, {} worlds, no violation",
        campaign.steps.len(),
        campaign.worlds.len()
    );
}

#[test]
fn a_leader_that_loses_the_lease_in_the_middle_of_an_apply_writes_nothing_more() {
    // Item 8 of "Safe under disorder": a leader stalled longer than the Lease in the
    // middle of a round, then resumed, applied a change while the Lease named the
    // other replica. Here the leader's round writes the credential first (answered
    // seven seconds late) while its Lease requests are lost: its fence closes, the other
    // replica takes over, and the rest of the round (a location to create) must not be
    // written by it. The audit log shows who wrote what when.
    let live = cluster("adversary-mid-apply", Options::default());
    let identities = replica_proxies(&live);
    let users: Vec<String> = identities.iter().map(|(user, _, _)| user.clone()).collect();
    let first = World {
        optional: BTreeSet::new(),
        credential: 0,
        base: 0,
    };
    let inputs = Inputs { live: &live };
    std::fs::write(live.dir.path().join("base.toml"), inputs.base_text(&first)).unwrap();
    std::fs::write(
        live.dir.path().join("stowage.toml"),
        inputs.main_text(&first),
    )
    .unwrap();
    live.write_credentials(&inputs.credential_text(0));
    // Requests may take longer than the Lease here, so that a slow answer, not a
    // timeout, is what keeps the round going past the renew deadline.
    let replicas: Vec<Daemon> = identities
        .iter()
        .zip(["replica-a", "replica-b"])
        .map(|((_, _, kubeconfig), name)| start_replica_with(&live, kubeconfig, name, "15s"))
        .collect();
    let mut campaign = Campaign {
        rng: Rng::new(1),
        seed: 1,
        inputs,
        worlds: vec![(Instant::now(), first.clone())],
        replicas,
        steps: Vec::new(),
        started: Instant::now(),
        versions: 0,
        last_edit: None,
    };
    eventually("the first world", Duration::from_secs(60), || {
        live.schedule("nightly-dr")
    });
    let leader = eventually("a leader", Duration::from_secs(20), || campaign.leader());
    let hooks = identities[leader].1.hooks();
    hooks.clear();
    hooks.inject(Fault {
        route: Route::verb(Verb::Apply).on("secrets"),
        times: 1,
        effect: Effect::Latency(Duration::from_secs(7)),
    });
    // The next world rotates the credential and adds a location: Secrets are written
    // first, locations after them.
    let next = World {
        optional: BTreeSet::from(["extra-a"]),
        credential: 1,
        base: 0,
    };
    std::fs::write(
        live.dir.path().join("secrets/s3.ini"),
        campaign.inputs.credential_text(1),
    )
    .unwrap();
    let path = live.dir.path().join("stowage.toml");
    std::fs::write(path.with_extension("swp"), campaign.inputs.main_text(&next)).unwrap();
    std::fs::rename(path.with_extension("swp"), &path).unwrap();
    campaign.worlds.push((Instant::now(), next));
    eventually(
        "the leader to write the credential",
        Duration::from_secs(30),
        || (hooks.count(Verb::Apply, "secrets") > 0).then_some(()),
    );
    hooks.inject(Fault {
        route: Route {
            resource: Some("leases".to_string()),
            ..Route::default()
        },
        times: usize::MAX,
        effect: Effect::Stall(Duration::from_secs(3)),
    });
    campaign.note(format!(
        "replica {leader}'s Lease requests lost from its credential write on"
    ));
    eventually("the other replica to lead", Duration::from_secs(20), || {
        campaign.leader().filter(|now| *now != leader)
    });
    eventually(
        "extra-a, from the new leader",
        Duration::from_secs(30),
        || live.bsl("extra-a"),
    );
    std::thread::sleep(Duration::from_secs(4));
    hooks.clear_faults();
    check_fencing(&campaign, live.namespace(), &users);
}
