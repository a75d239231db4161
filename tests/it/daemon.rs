//! The daemon as a program: flags, environment, announcement, logging, signals.

use crate::support::*;

#[test]
fn announces_its_address_and_serves() {
    let daemon = Daemon::start(&[]);
    assert!(daemon.address.ip().is_loopback());
    assert_ne!(daemon.address.port(), 0);
    daemon.get("/healthz").assert(200, r#"{"status":"ok"}"#);
}
