//! Plan: desired vs observed → the changes that applying the file would make.
//!
//! Pure: `plan` takes the rendered and observed states as values and returns a
//! [`Plan`], plain data that renderers show and `apply` carries out. It formats nothing
//! and decides nothing about display. Secret values never enter a plan: a changed key
//! is recorded as [`FieldValue::Sensitive`].
//!
//! What it manages (product.md §3): objects it declares; deletes only objects with
//! stowage's labels and this file's owner; adopts unlabelled objects the file declares;
//! lists the rest as unmanaged or owned elsewhere.

pub mod execution;
pub mod live;
pub mod normalize;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::crd::VeleroObject;
use crate::diagnostic::{Code, Diagnostic, Pointer};
use crate::observe::{
    BucketFindings, BucketReport, BucketStatus, Observed, ObservedObject, ObservedSecret,
};
use crate::render::{Desired, DesiredObject, DesiredSecret};
use crate::velero::server::{CONTAINER as VELERO_CONTAINER, ServerArgs};
pub use execution::{Body, Preparation, Request, SecretData, Stage, Steps};

use crate::velero::{
    FieldPath, Kind, MANAGED_BY_LABEL, MANAGED_BY_VALUE, OWNER_LABEL, ObjectRef, PROTECT_ANNOTATION,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// Risky changes, with the stable names of product.md §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Risk {
    /// A location's bucket or prefix changes: its backups vanish from the cluster's view.
    Repoint,
    /// Deleting a location that holds backups.
    DeleteWithBackups,
    /// The default backup location moves.
    DefaultSwitch,
    /// A schedule change that makes Velero fire a backup at once.
    ImmediateRun,
    /// Deleting a snapshot location that backups reference.
    VslInUse,
    /// Taking over an object stowage did not create.
    Adopt,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Repoint => "repoint",
            Risk::DeleteWithBackups => "delete-with-backups",
            Risk::DefaultSwitch => "default-switch",
            Risk::ImmediateRun => "immediate-run",
            Risk::VslInUse => "vsl-in-use",
            Risk::Adopt => "adopt",
        }
    }

    /// One line on what the risk means for the user.
    pub fn explain(self) -> &'static str {
        match self {
            Risk::Repoint => {
                "the location points at another bucket or prefix: backups in the old place disappear from the cluster's view"
            }
            Risk::DeleteWithBackups => {
                "the location holds backups: they stay in the bucket but leave the cluster's view"
            }
            Risk::DefaultSwitch => "backups that name no location go elsewhere from now on",
            Risk::ImmediateRun => "Velero may start a backup as soon as this is applied",
            Risk::VslInUse => {
                "backups reference this snapshot location: their restores and deletions need it"
            }
            Risk::Adopt => "the object exists without stowage's labels: stowage takes it over",
        }
    }
}

/// One side of a field change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldValue {
    Absent,
    Value(Value),
    /// A secret: present, value not shown.
    Sensitive,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The field, e.g. `spec.objectStorage.prefix` or `metadata.labels["app"]`.
    pub path: FieldPath,
    pub before: FieldValue,
    pub after: FieldValue,
}

impl Change {
    /// Every field the change sets, changes or removes; read this, not `fields`.
    pub fn field_changes(&self) -> Cow<'_, [FieldChange]> {
        match &self.request {
            Request::Apply {
                body: Body::Velero(manifest),
                ..
            } if self.action == Action::Create && self.fields.is_empty() => {
                Cow::Owned(created_fields(manifest))
            }
            _ => Cow::Borrowed(&self.fields),
        }
    }
}

/// A new object's fields, as it will be sent rather than in its comparable form: its
/// spec's leaves, without what Go's `omitempty` leaves out.
fn created_fields(manifest: &VeleroObject) -> Vec<FieldChange> {
    spec_leaves(&manifest.spec_value())
}

/// The leaves `leaf_changes` lists from nothing to `spec` with its empties dropped,
/// walked where they lie rather than from a pruned copy of the spec.
fn spec_leaves(spec: &Value) -> Vec<FieldChange> {
    fn leaves(path: &FieldPath, value: &Value, out: &mut Vec<FieldChange>) {
        if let Value::Object(map) = value {
            for (key, child) in map {
                leaves(&path.field(key), child, out);
            }
        } else if !normalize::is_empty(value) {
            out.push(FieldChange {
                path: path.clone(),
                before: FieldValue::Absent,
                after: FieldValue::Value(normalize::drop_empty(value.clone())),
            });
        }
    }
    let mut fields = Vec::new();
    leaves(&FieldPath::root("spec"), spec, &mut fields);
    fields
}

impl FieldChange {
    pub fn is_sensitive(&self) -> bool {
        matches!(self.before, FieldValue::Sensitive) || matches!(self.after, FieldValue::Sensitive)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub action: Action,
    pub object: ObjectRef,
    /// When apply sends it.
    pub stage: Stage,
    /// What apply sends.
    pub request: Request,
    /// What apply sends for it in an earlier stage, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepare: Option<Preparation>,
    /// The fields an update or a delete changes, and a Secret's keys. Empty for the
    /// create of an object: its fields are those of the object it sends, listed by
    /// [`Change::field_changes`] when asked (a plan from empty of a large file would
    /// otherwise hold every object a second time, field by field).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    pub risks: Vec<Risk>,
    /// For deletions of locations: the backups known to be in it (cluster or bucket).
    pub backups: Option<usize>,
    /// For Schedules created or updated: when Velero will start the first backup
    /// after the change lands (known when the plan is made with a clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_backup: Option<FirstBackup>,
}

/// When Velero starts a Schedule's first backup after a change, by its own rule
/// (velero-semantics.md §3.5): the base time is `status.lastBackup`, else the
/// creation, or `status.lastSkipped` when later; a run is due once now is past the
/// cron's next tick after the base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FirstBackup {
    /// As soon as the change lands (Velero looks within a minute).
    Immediately,
    /// At the cron's next tick, RFC 3339.
    At(String),
}

/// An object in the namespace that someone else owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedElsewhere {
    pub object: ObjectRef,
    pub owner: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub namespace: String,
    /// Sorted by kind (in apply order), then name.
    pub changes: Vec<Change>,
    /// Velero objects without stowage's labels that the file does not declare.
    pub unmanaged: Vec<ObjectRef>,
    pub owned_elsewhere: Vec<OwnedElsewhere>,
    /// Problems that make the plan unsafe to apply (errors) or worth a look (warnings).
    pub diagnostics: Vec<Diagnostic>,
    /// What the bucket checks found for each declared location, when they ran.
    pub buckets: Vec<BucketReport>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        for change in &self.changes {
            match change.action {
                Action::Create => summary.create += 1,
                Action::Update => summary.update += 1,
                Action::Delete => summary.delete += 1,
            }
        }
        summary
    }

    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The first change that must come from inputs quiet for the quiet period
    /// (product contract §7.1), in words: a deletion, a credential written, a location
    /// repointed, the default moved. A half-written file is most dangerous there.
    pub fn guarded_change(&self) -> Option<String> {
        self.changes.iter().find_map(|change| {
            let what = if change.action == Action::Delete {
                "deletes"
            } else if change.object.kind == Kind::Secret {
                "writes the credential"
            } else if change.risks.contains(&Risk::Repoint) {
                "repoints"
            } else if change.risks.contains(&Risk::DefaultSwitch) {
                "moves the default location with"
            } else {
                return None;
            };
            Some(format!("{what} {}", change.object))
        })
    }
}

/// What else the planner knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// What the bucket checks found, when they ran.
    pub buckets: Option<BucketFindings>,
    /// When the plan is made: with it, each Schedule change says when its first backup
    /// starts, and `immediate-run` is computed by Velero's rule instead of guessed.
    pub now: Option<chrono::DateTime<chrono::Utc>>,
}

impl Context {
    /// Backups found in the bucket place `location` points at *now* (in the cluster),
    /// when the checks listed it.
    fn backups_in_current_place(&self, location: &str) -> Option<usize> {
        self.buckets
            .as_ref()?
            .current
            .iter()
            .find(|report| report.location == location)
            .and_then(|report| match report.status {
                BucketStatus::Reachable { backups, .. } => Some(backups),
                _ => None,
            })
    }
}

/// The convergence check, after an apply: what a plan of the same file still changes,
/// as one `stowage::not-converged` error naming each field and the managers that own
/// it in `observed` (the state the plan was made against). `None` when it is empty.
pub fn not_converged(replan: &Plan, observed: &Observed) -> Option<Diagnostic> {
    if !replan.has_changes() {
        return None;
    }
    let mut remaining = Vec::new();
    for change in &replan.changes {
        let object = &change.object;
        let live = observed.objects.get(object);
        let what = format!(
            "{} {}/{}",
            object.kind.as_str(),
            object.namespace,
            object.name
        );
        let fields = change.field_changes();
        if fields.is_empty() {
            remaining.push(format!("{what} ({})", change.action.as_str()));
        }
        for field in fields.iter() {
            let managers = live.map(|o| o.managers_of(&field.path)).unwrap_or_default();
            let owned = if managers.is_empty() {
                String::new()
            } else {
                format!(" (set by {})", managers.join(", "))
            };
            remaining.push(format!("{what} {}{owned}", field.path));
        }
    }
    Some(
        Diagnostic::error(
            Code::NotConverged,
            format!(
                "after the apply, a plan of the same file still changes: {}",
                remaining.join("; ")
            ),
        )
        .help("another manager keeps setting these fields, or stowage cannot write them: see who, and stop it or declare the value in the file"),
    )
}

/// Compares what the file declares with what the cluster holds.
pub fn plan(desired: &Desired, observed: &Observed, context: &Context) -> Plan {
    let mut planner = Planner {
        desired,
        observed,
        context,
        plan: Plan {
            namespace: desired.namespace.clone(),
            // A plan from empty changes every declared object: one allocation.
            changes: Vec::with_capacity(desired.objects.len() + desired.secrets.len() + 1),
            ..Plan::default()
        },
        first_runs: HashMap::new(),
    };
    planner.secrets();
    planner.objects();
    planner.external_keys();
    planner.server_flag();
    planner.leftovers();
    planner.mass_delete_guard();
    planner.default_taken_from_another_owner();
    planner
        .plan
        .diagnostics
        .extend(live::checks(desired, observed));
    if let Some(findings) = &context.buckets {
        planner.bucket_findings(&findings.declared);
    }
    let mut plan = planner.plan;
    // Each object changes at most once, so no two compare equal: sorted in place,
    // without the stable sort's copy of the plan.
    plan.changes
        .sort_unstable_by(|a, b| a.object.cmp(&b.object));
    debug_assert!(plan.changes.windows(2).all(|w| w[0].object != w[1].object));
    plan.unmanaged.sort();
    plan.owned_elsewhere.sort_by(|a, b| a.object.cmp(&b.object));
    plan
}

struct Planner<'a> {
    desired: &'a Desired,
    observed: &'a Observed,
    context: &'a Context,
    plan: Plan,
    /// When a cron first fires after a time: schedules share a few crons (every copy
    /// of a fanned-out one, most of a fleet's), and the calendar search is the
    /// costliest step of planning one.
    first_runs: HashMap<(&'a str, chrono::DateTime<chrono::Utc>), Option<FirstBackup>>,
}

/// Whose an observed object is, by its labels.
enum Ownership<'a> {
    Ours,
    Unlabelled,
    Other(&'a str),
}

/// Ours needs both labels and this file's owner. An object with the managed-by label
/// but no owner was not written by stowage (which always writes both): like an
/// unlabelled one, it is adopted when declared and otherwise never touched.
fn ownership<'a>(labels: &'a BTreeMap<String, String>, owner: &str) -> Ownership<'a> {
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY_VALUE) {
        return Ownership::Unlabelled;
    }
    match labels.get(OWNER_LABEL) {
        None => Ownership::Unlabelled,
        Some(other) if other != owner => Ownership::Other(other),
        Some(_) => Ownership::Ours,
    }
}

impl<'a> Planner<'a> {
    fn owner_conflict(
        &mut self,
        object: &ObjectRef,
        other: &str,
        origin: &crate::diagnostic::Pointer,
    ) {
        self.plan.diagnostics.push(
            Diagnostic::error(
                Code::OwnerConflict,
                format!(
                    "{object} belongs to stowage owner `{other}`, not `{}`",
                    self.desired.owner
                ),
            )
            .at(origin.clone())
            .label("declared here too")
            .help(format!(
                "two stowage files declare it: remove it from one of them, or set [velero] owner = \"{other}\" if this file is meant to own it"
            )),
        );
    }

    fn secrets(&mut self) {
        for secret in &self.desired.secrets {
            match self.observed.secrets.get(&secret.object) {
                None => self.plan.changes.push(Change {
                    action: Action::Create,
                    object: secret.object.clone(),
                    stage: Stage::Credentials,
                    request: secret_request(secret),
                    prepare: None,
                    fields: secret
                        .data
                        .keys()
                        .map(|key| FieldChange {
                            path: FieldPath::root("data").field(key),
                            before: FieldValue::Absent,
                            after: FieldValue::Sensitive,
                        })
                        .collect(),
                    risks: Vec::new(),
                    backups: None,
                    first_backup: None,
                }),
                Some(observed) => self.update_secret(secret, observed),
            }
        }
    }

    fn update_secret(&mut self, secret: &DesiredSecret, observed: &ObservedSecret) {
        let mut risks = Vec::new();
        match ownership(&observed.labels, &self.desired.owner) {
            Ownership::Other(other) => {
                let other = other.to_string();
                self.owner_conflict(&secret.object, &other, &secret.origin);
                return;
            }
            Ownership::Unlabelled => risks.push(Risk::Adopt),
            Ownership::Ours => {}
        }
        let mut fields = label_changes(
            &secret.labels,
            &observed.labels,
            &FieldPath::of(["metadata", "labels"]),
        );
        for (key, value) in &secret.data {
            let before = match observed.data.get(key) {
                None => FieldValue::Absent,
                Some(current) if current == value => continue,
                Some(_) => FieldValue::Sensitive,
            };
            fields.push(FieldChange {
                path: FieldPath::root("data").field(key),
                before,
                after: FieldValue::Sensitive,
            });
        }
        let mut dropped = BTreeMap::new();
        for key in &observed.keys_applied_by_stowage {
            if let (false, Some(value)) = (secret.data.contains_key(key), observed.data.get(key)) {
                dropped.insert(key.clone(), value.clone());
                fields.push(FieldChange {
                    path: FieldPath::root("data").field(key),
                    before: FieldValue::Sensitive,
                    after: FieldValue::Absent,
                });
            }
        }
        // Keys the file dropped may still be read by locations it moves elsewhere:
        // the new keys are written at once beside them, and they go only after the
        // locations have moved.
        let (stage, prepare) = if dropped.is_empty() {
            (Stage::Credentials, None)
        } else {
            let mut both = secret.data.clone();
            both.extend(dropped);
            let prepare = Preparation {
                stage: Stage::Credentials,
                request: Request::Apply {
                    body: Body::Secret {
                        labels: secret.labels.clone(),
                        data: SecretData::Values(both),
                    },
                    remove: None,
                },
            };
            (Stage::CredentialDeletions, Some(prepare))
        };
        if !fields.is_empty() || !risks.is_empty() {
            self.plan.changes.push(Change {
                action: Action::Update,
                object: secret.object.clone(),
                stage,
                request: secret_request(secret),
                prepare,
                fields,
                risks,
                backups: None,
                first_backup: None,
            });
        }
    }

    fn objects(&mut self) {
        for desired in &self.desired.objects {
            match self.observed.objects.get(&desired.object) {
                None => self.create_object(desired),
                Some(observed) => self.update_object(desired, observed),
            }
        }
    }

    fn create_object(&mut self, desired: &'a DesiredObject) {
        let mut risks = Vec::new();
        if desired.manifest.is_default_location()
            && self
                .current_default()
                .is_some_and(|current| current != desired.object.name)
        {
            risks.push(Risk::DefaultSwitch);
        }
        let first_backup = self
            .context
            .now
            .filter(|_| desired.object.kind == Kind::Schedule)
            .and_then(|now| first_backup_with(desired, None, now, &mut self.first_runs));
        self.plan.changes.push(Change {
            action: Action::Create,
            object: desired.object.clone(),
            stage: Stage::of(Action::Create, desired.object.kind, false),
            request: Request::Apply {
                body: Body::Velero(desired.manifest.clone()),
                remove: None,
            },
            prepare: None,
            fields: Vec::new(),
            risks,
            backups: None,
            first_backup,
        });
    }

    fn update_object(&mut self, desired: &'a DesiredObject, observed: &ObservedObject) {
        let mut first = None;
        let mut risks = Vec::new();
        let mut backups = None;
        match ownership(&observed.labels, &self.desired.owner) {
            Ownership::Other(other) => {
                let other = other.to_string();
                self.owner_conflict(&desired.object, &other, &desired.origin);
                return;
            }
            Ownership::Unlabelled => risks.push(Risk::Adopt),
            Ownership::Ours => {}
        }
        let kind = desired.object.kind;
        let wanted = normalize::spec(kind, &desired.manifest.spec_value());
        let current = normalize::spec(kind, observed.spec());
        let mut fields = Vec::new();
        leaf_changes(&FieldPath::root("spec"), &current, &wanted, &mut fields);
        let metadata = desired.manifest.metadata();
        let no_entries = BTreeMap::new();
        let labels = metadata.labels.as_ref().unwrap_or(&no_entries);
        fields.extend(label_changes(
            labels,
            &observed.labels,
            &FieldPath::of(["metadata", "labels"]),
        ));
        let annotations = metadata.annotations.as_ref().unwrap_or(&no_entries);
        fields.extend(label_changes(
            annotations,
            &observed.annotations,
            &FieldPath::of(["metadata", "annotations"]),
        ));

        match kind {
            Kind::BackupStorageLocation => {
                if storage_place(&wanted) != storage_place(&current) {
                    risks.push(Risk::Repoint);
                    backups = self.context.backups_in_current_place(&desired.object.name);
                    if is_protected(&observed.annotations) || is_protected(annotations) {
                        self.plan.diagnostics.push(
                            Diagnostic::error(
                                Code::Protected,
                                format!("{} is protected: its bucket or prefix cannot change", desired.object),
                            )
                            .at(desired.origin.clone())
                            .help("to move it, remove `protect = true` first and apply, then change the bucket or prefix"),
                        );
                    }
                }
                if wanted.get("default") != current.get("default") {
                    risks.push(Risk::DefaultSwitch);
                }
            }
            // Only a change that lands can start a backup.
            Kind::Schedule if fields.is_empty() => {}
            Kind::Schedule => {
                // What about the change can start a backup: unpausing, or a new cron.
                let unpaused = current.get("paused") == Some(&Value::Bool(true))
                    && wanted.get("paused").is_none();
                let new_cron = current.get("schedule") != wanted.get("schedule");
                let timing = unpaused || new_cron;
                match self.context.now {
                    Some(now) => {
                        first =
                            first_backup_with(desired, Some(observed), now, &mut self.first_runs);
                        if timing && first == Some(FirstBackup::Immediately) {
                            risks.push(Risk::ImmediateRun);
                        }
                    }
                    // Without a clock: any such change unless it skips the first run.
                    None => {
                        // From the object as sent: the comparable form leaves
                        // `skipImmediately` out (Velero's controller owns it).
                        let skips = desired
                            .manifest
                            .as_schedule()
                            .is_some_and(|schedule| schedule.spec.skip_immediately == Some(true));
                        if timing && !skips {
                            risks.push(Risk::ImmediateRun);
                        }
                    }
                }
            }
            _ => {}
        }
        if !fields.is_empty() || !risks.is_empty() {
            let gives_up_default = kind == Kind::BackupStorageLocation
                && current.get("default") == Some(&Value::Bool(true))
                && wanted.get("default") != Some(&Value::Bool(true));
            self.plan.changes.push(Change {
                action: Action::Update,
                object: desired.object.clone(),
                stage: Stage::of(Action::Update, kind, gives_up_default),
                request: Request::Apply {
                    body: Body::Velero(desired.manifest.clone()),
                    remove: removals(&fields),
                },
                prepare: None,
                fields,
                risks,
                backups,
                first_backup: first,
            });
        }
    }

    /// Declaring a default while another owner's location is the default would take
    /// it from that file, which takes it back at its next apply: two files flipping
    /// `spec.default` forever. Refused, naming both.
    fn default_taken_from_another_owner(&mut self) {
        let Some(ours) = self
            .desired
            .objects
            .iter()
            .find(|o| o.manifest.is_default_location())
        else {
            return;
        };
        let theirs = self.observed.objects.values().find(|o| {
            o.object.kind == Kind::BackupStorageLocation
                && o.object.namespace == self.desired.namespace
                && o.object != ours.object
                && o.spec().get("default") == Some(&Value::Bool(true))
        });
        let Some(theirs) = theirs else {
            return;
        };
        if let Ownership::Other(owner) = ownership(&theirs.labels, &self.desired.owner) {
            let diagnostic = Diagnostic::error(
                Code::DefaultLocation,
                format!(
                    "`{}` would become the default location and take it from {}, which owner `{owner}` manages: each file would take it back from the other",
                    ours.object.name, theirs.object
                ),
            )
            .at(ours.origin.clone().as_key())
            .help(format!(
                "leave the default to `{owner}`: set [velero] default_location_owner = \"{owner}\" here and remove `default = true`; or remove the default from owner `{owner}`'s file first"
            ));
            self.plan.diagnostics.push(diagnostic);
        }
    }

    /// The location Velero treats as default now, if the state shows one.
    fn current_default(&self) -> Option<&str> {
        self.observed
            .objects
            .values()
            .filter(|o| {
                o.object.kind == Kind::BackupStorageLocation
                    && o.object.namespace == self.desired.namespace
            })
            .find(|o| o.spec().get("default") == Some(&Value::Bool(true)))
            .map(|o| o.object.name.as_str())
    }

    fn external_keys(&mut self) {
        if !self.observed.kinds_seen.contains(&Kind::Secret) {
            return;
        }
        for external in &self.desired.external {
            let object = ObjectRef {
                kind: Kind::Secret,
                namespace: self.desired.namespace.clone(),
                name: external.secret.clone(),
            };
            let present = self
                .observed
                .secrets
                .get(&object)
                .is_some_and(|secret| secret.data.contains_key(&external.key));
            if !present {
                self.plan.diagnostics.push(
                    Diagnostic::error(
                        Code::CredentialSource,
                        format!(
                            "external credential `{}`: Secret {} has no key {}",
                            external.credential, external.secret, external.key
                        ),
                    )
                    .at(crate::diagnostic::Pointer::value(["credentials", external.credential.as_str(), "external"]))
                    .help("create the Secret key first, or give the credential a `file` or `env` so stowage writes it"),
                );
            }
        }
    }

    fn server_flag(&mut self) {
        let Some(flag) = &self.desired.server_flag else {
            return;
        };
        let Some(deployment) = self.observed.objects.get(&flag.deployment) else {
            if self.observed.kinds_seen.contains(&Kind::Deployment) {
                self.plan.diagnostics.push(
                    Diagnostic::error(
                        Code::Reference,
                        format!("the Velero Deployment {} was not found", flag.deployment.name),
                    )
                    .at(flag.origin.clone())
                    .help("set [velero] deployment to the name of the Deployment running `velero server`"),
                );
            }
            return;
        };
        let Some(args) = ServerArgs::of_deployment(&deployment.manifest) else {
            self.plan.diagnostics.push(
                Diagnostic::error(
                    Code::Reference,
                    format!(
                        "Deployment {} has no container named {VELERO_CONTAINER}",
                        flag.deployment.name
                    ),
                )
                .at(flag.origin.clone()),
            );
            return;
        };
        let wanted = flag.applied_to(&args);
        if wanted != args {
            // Only the container's arguments, owned by stowage from then on.
            let body = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": flag.deployment.name, "namespace": flag.deployment.namespace},
                "spec": {"template": {"spec": {"containers": [
                    {"name": VELERO_CONTAINER, "args": wanted.as_slice()}]}}}});
            self.plan.changes.push(Change {
                action: Action::Update,
                object: flag.deployment.clone(),
                stage: Stage::of(Action::Update, Kind::Deployment, false),
                request: Request::Apply {
                    body: Body::Object(body),
                    remove: None,
                },
                prepare: None,
                fields: vec![FieldChange {
                    path: FieldPath::of(["spec", "template", "spec", "containers"])
                        .named(VELERO_CONTAINER)
                        .field("args"),
                    before: FieldValue::Value(Value::from(args.into_vec())),
                    after: FieldValue::Value(Value::from(wanted.into_vec())),
                }],
                risks: Vec::new(),
                backups: None,
                first_backup: None,
            });
        }
    }

    fn leftovers(&mut self) {
        let declared: BTreeSet<&ObjectRef> = self
            .desired
            .objects
            .iter()
            .map(|o| &o.object)
            .chain(self.desired.secrets.iter().map(|s| &s.object))
            .collect();
        let namespace = &self.desired.namespace;
        for observed in self.observed.objects.values() {
            let object = &observed.object;
            if !object.kind.is_velero()
                || &object.namespace != namespace
                || declared.contains(object)
            {
                continue;
            }
            match ownership(&observed.labels, &self.desired.owner) {
                Ownership::Unlabelled => self.plan.unmanaged.push(object.clone()),
                Ownership::Other(owner) => self.plan.owned_elsewhere.push(OwnedElsewhere {
                    object: object.clone(),
                    owner: owner.to_string(),
                }),
                Ownership::Ours => self.delete(observed),
            }
        }
        // A Secret the file names for an `external` credential is in use, whoever made
        // it: a file that took over stowage's own Secret as external (as `import`
        // writes it) must not delete the credential its locations read.
        let referenced: BTreeSet<&str> = self
            .desired
            .external
            .iter()
            .map(|external| external.secret.as_str())
            .collect();
        for secret in self.observed.secrets.values() {
            let object = &secret.object;
            if &object.namespace != namespace
                || declared.contains(object)
                || referenced.contains(object.name.as_str())
            {
                continue;
            }
            match ownership(&secret.labels, &self.desired.owner) {
                Ownership::Ours => self.plan.changes.push(Change {
                    action: Action::Delete,
                    object: object.clone(),
                    stage: Stage::of(Action::Delete, Kind::Secret, false),
                    request: Request::Delete {
                        uid: secret.uid.clone(),
                    },
                    prepare: None,
                    fields: secret
                        .data
                        .keys()
                        .map(|key| FieldChange {
                            path: FieldPath::root("data").field(key),
                            before: FieldValue::Sensitive,
                            after: FieldValue::Absent,
                        })
                        .collect(),
                    risks: Vec::new(),
                    backups: None,
                    first_backup: None,
                }),
                Ownership::Other(owner) => self.plan.owned_elsewhere.push(OwnedElsewhere {
                    object: object.clone(),
                    owner: owner.to_string(),
                }),
                // Unlabelled Secrets are the cluster's business, not listed.
                Ownership::Unlabelled => {}
            }
        }
    }

    /// The deletion guard: a plan that deletes all of the objects this file manages,
    /// or more than half of them, is refused unless the file or the command allows it.
    /// A half-written file (a slow copy, a non-atomic writer) declares little or
    /// nothing and would otherwise delete everything it manages.
    fn mass_delete_guard(&mut self) {
        if self.desired.allow_mass_delete {
            return;
        }
        let namespace = &self.desired.namespace;
        let owner = &self.desired.owner;
        let ours =
            |labels: &BTreeMap<String, String>| matches!(ownership(labels, owner), Ownership::Ours);
        let managed = self
            .observed
            .objects
            .values()
            .filter(|o| o.object.kind.is_velero() && &o.object.namespace == namespace)
            .filter(|o| ours(&o.labels))
            .count()
            + self
                .observed
                .secrets
                .values()
                .filter(|s| &s.object.namespace == namespace && ours(&s.labels))
                .count();
        let deleted = self
            .plan
            .changes
            .iter()
            .filter(|c| c.action == Action::Delete)
            .count();
        if deleted == 0 || (deleted < managed && deleted * 2 <= managed) {
            return;
        }
        let how_many = if deleted >= managed {
            format!("all {managed}")
        } else {
            format!("{deleted} of the {managed}")
        };
        self.plan.diagnostics.push(
            Diagnostic::error(
                Code::MassDelete,
                format!(
                    "the plan deletes {how_many} objects this file manages in namespace {namespace}; refused as a mass delete"
                ),
            )
            .help("if that is meant, pass --allow-mass-delete or set [velero] allow_mass_delete = true; a file caught half-written declares little and deletes much"),
        );
    }

    fn delete(&mut self, observed: &ObservedObject) {
        let object = &observed.object;
        let mut risks = Vec::new();
        let mut backups = None;
        match object.kind {
            Kind::BackupStorageLocation => {
                let in_cluster = self
                    .observed
                    .backups
                    .iter()
                    .filter(|b| {
                        b.namespace == object.namespace
                            && b.storage_location.as_deref() == Some(&object.name)
                    })
                    .count();
                let in_bucket = self.context.backups_in_current_place(&object.name);
                let count = in_bucket.unwrap_or(0).max(in_cluster);
                if in_bucket.is_some() || in_cluster > 0 {
                    backups = Some(count);
                }
                if count > 0 {
                    risks.push(Risk::DeleteWithBackups);
                }
                if is_protected(&observed.annotations) {
                    self.plan.diagnostics.push(
                        Diagnostic::error(
                            Code::Protected,
                            format!("{object} is protected and cannot be deleted"),
                        )
                        .help("it was declared with `protect = true`: declare it again, or remove the protect annotation stowage.io/protect from the object deliberately"),
                    );
                }
            }
            Kind::VolumeSnapshotLocation => {
                let using = self
                    .observed
                    .backups
                    .iter()
                    .filter(|b| {
                        b.namespace == object.namespace
                            && b.volume_snapshot_locations.contains(&object.name)
                    })
                    .count();
                if using > 0 {
                    risks.push(Risk::VslInUse);
                    backups = Some(using);
                }
            }
            _ => {}
        }
        let before = normalize::spec(object.kind, observed.spec());
        let mut fields = Vec::new();
        leaf_changes(&FieldPath::root("spec"), &before, &Value::Null, &mut fields);
        // The default going away while another location takes it: it gives the
        // default up first, as a location that stays would, so Velero never sees two
        // (it would keep the newer one, perhaps this one); it goes only after the
        // schedules that name it have moved.
        let another_takes_default = self
            .desired
            .objects
            .iter()
            .any(|o| o.manifest.is_default_location());
        let prepare = (object.kind == Kind::BackupStorageLocation
            && is_default(&observed.manifest)
            && another_takes_default)
            .then(|| Preparation {
                stage: Stage::DefaultGiven,
                request: Request::MergePatch {
                    patch: serde_json::json!({"spec": {"default": false}}),
                },
            });
        self.plan.changes.push(Change {
            action: Action::Delete,
            object: object.clone(),
            stage: Stage::of(Action::Delete, object.kind, false),
            request: Request::Delete {
                uid: observed.uid.clone(),
            },
            prepare,
            fields,
            risks,
            backups,
            first_backup: None,
        });
    }
}

/// When Velero starts the first backup of the Schedule `desired` once it is applied
/// over `observed` (`None`: created), by Velero's rule; `None` when it is paused.
pub fn first_backup(
    desired: &DesiredObject,
    observed: Option<&ObservedObject>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<FirstBackup> {
    first_backup_with(desired, observed, now, &mut HashMap::new())
}

/// [`first_backup`], with the answers for each cron and starting time kept in `known`
/// (all for the same `now`).
fn first_backup_with<'a>(
    desired: &'a DesiredObject,
    observed: Option<&ObservedObject>,
    now: chrono::DateTime<chrono::Utc>,
    known: &mut HashMap<(&'a str, chrono::DateTime<chrono::Utc>), Option<FirstBackup>>,
) -> Option<FirstBackup> {
    let spec = &desired.manifest.as_schedule()?.spec;
    if spec.paused {
        return None;
    }
    let cron = spec.schedule.as_str();
    let time = |at: &str| {
        observed
            .and_then(|o| o.manifest.pointer(at))
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    let base = match observed {
        // Created now: the first tick after creation.
        None => now,
        // skipImmediately: Velero records the skip at once, and counts from it.
        Some(_) if spec.skip_immediately == Some(true) => now,
        Some(_) => {
            let base = time("/status/lastBackup")
                .or_else(|| time("/metadata/creationTimestamp"))
                .unwrap_or(now);
            time("/status/lastSkipped")
                .filter(|skipped| *skipped > base)
                .unwrap_or(base)
        }
    };
    known
        .entry((cron, base))
        .or_insert_with(|| {
            let next = crate::velero::cron::next_run(cron, base)?;
            Some(if next < now {
                FirstBackup::Immediately
            } else {
                FirstBackup::At(next.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            })
        })
        .clone()
}

fn spec_of(manifest: &Value) -> &Value {
    manifest.get("spec").unwrap_or(&Value::Null)
}

fn is_default(manifest: &Value) -> bool {
    spec_of(manifest).get("default") == Some(&Value::Bool(true))
}

fn is_protected(annotations: &BTreeMap<String, String>) -> bool {
    annotations.get(PROTECT_ANNOTATION).map(String::as_str) == Some("true")
}

/// The request that writes a declared Secret: its labels and only its declared keys.
fn secret_request(secret: &DesiredSecret) -> Request {
    Request::Apply {
        body: Body::Secret {
            labels: secret.labels.clone(),
            data: SecretData::Values(secret.data.clone()),
        },
        remove: None,
    }
}

/// The spec fields an update removes that server-side apply would leave: set in the
/// cluster (by another manager, since stowage applies only what the file declares)
/// and unset by the file. They go by a JSON merge patch of nulls; anything a merge
/// patch cannot address is left to the convergence check to report.
fn removals(fields: &[FieldChange]) -> Option<Value> {
    let mut patch = Value::Object(Default::default());
    let mut any = false;
    for field in fields {
        let removed = matches!(field.after, FieldValue::Absent)
            && !matches!(field.before, FieldValue::Absent);
        if removed && field.path.is_under("spec") {
            any |= field.path.set_in_merge_patch(&mut patch, Value::Null);
        }
    }
    any.then_some(patch)
}

/// Desired labels or annotations missing or different on the object; others are left
/// alone, as server-side apply leaves them.
fn label_changes(
    wanted: &BTreeMap<String, String>,
    current: &BTreeMap<String, String>,
    prefix: &FieldPath,
) -> Vec<FieldChange> {
    wanted
        .iter()
        .filter(|(key, value)| current.get(*key) != Some(value))
        .map(|(key, value)| FieldChange {
            path: prefix.field(key),
            before: current
                .get(key)
                .map(|v| FieldValue::Value(Value::String(v.clone())))
                .unwrap_or(FieldValue::Absent),
            after: FieldValue::Value(Value::String(value.clone())),
        })
        .collect()
}

/// Leaf-level differences between two normalized values: maps are walked, everything
/// else (lists included, which Velero's CRDs treat as atomic) compares whole.
fn leaf_changes(path: &FieldPath, before: &Value, after: &Value, out: &mut Vec<FieldChange>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for key in keys {
                let (before, after) = (b.get(key), a.get(key));
                if before == after {
                    continue;
                }
                leaf_changes(
                    &path.field(key),
                    before.unwrap_or(&Value::Null),
                    after.unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Object(b), Value::Null) => {
            for (key, value) in b {
                leaf_changes(&path.field(key), value, &Value::Null, out);
            }
        }
        (Value::Null, Value::Object(a)) => {
            for (key, value) in a {
                leaf_changes(&path.field(key), &Value::Null, value, out);
            }
        }
        (b, a) if b == a => {}
        (b, a) => out.push(FieldChange {
            path: path.clone(),
            before: if b.is_null() {
                FieldValue::Absent
            } else {
                FieldValue::Value(b.clone())
            },
            after: if a.is_null() {
                FieldValue::Absent
            } else {
                FieldValue::Value(a.clone())
            },
        }),
    }
}

/// A location spec's bucket and prefix: a change of either repoints it.
fn storage_place(spec: &Value) -> (Option<&Value>, Option<&Value>) {
    let storage = spec.get("objectStorage");
    (
        storage.and_then(|s| s.get("bucket")),
        storage.and_then(|s| s.get("prefix")),
    )
}

/// The locations in the cluster whose current bucket place planning `desired` against
/// `observed` puts at risk: those the plan deletes (this file's, no longer declared)
/// or repoints (declared with another bucket or prefix). Their backups are counted
/// before planning and reach it as [`BucketFindings::current`].
pub fn places_at_risk<'a>(desired: &Desired, observed: &'a Observed) -> Vec<&'a ObservedObject> {
    let declared: BTreeMap<&ObjectRef, &DesiredObject> = desired
        .objects
        .iter()
        .filter(|o| o.object.kind == Kind::BackupStorageLocation)
        .map(|o| (&o.object, o))
        .collect();
    observed
        .objects
        .values()
        .filter(|o| {
            o.object.kind == Kind::BackupStorageLocation && o.object.namespace == desired.namespace
        })
        .filter(|o| match declared.get(&o.object) {
            None => matches!(ownership(&o.labels, &desired.owner), Ownership::Ours),
            Some(wanted) => {
                !matches!(ownership(&o.labels, &desired.owner), Ownership::Other(_))
                    && storage_place(&normalize::spec(
                        Kind::BackupStorageLocation,
                        &wanted.manifest.spec_value(),
                    )) != storage_place(&normalize::spec(Kind::BackupStorageLocation, o.spec()))
            }
        })
        .collect()
}

impl Planner<'_> {
    /// The bucket checks of the declared locations: the reports themselves, and an
    /// error for each bucket Velero would mark `Unavailable`.
    fn bucket_findings(&mut self, reports: &[BucketReport]) {
        for report in reports {
            let at = Pointer::key(["backup_locations", report.location.as_str()]);
            let place = match &report.prefix {
                Some(prefix) if !prefix.trim_matches('/').is_empty() => {
                    format!("{}/{}", report.bucket, prefix.trim_matches('/'))
                }
                _ => report.bucket.clone(),
            };
            match &report.status {
                BucketStatus::Unreachable { reason } => self.plan.diagnostics.push(
                    Diagnostic::error(
                        Code::BucketUnreachable,
                        format!("`{}` cannot list {place} with its credential: {reason}", report.location),
                    )
                    .at(at)
                    .label("Velero would mark this location Unavailable")
                    .help("check the bucket name, region or endpoint, and the credential's key and permissions"),
                ),
                BucketStatus::Reachable { foreign, .. } if !foreign.is_empty() => self.plan.diagnostics.push(
                    Diagnostic::error(
                        Code::BucketForeignData,
                        format!(
                            "Velero will refuse `{}`: {place} holds top-level folders it does not own: {}",
                            report.location,
                            foreign.join(", ")
                        ),
                    )
                    .at(at)
                    .label("Velero would mark this location Unavailable")
                    .help("give the location a bucket or a prefix of its own; Velero only accepts backups, restores, kopia, restic, metadata and plugins there"),
                ),
                _ => {}
            }
        }
        self.plan.buckets = reports.to_vec();
    }
}

#[cfg(test)]
mod first_backup_tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    fn object() -> ObjectRef {
        ObjectRef {
            kind: Kind::Schedule,
            namespace: "velero".into(),
            name: "nightly".into(),
        }
    }

    fn desired(mut spec: Value) -> DesiredObject {
        spec["template"] = json!({});
        let spec: crate::crd::ScheduleSpec = serde_json::from_value(spec).unwrap();
        DesiredObject {
            object: object(),
            manifest: VeleroObject::Schedule(Box::new(crate::crd::Schedule::new("nightly", spec)))
                .into(),
            origin: Pointer::key(["schedules", "nightly"]),
        }
    }

    fn observed(spec: Value, status: Value) -> ObservedObject {
        ObservedObject {
            object: object(),
            manifest: json!({"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": spec, "status": status}),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            resource_version: None,
            uid: None,
            field_managers: Vec::new(),
        }
    }

    /// A create's fields are what an update from nothing to the object would list.
    #[test]
    fn a_created_object_lists_the_fields_an_update_from_nothing_would() {
        let manifest = json!({"spec": {
            "schedule": "0 1 * * *",
            "paused": false,
            "empty": {},
            "nothing": null,
            "template": {
                "ttl": "720h",
                "includedNamespaces": ["a", "b"],
                "excludedResources": [],
                "labelSelector": {"matchLabels": {"app": "x"}, "matchExpressions": []},
                "hooks": {"resources": []},
                "metadata": {"labels": {}},
                "orderedResources": {"pods": "a/b"},
            },
        }});
        let mut expected = Vec::new();
        let spec = normalize::drop_empty(manifest["spec"].clone());
        leaf_changes(&FieldPath::root("spec"), &Value::Null, &spec, &mut expected);
        let listed = spec_leaves(&manifest["spec"]);
        assert_eq!(listed, expected);
        let paths: Vec<String> = listed.iter().map(|f| f.path.to_string()).collect();
        assert_eq!(
            paths,
            [
                "spec.paused",
                "spec.schedule",
                "spec.template.includedNamespaces",
                "spec.template.labelSelector.matchLabels.app",
                "spec.template.orderedResources.pods",
                "spec.template.ttl",
            ]
        );
    }

    /// Velero's rule (velero-semantics.md §3.5), case by case, at 09:00 on 2 December.
    #[test]
    fn the_first_backup_follows_velero_s_rule() {
        let now = at("2026-12-02T09:00:00Z");
        let daily = json!({"schedule": "0 1 * * *"});
        let immediately = Some(FirstBackup::Immediately);
        let at_next = |time: &str| Some(FirstBackup::At(time.to_string()));
        let old = json!({"lastBackup": "2026-11-20T01:00:00Z"});
        let recent = json!({"lastBackup": "2026-12-02T01:00:05Z"});
        let cases: Vec<(
            &str,
            DesiredObject,
            Option<ObservedObject>,
            Option<FirstBackup>,
        )> = vec![
            (
                "a new schedule waits for its first tick",
                desired(daily.clone()),
                None,
                at_next("2026-12-03T01:00:00Z"),
            ),
            (
                "unpaused with an old last backup: at once",
                desired(daily.clone()),
                Some(observed(
                    json!({"schedule": "0 1 * * *", "paused": true}),
                    old.clone(),
                )),
                immediately.clone(),
            ),
            (
                "unpaused after last night's backup: tonight",
                desired(daily.clone()),
                Some(observed(
                    json!({"schedule": "0 1 * * *", "paused": true}),
                    recent.clone(),
                )),
                at_next("2026-12-03T01:00:00Z"),
            ),
            (
                "a new cron whose tick since the old last backup has passed: at once",
                desired(json!({"schedule": "0 5 * * *"})),
                Some(observed(daily.clone(), recent.clone())),
                immediately.clone(),
            ),
            (
                "a new cron not due since the recent backup",
                desired(json!({"schedule": "0 23 * * *"})),
                Some(observed(daily.clone(), recent.clone())),
                at_next("2026-12-02T23:00:00Z"),
            ),
            (
                "never backed up: counted from the creation",
                desired(daily.clone()),
                Some(observed(
                    json!({"schedule": "0 1 * * *", "paused": true}),
                    json!({}),
                )),
                immediately.clone(),
            ),
            (
                "a later skip counts instead",
                desired(daily.clone()),
                Some(observed(
                    json!({"schedule": "0 1 * * *", "paused": true}),
                    json!({"lastBackup": "2026-11-20T01:00:00Z", "lastSkipped": "2026-12-02T08:00:00Z"}),
                )),
                at_next("2026-12-03T01:00:00Z"),
            ),
            (
                "skipImmediately: the next tick from now",
                desired(json!({"schedule": "0 1 * * *", "skipImmediately": true})),
                Some(observed(
                    json!({"schedule": "0 1 * * *", "paused": true}),
                    old,
                )),
                at_next("2026-12-03T01:00:00Z"),
            ),
            (
                "paused: none",
                desired(json!({"schedule": "0 1 * * *", "paused": true})),
                Some(observed(daily, recent)),
                None,
            ),
        ];
        for (case, desired, observed, expected) in cases {
            assert_eq!(
                first_backup(&desired, observed.as_ref(), now),
                expected,
                "{case}"
            );
        }
    }

    /// Without a clock, a change that can start a backup is an immediate run unless the
    /// Schedule skips it: read from the object as sent, since the comparable form
    /// leaves `skipImmediately` out.
    #[test]
    fn without_a_clock_a_new_cron_runs_at_once_unless_the_schedule_skips_it() {
        let risks = |spec: Value| {
            let mut observed = Observed::default();
            observed.objects.insert(
                object(),
                super::first_backup_tests::observed(json!({"schedule": "0 5 * * *"}), json!({})),
            );
            let desired = Desired {
                namespace: "velero".into(),
                owner: "default".into(),
                secrets: Vec::new(),
                objects: vec![desired(spec)],
                external: Vec::new(),
                server_flag: None,
                velero_deployment: ObjectRef {
                    kind: Kind::Deployment,
                    namespace: "velero".into(),
                    name: "velero".into(),
                },
                allow_mass_delete: false,
            };
            let plan = plan(&desired, &observed, &Context::default());
            plan.changes[0].risks.clone()
        };
        assert!(risks(json!({"schedule": "0 1 * * *"})).contains(&Risk::ImmediateRun));
        let skipped = risks(json!({"schedule": "0 1 * * *", "skipImmediately": true}));
        assert!(!skipped.contains(&Risk::ImmediateRun), "{skipped:?}");
    }
}
