//! docs/protocol.md part A, rule by rule, against the real daemon.

use std::time::{Duration, Instant};

use crate::support::*;

// A1. Resources and methods

#[test]
fn a1_two_resources_answer_get_and_put() {
    let daemon = Daemon::start(&[]);
    daemon
        .put("/provider", &registers(&[("a", "1")]))
        .assert(204, "");
    daemon
        .get("/consumer")
        .assert(200, r#"{"registers":{"a":{"value":1}}}"#);
    daemon
        .put("/consumer", &registers(&[("a", "2")]))
        .assert(202, "");
    daemon
        .get("/provider")
        .assert(200, r#"{"registers":{"a":{"value":2}}}"#);
}

#[test]
fn a1_other_methods_are_405_with_allow() {
    let daemon = Daemon::start(&[]);
    for (method, path) in [
        ("POST", "/consumer"),
        ("DELETE", "/consumer"),
        ("PATCH", "/consumer"),
        ("OPTIONS", "/provider"),
        ("POST", "/provider"),
        ("HEAD", "/consumer"),
    ] {
        let reply = daemon.request(method, path, "");
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.header("Allow"), Some("GET, PUT"), "{method} {path}");
        if method != "HEAD" {
            assert!(reply.error().contains(method));
        }
    }
}

#[test]
fn a1_other_paths_are_404() {
    let daemon = Daemon::start(&[]);
    for path in [
        "/consumers",
        "/consumer/",
        "/consumer/a",
        "/Provider",
        "/api/consumer",
        "/x?name=a",
    ] {
        daemon.get(path).assert_error(404, "no resource");
        daemon.put(path, "{}").assert_error(404, "no resource");
    }
}

#[test]
fn a1_keep_alive_and_several_requests_open_at_once() {
    let daemon = Daemon::start(&[]);
    // One connection carries many requests in turn.
    let mut connection = daemon.connect();
    for round in 0..20 {
        let body = registers(&[("k", &round.to_string())]);
        connection
            .request("PUT", "/provider", &body)
            .assert(204, "");
        connection.request("GET", "/consumer?name=k", "").assert(
            200,
            &format!(r#"{{"registers":{{"k":{{"value":{round}}}}}}}"#),
        );
    }
    // A client holds a consumer poll and a provider poll while it reads and writes.
    let consumer = spawn_request(daemon.address, "GET", "/consumer?name=x&wait=20s", "");
    let provider = spawn_request(daemon.address, "GET", "/provider?name=x&wait=20s", "");
    wait_for_held_polls(&daemon, 2);
    connection
        .request("GET", "/consumer?name=k", "")
        .assert(200, r#"{"registers":{"k":{"value":19}}}"#);
    connection
        .request("PUT", "/consumer", &registers(&[("x", "\"on\"")]))
        .assert(202, "");
    provider
        .join()
        .unwrap()
        .assert(200, r#"{"registers":{"x":{"value":"on"}}}"#);
    connection
        .request("PUT", "/provider", &registers(&[("x", "\"on\"")]))
        .assert(204, "");
    consumer
        .join()
        .unwrap()
        .assert(200, r#"{"registers":{"x":{"value":"on"}}}"#);
}

// A2. Query parameters

#[test]
fn a2_names_repeat_in_order_and_decode() {
    let daemon = Daemon::start(&[]);
    let names = [
        "dots.in.name",
        "slash/name",
        "colon:name",
        "space name",
        "plus+name",
        "comma,name",
        "été ☃",
        "__proto__",
        "percent%name",
    ];
    let entries: Vec<(&str, &str)> = names.iter().map(|name| (*name, "1")).collect();
    daemon
        .put("/provider", &registers(&entries))
        .assert(204, "");
    for name in names {
        let reply = daemon.get(&format!("/consumer?name={}", encode(name)));
        let json = reply.json();
        assert_eq!(
            json["registers"][name]["value"], 1,
            "{name}: {}",
            reply.body
        );
        assert_eq!(json["registers"].as_object().unwrap().len(), 1);
    }
    // + and %20 are both spaces; %2F is a slash.
    daemon
        .get("/consumer?name=space+name")
        .assert(200, r#"{"registers":{"space name":{"value":1}}}"#);
    daemon
        .get("/consumer?name=slash%2Fname")
        .assert(200, r#"{"registers":{"slash/name":{"value":1}}}"#);
    // Repeated names answer in the order asked.
    daemon
        .get("/consumer?name=__proto__&name=colon:name")
        .assert(
            200,
            r#"{"registers":{"__proto__":{"value":1},"colon:name":{"value":1}}}"#,
        );
    // A comma inside `name` is literal, not a separator.
    daemon
        .get("/consumer?name=comma,name")
        .assert(200, r#"{"registers":{"comma,name":{"value":1}}}"#);
}

#[test]
fn a2_names_list_is_appended_and_absent_names_mean_all() {
    let daemon = Daemon::start(&[]);
    daemon
        .put(
            "/provider",
            &registers(&[("a", "1"), ("b", "2"), ("c", "3")]),
        )
        .assert(204, "");
    daemon.get("/consumer?names=c,a&name=b").assert(
        200,
        r#"{"registers":{"b":{"value":2},"c":{"value":3},"a":{"value":1}}}"#,
    );
    daemon.get("/consumer").assert(
        200,
        r#"{"registers":{"a":{"value":1},"b":{"value":2},"c":{"value":3}}}"#,
    );
    daemon
        .get("/consumer?unknown=1&other")
        .assert(200, &daemon.get("/consumer").body);
    // GET /provider without names takes every pending request.
    daemon
        .put("/consumer", &registers(&[("x", "1"), ("y", "2")]))
        .assert(202, "");
    daemon
        .get("/provider")
        .assert(200, r#"{"registers":{"x":{"value":1},"y":{"value":2}}}"#);
}

#[test]
fn a2_wait_absent_empty_zero_or_negative_answers_at_once() {
    let daemon = Daemon::start(&[]);
    for query in ["", "wait=", "wait=0", "wait=0s", "wait=-5s", "wait=-1h"] {
        let started = Instant::now();
        daemon
            .get(&format!("/consumer?name=none&{query}"))
            .assert(200, r#"{"registers":{}}"#);
        daemon
            .get(&format!("/provider?name=none&{query}"))
            .assert(200, r#"{"registers":{}}"#);
        assert!(started.elapsed() < Duration::from_secs(2), "{query}");
    }
}

#[test]
fn a2_unparsable_wait_is_400() {
    let daemon = Daemon::start(&[]);
    for wait in ["5", "abc", "5 s", "1d", "1.5", "%20"] {
        for resource in ["consumer", "provider"] {
            daemon
                .get(&format!("/{resource}?wait={}", encode(wait)))
                .assert_error(400, "wait");
        }
    }
}

// A3. Request bodies

#[test]
fn a3_registers_missing_or_null_is_400_and_empty_is_a_no_op() {
    let daemon = Daemon::start(&[]);
    for resource in ["/provider", "/consumer"] {
        daemon.put(resource, "{}").assert_error(400, "registers");
        daemon
            .put(resource, r#"{"registers":null}"#)
            .assert_error(400, "registers");
        daemon
            .put(resource, r#"{"other":{}}"#)
            .assert_error(400, "registers");
    }
    daemon
        .put("/provider", r#"{"registers":{}}"#)
        .assert(204, "");
    daemon
        .put("/consumer", r#"{"registers":{}}"#)
        .assert(202, "");
    daemon.get("/consumer").assert(200, r#"{"registers":{}}"#);
}

#[test]
fn a3_malformed_bodies_are_400_and_apply_nothing() {
    let daemon = Daemon::start(&[]);
    daemon
        .put("/provider", &registers(&[("keep", "1")]))
        .assert(204, "");
    let bodies = [
        "",
        "not json",
        "[]",
        "null",
        "{",
        r#"{"registers":[]}"#,
        r#"{"registers":"x"}"#,
        r#"{"registers":{"keep":{"value":2},"bad":5}}"#,
        r#"{"registers":{"keep":{"value":2},"bad":null}}"#,
        r#"{"registers":{"keep":{"value":2},"bad":{"value":}}}"#,
        r#"{"registers":{"keep":{"value":2},"bad":{"ttl":"soon"}}}"#,
        r#"{"registers":{"keep":{"value":2},"bad":{"metadata":[1]}}}"#,
        r#"{"registers":{"keep":{"value":2}}} trailing"#,
    ];
    for body in bodies {
        let reply = daemon.put("/provider", body);
        assert_eq!(reply.status, 400, "{body}");
        assert!(!reply.error().is_empty());
    }
    daemon
        .get("/consumer")
        .assert(200, r#"{"registers":{"keep":{"value":1}}}"#);
}

#[test]
fn a3_entries_unknown_members_ignored_and_missing_value_is_null() {
    let daemon = Daemon::start(&[]);
    daemon
        .put(
            "/provider",
            r#"{"registers":{"a":{"value":1,"colour":"red","ttl":"5s"},"b":{},"c":{"value":null}},"extra":true}"#,
        )
        .assert(204, "");
    daemon.get("/consumer").assert(
        200,
        r#"{"registers":{"a":{"value":1},"b":{"value":null},"c":{"value":null}}}"#,
    );
}

#[test]
fn a3_any_json_value_and_numbers_keep_their_form() {
    let daemon = Daemon::start(&[]);
    let values = [
        "1",
        "-0",
        "1.0",
        "2.50",
        "1e3",
        "1E-7",
        "12345678901234567890123456789",
        "0.1000000000000000055511151231257827",
        "true",
        "false",
        "null",
        r#""text with \"quotes\" and \u00e9""#,
        "[]",
        "{}",
        r#"[1,"two",{"three":3}]"#,
        r#"{"z":1,"a":2,"m":{"y":true,"b":null}}"#,
    ];
    for (position, value) in values.iter().enumerate() {
        let name = format!("v{position}");
        daemon
            .put("/provider", &registers(&[(&name, value)]))
            .assert(204, "");
        daemon.get(&format!("/consumer?name={name}")).assert(
            200,
            &format!(r#"{{"registers":{{"{name}":{{"value":{value}}}}}}}"#),
        );
    }
}

#[test]
fn a3_content_type_is_not_required() {
    let daemon = Daemon::start(&[]);
    let body = registers(&[("a", "1")]);
    for content_type in [
        "",
        "Content-Type: text/plain\r\n",
        "Content-Type: application/x-www-form-urlencoded\r\n",
    ] {
        let mut connection = daemon.connect();
        connection.send(
            format!(
                "PUT /provider HTTP/1.1\r\nHost: x\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        connection.read_reply().assert(204, "");
    }
}

// A4. GET /consumer

#[test]
fn a4_answer_shape() {
    let daemon = Daemon::start(&[]);
    let reply = daemon.get("/consumer");
    reply.assert(200, r#"{"registers":{}}"#);
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    daemon
        .put(
            "/provider",
            r#"{"registers":{"none":{"value":null},"empty":{"value":1,"metadata":{}},"nullmeta":{"value":1,"metadata":null},"meta":{"value":1,"metadata":{"unit":"°C","z":1,"a":[1]}}}}"#,
        )
        .assert(204, "");
    daemon.get("/consumer").assert(
        200,
        r#"{"registers":{"empty":{"value":1},"meta":{"value":1,"metadata":{"unit":"°C","z":1,"a":[1]}},"none":{"value":null},"nullmeta":{"value":1}}}"#,
    );
    // Missing names are simply absent, never placeholders.
    daemon
        .get("/consumer?name=missing&name=none")
        .assert(200, r#"{"registers":{"none":{"value":null}}}"#);
}

#[test]
fn a4_metadata_and_key_order_serialise_the_same_every_time() {
    let daemon = Daemon::start(&[]);
    daemon
        .put(
            "/provider",
            r#"{"registers":{"a":{"value":{"z":1, "a": 2},"metadata":{"y": 1, "b": 2}}}}"#,
        )
        .assert(204, "");
    let first = daemon.get("/consumer?name=a").body;
    assert_eq!(
        first,
        r#"{"registers":{"a":{"value":{"z":1,"a":2},"metadata":{"y":1,"b":2}}}}"#
    );
    for _ in 0..5 {
        assert_eq!(daemon.get("/consumer?name=a").body, first);
    }
}

/// A long poll on `a` that the action ends; the answer is the snapshot after it.
fn poll_ends_by(daemon: &Daemon, setup: &str, action: impl FnOnce(&Daemon), expected: &str) {
    daemon.put("/provider", setup).assert(204, "");
    let poll = spawn_request(
        daemon.address,
        "GET",
        "/consumer?name=a&name=b&wait=20s",
        "",
    );
    wait_for_held_polls(daemon, 1);
    let started = Instant::now();
    action(daemon);
    poll.join().unwrap().assert(200, expected);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a4_long_poll_wakes_on_create_value_metadata_expiry_and_delete() {
    let setup = r#"{"registers":{"b":{"value":1,"ttl":"1m"}}}"#;
    let daemon = Daemon::start(&[]);
    poll_ends_by(
        &daemon,
        setup,
        |d| {
            d.put("/provider", &registers(&[("a", "1")]));
        },
        r#"{"registers":{"a":{"value":1},"b":{"value":1}}}"#,
    );
    poll_ends_by(
        &daemon,
        setup,
        |d| {
            d.put("/provider", &registers(&[("b", "2")]));
        },
        r#"{"registers":{"a":{"value":1},"b":{"value":2}}}"#,
    );
    poll_ends_by(
        &daemon,
        r#"{"registers":{"b":{"value":2,"ttl":"1m"}}}"#,
        |d| {
            d.put(
                "/provider",
                r#"{"registers":{"b":{"value":2,"metadata":{"m":1},"ttl":"1m"}}}"#,
            );
        },
        r#"{"registers":{"a":{"value":1},"b":{"value":2,"metadata":{"m":1}}}}"#,
    );
    poll_ends_by(
        &daemon,
        r#"{"registers":{"b":{"value":2,"metadata":{"m":1},"ttl":"1m"}}}"#,
        |d| {
            d.request("DELETE", "/provider?name=b", "");
        },
        r#"{"registers":{"a":{"value":1}}}"#,
    );
    // Expiry: `a` was published with the default ttl (10s); republish it short-lived.
    poll_ends_by(
        &daemon,
        r#"{"registers":{"a":{"value":1,"ttl":"1m"}}}"#,
        |d| {
            d.put(
                "/provider",
                r#"{"registers":{"a":{"value":1,"ttl":"100ms"}}}"#,
            );
        },
        r#"{"registers":{}}"#,
    );
}

#[test]
fn a4_refresh_without_change_wakes_no_one_and_timeout_answers_snapshot() {
    let daemon = Daemon::start(&[]);
    daemon
        .put(
            "/provider",
            r#"{"registers":{"a":{"value":1,"metadata":{"m":1}}}}"#,
        )
        .assert(204, "");
    let started = Instant::now();
    let poll = spawn_request(daemon.address, "GET", "/consumer?name=a&wait=800ms", "");
    wait_for_held_polls(&daemon, 1);
    for _ in 0..5 {
        daemon
            .put(
                "/provider",
                r#"{"registers":{"a":{"value":1,"metadata":{"m":1},"ttl":"30s"}}}"#,
            )
            .assert(204, "");
    }
    poll.join()
        .unwrap()
        .assert(200, r#"{"registers":{"a":{"value":1,"metadata":{"m":1}}}}"#);
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "a refresh must not end the poll early"
    );
}

#[test]
fn a4_poll_on_everything_wakes_for_any_register() {
    let daemon = Daemon::start(&[]);
    let poll = spawn_request(daemon.address, "GET", "/consumer?wait=20s", "");
    wait_for_held_polls(&daemon, 1);
    daemon
        .put("/provider", &registers(&[("any", "\"x\"")]))
        .assert(204, "");
    poll.join()
        .unwrap()
        .assert(200, r#"{"registers":{"any":{"value":"x"}}}"#);
}

#[test]
fn a4_poll_is_not_woken_by_other_registers() {
    let daemon = Daemon::start(&[]);
    let started = Instant::now();
    let poll = spawn_request(daemon.address, "GET", "/consumer?name=mine&wait=600ms", "");
    wait_for_held_polls(&daemon, 1);
    daemon
        .put("/provider", &registers(&[("other", "1")]))
        .assert(204, "");
    daemon
        .put("/consumer", &registers(&[("mine", "1")]))
        .assert(202, "");
    poll.join().unwrap().assert(200, r#"{"registers":{}}"#);
    assert!(started.elapsed() >= Duration::from_millis(600));
}

// A5. GET /provider

#[test]
fn a5_pending_requests_are_taken_once() {
    let daemon = Daemon::start(&[]);
    daemon
        .put(
            "/consumer",
            r#"{"registers":{"a":{"value":null},"b":{},"c":{"value":[1]}}}"#,
        )
        .assert(202, "");
    daemon.get("/provider?name=a&name=b").assert(
        200,
        r#"{"registers":{"a":{"value":null},"b":{"value":null}}}"#,
    );
    daemon
        .get("/provider?name=a&name=b")
        .assert(200, r#"{"registers":{}}"#);
    daemon
        .get("/provider")
        .assert(200, r#"{"registers":{"c":{"value":[1]}}}"#);
    daemon.get("/provider").assert(200, r#"{"registers":{}}"#);
}

#[test]
fn a5_pending_answers_at_once_even_with_wait() {
    let daemon = Daemon::start(&[]);
    daemon
        .put("/consumer", &registers(&[("a", "1")]))
        .assert(202, "");
    let started = Instant::now();
    daemon
        .get("/provider?name=a&wait=20s")
        .assert(200, r#"{"registers":{"a":{"value":1}}}"#);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a5_waits_for_a_request_then_times_out_empty() {
    let daemon = Daemon::start(&[]);
    let poll = spawn_request(daemon.address, "GET", "/provider?name=a&wait=20s", "");
    wait_for_held_polls(&daemon, 1);
    daemon
        .put("/consumer", &registers(&[("other", "1")]))
        .assert(202, "");
    daemon
        .put("/consumer", &registers(&[("a", "true")]))
        .assert(202, "");
    poll.join()
        .unwrap()
        .assert(200, r#"{"registers":{"a":{"value":true}}}"#);
    let started = Instant::now();
    daemon
        .get("/provider?name=a&wait=300ms")
        .assert(200, r#"{"registers":{}}"#);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn a5_each_request_goes_to_one_poller() {
    let daemon = Daemon::start(&[]);
    let polls: Vec<_> = (0..4)
        .map(|_| spawn_request(daemon.address, "GET", "/provider?name=a&wait=2s", ""))
        .collect();
    wait_for_held_polls(&daemon, 4);
    daemon
        .put("/consumer", &registers(&[("a", "1")]))
        .assert(202, "");
    let delivered = polls
        .into_iter()
        .map(|poll| poll.join().unwrap().body)
        .filter(|body| body != r#"{"registers":{}}"#)
        .collect::<Vec<_>>();
    assert_eq!(delivered, [r#"{"registers":{"a":{"value":1}}}"#]);
}

#[test]
fn a5_a_poller_that_went_away_consumes_nothing() {
    let daemon = Daemon::start(&[]);
    let mut gone = daemon.connect();
    gone.send_request("GET", "/provider?name=a&wait=20s", "");
    wait_for_held_polls(&daemon, 1);
    drop(gone);
    daemon
        .put("/consumer", &registers(&[("a", "42")]))
        .assert(202, "");
    wait_for_held_polls(&daemon, 0);
    daemon
        .get("/provider?name=a")
        .assert(200, r#"{"registers":{"a":{"value":42}}}"#);
}

#[test]
fn a5_requests_need_no_register_and_survive_its_expiry() {
    let daemon = Daemon::start(&[]);
    daemon
        .put(
            "/provider",
            r#"{"registers":{"a":{"value":1,"ttl":"50ms"}}}"#,
        )
        .assert(204, "");
    daemon
        .put("/consumer", &registers(&[("a", "2"), ("ghost", "3")]))
        .assert(202, "");
    wait_until("a to expire", || {
        daemon.get("/consumer?name=a").body == r#"{"registers":{}}"#
    });
    daemon.get("/provider?name=a&name=ghost").assert(
        200,
        r#"{"registers":{"a":{"value":2},"ghost":{"value":3}}}"#,
    );
}

// A6. Durations

#[test]
fn a6_real_client_durations_are_accepted_for_wait_and_ttl() {
    let daemon = Daemon::start(&[]);
    for duration in [
        "5s",
        "30s",
        "500ms",
        "1m0s",
        "0.01s",
        "300s",
        "100µs",
        "100μs",
        "1h30m500ms",
        "1.5s",
        ".5s",
        "0",
    ] {
        daemon
            .put(
                "/provider",
                &format!(r#"{{"registers":{{"d":{{"value":1,"ttl":"{duration}"}}}}}}"#),
            )
            .assert(204, "");
    }
    for wait in ["0.01s", "100µs", "1ms", "10ms"] {
        daemon
            .get(&format!("/consumer?name=none&wait={}", encode(wait)))
            .assert(200, r#"{"registers":{}}"#);
    }
}

#[test]
fn a6_invalid_durations_are_400() {
    let daemon = Daemon::start(&[]);
    for duration in ["5", "abc", "5 s", "1d", "1.5", "s", "9999999999h"] {
        daemon
            .put(
                "/provider",
                &format!(r#"{{"registers":{{"d":{{"value":1,"ttl":"{duration}"}}}}}}"#),
            )
            .assert_error(400, "ttl");
    }
}

// A7. PUT /provider

#[test]
fn a7_non_string_ttl_is_400_saying_what_is_expected() {
    let daemon = Daemon::start(&[]);
    for ttl in ["10", "1.5", "true", "[\"5s\"]", "{}"] {
        daemon
            .put(
                "/provider",
                &format!(r#"{{"registers":{{"a":{{"value":1,"ttl":{ttl}}}}}}}"#),
            )
            .assert_error(400, "ttl must be a duration string such as \"10s\"");
    }
}

#[test]
fn a7_missing_zero_or_negative_ttl_is_the_default() {
    let daemon = Daemon::start(&[]);
    for (name, ttl) in [
        ("a", ""),
        ("b", r#","ttl":"0s""#),
        ("c", r#","ttl":"-5s""#),
        ("d", r#","ttl":null"#),
    ] {
        daemon
            .put(
                "/provider",
                &format!(r#"{{"registers":{{"{name}":{{"value":1{ttl}}}}}}}"#),
            )
            .assert(204, "");
        let json = daemon
            .get(&format!("/consumer?name={name}&details=true"))
            .json();
        assert_eq!(json["registers"][name]["ttl"], "10s", "{name}");
    }
}

#[test]
fn a7_an_empty_ttl_is_a_bad_ttl_like_any_other() {
    // The grammar has no empty duration, and no original client sends one (the Go
    // client omits a zero ttl; JS and Python omit a missing one).
    let daemon = Daemon::start(&[]);
    daemon
        .put("/provider", r#"{"registers":{"e":{"value":1,"ttl":""}}}"#)
        .assert_error(400, r#"registers."e".ttl: invalid duration"#);
    assert_eq!(daemon.get("/consumer?name=e").body, r#"{"registers":{}}"#);
}

// The default ttl and sliding expiry are tested in memory on a clock the test moves
// (src/server/service/tests.rs); expiry across the socket is A9's test.

#[test]
fn a7_answer_is_204_with_empty_body() {
    let daemon = Daemon::start(&[]);
    let reply = daemon.put("/provider", &registers(&[("a", "1")]));
    reply.assert(204, "");
    assert_eq!(reply.header("Content-Length"), None);
}

// A8. PUT /consumer

#[test]
fn a8_latest_request_wins_and_unknown_names_are_accepted() {
    let daemon = Daemon::start(&[]);
    let reply = daemon.put("/consumer", &registers(&[("nobody", "1")]));
    reply.assert(202, "");
    assert_eq!(reply.header("Content-Length"), Some("0"));
    daemon
        .put("/consumer", &registers(&[("nobody", "2")]))
        .assert(202, "");
    daemon
        .put("/consumer", &registers(&[("nobody", "{\"v\":3}")]))
        .assert(202, "");
    daemon
        .get("/provider?name=nobody")
        .assert(200, r#"{"registers":{"nobody":{"value":{"v":3}}}}"#);
}

// A9. Expiry

#[test]
fn a9_gone_after_ttl_never_before() {
    let daemon = Daemon::start(&[]);
    let poll = spawn_request(daemon.address, "GET", "/consumer?name=a&wait=20s", "");
    wait_for_held_polls(&daemon, 1);
    // Measured from before the PUT: the server's clock starts the ttl later.
    let published = Instant::now();
    daemon
        .put(
            "/provider",
            r#"{"registers":{"a":{"value":1,"ttl":"300ms"}}}"#,
        )
        .assert(204, "");
    poll.join()
        .unwrap()
        .assert(200, r#"{"registers":{"a":{"value":1}}}"#);
    let expiry = spawn_request(daemon.address, "GET", "/consumer?name=a&wait=20s", "");
    let answer = expiry.join().unwrap();
    let elapsed = published.elapsed();
    answer.assert(200, r#"{"registers":{}}"#);
    assert!(
        elapsed >= Duration::from_millis(300),
        "expired early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "expired late: {elapsed:?}"
    );
    daemon.get("/consumer").assert(200, r#"{"registers":{}}"#);
    daemon.wait_for_log("register \"a\" expired");
}

// A10. Shutdown

#[test]
fn a10_sigterm_answers_held_polls_at_once_and_exits_zero() {
    for signal in ["TERM", "INT"] {
        let mut daemon = Daemon::start(&[]);
        daemon
            .put("/provider", &registers(&[("a", "1")]))
            .assert(204, "");
        daemon
            .put("/consumer", &registers(&[("other", "1")]))
            .assert(202, "");
        let consumer = spawn_request(daemon.address, "GET", "/consumer?name=a&wait=60s", "");
        let provider = spawn_request(daemon.address, "GET", "/provider?name=b&wait=60s", "");
        wait_for_held_polls(&daemon, 2);
        let started = Instant::now();
        daemon.signal(signal);
        consumer
            .join()
            .unwrap()
            .assert(200, r#"{"registers":{"a":{"value":1}}}"#);
        let provider = provider.join().unwrap();
        provider.assert(200, r#"{"registers":{}}"#);
        assert!(
            provider.index() > 0,
            "GET /provider carries X-Reg-Index (B1)"
        );
        let status = daemon.wait_exit();
        assert!(status.success(), "SIG{signal}: {status:?}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "SIG{signal}: exit took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a10_shutdown_with_idle_keep_alive_connections_is_prompt() {
    let mut daemon = Daemon::start(&[]);
    let mut idle: Vec<Http> = (0..20).map(|_| daemon.connect()).collect();
    for connection in &mut idle {
        connection
            .request("GET", "/healthz", "")
            .assert(200, r#"{"status":"ok"}"#);
    }
    let started = Instant::now();
    daemon.signal("TERM");
    assert!(daemon.wait_exit().success());
    assert!(started.elapsed() < Duration::from_secs(1));
}
