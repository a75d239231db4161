//! Errors on the wire (docs/protocol.md B3): [`ApiError`] — a status, a message that names the
//! field or parameter, and the headers that go with it — its JSON body
//! `{"error": "..."}` both ways, and the one place where a core refusal becomes an HTTP
//! status.

#[cfg(feature = "server")]
use std::fmt;

use serde::Deserialize;

#[cfg(feature = "server")]
use super::json::json_string;
#[cfg(feature = "server")]
use crate::core;

/// An error answer: status, message and the headers that go with it (docs/protocol.md B3).
#[cfg(feature = "server")]
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

#[cfg(feature = "server")]
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

#[cfg(feature = "server")]
impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

#[cfg(feature = "server")]
impl std::error::Error for ApiError {}

/// The one place where a core refusal becomes an HTTP status.
#[cfg(feature = "server")]
impl From<core::Error> for ApiError {
    fn from(error: core::Error) -> Self {
        match error {
            core::Error::TooManyRegisters { .. } | core::Error::TooManyPendingRequests { .. } => {
                ApiError::unavailable(error.to_string())
            }
        }
    }
}

/// The message of an error body `{"error": "..."}`, if the body is one (what a client
/// reads back from [`ApiError::body`]).
pub fn message_of(body: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    serde_json::from_str::<ErrorBody>(body)
        .ok()
        .map(|body| body.error)
}

#[cfg(all(test, feature = "server"))]
mod tests {
    use super::*;

    #[test]
    fn errors_encode_as_json_and_read_back() {
        let error = ApiError::bad_request("parameter \"wait\" is bad");
        assert_eq!(error.body(), r#"{"error":"parameter \"wait\" is bad"}"#);
        assert_eq!(
            message_of(&error.body()).as_deref(),
            Some(error.message.as_str())
        );
        assert_eq!(message_of("<html>"), None);
        let unavailable = ApiError::from(core::Error::TooManyRegisters { limit: 3 });
        assert_eq!(unavailable.status, 503);
        assert_eq!(unavailable.retry_after, Some(1));
    }
}
