//! Faults: clients that die mid-request or mid-body, half-open connections, clients
//! that never read their answers, hostile bodies, and floods. regd must keep serving
//! everyone else and lose nothing it promised to keep.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::support::*;

fn healthy(daemon: &Daemon) {
    daemon.get("/healthz").assert(200, r#"{"status":"ok"}"#);
}

#[test]
fn clients_killed_mid_head_and_mid_body_change_nothing() {
    let daemon = Daemon::start(&[]);
    daemon
        .put("/provider", &registers(&[("keep", "1")]))
        .assert(204, "");
    for partial in [
        &b"PUT /provider HTTP/1.1\r\nHost: x\r\nContent-Le"[..],
        b"PUT /provider HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"registers\":{\"keep\":{\"value\":2",
        b"PUT /provider HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"registers\":{\"k",
    ] {
        let mut stream = TcpStream::connect(daemon.address).unwrap();
        stream.write_all(partial).unwrap();
        drop(stream);
    }
    // The reset variety: the client vanishes without a FIN reaching a reader.
    let stream = TcpStream::connect(daemon.address).unwrap();
    (&stream)
        .write_all(b"PUT /provider HTTP/1.1\r\nContent-Length: 50\r\n\r\n{")
        .unwrap();
    stream.shutdown(Shutdown::Both).unwrap();
    wait_until("the dead connections to be closed", || {
        metric(&daemon, "regd_connections_open") == Some(1.0)
    });
    daemon
        .get("/consumer")
        .assert(200, r#"{"registers":{"keep":{"value":1}}}"#);
}

#[test]
fn half_open_connections_are_closed_after_the_read_timeout() {
    let daemon = Daemon::start(&["--read-timeout", "300ms"]);
    let mut held = Vec::new();
    for _ in 0..20 {
        let stream = TcpStream::connect(daemon.address).unwrap();
        // Half a request and then silence: the client stopped mid-head.
        (&stream)
            .write_all(b"GET /consumer HTTP/1.1\r\nHo")
            .unwrap();
        held.push(stream);
    }
    wait_until("20 connections open", || {
        metric(&daemon, "regd_connections_open") == Some(21.0)
    });
    let started = Instant::now();
    wait_until("the half-open connections to be closed", || {
        metric(&daemon, "regd_connections_open") == Some(1.0)
    });
    assert!(started.elapsed() < Duration::from_secs(5));
    healthy(&daemon);
}

#[test]
fn a_client_that_never_reads_is_cut_off_by_the_write_timeout() {
    let daemon = Daemon::start(&["--write-timeout", "300ms"]);
    // A large value makes every answer large.
    let big = format!("\"{}\"", "v".repeat(200_000));
    daemon
        .put("/provider", &registers(&[("big", &big)]))
        .assert(204, "");
    let stream = TcpStream::connect(daemon.address).unwrap();
    // Ask for the big register many times and never read an answer.
    let request = b"GET /consumer?name=big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(100);
    let _ = (&stream).write_all(&request);
    wait_until("the stuck connection to be closed", || {
        metric(&daemon, "regd_connections_open") == Some(1.0)
    });
    healthy(&daemon);
    drop(stream);
}

#[test]
fn deeply_nested_json_is_a_clear_400_on_every_field() {
    let daemon = Daemon::start(&[]);
    let deep = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    for depth in [129, 10_000, 200_000] {
        let nested = deep(depth);
        let value = format!(r#"{{"registers":{{"a":{{"value":{nested}}}}}}}"#);
        let metadata =
            format!(r#"{{"registers":{{"a":{{"value":1,"metadata":{{"m":{nested}}}}}}}}}"#);
        let ttl = format!(r#"{{"registers":{{"a":{{"value":1,"ttl":{nested}}}}}}}"#);
        let ignored = format!(r#"{{"registers":{{"a":{{"value":1,"extra":{nested}}}}}}}"#);
        let outside = format!(r#"{{"registers":{{"a":{{"value":1}}}},"extra":{nested}}}"#);
        // Fields regd keeps are refused with a message naming them.
        for (resource, body, field) in [
            ("/provider", &value, "value"),
            ("/consumer", &value, "value"),
            ("/provider", &metadata, "metadata"),
            ("/provider", &ttl, "ttl"),
        ] {
            let reply = daemon.put(resource, body);
            reply.assert_error(400, field);
        }
        daemon
            .put("/provider", &nested)
            .assert_error(400, "JSON object");
        // Members regd ignores are skipped without recursion: accepted or refused,
        // never a crash.
        for body in [&ignored, &outside, &metadata, &ttl] {
            for resource in ["/provider", "/consumer"] {
                let status = daemon.put(resource, body).status;
                assert!(status < 500, "{resource} depth {depth}: {status}");
            }
        }
    }
    daemon
        .put(
            "/provider",
            &format!(r#"{{"registers":{{"ok":{{"value":{}}}}}}}"#, deep(128)),
        )
        .assert(204, "");
    healthy(&daemon);
}

#[test]
fn a_flood_of_requests_for_unknown_names_is_bounded_and_harms_nothing_else() {
    let daemon = Daemon::start(&["--max-pending", "100"]);
    daemon
        .put("/provider", &registers(&[("real", "1")]))
        .assert(204, "");
    let mut connection = daemon.connect();
    let mut refused = 0;
    for round in 0..300 {
        let reply = connection.request(
            "PUT",
            "/consumer",
            &registers(&[(&format!("nobody.{round}"), "1")]),
        );
        match reply.status {
            202 => {}
            503 => {
                assert_eq!(reply.header("Retry-After"), Some("1"));
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert_eq!(refused, 200);
    assert_eq!(metric(&daemon, "regd_pending_requests"), Some(100.0));
    // Registers, reads and polls are unaffected.
    daemon
        .put("/provider", &registers(&[("real", "2")]))
        .assert(204, "");
    daemon
        .get("/consumer?name=real")
        .assert(200, r#"{"registers":{"real":{"value":2}}}"#);
    // A provider that takes its (real) requests frees room.
    daemon
        .get("/provider?name=nobody.0")
        .assert(200, r#"{"registers":{"nobody.0":{"value":1}}}"#);
    daemon
        .put("/consumer", &registers(&[("real", "3")]))
        .assert(202, "");
}

#[test]
fn garbage_bytes_never_take_the_daemon_down() {
    let daemon = Daemon::start(&[]);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..200 {
        let mut bytes = Vec::new();
        let length = 1 + (round * 37) % 600;
        for _ in 0..length {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            bytes.push((seed & 0xff) as u8);
        }
        if round % 3 == 0 {
            // Garbage after a valid start.
            let mut prefixed = b"PUT /provider HTTP/1.1\r\n".to_vec();
            prefixed.extend_from_slice(&bytes);
            bytes = prefixed;
        }
        let mut connection = daemon.connect();
        connection.send(&bytes);
        let _ = connection.stream.shutdown(Shutdown::Write);
        if let Some(reply) = connection.try_read_reply() {
            assert!(
                (400..=505).contains(&reply.status),
                "garbage answered {}",
                reply.status
            );
        }
    }
    healthy(&daemon);
}

#[test]
fn held_polls_of_clients_that_hang_up_are_released_at_once() {
    let daemon = Daemon::start(&[]);
    let mut gone = Vec::new();
    for target in [
        "/consumer?name=a&wait=5m",
        "/consumer?wait=5m",
        "/provider?name=a&wait=5m",
    ] {
        let mut connection = daemon.connect();
        connection.send_request("GET", target, "");
        gone.push(connection);
    }
    wait_for_held_polls(&daemon, 3);
    // A pipelined second request is activity, not a hang-up: the poll stays held.
    let mut pipelining = daemon.connect();
    pipelining.send_request("GET", "/consumer?name=p&wait=5m", "");
    wait_for_held_polls(&daemon, 4);
    pipelining.send_request("GET", "/healthz", "");
    let started = Instant::now();
    drop(gone);
    wait_for_held_polls(&daemon, 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Nothing was consumed by the departed provider poll, and the pipelining client
    // still gets both answers in order.
    daemon
        .put("/provider", &registers(&[("p", "1")]))
        .assert(204, "");
    pipelining
        .read_reply()
        .assert(200, r#"{"registers":{"p":{"value":1}}}"#);
    pipelining.read_reply().assert(200, r#"{"status":"ok"}"#);
}
