//! `stowage watch`: starts the daemon with logging and signal handling.

use super::args::{LogFormat, WatchArgs};
use super::{CliError, ExitStatus, Shared};
use crate::engine::ReconcileOptions;

pub(super) fn run(args: &WatchArgs, shared: &Shared) -> Result<ExitStatus, CliError> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STOWAGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match args.log_format {
        LogFormat::Json => builder
            .event_format(crate::report::log_format::FlatJson)
            .init(),
        LogFormat::Text => builder.with_ansi(shared.color).init(),
    }
    let leader_election = if args.leader_elect {
        let timing = crate::cluster::lease::Timing {
            lease_duration: args.leader_elect_lease_duration,
            renew_deadline: args.leader_elect_renew_deadline,
            retry_period: args.leader_elect_retry_period,
        };
        if timing.renew_deadline >= timing.lease_duration
            || timing.retry_period >= timing.renew_deadline
        {
            return Err(CliError::LeaderElection);
        }
        Some(timing)
    } else {
        None
    };
    // The file's `[cluster] context`, when it validates now (the daemon keeps to the
    // cluster it started on).
    let target = crate::engine::check_file(&args.file.file)
        .ok()
        .and_then(|checked| checked.into_valid().ok())
        .map(|file| crate::engine::fleet::target_for(&file, &shared.target))
        .unwrap_or_else(|| shared.target.clone());
    let options = crate::watch::Options {
        file: args.file.file.clone(),
        target,
        resync: args.resync,
        quiet_period: args.quiet_period,
        listen: args.listen,
        leader_election,
        reconcile: ReconcileOptions {
            plan: args.plan_options(),
            // The file is the source of truth here: a field someone changed by hand is
            // taken back, unless --force-conflicts=false.
            apply: args.apply_options(),
            dry_run: args.dry_run,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    // The handlers exist before the first apply starts, so a SIGTERM during it finishes
    // that round instead of killing the process mid-write.
    let shutdown = {
        let _context = runtime.enter();
        shutdown_signal().map_err(CliError::Runtime)?
    };
    runtime.block_on(crate::watch::run(options, shutdown))?;
    Ok(ExitStatus::Success)
}

/// Installs the SIGINT and SIGTERM handlers now; the future ends at the first signal.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
