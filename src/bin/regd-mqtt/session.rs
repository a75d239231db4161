//! The MQTT session over `std::net`: connecting with capped, jittered backoff, CONNECT
//! with the last will, SUBSCRIBE after every connect (clean sessions, see below),
//! keep-alive, QoS 0/1 publishing with a bounded window of unacknowledged messages, and
//! the incoming messages handed to the bridge as [`Event`]s.
//!
//! Threads: `regd-mqtt-session` connects and then reads the connection until it ends;
//! `regd-mqtt-writer` (one per connection) writes frames in order and sends PINGREQ
//! when nothing was written for three quarters of the keep-alive. Shutdown publishes
//! the bridge's `offline` state, waits (briefly) for its acknowledgement, says
//! DISCONNECT and joins both.
//!
//! Why clean sessions: the bridge republishes every retained topic after each connect,
//! so it needs no broker-side queue for what it sends; and change requests queued by a
//! broker while the bridge was away would be applied late (a lamp switched hours after
//! the click). With a clean session a change request is delivered exactly while the
//! bridge is connected, and never invented from a stale queue.
//!
//! Invariants: no lock is held across socket I/O or a blocking send; at most
//! [`MAX_INFLIGHT`] QoS 1 messages wait for PUBACK (publishers block beyond that, so
//! memory is bounded whatever the load), which also bounds the writer's queue; an
//! unacknowledged message marked `resend` is sent again after a reconnect, others are
//! dropped (the bridge republishes state itself); a message that cannot be taken
//! (oversized, topic not UTF-8) is acknowledged, reported and skipped — never a reason
//! to drop the connection.

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::{Condvar, Mutex};

use crate::codec::{self, Connect, Packet, Publish, QoS, Will};
use crate::warnings::Warnings;

/// QoS 1 messages sent and not yet acknowledged, at most.
pub const MAX_INFLIGHT: usize = 64;

/// How long a TCP connect, and then the broker's CONNACK, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Reconnect backoff: the first pause and the longest (a restarted broker has the
/// bridge back within this, plus the connect itself).
pub const BACKOFF_FIRST: Duration = Duration::from_millis(250);
pub const BACKOFF_CAP: Duration = Duration::from_secs(10);

/// How long shutdown waits for the broker to acknowledge the `offline` state.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the broker is: `mqtt://[USER@]HOST[:PORT]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
}

impl Broker {
    pub fn parse(url: &str) -> Result<Broker, String> {
        let refuse = |why: &str| format!("--broker {url:?}: {why}");
        let rest = if let Some(rest) = url.strip_prefix("mqtt://") {
            rest
        } else if url.starts_with("mqtts://") || url.starts_with("ssl://") {
            return Err(refuse(
                "TLS is not built into this regd-mqtt yet; connect to a broker on the local network, or through a TLS tunnel (docs/mqtt.md, \"TLS\")",
            ));
        } else {
            return Err(refuse(
                "expected mqtt://HOST:PORT, such as mqtt://localhost:1883",
            ));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(refuse("a broker URL has no path, query or fragment"));
        }
        let (username, address) = match rest.rsplit_once('@') {
            Some((user, _)) if user.contains(':') => {
                return Err(refuse(
                    "a password in the URL would be visible to every user (ps, /proc); put it in a file and pass --password-file",
                ));
            }
            Some((user, address)) if !user.is_empty() => (Some(user.to_string()), address),
            Some(_) => return Err(refuse("the user name before @ is empty")),
            None => (None, rest),
        };
        let (host, port) = match address.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                match port.parse::<u16>() {
                    Ok(port) if port > 0 => (host, port),
                    _ => return Err(refuse("the port must be a number from 1 to 65535")),
                }
            }
            _ => (address, 1883),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(refuse("the host is missing"));
        }
        Ok(Broker {
            host: host.to_string(),
            port,
            username,
        })
    }

    /// `mqtt://HOST:PORT`, without the user.
    pub fn url(&self) -> String {
        if self.host.contains(':') {
            format!("mqtt://[{}]:{}", self.host, self.port)
        } else {
            format!("mqtt://{}:{}", self.host, self.port)
        }
    }
}

/// How to connect and what to do after each connect.
#[derive(Clone)]
pub struct Options {
    pub broker: Broker,
    pub client_id: String,
    pub keep_alive: Duration,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    /// Published by the broker if the bridge vanishes; published by the bridge itself
    /// before a clean disconnect.
    pub will: Will,
    /// Published (QoS 1, retained) after subscribing on every connect: the bridge's
    /// `online`. Its echo marks the end of the retained messages the subscriptions
    /// brought (MQTT 3.1.1 sends those first, with the retain flag; the echo has none).
    pub birth: (String, Vec<u8>),
    pub subscriptions: Vec<(String, QoS)>,
    /// Incoming messages larger than this (payload and topic) are skipped.
    pub max_packet: usize,
}

/// What the session tells the bridge, in the order it happened.
#[derive(Debug)]
pub enum Event {
    /// The broker accepted the bridge; subscriptions and the birth message were sent.
    Connected,
    /// A message on a subscribed topic.
    Message {
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    },
    /// The connection ended; the session reconnects with backoff.
    Disconnected,
}

/// Why a publish did not go out.
#[derive(Debug, PartialEq, Eq)]
pub enum PublishError {
    /// There is no connection (or it ended meanwhile).
    NotConnected,
    /// The message cannot be encoded (a field longer than MQTT allows).
    Invalid(codec::EncodeError),
}

/// One unacknowledged QoS 1 message.
struct Pending {
    publish: Publish,
    resend: bool,
}

struct State {
    /// The current connection's frame queue, while connected.
    frames: Option<Sender<Vec<u8>>>,
    inflight: BTreeMap<u16, Pending>,
    next_id: u16,
    /// Publishes are refused (shutdown has begun; only the goodbye goes out).
    closing: bool,
    stopping: bool,
}

struct Shared {
    options: Options,
    state: Mutex<State>,
    /// Signalled when an acknowledgement frees a slot, or the connection ends.
    acked: Condvar,
    events: Sender<Event>,
    warnings: Arc<Warnings>,
}

/// A running session. Dropping it without [`Session::shutdown`] still stops and joins
/// its threads (without the goodbye).
pub struct Session {
    shared: Arc<Shared>,
    stop: Option<Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Session {
    pub fn start(
        options: Options,
        events: Sender<Event>,
        warnings: Arc<Warnings>,
    ) -> std::io::Result<Session> {
        let shared = Arc::new(Shared {
            options,
            state: Mutex::new(State {
                frames: None,
                inflight: BTreeMap::new(),
                next_id: 1,
                closing: false,
                stopping: false,
            }),
            acked: Condvar::new(),
            events,
            warnings,
        });
        let (stop, stopped) = crossbeam_channel::bounded(0);
        let thread = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("regd-mqtt-session".to_string())
                .spawn(move || run(&shared, &stopped))?
        };
        Ok(Session {
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Whether a connection is up now.
    pub fn is_connected(&self) -> bool {
        self.shared.state.lock().frames.is_some()
    }

    /// Publishes one message. QoS 1 waits while [`MAX_INFLIGHT`] messages are
    /// unacknowledged; `resend` keeps an unacknowledged message for the next connection
    /// (for change requests; state is republished by the bridge instead).
    pub fn publish(
        &self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
        resend: bool,
    ) -> Result<(), PublishError> {
        publish(&self.shared, topic, payload, qos, retain, resend, false)
    }

    /// Refuses every later publish and wakes publishers waiting for the window, so the
    /// threads that publish can be stopped before [`Session::shutdown`].
    pub fn refuse_publishes(&self) {
        self.shared.state.lock().closing = true;
        self.shared.acked.notify_all();
    }

    /// Publishes the will's message itself (the broker drops the will on DISCONNECT),
    /// waits up to two seconds for its acknowledgement, disconnects and joins.
    pub fn shutdown(mut self) {
        let will = self.shared.options.will.clone();
        if publish(
            &self.shared,
            &will.topic,
            &will.payload,
            QoS::AtLeastOnce,
            true,
            false,
            true,
        )
        .is_ok()
        {
            let deadline = Instant::now() + GOODBYE_TIMEOUT;
            let mut state = self.shared.state.lock();
            while !state.inflight.is_empty() && state.frames.is_some() {
                if self
                    .shared
                    .acked
                    .wait_until(&mut state, deadline)
                    .timed_out()
                {
                    break;
                }
            }
        }
        self.stop_and_join(true);
    }

    fn stop_and_join(&mut self, goodbye: bool) {
        let frames = {
            let mut state = self.shared.state.lock();
            state.stopping = true;
            state.frames.take()
        };
        if let Some(frames) = frames {
            if goodbye {
                let _ = frames.send(codec::encode_disconnect());
            }
            // Dropping the last sender ends the writer, which shuts the socket down and
            // so ends the reading thread too.
        }
        self.shared.acked.notify_all();
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop_and_join(false);
        }
    }
}

fn publish(
    shared: &Shared,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
    resend: bool,
    goodbye: bool,
) -> Result<(), PublishError> {
    let mut message = Publish {
        topic: topic.as_bytes().to_vec(),
        payload: payload.to_vec(),
        qos,
        retain,
        dup: false,
        packet_id: None,
    };
    let mut state = shared.state.lock();
    if qos == QoS::AtLeastOnce {
        while state.frames.is_some() && state.inflight.len() >= MAX_INFLIGHT && !state.closing {
            shared.acked.wait(&mut state);
        }
    }
    if state.closing && !goodbye {
        return Err(PublishError::NotConnected);
    }
    let Some(frames) = state.frames.clone() else {
        return Err(PublishError::NotConnected);
    };
    if qos == QoS::AtLeastOnce {
        let id = free_id(&mut state);
        message.packet_id = Some(id);
        let frame = codec::encode_publish(&message).map_err(PublishError::Invalid)?;
        state.inflight.insert(
            id,
            Pending {
                publish: message,
                resend,
            },
        );
        drop(state);
        frames.send(frame).map_err(|_| PublishError::NotConnected)
    } else {
        drop(state);
        let frame = codec::encode_publish(&message).map_err(PublishError::Invalid)?;
        frames.send(frame).map_err(|_| PublishError::NotConnected)
    }
}

/// The next packet identifier not in use (never 0).
fn free_id(state: &mut State) -> u16 {
    loop {
        let id = state.next_id;
        state.next_id = state.next_id.checked_add(1).unwrap_or(1);
        if id != 0 && !state.inflight.contains_key(&id) {
            return id;
        }
    }
}

/// Why a connection attempt or a connection ended.
#[derive(Debug)]
enum Failure {
    Io(std::io::Error),
    Refused(u8),
    Protocol(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Io(error) => write!(f, "{error}"),
            Failure::Refused(code) => {
                write!(f, "{} (CONNACK code {code})", codec::connack_refusal(*code))
            }
            Failure::Protocol(message) => f.write_str(message),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Failure {
        Failure::Io(error)
    }
}

/// The session thread: connect, serve the connection, back off, again.
fn run(shared: &Shared, stop: &Receiver<()>) {
    let url = shared.options.broker.url();
    let mut failures = 0u32;
    loop {
        if shared.state.lock().stopping {
            return;
        }
        let outcome = connect(shared).and_then(|stream| {
            failures = 0;
            serve(shared, stream)
        });
        let stopping = shared.state.lock().stopping;
        if stopping {
            return;
        }
        match &outcome {
            Ok(()) => log::warn!("the broker at {url} closed the connection; reconnecting"),
            Err(Failure::Refused(code @ (4 | 5))) => shared.warnings.warn("mqtt-refused", || {
                format!(
                    "{url}: {}; check --username and --password-file (retrying with backoff)",
                    Failure::Refused(*code)
                )
            }),
            Err(error) => shared.warnings.warn("mqtt-connect", || {
                format!("no connection to the broker at {url}: {error} (retrying with backoff)")
            }),
        }
        let _ = regd::notify::notify(&format!(
            "STATUS=no connection to the broker at {url}; retrying"
        ));
        let pause = backoff(failures);
        failures = failures.saturating_add(1);
        if matches!(
            stop.recv_timeout(pause),
            Err(RecvTimeoutError::Disconnected)
        ) {
            return;
        }
    }
}

/// The pause before reconnect attempt `failures + 1`: doubling from
/// [`BACKOFF_FIRST`] up to [`BACKOFF_CAP`], scaled by a factor in [0.5, 1) so bridges of
/// a restarted broker do not all come back in the same instant.
pub fn backoff(failures: u32) -> Duration {
    let step = BACKOFF_FIRST
        .saturating_mul(1 << failures.min(16))
        .min(BACKOFF_CAP);
    step.mul_f64(0.5 + jitter() / 2.0)
}

fn jitter() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    let bits = RandomState::new().hash_one(Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// TCP connect, CONNECT, CONNACK.
fn connect(shared: &Shared) -> Result<TcpStream, Failure> {
    let options = &shared.options;
    let addresses = (options.broker.host.as_str(), options.broker.port).to_socket_addrs()?;
    let mut last = None;
    let mut stream = None;
    for address in addresses {
        match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(error) => last = Some(error),
        }
    }
    let mut stream = match (stream, last) {
        (Some(stream), _) => stream,
        (None, Some(error)) => return Err(error.into()),
        (None, None) => {
            return Err(Failure::Protocol(format!(
                "{} resolves to no address",
                options.broker.host
            )));
        }
    };
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    stream.set_write_timeout(Some(CONNECT_TIMEOUT))?;
    let connect = Connect {
        client_id: options.client_id.clone(),
        keep_alive_secs: u16::try_from(options.keep_alive.as_secs())
            .unwrap_or(u16::MAX)
            .max(1),
        clean_session: true,
        will: Some(options.will.clone()),
        username: options.username.clone(),
        password: options.password.clone(),
    };
    let frame =
        codec::encode_connect(&connect).map_err(|error| Failure::Protocol(error.to_string()))?;
    stream.write_all(&frame)?;
    let mut reader = BufReader::with_capacity(64, &stream);
    match read_packet(&mut reader, 16)? {
        Incoming::Packet(Packet::ConnAck { code: 0, .. }) => Ok(stream),
        Incoming::Packet(Packet::ConnAck { code, .. }) => Err(Failure::Refused(code)),
        other => Err(Failure::Protocol(format!(
            "the broker answered CONNECT with {other:?} instead of CONNACK"
        ))),
    }
}

/// Serves one accepted connection until it ends.
fn serve(shared: &Shared, stream: TcpStream) -> Result<(), Failure> {
    let options = &shared.options;
    let keep_alive = options.keep_alive;
    // The broker answers PINGREQ within the keep-alive, so silence for one and a half
    // keep-alives means the connection is dead.
    stream.set_read_timeout(Some(keep_alive + keep_alive / 2))?;
    stream.set_write_timeout(Some(keep_alive.max(Duration::from_secs(5))))?;
    let (frames, queued) = crossbeam_channel::unbounded::<Vec<u8>>();
    let writer = {
        let stream = stream.try_clone()?;
        thread::Builder::new()
            .name("regd-mqtt-writer".to_string())
            .spawn(move || write_frames(stream, &queued, keep_alive * 3 / 4))?
    };
    let subscribe = codec::encode_subscribe(1, &options.subscriptions)
        .map_err(|error| Failure::Protocol(error.to_string()));
    let result = subscribe.and_then(|subscribe| {
        {
            let mut state = shared.state.lock();
            if state.stopping {
                return Ok(());
            }
            let _ = frames.send(subscribe);
            state.frames = Some(frames.clone());
            // Change requests that were not acknowledged go again, as new messages of
            // this new session; state that was not acknowledged is republished anyway.
            state.inflight.retain(|_, pending| pending.resend);
            for (id, pending) in &mut state.inflight {
                pending.publish.packet_id = Some(*id);
                if let Ok(frame) = codec::encode_publish(&pending.publish) {
                    let _ = frames.send(frame);
                }
            }
        }
        drop(frames);
        let (topic, payload) = &options.birth;
        let _ = publish(shared, topic, payload, QoS::AtLeastOnce, true, false, false);
        let url = options.broker.url();
        announce(&format!("connected to {url}"));
        log::info!("connected to {url} as {}", options.client_id);
        let _ = regd::notify::notify(&format!("STATUS=connected to {url}"));
        let _ = shared.events.send(Event::Connected);
        read_connection(shared, &stream)
    });
    {
        let mut state = shared.state.lock();
        state.frames = None;
        state.inflight.retain(|_, pending| pending.resend);
    }
    shared.acked.notify_all();
    let _ = stream.shutdown(Shutdown::Both);
    let _ = writer.join();
    let _ = shared.events.send(Event::Disconnected);
    result
}

/// The one line on stdout each time the broker accepts the bridge.
fn announce(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

fn write_frames(mut stream: TcpStream, queued: &Receiver<Vec<u8>>, ping_after: Duration) {
    loop {
        let frame = match queued.recv_timeout(ping_after) {
            Ok(frame) => frame,
            Err(RecvTimeoutError::Timeout) => codec::encode_pingreq(),
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if stream.write_all(&frame).is_err() {
            break;
        }
    }
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

/// Reads packets until the connection ends.
fn read_connection(shared: &Shared, stream: &TcpStream) -> Result<(), Failure> {
    let mut reader = BufReader::with_capacity(16 * 1024, stream);
    let options = &shared.options;
    loop {
        let incoming = match read_packet(&mut reader, options.max_packet) {
            Ok(incoming) => incoming,
            Err(Failure::Io(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(());
            }
            Err(Failure::Io(error))
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Failure::Protocol(format!(
                    "the broker sent nothing (not even a PINGRESP) for {:?}",
                    options.keep_alive + options.keep_alive / 2
                )));
            }
            Err(error) => return Err(error),
        };
        match incoming {
            Incoming::Packet(Packet::Publish(message)) => {
                acknowledge(shared, message.packet_id);
                match String::from_utf8(message.topic) {
                    Ok(topic) => {
                        let event = Event::Message {
                            topic,
                            payload: message.payload,
                            retain: message.retain,
                        };
                        // Nobody reads events any more once the bridge is stopping; the
                        // connection still stays up until the writer has sent DISCONNECT
                        // (ending it here would make the broker publish the will).
                        let _ = shared.events.send(event);
                    }
                    Err(error) => shared.warnings.warn("mqtt-topic-utf8", || {
                        format!(
                            "skipped a message whose topic is not UTF-8 (MQTT requires it): {:?}",
                            String::from_utf8_lossy(error.as_bytes())
                        )
                    }),
                }
            }
            Incoming::Oversized {
                topic,
                packet_id,
                size,
            } => {
                acknowledge(shared, packet_id);
                shared.warnings.warn("mqtt-oversized", || {
                    format!(
                        "skipped a {size}-byte message on {:?}: larger than --max-payload ({} bytes)",
                        String::from_utf8_lossy(&topic),
                        options.max_packet
                    )
                });
            }
            Incoming::Packet(Packet::PubAck(id)) => {
                shared.state.lock().inflight.remove(&id);
                shared.acked.notify_all();
            }
            Incoming::Packet(Packet::SubAck { codes, .. }) => {
                for ((filter, _), code) in options.subscriptions.iter().zip(&codes) {
                    if *code == 0x80 {
                        log::warn!(
                            "the broker refused the subscription to {filter:?} (not allowed for this user?)"
                        );
                    }
                }
            }
            Incoming::Packet(Packet::PingResp | Packet::UnsubAck(_)) => {}
            Incoming::Packet(Packet::ConnAck { .. }) => {
                return Err(Failure::Protocol(
                    "the broker sent a second CONNACK".to_string(),
                ));
            }
        }
    }
}

fn acknowledge(shared: &Shared, packet_id: Option<u16>) {
    if let Some(id) = packet_id {
        if let Some(frames) = shared.state.lock().frames.clone() {
            let _ = frames.send(codec::encode_puback(id));
        }
    }
}

/// One packet read from the broker.
#[derive(Debug)]
enum Incoming {
    Packet(Packet),
    /// A PUBLISH too large to hold: read past, with what is needed to acknowledge it.
    Oversized {
        topic: Vec<u8>,
        packet_id: Option<u16>,
        size: usize,
    },
}

fn read_packet(reader: &mut impl Read, max_packet: usize) -> Result<Incoming, Failure> {
    let mut header = [0u8; 5];
    reader.read_exact(&mut header[..1])?;
    let mut filled = 1;
    let (first, length) = loop {
        reader.read_exact(&mut header[filled..filled + 1])?;
        filled += 1;
        match codec::frame_header(&header[..filled]) {
            Ok(Some((first, length, _))) => break (first, length),
            Ok(None) => continue,
            Err(error) => return Err(Failure::Protocol(error.to_string())),
        }
    };
    if length <= max_packet {
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        return codec::decode(first, &body)
            .map(Incoming::Packet)
            .map_err(|error| Failure::Protocol(error.to_string()));
    }
    if first >> 4 != 3 {
        return Err(Failure::Protocol(format!(
            "the broker sent a {length}-byte packet of type {}",
            first >> 4
        )));
    }
    // Topic length, topic and packet identifier; then the payload is read past in
    // chunks, never held.
    let mut head = vec![0u8; 2];
    reader.read_exact(&mut head)?;
    let topic_length = usize::from(u16::from_be_bytes([head[0], head[1]]));
    let head_length = (2 + topic_length + 2).min(length);
    head.resize(head_length, 0);
    reader.read_exact(&mut head[2..])?;
    let (topic, packet_id) =
        codec::publish_head(first, &head).map_err(|error| Failure::Protocol(error.to_string()))?;
    let skipped = std::io::copy(
        &mut reader.take((length - head_length) as u64),
        &mut std::io::sink(),
    )?;
    if skipped as usize != length - head_length {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    Ok(Incoming::Oversized {
        topic,
        packet_id,
        size: length,
    })
}

#[cfg(test)]
mod tests {
    //! The session against a broker played by the test on a loopback socket: the frames
    //! it writes are checked byte for byte through the codec.

    use std::net::TcpListener;

    use super::*;

    /// The test's side of one connection.
    struct FakeBroker {
        stream: TcpStream,
        buffer: Vec<u8>,
    }

    impl FakeBroker {
        fn accept(listener: &TcpListener) -> FakeBroker {
            let (stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            FakeBroker {
                stream,
                buffer: Vec::new(),
            }
        }

        /// The next frame from the session: its first byte and body.
        fn frame(&mut self) -> (u8, Vec<u8>) {
            loop {
                if let Some((first, length, header)) = codec::frame_header(&self.buffer).unwrap() {
                    if self.buffer.len() >= header + length {
                        let body = self.buffer[header..header + length].to_vec();
                        self.buffer.drain(..header + length);
                        return (first, body);
                    }
                }
                let mut chunk = [0u8; 4096];
                let read = self.stream.read(&mut chunk).unwrap();
                assert!(read > 0, "the session closed the connection");
                self.buffer.extend_from_slice(&chunk[..read]);
            }
        }

        /// CONNECT, CONNACK, SUBSCRIBE, SUBACK; returns the birth message's packet id.
        fn handshake(&mut self) -> u16 {
            assert_eq!(self.frame().0, 0x10, "CONNECT");
            self.stream.write_all(&[0x20, 2, 0, 0]).unwrap();
            let (kind, body) = self.frame();
            assert_eq!(kind, 0x82, "SUBSCRIBE");
            self.stream
                .write_all(&[0x90, 3, body[0], body[1], 1])
                .unwrap();
            self.publish_id("t/state")
        }

        /// Reads a QoS 1 PUBLISH on `topic` and returns its packet id.
        fn publish_id(&mut self, topic: &str) -> u16 {
            let (first, body) = self.frame();
            let Packet::Publish(publish) = codec::decode(first, &body).unwrap() else {
                panic!("expected a PUBLISH, got 0x{first:02x}");
            };
            assert_eq!(publish.topic, topic.as_bytes());
            publish.packet_id.expect("QoS 1")
        }

        fn acknowledge(&mut self, id: u16) {
            self.stream.write_all(&codec::encode_puback(id)).unwrap();
        }
    }

    fn options(port: u16, keep_alive: Duration) -> Options {
        Options {
            broker: Broker::parse(&format!("mqtt://127.0.0.1:{port}")).unwrap(),
            client_id: "test".to_string(),
            keep_alive,
            username: None,
            password: None,
            will: Will {
                topic: "t/state".to_string(),
                payload: b"offline".to_vec(),
                qos: QoS::AtLeastOnce,
                retain: true,
            },
            birth: ("t/state".to_string(), b"online".to_vec()),
            subscriptions: vec![("t/#".to_string(), QoS::AtLeastOnce)],
            max_packet: 1024,
        }
    }

    fn wait_connected(events: &Receiver<Event>) {
        match events.recv_timeout(Duration::from_secs(10)) {
            Ok(Event::Connected) => {}
            other => panic!("expected Connected, got {other:?}"),
        }
    }

    #[test]
    fn at_most_the_window_waits_for_acknowledgement() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (events_in, events) = crossbeam_channel::bounded(64);
        let session = Arc::new(
            Session::start(
                options(port, Duration::from_secs(30)),
                events_in,
                Arc::default(),
            )
            .unwrap(),
        );
        let mut broker = FakeBroker::accept(&listener);
        let birth = broker.handshake();
        wait_connected(&events);
        let (done, finished) = crossbeam_channel::unbounded();
        let publisher = {
            let session = session.clone();
            thread::spawn(move || {
                for index in 0..MAX_INFLIGHT + 5 {
                    session
                        .publish(
                            "t/x",
                            index.to_string().as_bytes(),
                            QoS::AtLeastOnce,
                            true,
                            false,
                        )
                        .unwrap();
                    done.send(index).unwrap();
                }
            })
        };
        // The birth holds one slot: 63 more go out, and the publisher then waits.
        let mut ids: Vec<u16> = (0..MAX_INFLIGHT - 1)
            .map(|_| broker.publish_id("t/x"))
            .collect();
        let sent = finished.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(sent, 0);
        while finished.try_recv().is_ok() {}
        assert!(
            finished.recv_timeout(Duration::from_millis(200)).is_err(),
            "a publish went out beyond the window"
        );
        broker.acknowledge(birth);
        ids.push(broker.publish_id("t/x"));
        for id in ids {
            broker.acknowledge(id);
        }
        for _ in 0..5 {
            let id = broker.publish_id("t/x");
            broker.acknowledge(id);
        }
        publisher.join().unwrap();
        drop(broker);
        Arc::try_unwrap(session).ok().unwrap().shutdown();
    }

    #[test]
    fn shutdown_publishes_offline_and_disconnects_while_messages_still_arrive() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (events_in, events) = crossbeam_channel::bounded(64);
        let session = Session::start(
            options(port, Duration::from_secs(30)),
            events_in,
            Arc::default(),
        )
        .unwrap();
        let mut broker = FakeBroker::accept(&listener);
        let birth = broker.handshake();
        broker.acknowledge(birth);
        wait_connected(&events);
        // The bridge's inbound loop has ended: nobody reads events any more.
        drop(events);
        let stopping = thread::spawn(move || session.shutdown());
        let offline = broker.publish_id("t/state");
        // A real broker hands the bridge its own message back (it subscribes to its
        // prefix) before it acknowledges it.
        let echo = codec::encode_publish(&Publish {
            topic: b"t/state".to_vec(),
            payload: b"offline".to_vec(),
            qos: QoS::AtMostOnce,
            retain: false,
            dup: false,
            packet_id: None,
        })
        .unwrap();
        broker.stream.write_all(&echo).unwrap();
        broker.acknowledge(offline);
        assert_eq!(
            broker.frame().0,
            0xe0,
            "DISCONNECT, so the broker drops the will"
        );
        stopping.join().unwrap();
    }

    #[test]
    fn unacknowledged_change_requests_go_again_after_a_reconnect_and_keep_alive_pings() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (events_in, events) = crossbeam_channel::bounded(64);
        let session = Session::start(
            options(port, Duration::from_secs(1)),
            events_in,
            Arc::default(),
        )
        .unwrap();
        let mut broker = FakeBroker::accept(&listener);
        broker.handshake();
        wait_connected(&events);
        session
            .publish("t/lamp/set", b"true", QoS::AtLeastOnce, false, true)
            .unwrap();
        session
            .publish("t/state-only", b"1", QoS::AtLeastOnce, true, false)
            .unwrap();
        broker.publish_id("t/lamp/set");
        broker.publish_id("t/state-only");
        // Nothing written for 3/4 of the keep-alive: a PINGREQ.
        let started = Instant::now();
        assert_eq!(broker.frame(), (0xc0, Vec::new()));
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        // The connection drops with both unacknowledged; only the change request is
        // sent again on the next one (the state is the bridge's to republish).
        drop(broker);
        assert!(matches!(
            events.recv_timeout(Duration::from_secs(10)),
            Ok(Event::Disconnected)
        ));
        let mut broker = FakeBroker::accept(&listener);
        assert_eq!(broker.frame().0, 0x10, "CONNECT");
        broker.stream.write_all(&[0x20, 2, 0, 0]).unwrap();
        assert_eq!(broker.frame().0, 0x82, "SUBSCRIBE");
        broker.publish_id("t/lamp/set");
        broker.publish_id("t/state");
        wait_connected(&events);
        // Oversized and non-UTF-8 messages are acknowledged and skipped; the next one
        // arrives.
        let mut big = vec![0x32, 0x88, 0x08, 0, 3, b't', b'/', b'b', 0, 9];
        big.resize(3 + 0x408, b'x');
        broker.stream.write_all(&big).unwrap();
        broker
            .stream
            .write_all(&[0x32, 7, 0, 3, b't', b'/', 0xff, 0, 10])
            .unwrap();
        broker
            .stream
            .write_all(&[0x30, 6, 0, 3, b't', b'/', b'k', b'!'])
            .unwrap();
        let mut acknowledged = Vec::new();
        while acknowledged.len() < 2 {
            let (kind, body) = broker.frame();
            if kind == 0x40 {
                acknowledged.push(u16::from_be_bytes([body[0], body[1]]));
            }
        }
        assert_eq!(acknowledged, [9, 10]);
        match events.recv_timeout(Duration::from_secs(10)) {
            Ok(Event::Message {
                topic,
                payload,
                retain,
            }) => {
                assert_eq!(
                    (topic.as_str(), payload.as_slice(), retain),
                    ("t/k", &b"!"[..], false)
                );
            }
            other => panic!("expected the message, got {other:?}"),
        }
        drop(session);
    }
}
