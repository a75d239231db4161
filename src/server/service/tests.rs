//! The router and handlers, called with in-memory requests (no sockets).

use super::*;
use std::sync::mpsc;
use std::thread;

use crate::server::{AlwaysConnected, Clock};

fn service() -> Arc<Service> {
    Arc::new(Service::new(ServiceConfig::default()))
}

/// A clock the test moves by hand: expiry is tested without waiting.
struct ManualClock(parking_lot::Mutex<Instant>);

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock()
    }
}

impl ManualClock {
    fn advance(&self, by: Duration) {
        *self.0.lock() += by;
    }
}

/// A service on a [`ManualClock`] (its reaper is not run: every read expires what is
/// due, which is what these tests look at).
fn service_on_clock(config: ServiceConfig) -> (Service, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock(parking_lot::Mutex::new(Instant::now())));
    (Service::with_clock(config, clock.clone()), clock)
}

fn call(service: &Service, method: &str, target: &str, body: &str) -> Response {
    service.handle(
        &Request::new(method, target).with_body(body.as_bytes().to_vec()),
        &AlwaysConnected,
    )
}

#[track_caller]
fn check(service: &Service, method: &str, target: &str, body: &str, status: u16, answer: &str) {
    let response = call(service, method, target, body);
    assert_eq!(
        (response.status, response.body_text()),
        (status, answer),
        "{method} {target} {body}"
    );
}

#[test]
fn routes_and_statuses() {
    let service = service();
    let put = r#"{"registers":{"a":{"value":1}}}"#;
    check(&service, "PUT", "/provider", put, 204, "");
    check(
        &service,
        "GET",
        "/consumer",
        "",
        200,
        r#"{"registers":{"a":{"value":1}}}"#,
    );
    check(&service, "PUT", "/consumer", put, 202, "");
    check(
        &service,
        "GET",
        "/provider",
        "",
        200,
        r#"{"registers":{"a":{"value":1}}}"#,
    );
    check(&service, "GET", "/provider", "", 200, r#"{"registers":{}}"#);
    check(&service, "GET", "/healthz", "", 200, r#"{"status":"ok"}"#);
    check(&service, "DELETE", "/provider?name=a", "", 204, "");
    check(&service, "GET", "/consumer", "", 200, r#"{"registers":{}}"#);
    for (method, path) in [
        ("POST", "/consumer"),
        ("DELETE", "/consumer"),
        ("PATCH", "/provider"),
        ("HEAD", "/consumer"),
    ] {
        let response = call(&service, method, path, "");
        assert_eq!(response.status, 405, "{method} {path}");
        assert_eq!(response.header("Allow"), Some("GET, PUT"));
        assert!(response.body_text().starts_with(r#"{"error":"#));
    }
    for path in ["/consumers", "/consumer/", "/provider/x", "/CONSUMER"] {
        assert_eq!(call(&service, "GET", path, "").status, 404, "{path}");
    }
    // With the daemon's defaults, / is the dashboard (when built in); switched off
    // (--no-web), it is not found like any other path.
    let dashboard = if cfg!(feature = "web") { 200 } else { 404 };
    assert_eq!(call(&service, "GET", "/", "").status, dashboard);
    let no_web = Service::new(ServiceConfig {
        web: false,
        ..ServiceConfig::default()
    });
    assert_eq!(call(&no_web, "GET", "/", "").status, 404);
}

#[test]
fn every_consumer_answer_carries_the_index() {
    let service = service();
    let first = call(&service, "GET", "/consumer", "");
    let index: u64 = first.header("X-Reg-Index").unwrap().parse().unwrap();
    assert!(index >= 1);
    call(&service, "PUT", "/provider", r#"{"registers":{"a":{}}}"#);
    let second = call(&service, "GET", "/consumer?name=a", "");
    let later: u64 = second.header("X-Reg-Index").unwrap().parse().unwrap();
    assert!(later > index);
    assert!(
        call(&service, "GET", "/provider", "")
            .header("X-Reg-Index")
            .is_some()
    );
}

#[test]
fn delete_needs_a_name() {
    let service = service();
    let response = call(&service, "DELETE", "/provider", "");
    assert_eq!(response.status, 400);
    assert!(response.body_text().contains("name parameter"));
}

#[test]
fn bad_input_is_400_and_changes_nothing() {
    let service = service();
    call(
        &service,
        "PUT",
        "/provider",
        r#"{"registers":{"a":{"value":1}}}"#,
    );
    for body in [
        "",
        "null",
        "{}",
        r#"{"registers":{"a":{"value":2},"b":5}}"#,
        r#"{"registers":{"a":{"value":2},"b":{"value":tru}}}"#,
    ] {
        assert_eq!(
            call(&service, "PUT", "/provider", body).status,
            400,
            "{body}"
        );
        assert_eq!(
            call(&service, "PUT", "/consumer", body).status,
            400,
            "{body}"
        );
    }
    check(
        &service,
        "GET",
        "/consumer",
        "",
        200,
        r#"{"registers":{"a":{"value":1}}}"#,
    );
    check(&service, "GET", "/provider", "", 200, r#"{"registers":{}}"#);
    let ttl = call(
        &service,
        "PUT",
        "/provider",
        r#"{"registers":{"a":{"value":2},"b":{"ttl":5}}}"#,
    );
    assert_eq!(ttl.status, 400);
    assert!(
        ttl.body_text().contains("duration string"),
        "{}",
        ttl.body_text()
    );
    assert_eq!(call(&service, "GET", "/consumer?wait=5", "").status, 400);
    assert_eq!(call(&service, "GET", "/provider?wait=x", "").status, 400);
}

/// Starts a request on its own thread; the answer arrives on the channel.
fn spawn_call(service: &Arc<Service>, target: &str) -> mpsc::Receiver<Response> {
    let (sender, receiver) = mpsc::channel();
    let service = service.clone();
    let target = target.to_string();
    thread::spawn(move || {
        let _ = sender.send(call(&service, "GET", &target, ""));
    });
    receiver
}

/// Waits until `count` polls are registered with the registry.
fn wait_for_waiters(service: &Service, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = service.with_state(|state, _| state.stats());
        if stats.consumer_waiters + stats.provider_waiters == count {
            return;
        }
        assert!(Instant::now() < deadline, "waiters never registered");
        thread::yield_now();
    }
}

const LONG: Duration = Duration::from_secs(30);

#[test]
fn long_poll_wakes_on_change_with_full_snapshot() {
    let service = service();
    call(
        &service,
        "PUT",
        "/provider",
        r#"{"registers":{"a":{"value":1},"b":{"value":1}}}"#,
    );
    let poll = spawn_call(&service, "/consumer?name=a&name=b&wait=30s");
    wait_for_waiters(&service, 1);
    call(
        &service,
        "PUT",
        "/provider",
        r#"{"registers":{"b":{"value":2}}}"#,
    );
    let response = poll.recv_timeout(LONG).expect("woken");
    assert_eq!(
        response.body_text(),
        r#"{"registers":{"a":{"value":1},"b":{"value":2}}}"#
    );
}

#[test]
fn long_poll_times_out_with_snapshot() {
    let service = service();
    let started = Instant::now();
    let response = call(&service, "GET", "/consumer?name=a&wait=50ms", "");
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(response.body_text(), r#"{"registers":{}}"#);
    assert_eq!(service.held_polls.count(), 0);
}

#[test]
fn max_wait_shortens_long_waits() {
    let service = Arc::new(Service::new(ServiceConfig {
        max_wait: Duration::from_millis(20),
        ..ServiceConfig::default()
    }));
    let response = call(&service, "GET", "/consumer?wait=1h", "");
    assert_eq!(response.status, 200);
    let response = call(&service, "GET", "/provider?wait=1h", "");
    assert_eq!(response.status, 200);
}

#[test]
fn index_answers_at_once_when_something_changed_since() {
    let service = service();
    let index = call(&service, "GET", "/consumer", "")
        .header("X-Reg-Index")
        .unwrap()
        .to_string();
    call(&service, "PUT", "/provider", r#"{"registers":{"a":{}}}"#);
    let response = call(
        &service,
        "GET",
        &format!("/consumer?name=a&wait=30s&index={index}"),
        "",
    );
    assert_eq!(
        response.body_text(),
        r#"{"registers":{"a":{"value":null}}}"#
    );
}

#[test]
fn provider_poll_wakes_on_request_and_takes_it_once() {
    let service = service();
    let (sender, answers) = mpsc::channel();
    for _ in 0..2 {
        let (service, sender) = (service.clone(), sender.clone());
        thread::spawn(move || {
            let _ = sender.send(call(&service, "GET", "/provider?name=a&wait=30s", ""));
        });
    }
    wait_for_waiters(&service, 2);
    call(
        &service,
        "PUT",
        "/consumer",
        r#"{"registers":{"a":{"value":7}}}"#,
    );
    let first = answers.recv_timeout(LONG).unwrap();
    assert_eq!(first.body_text(), r#"{"registers":{"a":{"value":7}}}"#);
    // The other poll found nothing and waits again; shutdown releases it empty.
    wait_for_waiters(&service, 1);
    service.shut_down();
    let second = answers.recv_timeout(LONG).unwrap();
    assert_eq!(second.body_text(), r#"{"registers":{}}"#);
}

#[test]
fn a_departed_provider_does_not_consume_requests() {
    struct Gone;
    impl Peer for Gone {
        fn is_connected(&self) -> bool {
            false
        }
    }
    let service = service();
    call(
        &service,
        "PUT",
        "/consumer",
        r#"{"registers":{"a":{"value":7}}}"#,
    );
    let response = service.handle(&Request::new("GET", "/provider?wait=1s"), &Gone);
    assert!(response.close);
    assert_eq!(response.body_text(), r#"{"registers":{}}"#);
    check(
        &service,
        "GET",
        "/provider",
        "",
        200,
        r#"{"registers":{"a":{"value":7}}}"#,
    );
}

#[test]
fn poll_limit_refuses_with_503() {
    let service = Arc::new(Service::new(ServiceConfig {
        max_polls: 1,
        ..ServiceConfig::default()
    }));
    let held = spawn_call(&service, "/consumer?wait=30s");
    wait_for_waiters(&service, 1);
    let refused = call(&service, "GET", "/consumer?wait=30s", "");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("Retry-After"), Some("1"));
    let refused = call(&service, "GET", "/provider?wait=30s", "");
    assert_eq!(refused.status, 503);
    // Immediate reads are not polls and still work.
    assert_eq!(call(&service, "GET", "/consumer", "").status, 200);
    service.shut_down();
    assert_eq!(held.recv_timeout(LONG).unwrap().status, 200);
}

#[test]
fn shutdown_answers_held_polls_without_consuming() {
    let service = service();
    call(
        &service,
        "PUT",
        "/provider",
        r#"{"registers":{"a":{"value":1}}}"#,
    );
    let consumer = spawn_call(&service, "/consumer?wait=30s");
    let provider = spawn_call(&service, "/provider?name=b&wait=30s");
    wait_for_waiters(&service, 2);
    service.shut_down();
    assert_eq!(
        consumer.recv_timeout(LONG).unwrap().body_text(),
        r#"{"registers":{"a":{"value":1}}}"#
    );
    assert_eq!(
        provider.recv_timeout(LONG).unwrap().body_text(),
        r#"{"registers":{}}"#
    );
    assert_eq!(call(&service, "GET", "/healthz", "").status, 503);
}

#[test]
fn reaper_expires_on_time_and_wakes_pollers() {
    let service = service();
    let reaper = {
        let service = service.clone();
        thread::spawn(move || service.run_reaper())
    };
    call(
        &service,
        "PUT",
        "/provider",
        r#"{"registers":{"a":{"value":1,"ttl":"60s"}}}"#,
    );
    let poll = spawn_call(&service, "/consumer?name=a&wait=30s");
    wait_for_waiters(&service, 1);
    // A refresh with a shorter ttl moves the deadline earlier: the reaper must notice.
    let published = Instant::now();
    call(
        &service,
        "PUT",
        "/provider",
        r#"{"registers":{"a":{"value":1,"ttl":"30ms"}}}"#,
    );
    let response = poll.recv_timeout(LONG).expect("woken by expiry");
    assert!(published.elapsed() >= Duration::from_millis(30));
    assert_eq!(response.body_text(), r#"{"registers":{}}"#);
    service.shut_down();
    reaper.join().unwrap();
}

#[test]
fn metrics_are_valid_exposition() {
    let service = service();
    call(
        &service,
        "PUT",
        "/provider",
        r#"{"registers":{"t":{"value":21.5},"on":{"value":true},"s":{"value":"x"},"q\"\\\n":{"value":1}}}"#,
    );
    call(&service, "GET", "/nope", "");
    let response = call(&service, "GET", "/metrics", "");
    assert_eq!(response.status, 200);
    assert!(
        response
            .content_type
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.body_text();
    for expected in [
        "regd_register_value{name=\"t\"} 21.5",
        "regd_register_value{name=\"on\"} 1",
        "regd_register_value{name=\"q\\\"\\\\\\n\"} 1",
        "regd_requests_total{resource=\"provider\",method=\"PUT\",status=\"204\"} 1",
        "regd_requests_total{resource=\"other\",method=\"GET\",status=\"404\"} 1",
        "regd_registers 4",
        "# TYPE regd_expirations_total counter",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains("name=\"s\""), "strings are not samples");
}

#[test]
fn spoofed_headers_do_not_make_a_remote_peer_local() {
    let tokens = crate::server::access::parse_tokens("0123456789abcdef0123 admin\n").unwrap();
    let service = Service::new(ServiceConfig {
        access: AccessPolicy {
            tokens,
            trust_loopback: true,
            open_metrics: false,
        },
        ..ServiceConfig::default()
    });
    let remote: std::net::SocketAddr = "203.0.113.9:5000".parse().unwrap();
    let mut request = Request::new("GET", "/consumer")
        .with_header("X-Forwarded-For", "127.0.0.1")
        .with_header("X-Real-IP", "::1")
        .with_header("Host", "localhost")
        .with_header("Forwarded", "for=127.0.0.1");
    request.peer_address = Some(remote);
    let refused = service.handle(&request, &AlwaysConnected);
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.header("WWW-Authenticate"),
        Some(r#"Bearer realm="regd""#)
    );
    request.peer_address = Some("127.0.0.1:5000".parse().unwrap());
    assert_eq!(service.handle(&request, &AlwaysConnected).status, 200);
    let authorized = Request {
        peer_address: Some(remote),
        ..Request::new("GET", "/consumer")
            .with_header("Authorization", "Bearer 0123456789abcdef0123")
    };
    assert_eq!(service.handle(&authorized, &AlwaysConnected).status, 200);
}

/// `GET target` answers 200 with `answer`.
#[track_caller]
fn reads(service: &Service, target: &str, answer: &str) {
    check(service, "GET", target, "", 200, answer);
}

/// `PUT /provider` with `body` answers 204.
#[track_caller]
fn publishes(service: &Service, body: &str) {
    check(service, "PUT", "/provider", body, 204, "");
}

const A_IS_1: &str = r#"{"registers":{"a":{"value":1}}}"#;
const NOTHING: &str = r#"{"registers":{}}"#;

#[test]
fn a7_default_ttl_is_used_for_expiry() {
    let (service, clock) = service_on_clock(ServiceConfig {
        default_ttl: Duration::from_millis(150),
        ..ServiceConfig::default()
    });
    publishes(&service, r#"{"registers":{"a":{"value":1}}}"#);
    clock.advance(Duration::from_millis(149));
    reads(&service, "/consumer?name=a", A_IS_1);
    clock.advance(Duration::from_millis(1));
    reads(&service, "/consumer?name=a", NOTHING);
}

#[test]
fn a7_every_put_slides_expiry_and_anyone_may_overwrite() {
    let (service, clock) = service_on_clock(ServiceConfig::default());
    let body = r#"{"registers":{"a":{"value":1,"ttl":"400ms"}}}"#;
    publishes(&service, body);
    // Refresh for three ttls; the register stays throughout.
    for _ in 0..24 {
        clock.advance(Duration::from_millis(50));
        publishes(&service, body);
        reads(&service, "/consumer?name=a", A_IS_1);
    }
    // The last refresh counts: 399 ms later it is still there, at 400 ms it is gone.
    clock.advance(Duration::from_millis(399));
    reads(&service, "/consumer?name=a", A_IS_1);
    clock.advance(Duration::from_millis(1));
    reads(&service, "/consumer?name=a", NOTHING);
    // Anyone may write: a second writer replaces value and metadata.
    publishes(&service, body);
    publishes(
        &service,
        r#"{"registers":{"a":{"value":"other","metadata":{"by":2}}}}"#,
    );
    reads(
        &service,
        "/consumer?name=a",
        r#"{"registers":{"a":{"value":"other","metadata":{"by":2}}}}"#,
    );
}

#[test]
fn b7_details_add_ttl_time_left_and_index() {
    let (service, clock) = service_on_clock(ServiceConfig::default());
    publishes(
        &service,
        r#"{"registers":{"a":{"value":1,"ttl":"1m30s"},"b":{"value":2}}}"#,
    );
    let index: u64 = call(&service, "GET", "/consumer", "")
        .header("X-Reg-Index")
        .unwrap()
        .parse()
        .unwrap();
    clock.advance(Duration::from_millis(2_500));
    let details = call(&service, "GET", "/consumer?details=true", "");
    let json: serde_json::Value = serde_json::from_str(details.body_text()).unwrap();
    let a = &json["registers"]["a"];
    assert_eq!(a["value"], 1);
    assert_eq!(a["ttl"], "1m30s");
    assert_eq!(a["expires_in_ms"], 87_500);
    let a_index = a["index"].as_u64().unwrap();
    assert!(a_index <= index && a_index > 0);
    assert_eq!(json["registers"]["b"]["ttl"], "10s");
    assert_eq!(json["registers"]["b"]["expires_in_ms"], 7_500);
    // Without details the entries are exactly as in A4.
    reads(
        &service,
        "/consumer",
        r#"{"registers":{"a":{"value":1},"b":{"value":2}}}"#,
    );
}
