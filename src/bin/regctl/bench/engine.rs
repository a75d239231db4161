//! The engine of `regctl bench`: measures a running regd through `regd::client` — request
//! rates and latency percentiles of publishing, reading, the change-request round trip
//! and the wake of a waiting consumer. Invariants: every loop is bounded in time (the
//! phase's deadline) and in count ([`MAX_SAMPLES_PER_THREAD`]); every thread is named
//! `regctl-bench-…` and joined before its phase ends; only registers under the
//! bench's own prefix are written, and they (and any change request left for them) are
//! removed before [`Bench::run`] returns — also when a phase fails or is stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use regd::client::{Client, Error, Json};

/// The most latency samples one thread keeps in one phase (so memory stays bounded
/// whatever the duration and speed).
pub const MAX_SAMPLES_PER_THREAD: usize = 1_000_000;

/// The most connections and registers a bench uses.
pub const MAX_CONNECTIONS: usize = 256;
/// See [`MAX_CONNECTIONS`].
pub const MAX_REGISTERS: usize = 10_000;

/// How long one round trip may take before the bench gives up on regd.
const ANSWER_PATIENCE: Duration = Duration::from_secs(10);

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `PUT /provider` of one register whose value changes each time.
    Publish,
    /// `GET /consumer` of one register.
    Read,
    /// `PUT /consumer` sent → a waiting `GET /provider` answered with that request.
    ChangeRequest,
    /// `PUT /provider` sent → a waiting `GET /consumer` answered with the new value.
    Wake,
}

impl Phase {
    /// Every phase, in the order they run.
    pub const ALL: [Phase; 4] = [
        Phase::Publish,
        Phase::Read,
        Phase::ChangeRequest,
        Phase::Wake,
    ];

    /// What the phase measures, for a table.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Publish => "PUT /provider",
            Phase::Read => "GET /consumer",
            Phase::ChangeRequest => "change request: PUT /consumer → waiting GET /provider",
            Phase::Wake => "wake: PUT /provider → waiting GET /consumer",
        }
    }

    /// A short identifier, for scripts.
    pub fn key(self) -> &'static str {
        match self {
            Phase::Publish => "publish",
            Phase::Read => "read",
            Phase::ChangeRequest => "change_request",
            Phase::Wake => "wake",
        }
    }
}

/// How a bench runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Register names start with this (`regctl-bench.PID.`).
    pub prefix: String,
    /// Concurrent connections; the two wake phases use half as waiters, half as wakers.
    pub connections: usize,
    /// How long each phase runs.
    pub duration: Duration,
    /// How many registers the phases spread over.
    pub registers: usize,
}

impl Settings {
    /// Settings with these values.
    pub fn new(prefix: &str, connections: usize, duration: Duration, registers: usize) -> Self {
        Settings {
            prefix: prefix.to_string(),
            connections,
            duration,
            registers,
        }
    }

    /// The waiter–waker pairs of the two wake phases: half the connections, at least
    /// one, and no more than there are registers (each pair has a register of its own).
    pub fn pairs(&self) -> usize {
        (self.connections / 2).clamp(1, self.registers.max(1))
    }
}

/// One phase's result.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Which phase.
    pub phase: Phase,
    /// Requests (or round trips) completed.
    pub count: u64,
    /// From the phase's start to its last completed request.
    pub elapsed: Duration,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Longest latency.
    pub max: Duration,
}

impl Measurement {
    /// Requests (or round trips) per second.
    pub fn per_second(&self) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            self.count as f64 / self.elapsed.as_secs_f64()
        }
    }

    fn from_samples(phase: Phase, mut samples: Vec<Duration>, elapsed: Duration) -> Self {
        samples.sort_unstable();
        Measurement {
            phase,
            count: samples.len() as u64,
            elapsed,
            p50: percentile(&samples, 50),
            p99: percentile(&samples, 99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

/// The nearest-rank percentile of sorted samples (zero for none).
fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// The phases measured, in order.
#[derive(Clone, Debug)]
pub struct Report {
    /// One per phase that ran to its end.
    pub measurements: Vec<Measurement>,
    /// Whether [`Stopper::stop`] cut the bench short.
    pub stopped: bool,
}

/// Stops a running bench from another thread (such as a signal handler's): the
/// current phase ends at once, and the bench cleans up and returns.
#[derive(Clone, Debug, Default)]
pub struct Stopper(Arc<AtomicBool>);

impl Stopper {
    /// Asks the bench to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A benchmark of one regd.
#[derive(Debug)]
pub struct Bench {
    client: Client,
    settings: Settings,
    names: Vec<String>,
    ttl: Duration,
    stopper: Stopper,
}

impl Bench {
    /// A bench through `client` (its address and token). Refuses settings out of range.
    pub fn new(client: &Client, settings: Settings) -> Result<Bench, Error> {
        if !(1..=MAX_CONNECTIONS).contains(&settings.connections) {
            return Err(Error::Input(format!(
                "connections must be between 1 and {MAX_CONNECTIONS}, got {}",
                settings.connections
            )));
        }
        if !(1..=MAX_REGISTERS).contains(&settings.registers) {
            return Err(Error::Input(format!(
                "registers must be between 1 and {MAX_REGISTERS}, got {}",
                settings.registers
            )));
        }
        if settings.duration < Duration::from_millis(10)
            || settings.duration > Duration::from_secs(3600)
        {
            return Err(Error::Input(
                "the duration of a phase must be between 10ms and 1h".to_string(),
            ));
        }
        let names = (0..settings.registers)
            .map(|number| format!("{}{number}", settings.prefix))
            .collect();
        // Long enough to outlive every phase, short enough that registers left by a
        // bench that was killed outright soon expire.
        let ttl = Duration::from_secs(30) + settings.duration * Phase::ALL.len() as u32;
        Ok(Bench {
            client: client.clone(),
            settings,
            names,
            ttl,
            stopper: Stopper::default(),
        })
    }

    /// A handle that stops the bench from another thread.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Runs every phase, then removes the bench's registers and change requests. The
    /// first failure ends the bench (after cleaning up) and is returned.
    pub fn run(&self) -> Result<Report, Error> {
        let outcome = self.run_phases();
        let cleaned = self.clean_up();
        let report = outcome?;
        cleaned?;
        Ok(report)
    }

    fn run_phases(&self) -> Result<Report, Error> {
        let null = Json::null();
        let setup: Vec<(&str, &Json, Option<&Json>, Duration)> = self
            .names
            .iter()
            .map(|name| (name.as_str(), &null, None, self.ttl))
            .collect();
        for chunk in setup.chunks(100) {
            self.client.publish(chunk)?;
        }
        let mut measurements = Vec::new();
        for phase in Phase::ALL {
            if self.stopper.is_stopped() {
                break;
            }
            let measurement = match phase {
                Phase::Publish | Phase::Read => self.run_requests(phase)?,
                Phase::ChangeRequest | Phase::Wake => self.run_pairs(phase)?,
            };
            if self.stopper.is_stopped() {
                break;
            }
            measurements.push(measurement);
        }
        Ok(Report {
            measurements,
            stopped: self.stopper.is_stopped(),
        })
    }

    /// Removes the registers and takes any change request left for them.
    fn clean_up(&self) -> Result<(), Error> {
        let deleted = self.client.delete(&self.names);
        let drained = self.client.take_requests(&self.names, None).map(drop);
        deleted.and(drained)
    }

    /// Whether a worker goes on: before the deadline, not stopped, not aborted.
    fn going_on(&self, deadline: Instant, abort: &AtomicBool, samples: usize) -> bool {
        Instant::now() < deadline
            && samples < MAX_SAMPLES_PER_THREAD
            && !self.stopper.is_stopped()
            && !abort.load(Ordering::Relaxed)
    }

    /// Publish or read: every connection sends one request after another.
    fn run_requests(&self, phase: Phase) -> Result<Measurement, Error> {
        let start = Instant::now();
        let deadline = start + self.settings.duration;
        let abort = AtomicBool::new(false);
        let results: Vec<Result<Worker, Error>> = thread::scope(|scope| {
            let handles: Vec<_> = (0..self.settings.connections)
                .map(|connection| {
                    let client = self.client.with_own_connection();
                    let abort = &abort;
                    thread::Builder::new()
                        .name(format!("regctl-bench-{}-{connection}", phase.key()))
                        .spawn_scoped(scope, move || {
                            let result =
                                self.request_loop(phase, connection, &client, deadline, abort);
                            if result.is_err() {
                                abort.store(true, Ordering::Relaxed);
                            }
                            result
                        })
                        .expect("spawn a bench thread")
                })
                .collect();
            handles.into_iter().map(join).collect()
        });
        measure(phase, start, results)
    }

    fn request_loop(
        &self,
        phase: Phase,
        connection: usize,
        client: &Client,
        deadline: Instant,
        abort: &AtomicBool,
    ) -> Result<Worker, Error> {
        let mut worker = Worker::default();
        let mut sent: u64 = 0;
        while self.going_on(deadline, abort, worker.samples.len()) {
            let name = &self.names[(connection + sent as usize) % self.names.len()];
            let started = Instant::now();
            match phase {
                Phase::Publish => {
                    // A value no other connection writes, so every PUT is a change.
                    let value = Json::from(((connection as u64) << 40) | sent);
                    client.publish(&[(name.as_str(), &value, None, self.ttl)])?;
                }
                _ => {
                    client.poll(&[name], None, None)?;
                }
            }
            worker.record(started);
            sent += 1;
        }
        Ok(worker)
    }

    /// Change requests or wakes: pairs of a waiter (a long poll) and a sender that sends
    /// the next request only when the waiter has answered the last one.
    fn run_pairs(&self, phase: Phase) -> Result<Measurement, Error> {
        let start = Instant::now();
        let deadline = start + self.settings.duration;
        let abort = AtomicBool::new(false);
        let results: Vec<Result<Worker, Error>> = thread::scope(|scope| {
            let mut handles = Vec::new();
            for pair in 0..self.settings.pairs() {
                let name = self.names[pair].as_str();
                let (answers, answered) = crossbeam_channel::bounded(64);
                let done = Arc::new(AtomicBool::new(false));
                let spawn = |role: &str| {
                    thread::Builder::new()
                        .name(format!("regctl-bench-{}-{role}-{pair}", phase.key()))
                };
                let waiter_client = self.client.with_own_connection();
                let waiter_done = done.clone();
                let abort = &abort;
                handles.push(
                    spawn("waiter")
                        .spawn_scoped(scope, move || {
                            let result = self.waiter(
                                phase,
                                name,
                                &waiter_client,
                                deadline,
                                &waiter_done,
                                &answers,
                            );
                            if result.is_err() {
                                abort.store(true, Ordering::Relaxed);
                            }
                            result.map(|()| Worker::default())
                        })
                        .expect("spawn a bench thread"),
                );
                let sender_client = self.client.with_own_connection();
                handles.push(
                    spawn("sender")
                        .spawn_scoped(scope, move || {
                            let result = self.sender(
                                phase,
                                name,
                                &sender_client,
                                deadline,
                                abort,
                                &answered,
                            );
                            done.store(true, Ordering::Relaxed);
                            // Wake the waiter so it sees `done` now rather than at the end
                            // of its wait; what it leaves pending is taken in clean_up.
                            let _ = match phase {
                                Phase::ChangeRequest => sender_client.request(name, &Json::null()),
                                _ => {
                                    sender_client.publish(&[(name, &Json::null(), None, self.ttl)])
                                }
                            };
                            if result.is_err() {
                                abort.store(true, Ordering::Relaxed);
                            }
                            result
                        })
                        .expect("spawn a bench thread"),
                );
            }
            handles.into_iter().map(join).collect()
        });
        measure(phase, start, results)
    }

    /// Long-polls `name` and reports every answer's value and when it arrived.
    fn waiter(
        &self,
        phase: Phase,
        name: &str,
        client: &Client,
        deadline: Instant,
        done: &AtomicBool,
        answers: &Sender<(Json, Instant)>,
    ) -> Result<(), Error> {
        let names = [name];
        let mut index = match phase {
            Phase::Wake => client.poll(&names, None, None)?.index,
            _ => None,
        };
        // Tell the sender the waiter is ready (its first value is ignored).
        let _ = answers.send((Json::null(), Instant::now()));
        while !done.load(Ordering::Relaxed) && !self.stopper.is_stopped() {
            // Bounded even if the sender's final wake-up never arrives.
            let wait = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
            let values: Vec<Json> = match phase {
                Phase::ChangeRequest => client
                    .take_requests(&names, Some(wait))?
                    .into_iter()
                    .map(|(_, value)| value)
                    .collect(),
                _ => {
                    let snapshot = client.poll(&names, Some(wait), index)?;
                    index = snapshot.index;
                    snapshot
                        .registers
                        .into_values()
                        .map(|register| register.value)
                        .collect()
                }
            };
            let arrived = Instant::now();
            for value in values {
                if answers.send((value, arrived)).is_err() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline + ANSWER_PATIENCE {
                break;
            }
        }
        Ok(())
    }

    /// Sends a request (or a new value), waits for the waiter to report it, and
    /// records the time between.
    fn sender(
        &self,
        phase: Phase,
        name: &str,
        client: &Client,
        deadline: Instant,
        abort: &AtomicBool,
        answered: &Receiver<(Json, Instant)>,
    ) -> Result<Worker, Error> {
        let mut worker = Worker::default();
        match answered.recv_timeout(ANSWER_PATIENCE) {
            Ok(_) => {}
            // The waiter failed; its error is the one reported.
            Err(RecvTimeoutError::Disconnected) => return Ok(worker),
            Err(RecvTimeoutError::Timeout) => return Err(no_answer(phase, name)),
        }
        let mut sent: u64 = 0;
        while self.going_on(deadline, abort, worker.samples.len()) {
            sent += 1;
            let value = Json::from(sent);
            let started = Instant::now();
            match phase {
                Phase::ChangeRequest => client.request(name, &value)?,
                _ => client.publish(&[(name, &value, None, self.ttl)])?,
            }
            let patience = started + ANSWER_PATIENCE;
            loop {
                match answered.recv_deadline(patience) {
                    Ok((answer, arrived)) if answer == value => {
                        worker
                            .samples
                            .push(arrived.saturating_duration_since(started));
                        worker.finished = Some(arrived);
                        break;
                    }
                    // An earlier value (a poll that answered before this change).
                    Ok(_) => {}
                    Err(RecvTimeoutError::Disconnected) => return Ok(worker),
                    Err(RecvTimeoutError::Timeout) => return Err(no_answer(phase, name)),
                }
            }
        }
        Ok(worker)
    }
}

fn no_answer(phase: Phase, name: &str) -> Error {
    Error::Protocol(format!(
        "{}: the waiting poll on {name:?} was not answered within {}s; is regd overloaded, or is something else taking its change requests?",
        phase.label(),
        ANSWER_PATIENCE.as_secs()
    ))
}

/// What one thread measured.
#[derive(Default)]
struct Worker {
    samples: Vec<Duration>,
    /// When its last measured request completed.
    finished: Option<Instant>,
}

impl Worker {
    fn record(&mut self, started: Instant) {
        let now = Instant::now();
        self.samples.push(now - started);
        self.finished = Some(now);
    }
}

fn join<T>(handle: thread::ScopedJoinHandle<'_, Result<T, Error>>) -> Result<T, Error> {
    handle
        .join()
        .unwrap_or_else(|_| Err(Error::Protocol("a bench thread panicked".to_string())))
}

/// Merges the threads' samples, or returns the first failure.
fn measure(
    phase: Phase,
    start: Instant,
    results: Vec<Result<Worker, Error>>,
) -> Result<Measurement, Error> {
    let mut samples = Vec::new();
    let mut finished = start;
    for result in results {
        let mut worker = result?;
        samples.append(&mut worker.samples);
        finished = finished.max(worker.finished.unwrap_or(start));
    }
    Ok(Measurement::from_samples(phase, samples, finished - start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(samples_ms: &[u64], p50: u64, p99: u64, max: u64) {
        let samples = samples_ms
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect();
        let measured = Measurement::from_samples(Phase::Read, samples, Duration::from_secs(2));
        assert_eq!(
            (measured.p50, measured.p99, measured.max),
            (
                Duration::from_millis(p50),
                Duration::from_millis(p99),
                Duration::from_millis(max)
            ),
            "{samples_ms:?}"
        );
        assert_eq!(measured.count, samples_ms.len() as u64);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        check(&[], 0, 0, 0);
        check(&[7], 7, 7, 7);
        check(&[3, 1], 1, 3, 3);
        check(&[5, 1, 4, 2, 3], 3, 5, 5);
        let hundred: Vec<u64> = (1..=100).rev().collect();
        check(&hundred, 50, 99, 100);
        let thousand: Vec<u64> = (1..=1000).collect();
        check(&thousand, 500, 990, 1000);
    }

    #[test]
    fn rates_and_pairs() {
        let samples = vec![Duration::from_millis(1); 500];
        let measured =
            Measurement::from_samples(Phase::Publish, samples, Duration::from_millis(250));
        assert_eq!(measured.per_second(), 2000.0);
        let pairs = |connections, registers| {
            Settings::new("x.", connections, Duration::from_secs(1), registers).pairs()
        };
        assert_eq!(pairs(1, 10), 1);
        assert_eq!(pairs(2, 10), 1);
        assert_eq!(pairs(4, 10), 2);
        assert_eq!(pairs(9, 10), 4);
        assert_eq!(pairs(64, 3), 3);
    }
}
