//! Encoding and decoding of `GET /consumer` answers, data-driven, and the round trip.

use std::time::{Duration, Instant};

use super::*;
use crate::core::{Limits, Registry, Selection};
use crate::protocol::publish;
use crate::protocol::query::NameLimits;

const DEFAULT_TTL: Duration = Duration::from_secs(10);

#[test]
fn snapshots_encode_with_and_without_details() {
    let mut registry: Registry<()> = Registry::new(Limits::default(), 1);
    let now = Instant::now();
    let decoded = publish::decode(
        br#"{"registers":{"b":{"value":null,"metadata":{"m":1}},"a\"q":{"value":[1,2],"ttl":"1m0s"}}}"#,
        DEFAULT_TTL,
        &NameLimits::default(),
    )
    .unwrap();
    registry.publish(now, decoded).unwrap();
    let reading = registry.read(now, &Selection::All);
    let encoded = encode(&reading, false);
    assert_eq!(
        encoded,
        r#"{"registers":{"a\"q":{"value":[1,2]},"b":{"value":null,"metadata":{"m":1}}}}"#
    );
    serde_json::from_str::<serde_json::Value>(&encoded).expect("valid JSON");
    let detailed = encode(&registry.read(now, &Selection::All), true);
    assert_eq!(
        detailed,
        r#"{"registers":{"a\"q":{"value":[1,2],"ttl":"1m0s","expires_in_ms":60000,"index":2},"b":{"value":null,"metadata":{"m":1},"ttl":"10s","expires_in_ms":10000,"index":3}}}"#
    );
    let empty = registry.read(now, &Selection::from_names(["none"]));
    assert_eq!(encode(&empty, false), r#"{"registers":{}}"#);
}

#[test]
fn what_is_encoded_decodes_back() {
    let mut registry: Registry<()> = Registry::new(Limits::default(), 1);
    let now = Instant::now();
    let body = br#"{"registers":{"a":{"value":{"x" : [1, 2.50]},"metadata":{"u":"C"},"ttl":"1.5s"},"b":{}}}"#;
    let decoded = publish::decode(body, DEFAULT_TTL, &NameLimits::default()).unwrap();
    registry.publish(now, decoded).unwrap();
    let reading = registry.read(now, &Selection::All);
    let registers = decode(&encode(&reading, false)).unwrap();
    assert_eq!(registers["a"].value.as_str(), r#"{"x":[1,2.50]}"#);
    assert_eq!(
        registers["a"].metadata.as_ref().unwrap().as_str(),
        r#"{"u":"C"}"#
    );
    assert_eq!(registers["b"].value, Json::null());
    let details = decode_details(&encode(&reading, true)).unwrap();
    assert_eq!(details["a"].ttl, Some(Duration::from_millis(1500)));
    assert_eq!(details["a"].expires_in, Duration::from_millis(1500));
    assert_eq!(details["b"].index, reading.revision);
}

#[test]
fn answers_decode() {
    let snapshot = decode(
        r#"{"registers":{"a":{"value":[1, 2]},"b":{"value":null,"metadata":{"u":"C"}},"c":{"metadata":{}}}}"#,
    )
    .unwrap();
    assert_eq!(snapshot["a"].value.as_str(), "[1,2]");
    assert_eq!(snapshot["a"].metadata, None);
    assert_eq!(snapshot["b"].value, Json::null());
    assert_eq!(
        snapshot["b"].metadata.as_ref().unwrap().as_str(),
        r#"{"u":"C"}"#
    );
    assert_eq!(snapshot["c"].metadata, None);
    assert!(decode("{}").is_err());
    assert!(decode("[]").is_err());
}

#[test]
fn details_decode() {
    let details = decode_details(
        r#"{"registers":{"a":{"value":1,"metadata":{"u":"C"},"ttl":"1.5s","expires_in_ms":1200,"index":7},"b":{"value":null,"ttl":"?","expires_in_ms":0,"index":9}}}"#,
    )
    .unwrap();
    assert_eq!(details["a"].register.value, Json::from(1));
    assert_eq!(details["a"].ttl, Some(Duration::from_millis(1500)));
    assert_eq!(details["a"].expires_in, Duration::from_millis(1200));
    assert_eq!(details["a"].index, 7);
    assert_eq!(details["b"].ttl, None);
    let error = decode_details(r#"{"registers":{"a":{"value":1}}}"#).unwrap_err();
    assert!(error.to_string().contains("details=true"), "{error}");
}
