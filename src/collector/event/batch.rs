//! Batches: NDJSON (one event per line) and JSON arrays, each event accepted or rejected on its
//! own.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::wire::Top;
use super::{Event, EventSchema, Reason, Rejection, malformed, parse_event, validate::validate};

/// Parses an NDJSON batch, calling `on_event(line_index, result)` for every non-blank line, in
/// order. Lines may end with `\n` or `\r\n`.
pub fn parse_ndjson<'b, F>(body: &'b [u8], schema: &EventSchema, mut on_event: F)
where
    F: FnMut(usize, Result<Event<'b>, Rejection>),
{
    for (index, line) in body.split(|byte| *byte == b'\n').enumerate() {
        parse_line(index, line, schema, &mut on_event);
    }
}

fn parse_line<'b, F>(index: usize, line: &'b [u8], schema: &EventSchema, on_event: &mut F)
where
    F: FnMut(usize, Result<Event<'b>, Rejection>),
{
    let line = line.trim_ascii();
    if !line.is_empty() {
        on_event(index, parse_event(line, schema));
    }
}

/// An NDJSON batch read as its body arrives, so a collector holds one chunk and one unfinished
/// line rather than the whole body: [`NdjsonStream::feed`] each chunk in order, then
/// [`NdjsonStream::finish`]. It calls `on_event` exactly as [`parse_ndjson`] does over the
/// concatenated chunks, whatever the chunk boundaries.
#[derive(Debug, Default)]
pub struct NdjsonStream {
    /// The start of a line whose end has not arrived yet.
    unfinished: Vec<u8>,
    /// The index of the line that `unfinished` begins.
    line: usize,
}

impl NdjsonStream {
    /// Parses every line that `chunk` completes.
    pub fn feed<F>(&mut self, chunk: &[u8], schema: &EventSchema, mut on_event: F)
    where
        F: for<'b> FnMut(usize, Result<Event<'b>, Rejection>),
    {
        let Some(first_end) = chunk.iter().position(|byte| *byte == b'\n') else {
            self.unfinished.extend_from_slice(chunk);
            return;
        };
        let last_end = chunk
            .iter()
            .rposition(|byte| *byte == b'\n')
            .unwrap_or(first_end);
        if self.unfinished.is_empty() {
            parse_line(self.line, &chunk[..first_end], schema, &mut on_event);
        } else {
            self.unfinished.extend_from_slice(&chunk[..first_end]);
            parse_line(self.line, &self.unfinished, schema, &mut on_event);
            self.unfinished.clear();
        }
        self.line += 1;
        if last_end > first_end {
            for line in chunk[first_end + 1..last_end].split(|byte| *byte == b'\n') {
                parse_line(self.line, line, schema, &mut on_event);
                self.line += 1;
            }
        }
        self.unfinished.extend_from_slice(&chunk[last_end + 1..]);
    }

    /// Parses the last line, which needs no line end.
    pub fn finish<F>(self, schema: &EventSchema, mut on_event: F)
    where
        F: for<'b> FnMut(usize, Result<Event<'b>, Rejection>),
    {
        parse_line(self.line, &self.unfinished, schema, &mut on_event);
    }
}

/// Parses a JSON-array batch, calling `on_event(array_index, result)` for every element, in order.
/// Returns a rejection for the whole batch when the body is not a well-formed JSON array; the
/// caller must then discard what `on_event` saw.
pub fn parse_json_array<'b, F>(
    body: &'b [u8],
    schema: &EventSchema,
    on_event: F,
) -> Result<(), Rejection>
where
    F: FnMut(usize, Result<Event<'b>, Rejection>),
{
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let outcome = BatchSeed { schema, on_event }
        .deserialize(&mut deserializer)
        .map_err(malformed)?;
    deserializer.end().map_err(malformed)?;
    match outcome {
        BatchShape::Array => Ok(()),
        BatchShape::Other(kind) => Err(Rejection::whole(
            Reason::WrongType,
            format!("a JSON batch is an array of events, got {kind}"),
        )),
    }
}

enum BatchShape {
    Array,
    Other(&'static str),
}

/// Streams the elements of a JSON array through validation without collecting them.
struct BatchSeed<'s, F> {
    schema: &'s EventSchema,
    on_event: F,
}

impl<'de, F> DeserializeSeed<'de> for BatchSeed<'_, F>
where
    F: FnMut(usize, Result<Event<'de>, Rejection>),
{
    type Value = BatchShape;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<BatchShape, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, F> Visitor<'de> for BatchSeed<'_, F>
where
    F: FnMut(usize, Result<Event<'de>, Rejection>),
{
    type Value = BatchShape;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of events")
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<BatchShape, A::Error> {
        let mut index = 0;
        while let Some(top) = seq.next_element::<Top<'de>>()? {
            (self.on_event)(index, validate(top, self.schema));
            index += 1;
        }
        Ok(BatchShape::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BatchShape, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(BatchShape::Other("an object"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<BatchShape, E> {
        Ok(BatchShape::Other("a boolean"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<BatchShape, E> {
        Ok(BatchShape::Other("a number"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<BatchShape, E> {
        Ok(BatchShape::Other("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<BatchShape, E> {
        Ok(BatchShape::Other("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<BatchShape, E> {
        Ok(BatchShape::Other("a string"))
    }
    fn visit_unit<E>(self) -> Result<BatchShape, E> {
        Ok(BatchShape::Other("null"))
    }
}
