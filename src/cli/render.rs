//! `stowage render`: the objects the file declares, as YAML, printed or one file each.

use std::io::Write;

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
            let rendered = crate::engine::output::write_rendered(dir, &documents)?;
            eprintln!("wrote {} files to {}", rendered.written, dir.display());
            if !rendered.removed.is_empty() {
                eprintln!(
                    "removed {} files an earlier render wrote there: {}",
                    rendered.removed.len(),
                    rendered.removed.join(", ")
                );
            }
            if !rendered.kept.is_empty() {
                eprintln!(
                    "kept {} that an earlier render wrote but that changed since: {}",
                    rendered.kept.join(", "),
                    if rendered.kept.len() == 1 {
                        "it"
                    } else {
                        "they"
                    }
                );
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
