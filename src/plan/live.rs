//! The checks that need the cluster: plugins in the Velero Deployment, the server's
//! default-location flag, the nodes' region against the snapshot locations', and
//! volumes no snapshot location covers. Pure: they read an `Observed`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic};
use crate::observe::{ClusterFacts, Observed};
use crate::render::{Desired, DesiredObject};
use crate::velero::Kind;
use crate::velero::Plugin;
use crate::velero::server::{DEFAULT_BSL, ServerArgs};

fn provider(object: &DesiredObject) -> &str {
    object.manifest.provider().unwrap_or_default()
}

fn locations(desired: &Desired, kind: Kind) -> impl Iterator<Item = &DesiredObject> {
    desired
        .objects
        .iter()
        .filter(move |o| o.object.kind == kind)
}

pub fn checks(desired: &Desired, observed: &Observed) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    if let Some(deployment) = observed.objects.get(&desired.velero_deployment) {
        plugins(desired, &deployment.manifest, &mut found);
        server_default(desired, &deployment.manifest, &mut found);
    }
    if let Some(facts) = &observed.cluster {
        regions(desired, facts, &mut found);
        uncovered_volumes(desired, facts, &mut found);
    }
    found
}

fn plugins(desired: &Desired, deployment: &Value, found: &mut Vec<Diagnostic>) {
    let images: Vec<&str> = deployment
        .pointer("/spec/template/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["image"].as_str())
        .collect();
    for object in locations(desired, Kind::BackupStorageLocation)
        .chain(locations(desired, Kind::VolumeSnapshotLocation))
    {
        let Some(plugin) = Plugin::of(provider(object)) else {
            continue;
        };
        let image = Plugin::image(plugin);
        if !images.iter().any(|i| i.contains(image)) {
            found.push(
                Diagnostic::error(
                    Code::Plugin,
                    format!(
                        "the Velero Deployment has no plugin for provider {:?} (no init container image with {image}): Velero will mark this location Unavailable",
                        provider(object)
                    ),
                )
                .at(object.origin.child("provider"))
                .help(format!("add the plugin, e.g. `velero plugin add <registry>/{image}:<version>`")),
            );
        }
    }
}

/// Velero re-asserts `default` on the location named after its flag at every restart.
fn server_default(desired: &Desired, deployment: &Value, found: &mut Vec<Diagnostic>) {
    let flag = ServerArgs::of_deployment(deployment)
        .map(|args| args.default_backup_location().to_string())
        .unwrap_or_else(|| DEFAULT_BSL.to_string());
    if flag.is_empty() {
        return;
    }
    let Some(named) =
        locations(desired, Kind::BackupStorageLocation).find(|o| o.object.name == flag)
    else {
        return;
    };
    let chosen =
        locations(desired, Kind::BackupStorageLocation).find(|o| o.manifest.is_default_location());
    if let Some(chosen) = chosen
        && chosen.object.name != flag
    {
        found.push(
            Diagnostic::warning(
                Code::DefaultLocation,
                format!(
                    "the Velero server runs with --default-backup-storage-location={flag}, so at each restart it makes `{flag}` the default again, not `{}`",
                    chosen.object.name
                ),
            )
            .at(named.origin.clone().as_key())
            .help(format!(
                "make `{flag}` the default, rename it, or run the server with --default-backup-storage-location={}",
                chosen.object.name
            )),
        );
    }
}

fn regions(desired: &Desired, facts: &ClusterFacts, found: &mut Vec<Diagnostic>) {
    if facts.node_regions.is_empty() {
        return;
    }
    for object in locations(desired, Kind::VolumeSnapshotLocation) {
        let Some(region) = object.manifest.config().and_then(|c| c.get("region")) else {
            continue;
        };
        if !facts.node_regions.contains(region) {
            let nodes: Vec<&str> = facts.node_regions.iter().map(String::as_str).collect();
            found.push(
                Diagnostic::error(
                    Code::Region,
                    format!(
                        "snapshot location region {region:?} differs from the nodes' region ({}): Velero would fail every snapshot of this cluster's volumes",
                        nodes.join(", ")
                    ),
                )
                .at(object.origin.child("config").child("region")),
            );
        }
    }
}

fn uncovered_volumes(desired: &Desired, facts: &ClusterFacts, found: &mut Vec<Diagnostic>) {
    let covered: Vec<Plugin> = locations(desired, Kind::VolumeSnapshotLocation)
        .filter_map(|o| Plugin::of(provider(o)))
        .collect();
    let mut uncovered: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for volume in &facts.volumes {
        let covered_by_vsl =
            Plugin::for_driver(&volume.driver).is_some_and(|p| covered.contains(&p));
        if !covered_by_vsl {
            uncovered
                .entry(volume.driver.as_str())
                .or_default()
                .push(volume.name.as_str());
        }
    }
    for (driver, volumes) in uncovered {
        let whose = match Plugin::for_driver(driver) {
            Some(plugin) => format!(
                "no snapshot location has the {} provider",
                Plugin::provider_name(plugin)
            ),
            None => "no Velero volume snapshotter handles this driver".to_string(),
        };
        found.push(
            Diagnostic::warning(
                Code::VolumesWithoutVsl,
                format!(
                    "{} volume{} with driver {driver} ({}) will not be snapshotted: {whose}",
                    volumes.len(),
                    if volumes.len() == 1 { "" } else { "s" },
                    volumes.join(", ")
                ),
            )
            .help("declare a snapshot location for that provider, or back these volumes up with CSI snapshots or file-system backup"),
        );
    }
}
