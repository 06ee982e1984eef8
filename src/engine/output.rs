//! Writing files stowage makes (`render -o DIR`, `import -o FILE`, `plan --out`): the
//! one place that creates files for people, so the rules hold for all of them.
//!
//! - A file is written whole or not at all: into a new temporary file beside it
//!   (created exclusively, so never through a link), then renamed over its name.
//! - A symbolic link or a hard-linked file at an output name is refused: writing there
//!   would change, or appear to change, a file outside the folder.
//! - `render -o DIR` records what it wrote (name and content digest) in
//!   `DIR/.stowage-rendered`, and removes only files whose names it could have written
//!   and whose content is still what it recorded; a list planted by someone else, or a
//!   file edited since, is never a reason to delete.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::render::Document;

/// The record of what `render -o` wrote into a folder.
pub const RENDERED_LIST: &str = ".stowage-rendered";

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{path} is not a directory: `render -o` writes one file per object into a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "{path} is a symbolic link; stowage writes only regular files of its own (remove the link, or write elsewhere)"
    )]
    Link { path: PathBuf },
    #[error(
        "{path} has other hard links; writing it would change what they show (remove it, or write elsewhere)"
    )]
    HardLink { path: PathBuf },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path} exists; pass --force to replace it")]
    Exists { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether a file may be replaced at `path`: nothing there, or a regular file with no
/// other hard link. Looks at the name itself, never through a link.
fn check_replaceable(path: &Path) -> Result<bool, OutputError> {
    match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(io_error(path)(source)),
        Ok(metadata) if metadata.file_type().is_symlink() => Err(OutputError::Link {
            path: path.to_path_buf(),
        }),
        Ok(metadata) if !metadata.is_file() => Err(OutputError::NotAFile {
            path: path.to_path_buf(),
        }),
        Ok(metadata) if metadata.nlink() > 1 => Err(OutputError::HardLink {
            path: path.to_path_buf(),
        }),
        Ok(_) => Ok(true),
    }
}

/// Writes `bytes` to `path` with `mode`, through a temporary file in the same folder
/// renamed over it. Refuses links at `path`, and an existing file unless `replace`.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32, replace: bool) -> Result<(), OutputError> {
    if check_replaceable(path)? && !replace {
        return Err(OutputError::Exists {
            path: path.to_path_buf(),
        });
    }
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (temporary, mut file) = create_temporary(folder, &name, mode)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(mode)));
    drop(file);
    let renamed = written.and_then(|()| {
        // Checked again just before the rename: a link planted meanwhile is refused too.
        match check_replaceable(path) {
            Ok(_) => std::fs::rename(&temporary, path),
            Err(refused) => {
                let _ = std::fs::remove_file(&temporary);
                Err(std::io::Error::other(refused))
            }
        }
    });
    if let Err(error) = renamed {
        let _ = std::fs::remove_file(&temporary);
        return match error.downcast::<OutputError>() {
            Ok(refused) => Err(refused),
            Err(source) => Err(io_error(path)(source)),
        };
    }
    Ok(())
}

/// A new file in `folder`, created exclusively (`O_EXCL`: never through a link).
fn create_temporary(
    folder: &Path,
    name: &str,
    mode: u32,
) -> Result<(PathBuf, std::fs::File), OutputError> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    loop {
        let serial = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temporary = folder.join(format!(
            ".{name}.stowage-{}-{serial}.tmp",
            std::process::id()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)
        {
            Ok(file) => return Ok((temporary, file)),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(io_error(&temporary)(source)),
        }
    }
}

/// What `render -o` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub written: usize,
    /// Files an earlier render wrote that this one no longer writes.
    pub removed: Vec<String>,
    /// Files named in the record that were kept: changed since, or not a name render
    /// writes.
    pub kept: Vec<String>,
}

fn digest(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `name` is one `render` writes: `<kind>-<name>.yaml`, or the server flag's
/// `deployment-<name>.txt`, with a Kubernetes name.
pub fn is_rendered_name(name: &str) -> bool {
    let stem = match (name.strip_suffix(".yaml"), name.strip_suffix(".txt")) {
        (Some(stem), _) => [
            "secret-",
            "backupstoragelocation-",
            "volumesnapshotlocation-",
            "schedule-",
        ]
        .iter()
        .find_map(|kind| stem.strip_prefix(kind)),
        (None, Some(stem)) => stem.strip_prefix("deployment-"),
        _ => None,
    };
    stem.is_some_and(|object| {
        !object.is_empty()
            && object.len() <= 253
            && object
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && !object.starts_with(['.', '-'])
    })
}

/// The record: `<sha256> <name>` per line. Lines of another shape (an older record of
/// names only, or anything planted) are ignored, so nothing they name is removed.
fn read_record(dir: &Path) -> BTreeMap<String, String> {
    let path = dir.join(RENDERED_LIST);
    let Ok(text) = crate::config::load::read_bounded(&path, 1 << 20)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    else {
        return BTreeMap::new();
    };
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(digest, name)| digest.len() == 64 && is_rendered_name(name))
        .map(|(digest, name)| (name.to_string(), digest.to_string()))
        .collect()
}

/// Writes `documents` into `dir` (Secrets readable by their owner only), then removes
/// what an earlier render recorded there that this one no longer writes, when its
/// content is still what was recorded.
pub fn write_rendered(dir: &Path, documents: &[Document]) -> Result<Rendered, OutputError> {
    match std::fs::symlink_metadata(dir) {
        Ok(metadata) if !metadata.is_dir() && !std::fs::metadata(dir).is_ok_and(|m| m.is_dir()) => {
            return Err(OutputError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        Err(source) => return Err(io_error(dir)(source)),
    }
    let earlier = read_record(dir);
    // Every name is checked before anything is written, so a refusal writes nothing.
    for document in documents {
        check_replaceable(&dir.join(&document.file_name))?;
    }
    let mut record = BTreeMap::new();
    for document in documents {
        let mode = if document.secret { 0o600 } else { 0o644 };
        write_file(
            &dir.join(&document.file_name),
            document.yaml.as_bytes(),
            mode,
            true,
        )?;
        record.insert(document.file_name.clone(), digest(document.yaml.as_bytes()));
    }
    let mut rendered = Rendered {
        written: documents.len(),
        ..Rendered::default()
    };
    for (name, recorded) in earlier {
        if record.contains_key(&name) {
            continue;
        }
        let path = dir.join(&name);
        let unchanged = matches!(check_replaceable(&path), Ok(true))
            && crate::config::load::read_bounded(&path, crate::config::load::FILE_LIMIT)
                .is_ok_and(|bytes| digest(&bytes) == recorded);
        if !unchanged {
            if path.exists() {
                rendered.kept.push(name);
            }
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => rendered.removed.push(name),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(io_error(&path)(source)),
        }
    }
    let text: String = record
        .iter()
        .map(|(name, digest)| format!("{digest} {name}\n"))
        .collect();
    write_file(&dir.join(RENDERED_LIST), text.as_bytes(), 0o644, true)?;
    Ok(rendered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(name: &str, yaml: &str) -> Document {
        Document {
            file_name: name.to_string(),
            yaml: yaml.to_string(),
            secret: false,
        }
    }

    #[test]
    fn only_names_render_writes_count() {
        assert!(is_rendered_name("backupstoragelocation-primary.yaml"));
        assert!(is_rendered_name("secret-cloud-credentials.yaml"));
        assert!(is_rendered_name("deployment-velero.txt"));
        for foreign in [
            "kustomization.yaml",
            "README.md",
            "schedule-.yaml",
            "secret-../x.yaml",
            "schedule-Nightly.yaml",
            ".stowage-rendered",
            "deployment-velero.yaml",
        ] {
            assert!(!is_rendered_name(foreign), "{foreign}");
        }
    }

    #[test]
    fn a_render_removes_only_unchanged_files_it_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let first = [
            document("schedule-a.yaml", "a\n"),
            document("schedule-b.yaml", "b\n"),
            document("schedule-c.yaml", "c\n"),
        ];
        write_rendered(dir.path(), &first).unwrap();
        // b is edited by hand since; c stays as written; kustomization.yaml is planted
        // into the record by someone else.
        std::fs::write(dir.path().join("schedule-b.yaml"), "edited\n").unwrap();
        std::fs::write(dir.path().join("kustomization.yaml"), "k\n").unwrap();
        let mut record = std::fs::read_to_string(dir.path().join(RENDERED_LIST)).unwrap();
        record.push_str(&format!("{} kustomization.yaml\n", digest(b"k\n")));
        std::fs::write(dir.path().join(RENDERED_LIST), record).unwrap();

        let rendered = write_rendered(dir.path(), &[document("schedule-a.yaml", "a\n")]).unwrap();
        assert_eq!(rendered.removed, vec!["schedule-c.yaml"]);
        assert_eq!(rendered.kept, vec!["schedule-b.yaml"]);
        assert!(dir.path().join("kustomization.yaml").exists());
        assert!(dir.path().join("schedule-b.yaml").exists());
        assert!(!dir.path().join("schedule-c.yaml").exists());
    }

    #[test]
    fn links_at_output_names_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("target");
        std::fs::write(&target, "outside\n").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("schedule-b.yaml")).unwrap();
        let refused = write_rendered(
            dir.path(),
            &[
                document("schedule-a.yaml", "a\n"),
                document("schedule-b.yaml", "b\n"),
            ],
        );
        assert!(
            matches!(refused, Err(OutputError::Link { .. })),
            "{refused:?}"
        );
        assert!(!dir.path().join("schedule-a.yaml").exists());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "outside\n");

        std::fs::remove_file(dir.path().join("schedule-b.yaml")).unwrap();
        std::fs::hard_link(&target, dir.path().join("schedule-b.yaml")).unwrap();
        let refused = write_rendered(dir.path(), &[document("schedule-b.yaml", "b\n")]);
        assert!(
            matches!(refused, Err(OutputError::HardLink { .. })),
            "{refused:?}"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "outside\n");
    }

    #[test]
    fn a_regular_file_as_the_folder_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out");
        std::fs::write(&file, "x").unwrap();
        let refused = write_rendered(&file, &[document("schedule-a.yaml", "a\n")]);
        assert!(
            matches!(refused, Err(OutputError::NotADirectory { .. })),
            "{refused:?}"
        );
    }

    #[test]
    fn an_existing_file_is_replaced_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stowage.toml");
        std::fs::write(&path, "hand-written\n").unwrap();
        let refused = write_file(&path, b"imported\n", 0o644, false);
        assert!(
            matches!(refused, Err(OutputError::Exists { .. })),
            "{refused:?}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "hand-written\n");
        write_file(&path, b"imported\n", 0o644, true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "imported\n");
        // No temporary file is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
