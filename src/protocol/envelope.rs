//! The envelope every body and answer shares: `{"registers": {NAME: ENTRY, ...}}`
//! (docs/protocol.md A3). It reads the envelope for the server (validated whole, name limits
//! checked, every refusal a 400 naming the field) and for the client (lenient: an
//! answer regd wrote), and writes it for both. The grammars inside an entry belong to
//! [`super::publish`], [`super::requests`] and [`super::snapshot`]. Invariant: a body
//! is refused whole or returned whole; nothing of a refused body reaches the caller.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

#[cfg(feature = "server")]
use super::error::ApiError;
use super::json::{Json, json_string};
#[cfg(feature = "server")]
use super::json::{MAX_NESTING, TooDeep, compact_json, excerpt};
#[cfg(feature = "server")]
use super::query::NameLimits;

/// `{"registers": {...}}` with each entry kept as raw text until it is checked.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    registers: Option<BTreeMap<String, &'a RawValue>>,
}

/// The members an entry may have, each still raw; which ones count depends on the body.
/// Unknown members are ignored (docs/protocol.md A3).
#[derive(Deserialize)]
pub(crate) struct Entry<'a> {
    #[serde(borrow)]
    pub value: Option<&'a RawValue>,
    #[serde(borrow)]
    pub metadata: Option<&'a RawValue>,
    #[serde(borrow)]
    pub ttl: Option<&'a RawValue>,
    #[serde(borrow)]
    pub expires_in_ms: Option<&'a RawValue>,
    #[serde(borrow)]
    pub index: Option<&'a RawValue>,
}

/// Reads a request body's entries, converting each with `convert`; the first refusal
/// refuses the whole body.
#[cfg(feature = "server")]
pub(crate) fn decode_body<T>(
    body: &[u8],
    limits: &NameLimits,
    mut convert: impl FnMut(&str, &Entry<'_>) -> Result<T, ApiError>,
) -> Result<Vec<(String, T)>, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("request body is not valid UTF-8 JSON"))?;
    // serde would also read a JSON array into these structs; the protocol wants objects.
    if !text.trim_start().starts_with('{') {
        return Err(ApiError::bad_request(
            r#"request body must be a JSON object such as {"registers": {"name": {"value": 1}}}"#,
        ));
    }
    let parsed: Envelope<'_> = serde_json::from_str(text)
        .map_err(|error| ApiError::bad_request(format!("request body is not valid: {error}")))?;
    let registers = parsed.registers.ok_or_else(|| {
        ApiError::bad_request(
            r#"request body needs a "registers" object such as {"registers": {"name": {"value": 1}}}"#,
        )
    })?;
    if registers.len() > limits.max_names {
        return Err(ApiError::bad_request(format!(
            "a request may carry at most {} registers, got {}; split it into several requests",
            limits.max_names,
            registers.len()
        )));
    }
    let mut decoded = Vec::with_capacity(registers.len());
    for (name, raw) in registers {
        if name.len() > limits.max_name_bytes {
            return Err(ApiError::bad_request(format!(
                "register name {} has {} bytes; at most {} are allowed",
                excerpt(&json_string(&name)),
                name.len(),
                limits.max_name_bytes
            )));
        }
        if !raw.get().starts_with('{') {
            return Err(ApiError::bad_request(format!(
                r#"registers.{} must be an object such as {{"value": 1}}, got {}"#,
                json_string(&name),
                excerpt(raw.get())
            )));
        }
        let entry: Entry<'_> = serde_json::from_str(raw.get()).map_err(|error| {
            ApiError::bad_request(format!("registers.{}: {error}", json_string(&name)))
        })?;
        let converted = convert(&name, &entry)?;
        decoded.push((name, converted));
    }
    Ok(decoded)
}

/// An entry's `value` as stored: compact text, `null` when absent (older clients omit
/// a null value, docs/protocol.md A3).
#[cfg(feature = "server")]
pub(crate) fn value_of(entry: &Entry<'_>, name: &str) -> Result<String, ApiError> {
    match entry.value {
        None => Ok("null".to_string()),
        Some(raw) => compact_member(raw, name, "value"),
    }
}

/// A member of a body's entry as compact text, its nesting bounded.
#[cfg(feature = "server")]
pub(crate) fn compact_member(raw: &RawValue, name: &str, field: &str) -> Result<String, ApiError> {
    compact_json(raw.get()).map_err(|TooDeep| {
        ApiError::bad_request(format!(
            "registers.{}.{field} nests deeper than {MAX_NESTING} levels",
            json_string(name)
        ))
    })
}

/// An answer regd gave that does not have the protocol's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    message: String,
}

impl DecodeError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        DecodeError {
            message: message.into(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

/// Reads an answer's entries, calling `read` for each (in name order).
pub(crate) fn decode_answer(
    body: &str,
    mut read: impl FnMut(String, Entry<'_>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let answer: Envelope<'_> = serde_json::from_str(body).map_err(|error| {
        DecodeError::new(format!(
            "regd answered with JSON this client does not understand: {error}"
        ))
    })?;
    let registers = answer
        .registers
        .ok_or_else(|| DecodeError::new("regd answered without a \"registers\" object"))?;
    for (name, raw) in registers {
        let entry: Entry<'_> = serde_json::from_str(raw.get()).map_err(|error| {
            DecodeError::new(format!(
                "regd answered an entry {} this client does not understand: {error}",
                json_string(&name)
            ))
        })?;
        read(name, entry)?;
    }
    Ok(())
}

/// A member of an answer's entry as [`Json`] (absent stays `None`).
pub(crate) fn json_member(raw: Option<&RawValue>) -> Result<Option<Json>, DecodeError> {
    raw.map(|raw| Json::from_raw(raw).map_err(|error| DecodeError::new(error.to_string())))
        .transpose()
}

/// Writes `{"registers":{NAME:{"value":V,...},...}}`, entry by entry, members in the
/// order given.
pub(crate) struct Writer {
    out: String,
    entries: usize,
}

impl Writer {
    /// A writer with room for about `entries` entries.
    pub fn with_room_for(entries: usize) -> Writer {
        let mut out = String::with_capacity(32 + entries * 48);
        out.push_str(r#"{"registers":{"#);
        Writer { out, entries: 0 }
    }

    /// Starts the next entry: `NAME:{"value":V`.
    pub fn entry(&mut self, name: &str, value: &str) {
        if self.entries > 0 {
            self.out.push_str("},");
        }
        self.entries += 1;
        self.out.push_str(&json_string(name));
        self.out.push_str(r#":{"value":"#);
        self.out.push_str(value);
    }

    /// Adds a member, already JSON text, to the current entry.
    pub fn member(&mut self, key: &'static str, json: &str) {
        self.out.push_str(",\"");
        self.out.push_str(key);
        self.out.push_str("\":");
        self.out.push_str(json);
    }

    /// The whole envelope.
    pub fn finish(mut self) -> String {
        if self.entries > 0 {
            self.out.push('}');
        }
        self.out.push_str("}}");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_closes_every_entry() {
        assert_eq!(Writer::with_room_for(0).finish(), r#"{"registers":{}}"#);
        let mut writer = Writer::with_room_for(2);
        writer.entry("a\"", "1");
        writer.member("ttl", "\"5s\"");
        writer.entry("b", "null");
        assert_eq!(
            writer.finish(),
            r#"{"registers":{"a\"":{"value":1,"ttl":"5s"},"b":{"value":null}}}"#
        );
    }

    #[test]
    fn answers_must_have_the_envelope() {
        for body in ["{}", "[]", "x", r#"{"registers":{"a":5}}"#] {
            assert!(decode_answer(body, |_, _| Ok(())).is_err(), "{body}");
        }
    }
}
