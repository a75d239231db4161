//! Persistence against the real daemon (issue 12, docs/state-file.md): restarts keep
//! registers, change requests and revisions; `kill -9` after a save and in the middle of
//! one; damaged files; an unwritable directory; clocks behind and ahead (through the test
//! hook of debug builds); old indexes across a restart; no state directory, no files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::support::*;

/// A fresh state directory under the system's temporary directory, removed on drop.
struct StateDir {
    root: PathBuf,
    immutable: bool,
}

impl StateDir {
    fn new() -> StateDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        // Under cargo's own scratch folder, on the build's file system (ext4 on CI and
        // here), so `chattr +i` works where /tmp might be a tmpfs.
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "regd-state-it-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        StateDir {
            root,
            immutable: false,
        }
    }

    /// The state directory itself (not created: regd creates it).
    fn path(&self) -> PathBuf {
        self.root.join("state")
    }

    fn arg(&self) -> String {
        self.path().to_str().unwrap().to_string()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path())
            .map(|entries| {
                entries
                    .map(|entry| entry.unwrap().file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Starts regd on this directory with extra arguments and environment.
    fn start(&self, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let directory = self.arg();
        let mut all = vec!["--state-dir", directory.as_str()];
        all.extend_from_slice(args);
        Daemon::start_with_env(&all, env)
    }

    /// Makes the directory immutable (`chattr +i`), which even root cannot write into.
    /// `false` where the file system does not support it.
    fn make_immutable(&mut self) -> bool {
        self.immutable = chattr("+i", &self.path());
        self.immutable
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        if self.immutable {
            chattr("-i", &self.path());
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn chattr(change: &str, path: &Path) -> bool {
    Command::new("chattr")
        .arg(change)
        .arg(path)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Stops a daemon with SIGTERM and waits for its clean exit.
fn stop(mut daemon: Daemon) -> String {
    daemon.signal("TERM");
    assert!(daemon.wait_exit().success());
    daemon.stderr()
}

/// Kills a daemon with SIGKILL (`kill -9`): no final save.
fn kill_9(mut daemon: Daemon) {
    daemon.signal("KILL");
    assert!(!daemon.wait_exit().success());
}

/// `PUT /provider` with `body`, which must be accepted.
fn publish(daemon: &Daemon, body: &str) {
    daemon.put("/provider", body).assert(204, "");
}

/// A first run on `state` that publishes `body` and stops cleanly (saving it).
fn first_run(state: &StateDir, body: &str) {
    let daemon = state.start(&[], &[]);
    publish(&daemon, body);
    stop(daemon);
}

/// Waits until regd counts at least `failures` failed saves.
fn wait_for_failures(daemon: &Daemon, failures: f64) {
    wait_until(&format!("{failures} failed saves"), || {
        metric(daemon, "regd_state_save_failures_total").is_some_and(|n| n >= failures)
    });
}

fn wait_for_saves(daemon: &Daemon, saves: f64) {
    wait_until(&format!("{saves} state saves"), || {
        metric(daemon, "regd_state_saves_total").is_some_and(|count| count >= saves)
    });
}

/// The test hooks are compiled only into debug builds (the ones `cargo test` builds).
fn hooks_compiled_in() -> bool {
    skip_unless(
        cfg!(debug_assertions),
        "regd's test hooks (compiled into debug builds only)",
        "REGD_REQUIRE_TEST_HOOKS",
        "run the tests without --release",
    )
}

const REGISTERS: &str = r#"{"registers":{
    "kitchen.temp":{"value":21.50,"metadata":{"unit":"°C","z":1,"a":2},"ttl":"1h"},
    "__proto__":{"value":{"b":[1,2.0,1.0E+2],"a":"\u00e9 \\ \" x"},"ttl":"30m"},
    "a name/with spaces, commas":{"value":null,"metadata":{},"ttl":"10m"},
    "名前":{"value":"値"}}}"#;

#[test]
fn sigterm_then_restart_keeps_registers_requests_and_revision() {
    let state = StateDir::new();
    let daemon = state.start(&[], &[]);
    publish(&daemon, REGISTERS);
    daemon
        .put(
            "/consumer",
            r#"{"registers":{"lamp":{"value":true},"heater":{"value":{"on":1.0}}}}"#,
        )
        .assert(202, "");
    let before = daemon.get("/consumer");
    let details_before = daemon.get("/consumer?details=true").json();
    let stopped_at = Instant::now();
    let log = stop(daemon);
    assert!(log.contains("state saved to"), "{log}");
    assert_eq!(state.names(), ["run.json", "state.json"]);

    let daemon = state.start(&[], &[]);
    let after = daemon.get("/consumer");
    let elapsed_ms = stopped_at.elapsed().as_millis() as u64;
    assert_eq!(after.body, before.body, "values and metadata byte for byte");
    assert_eq!(after.index(), before.index(), "the revision goes on");
    let details_after = daemon.get("/consumer?details=true").json();
    for (name, entry) in details_before["registers"].as_object().unwrap() {
        let restored = &details_after["registers"][name];
        assert_eq!(restored["ttl"], entry["ttl"], "{name}");
        assert_eq!(restored["index"], entry["index"], "{name}");
        let (left_before, left_after) = (
            entry["expires_in_ms"].as_u64().unwrap(),
            restored["expires_in_ms"].as_u64().unwrap(),
        );
        assert!(
            left_after <= left_before && left_after + elapsed_ms + 5 >= left_before,
            "{name}: {left_before} ms left before, {left_after} ms after, {elapsed_ms} ms between"
        );
    }
    daemon.get("/provider").assert(
        200,
        r#"{"registers":{"heater":{"value":{"on":1.0}},"lamp":{"value":true}}}"#,
    );
    daemon.wait_for_log("the last run stopped cleanly");
}

/// A regd stopped in the middle of restoring `state`: its `run.json` is a named pipe,
/// which regd has opened and reads until the test writes the returned record into it
/// and closes it.
struct RestoreHeld {
    regd: Starting,
    pipe: std::fs::File,
    record: Vec<u8>,
}

impl RestoreHeld {
    fn start(state: &StateDir) -> RestoreHeld {
        let run_file = state.file("run.json");
        let record = std::fs::read(&run_file).unwrap();
        std::fs::remove_file(&run_file).unwrap();
        let made = Command::new("mkfifo").arg(&run_file).status().unwrap();
        assert!(made.success());
        let mut command = program(env!("CARGO_BIN_EXE_regd"));
        command.args(["--addr", "127.0.0.1:0", "--state-dir", &state.arg()]);
        let regd = Starting::spawn(&mut command);
        // Opening a pipe for writing returns once its reader opens it: once regd, in
        // its restore, opens run.json.
        let (opened, open) = std::sync::mpsc::channel();
        let writer = {
            let run_file = run_file.clone();
            std::thread::spawn(move || {
                let _ = opened.send(std::fs::OpenOptions::new().write(true).open(&run_file));
            })
        };
        let pipe = match open.recv_timeout(PATIENCE) {
            Ok(pipe) => pipe.unwrap(),
            Err(_) => {
                drop(regd);
                // Unblocks the writer's open, so no thread of this test outlives it.
                let _ = std::fs::File::open(&run_file);
                let _ = writer.join();
                panic!("regd did not open run.json within {PATIENCE:?}");
            }
        };
        writer.join().unwrap();
        RestoreHeld { regd, pipe, record }
    }

    /// Lets the restore go on: writes the record and closes the pipe.
    fn release(self) -> Starting {
        let RestoreHeld {
            regd,
            mut pipe,
            record,
        } = self;
        // (Fails with EPIPE if regd is gone; its exit status tells.)
        let _ = std::io::Write::write_all(&mut pipe, &record);
        regd
    }
}

#[test]
fn a_sigterm_while_regd_restores_its_state_ends_it_cleanly_with_its_final_save() {
    let state = StateDir::new();
    first_run(&state, &registers(&[("x", "1")]));
    // The signal lands in the middle of start-up, every time.
    let held = RestoreHeld::start(&state);
    held.regd.signal("TERM");
    held.regd.wait_for_log("SIGTERM received while starting");
    let mut regd = held.release().announced();
    let exit = regd.wait_exit();
    let log = regd.stderr();
    assert!(exit.success(), "a clean stop, not a kill: {log}");
    assert!(log.contains("state saved to"), "{log}");

    let daemon = state.start(&[], &[]);
    daemon.wait_for_log("the last run stopped cleanly");
    daemon
        .get("/consumer")
        .assert(200, r#"{"registers":{"x":{"value":1}}}"#);
}

#[test]
fn a_second_sigterm_while_regd_restores_ends_it_at_once() {
    use std::os::unix::process::ExitStatusExt;
    let state = StateDir::new();
    first_run(&state, &registers(&[("x", "1")]));
    // A restore that does not finish (a stuck disk), held here by the pipe.
    let held = RestoreHeld::start(&state);
    held.regd.signal("TERM");
    held.regd.wait_for_log("send it again to stop at once");
    held.regd.signal("TERM");
    let (exit, log) = held.regd.wait_exit();
    assert_eq!(
        exit.signal(),
        Some(15),
        "ended by the second SIGTERM: {log}"
    );
    assert!(log.contains("second SIGTERM: stopping at once"), "{log}");
}

#[test]
fn a_long_poll_with_an_old_index_waits_across_a_clean_restart() {
    let state = StateDir::new();
    let daemon = state.start(&[], &[]);
    publish(
        &daemon,
        r#"{"registers":{"x":{"value":1,"ttl":"1h"},"y":{"value":2,"ttl":"1h"}}}"#,
    );
    daemon.request("DELETE", "/provider?name=gone", "");
    let index = daemon.get("/consumer?name=x").index();
    stop(daemon);

    let daemon = state.start(&[], &[]);
    let on_x = spawn_request(
        daemon.address,
        "GET",
        &format!("/consumer?name=x&wait=20s&index={index}"),
        "",
    );
    let on_all = spawn_request(
        daemon.address,
        "GET",
        &format!("/consumer?wait=20s&index={index}"),
        "",
    );
    // Nothing changed since the index: both polls are held, not answered early.
    wait_for_held_polls(&daemon, 2);
    // The provider's next refresh with the same value wakes nobody.
    publish(
        &daemon,
        r#"{"registers":{"x":{"value":1,"ttl":"1h"},"y":{"value":2,"ttl":"1h"}}}"#,
    );
    assert_eq!(metric(&daemon, "regd_wakeups_total"), Some(0.0));
    assert_eq!(metric(&daemon, "regd_held_polls"), Some(2.0));
    publish(&daemon, r#"{"registers":{"x":{"value":3,"ttl":"1h"}}}"#);
    let woken = on_x.join().unwrap();
    woken.assert(200, r#"{"registers":{"x":{"value":3}}}"#);
    assert_eq!(woken.index(), index + 1);
    let woken = on_all.join().unwrap();
    woken.assert(200, r#"{"registers":{"x":{"value":3},"y":{"value":2}}}"#);
}

#[test]
fn a_consumer_polling_across_a_clean_restart_sees_no_removal() {
    // The way the original clients' consumeAll works: long polls without an index, a
    // new connection after an error, every answer diffed against the last one.
    let state = StateDir::new();
    let daemon = state.start(&[], &[]);
    let body = r#"{"registers":{"a":{"value":1,"ttl":"1h"},"b":{"value":{"x":2},"ttl":"1h"}}}"#;
    publish(&daemon, body);
    let address = daemon.address;
    let (stop_polling, polling_stopped) = std::sync::mpsc::channel::<()>();
    let consumer = std::thread::spawn(move || {
        let mut answers = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        while polling_stopped.try_recv().is_err() && Instant::now() < deadline {
            let Ok(stream) = std::net::TcpStream::connect(address) else {
                // regd is restarting: try again shortly, as the clients do.
                std::thread::sleep(std::time::Duration::from_millis(5)); // sleep-ok: retry within a deadline
                continue;
            };
            let mut connection = Http::from_stream(stream);
            connection.send_request("GET", "/consumer?wait=1s", "");
            if let Some(reply) = connection.try_read_reply() {
                answers.push(reply.body);
            }
        }
        answers
    });
    wait_for_held_polls(&daemon, 1);
    stop(daemon);
    // The same address, as a restarted service has.
    let address_arg = address.to_string();
    let daemon = state.start(&["--addr", &address_arg], &[]);
    wait_for_held_polls(&daemon, 1);
    // A provider's identical refresh wakes no one; a real change does.
    publish(&daemon, body);
    publish(&daemon, r#"{"registers":{"c":{"value":3,"ttl":"1h"}}}"#);
    wait_until("the change reaches the consumer", || {
        metric(&daemon, "regd_wakeups_total").is_some_and(|n| n >= 1.0)
    });
    wait_for_held_polls(&daemon, 1);
    let _ = stop_polling.send(());
    let answers = consumer.join().unwrap();
    let before = r#"{"registers":{"a":{"value":1},"b":{"value":{"x":2}}}}"#;
    let after = r#"{"registers":{"a":{"value":1},"b":{"value":{"x":2}},"c":{"value":3}}}"#;
    assert!(answers.iter().any(|answer| answer == after), "{answers:?}");
    for answer in &answers {
        assert!(
            answer == before || answer == after,
            "a removal or a blip: {answer}"
        );
    }
}

#[test]
fn kill_9_after_a_periodic_save_restores_that_save_and_old_indexes_answer_at_once() {
    let state = StateDir::new();
    let daemon = state.start(&["--save-interval", "50ms"], &[]);
    publish(&daemon, r#"{"registers":{"x":{"value":1,"ttl":"1h"}}}"#);
    daemon
        .put("/consumer", &registers(&[("lamp", "true")]))
        .assert(202, "");
    wait_for_saves(&daemon, 1.0);
    // The first save may have come between the two PUTs; wait for one with both.
    wait_until("a save with both", || {
        std::fs::read_to_string(state.file("state.json"))
            .is_ok_and(|text| text.contains(r#""x":{"value":1"#) && text.contains("lamp"))
    });
    let saved_index = daemon.get("/consumer").index();
    let last_save = metric(&daemon, "regd_state_last_save_timestamp_seconds").unwrap();
    assert!(last_save > 1e9, "a Unix time: {last_save}");
    assert!(metric(&daemon, "regd_state_last_save_duration_seconds").unwrap() > 0.0);
    check_with_promtool(&daemon.get("/metrics").body);
    kill_9(daemon);

    let daemon = state.start(&[], &[]);
    daemon.wait_for_log("did not stop cleanly");
    daemon
        .get("/consumer")
        .assert(200, r#"{"registers":{"x":{"value":1}}}"#);
    daemon
        .get("/provider")
        .assert(200, r#"{"registers":{"lamp":{"value":true}}}"#);
    let index = daemon.get("/consumer").index();
    assert!(
        index > saved_index,
        "never goes back: {index} after {saved_index}"
    );
    // Changes after the save may be lost: an index from before the crash answers at once.
    let early = daemon.get(&format!("/consumer?name=x&wait=20s&index={saved_index}"));
    early.assert(200, r#"{"registers":{"x":{"value":1}}}"#);
    // An index of this run is judged normally.
    let held = spawn_request(
        daemon.address,
        "GET",
        &format!("/consumer?name=x&wait=20s&index={index}"),
        "",
    );
    wait_for_held_polls(&daemon, 1);
    publish(&daemon, r#"{"registers":{"x":{"value":2,"ttl":"1h"}}}"#);
    assert_eq!(held.join().unwrap().index(), index + 1);
}

#[test]
fn kill_9_in_the_middle_of_a_save_leaves_the_previous_state_readable() {
    if !hooks_compiled_in() {
        return;
    }
    let state = StateDir::new();
    first_run(
        &state,
        r#"{"registers":{"x":{"value":"first","ttl":"1h"}}}"#,
    );
    let first = std::fs::read_to_string(state.file("state.json")).unwrap();

    // The second run restores, changes, and is killed while its first save is half
    // written.
    let daemon = state.start(
        &["--save-interval", "50ms"],
        &[("REGD_TEST_SAVE_STALL", "1")],
    );
    publish(
        &daemon,
        r#"{"registers":{"x":{"value":"second","ttl":"1h"}}}"#,
    );
    let seen = daemon.get("/consumer").index();
    daemon.wait_for_log("test hook: save stalled");
    let partial = std::fs::read(state.file("state.json.tmp")).unwrap();
    assert!(!partial.is_empty() && partial.len() < first.len() + 20);
    kill_9(daemon);
    assert_eq!(
        std::fs::read_to_string(state.file("state.json")).unwrap(),
        first,
        "the previous state is untouched"
    );

    let daemon = state.start(&[], &[]);
    daemon
        .get("/consumer")
        .assert(200, r#"{"registers":{"x":{"value":"first"}}}"#);
    daemon.wait_for_log("did not stop cleanly");
    assert!(daemon.get("/consumer").index() > seen, "never goes back");
    assert!(
        !state.file("state.json.tmp").exists(),
        "the half-written file is gone"
    );
}

#[test]
fn damaged_state_files_are_moved_aside_and_regd_starts_empty() {
    let state = StateDir::new();
    first_run(&state, r#"{"registers":{"x":{"value":"kept","ttl":"1h"}}}"#);
    let good = std::fs::read_to_string(state.file("state.json")).unwrap();
    let flipped = good.replacen("kept", "kelt", 1);
    let cases: [(&str, String, &str); 5] = [
        ("corrupt", flipped, "does not match its checksum"),
        (
            "truncated",
            good[..good.len() / 2].to_string(),
            "not valid JSON, perhaps truncated",
        ),
        (
            "wrong version",
            good.replacen(r#""version":1"#, r#""version":2"#, 1),
            "format version 2",
        ),
        ("empty", String::new(), "the file is empty"),
        (
            "not ours",
            r#"{"registers":{}}"#.to_string(),
            "not a regd-state file",
        ),
    ];
    for (what, text, message) in cases {
        std::fs::write(state.file("state.json"), &text).unwrap();
        let daemon = state.start(&[], &[]);
        daemon.get("/consumer").assert(200, r#"{"registers":{}}"#);
        daemon.wait_for_log(message);
        daemon.wait_for_log("moved it to");
        assert_eq!(
            std::fs::read_to_string(state.file("state.json.bad.1")).unwrap(),
            text,
            "{what}: kept for a post-mortem"
        );
        // The run goes on above the last run's revisions, with what it has.
        publish(&daemon, r#"{"registers":{"x":{"value":"new","ttl":"1h"}}}"#);
        stop(daemon);
    }
    assert_eq!(
        state.names(),
        [
            "run.json",
            "state.json",
            "state.json.bad.1",
            "state.json.bad.2",
            "state.json.bad.3"
        ],
        "at most three kept"
    );
}

#[test]
fn an_unreadable_state_file_does_not_stop_regd() {
    let state = StateDir::new();
    std::fs::create_dir_all(state.file("state.json")).unwrap();
    let daemon = state.start(&[], &[]);
    daemon.get("/consumer").assert(200, r#"{"registers":{}}"#);
    daemon.wait_for_log("cannot be read");
    assert!(state.file("state.json.bad.1").is_dir());
}

#[test]
fn an_unwritable_state_directory_warns_counts_and_keeps_serving() {
    // Tests run as root, whom permissions do not stop. What does: the temporary file's
    // name taken by a directory (every save fails; the old state stays readable).
    let state = StateDir::new();
    first_run(&state, r#"{"registers":{"x":{"value":1,"ttl":"1h"}}}"#);
    std::fs::create_dir(state.file("state.json.tmp")).unwrap();
    std::fs::write(state.file("state.json.tmp/keep"), "").unwrap();
    let daemon = state.start(&["--save-interval", "50ms"], &[]);
    daemon
        .get("/consumer")
        .assert(200, r#"{"registers":{"x":{"value":1}}}"#);
    for value in 2..5 {
        publish(&daemon, &registers(&[("x", &value.to_string())]));
        let failures = value as f64 - 1.0;
        wait_for_failures(&daemon, failures);
    }
    daemon
        .get("/consumer")
        .assert(200, r#"{"registers":{"x":{"value":4}}}"#);
    assert_eq!(metric(&daemon, "regd_state_saves_total"), Some(0.0));
    assert_eq!(
        metric(&daemon, "regd_state_last_save_timestamp_seconds"),
        Some(0.0)
    );
    check_with_promtool(&daemon.get("/metrics").body);
    let log = daemon.stderr();
    assert_eq!(
        log.matches("cannot save the state").count(),
        1,
        "the warning is rate-limited: {log}"
    );
    let log = stop(daemon);
    assert!(log.contains("the final state save failed"), "{log}");
    // The last state that was written is still there.
    std::fs::remove_dir_all(state.file("state.json.tmp")).unwrap();
    let daemon = state.start(&[], &[]);
    daemon
        .get("/consumer")
        .assert(200, r#"{"registers":{"x":{"value":1}}}"#);
}

#[test]
fn a_state_directory_that_cannot_be_created_or_is_immutable_does_not_stop_regd() {
    // A regular file where the directory should be.
    let state = StateDir::new();
    std::fs::write(state.path(), "a file").unwrap();
    let daemon = state.start(&["--save-interval", "50ms"], &[]);
    daemon.wait_for_log("cannot create the state directory");
    publish(&daemon, &registers(&[("x", "1")]));
    wait_for_failures(&daemon, 1.0);
    daemon
        .get("/consumer")
        .assert(200, r#"{"registers":{"x":{"value":1}}}"#);
    stop(daemon);

    // An immutable directory (chattr +i), where the file system supports it.
    let mut state = StateDir::new();
    first_run(&state, &registers(&[("x", "1")]));
    let immutable = state.make_immutable();
    if !skip_unless(
        immutable,
        "an immutable directory (chattr +i on the temporary directory's file system)",
        "REGD_REQUIRE_CHATTR",
        "run the tests on a file system that supports chattr +i, such as ext4",
    ) {
        return;
    }
    let daemon = state.start(&["--save-interval", "50ms"], &[]);
    daemon
        .get("/consumer")
        .assert(200, r#"{"registers":{"x":{"value":1}}}"#);
    daemon.wait_for_log("cannot write");
    publish(&daemon, &registers(&[("x", "2")]));
    wait_for_failures(&daemon, 1.0);
    daemon
        .get("/consumer")
        .assert(200, r#"{"registers":{"x":{"value":2}}}"#);
}

#[test]
fn clock_behind_then_ahead_across_restarts() {
    if !hooks_compiled_in() {
        return;
    }
    let state = StateDir::new();
    let daemon = state.start(&[], &[]);
    publish(
        &daemon,
        r#"{"registers":{"short":{"value":1,"ttl":"1m"},"long":{"value":2,"ttl":"3h"}}}"#,
    );
    let started = Instant::now();
    stop(daemon);

    // Booted without a real-time clock: two hours behind the save. The downtime counts
    // as zero, not as negative, and nothing lives longer than it had left.
    let daemon = state.start(&[], &[("REGD_TEST_CLOCK_OFFSET", "-2h")]);
    daemon.wait_for_log("the wall clock is behind the time of the last save");
    let details = daemon.get("/consumer?details=true").json();
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let short_left = details["registers"]["short"]["expires_in_ms"]
        .as_u64()
        .unwrap();
    assert!(
        short_left <= 60_000 && short_left + elapsed_ms + 5 >= 60_000,
        "{short_left} ms left, {elapsed_ms} ms elapsed"
    );
    let index = daemon.get("/consumer").index();
    // This run saves with its clock two hours behind.
    stop(daemon);

    // NTP has corrected the clock: two hours seem to have passed since that save.
    let daemon = state.start(&[], &[]);
    daemon.wait_for_log("1 registers expired while regd was down");
    let answer = daemon.get("/consumer?details=true").json();
    let registers = answer["registers"].as_object().unwrap();
    assert_eq!(
        registers.keys().collect::<Vec<_>>(),
        ["long"],
        "short never seen"
    );
    let long_left = registers["long"]["expires_in_ms"].as_u64().unwrap();
    let hour_ms = 3_600_000;
    assert!(
        long_left <= hour_ms + 1_000 && long_left + 60_000 >= hour_ms,
        "{long_left} ms left"
    );
    // The expiry while down is a change: a poll with the old index on it answers at
    // once (without it); one on "long" waits.
    daemon
        .get(&format!("/consumer?name=short&wait=20s&index={index}"))
        .assert(200, r#"{"registers":{}}"#);
    let on_long = spawn_request(
        daemon.address,
        "GET",
        &format!("/consumer?name=long&wait=20s&index={index}"),
        "",
    );
    wait_for_held_polls(&daemon, 1);
    daemon.request("DELETE", "/provider?name=long", "");
    on_long.join().unwrap().assert(200, r#"{"registers":{}}"#);
}

#[test]
fn without_a_state_directory_regd_keeps_everything_in_memory() {
    let scratch = StateDir::new();
    std::fs::create_dir_all(scratch.path()).unwrap();
    let mut first_indexes = Vec::new();
    for _ in 0..2 {
        let mut command = program(env!("CARGO_BIN_EXE_regd"));
        command
            .args(["--addr", "127.0.0.1:0"])
            .current_dir(scratch.path());
        let daemon = Daemon::start_command(&mut command);
        daemon.wait_for_log("state kept in memory only");
        daemon.get("/consumer").assert(200, r#"{"registers":{}}"#);
        first_indexes.push(daemon.get("/consumer").index());
        publish(&daemon, &registers(&[("x", "1")]));
        assert!(!daemon.get("/metrics").body.contains("regd_state_"));
        stop(daemon);
    }
    assert!(
        scratch.names().is_empty(),
        "nothing written: {:?}",
        scratch.names()
    );
    assert_ne!(
        first_indexes[0], first_indexes[1],
        "the first revision is unpredictable per process"
    );
}

#[test]
fn the_state_directory_follows_its_precedence() {
    let (flag, variable, systemd) = (StateDir::new(), StateDir::new(), StateDir::new());
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let daemon = Daemon::start_with_env(args, env);
        publish(&daemon, &registers(&[("x", "1")]));
        stop(daemon)
    };
    let (flag_dir, variable_dir, systemd_dir) = (flag.arg(), variable.arg(), systemd.arg());
    // Several StateDirectory= entries arrive colon-separated; the first is regd's.
    let systemd_list = format!("{systemd_dir}:/nonexistent/other");
    let all = [
        ("REGD_STATE_DIR", variable_dir.as_str()),
        ("STATE_DIRECTORY", systemd_list.as_str()),
    ];
    run(&["--state-dir", &flag_dir], &all);
    assert!(flag.file("state.json").exists() && variable.names().is_empty());
    // `--state-dir=DIR`, the form every other flag takes too (REGD_OPTS=--state-dir=…).
    let _ = std::fs::remove_dir_all(flag.path());
    run(&[&format!("--state-dir={flag_dir}")], &all);
    assert!(flag.file("state.json").exists() && variable.names().is_empty());
    run(&[], &all);
    assert!(variable.file("state.json").exists() && systemd.names().is_empty());
    run(&[], &all[1..]);
    assert!(systemd.file("state.json").exists());
    for (args, env) in [
        (&["--no-state"][..], &all[..]),
        (&["--state-dir", ""][..], &all[..]),
        (&["--state-dir="][..], &all[..]),
        (&[][..], &[("REGD_STATE_DIR", ""), all[1]][..]),
    ] {
        for dir in [&flag, &variable, &systemd] {
            let _ = std::fs::remove_dir_all(dir.path());
        }
        let log = run(args, env);
        assert!(
            log.contains("state kept in memory only"),
            "{args:?} {env:?}"
        );
        for dir in [&flag, &variable, &systemd] {
            assert!(dir.names().is_empty(), "{args:?} {env:?}");
        }
    }
}

#[test]
fn a_bad_save_interval_is_a_usage_error() {
    for interval in ["0s", "often", "-5m"] {
        let output = program(env!("CARGO_BIN_EXE_regd"))
            .args(["--save-interval", interval, "--no-state"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{interval}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--save-interval"), "{stderr}");
    }
}

/// Answers `GET target`, which must come at once: within the tests' patience, though
/// its `wait` is far longer.
fn answered_at_once(daemon: &Daemon, target: &str) -> Reply {
    let poll = spawn_request(daemon.address, "GET", target, "");
    wait_until(&format!("an answer at once to {target}"), || {
        poll.is_finished()
    });
    poll.join().unwrap()
}

/// Blocks writes of `name` in the state directory: its temporary file's name is taken
/// by a directory that is not empty (root ignores permissions; this stops it too).
fn block_writes_of(state: &StateDir, name: &str) -> PathBuf {
    let blocker = state.file(&format!("{name}.tmp"));
    std::fs::create_dir_all(&blocker).unwrap();
    std::fs::write(blocker.join("keep"), "").unwrap();
    blocker
}

#[test]
fn starts_that_cannot_record_themselves_never_share_revisions() {
    // A read-only state directory, restart after restart: every run restores the same
    // clean files and can record nothing. An index one run gave out must not be judged
    // by the next one's different history.
    let state = StateDir::new();
    first_run(&state, r#"{"registers":{"x":{"value":1,"ttl":"1h"}}}"#);
    block_writes_of(&state, "state.json");
    block_writes_of(&state, "run.json");

    let daemon = state.start(&[], &[]);
    daemon.wait_for_log("cannot write");
    let first_of_one = daemon.get("/consumer").index();
    daemon.request("DELETE", "/provider?name=x", "");
    let seen = daemon.get("/consumer");
    seen.assert(200, r#"{"registers":{}}"#);
    stop(daemon);

    let daemon = state.start(&[], &[]);
    daemon.wait_for_log("cannot write");
    let first_of_next = daemon.get("/consumer").index();
    assert_ne!(
        first_of_next, first_of_one,
        "the same numbers for two histories"
    );
    // The next run has x again (the files are what they were) and goes on issuing.
    publish(&daemon, &registers(&[("y", "1")]));
    publish(&daemon, &registers(&[("y", "2")]));
    answered_at_once(
        &daemon,
        &format!("/consumer?name=x&wait=10m&index={}", seen.index()),
    )
    .assert(200, r#"{"registers":{"x":{"value":1}}}"#);
}

#[test]
fn a_crash_of_a_run_that_saved_but_could_not_record_itself_hides_no_change() {
    // The run file cannot be written, the state file can: the run saves, changes more,
    // and is killed. The next start must not take the old clean record for its own.
    let state = StateDir::new();
    first_run(&state, r#"{"registers":{"x":{"value":1,"ttl":"1h"}}}"#);
    let blocker = block_writes_of(&state, "run.json");
    let daemon = state.start(&["--save-interval", "50ms"], &[]);
    daemon.wait_for_log("cannot write");
    publish(&daemon, r#"{"registers":{"x":{"value":2,"ttl":"1h"}}}"#);
    wait_until("a save with x = 2", || {
        std::fs::read_to_string(state.file("state.json"))
            .is_ok_and(|text| text.contains(r#""x":{"value":2"#))
    });
    publish(&daemon, r#"{"registers":{"x":{"value":3,"ttl":"1h"}}}"#);
    let seen = daemon.get("/consumer?name=x");
    seen.assert(200, r#"{"registers":{"x":{"value":3}}}"#);
    kill_9(daemon);

    std::fs::remove_dir_all(blocker).unwrap();
    let daemon = state.start(&[], &[]);
    daemon.wait_for_log("did not stop cleanly");
    let restored = daemon.get("/consumer?name=x");
    restored.assert(200, r#"{"registers":{"x":{"value":2}}}"#);
    assert!(
        restored.index() > seen.index(),
        "a number is never reused: {} after {}",
        restored.index(),
        seen.index()
    );
    // x is 2 again, not the 3 the client saw: its index answers at once.
    answered_at_once(
        &daemon,
        &format!("/consumer?name=x&wait=10m&index={}", seen.index()),
    )
    .assert(200, r#"{"registers":{"x":{"value":2}}}"#);
}
