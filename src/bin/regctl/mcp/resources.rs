//! Registers as MCP resources: the `reg://NAME` URIs (this module writes and reads
//! them), `resources/list` pages, the template, `resources/read` contents, and the
//! [`Follower`] that turns one consumer long poll into `notifications/resources/updated`
//! and `notifications/resources/list_changed`. Invariants: a URI names exactly one
//! register and every name has exactly one URI (percent-encoding of everything but
//! RFC 3986's unreserved characters); regd is followed by one `Consumer` (one batched
//! long poll with `index=`, so no change is missed and nothing polls in a loop), started
//! only once the client lists or subscribes, and following every register once the
//! subscribed names would not fit in one request; a notification is sent only for a
//! change after the client's view (its listing, or the state at its subscription) was
//! taken; the follower's lock is never held while talking to regd or writing.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{Receiver, Sender, select};
use parking_lot::Mutex;
use regd::client::{Client, Consumer, Register, Update};

use super::jsonrpc::{self, Failure};
use super::transport::Output;
use crate::output;

/// Resources per `resources/list` page.
pub const PAGE: usize = 100;

/// The subscriptions followed by name at most, and the bytes their names may take in
/// the long poll's query string. All names go into one request, which regd refuses
/// beyond `--max-names` (1000) or `--max-uri` (8 KiB) — and a refused poll would end
/// every notification — so past either bound the follower follows every register and
/// keeps only the subscribed ones.
const MAX_NAMED: usize = 100;
const MAX_NAMED_BYTES: usize = 4096;

const SCHEME: &str = "reg://";

/// The URI of a register: `reg://` and the name, percent-encoded.
pub fn uri(name: &str) -> String {
    let mut uri = String::with_capacity(SCHEME.len() + name.len());
    uri.push_str(SCHEME);
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            uri.push(char::from(byte));
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri
}

/// The register a URI names; the message says what is wrong with a URI that names none.
pub fn name_of(uri: &str) -> Result<String, String> {
    let Some(encoded) = uri.strip_prefix(SCHEME) else {
        return Err(format!(
            "params.uri must be a register's URI, reg://NAME with NAME percent-encoded (such as reg://hall.temperature), got {}",
            output::string(uri)
        ));
    };
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut rest = encoded.as_bytes();
    while let Some((&byte, after)) = rest.split_first() {
        if byte == b'%' {
            let digits = after
                .get(..2)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok());
            let Some(decoded) = digits else {
                return Err(format!(
                    "params.uri {} has a % that is not followed by two hex digits",
                    output::string(uri)
                ));
            };
            bytes.push(decoded);
            rest = &after[2..];
        } else {
            bytes.push(byte);
            rest = after;
        }
    }
    String::from_utf8(bytes).map_err(|_| {
        format!(
            "params.uri {} does not decode to UTF-8; register names are UTF-8 text",
            output::string(uri)
        )
    })
}

/// One page of `resources/list`: the registers after the cursor's, in name order.
pub fn page(
    registers: &BTreeMap<String, Register>,
    cursor: Option<&str>,
) -> Result<String, Failure> {
    let after = match cursor {
        None => None,
        Some(cursor) => Some(name_of(cursor).map_err(|_| {
            Failure::invalid_params(format!(
                "params.cursor {} is not a cursor this server gave; leave it out for the first page",
                output::string(cursor)
            ))
        })?),
    };
    let mut rest = registers.keys().filter(|name| {
        after
            .as_ref()
            .is_none_or(|after| name.as_str() > after.as_str())
    });
    let names: Vec<&String> = rest.by_ref().take(PAGE).collect();
    let items: Vec<String> = names
        .iter()
        .map(|name| {
            let uri = output::string(&uri(name));
            let shown = output::string(name);
            output::object([
                ("uri", uri.as_str()),
                ("name", &shown),
                ("title", &shown),
                ("mimeType", "\"application/json\""),
            ])
        })
        .collect();
    let items = output::array(items.iter().map(String::as_str));
    let mut members = vec![("resources", items)];
    if rest.next().is_some() {
        if let Some(last) = names.last() {
            members.push(("nextCursor", output::string(&uri(last))));
        }
    }
    Ok(output::object(
        members.iter().map(|(key, value)| (*key, value.as_str())),
    ))
}

/// How a new subscription is followed.
enum Follow {
    /// By its name in the long poll.
    Name,
    /// By the long poll switching to every register.
    Everything,
}

/// Whether these names are too many, or too long, to follow by name in one request.
fn too_many(names: &BTreeSet<String>) -> bool {
    names.len() > MAX_NAMED
        || names
            .iter()
            .map(|name| "&name=".len() + uri(name).len() - SCHEME.len())
            .sum::<usize>()
            > MAX_NAMED_BYTES
}

/// The `resources/templates/list` result: any register by name.
pub const TEMPLATES: &str = r#"{"resourceTemplates":[{"uriTemplate":"reg://{name}","name":"register","title":"A register by name","description":"A register of this regd as JSON, {\"value\": V, \"metadata\": M}; the name is percent-encoded (RFC 3986), so kitchen/lamp is reg://kitchen%2Flamp","mimeType":"application/json"}]}"#;

/// The `resources/read` result for a register: `{"value": V, "metadata": M}` as regd
/// serves it (metadata left out when there is none).
pub fn contents(name: &str, register: &Register) -> String {
    let mut members = vec![("value", register.value.as_str())];
    if let Some(metadata) = &register.metadata {
        members.push(("metadata", metadata.as_str()));
    }
    let text = output::string(&output::object(members));
    let uri = output::string(&uri(name));
    let content = output::object([
        ("uri", uri.as_str()),
        ("mimeType", "\"application/json\""),
        ("text", &text),
    ]);
    output::object([("contents", output::array([content.as_str()]).as_str())])
}

/// Follows registers for the client's subscriptions and listing, and notifies it of
/// changes.
pub struct Follower {
    client: Client,
    output: Output,
    state: Mutex<Followed>,
    running: Mutex<Option<Running>>,
}

#[derive(Default)]
struct Followed {
    /// Registers the client subscribed to.
    subscribed: BTreeSet<String>,
    /// The client listed the resources: it hears of list changes, and `known` holds
    /// every register.
    listed: bool,
    /// The consumer follows every register (since the listing, or since the
    /// subscriptions grew past [`MAX_NAMED`] or [`MAX_NAMED_BYTES`]); it never goes
    /// back to names.
    everything: bool,
    /// The followed registers as the client's view has them; absent: does not exist.
    known: BTreeMap<String, Register>,
    /// regd is unreachable (said once on stderr).
    failing: bool,
}

struct Running {
    consumer: Arc<Consumer>,
    stop: Sender<()>,
    notifier: thread::JoinHandle<()>,
}

impl Follower {
    pub fn new(client: Client, output: Output) -> Arc<Follower> {
        Arc::new(Follower {
            client,
            output,
            state: Mutex::new(Followed::default()),
            running: Mutex::new(None),
        })
    }

    /// The consumer, started (with its notifier thread) on first use.
    fn consumer(self: &Arc<Self>) -> io::Result<Arc<Consumer>> {
        let mut running = self.running.lock();
        if let Some(running) = running.as_ref() {
            return Ok(running.consumer.clone());
        }
        let consumer = Arc::new(self.client.consumer());
        let (stop, stopped) = crossbeam_channel::bounded(0);
        let updates = consumer.updates().clone();
        let follower = self.clone();
        let notifier = thread::Builder::new()
            .name("regctl-mcp-notifier".to_string())
            .spawn(move || follower.notify(&updates, &stopped))?;
        *running = Some(Running {
            consumer: consumer.clone(),
            stop,
            notifier,
        });
        Ok(consumer)
    }

    /// The client listed `registers`: from now on it hears when registers appear or go.
    pub fn listed(self: &Arc<Self>, registers: &BTreeMap<String, Register>) -> io::Result<()> {
        let (gone, follow_all) = {
            let mut state = self.state.lock();
            if state.listed {
                return Ok(());
            }
            state.listed = true;
            // Until now only subscribed registers were known; those gone since their
            // subscription will not be reported by the new follow-everything poll.
            let gone: Vec<String> = state
                .known
                .keys()
                .filter(|name| !registers.contains_key(*name))
                .cloned()
                .collect();
            for name in &gone {
                state.known.remove(name);
            }
            for (name, register) in registers {
                state
                    .known
                    .entry(name.clone())
                    .or_insert_with(|| register.clone());
            }
            (gone, !std::mem::replace(&mut state.everything, true))
        };
        for name in gone {
            self.updated(&name);
        }
        if follow_all {
            self.consumer()?.subscribe_all();
        }
        Ok(())
    }

    /// The client subscribed to `name`, which was `current` just before (`None`: it
    /// does not exist, or regd could not be asked — the first state the consumer
    /// delivers is then notified; an early notification is harmless where a missed one
    /// is not): it hears of every change after that.
    pub fn subscribe(self: &Arc<Self>, name: &str, current: Option<Register>) -> io::Result<()> {
        let follow = {
            let mut state = self.state.lock();
            if !state.subscribed.insert(name.to_string()) {
                return Ok(());
            }
            if state.listed {
                // `known` follows every register already; nothing to start.
                return Ok(());
            }
            match current {
                Some(register) => state.known.insert(name.to_string(), register),
                None => state.known.remove(name),
            };
            if !state.everything && too_many(&state.subscribed) {
                state.everything = true;
                Follow::Everything
            } else {
                Follow::Name
            }
        };
        let consumer = self.consumer()?;
        match follow {
            Follow::Everything => consumer.subscribe_all(),
            // Following everything already, this makes the consumer deliver the name's
            // state again, so a change since `current` was read is not lost.
            Follow::Name => consumer.subscribe([name]),
        }
        Ok(())
    }

    /// The client no longer wants to hear about `name`.
    pub fn unsubscribe(&self, name: &str) {
        let by_name = {
            let mut state = self.state.lock();
            state.subscribed.remove(name);
            if !state.listed {
                state.known.remove(name);
            }
            !state.everything
        };
        if by_name {
            let consumer = self
                .running
                .lock()
                .as_ref()
                .map(|running| running.consumer.clone());
            if let Some(consumer) = consumer {
                consumer.unsubscribe([name]);
            }
        }
    }

    /// Stops following: joins the notifier, then the consumer's threads.
    pub fn stop(&self) {
        let Some(running) = self.running.lock().take() else {
            return;
        };
        drop(running.stop);
        let _ = running.notifier.join();
        // The last reference: dropping it stops and joins the consumer's threads.
        drop(running.consumer);
    }

    fn updated(&self, name: &str) {
        let params = output::object([("uri", output::string(&uri(name)).as_str())]);
        self.output.send(jsonrpc::notification(
            "notifications/resources/updated",
            Some(&params),
        ));
    }

    /// The notifier thread: turns the consumer's updates into notifications, a burst of
    /// updates into one `list_changed` and one `updated` per register.
    fn notify(&self, updates: &Receiver<Update>, stopped: &Receiver<()>) {
        const BURST: usize = 1000;
        loop {
            let first = select! {
                recv(stopped) -> _ => return,
                recv(updates) -> update => match update {
                    Ok(update) => update,
                    Err(_) => return,
                },
            };
            let burst: Vec<Update> = std::iter::once(first)
                .chain(updates.try_iter().take(BURST))
                .collect();
            let (list_changed, updated) = self.apply(burst);
            if list_changed {
                self.output.send(jsonrpc::notification(
                    "notifications/resources/list_changed",
                    None,
                ));
            }
            for name in updated {
                self.updated(&name);
            }
        }
    }

    /// Applies updates to the client's view: whether the list changed, and which
    /// subscribed registers did.
    fn apply(&self, burst: Vec<Update>) -> (bool, BTreeSet<String>) {
        let mut state = self.state.lock();
        let mut list_changed = false;
        let mut updated = BTreeSet::new();
        for update in burst {
            match update {
                Update::Changed { name, register } => {
                    if !state.listed && !state.subscribed.contains(&name) {
                        // A late update for an unsubscribed register, or one that is
                        // followed only because every register is.
                        continue;
                    }
                    let before = state.known.insert(name.clone(), register.clone());
                    if before.as_ref() == Some(&register) {
                        continue;
                    }
                    list_changed |= state.listed && before.is_none();
                    if state.subscribed.contains(&name) {
                        updated.insert(name);
                    }
                }
                Update::Removed { name } => {
                    if state.known.remove(&name).is_some() {
                        list_changed |= state.listed;
                        if state.subscribed.contains(&name) {
                            updated.insert(name);
                        }
                    }
                }
                Update::Failed(error) => {
                    if !state.failing {
                        state.failing = true;
                        eprintln!(
                            "regctl mcp: cannot follow registers for notifications: {}; retrying",
                            super::calls::regd_error(&error)
                        );
                    }
                }
                Update::Recovered => {
                    state.failing = false;
                    eprintln!("regctl mcp: regd answers again; notifications resume");
                }
            }
        }
        (list_changed, updated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regd::client::Json;

    #[test]
    fn uris_name_registers_one_to_one() {
        let cases = [
            ("hall.temperature", "reg://hall.temperature"),
            ("kitchen/lamp", "reg://kitchen%2Flamp"),
            ("a b+c", "reg://a%20b%2Bc"),
            ("°C", "reg://%C2%B0C"),
            ("", "reg://"),
            ("100%", "reg://100%25"),
        ];
        for (name, expected) in cases {
            assert_eq!(uri(name), expected);
            assert_eq!(name_of(expected).as_deref(), Ok(name));
        }
        // Clients may leave characters unencoded that need no encoding in a URI.
        assert_eq!(name_of("reg://a+b:c").as_deref(), Ok("a+b:c"));
        for (bad, mentions) in [
            ("file:///x", "reg://NAME"),
            ("reg://%zz", "two hex digits"),
            ("reg://%4", "two hex digits"),
            ("reg://%FF", "UTF-8"),
        ] {
            let message = name_of(bad).unwrap_err();
            assert!(message.contains(mentions), "{bad}: {message}");
        }
    }

    #[test]
    fn pages_follow_the_cursor() {
        let register = Register {
            value: Json::from(1),
            metadata: None,
        };
        let registers: BTreeMap<String, Register> = (0..PAGE + 5)
            .map(|n| (format!("r/{n:04}"), register.clone()))
            .collect();
        let first: serde_json::Value =
            serde_json::from_str(&page(&registers, None).unwrap()).unwrap();
        assert_eq!(first["resources"].as_array().unwrap().len(), PAGE);
        assert_eq!(first["resources"][0]["uri"], "reg://r%2F0000");
        let cursor = first["nextCursor"].as_str().unwrap();
        let second: serde_json::Value =
            serde_json::from_str(&page(&registers, Some(cursor)).unwrap()).unwrap();
        assert_eq!(second["resources"].as_array().unwrap().len(), 5);
        assert_eq!(second["resources"][0]["name"], format!("r/{PAGE:04}"));
        assert!(second.get("nextCursor").is_none());
        let failure = page(&registers, Some("nonsense")).unwrap_err();
        assert_eq!(failure.code, jsonrpc::INVALID_PARAMS);
        assert!(failure.message.contains("params.cursor"));
    }

    #[test]
    fn contents_are_the_register_as_regd_serves_it() {
        let register = Register {
            value: Json::parse("{\"b\":1.50,\"a\":2}").unwrap(),
            metadata: Some(Json::parse("{\"unit\":\"°C\"}").unwrap()),
        };
        let read: serde_json::Value = serde_json::from_str(&contents("x y", &register)).unwrap();
        assert_eq!(read["contents"][0]["uri"], "reg://x%20y");
        assert_eq!(
            read["contents"][0]["text"],
            "{\"value\":{\"b\":1.50,\"a\":2},\"metadata\":{\"unit\":\"°C\"}}"
        );
    }
}
