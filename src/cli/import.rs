//! `stowage import`: a desired-state file from the cluster's Velero objects.

use std::io::Write;

use super::args::ImportArgs;
use super::{CliError, ExitStatus, Shared, runtime, show};
use crate::engine;

pub(super) fn run(args: &ImportArgs, shared: &Shared) -> Result<ExitStatus, CliError> {
    let name = args
        .output
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "imported.toml".to_string());
    let imported = runtime()?.block_on(async {
        let cluster = crate::cluster::connect(&shared.target).await?;
        Ok::<_, CliError>(engine::import(&cluster, &args.namespace, &args.deployment, &name).await?)
    })?;
    // What the cluster holds may break rules Velero enforces late: say so now.
    if !imported.checked.diagnostics.is_empty() {
        show(
            &imported.checked.diagnostics,
            &imported.checked.loaded.source,
            shared.color,
        )?;
        eprintln!(
            "the cluster's Velero objects have the problems above; the file keeps them as they are"
        );
    }
    match &args.output {
        Some(path) => {
            std::fs::write(path, &imported.text).map_err(|source| CliError::Write {
                path: path.clone(),
                source,
            })?;
            eprintln!(
                "wrote {}; `stowage plan -f {}` shows what adopting it changes",
                path.display(),
                path.display()
            );
        }
        None => std::io::stdout()
            .lock()
            .write_all(imported.text.as_bytes())?,
    }
    Ok(ExitStatus::Success)
}
