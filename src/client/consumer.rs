//! The consumer: one background long poll on `GET /consumer` that carries every
//! subscription, and a channel of updates. Invariants: the poll passes back the last
//! `X-Reg-Index` (docs/protocol.md B1), so no change between two polls is missed; each answer is
//! diffed against what was delivered, so the reader sees every register's latest state;
//! a subscription change shuts down the poll's connection (its own ureq agent) so the
//! next poll, with the new names, starts at once.
//!
//! Why shutting down the connection rather than a short wait cycle: it takes effect in
//! microseconds, costs no requests while nothing changes, and cannot lose a change — the
//! aborted poll's answer is simply never read, and the next poll asks for a fresh
//! snapshot. A consumer poll consumes nothing on the server, so aborting it is harmless.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{Receiver, Sender, select};
use parking_lot::Mutex;
use ureq::Agent;

use super::worker::{self, Backoff, Outbox};
use super::{Error, Http, POLL_WAIT, RETRY_CAP, RETRY_CAP_UNREACHABLE, RETRY_FIRST, Register};

/// What a consumer learns.
#[derive(Clone, Debug)]
pub enum Update {
    /// A subscribed register exists with this value and metadata: it was created or
    /// changed, or it is the current state of a register just subscribed to.
    Changed {
        /// The register's name.
        name: String,
        /// Its value and metadata.
        register: Register,
    },
    /// A subscribed register expired or was deleted.
    Removed {
        /// The register's name.
        name: String,
    },
    /// The background poll failed; it retries with backoff. Updates resume (with the
    /// latest state of every register) once regd answers again.
    Failed(Error),
    /// regd answers again after failures.
    Recovered,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Register(String),
    Status,
}

struct State {
    all: bool,
    names: BTreeSet<String>,
    /// Names whose delivered state must be forgotten, so their current state is sent
    /// again (they were just subscribed to).
    forget: Vec<String>,
    forget_all: bool,
    generation: u64,
    agent: Agent,
    stopped: bool,
}

struct Shared {
    http: Http,
    state: Mutex<State>,
    outbox: Arc<Outbox<Key, Update>>,
    wake: Sender<()>,
}

/// Follows registers. Subscriptions take effect at once; updates arrive on
/// [`Consumer::updates`]. Closing or dropping it stops and joins its threads.
///
/// All names go into one query string, so one consumer follows at most as many names
/// as regd accepts per request (`--max-names`, `--max-uri`); beyond that, use
/// [`subscribe_all`](Self::subscribe_all) or several consumers.
///
/// A slow reader never loses an update: while the channel is full, updates wait in an
/// outbox that keeps only the latest state of each register, so the reader always ends
/// with the current state of every register it follows.
pub struct Consumer {
    shared: Arc<Shared>,
    updates: Receiver<Update>,
    stop: Option<Sender<()>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Consumer {
    pub(crate) fn start(http: Http) -> Consumer {
        let (stop, stopped) = crossbeam_channel::bounded(0);
        let (out, updates) = crossbeam_channel::bounded(worker::CHANNEL_CAPACITY);
        let (outbox, delivery) =
            worker::start_delivery("regd-client-consumer-delivery", out, stopped.clone());
        let (wake, woken) = crossbeam_channel::bounded(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                all: false,
                names: BTreeSet::new(),
                forget: Vec::new(),
                forget_all: false,
                generation: 0,
                agent: http.new_agent(),
                stopped: false,
            }),

            outbox,
            wake,
            http,
        });
        let poll = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("regd-client-consumer".to_string())
                .spawn(move || run(&shared, &woken, &stopped))
                .expect("spawn a client thread")
        };
        Consumer {
            shared,
            updates,
            stop: Some(stop),
            threads: vec![poll, delivery],
        }
    }

    /// Follows these registers too. The current state of each existing one arrives as
    /// an [`Update::Changed`].
    pub fn subscribe<I, S>(&self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.change(|state| {
            for name in names {
                let name = name.into();
                state.forget.push(name.clone());
                state.names.insert(name);
            }
        });
    }

    /// Follows every register, including those created later.
    pub fn subscribe_all(&self) {
        self.change(|state| {
            state.all = true;
            state.forget_all = true;
        });
    }

    /// Stops following these registers; their waiting updates are dropped. After
    /// [`subscribe_all`](Self::subscribe_all), use [`unsubscribe_all`](Self::unsubscribe_all).
    pub fn unsubscribe<I, S>(&self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let names: BTreeSet<String> = names
            .into_iter()
            .map(|name| name.as_ref().to_string())
            .collect();
        let outbox = &self.shared.outbox;
        self.change(|state| {
            state.names.retain(|name| !names.contains(name));
            if !state.all {
                outbox.discard(|key| matches!(key, Key::Register(name) if names.contains(name)));
            }
        });
    }

    /// Stops following anything.
    pub fn unsubscribe_all(&self) {
        let outbox = &self.shared.outbox;
        self.change(|state| {
            state.all = false;
            state.names.clear();
            outbox.discard(|key| matches!(key, Key::Register(_)));
        });
    }

    /// The updates, in the order they happened per register.
    pub fn updates(&self) -> &Receiver<Update> {
        &self.updates
    }

    /// Stops the poll and joins the consumer's threads.
    pub fn close(self) {}

    /// Applies a subscription change and interrupts the running poll so the next one
    /// carries it.
    fn change(&self, apply: impl FnOnce(&mut State)) {
        let old_agent = {
            let mut state = self.shared.state.lock();
            if state.stopped {
                return;
            }
            apply(&mut state);
            state.generation += 1;
            // A shut-down agent refuses every later request, so the next poll gets a
            // fresh one; the old one is shut down outside the lock.
            std::mem::replace(&mut state.agent, self.shared.http.new_agent())
        };
        old_agent.shutdown();
        let _ = self.shared.wake.try_send(());
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let agent = {
            let mut state = self.shared.state.lock();
            state.stopped = true;
            state.agent.clone()
        };
        agent.shutdown();
        drop(self.stop.take());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The poll loop.
fn run(shared: &Shared, wake: &Receiver<()>, stop: &Receiver<()>) {
    let http = &shared.http;
    let mut known: BTreeMap<String, Register> = BTreeMap::new();
    let mut index = None;
    // The generation of the last successful answer; a different one asks for a fresh
    // snapshot at once.
    let mut answered: Option<u64> = None;
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_CAP, RETRY_CAP_UNREACHABLE);
    loop {
        let (names, all, generation, agent) = {
            let mut state = shared.state.lock();
            if state.stopped {
                return;
            }
            if std::mem::take(&mut state.forget_all) {
                known.clear();
            }
            for name in state.forget.drain(..) {
                known.remove(&name);
            }
            if !state.all {
                known.retain(|name, _| state.names.contains(name));
            }
            let names: Vec<String> = if state.all {
                Vec::new()
            } else {
                state.names.iter().cloned().collect()
            };
            (names, state.all, state.generation, state.agent.clone())
        };
        if !all && names.is_empty() {
            select! {
                recv(wake) -> _ => {}
                recv(stop) -> _ => return,
            }
            continue;
        }
        let fresh = answered != Some(generation);
        let result = if fresh {
            http.poll(&agent, &names, None, None)
        } else {
            http.poll(&agent, &names, Some(POLL_WAIT), index)
        };
        let state = shared.state.lock();
        if state.stopped {
            return;
        }
        if state.generation != generation {
            // The subscriptions changed while this poll ran (and it was probably cut
            // short on purpose): ask again with the new names.
            continue;
        }
        match result {
            Ok(snapshot) => {
                if backoff.succeed() {
                    shared.outbox.push(Key::Status, Update::Recovered);
                }
                // Delivered under the state lock, so an unsubscribe cannot slip between
                // the generation check and the delivery.
                for (name, register) in &snapshot.registers {
                    if known.get(name) != Some(register) {
                        known.insert(name.clone(), register.clone());
                        shared.outbox.push(
                            Key::Register(name.clone()),
                            Update::Changed {
                                name: name.clone(),
                                register: register.clone(),
                            },
                        );
                    }
                }
                let removed: Vec<String> = known
                    .keys()
                    .filter(|name| !snapshot.registers.contains_key(*name))
                    .cloned()
                    .collect();
                for name in removed {
                    known.remove(&name);
                    shared
                        .outbox
                        .push(Key::Register(name.clone()), Update::Removed { name });
                }
                drop(state);
                index = snapshot.index;
                answered = Some(generation);
            }
            Err(error) => {
                drop(state);
                answered = None;
                let pause = backoff.fail_after(&error);
                log::debug!("consumer poll failed, retrying in {pause:?}: {error}");
                shared.outbox.push(Key::Status, Update::Failed(error));
                select! {
                    recv(wake) -> _ => {}
                    recv(stop) -> _ => return,
                    default(pause) => {}
                }
            }
        }
    }
}
