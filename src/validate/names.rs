//! Kubernetes naming rules, as the API server applies them to the objects stowage writes.

/// A DNS-1123 subdomain: object names of Secrets, locations and schedules.
pub fn check_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_string());
    }
    if name.len() > 253 {
        return Err(format!(
            "must be at most 253 characters, not {}",
            name.len()
        ));
    }
    if !name.split('.').all(is_label_shaped) {
        return Err(
            "must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
                .to_string(),
        );
    }
    Ok(())
}

/// A DNS-1123 label: namespace names.
pub fn check_label_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_string());
    }
    if name.len() > 63 {
        return Err(format!("must be at most 63 characters, not {}", name.len()));
    }
    if !is_label_shaped(name) {
        return Err(
            "must be lowercase letters, digits and '-', starting and ending with a letter or digit"
                .to_string(),
        );
    }
    Ok(())
}

fn is_label_shaped(part: &str) -> bool {
    let bytes = part.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// A label value: at most 63 characters of alphanumerics, '-', '_' and '.', starting and
/// ending alphanumeric; empty is allowed.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err(format!(
            "must be at most 63 characters, not {}",
            value.len()
        ));
    }
    if !value.is_empty() && !is_qualified_part(value) {
        return Err(
            "must be letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
                .to_string(),
        );
    }
    Ok(())
}

/// A label or annotation key: an optional DNS subdomain prefix and `/`, then a name.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        check_subdomain(prefix).map_err(|error| format!("prefix {error}"))?;
    }
    if name.is_empty() || name.len() > 63 || !is_qualified_part(name) {
        return Err(
            "name part must be 1-63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
                .to_string(),
        );
    }
    Ok(())
}

fn is_qualified_part(part: &str) -> bool {
    let bytes = part.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

/// A key of a Secret's `data`.
pub fn check_secret_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 253 {
        return Err("must be 1-253 characters".to_string());
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("must be letters, digits, '-', '_' and '.'".to_string());
    }
    if key == "." || key == ".." {
        return Err("must not be '.' or '..'".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_subdomain("backups-primary").is_ok());
        assert!(check_subdomain("a.b-c").is_ok());
        assert!(check_subdomain("Backups").is_err());
        assert!(check_subdomain("-x").is_err());
        assert!(check_subdomain("x_y").is_err());
        assert!(check_subdomain(&"a".repeat(254)).is_err());
        assert!(check_label_name("velero").is_ok());
        assert!(check_label_name("a.b").is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("Web_1.x").is_ok());
        assert!(check_label_value(&"a".repeat(64)).is_err());
        assert!(check_label_key("app.kubernetes.io/name").is_ok());
        assert!(check_label_key("app").is_ok());
        assert!(check_label_key("/app").is_err());
        assert!(check_secret_key("cloud").is_ok());
        assert!(check_secret_key("a/b").is_err());
    }
}
