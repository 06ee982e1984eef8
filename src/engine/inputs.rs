//! A file's inputs — the file, every base it extends, every credential and CA file it
//! names, each through its links — read as one snapshot, and the rule that guards
//! writes with them (product contract §7.1): nothing is deleted, and no credential is
//! written, from a half-read world.
//!
//! - [`read`] loads the file twice around stamps of all its inputs, and keeps the
//!   second load only when no input moved while it was read: a file written while it
//!   is read is never taken for a whole one.
//! - [`Snapshot::quiet_for`] says how long every input has been unchanged, by the file
//!   system's clock and by what the reader itself watched.
//! - [`guard`] is the one place that decides whether a plan may be written from a
//!   snapshot: its inputs must be unchanged since they were read, and a plan with
//!   guarded changes (deletions, credentials, repoints, a moved default) must come
//!   from inputs quiet for the quiet period. Every front end's apply calls it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::CheckedFile;
use crate::config::load::LoadError;
use crate::input::Stamps;
use crate::plan::Plan;

/// How often a snapshot is read again when its inputs move while it is read.
const ATTEMPTS: usize = 5;

/// How long every input must have been unchanged before a command writes a plan with
/// guarded changes (the daemon waits for its `--quiet-period`): longer than the pauses
/// of a writer at work.
pub const STEADY: Duration = Duration::from_secs(1);

/// The file and everything it names, as read at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The file, as named.
    pub file: PathBuf,
    pub checked: CheckedFile,
    /// Every input's stamp when it was read.
    pub stamps: Stamps,
    /// When this process read it (monotonic clock).
    pub read_at: Instant,
}

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(
        "{path} and the files it names kept changing while they were read; try again once the writer has finished"
    )]
    Unsettled { path: PathBuf },
}

/// Reads `path` and its inputs as one snapshot: loaded, stamped, loaded again and
/// stamped again, accepted when the stamps and the set of inputs are the same both
/// times (the second load happened while nothing moved).
pub fn read(path: &Path) -> Result<Snapshot, SnapshotError> {
    let mut checked = super::check_file(path)?;
    for _ in 0..ATTEMPTS {
        let paths = checked.inputs(path);
        let before = Stamps::of(&paths);
        let again = super::check_file(path)?;
        let after = Stamps::of(&again.inputs(path));
        if before == after {
            return Ok(Snapshot {
                file: path.to_path_buf(),
                checked: again,
                stamps: after,
                read_at: Instant::now(),
            });
        }
        checked = again;
    }
    Err(SnapshotError::Unsettled {
        path: path.to_path_buf(),
    })
}

impl Snapshot {
    /// Whether every input is still as it was read.
    pub fn is_current(&self) -> bool {
        Stamps::of(self.stamps.paths()) == self.stamps
    }

    /// How long every input has been unchanged: by the file system's record of the
    /// last change, or, when that is later than now (a clock ahead), by how long this
    /// process has seen them unchanged, whichever is longer.
    pub fn quiet_for(&self, seen_since: Instant) -> Duration {
        let by_files = self
            .stamps
            .last_change()
            .and_then(|changed| SystemTime::now().duration_since(changed).ok())
            .unwrap_or(Duration::ZERO);
        by_files.max(seen_since.elapsed())
    }
}

/// What [`guard`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// Write now.
    Write,
    /// Not yet: the plan has guarded changes and the inputs have been quiet for less
    /// than the quiet period. Read again after `wait` (or on the next change).
    Wait { wait: Duration, reason: String },
    /// An input changed since the snapshot was read: plan again from a new one.
    Moved,
}

/// Whether `plan`, made from `snapshot`, may be written now. `seen_since` is when the
/// caller first saw these stamps (a daemon watches them between rounds; a command
/// passes when it read them).
pub fn guard(
    plan: &Plan,
    snapshot: &Snapshot,
    seen_since: Instant,
    quiet_period: Duration,
) -> Guard {
    if !snapshot.is_current() {
        return Guard::Moved;
    }
    let Some(reason) = plan.guarded_change() else {
        return Guard::Write;
    };
    let quiet = snapshot.quiet_for(seen_since);
    if quiet >= quiet_period {
        return Guard::Write;
    }
    Guard::Wait {
        wait: quiet_period - quiet,
        reason: format!(
            "the plan {reason}: waiting until the file and everything it names have been unchanged for {} s",
            quiet_period.as_secs_f64()
        ),
    }
}

/// For a command's apply, which cannot put its plan off as the daemon does: waits
/// until `plan` may be written from `snapshot`, or fails when an input changed since
/// it was read (the plan no longer describes the files).
pub async fn wait_until_writable(
    plan: &Plan,
    snapshot: &Snapshot,
    quiet_period: Duration,
) -> Result<(), Moved> {
    loop {
        match guard(plan, snapshot, snapshot.read_at, quiet_period) {
            Guard::Write => return Ok(()),
            Guard::Wait { wait, .. } => tokio::time::sleep(wait).await,
            Guard::Moved => {
                return Err(Moved {
                    path: snapshot.file.clone(),
                });
            }
        }
    }
}

/// An input changed after the plan was made from it.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{} or a file it names changed while the plan was made; nothing was applied: run it again",
    path.display()
)]
pub struct Moved {
    pub path: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_written_while_it_is_read_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stowage.toml");
        std::fs::write(&path, "version = 1\n").unwrap();
        let snapshot = read(&path).unwrap();
        assert!(snapshot.is_current());
        std::fs::write(&path, "version = 1\n# more\n").unwrap();
        assert!(!snapshot.is_current(), "a write is seen");
    }

    #[test]
    fn the_quiet_period_counts_from_the_last_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stowage.toml");
        std::fs::write(&path, "version = 1\n").unwrap();
        let snapshot = read(&path).unwrap();
        // Just written: not quiet for 10 s, by either clock.
        assert!(snapshot.quiet_for(Instant::now()) < Duration::from_secs(10));
        // Written long ago: quiet.
        let old = SystemTime::now() - Duration::from_secs(3600);
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(old).unwrap();
        drop(file);
        let snapshot = read(&path).unwrap();
        // The change time moved with set_modified, so the file system says "now";
        // watched for long enough, it is quiet all the same.
        let watched_since = Instant::now() - Duration::from_secs(11);
        assert!(snapshot.quiet_for(watched_since) >= Duration::from_secs(10));
    }
}
