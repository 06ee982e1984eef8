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
    // A hand-written file is never replaced unasked, and that is known before the
    // cluster is read.
    if let Some(path) = &args.output
        && !args.force
        && std::fs::symlink_metadata(path).is_ok()
    {
        return Err(crate::engine::output::OutputError::Exists { path: path.clone() }.into());
    }
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
            "the cluster's Velero objects have the problems above; the file says what it can of them"
        );
    }
    match &args.output {
        Some(path) => {
            crate::engine::output::write_file(path, imported.text.as_bytes(), 0o644, args.force)?;
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
