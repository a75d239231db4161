//! The state and run files: what is written is read back identically, and every kind of
//! damage is refused whole, naming what is wrong.

use super::*;

fn sample() -> SavedState {
    let view = |name: &str, value: &str, metadata: Option<&str>, revision| RegisterView {
        name: Name::from(name),
        value: Value::new(value),
        metadata: metadata.map(Value::new),
        ttl: Duration::from_millis(1500),
        expires_in: Duration::from_millis(1_234),
        revision,
    };
    SavedState {
        saved_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123),
        revision: 4_503_599_627_370_000,
        trusted_from: 4_503_599_627_360_000,
        registers: vec![
            view("__proto__", "null", None, 4_503_599_627_369_990),
            view("a \"quoted\"\n/name", "2.50", Some(r#"{"unit":"°C"}"#), 7),
            view(
                "kitchen.temp",
                r#"{"z":1,"a":[1e400,-0.0,"\u00e9 \\ \""]}"#,
                None,
                8,
            ),
            view(
                "µ",
                r#""text with spaces { [ ""#,
                Some(r#"{"b":{"c":[]}}"#),
                9,
            ),
        ],
        requests: vec![
            (Name::from("lamp"), Value::new("true")),
            (Name::from("名前"), Value::new(r#"{"on":1.0}"#)),
        ],
        deletions: vec![
            (4_503_599_627_360_001, Name::from("old")),
            (4_503_599_627_360_002, Name::from("older, with a comma")),
        ],
    }
}

#[test]
fn a_state_reads_back_exactly_as_it_was_written() {
    // Lifetimes are kept to the millisecond (as details=true gives them).
    let state = sample();
    let text = encode_state(&state);
    assert_eq!(decode_state(&text), Ok(state));
    assert!(text.ends_with("}\n"), "one line, ending in a newline");
    // Values and metadata are the stored texts, byte for byte.
    assert!(text.contains(r#""value":{"z":1,"a":[1e400,-0.0,"\u00e9 \\ \""]}"#));
    assert!(text.contains(r#""ttl":"1.5s","expires_in_ms":1234,"index":7"#));
    // The registers are a `GET /consumer?details=true` answer, the requests a
    // `GET /provider` answer.
    assert!(text.contains(r#""snapshot":{"registers":{"__proto__":{"value":null,"ttl""#));
    assert!(text.contains(r#""requests":{"registers":{"lamp":{"value":true}"#));
}

#[test]
fn an_empty_state_reads_back() {
    let state = SavedState {
        saved_at: SystemTime::UNIX_EPOCH,
        revision: 1,
        trusted_from: 1,
        registers: Vec::new(),
        requests: Vec::new(),
        deletions: Vec::new(),
    };
    assert_eq!(decode_state(&encode_state(&state)), Ok(state));
}

#[test]
fn the_save_time_is_rounded_up_to_the_millisecond() {
    let mut state = sample();
    state.saved_at = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_000_000_001);
    let read = decode_state(&encode_state(&state)).unwrap();
    assert_eq!(
        read.saved_at,
        SystemTime::UNIX_EPOCH + Duration::from_millis(1001)
    );
}

#[test]
fn a_hand_edited_file_fails_its_checksum() {
    let text = encode_state(&sample()).replacen(r#""value":2.50"#, r#""value": 2.50"#, 1);
    // The checksum no longer matches: edits are refused, as any damage is.
    assert_eq!(decode_state(&text), Err(StateFileError::ChecksumMismatch));
}

#[track_caller]
fn refused(text: &str, expected: StateFileError) {
    assert_eq!(decode_state(text).as_ref(), Err(&expected), "{text:?}");
    assert!(!expected.to_string().is_empty());
}

#[test]
fn damaged_files_are_refused_naming_the_damage() {
    let good = encode_state(&sample());
    let other_version = good.replacen(r#""version":1"#, r#""version":2"#, 1);
    refused("", StateFileError::Empty);
    refused("  \n", StateFileError::Empty);
    refused(&other_version, StateFileError::UnknownVersion(2));
    refused(
        &encode_run(&LastRun::Stopped { revision: 1 }),
        StateFileError::WrongKind {
            expected: STATE_KIND,
        },
    );
    refused(
        r#"{"registers":{}}"#,
        StateFileError::WrongKind {
            expected: STATE_KIND,
        },
    );
    for text in ["[1,2]", "null", "\u{0}\u{0}\u{0}", "{\"format\":"] {
        assert!(
            matches!(decode_state(text), Err(StateFileError::NotJson(_))),
            "{text:?}"
        );
    }
    let no_checksum = good[..good.find(r#","checksum""#).unwrap()].to_string() + "}";
    assert!(matches!(
        decode_state(&no_checksum),
        Err(StateFileError::Invalid(_))
    ));
}

#[test]
fn every_truncation_is_refused() {
    let good = encode_state(&sample());
    // Cutting the final newline leaves a whole file; any shorter cut must fail.
    for end in 0..good.len() - 1 {
        if good.is_char_boundary(end) {
            assert!(decode_state(&good[..end]).is_err(), "cut at {end}");
        }
    }
}

#[test]
fn every_flipped_byte_in_the_body_is_refused() {
    let good = encode_state(&sample());
    let body_start = good.find(r#""body":"#).unwrap() + 7;
    let body_end = good.find(r#","checksum""#).unwrap();
    for position in body_start..body_end {
        let mut bytes = good.clone().into_bytes();
        bytes[position] ^= 0x01;
        if let Ok(text) = String::from_utf8(bytes) {
            assert!(decode_state(&text).is_err(), "flip at {position}");
        }
    }
}

#[test]
fn invalid_fields_name_the_register() {
    // A well-formed body with a bad field, under a correct checksum (a buggy writer).
    let body = r#"{"saved_at_unix_ms":1,"revision":2,"trusted_from":1,"deletions":{},"snapshot":{"registers":{"x":{"value":1,"ttl":"5","expires_in_ms":1000,"index":1}}},"requests":{"registers":{}}}"#;
    let text = format!(
        r#"{{"format":"regd-state","version":1,"body":{body},"checksum":"fnv1a64:{:016x}"}}"#,
        fnv1a64(body.as_bytes())
    );
    match decode_state(&text) {
        Err(StateFileError::Invalid(what)) => {
            assert!(what.contains("\"x\"") && what.contains("ttl"), "{what}")
        }
        other => panic!("{other:?}"),
    }
    let deep = format!(
        "{}{}",
        "[".repeat(MAX_NESTING + 1),
        "]".repeat(MAX_NESTING + 1)
    );
    let body = body
        .replace(r#""value":1"#, &format!(r#""value":{deep}"#))
        .replace(r#""5""#, r#""5s""#);
    let text = format!(
        r#"{{"format":"regd-state","version":1,"body":{body},"checksum":"fnv1a64:{:016x}"}}"#,
        fnv1a64(body.as_bytes())
    );
    assert!(
        matches!(decode_state(&text), Err(StateFileError::Invalid(what)) if what.contains("nests"))
    );
}

#[test]
fn run_records_read_back() {
    for run in [
        LastRun::Running { reserved: 1 << 40 },
        LastRun::Stopped { revision: 12345 },
    ] {
        assert_eq!(decode_run(&encode_run(&run)), Ok(run));
    }
    assert_eq!(
        decode_run(&encode_state(&sample())),
        Err(StateFileError::WrongKind { expected: RUN_KIND })
    );
    assert_eq!(decode_run(""), Err(StateFileError::Empty));
    let text = encode_run(&LastRun::Running { reserved: 99 });
    assert!(decode_run(&text[..text.len() - 5]).is_err());
}

#[test]
fn fnv1a64_matches_the_reference_values() {
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}
