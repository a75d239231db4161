//! The wire protocol's shapes: request bodies in, answers out, durations, query strings,
//! and errors as HTTP statuses (PROTOCOL.md Parts A and B). This is the only module
//! that knows JSON. Invariants: a body is validated whole before anything of it is
//! returned; values and metadata are stored as compact JSON text exactly as the client
//! wrote them (numbers and key order untouched), so the same stored value always
//! serialises the same way.

pub mod client;
pub mod duration;
pub mod query;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::core::{self, Name, Publish, RegisterView, Snapshot, Value};

/// Deepest nesting of arrays and objects accepted inside a value or metadata.
pub const MAX_NESTING: usize = 128;

/// An error answer: status, message and the headers that go with it (PROTOCOL B3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// What was wrong, naming the field or parameter.
    pub message: String,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
    /// The `Retry-After` header (seconds) of a 503.
    pub retry_after: Option<u32>,
    /// Whether a 401 carries a `WWW-Authenticate` challenge.
    pub www_authenticate: bool,
}

impl ApiError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            allow: None,
            retry_after: None,
            www_authenticate: false,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// 404: no such resource.
    pub fn not_found(path: &str) -> Self {
        Self::new(
            404,
            format!("no resource at {path:?}; the resources are /consumer and /provider"),
        )
    }

    /// 405 with the methods the resource answers.
    pub fn method_not_allowed(method: &str, path: &str, allow: &'static str) -> Self {
        ApiError {
            allow: Some(allow),
            ..Self::new(
                405,
                format!("method {method} is not allowed on {path}; use {allow}"),
            )
        }
    }

    /// 413: the body exceeds the limit.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            413,
            format!(
                "request body larger than {limit} bytes; send fewer registers per request or raise --max-body"
            ),
        )
    }

    /// 503 at a capacity limit, with a hint when to retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            retry_after: Some(1),
            ..Self::new(503, message)
        }
    }

    /// Any other status with a message.
    pub fn with_status(status: u16, message: impl Into<String>) -> Self {
        Self::new(status, message)
    }

    /// The JSON body: `{"error": "..."}`.
    pub fn body(&self) -> String {
        format!(r#"{{"error":{}}}"#, json_string(&self.message))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

/// The one place where a core refusal becomes an HTTP status.
impl From<core::Error> for ApiError {
    fn from(error: core::Error) -> Self {
        match error {
            core::Error::TooManyRegisters { .. } | core::Error::TooManyPendingRequests { .. } => {
                ApiError::unavailable(error.to_string())
            }
        }
    }
}

/// `{"registers": {...}}` with each entry kept as raw text until it is checked.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    registers: Option<BTreeMap<String, &'a RawValue>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    value: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow)]
    ttl: Option<&'a RawValue>,
}

/// Decodes a `PUT /provider` body (PROTOCOL A3, A7). Entries without a positive `ttl`
/// get `default_ttl`.
pub fn decode_publish(
    body: &[u8],
    default_ttl: Duration,
    limits: &query::NameLimits,
) -> Result<Vec<(Name, Publish)>, ApiError> {
    decode_entries(body, limits, |name, entry| {
        let metadata = match entry.metadata {
            None => None,
            Some(raw) if !raw.get().starts_with('{') => {
                return Err(ApiError::bad_request(format!(
                    "registers.{}.metadata must be an object or null, got {}",
                    json_string(name),
                    excerpt(raw.get())
                )));
            }
            Some(raw) => Some(compact(raw.get(), name, "metadata")?).filter(|text| text != "{}"),
        };
        let ttl = match entry.ttl {
            None => None,
            Some(raw) => {
                let text: String = serde_json::from_str(raw.get()).map_err(|_| {
                    ApiError::bad_request(format!(
                        "registers.{}.ttl must be a duration string such as \"10s\", got {}",
                        json_string(name),
                        excerpt(raw.get())
                    ))
                })?;
                if text.is_empty() {
                    // An empty ttl is none: Go clients without `omitempty` send "".
                    None
                } else {
                    duration::parse(&text).map_err(|error| {
                        ApiError::bad_request(format!(
                            "registers.{}.ttl: {error}",
                            json_string(name)
                        ))
                    })?
                }
            }
        };
        Ok(Publish {
            value: value_of(entry, name)?,
            metadata: metadata.map(Value::new),
            ttl: ttl.unwrap_or(default_ttl),
        })
    })
}

/// Decodes a `PUT /consumer` body (PROTOCOL A3, A8).
pub fn decode_requests(
    body: &[u8],
    limits: &query::NameLimits,
) -> Result<Vec<(Name, Value)>, ApiError> {
    decode_entries(body, limits, |name, entry| value_of(entry, name))
}

fn decode_entries<T>(
    body: &[u8],
    limits: &query::NameLimits,
    mut convert: impl FnMut(&str, &Entry<'_>) -> Result<T, ApiError>,
) -> Result<Vec<(Name, T)>, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("request body is not valid UTF-8 JSON"))?;
    // serde would also read a JSON array into these structs; the protocol wants objects.
    if !text.trim_start().starts_with('{') {
        return Err(ApiError::bad_request(
            r#"request body must be a JSON object such as {"registers": {"name": {"value": 1}}}"#,
        ));
    }
    let parsed: Body<'_> = serde_json::from_str(text)
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
        decoded.push((Name::from(name), converted));
    }
    Ok(decoded)
}

fn value_of(entry: &Entry<'_>, name: &str) -> Result<Value, ApiError> {
    // A missing value means null: older clients omit it (PROTOCOL A3).
    Ok(Value::new(match entry.value {
        None => "null".to_string(),
        Some(raw) => compact(raw.get(), name, "value")?,
    }))
}

/// Removes the insignificant white space of valid JSON text and bounds its nesting.
fn compact(raw: &str, name: &str, field: &str) -> Result<String, ApiError> {
    compact_json(raw).map_err(|TooDeep| {
        ApiError::bad_request(format!(
            "registers.{}.{field} nests deeper than {MAX_NESTING} levels",
            json_string(name)
        ))
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
fn excerpt(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// A JSON string literal.
pub fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
}

/// The answer of `GET /consumer` (PROTOCOL A4, B7).
pub fn encode_snapshot(snapshot: &Snapshot, details: bool) -> String {
    let mut out = String::with_capacity(32 + snapshot.registers.len() * 48);
    out.push_str(r#"{"registers":{"#);
    for (position, view) in snapshot.registers.iter().enumerate() {
        if position > 0 {
            out.push(',');
        }
        encode_view(&mut out, view, details);
    }
    out.push_str("}}");
    out
}

fn encode_view(out: &mut String, view: &RegisterView, details: bool) {
    out.push_str(&json_string(&view.name));
    out.push_str(r#":{"value":"#);
    out.push_str(view.value.as_str());
    if let Some(metadata) = &view.metadata {
        out.push_str(r#","metadata":"#);
        out.push_str(metadata.as_str());
    }
    if details {
        out.push_str(&format!(
            r#","ttl":"{}","expires_in_ms":{},"index":{}"#,
            duration::format(view.ttl),
            view.expires_in.as_millis(),
            view.revision
        ));
    }
    out.push('}');
}

/// The answer of `GET /provider` (PROTOCOL A5).
pub fn encode_requests(requests: &[(Name, Value)]) -> String {
    let mut out = String::with_capacity(32 + requests.len() * 32);
    out.push_str(r#"{"registers":{"#);
    for (position, (name, value)) in requests.iter().enumerate() {
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

/// A register value as a metrics sample: numbers as they are, booleans as 1 and 0,
/// anything else has none.
pub fn numeric_value(value: &Value) -> Option<f64> {
    match value.as_str() {
        "true" => Some(1.0),
        "false" => Some(0.0),
        text if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => text.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
