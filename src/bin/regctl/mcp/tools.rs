//! The tool catalog: each tool's name, description, input and output schemas and
//! annotations, and the reading of a `tools/call`'s arguments into a [`Call`]. The names
//! and inputs of the original `reg mcp` (`get_register`, `set_register`,
//! `list_registers`, `request_change`) are kept, so an assistant configured for it works
//! unchanged. Invariants: what `tools/list` advertises and what a call accepts come from
//! the same table; the annotations say the truth (only the three reading tools are
//! `readOnlyHint`, and `--read-only` offers only those); every bound below is enforced
//! here, before anything is sent to regd.

use std::time::Duration;

use regd::client::{Json, duration};
use serde_json::value::RawValue;

use super::params::{Invalid, Members, SHOWN, shown};
use crate::output;

/// The longest ttl `set_register` publishes with: nothing refreshes a register it
/// publishes, so a long ttl would show a value long after anyone vouched for it.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// `set_register`'s ttl when none is given: the original's default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5);
/// How long `request_change` waits for the provider unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `wait_for_change` waits unless told otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// The longest `wait` or `timeout` honoured (longer ones are shortened, as regd does):
/// the answer then comes within the 60 s request timeout common among MCP clients.
pub const MAX_WAIT: Duration = Duration::from_secs(50);
/// `list_registers` shows this many registers unless told otherwise...
pub const DEFAULT_LIMIT: u64 = 100;
/// ...and never more than this many.
pub const MAX_LIMIT: u64 = 1000;
/// Names one `wait_for_change` follows at most (they all go in one query string).
pub const MAX_NAMES: usize = 100;

/// What the client sees of each tool — name, title, description, input and output
/// schemas, annotations — is data: `tools.json`, in the order of [`TOOLS`].
const CATALOG: &str = include_str!("tools.json");

/// What the code needs to know of a tool; a unit test holds it to the catalog.
pub struct Tool {
    pub name: &'static str,
    /// The names of its inputs (the properties of its input schema).
    inputs: &'static [&'static str],
    /// Only reads (`readOnlyHint`): offered under `--read-only`.
    pub read_only: bool,
}

/// Every tool, in the order `tools/list` shows them.
pub const TOOLS: &[Tool] = &[
    Tool {
        name: "get_register",
        inputs: &["name"],
        read_only: true,
    },
    Tool {
        name: "list_registers",
        inputs: &["prefix", "limit"],
        read_only: true,
    },
    Tool {
        name: "wait_for_change",
        inputs: &["names", "wait", "index"],
        read_only: true,
    },
    Tool {
        name: "request_change",
        inputs: &["name", "value", "timeout"],
        read_only: false,
    },
    Tool {
        name: "set_register",
        inputs: &["name", "value", "metadata", "ttl"],
        read_only: false,
    },
    Tool {
        name: "delete_register",
        inputs: &["name"],
        read_only: false,
    },
];

/// The `tools/list` result: the catalog, compacted to one line, without the tools that
/// change registers under `--read-only`. `None` only if `tools.json` were broken,
/// which a unit test rules out.
pub fn list(read_only: bool) -> Option<String> {
    let compact = Json::parse(CATALOG).ok()?;
    let tools: Vec<&RawValue> = serde_json::from_str(compact.as_str()).ok()?;
    let shown: Vec<&str> = tools
        .iter()
        .zip(TOOLS)
        .filter(|(_, tool)| tool.read_only || !read_only)
        .map(|(raw, _)| raw.get())
        .collect();
    Some(output::object([("tools", output::array(shown).as_str())]))
}

/// A tool call, its arguments read and checked.
#[derive(Debug, PartialEq, Eq)]
pub enum Call {
    Get {
        name: String,
    },
    List {
        prefix: String,
        limit: usize,
    },
    Wait {
        /// Empty: every register.
        names: Vec<String>,
        wait: Duration,
        index: Option<u64>,
    },
    Request {
        name: String,
        value: Json,
        /// Zero: send and return at once.
        timeout: Duration,
    },
    Set {
        name: String,
        value: Json,
        metadata: Option<Json>,
        ttl: Duration,
    },
    Delete {
        name: String,
    },
}

impl Call {
    /// Whether the call waits for something to happen (and so is cut short, rather than
    /// waited for, when the session ends).
    pub fn waits(&self) -> bool {
        match self {
            Call::Wait { .. } => true,
            Call::Request { timeout, .. } => !timeout.is_zero(),
            _ => false,
        }
    }
}

/// Why a call's arguments were refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No such tool (a protocol error, -32602).
    UnknownTool(String),
    /// An argument is missing, of the wrong type, out of its schema's range or not an
    /// input of the tool: invalid params (-32602, naming the argument) in every
    /// revision.
    Invalid(String),
    /// An argument is well formed but not acceptable (a value that is not JSON, a ttl
    /// above the bound): always a tool error.
    Unacceptable(String),
}

impl From<Invalid> for Refusal {
    fn from(Invalid(message): Invalid) -> Refusal {
        Refusal::Invalid(message)
    }
}

/// Reads a `tools/call`: the tool's name and its arguments.
pub fn parse(name: &str, arguments: &Members, read_only: bool) -> Result<Call, Refusal> {
    let Some(tool) = TOOLS.iter().find(|tool| tool.name == name) else {
        return Err(Refusal::UnknownTool(format!(
            "unknown tool {name:?}; the tools are {}",
            offered(read_only)
        )));
    };
    if read_only && !tool.read_only {
        return Err(Refusal::UnknownTool(format!(
            "tool {name:?} is not offered: regctl mcp runs with --read-only, which offers only {}",
            offered(true)
        )));
    }
    arguments.only(tool.inputs, tool.name)?;
    let name_argument = || arguments.required_string("name", "the register's name");
    Ok(match tool.name {
        "get_register" => Call::Get {
            name: name_argument()?,
        },
        "list_registers" => Call::List {
            prefix: arguments.string("prefix")?.unwrap_or_default(),
            limit: arguments
                .count("limit", 1, MAX_LIMIT)?
                .unwrap_or(DEFAULT_LIMIT) as usize,
        },
        "wait_for_change" => {
            let names = arguments.strings("names")?.unwrap_or_default();
            if names.len() > MAX_NAMES {
                return Err(Refusal::Invalid(format!(
                    "arguments.names has {} names; at most {MAX_NAMES} can be followed at once (leave names out to follow every register)",
                    names.len()
                )));
            }
            Call::Wait {
                names,
                wait: duration_argument(arguments, "wait")?
                    .unwrap_or(DEFAULT_WAIT)
                    .min(MAX_WAIT),
                index: arguments.count("index", 0, u64::MAX)?,
            }
        }
        "request_change" => Call::Request {
            name: name_argument()?,
            value: value_argument(arguments)?,
            timeout: duration_argument(arguments, "timeout")?
                .unwrap_or(DEFAULT_TIMEOUT)
                .min(MAX_WAIT),
        },
        "set_register" => {
            let name = name_argument()?;
            let value = value_argument(arguments)?;
            let metadata = metadata_argument(arguments)?;
            let ttl = duration_argument(arguments, "ttl")?.unwrap_or(DEFAULT_TTL);
            if ttl.is_zero() {
                return Err(Refusal::Unacceptable(
                    "arguments.ttl must be a positive duration such as \"5s\" or \"10m\""
                        .to_string(),
                ));
            }
            if ttl > MAX_TTL {
                return Err(Refusal::Unacceptable(format!(
                    "arguments.ttl {} is above the {} this tool allows: nothing refreshes a register set_register publishes, so it would stay visible long after anyone vouched for it; publish again before it expires instead",
                    duration::format(ttl),
                    duration::format(MAX_TTL)
                )));
            }
            Call::Set {
                name,
                value,
                metadata,
                ttl,
            }
        }
        _ => Call::Delete {
            name: name_argument()?,
        },
    })
}

/// The names of the tools offered, as prose.
fn offered(read_only: bool) -> String {
    let names: Vec<&str> = TOOLS
        .iter()
        .filter(|tool| tool.read_only || !read_only)
        .map(|tool| tool.name)
        .collect();
    names.join(", ")
}

/// A duration argument in the wire's Go grammar; `0s` is zero.
fn duration_argument(arguments: &Members, key: &str) -> Result<Option<Duration>, Refusal> {
    let Some(text) = arguments.string(key)? else {
        return Ok(None);
    };
    match duration::parse(&text) {
        Ok(duration) => Ok(Some(duration.unwrap_or(Duration::ZERO))),
        // The parser's message quotes the text whole; a long one is quoted shortened.
        Err(_) if text.chars().count() > SHOWN => Err(Refusal::Unacceptable(format!(
            "arguments.{key}: {} is not a duration; write it as Go does, such as \"500ms\", \"5s\" or \"1m30s\"",
            shown(&output::string(&text))
        ))),
        Err(error) => Err(Refusal::Unacceptable(format!("arguments.{key}: {error}"))),
    }
}

/// The `value` argument: a JSON value as itself, or JSON text in a string.
fn value_argument(arguments: &Members) -> Result<Json, Refusal> {
    let Some(raw) = arguments.raw("value") else {
        return Err(Refusal::Invalid(
            "arguments.value is missing: it is the new value, any JSON value (or JSON text in a string)".to_string(),
        ));
    };
    json_argument(raw).map_err(|reason| {
        Refusal::Unacceptable(format!(
            "arguments.value {reason}; give a JSON value such as 21.5, true or {{\"mode\": \"eco\"}}, or JSON text in a string, such as \"21.5\" or \"\\\"on\\\"\" (text is JSON only in quotes)"
        ))
    })
}

/// The `metadata` argument: an object, the same as JSON text, or null for none.
fn metadata_argument(arguments: &Members) -> Result<Option<Json>, Refusal> {
    let Some(raw) = arguments.raw("metadata") else {
        return Ok(None);
    };
    let metadata = json_argument(raw).map_err(|reason| {
        Refusal::Unacceptable(format!(
            "arguments.metadata {reason}; give an object such as {{\"unit\": \"°C\"}}"
        ))
    })?;
    if metadata.is_null() {
        return Ok(None);
    }
    if !metadata.is_object() {
        let message = format!(
            "arguments.metadata must be a JSON object such as {{\"unit\": \"°C\"}}, got {}",
            shown(metadata.as_str())
        );
        // Given as itself, a non-object is outside the input schema (object, string or
        // null): invalid params. Given as JSON text, it is well formed but unusable.
        return Err(if raw.get().starts_with('"') {
            Refusal::Unacceptable(message)
        } else {
            Refusal::Invalid(message)
        });
    }
    Ok(Some(metadata))
}

/// JSON given as itself, or as JSON text inside a string.
fn json_argument(raw: &RawValue) -> Result<Json, String> {
    match serde_json::from_str::<String>(raw.get()) {
        Ok(text) => Json::parse(&text)
            .map_err(|error| format!("{} is not JSON ({error})", shown(raw.get()))),
        Err(_) => Json::parse(raw.get()).map_err(|error| format!("is not acceptable: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(tool: &str, arguments: &str) -> Result<Call, Refusal> {
        let raw = RawValue::from_string(arguments.to_string()).unwrap();
        let members = Members::of(Some(&raw), "arguments").unwrap();
        parse(tool, &members, false)
    }

    #[track_caller]
    fn refused(tool: &str, arguments: &str, kind: fn(String) -> Refusal, mentions: &str) {
        match parsed(tool, arguments) {
            Err(refusal) => {
                let (Refusal::UnknownTool(message)
                | Refusal::Invalid(message)
                | Refusal::Unacceptable(message)) = &refusal;
                assert_eq!(
                    std::mem::discriminant(&refusal),
                    std::mem::discriminant(&kind(String::new())),
                    "{refusal:?}"
                );
                assert!(
                    message.contains(mentions),
                    "{message:?} should mention {mentions:?}"
                );
            }
            Ok(call) => panic!("{tool} {arguments} was accepted: {call:?}"),
        }
    }

    #[test]
    fn arguments_become_calls() {
        let json = |text: &str| Json::parse(text).unwrap();
        let cases: &[(&str, &str, Call)] = &[
            (
                "get_register",
                r#"{"name":"a"}"#,
                Call::Get { name: "a".into() },
            ),
            (
                "list_registers",
                "{}",
                Call::List {
                    prefix: String::new(),
                    limit: 100,
                },
            ),
            (
                "list_registers",
                r#"{"prefix":"h.","limit":3}"#,
                Call::List {
                    prefix: "h.".into(),
                    limit: 3,
                },
            ),
            (
                "wait_for_change",
                "{}",
                Call::Wait {
                    names: vec![],
                    wait: DEFAULT_WAIT,
                    index: None,
                },
            ),
            (
                "wait_for_change",
                r#"{"names":["a"],"wait":"2h","index":7}"#,
                Call::Wait {
                    names: vec!["a".into()],
                    wait: MAX_WAIT,
                    index: Some(7),
                },
            ),
            (
                "wait_for_change",
                r#"{"wait":"0s"}"#,
                Call::Wait {
                    names: vec![],
                    wait: Duration::ZERO,
                    index: None,
                },
            ),
            (
                "request_change",
                r#"{"name":"a","value":"\"on\""}"#,
                Call::Request {
                    name: "a".into(),
                    value: json("\"on\""),
                    timeout: DEFAULT_TIMEOUT,
                },
            ),
            (
                "request_change",
                r#"{"name":"a","value":{"b": 1.50},"timeout":"0s"}"#,
                Call::Request {
                    name: "a".into(),
                    value: json(r#"{"b":1.50}"#),
                    timeout: Duration::ZERO,
                },
            ),
            (
                "set_register",
                r#"{"name":"a","value":"21.5"}"#,
                Call::Set {
                    name: "a".into(),
                    value: json("21.5"),
                    metadata: None,
                    ttl: DEFAULT_TTL,
                },
            ),
            (
                "set_register",
                r#"{"name":"a","value":null,"metadata":{"u":"C"},"ttl":"1h"}"#,
                Call::Set {
                    name: "a".into(),
                    value: json("null"),
                    metadata: Some(json(r#"{"u":"C"}"#)),
                    ttl: MAX_TTL,
                },
            ),
            (
                "set_register",
                r#"{"name":"a","value":1,"metadata":"{\"u\":1}"}"#,
                Call::Set {
                    name: "a".into(),
                    value: json("1"),
                    metadata: Some(json(r#"{"u":1}"#)),
                    ttl: DEFAULT_TTL,
                },
            ),
            (
                "delete_register",
                r#"{"name":""}"#,
                Call::Delete {
                    name: String::new(),
                },
            ),
        ];
        for (tool, arguments, expected) in cases {
            assert_eq!(
                parsed(tool, arguments).as_ref(),
                Ok(expected),
                "{tool} {arguments}"
            );
        }
    }

    #[test]
    fn bad_arguments_are_named() {
        refused(
            "nope",
            "{}",
            Refusal::UnknownTool,
            "the tools are get_register",
        );
        refused(
            "get_register",
            "{}",
            Refusal::Invalid,
            "arguments.name is missing",
        );
        refused(
            "get_register",
            r#"{"name":5}"#,
            Refusal::Invalid,
            "arguments.name must be a string",
        );
        refused(
            "get_register",
            r#"{"name":"a","x":1}"#,
            Refusal::Invalid,
            "arguments.x is not an input",
        );
        refused(
            "list_registers",
            r#"{"limit":0}"#,
            Refusal::Invalid,
            "arguments.limit must be a whole number from 1 to 1000",
        );
        refused(
            "list_registers",
            r#"{"limit":1001}"#,
            Refusal::Invalid,
            "arguments.limit",
        );
        refused(
            "wait_for_change",
            r#"{"names":"a"}"#,
            Refusal::Invalid,
            "arguments.names must be an array of strings",
        );
        refused(
            "wait_for_change",
            r#"{"wait":"5"}"#,
            Refusal::Unacceptable,
            "arguments.wait: invalid duration \"5\"",
        );
        let many = format!(
            r#"{{"names":[{}]}}"#,
            vec!["\"n\""; MAX_NAMES + 1].join(",")
        );
        refused("wait_for_change", &many, Refusal::Invalid, "at most 100");
        refused(
            "request_change",
            r#"{"name":"a"}"#,
            Refusal::Invalid,
            "arguments.value is missing",
        );
        refused(
            "request_change",
            r#"{"name":"a","value":"on"}"#,
            Refusal::Unacceptable,
            "arguments.value \"on\" is not JSON",
        );
        refused(
            "set_register",
            r#"{"name":"a","value":1,"ttl":"2h"}"#,
            Refusal::Unacceptable,
            "above the 1h0m0s",
        );
        refused(
            "set_register",
            r#"{"name":"a","value":1,"ttl":"0s"}"#,
            Refusal::Unacceptable,
            "positive",
        );
        refused(
            "set_register",
            r#"{"name":"a","value":1,"metadata":[1]}"#,
            Refusal::Invalid,
            "must be a JSON object",
        );
        refused(
            "set_register",
            r#"{"name":"a","value":1,"metadata":"[1]"}"#,
            Refusal::Unacceptable,
            "must be a JSON object",
        );
    }

    #[test]
    fn refusals_quote_a_long_value_shortened() {
        let long = "[".repeat(10_000);
        for (tool, arguments) in [
            (
                "set_register",
                format!(r#"{{"name":"a","value":"{long}"}}"#),
            ),
            (
                "set_register",
                format!(
                    r#"{{"name":"a","value":1,"metadata":[{}1]}}"#,
                    "1,".repeat(10_000)
                ),
            ),
            (
                "wait_for_change",
                format!(r#"{{"wait":"{}"}}"#, "5".repeat(10_000)),
            ),
        ] {
            match parsed(tool, &arguments) {
                Err(Refusal::Unacceptable(message) | Refusal::Invalid(message)) => {
                    assert!(message.len() < 400, "{} bytes: {message}", message.len());
                    assert!(message.contains('…'), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn read_only_offers_only_the_reading_tools() {
        let raw = RawValue::from_string(r#"{"name":"a"}"#.to_string()).unwrap();
        let members = Members::of(Some(&raw), "arguments").unwrap();
        assert!(parse("get_register", &members, true).is_ok());
        match parse("delete_register", &members, true) {
            Err(Refusal::UnknownTool(message)) => {
                assert!(message.contains("--read-only"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let listed: serde_json::Value = serde_json::from_str(&list(true).unwrap()).unwrap();
        let names: Vec<&str> = listed["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tool| tool["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["get_register", "list_registers", "wait_for_change"]);
    }

    #[test]
    fn the_catalog_matches_the_code() {
        let listed: serde_json::Value = serde_json::from_str(&list(false).unwrap()).unwrap();
        let shown = listed["tools"].as_array().unwrap();
        assert_eq!(shown.len(), TOOLS.len());
        for (tool, shown) in TOOLS.iter().zip(shown) {
            assert_eq!(shown["name"], tool.name);
            let properties: Vec<&String> = shown["inputSchema"]["properties"]
                .as_object()
                .unwrap()
                .keys()
                .collect();
            let mut inputs = tool.inputs.to_vec();
            inputs.sort_unstable();
            assert_eq!(properties, inputs, "{}", tool.name);
            for schema in ["inputSchema", "outputSchema"] {
                assert_eq!(shown[schema]["type"], "object", "{} {schema}", tool.name);
                assert_eq!(shown[schema]["additionalProperties"], false);
            }
            assert!(shown["title"].is_string() && shown["description"].is_string());
            let annotations = &shown["annotations"];
            assert_eq!(annotations["readOnlyHint"], tool.read_only, "{}", tool.name);
            for hint in ["destructiveHint", "idempotentHint", "openWorldHint"] {
                assert!(annotations[hint].is_boolean(), "{} {hint}", tool.name);
            }
        }
        // The defaults and bounds the catalog tells the model are the ones enforced.
        let input =
            |tool: usize, name: &str| shown[tool]["inputSchema"]["properties"][name].clone();
        assert_eq!(input(1, "limit")["default"], DEFAULT_LIMIT);
        assert_eq!(input(1, "limit")["maximum"], MAX_LIMIT);
        assert_eq!(input(2, "names")["maxItems"], MAX_NAMES);
        assert_eq!(input(2, "wait")["default"], duration::format(DEFAULT_WAIT));
        assert_eq!(
            input(3, "timeout")["default"],
            duration::format(DEFAULT_TIMEOUT)
        );
        assert_eq!(input(4, "ttl")["default"], duration::format(DEFAULT_TTL));
        let line = list(false).unwrap();
        assert!(!line.contains('\n'), "one message per line");
    }
}
