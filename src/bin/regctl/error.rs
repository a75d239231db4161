//! regctl's one error type: what went wrong, worded for the user, and so how the
//! program exits (2 for usage, 0 for a closed stdout, 1 for everything else).

use std::fmt;

use regd::client;

/// What went wrong, and so how the program exits.
#[derive(Debug)]
pub enum Error {
    /// The command line is wrong (exit 2).
    Usage(String),
    /// A register asked for does not exist (exit 1).
    NotFound(String),
    /// Talking to regd failed (exit 1).
    Client(client::Error),
    /// Anything else that failed (exit 1).
    Failed(String),
    /// stdout was closed by the reader: stop quietly (exit 0).
    ClosedPipe,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(message) | Error::NotFound(message) | Error::Failed(message) => {
                f.write_str(message)
            }
            Error::Client(error @ client::Error::Connect { .. }) => write!(
                f,
                "{error} — is it running? set REGISTRY or --registry to its address"
            ),
            Error::Client(client::Error::Unauthorized {
                token_sent: false, ..
            }) => f.write_str("regd needs a token: set REGD_TOKEN or --token-file"),
            Error::Client(client::Error::Unauthorized {
                token_sent: true,
                message,
            }) => write!(
                f,
                "the token was refused ({message}); check REGD_TOKEN or --token-file"
            ),
            Error::Client(client::Error::Forbidden { message }) => write!(
                f,
                "the token's role may not do this: {message}; use a consumer token for get, set, list and watch, a provider token for provide and delete, or an admin token"
            ),
            Error::Client(error) => write!(f, "{error}"),
            Error::ClosedPipe => f.write_str("stdout was closed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The client's message already names its cause in words ("connection
        // refused"); its transport error would only repeat that, so the chain printed
        // by `main` stops here.
        None
    }
}

impl From<client::Error> for Error {
    fn from(error: client::Error) -> Self {
        Error::Client(error)
    }
}
