//! The order a plan is carried out in, tested offline: generated pairs of files (one
//! applied, the next one planned against it) whose plans are executed write by write
//! against a model of the namespace, checking after every write what Velero would see.
//! Every stage's writes go at once, so each stage is tried in both orders.
//!
//! What must hold at every step (velero-semantics.md): never two default locations;
//! every location's credential key exists; every Schedule names existing locations.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use stowage::config::load::load_with_env;
use stowage::observe::Observed;
use stowage::plan::{Body, Context, Plan, Request, plan};
use stowage::render::{Desired, render, secret_manifest};
use stowage::velero::{Kind, ObjectRef};

/// A small deterministic generator (xorshift), so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const LOCATIONS: [&str; 4] = ["l0", "l1", "l2", "l3"];
const CREDENTIALS: [&str; 3] = ["c0", "c1", "c2"];

/// A valid file over a random subset of four locations, three credentials and up to
/// three schedules; one location is the default.
fn generated_file(rng: &mut Rng) -> String {
    let mut text = String::from(
        "version = 1\n\n[velero]\nnamespace = \"velero\"\nallow_mass_delete = true\n\n",
    );
    let locations: Vec<&str> = LOCATIONS.into_iter().filter(|_| rng.chance(60)).collect();
    let locations = if locations.is_empty() {
        vec![LOCATIONS[rng.below(LOCATIONS.len())]]
    } else {
        locations
    };
    // A file with locations declares its default (validate requires it).
    let default = Some(locations[rng.below(locations.len())]);
    let mut credentials = Vec::new();
    for location in &locations {
        let credential = CREDENTIALS[rng.below(CREDENTIALS.len())];
        if !credentials.contains(&credential) {
            credentials.push(credential);
        }
        text.push_str(&format!(
            "[backup_locations.{location}]\nprovider = \"aws\"\nbucket = \"b-{location}\"\ncredential = \"{credential}\"\ndefault = {}\nconfig = {{ region = \"us-east-1\" }}\n\n",
            default == Some(*location)
        ));
    }
    for credential in credentials {
        // Two credentials may share one Secret under different keys.
        let secret = if rng.chance(30) { "shared" } else { credential };
        text.push_str(&format!(
            "[credentials.{credential}]\nenv = \"CRED_{credential}\"\nsecret = \"{secret}\"\nkey = \"{credential}\"\n\n"
        ));
    }
    for schedule in 0..rng.below(4) {
        let location = locations[rng.below(locations.len())];
        text.push_str(&format!(
            "[schedules.s{schedule}]\ncron = \"0 {schedule} * * *\"\nstorage_location = \"{location}\"\n\n"
        ));
    }
    text
}

fn desired_of(dir: &Path, text: &str, generation: usize) -> Desired {
    let path = dir.join(format!("stowage-{generation}.toml"));
    std::fs::write(&path, text).expect("write");
    // Each generation's credentials have new values, so Secrets change too.
    let env = move |name: &str| {
        Some(
            format!(
                "[default]\naws_access_key_id = {name}-{generation}\naws_secret_access_key = x\n"
            )
            .into(),
        )
    };
    let loaded = load_with_env(&path, &env).expect("loads");
    let diagnostics = stowage::validate::validate(&loaded);
    assert!(
        loaded
            .diagnostics
            .iter()
            .chain(&diagnostics)
            .all(|d| !d.is_error()),
        "{text}\n{:#?}",
        (&loaded.diagnostics, &diagnostics)
    );
    render(loaded.config.as_ref().expect("model"), &loaded.materials)
}

/// The namespace as Velero sees it: each object's manifest (a Secret's with its keys).
type Namespace = BTreeMap<ObjectRef, Value>;

fn applied(desired: &Desired) -> Namespace {
    let mut namespace = Namespace::new();
    for object in &desired.objects {
        namespace.insert(object.object.clone(), object.manifest.to_value());
    }
    for secret in &desired.secrets {
        let manifest = serde_json::to_value(secret_manifest(secret)).expect("secret");
        namespace.insert(secret.object.clone(), manifest);
    }
    namespace
}

fn observed_of(namespace: &Namespace) -> Observed {
    let mut observed = Observed::default();
    for (object, manifest) in namespace {
        let mut manifest = manifest.clone();
        if object.kind == Kind::Secret {
            manifest["kind"] = json!("Secret");
            manifest["apiVersion"] = json!("v1");
            // stowage applied every key it holds, as managedFields say.
            let keys: serde_json::Map<String, Value> = manifest["data"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(key, _)| (format!("f:{key}"), json!({})))
                .collect();
            manifest["metadata"]["managedFields"] = json!([{"manager": "stowage",
                "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": keys}}]);
        }
        observed.add("applied", manifest).expect("observed");
    }
    observed
}

/// RFC 7386, as the API server applies a merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(target), Some(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (_, Some(_)) => {
            *target = json!({});
            merge(target, patch);
        }
        _ => *target = patch.clone(),
    }
}

/// One write, as the API server would take it.
fn execute(namespace: &mut Namespace, object: &ObjectRef, request: &Request) {
    match request {
        Request::MergePatch { patch } => {
            merge(
                namespace.get_mut(object).expect("patched object exists"),
                patch,
            );
        }
        Request::Delete { .. } => {
            namespace.remove(object);
        }
        Request::Apply {
            body: Body::Velero(manifest),
            ..
        } => {
            namespace.insert(object.clone(), manifest.to_value());
        }
        Request::Apply {
            body: Body::Object(manifest),
            ..
        } => {
            namespace.insert(object.clone(), manifest.clone());
        }
        Request::Apply {
            body: Body::Secret { data, .. },
            ..
        } => {
            let keys: serde_json::Map<String, Value> = data
                .keys()
                .into_iter()
                .map(|k| (k, json!("eA==")))
                .collect();
            namespace.insert(object.clone(), json!({"data": keys}));
        }
    }
}

/// What Velero must never see, in words; `None` when the namespace is sound.
fn unsound(namespace: &Namespace) -> Option<String> {
    let of_kind = |kind: Kind| {
        namespace
            .iter()
            .filter(move |(object, _)| object.kind == kind)
    };
    let defaults: Vec<&str> = of_kind(Kind::BackupStorageLocation)
        .filter(|(_, m)| m["spec"]["default"] == true)
        .map(|(o, _)| o.name.as_str())
        .collect();
    if defaults.len() > 1 {
        return Some(format!("two default locations: {defaults:?}"));
    }
    for (location, manifest) in of_kind(Kind::BackupStorageLocation) {
        let credential = &manifest["spec"]["credential"];
        let (Some(secret), Some(key)) = (credential["name"].as_str(), credential["key"].as_str())
        else {
            continue;
        };
        let present = namespace.iter().any(|(o, m)| {
            o.kind == Kind::Secret && o.name == secret && m["data"].get(key).is_some()
        });
        if !present {
            return Some(format!("{location} reads {secret}/{key}, which is missing"));
        }
    }
    for (schedule, manifest) in of_kind(Kind::Schedule) {
        let Some(location) = manifest["spec"]["template"]["storageLocation"].as_str() else {
            continue;
        };
        let exists = of_kind(Kind::BackupStorageLocation).any(|(o, _)| o.name == location);
        if !exists {
            return Some(format!("{schedule} names {location}, which is missing"));
        }
    }
    None
}

/// Carries out `plan` on `namespace`, a stage at a time, each stage's writes in the
/// order `reverse` picks; the first unsound step, if any.
fn first_unsound_step(namespace: &Namespace, plan: &Plan, reverse: bool) -> Option<String> {
    let mut namespace = namespace.clone();
    for (stage, mut steps) in plan.execution() {
        if reverse {
            steps.reverse();
        }
        for (change, send) in steps {
            execute(&mut namespace, &change.object, send);
            if let Some(problem) = unsound(&namespace) {
                return Some(format!(
                    "after {} {} in stage {stage:?}: {problem}",
                    change.action.as_str(),
                    change.object
                ));
            }
        }
    }
    None
}

#[test]
fn velero_never_sees_an_unsound_namespace_while_a_plan_is_carried_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut moved_default = 0;
    for seed in 1..=400u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let before_text = generated_file(&mut rng);
        let after_text = generated_file(&mut rng);
        let before = applied(&desired_of(dir.path(), &before_text, 0));
        let desired = desired_of(dir.path(), &after_text, 1);
        assert_eq!(unsound(&before), None, "seed {seed}: {before_text}");
        let plan = plan(&desired, &observed_of(&before), &Context::default());
        assert!(!plan.has_errors(), "seed {seed}: {:#?}", plan.diagnostics);
        for reverse in [false, true] {
            if let Some(problem) = first_unsound_step(&before, &plan, reverse) {
                panic!(
                    "seed {seed}: {problem}\n--- applied\n{before_text}\n--- planned\n{after_text}"
                );
            }
        }
        // The end state is the file, whatever order got there.
        let mut end = before.clone();
        for (_, steps) in plan.execution() {
            for (change, send) in steps {
                execute(&mut end, &change.object, send);
            }
        }
        let expected = applied(&desired);
        let names = |ns: &Namespace| ns.keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&end), names(&expected), "seed {seed}");
        let defaults = |ns: &Namespace| {
            ns.iter()
                .filter(|(_, m)| m["spec"]["default"] == true)
                .map(|(o, _)| o.name.clone())
                .collect::<Vec<_>>()
        };
        if defaults(&before) != defaults(&expected)
            && !defaults(&before).is_empty()
            && !defaults(&expected).is_empty()
        {
            moved_default += 1;
        }
    }
    // The generator reaches the case the default stages exist for.
    assert!(
        moved_default > 20,
        "only {moved_default} plans moved the default"
    );
}
