//! The service behind the sockets: routes a request to its handler and answers it.
//! Handlers are plain functions from a [`Request`] to a [`Response`], testable without
//! sockets; the registry and its lock live in [`super::registry`], how a long poll
//! parks in [`super::parking`]. Invariants: one function ([`Service::authorize`])
//! decides whether a request may proceed; every answer of `GET /consumer` and
//! `GET /provider` carries `X-Reg-Index` (docs/protocol.md B1).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::core::{self, Name, Selection, Value, WaiterId};
use crate::protocol::{self, ApiError, query};

use super::access::AccessPolicy;
use super::exchange::{Peer, Request, Response};
use super::metrics::Metrics;
use super::parking::{HeldPoll, HeldPolls, Parked, Waker};
use super::registry::{Clock, SharedRegistry, State, SystemClock};
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
    /// `core::Registry::new`).
    pub first_revision: u64,
    /// Who may do what (docs/protocol.md B5); open when it has no tokens.
    pub access: AccessPolicy,
    /// Serve the web dashboard at `/` and `/ui/` (when built with the `web` feature).
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
            web: true,
        }
    }
}

/// The register service: the registry, its reaper, and the HTTP handlers.
pub struct Service {
    config: ServiceConfig,
    registry: SharedRegistry,
    held_polls: HeldPolls,
    shutting_down: AtomicBool,
    metrics: Metrics,
}

impl Service {
    /// A service with an empty registry, on the system clock.
    pub fn new(config: ServiceConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A service whose registry reads its time from `clock`.
    pub fn with_clock(config: ServiceConfig, clock: Arc<dyn Clock>) -> Self {
        Service {
            registry: SharedRegistry::new(config.limits, config.first_revision, clock),
            held_polls: HeldPolls::new(config.max_polls),
            config,
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

    /// Answers every held poll at once and stops the reaper (docs/protocol.md A10).
    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.registry.shut_down();
    }

    /// Runs `operation` on the registry under its lock (see [`SharedRegistry::with_state`]);
    /// the state saver ([`super::state`]) uses it too.
    pub(super) fn with_state<R>(&self, operation: impl FnOnce(&mut State, Instant) -> R) -> R {
        self.registry.with_state(operation)
    }

    /// The wall-clock time of the registry's clock (for the state files).
    pub(super) fn wall_now(&self) -> std::time::SystemTime {
        self.registry.wall_now()
    }

    /// The reaper: expires registers on time; returns at shutdown.
    pub fn run_reaper(&self) {
        self.registry.run_reaper();
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

    /// The one place that decides whether a request may proceed (docs/protocol.md B5).
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

    /// `GET /consumer` (docs/protocol.md A4, B1, B7).
    fn read_registers(&self, request: &Request, peer: &dyn Peer) -> Result<Response, ApiError> {
        let query = query::parse(&request.query, &self.config.name_limits)?;
        let selection = Selection::from_names(&query.names);
        let deadline = self.poll_deadline(&query);
        let answer = |state: &mut State, now| {
            let reading = state.read(now, &selection);
            Response::new(200, protocol::snapshot::encode(&reading, query.details))
                .with_index(reading.revision)
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
            let held = self.held_polls.hold()?;
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

    /// `GET /provider` (docs/protocol.md A5).
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
                    held = Some(self.held_polls.hold()?);
                }
                Ok::<_, ApiError>(Start::Wait(
                    state.wait_for_request(&selection, waker.clone()),
                    (),
                ))
            })?;
            let id = match outcome {
                Start::Answer((taken, revision)) => {
                    let mut response =
                        Response::new(200, encode_requests(&taken)).with_index(revision);
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
            ..Response::new(200, encode_requests(&[])).with_index(revision)
        }
    }

    /// `PUT /provider` (docs/protocol.md A7).
    fn publish(&self, request: &Request) -> Result<Response, ApiError> {
        let entries = protocol::publish::decode(
            &request.body,
            self.config.default_ttl,
            &self.config.name_limits,
        )?;
        self.with_state(|state, now| state.publish(now, entries))?;
        Ok(Response::new(204, Vec::new()))
    }

    /// `PUT /consumer` (docs/protocol.md A8).
    fn request_changes(&self, request: &Request) -> Result<Response, ApiError> {
        let entries = protocol::requests::decode_body(&request.body, &self.config.name_limits)?;
        self.with_state(|state, _| state.request(entries))?;
        Ok(Response::new(202, Vec::new()))
    }

    /// `DELETE /provider` (docs/protocol.md B2).
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
            self.with_state(|state, now| (state.stats(), state.read(now, &Selection::All)));
        let text = self
            .metrics
            .render(&stats, self.held_polls.count(), &snapshot);
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
}

/// The answer of `GET /provider` for the requests taken.
fn encode_requests(requests: &[(Name, Value)]) -> String {
    protocol::requests::encode(
        requests
            .iter()
            .map(|(name, value)| (&**name, value.as_str())),
    )
}

/// The first step of a poll: answer now, or wait (holding `H`).
enum Start<A, H> {
    Answer(A),
    Wait(WaiterId, H),
}

#[cfg(test)]
mod tests;
