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
