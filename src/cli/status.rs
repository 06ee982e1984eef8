//! `stowage status`: Velero's verdict on each location and schedule.

use super::args::StatusArgs;
use super::{CliError, ExitStatus, Shared, runtime};
use crate::engine;

pub(super) fn run(args: &StatusArgs, shared: &Shared) -> Result<ExitStatus, CliError> {
    let observed = runtime()?.block_on(async {
        let cluster = crate::cluster::connect(&shared.target).await?;
        Ok::<_, CliError>(engine::status(&cluster, &args.namespace).await?)
    })?;
    crate::report::status::write_text(
        &observed,
        chrono::Utc::now(),
        &mut std::io::stdout().lock(),
    )?;
    Ok(ExitStatus::Success)
}
