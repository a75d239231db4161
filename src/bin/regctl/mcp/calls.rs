//! Running a tool [`Call`] against regd and wording its answer twice: as text for the
//! model and as `structuredContent` that matches the tool's output schema. Invariants:
//! each call talks to regd only through `regd::client`; register values appear exactly
//! as regd holds them (numbers and key order untouched); a failure is a tool error
//! (`isError`) whose text says what to do, never a protocol error; `wait_for_change`
//! never misses a change, because the index it hands back is always one whose later
//! changes it has not reported yet; a call that waits passes its [`Turn`] once what it
//! waits from is fixed, and the others when they end.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use regd::client::{self, Client, Json, Register, RequestOutcome, duration};

use super::tools::Call;
use crate::output;

/// A tool's answer.
#[derive(Debug)]
pub struct Outcome {
    text: String,
    /// JSON text matching the tool's output schema; `None` for errors.
    structured: Option<String>,
    is_error: bool,
}

impl Outcome {
    fn success(text: String, structured: String) -> Outcome {
        Outcome {
            text,
            structured: Some(structured),
            is_error: false,
        }
    }

    /// A tool error: the call ran but could not do its job, and `text` says why.
    pub fn error(text: impl Into<String>) -> Outcome {
        Outcome {
            text: text.into(),
            structured: None,
            is_error: true,
        }
    }

    /// The `tools/call` result (MCP `CallToolResult`).
    pub fn to_json(&self) -> String {
        let text = output::string(&self.text);
        let content =
            output::array([output::object([("type", "\"text\""), ("text", &text)]).as_str()]);
        let mut members = vec![("content", content.as_str())];
        if let Some(structured) = &self.structured {
            members.push(("structuredContent", structured.as_str()));
        }
        members.push(("isError", if self.is_error { "true" } else { "false" }));
        output::object(members)
    }
}

/// A request's place in the order the client sent them: the requests after it start
/// only once it is passed (or dropped, when the request ends), so that requests sent
/// back to back take effect in that order.
pub struct Turn(Option<Sender<()>>);

impl Turn {
    /// Holds `baton` until passed: the next request waits for it to disconnect.
    pub fn new(baton: Sender<()>) -> Turn {
        Turn(Some(baton))
    }

    /// Lets the next request start, while this one goes on waiting.
    pub fn pass(&mut self) {
        self.0 = None;
    }
}

/// Runs a call. One that waits passes its turn once what it waits from is fixed, so
/// that later requests neither wait for it nor slip in before it.
pub fn run(call: Call, client: &Client, seen: &Seen, turn: &mut Turn) -> Outcome {
    let result = match call {
        Call::Get { name } => get(client, &name),
        Call::List { prefix, limit } => list(client, seen, &prefix, limit),
        Call::Wait { names, wait, index } => {
            wait_for_change(client, seen, &names, wait, index, turn)
        }
        Call::Request {
            name,
            value,
            timeout,
        } => {
            if !timeout.is_zero() {
                // Passed before the request is sent (Client::request_and_wait reads
                // and sends in one call): a request sent right behind this one may
                // reach regd first.
                turn.pass();
            }
            request_change(client, &name, &value, timeout)
        }
        Call::Set {
            name,
            value,
            metadata,
            ttl,
        } => set(client, &name, &value, metadata.as_ref(), ttl),
        Call::Delete { name } => delete(client, &name),
    };
    result.unwrap_or_else(|error| Outcome::error(regd_error(&error)))
}

/// What a failure to talk to regd means for the person who set up this MCP server.
pub fn regd_error(error: &client::Error) -> String {
    match error {
        client::Error::Connect { .. } => format!(
            "{error}. Is regd running there? regctl mcp finds regd through the REGISTRY environment variable (or --registry): set it in this MCP server's configuration, such as \"env\": {{\"REGISTRY\": \"http://gateway:8080\"}}"
        ),
        client::Error::Unauthorized {
            token_sent: false, ..
        } => "regd needs an access token: set REGD_TOKEN (or --token-file) in this MCP server's configuration".to_string(),
        client::Error::Unauthorized {
            token_sent: true,
            message,
        } => format!(
            "regd refused the token ({message}); check REGD_TOKEN or --token-file in this MCP server's configuration"
        ),
        client::Error::Forbidden { message } => format!(
            "the token's role may not do this: {message}; reading and request_change need a consumer token, set_register and delete_register a provider token, and an admin token does everything"
        ),
        client::Error::Status { status, message } => {
            format!("regd refused the request ({status}): {message}")
        }
        other => other.to_string(),
    }
}

/// A register as structured content: `{"name", "value", "metadata"}`.
fn register_json(name: &str, register: &Register) -> String {
    let name = output::string(name);
    output::object([
        ("name", name.as_str()),
        ("value", register.value.as_str()),
        ("metadata", metadata_json(register.metadata.as_ref())),
    ])
}

fn metadata_json(metadata: Option<&Json>) -> &str {
    metadata.map_or("null", Json::as_str)
}

/// `NAME = VALUE` and the metadata, for the text answers.
fn register_line(name: &str, register: &Register) -> String {
    match &register.metadata {
        Some(metadata) => format!("{name} = {}  (metadata {metadata})", register.value),
        None => format!("{name} = {}", register.value),
    }
}

fn index_json(index: Option<u64>) -> String {
    index.map_or("null".to_string(), |index| index.to_string())
}

fn millis(duration: Duration) -> String {
    duration.as_millis().to_string()
}

fn get(client: &Client, name: &str) -> Result<Outcome, client::Error> {
    let mut registers = client.details(&[name])?;
    let Some(detailed) = registers.remove(name) else {
        return Ok(Outcome::error(format!(
            "register {} does not exist: it was never published, or it expired or was deleted; list_registers shows the registers that exist",
            output::string(name)
        )));
    };
    let ttl = detailed.ttl.map(duration::format);
    let mut text = register_line(name, &detailed.register);
    text.push_str(&format!(
        "\n{}expires in {} unless its provider publishes it again (revision {})",
        ttl.as_ref()
            .map_or(String::new(), |ttl| format!("published with ttl {ttl}; ")),
        duration::format(detailed.expires_in),
        detailed.index
    ));
    let name_json = output::string(name);
    let ttl_json = ttl.as_deref().map_or("null".to_string(), output::string);
    let expires = millis(detailed.expires_in);
    let index = detailed.index.to_string();
    let structured = output::object([
        ("name", name_json.as_str()),
        ("value", detailed.register.value.as_str()),
        (
            "metadata",
            metadata_json(detailed.register.metadata.as_ref()),
        ),
        ("ttl", &ttl_json),
        ("expires_in_ms", &expires),
        ("index", &index),
    ]);
    Ok(Outcome::success(text, structured))
}

fn list(
    client: &Client,
    seen: &Seen,
    prefix: &str,
    limit: usize,
) -> Result<Outcome, client::Error> {
    let snapshot = client.poll::<&str>(&[], None, None)?;
    if let Some(index) = snapshot.index {
        seen.remember(index, &[], snapshot.registers.keys().cloned().collect());
    }
    let matching: Vec<(&String, &Register)> = snapshot
        .registers
        .iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .collect();
    let shown = &matching[..matching.len().min(limit)];
    let left_out = matching.len() - shown.len();
    let whose = if prefix.is_empty() {
        String::new()
    } else {
        format!(" whose names start with {}", output::string(prefix))
    };
    let mut lines: Vec<String> = Vec::new();
    if matching.is_empty() {
        lines.push(format!("no registers{whose}"));
    } else if left_out == 0 {
        lines.push(format!("{} registers{whose}:", matching.len()));
    } else {
        lines.push(format!(
            "the first {} of {} registers{whose} ({left_out} left out; narrow the prefix or raise the limit, at most {}):",
            shown.len(),
            matching.len(),
            super::tools::MAX_LIMIT
        ));
    }
    lines.extend(
        shown
            .iter()
            .map(|(name, register)| register_line(name, register)),
    );
    let registers: Vec<String> = shown
        .iter()
        .map(|(name, register)| register_json(name, register))
        .collect();
    let registers = output::array(registers.iter().map(String::as_str));
    let total = matching.len().to_string();
    let left_out = left_out.to_string();
    let index = index_json(snapshot.index);
    let structured = output::object([
        ("registers", registers.as_str()),
        ("total", &total),
        ("left_out", &left_out),
        ("index", &index),
    ]);
    Ok(Outcome::success(lines.join("\n"), structured))
}

fn wait_for_change(
    client: &Client,
    seen: &Seen,
    names: &[String],
    wait: Duration,
    index: Option<u64>,
    turn: &mut Turn,
) -> Result<Outcome, client::Error> {
    let deadline = Instant::now() + wait;
    // `before`: the registers that existed at `index`, when known, to tell removals.
    let (mut index, mut before) = match index {
        Some(index) => (Some(index), seen.names_at(index, names)),
        None => {
            let snapshot = client.poll(names, None, None)?;
            (
                snapshot.index,
                Some(snapshot.registers.into_keys().collect()),
            )
        }
    };
    // From `index` on, every change is reported, whenever the next request runs.
    turn.pass();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let hold = (left >= Duration::from_millis(1)).then_some(left);
        let snapshot = client.poll(names, hold, index)?;
        if hold.is_some() && Instant::now() >= deadline {
            // Timed out: the index stays, so whatever happens next is still reported.
            return Ok(waited(wait, index, Vec::new(), Some(Vec::new()), index));
        }
        // Woken (or asked not to wait): the revisions tell what changed since `index`.
        let details = client.details(names)?;
        let changed: Vec<(String, Register)> = details
            .iter()
            .filter(|(_, detailed)| index.is_none_or(|index| detailed.index > index))
            .map(|(name, detailed)| (name.clone(), detailed.register.clone()))
            .collect();
        let now: BTreeSet<String> = details.into_keys().collect();
        if let Some(index) = snapshot.index {
            seen.remember(index, names, now.clone());
        }
        let previous = index;
        index = snapshot.index.or(index);
        let Some(before) = before.replace(now.clone()) else {
            // An index this session did not hand out: which registers existed then is
            // unknown, so removals cannot be named. Say so, rather than wait on as if a
            // removal that woke the poll were nothing.
            return Ok(waited(wait, index, changed, None, previous));
        };
        let removed: Vec<String> = before.difference(&now).cloned().collect();
        if !changed.is_empty() || !removed.is_empty() || hold.is_none() {
            return Ok(waited(wait, index, changed, Some(removed), previous));
        }
        // An early answer with nothing to report (the change was undone, or regd could
        // not tell): wait on from the newer index.
    }
}

/// The answer of `wait_for_change`; `removed` is `None` when registers may have gone
/// since `since` but which is unknown.
fn waited(
    wait: Duration,
    index: Option<u64>,
    changed: Vec<(String, Register)>,
    removed: Option<Vec<String>>,
    since: Option<u64>,
) -> Outcome {
    let timed_out = changed.is_empty() && removed.as_ref().is_some_and(Vec::is_empty);
    let mut lines: Vec<String> = changed
        .iter()
        .map(|(name, register)| format!("changed: {}", register_line(name, register)))
        .collect();
    match &removed {
        Some(removed) => lines.extend(removed.iter().map(|name| format!("removed: {name}"))),
        None => lines.push(format!(
            "registers may have been removed since index {}, but which cannot be told: that index is not from this session's recent answers; list_registers shows what exists now",
            index_json(since)
        )),
    }
    if timed_out {
        lines.push(format!("nothing changed within {}", duration::format(wait)));
    }
    if let Some(index) = index {
        lines.push(format!(
            "index {index}: pass it to the next wait_for_change so that nothing is missed"
        ));
    }
    let changed: Vec<String> = changed
        .iter()
        .map(|(name, register)| register_json(name, register))
        .collect();
    let changed = output::array(changed.iter().map(String::as_str));
    let removed = match removed {
        Some(removed) => {
            let removed: Vec<String> = removed.iter().map(|name| output::string(name)).collect();
            output::array(removed.iter().map(String::as_str))
        }
        None => "null".to_string(),
    };
    let index = index_json(index);
    let structured = output::object([
        ("changed", changed.as_str()),
        ("removed", &removed),
        ("index", &index),
        ("timed_out", if timed_out { "true" } else { "false" }),
    ]);
    Outcome::success(lines.join("\n"), structured)
}

fn request_change(
    client: &Client,
    name: &str,
    value: &Json,
    timeout: Duration,
) -> Result<Outcome, client::Error> {
    let quoted = output::string(name);
    let (status, current, text) = if timeout.is_zero() {
        client.request(name, value)?;
        (
            "sent",
            None,
            format!(
                "sent: the change request {quoted} = {value} waits in regd for its provider (not waited for, as timeout is 0s)"
            ),
        )
    } else {
        let waited = duration::format(timeout);
        match client.request_and_wait(name, value, timeout)? {
            RequestOutcome::Applied => (
                "applied",
                Some(Register {
                    value: value.clone(),
                    metadata: None,
                }),
                format!("applied: {quoted} is now {value}"),
            ),
            RequestOutcome::NotApplied {
                current: Some(register),
            } => (
                "not_applied",
                Some(register.clone()),
                format!(
                    "not applied: the value is still {} after {waited}. Is the provider of {quoted} running, and does it apply change requests? The request stays pending in regd until a provider takes it.",
                    register.value
                ),
            ),
            RequestOutcome::NotApplied { current: None } => (
                "not_applied",
                None,
                format!(
                    "not applied: register {quoted} does not exist, so nothing took {value} within {waited}; the request waits in regd for a provider of {quoted}"
                ),
            ),
        }
    };
    // Applied: read what the register holds now, metadata included.
    let current = match (status, current) {
        ("applied", _) => client.get(&[name])?.remove(name),
        (_, current) => current,
    };
    let current = current.map_or("null".to_string(), |register| {
        register_json(name, &register)
    });
    let status = output::string(status);
    let structured = output::object([
        ("name", quoted.as_str()),
        ("value", value.as_str()),
        ("status", &status),
        ("current", &current),
    ]);
    Ok(Outcome::success(text, structured))
}

fn set(
    client: &Client,
    name: &str,
    value: &Json,
    metadata: Option<&Json>,
    ttl: Duration,
) -> Result<Outcome, client::Error> {
    client.publish(&[(name, value, metadata, ttl)])?;
    let expires = millis(ttl);
    let ttl = duration::format(ttl);
    let quoted = output::string(name);
    let text = format!(
        "published {} with ttl {ttl}: it expires in {ttl} unless it is published again",
        register_line(
            name,
            &Register {
                value: value.clone(),
                metadata: metadata.cloned()
            }
        )
    );
    let ttl_json = output::string(&ttl);
    let structured = output::object([
        ("name", quoted.as_str()),
        ("value", value.as_str()),
        ("metadata", metadata_json(metadata)),
        ("ttl", &ttl_json),
        ("expires_in_ms", &expires),
    ]);
    Ok(Outcome::success(text, structured))
}

fn delete(client: &Client, name: &str) -> Result<Outcome, client::Error> {
    // Whether it existed is a courtesy: a provider token may delete but not read.
    let existed = client
        .get(&[name])
        .ok()
        .map(|registers| registers.contains_key(name));
    client.delete(&[name])?;
    let quoted = output::string(name);
    let text = match existed {
        Some(false) => format!("{quoted} did not exist; nothing was deleted"),
        _ => format!(
            "deleted {quoted}: whoever follows it sees it go now; a provider still running publishes it again at its next refresh"
        ),
    };
    let existed = match existed {
        Some(true) => "true",
        Some(false) => "false",
        None => "null",
    };
    let structured = output::object([("name", quoted.as_str()), ("existed", existed)]);
    Ok(Outcome::success(text, structured))
}

/// Which registers existed at recent indexes, as `wait_for_change` and
/// `list_registers` saw them: a later `wait_for_change` from one of those indexes can
/// then say which registers went away. Bounded: only the latest few are kept.
#[derive(Default)]
pub struct Seen {
    entries: Mutex<VecDeque<Sighting>>,
}

struct Sighting {
    index: u64,
    /// The names asked for (empty: every register).
    scope: Vec<String>,
    /// Those that existed.
    names: BTreeSet<String>,
}

/// Sightings kept at most.
const SIGHTINGS: usize = 8;

impl Seen {
    fn remember(&self, index: u64, scope: &[String], names: BTreeSet<String>) {
        let mut entries = self.entries.lock();
        entries.retain(|entry| !(entry.index == index && entry.scope == scope));
        if entries.len() == SIGHTINGS {
            entries.pop_front();
        }
        entries.push_back(Sighting {
            index,
            scope: scope.to_vec(),
            names,
        });
    }

    /// The registers among `scope` (empty: all) that existed at `index`, if known.
    fn names_at(&self, index: u64, scope: &[String]) -> Option<BTreeSet<String>> {
        let entries = self.entries.lock();
        let covered: BTreeSet<&String> = scope.iter().collect();
        entries.iter().rev().find_map(|entry| {
            if entry.index != index {
                return None;
            }
            if entry.scope.is_empty() {
                return Some(
                    entry
                        .names
                        .iter()
                        .filter(|name| scope.is_empty() || covered.contains(name))
                        .cloned()
                        .collect(),
                );
            }
            let asked: BTreeSet<&String> = entry.scope.iter().collect();
            (!scope.is_empty() && covered.is_subset(&asked)).then(|| {
                entry
                    .names
                    .iter()
                    .filter(|name| covered.contains(name))
                    .cloned()
                    .collect()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn sightings_answer_for_the_scope_they_cover() {
        let seen = Seen::default();
        seen.remember(10, &[], names(&["a", "b"]));
        seen.remember(12, &["a".to_string(), "c".to_string()], names(&["a"]));
        let scope = |list: &[&str]| list.iter().map(|name| name.to_string()).collect::<Vec<_>>();
        assert_eq!(seen.names_at(10, &[]), Some(names(&["a", "b"])));
        assert_eq!(seen.names_at(10, &scope(&["b", "z"])), Some(names(&["b"])));
        assert_eq!(seen.names_at(12, &scope(&["c"])), Some(names(&[])));
        assert_eq!(seen.names_at(12, &scope(&["a", "d"])), None);
        assert_eq!(seen.names_at(12, &[]), None);
        assert_eq!(seen.names_at(11, &[]), None);
        for index in 100..100 + SIGHTINGS as u64 {
            seen.remember(index, &[], names(&[]));
        }
        assert_eq!(seen.names_at(10, &[]), None);
    }

    #[test]
    fn outcomes_are_call_tool_results() {
        let outcome = Outcome::success("a = 1".to_string(), r#"{"a":1}"#.to_string());
        assert_eq!(
            outcome.to_json(),
            r#"{"content":[{"type":"text","text":"a = 1"}],"structuredContent":{"a":1},"isError":false}"#
        );
        assert_eq!(
            Outcome::error("no \"x\"").to_json(),
            r#"{"content":[{"type":"text","text":"no \"x\""}],"isError":true}"#
        );
    }
}
