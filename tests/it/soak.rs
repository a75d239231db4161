//! Soak: 200 providers refreshing at ttl/2 and taking change requests, 500 consumers
//! long-polling with `index`, and a stream of change requests, against the real daemon
//! for a bounded time (`REGD_SOAK_SECONDS`, default 30; 600 for the long soak). Run it
//! with `cargo test --test it soak -- --ignored --nocapture`; CI runs it for 60 s.
//! It checks: no change request lost or duplicated, every consumer ends with every
//! final value, no register expires while its provider is alive, and resident memory
//! stays flat (under 5% growth after warm-up).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

const PROVIDERS: usize = 200;
const CONSUMERS: usize = 500;
const NAMES_PER_CONSUMER: usize = 4;
const TTL: Duration = Duration::from_secs(4);

fn name(provider: usize) -> String {
    format!("soak.sensor.{provider}")
}

fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn small_thread() -> thread::Builder {
    thread::Builder::new().stack_size(128 * 1024)
}

/// The change requests one provider received: in order (to find duplicates) and as a
/// set (membership checks stay cheap however long the soak runs).
#[derive(Default)]
struct Received {
    in_order: Vec<u64>,
    set: HashSet<u64>,
}

impl Received {
    fn add(&mut self, value: u64) {
        self.in_order.push(value);
        self.set.insert(value);
    }

    fn has(&self, value: u64) -> bool {
        self.set.contains(&value)
    }
}

struct Shared {
    stop_publishing: AtomicBool,
    stop_everything: AtomicBool,
    /// Per provider: change-request values received.
    received: Vec<Mutex<Received>>,
    /// Per provider: the last value it published.
    published: Vec<AtomicU64>,
    failures: Mutex<Vec<String>>,
    requests_sent: AtomicU64,
    http_requests: AtomicU64,
}

impl Shared {
    fn fail(&self, message: String) {
        let mut failures = self.failures.lock().unwrap();
        if failures.len() < 20 {
            failures.push(message);
        }
    }
}

#[test]
#[ignore = "the soak runs on request: cargo test --test it soak -- --ignored"]
fn soak_many_providers_consumers_and_change_requests() {
    let seconds: u64 = std::env::var("REGD_SOAK_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(30);
    let daemon = Daemon::start(&["--max-connections", "2000", "--max-polls", "2000"]);
    let address = daemon.address;
    let shared = Arc::new(Shared {
        stop_publishing: AtomicBool::new(false),
        stop_everything: AtomicBool::new(false),
        received: (0..PROVIDERS)
            .map(|_| Mutex::new(Received::default()))
            .collect(),
        published: (0..PROVIDERS).map(|_| AtomicU64::new(0)).collect(),
        failures: Mutex::new(Vec::new()),
        requests_sent: AtomicU64::new(0),
        http_requests: AtomicU64::new(0),
    });
    let mut threads = Vec::new();

    // Providers: publish (value changes every refresh) at ttl/2, until told to stop.
    for provider in 0..PROVIDERS {
        let publisher = shared.clone();
        threads.push(
            small_thread()
                .spawn(move || {
                    let shared = publisher;
                    let mut connection = Http::connect(address);
                    let mut value = 0u64;
                    while !shared.stop_publishing.load(Ordering::Relaxed) {
                        value += 1;
                        let body = format!(
                            r#"{{"registers":{{"{}":{{"value":{value},"ttl":"{}s"}}}}}}"#,
                            name(provider),
                            TTL.as_secs()
                        );
                        let reply = connection.request("PUT", "/provider", &body);
                        shared.http_requests.fetch_add(1, Ordering::Relaxed);
                        if reply.status != 204 {
                            shared.fail(format!("publish {provider}: {reply:?}"));
                        }
                        shared.published[provider].store(value, Ordering::Relaxed);
                        let next = Instant::now() + TTL / 2;
                        while Instant::now() < next
                            && !shared.stop_publishing.load(Ordering::Relaxed)
                        {
                            thread::sleep(Duration::from_millis(50)); // sleep-ok: refresh pacing
                        }
                    }
                })
                .unwrap(),
        );
        // The same provider takes its change requests with a long poll.
        let shared = shared.clone();
        threads.push(
            small_thread()
                .spawn(move || {
                    let mut connection = Http::connect(address);
                    let target = format!("/provider?name={}&wait=1s", encode(&name(provider)));
                    while !shared.stop_everything.load(Ordering::Relaxed) {
                        let reply = connection.request("GET", &target, "");
                        shared.http_requests.fetch_add(1, Ordering::Relaxed);
                        if reply.status != 200 {
                            shared.fail(format!("provider poll {provider}: {reply:?}"));
                            continue;
                        }
                        if let Some(value) =
                            reply.json()["registers"][name(provider)]["value"].as_u64()
                        {
                            shared.received[provider].lock().unwrap().add(value);
                        }
                    }
                })
                .unwrap(),
        );
    }

    // Consumers: long polls with index over a few registers; remember the last values
    // and flag a register that vanishes while its provider is alive.
    let views: Vec<Arc<Mutex<BTreeMap<String, u64>>>> = (0..CONSUMERS)
        .map(|_| Arc::new(Mutex::new(BTreeMap::new())))
        .collect();
    let started = Instant::now();
    for (consumer, view) in views.iter().enumerate() {
        let shared = shared.clone();
        let view = view.clone();
        let watched: Vec<usize> = (0..NAMES_PER_CONSUMER)
            .map(|k| (consumer * 7 + k * 53) % PROVIDERS)
            .collect();
        threads.push(
            small_thread()
                .spawn(move || {
                    let mut connection = Http::connect(address);
                    let query: String = watched
                        .iter()
                        .map(|provider| format!("name={}&", encode(&name(*provider))))
                        .collect();
                    let mut index: Option<u64> = None;
                    while !shared.stop_everything.load(Ordering::Relaxed) {
                        let target = match index {
                            Some(index) => format!("/consumer?{query}wait=2s&index={index}"),
                            None => format!("/consumer?{query}"),
                        };
                        let reply = connection.request("GET", &target, "");
                        shared.http_requests.fetch_add(1, Ordering::Relaxed);
                        if reply.status != 200 {
                            shared.fail(format!("consumer {consumer}: {reply:?}"));
                            continue;
                        }
                        index = Some(reply.index());
                        let json = reply.json();
                        let mut view = view.lock().unwrap();
                        for provider in &watched {
                            let key = name(*provider);
                            match json["registers"][&key]["value"].as_u64() {
                                Some(value) => {
                                    view.insert(key, value);
                                }
                                // Registers appear shortly after start; after warm-up
                                // one must never vanish while publishing goes on.
                                None if started.elapsed() > TTL * 2
                                    && !shared.stop_publishing.load(Ordering::Relaxed) =>
                                {
                                    shared.fail(format!(
                                        "{key} vanished while its provider was alive"
                                    ));
                                }
                                None => {}
                            }
                        }
                    }
                })
                .unwrap(),
        );
    }

    // Change requests: unique values; a name gets its next request only after the
    // previous one arrived, so none may be replaced — every one must arrive exactly once.
    let requester = {
        let shared = shared.clone();
        small_thread()
            .spawn(move || {
                let mut connection = Http::connect(address);
                let mut next_value = 1_000_000u64;
                let mut outstanding: BTreeMap<usize, (u64, Instant)> = BTreeMap::new();
                let mut sent: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); PROVIDERS];
                let mut round = 0usize;
                while !shared.stop_publishing.load(Ordering::Relaxed) {
                    round += 1;
                    let provider = (round * 31) % PROVIDERS;
                    if let Some((value, since)) = outstanding.get(&provider) {
                        if !shared.received[provider].lock().unwrap().has(*value) {
                            if since.elapsed() > Duration::from_secs(30) {
                                shared.fail(format!("request {value} to {provider} never arrived"));
                                outstanding.remove(&provider);
                            }
                            if round % PROVIDERS == 0 {
                                thread::sleep(Duration::from_millis(5)); // sleep-ok: pacing
                            }
                            continue;
                        }
                    }
                    next_value += 1;
                    let body = format!(
                        r#"{{"registers":{{"{}":{{"value":{next_value}}}}}}}"#,
                        name(provider)
                    );
                    let reply = connection.request("PUT", "/consumer", &body);
                    shared.http_requests.fetch_add(1, Ordering::Relaxed);
                    if reply.status != 202 {
                        shared.fail(format!("request: {reply:?}"));
                        continue;
                    }
                    shared.requests_sent.fetch_add(1, Ordering::Relaxed);
                    sent[provider].insert(next_value);
                    outstanding.insert(provider, (next_value, Instant::now()));
                }
                sent
            })
            .unwrap()
    };

    // Warm up, then watch memory until the end.
    // Allocator arenas settle over the first part of a run; short runs (CI) give it half.
    let warm_up = Duration::from_secs((seconds / 2).min(seconds / 3 + 20).clamp(5, 200));
    let run_until = Instant::now() + Duration::from_secs(seconds);
    wait_until_instant(Instant::now() + warm_up);
    let rss_after_warm_up = resident_kib(daemon.pid());
    wait_until_instant(run_until);
    let rss_at_end = resident_kib(daemon.pid());

    shared.stop_publishing.store(true, Ordering::Relaxed);
    let sent = requester.join().unwrap();
    // Let the last requests arrive and consumers catch up with the final values.
    let finals: BTreeMap<String, u64> = (0..PROVIDERS)
        .map(|provider| {
            (
                name(provider),
                shared.published[provider].load(Ordering::Relaxed),
            )
        })
        .collect();
    wait_until("every consumer to hold every final value", || {
        views.iter().all(|view| {
            view.lock()
                .unwrap()
                .iter()
                .all(|(key, value)| finals.get(key) == Some(value))
        })
    });
    wait_until("every change request to arrive", || {
        (0..PROVIDERS).all(|provider| {
            let received = shared.received[provider].lock().unwrap();
            sent[provider].iter().all(|value| received.has(*value))
        })
    });
    shared.stop_everything.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }

    let failures = shared.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{failures:#?}");
    for (provider, sent) in sent.iter().enumerate() {
        let received = &shared.received[provider].lock().unwrap().in_order;
        let unique: BTreeSet<u64> = received.iter().copied().collect();
        assert_eq!(
            unique.len(),
            received.len(),
            "duplicates for provider {provider}"
        );
        assert_eq!(
            &unique, sent,
            "provider {provider} got exactly what was sent"
        );
    }
    for view in &views {
        assert_eq!(view.lock().unwrap().len(), NAMES_PER_CONSUMER);
    }
    let growth = rss_at_end as f64 / rss_after_warm_up.max(1) as f64;
    eprintln!(
        "soak: {seconds} s, {} HTTP requests, {} change requests, RSS {rss_after_warm_up} KiB after warm-up, {rss_at_end} KiB at end ({:+.1}%)",
        shared.http_requests.load(Ordering::Relaxed),
        shared.requests_sent.load(Ordering::Relaxed),
        (growth - 1.0) * 100.0
    );
    assert!(
        growth < 1.05,
        "resident memory grew {:.1}%",
        (growth - 1.0) * 100.0
    );
}

/// Passes time in the soak's main thread (the load runs on the others).
fn wait_until_instant(deadline: Instant) {
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100)); // sleep-ok: the soak's duration
    }
}
