//! The age keys a SOPS file is decrypted with, found where sops itself looks for them:
//! the `SOPS_AGE_KEY` variable (keys separated by white space), the file named by
//! `SOPS_AGE_KEY_FILE`, and the user's default key file, `sops/age/keys.txt` under the
//! user configuration directory (`$XDG_CONFIG_HOME`, else `~/.config` on Linux;
//! `~/Library/Application Support` on macOS unless `XDG_CONFIG_HOME` is set).
//!
//! Key material never leaves this module except as parsed [`age::x25519::Identity`]
//! values; what it reports about each place it looked names the place and what was
//! found there, never a key.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub const KEY_VARIABLE: &str = "SOPS_AGE_KEY";
pub const KEY_FILE_VARIABLE: &str = "SOPS_AGE_KEY_FILE";
const USER_KEY_FILE: &str = "sops/age/keys.txt";
/// A key file holds a handful of lines; anything far larger is not a key file.
const KEY_FILE_LIMIT: u64 = 1024 * 1024;

/// One place keys were looked for, and what was there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Looked {
    pub place: String,
    pub found: Found,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Keys(usize),
    Unset,
    NoSuchFile,
    Unreadable(String),
    /// Lines that hold no X25519 identity: a post-quantum or plugin key sops may know but
    /// stowage does not, or a typo. By line number only.
    Unusable(Vec<usize>),
}

/// The age identities found, and where stowage looked.
pub struct AgeKeys {
    identities: Vec<age::x25519::Identity>,
    pub looked: Vec<Looked>,
}

impl AgeKeys {
    /// Looks in every place sops does, reading variables through `env` so that tests
    /// (and the daemon) decide what the process environment is.
    pub fn discover(env: &dyn Fn(&str) -> Option<OsString>) -> AgeKeys {
        let mut keys = AgeKeys {
            identities: Vec::new(),
            looked: Vec::new(),
        };
        match env(KEY_VARIABLE) {
            Some(value) => {
                let text = value.to_string_lossy();
                // sops allows several keys on one line here, separated by white space.
                let words = text
                    .lines()
                    .filter(|line| !line.trim_start().starts_with('#'))
                    .flat_map(str::split_whitespace)
                    .map(|word| word.to_string())
                    .collect::<Vec<_>>();
                keys.take(format!("${KEY_VARIABLE}"), words.iter().map(String::as_str));
            }
            None => keys.looked.push(Looked {
                place: format!("${KEY_VARIABLE}"),
                found: Found::Unset,
            }),
        }
        match env(KEY_FILE_VARIABLE) {
            Some(path) => keys.read_file(
                Path::new(&path),
                format!("${KEY_FILE_VARIABLE} ({})", Path::new(&path).display()),
            ),
            None => keys.looked.push(Looked {
                place: format!("${KEY_FILE_VARIABLE}"),
                found: Found::Unset,
            }),
        }
        if let Some(path) = user_key_file(env) {
            let place = path.display().to_string();
            keys.read_file(&path, place);
        }
        keys
    }

    pub fn identities(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.identities.iter().map(|i| i as &dyn age::Identity)
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    pub fn len(&self) -> usize {
        self.identities.len()
    }

    /// Where keys were looked for, as one line for an error message.
    pub fn describe_search(&self) -> String {
        let parts: Vec<String> = self
            .looked
            .iter()
            .map(|looked| {
                let what = match &looked.found {
                    Found::Keys(1) => "1 key".to_string(),
                    Found::Keys(n) => format!("{n} keys"),
                    Found::Unset => "not set".to_string(),
                    Found::NoSuchFile => "no such file".to_string(),
                    Found::Unreadable(reason) => reason.clone(),
                    Found::Unusable(lines) => {
                        let lines: Vec<String> = lines.iter().map(usize::to_string).collect();
                        format!(
                            "no X25519 age key on line {} (post-quantum and plugin keys are not supported)",
                            lines.join(", ")
                        )
                    }
                };
                format!("{} ({what})", looked.place)
            })
            .collect();
        parts.join(", ")
    }

    fn read_file(&mut self, path: &Path, place: String) {
        use std::io::Read;
        let opened = std::fs::File::open(path);
        let mut text = String::new();
        let read = opened.and_then(|file| file.take(KEY_FILE_LIMIT).read_to_string(&mut text));
        match read {
            Ok(_) => {
                let lines: Vec<&str> = text.lines().collect();
                self.take(place, lines.into_iter());
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                self.looked.push(Looked {
                    place,
                    found: Found::NoSuchFile,
                })
            }
            Err(error) => self.looked.push(Looked {
                place,
                found: Found::Unreadable(match error.kind() {
                    std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                    std::io::ErrorKind::InvalidData => "not UTF-8 text".to_string(),
                    _ => error.kind().to_string(),
                }),
            }),
        }
    }

    /// Parses one identity per entry; comments and blank lines are skipped, as sops
    /// and age-keygen's key files have them.
    fn take<'a>(&mut self, place: String, entries: impl Iterator<Item = &'a str>) {
        let mut count = 0;
        let mut unusable = Vec::new();
        for (index, entry) in entries.enumerate() {
            let entry = entry.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            match age::x25519::Identity::from_str(entry) {
                Ok(identity) => {
                    self.identities.push(identity);
                    count += 1;
                }
                Err(_) => unusable.push(index + 1),
            }
        }
        let found = if unusable.is_empty() || count > 0 {
            Found::Keys(count)
        } else {
            Found::Unusable(unusable)
        };
        self.looked.push(Looked { place, found });
    }
}

/// The user's default key file, where sops looks for it on this platform.
fn user_key_file(env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let non_empty = |name: &str| env(name).filter(|value| !value.is_empty());
    let home = non_empty("HOME").map(PathBuf::from);
    let config_dir = if cfg!(target_os = "macos") {
        non_empty("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join("Library/Application Support")))
    } else if cfg!(windows) {
        non_empty("APPDATA").map(PathBuf::from)
    } else {
        non_empty("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join(".config")))
    };
    config_dir.map(|dir| dir.join(USER_KEY_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    // A key made for these tests only.
    const KEY: &str = "AGE-SECRET-KEY-1M6SJF8KLR7QAJXTJPRRVK5CXVNCSQ6ESWCA9Y34JY45357A80M7S4U9D8M";

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn reports_every_place_it_looked_without_keys() {
        let keys = AgeKeys::discover(&env_of(&[("HOME", "/nonexistent-home")]));
        assert!(keys.is_empty());
        assert_eq!(
            keys.describe_search(),
            "$SOPS_AGE_KEY (not set), $SOPS_AGE_KEY_FILE (not set), \
             /nonexistent-home/.config/sops/age/keys.txt (no such file)"
        );
    }

    #[test]
    fn reads_the_variable_and_never_names_a_key() {
        let value = format!("# created: today\n{KEY}");
        let keys = AgeKeys::discover(&env_of(&[("SOPS_AGE_KEY", &value)]));
        assert_eq!(keys.len(), 1);
        let described = keys.describe_search();
        assert!(
            described.starts_with("$SOPS_AGE_KEY (1 key)"),
            "{described}"
        );
        assert!(!described.contains("AGE-SECRET"), "{described}");
    }

    #[test]
    fn unusable_lines_are_named_by_number() {
        let keys = AgeKeys::discover(&env_of(&[("SOPS_AGE_KEY", "AGE-SECRET-KEY-PQ-1XYZ")]));
        assert!(keys.is_empty());
        assert!(
            keys.describe_search()
                .contains("no X25519 age key on line 1"),
            "{}",
            keys.describe_search()
        );
        assert!(!keys.describe_search().contains("XYZ"));
    }
}
