//! `stowage import`: a desired-state file from the Velero objects a cluster already
//! has, that plans to no changes but adoption. Credentials are imported as `external`
//! (the Secrets stay where they are; their values are never read into the file).
//! Pure: an `Observed` in, TOML text out.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::crd;
use crate::observe::{Observed, ObservedObject};
use crate::velero::Kind;
use crate::velero::server::ServerArgs;

/// Labels Velero's tools and stowage put on objects themselves; not the user's.
fn is_own_label(key: &str) -> bool {
    key == crate::velero::MANAGED_BY_LABEL || key == crate::velero::OWNER_LABEL
}

fn toml_value(value: &Value) -> Option<toml::Value> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(items) => toml::Value::Array(items.iter().filter_map(toml_value).collect()),
        Value::Object(map) => toml::Value::Table(
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), toml_value(v)?)))
                .collect(),
        ),
    })
}

fn string_table(map: &BTreeMap<String, String>) -> toml::Value {
    toml::Value::Table(
        map.iter()
            .map(|(k, v)| (k.clone(), toml::Value::String(v.clone())))
            .collect(),
    )
}

fn text(value: &Value) -> Option<String> {
    value.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

/// Credentials named by locations, one `external` entry per Secret key.
struct Credentials {
    by_ref: BTreeMap<(String, String), String>,
}

impl Credentials {
    fn collect(objects: &[&ObservedObject]) -> Credentials {
        let refs: Vec<(String, String)> = objects
            .iter()
            .filter_map(|o| {
                let credential = &o.spec()["credential"];
                Some((text(&credential["name"])?, text(&credential["key"])?))
            })
            .collect();
        let mut by_ref = BTreeMap::new();
        for (secret, key) in refs {
            let keys_of_secret = objects
                .iter()
                .filter(|o| o.spec()["credential"]["name"] == secret.as_str())
                .filter_map(|o| text(&o.spec()["credential"]["key"]))
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            let name = if keys_of_secret > 1 {
                format!("{secret}-{key}")
            } else {
                secret.clone()
            };
            by_ref.insert((secret, key), name);
        }
        Credentials { by_ref }
    }

    fn name_for(&self, spec: &Value) -> Option<String> {
        let credential = &spec["credential"];
        let key = (text(&credential["name"])?, text(&credential["key"])?);
        self.by_ref.get(&key).cloned()
    }
}

/// The owner most of the stowage-managed `objects` carry, if any does (ties go to the
/// name that sorts first); `None` when they are unmanaged or the default owner's.
fn managing_owner<'a>(objects: impl Iterator<Item = &'a &'a ObservedObject>) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for object in objects {
        let managed = object
            .labels
            .get(crate::velero::MANAGED_BY_LABEL)
            .map(String::as_str)
            == Some(crate::velero::MANAGED_BY_VALUE);
        if let Some(owner) = object
            .labels
            .get(crate::velero::OWNER_LABEL)
            .filter(|_| managed)
        {
            *counts.entry(owner.as_str()).or_default() += 1;
        }
    }
    let most = counts.values().copied().max()?;
    counts
        .into_iter()
        .find(|(_, count)| *count == most)
        .map(|(owner, _)| owner.to_string())
        .filter(|owner| owner != "default")
}

/// An object's labels other than stowage's own.
fn user_labels(object: &ObservedObject) -> BTreeMap<String, String> {
    object
        .labels
        .iter()
        .filter(|(k, _)| !is_own_label(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// One `[schedules.*]` entry for a Velero Schedule's `spec` (the template's keys in the
/// file's spelling).
fn schedule_entry(schedule: &ObservedObject, spec: &Value) -> toml::Table {
    let mut entry = toml::Table::new();
    if let Some(cron) = text(&spec["schedule"]) {
        entry.insert("cron".into(), cron.into());
    }
    if spec["paused"] == true {
        entry.insert("paused".into(), true.into());
    }
    if let Some(owned) = spec["useOwnerReferencesInBackup"].as_bool().filter(|b| *b) {
        entry.insert("use_owner_references_in_backup".into(), owned.into());
    }
    let labels = user_labels(schedule);
    if !labels.is_empty() {
        entry.insert("labels".into(), string_table(&labels));
    }
    if !schedule.annotations.is_empty() {
        entry.insert("annotations".into(), string_table(&schedule.annotations));
    }
    // The template read as Velero's type and written as the file's: render's mapping,
    // the other way. The API server held it to the same schema, so it reads.
    let template = spec
        .get("template")
        .and_then(|template| crd::BackupSpec::deserialize(template).ok())
        .map(|template| crate::render::backup_template(&template))
        .and_then(|template| toml::Table::try_from(template).ok());
    entry.extend(template.map(without_empty_tables).into_iter().flatten());
    entry
}

/// `table` without the tables left empty (the Velero CLI writes `hooks: {}` and
/// `metadata: {}`, which mean nothing set).
fn without_empty_tables(table: toml::Table) -> toml::Table {
    table
        .into_iter()
        .filter_map(|(key, value)| match value {
            toml::Value::Table(inner) => {
                let inner = without_empty_tables(inner);
                (!inner.is_empty()).then_some((key, toml::Value::Table(inner)))
            }
            other => Some((key, other)),
        })
        .collect()
}

/// Velero Schedules that are one fanned-out schedule as stowage renders it: named
/// `<entry>-<location>` after their storage location, alike but for the location, the
/// ttl and a shift of the cron.
struct FanOut<'a> {
    entry: String,
    /// The copies in the order of their shift: (Schedule, location, minutes after the
    /// first copy's cron).
    copies: Vec<(&'a ObservedObject, String, u64)>,
}

/// The last minute a copy may be shifted by and still be recognised (a day).
const LONGEST_SHIFT_MINUTES: u64 = 24 * 60 - 1;

/// How many minutes `later` is `earlier` shifted by, as render shifts crons.
fn shift_between(earlier: &str, later: &str) -> Option<u64> {
    if earlier == later {
        return Some(0);
    }
    (1..=LONGEST_SHIFT_MINUTES).find(|minutes| {
        crate::velero::cron::shifted(earlier, std::time::Duration::from_secs(minutes * 60))
            .is_ok_and(|cron| cron == later)
    })
}

/// A Schedule's spec without what copies of one fan-out may differ in.
fn shared_part(schedule: &ObservedObject) -> Value {
    let mut spec = schedule.spec().clone();
    if let Some(object) = spec.as_object_mut() {
        object.remove("schedule");
        object.remove("skipImmediately");
    }
    if let Some(template) = spec.get_mut("template").and_then(Value::as_object_mut) {
        template.remove("storageLocation");
        template.remove("ttl");
    }
    json!([spec, user_labels(schedule), schedule.annotations])
}

/// Groups `schedules` into fan-outs (two or more copies) and the rest.
fn fan_outs<'a>(schedules: &[&'a ObservedObject]) -> (Vec<FanOut<'a>>, Vec<&'a ObservedObject>) {
    let mut groups: BTreeMap<String, Vec<(&ObservedObject, String)>> = BTreeMap::new();
    let mut singles = Vec::new();
    for schedule in schedules {
        let location = text(&schedule.spec()["template"]["storageLocation"]);
        let entry = location.as_deref().and_then(|location| {
            schedule
                .object
                .name
                .strip_suffix(location)?
                .strip_suffix('-')
                .filter(|entry| !entry.is_empty())
        });
        match (entry, location) {
            (Some(entry), Some(location)) => groups
                .entry(entry.to_string())
                .or_default()
                .push((schedule, location)),
            _ => singles.push(*schedule),
        }
    }
    // An entry named like a Schedule that is there already would take its place in
    // the file: those copies stay Schedules of their own.
    let taken: std::collections::BTreeSet<&str> =
        schedules.iter().map(|s| s.object.name.as_str()).collect();
    let mut found = Vec::new();
    for (entry, members) in groups {
        match fan_out(&entry, &members).filter(|_| !taken.contains(entry.as_str())) {
            Some(fan_out) => found.push(fan_out),
            None => singles.extend(members.into_iter().map(|(schedule, _)| schedule)),
        }
    }
    singles.sort_by(|a, b| a.object.name.cmp(&b.object.name));
    (found, singles)
}

fn fan_out<'a>(entry: &str, members: &[(&'a ObservedObject, String)]) -> Option<FanOut<'a>> {
    if members.len() < 2 {
        return None;
    }
    let shared = shared_part(members[0].0);
    if members
        .iter()
        .any(|(schedule, _)| shared_part(schedule) != shared)
    {
        return None;
    }
    let cron = |schedule: &ObservedObject| text(&schedule.spec()["schedule"]).unwrap_or_default();
    // The first copy is one every other is a shift of; of those, the one after which
    // the last copy runs soonest (a daily cron shifted by 23h is also the day before).
    members
        .iter()
        .filter_map(|(first, _)| {
            let mut copies = members
                .iter()
                .map(|(schedule, location)| {
                    Some((
                        *schedule,
                        location.clone(),
                        shift_between(&cron(first), &cron(schedule))?,
                    ))
                })
                .collect::<Option<Vec<_>>>()?;
            copies.sort_by(|a, b| (a.2, &a.1).cmp(&(b.2, &b.1)));
            Some(FanOut {
                entry: entry.to_string(),
                copies,
            })
        })
        .min_by_key(|fan_out| fan_out.copies.last().map(|(_, _, shift)| *shift))
}

impl FanOut<'_> {
    /// The entry: the first copy's settings, `storage_locations` in shift order, the
    /// most common ttl, and each copy's own ttl and shift where they differ.
    fn entry(&self) -> (String, toml::Table) {
        let (first, _, _) = &self.copies[0];
        let mut entry = schedule_entry(first, first.spec());
        entry.remove("storage_location");
        entry.insert(
            "storage_locations".into(),
            toml::Value::Array(
                self.copies
                    .iter()
                    .map(|(_, location, _)| toml::Value::String(location.clone()))
                    .collect(),
            ),
        );
        let ttl_of = |schedule: &ObservedObject| text(&schedule.spec()["template"]["ttl"]);
        let mut counts: BTreeMap<Option<String>, usize> = BTreeMap::new();
        for (schedule, _, _) in &self.copies {
            *counts.entry(ttl_of(schedule)).or_default() += 1;
        }
        let most = counts.values().copied().max().unwrap_or_default();
        let common = counts
            .iter()
            .find(|(ttl, count)| **count == most && **ttl == ttl_of(first))
            .or_else(|| counts.iter().find(|(_, count)| **count == most))
            .and_then(|(ttl, _)| ttl.clone());
        match &common {
            Some(ttl) => entry.insert("ttl".into(), ttl.clone().into()),
            None => entry.remove("ttl"),
        };
        // A shift of k × the second copy's is a stagger; any other is each copy's own.
        let step = self.copies[1].2;
        let uniform = step > 0
            && self
                .copies
                .iter()
                .enumerate()
                .all(|(index, (_, _, shift))| *shift == step * index as u64);
        if uniform {
            entry.insert("stagger".into(), format!("{step}m").into());
        }
        let mut copy_tables = toml::Table::new();
        for (schedule, location, shift) in &self.copies {
            let mut own = toml::Table::new();
            if let Some(ttl) = ttl_of(schedule).filter(|ttl| Some(ttl) != common.as_ref()) {
                own.insert("ttl".into(), ttl.into());
            }
            if !uniform && *shift > 0 {
                own.insert("stagger".into(), format!("{shift}m").into());
            }
            if !own.is_empty() {
                copy_tables.insert(location.clone(), toml::Value::Table(own));
            }
        }
        if !copy_tables.is_empty() {
            entry.insert("copy".into(), toml::Value::Table(copy_tables));
        }
        (self.entry.clone(), entry)
    }
}

/// The desired-state file, as TOML, for the Velero objects in `observed`.
pub fn import(observed: &Observed, namespace: &str, deployment: &str) -> String {
    let of_kind = |kind: Kind| -> Vec<&ObservedObject> {
        observed
            .objects
            .values()
            .filter(|o| o.object.kind == kind && o.object.namespace == namespace)
            .collect()
    };
    let locations = of_kind(Kind::BackupStorageLocation);
    let snapshots = of_kind(Kind::VolumeSnapshotLocation);
    let schedules = of_kind(Kind::Schedule);
    let with_credentials: Vec<&ObservedObject> =
        locations.iter().chain(&snapshots).copied().collect();
    let credentials = Credentials::collect(&with_credentials);

    let mut file = toml::Table::new();
    file.insert("version".into(), toml::Value::Integer(1));
    let mut velero = toml::Table::new();
    velero.insert("namespace".into(), namespace.into());
    // Objects a stowage file already manages keep their owner: a file that named
    // another would find each of them owned elsewhere on its first plan.
    if let Some(owner) = managing_owner(locations.iter().chain(&snapshots).chain(&schedules)) {
        velero.insert("owner".into(), owner.into());
    }
    velero.insert("deployment".into(), deployment.into());
    let deployment_ref = crate::velero::ObjectRef {
        kind: Kind::Deployment,
        namespace: namespace.to_string(),
        name: deployment.to_string(),
    };
    if let Some(args) = observed
        .objects
        .get(&deployment_ref)
        .and_then(|deployment| ServerArgs::of_deployment(&deployment.manifest))
    {
        let defaults = args.default_snapshot_locations();
        if !defaults.is_empty() {
            velero.insert(
                "default_volume_snapshot_locations".into(),
                string_table(&defaults),
            );
        }
    }
    file.insert("velero".into(), toml::Value::Table(velero));

    if !credentials.by_ref.is_empty() {
        let mut table = toml::Table::new();
        for ((secret, key), name) in &credentials.by_ref {
            let mut entry = toml::Table::new();
            entry.insert("secret".into(), secret.as_str().into());
            entry.insert("key".into(), key.as_str().into());
            entry.insert("external".into(), true.into());
            table.insert(name.clone(), toml::Value::Table(entry));
        }
        file.insert("credentials".into(), toml::Value::Table(table));
    }

    let mut table = toml::Table::new();
    for bsl in &locations {
        let spec = bsl.spec();
        let mut entry = toml::Table::new();
        let mut put = |key: &str, value: Option<toml::Value>| {
            if let Some(value) = value {
                entry.insert(key.to_string(), value);
            }
        };
        put("provider", text(&spec["provider"]).map(Into::into));
        put(
            "bucket",
            text(&spec["objectStorage"]["bucket"]).map(Into::into),
        );
        put(
            "prefix",
            text(&spec["objectStorage"]["prefix"]).map(Into::into),
        );
        put("default", (spec["default"] == true).then_some(true.into()));
        put("credential", credentials.name_for(spec).map(Into::into));
        put("access_mode", text(&spec["accessMode"]).map(Into::into));
        put(
            "backup_sync_period",
            text(&spec["backupSyncPeriod"]).map(Into::into),
        );
        put(
            "validation_frequency",
            text(&spec["validationFrequency"]).map(Into::into),
        );
        if let (Some(secret), Some(key)) = (
            text(&spec["objectStorage"]["caCertRef"]["name"]),
            text(&spec["objectStorage"]["caCertRef"]["key"]),
        ) {
            let mut reference = toml::Table::new();
            reference.insert("secret".into(), secret.into());
            reference.insert("key".into(), key.into());
            put("ca_cert_ref", Some(toml::Value::Table(reference)));
        }
        let labels = user_labels(bsl);
        put(
            "labels",
            (!labels.is_empty()).then(|| string_table(&labels)),
        );
        put(
            "config",
            spec.get("config")
                .filter(|c| c.as_object().is_some_and(|m| !m.is_empty()))
                .and_then(toml_value),
        );
        table.insert(bsl.object.name.clone(), toml::Value::Table(entry));
    }
    if !table.is_empty() {
        file.insert("backup_locations".into(), toml::Value::Table(table));
    }

    let mut table = toml::Table::new();
    for vsl in &snapshots {
        let spec = vsl.spec();
        let mut entry = toml::Table::new();
        if let Some(provider) = text(&spec["provider"]) {
            entry.insert("provider".into(), provider.into());
        }
        if let Some(credential) = credentials.name_for(spec) {
            entry.insert("credential".into(), credential.into());
        }
        let labels = user_labels(vsl);
        if !labels.is_empty() {
            entry.insert("labels".into(), string_table(&labels));
        }
        if let Some(config) = spec
            .get("config")
            .filter(|c| c.as_object().is_some_and(|m| !m.is_empty()))
            .and_then(toml_value)
        {
            entry.insert("config".into(), config);
        }
        table.insert(vsl.object.name.clone(), toml::Value::Table(entry));
    }
    if !table.is_empty() {
        file.insert("snapshot_locations".into(), toml::Value::Table(table));
    }

    let mut table = toml::Table::new();
    let (fan_outs, singles) = fan_outs(&schedules);
    for fan_out in &fan_outs {
        let (name, entry) = fan_out.entry();
        table.insert(name, toml::Value::Table(entry));
    }
    for schedule in singles {
        table.insert(
            schedule.object.name.clone(),
            toml::Value::Table(schedule_entry(schedule, schedule.spec())),
        );
    }
    if !table.is_empty() {
        file.insert("schedules".into(), toml::Value::Table(table));
    }

    let body = toml::to_string(&file).unwrap_or_default();
    format!(
        "# Imported by `stowage import` from namespace {namespace}. Credentials are `external`:\n# stowage checks that their Secrets exist and leaves the values where they are.\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file `import` writes for a saved `state`: its text, and as TOML.
    fn imported(state: &str) -> (String, toml::Table) {
        let observed = crate::observe::from_yaml("state.yaml", state).unwrap();
        let text = import(&observed, "velero", "velero");
        let file = toml::from_str(&text).unwrap();
        (text, file)
    }

    #[test]
    fn objects_a_stowage_file_manages_keep_their_owner() {
        let state = r#"
apiVersion: v1
kind: List
items:
- apiVersion: velero.io/v1
  kind: BackupStorageLocation
  metadata:
    name: primary
    namespace: velero
    labels: {app.kubernetes.io/managed-by: stowage, stowage.io/owner: platform}
  spec: {provider: aws, default: true, objectStorage: {bucket: b}, config: {region: r}}
- apiVersion: velero.io/v1
  kind: Schedule
  metadata:
    name: daily
    namespace: velero
    labels: {app.kubernetes.io/managed-by: stowage, stowage.io/owner: platform}
  spec: {schedule: "0 1 * * *", template: {storageLocation: primary}}
"#;
        let (text, file) = imported(state);
        assert_eq!(file["velero"]["owner"].as_str(), Some("platform"), "{text}");
        // Unmanaged objects get no owner: the file's default.
        let unmanaged = state.replace(
            "labels: {app.kubernetes.io/managed-by: stowage, stowage.io/owner: platform}",
            "labels: {}",
        );
        let (_, file) = imported(&unmanaged);
        assert!(file["velero"].get("owner").is_none());
    }

    #[test]
    fn template_keys_are_the_file_s_and_user_keys_stay_as_written() {
        let state = r#"
apiVersion: v1
kind: List
items:
- apiVersion: velero.io/v1
  kind: Schedule
  metadata: {name: daily, namespace: velero}
  spec:
    schedule: "0 1 * * *"
    template:
      includedNamespaces: ["*"]
      ttl: 720h0m0s
      hooks: {}
      labelSelector: {matchLabels: {app.kubernetes.io/name: web}}
      metadata: {labels: {teamName: a}}
      csiSnapshotTimeout: 0s
"#;
        let (text, file) = imported(state);
        let entry = file["schedules"]["daily"].as_table().unwrap();
        let keys: Vec<&str> = entry.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            // The template's fields in the model's order, its tables last; the
            // CLI's empty `hooks: {}` left out.
            [
                "cron",
                "included_namespaces",
                "ttl",
                "csi_snapshot_timeout",
                "metadata",
                "label_selector"
            ],
            "{text}"
        );
        assert_eq!(
            entry["label_selector"]["match_labels"]["app.kubernetes.io/name"].as_str(),
            Some("web")
        );
        assert_eq!(entry["metadata"]["labels"]["teamName"].as_str(), Some("a"));
    }
}
