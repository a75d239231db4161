//! regd's one error type: why the daemon could not start or run, worded for the
//! operator, and so how it exits (2 for usage, 1 for everything else).

use std::fmt;

use regd::server::{self, access};

#[derive(Debug)]
pub enum Error {
    /// The command line or a `REGD_*` variable is wrong (exit 2).
    Usage(String),
    Server(server::Error),
    Signals(std::io::Error),
    Thread(std::io::Error),
    TokenFile {
        path: String,
        problem: TokenProblem,
    },
}

#[derive(Debug)]
pub enum TokenProblem {
    Unreadable(std::io::Error),
    WorldReadable(u32),
    Invalid(access::TokenFileError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(message) => write!(f, "{message}; see regd --help"),
            Error::Server(error) => write!(f, "{error}"),
            Error::Signals(_) => write!(f, "cannot install signal handlers"),
            Error::Thread(_) => write!(f, "cannot start a thread"),
            Error::TokenFile { path, problem } => match problem {
                TokenProblem::Unreadable(_) => write!(f, "cannot read token file {path}"),
                TokenProblem::WorldReadable(mode) => write!(
                    f,
                    "token file {path} is readable by every user (mode {mode:o}); run `chmod 600 {path}` (or 640 with a group regd is in) and start again"
                ),
                TokenProblem::Invalid(_) => write!(f, "token file {path} is not valid"),
            },
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Usage(_) => None,
            Error::Server(error) => error.source(),
            Error::Signals(error) | Error::Thread(error) => Some(error),
            Error::TokenFile { problem, .. } => match problem {
                TokenProblem::Unreadable(error) => Some(error),
                TokenProblem::WorldReadable(_) => None,
                TokenProblem::Invalid(error) => Some(error),
            },
        }
    }
}
