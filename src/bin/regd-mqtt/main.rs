//! `regd-mqtt`, the bridge between a regd and an MQTT broker (docs/mqtt.md): reads its
//! settings, connects to both, prints `connected to mqtt://HOST:PORT` each time the
//! broker accepts it, and runs until SIGTERM or SIGINT, when it publishes its `offline`
//! state, disconnects and joins every thread. Exit 0 after a clean shutdown, 1 on
//! failure, 2 on a usage error.

mod bridge;
mod codec;
mod discovery;
mod session;
mod settings;
mod topics;
mod warnings;

use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::bridge::{Bridge, Plan};
use crate::codec::{QoS, Will};
use crate::discovery::Gateway;
use crate::session::{Options, Session};
use crate::settings::{Config, Usage};
use crate::warnings::Warnings;

#[derive(Debug)]
enum Error {
    Usage(String),
    Client(regd::client::Error),
    Start(std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(message) => write!(f, "{message}; see regd-mqtt --help"),
            Error::Client(error) => write!(f, "{error}"),
            Error::Start(_) => f.write_str("cannot start the bridge's threads or signal handling"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Usage(_) => None,
            Error::Client(error) => error.source(),
            Error::Start(error) => Some(error),
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            regd::logger::fatal(&format!("regd-mqtt: {}", regd::error_chain(&error)));
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
        println!("regd-mqtt {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let config = settings::parse(&mut args, &|key| std::env::var(key).ok())
        .map_err(|Usage(message)| Error::Usage(message))?;
    if let Some(extra) = args.finish().first() {
        return Err(Error::Usage(format!(
            "unexpected argument {:?}",
            extra.to_string_lossy()
        )));
    }
    regd::logger::init(config.log_level);
    for warning in &config.warnings {
        log::warn!("{warning}");
    }

    let mut client = regd::client::Client::new(&config.registry).map_err(Error::Client)?;
    if let Some(token) = &config.token {
        client = client.with_token(token.as_str()).map_err(Error::Client)?;
    }
    let signals = Signals::new([SIGTERM, SIGINT]).map_err(Error::Start)?;
    let warnings = Arc::new(Warnings::default());
    let (options, plan) = plan(&config);
    log::info!(
        "regd-mqtt {}: regd at {}, broker {} as {}, prefix {}{}{}",
        env!("CARGO_PKG_VERSION"),
        config.registry,
        config.broker.url(),
        config.client_id,
        config.topics.prefix(),
        if plan.gateway.is_some() {
            ", Home Assistant discovery"
        } else {
            ""
        },
        if plan.imports.is_empty() {
            String::new()
        } else {
            format!(", importing {}", plan.imports.join(" "))
        },
    );
    let (events_in, events) = crossbeam_channel::bounded(bridge::EVENT_QUEUE);
    let session = Session::start(options, events_in, warnings.clone()).map_err(Error::Start)?;
    let bridge = Bridge::start(plan, client, session, events, warnings).map_err(Error::Start)?;
    if let Err(error) = regd::notify::notify("READY=1\nSTATUS=connecting to the broker") {
        log::warn!("cannot tell systemd that regd-mqtt is ready: {error}");
    }
    wait_for_signal(signals);
    let _ = regd::notify::notify("STOPPING=1");
    bridge.shutdown();
    log::info!("regd-mqtt stopped");
    Ok(())
}

fn wait_for_signal(mut signals: Signals) {
    if let Some(signal) = signals.forever().next() {
        let name = if signal == SIGTERM {
            "SIGTERM"
        } else {
            "SIGINT"
        };
        log::info!("{name} received; publishing offline and disconnecting");
    }
}

/// The session's options and the loops' plan, from the settings.
fn plan(config: &Config) -> (Options, Plan) {
    let topics = config.topics.clone();
    let gateway = config.discovery.as_ref().map(|_| Gateway {
        id: config.gateway_id.clone(),
        discovery_prefix: config.discovery_prefix.clone(),
        prefix: topics.prefix().to_string(),
    });
    // Change requests come at QoS 1 (issue 13). What is read for its retained state
    // (imports, discovery configs) comes at QoS 0: with a clean session QoS 1 adds
    // nothing to TCP's delivery, and brokers cut the QoS 1 messages queued for one
    // client (Mosquitto's max_queued_messages, 1000 by default) — a gateway importing
    // another's 1,500 registers got the retained state of about 500 of them.
    let mut subscriptions = vec![(topics.filter(), QoS::AtLeastOnce)];
    if let Some(gateway) = &gateway {
        subscriptions.push((gateway.status_topic(), QoS::AtLeastOnce));
        for filter in gateway.filters() {
            subscriptions.push((filter, QoS::AtMostOnce));
        }
    }
    for filter in &config.imports {
        subscriptions.push((filter.clone(), QoS::AtMostOnce));
    }
    let options = Options {
        broker: config.broker.clone(),
        client_id: config.client_id.clone(),
        keep_alive: config.keep_alive,
        username: config.username.clone(),
        password: config.password.clone(),
        will: Will {
            topic: topics.bridge_state(),
            payload: b"offline".to_vec(),
            qos: QoS::AtLeastOnce,
            retain: true,
        },
        birth: (topics.bridge_state(), b"online".to_vec()),
        subscriptions,
        max_packet: config.max_payload,
    };
    let plan = Plan {
        topics,
        gateway,
        discovery_remove_after: config.discovery_remove_after,
        imports: config.imports.clone(),
        import_ttl: config.import_ttl,
    };
    (options, plan)
}
