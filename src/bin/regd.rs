//! `regd`, the register daemon: reads its settings from flags and `REGD_*` environment
//! variables, binds, announces `listening on http://ADDR` on stdout, and serves until
//! SIGTERM or SIGINT. Exit 0 after a clean shutdown, 1 on failure, 2 on a usage error.

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use log::LevelFilter;
use regd::server::{self, Config, Server, access};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// One setting: its flag, environment variable, default and help.
struct Setting {
    flag: &'static str,
    env: &'static str,
    default: &'static str,
    help: &'static str,
}

const SETTINGS: &[Setting] = &[
    Setting {
        flag: "--addr",
        env: "REGD_ADDR",
        default: ":8080",
        help: "listen address, HOST:PORT; :PORT listens on every interface, port 0 picks a free one",
    },
    Setting {
        flag: "--log-level",
        env: "REGD_LOG_LEVEL",
        default: "info",
        help: "error, warn, info or debug (debug logs every request)",
    },
    Setting {
        flag: "--default-ttl",
        env: "REGD_DEFAULT_TTL",
        default: "10s",
        help: "ttl of registers published without one",
    },
    Setting {
        flag: "--max-wait",
        env: "REGD_MAX_WAIT",
        default: "10m",
        help: "longest long poll honoured; longer waits are shortened",
    },
    Setting {
        flag: "--read-timeout",
        env: "REGD_READ_TIMEOUT",
        default: "30s",
        help: "time a client has to send a request head or body, and how long an idle keep-alive connection is kept",
    },
    Setting {
        flag: "--write-timeout",
        env: "REGD_WRITE_TIMEOUT",
        default: "10s",
        help: "time an answer may take to write",
    },
    Setting {
        flag: "--max-connections",
        env: "REGD_MAX_CONNECTIONS",
        default: "4096",
        help: "connections served at once (one thread each); more are answered 503",
    },
    Setting {
        flag: "--max-polls",
        env: "REGD_MAX_POLLS",
        default: "4000",
        help: "long polls held at once; more are answered 503",
    },
    Setting {
        flag: "--max-registers",
        env: "REGD_MAX_REGISTERS",
        default: "10000",
        help: "registers that may exist at once",
    },
    Setting {
        flag: "--max-pending",
        env: "REGD_MAX_PENDING",
        default: "10000",
        help: "change requests that may wait for providers at once",
    },
    Setting {
        flag: "--max-body",
        env: "REGD_MAX_BODY",
        default: "1048576",
        help: "largest request body, in bytes",
    },
    Setting {
        flag: "--max-head",
        env: "REGD_MAX_HEAD",
        default: "16384",
        help: "largest request head (request line and headers), in bytes",
    },
    Setting {
        flag: "--max-uri",
        env: "REGD_MAX_URI",
        default: "8192",
        help: "longest request target (path and query), in bytes",
    },
    Setting {
        flag: "--max-name",
        env: "REGD_MAX_NAME",
        default: "1024",
        help: "longest register name, in bytes",
    },
    Setting {
        flag: "--max-names",
        env: "REGD_MAX_NAMES",
        default: "1000",
        help: "most register names in one request",
    },
    Setting {
        flag: "--token-file",
        env: "REGD_TOKEN_FILE",
        default: "",
        help: "turns access control on: a file of `TOKEN ROLE [LABEL]` lines (roles provider, consumer, admin); must not be world-readable",
    },
    Setting {
        flag: "--trust-loopback",
        env: "REGD_TRUST_LOOPBACK",
        default: "false",
        help: "with tokens, requests from a loopback peer need none (decided by the TCP peer address)",
    },
    Setting {
        flag: "--open-metrics",
        env: "REGD_OPEN_METRICS",
        default: "false",
        help: "with tokens, /metrics needs none",
    },
    Setting {
        flag: "--web",
        env: "REGD_WEB",
        default: "true",
        help: "serve the web dashboard at / (true or false); --no-web is --web false",
    },
];

#[derive(Debug)]
enum Error {
    Usage(String),
    Server(server::Error),
    Signals(std::io::Error),
    Thread(std::io::Error),
    TokenFile { path: String, problem: TokenProblem },
}

#[derive(Debug)]
enum TokenProblem {
    Unreadable(std::io::Error),
    WorldReadable(u32),
    Invalid(access::TokenFileError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(message) => write!(f, "{message}; see regd --help"),
            Error::Server(error) => write!(f, "{error}"),
            Error::Signals(_) => write!(f, "cannot install signal handlers"),
            Error::Thread(_) => write!(f, "cannot start a thread"),
            Error::TokenFile { path, problem } => match problem {
                TokenProblem::Unreadable(_) => write!(f, "cannot read token file {path}"),
                TokenProblem::WorldReadable(mode) => write!(
                    f,
                    "token file {path} is readable by every user (mode {mode:o}); run `chmod 600 {path}` (or 640 with a group regd is in) and start again"
                ),
                TokenProblem::Invalid(_) => write!(f, "token file {path} is not valid"),
            },
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Usage(_) => None,
            Error::Server(error) => error.source(),
            Error::Signals(error) | Error::Thread(error) => Some(error),
            Error::TokenFile { problem, .. } => match problem {
                TokenProblem::Unreadable(error) => Some(error),
                TokenProblem::WorldReadable(_) => None,
                TokenProblem::Invalid(error) => Some(error),
            },
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("regd: {}", regd::error_chain(&error));
            match error {
                Error::Usage(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn run() -> Result<(), Error> {
    let mut args = pico_args::Arguments::from_env();
    if args.contains(["-h", "--help"]) {
        print!("{}", help());
        return Ok(());
    }
    if args.contains(["-V", "--version"]) {
        println!("regd {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let mut settings = Settings { args };
    let config = settings.config()?;
    let level = settings.log_level()?;
    let rest = settings.args.finish();
    if let Some(extra) = rest.first() {
        return Err(Error::Usage(format!(
            "unexpected argument {:?}",
            extra.to_string_lossy()
        )));
    }
    regd::logger::init(level);

    let server = match inherited_listener()? {
        Some(listener) => Server::from_listener(config.clone(), listener),
        None => Server::bind(config.clone()),
    }
    .map_err(Error::Server)?;
    let address = server.local_address();
    // The one line on stdout: tests and operators learn the real port from it.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on http://{address}");
    let _ = stdout.flush();
    drop(stdout);
    log::info!(
        "regd {} listening on {address}; max connections {}, max polls {}, max registers {}, max body {} bytes, read timeout {:?}, max wait {:?}, default ttl {:?}",
        env!("CARGO_PKG_VERSION"),
        config.max_connections,
        config.service.max_polls,
        config.service.limits.max_registers,
        config.http.max_body_bytes,
        config.http.read_timeout,
        config.service.max_wait,
        config.service.default_ttl,
    );

    let access = &config.service.access;
    if access.tokens.is_empty() {
        log::info!("access control off: every client may read and write (see --token-file)");
    } else {
        log::info!(
            "access control on: {} tokens; loopback {}; /metrics {}",
            access.tokens.len(),
            if access.trust_loopback {
                "trusted"
            } else {
                "needs a token"
            },
            if access.open_metrics {
                "open"
            } else {
                "needs a token"
            },
        );
    }
    if config.service.web {
        if cfg!(feature = "web") {
            log::info!("web dashboard at http://{address}/");
        } else {
            log::warn!("this regd was built without the web feature; / answers 404");
        }
    }

    let mut signals = Signals::new([SIGTERM, SIGINT]).map_err(Error::Signals)?;
    let signals_handle = signals.handle();
    let shutdown = server.shutdown_handle();
    let signal_thread = thread::Builder::new()
        .name("regd-signals".to_string())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let name = if signal == SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
                log::info!("{name} received; answering held polls and shutting down");
                shutdown.shut_down();
            }
        })
        .map_err(Error::Signals)?;
    let (stop_watchdog, watchdog_stopped) = mpsc::channel::<()>();
    let watchdog = match regd::notify::watchdog_interval() {
        Some(interval) => Some(
            thread::Builder::new()
                .name("regd-watchdog".to_string())
                .spawn({
                    let serving = server.shutdown_handle();
                    move || keep_watchdog_fed(address, interval, &serving, &watchdog_stopped)
                })
                .map_err(Error::Thread)?,
        ),
        None => None,
    };
    if let Err(error) = regd::notify::notify(&format!("READY=1\nSTATUS=listening on {address}")) {
        log::warn!("cannot tell systemd that regd is ready: {error}");
    }

    let result = server.run().map_err(Error::Server);
    let _ = regd::notify::notify("STOPPING=1");
    drop(stop_watchdog);
    if let Some(watchdog) = watchdog {
        let _ = watchdog.join();
    }
    signals_handle.close();
    let _ = signal_thread.join();
    result
}

/// A listening socket handed over by systemd (`regd.socket`), if any.
fn inherited_listener() -> Result<Option<std::net::TcpListener>, Error> {
    let mut inherited = listenfd::ListenFd::from_env();
    if inherited.len() == 0 {
        return Ok(None);
    }
    let listener = inherited.take_tcp_listener(0).map_err(|error| {
        Error::Usage(format!(
            "the socket passed by systemd (LISTEN_FDS) is not a TCP listening socket: {error}"
        ))
    })?;
    if listener.is_some() {
        log::info!("using the listening socket passed by systemd; --addr is ignored");
    }
    Ok(listener)
}

/// Sends systemd's watchdog keep-alive twice per interval, but only after proving the
/// daemon healthy: a real `GET /healthz` through the listener, a connection thread,
/// the router and the registry lock. A wedged daemon stops the keep-alives and
/// systemd restarts it.
fn keep_watchdog_fed(
    address: SocketAddr,
    interval: Duration,
    serving: &server::ShutdownHandle,
    stopped: &mpsc::Receiver<()>,
) {
    let period = interval / 2;
    loop {
        if serving.is_serving() {
            match probe_health(address, period.min(Duration::from_secs(5))) {
                Ok(()) => {
                    let _ = regd::notify::notify("WATCHDOG=1");
                }
                Err(error) => {
                    log::warn!("health probe failed, withholding the watchdog keep-alive: {error}")
                }
            }
        }
        match stopped.recv_timeout(period) {
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            _ => return,
        }
    }
}

fn probe_health(address: SocketAddr, timeout: Duration) -> std::io::Result<()> {
    use std::io::{Error as IoError, Read};
    let target = if address.ip().is_unspecified() {
        match address {
            SocketAddr::V4(_) => SocketAddr::from(([127, 0, 0, 1], address.port())),
            SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, address.port())),
        }
    } else {
        address
    };
    let mut stream = std::net::TcpStream::connect_timeout(&target, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: regd\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    // At the connection limit a 503 still proves the accept loop is alive.
    if head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.1 503") {
        Ok(())
    } else {
        Err(IoError::other(format!(
            "unexpected answer {:?}",
            String::from_utf8_lossy(&head)
        )))
    }
}

struct Settings {
    args: pico_args::Arguments,
}

impl Settings {
    /// A flag's value, else its environment variable, else its default.
    fn raw(&mut self, flag: &'static str) -> Result<String, Error> {
        let setting = SETTINGS
            .iter()
            .find(|setting| setting.flag == flag)
            .ok_or_else(|| Error::Usage(format!("unknown setting {flag}")))?;
        let from_flag: Option<String> = self
            .args
            .opt_value_from_str(flag)
            .map_err(|error| Error::Usage(format!("{flag}: {error}")))?;
        Ok(from_flag
            .or_else(|| {
                std::env::var(setting.env)
                    .ok()
                    .filter(|value| !value.is_empty())
            })
            .unwrap_or_else(|| setting.default.to_string()))
    }

    /// A boolean flag: present, or its variable set to true/1/yes.
    fn switch(&mut self, flag: &'static str) -> Result<bool, Error> {
        Ok(self.args.contains(flag) || self.boolean_value(flag)?)
    }

    fn number<T: FromStr>(&mut self, flag: &'static str) -> Result<T, Error> {
        let text = self.raw(flag)?;
        text.trim()
            .parse()
            .map_err(|_| Error::Usage(format!("{flag} must be a whole number, got {text:?}")))
    }

    fn positive(&mut self, flag: &'static str) -> Result<usize, Error> {
        match self.number(flag)? {
            0 => Err(Error::Usage(format!("{flag} must be at least 1"))),
            value => Ok(value),
        }
    }

    fn duration(&mut self, flag: &'static str) -> Result<Duration, Error> {
        let text = self.raw(flag)?;
        match humantime::parse_duration(text.trim()) {
            Ok(duration) if !duration.is_zero() => Ok(duration),
            Ok(_) => Err(Error::Usage(format!("{flag} must be longer than 0"))),
            Err(error) => Err(Error::Usage(format!(
                "{flag} must be a duration such as 10s or 5m, got {text:?} ({error})"
            ))),
        }
    }

    /// A boolean setting that takes a value: `--web false`, or its variable.
    fn boolean_value(&mut self, flag: &'static str) -> Result<bool, Error> {
        let text = self.raw(flag)?;
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Ok(true),
            "false" | "off" | "no" | "0" => Ok(false),
            _ => Err(Error::Usage(format!(
                "{flag} (or its variable) must be true or false, got {text:?}"
            ))),
        }
    }

    fn log_level(&mut self) -> Result<LevelFilter, Error> {
        let text = self.raw("--log-level")?;
        match text.to_ascii_lowercase().as_str() {
            "error" => Ok(LevelFilter::Error),
            "warn" | "warning" => Ok(LevelFilter::Warn),
            "info" => Ok(LevelFilter::Info),
            "debug" => Ok(LevelFilter::Debug),
            "trace" => Ok(LevelFilter::Trace),
            "off" => Ok(LevelFilter::Off),
            _ => Err(Error::Usage(format!(
                "--log-level must be error, warn, info or debug, got {text:?}"
            ))),
        }
    }

    fn config(&mut self) -> Result<Config, Error> {
        let mut config = Config {
            address: self.raw("--addr")?,
            ..Config::default()
        };
        config.service.default_ttl = self.duration("--default-ttl")?;
        config.service.max_wait = self.duration("--max-wait")?;
        config.http.read_timeout = self.duration("--read-timeout")?;
        config.http.write_timeout = self.duration("--write-timeout")?;
        config.max_connections = self.positive("--max-connections")?;
        config.service.max_polls = self.positive("--max-polls")?;
        config.service.limits.max_registers = self.positive("--max-registers")?;
        config.service.limits.max_pending_requests = self.positive("--max-pending")?;
        config.http.max_body_bytes = self.number("--max-body")?;
        config.http.max_head_bytes = self.positive("--max-head")?;
        config.http.max_uri_bytes = self.positive("--max-uri")?;
        config.service.name_limits.max_name_bytes = self.positive("--max-name")?;
        config.service.name_limits.max_names = self.positive("--max-names")?;
        config.service.first_revision = unpredictable_revision();
        config.service.access.trust_loopback = self.switch("--trust-loopback")?;
        config.service.access.open_metrics = self.switch("--open-metrics")?;
        let token_file = self.raw("--token-file")?;
        if !token_file.is_empty() {
            config.service.access.tokens = load_tokens(&token_file)?;
        }
        // `--no-web` wins over `--web` and REGD_WEB: it is the one way to say "off"
        // without a value.
        let no_web = self.args.contains("--no-web");
        config.service.web = !no_web && self.boolean_value("--web")?;
        Ok(config)
    }
}

/// Reads the token file, refusing one that every user could read.
fn load_tokens(path: &str) -> Result<Vec<access::Token>, Error> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |problem| Error::TokenFile {
        path: path.to_string(),
        problem,
    };
    let metadata =
        std::fs::metadata(path).map_err(|error| fail(TokenProblem::Unreadable(error)))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o004 != 0 {
        return Err(fail(TokenProblem::WorldReadable(mode)));
    }
    let text =
        std::fs::read_to_string(path).map_err(|error| fail(TokenProblem::Unreadable(error)))?;
    access::parse_tokens(&text).map_err(|error| fail(TokenProblem::Invalid(error)))
}

/// A starting revision that differs from run to run, so that an `index` a client kept
/// from an earlier run is (almost surely) outside this run's range and answered at
/// once. Kept below 2^50 so JavaScript clients hold it exactly.
fn unpredictable_revision() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(std::process::id().into());
    (hasher.finish() >> 14) | 1
}

fn help() -> String {
    let mut text = format!(
        "regd {} — the register daemon\n\n\
         Usage: regd [OPTIONS]\n\n\
         Serves registers over HTTP (see README.md). Prints `listening on http://ADDR` once bound.\n\
         Every option may also be set through its environment variable.\n\nOptions:\n",
        env!("CARGO_PKG_VERSION")
    );
    for setting in SETTINGS {
        text.push_str(&format!(
            "  {:<18} {}\n  {:<18} [env {}] [default {}]\n",
            setting.flag, setting.help, "", setting.env, setting.default
        ));
    }
    text.push_str("  -h, --help         print this help\n  -V, --version      print the version\n");
    text
}
