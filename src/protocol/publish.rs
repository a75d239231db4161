//! The body of `PUT /provider` (docs/protocol.md A3, A7): `{"registers": {NAME: {"value": V,
//! "metadata": {...}, "ttl": "10s"}}}`. The server decodes it (value and metadata as
//! compact text, metadata an object or null, ttl a Go duration string whose absence,
//! zero or negative value means the default); the client encodes it. Invariant: what
//! [`encode`] writes, [`decode`] reads back as the same registers.

use std::time::Duration;

use super::duration;
use super::envelope::Writer;
use super::json::{Json, json_string};
#[cfg(feature = "server")]
use super::{
    envelope::{self, compact_member, value_of},
    error::ApiError,
    json::excerpt,
    query::NameLimits,
};
#[cfg(feature = "server")]
use crate::core::{Name, Publish, Value};

/// Decodes a `PUT /provider` body. Entries without a positive `ttl` get `default_ttl`.
#[cfg(feature = "server")]
pub fn decode(
    body: &[u8],
    default_ttl: Duration,
    limits: &NameLimits,
) -> Result<Vec<(Name, Publish)>, ApiError> {
    let entries = envelope::decode_body(body, limits, |name, entry| {
        let metadata = match entry.metadata {
            None => None,
            Some(raw) if !raw.get().starts_with('{') => {
                return Err(ApiError::bad_request(format!(
                    "registers.{}.metadata must be an object or null, got {}",
                    json_string(name),
                    excerpt(raw.get())
                )));
            }
            Some(raw) => Some(compact_member(raw, name, "metadata")?).filter(|text| text != "{}"),
        };
        let ttl = match entry.ttl {
            None => None,
            Some(raw) => {
                let text: String = serde_json::from_str(raw.get()).map_err(|_| {
                    ApiError::bad_request(format!(
                        "registers.{}.ttl must be a duration string such as \"10s\", got {}",
                        json_string(name),
                        excerpt(raw.get())
                    ))
                })?;
                duration::parse(&text).map_err(|error| {
                    ApiError::bad_request(format!("registers.{}.ttl: {error}", json_string(name)))
                })?
            }
        };
        Ok(Publish {
            value: Value::new(value_of(entry, name)?),
            metadata: metadata.map(Value::new),
            ttl: ttl.unwrap_or(default_ttl),
        })
    })?;
    Ok(entries
        .into_iter()
        .map(|(name, publish)| (Name::from(name), publish))
        .collect())
}

/// One register of a `PUT /provider` body, as a client sends it.
#[derive(Clone, Copy, Debug)]
pub struct PublishEntry<'a> {
    /// Register name.
    pub name: &'a str,
    /// Its value.
    pub value: &'a Json,
    /// Its metadata object, if any.
    pub metadata: Option<&'a Json>,
    /// Its ttl; `None` leaves the server's default.
    pub ttl: Option<Duration>,
}

/// Encodes a `PUT /provider` body.
pub fn encode(entries: &[PublishEntry<'_>]) -> String {
    let mut writer = Writer::with_room_for(entries.len());
    for entry in entries {
        writer.entry(entry.name, entry.value.as_str());
        if let Some(metadata) = entry.metadata {
            writer.member("metadata", metadata.as_str());
        }
        if let Some(ttl) = entry.ttl {
            writer.member("ttl", &json_string(&duration::format(ttl)));
        }
    }
    writer.finish()
}

#[cfg(all(test, feature = "server"))]
mod tests;
