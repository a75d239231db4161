//! Query strings: never a panic; limits always hold on what is accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regd::protocol::query::{self, NameLimits};

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
    }
});
