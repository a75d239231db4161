//! The daemon's counters and their Prometheus text exposition, format 0.0.4
//! (docs/protocol.md B6). Invariant: the output is valid exposition text whatever the register
//! names contain (label values are escaped) and every family is declared once.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::core::{Reading, Stats};
use crate::protocol;

type RequestKey = (&'static str, &'static str, u16);

/// Counters updated by the connection layer and the service.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<RequestKey, u64>>,
    connections_accepted: AtomicU64,
    connections_refused: AtomicU64,
    connections_open: AtomicU64,
    accept_errors: AtomicU64,
    state: StateCounters,
}

/// The state saver's figures (shown only when a state directory is in use).
#[derive(Default)]
struct StateCounters {
    enabled: AtomicBool,
    saves: AtomicU64,
    failures: AtomicU64,
    last_save_unix_ms: AtomicU64,
    last_save_duration_us: AtomicU64,
    last_snapshot_us: AtomicU64,
    longest_snapshot_us: AtomicU64,
}

impl Metrics {
    /// Counts an answered request. Unknown methods are pooled so clients cannot grow
    /// the table.
    pub fn count_request(&self, resource: &'static str, method: &str, status: u16) {
        let method = match method {
            "GET" => "GET",
            "PUT" => "PUT",
            "DELETE" => "DELETE",
            "HEAD" => "HEAD",
            "POST" => "POST",
            _ => "OTHER",
        };
        *self
            .requests
            .lock()
            .entry((resource, method, status))
            .or_insert(0) += 1;
    }

    /// A connection was accepted and is being served.
    pub fn connection_opened(&self) {
        self.connections_accepted.fetch_add(1, Ordering::Relaxed);
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    /// A served connection ended.
    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A connection was turned away at the connection limit.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// `accept()` failed (for example out of file descriptors).
    pub fn accept_failed(&self) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A state directory is in use: the `regd_state_*` families are shown.
    pub fn state_enabled(&self) {
        self.state.enabled.store(true, Ordering::Relaxed);
    }

    /// A save was written: when (wall clock), how long it took in all, and how long it
    /// held the registry lock.
    pub fn state_saved(&self, at: SystemTime, took: Duration, lock_held: Duration) {
        let state = &self.state;
        let unix_ms = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let micros = |duration: Duration| u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        state.saves.fetch_add(1, Ordering::Relaxed);
        state.last_save_unix_ms.store(
            u64::try_from(unix_ms.as_millis()).unwrap_or(0),
            Ordering::Relaxed,
        );
        state
            .last_save_duration_us
            .store(micros(took), Ordering::Relaxed);
        state
            .last_snapshot_us
            .store(micros(lock_held), Ordering::Relaxed);
        state
            .longest_snapshot_us
            .fetch_max(micros(lock_held), Ordering::Relaxed);
    }

    /// A save failed (it is retried at the next interval).
    pub fn state_save_failed(&self) {
        self.state.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections being served now.
    pub fn open_connections(&self) -> u64 {
        self.connections_open.load(Ordering::Relaxed)
    }

    /// The exposition text.
    pub fn render(&self, stats: &Stats, held_polls: usize, registers: &Reading) -> String {
        let mut out = String::with_capacity(2048 + registers.registers.len() * 48);
        family(
            &mut out,
            "regd_build_info",
            "gauge",
            "Build information; the value is always 1.",
        );
        let _ = writeln!(
            out,
            "regd_build_info{{version=\"{}\"}} 1",
            escape(env!("CARGO_PKG_VERSION"))
        );
        family(
            &mut out,
            "regd_requests_total",
            "counter",
            "HTTP requests answered, by resource, method and status.",
        );
        for ((resource, method, status), count) in self.requests.lock().iter() {
            let _ = writeln!(
                out,
                "regd_requests_total{{resource=\"{resource}\",method=\"{method}\",status=\"{status}\"}} {count}"
            );
        }
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let simple: [(&str, &str, &str, u64); 11] = [
            (
                "regd_registers",
                "gauge",
                "Registers that exist now.",
                stats.registers as u64,
            ),
            (
                "regd_pending_requests",
                "gauge",
                "Change requests waiting for a provider.",
                stats.pending_requests as u64,
            ),
            (
                "regd_held_polls",
                "gauge",
                "Long polls being held now.",
                held_polls as u64,
            ),
            (
                "regd_revision",
                "gauge",
                "The current revision (X-Reg-Index).",
                stats.revision,
            ),
            (
                "regd_expirations_total",
                "counter",
                "Registers removed because their ttl ran out.",
                stats.expirations,
            ),
            (
                "regd_wakeups_total",
                "counter",
                "Long polls woken by a change, a change request or shutdown.",
                stats.wakeups,
            ),
            (
                "regd_connections_open",
                "gauge",
                "Connections being served now.",
                load(&self.connections_open),
            ),
            (
                "regd_connections_accepted_total",
                "counter",
                "Connections accepted and served.",
                load(&self.connections_accepted),
            ),
            (
                "regd_connections_refused_total",
                "counter",
                "Connections turned away at the connection limit.",
                load(&self.connections_refused),
            ),
            (
                "regd_accept_errors_total",
                "counter",
                "Failed accept() calls, such as running out of file descriptors.",
                load(&self.accept_errors),
            ),
            (
                "regd_waiters",
                "gauge",
                "Long polls registered with the registry (consumers and providers).",
                (stats.consumer_waiters + stats.provider_waiters) as u64,
            ),
        ];
        for (name, kind, help, value) in simple {
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        if self.state.enabled.load(Ordering::Relaxed) {
            self.render_state(&mut out);
        }
        family(
            &mut out,
            "regd_register_value",
            "gauge",
            "Numeric and boolean register values (true is 1, false is 0), by register name.",
        );
        for view in &registers.registers {
            if let Some(value) = protocol::json::numeric_value(&view.value) {
                let _ = writeln!(
                    out,
                    "regd_register_value{{name=\"{}\"}} {}",
                    escape(&view.name),
                    sample(value)
                );
            }
        }
        out
    }
}

impl Metrics {
    fn render_state(&self, out: &mut String) {
        let state = &self.state;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let seconds = |micros: u64| micros as f64 / 1e6;
        let families: [(&str, &str, &str, String); 6] = [
            (
                "regd_state_saves_total",
                "counter",
                "State saves written to the state directory.",
                load(&state.saves).to_string(),
            ),
            (
                "regd_state_save_failures_total",
                "counter",
                "State saves that failed (retried at the next interval).",
                load(&state.failures).to_string(),
            ),
            (
                "regd_state_last_save_timestamp_seconds",
                "gauge",
                "Wall-clock time of the last state save, in Unix seconds (0 before the first).",
                sample(load(&state.last_save_unix_ms) as f64 / 1e3),
            ),
            (
                "regd_state_last_save_duration_seconds",
                "gauge",
                "Time the last state save took: copying, encoding, writing and syncing.",
                sample(seconds(load(&state.last_save_duration_us))),
            ),
            (
                "regd_state_last_snapshot_seconds",
                "gauge",
                "Time the last state save held the registry lock to copy the state.",
                sample(seconds(load(&state.last_snapshot_us))),
            ),
            (
                "regd_state_longest_snapshot_seconds",
                "gauge",
                "Longest time a state save held the registry lock to copy the state, since start.",
                sample(seconds(load(&state.longest_snapshot_us))),
            ),
        ];
        for (name, kind, help, value) in families {
            family(out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value: backslash, double quote and line feed are escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            _ => out.push(ch),
        }
    }
    out
}

fn sample(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd é"), "a\\\"b\\\\c\\nd é");
    }

    #[test]
    fn samples_use_prometheus_spelling() {
        assert_eq!(sample(1.0), "1");
        assert_eq!(sample(-2.5), "-2.5");
        assert_eq!(sample(f64::INFINITY), "+Inf");
        assert_eq!(sample(1e300), format!("{}", 1e300));
    }
}
