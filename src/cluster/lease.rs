//! Leader election on a coordination.k8s.io Lease, so that of several replicas only
//! one writes, with a [`Fence`] every write passes.
//!
//! The rules are client-go's (`leaderelection`), written here rather than taken from a
//! crate because the fence must be checked by the apply itself, before each request,
//! against this process's own clock:
//!
//! - Time is measured only on this machine's monotonic clock. The other replica's
//!   `renewTime` is never compared with the local clock (clocks skew); a candidate
//!   takes a Lease over only after it has seen the same record, unchanged, for a whole
//!   lease duration — counted from when the first answer showing it arrived, and up to
//!   before the latest look was sent, so a slow answer only makes it wait longer.
//! - The holder renews every retry period and may write only until its last successful
//!   renewal (timed from before the request was sent) plus the renew deadline, which is
//!   shorter than the lease duration: it stops writing before anyone may take over.
//! - After a stall (a paused process, a frozen API server) the fence is closed by time
//!   alone, and only a fresh renewal, which reads the Lease first, opens it again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};

/// The Lease's timing: client-go's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a record must stay unchanged before another replica takes it over.
    pub lease_duration: Duration,
    /// How long after its last renewal the holder may still write. Shorter than
    /// `lease_duration`, so the holder has stopped before anyone may take over.
    pub renew_deadline: Duration,
    /// How often the holder renews and a candidate looks.
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// A write was refused: this replica does not hold the Lease with margin now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not written: this replica does not hold the Lease now (another may have taken over)")]
pub struct Fenced;

/// Whether this replica may write, checked before every write request. Shared by the
/// elector (which opens it after each renewal) and every writer.
#[derive(Debug, Clone, Default)]
pub struct Fence {
    /// Writes are allowed until this instant (monotonic clock).
    until: Arc<Mutex<Option<Instant>>>,
}

impl Fence {
    pub fn check(&self) -> Result<(), Fenced> {
        if self.is_open() { Ok(()) } else { Err(Fenced) }
    }

    pub fn is_open(&self) -> bool {
        self.lock().is_some_and(|until| Instant::now() < until)
    }

    fn open_until(&self, until: Instant) {
        *self.lock() = Some(until);
    }

    fn close(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.until.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a candidate saw of another holder's record, and since when (on its own clock).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    holder: String,
    renew_time: Option<String>,
    transitions: i32,
    resource_version: Option<String>,
}

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    fence: Fence,
    observed: Observation,
}

/// The other holder's record as this replica has seen it, and since when.
#[derive(Debug, Default)]
struct Observation {
    last: Option<(Record, Instant)>,
}

impl Observation {
    /// How long `record` has been seen unchanged, as of `sent`, when the look that
    /// read it was sent at `sent` and answered at `received`. A record counts as seen
    /// from when the first answer showing it arrived, not from when that look was sent:
    /// an answer that took long (a busy runtime between the clock and the send, a slow
    /// connection) shows the Lease as it was at its end, and counting from the request
    /// would let a candidate take over before the holder's deadline.
    fn unchanged_for(&mut self, record: Record, received: Instant, sent: Instant) -> Duration {
        let since = match &self.last {
            Some((seen, since)) if *seen == record => *since,
            _ => {
                self.last = Some((record, received));
                received
            }
        };
        sent.saturating_duration_since(since)
    }
}

/// What one look at the Lease found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// This replica holds it, renewed now.
    Leading,
    /// Another replica holds it.
    Following,
    /// The Lease could not be read or written; the fence stays as it was and closes on
    /// its own at the deadline.
    Unknown,
}

impl Elector {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: String,
        timing: Timing,
    ) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity,
            timing,
            fence: Fence::default(),
            observed: Observation::default(),
        }
    }

    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: i32::try_from(self.timing.lease_duration.as_secs()).ok(),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One look: create, renew, or take over the Lease when the rules allow.
    pub async fn try_acquire_or_renew(&mut self) -> Look {
        // Timed from before the request: the server's renewal is no earlier than this.
        let sent = Instant::now();
        let now = Timestamp::now();
        let written = match self.api.get_opt(&self.name).await {
            Err(_) => return Look::Unknown,
            Ok(None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(now, None, 0)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Ok(Some(mut lease)) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let holder = spec.holder_identity.clone().unwrap_or_default();
                let record = Record {
                    holder: holder.clone(),
                    renew_time: spec.renew_time.as_ref().map(|t| t.0.to_string()),
                    transitions: spec.lease_transitions.unwrap_or(0),
                    resource_version: lease.metadata.resource_version.clone(),
                };
                let transitions = record.transitions;
                let unchanged_for = self.observed.unchanged_for(record, Instant::now(), sent);
                let duration = spec
                    .lease_duration_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .map(Duration::from_secs)
                    .unwrap_or(self.timing.lease_duration)
                    .max(self.timing.lease_duration);
                if holder == self.identity {
                    lease.spec = Some(self.spec(now, spec.acquire_time, transitions));
                } else if holder.is_empty() || unchanged_for >= duration {
                    lease.spec = Some(self.spec(now, None, transitions + 1));
                } else {
                    self.fence.close();
                    return Look::Following;
                }
                // The resourceVersion in the body makes this a compare-and-swap: of two
                // replicas taking over at once, one gets 409 and stays a follower.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => {
                self.fence.open_until(sent + self.timing.renew_deadline);
                Look::Leading
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                self.fence.close();
                Look::Following
            }
            Err(_) => Look::Unknown,
        }
    }

    /// Keeps looking every retry period until `stop` fires, then releases the Lease so
    /// another replica can take over at once.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            self.try_acquire_or_renew().await;
            tokio::select! {
                _ = tokio::time::sleep(self.timing.retry_period) => {}
                _ = stop.changed() => break,
            }
        }
        self.release().await;
    }

    async fn release(&self) {
        let held = self.fence.is_open();
        self.fence.close();
        if !held {
            return;
        }
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await
            && lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                == Some(self.identity.as_str())
        {
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
                spec.renew_time = None;
            }
            let _ = self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(version: &str) -> Record {
        Record {
            holder: "other".into(),
            renew_time: Some(format!("renewed as {version}")),
            transitions: 1,
            resource_version: Some(version.into()),
        }
    }

    #[test]
    fn a_record_counts_from_when_its_answer_arrived() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut observation = Observation::default();
        // Asked at 0, answered 3.5 s later (the holder's last renewal, just made).
        assert_eq!(
            observation.unchanged_for(record("7"), at(3_500), at(0)),
            Duration::ZERO
        );
        // The next look, sent at 4 s, finds it unchanged: seen for half a second, not
        // four (counting from the first request would take a 4 s Lease over now).
        assert_eq!(
            observation.unchanged_for(record("7"), at(4_010), at(4_000)),
            Duration::from_millis(500)
        );
        // A new record starts the count again.
        assert_eq!(
            observation.unchanged_for(record("8"), at(4_600), at(4_500)),
            Duration::ZERO
        );
        assert_eq!(
            observation.unchanged_for(record("8"), at(8_700), at(8_600)),
            Duration::from_millis(4_000)
        );
    }

    #[test]
    fn the_fence_closes_by_time_alone() {
        let fence = Fence::default();
        assert_eq!(fence.check(), Err(Fenced), "closed until a renewal");
        fence.open_until(Instant::now() + Duration::from_secs(60));
        assert_eq!(fence.check(), Ok(()));
        fence.open_until(Instant::now() - Duration::from_millis(1));
        assert_eq!(fence.check(), Err(Fenced), "a deadline passed is closed");
    }

    #[test]
    fn the_holder_stops_before_anyone_may_take_over() {
        let timing = Timing::default();
        assert!(timing.renew_deadline < timing.lease_duration);
        assert!(timing.retry_period * 3 <= timing.renew_deadline);
    }
}
