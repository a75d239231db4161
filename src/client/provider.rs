//! The provider: keeps registers alive and takes their change requests. Two background
//! threads: the sender, the only one that writes `PUT /provider` (so writes reach regd
//! in the order they were made), and the poller, one long poll on `GET /provider` for
//! every provided name (one per run of names, in scoped threads of its own, when more
//! names are provided than one URL holds). Invariants: each register is refreshed no
//! later than half its ttl after its last successful write, and registers due around
//! the same time go out together, in requests within regd's default limits; a register
//! regd refuses holds back no other; a change request taken from regd is always handed
//! to the reader; closing deletes the provided registers only after both threads have
//! stopped, so no late refresh can bring one back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use parking_lot::Mutex;
use ureq::Agent;

use super::worker::{self, Backoff, Outbox};
use super::{
    Error, Http, Json, POLL_WAIT, RETRY_CAP, RETRY_CAP_UNREACHABLE, RETRY_FIRST, query_chunks,
};
use crate::protocol::publish::PublishEntry;

/// What a provider learns.
#[derive(Clone, Debug)]
pub enum ProviderEvent {
    /// A consumer asks for `name` to take `value`. Apply it with
    /// [`Provider::update`] (or refuse it by doing nothing).
    Request {
        /// The register's name.
        name: String,
        /// The value asked for.
        value: Json,
    },
    /// A background request failed (a refresh or the request poll); it is retried
    /// with backoff.
    Failed(Error),
    /// regd answers again after failures; every register has been published again.
    Recovered,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Request(String),
    Status,
}

struct Provided {
    value: Json,
    metadata: Option<Json>,
    ttl: Duration,
    /// When the last successful write of this register was sent.
    sent_at: Option<Instant>,
    /// Whether a change waits to be written.
    dirty: bool,
    version: u64,
}

impl Provided {
    /// When it must be written again, at the latest.
    fn due(&self, now: Instant) -> Instant {
        match (self.dirty, self.sent_at) {
            (false, Some(sent_at)) => sent_at + self.ttl / 2,
            _ => now,
        }
    }

    /// Whether it goes into a write happening at `now`: changed, or past a quarter of
    /// its ttl (refreshing a little early lets registers due together share a write).
    fn wants_write(&self, now: Instant) -> bool {
        match (self.dirty, self.sent_at) {
            (false, Some(sent_at)) => now >= sent_at + self.ttl / 4,
            _ => true,
        }
    }
}

struct State {
    registers: BTreeMap<String, Provided>,
    waiters: Vec<Sender<Result<(), Error>>>,
    next_version: u64,
    poll_generation: u64,
    poll_agent: Agent,
    send_agent: Agent,
    stopped: bool,
}

struct Shared {
    http: Http,
    state: Mutex<State>,
    outbox: Arc<Outbox<Key, ProviderEvent>>,
    wake_sender: Sender<()>,
    wake_poller: Sender<()>,
}

/// Publishes registers and keeps them alive until closed or dropped, which deletes
/// them (docs/protocol.md B2). Change requests and background failures arrive on
/// [`Provider::events`].
pub struct Provider {
    shared: Arc<Shared>,
    events: Receiver<ProviderEvent>,
    stop: Option<Sender<()>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Provider {
    pub(crate) fn start(http: Http) -> Provider {
        let (stop, stopped) = crossbeam_channel::bounded(0);
        let (out, events) = crossbeam_channel::bounded(worker::CHANNEL_CAPACITY);
        let (outbox, delivery) =
            worker::start_delivery("regd-client-provider-delivery", out, stopped.clone());
        let (wake_sender, sender_woken) = crossbeam_channel::bounded(1);
        let (wake_poller, poller_woken) = crossbeam_channel::bounded(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                registers: BTreeMap::new(),
                waiters: Vec::new(),
                next_version: 0,
                poll_generation: 0,
                poll_agent: http.new_agent(),
                send_agent: http.new_agent(),
                stopped: false,
            }),
            http,
            outbox,
            wake_sender,
            wake_poller,
        });
        let spawn = |name: &str, body: fn(&Shared, &Receiver<()>, &Receiver<()>), woken| {
            let shared = shared.clone();
            let stopped = stopped.clone();
            thread::Builder::new()
                .name(name.to_string())
                .spawn(move || body(&shared, &woken, &stopped))
                .expect("spawn a client thread")
        };
        let sender = spawn("regd-client-provider-sender", run_sender, sender_woken);
        let poller = spawn("regd-client-provider-poller", run_poller, poller_woken);
        Provider {
            shared,
            events,
            stop: Some(stop),
            threads: vec![sender, poller, delivery],
        }
    }

    /// Publishes one register now and keeps it alive, refreshing it at half its ttl.
    /// Publishing a name again replaces its value, metadata and ttl.
    ///
    /// Returns the result of the first write. When regd cannot be reached, the register
    /// is kept and written again with backoff (failures arrive as
    /// [`ProviderEvent::Failed`]); when regd refuses it (a 400, such as a name longer
    /// than regd allows), it is dropped.
    pub fn publish(
        &self,
        name: &str,
        value: Json,
        metadata: Option<Json>,
        ttl: Duration,
    ) -> Result<(), Error> {
        self.publish_many([(name.to_string(), value, metadata, ttl)])
    }

    /// Publishes several registers in one request: `(name, value, metadata, ttl)`.
    pub fn publish_many<I>(&self, registers: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = (String, Json, Option<Json>, Duration)>,
    {
        let registers: Vec<_> = registers.into_iter().collect();
        for (name, _, metadata, ttl) in &registers {
            if metadata
                .as_ref()
                .is_some_and(|metadata| !metadata.is_object())
            {
                return Err(Error::Input(format!(
                    "metadata of {name:?} must be a JSON object such as {{\"unit\": \"°C\"}}"
                )));
            }
            if ttl.is_zero() {
                return Err(Error::Input(format!(
                    "ttl of {name:?} must be positive, such as 10s"
                )));
            }
        }
        let mut new_names = false;
        let waiter = self.change(|state| {
            for (name, value, metadata, ttl) in registers {
                let version = state.next_version;
                state.next_version += 1;
                let previous = state.registers.insert(
                    name,
                    Provided {
                        value,
                        metadata: metadata.filter(|metadata| metadata.as_str() != "{}"),
                        ttl,
                        sent_at: None,
                        dirty: true,
                        version,
                    },
                );
                new_names |= previous.is_none();
            }
        })?;
        if new_names {
            self.shared.restart_poll();
        }
        waiter.recv().unwrap_or(Err(Error::Closed))
    }

    /// Sends a new value for a provided register at once (metadata and ttl stay).
    pub fn update(&self, name: &str, value: Json) -> Result<(), Error> {
        let mut known = true;
        let waiter = self.change(|state| {
            let version = state.next_version;
            match state.registers.get_mut(name) {
                Some(register) => {
                    register.value = value;
                    register.dirty = true;
                    register.version = version;
                    state.next_version += 1;
                }
                None => known = false,
            }
        })?;
        if !known {
            return Err(Error::Input(format!(
                "register {name:?} is not provided here; publish it first"
            )));
        }
        waiter.recv().unwrap_or(Err(Error::Closed))
    }

    /// Stops providing these registers and deletes them now.
    pub fn remove<S: AsRef<str>>(&self, names: &[S]) -> Result<(), Error> {
        {
            let mut state = self.shared.state.lock();
            for name in names {
                state.registers.remove(name.as_ref());
            }
        }
        self.shared.restart_poll();
        let http = &self.shared.http;
        http.delete(&http.agent, names)
    }

    /// Stops providing these registers *without* deleting them: regd keeps each one
    /// until its ttl runs out, as it would for a provider that died. For a provider whose
    /// source went away (a bridge that lost its broker), so that consumers see the
    /// registers expire rather than vanish early or stay on stale values. Their pending
    /// change requests are no longer taken.
    pub fn forget<S: AsRef<str>>(&self, names: &[S]) {
        {
            let mut state = self.shared.state.lock();
            for name in names {
                state.registers.remove(name.as_ref());
            }
        }
        self.shared.restart_poll();
    }

    /// The names this provider keeps alive.
    pub fn names(&self) -> Vec<String> {
        self.shared.state.lock().registers.keys().cloned().collect()
    }

    /// Change requests and background failures. Requests for one name that wait
    /// unread are coalesced to the latest, as regd itself does (docs/protocol.md A8).
    pub fn events(&self) -> &Receiver<ProviderEvent> {
        &self.events
    }

    /// Stops the threads, then deletes every provided register (docs/protocol.md B2).
    pub fn close(mut self) -> Result<(), Error> {
        self.shut_down()
    }

    /// Applies a change under the lock and wakes the sender; the receiver gets the
    /// result of the write that carries it.
    fn change(&self, apply: impl FnOnce(&mut State)) -> Result<Receiver<Result<(), Error>>, Error> {
        let (done, waiter) = crossbeam_channel::bounded(1);
        {
            let mut state = self.shared.state.lock();
            if state.stopped {
                return Err(Error::Closed);
            }
            apply(&mut state);
            state.waiters.push(done);
        }
        let _ = self.shared.wake_sender.try_send(());
        Ok(waiter)
    }

    fn shut_down(&mut self) -> Result<(), Error> {
        let (names, agents, waiters) = {
            let mut state = self.shared.state.lock();
            if state.stopped {
                return Ok(());
            }
            state.stopped = true;
            let names: Vec<String> = state.registers.keys().cloned().collect();
            let agents = [state.poll_agent.clone(), state.send_agent.clone()];
            (names, agents, std::mem::take(&mut state.waiters))
        };
        for waiter in waiters {
            let _ = waiter.send(Err(Error::Closed));
        }
        for agent in agents {
            agent.shutdown();
        }
        drop(self.stop.take());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if names.is_empty() {
            return Ok(());
        }
        let http = &self.shared.http;
        http.delete(&http.agent, &names)
    }
}

impl Shared {
    /// Makes the request poll start again with the current names, at once.
    fn restart_poll(&self) {
        let old_agent = {
            let mut state = self.state.lock();
            state.poll_generation += 1;
            std::mem::replace(&mut state.poll_agent, self.http.new_agent())
        };
        old_agent.shutdown();
        let _ = self.wake_poller.try_send(());
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        if let Err(error) = self.shut_down() {
            log::warn!("could not delete the provided registers: {error}");
        }
    }
}

/// What the sender does next.
enum Step {
    Sleep(Option<Instant>),
    Write {
        batch: Vec<(String, Json, Option<Json>, Duration, u64)>,
        waiters: Vec<Sender<Result<(), Error>>>,
        agent: Agent,
    },
}

/// The sender loop: writes changed registers at once and refreshes the others.
fn run_sender(shared: &Shared, wake: &Receiver<()>, stop: &Receiver<()>) {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_CAP, RETRY_CAP_UNREACHABLE);
    let mut retry_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let step = {
            let mut state = shared.state.lock();
            if state.stopped {
                return;
            }
            let holding_off = retry_at.is_some_and(|at| now < at) && state.waiters.is_empty();
            let wanted = state
                .registers
                .values()
                .any(|register| register.wants_write(now));
            if holding_off {
                Step::Sleep(retry_at)
            } else if !wanted && state.waiters.is_empty() {
                Step::Sleep(
                    state
                        .registers
                        .values()
                        .map(|register| register.due(now))
                        .min(),
                )
            } else {
                let batch = state
                    .registers
                    .iter()
                    .filter(|(_, register)| register.wants_write(now))
                    .map(|(name, register)| {
                        (
                            name.clone(),
                            register.value.clone(),
                            register.metadata.clone(),
                            register.ttl,
                            register.version,
                        )
                    })
                    .collect();
                Step::Write {
                    batch,
                    waiters: std::mem::take(&mut state.waiters),
                    agent: state.send_agent.clone(),
                }
            }
        };
        let (batch, waiters, agent) = match step {
            Step::Sleep(until) => {
                let timeout = until.map(|until| until.saturating_duration_since(now));
                match timeout {
                    Some(timeout) => select! {
                        recv(wake) -> _ => {}
                        recv(stop) -> _ => return,
                        default(timeout) => {}
                    },
                    None => select! {
                        recv(wake) -> _ => {}
                        recv(stop) -> _ => return,
                    },
                }
                continue;
            }
            Step::Write {
                batch,
                waiters,
                agent,
            } => (batch, waiters, agent),
        };
        let entries: Vec<PublishEntry<'_>> = batch
            .iter()
            .map(|(name, value, metadata, ttl, _)| PublishEntry {
                name,
                value,
                metadata: metadata.as_ref(),
                ttl: Some(*ttl),
            })
            .collect();
        let outcomes = write(&shared.http, &agent, &entries);
        let result = outcomes
            .iter()
            .find_map(|outcome| match outcome {
                Some(Ok(())) => None,
                Some(Err(error)) => Some(error.clone()),
                None => Some(Error::Closed),
            })
            .map_or(Ok(()), Err);
        let mut dropped = false;
        {
            let mut state = shared.state.lock();
            for ((name, _, _, _, version), outcome) in batch.iter().zip(&outcomes) {
                match outcome {
                    Some(Ok(())) => {
                        if let Some(register) = state.registers.get_mut(name) {
                            register.sent_at = Some(now);
                            // A change made while this write was in flight goes next.
                            if register.version == *version {
                                register.dirty = false;
                            }
                        }
                    }
                    // regd refuses this entry; retrying cannot help. A register never
                    // written is dropped so it does not block the others.
                    Some(Err(error))
                        if is_refusal(error)
                            && state
                                .registers
                                .get(name)
                                .is_some_and(|register| register.sent_at.is_none()) =>
                    {
                        state.registers.remove(name);
                        dropped = true;
                    }
                    _ => {}
                }
            }
        }
        if dropped {
            // The request poll asks for the dropped names too, and regd refuses it
            // for them as well.
            shared.restart_poll();
        }
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
        match result {
            Ok(()) => {
                retry_at = None;
                if backoff.succeed() {
                    shared.outbox.push(Key::Status, ProviderEvent::Recovered);
                }
            }
            Err(error) => {
                if shared.state.lock().stopped {
                    return;
                }
                let pause = backoff.fail_after(&error);
                retry_at = Some(Instant::now() + pause);
                log::debug!("provider write failed, retrying in {pause:?}: {error}");
                shared
                    .outbox
                    .push(Key::Status, ProviderEvent::Failed(error));
            }
        }
    }
}

/// Whether regd refused the request's content (so the same request will fail again).
fn is_refusal(error: &Error) -> bool {
    matches!(error.status(), Some(400 | 413 | 414 | 431))
}

/// Registers in one `PUT /provider` at most, and its body's bytes at most (roughly):
/// well under regd's default limits (`--max-names` 1000, `--max-body` 1 MiB).
const PUBLISH_REGISTERS: usize = 500;
const PUBLISH_BYTES: usize = 256 * 1024;

/// Writes `entries` in requests that regd takes. A request regd refuses for its content
/// is sent again one register at a time, so one register regd will never take (a name
/// longer than its `--max-name`) holds back no other. Stops at the first other failure:
/// regd is away, and the rest waits for the retry. Each entry's outcome, `None` for
/// those not tried.
fn write(
    http: &Http,
    agent: &Agent,
    entries: &[PublishEntry<'_>],
) -> Vec<Option<Result<(), Error>>> {
    let mut outcomes = vec![None; entries.len()];
    let mut start = 0;
    while start < entries.len() {
        let end = publish_chunk_end(entries, start);
        let chunk = &entries[start..end];
        match http.publish(agent, chunk) {
            Ok(()) => outcomes[start..end].fill(Some(Ok(()))),
            Err(error) if is_refusal(&error) && chunk.len() > 1 => {
                for (offset, entry) in chunk.iter().enumerate() {
                    let result = http.publish(agent, std::slice::from_ref(entry));
                    let away = result.as_ref().is_err_and(|error| !is_refusal(error));
                    outcomes[start + offset] = Some(result);
                    if away {
                        return outcomes;
                    }
                }
            }
            Err(error) => {
                let away = !is_refusal(&error);
                outcomes[start..end].fill(Some(Err(error)));
                if away {
                    return outcomes;
                }
            }
        }
        start = end;
    }
    outcomes
}

/// Where the request that begins at `start` ends (see [`PUBLISH_REGISTERS`]).
fn publish_chunk_end(entries: &[PublishEntry<'_>], start: usize) -> usize {
    let mut bytes = 0;
    let mut end = start;
    while end < entries.len() && end - start < PUBLISH_REGISTERS {
        let entry = &entries[end];
        // The JSON around an entry (`"name":{"value":…,"metadata":…,"ttl":"…"}`) is
        // short; an estimate suffices with the margin to regd's limit.
        let size = entry.name.len()
            + entry.value.as_str().len()
            + entry.metadata.map_or(0, |metadata| metadata.as_str().len())
            + 64;
        if end > start && bytes + size > PUBLISH_BYTES {
            break;
        }
        bytes += size;
        end += 1;
    }
    end
}

/// The poll loop for change requests.
fn run_poller(shared: &Shared, wake: &Receiver<()>, stop: &Receiver<()>) {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_CAP, RETRY_CAP_UNREACHABLE);
    loop {
        let (names, generation, agent) = {
            let state = shared.state.lock();
            if state.stopped {
                return;
            }
            let names: Vec<String> = state.registers.keys().cloned().collect();
            (names, state.poll_generation, state.poll_agent.clone())
        };
        if names.is_empty() {
            select! {
                recv(wake) -> _ => {}
                recv(stop) -> _ => return,
            }
            continue;
        }
        let chunks = query_chunks(&names);
        let next = match chunks[..] {
            [names] => poll_once(shared, names, generation, &agent, &mut backoff, wake, stop),
            // More names than one query holds (regd's `--max-uri`, `--max-names`): one
            // long poll per run of names, each in a thread of its own, until the names
            // change (which cuts them all short, as for one).
            _ => thread::scope(|scope| {
                let agent = &agent;
                let helpers: Vec<_> = chunks[1..]
                    .iter()
                    .map(|names| {
                        thread::Builder::new()
                            .name("regd-client-provider-poller".to_string())
                            .spawn_scoped(scope, move || {
                                poll_until_changed(shared, names, generation, agent, wake, stop)
                            })
                            .expect("spawn a client thread")
                    })
                    .collect();
                let mut next = poll_until_changed(shared, chunks[0], generation, agent, wake, stop);
                for helper in helpers {
                    if matches!(helper.join(), Ok(Next::Stop) | Err(_)) {
                        next = Next::Stop;
                    }
                }
                next
            }),
        };
        if matches!(next, Next::Stop) {
            return;
        }
    }
}

/// What the poller does after a poll.
enum Next {
    Again,
    Stop,
}

/// Polls one run of names until the provided names change (or the provider stops).
fn poll_until_changed(
    shared: &Shared,
    names: &[String],
    generation: u64,
    agent: &Agent,
    wake: &Receiver<()>,
    stop: &Receiver<()>,
) -> Next {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_CAP, RETRY_CAP_UNREACHABLE);
    loop {
        if let Next::Stop = poll_once(shared, names, generation, agent, &mut backoff, wake, stop) {
            return Next::Stop;
        }
        let state = shared.state.lock();
        if state.stopped {
            return Next::Stop;
        }
        if state.poll_generation != generation {
            return Next::Again;
        }
    }
}

/// One long poll for `names`, its requests handed over, or its failure reported and
/// waited out.
fn poll_once(
    shared: &Shared,
    names: &[String],
    generation: u64,
    agent: &Agent,
    backoff: &mut Backoff,
    wake: &Receiver<()>,
    stop: &Receiver<()>,
) -> Next {
    // After a failure, ask without waiting: the answer tells at once that regd is
    // back (and perhaps restarted), so the registers are written again now.
    let wait = (!backoff.is_failing()).then_some(POLL_WAIT);
    match shared.http.take_requests(agent, names, wait) {
        Ok(requests) => {
            // Taken requests are gone from regd: hand them over even if the names
            // changed meanwhile.
            for (name, value) in requests {
                shared.outbox.push(
                    Key::Request(name.clone()),
                    ProviderEvent::Request { name, value },
                );
            }
            if backoff.succeed() {
                // regd may have restarted and forgotten the registers: write them all
                // again now rather than at their next refresh.
                {
                    let mut state = shared.state.lock();
                    for register in state.registers.values_mut() {
                        register.dirty = true;
                    }
                }
                let _ = shared.wake_sender.try_send(());
                shared.outbox.push(Key::Status, ProviderEvent::Recovered);
            }
            Next::Again
        }
        Err(error) => {
            let state = shared.state.lock();
            if state.stopped {
                return Next::Stop;
            }
            if state.poll_generation != generation {
                // Cut short on purpose: the names changed.
                return Next::Again;
            }
            drop(state);
            let pause = backoff.fail_after(&error);
            log::debug!("provider poll failed, retrying in {pause:?}: {error}");
            shared
                .outbox
                .push(Key::Status, ProviderEvent::Failed(error));
            select! {
                recv(wake) -> _ => {}
                recv(stop) -> _ => return Next::Stop,
                default(pause) => {}
            }
            Next::Again
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_timing_batches_registers_due_together() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let register = |sent_at: Option<Duration>, dirty| Provided {
            value: Json::null(),
            metadata: None,
            ttl: ms(400),
            sent_at: sent_at.map(|offset| start + offset),
            dirty,
            version: 0,
        };
        // (sent at, dirty, now) -> (wants a write now, due at)
        let cases = [
            (None, true, ms(0), true, ms(0)),
            (Some(ms(0)), true, ms(10), true, ms(10)),
            (Some(ms(0)), false, ms(50), false, ms(200)),
            (Some(ms(0)), false, ms(99), false, ms(200)),
            // A quarter of the ttl has passed: it joins a write that happens anyway.
            (Some(ms(0)), false, ms(100), true, ms(200)),
            (Some(ms(0)), false, ms(200), true, ms(200)),
        ];
        for (sent_at, dirty, now, wants, due) in cases {
            let provided = register(sent_at, dirty);
            let now = start + now;
            assert_eq!(
                provided.wants_write(now),
                wants,
                "{sent_at:?} {dirty} {now:?}"
            );
            assert_eq!(provided.due(now), start + due, "{sent_at:?} {dirty}");
        }
    }
}
