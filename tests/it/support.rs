//! Test helpers: files with position markers, and diagnostics as plain tuples.

use std::path::{Path, PathBuf};

use stowage::diagnostic::{Code, Severity};

/// Marks where a diagnostic must point; removed before the file is written.
pub const MARK: char = '⟨';

/// A desired-state file in a temporary directory, with the positions of its markers.
pub struct Fixture {
    /// Kept so the directory lives as long as the fixture.
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    /// 1-based (line, column) of each marker, columns counted in characters.
    pub marks: Vec<(usize, usize)>,
}

pub fn fixture(file_name: &str, marked: &str, extra_files: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut marks = Vec::new();
    let mut text = String::new();
    for (line_index, line) in marked.split('\n').enumerate() {
        if line_index > 0 {
            text.push('\n');
        }
        let mut column = 1;
        for c in line.chars() {
            if c == MARK {
                marks.push((line_index + 1, column));
            } else {
                text.push(c);
                column += 1;
            }
        }
    }
    let path = dir.path().join(file_name);
    std::fs::write(&path, text).expect("write fixture");
    for (name, contents) in extra_files {
        let extra = dir.path().join(name);
        if let Some(parent) = extra.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        std::fs::write(extra, contents).expect("write extra file");
    }
    Fixture {
        _dir: dir,
        path,
        marks,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub code: Code,
    pub severity: Severity,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub help: Option<String>,
}

/// Loads and validates `path`, returning every diagnostic with its position.
pub fn diagnose(path: &Path) -> Vec<Found> {
    let (loaded, diagnostics) = stowage::engine::check_file(path)
        .map(|c| (c.loaded.clone(), c.diagnostics))
        .expect("file loads");
    located(&loaded, &diagnostics)
}

/// An example's diagnostics, its SOPS files opened with the examples' test key.
pub fn diagnose_example(path: &Path) -> Vec<Found> {
    let checked = check_example(path);
    located(&checked.loaded, &checked.diagnostics)
}

fn located(
    loaded: &stowage::config::load::Loaded,
    diagnostics: &[stowage::diagnostic::Diagnostic],
) -> Vec<Found> {
    stowage::report::diagnostics::locate(diagnostics, &loaded.source)
        .into_iter()
        .map(|item| Found {
            code: item.diagnostic.code,
            severity: item.diagnostic.severity,
            line: item.line.unwrap_or(0),
            column: item.column.unwrap_or(0),
            message: item.diagnostic.message.clone(),
            help: item.diagnostic.help.clone(),
        })
        .collect()
}

/// An example checked as a person runs it: with the examples' test age key in
/// `SOPS_AGE_KEY_FILE`, so that examples/sops.toml's credentials decrypt.
pub fn check_example(path: &Path) -> stowage::engine::CheckedFile {
    let key = examples_dir().join("secrets/age-test-key.txt");
    stowage::engine::check_file_with_env(path, &|name| match name {
        "SOPS_AGE_KEY_FILE" => Some(key.clone().into_os_string()),
        _ => std::env::var_os(name),
    })
    .expect("the example loads")
}

pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Every example desired-state file.
pub fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("examples/")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| {
            // Not dotfiles: .sops.yaml is sops' own configuration.
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            !hidden
                && matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("toml" | "yaml" | "yml")
                )
        })
        .collect();
    files.sort();
    files
}

/// Asserts a process's exit code, showing its stderr when it differs.
pub fn assert_exit(out: &std::process::Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `command` on a terminal (a pseudo-terminal through Python's `pty` module, as a
/// person's shell would), with `typed` already typed into it. The exit code, and all
/// it printed (stdout and stderr share the terminal; what was typed is echoed).
pub fn on_terminal(command: &std::process::Command, typed: &str) -> (Option<i32>, String) {
    const DRIVER: &str = r#"
import json, os, pty, sys
spec = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    if spec["cwd"]:
        os.chdir(spec["cwd"])
    os.environ.update(spec["env"])
    os.execv(spec["program"], [spec["program"]] + spec["args"])
os.write(fd, spec["typed"].encode())
out = b""
while True:
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let text = |s: &std::ffi::OsStr| s.to_string_lossy().into_owned();
    let spec = serde_json::json!({
        "program": text(command.get_program()),
        "args": command.get_args().map(text).collect::<Vec<_>>(),
        "cwd": command.get_current_dir().map(|d| d.display().to_string()),
        "env": command
            .get_envs()
            .filter_map(|(k, v)| Some((text(k), text(v?))))
            .collect::<std::collections::BTreeMap<_, _>>(),
        "typed": typed,
    });
    let out = std::process::Command::new("python3")
        .args(["-c", DRIVER, &spec.to_string()])
        .output()
        .expect("python3 runs (tests/run needs it for the emulators)");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A small seeded generator (SplitMix64) for the tests' adversaries: every run prints
/// its seed, and the same seed replays the same choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A seed from the clock, for runs that explore.
    pub fn fresh_seed() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }

    /// One of `choices`.
    pub fn pick<'a, T>(&mut self, choices: &'a [T]) -> &'a T {
        &choices[self.below(choices.len())]
    }
}
