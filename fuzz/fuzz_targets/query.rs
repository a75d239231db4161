//! Query strings: never a panic; limits always hold on what is accepted; what is
//! accepted, written again by the client's encoder, parses back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regd::fuzzing::{NameLimits, query};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = NameLimits {
        max_name_bytes: 64,
        max_names: 16,
    };
    if let Ok(parsed) = query::parse(text, &limits) {
        assert!(parsed.names.len() <= limits.max_names);
        assert!(
            parsed
                .names
                .iter()
                .all(|name| name.len() <= limits.max_name_bytes)
        );
        let written = query::encode(&parsed.names, parsed.wait, parsed.index, parsed.details);
        let again = query::parse(&written, &limits).expect("the encoder's output parses");
        assert_eq!(again, parsed, "{written}");
    }
});
