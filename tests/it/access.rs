//! Access control (docs/protocol.md B5) against the real daemon: tokens, roles, Basic auth,
//! trusted loopback, the token file's checks.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::support::*;

fn basic(password: &str) -> String {
    // base64 of "device:" + password, computed with the system's base64 tool.
    let output = Command::new("sh")
        .args([
            "-c",
            &format!("printf 'device:%s' '{password}' | base64 -w0"),
        ])
        .output()
        .expect("base64");
    format!("Basic {}", String::from_utf8(output.stdout).unwrap())
}

#[test]
fn tokens_and_roles_guard_the_resources() {
    let file = TokenFile::new(0o600);
    let daemon = Daemon::start(&["--token-file", file.path()]);
    let body = registers(&[("a", "1")]);
    let bearer = |token: &str| format!("Bearer {token}");

    let missing = daemon.with_auth("GET", "/consumer", "", "");
    missing.assert_error(401, "Authorization: Bearer");
    assert_eq!(
        missing.header("WWW-Authenticate"),
        Some(r#"Bearer realm="regd""#)
    );
    daemon
        .with_auth("GET", "/consumer", "", &bearer("wrong-0123456789abcdef"))
        .assert_error(401, "not valid");
    daemon
        .with_auth("PUT", "/provider", &body, &bearer(CONSUMER))
        .assert_error(403, "consumer token (dashboard) may not use /provider");
    daemon
        .with_auth("GET", "/consumer", "", &bearer(PROVIDER))
        .assert_error(403, "provider token (sensors) may not use /consumer");

    daemon
        .with_auth("PUT", "/provider", &body, &bearer(PROVIDER))
        .assert(204, "");
    daemon
        .with_auth("GET", "/consumer", "", &bearer(CONSUMER))
        .assert(200, r#"{"registers":{"a":{"value":1}}}"#);
    daemon
        .with_auth("PUT", "/consumer", &body, &bearer(ADMIN))
        .assert(202, "");
    daemon
        .with_auth("GET", "/provider", "", &bearer(ADMIN))
        .assert(200, r#"{"registers":{"a":{"value":1}}}"#);
    daemon
        .with_auth("DELETE", "/provider?name=a", "", &bearer(CONSUMER))
        .assert_error(403, "may not use /provider");
    daemon
        .with_auth("DELETE", "/provider?name=a", "", &bearer(PROVIDER))
        .assert(204, "");

    // Clients that can only put credentials in the URL send HTTP Basic.
    daemon
        .with_auth("GET", "/consumer", "", &basic(CONSUMER))
        .assert(200, r#"{"registers":{}}"#);
    daemon
        .with_auth("GET", "/consumer", "", &basic("nope-0123456789abcdef"))
        .assert_error(401, "not valid");

    // /healthz stays open; /metrics needs a token unless --open-metrics.
    daemon.get("/healthz").assert(200, r#"{"status":"ok"}"#);
    daemon.get("/metrics").assert_error(401, "token");
    assert_eq!(
        daemon
            .with_auth("GET", "/metrics", "", &bearer(CONSUMER))
            .status,
        200
    );

    // The token never reaches the log.
    assert!(!daemon.stderr().contains(CONSUMER));
    assert!(daemon.stderr().contains("access control on: 3 tokens"));
}

#[test]
fn loopback_can_be_trusted_and_metrics_opened() {
    let file = TokenFile::new(0o640);
    let daemon = Daemon::start(&[
        "--token-file",
        file.path(),
        "--trust-loopback",
        "--open-metrics",
    ]);
    daemon
        .put("/provider", &registers(&[("a", "1")]))
        .assert(204, "");
    daemon
        .get("/consumer")
        .assert(200, r#"{"registers":{"a":{"value":1}}}"#);
    assert_eq!(daemon.get("/metrics").status, 200);
    let by_env = Daemon::start_with_env(
        &[],
        &[
            ("REGD_TOKEN_FILE", file.path()),
            ("REGD_OPEN_METRICS", "true"),
        ],
    );
    assert_eq!(by_env.get("/metrics").status, 200);
    by_env.get("/consumer").assert_error(401, "token");
}

/// Runs regd with a token file it must refuse; returns its stderr.
fn refused_to_start(token_file: &str) -> String {
    let output = program(env!("CARGO_BIN_EXE_regd"))
        .args(["--addr", "127.0.0.1:0", "--token-file", token_file])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "never announced");
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn a_world_readable_or_invalid_token_file_refuses_to_start() {
    let file = TokenFile::new(0o644);
    let stderr = refused_to_start(file.path());
    assert!(stderr.contains("readable by every user"), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");

    std::fs::write(&file.path, "short admin\n").unwrap();
    std::fs::set_permissions(&file.path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let stderr = refused_to_start(file.path());
    assert!(stderr.contains("line 1: token too short"), "{stderr}");

    let stderr = refused_to_start("/nonexistent/tokens");
    assert!(stderr.contains("cannot read token file"), "{stderr}");
}

#[cfg(feature = "web")]
#[test]
fn the_dashboard_page_is_open_but_its_data_is_not() {
    let file = TokenFile::new(0o600);
    let daemon = Daemon::start(&["--token-file", file.path()]);
    assert_eq!(daemon.get("/").status, 200);
    assert_eq!(daemon.get("/ui/app.js").status, 200);
    daemon.get("/consumer").assert_error(401, "token");
}
