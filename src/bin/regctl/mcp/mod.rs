//! `regctl mcp`: regd's registers for AI assistants, as a Model Context Protocol server
//! on stdio (JSON-RPC 2.0, one message per line). It keeps the tool names and inputs
//! of the original service's `reg mcp` and adds structured answers, annotations,
//! `wait_for_change`, `delete_register`, `--read-only`, and every register as a
//! resource with change notifications. This file is the command; [`session`] runs the
//! protocol, [`tools`] and [`calls`] are the tools, [`resources`] the resources,
//! [`jsonrpc`], [`params`] and [`transport`] the wire. Invariants: stdout carries only
//! protocol messages (everything else goes to stderr); it talks to regd only through
//! `regd::client`; no async runtime, only named threads that are joined before it
//! exits; the end of stdin ends it with status 0 at once.
//!
//! No well-kept blocking MCP crate exists: the official Rust SDK (`rmcp`) and the
//! others with resources and notifications run on tokio, and the one tokio-free runtime
//! (`mcport`) offers tools only, without resource subscriptions. The protocol needed
//! here is small, so it is written out on serde_json.

mod calls;
mod jsonrpc;
mod params;
mod resources;
mod session;
mod tools;
mod transport;

use std::io;
use std::process::ExitCode;

use crate::args;
use crate::command::{Command, Context};
use crate::error::Error;

pub const COMMAND: Command = Command {
    name: "mcp",
    synopsis: "mcp [--read-only]",
    summary: "serve registers to AI assistants (Model Context Protocol, stdio)",
    help: HELP,
    run,
};

const HELP: &str = "\
usage: regctl mcp [--read-only]

Serves this regd's registers to an AI assistant over the Model Context Protocol:
JSON-RPC 2.0 messages, one per line, on stdin and stdout (MCP 2025-11-25 and
2025-06-18). The assistant starts it; for example, in its MCP configuration:

  {\"mcpServers\": {\"regd\": {\"command\": \"regctl\", \"args\": [\"mcp\"],
                           \"env\": {\"REGISTRY\": \"http://gateway:8080\"}}}}

Tools: get_register, list_registers, wait_for_change (these only read),
request_change, set_register and delete_register. Every register is also a resource,
reg://NAME, which the assistant can read and subscribe to. regctl mcp ends with
status 0 when stdin ends; messages for people go to stderr.

options:
  --read-only   offer only the tools that read, for assistants that must not act on
                devices
";

fn run(mut args: pico_args::Arguments, context: &Context) -> Result<ExitCode, Error> {
    let read_only = args.contains("--read-only");
    args::no_free_arguments(
        args,
        "mcp",
        "mcp takes only --read-only; see regctl mcp --help",
    )?;
    let client = context.client()?;
    session::serve(
        client,
        session::Options { read_only },
        io::stdin().lock(),
        io::stdout(),
    )
    .map_err(|error| Error::Failed(format!("mcp: {error}")))?;
    Ok(ExitCode::SUCCESS)
}
