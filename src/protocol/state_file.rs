//! The files regd keeps in its state directory, as text (docs/state-file.md): the state
//! file (registers, change requests, revisions; [`SavedState`]) and the run file (how the
//! last run ended; [`LastRun`]). Both are one JSON object, an envelope naming the kind of
//! file, its format version and a checksum of its `body`. The state's registers are kept
//! as a `GET /consumer?details=true` answer and its requests as a `GET /provider` answer:
//! one grammar, written and read by its own module. Invariants: what [`encode_state`]
//! writes, [`decode_state`] reads back identically (values and metadata byte for byte);
//! a file that is truncated, corrupt, of another kind or of an unknown version is refused
//! whole with an error saying which, never half read.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::envelope::{self, DecodeError};
use super::json::{MAX_NESTING, TooDeep, compact_json, json_string};
use super::{duration, requests, snapshot};
use crate::core::{LastRun, Name, RegisterView, SavedState, Value};

/// The format version this regd writes and reads.
pub const VERSION: u64 = 1;

const STATE_KIND: &str = "regd-state";
const RUN_KIND: &str = "regd-run";

/// Why a state or run file was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateFileError {
    /// The file has no content.
    Empty,
    /// The file is not one JSON object (truncated, or not ours).
    NotJson(String),
    /// The file is JSON, but not a file of this kind.
    WrongKind {
        /// The kind expected.
        expected: &'static str,
    },
    /// A format version this regd does not read (a newer regd wrote it).
    UnknownVersion(u64),
    /// The body does not match its checksum: the file is corrupt.
    ChecksumMismatch,
    /// The body is well formed but a field is not valid.
    Invalid(String),
}

impl fmt::Display for StateFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateFileError::Empty => write!(f, "the file is empty"),
            StateFileError::NotJson(error) => {
                write!(f, "the file is not valid JSON, perhaps truncated ({error})")
            }
            StateFileError::WrongKind { expected } => {
                write!(f, "the file is not a {expected} file")
            }
            StateFileError::UnknownVersion(version) => write!(
                f,
                "the file has format version {version}, and this regd reads only version {VERSION} (was it written by a newer regd?)"
            ),
            StateFileError::ChecksumMismatch => {
                write!(
                    f,
                    "the file's content does not match its checksum: it is corrupt"
                )
            }
            StateFileError::Invalid(what) => write!(f, "the file's content is not valid: {what}"),
        }
    }
}

impl std::error::Error for StateFileError {}

/// A JSON object with its members still raw. Every object of these files is read as
/// one, the very type the request envelope is read as, so reading the files adds little
/// code to the daemon.
type Object<'a> = BTreeMap<String, &'a RawValue>;

/// A member of an object, read as `T`; `None` when absent or of another type.
fn member<'a, T: Deserialize<'a>>(object: &Object<'a>, key: &str) -> Option<T> {
    parsed(object.get(key).copied())
}

/// Raw JSON read as `T`; `None` when absent or of another type.
fn parsed<'a, T: Deserialize<'a>>(raw: Option<&'a RawValue>) -> Option<T> {
    raw.and_then(|raw| serde_json::from_str(raw.get()).ok())
}

/// A stored value as its exact text; serde reads a null member as an absent one, and
/// both mean null (as in A3).
fn stored_value(raw: Option<&RawValue>, name: &str) -> Result<Value, DecodeError> {
    match raw {
        Some(raw) => stored_text(raw, name),
        None => Ok(Value::new("null")),
    }
}

/// Writes the envelope around a body: `{"format":…,"version":…,"body":…,"checksum":…}`,
/// the checksum last so the body is hashed where it lies, without a copy.
fn envelope(kind: &str, capacity: usize, body: impl FnOnce(&mut String)) -> String {
    let mut out = String::with_capacity(capacity + 160);
    let _ = write!(
        out,
        r#"{{"format":"{kind}","version":{VERSION},"written_by":"regd {}","body":"#,
        env!("CARGO_PKG_VERSION")
    );
    let start = out.len();
    body(&mut out);
    let checksum = fnv1a64(&out.as_bytes()[start..]);
    let _ = writeln!(out, r#","checksum":"fnv1a64:{checksum:016x}"}}"#);
    out
}

/// The checked body of an envelope of `kind`.
fn open_envelope<'a>(text: &'a str, kind: &'static str) -> Result<&'a str, StateFileError> {
    if text.trim().is_empty() {
        return Err(StateFileError::Empty);
    }
    if !text.trim_start().starts_with('{') {
        return Err(StateFileError::NotJson("it does not start with {".into()));
    }
    let envelope: Object<'_> =
        serde_json::from_str(text).map_err(|error| StateFileError::NotJson(error.to_string()))?;
    let wrong_kind = StateFileError::WrongKind { expected: kind };
    if member::<String>(&envelope, "format").as_deref() != Some(kind) {
        return Err(wrong_kind);
    }
    match member::<u64>(&envelope, "version") {
        Some(VERSION) => {}
        Some(version) => return Err(StateFileError::UnknownVersion(version)),
        None => return Err(wrong_kind),
    }
    let (Some(body), Some(checksum)) = (
        envelope.get("body"),
        member::<String>(&envelope, "checksum"),
    ) else {
        return Err(StateFileError::Invalid("body or checksum missing".into()));
    };
    let body = body.get();
    if checksum != format!("fnv1a64:{:016x}", fnv1a64(body.as_bytes())) {
        return Err(StateFileError::ChecksumMismatch);
    }
    Ok(body)
}

/// FNV-1a, 64 bits: catches the flipped bits and torn sectors of an SD card (it is no
/// defence against a forger, and needs none).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The state file's text. Its registers are a `GET /consumer?details=true` answer and
/// its change requests a `GET /provider` answer, written and read by those grammars.
pub fn encode_state(state: &SavedState) -> String {
    let snapshot = snapshot::encode_views(&state.registers, true);
    let requests =
        requests::encode((state.requests.iter()).map(|(name, value)| (&**name, value.as_str())));
    envelope(STATE_KIND, snapshot.len() + requests.len(), |out| {
        let saved_at = state
            .saved_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        // Rounded up: a restore then counts a little less downtime, never more, so no
        // register leaves before its ttl because of the rounding.
        let saved_at_ms = saved_at.as_nanos().div_ceil(1_000_000);
        let _ = write!(
            out,
            r#"{{"saved_at_unix_ms":{saved_at_ms},"revision":{},"trusted_from":{},"deletions":{{"#,
            state.revision, state.trusted_from
        );
        for (position, (revision, name)) in state.deletions.iter().enumerate() {
            if position > 0 {
                out.push(',');
            }
            // By revision (a name can be removed more than once; a revision only once).
            let _ = write!(out, r#""{revision}":{}"#, json_string(name));
        }
        let _ = write!(out, r#"}},"snapshot":{snapshot},"requests":{requests}}}"#);
    })
}

/// Reads a state file's text.
pub fn decode_state(text: &str) -> Result<SavedState, StateFileError> {
    let body = open_envelope(text, STATE_KIND)?;
    let body: Object<'_> =
        serde_json::from_str(body).map_err(|error| StateFileError::Invalid(error.to_string()))?;
    let number = |key: &str| {
        member::<u64>(&body, key)
            .ok_or_else(|| StateFileError::Invalid(format!("{key} is missing or not a number")))
    };
    let raw = |key: &str| {
        (body.get(key).map(|raw| raw.get()))
            .ok_or_else(|| StateFileError::Invalid(format!("{key} is missing")))
    };
    let (saved_at_unix_ms, revision, trusted_from) = (
        number("saved_at_unix_ms")?,
        number("revision")?,
        number("trusted_from")?,
    );
    let deletions: Object<'_> = serde_json::from_str(raw("deletions")?)
        .map_err(|error| StateFileError::Invalid(format!("deletions: {error}")))?;
    let mut removed = Vec::with_capacity(deletions.len());
    for (revision, name) in &deletions {
        match (
            revision.parse::<u64>(),
            serde_json::from_str::<String>(name.get()),
        ) {
            (Ok(revision), Ok(name)) => removed.push((revision, Name::from(name))),
            _ => {
                let what = format!("deletions: {revision:?} is not a revision and a name");
                return Err(StateFileError::Invalid(what));
            }
        }
    }
    let mut registers = Vec::new();
    envelope::decode_answer(raw("snapshot")?, |name, entry| {
        let invalid =
            |what: &str| DecodeError::new(format!("register {}: {what}", json_string(&name)));
        let ttl = parsed::<String>(entry.ttl)
            .and_then(|ttl| duration::parse(&ttl).ok().flatten())
            .ok_or_else(|| invalid("its ttl is missing or not a positive duration"))?;
        let expires_in_ms = parsed::<u64>(entry.expires_in_ms)
            .ok_or_else(|| invalid("its expires_in_ms is missing or not a whole number"))?;
        let revision = parsed::<u64>(entry.index)
            .ok_or_else(|| invalid("its index is missing or not a whole number"))?;
        let metadata = match entry.metadata {
            Some(raw) if !raw.get().starts_with('{') => {
                return Err(invalid("its metadata is not an object"));
            }
            Some(raw) => Some(stored_text(raw, &name)?).filter(|text| text.as_str() != "{}"),
            None => None,
        };
        let value = stored_value(entry.value, &name)?;
        registers.push(RegisterView {
            value,
            metadata,
            ttl,
            expires_in: Duration::from_millis(expires_in_ms),
            revision,
            name: Name::from(name),
        });
        Ok(())
    })
    .map_err(|error| StateFileError::Invalid(format!("snapshot: {error}")))?;
    let mut requests = Vec::new();
    envelope::decode_answer(raw("requests")?, |name, entry| {
        let value = stored_value(entry.value, &name)?;
        requests.push((Name::from(name.as_str()), value));
        Ok(())
    })
    .map_err(|error| StateFileError::Invalid(format!("requests: {error}")))?;
    Ok(SavedState {
        saved_at: SystemTime::UNIX_EPOCH + Duration::from_millis(saved_at_unix_ms),
        revision,
        trusted_from,
        registers,
        requests,
        deletions: removed,
    })
}

/// A value or metadata as the core stores it: compact JSON text, nesting bounded.
fn stored_text(raw: &RawValue, name: &str) -> Result<Value, DecodeError> {
    compact_json(raw.get()).map(Value::new).map_err(|TooDeep| {
        DecodeError::new(format!(
            "register {} nests deeper than {MAX_NESTING} levels",
            json_string(name)
        ))
    })
}

/// The run file's text.
pub fn encode_run(run: &LastRun) -> String {
    envelope(RUN_KIND, 64, |out| match run {
        LastRun::Running { reserved } => {
            let _ = write!(out, r#"{{"running":true,"reserved":{reserved}}}"#);
        }
        LastRun::Stopped { revision } => {
            let _ = write!(out, r#"{{"running":false,"revision":{revision}}}"#);
        }
    })
}

/// Reads a run file's text.
pub fn decode_run(text: &str) -> Result<LastRun, StateFileError> {
    let body = open_envelope(text, RUN_KIND)?;
    let body: Object<'_> =
        serde_json::from_str(body).map_err(|error| StateFileError::Invalid(error.to_string()))?;
    match (
        member::<bool>(&body, "running"),
        member::<u64>(&body, "reserved"),
        member::<u64>(&body, "revision"),
    ) {
        (Some(true), Some(reserved), _) => Ok(LastRun::Running { reserved }),
        (Some(false), _, Some(revision)) => Ok(LastRun::Stopped { revision }),
        _ => Err(StateFileError::Invalid(
            "a running record needs \"reserved\", a stopped one \"revision\"".into(),
        )),
    }
}

#[cfg(test)]
mod tests;
