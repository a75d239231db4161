//! `regctl watch`: the current state of registers, then every change and removal as it
//! happens, through one consumer (one batched long poll with `index=`, so nothing is
//! missed), until interrupted.

use std::process::ExitCode;

use crossbeam_channel::select;
use regd::client::{self, Update};

use crate::args;
use crate::command::{Command, Context};
use crate::error::Error;
use crate::output;
use crate::signals::Interrupts;

pub const COMMAND: Command = Command {
    name: "watch",
    synopsis: "watch [NAME...]",
    summary: "print every change as it happens",
    help: HELP,
    run,
};

const HELP: &str = "\
usage: regctl watch [NAME...] [--json]

Prints the current state of the named registers (every register when no name is
given), then every change and removal as it happens, one line each, until
interrupted: NAME=VALUE for a value, NAME (removed) for a removal.

options:
  --json   print {\"name\": N, \"value\": V, \"metadata\": M} and {\"name\": N, \"removed\": true}
";

fn run(mut args: pico_args::Arguments, context: &Context) -> Result<ExitCode, Error> {
    let json = args.contains("--json");
    let names = args::free_arguments(args, "watch")?;
    let client = context.client()?;
    let interrupts = Interrupts::start()?;
    let consumer = client.consumer();
    if names.is_empty() {
        consumer.subscribe_all();
    } else {
        consumer.subscribe(names);
    }
    loop {
        select! {
            recv(interrupts.received) -> _ => return Ok(ExitCode::SUCCESS),
            recv(consumer.updates()) -> update => match update {
                Ok(Update::Changed { name, register }) => {
                    if json {
                        let name = output::string(&name);
                        let mut members = vec![("name", name.as_str()), ("value", register.value.as_str())];
                        if let Some(metadata) = &register.metadata {
                            members.push(("metadata", metadata.as_str()));
                        }
                        output::emit(&output::object(members))?;
                    } else {
                        output::emit(&format!("{name}={}", register.value))?;
                    }
                }
                Ok(Update::Removed { name }) => {
                    if json {
                        let name = output::string(&name);
                        output::emit(&output::object([("name", name.as_str()), ("removed", "true")]))?;
                    } else {
                        output::emit(&format!("{name} (removed)"))?;
                    }
                }
                // Retrying with the same token cannot help.
                Ok(Update::Failed(error)) if error.is_access_denied() => return Err(error.into()),
                Ok(Update::Failed(error)) => eprintln!("regctl: {error}; retrying"),
                Ok(Update::Recovered) => eprintln!("regctl: regd answers again"),
                Err(_) => return Err(Error::Client(client::Error::Closed)),
            },
        }
    }
}
