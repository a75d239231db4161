//! The Go duration grammar: never a panic; whatever parses formats back to a duration
//! that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regd::fuzzing::duration;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Some(parsed)) = duration::parse(text) {
        let formatted = duration::format(parsed);
        assert_eq!(
            duration::parse(&formatted),
            Ok(Some(parsed)),
            "{text} -> {formatted}"
        );
    }
});
