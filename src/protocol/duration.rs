//! Durations as the wire writes them: Go's `time.ParseDuration` grammar (docs/protocol.md A6)
//! and Go's `Duration.String` format (for B7 details). Invariant: this parser accepts
//! exactly what Go accepts and overflows exactly where Go does (beyond ±2^63 ns).

use std::fmt;
use std::time::Duration;

/// Why a duration text was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationError {
    text: String,
    reason: &'static str,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid duration {:?}: {}; use a number with a unit (ns, us, ms, s, m, h) such as \"10s\", \"500ms\" or \"1m30s\"",
            self.text, self.reason
        )
    }
}

impl std::error::Error for DurationError {}

const UNITS: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{00B5}s", 1_000),
    ("\u{03BC}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

const LIMIT: u64 = 1 << 63;

/// Parses a Go duration. Returns `None` for zero and negative durations (which the
/// protocol treats as "none": answer at once, or use the default ttl).
pub fn parse(text: &str) -> Result<Option<Duration>, DurationError> {
    let fail = |reason| DurationError {
        text: text.to_string(),
        reason,
    };
    let mut rest = text.as_bytes();
    let mut negative = false;
    if let Some((&sign @ (b'-' | b'+'), after)) = rest.split_first() {
        negative = sign == b'-';
        rest = after;
    }
    if rest == b"0" {
        return Ok(None);
    }
    if rest.is_empty() {
        return Err(fail("it is empty"));
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        if !(rest[0] == b'.' || rest[0].is_ascii_digit()) {
            return Err(fail("expected a number"));
        }
        let (whole, after_whole) = leading_int(rest).ok_or_else(|| fail("it is too large"))?;
        let has_whole = after_whole.len() != rest.len();
        rest = after_whole;
        let mut fraction = (0u64, 1f64);
        let mut has_fraction = false;
        if let Some((b'.', after_dot)) = rest.split_first() {
            let (digits, scale, after_fraction) = leading_fraction(after_dot);
            has_fraction = after_fraction.len() != after_dot.len();
            fraction = (digits, scale);
            rest = after_fraction;
        }
        if !has_whole && !has_fraction {
            return Err(fail("a dot needs digits"));
        }
        let unit_len = rest
            .iter()
            .position(|&byte| byte == b'.' || byte.is_ascii_digit())
            .unwrap_or(rest.len());
        if unit_len == 0 {
            return Err(fail("a number needs a unit"));
        }
        let (unit_text, after_unit) = rest.split_at(unit_len);
        rest = after_unit;
        let unit = UNITS
            .iter()
            .find(|(name, _)| name.as_bytes() == unit_text)
            .map(|(_, nanos)| *nanos)
            .ok_or_else(|| fail("unknown unit"))?;
        if whole > LIMIT / unit {
            return Err(fail("it is too large"));
        }
        let mut value = whole * unit;
        if fraction.0 > 0 {
            // Go computes the fractional part in floating point; so do we, to agree.
            value += (fraction.0 as f64 * (unit as f64 / fraction.1)) as u64;
            if value > LIMIT {
                return Err(fail("it is too large"));
            }
        }
        total += value;
        if total > LIMIT {
            return Err(fail("it is too large"));
        }
    }
    if negative || total == 0 {
        return Ok(None);
    }
    if total > LIMIT - 1 {
        return Err(fail("it is too large"));
    }
    Ok(Some(Duration::from_nanos(total)))
}

fn leading_int(text: &[u8]) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    let mut used = 0;
    for &byte in text {
        if !byte.is_ascii_digit() {
            break;
        }
        if value > LIMIT / 10 {
            return None;
        }
        value = value * 10 + u64::from(byte - b'0');
        if value > LIMIT {
            return None;
        }
        used += 1;
    }
    Some((value, &text[used..]))
}

fn leading_fraction(text: &[u8]) -> (u64, f64, &[u8]) {
    let mut value: u64 = 0;
    let mut scale = 1f64;
    let mut overflow = false;
    let mut used = 0;
    for &byte in text {
        if !byte.is_ascii_digit() {
            break;
        }
        used += 1;
        if overflow {
            continue;
        }
        if value > (LIMIT - 1) / 10 {
            overflow = true;
            continue;
        }
        let next = value * 10 + u64::from(byte - b'0');
        if next > LIMIT {
            overflow = true;
            continue;
        }
        value = next;
        scale *= 10.0;
    }
    (value, scale, &text[used..])
}

/// Formats a duration the way Go's `Duration.String` does: `10s`, `1m0s`, `1.5s`,
/// `500ms`, `100µs`, `1h2m3s`.
pub fn format(duration: Duration) -> String {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (precision, unit) = match nanos {
            0..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "\u{00B5}s"),
            _ => (6, "ms"),
        };
        return format!("{}{unit}", with_fraction(nanos, precision));
    }
    let seconds = nanos / 1_000_000_000;
    let (hours, minutes, seconds_left) = (seconds / 3600, (seconds / 60) % 60, seconds % 60);
    let seconds_text = with_fraction(seconds_left * 1_000_000_000 + nanos % 1_000_000_000, 9);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds_text}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds_text}s")
    } else {
        format!("{seconds_text}s")
    }
}

/// `value / 10^precision` with the fraction's trailing zeros (and a bare dot) dropped.
fn with_fraction(value: u64, precision: u32) -> String {
    let scale = 10u64.pow(precision);
    let (whole, fraction) = (value / scale, value % scale);
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:0width$}", width = precision as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn parses(text: &str, nanos: Option<u64>) {
        assert_eq!(
            parse(text).map(|d| d.map(|d| d.as_nanos() as u64)),
            Ok(nanos),
            "{text}"
        );
    }

    #[test]
    fn accepts_what_go_accepts() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", None),
            ("-0", None),
            ("+0", None),
            ("5s", Some(5_000_000_000)),
            ("30s", Some(30_000_000_000)),
            ("+5s", Some(5_000_000_000)),
            ("-5s", None),
            ("0s", None),
            ("500ms", Some(500_000_000)),
            ("1m0s", Some(60_000_000_000)),
            ("0.01s", Some(10_000_000)),
            ("0.04s", Some(40_000_000)),
            ("300s", Some(300_000_000_000)),
            ("100µs", Some(100_000)),
            ("100\u{03BC}s", Some(100_000)),
            ("100us", Some(100_000)),
            ("7ns", Some(7)),
            ("1.5s", Some(1_500_000_000)),
            ("1h30m500ms", Some(5_400_500_000_000)),
            (".5s", Some(500_000_000)),
            ("1.s", Some(1_000_000_000)),
            ("1.0000000000000000000001s", Some(1_000_000_000)),
            ("2h", Some(7_200_000_000_000)),
            ("9223372036854775807ns", Some(9_223_372_036_854_775_807)),
            ("-9223372036854775808ns", None),
        ];
        for (text, nanos) in cases {
            parses(text, *nanos);
        }
    }

    #[test]
    fn refuses_what_go_refuses() {
        for text in [
            "",
            "5",
            "s",
            ".s",
            "-",
            "+",
            "1.5",
            "5 s",
            " 5s",
            "5s ",
            "5sec",
            "5S",
            "1e3s",
            "1,5s",
            "abc",
            "--5s",
            "0x10s",
            "1h-5m",
            "9223372036854775808ns",
            "3000000h",
        ] {
            let error = parse(text).expect_err(text);
            assert!(error.to_string().contains("such as \"10s\""), "{error}");
        }
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (500_000_000, "500ms"),
            (1_000_000_000, "1s"),
            (1_500_000_000, "1.5s"),
            (10_000_000_000, "10s"),
            (60_000_000_000, "1m0s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (5_400_500_000_000, "1h30m0.5s"),
        ];
        for (nanos, text) in cases {
            assert_eq!(format(Duration::from_nanos(*nanos)), *text);
            if *nanos > 0 {
                parses(text, Some(*nanos));
            }
        }
    }
}
