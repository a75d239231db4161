//! Test support: start the real `regd` on a free loopback port, speak raw HTTP to it,
//! and wait for conditions with deadlines (never a bare sleep).

#![allow(dead_code)] // each test module uses a different part of the support code

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single wait in a test may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Variables that would change how regd, regctl or regd-mqtt behave, which a test
/// must not inherit from whoever runs it: every `REGD_*`, the client's `REGISTRY`, and
/// what systemd hands a service.
const LEAKY_VARIABLES: &[&str] = &[
    "REGISTRY",
    "JOURNAL_STREAM",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "STATE_DIRECTORY",
    "CREDENTIALS_DIRECTORY",
    "NO_COLOR",
];

/// A command for `program` (one of the project's binaries, or a program that starts
/// one) with a clean environment: none of the caller's `REGD_*` settings or
/// [`LEAKY_VARIABLES`] reach it; tests add what they mean to set.
pub fn program(program: &str) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        let leaky = name
            .to_str()
            .is_some_and(|name| name.starts_with("REGD_") || LEAKY_VARIABLES.contains(&name));
        if leaky {
            command.env_remove(name);
        }
    }
    command
}

/// Whether what a test needs (a tool, or a property of the machine) is here. When it
/// is not, the test is skipped with a message saying how to get it — unless `switch`
/// (a `REGD_REQUIRE_*` variable, which CI sets) is set: then the test fails instead.
pub fn skip_unless(available: bool, what: &str, switch: &str, how: &str) -> bool {
    if !available {
        assert!(
            std::env::var_os(switch).is_none(),
            "{switch} is set but {what} is not available here; {how}"
        );
        eprintln!("skipped: {what} is not available ({how}); set {switch} to require it");
    }
    available
}

/// Whether `tool` runs (`tool ARGS` starts and succeeds); see [`skip_unless`].
pub fn tool_or_skip(tool: &str, args: &[&str], switch: &str, how: &str) -> bool {
    let runs = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|output| output.status.success());
    skip_unless(runs, tool, switch, how)
}

/// A regd process: its stderr, captured as it comes, and the child, killed and reaped
/// on drop (its stderr is printed if the test failed).
struct Process {
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
    stderr_thread: Option<thread::JoinHandle<()>>,
}

impl Process {
    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn wait_for_log(&self, text: &str) {
        wait_until(&format!("log line containing {text:?}"), || {
            self.stderr().contains(text)
        });
    }

    /// Waits for the exit (its stderr is printed on drop if it does not come).
    fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = wait_exit_within_patience(&mut child, "regd");
        if let Some(thread) = self.stderr_thread.take() {
            let _ = thread.join();
        }
        status
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(thread) = self.stderr_thread.take() {
            let _ = thread.join();
        }
        if thread::panicking() {
            eprintln!("--- regd stderr ---\n{}", self.stderr());
        }
    }
}

/// A running `regd` that announced its address.
pub struct Daemon {
    process: Process,
    pub address: SocketAddr,
}

impl Daemon {
    /// Starts `regd --addr 127.0.0.1:0` with extra arguments.
    pub fn start(args: &[&str]) -> Daemon {
        Self::start_with_env(args, &[])
    }

    /// Starts `regd` with extra arguments and environment variables. Without an
    /// `--addr` among `args` it listens on `127.0.0.1:0`.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut command = program(env!("CARGO_BIN_EXE_regd"));
        if !args.contains(&"--addr") {
            command.args(["--addr", "127.0.0.1:0"]);
        }
        command.args(args);
        for (key, value) in env {
            command.env(key, value);
        }
        Self::start_command(&mut command)
    }

    /// Starts a command that runs regd (for example under `sh -c 'ulimit …; exec regd'`)
    /// and waits, at most [`PATIENCE`], for it to announce its address.
    pub fn start_command(command: &mut Command) -> Daemon {
        Starting::spawn(command).announced()
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A new keep-alive connection.
    pub fn connect(&self) -> Http {
        Http::connect(self.address)
    }

    /// One request on a fresh connection.
    pub fn request(&self, method: &str, target: &str, body: &str) -> Reply {
        self.connect().request(method, target, body)
    }

    pub fn get(&self, target: &str) -> Reply {
        self.request("GET", target, "")
    }

    pub fn put(&self, target: &str, body: &str) -> Reply {
        self.request("PUT", target, body)
    }

    /// One request on a fresh connection with an `Authorization` header (none when
    /// `authorization` is empty).
    pub fn with_auth(&self, method: &str, target: &str, body: &str, authorization: &str) -> Reply {
        let mut connection = self.connect();
        let header = if authorization.is_empty() {
            String::new()
        } else {
            format!("Authorization: {authorization}\r\n")
        };
        connection.send(
            format!(
                "{method} {target} HTTP/1.1\r\nHost: x\r\n{header}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        connection.read_reply()
    }

    /// What regd wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// Waits until stderr contains `text`.
    pub fn wait_for_log(&self, text: &str) {
        self.process.wait_for_log(text);
    }

    /// Sends a signal (by name, such as "TERM") to the daemon.
    pub fn signal(&self, name: &str) {
        send_signal(self.pid(), name);
    }

    /// Waits for the daemon to exit by itself and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        self.process.wait_exit()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// A regd that was started and has not announced its address yet: a test that acts
/// during start-up holds this, then waits for the announcement (or the exit).
pub struct Starting {
    process: Process,
    announcement: mpsc::Receiver<String>,
}

impl Starting {
    /// Starts a command that runs regd, with its stdout and stderr captured.
    pub fn spawn(command: &mut Command) -> Starting {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start regd");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_thread = {
            let mut pipe = child.stderr.take().expect("stderr");
            let stderr = stderr.clone();
            thread::spawn(move || {
                let mut reader = BufReader::new(&mut pipe);
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    stderr.lock().unwrap().push_str(&line);
                    line.clear();
                }
            })
        };
        let stdout = child.stdout.take().expect("stdout");
        let (announced, announcement) = mpsc::channel();
        // Reads the one line regd prints, or the end of the pipe if it exits first.
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = announced.send(line);
        });
        Starting {
            process: Process {
                child: Some(child),
                stderr,
                stderr_thread: Some(stderr_thread),
            },
            announcement,
        }
    }

    /// Sends a signal (by name, such as "TERM") to the starting daemon.
    pub fn signal(&self, name: &str) {
        send_signal(self.process.pid(), name);
    }

    /// Waits until stderr contains `text`.
    pub fn wait_for_log(&self, text: &str) {
        self.process.wait_for_log(text);
    }

    /// Waits, at most [`PATIENCE`], for regd to exit without announcing; its status
    /// and stderr.
    pub fn wait_exit(mut self) -> (ExitStatus, String) {
        let status = self.process.wait_exit();
        (status, self.process.stderr())
    }

    /// Waits, at most [`PATIENCE`], for regd to announce its address.
    pub fn announced(self) -> Daemon {
        let fail = |why: String| -> ! {
            // Dropping the process kills it and prints its stderr.
            panic!("{why}")
        };
        let line = match self.announcement.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(_) => fail(format!(
                "regd did not announce its address within {PATIENCE:?}"
            )),
        };
        let address = match line
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|address| address.parse().ok())
        {
            Some(address) => address,
            None => fail(format!(
                "regd did not announce its address; stdout {line:?}; stderr {:?}",
                self.process.stderr()
            )),
        };
        Daemon {
            process: self.process,
            address,
        }
    }
}

/// A free loopback port, for a listener that someone else opens (a broker, systemd's
/// socket activator).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits, at most [`PATIENCE`], for `child` to exit; kills it and fails the test if it
/// does not.
pub fn wait_exit_within_patience(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {PATIENCE:?}");
        }
        thread::sleep(Duration::from_millis(2)); // sleep-ok: polling a deadline
    }
}

/// Sends a signal (by name, such as "TERM") to a process, with kill(1).
pub fn send_signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// The tokens of [`TokenFile::new`], one per role.
pub const PROVIDER: &str = "prov-0123456789abcdef";
pub const CONSUMER: &str = "cons-0123456789abcdef";
pub const ADMIN: &str = "admin-0123456789abcdef";

/// A token file in a fresh temporary directory, removed on drop.
pub struct TokenFile {
    directory: PathBuf,
    pub path: PathBuf,
}

impl TokenFile {
    /// regd's token file: [`PROVIDER`], [`CONSUMER`] and [`ADMIN`], with this mode.
    pub fn new(mode: u32) -> TokenFile {
        Self::with_text(
            &format!(
                "# regd tokens\n{PROVIDER} provider sensors\n{CONSUMER} consumer dashboard\n{ADMIN} admin ops\n"
            ),
            mode,
        )
    }

    /// A file holding `text`, with this mode, in a directory of its own.
    pub fn with_text(text: &str, mode: u32) -> TokenFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let directory = std::env::temp_dir().join(format!(
            "regd-tokens-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("tokens");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        TokenFile { directory, path }
    }

    pub fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// Polls `condition` until it holds, failing the test after [`PATIENCE`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(2)); // sleep-ok: polling a deadline
    }
}

/// An answer as the client saw it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The `X-Reg-Index` header as a number.
    pub fn index(&self) -> u64 {
        self.header("X-Reg-Index")
            .expect("X-Reg-Index header")
            .parse()
            .expect("X-Reg-Index is a number")
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {:?}", self.body))
    }

    /// The `error` message of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {:?}", self.body))
            .to_string()
    }

    #[track_caller]
    pub fn assert(&self, status: u16, body: &str) -> &Self {
        assert_eq!((self.status, self.body.as_str()), (status, body));
        self
    }

    #[track_caller]
    pub fn assert_error(&self, status: u16, mentions: &str) -> &Self {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.header("Content-Type"), Some("application/json"));
        let message = self.error();
        assert!(
            message.contains(mentions),
            "error {message:?} should mention {mentions:?}"
        );
        self
    }
}

/// A raw HTTP/1.1 connection: exact bytes out, parsed answers in.
pub struct Http {
    pub stream: TcpStream,
    buffer: Vec<u8>,
    /// The answer being read is to a HEAD request: it has no body.
    head_only: bool,
}

impl Http {
    pub fn connect(address: SocketAddr) -> Http {
        Self::from_stream(TcpStream::connect(address).expect("connect to regd"))
    }

    pub fn from_stream(stream: TcpStream) -> Http {
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_nodelay(true).unwrap();
        Http {
            stream,
            buffer: Vec::new(),
            head_only: false,
        }
    }

    /// Sends a request with a Content-Length body and reads the answer.
    pub fn request(&mut self, method: &str, target: &str, body: &str) -> Reply {
        self.send_request(method, target, body);
        self.head_only = method == "HEAD";
        self.read_reply()
    }

    pub fn send_request(&mut self, method: &str, target: &str, body: &str) {
        let raw = format!(
            "{method} {target} HTTP/1.1\r\nHost: regd\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.send(raw.as_bytes());
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to regd");
    }

    /// Reads one answer (Content-Length framed, or to the end for `Connection: close`
    /// without a length).
    pub fn read_reply(&mut self) -> Reply {
        self.try_read_reply()
            .unwrap_or_else(|| panic!("connection closed before an answer"))
    }

    /// `None` if the connection ends before a complete answer.
    pub fn try_read_reply(&mut self) -> Option<Reply> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(head)) = response.parse(&self.buffer) {
                let status = response.code.expect("status");
                let headers: Vec<(String, String)> = response
                    .headers
                    .iter()
                    .map(|header| {
                        (
                            header.name.to_string(),
                            String::from_utf8_lossy(header.value).to_string(),
                        )
                    })
                    .collect();
                let length = headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                    .map(|(_, value)| value.parse::<usize>().expect("length"));
                if status == 100 {
                    self.buffer.drain(..head);
                    continue;
                }
                let length = if self.head_only {
                    0
                } else {
                    length.unwrap_or(0)
                };
                while self.buffer.len() < head + length {
                    if !self.read_some() {
                        return None;
                    }
                }
                let body = String::from_utf8(self.buffer[head..head + length].to_vec())
                    .expect("UTF-8 body");
                self.buffer.drain(..head + length);
                return Some(Reply {
                    status,
                    headers,
                    body,
                });
            }
            if !self.read_some() {
                return None;
            }
        }
    }

    /// Reads whatever arrives; false at the end of the stream.
    fn read_some(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(read) => {
                self.buffer.extend_from_slice(&chunk[..read]);
                true
            }
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => false,
            // A signal to the test process (another test's child exiting) is no error.
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => true,
            Err(error) => panic!("reading from regd: {error}"),
        }
    }

    /// Whether the server closed the connection (reads the end of stream).
    pub fn is_closed_by_server(&mut self) -> bool {
        !self.read_some() && self.buffer.is_empty()
    }

    /// Waits for a 100 Continue interim answer.
    pub fn read_continue(&mut self) -> bool {
        loop {
            if self.buffer.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n") {
                self.buffer.drain(..25);
                return true;
            }
            if self.buffer.len() >= 25 {
                return false;
            }
            if !self.read_some() {
                return false;
            }
        }
    }
}

/// `{"registers": {name: {"value": value}}}` for a list of (name, JSON value).
pub fn registers(entries: &[(&str, &str)]) -> String {
    let inner: Vec<String> = entries
        .iter()
        .map(|(name, value)| {
            format!(
                "{}:{{\"value\":{value}}}",
                serde_json::to_string(name).unwrap()
            )
        })
        .collect();
    format!("{{\"registers\":{{{}}}}}", inner.join(","))
}

/// Percent-encodes a query value, every byte but letters and digits. Written here
/// rather than taken from the library, so that tests of regd's query parsing do not
/// depend on the client's encoder being right.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => char::from(byte).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Starts a request on its own connection and thread; join for the answer.
pub fn spawn_request(
    address: SocketAddr,
    method: &str,
    target: &str,
    body: &str,
) -> thread::JoinHandle<Reply> {
    let (method, target, body) = (method.to_string(), target.to_string(), body.to_string());
    thread::spawn(move || Http::connect(address).request(&method, &target, &body))
}

/// Waits until the daemon reports `count` held polls in /metrics.
pub fn wait_for_held_polls(daemon: &Daemon, count: u64) {
    wait_until(&format!("{count} held polls"), || {
        metric(daemon, "regd_held_polls") == Some(count as f64)
    });
}

/// One unlabelled sample from /metrics.
pub fn metric(daemon: &Daemon, name: &str) -> Option<f64> {
    let reply = daemon.get("/metrics");
    reply.body.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.parse().ok()).flatten()
    })
}

/// The `(flag, variable, default)` of every setting a `--help` lists as a flag line
/// followed by `[env VARIABLE] [default VALUE]` (regd and regd-mqtt).
pub fn help_settings(help: &str) -> Vec<(String, String, String)> {
    let lines: Vec<&str> = help.lines().collect();
    let mut settings = Vec::new();
    for pair in lines.windows(2) {
        let Some(rest) = pair[1].trim().strip_prefix("[env ") else {
            continue;
        };
        let flag = pair[0].split_whitespace().next().unwrap().to_string();
        let (variable, default) = rest.split_once("] [default ").unwrap();
        settings.push((
            flag,
            variable.to_string(),
            default.trim_end_matches(']').to_string(),
        ));
    }
    settings
}

/// `promtool check metrics` on an exposition. Skipped without promtool, unless CI sets
/// `REGD_REQUIRE_PROMTOOL` (see [`tool_or_skip`]).
pub fn check_with_promtool(text: &str) {
    if !tool_or_skip(
        "promtool",
        &["--version"],
        "REGD_REQUIRE_PROMTOOL",
        "apt-get install prometheus",
    ) {
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let result = child.wait_with_output().unwrap();
    assert!(
        result.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
}
