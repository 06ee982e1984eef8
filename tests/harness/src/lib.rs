//! stowage's tests against real parts. Test support only: it never ships in the
//! `stowage` binary.
//!
//! - `stack`: the real kube-apiserver and etcd that `tests/run` starts (through
//!   `tests/cluster/start`), one per test run; each test works in a namespace of its own.
//!   Objects are read and written as JSON through a `kube::Client` as the admin.
//! - `velero`: real `velero server` processes, one per test namespace that needs
//!   Velero's verdicts, backups or schedules.
//! - `proxy`: a proxy between stowage and the real API server that logs every request
//!   (`hooks`) and injects the faults a real server cannot be asked for: 5xx, 429 with
//!   Retry-After, a late answer, a watch cut after some events.

pub mod hooks;
pub mod proxy;
pub mod stack;
pub mod velero;

pub use hooks::{Effect, Fault, Route, Verb};
pub use proxy::Proxy;
pub use stack::{Namespace, Stack};
pub use velero::VeleroServer;
