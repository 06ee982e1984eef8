//! The most heap the commands hold at once, at the fleet-file size (1,000 locations,
//! 5,000 schedules): `validate` of the file with each schedule fanned out to two
//! locations, and the whole `plan` from an empty namespace of the file with one location
//! per schedule (6,002 objects), shown as text. The engine's own path, as the commands
//! take it: the file read from disk, the state from a saved empty list.
//!
//! Issue 22's target for the plan: under 48 MiB (b4d9daa held 64.7 MB at once). Counted
//! by a global allocator that keeps its highest total (`peak_alloc`); printed, and
//! refused above the target. Run with `cargo bench --bench memory`.

mod common;

use std::path::Path;

use peak_alloc::PeakAlloc;
use stowage::engine::{self, PlanOptions, StateSource};

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

const PLAN_TARGET: usize = 48 << 20;

fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let fanned = dir.path().join("fanned.toml");
    let single = dir.path().join("single.toml");
    let empty = dir.path().join("empty.yaml");
    std::fs::write(
        &fanned,
        common::generated_with_copies("velero", 1_000, 5_000, 2),
    )
    .expect("write");
    std::fs::write(
        &single,
        common::generated_with_copies("velero", 1_000, 5_000, 1),
    )
    .expect("write");
    std::fs::write(&empty, "apiVersion: v1\nkind: List\nitems: []\n").expect("write");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let validate = most_held_by(|| validated(&fanned));
    let plan = most_held_by(|| runtime.block_on(planned_and_shown(&single, &empty)));
    println!("most heap held at once");
    println!(
        "  validate (11,002 objects):                {}",
        mib(validate)
    );
    println!("  plan from empty, as text (6,002 objects): {}", mib(plan));
    assert!(
        plan < PLAN_TARGET,
        "the plan held {} at once; the target is under {}",
        mib(plan),
        mib(PLAN_TARGET)
    );
}

fn validated(path: &Path) -> engine::ValidFile {
    let checked = engine::check_file(path).expect("readable");
    checked.into_valid().expect("a valid file")
}

async fn planned_and_shown(path: &Path, empty: &Path) -> (engine::ValidFile, engine::Planned) {
    let file = validated(path);
    let options = PlanOptions {
        allow_mass_delete: false,
        bucket_timeout: None,
        now: None,
    };
    let planned = engine::plan(&file, StateSource::Saved(empty), options)
        .await
        .expect("planned");
    assert_eq!(planned.plan.changes.len(), 6_002);
    let mut out = std::io::BufWriter::new(std::io::sink());
    stowage::report::plan::write_text(
        &planned.plan,
        &file.source.name,
        stowage::report::plan::TextOptions { color: false },
        &mut out,
    )
    .expect("shown");
    (file, planned)
}

/// The most bytes `work` had allocated at once, over what was held before it; what it
/// returns is still held when the count is read.
fn most_held_by<T>(work: impl FnOnce() -> T) -> usize {
    let before = HEAP.current_usage();
    HEAP.reset_peak_usage();
    let kept = work();
    let most = HEAP.peak_usage().saturating_sub(before);
    drop(kept);
    most
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}
