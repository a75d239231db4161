//! A blocking client for regd: one-shot reads and writes, a [`Consumer`] that follows
//! registers, and a [`Provider`] that keeps registers alive and takes change requests.
//! This module owns every use of ureq; JSON shapes and query strings come from `crate::protocol`.
//! The protocol it speaks is described in `docs/protocol.md` in the regd repository.
//! Invariants: every HTTP timeout is longer than the `wait` the request asked the server
//! for; background threads are named `regd-client-…` and joined when their owner is
//! closed or dropped; no lock is held across I/O; every request — one-shot or from a
//! background loop — carries the client's token, and the token never appears in a
//! message, a log line or `Debug` output.
//!
//! # Example
//!
//! ```no_run
//! use std::time::{Duration, Instant};
//! use regd::client::{Client, Json, ProviderEvent, Update};
//!
//! # fn main() -> Result<(), regd::client::Error> {
//! let client = Client::new("http://gateway.local:8080")?;
//!
//! // A provider keeps "hall.temperature" alive, refreshing it at half its ttl.
//! let provider = client.provider();
//! provider.publish("hall.temperature", Json::from(21), None, Duration::from_secs(10))?;
//! provider.update("hall.temperature", Json::parse("21.5").unwrap())?;
//!
//! // A consumer follows it; one long poll carries all of its subscriptions.
//! let consumer = client.consumer();
//! consumer.subscribe(["hall.temperature"]);
//! match consumer.updates().recv_timeout(Duration::from_secs(5)) {
//!     Ok(Update::Changed { name, register }) => println!("{name} = {}", register.value),
//!     Ok(Update::Removed { name }) => println!("{name} is gone"),
//!     Ok(other) => println!("{other:?}"),
//!     Err(_) => println!("no news"),
//! }
//!
//! // Ask the provider for a change; it arrives on the provider's channel.
//! client.request("hall.temperature", &Json::from(19))?;
//! if let Ok(ProviderEvent::Request { name, value }) = provider.events().recv() {
//!     provider.update(&name, value)?;
//! }
//!
//! // Closing (or dropping) the provider deletes its registers at once.
//! provider.close()?;
//! # Ok(())
//! # }
//! ```

mod consumer;
mod error;
mod provider;
mod worker;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ureq::Agent;

pub use self::consumer::{Consumer, Update};
pub use self::error::Error;
pub use self::provider::{Provider, ProviderEvent};
/// The wire's duration grammar (Go's `time.ParseDuration` and `Duration.String`), for
/// ttls and waits written the way regd reads and writes them.
pub use crate::protocol::duration;
pub use crate::protocol::json::{Json, JsonError};
use crate::protocol::publish::{self, PublishEntry};
pub use crate::protocol::snapshot::{Detailed, Register};
use crate::protocol::{query, requests, snapshot};

/// The registry address used when neither an explicit URL nor `REGISTRY` is given.
pub const DEFAULT_URL: &str = "http://localhost:8080";

/// The environment variable that names the registry (`http://host:port[/prefix]`).
pub const ENV_VAR: &str = "REGISTRY";

/// The environment variable that holds the access token (docs/protocol.md B5), if regd needs one.
pub const TOKEN_ENV_VAR: &str = "REGD_TOKEN";

/// How long a background long poll asks the server to hold it.
const POLL_WAIT: Duration = Duration::from_secs(30);

/// The first and the longest pause between background retries.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_CAP: Duration = Duration::from_secs(2);
/// The longest pause while regd cannot be reached at all (it is restarting): a consumer
/// resumes, and a provider writes its registers again, well within a second of regd
/// answering (issue 13: the bridge's state converges within a second).
const RETRY_CAP_UNREACHABLE: Duration = Duration::from_millis(500);

/// Registers named in one query string at most, and its bytes at most: well under
/// regd's default limits (`--max-names` 1000; `--max-uri` 8192 for the whole target).
const NAMES_PER_QUERY: usize = 500;
const QUERY_BYTES: usize = 6 * 1024;

/// Splits `names` into runs that each fit one query string. A name too long for a
/// query alone still gets a run of its own: regd's answer then says what is wrong.
fn query_chunks<S: AsRef<str>>(names: &[S]) -> Vec<&[S]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (index, name) in names.iter().enumerate() {
        let length = query::encode(std::slice::from_ref(name), None, None, false).len() + 1;
        if index > start && (index - start == NAMES_PER_QUERY || bytes + length > QUERY_BYTES) {
            chunks.push(&names[start..index]);
            (start, bytes) = (index, 0);
        }
        bytes += length;
    }
    if start < names.len() {
        chunks.push(&names[start..]);
    }
    chunks
}

/// What became of a change request that [`Client::request_and_wait`] waited for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// The register took the requested value in time.
    Applied,
    /// The time passed first; the register as it is now (`None`: it does not exist).
    NotApplied {
        /// What the register holds when the wait ended.
        current: Option<Register>,
    },
}

/// A handle on one regd. Cheap to clone; clones share a connection pool.
#[derive(Clone, Debug)]
pub struct Client {
    http: Http,
}

/// A snapshot of registers and the revision it was taken at (docs/protocol.md B1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The existing registers among those asked for, by name.
    pub registers: BTreeMap<String, Register>,
    /// The `X-Reg-Index` of the answer; pass it back to [`Client::poll`] so that no change
    /// is missed between two polls.
    pub index: Option<u64>,
}

impl Client {
    /// A client for the regd at `url`, such as `http://gateway:8080` or
    /// `http://host/regd/` (a path prefix is kept; a trailing `/` is fine).
    pub fn new(url: &str) -> Result<Client, Error> {
        let base = base_url(url)?;
        Ok(Client {
            http: Http {
                base,
                agent: new_agent(DEFAULT_TIMEOUT),
                timeout: DEFAULT_TIMEOUT,
                token: None,
            },
        })
    }

    /// A client for the regd named by the `REGISTRY` environment variable, or
    /// [`DEFAULT_URL`] when it is unset or empty, with the token in `REGD_TOKEN` when
    /// that is set and not empty.
    pub fn from_env() -> Result<Client, Error> {
        let client = match std::env::var(ENV_VAR) {
            Ok(url) if !url.trim().is_empty() => Client::new(url.trim())?,
            _ => Client::new(DEFAULT_URL)?,
        };
        match std::env::var(TOKEN_ENV_VAR) {
            Ok(token) if !token.trim().is_empty() => client.with_token(token.trim()),
            _ => Ok(client),
        }
    }

    /// The same client, sending `Authorization: Bearer TOKEN` with every request,
    /// including those of its consumers and providers (docs/protocol.md B5). A token is one word
    /// of printable ASCII, as in regd's token file; anything else is refused here,
    /// without repeating the token.
    pub fn with_token(mut self, token: impl Into<String>) -> Result<Client, Error> {
        self.http.token = Some(Token::new(token.into())?);
        Ok(self)
    }

    /// The same client with another timeout for plain requests (default 10 s). Long
    /// polls add this to their `wait`, so their timeout is always longer than the wait.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.http.timeout = timeout;
        self.http.agent = new_agent(timeout);
        self
    }

    /// The base URL requests go to, without a trailing `/`.
    pub fn url(&self) -> &str {
        &self.http.base
    }

    /// Reads the named registers; missing ones are absent from the map.
    pub fn get<S: AsRef<str>>(&self, names: &[S]) -> Result<BTreeMap<String, Register>, Error> {
        if names.is_empty() {
            return Err(Error::Input(
                "get needs at least one register name; use list for all".to_string(),
            ));
        }
        let mut registers = BTreeMap::new();
        for chunk in query_chunks(names) {
            registers.append(&mut self.poll(chunk, None, None)?.registers);
        }
        Ok(registers)
    }

    /// Reads every register.
    pub fn list(&self) -> Result<BTreeMap<String, Register>, Error> {
        Ok(self.poll::<&str>(&[], None, None)?.registers)
    }

    /// One `GET /consumer`: the named registers (all when `names` is empty). With a
    /// `wait`, the server holds the answer until one of them changes after `index`
    /// (or after the request arrived, without an index) or the wait passes.
    pub fn poll<S: AsRef<str>>(
        &self,
        names: &[S],
        wait: Option<Duration>,
        index: Option<u64>,
    ) -> Result<Snapshot, Error> {
        self.http.poll(&self.http.agent, names, wait, index)
    }

    /// Reads the named registers (all when `names` is empty) with their details
    /// (docs/protocol.md B7): ttl, time left and revision. A consumer's updates carry only value
    /// and metadata; this one-shot read is how a caller learns when registers expire.
    pub fn details<S: AsRef<str>>(&self, names: &[S]) -> Result<BTreeMap<String, Detailed>, Error> {
        if names.is_empty() {
            return self.http.details(&self.http.agent, &[] as &[&str]);
        }
        let mut registers = BTreeMap::new();
        for chunk in query_chunks(names) {
            registers.append(&mut self.http.details(&self.http.agent, chunk)?);
        }
        Ok(registers)
    }

    /// Asks the provider of `name` to change it to `value` (docs/protocol.md A8).
    pub fn request(&self, name: &str, value: &Json) -> Result<(), Error> {
        self.request_many(&[(name, value)])
    }

    /// Asks the provider of `name` to change it to `value`, then waits up to `timeout`
    /// for the register to hold that value (one long poll with `index=` at a time, so
    /// no change in between is missed). A register that holds `value` already counts as
    /// applied.
    pub fn request_and_wait(
        &self,
        name: &str,
        value: &Json,
        timeout: Duration,
    ) -> Result<RequestOutcome, Error> {
        let names = [name];
        let deadline = Instant::now() + timeout;
        let mut snapshot = self.poll(&names, None, None)?;
        self.request(name, value)?;
        loop {
            let current = snapshot.registers.remove(name);
            if current
                .as_ref()
                .is_some_and(|register| register.value == *value)
            {
                return Ok(RequestOutcome::Applied);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(1) {
                return Ok(RequestOutcome::NotApplied { current });
            }
            snapshot = self.poll(&names, Some(left), snapshot.index)?;
        }
    }

    /// Sends several change requests in one `PUT /consumer`.
    pub fn request_many(&self, requests: &[(&str, &Json)]) -> Result<(), Error> {
        let body = requests::encode(requests.iter().map(|(name, value)| (*name, value.as_str())));
        self.http
            .send(&self.http.agent, "PUT", "/consumer", Some(body), None)?;
        Ok(())
    }

    /// Publishes registers once, in one `PUT /provider` (docs/protocol.md A7): `(name, value,
    /// metadata, ttl)`. Nothing refreshes them; for registers that must stay alive, use a
    /// [`Provider`].
    pub fn publish(
        &self,
        registers: &[(&str, &Json, Option<&Json>, Duration)],
    ) -> Result<(), Error> {
        let entries: Vec<PublishEntry<'_>> = registers
            .iter()
            .map(|(name, value, metadata, ttl)| PublishEntry {
                name,
                value,
                metadata: *metadata,
                ttl: Some(*ttl),
            })
            .collect();
        self.http.publish(&self.http.agent, &entries)
    }

    /// One `GET /provider`: takes the pending change requests for `names` (docs/protocol.md
    /// A5); with a `wait`, the server holds the answer until one arrives or the wait
    /// passes. Taken requests are gone from regd. For a loop that serves requests, use a
    /// [`Provider`].
    pub fn take_requests<S: AsRef<str>>(
        &self,
        names: &[S],
        wait: Option<Duration>,
    ) -> Result<Vec<(String, Json)>, Error> {
        if names.is_empty() {
            return Err(Error::Input(
                "take_requests needs at least one register name".to_string(),
            ));
        }
        if wait.is_some() {
            return self.http.take_requests(&self.http.agent, names, wait);
        }
        let mut requests = Vec::new();
        for chunk in query_chunks(names) {
            requests.append(&mut self.http.take_requests(&self.http.agent, chunk, None)?);
        }
        Ok(requests)
    }

    /// The same client (address, token, timeout) with a connection pool of its own, for
    /// a thread whose requests must not wait for another thread's connection.
    pub fn with_own_connection(&self) -> Client {
        let mut http = self.http.clone();
        http.agent = http.new_agent();
        Client { http }
    }

    /// Closes this client's connection pool, which its clones share: a request in
    /// flight on it — a long poll or a [`request_and_wait`](Self::request_and_wait)
    /// included — fails at once (as a [`Error::Connect`]), and so does every later
    /// request. For a worker that must stop now: give it a client of its own
    /// ([`with_own_connection`](Self::with_own_connection)) and shut that one down.
    /// Consumers and providers made earlier have connections of their own and go on.
    pub fn shutdown(&self) {
        self.http.agent.clone().shutdown();
    }

    /// Removes registers now (docs/protocol.md B2); their consumers see them go at once.
    pub fn delete<S: AsRef<str>>(&self, names: &[S]) -> Result<(), Error> {
        if names.is_empty() {
            return Err(Error::Input(
                "delete needs at least one register name".to_string(),
            ));
        }
        self.http.delete(&self.http.agent, names)
    }

    /// A consumer with no subscriptions yet; see [`Consumer::subscribe`].
    pub fn consumer(&self) -> Consumer {
        Consumer::start(self.http.clone())
    }

    /// A provider with no registers yet; see [`Provider::publish`].
    pub fn provider(&self) -> Provider {
        Provider::start(self.http.clone())
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

fn base_url(url: &str) -> Result<String, Error> {
    let refuse = |reason: &str| Error::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else if url.starts_with("https://") {
        return Err(refuse(
            "https is not supported; regd speaks plain HTTP on the local network, use http://",
        ));
    } else {
        return Err(refuse(
            "expected http://HOST:PORT, optionally followed by a path prefix",
        ));
    };
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(refuse("the host is missing; expected http://HOST:PORT"));
    }
    if rest.contains(['?', '#']) {
        return Err(refuse("a registry URL has no query or fragment"));
    }
    let port = match host.strip_prefix('[') {
        Some(bracketed) => (bracketed.split_once(']')).and_then(|(_, rest)| rest.strip_prefix(':')),
        None => host.split_once(':').map(|(_, port)| port),
    };
    if port.is_some_and(|port| port.parse::<u16>().is_err()) {
        return Err(refuse("the port must be a number from 0 to 65535"));
    }
    let base = url.trim_end_matches('/').to_string();
    // What the transport would refuse at every request (a bad port, a space in the
    // host), refused once, here, as the URL's fault.
    if let Err(error) = ureq::http::Uri::try_from(format!("{base}/consumer")) {
        return Err(refuse(&format!("it is not a valid URL ({error})")));
    }
    Ok(base)
}

/// The longest URL the transport can send (the `http` crate's limit).
const MAX_URL: usize = 65_534;

fn new_agent(timeout: Duration) -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(timeout))
        .timeout_global(Some(timeout))
        .user_agent(concat!("regd-client/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// A request target: `path`, with `?query` when there is one.
fn target(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

/// An answer with a success status.
struct Answer {
    index: Option<u64>,
    body: String,
}

/// An access token. Its `Debug` form hides it, so a client can be debug-printed or
/// logged safely.
#[derive(Clone)]
struct Token(String);

impl Token {
    fn new(token: String) -> Result<Token, Error> {
        if token.is_empty() {
            return Err(Error::Input(
                "the token is empty; give the token regd's token file holds".to_string(),
            ));
        }
        if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
            // The token itself stays out of the message.
            return Err(Error::Input(format!(
                "the token ({} characters) must be one word of printable ASCII, such as one made by `openssl rand -hex 24`",
                token.chars().count()
            )));
        }
        Ok(Token(token))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

/// The HTTP side shared by the client and its background threads.
#[derive(Clone, Debug)]
pub(crate) struct Http {
    base: String,
    agent: Agent,
    timeout: Duration,
    token: Option<Token>,
}

impl Http {
    /// A fresh agent (own connection pool) for a background loop, so that shutting it
    /// down interrupts only that loop's request.
    fn new_agent(&self) -> Agent {
        new_agent(self.timeout)
    }

    fn poll<S: AsRef<str>>(
        &self,
        agent: &Agent,
        names: &[S],
        wait: Option<Duration>,
        index: Option<u64>,
    ) -> Result<Snapshot, Error> {
        let path = target("/consumer", &query::encode(names, wait, index, false));
        let answer = self.send(agent, "GET", &path, None, wait)?;
        let registers =
            snapshot::decode(&answer.body).map_err(|error| Error::Protocol(error.to_string()))?;
        Ok(Snapshot {
            registers,
            index: answer.index,
        })
    }

    fn details<S: AsRef<str>>(
        &self,
        agent: &Agent,
        names: &[S],
    ) -> Result<BTreeMap<String, Detailed>, Error> {
        let path = target("/consumer", &query::encode(names, None, None, true));
        let answer = self.send(agent, "GET", &path, None, None)?;
        snapshot::decode_details(&answer.body).map_err(|error| Error::Protocol(error.to_string()))
    }

    fn take_requests<S: AsRef<str>>(
        &self,
        agent: &Agent,
        names: &[S],
        wait: Option<Duration>,
    ) -> Result<Vec<(String, Json)>, Error> {
        let path = target("/provider", &query::encode(names, wait, None, false));
        let answer = self.send(agent, "GET", &path, None, wait)?;
        requests::decode_answer(&answer.body).map_err(|error| Error::Protocol(error.to_string()))
    }

    fn delete<S: AsRef<str>>(&self, agent: &Agent, names: &[S]) -> Result<(), Error> {
        for chunk in query_chunks(names) {
            let path = target("/provider", &query::encode(chunk, None, None, false));
            self.send(agent, "DELETE", &path, None, None)?;
        }
        Ok(())
    }

    fn publish(&self, agent: &Agent, entries: &[PublishEntry<'_>]) -> Result<(), Error> {
        let body = publish::encode(entries);
        self.send(agent, "PUT", "/provider", Some(body), None)?;
        Ok(())
    }

    /// Sends one request. A `wait` lengthens the timeout by that much, so the server
    /// always answers a long poll before the client gives up on it.
    fn send(
        &self,
        agent: &Agent,
        method: &str,
        path: &str,
        body: Option<String>,
        wait: Option<Duration>,
    ) -> Result<Answer, Error> {
        let url = format!("{}{path}", self.base);
        if url.len() > MAX_URL {
            return Err(Error::Input(format!(
                "the request's URL would be {} bytes, and at most {MAX_URL} fit in one; register names travel in it, so a name, or the list of names, is too long",
                url.len()
            )));
        }
        let timeout = Some(self.timeout + wait.unwrap_or_default());
        let transport = |error| Error::from_transport(&self.base, error);
        let authorization = self
            .token
            .as_ref()
            .map(|Token(token)| format!("Bearer {token}"));
        let result = match (method, body) {
            ("PUT", body) => {
                let mut request = agent
                    .put(&url)
                    .config()
                    .timeout_global(timeout)
                    .build()
                    .header("Content-Type", "application/json");
                if let Some(authorization) = &authorization {
                    request = request.header("Authorization", authorization);
                }
                request.send(body.unwrap_or_default())
            }
            ("DELETE", _) => {
                let mut request = agent.delete(&url).config().timeout_global(timeout).build();
                if let Some(authorization) = &authorization {
                    request = request.header("Authorization", authorization);
                }
                request.call()
            }
            _ => {
                let mut request = agent.get(&url).config().timeout_global(timeout).build();
                if let Some(authorization) = &authorization {
                    request = request.header("Authorization", authorization);
                }
                request.call()
            }
        };
        let mut response = result.map_err(transport)?;
        let status = response.status().as_u16();
        let index = response
            .headers()
            .get("x-reg-index")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());
        let body = response.body_mut().read_to_string().map_err(transport)?;
        if !(200..300).contains(&status) {
            let message = crate::protocol::error::message_of(&body).unwrap_or_else(|| {
                if body.trim().is_empty() {
                    "no explanation given".to_string()
                } else {
                    body.trim().to_string()
                }
            });
            return Err(match status {
                401 => Error::Unauthorized {
                    token_sent: self.token.is_some(),
                    message,
                },
                403 => Error::Forbidden { message },
                _ => Error::Status { status, message },
            });
        }
        Ok(Answer { index, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let cases = [
            ("http://h:1", Some("http://h:1")),
            ("http://h:1/", Some("http://h:1")),
            ("http://h/regd/", Some("http://h/regd")),
            ("http://h/a/b", Some("http://h/a/b")),
            ("https://h", None),
            ("h:8080", None),
            ("http://", None),
            ("http:///x", None),
            ("http://h/?x", None),
        ];
        for (url, expected) in cases {
            assert_eq!(base_url(url).ok().as_deref(), expected, "{url}");
        }
    }

    #[test]
    fn query_chunks_fit_regd_default_limits() {
        let short: Vec<String> = (0..1234).map(|index| format!("n{index}")).collect();
        let chunks = query_chunks(&short);
        assert_eq!(chunks.concat(), short);
        assert!(chunks.iter().all(|chunk| chunk.len() <= NAMES_PER_QUERY));
        // Long names (each 1,000 bytes, 3,000 once percent-encoded): two to a query.
        let long: Vec<String> = (0..7)
            .map(|index| format!("{index}{}", "é".repeat(500)))
            .collect();
        let chunks = query_chunks(&long);
        assert_eq!(chunks.concat(), long);
        for chunk in &chunks {
            assert!(query::encode(chunk, Some(POLL_WAIT), None, false).len() < 8000);
        }
        let alone = ["x".repeat(10_000)];
        assert_eq!(query_chunks(&alone), vec![&alone[..]]);
        assert!(query_chunks::<&str>(&[]).is_empty());
    }
}
