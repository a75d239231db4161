//! Change requests on the wire (docs/protocol.md A5, A8): the body of `PUT /consumer` and the
//! answer of `GET /provider` share one shape, `{"registers": {NAME: {"value": V}}}`.
//! The server decodes the body and encodes the answer; the client encodes the body and
//! decodes the answer — all here, with one writer for both directions.

use super::envelope::{self, DecodeError, Writer, json_member};
use super::json::Json;
#[cfg(feature = "server")]
use super::{envelope::value_of, error::ApiError, query::NameLimits};
#[cfg(feature = "server")]
use crate::core::{Name, Value};

/// Decodes a `PUT /consumer` body: the requested value of each name.
#[cfg(feature = "server")]
pub fn decode_body(body: &[u8], limits: &NameLimits) -> Result<Vec<(Name, Value)>, ApiError> {
    let entries = envelope::decode_body(body, limits, |name, entry| value_of(entry, name))?;
    Ok(entries
        .into_iter()
        .map(|(name, value)| (Name::from(name), Value::new(value)))
        .collect())
}

/// Encodes change requests, `(name, value as JSON text)`: a `PUT /consumer` body, or a
/// `GET /provider` answer.
pub fn encode<'a>(requests: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let requests = requests.into_iter();
    let mut writer = Writer::with_room_for(requests.size_hint().0);
    for (name, value) in requests {
        writer.entry(name, value);
    }
    writer.finish()
}

/// Decodes a `GET /provider` answer: the requested value of each name.
pub fn decode_answer(body: &str) -> Result<Vec<(String, Json)>, DecodeError> {
    let mut requests = Vec::new();
    envelope::decode_answer(body, |name, entry| {
        let value = json_member(entry.value)?.unwrap_or_else(Json::null);
        requests.push((name, value));
        Ok(())
    })?;
    Ok(requests)
}

#[cfg(all(test, feature = "server"))]
mod tests {
    use super::*;

    #[test]
    fn bodies_decode() {
        let decoded = decode_body(
            br#"{"registers":{"a":{"value":true},"b":{},"c":{"value":{"x" : 1}}}}"#,
            &NameLimits::default(),
        )
        .unwrap();
        let got: Vec<(&str, &str)> = decoded
            .iter()
            .map(|(name, value)| (&**name, value.as_str()))
            .collect();
        assert_eq!(got, [("a", "true"), ("b", "null"), ("c", r#"{"x":1}"#)]);
    }

    #[test]
    fn what_is_encoded_decodes_back() {
        assert_eq!(encode([]), r#"{"registers":{}}"#);
        let encoded = encode([("a", "null"), ("b\n", "\"x\"")]);
        assert_eq!(
            encoded,
            r#"{"registers":{"a":{"value":null},"b\n":{"value":"x"}}}"#
        );
        assert_eq!(
            decode_answer(&encoded).unwrap(),
            [
                ("a".to_string(), Json::null()),
                ("b\n".to_string(), Json::string("x"))
            ]
        );
        let server_side = decode_body(encoded.as_bytes(), &NameLimits::default()).unwrap();
        assert_eq!(server_side[1].1.as_str(), "\"x\"");
        assert!(decode_answer("{}").is_err());
    }
}
