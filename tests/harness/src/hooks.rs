//! What tests see and steer: a log of every request (to count them per verb and
//! resource) and faults injected into the requests that match a route.

use std::sync::Mutex;
use std::time::Duration;

/// The verb of a request, as Kubernetes audit logs name them (`apply` is a patch with
/// the apply content type; discovery covers `/api`, `/apis`, `/version`, `/openapi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Apply,
    Delete,
    Discovery,
}

/// One request as served.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub verb: Verb,
    /// The plural resource name, e.g. `backupstoragelocations`.
    pub resource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub user_agent: String,
    pub status: u16,
}

/// Which requests a fault applies to; unset parts match anything.
#[derive(Debug, Clone, Default)]
pub struct Route {
    pub verb: Option<Verb>,
    pub resource: Option<String>,
    pub name: Option<String>,
}

impl Route {
    pub fn verb(verb: Verb) -> Route {
        Route {
            verb: Some(verb),
            ..Route::default()
        }
    }

    pub fn on(mut self, resource: &str) -> Route {
        self.resource = Some(resource.to_string());
        self
    }

    pub fn named(mut self, name: &str) -> Route {
        self.name = Some(name.to_string());
        self
    }

    fn matches(&self, request: &Request) -> bool {
        self.verb.is_none_or(|v| v == request.verb)
            && self
                .resource
                .as_ref()
                .is_none_or(|r| request.resource.as_ref() == Some(r))
            && self
                .name
                .as_ref()
                .is_none_or(|n| request.name.as_ref() == Some(n))
    }
}

/// What happens to a matching request.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Answered with this status code and a Kubernetes `Status` body; not served.
    Status(u16),
    /// 429 with `Retry-After`; not served.
    TooManyRequests { retry_after_seconds: u64 },
    /// Served at once but answered after this delay: a timeout, for a client that waits
    /// less, whose write nevertheless happened.
    Latency(Duration),
    /// A watch that ends after this many events, as a dropped connection would.
    DropWatch { after_events: usize },
    /// Held this long, then answered 504 without being served: a request lost in a
    /// partition (or to a frozen server) that never lands.
    Stall(Duration),
    /// A cluster on another machine: a read is served by the real server once, and
    /// every later read of the same URL is answered from that recording, after this
    /// delay (the round trip). So a benchmark of many such clusters spends this
    /// machine's CPU on the client alone, as a fleet of remote clusters does. Writes
    /// are forwarded and answered late.
    Remote(Duration),
}

#[derive(Debug, Clone)]
pub struct Fault {
    pub route: Route,
    /// How many matching requests it applies to.
    pub times: usize,
    pub effect: Effect,
}

#[derive(Default)]
pub struct Hooks {
    log: Mutex<Vec<Request>>,
    faults: Mutex<Vec<Fault>>,
    /// Until when requests are held, as a frozen API server (or a partition) holds
    /// them: none is answered before then, and none of them is ever served.
    frozen_until: Mutex<Option<std::time::Instant>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A test that panicked while holding the lock leaves data that is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hooks {
    pub fn record(&self, request: Request) {
        lock(&self.log).push(request);
    }

    pub fn requests(&self) -> Vec<Request> {
        lock(&self.log).clone()
    }

    pub fn clear(&self) {
        lock(&self.log).clear();
    }

    /// How many requests with this verb on this resource were served.
    pub fn count(&self, verb: Verb, resource: &str) -> usize {
        lock(&self.log)
            .iter()
            .filter(|r| r.verb == verb && r.resource.as_deref() == Some(resource))
            .count()
    }

    /// Holds every request that arrives in the next `duration` until it has passed.
    pub fn freeze_for(&self, duration: Duration) {
        *lock(&self.frozen_until) = Some(std::time::Instant::now() + duration);
    }

    /// Until when requests are held, if they are now.
    pub fn frozen_until(&self) -> Option<std::time::Instant> {
        lock(&self.frozen_until).filter(|until| *until > std::time::Instant::now())
    }

    pub fn inject(&self, fault: Fault) {
        lock(&self.faults).push(fault);
    }

    /// Drops every fault not used up yet.
    pub fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    /// Takes one use of the first fault that matches `request`.
    pub fn take_fault(&self, request: &Request) -> Option<Effect> {
        let mut faults = lock(&self.faults);
        let index = faults
            .iter()
            .position(|f| f.times > 0 && f.route.matches(request))?;
        let fault = &mut faults[index];
        fault.times -= 1;
        let effect = fault.effect.clone();
        if fault.times == 0 {
            faults.remove(index);
        }
        Some(effect)
    }
}
