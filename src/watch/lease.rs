//! Leader election with a coordination.k8s.io Lease, so that of several replicas only
//! one writes. The holder renews every third of the lease's duration; another replica
//! takes the Lease over once it has gone unrenewed for the whole duration (the holder
//! stopped or stalled). A holder that cannot renew in time stops writing on its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};

pub const LEASE_DURATION: Duration = Duration::from_secs(15);

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    leading: Arc<AtomicBool>,
    duration: Duration,
}

impl Elector {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: String,
        duration: Duration,
    ) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity,
            leading: Arc::new(AtomicBool::new(false)),
            duration,
        }
    }

    pub fn leading(&self) -> Arc<AtomicBool> {
        self.leading.clone()
    }

    fn fresh_spec(&self, now: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One round: create, renew, or take over the Lease if it may. Returns whether
    /// this replica leads afterwards.
    pub async fn try_acquire_or_renew(&self) -> bool {
        let now = Timestamp::now();
        let leading = match self.api.get_opt(&self.name).await {
            Ok(None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.fresh_spec(now, 0)),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .is_ok()
            }
            Ok(Some(mut lease)) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let holder = spec.holder_identity.clone().unwrap_or_default();
                let renewed = spec.renew_time.as_ref().map(|t| t.0.as_second());
                let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
                let expired = renewed.is_none_or(|t| t + duration < now.as_second());
                if holder == self.identity {
                    let mut renewed_spec = spec.clone();
                    renewed_spec.renew_time = Some(MicroTime(now));
                    lease.spec = Some(renewed_spec);
                } else if holder.is_empty() || expired {
                    let transitions = spec.lease_transitions.unwrap_or(0) + 1;
                    lease.spec = Some(self.fresh_spec(now, transitions));
                } else {
                    self.leading.store(false, Ordering::SeqCst);
                    return false;
                }
                // The resourceVersion in the body makes this a compare-and-swap: of two
                // replicas taking over at once, one gets 409 and stays a follower.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                    .is_ok()
            }
            Err(_) => false,
        };
        self.leading.store(leading, Ordering::SeqCst);
        leading
    }

    /// Keeps the Lease until `stop` fires, then releases it so another replica can take
    /// over at once.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let renew_every = self.duration / 3;
        let mut last_success = tokio::time::Instant::now();
        loop {
            if self.try_acquire_or_renew().await {
                last_success = tokio::time::Instant::now();
            } else if last_success.elapsed() >= self.duration {
                self.leading.store(false, Ordering::SeqCst);
            }
            tokio::select! {
                _ = tokio::time::sleep(renew_every) => {}
                _ = stop.changed() => break,
            }
        }
        self.release().await;
    }

    async fn release(&self) {
        if !self.leading.swap(false, Ordering::SeqCst) {
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
