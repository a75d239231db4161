//! The program's outside events as channels a command can `select!` on: SIGINT and
//! SIGTERM ([`Interrupts`], from a named thread joined on drop) and the lines of stdin
//! ([`stdin_lines`]).

use std::io::{self, BufRead};
use std::thread;

use crossbeam_channel::Receiver;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use crate::error::Error;

/// SIGINT and SIGTERM as a channel, from a named thread joined on drop.
pub struct Interrupts {
    pub received: Receiver<i32>,
    handle: Handle,
    thread: Option<thread::JoinHandle<()>>,
}

impl Interrupts {
    pub fn start() -> Result<Interrupts, Error> {
        let mut signals = Signals::new([SIGINT, SIGTERM])
            .map_err(|error| Error::Failed(format!("cannot handle signals: {error}")))?;
        let handle = signals.handle();
        let (sender, received) = crossbeam_channel::bounded(1);
        let thread = thread::Builder::new()
            .name("regctl-signals".to_string())
            .spawn(move || {
                for signal in signals.forever() {
                    let _ = sender.try_send(signal);
                }
            })
            .map_err(|error| Error::Failed(format!("cannot start a thread: {error}")))?;
        Ok(Interrupts {
            received,
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A numbered line of stdin (from 1), or the error that ended reading.
pub type Line = (usize, io::Result<String>);

/// Lines of stdin as a channel that disconnects at the end of input.
///
/// The reading thread is not joined: a read blocked on a terminal or pipe cannot be
/// interrupted portably, and it only ever ends with the process (after the command
/// has cleaned up), so it holds nothing that needs cleaning up.
pub fn stdin_lines() -> Result<Receiver<Line>, Error> {
    let (sender, lines) = crossbeam_channel::bounded(16);
    thread::Builder::new()
        .name("regctl-stdin".to_string())
        .spawn(move || {
            for (number, line) in io::stdin().lock().lines().enumerate() {
                let failed = line.is_err();
                if sender.send((number + 1, line)).is_err() || failed {
                    return;
                }
            }
        })
        .map_err(|error| Error::Failed(format!("cannot start a thread: {error}")))?;
    Ok(lines)
}
