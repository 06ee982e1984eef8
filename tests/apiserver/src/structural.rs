//! A CRD's structural schema applied to an object, as the API server applies it:
//! unknown fields pruned (or refused under `fieldValidation=Strict`), defaults filled
//! in, and type, enum, required and list-size violations refused with the field
//! errors of a 422 `Invalid` status.

use serde_json::Value;

/// One field error, as Kubernetes words it in a `Status`'s causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueInvalid`,
    /// `FieldValueTypeInvalid` or `FieldValueUnknown` (an unknown field under Strict).
    pub reason: &'static str,
    /// The field, e.g. `spec.objectStorage.bucket`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(reason: &'static str, field: &str, message: String) -> FieldError {
        FieldError {
            reason,
            field: field.to_string(),
            message,
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Removes the fields the schema does not declare; returns their paths. Metadata is the
/// server's own business and is left alone.
pub fn prune(schema: &Value, value: &mut Value) -> Vec<String> {
    fn walk(schema: &Value, value: &mut Value, path: &str, pruned: &mut Vec<String>) {
        if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
            return;
        }
        match value {
            Value::Object(map) => {
                let properties = schema.get("properties").and_then(Value::as_object);
                let additional = schema.get("additionalProperties").filter(|a| a.is_object());
                if path == "metadata" {
                    return;
                }
                let keys: Vec<String> = map.keys().cloned().collect();
                for key in keys {
                    let child_path = join(path, &key);
                    let child_schema = match (properties.and_then(|p| p.get(&key)), additional) {
                        (Some(schema), _) => schema,
                        (None, Some(schema)) => schema,
                        (None, None) if properties.is_some() || schema.get("type").is_some() => {
                            map.remove(&key);
                            pruned.push(child_path);
                            continue;
                        }
                        (None, None) => continue,
                    };
                    if let Some(child) = map.get_mut(&key) {
                        walk(child_schema, child, &child_path, pruned);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (index, item) in items.iter_mut().enumerate() {
                        walk(item_schema, item, &format!("{path}[{index}]"), pruned);
                    }
                }
            }
            _ => {}
        }
    }
    let mut pruned = Vec::new();
    walk(schema, value, "", &mut pruned);
    pruned
}

/// Fills in `default`s of absent fields, in objects that are present.
pub fn default(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            for (key, child_schema) in properties {
                if !map.contains_key(key)
                    && let Some(default) = child_schema.get("default")
                {
                    map.insert(key.clone(), default.clone());
                }
                if let Some(child) = map.get_mut(key) {
                    self::default(child_schema, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    self::default(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

/// Every violation of the schema's types, enums, required fields and list sizes.
pub fn validate(schema: &Value, value: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check(schema, value, "", &mut errors);
    errors
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) && schema.get("type").is_some() {
            errors.push(FieldError::new(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or("object")
                ),
            ));
        }
        return;
    }
    if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let found = type_name(value);
        let fits = expected == found || (expected == "number" && found == "integer");
        if !fits {
            errors.push(FieldError::new(
                "FieldValueTypeInvalid",
                path,
                format!("Invalid value: \"{found}\": {path} in body must be of type {expected}: \"{found}\""),
            ));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let supported: Vec<String> = allowed.iter().map(Value::to_string).collect();
        errors.push(FieldError::new(
            "FieldValueNotSupported",
            path,
            format!(
                "Unsupported value: {value}: supported values: {}",
                supported.join(", ")
            ),
        ));
    }
    match value {
        Value::Object(map) => {
            if path == "metadata" {
                return;
            }
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = required.as_str().unwrap_or_default();
                if !map.contains_key(name) {
                    errors.push(FieldError::new(
                        "FieldValueRequired",
                        &join(path, name),
                        "Required value".to_string(),
                    ));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in map {
                let child_schema = properties.and_then(|p| p.get(key)).or(additional);
                if let Some(child_schema) = child_schema {
                    check(child_schema, child, &join(path, key), errors);
                }
            }
        }
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                errors.push(FieldError::new(
                    "FieldValueInvalid",
                    path,
                    format!(
                        "Invalid value: {}: {path} in body should have at least {min} items",
                        items.len()
                    ),
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{index}]"), errors);
                }
            }
        }
        Value::String(text)
            if schema.get("format").and_then(Value::as_str) == Some("byte") && !is_base64(text) =>
        {
            errors.push(FieldError::new(
                "FieldValueInvalid",
                path,
                format!("Invalid value: {value}: {path} in body must be of type byte: {value}"),
            ));
        }
        _ => {}
    }
}

fn is_base64(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len().is_multiple_of(4)
        && bytes.iter().enumerate().all(|(i, b)| {
            b.is_ascii_alphanumeric()
                || *b == b'+'
                || *b == b'/'
                || (*b == b'=' && i + 2 >= bytes.len())
        })
}

/// Unknown fields as Strict field validation reports them.
pub fn unknown_field_errors(pruned: &[String]) -> Vec<FieldError> {
    pruned
        .iter()
        .map(|field| {
            FieldError::new(
                "FieldValueUnknown",
                field,
                format!("unknown field \"{field}\""),
            )
        })
        .collect()
}
