//! How a long poll waits: its connection thread parks with a [`Waker`] (a flag set
//! before the unpark, so a wake between registering and parking is never lost) until
//! the registry wakes it, its deadline passes, or its client hangs up; and the slots of
//! held polls, counted against `--max-polls`. Invariant: a parked poll costs nothing
//! while nothing happens — it wakes only when told to, or at its deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, Thread};
use std::time::Instant;

use crate::protocol::ApiError;

use super::exchange::Peer;
use super::hangups::Nudge;

/// How a waiting poll is woken: its thread is unparked after a flag is set, so a
/// wake-up between registering and parking is never lost. Two flags: `woken` (the
/// registry woke it) and `nudged` (its socket showed activity: maybe a hang-up).
pub struct Waker {
    thread: Thread,
    woken: AtomicBool,
    nudged: AtomicBool,
}

impl Waker {
    pub(crate) fn for_current_thread() -> Arc<Self> {
        Arc::new(Waker {
            thread: thread::current(),
            woken: AtomicBool::new(false),
            nudged: AtomicBool::new(false),
        })
    }

    pub(crate) fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }

    /// Parks until woken, `deadline`, or the client hangs up. The peer is looked at
    /// only when its socket shows activity (see [`super::hangups`]): a parked poll costs
    /// nothing while nothing happens.
    pub(crate) fn park_until(self: &Arc<Self>, deadline: Instant, peer: &dyn Peer) -> Parked {
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

/// Why a parked poll woke up.
pub(crate) enum Parked {
    /// The registry woke it: something it waits for happened.
    Woken,
    /// Its deadline passed.
    TimedOut,
    /// Its client hung up.
    ClientLeft,
}

/// The long polls held at once, counted against a limit (docs/protocol.md B4).
pub(crate) struct HeldPolls {
    count: AtomicUsize,
    limit: usize,
}

impl HeldPolls {
    pub(crate) fn new(limit: usize) -> Self {
        HeldPolls {
            count: AtomicUsize::new(0),
            limit,
        }
    }

    /// How many are held now.
    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Takes a slot, or refuses at the limit with a 503.
    pub(crate) fn hold(&self) -> Result<HeldPoll<'_>, ApiError> {
        let previous = self.count.fetch_add(1, Ordering::Relaxed);
        let held = HeldPoll(self);
        if previous >= self.limit {
            return Err(ApiError::unavailable(format!(
                "too many long polls are held ({}); retry later or raise --max-polls",
                self.limit
            )));
        }
        Ok(held)
    }
}

/// A held long poll's slot, given back when dropped.
pub(crate) struct HeldPoll<'a>(&'a HeldPolls);

impl Drop for HeldPoll<'_> {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::Relaxed);
    }
}
