//! `regctl delete`: removes registers now (docs/protocol.md B2), so their consumers see them go
//! at once.

use std::process::ExitCode;

use crate::args;
use crate::command::{Command, Context};
use crate::error::Error;

pub const COMMAND: Command = Command {
    name: "delete",
    synopsis: "delete NAME...",
    summary: "remove registers now",
    help: HELP,
    run,
};

const HELP: &str = "\
usage: regctl delete NAME...

Removes registers now; their consumers see them go at once.
";

fn run(args: pico_args::Arguments, context: &Context) -> Result<ExitCode, Error> {
    let names = args::free_arguments(args, "delete")?;
    if names.is_empty() {
        return Err(Error::Usage(
            "delete needs at least one NAME; see regctl delete --help".to_string(),
        ));
    }
    context.client()?.delete(&names)?;
    Ok(ExitCode::SUCCESS)
}
