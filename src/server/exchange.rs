//! What passes between the connection layer and the service: a [`Request`] as it was
//! read, a [`Response`] ready to be written, and the [`Peer`] a long poll watches. No
//! I/O happens here; the connection layer (`http`) fills requests and writes responses,
//! the service (`service`) turns one into the other, so handlers are tested in memory.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::core::{Name, Value};
use crate::protocol::ApiError;

use super::hangups::{Nudge, Watch};

/// One request, as the connection layer read it.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// The method, as sent.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string, still URL-encoded.
    pub query: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Whether the client asked to close the connection after this request.
    pub wants_close: bool,
    /// Whether the request was HTTP/1.0.
    pub http_1_0: bool,
    /// The TCP peer, when there is one.
    pub peer_address: Option<SocketAddr>,
}

impl Request {
    /// A request without headers or body, for tests and tools.
    pub fn new(method: &str, target: &str) -> Self {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Request {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            ..Request::default()
        }
    }

    /// The value of a header (names are stored in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The same request with a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// The same request with a body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// An answer, ready for the connection layer to write.
#[derive(Clone, Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// The `Content-Type` of the body.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Close the connection after writing.
    pub close: bool,
    /// Change requests this answer delivers; if it cannot be written they are restored.
    pub undelivered: Vec<(Name, Value)>,
}

impl Response {
    pub(crate) fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.into(),
            close: false,
            undelivered: Vec::new(),
        }
    }

    /// The JSON answer for an error (docs/protocol.md B3).
    pub fn error(error: &ApiError) -> Self {
        let mut response = Response::new(error.status, error.body());
        if let Some(allow) = error.allow {
            response.headers.push(("Allow", allow.to_string()));
        }
        if let Some(seconds) = error.retry_after {
            response.headers.push(("Retry-After", seconds.to_string()));
        }
        if error.www_authenticate {
            response
                .headers
                .push(("WWW-Authenticate", r#"Bearer realm="regd""#.to_string()));
        }
        response
    }

    /// The same response with the `X-Reg-Index` header (docs/protocol.md B1).
    pub(crate) fn with_index(mut self, revision: u64) -> Self {
        self.headers.push(("X-Reg-Index", revision.to_string()));
        self
    }

    /// The body as text, for tests and logs.
    pub fn body_text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("<binary>")
    }

    /// The value of a header this response carries.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// The client side of a connection, as a long poll needs to see it.
pub trait Peer {
    /// Whether the client is still connected (docs/protocol.md A5: a poller that went away must
    /// not consume change requests).
    fn is_connected(&self) -> bool;

    /// Asks to be nudged when the client's socket shows activity (a hang-up, or more
    /// bytes), for as long as the returned guard lives. `None` when it cannot be
    /// watched; the poll then ends at its deadline.
    fn watch_hangup(&self, _nudge: Arc<dyn Nudge>) -> Option<Watch<'_>> {
        None
    }
}

/// A peer that is always there, for in-memory requests.
pub struct AlwaysConnected;

impl Peer for AlwaysConnected {
    fn is_connected(&self) -> bool {
        true
    }
}
