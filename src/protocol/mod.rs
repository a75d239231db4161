//! The wire protocol (docs/protocol.md), one grammar per module, each module both
//! writing and reading its grammar so the server and the client cannot drift apart:
//!
//! | module | grammar | rules |
//! |---|---|---|
//! | [`query`] | query strings of the GETs and `DELETE /provider` | A2, B1, B7 |
//! | [`duration`] | Go durations (`wait`, `ttl`) | A6 |
//! | [`envelope`] | `{"registers": {NAME: ENTRY}}`, shared by every body and answer | A3 |
//! | [`publish`] | the body of `PUT /provider` | A7 |
//! | [`requests`] | the body of `PUT /consumer` and the answer of `GET /provider` | A5, A8 |
//! | [`snapshot`] | the answer of `GET /consumer`, with details | A4, B7 |
//! | [`error`] | error bodies and statuses | B3 |
//! | [`json`] | JSON text as stored: compaction, nesting bound, the client's `Json` | A3, A4 |
//! | `state_file` | the state directory's files (server only; docs/state-file.md) | issue 12 |
//!
//! This is the only module that knows JSON. Invariants: a body is validated whole
//! before anything of it is returned; values and metadata are stored as compact JSON
//! text exactly as the client wrote them (numbers and key order untouched), so the same
//! stored value always serialises the same way.
//!
//! Each grammar has a server half (`#[cfg(feature = "server")]`, so a client-only build
//! compiles none of the daemon) and a client half.
#![cfg_attr(
    not(feature = "client"),
    allow(
        dead_code,
        reason = "a build without the client (the daemon alone) leaves the client halves of the grammars unused"
    )
)]

pub mod duration;
pub(crate) mod envelope;
pub mod error;
pub mod json;
pub mod publish;
pub mod query;
pub mod requests;
pub mod snapshot;
#[cfg(feature = "server")]
pub mod state_file;

#[cfg(feature = "server")]
pub use self::error::ApiError;
