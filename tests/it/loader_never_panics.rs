//! The loader, validator and text renderer never panic: arbitrary bytes, mutations of
//! every example (long lines and deep nesting among them), and generated deep and wide
//! documents, in both formats. Case counts are fixed so the run is bounded.

use proptest::prelude::*;
use stowage::config::load::parse_str;
use stowage::config::source::Format;

use crate::support::example_files;

/// Loads, validates and shows `text` as `validate` would; the text shown.
fn load_and_validate(text: String, format: Format) -> String {
    let loaded = parse_str("fuzz", text, format);
    let mut diagnostics = loaded.diagnostics.clone();
    diagnostics.extend(stowage::validate::validate(&loaded));
    // Locating and showing must not panic either, whatever spans the parsers produced.
    let located = stowage::report::diagnostics::locate(&diagnostics, &loaded.source);
    let mut shown = Vec::new();
    stowage::report::diagnostics::write_text(&located, &loaded.source, false, &mut shown)
        .expect("writing to memory");
    String::from_utf8(shown).expect("UTF-8")
}

fn examples() -> Vec<(String, Format)> {
    example_files()
        .into_iter()
        .map(|path| {
            let format = Format::from_path(&path).expect("example format");
            (
                std::fs::read_to_string(&path).expect("read example"),
                format,
            )
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete {
        at: usize,
        len: usize,
    },
    Insert {
        at: usize,
        bytes: String,
    },
    Duplicate {
        at: usize,
        len: usize,
    },
    Swap {
        a: usize,
        b: usize,
    },
    /// A run of one character long enough to pass miette's and the excerpt's limits.
    LongLine {
        at: usize,
        len: usize,
    },
    /// Brackets or braces opened `depth` times and closed again.
    Nest {
        at: usize,
        depth: usize,
        open: &'static str,
        close: &'static str,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let token = prop_oneof![
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("=".to_string()),
        Just(":".to_string()),
        Just("\n".to_string()),
        Just("  ".to_string()),
        Just("- ".to_string()),
        Just("*".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("\u{1F512}".to_string()),
        Just("0x".to_string()),
        Just("1e99".to_string()),
        "[ -~]{0,8}",
    ];
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), token).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 0usize..200).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap { a, b }),
        (any::<usize>(), 60_000usize..70_000).prop_map(|(at, len)| Mutation::LongLine { at, len }),
        (
            any::<usize>(),
            1usize..400,
            prop_oneof![
                Just(("[", "]")),
                Just(("{a=", "}")),
                Just(("{a: ", "}")),
                Just(("- ", "")),
            ]
        )
            .prop_map(|(at, depth, (open, close))| Mutation::Nest {
                at,
                depth,
                open,
                close
            }),
    ]
}

fn char_boundary(text: &str, at: usize) -> usize {
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &str, mutation: &Mutation) -> String {
    let mut text = text.to_string();
    match mutation {
        Mutation::Delete { at, len } => {
            let start = char_boundary(&text, *at);
            let end = char_boundary(&text, (start + len).min(text.len()));
            text.replace_range(start..end.max(start), "");
        }
        Mutation::Insert { at, bytes } => {
            let at = char_boundary(&text, *at);
            text.insert_str(at, bytes);
        }
        Mutation::Duplicate { at, len } => {
            let start = char_boundary(&text, *at);
            let end = char_boundary(&text, (start + len).min(text.len())).max(start);
            let copy = text[start..end].to_string();
            text.insert_str(end, &copy);
        }
        Mutation::Swap { a, b } => {
            let mut lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let (a, b) = (a % lines.len(), b % lines.len());
                lines.swap(a, b);
            }
            text = lines.join("\n");
        }
        Mutation::LongLine { at, len } => {
            let at = char_boundary(&text, *at);
            text.insert_str(at, &"x".repeat(*len));
        }
        Mutation::Nest {
            at,
            depth,
            open,
            close,
        } => {
            let at = char_boundary(&text, *at);
            text.insert_str(
                at,
                &format!("{}1{}", open.repeat(*depth), close.repeat(*depth)),
            );
        }
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        load_and_validate(text.clone(), Format::Toml);
        load_and_validate(text, Format::Yaml);
    }

    #[test]
    fn mutated_examples(
        which in any::<usize>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let examples = examples();
        let (text, format) = &examples[which % examples.len()];
        let mut text = text.clone();
        for mutation in &mutations {
            text = apply(&text, mutation);
        }
        load_and_validate(text, *format);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// Deep documents (up to 5,000 levels, past every parser's limit) and wide ones
    /// (a key's value on one line of up to 200,000 characters), in both formats.
    #[test]
    fn deep_and_wide_documents(
        depth in 0usize..5_000,
        width in 0usize..200_000,
        inline_table in any::<bool>(),
    ) {
        let (open, close) = if inline_table { ("{a=", "}") } else { ("[", "]") };
        let toml = format!(
            "version = 1\nx = {}1{}\n[backup_locations.a]\nprovider = \"aws\"\nbucket = \"{}\"\n",
            open.repeat(depth),
            close.repeat(depth),
            "b".repeat(width)
        );
        load_and_validate(toml, Format::Toml);
        let (open, close) = if inline_table { ("{a: ", "}") } else { ("[", "]") };
        let yaml = format!(
            "version: 1\nx: {}1{}\nbackup_locations:\n  a: {{provider: aws, bucket: {}}}\n",
            open.repeat(depth),
            close.repeat(depth),
            "b".repeat(width)
        );
        load_and_validate(yaml, Format::Yaml);
        let indented: String = (0..depth.min(2_000))
            .map(|level| format!("{}k{level}:\n", "  ".repeat(level)))
            .collect();
        load_and_validate(format!("version: 1\nx:\n{indented}"), Format::Yaml);
    }
}

#[test]
fn an_error_on_a_line_of_65536_characters_or_more_is_located_not_a_panic() {
    let long = "x".repeat(70_000);
    let cases = [
        (
            format!(
                "version = 1\n[backup_locations.a]\nprovider = \"aws\"\nconfig = {{ region = \"{long}\", bogus = 1 }}\n"
            ),
            Format::Toml,
            "at fuzz:4:70033 (too wide to show)",
        ),
        (
            format!(
                "version: 1\nbackup_locations:\n  a:\n    provider: aws\n    config: {{region: {long}, bogus: 1}}\n"
            ),
            Format::Yaml,
            "at fuzz:5:70031 (too wide to show)",
        ),
    ];
    for (text, format, location) in cases {
        let shown = load_and_validate(text, format);
        assert!(shown.len() < 10_000, "the long line is not printed");
        assert!(shown.contains(location), "{shown}");
    }
}

#[test]
fn yaml_parser_limits_and_options_are_told_in_the_file_s_terms() {
    let cases = [
        (
            format!("version: 1\nx: {}{}\n", "[".repeat(70), "]".repeat(70)),
            "deeper than any desired-state file",
        ),
        (
            "version: 1\nversion: 1\n".to_string(),
            "duplicate mapping key: version",
        ),
    ];
    for (text, expected) in cases {
        let loaded = parse_str("stowage.yaml", text, Format::Yaml);
        let messages: Vec<&str> = loaded
            .diagnostics
            .iter()
            .map(|d| d.message.as_str())
            .collect();
        assert!(
            messages.iter().any(|m| m.contains(expected)),
            "{messages:?}"
        );
        for internal in ["budget", "Depth {", "DuplicateKeyPolicy", "Options"] {
            assert!(
                messages.iter().all(|m| !m.contains(internal)),
                "{internal} in {messages:?}"
            );
        }
    }
}
