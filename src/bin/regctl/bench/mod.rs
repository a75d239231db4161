//! `regctl bench`: measures the regd it talks to (request rates and latency percentiles
//! of four phases, see [`engine`]) and prints a table or one JSON object. Ctrl-C ends
//! the running phase at once; the bench's registers are removed either way.

mod engine;

use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use crossbeam_channel::select;

use self::engine::{Bench, Measurement, Phase, Settings};
use crate::args;
use crate::command::{Command, Context};
use crate::error::Error;
use crate::output;
use crate::signals::Interrupts;

pub const COMMAND: Command = Command {
    name: "bench",
    synopsis: "bench",
    summary: "measure this regd's request rates and latencies",
    help: HELP,
    run,
};

const HELP: &str = "\
usage: regctl bench [--connections 4] [--duration 5s] [--registers 10] [--json]

Measures the regd at --registry (or $REGISTRY), with the token if one is given (it
needs an admin token, as it uses both resources). Four phases run one after another,
each for --duration:

  PUT /provider      publishes registers, each request a new value
  GET /consumer      reads one register per request
  change request     PUT /consumer -> a waiting GET /provider answered
  wake               PUT /provider -> a waiting GET /consumer answered

and prints requests (or round trips) per second and latency percentiles (p50, p99,
max) as a table. The two waiting phases use half the connections as waiters and half
as senders. The registers are named regctl-bench.PID.N and removed at the end, also
on Ctrl-C. Mind that regctl runs on the machine it measures when given a local
address: on a small board it takes CPU from regd.

options:
  --connections N    concurrent connections (default 4, at most 256)
  --duration D       how long each phase runs (default 5s)
  --registers N      registers the requests spread over (default 10, at most 10000)
  --json             print one JSON object instead of the table
";

fn run(mut args: pico_args::Arguments, context: &Context) -> Result<ExitCode, Error> {
    let connections = args::count_option(&mut args, "--connections", 4, engine::MAX_CONNECTIONS)?;
    let registers = args::count_option(&mut args, "--registers", 10, engine::MAX_REGISTERS)?;
    let duration =
        args::duration_option(&mut args, "--duration")?.unwrap_or(Duration::from_secs(5));
    let json = args.contains("--json");
    args::no_free_arguments(
        args,
        "bench",
        "bench takes only options, see regctl bench --help",
    )?;
    let client = context.client()?;
    let prefix = format!("regctl-bench.{}.", std::process::id());
    let settings = Settings::new(&prefix, connections, duration, registers);
    let bench = Bench::new(&client, settings).map_err(|error| Error::Usage(error.to_string()))?;
    eprintln!(
        "regctl: measuring {} for about {}: {} phases of {}, {connections} connections, {registers} registers",
        client.url(),
        humantime::format_duration(duration * Phase::ALL.len() as u32),
        Phase::ALL.len(),
        humantime::format_duration(duration),
    );
    let interrupts = Interrupts::start()?;
    let stopper = bench.stopper();
    let (done, finished) = crossbeam_channel::bounded(1);
    let report = thread::scope(|scope| {
        let runner = thread::Builder::new()
            .name("regctl-bench".to_string())
            .spawn_scoped(scope, || {
                let report = bench.run();
                let _ = done.send(());
                report
            })
            .map_err(|error| Error::Failed(format!("cannot start a thread: {error}")))?;
        select! {
            recv(finished) -> _ => {}
            // The bench ends its phase at once and removes its registers.
            recv(interrupts.received) -> _ => stopper.stop(),
        }
        runner
            .join()
            .map_err(|_| Error::Failed("the bench failed unexpectedly".to_string()))
    })?;
    drop(interrupts);
    let report = report?;
    if json {
        let settings = [
            ("registry", output::string(client.url())),
            ("connections", connections.to_string()),
            ("registers", registers.to_string()),
            ("duration_ms", duration.as_millis().to_string()),
        ];
        output::emit(&as_json(&settings, &report.measurements))?;
    } else {
        output::emit(&as_table(&report.measurements))?;
    }
    if report.stopped {
        return Err(Error::Failed(
            "bench interrupted; only the phases that finished are shown, and its registers were removed"
                .to_string(),
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// The measurements as an aligned table.
fn as_table(measurements: &[Measurement]) -> String {
    let header = ["phase", "requests", "req/s", "p50", "p99", "max"];
    let mut rows: Vec<[String; 6]> = vec![header.map(str::to_string)];
    for row in measurements {
        rows.push([
            row.phase.label().to_string(),
            row.count.to_string(),
            format!("{:.0}", row.per_second()),
            output::latency(row.p50),
            output::latency(row.p99),
            output::latency(row.max),
        ]);
    }
    output::table(&rows)
}

/// The measurements as one JSON object: the settings, then one entry per phase with
/// latencies in microseconds.
fn as_json(settings: &[(&str, String)], measurements: &[Measurement]) -> String {
    let micros = |duration: Duration| output::number(duration.as_secs_f64() * 1e6, 1);
    let phases: Vec<String> = measurements
        .iter()
        .map(|row| {
            let members = [
                ("phase", output::string(row.phase.key())),
                ("label", output::string(row.phase.label())),
                ("requests", row.count.to_string()),
                ("per_second", output::number(row.per_second(), 1)),
                ("p50_us", micros(row.p50)),
                ("p99_us", micros(row.p99)),
                ("max_us", micros(row.max)),
            ];
            output::object(members.iter().map(|(key, value)| (*key, value.as_str())))
        })
        .collect();
    let phases = output::array(phases.iter().map(String::as_str));
    output::object(
        settings
            .iter()
            .map(|(key, value)| (*key, value.as_str()))
            .chain([("phases", phases.as_str())]),
    )
}
