//! Access control (docs/protocol.md B5): tokens with roles, checked in one place. Off unless
//! tokens are configured. Invariants: a token is compared in constant time against
//! every configured token (no early exit that would leak which one came close); trust
//! for loopback is decided by the TCP peer address alone, never by a header; tokens
//! never appear in messages or logs (only their labels do).

use std::fmt;
use std::net::SocketAddr;

use crate::protocol::ApiError;

/// What a token may reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `/provider` (publish, refresh, delete, take change requests).
    Provider,
    /// `/consumer` (read, poll, request changes).
    Consumer,
    /// Both resources.
    Admin,
}

impl Role {
    fn allows(self, resource: &str) -> bool {
        match self {
            Role::Admin => true,
            Role::Provider => resource == "provider",
            Role::Consumer => resource == "consumer",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Provider => "provider",
            Role::Consumer => "consumer",
            Role::Admin => "admin",
        }
    }
}

/// One configured token.
#[derive(Clone)]
pub struct Token {
    secret: Vec<u8>,
    role: Role,
    label: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("Token")
            .field("role", &self.role)
            .field("label", &self.label)
            .finish()
    }
}

/// Shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LENGTH: usize = 16;

/// Why a token file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFileError {
    /// 1-based line number, 0 for the whole file.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TokenFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for TokenFileError {}

/// Parses a token file: one `TOKEN ROLE [LABEL...]` per line; `#` starts a comment.
pub fn parse_tokens(text: &str) -> Result<Vec<Token>, TokenFileError> {
    let mut tokens: Vec<Token> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fail = |message: String| TokenFileError {
            line: number + 1,
            message,
        };
        let mut words = line.split_whitespace();
        let secret = words.next().unwrap_or_default();
        let role = match words.next() {
            Some("provider") => Role::Provider,
            Some("consumer") => Role::Consumer,
            Some("admin") => Role::Admin,
            Some(other) => {
                return Err(fail(format!(
                    "unknown role {other:?}; use provider, consumer or admin"
                )));
            }
            None => {
                return Err(fail(
                    "a line needs a token and a role: TOKEN provider|consumer|admin [LABEL]"
                        .to_string(),
                ));
            }
        };
        if secret.len() < MIN_TOKEN_LENGTH {
            return Err(fail(format!(
                "token too short ({} characters); use at least {MIN_TOKEN_LENGTH}, for example from `openssl rand -hex 24`",
                secret.len()
            )));
        }
        if tokens.iter().any(|token| token.secret == secret.as_bytes()) {
            return Err(fail("the same token appears twice".to_string()));
        }
        let label = words.collect::<Vec<_>>().join(" ");
        tokens.push(Token {
            secret: secret.as_bytes().to_vec(),
            role,
            label: if label.is_empty() {
                format!("line {}", number + 1)
            } else {
                label
            },
        });
    }
    if tokens.is_empty() {
        return Err(TokenFileError {
            line: 0,
            message: "the token file has no tokens".to_string(),
        });
    }
    Ok(tokens)
}

/// Who may do what.
#[derive(Clone, Debug, Default)]
pub struct AccessPolicy {
    /// The configured tokens; empty means access control is off.
    pub tokens: Vec<Token>,
    /// Requests whose TCP peer is a loopback address need no token.
    pub trust_loopback: bool,
    /// `/metrics` needs no token.
    pub open_metrics: bool,
}

impl AccessPolicy {
    /// Whether a request for `resource` (`consumer`, `provider`, `metrics`, `healthz`,
    /// `other`) may proceed. `authorization` is the header's value.
    pub fn check(
        &self,
        resource: &str,
        authorization: Option<&str>,
        peer: Option<SocketAddr>,
    ) -> Result<(), ApiError> {
        // The dashboard's assets hold no data; its API calls need a token like any other.
        if self.tokens.is_empty() || matches!(resource, "healthz" | "web" | "other") {
            return Ok(());
        }
        if resource == "metrics" && self.open_metrics {
            return Ok(());
        }
        if self.trust_loopback
            && peer.is_some_and(|address| address.ip().to_canonical().is_loopback())
        {
            return Ok(());
        }
        let Some(presented) = authorization.and_then(presented_token) else {
            return Err(unauthorized(
                "this regd needs a token: send Authorization: Bearer TOKEN (or HTTP Basic with the token as password)",
            ));
        };
        let token = self
            .find(&presented)
            .ok_or_else(|| unauthorized("the token is not valid"))?;
        if resource == "metrics" || token.role.allows(resource) {
            Ok(())
        } else {
            Err(ApiError::with_status(
                403,
                format!(
                    "a {} token ({}) may not use /{resource}",
                    token.role.name(),
                    token.label
                ),
            ))
        }
    }

    /// Compares against every token, in constant time for tokens of equal length.
    fn find(&self, presented: &[u8]) -> Option<&Token> {
        let mut found = None;
        for token in &self.tokens {
            if constant_time_equal(&token.secret, presented) {
                found = Some(token);
            }
        }
        found
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError {
        www_authenticate: true,
        ..ApiError::with_status(401, message)
    }
}

fn constant_time_equal(expected: &[u8], presented: &[u8]) -> bool {
    let mut difference = u8::from(expected.len() != presented.len());
    for (position, byte) in expected.iter().enumerate() {
        difference |= byte ^ presented.get(position).copied().unwrap_or(0);
    }
    difference == 0
}

/// The token in an `Authorization` header: `Bearer TOKEN`, or `Basic` with the token
/// as password (the user name is ignored).
fn presented_token(header: &str) -> Option<Vec<u8>> {
    let (scheme, credentials) = header.trim().split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.as_bytes().to_vec());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64_decode(credentials)?;
        let colon = decoded.iter().position(|&byte| byte == b':')?;
        return Some(decoded[colon + 1..].to_vec());
    }
    None
}

/// Standard base64 with optional padding; `None` on anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |byte: u8| -> Option<u32> {
        Some(match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for group in digits.chunks(4) {
        if group.len() == 1 {
            return None;
        }
        let mut bits = 0u32;
        for &byte in group {
            bits = (bits << 6) | value(byte)?;
        }
        bits <<= 6 * (4 - group.len() as u32);
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROVIDER: &str = "provider-token-0123456789";
    const CONSUMER: &str = "consumer-token-0123456789";
    const ADMIN: &str = "admin-token-0123456789abc";

    fn policy(trust_loopback: bool, open_metrics: bool) -> AccessPolicy {
        AccessPolicy {
            tokens: parse_tokens(&format!(
                "# tokens\n{PROVIDER} provider sensors\n\n{CONSUMER} consumer dashboard # comment\n{ADMIN} admin\n"
            ))
            .unwrap(),
            trust_loopback,
            open_metrics,
        }
    }

    fn basic(user: &str, password: &str) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let input = format!("{user}:{password}").into_bytes();
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let bits = chunk.iter().enumerate().fold(0u32, |bits, (i, byte)| {
                bits | (u32::from(*byte) << (16 - 8 * i))
            });
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((bits >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        format!("Basic {out}")
    }

    fn remote() -> Option<SocketAddr> {
        Some("192.0.2.7:40000".parse().unwrap())
    }

    #[test]
    fn every_role_and_resource_combination() {
        let policy = policy(false, false);
        let bearer = |token: &str| format!("Bearer {token}");
        let cases: &[(&str, Option<String>, Result<(), u16>)] = &[
            ("consumer", None, Err(401)),
            ("provider", None, Err(401)),
            ("metrics", None, Err(401)),
            ("healthz", None, Ok(())),
            ("other", None, Ok(())),
            ("consumer", Some(bearer("wrong-token-0123456789")), Err(401)),
            ("consumer", Some(bearer(&PROVIDER[..20])), Err(401)),
            ("consumer", Some(PROVIDER.to_string()), Err(401)),
            ("consumer", Some(bearer(CONSUMER)), Ok(())),
            ("provider", Some(bearer(CONSUMER)), Err(403)),
            ("provider", Some(bearer(PROVIDER)), Ok(())),
            ("consumer", Some(bearer(PROVIDER)), Err(403)),
            ("consumer", Some(bearer(ADMIN)), Ok(())),
            ("provider", Some(bearer(ADMIN)), Ok(())),
            ("metrics", Some(bearer(CONSUMER)), Ok(())),
            ("consumer", Some(format!("bearer  {CONSUMER} ")), Ok(())),
            ("consumer", Some(basic("anyone", CONSUMER)), Ok(())),
            ("provider", Some(basic("", PROVIDER)), Ok(())),
            ("provider", Some(basic(PROVIDER, "")), Err(401)),
            ("consumer", Some("Basic !!!".to_string()), Err(401)),
            ("consumer", Some("Digest x".to_string()), Err(401)),
        ];
        for (resource, header, expected) in cases {
            let result = policy
                .check(resource, header.as_deref(), remote())
                .map_err(|error| error.status);
            assert_eq!(result, *expected, "{resource} with {header:?}");
        }
    }

    #[test]
    fn refusals_say_what_to_do_and_never_echo_the_token() {
        let policy = policy(false, false);
        let missing = policy.check("consumer", None, remote()).unwrap_err();
        assert!(missing.www_authenticate);
        assert!(missing.message.contains("Authorization: Bearer"));
        let forbidden = policy
            .check("provider", Some(&format!("Bearer {CONSUMER}")), remote())
            .unwrap_err();
        assert!(forbidden.message.contains("consumer token (dashboard)"));
        assert!(!forbidden.message.contains(CONSUMER));
        assert!(!format!("{:?}", policy.tokens).contains(CONSUMER));
    }

    #[test]
    fn loopback_is_trusted_only_by_peer_address_and_only_when_asked() {
        let loopbacks = [
            "127.0.0.1:1",
            "127.5.6.7:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ];
        for address in loopbacks {
            let peer = Some(address.parse().unwrap());
            assert!(
                policy(true, false).check("provider", None, peer).is_ok(),
                "{address}"
            );
            assert_eq!(
                policy(false, false)
                    .check("provider", None, peer)
                    .unwrap_err()
                    .status,
                401
            );
        }
        assert_eq!(
            policy(true, false)
                .check("provider", None, remote())
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            policy(true, false)
                .check("provider", None, None)
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn open_metrics_flag() {
        assert!(policy(false, true).check("metrics", None, remote()).is_ok());
        assert_eq!(
            policy(false, true)
                .check("consumer", None, remote())
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn no_tokens_means_open() {
        assert!(
            AccessPolicy::default()
                .check("provider", None, remote())
                .is_ok()
        );
    }

    #[test]
    fn token_files_are_checked() {
        let cases: &[(&str, &str)] = &[
            ("", "the token file has no tokens"),
            ("# only a comment\n", "the token file has no tokens"),
            ("short provider\n", "line 1: token too short"),
            (
                "0123456789abcdef0123\n",
                "line 1: a line needs a token and a role",
            ),
            (
                "0123456789abcdef0123 root\n",
                "line 1: unknown role \"root\"",
            ),
            (
                "0123456789abcdef0123 admin\n0123456789abcdef0123 provider\n",
                "line 2: the same token appears twice",
            ),
        ];
        for (text, message) in cases {
            let error = parse_tokens(text).expect_err(text);
            assert!(error.to_string().starts_with(message), "{text:?}: {error}");
        }
    }

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64_decode("dTpw").unwrap(), b"u:p");
        assert_eq!(base64_decode("dTpwMQ==").unwrap(), b"u:p1");
        assert_eq!(base64_decode("dTpwMQ").unwrap(), b"u:p1");
        assert_eq!(base64_decode("dTpwMTI=").unwrap(), b"u:p12");
        assert!(base64_decode("d").is_none());
        assert!(base64_decode("d$==").is_none());
    }
}
