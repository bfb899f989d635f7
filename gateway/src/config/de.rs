//! A serde deserializer over [`Node`] trees that reports *where* it failed.
//!
//! serde stops at the first error; the error carries the path of the failing node
//! in the current tree so the loader can record it, repair the tree (fall back to
//! the default or drop the value) and try again, collecting every error in a pass.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::tree::{Kind, Node, Scalar, Seg};

/// Why deserialization failed, and at which node.
#[derive(Debug, Clone)]
pub struct DeError {
    /// The reason, as serde or our parsers word it.
    pub message: String,
    /// Path of the failing node in the current tree (set by the innermost node).
    pub at: Option<Vec<Seg>>,
    /// Whether the failure is an unknown key (then it points at the key itself).
    pub unknown_key: bool,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            at: None,
            unknown_key: false,
        }
    }
}

impl DeError {
    fn tag(mut self, at: &[Seg]) -> Self {
        if self.at.is_none() {
            self.at = Some(at.to_vec());
        }
        self
    }
}

/// Deserialize `T` from `node`.
pub fn from_node<'de, T: de::Deserialize<'de>>(node: &'de Node) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node,
        trail: Vec::new(),
    })
}

struct NodeDe<'de> {
    node: &'de Node,
    trail: Vec<Seg>,
}

fn kind_name(node: &Node) -> &'static str {
    match &node.kind {
        Kind::Table(_) => "a table",
        Kind::Array(_) => "an array",
        Kind::Scalar(Scalar::Str(_)) | Kind::Scalar(Scalar::Text(_)) => "a string",
        Kind::Scalar(Scalar::Int(_)) => "an integer",
        Kind::Scalar(Scalar::Float(_)) => "a float",
        Kind::Scalar(Scalar::Bool(_)) => "a boolean",
        Kind::Scalar(Scalar::Datetime(_)) => "a date-time",
    }
}

impl<'de> NodeDe<'de> {
    fn tagged<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| e.tag(&self.trail))
    }

    /// Text from env/`--set` parsed as the type the key expects.
    fn text_as<V: Visitor<'de>>(
        &self,
        text: &'de str,
        want: Want,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match want {
            Want::Bool => match text {
                "true" => visitor.visit_bool(true),
                "false" => visitor.visit_bool(false),
                _ => Err(de::Error::custom(format!(
                    "expected true or false, found `{text}`"
                ))),
            },
            Want::Int => {
                if let Ok(i) = text.parse::<i64>() {
                    visitor.visit_i64(i)
                } else if let Ok(u) = text.parse::<u64>() {
                    visitor.visit_u64(u)
                } else {
                    Err(de::Error::custom(format!(
                        "expected an integer, found `{text}`"
                    )))
                }
            }
            Want::Float => match text.parse::<f64>() {
                Ok(f) => visitor.visit_f64(f),
                Err(_) => Err(de::Error::custom(format!(
                    "expected a number, found `{text}`"
                ))),
            },
            Want::Any => {
                if let Ok(i) = text.parse::<i64>() {
                    visitor.visit_i64(i)
                } else if let Ok(f) = text.parse::<f64>() {
                    visitor.visit_f64(f)
                } else if text == "true" || text == "false" {
                    visitor.visit_bool(text == "true")
                } else {
                    visitor.visit_borrowed_str(text)
                }
            }
            Want::Str => visitor.visit_borrowed_str(text),
            // `a,b,c` from the environment or --set is a list (TOML `[...]` is parsed earlier).
            Want::Seq => {
                let items = text
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(de::value::BorrowedStrDeserializer::<DeError>::new);
                visitor.visit_seq(de::value::SeqDeserializer::new(items))
            }
        };
        self.tagged(r)
    }

    fn scalar<V: Visitor<'de>>(self, want: Want, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            Kind::Scalar(Scalar::Text(t)) => return self.text_as(t, want, visitor),
            Kind::Scalar(Scalar::Str(s)) | Kind::Scalar(Scalar::Datetime(s)) => {
                visitor.visit_borrowed_str(s)
            }
            Kind::Scalar(Scalar::Int(i)) => visitor.visit_i64(*i),
            Kind::Scalar(Scalar::Float(f)) => visitor.visit_f64(*f),
            Kind::Scalar(Scalar::Bool(b)) => visitor.visit_bool(*b),
            Kind::Array(items) => visitor.visit_seq(Seq {
                items: items.iter().enumerate(),
                trail: &self.trail,
            }),
            Kind::Table(entries) => visitor.visit_map(Map {
                entries: entries.iter(),
                pending: None,
                trail: &self.trail,
            }),
        };
        self.tagged(r)
    }
}

#[derive(Clone, Copy)]
enum Want {
    Any,
    Seq,
    Bool,
    Int,
    Float,
    Str,
}

macro_rules! forward {
    ($($method:ident => $want:ident),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.scalar(Want::$want, visitor)
        })*
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    forward! {
        deserialize_any => Any,
        deserialize_bool => Bool,
        deserialize_i8 => Int, deserialize_i16 => Int, deserialize_i32 => Int, deserialize_i64 => Int,
        deserialize_i128 => Int,
        deserialize_u8 => Int, deserialize_u16 => Int, deserialize_u32 => Int, deserialize_u64 => Int,
        deserialize_u128 => Int,
        deserialize_f32 => Float, deserialize_f64 => Float,
        deserialize_char => Str, deserialize_str => Str, deserialize_string => Str,
        deserialize_identifier => Str,
        deserialize_bytes => Any, deserialize_byte_buf => Any,
        deserialize_seq => Seq, deserialize_map => Any,
        deserialize_unit => Any, deserialize_ignored_any => Any,
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let trail = self.trail.clone();
        visitor.visit_some(self).map_err(|e| e.tag(&trail))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.scalar(Want::Any, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let trail = self.trail.clone();
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.tag(&trail))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.scalar(Want::Any, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.scalar(Want::Any, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Table(_) => self.scalar(Want::Any, visitor),
            _ => Err(DeError {
                message: format!("expected a table, found {}", kind_name(self.node)),
                at: Some(self.trail),
                unknown_key: false,
            }),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        // Only unit variants written as strings are used in our configuration.
        let r = match &self.node.kind {
            Kind::Scalar(Scalar::Str(s)) | Kind::Scalar(Scalar::Text(s)) => {
                let d = de::value::BorrowedStrDeserializer::<DeError>::new(s.as_str());
                visitor.visit_enum(d)
            }
            _ => Err(de::Error::custom(format!(
                "expected a string naming one of the choices, found {}",
                kind_name(self.node)
            ))),
        };
        self.tagged(r)
    }
}

struct Seq<'de, 't, I: Iterator<Item = (usize, &'de Node)>> {
    items: I,
    trail: &'t [Seg],
}

impl<'de, I: Iterator<Item = (usize, &'de Node)>> SeqAccess<'de> for Seq<'de, '_, I> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, node)) => {
                let mut trail = self.trail.to_vec();
                trail.push(Seg::Index(i));
                let r = seed.deserialize(NodeDe {
                    node,
                    trail: trail.clone(),
                });
                r.map(Some).map_err(|e| e.tag(&trail))
            }
        }
    }
}

struct Map<'de, 't, I: Iterator<Item = &'de (String, Node)>> {
    entries: I,
    pending: Option<(&'de Node, Vec<Seg>)>,
    trail: &'t [Seg],
}

impl<'de, I: Iterator<Item = &'de (String, Node)>> MapAccess<'de> for Map<'de, '_, I> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            None => Ok(None),
            Some((k, node)) => {
                let mut trail = self.trail.to_vec();
                trail.push(Seg::Key(k.clone()));
                let d = de::value::BorrowedStrDeserializer::<DeError>::new(k.as_str());
                match seed.deserialize(d) {
                    Ok(key) => {
                        self.pending = Some((node, trail));
                        Ok(Some(key))
                    }
                    Err(mut e) => {
                        e.unknown_key = e.message.starts_with("unknown field");
                        Err(e.tag(&trail))
                    }
                }
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (node, trail) = self
            .pending
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value requested before key"))?;
        seed.deserialize(NodeDe {
            node,
            trail: trail.clone(),
        })
        .map_err(|e| e.tag(&trail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diag::Source;
    use crate::config::tree::parse_path;
    use serde::Deserialize;
    use std::sync::Arc;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        port: u16,
        name: String,
        #[serde(default)]
        tag: Option<String>,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    enum Mode {
        Fast,
        Slow,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        inner: Vec<Inner>,
        mode: Mode,
        flag: bool,
    }

    fn parse(text: &str) -> Node {
        Node::parse(text, Arc::new(Source::File("t".into()))).unwrap()
    }

    #[test]
    fn decodes_a_valid_tree() {
        let n =
            parse("mode = \"slow\"\nflag = true\n[[inner]]\nport = 1\nname = \"a\"\ntag = \"t\"\n");
        let o: Outer = from_node(&n).unwrap();
        assert_eq!(o.mode, Mode::Slow);
        assert_eq!(o.inner[0].tag.as_deref(), Some("t"));
    }

    #[test]
    fn errors_point_at_the_failing_node() {
        let n = parse("mode = \"fast\"\nflag = true\n[[inner]]\nport = 1\nname = \"a\"\n[[inner]]\nport = 70000\nname = \"b\"\n");
        let e = from_node::<Outer>(&n).unwrap_err();
        assert_eq!(e.at, parse_path("inner[1].port"));
        assert!(e.message.contains("70000"), "{}", e.message);

        let n = parse("mode = \"medium\"\nflag = true\ninner = []\n");
        let e = from_node::<Outer>(&n).unwrap_err();
        assert_eq!(e.at, parse_path("mode"));
        assert!(e.message.contains("unknown variant"));

        let n = parse("mode = \"fast\"\nflag = true\ninner = []\nextra = 1\n");
        let e = from_node::<Outer>(&n).unwrap_err();
        assert_eq!(e.at, parse_path("extra"));
        assert!(e.unknown_key);

        let n = parse("mode = \"fast\"\nflag = true\n[[inner]]\nport = 1\n");
        let e = from_node::<Outer>(&n).unwrap_err();
        assert_eq!(e.at, parse_path("inner[0]"));
        assert!(e.message.starts_with("missing field `name`"));

        let n = parse("mode = \"fast\"\nflag = \"yes\"\ninner = []\n");
        let e = from_node::<Outer>(&n).unwrap_err();
        assert_eq!(e.at, parse_path("flag"));
    }

    #[test]
    fn override_text_takes_the_expected_type() {
        let mut n = parse("mode = \"fast\"\nflag = true\n[[inner]]\nport = 1\nname = \"a\"\n");
        let at = crate::config::diag::Location::whole(Arc::new(Source::Env("X".into())));
        n.set(
            &parse_path("inner[0].port").unwrap(),
            crate::config::tree::override_value("8080", at.clone()),
        )
        .unwrap();
        n.set(
            &parse_path("inner[0].name").unwrap(),
            crate::config::tree::override_value("42", at.clone()),
        )
        .unwrap();
        n.set(
            &parse_path("flag").unwrap(),
            crate::config::tree::override_value("false", at.clone()),
        )
        .unwrap();
        n.set(
            &parse_path("mode").unwrap(),
            crate::config::tree::override_value("slow", at),
        )
        .unwrap();
        let o: Outer = from_node(&n).unwrap();
        assert_eq!(o.inner[0].port, 8080);
        assert_eq!(o.inner[0].name, "42");
        assert!(!o.flag);
        assert_eq!(o.mode, Mode::Slow);
    }
}
