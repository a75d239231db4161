//! `regd`, the register daemon: reads its settings from flags and `REGD_*` environment
//! variables ([`settings`]), binds (or takes the socket systemd passes), announces
//! `listening on http://ADDR` on stdout, tells systemd it is ready, and serves until
//! SIGTERM or SIGINT. Exit 0 after a clean shutdown, 1 on failure, 2 on a usage error.

mod error;
mod settings;
mod stop;
mod watchdog;

use std::io::Write;
use std::process::ExitCode;

use regd::server::{Config, Server};

use crate::error::Error;
use crate::settings::Settings;
use crate::stop::Stop;
use crate::watchdog::Watchdog;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            regd::logger::fatal(&format!("regd: {}", regd::error_chain(&error)));
            match error {
                Error::Usage(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn run() -> Result<(), Error> {
    let mut args = pico_args::Arguments::from_env();
    if args.contains(["-h", "--help"]) {
        print!("{}", settings::help());
        return Ok(());
    }
    if args.contains(["-V", "--version"]) {
        println!("regd {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let mut settings = Settings::new(args);
    let config = settings.config()?;
    let level = settings.log_level()?;
    settings.finish()?;
    regd::logger::init(level);

    // Caught from before the state is restored: a SIGTERM that arrives while regd
    // starts ends it cleanly, with its final save, instead of killing it (which the
    // next start would count as a crash).
    let stop = Stop::catch()?;
    let result = serve(&config, &stop);
    stop.finish();
    result
}

/// Binds (restoring the state), announces, and serves until told to stop.
fn serve(config: &Config, stop: &Stop) -> Result<(), Error> {
    let server = match inherited_listener()? {
        Some(listener) => Server::from_listener(config.clone(), listener),
        None => Server::bind(config.clone()),
    }
    .map_err(Error::Server)?;
    let address = server.local_address();
    // The one line on stdout: tests and operators learn the real port from it.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on http://{address}");
    let _ = stdout.flush();
    drop(stdout);
    log_configuration(config, address);

    let stopping = stop.serve(server.shutdown_handle());
    let watchdog = Watchdog::start(address, server.shutdown_handle()).map_err(Error::Thread)?;
    // Asked to stop while it started, regd does not say it is ready only to stop.
    if !stopping {
        if let Err(error) = regd::notify::notify(&format!("READY=1\nSTATUS=listening on {address}"))
        {
            log::warn!("cannot tell systemd that regd is ready: {error}");
        }
    }

    let result = server.run().map_err(Error::Server);
    let _ = regd::notify::notify("STOPPING=1");
    if let Some(watchdog) = watchdog {
        watchdog.stop();
    }
    result
}

/// A listening socket handed over by systemd (`regd.socket`), if any.
fn inherited_listener() -> Result<Option<std::net::TcpListener>, Error> {
    let mut inherited = listenfd::ListenFd::from_env();
    if inherited.len() == 0 {
        return Ok(None);
    }
    let listener = inherited.take_tcp_listener(0).map_err(|error| {
        Error::Usage(format!(
            "the socket passed by systemd (LISTEN_FDS) is not a TCP listening socket: {error}"
        ))
    })?;
    if listener.is_some() {
        log::info!("using the listening socket passed by systemd; --addr is ignored");
    }
    Ok(listener)
}

/// The start-up log lines: what regd serves, with which limits and which access rules.
fn log_configuration(config: &Config, address: std::net::SocketAddr) {
    log::info!(
        "regd {} listening on {address}; max connections {}, max polls {}, max registers {}, max body {} bytes, read timeout {:?}, max wait {:?}, default ttl {:?}",
        env!("CARGO_PKG_VERSION"),
        config.max_connections,
        config.service.max_polls,
        config.service.limits.max_registers,
        config.http.max_body_bytes,
        config.http.read_timeout,
        config.service.max_wait,
        config.service.default_ttl,
    );
    match &config.state.directory {
        Some(directory) => log::info!(
            "state kept in {} (saved every {} when something changed, and at stop)",
            directory.display(),
            humantime::format_duration(config.state.save_interval)
        ),
        None => log::info!("state kept in memory only (see --state-dir)"),
    }
    let access = &config.service.access;
    if access.tokens.is_empty() {
        log::info!("access control off: every client may read and write (see --token-file)");
    } else {
        log::info!(
            "access control on: {} tokens; loopback {}; /metrics {}",
            access.tokens.len(),
            if access.trust_loopback {
                "trusted"
            } else {
                "needs a token"
            },
            if access.open_metrics {
                "open"
            } else {
                "needs a token"
            },
        );
    }
    if config.service.web {
        if cfg!(feature = "web") {
            log::info!("web dashboard at http://{address}/");
        } else {
            log::warn!("this regd was built without the web feature; / answers 404");
        }
    }
}
