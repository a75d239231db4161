//! The daemon's network side: binds the listener, accepts connections, gives each its
//! own named thread with a small stack, and shuts everything down in order. Sockets and
//! httparse live here and nowhere else. Invariants: the accept loop survives every
//! error; the number of connection threads never exceeds the connection limit (one
//! more thread turns excess connections away with a 503); every thread is joined, or
//! waited for up to the shutdown grace period, before [`Server::run`] returns; the
//! listening socket is never shut down (systemd may share it, and passes it to the next
//! regd): shutdown wakes the accept loop's poll instead.

pub mod access;
mod exchange;
mod hangups;
mod http;
mod metrics;
mod parking;
pub mod probe;
mod registry;
mod service;
mod state;
mod web;

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use parking_lot::Mutex;
use socket2::{Domain, Socket, Type};

pub use exchange::{AlwaysConnected, Peer, Request, Response};
pub use http::{HttpLimits, serve_bytes};
pub use metrics::Metrics;
pub use registry::{Clock, SystemClock};
pub use service::{Service, ServiceConfig};
pub use state::StateConfig;

use crate::protocol::ApiError;

/// Everything the daemon can be told.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen: `HOST:PORT`, or `:PORT` for every interface.
    pub address: String,
    /// Connections served at once; more are answered 503.
    pub max_connections: usize,
    /// Pending connections the kernel queues before `accept`.
    pub backlog: i32,
    /// Stack size of each connection thread.
    pub thread_stack_bytes: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Limits of the connection layer.
    pub http: HttpLimits,
    /// Settings of the service.
    pub service: ServiceConfig,
    /// Where and how often the state is saved across restarts (in memory only without
    /// a directory).
    pub state: StateConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            address: ":8080".to_string(),
            max_connections: 4_096,
            backlog: 1_024,
            thread_stack_bytes: DEFAULT_STACK_BYTES,
            shutdown_grace: Duration::from_millis(800),
            http: HttpLimits::default(),
            service: ServiceConfig::default(),
            state: StateConfig::default(),
        }
    }
}

/// The accept loop's poll: connections are waiting, or shutdown has begun.
const LISTENER: Token = Token(0);
const ACCEPT_WAKER: Token = Token(1);

/// Stack of a connection thread. Measured: the deepest path (a 128-level nested body
/// in a debug build, with logging) uses well under 64 KiB; 128 KiB leaves room and
/// keeps 4,096 threads within 512 MiB of a 32-bit address space.
pub const DEFAULT_STACK_BYTES: usize = 128 * 1024;

/// Why the server could not start or run.
#[derive(Debug)]
pub enum Error {
    /// The address does not parse or resolve.
    Address {
        /// The address given.
        address: String,
        /// Why.
        source: io::Error,
    },
    /// The socket could not be bound.
    Bind {
        /// The address tried.
        address: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// A thread could not be started.
    Thread(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Address { address, .. } => write!(
                f,
                "cannot use listen address {address:?}; give HOST:PORT such as 127.0.0.1:8080 or :8080"
            ),
            Error::Bind { address, source } if source.kind() == io::ErrorKind::AddrInUse => write!(
                f,
                "cannot listen on {address}: the port is in use; stop the other program or choose another --addr"
            ),
            Error::Bind { address, .. } => write!(f, "cannot listen on {address}"),
            Error::Thread(_) => write!(f, "cannot start a thread"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Address { source, .. } | Error::Bind { source, .. } | Error::Thread(source) => {
                Some(source)
            }
        }
    }
}

/// A bound server, ready to run.
pub struct Server {
    config: Config,
    /// Non-blocking; the accept loop waits in `accept_poll` for it to become readable.
    listener: TcpListener,
    /// Reports connections waiting on the listener, and the shutdown waker.
    accept_poll: Poll,
    local_address: SocketAddr,
    shared: Arc<Shared>,
    /// The hang-up watcher's poll, until `run` hands it to its thread.
    hangups_poll: Option<mio::Poll>,
    /// The state saver, until `run` hands it to its thread.
    saver: Option<state::Saver>,
}

struct Shared {
    service: Service,
    hangups: hangups::Hangups,
    stopping: AtomicBool,
    /// Wakes the accept loop at shutdown.
    accept_waker: mio::Waker,
    connections: Mutex<HashMap<u64, Connection>>,
}

struct Connection {
    /// Shared with the connection's thread (not a `try_clone`, which would cost a
    /// second file descriptor per connection), so shutdown can end its reading side.
    stream: Arc<TcpStream>,
    thread: Option<JoinHandle<()>>,
}

/// Stops a running server from another thread (a signal handler thread, a test).
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl ShutdownHandle {
    /// Whether the server is serving (not shutting down), for health checks.
    pub fn is_serving(&self) -> bool {
        !self.shared.stopping.load(Ordering::Acquire)
    }

    /// Begins shutdown: held polls are answered at once, no new connection is accepted,
    /// and [`Server::run`] returns once in-flight requests are done.
    pub fn shut_down(&self) {
        if self.shared.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        self.shared.service.shut_down();
        // Never shut the listening socket down to end accept(): under socket
        // activation systemd owns it too, and a shut-down socket fails its unit and
        // refuses connections meant for the next regd.
        let _ = self.shared.accept_waker.wake();
    }
}

impl Server {
    /// Binds the listening socket.
    pub fn bind(config: Config) -> Result<Server, Error> {
        let address = resolve(&config.address)?;
        let socket =
            listen(address, config.backlog).map_err(|source| Error::Bind { address, source })?;
        Self::from_listener(config, socket.into())
    }

    /// Serves on a socket that is already listening (systemd socket activation).
    pub fn from_listener(config: Config, listener: TcpListener) -> Result<Server, Error> {
        let unknown = SocketAddr::from(([0u8; 4], 0));
        let local_address = listener.local_addr().map_err(|source| Error::Bind {
            address: unknown,
            source,
        })?;
        let bind_error = |source| Error::Bind {
            address: local_address,
            source,
        };
        // Non-blocking, as systemd's own sockets are (the flag is shared with it): the
        // accept loop accepts until the queue is empty, then waits in its poll.
        listener.set_nonblocking(true).map_err(bind_error)?;
        let accept_poll = Poll::new().map_err(Error::Thread)?;
        accept_poll
            .registry()
            .register(
                &mut SourceFd(&listener.as_raw_fd()),
                LISTENER,
                Interest::READABLE,
            )
            .map_err(bind_error)?;
        let accept_waker =
            mio::Waker::new(accept_poll.registry(), ACCEPT_WAKER).map_err(Error::Thread)?;
        let (hangups, hangups_poll) = hangups::Hangups::new().map_err(Error::Thread)?;
        let shared = Arc::new(Shared {
            service: Service::new(config.service.clone()),
            hangups,
            stopping: AtomicBool::new(false),
            accept_waker,
            connections: Mutex::new(HashMap::new()),
        });
        // Restored before the address is announced, so the first request sees it.
        let saver = (config.state.directory.as_ref()).map(|directory| {
            state::Saver::open(directory, &config.state, &shared.service, &config.service)
        });
        Ok(Server {
            config,
            listener,
            accept_poll,
            local_address,
            shared,
            hangups_poll: Some(hangups_poll),
            saver,
        })
    }

    /// The address actually bound (the real port when 0 was asked for).
    pub fn local_address(&self) -> SocketAddr {
        self.local_address
    }

    /// A handle that stops the server.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: self.shared.clone(),
        }
    }

    /// The service, for inspection.
    pub fn service(&self) -> &Service {
        &self.shared.service
    }

    /// Serves until shut down, then stops every thread it started.
    pub fn run(mut self) -> Result<(), Error> {
        let shared = self.shared.clone();
        let reaper = thread::Builder::new()
            .name("regd-reaper".to_string())
            .spawn(move || shared.service.run_reaper())
            .map_err(Error::Thread)?;
        let hangups = match self.hangups_poll.take() {
            Some(poll) => {
                let shared = self.shared.clone();
                Some(
                    thread::Builder::new()
                        .name("regd-hangups".to_string())
                        .stack_size(64 * 1024)
                        .spawn(move || shared.hangups.run(poll))
                        .map_err(Error::Thread)?,
                )
            }
            None => None,
        };
        let (stop_saver, saver_stopped) = mpsc::channel::<()>();
        let saver = match self.saver.take() {
            Some(saver) => {
                let shared = self.shared.clone();
                Some(
                    thread::Builder::new()
                        .name("regd-state".to_string())
                        .spawn(move || saver.run(&shared.service, &saver_stopped))
                        .map_err(Error::Thread)?,
                )
            }
            None => None,
        };
        let (refusals, refused) = mpsc::sync_channel::<TcpStream>(64);
        let refuser = thread::Builder::new()
            .name("regd-refuser".to_string())
            .stack_size(64 * 1024)
            .spawn(move || refuse_connections(refused))
            .map_err(Error::Thread)?;

        self.accept_loop(&refusals);

        // Shutdown: polls were answered by shut_down(); idle connections are waiting
        // for a next request that must not come, so end their reading side.
        drop(refusals);
        let deadline = Instant::now() + self.config.shutdown_grace;
        for connection in self.shared.connections.lock().values() {
            let _ = connection.stream.shutdown(Shutdown::Read);
        }
        let mut handles: Vec<JoinHandle<()>> = self
            .shared
            .connections
            .lock()
            .values_mut()
            .filter_map(|connection| connection.thread.take())
            .collect();
        while !handles.is_empty() && Instant::now() < deadline {
            handles.retain(|handle| !handle.is_finished());
            thread::park_timeout(Duration::from_millis(5));
        }
        if !handles.is_empty() {
            log::warn!(
                "{} connections still busy after {:?}; closing them",
                handles.len(),
                self.config.shutdown_grace
            );
            for connection in self.shared.connections.lock().values() {
                let _ = connection.stream.shutdown(Shutdown::Both);
            }
        }
        // Only when every connection thread has ended can nothing change the registry
        // after the final save: a clean stop.
        let all_ended = handles.iter().all(JoinHandle::is_finished);
        for handle in handles {
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
        let _ = reaper.join();
        let _ = refuser.join();
        drop(stop_saver);
        if let Some(Ok(saver)) = saver.map(JoinHandle::join) {
            saver.finish(&self.shared.service, all_ended);
        }
        self.shared.hangups.stop();
        if let Some(hangups) = hangups {
            let _ = hangups.join();
        }
        log::info!("stopped");
        Ok(())
    }

    fn accept_loop(&mut self, refusals: &mpsc::SyncSender<TcpStream>) {
        let mut next_id: u64 = 0;
        let mut last_error_log: Option<Instant> = None;
        // Readiness is edge-triggered: the loop accepts until the queue is empty
        // (WouldBlock) before it waits again.
        let mut events = Events::with_capacity(4);
        loop {
            if self.shared.stopping.load(Ordering::Acquire) {
                return;
            }
            let accepted = match self.listener.accept() {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    match self.accept_poll.poll(&mut events, None) {
                        Err(error) if error.kind() != io::ErrorKind::Interrupted => Err(error),
                        _ => continue,
                    }
                }
                accepted => accepted,
            };
            if self.shared.stopping.load(Ordering::Acquire) {
                return;
            }
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    self.shared.service.metrics().accept_failed();
                    if last_error_log.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                        log::warn!("accept failed (will keep trying): {error}");
                        last_error_log = Some(Instant::now());
                    }
                    // Out of descriptors or memory: give in-flight connections a moment
                    // to finish instead of spinning.
                    if !matches!(
                        error.kind(),
                        io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::Interrupted
                    ) {
                        thread::sleep(Duration::from_millis(20));
                    }
                    continue;
                }
            };
            // Linux does not pass O_NONBLOCK on to accepted sockets; other systems do,
            // and connection threads block.
            #[cfg(not(target_os = "linux"))]
            if stream.set_nonblocking(false).is_err() {
                continue;
            }
            next_id += 1;
            if let Err(stream) = self.spawn_connection(next_id, stream, peer) {
                self.shared.service.metrics().connection_refused();
                if let Err(mpsc::TrySendError::Full(stream)) = refusals.try_send(stream) {
                    // Even the refuser is behind: drop without an answer.
                    drop(stream);
                }
            }
        }
    }

    /// Starts the connection's thread, or gives the stream back at the limit.
    fn spawn_connection(
        &self,
        id: u64,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Result<(), TcpStream> {
        let mut connections = self.shared.connections.lock();
        // Finished threads leave their entry behind until reaped here.
        if connections.len() >= self.config.max_connections {
            connections.retain(|_, connection| {
                !connection
                    .thread
                    .as_ref()
                    .is_some_and(|handle| handle.is_finished())
            });
        }
        if connections.len() >= self.config.max_connections {
            return Err(stream);
        }
        let stream = Arc::new(stream);
        let registered = stream.clone();
        let shared = self.shared.clone();
        let limits = self.config.http;
        let spawned = thread::Builder::new()
            .name(format!("regd-http-{id}"))
            .stack_size(self.config.thread_stack_bytes)
            .spawn(move || {
                shared.service.metrics().connection_opened();
                http::serve(stream, peer, &shared.service, &limits, &shared.hangups);
                shared.service.metrics().connection_closed();
                shared.connections.lock().remove(&id);
            });
        match spawned {
            Ok(handle) => {
                connections.insert(
                    id,
                    Connection {
                        stream: registered,
                        thread: Some(handle),
                    },
                );
                Ok(())
            }
            Err(error) => {
                log::warn!("cannot start a connection thread: {error}");
                // The closure, and with it the other reference, is gone: the stream
                // goes back to the caller for a 503.
                Arc::try_unwrap(registered).map_or(Ok(()), Err)
            }
        }
    }
}

/// Answers connections beyond the limit with a prompt 503, reading their request first
/// so the client sees the answer rather than a reset.
fn refuse_connections(refused: mpsc::Receiver<TcpStream>) {
    let answer = http::refusal_bytes(&ApiError::unavailable(
        "regd is at its connection limit; retry shortly or raise --max-connections",
    ));
    for mut stream in refused {
        let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
        let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        let _ = stream.write_all(&answer);
        let _ = stream.shutdown(Shutdown::Write);
        let _ = stream.read(&mut request);
    }
}

/// `:8080` means every interface (IPv6 and IPv4 where possible), as in the original.
fn resolve(address: &str) -> Result<SocketAddr, Error> {
    let fail = |source| Error::Address {
        address: address.to_string(),
        source,
    };
    if let Some(port) = address.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| fail(io::Error::new(io::ErrorKind::InvalidInput, "bad port")))?;
        return Ok(SocketAddr::from(([0u16; 8], port)));
    }
    address
        .to_socket_addrs()
        .map_err(fail)?
        .next()
        .ok_or_else(|| fail(io::Error::new(io::ErrorKind::NotFound, "no address found")))
}

fn listen(address: SocketAddr, backlog: i32) -> io::Result<Socket> {
    match try_listen(address, backlog) {
        // No IPv6 on this machine: every interface means every IPv4 interface.
        Err(_) if address.ip().is_unspecified() && address.is_ipv6() => {
            try_listen(SocketAddr::from(([0u8; 4], address.port())), backlog)
        }
        other => other,
    }
}

fn try_listen(address: SocketAddr, backlog: i32) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if address.is_ipv6() && address.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.bind(&address.into())?;
    socket.listen(backlog)?;
    Ok(socket)
}
