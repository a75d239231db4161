//! regd: a register service for IoT gateways.
//!
//! A *register* is a named JSON value with metadata and a time-to-live. Providers
//! publish and refresh registers; consumers read them with HTTP long polling and ask
//! providers for changes. The wire contract is PROTOCOL.md.
//!
//! Layers point one way: [`core`] (registers, change requests, expiry, waiters; no I/O)
//! ← [`protocol`] (JSON shapes, durations, errors as statuses) ← [`server`] (sockets and
//! HTTP) and [`client`] (ureq) ← the `regd` and `regctl` binaries.

pub mod client;
pub mod core;
pub mod logger;
pub mod notify;
pub mod protocol;
pub mod server;

/// An error and its causes on one line, `error: cause: cause`, the way both binaries
/// report a failure (once, in `main`).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}
