//! Integration tests: the real `regd` binary on a free loopback port, spoken to over
//! HTTP. One module per area of docs/protocol.md and of the daemon.

mod support;

mod access;
#[cfg(feature = "tui")]
mod browse;
mod client;
mod daemon;
mod faults;
mod http_layer;
mod mcp;
#[cfg(feature = "mqtt")]
mod mqtt;
mod protocol_a;
mod protocol_b;
mod regctl;
mod soak;
mod state;
#[cfg(feature = "web")]
mod web;
