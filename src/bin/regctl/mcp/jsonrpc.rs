//! JSON-RPC 2.0 as MCP uses it over stdio: reading one incoming message (a request, a
//! notification, or an answer we never asked for) and writing answers, errors and
//! notifications as one line of JSON text each. Invariants: an id is echoed exactly as
//! the client's JSON meant it (a string or an integer, never null); every message that
//! is not a valid request or notification becomes an error answer with the code
//! JSON-RPC defines, never a panic; `params` stay raw JSON text, so register values
//! inside them keep their numbers and key order until a tool reads them.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::output;

/// The text is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON, but not a JSON-RPC request or notification.
pub const INVALID_REQUEST: i64 = -32600;
/// A method this server does not have.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// A method's params are missing a member or have one of the wrong kind.
pub const INVALID_PARAMS: i64 = -32602;
/// The server failed (regd could not be reached, for a resource read).
pub const INTERNAL_ERROR: i64 = -32603;
/// MCP 2025-06-18 and 2025-11-25: `resources/read` of a resource that does not exist.
pub const RESOURCE_NOT_FOUND: i64 = -32002;

/// A request id as canonical JSON text (a string or an integer), so that the id of a
/// cancellation compares equal to the id of the request it cancels.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(String);

impl Id {
    /// The `null` id of an error answer to a message whose id could not be read.
    pub fn null() -> Id {
        Id("null".to_string())
    }

    /// Reads an id: a JSON string or integer.
    pub fn parse(raw: &RawValue) -> Option<Id> {
        let text = raw.get();
        if let Ok(text) = serde_json::from_str::<String>(text) {
            return Some(Id(output::string(&text)));
        }
        match serde_json::from_str::<i64>(text) {
            Ok(number) => Some(Id(number.to_string())),
            Err(_) => serde_json::from_str::<u64>(text)
                .ok()
                .map(|number| Id(number.to_string())),
        }
    }

    /// The id as JSON text.
    pub fn as_json(&self) -> &str {
        &self.0
    }
}

/// An error answer's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// One of the codes above.
    pub code: i64,
    /// What was wrong, naming the member or method.
    pub message: String,
    /// JSON text with more detail, such as `{"uri": "..."}`.
    pub data: Option<String>,
}

impl Failure {
    pub fn new(code: i64, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn invalid_params(message: impl Into<String>) -> Failure {
        Failure::new(INVALID_PARAMS, message)
    }
}

/// One message from the client.
#[derive(Debug)]
pub enum Incoming {
    /// A request: it gets exactly one answer (unless it is cancelled).
    Request {
        id: Id,
        method: String,
        params: Option<Box<RawValue>>,
    },
    /// A notification: it gets no answer.
    Notification {
        method: String,
        params: Option<Box<RawValue>>,
    },
    /// An answer to a request of the server's. This server sends none, so it is ignored.
    Answer,
    /// Not a valid message: answered with this error.
    Invalid { id: Id, failure: Failure },
}

/// Reads one message (one line, without its newline).
pub fn parse(line: &[u8]) -> Incoming {
    let invalid = |id: Id, message: String| Incoming::Invalid {
        id,
        failure: Failure::new(INVALID_REQUEST, message),
    };
    let members: BTreeMap<String, Box<RawValue>> = match serde_json::from_slice(line) {
        Ok(members) => members,
        Err(error) => {
            // Valid JSON that is not an object is an invalid request; anything else
            // is a parse error.
            return match serde_json::from_slice::<IgnoredAny>(line) {
                Ok(_) if line.trim_ascii_start().starts_with(b"[") => invalid(
                    Id::null(),
                    "batches are not part of MCP since 2025-06-18; send one message per line"
                        .to_string(),
                ),
                Ok(_) => invalid(
                    Id::null(),
                    "a message must be a JSON object with \"jsonrpc\": \"2.0\"".to_string(),
                ),
                Err(_) => Incoming::Invalid {
                    id: Id::null(),
                    failure: Failure::new(PARSE_ERROR, format!("the message is not JSON: {error}")),
                },
            };
        }
    };
    let id = match members.get("id") {
        None => None,
        Some(raw) => match Id::parse(raw) {
            Some(id) => Some(id),
            None => {
                return invalid(
                    Id::null(),
                    format!("id must be a string or an integer, got {}", raw.get()),
                );
            }
        },
    };
    let answer_id = id.clone().unwrap_or_else(Id::null);
    if members.get("jsonrpc").map(|raw| raw.get()) != Some("\"2.0\"") {
        return invalid(
            answer_id,
            "jsonrpc must be \"2.0\" (this server speaks JSON-RPC 2.0)".to_string(),
        );
    }
    let method = match members.get("method") {
        None if id.is_some()
            && (members.contains_key("result") || members.contains_key("error")) =>
        {
            return Incoming::Answer;
        }
        None => {
            return invalid(
                answer_id,
                "the message has no method: a request needs \"method\" and \"id\", a notification \"method\"".to_string(),
            );
        }
        Some(raw) => match serde_json::from_str::<String>(raw.get()) {
            Ok(method) => method,
            Err(_) => {
                return invalid(
                    answer_id,
                    format!("method must be a string, got {}", raw.get()),
                );
            }
        },
    };
    let params = members
        .get("params")
        .filter(|raw| raw.get() != "null")
        .cloned();
    match id {
        Some(id) => Incoming::Request { id, method, params },
        None => Incoming::Notification { method, params },
    }
}

/// A success answer: `result` is JSON text.
pub fn result(id: &Id, result: &str) -> String {
    output::object([
        ("jsonrpc", "\"2.0\""),
        ("id", id.as_json()),
        ("result", result),
    ])
}

/// An error answer.
pub fn error(id: &Id, failure: &Failure) -> String {
    let code = failure.code.to_string();
    let message = output::string(&failure.message);
    let mut members = vec![("code", code.as_str()), ("message", message.as_str())];
    if let Some(data) = &failure.data {
        members.push(("data", data.as_str()));
    }
    let error = output::object(members);
    output::object([
        ("jsonrpc", "\"2.0\""),
        ("id", id.as_json()),
        ("error", error.as_str()),
    ])
}

/// A notification from the server; `params` is JSON text.
pub fn notification(method: &str, params: Option<&str>) -> String {
    let method = output::string(method);
    let mut members = vec![("jsonrpc", "\"2.0\""), ("method", method.as_str())];
    if let Some(params) = params {
        members.push(("params", params));
    }
    output::object(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(line: &str, expected: &str) {
        let shown = match parse(line.as_bytes()) {
            Incoming::Request { id, method, params } => format!(
                "request {} {method} {}",
                id.as_json(),
                params.map_or("-".to_string(), |raw| raw.get().to_string())
            ),
            Incoming::Notification { method, params } => format!(
                "notification {method} {}",
                params.map_or("-".to_string(), |raw| raw.get().to_string())
            ),
            Incoming::Answer => "answer".to_string(),
            Incoming::Invalid { id, failure } => {
                format!(
                    "invalid {} {} {}",
                    id.as_json(),
                    failure.code,
                    failure.message
                )
            }
        };
        assert!(
            shown.starts_with(expected),
            "{line}: {shown:?} should start with {expected:?}"
        );
    }

    #[test]
    fn messages() {
        check(
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            "request 1 ping -",
        );
        check(
            r#"{"jsonrpc":"2.0","id":"a\u0062","method":"x","params":{"v":1.50}}"#,
            r#"request "ab" x {"v":1.50}"#,
        );
        check(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            "notification notifications/initialized -",
        );
        check(r#"{"jsonrpc":"2.0","id":7,"result":{}}"#, "answer");
        check("{not json", "invalid null -32700 the message is not JSON");
        check("[1,2]", "invalid null -32600 batches");
        check("42", "invalid null -32600 a message must be a JSON object");
        check(
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            "invalid null -32600 id must be a string or an integer",
        );
        check(
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            "invalid null -32600 id must be",
        );
        check(
            r#"{"jsonrpc":"1.0","id":3,"method":"ping"}"#,
            "invalid 3 -32600 jsonrpc must be \"2.0\"",
        );
        check(
            r#"{"jsonrpc":"2.0","id":3,"method":7}"#,
            "invalid 3 -32600 method must be a string",
        );
        check(
            r#"{"jsonrpc":"2.0","id":3}"#,
            "invalid 3 -32600 the message has no method",
        );
        check("\u{feff}", "invalid null -32700");
    }

    #[test]
    fn answers() {
        let id = Id::parse(&RawValue::from_string("\"x\"".to_string()).unwrap()).unwrap();
        assert_eq!(
            result(&id, "{}"),
            r#"{"jsonrpc":"2.0","id":"x","result":{}}"#
        );
        let mut failure = Failure::new(RESOURCE_NOT_FOUND, "no \"a\"");
        failure.data = Some(r#"{"uri":"reg://a"}"#.to_string());
        assert_eq!(
            error(&Id::null(), &failure),
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32002,"message":"no \"a\"","data":{"uri":"reg://a"}}}"#
        );
        assert_eq!(
            notification("notifications/resources/list_changed", None),
            r#"{"jsonrpc":"2.0","method":"notifications/resources/list_changed"}"#
        );
    }
}
