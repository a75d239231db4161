//! regd: a register service for IoT gateways.
//!
//! A *register* is a named JSON value with metadata and a time-to-live. Providers
//! publish and refresh registers; consumers read them with HTTP long polling and ask
//! providers for changes. The wire protocol is described in the project's
//! `docs/protocol.md`.
//!
//! The library's API is [`client`], a blocking client for regd (feature `client`). It is
//! documented and meant to stay stable. A client-only dependency compiles nothing of the
//! daemon:
//!
//! ```toml
//! regd = { version = "0.1", default-features = false, features = ["client"] }
//! ```
//!
//! Everything else public here is hidden from the documentation: it exists for regd's
//! own binaries (`regd`, `regctl`, `regd-mqtt`), benchmarks and fuzz targets, and may
//! change in any release. Inside, layers point one way: `core` (registers, change
//! requests, expiry, waiters; no I/O) ← `protocol` (every wire grammar, both ways) ←
//! `server` (sockets and HTTP) and [`client`] (ureq) ← the binaries.

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
mod core;
#[doc(hidden)]
pub mod logger;
#[doc(hidden)]
pub mod notify;
mod protocol;
#[cfg(feature = "server")]
#[doc(hidden)]
pub mod server;

/// The entry points of the fuzz targets (`fuzz/`), which exercise internals directly.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::protocol::query::NameLimits;
    pub use crate::protocol::{duration, publish, query, requests};
    pub use crate::server::{HttpLimits, Service, ServiceConfig, serve_bytes};
}

/// An error and its causes on one line, `error: cause: cause`, the way the binaries
/// report a failure (once, in `main`).
#[doc(hidden)]
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}
