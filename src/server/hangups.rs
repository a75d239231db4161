//! Notices clients that leave while their long poll is held. One thread
//! (`regd-hangups`) waits in epoll (through mio's safe API) on the sockets of parked
//! polls and nudges a poll's thread when its socket becomes readable — which is how a
//! hang-up (end of stream or reset) shows; the poll then checks its socket itself.
//! Invariants: a parked poll costs no wake-ups while nothing happens on its socket (no
//! periodic probing); a watch ends when its guard is dropped, before the socket can be
//! closed and its descriptor number reused.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use parking_lot::Mutex;

/// Something to nudge when a watched socket shows activity.
pub trait Nudge: Send + Sync {
    /// The watched client may have left (or sent more bytes): look at the socket.
    fn nudge(&self);
}

const STOP: Token = Token(0);

/// The watcher shared by every connection.
pub struct Hangups {
    registry: Registry,
    stopper: mio::Waker,
    watched: Mutex<HashMap<usize, Arc<dyn Nudge>>>,
    next_token: AtomicUsize,
}

/// A socket being watched; dropping it stops the watch.
pub struct Watch<'a> {
    hangups: &'a Hangups,
    fd: RawFd,
    token: usize,
}

impl Hangups {
    /// The watcher and the poll its thread must run ([`Hangups::run`]).
    pub fn new() -> io::Result<(Hangups, Poll)> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let stopper = mio::Waker::new(poll.registry(), STOP)?;
        Ok((
            Hangups {
                registry,
                stopper,
                watched: Mutex::new(HashMap::new()),
                next_token: AtomicUsize::new(1),
            },
            poll,
        ))
    }

    /// Watches `fd` until the returned guard is dropped. `None` if the kernel refused
    /// (the poll then simply relies on its own deadline).
    pub fn watch(&self, fd: RawFd, nudge: Arc<dyn Nudge>) -> Option<Watch<'_>> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        self.watched.lock().insert(token, nudge);
        match self
            .registry
            .register(&mut SourceFd(&fd), Token(token), Interest::READABLE)
        {
            Ok(()) => Some(Watch {
                hangups: self,
                fd,
                token,
            }),
            Err(error) => {
                log::debug!("cannot watch a held poll's socket: {error}");
                self.watched.lock().remove(&token);
                None
            }
        }
    }

    /// The watcher's loop: returns after [`Hangups::stop`].
    pub fn run(&self, mut poll: Poll) {
        let mut events = Events::with_capacity(256);
        loop {
            if let Err(error) = poll.poll(&mut events, None) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!(
                    "watching held polls failed, they fall back to their deadlines: {error}"
                );
                return;
            }
            for event in events.iter() {
                if event.token() == STOP {
                    return;
                }
                // Nudge outside the lock: a nudge unparks a thread.
                let nudge = self.watched.lock().get(&event.token().0).cloned();
                if let Some(nudge) = nudge {
                    nudge.nudge();
                }
            }
        }
    }

    /// Ends [`Hangups::run`].
    pub fn stop(&self) {
        let _ = self.stopper.wake();
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        let _ = self.hangups.registry.deregister(&mut SourceFd(&self.fd));
        self.hangups.watched.lock().remove(&self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::sync::mpsc;
    use std::time::Duration;

    struct Sender(Mutex<mpsc::Sender<()>>);

    impl Nudge for Sender {
        fn nudge(&self) {
            let _ = self.0.lock().send(());
        }
    }

    #[test]
    fn a_hang_up_nudges_and_a_dropped_watch_does_not() {
        let (hangups, poll) = Hangups::new().unwrap();
        let hangups = Arc::new(hangups);
        let runner = {
            let hangups = hangups.clone();
            std::thread::spawn(move || hangups.run(poll))
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();

        let client = TcpStream::connect(address).unwrap();
        let (server_side, _) = listener.accept().unwrap();
        let (sender, nudges) = mpsc::channel();
        let watch = hangups.watch(
            server_side.as_raw_fd(),
            Arc::new(Sender(Mutex::new(sender))),
        );
        assert!(watch.is_some());
        assert!(
            nudges.recv_timeout(Duration::from_millis(50)).is_err(),
            "quiet"
        );
        drop(client);
        nudges
            .recv_timeout(Duration::from_secs(10))
            .expect("the hang-up nudges");
        drop(watch);

        let other = TcpStream::connect(address).unwrap();
        let (other_server_side, _) = listener.accept().unwrap();
        let (sender, nudges) = mpsc::channel();
        let watch = hangups.watch(
            other_server_side.as_raw_fd(),
            Arc::new(Sender(Mutex::new(sender))),
        );
        drop(watch);
        drop(other);
        assert!(
            nudges.recv_timeout(Duration::from_millis(100)).is_err(),
            "no nudge after the watch ended"
        );
        hangups.stop();
        runner.join().unwrap();
    }
}
