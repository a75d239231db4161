//! Machinery shared by the consumer and the provider: the coalescing outbox and its
//! delivery thread, retry backoff, and the stop signal. Invariants: an item put in an
//! outbox is either delivered or replaced by a newer item with the same key — never
//! dropped while the receiver exists; no lock is held while a thread blocks.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use super::Error;
use crossbeam_channel::{Receiver, Sender, select};
use parking_lot::Mutex;

/// How many items wait in a delivery channel before the outbox starts coalescing.
pub(crate) const CHANNEL_CAPACITY: usize = 16;

/// Items waiting for a slow reader, one per key, in the order their keys first
/// appeared. A newer item replaces a waiting one with the same key.
pub(crate) struct Outbox<K, T> {
    state: Mutex<OutboxState<K, T>>,
    doorbell: Sender<()>,
}

struct OutboxState<K, T> {
    order: VecDeque<K>,
    items: HashMap<K, T>,
}

impl<K: Hash + Eq + Clone, T> Outbox<K, T> {
    /// Puts an item in the outbox, replacing a waiting one with the same key.
    pub(crate) fn push(&self, key: K, item: T) {
        {
            let mut state = self.state.lock();
            if state.items.insert(key.clone(), item).is_none() {
                state.order.push_back(key);
            }
        }
        // A full doorbell already means "look again"; one ring is enough.
        let _ = self.doorbell.try_send(());
    }

    /// Drops the waiting items whose key `discard` selects.
    pub(crate) fn discard(&self, mut discard: impl FnMut(&K) -> bool) {
        let mut state = self.state.lock();
        let OutboxState { order, items } = &mut *state;
        order.retain(|key| {
            let keep = !discard(key);
            if !keep {
                items.remove(key);
            }
            keep
        });
    }

    fn pop(&self) -> Option<T> {
        let mut state = self.state.lock();
        let key = state.order.pop_front()?;
        state.items.remove(&key)
    }
}

/// Creates an outbox and starts the thread that moves its items into `out`, blocking on
/// the reader without holding the outbox. The thread ends when `stop` is dropped or the
/// reader goes away.
pub(crate) fn start_delivery<K, T>(
    name: &str,
    out: Sender<T>,
    stop: Receiver<()>,
) -> (Arc<Outbox<K, T>>, thread::JoinHandle<()>)
where
    K: Hash + Eq + Clone + Send + 'static,
    T: Send + 'static,
{
    let (doorbell, rings) = crossbeam_channel::bounded(1);
    let outbox = Arc::new(Outbox {
        state: Mutex::new(OutboxState {
            order: VecDeque::new(),
            items: HashMap::new(),
        }),
        doorbell,
    });
    let thread = {
        let outbox = outbox.clone();
        thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                loop {
                    select! {
                        recv(rings) -> _ => {}
                        recv(stop) -> _ => return,
                    }
                    while let Some(item) = outbox.pop() {
                        select! {
                            send(out, item) -> sent => if sent.is_err() { return },
                            recv(stop) -> _ => return,
                        }
                    }
                }
            })
            .expect("spawn a client thread")
    };
    (outbox, thread)
}

/// Capped exponential backoff with jitter for background retries.
pub(crate) struct Backoff {
    failures: u32,
    first: Duration,
    cap: Duration,
    /// The cap while regd cannot be reached at all (see [`Backoff::fail_after`]).
    unreachable_cap: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, cap: Duration, unreachable_cap: Duration) -> Self {
        Backoff {
            failures: 0,
            first,
            cap,
            unreachable_cap: unreachable_cap.min(cap),
        }
    }

    /// Records a failure and returns how long to wait before the next attempt: the
    /// exponential step, capped, then scaled by a random factor in [0.5, 1) so that
    /// many clients of a restarted regd do not retry in lock step. While regd cannot be
    /// reached (nothing listens: it is restarting), asking again costs it nothing, so
    /// the cap is the lower `unreachable_cap`: a restarted regd is seen within it.
    /// Answers (a 503 of a regd at its limits) keep the full cap, to relieve it.
    pub(crate) fn fail_after(&mut self, error: &Error) -> Duration {
        let cap = if error.is_connect() {
            self.unreachable_cap
        } else {
            self.cap
        };
        let step = self
            .first
            .saturating_mul(1 << self.failures.min(16))
            .min(cap);
        self.failures = self.failures.saturating_add(1);
        step.mul_f64(0.5 + random_fraction() / 2.0)
    }

    /// Whether the last attempt failed.
    pub(crate) fn is_failing(&self) -> bool {
        self.failures > 0
    }

    /// Records a success; returns whether it ended a run of failures.
    pub(crate) fn succeed(&mut self) -> bool {
        std::mem::take(&mut self.failures) > 0
    }
}

/// A number in [0, 1) that differs from call to call and process to process (jitter
/// needs no cryptographic quality, so the standard library's random hasher keys do).
fn random_fraction() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let keys = RandomState::new();
    let bits = keys.hash_one(COUNTER.fetch_add(1, Ordering::Relaxed));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let answered = Error::Status {
            status: 503,
            message: "too many".to_string(),
        };
        let mut backoff = Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(1),
            Duration::from_millis(300),
        );
        let waits: Vec<Duration> = (0..8).map(|_| backoff.fail_after(&answered)).collect();
        assert!(waits[0] >= Duration::from_millis(50) && waits[0] < Duration::from_millis(100));
        assert!(waits[2] >= Duration::from_millis(200) && waits[2] < Duration::from_millis(400));
        for wait in &waits[4..] {
            assert!(*wait >= Duration::from_millis(500) && *wait < Duration::from_secs(1));
        }
        assert!(backoff.is_failing());
        assert!(backoff.succeed());
        assert!(!backoff.is_failing());
        assert!(!backoff.succeed());
    }

    #[test]
    fn while_regd_cannot_be_reached_the_backoff_stays_short() {
        let unreachable = Error::Connect {
            url: "http://127.0.0.1:9".to_string(),
            reason: "connection refused".to_string(),
            source: std::sync::Arc::new(ureq::Error::ConnectionFailed),
        };
        let mut backoff = Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(1),
            Duration::from_millis(300),
        );
        for _ in 0..20 {
            assert!(backoff.fail_after(&unreachable) < Duration::from_millis(300));
        }
    }

    #[test]
    fn outbox_coalesces_per_key_and_keeps_first_order() {
        let (out, updates) = crossbeam_channel::bounded(0);
        let (stop_tx, stop) = crossbeam_channel::bounded::<()>(0);
        let (outbox, thread) = start_delivery("test-delivery", out, stop);
        // Nobody reads yet: the delivery thread holds at most the first item.
        outbox.push("a", ("a", 1));
        outbox.push("b", ("b", 1));
        outbox.push("a", ("a", 2));
        outbox.push("c", ("c", 1));
        outbox.discard(|key| *key == "c");
        let mut latest = HashMap::new();
        let mut b_seen = 0;
        while latest.get("a") != Some(&2) || latest.get("b") != Some(&1) {
            let (key, value) = updates
                .recv_timeout(Duration::from_secs(10))
                .expect("an update");
            assert_ne!(key, "c", "discarded items are not delivered");
            b_seen += usize::from(key == "b");
            latest.insert(key, value);
        }
        assert_eq!(b_seen, 1);
        drop(stop_tx);
        thread.join().unwrap();
        assert!(updates.try_recv().is_err());
    }
}
