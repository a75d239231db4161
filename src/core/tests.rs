//! Unit tests of the core with a fake clock: every rule of docs/protocol.md that the core
//! owns, driven in microseconds without sleeping.

use super::*;

const SECOND: Duration = Duration::from_secs(1);

struct Fixture {
    registry: Registry<u32>,
    start: Instant,
    now: Instant,
}

impl Fixture {
    fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    fn with_limits(limits: Limits) -> Self {
        let start = Instant::now();
        Fixture {
            registry: Registry::new(limits, 1),
            start,
            now: start,
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn publish(&mut self, name: &str, value: &str, metadata: Option<&str>, ttl: Duration) {
        self.registry
            .publish(
                self.now,
                vec![(
                    Name::from(name),
                    Publish {
                        value: Value::new(value),
                        metadata: metadata.map(Value::new),
                        ttl,
                    },
                )],
            )
            .expect("publish within limits");
    }

    fn read(&mut self, names: &[&str]) -> Vec<(String, String)> {
        self.registry
            .read(self.now, &Selection::from_names(names))
            .registers
            .into_iter()
            .map(|view| (view.name.to_string(), view.value.as_str().to_string()))
            .collect()
    }

    fn value_of(&mut self, name: &str) -> Option<String> {
        self.read(&[name])
            .into_iter()
            .next()
            .map(|(_, value)| value)
    }

    #[track_caller]
    fn expect_woken(&mut self, expected: &[u32]) {
        let mut woken = self.registry.take_wakeups();
        woken.sort_unstable();
        assert_eq!(woken, expected);
    }
}

fn names(list: &[&str]) -> Selection {
    Selection::from_names(list)
}

#[test]
fn selection_keeps_order_drops_duplicates_and_empty_means_all() {
    assert_eq!(
        Selection::from_names(["b", "a", "b"]),
        Selection::Names(vec![Name::from("b"), Name::from("a")])
    );
    assert_eq!(Selection::from_names(Vec::<&str>::new()), Selection::All);
}

#[test]
fn publish_creates_and_reads_in_order() {
    let mut f = Fixture::new();
    f.publish("b", "2", None, SECOND);
    f.publish("a", "1", Some(r#"{"unit":"C"}"#), SECOND);
    assert_eq!(
        f.read(&[]),
        vec![("a".into(), "1".into()), ("b".into(), "2".into())]
    );
    assert_eq!(
        f.read(&["b", "missing", "a"]),
        vec![("b".into(), "2".into()), ("a".into(), "1".into())]
    );
    let snapshot = f.registry.read(f.now, &names(&["a"]));
    assert_eq!(
        snapshot.registers[0].metadata.as_ref().map(Value::as_str),
        Some(r#"{"unit":"C"}"#)
    );
}

#[test]
fn register_lives_exactly_its_ttl_after_the_last_publish() {
    let mut f = Fixture::new();
    f.publish("x", "1", None, 10 * SECOND);
    f.advance(10 * SECOND - Duration::from_nanos(1));
    assert_eq!(
        f.value_of("x").as_deref(),
        Some("1"),
        "never before the ttl"
    );
    f.advance(Duration::from_nanos(1));
    assert_eq!(f.value_of("x"), None, "gone once the ttl has elapsed");
    assert_eq!(f.registry.take_expired(), vec![Name::from("x")]);
    assert_eq!(f.registry.stats().expirations, 1);
}

#[test]
fn refresh_slides_the_deadline() {
    let mut f = Fixture::new();
    f.publish("x", "1", None, 2 * SECOND);
    for _ in 0..10 {
        f.advance(SECOND);
        f.publish("x", "1", None, 2 * SECOND);
    }
    f.advance(SECOND + SECOND / 2);
    assert_eq!(f.value_of("x").as_deref(), Some("1"));
    f.advance(SECOND);
    assert_eq!(f.value_of("x"), None);
}

#[test]
fn shorter_ttl_on_refresh_moves_the_deadline_earlier() {
    let mut f = Fixture::new();
    f.publish("x", "1", None, 60 * SECOND);
    f.publish("x", "1", None, SECOND);
    assert_eq!(f.registry.next_deadline(), Some(f.now + SECOND));
    f.advance(SECOND);
    assert_eq!(f.value_of("x"), None);
}

#[test]
fn reads_hide_expired_registers_even_without_the_reaper() {
    let mut f = Fixture::new();
    f.publish("x", "1", None, SECOND);
    f.advance(5 * SECOND);
    // snapshot itself expires; nothing else ran in between
    assert!(f.read(&[]).is_empty());
}

#[test]
fn consumers_wake_only_for_their_registers_or_everything() {
    let mut f = Fixture::new();
    f.registry.wait_for_change(&names(&["x"]), 1);
    f.registry.wait_for_change(&names(&["y"]), 2);
    f.registry.wait_for_change(&Selection::All, 3);
    f.registry.wait_for_change(&names(&["y", "x"]), 4);
    f.publish("x", "1", None, SECOND);
    f.expect_woken(&[1, 3, 4]);
    assert_eq!(f.registry.stats().consumer_waiters, 1);
    f.publish("y", "1", None, SECOND);
    f.expect_woken(&[2]);
    assert_eq!(f.registry.stats().consumer_waiters, 0);
    assert_eq!(f.registry.stats().wakeups, 4);
}

#[test]
fn refresh_with_same_value_and_metadata_wakes_no_one() {
    let mut f = Fixture::new();
    f.publish("x", "1", Some(r#"{"a":1}"#), SECOND);
    let revision = f.registry.revision();
    f.registry.wait_for_change(&names(&["x"]), 1);
    f.publish("x", "1", Some(r#"{"a":1}"#), 5 * SECOND);
    f.expect_woken(&[]);
    assert_eq!(f.registry.revision(), revision);
}

#[test]
fn every_kind_of_change_wakes_and_advances_the_revision() {
    type Step = fn(&mut Fixture);
    let cases: [(&str, Step); 5] = [
        ("create", |f| f.publish("new", "1", None, SECOND)),
        ("value", |f| f.publish("x", "2", None, SECOND)),
        ("metadata", |f| {
            f.publish("x", "1", Some("{\"m\":1}"), SECOND)
        }),
        ("expiry", |f| {
            f.advance(SECOND);
            f.registry.expire(f.now)
        }),
        ("delete", |f| {
            f.registry.delete(f.now, &[Name::from("x")]);
        }),
    ];
    for (what, step) in cases {
        let mut f = Fixture::new();
        f.publish("x", "1", None, SECOND);
        let before = f.registry.revision();
        f.registry.wait_for_change(&names(&["x", "new"]), 7);
        step(&mut f);
        assert_eq!(f.registry.take_wakeups(), vec![7], "{what} wakes");
        assert_eq!(f.registry.revision(), before + 1, "{what} advances");
        assert!(
            f.registry
                .changed_since(f.now, &names(&["x", "new"]), before),
            "{what} is seen by index"
        );
        assert!(
            !f.registry.changed_since(f.now, &names(&["other"]), before),
            "{what} is not a change to other registers"
        );
    }
}

#[test]
fn cancelled_waiters_are_not_woken() {
    let mut f = Fixture::new();
    let id = f.registry.wait_for_change(&names(&["x", "y"]), 1);
    assert!(f.registry.cancel_wait(id));
    assert!(!f.registry.cancel_wait(id), "a second cancel finds nothing");
    f.publish("x", "1", None, SECOND);
    f.expect_woken(&[]);
}

#[test]
fn cancelling_a_provider_poll_leaves_consumer_polls_alone() {
    let mut f = Fixture::new();
    let consumer = f.registry.wait_for_change(&names(&["x"]), 1);
    let provider = f.registry.wait_for_request(&names(&["x"]), 2);
    assert_ne!(consumer, provider);
    assert!(f.registry.cancel_wait(provider));
    f.publish("x", "1", None, SECOND);
    f.expect_woken(&[1]);
}

#[test]
fn woken_waiters_cannot_be_cancelled_again() {
    let mut f = Fixture::new();
    let id = f.registry.wait_for_change(&names(&["x", "y"]), 1);
    f.publish("y", "1", None, SECOND);
    f.expect_woken(&[1]);
    assert!(!f.registry.cancel_wait(id));
    f.publish("x", "1", None, SECOND);
    f.expect_woken(&[]);
}

#[test]
fn index_semantics() {
    let mut f = Fixture::new();
    f.publish("a", "1", None, 10 * SECOND);
    f.publish("b", "1", None, 10 * SECOND);
    let seen = f.registry.revision();
    assert!(!f.registry.changed_since(f.now, &Selection::All, seen));
    assert!(!f.registry.changed_since(f.now, &names(&["a"]), seen));
    assert!(f.registry.changed_since(f.now, &names(&["b"]), seen - 1));
    assert!(!f.registry.changed_since(f.now, &names(&["a"]), seen - 1));
    assert!(
        f.registry.changed_since(f.now, &Selection::All, seen + 1),
        "an index from the future (a restart) answers at once"
    );
    assert!(
        f.registry.changed_since(f.now, &Selection::All, 0),
        "an index from before this run answers at once"
    );
    f.publish("b", "2", None, 10 * SECOND);
    assert!(f.registry.changed_since(f.now, &Selection::All, seen));
    assert!(f.registry.changed_since(f.now, &names(&["b"]), seen));
    assert!(!f.registry.changed_since(f.now, &names(&["a"]), seen));
    assert!(!f.registry.changed_since(f.now, &names(&["never"]), seen));
}

#[test]
fn index_sees_a_deletion_followed_by_recreation() {
    let mut f = Fixture::new();
    f.publish("a", "1", None, SECOND);
    let seen = f.registry.revision();
    f.advance(SECOND);
    f.registry.expire(f.now);
    assert!(f.registry.changed_since(f.now, &names(&["a"]), seen));
    f.publish("a", "1", None, SECOND);
    assert!(f.registry.changed_since(f.now, &names(&["a"]), seen));
}

#[test]
fn forgotten_deletions_make_index_queries_answer_early() {
    let mut f = Fixture::with_limits(Limits {
        deletion_memory: 2,
        ..Limits::default()
    });
    for name in ["a", "b", "c", "d"] {
        f.publish(name, "1", None, SECOND);
    }
    let seen = f.registry.revision();
    f.registry.delete(f.now, &[Name::from("a")]);
    let after_a = f.registry.revision();
    f.registry.delete(f.now, &[Name::from("b")]);
    f.registry.delete(f.now, &[Name::from("c")]);
    // The deletion of "a" is forgotten: a query from before it cannot be judged.
    assert!(f.registry.changed_since(f.now, &names(&["zzz"]), seen));
    // From the deletion of "a" on, everything is remembered.
    assert!(!f.registry.changed_since(f.now, &names(&["zzz"]), after_a));
    assert!(f.registry.changed_since(f.now, &names(&["c"]), after_a));
}

#[test]
fn expiry_wakes_consumers_and_is_reported_once() {
    let mut f = Fixture::new();
    f.publish("x", "1", None, SECOND);
    f.publish("y", "1", None, 3 * SECOND);
    f.registry.wait_for_change(&names(&["x"]), 1);
    f.registry.wait_for_change(&names(&["y"]), 2);
    assert_eq!(f.registry.next_deadline(), Some(f.start + SECOND));
    f.advance(SECOND);
    f.registry.expire(f.now);
    f.expect_woken(&[1]);
    assert_eq!(f.registry.take_expired(), vec![Name::from("x")]);
    assert_eq!(f.registry.next_deadline(), Some(f.start + 3 * SECOND));
    f.registry.expire(f.now);
    assert!(f.registry.take_expired().is_empty());
}

#[test]
fn delete_removes_now_and_counts_only_existing() {
    let mut f = Fixture::new();
    f.publish("x", "1", None, SECOND);
    assert_eq!(
        f.registry
            .delete(f.now, &[Name::from("x"), Name::from("nope")]),
        1
    );
    assert_eq!(f.value_of("x"), None);
    assert_eq!(f.registry.next_deadline(), None);
    assert_eq!(
        f.registry.stats().expirations,
        0,
        "a delete is not an expiry"
    );
}

#[test]
fn register_limit_refuses_the_whole_publish() {
    let mut f = Fixture::with_limits(Limits {
        max_registers: 2,
        ..Limits::default()
    });
    f.publish("a", "1", None, SECOND);
    let entries = |list: &[&str]| {
        list.iter()
            .map(|name| {
                (
                    Name::from(*name),
                    Publish {
                        value: Value::new("2"),
                        metadata: None,
                        ttl: SECOND,
                    },
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        f.registry.publish(f.now, entries(&["a", "b", "c"])),
        Err(Error::TooManyRegisters { limit: 2 })
    );
    assert_eq!(f.value_of("a").as_deref(), Some("1"), "nothing applied");
    assert_eq!(f.value_of("b"), None);
    // Updating existing ones and adding up to the limit is fine.
    f.registry
        .publish(f.now, entries(&["a", "b", "b"]))
        .expect("within the limit");
    assert_eq!(f.value_of("a").as_deref(), Some("2"));
    // Expired registers free their places.
    f.advance(SECOND);
    f.registry
        .publish(f.now, entries(&["c", "d"]))
        .expect("expired registers no longer count");
}

#[test]
fn change_requests_latest_wins_and_are_taken_once() {
    let mut f = Fixture::new();
    f.registry
        .request(vec![
            (Name::from("x"), Value::new("1")),
            (Name::from("y"), Value::new("true")),
        ])
        .unwrap();
    f.registry
        .request(vec![(Name::from("x"), Value::new("2"))])
        .unwrap();
    assert!(f.registry.has_requests(&names(&["x"])));
    assert!(!f.registry.has_requests(&names(&["z"])));
    let taken = f.registry.take_requests(&names(&["x", "z"]));
    assert_eq!(taken, vec![(Name::from("x"), Value::new("2"))]);
    assert!(f.registry.take_requests(&names(&["x"])).is_empty());
    let rest = f.registry.take_requests(&Selection::All);
    assert_eq!(rest, vec![(Name::from("y"), Value::new("true"))]);
    assert_eq!(f.registry.stats().pending_requests, 0);
}

#[test]
fn change_requests_need_no_register_and_survive_expiry() {
    let mut f = Fixture::new();
    f.publish("x", "1", None, SECOND);
    f.registry
        .request(vec![(Name::from("x"), Value::new("5"))])
        .unwrap();
    f.advance(10 * SECOND);
    f.registry.expire(f.now);
    assert_eq!(
        f.registry.take_requests(&names(&["x"])),
        vec![(Name::from("x"), Value::new("5"))]
    );
}

#[test]
fn change_requests_wake_only_providers_of_that_name() {
    let mut f = Fixture::new();
    f.registry.wait_for_request(&names(&["x"]), 1);
    f.registry.wait_for_request(&names(&["y"]), 2);
    f.registry.wait_for_request(&Selection::All, 3);
    f.registry.wait_for_change(&names(&["x"]), 4);
    f.registry
        .request(vec![(Name::from("x"), Value::new("1"))])
        .unwrap();
    f.expect_woken(&[1, 3]);
}

#[test]
fn restored_requests_never_overwrite_newer_ones() {
    let mut f = Fixture::new();
    f.registry
        .request(vec![
            (Name::from("x"), Value::new("1")),
            (Name::from("y"), Value::new("1")),
        ])
        .unwrap();
    let taken = f.registry.take_requests(&Selection::All);
    f.registry
        .request(vec![(Name::from("x"), Value::new("2"))])
        .unwrap();
    f.registry.wait_for_request(&names(&["y"]), 9);
    f.registry.restore_requests(taken);
    f.expect_woken(&[9]);
    assert_eq!(
        f.registry.take_requests(&Selection::All),
        vec![
            (Name::from("x"), Value::new("2")),
            (Name::from("y"), Value::new("1"))
        ]
    );
}

#[test]
fn pending_limit_refuses_the_whole_request_but_replacing_is_free() {
    let mut f = Fixture::with_limits(Limits {
        max_pending_requests: 1,
        ..Limits::default()
    });
    f.registry
        .request(vec![(Name::from("x"), Value::new("1"))])
        .unwrap();
    assert_eq!(
        f.registry.request(vec![
            (Name::from("x"), Value::new("3")),
            (Name::from("y"), Value::new("1"))
        ]),
        Err(Error::TooManyPendingRequests { limit: 1 })
    );
    f.registry
        .request(vec![(Name::from("x"), Value::new("2"))])
        .unwrap();
    assert_eq!(
        f.registry.take_requests(&Selection::All),
        vec![(Name::from("x"), Value::new("2"))]
    );
}

#[test]
fn shutdown_wakes_every_waiter() {
    let mut f = Fixture::new();
    f.registry.wait_for_change(&names(&["x"]), 1);
    f.registry.wait_for_change(&Selection::All, 2);
    f.registry.wait_for_request(&names(&["x"]), 3);
    f.registry.shut_down();
    assert!(f.registry.is_shut_down());
    f.expect_woken(&[1, 2, 3]);
    let stats = f.registry.stats();
    assert_eq!((stats.consumer_waiters, stats.provider_waiters), (0, 0));
}

#[test]
fn details_report_ttl_time_left_and_revision() {
    let mut f = Fixture::new();
    f.publish("x", "1", None, 10 * SECOND);
    let created = f.registry.revision();
    f.advance(4 * SECOND);
    f.publish("y", "1", None, SECOND);
    let view = f.registry.read(f.now, &names(&["x"])).registers[0].clone();
    assert_eq!(view.ttl, 10 * SECOND);
    assert_eq!(view.expires_in, 6 * SECOND);
    assert_eq!(view.revision, created);
}

#[test]
fn absurd_ttls_do_not_overflow() {
    let mut f = Fixture::new();
    f.publish("x", "1", None, Duration::MAX);
    f.advance(1000 * 24 * 3600 * SECOND);
    assert_eq!(f.value_of("x").as_deref(), Some("1"));
}

#[test]
fn revision_starts_where_asked_and_never_goes_back() {
    let mut registry: Registry<u32> = Registry::new(Limits::default(), 1_000);
    let now = Instant::now();
    assert_eq!(registry.revision(), 1_000);
    let mut last = registry.revision();
    for round in 0..50u32 {
        let name = Name::from(format!("r{}", round % 7));
        registry
            .publish(
                now,
                vec![(
                    name.clone(),
                    Publish {
                        value: Value::new(round.to_string()),
                        metadata: None,
                        ttl: SECOND,
                    },
                )],
            )
            .unwrap();
        if round % 3 == 0 {
            registry.delete(now, &[name]);
        }
        assert!(registry.revision() > last);
        last = registry.revision();
    }
}
