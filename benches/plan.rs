//! Diffing a large file against an observed state of the same size: 1,000 backup
//! locations and 10,000 Schedules (5,000 entries fanned out to two locations each).
//! Issue 3's target: under 100 ms. Beside it, the whole way from the text to a plan
//! against an empty namespace. Run with `cargo bench --bench plan`.

mod common;

use common::generated;
use serde_json::json;
use stowage::config::load::parse_str;
use stowage::config::source::Format;
use stowage::observe::Observed;
use stowage::plan::{Context, plan};
use stowage::render::render;

fn main() {
    divan::main();
}

/// The rendered objects as a cluster would hold them after Velero ran, with one in
/// ten changed so that the plan has real work to report.
fn observed_for(desired: &stowage::render::Desired) -> Observed {
    let mut observed = Observed::default();
    for (index, object) in desired.objects.iter().enumerate() {
        let mut manifest = object.manifest.to_value();
        manifest["metadata"]["resourceVersion"] = json!(index.to_string());
        manifest["status"] = json!({"phase": "Available"});
        if index % 10 == 0 {
            manifest["spec"]["paused"] = json!(true);
            manifest["spec"]["config"] = json!({"region": "eu-west-1"});
        }
        observed.add("bench", manifest).expect("observed object");
    }
    observed
}

#[divan::bench(sample_count = 20)]
fn plan_1000_locations_10000_schedules(bencher: divan::Bencher) {
    let loaded = parse_str("bench.toml", generated(1_000, 5_000), Format::Toml);
    let config = loaded.config.as_ref().expect("valid");
    let desired = render(config, &loaded.materials);
    let observed = observed_for(&desired);
    assert_eq!(observed.objects.len(), desired.objects.len());
    bencher.bench(|| {
        let plan = plan(
            divan::black_box(&desired),
            divan::black_box(&observed),
            &Context::default(),
        );
        assert!(plan.changes.len() > 1_000 && plan.changes.len() < 2_000);
        plan
    });
}

/// The whole way from the file's text to the plan against an empty namespace: load,
/// validate, render and plan, every object a create (product contract's "from empty").
#[divan::bench(sample_count = 10)]
fn file_to_plan_from_empty_1000_locations_10000_schedules(bencher: divan::Bencher) {
    let text = generated(1_000, 5_000);
    bencher.bench(|| {
        let loaded = parse_str("bench.toml", divan::black_box(text.clone()), Format::Toml);
        let diagnostics = stowage::validate::validate(&loaded);
        assert!(diagnostics.is_empty(), "{:?}", diagnostics.first());
        let config = loaded.config.as_ref().expect("valid");
        let desired = render(config, &loaded.materials);
        let plan = plan(&desired, &Observed::default(), &Context::default());
        assert_eq!(plan.changes.len(), desired.objects.len());
        plan
    });
}
