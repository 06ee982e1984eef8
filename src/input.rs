//! The files people name, read safely and watched for change: the one place that
//! opens them.
//!
//! - [`read_regular`] reads only a regular file, and at most a given size. It opens
//!   without blocking, so a FIFO or a device at the path (or swapped in after a check)
//!   is refused instead of freezing the caller, and counts bytes as it reads rather
//!   than trusting the file system's size.
//! - [`Stamp`] is what tells a file changed: every link on the way to it (a ConfigMap
//!   mount's `..data` swap, a symlink re-pointed) and the target's identity, size,
//!   modification and change times. [`Stamps`] is a set of them: a file's whole input
//!   set, compared as one.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Reads the regular file at `path`, at most `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    // Checked on the open file: what was opened is what is read.
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {} KiB", limit >> 10),
        ));
    }
    Ok(bytes)
}

/// How deep a chain of symbolic links is followed before it counts as a loop.
const MAX_LINKS: usize = 40;

/// What a path looks like now: the links on the way and the file at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// Each symbolic link met while resolving the path: where it is and what it says.
    pub links: Vec<(PathBuf, PathBuf)>,
    /// The file at the end (`None` while it is missing or unreadable).
    pub file: Option<FileStamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    pub modified: Option<SystemTime>,
    /// The inode's change time: moves on a rename over it, a chmod, a truncation.
    pub changed: (i64, i64),
}

impl Stamp {
    /// The path's stamp: the links on the way (each component of the path resolved, so
    /// a link anywhere in it counts), then the file.
    pub fn of(path: &Path) -> Stamp {
        let mut links = Vec::new();
        let resolved = resolve(path, &mut links);
        let file = resolved
            .and_then(|target| std::fs::metadata(target).ok())
            .map(|metadata| FileStamp {
                device: metadata.dev(),
                inode: metadata.ino(),
                size: metadata.len(),
                modified: metadata.modified().ok(),
                changed: (metadata.ctime(), metadata.ctime_nsec()),
            });
        Stamp { links, file }
    }

    /// The latest time the file or a link on the way to it changed, as the file system
    /// records it.
    pub fn last_change(&self) -> Option<SystemTime> {
        let file = self.file.as_ref().and_then(|f| {
            let (seconds, nanos) = f.changed;
            let changed = u64::try_from(seconds).ok().map(|s| {
                SystemTime::UNIX_EPOCH + Duration::new(s, u32::try_from(nanos).unwrap_or(0))
            });
            [f.modified, changed].into_iter().flatten().max()
        });
        let links = self
            .links
            .iter()
            .filter_map(|(link, _)| std::fs::symlink_metadata(link).ok())
            .filter_map(|m| m.modified().ok());
        file.into_iter().chain(links).max()
    }
}

/// Resolves `path` component by component, recording every link it meets, and
/// returns the final path (`None` for a loop).
fn resolve(path: &Path, links: &mut Vec<(PathBuf, PathBuf)>) -> Option<PathBuf> {
    let mut pending: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .map(|c| c.as_os_str().to_os_string())
        .collect();
    let mut current = PathBuf::new();
    let mut hops = 0;
    while let Some(component) = pending.pop() {
        let next = current.join(&component);
        match std::fs::read_link(&next) {
            Ok(target) => {
                hops += 1;
                if hops > MAX_LINKS {
                    return None;
                }
                links.push((next.clone(), target.clone()));
                // The link's target replaces it, relative to the link's folder unless
                // it is absolute.
                if target.is_absolute() {
                    current = PathBuf::new();
                }
                for part in target.components().rev() {
                    pending.push(part.as_os_str().to_os_string());
                }
            }
            Err(_) => current = next,
        }
    }
    Some(current)
}

/// The stamps of a set of paths, in a stable order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stamps(pub Vec<(PathBuf, Stamp)>);

impl Stamps {
    pub fn of<'a>(paths: impl IntoIterator<Item = &'a PathBuf>) -> Stamps {
        let mut paths: Vec<&PathBuf> = paths.into_iter().collect();
        paths.sort();
        paths.dedup();
        Stamps(
            paths
                .into_iter()
                .map(|path| (path.clone(), Stamp::of(path)))
                .collect(),
        )
    }

    /// The paths themselves.
    pub fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.0.iter().map(|(path, _)| path)
    }

    /// Every folder whose entries matter: each path's own, and those of the links on
    /// the way to it and of its target (a link's target can be edited, or re-pointed,
    /// in another folder).
    pub fn folders(&self) -> Vec<PathBuf> {
        let mut folders: Vec<PathBuf> = Vec::new();
        for (path, stamp) in &self.0 {
            let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            let mut add = |p: &Path| {
                if let Some(parent) = p.parent() {
                    folders.push(parent.to_path_buf());
                }
            };
            add(&absolute);
            for (link, _) in &stamp.links {
                add(&std::path::absolute(link).unwrap_or_else(|_| link.clone()));
            }
            if let Ok(target) = std::fs::canonicalize(path) {
                add(&target);
            }
        }
        folders.sort();
        folders.dedup();
        folders
    }

    /// When any of them last changed, by the file system's clock.
    pub fn last_change(&self) -> Option<SystemTime> {
        self.0.iter().filter_map(|(_, s)| s.last_change()).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_or_a_device_is_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success(), "mkfifo (coreutils) is needed");
        let refused = read_regular(&fifo, 1024).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
        let refused = read_regular(Path::new("/dev/zero"), 1024).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_file_is_read_up_to_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "12345").unwrap();
        assert_eq!(read_regular(&path, 5).unwrap(), b"12345");
        assert_eq!(
            read_regular(&path, 4).unwrap_err().kind(),
            std::io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn a_stamp_sees_writes_renames_and_links_re_pointed() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, "one").unwrap();
        std::fs::write(&b, "two").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("a", &link).unwrap();
        let first = Stamp::of(&link);
        assert_eq!(first.links, vec![(link.clone(), PathBuf::from("a"))]);
        assert_eq!(first, Stamp::of(&link), "nothing changed");
        // Re-pointed to a file of the same size.
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink("b", &link).unwrap();
        let second = Stamp::of(&link);
        assert_ne!(first, second);
        // The target replaced by rename, same size and content.
        let temporary = dir.path().join("b.new");
        std::fs::write(&temporary, "two").unwrap();
        std::fs::rename(&temporary, &b).unwrap();
        assert_ne!(second, Stamp::of(&link));
        // A link through a folder (a ConfigMap's `..data`) resolves component by component.
        std::fs::create_dir(dir.path().join("v1")).unwrap();
        std::fs::write(dir.path().join("v1/file"), "x").unwrap();
        std::os::unix::fs::symlink("v1", dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/file", dir.path().join("file")).unwrap();
        let mounted = Stamp::of(&dir.path().join("file"));
        assert_eq!(mounted.links.len(), 2, "{mounted:?}");
        assert!(mounted.file.is_some());
        let folders = Stamps::of([&dir.path().join("file")]).folders();
        assert!(folders.contains(&dir.path().join("v1")), "{folders:?}");
    }

    #[test]
    fn a_link_loop_is_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("b", dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("b")).unwrap();
        assert_eq!(Stamp::of(&dir.path().join("a")).file, None);
    }
}
