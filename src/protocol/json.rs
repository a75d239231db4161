//! JSON text as regd keeps it: the [`Json`] type (valid, compact, numbers and key order
//! exactly as the writer spelled them), the one compaction and nesting bound every value
//! and metadata object goes through, string literals, and a value's numeric reading for
//! metrics. Invariant: the same JSON value always compacts to the same text, so stored
//! values compare and serialise stably (docs/protocol.md A3, A4); no input can exhaust the stack
//! (the scans are iterative).

use std::fmt;
use std::str::FromStr;

use serde_json::value::RawValue;

#[cfg(feature = "server")]
use crate::core::Value;

/// Deepest nesting of arrays and objects accepted inside a value or metadata.
pub const MAX_NESTING: usize = 128;

/// A JSON document (a register value or metadata object) as compact text.
///
/// Numbers and key order are kept as written, so a value read back from regd compares
/// equal to the value that was published.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Json(String);

/// Why a text is not acceptable JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonError {
    message: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JSON: {}", self.message)
    }
}

impl std::error::Error for JsonError {}

impl Json {
    /// Parses and compacts JSON text such as `42`, `"on"` or `{"unit": "°C"}`.
    pub fn parse(text: &str) -> Result<Json, JsonError> {
        let raw: &RawValue = serde_json::from_str(text).map_err(|error| JsonError {
            message: error.to_string(),
        })?;
        compact(raw.get()).map(Json)
    }

    /// The JSON `null`.
    pub fn null() -> Json {
        Json("null".to_string())
    }

    /// A JSON string holding `text`.
    pub fn string(text: &str) -> Json {
        Json(json_string(text))
    }

    /// Encodes any serialisable value (numbers, strings, maps with string keys, ...).
    pub fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Json, JsonError> {
        let text = serde_json::to_string(value).map_err(|error| JsonError {
            message: error.to_string(),
        })?;
        Json::parse(&text)
    }

    /// The compact JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a JSON object (metadata must be one).
    pub fn is_object(&self) -> bool {
        self.0.starts_with('{')
    }

    /// Whether this is the JSON `null`.
    pub fn is_null(&self) -> bool {
        self.0 == "null"
    }

    /// The JSON `true` or `false` this is, if it is a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self.0.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    /// The same JSON indented by two spaces per level, one member or element a line
    /// (numbers and key order still as written); empty objects and arrays stay `{}`, `[]`.
    pub fn pretty(&self) -> String {
        let mut out = String::with_capacity(self.0.len() * 2);
        let mut strings = StringTracker::default();
        let mut depth = 0usize;
        let newline = |out: &mut String, depth: usize| {
            out.push('\n');
            out.push_str(&"  ".repeat(depth));
        };
        let mut chars = self.0.chars().peekable();
        while let Some(ch) = chars.next() {
            if strings.inside(ch) {
                out.push(ch);
                continue;
            }
            match ch {
                '{' | '[' => {
                    out.push(ch);
                    if matches!(chars.peek(), Some('}' | ']')) {
                        out.extend(chars.next());
                    } else {
                        depth += 1;
                        newline(&mut out, depth);
                    }
                }
                '}' | ']' => {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                    out.push(ch);
                }
                ',' => {
                    out.push(ch);
                    newline(&mut out, depth);
                }
                ':' => out.push_str(": "),
                _ => out.push(ch),
            }
        }
        out
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Json {
    type Err = JsonError;

    fn from_str(text: &str) -> Result<Json, JsonError> {
        Json::parse(text)
    }
}

impl From<bool> for Json {
    fn from(value: bool) -> Json {
        Json(value.to_string())
    }
}

impl From<i64> for Json {
    fn from(value: i64) -> Json {
        Json(value.to_string())
    }
}

impl From<u64> for Json {
    fn from(value: u64) -> Json {
        Json(value.to_string())
    }
}

impl From<i32> for Json {
    fn from(value: i32) -> Json {
        Json(value.to_string())
    }
}

impl Json {
    /// A raw JSON value from a parsed document, compacted and bounded like [`Json::parse`].
    pub(crate) fn from_raw(raw: &RawValue) -> Result<Json, JsonError> {
        compact(raw.get()).map(Json)
    }
}

/// Removes insignificant white space from valid JSON text and bounds its nesting.
fn compact(raw: &str) -> Result<String, JsonError> {
    compact_json(raw).map_err(|TooDeep| JsonError {
        message: format!("it nests deeper than {MAX_NESTING} levels"),
    })
}

/// JSON text nests deeper than [`MAX_NESTING`].
pub(crate) struct TooDeep;

/// Removes the insignificant white space of valid JSON text (so the same value is
/// always stored and compared as the same text) and refuses nesting deeper than
/// [`MAX_NESTING`]. Iterative: no input can exhaust the stack.
pub(crate) fn compact_json(raw: &str) -> Result<String, TooDeep> {
    let mut out = String::with_capacity(raw.len());
    let mut strings = StringTracker::default();
    let mut depth = 0usize;
    for ch in raw.chars() {
        if strings.inside(ch) {
            out.push(ch);
            continue;
        }
        match ch {
            ' ' | '\t' | '\n' | '\r' => continue,
            '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(TooDeep);
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        out.push(ch);
    }
    Ok(out)
}

/// Follows a character-by-character scan of valid JSON text, telling which characters
/// belong to string literals (where white space and brackets are content).
#[derive(Default)]
pub(crate) struct StringTracker {
    in_string: bool,
    escaped: bool,
}

impl StringTracker {
    /// Feeds the next character; `true` when it is part of a string literal, its
    /// quotes included.
    pub(crate) fn inside(&mut self, ch: char) -> bool {
        if self.in_string {
            match (self.escaped, ch) {
                (true, _) => self.escaped = false,
                (false, '\\') => self.escaped = true,
                (false, '"') => self.in_string = false,
                _ => {}
            }
            return true;
        }
        self.in_string = ch == '"';
        self.in_string
    }
}

/// The start of a long text, for error messages.
#[cfg(feature = "server")]
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// A JSON string literal.
pub(crate) fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
}

/// A register value as a metrics sample: numbers as they are, booleans as 1 and 0,
/// anything else has none.
#[cfg(feature = "server")]
pub(crate) fn numeric_value(value: &Value) -> Option<f64> {
    match value.as_str() {
        "true" => Some(1.0),
        "false" => Some(0.0),
        text if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => text.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_parses_compactly_and_keeps_numbers() {
        let cases = [
            ("1", "1"),
            (" 2.50 ", "2.50"),
            ("{ \"b\" : 1, \"a\": [1, 2] }", r#"{"b":1,"a":[1,2]}"#),
            ("\"a b\"", "\"a b\""),
            ("12345678901234567890123", "12345678901234567890123"),
            ("null", "null"),
        ];
        for (text, compacted) in cases {
            assert_eq!(Json::parse(text).unwrap().as_str(), compacted, "{text}");
        }
        for text in ["", "on", "{", "1 2", "'x'"] {
            assert!(Json::parse(text).is_err(), "{text}");
        }
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(Json::parse(&deep).is_err());
        assert_eq!(Json::string("a\"b").as_str(), r#""a\"b""#);
        assert_eq!(Json::encode(&[1, 2]).unwrap().as_str(), "[1,2]");
    }

    #[test]
    fn json_pretty_prints() {
        let cases = [
            ("1", "1"),
            ("[]", "[]"),
            (r#"{"a":{}}"#, "{\n  \"a\": {}\n}"),
            (
                r#"{"a":[1,2.50],"b:,{":"x,]\"y"}"#,
                "{\n  \"a\": [\n    1,\n    2.50\n  ],\n  \"b:,{\": \"x,]\\\"y\"\n}",
            ),
        ];
        for (text, pretty) in cases {
            let json = Json::parse(text).unwrap();
            assert_eq!(json.pretty(), pretty, "{text}");
            assert_eq!(Json::parse(&json.pretty()).unwrap(), json, "{text}");
        }
        assert_eq!(Json::from(true).as_bool(), Some(true));
        assert_eq!(Json::parse(" false ").unwrap().as_bool(), Some(false));
        assert_eq!(Json::string("true").as_bool(), None);
    }

    #[test]
    #[cfg(feature = "server")]
    fn numeric_values_for_metrics() {
        let cases: &[(&str, Option<f64>)] = &[
            ("1", Some(1.0)),
            ("-2.5", Some(-2.5)),
            ("1e3", Some(1000.0)),
            ("true", Some(1.0)),
            ("false", Some(0.0)),
            ("null", None),
            ("\"5\"", None),
            ("[1]", None),
            ("{}", None),
        ];
        for (text, expected) in cases {
            assert_eq!(numeric_value(&Value::new(*text)), *expected, "{text}");
        }
    }
}
