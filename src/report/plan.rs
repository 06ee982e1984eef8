//! Plans shown three ways: text for a terminal, markdown for a pull request, JSON for
//! a pipeline. Each renderer only writes what the plan says; none decides anything.

use std::fmt;
use std::io::{self, Write};

use serde::Serialize;
use serde_json::Value;
use similar::{ChangeTag, TextDiff};

use crate::observe::{BucketReport, BucketStatus};
use crate::plan::{Action, Change, FieldChange, FieldValue, FirstBackup, Plan, Risk};

pub const SENSITIVE_CHANGED: &str = "(sensitive value changed)";
pub const SENSITIVE: &str = "(sensitive value)";

/// Options for the text renderer.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextOptions {
    pub color: bool,
}

struct Paint {
    color: bool,
}

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn green(&self, text: &str) -> String {
        self.wrap("32", text)
    }
    fn yellow(&self, text: &str) -> String {
        self.wrap("33", text)
    }
    fn red(&self, text: &str) -> String {
        self.wrap("31", text)
    }
    fn bold(&self, text: &str) -> String {
        self.wrap("1", text)
    }
    fn dim(&self, text: &str) -> String {
        self.wrap("2", text)
    }
    fn action(&self, action: Action, text: &str) -> String {
        match action {
            Action::Create => self.green(text),
            Action::Update => self.yellow(text),
            Action::Delete => self.red(text),
        }
    }
}

fn symbol(action: Action) -> &'static str {
    match action {
        Action::Create => "+",
        Action::Update => "~",
        Action::Delete => "-",
    }
}

/// A value as the plan shows it: JSON for data, a marker for secrets; written where it
/// goes (a plan from empty is a line per field).
struct Shown<'a>(&'a FieldValue);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            FieldValue::Absent => f.write_str("(none)"),
            FieldValue::Sensitive => f.write_str(SENSITIVE),
            FieldValue::Value(value) => {
                serde_json::to_writer(TextSink(f), value).map_err(|_| fmt::Error)
            }
        }
    }
}

/// serde_json's output into a formatter (it writes UTF-8 only).
struct TextSink<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl io::Write for TextSink<'_, '_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let text = std::str::from_utf8(bytes).map_err(io::Error::other)?;
        self.0.write_str(text).map_err(io::Error::other)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn compact(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Before and after both present and long enough that a line diff reads better.
fn line_diff(field: &FieldChange) -> Option<(String, String)> {
    let (FieldValue::Value(before), FieldValue::Value(after)) = (&field.before, &field.after)
    else {
        return None;
    };
    let lines = |value: &Value| match value {
        Value::String(text) if text.contains('\n') => Some(text.clone()),
        Value::Array(items) if items.len() > 1 => Some(
            items
                .iter()
                .map(|item| format!("{}\n", compact(item)))
                .collect::<String>(),
        ),
        _ => None,
    };
    Some((lines(before)?, lines(after)?))
}

/// The field lines of one change, each given to `line` with its marker: `+ path =
/// value`, `~ path = old → new`, …
fn field_lines(
    change: &Change,
    mut line: impl FnMut(char, fmt::Arguments<'_>) -> io::Result<()>,
) -> io::Result<()> {
    for field in change.field_changes().iter() {
        let path = &field.path;
        match (&field.before, &field.after) {
            (FieldValue::Absent, after) => line('+', format_args!("{path} = {}", Shown(after)))?,
            (before, FieldValue::Absent) => line('-', format_args!("{path} = {}", Shown(before)))?,
            _ if field.is_sensitive() => line('~', format_args!("{path} = {SENSITIVE_CHANGED}"))?,
            (before, after) => match line_diff(field) {
                Some((old, new)) => {
                    line('~', format_args!("{path}:"))?;
                    for change in TextDiff::from_lines(&old, &new).iter_all_changes() {
                        let tag = match change.tag() {
                            ChangeTag::Delete => '-',
                            ChangeTag::Insert => '+',
                            ChangeTag::Equal => ' ',
                        };
                        line(tag, format_args!("    {}", change.value().trim_end()))?;
                    }
                }
                None => line(
                    '~',
                    format_args!("{path} = {} → {}", Shown(before), Shown(after)),
                )?,
            },
        }
    }
    if let Some(first) = &change.first_backup {
        line(
            '=',
            format_args!("first backup: {}", first_backup_text(first)),
        )?;
    }
    Ok(())
}

/// "immediately", or the time in UTC.
fn first_backup_text(first: &FirstBackup) -> String {
    match first {
        FirstBackup::Immediately => "immediately, once applied".to_string(),
        FirstBackup::At(time) => time.clone(),
    }
}

fn risk_note(change: &Change, risk: Risk) -> String {
    match (risk, change.backups) {
        (Risk::DeleteWithBackups | Risk::VslInUse, Some(count)) => {
            format!(
                "{}: {count} backup{}",
                risk.as_str(),
                if count == 1 { "" } else { "s" }
            )
        }
        _ => risk.as_str().to_string(),
    }
}

/// Terraform-like text for a terminal.
pub fn write_text(
    plan: &Plan,
    file_name: &str,
    options: TextOptions,
    out: &mut dyn Write,
) -> io::Result<()> {
    let paint = Paint {
        color: options.color,
    };
    if !plan.has_changes() {
        writeln!(
            out,
            "No changes. Namespace {} matches {file_name}.",
            plan.namespace
        )?;
    } else {
        writeln!(
            out,
            "stowage will make these changes in namespace {}:\n",
            paint.bold(&plan.namespace)
        )?;
        for change in &plan.changes {
            let verb = match change.action {
                Action::Create => "create",
                Action::Update => "update",
                Action::Delete => "delete",
            };
            let risks = if change.risks.is_empty() {
                String::new()
            } else {
                let notes: Vec<String> =
                    change.risks.iter().map(|r| risk_note(change, *r)).collect();
                format!("  {}", paint.red(&format!("[{}]", notes.join(", "))))
            };
            writeln!(
                out,
                "  {} {verb} {}{risks}",
                paint.action(change.action, symbol(change.action)),
                paint.bold(&change.object.to_string()),
            )?;
            field_lines(change, |marker, line| {
                let color = match marker {
                    '+' => Some("32"),
                    '-' => Some("31"),
                    '~' => Some("33"),
                    _ => None,
                };
                match color.filter(|_| paint.color) {
                    Some(code) => writeln!(out, "      \x1b[{code}m{marker} {line}\x1b[0m"),
                    None => writeln!(out, "      {marker} {line}"),
                }
            })?;
            writeln!(out)?;
        }
        let risky = risky(plan);
        if !risky.is_empty() {
            writeln!(out, "{}", paint.bold("Risks:"))?;
            for (change, risk) in risky {
                writeln!(
                    out,
                    "  {} {}: {}",
                    paint.red(risk.as_str()),
                    change.object,
                    risk.explain()
                )?;
            }
            writeln!(out)?;
        }
    }
    if !plan.buckets.is_empty() {
        writeln!(out, "{}", paint.bold("Buckets:"))?;
        for report in &plan.buckets {
            let (mark, text) = bucket_line(report);
            let mark = match &report.status {
                BucketStatus::Reachable { foreign, .. } if foreign.is_empty() => paint.green(mark),
                BucketStatus::NotChecked { .. } => paint.dim(mark),
                _ => paint.red(mark),
            };
            writeln!(
                out,
                "  {mark} {} ({}): {text}",
                report.location,
                place(report)
            )?;
        }
        writeln!(out)?;
    }
    if !plan.unmanaged.is_empty() {
        let names: Vec<String> = plan.unmanaged.iter().map(ToString::to_string).collect();
        writeln!(
            out,
            "{} {}",
            paint.dim(
                "Not managed by stowage, left alone (stowage import writes them into a file):"
            ),
            names.join(", ")
        )?;
    }
    if !plan.owned_elsewhere.is_empty() {
        let names: Vec<String> = plan
            .owned_elsewhere
            .iter()
            .map(|o| format!("{} (owner {})", o.object, o.owner))
            .collect();
        writeln!(
            out,
            "{} {}",
            paint.dim("Owned by another stowage file, left alone:"),
            names.join(", ")
        )?;
    }
    if plan.has_changes() {
        let summary = plan.summary();
        writeln!(
            out,
            "{} {} to create, {} to update, {} to delete.",
            paint.bold("Plan:"),
            summary.create,
            summary.update,
            summary.delete
        )?;
    }
    Ok(())
}

fn place(report: &BucketReport) -> String {
    match report.prefix.as_deref().map(|p| p.trim_matches('/')) {
        Some(prefix) if !prefix.is_empty() => format!("{}/{prefix}", report.bucket),
        _ => report.bucket.clone(),
    }
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// A mark and a sentence for one bucket report.
fn bucket_line(report: &BucketReport) -> (&'static str, String) {
    match &report.status {
        BucketStatus::Reachable {
            backups,
            backups_capped,
            foreign,
        } => {
            let count = if *backups_capped {
                format!("at least {}", plural(*backups, "backup"))
            } else {
                plural(*backups, "backup")
            };
            if foreign.is_empty() {
                ("✓", format!("reachable, {count}"))
            } else {
                (
                    "✗",
                    format!(
                        "reachable, {count}; folders Velero refuses: {}",
                        foreign.join(", ")
                    ),
                )
            }
        }
        BucketStatus::Unreachable { reason } => ("✗", format!("unreachable: {reason}")),
        BucketStatus::NotChecked { reason } => ("·", format!("not checked: {reason}")),
    }
}

/// Every risk of the plan with the change it belongs to.
fn risky(plan: &Plan) -> Vec<(&Change, Risk)> {
    plan.changes
        .iter()
        .flat_map(|change| change.risks.iter().map(move |risk| (change, *risk)))
        .collect()
}

/// A pull-request comment.
pub fn write_markdown(plan: &Plan, file_name: &str, out: &mut dyn Write) -> io::Result<()> {
    let summary = plan.summary();
    if !plan.has_changes() {
        writeln!(out, "### stowage plan: no changes\n")?;
        writeln!(out, "Namespace `{}` matches `{file_name}`.", plan.namespace)?;
    } else {
        writeln!(
            out,
            "### stowage plan: {} to create, {} to update, {} to delete\n",
            summary.create, summary.update, summary.delete
        )?;
        writeln!(out, "Namespace `{}`, from `{file_name}`.\n", plan.namespace)?;
        writeln!(out, "| | action | object | risks |")?;
        writeln!(out, "|---|---|---|---|")?;
        for change in &plan.changes {
            let risks: Vec<String> = change
                .risks
                .iter()
                .map(|risk| format!("⚠️ `{}`", risk_note(change, *risk)))
                .collect();
            writeln!(
                out,
                "| {} | {} | `{}` | {} |",
                symbol(change.action),
                change.action.as_str(),
                change.object,
                risks.join(" ")
            )?;
        }
        writeln!(out, "\n<details><summary>Field changes</summary>\n")?;
        writeln!(out, "```diff")?;
        for change in &plan.changes {
            writeln!(out, "{} {}", symbol(change.action), change.object)?;
            field_lines(change, |marker, line| writeln!(out, "{marker}   {line}"))?;
        }
        writeln!(out, "```\n\n</details>")?;
        let risky = risky(plan);
        if !risky.is_empty() {
            writeln!(out, "\n**Risks**\n")?;
            for (change, risk) in risky {
                writeln!(
                    out,
                    "- `{}` on `{}`: {}",
                    risk.as_str(),
                    change.object,
                    risk.explain()
                )?;
            }
        }
    }
    if !plan.buckets.is_empty() {
        writeln!(out, "\n**Buckets**\n")?;
        writeln!(out, "| | location | bucket | result |")?;
        writeln!(out, "|---|---|---|---|")?;
        for report in &plan.buckets {
            let (mark, text) = bucket_line(report);
            writeln!(
                out,
                "| {mark} | `{}` | `{}` | {} |",
                report.location,
                place(report),
                text.replace('|', "\\|")
            )?;
        }
    }
    if !plan.unmanaged.is_empty() {
        let names: Vec<String> = plan.unmanaged.iter().map(|o| format!("`{o}`")).collect();
        writeln!(
            out,
            "\nNot managed by stowage, left alone: {}",
            names.join(", ")
        )?;
    }
    if !plan.owned_elsewhere.is_empty() {
        let names: Vec<String> = plan
            .owned_elsewhere
            .iter()
            .map(|o| format!("`{}` (owner `{}`)", o.object, o.owner))
            .collect();
        writeln!(out, "\nOwned by another stowage file: {}", names.join(", "))?;
    }
    let problems: Vec<_> = plan.diagnostics.iter().collect();
    if !problems.is_empty() {
        writeln!(out, "\n**Problems**\n")?;
        for diagnostic in problems {
            writeln!(
                out,
                "- {} `{}`: {}",
                diagnostic.severity.as_str(),
                diagnostic.code,
                diagnostic.message
            )?;
        }
    }
    Ok(())
}

/// The JSON wire form of a plan (product.md §2); more keys may be added.
#[derive(Debug, Serialize)]
pub struct WirePlan<'a> {
    pub format_version: u32,
    pub diagnostics: Vec<super::diagnostics::WireDiagnostic<'a>>,
    pub changes: Vec<WireChange<'a>>,
    pub unmanaged: Vec<WireObject<'a>>,
    pub owned_elsewhere: Vec<WireOwned<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<WireBucket<'a>>,
    pub summary: WireSummary,
}

#[derive(Debug, Serialize)]
pub struct WireBucket<'a> {
    pub location: &'a str,
    pub bucket: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<&'a str>,
    /// `reachable`, `unreachable` or `not-checked`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backups: Option<usize>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub backups_capped: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub foreign: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct WireChange<'a> {
    pub action: &'static str,
    pub kind: &'static str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub risks: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backups: Option<usize>,
    /// Schedules: `immediately`, or when the first backup after the change starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_backup: Option<String>,
    pub fields: WireFields<'a>,
}

/// A change's fields on the wire, listed as they are written: a create's are walked
/// from the object it sends one change at a time, never all of a plan's at once.
#[derive(Debug)]
pub struct WireFields<'a>(&'a Change);

impl Serialize for WireFields<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = self.0.field_changes();
        serializer.collect_seq(fields.iter().map(|field| WireField {
            path: field.path.to_string(),
            before: wire_value(&field.before),
            after: wire_value(&field.after),
            sensitive: field.is_sensitive(),
        }))
    }
}

#[derive(Debug, Serialize)]
pub struct WireField<'a> {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<&'a Value>,
    pub sensitive: bool,
}

#[derive(Debug, Serialize)]
pub struct WireObject<'a> {
    pub kind: &'static str,
    pub namespace: &'a str,
    pub name: &'a str,
}

#[derive(Debug, Serialize)]
pub struct WireOwned<'a> {
    pub kind: &'static str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub owner: &'a str,
}

#[derive(Debug, Serialize)]
pub struct WireSummary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
}

fn wire_value(value: &FieldValue) -> Option<&Value> {
    match value {
        FieldValue::Value(value) => Some(value),
        FieldValue::Absent | FieldValue::Sensitive => None,
    }
}

pub fn wire<'a>(
    plan: &'a Plan,
    diagnostics: Vec<super::diagnostics::WireDiagnostic<'a>>,
) -> WirePlan<'a> {
    let summary = plan.summary();
    WirePlan {
        format_version: super::FORMAT_VERSION,
        diagnostics,
        changes: plan
            .changes
            .iter()
            .map(|change| WireChange {
                action: change.action.as_str(),
                kind: change.object.kind.as_str(),
                namespace: &change.object.namespace,
                name: &change.object.name,
                risks: change.risks.iter().map(|r| r.as_str()).collect(),
                backups: change.backups,
                first_backup: change.first_backup.as_ref().map(|first| match first {
                    FirstBackup::Immediately => "immediately".to_string(),
                    FirstBackup::At(time) => time.clone(),
                }),
                fields: WireFields(change),
            })
            .collect(),
        unmanaged: plan
            .unmanaged
            .iter()
            .map(|o| WireObject {
                kind: o.kind.as_str(),
                namespace: &o.namespace,
                name: &o.name,
            })
            .collect(),
        owned_elsewhere: plan
            .owned_elsewhere
            .iter()
            .map(|o| WireOwned {
                kind: o.object.kind.as_str(),
                namespace: &o.object.namespace,
                name: &o.object.name,
                owner: &o.owner,
            })
            .collect(),
        buckets: plan
            .buckets
            .iter()
            .map(|report| {
                let mut wire = WireBucket {
                    location: &report.location,
                    bucket: &report.bucket,
                    prefix: report.prefix.as_deref(),
                    status: "reachable",
                    backups: None,
                    backups_capped: false,
                    foreign: Vec::new(),
                    reason: None,
                };
                match &report.status {
                    BucketStatus::Reachable {
                        backups,
                        backups_capped,
                        foreign,
                    } => {
                        wire.backups = Some(*backups);
                        wire.backups_capped = *backups_capped;
                        wire.foreign = foreign.iter().map(String::as_str).collect();
                    }
                    BucketStatus::Unreachable { reason } => {
                        wire.status = "unreachable";
                        wire.reason = Some(reason);
                    }
                    BucketStatus::NotChecked { reason } => {
                        wire.status = "not-checked";
                        wire.reason = Some(reason);
                    }
                }
                wire
            })
            .collect(),
        summary: WireSummary {
            create: summary.create,
            update: summary.update,
            delete: summary.delete,
        },
    }
}
