//! `regctl provide`: publishes registers and keeps them alive as a provider (refreshed
//! at half their ttl by the client's `Provider`), applies each line of stdin as new
//! values, prints and applies change requests, and deletes its registers when stdin
//! ends or SIGINT/SIGTERM arrives.

use std::process::ExitCode;
use std::time::Duration;

use crossbeam_channel::{Receiver, select};
use regd::client::{self, Json, ProviderEvent};

use crate::args;
use crate::command::{Command, Context};
use crate::error::Error;
use crate::input::{self, Registration};
use crate::output;
use crate::signals::{self, Interrupts, Line};

pub const COMMAND: Command = Command {
    name: "provide",
    synopsis: "provide NAME [VALUE] [METADATA]",
    summary: "publish a register and keep it alive",
    help: HELP,
    run,
};

const HELP: &str = "\
usage: regctl provide NAME [VALUE] [METADATA] [--ttl 10s] [--read-only]
       regctl provide --file REGISTERS.json [--read-only]

Publishes a register (VALUE and METADATA are JSON; VALUE defaults to null) and keeps
it alive, refreshing it at half its ttl, until stdin ends or SIGINT/SIGTERM arrives;
then deletes it and exits 0.

Each line read from stdin is a new JSON value to publish. With --file, the file holds
{\"NAME\": {\"value\": V, \"metadata\": {...}, \"ttl\": \"5s\"}, ...} and each stdin
line is an object of new values by name, such as {\"lamp\": true}.

Every change request is printed to stdout as one JSON line, {\"name\": N, \"value\": V},
and applied unless --read-only is given.

options:
  --ttl DURATION   time to live of the register (default 10s)
  --file PATH      provide every register of a JSON file
  --read-only      print change requests without applying them
";

/// The ttl of registers provided without `--ttl` (regd's own default).
const DEFAULT_TTL: Duration = Duration::from_secs(10);

fn run(mut args: pico_args::Arguments, context: &Context) -> Result<ExitCode, Error> {
    let ttl = args::duration_option(&mut args, "--ttl")?.unwrap_or(DEFAULT_TTL);
    let file = args::text_option(&mut args, "--file")?;
    let read_only = args.contains("--read-only");
    let free = args::free_arguments(args, "provide")?;
    let registers = match (&file, free.as_slice()) {
        (Some(path), []) => input::registers_file(path, ttl)?,
        (Some(_), _) => {
            return Err(Error::Usage(
                "give either --file or NAME [VALUE] [METADATA], not both".to_string(),
            ));
        }
        (None, [_, _, _, extra, ..]) => {
            return Err(Error::Usage(format!(
                "unexpected argument {extra:?}; provide takes NAME [VALUE] [METADATA]"
            )));
        }
        (None, [name, rest @ ..]) => vec![one_register(name, rest, ttl)?],
        (None, []) => {
            return Err(Error::Usage(
                "provide needs a NAME (or --file); see regctl provide --help".to_string(),
            ));
        }
    };
    let client = context.client()?;
    let single = (registers.len() == 1 && file.is_none()).then(|| registers[0].0.clone());
    let interrupts = Interrupts::start()?;
    let provider = client.provider();
    provider.publish_many(registers)?;
    let lines = signals::stdin_lines()?;
    let outcome = serve(&provider, &interrupts, &lines, single.as_deref(), read_only);
    drop(interrupts);
    // Delete the registers even when printing failed (a closed stdout).
    let closed = provider.close();
    outcome?;
    closed?;
    Ok(ExitCode::SUCCESS)
}

/// `NAME [VALUE] [METADATA]` from the command line.
fn one_register(name: &str, rest: &[String], ttl: Duration) -> Result<Registration, Error> {
    let value = match rest.first() {
        Some(text) => args::json_argument("VALUE", text)?,
        None => Json::null(),
    };
    let metadata = rest
        .get(1)
        .map(|text| args::json_argument("METADATA", text))
        .transpose()?;
    if metadata
        .as_ref()
        .is_some_and(|metadata| !metadata.is_object())
    {
        return Err(Error::Usage(
            "METADATA must be a JSON object such as '{\"unit\": \"°C\"}'".to_string(),
        ));
    }
    Ok((name.to_string(), value, metadata, ttl))
}

/// The provide loop: until stdin ends or a signal arrives.
fn serve(
    provider: &client::Provider,
    interrupts: &Interrupts,
    lines: &Receiver<Line>,
    single: Option<&str>,
    read_only: bool,
) -> Result<(), Error> {
    loop {
        select! {
            recv(interrupts.received) -> _ => return Ok(()),
            recv(lines) -> line => {
                let Ok((number, line)) = line else { return Ok(()) };
                let line = line.map_err(|error| Error::Failed(format!("cannot read stdin: {error}")))?;
                if line.trim().is_empty() {
                    continue;
                }
                let values = match single {
                    Some(name) => Json::parse(&line)
                        .map(|value| vec![(name.to_string(), value)])
                        .map_err(|error| error.to_string()),
                    None => input::values_line(&line),
                };
                match values {
                    Ok(values) => {
                        for (name, value) in values {
                            if let Err(error) = provider.update(&name, value) {
                                eprintln!("regctl: stdin line {number}: {error}");
                            }
                        }
                    }
                    Err(error) => eprintln!("regctl: stdin line {number} skipped: {error}"),
                }
            }
            recv(provider.events()) -> event => match event {
                Ok(ProviderEvent::Request { name, value }) => {
                    let name_json = output::string(&name);
                    output::emit(&output::object([("name", name_json.as_str()), ("value", value.as_str())]))?;
                    if !read_only {
                        if let Err(error) = provider.update(&name, value) {
                            eprintln!("regctl: could not apply the request for {name:?}: {error}");
                        }
                    }
                }
                // Retrying with the same token cannot help.
                Ok(ProviderEvent::Failed(error)) if error.is_access_denied() => return Err(error.into()),
                Ok(ProviderEvent::Failed(error)) => eprintln!("regctl: {error}; retrying"),
                Ok(ProviderEvent::Recovered) => eprintln!("regctl: regd answers again"),
                Err(_) => return Err(Error::Client(client::Error::Closed)),
            },
        }
    }
}
