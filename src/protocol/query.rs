//! Query strings of the two GETs and of `DELETE /provider` (docs/protocol.md A2, B1, B7), both
//! ways: the server parses them (URL decoding, the `name`/`names` rules, the typed
//! parameters, the name limits) and the client writes them with [`encode`]. Invariants:
//! names come out exactly as the client meant them, in order; a malformed parameter is
//! an error that names it, never a silent default; what [`encode`] writes, [`parse`]
//! reads back as the same names and parameters.

use std::time::Duration;

use super::duration;
#[cfg(feature = "server")]
use super::error::ApiError;

#[cfg(feature = "server")]
/// Limits on the names one request may carry (docs/protocol.md B4).
#[derive(Clone, Copy, Debug)]
pub struct NameLimits {
    /// Longest register name, in bytes.
    pub max_name_bytes: usize,
    /// Most names in one request.
    pub max_names: usize,
}

#[cfg(feature = "server")]
impl Default for NameLimits {
    /// The daemon's defaults (`--max-name`, `--max-names`); this is their one source.
    fn default() -> Self {
        NameLimits {
            max_name_bytes: 1_024,
            max_names: 1_000,
        }
    }
}

#[cfg(feature = "server")]
/// The parameters of a `GET /consumer`, `GET /provider` or `DELETE /provider`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// Requested names in order (`name` occurrences, then `names`); empty means all.
    pub names: Vec<String>,
    /// How long to hold the request; `None` answers at once.
    pub wait: Option<Duration>,
    /// The last `X-Reg-Index` the client saw.
    pub index: Option<u64>,
    /// Whether entries carry ttl, time to expiry and revision (B7).
    pub details: bool,
}

#[cfg(feature = "server")]
/// Parses a raw query string (the part after `?`, still URL-encoded).
pub fn parse(raw: &str, limits: &NameLimits) -> Result<Query, ApiError> {
    parse_with(raw, limits, true)
}

#[cfg(feature = "server")]
/// Parses the query of `GET /provider` or `DELETE /provider`: `index` and `details`
/// belong to `GET /consumer` (docs/protocol.md B1, B7), so here they are unknown parameters,
/// and ignored (A2).
pub fn parse_provider(raw: &str, limits: &NameLimits) -> Result<Query, ApiError> {
    parse_with(raw, limits, false)
}

#[cfg(feature = "server")]
fn parse_with(raw: &str, limits: &NameLimits, consumer: bool) -> Result<Query, ApiError> {
    let mut query = Query::default();
    let mut names_list: Option<String> = None;
    let mut wait: Option<String> = None;
    let mut index: Option<String> = None;
    let mut details: Option<String> = None;
    for pair in raw.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key).map_err(|error| bad_parameter("a parameter name", &error))?;
        // Go's Query().Get returns the first occurrence; so do we for single parameters.
        let slot = match key.as_str() {
            "name" => {
                let name = decode(value).map_err(|error| bad_parameter("name", &error))?;
                check_name(&name, limits)?;
                query.names.push(name);
                check_count(query.names.len(), limits)?;
                continue;
            }
            "names" => &mut names_list,
            "wait" => &mut wait,
            "index" if consumer => &mut index,
            "details" if consumer => &mut details,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(decode(value).map_err(|error| bad_parameter(&key, &error))?);
        }
    }
    if let Some(list) = names_list.filter(|list| !list.is_empty()) {
        for name in list.split(',') {
            check_name(name, limits)?;
            query.names.push(name.to_string());
            check_count(query.names.len(), limits)?;
        }
    }
    if let Some(text) = wait.filter(|text| !text.is_empty()) {
        query.wait = duration::parse(&text)
            .map_err(|error| ApiError::bad_request(format!("parameter wait: {error}")))?;
    }
    if let Some(text) = index.filter(|text| !text.is_empty()) {
        query.index = Some(match text.parse::<u64>() {
            Ok(index) => index,
            // Too large for any revision: it is from the future, which answers at once.
            Err(_) if text.bytes().all(|byte| byte.is_ascii_digit()) => u64::MAX,
            Err(_) => {
                return Err(ApiError::bad_request(format!(
                    "parameter index must be a whole number (the X-Reg-Index of an earlier answer), got {text:?}"
                )));
            }
        });
    }
    if let Some(text) = details {
        query.details = match text.as_str() {
            "true" | "1" | "" => true,
            "false" | "0" => false,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "parameter details must be true or false, got {text:?}"
                )));
            }
        };
    }
    Ok(query)
}

#[cfg(feature = "server")]
fn check_name(name: &str, limits: &NameLimits) -> Result<(), ApiError> {
    if name.len() > limits.max_name_bytes {
        return Err(ApiError::bad_request(format!(
            "parameter name: a register name may have at most {} bytes, got {}",
            limits.max_name_bytes,
            name.len()
        )));
    }
    Ok(())
}

#[cfg(feature = "server")]
fn check_count(count: usize, limits: &NameLimits) -> Result<(), ApiError> {
    if count > limits.max_names {
        return Err(ApiError::bad_request(format!(
            "a request may name at most {} registers; split it into several requests",
            limits.max_names
        )));
    }
    Ok(())
}

#[cfg(feature = "server")]
fn bad_parameter(parameter: &str, error: &str) -> ApiError {
    ApiError::bad_request(format!("parameter {parameter}: {error}"))
}

/// Writes a query string: `name=` for each name (URL-encoded), then `wait` (Go's
/// format), `index` and `details=true` when given. [`parse`] reads it back as the same
/// query, except that a zero `wait` reads back as none (both answer at once).
pub fn encode<S: AsRef<str>>(
    names: &[S],
    wait: Option<Duration>,
    index: Option<u64>,
    details: bool,
) -> String {
    let mut parameters: Vec<String> = names
        .iter()
        .map(|name| format!("name={}", encode_component(name.as_ref())))
        .collect();
    if let Some(wait) = wait {
        parameters.push(format!("wait={}", duration::format(wait)));
    }
    if let Some(index) = index {
        parameters.push(format!("index={index}"));
    }
    if details {
        parameters.push("details=true".to_string());
    }
    parameters.join("&")
}

/// Percent-encodes a query value (everything but unreserved characters).
fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(feature = "server")]
/// Form decoding: `+` is a space, `%XX` a byte; the result must be UTF-8.
fn decode(text: &str) -> Result<String, String> {
    if !text.contains(['%', '+']) {
        return Ok(text.to_string());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(at + 1..at + 3)
                    .and_then(|pair| std::str::from_utf8(pair).ok())
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(|| {
                        "a % must be followed by two hexadecimal digits (write %25 for a literal %)"
                            .to_string()
                    })?;
                out.push(hex);
                at += 2;
            }
            byte => out.push(byte),
        }
        at += 1;
    }
    String::from_utf8(out).map_err(|_| "the decoded text is not valid UTF-8".to_string())
}

#[cfg(all(test, feature = "server"))]
mod tests {
    use super::*;

    #[track_caller]
    fn names_of(raw: &str) -> Vec<String> {
        parse(raw, &NameLimits::default()).expect(raw).names
    }

    #[track_caller]
    fn refused(raw: &str, limits: &NameLimits, mentions: &str) {
        let error = parse(raw, limits).expect_err(raw);
        assert_eq!(error.status, 400, "{raw}");
        assert!(error.message.contains(mentions), "{raw}: {}", error.message);
    }

    #[test]
    fn names_decode_and_keep_their_order() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("name=a", &["a"]),
            ("name=b&name=a", &["b", "a"]),
            ("name=a%20b&name=c+d", &["a b", "c d"]),
            ("name=a%2Fb", &["a/b"]),
            ("name=a,b", &["a,b"]),
            ("name=__proto__", &["__proto__"]),
            ("name=%C3%A9t%C3%A9", &["été"]),
            ("name=x:y.z", &["x:y.z"]),
            ("names=a,b&name=c", &["c", "a", "b"]),
            ("names=a,b&names=z", &["a", "b"]),
            ("names=", &[]),
            ("name=", &[""]),
            ("other=1&name=a&&", &["a"]),
        ];
        for (raw, expected) in cases {
            assert_eq!(names_of(raw), *expected, "{raw}");
        }
    }

    #[test]
    fn typed_parameters() {
        let huge = parse("index=4649996415727488968163328", &NameLimits::default()).unwrap();
        assert_eq!(
            huge.index,
            Some(u64::MAX),
            "beyond any revision, not an error"
        );
        let query = parse("wait=1.5s&index=42&details=true", &NameLimits::default()).unwrap();
        assert_eq!(query.wait, Some(Duration::from_millis(1500)));
        assert_eq!(query.index, Some(42));
        assert!(query.details);
        for raw in ["wait=", "wait=0", "wait=-5s", "", "wait=0s&wait=5s"] {
            assert_eq!(
                parse(raw, &NameLimits::default()).unwrap().wait,
                None,
                "{raw}"
            );
        }
        let first_wins = parse("wait=5s&wait=bogus", &NameLimits::default()).unwrap();
        assert_eq!(first_wins.wait, Some(Duration::from_secs(5)));
    }

    #[test]
    fn provider_queries_ignore_consumer_parameters() {
        let query = parse_provider(
            "name=a&index=x&details=maybe&wait=1s",
            &NameLimits::default(),
        )
        .expect("index and details are unknown here");
        assert_eq!(query.names, ["a"]);
        assert_eq!((query.index, query.details), (None, false));
        assert!(parse_provider("wait=soon", &NameLimits::default()).is_err());
    }

    #[test]
    fn malformed_parameters_are_named() {
        let limits = NameLimits::default();
        refused("wait=5", &limits, "parameter wait");
        refused("wait=soon", &limits, "parameter wait");
        refused("index=-1", &limits, "parameter index");
        refused("index=abc", &limits, "parameter index");
        refused("details=maybe", &limits, "parameter details");
        refused("name=%zz", &limits, "parameter name");
        refused("name=%C3", &limits, "UTF-8");
        refused("name=%4", &limits, "hexadecimal");
    }

    #[test]
    fn name_limits_are_enforced() {
        let limits = NameLimits {
            max_name_bytes: 4,
            max_names: 2,
        };
        assert_eq!(
            parse("name=abcd&name=b", &limits).unwrap().names,
            ["abcd", "b"]
        );
        refused("name=abcde", &limits, "at most 4 bytes");
        refused("name=a&name=b&name=c", &limits, "at most 2 registers");
        refused("names=a,b,c", &limits, "at most 2 registers");
        refused("names=abcdef", &limits, "at most 4 bytes");
    }

    #[test]
    fn what_is_encoded_parses_back() {
        assert_eq!(encode::<&str>(&[], None, None, false), "");
        assert_eq!(
            encode(&["a b", "x/y", "é"], None, None, false),
            "name=a%20b&name=x%2Fy&name=%C3%A9"
        );
        let names = ["a b", "x/y,z", "é+%", "", "__proto__", "1&wait=5s"];
        let limits = NameLimits::default();
        for wait in [
            None,
            Some(Duration::from_millis(1500)),
            Some(Duration::from_secs(3600)),
        ] {
            for index in [None, Some(0), Some(u64::MAX)] {
                for details in [false, true] {
                    let raw = encode(&names, wait, index, details);
                    let query = parse(&raw, &limits).expect(&raw);
                    assert_eq!(
                        query,
                        Query {
                            names: names.iter().map(|name| name.to_string()).collect(),
                            wait,
                            index,
                            details
                        },
                        "{raw}"
                    );
                }
            }
        }
        let zero = parse(&encode(&["a"], Some(Duration::ZERO), None, false), &limits).unwrap();
        assert_eq!(zero.wait, None);
    }
}
