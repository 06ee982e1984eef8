//! The backup template's filters, checked as Velero's backup controller checks them at
//! backup time (velero-semantics.md §3.6), when a mistake means `FailedValidation`.

use super::names::check_label_name;
use super::names::{check_label_key, check_label_value};
use crate::config::{BackupTemplate, LabelSelector};
use crate::diagnostic::{Code, Diagnostic, Pointer};

pub fn check_template(template: &BackupTemplate, at: &Pointer, out: &mut Vec<Diagnostic>) {
    let included = template.included_namespaces.as_deref().unwrap_or_default();
    let excluded = template.excluded_namespaces.as_deref().unwrap_or_default();
    check_namespace_lists(
        included,
        excluded,
        at,
        "included_namespaces",
        "excluded_namespaces",
        out,
    );

    let old_filters = [
        (
            "included_resources",
            template
                .included_resources
                .as_ref()
                .is_some_and(|l| !l.is_empty()),
        ),
        (
            "excluded_resources",
            template
                .excluded_resources
                .as_ref()
                .is_some_and(|l| !l.is_empty()),
        ),
        (
            "include_cluster_resources",
            template.include_cluster_resources.is_some(),
        ),
    ];
    let new_filters = [
        (
            "included_cluster_scoped_resources",
            &template.included_cluster_scoped_resources,
        ),
        (
            "excluded_cluster_scoped_resources",
            &template.excluded_cluster_scoped_resources,
        ),
        (
            "included_namespace_scoped_resources",
            &template.included_namespace_scoped_resources,
        ),
        (
            "excluded_namespace_scoped_resources",
            &template.excluded_namespace_scoped_resources,
        ),
    ];
    let old_used = old_filters
        .iter()
        .find(|(_, used)| *used)
        .map(|(name, _)| *name);
    let new_used = new_filters
        .iter()
        .find(|(_, list)| list.as_ref().is_some_and(|l| !l.is_empty()))
        .map(|(name, _)| *name);
    if let (Some(old), Some(new)) = (old_used, new_used) {
        out.push(
            Diagnostic::error(
                Code::BackupFilter,
                format!("`{old}` and `{new}` cannot be combined: old and new resource filters do not mix"),
            )
            .at(at.child(new).as_key())
            .related(at.child(old).as_key(), "old-style filter here")
            .help("use either included/excluded_resources with include_cluster_resources, or the four *_scoped_resources lists"),
        );
    }
    check_includes_excludes(
        template.included_resources.as_deref().unwrap_or_default(),
        template.excluded_resources.as_deref().unwrap_or_default(),
        at,
        ("included_resources", "excluded_resources"),
        out,
    );
    for (includes, excludes, names) in [
        (
            &template.included_cluster_scoped_resources,
            &template.excluded_cluster_scoped_resources,
            (
                "included_cluster_scoped_resources",
                "excluded_cluster_scoped_resources",
            ),
        ),
        (
            &template.included_namespace_scoped_resources,
            &template.excluded_namespace_scoped_resources,
            (
                "included_namespace_scoped_resources",
                "excluded_namespace_scoped_resources",
            ),
        ),
    ] {
        check_scoped(
            includes.as_deref().unwrap_or_default(),
            excludes.as_deref().unwrap_or_default(),
            at,
            names,
            out,
        );
    }

    if template.label_selector.is_some()
        && template
            .or_label_selectors
            .as_ref()
            .is_some_and(|l| !l.is_empty())
    {
        out.push(
            Diagnostic::error(
                Code::BackupFilter,
                "`label_selector` and `or_label_selectors` cannot both be set",
            )
            .at(at.child("or_label_selectors").as_key())
            .related(at.child("label_selector").as_key(), "label_selector here")
            .help("fold the label_selector into each of the or_label_selectors"),
        );
    }
    if let Some(selector) = &template.label_selector {
        check_selector(selector, &at.child("label_selector"), out);
    }
    for (index, selector) in template.or_label_selectors.iter().flatten().enumerate() {
        check_selector(selector, &at.child("or_label_selectors").child(index), out);
    }
    if let Some(policy) = &template.resource_policy
        && !policy.kind.eq_ignore_ascii_case("configmap")
    {
        out.push(
            Diagnostic::error(
                Code::BackupFilter,
                format!("resource policy kind {:?} is not supported", policy.kind),
            )
            .at(at.child("resource_policy").child("kind"))
            .help("resource policies live in a ConfigMap: kind = \"configmap\""),
        );
    }
    if let Some(metadata) = &template.metadata {
        check_labels(&metadata.labels, &at.child("metadata").child("labels"), out);
    }
    if let Some(hooks) = &template.hooks {
        for (index, hook) in hooks.resources.iter().enumerate() {
            let hook_at = at.child("hooks").child("resources").child(index);
            check_namespace_lists(
                hook.included_namespaces.as_deref().unwrap_or_default(),
                hook.excluded_namespaces.as_deref().unwrap_or_default(),
                &hook_at,
                "included_namespaces",
                "excluded_namespaces",
                out,
            );
            check_includes_excludes(
                hook.included_resources.as_deref().unwrap_or_default(),
                hook.excluded_resources.as_deref().unwrap_or_default(),
                &hook_at,
                ("included_resources", "excluded_resources"),
                out,
            );
            if let Some(selector) = &hook.label_selector {
                check_selector(selector, &hook_at.child("label_selector"), out);
            }
        }
    }
}

/// Velero's namespace rules: the include/exclude rules plus valid names or globs.
fn check_namespace_lists(
    included: &[String],
    excluded: &[String],
    at: &Pointer,
    included_key: &str,
    excluded_key: &str,
    out: &mut Vec<Diagnostic>,
) {
    check_includes_excludes(included, excluded, at, (included_key, excluded_key), out);
    for (key, list) in [(included_key, included), (excluded_key, excluded)] {
        for (index, namespace) in list.iter().enumerate() {
            if namespace == "*" {
                continue;
            }
            if let Err(problem) = check_namespace_pattern(namespace) {
                out.push(
                    Diagnostic::error(
                        Code::BackupFilter,
                        format!("invalid namespace {namespace:?}: {problem}"),
                    )
                    .at(at.child(key).child(index)),
                );
            }
        }
    }
}

/// A namespace name, or a glob of one (`*`, `?`, `[abc]`).
fn check_namespace_pattern(pattern: &str) -> Result<(), String> {
    if let Some(c) = pattern.chars().find(|c| "|()!{},".contains(*c)) {
        return Err(format!("{c:?} is not allowed in a namespace pattern"));
    }
    if pattern.contains("**") {
        return Err("\"**\" is not allowed in a namespace pattern".to_string());
    }
    let mut open = false;
    let mut empty_class = false;
    for c in pattern.chars() {
        match c {
            '[' if open => return Err("nested '[' in a namespace pattern".to_string()),
            '[' => {
                open = true;
                empty_class = true;
            }
            ']' if !open => return Err("unmatched ']' in a namespace pattern".to_string()),
            ']' if empty_class => return Err("empty '[]' in a namespace pattern".to_string()),
            ']' => open = false,
            _ => empty_class = false,
        }
    }
    if open {
        return Err("unclosed '[' in a namespace pattern".to_string());
    }
    let replaced: String = pattern
        .chars()
        .map(|c| if "*?[]".contains(c) { 'x' } else { c })
        .collect();
    check_label_name(&replaced)
}

fn check_includes_excludes(
    includes: &[String],
    excludes: &[String],
    at: &Pointer,
    (included_key, excluded_key): (&str, &str),
    out: &mut Vec<Diagnostic>,
) {
    star_alone(includes, at, included_key, out);
    if let Some(index) = excludes.iter().position(|item| item == "*") {
        out.push(
            Diagnostic::error(
                Code::BackupFilter,
                format!("`{excluded_key}` cannot contain '*'"),
            )
            .at(at.child(excluded_key).child(index)),
        );
    }
    both_included_and_excluded(includes, excludes, at, (included_key, excluded_key), out);
}

/// The scoped resource lists: like the others, except that excluding '*' is allowed
/// when nothing is included.
fn check_scoped(
    includes: &[String],
    excludes: &[String],
    at: &Pointer,
    (included_key, excluded_key): (&str, &str),
    out: &mut Vec<Diagnostic>,
) {
    star_alone(includes, at, included_key, out);
    if excludes.iter().any(|item| item == "*") && !includes.is_empty() {
        out.push(
            Diagnostic::error(
                Code::BackupFilter,
                format!("`{excluded_key}` may be '*' only when `{included_key}` is empty"),
            )
            .at(at.child(excluded_key)),
        );
    }
    star_alone(excludes, at, excluded_key, out);
    both_included_and_excluded(includes, excludes, at, (included_key, excluded_key), out);
}

/// '*' stands alone in a list or not at all.
fn star_alone(list: &[String], at: &Pointer, key: &str, out: &mut Vec<Diagnostic>) {
    if list.len() > 1 && list.iter().any(|item| item == "*") {
        out.push(
            Diagnostic::error(
                Code::BackupFilter,
                format!("`{key}` must either contain '*' only, or a list of items"),
            )
            .at(at.child(key))
            .help("remove '*' to name only the listed items, or list only '*'"),
        );
    }
}

fn both_included_and_excluded(
    includes: &[String],
    excludes: &[String],
    at: &Pointer,
    (included_key, excluded_key): (&str, &str),
    out: &mut Vec<Diagnostic>,
) {
    for (index, item) in excludes.iter().enumerate() {
        if item != "*" && includes.contains(item) {
            out.push(
                Diagnostic::error(
                    Code::BackupFilter,
                    format!("{item:?} is both included and excluded"),
                )
                .at(at.child(excluded_key).child(index))
                .help(format!(
                    "remove it from `{included_key}` or `{excluded_key}`"
                )),
            );
        }
    }
}

fn check_selector(selector: &LabelSelector, at: &Pointer, out: &mut Vec<Diagnostic>) {
    check_labels(&selector.match_labels, &at.child("match_labels"), out);
    for (index, requirement) in selector.match_expressions.iter().enumerate() {
        let requirement_at = at.child("match_expressions").child(index);
        if let Err(problem) = check_label_key(&requirement.key) {
            out.push(
                Diagnostic::error(
                    Code::BackupFilter,
                    format!("invalid label key {:?}: {problem}", requirement.key),
                )
                .at(requirement_at.child("key")),
            );
        }
        let needs_values = match requirement.operator.as_str() {
            "In" | "NotIn" => true,
            "Exists" | "DoesNotExist" => false,
            other => {
                out.push(
                    Diagnostic::error(
                        Code::BackupFilter,
                        format!("{other:?} is not a label selector operator"),
                    )
                    .at(requirement_at.child("operator"))
                    .help("use In, NotIn, Exists or DoesNotExist"),
                );
                continue;
            }
        };
        if needs_values == requirement.values.is_empty() {
            let message = if needs_values {
                format!("operator {} needs at least one value", requirement.operator)
            } else {
                format!("operator {} takes no values", requirement.operator)
            };
            out.push(Diagnostic::error(Code::BackupFilter, message).at(requirement_at));
        }
    }
}

/// Label keys and values as the API server checks them.
pub fn check_labels(
    labels: &std::collections::BTreeMap<String, String>,
    at: &Pointer,
    out: &mut Vec<Diagnostic>,
) {
    for (key, value) in labels {
        if let Err(problem) = check_label_key(key) {
            out.push(
                Diagnostic::error(Code::Name, format!("invalid label key {key:?}: {problem}"))
                    .at(at.child(key.as_str()).as_key()),
            );
        }
        if let Err(problem) = check_label_value(value) {
            out.push(
                Diagnostic::error(
                    Code::Name,
                    format!("invalid label value {value:?}: {problem}"),
                )
                .at(at.child(key.as_str())),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Option<Vec<String>> {
        Some(items.iter().map(|s| s.to_string()).collect())
    }

    fn check(template: BackupTemplate) -> Vec<String> {
        let mut out = Vec::new();
        check_template(&template, &Pointer::value(["schedules", "s"]), &mut out);
        out.into_iter().map(|d| d.message).collect()
    }

    #[test]
    fn namespace_rules() {
        assert!(
            check(BackupTemplate {
                included_namespaces: strings(&["*"]),
                ..Default::default()
            })
            .is_empty()
        );
        assert!(
            check(BackupTemplate {
                included_namespaces: strings(&["app-*", "db?", "x[ab]"]),
                ..Default::default()
            })
            .is_empty()
        );
        assert_eq!(
            check(BackupTemplate {
                included_namespaces: strings(&["*", "a"]),
                ..Default::default()
            })
            .len(),
            1
        );
        assert_eq!(
            check(BackupTemplate {
                excluded_namespaces: strings(&["*"]),
                ..Default::default()
            })
            .len(),
            1
        );
        assert_eq!(
            check(BackupTemplate {
                included_namespaces: strings(&["a"]),
                excluded_namespaces: strings(&["a"]),
                ..Default::default()
            })
            .len(),
            1
        );
        for bad in ["Bad", "a{b}", "a**", "x[]", "x[a"] {
            assert_eq!(
                check(BackupTemplate {
                    included_namespaces: strings(&[bad]),
                    ..Default::default()
                })
                .len(),
                1,
                "{bad}"
            );
        }
    }

    #[test]
    fn resource_filters_do_not_mix() {
        let mixed = BackupTemplate {
            included_resources: strings(&["pods"]),
            included_namespace_scoped_resources: strings(&["deployments"]),
            ..Default::default()
        };
        assert_eq!(check(mixed).len(), 1);
        let scoped = BackupTemplate {
            included_cluster_scoped_resources: strings(&["nodes"]),
            excluded_cluster_scoped_resources: strings(&["*"]),
            ..Default::default()
        };
        assert_eq!(check(scoped).len(), 1);
    }

    #[test]
    fn selectors() {
        let both = BackupTemplate {
            label_selector: Some(LabelSelector::default()),
            or_label_selectors: Some(vec![LabelSelector::default()]),
            ..Default::default()
        };
        assert_eq!(check(both).len(), 1);
        let bad = LabelSelector {
            match_expressions: vec![crate::config::LabelSelectorRequirement {
                key: "app".into(),
                operator: "In".into(),
                values: vec![],
            }],
            ..Default::default()
        };
        assert_eq!(
            check(BackupTemplate {
                label_selector: Some(bad),
                ..Default::default()
            })
            .len(),
            1
        );
    }
}
