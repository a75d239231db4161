//! The daemon as a program: flags, environment, announcement, logging, exit codes.

use crate::support::*;

fn regd(args: &[&str]) -> std::process::Output {
    program(env!("CARGO_BIN_EXE_regd"))
        .args(args)
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
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    if !skip_unless(
        ipv6,
        "an IPv6 loopback (::1)",
        "REGD_REQUIRE_IPV6",
        "enable IPv6 on lo",
    ) {
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
fn under_systemd_a_fatal_error_is_logged_at_err() {
    // A usage error (found before the logger starts) and a failure to start (after
    // it): either way the final line must reach the journal at err, so that
    // `journalctl -u regd -p err` shows why regd is not running.
    for (args, mentions, code) in [
        (&["--bogus"][..], "--bogus", 2),
        (&["--addr", "not-an-address"], "HOST:PORT", 1),
    ] {
        let output = program(env!("CARGO_BIN_EXE_regd"))
            .args(args)
            .env("JOURNAL_STREAM", "8:12345")
            .output()
            .expect("run regd");
        assert_eq!(output.status.code(), Some(code), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("<3>regd: "), "{args:?}: {stderr}");
        assert!(last.contains(mentions), "{args:?}: {stderr}");
        for line in stderr.lines() {
            assert!(line.starts_with('<'), "every line has a priority: {line}");
        }
    }
}

#[test]
fn threads_are_named() {
    let daemon = Daemon::start(&[]);
    let mut connection = daemon.connect();
    connection
        .request("GET", "/healthz", "")
        .assert(200, r#"{"status":"ok"}"#);
    // regd runs on Linux, which always has /proc.
    let task_dir = format!("/proc/{}/task", daemon.pid());
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
        [
            "regd-reaper",
            "regd-signals",
            "regd-refuser",
            "regd-hangups",
            "regd-http-",
        ]
        .iter()
        .all(|expected| names.iter().any(|name| name.starts_with(expected)))
    });
}

/// A datagram socket standing in for systemd's notification socket.
struct NotifySocket {
    directory: std::path::PathBuf,
    socket: std::os::unix::net::UnixDatagram,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let directory = std::env::temp_dir().join(format!(
            "regd-notify-it-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&directory).unwrap();
        let socket = std::os::unix::net::UnixDatagram::bind(directory.join("notify")).unwrap();
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        NotifySocket { directory, socket }
    }

    fn path(&self) -> String {
        self.directory.join("notify").to_str().unwrap().to_string()
    }

    fn receive(&self) -> String {
        let mut buffer = [0u8; 512];
        let length = self.socket.recv(&mut buffer).expect("a notification");
        String::from_utf8_lossy(&buffer[..length]).to_string()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

#[test]
fn tells_systemd_it_is_ready_healthy_and_stopping() {
    let notify = NotifySocket::new();
    let path = notify.path();
    let mut daemon = Daemon::start_with_env(
        &[],
        &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "200000")],
    );
    let ready = notify.receive();
    assert_eq!(
        ready,
        format!("READY=1\nSTATUS=listening on {}", daemon.address)
    );
    // Keep-alives follow only a successful health probe, twice per interval.
    assert_eq!(notify.receive(), "WATCHDOG=1");
    assert_eq!(notify.receive(), "WATCHDOG=1");
    daemon.signal("TERM");
    assert!(daemon.wait_exit().success());
    let mut rest = Vec::new();
    while let Ok(message) = {
        notify
            .socket
            .set_read_timeout(Some(std::time::Duration::from_millis(100)))
            .unwrap();
        let mut buffer = [0u8; 512];
        notify
            .socket
            .recv(&mut buffer)
            .map(|length| String::from_utf8_lossy(&buffer[..length]).to_string())
    } {
        rest.push(message);
    }
    assert!(rest.contains(&"STOPPING=1".to_string()), "{rest:?}");
}

#[test]
fn a_watchdog_for_another_process_is_ignored() {
    let notify = NotifySocket::new();
    let path = notify.path();
    let daemon = Daemon::start_with_env(
        &[],
        &[
            ("NOTIFY_SOCKET", &path),
            ("WATCHDOG_USEC", "100000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    assert!(notify.receive().starts_with("READY=1"));
    notify
        .socket
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let mut buffer = [0u8; 64];
    assert!(notify.socket.recv(&mut buffer).is_err(), "no keep-alives");
    drop(daemon);
}

/// `systemd-socket-activate` (Debian package systemd) hands regd a listening socket
/// the way systemd does.
fn socket_activate_available() -> bool {
    tool_or_skip(
        "systemd-socket-activate",
        &["--version"],
        "REGD_REQUIRE_SOCKET_ACTIVATE",
        "apt-get install systemd",
    )
}

#[test]
fn serves_a_socket_passed_by_systemd() {
    if !socket_activate_available() {
        return;
    }
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // The activator starts regd on the first connection.
    let first = std::thread::spawn({
        let listen = listen.clone();
        move || {
            let mut reply = None;
            wait_until(
                "the activator to listen",
                || match std::net::TcpStream::connect(&listen) {
                    Ok(stream) => {
                        let mut connection = Http::from_stream(stream);
                        connection.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
                        reply = connection.try_read_reply();
                        true
                    }
                    Err(_) => false,
                },
            );
            reply
        }
    });
    let daemon = Daemon::start_command(program("systemd-socket-activate").args([
        "-l",
        &listen,
        env!("CARGO_BIN_EXE_regd"),
        "--addr",
        "127.0.0.1:1",
    ]));
    assert_eq!(
        daemon.address.port(),
        port,
        "serves the inherited socket, not --addr"
    );
    let reply = first
        .join()
        .unwrap()
        .expect("the first connection is answered");
    reply.assert(200, r#"{"status":"ok"}"#);
    daemon.get("/healthz").assert(200, r#"{"status":"ok"}"#);
    daemon.wait_for_log("using the listening socket passed by systemd");
}

/// A process group started by a test (a shell and the daemons it runs), killed whole
/// on drop: killing only the shell would leave its regd behind. Its stdout arrives
/// line by line through a channel (so every read has a deadline); its stderr is
/// printed if the test failed.
struct ProcessGroup {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ProcessGroup {
    fn start(command: &mut std::process::Command) -> ProcessGroup {
        use std::io::{BufRead, BufReader};
        use std::os::unix::process::CommandExt;
        use std::process::Stdio;
        let mut child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the process group");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let pipe = BufReader::new(child.stderr.take().expect("stderr"));
        let collected = stderr.clone();
        std::thread::spawn(move || {
            for line in pipe.lines().map_while(Result::ok) {
                collected.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        ProcessGroup {
            child,
            lines,
            stderr,
        }
    }

    /// The next line on stdout.
    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(PATIENCE)
            .expect("a line on stdout within the patience")
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        wait_exit_within_patience(&mut self.child, "the process group's shell")
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &group])
            .status();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- stderr ---\n{}", self.stderr.lock().unwrap());
        }
    }
}

#[test]
fn a_socket_passed_by_systemd_outlives_each_regd() {
    // What `systemctl restart regd` does in socket mode: systemd keeps the listening
    // socket, and each regd it starts serves it. Stopping one regd must leave the
    // socket intact for the next (a shut-down socket refuses connections and fails
    // systemd's socket unit). A shell stands in for systemd: it keeps the socket the
    // activator opened and starts regd twice, each with LISTEN_PID set to its own pid.
    if !socket_activate_available() {
        return;
    }
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let twice = r#"for run in 1 2; do
        sh -c 'echo "pid $$"; LISTEN_PID=$$ exec "$0" --addr 127.0.0.1:1' "$0" || exit $?
    done"#;
    let mut group = ProcessGroup::start(program("systemd-socket-activate").args([
        "-l",
        &listen,
        "sh",
        "-c",
        twice,
        env!("CARGO_BIN_EXE_regd"),
    ]));
    let address: std::net::SocketAddr = listen.parse().unwrap();
    let pid_of = |line: String| -> u32 {
        (line.strip_prefix("pid ").and_then(|pid| pid.parse().ok()))
            .unwrap_or_else(|| panic!("a pid line, not {line:?}"))
    };

    // The activator starts the shell on the first connection.
    let mut connection = None;
    wait_until("the activator to listen", || {
        connection = std::net::TcpStream::connect(address).ok();
        connection.is_some()
    });
    let mut first_connection = Http::from_stream(connection.unwrap());
    first_connection.send_request("PUT", "/provider", &registers(&[("lamp", "true")]));
    let first = pid_of(group.next_line());
    assert_eq!(group.next_line(), format!("listening on http://{listen}"));
    first_connection.read_reply().assert(204, "");
    drop(first_connection);
    send_signal(first, "TERM");

    // The second regd is starting: a connection made now waits in the socket's queue
    // and is answered by it, as when systemd restarts the service.
    let second = pid_of(group.next_line());
    let mut waiting = Http::connect(address);
    waiting.send_request("GET", "/healthz", "");
    assert_eq!(group.next_line(), format!("listening on http://{listen}"));
    waiting.read_reply().assert(200, r#"{"status":"ok"}"#);
    // A new process: its registers start empty.
    Http::connect(address)
        .request("GET", "/consumer?name=lamp", "")
        .assert(200, r#"{"registers":{}}"#);
    send_signal(second, "TERM");
    assert!(group.wait_exit().success(), "both regd runs exit 0");
}

/// The settings regd reports in --help: (flag, variable, default).
fn documented_settings() -> Vec<(String, String, String)> {
    let settings = help_settings(&String::from_utf8(regd(&["--help"]).stdout).unwrap());
    assert!(settings.len() >= 15, "{settings:?}");
    settings
}

#[test]
fn packaged_defaults_file_lists_every_setting() {
    let defaults = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/default/regd"
    ))
    .unwrap();
    for (_, variable, default) in documented_settings() {
        let line = format!("#{variable}={default}\n");
        assert!(
            defaults.contains(&line),
            "packaging/default/regd lacks {line:?}"
        );
    }
    for line in defaults.lines() {
        assert!(
            line.is_empty() || line.starts_with('#'),
            "only comments: {line:?}"
        );
    }
}

#[test]
fn readme_configuration_table_lists_every_setting_once_in_order() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section: Vec<&str> = readme
        .lines()
        .skip_while(|line| *line != "## Configuration")
        .skip(1)
        .take_while(|line| !line.starts_with("## "))
        .collect();
    let numbered: Vec<(usize, &str)> = (section.iter().copied().enumerate())
        .filter(|(_, line)| line.starts_with("| `--"))
        .collect();
    // One table: a row anywhere else in the section is not in it.
    let lines: Vec<usize> = numbered.iter().map(|(number, _)| *number).collect();
    assert!(
        lines.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "README's settings are not one table: rows at lines {lines:?} of the section"
    );
    let rows: Vec<Vec<&str>> = numbered
        .iter()
        .map(|(_, line)| line.split('|').map(str::trim).collect())
        .collect();
    let settings = documented_settings();
    let flags: Vec<&str> = rows.iter().map(|row| row[1]).collect();
    assert_eq!(rows.len(), settings.len(), "README's rows: {flags:?}");
    for (row, (flag, variable, default)) in rows.iter().zip(&settings) {
        assert!(
            row[1].starts_with(&format!("`{flag}`")),
            "{row:?} for {flag}"
        );
        assert_eq!(row[2], format!("`{variable}`"), "{flag}");
        if !default.is_empty() {
            assert_eq!(row[3], format!("`{default}`"), "the default of {flag}");
        }
    }
}

#[test]
fn man_page_documents_every_setting() {
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/man/regd.8"))
            .unwrap();
    for (flag, variable, default) in documented_settings() {
        let troff_flag = flag.replace('-', "\\-");
        assert!(page.contains(&troff_flag), "regd.8 lacks {flag}");
        assert!(page.contains(&variable), "regd.8 lacks {variable}");
        let default = if default.is_empty() {
            "none".to_string()
        } else {
            default
        };
        assert!(
            page.contains(&format!("default {default})")),
            "regd.8 lacks the default of {flag} ({default})"
        );
    }
}

#[test]
fn regctl_man_page_documents_every_command() {
    let help = program(env!("CARGO_BIN_EXE_regctl"))
        .arg("--help")
        .output()
        .expect("run regctl");
    let help = String::from_utf8(help.stdout).unwrap();
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/man/regctl.1"
    ))
    .unwrap();
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|line| !line.starts_with("commands:"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(commands.len() >= 6, "{commands:?}");
    for command in commands {
        assert!(
            page.contains(&format!(".B {command}")),
            "regctl.1 lacks the command {command}"
        );
    }
}
