//! The systemd watchdog (`WatchdogSec=`): a `regd-watchdog` thread sends the keep-alive
//! twice per interval, but only after the server's own health probe of the daemon
//! succeeds (`regd::server::probe`), so a wedged daemon is restarted.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use regd::notify;
use regd::server::{ShutdownHandle, probe};

/// The watchdog thread, stopped and joined by [`Watchdog::stop`].
pub struct Watchdog {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Watchdog {
    /// Starts the watchdog when systemd asked for one; `None` otherwise.
    pub fn start(
        address: SocketAddr,
        serving: ShutdownHandle,
    ) -> std::io::Result<Option<Watchdog>> {
        let Some(interval) = notify::watchdog_interval() else {
            return Ok(None);
        };
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("regd-watchdog".to_string())
            .spawn(move || keep_fed(address, interval, &serving, &stopped))?;
        Ok(Some(Watchdog { stop, thread }))
    }

    /// Stops sending keep-alives and joins the thread.
    pub fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

fn keep_fed(
    address: SocketAddr,
    interval: Duration,
    serving: &ShutdownHandle,
    stopped: &mpsc::Receiver<()>,
) {
    let period = interval / 2;
    loop {
        if serving.is_serving() {
            match probe::health(address, period.min(Duration::from_secs(5))) {
                Ok(()) => {
                    let _ = notify::notify("WATCHDOG=1");
                }
                Err(error) => {
                    log::warn!("health probe failed, withholding the watchdog keep-alive: {error}")
                }
            }
        }
        match stopped.recv_timeout(period) {
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            _ => return,
        }
    }
}
