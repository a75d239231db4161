//! The `regctl` binary against the real daemon: every command, its output formats, exit
//! codes and messages, signals, stdin, a closed pipe, a thousand changes, a restart.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

pub(crate) fn command(registry: &str, args: &[&str]) -> Command {
    let mut command = program(env!("CARGO_BIN_EXE_regctl"));
    command.args(["--registry", registry]).args(args);
    command
}

/// Runs regctl to the end with no stdin.
pub(crate) fn run(daemon: &Daemon, args: &[&str]) -> Output {
    command(&daemon.url(), args)
        .stdin(Stdio::null())
        .output()
        .expect("run regctl")
}

#[track_caller]
fn succeeds(daemon: &Daemon, args: &[&str]) -> String {
    let output = run(daemon, args);
    assert!(
        output.status.success(),
        "regctl {args:?}: {:?}, stderr {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

#[track_caller]
fn fails(output: &Output, code: i32, mentions: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr {stderr}");
    for text in mentions {
        assert!(
            stderr.contains(text),
            "stderr {stderr:?} should mention {text:?}"
        );
    }
}

/// The register values regd holds, as JSON text.
fn values(daemon: &Daemon) -> BTreeMap<String, String> {
    let answer = daemon.get("/consumer").json();
    answer["registers"]
        .as_object()
        .expect("registers")
        .iter()
        .map(|(name, entry)| (name.clone(), entry["value"].to_string()))
        .collect()
}

pub(crate) fn value(daemon: &Daemon, name: &str) -> Option<String> {
    values(daemon).remove(name)
}

/// A regctl that keeps running: stdout lines arrive on a channel; killed on drop.
pub(crate) struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    pub(crate) lines: mpsc::Receiver<String>,
    stdout_thread: Option<thread::JoinHandle<()>>,
    stderr: Arc<Mutex<String>>,
    stderr_thread: Option<thread::JoinHandle<()>>,
}

impl Running {
    pub(crate) fn start(registry: &str, args: &[&str]) -> Running {
        Self::spawn(command(registry, args))
    }

    pub(crate) fn spawn(mut command: Command) -> Running {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start regctl");
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stdout_thread = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_thread = {
            let stderr = stderr.clone();
            let pipe = child.stderr.take().unwrap();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { return };
                    let mut text = stderr.lock().unwrap();
                    text.push_str(&line);
                    text.push('\n');
                }
            })
        };
        Running {
            stdin: child.stdin.take(),
            child,
            lines,
            stdout_thread: Some(stdout_thread),
            stderr,
            stderr_thread: Some(stderr_thread),
        }
    }

    #[track_caller]
    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("no output line; stderr {}", self.stderr()))
    }

    pub(crate) fn write_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to regctl");
        stdin.flush().unwrap();
    }

    pub(crate) fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn signal(&self, name: &str) {
        send_signal(self.child.id(), name);
    }

    /// Waits for regctl to exit and returns its status.
    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        let status = wait_exit_within_patience(&mut self.child, "regctl");
        if let Some(thread) = self.stderr_thread.take() {
            let _ = thread.join();
        }
        status
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        for thread in [self.stdout_thread.take(), self.stderr_thread.take()]
            .into_iter()
            .flatten()
        {
            let _ = thread.join();
        }
        if thread::panicking() {
            eprintln!("--- regctl stderr ---\n{}", self.stderr());
        }
    }
}

/// Waits until `name` has `value` in regd (`None`: until it is gone).
#[track_caller]
pub(crate) fn wait_for(daemon: &Daemon, name: &str, expected: Option<&str>) {
    wait_until(&format!("{name} to be {expected:?}"), || {
        value(daemon, name).as_deref() == expected
    });
}

#[test]
fn help_version_and_usage_errors() {
    let daemon = Daemon::start(&[]);
    assert_eq!(
        succeeds(&daemon, &["--version"]),
        format!("regctl {}\n", env!("CARGO_PKG_VERSION"))
    );
    // `regctl version`, the original command line's `reg version`, says the same.
    assert_eq!(
        succeeds(&daemon, &["version"]),
        format!("regctl {}\n", env!("CARGO_PKG_VERSION"))
    );
    fails(&run(&daemon, &["version", "x"]), 2, &["takes no arguments"]);
    assert!(succeeds(&daemon, &["--help"]).contains("commands:"));
    assert!(succeeds(&daemon, &["-h"]).contains("usage: regctl"));
    for command in [
        "provide", "get", "set", "list", "watch", "delete", "bench", "browse", "version",
    ] {
        for flag in ["--help", "-h"] {
            let help = succeeds(&daemon, &[command, flag]);
            assert!(
                help.starts_with(&format!("usage: regctl {command}")),
                "{help}"
            );
        }
    }
    fails(&run(&daemon, &[]), 2, &["a command is needed"]);
    fails(&run(&daemon, &["frobnicate"]), 2, &["unknown command"]);
    fails(&run(&daemon, &["get"]), 2, &["at least one NAME"]);
    fails(
        &run(&daemon, &["get", "x", "--bogus"]),
        2,
        &["unknown option \"--bogus\""],
    );
    fails(
        &run(&daemon, &["get", "x", "--wait", "soon"]),
        2,
        &["--wait"],
    );
    fails(&run(&daemon, &["set", "x"]), 2, &["NAME VALUE"]);
    fails(&run(&daemon, &["list", "x"]), 2, &["unexpected argument"]);
    fails(&run(&daemon, &["delete"]), 2, &["at least one NAME"]);
    fails(
        &run(&daemon, &["provide", "x", "on"]),
        2,
        &["VALUE must be JSON", r#"quote it: '"on"'"#],
    );
    fails(
        &run(&daemon, &["set", "x", "on"]),
        2,
        &["VALUE must be JSON", "quote it"],
    );
    fails(
        &run(&daemon, &["provide", "x", "1", "[1]"]),
        2,
        &["METADATA must be a JSON object"],
    );
    fails(
        &command("ftp://h", &["list"]).output().unwrap(),
        2,
        &["invalid registry URL"],
    );
    // Nothing was published by any of these.
    assert!(values(&daemon).is_empty());
}

#[test]
fn an_unreachable_regd_is_explained() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{free}");
    let output = command(&url, &["list"]).output().unwrap();
    fails(
        &output,
        1,
        &[&format!(
            "regctl: cannot reach regd at {url}: connection refused — is it running? set REGISTRY or --registry"
        )],
    );
    assert!(output.stdout.is_empty());

    // REGISTRY is used when --registry is not given (a trailing slash is fine).
    let daemon = Daemon::start(&[]);
    daemon
        .put("/provider", &registers(&[("via-env", "1")]))
        .assert(204, "");
    let output = program(env!("CARGO_BIN_EXE_regctl"))
        .args(["get", "via-env"])
        .env("REGISTRY", format!("{}/", daemon.url()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "1\n");
}

#[test]
fn get_prints_values_in_argument_order() {
    let daemon = Daemon::start(&[]);
    daemon
        .put(
            "/provider",
            r#"{"registers":{"b":{"value":{"x": [1, 2.50]}},"a":{"value":"on","metadata":{"unit":"C"}},"c d":{}}}"#,
        )
        .assert(204, "");
    assert_eq!(succeeds(&daemon, &["get", "b"]), "{\"x\":[1,2.50]}\n");
    assert_eq!(
        succeeds(&daemon, &["get", "b", "c d", "a"]),
        "b={\"x\":[1,2.50]}\nc d=null\na=\"on\"\n"
    );
    assert_eq!(
        succeeds(&daemon, &["get", "b", "a", "--json"]),
        "{\"b\":{\"x\":[1,2.50]},\"a\":\"on\"}\n"
    );
    assert_eq!(
        succeeds(&daemon, &["get", "a", "--metadata"]),
        "{\"value\":\"on\",\"metadata\":{\"unit\":\"C\"}}\n"
    );
    assert_eq!(
        succeeds(&daemon, &["get", "--json", "--metadata", "a", "c d"]),
        "{\"a\":{\"value\":\"on\",\"metadata\":{\"unit\":\"C\"}},\"c d\":{\"value\":null}}\n"
    );

    let started = Instant::now();
    let output = run(&daemon, &["get", "a", "missing"]);
    fails(&output, 1, &["register does not exist: \"missing\""]);
    assert!(output.stdout.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a missing register is reported promptly, took {:?}",
        started.elapsed()
    );
}

#[test]
fn get_wait_returns_when_the_register_appears() {
    let daemon = Daemon::start(&[]);
    let mut waiting = Running::start(&daemon.url(), &["get", "late", "--wait", "20s"]);
    wait_for_held_polls(&daemon, 1);
    daemon
        .put("/provider", &registers(&[("late", "42")]))
        .assert(204, "");
    assert_eq!(waiting.next_line(), "42");
    assert!(waiting.wait_exit().success());

    let started = Instant::now();
    fails(
        &run(&daemon, &["get", "never", "--wait", "200ms"]),
        1,
        &["\"never\"", "waited 200ms"],
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[test]
fn set_waits_until_the_provider_applies_the_value() {
    let daemon = Daemon::start(&[]);
    let provider = Running::start(&daemon.url(), &["provide", "lamp", "false"]);
    wait_for(&daemon, "lamp", Some("false"));
    assert_eq!(succeeds(&daemon, &["set", "lamp", "true"]), "");
    assert_eq!(provider.next_line(), r#"{"name":"lamp","value":true}"#);
    assert_eq!(value(&daemon, "lamp").as_deref(), Some("true"));

    let read_only = Running::start(&daemon.url(), &["provide", "fixed", "1", "--read-only"]);
    wait_for(&daemon, "fixed", Some("1"));
    fails(
        &run(&daemon, &["set", "fixed", "2", "--timeout", "300ms"]),
        1,
        &["\"fixed\" did not take 2 within 300ms", "its value is 1"],
    );
    assert_eq!(read_only.next_line(), r#"{"name":"fixed","value":2}"#);
    assert_eq!(value(&daemon, "fixed").as_deref(), Some("1"));

    fails(
        &run(&daemon, &["set", "nobody", "1", "--timeout", "100ms"]),
        1,
        &["\"nobody\" does not exist"],
    );
    assert_eq!(
        succeeds(&daemon, &["set", "queued", "\"x\"", "--no-wait"]),
        ""
    );
    assert_eq!(
        daemon.get("/provider?name=queued").body,
        r#"{"registers":{"queued":{"value":"x"}}}"#
    );
}

#[test]
fn list_sorts_and_formats() {
    let daemon = Daemon::start(&[]);
    assert_eq!(succeeds(&daemon, &["list"]), "");
    assert_eq!(succeeds(&daemon, &["list", "--json"]), "{}\n");
    daemon
        .put(
            "/provider",
            r#"{"registers":{"b":{"value":2},"a":{"value":"x","metadata":{"m":1}},"c":{"value":[3]}}}"#,
        )
        .assert(204, "");
    // Not a terminal: NAME=VALUE lines.
    assert_eq!(succeeds(&daemon, &["list"]), "a=\"x\"\nb=2\nc=[3]\n");
    assert_eq!(
        succeeds(&daemon, &["list", "--json"]),
        "{\"a\":\"x\",\"b\":2,\"c\":[3]}\n"
    );
    assert_eq!(
        succeeds(&daemon, &["list", "--metadata"]),
        "a={\"value\":\"x\",\"metadata\":{\"m\":1}}\nb={\"value\":2}\nc={\"value\":[3]}\n"
    );
}

#[test]
fn list_aligns_columns_on_a_terminal() {
    let daemon = Daemon::start(&[]);
    daemon
        .put(
            "/provider",
            &registers(&[("a", "1"), ("longer.name", "\"x\"")]),
        )
        .assert(204, "");
    // util-linux `script` runs regctl with its stdout on a pseudo-terminal.
    let output = program("script")
        .args(["-qec"])
        .arg(format!(
            "{} --registry {} list",
            env!("CARGO_BIN_EXE_regctl"),
            daemon.url()
        ))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output()
        .expect("run script (util-linux)");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n"),
        "a            1\nlonger.name  \"x\"\n"
    );
}

#[test]
fn delete_removes_registers() {
    let daemon = Daemon::start(&[]);
    daemon
        .put(
            "/provider",
            &registers(&[("a", "1"), ("b", "2"), ("c", "3")]),
        )
        .assert(204, "");
    assert_eq!(succeeds(&daemon, &["delete", "a", "c"]), "");
    assert_eq!(values(&daemon), BTreeMap::from([("b".into(), "2".into())]));
}

#[test]
fn provide_publishes_stdin_lines_and_skips_bad_ones() {
    let daemon = Daemon::start(&[]);
    let mut provider = Running::start(
        &daemon.url(),
        &["provide", "temp", "20", r#"{"unit": "C"}"#, "--ttl", "2s"],
    );
    wait_for(&daemon, "temp", Some("20"));
    assert_eq!(
        succeeds(&daemon, &["get", "temp", "--metadata"]),
        "{\"value\":20,\"metadata\":{\"unit\":\"C\"}}\n"
    );
    provider.write_line("21.5");
    wait_for(&daemon, "temp", Some("21.5"));
    provider.write_line("warm");
    provider.write_line("");
    provider.write_line(r#"{"x": [1]}"#);
    wait_for(&daemon, "temp", Some(r#"{"x":[1]}"#));
    // (A reader thread collects stderr: the line may come a moment after the value.)
    wait_until("the skipped line said on stderr", || {
        provider
            .stderr()
            .contains("stdin line 2 skipped: invalid JSON")
    });
    // Kept alive across several ttls (2 s, refreshed every 1 s; a shorter ttl made a
    // refresh delayed by a loaded machine look like a failure): it never expires.
    let started = Instant::now();
    wait_until("two and a half ttls", || {
        assert!(value(&daemon, "temp").is_some(), "the register expired");
        started.elapsed() > Duration::from_millis(5000)
    });
    provider.close_stdin();
    assert!(provider.wait_exit().success());
    assert_eq!(value(&daemon, "temp"), None);
}

/// Starts a provider, interrupts it with `stop`, and checks the register is gone from
/// regd within 100 ms and that regctl exits 0.
fn check_prompt_removal(stop: impl FnOnce(&mut Running)) {
    let daemon = Daemon::start(&[]);
    let mut provider = Running::start(&daemon.url(), &["provide", "short", "1"]);
    wait_for(&daemon, "short", Some("1"));
    let stopped = Instant::now();
    stop(&mut provider);
    wait_for(&daemon, "short", None);
    let took = stopped.elapsed();
    assert!(took < Duration::from_millis(100), "removal took {took:?}");
    assert_eq!(provider.wait_exit().code(), Some(0));
}

#[test]
fn provide_deletes_its_register_on_sigint() {
    check_prompt_removal(|provider| provider.signal("INT"));
}

#[test]
fn provide_deletes_its_register_on_sigterm() {
    check_prompt_removal(|provider| provider.signal("TERM"));
}

#[test]
fn provide_deletes_its_register_when_stdin_ends() {
    check_prompt_removal(|provider| provider.close_stdin());
}

#[test]
fn provide_file_serves_several_registers() {
    let daemon = Daemon::start(&[]);
    let directory = std::env::temp_dir().join(format!(
        "regctl-test-{}-{}",
        std::process::id(),
        daemon.address.port()
    ));
    std::fs::create_dir_all(&directory).unwrap();
    let file = directory.join("registers.json");
    std::fs::write(
        &file,
        r#"{"fan": {"value": 0, "metadata": {"unit": "rpm"}, "ttl": "2s"},
            "lamp": {"value": false}}"#,
    )
    .unwrap();
    let mut provider = Running::start(
        &daemon.url(),
        &["provide", "--file", file.to_str().unwrap()],
    );
    wait_for(&daemon, "fan", Some("0"));
    wait_for(&daemon, "lamp", Some("false"));
    assert_eq!(
        succeeds(&daemon, &["get", "fan", "--metadata"]),
        "{\"value\":0,\"metadata\":{\"unit\":\"rpm\"}}\n"
    );
    assert_eq!(succeeds(&daemon, &["set", "lamp", "true"]), "");
    assert_eq!(provider.next_line(), r#"{"name":"lamp","value":true}"#);
    provider.write_line(r#"{"fan": 1200}"#);
    wait_for(&daemon, "fan", Some("1200"));
    provider.signal("TERM");
    assert!(provider.wait_exit().success());
    assert!(values(&daemon).is_empty());
    std::fs::remove_dir_all(&directory).unwrap();

    fails(
        &run(
            &daemon,
            &["provide", "--file", "/nonexistent/registers.json"],
        ),
        1,
        &["cannot read /nonexistent/registers.json"],
    );
}

#[test]
fn watch_streams_changes_and_removals() {
    let daemon = Daemon::start(&[]);
    daemon
        .put("/provider", &registers(&[("a", "1")]))
        .assert(204, "");
    let plain = Running::start(&daemon.url(), &["watch", "a", "b"]);
    let json = Running::start(&daemon.url(), &["watch", "--json"]);
    assert_eq!(plain.next_line(), "a=1");
    assert_eq!(json.next_line(), r#"{"name":"a","value":1}"#);
    daemon
        .put(
            "/provider",
            r#"{"registers":{"b":{"value":"x","metadata":{"m":true}}}}"#,
        )
        .assert(204, "");
    assert_eq!(plain.next_line(), "b=\"x\"");
    assert_eq!(
        json.next_line(),
        r#"{"name":"b","value":"x","metadata":{"m":true}}"#
    );
    assert_eq!(succeeds(&daemon, &["delete", "a"]), "");
    assert_eq!(plain.next_line(), "a (removed)");
    assert_eq!(json.next_line(), r#"{"name":"a","removed":true}"#);
    // Registers it does not watch do not show up in the plain watcher.
    daemon
        .put("/provider", &registers(&[("other", "1"), ("b", "2")]))
        .assert(204, "");
    assert_eq!(plain.next_line(), "b=2");
}

#[test]
fn watch_sees_the_final_value_of_a_thousand_fast_changes() {
    let daemon = Daemon::start(&[]);
    daemon
        .put("/provider", &registers(&[("ready", "true")]))
        .assert(204, "");
    let watcher = Running::start(&daemon.url(), &["watch", "--json"]);
    assert_eq!(watcher.next_line(), r#"{"name":"ready","value":true}"#);

    let mut expected = BTreeMap::new();
    let mut http = daemon.connect();
    for change in 0..1000 {
        let name = format!("r{}", change % 41);
        http.request(
            "PUT",
            "/provider",
            &registers(&[(&name, &change.to_string())]),
        )
        .assert(204, "");
        expected.insert(name, change.to_string());
    }
    let mut latest = BTreeMap::new();
    while latest != expected {
        let line: serde_json::Value = serde_json::from_str(&watcher.next_line()).unwrap();
        let name = line["name"].as_str().unwrap().to_string();
        assert_ne!(line["removed"], true, "{line}");
        latest.insert(name, line["value"].to_string());
    }
}

#[test]
fn watch_on_a_closed_pipe_exits_quietly() {
    let daemon = Daemon::start(&[]);
    daemon
        .put("/provider", &registers(&[("n", "0")]))
        .assert(204, "");
    // `regctl watch | head -1`: the reader takes one line and goes away.
    let mut child = command(&daemon.url(), &["watch"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "n=0\n");
    drop(stdout);
    let mut change = 1;
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        // Each change makes regctl write, which fails on the closed pipe.
        daemon
            .put("/provider", &registers(&[("n", &change.to_string())]))
            .assert(204, "");
        change += 1;
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "regctl kept running");
        thread::sleep(Duration::from_millis(5)); // sleep-ok: polling a deadline
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "stderr {stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn provide_and_watch_keep_working_across_a_regd_restart() {
    let first = Daemon::start(&[]);
    let address = first.address.to_string();
    let url = first.url();
    let provider = Running::start(&url, &["provide", "kept", "1", "--ttl", "60s"]);
    wait_for(&first, "kept", Some("1"));
    let watcher = Running::start(&url, &["watch", "kept"]);
    assert_eq!(watcher.next_line(), "kept=1");

    drop(first);
    wait_until("the watcher notices", || {
        watcher.stderr().contains("retrying")
    });
    let second = Daemon::start(&["--addr", &address]);
    // The provider publishes again as soon as regd is back, not at its next refresh
    // (30 s away, longer than any wait in a test).
    wait_for(&second, "kept", Some("1"));
    assert_eq!(succeeds(&second, &["set", "kept", "2"]), "");
    assert_eq!(provider.next_line(), r#"{"name":"kept","value":2}"#);
    // The watcher may first see the register vanish and come back; it ends at 2.
    let mut line = watcher.next_line();
    while line != "kept=2" {
        assert!(
            ["kept=1", "kept (removed)"].contains(&line.as_str()),
            "{line}"
        );
        line = watcher.next_line();
    }
}

/// Runs regctl against `daemon` with `REGD_TOKEN` set to `token` (unset when empty).
fn run_with_token(daemon: &Daemon, token: &str, args: &[&str]) -> Output {
    let mut command = command(&daemon.url(), args);
    if !token.is_empty() {
        command.env("REGD_TOKEN", token);
    }
    command.stdin(Stdio::null()).output().expect("run regctl")
}

/// A register's value as an admin reads it from a regd with tokens.
fn value_with_token(daemon: &Daemon, name: &str) -> Option<String> {
    let reply = daemon.with_auth(
        "GET",
        &format!("/consumer?name={}", encode(name)),
        "",
        &format!("Bearer {ADMIN}"),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let value = &reply.json()["registers"][name]["value"];
    (!reply.json()["registers"][name].is_null()).then(|| value.to_string())
}

#[track_caller]
fn never_shows_a_token(output: &str) {
    for token in [PROVIDER, CONSUMER, ADMIN, "wrong-0123456789abcdef"] {
        assert!(!output.contains(token), "a token was printed: {output}");
    }
}

#[test]
fn every_command_sends_the_token_of_its_role() {
    let tokens = TokenFile::new(0o600);
    let daemon = Daemon::start(&["--token-file", tokens.path()]);
    // One-line files, as an operator hands them out; the first is regd's own format.
    let provider_file = TokenFile::with_text(&format!("{PROVIDER} provider sensors\n"), 0o600);
    let consumer_file = TokenFile::with_text(&format!("# dashboard\n\n  {CONSUMER}\n"), 0o640);

    let mut provide = Running::start(
        &daemon.url(),
        &[
            "--token-file",
            provider_file.path(),
            "provide",
            "lamp",
            "false",
        ],
    );
    wait_until("lamp published", || {
        value_with_token(&daemon, "lamp").as_deref() == Some("false")
    });
    let mut watch = Running::spawn({
        let mut command = command(&daemon.url(), &["watch", "lamp"]);
        command.env("REGD_TOKEN", CONSUMER);
        command
    });
    assert_eq!(watch.next_line(), "lamp=false");

    let get = run_with_token(&daemon, CONSUMER, &["get", "lamp"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout), "false\n", "{get:?}");
    let listed = command(
        &daemon.url(),
        &["--token-file", consumer_file.path(), "list"],
    )
    .output()
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "lamp=false\n",
        "{listed:?}"
    );

    // set: a change request through /consumer, applied by the provider.
    let set = run_with_token(&daemon, CONSUMER, &["set", "lamp", "true"]);
    assert!(set.status.success(), "{set:?}");
    assert_eq!(provide.next_line(), r#"{"name":"lamp","value":true}"#);
    assert_eq!(watch.next_line(), "lamp=true");
    provide.write_line("1");
    assert_eq!(watch.next_line(), "lamp=1");

    // --token-file wins over REGD_TOKEN.
    let mut flagged = command(
        &daemon.url(),
        &["--token-file", consumer_file.path(), "get", "lamp"],
    );
    let flagged = flagged
        .env("REGD_TOKEN", "wrong-0123456789abcdef")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&flagged.stdout),
        "1\n",
        "{flagged:?}"
    );

    // An admin token may do both; delete needs /provider.
    let deleted = run_with_token(&daemon, ADMIN, &["delete", "lamp"]);
    assert!(deleted.status.success(), "{deleted:?}");
    assert_eq!(watch.next_line(), "lamp (removed)");

    provide.close_stdin();
    assert!(provide.wait_exit().success(), "{}", provide.stderr());
    watch.signal("INT");
    assert!(watch.wait_exit().success());
    for output in [&get, &listed, &set, &flagged, &deleted] {
        never_shows_a_token(&String::from_utf8_lossy(&output.stderr));
    }
    never_shows_a_token(&provide.stderr());
    never_shows_a_token(&watch.stderr());
}

#[test]
fn a_missing_wrong_or_unfit_token_is_explained() {
    let tokens = TokenFile::new(0o600);
    let daemon = Daemon::start(&["--token-file", tokens.path()]);
    let mut stderr = String::new();
    let mut check = |output: Output, mentions: &[&str]| {
        fails(&output, 1, mentions);
        assert!(output.stdout.is_empty());
        stderr.push_str(&String::from_utf8_lossy(&output.stderr));
    };

    check(
        run_with_token(&daemon, "", &["get", "x"]),
        &["regctl: regd needs a token: set REGD_TOKEN or --token-file\n"],
    );
    check(
        run_with_token(&daemon, "", &["watch"]),
        &["regd needs a token: set REGD_TOKEN or --token-file"],
    );
    check(
        run_with_token(&daemon, "wrong-0123456789abcdef", &["list"]),
        &["the token was refused", "check REGD_TOKEN or --token-file"],
    );
    // The wrong role: regd's own message names the role and the resource.
    check(
        run_with_token(&daemon, CONSUMER, &["provide", "x", "1"]),
        &[
            "may not do this",
            "consumer token (dashboard) may not use /provider",
        ],
    );
    check(
        run_with_token(&daemon, CONSUMER, &["delete", "x"]),
        &["consumer token (dashboard) may not use /provider"],
    );
    check(
        run_with_token(&daemon, PROVIDER, &["watch", "x"]),
        &["provider token (sensors) may not use /consumer"],
    );
    check(
        run_with_token(&daemon, PROVIDER, &["set", "x", "1"]),
        &["provider token (sensors) may not use /consumer"],
    );

    // Token files: refused when every user may read them, or when they hold no token.
    let open = TokenFile::with_text(&format!("{ADMIN}\n"), 0o644);
    check(
        command(&daemon.url(), &["--token-file", open.path(), "list"])
            .output()
            .unwrap(),
        &[
            "readable by every user",
            &format!("chmod 600 {}", open.path()),
        ],
    );
    let empty = TokenFile::with_text("# nothing yet\n\n", 0o600);
    check(
        command(&daemon.url(), &["--token-file", empty.path(), "list"])
            .output()
            .unwrap(),
        &["holds no token"],
    );
    check(
        command(
            &daemon.url(),
            &["--token-file", "/nonexistent/token", "list"],
        )
        .output()
        .unwrap(),
        &["cannot read token file /nonexistent/token"],
    );
    never_shows_a_token(&stderr);
    assert!(!daemon.stderr().contains(ADMIN));
}

/// A latency as the bench table prints it (`191µs`, `4.07ms`, `1.20s`), in µs.
fn table_latency(text: &str) -> f64 {
    let (number, scale) = if let Some(number) = text.strip_suffix("µs") {
        (number, 1.0)
    } else if let Some(number) = text.strip_suffix("ms") {
        (number, 1e3)
    } else {
        (text.strip_suffix('s').expect("a unit"), 1e6)
    };
    number.parse::<f64>().expect("a number") * scale
}

#[test]
fn bench_measures_every_phase_and_removes_its_registers() {
    let tokens = TokenFile::new(0o600);
    let daemon = Daemon::start(&["--token-file", tokens.path()]);
    let admin = format!("Bearer {ADMIN}");
    daemon
        .with_auth("PUT", "/provider", &registers(&[("other", "1")]), &admin)
        .assert(204, "");
    let args = [
        "bench",
        "--duration",
        "200ms",
        "--connections",
        "2",
        "--registers",
        "3",
    ];
    let output = run_with_token(&daemon, ADMIN, &args);
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "{output:?}");
    let table = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["phase", "requests", "req/s", "p50", "p99", "max"]);
    let labels = [
        "PUT /provider",
        "GET /consumer",
        "change request: PUT /consumer → waiting GET /provider",
        "wake: PUT /provider → waiting GET /consumer",
    ];
    for (line, label) in lines[1..].iter().zip(labels) {
        assert!(line.starts_with(label), "{table}");
        // Aligned: every row as wide as the header.
        assert_eq!(line.chars().count(), lines[0].chars().count(), "{table}");
        let numbers: Vec<&str> = line[label.len()..].split_whitespace().collect();
        let [count, rate, p50, p99, max] = numbers[..] else {
            panic!("five numbers expected: {line}");
        };
        assert!(count.parse::<u64>().unwrap() > 0, "{line}");
        assert!(rate.parse::<f64>().unwrap() > 0.0, "{line}");
        let (p50, p99, max) = (table_latency(p50), table_latency(p99), table_latency(max));
        assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{line}");
        assert!(max < 10e6, "{line}");
    }

    // Nothing of the bench is left: no register, no pending change request.
    let left = daemon.with_auth("GET", "/consumer", "", &admin);
    left.assert(200, r#"{"registers":{"other":{"value":1}}}"#);
    daemon
        .with_auth("GET", "/provider", "", &admin)
        .assert(200, r#"{"registers":{}}"#);

    let output = run_with_token(&daemon, ADMIN, &[&args[..], &["--json"]].concat());
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["connections"], 2);
    assert_eq!(report["registers"], 3);
    assert_eq!(report["duration_ms"], 200);
    let phases = report["phases"].as_array().expect("phases");
    let keys: Vec<&str> = phases
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["publish", "read", "change_request", "wake"]);
    for phase in phases {
        assert!(phase["requests"].as_u64().unwrap() > 0, "{phase}");
        assert!(phase["per_second"].as_f64().unwrap() > 0.0, "{phase}");
        let [p50, p99, max] =
            ["p50_us", "p99_us", "max_us"].map(|key| phase[key].as_f64().unwrap());
        assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{phase}");
    }
    left.assert(200, r#"{"registers":{"other":{"value":1}}}"#);
    daemon
        .with_auth("GET", "/consumer", "", &admin)
        .assert(200, r#"{"registers":{"other":{"value":1}}}"#);

    // A consumer token may not publish; bad settings are usage errors.
    let refused = run_with_token(&daemon, CONSUMER, &args);
    fails(
        &refused,
        1,
        &["consumer token (dashboard) may not use /provider"],
    );
    assert!(refused.stdout.is_empty());
    for (bad, mention) in [
        (
            &["bench", "--connections", "0"][..],
            "--connections: expected a whole number from 1 to 256",
        ),
        (
            &["bench", "--registers", "many"],
            "--registers: expected a whole number",
        ),
        (&["bench", "--duration", "soon"], "--duration"),
        (&["bench", "extra"], "bench takes only options"),
    ] {
        fails(&run_with_token(&daemon, ADMIN, bad), 2, &[mention]);
    }
    never_shows_a_token(&stderr);
    never_shows_a_token(&String::from_utf8_lossy(&refused.stderr));
}

#[cfg(not(feature = "tui"))]
#[test]
fn browse_says_it_was_built_without_the_feature() {
    let daemon = Daemon::start(&[]);
    fails(&run(&daemon, &["browse"]), 1, &["built without", "tui"]);
}
