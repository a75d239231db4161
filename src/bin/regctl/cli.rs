//! The command line as data: the global options, the table of [`COMMANDS`] (each a
//! [`Command`]: name, synopsis, summary, help text and entry point), and the dispatch
//! from `argv` to a command. The main help text, the list of commands in error
//! messages and the dispatch are all generated from the one table, so they cannot
//! disagree.

use std::process::ExitCode;

use regd::client;

use crate::args::usage_error;
use crate::command::{Command, Context};
use crate::error::Error;
use crate::{bench, browse, delete, get, list, mcp, output, provide, set, version, watch};

/// Every command, in the order the help lists them.
pub const COMMANDS: &[Command] = &[
    provide::COMMAND,
    get::COMMAND,
    set::COMMAND,
    list::COMMAND,
    watch::COMMAND,
    delete::COMMAND,
    bench::COMMAND,
    browse::COMMAND,
    mcp::COMMAND,
    version::COMMAND,
];

const USAGE: &str = "\
regctl — read, write and provide registers of a regd

usage: regctl [--registry URL] [--token-file PATH] COMMAND [ARGS]
";

const OPTIONS: &str = "\
options:
  --registry URL       regd's address (default: $REGISTRY, else http://localhost:8080)
  --token-file PATH    read the access token from PATH: its first word, in regd's token
                       file format, so a file holding one line `TOKEN [ROLE] [LABEL]`
                       will do; it must not be readable by every user (default: $REGD_TOKEN)
  -h, --help           help; `regctl COMMAND --help` for a command
  -V, --version        print the version

Values and metadata are JSON: 42, true, null, '\"text\"', '{\"unit\": \"°C\"}'.
Durations are written like 500ms, 5s, 1m.
Exit status: 0 success, 1 failure or register not found, 2 usage error.
";

/// `regctl --help`.
fn help() -> String {
    let width = COMMANDS
        .iter()
        .map(|command| command.synopsis.chars().count())
        .max()
        .unwrap_or(0);
    let mut text = format!("{USAGE}\ncommands:\n");
    for command in COMMANDS {
        text.push_str(&format!(
            "  {:<width$}   {}\n",
            command.synopsis, command.summary
        ));
    }
    text.push('\n');
    text.push_str(OPTIONS);
    text
}

/// The command names as prose: `a, b or c` (`joiner` is "or" or "and").
fn command_names(joiner: &str) -> String {
    let names: Vec<&str> = COMMANDS.iter().map(|command| command.name).collect();
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} {joiner} {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Parses the command line and runs the command it names.
pub fn run() -> Result<ExitCode, Error> {
    let mut args = pico_args::Arguments::from_env();
    let registry: Option<String> = args.opt_value_from_str("--registry").map_err(usage_error)?;
    let token_file: Option<String> = args
        .opt_value_from_str("--token-file")
        .map_err(usage_error)?;
    let name = match args.subcommand().map_err(usage_error)? {
        Some(name) => name,
        None if args.contains(["-h", "--help"]) => return output::help(&help()),
        None if args.contains(["-V", "--version"]) => return version::print(),
        None => {
            return Err(Error::Usage(format!(
                "a command is needed: {}; see regctl --help",
                command_names("or")
            )));
        }
    };
    let Some(command) = COMMANDS.iter().find(|command| command.name == name) else {
        return Err(Error::Usage(format!(
            "unknown command {name:?}; the commands are {}",
            command_names("and")
        )));
    };
    if args.contains(["-h", "--help"]) {
        return output::help(command.help);
    }
    let context = Context {
        registry: registry
            .filter(|url| !url.is_empty())
            .or_else(|| std::env::var(client::ENV_VAR).ok())
            .filter(|url| !url.trim().is_empty())
            .unwrap_or_else(|| client::DEFAULT_URL.to_string()),
        token_file: token_file.filter(|path| !path.is_empty()),
    };
    (command.run)(args, &context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_a_help_text_of_its_own() {
        let mut seen = std::collections::HashSet::new();
        for command in COMMANDS {
            assert!(seen.insert(command.name), "{} listed twice", command.name);
            assert!(
                command
                    .help
                    .starts_with(&format!("usage: regctl {}", command.name)),
                "{}",
                command.help
            );
            assert!(command.synopsis.starts_with(command.name));
            assert!(help().contains(command.synopsis));
        }
    }

    #[test]
    fn command_names_read_as_prose() {
        let names = command_names("or");
        assert!(names.starts_with("provide, get, "), "{names}");
        assert!(names.ends_with(" or version"), "{names}");
    }
}
