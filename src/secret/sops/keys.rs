//! The age keys a SOPS file is decrypted with, found where sops itself looks for them:
//! the `SOPS_AGE_KEY` variable (keys separated by white space), the file named by
//! `SOPS_AGE_KEY_FILE`, the output of `SOPS_AGE_KEY_CMD` (a command line, split as a
//! shell would but run without one, once per recipient with that recipient in
//! `SOPS_AGE_RECIPIENT`), and the user's default key file, `sops/age/keys.txt` under the
//! user configuration directory (`$XDG_CONFIG_HOME`, else `~/.config` on Linux;
//! `~/Library/Application Support` on macOS unless `XDG_CONFIG_HOME` is set).
//!
//! Key material never leaves this module except as parsed [`age::x25519::Identity`]
//! values; what it reports about each place it looked names the place and what was
//! found there, never a key.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub const KEY_VARIABLE: &str = "SOPS_AGE_KEY";
pub const KEY_FILE_VARIABLE: &str = "SOPS_AGE_KEY_FILE";
pub const KEY_COMMAND_VARIABLE: &str = "SOPS_AGE_KEY_CMD";
/// What sops tells the key command: the recipient whose key it is asked for.
const RECIPIENT_VARIABLE: &str = "SOPS_AGE_RECIPIENT";
const USER_KEY_FILE: &str = "sops/age/keys.txt";
/// A key file holds a handful of lines; anything far larger is not a key file.
const KEY_FILE_LIMIT: u64 = 1024 * 1024;
/// How long `SOPS_AGE_KEY_CMD` may take: a password manager answers in seconds; a
/// command that never answers must not freeze `validate` or the daemon.
pub const KEY_COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Waits for `child` to exit, at most `limit`; `None` when it is still running.
fn wait_at_most(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(100));
            }
            Ok(None) | Err(_) => return None,
        }
    }
}

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
    looked: RefCell<Vec<Looked>>,
    /// `SOPS_AGE_KEY_CMD`, run when a file names a recipient, and what it gave.
    command: Option<String>,
    from_command: RefCell<BTreeMap<String, Vec<age::x25519::Identity>>>,
}

impl AgeKeys {
    /// Looks in every place sops does, reading variables through `env` so that tests
    /// (and the daemon) decide what the process environment is.
    pub fn discover(env: &dyn Fn(&str) -> Option<OsString>) -> AgeKeys {
        let mut keys = AgeKeys {
            identities: Vec::new(),
            looked: RefCell::new(Vec::new()),
            command: env(KEY_COMMAND_VARIABLE).map(|c| c.to_string_lossy().into_owned()),
            from_command: RefCell::default(),
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
            None => keys.note(format!("${KEY_VARIABLE}"), Found::Unset),
        }
        match env(KEY_FILE_VARIABLE) {
            Some(path) => keys.read_file(
                Path::new(&path),
                format!("${KEY_FILE_VARIABLE} ({})", Path::new(&path).display()),
            ),
            None => keys.note(format!("${KEY_FILE_VARIABLE}"), Found::Unset),
        }
        if keys.command.is_none() {
            keys.note(format!("${KEY_COMMAND_VARIABLE}"), Found::Unset);
        }
        if let Some(path) = user_key_file(env) {
            let place = path.display().to_string();
            keys.read_file(&path, place);
        }
        keys
    }

    /// The identities to try on a data key encrypted for `recipient`: those found, and
    /// what `SOPS_AGE_KEY_CMD` gives for that recipient (run once per recipient).
    pub fn for_recipient(&self, recipient: &str) -> Vec<age::x25519::Identity> {
        let mut identities = self.identities.clone();
        if let Some(command) = &self.command {
            let mut cache = self.from_command.borrow_mut();
            let given = cache
                .entry(recipient.to_string())
                .or_insert_with(|| self.run_command(command, recipient));
            identities.extend(given.iter().cloned());
        }
        identities
    }

    /// Whether any key was found, or a command may give one.
    pub fn may_have_keys(&self) -> bool {
        !self.identities.is_empty() || self.command.is_some()
    }

    /// Whether a key was found, or a command gave one.
    pub fn found_any(&self) -> bool {
        !self.identities.is_empty() || self.from_command.borrow().values().any(|k| !k.is_empty())
    }

    pub fn len(&self) -> usize {
        self.identities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    fn note(&self, place: String, found: Found) {
        self.looked.borrow_mut().push(Looked { place, found });
    }

    /// Runs the key command as sops does: split like a shell line, no shell, the
    /// recipient in `SOPS_AGE_RECIPIENT`, identities read from its standard output.
    /// Its error output is not shown: it may hold anything.
    fn run_command(&self, command: &str, recipient: &str) -> Vec<age::x25519::Identity> {
        use std::io::Read;
        use std::process::{Command, Stdio};
        let place = format!("${KEY_COMMAND_VARIABLE} for {recipient}");
        let Some(words) = shlex::split(command).filter(|w| !w.is_empty()) else {
            self.note(place, Found::Unreadable("not a command line".into()));
            return Vec::new();
        };
        use std::os::unix::process::CommandExt;
        let child = Command::new(&words[0])
            .args(&words[1..])
            .env(RECIPIENT_VARIABLE, recipient)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // A group of its own, so that an overrun stops whatever it started too.
            .process_group(0)
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(error) => {
                let reason = match error.kind() {
                    std::io::ErrorKind::NotFound => format!("no program {}", words[0]),
                    std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                    kind => kind.to_string(),
                };
                self.note(place, Found::Unreadable(reason));
                return Vec::new();
            }
        };
        // Read on a thread of its own, so the wait below can give up.
        let reader = child.stdout.take().map(|out| {
            std::thread::spawn(move || {
                let mut text = String::new();
                out.take(KEY_FILE_LIMIT)
                    .read_to_string(&mut text)
                    .map(|_| text)
            })
        });
        let status = wait_at_most(&mut child, KEY_COMMAND_TIMEOUT);
        let Some(status) = status else {
            // Stopped with everything it started, which closes its output.
            let group = i32::try_from(child.id()).unwrap_or(0);
            if group > 0 {
                // SAFETY: kill(2) with a negative pid signals that process group only.
                unsafe {
                    libc::kill(-group, libc::SIGKILL);
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            self.note(
                place,
                Found::Unreadable(format!(
                    "no answer within {} s; stopped",
                    KEY_COMMAND_TIMEOUT.as_secs()
                )),
            );
            return Vec::new();
        };
        let read = reader.map(|reader| reader.join().unwrap_or_else(|_| Ok(String::new())));
        let status: std::io::Result<std::process::ExitStatus> = Ok(status);
        match (read, status) {
            (Some(Ok(text)), Ok(status)) if status.success() => {
                let mut keys = AgeKeys {
                    identities: Vec::new(),
                    looked: RefCell::default(),
                    command: None,
                    from_command: RefCell::default(),
                };
                keys.take(place, text.lines());
                self.looked.borrow_mut().extend(keys.looked.into_inner());
                keys.identities
            }
            (_, Ok(status)) if !status.success() => {
                let reason = match status.code() {
                    Some(code) => format!("exit status {code}"),
                    None => "killed by a signal".to_string(),
                };
                self.note(place, Found::Unreadable(reason));
                Vec::new()
            }
            _ => {
                self.note(
                    place,
                    Found::Unreadable("its output is not UTF-8 text".into()),
                );
                Vec::new()
            }
        }
    }

    /// Where keys were looked for, as one line for an error message.
    pub fn describe_search(&self) -> String {
        let parts: Vec<String> = self
            .looked
            .borrow()
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
        // A FIFO or a device here is refused, never waited on.
        let read = crate::input::read_regular(path, KEY_FILE_LIMIT).and_then(|bytes| {
            String::from_utf8(bytes)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))
        });
        match read {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                self.take(place, lines.into_iter());
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                self.note(place, Found::NoSuchFile)
            }
            Err(error) => self.note(
                place,
                Found::Unreadable(match error.kind() {
                    std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                    std::io::ErrorKind::InvalidData => "not UTF-8 text, or too large".to_string(),
                    std::io::ErrorKind::InvalidInput => "not a regular file".to_string(),
                    _ => error.kind().to_string(),
                }),
            ),
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
        self.note(place, found);
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
             $SOPS_AGE_KEY_CMD (not set), \
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
    fn the_key_command_runs_once_per_recipient_with_that_recipient() {
        let command = format!("sh -c 'test \"$SOPS_AGE_RECIPIENT\" = age1wanted && echo {KEY}'");
        let keys = AgeKeys::discover(&env_of(&[("SOPS_AGE_KEY_CMD", &command)]));
        assert!(keys.may_have_keys() && !keys.found_any());
        assert_eq!(keys.for_recipient("age1wanted").len(), 1);
        assert_eq!(keys.for_recipient("age1wanted").len(), 1);
        assert!(keys.for_recipient("age1other").is_empty());
        let described = keys.describe_search();
        assert!(
            described.contains("$SOPS_AGE_KEY_CMD for age1wanted (1 key)")
                && described.contains("$SOPS_AGE_KEY_CMD for age1other (exit status 1)"),
            "{described}"
        );
        // Run once for each recipient: the second ask was answered from what it gave.
        assert_eq!(
            described.matches("for age1wanted").count(),
            1,
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
