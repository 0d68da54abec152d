//! YAML read as `kubectl` reads it, so `check` sees the object the API server would receive.
//!
//! kubectl converts YAML to JSON with sigs.k8s.io/yaml, built on go-yaml v2, which resolves plain
//! (unquoted) scalars by YAML 1.1: `yes`, `no`, `on`, `off`, `y`, `n` are booleans, `017` is the
//! octal 15, `0x1F` and `0b101` are numbers, `1_000` is 1000, and `.inf` / `.nan` cannot become
//! JSON at all (kubectl refuses the file). serde_yaml follows YAML 1.2, where `yes` and `017` are
//! strings: a manifest `check` accepted could be refused by the cluster, and the other way round.
//! Merge keys (`<<: *anchor`) are merged and unknown local tags (`!custom`) ignored, as go-yaml
//! does. The events come from libyaml (the parser serde_yaml uses), so syntax is judged the same.

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};

/// A scalar that cannot become the JSON kubectl sends, with where it is (0-based line, column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsendable {
    /// 0-based line within the text.
    pub line: usize,
    /// 0-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

enum Event {
    Scalar {
        anchor: Option<String>,
        tag: Option<String>,
        value: String,
        plain: bool,
        line: usize,
        column: usize,
    },
    Alias(String),
    SequenceStart(Option<String>),
    SequenceEnd,
    MappingStart(Option<String>),
    MappingEnd,
    End,
}

/// The first document of `text` as kubectl would send it; `Ok(None)` when there is no document,
/// `Err(None)` when libyaml cannot parse it (the caller reports serde_yaml's description).
pub fn parse(text: &str) -> Result<Option<Value>, Option<Unsendable>> {
    let events = events(text).ok_or(None)?;
    let mut builder = Builder {
        events: events.into_iter().peekable(),
        anchors: BTreeMap::new(),
    };
    match builder.events.peek() {
        None | Some(Event::End) => Ok(None),
        Some(_) => builder.node().map(Some).map_err(Some),
    }
}

/// The node events of the first document of `text`, or `None` on a syntax error.
fn events(text: &str) -> Option<Vec<Event>> {
    let string = |p: *const u8| -> Option<String> {
        if p.is_null() {
            return None;
        }
        // SAFETY: libyaml's anchors and tags are NUL-terminated strings it owns until the event
        // is deleted, which happens after they are copied here.
        let c = unsafe { std::ffi::CStr::from_ptr(p.cast()) };
        Some(c.to_string_lossy().into_owned())
    };
    let mut out = Vec::new();
    // SAFETY: the parser is initialised before use and deleted once; the input outlives it; each
    // event is read according to its type and deleted after its data is copied.
    unsafe {
        let mut parser = std::mem::MaybeUninit::<unsafe_libyaml::yaml_parser_t>::uninit();
        if unsafe_libyaml::yaml_parser_initialize(parser.as_mut_ptr()).fail {
            return None;
        }
        let mut parser = parser.assume_init();
        unsafe_libyaml::yaml_parser_set_input_string(&mut parser, text.as_ptr(), text.len() as _);
        let mut ok = true;
        let mut documents = 0;
        loop {
            let mut event = std::mem::MaybeUninit::<unsafe_libyaml::yaml_event_t>::uninit();
            if unsafe_libyaml::yaml_parser_parse(&mut parser, event.as_mut_ptr()).fail {
                ok = false;
                break;
            }
            let mut event = event.assume_init();
            let mark = event.start_mark;
            let mut stop = false;
            match event.type_ {
                unsafe_libyaml::YAML_STREAM_END_EVENT => stop = true,
                unsafe_libyaml::YAML_DOCUMENT_START_EVENT => documents += 1,
                unsafe_libyaml::YAML_DOCUMENT_END_EVENT => stop = documents > 0,
                unsafe_libyaml::YAML_ALIAS_EVENT => out.push(Event::Alias(
                    string(event.data.alias.anchor).unwrap_or_default(),
                )),
                unsafe_libyaml::YAML_SCALAR_EVENT => {
                    let scalar = event.data.scalar;
                    let bytes = std::slice::from_raw_parts(scalar.value, scalar.length as usize);
                    out.push(Event::Scalar {
                        anchor: string(scalar.anchor),
                        tag: string(scalar.tag),
                        value: String::from_utf8_lossy(bytes).into_owned(),
                        plain: scalar.style == unsafe_libyaml::YAML_PLAIN_SCALAR_STYLE,
                        line: mark.line as usize,
                        column: mark.column as usize,
                    });
                }
                unsafe_libyaml::YAML_SEQUENCE_START_EVENT => out.push(Event::SequenceStart(
                    string(event.data.sequence_start.anchor),
                )),
                unsafe_libyaml::YAML_SEQUENCE_END_EVENT => out.push(Event::SequenceEnd),
                unsafe_libyaml::YAML_MAPPING_START_EVENT => {
                    out.push(Event::MappingStart(string(event.data.mapping_start.anchor)))
                }
                unsafe_libyaml::YAML_MAPPING_END_EVENT => out.push(Event::MappingEnd),
                _ => {}
            }
            unsafe_libyaml::yaml_event_delete(&mut event);
            if stop {
                break;
            }
        }
        unsafe_libyaml::yaml_parser_delete(&mut parser);
        if !ok {
            return None;
        }
    }
    out.push(Event::End);
    Some(out)
}

struct Builder {
    events: std::iter::Peekable<std::vec::IntoIter<Event>>,
    anchors: BTreeMap<String, Value>,
}

impl Builder {
    fn node(&mut self) -> Result<Value, Unsendable> {
        match self.events.next() {
            Some(Event::Scalar {
                anchor,
                tag,
                value,
                plain,
                line,
                column,
            }) => {
                let resolved =
                    resolve(&value, tag.as_deref(), plain).map_err(|message| Unsendable {
                        line,
                        column,
                        message,
                    })?;
                if let Some(anchor) = anchor {
                    self.anchors.insert(anchor, resolved.clone());
                }
                Ok(resolved)
            }
            Some(Event::Alias(anchor)) => {
                Ok(self.anchors.get(&anchor).cloned().unwrap_or_default())
            }
            Some(Event::SequenceStart(anchor)) => {
                let mut items = Vec::new();
                while !matches!(
                    self.events.peek(),
                    Some(Event::SequenceEnd | Event::End) | None
                ) {
                    items.push(self.node()?);
                }
                self.events.next();
                let value = Value::Array(items);
                if let Some(anchor) = anchor {
                    self.anchors.insert(anchor, value.clone());
                }
                Ok(value)
            }
            Some(Event::MappingStart(anchor)) => {
                let mut map = Map::new();
                while !matches!(
                    self.events.peek(),
                    Some(Event::MappingEnd | Event::End) | None
                ) {
                    let merge = matches!(
                        self.events.peek(),
                        Some(Event::Scalar { value, plain: true, tag: None, .. }) if value == "<<"
                    );
                    let key = self.node()?;
                    let value = self.node()?;
                    if merge {
                        // `<<: *base` or `<<: [*a, *b]`: the mappings' entries, as go-yaml merges them.
                        let sources = match value {
                            Value::Array(items) => items,
                            other => vec![other],
                        };
                        for source in sources {
                            if let Value::Object(entries) = source {
                                map.extend(entries);
                            }
                        }
                        continue;
                    }
                    map.insert(key_string(&key), value);
                }
                self.events.next();
                let value = Value::Object(map);
                if let Some(anchor) = anchor {
                    self.anchors.insert(anchor, value.clone());
                }
                Ok(value)
            }
            _ => Ok(Value::Null),
        }
    }
}

/// A mapping key as JSON has it: sigs.k8s.io/yaml writes non-string keys as their YAML text.
fn key_string(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

const YAML: &str = "tag:yaml.org,2002:";

/// A scalar as go-yaml v2 resolves it (YAML 1.1), then as JSON holds it.
fn resolve(text: &str, tag: Option<&str>, plain: bool) -> Result<Value, String> {
    match tag.and_then(|t| t.strip_prefix(YAML)) {
        Some("str") => return Ok(Value::String(text.into())),
        Some("binary") => {
            return Ok(Value::String(
                base64_decode(text).unwrap_or_else(|| text.to_string()),
            ));
        }
        Some("null" | "bool" | "int" | "float") => return resolve_plain(text),
        _ => {}
    }
    if !plain || tag.is_some_and(|t| t != "!") && !tag.is_some_and(|t| t.starts_with(YAML)) {
        // Quoted and block scalars are strings; so are scalars of a local tag (`!custom`).
        return Ok(Value::String(text.into()));
    }
    resolve_plain(text)
}

fn resolve_plain(text: &str) -> Result<Value, String> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            return Ok(Value::Bool(true));
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            return Ok(Value::Bool(false));
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => {
            return Err(format!(
                "{text} is not a number JSON can hold: kubectl cannot send this manifest (write a number, or quote it for a string)"
            ));
        }
        _ => {}
    }
    if !text.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '.')) {
        return Ok(Value::String(text.into()));
    }
    if looks_like_timestamp(text) {
        // go-yaml keeps timestamps as strings when decoding into a generic value.
        return Ok(Value::String(text.into()));
    }
    let digits = text.replace('_', "");
    if let Some(n) = go_parse_int(&digits) {
        return Ok(Value::Number(n.into()));
    }
    if let Some(n) = go_parse_uint(&digits) {
        return Ok(Value::Number(n.into()));
    }
    if is_yaml_float(&digits)
        && let Ok(f) = digits.parse::<f64>()
        && f.is_finite()
    {
        return Ok(number_of(f));
    }
    if let Some(bits) = digits.strip_prefix("0b")
        && let Ok(n) = i64::from_str_radix(bits, 2)
    {
        return Ok(Value::Number(n.into()));
    }
    if let Some(bits) = digits.strip_prefix("-0b")
        && let Ok(n) = i64::from_str_radix(bits, 2)
    {
        return Ok(Value::Number((-n).into()));
    }
    Ok(Value::String(text.into()))
}

/// A float as JSON carries it: whole values as integers (`1e3` → 1000).
fn number_of(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::Number((f as i64).into())
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// `strconv.ParseInt(s, 0, 64)`: an optional sign, then `0x`, `0o`, `0b` or a leading `0`
/// (octal) prefix, or decimal.
fn go_parse_int(s: &str) -> Option<i64> {
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = go_parse_magnitude(rest)?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// `strconv.ParseUint(s, 0, 64)`.
fn go_parse_uint(s: &str) -> Option<u64> {
    go_parse_magnitude(s)
}

fn go_parse_magnitude(s: &str) -> Option<u64> {
    let (radix, digits) = if let Some(d) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (16, d)
    } else if let Some(d) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
        (8, d)
    } else if let Some(d) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        (2, d)
    } else if s.len() > 1 && s.starts_with('0') {
        (8, &s[1..])
    } else {
        (10, s)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// go-yaml's `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_float(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

/// `2026-11-01`, `2026-11-01T10:00:00Z` and the other forms go-yaml reads as timestamps.
fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
        && (b.len() == 10 || matches!(b[10], b'T' | b't' | b' ' | b'\t'))
}

/// Standard base64 (as `!!binary` holds), `None` when it is not.
fn base64_decode(text: &str) -> Option<String> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(text: &str) -> Value {
        parse(text).unwrap().unwrap()
    }

    #[test]
    fn plain_scalars_resolve_as_kubectl_reads_them() {
        let value = read(
            "a: yes\nb: off\nc: 017\nd: 0o17\ne: 0x1F\nf: 1e3\ng: 1_000\nh: ~\ni: 2026-11-01\nj: '017'\nk: \"yes\"\nl: 08\nm: 1.5\nneg: -3\no: v7\np: |\n  x\n",
        );
        assert_eq!(
            value,
            json!({"a": true, "b": false, "c": 15, "d": 15, "e": 31, "f": 1000, "g": 1000,
                   "h": null, "i": "2026-11-01", "j": "017", "k": "yes", "l": 8, "m": 1.5,
                   "neg": -3, "o": "v7", "p": "x\n"})
        );
    }

    #[test]
    fn anchors_merge_keys_and_tags() {
        let value = read(
            "a: &x {p: 1, q: 2}\nb: {<<: *x, q: 3}\nc: *x\nd: !custom text\ne: !!str 17\nf: !!binary aGVsbG8=\n",
        );
        assert_eq!(
            value,
            json!({"a": {"p": 1, "q": 2}, "b": {"p": 1, "q": 3}, "c": {"p": 1, "q": 2},
                   "d": "text", "e": "17", "f": "hello"})
        );
    }

    #[test]
    fn infinities_cannot_be_sent() {
        let error = parse("a:\n  b: .inf\n").unwrap_err().unwrap();
        assert_eq!((error.line, error.column), (1, 5));
        assert!(error.message.contains("not a number JSON can hold"));
        assert_eq!(parse("# nothing\n").unwrap(), None);
        assert_eq!(parse("a: [").unwrap_err(), None);
    }
}
