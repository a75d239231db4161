//! What a command is: a [`Command`] (its name, synopsis, summary, help and entry
//! point) and the [`Context`] the global options give it. Commands import this and
//! nothing of the dispatch, so the table in `cli` can list them without a circle.

use std::process::ExitCode;

use regd::client::{self, Client};

use crate::error::Error;
use crate::input;

/// One subcommand.
pub struct Command {
    /// What the user types: `regctl NAME`.
    pub name: &'static str,
    /// Its arguments in the command list, such as `get NAME...`.
    pub synopsis: &'static str,
    /// One line for the command list.
    pub summary: &'static str,
    /// `regctl NAME --help`; starts with `usage: regctl NAME`.
    pub help: &'static str,
    /// Runs it with the command's own arguments.
    pub run: fn(pico_args::Arguments, &Context) -> Result<ExitCode, Error>,
}

/// What every command may need from the global options: the client, made on demand
/// (so `version` and help need no registry).
pub struct Context {
    /// regd's address: `--registry`, else `REGISTRY`, else the default.
    pub registry: String,
    /// `--token-file`, if given.
    pub token_file: Option<String>,
}

impl Context {
    /// A client for the registry, with the token from `--token-file` or `REGD_TOKEN`.
    pub fn client(&self) -> Result<Client, Error> {
        let token = match &self.token_file {
            Some(path) => Some(input::token_file(path)?),
            None => std::env::var(client::TOKEN_ENV_VAR)
                .ok()
                .map(|token| token.trim().to_string())
                .filter(|token| !token.is_empty()),
        };
        let client =
            Client::new(self.registry.trim()).map_err(|error| Error::Usage(error.to_string()))?;
        match token {
            Some(token) => client
                .with_token(token)
                .map_err(|error| Error::Usage(error.to_string())),
            None => Ok(client),
        }
    }
}
