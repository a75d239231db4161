//! The register store: registers, pending change requests, expiry, revisions and the
//! waiters of long polls.
//!
//! The core owns every piece of shared state and nothing else: it does no I/O, never
//! reads a clock (every operation takes `now`), and never looks inside a value (values
//! and metadata are opaque texts the protocol layer has already checked). Invariants:
//! - a register is visible exactly while `now < deadline`; reads never show an expired
//!   register, whether or not the reaper has run;
//! - every visible change (create, value or metadata change, expiry, delete) advances
//!   the revision by one and records it on the register, or in the deletion log;
//! - a waiter is woken at most once: waking removes it from every index;
//! - what a restart keeps, and the revision rule across restarts, live in `saved.rs`.

mod saved;
mod waiters;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use saved::{LastRun, REVISION_RESERVATION, SavedState};
pub use waiters::WaiterId;
use waiters::Waiters;

/// A register name: opaque UTF-8, shared between the maps that index it.
pub type Name = Arc<str>;

/// An encoded value (or metadata object), compared byte for byte and never parsed here.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Value(Arc<str>);

impl Value {
    /// Wraps an encoded text; the caller vouches that it is well formed.
    pub fn new(text: impl Into<Arc<str>>) -> Self {
        Value(text.into())
    }

    /// The encoded text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which registers an operation is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Every register (or every pending change request).
    All,
    /// These names, in order, without duplicates.
    Names(Vec<Name>),
}

impl Selection {
    /// Builds a selection from names in request order; duplicates keep their first place
    /// and an empty list means every register.
    pub fn from_names<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut unique: Vec<Name> = Vec::new();
        for name in names {
            let name = name.as_ref();
            if !unique.iter().any(|seen| &**seen == name) {
                unique.push(Name::from(name));
            }
        }
        if unique.is_empty() {
            Selection::All
        } else {
            Selection::Names(unique)
        }
    }

    fn contains(&self, name: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::Names(names) => names.iter().any(|n| &**n == name),
        }
    }
}

/// What a provider publishes for one register.
#[derive(Clone, Debug)]
pub struct Publish {
    /// The new value.
    pub value: Value,
    /// The new metadata; `None` when the register has none.
    pub metadata: Option<Value>,
    /// How long the register lives after this publish.
    pub ttl: Duration,
}

/// One register as a reader sees it at a moment (and as a save keeps it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterView {
    /// The register's name.
    pub name: Name,
    /// The current value.
    pub value: Value,
    /// The current metadata, if any.
    pub metadata: Option<Value>,
    /// The ttl of the last publish.
    pub ttl: Duration,
    /// Time left until expiry.
    pub expires_in: Duration,
    /// The revision of the register's last change.
    pub revision: u64,
}

/// A consistent read: the registers that exist and the revision they were read at.
#[derive(Clone, Debug)]
pub struct Reading {
    /// Registers in selection order (by name for [`Selection::All`]).
    pub registers: Vec<RegisterView>,
    /// The global revision at the time of the read.
    pub revision: u64,
}

/// Capacity limits the core enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Registers that may exist at once.
    pub max_registers: usize,
    /// Change requests that may be pending at once.
    pub max_pending_requests: usize,
    /// Deletions and expiries remembered for `index` queries; older ones make such
    /// queries answer early.
    pub deletion_memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_registers: 10_000,
            max_pending_requests: 10_000,
            deletion_memory: 10_000,
        }
    }
}

/// Why the core refused an operation. Nothing of a refused operation is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// Creating the registers would exceed [`Limits::max_registers`].
    TooManyRegisters {
        /// The configured limit.
        limit: usize,
    },
    /// Queuing the requests would exceed [`Limits::max_pending_requests`].
    TooManyPendingRequests {
        /// The configured limit.
        limit: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooManyRegisters { limit } => write!(
                f,
                "the register limit ({limit}) is reached; delete unused registers or raise --max-registers"
            ),
            Error::TooManyPendingRequests { limit } => write!(
                f,
                "the pending change request limit ({limit}) is reached; providers must take requests, or raise --max-pending"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Counters the daemon reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Registers currently visible.
    pub registers: usize,
    /// Change requests waiting for a provider.
    pub pending_requests: usize,
    /// Consumer long polls currently registered.
    pub consumer_waiters: usize,
    /// Provider long polls currently registered.
    pub provider_waiters: usize,
    /// Registers removed because their ttl ran out, since start.
    pub expirations: u64,
    /// Waiters woken, since start.
    pub wakeups: u64,
    /// The current revision.
    pub revision: u64,
}

struct Register {
    value: Value,
    metadata: Option<Value>,
    ttl: Duration,
    deadline: Instant,
    revision: u64,
}

/// The whole state of a register service, generic over the handle `W` used to wake a
/// waiting poll (a thread handle in the daemon, a number in tests).
pub struct Registry<W> {
    limits: Limits,
    registers: BTreeMap<Name, Register>,
    deadlines: BTreeSet<(Instant, Name)>,
    pending: BTreeMap<Name, Value>,
    revision: u64,
    /// The lowest `index` this registry can judge: below it, deletions were forgotten
    /// (or happened in an earlier process), so such queries answer at once.
    trusted_from: u64,
    deletions: VecDeque<(u64, Name)>,
    consumers: Waiters<W>,
    providers: Waiters<W>,
    /// Shared by both kinds of waiter, so an id names exactly one waiter.
    last_waiter_id: u64,
    to_wake: Vec<W>,
    expired: Vec<Name>,
    expirations: u64,
    wakeups: u64,
    /// Operations that changed what a save would write, deadline-only refreshes and
    /// change requests included (the revision counts neither), so the saver can tell
    /// whether anything is new.
    edits: u64,
    shut_down: bool,
}

impl<W> Registry<W> {
    /// An empty registry whose revision starts at `first_revision` (at least 1). The
    /// daemon starts at an unpredictable revision so that an `index` from an earlier run
    /// is never mistaken for one of this run.
    pub fn new(limits: Limits, first_revision: u64) -> Self {
        let first_revision = first_revision.max(1);
        Registry {
            limits,
            registers: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            pending: BTreeMap::new(),
            revision: first_revision,
            trusted_from: first_revision,
            deletions: VecDeque::new(),
            consumers: Waiters::default(),
            providers: Waiters::default(),
            last_waiter_id: 0,
            to_wake: Vec::new(),
            expired: Vec::new(),
            expirations: 0,
            wakeups: 0,
            edits: 0,
            shut_down: false,
        }
    }

    /// The current revision.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The earliest moment a register expires, for the reaper to sleep until.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// Whether [`Registry::shut_down`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down
    }

    /// Waiters to wake because of the operations since the last call. The caller wakes
    /// them after releasing its lock.
    pub fn take_wakeups(&mut self) -> Vec<W> {
        std::mem::take(&mut self.to_wake)
    }

    /// Names that expired since the last call, for logging.
    pub fn take_expired(&mut self) -> Vec<Name> {
        std::mem::take(&mut self.expired)
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
        Stats {
            registers: self.registers.len(),
            pending_requests: self.pending.len(),
            consumer_waiters: self.consumers.len(),
            provider_waiters: self.providers.len(),
            expirations: self.expirations,
            wakeups: self.wakeups,
            revision: self.revision,
        }
    }

    /// Removes every register whose deadline is not after `now`, waking their consumers.
    pub fn expire(&mut self, now: Instant) {
        while let Some((deadline, _)) = self.deadlines.first() {
            if *deadline > now {
                break;
            }
            let Some((_, name)) = self.deadlines.pop_first() else {
                break;
            };
            self.registers.remove(&name);
            self.expirations += 1;
            self.edits += 1;
            self.record_removal(name.clone());
            self.expired.push(name);
        }
    }

    /// Publishes registers: creates or replaces value and metadata and restarts the ttl.
    /// Consumers wake only for registers whose value or metadata changed. All or nothing:
    /// refused whole when it would create more registers than the limit allows.
    pub fn publish(&mut self, now: Instant, entries: Vec<(Name, Publish)>) -> Result<(), Error> {
        self.expire(now);
        let new_names: BTreeSet<&str> = entries
            .iter()
            .map(|(name, _)| &**name)
            .filter(|name| !self.registers.contains_key(*name))
            .collect();
        if self.registers.len() + new_names.len() > self.limits.max_registers {
            return Err(Error::TooManyRegisters {
                limit: self.limits.max_registers,
            });
        }
        // Even a refresh that changes only the deadline is news for a save.
        self.edits += 1;
        for (name, publish) in entries {
            let deadline = deadline_after(now, publish.ttl);
            match self.registers.get_mut(&name) {
                Some(register) => {
                    self.deadlines.remove(&(register.deadline, name.clone()));
                    self.deadlines.insert((deadline, name.clone()));
                    register.deadline = deadline;
                    register.ttl = publish.ttl;
                    let changed =
                        register.value != publish.value || register.metadata != publish.metadata;
                    if changed {
                        register.value = publish.value;
                        register.metadata = publish.metadata;
                        self.revision += 1;
                        register.revision = self.revision;
                        self.wake_consumers_of(&name);
                    }
                }
                None => {
                    self.revision += 1;
                    self.deadlines.insert((deadline, name.clone()));
                    self.registers.insert(
                        name.clone(),
                        Register {
                            value: publish.value,
                            metadata: publish.metadata,
                            ttl: publish.ttl,
                            deadline,
                            revision: self.revision,
                        },
                    );
                    self.wake_consumers_of(&name);
                }
            }
        }
        Ok(())
    }

    /// Removes registers now, waking their consumers. Returns how many existed.
    pub fn delete(&mut self, now: Instant, names: &[Name]) -> usize {
        self.expire(now);
        let mut removed = 0;
        for name in names {
            if let Some((name, register)) = self.registers.remove_entry(&**name) {
                self.deadlines.remove(&(register.deadline, name.clone()));
                self.record_removal(name);
                removed += 1;
            }
        }
        if removed > 0 {
            self.edits += 1;
        }
        removed
    }

    /// The registers of `selection` that exist now.
    pub fn read(&mut self, now: Instant, selection: &Selection) -> Reading {
        self.expire(now);
        let view = |name: &Name, register: &Register| RegisterView {
            name: name.clone(),
            value: register.value.clone(),
            metadata: register.metadata.clone(),
            ttl: register.ttl,
            expires_in: register.deadline.saturating_duration_since(now),
            revision: register.revision,
        };
        let registers = match selection {
            Selection::All => self
                .registers
                .iter()
                .map(|(name, register)| view(name, register))
                .collect(),
            Selection::Names(names) => names
                .iter()
                .filter_map(|name| {
                    self.registers
                        .get_key_value(&**name)
                        .map(|(name, register)| view(name, register))
                })
                .collect(),
        };
        Reading {
            registers,
            revision: self.revision,
        }
    }

    /// Whether anything in `selection` changed after revision `index`. Answers `true`
    /// when it cannot tell (an index from before what it remembers, or from the future).
    pub fn changed_since(&mut self, now: Instant, selection: &Selection, index: u64) -> bool {
        self.expire(now);
        if index < self.trusted_from || index > self.revision {
            return true;
        }
        match selection {
            // Every revision step is a change to some register.
            Selection::All => self.revision > index,
            Selection::Names(names) => {
                let changed = names.iter().any(|name| {
                    self.registers
                        .get(&**name)
                        .is_some_and(|register| register.revision > index)
                });
                changed
                    || self
                        .deletions
                        .iter()
                        .rev()
                        .take_while(|(revision, _)| *revision > index)
                        .any(|(_, name)| selection.contains(name))
            }
        }
    }

    /// Queues change requests; each replaces any pending one for its name and wakes the
    /// provider polls of that name. All or nothing under the pending limit.
    pub fn request(&mut self, entries: Vec<(Name, Value)>) -> Result<(), Error> {
        let new_names: BTreeSet<&str> = entries
            .iter()
            .map(|(name, _)| &**name)
            .filter(|name| !self.pending.contains_key(*name))
            .collect();
        if self.pending.len() + new_names.len() > self.limits.max_pending_requests {
            return Err(Error::TooManyPendingRequests {
                limit: self.limits.max_pending_requests,
            });
        }
        self.edits += 1;
        for (name, value) in entries {
            self.wake_providers_of(&name);
            self.pending.insert(name, value);
        }
        Ok(())
    }

    /// Whether a change request is pending for any name of `selection`.
    #[cfg(test)]
    pub fn has_requests(&self, selection: &Selection) -> bool {
        match selection {
            Selection::All => !self.pending.is_empty(),
            Selection::Names(names) => names.iter().any(|name| self.pending.contains_key(name)),
        }
    }

    /// Removes and returns the pending change requests of `selection`.
    pub fn take_requests(&mut self, selection: &Selection) -> Vec<(Name, Value)> {
        let taken: Vec<(Name, Value)> = match selection {
            Selection::All => std::mem::take(&mut self.pending).into_iter().collect(),
            Selection::Names(names) => names
                .iter()
                .filter_map(|name| self.pending.remove_entry(name))
                .collect(),
        };
        if !taken.is_empty() {
            self.edits += 1;
        }
        taken
    }

    /// Puts back requests that were taken but could not be delivered, unless a newer
    /// request for the same name arrived meanwhile (the latest still wins).
    pub fn restore_requests(&mut self, requests: Vec<(Name, Value)>) {
        for (name, value) in requests {
            if !self.pending.contains_key(&name) {
                self.wake_providers_of(&name);
                self.pending.insert(name, value);
                self.edits += 1;
            }
        }
    }

    /// Registers a consumer poll on `selection`. It is woken once, by the next change to
    /// a selected register (or by shutdown), and then forgotten.
    pub fn wait_for_change(&mut self, selection: &Selection, waker: W) -> WaiterId {
        let id = self.next_waiter_id();
        self.consumers.add(id, selection, waker);
        id
    }

    /// Registers a provider poll on `selection`, woken by the next change request for it.
    pub fn wait_for_request(&mut self, selection: &Selection, waker: W) -> WaiterId {
        let id = self.next_waiter_id();
        self.providers.add(id, selection, waker);
        id
    }

    fn next_waiter_id(&mut self) -> WaiterId {
        self.last_waiter_id += 1;
        WaiterId(self.last_waiter_id)
    }

    /// Forgets a poll that stopped waiting (timed out, or its client left). Returns
    /// `false` when it had been woken already.
    pub fn cancel_wait(&mut self, id: WaiterId) -> bool {
        self.consumers.remove(id).is_some() || self.providers.remove(id).is_some()
    }

    /// Marks the registry as shutting down and wakes every waiter.
    pub fn shut_down(&mut self) {
        self.shut_down = true;
        let before = self.to_wake.len();
        self.consumers.take_all(&mut self.to_wake);
        self.providers.take_all(&mut self.to_wake);
        self.wakeups += (self.to_wake.len() - before) as u64;
    }

    fn record_removal(&mut self, name: Name) {
        self.revision += 1;
        self.wake_consumers_of(&name);
        self.deletions.push_back((self.revision, name));
        while self.deletions.len() > self.limits.deletion_memory {
            if let Some((revision, _)) = self.deletions.pop_front() {
                // Queries at or after this revision still see every later deletion.
                self.trusted_from = self.trusted_from.max(revision);
            }
        }
    }

    fn wake_consumers_of(&mut self, name: &str) {
        let before = self.to_wake.len();
        self.consumers.take_for(name, &mut self.to_wake);
        self.wakeups += (self.to_wake.len() - before) as u64;
    }

    fn wake_providers_of(&mut self, name: &str) {
        let before = self.to_wake.len();
        self.providers.take_for(name, &mut self.to_wake);
        self.wakeups += (self.to_wake.len() - before) as u64;
    }
}

/// `now + ttl`, saturating far in the future for absurd ttls instead of overflowing.
fn deadline_after(now: Instant, ttl: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(ttl.min(CENTURY))
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
