//! Decoding: a permissive first pass that only fails on JSON syntax, so that every semantic problem
//! becomes a precise rejection (field, reason) in [`super::validate`].

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The fields any event may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Field {
    Type,
    Metric,
    Score,
    Outcome,
    WaitSeconds,
    HandleSeconds,
    CustomerId,
    SessionId,
    Timestamp,
    Comment,
    Language,
    EventId,
}

impl Field {
    /// Every field, in declaration order (`field as usize` is its position).
    pub(super) const ALL: [Field; 12] = [
        Field::Type,
        Field::Metric,
        Field::Score,
        Field::Outcome,
        Field::WaitSeconds,
        Field::HandleSeconds,
        Field::CustomerId,
        Field::SessionId,
        Field::Timestamp,
        Field::Comment,
        Field::Language,
        Field::EventId,
    ];
    /// The size of arrays indexed by field.
    pub(super) const COUNT: usize = Self::ALL.len();

    pub(super) fn from_name(name: &str) -> Option<Field> {
        Some(match name {
            "type" => Field::Type,
            "metric" => Field::Metric,
            "score" => Field::Score,
            "outcome" => Field::Outcome,
            "waitSeconds" => Field::WaitSeconds,
            "handleSeconds" => Field::HandleSeconds,
            "customerId" => Field::CustomerId,
            "sessionId" => Field::SessionId,
            "timestamp" => Field::Timestamp,
            "comment" => Field::Comment,
            "language" => Field::Language,
            "eventId" => Field::EventId,
            _ => return None,
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Field::Type => "type",
            Field::Metric => "metric",
            Field::Score => "score",
            Field::Outcome => "outcome",
            Field::WaitSeconds => "waitSeconds",
            Field::HandleSeconds => "handleSeconds",
            Field::CustomerId => "customerId",
            Field::SessionId => "sessionId",
            Field::Timestamp => "timestamp",
            Field::Comment => "comment",
            Field::Language => "language",
            Field::EventId => "eventId",
        }
    }
}

// `field as usize` indexes arrays of `Field::COUNT`: checked when compiling.
const _: () = {
    let mut i = 0;
    while i < Field::COUNT {
        assert!(Field::ALL[i] as usize == i);
        i += 1;
    }
};

/// Any JSON value, keeping only what validation needs (strings borrowed when unescaped).
#[derive(Debug, PartialEq)]
pub(super) enum Json<'a> {
    Str(Cow<'a, str>),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Bool,
    Null,
    Array,
    Object,
}

impl Json<'_> {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Json::Str(_) => "a string",
            Json::Unsigned(_) | Json::Signed(_) | Json::Float(_) => "a number",
            Json::Bool => "a boolean",
            Json::Null => "null",
            Json::Array => "an array",
            Json::Object => "an object",
        }
    }

    pub(super) fn as_f64(&self) -> Option<f64> {
        match *self {
            Json::Unsigned(n) => Some(n as f64),
            Json::Signed(n) => Some(n as f64),
            Json::Float(n) => Some(n),
            _ => None,
        }
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool)
    }
    fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(Json::Unsigned(n))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(Json::Signed(n))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Json<'de>, E> {
        Ok(Json::Float(n))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(s)))
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Json::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Json::Object)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

/// An object key: a known field, or the name of an unknown one.
pub(super) enum Key<'a> {
    Known(Field),
    Unknown(Cow<'a, str>),
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
        Ok(Field::from_name(s).map_or(Key::Unknown(Cow::Borrowed(s)), Key::Known))
    }
    fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
        Ok(Field::from_name(s).map_or_else(|| Key::Unknown(Cow::Owned(s.to_owned())), Key::Known))
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// An event object as written, before validation.
#[derive(Default)]
pub(super) struct RawEvent<'a> {
    values: [Option<Json<'a>>; Field::COUNT],
    /// The first field name that is not an event field.
    pub(super) first_unknown: Option<Cow<'a, str>>,
    /// The first field that appears twice.
    pub(super) first_duplicate: Option<Field>,
}

impl<'a> RawEvent<'a> {
    pub(super) fn get(&self, field: Field) -> Option<&Json<'a>> {
        self.values.get(field as usize).and_then(Option::as_ref)
    }

    /// The value of an optional field; JSON `null` counts as absent.
    pub(super) fn optional(&self, field: Field) -> Option<&Json<'a>> {
        self.get(field).filter(|value| **value != Json::Null)
    }

    /// Takes the value of an optional field out (JSON `null` counts as absent), to keep a string
    /// borrowed from the body without copying it.
    pub(super) fn take(&mut self, field: Field) -> Option<Json<'a>> {
        self.values
            .get_mut(field as usize)
            .and_then(Option::take)
            .filter(|value| *value != Json::Null)
    }
}

/// The top-level value: an event object or something else (named for the message).
// Not boxed: the object is the common case and a heap allocation per event costs more than moving
// a few hundred bytes.
#[allow(clippy::large_enum_variant)]
pub(super) enum Top<'a> {
    Object(RawEvent<'a>),
    Other(&'static str),
}

/// Decodes a [`Top`], noting in `reading` (when given) the free-text field (`comment`,
/// `language`, `eventId`) whose value is being read, so a syntax error inside it (invalid UTF-8 in
/// a comment) can name the field.
pub(super) struct TopVisitor<'c> {
    pub(super) reading: Option<&'c Cell<Option<Field>>>,
}

impl<'de> DeserializeSeed<'de> for TopVisitor<'_> {
    type Value = Top<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Top<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopVisitor<'_> {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
        let mut raw = RawEvent::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            // Only the free-text fields: a broken comment is worth naming, and the other fields'
            // syntax errors keep answering as they always did.
            if let (
                Some(reading),
                Key::Known(field @ (Field::Comment | Field::Language | Field::EventId)),
            ) = (self.reading, &key)
            {
                reading.set(Some(*field));
            }
            let value = map.next_value::<Json<'de>>()?;
            if let Some(reading) = self.reading {
                reading.set(None);
            }
            match key {
                Key::Known(field) => match raw.values.get_mut(field as usize) {
                    Some(slot @ None) => *slot = Some(value),
                    _ => {
                        raw.first_duplicate.get_or_insert(field);
                    }
                },
                Key::Unknown(name) => {
                    raw.first_unknown.get_or_insert(name);
                }
            }
        }
        Ok(Top::Object(raw))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Top::Other("an array"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Top<'de>, E> {
        Ok(Top::Other("a boolean"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Top<'de>, E> {
        Ok(Top::Other("a number"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Top<'de>, E> {
        Ok(Top::Other("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Top<'de>, E> {
        Ok(Top::Other("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Top<'de>, E> {
        Ok(Top::Other("a string"))
    }
    fn visit_unit<E>(self) -> Result<Top<'de>, E> {
        Ok(Top::Other("null"))
    }
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TopVisitor { reading: None })
    }
}
