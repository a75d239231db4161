//! The built-in web dashboard (docs/protocol.md B6): serves `GET /` and the assets under
//! `/ui/`, embedded in the binary from `web/` at build time (cargo feature `web`).
//! Invariants: it serves only these fixed, embedded bytes — it never reads the file
//! system, never touches the registry, and never builds a page from request data; every
//! answer carries the strict Content-Security-Policy, `nosniff`, and an `ETag` that is a
//! hash of the exact bytes, so a browser revalidates cheaply (`304`). The dashboard
//! itself is an ordinary client of the public API (`/consumer`, `/provider`).

use crate::protocol::ApiError;

use super::exchange::{Request, Response};

/// No inline script or style, no eval, nothing from elsewhere: names, values and
/// metadata on the page are untrusted, and the page renders them as text only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    /// FNV-1a of `bytes`, computed at compile time.
    hash: u64,
}

// Built without the feature, nothing names an asset.
#[cfg_attr(not(feature = "web"), allow(unused_macros))]
macro_rules! asset {
    ($path:literal, $file:literal, $content_type:literal) => {{
        const BYTES: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $file));
        Asset {
            path: $path,
            content_type: $content_type,
            bytes: BYTES,
            hash: fnv1a(BYTES),
        }
    }};
}

#[cfg(feature = "web")]
const ASSETS: &[Asset] = &[
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!("/ui/app.js", "app.js", "text/javascript; charset=utf-8"),
    asset!("/ui/app.css", "app.css", "text/css; charset=utf-8"),
    asset!("/ui/icon.svg", "icon.svg", "image/svg+xml"),
];

/// Built without the dashboard: every path it would own answers 404.
#[cfg(not(feature = "web"))]
const ASSETS: &[Asset] = &[];

/// Whether `path` belongs to the dashboard (`/` and everything under `/ui/`), so the
/// router can send it here.
pub fn owns(path: &str) -> bool {
    path == "/" || path.starts_with("/ui/")
}

/// Answers a request for a dashboard path. `enabled` is the run-time switch
/// (`--web false`); when off, or built without the feature, the paths are 404 as if
/// the dashboard did not exist.
pub fn respond(request: &Request, enabled: bool) -> Result<Response, ApiError> {
    let asset = ASSETS
        .iter()
        .find(|asset| enabled && asset.path == request.path)
        .ok_or_else(|| ApiError::not_found(&request.path))?;
    if !matches!(request.method.as_str(), "GET" | "HEAD") {
        return Err(ApiError::method_not_allowed(
            &request.method,
            &request.path,
            "GET",
        ));
    }
    let etag = format!("\"{:016x}\"", asset.hash);
    let fresh = request
        .headers
        .iter()
        .filter(|(name, _)| name == "if-none-match")
        .any(|(_, value)| matches_etag(value, &etag));
    let mut response = Response {
        status: if fresh { 304 } else { 200 },
        content_type: asset.content_type,
        headers: Vec::new(),
        body: if fresh {
            Vec::new()
        } else {
            asset.bytes.to_vec()
        },
        close: false,
        undelivered: Vec::new(),
    };
    response.headers.extend([
        ("ETag", etag),
        // Revalidate every time: a phone on the gateway's network asks again, and the
        // answer is a body-less 304 unless regd was upgraded.
        ("Cache-Control", "no-cache".to_string()),
        (
            "Content-Security-Policy",
            CONTENT_SECURITY_POLICY.to_string(),
        ),
        ("X-Content-Type-Options", "nosniff".to_string()),
        ("Referrer-Policy", "no-referrer".to_string()),
        ("X-Frame-Options", "DENY".to_string()),
    ]);
    Ok(response)
}

/// `If-None-Match` (RFC 9110 13.1.2): `*`, or a list of tags compared weakly.
fn matches_etag(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// 64-bit FNV-1a: small, `const`, and good enough to tell two builds' assets apart.
#[cfg_attr(not(feature = "web"), allow(dead_code))] // only assets use it
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut at = 0;
    while at < bytes.len() {
        hash ^= bytes[at] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        at += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(not(feature = "web"), allow(dead_code))] // only asset tests use it
    fn get(path: &str, headers: &[(&str, &str)]) -> Result<Response, ApiError> {
        let mut request = Request::new("GET", path);
        request.headers = headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        respond(&request, true)
    }

    #[test]
    fn owns_the_root_and_the_ui_prefix_only() {
        for (path, owned) in [
            ("/", true),
            ("/ui/app.js", true),
            ("/ui/", true),
            ("/ui", false),
            ("/consumer", false),
            ("/index.html", false),
        ] {
            assert_eq!(owns(path), owned, "{path}");
        }
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists() {
        let etag = "\"00ff\"";
        for (header, fresh) in [
            ("\"00ff\"", true),
            ("W/\"00ff\"", true),
            ("\"1\", \"00ff\"", true),
            ("*", true),
            ("\"00fe\"", false),
            ("00ff", false),
            ("", false),
        ] {
            assert_eq!(matches_etag(header, etag), fresh, "{header}");
        }
    }

    #[test]
    fn fnv1a_matches_the_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn disabled_means_not_found() {
        let response = respond(&Request::new("GET", "/"), false);
        assert_eq!(response.unwrap_err().status, 404);
    }

    #[cfg(feature = "web")]
    #[test]
    fn serves_each_asset_with_its_type_and_a_stable_etag() {
        for asset in ASSETS {
            let response = get(asset.path, &[]).unwrap();
            assert_eq!(response.status, 200);
            assert_eq!(response.content_type, asset.content_type);
            assert_eq!(response.body, asset.bytes);
            let etag = response.header("ETag").unwrap().to_string();
            let again = get(asset.path, &[("if-none-match", &etag)]).unwrap();
            assert_eq!((again.status, again.body.len()), (304, 0));
        }
        let etags: std::collections::HashSet<u64> = ASSETS.iter().map(|a| a.hash).collect();
        assert_eq!(etags.len(), ASSETS.len(), "assets have distinct tags");
    }

    /// The page renders untrusted names and values: the script must never parse them
    /// as HTML or code, and the page must need no inline script or style (the CSP
    /// forbids them).
    #[cfg(feature = "web")]
    #[test]
    fn assets_avoid_what_the_policy_forbids() {
        let text = |path: &str| {
            let asset = ASSETS.iter().find(|asset| asset.path == path).unwrap();
            std::str::from_utf8(asset.bytes).unwrap()
        };
        let script = text("/ui/app.js");
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setAttribute('style'",
        ] {
            assert!(!script.contains(forbidden), "app.js uses {forbidden}");
        }
        let page = text("/");
        assert!(!page.contains("<script>"), "inline script in index.html");
        assert!(!page.contains("style="), "inline style in index.html");
        assert!(!page.contains("<style"), "inline style in index.html");
        for external in ["http:", "https:", "//"] {
            assert!(
                !page.contains(&format!("src=\"{external}")),
                "external resource"
            );
        }
    }
}
