//! Everything regctl writes to stdout, in one place: data lines, help texts, registers
//! as text or JSON, and aligned tables. Invariants: stdout carries data only (messages
//! go to stderr); each line is flushed as it is written, so `watch | grep` sees changes
//! at once; a closed stdout becomes [`Error::ClosedPipe`], which ends the program
//! quietly.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use regd::client::Register;

use crate::error::Error;

/// Writes one line of data to stdout.
pub fn emit(line: &str) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(output_error)
}

/// Prints a help text (which ends in its own newline).
pub fn help(text: &str) -> Result<ExitCode, Error> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(output_error)?;
    Ok(ExitCode::SUCCESS)
}

fn output_error(error: io::Error) -> Error {
    if error.kind() == io::ErrorKind::BrokenPipe {
        Error::ClosedPipe
    } else {
        Error::Failed(format!("cannot write to stdout: {error}"))
    }
}

/// A register as printed: its value, or with `metadata` the object
/// `{"value": V, "metadata": M}` (metadata left out when the register has none).
pub fn register(register: &Register, metadata: bool) -> String {
    if !metadata {
        return register.value.to_string();
    }
    let mut members = vec![("value", register.value.as_str())];
    if let Some(metadata) = &register.metadata {
        members.push(("metadata", metadata.as_str()));
    }
    object(members)
}

/// A JSON string literal.
pub fn string(text: &str) -> String {
    // Serialising a `str` cannot fail.
    serde_json::to_string(text).unwrap_or_default()
}

/// A JSON object from members whose values are already JSON text, in the given order.
pub fn object<'a>(members: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let members: Vec<String> = members
        .into_iter()
        .map(|(key, value)| format!("{}:{value}", string(key)))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// A JSON array from items that are already JSON text, in the given order.
pub fn array<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(","))
}

/// A JSON number for a measurement: finite numbers with `decimals` decimals, anything
/// else (which JSON cannot hold) as `null`.
pub fn number(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "null".to_string()
    }
}

/// Rows as an aligned table (without a trailing newline): the first column left
/// aligned, the others right aligned, two spaces apart.
pub fn table<const COLUMNS: usize>(rows: &[[String; COLUMNS]]) -> String {
    let widths: Vec<usize> = (0..COLUMNS)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let mut line = format!("{:<width$}", row[0], width = widths[0]);
            for (cell, width) in row.iter().zip(&widths).skip(1) {
                line.push_str(&format!("  {cell:>width$}"));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Name and text pairs as lines: aligned `NAME  TEXT` columns for people,
/// `NAME=TEXT` for programs.
pub fn pairs(rows: &[(&str, String)], aligned: bool) -> Result<(), Error> {
    let width = rows
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0);
    for (name, text) in rows {
        if aligned {
            emit(&format!("{name:<width$}  {text}"))?;
        } else {
            emit(&format!("{name}={text}"))?;
        }
    }
    Ok(())
}

/// A latency for people: whole microseconds below a millisecond, else two decimals.
pub fn latency(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.0}µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2}ms", micros / 1e3)
    } else {
        format!("{:.2}s", micros / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_built_in_order() {
        assert_eq!(
            object([("b", "1"), ("a", &string("x\"y"))]),
            r#"{"b":1,"a":"x\"y"}"#
        );
        assert_eq!(object([]), "{}");
        assert_eq!(array(["1", "{}"]), "[1,{}]");
        assert_eq!(number(2.0 / 3.0, 1), "0.7");
        assert_eq!(number(f64::NAN, 1), "null");
    }

    #[test]
    fn tables_align() {
        let rows = [
            ["phase".to_string(), "n".to_string()],
            ["x".to_string(), "100".to_string()],
        ];
        assert_eq!(table(&rows), "phase    n\nx      100");
    }

    #[test]
    fn latencies_for_people() {
        assert_eq!(latency(Duration::from_micros(850)), "850µs");
        assert_eq!(latency(Duration::from_micros(1_500)), "1.50ms");
        assert_eq!(latency(Duration::from_millis(2_500)), "2.50s");
    }
}
