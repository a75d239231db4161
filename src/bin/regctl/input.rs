//! What regctl reads besides its arguments: a token file (`--token-file`), a registers
//! file (`provide --file`) and lines of new values on stdin. Each refusal names the
//! file (or line) and what was expected; nothing read here is ever printed back in an
//! error when it may be a secret (the token).

use std::collections::BTreeMap;
use std::time::Duration;

use regd::client::Json;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::args::parse_duration;
use crate::error::Error;

/// The token in a token file: the first word of its first line that is neither empty
/// nor a comment — regd's own format (`TOKEN ROLE [LABEL]`), so an operator can hand
/// out a one-line copy. Like regd, refuses a file every user can read.
pub fn token_file(path: &str) -> Result<String, Error> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path)
        .map_err(|error| Error::Failed(format!("cannot read token file {path}: {error}")))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o004 != 0 {
        return Err(Error::Failed(format!(
            "token file {path} is readable by every user (mode {mode:o}); run `chmod 600 {path}` and try again"
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|error| Error::Failed(format!("cannot read token file {path}: {error}")))?;
    text.lines()
        .filter_map(|line| line.split('#').next()?.split_whitespace().next())
        .next()
        .map(str::to_string)
        .ok_or_else(|| {
            Error::Failed(format!(
                "token file {path} holds no token; put the token on a line of its own"
            ))
        })
}

/// One register to provide: name, value, metadata and ttl.
pub type Registration = (String, Json, Option<Json>, Duration);

/// Reads a registers file: `{NAME: {"value": V, "metadata": {...}, "ttl": "5s"}, ...}`;
/// a register without a ttl gets `default_ttl`.
pub fn registers_file(path: &str, default_ttl: Duration) -> Result<Vec<Registration>, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| Error::Failed(format!("cannot read {path}: {error}")))?;
    let registrations = decode_registers_file(&text, default_ttl)
        .map_err(|message| Error::Failed(format!("{path}: {message}")))?;
    if registrations.is_empty() {
        return Err(Error::Failed(format!("{path} holds no registers")));
    }
    Ok(registrations)
}

fn decode_registers_file(text: &str, default_ttl: Duration) -> Result<Vec<Registration>, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        value: Option<Box<RawValue>>,
        metadata: Option<Box<RawValue>>,
        ttl: Option<String>,
    }
    let entries: BTreeMap<String, Entry> = serde_json::from_str(text).map_err(|error| {
        format!(
            "expected an object such as {{\"name\": {{\"value\": 1, \"metadata\": {{}}, \"ttl\": \"5s\"}}}}: {error}"
        )
    })?;
    entries
        .into_iter()
        .map(|(name, entry)| {
            let value = json(entry.value.as_deref())?.unwrap_or_else(Json::null);
            let metadata = json(entry.metadata.as_deref())?.filter(|metadata| !metadata.is_null());
            if metadata
                .as_ref()
                .is_some_and(|metadata| !metadata.is_object())
            {
                return Err(format!("{name:?}.metadata must be an object or null"));
            }
            let ttl = match &entry.ttl {
                Some(text) => {
                    parse_duration(text).map_err(|reason| format!("{name:?}.ttl: {reason}"))?
                }
                None => default_ttl,
            };
            Ok((name, value, metadata, ttl))
        })
        .collect()
}

/// Decodes a line of new values by name: `{"a": 1, "b": "on"}`.
pub fn values_line(text: &str) -> Result<Vec<(String, Json)>, String> {
    let values: BTreeMap<String, Box<RawValue>> = serde_json::from_str(text).map_err(|error| {
        format!("expected an object of values by name such as {{\"lamp\": true}}: {error}")
    })?;
    values
        .into_iter()
        .map(|(name, raw)| Ok((name, json(Some(&raw))?.unwrap_or_else(Json::null))))
        .collect()
}

/// JSON text as regd would store it (compact, with bounded nesting).
fn json(raw: Option<&RawValue>) -> Result<Option<Json>, String> {
    raw.map(|raw| Json::parse(raw.get()).map_err(|error| error.to_string()))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_files_decode() {
        let ttl = Duration::from_secs(10);
        let entries = decode_registers_file(
            r#"{"a":{"value":1,"metadata":{"u":"C"},"ttl":"5s"},"b":{},"c":{"metadata":null}}"#,
            ttl,
        )
        .unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].3, Duration::from_secs(5));
        assert_eq!(entries[0].2.as_ref().unwrap().as_str(), r#"{"u":"C"}"#);
        assert_eq!(entries[1].1, Json::null());
        assert_eq!(entries[1].3, ttl);
        assert_eq!(entries[2].2, None);
        for refused in [
            r#"{"a":{"metadata":[1]}}"#,
            r#"{"a":{"valu":1}}"#,
            r#"{"a":{"ttl":"soon"}}"#,
            "[]",
        ] {
            assert!(decode_registers_file(refused, ttl).is_err(), "{refused}");
        }
    }

    #[test]
    fn value_lines_decode() {
        let values = values_line(r#"{"b": [1], "a": null}"#).unwrap();
        assert_eq!(values[0], ("a".to_string(), Json::null()));
        assert_eq!(values[1].1.as_str(), "[1]");
        assert!(values_line("5").is_err());
    }
}
