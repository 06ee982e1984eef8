//! Decoding the model straight from the located tree: a serde `Deserializer` over
//! [`Node`]s, so the file's values go from the parser's tree into the model without
//! an intermediate JSON document. Entries the shape check reported are skipped, as if
//! they were not written.
//!
//! Scalars decode as their JSON form would: TOML dates and integers too large for
//! `i64` as strings, a float that is not finite as null.

use std::collections::HashSet;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;

use super::source::{Entry, Node, NodeValue};

type Error = serde_json::Error;

/// A node and what the shape check left out below it.
#[derive(Clone, Copy)]
pub(super) struct Nodes<'n> {
    pub(super) node: &'n Node,
    pub(super) left_out: &'n HashSet<usize>,
}

impl<'n> Nodes<'n> {
    fn below(self, node: &'n Node) -> Nodes<'n> {
        Nodes {
            node,
            left_out: self.left_out,
        }
    }

    fn is_left_out(self, entry: &Entry) -> bool {
        !self.left_out.is_empty()
            && self
                .left_out
                .contains(&(std::ptr::from_ref(&entry.value) as usize))
    }
}

impl<'de> de::Deserializer<'de> for Nodes<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            NodeValue::Null => visitor.visit_unit(),
            NodeValue::Bool(b) => visitor.visit_bool(*b),
            NodeValue::Integer(n) => visitor.visit_i64(*n),
            NodeValue::Float(f) if f.is_finite() => visitor.visit_f64(*f),
            NodeValue::Float(_) => visitor.visit_unit(),
            NodeValue::String(s) | NodeValue::Datetime(s) | NodeValue::LargeInteger(s) => {
                visitor.visit_borrowed_str(s)
            }
            NodeValue::List(items) => visitor.visit_seq(Items {
                nodes: self,
                items: items.iter(),
            }),
            NodeValue::Map(entries) => visitor.visit_map(Entries {
                nodes: self,
                entries: entries.iter(),
                value: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            NodeValue::Null => visitor.visit_none(),
            NodeValue::Float(f) if !f.is_finite() => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.node.value {
            NodeValue::String(s) => {
                visitor.visit_enum(de::value::BorrowedStrDeserializer::<Error>::new(s))
            }
            _ => Err(de::Error::invalid_type(
                self.unexpected(),
                &"a variant name",
            )),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

impl Nodes<'_> {
    fn unexpected(&self) -> de::Unexpected<'_> {
        match &self.node.value {
            NodeValue::Null => de::Unexpected::Unit,
            NodeValue::Bool(b) => de::Unexpected::Bool(*b),
            NodeValue::Integer(n) => de::Unexpected::Signed(*n),
            NodeValue::Float(f) => de::Unexpected::Float(*f),
            NodeValue::String(s) | NodeValue::Datetime(s) | NodeValue::LargeInteger(s) => {
                de::Unexpected::Str(s)
            }
            NodeValue::List(_) => de::Unexpected::Seq,
            NodeValue::Map(_) => de::Unexpected::Map,
        }
    }
}

struct Items<'n> {
    nodes: Nodes<'n>,
    items: std::slice::Iter<'n, Node>,
}

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.items
            .next()
            .map(|item| seed.deserialize(self.nodes.below(item)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Entries<'n> {
    nodes: Nodes<'n>,
    entries: std::slice::Iter<'n, Entry>,
    value: Option<&'n Node>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let nodes = self.nodes;
        let Some(entry) = self.entries.find(|entry| !nodes.is_left_out(entry)) else {
            return Ok(None);
        };
        self.value = Some(&entry.value);
        seed.deserialize(BorrowedStrDeserializer::new(&entry.key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(self.nodes.below(value)),
            None => Err(de::Error::custom("a value was asked for before its key")),
        }
    }
}
