//! Reading a command's own arguments: free arguments (names), options with durations,
//! counts and JSON values. Every refusal is an [`Error::Usage`] that names the argument
//! and says what would be accepted.

use std::ffi::OsString;
use std::time::Duration;

use regd::client::Json;

use crate::error::Error;

/// A pico-args refusal as regctl words it.
pub fn usage_error(error: pico_args::Error) -> Error {
    Error::Usage(format!("{error}; see regctl --help"))
}

/// The remaining free arguments; an unknown option is a usage error. Names that start
/// with `-` can follow `--`.
pub fn free_arguments(args: pico_args::Arguments, command: &str) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    let mut after_dashes = false;
    for arg in args.finish() {
        let arg = into_string(arg)?;
        if !after_dashes && arg == "--" {
            after_dashes = true;
        } else if !after_dashes && arg.starts_with('-') && arg.len() > 1 {
            return Err(Error::Usage(format!(
                "unknown option {arg:?}; see regctl {command} --help (put -- before names that start with -)"
            )));
        } else {
            names.push(arg);
        }
    }
    Ok(names)
}

/// Refuses any free argument, for commands that take only options.
pub fn no_free_arguments(
    args: pico_args::Arguments,
    command: &str,
    hint: &str,
) -> Result<(), Error> {
    match free_arguments(args, command)?.first() {
        Some(extra) => Err(Error::Usage(format!(
            "unexpected argument {extra:?}; {hint}"
        ))),
        None => Ok(()),
    }
}

fn into_string(arg: OsString) -> Result<String, Error> {
    arg.into_string()
        .map_err(|arg| Error::Usage(format!("argument {arg:?} is not valid UTF-8")))
}

/// An optional string option.
pub fn text_option(
    args: &mut pico_args::Arguments,
    flag: &'static str,
) -> Result<Option<String>, Error> {
    args.opt_value_from_str(flag).map_err(usage_error)
}

/// An optional positive duration option.
pub fn duration_option(
    args: &mut pico_args::Arguments,
    flag: &'static str,
) -> Result<Option<Duration>, Error> {
    text_option(args, flag)?
        .map(|text| {
            parse_duration(&text).map_err(|reason| Error::Usage(format!("{flag}: {reason}")))
        })
        .transpose()
}

/// A human duration (`5s`, `1m 30s`, `500ms`), or the Go form regd uses (`1.5s`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .ok()
        .or_else(|| regd::client::duration::parse(text).ok().flatten())
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| format!("{text:?} is not a positive duration such as 500ms, 5s or 1m"))
}

/// A whole number option between 1 and `max`.
pub fn count_option(
    args: &mut pico_args::Arguments,
    flag: &'static str,
    default: usize,
    max: usize,
) -> Result<usize, Error> {
    let Some(text) = text_option(args, flag)? else {
        return Ok(default);
    };
    text.parse::<usize>()
        .ok()
        .filter(|count| (1..=max).contains(count))
        .ok_or_else(|| {
            Error::Usage(format!(
                "{flag}: expected a whole number from 1 to {max}, got {text:?}"
            ))
        })
}

/// Parses a JSON argument, with a hint for the common mistake of a bare word.
pub fn json_argument(what: &str, text: &str) -> Result<Json, Error> {
    Json::parse(text).map_err(|error| {
        Error::Usage(format!(
            "{what} must be JSON, got {text:?} ({error}); to send a string, quote it: '\"{text}\"'"
        ))
    })
}
