//! `regctl version` (and `regctl --version`): the program's version, as the original
//! command line's `reg version` prints it.

use std::process::ExitCode;

use crate::args;
use crate::command::{Command, Context};
use crate::error::Error;
use crate::output;

pub const COMMAND: Command = Command {
    name: "version",
    synopsis: "version",
    summary: "print the version",
    help: HELP,
    run,
};

const HELP: &str = "\
usage: regctl version

Prints regctl's version, the same line as regctl --version.
";

fn run(args: pico_args::Arguments, _context: &Context) -> Result<ExitCode, Error> {
    args::no_free_arguments(args, "version", "version takes no arguments")?;
    print()
}

/// Prints `regctl VERSION`.
pub fn print() -> Result<ExitCode, Error> {
    output::emit(&format!("regctl {}", env!("CARGO_PKG_VERSION")))?;
    Ok(ExitCode::SUCCESS)
}
