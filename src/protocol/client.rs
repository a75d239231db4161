//! The client side of the wire: the JSON a client sends (publish and change-request
//! bodies), the JSON it reads back (snapshots, change requests, error bodies), the JSON a
//! command-line tool prints, and URL-encoding of query values. `regd::client` and
//! `regctl` use these and never touch serde themselves. Invariant: a [`Json`] always holds
//! valid, compact JSON text, exactly as the writer spelled its numbers and key order.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{MAX_NESTING, duration, json_string};

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
        let mut strings = super::StringTracker::default();
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

/// Removes insignificant white space from valid JSON text and bounds its nesting.
fn compact(raw: &str) -> Result<String, JsonError> {
    super::compact_json(raw).map_err(|super::TooDeep| JsonError {
        message: format!("it nests deeper than {MAX_NESTING} levels"),
    })
}

/// A register as a consumer reads it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Register {
    /// The value (`null` included).
    pub value: Json,
    /// The metadata object, when the register has one.
    pub metadata: Option<Json>,
}

/// An answer regd gave that does not have the protocol's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

#[derive(Deserialize)]
struct Answer {
    registers: Option<BTreeMap<String, AnswerEntry>>,
}

#[derive(Deserialize)]
struct AnswerEntry {
    value: Option<Box<RawValue>>,
    metadata: Option<Box<RawValue>>,
    // PROTOCOL B7, present only when asked for with `details=true`.
    ttl: Option<String>,
    expires_in_ms: Option<u64>,
    index: Option<u64>,
}

/// A register with the details regd adds on request (PROTOCOL B7).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Detailed {
    /// Its value and metadata.
    pub register: Register,
    /// The ttl of its last publish (`None` if regd sent one this client cannot read).
    pub ttl: Option<Duration>,
    /// How long it has left, by regd's monotonic clock, when the answer was written.
    pub expires_in: Duration,
    /// The revision of its last change (PROTOCOL B1).
    pub index: u64,
}

fn decode_answer(body: &str) -> Result<BTreeMap<String, AnswerEntry>, DecodeError> {
    let answer: Answer = serde_json::from_str(body).map_err(|error| DecodeError {
        message: format!("regd answered with JSON this client does not understand: {error}"),
    })?;
    answer.registers.ok_or_else(|| DecodeError {
        message: "regd answered without a \"registers\" object".to_string(),
    })
}

fn raw_json(raw: Option<Box<RawValue>>) -> Result<Option<Json>, DecodeError> {
    match raw {
        None => Ok(None),
        Some(raw) => compact(raw.get())
            .map(|text| Some(Json(text)))
            .map_err(|error| DecodeError {
                message: error.to_string(),
            }),
    }
}

/// Decodes a `GET /consumer` answer (PROTOCOL A4): registers by name.
pub fn decode_snapshot(body: &str) -> Result<BTreeMap<String, Register>, DecodeError> {
    let mut registers = BTreeMap::new();
    for (name, entry) in decode_answer(body)? {
        let value = raw_json(entry.value)?.unwrap_or_else(Json::null);
        let metadata = raw_json(entry.metadata)?.filter(|metadata| metadata.as_str() != "{}");
        registers.insert(name, Register { value, metadata });
    }
    Ok(registers)
}

/// Decodes a `GET /consumer?details=true` answer (PROTOCOL A4 with B7): registers by
/// name with their ttl, time left and revision.
pub fn decode_details(body: &str) -> Result<BTreeMap<String, Detailed>, DecodeError> {
    let mut registers = BTreeMap::new();
    for (name, entry) in decode_answer(body)? {
        let (Some(expires_in_ms), Some(index)) = (entry.expires_in_ms, entry.index) else {
            return Err(DecodeError {
                message: format!(
                    "regd answered without details for {}; it may predate details=true (PROTOCOL B7)",
                    json_string(&name)
                ),
            });
        };
        let value = raw_json(entry.value)?.unwrap_or_else(Json::null);
        let metadata = raw_json(entry.metadata)?.filter(|metadata| metadata.as_str() != "{}");
        let ttl = entry
            .ttl
            .and_then(|text| duration::parse(&text).ok().flatten());
        registers.insert(
            name,
            Detailed {
                register: Register { value, metadata },
                ttl,
                expires_in: Duration::from_millis(expires_in_ms),
                index,
            },
        );
    }
    Ok(registers)
}

/// Decodes a `GET /provider` answer (PROTOCOL A5): the requested value of each name.
pub fn decode_requests(body: &str) -> Result<Vec<(String, Json)>, DecodeError> {
    let mut requests = Vec::new();
    for (name, entry) in decode_answer(body)? {
        requests.push((name, raw_json(entry.value)?.unwrap_or_else(Json::null)));
    }
    Ok(requests)
}

/// The message of an error body `{"error": "..."}` (PROTOCOL B3), if it is one.
pub fn decode_error(body: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    serde_json::from_str::<ErrorBody>(body)
        .ok()
        .map(|body| body.error)
}

/// One register of a `PUT /provider` body.
#[derive(Clone, Copy, Debug)]
pub struct PublishEntry<'a> {
    /// Register name.
    pub name: &'a str,
    /// Its value.
    pub value: &'a Json,
    /// Its metadata object, if any.
    pub metadata: Option<&'a Json>,
    /// Its ttl; `None` leaves the server's default.
    pub ttl: Option<Duration>,
}

/// Encodes a `PUT /provider` body (PROTOCOL A7).
pub fn encode_publish(entries: &[PublishEntry<'_>]) -> String {
    let mut out = String::from(r#"{"registers":{"#);
    for (position, entry) in entries.iter().enumerate() {
        if position > 0 {
            out.push(',');
        }
        out.push_str(&json_string(entry.name));
        out.push_str(r#":{"value":"#);
        out.push_str(entry.value.as_str());
        if let Some(metadata) = entry.metadata {
            out.push_str(r#","metadata":"#);
            out.push_str(metadata.as_str());
        }
        if let Some(ttl) = entry.ttl {
            out.push_str(r#","ttl":"#);
            out.push_str(&json_string(&duration::format(ttl)));
        }
        out.push('}');
    }
    out.push_str("}}");
    out
}

/// Encodes a `PUT /consumer` body (PROTOCOL A8).
pub fn encode_requests(entries: &[(&str, &Json)]) -> String {
    let mut out = String::from(r#"{"registers":{"#);
    for (position, (name, value)) in entries.iter().enumerate() {
        if position > 0 {
            out.push(',');
        }
        out.push_str(&json_string(name));
        out.push_str(r#":{"value":"#);
        out.push_str(value.as_str());
        out.push('}');
    }
    out.push_str("}}");
    out
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
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
    fn answers_decode() {
        let snapshot = decode_snapshot(
            r#"{"registers":{"a":{"value":[1, 2]},"b":{"value":null,"metadata":{"u":"C"}},"c":{"metadata":{}}}}"#,
        )
        .unwrap();
        assert_eq!(snapshot["a"].value.as_str(), "[1,2]");
        assert_eq!(snapshot["a"].metadata, None);
        assert_eq!(snapshot["b"].value, Json::null());
        assert_eq!(
            snapshot["b"].metadata.as_ref().unwrap().as_str(),
            r#"{"u":"C"}"#
        );
        assert_eq!(snapshot["c"].metadata, None);
        assert!(decode_snapshot("{}").is_err());
        assert!(decode_snapshot("[]").is_err());
        let requests = decode_requests(r#"{"registers":{"x":{"value":true}}}"#).unwrap();
        assert_eq!(requests, [("x".to_string(), Json::from(true))]);
        assert_eq!(decode_error(r#"{"error":"bad"}"#).as_deref(), Some("bad"));
        assert_eq!(decode_error("<html>"), None);
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
    fn details_decode() {
        let details = decode_details(
            r#"{"registers":{"a":{"value":1,"metadata":{"u":"C"},"ttl":"1.5s","expires_in_ms":1200,"index":7},"b":{"value":null,"ttl":"?","expires_in_ms":0,"index":9}}}"#,
        )
        .unwrap();
        assert_eq!(details["a"].register.value, Json::from(1));
        assert_eq!(details["a"].ttl, Some(Duration::from_millis(1500)));
        assert_eq!(details["a"].expires_in, Duration::from_millis(1200));
        assert_eq!(details["a"].index, 7);
        assert_eq!(details["b"].ttl, None);
        let error = decode_details(r#"{"registers":{"a":{"value":1}}}"#).unwrap_err();
        assert!(error.to_string().contains("details=true"), "{error}");
    }

    #[test]
    fn bodies_encode() {
        let value = Json::from(1);
        let metadata = Json::parse(r#"{"u":"C"}"#).unwrap();
        let body = encode_publish(&[
            PublishEntry {
                name: "a\"",
                value: &value,
                metadata: Some(&metadata),
                ttl: Some(Duration::from_millis(1500)),
            },
            PublishEntry {
                name: "b",
                value: &value,
                metadata: None,
                ttl: None,
            },
        ]);
        assert_eq!(
            body,
            r#"{"registers":{"a\"":{"value":1,"metadata":{"u":"C"},"ttl":"1.5s"},"b":{"value":1}}}"#
        );
        assert_eq!(
            encode_requests(&[("x", &value)]),
            r#"{"registers":{"x":{"value":1}}}"#
        );
        assert_eq!(encode_component("a b/é"), "a%20b%2F%C3%A9");
    }
}
