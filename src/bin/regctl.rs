//! `regctl`, the command line for regd: provide, get, set, list, watch and delete
//! registers, and measure a regd (bench). It owns argument parsing and output formatting; the talking is done by
//! `regd::client` and every JSON shape comes from `regd::protocol::client`. Exit 0 on
//! success, 1 on failure or a register not found, 2 on a usage error. stdout carries
//! data only; a closed pipe ends the program quietly.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};
use regd::client::bench::{self as benchmark, Bench, Measurement};
use regd::client::{self, Client, Json, ProviderEvent, Register, Update};
use regd::protocol::client as wire;
use regd::protocol::{duration, json_string};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

/// What went wrong, and so how the program exits.
#[derive(Debug)]
enum Error {
    /// The command line is wrong (exit 2).
    Usage(String),
    /// A register asked for does not exist (exit 1).
    NotFound(String),
    /// Talking to regd failed (exit 1).
    Client(client::Error),
    /// Anything else that failed (exit 1).
    Failed(String),
    /// stdout was closed by the reader: stop quietly (exit 0).
    ClosedPipe,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(message) | Error::NotFound(message) | Error::Failed(message) => {
                f.write_str(message)
            }
            Error::Client(error @ client::Error::Connect { .. }) => write!(
                f,
                "{error} — is it running? set REGISTRY or --registry to its address"
            ),
            Error::Client(client::Error::Unauthorized {
                token_sent: false, ..
            }) => f.write_str("regd needs a token: set REGD_TOKEN or --token-file"),
            Error::Client(client::Error::Unauthorized {
                token_sent: true,
                message,
            }) => write!(
                f,
                "the token was refused ({message}); check REGD_TOKEN or --token-file"
            ),
            Error::Client(client::Error::Forbidden { message }) => write!(
                f,
                "the token's role may not do this: {message}; use a consumer token for get, set, list and watch, a provider token for provide and delete, or an admin token"
            ),
            Error::Client(error) => write!(f, "{error}"),
            Error::ClosedPipe => f.write_str("stdout was closed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The client's message already names its cause in words ("connection
        // refused"); its transport error would only repeat that, so the chain printed
        // by `main` stops here.
        None
    }
}

impl From<client::Error> for Error {
    fn from(error: client::Error) -> Self {
        Error::Client(error)
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(Error::ClosedPipe) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("regctl: {}", regd::error_chain(&error));
            match error {
                Error::Usage(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

const HELP: &str = "\
regctl — read, write and provide registers of a regd

usage: regctl [--registry URL] [--token-file PATH] COMMAND [ARGS]

commands:
  provide NAME [VALUE] [METADATA]   publish a register and keep it alive
  get NAME...                       print register values
  set NAME VALUE                    ask a register's provider for a new value
  list                              print every register
  watch [NAME...]                   print every change as it happens
  delete NAME...                    remove registers now
  bench                             measure this regd's request rates and latencies
  browse                            live full-screen browser of every register

options:
  --registry URL       regd's address (default: $REGISTRY, else http://localhost:8080)
  --token-file PATH    read the access token from PATH: its first word, in regd's token
                       file format, so a file holding one line `TOKEN [ROLE] [LABEL]`
                       will do; it must not be readable by every user (default: $REGD_TOKEN)
  -h, --help           help; `regctl COMMAND --help` for a command
  -V, --version        print the version

Values and metadata are JSON: 42, true, null, '\"text\"', '{\"unit\": \"°C\"}'.
Durations are written like 500ms, 5s, 1m.
Exit status: 0 success, 1 failure or register not found, 2 usage error.
";

const PROVIDE_HELP: &str = "\
usage: regctl provide NAME [VALUE] [METADATA] [--ttl 10s] [--read-only]
       regctl provide --file REGISTERS.json [--read-only]

Publishes a register (VALUE and METADATA are JSON; VALUE defaults to null) and keeps
it alive, refreshing it at half its ttl, until stdin ends or SIGINT/SIGTERM arrives;
then deletes it and exits 0.

Each line read from stdin is a new JSON value to publish. With --file, the file holds
{\"NAME\": {\"value\": V, \"metadata\": {...}, \"ttl\": \"5s\"}, ...} and each stdin
line is an object of new values by name, such as {\"lamp\": true}.

Every change request is printed to stdout as one JSON line, {\"name\": N, \"value\": V},
and applied unless --read-only is given.

options:
  --ttl DURATION   time to live of the register (default 10s)
  --file PATH      provide every register of a JSON file
  --read-only      print change requests without applying them
";

const GET_HELP: &str = "\
usage: regctl get NAME... [--metadata] [--json] [--wait DURATION]

Prints the JSON value of one register; for several, NAME=VALUE lines in argument
order. A missing register is an error (exit 1), unless --wait is given and it appears
in time.

options:
  --metadata       print {\"value\": V, \"metadata\": M} instead of the value alone
  --json           print one JSON object of values by name
  --wait DURATION  wait this long for missing registers to appear
";

const SET_HELP: &str = "\
usage: regctl set NAME VALUE [--timeout 2s] [--no-wait]

Sends a change request for NAME to its provider. By default waits until the register
takes VALUE (exit 0) or the timeout passes (exit 1, saying what the register holds).

options:
  --timeout DURATION   how long to wait for the register to take the value (default 2s)
  --no-wait            send the request and exit at once
";

const LIST_HELP: &str = "\
usage: regctl list [--metadata] [--json]

Prints every register sorted by name: aligned NAME  VALUE columns on a terminal,
NAME=VALUE lines otherwise.

options:
  --metadata   print {\"value\": V, \"metadata\": M} instead of the value alone
  --json       print one JSON object of values by name
";

const WATCH_HELP: &str = "\
usage: regctl watch [NAME...] [--json]

Prints the current state of the named registers (every register when no name is
given), then every change and removal as it happens, one line each, until
interrupted: NAME=VALUE for a value, NAME (removed) for a removal.

options:
  --json   print {\"name\": N, \"value\": V, \"metadata\": M} and {\"name\": N, \"removed\": true}
";

const BENCH_HELP: &str = "\
usage: regctl bench [--connections 4] [--duration 5s] [--registers 10] [--json]

Measures the regd at --registry (or $REGISTRY), with the token if one is given (it
needs an admin token, as it uses both resources). Four phases run one after another,
each for --duration:

  PUT /provider      publishes registers, each request a new value
  GET /consumer      reads one register per request
  change request     PUT /consumer -> a waiting GET /provider answered
  wake               PUT /provider -> a waiting GET /consumer answered

and prints requests (or round trips) per second and latency percentiles (p50, p99,
max) as a table. The two waiting phases use half the connections as waiters and half
as senders. The registers are named regctl-bench.PID.N and removed at the end, also
on Ctrl-C. Mind that regctl runs on the machine it measures when given a local
address: on a small board it takes CPU from regd.

options:
  --connections N    concurrent connections (default 4, at most 256)
  --duration D       how long each phase runs (default 5s)
  --registers N      registers the requests spread over (default 10, at most 10000)
  --json             print one JSON object instead of the table
";

const DELETE_HELP: &str = "\
usage: regctl delete NAME...

Removes registers now; their consumers see them go at once.
";

const BROWSE_HELP: &str = "\
usage: regctl browse

A live full-screen browser of every register: filter, flat list or tree, details
(metadata, ttl, time to expiry, revision), and editing values by change requests.
The keys are listed at the bottom of the screen; q or Esc quits. Honours NO_COLOR.
";

fn run() -> Result<ExitCode, Error> {
    let mut args = pico_args::Arguments::from_env();
    let registry: Option<String> = args.opt_value_from_str("--registry").map_err(usage_error)?;
    let token_file: Option<String> = args
        .opt_value_from_str("--token-file")
        .map_err(usage_error)?;
    let command = match args.subcommand().map_err(usage_error)? {
        Some(command) => command,
        None if args.contains(["-h", "--help"]) => return print_help(HELP),
        None if args.contains(["-V", "--version"]) => {
            emit(&format!("regctl {}", env!("CARGO_PKG_VERSION")))?;
            return Ok(ExitCode::SUCCESS);
        }
        None => {
            return Err(Error::Usage(
                "a command is needed: provide, get, set, list, watch, delete, bench or browse; see regctl --help"
                    .to_string(),
            ));
        }
    };
    let help = match command.as_str() {
        "provide" => PROVIDE_HELP,
        "get" => GET_HELP,
        "set" => SET_HELP,
        "list" => LIST_HELP,
        "watch" => WATCH_HELP,
        "delete" => DELETE_HELP,
        "bench" => BENCH_HELP,
        "browse" => BROWSE_HELP,
        other => {
            return Err(Error::Usage(format!(
                "unknown command {other:?}; the commands are provide, get, set, list, watch, delete, bench and browse"
            )));
        }
    };
    if args.contains(["-h", "--help"]) {
        return print_help(help);
    }
    let url = registry
        .filter(|url| !url.is_empty())
        .or_else(|| std::env::var(client::ENV_VAR).ok())
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| client::DEFAULT_URL.to_string());
    let token = match token_file.filter(|path| !path.is_empty()) {
        Some(path) => Some(read_token_file(&path)?),
        None => std::env::var(client::TOKEN_ENV_VAR)
            .ok()
            .map(|token| token.trim().to_string())
            .filter(|token| !token.is_empty()),
    };
    let connect = || {
        let client = Client::new(url.trim()).map_err(|error| Error::Usage(error.to_string()))?;
        match &token {
            Some(token) => client
                .with_token(token.as_str())
                .map_err(|error| Error::Usage(error.to_string())),
            None => Ok(client),
        }
    };
    match command.as_str() {
        "provide" => provide(args, connect()?),
        "get" => get(args, connect()?),
        "set" => set(args, connect()?),
        "list" => list(args, connect()?),
        "watch" => watch(args, connect()?),
        "bench" => bench(args, connect()?),
        "browse" => browse(args, connect()?),
        _ => delete(args, connect()?),
    }
}

/// The token in a token file: the first word of its first line that is neither empty
/// nor a comment — regd's own format (`TOKEN ROLE [LABEL]`), so an operator can hand
/// out a one-line copy. Like regd, refuses a file every user can read.
fn read_token_file(path: &str) -> Result<String, Error> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path)
        .map_err(|error| Error::Failed(format!("cannot read token file {path}: {error}")))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o004 != 0 {
        return Err(Error::Failed(format!(
            "token file {path} is readable by every user (mode {mode:o}); run `chmod 600 {path}` and try again"
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|error| Error::Failed(format!("cannot read token file {path}: {error}")))?;
    text.lines()
        .filter_map(|line| line.split('#').next()?.split_whitespace().next())
        .next()
        .map(str::to_string)
        .ok_or_else(|| {
            Error::Failed(format!(
                "token file {path} holds no token; put the token on a line of its own"
            ))
        })
}

fn print_help(text: &str) -> Result<ExitCode, Error> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes()).map_err(output_error)?;
    Ok(ExitCode::SUCCESS)
}

fn usage_error(error: pico_args::Error) -> Error {
    Error::Usage(format!("{error}; see regctl --help"))
}

/// The remaining free arguments; an unknown option is a usage error. Names that start
/// with `-` can follow `--`.
fn free_arguments(args: pico_args::Arguments, command: &str) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    let mut after_dashes = false;
    for arg in args.finish() {
        let arg = into_string(arg)?;
        if !after_dashes && arg == "--" {
            after_dashes = true;
        } else if !after_dashes && arg.starts_with('-') && arg.len() > 1 {
            return Err(Error::Usage(format!(
                "unknown option {arg:?}; see regctl {command} --help (put -- before names that start with -)"
            )));
        } else {
            names.push(arg);
        }
    }
    Ok(names)
}

fn into_string(arg: OsString) -> Result<String, Error> {
    arg.into_string()
        .map_err(|arg| Error::Usage(format!("argument {arg:?} is not valid UTF-8")))
}

fn duration_option(
    args: &mut pico_args::Arguments,
    flag: &'static str,
) -> Result<Option<Duration>, Error> {
    let text: Option<String> = args.opt_value_from_str(flag).map_err(usage_error)?;
    text.map(|text| {
        parse_duration(&text).map_err(|reason| Error::Usage(format!("{flag}: {reason}")))
    })
    .transpose()
}

/// A human duration (`5s`, `1m 30s`, `500ms`), or the Go form regd uses (`1.5s`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .ok()
        .or_else(|| duration::parse(text).ok().flatten())
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| format!("{text:?} is not a positive duration such as 500ms, 5s or 1m"))
}

/// Parses a JSON argument, with a hint for the common mistake of a bare word.
fn json_argument(what: &str, text: &str) -> Result<Json, Error> {
    Json::parse(text).map_err(|error| {
        Error::Usage(format!(
            "{what} must be JSON, got {text:?} ({error}); to send a string, quote it: '\"{text}\"'"
        ))
    })
}

/// Writes one line of data to stdout.
fn emit(line: &str) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(output_error)
}

fn output_error(error: io::Error) -> Error {
    if error.kind() == io::ErrorKind::BrokenPipe {
        Error::ClosedPipe
    } else {
        Error::Failed(format!("cannot write to stdout: {error}"))
    }
}

/// A register as printed: its value, or value and metadata.
fn shown(register: &Register, metadata: bool) -> String {
    if metadata {
        wire::encode_register(register)
    } else {
        register.value.to_string()
    }
}

/// SIGINT and SIGTERM as a channel, from a named thread joined on drop.
struct Interrupts {
    received: Receiver<i32>,
    handle: Handle,
    thread: Option<thread::JoinHandle<()>>,
}

impl Interrupts {
    fn start() -> Result<Interrupts, Error> {
        let mut signals = Signals::new([SIGINT, SIGTERM])
            .map_err(|error| Error::Failed(format!("cannot handle signals: {error}")))?;
        let handle = signals.handle();
        let (sender, received) = crossbeam_channel::bounded(1);
        let thread = thread::Builder::new()
            .name("regctl-signals".to_string())
            .spawn(move || {
                for signal in signals.forever() {
                    let _ = sender.try_send(signal);
                }
            })
            .map_err(|error| Error::Failed(format!("cannot start a thread: {error}")))?;
        Ok(Interrupts {
            received,
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Lines of stdin, numbered from 1, as a channel that disconnects at the end of input.
///
/// The reading thread is not joined: a read blocked on a terminal or pipe cannot be
/// interrupted portably, and it only ever ends with the process (after the provider
/// has been closed), so it holds nothing that needs cleaning up.
fn stdin_lines() -> Result<Receiver<(usize, io::Result<String>)>, Error> {
    let (sender, lines) = crossbeam_channel::bounded(16);
    thread::Builder::new()
        .name("regctl-stdin".to_string())
        .spawn(move || {
            for (number, line) in io::stdin().lock().lines().enumerate() {
                let failed = line.is_err();
                if sender.send((number + 1, line)).is_err() || failed {
                    return;
                }
            }
        })
        .map_err(|error| Error::Failed(format!("cannot start a thread: {error}")))?;
    Ok(lines)
}

fn provide(mut args: pico_args::Arguments, client: Client) -> Result<ExitCode, Error> {
    let ttl = duration_option(&mut args, "--ttl")?.unwrap_or(Duration::from_secs(10));
    let file: Option<String> = args.opt_value_from_str("--file").map_err(usage_error)?;
    let read_only = args.contains("--read-only");
    let free = free_arguments(args, "provide")?;
    let registers = match (&file, free.as_slice()) {
        (Some(path), []) => registers_file(path, ttl)?,
        (Some(_), _) => {
            return Err(Error::Usage(
                "give either --file or NAME [VALUE] [METADATA], not both".to_string(),
            ));
        }
        (None, [_, _, _, extra, ..]) => {
            return Err(Error::Usage(format!(
                "unexpected argument {extra:?}; provide takes NAME [VALUE] [METADATA]"
            )));
        }
        (None, [name, rest @ ..]) => {
            let value = match rest.first() {
                Some(text) => json_argument("VALUE", text)?,
                None => Json::null(),
            };
            let metadata = rest
                .get(1)
                .map(|text| json_argument("METADATA", text))
                .transpose()?;
            if metadata
                .as_ref()
                .is_some_and(|metadata| !metadata.is_object())
            {
                return Err(Error::Usage(
                    "METADATA must be a JSON object such as '{\"unit\": \"°C\"}'".to_string(),
                ));
            }
            vec![(name.clone(), value, metadata, ttl)]
        }
        (None, []) => {
            return Err(Error::Usage(
                "provide needs a NAME (or --file); see regctl provide --help".to_string(),
            ));
        }
    };
    let single = (registers.len() == 1 && file.is_none()).then(|| registers[0].0.clone());
    let interrupts = Interrupts::start()?;
    let provider = client.provider();
    provider.publish_many(registers)?;
    let lines = stdin_lines()?;
    let outcome = serve(&provider, &interrupts, &lines, single.as_deref(), read_only);
    drop(interrupts);
    // Delete the registers even when printing failed (a closed stdout).
    let closed = provider.close();
    outcome?;
    closed?;
    Ok(ExitCode::SUCCESS)
}

/// The provide loop: until stdin ends or a signal arrives.
fn serve(
    provider: &client::Provider,
    interrupts: &Interrupts,
    lines: &Receiver<(usize, io::Result<String>)>,
    single: Option<&str>,
    read_only: bool,
) -> Result<(), Error> {
    loop {
        select! {
            recv(interrupts.received) -> _ => return Ok(()),
            recv(lines) -> line => {
                let Ok((number, line)) = line else { return Ok(()) };
                let line = line.map_err(|error| Error::Failed(format!("cannot read stdin: {error}")))?;
                if line.trim().is_empty() {
                    continue;
                }
                let values = match single {
                    Some(name) => Json::parse(&line)
                        .map(|value| vec![(name.to_string(), value)])
                        .map_err(|error| error.to_string()),
                    None => wire::decode_values(&line).map_err(|error| error.to_string()),
                };
                match values {
                    Ok(values) => {
                        for (name, value) in values {
                            if let Err(error) = provider.update(&name, value) {
                                eprintln!("regctl: stdin line {number}: {error}");
                            }
                        }
                    }
                    Err(error) => eprintln!("regctl: stdin line {number} skipped: {error}"),
                }
            }
            recv(provider.events()) -> event => match event {
                Ok(ProviderEvent::Request { name, value }) => {
                    let name_json = json_string(&name);
                    emit(&wire::object([("name", name_json.as_str()), ("value", value.as_str())]))?;
                    if !read_only {
                        if let Err(error) = provider.update(&name, value) {
                            eprintln!("regctl: could not apply the request for {name:?}: {error}");
                        }
                    }
                }
                // Retrying with the same token cannot help.
                Ok(ProviderEvent::Failed(error)) if error.is_access_denied() => return Err(error.into()),
                Ok(ProviderEvent::Failed(error)) => eprintln!("regctl: {error}; retrying"),
                Ok(ProviderEvent::Recovered) => eprintln!("regctl: regd answers again"),
                Err(_) => return Err(Error::Client(client::Error::Closed)),
            },
        }
    }
}

type Registration = (String, Json, Option<Json>, Duration);

fn registers_file(path: &str, default_ttl: Duration) -> Result<Vec<Registration>, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| Error::Failed(format!("cannot read {path}: {error}")))?;
    let entries = wire::decode_registers_file(&text)
        .map_err(|error| Error::Failed(format!("{path}: {error}")))?;
    if entries.is_empty() {
        return Err(Error::Failed(format!("{path} holds no registers")));
    }
    entries
        .into_iter()
        .map(|(name, entry)| {
            let ttl = match &entry.ttl {
                Some(text) => parse_duration(text)
                    .map_err(|reason| Error::Failed(format!("{path}: {name:?}.ttl: {reason}")))?,
                None => default_ttl,
            };
            Ok((name, entry.value, entry.metadata, ttl))
        })
        .collect()
}

fn get(mut args: pico_args::Arguments, client: Client) -> Result<ExitCode, Error> {
    let metadata = args.contains("--metadata");
    let json = args.contains("--json");
    let wait = duration_option(&mut args, "--wait")?;
    let mut names = free_arguments(args, "get")?;
    if names.is_empty() {
        return Err(Error::Usage(
            "get needs at least one NAME; see regctl get --help".to_string(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|name| seen.insert(name.clone()));
    let registers = read_until_present(&client, &names, wait)?;
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| !registers.contains_key(*name))
        .collect();
    if !missing.is_empty() {
        let list = missing
            .iter()
            .map(|name| format!("{name:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let waited = wait.map_or(String::new(), |wait| {
            format!(" (waited {})", humantime::format_duration(wait))
        });
        let noun = if missing.len() == 1 {
            "register does not exist"
        } else {
            "registers do not exist"
        };
        return Err(Error::NotFound(format!("{noun}: {list}{waited}")));
    }
    if json {
        let shown: Vec<(&str, String)> = names
            .iter()
            .map(|name| (name.as_str(), shown(&registers[name], metadata)))
            .collect();
        emit(&wire::object(
            shown.iter().map(|(name, text)| (*name, text.as_str())),
        ))?;
    } else if let [name] = names.as_slice() {
        emit(&shown(&registers[name], metadata))?;
    } else {
        for name in &names {
            emit(&format!("{name}={}", shown(&registers[name], metadata)))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the registers; with a wait, keeps long polling until all exist or it passes.
fn read_until_present(
    client: &Client,
    names: &[String],
    wait: Option<Duration>,
) -> Result<BTreeMap<String, Register>, Error> {
    let deadline = wait.map(|wait| Instant::now() + wait);
    let mut snapshot = client.poll(names, None, None)?;
    while let Some(deadline) = deadline {
        if names
            .iter()
            .all(|name| snapshot.registers.contains_key(name))
        {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(1) {
            break;
        }
        snapshot = client.poll(names, Some(left), snapshot.index)?;
    }
    Ok(snapshot.registers)
}

fn set(mut args: pico_args::Arguments, client: Client) -> Result<ExitCode, Error> {
    let timeout = duration_option(&mut args, "--timeout")?.unwrap_or(Duration::from_secs(2));
    let no_wait = args.contains("--no-wait");
    let free = free_arguments(args, "set")?;
    let [name, value] = free.as_slice() else {
        return Err(Error::Usage(
            "set takes NAME VALUE; see regctl set --help".to_string(),
        ));
    };
    let value = json_argument("VALUE", value)?;
    let names = [name.as_str()];
    let before = client.poll(&names, None, None)?;
    client.request(name, &value)?;
    if no_wait {
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = Instant::now() + timeout;
    let mut snapshot = before;
    loop {
        let current = snapshot.registers.get(name.as_str());
        if current.is_some_and(|register| register.value == value) {
            return Ok(ExitCode::SUCCESS);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(1) {
            let waited = humantime::format_duration(timeout);
            return Err(Error::Failed(match current {
                Some(register) => format!(
                    "register {name:?} did not take {value} within {waited}; its value is {} (is its provider running, and not read-only?)",
                    register.value
                ),
                None => format!(
                    "register {name:?} does not exist, so nothing took {value} within {waited}; the request waits for a provider of {name:?}"
                ),
            }));
        }
        snapshot = client.poll(&names, Some(left), snapshot.index)?;
    }
}

fn list(mut args: pico_args::Arguments, client: Client) -> Result<ExitCode, Error> {
    let metadata = args.contains("--metadata");
    let json = args.contains("--json");
    free_arguments(args, "list")?
        .first()
        .map_or(Ok(()), |extra| {
            Err(Error::Usage(format!(
                "unexpected argument {extra:?}; list takes no names (use get)"
            )))
        })?;
    let registers = client.list()?;
    let rows: Vec<(&str, String)> = registers
        .iter()
        .map(|(name, register)| (name.as_str(), shown(register, metadata)))
        .collect();
    if json {
        emit(&wire::object(
            rows.iter().map(|(name, text)| (*name, text.as_str())),
        ))?;
    } else if io::stdout().is_terminal() {
        let width = rows
            .iter()
            .map(|(name, _)| name.chars().count())
            .max()
            .unwrap_or(0);
        for (name, text) in &rows {
            emit(&format!("{name:<width$}  {text}"))?;
        }
    } else {
        for (name, text) in &rows {
            emit(&format!("{name}={text}"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn watch(mut args: pico_args::Arguments, client: Client) -> Result<ExitCode, Error> {
    let json = args.contains("--json");
    let names = free_arguments(args, "watch")?;
    let interrupts = Interrupts::start()?;
    let consumer = client.consumer();
    if names.is_empty() {
        consumer.subscribe_all();
    } else {
        consumer.subscribe(names);
    }
    loop {
        select! {
            recv(interrupts.received) -> _ => return Ok(ExitCode::SUCCESS),
            recv(consumer.updates()) -> update => match update {
                Ok(Update::Changed { name, register }) => {
                    if json {
                        let name_json = json_string(&name);
                        let mut members = vec![("name", name_json.as_str()), ("value", register.value.as_str())];
                        if let Some(metadata) = &register.metadata {
                            members.push(("metadata", metadata.as_str()));
                        }
                        emit(&wire::object(members))?;
                    } else {
                        emit(&format!("{name}={}", register.value))?;
                    }
                }
                Ok(Update::Removed { name }) => {
                    if json {
                        let name_json = json_string(&name);
                        emit(&wire::object([("name", name_json.as_str()), ("removed", "true")]))?;
                    } else {
                        emit(&format!("{name} (removed)"))?;
                    }
                }
                // Retrying with the same token cannot help.
                Ok(Update::Failed(error)) if error.is_access_denied() => return Err(error.into()),
                Ok(Update::Failed(error)) => eprintln!("regctl: {error}; retrying"),
                Ok(Update::Recovered) => eprintln!("regctl: regd answers again"),
                Err(_) => return Err(Error::Client(client::Error::Closed)),
            },
        }
    }
}

fn delete(args: pico_args::Arguments, client: Client) -> Result<ExitCode, Error> {
    let names = free_arguments(args, "delete")?;
    if names.is_empty() {
        return Err(Error::Usage(
            "delete needs at least one NAME; see regctl delete --help".to_string(),
        ));
    }
    client.delete(&names)?;
    Ok(ExitCode::SUCCESS)
}

fn bench(mut args: pico_args::Arguments, client: Client) -> Result<ExitCode, Error> {
    let connections = count_option(&mut args, "--connections", 4, benchmark::MAX_CONNECTIONS)?;
    let registers = count_option(&mut args, "--registers", 10, benchmark::MAX_REGISTERS)?;
    let duration = duration_option(&mut args, "--duration")?.unwrap_or(Duration::from_secs(5));
    let json = args.contains("--json");
    if let Some(extra) = free_arguments(args, "bench")?.first() {
        return Err(Error::Usage(format!(
            "unexpected argument {extra:?}; bench takes only options, see regctl bench --help"
        )));
    }
    let prefix = format!("regctl-bench.{}.", std::process::id());
    let settings = benchmark::Settings::new(&prefix, connections, duration, registers);
    let bench = Bench::new(&client, settings).map_err(|error| Error::Usage(error.to_string()))?;
    eprintln!(
        "regctl: measuring {} for about {}: {} phases of {}, {connections} connections, {registers} registers",
        client.url(),
        humantime::format_duration(duration * benchmark::Phase::ALL.len() as u32),
        benchmark::Phase::ALL.len(),
        humantime::format_duration(duration),
    );
    let interrupts = Interrupts::start()?;
    let stopper = bench.stopper();
    let (done, finished) = crossbeam_channel::bounded(1);
    let report = thread::scope(|scope| {
        let runner = thread::Builder::new()
            .name("regctl-bench".to_string())
            .spawn_scoped(scope, || {
                let report = bench.run();
                let _ = done.send(());
                report
            })
            .map_err(|error| Error::Failed(format!("cannot start a thread: {error}")))?;
        select! {
            recv(finished) -> _ => {}
            // The bench ends its phase at once and removes its registers.
            recv(interrupts.received) -> _ => stopper.stop(),
        }
        runner
            .join()
            .map_err(|_| Error::Failed("the bench failed unexpectedly".to_string()))
    })?;
    drop(interrupts);
    let report = report?;
    let settings = [
        ("registry", json_string(client.url())),
        ("connections", connections.to_string()),
        ("registers", registers.to_string()),
        ("duration_ms", duration.as_millis().to_string()),
    ];
    if json {
        emit(&bench_json(&settings, &report.measurements))?;
    } else {
        emit(&bench_table(&report.measurements))?;
    }
    if report.stopped {
        return Err(Error::Failed(
            "bench interrupted; only the phases that finished are shown, and its registers were removed"
                .to_string(),
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// A whole number option between 1 and `max`.
fn count_option(
    args: &mut pico_args::Arguments,
    flag: &'static str,
    default: usize,
    max: usize,
) -> Result<usize, Error> {
    let text: Option<String> = args.opt_value_from_str(flag).map_err(usage_error)?;
    let Some(text) = text else {
        return Ok(default);
    };
    text.parse::<usize>()
        .ok()
        .filter(|count| (1..=max).contains(count))
        .ok_or_else(|| {
            Error::Usage(format!(
                "{flag}: expected a whole number from 1 to {max}, got {text:?}"
            ))
        })
}

/// The measurements as an aligned table (without a trailing newline).
fn bench_table(measurements: &[Measurement]) -> String {
    let header = ["phase", "requests", "req/s", "p50", "p99", "max"];
    let mut rows: Vec<[String; 6]> = vec![header.map(str::to_string)];
    for row in measurements {
        rows.push([
            row.phase.label().to_string(),
            row.count.to_string(),
            format!("{:.0}", row.per_second()),
            latency(row.p50),
            latency(row.p99),
            latency(row.max),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let mut line = format!("{:<width$}", row[0], width = widths[0]);
            for (cell, width) in row.iter().zip(&widths).skip(1) {
                line.push_str(&format!("  {cell:>width$}"));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A latency for people: whole microseconds below a millisecond, else two decimals.
fn latency(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.0}µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2}ms", micros / 1e3)
    } else {
        format!("{:.2}s", micros / 1e6)
    }
}

/// The measurements as one JSON object: the settings, then one entry per phase with
/// latencies in microseconds.
fn bench_json(settings: &[(&str, String)], measurements: &[Measurement]) -> String {
    let micros = |duration: Duration| wire::number(duration.as_secs_f64() * 1e6, 1);
    let phases: Vec<String> = measurements
        .iter()
        .map(|row| {
            let members = [
                ("phase", json_string(row.phase.key())),
                ("label", json_string(row.phase.label())),
                ("requests", row.count.to_string()),
                ("per_second", wire::number(row.per_second(), 1)),
                ("p50_us", micros(row.p50)),
                ("p99_us", micros(row.p99)),
                ("max_us", micros(row.max)),
            ];
            wire::object(members.iter().map(|(key, value)| (*key, value.as_str())))
        })
        .collect();
    let phases = wire::array(phases.iter().map(String::as_str));
    wire::object(
        settings
            .iter()
            .map(|(key, value)| (*key, value.as_str()))
            .chain([("phases", phases.as_str())]),
    )
}

#[cfg(feature = "tui")]
fn browse(args: pico_args::Arguments, client: Client) -> Result<ExitCode, Error> {
    if let Some(extra) = free_arguments(args, "browse")?.first() {
        return Err(Error::Usage(format!(
            "unexpected argument {extra:?}; browse takes no arguments (filter inside with /)"
        )));
    }
    regd::browse::run(&client).map_err(|error| Error::Failed(error.to_string()))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "tui"))]
fn browse(_args: pico_args::Arguments, _client: Client) -> Result<ExitCode, Error> {
    Err(Error::Failed(
        "this regctl was built without the terminal browser (cargo feature \"tui\"); use list or watch, or rebuild with the feature".to_string(),
    ))
}
