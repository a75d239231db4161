//! `regd-mqtt` against a real Mosquitto that each test starts (config written by the
//! test, a free loopback port), real regd instances and the real bridge binary, with
//! `mosquitto_sub`/`mosquitto_pub` as the independent client. Skipped with a message
//! when Mosquitto is not installed, unless `REGD_REQUIRE_MOSQUITTO` is set (CI).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

/// Whether the Mosquitto tools are here; panics when CI requires them.
fn have_mosquitto() -> bool {
    let present = [
        "mosquitto",
        "mosquitto_sub",
        "mosquitto_pub",
        "mosquitto_passwd",
    ]
    .iter()
    .all(|tool| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    });
    skip_unless(
        present,
        "mosquitto and mosquitto-clients",
        "REGD_REQUIRE_MOSQUITTO",
        "apt-get install mosquitto mosquitto-clients",
    )
}

/// `Some` when the Mosquitto tools are here (see [`have_mosquitto`]).
fn mosquitto() -> Option<()> {
    have_mosquitto().then_some(())
}

/// A broker and a regd of the test's own, or `None` (skip) without Mosquitto.
fn broker_and_regd() -> Option<(Broker, Daemon)> {
    mosquitto()?;
    Some((Broker::start(), Daemon::start(&[])))
}

/// A fresh temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(kind: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "regd-mqtt-{kind}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A Mosquitto of the test's own, killed and reaped on drop.
struct Broker {
    child: Option<Child>,
    port: u16,
    directory: TempDir,
}

impl Broker {
    fn start() -> Broker {
        Self::with_config("allow_anonymous true\n")
    }

    fn with_config(extra: &str) -> Broker {
        let directory = TempDir::new("broker");
        let port = free_port();
        let config = format!(
            "listener {port} 127.0.0.1\npersistence false\nuser root\nlog_dest file {}\n{extra}",
            directory.file("mosquitto.log")
        );
        std::fs::write(directory.file("mosquitto.conf"), config).unwrap();
        let mut broker = Broker {
            child: None,
            port,
            directory,
        };
        broker.launch();
        broker
    }

    fn launch(&mut self) {
        let child = Command::new("mosquitto")
            .args(["-c", &self.directory.file("mosquitto.conf")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let port = self.port;
        wait_until("mosquitto listening", || {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mosquitto exited with {status}: {}", self.log());
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// `kill -9`, then reaped.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A new broker process on the same port, with nothing retained.
    fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.directory.file("mosquitto.log")).unwrap_or_default()
    }

    /// `mosquitto_pub` with these arguments, which must succeed.
    fn publish(&self, args: &[&str]) {
        let output = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-V",
                "mqttv311",
            ])
            .args(args)
            .output()
            .expect("run mosquitto_pub");
        assert!(
            output.status.success(),
            "mosquitto_pub {args:?}: {output:?}"
        );
    }

    /// What the broker retains under `filter` now: topic → (payload, QoS). A marker
    /// published (QoS 1) after subscribing arrives after every retained message.
    fn retained(&self, filter: &str) -> BTreeMap<String, (String, u8)> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let marker = format!(
            "test/marker/{}/{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let subscriber = Subscriber::start(self, &[filter, &marker]);
        // QoS 1, like the retained messages: a QoS 0 message would overtake those that
        // wait behind Mosquitto's in-flight window.
        self.publish(&["-q", "1", "-t", &marker, "-m", "end"]);
        subscriber.wait_for(&format!("marker {marker}"), |messages| {
            messages.iter().any(|m| m.topic == marker)
        });
        subscriber
            .messages()
            .into_iter()
            .take_while(|message| message.topic != marker)
            .filter(|message| message.retain && message.topic != marker)
            .map(|message| (message.topic, (message.payload, message.qos)))
            .collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!("--- mosquitto log ---\n{}", self.log());
        }
    }
}

/// One message as mosquitto_sub printed it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Message {
    retain: bool,
    qos: u8,
    topic: String,
    payload: String,
}

/// A running `mosquitto_sub` (QoS 1), collecting messages; killed on drop.
struct Subscriber {
    child: Child,
    messages: Arc<Mutex<Vec<Message>>>,
    subscribed: Arc<Mutex<bool>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Subscriber {
    /// Subscribes and waits for the SUBACK.
    fn start(broker: &Broker, filters: &[&str]) -> Subscriber {
        // Line-buffered, so the SUBACK and each message are seen as they happen.
        let mut command = Command::new("stdbuf");
        command.args(["-oL", "mosquitto_sub"]);
        command.args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port.to_string(),
            "-V",
            "mqttv311",
            "-q",
            "1",
            "-d",
        ]);
        for filter in filters {
            command.args(["-t", filter]);
        }
        let mut child = command
            .args(["-F", "MSG\t%r\t%q\t%t\t%p"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto_sub");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let subscribed = Arc::new(Mutex::new(false));
        let reader = {
            let stdout = child.stdout.take().unwrap();
            let (messages, subscribed) = (messages.clone(), subscribed.clone());
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("received SUBACK") {
                        *subscribed.lock().unwrap() = true;
                    }
                    if let Some(rest) = line.strip_prefix("MSG\t") {
                        let mut fields = rest.splitn(4, '\t');
                        let (Some(retain), Some(qos), Some(topic), Some(payload)) =
                            (fields.next(), fields.next(), fields.next(), fields.next())
                        else {
                            continue;
                        };
                        messages.lock().unwrap().push(Message {
                            retain: retain == "1",
                            qos: qos.parse().unwrap_or(9),
                            topic: topic.to_string(),
                            payload: payload.to_string(),
                        });
                    }
                }
            })
        };
        let subscriber = Subscriber {
            child,
            messages,
            subscribed,
            reader: Some(reader),
        };
        wait_until("mosquitto_sub subscribed", || {
            *subscriber.subscribed.lock().unwrap()
        });
        subscriber
    }

    fn messages(&self) -> Vec<Message> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until the messages so far satisfy `condition`.
    fn wait_for(&self, what: &str, condition: impl Fn(&[Message]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let messages = self.messages();
            if condition(&messages) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; got {messages:#?}"
            );
            thread::sleep(Duration::from_millis(5)); // sleep-ok: polling a deadline
        }
    }

    /// The last payload seen on `topic`.
    fn last(&self, topic: &str) -> Option<String> {
        self.messages()
            .into_iter()
            .rev()
            .find(|message| message.topic == topic)
            .map(|message| message.payload)
    }

    fn wait_last(&self, topic: &str, payload: &str) {
        self.wait_for(&format!("{topic} = {payload:?}"), |messages| {
            messages
                .iter()
                .rev()
                .find(|message| message.topic == topic)
                .is_some_and(|message| message.payload == payload)
        });
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// A running `regd-mqtt`, killed and reaped on drop (stderr printed if the test failed).
struct Bridge {
    child: Option<Child>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Bridge {
    /// Starts a bridge for `regd` and `broker` and waits until it is connected.
    fn start(regd: &Daemon, broker: &Broker, args: &[&str]) -> Bridge {
        let bridge = Self::spawn(&regd.url(), &broker.url(), args, &[]);
        bridge.wait_connects(1);
        bridge
    }

    fn spawn(registry: &str, broker: &str, args: &[&str], env: &[(&str, &str)]) -> Bridge {
        let mut command = program(env!("CARGO_BIN_EXE_regd-mqtt"));
        command
            .args([
                "--registry",
                registry,
                "--broker",
                broker,
                "--keepalive",
                "5s",
            ])
            .args(args)
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("REGISTRY")
            .env("REGD_MQTT_LOG_LEVEL", "info");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start regd-mqtt");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut threads = Vec::new();
        {
            let pipe = child.stdout.take().unwrap();
            let stdout = stdout.clone();
            threads.push(thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    stdout.lock().unwrap().push(line);
                }
            }));
        }
        {
            let pipe = child.stderr.take().unwrap();
            let stderr = stderr.clone();
            threads.push(thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut stderr = stderr.lock().unwrap();
                    stderr.push_str(&line);
                    stderr.push('\n');
                }
            }));
        }
        Bridge {
            child: Some(child),
            stdout,
            stderr,
            threads,
        }
    }

    fn connects(&self) -> usize {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.starts_with("connected to mqtt://"))
            .count()
    }

    fn wait_connects(&self, count: usize) {
        wait_until(&format!("{count} broker connections"), || {
            self.connects() >= count
        });
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn wait_for_log(&self, text: &str) {
        wait_until(&format!("bridge log line containing {text:?}"), || {
            self.stderr().contains(text)
        });
    }

    fn signal(&self, name: &str) {
        send_signal(self.child.as_ref().expect("running").id(), name);
    }

    /// Waits for the bridge to exit; then its stdout and stderr are complete.
    fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = wait_exit_within_patience(&mut child, "regd-mqtt");
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        status
    }

    fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().unwrap().is_none())
    }

    /// The bridge's threads, from /proc.
    fn threads(&self) -> Vec<String> {
        let pid = self.child.as_ref().unwrap().id();
        let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_string())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if thread::panicking() {
            eprintln!("--- regd-mqtt stderr ---\n{}", self.stderr());
        }
    }
}

fn put(regd: &Daemon, body: &str) {
    let reply = regd.put("/provider", body);
    assert_eq!(reply.status, 204, "{reply:?}");
}

fn publish_one(regd: &Daemon, name: &str, value: &str, ttl: &str) {
    put(
        regd,
        &format!(
            "{{\"registers\":{{{}:{{\"value\":{value},\"ttl\":\"{ttl}\"}}}}}}",
            serde_json::to_string(name).unwrap()
        ),
    );
}

fn values(regd: &Daemon) -> serde_json::Value {
    regd.get("/consumer").json()["registers"].clone()
}

#[test]
fn registers_become_retained_topics_with_their_exact_json() {
    let Some((broker, regd)) = broker_and_regd() else {
        return;
    };
    put(
        &regd,
        r#"{"registers":{
            "hall.temperature":{"value":21.5,"metadata":{"unit":"°C"},"ttl":"60s"},
            "hall.lamp":{"value":true,"ttl":"60s"},
            "door":{"value":"closed","ttl":"60s"},
            "obj":{"value":{"a":1,"b":[1.50,"x"]},"ttl":"60s"},
            "nothing":{"value":null,"ttl":"60s"},
            "a/b":{"value":1,"ttl":"60s"},
            "a.b":{"value":2,"ttl":"60s"},
            "x.set":{"value":3,"ttl":"60s"},
            "x.availability":{"value":4,"ttl":"60s"},
            "bridge.state":{"value":5,"ttl":"60s"},
            "wild+card#":{"value":6,"ttl":"60s"},
            "$SYS.fake":{"value":7,"ttl":"60s"},
            "ctl\u0001\u0000":{"value":8,"ttl":"60s"},
            "empty..level":{"value":9,"ttl":"60s"},
            "":{"value":10,"ttl":"60s"},
            "Küche 50%":{"value":11,"ttl":"60s"}
        }}"#,
    );
    let bridge = Bridge::start(&regd, &broker, &["--prefix", "regd/gw"]);
    let expected = [
        ("regd/gw/hall/temperature", "21.5"),
        ("regd/gw/hall/temperature/metadata", "{\"unit\":\"°C\"}"),
        ("regd/gw/hall/temperature/availability", "online"),
        ("regd/gw/hall/lamp", "true"),
        ("regd/gw/door", "\"closed\""),
        ("regd/gw/obj", "{\"a\":1,\"b\":[1.50,\"x\"]}"),
        ("regd/gw/nothing", "null"),
        ("regd/gw/a%2Fb", "1"),
        ("regd/gw/a/b", "2"),
        ("regd/gw/x/%73et", "3"),
        ("regd/gw/x/%61vailability", "4"),
        ("regd/gw/%62ridge/state", "5"),
        ("regd/gw/wild%2Bcard%23", "6"),
        ("regd/gw/$SYS/fake", "7"),
        ("regd/gw/ctl%01%00", "8"),
        ("regd/gw/empty/%/level", "9"),
        ("regd/gw/%", "10"),
        ("regd/gw/Küche 50%25", "11"),
        ("regd/gw/bridge/state", "online"),
    ];
    let mut retained = BTreeMap::new();
    let deadline = Instant::now() + PATIENCE;
    while !expected
        .iter()
        .all(|(topic, _)| retained.contains_key(*topic))
    {
        assert!(
            Instant::now() < deadline,
            "not every register retained: {retained:#?}"
        );
        retained = broker.retained("regd/gw/#");
    }
    for (topic, payload) in expected {
        assert_eq!(retained[topic], (payload.to_string(), 1), "{topic}");
    }
    // Registers without metadata have no metadata topic; none of the escaped names
    // landed on a topic of another register or of the bridge.
    assert!(!retained.contains_key("regd/gw/door/metadata"));
    assert!(!retained.contains_key("regd/gw/x/set"));
    assert_eq!(
        retained
            .keys()
            .filter(|topic| topic.ends_with("/availability"))
            .count(),
        16
    );

    // A change, an expiry and a delete, seen live.
    let subscriber = Subscriber::start(&broker, &["regd/gw/#"]);
    publish_one(&regd, "door", "\"open\"", "60s");
    subscriber.wait_last("regd/gw/door", "\"open\"");
    publish_one(&regd, "short", "1", "300ms");
    subscriber.wait_last("regd/gw/short/availability", "online");
    subscriber.wait_last("regd/gw/short/availability", "offline");
    assert_eq!(subscriber.last("regd/gw/short").as_deref(), Some(""));
    assert_eq!(
        regd.request("DELETE", "/provider?name=hall.temperature", "")
            .status,
        204
    );
    subscriber.wait_last("regd/gw/hall/temperature/availability", "offline");
    let retained = broker.retained("regd/gw/#");
    assert!(
        !retained.contains_key("regd/gw/hall/temperature"),
        "state cleared: {retained:?}"
    );
    assert!(!retained.contains_key("regd/gw/hall/temperature/metadata"));
    assert!(!retained.contains_key("regd/gw/short"));
    assert_eq!(retained["regd/gw/short/availability"].0, "offline");
    assert_eq!(retained["regd/gw/door"].0, "\"open\"");

    // The threads are named (Linux keeps 15 bytes of a name) and few.
    let threads = bridge.threads();
    for name in [
        "regd-mqtt-session",
        "regd-mqtt-writer",
        "regd-mqtt-export",
        "regd-mqtt-inbound",
    ] {
        assert!(
            threads.iter().any(|thread| *thread == name[..15]),
            "{name} in {threads:?}"
        );
    }
    assert!(threads.len() <= 12, "{threads:?}");
}

#[test]
fn set_and_get_topics_reach_regd() {
    let Some((broker, regd)) = broker_and_regd() else {
        return;
    };
    publish_one(&regd, "lamp", "false", "60s");
    publish_one(&regd, "mode", "\"auto\"", "60s");
    // A retained change request, published before the bridge came: the broker hands
    // it to every new subscription, but it is no request of now.
    broker.publish(&["-r", "-q", "1", "-t", "regd/gw/mode/set", "-m", "\"stale\""]);
    let bridge = Bridge::start(&regd, &broker, &["--prefix", "regd/gw"]);
    bridge.wait_for_log("ignoring the retained message on \"regd/gw/mode/set\"");
    assert_eq!(regd.get("/provider?name=mode").body, r#"{"registers":{}}"#);
    let pending = |name: &str| {
        regd.get(&format!("/provider?name={}", encode(name))).json()["registers"][name]["value"]
            .clone()
    };
    // JSON payloads are the value; ON/OFF for a boolean register are booleans.
    for (name, topic, payload, expected) in [
        ("lamp", "regd/gw/lamp/set", "true", serde_json::json!(true)),
        ("lamp", "regd/gw/lamp/set", "ON", serde_json::json!(true)),
        ("lamp", "regd/gw/lamp/set", "off", serde_json::json!(false)),
        ("mode", "regd/gw/mode/set", "ON", serde_json::json!("ON")),
        (
            "mode",
            "regd/gw/mode/set",
            "{\"level\":2}",
            serde_json::json!({"level": 2}),
        ),
        (
            "mode",
            "regd/gw/mode/set",
            "heat now",
            serde_json::json!("heat now"),
        ),
        // A name regd does not have yet (docs/protocol.md A8), and an escaped one.
        (
            "new.one",
            "regd/gw/new/one/set",
            "42",
            serde_json::json!(42),
        ),
        ("x.set", "regd/gw/x/%73et/set", "1", serde_json::json!(1)),
    ] {
        broker.publish(&["-q", "1", "-t", topic, "-m", payload]);
        let mut got = serde_json::Value::Null;
        wait_until(&format!("change request {name} = {expected}"), || {
            got = pending(name);
            got == expected
        });
    }
    // A topic no register name maps to is ignored, and said so.
    broker.publish(&["-q", "1", "-t", "regd/gw/a.b/set", "-m", "1"]);
    bridge.wait_for_log("ignoring \"regd/gw/a.b/set\": no register name maps to it");
    // `get` republishes the current state.
    let subscriber = Subscriber::start(&broker, &["regd/gw/lamp"]);
    subscriber.wait_for("retained lamp", |messages| {
        messages.iter().any(|m| m.retain && m.payload == "false")
    });
    broker.publish(&["-t", "regd/gw/lamp/get", "-m", ""]);
    subscriber.wait_for("lamp republished", |messages| {
        messages.iter().any(|m| !m.retain && m.payload == "false")
    });
}

#[test]
fn bridge_state_is_online_then_offline_on_shutdown_or_by_the_will() {
    let Some((broker, regd)) = broker_and_regd() else {
        return;
    };
    let mut bridge = Bridge::start(&regd, &broker, &["--prefix", "regd/one"]);
    assert_eq!(
        broker.retained("regd/one/bridge/state")["regd/one/bridge/state"],
        ("online".to_string(), 1)
    );
    let watcher = Subscriber::start(&broker, &["regd/one/bridge/state"]);
    bridge.signal("TERM");
    assert!(bridge.wait_exit().success());
    assert_eq!(
        broker.retained("regd/one/bridge/state")["regd/one/bridge/state"].0,
        "offline"
    );
    assert!(bridge.stderr().contains("SIGTERM received"));
    // A clean stop ends with DISCONNECT, so the broker drops the will: `offline` comes
    // once, from the bridge. (The marker is published after the bridge has gone.)
    broker.publish(&["-t", "regd/one/bridge/state", "-m", "marker"]);
    watcher.wait_for("the marker", |messages| {
        messages.iter().any(|m| m.payload == "marker")
    });
    let seen = watcher.messages();
    let offline = seen.iter().filter(|m| !m.retain && m.payload == "offline");
    assert_eq!(offline.count(), 1, "{seen:?}");
    assert!(!bridge.stderr().contains("closed the connection"));

    // kill -9: the broker publishes the last will.
    let bridge = Bridge::start(&regd, &broker, &["--prefix", "regd/one"]);
    assert_eq!(
        broker.retained("regd/one/bridge/state")["regd/one/bridge/state"].0,
        "online"
    );
    let subscriber = Subscriber::start(&broker, &["regd/one/bridge/state"]);
    drop(bridge);
    subscriber.wait_for("the will", |messages| {
        messages.iter().any(|m| !m.retain && m.payload == "offline")
    });

    // Two bridges on one host with different prefixes keep their own sessions.
    let a = Bridge::start(&regd, &broker, &["--prefix", "regd/a"]);
    let b = Bridge::start(&regd, &broker, &["--prefix", "regd/b"]);
    publish_one(&regd, "shared", "1", "60s");
    wait_until("both bridges publish", || {
        let retained = broker.retained("regd/+/shared");
        retained.contains_key("regd/a/shared") && retained.contains_key("regd/b/shared")
    });
    assert_eq!(
        (a.connects(), b.connects()),
        (1, 1),
        "a session was taken over"
    );
}

#[test]
fn home_assistant_discovery() {
    let Some((broker, regd)) = broker_and_regd() else {
        return;
    };
    put(
        &regd,
        r#"{"registers":{
            "hall.temperature":{"value":21.5,"metadata":{"unit":"°C","device_class":"temperature"},"ttl":"60s"},
            "hall.lamp":{"value":false,"metadata":{"writable":true},"ttl":"60s"},
            "window":{"value":true,"ttl":"60s"},
            "setpoint":{"value":20,"metadata":{"writable":true,"min":5,"max":30},"ttl":"60s"},
            "label":{"value":"hi","metadata":{"writable":true},"ttl":"60s"},
            "brief":{"value":1,"ttl":"60s"}
        }}"#,
    );
    // Another integration's entity under the same components: never the bridge's to
    // clean up.
    let foreign = "homeassistant/sensor/0x00158d0001_temperature/config";
    broker.publish(&[
        "-r",
        "-q",
        "1",
        "-t",
        foreign,
        "-m",
        r#"{"state_topic":"z2m/x"}"#,
    ]);
    let _bridge = Bridge::start(
        &regd,
        &broker,
        &[
            "--prefix",
            "regd/gw",
            "--gateway-id",
            "gw",
            "--discovery",
            "homeassistant",
            "--discovery-remove-after",
            "1s",
        ],
    );
    let configs = |broker: &Broker| {
        let mut retained = broker.retained("homeassistant/#");
        assert!(retained.remove(foreign).is_some(), "{foreign} is gone");
        retained
    };
    let mut retained = BTreeMap::new();
    wait_until("six discovery configs", || {
        retained = configs(&broker);
        retained.len() == 6
    });
    let config =
        |topic: &str| -> serde_json::Value { serde_json::from_str(&retained[topic].0).unwrap() };
    let sensor = config("homeassistant/sensor/regd--regd-2fgw--hall_temperature/config");
    assert_eq!(sensor["state_topic"], "regd/gw/hall/temperature");
    assert_eq!(sensor["unit_of_measurement"], "°C");
    assert_eq!(sensor["device_class"], "temperature");
    assert_eq!(sensor["unique_id"], "regd--regd-2fgw--hall_temperature");
    // Home Assistant's form for an entity with a unique id: the object id is the
    // unique id, no node level; the entity id comes from default_entity_id.
    assert!(
        retained
            .keys()
            .all(|topic| topic.split('/').count() == 4 && topic.ends_with("/config")),
        "{retained:#?}"
    );
    assert_eq!(
        sensor["default_entity_id"],
        "sensor.regd_gw_hall_temperature"
    );
    assert_eq!(
        sensor["availability"][0]["topic"],
        "regd/gw/hall/temperature/availability"
    );
    assert_eq!(sensor["device"]["identifiers"][0], "regd--regd-2fgw");
    assert!(sensor.get("command_topic").is_none());
    let switch = config("homeassistant/switch/regd--regd-2fgw--hall_lamp/config");
    assert_eq!(switch["command_topic"], "regd/gw/hall/lamp/set");
    assert!(retained.contains_key("homeassistant/binary_sensor/regd--regd-2fgw--window/config"));
    assert_eq!(
        config("homeassistant/number/regd--regd-2fgw--setpoint/config")["max"],
        30
    );
    assert!(retained.contains_key("homeassistant/text/regd--regd-2fgw--label/config"));

    // Home Assistant's switch sends payload_on; it arrives in regd as true.
    broker.publish(&[
        "-q",
        "1",
        "-t",
        "regd/gw/hall/lamp/set",
        "-m",
        switch["payload_on"].as_str().unwrap(),
    ]);
    wait_until("lamp request true", || {
        regd.get("/provider?name=hall.lamp").json()["registers"]["hall.lamp"]["value"]
            == serde_json::json!(true)
    });

    // homeassistant/status online: every config again.
    let subscriber = Subscriber::start(&broker, &["homeassistant/+/+/config"]);
    subscriber.wait_for("retained configs", |messages| messages.len() >= 6);
    broker.publish(&["-t", "homeassistant/status", "-m", "online"]);
    subscriber.wait_for("configs re-sent", |messages| {
        messages.iter().filter(|m| !m.retain).count() >= 6
    });

    // A register gone for good (past --discovery-remove-after): its entity goes.
    regd.request("DELETE", "/provider?name=brief", "");
    subscriber.wait_last("homeassistant/sensor/regd--regd-2fgw--brief/config", "");
    wait_until("brief's config removed", || {
        !configs(&broker).contains_key("homeassistant/sensor/regd--regd-2fgw--brief/config")
    });
    assert_eq!(configs(&broker).len(), 5);

    // A second bridge on the same host (the same gateway id) with its own prefix has
    // entities of its own: neither overwrites the other's.
    let _second = Bridge::start(
        &regd,
        &broker,
        &[
            "--prefix",
            "regd/gw2",
            "--gateway-id",
            "gw",
            "--discovery",
            "homeassistant",
        ],
    );
    let state_topic = |retained: &BTreeMap<String, (String, u8)>, topic: &str| {
        retained.get(topic).map(|(payload, _)| {
            serde_json::from_str::<serde_json::Value>(payload).unwrap()["state_topic"].clone()
        })
    };
    wait_until("the second bridge's entities", || {
        let retained = configs(&broker);
        state_topic(
            &retained,
            "homeassistant/sensor/regd--regd-2fgw2--hall_temperature/config",
        ) == Some(serde_json::json!("regd/gw2/hall/temperature"))
            && state_topic(
                &retained,
                "homeassistant/sensor/regd--regd-2fgw--hall_temperature/config",
            ) == Some(serde_json::json!("regd/gw/hall/temperature"))
    });
}

#[test]
fn broker_killed_and_restarted() {
    let Some((mut broker, regd)) = broker_and_regd() else {
        return;
    };
    publish_one(&regd, "temp", "20", "60s");
    publish_one(&regd, "lamp", "false", "60s");
    let bridge = Bridge::start(&regd, &broker, &["--prefix", "regd/gw"]);
    wait_until("temp retained", || {
        broker.retained("regd/gw/temp").contains_key("regd/gw/temp")
    });

    broker.kill();
    // Changes while the broker is away; no change request can be made meanwhile.
    publish_one(&regd, "temp", "21", "60s");
    let down_at = Instant::now();
    broker.restart();
    let restarted_at = Instant::now();
    bridge.wait_connects(2);
    let back_after = restarted_at.elapsed();
    assert!(
        back_after < Duration::from_secs(30),
        "back after {back_after:?}"
    );
    eprintln!(
        "bridge back {back_after:?} after the broker restart ({:?} after the kill)",
        down_at.elapsed()
    );
    // Everything retained again, with the latest value, on a broker that kept nothing.
    wait_until("state republished", || {
        let retained = broker.retained("regd/gw/#");
        retained
            .get("regd/gw/temp")
            .map(|(payload, _)| payload.as_str())
            == Some("21")
            && retained.contains_key("regd/gw/lamp/availability")
            && retained
                .get("regd/gw/bridge/state")
                .map(|(payload, _)| payload.as_str())
                == Some("online")
    });
    // No change request was invented, and one sent now is delivered.
    assert_eq!(regd.get("/provider?name=lamp").body, r#"{"registers":{}}"#);
    broker.publish(&["-q", "1", "-t", "regd/gw/lamp/set", "-m", "true"]);
    wait_until("change request after the restart", || {
        regd.get("/provider?name=lamp").body == r#"{"registers":{"lamp":{"value":true}}}"#
    });
    wait_until("the lost connection said on stderr", || {
        let log = bridge.stderr();
        log.contains("reconnecting") || log.contains("no connection to the broker")
    });
}

#[test]
fn regd_restart_converges_within_a_second() {
    let Some((broker, regd)) = broker_and_regd() else {
        return;
    };
    let address = regd.address;
    publish_one(&regd, "stays", "1", "60s");
    publish_one(&regd, "vanishes", "1", "60s");
    let bridge = Bridge::start(&regd, &broker, &["--prefix", "regd/gw"]);
    let subscriber = Subscriber::start(&broker, &["regd/gw/#"]);
    subscriber.wait_last("regd/gw/vanishes/availability", "online");
    drop(regd);
    // Down long enough for the retries to reach their longest pause, as a regd that
    // restarts under systemd and reads its state back is.
    let down_at = Instant::now();
    bridge.wait_for_log("cannot follow regd's registers");
    wait_until("regd down for 4 s", || {
        down_at.elapsed() > Duration::from_secs(4)
    });
    let regd = Daemon::start(&["--addr", &address.to_string()]);
    let answering = Instant::now();
    publish_one(&regd, "stays", "2", "60s");
    subscriber.wait_last("regd/gw/stays", "2");
    subscriber.wait_last("regd/gw/vanishes/availability", "offline");
    let converged = answering.elapsed();
    assert!(
        converged < Duration::from_secs(1),
        "converged after {converged:?}"
    );
    eprintln!("state converged {converged:?} after regd answered again");
    assert!(bridge.stderr().contains("regd answers again"));
}

#[test]
fn a_burst_is_coalesced_and_the_last_value_arrives() {
    let Some((broker, regd)) = broker_and_regd() else {
        return;
    };
    let _bridge = Bridge::start(&regd, &broker, &["--prefix", "regd/gw"]);
    let subscriber = Subscriber::start(&broker, &["regd/gw/burst/+"]);
    // 1,000 changes a second for two seconds over ten registers, from one keep-alive
    // connection, paced by the clock.
    let mut connection = regd.connect();
    let started = Instant::now();
    let changes = 2000;
    for change in 0..changes {
        let body = format!(
            "{{\"registers\":{{\"burst.r{}\":{{\"value\":{change},\"ttl\":\"60s\"}}}}}}",
            change % 10
        );
        assert_eq!(connection.request("PUT", "/provider", &body).status, 204);
        let due = started + Duration::from_millis(change as u64);
        if let Some(pause) = due.checked_duration_since(Instant::now()) {
            thread::sleep(pause); // sleep-ok: pacing the load at 1,000 changes/s, not waiting for a result
        }
    }
    let rate = changes as f64 / started.elapsed().as_secs_f64();
    for register in 0..10 {
        let last = changes - 10 + register;
        subscriber.wait_last(&format!("regd/gw/burst/r{register}"), &last.to_string());
    }
    let delivered = subscriber.messages().len();
    eprintln!("{changes} changes at {rate:.0}/s: {delivered} MQTT messages");
    assert!(
        delivered <= changes + 20,
        "more messages than changes: {delivered}"
    );
}

#[test]
fn faults_are_logged_and_the_bridge_goes_on() {
    let Some(_) = mosquitto() else {
        return;
    };
    // Oversized payloads: skipped with a warning; later messages still imported.
    let broker = Broker::start();
    let regd = Daemon::start(&["--max-body", "4096"]);
    let bridge = Bridge::start(
        &regd,
        &broker,
        &[
            "--prefix",
            "regd/gw",
            "--import",
            "ext/#",
            "--max-payload",
            "2000",
        ],
    );
    let big = "x".repeat(3000);
    broker.publish(&["-q", "1", "-t", "ext/big", "-m", &big]);
    // Fits the bridge's limit but not regd's body limit once wrapped: regd answers 413.
    let medium = format!("\"{}\"", "y".repeat(1900));
    let regd_limited = Daemon::start(&["--max-body", "1000"]);
    let limited = Bridge::start(
        &regd_limited,
        &broker,
        &[
            "--prefix",
            "regd/lim",
            "--import",
            "ext/#",
            "--max-payload",
            "2000",
        ],
    );
    broker.publish(&["-q", "1", "-t", "ext/medium", "-m", &medium]);
    broker.publish(&["-q", "1", "-t", "ext/small", "-m", "5"]);
    wait_until("small imported", || {
        values(&regd)["ext.small"]["value"] == serde_json::json!(5)
    });
    bridge.wait_for_log("-byte message on \"ext/big\": larger than --max-payload (2000 bytes)");
    assert!(values(&regd).get("ext.big").is_none());
    limited.wait_for_log("larger than regd's --max-body");
    // A flood of them is one line per interval, not one per message.
    for _ in 0..20 {
        broker.publish(&["-t", "ext/big", "-m", &big]);
    }
    broker.publish(&["-q", "1", "-t", "ext/small", "-m", "6"]);
    wait_until("small updated", || {
        values(&regd)["ext.small"]["value"] == serde_json::json!(6)
    });
    assert_eq!(
        bridge.stderr().matches("larger than --max-payload").count(),
        1,
        "{}",
        bridge.stderr()
    );
    drop((limited, regd_limited));

    // Refused credentials: clear, rate-limited, retried, never fatal.
    let directory = TempDir::new("credentials");
    let passwords = directory.file("passwd");
    let status = Command::new("mosquitto_passwd")
        .args(["-b", "-c", &passwords, "bridge", "right"])
        .status()
        .unwrap();
    assert!(status.success());
    let guarded = Broker::with_config(&format!(
        "allow_anonymous false\npassword_file {passwords}\n"
    ));
    let with_password = |file: &str| {
        Bridge::spawn(
            &regd.url(),
            &guarded.url(),
            &["--username", "bridge", "--password-file", file],
            &[],
        )
    };
    let wrong = directory.file("wrong");
    std::fs::write(&wrong, "wrong\n").unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut refused = with_password(&wrong);
    refused.wait_for_log("(CONNACK code");
    assert!(
        refused
            .stderr()
            .contains("check --username and --password-file"),
        "{}",
        refused.stderr()
    );
    wait_until("a retry", || {
        guarded.log().matches("New connection from").count() >= 2
    });
    assert!(refused.is_running());
    assert_eq!(refused.connects(), 0);
    assert_eq!(
        refused.stderr().matches("(CONNACK code").count(),
        1,
        "rate-limited: {}",
        refused.stderr()
    );
    drop(refused);
    let right = directory.file("right");
    std::fs::write(&right, "right\n").unwrap();
    std::fs::set_permissions(&right, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let accepted = with_password(&right);
    accepted.wait_connects(1);
    drop(accepted);
    // A password file every user may read (as a plain `echo secret > file` makes it) is
    // taken with a warning naming the fix; a wrong one in it is the broker's to refuse,
    // which the bridge survives as above.
    std::fs::set_permissions(&right, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let readable = with_password(&right);
    readable.wait_connects(1);
    assert!(
        readable
            .stderr()
            .contains("readable by every user (mode 644); run `chmod 600")
    );
    let mut refused = with_password(&wrong);
    refused.wait_for_log("check --username and --password-file");
    assert!(refused.is_running());
}

/// A broker of the test's own that sends, after CONNACK and SUBACK, a message whose
/// topic is not UTF-8 and then a good one (Mosquitto itself refuses such topics, so it
/// cannot be made to deliver one).
#[test]
fn a_topic_that_is_not_utf8_is_skipped_with_a_warning() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let regd = Daemon::start(&[]);
    let bridge = Bridge::spawn(
        &regd.url(),
        &format!("mqtt://127.0.0.1:{port}"),
        &["--prefix", "regd/gw", "--import", "ext/#"],
        &[],
    );
    let (mut stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let read_packet = |stream: &mut TcpStream| {
        let mut first = [0u8; 2];
        stream.read_exact(&mut first).unwrap();
        let mut length = usize::from(first[1] & 0x7f);
        let mut shift = 7;
        let mut byte = first[1];
        while byte & 0x80 != 0 {
            let mut next = [0u8; 1];
            stream.read_exact(&mut next).unwrap();
            byte = next[0];
            length |= usize::from(byte & 0x7f) << shift;
            shift += 7;
        }
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).unwrap();
        (first[0], body)
    };
    assert_eq!(read_packet(&mut stream).0, 0x10, "CONNECT first");
    stream.write_all(&[0x20, 2, 0, 0]).unwrap();
    let (kind, subscribe) = read_packet(&mut stream);
    assert_eq!(kind, 0x82, "SUBSCRIBE");
    stream
        .write_all(&[0x90, 4, subscribe[0], subscribe[1], 1, 1])
        .unwrap();
    // QoS 1, topic "ext/\xff", packet id 7, payload "1"; then "ext/ok" = 2.
    stream
        .write_all(&[0x32, 10, 0, 5, b'e', b'x', b't', b'/', 0xff, 0, 7, b'1'])
        .unwrap();
    stream
        .write_all(&[
            0x32, 11, 0, 6, b'e', b'x', b't', b'/', b'o', b'k', 0, 8, b'2',
        ])
        .unwrap();
    // Both are acknowledged (the bad one too, or the broker would send it again).
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 2 {
        let (kind, body) = read_packet(&mut stream);
        if kind == 0x40 {
            acknowledged.push(body[1]);
        }
    }
    assert_eq!(acknowledged, [7, 8]);
    wait_until("ext.ok imported", || {
        values(&regd)["ext.ok"]["value"] == serde_json::json!(2)
    });
    bridge.wait_for_log("skipped a message whose topic is not UTF-8");
    assert_eq!(values(&regd).as_object().unwrap().len(), 1);
}

/// Gateway B's bridge (prefix `regd/B`), importing gateway A's prefix.
fn gateway_b_importing_a(regd: &Daemon, broker: &Broker, import_ttl: &str) -> Bridge {
    Bridge::start(
        regd,
        broker,
        &[
            "--prefix",
            "regd/B",
            "--import",
            "regd/A/#",
            "--import-ttl",
            import_ttl,
        ],
    )
}

#[test]
fn two_gateways_on_one_broker() {
    let Some((broker, regd_a)) = broker_and_regd() else {
        return;
    };
    let regd_b = Daemon::start(&[]);
    let client_a = regd::client::Client::new(&regd_a.url()).unwrap();
    let provider = client_a.provider();
    provider
        .publish(
            "hall.lamp",
            regd::client::Json::from(false),
            None,
            Duration::from_secs(60),
        )
        .unwrap();
    publish_one(&regd_a, "hall.short", "1", "1500ms");
    put(
        &regd_a,
        r#"{"registers":{"hall.temp":{"value":21.5,"metadata":{"unit":"°C"},"ttl":"60s"},
            "bridge.state":{"value":"offline","ttl":"60s"},
            "x.bridge.state":{"value":"offline","ttl":"60s"}}}"#,
    );
    let a = Bridge::start(
        &regd_a,
        &broker,
        &["--prefix", "regd/A", "--import", "regd/B/#"],
    );
    let _b = gateway_b_importing_a(&regd_b, &broker, "5s");
    // A's registers appear on B, named by their topics, with their metadata and origin.
    wait_until("A's registers on B", || {
        let b = values(&regd_b);
        b["regd.A.hall.lamp"]["value"] == serde_json::json!(false)
            && b["regd.A.hall.temp"]["value"] == serde_json::json!(21.5)
    });
    // Names ending in bridge.state cross too (their topics read back the same from the
    // full topic), and B takes neither for a bridge's last will.
    wait_until("A's bridge.state registers on B", || {
        let b = values(&regd_b);
        b["regd.A.bridge.state"]["value"] == "offline"
            && b["regd.A.x.bridge.state"]["value"] == "offline"
    });
    let b = values(&regd_b);
    assert_eq!(b["regd.A.hall.temp"]["value"], serde_json::json!(21.5));
    assert_eq!(
        b["regd.A.hall.temp"]["metadata"],
        serde_json::json!({"unit": "°C", "mqtt_topic": "regd/A/hall/temp"})
    );
    // A change request on B reaches A's provider, which applies it.
    let client_b = regd::client::Client::new(&regd_b.url()).unwrap();
    client_b
        .request("regd.A.hall.lamp", &regd::client::Json::from(true))
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        match provider
            .events()
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(regd::client::ProviderEvent::Request { name, value }) => {
                assert_eq!((name.as_str(), value.as_str()), ("hall.lamp", "true"));
                provider.update(&name, value).unwrap();
                break;
            }
            Ok(_) => {}
            Err(_) => panic!("the change request never reached A's provider"),
        }
    }
    wait_until("the new value on B", || {
        values(&regd_b)["regd.A.hall.lamp"]["value"] == serde_json::json!(true)
    });
    // A's expiry shows on B as a removal within a second.
    wait_until("hall.short on B", || {
        values(&regd_b).get("regd.A.hall.short").is_some()
    });
    wait_until("hall.short expired on A", || {
        values(&regd_a).get("hall.short").is_none()
    });
    let expired_at = Instant::now();
    wait_until("hall.short removed on B", || {
        values(&regd_b).get("regd.A.hall.short").is_none()
    });
    let lag = expired_at.elapsed();
    eprintln!("A's expiry reached B after {lag:?}");
    assert!(lag < Duration::from_secs(1), "removal on B took {lag:?}");
    // No loops: B does not export what it imported, and A imports nothing back.
    let retained = broker.retained("#");
    assert!(
        retained
            .keys()
            .all(|topic| !topic.starts_with("regd/B/regd")),
        "{retained:#?}"
    );
    assert!(
        values(&regd_a)
            .as_object()
            .unwrap()
            .keys()
            .all(|name| !name.starts_with("regd."))
    );
    // A's bridge dies (kill -9): its last will takes A's registers off B at once.
    drop(a);
    wait_until("A's registers gone from B", || {
        values(&regd_b).as_object().unwrap().is_empty()
    });
}

#[test]
fn many_registers_cross_between_gateways() {
    // More than one PUT may carry (regd's --max-names) and more than one request
    // poll's URL holds (--max-uri), plus a topic whose name regd refuses (longer than
    // its --max-name): everything else crosses, stays, and takes change requests.
    let Some((broker, regd_a)) = broker_and_regd() else {
        return;
    };
    let regd_b = Daemon::start(&[]);
    for part in 0..3 {
        let registers: Vec<String> = (part * 500..(part + 1) * 500)
            .map(|index| {
                format!("\"hall.sensor.{index:04}\":{{\"value\":{index},\"ttl\":\"60s\"}}")
            })
            .collect();
        put(
            &regd_a,
            &format!("{{\"registers\":{{{}}}}}", registers.join(",")),
        );
    }
    let _a = Bridge::start(&regd_a, &broker, &["--prefix", "regd/A"]);
    wait_until("A's registers retained", || {
        broker
            .retained("regd/A/hall/sensor/1499")
            .contains_key("regd/A/hall/sensor/1499")
    });
    let refused = format!("regd/A/{}", "y".repeat(1100));
    broker.publish(&["-r", "-q", "1", "-t", &refused, "-m", "1"]);
    let b = gateway_b_importing_a(&regd_b, &broker, "2s");
    let imported = || {
        values(&regd_b)
            .as_object()
            .unwrap()
            .keys()
            .filter(|name| name.starts_with("regd.A.hall.sensor."))
            .count()
    };
    wait_until("A's 1,500 registers on B", || imported() == 1500);
    b.wait_for_log("regd refused one of");
    // Refreshed while connected: all still there after two import ttls.
    let started = Instant::now();
    wait_until("two import ttls", || {
        started.elapsed() > Duration::from_secs(4)
    });
    assert_eq!(imported(), 1500);
    // A change request on B for one of them reaches A as a change request.
    regd_b.put(
        "/consumer",
        r#"{"registers":{"regd.A.hall.sensor.1499":{"value":7}}}"#,
    );
    wait_until("the request on A", || {
        regd_a.get("/provider?name=hall.sensor.1499").body
            == r#"{"registers":{"hall.sensor.1499":{"value":7}}}"#
    });
}

#[test]
fn imported_registers_expire_when_the_broker_goes_away() {
    let Some((mut broker, regd)) = broker_and_regd() else {
        return;
    };
    let bridge = Bridge::start(
        &regd,
        &broker,
        &[
            "--prefix",
            "regd/gw",
            "--import",
            "zigbee2mqtt/#",
            "--import-ttl",
            "2s",
        ],
    );
    broker.publish(&[
        "-r",
        "-q",
        "1",
        "-t",
        "zigbee2mqtt/lamp",
        "-m",
        "{\"state\":\"ON\"}",
    ]);
    broker.publish(&["-r", "-q", "1", "-t", "zigbee2mqtt/plug", "-m", "ON"]);
    wait_until("imported", || {
        let values = values(&regd);
        values["zigbee2mqtt.lamp"]["value"] == serde_json::json!({"state": "ON"})
            && values["zigbee2mqtt.plug"]["value"] == "ON"
    });
    // Imported registers are refreshed while connected (longer than their ttl)...
    let imported_at = Instant::now();
    wait_until("three ttls", || {
        imported_at.elapsed() > Duration::from_secs(5)
    });
    assert!(
        values(&regd).get("zigbee2mqtt.lamp").is_some(),
        "expired while connected"
    );
    // ... and not exported again (no loop through the bridge's own prefix).
    assert!(
        broker
            .retained("regd/gw/#")
            .keys()
            .all(|topic| !topic.contains("zigbee2mqtt"))
    );
    // Change requests for them go to <topic>/set, zigbee2mqtt's command topic.
    let subscriber = Subscriber::start(&broker, &["zigbee2mqtt/lamp/set"]);
    regd.put(
        "/consumer",
        r#"{"registers":{"zigbee2mqtt.lamp":{"value":{"state":"OFF"}}}}"#,
    );
    subscriber.wait_last("zigbee2mqtt/lamp/set", "{\"state\":\"OFF\"}");
    assert_eq!(subscriber.messages()[0].qos, 1);
    drop(subscriber);
    // The broker goes away: they expire (not at once: a dead provider's registers).
    broker.kill();
    let killed_at = Instant::now();
    wait_until("imports expired", || {
        values(&regd).get("zigbee2mqtt.lamp").is_none()
    });
    let expired_after = killed_at.elapsed();
    eprintln!("imported registers expired {expired_after:?} after the broker died");
    // The broker returns without them (nothing persisted): they stay away.
    broker.restart();
    bridge.wait_connects(2);
    broker.publish(&["-q", "1", "-t", "zigbee2mqtt/other", "-m", "1"]);
    wait_until("a fresh import", || {
        values(&regd).get("zigbee2mqtt.other").is_some()
    });
    assert!(values(&regd).get("zigbee2mqtt.lamp").is_none());
    // Availability offline and an empty retained state remove them at once.
    broker.publish(&[
        "-q",
        "1",
        "-t",
        "zigbee2mqtt/other/availability",
        "-m",
        "offline",
    ]);
    wait_until("removed by availability", || {
        values(&regd).get("zigbee2mqtt.other").is_none()
    });
    broker.publish(&["-q", "1", "-t", "zigbee2mqtt/third", "-m", "3"]);
    wait_until("third", || values(&regd).get("zigbee2mqtt.third").is_some());
    broker.publish(&["-r", "-q", "1", "-t", "zigbee2mqtt/third", "-n"]);
    wait_until("removed by an empty payload", || {
        values(&regd).get("zigbee2mqtt.third").is_none()
    });
    // A topic no name maps to is named in a warning.
    broker.publish(&["-q", "1", "-t", "zigbee2mqtt/a.b", "-m", "1"]);
    bridge.wait_for_log("not importing \"zigbee2mqtt/a.b\"");
}

#[test]
fn stale_retained_topics_are_cleared_when_the_bridge_returns() {
    let Some((broker, regd)) = broker_and_regd() else {
        return;
    };
    publish_one(&regd, "stays", "1", "60s");
    publish_one(&regd, "leaves", "1", "1s");
    let bridge = Bridge::start(&regd, &broker, &["--prefix", "regd/gw"]);
    wait_until("leaves retained", || {
        broker
            .retained("regd/gw/leaves")
            .contains_key("regd/gw/leaves")
    });
    // kill -9 the bridge; the register expires while no bridge looks.
    drop(bridge);
    wait_until("leaves expired", || values(&regd).get("leaves").is_none());
    assert!(
        broker
            .retained("regd/gw/leaves")
            .contains_key("regd/gw/leaves"),
        "stale copy still there"
    );
    let _bridge = Bridge::start(&regd, &broker, &["--prefix", "regd/gw"]);
    wait_until("stale copy cleared", || {
        let retained = broker.retained("regd/gw/#");
        !retained.contains_key("regd/gw/leaves")
            && retained
                .get("regd/gw/leaves/availability")
                .map(|(payload, _)| payload.as_str())
                == Some("offline")
            && retained.contains_key("regd/gw/stays")
    });
}

#[test]
fn tells_systemd_it_is_ready_and_logs_with_priorities() {
    let Some((broker, regd)) = broker_and_regd() else {
        return;
    };
    let directory = TempDir::new("notify");
    let socket_path = directory.file("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    let bridge = Bridge::spawn(
        &regd.url(),
        &broker.url(),
        &["--prefix", "regd/gw"],
        &[("NOTIFY_SOCKET", &socket_path), ("JOURNAL_STREAM", "8:1")],
    );
    let mut notifications = String::new();
    let mut buffer = [0u8; 512];
    while !(notifications.contains("STATUS=connected to mqtt://")
        && notifications.contains("READY=1"))
    {
        let length = socket.recv(&mut buffer).expect("a notification");
        notifications.push_str(&String::from_utf8_lossy(&buffer[..length]));
        notifications.push('\n');
    }
    assert!(notifications.contains("READY=1"), "{notifications}");
    bridge.wait_connects(1);
    // Under systemd (JOURNAL_STREAM), lines carry syslog priorities, no timestamps.
    bridge.wait_for_log("<6>connected to mqtt://");
    bridge.signal("TERM");
    while !notifications.contains("STOPPING=1") {
        let length = socket.recv(&mut buffer).expect("STOPPING=1");
        notifications.push_str(&String::from_utf8_lossy(&buffer[..length]));
    }
}

fn help() -> String {
    let output = program(env!("CARGO_BIN_EXE_regd-mqtt"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

/// (flag, variable, default) for every setting `--help` lists.
fn documented_settings() -> Vec<(String, String, String)> {
    let settings = help_settings(&help());
    assert!(settings.len() >= 14, "{settings:?}");
    settings
}

#[test]
fn help_defaults_file_and_man_page_agree() {
    let settings = documented_settings();
    for flag in [
        "--registry",
        "--broker",
        "--username",
        "--password-file",
        "--prefix",
        "--discovery",
        "--discovery-prefix",
        "--import",
        "--import-ttl",
        "--keepalive",
    ] {
        assert!(
            settings.iter().any(|(listed, _, _)| listed == flag),
            "{flag} missing from --help"
        );
    }
    let defaults = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/default/regd-mqtt"
    ))
    .unwrap();
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/man/regd-mqtt.8"
    ))
    .unwrap();
    for (flag, variable, default) in &settings {
        let line = format!("#{variable}={default}\n");
        assert!(
            defaults.contains(&line),
            "packaging/default/regd-mqtt lacks {line:?}"
        );
        assert!(
            page.contains(&flag.replace('-', "\\-")),
            "regd-mqtt.8 lacks {flag}"
        );
        assert!(
            page.contains(variable.as_str()),
            "regd-mqtt.8 lacks {variable}"
        );
        let default = if default.is_empty() { "none" } else { default };
        assert!(
            page.contains(&format!("default {default})")),
            "regd-mqtt.8 lacks the default of {flag} ({default})"
        );
    }
    for line in defaults.lines() {
        assert!(
            line.is_empty() || line.starts_with('#'),
            "only comments: {line:?}"
        );
    }
    // Usage errors exit 2 and name the problem.
    let output = program(env!("CARGO_BIN_EXE_regd-mqtt"))
        .args(["--bogus"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--bogus"));
}

#[test]
fn under_systemd_the_bridges_fatal_error_is_logged_at_err() {
    // As for regd: `journalctl -u regd-mqtt -p err` must show why the bridge stopped.
    let output = program(env!("CARGO_BIN_EXE_regd-mqtt"))
        .args(["--bogus"])
        .env("JOURNAL_STREAM", "8:12345")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("<3>regd-mqtt: "), "{stderr}");
    assert!(last.contains("--bogus"), "{stderr}");
}
