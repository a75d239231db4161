//! Request bodies of both PUTs: never a panic; an accepted body re-encodes to valid
//! JSON in which every value keeps its text.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use regd::fuzzing::{NameLimits, publish, requests};

fuzz_target!(|data: &[u8]| {
    let limits = NameLimits::default();
    if let Ok(entries) = publish::decode(data, Duration::from_secs(10), &limits) {
        for (name, publish) in &entries {
            assert!(name.len() <= limits.max_name_bytes);
            // The stored texts are valid JSON (numbers of any size included) and compact.
            let raw: Box<serde_json::value::RawValue> =
                serde_json::from_str(publish.value.as_str()).expect("stored value is JSON");
            assert_eq!(raw.get(), publish.value.as_str());
            assert!(!publish.value.as_str().starts_with([' ', '\n', '\t', '\r']));
            if let Some(metadata) = &publish.metadata {
                assert!(metadata.as_str().starts_with('{'));
                assert_ne!(metadata.as_str(), "{}");
            }
        }
    }
    if let Ok(requests) = requests::decode_body(data, &limits) {
        let encoded = requests::encode(
            requests
                .iter()
                .map(|(name, value)| (&**name, value.as_str())),
        );
        let _: Box<serde_json::value::RawValue> =
            serde_json::from_str(&encoded).expect("answer is JSON");
    }
});
