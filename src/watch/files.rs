//! Noticing edits to the file and to the credential files it names. Editors save by
//! writing in place, truncating, or writing a new file and renaming it over the old
//! one; so the directories are watched, not the files, and any event naming one of the
//! paths counts. Bursts are debounced by the loop that receives the signal.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Watches the directories of `paths`; sends `()` when one of `paths` changes.
pub struct FileWatch {
    watcher: RecommendedWatcher,
    watched_dirs: BTreeSet<PathBuf>,
    paths: std::sync::Arc<std::sync::Mutex<BTreeSet<PathBuf>>>,
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

impl FileWatch {
    pub fn new(changed: mpsc::Sender<()>) -> notify::Result<FileWatch> {
        let paths: std::sync::Arc<std::sync::Mutex<BTreeSet<PathBuf>>> = Default::default();
        let wanted = paths.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if event.kind.is_access() {
                return;
            }
            let wanted = wanted.lock().unwrap_or_else(|p| p.into_inner());
            // A mounted ConfigMap or Secret changes by swapping its `..data` link, so
            // events name `..data*`, never the file itself.
            let swapped = |p: &Path| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("..data"))
                    && p.parent()
                        .is_some_and(|dir| wanted.iter().any(|w| w.parent() == Some(dir)))
            };
            if event
                .paths
                .iter()
                .any(|p| wanted.contains(&absolute(p)) || swapped(&absolute(p)))
            {
                // A full channel already holds a wake-up; dropping this one loses nothing.
                let _ = changed.try_send(());
            }
        })?;
        Ok(FileWatch {
            watcher,
            watched_dirs: BTreeSet::new(),
            paths,
        })
    }

    /// Makes `paths` the set that counts, watching any directory not yet watched.
    pub fn set_paths(&mut self, paths: impl IntoIterator<Item = PathBuf>) -> notify::Result<()> {
        let paths: BTreeSet<PathBuf> = paths.into_iter().map(|p| absolute(&p)).collect();
        for path in &paths {
            let Some(dir) = path.parent() else { continue };
            if self.watched_dirs.contains(dir) || !dir.is_dir() {
                continue;
            }
            self.watcher.watch(dir, RecursiveMode::NonRecursive)?;
            self.watched_dirs.insert(dir.to_path_buf());
        }
        *self.paths.lock().unwrap_or_else(|p| p.into_inner()) = paths;
        Ok(())
    }
}
