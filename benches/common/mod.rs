//! A generated desired-state file shared by the benchmarks.

use std::fmt::Write;

/// A valid file: 1,000 locations over 10 buckets (100 prefixes each), 5,000 schedules
/// each fanned out to two locations, with filters and snapshot locations.
#[allow(dead_code)] // each bench uses one of the two
pub fn generated(locations: usize, schedules: usize) -> String {
    generated_in("velero", locations, schedules)
}

/// The same file, for Velero in `namespace`.
#[allow(dead_code)]
pub fn generated_in(namespace: &str, locations: usize, schedules: usize) -> String {
    generated_with_copies(namespace, locations, schedules, 2)
}

/// The same file with each schedule sent to `copies` locations (1 or 2): with one,
/// each entry is one Velero Schedule.
#[allow(dead_code)]
pub fn generated_with_copies(
    namespace: &str,
    locations: usize,
    schedules: usize,
    copies: usize,
) -> String {
    let mut text = format!("version = 1\n\n[velero]\nnamespace = \"{namespace}\"\n\n");
    for provider in ["aws", "gcp"] {
        let _ = writeln!(
            text,
            "[credentials.{provider}]\nexternal = true\nsecret = \"{provider}-credentials\"\n"
        );
    }
    for i in 0..locations {
        let _ = writeln!(
            text,
            "[backup_locations.location-{i}]\nprovider = \"aws\"\nbucket = \"bucket-{}\"\nprefix = \"cluster-{i}\"\ndefault = {}\ncredential = \"aws\"\nbackup_sync_period = \"1m\"\nconfig = {{ region = \"us-east-1\", s3ForcePathStyle = \"true\", s3Url = \"https://s3.example.com\" }}\n",
            i % 10,
            i == 0
        );
    }
    for region in ["us-east-1", "us-west-2"] {
        let _ = writeln!(
            text,
            "[snapshot_locations.ebs-{region}]\nprovider = \"aws\"\nconfig = {{ region = \"{region}\" }}\n"
        );
    }
    for i in 0..schedules {
        let places: Vec<String> = (0..copies)
            .map(|copy| format!("\"location-{}\"", (i + copy) % locations))
            .collect();
        let _ = writeln!(
            text,
            "[schedules.schedule-{i}]\ncron = \"{} {} * * 1-5\"\nstorage_locations = [{}]\nvolume_snapshot_locations = [\"ebs-us-east-1\"]\nttl = \"720h\"\nincluded_namespaces = [\"team-{i}\", \"shared-*\"]\nexcluded_resources = [\"events\"]\nlabel_selector = {{ match_labels = {{ app = \"app-{i}\" }} }}\n",
            i % 60,
            i % 24,
            places.join(", ")
        );
    }
    text
}
