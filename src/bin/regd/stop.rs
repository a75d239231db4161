//! SIGTERM and SIGINT, from the first moment regd runs to its exit. Invariant: a first
//! signal always ends in a clean stop with the final save, even one that arrives while
//! the state is being restored, before the server exists; a second one ends regd at
//! once, so a start-up stuck on a slow disk can still be interrupted.

use std::sync::Arc;
use std::thread;

use parking_lot::Mutex;
use regd::server::ShutdownHandle;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use crate::error::Error;

/// What the signal thread and `main` share: whether a stop was asked for, and the
/// server's shutdown handle once the server exists. One lock, so a signal that comes
/// while the server is being made is acted on by one side or the other, never lost.
#[derive(Default)]
struct Request {
    asked: bool,
    server: Option<ShutdownHandle>,
}

/// The `regd-signals` thread and the handle that ends it.
pub struct Stop {
    request: Arc<Mutex<Request>>,
    signals: Handle,
    thread: thread::JoinHandle<()>,
}

impl Stop {
    /// Catches SIGTERM and SIGINT from now on.
    pub fn catch() -> Result<Stop, Error> {
        let mut signals = Signals::new([SIGTERM, SIGINT]).map_err(Error::Signals)?;
        let handle = signals.handle();
        let request = Arc::new(Mutex::new(Request::default()));
        let shared = request.clone();
        let thread = thread::Builder::new()
            .name("regd-signals".to_string())
            .spawn(move || {
                for signal in signals.forever() {
                    let name = if signal == SIGTERM {
                        "SIGTERM"
                    } else {
                        "SIGINT"
                    };
                    let (again, server) = {
                        let mut request = shared.lock();
                        let again = request.asked;
                        request.asked = true;
                        (again, request.server.clone())
                    };
                    if again {
                        log::warn!("second {name}: stopping at once, without the final save");
                        let _ = signal_hook::low_level::emulate_default_handler(signal);
                        std::process::exit(1);
                    }
                    match server {
                        Some(server) => {
                            log::info!("{name} received; answering held polls and shutting down");
                            server.shut_down();
                        }
                        None => log::info!(
                            "{name} received while starting; regd stops as soon as its state is restored (send it again to stop at once)"
                        ),
                    }
                }
            })
            .map_err(Error::Signals)?;
        Ok(Stop {
            request,
            signals: handle,
            thread,
        })
    }

    /// Hands over the server, once it exists; `true` if a stop was already asked for,
    /// and so has begun.
    pub fn serve(&self, server: ShutdownHandle) -> bool {
        let asked = {
            let mut request = self.request.lock();
            request.server = Some(server.clone());
            request.asked
        };
        if asked {
            server.shut_down();
        }
        asked
    }

    /// Ends the signal thread (at exit).
    pub fn finish(self) {
        self.signals.close();
        let _ = self.thread.join();
    }
}
