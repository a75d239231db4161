//! `regctl set`: sends a change request (docs/protocol.md A8) and, unless told not to, waits
//! until the register takes the value — through the client's `request_and_wait`, which
//! `regctl mcp` shares.

use std::process::ExitCode;
use std::time::Duration;

use regd::client::RequestOutcome;

use crate::args;
use crate::command::{Command, Context};
use crate::error::Error;

pub const COMMAND: Command = Command {
    name: "set",
    synopsis: "set NAME VALUE",
    summary: "ask a register's provider for a new value",
    help: HELP,
    run,
};

const HELP: &str = "\
usage: regctl set NAME VALUE [--timeout 2s] [--no-wait]

Sends a change request for NAME to its provider. By default waits until the register
takes VALUE (exit 0) or the timeout passes (exit 1, saying what the register holds).

options:
  --timeout DURATION   how long to wait for the register to take the value (default 2s)
  --no-wait            send the request and exit at once
";

/// How long `set` waits for the provider unless told otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

fn run(mut args: pico_args::Arguments, context: &Context) -> Result<ExitCode, Error> {
    let timeout = args::duration_option(&mut args, "--timeout")?.unwrap_or(DEFAULT_TIMEOUT);
    let no_wait = args.contains("--no-wait");
    let free = args::free_arguments(args, "set")?;
    let [name, value] = free.as_slice() else {
        return Err(Error::Usage(
            "set takes NAME VALUE; see regctl set --help".to_string(),
        ));
    };
    let value = args::json_argument("VALUE", value)?;
    let client = context.client()?;
    if no_wait {
        client.request(name, &value)?;
        return Ok(ExitCode::SUCCESS);
    }
    let waited = humantime::format_duration(timeout);
    match client.request_and_wait(name, &value, timeout)? {
        RequestOutcome::Applied => Ok(ExitCode::SUCCESS),
        RequestOutcome::NotApplied {
            current: Some(register),
        } => Err(Error::Failed(format!(
            "register {name:?} did not take {value} within {waited}; its value is {} (is its provider running, and not read-only?)",
            register.value
        ))),
        RequestOutcome::NotApplied { current: None } => Err(Error::Failed(format!(
            "register {name:?} does not exist, so nothing took {value} within {waited}; the request waits for a provider of {name:?}"
        ))),
    }
}
