//! The MQTT bridge's benchmark (issue 13): starts a Mosquitto, a release `regd` and a
//! release `regd-mqtt` of its own on free loopback ports, with `mosquitto_sub` as the
//! subscriber, and prints one table: end-to-end latency of a register change to the
//! subscriber (p50/p99) next to a same-run baseline of a direct publish through the
//! same broker to the same subscriber, the changes per second the bridge sustains,
//! its RSS idle and with 10,000 registers, its threads, how fast it is back after a
//! broker restart, and its binary size. Loopback only; every loop is bounded in count
//! and time. Run it with `cargo bench --bench mqtt`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const LATENCY_SAMPLES: usize = 400;
const REGISTERS: usize = 10_000;
/// Registers per PUT when filling and changing the 10,000.
const PER_BODY: usize = 100;
const PATIENCE: Duration = Duration::from_secs(60);

fn main() {
    if Command::new("mosquitto").arg("-h").output().is_err()
        || Command::new("mosquitto_sub")
            .arg("--help")
            .output()
            .is_err()
    {
        println!(
            "mosquitto and mosquitto-clients are needed (apt-get install mosquitto mosquitto-clients); nothing measured"
        );
        return;
    }
    let directory = std::env::temp_dir().join(format!("regd-mqtt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let port = free_port();
    let config = directory.join("mosquitto.conf");
    std::fs::write(
        &config,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\nmax_queued_messages 200000\n"),
    )
    .unwrap();
    let mut rows: Vec<(String, String)> = Vec::new();
    let bridge_binary = env!("CARGO_BIN_EXE_regd-mqtt");
    let size = std::fs::metadata(bridge_binary)
        .map(|m| m.len())
        .unwrap_or(0);
    rows.push((
        "binary size (release, stripped)".into(),
        format!("{} bytes ({:.0} KiB)", size, size as f64 / 1024.0),
    ));

    let mut broker = Process::start(
        Command::new("mosquitto").args(["-c", config.to_str().unwrap()]),
        None,
    );
    wait_listening(port);
    let mut regd = Process::start(
        Command::new(env!("CARGO_BIN_EXE_regd")).args([
            "--addr",
            "127.0.0.1:0",
            "--max-registers",
            "20000",
            "--log-level",
            "warn",
        ]),
        Some("listening on http://"),
    );
    let regd_address = regd
        .first_line
        .trim_start_matches("listening on http://")
        .to_string();
    let bridge = Process::start(
        Command::new(bridge_binary).args([
            "--registry",
            &format!("http://{regd_address}"),
            "--broker",
            &format!("mqtt://127.0.0.1:{port}"),
            "--prefix",
            "bench/gw",
            "--log-level",
            "warn",
        ]),
        Some("connected to mqtt://"),
    );
    let mut http = Http::connect(&regd_address);
    let subscriber = Subscriber::start(port, &["bench/gw/lat", "bench/direct", "bench/gw/fill/+"]);
    wait_quiet(&subscriber);
    let pid = bridge.child.id();
    rows.push(("bridge RSS, idle".into(), format!("{} KiB", rss_kib(pid))));
    rows.push(("bridge threads".into(), threads(pid).to_string()));

    // Latency: regd change → bridge → broker → subscriber, against a direct publish.
    let mut through_bridge = Vec::new();
    let mut direct = Vec::new();
    let mut publisher = RawPublisher::connect(port);
    for sample in 0..LATENCY_SAMPLES {
        let started = Instant::now();
        http.put(&format!(
            "{{\"registers\":{{\"lat\":{{\"value\":{sample},\"ttl\":\"300s\"}}}}}}"
        ));
        subscriber.wait_for("bench/gw/lat", &sample.to_string());
        through_bridge.push(started.elapsed());
        let started = Instant::now();
        publisher.publish("bench/direct", sample.to_string().as_bytes());
        subscriber.wait_for("bench/direct", &sample.to_string());
        direct.push(started.elapsed());
    }
    through_bridge.sort();
    direct.sort();
    rows.push((
        "change → subscriber, p50 / p99".into(),
        format!(
            "{} / {}",
            millis(percentile(&through_bridge, 0.5)),
            millis(percentile(&through_bridge, 0.99))
        ),
    ));
    rows.push((
        "baseline direct publish → subscriber, p50 / p99".into(),
        format!(
            "{} / {}",
            millis(percentile(&direct, 0.5)),
            millis(percentile(&direct, 0.99))
        ),
    ));
    rows.push((
        "bridge latency / baseline (p50)".into(),
        format!(
            "{:.1}×",
            percentile(&through_bridge, 0.5).as_secs_f64()
                / percentile(&direct, 0.5).as_secs_f64().max(1e-9)
        ),
    ));

    // 10,000 new registers, then a change to every one: how fast the bridge exports.
    for (round, what) in [
        (0, "new registers exported (state, metadata, availability)"),
        (1, "changes exported"),
    ] {
        let started = Instant::now();
        for chunk in 0..REGISTERS / PER_BODY {
            let entries: Vec<String> = (0..PER_BODY)
                .map(|offset| {
                    let index = chunk * PER_BODY + offset;
                    format!(
                        "\"fill.r{index}\":{{\"value\":{},\"ttl\":\"600s\"}}",
                        index * 10 + round
                    )
                })
                .collect();
            http.put(&format!("{{\"registers\":{{{}}}}}", entries.join(",")));
        }
        let written = started.elapsed();
        subscriber.wait_for(
            &format!("bench/gw/fill/r{}", REGISTERS - 1),
            &((REGISTERS - 1) * 10 + round).to_string(),
        );
        // Every one arrived (the subscriber sees them in order per topic).
        let deadline = Instant::now() + PATIENCE;
        while subscriber.count_value_suffix(round) < REGISTERS && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20)); // sleep-ok: polling a deadline
        }
        let elapsed = started.elapsed();
        rows.push((
            format!("{REGISTERS} {what}"),
            format!(
                "{:.0}/s ({:.2} s; regd took {:.2} s to accept them)",
                REGISTERS as f64 / elapsed.as_secs_f64(),
                elapsed.as_secs_f64(),
                written.as_secs_f64()
            ),
        ));
    }
    rows.push((
        "bridge RSS with 10,000 registers".into(),
        format!("{} KiB", rss_kib(pid)),
    ));

    // Broker restart: back and republished.
    broker.kill();
    let restarted = Instant::now();
    let mut broker = Process::start(
        Command::new("mosquitto").args(["-c", config.to_str().unwrap()]),
        None,
    );
    wait_listening(port);
    let listening = restarted.elapsed();
    let deadline = Instant::now() + PATIENCE;
    while bridge
        .lines()
        .iter()
        .filter(|line| line.starts_with("connected to"))
        .count()
        < 2
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(5)); // sleep-ok: polling a deadline
    }
    rows.push((
        "reconnect after a broker restart".into(),
        format!(
            "{} after the broker listened again",
            millis(restarted.elapsed().saturating_sub(listening))
        ),
    ));

    drop(subscriber);
    drop(bridge);
    regd.kill();
    broker.kill();
    let _ = std::fs::remove_dir_all(&directory);
    println!(
        "\nregd-mqtt benchmark ({} cores)\n",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    for (label, value) in rows {
        println!("  {label:<width$}  {value}");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not listen");
        thread::sleep(Duration::from_millis(5)); // sleep-ok: polling a deadline
    }
}

/// Waits until the subscriber has been quiet for a moment (retained messages done).
fn wait_quiet(subscriber: &Subscriber) {
    let mut last = usize::MAX;
    loop {
        let now = subscriber.received();
        if now == last {
            return;
        }
        last = now;
        thread::sleep(Duration::from_millis(200)); // sleep-ok: settling, bounded by the messages there are
    }
}

fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * quantile).round() as usize]
}

fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmRSS:")
                    .map(|rest| rest.trim().trim_end_matches(" kB").parse().ok())
            })?
        })
        .unwrap_or(0)
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |entries| entries.count())
}

/// A child process, killed and reaped on drop; stdout lines collected.
struct Process {
    child: Child,
    first_line: String,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Process {
    fn start(command: &mut Command, announcement: Option<&str>) -> Process {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (first, first_line) = mpsc::channel();
        {
            let stdout = child.stdout.take().unwrap();
            let lines = lines.clone();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let _ = first.send(line.clone());
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let first_line = match announcement {
            Some(prefix) => {
                let line = first_line
                    .recv_timeout(PATIENCE)
                    .expect("the process announced itself");
                assert!(line.starts_with(prefix), "{line}");
                line
            }
            None => String::new(),
        };
        Process {
            child,
            first_line,
            lines,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `mosquitto_sub`, line-buffered; each message's latest payload per topic, and a
/// channel that says when one arrives.
struct Subscriber {
    process: Process,
    latest: std::sync::Arc<std::sync::Mutex<(HashMap<String, String>, usize)>>,
    arrived: mpsc::Receiver<()>,
}

impl Subscriber {
    fn start(port: u16, filters: &[&str]) -> Subscriber {
        let mut command = Command::new("stdbuf");
        command.args([
            "-oL",
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "0",
            "-v",
        ]);
        for filter in filters {
            command.args(["-t", filter]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub");
        let latest = std::sync::Arc::new(std::sync::Mutex::new((HashMap::new(), 0usize)));
        let (arrive, arrived) = mpsc::channel();
        {
            let stdout = child.stdout.take().unwrap();
            let latest = latest.clone();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some((topic, payload)) = line.split_once(' ') {
                        let mut latest = latest.lock().unwrap();
                        latest.0.insert(topic.to_string(), payload.to_string());
                        latest.1 += 1;
                        let _ = arrive.send(());
                    }
                }
            });
        }
        // Subscribed once a probe published after it arrives.
        let subscriber = Subscriber {
            process: Process {
                child,
                first_line: String::new(),
                lines: Default::default(),
            },
            latest,
            arrived,
        };
        let deadline = Instant::now() + PATIENCE;
        let mut probe = RawPublisher::connect(port);
        while !subscriber
            .latest
            .lock()
            .unwrap()
            .0
            .contains_key("bench/direct")
        {
            assert!(Instant::now() < deadline, "mosquitto_sub did not subscribe");
            probe.publish("bench/direct", b"probe");
            let _ = subscriber.arrived.recv_timeout(Duration::from_millis(50));
        }
        subscriber
    }

    fn received(&self) -> usize {
        self.latest.lock().unwrap().1
    }

    fn wait_for(&self, topic: &str, payload: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self
                .latest
                .lock()
                .unwrap()
                .0
                .get(topic)
                .is_some_and(|latest| latest == payload)
            {
                return;
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("a message within the patience");
            let _ = self.arrived.recv_timeout(left);
        }
    }

    /// Fill registers whose latest value is of round `round` (value % 10).
    fn count_value_suffix(&self, round: usize) -> usize {
        let latest = self.latest.lock().unwrap();
        latest
            .0
            .iter()
            .filter(|(topic, payload)| {
                topic.starts_with("bench/gw/fill/")
                    && payload
                        .parse::<usize>()
                        .is_ok_and(|value| value % 10 == round)
            })
            .count()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.process.kill();
    }
}

/// A keep-alive HTTP connection to regd.
struct Http {
    stream: TcpStream,
}

impl Http {
    fn connect(address: &str) -> Http {
        let stream = TcpStream::connect(address).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        Http { stream }
    }

    /// PUT /provider, expecting 204 (no body).
    fn put(&mut self, body: &str) {
        let request = format!(
            "PUT /provider HTTP/1.1\r\nHost: regd\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.write_all(request.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            self.stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 204"),
            "{}",
            String::from_utf8_lossy(&head)
        );
    }
}

/// The baseline's publisher: MQTT 3.1.1 CONNECT and QoS 0 PUBLISH frames written
/// straight to the broker (no process start per message, unlike `mosquitto_pub`).
struct RawPublisher {
    stream: TcpStream,
}

impl RawPublisher {
    fn connect(port: u16) -> RawPublisher {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_nodelay(true).unwrap();
        let client_id = format!("bench-{}", std::process::id());
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
        body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
        body.extend_from_slice(client_id.as_bytes());
        stream.write_all(&frame(0x10, &body)).unwrap();
        let mut connack = [0u8; 4];
        stream.read_exact(&mut connack).unwrap();
        assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK");
        RawPublisher { stream }
    }

    fn publish(&mut self, topic: &str, payload: &[u8]) {
        let mut body = (topic.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(topic.as_bytes());
        body.extend_from_slice(payload);
        self.stream.write_all(&frame(0x30, &body)).unwrap();
    }
}

fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut frame = vec![first];
    let mut length = body.len();
    loop {
        let byte = (length % 128) as u8;
        length /= 128;
        frame.push(if length > 0 { byte | 0x80 } else { byte });
        if length == 0 {
            break;
        }
    }
    frame.extend_from_slice(body);
    frame
}
