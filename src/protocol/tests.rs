//! Decoding and encoding of the JSON shapes, data-driven.

use super::*;
use crate::core::{Limits, Registry, Selection};
use std::time::Instant;

const DEFAULT_TTL: Duration = Duration::from_secs(10);

fn publish(body: &str) -> Result<Vec<(Name, Publish)>, ApiError> {
    decode_publish(body.as_bytes(), DEFAULT_TTL, &query::NameLimits::default())
}

#[track_caller]
fn refused(body: &str, mentions: &str) {
    let error = publish(body).expect_err(body);
    assert_eq!(error.status, 400, "{body}");
    assert!(
        error.message.contains(mentions),
        "{body}: {:?} should mention {mentions:?}",
        error.message
    );
}

#[test]
fn publish_bodies_decode() {
    type Expected<'a> = (&'a str, &'a str, Option<&'a str>, Duration);
    let cases: &[(&str, &[Expected<'_>])] = &[
        (r#"{"registers":{}}"#, &[]),
        (
            r#"{"registers":{"a":{"value":1}}}"#,
            &[("a", "1", None, DEFAULT_TTL)],
        ),
        (
            r#"{"registers":{"a":{}}}"#,
            &[("a", "null", None, DEFAULT_TTL)],
        ),
        (
            r#"{"registers":{"a":{"value":null,"metadata":null,"ttl":null}}}"#,
            &[("a", "null", None, DEFAULT_TTL)],
        ),
        (
            r#"{"registers":{"a":{"value":1,"metadata":{}}}}"#,
            &[("a", "1", None, DEFAULT_TTL)],
        ),
        (
            r#"{"registers":{"a":{"value":1,"metadata":{ }}}}"#,
            &[("a", "1", None, DEFAULT_TTL)],
        ),
        (
            "{\"registers\":{\"a\":{\"value\": { \"z\" : [1, 2.50, 1e3, 12345678901234567890123] , \"a\":\"x y\\\" \"},\n \"metadata\": {\"u\": \"°C\"}, \"ttl\": \"1.5s\", \"extra\": [1]}}, \"other\": 1}",
            &[(
                "a",
                r#"{"z":[1,2.50,1e3,12345678901234567890123],"a":"x y\" "}"#,
                Some(r#"{"u":"°C"}"#),
                Duration::from_millis(1500),
            )],
        ),
        (
            r#"{"registers":{"a":{"value":1,"ttl":"0"},"b":{"value":2,"ttl":"-5s"}}}"#,
            &[("a", "1", None, DEFAULT_TTL), ("b", "2", None, DEFAULT_TTL)],
        ),
        (
            r#"{"registers":{"x.y/z:1 __proto__":{"value":"s"}}}"#,
            &[("x.y/z:1 __proto__", r#""s""#, None, DEFAULT_TTL)],
        ),
    ];
    for (body, expected) in cases {
        let decoded = publish(body).expect(body);
        let got: Vec<Expected<'_>> = decoded
            .iter()
            .map(|(name, publish)| {
                (
                    &**name,
                    publish.value.as_str(),
                    publish.metadata.as_ref().map(Value::as_str),
                    publish.ttl,
                )
            })
            .collect();
        assert_eq!(got, *expected, "{body}");
    }
}

#[test]
fn bad_bodies_are_refused_with_a_reason() {
    refused("", "must be a JSON object");
    refused("[]", "must be a JSON object");
    refused(r#"[{"a":{"value":1}}]"#, "must be a JSON object");
    refused("{", "not valid");
    refused("{}", "needs a \"registers\" object");
    refused(r#"{"registers":null}"#, "needs a \"registers\" object");
    refused(r#"{"registers":[]}"#, "not valid");
    refused(
        r#"{"registers":{"a":5}}"#,
        r#"registers."a" must be an object"#,
    );
    refused(
        r#"{"registers":{"a":[1]}}"#,
        r#"registers."a" must be an object"#,
    );
    refused(
        r#"{"registers":{"a":{"value":1,"ttl":10}}}"#,
        r#"registers."a".ttl must be a duration string such as "10s", got 10"#,
    );
    refused(
        r#"{"registers":{"a":{"value":1,"ttl":"10"}}}"#,
        r#"registers."a".ttl: invalid duration"#,
    );
    refused(
        r#"{"registers":{"a":{"value":1,"metadata":[1]}}}"#,
        r#"registers."a".metadata must be an object or null"#,
    );
    refused(
        r#"{"registers":{"a":{"value":1,"metadata":"x"}}}"#,
        "metadata must be an object",
    );
    refused(r#"{"registers":{"a":{"value":1}}} x"#, "not valid");
    refused(r#"{"registers":{"a":{"value":tru}}}"#, "not valid");
    refused(
        r#"{"registers":{"a":{"value":1,"value":2}}}"#,
        "duplicate field",
    );
}

#[test]
fn a_bad_entry_rejects_the_whole_body() {
    refused(
        r#"{"registers":{"a":{"value":1},"b":{"value":1,"ttl":5},"c":{"value":1}}}"#,
        r#"registers."b".ttl"#,
    );
}

#[test]
fn nesting_is_bounded() {
    let deep = |depth: usize| {
        format!(
            r#"{{"registers":{{"a":{{"value":{}1{}}}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    assert!(publish(&deep(100)).is_ok());
    refused(&deep(MAX_NESTING + 1), "nests deeper than 128");
    // Far deeper than the parser's own recursion limit: still a clear 400.
    let error = publish(&deep(100_000)).expect_err("too deep");
    assert_eq!(error.status, 400);
}

#[test]
fn name_limits_apply_to_bodies() {
    let limits = query::NameLimits {
        max_name_bytes: 3,
        max_names: 2,
    };
    let long = decode_publish(
        br#"{"registers":{"abcd":{"value":1}}}"#,
        DEFAULT_TTL,
        &limits,
    )
    .expect_err("name too long");
    assert!(long.message.contains("at most 3"), "{}", long.message);
    let many = decode_requests(
        br#"{"registers":{"a":{"value":1},"b":{"value":1},"c":{"value":1}}}"#,
        &limits,
    )
    .expect_err("too many");
    assert!(many.message.contains("at most 2"), "{}", many.message);
}

#[test]
fn requests_decode() {
    let decoded = decode_requests(
        br#"{"registers":{"a":{"value":true},"b":{},"c":{"value":{"x" : 1}}}}"#,
        &query::NameLimits::default(),
    )
    .unwrap();
    let got: Vec<(&str, &str)> = decoded
        .iter()
        .map(|(name, value)| (&**name, value.as_str()))
        .collect();
    assert_eq!(got, [("a", "true"), ("b", "null"), ("c", r#"{"x":1}"#)]);
}

#[test]
fn snapshots_encode_with_and_without_details() {
    let mut registry: Registry<()> = Registry::new(Limits::default(), 1);
    let now = Instant::now();
    let decoded = publish(
        r#"{"registers":{"b":{"value":null,"metadata":{"m":1}},"a\"q":{"value":[1,2],"ttl":"1m0s"}}}"#,
    )
    .unwrap();
    registry.publish(now, decoded).unwrap();
    let snapshot = registry.snapshot(now, &Selection::All);
    let encoded = encode_snapshot(&snapshot, false);
    assert_eq!(
        encoded,
        r#"{"registers":{"a\"q":{"value":[1,2]},"b":{"value":null,"metadata":{"m":1}}}}"#
    );
    serde_json::from_str::<serde_json::Value>(&encoded).expect("valid JSON");
    let detailed = encode_snapshot(&registry.snapshot(now, &Selection::All), true);
    assert_eq!(
        detailed,
        r#"{"registers":{"a\"q":{"value":[1,2],"ttl":"1m0s","expires_in_ms":60000,"index":2},"b":{"value":null,"metadata":{"m":1},"ttl":"10s","expires_in_ms":10000,"index":3}}}"#
    );
    let empty = registry.snapshot(now, &Selection::from_names(["none"]));
    assert_eq!(encode_snapshot(&empty, false), r#"{"registers":{}}"#);
}

#[test]
fn requests_encode() {
    assert_eq!(encode_requests(&[]), r#"{"registers":{}}"#);
    assert_eq!(
        encode_requests(&[
            (Name::from("a"), Value::new("null")),
            (Name::from("b\n"), Value::new("\"x\""))
        ]),
        r#"{"registers":{"a":{"value":null},"b\n":{"value":"x"}}}"#
    );
}

#[test]
fn errors_encode_as_json() {
    let error = ApiError::bad_request("parameter \"wait\" is bad");
    assert_eq!(error.body(), r#"{"error":"parameter \"wait\" is bad"}"#);
    let unavailable = ApiError::from(core::Error::TooManyRegisters { limit: 3 });
    assert_eq!(unavailable.status, 503);
    assert_eq!(unavailable.retry_after, Some(1));
}

#[test]
fn numeric_values_for_metrics() {
    let cases: &[(&str, Option<f64>)] = &[
        ("1", Some(1.0)),
        ("-2.5", Some(-2.5)),
        ("1e3", Some(1000.0)),
        ("true", Some(1.0)),
        ("false", Some(0.0)),
        ("null", None),
        ("\"5\"", None),
        ("[1]", None),
        ("{}", None),
    ];
    for (text, expected) in cases {
        assert_eq!(numeric_value(&Value::new(*text)), *expected, "{text}");
    }
}
