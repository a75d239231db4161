//! Decoding and encoding of `PUT /provider` bodies, data-driven.

use super::*;

const DEFAULT_TTL: Duration = Duration::from_secs(10);

fn publish(body: &str) -> Result<Vec<(Name, Publish)>, ApiError> {
    decode(body.as_bytes(), DEFAULT_TTL, &NameLimits::default())
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
    refused(
        &deep(crate::protocol::json::MAX_NESTING + 1),
        "nests deeper than 128",
    );
    // Far deeper than the parser's own recursion limit: still a clear 400.
    let error = publish(&deep(100_000)).expect_err("too deep");
    assert_eq!(error.status, 400);
}

#[test]
fn name_limits_apply_to_bodies() {
    let limits = NameLimits {
        max_name_bytes: 3,
        max_names: 2,
    };
    let long = decode(
        br#"{"registers":{"abcd":{"value":1}}}"#,
        DEFAULT_TTL,
        &limits,
    )
    .expect_err("name too long");
    assert!(long.message.contains("at most 3"), "{}", long.message);
    let many = crate::protocol::requests::decode_body(
        br#"{"registers":{"a":{"value":1},"b":{"value":1},"c":{"value":1}}}"#,
        &limits,
    )
    .expect_err("too many");
    assert!(many.message.contains("at most 2"), "{}", many.message);
}

#[test]
fn bodies_encode() {
    let value = Json::from(1);
    let metadata = Json::parse(r#"{"u":"C"}"#).unwrap();
    let body = encode(&[
        PublishEntry {
            name: "a\"",
            value: &value,
            metadata: Some(&metadata),
            ttl: Some(Duration::from_millis(1500)),
        },
        PublishEntry {
            name: "b",
            value: &value,
            metadata: None,
            ttl: None,
        },
    ]);
    assert_eq!(
        body,
        r#"{"registers":{"a\"":{"value":1,"metadata":{"u":"C"},"ttl":"1.5s"},"b":{"value":1}}}"#
    );
    let decoded = decode(body.as_bytes(), DEFAULT_TTL, &NameLimits::default()).unwrap();
    assert_eq!(decoded[0].1.ttl, Duration::from_millis(1500));
    assert_eq!(
        decoded[0].1.metadata.as_ref().map(Value::as_str),
        Some(r#"{"u":"C"}"#)
    );
    assert_eq!(decoded[1].1.ttl, DEFAULT_TTL);
}
