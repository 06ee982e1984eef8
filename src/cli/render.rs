//! `stowage render`: the objects the file declares, as YAML, printed or one file each.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::args::RenderArgs;
use super::{CliError, ExitStatus, Shared, valid_or_report};

pub(super) fn run(args: &RenderArgs, shared: &Shared) -> Result<ExitStatus, CliError> {
    let Some(file) = valid_or_report(&args.file.file, shared.color, false)? else {
        return Ok(ExitStatus::Failure);
    };
    let desired = file.desired(false);
    let documents = crate::render::to_documents(&desired, !args.no_secrets);
    match &args.output_dir {
        Some(dir) => {
            let removed = write_documents(dir, &documents)?;
            eprintln!("wrote {} files to {}", documents.len(), dir.display());
            if removed > 0 {
                eprintln!("removed {removed} files an earlier render wrote there");
            }
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            for (index, document) in documents.iter().enumerate() {
                if index > 0 {
                    stdout.write_all(b"---\n")?;
                }
                stdout.write_all(document.yaml.as_bytes())?;
            }
        }
    }
    Ok(ExitStatus::Success)
}

/// Lists the files `render -o` wrote into a folder, so the next render can remove the
/// ones it no longer writes (a Secret left behind by `--no-secrets`, a location
/// dropped from the file) without touching anything else there.
const RENDERED_LIST: &str = ".stowage-rendered";

/// Writes `documents` into `dir` (Secrets readable by their owner only), removes what
/// an earlier render wrote there and this one does not, and returns how many it removed.
fn write_documents(dir: &Path, documents: &[crate::render::Document]) -> Result<usize, CliError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let write_error = |path: PathBuf| move |source| CliError::Write { path, source };
    std::fs::create_dir_all(dir).map_err(write_error(dir.to_path_buf()))?;
    let list = dir.join(RENDERED_LIST);
    let earlier = std::fs::read_to_string(&list).unwrap_or_default();
    for document in documents {
        let path = dir.join(&document.file_name);
        let mode = if document.secret { 0o600 } else { 0o644 };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&path)
            .map_err(write_error(path.clone()))?;
        // A file that existed keeps its old mode through open(): set it.
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(write_error(path.clone()))?;
        file.write_all(document.yaml.as_bytes())
            .map_err(write_error(path.clone()))?;
    }
    let current: std::collections::BTreeSet<&str> =
        documents.iter().map(|d| d.file_name.as_str()).collect();
    let mut removed = 0;
    for stale in earlier.lines().filter(|name| !current.contains(name)) {
        // Only plain names this render could have written: never a path elsewhere.
        if stale.is_empty() || stale.contains('/') || stale.starts_with('.') {
            continue;
        }
        match std::fs::remove_file(dir.join(stale)) {
            Ok(()) => removed += 1,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(write_error(dir.join(stale))(source)),
        }
    }
    let names: String = current.iter().map(|name| format!("{name}\n")).collect();
    std::fs::write(&list, names).map_err(write_error(list.clone()))?;
    Ok(removed)
}
