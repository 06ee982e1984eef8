//! Secret values: credential contents that must never be shown.
//!
//! [`SecretValue`] has no `Display`, and its `Debug` prints only its length, so a secret
//! cannot reach output, logs or errors by formatting. Code that needs the bytes asks for
//! them by name (`expose`), which makes every such place easy to find.

pub mod formats;
pub mod sops;

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    pub fn new(bytes: Vec<u8>) -> SecretValue {
        SecretValue(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue(<{} bytes redacted>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = SecretValue::new(b"canary-AKIA-do-not-print".to_vec());
        let shown = format!("{secret:?}");
        assert!(!shown.contains("canary"), "{shown}");
        assert!(shown.contains("24 bytes"));
    }
}
