//! The `regd::client` library against the real daemon: one-shot calls, typed errors, a
//! consumer's subscriptions and updates, a provider's refreshes, change requests and
//! removal, no lost changes under load, and a regd restart.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use regd::client::{
    Client, Consumer, Error, Json, Provider, ProviderEvent, RequestOutcome, Update,
};

use crate::support::*;

const TTL: Duration = Duration::from_secs(10);

fn json(text: &str) -> Json {
    Json::parse(text).expect("test JSON")
}

/// Reads updates until `name` holds `value` (JSON text); returns what else arrived.
#[track_caller]
fn wait_for_value(consumer: &Consumer, name: &str, value: &str) -> Vec<Update> {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match consumer.updates().recv_timeout(left) {
            Ok(Update::Changed {
                name: changed,
                register,
            }) if changed == name && register.value.as_str() == value => return seen,
            Ok(other) => seen.push(other),
            Err(_) => panic!("{name} never became {value}; saw {seen:?}"),
        }
    }
}

/// Reads updates until `name` is removed.
#[track_caller]
fn wait_for_removal(consumer: &Consumer, name: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match consumer.updates().recv_timeout(left) {
            Ok(Update::Removed { name: removed }) if removed == name => return,
            Ok(_) => {}
            Err(_) => panic!("{name} was never removed"),
        }
    }
}

/// Reads provider events until a change request arrives.
#[track_caller]
fn next_request(provider: &Provider) -> (String, Json) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match provider.events().recv_timeout(left) {
            Ok(ProviderEvent::Request { name, value }) => return (name, value),
            Ok(_) => {}
            Err(_) => panic!("no change request arrived"),
        }
    }
}

fn values(client: &Client) -> BTreeMap<String, String> {
    client
        .list()
        .expect("list")
        .into_iter()
        .map(|(name, register)| (name, register.value.to_string()))
        .collect()
}

fn provider_puts(daemon: &Daemon) -> f64 {
    daemon
        .get("/metrics")
        .body
        .lines()
        .filter(|line| {
            line.starts_with(
                "regd_requests_total{resource=\"provider\",method=\"PUT\",status=\"204\"}",
            )
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn one_shot_calls_read_write_and_delete() {
    let daemon = Daemon::start(&[]);
    // A path-less base URL with a trailing slash is fine.
    let client = Client::new(&format!("{}/", daemon.url())).unwrap();
    assert!(client.get(&["missing"]).unwrap().is_empty());
    daemon
        .put(
            "/provider",
            r#"{"registers":{"b":{"value":[1, 2.50]},"a":{"value":"x","metadata":{"unit":"C"}},"c d/é":{"value":null}}}"#,
        )
        .assert(204, "");
    let read = client.get(&["a", "b", "missing"]).unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read["a"].value.as_str(), "\"x\"");
    assert_eq!(
        read["a"].metadata.as_ref().unwrap().as_str(),
        r#"{"unit":"C"}"#
    );
    assert_eq!(read["b"].value.as_str(), "[1,2.50]");
    assert_eq!(read["b"].metadata, None);
    assert_eq!(client.get(&["c d/é"]).unwrap()["c d/é"].value, Json::null());
    let names: Vec<String> = client.list().unwrap().into_keys().collect();
    assert_eq!(names, ["a", "b", "c d/é"]);

    client.request("a", &json(r#"{"to": 5}"#)).unwrap();
    let pending = daemon.get("/provider?name=a");
    assert_eq!(pending.body, r#"{"registers":{"a":{"value":{"to":5}}}}"#);

    client.delete(&["a", "c d/é"]).unwrap();
    assert_eq!(
        values(&client),
        BTreeMap::from([("b".into(), "[1,2.50]".into())])
    );

    // Reading with the index of an earlier answer returns at once after a change.
    let before = client.poll(&["b"], None, None).unwrap();
    daemon
        .put("/provider", &registers(&[("b", "3")]))
        .assert(204, "");
    let started = Instant::now();
    let after = client
        .poll(&["b"], Some(Duration::from_secs(30)), before.index)
        .unwrap();
    assert!(started.elapsed() < PATIENCE);
    assert_eq!(after.registers["b"].value.as_str(), "3");
    assert!(after.index > before.index);

    // A long poll outlasts the client's own timeout: the wait is added to it.
    let impatient = client.clone().with_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let quiet = impatient
        .poll(&["b"], Some(Duration::from_millis(600)), after.index)
        .expect("a long poll longer than the timeout");
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(quiet.index, after.index);
}

#[test]
fn errors_say_whose_fault_it_was() {
    // A port that was just free: nothing listens there.
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = Client::new(&format!("http://{address}")).unwrap();
    let error = client.list().unwrap_err();
    assert!(error.is_connect(), "{error:?}");
    assert!(
        error.to_string().starts_with(&format!(
            "cannot reach regd at http://{address}: connection refused"
        )),
        "{error}"
    );
    assert!(std::error::Error::source(&error).is_some());

    let daemon = Daemon::start(&["--max-name", "8"]);
    let client = Client::new(&daemon.url()).unwrap();
    let error = client.get(&["a name far too long"]).unwrap_err();
    assert_eq!(error.status(), Some(400), "{error:?}");
    assert!(error.to_string().contains("at most 8"), "{error}");

    for url in [
        "https://h",
        "localhost:8080",
        "http://",
        "http://gateway:80a",
        "http://gate way:8080",
    ] {
        assert!(matches!(Client::new(url), Err(Error::Url { .. })), "{url}");
    }
    // Too long for any URL: refused before it is sent, as the caller's input.
    let huge = "n".repeat(70_000);
    match client.get(&[huge.as_str()]) {
        Err(Error::Input(message)) => assert!(message.contains("is too long"), "{message}"),
        other => panic!("{other:?}"),
    }
    let provider = client.provider();
    let refused = provider.publish("m", Json::null(), Some(Json::from(1)), TTL);
    assert!(matches!(refused, Err(Error::Input(_))), "{refused:?}");
    assert!(matches!(
        provider.update("never published", Json::null()),
        Err(Error::Input(_))
    ));
    assert!(matches!(client.get::<&str>(&[]), Err(Error::Input(_))));
}

#[test]
fn a_consumer_sees_values_metadata_and_removals() {
    let daemon = Daemon::start(&[]);
    let client = Client::new(&daemon.url()).unwrap();
    let provider = client.provider();
    provider.publish("t", Json::from(20), None, TTL).unwrap();
    let consumer = client.consumer();
    consumer.subscribe(["t", "later"]);
    wait_for_value(&consumer, "t", "20");

    provider.update("t", json("21.5")).unwrap();
    wait_for_value(&consumer, "t", "21.5");

    provider
        .publish("t", json("21.5"), Some(json(r#"{"unit":"C"}"#)), TTL)
        .unwrap();
    match consumer.updates().recv_timeout(PATIENCE).unwrap() {
        Update::Changed { name, register } => {
            assert_eq!(name, "t");
            assert_eq!(register.metadata.unwrap().as_str(), r#"{"unit":"C"}"#);
        }
        other => panic!("expected the metadata change, got {other:?}"),
    }

    provider
        .publish("later", Json::from(true), None, TTL)
        .unwrap();
    wait_for_value(&consumer, "later", "true");
    provider.remove(&["t"]).unwrap();
    wait_for_removal(&consumer, "t");
    assert_eq!(provider.names(), ["later"]);
}

#[test]
fn subscriptions_change_while_a_poll_is_held() {
    let daemon = Daemon::start(&[]);
    let client = Client::new(&daemon.url()).unwrap();
    let consumer = client.consumer();
    consumer.subscribe(["a"]);
    wait_for_held_polls(&daemon, 1);
    // The running poll is only for "a" and would last 30 s; a new subscription must not
    // wait for it (PATIENCE is shorter than that wait).
    consumer.subscribe(["b"]);
    daemon
        .put("/provider", &registers(&[("b", "1")]))
        .assert(204, "");
    let started = Instant::now();
    wait_for_value(&consumer, "b", "1");
    assert!(started.elapsed() < PATIENCE);

    // After unsubscribing "b", a change to "b" followed by one to "a" shows only "a".
    wait_for_held_polls(&daemon, 1);
    consumer.unsubscribe(["b"]);
    daemon
        .put("/provider", &registers(&[("b", "2")]))
        .assert(204, "");
    daemon
        .put("/provider", &registers(&[("a", "1")]))
        .assert(204, "");
    let skipped = wait_for_value(&consumer, "a", "1");
    assert!(
        skipped
            .iter()
            .all(|update| !matches!(update, Update::Changed { name, .. } if name == "b")),
        "{skipped:?}"
    );

    // Subscribing to everything follows registers created later.
    consumer.unsubscribe_all();
    consumer.subscribe_all();
    wait_for_value(&consumer, "b", "2");
    daemon
        .put("/provider", &registers(&[("new", "7")]))
        .assert(204, "");
    wait_for_value(&consumer, "new", "7");
    consumer.close();
}

#[test]
fn a_slow_reader_gets_the_latest_state_not_a_backlog() {
    let daemon = Daemon::start(&[]);
    let client = Client::new(&daemon.url()).unwrap();
    let provider = client.provider();
    provider.publish("x", Json::from(0), None, TTL).unwrap();
    provider.publish("y", Json::from(0), None, TTL).unwrap();
    let consumer = client.consumer();
    consumer.subscribe(["x", "y"]);
    // Nobody reads while 600 changes happen.
    for value in 1..=300 {
        provider.update("x", Json::from(value)).unwrap();
        provider.update("y", Json::from(-value)).unwrap();
    }
    let mut latest = BTreeMap::new();
    let mut received = 0;
    while latest.get("x").map(String::as_str) != Some("300")
        || latest.get("y").map(String::as_str) != Some("-300")
    {
        match consumer
            .updates()
            .recv_timeout(PATIENCE)
            .expect("an update")
        {
            Update::Changed { name, register } => {
                received += 1;
                latest.insert(name, register.value.to_string());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // The channel holds 16, the delivery thread one more, and the outbox one per
    // register; everything else was coalesced.
    assert!(received <= 30, "{received} updates for 600 changes");
}

#[test]
fn a_provider_refreshes_in_batches_before_the_ttl() {
    let daemon = Daemon::start(&[]);
    let client = Client::new(&daemon.url()).unwrap();
    let consumer = client.consumer();
    consumer.subscribe(["r1", "r2", "r3"]);
    let provider = client.provider();
    let ttl = Duration::from_millis(400);
    for name in ["r1", "r2", "r3"] {
        provider.publish(name, Json::from(1), None, ttl).unwrap();
    }
    for name in ["r1", "r2", "r3"] {
        wait_for_value(&consumer, name, "1");
    }
    let start_count = provider_puts(&daemon);
    let started = Instant::now();
    wait_until("nine refresh writes", || {
        provider_puts(&daemon) >= start_count + 9.0
    });
    // Refreshed separately, three registers take nine writes in 0.6 s; batched, the
    // nine writes take nine half-ttls (1.8 s). Load only makes it slower.
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "nine writes in {:?}: the registers were not batched",
        started.elapsed()
    );
    // Many ttls passed and no register expired.
    while let Ok(update) = consumer.updates().try_recv() {
        assert!(!matches!(update, Update::Removed { .. }), "{update:?}");
    }
    assert_eq!(client.list().unwrap().len(), 3);
}

#[test]
fn change_requests_reach_the_provider() {
    let daemon = Daemon::start(&[]);
    let client = Client::new(&daemon.url()).unwrap();
    let provider = client.provider();
    provider
        .publish_many([
            ("lamp".to_string(), Json::from(false), None, TTL),
            ("fan".to_string(), Json::from(0), None, TTL),
        ])
        .unwrap();
    client.request("lamp", &Json::from(true)).unwrap();
    assert_eq!(next_request(&provider), ("lamp".into(), Json::from(true)));
    // A request for a name nobody here provides stays with regd.
    client.request("other", &Json::from(1)).unwrap();
    client.request("fan", &Json::from(3)).unwrap();
    assert_eq!(next_request(&provider), ("fan".into(), Json::from(3)));
    assert_eq!(
        daemon.get("/provider?name=other").body,
        r#"{"registers":{"other":{"value":1}}}"#
    );

    // A register published while the request poll is held joins it at once.
    wait_for_held_polls(&daemon, 1);
    provider
        .publish("door", Json::string("shut"), None, TTL)
        .unwrap();
    client.request("door", &Json::string("open")).unwrap();
    assert_eq!(
        next_request(&provider),
        ("door".into(), Json::string("open"))
    );
    provider.update("door", Json::string("open")).unwrap();
    assert_eq!(
        client.get(&["door"]).unwrap()["door"].value,
        Json::string("open")
    );
}

#[test]
fn a_provider_of_many_registers_writes_refreshes_and_takes_requests_for_all() {
    // More registers than one PUT may carry (regd's --max-names, 1000 by default), and
    // more names than one request poll's URL holds (--max-uri, 8192 bytes).
    let daemon = Daemon::start(&[]);
    let client = Client::new(&daemon.url()).unwrap();
    let provider = client.provider();
    let names: Vec<String> = (0..1500)
        .map(|index| format!("gateway.many.register.{index:04}"))
        .collect();
    let ttl = Duration::from_secs(2);
    provider
        .publish_many(
            names
                .iter()
                .map(|name| (name.clone(), Json::from(1), None, ttl)),
        )
        .unwrap();
    assert_eq!(values(&client).len(), 1500);
    // Refreshed: all still there after two ttls.
    let started = Instant::now();
    wait_until("two ttls", || started.elapsed() > 2 * ttl);
    assert_eq!(values(&client).len(), 1500);
    // A request for the first and for the last name reaches the provider.
    for name in [&names[0], &names[1499]] {
        client.request(name, &Json::from(2)).unwrap();
        assert_eq!(next_request(&provider), (name.clone(), Json::from(2)));
    }
}

#[test]
fn a_register_regd_refuses_does_not_hold_back_the_others() {
    let daemon = Daemon::start(&[]);
    let client = Client::new(&daemon.url()).unwrap();
    let provider = client.provider();
    let too_long = "x".repeat(2000);
    let result = provider.publish_many([
        ("good.one".to_string(), Json::from(1), None, TTL),
        (too_long.clone(), Json::from(2), None, TTL),
        ("good.two".to_string(), Json::from(3), None, TTL),
    ]);
    assert_eq!(result.unwrap_err().status(), Some(400));
    assert_eq!(
        values(&client),
        BTreeMap::from([
            ("good.one".to_string(), "1".to_string()),
            ("good.two".to_string(), "3".to_string())
        ])
    );
    assert!(!provider.names().contains(&too_long));
    assert_eq!(provider.names().len(), 2);
    // The request poll no longer asks for the refused name (regd refused it too).
    client.request("good.two", &Json::from(4)).unwrap();
    assert_eq!(next_request(&provider), ("good.two".into(), Json::from(4)));
}

#[test]
fn request_and_wait_says_whether_the_provider_applied_it() {
    let daemon = Daemon::start(&[]);
    let client = Client::new(&daemon.url()).unwrap();
    let provider = client.provider();
    provider
        .publish("lamp", Json::from(false), None, TTL)
        .unwrap();
    // The provider applies what it is asked, on its own thread.
    let applier = std::thread::spawn({
        let provider = provider;
        move || {
            let (name, value) = next_request(&provider);
            provider.update(&name, value).unwrap();
            provider
        }
    });
    assert_eq!(
        client
            .request_and_wait("lamp", &Json::from(true), PATIENCE)
            .unwrap(),
        RequestOutcome::Applied
    );
    let provider = applier.join().unwrap();
    // A request nobody applies ends with the value as it is.
    assert_eq!(
        client
            .request_and_wait("lamp", &Json::from(7), Duration::from_millis(200))
            .unwrap(),
        RequestOutcome::NotApplied {
            current: Some(regd::client::Register {
                value: Json::from(true),
                metadata: None
            })
        }
    );
    assert_eq!(next_request(&provider), ("lamp".into(), Json::from(7)));
    // A register that does not exist cannot take anything.
    assert_eq!(
        client
            .request_and_wait("ghost", &Json::from(1), Duration::from_millis(100))
            .unwrap(),
        RequestOutcome::NotApplied { current: None }
    );
}

#[test]
fn closing_or_dropping_a_provider_deletes_its_registers() {
    let daemon = Daemon::start(&[]);
    let client = Client::new(&daemon.url()).unwrap();
    let consumer = client.consumer();
    consumer.subscribe(["closed", "dropped"]);
    let closed = client.provider();
    closed.publish("closed", Json::from(1), None, TTL).unwrap();
    let dropped = client.provider();
    dropped
        .publish("dropped", Json::from(1), None, TTL)
        .unwrap();
    wait_for_value(&consumer, "closed", "1");
    wait_for_value(&consumer, "dropped", "1");

    closed.close().unwrap();
    wait_for_removal(&consumer, "closed");
    drop(dropped);
    wait_for_removal(&consumer, "dropped");
    assert!(client.list().unwrap().is_empty());
}

#[test]
fn a_forgotten_register_is_not_refreshed_or_deleted_but_expires() {
    let daemon = Daemon::start(&[]);
    let client = Client::new(&daemon.url()).unwrap();
    let consumer = client.consumer();
    consumer.subscribe(["kept", "forgotten"]);
    let provider = client.provider();
    let ttl = Duration::from_millis(600);
    provider
        .publish_many([
            ("kept".to_string(), Json::from(1), None, ttl),
            ("forgotten".to_string(), Json::from(1), None, ttl),
        ])
        .unwrap();
    // Written (publish returns after the write); the consumer's updates of the two may
    // come in either order, so they are not awaited one by one.
    let forgotten_at = Instant::now();
    provider.forget(&["forgotten"]);
    assert_eq!(provider.names(), ["kept"]);
    // Not deleted: still readable right after.
    assert!(
        client
            .get(&["forgotten"])
            .unwrap()
            .contains_key("forgotten")
    );
    wait_for_removal(&consumer, "forgotten");
    // It lived out (most of) its ttl and was not refreshed past it.
    let gone_after = forgotten_at.elapsed();
    assert!(
        gone_after < ttl * 3,
        "refreshed after forget: gone after {gone_after:?}"
    );
    // Change requests for it stay with regd now.
    client.request("forgotten", &Json::from(2)).unwrap();
    assert_eq!(
        daemon.get("/provider?name=forgotten").body,
        r#"{"registers":{"forgotten":{"value":2}}}"#
    );
    // The other one is still kept alive, and closing deletes only it.
    assert!(client.get(&["kept"]).unwrap().contains_key("kept"));
    provider.close().unwrap();
    assert!(client.list().unwrap().is_empty());
}

#[test]
fn a_thousand_fast_changes_reach_a_consumer() {
    let daemon = Daemon::start(&[]);
    let client = Client::new(&daemon.url()).unwrap();
    let consumer = client.consumer();
    consumer.subscribe_all();
    daemon
        .put("/provider", &registers(&[("ready", "1")]))
        .assert(204, "");
    wait_for_value(&consumer, "ready", "1");

    let mut expected = BTreeMap::new();
    let mut http = daemon.connect();
    for change in 0..1000 {
        let name = format!("r{}", change % 37);
        let value = change.to_string();
        http.request("PUT", "/provider", &registers(&[(&name, &value)]))
            .assert(204, "");
        expected.insert(name, value);
    }
    let mut latest = BTreeMap::new();
    while latest != expected {
        match consumer.updates().recv_timeout(PATIENCE) {
            Ok(Update::Changed { name, register }) => {
                latest.insert(name, register.value.to_string());
            }
            other => panic!("unexpected {other:?}; have {latest:?}"),
        }
    }
}

#[test]
fn provider_and_consumer_survive_a_regd_restart() {
    let first = Daemon::start(&[]);
    let port = first.address.port().to_string();
    let address = format!("127.0.0.1:{port}");
    let client = Client::new(&first.url()).unwrap();
    let provider = client.provider();
    provider
        .publish("survivor", Json::from(1), None, Duration::from_secs(60))
        .unwrap();
    let consumer = client.consumer();
    consumer.subscribe(["survivor"]);
    wait_for_value(&consumer, "survivor", "1");

    drop(first);
    let mut saw_failure = false;
    let deadline = Instant::now() + PATIENCE;
    while !saw_failure {
        let left = deadline.saturating_duration_since(Instant::now());
        match consumer.updates().recv_timeout(left) {
            Ok(Update::Failed(error)) => {
                assert!(error.is_connect(), "{error:?}");
                saw_failure = true;
            }
            Ok(_) => {}
            Err(_) => panic!("the consumer did not report the lost regd"),
        }
    }

    let second = Daemon::start(&["--addr", &address]);
    assert_eq!(second.address.to_string(), address);
    // The provider writes its register again as soon as regd is back; its next refresh
    // is 30 s away, longer than any wait in a test.
    wait_until("the register is back", || {
        client.get(&["survivor"]).is_ok_and(|read| {
            read.get("survivor")
                .is_some_and(|r| r.value == Json::from(1))
        })
    });
    provider.update("survivor", Json::from(2)).unwrap();
    wait_for_value(&consumer, "survivor", "2");
    client.request("survivor", &Json::from(3)).unwrap();
    assert_eq!(next_request(&provider), ("survivor".into(), Json::from(3)));
}

#[test]
fn tokens_reach_a_guarded_regd_from_every_part_of_the_client() {
    let tokens = TokenFile::new(0o600);
    let daemon = Daemon::start(&["--token-file", tokens.path()]);
    let url = daemon.url();
    let consumer_client = Client::new(&url).unwrap().with_token(CONSUMER).unwrap();
    let provider_client = Client::new(&url).unwrap().with_token(PROVIDER).unwrap();

    // Debug output shows neither token; clones keep theirs.
    let shown = format!("{consumer_client:?} {:?}", provider_client.clone());
    assert!(
        !shown.contains(CONSUMER) && !shown.contains(PROVIDER),
        "{shown}"
    );

    // A provider's writes and request poll, a consumer's long poll and one-shot calls.
    let provider = provider_client.provider();
    provider.publish("fan", Json::from(1), None, TTL).unwrap();
    let consumer = consumer_client.consumer();
    consumer.subscribe(["fan"]);
    wait_for_value(&consumer, "fan", "1");
    consumer_client.request("fan", &Json::from(2)).unwrap();
    let (name, value) = next_request(&provider);
    assert_eq!((name.as_str(), value.as_str()), ("fan", "2"));
    provider.update("fan", value).unwrap();
    wait_for_value(&consumer, "fan", "2");
    assert_eq!(
        consumer_client.get(&["fan"]).unwrap()["fan"].value.as_str(),
        "2"
    );
    provider.close().unwrap();
    wait_for_removal(&consumer, "fan");

    // Missing, wrong and unfit tokens are told apart.
    let error = Client::new(&url).unwrap().list().unwrap_err();
    assert!(
        matches!(
            error,
            Error::Unauthorized {
                token_sent: false,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().starts_with("regd needs a token"),
        "{error}"
    );
    let wrong = Client::new(&url)
        .unwrap()
        .with_token("wrong-0123456789abcdef")
        .unwrap();
    let error = wrong.list().unwrap_err();
    assert!(
        matches!(
            error,
            Error::Unauthorized {
                token_sent: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.status(), Some(401));
    assert!(error.is_access_denied());
    let error = provider_client.list().unwrap_err();
    assert!(matches!(error, Error::Forbidden { .. }), "{error:?}");
    assert_eq!(error.status(), Some(403));
    assert!(
        error
            .to_string()
            .contains("provider token (sensors) may not use /consumer"),
        "{error}"
    );
    let refused = consumer_client
        .provider()
        .publish("x", Json::null(), None, TTL)
        .unwrap_err();
    assert!(matches!(refused, Error::Forbidden { .. }), "{refused:?}");
    // A background poll reports the refusal as an update.
    let blind = wrong.consumer();
    blind.subscribe(["fan"]);
    match blind.updates().recv_timeout(PATIENCE) {
        Ok(Update::Failed(error)) => assert!(error.is_access_denied(), "{error:?}"),
        other => panic!("expected a failure, got {other:?}"),
    }

    // A token that cannot go in a header is refused without being repeated.
    for bad in ["", "two words", "tab\there", "é-0123456789abcdef"] {
        let error = Client::new(&url).unwrap().with_token(bad).unwrap_err();
        assert!(matches!(error, Error::Input(_)), "{error:?}");
        if !bad.is_empty() {
            assert!(!error.to_string().contains(bad), "{error}");
        }
    }
    assert!(!daemon.stderr().contains(CONSUMER));
}

#[test]
fn details_carry_ttl_time_left_and_revision() {
    let daemon = Daemon::start(&[]);
    let client = Client::new(&daemon.url()).unwrap();
    daemon
        .put(
            "/provider",
            r#"{"registers":{"a":{"value":1,"ttl":"30s"},"b":{"value":[2],"metadata":{"u":"C"}}}}"#,
        )
        .assert(204, "");
    let all = client.details::<&str>(&[]).unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(all["a"].ttl, Some(Duration::from_secs(30)));
    assert!(all["a"].expires_in > Duration::from_secs(20));
    assert!(all["a"].expires_in <= Duration::from_secs(30));
    assert_eq!(all["b"].ttl, Some(Duration::from_secs(10)));
    assert_eq!(all["b"].register.metadata, Some(json(r#"{"u":"C"}"#)));
    assert!(all["b"].index >= all["a"].index);
    let before = all["a"].index;
    daemon
        .put("/provider", r#"{"registers":{"a":{"value":3}}}"#)
        .assert(204, "");
    let some = client.details(&["a", "missing"]).unwrap();
    assert_eq!(some.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(some["a"].register.value, Json::from(3));
    assert!(some["a"].index > before);
}
