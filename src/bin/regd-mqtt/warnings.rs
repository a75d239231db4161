//! Rate-limited warnings for faults that can repeat many times a second (a broker
//! refusing the bridge, a flood of oversized or malformed messages): the first of each
//! kind is logged at once, later ones at most once per interval with a count of those
//! left out. Invariant: a fault is never silent — every interval with occurrences logs
//! at least one line — and never floods the journal.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How often one kind of warning may be logged.
pub const INTERVAL: Duration = Duration::from_secs(10);

struct Kind {
    logged_at: Instant,
    suppressed: u64,
}

/// Shared by the bridge's threads; each call names its kind.
#[derive(Default)]
pub struct Warnings {
    kinds: Mutex<HashMap<&'static str, Kind>>,
}

impl Warnings {
    /// Logs `message` as a warning unless a warning of `kind` was logged less than
    /// [`INTERVAL`] ago; then it is counted and mentioned with the next one.
    pub fn warn(&self, kind: &'static str, message: impl FnOnce() -> String) {
        if let Some(suppressed) = self.admit(kind, Instant::now()) {
            let message = message();
            if suppressed > 0 {
                log::warn!(
                    "{message} ({suppressed} more like it in the last {}s)",
                    INTERVAL.as_secs()
                );
            } else {
                log::warn!("{message}");
            }
        }
    }

    /// Whether to log now, and how many were left out since the last line.
    fn admit(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut kinds = self.kinds.lock();
        match kinds.get_mut(kind) {
            Some(entry) if now.duration_since(entry.logged_at) < INTERVAL => {
                entry.suppressed += 1;
                None
            }
            Some(entry) => {
                entry.logged_at = now;
                Some(std::mem::take(&mut entry.suppressed))
            }
            None => {
                kinds.insert(
                    kind,
                    Kind {
                        logged_at: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_kind_with_the_count() {
        let warnings = Warnings::default();
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let cases = [
            ("a", 0, Some(0)),
            ("a", 1, None),
            ("a", 2, None),
            ("b", 2, Some(0)),
            ("a", 10, Some(2)),
            ("a", 11, None),
            ("a", 25, Some(1)),
            ("a", 36, Some(0)),
        ];
        for (kind, second, expected) in cases {
            assert_eq!(
                warnings.admit(kind, at(second)),
                expected,
                "{kind} at {second}s"
            );
        }
    }
}
