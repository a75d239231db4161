//! The connection layer and router, fed arbitrary bytes: never a panic or a hang, and
//! every answer regd writes is a well-formed HTTP/1.1 response. The first byte picks
//! how the input is split into reads.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use regd::fuzzing::{HttpLimits, Service, ServiceConfig, serve_bytes};

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let service = Service::new(ServiceConfig {
        // Long polls must not stall the fuzzer.
        max_wait: Duration::from_millis(1),
        ..ServiceConfig::default()
    });
    let limits = HttpLimits {
        max_head_bytes: 2048,
        max_uri_bytes: 512,
        max_body_bytes: 4096,
        ..HttpLimits::default()
    };
    let output = serve_bytes(input, usize::from(split % 64) + 1, &service, &limits);
    // Every answer parses as an HTTP response and its body has the length it says.
    // (Slicing past the end would panic: a body shorter than announced is a bug.)
    let mut rest = &output[..];
    while !rest.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        let head = match response.parse(rest) {
            Ok(httparse::Status::Complete(head)) => head,
            other => panic!(
                "malformed answer {other:?}: {:?}",
                String::from_utf8_lossy(rest)
            ),
        };
        let status = response.code.expect("status");
        let length: usize = response
            .headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case("content-length"))
            .map(|header| std::str::from_utf8(header.value).unwrap().parse().unwrap())
            .unwrap_or(0);
        assert!(status == 100 || (200..600).contains(&status));
        if status >= 500 {
            assert_eq!(status, 501, "only unsupported encodings are 5xx here");
        }
        // An answer to HEAD announces its length but carries no body: the next answer
        // (or the end) follows the head directly.
        let after = &rest[head..];
        let has_body = status != 100 && !after.is_empty() && !after.starts_with(b"HTTP/1.1 ");
        rest = if has_body { &after[length..] } else { after };
    }
});
