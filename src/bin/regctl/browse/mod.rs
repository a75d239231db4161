//! `regctl browse`: the command, and (with the cargo feature `tui`) the live terminal
//! browser behind it — a pure [`model`], a [`view`] that draws it with ratatui, and the
//! [`event_loop`] that owns the terminal. Without the feature the command explains how
//! to get it and exits 1.

#[cfg(feature = "tui")]
mod event_loop;
#[cfg(feature = "tui")]
mod model;
#[cfg(feature = "tui")]
mod view;

use std::process::ExitCode;

use crate::args;
use crate::command::{Command, Context};
use crate::error::Error;

pub const COMMAND: Command = Command {
    name: "browse",
    synopsis: "browse",
    summary: "live full-screen browser of every register",
    help: HELP,
    run,
};

const HELP: &str = "\
usage: regctl browse

A live full-screen browser of every register: filter, flat list or tree, details
(metadata, ttl, time to expiry, revision), and editing values by change requests.
The keys are listed at the bottom of the screen; q or Esc quits. Honours NO_COLOR.
";

fn run(args: pico_args::Arguments, context: &Context) -> Result<ExitCode, Error> {
    if let Some(extra) = args::free_arguments(args, "browse")?.first() {
        return Err(Error::Usage(format!(
            "unexpected argument {extra:?}; browse takes no arguments (filter inside with /)"
        )));
    }
    browse(context)
}

#[cfg(feature = "tui")]
fn browse(context: &Context) -> Result<ExitCode, Error> {
    event_loop::run(&context.client()?).map_err(|error| Error::Failed(error.to_string()))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "tui"))]
fn browse(_context: &Context) -> Result<ExitCode, Error> {
    Err(Error::Failed(
        "this regctl was built without the terminal browser (cargo feature \"tui\"); use list or watch, or rebuild with the feature".to_string(),
    ))
}
