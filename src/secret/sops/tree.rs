//! SOPS documents as trees: read from each file format sops writes, and the decrypted
//! tree written back in that format.
//!
//! Follows sops' own stores (getsops/sops `stores/`): JSON and YAML keep the metadata
//! under a top-level `sops` key; INI keeps it in a `[sops]` section and dotenv in
//! `sops_`-prefixed keys, both flattened with sops' `__map_`/`__list_` separators; the
//! binary format is JSON with the whole file as one `data` value. Order matters: the
//! MAC is a hash over the values in the order they appear, so maps are kept as lists.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::SopsError;
use crate::secret::SecretValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    Ini,
    Dotenv,
    /// Any other file: sops stores it whole, as the `data` value of a JSON document.
    Binary,
}

/// A scalar as written in the encrypted file: encrypted values are strings
/// (`ENC[AES256_GCM,...]`); values sops left unencrypted keep their type.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node<Leaf> {
    Map(Vec<(String, Node<Leaf>)>),
    List(Vec<Node<Leaf>>),
    Leaf(Leaf),
}

/// What a decrypted value is, for writing it back in its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    Float,
    Bool,
    /// A YAML timestamp, kept as its text.
    Time,
    Null,
}

/// A decrypted value: the bytes sops' MAC covers (its canonical text), and its kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Plain {
    pub text: SecretValue,
    pub kind: Kind,
}

/// A mapping's entries, in the order they were written.
pub type Entries<Leaf> = Vec<(String, Node<Leaf>)>;

/// An encrypted document split into its content and its `sops` metadata.
pub struct Document {
    pub format: Format,
    pub content: Vec<(String, Node<Scalar>)>,
    pub metadata: Vec<(String, Node<Scalar>)>,
}

const METADATA_KEY: &str = "sops";
const FLAT_PREFIX: &str = "sops_";

/// The format sops would read `bytes` as: by the file's extension when it names one,
/// as sops decides, and otherwise by what the content looks like, so that a file
/// encrypted with `--input-type` under another name is still read.
pub fn format_of(extension: Option<&str>, bytes: &[u8]) -> Format {
    match extension.map(str::to_ascii_lowercase).as_deref() {
        Some("json") => return Format::Json,
        Some("yaml" | "yml") => return Format::Yaml,
        Some("env") => return Format::Dotenv,
        Some("ini") => return Format::Ini,
        _ => {}
    }
    let text = String::from_utf8_lossy(bytes);
    if text.trim_start().starts_with('{') {
        // sops' binary store is JSON holding `data` and `sops` alone.
        return Format::Binary;
    }
    let has_line = |matches: &dyn Fn(&str) -> bool| text.lines().any(matches);
    if has_line(&|line| line.starts_with(FLAT_PREFIX) && line.contains('=')) {
        Format::Dotenv
    } else if has_line(&|line| line.trim() == "[sops]") {
        Format::Ini
    } else {
        Format::Yaml
    }
}

pub fn parse(format: Format, bytes: &[u8]) -> Result<Document, SopsError> {
    match format {
        Format::Json | Format::Binary => {
            let root: Node<Scalar> = serde_json::from_slice(bytes).map_err(|error| {
                malformed(format!(
                    "not a JSON document (line {}, column {})",
                    error.line(),
                    error.column()
                ))
            })?;
            let document = split_structured(format, root)?;
            if format == Format::Binary
                && !matches!(document.content.as_slice(), [(key, Node::Leaf(Scalar::Str(_)))] if key == "data")
            {
                // Not sops' binary layout: a JSON credential under another name.
                return Ok(Document {
                    format: Format::Json,
                    ..document
                });
            }
            Ok(document)
        }
        Format::Yaml => {
            let text = std::str::from_utf8(bytes).map_err(|_| malformed("not UTF-8 text"))?;
            if has_several_documents(text) {
                return Err(SopsError::Unsupported(
                    "a YAML file of several documents is not supported as a credential".into(),
                ));
            }
            let root: Node<Scalar> = serde_saphyr::from_str(text)
                .map_err(|_| malformed("not a YAML document sops could have written"))?;
            split_structured(format, root)
        }
        Format::Ini => parse_ini(bytes),
        Format::Dotenv => parse_dotenv(bytes),
    }
}

/// A `---` after content starts a second document; one before any content does not.
fn has_several_documents(text: &str) -> bool {
    let mut seen_content = false;
    for line in text.lines() {
        let line = line.trim_end();
        if line == "---" || line.starts_with("--- ") {
            if seen_content {
                return true;
            }
        } else if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            seen_content = true;
        }
    }
    false
}

fn malformed(reason: impl Into<String>) -> SopsError {
    SopsError::Malformed(reason.into())
}

fn split_structured(format: Format, root: Node<Scalar>) -> Result<Document, SopsError> {
    let Node::Map(entries) = root else {
        return Err(malformed("the document is not a mapping"));
    };
    let mut content = Vec::new();
    let mut metadata = None;
    for (key, value) in entries {
        if key == METADATA_KEY {
            match value {
                Node::Map(map) if metadata.is_none() => metadata = Some(map),
                Node::Map(_) => return Err(malformed("`sops` appears twice")),
                _ => return Err(malformed("`sops` is not a mapping")),
            }
        } else {
            content.push((key, value));
        }
    }
    let metadata = metadata.ok_or_else(|| malformed("no `sops` metadata"))?;
    Ok(Document {
        format,
        content,
        metadata,
    })
}

/// INI as go-ini reads it for sops: `[section]` headers (sections may repeat), keys
/// before the first header in `DEFAULT`, `key = value` or `key: value`, `;` and `#`
/// comment lines, values unquoted from `"..."`. Metadata values escape newlines as `\n`.
fn parse_ini(bytes: &[u8]) -> Result<Document, SopsError> {
    let text = std::str::from_utf8(bytes).map_err(|_| malformed("not UTF-8 text"))?;
    let mut sections: Vec<(String, Entries<Scalar>)> = vec![("DEFAULT".to_string(), Vec::new())];
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let name = name.strip_suffix(']').ok_or_else(|| {
                malformed(format!("line {}: an unclosed section header", index + 1))
            })?;
            sections.push((name.trim().to_string(), Vec::new()));
            continue;
        }
        let split = line
            .find(['=', ':'])
            .ok_or_else(|| malformed(format!("line {}: neither a key nor a section", index + 1)))?;
        let key = line[..split].trim().to_string();
        let mut value = line[split + 1..].trim();
        if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
            value = &value[1..value.len() - 1];
        }
        if let Some((_, keys)) = sections.last_mut() {
            keys.push((key, Node::Leaf(Scalar::Str(value.to_string()))));
        }
    }
    let mut content = Vec::new();
    let mut flat_metadata = None;
    for (name, keys) in sections {
        if name == METADATA_KEY {
            if flat_metadata.is_some() {
                return Err(malformed("`[sops]` appears twice"));
            }
            let keys = keys
                .into_iter()
                .map(|(key, value)| match value {
                    Node::Leaf(Scalar::Str(text)) => (key, text.replace("\\n", "\n")),
                    _ => (key, String::new()),
                })
                .collect::<Vec<_>>();
            flat_metadata = Some(keys);
        } else {
            content.push((name, Node::Map(keys)));
        }
    }
    let flat = flat_metadata.ok_or_else(|| malformed("no `[sops]` section"))?;
    Ok(Document {
        format: Format::Ini,
        content,
        metadata: unflatten(flat)?,
    })
}

/// dotenv as sops reads it: one `KEY=value` per line, `#` comment lines, `\n` in a
/// value meaning a newline; metadata in `sops_`-prefixed keys.
fn parse_dotenv(bytes: &[u8]) -> Result<Document, SopsError> {
    let text = std::str::from_utf8(bytes).map_err(|_| malformed("not UTF-8 text"))?;
    let mut content = Vec::new();
    let mut flat = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| malformed(format!("line {} is not KEY=value", index + 1)))?;
        let value = value.replace("\\n", "\n");
        match key.strip_prefix(FLAT_PREFIX) {
            Some(metadata_key) => flat.push((metadata_key.to_string(), value)),
            None => content.push((key.to_string(), Node::Leaf(Scalar::Str(value)))),
        }
    }
    if flat.is_empty() {
        return Err(malformed("no `sops_` metadata keys"));
    }
    Ok(Document {
        format: Format::Dotenv,
        content,
        metadata: unflatten(flat)?,
    })
}

/// Rebuilds nested metadata from sops' flattened keys: `age__list_0__map_recipient`
/// is `age[0].recipient`.
fn unflatten(flat: Vec<(String, String)>) -> Result<Vec<(String, Node<Scalar>)>, SopsError> {
    #[derive(Default)]
    struct Slot {
        value: Option<String>,
        map: Vec<(String, Slot)>,
        list: Vec<(usize, Slot)>,
    }
    fn slot<'a>(parent: &'a mut Slot, token: &Token) -> &'a mut Slot {
        match token {
            Token::Key(key) => {
                let at = match parent.map.iter().position(|(k, _)| k == key) {
                    Some(at) => at,
                    None => {
                        parent.map.push((key.clone(), Slot::default()));
                        parent.map.len() - 1
                    }
                };
                &mut parent.map[at].1
            }
            Token::Index(index) => {
                let at = match parent.list.iter().position(|(i, _)| i == index) {
                    Some(at) => at,
                    None => {
                        parent.list.push((*index, Slot::default()));
                        parent.list.len() - 1
                    }
                };
                &mut parent.list[at].1
            }
        }
    }
    fn build(slot: Slot) -> Result<Node<Scalar>, SopsError> {
        match (slot.value, slot.map.is_empty(), slot.list.is_empty()) {
            (Some(value), true, true) => Ok(Node::Leaf(Scalar::Str(value))),
            (None, false, true) => Ok(Node::Map(
                slot.map
                    .into_iter()
                    .map(|(k, s)| build(s).map(|node| (k, node)))
                    .collect::<Result<_, _>>()?,
            )),
            (None, true, false) => {
                let mut items = slot.list;
                items.sort_by_key(|(index, _)| *index);
                if items
                    .iter()
                    .enumerate()
                    .any(|(at, (index, _))| at != *index)
                {
                    return Err(malformed("a flattened list has gaps"));
                }
                Ok(Node::List(
                    items
                        .into_iter()
                        .map(|(_, s)| build(s))
                        .collect::<Result<_, _>>()?,
                ))
            }
            (None, true, true) => Ok(Node::Map(Vec::new())),
            _ => Err(malformed("a flattened key is both a value and a mapping")),
        }
    }
    let mut root = Slot::default();
    for (key, value) in flat {
        let tokens = tokenize(&key)?;
        let mut at = &mut root;
        for token in &tokens {
            at = slot(at, token);
        }
        if at.value.replace(value).is_some() {
            return Err(malformed(format!("`{key}` appears twice")));
        }
    }
    match build(root)? {
        Node::Map(entries) => Ok(entries),
        _ => Err(malformed("the metadata is not a mapping")),
    }
}

enum Token {
    Key(String),
    Index(usize),
}

fn tokenize(key: &str) -> Result<Vec<Token>, SopsError> {
    const MAP: &str = "__map_";
    const LIST: &str = "__list_";
    let mut tokens = Vec::new();
    let mut rest = key;
    let mut current = Token::Key(String::new());
    loop {
        let next_map = rest.find(MAP);
        let next_list = rest.find(LIST);
        let (end, separator) = match (next_map, next_list) {
            (Some(m), Some(l)) if l < m => (l, LIST),
            (Some(m), _) => (m, MAP),
            (None, Some(l)) => (l, LIST),
            (None, None) => (rest.len(), ""),
        };
        let piece = &rest[..end];
        tokens.push(match current {
            Token::Key(_) => Token::Key(piece.to_string()),
            Token::Index(_) => Token::Index(
                piece
                    .parse()
                    .map_err(|_| malformed(format!("`{key}` has a bad list index")))?,
            ),
        });
        if separator.is_empty() {
            return Ok(tokens);
        }
        current = if separator == LIST {
            Token::Index(0)
        } else {
            Token::Key(String::new())
        };
        rest = &rest[end + separator.len()..];
    }
}

/// Writes the decrypted content back in its format, as `sops decrypt` would; comments
/// are left out (sops keeps them, but a credential does not need them).
pub fn emit(format: Format, content: &[(String, Node<Plain>)]) -> Result<Vec<u8>, SopsError> {
    match format {
        Format::Binary => match content {
            [(_, Node::Leaf(plain))] => Ok(plain.text.expose().to_vec()),
            _ => Err(malformed("a binary document holds one `data` value")),
        },
        Format::Dotenv => {
            let mut out = Vec::new();
            for (key, value) in content {
                let Node::Leaf(plain) = value else {
                    return Err(malformed(format!("`{key}` is not a plain value")));
                };
                out.extend_from_slice(key.as_bytes());
                out.push(b'=');
                for &byte in plain.text.expose() {
                    if byte == b'\n' {
                        out.extend_from_slice(b"\\n");
                    } else {
                        out.push(byte);
                    }
                }
                out.push(b'\n');
            }
            Ok(out)
        }
        Format::Ini => {
            let mut out = Vec::new();
            let mut first = true;
            for (section, keys) in content {
                let Node::Map(keys) = keys else {
                    return Err(malformed(format!("section `{section}` is not a section")));
                };
                if section == "DEFAULT" && keys.is_empty() {
                    continue;
                }
                if !first {
                    out.push(b'\n');
                }
                first = false;
                if section != "DEFAULT" {
                    out.extend_from_slice(format!("[{section}]\n").as_bytes());
                }
                // go-ini lines up the `=` of one section's keys.
                let width = keys
                    .iter()
                    .map(|(key, _)| key.chars().count())
                    .max()
                    .unwrap_or(0);
                for (key, value) in keys {
                    let Node::Leaf(plain) = value else {
                        return Err(malformed(format!("`{section}.{key}` is not a plain value")));
                    };
                    out.extend_from_slice(format!("{key:<width$} = ").as_bytes());
                    out.extend_from_slice(plain.text.expose());
                    out.push(b'\n');
                }
            }
            Ok(out)
        }
        Format::Json => {
            let mut out = Vec::new();
            let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
            let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
            serde::Serialize::serialize(&Ordered(content), &mut serializer)
                .map_err(|_| malformed("a decrypted value cannot be written as JSON"))?;
            out.push(b'\n');
            Ok(go_json_escapes(out))
        }
        Format::Yaml => {
            // sops writes YAML indented by four, list items included.
            let options = serde_saphyr::ser_options! {
                indent_step: 4,
                compact_list_indent: false,
            };
            serde_saphyr::to_string_with_options(&Ordered(content), options)
                .map(String::into_bytes)
                .map_err(|_| malformed("a decrypted value cannot be written as YAML"))
        }
    }
}

/// Go's JSON encoder, which sops writes with, escapes `<`, `>`, `&`, U+2028 and U+2029
/// in strings. Outside strings JSON holds none of them, so replacing them everywhere
/// escapes exactly the strings'.
fn go_json_escapes(json: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8_lossy(&json);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.into_bytes()
}

struct Ordered<'a>(&'a [(String, Node<Plain>)]);

impl serde::Serialize for Ordered<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl serde::Serialize for Node<Plain> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        match self {
            Node::Map(entries) => Ordered(entries).serialize(serializer),
            Node::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Leaf(plain) => {
                // The one place decrypted text becomes a document again.
                let text = std::str::from_utf8(plain.text.expose())
                    .map_err(|_| S::Error::custom("a decrypted value is not UTF-8"))?;
                match plain.kind {
                    Kind::Str | Kind::Time => serializer.serialize_str(text),
                    Kind::Null => serializer.serialize_unit(),
                    Kind::Bool => serializer.serialize_bool(text == "True"),
                    Kind::Int => match text.parse::<i64>() {
                        Ok(number) => serializer.serialize_i64(number),
                        Err(_) => Err(S::Error::custom("not an integer")),
                    },
                    Kind::Float => match text.parse::<f64>() {
                        Ok(number) => serializer.serialize_f64(number),
                        Err(_) => Err(S::Error::custom("not a number")),
                    },
                }
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node<Scalar> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<Scalar>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping, a list or a scalar")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Node::Leaf(Scalar::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Node::Leaf(Scalar::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        match i64::try_from(v) {
            Ok(v) => Ok(Node::Leaf(Scalar::Int(v))),
            Err(_) => Ok(Node::Leaf(Scalar::Float(v as f64))),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Node::Leaf(Scalar::Float(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Node::Leaf(Scalar::Str(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Node::Leaf(Scalar::Str(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Node::Leaf(Scalar::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Node::Leaf(Scalar::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node<Scalar>>()? {
            items.push(item);
        }
        Ok(Node::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Node<Scalar>>()? {
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattened_metadata_nests_again() {
        let flat = vec![
            ("age__list_1__map_recipient".to_string(), "b".to_string()),
            ("age__list_0__map_recipient".to_string(), "a".to_string()),
            ("mac".to_string(), "m".to_string()),
        ];
        let nested = unflatten(flat).unwrap();
        let Node::List(ages) = &nested[0].1 else {
            panic!("{nested:?}")
        };
        assert_eq!(
            ages[0],
            Node::Map(vec![(
                "recipient".into(),
                Node::Leaf(Scalar::Str("a".into()))
            )])
        );
        assert_eq!(nested[1].0, "mac");
    }

    #[test]
    fn the_format_follows_the_extension_then_the_content() {
        assert_eq!(format_of(Some("INI"), b"{"), Format::Ini);
        assert_eq!(format_of(None, b"\n{\"data\": 1}"), Format::Binary);
        assert_eq!(
            format_of(Some("creds"), b"A=1\nsops_mac=x\n"),
            Format::Dotenv
        );
        assert_eq!(format_of(None, b"[default]\na = 1\n[sops]\n"), Format::Ini);
        assert_eq!(format_of(None, b"a: 1\nsops:\n  mac: x\n"), Format::Yaml);
    }
}
