//! The fleet views' JSON: one document for several files or clusters, each entry
//! the single-cluster view of its own (diagnostics, plan, status) or why there is
//! none. Fields in name order, as the documents have always listed them.

use serde::Serialize;

use super::diagnostics::WireDiagnostic;
use super::plan::WirePlan;
use super::status::WireCopies;

/// `validate -f DIR --format json`.
#[derive(Debug, Serialize)]
pub struct WireValidations<'a> {
    pub files: Vec<WireValidation<'a>>,
    pub format_version: u32,
}

#[derive(Debug, Serialize)]
pub struct WireValidation<'a> {
    pub diagnostics: Vec<WireDiagnostic<'a>>,
    pub file: String,
    pub valid: bool,
}

/// `plan -f DIR --format json`.
#[derive(Debug, Serialize)]
pub struct WirePlans<'a> {
    pub clusters: Vec<WireClusterPlan<'a>>,
    pub format_version: u32,
}

#[derive(Debug, Serialize)]
pub struct WireClusterPlan<'a> {
    pub context: Option<&'a str>,
    /// Why the cluster was not planned; `null` when it was.
    pub error: Option<String>,
    pub file: String,
    /// The plan, as `plan --format json` shows it; `null` when there is none.
    pub plan: Option<WirePlan<'a>>,
    /// `changes`, `no changes`, `errors`, `invalid`, `unreachable` or `failed`.
    pub result: &'static str,
}

/// `status -f DIR --format json`.
#[derive(Debug, Serialize)]
pub struct WireStatuses<'a> {
    pub clusters: Vec<WireClusterStatus<'a>>,
    pub format_version: u32,
}

#[derive(Debug, Serialize)]
pub struct WireClusterStatus<'a> {
    pub context: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<WireCopies<'a>>,
}
