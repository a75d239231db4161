//! The HTTP layer regd owns: framing, keep-alive, pipelining, Expect, HTTP/1.0,
//! malformed requests, the connection cap, and the connection burst that tiny_http
//! could not carry.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn chunked_bodies_are_decoded() {
    let daemon = Daemon::start(&[]);
    let mut connection = daemon.connect();
    connection.send(
        b"PUT /provider HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          d\r\n{\"registers\":\r\n\
          14;ext=1\r\n{\"c\":{\"value\":\"chunk\r\n\
          5\r\ned\"}}\r\n\
          1\r\n}\r\n\
          0\r\nX-Trailer: yes\r\n\r\n",
    );
    connection.read_reply().assert(204, "");
    // The connection stays usable after a chunked request.
    connection
        .request("GET", "/consumer?name=c", "")
        .assert(200, r#"{"registers":{"c":{"value":"chunked"}}}"#);
}

#[test]
fn chunked_bodies_respect_the_body_limit() {
    let daemon = Daemon::start(&["--max-body", "64"]);
    let mut connection = daemon.connect();
    let chunk = "x".repeat(40);
    connection.send(
        format!(
            "PUT /provider HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n28\r\n{chunk}\r\n28\r\n{chunk}\r\n0\r\n\r\n"
        )
        .as_bytes(),
    );
    connection
        .read_reply()
        .assert_error(413, "larger than 64 bytes");
}

#[test]
fn malformed_chunks_are_400() {
    let daemon = Daemon::start(&[]);
    let mut connection = daemon.connect();
    connection.send(
        b"PUT /provider HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    );
    connection.read_reply().assert_error(400, "chunked");
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let daemon = Daemon::start(&[]);
    let body = registers(&[("big", &format!("\"{}\"", "v".repeat(2000)))]);
    let mut connection = daemon.connect();
    connection.send(
        format!(
            "PUT /provider HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    assert!(connection.read_continue(), "100 Continue before the body");
    connection.send(body.as_bytes());
    connection.read_reply().assert(204, "");
}

#[test]
fn expect_with_a_too_large_body_is_refused_without_continue() {
    let daemon = Daemon::start(&["--max-body", "100"]);
    let mut connection = daemon.connect();
    connection.send(
        b"PUT /provider HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n",
    );
    connection.read_reply().assert_error(413, "larger than 100");
}

#[test]
fn http_1_0_closes_unless_keep_alive_is_asked() {
    let daemon = Daemon::start(&[]);
    let mut connection = daemon.connect();
    connection.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    let reply = connection.read_reply();
    reply.assert(200, r#"{"status":"ok"}"#);
    assert_eq!(reply.header("Connection"), Some("close"));
    assert!(connection.is_closed_by_server());

    let mut connection = daemon.connect();
    connection.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    connection.read_reply().assert(200, r#"{"status":"ok"}"#);
    connection.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    connection.read_reply().assert(200, r#"{"status":"ok"}"#);
}

#[test]
fn connection_close_is_honoured() {
    let daemon = Daemon::start(&[]);
    let mut connection = daemon.connect();
    connection.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let reply = connection.read_reply();
    reply.assert(200, r#"{"status":"ok"}"#);
    assert_eq!(reply.header("Connection"), Some("close"));
    assert!(connection.is_closed_by_server());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let daemon = Daemon::start(&[]);
    let put = registers(&[("p", "1")]);
    let mut connection = daemon.connect();
    connection.send(
        format!(
            "PUT /provider HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{put}\
             GET /consumer?name=p HTTP/1.1\r\nHost: x\r\n\r\n\
             GET /nope HTTP/1.1\r\nHost: x\r\n\r\n\
             GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
            put.len()
        )
        .as_bytes(),
    );
    connection.read_reply().assert(204, "");
    connection
        .read_reply()
        .assert(200, r#"{"registers":{"p":{"value":1}}}"#);
    connection.read_reply().assert_error(404, "/nope");
    connection.read_reply().assert(200, r#"{"status":"ok"}"#);
}

#[test]
fn malformed_heads_are_400_and_close() {
    let daemon = Daemon::start(&[]);
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /consumer HTTP/9.9\r\n\r\n",
        b"GET /consumer HTTP/1.1\r\nBad Header\r\n\r\n",
        b"PUT /provider HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"PUT /provider HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"PUT /provider HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
    ] {
        let mut connection = daemon.connect();
        connection.send(raw);
        let reply = connection.read_reply();
        assert_eq!(reply.status, 400, "{:?}", String::from_utf8_lossy(raw));
        assert!(!reply.error().is_empty());
        assert!(connection.is_closed_by_server());
    }
    daemon.get("/healthz").assert(200, r#"{"status":"ok"}"#);
}

#[test]
fn unsupported_transfer_encoding_is_501() {
    let daemon = Daemon::start(&[]);
    let mut connection = daemon.connect();
    connection.send(b"PUT /provider HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n");
    connection.read_reply().assert_error(501, "gzip");
}

#[test]
fn request_line_without_end_is_414_and_header_flood_is_431() {
    let daemon = Daemon::start(&["--max-uri", "100", "--max-head", "4096"]);
    let mut connection = daemon.connect();
    // Never ends its request line: refused as soon as it is too long.
    connection.send(format!("GET /consumer?name={}", "a".repeat(5000)).as_bytes());
    connection.read_reply().assert_error(414, "longer than 100");

    let mut connection = daemon.connect();
    let mut head = String::from("GET /consumer HTTP/1.1\r\n");
    for header in 0..100 {
        head.push_str(&format!("X-H{header}: 1\r\n"));
    }
    head.push_str("\r\n");
    connection.send(head.as_bytes());
    connection.read_reply().assert_error(431, "headers");

    // A header line without end grows no further than the head limit.
    let mut connection = daemon.connect();
    connection.send(b"GET /consumer HTTP/1.1\r\nX-Endless: ");
    connection.send(&[b'z'; 8192]);
    connection
        .read_reply()
        .assert_error(431, "larger than 4096");
}

#[test]
fn connection_cap_answers_503_and_recovers() {
    let daemon = Daemon::start(&["--max-connections", "4"]);
    let mut held: Vec<Http> = (0..4).map(|_| daemon.connect()).collect();
    for connection in &mut held {
        connection
            .request("GET", "/healthz", "")
            .assert(200, r#"{"status":"ok"}"#);
    }
    let mut extra = daemon.connect();
    extra.send_request("GET", "/healthz", "");
    let reply = extra.read_reply();
    reply.assert_error(503, "connection limit");
    assert_eq!(reply.header("Retry-After"), Some("1"));
    drop(held.pop());
    wait_until("a free connection slot", || {
        daemon.get("/healthz").status == 200
    });
    // Each probe needs a free slot itself, so poll until one is found.
    wait_until("the refusal to be counted", || {
        metric(&daemon, "regd_connections_refused_total") >= Some(1.0)
    });
    drop(held);
    wait_until("every slot free", || {
        metric(&daemon, "regd_connections_open") == Some(1.0)
    });
}

/// The regression test for the connection layer: 100 keep-alive connections opened
/// in one burst, every one answered within a second.
#[test]
fn burst_of_100_connections_all_answered_within_a_second() {
    let daemon = Daemon::start(&[]);
    daemon
        .put("/provider", &registers(&[("x", "1")]))
        .assert(204, "");
    let request = b"GET /consumer?name=x HTTP/1.1\r\nHost: x\r\n\r\n";
    let started = Instant::now();
    let mut connections: Vec<Http> = (0..100)
        .map(|_| Http::from_stream(TcpStream::connect(daemon.address).expect("connect")))
        .collect();
    for connection in &mut connections {
        connection.send(request);
    }
    for connection in &mut connections {
        connection
            .stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        connection
            .read_reply()
            .assert(200, r#"{"registers":{"x":{"value":1}}}"#);
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(1), "burst took {elapsed:?}");
    // And they stay alive for a second round.
    for connection in &mut connections {
        connection.send(request);
        connection
            .read_reply()
            .assert(200, r#"{"registers":{"x":{"value":1}}}"#);
    }
}

#[test]
fn absolute_form_targets_are_served() {
    let daemon = Daemon::start(&[]);
    let mut connection = daemon.connect();
    connection.send(b"GET http://gateway:8080/healthz HTTP/1.1\r\nHost: gateway\r\n\r\n");
    connection.read_reply().assert(200, r#"{"status":"ok"}"#);
}

#[test]
fn http_1_0_keep_alive_is_confirmed_in_the_answer() {
    let daemon = Daemon::start(&[]);
    let mut connection = daemon.connect();
    connection.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let reply = connection.read_reply();
    assert_eq!(reply.header("Connection"), Some("keep-alive"));
}

/// With its file descriptors exhausted regd cannot accept; it must log, keep the
/// accept loop alive, and serve again once descriptors are free.
#[test]
fn accept_loop_survives_running_out_of_file_descriptors() {
    let script = format!(
        "ulimit -n 24 && exec {} --addr 127.0.0.1:0",
        env!("CARGO_BIN_EXE_regd")
    );
    let daemon = Daemon::start_command(program("sh").args(["-c", &script]));
    let mut held = Vec::new();
    // More connections than descriptors: the later ones wait in the backlog.
    for _ in 0..40 {
        held.push(TcpStream::connect(daemon.address).expect("connect"));
    }
    daemon.wait_for_log("accept failed (will keep trying)");
    drop(held);
    wait_until("service to resume", || {
        let mut connection = Http::connect(daemon.address);
        connection.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        connection
            .try_read_reply()
            .is_some_and(|reply| reply.status == 200)
    });
}
