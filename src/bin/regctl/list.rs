//! `regctl list`: every register, sorted by name.

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use crate::args;
use crate::command::{Command, Context};
use crate::error::Error;
use crate::output;

pub const COMMAND: Command = Command {
    name: "list",
    synopsis: "list",
    summary: "print every register",
    help: HELP,
    run,
};

const HELP: &str = "\
usage: regctl list [--metadata] [--json]

Prints every register sorted by name: aligned NAME  VALUE columns on a terminal,
NAME=VALUE lines otherwise.

options:
  --metadata   print {\"value\": V, \"metadata\": M} instead of the value alone
  --json       print one JSON object of values by name
";

fn run(mut args: pico_args::Arguments, context: &Context) -> Result<ExitCode, Error> {
    let metadata = args.contains("--metadata");
    let json = args.contains("--json");
    args::no_free_arguments(args, "list", "list takes no names (use get)")?;
    let registers = context.client()?.list()?;
    let rows: Vec<(&str, String)> = registers
        .iter()
        .map(|(name, register)| (name.as_str(), output::register(register, metadata)))
        .collect();
    if json {
        output::emit(&output::object(
            rows.iter().map(|(name, text)| (*name, text.as_str())),
        ))?;
    } else {
        output::pairs(&rows, io::stdout().is_terminal())?;
    }
    Ok(ExitCode::SUCCESS)
}
