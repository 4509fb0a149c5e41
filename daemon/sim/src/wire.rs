//! Borrowing deserializers shared by the request shapes of both APIs.
//!
//! Request bodies are parsed straight from the received `Bytes` into
//! borrowed strings (`Cow::Borrowed` unless the JSON string has escapes), so
//! a small chat request costs a handful of allocations.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The text of a message: a plain string, or the `text` of each part of a
/// content array (OpenAI parts, Anthropic blocks, Responses input items;
/// `tool_result` blocks contribute their nested content). Other parts
/// (images, tool calls) carry no text.
#[derive(Debug, Default, Clone)]
pub(crate) enum Text<'a> {
    #[default]
    Empty,
    One(Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
}

impl<'a> Text<'a> {
    pub(crate) fn parts(&self) -> impl Iterator<Item = &str> {
        let (one, many): (Option<&str>, &[Cow<'a, str>]) = match self {
            Text::Empty => (None, &[]),
            Text::One(s) => (Some(s), &[]),
            Text::Many(v) => (None, v),
        };
        one.into_iter().chain(many.iter().map(|s| &**s))
    }

    /// All parts joined with a newline; borrowed when there is one part.
    pub(crate) fn joined(&self) -> Cow<'_, str> {
        match self {
            Text::Empty => Cow::Borrowed(""),
            Text::One(s) => Cow::Borrowed(s),
            Text::Many(v) if v.len() == 1 => Cow::Borrowed(&v[0]),
            Text::Many(v) => Cow::Owned(v.join("\n")),
        }
    }

    pub(crate) fn words(&self) -> u64 {
        self.parts().map(|p| p.split_whitespace().count() as u64).sum()
    }

    fn push(&mut self, s: Cow<'a, str>) {
        match std::mem::take(self) {
            Text::Empty => *self = Text::One(s),
            Text::One(first) => *self = Text::Many(vec![first, s]),
            Text::Many(mut v) => {
                v.push(s);
                *self = Text::Many(v);
            }
        }
    }

    fn append(&mut self, other: Text<'a>) {
        match other {
            Text::Empty => {}
            Text::One(s) => self.push(s),
            Text::Many(v) => v.into_iter().for_each(|s| self.push(s)),
        }
    }
}

/// A string that borrows from the input when it can.
pub(crate) struct CowStr<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// One element of a content array.
#[derive(serde::Deserialize)]
struct Part<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    /// `tool_result` blocks nest their content.
    #[serde(borrow, default)]
    content: Option<Text<'a>>,
}

/// An element of a content array or of a legacy `prompt` array: an object
/// part, a bare string, or something without text (token ids).
struct AnyPart<'a>(Text<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for AnyPart<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyPart<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a content part")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(AnyPart(Text::One(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(AnyPart(Text::One(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(AnyPart(Text::One(Cow::Owned(v))))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let part = Part::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let mut text = Text::Empty;
                if let Some(t) = part.text {
                    text.push(t);
                }
                if let Some(c) = part.content {
                    text.append(c);
                }
                Ok(AnyPart(text))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(AnyPart(Text::Empty))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(AnyPart(Text::Empty))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(AnyPart(Text::Empty))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(AnyPart(Text::Empty))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(AnyPart(Text::Empty))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(AnyPart(Text::Empty))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text::One(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text::One(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text::One(Cow::Owned(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text::Empty)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text::Empty)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut text = Text::Empty;
                while let Some(AnyPart(part)) = seq.next_element()? {
                    text.append(part);
                }
                Ok(text)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                AnyPart::deserialize(de::value::MapAccessDeserializer::new(map)).map(|p| p.0)
            }
        }
        d.deserialize_any(V)
    }
}

/// `stop` / `stop_sequences`: a string, an array of strings, or null.
#[derive(Debug, Default)]
pub(crate) struct StopList<'a>(pub(crate) Vec<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for StopList<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StopList<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(StopList(vec![Cow::Borrowed(v)]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StopList(vec![Cow::Owned(v.to_owned())]))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(StopList(Vec::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(StopList(Vec::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(CowStr(s)) = seq.next_element()? {
                    v.push(s);
                }
                Ok(StopList(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// The length of an array we only need to know the size of (`tools`).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Count(pub(crate) usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Count(0))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Count(0))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Count(n))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn text(json: &str) -> Vec<String> {
        let t: Text<'_> = serde_json::from_str(json).unwrap();
        t.parts().map(str::to_owned).collect()
    }

    #[test]
    fn text_shapes() {
        assert_eq!(text(r#""hi there""#), ["hi there"]);
        assert_eq!(text("null"), Vec::<String>::new());
        assert_eq!(
            text(r#"[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"b"}]"#),
            ["a", "b"]
        );
        assert_eq!(text(r#"[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"r"}]}]"#), ["r"]);
        assert_eq!(text(r#"["x", "y"]"#), ["x", "y"]);
        assert_eq!(text(r#"[[1,2,3]]"#), Vec::<String>::new());
        assert_eq!(text(r#""esc\"aped""#), ["esc\"aped"]);
    }

    #[test]
    fn stop_shapes() {
        let s: StopList<'_> = serde_json::from_str(r#""END""#).unwrap();
        assert_eq!(s.0, ["END"]);
        let s: StopList<'_> = serde_json::from_str(r#"["a","b"]"#).unwrap();
        assert_eq!(s.0, ["a", "b"]);
        let c: Count = serde_json::from_str(r#"[{"a":1},{"b":[2]}]"#).unwrap();
        assert_eq!(c.0, 2);
    }
}
