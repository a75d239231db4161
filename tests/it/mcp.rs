//! `regctl mcp` driven over its pipes against the real daemon: the lifecycle and version
//! negotiation, every tool, every resource method, every error code, subscriptions
//! notified by changes that `regctl provide` and `regctl set` make, cancellation, the
//! limits, and the end of stdin. Every line the server writes to stdout must be a
//! JSON-RPC message; the harness fails the test on anything else.

use std::collections::VecDeque;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::regctl::{Running, command, run, value, wait_for};
use crate::support::*;

/// A running `regctl mcp`: messages out, messages in; killed and reaped on drop.
struct Mcp {
    running: Running,
    /// Messages read while waiting for another one (notifications, other answers).
    pending: VecDeque<Value>,
    next_id: u64,
}

impl Mcp {
    fn start(registry: &str, args: &[&str]) -> Mcp {
        Self::start_with_env(registry, args, &[])
    }

    fn start_with_env(registry: &str, args: &[&str], env: &[(&str, &str)]) -> Mcp {
        let mut all = vec!["mcp"];
        all.extend_from_slice(args);
        let mut command = command(registry, &all);
        for (key, value) in env {
            command.env(key, value);
        }
        Mcp {
            running: Running::spawn(command),
            pending: VecDeque::new(),
            next_id: 1,
        }
    }

    /// Starts and initializes a session speaking `2025-11-25`.
    fn ready(registry: &str, args: &[&str]) -> Mcp {
        let mut mcp = Mcp::start(registry, args);
        mcp.initialize("2025-11-25");
        mcp
    }

    fn initialize(&mut self, version: &str) -> Value {
        let answer = self.request(
            "initialize",
            json!({
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": {"name": "regd-tests", "version": "1"}
            }),
        );
        self.notify("notifications/initialized", None);
        answer
    }

    fn send_line(&mut self, line: &str) {
        self.running.write_line(line);
    }

    fn notify(&mut self, method: &str, params: Option<Value>) {
        let mut message = json!({"jsonrpc": "2.0", "method": method});
        if let Some(params) = params {
            message["params"] = params;
        }
        self.send_line(&message.to_string());
    }

    /// Sends a request and returns its id, without waiting.
    fn send(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send_line(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        );
        id
    }

    /// Sends requests in one write, without waiting for any answer (as a client that
    /// pipelines does); their ids.
    fn send_all(&mut self, requests: &[(&str, Value)]) -> Vec<u64> {
        let mut lines = Vec::new();
        let ids = requests
            .iter()
            .map(|(method, params)| {
                let id = self.next_id;
                self.next_id += 1;
                lines.push(
                    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
                        .to_string(),
                );
                id
            })
            .collect();
        self.send_line(&lines.join("\n"));
        ids
    }

    /// The next message within `left`; every line on stdout must be a JSON-RPC message.
    #[track_caller]
    fn receive(&self, left: Duration, what: &str) -> Value {
        let line = self.running.lines.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "no {what} within {PATIENCE:?}; seen {:?}; stderr {}",
                self.pending,
                self.stderr()
            )
        });
        let message: Value = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("stdout line is not JSON ({error}): {line}"));
        assert_eq!(message["jsonrpc"], "2.0", "not JSON-RPC 2.0: {line}");
        message
    }

    #[track_caller]
    fn next_message(&mut self) -> Value {
        match self.pending.pop_front() {
            Some(message) => message,
            None => self.receive(PATIENCE, "message"),
        }
    }

    /// The first message that `matches`; the others are kept for later.
    #[track_caller]
    fn wait_for(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(at) = self.pending.iter().position(&matches) {
            return self.pending.remove(at).unwrap();
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let message = self.receive(deadline.saturating_duration_since(Instant::now()), what);
            if matches(&message) {
                return message;
            }
            self.pending.push_back(message);
        }
    }

    /// The answer to request `id` (its `result` or its `error`, whole).
    #[track_caller]
    fn answer(&mut self, id: u64) -> Value {
        self.wait_for(&format!("answer to request {id}"), |message| {
            message["id"] == id && message.get("method").is_none()
        })
    }

    /// Sends a request and waits for its answer.
    #[track_caller]
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params);
        self.answer(id)
    }

    /// Sends a request that must succeed; its result.
    #[track_caller]
    fn result(&mut self, method: &str, params: Value) -> Value {
        let answer = self.request(method, params);
        assert!(answer.get("error").is_none(), "{method} failed: {answer}");
        answer["result"].clone()
    }

    /// Calls a tool; its result (a CallToolResult).
    #[track_caller]
    fn call(&mut self, tool: &str, arguments: Value) -> Value {
        self.result("tools/call", json!({"name": tool, "arguments": arguments}))
    }

    /// Calls a tool that must succeed; its structured content, checked against the
    /// text it also gave.
    #[track_caller]
    fn structured(&mut self, tool: &str, arguments: Value) -> Value {
        let result = self.call(tool, arguments);
        assert_eq!(result["isError"], false, "{tool}: {result}");
        assert!(text(&result).len() > 2, "{tool} gave no text: {result}");
        result["structuredContent"].clone()
    }

    /// Calls a tool that must fail as a tool error; its text.
    #[track_caller]
    fn tool_error(&mut self, tool: &str, arguments: Value) -> String {
        let result = self.call(tool, arguments);
        assert_eq!(result["isError"], true, "{tool} should fail: {result}");
        assert!(result.get("structuredContent").is_none(), "{result}");
        text(&result)
    }

    /// The next notification with `method`.
    #[track_caller]
    fn notification(&mut self, method: &str) -> Value {
        self.wait_for(&format!("notification {method}"), |message| {
            message["method"] == method
        })
    }

    fn stderr(&self) -> String {
        self.running.stderr()
    }

    /// Waits until stderr mentions every part (a reader thread collects it, so a line
    /// regctl has written may not be there yet).
    fn wait_for_stderr(&self, parts: &[&str]) {
        wait_until(&format!("stderr mentioning {parts:?}"), || {
            let stderr = self.stderr();
            parts.iter().all(|part| stderr.contains(part))
        });
    }

    fn close_stdin(&mut self) {
        self.running.close_stdin();
    }

    fn wait_exit(&mut self) -> ExitStatus {
        self.running.wait_exit()
    }
}

/// The text of a CallToolResult.
fn text(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content in {result}"))
        .to_string()
}

/// The string `key` of every object in the array `items`.
fn each<'a>(items: &'a Value, key: &str) -> Vec<&'a str> {
    items
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {items}"))
        .iter()
        .map(|item| {
            item[key]
                .as_str()
                .unwrap_or_else(|| panic!("no {key} in {item}"))
        })
        .collect()
}

impl Mcp {
    /// Fails if a message already read (and not yet taken) matches.
    #[track_caller]
    fn never_saw(&self, what: &str, matches: impl Fn(&Value) -> bool) {
        assert!(
            !self.pending.iter().any(matches),
            "{what}: {:?}",
            self.pending
        );
    }
}

#[track_caller]
fn error_code(answer: &Value, code: i64, mentions: &str) {
    assert_eq!(answer["error"]["code"], code, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(mentions),
        "{message:?} should mention {mentions:?}"
    );
}

#[track_caller]
fn mentions(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "{text:?} should mention {part:?}");
    }
}

/// Publishes registers directly: (name, value JSON, ttl).
fn publish(daemon: &Daemon, entries: &[(&str, &str, &str)]) {
    let registers: Vec<String> = entries
        .iter()
        .map(|(name, value, ttl)| {
            format!(
                "{}:{{\"value\":{value},\"ttl\":\"{ttl}\"}}",
                serde_json::to_string(name).unwrap()
            )
        })
        .collect();
    daemon
        .put(
            "/provider",
            &format!("{{\"registers\":{{{}}}}}", registers.join(",")),
        )
        .assert(204, "");
}

/// `regctl provide NAME VALUE ARGS`, once its register is visible.
fn provide(daemon: &Daemon, name: &str, value: &str, args: &[&str]) -> Running {
    let mut all = vec!["provide", name, value];
    all.extend_from_slice(args);
    let provider = Running::start(&daemon.url(), &all);
    wait_for(daemon, name, Some(value));
    provider
}

#[test]
fn initialize_negotiates_the_version_and_declares_capabilities() {
    let daemon = Daemon::start(&[]);
    for (asked, answered) in [
        ("2025-11-25", "2025-11-25"),
        ("2025-06-18", "2025-06-18"),
        // Older and unknown revisions get the newest this server speaks.
        ("2024-11-05", "2025-11-25"),
        ("2025-03-26", "2025-11-25"),
        ("2030-01-01", "2025-11-25"),
    ] {
        let mut mcp = Mcp::start(&daemon.url(), &[]);
        let answer = mcp.initialize(asked);
        let result = &answer["result"];
        assert_eq!(result["protocolVersion"], answered, "{asked}: {answer}");
        assert_eq!(result["serverInfo"]["name"], "reg-registry");
        assert_eq!(result["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(
            result["capabilities"],
            json!({
                "tools": {"listChanged": false},
                "resources": {"subscribe": true, "listChanged": true}
            }),
            "only what is implemented is declared"
        );
        assert!(
            result["instructions"]
                .as_str()
                .unwrap()
                .contains("wait_for_change")
        );
        assert_eq!(mcp.result("ping", json!({})), json!({}));
        mcp.wait_for_stderr(&["regd-tests connected", answered]);
    }
}

#[test]
fn tools_are_listed_with_schemas_and_truthful_annotations() {
    let daemon = Daemon::start(&[]);
    let mut mcp = Mcp::ready(&daemon.url(), &[]);
    let tools = mcp.result("tools/list", json!({}))["tools"].clone();
    let names = each(&tools, "name");
    assert_eq!(
        names,
        [
            "get_register",
            "list_registers",
            "wait_for_change",
            "request_change",
            "set_register",
            "delete_register"
        ]
    );
    for tool in tools.as_array().unwrap() {
        let name = tool["name"].as_str().unwrap();
        assert_eq!(tool["inputSchema"]["type"], "object", "{name}");
        assert_eq!(tool["outputSchema"]["type"], "object", "{name}");
        let reads = ["get_register", "list_registers", "wait_for_change"].contains(&name);
        assert_eq!(tool["annotations"]["readOnlyHint"], reads, "{name}");
        assert_eq!(tool["annotations"]["destructiveHint"], !reads, "{name}");
        assert_eq!(tool["annotations"]["idempotentHint"], true, "{name}");
        assert_eq!(
            tool["annotations"]["openWorldHint"],
            name == "request_change",
            "{name}"
        );
    }
    // The original's inputs are kept.
    let input = |name: &str| {
        let tool = tools
            .as_array()
            .unwrap()
            .iter()
            .find(|tool| tool["name"] == name)
            .unwrap();
        let mut keys: Vec<String> = tool["inputSchema"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(input("get_register"), ["name"]);
    assert_eq!(input("set_register"), ["metadata", "name", "ttl", "value"]);
    assert_eq!(input("request_change"), ["name", "timeout", "value"]);
    assert_eq!(input("list_registers"), ["limit", "prefix"]);

    let mut read_only = Mcp::ready(&daemon.url(), &["--read-only"]);
    let tools = read_only.result("tools/list", json!({}))["tools"].clone();
    let names = each(&tools, "name");
    assert_eq!(names, ["get_register", "list_registers", "wait_for_change"]);
    publish(&daemon, &[("lamp", "false", "60s")]);
    for (tool, arguments) in [
        ("set_register", json!({"name": "lamp", "value": true})),
        ("request_change", json!({"name": "lamp", "value": true})),
        ("delete_register", json!({"name": "lamp"})),
    ] {
        let answer = read_only.request("tools/call", json!({"name": tool, "arguments": arguments}));
        error_code(&answer, -32602, "--read-only");
    }
    assert_eq!(value(&daemon, "lamp").as_deref(), Some("false"));
    assert_eq!(
        read_only.structured("get_register", json!({"name": "lamp"}))["value"],
        false
    );
}

#[test]
fn get_register_gives_value_metadata_ttl_and_time_left() {
    let daemon = Daemon::start(&[]);
    daemon
        .put(
            "/provider",
            r#"{"registers":{"hall.temperature":{"value":21.50,"metadata":{"unit":"°C"},"ttl":"30s"},"plain":{"value":{"b":1,"a":[true,null]}}}}"#,
        )
        .assert(204, "");
    let mut mcp = Mcp::ready(&daemon.url(), &[]);
    let result = mcp.call("get_register", json!({"name": "hall.temperature"}));
    assert_eq!(result["isError"], false);
    let structured = &result["structuredContent"];
    assert_eq!(structured["name"], "hall.temperature");
    assert_eq!(structured["value"], 21.5);
    assert_eq!(structured["metadata"], json!({"unit": "°C"}));
    assert_eq!(structured["ttl"], "30s");
    let left = structured["expires_in_ms"].as_u64().unwrap();
    assert!(left > 0 && left <= 30_000, "{left}");
    assert!(structured["index"].as_u64().unwrap() > 0);
    // Numbers keep the form the provider wrote.
    mentions(
        &text(&result),
        &["hall.temperature = 21.50", "\"unit\":\"°C\"", "ttl 30s"],
    );
    let plain = mcp.structured("get_register", json!({"name": "plain"}));
    assert_eq!(plain["value"], json!({"b": 1, "a": [true, null]}));
    assert_eq!(plain["metadata"], Value::Null);
    assert_eq!(plain["ttl"], "10s");

    // A missing register is an error at once, without waiting for it to appear.
    let started = Instant::now();
    let message = mcp.tool_error("get_register", json!({"name": "nope"}));
    mentions(&message, &["\"nope\" does not exist", "list_registers"]);
    assert!(started.elapsed() < PATIENCE);
}

#[test]
fn list_registers_filters_by_prefix_and_says_how_many_were_left_out() {
    let daemon = Daemon::start(&[]);
    let mut entries: Vec<(String, String)> = (0..12)
        .map(|n| (format!("hall.sensor{n:02}"), n.to_string()))
        .collect();
    entries.push(("kitchen.lamp".to_string(), "true".to_string()));
    let entries: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str(), "60s"))
        .collect();
    publish(&daemon, &entries);
    let mut mcp = Mcp::ready(&daemon.url(), &[]);

    let all = mcp.structured("list_registers", json!({}));
    assert_eq!(all["total"], 13);
    assert_eq!(all["left_out"], 0);
    assert_eq!(all["registers"].as_array().unwrap().len(), 13);
    assert_eq!(
        all["registers"][12],
        json!({"name": "kitchen.lamp", "value": true, "metadata": null})
    );
    assert!(all["index"].as_u64().unwrap() > 0);

    let result = mcp.call("list_registers", json!({"prefix": "hall.", "limit": 5}));
    let some = &result["structuredContent"];
    assert_eq!(some["total"], 12);
    assert_eq!(some["left_out"], 7);
    let shown = each(&some["registers"], "name");
    assert_eq!(
        shown,
        [
            "hall.sensor00",
            "hall.sensor01",
            "hall.sensor02",
            "hall.sensor03",
            "hall.sensor04"
        ]
    );
    mentions(
        &text(&result),
        &["5 of 12", "7 left out", "hall.sensor04 = 4"],
    );

    let none = mcp.call("list_registers", json!({"prefix": "garage."}));
    assert_eq!(none["structuredContent"]["total"], 0);
    mentions(
        &text(&none),
        &["no registers whose names start with \"garage.\""],
    );
}

#[test]
fn set_register_publishes_for_its_ttl_and_refuses_a_long_one() {
    let daemon = Daemon::start(&[]);
    let mut mcp = Mcp::ready(&daemon.url(), &[]);
    let structured = mcp.structured(
        "set_register",
        json!({"name": "desk.note", "value": "\"hello\"", "metadata": {"by": "assistant"}}),
    );
    assert_eq!(
        structured,
        json!({"name": "desk.note", "value": "hello", "metadata": {"by": "assistant"}, "ttl": "5s", "expires_in_ms": 5000})
    );
    let details = daemon.get("/consumer?name=desk.note&details=true").json();
    assert_eq!(details["registers"]["desk.note"]["value"], "hello");
    assert_eq!(
        details["registers"]["desk.note"]["metadata"],
        json!({"by": "assistant"})
    );
    assert_eq!(details["registers"]["desk.note"]["ttl"], "5s");

    // A JSON value as itself; a short ttl lives that long and no longer.
    mcp.structured(
        "set_register",
        json!({"name": "desk.level", "value": {"n": 1.250}, "ttl": "300ms"}),
    );
    assert_eq!(
        value(&daemon, "desk.level").as_deref(),
        Some(r#"{"n":1.25}"#)
    );
    wait_until("desk.level to expire", || {
        value(&daemon, "desk.level").is_none()
    });

    mentions(
        &mcp.tool_error(
            "set_register",
            json!({"name": "x", "value": 1, "ttl": "2h"}),
        ),
        &["ttl 2h0m0s is above the 1h0m0s"],
    );
    mentions(
        &mcp.tool_error(
            "set_register",
            json!({"name": "x", "value": 1, "ttl": "soon"}),
        ),
        &["arguments.ttl", "invalid duration \"soon\""],
    );
    mentions(
        &mcp.tool_error("set_register", json!({"name": "x", "value": "on"})),
        &["arguments.value \"on\" is not JSON", "\\\"on\\\""],
    );
    mentions(
        &mcp.tool_error(
            "set_register",
            json!({"name": "x", "value": 1, "metadata": "[1]"}),
        ),
        &["arguments.metadata must be a JSON object"],
    );
    // Outside the input schema (an object, JSON text or null): invalid params.
    error_code(
        &mcp.request(
            "tools/call",
            json!({"name": "set_register", "arguments": {"name": "x", "value": 1, "metadata": [1]}}),
        ),
        -32602,
        "arguments.metadata must be a JSON object",
    );
    assert_eq!(value(&daemon, "x"), None);
}

#[test]
fn request_change_says_whether_the_provider_applied_it() {
    let daemon = Daemon::start(&[]);
    let mut mcp = Mcp::ready(&daemon.url(), &[]);
    let _lamp = provide(&daemon, "lamp", "false", &[]);
    let result = mcp.call("request_change", json!({"name": "lamp", "value": true}));
    assert_eq!(
        result["structuredContent"],
        json!({"name": "lamp", "value": true, "status": "applied", "current": {"name": "lamp", "value": true, "metadata": null}})
    );
    mentions(&text(&result), &["applied: \"lamp\" is now true"]);
    assert_eq!(value(&daemon, "lamp").as_deref(), Some("true"));

    // A provider that does not apply requests: the value is still what it was.
    let _fan = provide(&daemon, "fan", "0", &["--read-only"]);
    let result = mcp.call(
        "request_change",
        json!({"name": "fan", "value": 1200, "timeout": "300ms"}),
    );
    assert_eq!(result["isError"], false);
    assert_eq!(result["structuredContent"]["status"], "not_applied");
    assert_eq!(result["structuredContent"]["current"]["value"], 0);
    mentions(
        &text(&result),
        &["not applied: the value is still 0 after 300ms"],
    );

    // No provider at all.
    let result = mcp.call(
        "request_change",
        json!({"name": "door", "value": "\"open\"", "timeout": "200ms"}),
    );
    assert_eq!(result["structuredContent"]["status"], "not_applied");
    assert_eq!(result["structuredContent"]["current"], Value::Null);
    mentions(
        &text(&result),
        &["\"door\" does not exist", "waits in regd"],
    );

    // "0s" sends and returns at once; the request waits in regd.
    let result = mcp.call(
        "request_change",
        json!({"name": "door", "value": "\"shut\"", "timeout": "0s"}),
    );
    assert_eq!(result["structuredContent"]["status"], "sent");
    daemon
        .get("/provider?name=door")
        .assert(200, r#"{"registers":{"door":{"value":"shut"}}}"#);
}

#[test]
fn wait_for_change_follows_changes_from_an_index_without_missing_any() {
    let daemon = Daemon::start(&[]);
    publish(&daemon, &[("a", "1", "60s"), ("b", "1", "60s")]);
    let mut mcp = Mcp::ready(&daemon.url(), &[]);

    // Nothing changes: it times out and hands back an index.
    let names = json!(["a", "b"]);
    let quiet = mcp.structured("wait_for_change", json!({"names": names, "wait": "200ms"}));
    assert_eq!(quiet["timed_out"], true);
    assert_eq!(quiet["changed"], json!([]));
    assert_eq!(quiet["removed"], json!([]));
    let index = quiet["index"].as_u64().unwrap();

    // A change made between two calls is reported by the next one, at once.
    publish(&daemon, &[("a", "2", "60s")]);
    let changed = mcp.structured(
        "wait_for_change",
        json!({"names": names, "wait": "30s", "index": index}),
    );
    assert_eq!(changed["timed_out"], false);
    assert_eq!(
        changed["changed"],
        json!([{"name": "a", "value": 2, "metadata": null}])
    );
    let index = changed["index"].as_u64().unwrap();

    // A change while it waits wakes it; removals are reported as such.
    let id = mcp.send(
        "tools/call",
        json!({"name": "wait_for_change", "arguments": {"names": names, "wait": "30s", "index": index}}),
    );
    wait_for_held_polls(&daemon, 1);
    daemon
        .request("DELETE", "/provider?name=b", "")
        .assert(204, "");
    let answer = mcp.answer(id);
    let woken = &answer["result"]["structuredContent"];
    assert_eq!(woken["removed"], json!(["b"]), "{answer}");
    assert_eq!(woken["changed"], json!([]));
    mentions(&text(&answer["result"]), &["removed: b", "index"]);
    let index = woken["index"].as_u64().unwrap();

    // From an index another session handed out, a removal cannot be named, and the
    // answer says so instead of missing it.
    let mut other = Mcp::ready(&daemon.url(), &[]);
    let id = other.send(
        "tools/call",
        json!({"name": "wait_for_change", "arguments": {"wait": "30s", "index": index}}),
    );
    wait_for_held_polls(&daemon, 1);
    daemon
        .request("DELETE", "/provider?name=a", "")
        .assert(204, "");
    let answer = other.answer(id);
    let unknown = &answer["result"]["structuredContent"];
    assert_eq!(unknown["removed"], Value::Null, "{answer}");
    assert_eq!(unknown["timed_out"], false);
    mentions(&text(&answer["result"]), &["cannot be told"]);

    // Without an index it waits for the next change after the call.
    let id = mcp.send(
        "tools/call",
        json!({"name": "wait_for_change", "arguments": {"names": ["c"]}}),
    );
    wait_for_held_polls(&daemon, 1);
    publish(&daemon, &[("c", "true", "60s")]);
    let answer = mcp.answer(id);
    assert_eq!(
        answer["result"]["structuredContent"]["changed"],
        json!([{"name": "c", "value": true, "metadata": null}])
    );
}

#[test]
fn delete_register_removes_and_says_whether_it_existed() {
    let daemon = Daemon::start(&[]);
    publish(&daemon, &[("old", "1", "60s")]);
    let mut mcp = Mcp::ready(&daemon.url(), &[]);
    assert_eq!(
        mcp.structured("delete_register", json!({"name": "old"})),
        json!({"name": "old", "existed": true})
    );
    assert_eq!(value(&daemon, "old"), None);
    let result = mcp.call("delete_register", json!({"name": "old"}));
    assert_eq!(
        result["structuredContent"],
        json!({"name": "old", "existed": false})
    );
    mentions(&text(&result), &["did not exist"]);
}

#[test]
fn delete_register_with_a_provider_token_answers_within_its_schema() {
    // A provider token may delete but not read, so whether it existed is unknown.
    let tokens = TokenFile::new(0o600);
    let daemon = Daemon::start(&["--token-file", tokens.path()]);
    let mut mcp = Mcp::start_with_env(&daemon.url(), &[], &[("REGD_TOKEN", PROVIDER)]);
    mcp.initialize("2025-11-25");
    mcp.structured(
        "set_register",
        json!({"name": "old", "value": 1, "ttl": "1m"}),
    );
    assert_eq!(
        mcp.structured("delete_register", json!({"name": "old"})),
        json!({"name": "old", "existed": null})
    );
    let tools = mcp.result("tools/list", json!({}))["tools"].clone();
    let delete = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|tool| tool["name"] == "delete_register")
        .unwrap();
    let existed = &delete["outputSchema"]["properties"]["existed"];
    assert_eq!(existed["type"], json!(["boolean", "null"]), "{existed}");
}

#[test]
fn resources_are_listed_read_and_templated() {
    let daemon = Daemon::start(&[]);
    let mut entries: Vec<String> = (0..105).map(|n| format!("bulk/{n:03}")).collect();
    entries.push("kitchen lamp".to_string());
    let entries: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|name| (name.as_str(), "0", "60s"))
        .collect();
    publish(&daemon, &entries);
    daemon
        .put(
            "/provider",
            r#"{"registers":{"hall.temperature":{"value":21.50,"metadata":{"unit":"°C"},"ttl":"60s"}}}"#,
        )
        .assert(204, "");
    let mut mcp = Mcp::ready(&daemon.url(), &[]);

    let first = mcp.result("resources/list", json!({}));
    let page = first["resources"].as_array().unwrap();
    assert_eq!(page.len(), 100);
    assert_eq!(
        page[0],
        json!({"uri": "reg://bulk%2F000", "name": "bulk/000", "title": "bulk/000", "mimeType": "application/json"})
    );
    let cursor = first["nextCursor"].as_str().unwrap().to_string();
    let second = mcp.result("resources/list", json!({"cursor": cursor}));
    let uris = each(&second["resources"], "uri");
    assert_eq!(
        uris,
        [
            "reg://bulk%2F100",
            "reg://bulk%2F101",
            "reg://bulk%2F102",
            "reg://bulk%2F103",
            "reg://bulk%2F104",
            "reg://hall.temperature",
            "reg://kitchen%20lamp"
        ]
    );
    assert!(second.get("nextCursor").is_none());
    error_code(
        &mcp.request("resources/list", json!({"cursor": "%%"})),
        -32602,
        "params.cursor",
    );

    let read = mcp.result("resources/read", json!({"uri": "reg://hall.temperature"}));
    assert_eq!(
        read["contents"],
        json!([{"uri": "reg://hall.temperature", "mimeType": "application/json", "text": "{\"value\":21.50,\"metadata\":{\"unit\":\"°C\"}}"}])
    );
    let read = mcp.result("resources/read", json!({"uri": "reg://kitchen%20lamp"}));
    assert_eq!(read["contents"][0]["text"], "{\"value\":0}");

    let missing = mcp.request("resources/read", json!({"uri": "reg://nope"}));
    error_code(&missing, -32002, "\"nope\" does not exist");
    assert_eq!(missing["error"]["data"], json!({"uri": "reg://nope"}));
    error_code(
        &mcp.request("resources/read", json!({"uri": "http://x/"})),
        -32602,
        "reg://NAME",
    );
    error_code(
        &mcp.request("resources/read", json!({})),
        -32602,
        "params.uri is missing",
    );

    let templates = mcp.result("resources/templates/list", json!({}));
    assert_eq!(
        templates["resourceTemplates"][0]["uriTemplate"],
        "reg://{name}"
    );
}

#[test]
fn a_subscription_is_notified_of_changes_made_with_regctl() {
    let daemon = Daemon::start(&[]);
    let mut lamp = provide(&daemon, "lamp", "false", &[]);
    publish(&daemon, &[("other", "1", "60s")]);
    let mut mcp = Mcp::ready(&daemon.url(), &[]);
    assert_eq!(
        mcp.result("resources/subscribe", json!({"uri": "reg://lamp"})),
        json!({})
    );
    assert_eq!(
        mcp.result("resources/subscribe", json!({"uri": "reg://other"})),
        json!({})
    );
    // The subscription's own start is no change.
    mcp.result("resources/unsubscribe", json!({"uri": "reg://other"}));

    // regctl set asks the provider, which applies it: one update for reg://lamp.
    assert!(run(&daemon, &["set", "lamp", "true"]).status.success());
    let updated = mcp.notification("notifications/resources/updated");
    assert_eq!(updated["params"], json!({"uri": "reg://lamp"}));
    let read = mcp.result("resources/read", json!({"uri": "reg://lamp"}));
    assert_eq!(read["contents"][0]["text"], "{\"value\":true}");

    // The unsubscribed register changes unheard; the provider's end is heard.
    publish(&daemon, &[("other", "2", "60s")]);
    lamp.close_stdin();
    assert!(lamp.wait_exit().success());
    let updated = mcp.notification("notifications/resources/updated");
    assert_eq!(updated["params"], json!({"uri": "reg://lamp"}));
    mcp.never_saw("no update for the unsubscribed register", |message| {
        message["params"]["uri"] == "reg://other"
    });
    error_code(
        &mcp.request("resources/read", json!({"uri": "reg://lamp"})),
        -32002,
        "does not exist",
    );
}

#[test]
fn a_subscription_regd_refuses_is_refused_and_the_others_stay_notified() {
    let daemon = Daemon::start(&["--max-name", "16"]);
    let mut mcp = Mcp::ready(&daemon.url(), &[]);
    mcp.result("resources/subscribe", json!({"uri": "reg://good"}));
    let long = format!("reg://{}", "n".repeat(17));
    error_code(
        &mcp.request("resources/subscribe", json!({"uri": long})),
        -32602,
        "at most 16 bytes",
    );
    error_code(
        &mcp.request("resources/read", json!({"uri": long})),
        -32602,
        "at most 16 bytes",
    );
    // Too long for a URL at all: refused before it is sent, and still the client's.
    let huge = format!("reg://{}", "n".repeat(70_000));
    for method in ["resources/subscribe", "resources/read"] {
        error_code(
            &mcp.request(method, json!({"uri": huge})),
            -32602,
            "a name, or the list of names, is too long",
        );
    }
    // The refused name is not in the batched long poll, which goes on for the others.
    wait_for_held_polls(&daemon, 1);
    publish(&daemon, &[("good", "1", "60s")]);
    let updated = mcp.notification("notifications/resources/updated");
    assert_eq!(updated["params"], json!({"uri": "reg://good"}));
    assert!(!mcp.stderr().contains("cannot follow registers"));
}

#[test]
fn subscriptions_too_many_for_one_query_are_still_notified() {
    // 300 names of 27 bytes do not fit in regd's 8 KiB request target.
    let daemon = Daemon::start(&[]);
    let mut mcp = Mcp::ready(&daemon.url(), &[]);
    let names: Vec<String> = (0..300)
        .map(|n| format!("sensor.room-{n:03}.temperature"))
        .collect();
    for name in &names {
        mcp.result(
            "resources/subscribe",
            json!({"uri": format!("reg://{name}")}),
        );
    }
    wait_for_held_polls(&daemon, 1);
    publish(&daemon, &[(&names[299], "21.5", "60s")]);
    let updated = mcp.notification("notifications/resources/updated");
    assert_eq!(
        updated["params"],
        json!({"uri": "reg://sensor.room-299.temperature"})
    );
    // Registers nobody subscribed to are followed but never notified.
    publish(&daemon, &[("other", "1", "60s")]);
    mcp.result(
        "resources/unsubscribe",
        json!({"uri": "reg://sensor.room-299.temperature"}),
    );
    publish(
        &daemon,
        &[(&names[299], "22", "60s"), (&names[0], "1", "60s")],
    );
    let updated = mcp.notification("notifications/resources/updated");
    assert_eq!(
        updated["params"],
        json!({"uri": "reg://sensor.room-000.temperature"})
    );
    mcp.never_saw("no update for registers not subscribed to", |message| {
        message["method"] == "notifications/resources/updated"
    });
    mcp.never_saw("no list_changed without a listing", |message| {
        message["method"] == "notifications/resources/list_changed"
    });
    assert!(!mcp.stderr().contains("cannot follow registers"));
}

#[test]
fn list_changed_fires_when_registers_appear_or_go() {
    let daemon = Daemon::start(&[]);
    publish(&daemon, &[("first", "1", "60s")]);
    let mut mcp = Mcp::ready(&daemon.url(), &[]);
    mcp.result("resources/list", json!({}));
    wait_for_held_polls(&daemon, 1);
    // A change of value is not a change of the list; a new register is.
    publish(&daemon, &[("first", "2", "60s")]);
    publish(&daemon, &[("second", "1", "60s")]);
    mcp.notification("notifications/resources/list_changed");
    let listed = mcp.result("resources/list", json!({}));
    assert_eq!(listed["resources"].as_array().unwrap().len(), 2);
    // A deletion changes the list, and so do an appearance and an expiry.
    daemon
        .request("DELETE", "/provider?name=second", "")
        .assert(204, "");
    mcp.notification("notifications/resources/list_changed");
    publish(&daemon, &[("brief", "1", "1s")]);
    mcp.notification("notifications/resources/list_changed");
    mcp.notification("notifications/resources/list_changed");
    let listed = mcp.result("resources/list", json!({}));
    assert_eq!(
        listed["resources"],
        json!([{"uri": "reg://first", "name": "first", "title": "first", "mimeType": "application/json"}])
    );
    mcp.never_saw("no subscription, so no updates", |message| {
        message["method"] == "notifications/resources/updated"
    });
}

#[test]
fn bad_input_gets_the_json_rpc_error_codes() {
    let daemon = Daemon::start(&[]);
    let mut mcp = Mcp::start(&daemon.url(), &[]);
    // Before initialize, only ping works.
    error_code(
        &mcp.request("tools/list", json!({})),
        -32600,
        "before initialize",
    );
    assert_eq!(mcp.result("ping", json!({})), json!({}));
    error_code(
        &mcp.request("initialize", json!({"protocolVersion": 2025})),
        -32602,
        "params.protocolVersion must be a string",
    );
    mcp.initialize("2025-06-18");

    mcp.send_line("{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": ");
    let answer = mcp.next_message();
    error_code(&answer, -32700, "not JSON");
    assert_eq!(answer["id"], Value::Null);
    mcp.send_line(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#);
    error_code(&mcp.next_message(), -32600, "batches");
    mcp.send_line(r#"{"jsonrpc":"2.0","id":"x","method":"ping","params":7}"#);
    error_code(&mcp.next_message(), -32602, "params must be an object");
    mcp.send_line(r#"{"id":5,"method":"ping"}"#);
    error_code(&mcp.next_message(), -32600, "jsonrpc must be \"2.0\"");
    error_code(
        &mcp.request("prompts/list", json!({})),
        -32601,
        "unknown method \"prompts/list\"",
    );
    error_code(
        &mcp.request(
            "tools/call",
            json!({"name": "no_such_tool", "arguments": {}}),
        ),
        -32602,
        "unknown tool \"no_such_tool\"",
    );
    error_code(
        &mcp.request("tools/call", json!({"arguments": {}})),
        -32602,
        "params.name is missing",
    );
    error_code(
        &mcp.request(
            "tools/call",
            json!({"name": "get_register", "arguments": "lamp"}),
        ),
        -32602,
        "params.arguments must be an object",
    );
    // Invalid arguments are invalid params, naming the argument (in every revision).
    error_code(
        &mcp.request(
            "tools/call",
            json!({"name": "get_register", "arguments": {}}),
        ),
        -32602,
        "arguments.name is missing",
    );
    error_code(
        &mcp.request(
            "tools/call",
            json!({"name": "list_registers", "arguments": {"limit": "ten"}}),
        ),
        -32602,
        "arguments.limit must be a whole number from 1 to 1000",
    );
    error_code(
        &mcp.request(
            "tools/call",
            json!({"name": "get_register", "arguments": {"name": "a", "nmae": "b"}}),
        ),
        -32602,
        "arguments.nmae is not an input of get_register",
    );
    // A value that is not JSON is a tool error in every revision.
    mentions(
        &mcp.tool_error("request_change", json!({"name": "lamp", "value": "on"})),
        &["is not JSON"],
    );
    // An answer to a request the server never sent is ignored; the session goes on.
    mcp.send_line(r#"{"jsonrpc":"2.0","id":99,"result":{}}"#);
    assert_eq!(mcp.result("ping", json!({})), json!({}));

    // Under 2025-11-25 too: the same request gets the same answer.
    let mut newer = Mcp::ready(&daemon.url(), &[]);
    for (arguments, says) in [
        (
            json!({"name": 42}),
            "arguments.name must be a string, got 42",
        ),
        (json!({}), "arguments.name is missing"),
        (
            json!({"name": "a", "nmae": "b"}),
            "arguments.nmae is not an input",
        ),
    ] {
        error_code(
            &newer.request(
                "tools/call",
                json!({"name": "get_register", "arguments": arguments}),
            ),
            -32602,
            says,
        );
    }
    mentions(
        &newer.tool_error("set_register", json!({"name": "a", "value": "on"})),
        &["is not JSON"],
    );
}

#[test]
fn names_over_regds_limits_are_tool_errors() {
    let daemon = Daemon::start(&["--max-name", "16"]);
    let mut mcp = Mcp::ready(&daemon.url(), &[]);
    let long = "n".repeat(17);
    mentions(
        &mcp.tool_error("get_register", json!({"name": long})),
        &["regd refused the request (400)", "at most 16 bytes"],
    );
    mentions(
        &mcp.tool_error("set_register", json!({"name": long, "value": 1})),
        &["regd refused the request (400)", "16"],
    );
    mentions(
        &mcp.tool_error("wait_for_change", json!({"names": [long], "wait": "1s"})),
        &["at most 16 bytes"],
    );
    mentions(
        &mcp.tool_error("get_register", json!({"name": "n".repeat(70_000)})),
        &["at most 65534 fit in one", "is too long"],
    );
    // More names than the input schema's maxItems: invalid params.
    let many: Vec<String> = (0..101).map(|n| n.to_string()).collect();
    error_code(
        &mcp.request(
            "tools/call",
            json!({"name": "wait_for_change", "arguments": {"names": many}}),
        ),
        -32602,
        "at most 100",
    );
    assert_eq!(mcp.result("ping", json!({})), json!({}));
}

#[test]
fn regd_down_is_a_tool_error_that_says_how_to_fix_it() {
    // A port that was free a moment ago: nothing listens there.
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut mcp = Mcp::ready(&format!("http://{address}"), &[]);
    for (tool, arguments) in [
        ("get_register", json!({"name": "lamp"})),
        ("list_registers", json!({})),
        ("wait_for_change", json!({"wait": "1s"})),
        ("request_change", json!({"name": "lamp", "value": true})),
        ("set_register", json!({"name": "lamp", "value": true})),
        ("delete_register", json!({"name": "lamp"})),
    ] {
        mentions(
            &mcp.tool_error(tool, arguments),
            &["cannot reach regd", "connection refused", "REGISTRY"],
        );
    }
    let answer = mcp.request("resources/read", json!({"uri": "reg://lamp"}));
    error_code(&answer, -32603, "REGISTRY");
    // Subscribing still works; it is followed once regd is there.
    assert_eq!(
        mcp.result("resources/subscribe", json!({"uri": "reg://lamp"})),
        json!({})
    );
    assert_eq!(mcp.result("ping", json!({})), json!({}));
    wait_until("the failure said on stderr", || {
        mcp.stderr().contains("cannot follow registers")
    });
}

#[test]
fn a_token_comes_from_regd_token_and_its_absence_is_explained() {
    let tokens = TokenFile::new(0o600);
    let daemon = Daemon::start(&["--token-file", tokens.path()]);
    let mut without = Mcp::ready(&daemon.url(), &[]);
    mentions(
        &without.tool_error("list_registers", json!({})),
        &["regd needs an access token", "REGD_TOKEN"],
    );
    let mut with = Mcp::start_with_env(&daemon.url(), &[], &[("REGD_TOKEN", ADMIN)]);
    with.initialize("2025-11-25");
    with.structured(
        "set_register",
        json!({"name": "t", "value": 1, "ttl": "1m"}),
    );
    assert_eq!(with.structured("list_registers", json!({}))["total"], 1);
    assert!(!with.stderr().contains(ADMIN));
}

#[test]
fn regd_is_found_through_registry_and_the_token_through_token_file() {
    let tokens = TokenFile::new(0o600);
    let daemon = Daemon::start(&["--token-file", tokens.path()]);
    let consumer = TokenFile::with_text(&format!("{CONSUMER} consumer assistant\n"), 0o600);
    let mut command = program(env!("CARGO_BIN_EXE_regctl"));
    command
        .args(["--token-file", consumer.path(), "mcp"])
        .env("REGISTRY", daemon.url());
    let mut mcp = Mcp {
        running: Running::spawn(command),
        pending: VecDeque::new(),
        next_id: 1,
    };
    mcp.initialize("2025-11-25");
    assert_eq!(mcp.structured("list_registers", json!({}))["total"], 0);
    // A consumer token may read and request, not publish.
    mentions(
        &mcp.tool_error("set_register", json!({"name": "x", "value": 1})),
        &["the token's role may not do this", "provider token"],
    );
    mcp.wait_for_stderr(&[&daemon.url()]);
}

#[test]
fn a_cancelled_call_gets_no_answer_and_its_long_poll_ends() {
    let daemon = Daemon::start(&[]);
    let mut mcp = Mcp::ready(&daemon.url(), &[]);
    let id = mcp.send(
        "tools/call",
        json!({"name": "wait_for_change", "arguments": {"wait": "50s"}}),
    );
    wait_for_held_polls(&daemon, 1);
    // While it waits, ping is answered, and its id cannot be used again.
    assert_eq!(mcp.result("ping", json!({})), json!({}));
    mcp.send_line(&json!({"jsonrpc": "2.0", "id": id, "method": "ping"}).to_string());
    error_code(
        &mcp.next_message(),
        -32600,
        "already used by a request in flight",
    );
    mcp.notify(
        "notifications/cancelled",
        Some(json!({"requestId": id, "reason": "the user changed their mind"})),
    );
    wait_for_held_polls(&daemon, 0);
    // The session goes on, and the cancelled call never answers.
    assert_eq!(mcp.result("ping", json!({})), json!({}));
    publish(&daemon, &[("late", "1", "60s")]);
    assert_eq!(
        mcp.structured("get_register", json!({"name": "late"}))["value"],
        1
    );
    mcp.never_saw("no answer to the cancelled call", |message| {
        message["id"] == id
    });
}

#[test]
fn requests_sent_back_to_back_take_effect_in_the_order_sent() {
    let daemon = Daemon::start(&[]);
    let mut mcp = Mcp::ready(&daemon.url(), &[]);
    let tool = |name: &str, arguments: Value| {
        ("tools/call", json!({"name": name, "arguments": arguments}))
    };
    for round in 0..10 {
        let ids = mcp.send_all(&[
            tool(
                "set_register",
                json!({"name": "a", "value": round, "ttl": "1m"}),
            ),
            tool("get_register", json!({"name": "a"})),
            tool("delete_register", json!({"name": "a"})),
            tool("get_register", json!({"name": "a"})),
            ("resources/read", json!({"uri": "reg://a"})),
            tool(
                "set_register",
                json!({"name": "a", "value": "\"last\"", "ttl": "1m"}),
            ),
            tool("list_registers", json!({})),
        ]);
        let answers: Vec<Value> = ids.iter().map(|id| mcp.answer(*id)).collect();
        let structured = |at: usize| answers[at]["result"]["structuredContent"].clone();
        assert_eq!(structured(1)["value"], round, "{}", answers[1]);
        assert_eq!(structured(2)["existed"], true, "{}", answers[2]);
        assert_eq!(answers[3]["result"]["isError"], true, "{}", answers[3]);
        error_code(&answers[4], -32002, "does not exist");
        assert_eq!(
            structured(6)["registers"][0]["value"],
            "last",
            "{}",
            answers[6]
        );
    }
    // A subscription takes effect before what follows it...
    let ids = mcp.send_all(&[
        ("resources/subscribe", json!({"uri": "reg://b"})),
        tool(
            "set_register",
            json!({"name": "b", "value": 1, "ttl": "1m"}),
        ),
        ("resources/subscribe", json!({"uri": "reg://c"})),
        ("resources/unsubscribe", json!({"uri": "reg://c"})),
    ]);
    for id in ids {
        assert!(mcp.answer(id).get("error").is_none());
    }
    let updated = mcp.notification("notifications/resources/updated");
    assert_eq!(updated["params"], json!({"uri": "reg://b"}));
    // ...and so does an unsubscription: c, changed before b, is not heard.
    publish(&daemon, &[("c", "1", "60s")]);
    publish(&daemon, &[("b", "2", "60s")]);
    let updated = mcp.notification("notifications/resources/updated");
    assert_eq!(updated["params"], json!({"uri": "reg://b"}));
    mcp.never_saw("no update for the unsubscribed register", |message| {
        message["params"]["uri"] == "reg://c"
    });
    // A wait_for_change starts before what follows it, so it sees that change.
    let ids = mcp.send_all(&[
        tool("wait_for_change", json!({"names": ["d"], "wait": "20s"})),
        tool(
            "set_register",
            json!({"name": "d", "value": 1, "ttl": "1m"}),
        ),
    ]);
    let woken = mcp.answer(ids[0]);
    assert_eq!(
        woken["result"]["structuredContent"]["changed"][0]["name"], "d",
        "{woken}"
    );
}

#[test]
fn at_most_sixteen_calls_run_at_once() {
    let daemon = Daemon::start(&[]);
    let mut mcp = Mcp::ready(&daemon.url(), &[]);
    let ids: Vec<u64> = (0..16)
        .map(|_| {
            mcp.send(
                "tools/call",
                json!({"name": "wait_for_change", "arguments": {"wait": "50s"}}),
            )
        })
        .collect();
    wait_for_held_polls(&daemon, 16);
    error_code(
        &mcp.request(
            "tools/call",
            json!({"name": "wait_for_change", "arguments": {"wait": "50s"}}),
        ),
        -32603,
        "16 requests that wait are in flight",
    );
    // Answers free their places.
    publish(&daemon, &[("wake", "1", "60s")]);
    for id in ids {
        let answer = mcp.answer(id);
        assert_eq!(answer["result"]["structuredContent"]["timed_out"], false);
    }
    assert_eq!(
        mcp.structured("get_register", json!({"name": "wake"}))["value"],
        1
    );
}

#[test]
fn more_quick_requests_than_run_at_once_are_all_answered() {
    let daemon = Daemon::start(&[]);
    publish(&daemon, &[("a", "1", "60s")]);
    let mut mcp = Mcp::ready(&daemon.url(), &[]);
    // A long wait in flight holds one place; it does not hold the others up.
    let waiting = mcp.send(
        "tools/call",
        json!({"name": "wait_for_change", "arguments": {"names": ["z"], "wait": "50s"}}),
    );
    let requests: Vec<(&str, Value)> = (0..40)
        .map(|_| {
            (
                "tools/call",
                json!({"name": "get_register", "arguments": {"name": "a"}}),
            )
        })
        .collect();
    for id in mcp.send_all(&requests) {
        let answer = mcp.answer(id);
        assert_eq!(
            answer["result"]["structuredContent"]["value"], 1,
            "{answer}"
        );
    }
    publish(&daemon, &[("z", "1", "60s")]);
    let woken = mcp.answer(waiting);
    assert_eq!(woken["result"]["structuredContent"]["timed_out"], false);
}

#[test]
fn a_message_longer_than_the_limit_is_refused_and_the_session_goes_on() {
    let daemon = Daemon::start(&[]);
    let mut mcp = Mcp::ready(&daemon.url(), &[]);
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":"{}"}}}}"#,
        "x".repeat(5 << 20)
    );
    mcp.send_line(&huge);
    let answer = mcp.next_message();
    error_code(&answer, -32600, "longer than the 4194304");
    assert_eq!(mcp.result("ping", json!({})), json!({}));
}

#[test]
fn the_end_of_stdin_ends_it_at_once_with_status_0() {
    let daemon = Daemon::start(&[]);
    publish(&daemon, &[("a", "1", "60s")]);
    let mut mcp = Mcp::ready(&daemon.url(), &[]);
    mcp.result("resources/subscribe", json!({"uri": "reg://a"}));
    mcp.send(
        "tools/call",
        json!({"name": "wait_for_change", "arguments": {"wait": "50s"}}),
    );
    wait_for_held_polls(&daemon, 2);
    let closed = Instant::now();
    mcp.close_stdin();
    assert!(mcp.wait_exit().success());
    assert!(
        closed.elapsed() < Duration::from_secs(2),
        "took {:?}",
        closed.elapsed()
    );
    wait_for_held_polls(&daemon, 0);

    // A request that needs no waiting is still answered when stdin ends right after it.
    let mut quick = Mcp::start(&daemon.url(), &[]);
    quick.initialize("2025-11-25");
    let id = quick.send(
        "tools/call",
        json!({"name": "get_register", "arguments": {"name": "a"}}),
    );
    quick.close_stdin();
    let answer = quick.answer(id);
    assert_eq!(answer["result"]["structuredContent"]["value"], 1);
    assert!(quick.wait_exit().success());

    // Without initialize at all, too.
    let mut idle = Mcp::start(&daemon.url(), &[]);
    idle.close_stdin();
    assert!(idle.wait_exit().success());
}

#[test]
fn usage_errors_and_help() {
    // No regd is needed for either.
    let output = command("http://127.0.0.1:9", &["mcp", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    mentions(
        &help,
        &[
            "usage: regctl mcp [--read-only]",
            "\"args\": [\"mcp\"]",
            "REGISTRY",
        ],
    );
    let output = command("http://127.0.0.1:9", &["mcp", "extra"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("mcp takes only --read-only"));
}
