//! Save and restore with fake clocks (monotonic and wall): what a restart keeps, time
//! across the restart (downtime, clock behind, clock ahead), and the revision rule.

use super::*;
use crate::core::{Publish, Selection};

const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);

/// A fixed wall-clock time of the save (2026-11-28), so tests never read the real clock.
fn saved_at() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000)
}

fn publish(registry: &mut Registry<u32>, now: Instant, name: &str, value: &str, ttl: Duration) {
    registry
        .publish(
            now,
            vec![(
                Name::from(name),
                Publish {
                    value: Value::new(value),
                    metadata: Some(Value::new(r#"{"unit":"°C"}"#)),
                    ttl,
                },
            )],
        )
        .unwrap();
}

fn names(list: &[&str]) -> Selection {
    Selection::from_names(list)
}

/// A registry with a few registers, a pending request and a deletion, and its save.
fn saved_registry(now: Instant) -> (Registry<u32>, SavedState) {
    let mut registry: Registry<u32> = Registry::new(Limits::default(), 1000);
    publish(&mut registry, now, "short", "1", HOUR);
    publish(
        &mut registry,
        now,
        "long",
        "{\"a\":[1,2.50,\"x\"]}",
        24 * HOUR,
    );
    publish(&mut registry, now, "gone", "0", HOUR);
    registry.delete(now, &[Name::from("gone")]);
    registry
        .request(vec![(Name::from("lamp"), Value::new("true"))])
        .unwrap();
    let saved = registry.export(now, saved_at());
    (registry, saved)
}

fn restore(
    saved: Option<SavedState>,
    last_run: Option<LastRun>,
    now: Instant,
    wall_now: SystemTime,
) -> (Registry<u32>, Restored) {
    Registry::restore(Limits::default(), saved, last_run, 77, now, wall_now)
}

/// Restores `saved` after a clean stop, at `now` and the wall-clock time `wall_now`.
fn restart_clean(
    saved: &SavedState,
    now: Instant,
    wall_now: SystemTime,
) -> (Registry<u32>, Restored) {
    restore(Some(saved.clone()), stopped(saved), now, wall_now)
}

/// The lifetime left of every register, by name.
fn lifetimes(registry: &mut Registry<u32>, now: Instant) -> Vec<Duration> {
    let reading = registry.read(now, &Selection::All);
    reading
        .registers
        .iter()
        .map(|view| view.expires_in)
        .collect()
}

fn stopped(saved: &SavedState) -> Option<LastRun> {
    Some(LastRun::Stopped {
        revision: saved.revision,
    })
}

#[test]
fn a_clean_restart_keeps_everything_exactly() {
    let now = Instant::now();
    let (mut before, saved) = saved_registry(now);
    let later = now + 5 * SECOND;
    let (mut after, restored) = restart_clean(&saved, later, saved_at());
    assert!(restored.clean);
    assert_eq!(restored.registers, 2);
    assert_eq!(restored.requests, 1);
    assert_eq!(restored.downtime, Duration::ZERO);
    assert_eq!(after.revision(), before.revision(), "no revision goes by");
    let (old, new) = (
        before.read(now, &Selection::All),
        after.read(later, &Selection::All),
    );
    assert_eq!(
        old.registers, new.registers,
        "values byte for byte, ttl, time left"
    );
    assert_eq!(after.take_requests(&Selection::All), saved.requests);
    // Every index from before the restart is judged as before it.
    for index in [999, 1000, 1001, 1002, 1003, 1004, saved.revision] {
        for selection in [Selection::All, names(&["short"]), names(&["gone"])] {
            assert_eq!(
                after.changed_since(later, &selection, index),
                before.changed_since(now, &selection, index),
                "index {index} on {selection:?}"
            );
        }
    }
    assert!(!after.changed_since(later, &names(&["short", "long"]), saved.revision));
}

#[test]
fn an_identical_refresh_after_a_restore_wakes_nobody() {
    let now = Instant::now();
    let (_, saved) = saved_registry(now);
    let (mut after, _) = restart_clean(&saved, now, saved_at());
    after.wait_for_change(&names(&["short"]), 1);
    after.wait_for_change(&Selection::All, 2);
    publish(&mut after, now, "short", "1", HOUR);
    assert!(after.take_wakeups().is_empty());
    assert_eq!(after.revision(), saved.revision);
    publish(&mut after, now, "short", "2", HOUR);
    assert_eq!(after.revision(), saved.revision + 1);
    let mut woken = after.take_wakeups();
    woken.sort_unstable();
    assert_eq!(woken, [1, 2]);
}

#[test]
fn downtime_comes_off_every_lifetime() {
    let now = Instant::now();
    let (_, saved) = saved_registry(now);
    let (mut after, restored) = restart_clean(&saved, now, saved_at() + 90 * SECOND);
    assert_eq!(restored.downtime, 90 * SECOND);
    assert!(!restored.clock_behind);
    assert_eq!(
        lifetimes(&mut after, now),
        [24 * HOUR - 90 * SECOND, HOUR - 90 * SECOND]
    );
}

#[test]
fn a_clock_behind_the_save_counts_as_no_downtime() {
    let now = Instant::now();
    let (_, saved) = saved_registry(now);
    // A Pi without a real-time clock boots hours in the past until NTP syncs.
    let (mut after, restored) = restart_clean(&saved, now, saved_at() - 3 * HOUR);
    assert_eq!(restored.downtime, Duration::ZERO);
    assert!(restored.clock_behind);
    assert_eq!(restored.registers, 2);
    assert_eq!(
        lifetimes(&mut after, now),
        [24 * HOUR, HOUR],
        "never longer than the saved lifetime"
    );
}

#[test]
fn a_clock_ahead_expires_what_ran_out_while_down_and_no_one_sees_it() {
    let now = Instant::now();
    let (_, saved) = saved_registry(now);
    let (mut after, restored) = restart_clean(&saved, now, saved_at() + 3 * HOUR);
    assert_eq!(restored.downtime, 3 * HOUR);
    assert_eq!((restored.registers, restored.expired_while_down), (1, 1));
    let snapshot = after.read(now, &Selection::All);
    assert_eq!(snapshot.registers.len(), 1);
    assert_eq!(&*snapshot.registers[0].name, "long");
    assert_eq!(snapshot.registers[0].expires_in, 21 * HOUR);
    assert_eq!(after.stats().expirations, 1);
    // The expiry is a change: an old index on it answers at once, others still wait.
    assert!(after.changed_since(now, &names(&["short"]), saved.revision));
    assert!(after.changed_since(now, &Selection::All, saved.revision));
    assert!(!after.changed_since(now, &names(&["long"]), saved.revision));
    assert!(after.take_expired().is_empty(), "not logged one by one");
}

#[test]
fn a_restored_lifetime_never_exceeds_the_ttl() {
    let now = Instant::now();
    let (_, mut saved) = saved_registry(now);
    for view in &mut saved.registers {
        view.expires_in = 1000 * HOUR;
    }
    let (mut after, _) = restart_clean(&saved, now, saved_at());
    for view in after.read(now, &Selection::All).registers {
        assert_eq!(view.expires_in, view.ttl, "{}", view.name);
    }
}

#[test]
fn after_a_crash_the_revision_goes_on_above_the_reservation() {
    let now = Instant::now();
    let (_, saved) = saved_registry(now);
    let reserved = saved.revision + REVISION_RESERVATION;
    let (mut after, restored) = restore(
        Some(saved.clone()),
        Some(LastRun::Running { reserved }),
        now,
        saved_at(),
    );
    assert!(!restored.clean);
    assert_eq!(restored.registers, 2, "the last save is restored");
    assert_eq!(after.revision(), reserved);
    // Changes after the save are lost: any older index answers at once, even one that
    // nothing changed after.
    for index in [saved.revision - 1, saved.revision, saved.revision + 3] {
        assert!(
            after.changed_since(now, &names(&["long"]), index),
            "{index}"
        );
    }
    assert!(!after.changed_since(now, &names(&["long"]), reserved));
    publish(&mut after, now, "long", "3", HOUR);
    assert_eq!(after.revision(), reserved + 1);
}

#[test]
fn a_clean_file_is_not_believed_after_a_run_that_restored_it_crashed() {
    let now = Instant::now();
    let (_, saved) = saved_registry(now);
    // Run 2 restores the clean save, records its reservation, changes things, and dies
    // before its first save: the files are the clean save and run 2's record.
    let (mut run2, _) = restart_clean(&saved, now, saved_at());
    let record = LastRun::Running {
        reserved: run2.reservation(),
    };
    publish(&mut run2, now, "short", "changed", HOUR);
    let seen_by_a_client = run2.revision();
    let (mut run3, restored) = restore(Some(saved.clone()), Some(record), now, saved_at());
    assert!(!restored.clean);
    assert!(run3.revision() > seen_by_a_client, "never goes back");
    assert!(run3.changed_since(now, &names(&["short"]), seen_by_a_client));
    assert!(run3.changed_since(now, &names(&["long"]), saved.revision));
    publish(&mut run3, now, "short", "other", HOUR);
    assert!(run3.revision() > seen_by_a_client, "no number reused");
}

#[test]
fn lost_state_goes_on_above_the_last_run() {
    let now = Instant::now();
    let (fresh, restored) = restore(None, None, now, saved_at());
    assert_eq!(fresh.revision(), 77, "no history: the fresh revision");
    assert_eq!(restored, Restored::default());
    let (mut after, _) = restore(
        None,
        Some(LastRun::Stopped { revision: 500 }),
        now,
        saved_at(),
    );
    assert_eq!(after.revision(), 501);
    assert!(
        after.changed_since(now, &names(&["x"]), 500),
        "everything is gone"
    );
    let (after, _) = restore(
        None,
        Some(LastRun::Running { reserved: 9000 }),
        now,
        saved_at(),
    );
    assert_eq!(after.revision(), 9000);
}

#[test]
fn files_that_do_not_belong_together_go_on_above_both() {
    let now = Instant::now();
    let (_, saved) = saved_registry(now);
    let (after, restored) = restore(
        Some(saved.clone()),
        Some(LastRun::Stopped {
            revision: saved.revision + 10,
        }),
        now,
        saved_at(),
    );
    assert!(!restored.clean);
    assert_eq!(after.revision(), saved.revision + 11);
    let (after, restored) = restore(Some(saved.clone()), None, now, saved_at());
    assert!(!restored.clean);
    assert_eq!(after.revision(), saved.revision + 2 * REVISION_RESERVATION);
}

#[test]
fn a_state_saved_after_the_recorded_stop_goes_on_above_a_reservation() {
    // The last recorded stop was at `revision`; the run after it could not write its run
    // file (so it recorded no reservation) but saved the state at a higher revision, then
    // crashed. It may have issued revisions above that save: an index it gave out must
    // not be judged by this run's different history.
    let now = Instant::now();
    let (mut crashed, saved) = saved_registry(now);
    let recorded = saved.revision - 3;
    publish(&mut crashed, now, "short", "2", HOUR);
    let seen = crashed.revision();
    assert!(seen > saved.revision);
    let (mut after, restored) = restore(
        Some(saved.clone()),
        Some(LastRun::Stopped { revision: recorded }),
        now,
        saved_at(),
    );
    assert!(!restored.clean);
    assert_eq!(after.revision(), saved.revision + 2 * REVISION_RESERVATION);
    assert!(
        after.changed_since(now, &names(&["short"]), seen),
        "\"short\" is 1 again, not the 2 the client saw: it must be told at once"
    );
}

#[test]
fn limits_hold_for_what_is_restored() {
    let now = Instant::now();
    let (_, mut saved) = saved_registry(now);
    saved
        .requests
        .push((Name::from("other"), Value::new("false")));
    let limits = Limits {
        max_registers: 1,
        max_pending_requests: 1,
        ..Limits::default()
    };
    let last_run = stopped(&saved);
    let (mut after, restored) =
        Registry::<u32>::restore(limits, Some(saved.clone()), last_run, 1, now, saved_at());
    assert_eq!((restored.registers, restored.over_register_limit), (1, 1));
    assert_eq!((restored.requests, restored.over_request_limit), (1, 1));
    // "long" sorts first and is kept; "short" is removed as a change.
    assert!(after.changed_since(now, &names(&["short"]), saved.revision));
    assert!(!after.changed_since(now, &names(&["long"]), saved.revision));
    assert_eq!(after.stats().registers, 1);
}

#[test]
fn a_lying_file_cannot_confuse_revisions() {
    let now = Instant::now();
    let (_, mut saved) = saved_registry(now);
    saved.registers[0].revision = saved.revision + 100;
    saved.trusted_from = saved.revision + 5;
    saved
        .deletions
        .push((saved.revision + 50, Name::from("ghost")));
    let (mut after, _) = restart_clean(&saved, now, saved_at());
    let snapshot = after.read(now, &Selection::All);
    assert!(
        snapshot
            .registers
            .iter()
            .all(|v| v.revision <= after.revision())
    );
    assert!(after.changed_since(now, &Selection::All, saved.revision - 1));
    assert!(!after.changed_since(now, &names(&["ghost"]), saved.revision));
}

#[test]
fn revisions_stay_below_2_to_the_53() {
    let now = Instant::now();
    let (_, saved) = saved_registry(now);
    let (mut after, restored) = restore(
        Some(saved.clone()),
        Some(LastRun::Running {
            reserved: MAX_REVISION - REVISION_RESERVATION,
        }),
        now,
        saved_at(),
    );
    assert!(restored.renumbered);
    assert_eq!(after.revision(), 77, "starts over at the fresh revision");
    assert_eq!(restored.registers, 2);
    // Every index a client holds is above the new numbering: it answers at once.
    assert!(after.changed_since(now, &names(&["long"]), saved.revision));
    let snapshot = after.read(now, &Selection::All);
    assert!(snapshot.registers.iter().all(|v| v.revision == 77));
}

#[test]
fn skipping_revisions_forgets_the_history_below() {
    let now = Instant::now();
    let (mut registry, saved) = saved_registry(now);
    registry.skip_revisions(REVISION_RESERVATION);
    assert_eq!(registry.revision(), saved.revision + REVISION_RESERVATION);
    assert!(registry.changed_since(now, &names(&["long"]), saved.revision));
    assert!(!registry.changed_since(now, &names(&["long"]), registry.revision()));
}

#[test]
fn a_reservation_is_renewed_once_half_of_it_is_used() {
    let now = Instant::now();
    let (registry, _) = saved_registry(now);
    let reserved = registry.reservation();
    assert_eq!(reserved, registry.revision() + REVISION_RESERVATION);
    assert!(!registry.needs_reservation(reserved));
    assert!(!registry.needs_reservation(registry.revision() + REVISION_RESERVATION / 2));
    assert!(registry.needs_reservation(registry.revision() + REVISION_RESERVATION / 2 - 1));
}

#[test]
fn edits_count_everything_a_save_writes_and_nothing_else() {
    type Step = fn(&mut Registry<u32>, Instant);
    let steps: [(&str, Step, bool); 10] = [
        ("create", |r, now| publish(r, now, "x", "1", SECOND), true),
        (
            "deadline-only refresh",
            |r, now| publish(r, now, "x", "1", SECOND),
            true,
        ),
        (
            "read",
            |r, now| {
                r.read(now, &Selection::All);
            },
            false,
        ),
        (
            "index check",
            |r, now| {
                r.changed_since(now, &Selection::All, 1);
            },
            false,
        ),
        (
            "request",
            |r, _| r.request(vec![(Name::from("y"), Value::new("1"))]).unwrap(),
            true,
        ),
        (
            "take nothing",
            |r, _| {
                r.take_requests(&names(&["z"]));
            },
            false,
        ),
        (
            "take",
            |r, _| {
                r.take_requests(&Selection::All);
            },
            true,
        ),
        (
            "delete nothing",
            |r, now| {
                r.delete(now, &[Name::from("z")]);
            },
            false,
        ),
        ("expire nothing", |r, now| r.expire(now), false),
        ("expire", |r, now| r.expire(now + SECOND), true),
    ];
    let now = Instant::now();
    let mut registry: Registry<u32> = Registry::new(Limits::default(), 1);
    for (what, step, news) in steps {
        let before = registry.edits();
        step(&mut registry, now);
        assert_eq!(registry.edits() != before, news, "{what}");
    }
}
