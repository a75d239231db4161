//! The answer of `GET /consumer` (docs/protocol.md A4, B7): `{"registers": {NAME: {"value": V,
//! "metadata": {...}}}}`, with `ttl`, `expires_in_ms` and `index` per entry when
//! details are asked for. The server encodes it from the core's [`Reading`]; the client
//! decodes it into [`Register`]s (or [`Detailed`] ones). Invariants: `value` is always
//! written (null included); `metadata` only when the register has a non-empty object,
//! so the same stored metadata always serialises the same way.

use std::collections::BTreeMap;
use std::time::Duration;

use super::duration;
#[cfg(feature = "server")]
use super::envelope::Writer;
use super::envelope::{self, DecodeError, Entry, json_member};
use super::json::{Json, json_string};
#[cfg(feature = "server")]
use crate::core::{Reading, RegisterView};

/// Encodes a reading of the registry as the answer of `GET /consumer`.
#[cfg(feature = "server")]
pub fn encode(reading: &Reading, details: bool) -> String {
    encode_views(&reading.registers, details)
}

/// Encodes registers as the answer of `GET /consumer` (the state file keeps its
/// registers so, with details: [`super::state_file`]).
#[cfg(feature = "server")]
pub(crate) fn encode_views(registers: &[RegisterView], details: bool) -> String {
    let mut writer = Writer::with_room_for(registers.len());
    for view in registers {
        writer.entry(&view.name, view.value.as_str());
        if let Some(metadata) = &view.metadata {
            writer.member("metadata", metadata.as_str());
        }
        if details {
            writer.member("ttl", &json_string(&duration::format(view.ttl)));
            writer.member("expires_in_ms", &view.expires_in.as_millis().to_string());
            writer.member("index", &view.revision.to_string());
        }
    }
    writer.finish()
}

/// A register as a consumer reads it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Register {
    /// The value (`null` included).
    pub value: Json,
    /// The metadata object, when the register has one.
    pub metadata: Option<Json>,
}

/// A register with the details regd adds on request (docs/protocol.md B7).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Detailed {
    /// Its value and metadata.
    pub register: Register,
    /// The ttl of its last publish (`None` if regd sent one this client cannot read).
    pub ttl: Option<Duration>,
    /// How long it has left, by regd's monotonic clock, when the answer was written.
    pub expires_in: Duration,
    /// The revision of its last change (docs/protocol.md B1).
    pub index: u64,
}

fn register_of(entry: &Entry<'_>) -> Result<Register, DecodeError> {
    Ok(Register {
        value: json_member(entry.value)?.unwrap_or_else(Json::null),
        metadata: json_member(entry.metadata)?.filter(|metadata| metadata.as_str() != "{}"),
    })
}

/// Decodes a `GET /consumer` answer: registers by name.
pub fn decode(body: &str) -> Result<BTreeMap<String, Register>, DecodeError> {
    let mut registers = BTreeMap::new();
    envelope::decode_answer(body, |name, entry| {
        registers.insert(name, register_of(&entry)?);
        Ok(())
    })?;
    Ok(registers)
}

/// Decodes a `GET /consumer?details=true` answer: registers by name with their ttl,
/// time left and revision.
pub fn decode_details(body: &str) -> Result<BTreeMap<String, Detailed>, DecodeError> {
    let mut registers = BTreeMap::new();
    envelope::decode_answer(body, |name, entry| {
        let number = |raw: Option<&serde_json::value::RawValue>| {
            raw.and_then(|raw| serde_json::from_str::<u64>(raw.get()).ok())
        };
        let (Some(expires_in_ms), Some(index)) = (number(entry.expires_in_ms), number(entry.index))
        else {
            return Err(DecodeError::new(format!(
                "regd answered without details for {}; it may predate details=true (docs/protocol.md B7)",
                json_string(&name)
            )));
        };
        let ttl = entry
            .ttl
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
            .and_then(|text| duration::parse(&text).ok().flatten());
        let detailed = Detailed {
            register: register_of(&entry)?,
            ttl,
            expires_in: Duration::from_millis(expires_in_ms),
            index,
        };
        registers.insert(name, detailed);
        Ok(())
    })?;
    Ok(registers)
}

#[cfg(all(test, feature = "server"))]
mod tests;
