//! `--log-format json`: one JSON object per line with flat keys, as controller-runtime
//! (zap) writes them, so log pipelines that read Kubernetes controllers read stowage:
//! `ts` (RFC 3339, UTC, milliseconds), `level`, `msg`, `logger`, then the event's own
//! fields, each a key of its own.

use std::fmt;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The formatter.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlatJson;

/// Keys the line itself uses; an event field of the same name is written with a
/// `field.` prefix so that nothing is overwritten.
const RESERVED: [&str; 4] = ["ts", "level", "msg", "logger"];

/// The line's keys in order: the four of every line first, then the event's fields
/// as it recorded them.
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        let key = if name == "message" {
            "msg".to_string()
        } else if RESERVED.contains(&name) {
            format!("field.{name}")
        } else {
            name.to_string()
        };
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => *slot = value,
            None => self.0.push((key, value)),
        }
    }

    fn to_json(&self) -> Result<String, serde_json::Error> {
        let mut text = String::from("{");
        for (index, (key, value)) in self.0.iter().enumerate() {
            if index > 0 {
                text.push(',');
            }
            text.push_str(&serde_json::to_string(key)?);
            text.push(':');
            text.push_str(&serde_json::to_string(value)?);
        }
        text.push('}');
        Ok(text)
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
}

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut fields = Fields(vec![
            (
                "ts".to_string(),
                Value::String(
                    chrono::Utc::now()
                        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                        .to_string(),
                ),
            ),
            (
                "level".to_string(),
                Value::String(metadata.level().as_str().to_ascii_lowercase()),
            ),
            ("msg".to_string(), Value::String(String::new())),
            (
                "logger".to_string(),
                Value::String(logger_of(metadata.target())),
            ),
        ]);
        event.record(&mut fields);
        let text = fields.to_json().map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// The logger's name: the module that logged, under `stowage` (`stowage.watch`).
fn logger_of(target: &str) -> String {
    let mut parts = target.split("::");
    match parts.next() {
        Some("stowage") => std::iter::once("stowage")
            .chain(parts.take(1))
            .collect::<Vec<_>>()
            .join("."),
        _ => target.replace("::", "."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loggers_are_named_by_module() {
        assert_eq!(logger_of("stowage::watch"), "stowage.watch");
        assert_eq!(logger_of("stowage::report::watch"), "stowage.report");
        assert_eq!(logger_of("kube_runtime::watcher"), "kube_runtime.watcher");
    }

    #[test]
    fn a_line_has_flat_keys_in_order() {
        use tracing_subscriber::fmt::MakeWriter;
        #[derive(Clone, Default)]
        struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl<'a> MakeWriter<'a> for Sink {
            type Writer = Sink;
            fn make_writer(&'a self) -> Sink {
                self.clone()
            }
        }
        let sink = Sink::default();
        let subscriber = tracing_subscriber::fmt()
            .event_format(FlatJson)
            .with_writer(sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                object = "Schedule velero/nightly",
                count = 3,
                msg = "x",
                "applied"
            );
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        let order: Vec<usize> = ["\"ts\"", "\"level\"", "\"msg\"", "\"logger\"", "\"object\""]
            .iter()
            .map(|key| text.find(key).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(line["level"], "info");
        assert_eq!(line["msg"], "applied");
        assert_eq!(line["object"], "Schedule velero/nightly");
        assert_eq!(line["count"], 3);
        assert_eq!(line["field.msg"], "x");
        assert!(line["ts"].as_str().unwrap().ends_with('Z'));
    }
}
