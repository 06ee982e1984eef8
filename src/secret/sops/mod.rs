//! SOPS-encrypted files, decrypted in memory with age keys.
//!
//! stowage implements sops' file format itself, following sops' documentation and its
//! source (getsops/sops: `sops.go` for the tree walk and MAC, `aes/cipher.go` for value
//! encryption, `stores/` for the file formats, `age/keysource.go` for where keys are
//! found), and leaves the cryptography to well-kept crates: `age` for the data key,
//! `aes-gcm` for the values, `sha2` for the MAC.
//!
//! The format, in short: a random 256-bit data key is encrypted to each recipient
//! (here: age X25519 keys) and stored in the metadata. Every value is encrypted with
//! AES-256-GCM under that key, with a 32-byte IV and, as additional data, the path of
//! keys leading to it joined by `:` with a trailing `:` (list items share their list's
//! path). The MAC is the upper-case hex SHA-512 of every value's plaintext in document
//! order (only encrypted ones with `mac_only_encrypted`, then seeded with a fixed
//! prefix), itself encrypted under the data key with the `lastmodified` text as
//! additional data.
//!
//! Everything decrypted is a [`SecretValue`] from the moment it exists, and no error
//! here ever carries a value: only key paths, recipients (public keys) and the places
//! keys were looked for.

mod keys;
mod tree;

use std::path::Path;

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine;
use sha2::Digest;

pub use keys::{AgeKeys, Found, KEY_COMMAND_VARIABLE, KEY_FILE_VARIABLE, KEY_VARIABLE, Looked};
pub use tree::Format;
use tree::{Kind, Node, Plain, Scalar};

use crate::secret::SecretValue;

/// AES-256-GCM with the 32-byte nonces sops uses.
type ValueCipher = aes_gcm::AesGcm<aes::Aes256, U32>;

/// sops' seed for a MAC over encrypted values only: SHA-256 of "sops".
const MAC_ONLY_ENCRYPTED_SEED: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// Why a SOPS file could not be decrypted. Never holds a value from the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SopsError {
    #[error("no age key to decrypt it; looked in {looked}")]
    NoKey { looked: String },
    #[error("no age key found matches its recipients ({recipients}); looked in {looked}")]
    NoMatchingKey { recipients: String, looked: String },
    #[error("its MAC does not match its content: it was changed without sops")]
    MacMismatch,
    #[error("the value at `{at}` fails its integrity check: it was changed without sops")]
    Tampered { at: String },
    #[error("malformed SOPS metadata: {0}")]
    Malformed(String),
    #[error("{0}")]
    Unsupported(String),
}

impl SopsError {
    pub fn help(&self) -> &'static str {
        match self {
            SopsError::NoKey { .. } => {
                "set SOPS_AGE_KEY_FILE to the age key file (as for `sops decrypt`), or put the key in SOPS_AGE_KEY"
            }
            SopsError::NoMatchingKey { .. } => {
                "use a key the file is encrypted for, or re-encrypt it for yours with `sops updatekeys`"
            }
            SopsError::MacMismatch | SopsError::Tampered { .. } => {
                "edit encrypted files only with `sops edit`; restore the file from git and make the change again"
            }
            SopsError::Malformed(_) => "re-create the file with `sops encrypt`",
            SopsError::Unsupported(_) => {
                "stowage decrypts SOPS files with age keys only: add an age recipient with `sops updatekeys` (after adding it to .sops.yaml)"
            }
        }
    }
}

/// Whether `bytes` are (or were) a SOPS-encrypted file: they hold SOPS ciphertext.
/// A file cut before its metadata still holds ciphertext and is refused by
/// [`decrypt`]; it is never read as a plaintext credential.
pub fn is_encrypted(bytes: &[u8]) -> bool {
    const MARK: &[u8] = b"ENC[AES256_GCM,";
    bytes.windows(MARK.len()).any(|window| window == MARK)
}

/// Decrypts a SOPS file read from `path` (its extension picks the format, as in sops)
/// and returns its plaintext as `sops decrypt` writes it.
pub fn decrypt(path: &Path, bytes: &[u8], keys: &AgeKeys) -> Result<SecretValue, SopsError> {
    let extension = path.extension().and_then(|e| e.to_str());
    let document = tree::parse(tree::format_of(extension, bytes), bytes)?;
    let metadata = Metadata::read(&document.metadata)?;
    let data_key = metadata.data_key(keys)?;
    let mut walk = Walk {
        rules: &metadata.rules,
        cipher: &data_key,
        mac: sha2::Sha512::new(),
        path: Vec::new(),
    };
    if metadata.rules.mac_only_encrypted {
        walk.mac.update(MAC_ONLY_ENCRYPTED_SEED);
    }
    let mut plain = Vec::with_capacity(document.content.len());
    for (key, node) in &document.content {
        walk.path.push(key.clone());
        plain.push((key.clone(), walk.node(node)?));
        walk.path.pop();
    }
    let computed: String = walk
        .mac
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect();
    let stored = decrypt_value(&data_key, &metadata.mac, &metadata.last_modified)
        .map_err(|_| SopsError::MacMismatch)?;
    if stored.0.expose() != computed.as_bytes() {
        return Err(SopsError::MacMismatch);
    }
    tree::emit(document.format, &plain).map(SecretValue::new)
}

/// Which values sops encrypted: its suffix and regex rules, as in `shouldBeEncrypted`.
struct Rules {
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<regex::Regex>,
    encrypted_regex: Option<regex::Regex>,
    mac_only_encrypted: bool,
}

impl Rules {
    fn encrypts(&self, path: &[String]) -> bool {
        let mut encrypted = true;
        if let Some(suffix) = &self.unencrypted_suffix
            && path.iter().any(|key| key.ends_with(suffix.as_str()))
        {
            encrypted = false;
        }
        if let Some(suffix) = &self.encrypted_suffix {
            encrypted = path.iter().any(|key| key.ends_with(suffix.as_str()));
        }
        if let Some(regex) = &self.unencrypted_regex
            && path.iter().any(|key| regex.is_match(key))
        {
            encrypted = false;
        }
        if let Some(regex) = &self.encrypted_regex {
            encrypted = path.iter().any(|key| regex.is_match(key));
        }
        encrypted
    }
}

struct AgeStanza {
    recipient: String,
    encrypted_key: String,
}

struct Metadata {
    age: Vec<AgeStanza>,
    /// Key types other than age the file is also encrypted for.
    other_key_types: Vec<&'static str>,
    last_modified: String,
    mac: String,
    rules: Rules,
}

const OTHER_KEY_TYPES: [(&str, &str); 6] = [
    ("pgp", "PGP"),
    ("kms", "AWS KMS"),
    ("gcp_kms", "GCP KMS"),
    ("azure_kv", "Azure Key Vault"),
    ("hc_vault", "HashiCorp Vault"),
    ("hckms", "HuaweiCloud KMS"),
];

impl Metadata {
    fn read(entries: &[(String, Node<Scalar>)]) -> Result<Metadata, SopsError> {
        let field = |name: &str| entries.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let text = |name: &str| -> Result<Option<String>, SopsError> {
            match field(name) {
                None | Some(Node::Leaf(Scalar::Null)) => Ok(None),
                Some(Node::Leaf(Scalar::Str(s))) if s.is_empty() => Ok(None),
                Some(Node::Leaf(Scalar::Str(s))) => Ok(Some(s.clone())),
                Some(_) => Err(SopsError::Malformed(format!("`{name}` is not text"))),
            }
        };
        let regex = |name: &str| -> Result<Option<regex::Regex>, SopsError> {
            text(name)?
                .map(|pattern| {
                    regex::Regex::new(&pattern).map_err(|_| {
                        SopsError::Malformed(format!("`{name}` is not a regular expression"))
                    })
                })
                .transpose()
        };
        for comment_rule in ["unencrypted_comment_regex", "encrypted_comment_regex"] {
            if text(comment_rule)?.is_some() {
                return Err(SopsError::Unsupported(format!(
                    "files encrypted with `{comment_rule}` are not supported"
                )));
            }
        }
        let mac_only_encrypted = match field("mac_only_encrypted") {
            None => false,
            Some(Node::Leaf(Scalar::Bool(b))) => *b,
            Some(Node::Leaf(Scalar::Str(s))) => matches!(s.as_str(), "true" | "True" | "1"),
            Some(_) => {
                return Err(SopsError::Malformed(
                    "`mac_only_encrypted` is not a bool".into(),
                ));
            }
        };
        let mut groups: Vec<&[(String, Node<Scalar>)]> = vec![entries];
        if let Some(Node::List(listed)) = field("key_groups") {
            if listed.len() > 1 {
                return Err(SopsError::Unsupported(
                    "files split across several key groups (Shamir's secret sharing) are not supported"
                        .into(),
                ));
            }
            for group in listed {
                match group {
                    Node::Map(group) => groups.push(group),
                    _ => return Err(SopsError::Malformed("a key group is not a mapping".into())),
                }
            }
        }
        let mut age = Vec::new();
        let mut other_key_types = Vec::new();
        for group in groups {
            let in_group = |name: &str| group.iter().find(|(k, _)| k == name).map(|(_, v)| v);
            if let Some(Node::List(stanzas)) = in_group("age") {
                for stanza in stanzas {
                    let Node::Map(stanza) = stanza else {
                        return Err(SopsError::Malformed(
                            "an `age` entry is not a mapping".into(),
                        ));
                    };
                    let get = |name: &str| {
                        stanza
                            .iter()
                            .find(|(k, _)| k == name)
                            .and_then(|(_, v)| match v {
                                Node::Leaf(Scalar::Str(s)) => Some(s.clone()),
                                _ => None,
                            })
                    };
                    match (get("recipient"), get("enc")) {
                        (Some(recipient), Some(encrypted_key)) => age.push(AgeStanza {
                            recipient,
                            encrypted_key,
                        }),
                        _ => {
                            return Err(SopsError::Malformed(
                                "an `age` entry lacks `recipient` or `enc`".into(),
                            ));
                        }
                    }
                }
            }
            for (field_name, shown) in OTHER_KEY_TYPES {
                if matches!(in_group(field_name), Some(Node::List(list)) if !list.is_empty())
                    && !other_key_types.contains(&shown)
                {
                    other_key_types.push(shown);
                }
            }
        }
        Ok(Metadata {
            age,
            other_key_types,
            last_modified: text("lastmodified")?
                .ok_or_else(|| SopsError::Malformed("no `lastmodified`".into()))?,
            mac: text("mac")?.ok_or_else(|| SopsError::Malformed("no `mac`".into()))?,
            rules: Rules {
                unencrypted_suffix: text("unencrypted_suffix")?,
                encrypted_suffix: text("encrypted_suffix")?,
                unencrypted_regex: regex("unencrypted_regex")?,
                encrypted_regex: regex("encrypted_regex")?,
                mac_only_encrypted,
            },
        })
    }

    /// The data key, from the first age stanza one of `keys` opens.
    fn data_key(&self, keys: &AgeKeys) -> Result<ValueCipher, SopsError> {
        if self.age.is_empty() {
            let types = if self.other_key_types.is_empty() {
                "no key at all".to_string()
            } else {
                self.other_key_types.join(", ")
            };
            return Err(SopsError::Unsupported(format!(
                "it is encrypted for {types}, not for an age key"
            )));
        }
        if !keys.may_have_keys() {
            return Err(SopsError::NoKey {
                looked: keys.describe_search(),
            });
        }
        for stanza in &self.age {
            let identities = keys.for_recipient(&stanza.recipient);
            if identities.is_empty() {
                continue;
            }
            let reader = age::armor::ArmoredReader::new(stanza.encrypted_key.as_bytes());
            let decryptor = age::Decryptor::new(reader).map_err(|_| {
                SopsError::Malformed(format!(
                    "the data key for {} is not an age-encrypted file",
                    stanza.recipient
                ))
            })?;
            match decryptor.decrypt(identities.iter().map(|i| i as &dyn age::Identity)) {
                Ok(mut reader) => {
                    use std::io::Read;
                    let mut key = Vec::with_capacity(32);
                    reader.read_to_end(&mut key).map_err(|_| {
                        SopsError::Malformed(format!(
                            "the data key for {} does not decrypt whole",
                            stanza.recipient
                        ))
                    })?;
                    return ValueCipher::new_from_slice(&key).map_err(|_| {
                        SopsError::Malformed("the data key is not 256 bits long".into())
                    });
                }
                Err(age::DecryptError::NoMatchingKeys) => continue,
                Err(_) => {
                    return Err(SopsError::Malformed(format!(
                        "the data key for {} is damaged",
                        stanza.recipient
                    )));
                }
            }
        }
        if !keys.found_any() {
            return Err(SopsError::NoKey {
                looked: keys.describe_search(),
            });
        }
        let recipients: Vec<&str> = self.age.iter().map(|s| s.recipient.as_str()).collect();
        Err(SopsError::NoMatchingKey {
            recipients: recipients.join(", "),
            looked: keys.describe_search(),
        })
    }
}

struct Walk<'a> {
    rules: &'a Rules,
    cipher: &'a ValueCipher,
    mac: sha2::Sha512,
    path: Vec<String>,
}

impl Walk<'_> {
    fn node(&mut self, node: &Node<Scalar>) -> Result<Node<Plain>, SopsError> {
        match node {
            Node::Map(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                for (key, value) in entries {
                    self.path.push(key.clone());
                    let plain = self.node(value);
                    self.path.pop();
                    out.push((key.clone(), plain?));
                }
                Ok(Node::Map(out))
            }
            // List items share the list's path, as in sops' walkSlice.
            Node::List(items) => items
                .iter()
                .map(|item| self.node(item))
                .collect::<Result<_, _>>()
                .map(Node::List),
            Node::Leaf(scalar) => self.leaf(scalar).map(Node::Leaf),
        }
    }

    fn leaf(&mut self, scalar: &Scalar) -> Result<Plain, SopsError> {
        let encrypted = self.rules.encrypts(&self.path);
        let plain = match (scalar, encrypted) {
            // sops neither encrypts nor hashes a null.
            (Scalar::Null, _) => {
                return Ok(Plain {
                    text: SecretValue::new(Vec::new()),
                    kind: Kind::Null,
                });
            }
            (Scalar::Str(text), true) if text.is_empty() => Plain {
                text: SecretValue::new(Vec::new()),
                kind: Kind::Str,
            },
            (Scalar::Str(text), true) => {
                let additional_data = format!("{}:", self.path.join(":"));
                let (value, kind) = decrypt_value(self.cipher, text, &additional_data)?;
                canonical(value, kind, &self.path)?
            }
            (_, true) => {
                return Err(SopsError::Malformed(format!(
                    "the value at `{}` should be encrypted but is not",
                    self.path.join(":")
                )));
            }
            (Scalar::Str(text), false) => Plain {
                text: SecretValue::new(text.clone().into_bytes()),
                kind: Kind::Str,
            },
            (Scalar::Int(number), false) => Plain {
                text: SecretValue::new(number.to_string().into_bytes()),
                kind: Kind::Int,
            },
            (Scalar::Float(number), false) => Plain {
                text: SecretValue::new(go_float(*number).into_bytes()),
                kind: Kind::Float,
            },
            (Scalar::Bool(value), false) => Plain {
                text: SecretValue::new(go_bool(*value).as_bytes().to_vec()),
                kind: Kind::Bool,
            },
        };
        if !self.rules.mac_only_encrypted || encrypted {
            self.mac.update(plain.text.expose());
        }
        Ok(plain)
    }
}

/// The text sops hashes for a decrypted value: what its `ToBytes` makes of the value
/// its cipher parsed (`42`, `True`, `0.5`).
fn canonical(value: SecretValue, kind: &str, path: &[String]) -> Result<Plain, SopsError> {
    let at = || path.join(":");
    let text = || std::str::from_utf8(value.expose()).ok();
    let bad = |what: &str| SopsError::Malformed(format!("the value at `{}` is not {what}", at()));
    Ok(match kind {
        "str" | "comment" | "bytes" => Plain {
            text: value.clone(),
            kind: Kind::Str,
        },
        "time" => Plain {
            text: value.clone(),
            kind: Kind::Time,
        },
        "int" => {
            let number: i64 = text()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| bad("an integer"))?;
            Plain {
                text: SecretValue::new(number.to_string().into_bytes()),
                kind: Kind::Int,
            }
        }
        "float" => {
            let number: f64 = text()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| bad("a number"))?;
            Plain {
                text: SecretValue::new(go_float(number).into_bytes()),
                kind: Kind::Float,
            }
        }
        "bool" => {
            // Go's strconv.ParseBool.
            let value = match text().unwrap_or_default() {
                "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
                "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
                _ => return Err(bad("a bool")),
            };
            Plain {
                text: SecretValue::new(go_bool(value).as_bytes().to_vec()),
                kind: Kind::Bool,
            }
        }
        _ => return Err(bad("of a type sops writes")),
    })
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest text that reads back the
/// same, never in exponent form, which is what Rust's `Display` for f64 writes.
fn go_float(number: f64) -> String {
    number.to_string()
}

fn go_bool(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

/// Opens one `ENC[AES256_GCM,data:...,iv:...,tag:...,type:...]` value.
fn decrypt_value(
    cipher: &ValueCipher,
    value: &str,
    additional_data: &str,
) -> Result<(SecretValue, &'static str), SopsError> {
    let at = || additional_data.trim_end_matches(':').to_string();
    let not_a_value = || {
        SopsError::Malformed(format!(
            "the value at `{}` is not a sops-encrypted value",
            at()
        ))
    };
    let inner = value
        .strip_prefix("ENC[AES256_GCM,")
        .and_then(|rest| rest.strip_suffix(']'))
        .ok_or_else(not_a_value)?;
    let mut parts = [None; 4];
    for part in inner.split(',') {
        let (name, content) = part.split_once(':').ok_or_else(not_a_value)?;
        let slot = match name {
            "data" => 0,
            "iv" => 1,
            "tag" => 2,
            "type" => 3,
            _ => return Err(not_a_value()),
        };
        parts[slot] = Some(content);
    }
    let [Some(data), Some(iv), Some(tag), Some(kind)] = parts else {
        return Err(not_a_value());
    };
    let base64 = base64::engine::general_purpose::STANDARD;
    let data = base64.decode(data).map_err(|_| not_a_value())?;
    let iv = base64.decode(iv).map_err(|_| not_a_value())?;
    let tag = base64.decode(tag).map_err(|_| not_a_value())?;
    if iv.len() != 32 || tag.len() != 16 {
        return Err(not_a_value());
    }
    let kind = match kind {
        "str" => "str",
        "int" => "int",
        "float" => "float",
        "bool" => "bool",
        "bytes" => "bytes",
        "time" => "time",
        "comment" => "comment",
        _ => return Err(not_a_value()),
    };
    let mut sealed = data;
    sealed.extend_from_slice(&tag);
    let nonce = aes_gcm::Nonce::<U32>::from_slice(&iv);
    let plaintext = cipher
        .decrypt(
            nonce,
            Payload {
                msg: &sealed,
                aad: additional_data.as_bytes(),
            },
        )
        .map_err(|_| SopsError::Tampered { at: at() })?;
    Ok((SecretValue::new(plaintext), kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUE: &str = "ENC[AES256_GCM,data:AA==,iv:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,tag:AAAAAAAAAAAAAAAAAAAAAA==,type:str]";

    fn decrypt_dotenv(metadata: &str) -> Result<SecretValue, SopsError> {
        let text = format!(
            "KEY={VALUE}\n{metadata}sops_lastmodified=2026-01-01T00:00:00Z\nsops_mac={VALUE}\n"
        );
        let no_keys = AgeKeys::discover(&|_| None);
        decrypt(Path::new("creds.env"), text.as_bytes(), &no_keys)
    }

    #[test]
    fn other_key_types_are_named_and_refused_before_any_key_is_looked_for() {
        let error = decrypt_dotenv("sops_pgp__list_0__map_fp=ABCD\nsops_pgp__list_0__map_enc=x\nsops_kms__list_0__map_arn=arn\n")
            .unwrap_err();
        assert_eq!(
            error,
            SopsError::Unsupported("it is encrypted for PGP, AWS KMS, not for an age key".into())
        );
        assert!(error.help().contains("age"));
    }

    #[test]
    fn shamir_key_groups_are_refused() {
        let error = decrypt_dotenv(
            "sops_key_groups__list_0__map_age__list_0__map_recipient=a\n\
             sops_key_groups__list_0__map_age__list_0__map_enc=x\n\
             sops_key_groups__list_1__map_age__list_0__map_recipient=b\n\
             sops_key_groups__list_1__map_age__list_0__map_enc=y\n",
        )
        .unwrap_err();
        assert!(
            matches!(error, SopsError::Unsupported(ref m) if m.contains("Shamir")),
            "{error}"
        );
    }

    #[test]
    fn an_age_file_without_keys_says_where_it_looked() {
        let error =
            decrypt_dotenv("sops_age__list_0__map_recipient=age1x\nsops_age__list_0__map_enc=x\n")
                .unwrap_err();
        assert!(
            matches!(&error, SopsError::NoKey { looked } if looked.contains("$SOPS_AGE_KEY (not set)")),
            "{error}"
        );
    }

    #[test]
    fn floats_are_written_as_go_writes_them() {
        assert_eq!(go_float(0.5), "0.5");
        assert_eq!(go_float(1e21), "1000000000000000000000");
        assert_eq!(go_float(3.0), "3");
    }

    #[test]
    fn a_plaintext_file_is_not_taken_for_a_sops_file() {
        assert!(!is_encrypted(b"[default]\naws_access_key_id = AKIA\n"));
        assert!(is_encrypted(b"a: ENC[AES256_GCM,data:x]\nsops:\n"));
    }

    #[test]
    fn suffix_and_regex_rules_decide_as_sops_does() {
        let rules = Rules {
            unencrypted_suffix: Some("_unencrypted".into()),
            encrypted_suffix: None,
            unencrypted_regex: None,
            encrypted_regex: None,
            mac_only_encrypted: false,
        };
        assert!(rules.encrypts(&["default".into(), "key".into()]));
        assert!(!rules.encrypts(&["region_unencrypted".into()]));
        let only = Rules {
            unencrypted_suffix: None,
            encrypted_suffix: None,
            unencrypted_regex: None,
            encrypted_regex: Some(regex::Regex::new("^(data|stringData)$").unwrap()),
            mac_only_encrypted: false,
        };
        assert!(only.encrypts(&["data".into(), "x".into()]));
        assert!(!only.encrypts(&["metadata".into(), "name".into()]));
    }
}
