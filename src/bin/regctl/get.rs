//! `regctl get`: prints register values; a missing register is an error (exit 1),
//! unless `--wait` lets it appear in time.

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use regd::client::{Client, Register};

use crate::args;
use crate::command::{Command, Context};
use crate::error::Error;
use crate::output;

pub const COMMAND: Command = Command {
    name: "get",
    synopsis: "get NAME...",
    summary: "print register values",
    help: HELP,
    run,
};

const HELP: &str = "\
usage: regctl get NAME... [--metadata] [--json] [--wait DURATION]

Prints the JSON value of one register; for several, NAME=VALUE lines in argument
order. A missing register is an error (exit 1), unless --wait is given and it appears
in time.

options:
  --metadata       print {\"value\": V, \"metadata\": M} instead of the value alone
  --json           print one JSON object of values by name
  --wait DURATION  wait this long for missing registers to appear
";

fn run(mut args: pico_args::Arguments, context: &Context) -> Result<ExitCode, Error> {
    let metadata = args.contains("--metadata");
    let json = args.contains("--json");
    let wait = args::duration_option(&mut args, "--wait")?;
    let mut names = args::free_arguments(args, "get")?;
    if names.is_empty() {
        return Err(Error::Usage(
            "get needs at least one NAME; see regctl get --help".to_string(),
        ));
    }
    let mut seen = HashSet::new();
    names.retain(|name| seen.insert(name.clone()));
    let registers = read_until_present(&context.client()?, &names, wait)?;
    let missing: Vec<String> = names
        .iter()
        .filter(|name| !registers.contains_key(*name))
        .map(|name| format!("{name:?}"))
        .collect();
    if !missing.is_empty() {
        let waited = wait.map_or(String::new(), |wait| {
            format!(" (waited {})", humantime::format_duration(wait))
        });
        let noun = if missing.len() == 1 {
            "register does not exist"
        } else {
            "registers do not exist"
        };
        return Err(Error::NotFound(format!(
            "{noun}: {}{waited}",
            missing.join(", ")
        )));
    }
    let shown = |name: &String| output::register(&registers[name], metadata);
    if json {
        let rows: Vec<(&str, String)> = names
            .iter()
            .map(|name| (name.as_str(), shown(name)))
            .collect();
        output::emit(&output::object(
            rows.iter().map(|(name, text)| (*name, text.as_str())),
        ))?;
    } else if let [name] = names.as_slice() {
        output::emit(&shown(name))?;
    } else {
        for name in &names {
            output::emit(&format!("{name}={}", shown(name)))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the registers; with a wait, keeps long polling until all exist or it passes.
fn read_until_present(
    client: &Client,
    names: &[String],
    wait: Option<Duration>,
) -> Result<BTreeMap<String, Register>, Error> {
    let deadline = wait.map(|wait| Instant::now() + wait);
    let mut snapshot = client.poll(names, None, None)?;
    while let Some(deadline) = deadline {
        if names
            .iter()
            .all(|name| snapshot.registers.contains_key(name))
        {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(1) {
            break;
        }
        snapshot = client.poll(names, Some(left), snapshot.index)?;
    }
    Ok(snapshot.registers)
}
