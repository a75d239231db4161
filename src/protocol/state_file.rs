//! The files regd keeps in its state directory, as text (docs/state-file.md): the state
//! file (registers, change requests, revisions; [`SavedState`]) and the run file (how the
//! last run ended; [`LastRun`]). Both are one JSON object, an envelope naming the kind of
//! file, its format version and a checksum of its `body`. Invariants: what [`encode_state`]
//! writes, [`decode_state`] reads back identically (values and metadata byte for byte);
//! a file that is truncated, corrupt, of another kind or of an unknown version is refused
//! whole with an error saying which, never half read.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::duration;
use super::json::{MAX_NESTING, TooDeep, compact_json, json_string};
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

#[derive(Deserialize)]
struct Envelope<'a> {
    format: Option<String>,
    version: Option<u64>,
    checksum: Option<String>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
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
    let envelope: Envelope<'_> =
        serde_json::from_str(text).map_err(|error| StateFileError::NotJson(error.to_string()))?;
    let wrong_kind = StateFileError::WrongKind { expected: kind };
    if envelope.format.as_deref() != Some(kind) {
        return Err(wrong_kind);
    }
    match envelope.version {
        Some(VERSION) => {}
        Some(version) => return Err(StateFileError::UnknownVersion(version)),
        None => return Err(wrong_kind),
    }
    let (Some(body), Some(checksum)) = (envelope.body, envelope.checksum) else {
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

/// The state file's text.
pub fn encode_state(state: &SavedState) -> String {
    let estimate: usize = state
        .registers
        .iter()
        .map(|view| {
            view.name.len()
                + view.value.as_str().len()
                + view.metadata.as_ref().map_or(0, |m| m.as_str().len())
                + 80
        })
        .sum();
    envelope(STATE_KIND, estimate, |out| {
        let saved_at = state
            .saved_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        // Rounded up: a restore then counts a little less downtime, never more, so no
        // register leaves before its ttl because of the rounding.
        let saved_at_ms = saved_at.as_nanos().div_ceil(1_000_000);
        let _ = write!(
            out,
            r#"{{"saved_at_unix_ms":{saved_at_ms},"revision":{},"trusted_from":{},"registers":{{"#,
            state.revision, state.trusted_from
        );
        for (position, view) in state.registers.iter().enumerate() {
            if position > 0 {
                out.push(',');
            }
            out.push_str(&json_string(&view.name));
            out.push_str(r#":{"value":"#);
            out.push_str(view.value.as_str());
            if let Some(metadata) = &view.metadata {
                out.push_str(r#","metadata":"#);
                out.push_str(metadata.as_str());
            }
            let _ = write!(
                out,
                r#","ttl":"{}","expires_in":"{}","index":{}}}"#,
                duration::format(view.ttl),
                duration::format(view.expires_in),
                view.revision
            );
        }
        out.push_str(r#"},"requests":{"#);
        for (position, (name, value)) in state.requests.iter().enumerate() {
            if position > 0 {
                out.push(',');
            }
            out.push_str(&json_string(name));
            out.push_str(r#":{"value":"#);
            out.push_str(value.as_str());
            out.push('}');
        }
        out.push_str(r#"},"deletions":["#);
        for (position, (revision, name)) in state.deletions.iter().enumerate() {
            if position > 0 {
                out.push(',');
            }
            let _ = write!(out, "[{revision},{}]", json_string(name));
        }
        out.push_str("]}");
    })
}

#[derive(Deserialize)]
struct StateBody<'a> {
    saved_at_unix_ms: u64,
    revision: u64,
    trusted_from: u64,
    #[serde(borrow)]
    registers: BTreeMap<String, RegisterEntry<'a>>,
    #[serde(borrow)]
    requests: BTreeMap<String, RequestEntry<'a>>,
    deletions: Vec<(u64, String)>,
}

#[derive(Deserialize)]
struct RegisterEntry<'a> {
    #[serde(borrow)]
    value: &'a RawValue,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
    ttl: String,
    expires_in: String,
    index: u64,
}

#[derive(Deserialize)]
struct RequestEntry<'a> {
    #[serde(borrow)]
    value: &'a RawValue,
}

/// Reads a state file's text.
pub fn decode_state(text: &str) -> Result<SavedState, StateFileError> {
    let body = open_envelope(text, STATE_KIND)?;
    let body: StateBody<'_> =
        serde_json::from_str(body).map_err(|error| StateFileError::Invalid(error.to_string()))?;
    let invalid = |name: &str, what: String| {
        StateFileError::Invalid(format!("register {}: {what}", json_string(name)))
    };
    let mut registers = Vec::with_capacity(body.registers.len());
    for (name, entry) in body.registers {
        let ttl = match duration::parse(&entry.ttl) {
            Ok(Some(ttl)) => ttl,
            _ => return Err(invalid(&name, format!("ttl {:?} is not valid", entry.ttl))),
        };
        let expires_in = match duration::parse(&entry.expires_in) {
            Ok(left) => left.unwrap_or(Duration::ZERO),
            Err(_) => {
                let what = format!("expires_in {:?} is not valid", entry.expires_in);
                return Err(invalid(&name, what));
            }
        };
        let metadata = match entry.metadata {
            None => None,
            Some(raw) if raw.get().starts_with('{') => {
                Some(stored_text(raw, &name)?).filter(|text| text.as_str() != "{}")
            }
            Some(_) => return Err(invalid(&name, "metadata is not an object".into())),
        };
        registers.push(RegisterView {
            value: stored_text(entry.value, &name)?,
            name: Name::from(name),
            metadata,
            ttl,
            expires_in,
            revision: entry.index,
        });
    }
    let mut requests = Vec::with_capacity(body.requests.len());
    for (name, entry) in body.requests {
        requests.push((Name::from(name.as_str()), stored_text(entry.value, &name)?));
    }
    Ok(SavedState {
        saved_at: SystemTime::UNIX_EPOCH + Duration::from_millis(body.saved_at_unix_ms),
        revision: body.revision,
        trusted_from: body.trusted_from,
        registers,
        requests,
        deletions: body
            .deletions
            .into_iter()
            .map(|(revision, name)| (revision, Name::from(name)))
            .collect(),
    })
}

/// A value or metadata as the core stores it: compact JSON text, nesting bounded.
fn stored_text(raw: &RawValue, name: &str) -> Result<Value, StateFileError> {
    compact_json(raw.get()).map(Value::new).map_err(|TooDeep| {
        StateFileError::Invalid(format!(
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

#[derive(Deserialize)]
struct RunBody {
    running: bool,
    reserved: Option<u64>,
    revision: Option<u64>,
}

/// Reads a run file's text.
pub fn decode_run(text: &str) -> Result<LastRun, StateFileError> {
    let body = open_envelope(text, RUN_KIND)?;
    let body: RunBody =
        serde_json::from_str(body).map_err(|error| StateFileError::Invalid(error.to_string()))?;
    match body {
        RunBody {
            running: true,
            reserved: Some(reserved),
            ..
        } => Ok(LastRun::Running { reserved }),
        RunBody {
            running: false,
            revision: Some(revision),
            ..
        } => Ok(LastRun::Stopped { revision }),
        _ => Err(StateFileError::Invalid(
            "a running record needs \"reserved\", a stopped one \"revision\"".into(),
        )),
    }
}

#[cfg(test)]
mod tests;
