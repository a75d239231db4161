//! One MCP session over stdio: the lifecycle (initialize, version negotiation,
//! capabilities), the dispatch of each request to its method, and the requests in
//! flight. The main thread only reads stdin and dispatches, so it always answers `ping`
//! and `notifications/cancelled` at once; every request that talks to regd runs on a
//! thread of its own (`regctl-mcp-call`) with a connection of its own, which cancelling
//! shuts down. Invariants: requests take effect in the order they arrived — each starts
//! once the one before it has ended or, if that one waits (`wait_for_change`,
//! `request_change`), has begun to wait — so a client that sends requests back to back
//! gets the answers it would get one at a time; each request gets exactly one answer,
//! or none once cancelled; at the end of stdin, calls that wait are cut short at once
//! and the others get [`GRACE`] to finish, then every thread is joined before `serve`
//! returns.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use regd::client::Client;
use serde_json::value::RawValue;

use super::calls::{self, Outcome, Seen, Turn};
use super::jsonrpc::{self, Failure, Id, Incoming};
use super::params::Members;
use super::resources::{self, Follower};
use super::tools::{self, Refusal};
use super::transport::{self, Line, Output};
use crate::output;

/// The protocol revisions this server speaks, newest first. A client asking for another
/// (older or unknown) one is answered with the newest, as the specification says; it
/// then decides whether to go on.
const VERSIONS: [&str; 2] = ["2025-11-25", "2025-06-18"];

/// Requests in flight at most. Beyond it, the next message is read once a request that
/// does not wait ends; when all of them wait, more are refused until one is answered.
pub const MAX_CALLS: usize = 16;

/// At the end of stdin, how long calls that do not wait may take to finish.
const GRACE: Duration = Duration::from_secs(2);

/// The methods this server has (any other is `-32601`).
const METHODS: [&str; 9] = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// What this server offers: tools (a list that never changes) and resources with
/// subscriptions and list-changed notifications; no prompts, logging or completions.
const CAPABILITIES: &str =
    r#"{"tools":{"listChanged":false},"resources":{"subscribe":true,"listChanged":true}}"#;

/// How the session behaves.
pub struct Options {
    /// Offer only the tools that read.
    pub read_only: bool,
}

/// Serves one session: reads messages from `input` until it ends, answers on `out`.
pub fn serve(
    client: Client,
    options: Options,
    input: impl BufRead,
    out: impl Write + Send + 'static,
) -> io::Result<()> {
    let (output, writer) = transport::start_writer(out)?;
    let mut session = Session::new(client, options, output);
    let result = session.read(input);
    session.close();
    drop(session);
    let _ = writer.join();
    result
}

/// What the threads of a call share with the session.
struct Shared {
    seen: Seen,
    follower: Arc<Follower>,
}

struct InFlight {
    client: Client,
    cancelled: Arc<AtomicBool>,
    waits: bool,
    thread: thread::JoinHandle<()>,
}

impl InFlight {
    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.client.shutdown();
    }
}

struct Session {
    client: Client,
    read_only: bool,
    output: Output,
    /// The negotiated revision, once initialized.
    version: Option<&'static str>,
    shared: Arc<Shared>,
    calls: BTreeMap<Id, InFlight>,
    finished: (Sender<Id>, Receiver<Id>),
    /// Disconnects when the latest request passes its turn; the next one waits for it.
    last_turn: Option<Receiver<()>>,
}

/// The work of a call thread: its answer, from its own client. Boxed, so one thread
/// body serves every method.
type Job = Box<dyn FnOnce(&Client, &Shared, &mut Turn) -> Result<String, Failure> + Send>;

/// What a method gives: an answer now, or an answer later from a call thread.
enum Answer {
    Now(Result<String, Failure>),
    Later,
}

impl Session {
    fn new(client: Client, options: Options, output: Output) -> Session {
        let follower = Follower::new(client.with_own_connection(), output.clone());
        Session {
            client,
            read_only: options.read_only,
            output,
            version: None,
            shared: Arc::new(Shared {
                seen: Seen::default(),
                follower,
            }),
            calls: BTreeMap::new(),
            finished: crossbeam_channel::unbounded(),
            last_turn: None,
        }
    }

    fn read(&mut self, mut input: impl BufRead) -> io::Result<()> {
        let mut buffer = Vec::new();
        loop {
            match transport::read_line(&mut input, &mut buffer)? {
                Line::End => return Ok(()),
                Line::TooLong(length) => self.send_error(
                    &Id::null(),
                    &Failure::new(
                        jsonrpc::INVALID_REQUEST,
                        format!(
                            "a message of {length} bytes is longer than the {} this server reads; it was skipped",
                            transport::MAX_MESSAGE
                        ),
                    ),
                ),
                Line::Message(line) if line.trim_ascii().is_empty() => {}
                Line::Message(line) => self.handle(jsonrpc::parse(&line)),
            }
        }
    }

    fn send_error(&self, id: &Id, failure: &Failure) {
        self.output.send(jsonrpc::error(id, failure));
    }

    fn handle(&mut self, incoming: Incoming) {
        self.reap();
        match incoming {
            Incoming::Invalid { id, failure } => self.send_error(&id, &failure),
            Incoming::Answer => {}
            Incoming::Notification { method, params } => {
                if method == "notifications/cancelled" {
                    self.cancel(params.as_deref());
                }
                // notifications/initialized needs nothing: the session is ready once
                // initialize is answered. Unknown notifications are ignored, as
                // JSON-RPC asks.
            }
            Incoming::Request { id, method, params } => {
                if self.calls.contains_key(&id) {
                    return self.send_error(
                        &id,
                        &Failure::new(
                            jsonrpc::INVALID_REQUEST,
                            format!(
                                "id {} is already used by a request in flight; give each request an id of its own",
                                id.as_json()
                            ),
                        ),
                    );
                }
                if let Answer::Now(answer) = self.request(&id, &method, params.as_deref()) {
                    match answer {
                        Ok(result) => self.output.send(jsonrpc::result(&id, &result)),
                        Err(failure) => self.send_error(&id, &failure),
                    }
                }
            }
        }
    }

    fn request(&mut self, id: &Id, method: &str, raw: Option<&RawValue>) -> Answer {
        if !METHODS.contains(&method) {
            return Answer::Now(Err(Failure::new(
                jsonrpc::METHOD_NOT_FOUND,
                format!(
                    "unknown method {}; this server has {}",
                    output::string(method),
                    METHODS.join(", ")
                ),
            )));
        }
        let params = match Members::of(raw, "params") {
            Ok(params) => params,
            Err(invalid) => return Answer::Now(Err(Failure::invalid_params(invalid.0))),
        };
        match method {
            "initialize" => return Answer::Now(self.initialize(&params)),
            "ping" => return Answer::Now(Ok("{}".to_string())),
            _ => {}
        }
        if self.version.is_none() {
            return Answer::Now(Err(Failure::new(
                jsonrpc::INVALID_REQUEST,
                format!(
                    "{method} before initialize: the session starts with an initialize request"
                ),
            )));
        }
        match method {
            "tools/list" => Answer::Now(tools::list(self.read_only).ok_or_else(|| {
                Failure::new(
                    jsonrpc::INTERNAL_ERROR,
                    "the tool catalog of this regctl is damaged",
                )
            })),
            "tools/call" => self.call_tool(id, &params),
            "resources/templates/list" => Answer::Now(Ok(resources::TEMPLATES.to_string())),
            "resources/list" => {
                let cursor = match params.string("cursor") {
                    Ok(cursor) => cursor,
                    Err(invalid) => return Answer::Now(Err(Failure::invalid_params(invalid.0))),
                };
                self.spawn(
                    id,
                    false,
                    Box::new(move |client, shared, _| {
                        let registers = client.list().map_err(regd_failure)?;
                        shared.follower.listed(&registers).map_err(thread_failure)?;
                        resources::page(&registers, cursor.as_deref())
                    }),
                )
            }
            "resources/read" => match resource_name(&params) {
                Err(failure) => Answer::Now(Err(failure)),
                Ok(name) => self.spawn(
                    id,
                    false,
                    Box::new(move |client, _, _| {
                        let mut registers = client.get(&[&name]).map_err(uri_failure)?;
                        match registers.remove(&name) {
                            Some(register) => Ok(resources::contents(&name, &register)),
                            None => Err(not_found(&name)),
                        }
                    }),
                ),
            },
            "resources/subscribe" => match resource_name(&params) {
                Err(failure) => Answer::Now(Err(failure)),
                Ok(name) => self.spawn(
                    id,
                    false,
                    Box::new(move |client, shared, _| {
                        // The state the subscription starts from, read on this call's
                        // own connection, so that cancelling cuts it short. regd down
                        // counts as "does not exist" (followed once regd is back); a
                        // name regd refuses is refused here, as it would make regd
                        // refuse the one long poll every subscription shares.
                        let current = match client.get(&[&name]) {
                            Ok(mut registers) => registers.remove(&name),
                            Err(error) if error.is_connect() => None,
                            Err(error) => return Err(uri_failure(error)),
                        };
                        shared
                            .follower
                            .subscribe(&name, current)
                            .map_err(thread_failure)?;
                        Ok("{}".to_string())
                    }),
                ),
            },
            // "resources/unsubscribe", the last of METHODS; in turn, like the
            // subscription it ends.
            _ => match resource_name(&params) {
                Err(failure) => Answer::Now(Err(failure)),
                Ok(name) => self.spawn(
                    id,
                    false,
                    Box::new(move |_, shared, _| {
                        shared.follower.unsubscribe(&name);
                        Ok("{}".to_string())
                    }),
                ),
            },
        }
    }

    fn initialize(&mut self, params: &Members) -> Result<String, Failure> {
        if self.version.is_some() {
            return Err(Failure::new(
                jsonrpc::INVALID_REQUEST,
                "the session is initialized already; initialize comes once, first",
            ));
        }
        let requested = params
            .required_string(
                "protocolVersion",
                "the protocol revision the client speaks, such as \"2025-11-25\"",
            )
            .map_err(|invalid| Failure::invalid_params(invalid.0))?;
        let version = VERSIONS
            .iter()
            .find(|version| **version == requested)
            .unwrap_or(&VERSIONS[0]);
        self.version = Some(version);
        let client = params.object("clientInfo", "params.clientInfo").ok();
        let client_name = client
            .as_ref()
            .and_then(|info| info.string("name").ok().flatten())
            .unwrap_or_else(|| "an MCP client".to_string());
        eprintln!(
            "regctl mcp: {client_name} connected (asked for MCP {requested}, speaking {version}); regd at {}{}",
            self.client.url(),
            if self.read_only { ", read-only" } else { "" }
        );
        let version = output::string(version);
        let server = output::object([
            ("name", "\"reg-registry\""),
            ("title", "\"regd registers\""),
            ("version", &output::string(env!("CARGO_PKG_VERSION"))),
        ]);
        Ok(output::object([
            ("protocolVersion", version.as_str()),
            ("capabilities", CAPABILITIES),
            ("serverInfo", &server),
            (
                "instructions",
                &output::string(&instructions(self.read_only)),
            ),
        ]))
    }

    fn call_tool(&mut self, id: &Id, params: &Members) -> Answer {
        let read = || -> Result<(String, Members), Failure> {
            let name = params
                .required_string("name", "the tool's name, such as \"get_register\"")
                .map_err(|invalid| Failure::invalid_params(invalid.0))?;
            let arguments = params
                .object("arguments", "params.arguments")
                .map_err(|invalid| Failure::invalid_params(invalid.0))?;
            Ok((name, arguments))
        };
        let (name, arguments) = match read() {
            Ok(read) => read,
            Err(failure) => return Answer::Now(Err(failure)),
        };
        let call = match tools::parse(&name, &arguments, self.read_only) {
            Ok(call) => call,
            // A missing or ill-typed argument is invalid params (-32602, naming it) in
            // every revision: that is this server's contract (docs/regctl.md, Protocol
            // details), and only well-formed but unacceptable input is a tool error.
            // 2025-11-25 (SEP-1303) suggests tool errors for all input validation, but
            // as guidance without a MUST; one request gets one answer whatever the
            // revision.
            Err(Refusal::UnknownTool(message) | Refusal::Invalid(message)) => {
                return Answer::Now(Err(Failure::invalid_params(message)));
            }
            Err(Refusal::Unacceptable(message)) => {
                return Answer::Now(Ok(Outcome::error(message).to_json()));
            }
        };
        let waits = call.waits();
        self.spawn(
            id,
            waits,
            Box::new(move |client, shared, turn| {
                Ok(calls::run(call, client, &shared.seen, turn).to_json())
            }),
        )
    }

    /// Runs `job` on a thread of its own, with a connection of its own, once the
    /// request before it has passed its turn; its answer is sent unless the request was
    /// cancelled meanwhile.
    fn spawn(&mut self, id: &Id, waits: bool, job: Job) -> Answer {
        // Past the bound, a call that does not wait is waited for: it ends soon, and the
        // client's next messages wait in the pipe meanwhile, so a client that pipelines
        // many requests gets every answer. Only calls that wait are refused.
        while self.calls.len() >= MAX_CALLS && self.calls.values().any(|call| !call.waits) {
            // The session holds a sender, so this only returns a finished call.
            let Ok(done) = self.finished.1.recv() else {
                break;
            };
            if let Some(call) = self.calls.remove(&done) {
                let _ = call.thread.join();
            }
        }
        if self.calls.len() >= MAX_CALLS {
            return Answer::Now(Err(Failure::new(
                jsonrpc::INTERNAL_ERROR,
                format!(
                    "{MAX_CALLS} requests that wait are in flight, the most this server runs at once; wait for an answer (or cancel a request) first"
                ),
            )));
        }
        let client = self.client.with_own_connection();
        let cancelled = Arc::new(AtomicBool::new(false));
        let (baton, next_turn) = crossbeam_channel::bounded::<()>(0);
        let previous_turn = self.last_turn.replace(next_turn);
        let thread = {
            let (client, cancelled, id) = (client.clone(), cancelled.clone(), id.clone());
            let (shared, output, finished) = (
                self.shared.clone(),
                self.output.clone(),
                self.finished.0.clone(),
            );
            thread::Builder::new()
                .name("regctl-mcp-call".to_string())
                .spawn(move || {
                    let mut turn = Turn::new(baton);
                    if let Some(previous) = previous_turn {
                        // Nothing is ever sent: this returns when the previous request
                        // passes its turn.
                        let _ = previous.recv();
                    }
                    if !cancelled.load(Ordering::SeqCst) {
                        let answer = job(&client, &shared, &mut turn);
                        if !cancelled.load(Ordering::SeqCst) {
                            output.send(match answer {
                                Ok(result) => jsonrpc::result(&id, &result),
                                Err(failure) => jsonrpc::error(&id, &failure),
                            });
                        }
                    }
                    // Passed after the answer is queued, so answers of requests that do
                    // not wait come in the order of the requests.
                    drop(turn);
                    let _ = finished.send(id);
                })
        };
        match thread {
            Ok(thread) => {
                self.calls.insert(
                    id.clone(),
                    InFlight {
                        client,
                        cancelled,
                        waits,
                        thread,
                    },
                );
                Answer::Later
            }
            Err(error) => Answer::Now(Err(thread_failure(error))),
        }
    }

    /// Joins the call threads that have finished.
    fn reap(&mut self) {
        while let Ok(id) = self.finished.1.try_recv() {
            if let Some(call) = self.calls.remove(&id) {
                let _ = call.thread.join();
            }
        }
    }

    /// `notifications/cancelled`: the request is cut short and gets no answer.
    fn cancel(&mut self, params: Option<&RawValue>) {
        let id = Members::of(params, "params")
            .ok()
            .and_then(|params| params.raw("requestId").and_then(Id::parse));
        if let Some(call) = id.and_then(|id| self.calls.get(&id)) {
            call.cancel();
        }
    }

    /// The end of the session: waiting calls are cut short, the others get [`GRACE`];
    /// then every thread is joined.
    fn close(&mut self) {
        for call in self.calls.values().filter(|call| call.waits) {
            call.cancel();
        }
        let deadline = Instant::now() + GRACE;
        while !self.calls.is_empty() {
            match self.finished.1.recv_deadline(deadline) {
                Ok(id) => {
                    if let Some(call) = self.calls.remove(&id) {
                        let _ = call.thread.join();
                    }
                }
                Err(_) => break,
            }
        }
        // Every call is cut short before any is joined: a call may be waiting for the
        // turn of another.
        let calls = std::mem::take(&mut self.calls);
        for call in calls.values() {
            call.cancel();
        }
        for (_, call) in calls {
            let _ = call.thread.join();
        }
        self.shared.follower.stop();
    }
}

/// The register a resource request's `params.uri` names.
fn resource_name(params: &Members) -> Result<String, Failure> {
    let uri = params
        .required_string("uri", "the resource's URI, reg://NAME")
        .map_err(|invalid| Failure::invalid_params(invalid.0))?;
    resources::name_of(&uri).map_err(Failure::invalid_params)
}

fn not_found(name: &str) -> Failure {
    let uri = output::string(&resources::uri(name));
    Failure {
        code: jsonrpc::RESOURCE_NOT_FOUND,
        message: format!(
            "resource not found: register {} does not exist (never published, expired or deleted)",
            output::string(name)
        ),
        data: Some(output::object([("uri", uri.as_str())])),
    }
}

fn regd_failure(error: regd::client::Error) -> Failure {
    Failure::new(jsonrpc::INTERNAL_ERROR, calls::regd_error(&error))
}

/// regd refused a request for the register a resource URI names: a name over its
/// limits (or too long for a URL at all) is the client's invalid params; anything else
/// is the server's failure.
fn uri_failure(error: regd::client::Error) -> Failure {
    match (error.status(), &error) {
        (Some(400 | 414), _) | (_, regd::client::Error::Input(_)) => {
            Failure::invalid_params(format!(
                "params.uri names no register regd accepts: {}",
                calls::regd_error(&error)
            ))
        }
        _ => regd_failure(error),
    }
}

fn thread_failure(error: io::Error) -> Failure {
    Failure::new(
        jsonrpc::INTERNAL_ERROR,
        format!("regctl mcp cannot start a thread: {error}"),
    )
}

/// What the model is told about this server.
fn instructions(read_only: bool) -> String {
    let mut text = String::from(
        "regd keeps the registers of an IoT gateway: named JSON values with metadata and a time-to-live, published and refreshed by devices and programs (their providers); a register whose provider stops refreshing it expires. list_registers finds registers (use prefix on a large gateway), get_register reads one with its time left, and wait_for_change follows changes with one long poll: pass the index it returns to the next call.",
    );
    if read_only {
        text.push_str(" This server is read-only: it cannot change registers.");
    } else {
        text.push_str(" request_change asks a register's provider to change it (to switch or set something a device owns) and says whether it was applied; set_register publishes a value directly for a short ttl and delete_register removes a register.");
    }
    text.push_str(" Each register is also a resource, reg://NAME (NAME percent-encoded), which can be subscribed to.");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a session over `lines` against an unreachable regd; the answers by line.
    fn session(lines: &[&str]) -> Vec<serde_json::Value> {
        let captured = super::transport::Captured::default();
        let input = lines.join("\n");
        let client = Client::new("http://127.0.0.1:9").unwrap();
        serve(
            client,
            Options { read_only: false },
            input.as_bytes(),
            captured.clone(),
        )
        .unwrap();
        captured
            .text()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn initialize(version: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{version}","capabilities":{{}},"clientInfo":{{"name":"test","version":"1"}}}}}}"#
        )
    }

    #[track_caller]
    fn error_code(answer: &serde_json::Value, code: i64, mentions: &str) {
        assert_eq!(answer["error"]["code"], code, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(mentions),
            "{message:?} should mention {mentions:?}"
        );
    }

    #[test]
    fn versions_are_negotiated() {
        for (asked, answered) in [
            ("2025-11-25", "2025-11-25"),
            ("2025-06-18", "2025-06-18"),
            ("2024-11-05", "2025-11-25"),
            ("2025-03-26", "2025-11-25"),
            ("2099-01-01", "2025-11-25"),
        ] {
            let answers = session(&[&initialize(asked)]);
            assert_eq!(answers[0]["result"]["protocolVersion"], answered, "{asked}");
            assert_eq!(answers[0]["result"]["serverInfo"]["name"], "reg-registry");
            assert_eq!(
                answers[0]["result"]["capabilities"]["resources"]["subscribe"],
                true
            );
        }
    }

    #[test]
    fn protocol_errors_have_their_codes() {
        let answers = session(&[
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"initialize","params":{}}"#,
            &initialize("2025-06-18"),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            &initialize("2025-06-18"),
            "{oops",
            r#"{"jsonrpc":"2.0","id":3,"method":"prompts/list"}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"get_register","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"nope"}}"#,
            r#"{"jsonrpc":"2.0","id":8,"method":"resources/read","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":9,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}"#,
            r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":[]}"#,
            r#"{"jsonrpc":"2.0","id":11,"method":"resources/templates/list"}"#,
            r#"{"jsonrpc":"2.0","id":12,"method":"resources/unsubscribe","params":{"uri":"reg://x"}}"#,
            "",
            r#"{"jsonrpc":"2.0","id":13,"result":{}}"#,
        ]);
        error_code(&answers[0], -32600, "before initialize");
        error_code(&answers[1], -32602, "params.protocolVersion is missing");
        assert_eq!(answers[2]["result"]["protocolVersion"], "2025-06-18");
        error_code(&answers[3], -32600, "initialized already");
        error_code(&answers[4], -32700, "not JSON");
        assert!(answers[4]["id"].is_null());
        error_code(&answers[5], -32601, "unknown method \"prompts/list\"");
        assert_eq!(
            answers[6],
            serde_json::json!({"jsonrpc": "2.0", "id": 4, "result": {}})
        );
        error_code(&answers[7], -32602, "params.name is missing");
        // Under 2025-06-18, invalid arguments are a protocol error.
        error_code(&answers[8], -32602, "arguments.name is missing");
        error_code(&answers[9], -32602, "unknown tool \"nope\"");
        error_code(&answers[10], -32602, "params.uri is missing");
        error_code(&answers[11], -32602, "reg://NAME");
        error_code(&answers[12], -32602, "params must be an object");
        assert_eq!(
            answers[13]["result"]["resourceTemplates"][0]["uriTemplate"],
            "reg://{name}"
        );
        assert_eq!(answers[14]["result"], serde_json::json!({}));
        assert_eq!(
            answers.len(),
            15,
            "the answer and the empty line get no answer"
        );
    }

    #[test]
    fn invalid_arguments_are_invalid_params_in_every_revision() {
        for version in VERSIONS {
            let answers = session(&[
                &initialize(version),
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_register","arguments":{"name":7}}}"#,
                r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"set_register","arguments":{"value":1}}}"#,
                r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"set_register","arguments":{"name":"a","value":"on"}}}"#,
            ]);
            error_code(&answers[1], -32602, "arguments.name must be a string");
            error_code(&answers[2], -32602, "arguments.name is missing");
            // Well-formed but unacceptable: a tool error, so the model reads the hint.
            assert_eq!(answers[3]["result"]["isError"], true, "{}", answers[3]);
            let text = answers[3]["result"]["content"][0]["text"].as_str().unwrap();
            assert!(text.contains("is not JSON"), "{text}");
        }
    }
}
