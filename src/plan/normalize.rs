//! What counts as equal: Velero's defaults and spellings that mean "unset".
//!
//! The Velero CLI writes explicit defaults (`accessMode: ReadWrite`, `0s` timeouts,
//! `includedNamespaces: ['*']`, `hooks: {}`), Go prints durations as `720h0m0s`, and
//! Velero's controllers rewrite `skipImmediately`. Both sides of a comparison go
//! through [`spec`] so none of that shows up as a change (velero-semantics.md §2.5).

use serde_json::{Map, Value};

use crate::velero::Kind;
use crate::velero::duration::parse_go_duration;

/// The comparable form of a `spec` of `kind`.
pub fn spec(kind: Kind, spec: &Value) -> Value {
    let mut spec = spec.clone();
    prune_empty(&mut spec);
    let Some(map) = spec.as_object_mut() else {
        return spec;
    };
    match kind {
        Kind::BackupStorageLocation => {
            remove_if(map, "accessMode", |v| v == "ReadWrite" || v == "");
            remove_if(map, "default", |v| v == &Value::Bool(false));
            for key in ["backupSyncPeriod", "validationFrequency"] {
                canonical_duration(map, key, false);
            }
            if let Some(storage) = map.get_mut("objectStorage").and_then(Value::as_object_mut) {
                for key in ["bucket", "prefix"] {
                    if let Some(Value::String(text)) = storage.get_mut(key) {
                        *text = text.trim_matches('/').to_string();
                    }
                }
                remove_if(storage, "prefix", |v| v == "");
            }
        }
        Kind::Schedule => {
            // Velero's controller owns it after creation.
            map.remove("skipImmediately");
            remove_if(map, "useOwnerReferencesInBackup", |v| {
                v == &Value::Bool(false)
            });
            remove_if(map, "paused", |v| v == &Value::Bool(false));
            if let Some(template) = map.get_mut("template").and_then(Value::as_object_mut) {
                normalize_template(template);
            }
        }
        Kind::VolumeSnapshotLocation | Kind::Secret | Kind::Deployment => {}
    }
    prune_empty(&mut spec);
    spec
}

fn normalize_template(template: &mut Map<String, Value>) {
    remove_if(template, "includedNamespaces", |v| {
        v.as_array()
            .is_some_and(|list| list.is_empty() || list == &[Value::String("*".into())])
    });
    for key in ["ttl", "csiSnapshotTimeout", "itemOperationTimeout"] {
        canonical_duration(template, key, true);
    }
    remove_if(template, "snapshotVolumes", |v| v == &Value::Bool(true));
    if let Some(resources) = template
        .get_mut("hooks")
        .and_then(|hooks| hooks.get_mut("resources"))
        .and_then(Value::as_array_mut)
    {
        for resource in resources {
            for phase in ["pre", "post"] {
                for hook in resource
                    .get_mut(phase)
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if let Some(exec) = hook.get_mut("exec").and_then(Value::as_object_mut) {
                        canonical_duration(exec, "timeout", false);
                    }
                }
            }
        }
    }
}

fn remove_if(map: &mut Map<String, Value>, key: &str, unset: impl Fn(&Value) -> bool) {
    if map.get(key).is_some_and(unset) {
        map.remove(key);
    }
}

/// Rewrites a duration in Go's canonical spelling; with `zero_is_unset`, a zero
/// duration is removed (Velero then applies its server default).
fn canonical_duration(map: &mut Map<String, Value>, key: &str, zero_is_unset: bool) {
    let Some(Value::String(text)) = map.get(key) else {
        return;
    };
    let Ok(nanos) = parse_go_duration(text) else {
        return;
    };
    if zero_is_unset && nanos == 0 {
        map.remove(key);
    } else {
        map.insert(key.to_string(), Value::String(go_duration_string(nanos)));
    }
}

/// Go's `time.Duration.String()`: `720h0m0s`, `1m30s`, `1.5s`, `0s`.
pub fn go_duration_string(nanos: i128) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let nanos = nanos.unsigned_abs();
    if nanos < 1_000_000_000 {
        let (value, unit) = if nanos < 1_000 {
            (nanos as f64, "ns")
        } else if nanos < 1_000_000 {
            (nanos as f64 / 1e3, "µs")
        } else {
            (nanos as f64 / 1e6, "ms")
        };
        return format!("{sign}{value}{unit}");
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = nanos / 60_000_000_000 % 60;
    let seconds = nanos % 60_000_000_000;
    let whole = seconds / 1_000_000_000;
    let fraction = seconds % 1_000_000_000;
    let seconds = if fraction == 0 {
        format!("{whole}s")
    } else {
        let digits = format!("{fraction:09}");
        format!("{whole}.{}s", digits.trim_end_matches('0'))
    };
    if hours > 0 {
        format!("{sign}{hours}h{minutes}m{seconds}")
    } else if minutes > 0 {
        format!("{sign}{minutes}m{seconds}")
    } else {
        format!("{sign}{seconds}")
    }
}

/// `value` without nulls, empty maps and empty lists, as Go's `omitempty` leaves it.
pub fn drop_empty(mut value: Value) -> Value {
    prune_empty(&mut value);
    value
}

/// Removes nulls, empty maps and empty lists in place.
fn prune_empty(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for child in map.values_mut() {
                prune_empty(child);
            }
            map.retain(|_, child| !is_empty(child));
        }
        Value::Array(items) => items.iter_mut().for_each(prune_empty),
        _ => {}
    }
}

/// Null, an empty map or an empty list: what Go's `omitempty` leaves out.
pub fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cli_defaults_equal_unset() {
        let cli = json!({
            "schedule": "0 1 * * *",
            "skipImmediately": false,
            "useOwnerReferencesInBackup": false,
            "template": {
                "csiSnapshotTimeout": "0s", "itemOperationTimeout": "0s", "hooks": {},
                "includedNamespaces": ["*"], "metadata": {}, "ttl": "720h0m0s"
            }
        });
        let file = json!({"schedule": "0 1 * * *", "template": {"ttl": "720h"}});
        assert_eq!(spec(Kind::Schedule, &cli), spec(Kind::Schedule, &file));
        let bsl_cli = json!({"provider": "aws", "accessMode": "ReadWrite", "objectStorage": {"bucket": "b", "prefix": ""}});
        let bsl = json!({"provider": "aws", "objectStorage": {"bucket": "b"}, "default": false});
        assert_eq!(
            spec(Kind::BackupStorageLocation, &bsl_cli),
            spec(Kind::BackupStorageLocation, &bsl)
        );
        let other =
            json!({"provider": "aws", "accessMode": "ReadOnly", "objectStorage": {"bucket": "b"}});
        assert_ne!(
            spec(Kind::BackupStorageLocation, &other),
            spec(Kind::BackupStorageLocation, &bsl)
        );
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration_string(720 * 3_600_000_000_000), "720h0m0s");
        assert_eq!(go_duration_string(90_000_000_000), "1m30s");
        assert_eq!(go_duration_string(1_500_000_000), "1.5s");
        assert_eq!(go_duration_string(60_000_000_000), "1m0s");
        assert_eq!(go_duration_string(0), "0s");
    }
}
