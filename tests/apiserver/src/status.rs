//! Kubernetes `Status` bodies, worded as the real server words them.

use serde_json::{Value, json};

use crate::resources::Resource;
use crate::ssa::Conflict;
use crate::structural::FieldError;

/// An error answer: HTTP code plus the `Status` object.
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: u16,
    pub body: Value,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

fn failure(code: u16, reason: &str, message: String, details: Option<Value>) -> Failure {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code});
    if let Some(details) = details {
        body["details"] = details;
    }
    Failure {
        code,
        body,
        retry_after: None,
    }
}

fn details(resource: &Resource, name: &str) -> Value {
    json!({"name": name, "group": resource.group, "kind": resource.plural})
}

pub fn not_found(resource: &Resource, name: &str) -> Failure {
    failure(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", resource.qualified()),
        Some(details(resource, name)),
    )
}

pub fn namespace_not_found(namespace: &str) -> Failure {
    failure(
        404,
        "NotFound",
        format!("namespaces \"{namespace}\" not found"),
        Some(json!({"name": namespace, "kind": "namespaces"})),
    )
}

pub fn route_not_found() -> Failure {
    failure(
        404,
        "NotFound",
        "the server could not find the requested resource".to_string(),
        Some(json!({})),
    )
}

pub fn already_exists(resource: &Resource, name: &str) -> Failure {
    failure(
        409,
        "AlreadyExists",
        format!("{} \"{name}\" already exists", resource.qualified()),
        Some(details(resource, name)),
    )
}

/// Optimistic concurrency: the write was based on an older version.
pub fn stale(resource: &Resource, name: &str) -> Failure {
    failure(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            resource.qualified()
        ),
        Some(details(resource, name)),
    )
}

pub fn precondition(
    resource: &Resource,
    name: &str,
    what: &str,
    wanted: &str,
    actual: &str,
) -> Failure {
    failure(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: {what} in precondition: {wanted}, {what} in object meta: {actual}",
            resource.qualified()
        ),
        Some(details(resource, name)),
    )
}

pub fn apply_conflict(conflicts: &[Conflict]) -> Failure {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({"reason": "FieldManagerConflict",
                   "message": format!("conflict with {}", c.owner), "field": c.path})
        })
        .collect();
    failure(
        409,
        "Conflict",
        crate::ssa::conflict_message(conflicts),
        Some(json!({"causes": causes})),
    )
}

/// 422 for an object that breaks its schema or the server's own rules.
pub fn invalid(resource: &Resource, name: &str, errors: &[FieldError]) -> Failure {
    let listed: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    let summary = match listed.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    let kind = if resource.group.is_empty() {
        resource.kind.clone()
    } else {
        format!("{}.{}", resource.kind, resource.group)
    };
    let causes: Vec<Value> = errors
        .iter()
        .map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field}))
        .collect();
    failure(
        422,
        "Invalid",
        format!("{kind} \"{name}\" is invalid: {summary}"),
        Some(
            json!({"name": name, "group": resource.group, "kind": resource.kind, "causes": causes}),
        ),
    )
}

/// 422 for bad request options (e.g. apply without a field manager).
pub fn invalid_options(kind: &str, field: &str, reason: &str, message: &str) -> Failure {
    failure(
        422,
        "Invalid",
        format!("{kind} \"\" is invalid: {field}: {message}"),
        Some(json!({"group": "meta.k8s.io", "kind": kind,
                    "causes": [{"reason": reason, "message": message, "field": field}]})),
    )
}

pub fn bad_request(message: impl Into<String>) -> Failure {
    failure(400, "BadRequest", message.into(), None)
}

pub fn internal(message: impl Into<String>) -> Failure {
    failure(
        500,
        "InternalError",
        message.into(),
        Some(json!({"causes": [{"message": "injected or internal error"}]})),
    )
}

pub fn unsupported_media_type(content_type: &str) -> Failure {
    failure(
        415,
        "UnsupportedMediaType",
        format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
        ),
        None,
    )
}

pub fn method_not_allowed(method: &str) -> Failure {
    failure(
        405,
        "MethodNotAllowed",
        format!("the server does not allow this method on the requested resource ({method})"),
        None,
    )
}

pub fn expired(message: impl Into<String>) -> Failure {
    failure(410, "Expired", message.into(), None)
}

/// The status a fault injects for `code`, worded like the real cause would be.
pub fn injected(
    code: u16,
    verb: &str,
    resource: Option<&Resource>,
    namespace: Option<&str>,
) -> Failure {
    let what = resource.map(Resource::qualified).unwrap_or_default();
    match code {
        401 => failure(401, "Unauthorized", "Unauthorized".to_string(), None),
        403 => {
            let (plural, group) = resource
                .map(|r| (r.plural.as_str(), r.group.as_str()))
                .unwrap_or_default();
            let scope = namespace
                .map(|ns| format!(" in the namespace \"{ns}\""))
                .unwrap_or_else(|| " at the cluster scope".to_string());
            failure(
                403,
                "Forbidden",
                format!(
                    "{what} is forbidden: User \"system:serviceaccount:velero:stowage\" cannot {verb} resource \"{plural}\" in API group \"{group}\"{scope}"
                ),
                Some(json!({"group": group, "kind": plural})),
            )
        }
        409 => failure(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {what}: the object has been modified; please apply your changes to the latest version and try again"),
            None,
        ),
        429 => too_many_requests(1),
        503 => failure(503, "ServiceUnavailable", "the server is currently unable to handle the request".to_string(), None),
        504 => failure(504, "Timeout", "the server was unable to return a response in the time allotted, but may still be processing the request".to_string(), None),
        code => internal(format!("Internal error occurred: injected fault ({code})")).with_code(code),
    }
}

pub fn too_many_requests(retry_after: u64) -> Failure {
    let mut f = failure(
        429,
        "TooManyRequests",
        "the server has received too many requests and has asked us to try again later".to_string(),
        Some(json!({"retryAfterSeconds": retry_after})),
    );
    f.retry_after = Some(retry_after);
    f
}

impl Failure {
    fn with_code(mut self, code: u16) -> Failure {
        self.code = code;
        self.body["code"] = json!(code);
        self
    }
}

/// The success `Status` some deletes answer with.
pub fn deleted(resource: &Resource, name: &str, uid: &Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
           "details": {"name": name, "group": resource.group, "kind": resource.plural, "uid": uid}})
}
