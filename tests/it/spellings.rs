//! An adversary for input spellings (product contract §7.5): from one canonical file
//! (the YAML twin of examples/redundant-schedules), a seeded generator writes variants
//! — a wrong type at every key, YAML 1.1 scalars as keys and values, byte-order
//! marks, odd Unicode, `extends` of every type, SOPS fragments as credentials — and
//! each must be either a located error or render exactly as the canonical file does.
//! Nothing may be silently ignored or reinterpreted.
//!
//! `STOWAGE_SPELLINGS_SEED` replays one seed; `STOWAGE_SPELLINGS_CASES` sets how many
//! variants a run tries (default 400).

use std::path::Path;

use stowage::config::source::{Format, Node, NodeValue};
use stowage::engine::CheckedFile;

use crate::support::{Rng, examples_dir};

/// What a variant must give.
enum Expect {
    /// A located error.
    Error,
    /// A located error, or exactly what this canonical spelling renders.
    SameAs(String),
}

/// A variant's verdict.
#[derive(Debug)]
enum Outcome {
    /// Errors, each with a line.
    Located,
    /// Errors, one of them not located: a violation.
    Unlocated(String),
    /// No error: the rendered objects.
    Rendered(Vec<String>),
}

fn outcome(checked: &CheckedFile) -> Outcome {
    let located =
        stowage::report::diagnostics::locate(&checked.diagnostics, &checked.loaded.source);
    let errors: Vec<_> = located.iter().filter(|l| l.diagnostic.is_error()).collect();
    if let Some(unlocated) = errors.iter().find(|l| l.line.is_none()) {
        return Outcome::Unlocated(format!(
            "{}: {}",
            unlocated.diagnostic.code, unlocated.diagnostic.message
        ));
    }
    if !errors.is_empty() {
        return Outcome::Located;
    }
    let file = checked.clone().into_valid().expect("no errors");
    let documents = stowage::render::to_documents(&file.desired(false), true);
    Outcome::Rendered(documents.into_iter().map(|d| d.yaml).collect())
}

/// A folder holding the canonical YAML file (as `stowage.yaml`) and its credentials.
fn workspace() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let examples = examples_dir();
    let text = std::fs::read_to_string(examples.join("redundant-schedules.yaml")).unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    for credential in ["aws-primary.ini", "aws-other-account.ini"] {
        std::fs::copy(
            examples.join("secrets").join(credential),
            dir.path().join("secrets").join(credential),
        )
        .unwrap();
    }
    (dir, text)
}

fn check(dir: &Path, name: &str, text: &str) -> CheckedFile {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    stowage::engine::check_file(&path).expect("a readable file")
}

/// Every scalar and table in the tree with its span: where a mutation can go.
fn places(node: &Node, out: &mut Vec<(std::ops::Range<usize>, &'static str)>) {
    let kind = match &node.value {
        NodeValue::Map(entries) => {
            for entry in entries {
                places(&entry.value, out);
            }
            "table"
        }
        NodeValue::List(items) => {
            for item in items {
                places(item, out);
            }
            "list"
        }
        NodeValue::String(_) => "string",
        NodeValue::Bool(_) => "bool",
        NodeValue::Integer(_) | NodeValue::LargeInteger(_) | NodeValue::Float(_) => "number",
        _ => "other",
    };
    out.push((node.span.clone(), kind));
}

/// The same mutation on every value: a value of another type where the model wants a
/// string, a boolean, a number, a list or a table.
fn wrong_type_for(kind: &str, rng: &mut Rng) -> &'static str {
    let choices: &[&'static str] = match kind {
        "string" => &["[a, b]", "{a: b}", "17", "true"],
        "bool" => &["\"true\"", "1", "[true]", "{a: b}"],
        "number" => &["\"1\"", "true", "[1]"],
        "list" => &["a", "{a: b}", "7"],
        "table" => &["a", "[a]", "7", "true"],
        _ => &["[x]"],
    };
    choices[rng.below(choices.len())]
}

/// YAML 1.1 spellings that YAML 1.2 and TOML read differently.
const YAML_11_BOOLEANS: [&str; 12] = [
    "y", "Y", "yes", "Yes", "YES", "n", "no", "No", "on", "On", "off", "OFF",
];

#[test]
fn every_spelling_is_a_located_error_or_renders_as_written_canonically() {
    let seed = std::env::var("STOWAGE_SPELLINGS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(Rng::fresh_seed);
    let cases: usize = std::env::var("STOWAGE_SPELLINGS_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    eprintln!(
        "spellings adversary: seed {seed}, {cases} cases (STOWAGE_SPELLINGS_SEED={seed} replays)"
    );
    let mut rng = Rng::new(seed);
    let (dir, canonical) = workspace();
    let expected = match outcome(&check(dir.path(), "stowage.yaml", &canonical)) {
        Outcome::Rendered(documents) => documents,
        other => panic!("the canonical file does not render: {other:?}"),
    };
    let root = stowage::config::source::parse(&canonical, Format::Yaml)
        .0
        .expect("the canonical file parses");
    let mut spots = Vec::new();
    places(&root, &mut spots);
    spots.retain(|(span, kind)| *kind != "other" && span.start < span.end && span.start > 0);

    let mut tried = std::collections::BTreeMap::<&str, usize>::new();
    for case in 0..cases {
        let family = rng.below(6);
        let (name, text, expect) = match family {
            // A wrong type at a random place: always an error.
            0 => {
                let (span, kind) = &spots[rng.below(spots.len())];
                let replacement = wrong_type_for(kind, &mut rng);
                let mut text = canonical.clone();
                // Flow style keeps the replacement on one line wherever it lands.
                text.replace_range(span.clone(), replacement);
                ("wrong type", text, Expect::Error)
            }
            // A YAML 1.1 boolean in place of a boolean value, or as a location's key.
            1 => {
                let spelling = YAML_11_BOOLEANS[rng.below(YAML_11_BOOLEANS.len())];
                let text = if rng.below(2) == 0 {
                    canonical.replacen("default: true", &format!("default: {spelling}"), 1)
                } else {
                    canonical
                        .replacen("  backups-dr:\n", &format!("  {spelling}:\n"), 1)
                        .replace("backups-dr]", &format!("{spelling}]"))
                };
                ("YAML 1.1 boolean", text, Expect::Error)
            }
            // Plain keys YAML reads as something else.
            2 => {
                let key = ["~", "null", "0x1F", "1e3", "0o17", "true", ".inf"][rng.below(7)];
                let text = canonical.replacen(
                    "    team: platform\n",
                    &format!("    {key}: platform\n"),
                    1,
                );
                // `true` and `null` read back as the text they are written as (TOML
                // reads them so too): they must render as the quoted key does.
                if key == "true" || key == "null" {
                    let quoted = canonical.replacen(
                        "    team: platform\n",
                        &format!("    \"{key}\": platform\n"),
                        1,
                    );
                    ("reinterpreted key", text, Expect::SameAs(quoted))
                } else {
                    ("reinterpreted key", text, Expect::Error)
                }
            }
            // A byte-order mark, before the file or before a value.
            3 => {
                let text = if rng.below(2) == 0 {
                    format!("\u{feff}{canonical}")
                } else {
                    canonical.replacen(
                        "bucket: velero-backups\n",
                        "bucket: \u{feff}velero-backups\n",
                        1,
                    )
                };
                ("byte-order mark", text, Expect::SameAs(canonical.clone()))
            }
            // Odd Unicode in names: homoglyphs, zero-width and non-breaking spaces.
            4 => {
                let odd =
                    ["\u{0430}", "\u{200b}", "\u{00a0}", "\u{ff11}", "e\u{0301}"][rng.below(5)];
                let text = canonical
                    .replacen("  backups-dr:\n", &format!("  backups-dr{odd}:\n"), 1)
                    .replace("backups-dr]", &format!("backups-dr{odd}]"));
                ("odd Unicode", text, Expect::Error)
            }
            // `extends` of every type but a path.
            _ => {
                let value = [
                    "[base.yaml]",
                    "{file: base.yaml}",
                    "3",
                    "true",
                    "\"\"",
                    "null",
                ][rng.below(6)];
                let text = format!("extends: {value}\n{canonical}");
                ("extends", text, Expect::Error)
            }
        };
        *tried.entry(name).or_default() += 1;
        let checked = check(dir.path(), "stowage.yaml", &text);
        match outcome(&checked) {
            Outcome::Located => {}
            Outcome::Unlocated(what) => panic!(
                "seed {seed}, case {case} ({name}): an error without a place: {what}\n{text}"
            ),
            Outcome::Rendered(documents) => match expect {
                Expect::Error => panic!(
                    "seed {seed}, case {case} ({name}): accepted, but it must be refused:\n{text}"
                ),
                Expect::SameAs(twin) => {
                    let twin = if twin == canonical {
                        expected.clone()
                    } else {
                        match outcome(&check(dir.path(), "twin.yaml", &twin)) {
                            Outcome::Rendered(documents) => documents,
                            other => panic!("the canonical spelling does not render: {other:?}"),
                        }
                    };
                    assert!(
                        documents == twin,
                        "seed {seed}, case {case} ({name}): renders differently from its canonical spelling:\n{text}"
                    );
                }
            },
        }
    }
    eprintln!("spellings adversary: {tried:?}");
}

#[test]
fn sops_fragments_as_credentials_are_refused_at_the_file_key() {
    // Every cut of an encrypted credential file: each is stowage::sops (it still holds
    // ciphertext) or a credential-format error (cut before the first ciphertext), never
    // a credential.
    let (dir, canonical) = workspace();
    // The primary credential read from a file, which is cut below.
    let canonical = canonical.replacen(
        "    key: primary\n    external: true\n",
        "    key: primary\n    file: secrets/aws-primary.ini\n",
        1,
    );
    assert!(canonical.contains("file: secrets/aws-primary.ini"));
    let encrypted = std::fs::read(examples_dir().join("secrets").join("aws.sops.ini")).unwrap();
    let seed = Rng::fresh_seed();
    let mut rng = Rng::new(seed);
    let cuts: Vec<usize> = (0..40).map(|_| rng.below(encrypted.len())).collect();
    for cut in cuts {
        std::fs::write(
            dir.path().join("secrets/aws-primary.ini"),
            &encrypted[..cut],
        )
        .unwrap();
        let checked = check(dir.path(), "stowage.yaml", &canonical);
        let located =
            stowage::report::diagnostics::locate(&checked.diagnostics, &checked.loaded.source);
        let at_file: Vec<&str> = located
            .iter()
            .filter(|l| l.diagnostic.is_error())
            .filter(|l| {
                l.diagnostic
                    .at
                    .as_ref()
                    .is_some_and(|p| p.dotted() == "credentials.primary.file")
            })
            .map(|l| l.diagnostic.code.as_str())
            .collect();
        assert!(
            at_file
                .iter()
                .any(|code| matches!(*code, "stowage::sops" | "stowage::credential-format")),
            "seed {seed}: a file cut at byte {cut} was not refused at credentials.primary.file: {:?}",
            located
                .iter()
                .map(|l| (l.diagnostic.code.as_str(), l.diagnostic.message.as_str()))
                .collect::<Vec<_>>()
        );
    }
}
