//! The registry behind its one lock: [`SharedRegistry::with_state`] locks, runs a core
//! operation with the time from the [`Clock`], and — after unlocking — wakes the polls
//! the operation woke, logs expiries and tells the reaper when the earliest deadline
//! moved earlier; [`SharedRegistry::run_reaper`] is the reaper. Invariants: the lock is
//! held only around core calls, never while waiting or doing I/O; waking happens
//! outside it.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

use crate::core::{self, Registry};

use super::parking::Waker;

/// Where the registry's time comes from. The daemon uses [`SystemClock`]; tests move a
/// clock of their own, so expiry is tested without waiting. The reaper and parked
/// polls sleep in real time, so only the system clock may drive a running reaper.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Instant;

    /// The wall-clock time, for what outlives the process: the state files record it at
    /// each save, and a restore measures the downtime with it.
    fn wall_now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The monotonic system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall_now(&self) -> SystemTime {
        let now = SystemTime::now();
        #[cfg(debug_assertions)]
        let now = shifted_for_tests(now);
        now
    }
}

/// The test hook `REGD_TEST_CLOCK_OFFSET=+3h` (or `-3h`): in debug builds only (what
/// `cargo test` builds), the wall clock runs that far ahead (or behind), so the
/// integration tests can restart regd with a clock that jumped (docs/state-file.md).
#[cfg(debug_assertions)]
fn shifted_for_tests(now: SystemTime) -> SystemTime {
    use std::sync::OnceLock;
    static OFFSET: OnceLock<Option<(bool, std::time::Duration)>> = OnceLock::new();
    let offset = OFFSET.get_or_init(|| {
        let text = std::env::var("REGD_TEST_CLOCK_OFFSET").ok()?;
        let (behind, amount) = match text.strip_prefix('-') {
            Some(amount) => (true, amount),
            None => (false, text.trim_start_matches('+')),
        };
        let amount = humantime::parse_duration(amount).ok()?;
        log::warn!("test hook: the wall clock is shifted by {text}");
        Some((behind, amount))
    });
    match offset {
        Some((true, amount)) => now.checked_sub(*amount).unwrap_or(now),
        Some((false, amount)) => now.checked_add(*amount).unwrap_or(now),
        None => now,
    }
}

/// The core registry, with waiters that are parked threads.
pub(crate) type State = Registry<Arc<Waker>>;

/// The registry and its reaper's alarm, shared by every connection thread.
pub(crate) struct SharedRegistry {
    state: Mutex<State>,
    /// Wakes the reaper when the earliest deadline moves earlier, or at shutdown.
    reaper_alarm: Condvar,
    clock: Arc<dyn Clock>,
}

impl SharedRegistry {
    pub(crate) fn new(limits: core::Limits, first_revision: u64, clock: Arc<dyn Clock>) -> Self {
        SharedRegistry {
            state: Mutex::new(Registry::new(limits, first_revision)),
            reaper_alarm: Condvar::new(),
            clock,
        }
    }

    /// Runs `operation` under the lock, then — outside it — wakes whoever the operation
    /// woke, logs expiries, and tells the reaper if the earliest deadline moved earlier.
    pub(crate) fn with_state<R>(&self, operation: impl FnOnce(&mut State, Instant) -> R) -> R {
        let mut state = self.state.lock();
        let earliest_before = state.next_deadline();
        let result = operation(&mut state, self.clock.now());
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

    /// The wall-clock time of the registry's clock.
    pub(crate) fn wall_now(&self) -> SystemTime {
        self.clock.wall_now()
    }

    /// Answers every held poll at once and stops the reaper (docs/protocol.md A10).
    pub(crate) fn shut_down(&self) {
        self.with_state(|state, _| state.shut_down());
        self.reaper_alarm.notify_all();
    }

    /// The reaper: sleeps until the earliest deadline (or until told it moved), then
    /// expires what is due. Returns at shutdown.
    pub(crate) fn run_reaper(&self) {
        loop {
            {
                let mut state = self.state.lock();
                if state.is_shut_down() {
                    return;
                }
                match state.next_deadline() {
                    Some(deadline) if deadline <= self.clock.now() => {}
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
}
