//! The state directory with real files in a fresh temporary directory: restore after a
//! clean stop and after a crash, damaged and leftover files, failing saves.

use std::sync::atomic::{AtomicUsize, Ordering};

use std::sync::Arc;
use std::time::SystemTime;

use super::*;
use crate::core::Selection;
use crate::server::{AlwaysConnected, Clock, Request, Response, SystemClock};

/// A fresh directory under the system's temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "regd-state-unit-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }

    fn state_dir(&self) -> PathBuf {
        self.0.join("state")
    }

    fn config(&self) -> StateConfig {
        StateConfig {
            directory: Some(self.state_dir()),
            ..StateConfig::default()
        }
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.state_dir())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A clock that stands still at a wall-clock time of the test's choosing.
struct FakeClock {
    now: Instant,
    wall: SystemTime,
}

impl FakeClock {
    fn at(wall: SystemTime) -> Arc<FakeClock> {
        Arc::new(FakeClock {
            now: Instant::now(),
            wall,
        })
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.now
    }

    fn wall_now(&self) -> SystemTime {
        self.wall
    }
}

/// A service (revision starting at 1000) restored from the scratch directory.
fn open(scratch: &Scratch) -> (Service, Saver) {
    open_with_clock(scratch, Arc::new(SystemClock))
}

fn open_with_clock(scratch: &Scratch, clock: Arc<dyn Clock>) -> (Service, Saver) {
    let settings = ServiceConfig {
        first_revision: 1000,
        ..ServiceConfig::default()
    };
    let service = Service::with_clock(settings.clone(), clock);
    let config = scratch.config();
    let saver = Saver::open(&scratch.state_dir(), &config, &service, &settings);
    (service, saver)
}

fn call(service: &Service, method: &str, target: &str, body: &str) -> Response {
    service.handle(
        &Request::new(method, target).with_body(body.as_bytes().to_vec()),
        &AlwaysConnected,
    )
}

fn publish(service: &Service, body: &str) {
    let response = call(service, "PUT", "/provider", body);
    assert_eq!(response.status, 204, "{}", response.body_text());
}

fn read(service: &Service) -> (String, u64) {
    let response = call(service, "GET", "/consumer", "");
    let index = response.header("X-Reg-Index").unwrap().parse().unwrap();
    (response.body_text().to_string(), index)
}

fn changed_since(service: &Service, index: u64) -> bool {
    service.with_state(|state, now| state.changed_since(now, &Selection::All, index))
}

const BODY: &str = r#"{"registers":{"t":{"value":21.50,"metadata":{"unit":"°C"},"ttl":"1h"},"s":{"value":"x y"}}}"#;

#[test]
fn a_clean_stop_is_restored_exactly() {
    let scratch = Scratch::new();
    let (service, saver) = open(&scratch);
    assert_eq!(
        read(&service).1,
        1000,
        "nothing to restore: the fresh revision"
    );
    publish(&service, BODY);
    call(
        &service,
        "PUT",
        "/consumer",
        r#"{"registers":{"lamp":{"value":true}}}"#,
    );
    let before = read(&service);
    saver.finish(&service, true);
    assert_eq!(scratch.names(), ["run.json", "state.json"]);

    let (service, _saver) = open(&scratch);
    assert_eq!(
        read(&service),
        before,
        "the same registers at the same index"
    );
    assert!(!changed_since(&service, before.1));
    let requests = call(&service, "GET", "/provider", "");
    assert_eq!(
        requests.body_text(),
        r#"{"registers":{"lamp":{"value":true}}}"#
    );
}

#[test]
fn a_crash_after_restoring_a_clean_stop_is_not_taken_for_clean() {
    let scratch = Scratch::new();
    let (service, saver) = open(&scratch);
    publish(&service, BODY);
    saver.finish(&service, true);
    // The second run restores, changes a value, and dies without saving.
    let (service, saver) = open(&scratch);
    publish(&service, r#"{"registers":{"t":{"value":22}}}"#);
    let seen = read(&service).1;
    drop(saver);
    let (service, _saver) = open(&scratch);
    let (body, index) = read(&service);
    assert!(body.contains("21.50"), "the last save: {body}");
    assert!(index > seen, "never goes back ({index} after {seen})");
    assert!(
        changed_since(&service, seen),
        "an index of the lost run answers at once"
    );
    assert!(!changed_since(&service, index));
}

#[test]
fn saves_happen_only_when_something_changed() {
    let scratch = Scratch::new();
    let (service, mut saver) = open(&scratch);
    assert!(
        !saver.save_if_changed(&service),
        "nothing new after the restore"
    );
    publish(&service, BODY);
    assert!(saver.save_if_changed(&service));
    assert!(!saver.save_if_changed(&service));
    // A refresh that changes only the deadline is news, but wakes nobody.
    let index = read(&service).1;
    publish(&service, BODY);
    assert_eq!(read(&service).1, index);
    assert!(saver.save_if_changed(&service));
    call(&service, "GET", "/consumer", "");
    assert!(!saver.save_if_changed(&service), "reading is no change");
    let metrics = call(&service, "GET", "/metrics", "");
    assert!(metrics.body_text().contains("regd_state_saves_total 2\n"));
    assert!(
        metrics
            .body_text()
            .contains("regd_state_save_failures_total 0\n")
    );
}

#[test]
fn damaged_files_are_moved_aside_and_regd_starts_empty() {
    let scratch = Scratch::new();
    let (service, saver) = open(&scratch);
    publish(&service, BODY);
    saver.finish(&service, true);
    let good = fs::read_to_string(scratch.state_dir().join(STATE_FILE)).unwrap();
    let state_path = scratch.state_dir().join(STATE_FILE);
    let damages: [(&str, &dyn Fn()); 5] = [
        ("empty", &|| fs::write(&state_path, "").unwrap()),
        ("truncated", &|| {
            fs::write(&state_path, &good[..good.len() / 2]).unwrap()
        }),
        ("not UTF-8", &|| {
            fs::write(&state_path, [0xff, 0xfe, 0x00]).unwrap()
        }),
        ("newer version", &|| {
            let newer = good.replacen(r#""version":1"#, r#""version":9"#, 1);
            fs::write(&state_path, newer).unwrap()
        }),
        ("unreadable", &|| fs::create_dir(&state_path).unwrap()),
    ];
    for (what, damage) in damages {
        let _ = fs::remove_file(&state_path);
        damage();
        let (service, _saver) = open(&scratch);
        let (body, _) = read(&service);
        assert_eq!(body, r#"{"registers":{}}"#, "{what}: starts empty");
        assert!(
            scratch.state_dir().join("state.json.bad.1").exists(),
            "{what}: kept for a post-mortem"
        );
        assert!(!state_path.exists(), "{what}: moved, not copied");
    }
    // Five damaged files, three kept.
    assert_eq!(
        scratch.names(),
        [
            "run.json",
            "state.json.bad.1",
            "state.json.bad.2",
            "state.json.bad.3"
        ]
    );
    assert!(
        scratch.state_dir().join("state.json.bad.1").is_dir(),
        "the newest first"
    );
}

#[test]
fn a_leftover_temporary_file_is_never_read() {
    let scratch = Scratch::new();
    let (service, saver) = open(&scratch);
    publish(&service, BODY);
    saver.finish(&service, true);
    let half = fs::read(scratch.state_dir().join(STATE_FILE)).unwrap();
    fs::write(
        temporary(&scratch.state_dir(), STATE_FILE),
        &half[..half.len() / 2],
    )
    .unwrap();
    let (service, _saver) = open(&scratch);
    assert!(read(&service).0.contains("21.50"));
    assert_eq!(scratch.names(), ["run.json", "state.json"], "removed");
}

#[test]
fn write_file_replaces_the_whole_file_or_nothing() {
    let scratch = Scratch::new();
    let directory = scratch.state_dir();
    fs::create_dir_all(&directory).unwrap();
    write_file(&directory, "f", b"old").unwrap();
    write_file(&directory, "f", b"new and longer").unwrap();
    assert_eq!(fs::read(directory.join("f")).unwrap(), b"new and longer");
    // The temporary name taken by a directory: the write fails, the old file stays.
    fs::create_dir(temporary(&directory, "f")).unwrap();
    assert!(write_file(&directory, "f", b"lost").is_err());
    assert_eq!(fs::read(directory.join("f")).unwrap(), b"new and longer");
}

#[test]
fn failing_saves_are_counted_and_retried_while_serving_goes_on() {
    let scratch = Scratch::new();
    // A file where the state directory should be: it can be neither created nor
    // written, even by root.
    fs::write(scratch.state_dir(), "not a directory").unwrap();
    let (service, mut saver) = open(&scratch);
    publish(&service, BODY);
    assert!(saver.save(&service).is_none());
    assert!(saver.save(&service).is_none());
    assert_eq!(
        saver.complaints.failures, 2,
        "two saves (the run file was logged at start)"
    );
    let metrics = call(&service, "GET", "/metrics", "");
    assert!(
        metrics
            .body_text()
            .contains("regd_state_save_failures_total 2\n")
    );
    assert!(metrics.body_text().contains("regd_state_saves_total 0\n"));
    assert!(read(&service).0.contains("21.50"), "serving from memory");
    // Writable again: the next save works, and the run file is recorded.
    fs::remove_file(scratch.state_dir()).unwrap();
    assert!(saver.save(&service).is_some());
    assert_eq!(saver.complaints.failures, 0);
    assert!(saver.reserved.is_none());
    saver.renew_reservation(&service);
    assert!(saver.reserved.is_some());
    let index = read(&service).1;
    saver.finish(&service, true);
    let (service, _saver) = open(&scratch);
    assert_eq!(read(&service).1, index);
}

#[test]
fn an_unclean_stop_leaves_the_run_recorded_as_running() {
    let scratch = Scratch::new();
    let (service, saver) = open(&scratch);
    publish(&service, BODY);
    let index = read(&service).1;
    saver.finish(&service, false);
    let (service, _saver) = open(&scratch);
    assert!(
        read(&service).0.contains("21.50"),
        "the final save is restored"
    );
    let (_, restored_index) = read(&service);
    assert!(restored_index > index, "above what the run reserved");
    assert!(
        changed_since(&service, index),
        "older indexes answer at once"
    );
}

#[test]
fn a_clock_behind_counts_as_no_downtime_and_a_clock_ahead_as_time_passed() {
    let scratch = Scratch::new();
    let noon = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    let hour = Duration::from_secs(3600);
    let left = |service: &Service| -> Vec<(String, Duration)> {
        service.with_state(|state, now| {
            (state.read(now, &Selection::All).registers.iter())
                .map(|view| (view.name.to_string(), view.expires_in))
                .collect()
        })
    };
    let (service, saver) = open_with_clock(&scratch, FakeClock::at(noon));
    publish(
        &service,
        r#"{"registers":{"short":{"value":1,"ttl":"1m"},"long":{"value":2,"ttl":"3h"}}}"#,
    );
    saver.finish(&service, true);
    // Booted without a real-time clock: two hours behind the save.
    let (service, saver) = open_with_clock(&scratch, FakeClock::at(noon - 2 * hour));
    assert_eq!(
        left(&service),
        [
            ("long".into(), 3 * hour),
            ("short".into(), Duration::from_secs(60))
        ]
    );
    saver.finish(&service, true);
    // NTP corrected the clock: the last save (made at "10:00") was two hours ago.
    let (service, _saver) = open_with_clock(&scratch, FakeClock::at(noon));
    assert_eq!(left(&service), [("long".into(), hour)]);
}
