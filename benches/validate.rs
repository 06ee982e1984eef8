//! Validating a large file: 1,000 backup locations and 5,000 schedules (issue 2's
//! target: well under a second). Run with `cargo bench --bench validate`.

mod common;

use common::generated;
use stowage::config::load::parse_str;
use stowage::config::source::Format;

fn main() {
    divan::main();
}

#[divan::bench(sample_count = 10)]
fn validate_1000_locations_5000_schedules(bencher: divan::Bencher) {
    let text = generated(1_000, 5_000);
    bencher.bench(|| {
        let loaded = parse_str("bench.toml", divan::black_box(text.clone()), Format::Toml);
        let diagnostics = stowage::validate::validate(&loaded);
        assert!(
            loaded.config.is_some() && loaded.diagnostics.is_empty() && diagnostics.is_empty(),
            "{:?}",
            diagnostics.first()
        );
        diagnostics
    });
}

/// The floor under `validate` above: the TOML parser stowage reads with
/// (`toml_parser`, the `toml` crate's own) lexing the same text and parsing it into
/// events that nothing keeps. stowage's reader builds its tree from those events.
#[divan::bench(sample_count = 10)]
fn toml_events_alone_1000_locations_5000_schedules(bencher: divan::Bencher) {
    struct Discard;
    impl toml_parser::parser::EventReceiver for Discard {}
    let text = generated(1_000, 5_000);
    bencher.bench(|| {
        let source = toml_parser::Source::new(divan::black_box(&text));
        let tokens = source.lex().into_vec();
        let mut errors: Vec<toml_parser::ParseError> = Vec::new();
        toml_parser::parser::parse_document(&tokens, &mut Discard, &mut errors);
        assert!(errors.is_empty());
        tokens.len()
    });
}

/// Many locations in one bucket, each under its own prefix: the overlap check must
/// grow with the number of locations, not with its square (the ratio between sizes is
/// the number to watch).
#[divan::bench(args = [1_000, 4_000, 16_000], sample_count = 5)]
fn validate_locations_in_one_bucket(bencher: divan::Bencher, locations: usize) {
    let mut text = String::from("version = 1\n");
    for i in 0..locations {
        text.push_str(&format!(
            "[backup_locations.l{i}]\nprovider = \"aws\"\nbucket = \"shared\"\nprefix = \"team-{}/cluster-{i}\"\ndefault = {}\nconfig = {{ region = \"us-east-1\" }}\n",
            i % 50,
            i == 0
        ));
    }
    bencher.bench(|| {
        let loaded = parse_str("bench.toml", divan::black_box(text.clone()), Format::Toml);
        let diagnostics = stowage::validate::validate(&loaded);
        assert!(diagnostics.is_empty(), "{:?}", diagnostics.first());
        diagnostics
    });
}

/// A file with many mistakes, shown as text: showing them must grow with their number,
/// not with its square.
#[divan::bench(args = [1_000, 4_000, 16_000], sample_count = 5)]
fn show_many_errors_as_text(bencher: divan::Bencher, errors: usize) {
    let mut text = String::from("version = 1\n");
    for i in 0..errors {
        text.push_str(&format!("[bogus{i}]\nx = 1\n"));
    }
    let loaded = parse_str("bench.toml", text, Format::Toml);
    let mut diagnostics = loaded.diagnostics.clone();
    diagnostics.extend(stowage::validate::validate(&loaded));
    assert!(diagnostics.len() >= errors);
    bencher.bench(|| {
        let located = stowage::report::diagnostics::locate(&diagnostics, &loaded.source);
        let mut shown = Vec::new();
        stowage::report::diagnostics::write_text(&located, &loaded.source, false, &mut shown)
            .expect("writing to memory");
        shown
    });
}
