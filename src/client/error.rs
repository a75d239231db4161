//! The client's one error type. Invariant: every failure of the client is one of these
//! variants, and the variant says whose fault it was: the network (`Connect`), regd
//! (`Status`, `Protocol`), the caller's credentials (`Unauthorized`, `Forbidden`), or the
//! caller (`Input`, `Url`, `Closed`). No variant ever holds the access token.

use std::fmt;
use std::sync::Arc;

/// What went wrong talking to regd.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The registry URL is not usable.
    Url {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// regd could not be reached, or the connection failed or timed out.
    Connect {
        /// The base URL of the registry.
        url: String,
        /// A short description, such as `connection refused` or `timed out`.
        reason: String,
        /// The transport's own error.
        source: Arc<ureq::Error>,
    },
    /// regd answered with an error status; `message` is its `{"error": ...}` text.
    Status {
        /// The HTTP status code.
        status: u16,
        /// The server's explanation.
        message: String,
    },
    /// regd needs a token (401): none was sent, or the one sent is not valid.
    Unauthorized {
        /// Whether the request carried a token (so it was refused rather than missing).
        token_sent: bool,
        /// The server's explanation.
        message: String,
    },
    /// The token is valid but its role may not use this resource (403).
    Forbidden {
        /// The server's explanation, naming the role and the resource.
        message: String,
    },
    /// regd's answer did not have the protocol's shape.
    Protocol(String),
    /// The caller's input was refused before anything was sent.
    Input(String),
    /// The provider or consumer was already closed.
    Closed,
}

impl Error {
    /// Whether this is a failure to reach regd (as opposed to an answer from it).
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect { .. })
    }

    /// The HTTP status, when regd answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            Error::Unauthorized { .. } => Some(401),
            Error::Forbidden { .. } => Some(403),
            _ => None,
        }
    }

    /// Whether regd refused the request's credentials (401 or 403): retrying with the
    /// same token cannot help.
    pub fn is_access_denied(&self) -> bool {
        matches!(self, Error::Unauthorized { .. } | Error::Forbidden { .. })
    }

    pub(crate) fn from_transport(url: &str, error: ureq::Error) -> Error {
        let reason = match &error {
            ureq::Error::Io(io) => match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::NotConnected => "connection lost".to_string(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                    "timed out".to_string()
                }
                _ => io.to_string().to_lowercase(),
            },
            ureq::Error::Timeout(_) => "timed out".to_string(),
            ureq::Error::HostNotFound => "host not found".to_string(),
            ureq::Error::ConnectionFailed => "connection failed".to_string(),
            ureq::Error::BadUri(uri) => {
                return Error::Url {
                    url: url.to_string(),
                    reason: format!("invalid URI {uri:?}"),
                };
            }
            ureq::Error::Protocol(_) => {
                return Error::Protocol(format!("regd at {url} answered invalid HTTP: {error}"));
            }
            // Refused before anything is sent: the request itself cannot be HTTP. (The
            // registry URL and the length of a request's URL are checked before.)
            ureq::Error::Http(_) => {
                return Error::Input(format!("the request to {url} cannot be sent: {error}"));
            }
            other => other.to_string().to_lowercase(),
        };
        Error::Connect {
            url: url.to_string(),
            reason,
            source: Arc::new(error),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Url { url, reason } => write!(f, "invalid registry URL {url:?}: {reason}"),
            Error::Connect { url, reason, .. } => write!(f, "cannot reach regd at {url}: {reason}"),
            Error::Status { status, message } => write!(f, "regd answered {status}: {message}"),
            Error::Unauthorized {
                token_sent: false, ..
            } => f.write_str(
                "regd needs a token: set REGD_TOKEN (or pass one to Client::with_token)",
            ),
            Error::Unauthorized {
                token_sent: true,
                message,
            } => write!(f, "the token was refused: {message}"),
            Error::Forbidden { message } => {
                write!(f, "the token's role may not do this: {message}")
            }
            Error::Protocol(message) => f.write_str(message),
            Error::Input(message) => f.write_str(message),
            Error::Closed => f.write_str("the client was closed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } => Some(&**source),
            _ => None,
        }
    }
}
