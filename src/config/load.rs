//! Reading a desired-state file from disk: the one place that touches the file system
//! and the environment for it.
//!
//! `load` parses the file, checks its shape, decodes the model, and reads what the file
//! points at (credential files and variables, CA bundles) into [`Materials`], so that
//! validation and rendering stay pure. Problems in the file become diagnostics; only a
//! file that cannot be read at all is an error.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::merge;
use super::model::{Config, json_schema};
use super::shape;
use super::source::{self, Format, SourceMap};
use crate::diagnostic::{Code, Diagnostic, Pointer, Segment};
use crate::secret::SecretValue;
use crate::secret::formats::Credential;
use crate::secret::sops::{self, AgeKeys, SopsError};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not UTF-8 text")]
    NotText { path: PathBuf },
    #[error("{path}: unknown file type; name it *.toml, *.yaml or *.yml")]
    UnknownFormat { path: PathBuf },
}

/// What a credential's source held when the file was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Material {
    /// The content, read in the providers' formats once, here.
    Value(Credential),
    /// The file or variable could not be read; the reason never contains its value.
    Missing(String),
    /// `external = true`: the value lives in the cluster.
    External,
    /// A SOPS-encrypted file that could not be decrypted; the error holds no value.
    Undecryptable(SopsError),
}

/// The contents a file points at, read at load time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Materials {
    /// By credential entry name; entries with no single source are absent.
    pub credentials: BTreeMap<String, Material>,
    /// By backup location name, for locations with `ca_cert_file`.
    pub ca_certs: BTreeMap<String, Result<Vec<u8>, String>>,
    /// Credentials read from a plaintext file that git would commit: inside a work tree,
    /// and tracked or not ignored.
    pub committed_plaintext: BTreeSet<String>,
}

/// A loaded file: the model (when its shape allowed decoding one), the source for
/// locating diagnostics, what it points at, and the problems found while loading.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Option<Config>,
    pub source: SourceMap,
    pub materials: Materials,
    pub diagnostics: Vec<Diagnostic>,
    /// Values the shape check reported and left out of the model.
    pub unusable: BTreeSet<Pointer>,
}

/// The largest desired-state file stowage reads (a fleet's largest is a few MiB).
pub const FILE_LIMIT: u64 = 32 << 20;
/// The largest credential or CA file: what one Secret can hold.
pub const SECRET_LIMIT: u64 = 1 << 20;

/// Reads a file someone named: only a regular file (a FIFO would block, a device such
/// as /dev/zero never ends, a directory is a mistake), and at most `limit` bytes
/// ([`crate::input::read_regular`]).
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    crate::input::read_regular(path, limit)
}

/// Reads and loads the file at `path`.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    load_with_env(path, &|name| std::env::var_os(name))
}

/// `load`, reading environment variables (credential `env` sources, sops' age key
/// variables, `HOME`) through `env` instead of the process's environment.
pub fn load_with_env(
    path: &Path,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Loaded, LoadError> {
    let format = Format::from_path(path).ok_or_else(|| LoadError::UnknownFormat {
        path: path.to_path_buf(),
    })?;
    let bytes = read_bounded(path, FILE_LIMIT).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| LoadError::NotText {
        path: path.to_path_buf(),
    })?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let parsed = on_parser_stack(|| load_chain(path, text, format));
    let materials = match &parsed.config {
        Some(config) => read_materials(config, base_dir, env),
        None => Materials::default(),
    };
    Ok(Loaded {
        materials,
        ..parsed
    })
}

/// The stack the parsers run on. Their recursion costs tens of KiB per nesting level
/// in debug builds, so a deeply nested file would overflow the caller's stack (a tokio
/// worker's is 2 MiB) before the parsers' own depth limits refuse it.
const PARSER_STACK: usize = 64 << 20;

/// Parses, shape-checks and decodes `text`; reads nothing else. Runs on a stack of its
/// own ([`PARSER_STACK`]).
pub fn parse_str(name: &str, text: String, format: Format) -> Loaded {
    on_parser_stack(|| {
        let (root, diagnostics) = source::parse(&text, format);
        finish(vec![(name.to_string(), text)], root, diagnostics)
    })
}

/// Runs `parse` on a stack of [`PARSER_STACK`] bytes, on this thread. Not on a thread
/// of its own: glibc gives each thread a heap of its own, grown a page at a time (for a
/// file of 6,000 entries, over 4,000 `mprotect` calls, a fifth of `validate`'s time),
/// and what the parse leaves behind is freed on the caller's.
fn on_parser_stack(parse: impl FnOnce() -> Loaded) -> Loaded {
    stacker::grow(PARSER_STACK, parse)
}

/// The most bases one file may stand on (a chain, not a tree).
const MAX_BASES: usize = 16;

/// Parses the file and every base it extends (`extends = "<path>"`, relative to the
/// file that says it), and merges them: tables by key, the overlay's values over the
/// base's, `drop = true` removing an inherited entry. Each base's spans are moved past
/// the texts before it, so that every diagnostic lands in the file it was written in.
fn load_chain(path: &Path, text: String, format: Format) -> Loaded {
    let mut files = vec![(path.display().to_string(), text)];
    let (first, mut diagnostics) = source::parse(&files[0].1, format);
    let Some(root) = first else {
        return finish(files, None, diagnostics);
    };
    // The file, then each base it stands on.
    let mut chain = vec![root];
    let mut seen = vec![std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())];
    // Where the current file is, relative to the given file's folder.
    let mut folder = PathBuf::new();
    while let Some(current) = chain.last() {
        let (extends, extends_span) = match merge::extends_of(current) {
            Ok(Some(named)) => named,
            Ok(None) => break,
            Err(refused) => {
                diagnostics.push(*refused);
                break;
            }
        };
        let base_path = folder.join(&extends);
        let on_disk = lexically_normal(&path.parent().unwrap_or(Path::new(".")).join(&base_path));
        let refuse = |message: String| {
            Diagnostic::error(Code::Extends, message)
                .with_span(extends_span.clone())
                .label("extended here")
        };
        if chain.len() > MAX_BASES {
            diagnostics.push(refuse(format!("more than {MAX_BASES} bases in one chain")));
            break;
        }
        let canonical = std::fs::canonicalize(&on_disk).unwrap_or_else(|_| on_disk.clone());
        if seen.contains(&canonical) {
            diagnostics.push(
                refuse(format!(
                    "{} extends itself through its bases: a cycle",
                    on_disk.display()
                ))
                .help("a chain of bases must end in a file that extends nothing"),
            );
            break;
        }
        let Some(base_format) = Format::from_path(&on_disk) else {
            diagnostics.push(refuse(format!(
                "{}: unknown file type; name it *.toml, *.yaml or *.yml",
                on_disk.display()
            )));
            break;
        };
        let base_text = match read_bounded(&on_disk, FILE_LIMIT)
            .map_err(|e| e.to_string())
            .and_then(|bytes| String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string()))
        {
            Ok(text) => text,
            Err(reason) => {
                diagnostics.push(
                    refuse(format!(
                        "cannot read the base {}: {reason}",
                        on_disk.display()
                    ))
                    .help("`extends` is relative to the file that says it"),
                );
                break;
            }
        };
        let start = source_offset(&files);
        files.push((on_disk.display().to_string(), base_text));
        let (base_root, base_diagnostics) = source::parse(&files[files.len() - 1].1, base_format);
        diagnostics.extend(
            base_diagnostics
                .into_iter()
                .map(|d| merge::shift_diagnostic(d, start)),
        );
        let Some(mut base_root) = base_root else {
            break;
        };
        merge::shift(&mut base_root, start);
        let base_folder = base_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        merge::rebase_paths(&mut base_root, &base_folder);
        seen.push(canonical);
        folder = base_folder;
        chain.push(base_root);
    }
    // Merge from the deepest base up to the file itself.
    let Some(mut merged) = chain.pop() else {
        return finish(files, None, diagnostics);
    };
    while let Some(overlay) = chain.pop() {
        merged = merge::merge(merged, overlay, &mut diagnostics);
    }
    merge::remove_extends(&mut merged);
    finish(files, Some(merged), diagnostics)
}

/// `a/b/../c` as `a/c`, without asking the file system (which would follow links):
/// how a base is named in messages.
fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Where the next file's text starts once appended (as `SourceMap::of_files` lays
/// them out: each file after the first starts on a line of its own).
fn source_offset(files: &[(String, String)]) -> usize {
    let (mut length, mut ends_in_newline) = (0, false);
    for (index, (_, text)) in files.iter().enumerate() {
        if index > 0 && !ends_in_newline {
            length += 1;
            ends_in_newline = true;
        }
        length += text.len();
        if !text.is_empty() {
            ends_in_newline = text.ends_with('\n');
        }
    }
    if !files.is_empty() && !ends_in_newline {
        length += 1;
    }
    length
}

/// Shape-checks and decodes a parsed (and merged) tree.
fn finish(
    files: Vec<(String, String)>,
    root: Option<source::Node>,
    mut diagnostics: Vec<Diagnostic>,
) -> Loaded {
    let mut config = None;
    if let Some(root) = &root
        && let Some(checked) = shape::check(root, json_schema(), &mut diagnostics)
    {
        match checked.decode::<Config>() {
            Ok(decoded) => config = Some(decoded),
            Err(error) => diagnostics.push(decode_error(&error)),
        }
    }
    let unusable = diagnostics
        .iter()
        .filter(|d| d.code == Code::Parse)
        .filter_map(|d| d.at.clone())
        .collect();
    Loaded {
        config,
        source: SourceMap::of_files(files, root),
        materials: Materials::default(),
        diagnostics,
        unusable,
    }
}

fn decode_error(error: &serde_path_to_error::Error<serde_json::Error>) -> Diagnostic {
    // The shape check accepts only what the model decodes, so this is a safety net.
    let path: Vec<Segment> = error
        .path()
        .iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(Segment::Key(key.clone())),
            serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
            _ => None,
        })
        .collect();
    Diagnostic::error(Code::Parse, error.inner().to_string()).at(Pointer {
        path,
        target: crate::diagnostic::Target::Value,
    })
}

/// Reads the credential sources and CA files `config` names, resolving paths against
/// `base_dir` and variables through `env`. SOPS-encrypted credential files are
/// decrypted here, with age keys found through `env` as sops finds them (looked for
/// only when a file needs them).
pub fn read_materials(
    config: &Config,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Materials {
    let mut materials = Materials::default();
    let keys = std::cell::LazyCell::new(|| AgeKeys::discover(env));
    for (name, credential) in &config.credentials {
        let sources = [
            credential.file.is_some(),
            credential.env.is_some(),
            credential.is_external(),
        ];
        if sources.iter().filter(|set| **set).count() != 1 {
            continue;
        }
        let material = if let Some(file) = &credential.file {
            let path = base_dir.join(file);
            let read = read_credential_file(&path, file, &keys);
            if read.plaintext && git_would_commit(&path) {
                materials.committed_plaintext.insert(name.clone());
            }
            read.material
        } else if let Some(variable) = &credential.env {
            match env(variable) {
                Some(value) if value.len() as u64 > SECRET_LIMIT => Material::Missing(format!(
                    "environment variable {variable} holds {} bytes; a Secret holds at most 1 MiB",
                    value.len()
                )),
                Some(value) => Material::Value(Credential::read(SecretValue::new(
                    value.into_encoded_bytes(),
                ))),
                None => Material::Missing(format!("environment variable {variable} is not set")),
            }
        } else {
            Material::External
        };
        materials.credentials.insert(name.clone(), material);
    }
    for (name, location) in &config.backup_locations {
        if let Some(file) = &location.ca_cert_file {
            let contents = read_bounded(&base_dir.join(file), SECRET_LIMIT)
                .map_err(|error| format!("cannot read {}: {}", file.display(), io_reason(&error)));
            materials.ca_certs.insert(name.clone(), contents);
        }
    }
    materials
}

struct CredentialFile {
    material: Material,
    /// Read as it is on disk, not decrypted.
    plaintext: bool,
}

/// An encrypted file is larger than what it holds: base64 and metadata about double it.
const SOPS_FILE_LIMIT: u64 = 4 * SECRET_LIMIT;

fn read_credential_file(
    path: &Path,
    as_written: &Path,
    keys: &std::cell::LazyCell<AgeKeys, impl FnOnce() -> AgeKeys>,
) -> CredentialFile {
    let unreadable = |reason: String| CredentialFile {
        material: Material::Missing(format!("cannot read {}: {reason}", as_written.display())),
        plaintext: false,
    };
    let bytes = match read_bounded(path, SOPS_FILE_LIMIT) {
        Ok(bytes) => bytes,
        Err(error) => return unreadable(io_reason(&error)),
    };
    if sops::is_encrypted(&bytes) {
        let material = match sops::decrypt(path, &bytes, keys) {
            Ok(value) if value.len() as u64 > SECRET_LIMIT => Material::Missing(format!(
                "{} decrypts to {} bytes; a Secret holds at most 1 MiB",
                as_written.display(),
                value.len()
            )),
            Ok(value) => Material::Value(Credential::read(value)),
            Err(error) => Material::Undecryptable(error),
        };
        return CredentialFile {
            material,
            plaintext: false,
        };
    }
    if bytes.len() as u64 > SECRET_LIMIT {
        return unreadable(format!("larger than {} KiB", SECRET_LIMIT >> 10));
    }
    CredentialFile {
        material: Material::Value(Credential::read(SecretValue::new(bytes))),
        plaintext: true,
    }
}

/// Whether git would commit `path`: it lies in a work tree and is tracked or not
/// ignored. Asks git itself (`git check-ignore`, which honours every ignore file and
/// treats tracked files as not ignored); without a work tree around the file, or
/// without git, the answer is no.
fn git_would_commit(path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    let Some(dir) = path.parent() else {
        return false;
    };
    if !dir.ancestors().any(|d| d.join(".git").exists()) {
        return false;
    }
    let status = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["check-ignore", "--quiet", "--"])
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    // 0: ignored; 1: not ignored; anything else (128: not a repository) says nothing.
    matches!(status.map(|s| s.code()), Ok(Some(1)))
}

fn io_reason(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => error.to_string(),
    }
}
