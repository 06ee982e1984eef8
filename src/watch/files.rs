//! Noticing edits to the file and to everything it names. Editors save by writing in
//! place, truncating, or writing a new file and renaming it over the old one; mounted
//! ConfigMaps swap a `..data` link; a symlink may be re-pointed into another folder.
//! So folders are watched, not files: every folder that holds an input, a link on the
//! way to one, or a link's target ([`crate::input::Stamps::folders`]). Any change in
//! them wakes the daemon, which then compares the inputs' stamps to see whether
//! anything it reads really moved.

use std::collections::BTreeSet;
use std::path::PathBuf;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Watches a set of folders; sends `()` on any change in one of them.
pub struct FileWatch {
    watcher: RecommendedWatcher,
    watched: BTreeSet<PathBuf>,
}

impl FileWatch {
    pub fn new(changed: mpsc::Sender<()>) -> notify::Result<FileWatch> {
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if event.kind.is_access() {
                return;
            }
            // A full channel already holds a wake-up; dropping this one loses nothing.
            let _ = changed.try_send(());
        })?;
        Ok(FileWatch {
            watcher,
            watched: BTreeSet::new(),
        })
    }

    /// Watches exactly `folders` (those that exist), adding and dropping watches as
    /// the set moves (a ConfigMap's data folder changes at every swap).
    pub fn set_folders(
        &mut self,
        folders: impl IntoIterator<Item = PathBuf>,
    ) -> notify::Result<()> {
        let wanted: BTreeSet<PathBuf> = folders.into_iter().filter(|f| f.is_dir()).collect();
        for gone in self
            .watched
            .difference(&wanted)
            .cloned()
            .collect::<Vec<_>>()
        {
            // A folder removed already has no watch left to drop.
            let _ = self.watcher.unwatch(&gone);
            self.watched.remove(&gone);
        }
        for folder in wanted {
            if self.watched.contains(&folder) {
                continue;
            }
            self.watcher.watch(&folder, RecursiveMode::NonRecursive)?;
            self.watched.insert(folder);
        }
        Ok(())
    }
}
