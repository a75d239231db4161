//! The capacity benchmark (issue 5): starts a release `regd` itself (and nginx as the
//! same-run baseline, when installed), drives it with a load generator of its own
//! (non-blocking sockets through mio, all on this one thread — never a thread per
//! connection), and prints one table: throughput against nginx, held long polls and
//! their memory, wake-up, change-request and expiry latency, idle memory, start time
//! and binary size. It owns no daemon code. It talks to 127.0.0.1 only, installs
//! nothing, and every loop in it is bounded in count and in time.
//!
//! Run it with `cargo bench --bench capacity`. Figures are noisy on a shared machine;
//! that is why every ratio is against a baseline measured in the same run.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

/// The daemon under test, built by cargo with the bench (= release) profile.
/// `REGD_BENCH_BIN=/path/to/regd` measures another build instead (A/B of a change).
fn regd() -> String {
    std::env::var("REGD_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_regd").to_string())
}

/// The scale of the run; every figure of the issue at its stated size.
const HELD_POLLS: usize = 10_000;
const HELD_POLLS_SMALL: usize = 1_000;
/// Names the 10,000 held polls are spread over (10 polls per name).
const HELD_NAMES: usize = 1_000;
const WAKE_ALL_POLLS: usize = 5_000;
const LOAD_CONNECTIONS: usize = 64;
const LOAD_WARMUP: Duration = Duration::from_millis(300);
const LOAD_TIME: Duration = Duration::from_secs(3);
/// Throughput runs per server, alternating regd and nginx, to even out noise.
const LOAD_ROUNDS: usize = 3;
const WAKE_SAMPLES: usize = 400;
const CHANGE_SAMPLES: usize = 500;
const START_SAMPLES: usize = 10;
/// Open long-poll connections in batches no larger than regd's listen backlog.
const CONNECT_BATCH: usize = 500;
/// File descriptors the bench needs at its peak, beyond the held polls.
const FD_HEADROOM: usize = 300;
/// The daemon's limits, raised for the run.
const REGD_LIMITS: &[&str] = &[
    "--max-connections",
    "12000",
    "--max-polls",
    "12000",
    "--max-registers",
    "20000",
    "--max-pending",
    "20000",
    "--log-level",
    "warn",
];

/// How long one request in the bench may take before the figure fails.
const PATIENCE: Duration = Duration::from_secs(10);

type Outcome<T> = Result<T, String>;

fn main() {
    let started = Instant::now();
    let mut report = Report::default();
    let command_line: Vec<String> = std::env::args().collect();
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let fd_limit = open_files_limit();
    let held = match fd_limit {
        Some(limit) if limit < (HELD_POLLS + FD_HEADROOM) as u64 => {
            let scaled = (limit as usize).saturating_sub(FD_HEADROOM).max(100);
            eprintln!(
                "the open-files limit is {limit}; 10,000 held polls need about {}. Raise it with \
                 `ulimit -n 20000` (or LimitNOFILE= under systemd) and run again; measuring {scaled} polls now",
                HELD_POLLS + FD_HEADROOM
            );
            scaled
        }
        _ => HELD_POLLS,
    };
    let nginx = find_nginx();
    // `cargo bench --bench capacity -- expiry held` runs only the phases named.
    let phases = Phases(
        std::env::args()
            .skip(1)
            .filter(|arg| !arg.starts_with('-'))
            .collect(),
    );

    println!("# regd capacity benchmark");
    println!(
        "command: {} (cargo bench --bench capacity [-- PHASE...], phases: size start throughput held wake-all change expiry state)",
        command_line.join(" ")
    );
    println!(
        "machine: {cores} cores (shared with this load generator: one thread, mio/epoll); open-files limit {}",
        fd_limit.map_or("unknown".to_string(), |n| n.to_string())
    );
    println!("regd: {} {}", regd(), REGD_LIMITS.join(" "));
    match &nginx {
        Some((path, version)) => println!("baseline: {} ({version})", path.display()),
        None => println!(
            "baseline: nginx not found; the nginx ratios are skipped. Install it with \
             `apt-get install nginx-light` (or `nginx`) to measure them"
        ),
    }
    println!();

    if phases.wants("size") {
        binary_size(&mut report);
    }
    if phases.wants("start") {
        start_and_idle(&mut report);
    }
    if phases.wants("state") {
        if let Err(error) = state_phase(&mut report) {
            report.failure("state phase", &error);
        }
    }
    let nginx = nginx.as_ref().map(|(path, _)| path);
    if let Err(error) = main_daemon(&mut report, &phases, nginx, held) {
        report.failure("main run", &error);
    }
    eprintln!("(finished in {:.1?})", started.elapsed());
    report.print();
}

// ---------------------------------------------------------------------------------
// The run.

/// The phases asked for on the command line; none named means all.
struct Phases(Vec<String>);

impl Phases {
    fn wants(&self, phase: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|asked| phase.contains(asked.as_str()))
    }
}

fn binary_size(report: &mut Report) {
    match fs::metadata(regd()) {
        Ok(meta) => {
            let bytes = meta.len();
            report.row(
                "regd binary size (release profile: lto, strip)",
                format!("{bytes} B ({:.0} KiB)", bytes as f64 / 1024.0),
                "≤ 1 MB",
                Some(bytes <= 1_000_000),
            );
        }
        Err(error) => report.failure("regd binary size", &error.to_string()),
    }
}

fn start_and_idle(report: &mut Report) {
    let mut times = Vec::new();
    let mut idle = Vec::new();
    for _ in 0..START_SAMPLES {
        match Daemon::start(&["--log-level", "warn"]) {
            Ok(daemon) => {
                times.push(daemon.started_in);
                // Let the daemon settle (threads started, nothing to do).
                thread::sleep(Duration::from_millis(100));
                if let Some(rss) = rss_kib(daemon.pid()) {
                    idle.push(rss);
                }
            }
            Err(error) => {
                report.failure("start to listening line", &error);
                return;
            }
        }
    }
    times.sort();
    idle.sort();
    let p50 = percentile(&times, 0.5);
    report.row(
        "start → `listening` line (spawn to line read)",
        format!(
            "p50 {} max {} ({} starts)",
            micros(p50),
            micros(*times.last().unwrap_or(&p50)),
            times.len()
        ),
        "≤ 20 ms",
        Some(p50 <= Duration::from_millis(20)),
    );
    if let (Some(low), Some(high)) = (idle.first(), idle.last()) {
        report.row(
            "idle resident memory (VmRSS, fresh daemon)",
            format!("{} KiB (max {high} KiB)", idle[idle.len() / 2]),
            "≤ 3 MB",
            Some(*low <= 3 * 1024 && idle[idle.len() / 2] <= 3 * 1024),
        );
    }
}

fn main_daemon(
    report: &mut Report,
    phases: &Phases,
    nginx_path: Option<&PathBuf>,
    held: usize,
) -> Outcome<()> {
    let daemon = Daemon::start(REGD_LIMITS)?;
    let addr = daemon.addr;
    let mut control = Control::connect(addr)?;
    let names: Vec<String> = (0..HELD_NAMES).map(|i| format!("h{i}")).collect();
    let setup = [
        r#"{"registers":{"x":{"value":21.5,"ttl":"1h"},"free":{"value":0,"ttl":"1h"}}}"#
            .to_string(),
        registers_body(&names, |_| r#"{"value":0,"ttl":"1h"}"#.to_string()),
    ];
    for body in &setup {
        control.expect("PUT", "/provider", body, 204)?;
    }
    let puts = [
        request(
            "PUT",
            "/provider",
            r#"{"registers":{"free":{"value":1,"ttl":"1h"}}}"#,
        ),
        request(
            "PUT",
            "/provider",
            r#"{"registers":{"free":{"value":2,"ttl":"1h"}}}"#,
        ),
    ];
    if phases.wants("throughput") {
        throughput(report, &daemon, &mut control, nginx_path, &puts)?;
    }
    if phases.wants("held") {
        held_polls_phase(report, &daemon, &mut control, &names, &puts, held)?;
    }
    if phases.wants("wake-all") {
        wake_all_phase(report, &daemon, &mut control, held)?;
    }
    if phases.wants("change") {
        let change = change_round_trips(addr)?;
        let p50 = percentile(&change, 0.5);
        report.row(
            "change request: PUT /consumer sent → waiting GET /provider answered",
            format!(
                "p50 {} p99 {} ({} samples)",
                micros(p50),
                micros(percentile(&change, 0.99)),
                change.len()
            ),
            "p50 ≤ 200 µs",
            Some(p50 <= Duration::from_micros(200)),
        );
    }
    if phases.wants("expiry") {
        for count in [100, 1_000] {
            let late = expiry_lateness(&mut control, addr, count)?;
            let (p50, max) = (
                percentile(&late, 0.5),
                *late.last().unwrap_or(&Duration::ZERO),
            );
            let judged = count == 1_000;
            report.row(
                &format!(
                    "expiry lateness, {count} registers, ttls 100 ms–2 s (deadline → poll answered)"
                ),
                format!(
                    "p50 {} p99 {} max {}",
                    micros(p50),
                    micros(percentile(&late, 0.99)),
                    micros(max)
                ),
                if judged {
                    "p50 ≤ 5 ms, max ≤ 20 ms"
                } else {
                    "report"
                },
                judged
                    .then_some(p50 <= Duration::from_millis(5) && max <= Duration::from_millis(20)),
            );
        }
    }
    daemon.stop();
    Ok(())
}

/// GET and PUT throughput of regd and nginx, alternating runs so that noise from
/// other work on the machine hits both alike.
fn throughput(
    report: &mut Report,
    daemon: &Daemon,
    control: &mut Control,
    nginx_path: Option<&PathBuf>,
    puts: &[Vec<u8>],
) -> Outcome<()> {
    let addr = daemon.addr;
    let small = control.expect("GET", "/consumer?name=x", "", 200)?;

    // Throughput against nginx, alternating runs so that noise hits both alike.
    let nginx = match nginx_path {
        Some(path) => match Nginx::start(path, &small.body) {
            Ok(nginx) => Some(nginx),
            Err(error) => {
                report.failure("nginx baseline", &error);
                None
            }
        },
        None => None,
    };
    let get = [request("GET", "/consumer?name=x", "")];
    let mut regd_get = Vec::new();
    let mut regd_put = Vec::new();
    let mut nginx_get = Vec::new();
    let mut nginx_put = Vec::new();
    for _ in 0..LOAD_ROUNDS {
        regd_get.push(load(addr, &[daemon.pid()], &get, 200)?);
        if let Some(nginx) = &nginx {
            nginx_get.push(load(nginx.addr, &nginx.pids(), &get, 200)?);
        }
        regd_put.push(load(addr, &[daemon.pid()], puts, 204)?);
        if let Some(nginx) = &nginx {
            nginx_put.push(load(nginx.addr, &nginx.pids(), puts, 204)?);
        }
    }
    drop(nginx);
    throughput_rows(report, "GET /consumer?name=x", &regd_get, &nginx_get, 0.6);
    throughput_rows(
        report,
        "PUT /provider (one register, value changes)",
        &regd_put,
        &nginx_put,
        0.5,
    );

    Ok(())
}

/// Held polls: 1,000, then 10,000, spread over `names`; their memory, waking one of
/// them, the cost of an unwatched change (against a second daemon with the same
/// registers and no polls, alternating runs), and waking them all.
fn held_polls_phase(
    report: &mut Report,
    daemon: &Daemon,
    control: &mut Control,
    names: &[String],
    puts: &[Vec<u8>],
    held: usize,
) -> Outcome<()> {
    let addr = daemon.addr;
    let base_rss = rss_kib(daemon.pid()).unwrap_or(0);
    let mut net = Net::new()?;
    let first = held.min(HELD_POLLS_SMALL);
    let target = |i: usize| format!("/consumer?name=h{}&wait=5m", i % HELD_NAMES);
    let mut polls = open_polls(&mut net, control, addr, 0, first, &target)?;
    let rss_small = rss_kib(daemon.pid()).unwrap_or(0);
    report.row(
        &format!("resident memory with {first} held polls"),
        format!("{rss_small} KiB (idle with registers: {base_rss} KiB)"),
        "report",
        None,
    );
    let one_k = wake_one(&mut net, control, addr, "w1")?;
    report.row(
        &format!("PUT sent → woken poll answered, {first} other polls held"),
        format!(
            "p50 {} p99 {} (PUT and poll both answered: p50 {} p99 {})",
            micros(percentile(&one_k.poll, 0.5)),
            micros(percentile(&one_k.poll, 0.99)),
            micros(percentile(&one_k.both, 0.5)),
            micros(percentile(&one_k.both, 0.99)),
        ),
        "report",
        None,
    );

    polls.extend(open_polls(
        &mut net,
        control,
        addr,
        polls.len(),
        held - polls.len(),
        &target,
    )?);
    let rss_held = rss_kib(daemon.pid()).unwrap_or(0);
    let threads = threads_of(daemon.pid()).unwrap_or(0);
    let per_poll = (rss_held.saturating_sub(rss_small)) as f64 / (held - first).max(1) as f64;
    report.row(
        &format!("resident memory with {held} held polls"),
        format!(
            "{rss_held} KiB = {:.1} MiB ({threads} threads; {per_poll:.1} KiB per extra held poll)",
            rss_held as f64 / 1024.0
        ),
        "≤ 200 MB",
        Some(rss_held * 1024 <= 200_000_000),
    );
    let ten_k = wake_one(&mut net, control, addr, "w2")?;
    let (p50, p99) = (percentile(&ten_k.both, 0.5), percentile(&ten_k.both, 0.99));
    report.row(
        &format!("wake one poll among {held} held (PUT sent → PUT and poll answered)"),
        format!(
            "p50 {} p99 {} (poll alone: p50 {} p99 {}; {} samples)",
            micros(p50),
            micros(p99),
            micros(percentile(&ten_k.poll, 0.5)),
            micros(percentile(&ten_k.poll, 0.99)),
            ten_k.both.len()
        ),
        "p50 ≤ 200 µs, p99 ≤ 1 ms",
        Some(p50 <= Duration::from_micros(200) && p99 <= Duration::from_millis(1)),
    );

    // The cost of a change nobody waits for: the same PUT load on this daemon (polls
    // held) and on a twin with the same registers and no polls, alternating runs.
    let twin = Daemon::start(REGD_LIMITS)?;
    let mut twin_control = Control::connect(twin.addr)?;
    twin_control.expect(
        "PUT",
        "/provider",
        r#"{"registers":{"x":{"value":21.5,"ttl":"1h"},"free":{"value":0,"ttl":"1h"}}}"#,
        204,
    )?;
    twin_control.expect(
        "PUT",
        "/provider",
        &registers_body(names, |_| r#"{"value":0,"ttl":"1h"}"#.to_string()),
        204,
    )?;
    let mut with_held = Vec::new();
    let mut none_held = Vec::new();
    for _ in 0..LOAD_ROUNDS {
        none_held.push(load(twin.addr, &[twin.pid()], puts, 204)?);
        with_held.push(load(addr, &[daemon.pid()], puts, 204)?);
    }
    twin.stop();
    let without = mean_rate(&none_held);
    let with = mean_rate(&with_held);
    let ratio = without / with;
    let cpu_ratio = mean_cpu(&with_held).zip(mean_cpu(&none_held));
    let runs = |rates: &[Rate]| {
        rates
            .iter()
            .map(|rate| format!("{:.0}", rate.per_second))
            .collect::<Vec<_>>()
            .join(", ")
    };
    report.row(
        &format!("cost of an unwatched change: {held} polls held vs none (PUT req/s, none ÷ held)"),
        format!(
            "{ratio:.3}× (none {without:.0} [{}], held {with:.0} [{}] req/s{})",
            runs(&none_held),
            runs(&with_held),
            cpu_ratio.map_or(String::new(), |(w, n)| format!(
                "; server CPU per PUT held {w:.1} µs vs none {n:.1} µs = {:.3}×",
                w / n
            ))
        ),
        "≤ 1.1×",
        Some(ratio <= 1.1),
    );

    // Answer every held poll with a change to its register and check each answer.
    let changed = registers_body(names, |_| r#"{"value":1,"ttl":"1h"}"#.to_string());
    let sent = Instant::now();
    control.expect("PUT", "/provider", &changed, 204)?;
    let answers = collect(&mut net, &polls, sent + Duration::from_secs(30))?;
    let mut correct = 0;
    for (index, id) in polls.iter().enumerate() {
        let expected = format!(
            r#"{{"registers":{{"h{}":{{"value":1}}}}}}"#,
            index % HELD_NAMES
        );
        if answers
            .get(id)
            .is_some_and(|answer| answer.status == 200 && answer.body == expected.as_bytes())
        {
            correct += 1;
        }
    }
    let last = answers
        .values()
        .map(|answer| answer.at)
        .max()
        .unwrap_or(sent);
    report.row(
        "held consumer polls, all answered correctly afterwards",
        format!(
            "{correct}/{held} correct (one PUT changing {HELD_NAMES} registers answered all in {})",
            micros(last - sent)
        ),
        "10,000 at once, all correct",
        Some(correct == held && held == HELD_POLLS),
    );
    net.close_all();
    wait_for_threads(daemon.pid(), 64);
    Ok(())
}

/// Wake all 5,000 polls of one register with one change.
fn wake_all_phase(
    report: &mut Report,
    daemon: &Daemon,
    control: &mut Control,
    held: usize,
) -> Outcome<()> {
    let addr = daemon.addr;
    control.expect(
        "PUT",
        "/provider",
        r#"{"registers":{"all":{"value":0,"ttl":"1h"}}}"#,
        204,
    )?;
    let wake_all = WAKE_ALL_POLLS.min(held);
    let mut net = Net::new()?;
    let polls = open_polls(&mut net, control, addr, 0, wake_all, &|_| {
        "/consumer?name=all&wait=5m".to_string()
    })?;
    let sent = Instant::now();
    control.expect(
        "PUT",
        "/provider",
        r#"{"registers":{"all":{"value":1,"ttl":"1h"}}}"#,
        204,
    )?;
    let answers = collect(&mut net, &polls, sent + Duration::from_secs(10))?;
    let correct = answers
        .values()
        .filter(|answer| {
            answer.status == 200 && answer.body == br#"{"registers":{"all":{"value":1}}}"#
        })
        .count();
    let last = answers
        .values()
        .map(|answer| answer.at)
        .max()
        .unwrap_or(sent);
    report.row(
        &format!("wake all {wake_all} polls of one register (PUT sent → last answer)"),
        format!("{} ({correct}/{wake_all} correct)", micros(last - sent)),
        "≤ 250 ms",
        Some(last - sent <= Duration::from_millis(250) && correct == wake_all),
    );
    net.close_all();
    wait_for_threads(daemon.pid(), 64);
    Ok(())
}

fn throughput_rows(report: &mut Report, what: &str, regd: &[Rate], nginx: &[Rate], target: f64) {
    let best = |rates: &[Rate]| rates.iter().map(|rate| rate.per_second).fold(0.0, f64::max);
    let describe = |rates: &[Rate]| {
        let runs: Vec<String> = rates
            .iter()
            .map(|rate| format!("{:.0}", rate.per_second))
            .collect();
        let cpu = mean_cpu(rates).map_or(String::new(), |us| format!(", {us:.1} CPU-µs/req"));
        format!(
            "best {:.0} req/s (runs {}{cpu})",
            best(rates),
            runs.join(", ")
        )
    };
    let target_text = format!("≥ {target} × nginx");
    if nginx.is_empty() {
        report.row(
            &format!("{what}, {LOAD_CONNECTIONS} keep-alive connections"),
            format!(
                "{}; nginx ratio skipped (nginx not installed)",
                describe(regd)
            ),
            &target_text,
            None,
        );
        return;
    }
    let ratio = best(regd) / best(nginx);
    report.row(
        &format!("{what}, {LOAD_CONNECTIONS} keep-alive connections"),
        format!(
            "{ratio:.2}× nginx — regd {}; nginx {}",
            describe(regd),
            describe(nginx)
        ),
        &target_text,
        Some(ratio >= target),
    );
}

// ---------------------------------------------------------------------------------
// Persistence (issue 12).

/// Registers in the state phase's large figures.
const STATE_REGISTERS: usize = 10_000;
/// Registers of the SD-card wear scenario, refreshed every 5 s in real life.
const WEAR_REGISTERS: usize = 200;
/// The default `--save-interval`: what the bytes per hour are computed for.
const DEFAULT_SAVE_INTERVAL: Duration = Duration::from_secs(300);
/// Alternating rounds of GET latency, saving daemon against in-memory daemon.
const STATE_ROUNDS: usize = 4;
const STATE_ROUND_TIME: Duration = Duration::from_secs(2);
/// Connections that read in closed loop in the latency rounds, each on its own thread.
const STATE_READERS: usize = 4;

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Outcome<Scratch> {
        let path = std::env::temp_dir().join(format!("regd-bench-{what}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).map_err(|error| format!("{}: {error}", path.display()))?;
        Ok(Scratch(path))
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Publishes `count` registers shaped like a gateway's (a sensor reading with unit
/// and room), 1,000 per request (the default `--max-names`), with a 1 h ttl.
fn publish_sensors(control: &mut Control, count: usize, value: usize) -> Outcome<()> {
    let names: Vec<String> = (0..count)
        .map(|i| format!("sensor-{i:05}.temperature"))
        .collect();
    for chunk in names.chunks(1_000) {
        let body = registers_body(chunk, |i| {
            format!(
                r#"{{"value":{}.{},"metadata":{{"unit":"°C","room":"room-{}"}},"ttl":"1h"}}"#,
                20 + (i + value) % 10,
                i % 10,
                i % 50
            )
        });
        control.expect("PUT", "/provider", &body, 204)?;
    }
    Ok(())
}

/// A metric sample as a number.
fn metric_of(control: &mut Control, name: &str) -> Outcome<f64> {
    let metrics = control.expect("GET", "/metrics", "", 200)?;
    let prefix = format!("{name} ");
    String::from_utf8_lossy(&metrics.body)
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| format!("no {name} in /metrics"))
}

/// Waits (bounded) until a metric reaches `at_least`.
fn wait_for_metric(control: &mut Control, name: &str, at_least: f64) -> Outcome<f64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let value = metric_of(control, name)?;
        if value >= at_least {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(format!("{name} is {value}, not {at_least}, after 30 s"));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Bytes this process has caused to be written to storage (`write_bytes` of
/// /proc/PID/io: what reaches the block layer, not what sits in the page cache).
fn written_bytes(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))
        .and_then(|value| value.trim().parse().ok())
}

/// GET latencies of one register from `STATE_READERS` closed-loop connections.
fn read_latencies(addr: SocketAddr, time: Duration) -> Outcome<Vec<Duration>> {
    let readers: Vec<_> = (0..STATE_READERS)
        .map(|reader| {
            thread::spawn(move || -> Outcome<Vec<Duration>> {
                let mut control = Control::connect(addr)?;
                let target = format!("/consumer?name=sensor-{:05}.temperature", reader * 7);
                let mut times = Vec::new();
                let end = Instant::now() + time;
                while Instant::now() < end {
                    let sent = Instant::now();
                    control.expect("GET", &target, "", 200)?;
                    times.push(sent.elapsed());
                }
                Ok(times)
            })
        })
        .collect();
    let mut all = Vec::new();
    for reader in readers {
        all.extend(reader.join().map_err(|_| "a reader panicked")??);
    }
    all.sort();
    Ok(all)
}

/// Save time, file size and lock hold at 10,000 registers; `GET /consumer` p99 while
/// saves run against an in-memory daemon in the same run; start-up with 10,000
/// registers to restore; bytes written per hour for 200 registers refreshed every 5 s.
fn state_phase(report: &mut Report) -> Outcome<()> {
    let big = Scratch::new("state")?;
    let limits = ["--log-level", "warn", "--max-registers", "20000"];
    let mut saving_args = vec!["--state-dir", big.arg(), "--save-interval", "100ms"];
    saving_args.extend(limits);
    let saving = Daemon::start(&saving_args)?;
    let memory = Daemon::start(&limits)?;
    let mut saving_control = Control::connect(saving.addr)?;
    publish_sensors(&mut saving_control, STATE_REGISTERS, 0)?;
    publish_sensors(&mut Control::connect(memory.addr)?, STATE_REGISTERS, 0)?;
    wait_for_metric(&mut saving_control, "regd_state_saves_total", 1.0)?;

    // A change every 20 ms on both daemons, so the saving one saves at every 100 ms
    // tick; its save durations are sampled meanwhile (about one save in two).
    let (stop_changes, changes_stopped) = mpsc::channel::<()>();
    let (saving_addr, memory_addr) = (saving.addr, memory.addr);
    let changer = thread::spawn(move || -> Outcome<Vec<(f64, f64)>> {
        let mut controls = [
            Control::connect(saving_addr)?,
            Control::connect(memory_addr)?,
        ];
        let mut samples = Vec::new();
        let mut last_saves = 0.0;
        for round in 0u64.. {
            if changes_stopped
                .recv_timeout(Duration::from_millis(20))
                .is_ok()
                || round > 10_000
            {
                break;
            }
            let body = format!(
                r#"{{"registers":{{"sensor-00001.temperature":{{"value":{round},"ttl":"1h"}}}}}}"#
            );
            for control in &mut controls {
                control.expect("PUT", "/provider", &body, 204)?;
            }
            // /metrics lists every numeric register (10,000 lines): read it from both
            // daemons alike, every fifth round, so the comparison stays fair.
            if round % 5 == 0 {
                metric_of(&mut controls[1], "regd_registers")?;
                let saves = metric_of(&mut controls[0], "regd_state_saves_total")?;
                if saves > last_saves {
                    last_saves = saves;
                    samples.push((
                        metric_of(&mut controls[0], "regd_state_last_save_duration_seconds")?,
                        metric_of(&mut controls[0], "regd_state_last_snapshot_seconds")?,
                    ));
                }
            }
        }
        Ok(samples)
    });
    let (mut with_saves, mut without) = (Vec::new(), Vec::new());
    for _ in 0..STATE_ROUNDS {
        with_saves.extend(read_latencies(saving.addr, STATE_ROUND_TIME)?);
        without.extend(read_latencies(memory.addr, STATE_ROUND_TIME)?);
    }
    let _ = stop_changes.send(());
    let samples = changer.join().map_err(|_| "the changer panicked")??;
    let sorted = |pick: fn(&(f64, f64)) -> f64| {
        let mut values: Vec<f64> = samples.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values
    };
    let (durations, holds) = (sorted(|sample| sample.0), sorted(|sample| sample.1));
    with_saves.sort();
    without.sort();
    let saves = metric_of(&mut saving_control, "regd_state_saves_total")?;
    let longest_hold = metric_of(&mut saving_control, "regd_state_longest_snapshot_seconds")?;
    let size = fs::metadata(big.0.join("state.json")).map_or(0, |meta| meta.len());
    let median = |values: &[f64]| values.get(values.len() / 2).copied().unwrap_or(0.0);
    report.row(
        &format!("state file at {STATE_REGISTERS} registers; save time (copy, encode, write, fsync, rename)"),
        format!(
            "{size} B ({:.0} B/register); save p50 {:.1} ms, max {:.1} ms ({} saves sampled)",
            size as f64 / STATE_REGISTERS as f64,
            median(&durations) * 1e3,
            durations.last().copied().unwrap_or(0.0) * 1e3,
            durations.len()
        ),
        "report",
        None,
    );
    report.row(
        &format!("longest registry-lock hold of a save at {STATE_REGISTERS} registers"),
        format!(
            "longest {:.0} µs over {saves} saves; of {} sampled: p50 {:.0} µs, p90 {:.0} µs",
            longest_hold * 1e6,
            holds.len(),
            median(&holds) * 1e6,
            holds.get(holds.len() * 9 / 10).copied().unwrap_or(0.0) * 1e6
        ),
        "report",
        None,
    );
    let (p99_with, p99_without) = (percentile(&with_saves, 0.99), percentile(&without, 0.99));
    let ratio = p99_with.as_secs_f64() / p99_without.as_secs_f64().max(1e-9);
    report.row(
        &format!(
            "GET /consumer (1 register of {STATE_REGISTERS}) p99 while saving every 100 ms vs in memory, {STATE_READERS} readers"
        ),
        format!(
            "{ratio:.2}× — with saves p50 {} p99 {} ({} reads); in memory p50 {} p99 {} ({} reads)",
            micros(percentile(&with_saves, 0.5)),
            micros(p99_with),
            with_saves.len(),
            micros(percentile(&without, 0.5)),
            micros(p99_without),
            without.len()
        ),
        "report (ratio, same run)",
        None,
    );
    drop(memory);
    // SIGTERM: the final save, then 10,000 registers to restore at each start.
    saving.stop();
    let empty = Scratch::new("state-empty")?;
    let (mut restoring, mut fresh) = (Vec::new(), Vec::new());
    for sample in 0..START_SAMPLES {
        let daemon = Daemon::start(&[
            "--log-level",
            "warn",
            "--max-registers",
            "20000",
            "--state-dir",
            big.arg(),
        ])?;
        if sample == 0 {
            let restored = metric_of(&mut Control::connect(daemon.addr)?, "regd_registers")?;
            if restored as usize != STATE_REGISTERS {
                return Err(format!(
                    "restored {restored} registers, not {STATE_REGISTERS}"
                ));
            }
        }
        restoring.push(daemon.started_in);
        drop(daemon);
        let daemon = Daemon::start(&["--log-level", "warn", "--state-dir", empty.arg()])?;
        fresh.push(daemon.started_in);
    }
    restoring.sort();
    fresh.sort();
    let p50 = percentile(&restoring, 0.5);
    report.row(
        &format!("start → `listening` with {STATE_REGISTERS} registers to restore"),
        format!(
            "p50 {} max {} (empty state directory: p50 {}; {START_SAMPLES} starts each)",
            micros(p50),
            micros(*restoring.last().unwrap_or(&p50)),
            micros(percentile(&fresh, 0.5)),
        ),
        "< 100 ms",
        Some(p50 < Duration::from_millis(100)),
    );
    wear(report)
}

/// 200 registers refreshed (deadline only) four times a second with `--save-interval
/// 1s`, for about six intervals: bytes written per save by /proc/PID/io, against the
/// file size, and what that makes per hour at the default interval.
fn wear(report: &mut Report) -> Outcome<()> {
    let dir = Scratch::new("state-wear")?;
    let daemon = Daemon::start(&[
        "--log-level",
        "warn",
        "--state-dir",
        dir.arg(),
        "--save-interval",
        "1s",
    ])?;
    let mut control = Control::connect(daemon.addr)?;
    publish_sensors(&mut control, WEAR_REGISTERS, 0)?;
    let first = wait_for_metric(&mut control, "regd_state_saves_total", 1.0)?;
    let written_before = written_bytes(daemon.pid()).ok_or("cannot read /proc/PID/io")?;
    let end = Instant::now() + Duration::from_millis(6_300);
    while Instant::now() < end {
        // The same values: only the deadlines move, and nobody is woken.
        publish_sensors(&mut control, WEAR_REGISTERS, 0)?;
        thread::sleep(Duration::from_millis(250));
    }
    let saves = metric_of(&mut control, "regd_state_saves_total")? - first;
    let written = written_bytes(daemon.pid()).ok_or("cannot read /proc/PID/io")? - written_before;
    let size = fs::metadata(dir.0.join("state.json")).map_or(0, |meta| meta.len());
    let per_hour = 3600.0 / DEFAULT_SAVE_INTERVAL.as_secs_f64();
    let per_save = written as f64 / saves.max(1.0);
    report.row(
        &format!(
            "bytes written per hour, {WEAR_REGISTERS} registers refreshed every 5 s, default --save-interval {}",
            humantime::format_duration(DEFAULT_SAVE_INTERVAL)
        ),
        format!(
            "{:.0} KiB/h computed ({size} B file × {per_hour:.0} saves/h); measured {per_save:.0} B per save by /proc/PID/io write_bytes ({written} B over {saves} saves at --save-interval 1s, refreshed 4×/s) → {:.0} KiB/h",
            size as f64 * per_hour / 1024.0,
            per_save * per_hour / 1024.0
        ),
        "report",
        None,
    );
    Ok(())
}

// ---------------------------------------------------------------------------------
// Measurements.

/// Throughput of one closed-loop run, and the server's CPU time per request.
#[derive(Clone, Copy, Debug)]
struct Rate {
    per_second: f64,
    cpu_us_per_request: Option<f64>,
}

fn mean_rate(rates: &[Rate]) -> f64 {
    rates.iter().map(|rate| rate.per_second).sum::<f64>() / rates.len().max(1) as f64
}

fn mean_cpu(rates: &[Rate]) -> Option<f64> {
    let values: Vec<f64> = rates
        .iter()
        .filter_map(|rate| rate.cpu_us_per_request)
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// `LOAD_CONNECTIONS` keep-alive connections, each sending its next request as soon as
/// the answer to the last arrived (cycling through `requests`), for `LOAD_TIME` after
/// a warm-up. Every answer must have status `expect`.
fn load(addr: SocketAddr, pids: &[u32], requests: &[Vec<u8>], expect: u16) -> Outcome<Rate> {
    let mut net = Net::new()?;
    let mut next = vec![0usize; LOAD_CONNECTIONS];
    for (slot, next) in next.iter_mut().enumerate() {
        let id = net.connect(addr)?;
        *next = slot % requests.len();
        net.send(id, &requests[*next])?;
    }
    let warm = Instant::now() + LOAD_WARMUP;
    let mut window: Option<(Instant, u64)> = None;
    let mut answered: u64 = 0;
    let mut answers = Vec::new();
    loop {
        let now = Instant::now();
        if window.is_none() && now >= warm {
            window = Some((now, cpu_ticks(pids)));
            answered = 0;
        }
        if let Some((start, _)) = window {
            if now >= start + LOAD_TIME {
                break;
            }
        }
        net.pump(Duration::from_millis(50), &mut answers)?;
        for (id, answer) in answers.drain(..) {
            if answer.status != expect {
                return Err(format!(
                    "{addr}: status {} instead of {expect}: {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                ));
            }
            answered += 1;
            next[id] = (next[id] + 1) % requests.len();
            net.send(id, &requests[next[id]])?;
        }
    }
    let (start, ticks_before) = window.ok_or("no measuring window")?;
    let elapsed = start.elapsed().as_secs_f64();
    let ticks = cpu_ticks(pids).saturating_sub(ticks_before);
    // USER_HZ is 100 on every Linux architecture regd targets.
    let cpu_us = ticks as f64 * 10_000.0;
    Ok(Rate {
        per_second: answered as f64 / elapsed,
        cpu_us_per_request: (ticks > 0 && answered > 0).then(|| cpu_us / answered as f64),
    })
}

/// Opens `count` long polls (`target(first + i)`) in batches, and returns once regd
/// reports `first + count` polls held.
fn open_polls(
    net: &mut Net,
    control: &mut Control,
    addr: SocketAddr,
    first: usize,
    count: usize,
    target: &dyn Fn(usize) -> String,
) -> Outcome<Vec<usize>> {
    let mut ids = Vec::with_capacity(count);
    while ids.len() < count {
        let batch = (count - ids.len()).min(CONNECT_BATCH);
        for _ in 0..batch {
            let id = net.connect(addr)?;
            net.send(id, &request("GET", &target(first + ids.len()), ""))?;
            ids.push(id);
        }
        let wanted = first + ids.len();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let held = held_polls(control)?;
            if held >= wanted {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("only {held} of {wanted} polls held after 20 s"));
            }
            // Pause while regd starts the batch's threads; bounded by the deadline.
            thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(ids)
}

/// Latencies of waking one poll: from sending the PUT to the poll's answer, and to the
/// moment both the PUT's and the poll's answers had arrived.
struct Wakes {
    poll: Vec<Duration>,
    both: Vec<Duration>,
}

fn wake_one(net: &mut Net, control: &mut Control, addr: SocketAddr, name: &str) -> Outcome<Wakes> {
    control.expect(
        "PUT",
        "/provider",
        &format!(r#"{{"registers":{{"{name}":{{"value":0,"ttl":"1h"}}}}}}"#),
        204,
    )?;
    let mut index = control
        .expect("GET", &format!("/consumer?name={name}"), "", 200)?
        .index
        .ok_or("no X-Reg-Index")?;
    let poller = net.connect(addr)?;
    let putter = net.connect(addr)?;
    let mut wakes = Wakes {
        poll: Vec::new(),
        both: Vec::new(),
    };
    let mut answers = Vec::new();
    for sample in 1..=WAKE_SAMPLES {
        // `index` makes the poll answer at once if it missed a change, so a poll that
        // is not yet parked can never hang; the pause lets it park so that the sample
        // measures a real wake-up.
        net.send(
            poller,
            &request(
                "GET",
                &format!("/consumer?name={name}&wait=30s&index={index}"),
                "",
            ),
        )?;
        thread::sleep(Duration::from_millis(1));
        net.pump(Duration::ZERO, &mut answers)?;
        if !answers.is_empty() {
            return Err(format!("the poll on {name} answered before any change"));
        }
        let sent = Instant::now();
        net.send(
            putter,
            &request(
                "PUT",
                "/provider",
                &format!(r#"{{"registers":{{"{name}":{{"value":{sample},"ttl":"1h"}}}}}}"#),
            ),
        )?;
        let mut poll_answer = None;
        let mut put_answer = None;
        let deadline = sent + PATIENCE;
        while poll_answer.is_none() || put_answer.is_none() {
            if Instant::now() > deadline {
                return Err(format!(
                    "wake-up of {name} not answered within {PATIENCE:?}"
                ));
            }
            net.pump(Duration::from_millis(100), &mut answers)?;
            for (id, answer) in answers.drain(..) {
                if id == poller {
                    poll_answer = Some(answer);
                } else {
                    put_answer = Some(answer);
                }
            }
        }
        let (poll, put) = (
            poll_answer.unwrap_or_default(),
            put_answer.unwrap_or_default(),
        );
        let expected = format!(r#"{{"registers":{{"{name}":{{"value":{sample}}}}}}}"#);
        if poll.status != 200 || poll.body != expected.as_bytes() || put.status != 204 {
            return Err(format!(
                "wrong wake-up answer {} {:?} (PUT {})",
                poll.status,
                String::from_utf8_lossy(&poll.body),
                put.status
            ));
        }
        index = poll.index.ok_or("no X-Reg-Index")?;
        wakes.poll.push(poll.at - sent);
        wakes.both.push(poll.at.max(put.at) - sent);
    }
    net.close(poller);
    net.close(putter);
    wakes.poll.sort();
    wakes.both.sort();
    Ok(wakes)
}

fn change_round_trips(addr: SocketAddr) -> Outcome<Vec<Duration>> {
    let mut net = Net::new()?;
    let provider = net.connect(addr)?;
    let consumer = net.connect(addr)?;
    let mut answers = Vec::new();
    let mut times = Vec::new();
    for sample in 1..=CHANGE_SAMPLES {
        net.send(provider, &request("GET", "/provider?name=c&wait=30s", ""))?;
        // Let the provider poll park, so the sample measures a real wake-up (a request
        // sent first would be answered at once, correctly but faster).
        thread::sleep(Duration::from_millis(1));
        let sent = Instant::now();
        net.send(
            consumer,
            &request(
                "PUT",
                "/consumer",
                &format!(r#"{{"registers":{{"c":{{"value":{sample}}}}}}}"#),
            ),
        )?;
        let mut taken = None;
        let mut accepted = false;
        while taken.is_none() || !accepted {
            if Instant::now() > sent + PATIENCE {
                return Err("change request not delivered in time".to_string());
            }
            net.pump(Duration::from_millis(100), &mut answers)?;
            for (id, answer) in answers.drain(..) {
                if id == provider {
                    taken = Some(answer);
                } else {
                    accepted = answer.status == 202;
                    if !accepted {
                        return Err(format!("PUT /consumer answered {}", answer.status));
                    }
                }
            }
        }
        let taken = taken.unwrap_or_default();
        let expected = format!(r#"{{"registers":{{"c":{{"value":{sample}}}}}}}"#);
        if taken.body != expected.as_bytes() {
            return Err(format!(
                "provider poll got {:?}, expected {expected}",
                String::from_utf8_lossy(&taken.body)
            ));
        }
        times.push(taken.at - sent);
    }
    times.sort();
    Ok(times)
}

/// `count` registers with ttls spread evenly over 100 ms–2 s, each with one poll on it:
/// how late each poll hears of its register's expiry. Measured from the moment the
/// PUT that set the ttls was sent, so the figures include that PUT's own transit.
fn expiry_lateness(
    control: &mut Control,
    addr: SocketAddr,
    count: usize,
) -> Outcome<Vec<Duration>> {
    let names: Vec<String> = (0..count).map(|i| format!("e{count}-{i}")).collect();
    let ttl =
        |i: usize| Duration::from_micros(100_000 + (1_900_000 * i as u64) / (count as u64 - 1));
    control.expect(
        "PUT",
        "/provider",
        &registers_body(&names, |_| r#"{"value":0,"ttl":"1h"}"#.to_string()),
        204,
    )?;
    let mut net = Net::new()?;
    let held_before = held_polls(control)?;
    let polls = open_polls(&mut net, control, addr, held_before, count, &|i| {
        format!("/consumer?name=e{count}-{}&wait=30s", i - held_before)
    })?;
    // Same value and metadata: the refresh wakes no one, it only sets the short ttls.
    let body = registers_body(&names, |i| {
        format!(r#"{{"value":0,"ttl":"{}us"}}"#, ttl(i).as_micros())
    });
    let sent = Instant::now();
    control.expect("PUT", "/provider", &body, 204)?;
    let answers = collect(&mut net, &polls, sent + Duration::from_secs(10))?;
    let mut late = Vec::with_capacity(count);
    for (i, id) in polls.iter().enumerate() {
        let answer = answers.get(id).ok_or("a poll was not answered")?;
        if answer.body != br#"{"registers":{}}"# {
            return Err(format!(
                "expiry poll answered {:?}",
                String::from_utf8_lossy(&answer.body)
            ));
        }
        let deadline = sent + ttl(i);
        if answer.at < deadline {
            return Err(format!(
                "register {} expired {:?} early",
                names[i],
                deadline - answer.at
            ));
        }
        late.push((answer.at - deadline, i));
    }
    late.sort();
    let worst: Vec<String> = late
        .iter()
        .rev()
        .take(3)
        .map(|(late, i)| format!("{} (ttl {:?}) {}", names[*i], ttl(*i), micros(*late)))
        .collect();
    eprintln!("  latest expiries of {count}: {}", worst.join(", "));
    let late: Vec<Duration> = late.into_iter().map(|(late, _)| late).collect();
    Ok(late)
}

/// Reads the one answer of each of `ids`, until `deadline`.
fn collect(
    net: &mut Net,
    ids: &[usize],
    deadline: Instant,
) -> Outcome<std::collections::HashMap<usize, Answer>> {
    let mut answers = std::collections::HashMap::with_capacity(ids.len());
    let mut batch = Vec::new();
    while answers.len() < ids.len() {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {} polls answered in time",
                answers.len(),
                ids.len()
            ));
        }
        net.pump(Duration::from_millis(100), &mut batch)?;
        answers.extend(batch.drain(..));
    }
    Ok(answers)
}

/// Waits (bounded) until the daemon is down to about `threads` threads again, so
/// the connections of a finished phase do not weigh on the next.
fn wait_for_threads(pid: u32, threads: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while threads_of(pid).is_some_and(|n| n > threads) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
}

fn held_polls(control: &mut Control) -> Outcome<usize> {
    let metrics = control.expect("GET", "/metrics", "", 200)?;
    let text = String::from_utf8_lossy(&metrics.body);
    text.lines()
        .find_map(|line| line.strip_prefix("regd_held_polls "))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| "no regd_held_polls in /metrics".to_string())
}

fn registers_body(names: &[String], entry: impl Fn(usize) -> String) -> String {
    let mut body = String::from(r#"{"registers":{"#);
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(body, r#""{name}":{}"#, entry(i));
    }
    body.push_str("}}");
    body
}

fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() - 1) as f64 * quantile).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn micros(duration: Duration) -> String {
    let us = duration.as_secs_f64() * 1e6;
    if us < 10_000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.1} ms", us / 1000.0)
    }
}

// ---------------------------------------------------------------------------------
// /proc readers.

fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

/// Resident memory in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    proc_status(pid, "VmRSS")
}

fn threads_of(pid: u32) -> Option<usize> {
    proc_status(pid, "Threads").map(|n| n as usize)
}

/// User plus system CPU time of the processes (threads that ended included), in ticks.
fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            // Fields 14 and 15 of stat(5); the list starts at field 3.
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .sum()
}

/// The soft limit on open files, from /proc/self/limits (no libc call needed).
fn open_files_limit() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

// ---------------------------------------------------------------------------------
// The daemons.

/// A `regd` started for the bench, stopped with SIGTERM (and reaped) on drop.
struct Daemon {
    child: Child,
    addr: SocketAddr,
    started_in: Duration,
}

impl Daemon {
    fn start(args: &[&str]) -> Outcome<Daemon> {
        let started = Instant::now();
        let mut child = Command::new(regd())
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env_remove("JOURNAL_STREAM")
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", regd()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let line = read_line_within(stdout, Duration::from_secs(5));
        let started_in = started.elapsed();
        let daemon = |addr| Daemon {
            child,
            addr,
            started_in,
        };
        match line
            .as_deref()
            .and_then(|line| line.trim().strip_prefix("listening on http://"))
        {
            Some(addr) => match addr.parse() {
                Ok(addr) => Ok(daemon(addr)),
                Err(_) => Err(format!("regd announced an unreadable address {addr:?}")),
            },
            None => {
                drop(daemon(SocketAddr::from(([127, 0, 0, 1], 0))));
                Err(format!("regd did not announce its address: {line:?}"))
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(self) {}
}

impl Drop for Daemon {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// Reads one line on a helper thread, giving up after `patience`.
fn read_line_within(pipe: impl Read + Send + 'static, patience: Duration) -> Option<String> {
    let (sender, receiver) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(pipe).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver.recv_timeout(patience).ok();
    if line.is_some() {
        let _ = reader.join();
    }
    line
}

/// SIGTERM (through kill(1), as std has no signals), then SIGKILL after 3 s.
fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Where nginx is and its version, or `None` when it is not installed.
fn find_nginx() -> Option<(PathBuf, String)> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("nginx"))
                .collect()
        })
        .unwrap_or_default();
    candidates.push(PathBuf::from("/usr/sbin/nginx"));
    let path = candidates.into_iter().find(|path| path.is_file())?;
    let output = Command::new(&path).arg("-v").output().ok()?;
    let version = String::from_utf8_lossy(&output.stderr).trim().to_string();
    Some((path, version))
}

/// nginx on a free loopback port, serving `body` as a static file for every GET and
/// answering PUT /provider with 204 (it reads and discards the body); its own temporary
/// prefix, configuration and logs; stopped with SIGTERM on drop.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Nginx {
    fn start(path: &Path, body: &[u8]) -> Outcome<Nginx> {
        let dir = std::env::temp_dir().join(format!("regd-bench-nginx-{}", std::process::id()));
        let www = dir.join("www");
        fs::create_dir_all(&www).map_err(|error| format!("{}: {error}", www.display()))?;
        fs::write(www.join("consumer"), body).map_err(|error| error.to_string())?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|error| error.to_string())?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let d = dir.display();
        let config = format!(
            "daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 100000000;\n  keepalive_timeout 60s;\n\
               client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               server {{\n    listen {addr};\n    root {d}/www;\n    default_type application/json;\n\
                 location = /provider {{ return 204; }}\n    location / {{ }}\n  }}\n}}\n"
        );
        let config_path = dir.join("nginx.conf");
        fs::write(&config_path, config).map_err(|error| error.to_string())?;
        let child = Command::new(path)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| format!("cannot start nginx: {error}"))?;
        let nginx = Nginx { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if TcpStream::connect(addr).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("nginx did not listen on {addr} within 5 s"));
            }
            thread::sleep(Duration::from_millis(10));
        }
        let mut control = Control::connect(addr)?;
        let answer = control.expect("GET", "/consumer?name=x", "", 200)?;
        if answer.body != body {
            return Err("nginx serves a different body".to_string());
        }
        Ok(nginx)
    }

    /// The master and its workers.
    fn pids(&self) -> Vec<u32> {
        let master = self.child.id();
        let mut pids = vec![master];
        let children = fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
            .unwrap_or_default();
        pids.extend(
            children
                .split_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok()),
        );
        pids
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        terminate(&mut self.child);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------
// HTTP on the client side.

fn request(method: &str, target: &str, body: &str) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: bench\r\n");
    if !body.is_empty() || method == "PUT" {
        let _ = write!(out, "Content-Length: {}\r\n", body.len());
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

/// One answer, and when its last byte arrived.
#[derive(Clone, Debug)]
struct Answer {
    status: u16,
    body: Vec<u8>,
    index: Option<u64>,
    at: Instant,
}

impl Default for Answer {
    fn default() -> Self {
        Answer {
            status: 0,
            body: Vec::new(),
            index: None,
            at: Instant::now(),
        }
    }
}

/// Takes one complete answer off the front of `buffer`, if there is one.
fn parse_answer(buffer: &mut Vec<u8>) -> Outcome<Option<Answer>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut headers);
    let head = match parsed.parse(buffer) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(format!("malformed answer: {error}")),
    };
    let status = parsed.code.unwrap_or(0);
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .and_then(|header| std::str::from_utf8(header.value).ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
    };
    let index = header("x-reg-index");
    let length = match status {
        100..=199 | 204 | 304 => 0,
        _ => header("content-length").ok_or("an answer without Content-Length")? as usize,
    };
    if buffer.len() < head + length {
        return Ok(None);
    }
    let body = buffer[head..head + length].to_vec();
    buffer.drain(..head + length);
    Ok(Some(Answer {
        status,
        body,
        index,
        at: Instant::now(),
    }))
}

/// A blocking keep-alive connection for set-up requests and /metrics.
struct Control {
    addr: SocketAddr,
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Control {
    fn connect(addr: SocketAddr) -> Outcome<Control> {
        Ok(Control {
            addr,
            stream: Self::open(addr)?,
            buffer: Vec::new(),
        })
    }

    fn open(addr: SocketAddr) -> Outcome<TcpStream> {
        let stream = TcpStream::connect_timeout(&addr, PATIENCE)
            .map_err(|error| format!("cannot connect to {addr}: {error}"))?;
        stream
            .set_read_timeout(Some(PATIENCE))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(|error| error.to_string())?;
        Ok(stream)
    }

    /// Sends a request and reads its answer, which must have `status`. A connection
    /// the server closed while it was idle (its keep-alive timeout) is reopened once.
    fn expect(&mut self, method: &str, target: &str, body: &str, status: u16) -> Outcome<Answer> {
        match self.exchange(method, target, body, status) {
            Err(Retry::Closed(_)) => {
                self.stream = Self::open(self.addr)?;
                self.buffer.clear();
                self.exchange(method, target, body, status)
                    .map_err(Retry::message)
            }
            other => other.map_err(Retry::message),
        }
    }

    fn exchange(
        &mut self,
        method: &str,
        target: &str,
        body: &str,
        status: u16,
    ) -> Result<Answer, Retry> {
        self.stream
            .write_all(&request(method, target, body))
            .map_err(|error| Retry::Closed(format!("{method} {target}: {error}")))?;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(answer) = parse_answer(&mut self.buffer).map_err(Retry::Fail)? {
                if answer.status != status {
                    return Err(Retry::Fail(format!(
                        "{method} {target}: status {} instead of {status}: {}",
                        answer.status,
                        String::from_utf8_lossy(&answer.body)
                    )));
                }
                return Ok(answer);
            }
            let closed = |what: String| {
                if self.buffer.is_empty() {
                    Retry::Closed(what)
                } else {
                    Retry::Fail(what)
                }
            };
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(closed(format!("{method} {target}: connection closed"))),
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
                Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(closed(format!("{method} {target}: {error}")));
                }
                Err(error) => return Err(Retry::Fail(format!("{method} {target}: {error}"))),
            }
        }
    }
}

/// Why an exchange failed: the connection was closed before the answer began (worth
/// one retry on a new connection), or anything else.
enum Retry {
    Closed(String),
    Fail(String),
}

impl Retry {
    fn message(self) -> String {
        match self {
            Retry::Closed(message) | Retry::Fail(message) => message,
        }
    }
}

struct Connection {
    stream: MioStream,
    inbound: Vec<u8>,
    outbound: Vec<u8>,
}

/// Many non-blocking connections on one epoll instance, driven by [`Net::pump`].
struct Net {
    poll: Poll,
    events: Events,
    connections: Vec<Option<Connection>>,
}

impl Net {
    fn new() -> Outcome<Net> {
        Ok(Net {
            poll: Poll::new().map_err(|error| format!("epoll: {error}"))?,
            events: Events::with_capacity(1024),
            connections: Vec::new(),
        })
    }

    /// Connects (a blocking connect: loopback answers at once while the backlog has
    /// room), then switches the socket to non-blocking.
    fn connect(&mut self, addr: SocketAddr) -> Outcome<usize> {
        let stream = TcpStream::connect_timeout(&addr, PATIENCE)
            .map_err(|error| format!("cannot connect to {addr}: {error}"))?;
        stream
            .set_nodelay(true)
            .and_then(|()| stream.set_nonblocking(true))
            .map_err(|error| error.to_string())?;
        let mut stream = MioStream::from_std(stream);
        let id = self.connections.len();
        self.poll
            .registry()
            .register(
                &mut stream,
                Token(id),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|error| error.to_string())?;
        self.connections.push(Some(Connection {
            stream,
            inbound: Vec::new(),
            outbound: Vec::new(),
        }));
        Ok(id)
    }

    fn send(&mut self, id: usize, bytes: &[u8]) -> Outcome<()> {
        let connection = self.connections[id]
            .as_mut()
            .ok_or("send on a closed connection")?;
        connection.outbound.extend_from_slice(bytes);
        flush(connection).map_err(|error| format!("send: {error}"))
    }

    /// Waits up to `timeout` for socket events, moves bytes, and appends every complete
    /// answer (with its connection) to `answers`.
    fn pump(&mut self, timeout: Duration, answers: &mut Vec<(usize, Answer)>) -> Outcome<()> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(error) => return Err(format!("epoll: {error}")),
        }
        let mut chunk = [0u8; 16 * 1024];
        for event in self.events.iter() {
            let id = event.token().0;
            let Some(connection) = self.connections.get_mut(id).and_then(Option::as_mut) else {
                continue;
            };
            if event.is_writable() {
                flush(connection).map_err(|error| format!("send: {error}"))?;
            }
            if !event.is_readable() {
                continue;
            }
            loop {
                match connection.stream.read(&mut chunk) {
                    Ok(0) => {
                        if connection.inbound.is_empty() {
                            return Err(format!("connection {id} closed by the server"));
                        }
                        break;
                    }
                    Ok(read) => connection.inbound.extend_from_slice(&chunk[..read]),
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(format!("connection {id}: {error}")),
                }
            }
            while let Some(answer) = parse_answer(&mut connection.inbound)? {
                answers.push((id, answer));
            }
        }
        Ok(())
    }

    fn close(&mut self, id: usize) {
        if let Some(mut connection) = self.connections.get_mut(id).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut connection.stream);
        }
    }

    fn close_all(&mut self) {
        for id in 0..self.connections.len() {
            self.close(id);
        }
    }
}

/// Writes what is queued until done or the socket is full (the next writable event
/// resumes it).
fn flush(connection: &mut Connection) -> io::Result<()> {
    while !connection.outbound.is_empty() {
        match connection.stream.write(&connection.outbound) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => {
                connection.outbound.drain(..written);
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// The table.

#[derive(Default)]
struct Report {
    rows: Vec<[String; 4]>,
}

impl Report {
    fn row(&mut self, figure: &str, measured: String, target: &str, met: Option<bool>) {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "—",
        };
        eprintln!("  {figure}: {measured}");
        self.rows.push([
            figure.to_string(),
            measured,
            target.to_string(),
            verdict.to_string(),
        ]);
    }

    fn failure(&mut self, figure: &str, error: &str) {
        self.row(figure, format!("FAILED: {error}"), "", Some(false));
    }

    fn print(&self) {
        println!("| figure | measured | target | verdict |");
        println!("|---|---|---|---|");
        for [figure, measured, target, verdict] in &self.rows {
            println!("| {figure} | {measured} | {target} | {verdict} |");
        }
    }
}
