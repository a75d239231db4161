//! docs/protocol.md part B items B1, B2, B3, B4, B6 and B7 against the real daemon.

use std::time::{Duration, Instant};

use crate::support::*;

// B1. No lost updates between polls

#[test]
fn b1_every_get_carries_a_growing_positive_index() {
    let daemon = Daemon::start(&[]);
    let first = daemon.get("/consumer").index();
    assert!(first > 0);
    assert_eq!(
        daemon.get("/consumer?name=x").index(),
        first,
        "reads change nothing"
    );
    daemon
        .put("/provider", &registers(&[("a", "1")]))
        .assert(204, "");
    let second = daemon.get("/consumer").index();
    assert!(second > first);
    daemon
        .put("/provider", &registers(&[("a", "1")]))
        .assert(204, "");
    assert_eq!(
        daemon.get("/consumer").index(),
        second,
        "a refresh is no change"
    );
    daemon
        .request("DELETE", "/provider?name=a", "")
        .assert(204, "");
    assert!(daemon.get("/consumer").index() > second);
    let provider = daemon.get("/provider");
    assert!(provider.index() > second, "GET /provider carries it too");
    // index and details belong to GET /consumer: elsewhere they are unknown, ignored.
    daemon
        .get("/provider?index=x&details=maybe")
        .assert(200, r#"{"registers":{}}"#);
    daemon
        .request("DELETE", "/provider?name=zz&index=x", "")
        .assert(204, "");
    // JavaScript clients must hold it exactly.
    assert!(provider.index() < 1 << 53);
}

#[test]
fn b1_a_change_between_polls_is_not_missed() {
    let daemon = Daemon::start(&[]);
    daemon
        .put("/provider", &registers(&[("a", "1")]))
        .assert(204, "");
    let seen = daemon.get("/consumer?name=a").index();
    // The change happens while the client is not polling.
    daemon
        .put("/provider", &registers(&[("a", "2")]))
        .assert(204, "");
    let started = Instant::now();
    let reply = daemon.get(&format!("/consumer?name=a&wait=20s&index={seen}"));
    reply.assert(200, r#"{"registers":{"a":{"value":2}}}"#);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(reply.index() > seen);
}

#[test]
fn b1_deletion_and_expiry_between_polls_are_not_missed() {
    let daemon = Daemon::start(&[]);
    daemon
        .put(
            "/provider",
            r#"{"registers":{"a":{"value":1},"b":{"value":1,"ttl":"50ms"}}}"#,
        )
        .assert(204, "");
    let seen = daemon.get("/consumer").index();
    wait_until("b to expire", || {
        !daemon.get("/consumer").body.contains("\"b\"")
    });
    daemon
        .get(&format!("/consumer?name=b&wait=20s&index={seen}"))
        .assert(200, r#"{"registers":{}}"#);
    let seen = daemon.get("/consumer").index();
    daemon
        .request("DELETE", "/provider?name=a", "")
        .assert(204, "");
    daemon
        .get(&format!("/consumer?name=a&wait=20s&index={seen}"))
        .assert(200, r#"{"registers":{}}"#);
}

#[test]
fn b1_nothing_changed_since_index_waits() {
    let daemon = Daemon::start(&[]);
    daemon
        .put("/provider", &registers(&[("a", "1")]))
        .assert(204, "");
    let seen = daemon.get("/consumer").index();
    daemon
        .put("/provider", &registers(&[("other", "1")]))
        .assert(204, "");
    let poll = spawn_request(
        daemon.address,
        "GET",
        &format!("/consumer?name=a&wait=20s&index={seen}"),
        "",
    );
    wait_for_held_polls(&daemon, 1);
    daemon
        .put("/provider", &registers(&[("a", "3")]))
        .assert(204, "");
    poll.join()
        .unwrap()
        .assert(200, r#"{"registers":{"a":{"value":3}}}"#);
}

#[test]
fn b1_unknowable_indexes_answer_at_once() {
    let daemon = Daemon::start(&[]);
    let current = daemon.get("/consumer").index();
    for index in [
        (current + 1).to_string(),
        (current + 1_000_000).to_string(),
        "0".to_string(),
        "1".to_string(),
        "4649996415727488968163328".to_string(),
    ] {
        let started = Instant::now();
        daemon
            .get(&format!("/consumer?wait=20s&index={index}"))
            .assert(200, r#"{"registers":{}}"#);
        assert!(started.elapsed() < Duration::from_secs(5), "index {index}");
    }
    daemon.get("/consumer?index=-1").assert_error(400, "index");
    daemon.get("/consumer?index=abc").assert_error(400, "index");
}

#[test]
fn b1_indexes_of_two_runs_do_not_overlap() {
    let first = Daemon::start(&[]);
    let first_index = first.get("/consumer").index();
    drop(first);
    let second = Daemon::start(&[]);
    let started = Instant::now();
    second
        .get(&format!("/consumer?wait=20s&index={first_index}"))
        .assert(200, r#"{"registers":{}}"#);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "an index from an earlier run must answer at once"
    );
}

// B2. Explicit removal

#[test]
fn b2_delete_removes_now_and_wakes_consumers() {
    let daemon = Daemon::start(&[]);
    daemon
        .put(
            "/provider",
            &registers(&[("a", "1"), ("b", "2"), ("c", "3")]),
        )
        .assert(204, "");
    let poll = spawn_request(daemon.address, "GET", "/consumer?name=b&wait=20s", "");
    wait_for_held_polls(&daemon, 1);
    let reply = daemon.request("DELETE", "/provider?name=a&name=b&name=never", "");
    reply.assert(204, "");
    poll.join().unwrap().assert(200, r#"{"registers":{}}"#);
    daemon
        .get("/consumer")
        .assert(200, r#"{"registers":{"c":{"value":3}}}"#);
    daemon
        .request("DELETE", "/provider", "")
        .assert_error(400, "name");
    daemon
        .request("DELETE", "/consumer?name=c", "")
        .assert_error(405, "DELETE");
}

// B3. Errors

#[test]
fn b3_every_error_is_json_with_an_accurate_status() {
    let daemon = Daemon::start(&[
        "--max-body",
        "100",
        "--max-uri",
        "200",
        "--max-head",
        "1024",
    ]);
    daemon
        .put("/provider", "nope")
        .assert_error(400, "JSON object");
    daemon.get("/nowhere").assert_error(404, "/nowhere");
    daemon
        .request("POST", "/consumer", "")
        .assert_error(405, "POST");
    daemon
        .put("/provider", &"x".repeat(101))
        .assert_error(413, "larger than 100 bytes");
    daemon
        .get(&format!("/consumer?name={}", "a".repeat(300)))
        .assert_error(414, "longer than 200 bytes");
    let mut connection = daemon.connect();
    connection.send(
        format!(
            "GET /consumer HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "b".repeat(2000)
        )
        .as_bytes(),
    );
    connection.read_reply().assert_error(431, "headers");
}

#[test]
fn b3_503_carries_retry_after() {
    let daemon = Daemon::start(&["--max-registers", "1"]);
    daemon
        .put("/provider", &registers(&[("a", "1")]))
        .assert(204, "");
    let reply = daemon.put("/provider", &registers(&[("b", "1")]));
    reply.assert_error(503, "register limit (1)");
    assert_eq!(reply.header("Retry-After"), Some("1"));
}

// B4. Limits

#[test]
fn b4_register_limit() {
    let daemon = Daemon::start(&["--max-registers", "3"]);
    daemon
        .put(
            "/provider",
            &registers(&[("a", "1"), ("b", "1"), ("c", "1")]),
        )
        .assert(204, "");
    daemon
        .put("/provider", &registers(&[("a", "2"), ("d", "1")]))
        .assert_error(503, "--max-registers");
    // Nothing of the refused body was applied; updating existing ones still works.
    daemon
        .get("/consumer?name=a&name=d")
        .assert(200, r#"{"registers":{"a":{"value":1}}}"#);
    daemon
        .put("/provider", &registers(&[("a", "2")]))
        .assert(204, "");
    // Deleting frees a place.
    daemon
        .request("DELETE", "/provider?name=b", "")
        .assert(204, "");
    daemon
        .put("/provider", &registers(&[("d", "1")]))
        .assert(204, "");
}

#[test]
fn b4_pending_request_limit() {
    let daemon = Daemon::start(&["--max-pending", "2"]);
    daemon
        .put("/consumer", &registers(&[("a", "1"), ("b", "1")]))
        .assert(202, "");
    daemon
        .put("/consumer", &registers(&[("c", "1")]))
        .assert_error(503, "--max-pending");
    // Replacing a pending request needs no new place.
    daemon
        .put("/consumer", &registers(&[("a", "2")]))
        .assert(202, "");
    daemon
        .get("/provider?name=a")
        .assert(200, r#"{"registers":{"a":{"value":2}}}"#);
    daemon
        .put("/consumer", &registers(&[("c", "1")]))
        .assert(202, "");
}

#[test]
fn b4_held_poll_limit() {
    let daemon = Daemon::start(&["--max-polls", "2"]);
    let polls: Vec<_> = (0..2)
        .map(|_| spawn_request(daemon.address, "GET", "/consumer?name=a&wait=20s", ""))
        .collect();
    wait_for_held_polls(&daemon, 2);
    daemon
        .get("/consumer?name=a&wait=20s")
        .assert_error(503, "--max-polls");
    daemon
        .get("/provider?name=a&wait=20s")
        .assert_error(503, "--max-polls");
    daemon.get("/consumer").assert(200, r#"{"registers":{}}"#);
    daemon
        .put("/provider", &registers(&[("a", "1")]))
        .assert(204, "");
    for poll in polls {
        poll.join()
            .unwrap()
            .assert(200, r#"{"registers":{"a":{"value":1}}}"#);
    }
    wait_for_held_polls(&daemon, 0);
}

#[test]
fn b4_name_length_and_names_per_request() {
    let daemon = Daemon::start(&["--max-name", "8", "--max-names", "3"]);
    daemon
        .get(&format!("/consumer?name={}", "n".repeat(9)))
        .assert_error(400, "at most 8 bytes");
    daemon
        .get("/consumer?name=a&name=b&name=c&name=d")
        .assert_error(400, "at most 3");
    daemon
        .put("/provider", &registers(&[("123456789", "1")]))
        .assert_error(400, "at most 8");
    daemon
        .put(
            "/consumer",
            &registers(&[("a", "1"), ("b", "1"), ("c", "1"), ("d", "1")]),
        )
        .assert_error(400, "at most 3");
    daemon
        .put(
            "/provider",
            &registers(&[("12345678", "1"), ("b", "1"), ("c", "1")]),
        )
        .assert(204, "");
}

#[test]
fn b4_longer_waits_are_shortened() {
    let daemon = Daemon::start(&["--max-wait", "200ms"]);
    for target in ["/consumer?name=a&wait=1h", "/provider?name=a&wait=1h"] {
        let started = Instant::now();
        daemon.get(target).assert(200, r#"{"registers":{}}"#);
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(200),
            "{target}: {elapsed:?}"
        );
        assert!(elapsed < Duration::from_secs(10), "{target}: {elapsed:?}");
    }
}

#[test]
fn b4_silent_and_dribbling_connections_are_closed() {
    let daemon = Daemon::start(&["--read-timeout", "300ms"]);
    // Silent: connects and sends nothing. Timed from before the connect: regd's timer
    // starts when it accepts, which may come before this thread runs again.
    let started = Instant::now();
    let mut silent = daemon.connect();
    assert!(silent.is_closed_by_server());
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Dribbling: a byte at a time, never completing the head within the timeout.
    let mut dribbling = daemon.connect();
    let started = Instant::now();
    let mut closed = false;
    for byte in b"GET /consumer HTTP/1.1\r\nHost: x\r\nX-Slow: "
        .iter()
        .cycle()
        .take(400)
    {
        if dribbling.stream.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10)); // sleep-ok: the client dribbles
    }
    assert!(
        closed || dribbling.is_closed_by_server(),
        "dribbler still connected"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // Idle keep-alive connections are closed after the same timeout.
    let mut idle = daemon.connect();
    idle.request("GET", "/healthz", "")
        .assert(200, r#"{"status":"ok"}"#);
    assert!(idle.is_closed_by_server());
    // Service goes on.
    daemon.get("/healthz").assert(200, r#"{"status":"ok"}"#);
}

use std::io::Write;

// B6. Operations endpoints

#[test]
fn b6_healthz() {
    let daemon = Daemon::start(&[]);
    let reply = daemon.get("/healthz");
    reply.assert(200, r#"{"status":"ok"}"#);
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
}

#[test]
fn b6_metrics_report_daemon_state_and_register_values() {
    let daemon = Daemon::start(&[]);
    daemon
        .put(
            "/provider",
            r#"{"registers":{"temp":{"value":21.5},"door\"\\\n":{"value":false},"label":{"value":"x"},"big":{"value":1e400}}}"#,
        )
        .assert(204, "");
    daemon
        .put("/consumer", &registers(&[("temp", "22")]))
        .assert(202, "");
    daemon.get("/nope");
    let reply = daemon.get("/metrics");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = &reply.body;
    for expected in [
        "regd_registers 4",
        "regd_pending_requests 1",
        "regd_held_polls 0",
        "regd_register_value{name=\"temp\"} 21.5",
        "regd_register_value{name=\"door\\\"\\\\\\n\"} 0",
        "regd_register_value{name=\"big\"} +Inf",
        "regd_requests_total{resource=\"provider\",method=\"PUT\",status=\"204\"} 1",
        "regd_requests_total{resource=\"other\",method=\"GET\",status=\"404\"} 1",
        "regd_build_info{version=\"",
        "# TYPE regd_expirations_total counter",
        "# TYPE regd_wakeups_total counter",
        "regd_connections_open ",
        "regd_connections_refused_total 0",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains("name=\"label\""));
    check_exposition_format(text);
}

/// The exposition rules promtool checks: every sample belongs to a family declared
/// once with HELP and TYPE before its samples, counters end in _total, values parse.
fn check_exposition_format(text: &str) {
    let mut declared: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_string();
            assert!(!declared.contains(&name), "{name} declared twice");
            declared.push(name.clone());
            current = Some(name);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert_eq!(Some(name), current.as_deref(), "TYPE follows its HELP");
            assert!(["counter", "gauge"].contains(&kind));
            if kind == "counter" {
                assert!(
                    name.ends_with("_total"),
                    "counter {name} must end in _total"
                );
            }
        } else {
            let name_end = line.find(['{', ' ']).expect("sample line");
            let name = &line[..name_end];
            assert_eq!(
                Some(name),
                current.as_deref(),
                "sample {line:?} outside its family"
            );
            let value = line.rsplit(' ').next().unwrap();
            assert!(
                value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
                "bad value in {line:?}"
            );
        }
    }
}

#[test]
fn b6_metrics_pass_promtool_when_available() {
    let daemon = Daemon::start(&[]);
    daemon
        .put(
            "/provider",
            r#"{"registers":{"t":{"value":1},"odd \"name\"\n":{"value":true}}}"#,
        )
        .assert(204, "");
    check_with_promtool(&daemon.get("/metrics").body);
}

// B7. Details on request

// B7 details are tested in memory on a clock the test moves (src/server/service/tests.rs).
