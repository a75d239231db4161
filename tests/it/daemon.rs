//! The daemon as a program: flags, environment, announcement, logging, exit codes.

use std::process::Command;

use crate::support::*;

fn regd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_regd"))
        .args(args)
        .env_remove("JOURNAL_STREAM")
        .output()
        .expect("run regd")
}

#[test]
fn announces_its_address_and_serves() {
    let daemon = Daemon::start(&[]);
    assert!(daemon.address.ip().is_loopback());
    assert_ne!(daemon.address.port(), 0);
    daemon.get("/healthz").assert(200, r#"{"status":"ok"}"#);
}

#[test]
fn listens_on_ipv6_loopback_when_asked() {
    // Skipped where the machine has no IPv6 loopback.
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    }
    let daemon = Daemon::start(&["--addr", "[::1]:0"]);
    assert!(daemon.address.is_ipv6());
    daemon.get("/healthz").assert(200, r#"{"status":"ok"}"#);
}

#[test]
fn help_lists_every_setting_with_its_variable_and_default() {
    let output = regd(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for (flag, variable, default) in [
        ("--addr", "REGD_ADDR", ":8080"),
        ("--read-timeout", "REGD_READ_TIMEOUT", "30s"),
        ("--write-timeout", "REGD_WRITE_TIMEOUT", "10s"),
        ("--max-connections", "REGD_MAX_CONNECTIONS", "4096"),
        ("--max-body", "REGD_MAX_BODY", "1048576"),
        ("--max-wait", "REGD_MAX_WAIT", "10m"),
        ("--default-ttl", "REGD_DEFAULT_TTL", "10s"),
        ("--max-polls", "REGD_MAX_POLLS", "4000"),
        ("--max-registers", "REGD_MAX_REGISTERS", "10000"),
        ("--max-pending", "REGD_MAX_PENDING", "10000"),
        ("--max-head", "REGD_MAX_HEAD", "16384"),
        ("--max-uri", "REGD_MAX_URI", "8192"),
        ("--max-name", "REGD_MAX_NAME", "1024"),
        ("--max-names", "REGD_MAX_NAMES", "1000"),
        ("--log-level", "REGD_LOG_LEVEL", "info"),
        ("--token-file", "REGD_TOKEN_FILE", ""),
        ("--trust-loopback", "REGD_TRUST_LOOPBACK", "false"),
        ("--open-metrics", "REGD_OPEN_METRICS", "false"),
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
        assert!(
            help.contains(&format!("[env {variable}] [default {default}]")),
            "{variable} / {default} missing from --help"
        );
    }
}

#[test]
fn version_prints_the_package_version() {
    let output = regd(&["--version"]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        format!("regd {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_2_naming_the_problem() {
    for (args, mentions) in [
        (&["--bogus"][..], "--bogus"),
        (&["--max-body", "lots"], "--max-body"),
        (&["--max-connections", "0"], "--max-connections"),
        (&["--read-timeout", "5"], "--read-timeout"),
        (&["--log-level", "chatty"], "--log-level"),
        (&["--addr"], "--addr"),
    ] {
        let output = regd(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.starts_with("regd: "), "{stderr}");
        assert!(stderr.contains(mentions), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn a_port_in_use_is_a_clear_failure() {
    let daemon = Daemon::start(&[]);
    let address = daemon.address.to_string();
    let output = regd(&["--addr", &address]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("in use"), "{stderr}");
    let output = regd(&["--addr", "not-an-address"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8(output.stderr)
            .unwrap()
            .contains("HOST:PORT")
    );
}

#[test]
fn environment_variables_configure_it_and_flags_win() {
    let daemon =
        Daemon::start_with_env(&[], &[("REGD_MAX_BODY", "50"), ("REGD_DEFAULT_TTL", "42s")]);
    daemon
        .put("/provider", &"x".repeat(51))
        .assert_error(413, "larger than 50 bytes");
    daemon
        .put("/provider", &registers(&[("a", "1")]))
        .assert(204, "");
    assert_eq!(
        daemon.get("/consumer?details=1").json()["registers"]["a"]["ttl"],
        "42s"
    );
    let flagged = Daemon::start_with_env(&["--max-body", "60"], &[("REGD_MAX_BODY", "50")]);
    flagged
        .put("/provider", &"x".repeat(61))
        .assert_error(413, "larger than 60 bytes");
}

#[test]
fn logs_start_expiry_and_requests_at_their_levels() {
    let daemon = Daemon::start(&[]);
    daemon.wait_for_log("listening on");
    let start_line = daemon.stderr();
    assert!(start_line.contains(env!("CARGO_PKG_VERSION")));
    assert!(start_line.contains("max connections 4096"));
    daemon
        .put(
            "/provider",
            r#"{"registers":{"gone":{"value":1,"ttl":"10ms"}}}"#,
        )
        .assert(204, "");
    daemon.wait_for_log("INFO  register \"gone\" expired");
    assert!(!daemon.stderr().contains("DEBUG"), "requests are debug");

    let verbose = Daemon::start(&["--log-level", "debug"]);
    verbose
        .get("/consumer?name=x")
        .assert(200, r#"{"registers":{}}"#);
    verbose.wait_for_log("GET /consumer?name=x 200");
}

#[test]
fn under_systemd_lines_carry_priorities_and_no_timestamps() {
    let daemon = Daemon::start_with_env(&[], &[("JOURNAL_STREAM", "8:12345")]);
    daemon.wait_for_log("<6>regd ");
    for line in daemon.stderr().lines() {
        assert!(line.starts_with('<'), "{line}");
    }
    daemon.get("/nope");
}

#[test]
fn threads_are_named() {
    let daemon = Daemon::start(&[]);
    let mut connection = daemon.connect();
    connection
        .request("GET", "/healthz", "")
        .assert(200, r#"{"status":"ok"}"#);
    let task_dir = format!("/proc/{}/task", daemon.pid());
    if std::fs::read_dir(&task_dir).is_err() {
        eprintln!("no /proc here; skipped");
        return;
    }
    let names = || -> Vec<String> {
        std::fs::read_dir(&task_dir)
            .map(|tasks| {
                tasks
                    .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                    .map(|name| name.trim().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    // A new thread names itself once it runs; wait for that.
    wait_until("every thread to be named", || {
        let names = names();
        ["regd-reaper", "regd-signals", "regd-refuser", "regd-http-"]
            .iter()
            .all(|expected| names.iter().any(|name| name.starts_with(expected)))
    });
}
