//! `regctl`, the command line for regd: provide, get, set, list, watch and delete
//! registers, browse them live, and measure a regd (bench). This file only runs the
//! command line and turns its outcome into an exit status: [`cli`] holds the commands
//! as data (each a [`command::Command`]), one module per command does the work through `regd::client`, and
//! [`output`] writes everything stdout carries. Exit 0 on success, 1 on failure or a
//! register not found, 2 on a usage error. stdout carries data only; a closed pipe ends
//! the program quietly.

mod args;
mod bench;
mod browse;
mod cli;
mod command;
mod delete;
mod error;
mod get;
mod input;
mod list;
mod mcp;
mod output;
mod provide;
mod set;
mod signals;
mod version;
mod watch;

use std::process::ExitCode;

use crate::error::Error;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(Error::ClosedPipe) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("regctl: {}", regd::error_chain(&error));
            match error {
                Error::Usage(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
