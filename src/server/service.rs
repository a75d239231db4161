//! The service behind the sockets: routes a request to its handler, holds long polls,
//! runs the reaper, and owns the shared registry. Handlers are plain functions from a
//! request to a response, testable without sockets. Invariants: the registry lock is
//! held only around core calls, never while waiting or writing; waiters are woken after
//! the lock is released; one function ([`Service::authorize`]) decides whether a
//! request may proceed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::core::{self, Name, Registry, Selection, Value, WaiterId};
use crate::protocol::{self, ApiError, query};

use super::access::AccessPolicy;
use super::hangups::{Nudge, Watch};
use super::metrics::Metrics;
use super::web;

/// Settings of the service (the HTTP limits live in [`super::HttpLimits`]).
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Capacity limits of the registry.
    pub limits: core::Limits,
    /// Limits on names per request and name length.
    pub name_limits: query::NameLimits,
    /// Longest `wait` honoured; longer ones are shortened.
    pub max_wait: Duration,
    /// ttl of registers published without one.
    pub default_ttl: Duration,
    /// Long polls held at once; more are refused with 503.
    pub max_polls: usize,
    /// The revision the registry starts at (unpredictable in the daemon, see
    /// [`Registry::new`]).
    pub first_revision: u64,
    /// Who may do what (PROTOCOL B5); open when it has no tokens.
    pub access: AccessPolicy,
    /// Serve the web dashboard at `/` and `/ui/` (when built with the `web` feature).
    /// Off here; the daemon turns it on unless told `--no-web`.
    pub web: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            limits: core::Limits::default(),
            name_limits: query::NameLimits::default(),
            max_wait: Duration::from_secs(600),
            default_ttl: Duration::from_secs(10),
            max_polls: 4_000,
            first_revision: 1,
            access: AccessPolicy::default(),
            web: false,
        }
    }
}

/// One request, as the connection layer read it.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// The method, as sent.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string, still URL-encoded.
    pub query: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Whether the client asked to close the connection after this request.
    pub wants_close: bool,
    /// Whether the request was HTTP/1.0.
    pub http_1_0: bool,
    /// The TCP peer, when there is one.
    pub peer_address: Option<SocketAddr>,
}

impl Request {
    /// A request without headers or body, for tests and tools.
    pub fn new(method: &str, target: &str) -> Self {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Request {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            ..Request::default()
        }
    }

    /// The value of a header (names are stored in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The same request with a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// The same request with a body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// An answer, ready for the connection layer to write.
#[derive(Clone, Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// The `Content-Type` of the body.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Close the connection after writing.
    pub close: bool,
    /// Change requests this answer delivers; if it cannot be written they are restored.
    pub undelivered: Vec<(Name, Value)>,
}

impl Response {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.into(),
            close: false,
            undelivered: Vec::new(),
        }
    }

    /// The JSON answer for an error (PROTOCOL B3).
    pub fn error(error: &ApiError) -> Self {
        let mut response = Response::new(error.status, error.body());
        if let Some(allow) = error.allow {
            response.headers.push(("Allow", allow.to_string()));
        }
        if let Some(seconds) = error.retry_after {
            response.headers.push(("Retry-After", seconds.to_string()));
        }
        if error.www_authenticate {
            response
                .headers
                .push(("WWW-Authenticate", r#"Bearer realm="regd""#.to_string()));
        }
        response
    }

    fn with_index(mut self, revision: u64) -> Self {
        self.headers.push(("X-Reg-Index", revision.to_string()));
        self
    }

    /// The body as text, for tests and logs.
    pub fn body_text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("<binary>")
    }

    /// The value of a header this response carries.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// The client side of a connection, as a long poll needs to see it.
pub trait Peer {
    /// Whether the client is still connected (PROTOCOL A5: a poller that went away must
    /// not consume change requests).
    fn is_connected(&self) -> bool;

    /// Asks to be nudged when the client's socket shows activity (a hang-up, or more
    /// bytes), for as long as the returned guard lives. `None` when it cannot be
    /// watched; the poll then ends at its deadline.
    fn watch_hangup(&self, _nudge: Arc<dyn Nudge>) -> Option<Watch<'_>> {
        None
    }
}

/// A peer that is always there, for in-memory requests.
pub struct AlwaysConnected;

impl Peer for AlwaysConnected {
    fn is_connected(&self) -> bool {
        true
    }
}

/// How a waiting poll is woken: its thread is unparked after a flag is set, so a
/// wake-up between registering and parking is never lost. Two flags: `woken` (the
/// registry woke it) and `nudged` (its socket showed activity: maybe a hang-up).
pub struct Waker {
    thread: Thread,
    woken: AtomicBool,
    nudged: AtomicBool,
}

impl Waker {
    fn for_current_thread() -> Arc<Self> {
        Arc::new(Waker {
            thread: thread::current(),
            woken: AtomicBool::new(false),
            nudged: AtomicBool::new(false),
        })
    }

    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }

    /// Parks until woken, `deadline`, or the client hangs up. The peer is looked at
    /// only when its socket shows activity (see [`super::hangups`]): a parked poll costs
    /// nothing while nothing happens.
    fn park_until(self: &Arc<Self>, deadline: Instant, peer: &dyn Peer) -> Parked {
        let _watch = peer.watch_hangup(self.clone());
        loop {
            if self.woken.load(Ordering::Acquire) {
                return Parked::Woken;
            }
            if self.nudged.swap(false, Ordering::AcqRel) && !peer.is_connected() {
                return Parked::ClientLeft;
            }
            let now = Instant::now();
            if now >= deadline {
                return Parked::TimedOut;
            }
            thread::park_timeout(deadline - now);
        }
    }
}

impl Nudge for Waker {
    fn nudge(&self) {
        self.nudged.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

enum Parked {
    Woken,
    TimedOut,
    ClientLeft,
}

type State = Registry<Arc<Waker>>;

/// The register service: the registry, its reaper, and the HTTP handlers.
pub struct Service {
    config: ServiceConfig,
    state: Mutex<State>,
    /// Wakes the reaper when the earliest deadline moves earlier, or at shutdown.
    reaper_alarm: Condvar,
    held_polls: AtomicUsize,
    shutting_down: AtomicBool,
    metrics: Metrics,
}

impl Service {
    /// A service with an empty registry.
    pub fn new(config: ServiceConfig) -> Self {
        Service {
            state: Mutex::new(Registry::new(config.limits, config.first_revision)),
            config,
            reaper_alarm: Condvar::new(),
            held_polls: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            metrics: Metrics::default(),
        }
    }

    /// The daemon's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Answers every held poll at once and stops the reaper (PROTOCOL A10).
    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.with_state(|state, _| state.shut_down());
        self.reaper_alarm.notify_all();
    }

    /// Runs `operation` under the lock, then — outside it — wakes whoever the operation
    /// woke, logs expiries, and tells the reaper if the earliest deadline moved earlier.
    fn with_state<R>(&self, operation: impl FnOnce(&mut State, Instant) -> R) -> R {
        let mut state = self.state.lock();
        let earliest_before = state.next_deadline();
        let result = operation(&mut state, Instant::now());
        let to_wake = state.take_wakeups();
        let expired = state.take_expired();
        let earliest_after = state.next_deadline();
        drop(state);
        if earliest_after.is_some_and(|after| earliest_before.is_none_or(|before| after < before)) {
            self.reaper_alarm.notify_one();
        }
        for waker in to_wake {
            waker.wake();
        }
        for name in expired {
            log::info!("register {name:?} expired");
        }
        result
    }

    /// The reaper: sleeps until the earliest deadline (or until told it moved), then
    /// expires what is due. Returns at shutdown.
    pub fn run_reaper(&self) {
        loop {
            {
                let mut state = self.state.lock();
                if state.is_shut_down() {
                    return;
                }
                match state.next_deadline() {
                    Some(deadline) if deadline <= Instant::now() => {}
                    Some(deadline) => {
                        self.reaper_alarm.wait_until(&mut state, deadline);
                    }
                    None => self.reaper_alarm.wait(&mut state),
                }
                if state.is_shut_down() {
                    return;
                }
            }
            self.with_state(|state, now| state.expire(now));
        }
    }

    /// Puts back change requests whose answer could not be written.
    pub fn restore_requests(&self, requests: Vec<(Name, Value)>) {
        log::debug!("restoring {} undelivered change requests", requests.len());
        self.with_state(|state, _| state.restore_requests(requests));
    }

    /// Counts a request the connection layer refused before routing.
    pub fn count_refused_request(&self, error: &ApiError) {
        self.metrics.count_request("other", "OTHER", error.status);
    }

    /// The one place that decides whether a request may proceed (PROTOCOL B5).
    fn authorize(&self, request: &Request, resource: &str) -> Result<(), ApiError> {
        self.config.access.check(
            resource,
            request.header("authorization"),
            request.peer_address,
        )
    }

    /// Routes and answers one request.
    pub fn handle(&self, request: &Request, peer: &dyn Peer) -> Response {
        let resource = match request.path.as_str() {
            "/consumer" => "consumer",
            "/provider" => "provider",
            "/healthz" => "healthz",
            "/metrics" => "metrics",
            path if web::owns(path) => "web",
            _ => "other",
        };
        let response = self
            .authorize(request, resource)
            .and_then(|()| self.route(resource, request, peer))
            .unwrap_or_else(|error| Response::error(&error));
        self.metrics
            .count_request(resource, &request.method, response.status);
        response
    }

    fn route(
        &self,
        resource: &str,
        request: &Request,
        peer: &dyn Peer,
    ) -> Result<Response, ApiError> {
        let method = request.method.as_str();
        let not_allowed = |allow| Err(ApiError::method_not_allowed(method, &request.path, allow));
        match (resource, method) {
            ("consumer", "GET") => self.read_registers(request, peer),
            ("consumer", "PUT") => self.request_changes(request),
            ("consumer", _) => not_allowed("GET, PUT"),
            ("provider", "GET") => self.take_requests(request, peer),
            ("provider", "PUT") => self.publish(request),
            ("provider", "DELETE") => self.delete(request),
            ("provider", _) => not_allowed("GET, PUT"),
            ("healthz", "GET" | "HEAD") => Ok(self.health()),
            ("healthz", _) => not_allowed("GET"),
            ("metrics", "GET" | "HEAD") => Ok(self.render_metrics()),
            ("metrics", _) => not_allowed("GET"),
            ("web", _) => web::respond(request, self.config.web),
            _ => Err(ApiError::not_found(&request.path)),
        }
    }

    /// `GET /consumer` (PROTOCOL A4, B1, B7).
    fn read_registers(&self, request: &Request, peer: &dyn Peer) -> Result<Response, ApiError> {
        let query = query::parse(&request.query, &self.config.name_limits)?;
        let selection = Selection::from_names(&query.names);
        let deadline = self.poll_deadline(&query);
        let answer = |state: &mut State, now| {
            let snapshot = state.snapshot(now, &selection);
            Response::new(200, protocol::encode_snapshot(&snapshot, query.details))
                .with_index(snapshot.revision)
        };
        let waker = Waker::for_current_thread();
        let waiting = self.with_state(|state, now| {
            let at_once = deadline.is_none()
                || state.is_shut_down()
                || query
                    .index
                    .is_some_and(|index| state.changed_since(now, &selection, index));
            if at_once {
                return Ok(Start::Answer(answer(state, now)));
            }
            let held = self.hold_poll()?;
            Ok::<_, ApiError>(Start::Wait(
                state.wait_for_change(&selection, waker.clone()),
                held,
            ))
        })?;
        let (id, _held) = match waiting {
            Start::Answer(response) => return Ok(response),
            Start::Wait(id, held) => (id, held),
        };
        let parked = waker.park_until(deadline.unwrap_or_else(Instant::now), peer);
        let response = self.with_state(|state, now| {
            state.cancel_wait(id);
            answer(state, now)
        });
        if let Parked::ClientLeft = parked {
            return Ok(Response {
                close: true,
                ..response
            });
        }
        Ok(response)
    }

    /// `GET /provider` (PROTOCOL A5).
    fn take_requests(&self, request: &Request, peer: &dyn Peer) -> Result<Response, ApiError> {
        let query = query::parse_provider(&request.query, &self.config.name_limits)?;
        let selection = Selection::from_names(&query.names);
        let deadline = self.poll_deadline(&query);
        let mut held: Option<HeldPoll<'_>> = None;
        loop {
            // Check before taking: requests must never go to a client that has left.
            if !peer.is_connected() {
                return Ok(self.nothing_taken_for_a_departed_client());
            }
            let waker = Waker::for_current_thread();
            let outcome = self.with_state(|state, now| {
                let taken = if state.is_shut_down() {
                    Vec::new()
                } else {
                    state.take_requests(&selection)
                };
                let expired = deadline.is_none_or(|deadline| now >= deadline);
                if !taken.is_empty() || expired || state.is_shut_down() {
                    return Ok(Start::Answer((taken, state.revision())));
                }
                if held.is_none() {
                    held = Some(self.hold_poll()?);
                }
                Ok::<_, ApiError>(Start::Wait(
                    state.wait_for_request(&selection, waker.clone()),
                    (),
                ))
            })?;
            let id = match outcome {
                Start::Answer((taken, revision)) => {
                    let mut response =
                        Response::new(200, protocol::encode_requests(&taken)).with_index(revision);
                    response.undelivered = taken;
                    return Ok(response);
                }
                Start::Wait(id, ()) => id,
            };
            let parked = waker.park_until(deadline.unwrap_or_else(Instant::now), peer);
            self.with_state(|state, _| state.cancel_wait(id));
            if let Parked::ClientLeft = parked {
                return Ok(self.nothing_taken_for_a_departed_client());
            }
        }
    }

    /// The answer for a provider poll whose client left (or whose socket was shut at
    /// shutdown): nothing taken, the index as on every `GET /provider` (B1), and close.
    fn nothing_taken_for_a_departed_client(&self) -> Response {
        let revision = self.with_state(|state, _| state.revision());
        Response {
            close: true,
            ..Response::new(200, protocol::encode_requests(&[])).with_index(revision)
        }
    }

    /// `PUT /provider` (PROTOCOL A7).
    fn publish(&self, request: &Request) -> Result<Response, ApiError> {
        let entries = protocol::decode_publish(
            &request.body,
            self.config.default_ttl,
            &self.config.name_limits,
        )?;
        self.with_state(|state, now| state.publish(now, entries))?;
        Ok(Response::new(204, Vec::new()))
    }

    /// `PUT /consumer` (PROTOCOL A8).
    fn request_changes(&self, request: &Request) -> Result<Response, ApiError> {
        let entries = protocol::decode_requests(&request.body, &self.config.name_limits)?;
        self.with_state(|state, _| state.request(entries))?;
        Ok(Response::new(202, Vec::new()))
    }

    /// `DELETE /provider` (PROTOCOL B2).
    fn delete(&self, request: &Request) -> Result<Response, ApiError> {
        let query = query::parse_provider(&request.query, &self.config.name_limits)?;
        if query.names.is_empty() {
            return Err(ApiError::bad_request(
                "DELETE /provider needs at least one name parameter, such as ?name=sensor",
            ));
        }
        let names: Vec<Name> = query.names.iter().map(|name| Name::from(&**name)).collect();
        self.with_state(|state, now| state.delete(now, &names));
        Ok(Response::new(204, Vec::new()))
    }

    fn health(&self) -> Response {
        if self.is_shutting_down() {
            return Response::error(&ApiError::unavailable("regd is shutting down"));
        }
        Response::new(200, r#"{"status":"ok"}"#)
    }

    fn render_metrics(&self) -> Response {
        let (stats, snapshot) =
            self.with_state(|state, now| (state.stats(), state.snapshot(now, &Selection::All)));
        let text = self
            .metrics
            .render(&stats, self.held_polls.load(Ordering::Relaxed), &snapshot);
        Response {
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            ..Response::new(200, text)
        }
    }

    /// When a poll must answer at the latest; `None` answers at once.
    fn poll_deadline(&self, query: &query::Query) -> Option<Instant> {
        query
            .wait
            .map(|wait| Instant::now() + wait.min(self.config.max_wait))
    }

    /// Takes a long-poll slot, or refuses at the limit (PROTOCOL B4).
    fn hold_poll(&self) -> Result<HeldPoll<'_>, ApiError> {
        let previous = self.held_polls.fetch_add(1, Ordering::Relaxed);
        let held = HeldPoll(self);
        if previous >= self.config.max_polls {
            return Err(ApiError::unavailable(format!(
                "too many long polls are held ({}); retry later or raise --max-polls",
                self.config.max_polls
            )));
        }
        Ok(held)
    }
}

/// The first step of a poll: answer now, or wait (holding `H`).
enum Start<A, H> {
    Answer(A),
    Wait(WaiterId, H),
}

/// A held long poll's slot, given back when dropped.
struct HeldPoll<'a>(&'a Service);

impl Drop for HeldPoll<'_> {
    fn drop(&mut self) {
        self.0.held_polls.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
