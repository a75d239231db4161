//! The built-in dashboard as served by the real daemon (docs/protocol.md B6): content types,
//! the security headers, ETag revalidation, methods, and switching it off. What the
//! page does in a browser is tested under tests/browser/.

use crate::support::*;

const ASSETS: &[(&str, &str)] = &[
    ("/", "text/html; charset=utf-8"),
    ("/ui/app.js", "text/javascript; charset=utf-8"),
    ("/ui/app.css", "text/css; charset=utf-8"),
    ("/ui/icon.svg", "image/svg+xml"),
];

#[track_caller]
fn assert_security_headers(reply: &Reply) {
    let policy = reply
        .header("Content-Security-Policy")
        .expect("Content-Security-Policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{directive} missing: {policy}");
    }
    for loose in ["unsafe-inline", "unsafe-eval", "*", "http:", "data:"] {
        assert!(!policy.contains(loose), "{loose} in {policy}");
    }
    assert_eq!(reply.header("X-Content-Type-Options"), Some("nosniff"));
    assert_eq!(reply.header("Cache-Control"), Some("no-cache"));
}

#[test]
fn serves_the_page_and_its_assets_with_types_and_a_strict_policy() {
    let daemon = Daemon::start(&[]);
    for (path, content_type) in ASSETS {
        let reply = daemon.get(path);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("Content-Type"), Some(*content_type), "{path}");
        assert!(!reply.body.is_empty(), "{path}");
        assert_security_headers(&reply);
        let etag = reply.header("ETag").expect("ETag");
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    }
    let page = daemon.get("/").body;
    assert!(page.contains("/ui/app.js") && page.contains("/ui/app.css"));
}

#[test]
fn etag_revalidation_answers_304_without_a_body() {
    let daemon = Daemon::start(&[]);
    let mut http = daemon.connect();
    let first = http.request("GET", "/ui/app.js", "");
    let etag = first.header("ETag").unwrap().to_string();
    let raw = format!("GET /ui/app.js HTTP/1.1\r\nHost: regd\r\nIf-None-Match: {etag}\r\n\r\n");
    http.send(raw.as_bytes());
    let again = http.read_reply();
    assert_eq!(again.status, 304);
    assert_eq!(again.body, "");
    assert_eq!(again.header("Content-Length"), None);
    assert_eq!(again.header("ETag"), Some(etag.as_str()));
    assert_security_headers(&again);
    // The connection stays usable: no stray body bytes were written after the 304.
    http.send(b"GET /ui/app.js HTTP/1.1\r\nHost: regd\r\nIf-None-Match: \"other\"\r\n\r\n");
    let changed = http.read_reply();
    assert_eq!(
        (changed.status, changed.body.len()),
        (200, first.body.len())
    );
    // The same bytes give the same tag in another run of the same binary.
    let other = Daemon::start(&[]);
    assert_eq!(other.get("/ui/app.js").header("ETag"), Some(etag.as_str()));
}

#[test]
fn head_has_the_headers_and_no_body() {
    let daemon = Daemon::start(&[]);
    let mut http = daemon.connect();
    let full = http.request("GET", "/", "");
    let head = http.request("HEAD", "/", "");
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "");
    assert_eq!(
        head.header("Content-Length"),
        Some(full.body.len().to_string().as_str())
    );
    assert_eq!(head.header("ETag"), full.header("ETag"));
    // Keep-alive survives the HEAD.
    http.request("GET", "/healthz", "")
        .assert(200, r#"{"status":"ok"}"#);
}

#[test]
fn other_methods_are_405_with_allow_get() {
    let daemon = Daemon::start(&[]);
    for (method, path) in [
        ("POST", "/"),
        ("PUT", "/ui/app.js"),
        ("DELETE", "/ui/app.css"),
    ] {
        let reply = daemon.request(method, path, "");
        reply.assert_error(405, method);
        assert_eq!(reply.header("Allow"), Some("GET"), "{method} {path}");
    }
}

#[test]
fn unknown_assets_are_json_404s() {
    let daemon = Daemon::start(&[]);
    for path in [
        "/ui/",
        "/ui/nope.js",
        "/ui/../Cargo.toml",
        "/index.html",
        "/ui",
    ] {
        daemon.get(path).assert_error(404, path);
    }
}

#[test]
fn switched_off_by_flag_or_environment_the_paths_are_404() {
    let by_flag = Daemon::start(&["--no-web"]);
    let by_value = Daemon::start(&["--web", "false"]);
    let by_env = Daemon::start_with_env(&[], &[("REGD_WEB", "false")]);
    for daemon in [&by_flag, &by_value, &by_env] {
        for (path, _) in ASSETS {
            daemon.get(path).assert_error(404, path);
        }
        // The API is untouched.
        daemon.get("/healthz").assert(200, r#"{"status":"ok"}"#);
    }
    let flag_wins = Daemon::start_with_env(&["--web", "true"], &[("REGD_WEB", "false")]);
    assert_eq!(flag_wins.get("/").status, 200);
}

#[test]
fn a_bad_web_value_is_a_usage_error() {
    let output = program(env!("CARGO_BIN_EXE_regd"))
        .args(["--web", "maybe"])
        .output()
        .expect("run regd");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--web"));
}

#[test]
fn requests_for_the_page_are_counted_as_web() {
    let daemon = Daemon::start(&[]);
    daemon.get("/");
    let metrics = daemon.get("/metrics").body;
    assert!(
        metrics.contains(r#"regd_requests_total{resource="web",method="GET",status="200"} 1"#),
        "{metrics}"
    );
}

#[test]
fn help_lists_the_web_switch() {
    let output = program(env!("CARGO_BIN_EXE_regd"))
        .arg("--help")
        .output()
        .expect("run regd");
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(
        help.contains("--web") && help.contains("--no-web"),
        "{help}"
    );
    assert!(help.contains("[env REGD_WEB] [default true]"), "{help}");
}
